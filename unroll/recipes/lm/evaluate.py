"""Perplexity of a language model over an id stream, and of a saved checkpoint on a split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from unroll.data.batching import batchify, bptt_batches, epoch_size
from unroll.data.corpora import resolve_corpus
from unroll.data.text import Vocabulary
from unroll.engine.checkpoint import find_checkpoint, load_checkpoint
from unroll.engine.device import autocast_factory, num_threads, resolve_device
from unroll.engine.model_check import load_weights, saved_config
from unroll.engine.progress import Progress
from unroll.engine.recipe import Result
from unroll.errors import UserError
from unroll.metrics.lm import perplexity
from unroll.models.awd import AWDLanguageModel, load_averages
from unroll.models.lm import LanguageModel, lm_loss
from unroll.recipes.lm.config import KIND, LMConfig
from unroll.recipes.lm.graphs import graphed_eval_nll


def build_model(config: LMConfig, vocab_size: int) -> LanguageModel | AWDLanguageModel:
    """Zaremba et al.'s model, or AWD-LSTM's with ``model="awd"`` (dropout = its output
    dropout; tying makes the last layer embedding_size wide)."""
    if config.model == "awd":
        return AWDLanguageModel(
            vocab_size,
            config.embedding_size or config.hidden_size,
            config.hidden_size,
            config.num_layers,
            dropout=config.dropout,
            dropout_between=config.dropout_between,
            dropout_input=config.dropout_input,
            dropout_embedding=config.dropout_embedding,
            weight_drop=config.weight_drop,
            tie_weights=config.tie_weights,
            ar=config.ar,
            tar=config.tar,
        )
    return LanguageModel(
        vocab_size,
        config.hidden_size,
        config.num_layers,
        embedding_size=config.embedding_size,
        dropout=config.dropout,
        init_scale=config.init_scale,
        tie_weights=config.tie_weights,
        cell=config.cell,
    )


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
    rows: slice | None = None,
) -> tuple[float, int]:
    """Total NLL (nats) and number of predicted tokens over `ids`, in the tutorial's layout.

    The stream is laid out as `batch_size` rows (`batchify`) and read in ``epoch_size`` windows
    of `num_steps` with the state carried, so the targets are exactly those the tutorial's
    loop predicts; ``num_steps=1`` predicts every token of each row but the first. The windows
    are run `chunk_steps` columns at a time (default: all at once) — the same computation in
    fewer, longer forward passes. With `graphs` the full chunks replay one captured forward
    (`graphed_eval_nll`; eager on the CPU) and the remainder, if any, runs as a plain forward.
    `rows`: only these rows of the layout (a torchrun rank's share; the sums over the ranks'
    rows are the whole layout's).
    """
    device = next(model.parameters()).device if device is None else device
    autocast = autocast_factory(device, precision)
    data = batchify(ids, batch_size)  # [B, L]
    n = epoch_size(ids.numel(), batch_size, num_steps)
    covered = n * num_steps  # targets per row
    data = data[rows if rows is not None else slice(None), : covered + 1].to(device)
    B = data.shape[0]  # [B, covered + 1]: inputs and shifted targets
    chunk = min(chunk_steps or covered, covered)
    # Keep a chunk's logits [B, chunk, V] to about 2^22 numbers (16 MB in fp32).
    chunk = max(1, min(chunk, (1 << 22) // (batch_size * model.vocab_size)))
    was_training = model.training
    model.eval()
    state = model.init_state(B, device)
    nll = torch.zeros((), device=device, dtype=torch.float64)
    try:
        if graphs and covered // chunk >= 2:
            nll, state, done = graphed_eval_nll(model, data, chunk, state, autocast)
            # What is left: covered - done targets, i.e. columns done .. covered (one more
            # column than targets, the last input); nothing when the chunks covered it all.
            data = data[:, done:]
            if progress is not None:
                progress.update(done)
        if data.shape[1] > 1:
            # The remainder is shorter than a chunk: read it as one (shorter) chunk.
            for x, y in bptt_batches(data, min(chunk, data.shape[1] - 1), include_remainder=True):
                with autocast():
                    logits, state = model(x, state)  # [B, t, V]
                nll += lm_loss(logits, y) * B
                if progress is not None:
                    progress.update(x.shape[1])
    finally:
        model.train(was_training)
    return float(nll), covered * B


def saved_vocabulary(ckpt: dict[str, Any], config: LMConfig, source: str) -> Vocabulary:
    """A checkpoint's vocabulary: distinct words, as many as its config's ``vocab_size``."""
    words = ckpt.get("vocab")
    if not isinstance(words, list) or not words:
        raise UserError(f"{source}: the checkpoint has no vocabulary")
    try:
        vocab = Vocabulary.from_list(words)
    except ValueError as e:
        raise UserError(f"{source}: not a vocabulary ({e})") from None
    if config.vocab_size is not None and config.vocab_size != len(vocab):
        raise UserError(
            f"{source}: the vocabulary has {len(vocab)} words, its config says "
            f"vocab_size={config.vocab_size}"
        )
    return vocab


def load_model(
    checkpoint: str | Path, device: str | torch.device = "auto", which: str = "best"
) -> tuple[LanguageModel, LMConfig, Vocabulary, torch.device]:
    """A trained model from a checkpoint file or a run directory (its `which` checkpoint)."""
    path = find_checkpoint(checkpoint, which)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    ckpt = load_checkpoint(path, kind=KIND)
    config = saved_config(LMConfig, ckpt, str(path))
    vocab = saved_vocabulary(ckpt, config, str(path))
    model = load_weights(lambda: build_model(config, len(vocab)), ckpt["model"], str(path))
    if config.nonmono:  # NT-ASGD: the averaged weights are the model (as training tested)
        load_averages(model, ckpt.get("optimizer"))
    model.to(dev).eval()
    return model, config, vocab, dev


@dataclass
class LMEvaluation(Result):
    checkpoint: str
    data: str
    split: str
    batch_size: int
    tokens: int
    nll: float
    perplexity: float

    def summary(self) -> str:
        return (
            f"{self.split} perplexity: {self.perplexity:.2f} ({self.tokens} tokens, batch size "
            f"{self.batch_size}, {self.data}, {self.checkpoint})"
        )


def evaluate(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "test",
    batch_size: int | None = None,
    device: str = "auto",
    *,
    which: str = "best",
    quiet: bool = True,
    stream: TextIO | None = None,
) -> LMEvaluation:
    """Perplexity of a checkpoint on a split (default: the data it was trained on, test split,
    batch size ``eval_batch_size`` — 1 — with the state carried through the whole stream)."""
    if split not in ("train", "valid", "test"):
        raise UserError(f"--split {split!r}: expected train, valid or test")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size {batch_size}: expected an integer >= 1")
    model, config, vocab, dev = load_model(checkpoint, device, which)
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
    return LMEvaluation(
        checkpoint=str(find_checkpoint(checkpoint, which)),
        data=corpus.name,
        split=split,
        batch_size=B,
        tokens=tokens,
        nll=nll,
        perplexity=perplexity(nll, tokens),
    )
