"""Typed configs, one policy for every recipe.

A recipe's config is a dataclass deriving from `RunConfig`, so the things every run has carry
the same names everywhere (``data``, ``epochs``, ``batch_size``, ``lr``, ``clip``, ``seed``,
``device``, ``threads``, ``tensorboard``). A config is built in one order (`build_config`):

    the dataclass defaults -> a preset (a dict of overrides) -> a --config FILE (JSON or TOML)
    -> overrides (``key=value`` tokens, ``--key value`` flags, or a dict)

Every key is checked and every value converted to the field's type: an unknown key or a value
of the wrong type is a `UserError`, never silently ignored. Old names (a class's `ALIASES`, e.g.
``learning_rate`` -> ``lr``) keep working, with a one-line note. `RunConfig.validate` checks
ranges; subclasses add their own with `check`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from unroll.errors import UserError
from unroll.limits import CAPS
from unroll.limits import MAX_LAYERS as MAX_LAYERS  # (re-exported: the recipes' old name)

C = TypeVar("C")
logger = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# An alias maps an old name to the new one, or to (new name, value converter).
Alias = str | tuple[str, Callable[[Any], Any]]


@dataclasses.dataclass
class RunConfig:
    """The fields every recipe has, under one set of names (a recipe redefines the defaults)."""

    data: str = ""  # what to train on (the recipe says what it takes)
    epochs: int = 10  # passes over the training data
    batch_size: int = 32  # examples (or parallel streams) per step
    lr: float = 1e-3  # learning rate
    clip: float = 0.0  # clip gradients to this global norm; 0 = off
    seed: int = 0  # seeds every random number generator: the same seed, the same run
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N, mps, xpu
    threads: int = 0  # torch.set_num_threads while running; 0 = leave torch's default
    tensorboard: bool = True  # TensorBoard scalars beside metrics.jsonl (when installed)

    # Old names still accepted on the command line, in --config files and in old checkpoints.
    ALIASES: ClassVar[dict[str, Alias]] = {}
    # Fields a resumed run may change; the rest must match the run it continues.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("epochs", "device", "threads", "tensorboard")
    # The largest value of each size field (`unroll.limits.CAPS`, shared by every recipe; a
    # recipe may tighten a cap, never loosen it).
    CAPS: ClassVar[dict[str, tuple[int, int]]] = CAPS

    def validate(self) -> None:
        """A `UserError` naming the first field whose value cannot work."""
        check_caps(self)
        check(self, "epochs", self.epochs >= 1, "an integer >= 1")
        check(self, "batch_size", self.batch_size >= 1, "an integer >= 1")
        check(self, "lr", math.isfinite(self.lr) and self.lr > 0, "a number > 0")
        check(self, "clip", math.isfinite(self.clip) and self.clip >= 0, "a number >= 0 (0 = off)")
        check(self, "seed", is_seed(self.seed), SEED_RANGE)
        cores = os.cpu_count() or 1
        check(
            self,
            "threads",
            0 <= self.threads <= max_threads(),
            f"0 (torch's default) to {max_threads()} (this machine has {cores} cores)",
        )


def check_caps(config: Any) -> None:
    """A `UserError` for the first field above its cap in ``type(config).CAPS`` (fields the
    config does not have, and None values, are skipped; lower bounds are the recipe's)."""
    names = {f.name for f in dataclasses.fields(config)}
    for name, (low, high) in getattr(type(config), "CAPS", CAPS).items():
        value = getattr(config, name, None) if name in names else None
        if isinstance(value, int) and not isinstance(value, bool) and value > high:
            raise UserError(f"{name}={value!r}: expected an integer from {low} to {high}")


SEED_RANGE = "an integer from -2**63 to 2**64 - 1"  # what torch's generators take


def is_seed(value: int) -> bool:
    return -(2**63) <= value < 2**64


def max_threads() -> int:
    """The most threads a run may ask for: a few times the cores, never thousands (each thread
    costs a stack, and torch segfaults when it cannot create them)."""
    return 4 * (os.cpu_count() or 1)


def check(config: Any, field: str, ok: bool, expected: str) -> None:
    """Raise ``UserError("field=value: expected ...")`` unless `ok`."""
    if not ok:
        raise UserError(f"{field}={getattr(config, field)!r}: expected {expected}")


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
        raise UserError(f"{name}={text!r}: expected one of {', '.join(map(str, choices))}")
    if tp is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise UserError(f"{name}={text!r}: expected a boolean (true/false)")
    if tp is int:
        try:
            return int(text)
        except ValueError:
            raise UserError(f"{name}={text!r}: expected an integer") from None
    if tp is float:
        try:
            if "/" in text:  # allow 1/1.15 as in the Zaremba table
                num, den = text.split("/", 1)
                return float(num) / float(den)
            return float(text)
        except (ValueError, ZeroDivisionError):
            raise UserError(f"{name}={text!r}: expected a number") from None
    if tp is str:
        return text
    raise UserError(f"{name}: fields of type {tp} cannot be set from the command line")


def _check_value(name: str, value: Any, tp: Any) -> Any:
    """A value from a dict (JSON, TOML, a checkpoint) checked against the field's type."""
    if isinstance(value, str) and tp is not str and typing.get_origin(tp) is not typing.Literal:
        return _convert(name, value, tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        for a in typing.get_args(tp):
            if a is type(None):
                continue
            try:
                return _check_value(name, value, a)
            except UserError:
                continue
        raise UserError(f"{name}={value!r}: expected {type_help(tp)}")
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        return _convert(name, str(value), tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{name}={value!r}: expected a boolean (true/false)")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise UserError(f"{name}={value!r}: expected an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UserError(f"{name}={value!r}: expected a number")
    if tp is str:
        if isinstance(value, str):
            return value
        raise UserError(f"{name}={value!r}: expected a string")
    return value


def type_help(tp: Any) -> str:
    """``int``, ``int or none``, ``word|char``: what a config field accepts."""
    if typing.get_origin(tp) is typing.Literal:
        return "|".join(map(str, typing.get_args(tp)))
    args = typing.get_args(tp)
    if args and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return " or ".join(type_help(a) for a in inner) + " or none"
    return getattr(tp, "__name__", str(tp))


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """The comment on each field's line in the config classes' source (``lr: float = 1.0  #
    the learning rate`` -> ``{"lr": "the learning rate"}``): what ``--help`` says of a flag.
    A subclass's comment wins over its base's; {} where the source cannot be read."""
    import inspect
    import io
    import tokenize

    comments: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        line_first: dict[int, list[tokenize.TokenInfo]] = {}
        try:
            for tok in tokenize.generate_tokens(io.StringIO(source).readline):
                line_first.setdefault(tok.start[0], []).append(tok)
        except (tokenize.TokenError, SyntaxError):
            continue
        names = {f.name for f in dataclasses.fields(klass)}
        for toks in line_first.values():
            words = [t for t in toks if t.type not in (tokenize.INDENT, tokenize.DEDENT)]
            if (
                len(words) >= 3
                and words[0].type == tokenize.NAME
                and words[0].string in names
                and words[1].string == ":"
                and words[-1].type in (tokenize.NEWLINE, tokenize.COMMENT, tokenize.NL)
            ):
                comment = next((t.string for t in words if t.type == tokenize.COMMENT), None)
                if comment:
                    comments[words[0].string] = comment.lstrip("#").strip()
    return comments  # (cached: read once per class; callers must not change it)


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def aliases(cls: type) -> dict[str, Alias]:
    return dict(getattr(cls, "ALIASES", {}))


def parse_override_tokens(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """``['a=1', '--b', '2', '--c=3']`` -> ``[('a','1'), ('b','2'), ('c','3')]``."""
    pairs: list[tuple[str, str]] = []
    i = 0
    tokens = list(tokens)
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


def _resolve_alias(cls: type, key: str, value: Any, source: str) -> tuple[str, Any, bool]:
    """(field name, value, converted) for a key that may be an old name."""
    alias = aliases(cls).get(key)
    if alias is None:
        return key, value, False
    if isinstance(alias, str):
        logger.warning("%s: %s is now called %s (the old name still works)", source, key, alias)
        return alias, value, False
    new, convert = alias
    try:
        converted = convert(_convert(key, value, float) if isinstance(value, str) else value)
    except UserError:  # the converter's own one-line message
        raise
    except (TypeError, ValueError):
        raise UserError(f"{key}={value!r}: expected a number") from None
    logger.warning("%s: %s is now %s (converted: %s=%r)", source, key, new, new, converted)
    return new, converted, True


def apply_overrides(
    config: C, tokens: Sequence[str] | Mapping[str, Any], source: str = "override"
) -> C:
    """A copy of the dataclass `config` with overrides applied and type-checked.

    `tokens`: ``key=value`` / ``--key value`` strings, or a mapping (values may be strings, to
    be converted, or already typed values, to be checked)."""
    cls = type(config)
    types_ = field_types(cls)
    pairs = list(tokens.items()) if isinstance(tokens, Mapping) else parse_override_tokens(tokens)
    changes: dict[str, Any] = {}
    for key, value in pairs:
        key, value, converted = _resolve_alias(cls, key, value, source)
        if key not in types_:
            raise UserError(f"unknown config key {key!r}{did_you_mean(key, types_)}")
        if converted:
            changes[key] = value
        elif isinstance(value, str):
            changes[key] = _convert(key, value, types_[key])
        else:
            changes[key] = _check_value(key, value, types_[key])
    return dataclasses.replace(config, **changes)


def did_you_mean(key: str, known: Iterable[str]) -> str:
    """``; did you mean 'lr'?`` for a near miss, else the list of the known keys."""
    import difflib

    known = sorted(known)
    close = difflib.get_close_matches(key.replace("-", "_"), known, n=3, cutoff=0.6)
    if close:
        return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
    return f"; known keys: {', '.join(known)}"


def config_from_dict(cls: type[C], data: Mapping[str, Any], source: str = "config") -> C:
    """Rebuild a config saved with `dataclasses.asdict` (a checkpoint, a config.json); old
    names are read through the class's aliases, types are checked."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names and k not in aliases(cls)]
    if unknown:
        raise UserError(f"{source}: unknown config keys {sorted(unknown)} for {cls.__name__}")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    base = cls(**{k: data[k] for k in required if k in data})
    return apply_overrides(base, {k: v for k, v in data.items() if k not in required}, source)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The key/value table of a ``--config`` file: JSON (``.json``) or TOML (anything else)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"--config {path}: cannot read ({e.strerror})") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"--config {path}: not valid JSON ({e})") from None
    else:
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise UserError(f"--config {path}: TOML needs Python 3.11; use a .json file") from None
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise UserError(f"--config {path}: not valid TOML ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"--config {path}: expected a table of key = value")
    data.pop("kind", None)  # a run's config.json can serve as a --config file
    nested = [k for k, v in data.items() if isinstance(v, (dict, list))]
    if nested:
        raise UserError(f"--config {path}: {nested[0]} is a table or list, expected a value")
    return data


def build_config(
    cls: type[C],
    presets: Mapping[str, Mapping[str, Any]],
    preset: str | None = None,
    config_file: str | Path | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
) -> C:
    """Defaults -> preset -> --config file -> overrides, every step type-checked; validated."""
    config = cls()
    if preset is not None:
        if preset not in presets:
            raise UserError(f"unknown preset {preset!r}; known presets: {', '.join(presets)}")
        config = apply_overrides(config, presets[preset], f"preset {preset}")
    if config_file is not None:
        config = apply_overrides(config, read_config_file(config_file), f"--config {config_file}")
    config = apply_overrides(config, overrides)
    config.validate()
    return config


def changed_fields(old: Any, new: Any) -> list[str]:
    return [f.name for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name)]


def format_presets(cls: type, presets: Mapping[str, Mapping[str, Any]]) -> str:
    """A table: one row per config field, a column of the defaults, then one per preset."""
    configs = {"(default)": cls()}
    configs.update({name: apply_overrides(cls(), values) for name, values in presets.items()})
    rows = [["field", *configs]]
    for f in dataclasses.fields(cls):
        row = [f.name]
        for cfg in configs.values():
            v = getattr(cfg, f.name)
            row.append(f"{v:.6g}" if isinstance(v, float) else "-" if v is None else str(v))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
