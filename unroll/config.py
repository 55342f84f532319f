"""Typed configs filled from the command line.

Configs are dataclasses with defaults; presets are instances. `apply_overrides` takes
``key=value`` tokens (or ``--key value`` / ``--key=value`` flags, with ``-`` or ``_``) and
returns a new instance, checking every key and converting every value to the field's type:
an unknown key or a value of the wrong type is a `UserError`, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from unroll.errors import UserError

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _convert(name: str, text: str, tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.lower() in ("none", "null") and len(args) < len(typing.get_args(tp)):
            return None
        errors = []
        for a in args:
            try:
                return _convert(name, text, a)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"bad value {text!r} for {name}")
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        for c in choices:
            if str(c) == text:
                return c
        raise UserError(f"override {name}={text!r}: expected one of {', '.join(map(str, choices))}")
    if tp is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise UserError(f"override {name}={text!r}: expected a boolean (true/false)")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise UserError(f"override {name}={text!r}: expected an integer") from None
    if tp is float:
        try:
            if "/" in text:  # allow 1/1.15 as in the Zaremba table
                num, den = text.split("/", 1)
                return float(num) / float(den)
            return float(text)
        except (ValueError, ZeroDivisionError):
            raise UserError(f"override {name}={text!r}: expected a number") from None
    if tp is str:
        return text
    raise UserError(f"override {name}: fields of type {tp} cannot be set from the command line")


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def parse_override_tokens(tokens: list[str]) -> list[tuple[str, str]]:
    """``['a=1', '--b', '2', '--c=3']`` -> ``[('a','1'), ('b','2'), ('c','3')]``."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--"):
            body = tok[2:]
            if "=" in body:
                key, value = body.split("=", 1)
            else:
                if i + 1 >= len(tokens):
                    raise UserError(f"option {tok} needs a value")
                key, value = body, tokens[i + 1]
                i += 1
        elif "=" in tok:
            key, value = tok.split("=", 1)
        else:
            raise UserError(f"unexpected argument {tok!r}: overrides are key=value")
        pairs.append((key.replace("-", "_"), value))
        i += 1
    return pairs


def apply_overrides(config: C, tokens: list[str] | dict[str, Any]) -> C:
    """A copy of the dataclass `config` with overrides applied and type-checked."""
    types_ = field_types(type(config))
    if isinstance(tokens, dict):
        pairs = list(tokens.items())
    else:
        pairs = parse_override_tokens(tokens)
    changes: dict[str, Any] = {}
    for key, value in pairs:
        if key not in types_:
            known = ", ".join(sorted(types_))
            raise UserError(f"unknown config key {key!r}; known keys: {known}")
        if isinstance(value, str):
            changes[key] = _convert(key, value, types_[key])
        else:
            changes[key] = value
    return dataclasses.replace(config, **changes)


def config_from_dict(cls: type[C], data: dict[str, Any], source: str = "config") -> C:
    """Rebuild a config saved with `dataclasses.asdict` (e.g. from a checkpoint)."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise UserError(f"{source}: unknown config keys {sorted(unknown)} for {cls.__name__}")
    return cls(**data)
