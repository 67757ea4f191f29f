"""Local paths and `s3://bucket/key` URLs behind one small API, with atomic writes.

Local writes go to a temporary file in the same directory, are fsynced, then renamed into place,
so a crash leaves either the old file or the new one, never half of one. Files get the mode the
user's umask gives (0644 under umask 022), as `open()` would, so teammates can read shared
datasets and runs. An S3 PUT is atomic by itself (an object is visible whole or not at all).
S3 endpoints other than AWS (MinIO, Ceph, a test server) are reached through the
`S3_ENDPOINT_URL` environment variable, the same one mosaicml-streaming reads; credentials come
from the usual AWS variables or files.
"""

from __future__ import annotations

import os
import secrets
import shutil
from functools import cache
from pathlib import Path

from phyworld.cli import UserError


class StorageError(UserError, OSError):
    """A location that cannot be read or written; the message names it and the fix."""


def is_remote(url: str) -> bool:
    """Whether `url` is an object-store URL (s3://) rather than a local path."""
    return url.startswith("s3://")


def join(url: str, *parts: str) -> str:
    """`url/part/...` for local paths and s3:// URLs alike."""
    if is_remote(url):
        return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])
    return str(Path(url, *parts))


def split_s3(url: str) -> tuple[str, str]:
    """`s3://bucket/a/b` -> ("bucket", "a/b")."""
    if not is_remote(url):
        raise ValueError(f"not an s3:// URL: {url}")
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket:
        raise StorageError(f"{url}: no bucket name; write s3://BUCKET/prefix")
    return bucket, key.strip("/")


@cache
def _client(endpoint: str | None):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint or None,
        config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5),
    )


def s3_client():
    """A boto3 S3 client for `S3_ENDPOINT_URL` (AWS itself when unset)."""
    return _client(os.environ.get("S3_ENDPOINT_URL") or None)


def check_reachable(url: str) -> None:
    """Raise `StorageError` naming the fix if `url` cannot be written (bucket missing, no
    credentials, endpoint down, or a local parent that is a file / not writable)."""
    if is_remote(url):
        bucket, _ = split_s3(url)
        endpoint = os.environ.get("S3_ENDPOINT_URL", "AWS default")
        try:
            s3_client().head_bucket(Bucket=bucket)
        except Exception as err:  # botocore raises several unrelated types here
            raise StorageError(
                f"cannot reach bucket '{bucket}' of {url} at endpoint {endpoint}: {err}. Check "
                f"that the bucket exists, S3_ENDPOINT_URL and the AWS credentials"
            ) from None
        return
    path = Path(url).resolve()
    parent = next((p for p in [path, *path.parents] if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise StorageError(f"cannot write under {url}: {parent} is not a writable directory")


def exists(url: str) -> bool:
    """Whether a file (object) exists at `url`."""
    if is_remote(url):
        bucket, key = split_s3(url)
        resp = s3_client().list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
        return any(o["Key"] == key for o in resp.get("Contents", []))
    return Path(url).is_file()


def read_bytes(url: str) -> bytes:
    """The whole file (object) at `url`."""
    if is_remote(url):
        bucket, key = split_s3(url)
        try:
            return s3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
        except s3_client().exceptions.NoSuchKey:
            raise FileNotFoundError(url) from None
    return Path(url).read_bytes()


def read_text(url: str) -> str:
    return read_bytes(url).decode()


def fsync_path(path: Path) -> None:
    """fsync a file or directory (a directory: so a rename into it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(url: str | Path, data: bytes) -> None:
    """Write `data` to `url` atomically (temp + fsync + rename locally; one PUT on S3)."""
    url = str(url)
    if is_remote(url):
        bucket, key = split_s3(url)
        s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(url)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = new_temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def new_temp_file(path: Path) -> tuple[int, str]:
    """A new, empty temporary file beside `path` to rename onto it: (fd, name). Its mode is 0666
    minus the umask, as `open()` gives (`tempfile.mkstemp` makes 0600: unreadable by the team)."""
    while True:
        tmp = str(path.with_name(f".{path.name}.tmp{secrets.token_hex(4)}"))
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def write_text(url: str, text: str) -> None:
    write_bytes(url, text.encode())


def upload_file(local: str | Path, url: str) -> None:
    """Copy a local file to `url` (atomic at the destination)."""
    if is_remote(url):
        bucket, key = split_s3(url)
        s3_client().upload_file(str(local), bucket, key)
        return
    write_bytes(url, Path(local).read_bytes())


def download_file(url: str, local: str | Path) -> None:
    """Copy the file at `url` to a local path."""
    Path(local).parent.mkdir(parents=True, exist_ok=True)
    if is_remote(url):
        bucket, key = split_s3(url)
        s3_client().download_file(bucket, key, str(local))
        return
    shutil.copyfile(url, local)


def list_files(url: str) -> list[str]:
    """Relative paths of every file under the directory (prefix) `url`, sorted."""
    if is_remote(url):
        bucket, key = split_s3(url)
        prefix = key + "/" if key else ""
        out = []
        for page in (
            s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        ):
            out += [o["Key"][len(prefix) :] for o in page.get("Contents", [])]
        return sorted(out)
    root = Path(url)
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def remove(url: str) -> None:
    """Delete a file, or everything under a directory (prefix); missing is fine."""
    if is_remote(url):
        bucket, key = split_s3(url)
        keys = [key] if exists(url) else []
        keys += [f"{key}/{k}" if key else k for k in list_files(url)]
        client = s3_client()
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": k} for k in keys[i : i + 1000]]
            if chunk:
                client.delete_objects(Bucket=bucket, Delete={"Objects": chunk})
        return
    path = Path(url)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
