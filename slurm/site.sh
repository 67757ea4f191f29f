# slurm/site.sh -- the one file you edit for your cluster.
#
# Sourced at submission (slurm/submit.sh, `python -m pipeline.study`) and at the start of every
# job (slurm/lib.sh). Each value can also be set in the environment, which wins over this file;
# an sbatch command-line option wins over both.
#
# Plain `sbatch slurm/train_xl.sh` reads only the script's #SBATCH lines and the SBATCH_*
# variables: `source slurm/site.sh` in your shell (or its startup file) exports the scheduler
# settings below as SBATCH_PARTITION / SBATCH_ACCOUNT / SBATCH_QOS for it. SBATCH_* values
# already set win over this file.

# --- scheduler: where jobs go (empty: the cluster's default) ------------------------------------
PHYWORLD_PARTITION=${PHYWORLD_PARTITION:-}  # e.g. gpu
PHYWORLD_ACCOUNT=${PHYWORLD_ACCOUNT:-}      # e.g. my-project
PHYWORLD_QOS=${PHYWORLD_QOS:-}              # e.g. normal
if [ -n "$PHYWORLD_PARTITION" ]; then export SBATCH_PARTITION=${SBATCH_PARTITION:-$PHYWORLD_PARTITION}; fi
if [ -n "$PHYWORLD_ACCOUNT" ]; then export SBATCH_ACCOUNT=${SBATCH_ACCOUNT:-$PHYWORLD_ACCOUNT}; fi
if [ -n "$PHYWORLD_QOS" ]; then export SBATCH_QOS=${SBATCH_QOS:-$PHYWORLD_QOS}; fi

# --- storage: datasets and training runs (local paths, shared filesystems or s3://) -------------
PHYWORLD_DATA_ROOT=${PHYWORLD_DATA_ROOT:-$HOME/phyworld/data}
PHYWORLD_RUN_ROOT=${PHYWORLD_RUN_ROOT:-$HOME/phyworld/runs}
# Job logs (stdout, NCCL debug files): one folder per job under here.
PHYWORLD_LOG_ROOT=${PHYWORLD_LOG_ROOT:-$HOME/phyworld/logs}

# datagen's compiled kernels (numba) are cached once and reused by every array task; the default
# cache sits beside the installed package, which may be read-only on a cluster.
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$HOME/.cache/phyworld-numba}

# --- software: how a job gets a Python with phyworld installed ----------------------------------
# The interpreter every job step runs.
PHYWORLD_PYTHON=${PHYWORLD_PYTHON:-python}
# A container image for every srun step (pyxis/enroot: `--container-image`); empty: none.
PHYWORLD_CONTAINER=${PHYWORLD_CONTAINER:-}
PHYWORLD_CONTAINER_MOUNTS=${PHYWORLD_CONTAINER_MOUNTS:-}  # e.g. /data:/data,/home:/home

# Commands run at the start of each job, before anything else: modules, a venv, a conda env.
phyworld_site_setup() {
  # module load cuda/12.4 nccl/2.21
  # source "$HOME/venvs/phyworld/bin/activate"
  :
}

# --- network: NCCL settings for your fabric (see docs/slurm.md) ---------------------------------
phyworld_site_nccl() {
  # export NCCL_SOCKET_IFNAME=ib0
  # export NCCL_IB_HCA=mlx5
  :
}
