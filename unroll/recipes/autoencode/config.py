"""The autoencoder recipe's config, presets and `Recipe` record."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from unroll.config import RunConfig, check
from unroll.data.timeseries import EMBEDDED
from unroll.engine.recipe import Recipe
from unroll.errors import UserError

KIND = "unroll.autoencoder"
MODELS = ("dense", "conv", "seq")


@dataclasses.dataclass
class AutoencodeConfig(RunConfig):
    # digits | mnist | fashion-mnist | a directory of IDX files (images), or
    # co2 | sunspots | synthetic | a CSV file (a time series, cut into windows; model=seq)
    data: str = "digits"
    epochs: int = 100
    batch_size: int = 32
    lr: float = 2e-3
    clip: float = 0.0
    model: Literal["dense", "conv", "seq"] = "dense"
    # dense: the hidden layers down to the code (mirrored in the decoder), and the code size
    hidden_sizes: str = "32"
    code_size: int = 8
    channels: int = 32  # conv: channels of every layer (the Keras example's 32)
    # denoising (Vincent et al. 2008): train on corrupted inputs, score against clean ones
    noise: Literal["none", "gaussian", "masking"] = "none"
    noise_level: float = 0.4  # gaussian: std (pixels in [0, 1]); masking: fraction set to 0
    # seq: encoder and decoder RNNs; images are read row by row (T = H steps of W pixels)
    cell: Literal["lstm", "gru", "mingru", "minlstm"] = "lstm"
    hidden_size: int = 128
    num_layers: int = 1
    teacher_forcing: bool = True  # decoder sees x[t-1] (conditional) or zeros (unconditioned)
    # time series: CSV columns, windows, normalisation, anomaly threshold
    target: str | None = None
    time_column: str | None = None
    fill: Literal["none", "interpolate", "ffill", "drop"] = "none"
    window: int = 52  # steps per window
    normalize: Literal["mean", "none"] = "mean"  # subtract each window's mean (trends)
    threshold_quantile: float = 0.99  # of the training part's window errors
    inject_anomalies: int = 0  # add this many bumps to the test part (to see them flagged)
    # splits: images take valid_fraction of the training set; a series is cut by time
    valid_fraction: float = 0.1
    test_fraction: float = 0.2  # time series only (images have their own test set)
    split_seed: int = 0
    max_train: int = 0  # use only this many training examples (0 = all); for quick trials
    eval_batch_size: int = 1000

    RESUMABLE: ClassVar[tuple[str, ...]] = RunConfig.RESUMABLE

    def validate(self) -> None:
        super().validate()
        check(self, "model", self.model in MODELS, f"one of {', '.join(MODELS)}")
        hidden_sizes(self)  # a UserError naming the field when malformed
        for f in ("code_size", "channels", "hidden_size", "num_layers", "eval_batch_size"):
            check(self, f, getattr(self, f) >= 1, "an integer >= 1")
        check(self, "window", 2 <= self.window <= 100_000, "an integer from 2 to 100000")
        check(self, "max_train", self.max_train >= 0, "an integer >= 0 (0 = all)")
        check(self, "inject_anomalies", 0 <= self.inject_anomalies <= 100, "0 to 100")
        check(self, "valid_fraction", 0.0 < self.valid_fraction < 1.0, "a number in (0, 1)")
        check(self, "test_fraction", 0.0 < self.test_fraction < 1.0, "a number in (0, 1)")
        check(self, "threshold_quantile", 0.0 < self.threshold_quantile <= 1.0, "in (0, 1]")
        if self.noise == "gaussian":
            check(self, "noise_level", 0.0 < self.noise_level <= 10.0, "a std in (0, 10]")
        elif self.noise == "masking":
            check(self, "noise_level", 0.0 < self.noise_level < 1.0, "a fraction in (0, 1)")
        if is_series(self.data) and self.model != "seq":
            raise UserError(
                f"model={self.model}: a time series ({self.data}) is read in windows by the "
                f"sequence autoencoder; use model=seq (e.g. --preset co2-seq)"
            )


def hidden_sizes(config: AutoencodeConfig) -> tuple[int, ...]:
    """``"128,64"`` -> (128, 64); empty means no hidden layer (input -> code -> input)."""
    try:
        sizes = tuple(int(s) for s in config.hidden_sizes.split(",") if s.strip())
    except ValueError:
        sizes = (0,)
    check(
        config,
        "hidden_sizes",
        all(1 <= s <= 1 << 16 for s in sizes),
        "comma-separated layer sizes from 1 to 65536, e.g. 128,64",
    )
    return sizes


def is_series(data: str) -> bool:
    """A time series (embedded name or .csv file), as opposed to images."""
    return data in EMBEDDED or Path(data).suffix.lower() == ".csv"


# Presets are data, named after what they run; the digits one is the embedded default.
PRESETS: dict[str, dict[str, Any]] = {
    # 64 pixels -> 32 -> 8 -> 32 -> 64, seconds on a CPU core. One thread: a model this small
    # gains nothing from a second, which only waits for the first, and on a shared 2-core
    # machine that wait cost 30x (`unroll autoencode train`: 608 s with torch's 2 threads, 20 s
    # with one, load average 5-11).
    "digits-dense": {
        "data": "digits",
        "model": "dense",
        "hidden_sizes": "32",
        "code_size": 8,
        "threads": 1,
    },
    # Chollet's deep autoencoder, 784-128-64-32.
    "fashion-dense": {
        "data": "fashion-mnist",
        "model": "dense",
        "hidden_sizes": "128,64",
        "code_size": 32,
        "batch_size": 128,
        "lr": 1e-3,
        "epochs": 30,
    },
    # The Keras convolutional autoencoder example: Adam (lr 1e-3), batch 128, 50 epochs.
    "fashion-conv": {
        "data": "fashion-mnist",
        "model": "conv",
        "batch_size": 128,
        "lr": 1e-3,
        "epochs": 50,
    },
    # ... and its denoising half: Gaussian noise, factor 0.4, clipped to [0, 1]. The example
    # continues the trained model for 100 epochs; this trains from scratch for 10.
    "fashion-denoise": {
        "data": "fashion-mnist",
        "model": "conv",
        "noise": "gaussian",
        "noise_level": 0.4,
        "batch_size": 128,
        "lr": 1e-3,
        "epochs": 10,
    },
    # Dai & Le 2015's sequence autoencoder on images read row by row; hidden 128 as the
    # fashion-rows-lstm classifier, so the encoder can start it (`unroll autoencode fewlabels`).
    "fashion-rows-seq": {
        "data": "fashion-mnist",
        "model": "seq",
        "hidden_size": 128,
        "batch_size": 64,
        "lr": 2e-3,
        "clip": 1.0,
        "epochs": 10,
    },
    # Weekly CO2 in one-year windows; flags the years the model rebuilds worst.
    "co2-seq": {
        "data": "co2",
        "model": "seq",
        "window": 52,
        "hidden_size": 32,
        "batch_size": 32,
        "lr": 3e-3,
        "clip": 1.0,
        "epochs": 15,
    },
    # The synthetic seasonal series (season 24) with three bumps put into its test part.
    "synthetic-seq": {
        "data": "synthetic",
        "model": "seq",
        "window": 24,
        "hidden_size": 32,
        "batch_size": 32,
        "lr": 3e-3,
        "clip": 1.0,
        "epochs": 15,
        "inject_anomalies": 3,
    },
}

_SERIES_PRESETS = {"co2": "co2-seq", "synthetic": "synthetic-seq"}  # data -> its preset


def preset_for(overrides: Mapping[str, Any]) -> str | None:
    """No data named (or digits): ``digits-dense``, the embedded default; ``data=co2`` alone
    starts from ``co2-seq`` (likewise synthetic); anything else from the bare defaults."""
    data = overrides.get("data", "digits")
    return "digits-dense" if data == "digits" else _SERIES_PRESETS.get(data)


RECIPE = Recipe(
    name="autoencode",
    kind=KIND,
    config=AutoencodeConfig,
    presets=PRESETS,
    default_preset=preset_for,
    run_name=lambda c: f"autoencode-{c.model}" + ("-denoise" if c.noise != "none" else ""),
)


def make_config(preset: str | None = None, overrides: Any = ()) -> AutoencodeConfig:
    """Defaults, then a preset, then ``key=value`` overrides, all type-checked and validated."""
    return RECIPE.make_config(preset, None, overrides)
