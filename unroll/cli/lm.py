"""``unroll lm train|eval|generate|presets``."""

from __future__ import annotations

import argparse
import warnings

from unroll.cli.commands import add_presets, add_train, recipe_parser, warn_lines
from unroll.cli.flags import add_quiet
from unroll.recipes import lm


def register(sub: argparse._SubParsersAction) -> None:
    actions = recipe_parser(
        sub,
        lm.RECIPE,
        help="language models: train, eval, generate (Zaremba et al. 2014 presets)",
        description="Word- or character-level LSTM language models.",
    )
    add_train(
        actions,
        lm.RECIPE,
        lm.train,
        "Train the LSTM language model of Zaremba et al. 2014 (default: the demo preset on the "
        "embedded corpus; --preset ptb-small --data ptb for the paper's Small).",
    )

    p = actions.add_parser("eval", help="perplexity of a trained language model")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--data", help="corpus (default: the one it was trained on)")
    p.add_argument("--split", default="test", choices=["test", "valid", "train"])
    p.add_argument("--batch-size", type=int, default=None, help="default 1 (exact)")
    p.add_argument("--checkpoint", dest="which", default="best", choices=["best", "last"])
    p.add_argument("--device", default="auto")
    add_quiet(p)
    p.set_defaults(func=_eval)

    for name in ("generate", "predict"):
        p = actions.add_parser(
            name,
            help="sample text from a trained language model"
            + (" (= generate)" if name == "predict" else ""),
        )
        p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
        p.add_argument("--prompt", default="", metavar="TEXT")
        length = p.add_mutually_exclusive_group()
        length.add_argument(
            "--words", type=int, metavar="N", help="tokens to draw (default 50; char level: 300)"
        )
        length.add_argument("--sentences", type=int, metavar="N", help="stop after N <eos>")
        p.add_argument("--temperature", type=float, default=1.0, metavar="T")
        p.add_argument("--top-k", type=int, default=None, metavar="K")
        p.add_argument("--seed", type=int, default=None, metavar="S")
        p.add_argument("--device", default="auto")
        p.set_defaults(func=_generate)
    add_presets(actions, lm.RECIPE)


def _eval(args: argparse.Namespace) -> int:
    r = lm.evaluate(
        args.checkpoint,
        data=args.data,
        split=args.split,
        batch_size=args.batch_size,
        device=args.device,
        which=args.which,
        quiet=args.quiet,
    )
    print(r.summary())
    return 0


def _generate(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        text = lm.generate(
            args.checkpoint,
            prompt=args.prompt,
            words=args.words,
            sentences=args.sentences,
            temperature=args.temperature,
            top_k=args.top_k,
            seed=args.seed,
            device=args.device,
        )
    warn_lines(caught)
    print(text)
    return 0
