"""The MDS column encodings of a sample: the lossless frame format PWV4 and the state arrays.

Frames are stored as the `video_zstd` MDS encoding, lossless (docs/datagen_encoding.md):

    header   "PWV4", T, H, W, K boxes, flags, CRC-32 of those five (uint32 each)
    payload  one zstd frame (content size and checksum recorded) of
      boxes    (5, K) uint16, column after column: frame, row0, height, col0, width
      keep     T bytes: frame t starts white (0) or as a copy of frame t - 1 (1); frame 0 is 0
      pixels   for each run of consecutive boxes of one height h, channel after channel: h rows,
               each the same row of every box of the run side by side; with flag FOLDED the
               rows of the top half top-down, then those of the bottom half bottom-up

A frame is its start (white or the previous frame) with its boxes' crops pasted on it in box
order: every pixel a frame does not inherit must lie in one of its boxes. Boxes may overlap
(one per object, say): they then hold the same pixels.

Why this shape:
- Videos of a few objects on white are mostly white: only the boxes are compressed.
- Static scenery (the PHYRE-like scenes' bars and jars) is stored once: frames whose boxes are
  found from the pixels (`found_boxes`) keep the previous frame and store only what changed.
- Channel after channel, one object's crops over the frames side by side: long runs of similar
  rows for zstd.
- The fold puts each row of the bottom half a fixed distance behind its mirror image in the top
  half: the renderer's boxes are centred on their object, so a ball rolling along a line has a
  bottom half that zstd stores as one long match.
Together: 2.5 KiB (uniform) and 4.6 KiB (collision) per 128x128x32 video, 0.55-0.6x the earlier
format (PWV3: every frame from white, crop after crop, no fold), and faster to encode and decode
(compiled copies, no Python per box); see bench/encoding.py.

Importing this module registers `video_zstd` and `float32_zstd` with mosaicml-streaming; every
process that decodes samples (a StreamingDataset's dataloader workers included) must import it,
e.g. by defining its dataset class in a module that imports `phyworld.data.schema` (which does).
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Any

import numpy as np
import zstandard
from numba import njit
from streaming.base.format.mds import encodings as mds_encodings

from phyworld.cli import UserError

MAGIC = b"PWV4"
_HEADER = struct.Struct("<4sIIIIII")  # magic, T, H, W, K boxes, flags, CRC-32 of the fields
_FIELDS = struct.Struct("<IIIII")
FOLDED = 1  # flag: rows are folded
MERGE_GAP = 16  # pixels: changed regions closer than this share a box (fewer, larger boxes)

_compressors: dict[int, zstandard.ZstdCompressor] = {}
_decompressor = zstandard.ZstdDecompressor()


class FrameFormatError(UserError, ValueError):
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


@njit(cache=True)
def _emit_band(cols, frame, top, bottom, block, width, gap, out, n):
    """Append the boxes of one band of rows [top, bottom) of `frame` to `out` (from row n):
    one per run of True cells in `cols` (runs less than `gap` cells apart merged); clears
    `cols` and returns the new row count."""
    start = end = -1
    for c in range(len(cols)):
        if not cols[c]:
            continue
        cols[c] = False
        if start >= 0 and c - end < gap:
            end = c + 1
            continue
        if start >= 0:
            out[n] = (frame, top, bottom, start * block, min(end * block, width))
            n += 1
        start, end = c, c + 1
    if start >= 0:
        out[n] = (frame, top, bottom, start * block, min(end * block, width))
        n += 1
    return n


@njit(cache=True)
def _trim_rows(mask, out, first, n, block):
    """Shrink the rows of boxes out[first:n] (of one band of `mask` (H, W / block)) to those
    with a True cell in their columns."""
    for j in range(first, n):
        top, bottom = out[j, 1], out[j, 2]
        left, right = out[j, 3] // block, (out[j, 4] + block - 1) // block
        while not mask[top, left:right].any():
            top += 1
        while not mask[bottom - 1, left:right].any():
            bottom -= 1
        out[j, 1], out[j, 2] = top, bottom


@njit(cache=True)
def _mask_boxes(mask, block, width, gap):
    """(K, 5) frame, row0, row1, col0, col1 holding the True cells of `mask` (T, H, W / block):
    per frame, bands of rows (less than `gap` pixels apart merged), each cut into column ranges
    whose rows are then trimmed. A cell is `block` pixels wide."""
    nf, h, cells = mask.shape
    gap_cells = max(1, gap // block)
    out = np.empty((nf * (h // gap + 1) * (cells // gap_cells + 1), 5), np.int64)
    cols = np.zeros(cells, np.bool_)  # the cells of the band being built
    n = 0
    for f in range(nf):
        top = bottom = -1
        for i in range(h):
            row = mask[f, i]
            hit = False
            for c in range(cells):
                if row[c]:
                    hit = True
                    break
            if not hit:
                continue
            if top >= 0 and i - bottom >= gap:  # far below the band: close it
                first = n
                n = _emit_band(cols, f, top, bottom, block, width, gap_cells, out, n)
                _trim_rows(mask[f], out, first, n, block)
                top = -1
            if top < 0:
                top = i
            bottom = i + 1
            for c in range(cells):
                if row[c]:
                    cols[c] = True
        if top >= 0:
            first = n
            n = _emit_band(cols, f, top, bottom, block, width, gap_cells, out, n)
            _trim_rows(mask[f], out, first, n, block)
    return out[:n]


@njit(cache=True)
def _changed_cells(words, white):
    """(T, H, C) bool from words (T, 3, H, C): frame 0's cells that are not all `white`, every
    later frame's cells that differ from the frame before."""
    t, _, h, cells = words.shape
    out = np.empty((t, h, cells), np.bool_)
    for f in range(np.uint64(t)):
        for i in range(np.uint64(h)):
            for c in range(np.uint64(cells)):
                if f == 0:
                    x = words[0, 0, i, c] & words[0, 1, i, c] & words[0, 2, i, c]
                    out[0, i, c] = x != white
                else:
                    p = f - np.uint64(1)
                    out[f, i, c] = (
                        (words[f, 0, i, c] != words[p, 0, i, c])
                        | (words[f, 1, i, c] != words[p, 1, i, c])
                        | (words[f, 2, i, c] != words[p, 2, i, c])
                    )
    return out


def found_boxes(planes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (K, 5) frame, row0, row1, col0, col1 and keep flags (T,) for frames (T, 3, H, W)
    found from the pixels: frame 0 from white (boxes around its non-white pixels), every later
    frame from the previous one (boxes around the pixels that changed)."""
    t, w = planes.shape[0], planes.shape[3]
    words, block = _words(planes)
    keep = np.ones(t, dtype=np.uint8)
    keep[:1] = 0
    changed = _changed_cells(words, np.iinfo(words.dtype).max)  # (T, H, W / block)
    return _mask_boxes(changed, block, w, MERGE_GAP), keep


# ----------------------------------------------------------------------------------------------
# Compiled kernels: the table of boxes (K, 5) int64 frame, row0, height, col0, width, and the
# stored pixels (3, N): for each run of consecutive boxes of one height h, per channel, h rows
# of the crops side by side (row s of every box of the run, box after box), rows folded.
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _table(boxes, t, h, w):
    """Boxes (K, 5) frame, row0, row1, col0, col1 -> heights and widths in place; returns the
    pixel count N, or -1 - i where box i is not inside the frames."""
    n = 0
    for i in range(boxes.shape[0]):
        f, r0, r1, c0, c1 = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3], boxes[i, 4]
        if not (0 <= f < t and 0 <= r0 <= r1 <= h and 0 <= c0 <= c1 <= w):
            return -1 - i
        boxes[i, 2], boxes[i, 4] = r1 - r0, c1 - c0
        n += (r1 - r0) * (c1 - c0)
    return n


@njit(cache=True)
def _checked_table(table, t, h, w):
    """Pixel count N of a decoded table, or -1 if a box is not inside the frames."""
    n = 0
    for i in range(table.shape[0]):
        f, r0, height, c0, width = table[i, 0], table[i, 1], table[i, 2], table[i, 3], table[i, 4]
        if f >= t or r0 + height > h or c0 + width > w:
            return -1
        n += height * width
    return n


@njit(cache=True)
def _run_end(table, a):
    """End of the run of boxes of one height that starts at box a."""
    b = a
    while b < table.shape[0] and table[b, 2] == table[a, 2]:
        b += 1
    return b


@njit(cache=True)
def _source_row(s, height, fold):
    """The crop row stored as row s: folded, the top half top-down, then the bottom half
    bottom-up (so each bottom row lies a fixed distance behind its mirror image)."""
    m = height // 2
    return s if not fold or s < m else height - 1 - (s - m)


@njit(cache=True, inline="always")
def _copy_row(src, src0, dst, dst0, n):
    """dst[dst0 : dst0 + n] = src[src0 : src0 + n] for 1-D views, as an element loop with
    unsigned indices (no negative-index wraparound checks: several times faster than slices)."""
    s, d = np.uint64(src0), np.uint64(dst0)
    for j in range(np.uint64(n)):
        dst[d + j] = src[s + j]


@njit(cache=True)
def _gather(planes, table, fold, pixels):
    """Store the crops of the boxes of `planes` (T, 3, H, W) in `pixels` (3, N)."""
    a = offset = 0
    while a < table.shape[0]:
        b, height = _run_end(table, a), table[a, 2]
        for c in range(3):
            pos = offset
            for s in range(height):
                r = _source_row(s, height, fold)
                for i in range(a, b):
                    f, r0, c0, width = table[i, 0], table[i, 1], table[i, 3], table[i, 4]
                    _copy_row(planes[f, c, r0 + r], c0, pixels[c], pos, width)
                    pos += width
        offset, a = pos, b


@njit(cache=True)
def _paste(pixels, table, fold, keep, planar):
    """Frames (3, T, H, W) from the stored crops: frame by frame, from white or from the frame
    before (`keep`), then its boxes pasted in their order."""
    k = table.shape[0]
    start, stride = np.empty(k, np.int64), np.empty(k, np.int64)  # where each box's rows are
    a = offset = 0
    while a < k:
        b, total = _run_end(table, a), 0
        for i in range(a, b):
            start[i] = offset + total
            total += table[i, 4]
        stride[a:b] = total
        offset, a = offset + table[a, 2] * total, b
    for f in range(planar.shape[1]):
        if keep[f]:
            planar[:, f] = planar[:, f - 1]
        else:
            planar[:, f] = 255
        for i in range(k):
            if table[i, 0] != f:
                continue
            r0, height, c0, width = table[i, 1], table[i, 2], table[i, 3], table[i, 4]
            for c in range(3):
                for s in range(height):
                    src = start[i] + s * stride[i]
                    r = r0 + _source_row(s, height, fold)
                    _copy_row(pixels[c], src, planar[c, f, r], c0, width)


# ----------------------------------------------------------------------------------------------
# Encoding and decoding
# ----------------------------------------------------------------------------------------------


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
    fold = boxes is not None
    if boxes is None:
        boxes, keep = found_boxes(planes)
    else:
        boxes, keep = np.asarray(boxes), 0
        if boxes.size == 0:
            boxes = np.zeros((0, 5), dtype=np.int64)
        if boxes.ndim != 2 or boxes.shape[1] != 5 or boxes.dtype.kind not in "iu":
            raise ValueError(
                "boxes must be (K, 5) integers frame, row0, row1, col0, col1, got "
                f"{boxes.shape} {boxes.dtype}"
            )
    table = np.array(boxes, dtype=np.int64)  # a copy: made heights and widths in place
    n = _table(table, t, h, w)
    if n < 0:
        raise ValueError(
            f"box {boxes[-1 - n].tolist()} (frame, row0, row1, col0, col1) is empty-sided or "
            f"lies outside the {t} frames of {h} x {w} pixels: pass boxes within the frames, "
            "or boxes=None"
        )
    if fold:  # boxes of one height together (frames from white: any order gives the same frames)
        table = table[np.argsort(table[:, 2], kind="stable")]
    k = len(table)
    body = np.empty(10 * k + t + 3 * n, dtype=np.uint8)
    body[: 10 * k].view(np.uint16).reshape(5, k)[...] = table.T
    body[10 * k : 10 * k + t] = keep
    _gather(planes, table, fold, body[10 * k + t :].reshape(3, n))
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


def decode_frames(data: bytes) -> np.ndarray:
    """Inverse of `encode_frames`: (T, H, W, 3) uint8, a view of channel-planar (3, T, H, W)
    memory. A corrupt or truncated column raises `FrameFormatError`."""
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
    if zlib.crc32(data[4 : 4 + _FIELDS.size]) != crc or flags & ~FOLDED:
        raise _corrupt("the header's checksum does not match")
    payload = memoryview(data)[_HEADER.size :]
    try:
        size = zstandard.frame_content_size(payload)
        if not 0 <= size <= 10 * k + t + 3 * k * h * w:
            raise _corrupt(f"the zstd payload records {size} bytes for {k} boxes")
        body = _decompressor.decompress(payload)  # checked against the frame's checksum
    except zstandard.ZstdError as err:
        raise _corrupt(f"zstd: {err}") from err
    if len(body) < 10 * k + t:
        raise _corrupt(f"{len(body)} payload bytes, fewer than the box table needs")
    table = np.frombuffer(body, np.uint16, 5 * k).reshape(5, k).T.astype(np.int64)
    n = _checked_table(table, t, h, w)
    if n < 0 or len(body) != 10 * k + t + 3 * n:
        raise _corrupt(f"{len(body)} payload bytes do not hold the {k} boxes it lists")
    keep = np.frombuffer(body, np.uint8, t, 10 * k)
    if t and (keep[0] or keep.max() > 1):
        raise _corrupt("bad keep flags")
    planar = np.empty((3, t, h, w), dtype=np.uint8)
    pixels = np.frombuffer(body, np.uint8, 3 * n, 10 * k + t).reshape(3, n)
    _paste(pixels, table, bool(flags & FOLDED), keep, planar)
    return planar.transpose(1, 2, 3, 0)


class VideoZstd(mds_encodings.Encoding):
    """MDS encoding `video_zstd`: lossless (T, H, W, 3) uint8 videos."""

    def encode(self, obj: Any) -> bytes:
        return encode_frames(obj)

    def decode(self, data: bytes) -> np.ndarray:
        return decode_frames(data)


mds_encodings._encodings["video_zstd"] = VideoZstd


# ----------------------------------------------------------------------------------------------
# The state arrays: float32, zstd-compressed
# ----------------------------------------------------------------------------------------------

STATES_MAGIC = b"PWF1"
STATES_LEVEL = 3
_RAW, _ZSTD = 0, 1  # how the values follow the header
_states_compressor = zstandard.ZstdCompressor(level=STATES_LEVEL, write_checksum=True)


def encode_states(array: np.ndarray) -> bytes:
    """float32 array -> `float32_zstd` bytes: "PWF1", codec and ndim (uint8), shape (uint32),
    then the little-endian values, zstd-compressed unless that would not make them smaller.

    Per-frame states are mostly smooth or constant (a ball's y, its angle, a velocity between
    contacts), so zstd stores them in a fraction of the bytes: ~0.9 KiB less per two-ball
    video than raw arrays."""
    values = np.ascontiguousarray(array, dtype="<f4")
    raw = values.tobytes()
    packed = _states_compressor.compress(raw)
    codec, payload = (_ZSTD, packed) if len(packed) < len(raw) else (_RAW, raw)
    head = struct.pack(f"<4sBB{values.ndim}I", STATES_MAGIC, codec, values.ndim, *values.shape)
    return head + payload


def decode_states(data: bytes) -> np.ndarray:
    """Inverse of `encode_states` (a read-only float32 array); a corrupt column raises
    `FrameFormatError`."""
    if len(data) < 6 or data[:4] != STATES_MAGIC:
        raise FrameFormatError(
            f"not a float32_zstd state column (starts {bytes(data[:4])!r}, expected "
            f"{STATES_MAGIC!r}): regenerate the dataset with this version (python -m datagen CONFIG)"
        )
    codec, ndim = data[4], data[5]
    if codec not in (_RAW, _ZSTD) or len(data) < 6 + 4 * ndim:
        raise FrameFormatError("corrupt float32_zstd state column: bad header")
    shape = struct.unpack_from(f"<{ndim}I", data, 6)
    payload = data[6 + 4 * ndim :]
    try:
        raw = _decompressor.decompress(payload) if codec == _ZSTD else bytes(payload)
    except zstandard.ZstdError as err:
        raise FrameFormatError(f"corrupt float32_zstd state column: zstd: {err}") from err
    if len(raw) != 4 * math.prod(shape):
        raise FrameFormatError(
            f"corrupt float32_zstd state column: {len(raw)} bytes for shape {shape}"
        )
    return np.frombuffer(raw, "<f4").reshape(shape)


class StatesZstd(mds_encodings.Encoding):
    """MDS encoding `float32_zstd`: lossless float32 arrays of any shape (the states)."""

    def encode(self, obj: Any) -> bytes:
        return encode_states(obj)

    def decode(self, data: bytes) -> np.ndarray:
        return decode_states(data)


mds_encodings._encodings["float32_zstd"] = StatesZstd
