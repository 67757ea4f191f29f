"""phyworld.storage: the same small API over local paths and s3:// (a real moto server)."""

from __future__ import annotations

import hashlib
import os
import stat

import pytest

from phyworld import storage


@pytest.fixture(params=["local", "s3"])
def root(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "root")
    return request.getfixturevalue("s3_url")


def test_write_read_list_remove(root):
    assert storage.list_files(root) == [] and not storage.exists(storage.join(root, "a.txt"))
    storage.write_text(storage.join(root, "a.txt"), "one")
    storage.write_bytes(storage.join(root, "sub", "b.bin"), b"\x00\x01")
    storage.write_text(storage.join(root, "a.txt"), "two")  # replaced whole
    assert storage.read_text(storage.join(root, "a.txt")) == "two"
    assert storage.read_bytes(storage.join(root, "sub", "b.bin")) == b"\x00\x01"
    assert storage.list_files(root) == ["a.txt", "sub/b.bin"]
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(storage.join(root, "missing"))
    storage.remove(storage.join(root, "sub"))
    assert storage.list_files(root) == ["a.txt"]
    storage.remove(root)
    assert storage.list_files(root) == []


def test_upload_download(root, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(1000))
    storage.upload_file(src, storage.join(root, "x.bin"))
    storage.download_file(storage.join(root, "x.bin"), tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()


def test_local_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "d" / "f.json"
    storage.write_text(str(path), "old")

    with pytest.raises(TypeError):  # the write fails after the temporary file exists
        storage.write_bytes(str(path), "not bytes")  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.json"]


def test_check_reachable(tmp_path, s3_server):
    storage.check_reachable(str(tmp_path / "new" / "dir"))  # creatable
    (tmp_path / "file").write_text("x")
    with pytest.raises(storage.StorageError, match="not a writable directory"):
        storage.check_reachable(str(tmp_path / "file" / "sub"))
    storage.check_reachable("s3://phyworld-test/prefix")
    with pytest.raises(storage.StorageError, match="cannot reach bucket 'nope'"):
        storage.check_reachable("s3://nope/prefix")
    with pytest.raises(storage.StorageError, match="no bucket name"):
        storage.split_s3("s3:///key")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_files_follow_the_umask(tmp_path, umask):
    # Teammates read shared datasets and runs: nothing may be 0600 whatever the umask allows.
    from harness import make_dataset

    from eval.fvd import _download

    weights = tmp_path.parent / f"{tmp_path.name}-weights.bin"
    weights.write_bytes(b"weights")
    old = os.umask(umask)
    try:
        storage.write_text(str(tmp_path / "run" / "checkpoints" / "latest"), "step_00000010")
        make_dataset(tmp_path / "data", count=8, frames=4, resolution=16)
        _download(
            weights.as_uri(), tmp_path / "cache" / "i3d.pt", hashlib.sha256(b"weights").hexdigest()
        )
    finally:
        os.umask(old)
    paths = sorted(tmp_path.rglob("*"))
    assert len([p for p in paths if p.is_file()]) >= 7  # marker, weights, dataset files
    for p in paths:
        expected = (0o777 if p.is_dir() else 0o666) & ~umask
        assert oct(stat.S_IMODE(p.stat().st_mode)) == oct(expected), p
