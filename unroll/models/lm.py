"""The word/character-level LSTM language model of Zaremba et al. 2014 and its loss.

    ids x [B, T] -> Embedding [B, T, E] -> dropout -> LSTM (dropout between layers) [B, T, H]
                 -> dropout -> Linear [B, T, V] logits

Batch-first throughout: `forward` takes ``x`` of shape ``[B, T]`` and returns logits
``[B, T, V]`` and the state ``(h, c)``, each ``[num_layers, B, H]`` (torch.nn.LSTM's layout).
``cell="mingru"|"minlstm"`` puts a min-RNN (`unroll.nn.min_layers`) in the LSTM's place; its
state is the 1-tuple ``(h,)``, carried across BPTT windows the same way.

Dropout is applied only to the non-recurrent connections (Zaremba, Sutskever & Vinyals 2014,
"Recurrent Neural Network Regularization", sec. 3): on the embeddings, between LSTM layers and
before the softmax — never on h_{t-1} -> h_t.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unroll.nn.layers import LSTM
from unroll.nn.registry import layer_class

State = tuple[Tensor, ...]  # (h, c) for the LSTM, (h,) for the min-RNNs
LM_CELLS = ("lstm", "mingru", "minlstm")


class LanguageModel(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        hidden_size: int,
        num_layers: int,
        *,
        embedding_size: int | None = None,
        dropout: float = 0.0,
        init_scale: float = 0.1,
        tie_weights: bool = False,
        cell: str = "lstm",
    ):
        super().__init__()
        if cell not in LM_CELLS:
            raise ValueError(f"LanguageModel: cell {cell!r}, expected one of {', '.join(LM_CELLS)}")
        embedding_size = hidden_size if embedding_size is None else embedding_size
        if tie_weights and embedding_size != hidden_size:
            raise ValueError(
                f"tie_weights needs embedding_size == hidden_size, got {embedding_size} "
                f"and {hidden_size}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.init_scale = init_scale
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.drop = nn.Dropout(dropout)
        self.cell = cell
        kwargs = {"dropout": dropout if num_layers > 1 else 0.0, "batch_first": True}
        if cell == "lstm":
            self.lstm = LSTM(embedding_size, hidden_size, num_layers, **kwargs)
        else:  # another attribute name: an LSTM checkpoint never loads into it by mistake
            self.rnn = layer_class(cell)(embedding_size, hidden_size, num_layers, **kwargs)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            # Press & Wolf 2017, "Using the Output Embedding to Improve Language Models".
            self.decoder.weight = self.embedding.weight
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Every parameter uniform in [-init_scale, init_scale], as the TensorFlow tutorial."""
        for p in self.parameters():
            nn.init.uniform_(p, -self.init_scale, self.init_scale)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """The zero state ``(h, c)`` (min-RNNs: ``(h,)``), each ``[num_layers, B, H]``."""
        device = self.decoder.weight.device if device is None else device
        shape = (self.num_layers, batch_size, self.hidden_size)
        dtype = self.decoder.weight.dtype
        parts = 2 if self.cell == "lstm" else 1
        return tuple(torch.zeros(shape, device=device, dtype=dtype) for _ in range(parts))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """``x`` ids ``[B, T]`` -> logits ``[B, T, V]``, new state (each ``[L, B, H]``)."""
        if x.dim() != 2 or x.dtype != torch.long:
            raise ValueError(
                f"LanguageModel: expected x as [B, T] torch.long ids, got "
                f"{tuple(x.shape)} {x.dtype}"
            )
        if state is None:
            state = self.init_state(x.shape[0], x.device)
        emb = self.drop(self.embedding(x))  # [B, T, E]
        if self.cell == "lstm":
            out, new = self.lstm(emb, tuple(state))  # [B, T, H], (h, c)
        else:
            out, h = self.rnn(emb, state[0])
            new = (h,)
        # Under autocast the LSTM may hand back a bf16 state (on the CPU; on CUDA it runs in
        # fp32, `unroll.nn.layers.AUTOCAST_RNN_HALF`): carry it in the weights' dtype.
        dtype = self.decoder.weight.dtype
        state = tuple(s.to(dtype) for s in new)
        logits = self.decoder(self.drop(out))  # [B, T, V]
        return logits, state


def detach_state(state: State) -> State:
    """Cut the graph between BPTT windows: the values carry on, the gradients stop."""
    return tuple(s.detach() for s in state)


def lm_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """The TensorFlow tutorial's loss: the sum over time steps of the batch-mean cross-entropy.

    ``logits [B, T, V]``, ``targets [B, T]`` -> a scalar equal to
    ``sum_t mean_b CE(logits[b, t], targets[b, t])`` = (total NLL of the window) / B, so the
    gradient scale (and the meaning of learning_rate 1.0) is the paper's. Perplexity over an
    epoch is ``exp(sum of these losses * B / tokens)`` = ``exp(total NLL / tokens)``.
    """
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(
            f"lm_loss: expected logits [B, T, V] and targets [B, T], got "
            f"{tuple(logits.shape)} and {tuple(targets.shape)}"
        )
    B, T, V = logits.shape
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # the loss in fp32 under autocast
    nll = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T), reduction="sum")
    return nll / B


def loss_and_grads(
    model: LanguageModel,
    params: list[nn.Parameter],
    x: Tensor,
    y: Tensor,
    state: State,
    max_grad_norm: float,
    autocast: Callable[[], contextlib.AbstractContextManager],
) -> tuple[Tensor, State]:
    """The part of a training step before the parameter update, shared by the plain step and
    the CUDA-graph step so that both compute the same thing: forward (under ``autocast()``),
    `lm_loss` in fp32, backward, gradients clipped to global norm `max_grad_norm` (no host
    sync). A model that leaves a ``penalty`` (AWD-LSTM's AR/TAR) has it added to what is
    differentiated; the loss returned (perplexity) is the cross-entropy alone. Returns the
    detached loss (0-d) and the final state (not detached)."""
    with autocast():
        logits, state = model(x, state)  # [B, T, V]
    loss = lm_loss(logits, y)
    objective = loss
    penalty = getattr(getattr(model, "module", model), "penalty", None)  # DDP: its module
    if penalty is not None:
        # AWD-LSTM's AR/TAR (unroll.models.awd) are defined against the mean per-token loss;
        # lm_loss sums over the T steps, so they are scaled by T to keep their weight.
        objective = loss + x.shape[1] * penalty
    objective.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm, foreach=True)
    return loss.detach(), state
