"""Template enumeration and splits: complete, disjoint, and numbered as the authors numbered them."""

from __future__ import annotations

import re
from itertools import combinations

import pytest

from datagen.scenes.phyre_templates import (
    NUM_TEMPLATES,
    OBJECT_TYPES,
    OUT_OF_TEMPLATE,
    TEMPLATES,
    TRAIN_SUBSETS,
    resolve_templates,
    template_objects,
)


def test_every_choice_of_four_of_eight_once():
    assert len(OBJECT_TYPES) == 8 and len(set(OBJECT_TYPES)) == 8
    assert NUM_TEMPLATES == len(TEMPLATES) == 70
    assert {frozenset(t) for t in TEMPLATES} == {
        frozenset(c) for c in combinations(OBJECT_TYPES, 4)
    }


def test_numbering_matches_the_authors_task_ids():
    # From the comment in the authors' task10000.py: their task templates 10003, 10005, ... are
    # these object sets (their names: dynamic_standing_bars, dynamic_standingsticks, static_ball).
    authors = {
        3: {"standing_bars", "static_bar", "dynamic_jar", "standing_sticks"},
        5: {"static_balls", "dynamic_bar", "standing_bars", "static_bar"},
        16: {"static_balls", "dynamic_bar", "dynamic_jar", "standing_sticks"},
        23: {"dynamic_ball_1", "dynamic_ball_2", "static_balls", "dynamic_bar"},
        24: {"dynamic_ball_1", "dynamic_ball_2", "standing_bars", "static_bar"},
        53: {"dynamic_ball_1", "dynamic_ball_2", "dynamic_jar", "standing_sticks"},
    }
    for k, objects in authors.items():
        assert set(template_objects(k)) == objects


def test_splits_are_disjoint_and_sized():
    held_out = set(OUT_OF_TEMPLATE)
    assert held_out == set(range(60, 70))
    for n, ids in TRAIN_SUBSETS.items():
        assert len(ids) == len(set(ids)) == n
        assert not set(ids) & held_out
    assert set(TRAIN_SUBSETS[60]) | held_out == set(range(70))
    # The 6-template set covers every object type, so out-of-template scenes hold known objects.
    assert {o for t in TRAIN_SUBSETS[6] for o in template_objects(t)} == set(OBJECT_TYPES)


def test_subsets_are_the_authors():
    # Their README: the 30-template subset is the task ids matching `100[0-5][02468]` (the even
    # templates 0-58, not the first 30), the 6-template one the ids listed there.
    ids = [k for k in range(NUM_TEMPLATES) if re.fullmatch(r"100[0-5][02468]", str(10000 + k))]
    assert TRAIN_SUBSETS[30] == tuple(ids) == tuple(range(0, 59, 2))
    assert TRAIN_SUBSETS[6] == (3, 5, 16, 23, 24, 53)
    assert TRAIN_SUBSETS[60] == tuple(range(60))


def test_resolve_templates():
    assert resolve_templates("train6") == TRAIN_SUBSETS[6]
    assert resolve_templates("out_template") == tuple(range(60, 70))
    assert resolve_templates("0,3,10-12") == (0, 3, 10, 11, 12)
    with pytest.raises(ValueError, match="out of range"):
        resolve_templates("68-70")
    with pytest.raises(ValueError, match="train6"):
        resolve_templates("six")
    with pytest.raises(ValueError, match="twice"):
        resolve_templates("1,1")
