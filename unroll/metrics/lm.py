"""Perplexity: exp of the mean negative log-likelihood per predicted token."""

from __future__ import annotations

import math


def perplexity(nll: float, tokens: int) -> float:
    """exp(total NLL / tokens); inf when the NLL overflows (or is inf), nan when it is nan."""
    try:
        return math.exp(nll / tokens)
    except OverflowError:
        return math.inf
