"""`python -m datagen configs/data/phyre_*.yaml`: the configs load, and a tiny set round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datagen.config import DatagenConfig, DatagenConfigError
from datagen.generate import make_plan, run
from datagen.scenes import States, phyre
from datagen.scenes.phyre_templates import OUT_OF_TEMPLATE, TRAIN_SUBSETS, template_objects
from phyworld.config import load_config
from phyworld.data.shards import iter_samples

CONFIGS = Path(__file__).resolve().parents[3] / "configs" / "data"
PALETTE = {(255, 255, 255), phyre.objects.RED, phyre.objects.GRAY, phyre.objects.BLACK}


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
        ("phyre_paper_train6.yaml", 594_000, "in_template", TRAIN_SUBSETS[6]),
        ("phyre_paper_train30.yaml", 2_970_000, "in_template", TRAIN_SUBSETS[30]),
        ("phyre_paper_train60.yaml", 5_940_000, "in_template", TRAIN_SUBSETS[60]),
        ("phyre_paper_eval_in_template6.yaml", 600, "in_template", TRAIN_SUBSETS[6]),
        ("phyre_paper_eval_in_template30.yaml", 600, "in_template", TRAIN_SUBSETS[30]),
        ("phyre_paper_eval_in_template60.yaml", 600, "in_template", TRAIN_SUBSETS[60]),
        ("phyre_paper_eval_out_template.yaml", 500, "out_template", OUT_OF_TEMPLATE),
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
    paper = name.startswith("phyre_paper")
    assert spec.options.get("placement", "project") == ("paper" if paper else "project")
    assert spec.options.get("render_scale", 1) == (2 if paper else 1)  # 512 px, then 256


def _config(name: str, *overrides: str) -> DatagenConfig:
    return load_config(DatagenConfig, [str(CONFIGS / name), *overrides])


def test_eval_sets_hold_out_what_training_sees():
    # Project configs: another seed, so other layouts and red balls.
    train = {_config(f"phyre_train{n}.yaml").seed for n in (6, 30, 60)}
    for n in (6, 30, 60):
        assert _config(f"phyre_eval_in_template{n}.yaml").seed not in train
    assert _config("phyre_eval_out_template.yaml").seed not in train
    # Paper configs (the authors' scheme): the training seed and layouts, and red balls past the
    # training videos of each template (trials 990-999 of 1,000 per layout).
    for n in (6, 30, 60):
        tr = _config(f"phyre_paper_train{n}.yaml")
        ev = _config(f"phyre_paper_eval_in_template{n}.yaml")
        assert ev.seed == tr.seed and ev.options.templates == tr.options.templates
        assert ev.options.layouts_per_template == tr.options.layouts_per_template == 100
        assert ev.options.first_video == tr.options.videos_per_template == 99_000
    assert (
        _config("phyre_paper_eval_out_template.yaml").seed
        != _config("phyre_paper_train60.yaml").seed
    )


def test_count_spreads_videos_over_the_templates():
    # `count=` used to be ignored (count=200 on phyre_train6 planned 600,000 videos).
    plan = make_plan(_config("phyre_train6.yaml", "count=200"))
    assert plan.count == 200
    (spec,) = plan.specs
    # 34, 34, 33, 33, 33, 33 videos: the first and last video of each template.
    starts = (0, 34, 68, 101, 134, 167, 200)
    for k, template in enumerate(TRAIN_SUBSETS[6]):
        for i in (starts[k], starts[k + 1] - 1):
            params = phyre.sample_params(spec, i, np.random.default_rng([0, i]))
            assert params["template"] == template
    assert make_plan(_config("phyre_paper_eval_out_template.yaml", "count=20")).count == 20
    with pytest.raises(DatagenConfigError, match=r"count=3 .* 6 templates"):
        make_plan(_config("phyre_train6.yaml", "count=3"))


def test_bad_options_are_clear_errors():
    for override, message in [
        ("options.layouts_per_templat=5", r"unknown phyre option.*layouts_per_templat.*placement"),
        ("options.placement=authors", r"placement must be one of \('project', 'paper'\)"),
        ("options.render_scale=4", r"render_scale must be 1 .* or 2"),
        ("options.first_video=-1", r"first_video must be an integer >= 0"),
    ]:
        with pytest.raises(DatagenConfigError, match=message):
            make_plan(_config("phyre_train6.yaml", override))
    with pytest.raises(DatagenConfigError, match=r"first_video .* layouts_per_template=0"):
        make_plan(_config("phyre_eval_in_template6.yaml", "options.first_video=10"))


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
            template_objects(params["template"])
        )
        # Hard edges: only the role colours appear, and the red ball is in the first frame.
        assert {tuple(c) for c in frames[0].reshape(-1, 3)} <= PALETTE
        assert (frames[0] == phyre.objects.RED).all(-1).any()
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


@pytest.mark.parametrize(("name", "counts"), [("phyre", (960, 1000)), ("phyre_paper", (600, 500))])
def test_eval_configs_score_the_sets_these_configs_make(name, counts):
    # Each set of configs/eval/NAME.yaml is the output of a data config here; paper mode scores
    # 600 in-template and 500 out-of-template videos (the authors' evaluate_video.py), FVD on
    # that N per side.
    from eval.config import EvalConfig

    cfg = load_config(EvalConfig, [str(CONFIGS.parent / "eval" / f"{name}.yaml"), "checkpoint=x"])
    outputs = {
        _config(p.name).output: p.name for p in CONFIGS.glob("phyre_*.yaml") if "base" not in p.name
    }
    for s, n in zip(cfg.sets, counts):
        assert s.kind == "combinatorial" and s.path in outputs
        assert make_plan(_config(outputs[s.path])).count == n
        assert s.max_videos in (0, n)
    assert cfg.fvd.num_videos == counts[0]
