"""Time-series forecasting: train a recurrent forecaster on the engine's loop, then backtest it.

One explicit pipeline, each step a function the CLI and the Python API share:

  1. `prepare`: read the series (CSV or embedded), split by time into train/valid/test, fit
     the scaler on the training rows only. All validation happens here, before any file is
     written.
  2. `train`: minibatches of (lookback, horizon) windows whose targets lie in the training
     part (shuffled within it, never across the split) go through `unroll.engine.fit`.
  3. backtest with the best checkpoint: a forecast from every `step`-th origin of the test
     part, scored with MAE/RMSE/MASE next to the naive and seasonal-naive forecasts
     (``results.json``, the table the CLI prints, ``backtest.png``).

Under torchrun each rank trains on its part of every global batch of windows (`shard_batches`:
rank 0's shuffle, N·B windows per step), validates its share of the validation origins (the
error sums reduced over the ranks); the backtest is rank 0's.

Trend handling (CO2 climbs from 315 to 370 ppm; the test years are above anything seen in
training): the model sees each window relative to its own last value and predicts the change
from it (``normalize="last"``, see `unroll.models.forecaster`), so the level never has to be
extrapolated; the scaler only sets the units.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.nn.functional as F

from unroll.data.timeseries import (
    Scaler,
    Series,
    Split,
    backtest_origins,
    check_length,
    load_series,
    natural_season,
    read_csv,
    window_origins,
)
from unroll.engine import distributed
from unroll.engine.device import num_threads, resolve_device
from unroll.engine.loop import fit, make_optimizer, supervised_step
from unroll.engine.model_check import check_memory, check_resumable
from unroll.engine.recipe import Result
from unroll.engine.run import Run, resume_point
from unroll.engine.seed import seed_everything
from unroll.errors import UserError
from unroll.metrics.forecast import backtest, format_table, mase_scale
from unroll.models.forecaster import Forecaster
from unroll.recipes.forecast.config import RECIPE, ForecastConfig, input_columns

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    series: Series
    split: Split
    scaler: Scaler
    scaled: torch.Tensor  # (N, C) float32 on the device, scaled with the training rows' stats
    mase_scale: float


@dataclass
class ForecastResult(Result):
    run_dir: Path
    data: str
    target: str
    model: str
    horizon: int
    lookback: int
    season: int
    step: int
    origins: int
    first_origin: Any
    test_rows: int
    mase_scale: float
    scores: dict[str, dict[str, float]]
    table: str
    plot: str | None = None
    train_seconds: float = 0.0
    epochs: int = 0
    best_epoch: int | None = None
    best_valid_mae: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.table}\nrun directory: {self.run_dir}"


def load_config_series(config: ForecastConfig, csv: str | Path | None = None) -> Series:
    inputs = input_columns(config)
    if csv is None:
        return load_series(config.data, config.target, inputs, config.time_column, config.fill)
    return read_csv(csv, config.target, inputs, config.time_column, config.fill)


def prepare(config: ForecastConfig, device: torch.device) -> Prepared:
    """Read and check the data and fit the scaler on the training rows (UserError on bad input)."""
    config.validate()
    series = load_config_series(config)
    split = check_length(
        series,
        config.lookback,
        config.horizon,
        config.season,
        config.valid_fraction,
        config.test_fraction,
    )
    natural = natural_season(series.time) if config.season == 1 else None
    if natural is not None:  # a note (the CLI prints notes when the command ends)
        logger.warning(
            "%s: season=1 makes the seasonal-naive baseline the naive one; the rows are %s "
            "apart, so season=%d compares with one period earlier",
            series.source,
            natural[1],
            natural[0],
        )
    scaler = Scaler.fit(series.values[: split.train_end])
    scaled = torch.as_tensor(scaler.scaled(series), device=device)
    scale = mase_scale(series.target[: split.train_end], config.season)
    if not 0 < scale < math.inf:
        raise UserError(
            f"{series.source}: the training part does not change over one season "
            f"(season={config.season}), so MASE is undefined"
        )
    return Prepared(series, split, scaler, scaled, scale)


def gather(scaled: torch.Tensor, origins: torch.Tensor, lookback: int, horizon: int):
    """Windows for `origins` (B,) from the series (N, C): x (B, L, C), y (B, H) (target)."""
    back = torch.arange(-lookback, 0, device=scaled.device)
    ahead = torch.arange(horizon, device=scaled.device)
    x = scaled[origins[:, None] + back]  # (B, L, C)
    y = scaled[origins[:, None] + ahead, 0]  # (B, H)
    return x, y


def build_model(config: ForecastConfig, input_size: int) -> Forecaster:
    return Forecaster(
        input_size,
        config.horizon,
        mode=config.mode,
        cell=config.cell,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        dropout=config.dropout,
        normalize=config.normalize,
    )


@torch.no_grad()
def forecast_origins(
    model: Forecaster,
    scaled: torch.Tensor,
    origins: list[int],
    config: ForecastConfig,
    scaler: Scaler,
    chunk: int = 1024,
) -> np.ndarray:
    """Forecasts (n, H) in the target's units from each origin."""
    model.eval()
    out = []
    for i in range(0, len(origins), chunk):
        o = torch.as_tensor(origins[i : i + chunk], device=scaled.device)
        x, _ = gather(scaled, o, config.lookback, 0)
        out.append(model.forecast(x, config.horizon).double().cpu().numpy())
    return scaler.inverse_target(np.concatenate(out)) if out else np.zeros((0, config.horizon))


def train(
    config: ForecastConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
    stream: TextIO | None = None,
) -> ForecastResult | None:
    """Train a forecaster, backtest it and return the results (also written to the run dir;
    None on the ranks other than 0 of a torchrun job).

    With `resume`, the run directory's saved config is used (`config`, if given, may change only
    its RESUMABLE fields) and training continues from its ``last`` checkpoint.
    """
    point = None
    if resume is not None:
        point = resume_point(RECIPE, resume, config if config is not None else {})
        config = point.config
    config = RECIPE.make_config() if config is None else config
    device = resolve_device(config.device)
    prep = prepare(config, device)  # raises UserError before anything is written

    def build() -> Forecaster:
        return build_model(config, prep.scaled.shape[1])

    check_memory(build, "hidden_size/num_layers")
    if point is not None and point.checkpoint is not None:
        check_resumable(build, point.checkpoint, str(point.run_dir.checkpoint("last")))
    with (
        num_threads(config.threads),
        Run.start(
            RECIPE,
            config,
            device=device,
            out=out,
            resume=point,
            argv=argv,
            quiet=quiet,
            stream=stream,
        ) as run,
    ):
        return _train(run, config, prep, device)


def _train(
    run: Run, config: ForecastConfig, prep: Prepared, device: torch.device
) -> ForecastResult | None:
    seed_everything(config.seed)
    model = build_model(config, prep.scaled.shape[1]).to(device)
    optimizer = make_optimizer(
        config.optimizer, model.parameters(), config.lr, weight_decay=config.weight_decay
    )
    run.restore(model, optimizer)

    split, L, H = prep.split, config.lookback, config.horizon
    train_origins = torch.as_tensor(list(window_origins(0, split.train_end, L, H)), device=device)
    valid_origins = list(window_origins(split.train_end, split.valid_end, L, H))
    valid_actual = prep.series.target[np.asarray(valid_origins)[:, None] + np.arange(H)]

    def batches(epoch: int):
        # Shuffle windows within the training part only (global RNG: restored on resume;
        # under torchrun rank 0's order is every rank's).
        perm = train_origins[torch.randperm(len(train_origins), device="cpu").to(device)]
        yield from distributed.shard_batches(
            perm, config.batch_size, lambda o: gather(prep.scaled, o, L, H)
        )

    def loss_fn(model: Forecaster, batch) -> torch.Tensor:
        x, y = batch
        pred = model.training_forecast(x)  # (B, H) direct, (B, 1) recursive
        return F.mse_loss(pred, y[:, : pred.shape[1]])

    def evaluate() -> dict[str, float]:
        mine = distributed.share(len(valid_origins))  # under torchrun: this rank's origins
        f = forecast_origins(model, prep.scaled, valid_origins[mine], config, prep.scaler)
        err = f - valid_actual[mine]
        abs_sum, sq_sum, count = distributed.all_sum(np.abs(err).sum(), (err**2).sum(), err.size)
        return {"valid_mae": abs_sum / count, "valid_rmse": float(np.sqrt(sq_sum / count))}

    fit(
        run,
        model,
        optimizer,
        step=supervised_step(model, optimizer, loss_fn, config.clip),
        batches=batches,
        num_batches=distributed.batch_count(len(train_origins), config.batch_size),
        epochs=config.epochs,
        evaluate=evaluate,
        select="valid_mae",
        mode="min",
        # The targets are in units of the training part's standard deviation: a mean squared
        # error of a million (forecasts ~1000 deviations off) is a run that blew up.
        max_loss=1e6,
        checkpoint_extra=lambda: {
            "scaler": prep.scaler.to_dict(),
            "columns": list(prep.series.columns),
            "time_column": prep.series.time_column,
            "mase_scale": prep.mase_scale,
        },
        quiet=run.quiet,
        desc="forecast",
    )
    if not run.main:
        return None  # the backtest is rank 0's: it alone has the checkpoints
    best = run.load_best(model)
    result = run_backtest(model, config, prep, run.path)
    record = run.record()  # the whole run's, across resumes
    result.train_seconds = round(record.seconds, 2)
    result.epochs = config.epochs
    result.best_epoch = best.get("best_epoch")
    result.best_valid_mae = best.get("best")
    result.history = record.history
    run.write_results(result)
    return result


def run_backtest(
    model: Forecaster, config: ForecastConfig, prep: Prepared, run_path: Path
) -> ForecastResult:
    """Rolling-origin backtest over the test part: model, naive and seasonal naive."""
    series, H = prep.series, config.horizon
    origins = backtest_origins(prep.split, H, config.step)
    name = f"{config.cell}-{config.mode}"
    bt = backtest(
        series.target,
        origins,
        H,
        config.season,
        prep.mase_scale,
        models={name: lambda o: forecast_origins(model, prep.scaled, o, config, prep.scaler)},
    )
    scores = bt["scores"]

    def label(t: int) -> Any:
        return series.time[t] if series.time is not None else t

    head = (
        f"backtest on {series.source} ({series.columns[0]}): {len(origins)} origins every "
        f"{config.step} rows from {label(origins[0])}, horizon {H}, season {config.season}, "
        f"MASE scale {prep.mase_scale:.4g} (training part)"
    )
    png = None
    if config.plot:
        from unroll.plotting import plot_backtest

        every = max(1, math.ceil(H / config.step))  # non-overlapping forecasts in the figure
        pick = list(range(0, len(origins), every))
        png = plot_backtest(
            Path(run_path) / "backtest.png",
            series.target,
            max(0, prep.split.valid_end - config.lookback),
            [origins[i] for i in pick],
            {k: bt["forecasts"][k][pick] for k in (name, "seasonal_naive")},
            time=series.time,
            title=f"{series.source}: {name} vs seasonal naive (m={config.season})",
        )
    return ForecastResult(
        run_dir=Path(run_path),
        data=config.data,
        target=series.columns[0],
        model=name,
        horizon=H,
        lookback=config.lookback,
        season=config.season,
        step=config.step,
        origins=len(origins),
        first_origin=label(origins[0]),
        test_rows=prep.split.n - prep.split.valid_end,
        mase_scale=prep.mase_scale,
        scores=scores,
        table=head + "\n" + format_table(scores),
        plot=str(png) if png else None,
    )
