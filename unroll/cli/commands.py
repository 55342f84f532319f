"""The commands every recipe has — ``train`` and ``presets`` — built from its `Recipe`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from unroll.cli.flags import Parser, add_train_arguments, config_for_train
from unroll.engine.recipe import Recipe


def recipe_parser(
    sub: argparse._SubParsersAction, recipe: Recipe, help: str, description: str
) -> argparse._SubParsersAction:
    """``unroll NAME`` with its own subcommands; returns them for the recipe's extra commands."""
    p = sub.add_parser(recipe.name, help=help, description=description)
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
    actions.required = True
    return actions


def add_train(
    actions: argparse._SubParsersAction,
    recipe: Recipe,
    train: Callable[..., Any],
    description: str,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
    run: Callable[[argparse.Namespace, Any], Any] | None = None,
) -> argparse.ArgumentParser:
    """``unroll NAME train``: config from flags/preset/file, `train(config, out=, resume=,
    quiet=, argv=)`, then the result's summary on stdout. `run(args, config)` replaces the
    plain call for recipes with a variant (e.g. classify's --baselines)."""
    p = actions.add_parser(
        "train",
        help=f"train ({recipe.name}); see `unroll {recipe.name} presets`",
        description=description + " Every config field can be set as --KEY VALUE or KEY=VALUE.",
    )
    add_train_arguments(p, recipe)
    if extra is not None:
        extra(p)

    def handler(args: argparse.Namespace) -> int:
        config = config_for_train(args, recipe)
        if run is not None:
            result = run(args, config)
        else:
            result = call_train(train, args, config)
        if result is not None:
            print(result.summary())
        return 0

    p.set_defaults(func=handler, takes_overrides=True)
    return p


def call_train(train: Callable[..., Any], args: argparse.Namespace, config: Any) -> Any:
    if args.resume is not None:
        return train(config or None, resume=args.resume, quiet=args.quiet, argv=args.argv)
    return train(config, out=args.out, quiet=args.quiet, argv=args.argv)


def add_presets(actions: argparse._SubParsersAction, recipe: Recipe) -> None:
    p = actions.add_parser("presets", help="list the presets and every config field's value")

    def handler(args: argparse.Namespace) -> int:
        print(recipe.format_presets())
        return 0

    p.set_defaults(func=handler)


def warn_lines(caught: list[Any]) -> None:
    for w in caught:
        print(f"unroll: warning: {w.message}", file=sys.stderr)
