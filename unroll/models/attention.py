"""Attention over the encoder's states: Bahdanau's additive score, Luong's dot and general.

Shapes (one set for the seq2seq modules): B batch, S source length, T' target steps, Hq the
query's size (a decoder state), Hk the size of an encoder state (the keys, which are also the
values), A the additive score's inner size.

    query  [B, T', Hq]    keys [B, S, Hk]    mask [B, S] (True at real source positions)
    score  [B, T', S]  -> softmax over S, padding at exactly 0 -> weights [B, T', S]
    context = weights @ keys                                       [B, T', Hk]

The scores (a_j: the weight of source position j; s the query, h_j the key):

    dot       e_j = sᵀ h_j                      Luong, Pham & Manning 2015, eq. 8 "dot"
    general   e_j = sᵀ W_a h_j                  Luong et al. 2015, eq. 8 "general"
    additive  e_j = v_aᵀ tanh(W_a s + U_a h_j)  Bahdanau, Cho & Bengio 2015, appendix A.1.2
    a = softmax(e) over the valid j only

All T' queries are scored at once, so a decoder that knows all its queries (Luong's, whose
query is the current output) attends over the whole target in one call; Bahdanau's decoder
asks with one query at a time (T' = 1). What depends on the keys alone (``U_a h_j``,
``W_a h_j``) is computed once per source by `prepare` and reused at every step.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

KINDS = ("bahdanau", "dot", "general")


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dim of `scores` [B, T', S] at the positions where `mask` [B, S] is
    True; exactly 0 elsewhere. Every row needs at least one True (a source of length >= 1)."""
    scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1)


class Attention(nn.Module):
    """Base: ``weights, context = attn(query, keys, mask, prepared)`` (see the module
    docstring); `prepare(keys)` is the per-source part of the score, computed once."""

    def prepare(self, keys: Tensor) -> Tensor:
        return keys

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(
        self, query: Tensor, keys: Tensor, mask: Tensor, prepared: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        prepared = self.prepare(keys) if prepared is None else prepared
        weights = masked_softmax(self.score(query, prepared), mask)  # [B, T', S]
        return weights, weights @ keys  # context [B, T', Hk]


class DotAttention(Attention):
    """Luong's ``dot``: e_j = sᵀ h_j (needs Hq == Hk)."""

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        return query @ prepared.transpose(1, 2)  # [B, T', Hq] @ [B, Hk, S]


class GeneralAttention(Attention):
    """Luong's ``general``: e_j = sᵀ W_a h_j; `prepare` holds W_a h_j [B, S, Hq]."""

    def __init__(self, query_size: int, key_size: int):
        super().__init__()
        self.W_a = nn.Linear(key_size, query_size, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.W_a(keys)

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        return query @ prepared.transpose(1, 2)


class AdditiveAttention(Attention):
    """Bahdanau's additive score: e_j = v_aᵀ tanh(W_a s + U_a h_j); `prepare` holds U_a h_j
    [B, S, A]."""

    def __init__(self, query_size: int, key_size: int, attention_size: int):
        super().__init__()
        self.W_a = nn.Linear(query_size, attention_size, bias=False)
        self.U_a = nn.Linear(key_size, attention_size)
        self.v_a = nn.Linear(attention_size, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.U_a(keys)

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        # [B, T', 1, A] + [B, 1, S, A] -> [B, T', S, A] -> [B, T', S]
        hidden = torch.tanh(self.W_a(query)[:, :, None, :] + prepared[:, None, :, :])
        return self.v_a(hidden).squeeze(-1)


def make_attention(kind: str, query_size: int, key_size: int) -> Attention:
    """``bahdanau`` (additive, inner size = query size), ``dot`` or ``general``."""
    if kind == "dot":
        if query_size != key_size:
            raise ValueError(
                f"dot attention needs equal query and key sizes, got {query_size} and {key_size}"
            )
        return DotAttention()
    if kind == "general":
        return GeneralAttention(query_size, key_size)
    if kind == "bahdanau":
        return AdditiveAttention(query_size, key_size, query_size)
    raise ValueError(f"attention {kind!r}: expected one of {', '.join(KINDS)}")
