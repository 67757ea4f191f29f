#!/usr/bin/env bash
# Train our video VAE (`python -m training.vae`) on one GPU: the link of a study before the DiT
# runs that train on its latents (vae.kind=ours vae.path=OUTPUT_DIR).
#   slurm/submit.sh slurm/vae.sh configs/vae/kinematics_128.yaml data=DATA/uniform_30k \
#       eval_data=DATA/uniform_eval_id output_dir=RUNS/vae_kinematics_128
# It writes OUTPUT_DIR/weights.pt, then vae.json last (a VAE without vae.json is not trained).
#SBATCH --job-name=phyworld-vae
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --gpus-per-node=1
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -uo pipefail

# Slurm runs a copy of this script: find the checkout (see train_s.sh).
home=${PHYWORLD_HOME:-$(dirname "$(dirname "$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")")}
# shellcheck source=slurm/lib.sh
source "$home/slurm/lib.sh"
phyworld_job_start
exec "$PHYWORLD_PYTHON" -m training.vae "$@"
