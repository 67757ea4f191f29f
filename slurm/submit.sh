#!/usr/bin/env bash
# slurm/submit.sh [sbatch options] SCRIPT [script arguments]
#
# sbatch with the site settings of slurm/site.sh applied: partition, account and QoS become
# sbatch's input variables (site.sh exports them; an option on this command line still wins),
# the job's output goes to $PHYWORLD_LOG_ROOT, and the job finds this checkout through
# PHYWORLD_HOME.
# Prints sbatch's output (`Submitted batch job ID`, or the job id with --parsable).
set -euo pipefail
PHYWORLD_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PHYWORLD_HOME
# shellcheck source=slurm/site.sh
source "$PHYWORLD_HOME/slurm/site.sh"
if [ $# -eq 0 ]; then
  echo "usage: slurm/submit.sh [sbatch options] SCRIPT [script arguments]" >&2
  exit 2
fi
mkdir -p "$PHYWORLD_LOG_ROOT"
export SBATCH_OUTPUT=${SBATCH_OUTPUT:-$PHYWORLD_LOG_ROOT/%x-%j.out}
export PHYWORLD_DATA_ROOT PHYWORLD_RUN_ROOT PHYWORLD_LOG_ROOT PHYWORLD_PYTHON
exec sbatch "$@"
