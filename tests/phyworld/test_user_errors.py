"""Every entry point: `--help` prints its usage, and a user's mistake is one line and exit 2.

The commands run in this process (`runpy` executes the same `__main__` module `python -m` does),
so each case costs the entry point's work up to the mistake, not an interpreter start.
"""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import runpy
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

import phyworld  # noqa: F401
from phyworld.cli import UserError
from phyworld.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
ENTRY_POINTS = (
    "datagen",
    "training",
    "eval",
    "training.vae",
    "eval.vae",
    "training.encode",
    "pipeline.study",
    "eval.report",
    "pipeline.quickstart",
    "eval.fvd",
)


def run_module(module: str, argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """`python -m MODULE ARGV` in this process: (exit status, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [module, *argv])
    monkeypatch.chdir(REPO)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    out, err = capsys.readouterr()
    return exited.value.code or 0, out, err


@pytest.mark.parametrize("module", ENTRY_POINTS)
def test_help_prints_the_usage_of_every_entry_point(module, monkeypatch, capsys) -> None:
    status, out, err = run_module(module, ["--help"], monkeypatch, capsys)
    assert status == 0, err
    assert f"python -m {module}" in out and "does not exist" not in out + err
    if module not in ("eval.report", "eval.fvd"):  # the others list every setting, its default
        assert "Settings, with their defaults" in out, out


def test_an_unknown_option_is_named_not_taken_for_a_config_file() -> None:
    from training.config import TrainConfig

    with pytest.raises(ConfigError, match=r"unknown option --verbose: .*--help"):
        load_config(TrainConfig, ["--verbose"])


TRAIN = ["configs/train/quickstart.yaml", "data.path=/nonexistent", "output_dir=/nonexistent/run"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model.size=XXL",
            r"'model.size': 'XXL'; set model.size to one of micro \| tiny \| mini \| S \| B \| L \| XL",
        ),
        ("optim.lr=-1", r"'optim.lr': -1.0; set optim.lr to a value > 0"),
        ("checkpoint.every_steps=0", r"'checkpoint.every_steps': 0; .* a value >= 1"),
        ("max_steps=-5", r"'max_steps': -5; set max_steps to a value >= 1"),
        ("diffusion.prediction=eps", r"'diffusion.prediction': 'eps'; .* one of velocity \| x0"),
        ("parallel.zero_stage=4", r"'parallel.zero_stage': 4; .* one of 0 \| 1 \| 2 \| 3"),
    ],
)
def test_training_refuses_a_bad_value_when_the_config_loads(
    override, message, monkeypatch, capsys
) -> None:
    """Caught before any process group, model or data: one line, exit 2 (max_steps=-5 used to
    exit 0 having trained nothing; prediction=eps failed only at the first step)."""
    status, _, err = run_module("training", [*TRAIN, override], monkeypatch, capsys)
    assert status == 2
    assert err.startswith("training: error: bad value for ") and len(err.splitlines()) == 1, err
    assert re.search(message, err), err


def test_choices_match_the_model_table_and_the_diffusion() -> None:
    from eval.config import PARSERS
    from eval.parse import PARSERS as parse_parsers
    from training import diffusion
    from training.config import MODEL_SIZES, PREDICTIONS
    from training.model import DIT_CONFIGS

    assert set(MODEL_SIZES) == set(DIT_CONFIGS)
    assert diffusion.PREDICTIONS == PREDICTIONS and parse_parsers == PARSERS


def test_an_unknown_range_name_is_refused(monkeypatch, capsys) -> None:
    """`ranges.speed` was drawn and never used: the default speeds were written silently."""
    args = ["configs/data/uniform_base.yaml", "output=/nonexistent", "ranges.speed=[[1,2]]"]
    status, _, err = run_module("datagen", args, monkeypatch, capsys)
    assert status == 2
    assert "unknown range name 'ranges.speed'" in err and "v, r" in err, err
    groups = ["groups=[{count: 4, ranges: {vel: [[1, 2]]}}]"]
    with pytest.raises(ConfigError, match=r"'groups.0.ranges.vel'.*v, r"):
        from datagen.config import DatagenConfig

        load_config(DatagenConfig, ["configs/data/uniform_base.yaml", "output=x", *groups])


def test_a_list_item_is_set_by_its_index() -> None:
    """`sets.0.path=...`, as configs/eval/*.yaml show it, was a TypeError."""
    from eval.config import EvalConfig

    cfg = load_config(EvalConfig, ["configs/eval/tiny_cpu.yaml", "sets.1.path=elsewhere"])
    assert [s.path for s in cfg.sets] == ["data/uniform_eval_id", "elsewhere"]
    assert cfg.sets[1].name == "uniform_v_out"  # the rest of the item is kept
    with pytest.raises(ConfigError, match=r"'sets' is a list \(of 2 item.*sets.N.field=.*sets=\["):
        load_config(EvalConfig, ["configs/eval/tiny_cpu.yaml", "sets.2.path=x"])
    with pytest.raises(ConfigError, match=r"unknown config key 'sets.0.paht'.*path"):
        load_config(EvalConfig, ["configs/eval/tiny_cpu.yaml", "sets.0.paht=x"])


EVAL = ["configs/eval/tiny_cpu.yaml", "checkpoint=/nonexistent/run"]


def test_eval_names_a_dataset_that_does_not_exist(monkeypatch, capsys, tmp_path) -> None:
    """Not "incomplete": there is nothing at the path."""
    status, _, err = run_module(
        "eval", [*EVAL, f"sets.0.path={tmp_path}/nope"], monkeypatch, capsys
    )
    assert status == 2
    assert err == (
        f"eval: error: dataset {tmp_path}/nope does not exist (nothing is there): check the path, "
        f"or write it with `python -m datagen CONFIG output={tmp_path}/nope`\n"
    )


def test_eval_names_an_unreachable_bucket(monkeypatch, capsys) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"
    monkeypatch.setenv("S3_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    status, _, err = run_module(
        "eval", [*EVAL, "sets.0.path=s3://no-such-bucket/eval_id"], monkeypatch, capsys
    )
    assert status == 2 and len(err.splitlines()) == 1, err
    assert (
        f"cannot reach bucket 'no-such-bucket' of s3://no-such-bucket/eval_id at endpoint {endpoint}"
        in err
    )


@pytest.mark.parametrize("suffix", [".pt", ".ckpt"])
def test_garbage_weights_are_named(tmp_path, suffix) -> None:
    from eval.fvd import WeightsError, load_i3d
    from eval.video_metrics import load_lpips

    garbage = tmp_path / f"weights{suffix}"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(WeightsError, match=rf"{garbage} is not Kinetics-400 I3D \(fvd.weights\)"):
        load_i3d(str(garbage))
    with pytest.raises(WeightsError, match=rf"{garbage} is not LPIPS AlexNet \(lpips.weights\)"):
        load_lpips(str(garbage))


def test_a_velocity_error_of_nan_says_no_ball_was_found() -> None:
    """Blank generated videos: the record says why `vel_error` is null, not only `nan`."""
    from eval.config import EvalConfig
    from eval.evaluate import kinematic_record
    from eval.parse import PARSERS, parse_balls
    from eval.velocity import velocity_errors

    t, size, world = 8, 32, 10.0
    x = 2.0 + 0.3 * np.arange(t)  # a ball of radius 1 moving right at 3 units/s, in view
    position = np.stack([x, np.full(t, 5.0)], -1)[None, :, None, :]  # (1, T, 1, 2)
    velocity = np.zeros_like(position)
    velocity[..., 0] = 3.0
    blank = np.full((1, t, size, size, 3), 255, np.uint8)
    per = {}
    for method in PARSERS:
        parsed = parse_balls(blank, world, method=method, colours=("red",))
        errors = velocity_errors(
            parsed, position, velocity, np.ones((1, 1)),
            world_size=world, frame_dt=0.1, cond_frames=3, scenario="uniform",
        )  # fmt: skip
        for metric, values in errors.items():
            per[f"{metric}.{method}.model"] = [values]
    cfg = load_config(EvalConfig, ["floors=false"])
    record = kinematic_record(per, cfg, "uniform")
    assert np.isnan(record["vel_error"])
    assert record["note"].startswith("the threshold parser found no ball in the generated videos")
    assert "missing 100% of scored steps" in record["note"]


def write_evaluated_run(run: Path, rows: list[dict]) -> Path:
    """A run directory as training and `python -m eval` leave it (config and metrics.jsonl)."""
    (run / "eval").mkdir(parents=True)
    (run / "config.yaml").write_text("data: {path: /moved/uniform_30k}\n")
    lines = [json.dumps({"checkpoint": "step_00000010", "step": 10, **r}) for r in rows]
    (run / "eval" / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_report_names_runs_without_metrics_and_rows_left_out_of_the_figure(
    tmp_path, monkeypatch, capsys
) -> None:
    unevaluated = tmp_path / "not_evaluated"
    unevaluated.mkdir()
    status, _, err = run_module("eval.report", [str(unevaluated)], monkeypatch, capsys)
    assert status == 2 and "has no eval/metrics.jsonl yet: evaluate it with" in err, err

    row = {"set": "uniform_eval_id", "level": "id", "model_size": "S", "vel_error_gt": 0.4}
    run = write_evaluated_run(tmp_path / "run", [{**row, "vel_error": None}])
    out_dir = tmp_path / "report"
    args = [f"out={out_dir}", str(run), str(unevaluated)]
    status, out, err = run_module("eval.report", args, monkeypatch, capsys)
    assert status == 0, err
    assert (out_dir / "table.md").is_file()
    assert f"left out of the report: run {unevaluated} has no eval/metrics.jsonl yet" in out
    assert "left out of figure 3: DiT-S uniform_30k uniform_eval_id: no velocity error" in out


def test_every_error_class_of_the_project_is_a_user_error() -> None:
    """One base class, so every entry point prints these as one line (PlacementError and
    FrameFormatError used to escape as tracebacks)."""
    classes = []
    for package in ("phyworld", "datagen", "training", "eval"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, f"{package}."):
            if info.name.endswith("__main__"):
                continue
            module = importlib.import_module(info.name)
            classes += [
                c
                for _, c in inspect.getmembers(module, inspect.isclass)
                if issubclass(c, Exception) and c.__module__ == module.__name__
            ]
    names = {c.__name__ for c in classes}
    assert {"PlacementError", "FrameFormatError", "DatasetError", "WeightsError"} <= names
    assert [c.__name__ for c in classes if not issubclass(c, UserError)] == []


def test_a_placement_error_reaches_the_datagen_cli_as_one_line(tmp_path, monkeypatch, capsys):
    """A PHYRE template that cannot be placed: `python -m datagen` names it in one line."""
    from datagen.scenes import phyre

    def too_big(rng, w):
        return [phyre.objects.bar("dynamic_bar", 2 * w, 1.0, True)]  # longer than the scene

    monkeypatch.setitem(phyre.placement.BUILDERS, "dynamic_bar", too_big)
    monkeypatch.setattr(phyre.placement, "MAX_LAYOUTS", 2)
    monkeypatch.setattr(phyre.placement, "MAX_TRIES", 2)
    args = ["configs/data/phyre_tiny.yaml", f"output={tmp_path / 'phyre'}", "options.templates=5"]
    args += ["workers=1", "progress=false"]
    status, _, err = run_module("datagen", args, monkeypatch, capsys)
    assert status == 2
    assert err.startswith("datagen: error: template 5") and "Traceback" not in err, err
    assert err.count("\n") == 1, err


def test_a_corrupt_frames_column_reaches_the_cli_as_one_line(tmp_path, monkeypatch, capsys):
    """A dataset whose checksums match but whose frames are not PWV4 (written by something
    else): the reader's FrameFormatError is one line, not a traceback."""
    import numpy as np

    from phyworld.data.shards import PartWriter, merge

    root = str(tmp_path / "foreign")
    writer = PartWriter(root, 0, 0, 1 << 20, "foreign: true\n")
    states = np.zeros((8, 1, 2), np.float32)
    writer.write(
        {
            **{key: "x" for key in ("id", "scenario", "split", "level")},
            "frames": b"not a PWV4 video",  # bytes go into the column as they are
            **{key: states for key in ("positions", "velocities")},
            "angles": states[..., 0],
            "objects": [],
            "params": {},
        }
    )
    writer.publish()
    merge(root, 1, "foreign: true\n")
    args = [f"data={root}", f"output_dir={tmp_path / 'out'}", "vae.kind=pixel"]
    status, _, err = run_module("eval.vae", args, monkeypatch, capsys)
    assert status == 2
    assert err.startswith("eval.vae: error: ") and "video_zstd" in err, err
    assert err.count("\n") == 1, err
