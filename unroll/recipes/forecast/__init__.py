"""Time-series forecasting: a recurrent forecaster, backtested against naive baselines.

CLI: ``unroll forecast train|predict|presets`` (and the older ``unroll forecast [--data ...]``).

    config.py    ForecastConfig, presets (co2, sunspots, synthetic), the Recipe record
    train.py     data preparation, training on the engine's loop, the rolling-origin backtest
    predict.py   the next horizon after the end of a series, from a checkpoint
"""

from unroll.recipes.forecast.config import (
    KIND,
    PRESETS,
    RECIPE,
    ForecastConfig,
    base_config,
    default_data,
    input_columns,
)
from unroll.recipes.forecast.predict import Forecast, predict
from unroll.recipes.forecast.train import (
    ForecastResult,
    Prepared,
    build_model,
    forecast_origins,
    gather,
    prepare,
    run_backtest,
    train,
)

__all__ = [
    "KIND",
    "PRESETS",
    "RECIPE",
    "Forecast",
    "ForecastConfig",
    "ForecastResult",
    "Prepared",
    "base_config",
    "build_model",
    "default_data",
    "forecast_origins",
    "gather",
    "input_columns",
    "predict",
    "prepare",
    "run_backtest",
    "train",
]
