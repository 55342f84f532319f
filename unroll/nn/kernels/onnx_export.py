"""The layers as ONNX's LSTM, GRU and RNN operators, for `torch.onnx.export`: every LSTM variant,
any sequence length, either exporter.

Why not torch's own: its RNN ops export to ONNX nodes only for the standard cells without
projection, and the dynamo exporter's translation of them fixes the example's T in a Reshape
(torch 2.13: another T fails in onnxruntime or, with T·B unchanged, reshapes wrongly); the
reference loop exports unrolled over the example's T. Here each layer/direction is ONE node
whose inputs the parameters are rearranged into, and every LSTM variant maps onto ONNX's LSTM
exactly:

  gate order   ONNX stacks LSTM rows i, o, f, c (c = our g), ours are i, f, g, o; GRU rows
               z, r, h, ours r, z, n (`_reorder`).
  GRU          PyTorch's GRU is ONNX's with ``linear_before_reset = 1`` (r multiplies
               W_hn·h + b_hn).
  peephole     P = [p_i, p_o, p_f] = [w_ci, w_co, w_cf]; ONNX's equations are the cell's
               (i, f see c_{t-1}, o sees c_t).
  forget_bias  added to the f rows of the input bias Wb.
  coupled      i = 1 − f = σ(−a_f): the i rows hold the f rows negated (weights, biases,
               peephole) and the standard node computes CIFG. ONNX's ``input_forget``
               attribute is not used: the spec does not say which gate follows the other
               (onnxruntime computes f = 1 − i); negated rows mean the same to every runtime.
  proj_size    h_t = W_hr m_t with m_t = o_t ⊙ tanh(c_t), so W_hh h_{t-1} = (W_hh W_hr) m_{t-1}:
               the node recurs on m (R = W_hh W_hr, initial m = 0), and h_0, which is no m,
               enters as extra input features at step 0 only: x'_t = [x_t, δ_t0 h_0] with
               W = [W_ih, W_hh]. Then y = W_hr m and h_n = W_hr m_n.
  lengths      the node's sequence_lens: zero outputs past each length, the state at each
               sequence's last step (the layer has already reversed each sequence within its
               length for the backward direction).

A node is recorded by an autograd Function's ``symbolic`` under the TorchScript exporter
(``dynamo=False``) and by `torch.onnx.ops.symbolic_multi_out` under the dynamo exporter. The
Function's eager value, which the tracer runs, is the node's definition computed by the
reference cells. Used only while exporting to ONNX (`unroll.nn.layers`: implementation "onnx").
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from unroll.nn.cells.gru import gru_step
from unroll.nn.cells.rnn import rnn_step
from unroll.nn.kernels.lstm_fused import reference_sequence

# ONNX's gate blocks as indices of ours: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h
_TO_ONNX = {"LSTM": (0, 3, 1, 2), "GRU": (1, 0, 2), "RNN": (0,)}


def _reorder(t: Tensor, op: str, inverse: bool = False) -> Tensor:
    """Gate blocks of t (rows) from our order to ONNX's, or back with ``inverse``."""
    order = _TO_ONNX[op]
    if inverse:
        order = tuple(order.index(i) for i in range(len(order)))
    blocks = t.chunk(len(order), 0)
    return torch.cat([blocks[i] for i in order])


def _definition(op, X, W, R, Bias, seq_lens, h0, c0, P, activation):
    """The ONNX node's outputs (Y (T, 1, B, H), Y_h[, Y_c] (1, B, H)) by the reference cells,
    from the node's inputs: back to our layout and run the cell's step over time."""
    w_ih, w_hh = _reorder(W[0], op, True), _reorder(R[0], op, True)
    Wb, Rb = (_reorder(b, op, True) for b in Bias[0].chunk(2))
    T, B = X.shape[0], X.shape[1]
    last = None if seq_lens is None else seq_lens.long() - 1
    if op == "LSTM":
        peep_in = peep_o = None
        if P is not None:
            p_i, p_o, p_f = P[0].chunk(3)
            peep_in, peep_o = torch.stack((p_i, p_f)), p_o
        Y, h, c = reference_sequence(X, h0[0], c0[0], w_ih, w_hh, Wb + Rb, peep_in, peep_o, last)
        finals = (h, c)
    else:
        x_proj, h, ys = F.linear(X, w_ih, Wb), h0[0], []
        for t in range(T):
            if op == "GRU":
                h = gru_step(x_proj[t], h, w_hh, Rb)
            else:
                h = rnn_step(x_proj[t], h, w_hh, Rb, activation.lower())
            ys.append(h)
        Y = torch.stack(ys)
        finals = (h,) if last is None else (Y[last, torch.arange(B, device=X.device)],)
    if last is not None:
        steps = torch.arange(T, device=X.device).unsqueeze(1)  # (T, 1)
        Y = torch.where((steps <= last).unsqueeze(2), Y, Y.new_zeros(()))
    return (Y.unsqueeze(1), *(f.unsqueeze(0) for f in finals))


class _Node(torch.autograd.Function):
    """One ONNX recurrent node (forward direction) under the TorchScript exporter.

    op: "LSTM", "GRU" or "RNN"; inputs in ONNX's layout: X (T, B, C), W (1, G·H, C),
    R (1, G·H, H), Bias (1, 2·G·H), seq_lens (B,) int32 or None, h0 (1, B, H), and for the
    LSTM c0 (1, B, H) and P (1, 3H) or None; H; activation: the RNN's "Tanh" or "Relu".
    """

    @staticmethod
    def forward(ctx, op, X, W, R, Bias, seq_lens, h0, c0, P, H, activation):
        # Only the trace's example values come from here (the graph gets `symbolic`'s node),
        # so the tracer's notices about sizes read as constants inside do not apply.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return _definition(op, X, W, R, Bias, seq_lens, h0, c0, P, activation)

    @staticmethod
    def symbolic(g, op, X, W, R, Bias, seq_lens, h0, c0, P, H, activation):
        def omitted():  # an optional input left out
            n = g.op("prim::Constant")
            n.setType(torch._C.OptionalType.ofTensor())
            return n

        inputs = [X, W, R, Bias, omitted() if seq_lens is None else seq_lens, h0]
        kw = {"hidden_size_i": H}
        if op == "LSTM":
            inputs += [c0] + ([] if P is None else [P])
        elif op == "GRU":
            kw["linear_before_reset_i"] = 1
        else:
            kw["activations_s"] = [activation]
        return g.op(op, *inputs, outputs=3 if op == "LSTM" else 2, **kw)


def _node(op, X, W, R, Bias, seq_lens, h0, c0, P, H: int, activation: str = "Tanh"):
    """Record one ONNX node; returns its outputs (see `_definition`)."""
    if torch.jit.is_tracing():  # the TorchScript exporter
        return _Node.apply(op, X, W, R, Bias, seq_lens, h0, c0, P, H, activation)
    from torch.onnx import ops  # loaded by the exporter already; not at `import unroll`

    T, B = X.shape[0], X.shape[1]
    attrs: dict = {"hidden_size": H}
    inputs = [X, W, R, Bias, seq_lens, h0]
    if op == "LSTM":
        inputs += [c0, P]
    elif op == "GRU":
        attrs["linear_before_reset"] = 1
    else:
        attrs["activations"] = [activation]
    n_out = 3 if op == "LSTM" else 2
    return ops.symbolic_multi_out(
        op,
        inputs,
        attrs,
        dtypes=[X.dtype] * n_out,
        shapes=[[T, 1, B, H]] + [[1, B, H]] * (n_out - 1),
    )


def _onnx_layout(op, weight_ih, weight_hh, bias_ih, bias_hh):
    """W (1, G·H, C), R (1, G·H, H), Bias (1, 2·G·H) from PyTorch-layout parameters."""
    b_ih = bias_ih if bias_ih is not None else weight_hh.new_zeros(weight_hh.shape[0])
    b_hh = bias_hh if bias_hh is not None else weight_hh.new_zeros(weight_hh.shape[0])
    W, R = (_reorder(w, op).unsqueeze(0) for w in (weight_ih, weight_hh))
    return W, R, torch.cat((_reorder(b_ih, op), _reorder(b_hh, op))).unsqueeze(0)


def _seq_lens(lengths: Tensor | None) -> Tensor | None:
    return None if lengths is None else lengths.to(torch.int32)


def hidden_state_onnx(
    op: str,
    x: Tensor,
    h0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    *,
    hidden_size: int,
    nonlinearity: str = "tanh",
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One GRU (op "GRU") or Elman RNN (op "RNN") layer/direction as one ONNX node, for x
    (T, B, C) of any T: y (T, B, H), h_n (B, H). ``hidden_size`` is a plain int (see
    `lstm_onnx`)."""
    W, R, Bias = _onnx_layout(op, weight_ih, weight_hh, bias_ih, bias_hh)
    activation = "Tanh" if nonlinearity == "tanh" else "Relu"
    Y, h_n = _node(
        op, x, W, R, Bias, _seq_lens(lengths), h0.unsqueeze(0), None, None, hidden_size, activation
    )
    return Y.squeeze(1), h_n.squeeze(0)


def lstm_onnx(
    x: Tensor,
    h0: Tensor,
    c0: Tensor,
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor | None,
    bias_hh: Tensor | None,
    weight_ci: Tensor | None,
    weight_cf: Tensor | None,
    weight_co: Tensor | None,
    weight_hr: Tensor | None,
    *,
    hidden_size: int,
    forget_bias: float,
    coupled: bool,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """One LSTM layer/direction with PyTorch-layout parameters as one ONNX LSTM node, for
    x (T, B, C) of any T: y (T, B, R), h_n (B, R), c_n (B, H) (R = P with weight_hr, else H).
    Peephole weights are None without peepholes (weight_ci unused when coupled).
    ``hidden_size`` (H) is a plain int: a size read off a tensor while tracing is a traced
    value, and the node's attribute must be a constant."""
    H = hidden_size
    if bias_ih is None and forget_bias:
        bias_ih = weight_hh.new_zeros(4 * H)
    if forget_bias:
        f_rows = torch.zeros_like(bias_ih)
        f_rows[H : 2 * H] = forget_bias
        bias_ih = bias_ih + f_rows
    peephole = weight_cf is not None
    if coupled:  # i = σ(−a_f) = 1 − f: the i rows are the f rows negated

        def f_for_i(t: Tensor | None) -> Tensor | None:
            return None if t is None else torch.cat((-t[H : 2 * H], t[H:]))

        weight_ih, weight_hh, bias_ih, bias_hh = map(
            f_for_i, (weight_ih, weight_hh, bias_ih, bias_hh)
        )
        weight_ci = -weight_cf if peephole else None
    if weight_hr is not None:  # recur on m = o ⊙ tanh(c); h_0 enters as input at step 0
        rest = torch.zeros_like(h0).expand(x.shape[0] - 1, -1, -1)  # (T-1, B, P)
        x = torch.cat((x, torch.cat((h0.unsqueeze(0), rest))), 2)  # (T, B, C + P)
        weight_ih = torch.cat((weight_ih, weight_hh), 1)  # (4H, C + P)
        weight_hh = weight_hh @ weight_hr  # (4H, H)
        h0 = h0.new_zeros(h0.shape[0], H)
    W, R, Bias = _onnx_layout("LSTM", weight_ih, weight_hh, bias_ih, bias_hh)
    P = torch.cat((weight_ci, weight_co, weight_cf)).unsqueeze(0) if peephole else None
    Y, h_n, c_n = _node(
        "LSTM", x, W, R, Bias, _seq_lens(lengths), h0.unsqueeze(0), c0.unsqueeze(0), P, H
    )
    y, h_n, c_n = Y.squeeze(1), h_n.squeeze(0), c_n.squeeze(0)
    if weight_hr is not None:
        y, h_n = F.linear(y, weight_hr), F.linear(h_n, weight_hr)
    return y, h_n, c_n
