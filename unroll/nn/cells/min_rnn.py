"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201).

The gates read the input only, never h_{t-1}; so every step is an affine map of the state,
h_t = a_t ⊙ h_{t-1} + b_t, with a_t, b_t computed for all T at once (one GEMM), and the whole
sequence is a linear recurrence that trains as a parallel scan (`unroll.nn.kernels.scan`).

minGRU (the paper's eq. for minGRU, with its g() on the candidate, sec. 3.1 and appendix B):

    z_t  = σ(W_iz·x_t + b_iz)
    h̃_t  = g(W_ih·x_t + b_ih)
    h_t  = (1 − z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t                    a_t = 1 − z_t,  b_t = z_t ⊙ h̃_t

minLSTM (sec. 3.2, the length-independent scaling of the gates):

    f_t  = σ(W_if·x_t + b_if)
    i_t  = σ(W_ii·x_t + b_ii)
    f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t)
    h̃_t  = g(W_ih·x_t + b_ih)
    h_t  = f'_t ⊙ h_{t-1} + i'_t ⊙ h̃_t                         a_t = f'_t,  b_t = i'_t ⊙ h̃_t

    g(v) = v + ½ for v ≥ 0, σ(v) for v < 0   (continuous, > 0: so h_t > 0 when h_0 ≥ 0,
                                               and b_t can be taken to the log domain)

Weights stack the blocks as ``weight_ih: (2H, C)`` in the order (z, h̃) for minGRU and
``(3H, C)`` in the order (f, i, h̃) for minLSTM; ``bias_ih`` likewise. There is no weight_hh.

In log space (what the scan uses, appendix B of the paper) the same coefficients are

    minGRU   log a_t = −softplus(k_z)      log z_t = −softplus(−k_z)
    minLSTM  d = softplus(−k_f) − softplus(−k_i):  log f'_t = −softplus(d), log i'_t = −softplus(−d)
    log g(v) = log(v + ½) for v ≥ 0, −softplus(−v) for v < 0

`min_coefficients` returns (log a, log b) of a whole sequence from the projected input; the
step functions below are the specification the scan is tested against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def g(v: Tensor) -> Tensor:
    """The paper's activation for h̃: v + ½ for v ≥ 0, σ(v) below (positive everywhere)."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def log_g(v: Tensor) -> Tensor:
    """log g(v), computed without forming g(v) (no log of an underflowed σ(v))."""
    # relu: the branch not taken must stay finite, or where's gradient carries NaN into it.
    return torch.where(v >= 0, torch.log(F.relu(v) + 0.5), -F.softplus(-v))


def mingru_step(x_proj: Tensor, h: Tensor) -> Tensor:
    """One minGRU step from the projected input ``x_proj = W_ih·x_t + b_ih`` (B, 2H)."""
    kz, kh = x_proj.chunk(2, -1)
    z = torch.sigmoid(kz)
    h_tilde = g(kh)
    return (1 - z) * h + z * h_tilde


def minlstm_step(x_proj: Tensor, h: Tensor) -> Tensor:
    """One minLSTM step from the projected input ``x_proj = W_ih·x_t + b_ih`` (B, 3H)."""
    kf, ki, kh = x_proj.chunk(3, -1)
    f = torch.sigmoid(kf)
    i = torch.sigmoid(ki)
    f_prime, i_prime = f / (f + i), i / (f + i)
    h_tilde = g(kh)
    return f_prime * h + i_prime * h_tilde


def min_coefficients(x_proj: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """(log a, log b) of h_t = a_t ⊙ h_{t-1} + b_t for every step of ``x_proj`` (..., G·H).

    mode "GRU": blocks (z, h̃); "LSTM": blocks (f, i, h̃). Both outputs (..., H).
    """
    if mode == "GRU":
        kz, kh = x_proj.chunk(2, -1)
        log_a = -F.softplus(kz)  # log(1 − z)
        log_gate = -F.softplus(-kz)  # log z
    else:
        kf, ki, kh = x_proj.chunk(3, -1)
        d = F.softplus(-kf) - F.softplus(-ki)  # log i − log f
        log_a = -F.softplus(d)  # log f' = log f − log(f + i)
        log_gate = -F.softplus(-d)  # log i'
    return log_a, log_gate + log_g(kh)


MIN_STEPS = {"GRU": mingru_step, "LSTM": minlstm_step}
MIN_GATES = {"GRU": 2, "LSTM": 3}
