"""Batches for truncated backpropagation through time, exactly as TensorFlow's ``ptb_producer``.

The 1-D id stream is cut to B·L tokens (L = len // B; the tail is dropped) and laid out as B
parallel streams, one per row. Batch i is the window of T columns starting at i·T; the targets
are the same window shifted one token to the right. A model's state for row b carries over
from batch i to batch i + 1, because the rows continue where the previous window stopped::

    ids:  0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24
                                  (B = 2, so L = 25 // 2 = 12; token 24 is dropped)

    data [B, L]    |  x, batch 0  |  x, batch 1  |  x, batch 2  |
      row 0:       |  0  1  2     |  3  4  5     |  6  7  8     |  9 10 11
      row 1:       | 12 13 14     | 15 16 17     | 18 19 20     | 21 22 23
                        y = x shifted by one: batch 0 has y = [[1 2 3], [13 14 15]]

    T = 3:  epoch_size = (L - 1) // T = 11 // 3 = 3 batches; the last target read is column 9,
    so columns 10, 11 are never used as targets (the "- 1" leaves room for the last shift).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from unroll.errors import UserError


def _check_ids(ids: torch.Tensor, ndim: int, what: str) -> None:
    if not isinstance(ids, torch.Tensor) or ids.dim() != ndim or ids.dtype != torch.long:
        got = (
            f"{tuple(ids.shape)} {ids.dtype}"
            if isinstance(ids, torch.Tensor)
            else type(ids).__name__
        )
        raise ValueError(f"{what}: expected a {ndim}-D torch.long tensor, got {got}")


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Lay a 1-D id stream out as `batch_size` parallel streams: ``[B, L]``, L = len // B.

    Row b is ``ids[b*L:(b+1)*L]``; the last ``len % B`` tokens are dropped. A view of `ids`.
    """
    _check_ids(ids, 1, "batchify ids")
    if batch_size < 1:
        raise ValueError(f"batchify: batch_size must be >= 1, got {batch_size}")
    L = ids.numel() // batch_size
    return ids[: batch_size * L].view(batch_size, L)  # [B, L]


def epoch_size(num_tokens: int, batch_size: int, num_steps: int) -> int:
    """Number of [B, T] batches in one pass over `num_tokens` tokens: ((N // B) - 1) // T.

    Zero batches (fewer than B·(T + 1) tokens) is a `UserError` naming B and T.
    """
    if batch_size < 1 or num_steps < 1:
        raise ValueError(
            f"epoch_size: batch_size and num_steps must be >= 1, got {batch_size}, {num_steps}"
        )
    n = (num_tokens // batch_size - 1) // num_steps
    if n <= 0:
        raise UserError(
            f"too little data: {num_tokens} tokens give no batch of batch_size={batch_size} "
            f"x num_steps={num_steps} (need at least {batch_size * (num_steps + 1)} tokens)"
        )
    return n


def bptt_batches(
    data: torch.Tensor, num_steps: int, *, include_remainder: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` for i in range(epoch_size): x = data[:, i·T:(i+1)·T], y shifted by one.

    `data` is ``[B, L]`` from `batchify`; x and y are ``[B, T]`` views (no copies).
    With ``include_remainder=True`` a last, shorter batch ``[B, r]`` with the r < T leftover
    columns follows (when r > 0), so every token but the first of each row is a target once:
    carrying the state through it gives exactly the tutorial's batch-1 x step-1 evaluation.
    """
    _check_ids(data, 2, "bptt_batches data")
    B, L = data.shape
    n = epoch_size(B * L, B, num_steps)
    T = num_steps
    for i in range(n):
        yield data[:, i * T : (i + 1) * T], data[:, i * T + 1 : (i + 1) * T + 1]
    r = (L - 1) - n * T
    if include_remainder and r > 0:
        yield data[:, n * T : n * T + r], data[:, n * T + 1 : n * T + r + 1]


def bptt_tensors(data: torch.Tensor, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All batches of `bptt_batches` stacked: X, Y contiguous ``[epoch_size, B, T]``.

    ``X[i], Y[i]`` equal batch i; a CUDA-graph trainer keeps these on the device and indexes
    them, so one epoch needs no host-to-device copies.
    """
    _check_ids(data, 2, "bptt_tensors data")
    B, L = data.shape
    n = epoch_size(B * L, B, num_steps)
    T = num_steps

    def stack(start: int) -> torch.Tensor:
        window = data[:, start : start + n * T]  # [B, n*T]
        return window.reshape(B, n, T).transpose(0, 1).contiguous()  # [n, B, T]

    return stack(0), stack(1)
