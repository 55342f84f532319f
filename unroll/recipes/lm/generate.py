"""Sampling text from a trained language model (``unroll lm generate``)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch

from unroll.config import SEED_RANGE, is_seed
from unroll.data.corpora import tokenize_prompt
from unroll.data.text import EOS, Vocabulary
from unroll.engine.device import num_threads
from unroll.errors import UserError
from unroll.models.lm import LanguageModel
from unroll.models.sampling import detokenize, sample
from unroll.recipes.lm.evaluate import load_model

MAX_TOKENS = 100_000  # one call's output at most; more is a typo, not a sample


def default_sample_length(level: str) -> int:
    """Tokens in a sample when none is asked for: 50 words, or 300 characters."""
    return 300 if level == "char" else 50


def sample_text(
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
    """The prompt continued by the model, written as the training corpus was (the embedded
    corpus is lower-cased); no final ``<eos>``."""
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
    limit = tokens if tokens is not None else min(1000 * (sentences or 1), MAX_TOKENS)
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
    return detokenize(prompt_tokens + vocab.decode(out), level)


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
    if words is not None and not 0 <= words <= MAX_TOKENS:
        raise UserError(f"--words {words}: expected an integer from 0 to {MAX_TOKENS}")
    if sentences is not None and not 1 <= sentences <= MAX_TOKENS:
        raise UserError(f"--sentences {sentences}: expected an integer from 1 to {MAX_TOKENS}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise UserError(f"--temperature {temperature}: expected a number > 0")
    if top_k is not None and top_k < 1:
        raise UserError(f"--top-k {top_k}: expected an integer >= 1")
    if seed is not None and not is_seed(seed):
        raise UserError(f"--seed {seed}: expected {SEED_RANGE}")
    model, config, vocab, _ = load_model(checkpoint, device)
    if words is None and sentences is None:
        words = default_sample_length(config.level)
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    with num_threads(config.threads):
        return sample_text(
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
