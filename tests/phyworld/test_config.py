"""The typed config loader: defaults < YAML (with _base_) < key=value, strict errors."""

import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from phyworld.config import ConfigError, from_yaml, load_config, to_yaml


@dataclass
class Inner:
    lo: float = 1.0
    hi: float = 4.0


@dataclass
class Schema:
    name: str = "???"
    steps: int = 10
    ranges: Inner = field(default_factory=Inner)


def test_precedence_defaults_yaml_then_command_line(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("name: base\nsteps: 20\nranges: {lo: 2.0}\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\nsteps: 30\n")
    cfg = load_config(Schema, [str(child), "ranges.hi=5.5"])
    assert (cfg.name, cfg.steps, cfg.ranges.lo, cfg.ranges.hi) == ("base", 30, 2.0, 5.5)


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'ranges.low'.*hi, lo"):
        load_config(Schema, ["name=x", "ranges.low=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstep: 3\n")
    with pytest.raises(
        ConfigError, match=r"bad.yaml: unknown config key 'step'.*name, ranges, steps"
    ):
        load_config(Schema, [str(bad)])


def test_wrong_type_and_missing_value_are_errors():
    with pytest.raises(ConfigError, match="bad value for 'steps'"):
        load_config(Schema, ["name=x", "steps=many"])
    with pytest.raises(ConfigError, match=r"missing required config values: \['name'\]"):
        load_config(Schema, [])


def test_a_yaml_value_of_three_question_marks_makes_the_key_required(tmp_path):
    """`vae.path: ???` in a config was silently the schema's default ("")."""
    base = tmp_path / "base.yaml"
    base.write_text("name: x\nranges:\n  hi: ???\n")
    child = tmp_path / "child.yaml"
    child.write_text("_base_: base.yaml\nsteps: 3\n")
    with pytest.raises(ConfigError, match=r"missing required config values: \['ranges.hi'\]"):
        load_config(Schema, [str(child)])
    assert load_config(Schema, [str(child), "ranges.hi=2"]).ranges.hi == 2.0


def test_base_cycle_and_missing_file(tmp_path):
    a = tmp_path / "a.yaml"
    a.write_text("_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(Schema, [str(a)])
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Schema, [str(tmp_path / "nope.yaml")])


def test_saved_config_round_trips_and_is_read_only():
    cfg = load_config(Schema, ["name=run", "steps=7"])
    back = from_yaml(Schema, to_yaml(cfg))
    assert back == cfg
    with pytest.raises(Exception, match="read-only"):
        back.steps = 8


def test_streaming_imports_with_the_torchvision_shim():
    """In a fresh interpreter: each stage package imports phyworld's shim before streaming."""
    for package in ("datagen", "training", "eval"):
        code = f"import {package}, streaming; assert hasattr(streaming, 'MDSWriter')"
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_megatron_import_warnings_are_silenced():
    """megatron-core warned four times per process that Transformer Engine and Apex are missing."""
    code = "import training.parallel.groups, megatron.core.optimizer"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert "Transformer Engine" not in result.stderr, result.stderr
