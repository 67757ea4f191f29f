"""Finding the newest good checkpoint: partial, truncated and corrupt ones are skipped with a warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from phyworld.storage import write_bytes
from training.checkpoint import COMPLETE, LATEST, is_complete, latest, prune, step_dir


def fake_checkpoint(run: Path, step: int, complete: bool = True) -> Path:
    """A checkpoint directory with two files and, if `complete`, its COMPLETE marker."""
    path = step_dir(run, step)
    (path / "deepspeed").mkdir(parents=True)
    (path / "deepspeed" / "optim.pt").write_bytes(b"x" * 100)
    (path / "meta.json").write_text(json.dumps({"step": step}))
    if complete:
        sizes = {"deepspeed/optim.pt": 100, "meta.json": (path / "meta.json").stat().st_size}
        (path / COMPLETE).write_text(json.dumps(sizes))
        write_bytes(run / "checkpoints" / LATEST, path.name.encode())
    return path


def test_latest_follows_the_pointer(tmp_path: Path) -> None:
    assert latest(tmp_path) is None
    fake_checkpoint(tmp_path, 10)
    good = fake_checkpoint(tmp_path, 20)
    assert latest(tmp_path) == good


def test_a_checkpoint_without_complete_is_never_read(tmp_path: Path) -> None:
    good = fake_checkpoint(tmp_path, 10)
    fake_checkpoint(tmp_path, 20, complete=False)  # crashed before COMPLETE; `latest` still says 10
    assert latest(tmp_path) == good
    (tmp_path / "checkpoints" / LATEST).write_text("step_00000020")  # pointer to a partial one
    with pytest.warns(UserWarning, match="step_00000020 is incomplete or corrupt"):
        assert latest(tmp_path) == good


def test_truncated_file_is_detected(tmp_path: Path) -> None:
    good = fake_checkpoint(tmp_path, 10)
    bad = fake_checkpoint(tmp_path, 20)
    (bad / "deepspeed" / "optim.pt").write_bytes(b"x" * 40)  # e.g. a full disk
    assert not is_complete(bad)
    with pytest.warns(UserWarning, match="step_00000020"):
        assert latest(tmp_path) == good
    (bad / "deepspeed" / "optim.pt").unlink()
    with pytest.warns(UserWarning):
        assert latest(tmp_path) == good


def test_corrupt_marker_and_missing_pointer(tmp_path: Path) -> None:
    good = fake_checkpoint(tmp_path, 10)
    bad = fake_checkpoint(tmp_path, 20)
    (bad / COMPLETE).write_text("{not json")
    (tmp_path / "checkpoints" / LATEST).unlink()
    with pytest.warns(UserWarning):
        assert latest(tmp_path) == good


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        fake_checkpoint(tmp_path, step)
    partial = fake_checkpoint(tmp_path, 50, complete=False)
    (tmp_path / "checkpoints" / ".tmp_step_00000060" / "deepspeed").mkdir(parents=True)
    prune(tmp_path / "checkpoints", keep_last=2)
    left = sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*"))
    assert left == ["step_00000030", "step_00000040", partial.name]
    assert not (tmp_path / "checkpoints" / ".tmp_step_00000060").exists()


def test_write_atomic_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "latest"
    write_bytes(target, b"step_00000010")
    write_bytes(target, b"step_00000020")
    assert target.read_bytes() == b"step_00000020"
    assert [p.name for p in tmp_path.iterdir()] == ["latest"]  # no temporary left behind
