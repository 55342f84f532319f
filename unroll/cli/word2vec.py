"""``unroll word2vec train|eval|similar|analogy|export|plot|presets``."""

from __future__ import annotations

import argparse

from unroll.cli.commands import add_presets, add_train, recipe_parser
from unroll.cli.flags import Parser
from unroll.errors import UserError
from unroll.recipes import word2vec

SOURCE = "RUN_DIR|CHECKPOINT|VECTORS"
SOURCE_HELP = "a run directory, a checkpoint, or a word2vec text/binary file"


def register(sub: argparse._SubParsersAction) -> None:
    actions = recipe_parser(
        sub,
        word2vec.RECIPE,
        help="word embeddings: skip-gram/CBOW with negative sampling or NCE (as gensim)",
        description="word2vec: train word vectors, score them, query them, export them.",
    )
    add_train(
        actions,
        word2vec.RECIPE,
        word2vec.train,
        "Train word vectors (default: skip-gram, negative sampling, gensim's settings, on the "
        "embedded pydoc corpus; --data ptb|text8|FILE|DIR). Writes metrics, checkpoints, "
        "vectors.bin (word2vec binary), results.json and embedding.png.",
    )

    p = _source_parser(actions, "eval", "analogy accuracy and word-similarity correlations")
    p.add_argument("--analogies", default="", metavar="FILE", help="questions-words.txt")
    p.add_argument("--wordsim", default="", metavar="FILE", help="wordsim353.tsv")
    p.add_argument("--simlex", default="", metavar="FILE", help="simlex999.txt")
    p.add_argument(
        "--restrict-vocab",
        type=int,
        default=30_000,
        metavar="N",
        help="score on the N most frequent words (default 30000, the C tool's)",
    )
    p.set_defaults(func=_eval)

    p = _source_parser(actions, "similar", "the nearest words (to positive - negative words)")
    p.add_argument("words", nargs="+", metavar="WORD")
    p.add_argument("--negative", nargs="+", default=[], metavar="WORD")
    p.add_argument("--topn", type=int, default=10, metavar="N")
    p.set_defaults(func=_similar)

    p = _source_parser(actions, "analogy", "a is to b as c is to ? (the words nearest b - a + c)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("c")
    p.add_argument("--topn", type=int, default=5, metavar="N")
    p.set_defaults(func=_analogy)

    p = _source_parser(actions, "export", "write the vectors in the word2vec text/binary format")
    p.add_argument("out", metavar="OUT")
    p.add_argument("--binary", action="store_true", help="the binary format (default: text)")
    p.set_defaults(func=_export)

    p = _source_parser(actions, "plot", "a PNG of the most frequent words in 2-D")
    p.add_argument("--out", required=True, metavar="PNG")
    p.add_argument("--words", type=int, default=300, metavar="N")
    p.add_argument("--method", default="tsne", choices=["tsne", "pca"])
    p.set_defaults(func=_plot)
    add_presets(actions, word2vec.RECIPE)


def _source_parser(actions: argparse._SubParsersAction, name: str, help: str) -> Parser:
    p = actions.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".")
    p.add_argument("source", metavar=SOURCE, help=SOURCE_HELP)
    p.add_argument("--checkpoint", default="best", choices=["best", "last"])
    return p


def _topn(n: int) -> int:
    if n < 1:
        raise UserError(f"--topn {n}: expected an integer >= 1")
    return n


def _print_neighbours(pairs: list[tuple[str, float]]) -> None:
    width = max((len(w) for w, _ in pairs), default=0)
    for w, cos in pairs:
        print(f"{w:<{width}}  {cos:.4f}")


def _eval(args: argparse.Namespace) -> int:
    r = word2vec.evaluate(
        args.source,
        analogies=args.analogies,
        wordsim=args.wordsim,
        simlex=args.simlex,
        restrict_vocab=args.restrict_vocab,
        checkpoint=args.checkpoint,
    )
    print(r.summary())
    return 0


def _similar(args: argparse.Namespace) -> int:
    pairs = word2vec.similar(
        args.source, args.words, args.negative, _topn(args.topn), args.checkpoint
    )
    _print_neighbours(pairs)
    return 0


def _analogy(args: argparse.Namespace) -> int:
    pairs = word2vec.analogy(args.source, args.a, args.b, args.c, _topn(args.topn), args.checkpoint)
    print(f"{args.a} : {args.b} :: {args.c} : ?")
    _print_neighbours(pairs)
    return 0


def _export(args: argparse.Namespace) -> int:
    path = word2vec.export(args.source, args.out, args.binary, args.checkpoint)
    print(f"wrote {path} ({'binary' if args.binary else 'text'} word2vec format)")
    return 0


def _plot(args: argparse.Namespace) -> int:
    if args.words < 2:
        raise UserError(f"--words {args.words}: expected an integer >= 2")
    path = word2vec.plot(args.source, args.out, args.words, args.method, args.checkpoint)
    if path is None:
        from unroll.plotting import MISSING_MATPLOTLIB

        raise UserError(f"plot: {MISSING_MATPLOTLIB}")
    print(f"wrote {path}")
    return 0
