"""The bounding-box renderer against a brute-force full-image rasteriser."""

from __future__ import annotations

import numpy as np
import pytest

from datagen.render_shapes import Body, fill_circles, fill_convex_polygons, render_video
from phyworld.data.pixels import world_to_pixel

H = W = 48
ZERO = np.zeros(1, dtype=np.int64)  # every item in frame 0


def brute_polygon(uv: np.ndarray) -> np.ndarray:
    """Pixels whose centre is inside the convex polygon: every edge sees it on the same side."""
    jj, ii = np.mgrid[0:H, 0:W] + 0.5
    p, q = uv, np.roll(uv, -1, axis=0)
    cross = (q[:, 0, None, None] - p[:, 0, None, None]) * (jj - p[:, 1, None, None]) - (
        q[:, 1, None, None] - p[:, 1, None, None]
    ) * (ii - p[:, 0, None, None])
    return (cross >= 0).all(0) | (cross <= 0).all(0)


def random_convex(rng) -> np.ndarray:
    """A random convex polygon (pixel units), partly off-screen now and then."""
    centre = rng.uniform(-5, W + 5, size=2)
    angles = np.sort(rng.uniform(0, 2 * np.pi, size=rng.integers(3, 8)))
    radius = rng.uniform(1.0, 20.0)
    return centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def planes(t: int = 1) -> np.ndarray:
    return np.full((t, 3, H, W), 255, dtype=np.uint8)


def test_polygons_match_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(200):
        uv = random_convex(rng)
        if rng.uniform() < 0.5:
            uv = uv[::-1]  # either winding
        img = planes()
        fill_convex_polygons(img, uv[None], ZERO, (0, 0, 0))
        drawn = img[0, 0] == 0
        # A pixel centre exactly on an edge may go either way; random shapes never hit one.
        np.testing.assert_array_equal(drawn, brute_polygon(uv))


def test_circles_match_brute_force():
    rng = np.random.default_rng(1)
    jj, ii = np.mgrid[0:H, 0:W] + 0.5
    for _ in range(200):
        c, r = rng.uniform(-5, W + 5, size=2), rng.uniform(0.3, 15.0)
        img = planes()
        fill_circles(img, c[None], np.array([r]), ZERO, (0, 0, 0))
        expected = (ii - c[0]) ** 2 + (jj - c[1]) ** 2 <= r * r
        np.testing.assert_array_equal(img[0, 0] == 0, expected)


def test_all_frames_at_once_equal_frame_by_frame():
    uv = np.stack([random_convex(np.random.default_rng(k))[:3] for k in range(6)])  # (T, 3, 2)
    together = planes(6)
    fill_convex_polygons(together, uv, np.arange(6), (10, 20, 30))
    for t in range(6):
        alone = planes()
        fill_convex_polygons(alone, uv[t : t + 1], ZERO, (10, 20, 30))
        np.testing.assert_array_equal(together[t], alone[0])


def test_render_video_pixel_convention_and_layers():
    world = 12.0
    square = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    bodies = [
        Body(np.zeros((0, 3)), (square,), (0, 0, 0)),  # static, drawn once
        Body(np.array([[0.0, 0.0, 1.0]]), (), (243, 79, 70)),  # dynamic ball
    ]
    poses = np.zeros((2, 2, 3))
    poses[:, 0] = (3.0, 3.0, 0.0)
    poses[0, 1] = (9.0, 9.0, 0.0)
    poses[1, 1] = (3.0, 3.0, 0.0)  # the ball moves on top of the static square
    frames = render_video(bodies, poses, np.array([False, True]), world, W)
    assert frames.shape == (2, H, W, 3) and frames.dtype == np.uint8
    # The square spans world x, y in [2, 4]: columns 8..15, rows (12 - 4)/0.25 = 32..39.
    assert (frames[0, 32:40, 8:16] == 0).all()
    assert (frames[0, 31, 8:16] == 255).all() and (frames[0, 40, 8:16] == 255).all()
    # The ball's centre pixel in frame 0: world (9, 9) -> u = 36, v = 12.
    u, v = world_to_pixel(np.array([9.0, 9.0]), world, W)
    assert (frames[0, int(v), int(u)] == (243, 79, 70)).all()
    # Frame 1: the ball covers the square's centre, the static layer is still there at a corner.
    assert (frames[1, 36, 12] == (243, 79, 70)).all()
    assert (frames[1, 32, 8] == 0).all()
    # Only palette colours appear (hard edges).
    colours = {tuple(c) for c in frames.reshape(-1, 3)}
    assert colours == {(255, 255, 255), (0, 0, 0), (243, 79, 70)}


@pytest.mark.parametrize("resolution", [64, 256])
def test_off_screen_shapes_draw_nothing(resolution):
    img = np.full((1, 3, resolution, resolution), 255, dtype=np.uint8)
    fill_circles(img, np.array([[-50.0, -50.0]]), np.array([10.0]), ZERO, (0, 0, 0))
    triangle = np.array([[[500.0, 5.0], [520.0, 5.0], [510.0, 30.0]]])
    fill_convex_polygons(img, triangle, ZERO, (0, 0, 0))
    assert (img == 255).all()


def test_generic_renderer_draws_compound_objects_like_ours():
    from datagen.render import render
    from datagen.scenes import States, phyre

    jar = phyre.objects.jar(20.0, phyre.objects.WORLD_SIZE).describe()
    sticks = phyre.objects.sticks(30.0, phyre.objects.WORLD_SIZE).describe()
    positions = np.array(
        [[[30.0, 40.0], [60.0, 50.0]], [[31.0, 35.0], [58.0, 52.0]]], dtype=np.float32
    )
    angles = np.array([[0.0, 0.3], [0.5, -1.2]], dtype=np.float32)
    states = States(positions, np.zeros_like(positions), angles, [jar, sticks])
    ours = phyre.render(states, phyre.objects.WORLD_SIZE, 128)
    generic = render(states, 128, phyre.objects.WORLD_SIZE, "paper")
    assert (ours != 255).any()
    np.testing.assert_array_equal(np.ascontiguousarray(generic), np.ascontiguousarray(ours))


def test_one_batch_equals_one_call_per_item():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 4, size=12)  # several items share a frame
    centres, radii = rng.uniform(0, W, size=(12, 2)), rng.uniform(0.5, 9.0, size=12)
    shapes = [random_convex(np.random.default_rng(10 + k)) for k in range(40)]
    quads = np.stack([q for q in shapes if len(q) == 4][:12])
    batched, single = planes(4), planes(4)
    fill_circles(batched, centres, radii, frame, (1, 2, 3))
    fill_convex_polygons(batched, quads, frame[: len(quads)], (1, 2, 3))
    for k in range(12):
        fill_circles(single, centres[k : k + 1], radii[k : k + 1], frame[k : k + 1], (1, 2, 3))
    for k in range(len(quads)):
        fill_convex_polygons(single, quads[k : k + 1], frame[k : k + 1], (1, 2, 3))
    np.testing.assert_array_equal(batched, single)
    assert (batched != 255).any()


def test_reused_buffer_gives_the_same_frames():
    square = np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    bodies = [
        Body(np.array([[0.0, 0.0, 1.5]]), (), (0, 0, 0)),  # static
        Body(np.zeros((0, 3)), (square,), (185, 202, 210)),
    ]
    rng = np.random.default_rng(4)
    out = np.zeros((3, 3, H, W), dtype=np.uint8)  # garbage from an earlier video
    for _ in range(2):
        poses = np.concatenate([rng.uniform(2, 10, (3, 2, 2)), rng.uniform(0, 3, (3, 2, 1))], -1)
        fresh = render_video(bodies, poses, np.array([False, True]), 12.0, W)
        reused = render_video(bodies, poses, np.array([False, True]), 12.0, W, out)
        np.testing.assert_array_equal(reused, fresh)
        assert np.shares_memory(reused, out) and (fresh != 255).any()
    with pytest.raises(ValueError, match=r"out must be a C-contiguous \(3, 3, 48, 48\) uint8"):
        render_video(bodies, poses, np.array([False, True]), 12.0, W, out[:, :, :, :8])
