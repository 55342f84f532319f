"""``unroll autoencode train|eval|encode|fewlabels|presets``."""

from __future__ import annotations

import argparse

from unroll.cli.commands import add_presets, add_train, recipe_parser
from unroll.cli.flags import add_config_flags, add_quiet, overrides_from_args
from unroll.config import apply_overrides
from unroll.recipes import autoencode


def register(sub: argparse._SubParsersAction) -> None:
    actions = recipe_parser(
        sub,
        autoencode.RECIPE,
        help="autoencoders (dense, conv, denoising, sequence): reconstructions, codes, anomalies",
        description="Dense, convolutional, denoising and sequence (LSTM) autoencoders on images "
        "and time series.",
    )
    add_train(
        actions,
        autoencode.RECIPE,
        autoencode.train,
        "Train an autoencoder (default: a dense one on sklearn's 8x8 digits) and score it: "
        "per-pixel BCE, MSE and PSNR (with a PSNR table for denoising), or for a time series "
        "the windows flagged above a threshold chosen on the training part. Writes "
        "reconstructions.png, codes.png, worst.png (series.png for a series) and results.json.",
    )
    p = actions.add_parser("eval", help="score a trained autoencoder (valid and test)")
    p.add_argument("run_dir", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--data", default=None, help="images to score on (default: the run's own)")
    p.add_argument("--out", metavar="DIR", help="write the figures and CSV files here")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    add_quiet(p)
    p.set_defaults(func=_eval)

    p = actions.add_parser("encode", help="write the codes of train, valid and test (.npz)")
    p.add_argument("run_dir", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--output", metavar="FILE", help="default: RUN_DIR/codes.npz")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    add_quiet(p)
    p.set_defaults(func=_encode)

    p = actions.add_parser(
        "fewlabels",
        help="classifiers on raw inputs vs codes with 1%%, 10%%, 100%% of the labels",
        description="Train the same classifiers (softmax regression; the row LSTM for a "
        "sequence autoencoder) on raw inputs, on frozen codes and with the encoder fine-tuned, "
        "each with a fraction of the training labels, and print the test accuracies. Writes "
        "fewlabels.txt and fewlabels.json (to --out, default the run directory). Settings as "
        "--KEY VALUE or KEY=VALUE.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--out", metavar="DIR", help="where to write fewlabels.{txt,json}")
    add_quiet(p)
    add_config_flags(p, autoencode.FewLabelsConfig)
    p.set_defaults(func=_fewlabels, takes_overrides=True)
    add_presets(actions, autoencode.RECIPE)


def _eval(args: argparse.Namespace) -> int:
    r = autoencode.evaluate(
        args.run_dir,
        checkpoint=args.checkpoint,
        data=args.data,
        out=args.out,
        device=args.device,
        quiet=args.quiet,
    )
    print(r.summary())
    return 0


def _encode(args: argparse.Namespace) -> int:
    r = autoencode.encode(
        args.run_dir,
        output=args.output,
        checkpoint=args.checkpoint,
        device=args.device,
        quiet=args.quiet,
    )
    print(r.summary())
    return 0


def _fewlabels(args: argparse.Namespace) -> int:
    pairs = overrides_from_args(args, autoencode.FewLabelsConfig)
    config = apply_overrides(autoencode.FewLabelsConfig(), dict(pairs))
    r = autoencode.few_labels(
        args.run_dir, config, checkpoint=args.checkpoint, out=args.out, quiet=args.quiet
    )
    print(r.summary())
    return 0
