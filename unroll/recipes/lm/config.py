"""The language model's config, its checks, its learning-rate schedule and its `Recipe` record."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import ClassVar, Literal

from unroll.config import Alias, RunConfig, check
from unroll.engine.loop import decayed_lr
from unroll.engine.recipe import Recipe
from unroll.errors import UserError
from unroll.recipes.lm.presets import DEFAULT_PRESET, PRESETS

KIND = "unroll.lm"


@dataclasses.dataclass
class LMConfig(RunConfig):
    """Everything a language-model run needs. Defaults are Zaremba's "Small" on the embedded
    corpus; presets (``unroll lm presets``) set the rest."""

    name: str = "lm"  # run-directory prefix (a preset sets its own name)
    data: str | None = None  # None/pydoc: the embedded corpus; ptb: standard PTB; a directory
    level: Literal["word", "char"] = "word"
    cell: Literal["lstm", "mingru", "minlstm"] = "lstm"  # min*: Feng et al. 2024's min-RNNs
    vocab_size: int | None = None  # None: from the data; a number is checked against it
    embedding_size: int | None = None  # None: hidden_size
    # -- the Zaremba et al. 2014 table --
    init_scale: float = 0.1  # all parameters uniform in [-init_scale, init_scale]
    lr: float = 1.0
    clip: float = 5.0  # clip gradients to this global norm
    num_layers: int = 2
    num_steps: int = 20  # T: BPTT window length
    hidden_size: int = 200
    lr_decay_after: int = 4  # epochs at the full learning rate
    epochs: int = 13  # epochs in all
    dropout: float = 0.0  # on the non-recurrent connections (the paper's 1 - keep_prob)
    lr_decay: float = 0.5  # per epoch after lr_decay_after
    batch_size: int = 20  # B
    # -- beyond the table --
    tie_weights: bool = False  # share embedding and softmax weights (needs embedding == hidden)
    eval_batch_size: int = 1  # test evaluation: 1 = the state carried through the whole stream
    eval_num_steps: int = 400  # evaluation chunk length, at most (the perplexity is the same)
    max_steps_per_epoch: int | None = None  # cap the training batches per epoch (smoke tests)
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"  # bf16: autocast; weights/loss fp32
    graphs: Literal["auto", "on", "off"] = "auto"  # the captured step: auto = on CUDA only
    # -- AWD-LSTM (Merity et al. 2018; unroll.models.awd), with model="awd" --
    model: Literal["zaremba", "awd"] = "zaremba"  # awd: layers E -> H -> … -> E, own init
    dropout_input: float = 0.0  # awd: locked dropout on the embeddings (dropouti)
    dropout_between: float = 0.0  # awd: locked dropout between layers (dropouth)
    dropout_embedding: float = 0.0  # awd: embedding dropout, whole words (dropoute)
    weight_drop: float = 0.0  # awd: DropConnect on each layer's W_hh (wdrop)
    ar: float = 0.0  # awd: activation regularisation α
    tar: float = 0.0  # awd: temporal activation regularisation β
    weight_decay: float = 0.0  # SGD's L2 weight decay (wdecay)
    nonmono: int = 0  # NT-ASGD's non-monotone interval n (AWD-LSTM §3); 0: plain SGD

    ALIASES: ClassVar[dict[str, Alias]] = {
        # TensorFlow's ptb_word_lm.py names, as in the paper's table.
        "learning_rate": "lr",
        "max_grad_norm": "clip",
        "max_epoch": "lr_decay_after",
        "max_max_epoch": "epochs",
        "keep_prob": ("dropout", lambda keep: 1.0 - float(keep)),
        "fast": "graphs",
    }
    RESUMABLE: ClassVar[tuple[str, ...]] = (
        *RunConfig.RESUMABLE,
        "graphs",
        "eval_num_steps",
    )

    def validate(self) -> None:
        super().validate()
        for f in ("num_layers", "num_steps", "hidden_size", "eval_batch_size", "eval_num_steps"):
            check(self, f, getattr(self, f) >= 1, "an integer >= 1")
        check(self, "lr_decay_after", self.lr_decay_after >= 0, "an integer >= 0")
        for f in ("init_scale", "lr_decay"):
            v = getattr(self, f)
            check(self, f, math.isfinite(v) and v > 0, "a number > 0")
        check(self, "clip", self.clip > 0, "a number > 0 (the paper always clips)")
        for f in (
            "dropout",
            "dropout_input",
            "dropout_between",
            "dropout_embedding",
            "weight_drop",
        ):
            check(self, f, 0.0 <= getattr(self, f) < 1.0, "a number in [0, 1)")
        check(self, "nonmono", self.nonmono >= 0, "an integer >= 0 (0: no NT-ASGD)")
        check(
            self,
            "graphs",
            self.graphs != "on" or not (self.weight_decay or self.nonmono),
            "off or auto with weight_decay or nonmono (the captured step is plain SGD)",
        )
        for f in ("ar", "tar", "weight_decay"):
            check(
                self, f, math.isfinite(getattr(self, f)) and getattr(self, f) >= 0, "a number >= 0"
            )
        if self.model == "zaremba":
            for f in ("dropout_input", "dropout_between", "dropout_embedding", "weight_drop"):
                check(self, f, getattr(self, f) == 0, "0 unless model=awd")
            check(self, "ar", self.ar == 0, "0 unless model=awd")
            check(self, "tar", self.tar == 0, "0 unless model=awd")
        check(self, "vocab_size", self.vocab_size is None or self.vocab_size >= 1, "none or >= 1")
        check(
            self,
            "embedding_size",
            self.embedding_size is None or self.embedding_size >= 1,
            "none or an integer from 1 to 65536",
        )
        check(
            self,
            "max_steps_per_epoch",
            self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
            "none or an integer >= 1",
        )
        emb = self.hidden_size if self.embedding_size is None else self.embedding_size
        if self.tie_weights and emb != self.hidden_size and self.model == "zaremba":
            raise UserError(
                f"tie_weights=True needs embedding_size == hidden_size, got {emb} and "
                f"{self.hidden_size}"
            )


def lr_at(config: LMConfig, epoch: int) -> float:
    """The learning rate of epoch `epoch` (1-based): decayed after ``lr_decay_after`` epochs."""
    return decayed_lr(config.lr, config.lr_decay, config.lr_decay_after, epoch)


def normalize_data(data: str | None) -> str:
    """The ``data`` field as saved: ``pydoc`` for the embedded corpus, ``ptb``, or a directory
    as an absolute path (so the run can be resumed and evaluated from anywhere)."""
    if data is None or data in ("pydoc", "embedded"):
        return "pydoc"
    if data == "ptb":
        return data
    path = Path(data)
    return str(path.resolve()) if path.is_dir() else data


def _fill_from_saved(saved: LMConfig, wanted: LMConfig) -> LMConfig:
    """Sizes left to be resolved from the data mean the saved ones when resuming."""
    return dataclasses.replace(
        wanted,
        vocab_size=saved.vocab_size if wanted.vocab_size is None else wanted.vocab_size,
        embedding_size=(
            saved.embedding_size if wanted.embedding_size is None else wanted.embedding_size
        ),
        data=saved.data if wanted.data is None else normalize_data(wanted.data),
    )


def get_preset(name: str) -> LMConfig:
    """The `LMConfig` of a preset (see ``unroll lm presets``)."""
    return RECIPE.preset(name)


def format_presets() -> str:
    return RECIPE.format_presets()


RECIPE = Recipe(
    name="lm",
    kind=KIND,
    config=LMConfig,
    presets={name: {"name": name, **values} for name, values in PRESETS.items()},
    default_preset=DEFAULT_PRESET,
    run_name=lambda config: config.name,
    normalize_resumed=_fill_from_saved,
)

__all__ = ["KIND", "RECIPE", "LMConfig", "format_presets", "get_preset", "lr_at", "normalize_data"]
