"""Paper mode (`options.placement=paper`, `render_scale=2`): the authors' placement rules, their
red ball, their held-out trials and their 512-pixel rendering."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_phyre_physics import FRAME_DT, FRAMES, PIXEL, SUBSTEPS, W, posed, spec, worst_overlap

from datagen.config import DatagenConfig
from datagen.generate import make_plan, run
from datagen.scenes import States, phyre
from datagen.scenes.phyre_templates import NUM_TEMPLATES, template_objects
from phyworld.config import load_config
from phyworld.data.shards import iter_samples

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "data"
PX = W / phyre.placement.SCENE_PX  # one pixel of the authors' 512-pixel scene, in metres


def paper_scene(template: int, seed: int) -> list[phyre.objects.Obj]:
    rng = np.random.default_rng([seed, template])
    layout = phyre.placement.place_layout(template, rng, W, "paper")
    user = phyre.placement.place_user_ball(layout, rng, W, "paper")
    assert user is not None
    return [*layout, user]


def overlaps_somewhere(objs: list[phyre.objects.Obj]) -> bool:
    """Whether project placement would reject the layout: two objects that can collide overlap,
    or one sticks out of the scene."""
    occ = phyre.placement._Occupancy(W)
    for obj in objs:
        if not occ.fits([obj]):
            return True
        occ.add([obj])
    return False


def test_paper_layouts_keep_the_authors_ranges_and_overlaps():
    # Each object is drawn once from the authors' ranges, so a static bar's length keeps the mean
    # of U(0.2, 0.5); redrawing overlapping objects (project placement) shortens it to ~0.29,
    # and most layouts drawn from these ranges overlap somewhere (71% of 2,800, 45-90% per
    # template).
    paper, project, rejected = [], [], []
    for template in range(NUM_TEMPLATES):
        for k in range(6):
            objs = phyre.placement.place_layout(
                template, np.random.default_rng([1, template, k]), W, "paper"
            )
            assert {o.type for o in objs} == set(template_objects(template))
            paper += [o.size[0] / W for o in objs if o.type == "static_bar"]
            rejected.append(overlaps_somewhere(objs))
            proj = phyre.placement.place_layout(
                template, np.random.default_rng([1, template, k]), W
            )
            assert not overlaps_somewhere(proj)
            project += [o.size[0] / W for o in proj if o.type == "static_bar"]
    assert len(paper) == 6 * 35 and abs(np.mean(paper) - 0.35) < 0.02
    assert np.mean(project) < 0.32
    assert 0.6 < np.mean(rejected) < 0.85


def test_paper_balls_are_phyre_pixel_radii():
    # PHYRE rounds a ball's radius to whole pixels of its 512-pixel scene plus a half.
    for template in (23, 53):  # two dynamic balls; static balls too in 23
        for seed in range(5):
            for o in paper_scene(template, seed)[:-1]:
                if o.shape == "circle":
                    r = o.circles[0, 2] / PX
                    assert r - 0.5 == pytest.approx(round(r - 0.5), abs=1e-9)


class Scripted:
    """A stand-in for numpy's Generator that returns scripted unit draws, in order."""

    def __init__(self, values):
        self.values = list(values)

    def uniform(self, lo=0.0, hi=1.0):
        return lo + (hi - lo) * self.values.pop(0)

    def integers(self, n):
        return int(self.values.pop(0) * n)


def test_paper_chain_walk_is_the_authors():
    # Heading down, no turn: two steps of 0.1 from (0.4, 0.55). A restart from the first ball
    # (y 0.55 >= 0.5) is dropped but keeps its new heading (right): the walk goes on from the
    # last ball. A restart from ball 2 appends it again and counts it (the authors' walk; the
    # project's never repeats a ball). Five counted balls, four distinct after the start.
    step = 1 / 3  # U(0.05, 0.2) -> 0.1
    rng = Scripted(
        [
            *(0.75, 0.0, step, step),  # heading, turn; two steps down
            *(0.1, 0.0, 0.0, 0.0),  # restart (< 0.2) from ball 0, heading right, no turn: dropped
            *(step, step),  # two steps right, from the last ball
            *(0.1, 0.5, 0.25, 0.0),  # restart from ball 2 (the 3rd of 5), appended again
        ]
    )
    np.testing.assert_allclose(
        phyre.placement._chain_paper(rng, 5),
        [(0.4, 0.55), (0.4, 0.45), (0.4, 0.35), (0.5, 0.35), (0.6, 0.35)],
        atol=1e-12,
    )
    assert not rng.values  # every draw used, none more


def test_paper_red_ball_radius_follows_the_layouts_balls():
    # r ~ U(max(smallest ball radius / 2, 0.02), min(4 x largest, 0.2)) (all of it without
    # balls), then PHYRE's action radius 2 + 310 r pixels of 512, rounded: 0.016-0.125 of the
    # scene, at most 27/512 = 0.053 when the only balls are the static ones (radius 10.5 px).
    seen = {"none": [], "static": [], "dynamic": []}
    for template in range(NUM_TEMPLATES):
        kinds = template_objects(template)
        group = (
            "dynamic"
            if "dynamic_ball_1" in kinds or "dynamic_ball_2" in kinds
            else "static"
            if "static_balls" in kinds
            else "none"
        )
        for seed in range(4):
            *layout, user = paper_scene(template, seed)
            lo, hi = phyre.placement.paper_radius_range(layout, W)
            r = round(user.circles[0, 2] / PX)
            assert user.circles[0, 2] / PX == pytest.approx(r, abs=1e-9)  # whole pixels
            assert round(2 + 310 * lo) <= r <= round(2 + 310 * hi)
            seen[group].append(r / phyre.placement.SCENE_PX)
            # Inside the scene and touching nothing, the only check the authors make.
            assert phyre.overlap.outside(user, W) <= 0
            assert (
                max(phyre.overlap.penetration(user, o) for o in layout)
                <= phyre.overlap.OVERLAP_TOLERANCE
            )
    every = [r for group in seen.values() for r in group]
    assert min(every) >= 8 / 512 and max(every) <= 64 / 512
    assert max(seen["static"]) <= 27 / 512 < max(seen["dynamic"])
    assert max(seen["none"]) > 0.08  # no ball in the layout: the whole action range


def test_paper_red_ball_may_start_beside_an_object_or_inside_a_jar():
    # A jar alone, upright on the floor: the project's red ball is always dropped above (or
    # below) the object it picks; the authors' may start level with it, beside it or inside.
    from scipy.spatial import Delaunay

    jar = phyre.placement._place(phyre.objects.jar(0.3 * W, W), 0.0, bottom=0.0, center_x=0.5 * W)
    x0, y0, x1, y1 = jar.bounds()
    hull = Delaunay([pt for (pts, _), _ in jar.geometry().polygons for pt in pts])
    counts = {}
    for placement in ("project", "paper"):
        inside = beside = 0
        for seed in range(300):
            user = phyre.placement.place_user_ball([jar], np.random.default_rng(seed), W, placement)
            r = user.circles[0, 2]
            level = y0 < user.y - r and user.y + r < y1
            inside += level and hull.find_simplex([user.x, user.y]) >= 0
            beside += level and (user.x + r < x0 or user.x - r > x1)
        counts[placement] = inside, beside
    assert counts["project"] == (0, 0)
    assert counts["paper"][0] >= 20 and counts["paper"][1] >= 5, counts  # 49 and 16 of 300


@pytest.mark.parametrize("template", range(0, 70, 5))
def test_paper_overlaps_are_pushed_apart(template):
    # The authors' scenes may start with objects overlapping each other or poking into a wall;
    # the simulation pushes them apart within a few frames, and nothing dynamic leaves the scene.
    objs = paper_scene(template, seed=3)
    traj = phyre.chipmunk.simulate_objects(objs, W, FRAMES, SUBSTEPS, FRAME_DT)
    dyn = np.isfinite(traj.mass)
    assert (
        not traj.velocities[0].any() and (traj.positions[:, ~dyn] == traj.positions[:1, ~dyn]).all()
    )
    for f in range(12, FRAMES):
        at = posed(objs, traj, f)
        assert worst_overlap(at) < 1.5 * PIXEL, f"frame {f}"
        assert max(phyre.overlap.outside(o, W) for o, d in zip(at, dyn) if d) < 1.5 * PIXEL, (
            f"frame {f}"
        )


def test_paper_render_is_the_block_mean_of_a_render_at_twice_the_size():
    s = spec(placement="paper", render_scale=2)
    params = phyre.sample_params(s, 7, np.random.default_rng([0, 7]))
    states = phyre.simulate(params, s)
    small = phyre.render(states, W, 64, spec=s).astype(np.int64)
    big = phyre.render(states, W, 128).astype(np.int64)
    blocks = big.reshape(FRAMES, 64, 2, 64, 2, 3).sum(axis=(2, 4))
    np.testing.assert_array_equal(small, (blocks + 2) // 4)
    # Edges blend: colours other than the four of a hard-edged render appear.
    palette = {(255, 255, 255), phyre.objects.RED, phyre.objects.GRAY, phyre.objects.BLACK}
    assert len({tuple(c) for c in small[0].reshape(-1, 3)} - palette) > 5


def test_paper_in_template_eval_holds_training_layouts_with_new_red_balls():
    train = load_config(DatagenConfig, [str(CONFIGS / "phyre_paper_train6.yaml")])
    ev = load_config(DatagenConfig, [str(CONFIGS / "phyre_paper_eval_in_template6.yaml")])
    (ts,), (es,) = make_plan(train).specs, make_plan(ev).specs
    # Eval video j of a template is training-sequence video 99,000 + j: layout j % 100, trial 990.
    longer = spec(**{**ts.options, "templates": "train6", "videos_per_template": 100_000})
    for j in (0, 57):
        got = phyre.sample_params(es, j, np.random.default_rng([ev.seed, j]))
        same = phyre.sample_params(longer, 99_000 + j, np.random.default_rng(0))
        assert got == same
        seen = phyre.sample_params(ts, j, np.random.default_rng([train.seed, j]))  # trial 0
        assert got["objects"][:-1] == seen["objects"][:-1]  # the training layout ...
        assert got["objects"][-1] != seen["objects"][-1]  # ... with another red ball


def test_paper_dataset_round_trip(tmp_path):
    # `render_scale` reaches the renderer through the generator; the stored states redraw the
    # stored frames.
    out = tmp_path / "paper"
    args = [str(CONFIGS / "phyre_paper_train6.yaml"), f"output={out}", "progress=false"]
    cfg = load_config(DatagenConfig, [*args, "count=6", "resolution=64", "part_size=3"])
    assert run(cfg)["count"] == 6
    samples = list(iter_samples(str(out)))
    (s,) = make_plan(cfg).specs
    for sample, template in zip(samples, (3, 5, 16, 23, 24, 53)):
        assert sample["params"]["template"] == template
        states = States(
            sample["positions"], sample["velocities"], sample["angles"], sample["objects"]
        )
        frames = phyre.render(states, cfg.world_size, 64, spec=s)
        np.testing.assert_array_equal(frames, sample["frames"])
        assert not np.array_equal(frames, phyre.render(states, cfg.world_size, 64))
        assert sample["objects"][-1]["type"] == "user_ball"
