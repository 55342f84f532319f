"""Language modelling: the LSTM language model of Zaremba et al. 2014 — train, evaluate, sample.

Python API (the CLI calls these): `train`, `evaluate`, `generate`, `load_model`, `get_preset`,
`format_presets`, `perplexity` (of your own texts); the config `LMConfig` and its presets.
CLI: ``unroll lm train|eval|generate|presets`` (and the older ``unroll train|eval|generate|
presets``).

    config.py    LMConfig, its checks, the lr schedule, the Recipe record
    presets.py   ptb-small/medium/large (Zaremba et al. 2014, value for value), demo, char-demo
    steps.py     the training step and the switch to the captured one
    graphs.py    captured train/eval steps (CUDA graphs; eager on the CPU)
    evaluate.py  perplexity over a stream, and of a checkpoint
    generate.py  sampling text
    score.py     the perplexity of your own texts
    train.py     the training run on the engine's loop
"""

from unroll.recipes.lm.config import KIND, RECIPE, LMConfig, format_presets, get_preset, lr_at
from unroll.recipes.lm.evaluate import LMEvaluation, build_model, evaluate, evaluate_ids, load_model
from unroll.recipes.lm.generate import generate
from unroll.recipes.lm.presets import DEFAULT_PRESET, PRESETS
from unroll.recipes.lm.score import perplexity
from unroll.recipes.lm.train import LMResult, train

__all__ = [
    "DEFAULT_PRESET",
    "KIND",
    "PRESETS",
    "RECIPE",
    "LMConfig",
    "LMEvaluation",
    "LMResult",
    "build_model",
    "evaluate",
    "evaluate_ids",
    "format_presets",
    "generate",
    "get_preset",
    "load_model",
    "lr_at",
    "perplexity",
    "train",
]
