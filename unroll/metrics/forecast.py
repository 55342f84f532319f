"""Forecast accuracy: MAE, RMSE, MASE, the naive baselines and the rolling-origin backtest.

Conventions: ``y`` is the whole target series (N,) in its own units; an origin ``t`` is the
first forecast index, so a forecast from origin t may use ``y[:t]`` and covers ``y[t:t+H]``.
Forecast arrays are (n_origins, H).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np


def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(actual) - np.asarray(forecast))))


def rmse(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(actual) - np.asarray(forecast)) ** 2)))


def mase_scale(train: np.ndarray, season: int = 1) -> float:
    """In-sample mean absolute error of the seasonal-naive forecast on the training part."""
    train = np.asarray(train, dtype=np.float64)
    if season < 1 or len(train) <= season:
        raise ValueError(f"mase_scale: need more than season={season} points, got {len(train)}")
    # Hyndman & Koehler (2006), "Another look at measures of forecast accuracy", eq. for MASE:
    # q_t = e_t / ((1/(n-m)) Σ_{i=m+1..n} |y_i - y_{i-m}|), scale from the training data only.
    return float(np.mean(np.abs(train[season:] - train[:-season])))


def mase(actual: np.ndarray, forecast: np.ndarray, scale: float) -> float:
    """Mean absolute scaled error: MAE divided by `scale` (see `mase_scale`)."""
    if not scale > 0:
        raise ValueError(f"mase: scale must be positive, got {scale} (a constant training part?)")
    return mae(actual, forecast) / scale


def naive_forecast(y: np.ndarray, origins: Sequence[int], horizon: int) -> np.ndarray:
    """Every step repeats the last observed value: ŷ[t+h] = y[t-1]."""
    last = np.asarray(y)[np.asarray(origins) - 1]
    return np.repeat(last[:, None], horizon, axis=1)


def seasonal_naive_forecast(
    y: np.ndarray, origins: Sequence[int], horizon: int, season: int
) -> np.ndarray:
    """Each step repeats the value one season earlier that was observed at the origin.

    For step h = 1..H (index t+h-1): ŷ = y[t+h-1 - m·(k+1)] with k = ⌊(h-1)/m⌋ (Hyndman &
    Athanasopoulos, FPP §5.2), so steps past one season reuse the last observed season.
    """
    y = np.asarray(y)
    h = np.arange(1, horizon + 1)
    back = season * ((h - 1) // season + 1)  # (H,)
    idx = np.asarray(origins)[:, None] + (h - 1)[None, :] - back[None, :]  # (n, H)
    if idx.size and idx.min() < 0:
        raise ValueError(f"seasonal_naive_forecast: origins must be >= season={season}")
    return y[idx]


def score(actual: np.ndarray, forecast: np.ndarray, scale: float) -> dict[str, float]:
    return {
        "mae": mae(actual, forecast),
        "rmse": rmse(actual, forecast),
        "mase": mase(actual, forecast, scale),
    }


def backtest(
    y: np.ndarray,
    origins: Sequence[int],
    horizon: int,
    season: int,
    scale: float,
    models: dict[str, Callable[[Sequence[int]], np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Score each forecaster (and the two naive baselines) from every origin.

    models: name -> function(origins) -> forecasts (n_origins, H) in the units of `y`. The
    model's weights are fixed: origins roll forward, the model is not refitted at each one.
    Returns {"scores": {name: {mae, rmse, mase}}, "forecasts": {name: array}, "actual": array}.
    """
    y = np.asarray(y, dtype=np.float64)
    origins = list(origins)
    actual = y[np.asarray(origins)[:, None] + np.arange(horizon)[None, :]]  # (n, H)
    forecasts = {
        name: np.asarray(fn(origins), dtype=np.float64) for name, fn in (models or {}).items()
    }
    forecasts["naive"] = naive_forecast(y, origins, horizon)
    forecasts["seasonal_naive"] = seasonal_naive_forecast(y, origins, horizon, season)
    for name, f in forecasts.items():
        if f.shape != actual.shape:
            raise ValueError(f"backtest: {name} gave shape {f.shape}, expected {actual.shape}")
    return {
        "scores": {name: score(actual, f, scale) for name, f in forecasts.items()},
        "forecasts": forecasts,
        "actual": actual,
    }


def format_table(scores: dict[str, dict[str, float]]) -> str:
    """A plain-text table, one row per forecaster."""
    width = max(len("forecaster"), *(len(k) for k in scores))
    lines = [f"{'forecaster':<{width}}  {'MAE':>10}  {'RMSE':>10}  {'MASE':>8}"]
    for name, s in scores.items():
        lines.append(f"{name:<{width}}  {s['mae']:>10.4g}  {s['rmse']:>10.4g}  {s['mase']:>8.3f}")
    return "\n".join(lines)
