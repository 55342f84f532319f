"""Autoencoders: dense, convolutional, denoising and sequence (LSTM) autoencoders on images and
time series; reconstructions and code maps to look at; codes for a classifier with few labels.

CLI: ``unroll autoencode train|eval|encode|fewlabels|presets``.

    config.py     AutoencodeConfig, presets, the Recipe record
    data.py       images (train/valid/test) or time-series windows, behind one interface
    train.py      training on the engine's loop, then scores and figures
    score.py      reconstruction scores, the denoising PSNR table, anomaly flags, the files
    evaluate.py   the model from a config or checkpoint, scoring a saved run, writing codes
    fewlabels.py  classifiers on raw inputs vs codes with 1%, 10%, 100% of the labels
"""

from unroll.recipes.autoencode.config import KIND, PRESETS, RECIPE, AutoencodeConfig, make_config
from unroll.recipes.autoencode.data import ImageData, SeriesData, prepare
from unroll.recipes.autoencode.evaluate import (
    AutoencodeEvaluation,
    Encoded,
    build_model,
    encode,
    evaluate,
    load_autoencoder,
)
from unroll.recipes.autoencode.fewlabels import FewLabelsConfig, FewLabelsResult, few_labels
from unroll.recipes.autoencode.train import AutoencodeResult, train

__all__ = [
    "KIND",
    "PRESETS",
    "RECIPE",
    "AutoencodeConfig",
    "AutoencodeEvaluation",
    "AutoencodeResult",
    "Encoded",
    "FewLabelsConfig",
    "FewLabelsResult",
    "ImageData",
    "SeriesData",
    "build_model",
    "encode",
    "evaluate",
    "few_labels",
    "load_autoencoder",
    "make_config",
    "prepare",
    "train",
]
