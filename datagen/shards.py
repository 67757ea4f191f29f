"""Samples -> MDS parts -> one dataset: writing, publishing, merging, verifying, reading.

Layout (ARCHITECTURE.md):

    ROOT/config.yaml          the resolved datagen config (run-only keys left out)
    ROOT/parts/part_KKKKK/    MDS written for part K (index.json + shards), DONE written last
    ROOT/index.json           merged MDS index over the parts (StreamingDataset reads ROOT)
    ROOT/manifest.json        written last: count, bytes, sha256 per shard

A part is built in a local temporary directory and only then published: renamed into place
(local) or uploaded with DONE last (S3). A part without DONE is unfinished and is redone from
scratch; a dataset without manifest.json is incomplete and readers refuse it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from streaming import MDSWriter
from streaming.base.format.mds.encodings import _get_coder
from streaming.base.format.mds.reader import MDSReader

from datagen.schema import COLUMNS
from phyworld import storage
from phyworld.cli import UserError

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


def part_done(root: str, k: int) -> bool:
    """Whether part K was published completely."""
    return storage.exists(storage.join(part_url(root, k), DONE))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class PartWriter:
    """Write one part's samples into a local temporary MDS directory, then publish it."""

    def __init__(self, root: str, k: int, first_index: int, size_limit: int) -> None:
        self.root, self.k, self.first_index = root, k, first_index
        # Local roots: a hidden temp dir beside the final one, so publishing is one rename.
        base = Path(root, "parts") if not storage.is_remote(root) else None
        if base is not None:
            base.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{part_name(k)}.tmp", dir=base))
        self.mds = self.tmp / "mds"
        self.writer = MDSWriter(out=str(self.mds), columns=COLUMNS, size_limit=size_limit)
        # MDS builds a new coder for every value it encodes; ours are built once. Values that
        # are bytes already (frames, JSON) pass through untouched, as MDS passes them.
        self.coders = {key: _get_coder(encoding) for key, encoding in COLUMNS.items()}
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
            p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(self.mds.iterdir())
            if p.name != INDEX
        }
        done = {
            "part": self.k,
            "first_index": self.first_index,
            "count": self.count,
            "index_sha256": _sha256(self.mds / INDEX),
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


def merge(root: str, num_parts: int, config_yaml: str) -> dict[str, Any]:
    """Merge finished parts 0..num_parts-1 into ROOT/index.json, then write ROOT/manifest.json.

    Raises `DatasetError` naming the unfinished parts.
    """
    dones, missing = [], []
    for k in range(num_parts):
        try:
            dones.append(json.loads(storage.read_bytes(storage.join(part_url(root, k), DONE))))
        except FileNotFoundError:
            missing.append(k)
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
        "index_sha256": hashlib.sha256(index_bytes).hexdigest(),
        "config_sha256": hashlib.sha256(config_yaml.encode()).hexdigest(),
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
    if hashlib.sha256(index_bytes).hexdigest() != manifest["index_sha256"]:
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
            and hashlib.sha256(storage.read_bytes(storage.join(root, name))).hexdigest()
            != info["sha256"]
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


def iter_samples(root: str, verify: bool = True) -> Iterator[dict[str, Any]]:
    """Every sample of ROOT in index order, as dicts of numpy arrays / str / JSON objects.

    `frames` is (T, H, W, 3) uint8. Works for local and s3:// roots (shards are read whole).
    """
    if verify:
        verify_manifest(root)
    index = json.loads(storage.read_bytes(storage.join(root, INDEX)))
    for shard in index["shards"]:
        reader = MDSReader.from_json("", None, shard)
        data = storage.read_bytes(storage.join(root, shard["raw_data"]["basename"]))
        n = int(np.frombuffer(data, np.uint32, 1)[0])
        offsets = np.frombuffer(data, np.uint32, n + 1, offset=4)
        for i in range(n):
            yield reader.decode_sample(data[offsets[i] : offsets[i + 1]])
