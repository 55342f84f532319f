"""Training word2vec on the engine's loop, as the C tool and gensim train it.

    corpus  -> vocabulary (min_count, max_vocab), ids by sentence    (unroll.data.word_streams)
    a step  =  about batch_size words of whole sentences:
               examples (subsampling, dynamic windows, noise words)  (unroll.data.word_windows)
               SGD on the rows they touch at lr(t)                   (unroll.models.word2vec)
    an epoch = one pass over the corpus; then the scores of the vectors so far

The learning rate decays linearly with the words processed, from `lr` at the first word to
`min_lr` at the last word of the last epoch (gensim's schedule). It is set once a step of
`batch_size` words, 50,000 by default, where gensim sets it once a job of 10,000 words and the
C tool every 10,000 words (on PTB, 10,000 and 50,000 scored the same within the seeds' spread,
and 50,000 trained faster). The step updates the vectors itself; the optimizer given to the
loop only carries the current lr into the log. Every draw is a hash of
(seed, epoch, position) (`word_windows.Stream`), so a resumed run repeats an uninterrupted one
exactly (with one thread; more threads update shared rows without locks, as both tools do).

Word2vec's result is the last vectors (the lr has run down to min_lr), so the checkpoint
called best is the last one; the scores each epoch are for watching, not for choosing. Besides
the engine's files, the run directory gets ``vectors.bin`` (the C tool's binary format, which
gensim reads), ``results.json`` and ``embedding.png``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from unroll.data.word_streams import WordCorpus, build_corpus
from unroll.data.word_windows import NoiseTable, chunk_examples, keep_probabilities
from unroll.engine import distributed
from unroll.engine.device import num_threads, resolve_device
from unroll.engine.loop import fit
from unroll.engine.recipe import Result
from unroll.engine.run import Run, resume_point
from unroll.engine.seed import seed_everything
from unroll.errors import UserError
from unroll.limits import check_bytes
from unroll.models.keyed_vectors import KeyedVectors
from unroll.models.word2vec import Word2Vec
from unroll.recipes.word2vec.config import RECIPE, Word2VecConfig
from unroll.recipes.word2vec.evaluate import EvalFiles, embedding_picture, scores


@dataclass
class Word2VecResult(Result):
    run_dir: Path
    data: str
    vocab_size: int
    corpus_words: int  # words in the vocabulary's counts (what an epoch reads)
    epochs: int
    seconds: float  # training alone (no evaluation)
    words_per_sec: float
    vectors: str
    plot: str | None
    scores: dict[str, Any] = field(default_factory=dict)
    report: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"word2vec on {self.data}: {self.vocab_size} words in the vocabulary, "
            f"{self.corpus_words} in the corpus, {self.epochs} epochs in {self.seconds:.1f} s "
            f"({self.words_per_sec:.0f} words/s)\n{self.report}\nvectors: {self.vectors}\n"
            + (f"plot: {self.plot}\n" if self.plot else "")
            + f"run directory: {self.run_dir}"
        )


def train(
    config: Word2VecConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
    stream: TextIO | None = None,
    corpus: WordCorpus | None = None,
) -> Word2VecResult:
    """Train word vectors into a new run directory (or continue `resume`); the data and the
    evaluation files are checked before the directory is made. `corpus` skips reading it.

    One process only: the update is lock-free SGD on shared rows (the C tool's and gensim's
    scheme, `threads=N` for the cores of one machine); DDP's all-reduce of dense gradients
    does not apply to it, so under torchrun this stops with a one-line error."""
    env = distributed.World.from_env()
    if env.size > 1:  # the same on every rank: rank 0 says it, the others stop quietly
        processes = env.size
        raise (UserError if env.main else distributed.RankZeroError)(
            f"word2vec trains in one process (WORLD_SIZE={processes}: started by torchrun); "
            "use threads=N for the cores of one machine"
        )
    point = None
    if resume is not None:
        point = resume_point(RECIPE, resume, config if config is not None else {})
        config = point.config
    config = Word2VecConfig() if config is None else config
    config.validate()
    device = resolve_device(config.device)
    _check_impl(config.impl, device)
    files = EvalFiles.find(config.analogies, config.wordsim, config.simlex).check()
    if corpus is None:
        corpus = build_corpus(
            config.data,
            min_count=config.min_count,
            max_vocab=config.max_vocab,
            max_sentence_length=config.max_sentence_length,
        )
    # Input and output vectors (V, D) and the output biases, in float32, before any is made.
    V, D = len(corpus.words), config.dim
    check_bytes(4 * V * (2 * D + 1), f"{V} words x dim {D}", "lower dim or max_vocab")
    saved = point.checkpoint if point is not None else None
    if saved is not None and list(saved["words"]) != corpus.words:
        raise UserError(
            f"--resume {resume}: the vocabulary of --data {config.data} is not the run's "
            "(the data changed since the run started)"
        )
    with (
        num_threads(config.threads),
        Run.start(
            RECIPE,
            config,
            device=device,
            out=out,
            resume=point,
            argv=argv,
            quiet=quiet,
            stream=stream,
            extra_meta={"data_source": corpus.name, "corpus_words": len(corpus)},
        ) as run,
    ):
        return _train(run, config, corpus, device, files)


def _check_impl(impl: str, device: torch.device) -> None:
    if impl != "compiled":
        return
    if device.type != "cpu":
        raise UserError(f"impl=compiled: the compiled kernel runs on the CPU, not {device}")
    from unroll.nn.kernels import word2vec_cpu

    if word2vec_cpu.kernel() is None:
        raise UserError(f"impl=compiled: {word2vec_cpu.unavailable_reason()} (use impl=auto)")


def lr_at(config: Word2VecConfig, words_done: int, words_total: int) -> float:
    """gensim's schedule: linear in the words processed, from lr to min_lr."""
    progress = words_done / max(words_total, 1)
    return max(config.min_lr, config.lr - (config.lr - config.min_lr) * progress)


def _train(
    run: Run, config: Word2VecConfig, corpus: WordCorpus, device: torch.device, files: EvalFiles
) -> Word2VecResult:
    seed_everything(config.seed)
    keep = keep_probabilities(corpus.counts, config.sample)  # (V,)
    noise = NoiseTable(corpus.counts, config.ns_exponent)
    model = Word2Vec(
        len(corpus.words),
        config.dim,
        objective=config.objective,
        cbow_mean=config.cbow_mean,
        log_kq=noise.log_expected(config.negative),
        generator=torch.Generator().manual_seed(config.seed),
    ).to(device)
    # The step updates the rows itself; this optimizer only carries the lr into the log.
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    run.restore(model, optimizer)
    n, sentence = len(corpus), corpus.sentence_index  # (N,)
    chunks = corpus.chunks(config.batch_size)
    run.say(
        f"{config.model}/{config.objective} on {corpus.name}: {len(corpus.words)} words in the "
        f"vocabulary, {n} in the corpus, {len(chunks)} steps an epoch"
    )
    if not files.any():
        run.say(f"note: {MISSING_NOTE}")

    def batches(epoch: int):
        for a, b in chunks:
            yield epoch, a, b

    def step(batch: tuple[int, int, int]) -> torch.Tensor:
        epoch, a, b = batch
        lr = lr_at(config, (epoch - 1) * n + a, config.epochs * n)
        optimizer.param_groups[0]["lr"] = lr
        ex = chunk_examples(
            corpus.ids[a:b].long(),
            sentence[a:b],
            a,
            keep=keep,
            noise=noise,
            window=config.window,
            negative=config.negative,
            cbow=config.model == "cbow",
            shrink=config.shrink_windows,
            seed=config.seed,
            epoch=epoch,
            impl=config.impl,
        )
        return model.update(ex.to(device), lr, impl=config.impl, torch_batch=config.torch_batch)

    def vectors() -> KeyedVectors:
        return KeyedVectors(corpus.words, model.in_vectors)

    def evaluate() -> dict[str, float]:
        metrics, _ = scores(vectors(), files, config.restrict_vocab)
        watched = {
            k: v
            for k, v in metrics.items()
            if k in ("analogy_accuracy", "wordsim353_spearman", "simlex999_spearman")
        }
        # The last epoch is the result (module docstring): "best" follows the progress.
        return {**watched, "progress": current["epoch"] / config.epochs}

    current = {"epoch": run.start_epoch}

    def count_epoch(epoch: int) -> None:
        current["epoch"] = epoch

    fit(
        run,
        model,
        optimizer,
        step=step,
        batches=batches,
        num_batches=len(chunks),
        epochs=config.epochs,
        evaluate=evaluate,
        select="progress",
        mode="max",
        on_epoch_start=count_epoch,
        items_per_batch=max(1, round(n / len(chunks))),
        items="words",
        checkpoint_extra=lambda: {"words": corpus.words, "counts": corpus.counts},
        quiet=run.quiet,
        desc=f"word2vec {config.model}",
    )
    return _finish(run, config, corpus, model, files)


MISSING_NOTE = (
    "no analogy or word-pair files found, so no scores (pass analogies=PATH wordsim=PATH "
    "simlex=PATH, or pip install gensim, whose wheel ships them)"
)


def _finish(
    run: Run,
    config: Word2VecConfig,
    corpus: WordCorpus,
    model: Word2Vec,
    files: EvalFiles,
) -> Word2VecResult:
    """The last vectors: vectors.bin, full scores, the picture, results.json (history, time
    and speed: the run's whole record, across resumes)."""
    run.load_best(model)
    record = run.record()
    kv = KeyedVectors(corpus.words, model.in_vectors.detach().cpu())
    path = kv.save_word2vec_format(run.path / "vectors.bin", binary=True)
    metrics, lines = scores(kv, files, config.restrict_vocab)
    png = None
    if config.plot_words:
        png = embedding_picture(
            kv,
            run.path / "embedding.png",
            config.plot_words,
            config.plot_method,
            config.seed,
            title=f"word2vec {config.model} on {corpus.name}",
        )
        if png is None:
            from unroll.plotting import MISSING_MATPLOTLIB

            run.say(f"note: embedding.png skipped: {MISSING_MATPLOTLIB}")
    seconds = record.train_seconds
    result = Word2VecResult(
        run_dir=run.path,
        data=corpus.name,
        vocab_size=len(kv),
        corpus_words=len(corpus),
        epochs=config.epochs,
        seconds=seconds,
        words_per_sec=record.epochs * len(corpus) / seconds if seconds else 0.0,
        vectors=str(path),
        plot=str(png) if png else None,
        scores=metrics,
        report="\n".join(lines),
        history=record.history,
    )
    run.write_results(result)
    return result
