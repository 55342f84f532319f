"""Sequence to sequence: an encoder–decoder (with or without attention) on addition, string
reversal, English pronunciation (CMUdict) or your own pairs of text files.

CLI: ``unroll seq2seq train|eval|predict|presets``.

    config.py    Seq2SeqConfig, presets (addition, reverse, reverse-noattn, g2p, ...), RECIPE
    train.py     training on the engine's loop, the final test scores and figures
    evaluate.py  the task and model from a config or checkpoint, decoding and scoring a split
    predict.py   outputs for new sources (n-best, attention figure)
"""

from unroll.recipes.seq2seq.config import KIND, PRESETS, RECIPE, Seq2SeqConfig, make_config
from unroll.recipes.seq2seq.evaluate import (
    Seq2SeqEvaluation,
    SplitScores,
    Translator,
    build_model,
    evaluate,
    load_task,
    load_translator,
    score,
)
from unroll.recipes.seq2seq.predict import Prediction, predict
from unroll.recipes.seq2seq.train import Seq2SeqResult, train

__all__ = [
    "KIND",
    "PRESETS",
    "RECIPE",
    "Prediction",
    "Seq2SeqConfig",
    "Seq2SeqEvaluation",
    "Seq2SeqResult",
    "SplitScores",
    "Translator",
    "build_model",
    "evaluate",
    "load_task",
    "load_translator",
    "make_config",
    "predict",
    "score",
    "train",
]
