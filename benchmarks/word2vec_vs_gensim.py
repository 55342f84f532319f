"""word2vec: unroll's trainer vs gensim, same corpus, same settings, one process.

    python benchmarks/word2vec_vs_gensim.py                       # PTB train, 2 threads, seed 1
    python benchmarks/word2vec_vs_gensim.py --threads 1 --seeds 1 2 3
    python benchmarks/word2vec_vs_gensim.py --data text8          # when text8 is there

Both train skip-gram with negative sampling on the same sentences (read once by
`unroll.data.word_streams`, handed to gensim as token lists), with the issue's settings: dim
100, window 5, negative 5, sample 1e-3, min_count 5, 5 epochs, lr 0.025 -> 0.0001, dynamic
windows; gensim with ``workers=THREADS``, unroll with ``threads=THREADS``. For each seed the
two train one after the other (gensim first, then unroll; ``--unroll-first`` swaps them).

Speed: words/s = (the corpus's in-vocabulary words x epochs) / training seconds — the same
numerator for both; gensim's clock covers ``Word2Vec.train`` (its vocabulary is built before),
unroll's the epochs' training time (its per-epoch scoring and the writing of the run directory
are outside). Quality, by the same code for both (`unroll.metrics.embeddings`, which the tests
hold equal to gensim's own evaluation): accuracy on questions-words.txt restricted to the
``--restrict-vocab`` most frequent words (default 30,000, the C tool's N), WordSim-353 and
SimLex-999 Spearman. The evaluation files come from gensim's wheel.

Prints one JSON line: per side the mean over the seeds and the per-seed figures, the ratios
and differences the issue's targets are about, the load average before and after, and the
machine. Needs gensim (``pip install gensim``; it is a test/benchmark-only dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unroll.data.word_streams import build_corpus, sentences  # noqa: E402
from unroll.engine.device import device_name  # noqa: E402
from unroll.metrics.embeddings import (  # noqa: E402
    ANALOGIES,
    SIMLEX,
    WORDSIM,
    analogy_accuracy,
    find_eval_file,
    word_pair_correlation,
)
from unroll.nn.kernels import word2vec_cpu  # noqa: E402
from unroll.recipes.word2vec import Word2VecConfig, train  # noqa: E402

SETTINGS = dict(dim=100, window=5, negative=5, sample=1e-3, min_count=5, epochs=5)


def quality(words, vectors, restrict_vocab: int) -> dict:
    files = {n: find_eval_file(n) for n in (ANALOGIES, WORDSIM, SIMLEX)}
    a = analogy_accuracy(words, vectors, files[ANALOGIES], restrict_vocab)
    out = {
        "analogy_accuracy": a.accuracy,
        "analogy_correct": a.total.correct,
        "analogy_answered": a.total.answered,
        "analogy_semantic": a.semantic.accuracy,
        "analogy_syntactic": a.syntactic.accuracy,
    }
    for key, name in (("wordsim353", WORDSIM), ("simlex999", SIMLEX)):
        p = word_pair_correlation(words, vectors, files[name], restrict_vocab)
        out[f"{key}_spearman"] = p.spearman
        out[f"{key}_pairs"] = p.pairs
    return out


def run_gensim(token_lists, n_words: int, threads: int, seed: int, restrict: int) -> dict:
    from gensim.models import Word2Vec

    s = SETTINGS
    model = Word2Vec(
        vector_size=s["dim"],
        window=s["window"],
        negative=s["negative"],
        hs=0,
        sample=s["sample"],
        min_count=s["min_count"],
        sg=1,
        alpha=0.025,
        min_alpha=0.0001,
        workers=threads,
        seed=seed,
    )
    model.build_vocab(token_lists)
    start = time.perf_counter()
    model.train(token_lists, total_examples=len(token_lists), epochs=s["epochs"])
    seconds = time.perf_counter() - start
    words = list(model.wv.index_to_key)
    vectors = torch.from_numpy(model.wv.vectors)
    return {
        "seconds": seconds,
        "words_per_sec": n_words * s["epochs"] / seconds,
        "vocab": len(words),
        **quality(words, vectors, restrict),
    }


def run_unroll(data: str, corpus, threads: int, seed: int, restrict: int, impl: str) -> dict:
    config = Word2VecConfig(
        data=data, threads=threads, seed=seed, impl=impl, plot_words=0, **SETTINGS
    )
    with tempfile.TemporaryDirectory() as tmp:
        r = train(config, out=Path(tmp) / "run", quiet=True, corpus=corpus)
        from unroll.recipes.word2vec import load

        kv = load(Path(tmp) / "run")
    return {
        "seconds": r.seconds,
        "words_per_sec": len(corpus) * SETTINGS["epochs"] / r.seconds,
        "vocab": len(kv),
        **quality(kv.words, kv.vectors, restrict),
    }


def summarize(runs: list[dict]) -> dict:
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {
        **{k: mean(r[k] for r in runs) for k in keys},
        "per_seed": [
            {k: r[k] for k in ("words_per_sec", "analogy_accuracy", "wordsim353_spearman")}
            for r in runs
        ],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="ptb", help="ptb (train file), text8, or a text file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1])
    ap.add_argument("--restrict-vocab", type=int, default=30_000)
    ap.add_argument("--impl", default="auto", choices=["auto", "compiled", "torch"])
    ap.add_argument("--unroll-first", action="store_true")
    args = ap.parse_args()
    for name in (ANALOGIES, WORDSIM, SIMLEX):
        if find_eval_file(name) is None:
            sys.exit(f"{name} not found: pip install gensim (its wheel ships it)")
    load_before = os.getloadavg()
    corpus = build_corpus(args.data, min_count=SETTINGS["min_count"])
    _, read = sentences(args.data)
    token_lists = list(read())
    torch.set_num_threads(args.threads)
    ours, theirs = [], []
    for seed in args.seeds:
        for side in ["unroll", "gensim"] if args.unroll_first else ["gensim", "unroll"]:
            if side == "gensim":
                theirs.append(
                    run_gensim(token_lists, len(corpus), args.threads, seed, args.restrict_vocab)
                )
            else:
                ours.append(
                    run_unroll(
                        args.data, corpus, args.threads, seed, args.restrict_vocab, args.impl
                    )
                )
    u, g = summarize(ours), summarize(theirs)
    import gensim

    print(
        json.dumps(
            {
                "benchmark": "word2vec_vs_gensim",
                "data": corpus.name,
                "corpus_words": len(corpus),
                "settings": {
                    **SETTINGS,
                    "model": "skipgram",
                    "objective": "neg",
                    "lr": 0.025,
                    "min_lr": 0.0001,
                },
                "threads": args.threads,
                "seeds": args.seeds,
                "restrict_vocab": args.restrict_vocab,
                "unroll": u,
                "gensim": g,
                "speed_ratio": u["words_per_sec"] / g["words_per_sec"],
                "analogy_diff_points": 100 * (u["analogy_accuracy"] - g["analogy_accuracy"]),
                "wordsim353_diff": u["wordsim353_spearman"] - g["wordsim353_spearman"],
                "unroll_update": "compiled"
                if word2vec_cpu.kernel() is not None and args.impl != "torch"
                else "torch",
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
                "machine": f"{device_name('cpu')}, {os.cpu_count()} cores",
                "python": platform.python_version(),
                "torch": torch.__version__,
                "gensim_version": gensim.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
