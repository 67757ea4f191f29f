"""The lossless frame encoding (`video_zstd`): KiB per video, encode and decode ms, against the
previous format (PWV3, kept below as the baseline), on the same videos in the same run.

    python bench/encoding.py [--videos 40] [--repeats 5] [--scenarios uniform,collision,...]

Videos are made as the generator makes them (`datagen.generate`): the kinematic scenes at
128 x 128 x 32 with the renderer's boxes and the configs' zstd level (3), the PHYRE-like scenes
at 256 x 256 x 32 with boxes found from the pixels and level 1. Each video is encoded and decoded
by both formats in turn, `--repeats` times; the figure is the mean over videos of the fastest
repeat, in CPU seconds of this process (a busy machine slows the wall clock, not the figure).
Every decode is checked to give the frames back exactly.
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

# Run as `python bench/encoding.py`, this folder comes first on sys.path and its `datagen.py`
# would shadow the `datagen` package: put the repository root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import numpy as np  # noqa: E402
import zstandard  # noqa: E402

from datagen.config import DatagenConfig  # noqa: E402
from datagen.generate import make_plan  # noqa: E402
from datagen.render import draw  # noqa: E402
from phyworld.config import load_config  # noqa: E402
from phyworld.data.codec import decode_frames, encode_frames  # noqa: E402

SCENARIOS = {  # name: (config, overrides)
    "uniform": ("uniform_30k", []),
    "parabola": ("parabola_30k", []),
    "collision": ("collision_28k", []),
    "phyre": ("phyre_train60", []),
}

# ----------------------------------------------------------------------------------------------
# The baseline: format PWV3 (every frame from white, crop after crop, one box per frame found
# from the pixels unless given), as datagen/schema.py had it before PWV4.
# ----------------------------------------------------------------------------------------------

PWV3_HEADER = struct.Struct("<4sIIII")  # magic, T, H, W, K boxes
_pwv3_compressors: dict[int, zstandard.ZstdCompressor] = {}
_pwv3_decompressor = zstandard.ZstdDecompressor()


def pwv3_content_boxes(planar: np.ndarray) -> np.ndarray:
    """(K, 5) frame, row0, row1, col0, col1: per frame of (3, T, H, W) that is not all white,
    the smallest box holding its non-white pixels."""
    dark = planar.min(axis=0) < 255  # (T, H, W)
    rows, cols = dark.any(axis=2), dark.any(axis=1)
    boxes = []
    for t in np.flatnonzero(rows.any(axis=1)):
        r, c = np.flatnonzero(rows[t]), np.flatnonzero(cols[t])
        boxes.append((t, r[0], r[-1] + 1, c[0], c[-1] + 1))
    return np.array(boxes, dtype=np.uint16).reshape(-1, 5)


def pwv3_encode(frames: np.ndarray, level: int = 3, boxes: np.ndarray | None = None) -> bytes:
    t, h, w, _ = frames.shape
    planar = frames.transpose(3, 0, 1, 2)
    boxes = pwv3_content_boxes(planar) if boxes is None else np.asarray(boxes, dtype=np.uint16)
    crops = b"".join(
        np.ascontiguousarray(planar[:, f, r0:r1, c0:c1]).tobytes()
        for f, r0, r1, c0, c1 in boxes.tolist()
    )
    if level not in _pwv3_compressors:
        _pwv3_compressors[level] = zstandard.ZstdCompressor(level=level)
    header = PWV3_HEADER.pack(b"PWV3", t, h, w, len(boxes))
    return header + boxes.tobytes() + _pwv3_compressors[level].compress(crops)


def pwv3_decode(data: bytes) -> np.ndarray:
    _, t, h, w, k = PWV3_HEADER.unpack_from(data)
    boxes = np.frombuffer(data, np.uint16, 5 * k, PWV3_HEADER.size).reshape(k, 5).astype(np.int64)
    sizes = 3 * (boxes[:, 2] - boxes[:, 1]) * (boxes[:, 4] - boxes[:, 3])
    raw = _pwv3_decompressor.decompress(
        data[PWV3_HEADER.size + 10 * k :], max_output_size=int(sizes.sum())
    )
    planar = np.full((3, t, h, w), 255, dtype=np.uint8)
    offset = 0
    for f, r0, r1, c0, c1 in boxes.tolist():
        n = 3 * (r1 - r0) * (c1 - c0)
        planar[:, f, r0:r1, c0:c1] = np.frombuffer(raw, np.uint8, n, offset).reshape(
            3, r1 - r0, c1 - c0
        )
        offset += n
    return planar.transpose(1, 2, 3, 0)


# ----------------------------------------------------------------------------------------------
# The measurement
# ----------------------------------------------------------------------------------------------


def videos(config: str, overrides: list[str], count: int):
    """`count` videos spread over the dataset: (frames, renderer boxes or None, zstd level)."""
    repo = _HERE.parent
    cfg = load_config(DatagenConfig, [str(repo / "configs/data" / f"{config}.yaml"), *overrides])
    plan = make_plan(cfg)
    for index in np.linspace(0, plan.count - 1, count).astype(int).tolist():
        g = int(np.searchsorted(plan.starts, index, side="right") - 1)
        spec = plan.specs[g]
        rng = np.random.default_rng([plan.cfg.seed, index])
        states = plan.scene.simulate(
            plan.scene.sample_params(spec, index - int(plan.starts[g]), rng), spec
        )
        if plan.scene.render is not None:
            frames = plan.scene.render(
                states, world_size=plan.cfg.world_size, resolution=plan.cfg.resolution
            )
            yield frames, None, plan.cfg.zstd_level
        else:
            canvas = draw(states, plan.cfg.resolution, plan.cfg.world_size, plan.cfg.render)
            yield canvas.frames(), canvas.boxes(), plan.cfg.zstd_level


def fastest(fn, args: tuple, repeats: int) -> tuple[object, float]:
    """fn(*args) and its fastest CPU time in seconds over `repeats` calls."""
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.process_time()
        out = fn(*args)
        best = min(best, time.process_time() - t0)
    return out, best


def measure(name: str, count: int, repeats: int) -> dict[str, np.ndarray]:
    """Per format: (KiB, encode ms, decode ms) per video."""
    config, overrides = SCENARIOS[name]
    formats = {"PWV3": (pwv3_encode, pwv3_decode), "PWV4": (encode_frames, decode_frames)}
    rows: dict[str, list] = {k: [] for k in formats}
    for frames, boxes, level in videos(config, overrides, count):
        for fmt, (encode, decode) in formats.items():
            data, enc = fastest(encode, (frames, level, boxes), repeats)
            out, dec = fastest(decode, (data,), repeats)
            if not np.array_equal(out, frames):
                raise SystemExit(f"{fmt} did not give {name} frames back exactly")
            rows[fmt].append((len(data) / 1024, 1000 * enc, 1000 * dec))
    return {k: np.array(v) for k, v in rows.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=40, help="per scenario")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = ap.parse_args()
    print(f"{args.videos} videos per scenario, fastest of {args.repeats} repeats, CPU ms")
    print(
        f"{'scenario':10s} {'format':6s} {'KiB/video':>10s} {'encode ms':>10s} {'decode ms':>10s}"
    )
    for name in args.scenarios.split(","):
        result = measure(name, args.videos, args.repeats)
        for fmt, rows in result.items():
            kib, enc, dec = rows.mean(axis=0)
            print(f"{name:10s} {fmt:6s} {kib:10.2f} {enc:10.3f} {dec:10.3f}")
        (k3, e3, d3), (k4, e4, d4) = (result[f].mean(axis=0) for f in ("PWV3", "PWV4"))
        print(
            f"{name:10s} ratio PWV4/PWV3: size x{k4 / k3:.2f}, encode x{e4 / e3:.2f}, "
            f"decode x{d4 / d3:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
