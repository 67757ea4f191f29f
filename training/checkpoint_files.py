"""A checkpoint's files: hashed while written, loaded weights-only, listed with their sha256 in
the manifest `COMPLETE`, verified before they are read, and deleted crash-safely.

Nothing here knows DeepSpeed or process groups (`training.checkpoint` does). `COMPLETE` is JSON
`{relative path: {"size": bytes, "sha256": hex}}` over every file of the checkpoint directory;
`is_complete` checks sizes (cheap: finding checkpoints), `verify` checks content (before a load).
A checkpoint is deleted by renaming it to a `.trash_*` name no reader looks at and then deleting
the files its manifest lists, so a kill half-way leaves trash, never a half-deleted `step_*`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import torch

from phyworld.cli import UserError
from phyworld.data.digest import sha256_file
from phyworld.storage import fsync_path, write_bytes

COMPLETE = "COMPLETE"
TRASH = ".trash_"  # prefix of checkpoints being deleted: never read, finished on sight


class CheckpointError(UserError, RuntimeError):
    """A checkpoint that cannot be used as asked; the message says what to do."""


# ---------------------------------------------------------------------------------------------
#                       Files: hashed while written, loaded weights-only
# ---------------------------------------------------------------------------------------------


class _HashingWriter:
    """A write-only file that hashes the bytes passing through. It has no `fileno`, so torch.save
    cannot bypass `write`."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def write_hashed(path: Path, write: Callable[[Any], object]) -> str:
    """Create `path` with `write(file)`, fsync it, and return the sha256 of the bytes written."""
    with open(path, "wb") as f:
        out = _HashingWriter(f)
        write(out)
        f.flush()
        os.fsync(f.fileno())
    return out.sha256.hexdigest()


def torch_save(obj: Any, path: Path, zipfile: bool = True) -> str:
    """`torch.save` to `path`, fsynced; returns the file's sha256 (no second read)."""
    return write_hashed(path, lambda f: torch.save(obj, f, _use_new_zipfile_serialization=zipfile))


def torch_load(path: Path, map_location: Any = "cpu", safe_globals: Iterable[Any] = ()) -> Any:
    """`torch.load(weights_only=True)`: tensors, plain containers and `safe_globals` only.

    Anything else (a pickle that would call code) is refused with a `CheckpointError`."""
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f"it would call {found.group(1)}" if found else str(err).splitlines()[0]
        raise CheckpointError(
            f"refusing to load {path}: it holds more than tensors and plain containers ({what}). "
            "phyworld never writes such a file, so it was altered or comes from elsewhere: do not "
            "load it; remove or replace the checkpoint directory holding it"
        ) from None
    except (RuntimeError, EOFError) as err:  # not a torch file (a zip or pickle error)
        raise CheckpointError(
            f"cannot read {path} as a torch checkpoint ({str(err).splitlines()[0]}); remove or "
            "replace the checkpoint directory holding it"
        ) from None


# ---------------------------------------------------------------------------------------------
#                           The manifest (COMPLETE) and verification
# ---------------------------------------------------------------------------------------------


def write_manifest(root: Path, digests: dict[str, str]) -> None:
    """Write `COMPLETE`: size and sha256 of every file under `root`. Files not in `digests`
    (e.g. the scripts DeepSpeed copies next to its checkpoint) are fsynced and hashed here."""
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel == COMPLETE:  # an older manifest being replaced
            continue
        if path.is_dir() or rel not in digests:
            fsync_path(path)  # written outside `write_hashed`, or a directory's entries
        if path.is_file():
            files[rel] = {
                "size": path.stat().st_size,
                "sha256": digests.get(rel) or sha256_file(path),
            }
    write_bytes(root / COMPLETE, json.dumps(files, indent=1).encode())


def read_manifest(path: Path) -> dict[str, dict[str, Any]] | None:
    """`{relative path: {"size", "sha256"}}` from `path/COMPLETE`, or None without a valid one."""
    try:
        files = json.loads((path / COMPLETE).read_text())
    except (OSError, ValueError):
        return None
    valid = isinstance(files, dict) and all(
        _inside(rel)
        and isinstance(e, dict)
        and isinstance(e.get("size"), int)
        and isinstance(e.get("sha256"), str)
        for rel, e in files.items()
    )
    return files if valid else None


def _inside(rel: str) -> bool:
    """A relative path that stays inside the checkpoint (a manifest naming `../x` is not ours)."""
    return not Path(rel).is_absolute() and ".." not in Path(rel).parts


def is_complete(path: Path) -> bool:
    """True when `COMPLETE` is valid and every file it lists has the size it recorded (cheap: no
    hashing; `verify` checks the content)."""
    files = read_manifest(path)
    try:
        return files is not None and all(
            (path / rel).stat().st_size == e["size"] for rel, e in files.items()
        )
    except OSError:
        return False


def verify(path: Path, names: Iterable[str] | None = None) -> list[str]:
    """Problems with the files `names` (default: all) of checkpoint `path`, one line each: not
    listed in COMPLETE, unreadable, or sha256 unlike the manifest's. Empty: all intact."""
    files = read_manifest(path)
    if files is None:
        return [f"{COMPLETE}: missing or not a valid manifest"]
    problems = []
    for rel in sorted(files if names is None else names):
        if rel not in files:
            problems.append(f"{rel}: not listed in {COMPLETE}")
            continue
        try:
            digest = sha256_file(path / rel)
        except OSError as err:
            problems.append(f"{rel}: {err.strerror or err}")
            continue
        if digest != files[rel]["sha256"]:
            problems.append(f"{rel}: content differs from {COMPLETE} (sha256 {digest[:12]}...)")
    return problems


def raise_if_corrupt(path: Path, problems: list[str]) -> None:
    """Raise a `CheckpointError` naming the checkpoint and each problem `verify` found, if any."""
    if problems:
        raise CheckpointError(
            f"checkpoint {path} is corrupt ({'; '.join(problems)}): its bytes changed after "
            "training wrote them. Use another checkpoint (e.g. the previous step_*)"
        )


# ---------------------------------------------------------------------------------------------
#                                     Crash-safe deletion
# ---------------------------------------------------------------------------------------------


def discard(path: Path) -> None:
    """Delete a checkpoint of ours, crash-safe: one atomic rename to a `.trash_*` name that no
    reader looks at, then the files its manifest lists; a kill half-way leaves only trash."""
    trash = Path(tempfile.mkdtemp(prefix=f"{TRASH}{path.name}.", dir=path.parent))
    os.replace(path, trash)  # onto the empty directory mkdtemp made: a unique name
    fsync_path(path.parent)
    _empty_trash(trash)


def clean_leftovers(root: Path) -> None:
    """Finish what a killed process left: the temporary directory of a save, trash of a prune."""
    for crashed in root.glob(".tmp_step_*"):  # made by `save` alone: all of it is ours
        shutil.rmtree(crashed, ignore_errors=True)
    for trash in root.glob(f"{TRASH}*"):
        _empty_trash(trash)


def _empty_trash(trash: Path) -> None:
    """Delete the files the manifest lists, the manifest last, then the emptied directories.
    Anything else (not written by training) stays, with a warning."""
    for rel in read_manifest(trash) or {}:
        file = trash / rel
        if file.parent.resolve().is_relative_to(trash.resolve()):  # no symlinked way out
            file.unlink(missing_ok=True)
    (trash / COMPLETE).unlink(missing_ok=True)
    dirs = [p for p in trash.rglob("*") if p.is_dir() and not p.is_symlink()]
    for d in sorted(dirs, key=lambda p: -len(p.parts)):  # deepest first
        if not any(d.iterdir()):
            d.rmdir()
    if any(trash.iterdir()):
        left = sorted(str(p.relative_to(trash)) for p in trash.rglob("*") if p not in dirs)
        warnings.warn(
            f"{trash} (a pruned checkpoint) still holds files training did not write: "
            f"{', '.join(left[:5])}; move them out or delete the directory yourself",
            stacklevel=2,
        )
    else:
        trash.rmdir()
