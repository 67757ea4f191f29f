"""slurm/eval.sh beside slurm/train_s.sh on a real Slurm: the watcher evaluates every checkpoint
the training job writes, each exactly once, then stops by itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import phyworld  # noqa: F401  (before streaming)

REPO = Path(__file__).resolve().parents[2]
SBATCH = [
    "--nodes=1",
    "--ntasks-per-node=2",
    "--cpus-per-task=1",
    "--oversubscribe",
    "--gpus-per-node=0",
]


@pytest.mark.slow
def test_watcher_evaluates_each_checkpoint_once(slurm_cluster, tmp_path: Path) -> None:
    from phyworld.data.shards import verify_manifest  # noqa: F401  (datagen registers its encoding)

    data = tmp_path / "data"
    common = ["sampling=random", "frames=8", "resolution=32", "progress=false"]
    for name, config, count in (
        ("train", "uniform_base.yaml", 32),
        ("eval_id", "uniform_eval_id.yaml", 4),
    ):
        slurm_cluster.run(
            sys.executable, "-m", "datagen", str(REPO / "configs" / "data" / config),
            f"output={data / name}", f"count={count}", *common, cwd=REPO, timeout=300,
        )  # fmt: skip
    run = tmp_path / "run"
    env = {"PHYWORLD_LOG_ROOT": str(tmp_path / "logs"), "PHYWORLD_PYTHON": sys.executable}
    train = slurm_cluster.submit(
        *SBATCH, str(REPO / "slurm" / "train_s.sh"),
        str(REPO / "configs" / "train" / "tiny_cpu.yaml"), "model.size=tiny",
        f"data.path={data / 'train'}", f"output_dir={run}", "max_steps=30",
        "parallel.micro_batch_size=2", "checkpoint.every_steps=10", "checkpoint.keep_last=5",
        "logging.video_every_steps=0", "data.num_workers=0", **env,
    )  # fmt: skip
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)  # eval.sh refuses a run without it
    sets = [{"name": "uniform_id", "path": str(data / "eval_id"), "kind": "kinematic"}]
    watcher = slurm_cluster.submit(
        "--gpus-per-node=0", "--cpus-per-task=1", f"--dependency=after:{train}",
        str(REPO / "slurm" / "eval.sh"), str(REPO / "configs" / "eval" / "tiny_cpu.yaml"),
        f"checkpoint={run}", "watch=true", "poll_s=2", "stop_after_s=60",
        f"sets={json.dumps(sets)}", "sample_steps=2", "floors=false", **env,
    )  # fmt: skip
    slurm_cluster.wait(train, {"COMPLETED"}, timeout=600)
    slurm_cluster.wait(watcher, {"COMPLETED"}, timeout=600)

    written = sorted(int(p.name.split("_")[1]) for p in (run / "checkpoints").glob("step_*"))
    assert written == [10, 20, 30]
    records = [
        json.loads(line) for line in (run / "eval" / "metrics.jsonl").read_text().splitlines()
    ]
    evaluated = sorted(r["step"] for r in records if r["set"] == "uniform_id")
    assert evaluated == written  # every checkpoint, each once
    # ... and it ended because training had (not by waiting out stop_after_s)
    logs = "".join(
        p.read_text(errors="replace") for p in (tmp_path / "logs").rglob("*") if p.is_file()
    )
    assert "training finished, every checkpoint evaluated" in logs
