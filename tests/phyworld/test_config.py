"""The typed config loader: defaults < YAML (with _base_) < key=value, strict errors."""

import json
import subprocess
import sys
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

import pytest
import yaml

from phyworld.config import ConfigError, describe, from_yaml, load_config, to_dict, to_yaml


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


class Colour(StrEnum):
    red = "red"
    inherit = ""  # a value that cannot be a name


class Stage(IntEnum):
    off = 0
    on = 1


@dataclass
class Item:
    colour: Colour = Colour.red


@dataclass
class Choices:
    colour: Colour = Colour.red
    stage: Stage = Stage.on
    parts: list[Item] = field(default_factory=list)


def test_a_choice_is_an_enum_member_that_reads_and_saves_as_its_value():
    cfg = load_config(Choices, ["colour=''", "stage=0", "parts=[{colour: red}]"])
    assert cfg.colour is Colour.inherit and cfg.stage is Stage.off
    assert cfg.colour == "" and f"{cfg.parts[0].colour}/{cfg.stage}" == "red/0"
    plain = {"colour": "", "stage": 0, "parts": [{"colour": "red"}]}
    saved = to_dict(cfg)
    assert saved == plain and type(saved["colour"]) is str and type(saved["stage"]) is int
    assert json.loads(json.dumps(saved)) == plain
    assert yaml.safe_load(to_yaml(cfg)) == plain  # checkpoints and datasets keep plain values
    assert from_yaml(Choices, to_yaml(cfg)) == cfg
    assert "colour: red  # one of red | " in describe(Choices)  # --help


def test_a_value_that_is_no_choice_names_the_valid_ones(tmp_path):
    with pytest.raises(
        ConfigError, match=r"bad value for 'colour': 'blue'; set colour to one of red \| $"
    ):
        load_config(Choices, ["colour=blue"])
    with pytest.raises(ConfigError, match=r"'stage': 2; set stage to one of 0 \| 1$"):
        load_config(Choices, ["stage=2"])
    # a whole list replaced, on the command line or in YAML: the item is named by its index
    with pytest.raises(ConfigError, match=r"'parts.1.colour': 'blue'; set parts.1.colour to one"):
        load_config(Choices, ["parts=[{colour: red}, {colour: blue}]"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("parts: [{colour: red}, {colour: blue}]\n")
    with pytest.raises(ConfigError, match=r"'parts.1.colour': 'blue'"):
        load_config(Choices, [str(bad)])


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
