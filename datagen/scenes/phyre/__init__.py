"""PHYRE-like combinatorial scenes: a red ball plus the four object types of a template, falling.

No PHYRE dependency: the objects, materials and placement rules of PHYRE (and of the authors'
`component_utils.py`) are rebuilt on pymunk. Everything is in metres, y up, the scene a square
of `world_size` (85.33 m: the authors' 512-pixel PHYRE scene at PHYRE's 6 pixels per metre), so
gravity 9.8 m/s^2 gives the same motion as theirs. Placement ranges are fractions of the scene.

Materials (PHYRE's Box2D fixtures): density 0.25, friction 0.5, restitution 0.2, angular
damping 0.01, no linear damping. Box2D combines two fixtures' friction as sqrt(f1 f2) and
restitution as max(e1, e2); pymunk multiplies the two shapes' values. Every shape here has the
same material, so giving each shape sqrt(0.5) and sqrt(0.2) makes pymunk's products exactly
PHYRE's 0.5 and 0.2 for every contact, walls included. pymunk has no per-body angular damping:
it is applied once per frame as the factor Box2D's per-step damping compounds to.

Time: 60 Hz steps (PHYRE's), a frame every `substeps` = 20 steps (the authors' stride): 3 frames
per second, 32 frames = 10.3 s, enough for every object to fall the full scene height (3.8 s from
the highest start) and settle. Frame 0 is the initial state: every object at rest.

Placement (`options.placement`, see docs/datagen_phyre.md):
- `project` (default): objects are placed one type at a time (static types first, then template
  order), each redrawn (up to `MAX_TRIES` times) until it neither overlaps anything already
  placed (static pieces may overlap each other: they never move) nor sticks out of the scene; a
  layout that cannot be completed is redrawn from scratch (up to `MAX_LAYOUTS` times), then
  `PlacementError` names the template. The red ball (radius `USER_BALL_RADIUS`) is dropped above
  or below a random object.
- `paper`: the authors' rules. Every object is drawn once from its ranges: objects may start
  overlapping each other or the walls, and the simulation pushes them apart. Only the red ball is
  checked (inside the scene, overlapping nothing), placed by the authors' heuristic: radius from
  the layout's balls (0.016-0.125 of the scene), near a random object, possibly beside it or
  inside a jar.

Files: `objects.py` (bodies, scale, colours), `placement.py` (layouts and the red ball),
`overlap.py` (overlap tests), `chipmunk.py` (the simulation); this file is the scene interface
(`datagen.scenes.Scene`).
"""

from __future__ import annotations

import bisect
import functools
import itertools
from typing import Any

import numpy as np

from datagen.config import DatagenConfigError
from datagen.render_shapes import Body, render_video
from datagen.sampling import SceneSpec
from datagen.scenes import States
from datagen.scenes.phyre.chipmunk import simulate_objects
from datagen.scenes.phyre.objects import Obj, ball, bar, rectangle
from datagen.scenes.phyre.placement import (
    MAX_LAYOUTS,
    PLACEMENTS,
    PlacementError,
    place_layout,
    place_user_ball,
)
from datagen.scenes.phyre_templates import (
    NUM_TEMPLATES,
    OUT_OF_TEMPLATE,
    resolve_templates,
)

RANGES = ()  # no parameter comes from the config's `ranges`: templates place the objects
CONDITION_FRAMES = 0  # no in-view promise (the generator checks none)
# Scene protocol (datagen.scenes.Scene): templates, not ranges, so no feasibility to filter; the
# Chipmunk driver (chipmunk.py), not datagen.physics, steps the world.
feasible = world = None


# Every scene option (`options.*` of a phyre config) and its default.
OPTIONS: dict[str, Any] = {
    "templates": "train60",  # train6 | train30 | train60 | out_template | all | ids "0,3,10-19"
    "videos_per_template": 1,  # unless the config sets `count`
    "layouts_per_template": 0,  # L > 0: L shared layouts per template; 0: one per video
    "first_video": 0,  # index of this dataset's first video in each template's sequence
    "placement": "project",  # project | paper (see the module docstring)
    "render_scale": 1,  # 2: draw at twice the resolution, then average each 2 x 2 block
}


def _option(spec: SceneSpec, key: str) -> Any:
    return spec.option(key, OPTIONS[key])


def _int_option(spec: SceneSpec, key: str, lowest: int) -> int:
    value = _option(spec, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise DatagenConfigError(f"options.{key} must be an integer >= {lowest}, got {value!r}")
    return value


def _templates(spec: SceneSpec) -> tuple[int, ...]:
    try:
        return resolve_templates(str(_option(spec, "templates")))
    except ValueError as err:
        raise DatagenConfigError(f"options.templates: {err}") from None


@functools.lru_cache(maxsize=64)
def _starts(num_templates: int, count: int, per: int) -> tuple[int, ...]:
    """Index of each template's first video, and the total at the end: `per` videos each, or
    `count` > 0 spread as evenly as possible (the first count % K templates get one more)."""
    if count > 0:
        sizes = [count // num_templates + (i < count % num_templates) for i in range(num_templates)]
    else:
        sizes = [per] * num_templates
    return (0, *itertools.accumulate(sizes))


def _template_starts(spec: SceneSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(templates, starts) of the dataset (see `_starts`)."""
    templates = _templates(spec)
    per = _option(spec, "videos_per_template")
    return templates, _starts(len(templates), spec.count, per)


def validate(spec: SceneSpec) -> None:
    """Known options with sensible values, templates that exist and match the level, a `count`
    that gives every template a video."""
    unknown = sorted(set(spec.options) - set(OPTIONS))
    if unknown:
        raise DatagenConfigError(
            f"unknown phyre option(s) {unknown}; the options are {sorted(OPTIONS)}"
        )
    templates = _templates(spec)
    held_out = set(OUT_OF_TEMPLATE)
    if spec.level == "out_template" and not set(templates) <= held_out:
        raise DatagenConfigError(
            f"level=out_template but options.templates includes training templates "
            f"{sorted(set(templates) - held_out)}; use options.templates=out_template"
        )
    if spec.level != "out_template" and set(templates) & held_out:
        raise DatagenConfigError(
            f"options.templates includes held-out templates {sorted(set(templates) & held_out)} "
            f"(60-{NUM_TEMPLATES - 1}) but level={spec.level}; set level=out_template or use "
            "training templates"
        )
    _int_option(spec, "videos_per_template", 1)
    layouts = _int_option(spec, "layouts_per_template", 0)
    if _int_option(spec, "first_video", 0) and not layouts:
        raise DatagenConfigError(
            "options.first_video selects later videos (held-out red balls) of shared layouts, "
            "but layouts_per_template=0 gives every video its own layout: set "
            "layouts_per_template (as the training set does), or use another seed for new layouts"
        )
    if _option(spec, "render_scale") not in (1, 2):
        raise DatagenConfigError(
            f"options.render_scale must be 1 (draw at `resolution`) or 2 (draw at twice it and "
            f"average 2 x 2 blocks, the authors' 512 -> 256), got {_option(spec, 'render_scale')!r}"
        )
    if _option(spec, "placement") not in PLACEMENTS:
        raise DatagenConfigError(
            f"options.placement must be one of {PLACEMENTS}, got {_option(spec, 'placement')!r}"
        )
    if spec.count < 0 or 0 < spec.count < len(templates):
        raise DatagenConfigError(
            f"count={spec.count} videos cannot cover the {len(templates)} templates of "
            f"options.templates={_option(spec, 'templates')}: set count >= {len(templates)} "
            "(spread over the templates), or count=0 and options.videos_per_template"
        )


def count(spec: SceneSpec) -> int:
    """Number of videos: `count` when the config sets it (spread over the templates), else every
    template of `options.templates` times `videos_per_template`."""
    return _template_starts(spec)[1][-1]


@functools.lru_cache(maxsize=1024)
def _shared_layout(
    seed: int, template: int, layout: int, w: float, placement: str
) -> tuple[Obj, ...]:
    """Layout number `layout` of `template` when a template's videos share a few layouts: a pure
    function of its arguments, so it is kept for the next video that uses it (a worker's videos
    cycle through their template's layouts). Callers must not change the objects."""
    rng = np.random.default_rng([seed, template, layout, 0x5C3E])
    return tuple(place_layout(template, rng, w, placement))


def sample_params(spec: SceneSpec, index: int, rng: np.random.Generator) -> dict:
    """Template, layout and red ball of video `index` (template-major order).

    Video j of a template is number j + `first_video` of that template's sequence. With
    `layouts_per_template` L > 0 it is layout j % L (of L per template, drawn from the dataset
    seed, template and layout number) with red ball ("trial") j // L, drawn from the seed,
    template and j: the authors' scheme (100 PHYRE tasks per template, 1,000 red balls each),
    so an eval set with the training seed and `first_video` past the training videos holds the
    same layouts with red balls never trained on. With L = 0 every video has its own layout and
    red ball, drawn from the video's own `rng`.
    """
    templates, starts = _template_starts(spec)
    t = bisect.bisect_right(starts, index) - 1
    template, j = templates[t], index - starts[t] + _option(spec, "first_video")
    layouts = _option(spec, "layouts_per_template")
    placement = _option(spec, "placement")
    w = spec.world_size
    if layouts:
        layout = list(_shared_layout(spec.seed, template, j % layouts, w, placement))
        trial = np.random.default_rng([spec.seed, template, j, 0xBA11])
        user = place_user_ball(layout, trial, w, placement)
        if user is None:
            raise PlacementError(
                f"template {template} layout {j % layouts}: no room for the red ball"
            )
    else:
        for _ in range(MAX_LAYOUTS):
            layout = place_layout(template, rng, w, placement)
            user = place_user_ball(layout, rng, w, placement)
            if user is not None:
                break
        else:
            raise PlacementError(
                f"template {template}: no room for the red ball in {MAX_LAYOUTS} layouts"
            )
    objs = [*layout, user]
    return {
        "template": template,
        "objects": [{**o.describe(), "x": o.x, "y": o.y, "angle": o.angle} for o in objs],
    }


def objects_from_params(params: dict) -> list[Obj]:
    """Rebuild the bodies of `sample_params`' output."""
    objs = []
    for d in params["objects"]:
        colour = tuple(d["colour"])
        if d["shape"] == "circle":
            obj = ball(d["type"], d["radius"], d["dynamic"], colour)
        elif d["shape"] == "box":
            obj = bar(d["type"], *d["size"], d["dynamic"])
        else:
            pieces = [np.array(p, dtype=np.float64) for p in d["pieces"]]
            obj = Obj(d["type"], d["dynamic"], colour, np.zeros((0, 3)), pieces)
        obj.x, obj.y, obj.angle = d["x"], d["y"], d["angle"]
        objs.append(obj)
    return objs


def simulate(params: dict, spec: SceneSpec) -> States:
    """The video's states: every object (static ones too) at every frame."""
    objs = objects_from_params(params)
    traj = simulate_objects(objs, spec.world_size, spec.frames, spec.substeps, spec.frame_dt)
    return States(
        traj.positions.astype(np.float32),
        traj.velocities.astype(np.float32),
        traj.angles.astype(np.float32),
        [o.describe() for o in objs],
    )


def render_bodies(objects: list[dict]) -> list[Body]:
    """Renderable pieces of `objects` column entries (circle, box or compound)."""
    bodies = []
    for d in objects:
        if d["shape"] == "circle":
            bodies.append(Body(np.array([[0.0, 0.0, d["radius"]]]), (), tuple(d["colour"])))
        elif d["shape"] == "box":
            bodies.append(Body(np.zeros((0, 3)), (rectangle(*d["size"]),), tuple(d["colour"])))
        else:
            pieces = tuple(np.asarray(p, dtype=np.float64) for p in d["pieces"])
            bodies.append(Body(np.zeros((0, 3)), pieces, tuple(d["colour"])))
    return bodies


def render(
    states: States,
    world_size: float,
    resolution: int,
    out: np.ndarray | None = None,
    spec: SceneSpec | None = None,
) -> np.ndarray:
    """Frames (T, H, W, 3) uint8: hard-edged filled shapes on white, static ones drawn once.

    `out`: a (T, 3, H, W) uint8 buffer to draw into, reused from video to video (see
    `datagen.render_shapes.render_video`); the frames are a view of it. `spec`: the dataset's
    options; with `render_scale` 2 the shapes are drawn at twice `resolution` and each 2 x 2
    block averaged (the authors rendered at 512 pixels and downscaled to 256).
    """
    scale = _option(spec, "render_scale") if spec is not None else 1
    poses = np.concatenate([states.positions, states.angles[..., None]], axis=-1).astype(np.float64)
    dynamic = np.array([d["dynamic"] for d in states.objects])
    bodies = render_bodies(states.objects)
    return render_video(bodies, poses, dynamic, world_size, resolution, out, supersample=scale)
