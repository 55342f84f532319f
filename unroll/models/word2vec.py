"""word2vec: skip-gram and CBOW, trained with negative sampling or noise-contrastive estimation.

One example (`unroll.data.word_windows.Examples`): input words C, a target word o, and K noise
words n_1..n_K drawn from q(w) ∝ count_w^0.75. With v the input vectors, u the output vectors:

    h   = v_c                         skip-gram (one input word c: a neighbour of o)
    h   = (1/|C|) Σ_{c∈C} v_c         CBOW, mean (or Σ_{c∈C} v_c with cbow_mean=False)
    s_j = u_j · h                     negative sampling (SGNS; Mikolov et al. 2013b)
    s_j = u_j · h + b_j − log(K q_j)  NCE (Gutmann & Hyvärinen 2010; TensorFlow's nce_loss,
                                      the loss of the word2vec_basic tutorial)
    L   = −log σ(s_o) − Σ_k log σ(−s_{n_k})

    g_j = ∂L/∂s_j = σ(s_j) − y_j      (y_o = 1, y_{n_k} = 0)
    ∂L/∂u_j = g_j h     ∂L/∂b_j = g_j     ∂L/∂h = Σ_j g_j u_j

and plain SGD on the rows the example touches: u_j −= α g_j h, b_j −= α g_j, and every input
row v_c −= α ∂L/∂h. For the CBOW mean that last line is the C tool's and gensim's rule, not the
exact gradient (which has a 1/|C|); we keep theirs so their learning rates mean the same here.
A noise word equal to the target is skipped (no loss, no update), as in both tools.

Initialisation as gensim 4: v ~ U(−1/D, 1/D) (the C tool and gensim 3 draw from half that
range), u = 0, b = 0.

`reference_update` is that update for a batch of examples, every gradient taken at the same
(current) vectors, written out as above in PyTorch: the specification, and the GPU path. The
compiled CPU kernel (`unroll.nn.kernels.word2vec_cpu`) applies the examples one after another
(as the C tool does, several threads at once without locks as it does), so a batch of one
example is the same update on both; the tests hold them equal. `Word2Vec.update` picks one.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unroll.data.word_windows import Examples
from unroll.nn.kernels import word2vec_cpu

OBJECTIVES = ("neg", "nce")
IMPLS = ("auto", "compiled", "torch")


class Word2Vec(nn.Module):
    """in_vectors (V, D): the word vectors (the C tool's syn0, gensim's ``wv.vectors``);
    out_vectors (V, D): the output vectors (syn1neg); out_bias (V,): NCE's biases (zero and
    unused with negative sampling); log_kq (V,) buffer: NCE's log(K q_w)."""

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        *,
        objective: Literal["neg", "nce"] = "neg",
        cbow_mean: bool = True,
        log_kq: Tensor | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
        if objective == "nce" and log_kq is None:
            raise ValueError("objective='nce' needs log_kq, the log(K q_w) of the noise words")
        self.objective = objective
        self.cbow_mean = cbow_mean
        # The update is written out (no autograd), so no parameter needs a gradient.
        init = (2 * torch.rand(vocab_size, dim, generator=generator) - 1) / dim
        self.in_vectors = nn.Parameter(init, requires_grad=False)
        self.out_vectors = nn.Parameter(torch.zeros(vocab_size, dim), requires_grad=False)
        self.out_bias = nn.Parameter(torch.zeros(vocab_size), requires_grad=False)
        self.register_buffer(
            "log_kq", torch.zeros(vocab_size) if log_kq is None else log_kq.float().clone()
        )

    @property
    def nce(self) -> bool:
        return self.objective == "nce"

    def update(
        self, ex: Examples, lr: float, *, impl: str = "auto", torch_batch: int = 1024
    ) -> Tensor:
        """One SGD pass over the examples; their mean loss (0-d, at the vectors each was
        applied to). ``impl``: ``compiled`` (the CPU kernel, one example at a time),
        ``torch`` (`reference_update` on batches of `torch_batch`), ``auto`` (the kernel on
        the CPU when it could be built, else torch)."""
        if len(ex) == 0:
            return torch.zeros((), device=self.in_vectors.device)
        if self._use_kernel(impl):
            total = word2vec_cpu.update(
                self.in_vectors,
                self.out_vectors,
                self.out_bias if self.nce else None,
                self.log_kq if self.nce else None,
                ex,
                lr,
                self.cbow_mean,
            )
            return torch.tensor(total / len(ex), dtype=torch.float64)
        total = torch.zeros((), dtype=torch.float64, device=self.in_vectors.device)
        for part in split_examples(ex, torch_batch):
            total += reference_update(self, part, lr) * len(part)
        return total / len(ex)

    def _use_kernel(self, impl: str) -> bool:
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if impl == "torch" or self.in_vectors.device.type != "cpu":
            if impl == "compiled":
                raise ValueError("impl='compiled' is the CPU kernel; these vectors are not on CPU")
            return False
        ok = word2vec_cpu.kernel() is not None
        if impl == "compiled" and not ok:
            raise RuntimeError(f"the word2vec CPU kernel: {word2vec_cpu.unavailable_reason()}")
        return ok


def hidden(model: Word2Vec, ex: Examples, vectors: Tensor | None = None) -> Tensor:
    """h (N, D): the input vector (skip-gram) or the mean/sum of the input vectors (CBOW)."""
    v = model.in_vectors if vectors is None else vectors
    if ex.offsets is None:
        return v[ex.inputs]
    counts = ex.input_counts()
    example = torch.repeat_interleave(torch.arange(len(ex), device=counts.device), counts)
    h = torch.zeros(len(ex), v.shape[1], dtype=v.dtype, device=v.device)
    h = h.index_add(0, example, v[ex.inputs])
    return h / counts[:, None].to(v.dtype) if model.cbow_mean else h


def _rows_and_labels(ex: Examples) -> tuple[Tensor, Tensor, Tensor]:
    """rows (N, 1+K): target then noise words; labels y (1+K,); live (N, 1+K): False for a
    noise word equal to the target (skipped)."""
    rows = torch.cat([ex.targets[:, None], ex.negatives], dim=1)
    labels = torch.zeros(rows.shape[1], device=rows.device)
    labels[0] = 1.0
    live = torch.ones_like(rows, dtype=torch.bool)
    live[:, 1:] = ex.negatives != ex.targets[:, None]
    return rows, labels, live


def scores(
    model: Word2Vec, h: Tensor, rows: Tensor, u_rows: Tensor, b: Tensor | None = None
) -> Tensor:
    """s (N, 1+K): u_j · h, plus b_j − log(K q_j) for NCE; u_rows (N, 1+K, D) = u[rows]."""
    s = torch.einsum("njd,nd->nj", u_rows, h)
    if model.nce:
        bias = model.out_bias if b is None else b
        s = s + bias[rows] - model.log_kq[rows]
    return s


def example_losses(s: Tensor, live: Tensor) -> Tensor:
    """(N,): −log σ(s_o) − Σ_k log σ(−s_{n_k}) over the live noise words (softplus form)."""
    return F.softplus(-s[:, 0]) + (F.softplus(s[:, 1:]) * live[:, 1:]).sum(1)


def loss(model: Word2Vec, ex: Examples, v: Tensor, u: Tensor, b: Tensor) -> Tensor:
    """The summed loss of the examples as a function of (v, u, b): for checking the written-out
    gradients against autograd (the update does not use it)."""
    rows, _, live = _rows_and_labels(ex)
    return example_losses(scores(model, hidden(model, ex, v), rows, u[rows], b), live).sum()


@torch.no_grad()
def reference_update(model: Word2Vec, ex: Examples, lr: float) -> Tensor:
    """SGD on the summed loss of `ex`, all gradients at the current vectors (module docstring).
    Returns the mean loss (0-d)."""
    v, u, b = model.in_vectors, model.out_vectors, model.out_bias
    rows, y, live = _rows_and_labels(ex)  # (N, 1+K)
    h = hidden(model, ex)  # (N, D)
    u_rows = u[rows]  # (N, 1+K, D), read before any write
    s = scores(model, h, rows, u_rows)  # (N, 1+K)
    g = (torch.sigmoid(s) - y) * live  # ∂L/∂s_j
    grad_h = torch.einsum("nj,njd->nd", g, u_rows)  # Σ_j g_j u_j
    grad_u = g[:, :, None] * h[:, None, :]  # g_j h      (N, 1+K, D)
    u.index_add_(0, rows.flatten(), grad_u.flatten(0, 1), alpha=-lr)
    if model.nce:
        b.index_add_(0, rows.flatten(), g.flatten(), alpha=-lr)
    # Every input row gets all of ∂L/∂h (for the CBOW mean too: the C tool's rule).
    per_input = grad_h.repeat_interleave(ex.input_counts(), dim=0)  # (M, D)
    v.index_add_(0, ex.inputs, per_input, alpha=-lr)
    return example_losses(s, live).mean()


def split_examples(ex: Examples, size: int) -> list[Examples]:
    """`ex` in consecutive batches of at most `size` examples."""
    n = len(ex)
    if n <= size:
        return [ex]
    parts = []
    for a in range(0, n, size):
        e = min(a + size, n)
        if ex.offsets is None:
            inputs, offsets = ex.inputs[a:e], None
        else:
            lo, hi = int(ex.offsets[a]), int(ex.offsets[e])
            inputs, offsets = ex.inputs[lo:hi], ex.offsets[a : e + 1] - lo
        parts.append(Examples(inputs, offsets, ex.targets[a:e], ex.negatives[a:e]))
    return parts
