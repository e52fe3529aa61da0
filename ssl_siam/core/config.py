"""Typed configs: dataclass schemas filled from YAML plus dotted ``key.sub=value`` overrides.

Every key is checked against the schema: an unknown key, a value of the wrong type or out of its range (fields
annotated with a :class:`Range`, e.g. :data:`PositiveInt`) fails with a one-line :class:`ConfigError` naming the
key, so a typo never silently falls back to a default. A value renamed since configs were saved (a field made with
:func:`renamed`) is read under its current name, so old configs and checkpoints keep loading and resuming.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import types
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml

from ssl_siam.core.errors import ConfigError
from ssl_siam.core.recipes import resolve_recipe

C = TypeVar("C")
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Range:
    """Allowed values of a numeric config field: ``low`` ≤ value ≤ ``high`` (strict where ``*_open``)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


PositiveInt = Annotated[int, Range(1)]
NonNegativeInt = Annotated[int, Range(0)]
PositiveFloat = Annotated[float, Range(0, low_open=True)]
NonNegativeFloat = Annotated[float, Range(0)]
Fraction = Annotated[float, Range(0, 1)]  # probabilities and fractions
Beta = Annotated[float, Range(0, 1, high_open=True)]  # Adam's β
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")  # a float YAML 1.1 may leave as a string


def renamed(default: str, old: dict[str, str]) -> Any:
    """A string field whose values ``old`` (old name → current name) were renamed: still accepted, read as the
    current name (with a deprecation warning when a config is loaded)."""
    return dataclasses.field(default=default, metadata={"renamed": old})


def _current_name(field: dataclasses.Field, value: Any) -> Any:
    """``value`` under its current name when ``field`` was made with :func:`renamed`, else ``value`` itself."""
    return field.metadata.get("renamed", {}).get(value, value) if isinstance(value, str) else value


def current_names(schema: type, data: dict[str, Any], notes: list[tuple[str, str, str]] | None = None,
                  prefix: str = "") -> dict[str, Any]:
    """Config ``data`` of ``schema`` (as written or saved) with renamed values under their current names, each
    appended to ``notes`` as ``(key, old, current)``; nothing else is checked or changed."""
    hints = get_type_hints(schema, include_extras=True)
    out = dict(data)
    for f in dataclasses.fields(schema):  # type: ignore[arg-type]
        if f.name not in out:
            continue
        value, key = out[f.name], prefix + f.name
        if dataclasses.is_dataclass(hints[f.name]) and isinstance(value, dict):
            out[f.name] = current_names(hints[f.name], value, notes, key + ".")
        elif (current := _current_name(f, value)) != value:
            out[f.name] = current
            if notes is not None:
                notes.append((key, value, current))
    return out


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["train.lr=0.1", "data.bands=[4,3,2]"]`` → nested dict; values are parsed as YAML scalars/lists."""
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not of the form key.sub=value")
        try:
            value = safe_yaml(raw, f"override {key}") if raw else ""
        except yaml.YAMLError:
            value = raw
        node = nested
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override of {part!r}")
        node[leaf] = value
    return nested


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. Neither input is modified."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


MAX_YAML_NODES = 100_000  # a config of ours has a few hundred; aliases that expand beyond this are refused


def safe_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` that first refuses documents whose aliases expand to more than ``MAX_YAML_NODES`` nodes
    (a "billion laughs" file would otherwise blow up memory as soon as the config is copied or merged)."""
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    sizes: dict[int, int] = {}

    def expanded(node: yaml.Node) -> int:
        if id(node) not in sizes:
            sizes[id(node)] = 0  # a recursive alias counts once
            children = [c for pair in node.value for c in pair] if isinstance(node, yaml.MappingNode) else (
                node.value if isinstance(node, yaml.SequenceNode) else [])
            sizes[id(node)] = min(1 + sum(expanded(c) for c in children), MAX_YAML_NODES + 1)
        return sizes[id(node)]

    if root is not None and expanded(root) > MAX_YAML_NODES:
        raise ConfigError(f"{source}: its YAML aliases expand to more than {MAX_YAML_NODES} values; refused")
    return yaml.safe_load(text)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = safe_yaml(path.read_text(), f"config file {path}")
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def load_config(schema: type[C], path: str | Path | None = None, overrides: Sequence[str] = ()) -> C:
    """Build ``schema`` from an optional YAML file or packaged recipe name and dotted overrides (overrides win); a
    renamed value is read under its current name, with a deprecation warning."""
    data = read_yaml(resolve_recipe(path)) if path is not None else {}
    notes: list[tuple[str, str, str]] = []
    cfg = from_dict(schema, merge(data, parse_overrides(overrides)), notes=notes)
    for key, old, current in notes:
        log.warning("%s=%s is deprecated: it is now called %s", key, old, current)
    return cfg


def from_dict(schema: type[C], data: dict[str, Any], prefix: str = "",
              notes: list[tuple[str, str, str]] | None = None) -> C:
    """Recursively build dataclass ``schema`` from ``data``, checking keys and types; a renamed value is read
    under its current name and appended to ``notes`` as ``(key, old, current)``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = get_type_hints(schema, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown config key {prefix + key!r}; valid keys here: {', '.join(fields)}")
        default_factory = fields[key].default_factory
        nested = dataclasses.is_dataclass(hints[key]) and isinstance(value, dict)
        if nested and default_factory is not dataclasses.MISSING:
            value = merge(dataclasses.asdict(default_factory()), value)  # keep the field's own defaults
        if (current := _current_name(fields[key], value)) != value and notes is not None:
            notes.append((prefix + key, value, current))
        kwargs[key] = _convert(current, hints[key], prefix + key, notes)
    try:
        return schema(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {exc}") from None


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        return " ".join([_type_name(base), *(str(m) for m in meta if isinstance(m, Range))])
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, notes: list[tuple[str, str, str]] | None = None) -> Any:
    """Check ``value`` against type ``tp``; ints are accepted for floats and lists for tuples."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        value = _convert(value, args[0], key, notes)
        if not all(bound.contains(value) for bound in args[1:] if isinstance(bound, Range)):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            tried: list[tuple[str, str, str]] = []  # a failed branch's rename notes are dropped with it
            try:
                converted = _convert(value, arg, key, tried)
            except ConfigError as exc:
                errors.append(exc)
                continue
            if notes is not None:
                notes.extend(tried)
            return converted
        if len(errors) == 1 and not str(errors[0]).startswith(f"{key}: "):
            raise errors[0]  # the value has the right shape; a part of it is wrong (e.g. one list item)
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key + ".", notes)
    if origin is list and isinstance(value, (str, int, float)):
        value = [value]  # `data.root=DIR` for a list of dirs
    if origin in (list, tuple, Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} values, got {value!r}")
            return tuple(_convert(v, a, f"{key}[{i}]", notes) for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        converted = [_convert(v, item, f"{key}[{i}]", notes) for i, v in enumerate(value)]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and _FLOAT.fullmatch(value.strip()):
        return float(value)  # YAML 1.1 reads exponents without a dot (`2e-3`) as strings
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config dict with dotted keys (``{"train": {"lr": 1}}`` → ``{"train.lr": 1}``); ``timm_kwargs`` stays a
    value (its keys are timm's, not ours)."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict) and key != "timm_kwargs":
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def changed_values(old: dict[str, Any], new: dict[str, Any], keys: Iterable[str] | None = None) -> list[str]:
    """``key=old → new`` for every key (default: of either flat dict) whose value differs, in sorted order."""
    return [f"{k}={old.get(k)} → {new.get(k)}" for k in sorted(old.keys() | new.keys() if keys is None else keys)
            if old.get(k) != new.get(k)]


def to_dict(config: Any) -> dict[str, Any]:
    """Dataclass → plain dict (tuples become lists) suitable for YAML and checkpoints."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def save_config(config: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
