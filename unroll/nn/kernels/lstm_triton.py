"""The fused LSTM's time loops in Triton, for CUDA: one kernel launch per step for all of a step's
elementwise work.

`TritonLoops` has the interface and effects of `lstm_fused.PythonLoops` (same buffers, same
contents: the tests hold the two equal, and equal to the reference cell `lstm_step`). Per step:

  forward   A[t] += h_{t-1} · W_hhᵀ on cuBLAS (``addmm_``, in place), then ONE `_forward_step`
            launch: the gate activations from the pre-activations (with the peepholes of i, f
            on c_{t-1}; i = 1 − f when coupled), c_t, the o gate (its peephole on c_t), tanh(c_t)
            and h_t. forget_bias is already in A: `_kernel_weights` folds it into the one bias.
  backward  dh = dY[t] + dG[t+1] · W_hh on cuBLAS (``addmm``), then ONE `_backward_step`
            launch: dG[t] for every gate and the cell gradient carried to step t − 1.

Buffers (time-major, contiguous; G = nb·H, nb = 4 blocks i, f, g, o or 3 blocks f, g, o when
coupled; one program handles BLOCK of the B·H units (b, j), reading gate k at A[t, b, k·H + j]):

    A   (T, B, G)  in: pre-activations; out: the activations i, f, g = tanh, o (what backward
                   reads, like the Python loops)
    Cs  (T, B, H)  c_t      TC (T, B, H) tanh(c_t)      Y (T, B, H) h_t
    dG  (T, B, G)  gradients of the gate pre-activations (backward)

Precision: the step kernels compute in float32 (float64 for float64 tensors). In bfloat16 and
float16 the cell state is carried between steps in a float32 buffer (B, H) — rounding it to 16
bits at every step would compound over T — while A, Cs, TC and Y (what backward reads) are
stored in the tensors' dtype, as cuDNN keeps its reserve space; the cell gradient is carried in
float32 in backward the same way. The recurrent GEMMs run in the tensors' dtype with cuBLAS's
float32 accumulation.

Persistent kernels (opt-in, ``UNROLL_TRITON_PERSISTENT=1``; stretch, unmeasured): ONE launch per
pass for the whole sequence, for batch ≤ 64 and H ≤ 256. Each program owns 16 hidden units j,
keeps their rows of W_hh (forward: the recurrent GEMM is tl.dot inside the kernel) or columns
(backward: dh = dG[t+1] · W_hh) and their cell state (or its gradient) on chip for all T steps,
and waits at a grid-wide barrier (`_grid_sync`) after each step, since the next step reads every
program's h_t (or dG[t]). The same buffers, same contents. The barrier needs every program
resident at once: at most one program per SM. Where they do not apply, the step loops run.

CUDA graphs: the loops do no host sync, allocate only fixed-size buffers and branch only on
shapes, so a captured step (`unroll.engine.cuda_graphs.GraphedStep`) captures them whole.
Outside a capture, repeated calls with the same shapes replay a cached captured graph of the
whole loop (`GraphCache`: what it guarantees is in its docstring).

`loops(device, dtype, reference)` (called by `lstm_fused.time_loops`) returns `TritonLoops` when
Triton is importable, the kernels compile for this device and dtype, and a one-time probe on
tiny shapes agrees with the reference loops; else None, and `unavailable_reason()` says why.
``UNROLL_TRITON=0`` turns the Triton loops off; ``UNROLL_TRITON_GRAPHS=0`` the graph cache;
``UNROLL_TRITON_PERSISTENT=1`` turns the persistent kernels on.

Tests run the kernels on the CPU in Triton's interpreter (``TRITON_INTERPRET=1``, set before
Triton is imported): `TritonLoops` runs on CPU tensors there, for tests only.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError as e:  # an optional dependency (the "triton" extra)
    triton = tl = None
    _IMPORT_ERROR = f"Triton is not installed ({e}); pip install 'unroll[triton]'"
else:
    _IMPORT_ERROR = None

ENV = "UNROLL_TRITON"
GRAPHS_ENV = "UNROLL_TRITON_GRAPHS"
DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)
PERSISTENT_ENV = "UNROLL_TRITON_PERSISTENT"
# The persistent kernels (opt-in, UNROLL_TRITON_PERSISTENT=1): one launch per layer, direction
# and pass; each program keeps the W_hh rows (forward) or columns (backward) of its
# PERSISTENT_UNITS hidden units in registers for all T steps — nb·BK·PERSISTENT_UNITS values with
# BK = H rounded up to a power of two, at most PERSISTENT_MAX_TILE (H ≤ 256) — and waits for
# the whole grid after each step (the next step reads every program's h_t, or dG_t).
PERSISTENT_UNITS = 16  # tl.dot needs ≥ 16 in each dimension
PERSISTENT_MAX_TILE = 16384
PERSISTENT_MAX_BATCH = 64
# Units (b, j) per program. At the PTB shapes (B·H = 4000 to 13000) 256 gives 16 to 51
# programs, one wave on any recent GPU; the step is latency-bound either way.
MAX_BLOCK = 256


def _off(name: str) -> bool:
    return os.environ.get(name, "1").strip().lower() in ("0", "off", "false", "no")


def _on(name: str) -> bool:
    return os.environ.get(name, "0").strip().lower() in ("1", "on", "true", "yes")


if triton is not None:

    @triton.jit
    def _sigmoid(a):
        return 1.0 / (1.0 + tl.exp(-a))

    @triton.jit
    def _tanh(a):
        # 1 − 2/(e^{2a} + 1): exact limits ±1 when e^{2a} overflows or vanishes (no inf/inf).
        return 1.0 - 2.0 / (tl.exp(2.0 * a) + 1.0)

    # INTERP (a constexpr of every kernel): the kernels run in Triton's CPU interpreter, whose
    # bfloat16 support differs from the GPU's: its conversion from float32 truncates, and its
    # tl.dot multiplies bfloat16 bit patterns as integers. `_to` and `_dot` work around both.

    @triton.jit
    def _to(x, ty: tl.constexpr, INTERP: tl.constexpr):
        """x in dtype ty; in the interpreter rounded to bfloat16 by bit arithmetic, to nearest
        even as the GPU's conversion does."""
        if INTERP and ty == tl.bfloat16:
            bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
            bits += 0x7FFF + ((bits >> 16) & 1)
            return (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        return x.to(ty)

    @triton.jit
    def _load_gates(a, H, mask, COUPLED: tl.constexpr, ACC: tl.constexpr, CACHE: tl.constexpr = ""):
        """The four gate values of units at ``a`` (block k at a + k·H; i, f, g, o, or f, g, o when
        coupled — then the returned i is a placeholder, never used). CACHE: tl.load's
        cache_modifier (".cg" for data other programs wrote during this launch)."""
        if COUPLED:
            f = tl.load(a, mask=mask, other=0.0, cache_modifier=CACHE).to(ACC)
            g = tl.load(a + H, mask=mask, other=0.0, cache_modifier=CACHE).to(ACC)
            o = tl.load(a + 2 * H, mask=mask, other=0.0, cache_modifier=CACHE).to(ACC)
            i = f
        else:
            i = tl.load(a, mask=mask, other=0.0, cache_modifier=CACHE).to(ACC)
            f = tl.load(a + H, mask=mask, other=0.0, cache_modifier=CACHE).to(ACC)
            g = tl.load(a + 2 * H, mask=mask, other=0.0, cache_modifier=CACHE).to(ACC)
            o = tl.load(a + 3 * H, mask=mask, other=0.0, cache_modifier=CACHE).to(ACC)
        return i, f, g, o

    @triton.jit
    def _store_gates(a, H, mask, i, f, g, o, COUPLED: tl.constexpr, INTERP: tl.constexpr):
        out = a.dtype.element_ty
        if COUPLED:
            tl.store(a, _to(f, out, INTERP), mask=mask)
            tl.store(a + H, _to(g, out, INTERP), mask=mask)
            tl.store(a + 2 * H, _to(o, out, INTERP), mask=mask)
        else:
            tl.store(a, _to(i, out, INTERP), mask=mask)
            tl.store(a + H, _to(f, out, INTERP), mask=mask)
            tl.store(a + 2 * H, _to(g, out, INTERP), mask=mask)
            tl.store(a + 3 * H, _to(o, out, INTERP), mask=mask)

    @triton.jit
    def _cell_forward(
        a_i, a_f, a_g, a_o, c, peep_in, peep_o, j, mask, H,
        COUPLED: tl.constexpr, PEEP: tl.constexpr, ACC: tl.constexpr,
    ):  # fmt: skip
        """`lstm_step` from the pre-activations (recurrent term added) and c = c_{t-1}:
        returns i, f, g, o, c_t, tanh(c_t), h_t. Peepholes of unit j: peep_in (nb − 2, H) rows
        i, f (f alone when coupled) on c_{t-1}, peep_o (H,) on c_t."""
        if PEEP:
            a_f += tl.load(peep_in + (0 if COUPLED else H) + j, mask=mask, other=0.0).to(ACC) * c
        f = _sigmoid(a_f)
        if COUPLED:  # CIFG: i = 1 − f
            i = 1.0 - f
        else:
            if PEEP:
                a_i += tl.load(peep_in + j, mask=mask, other=0.0).to(ACC) * c
            i = _sigmoid(a_i)
        g = _tanh(a_g)
        c = f * c + i * g
        if PEEP:  # o sees c_t
            a_o += tl.load(peep_o + j, mask=mask, other=0.0).to(ACC) * c
        o = _sigmoid(a_o)
        tc = _tanh(c)
        return i, f, g, o, c, tc, o * tc

    @triton.jit
    def _cell_backward(
        i, f, g, o, c, tc, dh, dc, peep_in, peep_o, j, mask, H,
        COUPLED: tl.constexpr, PEEP: tl.constexpr, ACC: tl.constexpr,
    ):  # fmt: skip
        """The gradients of the pre-activations (dG_i, dG_f, dG_g, dG_o; dG_i a placeholder when
        coupled) and of c_{t-1}, from the activations, c = c_{t-1}, tc = tanh(c_t), dh = dL/dh_t
        and dc = dL/dc_t from the later steps."""
        # h_t = o ⊙ tanh(c_t), and o's pre-activation saw c_t through its peephole
        dG_o = dh * tc * o * (1.0 - o)
        dc += dh * o * (1.0 - tc * tc)
        if PEEP:
            dc += dG_o * tl.load(peep_o + j, mask=mask, other=0.0).to(ACC)
        dc_prev = dc * f
        if COUPLED:  # c_t = g + f ⊙ (c_{t-1} − g)
            dG_f = dc * (c - g) * f * (1.0 - f)
            dG_g = dc * (1.0 - f) * (1.0 - g * g)
            dG_i = dG_f
        else:  # c_t = f ⊙ c_{t-1} + i ⊙ g
            dG_i = dc * g * i * (1.0 - i)
            dG_f = dc * c * f * (1.0 - f)
            dG_g = dc * i * (1.0 - g * g)
            if PEEP:
                dc_prev += dG_i * tl.load(peep_in + j, mask=mask, other=0.0).to(ACC)
        if PEEP:
            w_cf = tl.load(peep_in + (0 if COUPLED else H) + j, mask=mask, other=0.0).to(ACC)
            dc_prev += dG_f * w_cf
        return dG_i, dG_f, dG_g, dG_o, dc_prev

    @triton.jit
    def _forward_step(
        A_t,  # (B, G) in: pre-activations of step t; out: activations
        c_prev,  # (B, H) c_{t-1}: c0, Cs[t-1], or the float32 carry
        Cs_t,  # (B, H) out: c_t
        TC_t,  # (B, H) out: tanh(c_t)
        Y_t,  # (B, H) out: h_t
        c_next,  # (B, H) float32 carry, out: c_t (used when CARRY)
        peep_in,  # (nb - 2, H) peepholes of i, f (f alone when coupled) on c_{t-1}
        peep_o,  # (H,) peephole of o on c_t
        N,  # B·H
        H,
        G,
        COUPLED: tl.constexpr,
        PEEP: tl.constexpr,
        CARRY: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK: tl.constexpr,
        INTERP: tl.constexpr,
    ):
        n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)  # unit b·H + j
        mask = n < N
        j = n % H
        a = A_t + (n // H) * G + j  # gate block k of unit (b, j) at a + k·H
        c = tl.load(c_prev + n, mask=mask, other=0.0).to(ACC)
        a_i, a_f, a_g, a_o = _load_gates(a, H, mask, COUPLED, ACC)
        i, f, g, o, c, tc, h = _cell_forward(
            a_i, a_f, a_g, a_o, c, peep_in, peep_o, j, mask, H, COUPLED, PEEP, ACC
        )
        _store_gates(a, H, mask, i, f, g, o, COUPLED, INTERP)
        out = A_t.dtype.element_ty
        tl.store(Cs_t + n, _to(c, out, INTERP), mask=mask)
        tl.store(TC_t + n, _to(tc, out, INTERP), mask=mask)
        tl.store(Y_t + n, _to(h, out, INTERP), mask=mask)
        if CARRY:
            tl.store(c_next + n, c.to(c_next.dtype.element_ty), mask=mask)

    @triton.jit
    def _backward_step(
        A_t,  # (B, G) activations of step t
        c_prev,  # (B, H) c_{t-1}
        TC_t,  # (B, H) tanh(c_t)
        dh,  # (B, H) dL/dh_t (dY[t] + dG[t+1] · W_hh)
        dCx_t,  # (B, H) dc_n of the sequences that end at step t (used when HAS_DCX)
        dc,  # (B, H) float32 (or float64) in: dL/dc_t from step t + 1; out: dL/dc_{t-1}
        dG_t,  # (B, G) out: gradients of the pre-activations
        peep_in,
        peep_o,
        N,
        H,
        G,
        COUPLED: tl.constexpr,
        PEEP: tl.constexpr,
        HAS_DCX: tl.constexpr,
        ACC: tl.constexpr,
        BLOCK: tl.constexpr,
        INTERP: tl.constexpr,
    ):
        n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = n < N
        j = n % H
        row = (n // H) * G + j
        dc_t = tl.load(dc + n, mask=mask, other=0.0).to(ACC)
        if HAS_DCX:
            dc_t += tl.load(dCx_t + n, mask=mask, other=0.0).to(ACC)
        dh_t = tl.load(dh + n, mask=mask, other=0.0).to(ACC)
        c = tl.load(c_prev + n, mask=mask, other=0.0).to(ACC)  # c_{t-1}
        tc = tl.load(TC_t + n, mask=mask, other=0.0).to(ACC)
        i, f, g, o = _load_gates(A_t + row, H, mask, COUPLED, ACC)
        dG_i, dG_f, dG_g, dG_o, dc_t = _cell_backward(
            i, f, g, o, c, tc, dh_t, dc_t, peep_in, peep_o, j, mask, H, COUPLED, PEEP, ACC
        )
        _store_gates(dG_t + row, H, mask, dG_i, dG_f, dG_g, dG_o, COUPLED, INTERP)
        tl.store(dc + n, _to(dc_t, dc.dtype.element_ty, INTERP), mask=mask)

    @triton.jit
    def _dot(x, w, PRECISION: tl.constexpr, ACC: tl.constexpr, INTERP: tl.constexpr):
        """x · w accumulated in ACC (in the interpreter from float32 copies: bfloat16 products
        are exact in float32, so this is the GPU's math up to the order of the sums)."""
        if INTERP:
            return tl.dot(x.to(ACC), w.to(ACC), input_precision="ieee", out_dtype=ACC)
        return tl.dot(x, w, input_precision=PRECISION, out_dtype=ACC)

    @triton.jit
    def _grid_sync(counter, target):
        """Wait until ``target`` arrivals at ``counter`` (an int32 in global memory, zero at launch)
        counting this one: a grid-wide barrier, for a grid whose programs are all resident at
        once (a program spinning here would otherwise wait for one that never starts)."""
        tl.debug_barrier()  # every thread of this program has issued its stores
        seen = tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu") + 1
        while seen < target:
            seen = tl.atomic_add(counter, 0, sem="acquire", scope="gpu")
        tl.debug_barrier()

    @triton.jit
    def _persistent_forward(
        A,  # (T, B, G) in: pre-activations; out: activations
        h0,  # (B, H)
        c0,  # (B, H)
        w_hh,  # (G, H)
        peep_in,
        peep_o,
        Cs,  # (T, B, H) out
        TC,  # (T, B, H) out
        Y,  # (T, B, H) out
        sync,  # int32 zero: the grid barrier's counter
        T,
        B,
        H,
        G,
        COUPLED: tl.constexpr,
        PEEP: tl.constexpr,
        ACC: tl.constexpr,
        INTERP: tl.constexpr,
        BB: tl.constexpr,  # batch rows, padded (≥ 16 for tl.dot)
        BH: tl.constexpr,  # units per program
        BK: tl.constexpr,  # H padded
        PRECISION: tl.constexpr,  # tl.dot's input_precision
    ):
        P = tl.num_programs(0)
        b = tl.arange(0, BB)[:, None]  # (BB, 1)
        j = tl.program_id(0) * BH + tl.arange(0, BH)[None, :]  # (1, BH): this program's units
        k = tl.arange(0, BK)
        mask = (b < B) & (j < H)  # (BB, BH)
        h_mask = (b < B) & (k[None, :] < H)  # (BB, BK)
        # This program's rows of W_hh, on chip for all T steps: W_x[kk, jj] = w_hh[x·H + j, kk]
        w = w_hh + j * H + k[:, None]  # (BK, BH)
        w_mask = (k[:, None] < H) & (j < H)
        W_i, W_f, W_g, W_o = _load_gates(w, H * H, w_mask, COUPLED, w_hh.dtype.element_ty)
        c = tl.load(c0 + b * H + j, mask=mask, other=0.0).to(ACC)  # c_{t-1}, on chip too
        out = A.dtype.element_ty
        for t in range(T):
            first = tl.full((1, 1), t, tl.int32) == 0  # a tensor: masks take no Python bool
            # h_{t-1}: h0, or every program's h from the last step (.cg: from L2, not a stale L1)
            h_first = tl.load(h0 + b * H + k[None, :], mask=h_mask & first, other=0.0)
            hp = Y + (t - 1) * B * H + b * H + k[None, :]
            h = tl.load(hp, mask=h_mask & ~first, other=0.0, cache_modifier=".cg")
            h = tl.where(first, h_first, h)
            a = A + t * B * G + b * G + j
            a_i, a_f, a_g, a_o = _load_gates(a, H, mask, COUPLED, ACC)
            a_f += _dot(h, W_f, PRECISION, ACC, INTERP)
            if not COUPLED:
                a_i += _dot(h, W_i, PRECISION, ACC, INTERP)
            a_g += _dot(h, W_g, PRECISION, ACC, INTERP)
            a_o += _dot(h, W_o, PRECISION, ACC, INTERP)
            i, f, g, o, c, tc, h_t = _cell_forward(
                a_i, a_f, a_g, a_o, c, peep_in, peep_o, j, j < H, H, COUPLED, PEEP, ACC
            )
            _store_gates(a, H, mask, i, f, g, o, COUPLED, INTERP)
            s = t * B * H + b * H + j
            tl.store(Cs + s, _to(c, out, INTERP), mask=mask)
            tl.store(TC + s, _to(tc, out, INTERP), mask=mask)
            tl.store(Y + s, _to(h_t, out, INTERP), mask=mask)
            _grid_sync(sync, (t + 1) * P)  # step t + 1 reads every program's h_t

    @triton.jit
    def _persistent_backward(
        A,  # (T, B, G) activations
        Cs,  # (T, B, H)
        TC,  # (T, B, H)
        c0,  # (B, H)
        w_hh,  # (G, H)
        peep_in,
        peep_o,
        dY,  # (T, B, H)
        dCx,  # (T, B, H) (used when HAS_DCX)
        dc,  # (B, H) in: dc_n; out: dL/dc_0
        dG,  # (T, B, G) out
        sync,
        T,
        B,
        H,
        G,
        COUPLED: tl.constexpr,
        PEEP: tl.constexpr,
        HAS_DCX: tl.constexpr,
        ACC: tl.constexpr,
        INTERP: tl.constexpr,
        BB: tl.constexpr,
        BH: tl.constexpr,
        BK: tl.constexpr,
        PRECISION: tl.constexpr,
    ):
        P = tl.num_programs(0)
        b = tl.arange(0, BB)[:, None]
        j = tl.program_id(0) * BH + tl.arange(0, BH)[None, :]
        k = tl.arange(0, BK)
        mask = (b < B) & (j < H)
        g_mask = (b < B) & (k[None, :] < H)  # (BB, BK): one gate block of dG[t+1]
        # dh_t[:, j] = Σ_x dG[t+1][:, x·H + kk] · w_hh[x·H + kk, j]: W_x[kk, jj] = w_hh[x·H + kk, j]
        w = w_hh + k[:, None] * H + j
        w_mask = (k[:, None] < H) & (j < H)
        W_i, W_f, W_g, W_o = _load_gates(w, H * H, w_mask, COUPLED, w_hh.dtype.element_ty)
        dc_t = tl.load(dc + b * H + j, mask=mask, other=0.0).to(ACC)  # on chip for all steps
        out = dG.dtype.element_ty
        for s in range(T):
            t = T - 1 - s
            t_ = tl.full((1, 1), t, tl.int32)  # a tensor: masks take no Python bool
            u = t * B * H + b * H + j
            dh = tl.load(dY + u, mask=mask, other=0.0).to(ACC)
            later = dG + (t + 1) * B * G + b * G + k[None, :]  # every program's dG[t+1]
            d_i, d_f, d_g, d_o = _load_gates(later, H, g_mask & (t_ < T - 1), COUPLED, out, ".cg")
            dh += _dot(d_f, W_f, PRECISION, ACC, INTERP)
            if not COUPLED:
                dh += _dot(d_i, W_i, PRECISION, ACC, INTERP)
            dh += _dot(d_g, W_g, PRECISION, ACC, INTERP)
            dh += _dot(d_o, W_o, PRECISION, ACC, INTERP)
            if HAS_DCX:
                dc_t += tl.load(dCx + u, mask=mask, other=0.0).to(ACC)
            c = tl.load(c0 + b * H + j, mask=mask & (t_ == 0), other=0.0).to(ACC)
            c += tl.load(Cs + u - B * H, mask=mask & (t_ > 0), other=0.0).to(ACC)
            tc = tl.load(TC + u, mask=mask, other=0.0).to(ACC)
            row = t * B * G + b * G + j
            i, f, g, o = _load_gates(A + row, H, mask, COUPLED, ACC)
            dG_i, dG_f, dG_g, dG_o, dc_t = _cell_backward(
                i, f, g, o, c, tc, dh, dc_t, peep_in, peep_o, j, j < H, H, COUPLED, PEEP, ACC
            )
            _store_gates(dG + row, H, mask, dG_i, dG_f, dG_g, dG_o, COUPLED, INTERP)
            _grid_sync(sync, (s + 1) * P)  # step t − 1 reads every program's dG[t]
        tl.store(dc + b * H + j, _to(dc_t, dc.dtype.element_ty, INTERP), mask=mask)

    # True when TRITON_INTERPRET=1 made the kernels above run in Triton's CPU interpreter.
    _INTERPRETED = type(_forward_step).__name__ == "InterpretedFunction"


def _step_config(A: Tensor, H: int, peep_in: Tensor | None) -> dict:
    """The launch constants shared by the forward and backward step kernels."""
    N = A.shape[1] * H
    return {
        "N": N,
        "H": H,
        "G": A.shape[2],
        "COUPLED": A.shape[2] // H == 3,
        "PEEP": peep_in is not None,
        "ACC": tl.float64 if A.dtype == torch.float64 else tl.float32,
        "BLOCK": min(MAX_BLOCK, max(16, triton.next_power_of_2(N))),
        "INTERP": _INTERPRETED,
    }


def _persistent_config(A: Tensor, H: int, peep_in: Tensor | None) -> tuple | None:
    """Grid and constants of the persistent kernels, or None where they do not apply: turned off
    (the default), batch > PERSISTENT_MAX_BATCH, W_hh too large for the programs' registers, or
    more programs than can be resident at once (the grid barrier needs them all running; in
    the interpreter, which runs programs one after another, that is one)."""
    if not _on(PERSISTENT_ENV):
        return None
    T, B, G = A.shape
    nb, BH, BK = G // H, PERSISTENT_UNITS, max(16, triton.next_power_of_2(H))
    if B > PERSISTENT_MAX_BATCH or nb * BK * BH > PERSISTENT_MAX_TILE:
        return None
    programs = triton.cdiv(H, BH)
    if programs > _resident_programs(A.device):
        return None
    fp32_tf32 = A.dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    return (programs,), {
        "COUPLED": nb == 3,
        "PEEP": peep_in is not None,
        "ACC": tl.float64 if A.dtype == torch.float64 else tl.float32,
        "INTERP": _INTERPRETED,
        "BB": max(16, triton.next_power_of_2(B)),
        "BH": BH,
        "BK": BK,
        "PRECISION": "tf32" if fp32_tf32 else "ieee",  # as cuBLAS does for the step loops
    }


def _resident_programs(device: torch.device) -> int:
    """How many programs of a persistent kernel surely run at once: one per SM (each, 8 warps
    holding up to 16384 weights, uses most of an SM's registers); in the interpreter, one."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).multi_processor_count
    return 1


def _wide(dtype: torch.dtype) -> torch.dtype:
    """The dtype a step carries the cell state (and its gradient) in between steps."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_contiguous(**tensors: Tensor | None) -> None:
    # The kernels index flat (b·H + j, b·G + k·H + j); a strided buffer would be misread.
    for name, t in tensors.items():
        if t is not None and not t.is_contiguous():
            raise ValueError(f"TritonLoops: {name} must be contiguous")


def forward_loop(A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y) -> None:
    """The forward time loop, eager (`TritonLoops.forward` without the graph cache)."""
    T, B, G = A.shape
    H = h0.shape[1]
    _check_contiguous(A=A, h0=h0, c0=c0, Cs=Cs, TC=TC, Y=Y, peep_in=peep_in, peep_o=peep_o)
    persistent = _persistent_config(A, H, peep_in)
    if persistent is not None:
        grid, cfg = persistent
        sync = torch.zeros((), dtype=torch.int32, device=A.device)
        unused = A
        peeps = (unused if peep_in is None else peep_in, unused if peep_o is None else peep_o)
        _persistent_forward[grid](
            A, h0, c0, w_hh, *peeps, Cs, TC, Y, sync, T, B, H, G, num_warps=8, **cfg
        )  # fmt: skip
        return
    cfg = _step_config(A, H, peep_in)
    grid = (triton.cdiv(cfg["N"], cfg["BLOCK"]),)
    # 16-bit storage: c is carried in float32 between steps (the copy in Cs[t] is for backward).
    carry = c0.to(_wide(A.dtype), copy=True) if _wide(A.dtype) != A.dtype else None
    w_hh_t = w_hh.t()
    unused = A  # a pointer for the peephole arguments of a kernel without peepholes
    h = h0
    for t in range(T):
        A[t].addmm_(h, w_hh_t)  # the recurrent term on cuBLAS, into the pre-activations
        if carry is not None:
            c_prev = c_next = carry
        else:
            c_prev, c_next = (c0 if t == 0 else Cs[t - 1]), unused
        _forward_step[grid](
            A[t],
            c_prev,
            Cs[t],
            TC[t],
            Y[t],
            c_next,
            unused if peep_in is None else peep_in,
            unused if peep_o is None else peep_o,
            CARRY=carry is not None,
            **cfg,
        )
        h = Y[t]


def backward_loop(A, Cs, TC, c0, w_hh, peep_in, peep_o, dY, dCx, dc, dG) -> None:
    """The backward time loop, eager (`TritonLoops.backward` without the graph cache)."""
    T, B, G = A.shape
    H = c0.shape[1]
    _check_contiguous(A=A, Cs=Cs, TC=TC, c0=c0, dY=dY, dCx=dCx, dc=dc, dG=dG)
    _check_contiguous(peep_in=peep_in, peep_o=peep_o)
    persistent = _persistent_config(A, H, peep_in)
    if persistent is not None:
        grid, cfg = persistent
        sync = torch.zeros((), dtype=torch.int32, device=A.device)
        unused = A
        peeps = (unused if peep_in is None else peep_in, unused if peep_o is None else peep_o)
        dcx = unused if dCx is None else dCx
        _persistent_backward[grid](
            A, Cs, TC, c0, w_hh, *peeps, dY, dcx, dc, dG, sync, T, B, H, G,
            HAS_DCX=dCx is not None, num_warps=8, **cfg,
        )  # fmt: skip
        return
    cfg = _step_config(A, H, peep_in)
    grid = (triton.cdiv(cfg["N"], cfg["BLOCK"]),)
    wide = _wide(A.dtype)
    carry = dc if dc.dtype == wide else dc.to(wide)  # dL/dc carried in float32 (or 64)
    dh = torch.empty_like(c0) if T > 1 else None
    unused = A
    for t in range(T - 1, -1, -1):
        if t == T - 1:
            dh_t = dY[t]
        else:  # the recurrent term on cuBLAS: dh_t = dY[t] + dG[t+1] · W_hh
            dh_t = torch.addmm(dY[t], dG[t + 1], w_hh, out=dh)
        _backward_step[grid](
            A[t],
            c0 if t == 0 else Cs[t - 1],
            TC[t],
            dh_t,
            unused if dCx is None else dCx[t],
            carry,
            dG[t],
            unused if peep_in is None else peep_in,
            unused if peep_o is None else peep_o,
            HAS_DCX=dCx is not None,
            **cfg,
        )
    if carry is not dc:
        dc.copy_(carry)


class GraphCache:
    """Captured CUDA graphs of whole time loops, replayed for repeated calls with the same shapes.

    A graph replays fixed addresses, so each entry owns static copies of every buffer its loop
    touches: a call copies its inputs in, replays, and copies its outputs out, all on the
    caller's current stream. What it guarantees:
      - a replay reads and writes only the entry's own buffers, never a caller's tensor that may
        since have been freed or reused (the weights are copied in too);
      - everything a graph bakes in is in its key: the loop, every buffer's shape and dtype
        (None for an absent one: peepholes, dCx), the device and the current stream (two
        streams never share an entry's buffers); the copy-in, replay, copy-out sequence of a
        call is enqueued under a lock, so threads on one stream do not interleave it;
      - it is never used while a stream is being captured (an outer graph, e.g. the language
        model's captured step, captures the eager loop instead), and a shape is captured on
        its second call, so a one-off shape costs no capture.
    A capture that fails turns the cache off for the process (``disabled`` says why, and a
    UserWarning says so once, from whichever thread captured); that call's results come from
    the eager warm-up run. The price: capturing syncs the device once
    per entry, and each entry keeps its buffers and graph memory until evicted (at most
    ``capacity`` entries, least recently used first; `clear` frees them all).
    Results equal the eager loops' up to the GEMM algorithm cuBLAS picks inside a capture.
    ``capture(fn)`` records fn and returns a replay function; ``context(tensor)`` says under
    which device/stream key the cache applies now, or None (eager). Both are arguments so that
    the CPU tests can run the bookkeeping with a stand-in that replays by calling fn again.
    """

    def __init__(
        self,
        capture: Callable[[Callable[[], None]], Callable[[], None]],
        context: Callable[[Tensor], object | None],
        capacity: int = 8,
    ) -> None:
        self.capture, self.context, self.capacity = capture, context, capacity
        self.entries: OrderedDict = OrderedDict()  # key -> (static buffers, replay)
        self.seen: OrderedDict = OrderedDict()  # keys called once (captured on the next call)
        self.lock = threading.Lock()
        self.disabled: str | None = None  # why the cache is off for good (a capture failed)

    def run(self, loop, tensors: dict, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> bool:
        """``loop(**tensors)`` through a cached graph; False (nothing done) when the caller
        should run it eagerly instead."""
        where = None if self.disabled else self.context(tensors[inputs[0]])
        if where is None:
            return False
        shapes = tuple(
            (k, None if t is None else (tuple(t.shape), t.dtype)) for k, t in tensors.items()
        )
        key = (loop.__name__, where, shapes)
        with self.lock:
            entry = self.entries.get(key)
            if entry is None and key not in self.seen:
                self.seen[key] = None
                if len(self.seen) > 8 * self.capacity:
                    self.seen.popitem(last=False)
                return False
            if entry is None:
                static = {
                    k: None
                    if t is None
                    else torch.empty_like(t, memory_format=torch.contiguous_format)
                    for k, t in tensors.items()
                }
                self._copy(static, tensors, inputs)
                loop(**static)  # the warm-up (compiles, picks GEMM algorithms) computes this call
                try:
                    replay = self.capture(lambda: loop(**static))
                except Exception as e:  # noqa: BLE001 - a failed capture: eager from now on
                    self.disabled = f"capture failed ({type(e).__name__}: {e})"
                    # Once (the cache stays off), from whichever thread captured: autograd runs
                    # CUDA backward on its own thread, where nothing else would show it.
                    warnings.warn(
                        f"unroll: the Triton LSTM loops' graph cache is off for this process: "
                        f"{self.disabled}; the loops run eagerly (same results, more launches)",
                        stacklevel=2,
                    )
                else:
                    self.entries[key] = static, replay
                    if len(self.entries) > self.capacity:
                        self.entries.popitem(last=False)
            else:
                self.entries.move_to_end(key)
                static, replay = entry
                self._copy(static, tensors, inputs)
                replay()
            self._copy(tensors, static, outputs)
        return True

    @staticmethod
    def _copy(dst: dict, src: dict, names: tuple[str, ...]) -> None:
        for k in names:
            if src[k] is not None:
                dst[k].copy_(src[k])

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.seen.clear()


def _cuda_capture(fn: Callable[[], None]) -> Callable[[], None]:
    graph = torch.cuda.CUDAGraph()
    # thread_local: the autograd engine runs CUDA backward on its own thread
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        fn()
    return graph.replay


def _cuda_context(t: Tensor) -> object | None:
    if t.device.type != "cuda" or _off(GRAPHS_ENV) or torch.cuda.is_current_stream_capturing():
        return None
    return t.device, torch.cuda.current_stream(t.device).cuda_stream


graphs = GraphCache(_cuda_capture, _cuda_context)


class TritonLoops:
    """The time loops with Triton step kernels (module docstring): `PythonLoops`' interface."""

    @staticmethod
    def forward(A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y) -> None:
        """A (T, B, G) pre-activations (input projection and bias added) -> activations
        i, f, g = tanh(·), o in place; fills Cs = c_t, TC = tanh(c_t), Y = h_t (T, B, H)."""
        tensors = dict(A=A, h0=h0, c0=c0, w_hh=w_hh, peep_in=peep_in, peep_o=peep_o)
        tensors.update(Cs=Cs, TC=TC, Y=Y)
        inputs = ("A", "h0", "c0", "w_hh", "peep_in", "peep_o")
        if not graphs.run(forward_loop, tensors, inputs, ("A", "Cs", "TC", "Y")):
            forward_loop(**tensors)

    @staticmethod
    def backward(A, Cs, TC, c0, w_hh, peep_in, peep_o, dY, dCx, dc, dG) -> None:
        """Fills dG (T, B, G) with the gradients of the gate pre-activations.

        dY (T, B, H): dL/dh_t from above, dh_n already added at each sequence's last step;
        dCx (T, B, H) or None: dc_n placed at each sequence's last step (variable lengths);
        dc (B, H) in: dc_n (zeros with dCx), out: dL/dc_0.
        """
        tensors = dict(A=A, Cs=Cs, TC=TC, c0=c0, w_hh=w_hh, peep_in=peep_in, peep_o=peep_o)
        tensors.update(dY=dY, dCx=dCx, dc=dc, dG=dG)
        inputs = ("A", "Cs", "TC", "c0", "w_hh", "peep_in", "peep_o", "dY", "dCx", "dc")
        if not graphs.run(backward_loop, tensors, inputs, ("dG", "dc")):
            backward_loop(**tensors)


# --- the one-time choice ------------------------------------------------------------------------

_lock = threading.Lock()
_probed: dict = {}  # (device, dtype) -> None (works) or why not


def _key(device, dtype: torch.dtype) -> tuple[torch.device, torch.dtype]:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # "cuda" names the same as "cuda:0"
        device = torch.device("cuda", 0)
    return device, dtype


def _why_not(device: torch.device, dtype: torch.dtype) -> str | None:
    if _IMPORT_ERROR is not None:
        return _IMPORT_ERROR
    if device.type != "cuda":
        return f"Triton loops run on CUDA (device {device})"
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return "TRITON_INTERPRET=1: the kernels would run in Triton's CPU interpreter"
    if dtype not in DTYPES:
        return f"no Triton step kernels for {dtype}"
    return None


def _probe(device: torch.device, dtype: torch.dtype, reference) -> str | None:
    """Run both loops on tiny shapes (peepholes; coupled without) and compare; None if they
    agree."""
    tol = {torch.float32: 1e-4, torch.float64: 1e-10}.get(dtype, 5e-2)
    gen = torch.Generator(device="cpu").manual_seed(0)
    T, B, H = 3, 2, 16
    for nb, peephole in ((4, True), (3, False)):  # each value of COUPLED and PEEP
        r = [torch.randn(*s, generator=gen) * 0.5 for s in ((T, B, nb * H), (B, H), (B, H))]
        r += [torch.randn(*s, generator=gen) * 0.5 for s in ((nb * H, H), (nb - 2, H), (H,))]
        r += [torch.randn(T, B, H, generator=gen)]
        A, h0, c0, w_hh, peep_in, peep_o, dY = (v.to(device, dtype) for v in r)
        if not peephole:
            peep_in = peep_o = None
        results = []
        for run_forward, run_backward in (
            (forward_loop, backward_loop),
            (reference.forward, reference.backward),
        ):
            a = A.clone()
            Cs, TC, Y = (torch.empty_like(dY) for _ in range(3))
            run_forward(a, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y)
            dc, dG = torch.zeros_like(c0), torch.empty_like(a)
            run_backward(a, Cs, TC, c0, w_hh, peep_in, peep_o, dY, None, dc, dG)
            results.append((a, Cs, TC, Y, dc, dG))
        for got, want in zip(*results):
            if not torch.allclose(got.float(), want.float(), rtol=tol, atol=tol):
                err = (got.float() - want.float()).abs().max().item()
                return (
                    f"the probe disagrees with the reference loops ({dtype}, max error {err:.3g})"
                )
    return None


def loops(device: torch.device, dtype: torch.dtype, reference):
    """`TritonLoops` for tensors of this device and dtype, or None (`unavailable_reason`).

    ``reference``: the loops to hold the probe against (`lstm_fused.PythonLoops`; passed in, so
    that this module does not import lstm_fused, which imports it). The probe runs once per
    device and dtype, on the first call outside a CUDA-graph capture; during a capture before
    any probe, None (the capturable Python loops run).
    """
    if _off(ENV):
        return None
    key = _key(device, dtype)
    device = key[0]
    if key not in _probed:
        reason = _why_not(device, dtype)
        if reason is not None:
            _probed[key] = reason
        elif torch.cuda.is_current_stream_capturing():
            return None
        else:
            with _lock:
                if key not in _probed:
                    try:
                        _probed[key] = _probe(device, dtype, reference)
                    except Exception as e:  # noqa: BLE001 - failing to compile or run: fall back
                        _probed[key] = f"the Triton kernels failed ({type(e).__name__}: {e})"
    return None if _probed[key] else TritonLoops


def unavailable_reason(device="cuda", dtype: torch.dtype = torch.float32) -> str | None:
    """None when `time_loops` gives this device and dtype the Triton loops, else why not."""
    if _off(ENV):
        return f"turned off by {ENV}={os.environ[ENV]}"
    key = _key(device, dtype)
    if key in _probed:
        return _probed[key]
    return _why_not(*key) or "not probed yet (the first fused LSTM call on it probes)"
