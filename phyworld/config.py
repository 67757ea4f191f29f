"""Typed configs: defaults in a dataclass, overridden by YAML, then by `key=value` arguments.

Every entry point (`python -m datagen`, `python -m training`, `python -m eval`, ...) parses its
command line with `load_config(SchemaClass, argv)`. A YAML file may name another one to start
from with `_base_: relative/path.yaml`, so the per-experiment files stay short.

Errors name the problem and the fix: an unknown key lists the valid keys of its section, a wrong
type says which key and what was expected.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

T = TypeVar("T")

BASE_KEY = "_base_"


class ConfigError(ValueError):
    """A config file or override that cannot be applied; the message says how to fix it."""


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML file, following `_base_` links (relative to the file) depth first."""
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: `_base_` cycle through {[str(p) for p in seen]}")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping, got {type(data).__name__}")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    merged = OmegaConf.merge(
        OmegaConf.create(_read_yaml(path.parent / base, (*seen, path))), OmegaConf.create(data)
    )
    return OmegaConf.to_container(merged)  # type: ignore[return-value]


def _valid_keys(schema: DictConfig, dotted: str) -> list[str]:
    """The keys of the section that `dotted` (a.b.c) points into."""
    node: Any = schema
    for part in dotted.split(".")[:-1]:
        if isinstance(node, DictConfig) and part in node:
            node = node[part]
        else:
            break
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def _explain(err: OmegaConfBaseException, schema: DictConfig, source: str) -> ConfigError:
    key = getattr(err, "full_key", None) or ""
    if isinstance(err, ConfigKeyError):
        valid = ", ".join(_valid_keys(schema, key)) or "(none)"
        return ConfigError(f"{source}: unknown config key '{key}'. Valid keys here: {valid}")
    if isinstance(err, ValidationError):
        return ConfigError(f"{source}: bad value for '{key}': {err.msg}")
    return ConfigError(f"{source}: {err}")


def load_config(schema: type[T], argv: list[str] | None = None) -> T:
    """Build a config of type `schema` from `[CONFIG.yaml] [key=value ...]`.

    Returns an OmegaConf-backed object that behaves like `schema` (attribute access, typed).
    """
    argv = list(argv or [])
    files = [a for a in argv if "=" not in a]
    overrides = [a for a in argv if "=" in a]
    if len(files) > 1:
        raise ConfigError(
            f"expected at most one config file, got {files}; pass others as key=value"
        )
    cfg = OmegaConf.structured(schema)
    try:
        if files:
            cfg = OmegaConf.merge(cfg, _read_yaml(Path(files[0])))
    except OmegaConfBaseException as err:
        raise _explain(err, cfg, files[0]) from None
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides))
    except OmegaConfBaseException as err:
        raise _explain(err, cfg, "command line") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"missing required config values: {missing}; set them in YAML or as key=value"
        )
    OmegaConf.set_readonly(cfg, True)
    return cfg  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML, for saving next to datasets, checkpoints and metrics."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def from_yaml(schema: type[T], text: str) -> T:
    """Parse a saved config back into `schema` (strict: unknown keys are errors)."""
    cfg = OmegaConf.structured(schema)
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.create(yaml.safe_load(text) or {}))
    except OmegaConfBaseException as err:
        raise _explain(err, cfg, "saved config") from None
    OmegaConf.set_readonly(cfg, True)
    return cfg  # type: ignore[return-value]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict of a config (dataclass instance or OmegaConf object)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return dataclasses.asdict(cfg)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
