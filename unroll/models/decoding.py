"""Decoding a trained `Seq2Seq`: greedy and beam search, batched, free running.

Both call the decoder one step at a time (`Decoder.step`) from ``<s>`` until ``</s>`` or
`max_len` steps, through one function (`next_log_probs`, which also rules out ``<pad>`` and
``<s>`` as outputs), so beam search with k = 1 is greedy search (a test holds them equal).

A `Hypothesis` is the output without ``</s>``, its log-probability (summed over the steps,
``</s>`` included) and its score, the log-probability normalised by length:

    score = log p(y) / steps ** length_penalty        (steps = tokens + 1 for </s>)

(length_penalty 0: the raw log-probability, which favours short outputs; 1: the mean
log-probability per step). Beam search (as fairseq's): each step expands the k live beams of
every source by every token, keeps the 2k best candidates, moves those among the first k that
end in ``</s>`` to the finished list, and continues with the k best that do not; a source is
done when k hypotheses have finished (those still running at `max_len` count as finished
there). Its k best come back sorted by score.

Shapes: B sources, k beams, N = B·k rows, S source length, V target vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from unroll.models.seq2seq import Memory, Seq2Seq, State, select_state


@dataclass
class Hypothesis:
    """One output: tokens (ids, no ``</s>``), log_prob, score (length-normalised), finished
    (ended with ``</s>``, not cut at max_len) and the attention weights of each step [steps, S]
    (None without attention; the ``</s>`` step included when finished)."""

    tokens: list[int]
    log_prob: float
    score: float
    finished: bool
    weights: Tensor | None = None


def decode_bytes(
    sources: int, beam: int, src_len: int, max_len: int, vocab: int, hidden: int, layers: int
) -> int:
    """About the most memory (bytes) decoding `sources` sources of up to `src_len` tokens at
    once takes, with `beam` beams (1: greedy), up to `max_len` output tokens, a target
    vocabulary of `vocab` and `layers` decoder layers `hidden` wide: what `beam_search` holds
    for its N = sources·beam rows, in float32 (int64 for the history), twice where a step
    builds the new tensor beside the old one:

        memory [N, S, H] (encoder outputs, copied per beam), state 2·L·[N, H],
        log p and candidates [N, V] (x 3 with the top-k), history [N, t] int64,
        attention [N, t, S] (x 2: the concatenation)

    It is an estimate for refusing sizes that cannot fit, before any is allocated."""
    N = sources * beam
    per_row = src_len * hidden * 2 + 2 * layers * hidden + 3 * vocab + max_len * (2 + 2 * src_len)
    return 4 * N * per_row


def normalised(log_prob: float, steps: int, length_penalty: float) -> float:
    return log_prob / (max(steps, 1) ** length_penalty)


def next_log_probs(
    model: Seq2Seq, tokens: Tensor, state: State, memory: Memory
) -> tuple[Tensor, Tensor | None, State]:
    """log p(next token) [N, V] after `tokens` [N], attention weights [N, S], the new state.
    ``<pad>`` and ``<s>`` get -inf: never an output."""
    logits, weights, state = model.decoder.step(tokens, state, memory)
    logp = torch.log_softmax(logits.float(), dim=-1)
    logp[:, model.pad_id] = float("-inf")
    logp[:, model.bos_id] = float("-inf")
    return logp, weights, state


@torch.no_grad()
def greedy_decode(
    model: Seq2Seq, src: Tensor, lengths: Tensor, max_len: int, length_penalty: float = 1.0
) -> list[Hypothesis]:
    """The most likely next token at each step, for each source of `src` [B, S]."""
    memory, state = model.encode(src, lengths)
    B = src.shape[0]
    tokens = torch.full((B,), model.bos_id, dtype=torch.long, device=src.device)
    done = torch.zeros(B, dtype=torch.bool, device=src.device)
    log_prob = torch.zeros(B, dtype=torch.float64, device=src.device)
    outputs, weights = [], []
    for _ in range(max_len):
        logp, w, state = next_log_probs(model, tokens, state, memory)
        best, tokens = logp.max(dim=-1)
        log_prob += torch.where(done, 0.0, best.double())  # a finished row adds nothing
        outputs.append(tokens)
        if w is not None:
            weights.append(w)
        done |= tokens == model.eos_id
        if bool(done.all()):
            break
    out = torch.stack(outputs, 1).cpu()  # [B, steps]
    att = torch.stack(weights, 1).cpu() if weights else None  # [B, steps, S]
    hyps = []
    for b, row in enumerate(out.tolist()):
        finished = model.eos_id in row
        steps = row.index(model.eos_id) + 1 if finished else len(row)
        lp = float(log_prob[b])
        hyps.append(
            Hypothesis(
                tokens=row[: steps - 1] if finished else row,
                log_prob=lp,
                score=normalised(lp, steps, length_penalty),
                finished=finished,
                weights=None if att is None else att[b, :steps, : int(lengths[b])],
            )
        )
    return hyps


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    lengths: Tensor,
    max_len: int,
    beam: int = 5,
    length_penalty: float = 1.0,
    n_best: int | None = None,
) -> list[list[Hypothesis]]:
    """The `n_best` (default `beam`) best hypotheses of each source of `src` [B, S], best
    first (see the module docstring)."""
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    k, B, device = beam, src.shape[0], src.device
    n_best = k if n_best is None else min(n_best, k)
    memory, state = model.encode(src, lengths)
    rows = torch.arange(B, device=device).repeat_interleave(k)  # source of each of the N rows
    memory, state = memory.index_select(rows), select_state(state, rows)
    tokens = torch.full((B * k,), model.bos_id, dtype=torch.long, device=device)
    # Sum of log p of each live beam; only beam 0 is live at first (the others are copies).
    scores = torch.full((B, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    history = torch.empty((B * k, 0), dtype=torch.long, device=device)  # [N, t]
    attn: Tensor | None = None  # [N, t, S]
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    base = (torch.arange(B, device=device) * k)[:, None]  # first row of each source [B, 1]
    for t in range(max_len):
        logp, w, state = next_log_probs(model, tokens, state, memory)  # [N, V]
        V = logp.shape[-1]
        candidates = (scores.view(-1, 1) + logp).view(B, k * V)
        top, pos = candidates.topk(min(2 * k, k * V), dim=1)  # [B, 2k]
        row_of = base + torch.div(pos, V, rounding_mode="floor")  # the row each extends [B, 2k]
        token_of = pos % V
        ends = token_of == model.eos_id
        steps = t + 1
        # Candidates among the first k that end: finished hypotheses.
        for b, j in (ends[:, :k] & torch.isfinite(top[:, :k])).nonzero().tolist():
            if done[b]:
                continue
            r = int(row_of[b, j])
            lp = float(top[b, j])
            weights = None
            if w is not None:
                prev = attn[r] if attn is not None else w.new_zeros((0, w.shape[-1]))
                weights = torch.cat([prev, w[r][None]])[:, : int(lengths[b])].cpu()
            finished[b].append(
                Hypothesis(
                    history[r].tolist(),
                    lp,
                    normalised(lp, steps, length_penalty),
                    True,
                    weights,
                )
            )
        # The k best candidates that do not end continue.
        keep_score, keep = top.masked_fill(ends, float("-inf")).topk(k, dim=1)  # [B, k]
        chosen = row_of.gather(1, keep).view(-1)  # [N]
        tokens = token_of.gather(1, keep).view(-1)
        scores = keep_score
        history = torch.cat([history[chosen], tokens[:, None]], dim=1)
        if w is not None:
            step_w = w[chosen][:, None]  # [N, 1, S]
            attn = step_w if attn is None else torch.cat([attn[chosen], step_w], dim=1)
        state = select_state(state, chosen)  # (memory rows are per source: unchanged)
        for b in range(B):
            done[b] = done[b] or len(finished[b]) >= k
        if all(done):
            break
    for b in range(B):  # still running at max_len: cut there
        if done[b]:
            continue
        for j in range(k):
            lp = float(scores[b, j])
            if not math.isfinite(lp):
                continue
            r = b * k + j
            finished[b].append(
                Hypothesis(
                    history[r].tolist(),
                    lp,
                    normalised(lp, history.shape[1], length_penalty),
                    False,
                    None if attn is None else attn[r][:, : int(lengths[b])].cpu(),
                )
            )
    return [sorted(f, key=lambda h: -h.score)[:n_best] for f in finished]
