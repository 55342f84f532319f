"""LSTM cell: the reference step, with forget bias, peepholes and coupled gates.

Standard LSTM (Hochreiter & Schmidhuber 1997, with a forget gate: Gers et al. 2000), PyTorch's
equations and gate order i, f, g, o:

    i_t = σ(W_i·[x_t, h_{t-1}] + b_i)
    f_t = σ(W_f·[x_t, h_{t-1}] + b_f + forget_bias)
    g_t = tanh(W_g·[x_t, h_{t-1}] + b_g)
    o_t = σ(W_o·[x_t, h_{t-1}] + b_o)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)

where W_·[x, h] + b means W_ih·x + b_ih + W_hh·h + b_hh restricted to that gate's rows.

Variants:
  forget_bias: a constant added to the forget gate's pre-activation (TensorFlow's
      BasicLSTMCell); it is not a parameter and is not stored in the bias.
  peephole=True (Gers & Schmidhuber 2000): the gates see the cell through diagonal weights,
      i and f see c_{t-1}, o sees c_t:
          i_t = σ(… + w_ci ⊙ c_{t-1}),  f_t = σ(… + w_cf ⊙ c_{t-1}),  o_t = σ(… + w_co ⊙ c_t)
      The diagonal weights are the parameters ``weight_ci``, ``weight_cf``, ``weight_co`` (H,).
  coupled=True (CIFG, Greff et al. 2017): the input gate is tied to the forget gate,
      i_t = 1 − f_t. The input-gate rows of ``weight_ih``/``weight_hh``/biases are kept so the
      parameter layout stays PyTorch's (4H rows) but they are unused: they get zero gradient
      and ``weight_ci`` is not created.
  weight_hr (the layers' proj_size, LSTMP: Sak et al. 2014): the output is projected to P
      units, and the projection is what recurs:
          h_t = W_hr·(o_t ⊙ tanh(c_t)),   W_hr (P, H);   W_hh is then (4H, P)
      `torch.nn.LSTM`'s ``proj_size``, same parameter name and shapes.

Regularisers and normalisation (the layers' options; `unroll.nn.layers.LSTM` draws the masks
once per sequence and passes them to each step):
  layer_norm (Ba et al. 2016, "Layer Normalization", §3.1 and its LSTM, eq. 20-22): LN on the
      input term and on the recurrent term SEPARATELY, each over its whole 4H gate vector, and
      on the cell before the output tanh; the cell itself recurs un-normalised (the paper's
      variant):
          a_t = LN(W_ih·x_t; γ_ih) + b_ih + LN(W_hh·h_{t-1}; γ_hh) + b_hh
          h_t = o_t ⊙ tanh(LN(c_t; γ_c, β_c))
      LN(v; γ, β) = γ ⊙ (v − mean(v)) / sqrt(var(v) + 1e-5) + β (biased variance, torch's
      F.layer_norm). The shifts of the two gate LNs are the existing biases b_ih, b_hh.
      Parameters ``weight_ln_ih``, ``weight_ln_hh`` (4H,), ``weight_ln_c``, ``bias_ln_c`` (H,);
      initialised γ = 1, β = 0.
  mask_h (recurrent dropout, Gal & Ghahramani 2016, "A Theoretically Grounded Application of
      Dropout in Recurrent Neural Networks"): ONE mask m_h (B, R) per sequence on h_{t-1} where
      it enters the gates, W_hh·(m_h ⊙ h_{t-1}); h_{t-1} itself recurs untouched.
  mask_g (recurrent dropout, Semeniuta et al. 2016, "Recurrent Dropout without Memory Loss",
      eq. 11): ONE mask m_g (B, H) per sequence on the cell update,
          c_t = f_t ⊙ c_{t-1} + i_t ⊙ (m_g ⊙ g_t)
      Both masks are inverted dropout (values 0 or 1/(1 − p)); at eval there is none.
  keep_c, keep_h (zoneout, Krueger et al. 2017, "Zoneout: Regularizing RNNs by Randomly
      Preserving Hidden Activations", eq. 5-6 for the LSTM): each unit keeps its previous
      value with probability p_c (cell) / p_h (output), per step and unit:
          c_t = z^c_t ⊙ c_{t-1} + (1 − z^c_t) ⊙ c̃_t,   h_t = z^h_t ⊙ h_{t-1} + (1 − z^h_t) ⊙ h̃_t
      with c̃_t, h̃_t the plain update above (h̃_t from c̃_t; an o peephole sees c̃_t).
      Training: z ~ Bernoulli(p) (the layer draws all T steps' masks before the loop). Eval:
      z = p, the expectation, as the paper does at test time ("as in dropout, we use the
      expectation of the random noise") — not the plain update.
  weight drop (DropConnect on W_hh, Merity et al. 2018, AWD-LSTM) is not a step option: the
      layer passes the dropped W_hh, drawn once per forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unroll.nn.cells.base import CellBase, check_cell_input, check_cell_state, hx_or_state


def lstm_step(
    x_proj: Tensor,
    h: Tensor,
    c: Tensor,
    weight_hh: Tensor,
    bias_hh: Tensor | None,
    weight_ci: Tensor | None = None,
    weight_cf: Tensor | None = None,
    weight_co: Tensor | None = None,
    forget_bias: float = 0.0,
    coupled: bool = False,
    weight_hr: Tensor | None = None,
    *,
    ln_hh: Tensor | None = None,
    ln_c: tuple[Tensor, Tensor] | None = None,
    mask_h: Tensor | None = None,
    mask_g: Tensor | None = None,
    keep_c: Tensor | float | None = None,
    keep_h: Tensor | float | None = None,
) -> tuple[Tensor, Tensor]:
    """One LSTM step from the projected input ``x_proj = W_ih·x_t + b_ih`` (B, 4H) (with layer
    norm: ``LN(W_ih·x_t; γ_ih) + b_ih``, `input_projection`).

    Returns (h_t, c_t): h (B, H), or (B, P) with the projection ``weight_hr`` (P, H); c (B, H).
    Peephole weights are None for a cell without peepholes, weight_hr None without projection.
    Options (module docstring), None = off: ln_hh γ_hh (4H,), ln_c (γ_c, β_c) (H,) each;
    mask_h (B, R) Gal's and mask_g (B, H) Semeniuta's dropout masks; keep_c (B, H), keep_h
    (B, R) zoneout's z (0/1 in training, the probability at eval).
    """
    h_in = h if mask_h is None else h * mask_h  # Gal & Ghahramani 2016: W_hh·(m_h ⊙ h_{t-1})
    if ln_hh is None:
        rec = F.linear(h_in, weight_hh, bias_hh)
    else:  # Ba et al. 2016: LN of the recurrent term on its own, then its bias
        rec = layer_norm(F.linear(h_in, weight_hh), ln_hh, bias_hh)
    a_i, a_f, a_g, a_o = (x_proj + rec).chunk(4, 1)
    if weight_cf is not None:  # peepholes: i and f see c_{t-1}
        a_f = a_f + weight_cf * c
        if not coupled:
            a_i = a_i + weight_ci * c
    f = torch.sigmoid(a_f + forget_bias)
    i = 1 - f if coupled else torch.sigmoid(a_i)
    g = torch.tanh(a_g)
    if mask_g is not None:  # Semeniuta et al. 2016: dropout on the cell update only
        g = g * mask_g
    c_new = f * c + i * g
    if weight_co is not None:  # peephole: o sees c_t
        a_o = a_o + weight_co * c_new
    o = torch.sigmoid(a_o)
    h_new = o * torch.tanh(c_new if ln_c is None else layer_norm(c_new, *ln_c))  # Ba et al.
    if weight_hr is not None:  # projection (LSTMP): what recurs and what is output
        h_new = F.linear(h_new, weight_hr)
    # Zoneout (Krueger et al. 2017): a unit keeps its previous value where z = 1.
    if keep_c is not None:
        c_new = keep_c * c + (1 - keep_c) * c_new
    if keep_h is not None:
        h_new = keep_h * h + (1 - keep_h) * h_new
    return h_new, c_new


LN_EPS = 1e-5


def layer_norm(v: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """LN over the last dim (Ba et al. 2016): γ ⊙ (v − mean) / sqrt(var + 1e-5) + β."""
    return F.layer_norm(v, v.shape[-1:], weight, bias, LN_EPS)


def input_projection(
    x: Tensor, weight_ih: Tensor, bias_ih: Tensor | None, ln_ih: Tensor | None = None
) -> Tensor:
    """``W_ih·x + b_ih`` (…, 4H), or with layer norm ``LN(W_ih·x; γ_ih) + b_ih``: the part of
    the gates that does not depend on the state, for one step or all T at once."""
    if ln_ih is None:
        return F.linear(x, weight_ih, bias_ih)
    return layer_norm(F.linear(x, weight_ih), ln_ih, bias_ih)


def variant_repr(forget_bias: float, peephole: bool, coupled: bool, **options) -> str:
    """The LSTM variant options that differ from the defaults, as ``repr`` text (", …");
    ``options``: further keyword options, shown where truthy."""
    s = f", forget_bias={forget_bias}" if forget_bias else ""
    s += ", peephole=True" if peephole else ""
    s += ", coupled=True" if coupled else ""
    return s + "".join(f", {k}={v!r}" for k, v in options.items() if v)


def check_probability(name: str, arg: str, p) -> float:
    """p as a float in [0, 1), or ValueError naming the argument."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p < 1.0:
        raise ValueError(f"{name}: expected {arg} in [0, 1), got {p!r}")
    return float(p)


def check_zoneout(name: str, zoneout) -> tuple[float, float]:
    """zoneout as (p_c, p_h): a pair, or one number for both."""
    pair = zoneout if isinstance(zoneout, (tuple, list)) else (zoneout, zoneout)
    if len(pair) != 2:
        raise ValueError(f"{name}: expected zoneout as p or a pair (p_c, p_h), got {zoneout!r}")
    return tuple(check_probability(name, "zoneout", p) for p in pair)


def zoneout_keep(p: float, shape, like: Tensor, training: bool) -> Tensor | float | None:
    """Zoneout's z for one step (Krueger et al. 2017): Bernoulli(p) of ``shape`` in training,
    the expectation p at eval; None when p = 0."""
    if not p:
        return None
    if not training:
        return p
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(p)


class LSTMCell(CellBase):
    """LSTM cell, one step: ``h, c = cell(input, hx=None)`` (equations in the module docstring).

    Args:
        input_size: C.  hidden_size: H.
        bias: if False, no ``bias_ih``/``bias_hh``.
        forget_bias: constant added to the forget gate (not stored in the bias).
        peephole: add diagonal peephole weights ``weight_ci``/``weight_cf``/``weight_co`` (H,).
        coupled: CIFG, i_t = 1 − f_t (input-gate rows kept in the weights, unused).
        layer_norm: LN on the input and recurrent terms and on the cell (Ba et al. 2016; the
            variant in the module docstring); parameters ``weight_ln_ih``, ``weight_ln_hh``
            (4H,), ``weight_ln_c``, ``bias_ln_c`` (H,).
        zoneout: (p_c, p_h) or one p for both (Krueger et al. 2017): in training each unit
            keeps its previous value with that probability, drawn at every call (a step); at
            eval the expectation (mix by p). Recurrent dropout and weight drop, which draw once
            per sequence, are options of the layer (`unroll.LSTM`).

    Shapes: input (B, C) or unbatched (C,); hx a pair (h, c) of (B, H) (or (H,)), None means
    zeros; returns (h_t, c_t). ``state=`` is accepted as another name for ``hx``. Parameters
    (peepholes too) are initialised uniform(-1/√H, 1/√H) as PyTorch does; with the standard
    options the parameters load into `torch.nn.LSTMCell`.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        forget_bias: float = 0.0,
        peephole: bool = False,
        coupled: bool = False,
        device=None,
        dtype=None,
        *,
        layer_norm: bool = False,
        zoneout: float | tuple[float, float] = 0.0,
    ) -> None:
        super().__init__(input_size, hidden_size, bias, gates=4, device=device, dtype=dtype)
        self.forget_bias, self.peephole, self.coupled = float(forget_bias), peephole, coupled
        self.layer_norm = bool(layer_norm)
        self.zoneout = check_zoneout("LSTMCell", zoneout)
        for name, size in (
            ("weight_ln_ih", 4 * hidden_size),
            ("weight_ln_hh", 4 * hidden_size),
            ("weight_ln_c", hidden_size),
            ("bias_ln_c", hidden_size),
        ):
            p = nn.Parameter(torch.empty(size, device=device, dtype=dtype)) if layer_norm else None
            self.register_parameter(name, p)
        for name in ("weight_ci", "weight_cf", "weight_co"):
            wanted = peephole and not (coupled and name == "weight_ci")
            p = (
                nn.Parameter(torch.empty(hidden_size, device=device, dtype=dtype))
                if wanted
                else None
            )
            self.register_parameter(name, p)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.layer_norm:  # γ = 1, β = 0, as nn.LayerNorm
            for name in ("weight_ln_ih", "weight_ln_hh", "weight_ln_c"):
                nn.init.ones_(getattr(self, name))
            nn.init.zeros_(self.bias_ln_c)

    def _options(self) -> dict:
        return {"layer_norm": self.layer_norm, "zoneout": self.zoneout if any(self.zoneout) else 0}

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")
        return s + variant_repr(self.forget_bias, self.peephole, self.coupled, **self._options())

    def _why_not_torch(self) -> str | None:
        variant = variant_repr(self.forget_bias, self.peephole, self.coupled, **self._options())
        return f"an LSTM variant: {variant.lstrip(', ')}" if variant else super()._why_not_torch()

    def _torch_module(self) -> nn.LSTMCell:
        return nn.LSTMCell(self.input_size, self.hidden_size, self.bias, device="meta")

    def forward(
        self,
        input: Tensor,
        hx: tuple[Tensor, Tensor] | None = None,
        state: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        x, state = input, hx_or_state("LSTMCell", hx, state)
        check_cell_input("LSTMCell", x, self.input_size, self.weight_ih)
        unbatched = x.dim() == 1
        x = x.unsqueeze(0) if unbatched else x
        if state is None:
            h = c = x.new_zeros(x.shape[0], self.hidden_size)
        else:
            if not isinstance(state, (tuple, list)) or len(state) != 2:
                raise ValueError("LSTMCell: expected state to be a pair (h, c) or None")
            shape = (self.hidden_size,) if unbatched else (x.shape[0], self.hidden_size)
            check_cell_state("LSTMCell", "h", state[0], shape, self.weight_ih)
            check_cell_state("LSTMCell", "c", state[1], shape, self.weight_ih)
            h, c = (s.unsqueeze(0) for s in state) if unbatched else state
        p_c, p_h = self.zoneout
        ln_c = (self.weight_ln_c, self.bias_ln_c) if self.layer_norm else None
        h, c = lstm_step(
            input_projection(x, self.weight_ih, self.bias_ih, self.weight_ln_ih),
            h,
            c,
            self.weight_hh,
            self.bias_hh,
            self.weight_ci,
            self.weight_cf,
            self.weight_co,
            self.forget_bias,
            self.coupled,
            ln_hh=self.weight_ln_hh,
            ln_c=ln_c,
            keep_c=zoneout_keep(p_c, c.shape, c, self.training),
            keep_h=zoneout_keep(p_h, h.shape, h, self.training),
        )
        return (h.squeeze(0), c.squeeze(0)) if unbatched else (h, c)
