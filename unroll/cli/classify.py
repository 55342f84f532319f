"""``unroll classify train|eval|presets``."""

from __future__ import annotations

import argparse
from typing import Any

from unroll.cli.commands import add_presets, add_train, call_train, recipe_parser
from unroll.cli.flags import add_quiet
from unroll.errors import UserError
from unroll.recipes import classify


def register(sub: argparse._SubParsersAction) -> None:
    actions = recipe_parser(
        sub,
        classify.RECIPE,
        help="classify images read as sequences (LSTM/GRU/RNN/IRNN) with softmax/CNN baselines",
        description="Image classification with recurrent nets reading rows or pixels.",
    )
    add_train(
        actions,
        classify.RECIPE,
        classify.train,
        "Train an image classifier: a recurrent net reading each image row by row (rows), pixel "
        "by pixel (pixels) or in a fixed random pixel order (permuted); or the baselines "
        "softmax and cnn. Writes metrics, checkpoints, results.json and a confusion matrix "
        "(text and PNG). model=all is --baselines.",
        extra=lambda p: p.add_argument(
            "--baselines",
            action="store_true",
            help="train softmax, cnn and the recurrent model; write a comparison table",
        ),
        run=_train,
    )
    p = actions.add_parser(
        "eval", help="test accuracy and confusion matrix of a trained classifier"
    )
    p.add_argument("run_dir", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--data", default=None, help="data to score on (default: the run's own)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    add_quiet(p)
    p.set_defaults(func=_eval)
    add_presets(actions, classify.RECIPE)


def _train(args: argparse.Namespace, config: Any) -> Any:
    baselines = args.baselines
    if isinstance(config, dict):  # --resume: overrides only
        if baselines or config.get("model") == "all":
            raise UserError("--resume and --baselines: resume each model's run directory")
        return call_train(classify.train, args, config)
    return call_train(classify.train, args, config) if not baselines else _baselines(args, config)


def _baselines(args: argparse.Namespace, config: Any) -> None:
    results = classify.train_baselines(config, args.out, quiet=args.quiet, argv=args.argv)
    if results:  # (none on the ranks other than 0 under torchrun)
        print(classify.format_comparison(results, config, config.data).rstrip())
    return None


def _eval(args: argparse.Namespace) -> int:
    r = classify.evaluate(
        args.run_dir,
        checkpoint=args.checkpoint,
        data=args.data,
        device=args.device,
        quiet=args.quiet,
    )
    print(r.summary())
    return 0
