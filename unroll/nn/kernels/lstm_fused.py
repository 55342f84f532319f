"""Fused LSTM: a whole sequence (one layer, one direction) as one autograd Function.

Same math as `unroll.nn.cells.lstm.lstm_step` (standard, forget_bias, peephole, coupled, and the
recurrent dropouts: Gal's mask m_h on h_{t-1} entering the gates, Semeniuta's m_g on the cell
update g — each (B, H), drawn once per sequence by the layer and passed in; zoneout's z for c
and h, (T, B, H) each, drawn before the loop or the constant p at eval), laid out
for speed in the haste/cuDNN way. `LSTMFunction` does the work that is whole-sequence GEMMs
(the input projection for all T steps into the gate buffer A; the weight gradients over all
T·B rows) and hands the two time loops to one of three interchangeable implementations:

  `PythonLoops`  plain PyTorch ops, every device and dtype (CUDA, and the fallback on CPU).
            Forward step: one GEMM for the recurrent term (`addmm_`, or oneDNN with the
            weight prepacked once per call at large H, `gemm.onednn_packed_weight`) and a
            handful of in-place pointwise ops (one sigmoid for i, f, g and o: the g
            pre-activation is doubled and tanh(a) = 2σ(2a) − 1). Backward: every factor that
            does not depend on the incoming gradient is computed for all steps before the
            loop, so a step is one GEMM and four pointwise ops.
  compiled  `lstm_cpu.cpp`, float32/float64 on CPU, built on first use
            (`unroll.nn.kernels.lstm_cpu`): the same GEMMs, and all of a step's gate math in ONE
            vectorized pass over the (B, H) units — at PTB sizes the ~10 ATen calls per step
            from Python cost more than the arithmetic.
  Triton    `lstm_triton.py`, on CUDA: per step the recurrent GEMM on cuBLAS and ONE Triton
            kernel for all of the step's elementwise work (`unroll.nn.kernels.lstm_triton`),
            repeated shapes replayed from cached CUDA graphs.

`time_loops` picks: compiled on the CPU, Triton on CUDA, where they can be had (each probed
once against the Python loops), else Python. Tests hold them equal.

Buffers (time-major, G = nb·H gate rows with nb = 4 gate blocks i, f, g, o, or nb = 3 blocks
f, g, o when coupled — the kernel boundary drops the unused input-gate rows, `_kernel_weights`):

    A   (T, B, G)  pre-activations, overwritten in place by the activations i, f, g = tanh, o
    Cs  (T, B, H)  c_t            TC (T, B, H)  tanh(c_t)          Y (T, B, H)  h_t
    dG  (T, B, G)  gradients of the gate pre-activations (backward)

Higher-order gradients and `torch.func`: the hand-written backward is first-order. When a
backward is itself differentiated (``create_graph=True``: gradient penalties, `torch.func.grad`,
`vjp`, `jacrev`, which always build a graph) the gradients are computed instead through the
reference cell (`unroll.nn.cells.lstm.lstm_step`) from the saved inputs, so they are
differentiable to any order; `torch.func.jvp`/`jacfwd` (forward mode) take the same reference,
and `torch.vmap` folds the mapped dimension into the batch (`LSTMFunction.vmap`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from unroll.nn.cells.lstm import lstm_step
from unroll.nn.kernels.gemm import gemm_nt, onednn_matmul, weight_gradient


def _kernel_weights(
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    forget_bias: float,
    coupled: bool,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """PyTorch layout (4H rows i, f, g, o; two biases) -> kernel layout.

    Kernel layout: rows i, f, g, o (or f, g, o when coupled: i = 1 − f needs no rows) and ONE
    bias b = b_ih + b_hh with forget_bias added to the f rows. Differentiable, so gradients
    reach the PyTorch-layout parameters (the dropped input-gate rows get zeros).
    """
    H = weight_hh.shape[1]
    first = H if coupled else 0  # coupled: drop the input-gate rows
    w_ih, w_hh = weight_ih, weight_hh
    if coupled:  # (a slice costs a zero-filled copy of the gradient in backward)
        w_ih, w_hh = weight_ih[first:], weight_hh[first:]
    f_rows = slice(0, H) if coupled else slice(H, 2 * H)
    if bias_ih is not None:
        bias = bias_ih[first:] + bias_hh[first:]
        if forget_bias:
            bias[f_rows] += forget_bias
    elif forget_bias:
        bias = weight_hh.new_zeros(weight_hh.shape[0] - first)
        bias[f_rows] = forget_bias
    else:
        bias = None
    return w_ih, w_hh, bias


def lstm_sequence(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None = None,
    bias_hh: Tensor | None = None,
    weight_ci: Tensor | None = None,
    weight_cf: Tensor | None = None,
    weight_co: Tensor | None = None,
    *,
    forget_bias: float = 0.0,
    coupled: bool = False,
    lengths: Tensor | None = None,
    loops=None,
    mask_h: Tensor | None = None,
    mask_g: Tensor | None = None,
    keep_c: Tensor | None = None,
    keep_h: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Run one LSTM layer/direction over x (T, B, C) with PyTorch-layout parameters.

    Returns y (T, B, H) (zero at padded steps), h_n and c_n (B, H). ``lengths`` (B,) ints in
    [1, T]: the state at each sequence's last valid step is returned. Steps past a sequence's
    end are computed (they cannot influence earlier steps) but their outputs are zeroed and
    their state discarded, so no host sync or data-dependent branching is needed.
    Peephole weights (H,) are None without peepholes; with coupled, weight_ci is unused.
    ``loops``: the time loops (`PythonLoops` or the compiled CPU ones); None picks the fastest
    for x's device and dtype (`time_loops`). mask_h, mask_g (B, H): the recurrent dropout masks
    (Gal & Ghahramani 2016 on h_{t-1}; Semeniuta et al. 2016 on g), None = none; loops without
    them (Triton's) give way to `PythonLoops` then. keep_c, keep_h (T, B, H): zoneout's z
    (Krueger et al. 2017; 1 keeps the previous value), both or neither.
    """
    w_ih, w_hh, bias = _kernel_weights(weight_ih, weight_hh, bias_ih, bias_hh, forget_bias, coupled)
    peep_in = None  # diagonal peepholes of the gates that see c_{t-1}: (nb - 2, H)
    if weight_cf is not None:
        peep_in = weight_cf.unsqueeze(0) if coupled else torch.stack((weight_ci, weight_cf))
    last = None
    if lengths is not None:
        last = (lengths.to(x.device) - 1).long()
    if (keep_c is None) != (keep_h is None):
        raise ValueError("lstm_sequence: expected keep_c and keep_h together (zoneout)")
    if any(m is not None for m in (mask_h, mask_g, keep_c)):
        loops = loops or time_loops(x.device, x.dtype)
        if not getattr(loops, "takes_masks", False):
            loops = PythonLoops
    args = (x, h0, c0, w_ih, w_hh, bias, peep_in, weight_co, last, loops, mask_h, mask_g)
    args += (keep_c, keep_h)
    fn = LSTMFunction if torch.compiler.is_compiling() else LSTMFunctionWithJvp
    if x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type):
        # The kernel computes in the parameters' dtype: autocast would mix dtypes in its
        # in-place buffers.
        with torch.autocast(x.device.type, enabled=False):
            y, h_n, c_n = fn.apply(*args)[:3]
    else:
        y, h_n, c_n = fn.apply(*args)[:3]
    if last is not None:
        steps = torch.arange(x.shape[0], device=x.device).unsqueeze(1)  # (T, 1)
        y = torch.where((steps <= last).unsqueeze(2), y, y.new_zeros(()))
    return y, h_n, c_n


def _tanh_via_sigmoid(t: Tensor, out: Tensor, two: Tensor, one: Tensor) -> Tensor:
    """``out = tanh(t)`` computed as 2σ(2t) − 1, for CPU: there ATen's tanh runs several times
    slower than its sigmoid (~9x at H = 650 on an AMD EPYC, MKL build), so four cheap ops beat
    one tanh. ``two``, ``one``: 0-d tensors of t's dtype (a Python number costs a conversion
    per op)."""
    return torch.mul(t, two, out=out).sigmoid_().mul_(two).sub_(one)


class PythonLoops:
    """The time loops in Python: one ATen op per line, for every device and dtype.

    Same signatures and effects as the compiled CPU loops (`lstm_cpu.cpp`), which replace them
    on CPU when they can be built (`unroll.nn.kernels.lstm_cpu`); the tests hold the two equal.
    """

    takes_masks = True  # dropout masks and zoneout (Triton's loops do not take them)

    @staticmethod
    def forward(
        A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y, mask_h=None, mask_g=None, zone=None
    ) -> None:
        """A (T, B, G) pre-activations (input projection and bias added) -> activations
        i, f, g = tanh(·), o in place (g unmasked); fills Cs = c_t, TC = tanh(c_t), Y = h_t
        (T, B, H). mask_h, mask_g (B, H) or None: Gal's mask on h_{t-1} where it enters the
        gates, Semeniuta's on the cell update: c_t = f c_{t-1} + i (m_g g). zone: None or
        zoneout's (keep_c, keep_h) (T, B, H): c_t = z^c c_{t-1} + (1 − z^c) c̃_t, likewise h;
        TC then holds tanh(c̃_t)."""
        T, B, G = A.shape
        H = h0.shape[1]
        nb = G // H
        coupled = nb == 3
        g_rows = slice((nb - 2) * H, (nb - 1) * H)
        # The g block is doubled so that ONE sigmoid covers i, f, g (and o without an o
        # peephole), using tanh(a) = 2σ(2a) − 1: fewer, larger pointwise ops per step.
        A4 = A.view(T, B, nb, H)
        A4[:, :, nb - 2].mul_(2)
        w_hh2 = w_hh.clone()
        w_hh2[g_rows].mul_(2)
        # Per-step views made once (unbind), so the loop below is only arithmetic.
        a_t = A.unbind(0)  # (B, G)
        sig_blocks = nb if peep_o is None else nb - 1  # o waits for c_t if it peeps at it
        sig_t = A4[:, :, :sig_blocks].unbind(0)
        peep_t = A4[:, :, : nb - 2].unbind(0)  # (B, nb-2, H): i, f, or f alone if coupled
        i_t, f_t = A4[:, :, 0].unbind(0), A4[:, :, nb - 3].unbind(0)
        g_t, o_t = A4[:, :, nb - 2].unbind(0), A4[:, :, nb - 1].unbind(0)
        c_t, tc_t, h_t = Cs.unbind(0), TC.unbind(0), Y.unbind(0)
        w_hh2_t = w_hh2.t()
        rec = onednn_matmul(w_hh2, B)  # h @ w_hh2ᵀ, or None: addmm
        # On CPU, tanh(c) as 2σ(2c) − 1 pays once a step's tensors are large (B·H ≥ 8192).
        fast_tanh = A.device.type == "cpu" and B * H >= 8192
        two, one = (torch.tensor(v, dtype=A.dtype) for v in (2.0, 1.0))  # CPU scalars
        h, c = h0, c0
        for t in range(T):
            h_in = h if mask_h is None else h * mask_h  # Gal: W_hh·(m_h ⊙ h_{t-1})
            if rec is None:
                a_t[t].addmm_(h_in, w_hh2_t)
            else:
                a_t[t].add_(rec(h_in))
            if peep_in is not None:  # i, f see c_{t-1}
                peep_t[t].addcmul_(c.unsqueeze(1), peep_in)
            sig_t[t].sigmoid_()
            g = g_t[t].mul_(two).sub_(one)  # = tanh(a_g)
            if mask_g is not None:  # Semeniuta: the update is m_g ⊙ g (A keeps g)
                g = g * mask_g
            if coupled:  # c_t = f c_{t-1} + (1 − f) g = g + f (c_{t-1} − g)
                torch.lerp(g, c, f_t[t], out=c_t[t])
            else:  # c_t = f c_{t-1} + i g
                torch.mul(f_t[t], c, out=c_t[t]).addcmul_(i_t[t], g)
            if peep_o is not None:  # o sees c_t
                o_t[t].addcmul_(c_t[t], peep_o).sigmoid_()
            if fast_tanh:
                tc = _tanh_via_sigmoid(c_t[t], tc_t[t], two, one)
            else:
                tc = torch.tanh(c_t[t], out=tc_t[t])
            torch.mul(o_t[t], tc, out=h_t[t])
            if zone is not None:  # zoneout: keep the previous value where z = 1
                c_t[t].lerp_(c, zone[0][t])
                h_t[t].lerp_(h, zone[1][t])
            h, c = h_t[t], c_t[t]

    @staticmethod
    def backward(
        A,
        Cs,
        TC,
        c0,
        w_hh,
        peep_in,
        peep_o,
        dY,
        dCx,
        dc,
        dG,
        mask_h=None,
        mask_g=None,
        zone=None,
        carry=None,
    ) -> None:
        """Fills dG (T, B, G) with the gradients of the gate pre-activations.

        dY (T, B, H): dL/dh_t from above, dh_n already added at each sequence's last step;
        dCx (T, B, H) or None: dc_n placed at each sequence's last step (variable lengths);
        dc (B, H) in: dc_n (zeros with dCx), out: dL/dc_0. Masks as in `forward`; the
        recurrent gradient reaching h_{t-1} is m_h ⊙ (dG_t · W_hh). zone as in `forward`, with
        carry (B, H) in: zeros, out: the part of dL/dh_0 through h_1 = z^h ⊙ h_0 + ….
        """
        T, B, G = A.shape
        H = c0.shape[1]
        nb = G // H
        coupled = nb == 3
        A4 = A.view(T, B, nb, H)
        C_prev = torch.cat((c0.unsqueeze(0), Cs[:-1]))  # (T, B, H): c_{t-1}
        f, g, o = A4[:, :, nb - 3], A4[:, :, nb - 2], A4[:, :, nb - 1]
        gm = g if mask_g is None else g * mask_g  # the update c sees (Semeniuta)
        dg_scale = 1 - g * g if mask_g is None else (1 - g * g) * mask_g

        # Factors independent of the incoming gradient, for all steps at once:
        #   do_pre = dh ⊙ A_o             dc += dh ⊙ Bc
        #   d(pre-activation of i, f, g) = dc ⊙ K       dc_{t-1} = dc ⊙ Fc
        A_o = TC * o * (1 - o)
        Bc = o * (1 - TC * TC)
        if peep_o is not None:
            Bc.addcmul_(A_o, peep_o)
        K = A.new_empty(T, B, nb - 1, H)
        if coupled:  # c = gm + f (c_prev − gm)
            torch.mul(C_prev - gm, f * (1 - f), out=K[:, :, 0])
            torch.mul(1 - f, dg_scale, out=K[:, :, 1])
        else:
            i = A4[:, :, 0]
            torch.mul(gm, i * (1 - i), out=K[:, :, 0])
            torch.mul(C_prev, f * (1 - f), out=K[:, :, 1])
            torch.mul(i, dg_scale, out=K[:, :, 2])
        Fc = f.clone()
        if peep_in is not None:
            Fc.add_((K[:, :, : nb - 2] * peep_in).sum(2))

        dG4 = dG.view(T, B, nb, H)
        dG_t = dG.unbind(0)  # (B, G)
        dG_o_t, dG_k_t = dG4[:, :, nb - 1].unbind(0), dG4[:, :, : nb - 1].unbind(0)
        dY_t, Bc_t, A_o_t, K_t, Fc_t = (v.unbind(0) for v in (dY, Bc, A_o, K, Fc))
        dc_col = dc.unsqueeze(1)  # (B, 1, H) view of dc for the (B, nb-1, H) product
        dh = torch.empty_like(dc)
        rec_t = onednn_matmul(w_hh.t(), B) if T > 1 else None  # dG @ w_hh, or None: addmm
        for t in range(T - 1, -1, -1):
            if t == T - 1:
                dh_t = dY_t[t]
            elif mask_h is not None:  # Gal: the recurrent gradient is masked
                back = dG_t[t + 1] @ w_hh if rec_t is None else rec_t(dG_t[t + 1])
                dh_t = torch.addcmul(dY_t[t], back, mask_h, out=dh)
            elif rec_t is None:
                dh_t = torch.addmm(dY_t[t], dG_t[t + 1], w_hh, out=dh)
            else:
                dh_t = torch.add(dY_t[t], rec_t(dG_t[t + 1]), out=dh)
            if dCx is not None:
                dc.add_(dCx[t])
            if zone is not None:  # zoneout: kept units pass their gradient straight back
                zc, zh = zone[0][t], zone[1][t]
                dh_all = dh_t + carry  # + what came through h_{t+1}'s kept units
                torch.mul(dh_all, zh, out=carry)
                dh_t = dh_all * (1 - zh)  # dL/dh̃_t
                dc_keep = dc * zc
                dc.mul_(1 - zc)  # dL/dc̃_t from later steps
            dc.addcmul_(dh_t, Bc_t[t])
            torch.mul(dh_t, A_o_t[t], out=dG_o_t[t])
            torch.mul(dc_col, K_t[t], out=dG_k_t[t])
            dc.mul_(Fc_t[t])  # now the gradient of c_{t-1}
            if zone is not None:
                dc.add_(dc_keep)


def time_loops(device: torch.device, dtype: torch.dtype):
    """The loops the fused LSTM runs for tensors of this device and dtype: on CUDA the Triton
    loops where they work (`lstm_triton`), the compiled CPU loops where they can be had
    (float32/float64 on CPU), else `PythonLoops`."""
    if device.type == "cuda":
        from unroll.nn.kernels import lstm_triton

        fused = lstm_triton.loops(device, dtype, reference=PythonLoops)
        if fused is not None:
            return fused
    if device.type == "cpu" and dtype in (torch.float32, torch.float64):
        from unroll.nn.kernels import lstm_cpu

        compiled = lstm_cpu.loops()
        if compiled is not None:
            return compiled
    return PythonLoops


def reference_sequence(
    x,
    h0,
    c0,
    w_ih,
    w_hh,
    bias,
    peep_in,
    peep_o,
    last,
    mask_h=None,
    mask_g=None,
    keep_c=None,
    keep_h=None,
):
    """`LSTMFunction`'s math by the reference cell, from its kernel-layout inputs: Y, h_n, c_n.

    Plain differentiable ops (the cell's `lstm_step` in a loop), so autograd, `torch.func` and
    vmap go through it to any order: `LSTMFunction` runs it where its hand-written backward
    cannot (see the module docstring). Back to the cell's layout: a coupled cell's input-gate
    rows come back as zeros (i = 1 − f never reads them), the one bias (forget_bias already
    in it) is added with the input projection, and peep_in splits into w_ci, w_cf.
    """
    T, B = x.shape[0], x.shape[1]
    H = h0.shape[-1]
    coupled = w_hh.shape[0] == 3 * H
    x_proj = F.linear(x, w_ih, bias)  # (T, B, G): the input projection as one GEMM
    if coupled:
        x_proj = torch.cat((torch.zeros_like(x_proj[:, :, :H]), x_proj), 2)  # (T, B, 4H)
        w_hh = torch.cat((torch.zeros_like(w_hh[:H]), w_hh))  # (4H, H)
    w_ci = w_cf = None
    if peep_in is not None:
        w_ci, w_cf = (None, peep_in[0]) if coupled else (peep_in[0], peep_in[1])
    h, c, ys, cs = h0, c0, [], []
    for t in range(T):
        h, c = lstm_step(
            x_proj[t],
            h,
            c,
            w_hh,
            None,
            w_ci,
            w_cf,
            peep_o,
            0.0,
            coupled,
            mask_h=mask_h,
            mask_g=mask_g,
            keep_c=None if keep_c is None else keep_c[t],
            keep_h=None if keep_h is None else keep_h[t],
        )
        ys.append(h)
        cs.append(c)
    Y = torch.stack(ys)
    if last is None:
        return Y, h, c
    batch = torch.arange(B, device=x.device)
    return Y, Y[last, batch], torch.stack(cs)[last, batch]


def _as_reference(inputs, last, wanted, masks):
    """`reference_sequence` as a function of the inputs at indices ``wanted`` (the rest, None
    or needing no gradient, stay constants), and those inputs; masks (mask_h, mask_g, keep_c,
    keep_h)."""

    def f(*tensors):
        args = list(inputs)
        for i, t in zip(wanted, tensors):
            args[i] = t
        return reference_sequence(*args, last, *masks)

    return f, tuple(inputs[i] for i in wanted)


class LSTMFunction(torch.autograd.Function):
    """LSTM over a sequence in kernel layout (see the module docstring).

    Inputs: x (T, B, C), h0/c0 (B, H), w_ih (G, C), w_hh (G, H), bias (G,) or None,
    peep_in (nb − 2, H) or None (peepholes of i, f — or f alone when coupled — on c_{t-1}),
    peep_o (H,) or None (peephole of o on c_t), last (B,) int64 or None (= T − 1),
    loops: the time loops (`time_loops`; None picks them for x's device and dtype),
    mask_h, mask_g (B, H) or None: the recurrent dropout masks (constants, no gradient),
    keep_c, keep_h (T, B, H) or None: zoneout's z (constants).
    Coupled is read off the shapes: nb = G / H is 3.
    Outputs: Y (T, B, H), h_n, c_n (B, H), then the buffers the backward reads, A (T, B, G),
    Cs and TC (T, B, H): outputs rather than ctx attributes because torch.func runs only
    Functions whose forward takes no ctx; they are non-differentiable.
    """

    @staticmethod
    def forward(
        x,
        h0,
        c0,
        w_ih,
        w_hh,
        bias,
        peep_in,
        peep_o,
        last,
        loops=None,
        mh=None,
        mg=None,
        kc=None,
        kh=None,
    ):
        T, B, C = x.shape
        H = h0.shape[1]
        G = w_hh.shape[0]
        loops = loops or time_loops(x.device, x.dtype)
        h0, c0, w_hh = h0.contiguous(), c0.contiguous(), w_hh.contiguous()
        peep_in, peep_o = (None if p is None else p.contiguous() for p in (peep_in, peep_o))
        # Input projection for every step at once: A (T, B, G) holds the pre-activations.
        x2 = x.reshape(T * B, C)
        A = gemm_nt(x2, w_ih, bias)
        A = A.view(T, B, G)
        Cs, TC, Y = (x.new_empty(T, B, H) for _ in range(3))
        if mh is None and mg is None and kc is None:  # (loops without masks take none)
            loops.forward(A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y)
        else:
            zone = None if kc is None else (kc, kh)
            loops.forward(A, h0, c0, w_hh, peep_in, peep_o, Cs, TC, Y, mh, mg, zone)
        if last is None:
            h_n, c_n = Y[T - 1].clone(), Cs[T - 1].clone()
        else:
            batch = torch.arange(B, device=x.device)
            h_n, c_n = Y[last, batch], Cs[last, batch]
        return Y, h_n, c_n, A, Cs, TC

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, h0, c0, w_ih, w_hh, bias, peep_in, peep_o, last, loops, mh, mg, kc, kh = inputs
        Y, _, _, A, Cs, TC = output
        ctx.mark_non_differentiable(A, Cs, TC)
        ctx.set_materialize_grads(False)  # no zero-filled (T, B, G) gradient for A, Cs, TC
        ctx.loops = loops or time_loops(x.device, x.dtype)
        ctx.masks = (mh, mg, kc, kh)
        ctx.save_for_backward(x, h0, c0, w_ih, w_hh, bias, peep_in, peep_o, last, A, Cs, TC, Y)

    @staticmethod
    def backward(ctx, dY, dh_n, dc_n, _dA, _dCs, _dTC):
        Y = ctx.saved_tensors[-1]
        dY = torch.zeros_like(Y) if dY is None else dY  # None: an output that was not used
        dh_n, dc_n = (torch.zeros_like(Y[0]) if d is None else d for d in (dh_n, dc_n))
        if torch.is_grad_enabled():
            # create_graph=True (a gradient penalty, torch.func): the gradients must be
            # differentiable, which the hand-written loops below are not.
            return _reference_backward(ctx, dY, dh_n, dc_n)
        x, h0, c0, w_ih, w_hh, bias, peep_in, peep_o, last, A, Cs, TC, Y = ctx.saved_tensors
        h0, c0, w_hh = h0.contiguous(), c0.contiguous(), w_hh.contiguous()
        peep_in, peep_o = (None if p is None else p.contiguous() for p in (peep_in, peep_o))
        T, B, C = x.shape
        H = h0.shape[1]
        G = w_hh.shape[0]
        dY = dY.contiguous().clone()  # dh_n is added into it below
        dCx = None
        if last is not None:  # the final state's gradients enter at each sequence's last step
            batch = torch.arange(B, device=x.device)
            dY[last, batch] += dh_n
            dCx = torch.zeros_like(Cs)
            dCx[last, batch] = dc_n
            dc = torch.zeros_like(c0)
        else:
            dY[T - 1] += dh_n
            dc = dc_n.contiguous().clone()
        dG = A.new_empty(T, B, G)
        mh, mg, kc, kh = ctx.masks
        carry = None
        if mh is None and mg is None and kc is None:
            ctx.loops.backward(A, Cs, TC, c0, w_hh, peep_in, peep_o, dY, dCx, dc, dG)
        else:
            zone = None if kc is None else (kc, kh)
            carry = None if kc is None else torch.zeros_like(dc)
            args = (A, Cs, TC, c0, w_hh, peep_in, peep_o, dY, dCx, dc, dG, mh, mg, zone, carry)
            ctx.loops.backward(*args)

        need = ctx.needs_input_grad
        dG2 = dG.view(T * B, G)
        dx = gemm_nt(dG2, w_ih.t()).view(T, B, C) if need[0] else None
        dh0 = dG[0] @ w_hh if need[1] else None
        if dh0 is not None and mh is not None:  # Gal: h_0 entered the gates masked
            dh0 = dh0 * mh
        if dh0 is not None and carry is not None:  # zoneout: h_1 kept some of h_0
            dh0 = dh0 + carry
        dc0 = dc if need[2] else None
        x2 = x.reshape(T * B, C)
        dw_ih = weight_gradient(dG2, x2) if need[3] else None
        dw_hh = None
        if need[4]:
            H_prev = torch.cat((h0.unsqueeze(0), Y[:-1]))  # (T, B, H): h_{t-1}
            if mh is not None:  # what W_hh multiplied: m_h ⊙ h_{t-1}
                H_prev = H_prev * mh
            dw_hh = weight_gradient(dG2, H_prev.view(T * B, H))
        dbias = dG2.sum(0) if need[5] else None
        dpeep_in = dpeep_o = None
        nb = G // H
        dG4 = dG.view(T, B, nb, H)
        if peep_in is not None and need[6]:
            C_prev = torch.cat((c0.unsqueeze(0), Cs[:-1]))  # (T, B, H): c_{t-1}
            dpeep_in = (dG4[:, :, : nb - 2] * C_prev.unsqueeze(2)).sum((0, 1))
        if peep_o is not None and need[7]:
            c_seen = Cs  # what o peeped at: c_t, or c̃_t with zoneout (recomputed here)
            if kc is not None:
                C_prev = torch.cat((c0.unsqueeze(0), Cs[:-1]))
                A4 = A.view(T, B, nb, H)
                f, g = A4[:, :, nb - 3], A4[:, :, nb - 2]
                g = g if mg is None else g * mg
                i = 1 - f if nb == 3 else A4[:, :, 0]
                c_seen = f * C_prev + i * g
            dpeep_o = (dG4[:, :, nb - 1] * c_seen).sum((0, 1))
        return dx, dh0, dc0, dw_ih, dw_hh, dbias, dpeep_in, dpeep_o, *(None,) * 6

    @staticmethod
    def vmap(
        info, in_dims, x, h0, c0, w_ih, w_hh, bias, peep_in, peep_o, last, loops, mh, mg, kc, kh
    ):
        """`torch.vmap`: with the weights shared (per-sample gradients, a batch of batches),
        the mapped dimension N folds into the batch, one call of N·B sequences; weights that
        are mapped too (an ensemble) run one call per n."""
        N = info.batch_size
        args = [x, h0, c0, w_ih, w_hh, bias, peep_in, peep_o, last]
        extras = (mh, mg, kc, kh)
        if any(d is not None for d in in_dims[3:8] + in_dims[10:]):
            outs = [
                LSTMFunction.apply(
                    *(a if d is None else a.select(d, n) for a, d in zip(args, in_dims)),
                    loops,
                    *(m if d is None else m.select(d, n) for m, d in zip(extras, in_dims[10:])),
                )
                for n in range(N)
            ]
            return tuple(torch.stack(o) for o in zip(*outs)), (0,) * 6

        def fold(t, d, dim):
            """t with its mapped dim d (None: not mapped) merged into its batch dim ``dim``,
            N before B: x (T, B, C) -> (T, N·B, C), h0 (B, H) -> (N·B, H), last (B,) -> (N·B,)."""
            if d is None:
                t = t.unsqueeze(dim).expand(*t.shape[:dim], N, *t.shape[dim:])
            else:
                t = t.movedim(d, dim)
            return t.flatten(dim, dim + 1)

        xd, hd, cd, ld = in_dims[0], in_dims[1], in_dims[2], in_dims[8]
        xf = fold(x, xd, 1)
        lastf = None if last is None else fold(last, ld, 0)
        Y, h_n, c_n, A, Cs, TC = LSTMFunction.apply(
            xf,
            fold(h0, hd, 0),
            fold(c0, cd, 0),
            *args[3:8],
            lastf,
            loops,
            *(None if m is None else fold(m, None, 0) for m in (mh, mg)),
            *(None if k is None else fold(k, None, 1) for k in (kc, kh)),
        )
        NB = (N, xf.shape[1] // N)
        Y, A, Cs, TC = (t.unflatten(1, NB) for t in (Y, A, Cs, TC))  # (T, N, B, ·)
        h_n, c_n = (t.unflatten(0, NB) for t in (h_n, c_n))  # (N, B, H)
        return (Y, h_n, c_n, A, Cs, TC), (1, 0, 0, 1, 1, 1)


class LSTMFunctionWithJvp(LSTMFunction):
    """`LSTMFunction` with forward-mode gradients (`torch.func.jvp`, `jacfwd`,
    `torch.autograd.forward_ad`). A class of its own because dynamo does not trace a Function
    that defines a jvp: under torch.compile `lstm_sequence` applies `LSTMFunction`."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        LSTMFunction.setup_context(ctx, inputs, output)
        ctx.save_for_forward(*inputs[:9])

    @staticmethod
    def jvp(ctx, *tangents):
        """Forward mode: the output tangents through the reference."""
        saved = ctx.saved_tensors
        inputs, last = list(saved[:8]), saved[8]
        wanted = [i for i, t in enumerate(tangents[:8]) if t is not None]
        if not wanted:
            return None, None, None, None, None, None
        f, primals = _as_reference(inputs, last, wanted, ctx.masks)
        _, (dY, dh_n, dc_n) = torch.func.jvp(f, primals, tuple(tangents[i] for i in wanted))
        return dY, dh_n, dc_n, None, None, None


def _reference_backward(ctx, dY, dh_n, dc_n):
    """The gradients as a differentiable function of the inputs and of dY, dh_n, dc_n: a vjp
    of `reference_sequence` (used for higher-order gradients, see `LSTMFunction.backward`)."""
    saved = ctx.saved_tensors
    inputs, last = list(saved[:8]), saved[8]
    need = ctx.needs_input_grad
    wanted = [i for i, t in enumerate(inputs) if t is not None and need[i]]
    grads = [None] * 14
    if wanted:
        f, primals = _as_reference(inputs, last, wanted, ctx.masks)
        _, vjp_fn = torch.func.vjp(f, *primals)
        for i, g in zip(wanted, vjp_fn((dY, dh_n, dc_n))):
            grads[i] = g
    return tuple(grads)
