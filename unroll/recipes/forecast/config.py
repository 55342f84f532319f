"""The forecasting recipe's config, presets (one per embedded series) and `Recipe` record."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from unroll.config import RunConfig, check
from unroll.data.timeseries import statsmodels_available
from unroll.engine.recipe import Recipe
from unroll.errors import UserError

KIND = "unroll.forecaster"


@dataclasses.dataclass
class ForecastConfig(RunConfig):
    data: str = "synthetic"  # a CSV path, or co2 | sunspots | synthetic
    epochs: int = 30
    batch_size: int = 64
    lr: float = 3e-3
    clip: float = 1.0
    target: str | None = None  # CSV: the column to forecast (needed when several remain)
    inputs: str = ""  # CSV: extra input columns, comma-separated (the target is always one)
    time_column: str | None = None  # CSV: default the first column if named time/date/year/...
    fill: Literal["none", "interpolate", "ffill", "drop"] = "none"
    lookback: int = 48
    horizon: int = 12
    mode: Literal["direct", "recursive"] = "direct"
    season: int = 1  # m of the seasonal-naive baseline and of the MASE scale
    normalize: Literal["last", "none"] = "last"
    cell: Literal["lstm", "gru", "rnn", "mingru", "minlstm"] = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    dropout: float = 0.0
    valid_fraction: float = 0.1
    test_fraction: float = 0.2
    step: int = 1  # backtest: an origin every `step` rows of the test part
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0
    plot: bool = True

    RESUMABLE: ClassVar[tuple[str, ...]] = (*RunConfig.RESUMABLE, "plot")

    def validate(self) -> None:
        super().validate()
        for name in ("lookback", "horizon", "season", "hidden_size", "num_layers", "step"):
            check(self, name, getattr(self, name) >= 1, "an integer >= 1")
        # Windows are gathered as one index tensor: keep it to sizes a series can have.
        check(self, "lookback", self.lookback <= 1_000_000, "an integer from 1 to 1000000")
        check(self, "horizon", self.horizon <= 1_000_000, "an integer from 1 to 1000000")
        check(
            self,
            "weight_decay",
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            "a number >= 0",
        )
        check(self, "dropout", 0 <= self.dropout < 1, "a number in [0, 1)")
        check(self, "valid_fraction", 0 < self.valid_fraction < 1, "a number in (0, 1)")
        check(self, "test_fraction", 0 < self.test_fraction < 1, "a number in (0, 1)")
        if self.mode == "recursive" and input_columns(self):
            raise UserError(
                "mode=recursive feeds its own predictions back, so it forecasts from the target "
                "alone: drop inputs or use mode=direct"
            )


def input_columns(config: ForecastConfig) -> list[str]:
    return [c.strip() for c in config.inputs.split(",") if c.strip()]


# Presets are data, named after the series they fit; a CSV starts from the defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # Weekly Mauna Loa CO2: two years in, one year out, season 52 weeks.
    "co2": {"data": "co2", "lookback": 104, "horizon": 52, "season": 52, "epochs": 15},
    # Yearly sunspots: four cycles in, one cycle (11 years) out. No trend and a level bounded
    # below by 0, so the values go in as they are (window normalisation measured no better).
    "sunspots": {
        "data": "sunspots",
        "lookback": 44,
        "horizon": 11,
        "season": 11,
        "hidden_size": 32,
        "normalize": "none",
        "epochs": 30,
    },
    "synthetic": {"data": "synthetic", "lookback": 48, "horizon": 24, "season": 24, "epochs": 15},
}


def default_data() -> str:
    return "co2" if statsmodels_available() else "synthetic"


def preset_for(overrides: Mapping[str, Any]) -> str | None:
    """The preset named after the series (``data=co2`` -> ``co2``); none for a CSV; the default
    series when no data is named."""
    data = overrides.get("data")
    if data is None:
        return default_data()
    return data if data in PRESETS else None


RECIPE = Recipe(
    name="forecast",
    kind=KIND,
    config=ForecastConfig,
    presets=PRESETS,
    default_preset=preset_for,
    run_name=lambda config: f"forecast-{Path(config.data).stem}",
)


def base_config(data: str | None = None) -> ForecastConfig:
    """The preset for an embedded series, or the generic defaults for a CSV path."""
    return RECIPE.make_config(None, None, {} if data is None else {"data": data})
