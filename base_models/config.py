"""Configs for every trainer: a dataclass with help text, named presets, YAML files, overrides.

A config is resolved in layers, each overriding the one before:
    defaults -> preset (`micro` for tests, `quick` for CPU, `gpu`) -> YAML file -> key=value.
Unknown keys and values of the wrong type are errors that name the key and the fix.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from base_models.errors import ArtalignError
from base_models.io_utils import write_text

C = TypeVar("C", bound="BaseConfig")


def hfield(default: Any, help: str, **kwargs: Any) -> Any:
    """A dataclass field with help text (shown by `--help-config`); lists and dicts are copied."""
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(
            default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kwargs
        )
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


@dataclasses.dataclass
class BaseConfig:
    """Base class of trainer configs. Subclasses set `PRESETS`: name -> dict of field overrides."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save_yaml(self, path: str | Path) -> None:
        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def help_text(cls) -> str:
        """One line per field: name, type, default and help, for `--help-config`."""
        lines = [f"{cls.__name__} (presets: {', '.join(cls.PRESETS) or 'none'})"]
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            tname = getattr(hints[f.name], "__name__", str(hints[f.name]))
            lines.append(f"  {f.name} ({tname}, default {default!r}): {f.metadata.get('help', '')}")
        return "\n".join(lines)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML or command-line value to the field's declared type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        is_null = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_null and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], key)
    if origin in (list, tuple):
        items = value
        if isinstance(value, str):
            items = [v.strip() for v in value.split(",") if v.strip()] if value.strip() else []
        if not isinstance(items, (list, tuple)):
            raise ArtalignError(f"config key '{key}' expects a list, got {value!r}; use a,b,c")
        item_tp = args[0] if args else str
        out = [_coerce(v, item_tp, key) for v in items]
        return tuple(out) if origin is tuple else out
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
            return False
        raise ArtalignError(f"config key '{key}' expects true/false, got {value!r}")
    if tp in (int, float):
        try:
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(float(value)) if tp is int else tp(value)
        except (TypeError, ValueError):
            raise ArtalignError(
                f"config key '{key}' expects {tp.__name__}, got {value!r}"
            ) from None
    if tp is str:
        return str(value)
    return value


def _apply(cfg: C, updates: dict[str, Any], source: str) -> C:
    hints = typing.get_type_hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, value in updates.items():
        if key not in names:
            raise ArtalignError(
                f"unknown config key '{key}' in {source} for {type(cfg).__name__}; "
                f"valid keys: {', '.join(sorted(names))}"
            )
        setattr(cfg, key, _coerce(value, hints[key], key))
    return cfg


def parse_overrides(overrides: list[str] | None) -> dict[str, str]:
    """Parse `key=value` strings from the command line."""
    out: dict[str, str] = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ArtalignError(f"override {item!r} is not key=value; write e.g. lr=3e-4")
        out[key.strip()] = value.strip()
    return out


def load_config(
    cls: type[C],
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
) -> C:
    """Resolve a config: defaults, then the preset, then the YAML file, then overrides."""
    cfg = cls()
    file_values: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ArtalignError(f"config file {path} does not exist; pass an existing YAML file")
        try:
            file_values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ArtalignError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(file_values, dict):
            raise ArtalignError(f"config file {path} must hold a mapping of key: value")
        preset = file_values.pop("preset", None) if preset is None else preset
        file_values.pop("preset", None)
    if preset is not None:
        if preset not in cls.PRESETS:
            raise ArtalignError(
                f"unknown preset '{preset}' for {cls.__name__}; choose one of: "
                f"{', '.join(cls.PRESETS)}"
            )
        _apply(cfg, cls.PRESETS[preset], f"preset '{preset}'")
    _apply(cfg, file_values, str(config_file))
    if isinstance(overrides, dict):
        _apply(cfg, overrides, "overrides")
    else:
        _apply(cfg, parse_overrides(overrides), "command-line overrides")
    return cfg
