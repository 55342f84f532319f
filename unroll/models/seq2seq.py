"""Encoder–decoder models: an encoder reads the source, a decoder writes the target one token
at a time, optionally attending over all the encoder's states.

Shapes: B batch, S source length, T' target length, E embedding size, H hidden size (the
decoder's; a bidirectional encoder has H/2 per direction, so its states are H wide too),
L layers, V a vocabulary's size.

    src [B, S] ids, lengths [B] -> Encoder -> Memory: states [B, S, H], mask [B, S]
                                            + final state, one per layer [L, B, H] (LSTM: h, c)
    tgt_in [B, T'] = <s> y_1 .. y_n  -> Decoder (starts from the encoder's final state)
                                     -> logits [B, T', V] for y_1 .. y_n </s>

Teacher forcing: while training, the decoder reads the true previous token, so with no
attention or Luong's (whose query is the current output) the whole target runs through the
recurrent layer in one call. Bahdanau's attention reads the previous state before each step,
and a teacher-forcing ratio below 1 feeds back the model's own guesses (scheduled sampling,
Bengio et al. 2015), so those go one step at a time through `Decoder.step` — the same function
greedy and beam search call (`unroll.models.decoding`). The one-pass and the step-by-step
decoder give the same numbers (a test holds them equal).

The decoders:

    none      y_t = RNN(emb(y_{t-1}), s_{t-1});  logits = W_o y_t
              (Sutskever et al. 2014; Cho et al. 2014: the source reaches the decoder only
              through its initial state)
    dot/      y_t = RNN(emb(y_{t-1}), s_{t-1});  a_t, c_t = attend(y_t)
    general   h̃_t = tanh(W_c [c_t; y_t]);  logits = W_o h̃_t
              (Luong, Pham & Manning 2015, global attention, eq. 5; no input feeding)
    bahdanau  a_t, c_t = attend(s_{t-1});  y_t = RNN([emb(y_{t-1}); c_t], s_{t-1})
              h̃_t = tanh(W_c [c_t; y_t]);  logits = W_o h̃_t
              (Bahdanau, Cho & Bengio 2015; the output layer is Luong's h̃ rather than their
              maxout, so the two attentional decoders differ only in when they attend)

where attend(q) scores q against the encoder states (`unroll.models.attention`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from unroll.models.attention import make_attention
from unroll.nn.layers import LSTM
from unroll.nn.registry import layer_class

CELLS = ("lstm", "gru", "rnn", "mingru", "minlstm")
ATTENTIONS = ("none", "bahdanau", "dot", "general")

# A recurrent layer's state: h [L, B, H], or (h, c) for an LSTM. Batch is dim 1 of each.
State = Tensor | tuple[Tensor, Tensor]


def recurrent_layer(
    cell: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    *,
    dropout: float = 0.0,
    bidirectional: bool = False,
    forget_bias: float = 0.0,
    peephole: bool = False,
    coupled: bool = False,
) -> nn.Module:
    """One of our layers, batch-first; the LSTM variants apply to ``cell="lstm"`` only."""
    common = {
        "num_layers": num_layers,
        "batch_first": True,
        "dropout": dropout if num_layers > 1 else 0.0,
        "bidirectional": bidirectional,
    }
    if cell == "lstm":
        return LSTM(
            input_size,
            hidden_size,
            forget_bias=forget_bias,
            peephole=peephole,
            coupled=coupled,
            **common,
        )
    if forget_bias or peephole or coupled:
        raise ValueError(f"forget_bias/peephole/coupled are LSTM variants, not {cell}'s")
    if cell not in CELLS:
        raise ValueError(f"cell {cell!r}: expected one of {', '.join(CELLS)}")
    return layer_class(cell)(input_size, hidden_size, **common)


def select_state(state: State, index: Tensor) -> State:
    """The state of the batch rows `index` (beam search reorders and repeats rows)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)  # type: ignore[return-value]
    return state.index_select(1, index)


def _top_layer(state: State) -> Tensor:
    """h of the last layer, [B, H]: Bahdanau's query s_{t-1}."""
    h = state[0] if isinstance(state, tuple) else state
    return h[-1]


@dataclass
class Memory:
    """What the decoder may attend to: the encoder's states [B, S, H], the mask of real source
    positions [B, S], and the attention's per-source part of the score (see `Attention.prepare`;
    None without attention)."""

    states: Tensor
    mask: Tensor
    prepared: Tensor | None = None

    def index_select(self, index: Tensor) -> Memory:
        return Memory(
            self.states.index_select(0, index),
            self.mask.index_select(0, index),
            None if self.prepared is None else self.prepared.index_select(0, index),
        )


class Encoder(nn.Module):
    """Embedding + a recurrent layer over the source (bidirectional: H/2 per direction, the two
    directions concatenated, so states and final state are H wide either way)."""

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        cell: str = "lstm",
        bidirectional: bool = False,
        dropout: float = 0.0,
        pad_id: int = 0,
        **variants: float | bool,
    ):
        super().__init__()
        if bidirectional and hidden_size % 2:
            raise ValueError(
                f"a bidirectional encoder needs an even hidden_size, got {hidden_size}"
            )
        self.bidirectional = bidirectional
        self.num_layers = num_layers
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=pad_id)
        self.drop = nn.Dropout(dropout)
        per_direction = hidden_size // 2 if bidirectional else hidden_size
        self.rnn = recurrent_layer(
            cell,
            embedding_size,
            per_direction,
            num_layers,
            dropout=dropout,
            bidirectional=bidirectional,
            **variants,  # type: ignore[arg-type]
        )

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, State]:
        """src [B, S], lengths [B] -> states [B, S, H] (zero at padding), final state."""
        states, final = self.rnn(self.drop(self.embedding(src)), None, lengths=lengths)
        if isinstance(final, tuple):
            return states, tuple(self._join(s) for s in final)  # type: ignore[return-value]
        return states, self._join(final)

    def _join(self, s: Tensor) -> Tensor:
        """[L·D, B, H/D] -> [L, B, H]: a layer's two directions side by side."""
        if not self.bidirectional:
            return s
        L2, B, Hd = s.shape
        return s.view(L2 // 2, 2, B, Hd).transpose(1, 2).reshape(L2 // 2, B, 2 * Hd)


class Decoder(nn.Module):
    """Writes the target (see the module docstring for the four kinds).

    ``forward(tgt_in [B, T'], state, memory)`` -> logits [B, T', V], attention weights
    [B, T', S] (None without attention), final state; ``step(tokens [B], state, memory)`` ->
    logits [B, V], weights [B, S] or None, state: one step, for decoding."""

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        cell: str = "lstm",
        attention: str = "none",
        dropout: float = 0.0,
        pad_id: int = 0,
        **variants: float | bool,
    ):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention {attention!r}: expected one of {', '.join(ATTENTIONS)}")
        self.kind = attention
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=pad_id)
        self.drop = nn.Dropout(dropout)
        feed = hidden_size if attention == "bahdanau" else 0  # c_t beside the input
        self.rnn = recurrent_layer(
            cell,
            embedding_size + feed,
            hidden_size,
            num_layers,
            dropout=dropout,
            **variants,  # type: ignore[arg-type]
        )
        self.attention = (
            None if attention == "none" else make_attention(attention, hidden_size, hidden_size)
        )
        self.combine = nn.Linear(2 * hidden_size, hidden_size) if self.attention else None  # W_c
        self.out = nn.Linear(hidden_size, vocab_size)  # W_o

    def memory(self, states: Tensor, mask: Tensor) -> Memory:
        prepared = self.attention.prepare(states) if self.attention is not None else None
        return Memory(states, mask, prepared)

    def forward(
        self, tgt_in: Tensor, state: State, memory: Memory
    ) -> tuple[Tensor, Tensor | None, State]:
        if self.kind == "bahdanau":  # attends before each step: one step at a time
            logits, weights = [], []
            for t in range(tgt_in.shape[1]):
                lt, wt, state = self.step(tgt_in[:, t], state, memory)
                logits.append(lt)
                weights.append(wt)
            return torch.stack(logits, 1), torch.stack(weights, 1), state  # type: ignore[arg-type]
        emb = self.drop(self.embedding(tgt_in))  # [B, T', E]
        y, state = self.rnn(emb, state)  # [B, T', H]: the whole target in one call
        if self.attention is None:
            return self.out(self.drop(y)), None, state
        weights, context = self.attention(y, memory.states, memory.mask, memory.prepared)
        h_tilde = torch.tanh(self.combine(torch.cat([context, y], dim=-1)))  # type: ignore[misc]
        return self.out(self.drop(h_tilde)), weights, state

    def step(
        self, tokens: Tensor, state: State, memory: Memory
    ) -> tuple[Tensor, Tensor | None, State]:
        if self.kind != "bahdanau":
            logits, weights, state = self(tokens[:, None], state, memory)
            return logits[:, 0], None if weights is None else weights[:, 0], state
        emb = self.drop(self.embedding(tokens))[:, None]  # [B, 1, E]
        query = _top_layer(state)[:, None]  # s_{t-1} [B, 1, H]
        weights, context = self.attention(query, memory.states, memory.mask, memory.prepared)  # type: ignore[misc]
        y, state = self.rnn(torch.cat([emb, context], dim=-1), state)  # [B, 1, H]
        h_tilde = torch.tanh(self.combine(torch.cat([context, y], dim=-1)))  # type: ignore[misc]
        return self.out(self.drop(h_tilde))[:, 0], weights[:, 0], state


class Seq2Seq(nn.Module):
    """An `Encoder` and a `Decoder` of the same cell, layers and hidden size; the decoder starts
    from the encoder's final state. `pad_id`, `bos_id` (``<s>``), `eos_id` (``</s>``) are the
    target vocabulary's special ids (the source shares `pad_id`)."""

    def __init__(
        self, encoder: Encoder, decoder: Decoder, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2
    ):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[Memory, State]:
        states, final = self.encoder(src, lengths)
        mask = (
            torch.arange(src.shape[1], device=src.device)[None, :] < lengths.to(src.device)[:, None]
        )
        return self.decoder.memory(states, mask), final

    def forward(
        self,
        src: Tensor,
        lengths: Tensor,
        tgt_in: Tensor,
        teacher_forcing: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Logits [B, T', V] for each position of `tgt_in` [B, T'] (and the attention weights
        [B, T', S]). With `teacher_forcing` < 1 each step reads the true previous token with
        that probability, else the model's own best guess (drawn per token with `generator`)."""
        memory, state = self.encode(src, lengths)
        if teacher_forcing >= 1.0:
            logits, weights, _ = self.decoder(tgt_in, state, memory)
            return logits, weights
        logits_t, weights_t = [], []
        tokens = tgt_in[:, 0]
        for t in range(tgt_in.shape[1]):
            lt, wt, state = self.decoder.step(tokens, state, memory)
            logits_t.append(lt)
            weights_t.append(wt)
            if t + 1 < tgt_in.shape[1]:
                coin = torch.rand(tokens.shape, generator=generator, device="cpu").to(tokens.device)
                tokens = torch.where(coin < teacher_forcing, tgt_in[:, t + 1], lt.argmax(-1))
        weights = None if weights_t[0] is None else torch.stack(weights_t, 1)  # type: ignore[arg-type]
        return torch.stack(logits_t, 1), weights


def sequence_loss(logits: Tensor, target: Tensor, pad_id: int = 0) -> Tensor:
    """Mean cross-entropy per real target token: logits [B, T', V], target [B, T'] (padding
    `pad_id` is not scored)."""
    return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=pad_id)


def build_seq2seq(
    src_vocab: int,
    tgt_vocab: int,
    *,
    hidden_size: int = 128,
    embedding_size: int = 64,
    num_layers: int = 1,
    cell: str = "lstm",
    attention: str = "general",
    bidirectional: bool = False,
    dropout: float = 0.0,
    pad_id: int = 0,
    bos_id: int = 1,
    eos_id: int = 2,
    **variants: float | bool,
) -> Seq2Seq:
    """An encoder–decoder from sizes (the recipe's config fields)."""
    encoder = Encoder(
        src_vocab,
        embedding_size,
        hidden_size,
        num_layers,
        cell=cell,
        bidirectional=bidirectional,
        dropout=dropout,
        pad_id=pad_id,
        **variants,
    )
    decoder = Decoder(
        tgt_vocab,
        embedding_size,
        hidden_size,
        num_layers,
        cell=cell,
        attention=attention,
        dropout=dropout,
        pad_id=pad_id,
        **variants,
    )
    return Seq2Seq(encoder, decoder, pad_id, bos_id, eos_id)
