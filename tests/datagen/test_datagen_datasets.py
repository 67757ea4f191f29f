"""The real datasets: the 30K uniform-motion training set on local disk with two parallel workers,
and every kinematic eval set on the S3 server, as shipped (integration stage: `pytest -m slow`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datagen.config import DatagenConfig
from datagen.generate import make_plan, run
from phyworld.config import load_config
from phyworld.data.shards import iter_samples, verify_manifest

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "data"
pytestmark = pytest.mark.slow

EVAL_SETS = sorted(
    p
    for p in CONFIGS.glob("*_eval_*.yaml")
    if p.stem.split("_")[0] in ("uniform", "collision", "parabola")
)


def test_uniform_30k_with_two_parallel_workers(tmp_path):
    out = tmp_path / "uniform_30k"
    config = str(CONFIGS / "uniform_30k.yaml")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "datagen",
                config,
                f"output={out}",
                "mode=generate",
                "workers=2",
                f"worker={k}",
                "progress=false",
            ],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=1200)
        assert p.returncode == 0, err
    merged = subprocess.run(
        [sys.executable, "-m", "datagen", config, f"output={out}", "mode=merge"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert merged.returncode == 0, merged.stderr
    manifest = verify_manifest(str(out), checksums=True)
    assert manifest["count"] == 30_000 and manifest["parts"] == 6
    assert manifest["bytes"] / 30_000 < 6 * 1024  # lossless 128x128x32 videos, states and all
    v, r = set(), set()
    for s in iter_samples(str(out), verify=False):
        v.add(s["params"]["v"])
        r.add(s["params"]["r"])
    assert len(v) == 300 and len(r) == 100
    assert min(v) == 1.0 and max(v) == 4.0 and min(r) == 0.7 and max(r) == 1.4


@pytest.mark.parametrize("path", EVAL_SETS, ids=lambda p: p.stem)
def test_eval_set_on_s3(path, s3_url):
    run(load_config(DatagenConfig, [str(path), f"output={s3_url}", "progress=false"]))
    manifest = verify_manifest(s3_url, checksums=True)
    plan = make_plan(load_config(DatagenConfig, [str(path), "output=unused"]))
    assert manifest["count"] == plan.count
    samples = list(iter_samples(s3_url))
    assert {s["split"] for s in samples} == {"eval"}
    for g, spec in enumerate(plan.specs):  # every sample inside its group's ranges
        group = [s for s in samples if s["params"]["group"] == g]
        assert len(group) == spec.count and {s["level"] for s in group} == {spec.level}
        for name, intervals in spec.ranges.items():
            values = np.array([s["params"][name] for s in group])
            inside = np.zeros(len(values), bool)
            for lo, hi in intervals:
                inside |= (values >= lo) & (values <= hi)
            assert inside.all(), name
    assert samples[0]["frames"].shape == (32, 128, 128, 3)
