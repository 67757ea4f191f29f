"""The MDS columns of a sample (ARCHITECTURE.md) and the lossless frame encoding.

Frames are stored as the `video_zstd` MDS encoding, lossless:

    header   "PWV2", T, H, W (uint32)
    boxes    T x (row0, row1, col0, col1) uint16: per frame, the box outside which every pixel
             is white (255, 255, 255); an empty box (row0 == row1) is an all-white frame
    payload  zstd of the channel-planar crops (3, row1 - row0, col1 - col0), frame after frame

Videos of a few objects on white are mostly white, so compressing only the boxes is ~10x less
work for zstd than the full frames, and the crops of consecutive frames (the same objects, moved)
match each other: ~4 KiB per 128x128x32 uniform-motion video. The renderer knows its boxes
(`Canvas.boxes`); for other frames they are found from the pixels. Decoding returns
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

MAGIC = b"PWV2"
_HEADER = struct.Struct("<4sIII")  # magic, T, H, W

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
    """Per frame of (3, T, H, W), the smallest (row0, row1, col0, col1) holding every non-white pixel."""
    dark = planar.min(axis=0) < 255  # (T, H, W)
    rows, cols = dark.any(axis=2), dark.any(axis=1)  # (T, H), (T, W)
    boxes = np.zeros((planar.shape[1], 4), dtype=np.uint16)
    for t in np.flatnonzero(rows.any(axis=1)):
        r, c = np.flatnonzero(rows[t]), np.flatnonzero(cols[t])
        boxes[t] = (r[0], r[-1] + 1, c[0], c[-1] + 1)
    return boxes


def encode_frames(frames: np.ndarray, level: int = 3, boxes: np.ndarray | None = None) -> bytes:
    """(T, H, W, 3) uint8 -> `video_zstd` bytes. `boxes` (T, 4), if given, must hold every
    non-white pixel (the renderer's `Canvas.boxes`); otherwise they are computed."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    planar = frames.transpose(3, 0, 1, 2)  # (3, T, H, W): a free view for the renderer's output
    boxes = content_boxes(planar) if boxes is None else np.asarray(boxes, dtype=np.uint16)
    crops = b"".join(
        np.ascontiguousarray(planar[:, f, r0:r1, c0:c1]).tobytes()
        for f, (r0, r1, c0, c1) in enumerate(boxes.tolist())
    )
    if level not in _compressors:
        _compressors[level] = zstandard.ZstdCompressor(level=level)
    return _HEADER.pack(MAGIC, t, h, w) + boxes.tobytes() + _compressors[level].compress(crops)


def decode_frames(data: bytes) -> np.ndarray:
    """Inverse of `encode_frames`: (T, H, W, 3) uint8 (a view of planar memory)."""
    magic, t, h, w = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"not a video_zstd frame column (magic {magic!r}, expected {MAGIC!r})")
    boxes = np.frombuffer(data, np.uint16, 4 * t, _HEADER.size).reshape(t, 4).astype(np.int64)
    sizes = 3 * (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    raw = _decompressor.decompress(data[_HEADER.size + 8 * t :], max_output_size=int(sizes.sum()))
    planar = np.full((3, t, h, w), 255, dtype=np.uint8)
    offset = 0
    for f, (r0, r1, c0, c1) in enumerate(boxes.tolist()):
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
