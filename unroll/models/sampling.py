"""Sampling text from a language model, and turning tokens back into text.

Sampling draws from a `torch.Generator` on the CPU, so a seed gives the same text on every
run (and, up to floating-point differences in the logits, on every device).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from unroll.data.text import EOS


def detokenize(tokens: Sequence[str], level: str = "word") -> str:
    """Text from tokens: ``<eos>`` ends a line; words are joined by spaces (word level), or
    characters are joined as they are with ``_`` read as a space (char level)."""
    if level == "char":
        return "".join("\n" if t == EOS else (" " if t == "_" else t) for t in tokens)
    lines: list[list[str]] = [[]]
    for t in tokens:
        if t == EOS:
            lines.append([])
        else:
            lines[-1].append(t)
    return "\n".join(" ".join(words) for words in lines)


@torch.no_grad()
def sample(
    model: nn.Module,
    context: Tensor,
    *,
    max_tokens: int,
    stop_id: int | None = None,
    stop_count: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Continue `context` (1-D ids, at least one) by sampling up to `max_tokens` ids.

    The context is read in one forward pass; then one token at a time is drawn from
    ``softmax(logits / temperature)``, restricted to the `top_k` most likely ids when given.
    Stops early after `stop_count` occurrences of `stop_id` (e.g. sentences = ``<eos>``).
    `model` maps ids ``[B, T]`` and a state to logits ``[B, T, V]`` and the next state.
    """
    if context.dim() != 1 or context.numel() == 0:
        raise ValueError(f"sample: expected a non-empty 1-D context, got {tuple(context.shape)}")
    if not (temperature > 0 and math.isfinite(temperature)):
        raise ValueError(f"sample: temperature must be a finite number > 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"sample: top_k must be >= 1, got {top_k}")
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, state = model(context.to(device).unsqueeze(0), None)  # [1, T, V]
    out: list[int] = []
    stops = 0
    try:
        while len(out) < max_tokens:
            last = logits[0, -1].double().cpu()  # [V]
            if top_k is not None and top_k < last.numel():
                kth = torch.topk(last, top_k).values[-1]
                last = last.masked_fill(last < kth, float("-inf"))
            # Shift to max 0 before dividing: any temperature > 0, however small, gives
            # finite probabilities (the most likely id alone as temperature -> 0).
            probs = torch.softmax((last - last.max()) / temperature, dim=-1)
            token = int(torch.multinomial(probs, 1, generator=generator))
            out.append(token)
            if stop_id is not None and token == stop_id:
                stops += 1
                if stop_count is not None and stops >= stop_count:
                    break
            x = torch.tensor([[token]], device=device)
            logits, state = model(x, state)
    finally:
        model.train(was_training)
    return out
