"""Nothing but a dataset's own files is ever deleted, a dataset never mixes parts of two configs,
and readers refuse a corrupt shard by name.

`overwrite=true` deletes only what datagen wrote (locally and on the S3 server), never at a bucket
root, `/` or a home directory; parts record the config that made them and the merge uses no other;
`iter_samples` (and eval's reader on it) checks each shard's sha256 before decoding it.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from datagen.__main__ import main
from datagen.config import DatagenConfig
from datagen.generate import run
from phyworld import storage
from phyworld.config import load_config
from phyworld.data.shards import DatasetError, delete_dataset_files, iter_samples, verify_manifest

REPO = Path(__file__).resolve().parents[2]
CONFIG = str(REPO / "configs" / "data" / "uniform_30k.yaml")
SMALL = ["resolution=16", "frames=4", "grid.v=4", "grid.r=2", "part_size=2", "progress=false"]


def cfg_of(*args: str) -> DatagenConfig:
    return load_config(DatagenConfig, [CONFIG, *SMALL, *args])


def datagen(capsys, *args: str) -> tuple[int, str]:
    """(exit status, stderr) of `python -m datagen CONFIG SMALL ARGS`."""
    code = main([CONFIG, *SMALL, *args])
    return code, capsys.readouterr().err


def tree(root: str) -> dict[str, str]:
    """Relative path -> sha256 of every file under a local or s3:// root."""
    return {
        name: hashlib.sha256(storage.read_bytes(storage.join(root, name))).hexdigest()
        for name in storage.list_files(root)
    }


def test_a_directory_of_other_files_is_never_written_or_deleted(tmp_path, capsys):
    out = tmp_path / "project"
    (out / "src").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "config.yaml").write_text("mine too")
    (out / "src" / "model.py").write_text("print('mine')")
    (out / "scratch").symlink_to(tmp_path)  # a link to a directory counts as a file of theirs
    before = tree(str(out))
    for args in ("", "overwrite=true", "overwrite=true mode=generate workers=2 worker=1"):
        code, err = datagen(capsys, f"output={out}", *args.split())
        assert code == 2 and "holds files that are not part of a phyworld dataset" in err, err
        assert all(f in err for f in ("notes.txt", "src/model.py", "scratch", "another output"))
        assert tree(str(out)) == before


def test_slurm_script_refuses_a_foreign_output_before_submitting(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    env = {**os.environ, "PHYWORLD_PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    env["PHYWORLD_SITE"] = str(tmp_path / "no-site.sh")  # no site settings, no sbatch reached
    result = subprocess.run(
        ["bash", str(REPO / "slurm" / "datagen.sh"), CONFIG, f"output={tmp_path}", "overwrite=true"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0 and "notes.txt" in result.stderr, result.stderr
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_overwrite_deletes_only_the_dataset_files(tmp_path, capsys):
    out = tmp_path / "ds"
    assert datagen(capsys, f"output={out}")[0] == 0
    (tmp_path / "ds-other").mkdir()  # a neighbour whose name starts the same
    (tmp_path / "ds-other" / "keep.txt").write_text("keep")
    (out / "parts" / ".part_00001.tmpab12cd" / "mds").mkdir(parents=True)  # a killed worker's
    (out / "parts" / ".part_00001.tmpab12cd" / "mds" / "shard.00000.mds").write_bytes(b"half")

    # A dataset with one foreign file in it: refused whole, nothing deleted.
    (out / "parts" / "README").write_text("my notes about this dataset")
    before = tree(str(out))
    code, err = datagen(capsys, f"output={out}", "overwrite=true", "seed=1")
    assert code == 2 and "parts/README" in err
    assert tree(str(out)) == before
    (out / "parts" / "README").unlink()

    assert datagen(capsys, f"output={out}", "overwrite=true", "seed=1")[0] == 0
    assert {s["params"]["seed"] for s in iter_samples(str(out))} == {1}
    assert not list(out.glob("parts/.part_*"))
    assert (tmp_path / "ds-other" / "keep.txt").read_text() == "keep"


def test_overwrite_never_deletes_at_a_home_or_filesystem_root(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home" / "alice"
    home.mkdir(parents=True)  # empty: refused for what it is, not for what it holds
    monkeypatch.setenv("HOME", str(home))
    for root in (home, tmp_path / "home", tmp_path / "home" / "bob"):
        code, err = datagen(capsys, f"output={root}", "overwrite=true")
        assert code == 2 and "is a home directory: overwrite=true never deletes there" in err, err
    assert not any(home.iterdir())
    # `/` only through the check itself and an empty deletion: a regression must not rm -rf /.
    with pytest.raises(DatasetError, match="is a filesystem root: overwrite=true never deletes"):
        delete_dataset_files("/", [])
    # Beneath home is where datasets go.
    assert datagen(capsys, f"output={home / 'data' / 'u'}", "overwrite=true")[0] == 0


def test_s3_overwrite_never_empties_a_bucket_or_a_foreign_prefix(s3_server, capsys):
    client = storage.s3_client()
    bucket = f"team-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key="alice/notes.txt", Body=b"mine")
    client.put_object(Bucket=bucket, Key="ds-other/keep.txt", Body=b"keep")

    code, err = datagen(capsys, f"output=s3://{bucket}", "overwrite=true")
    assert code == 2 and "is a whole bucket: overwrite=true never deletes at a bucket root" in err
    code, err = datagen(capsys, f"output=s3://{bucket}/alice", "overwrite=true")
    assert code == 2 and "alice" in err and "notes.txt" in err

    ds = f"s3://{bucket}/ds"
    assert datagen(capsys, f"output={ds}")[0] == 0
    assert datagen(capsys, f"output={ds}", "overwrite=true", "seed=1")[0] == 0
    assert {s["params"]["seed"] for s in iter_samples(ds)} == {1}
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {"alice/notes.txt", "ds-other/keep.txt"} <= keys


@pytest.mark.parametrize("where", ["local", "s3"])
def test_overwrite_with_workers_never_merges_parts_of_another_config(tmp_path, where, request):
    out = str(tmp_path / "u") if where == "local" else request.getfixturevalue("s3_url")
    run(cfg_of(f"output={out}", "seed=0"))  # 4 parts of seed 0
    new = ("seed=1", "overwrite=true", "workers=2")

    # Worker 0 finishes first: parts 1 and 3 are still seed 0's, so it must not merge them.
    run(cfg_of(f"output={out}", *new, "worker=0"))
    with pytest.raises(DatasetError, match=r"no manifest\.json"):
        verify_manifest(out)
    with pytest.raises(DatasetError, match=r"2 of 4 parts were made with another config.*1, 3"):
        run(cfg_of(f"output={out}", "seed=1", "mode=merge"))

    # Worker 1 finishes last and merges: seed 1 throughout, the bytes of a one-process run.
    run(cfg_of(f"output={out}", *new, "worker=1"))
    assert {s["params"]["seed"] for s in iter_samples(out)} == {1}
    fresh = str(tmp_path / "fresh")
    run(cfg_of(f"output={fresh}", "seed=1", f"name={Path(out).name}"))
    assert tree(out) == tree(fresh)


def flip_bytes(data: bytes) -> bytes:
    """The same size with 64 bytes inverted mid-file: only a checksum tells."""
    mid = len(data) // 2
    return data[:mid] + bytes(b ^ 0xFF for b in data[mid : mid + 64]) + data[mid + 64 :]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_readers_name_a_corrupt_shard(tmp_path, where, request):
    from eval.samples import iter_batches

    out = str(tmp_path / "u") if where == "local" else request.getfixturevalue("s3_url")
    run(cfg_of(f"output={out}"))
    name = "parts/part_00001/shard.00000.mds"
    url = storage.join(out, name)
    storage.write_bytes(url, flip_bytes(storage.read_bytes(url)))
    verify_manifest(out)  # sizes and index still match: only the checksum can tell
    message = rf"shard {re.escape(f'{name} of {out}')} does not match its sha256 in manifest.*Regen"
    with pytest.raises(DatasetError, match=message):
        list(iter_samples(out))
    with pytest.raises(DatasetError, match=message):  # eval's reader
        list(iter_batches(out, 2))
