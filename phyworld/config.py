"""Typed configs: defaults in a dataclass, overridden by YAML, then by `key=value` arguments.

Every entry point (`python -m datagen`, `python -m training`, `python -m eval`, ...) parses its
command line with `load_config(SchemaClass, argv)`. A YAML file may name another one to start
from with `_base_: relative/path.yaml`, so the per-experiment files stay short.

Errors name the problem and the fix: an unknown key lists the valid keys of its section, a wrong
type says which key and what was expected, a value outside what a field declares names the allowed
values. A field that takes one of a few values is typed with an `enum.StrEnum` (`IntEnum` for
numbers), so it holds an Enum member that still compares, formats and JSON-encodes as its value
(`cfg.vae.kind == "pixel"`, `f"{cfg.model.size}"`); a YAML or `key=value` string is converted
when the config loads. Saved configs (`to_yaml`, `to_dict`) hold the plain values, so they read
back the same way. A numeric field declared with `bounded` must lie in its range. A schema
checks what depends on several fields in its `__post_init__` (run on every loaded config),
raising `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import operator
import typing
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from phyworld.cli import UserError

T = TypeVar("T")

BASE_KEY = "_base_"
BOUNDS = "bounds"  # field metadata: ((operator symbol, limit), ...) a numeric field must satisfy
_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


class ConfigError(UserError, ValueError):
    """A config file or override that cannot be applied; the message says how to fix it."""


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A numeric dataclass field with bounds (`ge`: >=, `gt`: >, ...) checked by `load_config`."""
    bounds = tuple(
        (symbol, limit)
        for symbol, limit in ((">=", ge), (">", gt), ("<=", le), ("<", lt))
        if limit is not None
    )
    return dataclasses.field(default=default, metadata={BOUNDS: bounds})


def _choices(schema: type, name: str) -> tuple[Any, ...] | None:
    """The values field `name` of `schema` may take if it is Enum-typed (else None)."""
    hint = typing.get_type_hints(schema).get(name)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return tuple(member.value for member in hint)
    return None


def _rule(schema: type, f: dataclasses.Field) -> str:
    """What a field accepts, in words ("" when anything of its type goes)."""
    if (choices := _choices(schema, f.name)) is not None:
        return "one of " + " | ".join(map(str, choices))
    return " and ".join(f"{symbol} {limit:g}" for symbol, limit in f.metadata.get(BOUNDS, ()))


def _check_field(schema: type, f: dataclasses.Field, value: Any, key: str) -> None:
    """Raise `ConfigError` naming what `key` accepts if `value` breaks a declared bound."""
    if not all(_COMPARE[symbol](value, limit) for symbol, limit in f.metadata.get(BOUNDS, ())):
        raise ConfigError(
            f"bad value for '{key}': {value!r}; set {key} to a value {_rule(schema, f)}"
        )


def _join(prefix: str, name: str | int) -> str:
    return f"{prefix}.{name}" if prefix else str(name)


def _check_values(node: Any, key: str = "") -> None:
    """Check every `bounded` field under `node`, recursing into sections, lists and dicts of
    sections (Enum fields are checked by omegaconf as values are merged)."""
    if isinstance(node, ListConfig):
        for i, item in enumerate(node):
            _check_values(item, _join(key, i))
        return
    if not isinstance(node, DictConfig):
        return
    schema = OmegaConf.get_type(node)
    if not (dataclasses.is_dataclass(schema) and isinstance(schema, type)):
        for name in node:
            _check_values(node[name], _join(key, name))
        return
    for f in dataclasses.fields(schema):
        value = node[f.name]
        if BOUNDS in f.metadata:
            _check_field(schema, f, value, _join(key, f.name))
        _check_values(value, _join(key, f.name))


def describe(schema: type, indent: str = "  ") -> str:
    """Every setting of `schema` with its default and what it accepts, as indented YAML-like lines
    (the `--help` text of the entry points)."""
    lines = []
    for f in dataclasses.fields(schema):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            lines.append(f"{indent}{f.name}:")
            lines.append(describe(type(default), indent + "  "))
            continue
        shown = yaml.safe_dump(_plain(default), default_flow_style=True, width=1000).strip()
        shown = shown.removesuffix("\n...").strip()
        rule = _rule(schema, f)
        lines.append(f"{indent}{f.name}: {shown}" + (f"  # {rule}" if rule else ""))
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """A value as YAML and JSON hold it: Enum members as their values, tuples as lists,
    dataclass items as dicts."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    return value


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


def _mark_required(cfg: DictConfig, data: dict[str, Any], prefix: str = "") -> None:
    """A YAML value `???` makes the key required (a merge alone keeps the schema's default)."""
    for key, value in data.items():
        if isinstance(value, dict):
            _mark_required(cfg, value, _join(prefix, key))
        elif value == MISSING:
            OmegaConf.update(cfg, _join(prefix, key), MISSING, merge=False)


def _parts(key: str) -> list[str]:
    """`a.b[0].c` or `a.b.0.c` -> ["a", "b", "0", "c"]."""
    return key.replace("[", ".").replace("]", "").split(".")


def _section(cfg: DictConfig, key: str) -> Any:
    """The node that holds the last part of `key` (as far as it exists)."""
    node: Any = cfg
    for part in _parts(key)[:-1]:
        if isinstance(node, DictConfig) and part in node:
            node = node[part]
        elif isinstance(node, ListConfig) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            break
    return node


def _valid_keys(cfg: DictConfig, key: str) -> list[str]:
    """The keys of the section that `key` points into."""
    node = _section(cfg, key)
    return sorted(node.keys()) if isinstance(node, DictConfig) else []


def _find(data: Any, name: str, value: Any, prefix: str = "") -> str | None:
    """The key of the first `name: value` in plain YAML data, or None."""
    if isinstance(data, dict):
        if name in data and data[name] == value:
            return _join(prefix, name)
        items = data.items()
    elif isinstance(data, list):
        items = enumerate(data)
    else:
        return None
    for k, v in items:
        if (found := _find(v, name, value, _join(prefix, k))) is not None:
            return found
    return None


def _bad_choice(err: ValidationError, data: Any) -> ConfigError | None:
    """A value that is not one of an Enum field's, with its full key (omegaconf names only the
    field when a whole list of sections is replaced: found in `data`, what was merged)."""
    schema, name = getattr(err, "object_type", None), getattr(err, "key", None)
    if not (dataclasses.is_dataclass(schema) and isinstance(schema, type) and name is not None):
        return None
    choices = _choices(schema, str(name))
    if choices is None:
        return None
    value = getattr(err, "value", None)
    key = _find(data, str(name), value) or ".".join(_parts(err.full_key or str(name)))
    rule = " | ".join(map(str, choices))
    return ConfigError(f"bad value for '{key}': {value!r}; set {key} to one of {rule}")


def _explain(
    err: OmegaConfBaseException, cfg: DictConfig, source: str, data: Any = None
) -> ConfigError:
    """The ConfigError for an omegaconf error met merging `data` (from `source`) into `cfg`."""
    key = ".".join(_parts(getattr(err, "full_key", None) or ""))
    if isinstance(err, ConfigKeyError | ConfigAttributeError):
        valid = ", ".join(_valid_keys(cfg, key)) or "(none)"
        return ConfigError(f"{source}: unknown config key '{key}'. Valid keys here: {valid}")
    if isinstance(err, ValidationError) and (bad := _bad_choice(err, data)) is not None:
        return bad  # as a bound's message: the key says where, whatever the source
    if isinstance(err, ValidationError):
        return ConfigError(f"{source}: bad value for '{key}': {err.msg}")
    return ConfigError(f"{source}: {err}")


def _check_list_index(cfg: DictConfig, override: str) -> None:
    """`sets.5.path=...` on a list of 2: name the list's length (omegaconf's message does not)."""
    key = override.split("=", 1)[0]
    node: Any = cfg
    for i, part in enumerate(_parts(key)[:-1]):
        if isinstance(node, ListConfig):
            where = ".".join(_parts(key)[:i])
            if not part.isdigit() or int(part) >= len(node):
                held = f"of {len(node)} item(s), indices 0-{len(node) - 1}" if node else "empty"
                raise ConfigError(
                    f"command line: '{override}': '{where}' is a list ({held}); set an item "
                    f"with {where}.N.field=... or replace the list with {where}=[...]"
                )
            node = node[int(part)]
        elif isinstance(node, DictConfig) and part in node:
            node = node[part]
        else:
            return


def _apply_overrides(cfg: DictConfig, overrides: list[str]) -> None:
    """`key=value` in order; a list item is addressed by its index (`sets.0.path=...`)."""
    for override in overrides:
        _check_list_index(cfg, override)
        try:
            cfg.merge_with_dotlist([override])
        except OmegaConfBaseException as err:
            data = OmegaConf.to_container(OmegaConf.from_dotlist([override]))
            raise _explain(err, cfg, "command line", data) from None


def _validate(cfg: DictConfig) -> None:
    """Declared choices and bounds, then the schemas' own `__post_init__` checks."""
    _check_values(cfg)
    try:
        OmegaConf.to_object(cfg)  # builds the dataclasses: runs each `__post_init__`
    except OmegaConfBaseException as err:
        raise _explain(err, cfg, "config") from None


def load_config(schema: type[T], argv: list[str] | None = None) -> T:
    """Build a config of type `schema` from `[CONFIG.yaml] [key=value ...]`, checked.

    Returns an OmegaConf-backed object that behaves like `schema` (attribute access, typed).
    """
    argv = list(argv or [])
    options = [a for a in argv if a.startswith("-") and "=" not in a]
    if options:
        raise ConfigError(
            f"unknown option {options[0]}: the arguments are CONFIG.yaml [key=value ...] "
            "(--help lists every setting)"
        )
    files = [a for a in argv if "=" not in a]
    overrides = [a for a in argv if "=" in a]
    if len(files) > 1:
        raise ConfigError(
            f"expected at most one config file, got {files}; pass others as key=value"
        )
    cfg = OmegaConf.structured(schema)
    try:
        if files:
            data = _read_yaml(Path(files[0]))
            cfg = OmegaConf.merge(cfg, data)
            _mark_required(cfg, data)
    except OmegaConfBaseException as err:
        raise _explain(err, cfg, files[0], data) from None
    _apply_overrides(cfg, overrides)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(
            f"missing required config values: {missing}; set them in YAML or as key=value"
        )
    _validate(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML, for saving next to datasets, checkpoints and metrics (Enum
    fields as their values)."""
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(cfg)))


def from_yaml(schema: type[T], text: str) -> T:
    """Parse a saved config back into `schema` (strict: unknown keys are errors)."""
    cfg = OmegaConf.structured(schema)
    data = yaml.safe_load(text) or {}
    try:
        cfg = OmegaConf.merge(cfg, OmegaConf.create(data))
    except OmegaConfBaseException as err:
        raise _explain(err, cfg, "saved config", data) from None
    OmegaConf.set_readonly(cfg, True)
    return cfg  # type: ignore[return-value]


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain dict of a config (dataclass instance or OmegaConf object), Enum fields as their
    values: what YAML and JSON hold."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return _plain(cfg)
    return _plain(OmegaConf.to_container(cfg, resolve=True))
