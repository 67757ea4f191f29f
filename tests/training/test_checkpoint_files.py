"""Finding the newest good checkpoint (partial, truncated and corrupt ones are skipped with a
warning), the manifest's content hashes, and pruning that a kill cannot leave half done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from harness import REPO, flip, train_env

from phyworld.storage import write_bytes
from training.checkpoint import LATEST, latest, prune, resume, step_dir
from training.checkpoint_files import (
    COMPLETE,
    CheckpointError,
    clean_leftovers,
    is_complete,
    verify,
    write_manifest,
)


def fake_checkpoint(run: Path, step: int, complete: bool = True) -> Path:
    """A checkpoint directory with three files and, if `complete`, its COMPLETE manifest."""
    path = step_dir(run, step)
    (path / "deepspeed").mkdir(parents=True)
    (path / "deepspeed" / "optim.pt").write_bytes(b"x" * 100)
    (path / "rank_00000.pt").write_bytes(os.urandom(300))
    (path / "meta.json").write_text(json.dumps({"step": step}))
    if complete:
        write_manifest(path, {})
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
    sizes_only = {"deepspeed/optim.pt": 100}  # the marker before content hashes: not trusted
    (bad / COMPLETE).write_text(json.dumps(sizes_only))
    assert not is_complete(bad)


def test_a_pointer_outside_the_checkpoints_is_ignored(tmp_path: Path) -> None:
    good = fake_checkpoint(tmp_path, 10)
    elsewhere = fake_checkpoint(tmp_path / "other", 99)
    (tmp_path / "checkpoints" / LATEST).write_text(f"../other/checkpoints/{elsewhere.name}")
    with pytest.warns(UserWarning, match="which is not a checkpoint here"):
        assert latest(tmp_path) == good


def test_manifest_hashes_find_flipped_bytes_sizes_cannot(tmp_path: Path) -> None:
    path = fake_checkpoint(tmp_path, 10)
    manifest = json.loads((path / COMPLETE).read_text())
    assert sorted(manifest) == ["deepspeed/optim.pt", "meta.json", "rank_00000.pt"]
    assert verify(path) == []
    flip(path / "rank_00000.pt")
    assert is_complete(path)  # the same sizes: a size check passes
    (problem,) = verify(path)
    assert problem.startswith("rank_00000.pt: content differs from COMPLETE")
    assert verify(path, ["meta.json"]) == []  # a reader checks only what it reads
    assert verify(path, ["weights.pt"]) == ["weights.pt: not listed in COMPLETE"]


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    for step in (10, 20, 30, 40):
        fake_checkpoint(tmp_path, step)
    partial = fake_checkpoint(tmp_path, 50, complete=False)
    (tmp_path / "checkpoints" / ".tmp_step_00000060" / "deepspeed").mkdir(parents=True)
    prune(tmp_path / "checkpoints", keep_last=2)
    clean_leftovers(tmp_path / "checkpoints")
    left = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert left == [LATEST, "step_00000030", "step_00000040", partial.name]


# A prune killed after deleting one file. `os.unlink` is what both a plain recursive delete and
# the trash deletion call, so the hook fires in either design.
KILLED_PRUNE = """
import os, signal, sys
from pathlib import Path
from training.checkpoint import prune
unlink, calls = os.unlink, []
def killing_unlink(*args, **kwargs):
    calls.append(args)
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    unlink(*args, **kwargs)
os.unlink = killing_unlink
prune(Path(sys.argv[1]), keep_last=1)
"""


def test_a_prune_killed_half_way_leaves_trash_that_is_never_read(tmp_path: Path) -> None:
    old = fake_checkpoint(tmp_path, 10)
    new = fake_checkpoint(tmp_path, 20)
    root = tmp_path / "checkpoints"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_PRUNE, str(root)], env=train_env(), cwd=REPO, timeout=120
    )
    assert killed.returncode == -signal.SIGKILL
    assert not old.exists()  # no half-deleted step_* directory
    (trash,) = root.glob(".trash_step_00000010*")
    assert (trash / COMPLETE).is_file()  # the manifest goes last: it says what is left to delete
    assert len([p for p in trash.rglob("*") if p.is_file()]) == 3  # one of 3 files + COMPLETE gone
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even looked at
        assert latest(tmp_path) == new
    clean_leftovers(root)  # what the next save or start does
    assert sorted(p.name for p in root.iterdir()) == [LATEST, new.name]
    assert verify(new) == []


def test_prune_deletes_only_what_training_wrote(tmp_path: Path) -> None:
    old = fake_checkpoint(tmp_path, 10)
    fake_checkpoint(tmp_path, 20)
    (old / "deepspeed" / "my_notes.txt").write_text("not written by training")
    with pytest.warns(
        UserWarning, match=r"still holds files training did not write: deepspeed/my_notes.txt"
    ):
        prune(tmp_path / "checkpoints", keep_last=1)
    (trash,) = (tmp_path / "checkpoints").glob(".trash_step_00000010*")
    assert [p.name for p in trash.rglob("*") if p.is_file()] == ["my_notes.txt"]
    assert latest(tmp_path).name == "step_00000020"


def test_a_crash_mid_write_leaves_the_old_file(tmp_path: Path) -> None:
    """`latest` rewritten by a process that dies after writing the new bytes but before they
    replace the old file (its fsync kills it): the old pointer survives whole."""
    import subprocess
    import sys

    target = tmp_path / "latest"
    write_bytes(target, b"step_00000010")
    crash = (
        "import os\n"
        "from phyworld.storage import write_bytes\n"
        "os.fsync = lambda fd: os._exit(3)  # the bytes are written; die before the rename\n"
        f"write_bytes({str(target)!r}, b'step_00000020')\n"
    )
    repo = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", crash], cwd=repo).returncode == 3
    assert target.read_bytes() == b"step_00000010"
    # The new bytes went only to a temporary beside it, which no reader takes for `latest`.
    (temp,) = [p for p in tmp_path.iterdir() if p != target]
    assert temp.name.startswith(".latest.tmp") and temp.read_bytes() == b"step_00000020"
    write_bytes(target, b"step_00000020")  # the next write succeeds beside the leftover
    assert target.read_bytes() == b"step_00000020"


def test_a_crafted_manifest_cannot_make_prune_delete_outside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("keep me")
    old = fake_checkpoint(tmp_path, 10)
    fake_checkpoint(tmp_path, 20)
    (old / "link").symlink_to(outside)  # a way out, listed in a forged manifest
    files = json.loads((old / COMPLETE).read_text())
    files["link/victim.txt"] = {"size": 7, "sha256": "forged"}
    (old / COMPLETE).write_text(json.dumps(files))
    with pytest.warns(UserWarning, match="did not write: link"):
        prune(tmp_path / "checkpoints", keep_last=1)
    assert (outside / "victim.txt").read_text() == "keep me"
    files["../../outside/victim.txt"] = files.pop("link/victim.txt")
    (old.parent / "step_00000005").mkdir()
    (old.parent / "step_00000005" / COMPLETE).write_text(json.dumps(files))
    assert not is_complete(old.parent / "step_00000005")  # such a manifest is not ours


def test_resume_sets_corrupt_checkpoints_aside_and_never_starts_over(
    tmp_path: Path, process_group
) -> None:
    root = tmp_path / "checkpoints"
    for step in (10, 20):
        flip(fake_checkpoint(tmp_path, step) / "rank_00000.pt")
    leftover = root / ".trash_step_00000005.abc"
    leftover.mkdir()
    with pytest.warns(UserWarning) as seen, pytest.raises(CheckpointError) as err:
        resume(tmp_path, engine=None, ema=None, loader=None, cfg=None, shape=None)
    assert "no intact checkpoint" in str(err.value) and "resume=false" in str(err.value)
    messages = [str(w.message) for w in seen]
    for step in (20, 10):  # newest first, each named with its file
        assert any(
            f"step_{step:08d} is corrupt, not resuming from it: rank_00000.pt" in m
            for m in messages
        )
    names = sorted(p.name for p in root.iterdir())
    assert names == ["corrupt_step_00000010", "corrupt_step_00000020", LATEST]  # kept, trash gone
