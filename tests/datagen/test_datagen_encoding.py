"""The lossless frame encoding `video_zstd` (phyworld.data.codec): round trips on every scenario and
on awkward inputs, the storage goal, and clear errors for bad boxes and damaged columns."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import numpy as np
import pytest
from streaming import MDSWriter

from datagen.config import DatagenConfig
from datagen.generate import make_plan, make_samples
from datagen.render import draw
from phyworld.config import load_config
from phyworld.data.codec import (
    FrameFormatError,
    decode_frames,
    decode_states,
    encode_frames,
    encode_states,
    found_boxes,
)
from phyworld.data.schema import COLUMNS
from phyworld.data.shards import iter_samples

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"


def scenario_videos(config: str, count: int, *overrides: str):
    """`count` videos of a dataset config as the generator makes them: (frames, boxes), boxes
    the renderer's or None (scenes with their own renderer: boxes are found from the pixels)."""
    cfg = load_config(DatagenConfig, [str(CONFIGS / f"{config}.yaml"), "output=unused", *overrides])
    plan = make_plan(cfg)
    for index in np.linspace(0, plan.count - 1, count).astype(int).tolist():
        g = int(np.searchsorted(plan.starts, index, side="right") - 1)
        spec = plan.specs[g]
        rng = np.random.default_rng([plan.cfg.seed, index])
        params = plan.scene.sample_params(spec, index - int(plan.starts[g]), rng)
        states = plan.scene.simulate(params, spec)
        if plan.scene.render is not None:
            res = plan.cfg.resolution
            yield plan.scene.render(states, world_size=plan.cfg.world_size, resolution=res), None
        else:
            canvas = draw(states, plan.cfg.resolution, plan.cfg.world_size, plan.cfg.render)
            yield canvas.frames(), canvas.boxes()


def assert_round_trip(frames, boxes=None, level=3) -> bytes:
    data = encode_frames(frames, level, boxes)
    decoded = decode_frames(data)
    assert decoded.shape == frames.shape and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, frames)
    return data


@pytest.mark.parametrize(
    "config", ["uniform_30k", "parabola_30k", "collision_28k", "attr_colour_shape_train"]
)
def test_kinematic_scenarios_round_trip_with_and_without_boxes(config):
    for frames, boxes in scenario_videos(config, 4, "resolution=64"):
        assert_round_trip(frames, boxes)  # the renderer's boxes: every frame from white
        assert_round_trip(frames)  # boxes found from the pixels: frames from the one before


def test_phyre_scenes_round_trip():
    for frames, boxes in scenario_videos("phyre_tiny", 6):
        assert boxes is None
        assert_round_trip(frames, level=1)


# The storage goal, KiB per lossless 128x128x32 sample (ISSUE: storage): 6. Collisions met it
# (5.4 KiB) while both balls rolled on y = 5.0, a pixel boundary, where each disc is mirror
# symmetric about a row of pixels and the codec's folded rows are nearly free; at the authors'
# random heights (issue 14) they take ~9.4 KiB (uniform motion 2.6 -> 5.6).
GOAL_KIB = {"uniform_30k": 6, "parabola_30k": 6, "collision_28k": 10}


def test_frame_column_meets_the_storage_goal():
    for config, goal in GOAL_KIB.items():
        sizes = [len(assert_round_trip(f, b)) for f, b in scenario_videos(config, 24)]
        assert np.mean(sizes) <= goal * 1024, (config, np.mean(sizes))


def test_static_scenery_is_stored_once():
    # A still frame repeated: every frame after the first is kept whole from the one before.
    rng = np.random.default_rng(0)
    still = rng.integers(0, 256, (1, 48, 40, 3), dtype=np.uint8)
    frames = np.repeat(still, 16, axis=0)
    data = assert_round_trip(frames)
    assert len(data) < len(encode_frames(frames[:1])) + 200
    boxes, keep = found_boxes(frames.transpose(0, 3, 1, 2))
    assert keep.tolist() == [0] + [1] * 15 and set(boxes[:, 0].tolist()) == {0}


@pytest.mark.parametrize("shape", [(5, 7, 9, 3), (3, 64, 64, 3), (1, 1, 1, 3), (2, 33, 17, 3)])
def test_random_noise_round_trips(shape):
    noise = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    assert_round_trip(noise)
    t, h, w, _ = shape
    everything = [(f, 0, h, 0, w) for f in range(t)]
    assert_round_trip(noise, np.array(everything))  # as boxes: every frame folded whole


def test_any_memory_layout_round_trips():
    frames = np.random.default_rng(1).integers(0, 256, (4, 16, 24, 3), dtype=np.uint8)
    frames[:, :4] = 255
    for planar in ("THWC", "CTHW", "TCHW"):  # interleaved, the kinematic canvas, phyre's
        order = ["THWC".index(a) for a in planar]
        memory = np.ascontiguousarray(frames.transpose(order))
        view = memory.transpose(np.argsort(order))
        assert_round_trip(view)


def test_frames_without_boxes():
    white = np.full((6, 20, 30, 3), 255, dtype=np.uint8)
    assert_round_trip(white)
    assert_round_trip(white, np.zeros((0, 5), dtype=np.uint16))  # a renderer that drew nothing
    assert found_boxes(white.transpose(0, 3, 1, 2))[0].shape == (0, 5)
    empty = np.zeros((0, 8, 8, 3), dtype=np.uint8)  # no frames at all
    assert_round_trip(empty)
    # Blank frames between drawn ones, found from the pixels.
    frames = white.copy()
    frames[2, 5:9, 3:7] = (10, 20, 30)
    frames[5, 0, 0] = 0
    assert_round_trip(frames)


def test_boxes_at_the_border_and_overlapping():
    rng = np.random.default_rng(2)
    frames = np.full((4, 21, 19, 3), 255, dtype=np.uint8)
    boxes = [
        (0, 0, 21, 0, 19),  # the whole frame
        (1, 0, 1, 0, 19),  # the top row (height 1: nothing to fold)
        (1, 20, 21, 0, 1),  # the bottom-left pixel
        (2, 15, 21, 12, 19),  # the bottom-right corner
        (2, 0, 7, 0, 5),  # the top-left corner ...
        (2, 3, 9, 2, 8),  # ... overlapped by another box holding the same pixels
        (3, 4, 4, 5, 9),  # an empty box
    ]
    for f, r0, r1, c0, c1 in boxes:
        frames[f, r0:r1, c0:c1] = rng.integers(0, 256, (r1 - r0, c1 - c0, 3))
    frames[2, 3:7, 2:5] = rng.integers(0, 256, (4, 3, 3))  # where the two boxes overlap
    assert_round_trip(frames, np.array(boxes, dtype=np.uint16))
    assert_round_trip(frames)


def test_objects_leaving_the_frame_round_trip():
    # Balls entering and leaving the image: the renderer's boxes are clipped at the border.
    for frames, boxes in scenario_videos("uniform_eval_v_out", 3, "resolution=32"):
        assert_round_trip(frames, boxes)


@pytest.mark.parametrize(
    "boxes, message",
    [
        ([[0, 0, 5, 0, 5, 0]], "must be \\(K, 5\\) integers"),
        ([[0.0, 0.0, 5.0, 0.0, 5.0]], "must be \\(K, 5\\) integers"),
        ([[3, 0, 5, 0, 5]], "lies outside the 3 frames of 8 x 8"),
        ([[0, 0, 9, 0, 5]], "lies outside"),
        ([[0, 4, 2, 0, 5]], "empty-sided or lies outside"),
        ([[0, -1, 2, 0, 5]], "lies outside"),
    ],
)
def test_bad_boxes_are_refused(boxes, message):
    frames = np.full((3, 8, 8, 3), 255, dtype=np.uint8)
    with pytest.raises(ValueError, match=message):
        encode_frames(frames, boxes=np.array(boxes))


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="must be \\(T, H, W, 3\\) uint8"):
        encode_frames(np.zeros((2, 4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="must be \\(T, H, W, 3\\) uint8"):
        encode_frames(np.zeros((2, 4, 4), dtype=np.uint8))


def test_damaged_columns_raise_a_clear_error():
    frames, boxes = next(scenario_videos("collision_28k", 1, "resolution=32"))
    data = encode_frames(frames, 3, boxes)
    regenerate = "regenerate the dataset"
    for cut in (0, 10, 28, 34, len(data) // 2, len(data) - 1):  # truncated anywhere
        with pytest.raises(FrameFormatError, match=regenerate):
            decode_frames(data[:cut])
    for at in range(28, len(data), max(1, len(data) // 40)):  # a flipped byte in the payload
        damaged = bytearray(data)
        damaged[at] ^= 0x5A
        with pytest.raises(FrameFormatError, match=regenerate):
            decode_frames(bytes(damaged))
    damaged = bytearray(data)
    damaged[8] ^= 1  # the header's height
    with pytest.raises(FrameFormatError):
        decode_frames(bytes(damaged))
    with pytest.raises(FrameFormatError, match="not a video_zstd"):
        decode_frames(b"XXXX" + data[4:])
    with pytest.raises(FrameFormatError, match=r"format b'PWV3'.*regenerate"):
        decode_frames(b"PWV3" + data[4:])


@pytest.mark.slow  # ~20 s: a spawned interpreter imports streaming and loads the kernels
def test_decodes_in_a_fresh_process():
    # Loader workers decode in processes of their own: the compiled kernels load there too.
    frames, boxes = next(scenario_videos("collision_28k", 1, "resolution=32"))
    data = [encode_frames(frames, 3, boxes), encode_frames(frames, 1)]
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        decoded = pool.map(decode_frames, data)
    for out in decoded:
        np.testing.assert_array_equal(out, frames)


# ----------------------------------------------------------------------------------------------
# The state columns (float32_zstd) and the whole sample
# ----------------------------------------------------------------------------------------------


def samples(config: str, count: int):
    cfg = load_config(DatagenConfig, [str(CONFIGS / f"{config}.yaml"), "output=unused"])
    plan = make_plan(cfg)
    return make_samples(plan, np.linspace(0, plan.count - 1, count).astype(int).tolist())


@pytest.mark.parametrize("config", ["uniform_30k", "parabola_30k", "collision_28k", "phyre_tiny"])
def test_states_round_trip_exactly(config):
    for sample in samples(config, 4):
        for key in ("positions", "velocities", "angles"):
            array = sample[key]
            decoded = decode_states(encode_states(array))
            assert decoded.dtype == np.float32 and decoded.shape == array.shape
            assert decoded.tobytes() == array.astype(np.float32).tobytes()  # bit for bit


def test_incompressible_states_are_stored_raw():
    noise = np.random.default_rng(0).standard_normal((32, 3, 2)).astype(np.float32)
    data = encode_states(noise)
    assert len(data) == 6 + 4 * 3 + noise.nbytes  # header + raw values, no zstd frame
    np.testing.assert_array_equal(decode_states(data), noise)
    np.testing.assert_array_equal(decode_states(encode_states(np.zeros(0, np.float32))), [])


def test_damaged_state_columns_raise_a_clear_error():
    data = encode_states(np.zeros((32, 2, 2), np.float32))
    with pytest.raises(FrameFormatError, match="not a float32_zstd state column"):
        decode_states(b"XXXX" + data[4:])
    with pytest.raises(FrameFormatError, match="corrupt float32_zstd"):
        decode_states(data[:-3])
    with pytest.raises(FrameFormatError, match="bad header"):
        decode_states(data[:4] + b"\x07" + data[5:])


def test_whole_sample_meets_the_storage_goal(tmp_path):
    # Everything a 128x128x32 kinematic sample stores (frames, states, JSON, MDS bookkeeping).
    for config, goal in GOAL_KIB.items():
        rows = samples(config, 96)
        with MDSWriter(out=str(tmp_path / config), columns=COLUMNS, size_limit=1 << 24) as mds:
            for row in rows:
                mds.write(row)
        shards = sum(p.stat().st_size for p in (tmp_path / config).glob("shard.*.mds"))
        assert shards / len(rows) <= goal * 1024, (config, shards / len(rows))
        read = list(iter_samples(str(tmp_path / config), verify=False))
        for row, back in zip(rows, read):
            assert back["positions"].tobytes() == row["positions"].tobytes()
            np.testing.assert_array_equal(back["frames"], decode_frames(row["frames"]))
