"""The classification recipe's config, presets and `Recipe` record."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Literal

from unroll.config import SEED_RANGE, RunConfig, check, is_seed
from unroll.engine.recipe import Recipe
from unroll.models.classifier import MODEL_NAMES

KIND = "unroll.classifier"
RNN_MODELS = ("lstm", "gru", "rnn", "irnn", "mingru", "minlstm")
BASELINES = ("softmax", "cnn")


@dataclasses.dataclass
class ClassifyConfig(RunConfig):
    data: str = "digits"  # digits | mnist | fashion-mnist | a directory of IDX files
    epochs: int = 10
    batch_size: int = 32  # for the embedded digits; the Fashion-MNIST presets set their own
    lr: float = 2e-3
    clip: float = 1.0  # gradient clipping by global norm; 0 = off
    model: Literal["lstm", "gru", "rnn", "irnn", "mingru", "minlstm", "softmax", "cnn"] = "lstm"
    sequence: Literal["rows", "pixels", "permuted"] = "rows"
    permutation_seed: int = 0
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between recurrent layers (num_layers > 1)
    readout: Literal["last", "mean"] = "last"  # last hidden state, or mean of outputs over time
    cnn_fc: int = 1024
    cnn_dropout: float = 0.5
    optimizer: Literal["adam", "sgd"] = "adam"
    lr_decay: float = 1.0  # the learning rate of epoch e is lr * lr_decay ** max(e - after, 0)
    lr_decay_after: int = 1
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    eval_batch_size: int = 1000
    valid_fraction: float = 0.1  # of the training set, split with split_seed
    split_seed: int = 0
    max_train: int = 0  # use only this many training examples (0 = all); for quick trials

    RESUMABLE: ClassVar[tuple[str, ...]] = RunConfig.RESUMABLE

    def validate(self) -> None:
        super().validate()
        check(self, "model", self.model in MODEL_NAMES, f"one of {', '.join(MODEL_NAMES)}")
        for f in ("eval_batch_size", "hidden_size", "num_layers", "cnn_fc"):
            check(self, f, getattr(self, f) >= 1, "an integer >= 1")
        check(self, "dropout", 0.0 <= self.dropout < 1.0, "a number in [0, 1)")
        check(self, "cnn_dropout", 0.0 <= self.cnn_dropout < 1.0, "a number in [0, 1)")
        check(self, "lr_decay", 0 < self.lr_decay < math.inf, "a number > 0")
        check(self, "lr_decay_after", self.lr_decay_after >= 0, "an integer >= 0")
        check(self, "max_train", self.max_train >= 0, "an integer >= 0 (0 = all)")
        check(self, "valid_fraction", 0.0 < self.valid_fraction < 1.0, "a number in (0, 1)")
        for f in ("momentum", "weight_decay"):
            v = getattr(self, f)
            check(self, f, math.isfinite(v) and v >= 0, "a number >= 0")
        for f in ("permutation_seed", "split_seed"):
            check(self, f, is_seed(getattr(self, f)), SEED_RANGE)


# Presets are data: overrides of the defaults, named after what they reproduce.
PRESETS: dict[str, dict[str, Any]] = {
    "digits-rows-lstm": {"data": "digits", "model": "lstm", "sequence": "rows"},
    "fashion-rows-lstm": {
        "data": "fashion-mnist",
        "model": "lstm",
        "sequence": "rows",
        "hidden_size": 128,
        "batch_size": 64,
        "lr": 2e-3,
        "lr_decay": 0.85,
        "epochs": 15,
    },
    "fashion-cnn": {
        "data": "fashion-mnist",
        "model": "cnn",
        "batch_size": 128,
        "lr": 1e-3,
        "lr_decay": 0.8,
        "epochs": 8,
    },
    "fashion-softmax": {
        "data": "fashion-mnist",
        "model": "softmax",
        "batch_size": 128,
        "lr": 2e-3,
        "lr_decay": 0.8,
        "epochs": 10,
    },
}

RECIPE = Recipe(
    name="classify",
    kind=KIND,
    config=ClassifyConfig,
    presets=PRESETS,
    run_name=lambda config: f"classify-{config.model}",
)


def make_config(preset: str | None = None, overrides: Any = ()) -> ClassifyConfig:
    """Defaults, then a preset, then ``key=value`` overrides, all type-checked and validated."""
    return RECIPE.make_config(preset, None, overrides)
