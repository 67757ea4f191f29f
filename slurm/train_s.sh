#!/usr/bin/env bash
# Train DiT-S with the paper's resources: 4 nodes x 8 GPUs = 32, as every kinematics model.
#   sbatch slurm/train_s.sh [CONFIG.yaml] [key=value ...]
# With no config it runs the paper's experiment for this size (DiT-S on 3M uniform-motion videos: the
# PHYWORLD_DEFAULT_CONFIG below) on the site's data and run roots. Each #SBATCH value is a default
# that a command-line option wins over: `sbatch --nodes=1 --time=2:00:00 slurm/train_s.sh`.
# Partition and account: SBATCH_PARTITION / SBATCH_ACCOUNT, `source slurm/site.sh` first, or
# slurm/submit.sh (docs/slurm.md). Whole nodes (--exclusive, --mem=0): every CPU and all memory,
# the CPUs shared evenly between the node's ranks. Time limit, scancel, preemption: slurm/lib.sh.
#SBATCH --job-name=phyworld-train-s
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --mem=0
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -uo pipefail
PHYWORLD_DEFAULT_CONFIG=configs/train/uniform_dit_s.yaml

# Slurm runs a copy of this script: find the checkout (submit.sh exports PHYWORLD_HOME; plain
# sbatch leaves the submitted path in the job's Command, relative to the submission directory;
# outside a job this is the script itself).
script=$(scontrol show job "${SLURM_JOB_ID:-none}" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')
home=${PHYWORLD_HOME:-$(dirname "$(dirname "${script:-$0}")")}
# shellcheck source=slurm/lib.sh
source "$home/slurm/lib.sh"
phyworld_train S "$PHYWORLD_DEFAULT_CONFIG" "$@"
