"""Time-series forecasting: ``unroll forecast``.

One explicit pipeline, each step a function the CLI and the Python API share:

  1. `prepare`: read the series (CSV or embedded), split by time into train/valid/test, fit
     the scaler on the training rows only. All validation happens here, before any file is
     written.
  2. `train`: minibatches of (lookback, horizon) windows whose targets lie in the training
     part (shuffled within it, never across the split) go through the shared loop
     `unroll.engine.supervised.fit` (clipping, per-epoch validation MAE, metrics JSON lines,
     atomic last/best checkpoints).
  3. backtest with the best checkpoint: a forecast from every `step`-th origin of the test
     part, scored with MAE/RMSE/MASE next to the naive and seasonal-naive forecasts
     (``results.json``, a table on stdout, ``backtest.png``).

`predict` forecasts the next `horizon` values after the end of a series from a checkpoint.
`demo_sin_cos` is the classic tutorial: learn cos(t) from sin(t), carrying the state across
consecutive windows (truncated BPTT).

Trend handling (CO2 climbs from 315 to 370 ppm; the test years are above anything seen in
training): the model sees each window relative to its own last value and predicts the change
from it (``normalize="last"``, see `unroll.models.forecaster`), so the level never has to be
extrapolated; the scaler only sets the units.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from unroll.config import apply_overrides, config_from_dict
from unroll.data.timeseries import (
    EMBEDDED,
    Scaler,
    Series,
    Split,
    backtest_origins,
    check_length,
    load_series,
    read_csv,
    statsmodels_available,
    window_origins,
)
from unroll.errors import UserError
from unroll.metrics.forecast import backtest, format_table, mase_scale
from unroll.models.forecaster import Forecaster
from unroll.engine.checkpoint import atomic_write_text, find_checkpoint, load_checkpoint
from unroll.engine.device import resolve_device
from unroll.engine.metrics import MetricsLogger
from unroll.engine.rundir import RunDir, default_run_dir
from unroll.engine.seed import seed_everything, set_rng_state
from unroll.engine.supervised import fit, make_optimizer

KIND = "unroll.forecaster"
DEMO_KIND = "unroll.forecaster.sin-cos"


@dataclass
class ForecastConfig:
    data: str = "synthetic"  # a CSV path, or co2 | sunspots | synthetic
    target: str | None = None  # CSV: the column to forecast (needed when several remain)
    inputs: str = ""  # CSV: extra input columns, comma-separated (the target is always one)
    time_column: str | None = None  # CSV: default the first column if named time/date/year/...
    fill: Literal["none", "interpolate", "ffill", "drop"] = "none"
    lookback: int = 48
    horizon: int = 12
    mode: Literal["direct", "recursive"] = "direct"
    season: int = 1  # m of the seasonal-naive baseline and of the MASE scale
    normalize: Literal["last", "none"] = "last"
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    step: int = 1  # backtest: an origin every `step` rows of the test part
    epochs: int = 30
    batch_size: int = 64
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 3e-3
    weight_decay: float = 0.0
    clip: float = 1.0
    seed: int = 0
    device: str = "auto"
    plot: bool = True


# Presets are data, named after the series they fit. A CSV starts from ForecastConfig().
PRESETS: dict[str, ForecastConfig] = {
    # Weekly Mauna Loa CO2: two years in, one year out, season 52 weeks.
    "co2": ForecastConfig(data="co2", lookback=104, horizon=52, season=52, epochs=15),
    # Yearly sunspots: four cycles in, one cycle (11 years) out. No trend and a level bounded
    # below by 0, so the values go in as they are (window normalisation measured no better).
    "sunspots": ForecastConfig(
        data="sunspots",
        lookback=44,
        horizon=11,
        season=11,
        hidden_size=32,
        normalize="none",
        epochs=30,
    ),
    "synthetic": ForecastConfig(data="synthetic", lookback=48, horizon=24, season=24, epochs=15),
}

# What may change when a run is resumed (the rest shapes the data or the model).
RESUMABLE = {"epochs", "device", "plot"}


def default_data() -> str:
    return "co2" if statsmodels_available() else "synthetic"


def base_config(data: str | None = None) -> ForecastConfig:
    """The preset for an embedded series, or the generic defaults for a CSV path."""
    data = default_data() if data is None else data
    if data in PRESETS:
        return dataclasses.replace(PRESETS[data])
    return ForecastConfig(data=data)


def input_columns(config: ForecastConfig) -> list[str]:
    return [c.strip() for c in config.inputs.split(",") if c.strip()]


# -- data ----------------------------------------------------------------------------------------


@dataclass
class Prepared:
    series: Series
    split: Split
    scaler: Scaler
    scaled: torch.Tensor  # (N, C) float32 on the device, scaled with the training rows' stats
    mase_scale: float


def validate_config(config: ForecastConfig) -> None:
    for name in ("lookback", "horizon", "season", "hidden_size", "num_layers", "epochs"):
        if getattr(config, name) < 1:
            raise UserError(f"{name}={getattr(config, name)}: must be >= 1")
    if config.batch_size < 1 or config.step < 1:
        raise UserError("batch_size and step must be >= 1")
    if not 0 <= config.dropout < 1:
        raise UserError(f"dropout={config.dropout}: must be in [0, 1)")
    if config.mode == "recursive" and input_columns(config):
        raise UserError(
            "--mode recursive feeds its own predictions back, so it forecasts from the target "
            "alone: drop --inputs or use --mode direct"
        )


def load_config_series(config: ForecastConfig, csv: str | Path | None = None) -> Series:
    inputs = input_columns(config)
    if csv is None:
        return load_series(config.data, config.target, inputs, config.time_column, config.fill)
    return read_csv(csv, config.target, inputs, config.time_column, config.fill)


def prepare(config: ForecastConfig, device: torch.device) -> Prepared:
    """Read and check the data and fit the scaler on the training rows (UserError on bad input)."""
    validate_config(config)
    series = load_config_series(config)
    split = check_length(
        series,
        config.lookback,
        config.horizon,
        config.season,
        config.valid_fraction,
        config.test_fraction,
    )
    scaler = Scaler.fit(series.values[: split.train_end])
    scaled = torch.as_tensor(scaler.transform(series.values), dtype=torch.float32, device=device)
    scale = mase_scale(series.target[: split.train_end], config.season)
    if not scale > 0:
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


# -- training ------------------------------------------------------------------------------------


def _checkpoint_entries(config: ForecastConfig, prep: Prepared):
    def entries() -> dict[str, Any]:
        return {
            "kind": KIND,
            "config": dataclasses.asdict(config),
            "scaler": prep.scaler.to_dict(),
            "columns": list(prep.series.columns),
            "time_column": prep.series.time_column,
            "mase_scale": prep.mase_scale,
        }

    return entries


def _check_resume(saved: ForecastConfig, config: ForecastConfig, path: Path) -> None:
    for f in dataclasses.fields(ForecastConfig):
        if f.name not in RESUMABLE and getattr(saved, f.name) != getattr(config, f.name):
            raise UserError(
                f"--resume {path}: {f.name} cannot change when resuming "
                f"(run has {getattr(saved, f.name)!r}, got {getattr(config, f.name)!r})"
            )


def train(
    config: ForecastConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    progress: bool = True,
    argv: list[str] | None = None,
    stream=None,
) -> dict[str, Any]:
    """Train a forecaster, backtest it and return the results (also written to the run dir).

    With `resume`, the run directory's saved config is used (`config`, if given, may change only
    epochs/device/plot) and training continues from its ``last`` checkpoint.
    """
    stream = sys.stdout if stream is None else stream
    ckpt = None
    if resume is not None:
        run = RunDir.open(resume)
        saved_dict = {k: v for k, v in run.read_config().items() if k != "kind"}
        saved = config_from_dict(ForecastConfig, saved_dict, source=str(run.path / "config.json"))
        if config is not None:
            _check_resume(saved, config, run.path)
        config = config or saved
        ckpt = load_checkpoint(run.checkpoint("last"), kind=KIND)
    config = config or base_config()
    device = resolve_device(config.device)
    prep = prepare(config, device)  # raises UserError before anything is written
    if resume is None:
        out = (
            Path(out) if out is not None else default_run_dir(f"forecast-{Path(config.data).stem}")
        )
        run = RunDir.create(
            out, kind=KIND, config=config, seed=config.seed, device=device, argv=argv
        )
    else:
        run.record_command(argv)

    seed_everything(config.seed)
    model = build_model(config, prep.scaled.shape[1]).to(device)
    optimizer = make_optimizer(
        config.optimizer, model.parameters(), config.lr, weight_decay=config.weight_decay
    )
    start_epoch, best, best_epoch = 0, None, None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        start_epoch, best, best_epoch = ckpt["epoch"], ckpt["best"], ckpt["best_epoch"]

    split, L, H = prep.split, config.lookback, config.horizon
    train_origins = torch.as_tensor(list(window_origins(0, split.train_end, L, H)), device=device)
    valid_origins = list(window_origins(split.train_end, split.valid_end, L, H))
    valid_actual = prep.series.target[np.asarray(valid_origins)[:, None] + np.arange(H)]
    num_batches = math.ceil(len(train_origins) / config.batch_size)

    def train_batches(epoch: int):
        # Shuffle windows within the training part only (global RNG: restored on resume).
        perm = train_origins[torch.randperm(len(train_origins), device="cpu").to(device)]
        for i in range(0, len(perm), config.batch_size):
            yield gather(prep.scaled, perm[i : i + config.batch_size], L, H)

    def loss_fn(model: Forecaster, batch) -> torch.Tensor:
        x, y = batch
        pred = model.training_forecast(x)  # (B, H) direct, (B, 1) recursive
        return F.mse_loss(pred, y[:, : pred.shape[1]])

    def evaluate(model: Forecaster) -> dict[str, float]:
        f = forecast_origins(model, prep.scaled, valid_origins, config, prep.scaler)
        err = f - valid_actual
        return {
            "valid_mae": float(np.abs(err).mean()),
            "valid_rmse": float(np.sqrt((err**2).mean())),
        }

    started = time.perf_counter()
    metrics = MetricsLogger(run.path, truncate_after=start_epoch if ckpt is not None else None)
    try:
        result = fit(
            model,
            optimizer,
            train_batches=train_batches,
            num_batches=num_batches,
            loss_fn=loss_fn,
            evaluate=evaluate,
            epochs=config.epochs,
            select="valid_mae",
            mode="min",
            clip=config.clip,
            run=run,
            metrics=metrics,
            checkpoint_entries=_checkpoint_entries(config, prep),
            start_epoch=start_epoch,
            best=best,
            best_epoch=best_epoch,
            progress=progress,
            desc="forecast",
        )
    finally:
        metrics.close()
    train_seconds = time.perf_counter() - started

    best_ckpt = load_checkpoint(run.checkpoint("best"), kind=KIND)
    model.load_state_dict(best_ckpt["model"])
    results = run_backtest(model, config, prep, run.path)
    results.update(
        train_seconds=round(train_seconds, 2),
        epochs=config.epochs,
        best_epoch=result.best_epoch,
        best_valid_mae=result.best,
        run_dir=str(run.path),
    )
    run.write_json("results.json", results)
    print(results["table"], file=stream)
    print(f"run directory: {run.path}", file=stream)
    return results


def run_backtest(
    model: Forecaster, config: ForecastConfig, prep: Prepared, run_path: Path | None
) -> dict[str, Any]:
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
    label = lambda t: series.time[t] if series.time is not None else t  # noqa: E731
    head = (
        f"backtest on {series.source} ({series.columns[0]}): {len(origins)} origins every "
        f"{config.step} rows from {label(origins[0])}, horizon {H}, season {config.season}, "
        f"MASE scale {prep.mase_scale:.4g} (training part)"
    )
    results: dict[str, Any] = {
        "data": config.data,
        "target": series.columns[0],
        "model": name,
        "horizon": H,
        "lookback": config.lookback,
        "season": config.season,
        "step": config.step,
        "origins": len(origins),
        "first_origin": label(origins[0]),
        "test_rows": prep.split.n - prep.split.valid_end,
        "mase_scale": prep.mase_scale,
        "scores": scores,
        "table": head + "\n" + format_table(scores),
    }
    if config.plot and run_path is not None:
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
        results["plot"] = str(png) if png else None
    return results


# -- prediction ----------------------------------------------------------------------------------


def _future_labels(times: list[str] | None, steps: int) -> list[str] | None:
    """Continue evenly spaced time labels (integers or ISO dates), else None."""
    if not times or len(times) < 2:
        return None
    try:
        a, b = int(times[-2]), int(times[-1])
        return [str(b + (b - a) * k) for k in range(1, steps + 1)]
    except ValueError:
        pass
    try:
        a, b = np.datetime64(times[-2]), np.datetime64(times[-1])
    except ValueError:
        return None
    return [str(b + (b - a) * k) for k in range(1, steps + 1)]


def predict(
    checkpoint: str | Path,
    csv: str | Path | None = None,
    output: str | Path | None = None,
    which: str = "best",
    stream=None,
) -> dict[str, Any]:
    """Forecast the `horizon` values after the end of the series (the training data or `csv`).

    Writes a CSV (step, time when known, target) to `output` (default: forecast.csv in the run
    directory) and returns {"values": [...], "time": [...] | None, "path": ...}.
    """
    stream = sys.stdout if stream is None else stream
    path = find_checkpoint(checkpoint, which)
    ckpt = load_checkpoint(path, kind=KIND)
    config = config_from_dict(ForecastConfig, ckpt["config"], source=str(path))
    columns = ckpt["columns"]
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
    scaler = Scaler.from_dict(ckpt["scaler"])
    model = build_model(config, len(columns))
    model.load_state_dict(ckpt["model"])
    scaled = torch.as_tensor(scaler.transform(series.values), dtype=torch.float32)
    values = forecast_origins(model, scaled, [len(series)], config, scaler)[0]

    labels = _future_labels(series.time, config.horizon)
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
    print("\n".join(lines), file=stream)
    print(f"wrote {output}", file=stream)
    return {"values": values.tolist(), "time": labels, "path": str(output)}


# -- the sin -> cos demo (truncated BPTT) ---------------------------------------------------------


@dataclass
class SinCosConfig:
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    hidden_size: int = 32
    steps_per_period: int = 40  # samples of t per 2π
    periods: int = 160  # length of the training stretch, in periods
    streams: int = 16  # parallel streams (the batch)
    bptt: int = 20  # window length: gradients flow this far back, the state flows on
    epochs: int = 8
    lr: float = 1e-2
    clip: float = 1.0
    seed: int = 0
    device: str = "auto"


def _detach(state):
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def _sin_cos(start: float, n: int, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    t = start + dt * torch.arange(n, dtype=torch.float64)
    return torch.sin(t).float(), torch.cos(t).float()


def demo_sin_cos(
    config: SinCosConfig | None = None,
    *,
    out: str | Path | None = None,
    progress: bool = True,
    argv: list[str] | None = None,
    stream=None,
) -> dict[str, Any]:
    """Learn cos(t) from sin(t); the state is carried across consecutive windows.

    sin(t) alone does not tell cos(t) (sin rises and falls through each value), so the model
    must remember where it came from: the state carries that across windows.
    """
    stream = sys.stdout if stream is None else stream
    config = config or SinCosConfig()
    for name in ("hidden_size", "steps_per_period", "periods", "streams", "bptt", "epochs"):
        if getattr(config, name) < 1:
            raise UserError(f"{name}={getattr(config, name)}: must be >= 1")
    device = resolve_device(config.device)
    dt = 2 * math.pi / config.steps_per_period
    per_stream = config.periods * config.steps_per_period // config.streams
    per_stream -= per_stream % config.bptt
    if per_stream < config.bptt:
        raise UserError("periods * steps_per_period must give each stream at least one window")
    run = RunDir.create(
        out if out is not None else default_run_dir("forecast-sin-cos"),
        kind=DEMO_KIND,
        config=config,
        seed=config.seed,
        device=device,
        argv=argv,
    )
    seed_everything(config.seed)
    x_all, y_all = _sin_cos(0.0, config.streams * per_stream, dt)
    # Batchify: one long series cut into `streams` rows, read left to right in bptt windows,
    # so window k+1 of a row continues exactly where window k stopped:
    #   row 0: [w0 | w1 | w2 ...]   row 1: [w0 | w1 | w2 ...]   (B = streams, each (B, bptt))
    xs = x_all.view(config.streams, per_stream, 1).to(device)  # (B, T, 1)
    ys = y_all.view(config.streams, per_stream, 1).to(device)
    # Held-out stretch: starts at a phase the training rows never begin with.
    test_n = 4 * config.steps_per_period
    xt, yt = _sin_cos(1000.123, test_n, dt)
    xt, yt = xt.view(1, test_n, 1).to(device), yt.view(1, test_n, 1).to(device)

    model = Forecaster(1, 1, cell=config.cell, hidden_size=config.hidden_size, normalize="none").to(
        device
    )
    optimizer = make_optimizer("adam", model.parameters(), config.lr)
    carry: dict[str, Any] = {"state": None}

    def train_batches(epoch: int):
        carry["state"] = None  # each epoch starts the streams afresh
        for i in range(0, per_stream, config.bptt):
            yield xs[:, i : i + config.bptt], ys[:, i : i + config.bptt]

    def loss_fn(model: Forecaster, batch) -> torch.Tensor:
        x, y = batch
        pred, state = model(x, carry["state"])
        carry["state"] = _detach(state)  # truncated BPTT: keep the state, cut the graph
        return F.mse_loss(pred, y)

    def run_test(model: Forecaster) -> torch.Tensor:
        state, preds = None, []
        for i in range(0, test_n, config.bptt):
            p, state = model(xt[:, i : i + config.bptt], state)
            preds.append(p)
        return torch.cat(preds, dim=1)  # (1, test_n, 1)

    def evaluate(model: Forecaster) -> dict[str, float]:
        # Skip the first quarter period: with a zero state, the sign of cos is a guess.
        skip = config.steps_per_period // 4
        return {"test_mse": F.mse_loss(run_test(model)[:, skip:], yt[:, skip:]).item()}

    with MetricsLogger(run.path) as metrics:
        result = fit(
            model,
            optimizer,
            train_batches=train_batches,
            num_batches=per_stream // config.bptt,
            loss_fn=loss_fn,
            evaluate=evaluate,
            epochs=config.epochs,
            select="test_mse",
            clip=config.clip,
            run=run,
            metrics=metrics,
            checkpoint_entries=lambda: {"kind": DEMO_KIND, "config": dataclasses.asdict(config)},
            progress=progress,
            desc="sin-cos",
        )
    model.load_state_dict(load_checkpoint(run.checkpoint("best"), kind=DEMO_KIND)["model"])
    model.eval()
    with torch.no_grad():
        pred = run_test(model)[0, :, 0].cpu().numpy()
    from unroll.plotting import plot_forecast

    t = (1000.123 + dt * np.arange(test_n)).tolist()
    png = plot_forecast(
        run.path / "sin_cos.png",
        t,
        {"cos(t) (truth)": yt[0, :, 0].cpu().numpy(), f"{config.cell} from sin(t)": pred},
        title=f"{config.cell.upper()} reading sin(t), predicting cos(t) (state carried across "
        f"windows of {config.bptt})",
    )
    results = {"best_test_mse": result.best, "best_epoch": result.best_epoch}
    results["plot"] = str(png) if png else None
    run.write_json("results.json", results)
    print(f"sin->cos: best held-out MSE {result.best:.4g} (epoch {result.best_epoch})", file=stream)
    print(f"plot: {png}" if png else "plot: skipped (matplotlib not installed)", file=stream)
    print(f"run directory: {run.path}", file=stream)
    return results


# -- command line --------------------------------------------------------------------------------


def _add_train_flags(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "--data",
        help="a CSV file, or co2 | sunspots | synthetic (default: co2 when statsmodels is "
        "installed, else synthetic)",
    )
    p.add_argument("--target", help="CSV: the column to forecast")
    p.add_argument("--inputs", help="CSV: extra input columns, comma-separated")
    p.add_argument("--time-column", dest="time_column", help="CSV: the time column")
    p.add_argument("--lookback", type=int, help="rows the model sees before each origin")
    p.add_argument("--horizon", type=int, help="steps forecast from each origin")
    p.add_argument("--mode", choices=["direct", "recursive"])
    p.add_argument("--fill", choices=["none", "interpolate", "ffill", "drop"])
    p.add_argument("--out", help="new run directory (default runs/forecast-<data>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    p.add_argument("--demo", choices=["sin-cos"], help="the sin(t) -> cos(t) tutorial demo")
    p.add_argument("--no-progress", dest="no_progress", action="store_true", default=None)
    return p


FLAG_FIELDS = ("data", "target", "inputs", "time_column", "lookback", "horizon", "mode", "fill")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "forecast",
        help="forecast a time series (CSV, co2, sunspots, synthetic); `forecast predict`",
        description="Train a recurrent forecaster and backtest it against the naive and "
        "seasonal-naive forecasts; or `unroll forecast predict RUN_DIR|CKPT [--data CSV]` for "
        "the next horizon. Extra key=value arguments override config fields (e.g. epochs=5 "
        "hidden_size=32 season=12 step=4 cell=gru).",
    )
    _add_train_flags(p)
    p.add_argument("rest", nargs=argparse.REMAINDER, metavar="key=value", help="config overrides")
    p.set_defaults(func=_cmd_forecast)


def _cmd_forecast(args: argparse.Namespace) -> int:
    rest = list(args.rest or [])
    if rest and rest[0] == "predict":
        early = [k for k in (*FLAG_FIELDS, "out", "resume", "demo") if getattr(args, k)]
        if early:
            raise UserError(
                f"forecast predict: write its options after it (unroll forecast predict RUN_DIR "
                f"--data CSV), got --{early[0].replace('_', '-')} before it"
            )
        return _cmd_predict(rest[1:])
    # Flags written after the first key=value land in `rest`: pick them out again.
    later, overrides = _add_train_flags(
        argparse.ArgumentParser(allow_abbrev=False, add_help=False)
    ).parse_known_args(rest)
    for k, v in vars(later).items():
        if v is not None:
            setattr(args, k, v)
    argv = getattr(args, "argv", None)  # set by unroll.cli.main
    progress = not args.no_progress
    if args.demo == "sin-cos":
        given = [k for k in FLAG_FIELDS if getattr(args, k) is not None]
        if given or args.resume:
            raise UserError(
                f"--demo sin-cos makes its own data: leave out --{given[0] if given else 'resume'}"
            )
        config = apply_overrides(SinCosConfig(), overrides)
        demo_sin_cos(config, out=args.out, progress=progress, argv=argv)
        return 0
    flags = {k: getattr(args, k) for k in FLAG_FIELDS if getattr(args, k) is not None}
    if args.resume:
        if args.out:
            raise UserError("--resume continues a run in place: leave out --out")
        run = RunDir.open(args.resume)
        saved = {k: v for k, v in run.read_config().items() if k != "kind"}
        config = config_from_dict(ForecastConfig, saved, source=str(run.path / "config.json"))
        config = apply_overrides(apply_overrides(config, flags), overrides)
        train(config, resume=args.resume, progress=progress, argv=argv)
        return 0
    config = base_config(flags.get("data"))
    config = apply_overrides(apply_overrides(config, flags), overrides)
    train(config, out=args.out, progress=progress, argv=argv)
    return 0


def _cmd_predict(tokens: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="unroll forecast predict",
        description="Forecast the next horizon after the end of the series from a checkpoint.",
    )
    p.add_argument("checkpoint", metavar="RUN_DIR|CKPT")
    p.add_argument("--data", help="CSV with the trained columns (default: the training data)")
    p.add_argument("--output", help="CSV to write (default: RUN_DIR/forecast.csv)")
    p.add_argument("--which", choices=["best", "last"], default="best")
    a = p.parse_args(tokens)
    predict(a.checkpoint, csv=a.data, output=a.output, which=a.which)
    return 0
