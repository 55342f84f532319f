"""``unroll seq2seq train|eval|predict|presets``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unroll import textio
from unroll.cli.commands import add_presets, add_train, recipe_parser
from unroll.errors import UserError
from unroll.recipes import seq2seq


def register(sub: argparse._SubParsersAction) -> None:
    actions = recipe_parser(
        sub,
        seq2seq.RECIPE,
        help="sequence to sequence: encoder-decoder with attention, greedy and beam search",
        description="Encoder-decoder models on addition, string reversal, CMUdict "
        "pronunciation (g2p) or pairs of text files (--data DIR).",
    )
    add_train(
        actions,
        seq2seq.RECIPE,
        seq2seq.train,
        "Train an encoder-decoder (default: the addition task, 'a+b' -> the sum); "
        "data=reverse|g2p|DIR (train.src/train.tgt, valid.*, test.*). Writes metrics, "
        "checkpoints, results.json, the test outputs and accuracy-by-length / attention PNGs.",
    )

    p = actions.add_parser("eval", help="score trained runs on a split (greedy and beam)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--split", default="test", choices=["test", "valid", "train"])
    p.add_argument("--beam", type=int, default=None, help="beam size (default: the run's)")
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--png", metavar="FILE", help="draw the runs' greedy accuracy by source length here"
    )
    p.set_defaults(func=_eval)

    p = actions.add_parser("predict", help="outputs for source lines from stdin or a file")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("input", nargs="?", default="-", help="file of source lines (default stdin)")
    p.add_argument("--beam", type=int, default=1, metavar="K")
    p.add_argument("--n-best", type=int, default=1, metavar="N", help="print N best (<= K)")
    p.add_argument("--attention-png", metavar="FILE", help="attention heat map (one input)")
    p.add_argument("--which", dest="which", default="best", choices=["best", "last"])
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_predict)
    add_presets(actions, seq2seq.RECIPE)


def _eval(args: argparse.Namespace) -> int:
    if args.png:
        textio.output_file(args.png, "--png")  # (before the runs are scored)
    results = [
        seq2seq.evaluate(
            path, split=args.split, beam=args.beam, checkpoint=args.checkpoint, device=args.device
        )
        for path in args.run_dirs
    ]
    for r in results:
        print(r.summary())
    if args.png:
        from unroll.plotting import MISSING_MATPLOTLIB, accuracy_by_length_png

        curves = {}
        for r in results:
            label = Path(r.run_dir).name
            curves[label if label not in curves else r.run_dir] = r.scores[0].by_length
        if accuracy_by_length_png(args.png, curves, title=f"{args.split}, greedy") is None:
            raise UserError(f"--png: {MISSING_MATPLOTLIB}")
        print(f"wrote {args.png}")
    return 0


def _read_lines(name: str) -> tuple[list[str], str]:
    """The input lines, as every reader reads lines (`unroll.textio`): one per ``\\n``."""
    if name == "-":
        return textio.stream_lines(sys.stdin, "<stdin>"), "<stdin>"
    return textio.read_lines(name), name


def _predict(args: argparse.Namespace) -> int:
    lines, source = _read_lines(args.input)
    r = seq2seq.predict(
        args.checkpoint,
        lines,
        beam=args.beam,
        n_best=args.n_best,
        attention_png=args.attention_png,
        checkpoint=args.which,
        device=args.device,
        source=source,
    )
    print(r.summary())
    if r.attention_png:
        print(f"wrote {r.attention_png}", file=sys.stderr)
    return 0
