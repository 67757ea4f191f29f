#!/usr/bin/env bash
# Train DiT-XL with the paper's resources: 8 nodes x 8 GPUs = 64 A100, the combinatorial (PHYRE) runs.
#   slurm/submit.sh slurm/train_xl.sh CONFIG.yaml [key=value ...]
# Every #SBATCH value below is a default: an sbatch option on the command line wins, e.g.
#   slurm/submit.sh --nodes=1 --time=2:00:00 slurm/train_xl.sh configs/train/....yaml
# Preemption and the time limit: see slurm/lib.sh and docs/slurm.md.
#SBATCH --job-name=phyworld-train-xl
#SBATCH --nodes=8
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --time=48:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@300
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -uo pipefail

# Slurm runs a copy of this script: find the checkout (submit.sh exports PHYWORLD_HOME; plain
# sbatch leaves the submitted path in the job's Command).
home=${PHYWORLD_HOME:-$(dirname "$(dirname "$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")")}
# shellcheck source=slurm/lib.sh
source "$home/slurm/lib.sh"
phyworld_train XL "$@"
