"""Outputs of a trained encoder–decoder for new sources (``unroll seq2seq predict``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from unroll import textio
from unroll.data import pairs as P
from unroll.engine.recipe import Result
from unroll.errors import UserError
from unroll.limits import CAPS, cap_help
from unroll.recipes.seq2seq.evaluate import Translator, load_translator

MAX_LINES = 100_000  # one call's inputs at most


@dataclass
class Prediction(Result):
    """For each input line, its `n_best` outputs as (text, score), best first; the attention
    figure's path when one was asked for."""

    outputs: list[list[tuple[str, float]]]
    attention_png: str | None = None

    def summary(self) -> str:
        if all(len(o) == 1 for o in self.outputs):
            lines = [o[0][0] for o in self.outputs]
        else:  # n-best: input number, rank, score, output
            lines = [
                f"{i}\t{rank}\t{s:.4f}\t{text}"
                for i, outs in enumerate(self.outputs, 1)
                for rank, (text, s) in enumerate(outs, 1)
            ]
        return "\n".join(lines)


def read_sources(translator: Translator, lines: Sequence[str], source: str) -> list[list[str]]:
    """Tokens of each line, checked: no empty line, none over max_tokens, no token the model
    never saw (a one-line `UserError` naming the line)."""
    if not lines:
        raise UserError(f"{source}: no input lines")
    if len(lines) > MAX_LINES:
        raise UserError(f"{source}: {len(lines)} lines, at most {MAX_LINES} per call")
    limit = translator.config.max_tokens
    out = []
    for number, line in enumerate(lines, 1):
        tokens = P.tokenize(line, translator.src_level)
        if translator.checkpoint.get("task") == "g2p":
            tokens = [t.lower() for t in tokens]  # CMUdict's words are read in lower case
        if not tokens:
            raise UserError(f"{source}:{number}: empty line")
        if len(tokens) > limit:
            raise UserError(
                f"{source}:{number}: {len(tokens)} tokens, more than max_tokens={limit}"
            )
        unknown = [t for t in tokens if t not in translator.src_vocab or t in P.SPECIALS]
        if unknown:
            raise UserError(
                f"{source}:{number}: {unknown[0]!r} is not in the model's source vocabulary "
                f"({len(translator.src_vocab) - len(P.SPECIALS)} tokens seen in training)"
            )
        out.append(tokens)
    return out


def predict(
    path: str | Path,
    lines: Sequence[str],
    *,
    beam: int = 1,
    n_best: int = 1,
    attention_png: str | Path | None = None,
    checkpoint: str = "best",
    device: str = "cpu",
    source: str = "<stdin>",
) -> Prediction:
    """Decode each of `lines` with the model of the run (or checkpoint) `path`; with
    `attention_png`, also draw the attention weights of the (one) input."""
    if not 1 <= beam <= CAPS["beam"][1]:
        raise UserError(f"--beam {beam}: expected {cap_help('beam')}")
    if not 1 <= n_best <= beam:
        raise UserError(f"--n-best {n_best}: expected 1 to --beam ({beam})")
    if attention_png is not None:
        textio.output_file(attention_png, "--attention-png")
    translator = load_translator(path, checkpoint, device)
    sources = read_sources(translator, lines, source)
    if attention_png is not None:
        if len(sources) != 1:
            raise UserError(f"--attention-png: needs exactly one input line, got {len(sources)}")
        if translator.config.attention == "none":
            raise UserError("--attention-png: this model has no attention (attention=none)")
    with torch.no_grad():
        hyps = translator.decode(sources, beam, n_best, translator.config.eval_batch_size)
    level = translator.tgt_level
    outputs = [[(P.join(translator.tokens(h.tokens), level), h.score) for h in hs] for hs in hyps]
    png = None
    if attention_png is not None:
        from unroll.plotting import MISSING_MATPLOTLIB
        from unroll.plotting import attention_png as draw

        best = hyps[0][0]
        written = draw(
            attention_png,
            best.weights.numpy(),
            sources[0],
            translator.tokens(best.tokens) + (["</s>"] if best.finished else []),
        )
        if written is None:
            raise UserError(f"--attention-png: {MISSING_MATPLOTLIB}")
        png = str(written)
    return Prediction(outputs, png)
