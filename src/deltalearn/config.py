"""Typed configuration: dataclasses per component, YAML files, ``key=value`` overrides.

A config is a tree of dataclasses. ``load_config(MCNConfig, "configs/mcn/synth_det.yaml",
["train.epochs=3"])`` reads the YAML, applies the dotted overrides and checks every key
and type; an unknown key fails with one line naming it and the nearest valid key. The
resolved config is written into each run folder with ``save_config``.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .data.io import atomic_write_text

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message is one line."""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _nearest(key: str, valid: list[str]) -> str:
    match = difflib.get_close_matches(key, valid, n=1, cutoff=0.4)
    return f"; did you mean '{match[0]}'?" if match else f"; valid keys: {', '.join(valid)}"


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type hint ``hint`` and convert where it is lossless."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            if arg is str and not isinstance(value, str):  # in a union, only a string is a string
                errors.append(f"{where}: expected a string, got {value!r}")
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0] if errors else f"{where}: cannot be {value!r}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if isinstance(value, (int, float, str)):
            value = [value]  # a single value where a list is expected: `model.tasks=det`
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {hint.__name__} keys, got {value!r}")
        return from_dict(hint, value, prefix=f"{where}.")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if hint is float:
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) mapping, checking keys and types."""
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}'{_nearest(str(key), names)}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict (tuples as lists), ready for YAML or JSON."""

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def valid_keys(cls: type) -> list[str]:
    """All dotted leaf keys of a config class, e.g. ``train.lr``."""
    keys = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys += [f"{f.name}.{k}" for k in valid_keys(hints[f.name])]
        else:
            keys.append(f.name)
    return keys


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.lr=1e-3", "model.tasks=[det,seg]"]`` -> nested dict; values parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. train.epochs=3)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' conflicts with another override")
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _check_override_keys(root: type, overrides: dict[str, Any]) -> None:
    """Name an unknown dotted key against all valid dotted keys (better hints than per level)."""

    def walk(cls: type, node: dict[str, Any], prefix: str) -> None:
        hints = _hints(cls)
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if key not in hints:
                while isinstance(value, dict) and value:  # name the whole dotted key as typed
                    key, value = next(iter(value.items()))
                    dotted = f"{dotted}.{key}"
                raise ConfigError(f"unknown config key '{dotted}'{_nearest(dotted, valid_keys(root))}")
            if isinstance(value, dict) and dataclasses.is_dataclass(hints[key]):
                walk(hints[key], value, f"{dotted}.")

    walk(root, overrides, "")


PACKAGED_CONFIGS = Path(__file__).parent / "configs"  # configs/<system>/<name>.yaml, shipped in the package


def find_config(path: str | Path | None, system: str) -> Path | None:
    """A config file path as given, or a bare name of a shipped config (``synth_det``)."""
    if path is None:
        return None
    path = Path(path)
    if path.is_file() or path.parent != Path(".") or path.suffix:
        return path
    packaged = PACKAGED_CONFIGS / system / f"{path.name}.yaml"
    if packaged.is_file():
        return packaged
    names = sorted(p.stem for p in (PACKAGED_CONFIGS / system).glob("*.yaml"))
    raise ConfigError(f"{path}: no such config file, nor a shipped {system} config{_nearest(path.name, names)}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; missing or malformed files raise ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: malformed YAML{where}: {getattr(error, 'problem', error)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys, not {type(data).__name__}")
    return data


BASE_KEY = "base"  # a config file's parent: a file beside it, a path, or a shipped config of the same system
MAX_BASES = 8  # the longest chain of bases


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping of a config file with its ``base:`` chain merged in, parent first: a file
    may name a parent (``base: synth_seg_det_pose``, a file beside it or a shipped config
    of the same system) and set only the keys that differ."""
    path = Path(path)
    data = read_yaml(path)
    chain = [path]
    while BASE_KEY in data:
        name = data.pop(BASE_KEY)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{chain[-1]}: '{BASE_KEY}' must name a config file, got {name!r}")
        parent = _find_base(name, chain[-1])
        if parent.resolve() in {p.resolve() for p in chain} or len(chain) > MAX_BASES:
            raise ConfigError(f"{chain[-1]}: '{BASE_KEY}: {name}' makes a loop of bases")
        chain.append(parent)
        data = _merge(read_yaml(parent), data)
    return data


def _find_base(name: str, child: Path) -> Path:
    """The file ``base: name`` of ``child`` means: beside ``child``, as a path, or shipped."""
    candidates = [child.parent / name, child.parent / f"{name}.yaml", Path(name)]
    candidates += sorted(PACKAGED_CONFIGS.glob(f"*/{name}.yaml"))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    shipped = sorted(p.stem for p in PACKAGED_CONFIGS.glob("*/*.yaml"))
    raise ConfigError(f"{child}: base config '{name}' not found beside it nor shipped{_nearest(name, shipped)}")


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults of ``cls``, updated by the YAML file at ``path`` (and the ``base:`` files it
    names), then by ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        data = read_config_file(path)
        try:
            from_dict(cls, data)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
    update = parse_overrides(overrides or [])
    _check_override_keys(cls, update)
    return from_dict(cls, _merge(data, update))


def save_config(config: Any, path: str | Path) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))
