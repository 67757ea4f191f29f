"""The MDS columns of a sample (ARCHITECTURE.md) and the lossless frame encoding.

Frames are stored as the `video_zstd` MDS encoding, lossless:

    header   "PWV4", T, H, W, K (uint32)
    payload  one zstd frame (its content size recorded) of
      boxes    (5, K) uint16, column after column: frame, row0, height, col0, width
      keep     T bytes: frame t starts as white (0) or as a copy of frame t - 1 (1); frame 0 is 0
      pixels   (3, N) channel after channel: the crops of the boxes, in box order, each with its
               rows folded: the top h // 2 rows top-down, then the other rows bottom-up

A frame is its start (white or the previous frame) with its boxes' crops pasted on it in box
order: every pixel a frame does not inherit must lie in one of its boxes. Boxes may overlap
(one per object, say): they then hold the same pixels.

Why this shape:
- Videos of a few objects on white are mostly white: only the boxes are compressed.
- Static scenery (the PHYRE-like scenes' bars and jars) is stored once: a frame found from the
  pixels (`found_boxes`) keeps the previous one and stores only the regions that changed.
- Channel after channel, the crops of one channel are one run of similar bytes for zstd.
- The fold puts each row of the bottom half at a fixed distance behind its mirror image in the
  top half: the renderer centres its patches on their object, so an object at a fixed height
  (a ball rolling along a line) gives a bottom half that zstd stores as one long match.
Together: 2.7 KiB (uniform) and 5.0 KiB (collision) per 128x128x32 video, 0.6x the earlier
format (PWV3: every frame from white, crop after crop, no fold); see bench/encoding.py.

Importing this module registers `video_zstd` with mosaicml-streaming; every process that decodes
samples (a StreamingDataset's dataloader workers included) must import it, e.g. by defining its
dataset class in a module that imports `datagen.schema`.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import numpy as np
import zstandard
from streaming.base.format.mds import encodings as mds_encodings

MAGIC = b"PWV4"
_HEADER = struct.Struct("<4sIIIIII")  # magic, T, H, W, K boxes, flags, CRC-32 of the fields
_FIELDS = struct.Struct("<IIIII")
FOLDED = 1  # flag: crops are stored with their rows folded
MERGE_GAP = 16  # pixels: changed regions closer than this share a box (fewer, larger boxes)

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


class FrameFormatError(ValueError):
    """A `video_zstd` column that cannot be decoded (corrupt, truncated or another format)."""


# ----------------------------------------------------------------------------------------------
# Boxes from the pixels
# ----------------------------------------------------------------------------------------------


def _words(planes: np.ndarray) -> tuple[np.ndarray, int]:
    """(T, 3, H, W) uint8 -> the same pixels as (T, 3, H, W / b) words of b pixels, and b: one
    comparison then tests b pixels. Free for the renderers' layouts (rows of W contiguous bytes)."""
    if planes.strides[-1] != 1:
        planes = np.ascontiguousarray(planes)
    for dtype in (np.uint64, np.uint32, np.uint16):
        size = np.dtype(dtype).itemsize
        if planes.shape[-1] % size == 0:
            return planes.view(dtype), size
    return planes, 1


def _any_last(mask: np.ndarray) -> np.ndarray:
    """`mask.any(axis=-1)`, 5x faster for short last axes (OR of 8-byte words)."""
    if mask.shape[-1] % 8 or not mask.flags.c_contiguous:
        return mask.any(axis=-1)
    words = mask.view(np.uint64)
    out = words[..., 0].copy()
    for i in range(1, words.shape[-1]):
        out |= words[..., i]
    return out != 0


def _runs(mask: np.ndarray, gap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of True along each row of `mask` (R, L), runs less than `gap` apart merged:
    (row, start, end) arrays, end exclusive, in row-major order."""
    r, length = mask.shape
    padded = np.zeros((r, length + 2), dtype=bool)  # False around each row: runs end in it
    padded[:, 1:-1] = mask
    flat = padded.ravel()
    flips = np.flatnonzero(flat[1:] != flat[:-1])  # the last cell before each start and end
    row, start = np.divmod(flips[0::2], length + 2)
    end = flips[1::2] - row * (length + 2)
    new = np.ones(len(row) + 1, dtype=bool)  # a run that starts a box / ends one
    new[1:-1] = (row[1:] != row[:-1]) | (start[1:] - end[:-1] >= gap)
    return row[new[:-1]], start[new[:-1]], end[new[1:]]


def mask_boxes(mask: np.ndarray, frames: np.ndarray, block: int, width: int) -> np.ndarray:
    """(K, 5) int64 frame, row0, row1, col0, col1 holding the True cells of `mask` (F, H, W / block)
    whose rows are `frames`: per frame, bands of rows, each cut into column ranges (a cell is
    `block` pixels wide; regions closer than `MERGE_GAP` pixels share a box)."""
    band, top, bottom = _runs(_any_last(mask), MERGE_GAP)  # band: its frame's index in mask
    if len(band) == 0:
        return np.zeros((0, 5), dtype=np.int64)
    cols = mask.any(axis=1)[band]  # (bands, W / block): the columns of each band's frame ...
    shared = band[1:] == band[:-1]
    for i in np.flatnonzero(np.r_[shared, False] | np.r_[False, shared]).tolist():
        cols[i] = mask[band[i], top[i] : bottom[i]].any(axis=0)  # ... or of the band alone
    which, left, right = _runs(cols, max(1, MERGE_GAP // block))
    return np.stack(
        [
            frames[band[which]],
            top[which],
            bottom[which],
            left * block,
            np.minimum(right * block, width),
        ],
        axis=1,
    )


def found_boxes(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes and keep flags for frames (T, 3, H, W) found from the pixels: frame 0 from white
    (boxes around its non-white pixels), every later frame from the previous one (boxes around
    the pixels that changed)."""
    t, w = planes.shape[0], planes.shape[3]
    words, block = _words(planes)
    keep = np.ones(t, dtype=np.uint8)
    keep[:1] = 0
    if t == 0:
        return np.zeros((0, 5), dtype=np.int64), keep
    first = (words[:1] != np.iinfo(words.dtype).max).any(axis=1)  # (1, H, W / block)
    changed = (words[1:] != words[:-1]).any(axis=1)  # (T - 1, H, W / block)
    boxes = np.concatenate(
        [
            mask_boxes(first, np.zeros(1, dtype=np.int64), block, w),
            mask_boxes(changed, np.arange(1, t), block, w),
        ]
    )
    return boxes, keep


def _checked_boxes(boxes: Any, t: int, h: int, w: int) -> np.ndarray:
    """Given boxes as a (K, 5) int64 copy, or a ValueError naming what is wrong."""
    boxes = np.asarray(boxes)
    if boxes.size == 0:
        return np.zeros((0, 5), dtype=np.int64)
    if boxes.ndim != 2 or boxes.shape[1] != 5 or boxes.dtype.kind not in "iu":
        raise ValueError(
            f"boxes must be (K, 5) integers frame, row0, row1, col0, col1, got {boxes.shape} "
            f"{boxes.dtype}"
        )
    boxes = boxes.astype(np.int64)
    f0, r0, _, c0, _ = boxes.min(axis=0).tolist()
    f1, _, r1, _, c1 = boxes.max(axis=0).tolist()
    if (
        min(f0, r0, c0) < 0
        or f1 >= t
        or r1 > h
        or c1 > w
        or (boxes[:, 2::2] < boxes[:, 1::2]).any()
    ):
        f, r0, r1, c0, c1 = boxes.T
        bad = (f < 0) | (f >= t) | (r0 < 0) | (r1 < r0) | (r1 > h) | (c0 < 0) | (c1 < c0) | (c1 > w)
        raise ValueError(
            f"box {boxes[bad][0].tolist()} (frame, row0, row1, col0, col1) is empty-sided or "
            f"lies outside the {t} frames of {h} x {w} pixels: pass boxes within the frames, "
            "or boxes=None"
        )
    return boxes


# ----------------------------------------------------------------------------------------------
# Encoding and decoding
# ----------------------------------------------------------------------------------------------


def _groups(boxes: list[list[int]]) -> list[tuple[list[list[int]], int, int]]:
    """Runs of consecutive boxes (frame, row0, height, col0, width) of one height (one object's
    boxes over the frames, say), each with that height and its total width."""
    groups: list[tuple[list[list[int]], int, int]] = []
    for box in boxes:
        if groups and groups[-1][1] == box[2]:
            run, height, width = groups[-1]
            run.append(box)
            groups[-1] = (run, height, width + box[4])
        else:
            groups.append(([box], box[2], box[4]))
    return groups


def encode_frames(frames: np.ndarray, level: int = 3, boxes: np.ndarray | None = None) -> bytes:
    """(T, H, W, 3) uint8 -> `video_zstd` bytes at zstd `level`.

    `boxes` (K, 5) frame, row0, row1, col0, col1, if given, must hold every non-white pixel of
    their frames (the renderer's `Canvas.boxes`, one per painted object and frame, centred on
    it): every frame then starts white and rows are folded. Without them, boxes are found from
    the pixels (`found_boxes`) and rows are stored in order (boxes are not centred on anything).
    """
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    t, h, w, _ = frames.shape
    if max(h, w) > 0xFFFF:
        raise ValueError(f"frames of {h} x {w} pixels: at most 65535 per side")
    planes = frames.transpose(0, 3, 1, 2)  # (T, 3, H, W): a view for either renderer's layout
    if boxes is None:
        (boxes, keep), fold = found_boxes(planes), False
    else:
        boxes, keep, fold = _checked_boxes(boxes, t, h, w), 0, True
    boxes[:, 2::2] -= boxes[:, 1::2]  # row1, col1 -> height, width
    k, groups = len(boxes), _groups(boxes.tolist())
    n = sum(height * width for _, height, width in groups)
    body = np.empty(10 * k + t + 3 * n, dtype=np.uint8)
    body[: 10 * k].view(np.uint16).reshape(5, k)[...] = boxes.T
    body[10 * k : 10 * k + t] = keep
    pixels, offset = body[10 * k + t :].reshape(3, n), 0
    for group, height, width in groups:
        stored = pixels[:, offset : offset + height * width].reshape(3, height, width)
        offset += height * width
        m = height // 2
        if fold and len(group) == 1:  # one crop: fold it on the way (no copy)
            f, r0, _, c0, _ = group[0]
            crop = planes[f, :, r0 : r0 + height, c0 : c0 + width]
            stored[:, :m] = crop[:, :m]
            stored[:, m:] = crop[:, m:][:, ::-1]
            continue
        rows = np.empty_like(stored) if fold else stored  # (3, height, width): crop by crop
        col = 0
        for f, r0, _, c0, cols in group:
            rows[:, :, col : col + cols] = planes[f, :, r0 : r0 + height, c0 : c0 + cols]
            col += cols
        if fold:  # the top half's rows top-down, then the bottom half's bottom-up
            stored[:, :m] = rows[:, :m]
            stored[:, m:] = rows[:, m:][:, ::-1]
    if level not in _compressors:
        _compressors[level] = zstandard.ZstdCompressor(level=level, write_checksum=True)
    fields = (t, h, w, k, FOLDED if fold else 0)
    header = _HEADER.pack(MAGIC, *fields, zlib.crc32(_FIELDS.pack(*fields)))
    return header + _compressors[level].compress(body)


def _corrupt(why: str) -> FrameFormatError:
    return FrameFormatError(
        f"corrupt video_zstd frame column: {why}. The shard holding this sample is damaged or "
        "was cut short: regenerate the dataset (python -m datagen CONFIG overwrite=true)"
    )


def _unpack(data: bytes) -> tuple[tuple[int, int, int], list, bytes, np.ndarray, bool]:
    """Parse and check a column: (T, H, W), the boxes as lists (frame, row0, height, col0,
    width), keep flags, the (3, N) stored pixels and whether crops are folded."""
    if len(data) < _HEADER.size:
        raise _corrupt(f"{len(data)} bytes, shorter than the {_HEADER.size}-byte header")
    magic, t, h, w, k, flags, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        if magic[:3] == MAGIC[:3]:
            raise FrameFormatError(
                f"video_zstd column in format {magic!r}, this phyworld reads {MAGIC!r}: "
                "regenerate the dataset with this version (python -m datagen CONFIG)"
            )
        raise FrameFormatError(
            f"not a video_zstd frame column (magic {magic!r}, expected {MAGIC!r})"
        )
    if zlib.crc32(data[4 : 4 + _FIELDS.size]) != crc:
        raise _corrupt("the header's checksum does not match")
    payload = memoryview(data)[_HEADER.size :]
    try:
        size = zstandard.frame_content_size(payload)
        if not 0 <= size <= 10 * k + t + 3 * k * h * w:
            raise _corrupt(f"the zstd payload records {size} bytes for {k} boxes")
        body = _decompressor.decompress(payload)
    except zstandard.ZstdError as err:
        raise _corrupt(f"zstd: {err}") from err
    boxes = np.frombuffer(body, np.uint16, 5 * k).reshape(5, k).T.tolist()
    n = sum(height * width for _, _, height, _, width in boxes)
    if len(body) != 10 * k + t + 3 * n:
        raise _corrupt(f"{len(body)} payload bytes, the boxes need {10 * k + t + 3 * n}")
    for f, r0, height, c0, width in boxes:
        if f >= t or r0 + height > h or c0 + width > w:
            raise _corrupt(f"a box lies outside the {t} frames of {h} x {w} pixels")
    keep = body[10 * k : 10 * k + t]
    if (t and (keep[0] or max(keep) > 1)) or flags & ~FOLDED:
        raise _corrupt("bad flags")
    pixels = np.frombuffer(body, np.uint8, 3 * n, 10 * k + t).reshape(3, n)
    return (t, h, w), boxes, keep, pixels, bool(flags & FOLDED)


def _unfolded(stored: np.ndarray) -> np.ndarray:
    """Rows folded (3, height, width) -> rows in order (a copy)."""
    m, rows = stored.shape[1] // 2, np.empty_like(stored)
    rows[:, :m] = stored[:, :m]
    rows[:, m:] = stored[:, m:][:, ::-1]
    return rows


def decode_frames(data: bytes) -> np.ndarray:
    """Inverse of `encode_frames`: (T, H, W, 3) uint8, a view of channel-planar (3, T, H, W)
    memory. A corrupt or truncated column raises `FrameFormatError`."""
    (t, h, w), boxes, keep, pixels, fold = _unpack(data)
    groups, offset = [], 0  # (boxes, their stored rows (3, height, total width))
    for group, height, width in _groups(boxes):
        groups.append(
            (group, pixels[:, offset : offset + height * width].reshape(3, height, width))
        )
        offset += height * width
    planar = np.empty((3, t, h, w), dtype=np.uint8)

    if not any(keep):  # every frame from white: paste the boxes in their order
        planar.fill(255)
        for group, stored in groups:
            if fold and len(group) == 1:  # one crop: unfold it on the way (no copy)
                f, r0, height, c0, width = group[0]
                target, m = planar[:, f, r0 : r0 + height, c0 : c0 + width], height // 2
                target[:, :m] = stored[:, :m]
                target[:, m:] = stored[:, m:][:, ::-1]
                continue
            rows, col = _unfolded(stored) if fold else stored, 0
            for f, r0, height, c0, width in group:
                planar[:, f, r0 : r0 + height, c0 : c0 + width] = rows[:, :, col : col + width]
                col += width
        return planar.transpose(1, 2, 3, 0)

    # Frame by frame, each from white or from the frame before; a stable sort keeps the order
    # of overlapping boxes.
    pastes = []
    for group, stored in groups:
        rows, col = _unfolded(stored) if fold else stored, 0
        for box in group:
            pastes.append((box, rows[:, :, col : col + box[4]]))
            col += box[4]
    pastes.sort(key=lambda paste: paste[0][0])
    i = 0
    for f in range(t):
        planar[:, f] = planar[:, f - 1] if keep[f] else 255
        while i < len(pastes) and pastes[i][0][0] == f:
            (_, r0, height, c0, width), crop = pastes[i]
            planar[:, f, r0 : r0 + height, c0 : c0 + width] = crop
            i += 1
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
