"""Training the LSTM language model of Zaremba et al. 2014, on the engine's loop.

As TensorFlow's ``ptb_word_lm.py`` tutorial:

* SGD at ``lr(e) = lr * lr_decay ** max(e - lr_decay_after, 0)`` (epoch e counted from 1);
* loss = sum over time steps of the batch-mean cross-entropy (`unroll.models.lm.lm_loss`);
* gradients clipped to global norm ``clip``;
* the LSTM state carried (detached) from one BPTT window to the next, zero at each epoch start;
* validation perplexity after every epoch, in the training batch layout; at the end, the test
  perplexity of the best-validation checkpoint with batch size 1 and the state carried through
  the whole test stream — the tutorial's batch-1 x step-1 evaluation, run in long chunks (the
  numbers are the same).

Under torchrun (N processes, `unroll.engine.distributed`) the train and valid streams are laid
out as N·B rows and rank r takes rows r·B .. r·B+B-1 with its own carried state, so the job
sees exactly the batches of one process with batch N·B; validation sums each rank's rows'
NLL over the ranks; the test evaluation (batch 1, one stream) is rank 0's.

The step (`unroll.recipes.lm.steps`) reads no value on the host: losses are summed on the
device and read at progress updates and once per epoch, which is what lets the captured
CUDA-graph step replace it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from unroll.data.batching import batchify, bptt_tensors, epoch_size
from unroll.data.corpora import resolve_corpus, texts_directory
from unroll.data.text import Corpus, Vocabulary
from unroll.engine import distributed
from unroll.engine.device import (
    arithmetic,
    effective_precision,
    matmul_precision,
    num_threads,
    resolve_device,
)
from unroll.engine.loop import FitResult, fit
from unroll.engine.metrics_log import read_metrics
from unroll.engine.model_check import check_memory, check_resumable
from unroll.engine.progress import Progress
from unroll.engine.recipe import Result
from unroll.engine.run import Run, resume_point
from unroll.engine.seed import seed_everything
from unroll.errors import UserError
from unroll.metrics.lm import perplexity
from unroll.models.awd import NTASGD, averaged_weights, load_averages, nt_asgd_should_switch
from unroll.models.lm import LanguageModel
from unroll.recipes.lm.config import RECIPE, LMConfig, lr_at, normalize_data
from unroll.recipes.lm.evaluate import build_model, evaluate_ids, saved_vocabulary
from unroll.recipes.lm.generate import default_sample_length, sample_text
from unroll.recipes.lm.steps import StepFn, build_train_step, uses_graphs


@dataclass
class LMResult(Result):
    run_dir: Path
    epochs: int
    train_ppl: float | None
    valid_ppl: float | None
    best_valid_ppl: float | None
    best_epoch: int | None
    test_ppl: float
    seconds: float  # training (with validation), every epoch on record: across resumes
    device: str
    precision: str
    sample: str
    words_per_sec: float | None = None  # (chars_per_sec at character level)
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        def ppl(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        return (
            f"perplexity: train {ppl(self.train_ppl)}  valid {ppl(self.valid_ppl)}  test "
            f"{ppl(self.test_ppl)} (best epoch {self.best_epoch}, {self.seconds:.0f} s)\n"
            f"run directory: {self.run_dir}\nsample:\n{self.sample}"
        )


def _check_sizes(config: LMConfig, corpus: Corpus) -> None:
    """A `UserError` when a split is too short for its batch layout (before any run dir)."""
    rows = distributed.global_batch(config.batch_size)  # N·B rows under torchrun
    for split, B, T in (
        ("train", rows, config.num_steps),
        ("valid", rows, config.num_steps),
        ("test", config.eval_batch_size, 1),
    ):
        try:
            epoch_size(corpus.split(split).numel(), B, T)
        except UserError as e:
            raise UserError(f"{corpus.name} {split} split: {e}") from None


def _resolve_model_sizes(config: LMConfig, vocab: Vocabulary) -> LMConfig:
    if config.vocab_size is not None and config.vocab_size != len(vocab):
        raise UserError(
            f"vocab_size={config.vocab_size}: the data's vocabulary has {len(vocab)} words "
            f"(set vocab_size=none to take it from the data)"
        )
    emb = config.hidden_size if config.embedding_size is None else config.embedding_size
    return dataclasses.replace(config, vocab_size=len(vocab), embedding_size=emb)


def train(
    config: LMConfig | None = None,
    data: str | list[str] | dict[str, str | list[str]] | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    *,
    quiet: bool = False,
    argv: list[str] | None = None,
    stream: TextIO | None = None,
    sample_tokens: int | None = None,
) -> LMResult | None:
    """Train a language model; returns the results (also written to ``RUN_DIR/results.json``;
    None on the ranks other than 0 of a torchrun job).

    `config`: an `LMConfig` (default: the ``demo`` preset); `data` overrides ``config.data``,
    and may be texts in memory (a list of at least 10 strings, or ``{"train": ..., "valid":
    ..., "test": ...}``: see `unroll.data.corpora.texts_directory`);
    `out`: the run directory (default ``runs/<name>-<timestamp>``); `resume`: a run directory
    to continue from its ``last`` checkpoint (then `config`, if given, may differ from the
    saved one only in ``LMConfig.RESUMABLE`` fields) — the result equals an uninterrupted run.
    Everything is checked before the run directory is created. Progress and per-epoch lines go
    to stderr/`stream` unless `quiet`. The result holds a sample of `sample_tokens` tokens
    (default: 50 words, or 300 characters at char level).
    """
    point = None
    vocab = None
    if resume is not None:
        if config is not None and data is not None:
            config = dataclasses.replace(config, data=str(data))
        point = resume_point(RECIPE, resume, config if config is not None else {})
        config = point.config
        if point.checkpoint is not None:
            last = str(point.run_dir.checkpoint("last"))
            vocab = saved_vocabulary(point.checkpoint, config, last)
    else:
        config = RECIPE.preset(RECIPE.default_preset) if config is None else config
        if isinstance(data, (list, tuple, dict)):  # texts in memory: a corpus directory
            data = str(texts_directory(data))
        if data is not None:
            config = dataclasses.replace(config, data=str(data))
        config = dataclasses.replace(config, data=normalize_data(config.data))
    config.validate()
    device = resolve_device(config.device)
    corpus = resolve_corpus(config.data, config.level, vocab=vocab)
    _check_sizes(config, corpus)
    config = _resolve_model_sizes(config, corpus.vocab)

    def build() -> LanguageModel:
        return build_model(config, len(corpus.vocab))

    # Plain SGD: weights, gradients and one more copy (the optimizer's step).
    check_memory(build, "hidden_size/embedding_size/num_layers", copies=3)
    if point is not None and point.checkpoint is not None:
        check_resumable(build, point.checkpoint, str(point.run_dir.checkpoint("last")))
    with (
        num_threads(config.threads),
        matmul_precision(device, config.precision),
        Run.start(
            RECIPE,
            config,
            device=device,
            out=out,
            resume=point,
            argv=argv,
            quiet=quiet,
            stream=stream,
            extra_meta={
                "precision": effective_precision(device, config.precision),
                "arithmetic": arithmetic(device, config.precision),
            },
        ) as run,
    ):
        return _train(run, config, corpus, device, sample_tokens)


def fit_lm(
    run: Run | None,
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    config: LMConfig,
    X: torch.Tensor,
    Y: torch.Tensor,
    device: torch.device,
    evaluate: Callable[[], dict[str, float]],
    *,
    checkpoint_extra: Callable[[], dict[str, Any]] | None = None,
    epochs: int | None = None,
    train_step: StepFn | None = None,
) -> FitResult:
    """The language model's epochs on the engine's loop: batch i is X[i], Y[i] ([n, B, T],
    staged on the device), the LSTM state is carried across the windows of an epoch (truncated
    BPTT) and zero at its start; the step is the plain or the captured one (`build_train_step`,
    or `train_step` when built already). `benchmarks/ptb_speed.py` times this same function.
    Under torchrun X, Y are this rank's rows (`distributed.rows`)."""
    B, T = config.batch_size, config.num_steps
    rows = distributed.global_batch(B)  # the one-process batch this job equals
    n_steps = X.shape[0]
    if config.max_steps_per_epoch is not None:
        n_steps = min(n_steps, config.max_steps_per_epoch)
    if train_step is None:
        train_step = build_train_step(config, model, optimizer, device)
    carried: dict[str, Any] = {}

    def start_epoch(epoch: int) -> None:
        carried["state"] = model.init_state(B, device)

    def step(i: int) -> torch.Tensor:
        loss, carried["state"] = train_step(X[i], Y[i], carried["state"])
        return loss

    return fit(
        run,
        model,
        optimizer,
        step=step,
        batches=lambda epoch: range(n_steps),
        num_batches=n_steps,
        epochs=config.epochs if epochs is None else epochs,
        evaluate=evaluate,
        select="valid_ppl",
        mode="min",
        lr_at=lambda epoch: lr_at(config, epoch),
        on_epoch_start=start_epoch,
        # Each step's loss is the window's NLL / B: the epoch's NLL is the sum times B (the
        # loss sum is the one-process run's, whose batch is N·B rows).
        train_metrics=lambda total, steps: {
            "train_ppl": perplexity(total * rows, steps * rows * T),
            "tokens": steps * rows * T,
        },
        bar_values=lambda total, steps: {"ppl": torch.exp(total / (steps * T))},
        items_per_batch=B * T,
        items="words" if config.level == "word" else "chars",
        checkpoint_extra=checkpoint_extra,
        quiet=run.quiet if run is not None else True,
        desc="epoch",
    )


def _train(
    run: Run, config: LMConfig, corpus: Corpus, device: torch.device, sample_tokens: int | None
) -> LMResult | None:
    """The run proper, once every input has been checked (see `train`)."""
    seed_everything(config.seed)
    model = build_model(config, len(corpus.vocab)).to(device)
    if config.nonmono:  # NT-ASGD (AWD-LSTM §3): SGD, then averaged SGD
        optimizer = NTASGD(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
    run.restore(model, optimizer)
    run.say(
        f"data: {corpus.name} ({config.level} level, vocabulary {len(corpus.vocab)}, train "
        f"{corpus.train.numel()} / valid {corpus.valid.numel()} / test {corpus.test.numel()} "
        f"tokens); device {device}, {effective_precision(device, config.precision)}"
    )

    B, T = config.batch_size, config.num_steps
    rows = distributed.global_batch(B)  # N·B under torchrun; this rank's are rows(B)
    # Every training batch, staged once on the device: X[i], Y[i] are batch i, [B, T] each.
    train = batchify(corpus.train, rows)[distributed.rows(B)]  # [B, L]
    X, Y = bptt_tensors(train.to(device), T)  # [n, B, T]
    graphs = uses_graphs(config, device)

    # NT-ASGD's record of validation losses: the epochs logged so far (a resume reads them
    # back, so the trigger sees what an uninterrupted run saw), then one per epoch.
    valid_history = [math.log(m["valid_ppl"]) for m in read_metrics(run.path) if "valid_ppl" in m]

    def evaluate() -> dict[str, float]:
        with averaged_weights(model, optimizer):  # ASGD's averages once switched
            nll, tokens = evaluate_ids(
                model,
                corpus.valid,
                rows,
                T,
                chunk_steps=config.eval_num_steps,
                precision=config.precision,
                graphs=graphs,
                rows=distributed.rows(B),
            )
        nll, tokens = distributed.all_sum(nll, tokens)
        ppl = perplexity(nll, tokens)
        valid_history.append(math.log(ppl))
        switching = isinstance(optimizer, NTASGD) and not optimizer.averaging
        if switching and nt_asgd_should_switch(valid_history, config.nonmono):
            optimizer.switch()  # saved with this epoch's checkpoint
            run.say(f"NT-ASGD: averaging from epoch {len(valid_history) + 1} on")
        return {"valid_ppl": ppl}

    fit_lm(
        run,
        model,
        optimizer,
        config,
        X,
        Y,
        device,
        evaluate,
        checkpoint_extra=lambda: {"vocab": corpus.vocab.to_list()},
    )
    if not run.main:
        return None  # the test evaluation is rank 0's: it alone has the checkpoints

    # Test perplexity of the best model (lowest validation perplexity), batch 1 by default.
    best = run.load_best(model)
    if isinstance(optimizer, NTASGD):
        # The best epoch was chosen on the averaged weights: test those (as AWD-LSTM saves).
        load_averages(model, best.get("optimizer"))
    test_bar = Progress(
        corpus.test.numel() // config.eval_batch_size - 1,
        desc="test",
        stream=run.stream,
        enabled=not run.quiet,
    )
    test_nll, test_tokens = evaluate_ids(
        model,
        corpus.test,
        config.eval_batch_size,
        1,
        chunk_steps=config.eval_num_steps,
        precision=config.precision,
        progress=test_bar,
        graphs=graphs,
    )
    test_bar.close()

    generator = torch.Generator().manual_seed(config.seed)
    tokens = default_sample_length(config.level) if sample_tokens is None else sample_tokens
    text = sample_text(model, corpus.vocab, config.level, "", tokens, None, 1.0, None, generator)
    # The whole record: a resumed run reports every epoch, its time summed over the segments.
    record = run.record()
    last = record.last
    result = LMResult(
        run_dir=run.path,
        epochs=config.epochs,
        train_ppl=last.get("train_ppl"),
        valid_ppl=last.get("valid_ppl"),
        best_valid_ppl=best.get("best"),
        best_epoch=best.get("best_epoch"),
        test_ppl=perplexity(test_nll, test_tokens),
        seconds=record.seconds,
        device=str(device),
        precision=effective_precision(device, config.precision),
        sample=text,
        words_per_sec=record.per_sec("words" if config.level == "word" else "chars"),
        history=record.history,
    )
    run.write_results(result)
    return result
