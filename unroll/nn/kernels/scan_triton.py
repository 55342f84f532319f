"""The minGRU/minLSTM recurrence in Triton, for CUDA: `TritonMinLoop`, the interface of
`scan_cpu.CompiledMinLoop` (same buffers, same contents; tests hold both to the reference
step `unroll.nn.cells.min_rnn`).

One launch per pass. Each program owns BLOCK of the B·H units n = b·H + j and walks the T
steps with h (forward) or dL/dh (backward) in registers: the gates, g() and h_t = a_t·h_{t-1} +
b_t for its units, reading the pre-activations XP[t, b, blk·H + j] straight from the GEMM's
output. Every unit of every sequence runs at once, so a GPU is filled for B·H ≳ 10⁴; the
sequential part is one fused multiply-add per step, memory-bound like the scan would be (a
log-space scan reads and writes the (T, B, H) buffers several times; this reads each once).

Layout (time-major, contiguous; nb = 2 for minGRU (z, h̃), 3 for minLSTM (f, i, h̃)):
    XP (T, B, nb·H)  Y (T, B, H)  h0 (B, H)  dY (T, B, H)  dXP (T, B, nb·H)  dh0 (B, H)
Math in float32 (float64 for float64 tensors).

Tests run the kernels on the CPU in Triton's interpreter (``TRITON_INTERPRET=1``, set before
Triton is imported): `TritonMinLoop` runs on CPU tensors there, for tests only.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # an optional dependency (the "triton" extra)
    triton = tl = None

BLOCK = 128

if triton is not None:

    @triton.jit
    def _g(v):
        s = 1.0 / (1.0 + tl.exp(-v))
        return tl.where(v >= 0, v + 0.5, s), tl.where(v >= 0, 1.0, s * (1.0 - s))

    @triton.jit
    def _min_forward(XP, H0, Y, T, N, H, LSTM: tl.constexpr, BLOCK: tl.constexpr):
        n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # units b·H + j
        mask = n < N
        b, j = n // H, n % H
        NB = 3 if LSTM else 2
        h = tl.load(H0 + n, mask=mask, other=0.0)
        for t in range(T):
            row = XP + (t * (N // H) + b) * (NB * H) + j
            if LSTM:
                f = 1.0 / (1.0 + tl.exp(-tl.load(row, mask=mask, other=0.0)))
                i = 1.0 / (1.0 + tl.exp(-tl.load(row + H, mask=mask, other=0.0)))
                ht, _ = _g(tl.load(row + 2 * H, mask=mask, other=0.0))
                h = (f * h + i * ht) / (f + i)
            else:
                z = 1.0 / (1.0 + tl.exp(-tl.load(row, mask=mask, other=0.0)))
                ht, _ = _g(tl.load(row + H, mask=mask, other=0.0))
                h = h + z * (ht - h)
            tl.store(Y + t * N + n, h, mask=mask)

    @triton.jit
    def _min_backward(XP, H0, Y, DY, DXP, DH0, T, N, H, LSTM: tl.constexpr, BLOCK: tl.constexpr):
        n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = n < N
        b, j = n // H, n % H
        NB = 3 if LSTM else 2
        d = tl.load(H0 + n, mask=mask, other=0.0) * 0.0  # dL/dh_t, in h's dtype
        for s in range(T):
            t = T - 1 - s
            row = XP + (t * (N // H) + b) * (NB * H) + j
            drow = DXP + (t * (N // H) + b) * (NB * H) + j
            if t > 0:
                hp = tl.load(Y + (t - 1) * N + n, mask=mask, other=0.0)
            else:
                hp = tl.load(H0 + n, mask=mask, other=0.0)
            dt = d + tl.load(DY + t * N + n, mask=mask, other=0.0)
            if LSTM:
                h = tl.load(Y + t * N + n, mask=mask, other=0.0)
                f = 1.0 / (1.0 + tl.exp(-tl.load(row, mask=mask, other=0.0)))
                i = 1.0 / (1.0 + tl.exp(-tl.load(row + H, mask=mask, other=0.0)))
                ht, gg = _g(tl.load(row + 2 * H, mask=mask, other=0.0))
                dt = dt / (f + i)  # h = (f·hp + i·h̃)/(f + i)
                tl.store(drow, dt * (hp - h) * f * (1.0 - f), mask=mask)
                tl.store(drow + H, dt * (ht - h) * i * (1.0 - i), mask=mask)
                tl.store(drow + 2 * H, dt * i * gg, mask=mask)
                d = dt * f
            else:
                z = 1.0 / (1.0 + tl.exp(-tl.load(row, mask=mask, other=0.0)))
                ht, gg = _g(tl.load(row + H, mask=mask, other=0.0))
                tl.store(drow, dt * (ht - hp) * z * (1.0 - z), mask=mask)
                tl.store(drow + H, dt * z * gg, mask=mask)
                d = dt * (1.0 - z)
        tl.store(DH0 + n, d, mask=mask)


class TritonMinLoop:
    """`scan_cpu.CompiledMinLoop`'s interface over the Triton kernels."""

    @staticmethod
    def forward(xp: Tensor, h0: Tensor, lstm: bool) -> Tensor:
        T, B, H = xp.shape[0], xp.shape[1], h0.shape[1]
        y = torch.empty(T, B, H, device=xp.device, dtype=xp.dtype)
        N = B * H
        if T and N:
            grid = (triton.cdiv(N, BLOCK),)
            _min_forward[grid](xp, h0, y, T, N, H, LSTM=lstm, BLOCK=BLOCK)
        return y

    @staticmethod
    def backward(xp: Tensor, h0: Tensor, y: Tensor, dy: Tensor, lstm: bool):
        T, B, H = xp.shape[0], xp.shape[1], h0.shape[1]
        dxp, dh0 = torch.empty_like(xp), torch.empty_like(h0)
        N = B * H
        if T and N:
            grid = (triton.cdiv(N, BLOCK),)
            _min_backward[grid](xp, h0, y, dy, dxp, dh0, T, N, H, LSTM=lstm, BLOCK=BLOCK)
        else:
            dxp.zero_()
            dh0.zero_()
        return dxp, dh0


def loop_for(device: torch.device, dtype: torch.dtype):
    """`TritonMinLoop` for CUDA tensors when Triton is importable, else None."""
    if triton is None or device.type != "cuda":
        return None
    return TritonMinLoop
