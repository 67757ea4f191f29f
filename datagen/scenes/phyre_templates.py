"""The 70 PHYRE-like templates: every choice of 4 of the 8 object types, numbered stably.

Numbering follows the authors' generator (phyworld's `task_scripts/main/task10000.py`): the
C(8, 4) combinations of `OBJECT_TYPES` in `itertools.combinations` order, shuffled once with
`random.Random(4)`. Template k here is their task template `10000 + k`, so results can be
compared template by template. Templates 0-59 are for training, 60-69 are held out for
out-of-template evaluation. The training subsets are the authors' (their README): 6 templates
hand-picked to cover every pair of object groups, 30 = the even templates 0, 2, ..., 58 (their
task-id pattern `100[0-5][02468]`), 60 = all of 0-59.
"""

from __future__ import annotations

import random
from itertools import combinations

# The eight object types. A "dynamic ball" appears twice (two independent gray balls), as in the
# authors' object list, so that C(8, 4) = 70.
OBJECT_TYPES: tuple[str, ...] = (
    "dynamic_ball_1",
    "dynamic_ball_2",
    "static_balls",  # a chain of static black balls
    "dynamic_bar",
    "standing_bars",  # 1-4 dynamic vertical bars on the floor
    "static_bar",
    "dynamic_jar",
    "standing_sticks",  # a dynamic pair of crossed sticks
)

NUM_TEMPLATES = 70
OUT_OF_TEMPLATE: tuple[int, ...] = tuple(range(60, 70))
# Training subsets by size; every one lies inside templates 0-59.
TRAIN_SUBSETS: dict[int, tuple[int, ...]] = {
    6: (3, 5, 16, 23, 24, 53),
    30: tuple(range(0, 60, 2)),  # the authors' `100[0-5][02468]`: the even templates 0-58
    60: tuple(range(60)),
}


def _enumerate_templates() -> tuple[tuple[str, ...], ...]:
    combos = list(combinations(OBJECT_TYPES, 4))
    # The authors' fixed shuffle; `random.Random(seed).shuffle` is stable across Python versions.
    random.Random(4).shuffle(combos)
    return tuple(combos)


TEMPLATES: tuple[tuple[str, ...], ...] = _enumerate_templates()


def template_objects(template: int) -> tuple[str, ...]:
    """The four object types of `template` (0-69)."""
    if not 0 <= template < NUM_TEMPLATES:
        raise ValueError(
            f"template {template} is out of range: templates are 0-{NUM_TEMPLATES - 1}"
        )
    return TEMPLATES[template]


def resolve_templates(spec: str) -> tuple[int, ...]:
    """Template ids from a config value.

    `train6`, `train30`, `train60`: the training subsets; `out_template`: 60-69; `all`: 0-69;
    otherwise a comma-separated list of ids and ranges, e.g. `0,3,10-19`.
    """
    named = {f"train{n}": ids for n, ids in TRAIN_SUBSETS.items()}
    named["out_template"] = OUT_OF_TEMPLATE
    named["all"] = tuple(range(NUM_TEMPLATES))
    if spec in named:
        return named[spec]
    ids: list[int] = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.strip().partition("-")
            ids.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        raise ValueError(
            f"bad template list {spec!r}: use one of {sorted(named)} or ids and ranges like '0,3,10-19'"
        ) from None
    for t in ids:
        template_objects(t)  # range check
    if len(set(ids)) != len(ids):
        raise ValueError(f"template list {spec!r} names a template twice")
    return tuple(ids)
