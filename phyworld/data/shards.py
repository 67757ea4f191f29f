"""Samples -> MDS parts -> one dataset: writing, publishing, merging, verifying, reading.

Layout (ARCHITECTURE.md):

    ROOT/config.yaml          the resolved datagen config (run-only keys left out)
    ROOT/parts/part_KKKKK/    MDS written for part K (index.json + shards), DONE written last
    ROOT/index.json           merged MDS index over the parts (StreamingDataset reads ROOT)
    ROOT/manifest.json        written last: count, bytes, sha256 per shard

A part is built in a local temporary directory and only then published: renamed into place
(local) or uploaded with DONE last (S3). DONE names the config that made the part (the sha256 of
config.yaml): a part without DONE, or made with another config, is unfinished and is redone from
scratch, and the merge never uses it. A dataset without manifest.json is incomplete and readers
refuse it; readers check each shard against the manifest's sha256 when they first read it.

A root holds nothing else: datagen refuses to write into a directory (prefix) holding other
files, and `overwrite=true` deletes only the files listed above (`dataset_files`), never a bucket,
a filesystem root or a home directory (`delete_dataset_files`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from streaming import MDSWriter
from streaming.base.format.mds.encodings import _get_coder
from streaming.base.format.mds.reader import MDSReader

from phyworld import storage
from phyworld.cli import UserError
from phyworld.data.digest import sha256_bytes, sha256_file
from phyworld.data.schema import COLUMNS

DONE = "DONE"
MANIFEST = "manifest.json"
INDEX = "index.json"
CONFIG = "config.yaml"


class DatasetError(UserError, RuntimeError):
    """A dataset that is incomplete or does not match its manifest; the message says the fix."""


def part_name(k: int) -> str:
    return f"part_{k:05d}"


def part_url(root: str, k: int) -> str:
    return storage.join(root, "parts", part_name(k))


def config_sha256(config_yaml: str) -> str:
    """The identity of a dataset's config: what DONE and manifest.json record."""
    return sha256_bytes(config_yaml.encode())


def read_done(root: str, k: int) -> dict[str, Any] | None:
    """Part K's DONE marker, or None while the part is unfinished."""
    try:
        return json.loads(storage.read_bytes(storage.join(part_url(root, k), DONE)))
    except FileNotFoundError:
        return None


def part_done(root: str, k: int, config_yaml: str) -> bool:
    """Whether part K was published completely by this config (`config_yaml` as saved)."""
    done = read_done(root, k)
    return done is not None and done.get("config_sha256") == config_sha256(config_yaml)


class PartWriter:
    """Write one part's samples into a local temporary MDS directory, then publish it as
    ROOT/parts/part_K with DONE (count, shard sizes and checksums: what `merge` reads) last.

    `columns`: a sample's (`COLUMNS`) unless the dataset stores others (`training.encode`'s
    latents)."""

    def __init__(
        self,
        root: str,
        k: int,
        first_index: int,
        size_limit: int,
        config_yaml: str,
        columns: dict[str, str] = COLUMNS,
    ) -> None:
        self.root, self.k, self.first_index = root, k, first_index
        self.config_sha256 = config_sha256(config_yaml)
        # Local roots: a hidden temp dir beside the final one, so publishing is one rename.
        base = Path(root, "parts") if not storage.is_remote(root) else None
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{part_name(k)}.tmp", dir=base))
        self.mds = self.tmp / "mds"
        self.writer = MDSWriter(out=str(self.mds), columns=columns, size_limit=size_limit)
        # MDS builds a new coder for every value it encodes; ours are built once. Values that
        # are bytes already (frames, JSON) pass through untouched, as MDS passes them.
        self.coders = {key: _get_coder(encoding) for key, encoding in columns.items()}
        self.count = 0

    def write(self, sample: dict[str, Any]) -> None:
        self.writer.write(
            {
                key: value if isinstance(value, bytes) else self.coders[key].encode(value)
                for key, value in sample.items()
                if key in self.coders
            }
        )
        self.count += 1

    def publish(self) -> dict[str, Any]:
        """Finish the MDS files, write DONE (count, sizes, checksums) last, move into place."""
        self.writer.finish()
        shards = {
            p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(self.mds.iterdir())
            if p.name != INDEX
        }
        done = {
            "part": self.k,
            "config_sha256": self.config_sha256,
            "first_index": self.first_index,
            "count": self.count,
            "index_sha256": sha256_file(self.mds / INDEX),
            "shards": shards,
        }
        done_bytes = json.dumps(done, sort_keys=True, indent=1).encode()
        dest = part_url(self.root, self.k)
        if storage.is_remote(self.root):
            storage.remove(dest)  # leftovers of a killed attempt
            for p in sorted(self.mds.iterdir()):
                storage.upload_file(p, storage.join(dest, p.name))
            storage.write_bytes(storage.join(dest, DONE), done_bytes)
        else:
            storage.write_bytes(str(self.mds / DONE), done_bytes)
            storage.remove(dest)
            os.replace(self.mds, dest)
        shutil.rmtree(self.tmp)
        return done

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def clean_stale_temps(root: str, parts: range) -> None:
    """Remove temporary directories that killed workers left for `parts` (local roots). Only the
    caller's own parts: another worker may be writing its temporary directory right now."""
    if storage.is_remote(root):
        return
    base = Path(root, "parts")
    for k in parts:
        for p in base.glob(f".{part_name(k)}.tmp*"):
            shutil.rmtree(p, ignore_errors=True)


# Every file a dataset (datagen, or training.encode's latents) writes under its root, relative to
# it: the only files a root may hold and the only ones `overwrite=true` deletes.
_OWN_FILE = re.compile(
    r"(config\.yaml|index\.json|manifest\.json)"
    r"|\.(config\.yaml|index\.json|manifest\.json)\.tmp\w+"  # a killed write's temporary file
    r"|parts/part_\d{5,}/(DONE|index\.json|shard\.\d{5,}\.mds(\.zstd)?)"
    r"|parts/\.part_\d{5,}\.tmp\w+/.+"  # a killed worker's temporary directory
)
_SHOWN = 5  # foreign files named in an error (listing stops there: a root may be a whole disk)


def dataset_files(root: str) -> list[str]:
    """Relative paths of the dataset files under ROOT ([] if it does not exist).

    Raises `DatasetError` naming the first few other files: datagen neither writes into nor
    deletes from a directory (prefix) that holds anything it did not write.
    """
    own, foreign = [], []
    for name in _walk(root):
        (own if _OWN_FILE.fullmatch(name) else foreign).append(name)
        if len(foreign) == _SHOWN:
            break
    if foreign:
        raise DatasetError(
            f"output={root} holds files that are not part of a phyworld dataset "
            f"({', '.join(foreign)}{', ...' if len(foreign) == _SHOWN else ''}); datagen writes "
            f"only into a new or empty directory (prefix) or an existing dataset, and "
            f"overwrite=true deletes only a dataset's own files: choose another output"
        )
    return own


def _walk(root: str) -> Iterator[str]:
    """Relative paths of the files under ROOT, lazily (a caller may stop early)."""
    if storage.is_remote(root):
        bucket, key = storage.split_s3(root)
        prefix = f"{key}/" if key else ""
        pages = (
            storage.s3_client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=prefix)
        )
        for page in pages:
            yield from (o["Key"][len(prefix) :] for o in page.get("Contents", []))
        return
    if Path(root).is_file():
        raise DatasetError(f"output={root} is a file, not a dataset directory; choose another")
    for dirpath, dirs, files in os.walk(root):
        links = [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]  # not walked into
        for f in files + links:
            yield os.path.relpath(os.path.join(dirpath, f), root)


def delete_dataset_files(root: str, names: list[str]) -> None:
    """Delete these files of the dataset at ROOT (names from `dataset_files`), then the local
    directories they leave empty. Never at a bucket root, `/`, a home directory or above one."""
    check_deletable(root)
    if not all(_OWN_FILE.fullmatch(n) for n in names):  # a caller bug, not a user error
        raise ValueError(f"not dataset files: {[n for n in names if not _OWN_FILE.fullmatch(n)]}")
    if storage.is_remote(root):
        bucket, key = storage.split_s3(root)
        keys = [f"{key}/{n}" if key else n for n in names]
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[i : i + 1000]]
            storage.s3_client().delete_objects(Bucket=bucket, Delete={"Objects": chunk})
        return
    base = Path(root)
    for name in names:
        (base / name).unlink(missing_ok=True)
    dirs = {d for n in names for d in (base / n).parents if base in d.parents}
    for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):  # deepest first
        with contextlib.suppress(OSError):  # not empty: someone's files are still in it
            d.rmdir()


def check_deletable(root: str) -> None:
    """`DatasetError` if ROOT is a whole bucket, a filesystem root or a home directory (or one of
    its parents): whatever they hold, overwrite=true must never delete there."""
    if storage.is_remote(root):
        bucket, key = storage.split_s3(root)
        if not key:
            raise DatasetError(
                f"output={root} is a whole bucket: overwrite=true never deletes at a bucket root; "
                f"give the dataset its own prefix, e.g. output=s3://{bucket}/NAME"
            )
        return
    path = Path(root).expanduser().resolve()
    home = Path.home().resolve()
    # Yours, one above it, or one beside it (/home/bob beside /home/alice; beside /root are
    # only top-level directories, not homes).
    another_home = home.parent.parent != home.parent and path.parent == home.parent
    if path == home or path in home.parents or another_home or path.parent == path:
        raise DatasetError(
            f"output={root} is {'a filesystem root' if path.parent == path else 'a home directory'}"
            f": overwrite=true never deletes there; give the dataset its own directory, e.g. "
            f"output={path / 'NAME'}"
        )


def merge(root: str, num_parts: int, config_yaml: str) -> dict[str, Any]:
    """Merge finished parts 0..num_parts-1 into ROOT/index.json, then write ROOT/manifest.json.

    Raises `DatasetError` naming the unfinished parts and those made with another config.
    """
    dones, missing, foreign = [], [], []
    for k in range(num_parts):
        done = read_done(root, k)
        if done is None:
            missing.append(k)
        elif done.get("config_sha256") != config_sha256(config_yaml):
            foreign.append(k)
        dones.append(done)
    if foreign:
        raise DatasetError(
            f"{root}: {len(foreign)} of {num_parts} parts were made with another config than "
            f"this one ({_ranges(foreign)}; e.g. an earlier seed): re-run their workers with this "
            f"config and overwrite=true (`python -m datagen CONFIG mode=generate overwrite=true "
            f"workers=N worker=K`), then merge again"
        )
    if missing:
        raise DatasetError(
            f"{root}: {len(missing)} of {num_parts} parts are not finished ({_ranges(missing)}); "
            f"re-run the workers (`python -m datagen CONFIG mode=generate`), then merge again"
        )
    shards, manifest_shards, count, total = [], {}, 0, 0
    for k, done in enumerate(dones):
        index = json.loads(storage.read_bytes(storage.join(part_url(root, k), INDEX)))
        for shard in index["shards"]:
            for key in ("raw_data", "zip_data"):
                if shard.get(key):
                    shard[key]["basename"] = f"parts/{part_name(k)}/{shard[key]['basename']}"
            shards.append(shard)
        for name, info in done["shards"].items():
            manifest_shards[f"parts/{part_name(k)}/{name}"] = info
            total += info["bytes"]
        count += done["count"]
    index_bytes = json.dumps({"shards": shards, "version": 2}, sort_keys=True, indent=1).encode()
    manifest = {
        "count": count,
        "bytes": total,
        "parts": num_parts,
        "index_sha256": sha256_bytes(index_bytes),
        "config_sha256": config_sha256(config_yaml),
        "shards": manifest_shards,
    }
    storage.write_bytes(storage.join(root, INDEX), index_bytes)
    storage.write_bytes(
        storage.join(root, MANIFEST), json.dumps(manifest, sort_keys=True, indent=1).encode()
    )
    return manifest


def _ranges(ks: list[int]) -> str:
    shown = ", ".join(map(str, ks[:10]))
    return f"parts {shown}{', ...' if len(ks) > 10 else ''}"


def read_manifest(root: str) -> dict[str, Any]:
    """ROOT/manifest.json, or `DatasetError` saying the dataset does not exist or is incomplete."""
    try:
        return json.loads(storage.read_bytes(storage.join(root, MANIFEST)))
    except FileNotFoundError:
        if not storage.list_files(root):
            raise DatasetError(
                f"dataset {root} does not exist (nothing is there): check the path, or write it "
                f"with `python -m datagen CONFIG output={root}`"
            ) from None
        raise DatasetError(
            f"{root} has no {MANIFEST}: the dataset is incomplete (generation unfinished or the "
            f"merge not run). Finish it with `python -m datagen CONFIG` (or mode=merge after a "
            f"job array)"
        ) from None


def verify_manifest(root: str, checksums: bool = False) -> dict[str, Any]:
    """Check that ROOT is a complete dataset matching its manifest; return the manifest.

    Always: the index matches its recorded sha256 and every shard exists with its recorded size.
    `checksums=True` also hashes every shard (reads the whole dataset).
    """
    manifest = read_manifest(root)
    index_bytes = storage.read_bytes(storage.join(root, INDEX))
    if sha256_bytes(index_bytes) != manifest["index_sha256"]:
        raise DatasetError(
            f"{root}/{INDEX} does not match {MANIFEST}: the dataset was modified after it was "
            f"made; regenerate it with `python -m datagen CONFIG overwrite=true`"
        )
    sizes = _file_sizes(root)
    bad = [name for name, info in manifest["shards"].items() if sizes.get(name) != info["bytes"]]
    if checksums:
        bad += [
            name
            for name, info in manifest["shards"].items()
            if name not in bad
            and sha256_bytes(storage.read_bytes(storage.join(root, name))) != info["sha256"]
        ]
    if bad:
        raise DatasetError(
            f"{root}: {len(bad)} shard(s) missing or corrupt ({', '.join(bad[:5])}); regenerate "
            f"with `python -m datagen CONFIG overwrite=true`"
        )
    return manifest


def _file_sizes(root: str) -> dict[str, int]:
    if storage.is_remote(root):
        bucket, key = storage.split_s3(root)
        prefix = f"{key}/" if key else ""
        sizes = {}
        pages = (
            storage.s3_client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=bucket, Prefix=prefix)
        )
        for page in pages:
            sizes.update({o["Key"][len(prefix) :]: o["Size"] for o in page.get("Contents", [])})
        return sizes
    base = Path(root)
    return {
        str(p.relative_to(base)): p.stat().st_size for p in base.glob("parts/*/*") if p.is_file()
    }


def shard_error(root: str, name: str) -> DatasetError:
    """The error for a shard of ROOT whose bytes differ from its sha256 in the manifest."""
    return DatasetError(
        f"shard {name} of {root} does not match its sha256 in {MANIFEST}: the file is corrupt "
        f"(changed on disk or in transit). Regenerate the dataset (`python -m datagen CONFIG "
        f"overwrite=true`) or copy it again from a good copy"
    )


def iter_samples(root: str, verify: bool = True) -> Iterator[dict[str, Any]]:
    """Every sample of ROOT in index order, as dicts of numpy arrays / str / JSON objects.

    `frames` is (T, H, W, 3) uint8. Works for local and s3:// roots (shards are read whole).
    `verify`: the dataset must match its manifest, and each shard its sha256 before it is decoded.
    """
    manifest = verify_manifest(root) if verify else None
    index = json.loads(storage.read_bytes(storage.join(root, INDEX)))
    for shard in index["shards"]:
        reader = MDSReader.from_json("", None, shard)
        name = shard["raw_data"]["basename"]
        data = storage.read_bytes(storage.join(root, name))
        if manifest and sha256_bytes(data) != manifest["shards"][name]["sha256"]:
            raise shard_error(root, name)
        n = int(np.frombuffer(data, np.uint32, 1)[0])
        offsets = np.frombuffer(data, np.uint32, n + 1, offset=4)
        for i in range(n):
            yield reader.decode_sample(data[offsets[i] : offsets[i + 1]])
