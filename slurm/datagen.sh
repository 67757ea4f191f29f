#!/usr/bin/env bash
# slurm/datagen.sh [--workers N] [--time HH:MM:SS] [--mem SIZE] CONFIG.yaml [key=value ...]
#
# Generates a dataset on a Slurm cluster: a job array of N one-core workers, each running
# `python -m datagen CONFIG mode=generate` for its parts (worker k of n from
# SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT), then a merge job that runs once every worker has
# succeeded (--dependency=afterok) and writes the index and manifest. Prints the two job ids.
#
# Safe to re-run or requeue: a worker skips the parts that are finished and redoes an unfinished
# one from scratch; the dataset is complete only when the merge job has written manifest.json.
# Partition, account and QoS come from slurm/site.sh (or PHYWORLD_SITE=/path/to/site.sh).
set -euo pipefail

# --- inside a job: run one step ------------------------------------------------------------------
if [ -n "${PHYWORLD_DATAGEN_MODE:-}" ]; then
  cd "$PHYWORLD_HOME"
  # The site's module, venv or container setup applies to the workers too.
  # shellcheck source=slurm/site.sh
  source "${PHYWORLD_SITE:-$PHYWORLD_HOME/slurm/site.sh}"
  phyworld_site_setup
  echo "[datagen $(date -u +%FT%TZ)] job ${SLURM_JOB_ID:-?} task ${SLURM_ARRAY_TASK_ID:-merge}" \
    "of ${SLURM_ARRAY_TASK_COUNT:-1}: mode=$PHYWORLD_DATAGEN_MODE restart=${SLURM_RESTART_COUNT:-0}"
  exec "${PHYWORLD_PYTHON:-python}" -m datagen "$@" "mode=$PHYWORLD_DATAGEN_MODE"
fi

# --- on the login node: submit the array and the merge -------------------------------------------
PHYWORLD_HOME=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PHYWORLD_HOME
SITE=${PHYWORLD_SITE:-$PHYWORLD_HOME/slurm/site.sh}
# shellcheck source=slurm/site.sh
[ -f "$SITE" ] && source "$SITE"
export PHYWORLD_PYTHON=${PHYWORLD_PYTHON:-python}
LOGS=${PHYWORLD_LOG_ROOT:-$PHYWORLD_HOME/logs}

workers=16 time=04:00:00 mem=4G
while [ $# -gt 0 ]; do
  case $1 in
    --workers) workers=$2; shift 2 ;;
    --time) time=$2; shift 2 ;;
    --mem) mem=$2; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
if [ $# -eq 0 ] || [ ! -f "$1" ]; then
  echo "usage: slurm/datagen.sh [--workers N] [--time T] [--mem M] CONFIG.yaml [key=value ...]" >&2
  [ $# -gt 0 ] && echo "error: config file '$1' does not exist" >&2
  exit 2
fi
if ! [[ $workers =~ ^[1-9][0-9]*$ ]]; then
  echo "error: --workers must be a positive integer, got '$workers'" >&2
  exit 2
fi
config=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
# Validate the config and reach the output before anything is queued (fails fast, clear error).
"$PHYWORLD_PYTHON" -c 'import sys
from datagen.config import DatagenConfig
from datagen.generate import make_plan
from phyworld.data.shards import DatasetError, check_deletable, dataset_files
from phyworld.config import ConfigError, load_config
from phyworld import storage
try:
    cfg = load_config(DatagenConfig, sys.argv[1:])
    plan = make_plan(cfg)
    storage.check_reachable(cfg.output)
    if cfg.overwrite:
        check_deletable(cfg.output)
    dataset_files(cfg.output)  # an output holding other files is refused here, not in N jobs
except (ConfigError, OSError, DatasetError) as err:
    sys.exit(f"datagen: error: {err}")
print(f"{cfg.output}: {plan.count} videos in {plan.num_parts} parts", file=sys.stderr)' "$config" "$@"

mkdir -p "$LOGS"
common=(--parsable --time="$time" --export=ALL)
[ -n "${PHYWORLD_PARTITION:-}" ] && common+=(--partition="$PHYWORLD_PARTITION")
[ -n "${PHYWORLD_ACCOUNT:-}" ] && common+=(--account="$PHYWORLD_ACCOUNT")
[ -n "${PHYWORLD_QOS:-}" ] && common+=(--qos="$PHYWORLD_QOS")

array=$(PHYWORLD_DATAGEN_MODE=generate sbatch "${common[@]}" --job-name=datagen \
  --array=0-$((workers - 1)) --ntasks=1 --cpus-per-task=1 --mem="$mem" --requeue \
  --open-mode=append --output="$LOGS/datagen-%A_%a.out" "$0" "$config" "$@")
array=${array%%;*}
merge=$(PHYWORLD_DATAGEN_MODE=merge sbatch "${common[@]}" --job-name=datagen-merge \
  --dependency=afterok:"$array" --ntasks=1 --cpus-per-task=1 --mem=2G \
  --output="$LOGS/datagen-merge-%j.out" "$0" "$config" "$@")
merge=${merge%%;*}
echo "$array $merge"
