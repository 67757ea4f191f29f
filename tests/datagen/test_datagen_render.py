"""The renderer: pixel convention, sub-pixel accuracy of the anti-aliased edge, the paper's soft
edge, shapes and overlap (the frame encoding: test_datagen_encoding.py)."""

from __future__ import annotations

import numpy as np
import pytest

from datagen.render import draw, render
from datagen.scenes import States
from phyworld.data.codec import decode_frames, encode_frames
from phyworld.data.pixels import index_to_world, pixel_to_world, world_to_pixel

RED, BLUE = [255, 0, 0], [0, 0, 255]


def states(xy, obj, angles=None) -> States:
    xy = np.asarray(xy, dtype=np.float32).reshape(-1, 1, 2)
    ang = (
        np.zeros(xy.shape[:2], np.float32)
        if angles is None
        else np.asarray(angles, np.float32)[:, None]
    )
    return States(xy, np.zeros_like(xy), ang, [obj])


def ball(r, colour=RED):
    return {"type": "ball", "shape": "circle", "radius": r, "colour": colour, "dynamic": True}


def test_pixel_convention():
    # Pixel (0, 0) is the top-left: world x in [0, s), y in [world - s, world).
    np.testing.assert_allclose(index_to_world([0, 0], 10.0, 128), [10 / 256, 10 - 10 / 256])
    np.testing.assert_allclose(
        world_to_pixel([[0.0, 10.0], [10.0, 0.0]], 10.0, 128), [[0, 0], [128, 128]]
    )
    pts = np.random.default_rng(0).uniform(0, 10, (50, 2))
    np.testing.assert_allclose(pixel_to_world(world_to_pixel(pts, 10.0, 96), 10.0, 96), pts)
    # A ball in the upper-left quarter of the world is drawn in the upper-left of the image.
    f = render(states([[2.5, 7.5]], ball(0.5)), 64, 10.0)[0]
    rows, cols = np.nonzero(f[..., 1] < 128)
    # Continuous u = 16 is the edge between pixels 15 and 16: index centroid 15.5.
    assert rows.mean() == pytest.approx(15.5, abs=0.01) and cols.mean() == pytest.approx(
        15.5, abs=0.01
    )


def _alpha_centroid(frames):
    a = 1.0 - frames[..., 1].astype(np.float64) / 255.0  # red on white: G = 255 (1 - alpha)
    jj, ii = np.mgrid[: frames.shape[1], : frames.shape[2]]
    m = a.sum((1, 2))
    return np.stack([(a * ii).sum((1, 2)) / m, (a * jj).sum((1, 2)) / m], -1), m


def disc_area_in_pixels(dx, dy, r):
    """Area of the disc of radius r (pixels) inside the unit pixels centred at offsets (dx, dy)
    from its centre, float64, by the corner formula (an independent derivation from the
    renderer's row integrals): A = S(x1, y1) - S(x0, y1) - S(x1, y0) + S(x0, y0), S(x, y) the
    signed area of the disc in the rectangle between (0, 0) and (x, y)."""

    def quadrant(x, y):  # x, y >= 0
        x, y = np.minimum(x, r), np.minimum(y, r)
        xs, ys = np.sqrt(np.maximum(r * r - y * y, 0)), np.sqrt(np.maximum(r * r - x * x, 0))
        cut = 0.5 * (xs * y + x * ys) + 0.5 * r * r * np.arctan2(x * y - xs * ys, x * xs + y * ys)
        return np.where(x * x + y * y <= r * r, x * y, cut)

    def signed(x, y):
        return np.sign(x) * np.sign(y) * quadrant(np.abs(x), np.abs(y))

    x0, x1, y0, y1 = dx - 0.5, dx + 0.5, dy - 0.5, dy + 0.5
    return signed(x1, y1) - signed(x0, y1) - signed(x1, y0) + signed(x0, y0)


@pytest.mark.parametrize("resolution", [128, 256])
def test_antialiased_edge_gives_subpixel_centres_and_exact_area(resolution):
    rng = np.random.default_rng(1)
    for r in (0.3, 0.7, 1.0, 1.4):
        xy = rng.uniform(2, 8, (32, 2))
        frames = render(states(xy, ball(r)), resolution, 10.0, "aa")
        centre, mass = _alpha_centroid(frames)
        err = np.abs(index_to_world(centre, 10.0, resolution) - xy).max()
        assert err < 5e-4, err  # 1/150 of a pixel at 128 px (the old clip(r + 0.5 - d): 2e-3)
        np.testing.assert_allclose(mass, np.pi * (r * resolution / 10) ** 2, rtol=2e-3)


def test_paper_rendering_is_the_authors_formula_at_their_pixel_positions():
    # The authors' generator: meshgrid of linspace(0, 1, W) (pixel i at x = i * 10 / (W - 1)),
    # their soft edge in float64, then the rows flipped (row 0 at the top, y = 10).
    r, xy = 1.0, np.array([[4.93, 5.27]])
    f = render(states(xy, ball(r)), 128, 10.0, "paper")[0]
    grid = np.linspace(0.0, 10.0, 128)
    d2 = (grid[None, :] - xy[0, 0]) ** 2 + (grid[::-1, None] - xy[0, 1]) ** 2
    alpha = np.clip((r * r - d2) / (0.03 * r * r), 0, 1)
    diff = np.abs(f[..., 1].astype(int) - np.rint(255 * (1 - alpha)))
    assert diff.max() <= 1 and (diff > 0).sum() <= 2  # float32 vs float64 at a rounding edge
    assert (f[..., 0] == 255).all() and (255 - f[..., 1]).sum() > 0.9 * 255 * np.pi * 12.7**2


@pytest.mark.parametrize("style", ["aa", "paper"])
def test_compiled_discs_equal_the_formula_on_every_pixel(style):
    # Random radii and sub-pixel centres, some across the image border: the kernel's chords
    # (and filled interiors) must give the full-frame formula: the paper's soft edge in float32
    # at the authors' pixel positions, bit for bit; the exact area of the disc in each pixel
    # (float64) to the last uint8 level.
    rng = np.random.default_rng(5)
    for r in rng.uniform(0.3, 2.0, 6).tolist():  # Python floats, as sizes are in `objects`
        xy = rng.uniform(-1.0, 11.0, (16, 2))
        frames = render(states(xy, ball(r)), 96, 10.0, style)
        xy32 = xy.astype(np.float32).astype(np.float64)  # the stored float32 states
        scale, offset = (95 / 10, 0.5) if style == "paper" else (96 / 10, 0.0)
        u, v = xy32[:, 0] * scale + offset, (10.0 - xy32[:, 1]) * scale + offset
        i = np.arange(96)  # offsets of pixel centres from the disc's centre, y up
        dx = i[None, None, :] + 0.5 - u[:, None, None]
        dy = v[:, None, None] - i[None, :, None] - 0.5
        rp = r * scale
        if style == "paper":  # float32 as the kernel computes it
            dx, dy = dx.astype(np.float32), dy.astype(np.float32)
            d2 = dx * dx + dy * dy
            alpha = np.clip((rp * rp - d2) / (0.03 * rp * rp), 0.0, 1.0)
            green = np.rint(255.0 + (np.float32(0.0) - 255.0) * alpha).astype(np.uint8)
            np.testing.assert_array_equal(frames[..., 1], green)
        else:
            alpha = np.clip(disc_area_in_pixels(dx, dy, rp), 0.0, 1.0)
            diff = np.abs(frames[..., 1].astype(int) - np.rint(255.0 * (1.0 - alpha)))
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-4


def test_only_the_pixels_near_the_ball_change_and_offscreen_is_blank():
    frames = render(states([[5.0, 5.0], [-3.0, 5.0], [9.9, 0.1]], ball(1.0)), 64, 10.0)
    changed = np.argwhere((frames[0] != 255).any(-1))
    assert np.abs(changed - 32).max() <= 7  # r = 6.4 px around the centre
    assert (frames[1] == 255).all()  # fully off-screen
    assert (frames[2] != 255).any() and (frames[2][:40, :40] == 255).all()  # clipped at the corner


def test_later_objects_blend_over_earlier_ones():
    xy = np.array([[[4.5, 5.0], [5.5, 5.0]]], np.float32)
    st = States(
        xy, np.zeros_like(xy), np.zeros((1, 2), np.float32), [ball(1.0, RED), ball(1.0, BLUE)]
    )
    canvas = draw(st, 64, 10.0)
    f = canvas.frames()[0]
    # One box per object, overlapping: the encoding stays lossless.
    assert len(canvas.boxes()) == 2
    np.testing.assert_array_equal(
        decode_frames(encode_frames(canvas.frames(), boxes=canvas.boxes())), canvas.frames()
    )
    assert tuple(f[32, 26]) == (255, 0, 0)  # red only
    assert tuple(f[32, 35]) == (0, 0, 255)  # blue on top where they overlap
    assert tuple(f[32, 38]) == (0, 0, 255)


@pytest.mark.parametrize("angle", [0.0, np.pi / 6])
def test_box_area_and_orientation(angle):
    obj = {"type": "square", "shape": "box", "size": [2.0, 1.0], "colour": BLUE, "dynamic": True}
    f = render(states([[5.0, 5.0]], obj, [angle]), 128, 10.0)[0]
    cover = 1.0 - f[..., 0].astype(np.float64) / 255.0
    assert cover.sum() == pytest.approx(2.0 * 12.8 * 12.8, rel=5e-3)
    rows, cols = np.nonzero(cover > 0.5)
    assert np.ptp(cols) > np.ptp(rows)  # wide, not tall
    if angle:  # counter-clockwise in world = the right end is higher (smaller row)
        right = cols > 64 + 8
        assert rows[right].mean() < 63.5


def test_ring_is_hollow():
    obj = {
        "type": "ring",
        "shape": "ring",
        "radius": 1.0,
        "inner_radius": 0.6,
        "colour": RED,
        "dynamic": True,
    }
    f = render(states([[5.0, 5.0]], obj), 128, 10.0)[0]
    assert tuple(f[64, 64]) == (255, 255, 255) and tuple(f[64, 64 + 10]) == (255, 0, 0)
    cover = 1.0 - f[..., 1].astype(np.float64) / 255.0
    assert cover.sum() == pytest.approx(np.pi * (1.0 - 0.36) * 12.8**2, rel=5e-3)
