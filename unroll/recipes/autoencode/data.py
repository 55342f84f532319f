"""What the autoencoder reads: images (train/valid/test, labels) or windows of a time series.

Both kinds answer the same three questions, so training and scoring do not care which:
``count(part)``, ``batch(part, idx)`` (float examples on the device) and ``labels(part)``,
for part in ("train", "valid", "test").

Images (`ImageData`): `unroll.data.images` loads them (digits, IDX directories); the training
set is split once into train/valid (``split_seed``); pixels become floats in [0, 1] per batch
(the images stay uint8 until then).

Series (`SeriesData`): the target column, cut by time into train/valid/test (no shuffling
across the cut), standardised with the training rows' mean and std, then read as windows of
``window`` rows. A part's windows lie wholly inside it, one per start (stride 1)::

    rows    0 ............ train_end ........ valid_end ......... n
    train   [w][w]... (starts 0 .. train_end - L)
    valid                  [w][w]... (starts train_end .. valid_end - L)

With ``normalize=mean`` each window has its own mean subtracted, so the model rebuilds shapes,
not levels: CO2's test years lie above every training value, and a level the model never saw
would otherwise be an "anomaly" everywhere. Scoring for anomalies uses non-overlapping windows
over the whole series (`score_starts`); the threshold comes from the training windows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unroll.data.images import load_images, train_valid_split
from unroll.data.timeseries import Scaler, Series, load_series, time_split
from unroll.errors import UserError
from unroll.recipes.autoencode.config import AutoencodeConfig, is_series

PARTS = ("train", "valid", "test")


@dataclass
class ImageData:
    name: str
    source: str
    classes: tuple[str, ...]
    max_value: float
    images: dict[str, torch.Tensor]  # part -> uint8 [N, H, W] on the device
    targets: dict[str, torch.Tensor]  # part -> int64 labels [N]
    kind: str = "images"

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.images["train"].shape[1]), int(self.images["train"].shape[2])

    def count(self, part: str) -> int:
        return len(self.images[part])

    def batch(self, part: str, idx: torch.Tensor | slice) -> torch.Tensor:
        return self.images[part][idx].float() / self.max_value  # [B, H, W] in [0, 1]

    def labels(self, part: str) -> torch.Tensor:
        return self.targets[part]

    @property
    def label_names(self) -> tuple[str, ...]:
        return self.classes

    def checkpoint_entries(self) -> dict[str, Any]:
        return {
            "data_kind": "images",
            "shape": list(self.shape),
            "classes": list(self.classes),
            "max_value": self.max_value,
            "data_name": self.name,
        }


@dataclass
class SeriesData:
    series: Series
    train_end: int
    valid_end: int
    scaler: Scaler
    scaled: torch.Tensor  # [N, 1] float32 on the device
    window: int
    normalize: str
    anomalies: list[tuple[int, int]] = field(default_factory=list)  # injected [start, end)
    kind: str = "series"

    @property
    def name(self) -> str:
        return self.series.source

    @property
    def shape(self) -> tuple[int, int]:
        return self.window, int(self.scaled.shape[1])  # (T, C)

    def bounds(self, part: str) -> tuple[int, int]:
        return {
            "train": (0, self.train_end),
            "valid": (self.train_end, self.valid_end),
            "test": (self.valid_end, len(self.series)),
        }[part]

    def starts(self, part: str) -> torch.Tensor:
        lo, hi = self.bounds(part)
        return torch.arange(lo, hi - self.window + 1, device=self.scaled.device)

    def count(self, part: str) -> int:
        lo, hi = self.bounds(part)
        return max(0, hi - lo - self.window + 1)

    def windows(self, starts: torch.Tensor) -> torch.Tensor:
        """Windows ``[B, T, C]`` starting at `starts` ``[B]`` (each minus its mean if asked)."""
        steps = torch.arange(self.window, device=self.scaled.device)
        w = self.scaled[starts[:, None] + steps]  # [B, T, C]
        return w - self.offsets(w) if self.normalize == "mean" else w

    def offsets(self, w: torch.Tensor) -> torch.Tensor:
        return w.mean(dim=1, keepdim=True)  # [B, 1, C]

    def raw_windows(self, starts: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(self.window, device=self.scaled.device)
        return self.scaled[starts[:, None] + steps]  # [B, T, C], before the mean is taken off

    def batch(self, part: str, idx: torch.Tensor | slice) -> torch.Tensor:
        return self.windows(self.starts(part)[idx])

    def labels(self, part: str) -> torch.Tensor:
        """The part a window belongs to (0 train, 1 valid, 2 test): the codes map's colours."""
        return torch.full((self.count(part),), PARTS.index(part), dtype=torch.long)

    label_names = PARTS

    def score_starts(self) -> list[int]:
        """Non-overlapping windows over the whole series, the last one flush with its end."""
        n, L = len(self.series), self.window
        starts = list(range(0, n - L + 1, L))
        if starts[-1] != n - L:
            starts.append(n - L)
        return starts

    def part_of(self, start: int) -> str:
        """The part holding a window's last row."""
        end = start + self.window
        return "train" if end <= self.train_end else "valid" if end <= self.valid_end else "test"

    def checkpoint_entries(self) -> dict[str, Any]:
        return {
            "data_kind": "series",
            "shape": list(self.shape),
            "scaler": self.scaler.to_dict(),
            "columns": list(self.series.columns),
            "data_name": self.series.source,
        }


def inject_anomalies(values: np.ndarray, lo: int, hi: int, count: int, window: int, size: float):
    """Add `count` level shifts of `size` over ``max(2, window // 6)`` rows, evenly spaced in
    rows ``[lo, hi)``; returns the new values and the [start, end) of each."""
    values = values.copy()
    length = max(2, window // 6)
    spans = []
    for k in range(1, count + 1):
        start = lo + k * (hi - lo) // (count + 1) - length // 2
        values[start : start + length, 0] += size
        spans.append((int(start), int(start + length)))
    return values, spans


def prepare_series(
    config: AutoencodeConfig, device: torch.device, scaler: Scaler | None = None
) -> SeriesData:
    series = load_series(config.data, config.target, None, config.time_column, config.fill)
    n, L = len(series), config.window
    split = time_split(n, config.valid_fraction, config.test_fraction)
    short = [
        (part, hi - lo)
        for part, lo, hi in (
            ("training", 0, split.train_end),
            ("validation", split.train_end, split.valid_end),
            ("test", split.valid_end, n),
        )
        if hi - lo < L
    ]
    if short:
        part, rows = short[0]
        raise UserError(
            f"{series.source}: the {part} part has {rows} rows, fewer than window={L} "
            f"({n} rows, valid_fraction={config.valid_fraction}, "
            f"test_fraction={config.test_fraction}); use a smaller window"
        )
    values = series.values[:, :1]  # the target column
    spans: list[tuple[int, int]] = []
    if config.inject_anomalies:
        if config.inject_anomalies * max(2, L // 6) > n - split.valid_end:
            raise UserError(
                f"inject_anomalies={config.inject_anomalies}: the test part "
                f"({n - split.valid_end} rows) cannot hold them"
            )
        size = 4.0 * float(values[: split.train_end].std())  # 4 training stds
        values, spans = inject_anomalies(
            values, split.valid_end, n, config.inject_anomalies, L, size
        )
    series = Series(values, series.columns[:1], series.source, series.time, series.time_column)
    scaler = scaler if scaler is not None else Scaler.fit(values[: split.train_end])
    scaled = torch.as_tensor(scaler.transform(values), dtype=torch.float32, device=device)
    return SeriesData(
        series, split.train_end, split.valid_end, scaler, scaled, L, config.normalize, spans
    )


def prepare_images(
    config: AutoencodeConfig,
    device: torch.device,
    *,
    progress: bool = True,
    data: str | None = None,
) -> ImageData:
    ds = load_images(data or config.data, progress=progress)
    train_idx, valid_idx = train_valid_split(
        len(ds.train_images), config.valid_fraction, config.split_seed
    )
    if config.max_train:
        train_idx = train_idx[: config.max_train]
    return ImageData(
        name=ds.name,
        source=ds.source,
        classes=tuple(ds.classes),
        max_value=ds.max_value,
        images={
            "train": ds.train_images[train_idx].to(device),
            "valid": ds.train_images[valid_idx].to(device),
            "test": ds.test_images.to(device),
        },
        targets={
            "train": ds.train_labels[train_idx].to(device),
            "valid": ds.train_labels[valid_idx].to(device),
            "test": ds.test_labels.to(device),
        },
    )


def prepare(
    config: AutoencodeConfig, device: torch.device, *, progress: bool = True
) -> ImageData | SeriesData:
    """The data `config` names, checked (UserError) before anything is written."""
    if is_series(config.data):
        return prepare_series(config, device)
    return prepare_images(config, device, progress=progress)
