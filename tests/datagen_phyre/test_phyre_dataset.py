"""`python -m datagen configs/data/phyre_*.yaml`: the configs load, and a tiny set round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datagen.config import DatagenConfig
from datagen.generate import make_plan, run
from datagen.scenes import States, phyre
from datagen.scenes.phyre_templates import OUT_OF_TEMPLATE, TRAIN_SUBSETS
from datagen.shards import iter_samples
from phyworld.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "data"
PALETTE = {(255, 255, 255), phyre.RED, phyre.GRAY, phyre.BLACK}


@pytest.mark.parametrize(
    ("name", "count", "level", "templates"),
    [
        ("phyre_train6.yaml", 600_000, "in_template", TRAIN_SUBSETS[6]),
        ("phyre_train30.yaml", 3_000_000, "in_template", TRAIN_SUBSETS[30]),
        ("phyre_train60.yaml", 6_000_000, "in_template", TRAIN_SUBSETS[60]),
        ("phyre_eval_in_template6.yaml", 960, "in_template", TRAIN_SUBSETS[6]),
        ("phyre_eval_in_template30.yaml", 960, "in_template", TRAIN_SUBSETS[30]),
        ("phyre_eval_in_template60.yaml", 960, "in_template", TRAIN_SUBSETS[60]),
        ("phyre_eval_out_template.yaml", 1000, "out_template", OUT_OF_TEMPLATE),
    ],
)
def test_paper_configs_plan(name, count, level, templates):
    cfg = load_config(DatagenConfig, [str(CONFIGS / name)])
    plan = make_plan(cfg)
    assert plan.count == count
    (spec,) = plan.specs
    assert spec.level == level and phyre._templates(spec) == templates
    assert cfg.resolution == 256 and cfg.frames == 32
    assert cfg.frame_dt / cfg.substeps == pytest.approx(1 / 60)  # PHYRE's step


def test_eval_sets_use_other_seeds_than_training():
    seeds = {
        load_config(DatagenConfig, [str(p)]).seed
        for p in CONFIGS.glob("phyre_*.yaml")
        if "eval" in p.name
    }
    train = {
        load_config(DatagenConfig, [str(CONFIGS / f"phyre_train{n}.yaml")]).seed
        for n in (6, 30, 60)
    }
    assert not seeds & train


def test_tiny_dataset_round_trip(tmp_path):
    out = tmp_path / "phyre_tiny"
    cfg = load_config(
        DatagenConfig, [str(CONFIGS / "phyre_tiny.yaml"), f"output={out}", "progress=false"]
    )
    summary = run(cfg)
    assert summary["count"] == 12
    samples = list(iter_samples(str(out)))
    assert [s["id"] for s in samples] == [f"phyre_tiny-{i:09d}" for i in range(12)]
    for i, s in enumerate(samples):
        params = s["params"]
        assert s["scenario"] == "phyre" and s["split"] == "train" and s["level"] == "in_template"
        assert params["template"] == TRAIN_SUBSETS[6][i // 2]
        frames = s["frames"]
        assert frames.shape == (32, 64, 64, 3)
        n = len(s["objects"])
        assert s["positions"].shape == (32, n, 2) and s["angles"].shape == (32, n)
        assert {o["type"] for o in s["objects"]} - {"user_ball"} == set(
            phyre.template_objects(params["template"])
        )
        # Hard edges: only the role colours appear, and the red ball is in the first frame.
        assert {tuple(c) for c in frames[0].reshape(-1, 3)} <= PALETTE
        assert (frames[0] == phyre.RED).all(-1).any()
        # The stored states reproduce the stored frames.
        states = States(s["positions"], s["velocities"], s["angles"], s["objects"])
        np.testing.assert_array_equal(phyre.render(states, cfg.world_size, 64), frames)


def test_job_array_gives_the_same_bytes(tmp_path):
    """Two array tasks (`workers=2`, one part list each) then a merge: the same shards as one
    process, byte for byte."""
    base = [str(CONFIGS / "phyre_tiny.yaml"), "progress=false", "name=phyre_tiny"]
    one = run(load_config(DatagenConfig, [*base, f"output={tmp_path / 'one'}"]))
    array = [*base, f"output={tmp_path / 'array'}", "workers=2"]
    for k in (1, 0):
        run(load_config(DatagenConfig, [*array, "mode=generate", f"worker={k}"]))
    merged = run(load_config(DatagenConfig, [*array, "mode=merge"]))
    assert merged["manifest"]["shards"] == one["manifest"]["shards"]
    assert merged["manifest"]["count"] == 12
