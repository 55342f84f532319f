"""Forecasting the next horizon after the end of a series from a saved forecaster."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from unroll.data.timeseries import EMBEDDED, Scaler, future_times, load_series, read_csv
from unroll.engine.checkpoint import find_checkpoint, load_checkpoint
from unroll.engine.model_check import load_weights, saved_config
from unroll.engine.recipe import Result
from unroll.errors import UserError
from unroll.fileio import atomic_write_text
from unroll.recipes.forecast.config import KIND, ForecastConfig
from unroll.recipes.forecast.train import build_model, forecast_origins, load_config_series


@dataclass
class Forecast(Result):
    values: list[float]
    time: list[str] | None
    path: str
    csv: str

    def summary(self) -> str:
        return f"{self.csv.rstrip()}\nwrote {self.path}"


def predict(
    checkpoint: str | Path,
    csv: str | Path | None = None,
    output: str | Path | None = None,
    which: str = "best",
) -> Forecast:
    """Forecast the `horizon` values after the end of the series (the training data or `csv`).

    Writes a CSV (step, time when known, target) to `output` (default: forecast.csv in the run
    directory) and returns the values, their time labels (when the series has evenly spaced
    ones) and the path.
    """
    path = find_checkpoint(checkpoint, which)
    ckpt = load_checkpoint(path, kind=KIND)
    config = saved_config(ForecastConfig, ckpt, str(path))
    columns = ckpt.get("columns")
    if not (isinstance(columns, list) and columns and all(isinstance(c, str) for c in columns)):
        raise UserError(f"{path}: columns={columns!r}, expected the list of column names")
    try:
        scaler = Scaler.from_dict(ckpt.get("scaler"), columns=len(columns))
    except ValueError as e:
        raise UserError(f"{path}: not a scaler ({e})") from None
    model = load_weights(lambda: build_model(config, len(columns)), ckpt["model"], str(path))
    if csv is None:
        series = load_config_series(config)  # the series it was trained on
    elif str(csv) in EMBEDDED:
        series = load_series(str(csv), fill=config.fill)
    else:  # the trained columns, by name
        series = read_csv(
            csv,
            columns[0],
            columns[1:],
            config.time_column if config.data not in EMBEDDED else None,
            config.fill,
        )
    if series.columns != columns:
        raise UserError(
            f"{series.source}: has columns {series.columns}, the model was trained on {columns}"
        )
    if len(series) < config.lookback:
        raise UserError(
            f"{series.source}: {len(series)} rows, the model needs the last "
            f"lookback={config.lookback} rows"
        )
    scaled = torch.as_tensor(scaler.scaled(series))
    values = forecast_origins(model, scaled, [len(series)], config, scaler)[0]

    labels = future_times(series.time, config.horizon)
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    output = Path(output) if output is not None else run_dir / "forecast.csv"
    header = ["step", *([series.time_column or "time"] if labels else []), columns[0]]
    lines = [",".join(header)]
    for k, v in enumerate(values):
        lines.append(",".join([str(k + 1), *([labels[k]] if labels else []), f"{v:.6g}"]))
    try:
        atomic_write_text(output, "\n".join(lines) + "\n")
    except OSError as e:
        raise UserError(f"--output {output}: cannot write ({e.strerror})") from None
    return Forecast(
        values=values.tolist(), time=labels, path=str(output), csv="\n".join(lines) + "\n"
    )
