#!/usr/bin/env bash
# The report of a study: the metrics table and the figure-3 plot over its runs (CPU only).
#   slurm/submit.sh slurm/report.sh [key=value ...] RUN_DIR...
#SBATCH --job-name=phyworld-report
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --time=1:00:00
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
set -uo pipefail

# Slurm runs a copy of this script: find the checkout (see train_s.sh).
home=${PHYWORLD_HOME:-$(dirname "$(dirname "$(scontrol show job "$SLURM_JOB_ID" | sed -n 's/^ *Command=\([^ ]*\).*/\1/p')")")}
# shellcheck source=slurm/lib.sh
source "$home/slurm/lib.sh"
phyworld_job_start
exec "$PHYWORLD_PYTHON" -m eval.report "$@"
