"""The sequence-to-sequence recipe's config, presets and `Recipe` record."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, ClassVar, Literal

from unroll.config import RunConfig, check
from unroll.data.pairs import TASKS
from unroll.engine.recipe import Recipe
from unroll.limits import CAPS

KIND = "unroll.seq2seq"


@dataclasses.dataclass
class Seq2SeqConfig(RunConfig):
    """An encoder–decoder run. Defaults: the addition task; presets (``unroll seq2seq
    presets``) set the others."""

    data: str = "addition"  # addition | reverse | g2p | a cmudict file | a DIR of pair files
    epochs: int = 20
    batch_size: int = 128
    lr: float = 3e-3
    clip: float = 1.0
    # -- the task --
    tokens: Literal["char", "word"] = "char"  # how DIR's lines are split (the tasks fix it)
    train_size: int = 0  # addition: distinct questions before the 10% test part; reverse:
    # training strings (0: the task's default, 50,000 each)
    min_len: int = 5  # reverse: shortest string
    max_len: int = 25  # reverse: longest string
    stress: bool = False  # g2p: keep CMUdict's stress digits (the papers remove them)
    task_seed: int = 0  # addition/reverse: the data's own seed (the same pairs whatever seed)
    max_tokens: int = 200  # DIR and predict: a longer line is an error
    # -- the model --
    cell: Literal["lstm", "gru", "rnn", "mingru", "minlstm"] = "lstm"
    hidden_size: int = 128  # the decoder's; a bidirectional encoder has half per direction
    embedding_size: int = 64
    num_layers: int = 1
    bidirectional: bool = True  # the encoder
    attention: Literal["none", "bahdanau", "dot", "general"] = "general"
    dropout: float = 0.0  # embeddings, between layers, before the output layer
    forget_bias: float = 0.0  # LSTM variants (`unroll.LSTM`)
    peephole: bool = False
    coupled: bool = False
    # -- training --
    teacher_forcing: float = 1.0  # P(the true previous token is fed); < 1 runs step by step
    lr_decay: float = 0.8  # lr of epoch e: lr * lr_decay ** max(e - lr_decay_after, 0)
    lr_decay_after: int = 10
    # -- decoding --
    beam: int = 1  # the final test is decoded greedily and, when > 1, with this beam too
    length_penalty: float = 1.0  # score = log p / steps ** length_penalty
    max_decode: int = 0  # output tokens at most (0: 1.5 x the longest training target + 5)
    eval_batch_size: int = 500

    RESUMABLE: ClassVar[tuple[str, ...]] = (
        *RunConfig.RESUMABLE,
        "beam",
        "length_penalty",
        "eval_batch_size",
    )
    # The shared caps, the decoder's width tightened (its attention and output layers are
    # H x H and H x V).
    CAPS: ClassVar[dict[str, tuple[int, int]]] = {**CAPS, "hidden_size": (1, 1 << 14)}

    def validate(self) -> None:
        super().validate()
        data_ok = self.data in TASKS or Path(self.data).exists()
        check(self, "data", data_ok, f"{', '.join(TASKS)}, a cmudict file or a directory")
        positive = ("hidden_size", "embedding_size", "num_layers", "beam", "eval_batch_size")
        for name in (*positive, "min_len", "max_tokens"):
            check(self, name, getattr(self, name) >= 1, "an integer >= 1")
        if self.bidirectional:
            check(self, "hidden_size", self.hidden_size % 2 == 0, "even (bidirectional=true)")
        check(
            self, "max_len", self.max_len >= self.min_len, f"an integer >= min_len={self.min_len}"
        )
        check(self, "max_len", self.max_len <= 1000, "an integer up to 1000")
        for name in ("train_size", "max_decode", "lr_decay_after"):
            check(self, name, getattr(self, name) >= 0, "an integer >= 0")
        check(self, "dropout", 0.0 <= self.dropout < 1.0, "a number in [0, 1)")
        check(self, "teacher_forcing", 0.0 <= self.teacher_forcing <= 1.0, "a number in [0, 1]")
        check(self, "lr_decay", 0 < self.lr_decay <= 1, "a number in (0, 1]")
        check(self, "length_penalty", math.isfinite(self.length_penalty), "a number")
        if self.cell != "lstm":
            variant = self.peephole or self.coupled or self.forget_bias != 0
            check(self, "cell", not variant, "lstm (forget_bias/peephole/coupled are LSTM's)")


# Presets are data: overrides of the defaults, named after the task they train. The defaults
# are the addition task's.
REVERSE = {"data": "reverse", "epochs": 10, "lr_decay": 0.7, "lr_decay_after": 5}
PRESETS: dict[str, dict[str, Any]] = {
    "addition": {"data": "addition"},
    "reverse": {**REVERSE, "attention": "general"},
    "reverse-noattn": {**REVERSE, "attention": "none"},
    "reverse-bahdanau": {**REVERSE, "attention": "bahdanau"},
    "g2p": {
        "data": "g2p",
        "bidirectional": True,
        "attention": "general",
        "hidden_size": 256,
        "embedding_size": 64,
        "num_layers": 1,
        "dropout": 0.2,
        "batch_size": 128,
        "lr": 2e-3,
        "lr_decay": 0.8,
        "lr_decay_after": 6,
        "epochs": 15,
        "beam": 5,
    },
}
# The full schedule for the published g2p figures (2 stacked bidirectional layers of 512, as
# Yao & Zweig's and Rao et al.'s larger models): not trained here — "g2p" above is what the
# shared 2-core CPU trained in under two hours; this one is for a GPU (README, Sequence to
# sequence).
PRESETS["g2p-large"] = {
    **PRESETS["g2p"],
    "hidden_size": 512,
    "num_layers": 2,
    "dropout": 0.3,
    "epochs": 30,
    "lr_decay_after": 12,
}

RECIPE = Recipe(
    name="seq2seq",
    kind=KIND,
    config=Seq2SeqConfig,
    presets=PRESETS,
    default_preset=None,
    run_name=lambda c: f"seq2seq-{c.data if c.data in TASKS else Path(c.data).name or 'data'}",
)


def make_config(preset: str | None = None, overrides: Any = ()) -> Seq2SeqConfig:
    """Defaults, then a preset, then ``key=value`` overrides, all type-checked and validated."""
    return RECIPE.make_config(preset, None, overrides)
