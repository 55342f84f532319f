"""``unroll forecast train|predict|presets`` and ``unroll sincos train|presets``."""

from __future__ import annotations

import argparse

from unroll.cli.commands import add_presets, add_train, recipe_parser
from unroll.recipes import forecast, sincos


def register(sub: argparse._SubParsersAction) -> None:
    actions = recipe_parser(
        sub,
        forecast.RECIPE,
        help="forecast a time series (CSV, co2, sunspots, synthetic) and backtest it",
        description="Recurrent forecasters, backtested against the naive and seasonal-naive "
        "forecasts.",
    )
    add_train(
        actions,
        forecast.RECIPE,
        forecast.train,
        "Train a recurrent forecaster and backtest it against the naive and seasonal-naive "
        "forecasts (default data: co2 when statsmodels is installed, else synthetic; an "
        "embedded series brings its own preset).",
    )
    p = actions.add_parser("predict", help="forecast the next horizon after the end of the series")
    p.add_argument("checkpoint", metavar="RUN_DIR|CHECKPOINT")
    p.add_argument("--data", help="CSV with the trained columns (default: the training data)")
    p.add_argument("--output", help="CSV to write (default: RUN_DIR/forecast.csv)")
    p.add_argument(
        "--checkpoint", "--which", dest="which", choices=["best", "last"], default="best"
    )
    p.set_defaults(func=_predict)
    add_presets(actions, forecast.RECIPE)

    actions = recipe_parser(
        sub,
        sincos.RECIPE,
        help="the sin(t) -> cos(t) tutorial: state carried across windows (writes a PNG)",
        description="Learn cos(t) from sin(t) with the state carried across windows.",
    )
    add_train(actions, sincos.RECIPE, sincos.train, "Learn cos(t) from sin(t); writes sin_cos.png.")
    add_presets(actions, sincos.RECIPE)


def _predict(args: argparse.Namespace) -> int:
    r = forecast.predict(args.checkpoint, csv=args.data, output=args.output, which=args.which)
    print(r.summary())
    return 0
