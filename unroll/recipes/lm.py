"""Language modelling: train, evaluate and sample the LSTM language model of Zaremba et al. 2014.

One explicit training loop, as TensorFlow's ``ptb_word_lm.py`` tutorial:

* SGD at ``lr(e) = learning_rate * lr_decay ** max(e - max_epoch, 0)`` (epoch e counted from 1);
* loss = sum over time steps of the batch-mean cross-entropy (`unroll.models.lm.lm_loss`);
* gradients clipped to global norm ``max_grad_norm``;
* the LSTM state carried (detached) from one BPTT window to the next, zero at each epoch start;
* validation perplexity after every epoch, in the training batch layout; at the end, the test
  perplexity of the best-validation checkpoint with batch size 1 and the state carried through
  the whole test stream — the tutorial's batch-1 x step-1 evaluation, run in long chunks (the
  numbers are the same).

The training step (`make_train_step`) is one function doing forward, loss, backward, clipping
and the optimizer step on fixed-shape device tensors, with no host synchronisation: losses are
summed on the device and read only at progress updates and at the end of an epoch. That is
the unit a CUDA-graph fast path captures (``fast="auto"`` on CUDA; see `build_train_step`).

Python API (the CLI calls these): `train`, `evaluate`, `generate`, `get_preset`,
`format_presets`. CLI: ``unroll train|eval|generate|presets`` (`register`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import sys
import time
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TextIO

import torch

from unroll.config import apply_overrides, config_from_dict, field_types, parse_override_tokens
from unroll.data.batching import batchify, bptt_batches, bptt_tensors, epoch_size
from unroll.data.text import EOS, Corpus, Vocabulary, resolve_corpus, tokenize_prompt
from unroll.errors import UserError
from unroll.models.lm import LanguageModel, State, detach_state, lm_loss, loss_and_grads
from unroll.recipes.lm_graphs import GraphedTrainStep, graphed_eval_nll
from unroll.recipes.lm_presets import DEFAULT_PRESET, PRESETS
from unroll.models.sampling import detokenize, sample
from unroll.engine import (
    MetricsLogger,
    Progress,
    RunDir,
    get_rng_state,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from unroll.engine.checkpoint import find_checkpoint
from unroll.engine.device import num_threads
from unroll.engine.metrics import read_metrics
from unroll.engine.rundir import default_run_dir

KIND = "unroll.lm"


# --------------------------------------------------------------------------------------------
# Config and presets
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class LMConfig:
    """Everything a language-model run needs. Defaults are Zaremba's "Small" on the embedded
    corpus; presets (`get_preset`) set the rest. Names follow TensorFlow's ``ptb_word_lm.py``."""

    name: str = "lm"  # run-directory prefix (a preset sets its own name)
    data: str | None = None  # None/"pydoc": embedded corpus; "ptb": standard PTB; or a directory
    level: Literal["word", "char"] = "word"
    vocab_size: int | None = None  # None: from the data; a number is checked against it
    embedding_size: int | None = None  # None: hidden_size
    # -- the Zaremba et al. 2014 table --
    init_scale: float = 0.1  # all parameters uniform in [-init_scale, init_scale]
    learning_rate: float = 1.0
    max_grad_norm: float = 5.0  # clip gradients to this global norm
    num_layers: int = 2
    num_steps: int = 20  # T: BPTT window length
    hidden_size: int = 200
    max_epoch: int = 4  # epochs at the full learning rate
    max_max_epoch: int = 13  # epochs in all
    keep_prob: float = 1.0  # dropout keeps this fraction (dropout = 1 - keep_prob)
    lr_decay: float = 0.5  # per epoch after max_epoch
    batch_size: int = 20  # B
    # -- beyond the table --
    tie_weights: bool = False  # share embedding and softmax weights (needs embedding == hidden)
    eval_batch_size: int = 1  # test evaluation: 1 = the state carried through the whole stream
    eval_num_steps: int = 400  # evaluation chunk length, at most (the perplexity is the same)
    max_steps_per_epoch: int | None = None  # cap the training batches per epoch (smoke tests)
    seed: int = 0
    device: str = "auto"  # auto (CUDA when present), cpu, cuda, cuda:N
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast; weights and loss stay fp32
    fast: Literal["auto", "off"] = "auto"  # auto: the CUDA-graph fast path on CUDA
    threads: int = 0  # torch.set_num_threads while running; 0 = leave torch's default


# Fields that may change when a run is resumed (the rest must match the checkpoint).
RESUMABLE = ("max_max_epoch", "device", "fast", "threads", "data", "eval_num_steps")


def get_preset(name: str) -> LMConfig:
    """The `LMConfig` of a preset (see ``unroll presets``)."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return dataclasses.replace(LMConfig(), name=name, **PRESETS[name])


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "-" if v is None else str(v)


def format_presets() -> str:
    """A table: one row per config field, one column per preset."""
    configs = {name: get_preset(name) for name in PRESETS}
    fields = [f.name for f in dataclasses.fields(LMConfig) if f.name != "name"]
    rows = [["field", *configs]]
    for f in fields:
        row = [f]
        for cfg in configs.values():
            v = getattr(cfg, f)
            if f == "data" and v is None:
                v = "pydoc"
            elif f == "vocab_size" and v is None:
                v = "(data)"
            elif f == "embedding_size" and v is None:
                v = "(hidden)"
            elif f == "max_steps_per_epoch" and v is None:
                v = "(all)"
            row.append(_fmt_value(v))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def validate_config(config: LMConfig) -> None:
    """A `UserError` naming the first field whose value cannot work."""

    def need(ok: bool, field: str, what: str) -> None:
        if not ok:
            raise UserError(f"{field}={getattr(config, field)!r}: expected {what}")

    for f in ("num_layers", "num_steps", "hidden_size", "batch_size", "eval_batch_size"):
        need(getattr(config, f) >= 1, f, "an integer >= 1")
    need(config.eval_num_steps >= 1, "eval_num_steps", "an integer >= 1")
    need(config.threads >= 0, "threads", "an integer >= 0 (0 = torch's default)")
    need(config.max_epoch >= 0, "max_epoch", "an integer >= 0")
    need(config.max_max_epoch >= 1, "max_max_epoch", "an integer >= 1")
    for f in ("init_scale", "learning_rate", "max_grad_norm", "lr_decay"):
        need(math.isfinite(getattr(config, f)) and getattr(config, f) > 0, f, "a number > 0")
    need(0.0 < config.keep_prob <= 1.0, "keep_prob", "a number in (0, 1]")
    need(config.vocab_size is None or config.vocab_size >= 1, "vocab_size", "None or >= 1")
    need(
        config.embedding_size is None or config.embedding_size >= 1,
        "embedding_size",
        "None or an integer >= 1",
    )
    need(
        config.max_steps_per_epoch is None or config.max_steps_per_epoch >= 1,
        "max_steps_per_epoch",
        "None or an integer >= 1",
    )
    need(config.level in ("word", "char"), "level", "word or char")
    need(config.precision in ("fp32", "bf16"), "precision", "fp32 or bf16")
    need(config.fast in ("auto", "off"), "fast", "auto or off")
    emb = config.hidden_size if config.embedding_size is None else config.embedding_size
    if config.tie_weights and emb != config.hidden_size:
        raise UserError(
            f"tie_weights=True needs embedding_size == hidden_size, got {emb} and "
            f"{config.hidden_size}"
        )


def lr_at(config: LMConfig, epoch: int) -> float:
    """The learning rate of epoch `epoch` (1-based): decayed after ``max_epoch`` epochs."""
    return config.learning_rate * config.lr_decay ** max(epoch - config.max_epoch, 0)


def _normalize_data(data: str | None) -> str | None:
    """A data directory as an absolute path, so a run can be resumed from anywhere."""
    if data is None or data in ("pydoc", "embedded"):
        return None
    if data == "ptb":
        return data
    path = Path(data)
    return str(path.resolve()) if path.is_dir() else data


# --------------------------------------------------------------------------------------------
# Model, step, evaluation
# --------------------------------------------------------------------------------------------
def build_model(config: LMConfig, vocab_size: int) -> LanguageModel:
    return LanguageModel(
        vocab_size,
        config.hidden_size,
        config.num_layers,
        embedding_size=config.embedding_size,
        dropout=1.0 - config.keep_prob,
        init_scale=config.init_scale,
        tie_weights=config.tie_weights,
    )


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate between epochs; an lr held as a tensor (as a captured CUDA-graph
    step needs) is filled in place, so the captured step sees the new value."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


StepFn = Callable[[torch.Tensor, torch.Tensor, State], tuple[torch.Tensor, State]]


def make_train_step(
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    max_grad_norm: float,
    device: torch.device,
    precision: str = "fp32",
) -> StepFn:
    """One training step: ``step(x [B, T], y [B, T], state) -> (loss, next state)``.

    Forward, loss, backward, clipping and the optimizer step, with no host synchronisation and
    no Python branching on tensor values: `loss` is a 0-dim device tensor (the caller adds it
    to a device-side sum) and the returned state is detached (truncated BPTT).
    """
    params = [p for p in model.parameters() if p.requires_grad]

    def step(x: torch.Tensor, y: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        optimizer.zero_grad(set_to_none=True)
        loss, state = loss_and_grads(
            model, params, x, y, state, max_grad_norm, lambda: _autocast(device, precision)
        )
        optimizer.step()
        return loss, detach_state(state)

    return step


def build_train_step(
    config: LMConfig,
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> StepFn:
    """The one switch between the plain step and the fast path.

    ``fast="auto"`` on CUDA: the step captured once in a CUDA graph and replayed
    (`unroll.recipes.lm_graphs.GraphedTrainStep`); on the CPU, or with ``fast="off"``, the
    plain step. Both have the same signature and give the same parameters.
    """
    if uses_graphs(config, device):
        return GraphedTrainStep(
            model,
            optimizer,
            config.max_grad_norm,
            config.batch_size,
            config.num_steps,
            lambda: _autocast(device, config.precision),
            device,
        )
    return make_train_step(model, optimizer, config.max_grad_norm, device, config.precision)


def train_epoch(
    model: LanguageModel,
    step: StepFn,
    X: torch.Tensor,
    Y: torch.Tensor,
    n_steps: int,
    bar: Progress | None = None,
) -> torch.Tensor:
    """One epoch over the staged batches X[i], Y[i] ([n, B, T] each) with the state carried,
    zero at the start; returns the device-side sum of the step losses (no sync per step: the
    loss is read only when the progress bar draws)."""
    model.train()
    _, B, T = X.shape
    state = model.init_state(B, X.device)
    loss_sum = torch.zeros((), device=X.device, dtype=torch.float64)
    t0 = time.perf_counter()
    for i in range(n_steps):
        loss, state = step(X[i], Y[i], state)
        loss_sum += loss
        if bar is None:
            continue
        if bar.due() or i + 1 == n_steps:  # only here is the loss read (a sync)
            wps = (i + 1) * B * T / max(time.perf_counter() - t0, 1e-9)
            bar.update(1, ppl=torch.exp(loss_sum / ((i + 1) * T)), wps=round(wps))
        else:
            bar.update(1)
    return loss_sum


def uses_graphs(config: LMConfig, device: torch.device) -> bool:
    """Whether the CUDA-graph fast path runs: ``fast="auto"`` on a CUDA device."""
    return config.fast == "auto" and device.type == "cuda"


@torch.no_grad()
def evaluate_ids(
    model: LanguageModel,
    ids: torch.Tensor,
    batch_size: int,
    num_steps: int,
    *,
    chunk_steps: int | None = None,
    device: torch.device | None = None,
    precision: str = "fp32",
    progress: Progress | None = None,
    graphs: bool = False,
) -> tuple[float, int]:
    """Total NLL (nats) and number of predicted tokens over `ids`, in the tutorial's layout.

    The stream is laid out as `batch_size` rows (`batchify`) and read in ``epoch_size`` windows
    of `num_steps` with the state carried, so the targets are exactly those the tutorial's
    loop predicts; ``num_steps=1`` predicts every token of each row but the first. The windows
    are run `chunk_steps` columns at a time (default: all at once) — the same computation in
    fewer, longer forward passes. With `graphs` (CUDA only) the full chunks replay one
    captured forward (`graphed_eval_nll`); the remainder runs eagerly.
    """
    device = next(model.parameters()).device if device is None else device
    data = batchify(ids, batch_size)  # [B, L]
    n = epoch_size(ids.numel(), batch_size, num_steps)
    covered = n * num_steps  # targets per row
    data = data[:, : covered + 1].to(device)  # [B, covered + 1]
    chunk = min(chunk_steps or covered, covered)
    # Keep a chunk's logits [B, chunk, V] to about 2^22 numbers (16 MB in fp32).
    chunk = max(1, min(chunk, (1 << 22) // (batch_size * model.vocab_size)))
    was_training = model.training
    model.eval()
    state = model.init_state(batch_size, device)
    nll = torch.zeros((), device=device, dtype=torch.float64)
    try:
        if graphs and device.type == "cuda" and covered // chunk >= 2:
            nll, state, done = graphed_eval_nll(
                model, data, chunk, state, lambda: _autocast(device, precision)
            )
            data = data[:, done:]  # the remainder, if any
            if progress is not None:
                progress.update(done)
        for x, y in bptt_batches(data, chunk, include_remainder=True):
            with _autocast(device, precision):
                logits, state = model(x, state)  # [B, t, V]
            nll += lm_loss(logits, y) * batch_size
            if progress is not None:
                progress.update(x.shape[1])
    finally:
        model.train(was_training)
    return float(nll), covered * batch_size


def perplexity(nll: float, tokens: int) -> float:
    """exp(total NLL / tokens); inf when the NLL overflows."""
    try:
        return math.exp(nll / tokens)
    except OverflowError:
        return math.inf


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------
def _check_sizes(config: LMConfig, corpus: Corpus) -> None:
    """A `UserError` when a split is too short for its batch layout (before any run dir)."""
    for split, B, T in (
        ("train", config.batch_size, config.num_steps),
        ("valid", config.batch_size, config.num_steps),
        ("test", config.eval_batch_size, 1),
    ):
        ids = corpus.split(split)
        try:
            epoch_size(ids.numel(), B, T)
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


def _check_resume_config(saved: LMConfig, wanted: LMConfig | None, source: str) -> LMConfig:
    if wanted is None:
        return saved
    # Sizes left to be resolved from the data, and no data named, mean the saved ones.
    wanted = dataclasses.replace(
        wanted,
        data=saved.data if wanted.data is None else wanted.data,
        vocab_size=saved.vocab_size if wanted.vocab_size is None else wanted.vocab_size,
        embedding_size=(
            saved.embedding_size if wanted.embedding_size is None else wanted.embedding_size
        ),
    )
    changed = [
        f.name
        for f in dataclasses.fields(LMConfig)
        if getattr(saved, f.name) != getattr(wanted, f.name) and f.name not in RESUMABLE
    ]
    if changed:
        raise UserError(
            f"--resume {source}: cannot change {', '.join(changed)} when resuming "
            f"(only {', '.join(RESUMABLE)} may change)"
        )
    return wanted


def _say(quiet: bool, stream: TextIO | None, text: str) -> None:
    if not quiet:
        print(text, file=stream if stream is not None else sys.stdout, flush=True)


def train(
    config: LMConfig | None = None,
    data: str | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    *,
    quiet: bool = False,
    argv: list[str] | None = None,
    stream: TextIO | None = None,
    sample_tokens: int | None = None,
) -> dict[str, Any]:
    """Train a language model; returns the results (also written to ``RUN_DIR/results.json``).

    `config`: an `LMConfig` (default: the ``demo`` preset); `data` overrides ``config.data``;
    `out`: the run directory (default ``runs/<name>-<timestamp>``); `resume`: a run directory
    to continue from its ``last`` checkpoint (then `config`, if given, may differ from the
    saved one only in `RESUMABLE` fields) — the result equals an uninterrupted run.
    Everything is checked before the run directory is created. Progress and per-epoch lines go
    to stderr/`stream` unless `quiet`. The result holds a sample of `sample_tokens` tokens
    (default: 50 words, or 300 characters at char level).
    """
    ckpt = None
    vocab = None
    if resume is not None:
        if out is not None:
            raise UserError("--out and --resume: a resumed run continues in its own directory")
        run_dir = RunDir.open(resume)
        last = run_dir.checkpoint("last")
        if not last.is_file():
            raise UserError(f"--resume {resume}: no checkpoints/last.pt (no epoch finished)")
        ckpt = load_checkpoint(last, kind=KIND)
        saved = config_from_dict(LMConfig, ckpt["config"], source=str(last))
        config = _check_resume_config(saved, config, str(resume))
        vocab = Vocabulary.from_list(ckpt["vocab"])
    elif config is None:
        config = get_preset(DEFAULT_PRESET)
    if data is not None:
        config = dataclasses.replace(config, data=str(data))
    config = dataclasses.replace(config, data=_normalize_data(config.data))
    validate_config(config)
    device = resolve_device(config.device)
    corpus = resolve_corpus(config.data, config.level, vocab=vocab)
    _check_sizes(config, corpus)
    config = _resolve_model_sizes(config, corpus.vocab)
    with num_threads(config.threads):
        return _fit(
            config,
            corpus,
            device,
            ckpt,
            out=out,
            resume=resume,
            quiet=quiet,
            argv=argv,
            stream=stream,
            sample_tokens=sample_tokens,
        )


def _fit(
    config: LMConfig,
    corpus: Corpus,
    device: torch.device,
    ckpt: dict[str, Any] | None,
    *,
    out: str | Path | None,
    resume: str | Path | None,
    quiet: bool,
    argv: list[str] | None,
    stream: TextIO | None,
    sample_tokens: int | None,
) -> dict[str, Any]:
    """The run proper, once every input has been checked (see `train`)."""
    seed_everything(config.seed)
    model = build_model(config, len(corpus.vocab)).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.learning_rate)
    start_epoch, best_ppl, best_epoch = 0, math.inf, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        if ckpt.get("optimizer") is not None:
            optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        start_epoch = int(ckpt["epoch"])
        best_ppl, best_epoch = float(ckpt["best_valid_ppl"]), int(ckpt["best_epoch"])

    # All input is valid: only now does the run directory appear.
    if resume is not None:
        run = RunDir(Path(resume))
        run.record_command(argv)
    else:
        out = default_run_dir(config.name) if out is None else out
        run = RunDir.create(
            out, kind=KIND, config=config, seed=config.seed, device=device, argv=argv
        )
    log = stream if stream is not None else sys.stderr
    _say(quiet, log, f"run directory: {run.path}")
    _say(
        quiet,
        log,
        f"data: {corpus.name} ({config.level} level, vocabulary {len(corpus.vocab)}, "
        f"train {corpus.train.numel()} / valid {corpus.valid.numel()} / test "
        f"{corpus.test.numel()} tokens); device {device}",
    )

    B, T = config.batch_size, config.num_steps
    # Every training batch, staged once on the device: X[i], Y[i] are batch i, [B, T] each.
    X, Y = bptt_tensors(batchify(corpus.train, B).to(device), T)  # [n, B, T]
    n_steps = X.shape[0]
    if config.max_steps_per_epoch is not None:
        n_steps = min(n_steps, config.max_steps_per_epoch)
    step = build_train_step(config, model, optimizer, device)

    t_start = time.perf_counter()
    with MetricsLogger(run.path, truncate_after=start_epoch if ckpt is not None else None) as ml:
        for epoch in range(start_epoch + 1, config.max_max_epoch + 1):
            lr = lr_at(config, epoch)
            set_lr(optimizer, lr)
            bar = Progress(
                n_steps,
                desc=f"epoch {epoch}/{config.max_max_epoch}",
                stream=log,
                enabled=not quiet,
            )
            t0 = time.perf_counter()
            loss_sum = train_epoch(model, step, X, Y, n_steps, bar)
            train_nll = float(loss_sum) * B  # one sync per epoch
            seconds = time.perf_counter() - t0
            bar.close()
            train_ppl = perplexity(train_nll, n_steps * B * T)
            if not math.isfinite(train_nll):
                raise UserError(
                    f"epoch {epoch}: the training loss is {train_nll} (diverged); "
                    f"try a lower learning_rate or max_grad_norm"
                )
            valid_nll, valid_tokens = evaluate_ids(
                model,
                corpus.valid,
                B,
                T,
                chunk_steps=config.eval_num_steps,
                precision=config.precision,
                graphs=uses_graphs(config, device),
            )
            valid_ppl = perplexity(valid_nll, valid_tokens)
            is_best = valid_ppl < best_ppl or best_epoch == 0  # (even an inf perplexity)
            if is_best:
                best_ppl, best_epoch = valid_ppl, epoch
            record = ml.log(
                epoch=epoch,
                lr=lr,
                train_ppl=train_ppl,
                valid_ppl=valid_ppl,
                tokens=n_steps * B * T,
                words_per_sec=n_steps * B * T / seconds,
                seconds=seconds,
            )
            payload = {
                "kind": KIND,
                "config": dataclasses.asdict(config),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": get_rng_state(),
                "epoch": epoch,
                "best_valid_ppl": best_ppl,
                "best_epoch": best_epoch,
                "vocab": corpus.vocab.to_list(),
            }
            save_checkpoint(run.checkpoint("last"), payload)
            if is_best:
                save_checkpoint(run.checkpoint("best"), payload)
            _say(
                quiet,
                log,
                f"epoch {epoch}: lr {lr:.4g}  train ppl {train_ppl:.2f}  valid ppl "
                f"{valid_ppl:.2f}  ({record['words_per_sec']:.0f} words/s, {seconds:.1f} s)",
            )

        # Test perplexity of the best model (lowest validation perplexity), batch 1 by default.
        best = load_checkpoint(run.checkpoint("best"), kind=KIND, map_location=device)
        model.load_state_dict(best["model"])
        test_bar = Progress(
            (corpus.test.numel() // config.eval_batch_size) - 1,
            desc="test",
            stream=log,
            enabled=not quiet,
        )
        test_nll, test_tokens = evaluate_ids(
            model,
            corpus.test,
            config.eval_batch_size,
            1,
            chunk_steps=config.eval_num_steps,
            precision=config.precision,
            progress=test_bar,
            graphs=uses_graphs(config, device),
        )
        test_bar.close()
        test_ppl = perplexity(test_nll, test_tokens)  # in results.json, not metrics.jsonl

    generator = torch.Generator().manual_seed(config.seed)
    if sample_tokens is None:
        sample_tokens = default_sample_length(config.level)
    text = _sample_text(
        model, corpus.vocab, config.level, "", sample_tokens, None, 1.0, None, generator
    )
    # (A resumed run that had already finished trains no epoch: report its last one.)
    epochs = [m for m in read_metrics(run.path) if "train_ppl" in m]
    last_metrics = epochs[-1] if epochs else {}
    result = {
        "run_dir": str(run.path),
        "epochs": config.max_max_epoch,
        "train_ppl": last_metrics.get("train_ppl"),
        "valid_ppl": last_metrics.get("valid_ppl"),
        "best_valid_ppl": best_ppl,
        "best_epoch": best_epoch,
        "test_ppl": test_ppl,
        "seconds": time.perf_counter() - t_start,
        "device": str(device),
        "sample": text,
    }
    run.write_json("results.json", result)
    return result


# --------------------------------------------------------------------------------------------
# Loading a checkpoint: evaluation and generation
# --------------------------------------------------------------------------------------------
def load_model(
    checkpoint: str | Path, device: str | torch.device = "auto"
) -> tuple[LanguageModel, LMConfig, Vocabulary, torch.device]:
    """A trained model from a checkpoint file or a run directory (its ``best`` checkpoint)."""
    path = find_checkpoint(checkpoint, "best")
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    ckpt = load_checkpoint(path, kind=KIND)
    config = config_from_dict(LMConfig, ckpt["config"], source=str(path))
    vocab = Vocabulary.from_list(ckpt["vocab"])
    model = build_model(config, len(vocab))
    model.load_state_dict(ckpt["model"])
    model.to(dev).eval()
    return model, config, vocab, dev


def evaluate(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "test",
    batch_size: int | None = None,
    device: str = "auto",
    *,
    quiet: bool = True,
    stream: TextIO | None = None,
) -> dict[str, Any]:
    """Perplexity of a checkpoint on a split (default: the data it was trained on, test split,
    batch size ``eval_batch_size`` — 1 — with the state carried through the whole stream)."""
    if split not in ("train", "valid", "test"):
        raise UserError(f"--split {split!r}: expected train, valid or test")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: expected an integer >= 1")
    model, config, vocab, dev = load_model(checkpoint, device)
    corpus = resolve_corpus(config.data if data is None else data, config.level, vocab=vocab)
    ids = corpus.split(split)
    B = config.eval_batch_size if batch_size is None else batch_size
    try:
        epoch_size(ids.numel(), B, 1)
    except UserError as e:
        raise UserError(f"{corpus.name} {split} split: {e}") from None
    bar = Progress(ids.numel() // B - 1, desc=split, stream=stream, enabled=not quiet)
    with num_threads(config.threads):
        nll, tokens = evaluate_ids(
            model,
            ids,
            B,
            1,
            chunk_steps=config.eval_num_steps,
            device=dev,
            precision=config.precision,
            progress=bar,
        )
    bar.close()
    return {
        "checkpoint": str(find_checkpoint(checkpoint, "best")),
        "data": corpus.name,
        "split": split,
        "batch_size": B,
        "tokens": tokens,
        "nll": nll,
        "perplexity": perplexity(nll, tokens),
    }


def _sample_text(
    model: LanguageModel,
    vocab: Vocabulary,
    level: str,
    prompt: str,
    tokens: int | None,
    sentences: int | None,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator,
    data: str | None = None,
) -> str:
    # Written as the training corpus was (the embedded corpus is lower-cased); no final <eos>.
    prompt_tokens = tokenize_prompt(prompt, level, data) if prompt.strip() else []
    ids, unknown = vocab.encode_prompt(prompt_tokens)
    if unknown:
        shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        warnings.warn(
            f"prompt words not in the vocabulary, read as <unk>: {shown}",
            UserWarning,
            stacklevel=3,
        )
    eos = vocab.id(EOS) if EOS in vocab else None
    start = torch.tensor([eos], dtype=torch.long) if eos is not None else ids[:1]
    context = torch.cat([start, ids]) if eos is not None else ids
    if context.numel() == 0:
        raise UserError("--prompt: empty, and the vocabulary has no <eos> to start from")
    limit = tokens if tokens is not None else 1000 * (sentences or 1)
    out = sample(
        model,
        context,
        max_tokens=limit,
        stop_id=eos if sentences is not None else None,
        stop_count=sentences,
        temperature=temperature,
        top_k=top_k,
        generator=generator,
    )
    words = prompt_tokens + vocab.decode(out)
    text = detokenize(words, level)
    return text


def default_sample_length(level: str) -> int:
    """Tokens in a sample when none is asked for: 50 words, or 300 characters."""
    return 300 if level == "char" else 50


def generate(
    checkpoint: str | Path,
    prompt: str = "",
    words: int | None = None,
    sentences: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    device: str = "auto",
) -> str:
    """Text sampled from a checkpoint: the prompt, continued by `words` tokens (words, or
    characters at char level; default 50 words or 300 characters) or until `sentences`
    ``<eos>`` have been drawn.

    Prompt words outside the vocabulary are read as ``<unk>`` with a `UserWarning`. The same
    `seed` gives the same text.
    """
    if words is not None and sentences is not None:
        raise UserError("--words and --sentences: give one of them")
    if words is not None and words < 0:
        raise UserError(f"--words {words}: expected an integer >= 0")
    if sentences is not None and sentences < 1:
        raise UserError(f"--sentences {sentences}: expected an integer >= 1")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise UserError(f"--temperature {temperature}: expected a number > 0")
    if top_k is not None and top_k < 1:
        raise UserError(f"--top-k {top_k}: expected an integer >= 1")
    model, config, vocab, _ = load_model(checkpoint, device)
    if words is None and sentences is None:
        words = default_sample_length(config.level)
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    with num_threads(config.threads):
        return _sample_text(
            model,
            vocab,
            config.level,
            prompt,
            words,
            sentences,
            temperature,
            top_k,
            generator,
            config.data,
        )


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def _type_help(tp: Any) -> str:
    """``int``, ``int or none``, ``word|char``: what a config field accepts."""
    if typing.get_origin(tp) is Literal:
        return "|".join(map(str, typing.get_args(tp)))
    args = typing.get_args(tp)
    if args and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_help(a) for a in inner) + " or none"
    return getattr(tp, "__name__", str(tp))


def _config_flag_dest(name: str) -> str:
    return f"set_{name}"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train``, ``eval``, ``generate`` and ``presets`` to the ``unroll`` command."""
    p = subparsers.add_parser(
        "train",
        help="train a language model (default: the demo preset on the embedded corpus)",
        usage="unroll train [--preset NAME] [--data DIR|ptb] [--out RUN_DIR] "
        "[--resume RUN_DIR] [--device D] [--quiet] [--KEY VALUE ...] [KEY=VALUE ...]",
        description="Train the LSTM language model of Zaremba et al. 2014. Any config field "
        "can be overridden as KEY=VALUE (after the options) or --KEY VALUE; see "
        "`unroll presets` for the fields and presets.",
    )
    p.add_argument(
        "--preset", metavar="NAME", help=f"one of {', '.join(PRESETS)} (default {DEFAULT_PRESET})"
    )
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/NAME-TIME)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last epoch")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    group = p.add_argument_group("config overrides (types are checked)")
    for name, tp in field_types(LMConfig).items():
        flags = [f"--{name.replace('_', '-')}"]
        if "_" in name:
            flags.append(f"--{name}")
        group.add_argument(
            *flags,
            dest=_config_flag_dest(name),
            metavar="VALUE",
            default=None,
            help=f"({_type_help(tp)})",
        )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_train)

    p = subparsers.add_parser("eval", help="perplexity of a trained language model")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--data", help="corpus (default: the one it was trained on)")
    p.add_argument("--split", default="test", choices=["test", "valid", "train"])
    p.add_argument("--batch-size", type=int, default=None, help="default 1 (exact)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_eval)

    p = subparsers.add_parser("generate", help="sample text from a trained language model")
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
    p.set_defaults(func=_cmd_generate)

    p = subparsers.add_parser("presets", help="list the language-model presets and values")
    p.set_defaults(func=_cmd_presets)


def config_from_args(args: argparse.Namespace, base: LMConfig) -> LMConfig:
    """`base` with the --KEY VALUE flags, then the KEY=VALUE tokens, applied (type-checked)."""
    changes: dict[str, str] = {}
    for name in field_types(LMConfig):
        value = getattr(args, _config_flag_dest(name), None)
        if value is not None:
            changes[name] = value
    for key, value in parse_override_tokens(list(args.overrides)):
        changes[key] = value
    return apply_overrides(base, changes)


def _cmd_train(args: argparse.Namespace) -> int:
    argv = getattr(args, "argv", None)  # set by unroll.cli.main when it has it
    if args.resume is not None:
        if args.preset is not None:
            raise UserError("--preset and --resume: a resumed run keeps its own config")
        if args.out is not None:
            raise UserError("--out and --resume: a resumed run continues in its own directory")
        run_dir = RunDir.open(args.resume)
        ckpt_path = run_dir.checkpoint("last")
        if not ckpt_path.is_file():
            raise UserError(f"--resume {args.resume}: no checkpoints/last.pt (no epoch finished)")
        ckpt = load_checkpoint(ckpt_path, kind=KIND)
        base = config_from_dict(LMConfig, ckpt["config"], source=str(ckpt_path))
    else:
        base = get_preset(args.preset or DEFAULT_PRESET)
    config = config_from_args(args, base)
    result = train(config, out=args.out, resume=args.resume, quiet=args.quiet, argv=argv)
    print(
        f"perplexity: train {_fmt_ppl(result['train_ppl'])}  valid "
        f"{_fmt_ppl(result['valid_ppl'])}  test {_fmt_ppl(result['test_ppl'])} "
        f"(best epoch {result['best_epoch']}, {result['seconds']:.0f} s)"
    )
    print(f"run directory: {result['run_dir']}")
    print("sample:")
    print(result["sample"])
    return 0


def _fmt_ppl(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _cmd_eval(args: argparse.Namespace) -> int:
    r = evaluate(
        args.checkpoint,
        data=args.data,
        split=args.split,
        batch_size=args.batch_size,
        device=args.device,
        quiet=args.quiet,
    )
    print(
        f"{r['split']} perplexity: {r['perplexity']:.2f} ({r['tokens']} tokens, batch size "
        f"{r['batch_size']}, {r['data']}, {r['checkpoint']})"
    )
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        text = generate(
            args.checkpoint,
            prompt=args.prompt,
            words=args.words,
            sentences=args.sentences,
            temperature=args.temperature,
            top_k=args.top_k,
            seed=args.seed,
            device=args.device,
        )
    for w in caught:
        print(f"unroll: warning: {w.message}", file=sys.stderr)
    print(text)
    return 0


def _cmd_presets(args: argparse.Namespace) -> int:
    print(format_presets())
    return 0
