"""The task and model from a config or checkpoint; decoding and scoring a split; ``eval``.

Scoring a split decodes every source (greedy, or beam search with `beam` > 1, in batches of
similar length) and compares the outputs with the references (`unroll.metrics.sequence`):
exact match, token accuracy, sequence and token error rates (g2p's WER and PER), accuracy by
source length, and BLEU for word-level targets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unroll.config import config_from_dict
from unroll.data import pairs as P
from unroll.data.text import Vocabulary
from unroll.engine.checkpoint import find_checkpoint, load_checkpoint
from unroll.engine.device import resolve_device
from unroll.engine.model_check import load_weights
from unroll.engine.recipe import Result
from unroll.errors import UserError
from unroll.limits import CAPS, cap_help, check_bytes
from unroll.metrics.sequence import accuracy_by_length, bleu, sequence_scores
from unroll.models.decoding import Hypothesis, beam_search, decode_bytes, greedy_decode
from unroll.models.seq2seq import Seq2Seq, build_seq2seq
from unroll.recipes.seq2seq.config import KIND, Seq2SeqConfig


def load_task(config: Seq2SeqConfig) -> P.PairData:
    """The pairs `config.data` names (see `unroll.data.pairs`)."""
    if config.data == "addition":
        return P.addition(config.train_size or 50_000, seed=config.task_seed)
    if config.data == "reverse":
        return P.reverse(
            config.train_size or 50_000, config.min_len, config.max_len, config.task_seed
        )
    if config.data == "g2p":
        return P.g2p(None, config.stress)
    if Path(config.data).is_file():
        return P.g2p(config.data, config.stress)
    return P.pair_files(config.data, config.tokens, config.max_tokens)


def auto_max_decode(data: P.PairData) -> int:
    return int(1.5 * max(len(t) for t in data.train.targets)) + 5


def build_model(config: Seq2SeqConfig, src_vocab: int, tgt_vocab: int) -> Seq2Seq:
    return build_seq2seq(
        src_vocab,
        tgt_vocab,
        hidden_size=config.hidden_size,
        embedding_size=config.embedding_size,
        num_layers=config.num_layers,
        cell=config.cell,
        attention=config.attention,
        bidirectional=config.bidirectional,
        dropout=config.dropout,
        pad_id=P.PAD_ID,
        bos_id=P.BOS_ID,
        eos_id=P.EOS_ID,
        **(
            {
                "forget_bias": config.forget_bias,
                "peephole": config.peephole,
                "coupled": config.coupled,
            }
            if config.cell == "lstm"
            else {}
        ),
    )


@dataclass
class Translator:
    """A trained model with what it needs to read and write text: vocabularies, how tokens
    are written (``char``/``word``), the output limit."""

    model: Seq2Seq
    src_vocab: Vocabulary
    tgt_vocab: Vocabulary
    src_level: str
    tgt_level: str
    max_decode: int
    config: Seq2SeqConfig
    checkpoint: dict[str, Any] = field(default_factory=dict)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokens(self, ids: list[int]) -> list[str]:
        return [self.tgt_vocab.word(i) for i in ids]

    def check_memory(self, n: int, src_len: int, beam: int, batch_size: int) -> None:
        """A one-line `UserError` before decoding when a batch of the `n` sources (of up to
        `src_len` tokens) with `beam` beams cannot fit in this machine's memory."""
        check_decode_memory(
            self.config, min(n, batch_size), src_len, beam, self.max_decode, len(self.tgt_vocab)
        )

    def decode(
        self, sources: list[list[str]], beam: int = 1, n_best: int = 1, batch_size: int = 500
    ) -> list[list[Hypothesis]]:
        """The `n_best` hypotheses of each source (token lists), in the order given; a source
        is decoded with others of similar length (less padding)."""
        self.model.eval()
        self.check_memory(len(sources), max((len(s) for s in sources), default=1), beam, batch_size)
        order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
        out: list[list[Hypothesis]] = [[] for _ in sources]
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            S = max(len(sources[i]) for i in idx)
            src = torch.full((len(idx), S), P.PAD_ID, dtype=torch.long)
            for row, i in enumerate(idx):
                src[row, : len(sources[i])] = torch.tensor(
                    P.encode_tokens(sources[i], self.src_vocab)
                )
            lengths = torch.tensor([len(sources[i]) for i in idx])
            src = src.to(self.device)
            penalty = self.config.length_penalty
            if beam == 1 and n_best == 1:
                hyps = [
                    [h] for h in greedy_decode(self.model, src, lengths, self.max_decode, penalty)
                ]
            else:
                hyps = beam_search(self.model, src, lengths, self.max_decode, beam, penalty, n_best)
            for i, h in zip(idx, hyps):
                out[i] = h
        return out


def check_decode_memory(
    config: Seq2SeqConfig, sources: int, src_len: int, beam: int, max_decode: int, vocab: int
) -> None:
    """`unroll.models.decoding.decode_bytes` against this machine's memory (one line)."""
    need = decode_bytes(
        sources, beam, src_len, max_decode, vocab, config.hidden_size, config.num_layers
    )
    check_bytes(
        need,
        f"decoding {sources} sources of up to {src_len} tokens with beam {beam}, up to "
        f"{max_decode} output tokens from a vocabulary of {vocab}",
        "lower beam, eval_batch_size or max_decode",
    )


def check_sizes(config: Seq2SeqConfig, data: P.PairData, tgt_vocab: int) -> None:
    """Before training: a one-line `UserError` when a training step on the longest pairs, or
    the final test decode (beam x output length x vocabulary), cannot fit in this machine's
    memory. A training step keeps, per pair, the embeddings and the gates of every layer over
    S + T steps, T attention rows of S weights and T rows of V logits (x 3: softmax and
    gradients)."""
    S = max((len(s) for s in data.train.sources), default=1)
    T = max((len(t) for t in data.train.targets), default=1) + 2
    H, L, E = config.hidden_size, config.num_layers, config.embedding_size
    B = min(config.batch_size, max(len(data.train), 1))
    step = 4 * B * ((S + T) * (E + 8 * H * L) + T * 3 * (S + tgt_vocab))
    check_bytes(
        step,
        f"a training step on {B} pairs of up to {S} source and {T - 2} target tokens",
        "lower batch_size or max_tokens, or shorten the lines",
    )
    max_decode = config.max_decode or auto_max_decode(data)
    for part, beams in ((data.valid, {1}), (data.test, {1, config.beam})):  # each epoch; the end
        n = min(len(part), config.eval_batch_size)
        S = max((len(s) for s in part.sources), default=1)
        for beam in sorted(beams) if n else ():
            check_decode_memory(config, n, S, beam, max_decode, tgt_vocab)


def translator_from(model: Seq2Seq, ckpt: dict[str, Any], config: Seq2SeqConfig) -> Translator:
    return Translator(
        model,
        Vocabulary.from_list(ckpt["src_vocab"]),
        Vocabulary.from_list(ckpt["tgt_vocab"]),
        ckpt["src_level"],
        ckpt["tgt_level"],
        int(ckpt["max_decode"]),
        config,
        ckpt,
    )


def load_translator(path: str | Path, checkpoint: str = "best", device: str = "cpu") -> Translator:
    """A trained model (eval mode) from a run directory or checkpoint file."""
    dev = resolve_device(device)
    found = find_checkpoint(path, checkpoint)
    ckpt = load_checkpoint(found, kind=KIND, map_location="cpu")
    # Not `saved_config`: its validation asks for `data` on disk, and predicting needs only the
    # checkpoint (the vocabularies are in it).
    if not isinstance(ckpt.get("config"), dict):
        raise UserError(f"{found}: the checkpoint has no config")
    config = config_from_dict(Seq2SeqConfig, ckpt["config"], source=str(found))
    try:
        sizes = len(ckpt["src_vocab"]), len(ckpt["tgt_vocab"])
    except (KeyError, TypeError):
        raise UserError(f"{found}: the checkpoint has no src_vocab and tgt_vocab") from None
    model = load_weights(lambda: build_model(config, *sizes), ckpt.get("model"), str(found))
    try:
        return translator_from(model.to(dev).eval(), ckpt, config)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{found}: checkpoint does not fit its config ({e})") from None


@dataclass
class SplitScores(Result):
    """The scores of one split decoded one way (see `unroll.metrics.sequence`)."""

    split: str
    beam: int
    examples: int
    exact_match: float
    token_accuracy: float
    sequence_error: float
    token_error: float
    by_length: dict[int, float]
    bleu: float | None = None

    def line(self, task: str) -> str:
        how = "greedy" if self.beam == 1 else f"beam {self.beam}"
        if task == "g2p":
            text = f"WER {100 * self.sequence_error:.2f}%  PER {100 * self.token_error:.2f}%"
        else:
            text = (
                f"exact match {100 * self.exact_match:.2f}%  per-token accuracy "
                f"{100 * self.token_accuracy:.2f}%"
            )
        if self.bleu is not None:
            text += f"  BLEU {self.bleu:.2f}"
        return f"{self.split} ({how}, {self.examples} examples): {text}"


def score(
    translator: Translator, pairs: P.Pairs, split: str, beam: int = 1, batch_size: int = 500
) -> tuple[SplitScores, list[list[str]]]:
    """Scores of `pairs` decoded greedily (beam 1) or with a beam; and the outputs."""
    hyps = translator.decode(pairs.sources, beam=beam, batch_size=batch_size)
    outputs = [translator.tokens(h[0].tokens) for h in hyps]
    s = sequence_scores(outputs, pairs.references)
    correct = [out in refs for out, refs in zip(outputs, pairs.references)]
    b = None
    if translator.tgt_level == "word" and translator.checkpoint.get("task") != "g2p":
        level = translator.tgt_level
        b = bleu(
            [P.join(o, level) for o in outputs], [P.join(r[0], level) for r in pairs.references]
        )
    return (
        SplitScores(
            split=split,
            beam=beam,
            examples=len(pairs),
            by_length=accuracy_by_length([len(x) for x in pairs.sources], correct),
            bleu=b,
            **s,
        ),
        outputs,
    )


@dataclass
class Seq2SeqEvaluation(Result):
    run_dir: str
    task: str
    epoch: int | None
    scores: list[SplitScores]

    def summary(self) -> str:
        lines = [f"{self.run_dir} (epoch {self.epoch}):"]
        lines += ["  " + s.line(self.task) for s in self.scores]
        return "\n".join(lines)


def evaluate(
    path: str | Path,
    *,
    split: str = "test",
    beam: int | None = None,
    checkpoint: str = "best",
    device: str = "cpu",
) -> Seq2SeqEvaluation:
    """Score a trained run on a split of its task, greedily and, with `beam` > 1 (default: the
    run's beam), with beam search. Nothing is written."""
    if split not in ("train", "valid", "test"):
        raise UserError(f"--split {split!r}: expected train, valid or test")
    translator = load_translator(path, checkpoint, device)
    config = translator.config
    beam = config.beam if beam is None else beam
    if not 1 <= beam <= CAPS["beam"][1]:
        raise UserError(f"--beam {beam}: expected {cap_help('beam')}")
    pairs = getattr(load_task(config), split)
    if not len(pairs):
        raise UserError(f"{path}: the task {config.data} has no {split} split")
    with torch.no_grad():
        scores = [score(translator, pairs, split, 1, config.eval_batch_size)[0]]
        if beam > 1:
            scores.append(score(translator, pairs, split, beam, config.eval_batch_size)[0])
    return Seq2SeqEvaluation(
        str(path), translator.checkpoint.get("task", ""), translator.checkpoint.get("epoch"), scores
    )
