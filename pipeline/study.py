"""usage: python -m pipeline.study configs/studies/NAME.yaml [executor=local] [dry_run=true] [key=value ...]

Runs a whole scaling study as one chain of jobs, by default submitted to Slurm:

  datasets (datagen job arrays) -> our VAE (`vaes`, for grids that train on its latents)
                                -> training runs (model size x training set, per grid)
                                -> an eval watcher beside each run
  all runs and watchers         -> one report job (the table and the figure-3 plot)

each link a `--dependency`. Re-submitting skips what is done (a dataset with its manifest, a VAE
with its vae.json, a run whose latest checkpoint reached `max_steps`) and waits on what is
already queued or running (a job of the same name) instead of submitting it twice.
`dry_run=true` prints the sbatch lines and the GPU-hours estimate, and submits nothing.

`executor=local` runs the same plan on this machine instead, one job after another as
`python -m MODULE ARGS` processes (no Slurm): a dataset is generated and merged by one datagen
process, an eval scores the finished run once (no watcher), each job's output goes to
RUN_ROOT/logs/JOB.log, and a line per job shows progress. Re-running skips what is done; a
failed job ends the study, naming its log and command.

Every sbatch goes through `slurm/submit.sh`, so the site settings of `slurm/site.sh` apply; the
data and run roots default to its PHYWORLD_DATA_ROOT and PHYWORLD_RUN_ROOT (the environment
wins, as in the jobs).
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from phyworld.cli import UserError, run_cli
from phyworld.config import ConfigError, load_config
from phyworld.data.runs import latest_step
from training.config import TrainConfig

if TYPE_CHECKING:  # an annotation only: training.vae imports torch, loaded when a study has VAEs
    from training.vae import VAETrainConfig

REPO = Path(__file__).resolve().parents[1]
SUBMIT = REPO / "slurm" / "submit.sh"
SITE = REPO / "slurm" / "site.sh"


# ---------------------------------------------------------------------------------------------
#                                          Config
# ---------------------------------------------------------------------------------------------


class Executor(StrEnum):
    slurm = "slurm"  # an sbatch chain
    local = "local"  # one process after another on this machine


@dataclass
class DatasetSpec:
    """One dataset of the study: a datagen config, written by a job array of `tasks` workers."""

    config: str = "???"  # datagen YAML, relative to the repository
    overrides: list[str] = field(default_factory=list)
    tasks: int = 1  # array tasks (parallel datagen workers)


@dataclass
class VAESpec:
    """Our VAE (`python -m training.vae`), trained into RUN_ROOT/vae_KEY before the grids that
    name it (`GridSpec.vae`) train on its latents."""

    config: str = "???"  # training.vae YAML, relative to the repository
    data: str = "???"  # key of `datasets`: the training videos
    eval_data: str = ""  # key of `datasets`: held-out videos ("": the first of `data`)
    overrides: list[str] = field(default_factory=list)


@dataclass
class GridSpec:
    """Training runs: every model size x every training set, all with the same train config."""

    name: str = "???"  # e.g. uniform; runs are named dit_{size}_{train_set}
    train_config: str = "???"  # training YAML, relative to the repository
    models: list[str] = field(default_factory=lambda: ["S", "B", "L"])
    train_sets: list[str] = field(default_factory=list)  # keys of `datasets`
    eval_sets: list[str] = field(default_factory=list)  # keys of `datasets`, split eval
    eval_kind: str = "kinematic"  # kinematic | combinatorial
    eval_config: str = ""  # eval YAML of the watchers; "": the study's `eval_config`
    overrides: list[str] = field(default_factory=list)  # key=value for every run of the grid
    # key of the study's `vaes`: trained first; every run gets vae.kind=ours vae.path=its output
    vae: str = ""


@dataclass
class CostModel:
    """How the GPU-hours estimate turns FLOPs into time: a GPU's peak and the fraction reached."""

    peak_tflops: float = 312.0  # A100 bf16 dense
    mfu: float = 0.35  # model FLOPs utilisation assumed


@dataclass
class StudyConfig:
    name: str = "???"
    data_root: str = ""  # default: $PHYWORLD_DATA_ROOT/{name}
    run_root: str = ""  # default: $PHYWORLD_RUN_ROOT/{name}
    datasets: dict[str, DatasetSpec] = field(default_factory=dict)
    vaes: dict[str, VAESpec] = field(default_factory=dict)
    grids: list[GridSpec] = field(default_factory=list)
    eval_config: str = ""  # eval YAML of the watchers of every grid ("": no watchers)
    # The watcher ends after this long without a new checkpoint (so the report can run).
    eval_overrides: list[str] = field(default_factory=lambda: ["stop_after_s=7200"])
    train_sbatch: list[str] = field(default_factory=list)  # extra sbatch options, training jobs
    sbatch: list[str] = field(default_factory=list)  # extra sbatch options, every job
    cost: CostModel = field(default_factory=CostModel)
    executor: Executor = Executor.slurm
    dry_run: bool = False
    hold: bool = False  # submit every job held (release with `scontrol release`)


# ---------------------------------------------------------------------------------------------
#                                        The plan
# ---------------------------------------------------------------------------------------------


@dataclass
class Job:
    """One sbatch of the study: its name, script and arguments, and the names it waits for."""

    name: str
    script: str  # slurm/<script>.sh, relative to the repository
    args: list[str]
    after_ok: list[str] = field(default_factory=list)  # start once these succeeded
    after_start: list[str] = field(default_factory=list)  # start once these started
    sbatch: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # set for the sbatch (the job inherits it)
    # the same job for executor=local: `python -m command[0] command[1:]` ([]: nothing to run)
    command: list[str] = field(default_factory=list)
    done: bool = False  # its output already exists: not submitted
    run_dir: str = ""  # training runs: their output directory
    gpus: int = 0  # training runs: GPUs the job asks for
    gpu_hours: float = 0.0  # training runs: the estimate

    def sbatch_line(self, ids: dict[str, str], hold: bool) -> list[str]:
        """The submit.sh command line, with dependencies resolved to job ids."""
        deps = [f"afterok:{ids[n]}" for n in self.after_ok if ids.get(n)]
        deps += [f"after:{ids[n]}" for n in self.after_start if ids.get(n)]
        line = [str(SUBMIT), "--parsable", f"--job-name={self.name}", *self.sbatch]
        if deps:
            line.append("--dependency=" + ",".join(deps))
        if hold:
            line.append("--hold")
        return [*line, str(REPO / self.script), *self.args]


def site_setting(name: str) -> str:
    """A variable as slurm/site.sh sets it for the jobs (the environment wins, as in the file)."""
    script = 'source "$1" >/dev/null 2>&1; printf %s "${!2:-}"'
    out = subprocess.run(
        ["bash", "-c", script, "bash", str(SITE), name], capture_output=True, text=True
    )
    return out.stdout if out.returncode == 0 else os.environ.get(name, "")


def _root(explicit: str, env: str, name: str) -> str:
    if explicit:  # absolute: the jobs run in the repository, not where the study was started
        return explicit if "://" in explicit else str(Path(explicit).resolve())
    base = site_setting(env)
    if not base:
        raise ConfigError(
            f"set `{env.lower().removeprefix('phyworld_')}` in the study or {env} (slurm/site.sh)"
        )
    return f"{base.rstrip('/')}/{name}"


def vae_trained(path: str) -> bool:
    """Whether `path` holds a trained VAE (`python -m training.vae` writes vae.json last)."""
    from training.vae import VAE_JSON

    return (Path(path) / VAE_JSON).is_file()


def dataset_complete(root: str) -> bool:
    """A dataset is complete once its manifest.json exists (datagen writes it last)."""
    if root.startswith("s3://"):
        import boto3

        bucket, _, prefix = root[5:].partition("/")
        s3 = boto3.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None)
        found = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix.rstrip('/')}/manifest.json")
        return found.get("KeyCount", 0) > 0
    return (Path(root) / "manifest.json").is_file()


def _sbatch_values(script: Path, extra: list[str]) -> dict[str, str]:
    """#SBATCH defaults of a script with `extra` options applied (for the GPU count)."""
    values = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)", script.read_text(), re.M))
    values.update(re.findall(r"^--([\w-]+)=(\S+)$", "\n".join(extra), re.M))
    return values


def train_flops(cfg: TrainConfig, downsample: int) -> float:
    """Model FLOPs of one training sample of `cfg` (`training.metrics.train_flops_per_sample`,
    as the training logs MFU, at the paper's parameter count of the size) on latents
    `downsample` times smaller per side than the videos."""
    from training.metrics import train_flops_per_sample
    from training.model import DIT_CONFIGS

    size = DIT_CONFIGS[cfg.model.size]
    side = cfg.data.resolution // downsample // cfg.model.patch_hw
    tokens = math.ceil(cfg.data.frames / cfg.model.patch_t) * side * side
    params = size.paper_params or 12 * size.depth * size.hidden_size**2
    return train_flops_per_sample(params, tokens, size.depth, size.hidden_size)


def train_gpu_hours(cfg: TrainConfig, flops_per_sample: float, gpus: int, cost: CostModel) -> float:
    """GPU-hours of a training run: its model FLOPs over (peak x MFU)."""
    p = cfg.parallel
    batch = (
        p.global_batch_size
        or p.micro_batch_size * p.grad_accum_steps * gpus // p.sequence_parallel_size
    )
    seconds = cfg.max_steps * batch * flops_per_sample / (cost.peak_tflops * 1e12 * cost.mfu)
    return seconds / 3600


@dataclass(frozen=True)
class Roots:
    """Where a study's datasets and runs go, and the prefix of its jobs' names."""

    data: str
    runs: str
    prefix: str  # pw-NAME

    @classmethod
    def of(cls, study: StudyConfig) -> Roots:
        data = _root(study.data_root, "PHYWORLD_DATA_ROOT", study.name)
        return cls(data, _root(study.run_root, "PHYWORLD_RUN_ROOT", study.name), f"pw-{study.name}")

    def vae_dir(self, key: str) -> str:
        """The output directory of the study's VAE `key`."""
        return f"{self.runs}/vae_{key}"


def merged(study: StudyConfig, roots: Roots, key: str) -> str:
    """The job after which dataset `key` is complete (its merge); the key must be defined."""
    if key not in study.datasets:
        raise ConfigError(
            f"dataset {key!r} is used but not defined under `datasets`: {sorted(study.datasets)}"
        )
    return f"{roots.prefix}-data-{key}-merge"


def dataset_jobs(study: StudyConfig, roots: Roots, key: str) -> list[Job]:
    """Dataset `key`: slurm/datagen.sh's two steps, a job array of one-core workers writing
    parts, then the merge that writes index and manifest (PHYWORLD_DATAGEN_MODE, see that
    script)."""
    ds = study.datasets[key]
    root = f"{roots.data}/{key}"
    args = [ds.config, f"output={root}", *ds.overrides]
    done = dataset_complete(root)
    one_core = ["--ntasks=1", "--cpus-per-task=1", "--time=04:00:00", *study.sbatch]
    workers = Job(
        name=f"{roots.prefix}-data-{key}",
        script="slurm/datagen.sh",
        args=args,
        sbatch=[f"--array=0-{ds.tasks - 1}", "--requeue", "--open-mode=append", *one_core],
        env={"PHYWORLD_DATAGEN_MODE": "generate"},
        command=["datagen", *args, "progress=false"],  # mode=all: generate and merge
        done=done,
    )
    merge = Job(
        name=merged(study, roots, key),
        script="slurm/datagen.sh",
        args=args,
        after_ok=[workers.name],
        sbatch=one_core,
        env={"PHYWORLD_DATAGEN_MODE": "merge"},
        done=done,  # no command: the local datagen process merged already
    )
    return [workers, merge]


def vae_args(study: StudyConfig, roots: Roots, key: str) -> list[str]:
    """The arguments of `python -m training.vae` that train the study's VAE `key`."""
    spec = study.vaes[key]
    args = [spec.config, f"data={roots.data}/{spec.data}", f"output_dir={roots.vae_dir(key)}"]
    args += [f"eval_data={roots.data}/{spec.eval_data}"] if spec.eval_data else []
    return [*args, *spec.overrides]


def vae_config(study: StudyConfig, roots: Roots, key: str) -> VAETrainConfig:
    """The VAETrainConfig the study trains its VAE `key` with (a bad one fails here)."""
    from training.vae import VAETrainConfig

    return load_config(VAETrainConfig, vae_args(study, roots, key))


def vae_job(study: StudyConfig, roots: Roots, key: str) -> Job:
    """Our VAE `key`: one GPU, after its datasets; the runs of the grids that name it wait for
    it."""
    spec = study.vaes[key]
    args = vae_args(study, roots, key)
    vae_config(study, roots, key)  # a bad VAE config fails here
    return Job(
        name=f"{roots.prefix}-vae-{key}",
        script="slurm/vae.sh",
        args=args,
        command=["training.vae", *args],
        after_ok=[merged(study, roots, k) for k in (spec.data, spec.eval_data) if k],
        sbatch=list(study.sbatch),
        done=vae_trained(roots.vae_dir(key)),
    )


def grid_jobs(study: StudyConfig, roots: Roots, grid: GridSpec) -> list[Job]:
    """A grid's training runs (every model size x every training set), each followed by its
    eval."""
    if grid.vae and grid.vae not in study.vaes:
        raise ConfigError(
            f"grid {grid.name}: vae={grid.vae!r} is not defined under `vaes`: {sorted(study.vaes)}"
        )
    jobs = []
    for size in grid.models:
        script = f"slurm/train_{size.lower()}.sh"
        if study.executor == "slurm" and not (REPO / script).is_file():
            raise ConfigError(f"grid {grid.name}: no {script} for model size {size!r}")
        for train_set in grid.train_sets:
            train = train_job(study, roots, grid, size, train_set)
            jobs += [train, *eval_jobs(study, roots, grid, train)]
    return jobs


def train_job(study: StudyConfig, roots: Roots, grid: GridSpec, size: str, train_set: str) -> Job:
    """The run dit_{size}_{train_set} of a grid, after its training set (and the grid's VAE)."""
    run_dir = f"{roots.runs}/dit_{size.lower()}_{train_set}"
    use_vae = ["vae.kind=ours", f"vae.path={roots.vae_dir(grid.vae)}"] if grid.vae else []
    args = [
        grid.train_config,
        f"data.path={roots.data}/{train_set}",
        f"output_dir={run_dir}",
        *use_vae,
        *grid.overrides,
    ]
    cfg = load_config(TrainConfig, [args[0], f"model.size={size}", *args[1:]])
    if cfg.vae.kind == "ours" and not grid.vae and not vae_trained(cfg.vae.path):
        raise ConfigError(
            f"grid {grid.name}: its runs train on our VAE's latents (vae.kind=ours) "
            f"but vae.path={cfg.vae.path} holds no trained VAE; name one of the "
            "study's `vaes` in the grid's `vae` (trained first, in the chain) or "
            "train it first with `python -m training.vae`"
        )
    script = f"slurm/train_{size.lower()}.sh"
    sbatch = [*study.train_sbatch, *study.sbatch]
    gpus = train_gpus(script, sbatch)
    down = latent_factor(study, roots, grid, cfg)
    vae = [f"{roots.prefix}-vae-{grid.vae}"] if grid.vae else []  # the grid's VAE, trained first
    return Job(
        name=f"{roots.prefix}-train-{run_name(run_dir)}",
        script=script,
        args=args,
        command=["training", args[0], f"model.size={size}", *args[1:]],
        after_ok=[merged(study, roots, train_set), *vae],
        sbatch=sbatch,
        done=latest_step(run_dir) >= cfg.max_steps,
        run_dir=run_dir,
        gpus=gpus,
        gpu_hours=train_gpu_hours(cfg, train_flops(cfg, down), gpus, study.cost),
    )


def latent_factor(study: StudyConfig, roots: Roots, grid: GridSpec, cfg: TrainConfig) -> int:
    """How many times smaller per side than its videos a run's latents are: its autoencoder's
    factor (`training.autoencoders.latent_downsample`), or for the grid's VAE, which the study
    trains first, the factor of the architecture its config trains."""
    from training.autoencoders import latent_downsample

    if grid.vae:
        return vae_config(study, roots, grid.vae).model.downsample
    return latent_downsample(cfg.vae)


def run_name(run_dir: str) -> str:
    """A run is named for its directory: dit_{size}_{train_set}."""
    return run_dir.rsplit("/", 1)[-1]


def train_gpus(script: str, sbatch: list[str]) -> int:
    """GPUs a training job asks for: its script's #SBATCH header with `sbatch` applied (1 for a
    model size without a script, which only the local executor runs)."""
    if not (REPO / script).is_file():
        return 1
    header = _sbatch_values(REPO / script, sbatch)
    return max(int(header.get("nodes", 1)) * int(header.get("gpus-per-node", 1)), 1)


def eval_jobs(study: StudyConfig, roots: Roots, grid: GridSpec, train: Job) -> list[Job]:
    """A run's eval, if the grid has eval sets and an eval config (its own or the study's): on
    Slurm a watcher that starts beside training and scores each checkpoint; locally, after
    training, the final checkpoint scored once."""
    eval_config = grid.eval_config or study.eval_config
    if not (eval_config and grid.eval_sets):
        return []
    sets = [
        {"name": s, "path": f"{roots.data}/{s}", "kind": grid.eval_kind} for s in grid.eval_sets
    ]
    scored = [eval_config, f"checkpoint={train.run_dir}", f"sets={json.dumps(sets)}"]
    watcher = Job(
        name=f"{roots.prefix}-eval-{run_name(train.run_dir)}",
        script="slurm/eval.sh",
        args=[*scored[:2], "watch=true", scored[2], *study.eval_overrides],
        command=["eval", *scored, *study.eval_overrides, "watch=false"],
        after_ok=[merged(study, roots, s) for s in grid.eval_sets],
        after_start=[train.name],
        sbatch=list(study.sbatch),
        done=train.done and (Path(train.run_dir) / "eval" / "metrics.jsonl").is_file(),
    )
    return [watcher]


def report_job(study: StudyConfig, roots: Roots, runs: list[Job], ready: bool) -> Job:
    """The table and the figure over every training run, after the runs and their evals
    (`runs`); done when everything before it is (`ready`) and the report exists."""
    out = f"out={roots.runs}/report"
    run_dirs = [j.run_dir for j in runs if j.run_dir]
    return Job(
        name=f"{roots.prefix}-report",
        script="slurm/report.sh",
        args=[out, *run_dirs],
        command=["eval.report", out, *run_dirs],
        after_ok=[j.name for j in runs],
        sbatch=list(study.sbatch),
        done=ready and Path(f"{roots.runs}/report").is_dir(),
    )


def plan(study: StudyConfig) -> list[Job]:
    """Every job of the study in submission order, each marked done or not: the datasets, our
    VAEs, each grid's training runs with their evals, and the report."""
    roots = Roots.of(study)
    jobs = [job for key in study.datasets for job in dataset_jobs(study, roots, key)]
    jobs += [vae_job(study, roots, key) for key in study.vaes]
    runs = [job for grid in study.grids for job in grid_jobs(study, roots, grid)]
    report = report_job(study, roots, runs, ready=all(j.done for j in [*jobs, *runs]))
    return [*jobs, *runs, report]


# ---------------------------------------------------------------------------------------------
#                                        Submission
# ---------------------------------------------------------------------------------------------


# Slurm's reason for a job pending on a dependency that failed or was cancelled: it never starts
# (unless the cluster sets DependencyParameters=kill_invalid_depend) and is never cleaned up.
NEVER_SATISFIED = "DependencyNeverSatisfied"


def queued_jobs() -> dict[str, tuple[str, str]]:
    """Job name -> (id, reason) of this user's pending or running jobs (a re-submission waits
    on them)."""
    out = subprocess.run(
        ["squeue", "--me", "-h", "-t", "PENDING,RUNNING,REQUEUED,SUSPENDED", "-o", "%j %i %r"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {
        name: (job_id.split("_")[0], reason)
        for name, job_id, reason in (line.split(maxsplit=2) for line in out.splitlines())
    }


def submit(study: StudyConfig, jobs: list[Job]) -> dict[str, str]:
    """sbatch every job that is neither done nor queued; returns name -> job id of all live jobs.

    A job of the study left pending on a dependency that failed or was cancelled (the report
    after a training job was killed) would wait forever: it is cancelled and submitted again,
    waiting on the jobs submitted now."""
    queued = {} if study.dry_run else queued_jobs()
    ids = {name: job_id for name, (job_id, reason) in queued.items() if reason != NEVER_SATISFIED}
    for job in jobs:
        if job.done:
            print(f"done     {job.name}")
            continue
        if job.name in ids:
            print(f"queued   {job.name} (job {ids[job.name]})")
            continue
        if job.name in queued:
            stale = queued[job.name][0]
            subprocess.run(["scancel", stale], capture_output=True, text=True, check=True)
            print(f"stale    {job.name} (job {stale}: what it waited on failed; cancelled)")
        if study.dry_run:  # a runnable script: job ids in shell variables
            line = job.sbatch_line({n: f"${_var(n)}" for n in ids}, study.hold)
            env = [f"{k}={shlex.quote(v)}" for k, v in job.env.items()]
            print(f"{_var(job.name)}=$(" + " ".join([*env, *map(_quote, line)]) + ")")
            ids[job.name] = job.name
            continue
        line = job.sbatch_line(ids, study.hold)
        if job.run_dir and not job.run_dir.startswith("s3://"):
            # the eval watcher may start before training made it, and refuses a run without it
            Path(job.run_dir, "checkpoints").mkdir(parents=True, exist_ok=True)
        result = subprocess.run(line, capture_output=True, text=True, env={**os.environ, **job.env})
        if result.returncode != 0:
            raise RuntimeError(
                f"sbatch for {job.name} failed: {result.stderr.strip()}\n  {shlex.join(line)}"
            )
        ids[job.name] = result.stdout.strip().split(";")[0]
        print(f"submitted {job.name}: job {ids[job.name]}")
    return ids


def _var(name: str) -> str:
    return re.sub(r"\W", "_", name).upper()


def _quote(arg: str) -> str:
    """Shell quoting that leaves the $VARIABLES of dependencies expandable."""
    return arg if arg.startswith("--dependency=") else shlex.quote(arg)


def summary(jobs: list[Job], cost: CostModel) -> str:
    """The GPU-hours estimate: per training run, and in total for what is left to do."""
    train = [j for j in jobs if j.gpu_hours]
    w = max((len(j.name) for j in train), default=12)
    lines = [
        f"GPU-hours at {cost.peak_tflops:g} TFLOP/s per GPU and {cost.mfu:.0%} MFU (cost.* to change)",
        f"{'training run':<{w}}  GPUs  GPU-hours  wall-hours  status",
    ]
    for j in train:
        status = "done" if j.done else "to do"
        lines.append(
            f"{j.name:<{w}}  {j.gpus:4d}  {j.gpu_hours:9.0f}  {j.gpu_hours / j.gpus:10.1f}  {status}"
        )
    left = sum(j.gpu_hours for j in train if not j.done)
    total = sum(j.gpu_hours for j in train)
    lines.append(f"{'total left to do':<{w}}        {left:9.0f}              (of {total:.0f})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
#                                   The local executor
# ---------------------------------------------------------------------------------------------


class StudyJobFailed(UserError):
    """A job of a local study exited non-zero; the message names its log and command."""


def local_label(study: StudyConfig, job: Job) -> str:
    """`train dit_tiny_uniform_8x8` for the job pw-NAME-train-dit_tiny_uniform_8x8."""
    kind, _, what = job.name.removeprefix(f"pw-{study.name}-").partition("-")
    return f"{kind} {what}".strip()


def run_job(argv: list[str], log) -> int:
    """Run one job in the repository, output to `log`; a SIGTERM to the study goes on to the job
    (training then saves a checkpoint and stops) instead of leaving it running on its own."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the log follows the job live
    proc = subprocess.Popen(argv, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
    previous = signal.signal(signal.SIGTERM, lambda signum, _: proc.send_signal(signum))
    try:
        return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_local(study: StudyConfig, jobs: list[Job], log_dir: Path) -> None:
    """Run every job that is not done, in plan order, each as `python -m ...` in the repository;
    its output goes to LOG_DIR/JOB.log. Stops at the first failure (StudyJobFailed)."""
    todo = [j for j in jobs if j.command]  # a merge job has none: datagen merged already
    t_study = time.monotonic()
    for i, job in enumerate(todo, 1):
        head = f"[study {i}/{len(todo)}] {local_label(study, job)}"
        if job.done:
            print(f"{head}: done, skipped", flush=True)
            continue
        log = log_dir / f"{job.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        shown = shlex.join(["python", "-m", *job.command])
        print(f"{head} ... (log: {log})", flush=True)
        t0 = time.monotonic()
        with open(log, "w") as out:
            print(f"$ {shown}", file=out, flush=True)
            rc = run_job([sys.executable, "-m", *job.command], out)
        if rc != 0:
            raise StudyJobFailed(
                f"job {job.name} failed with status {rc}: see {log}; its command (in {REPO}): "
                f"{shown}"
            )
        print(f"{head}: done in {time.monotonic() - t0:.0f} s", flush=True)
    print(f"[study] {study.name}: all {len(todo)} jobs done in {time.monotonic() - t_study:.0f} s")


def main(argv: list[str]) -> None:
    study = load_config(StudyConfig, argv)
    jobs = plan(study)
    if study.executor == "local":
        if study.dry_run:
            for job in (j for j in jobs if j.command and not j.done):
                print(shlex.join(["python", "-m", *job.command]))
            return
        run_local(study, jobs, Path(Roots.of(study).runs) / "logs")
        return
    submit(study, jobs)
    print(summary(jobs, study.cost))


if __name__ == "__main__":
    sys.exit(run_cli("pipeline.study", main, __doc__, StudyConfig))
