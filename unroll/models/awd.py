"""AWD-LSTM's regularisers and model (Merity, Keskar & Socher 2018, "Regularizing and
Optimizing LSTM Language Models", ICLR; the paper's section on each line that implements it).

    ids x [B, T] -> embedding (embedding dropout: whole words) [B, T, E] -> locked dropout
        -> LSTM_1 (weight drop on W_hh) -> locked dropout -> … -> LSTM_L [B, T, E or H]
        -> locked dropout -> Linear (tied to the embedding) [B, T, V] logits

The layers' sizes are E -> H -> … -> H -> E (the last one E so that the decoder can share the
embedding's weights), so each layer is its own single-layer `unroll.LSTM`; their states are
carried side by side as ONE pair ``(h, c)``, each ``[1, B, ΣH_l]``, so that the language-model
recipe's state handling (zero init, detach between BPTT windows) applies unchanged.

Training loss = cross-entropy + AR + TAR (`awd_penalty`), optimised with SGD then, once the
validation loss stops improving (`nt_asgd_should_switch`), averaged SGD (`torch.optim.ASGD`
with t0 = 0, lambd = 0: NT-ASGD), evaluated with the averaged weights (`averaged_weights`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unroll.nn.layers import LSTM

State = tuple[Tensor, Tensor]


def embedding_dropout(weight: Tensor, p: float, training: bool) -> Tensor:
    """The embedding matrix [V, E] with whole rows (words) zeroed with probability p and the
    rest scaled by 1/(1 − p): a dropped word is dropped at every position it occurs in the
    batch (Gal & Ghahramani 2016, §4.1; AWD-LSTM §4.3, "embedding dropout")."""
    if not training or not p:
        return weight
    mask = weight.new_empty(weight.shape[0], 1).bernoulli_(1 - p).div_(1 - p)  # [V, 1]
    return weight * mask


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout with ONE mask per sequence, shared by all time steps, on x [B, T, ·] (variational
    dropout, Gal & Ghahramani 2016; AWD-LSTM §4.2, "variational dropout" / LockedDropout)."""
    if not training or not p:
        return x
    mask = x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - p).div_(1 - p)  # [B, 1, ·]
    return x * mask


def awd_penalty(raw: Tensor, dropped: Tensor, alpha: float, beta: float) -> Tensor:
    """AR + TAR of the last layer's output [B, T, E] (AWD-LSTM §4.6, Merity et al. 2017,
    "Revisiting Activation Regularization for Language RNNs"):

        AR  = α · mean(m ⊙ h_t)²                 on the dropped output (locked dropout's m)
        TAR = β · mean(h_t − h_{t+1})²           on the raw output (before dropout)

    means over all B·T·E entries, as AWD-LSTM's ``.pow(2).mean()``."""
    penalty = raw.new_zeros(())
    if alpha:
        penalty = penalty + alpha * dropped.pow(2).mean()
    if beta:
        penalty = penalty + beta * (raw[:, 1:] - raw[:, :-1]).pow(2).mean()
    return penalty


class AWDLanguageModel(nn.Module):
    """The AWD-LSTM language model (module docstring). Defaults are the paper's PTB model:
    3 layers, 1150 hidden, 400 embedding, dropouts (output 0.4, between layers 0.25 — the
    reproduction's 0.3 for WikiText-2 —, input 0.4, embedding 0.1), weight drop 0.5, tied.

    ``forward(x [B, T], state) -> (logits [B, T, V], state)``; ``forward_with_outputs`` also
    returns the last layer's raw and dropped outputs. With ``ar``/``tar`` (α, β) a training
    forward leaves ``penalty`` = `awd_penalty` of its outputs, which `unroll.models.lm.
    loss_and_grads` adds to the loss (scaled to its sum-over-T loss).
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int = 400,
        hidden_size: int = 1150,
        num_layers: int = 3,
        *,
        dropout: float = 0.4,
        dropout_between: float = 0.25,
        dropout_input: float = 0.4,
        dropout_embedding: float = 0.1,
        weight_drop: float = 0.5,
        tie_weights: bool = True,
        impl: str = "auto",
        ar: float = 0.0,
        tar: float = 0.0,
    ):
        super().__init__()
        for name, p in (
            ("dropout", dropout),
            ("dropout_between", dropout_between),
            ("dropout_input", dropout_input),
            ("dropout_embedding", dropout_embedding),
            ("weight_drop", weight_drop),
        ):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"AWDLanguageModel: expected {name} in [0, 1), got {p!r}")
        if num_layers < 1:
            raise ValueError(f"AWDLanguageModel: expected num_layers >= 1, got {num_layers}")
        self.vocab_size, self.num_layers = vocab_size, num_layers
        self.ar, self.tar = float(ar), float(tar)
        # AR + TAR of the latest training forward (`awd_penalty`), for the loss to add; None
        # at eval or when both are 0.
        self.penalty: Tensor | None = None
        self.dropout, self.dropout_between = dropout, dropout_between
        self.dropout_input, self.dropout_embedding = dropout_input, dropout_embedding
        last = embedding_size if tie_weights else hidden_size  # tying: the last layer is E
        self.sizes = [hidden_size] * (num_layers - 1) + [last]
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.layers = nn.ModuleList(
            LSTM(n_in, n_out, batch_first=True, weight_drop=weight_drop, impl=impl)
            for n_in, n_out in zip([embedding_size, *self.sizes[:-1]], self.sizes)
        )
        self.decoder = nn.Linear(last, vocab_size)
        if tie_weights:  # Press & Wolf 2017; Inan et al. 2017 (AWD-LSTM §5)
            self.decoder.weight = self.embedding.weight
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)  # AWD-LSTM's init_weights
        nn.init.zeros_(self.decoder.bias)
        if not tie_weights:
            nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    @property
    def hidden_size(self) -> int:
        """ΣH_l: the width of the carried state (the layers' states side by side)."""
        return sum(self.sizes)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zeros ``(h, c)``, each ``[1, B, ΣH_l]``."""
        w = self.decoder.weight
        shape = (1, batch_size, self.hidden_size)
        device = w.device if device is None else device
        return (
            torch.zeros(shape, device=device, dtype=w.dtype),
            torch.zeros(shape, device=device, dtype=w.dtype),
        )

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        logits, state, _, _ = self.forward_with_outputs(x, state)
        return logits, state

    def forward_with_outputs(
        self, x: Tensor, state: State | None = None
    ) -> tuple[Tensor, State, Tensor, Tensor]:
        """logits [B, T, V], the new state, and the last layer's raw and dropped outputs."""
        if x.dim() != 2 or x.dtype != torch.long:
            raise ValueError(
                f"AWDLanguageModel: expected x as [B, T] torch.long ids, got "
                f"{tuple(x.shape)} {x.dtype}"
            )
        if state is None:
            state = self.init_state(x.shape[0], x.device)
        weight = embedding_dropout(self.embedding.weight, self.dropout_embedding, self.training)
        h = F.embedding(x, weight)  # [B, T, E]
        h = locked_dropout(h, self.dropout_input, self.training)
        hs, cs = _split(state[0], self.sizes), _split(state[1], self.sizes)
        new_h, new_c = [], []
        for i, layer in enumerate(self.layers):
            h, (h_n, c_n) = layer(h, (hs[i], cs[i]))
            new_h.append(h_n)
            new_c.append(c_n)
            if i < self.num_layers - 1:
                h = locked_dropout(h, self.dropout_between, self.training)
        raw = h
        dropped = locked_dropout(raw, self.dropout, self.training)
        logits = self.decoder(dropped)
        self.penalty = None
        if self.training and (self.ar or self.tar):
            self.penalty = awd_penalty(raw, dropped, self.ar, self.tar)
        return logits, (torch.cat(new_h, 2), torch.cat(new_c, 2)), raw, dropped


def _split(s: Tensor, sizes: Sequence[int]) -> list[Tensor]:
    """[1, B, ΣH_l] -> per layer [1, B, H_l] (contiguous: the layers' state checks want it)."""
    return [t.contiguous() for t in s.split(list(sizes), dim=2)]


def nt_asgd_should_switch(valid_losses: Sequence[float], nonmono: int) -> bool:
    """NT-ASGD's trigger (AWD-LSTM §3, Algorithm 1, non-monotone interval n = ``nonmono``):
    switch from SGD to averaged SGD once the newest validation loss is worse than the best of
    those more than n checks ago — AWD-LSTM's ``len(v) > n and v[-1] > min(v[:-n])``."""
    n = nonmono
    return len(valid_losses) > n and valid_losses[-1] > min(valid_losses[:-n])


class NTASGD(torch.optim.Optimizer):
    """NT-ASGD's optimizer (AWD-LSTM §3): SGD with L2 weight decay, which, once `switch` is
    called (`nt_asgd_should_switch`), also keeps the running average of every iterate from
    then on — ``torch.optim.ASGD(t0=0, lambd=0)``'s update and average, in one optimizer so
    that the switch (``param_groups[·]["averaging"]``) and the averages (``state[p]["ax"]``,
    ``["n"]``) travel in its state_dict: a checkpoint resumes the same run. Before the switch
    it is ``torch.optim.SGD(lr, weight_decay)`` step for step (tested)."""

    def __init__(self, params, lr: float, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "averaging": False})

    @property
    def averaging(self) -> bool:
        return bool(self.param_groups[0]["averaging"])

    def switch(self) -> None:
        """Start averaging from the next step on."""
        for group in self.param_groups:
            group["averaging"] = True

    @torch.no_grad()
    def step(self, closure=None):
        loss = None if closure is None else closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad if not wd else p.grad.add(p, alpha=wd)
                p.add_(d, alpha=-lr)
                if group["averaging"]:  # ax_n = ax_{n-1} + (p − ax_{n-1}) / n
                    state = self.state[p]
                    if "ax" not in state:
                        state["ax"], state["n"] = p.detach().clone(), torch.ones(())
                    else:
                        state["n"] += 1
                        state["ax"].add_((p - state["ax"]) / state["n"].to(p.device))
        return loss


def load_averages(model: nn.Module, optimizer_state: dict | None) -> bool:
    """Copy NT-ASGD's averages from a saved `NTASGD` state_dict into the model's parameters
    (the weights AWD-LSTM evaluates and saves once averaging); True if there were any. The
    state is keyed by position in ``model.parameters()``, as torch's optimizers save it."""
    if not optimizer_state or not optimizer_state.get("param_groups"):
        return False
    if not optimizer_state["param_groups"][0].get("averaging"):
        return False
    params = list(model.parameters())
    found = False
    with torch.no_grad():
        for index, state in optimizer_state.get("state", {}).items():
            if "ax" in state:
                params[int(index)].copy_(state["ax"])
                found = True
    return found


@contextlib.contextmanager
def averaged_weights(model: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Inside: the model's parameters are ASGD's averages (``ax``), as AWD-LSTM evaluates and
    saves after the switch; restored on exit. Parameters without an average stay as they
    are (a plain SGD optimizer: nothing changes)."""
    saved = []
    with torch.no_grad():
        for p in model.parameters():
            ax = optimizer.state.get(p, {}).get("ax")
            if ax is not None:
                saved.append((p, p.detach().clone()))
                p.copy_(ax)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, value in saved:
                p.copy_(value)
