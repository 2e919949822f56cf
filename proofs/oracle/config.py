"""An implementation's own configuration: the values each family's set-up calls use.

Every family starts its sequences with set-up calls (PROTOCOL.md, "Families");
their arguments are the family's *configuration*. Today's values are the
defaults (:data:`DEFAULTS`); an implementation declares its own in its hello
(``"config"``), and the user may override either with ``--config FILE`` (JSON,
or TOML when the name ends in ``.toml``) and ``--set FAMILY.FIELD=VALUE``.
Later layers win field by field: defaults, hello, file, ``--set``.

A configuration is checked twice before it is used (:func:`problems`): against
the schema's ``config`` definition (the fields, their types, u32 bounds), then
against the model's preconditions, by running each family's set-up calls on a
fresh :class:`~proofs.oracle.world.ModelWorld`: a call the model refuses (a
heap past the frames, an index that does not fit the heap, a range past 4 GB)
is named with the error code the model gives. The oracle's exit status for a
refused configuration is PROTOCOL.md's (2 from the command line, checked before
anything runs; 4 from a hello).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from proofs.oracle.managers import Call
from proofs.oracle.protocol import ProtocolError, validate
from spec.abi import ErrorCode

#: Each family's fields and today's values (PROTOCOL.md, "Configuration").
DEFAULTS: dict[str, dict[str, int | bool]] = {
    "kernel": {"mem_start": 0x8000, "mem_end": 0x30000, "heap_start": 0xC0000000,
               "heap_end": 0xC0002000, "heap_max": 0xC0020000, "index_size": 16,
               "min_size": 0x1000, "supervisor": True, "readonly": False},
    "dos": {"mem_start": 0x100000, "mem_end": 0x400000, "first_segment": 0x0800,
            "umb_start": 0xC800, "umb_end": 0xE000, "xms_end": 0x200000, "ems_pages": 8},
    "user": {"mem_start": 0x100000, "mem_end": 0x400000},
    "shared": {"mem_start": 0x100000, "mem_end": 0x400000},
}
#: The fields that are booleans (the others are unsigned 32-bit numbers).
BOOLEANS = frozenset({"supervisor", "readonly"})


class ConfigError(ValueError):
    """A configuration the schema or the model refuses; the message says why."""


@dataclass(frozen=True)
class Config:
    """The values of every family, defaults filled in."""

    values: Mapping[str, Mapping[str, int | bool]] = field(
        default_factory=lambda: {f: dict(v) for f, v in DEFAULTS.items()})

    def of(self, family: str) -> dict[str, Any]:
        """One family's values (a family without a section: empty)."""
        return dict(self.values.get(family, {}))

    def declared(self) -> dict[str, dict[str, int | bool]]:
        """The fields that differ from the defaults (what the report shows)."""
        return {f: diff for f, v in self.values.items()
                if (diff := {k: x for k, x in v.items() if DEFAULTS[f].get(k) != x})}


def layered(*layers: Mapping[str, Mapping[str, Any]] | None) -> Config:
    """The defaults with each layer's fields on top, in order (None: no layer)."""
    values = {f: dict(v) for f, v in DEFAULTS.items()}
    for layer in layers:
        for family, fields in (layer or {}).items():
            values[family].update(fields)
    return Config(values)


def read_file(path: Path) -> dict[str, Any]:
    """A configuration file: JSON, or TOML when its name ends in .toml."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path} is not {'TOML' if path.suffix == '.toml' else 'JSON'}: "
                          f"{exc}") from None
    _check_schema(data, str(path))
    return dict(data)


def parse_setting(text: str) -> tuple[str, str, int | bool]:
    """``FAMILY.FIELD=VALUE`` (a number in any base Python reads, or true/false)."""
    name, sep, raw = text.partition("=")
    family, dot, key = name.strip().partition(".")
    if not sep or not dot:
        raise ConfigError(f"{text!r} is not FAMILY.FIELD=VALUE (kernel.index_size=0x20000)")
    value: int | bool
    if raw.strip().lower() in ("true", "false"):
        value = raw.strip().lower() == "true"
    else:
        try:
            value = int(raw.strip(), 0)
        except ValueError:
            raise ConfigError(f"{text!r}: {raw.strip()!r} is not a number") from None
    _check_schema({family: {key: value}}, text)
    return family, key, value


def settings(texts: Iterable[str]) -> dict[str, dict[str, int | bool]]:
    """Several ``--set`` values as one layer."""
    layer: dict[str, dict[str, int | bool]] = {}
    for text in texts:
        family, key, value = parse_setting(text)
        layer.setdefault(family, {})[key] = value
    return layer


def _check_schema(data: object, where: str) -> None:
    try:
        validate(data, "config")
    except ProtocolError as exc:
        raise ConfigError(f"{where}: {_plain(str(exc))}") from None


def _plain(message: str) -> str:
    """fastjsonschema's message without the repeated 'config does not validate'."""
    return message.removeprefix("config does not validate: ").replace("data.", "")


def problems(config: Config, families: Iterable[str] | None = None) -> list[str]:
    """Why the model refuses the configuration of each family (empty: none): each
    family's set-up calls are run on a fresh model world, and every one must
    succeed."""
    from proofs.oracle.families import FAMILIES  # the families import this module
    from proofs.oracle.world import MANAGERS, ModelWorld

    out: list[str] = []
    wanted = None if families is None else set(families)
    for family in FAMILIES:
        if wanted is not None and family.name not in wanted:
            continue
        world = ModelWorld()
        calls: list[Call] = family.setup(MANAGERS, config.of(family.name))
        for manager, op, args in calls:
            result, error = world.call(manager, op, args)
            if error or result is False:
                shown = ", ".join(f"{k}={_shown(v)}" for k, v in args.items())
                out.append(f"{family.name}: the set-up call {manager}.{op}({shown}) is refused "
                           f"by the model: {_error_name(error)} ({error})")
                break
    return out


def checked(config: Config, families: Iterable[str] | None = None) -> Config:
    """The configuration, or ConfigError naming every family the model refuses."""
    found = problems(config, families)
    if found:
        raise ConfigError("; ".join(found))
    return config


def _shown(value: object) -> str:
    return hex(value) if type(value) is int and value > 9 else json.dumps(value)


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return "an unknown error"
