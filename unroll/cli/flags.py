"""Arguments every recipe's commands share, built once: config flags from the dataclass.

``unroll <recipe> train`` takes ``--preset NAME``, ``--config FILE``, ``--out RUN_DIR``,
``--resume RUN_DIR``, ``--quiet``, and every config field as ``--KEY VALUE`` (``-`` or ``_``)
or as ``KEY=VALUE`` anywhere on the line; old field names (a config's ALIASES) work too.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from unroll.config import field_comments, field_types, parse_override_tokens, type_help
from unroll.engine.recipe import Recipe
from unroll.errors import UserError

_KEY_VALUE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*=")


class Parser(argparse.ArgumentParser):
    """argparse, with errors as one line: ``unroll: error: PROG: MESSAGE (see PROG --help)``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)  # --lr must never match --lr-decay
        kwargs.setdefault("formatter_class", _CommentedHelp)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        """As argparse's; with ``--help`` and ``--preset NAME`` on one line, the help shows
        that preset's values (argparse prints help the moment it meets ``-h``)."""
        recipe = getattr(self, "recipe_for_help", None)
        tokens = list(args) if args is not None else []
        if recipe is not None and any(t in ("-h", "--help") for t in tokens):
            preset = _preset_named(tokens)
            if preset in recipe.presets:
                _show_defaults(self, recipe.config, recipe.preset(preset), f"preset {preset}:")
            elif preset is None and (default := recipe.preset_for({})) in recipe.presets:
                # what runs when no preset is named, not the bare dataclass defaults
                where = f"default (preset {default}):"
                _show_defaults(self, recipe.config, recipe.preset(default), where)
        return super().parse_known_args(args, namespace)


class _CommentedHelp(argparse.HelpFormatter):
    """A config flag's help starts with its field's comment in the config source, read only
    when help is shown (reading sources costs ~0.5 s: no command but --help pays it)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help
        field = getattr(action, "config_field", None)
        if field is not None and text is not None:
            comment = field_comments(field[0]).get(field[1])
            if comment:
                text = comment.replace("%", "%%") + " " + text
        return text


def _preset_named(tokens: Sequence[str]) -> str | None:
    for i, tok in enumerate(tokens):
        if tok == "--preset" and i + 1 < len(tokens):
            return tokens[i + 1]
        if tok.startswith("--preset="):
            return tok.split("=", 1)[1]
    return None


def _field_help(tp: Any, value: Any, where: str) -> str:
    """``(int; default 8)``; `_CommentedHelp` puts the field's comment before it."""
    return f"({type_help(tp)}; {where} {value!r})".replace("%", "%%")


def _show_defaults(parser: argparse.ArgumentParser, config_cls: type, config: Any, where: str):
    """Each config flag's help: the value `config` (a preset's) gives it."""
    types_ = field_types(config_cls)
    for action in parser._actions:
        name = action.dest.removeprefix("set_")
        if action.dest.startswith("set_") and name in types_:
            value = getattr(config, name)
            action.help = _field_help(types_[name], value, where)


def _dest(name: str) -> str:
    return f"set_{name}"


def add_config_flags(parser: argparse.ArgumentParser, config_cls: type) -> None:
    """``--KEY VALUE`` (and ``--key_name``) for every field and alias of `config_cls`."""
    group = parser.add_argument_group("config (as --KEY VALUE or KEY=VALUE; types are checked)")
    defaults = config_cls()
    for name, tp in field_types(config_cls).items():
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        default = getattr(defaults, name)
        action = group.add_argument(
            *flags,
            dest=_dest(name),
            metavar="VALUE",
            default=None,
            help=_field_help(tp, default, "default"),
        )
        action.config_field = (config_cls, name)  # type: ignore[attr-defined]
    for old, new in getattr(config_cls, "ALIASES", {}).items():
        target = new if isinstance(new, str) else new[0]
        flag = f"--{target.replace('_', '-')}"
        flags = [f"--{old.replace('_', '-')}"] + ([f"--{old}"] if "_" in old else [])
        if isinstance(new, str):
            text = f"old name of {flag}"
        else:
            text = f"old name: sets {flag} to {_formula(new[1])}"
        group.add_argument(*flags, dest=_dest(old), metavar="VALUE", default=None, help=text)


def _formula(convert: Any) -> str:
    """``1.0 - float(VALUE)`` for ``lambda keep: 1.0 - float(keep)`` (what a converting old
    name does to its value), read from the source; a plain phrase where it cannot be read."""
    import ast
    import inspect

    try:
        line = inspect.getsource(convert).strip().rstrip(",")
        tree = ast.parse("{" + line + "}" if ":" in line.split("lambda")[0] else line)
        node = next(n for n in ast.walk(tree) if isinstance(n, ast.Lambda))
        arg = node.args.args[0].arg
        body = ast.unparse(node.body)
        return re.sub(rf"\b{re.escape(arg)}\b", "VALUE", body)
    except (OSError, TypeError, SyntaxError, StopIteration, IndexError):
        return "a value converted from this one"


def add_train_arguments(parser: argparse.ArgumentParser, recipe: Recipe) -> None:
    if recipe.presets:
        presets = f"one of: {', '.join(recipe.presets)} (with --help: its values below)"
    else:
        presets = "this recipe has no presets"
    parser.add_argument("--preset", metavar="NAME", help=presets)
    parser.recipe_for_help = recipe  # type: ignore[attr-defined]  (see Parser.parse_known_args)
    parser.add_argument("--config", metavar="FILE", help="config values from a JSON or TOML file")
    parser.add_argument("--out", metavar="RUN_DIR", help="new run directory (default runs/...)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last epoch")
    add_quiet(parser)
    add_config_flags(parser, recipe.config)  # (the values shown are filled in for --help)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet",
        "--no-progress",
        dest="quiet",
        action="store_true",
        help="no progress bars or per-epoch lines (results are still printed)",
    )


def overrides_from_args(args: argparse.Namespace, config_cls: type) -> list[tuple[str, str]]:
    """The config changes a command line asks for: ``--KEY VALUE`` flags first, then the
    ``KEY=VALUE`` tokens in their order (so a later KEY=VALUE wins)."""
    names = list(field_types(config_cls)) + list(getattr(config_cls, "ALIASES", {}))
    pairs = [
        (n, getattr(args, _dest(n))) for n in names if getattr(args, _dest(n), None) is not None
    ]
    return pairs + parse_override_tokens(getattr(args, "overrides", []))


def split_extras(rest: Sequence[str]) -> list[str]:
    """Tokens argparse did not take: each must be KEY=VALUE, else a one-line error naming it."""
    for tok in rest:
        if not _KEY_VALUE.match(tok):
            what = "option" if tok.startswith("-") else "argument"
            raise UserError(f"unrecognized {what} {tok!r} (config overrides are KEY=VALUE)")
    return list(rest)


def config_for_train(args: argparse.Namespace, recipe: Recipe) -> Any:
    """The config `train` runs with: for a new run, defaults -> preset -> file -> overrides;
    for --resume, the overrides alone (the run's own config is the base, see resume_point)."""
    pairs = overrides_from_args(args, recipe.config)
    if args.resume is not None:
        if args.preset is not None or args.config is not None:
            raise UserError("--preset/--config and --resume: a resumed run keeps its own config")
        if args.out is not None:
            raise UserError("--out and --resume: a resumed run continues in its own directory")
        return dict(pairs)
    return recipe.make_config(args.preset, args.config, dict(pairs))


def config_is_dataclass(config: Any) -> bool:
    return dataclasses.is_dataclass(config) and not isinstance(config, type)
