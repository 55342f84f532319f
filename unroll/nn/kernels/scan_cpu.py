"""The linear recurrence h_t = a_t ⊙ h_{t-1} + b_t over a whole sequence, as a parallel scan.

minGRU and minLSTM (`unroll.nn.cells.min_rnn`) reduce to this recurrence, with a_t ∈ (0, 1) and
b_t > 0 given in log space (``log_a``, ``log_b``). Unrolled,

    h_t = A_t ⊙ h_0 + Σ_{s ≤ t} (A_t / A_s) ⊙ b_s,       A_t = Π_{r ≤ t} a_r

and in log space (Feng et al. 2024, appendix B; Heinsen 2023, arXiv 2311.06281):

    a*_t = Σ_{r ≤ t} log a_r                                (cumsum)
    h_t  = exp(a*_t) ⊙ h_0 + exp(a*_t + logcumsumexp_{s ≤ t}(log b_s − a*_s))

Every term is computed for all t at once (two scans over T, elementwise work in between), and
autograd differentiates it. h_0 stays in the linear domain (its own term), so a zero or
negative initial state is fine; only b must be positive (it is: b = gate ⊙ g(·) > 0).

Two forms, the same numbers (tests hold both to the sequential step in float64):

  scan_log      the paper's: one cumsum and one logcumsumexp over all T. In float32, a*_t
                grows like t·log a (−1000s at T = 4096) while the sum it is added back to is
                O(1): exp(a*_t + big) loses |a*_t|·ε relative precision, which grows with T.
  scan_blocked  the same over blocks of ``chunk`` steps (a*_t restarts at each block, so the
                precision loss is bounded by the block, not by T), then the blocks' end states
                chained by the plain recurrence over T/chunk steps (sequential, but T/chunk of
                them, each a (B, H) multiply-add; a_t ≤ 1, so no blow-up). Faster on the CPU
                as well (logcumsumexp over a short axis: 0.76× the scan's time at T = 1024,
                0.75× at 4096, B = 16, H = 128; BENCHMARKS.md); the block size hardly
                matters there (16 to 256 steps within 8%).

Data layout: time-major, log_a and log_b (T, B, H), h0 (B, H), out h (T, B, H).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from unroll.nn.kernels.build import compile_extension, extension_name, try_flag_sets, turned_off

logger = logging.getLogger(__name__)

CHUNK = 64  # steps per block in `scan_blocked` (`benchmarks/parallel_rnn.py --chunk N` measures)


def scan_log(log_a: Tensor, log_b: Tensor, h0: Tensor) -> Tensor:
    """h (T, B, H) of h_t = a_t ⊙ h_{t-1} + b_t: the paper's log-space scan over all T."""
    a_star = torch.cumsum(log_a, 0)  # (T, B, H): log A_t
    h = torch.exp(a_star + torch.logcumsumexp(log_b - a_star, 0))
    return h + torch.exp(a_star) * h0


def scan_blocked(log_a: Tensor, log_b: Tensor, h0: Tensor, chunk: int | None = None) -> Tensor:
    """h (T, B, H) of h_t = a_t ⊙ h_{t-1} + b_t: log-space scans within blocks of ``chunk``
    steps, the blocks chained by the recurrence on their end states."""
    T, chunk = log_a.shape[0], chunk or CHUNK
    if chunk >= T:
        return scan_log(log_a, log_b, h0)
    N = -(-T // chunk)  # blocks
    pad = N * chunk - T
    if pad:  # a = 1, b = 1 past the end: finite, and cut off below
        log_a = F.pad(log_a, (0, 0, 0, 0, 0, pad))
        log_b = F.pad(log_b, (0, 0, 0, 0, 0, pad))
    shape = (N, chunk) + log_a.shape[1:]
    la = torch.cumsum(log_a.reshape(shape), 1)  # (N, chunk, B, H): log A within the block
    local = torch.exp(la + torch.logcumsumexp(log_b.reshape(shape) - la, 1))  # from h = 0
    decay = torch.exp(la)  # (N, chunk, B, H): A_t / A_start of the block
    # The state entering each block, chained over the blocks (N steps).
    starts, h = [], h0
    ends_decay, ends_local = decay[:, -1], local[:, -1]  # (N, B, H)
    for n in range(N):
        starts.append(h)
        h = ends_decay[n] * h + ends_local[n]
    h_all = local + decay * torch.stack(starts).unsqueeze(1)  # (N, chunk, B, H)
    return h_all.reshape((N * chunk,) + log_a.shape[1:])[:T]


def scan_sequential(log_a: Tensor, log_b: Tensor, h0: Tensor) -> Tensor:
    """h (T, B, H) by the plain loop over T (the recurrence as written; for benchmarks)."""
    a, b = torch.exp(log_a), torch.exp(log_b)
    hs, h = [], h0
    for t in range(a.shape[0]):
        h = a[t] * h + b[t]
        hs.append(h)
    return torch.stack(hs)


# --- the fused loop: gates, g() and the recurrence in one compiled pass --------------------------
SOURCE = Path(__file__).with_name("min_rnn_cpu.cpp")
_lock = threading.Lock()
_state: dict = {"tried": False, "ok": False, "reason": "not loaded yet"}


def _build(flags: list[str]) -> None:
    name = extension_name("unroll_min_rnn_cpu", [SOURCE], flags)
    compile_extension(
        "unroll_min_rnn_cpu", [SOURCE], flags, "the CPU minGRU/minLSTM loop", 15, name
    )


def fused_available() -> bool:
    """True when the compiled loop (`min_rnn_cpu.cpp`) is built or loaded; builds it on first
    call (``UNROLL_CPU_EXTENSION=0`` turns it off, as every compiled kernel)."""
    if turned_off():
        _state["reason"] = turned_off()
        return False
    if not _state["tried"]:
        with _lock:
            if not _state["tried"]:
                reason = try_flag_sets(_build)
                _state["ok"], _state["reason"] = reason is None, reason
                if reason:
                    logger.warning("unroll: could not build min_rnn_cpu.cpp (%s)", reason)
                _state["tried"] = True
    return _state["ok"]


def unavailable_reason() -> str | None:
    """None when the compiled loop is in use, else why not."""
    return None if fused_available() else _state["reason"]


class CompiledMinLoop:
    """The compiled loop's ops: forward(xp, h0, lstm) -> y; backward(...) -> (dxp, dh0)."""

    @staticmethod
    def forward(xp: Tensor, h0: Tensor, lstm: bool) -> Tensor:
        return torch.ops.unroll_min_rnn_cpu.forward(xp, h0, lstm)

    @staticmethod
    def backward(xp: Tensor, h0: Tensor, y: Tensor, dy: Tensor, lstm: bool):
        return torch.ops.unroll_min_rnn_cpu.backward(xp, h0, y, dy, lstm)


class MinRecurrence(torch.autograd.Function):
    """y (T, B, H) = the minGRU/minLSTM recurrence of the pre-activations xp (T, B, nb·H) from
    h0 (B, H), run by a loop backend (`CompiledMinLoop` on the CPU, the Triton kernels on CUDA:
    `scan_triton.TritonMinLoop`). Saves xp, h0 and y; the backward recomputes the gates."""

    @staticmethod
    def forward(ctx, xp: Tensor, h0: Tensor, lstm: bool, loop) -> Tensor:
        y = loop.forward(xp.contiguous(), h0.contiguous(), lstm)
        ctx.save_for_backward(xp, h0, y)
        ctx.lstm, ctx.loop = lstm, loop
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        xp, h0, y = ctx.saved_tensors
        dxp, dh0 = ctx.loop.backward(xp.contiguous(), h0.contiguous(), y, dy.contiguous(), ctx.lstm)
        return dxp, dh0, None, None
