"""usage: python -m pipeline.quickstart [out=DIR] [key=value ...]

The whole pipeline on one CPU.

In a few minutes, without Slurm or S3:
  1. datagen   a small uniform-motion training set (a v x r grid) and two eval sets: in
               distribution (ID) and with velocities outside the training range (OOD)
  2. train     a small DiT on it (one process)
  3. eval      the velocity error of its continuations on both sets, with the ground-truth floor
  4. report    the table and the plot
then prints where the metrics, TensorBoard logs, videos and plot are. Expect the paper's shape:
an ID error well below the OOD error. Each stage prints the command that does the same by hand;
a stage whose output exists is skipped, so an interrupted quickstart picks up where it stopped.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from phyworld.cli import run_cli
from phyworld.config import bounded, load_config
from training.config import ModelSize

REPO = Path(__file__).resolve().parents[1]
METRICS = Path("eval") / "metrics.jsonl"  # under the run, written by `python -m eval`
PAPER_METRIC = "vel_error_paper"  # its key in metrics.jsonl (eval.velocity, docs/eval.md)
EVAL_SETS = {
    # name: (datagen config, level label)
    "uniform_eval_id": "configs/data/uniform_eval_id.yaml",
    "uniform_eval_v_out": "configs/data/uniform_eval_v_out.yaml",
}


@dataclass
class QuickstartConfig:
    out: str = "quickstart"  # everything goes under this directory
    resolution: int = bounded(32, ge=8)  # pixels (the paper trains at 128)
    frames: int = bounded(8, ge=5)  # per video (the paper: 32); the first 3 are the condition
    grid_v: int = bounded(32, ge=1)  # training set: grid_v velocities x grid_r radii
    grid_r: int = bounded(8, ge=1)
    eval_videos: int = bounded(32, ge=1)  # per eval set
    model_size: ModelSize = ModelSize.tiny  # S is ~100x slower per step on a CPU
    steps: int = bounded(2400, ge=1)  # training steps (about 3 minutes on 2 idle cores)
    lr: float = bounded(2e-3, gt=0)
    sample_steps: int = bounded(10, ge=1)  # Euler steps when generating for eval


def _say(message: str) -> None:
    print(f"\n[quickstart {time.strftime('%H:%M:%S')}] {message}", flush=True)


def command_line(module: str, args: list[str]) -> str:
    """`python -m module args` as a shell line: pasted into a shell, it runs as is."""
    return shlex.join(["python", "-m", module, *args])


def _python(module: str, args: list[str]) -> None:
    """Run `python -m module args` in a fresh process, showing the command; fail loudly."""
    shown = command_line(module, args)
    print(f"$ {shown}", flush=True)
    result = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(
            f"quickstart: `{shown}` failed with status {result.returncode} (output above)"
        )


def make_datasets(cfg: QuickstartConfig, data: Path) -> dict[str, Path]:
    """The training set and the eval sets, each generated once (a manifest marks it complete)."""
    size = [f"frames={cfg.frames}", f"resolution={cfg.resolution}", "progress=false"]
    jobs = {
        "uniform_train": [
            "configs/data/uniform_base.yaml",
            "sampling=grid",
            f"grid.v={cfg.grid_v}",
            f"grid.r={cfg.grid_r}",
        ],
        **{
            name: [config, "sampling=random", f"count={cfg.eval_videos}"]
            for name, config in EVAL_SETS.items()
        },
    }
    roots = {}
    for name, args in jobs.items():
        roots[name] = root = data / name
        if (root / "manifest.json").is_file():
            print(f"{root}: exists, skipped", flush=True)
            continue
        _python("datagen", [*args, f"output={root}", *size])
    return roots


def train(cfg: QuickstartConfig, data: Path, run: Path) -> None:
    """A small DiT with configs/train/quickstart.yaml's recipe, resumed if a checkpoint exists
    (skipped when the checkpoint of the final step is complete)."""
    from training.checkpoint import is_complete, step_dir  # imports torch: only when needed

    final = step_dir(run, cfg.steps)
    if is_complete(final):
        print(f"{final}: exists, skipped", flush=True)
        return
    _python(
        "training",
        [
            "configs/train/quickstart.yaml",
            f"data.path={data}",
            f"output_dir={run}",
            f"model.size={cfg.model_size}",
            f"max_steps={cfg.steps}",
            f"optim.lr={cfg.lr}",
            f"data.frames={cfg.frames}",
            f"data.resolution={cfg.resolution}",
            f"diffusion.sample_steps={cfg.sample_steps}",
            f"checkpoint.every_steps={max(cfg.steps // 2, 1)}",
            "logging.every_steps=50",
            f"logging.video_every_steps={max(cfg.steps // 2, 1)}",
        ],
    )


def evaluate(cfg: QuickstartConfig, run: Path, sets: dict[str, Path]) -> None:
    """Velocity errors of the final checkpoint on every eval set, with the ground-truth floor
    (skipped when metrics.jsonl already holds the final step for every set)."""
    if {(cfg.steps, name) for name in sets} <= {(r["step"], r["set"]) for r in metric_rows(run)}:
        print(f"{run / METRICS}: step {cfg.steps} exists, skipped", flush=True)
        return
    eval_sets = [
        {"name": name, "path": str(path), "kind": "kinematic"} for name, path in sets.items()
    ]
    _python(
        "eval",
        [
            "configs/eval/tiny_cpu.yaml",
            f"checkpoint={run}",
            f"sets={json.dumps(eval_sets)}",
            "device=cpu",
            f"sample_steps={cfg.sample_steps}",
            "metric=paper",  # the headline is the number the paper's tables report
        ],
    )


def metric_rows(run: Path) -> list[dict]:
    """The eval records of the run (none before its first evaluation)."""
    path = run / METRICS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def velocity_errors(run: Path, parser: str = "") -> dict[str, tuple[float, float]]:
    """Eval set -> (model's velocity error, ground-truth floor) at the newest evaluated step: the
    headline (the paper's metric, the eval's primary parser) or, given `parser`, the paper's
    metric read with that parser (eval.parse)."""
    model, floor = (
        (f"{PAPER_METRIC}.{parser}.model", f"{PAPER_METRIC}.{parser}.gt")
        if parser
        else ("vel_error", "vel_error_gt")
    )
    rows = metric_rows(run)
    newest = max(row["step"] for row in rows)
    return {
        row["set"]: (_number(row.get(model)), _number(row.get(floor)))
        for row in rows
        if row["step"] == newest
    }


def id_vs_ood(errors: dict[str, tuple[float, float]]) -> str:
    """`ID 1.240 vs OOD 3.100 (2.5x, ...)`: the paper's comparison, judged."""
    (id_err, _), (ood_err, _) = errors["uniform_eval_id"], errors["uniform_eval_v_out"]
    if math.isnan(id_err) or math.isnan(ood_err):
        shape = "no ball found in the generated videos (see metrics.jsonl's note): train longer"
    elif id_err * 3 < ood_err:
        shape = "well below, as in the paper"
    elif id_err < ood_err:
        shape = "the paper's direction, not yet its size: see docs/quickstart.md"
    else:
        shape = "NOT the paper's shape: train longer"
    return f"ID {id_err:.3f} vs OOD {ood_err:.3f} ({ood_err / id_err:.1f}x, {shape})"


def _number(value: float | None) -> float:
    """A metric of metrics.jsonl (null: not measured, e.g. no ball found) as a float (NaN)."""
    return float("nan") if value is None else float(value)


def main(argv: list[str]) -> None:
    cfg = load_config(QuickstartConfig, argv)
    out = Path(cfg.out).resolve()
    data, run, report = out / "data", out / "run", out / "report"
    t0 = time.monotonic()

    _say(f"1/4 datasets under {data}")
    sets = make_datasets(cfg, data)
    _say(f"2/4 training a DiT-{cfg.model_size} for {cfg.steps} steps into {run}")
    train(cfg, sets.pop("uniform_train"), run)
    _say("3/4 evaluating the final checkpoint (velocity error, ID and OOD)")
    evaluate(cfg, run, sets)
    _say(f"4/4 report into {report}")
    _python("eval.report", [str(run), f"out={report}"])

    _say(f"done in {time.monotonic() - t0:.0f} s")
    print(f"  metrics      {run / METRICS}")
    print(f"  TensorBoard  tensorboard --logdir {run / 'tb'}")
    print(
        f"  videos       {run / 'eval' / 'videos'} (ground truth | VAE | generated, labelled), "
        "and TensorBoard's Images tab"
    )
    print(f"  report       {report} (table.md, fig3_velocity_error.png)")
    # the paper's metric read by its parser (threshold) and by the sub-pixel one (lowest floor)
    errors, alpha = velocity_errors(run), velocity_errors(run, "alpha")
    for name, (model, floor) in errors.items():
        print(
            f"  {name:<20} velocity error {model:.3f} (ground-truth floor {floor:.3f}); "
            f"sub-pixel parser {alpha[name][0]:.3f} (floor {alpha[name][1]:.3f})"
        )
    print(f"  velocity error: {id_vs_ood(errors)}")
    print(f"  sub-pixel (alpha) parser: {id_vs_ood(alpha)}")


if __name__ == "__main__":
    sys.exit(run_cli("pipeline.quickstart", main, __doc__, QuickstartConfig))
