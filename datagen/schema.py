"""The MDS columns of a sample (ARCHITECTURE.md) and the lossless frame encoding.

Frames are stored as the `video_zstd` MDS encoding, lossless:

    header   "PWV3", T, H, W, K (uint32)
    boxes    K x (frame, row0, row1, col0, col1) uint16: every pixel outside the boxes of its
             frame is white (255, 255, 255); a frame without boxes is all white. Boxes may
             overlap (one per object, say): they then hold the same pixels.
    payload  zstd of the channel-planar crops (3, row1 - row0, col1 - col0), box after box

Videos of a few objects on white are mostly white, so compressing only the boxes is ~10x less
work for zstd than the full frames, and the crops of consecutive frames (the same objects, moved)
match each other: ~4 KiB per 128x128x32 uniform-motion video. The renderer knows its boxes
(`Canvas.boxes`, one per painted object and frame); for other frames they are found from the
pixels (one per frame). Decoding returns
(T, H, W, 3) uint8.

Importing this module registers `video_zstd` with mosaicml-streaming; every process that decodes
samples (a StreamingDataset's dataloader workers included) must import it, e.g. by defining its
dataset class in a module that imports `datagen.schema`.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import zstandard
from streaming.base.format.mds import encodings as mds_encodings

MAGIC = b"PWV3"
_HEADER = struct.Struct("<4sIIII")  # magic, T, H, W, K boxes

COLUMNS: dict[str, str] = {
    "id": "str",
    "scenario": "str",
    "split": "str",
    "level": "str",
    "frames": "video_zstd",
    "positions": "ndarray:float32",
    "velocities": "ndarray:float32",
    "angles": "ndarray:float32",
    "objects": "json",
    "params": "json",
}

_compressors: dict[int, zstandard.ZstdCompressor] = {}
_decompressor = zstandard.ZstdDecompressor()


def content_boxes(planar: np.ndarray) -> np.ndarray:
    """(K, 5) frame, row0, row1, col0, col1: per frame of (3, T, H, W) that is not all white, the
    smallest box holding its non-white pixels."""
    dark = planar.min(axis=0) < 255  # (T, H, W)
    rows, cols = dark.any(axis=2), dark.any(axis=1)  # (T, H), (T, W)
    boxes = []
    for t in np.flatnonzero(rows.any(axis=1)):
        r, c = np.flatnonzero(rows[t]), np.flatnonzero(cols[t])
        boxes.append((t, r[0], r[-1] + 1, c[0], c[-1] + 1))
    return np.array(boxes, dtype=np.uint16).reshape(-1, 5)


def encode_frames(frames: np.ndarray, level: int = 3, boxes: np.ndarray | None = None) -> bytes:
    """(T, H, W, 3) uint8 -> `video_zstd` bytes. `boxes` (K, 5) frame, row0, row1, col0, col1,
    if given, must hold every non-white pixel (the renderer's `Canvas.boxes`); otherwise they
    are computed."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    planar = frames.transpose(3, 0, 1, 2)  # (3, T, H, W): a free view for the renderer's output
    boxes = content_boxes(planar) if boxes is None else np.asarray(boxes, dtype=np.uint16)
    crops = b"".join(
        np.ascontiguousarray(planar[:, f, r0:r1, c0:c1]).tobytes()
        for f, r0, r1, c0, c1 in boxes.tolist()
    )
    if level not in _compressors:
        _compressors[level] = zstandard.ZstdCompressor(level=level)
    header = _HEADER.pack(MAGIC, t, h, w, len(boxes))
    return header + boxes.tobytes() + _compressors[level].compress(crops)


def decode_frames(data: bytes) -> np.ndarray:
    """Inverse of `encode_frames`: (T, H, W, 3) uint8 (a view of planar memory)."""
    magic, t, h, w, k = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"not a video_zstd frame column (magic {magic!r}, expected {MAGIC!r})")
    boxes = np.frombuffer(data, np.uint16, 5 * k, _HEADER.size).reshape(k, 5).astype(np.int64)
    sizes = 3 * (boxes[:, 2] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 3])
    raw = _decompressor.decompress(data[_HEADER.size + 10 * k :], max_output_size=int(sizes.sum()))
    planar = np.full((3, t, h, w), 255, dtype=np.uint8)
    offset = 0
    for f, r0, r1, c0, c1 in boxes.tolist():
        n = 3 * (r1 - r0) * (c1 - c0)
        planar[:, f, r0:r1, c0:c1] = np.frombuffer(raw, np.uint8, n, offset).reshape(
            3, r1 - r0, c1 - c0
        )
        offset += n
    return planar.transpose(1, 2, 3, 0)


class VideoZstd(mds_encodings.Encoding):
    """MDS encoding `video_zstd`: lossless (T, H, W, 3) uint8 videos."""

    def encode(self, obj: Any) -> bytes:
        return encode_frames(obj)

    def decode(self, data: bytes) -> np.ndarray:
        return decode_frames(data)


mds_encodings._encodings["video_zstd"] = VideoZstd


def to_json(obj: Any) -> str:
    """Canonical JSON (sorted keys, no spaces) so identical samples give identical bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
