"""The CPU GEMMs of the fused LSTM, laid out for speed: oneDNN for the large whole-sequence
products and the prepacked recurrent weight, MKL's ``addmm`` otherwise.

Shared by the Python loops (`lstm_fused`) and the compiled ones (`lstm_cpu`); a module of its
own so that neither imports the other.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

BIG_GEMM_MACS = 1 << 28  # from here on oneDNN beats MKL's sgemm (`gemm_nt`)


@functools.cache
def _onednn_linear_works() -> bool:
    """Probe once: this build has oneDNN's linear op, it takes transposed views, and it takes a
    prepacked weight. Every oneDNN path below is taken only where this holds."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        a, b = torch.randn(3, 5), torch.randn(3, 4)  # a.t() @ b, from two transposed views
        plain = onednn_linear(a.t(), b.t())
        packed = onednn_linear(a.t(), torch.ops.mkldnn._reorder_linear_weight(b.t(), 5))
        want = a.t() @ b
        return all(torch.allclose(got, want, atol=1e-5) for got in (plain, packed))
    except (RuntimeError, AttributeError, TypeError):
        return False


def _onednn_takes(t: Tensor) -> bool:
    # Not under torch.compile: the probe is a cached Python function dynamo would trace into,
    # and GEMM choice (oneDNN packing included) is the compiler's job there.
    if torch.compiler.is_compiling():
        return False
    return t.device.type == "cpu" and t.dtype == torch.float32 and _onednn_linear_works()


def onednn_linear(v: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``v @ weight.t() (+ bias)`` through oneDNN; ``weight`` plain (views fine) or prepacked
    by `onednn_packed_weight`. Uses the private `torch.ops.mkldnn` linear op (as inductor
    does), so callers go through `_onednn_takes` first."""
    return torch.ops.mkldnn._linear_pointwise(v, weight, bias, "none", [], "")


def onednn_packing_pays(weight: Tensor) -> bool:
    """Whether `onednn_packed_weight` packs this weight (float32 CPU, both sizes ≥ 512)."""
    return min(weight.shape) >= 512 and _onednn_takes(weight)


def onednn_packed_weight(weight: Tensor, batch: int) -> Tensor | None:
    """``weight`` (N, K) prepacked for `onednn_linear` at ``batch`` rows, or None (use addmm).

    For the T per-step recurrent GEMMs on CPU: at large H oneDNN's packed GEMM is ~1.6x faster
    than MKL's `addmm` on an AMD EPYC (H = 650, 1 or 2 threads), which pays the packing (~1 ms)
    many times over; at small H it does not pay (`onednn_packing_pays`).
    """
    if not onednn_packing_pays(weight):
        return None
    return torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), batch)


def _onednn_for(m: int, n: int, k: int, t: Tensor) -> bool:
    return m * n * k >= BIG_GEMM_MACS and _onednn_takes(t)


def gemm_nt(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b.t() (+ bias)`` for the whole-sequence GEMMs (a: (M, K), b: (N, K), views fine).

    Large float32 products on CPU go through oneDNN (`onednn_linear`, which takes transposed
    views without copying): at PTB Medium sizes on an AMD EPYC it beat MKL's sgemm
    (`torch.addmm`, which runs everything else) in ad-hoc timings; BENCHMARKS.md has the layer
    figures.
    """
    if _onednn_for(a.shape[0], b.shape[0], a.shape[1], a):
        return onednn_linear(a, b, bias)
    return torch.addmm(bias, a, b.t()) if bias is not None else a @ b.t()


def weight_gradient(dG2: Tensor, inp: Tensor) -> Tensor:
    """dG2ᵀ · inp (G, K), contiguous, for dG2 (N, G) and inp (N, K).

    Contiguous because autograd would copy a strided gradient into the parameter's layout
    (a slow strided copy); both of `gemm_nt`'s paths write it so.
    """
    return gemm_nt(dG2.t(), inp.t())


def onednn_matmul(weight: Tensor, batch: int):
    """``v -> v @ weight.t()`` through oneDNN with the weight prepacked once, or None."""
    packed = onednn_packed_weight(weight, batch)
    return None if packed is None else (lambda v: onednn_linear(v, packed))
