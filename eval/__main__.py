"""usage: python -m eval CONFIG.yaml checkpoint=PATH [watch=true] [key=value ...]

`checkpoint` is a checkpoint directory (RUN/checkpoints/step_X) or a run directory (its newest
complete checkpoint; with `watch=true`, every checkpoint as it appears). Results go to the run:
RUN/eval/metrics.jsonl, RUN/tb (TensorBoard) and RUN/eval/videos (see `eval.watch`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import phyworld  # noqa: F401  (makes `import streaming` work)
from eval.config import EvalConfig
from eval.evaluate import load_nets
from eval.watch import evaluate_and_record, watch
from phyworld.cli import run_cli
from phyworld.config import ConfigError, load_config


def run(argv: list[str]) -> int:
    """The job; raises on bad input (`main` turns that into a one-line error)."""
    cfg = load_config(EvalConfig, argv)
    if not cfg.checkpoint:
        raise ConfigError("set checkpoint=PATH (a run directory or RUN/checkpoints/step_X)")
    path = Path(cfg.checkpoint)
    # A watcher usually starts beside training, before RUN/checkpoints/ exists: it waits for it.
    is_run = cfg.watch or (path / "checkpoints").is_dir()
    run_dir = Path(cfg.run_dir) if cfg.run_dir else (path if is_run else path.parent.parent)
    if cfg.watch and path.name.startswith("step_"):
        raise ConfigError(
            f"watch=true follows a run: pass checkpoint=RUN (the run directory), not the checkpoint {path}"
        )
    check_sets(cfg)
    nets = load_nets(cfg)  # weights errors surface before any generation
    if cfg.watch:
        watch(run_dir, cfg, nets)
        return 0
    from training.inference import resolve_checkpoint

    evaluate_and_record(resolve_checkpoint(path), run_dir, cfg, nets)
    return 0


def check_sets(cfg: EvalConfig) -> None:
    """Every eval set reachable and complete, before a checkpoint or network is loaded: an
    unreachable bucket or a missing dataset is named at once."""
    from phyworld import storage
    from phyworld.data.shards import verify_manifest

    for eval_set in cfg.sets:
        if storage.is_remote(eval_set.path):
            storage.check_reachable(eval_set.path)
        verify_manifest(eval_set.path)


def main(argv: list[str] | None = None) -> int:
    """`python -m eval`: 0 when done, 2 (with a one-line error) on a user error."""
    return run_cli("eval", run, __doc__, EvalConfig, argv)


if __name__ == "__main__":
    sys.exit(main())
