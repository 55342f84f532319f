"""Your own text through a trained language model: ``unroll.lm.perplexity(run, texts)``.

Each text is scored on its own, from a zero state, as a sentence of the training corpus would
be: written the way the corpus was (`unroll.data.corpora.tokenize_prompt`: the embedded corpus
lower-cases and splits punctuation), each line ended by ``<eos>``, and read after an ``<eos>``
(what precedes every line in the training stream), so every token of the text, its final
``<eos>`` included, is predicted from all of the text before it. A word the vocabulary lacks
becomes ``<unk>`` when the vocabulary has one (PTB's rule), else it is an error naming the text
and line.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from unroll.data.corpora import tokenize_prompt
from unroll.data.text import EOS
from unroll.errors import UserError
from unroll.recipes.lm.evaluate import load_model

CHUNK = 400  # tokens per forward pass (the state carried between): bounded logits memory


def perplexity(
    run: str | os.PathLike,
    texts: str | Sequence[str],
    *,
    checkpoint: str = "best",
    device: str | torch.device = "auto",
    per_text: bool = False,
) -> float | list[float]:
    """The perplexity of `texts` (one string or several) under the `checkpoint` (best|last)
    of the run directory (or checkpoint file) `run`: over all their tokens together, or one
    figure per text with `per_text`."""
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise UserError("perplexity: no texts given")
    model, config, vocab, dev = load_model(run, device, which=checkpoint)
    totals: list[tuple[float, int]] = []
    with torch.no_grad():
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise UserError(f"perplexity: texts[{i}] is a {type(text).__name__}, not a str")
            tokens = tokenize_prompt(text, config.level, data=config.data)
            if not tokens:
                raise UserError(f"perplexity: texts[{i}] holds no token")
            text_ids = vocab.encode([*tokens, EOS], source=f"texts[{i}]")  # (N + 1,)
            ids = torch.cat([vocab.encode([EOS]), text_ids]).to(dev)  # after an <eos>
            totals.append((_nll(model, ids), len(ids) - 1))
    if per_text:
        return [math.exp(nll / n) for nll, n in totals]
    return math.exp(sum(nll for nll, _ in totals) / sum(n for _, n in totals))


def _nll(model: torch.nn.Module, ids: torch.Tensor) -> float:
    """Total NLL (nats) of ids[1:] given the ids before each, from a zero state."""
    state, total = None, 0.0
    for start in range(0, len(ids) - 1, CHUNK):
        x = ids[start : start + CHUNK][None]  # (1, t)
        y = ids[start + 1 : start + 1 + CHUNK]  # (t,)
        logits, state = model(x[:, : len(y)], state)  # (1, t, V)
        total += float(F.cross_entropy(logits[0].float(), y, reduction="sum"))
    return total
