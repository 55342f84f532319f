"""Time series from CSV files or embedded series, cut into (lookback, horizon) windows.

A series is a (N, C) float64 array: column 0 is the target, columns 1.. are the extra input
columns (covariates) the user chose. Everything that indexes it speaks of *origins*: an origin
``t`` is the first forecast index, so the model sees rows ``t-L .. t-1`` and predicts the target
at ``t .. t+H-1``::

    index  0 1 2 3 4 5 6 7 8 9        lookback L=3, horizon H=2, origin t=5
    input      [2 3 4]                 x = values[t-L:t]      (L, C)
    target            [5 6]            y = target[t:t+H]      (H,)

The split is by time and never shuffled across it: rows ``[0, train_end)`` train,
``[train_end, valid_end)`` validate, ``[valid_end, N)`` test. A window belongs to the part that
holds its *targets*; its inputs may reach back into an earlier part (that is the past, known at
the origin). The `Scaler` is fitted on ``[0, train_end)`` only.

Embedded series: statsmodels' Mauna Loa CO2 (weekly, 1958-2001, 59 gaps filled by linear
interpolation) and yearly sunspots when statsmodels is installed; `synthetic_series` (trend +
two harmonics + noise) always.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from unroll import textio
from unroll.errors import UserError

Fill = Literal["none", "interpolate", "ffill", "drop"]
FILLS = ("none", "interpolate", "ffill", "drop")
EMBEDDED = ("co2", "sunspots", "synthetic")

# A first column with one of these names is taken as the time column when none is named.
TIME_NAMES = {"t", "time", "date", "datetime", "timestamp", "ds", "year", "month", "week", "day"}
MISSING = {"", "na", "n/a", "nan", "null", "none"}
# The largest magnitude a value may have: errors are squared (RMSE, the MSE loss), and the square
# of anything much beyond this overflows float64.
MAX_VALUE = 1e150


@dataclass
class Series:
    """A target column and optional input columns, aligned on rows."""

    values: np.ndarray  # (N, C) float64; column 0 is the target
    columns: list[str]  # C names, columns[0] is the target
    source: str  # file path or embedded name, for error messages
    time: list[str] | None = None  # N labels from the time column, if any
    time_column: str | None = None
    season: int | None = None  # the natural seasonal period, when known (co2: 52)

    @property
    def target(self) -> np.ndarray:
        return self.values[:, 0]

    def __len__(self) -> int:
        return self.values.shape[0]


# -- reading ------------------------------------------------------------------------------------


def _parse_float(text: str) -> float | None:
    """The number in `text`, None when it is a missing-value marker; raises ValueError else."""
    t = text.strip()
    if t.lower() in MISSING:
        return None
    v = float(t)
    if math.isnan(v):
        return None
    if math.isinf(v):
        raise ValueError(t)
    if abs(v) > MAX_VALUE:
        raise OverflowError(t)
    return v


def _fill(
    col: np.ndarray, fill: str, source: str, name: str, first_missing_line: int
) -> np.ndarray:
    """Fill NaNs of one column; `first_missing_line` names the first gap in errors."""
    missing = np.isnan(col)
    if not missing.any():
        return col
    if fill == "none":
        raise UserError(
            f"{source}: missing value in column {name!r} at line {first_missing_line} "
            f"(use --fill interpolate, ffill or drop)"
        )
    if missing.all():
        raise UserError(f"{source}: column {name!r} has no values")
    idx = np.arange(len(col))
    good = ~missing
    if fill == "interpolate":
        # Linear in the row index; gaps at either end take the nearest value.
        return np.interp(idx, idx[good], col[good])
    if fill == "ffill":
        # Carry the last seen value forward; a gap at the very start takes the first value.
        last = np.maximum.accumulate(np.where(good, idx, -1))
        first_good = int(idx[good][0])
        return col[np.where(last < 0, first_good, last)]
    raise ValueError(f"_fill: unexpected fill {fill!r}")


def read_csv(
    path: str | Path,
    target: str | None = None,
    inputs: list[str] | None = None,
    time_column: str | None = None,
    fill: Fill = "none",
) -> Series:
    """Read a header-row CSV into a `Series` (target first, then `inputs`).

    The time column is `time_column`, or else the first column when its name is a usual one
    (time, date, year, ...). `target` may be left out when exactly one other column remains.
    Only the chosen columns must be numeric, with magnitudes up to `MAX_VALUE`. Missing values
    (empty, NA, NaN, null) are an error naming the line unless `fill` is interpolate, ffill or
    drop (drop removes the rows). The times of a time column must increase (`check_times`).
    """
    path = Path(path)
    inputs = list(inputs or [])
    if fill not in FILLS:
        raise UserError(f"--fill {fill!r}: expected one of {', '.join(FILLS)}")
    # Lines as every reader reads them (`unroll.textio`: a record ends at \n or \r\n, never
    # at a lone \r), each given back to the csv module with its \n.
    lines = textio.read_lines(path, "a CSV file")
    reader = csv.reader(line + "\n" for line in lines)
    try:
        # (line number, fields) of each non-blank row; a quoted field may span lines
        numbered = [(reader.line_num, r) for r in reader if any(cell.strip() for cell in r)]
    except csv.Error as e:
        raise UserError(f"{path}: line {reader.line_num}: not a readable CSV file ({e})") from None
    if not numbered:
        raise UserError(f"{path}: empty file, expected a header row and data rows")
    header = [h.strip() for h in numbered[0][1]]
    lines = [line for line, _ in numbered[1:]]
    body = [row for _, row in numbered[1:]]
    if len(set(header)) != len(header):
        raise UserError(f"{path}: duplicate column names in the header {header}")

    def need(name: str, what: str) -> int:
        if name not in header:
            raise UserError(f"{path}: unknown {what} column {name!r}; columns are {header}")
        return header.index(name)

    if time_column is not None:
        need(time_column, "time")
    elif header[0].lower() in TIME_NAMES:
        time_column = header[0]
    if target is None:
        candidates = [h for h in header if h != time_column and h not in inputs]
        if len(candidates) != 1:
            raise UserError(
                f"{path}: choose the target column with --target (columns are {header})"
            )
        target = candidates[0]
    names = [target, *inputs]
    if len(set(names)) != len(names):
        raise UserError(f"{path}: the target {target!r} is listed again in --inputs")
    if time_column in names:
        raise UserError(f"{path}: column {time_column!r} is the time column and a value column")
    col_idx = [need(target, "target"), *(need(c, "input") for c in inputs)]
    time_idx = header.index(time_column) if time_column is not None else None

    n = len(body)
    values = np.empty((n, len(names)), dtype=np.float64)
    times: list[str] | None = [] if time_idx is not None else None
    for r, (line, row) in enumerate(zip(lines, body)):
        if len(row) != len(header):
            raise UserError(
                f"{path}: line {line} has {len(row)} fields, the header has {len(header)}"
            )
        for j, ci in enumerate(col_idx):
            try:
                v = _parse_float(row[ci])
            except OverflowError:
                raise UserError(
                    f"{path}: column {header[ci]!r} at line {line}: {row[ci].strip()[:40]} is "
                    f"out of range (magnitudes up to {MAX_VALUE:g}, so that squared errors stay "
                    f"finite)"
                ) from None
            except ValueError:
                raise UserError(
                    f"{path}: column {header[ci]!r} is not numeric "
                    f"(line {line}: {row[ci].strip()[:40]!r})"
                ) from None
            values[r, j] = math.nan if v is None else v
        if times is not None:
            times.append(row[time_idx].strip())
    if times is not None:
        check_times(times, lines, str(path), time_column)

    missing_rows = np.isnan(values).any(axis=1)
    if fill == "drop" and missing_rows.any():
        values = values[~missing_rows]
        if times is not None:
            times = [t for t, m in zip(times, missing_rows) if not m]
    else:
        for j, name in enumerate(names):
            col_missing = np.flatnonzero(np.isnan(values[:, j]))
            if len(col_missing):
                first = lines[int(col_missing[0])]
                values[:, j] = _fill(values[:, j], fill, str(path), name, first)
    if len(values) == 0:
        raise UserError(f"{path}: no data rows")
    return Series(values, names, str(path), times, time_column)


# -- time labels ---------------------------------------------------------------------------------


def parse_times(times: list[str]) -> np.ndarray | None:
    """Time labels as numbers (int64, else float64) or dates (datetime64, in the finest unit
    any label has); None when they are none of these (free-form labels such as ``Q1``)."""
    if not times:
        return None
    try:
        return np.array([int(t) for t in times], dtype=np.int64)
    except (ValueError, OverflowError):
        pass
    try:
        floats = np.array([float(t) for t in times], dtype=np.float64)
        if np.isfinite(floats).all():
            return floats
    except ValueError:
        pass
    try:
        dates = np.array(times, dtype="datetime64")
    except (ValueError, OverflowError, TypeError):
        return None
    return None if np.isnat(dates).any() else dates


def check_times(times: list[str], lines: list[int], source: str, column: str | None) -> None:
    """A `UserError` naming the first line whose time repeats or goes back (the windows, the
    split and the forecast's time labels all take the rows as consecutive, in time order).
    Free-form labels can only be checked for repeats."""
    parsed = parse_times(times)
    if parsed is None:
        seen: dict[str, int] = {}
        for line, t in zip(lines, times):
            if t in seen:
                raise UserError(
                    f"{source}: line {line}: time {t!r} repeats line {seen[t]} (column {column!r})"
                )
            seen[t] = line
        return
    back = np.flatnonzero(parsed[1:] <= parsed[:-1])
    if len(back):
        i = int(back[0]) + 1
        how = "repeats" if parsed[i] == parsed[i - 1] else "comes before"
        raise UserError(
            f"{source}: line {lines[i]}: time {times[i]!r} {how} line {lines[i - 1]}'s "
            f"{times[i - 1]!r} (column {column!r} must increase: sort the rows by time)"
        )


def future_times(times: list[str] | None, steps: int) -> list[str] | None:
    """The `steps` time labels after `times`, when these are evenly spaced numbers or dates
    (checked over the whole series, not guessed from the last two); else None. Dates step in
    the coarsest unit that holds them exactly, so first-of-month dates continue by months."""
    parsed = parse_times(times or [])
    if parsed is None or len(parsed) < 2:
        return None
    if parsed.dtype.kind == "M":
        unit = next(
            u
            for u in ("Y", "M", "D", "h", "m", "s", "ms", "us", "ns")
            if (parsed.astype(f"datetime64[{u}]") == parsed).all()
        )
        coarse = parsed.astype(f"datetime64[{unit}]").astype(np.int64)
        step = np.diff(coarse)
        if not (step == step[0]).all():
            return None
        future = coarse[-1] + step[0] * np.arange(1, steps + 1)
        return [str(t) for t in future.astype(f"datetime64[{unit}]").astype(parsed.dtype)]
    step = np.diff(parsed)
    if parsed.dtype.kind == "i":
        if not (step == step[0]).all():
            return None
        return [str(int(parsed[-1]) + int(step[0]) * k) for k in range(1, steps + 1)]
    if not np.allclose(step, step[0], rtol=1e-6, atol=0):
        return None
    mean_step = (parsed[-1] - parsed[0]) / (len(parsed) - 1)
    return [f"{parsed[-1] + mean_step * k:.12g}" for k in range(1, steps + 1)]


def natural_season(times: list[str] | None) -> tuple[int, str] | None:
    """(m, what the step is) for evenly spaced dates whose step has a usual seasonal period:
    hourly -> 24 (a day), daily -> 7 (a week), weekly -> 52 (a year), monthly -> 12,
    quarterly -> 4; None for numbers, uneven steps or other steps."""
    parsed = parse_times(times or [])
    if parsed is None or len(parsed) < 3 or parsed.dtype.kind != "M":
        return None
    seconds = np.diff(parsed.astype("datetime64[s]").astype(np.int64))
    days = np.diff(parsed.astype("datetime64[M]").astype(np.int64))  # calendar months
    if (seconds == 3600).all():
        return 24, "an hour"
    if (seconds == 86400).all():
        return 7, "a day"
    if (seconds == 7 * 86400).all():
        return 52, "a week"
    if (days == 1).all() and (parsed.astype("datetime64[M]") == parsed).all():
        return 12, "a month"
    if (days == 3).all() and (parsed.astype("datetime64[M]") == parsed).all():
        return 4, "a quarter"
    return None


# -- embedded series -----------------------------------------------------------------------------


def synthetic_series(n: int = 960, season: int = 24, seed: int = 0) -> Series:
    """A seasonal series with trend: 10 + 0.01·t + 2·sin(2πt/m) + 0.5·sin(4πt/m + 1) + noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64)
    phase = 2 * np.pi * t / season
    y = 10 + 0.01 * t + 2 * np.sin(phase) + 0.5 * np.sin(2 * phase + 1) + rng.normal(0, 0.2, n)
    return Series(y[:, None], ["value"], "synthetic", [str(i) for i in range(n)], "t", season)


def statsmodels_available() -> bool:
    try:
        import statsmodels.datasets  # noqa: F401
    except ImportError:
        return False
    return True


def _need_statsmodels(name: str) -> None:
    if not statsmodels_available():
        raise UserError(
            f"--data {name}: needs statsmodels (pip install 'unroll[datasets]'), "
            f"or use --data synthetic"
        )


def load_co2(fill: Fill = "interpolate") -> Series:
    """Mauna Loa CO2 (ppm), weekly 1958-03-29 .. 2001-12-29, 2284 rows; season 52 weeks.

    It has 59 missing weeks, so ``fill="none"`` is an error; interpolation is the default.
    """
    _need_statsmodels("co2")
    from statsmodels.datasets import co2

    frame = co2.load_pandas().data
    y = frame["co2"].to_numpy(dtype=np.float64)
    times = [str(d.date()) for d in frame.index]
    missing = np.isnan(y)
    if fill == "drop":
        y, times = y[~missing], [t for t, m in zip(times, missing) if not m]
    elif missing.any():
        y = _fill(y, fill, "co2", "co2", int(np.flatnonzero(missing)[0]) + 2)
    return Series(y[:, None], ["co2"], "co2", times, "date", season=52)


def load_sunspots() -> Series:
    """Yearly sunspot numbers 1700-2008, 309 rows; the solar cycle is about 11 years."""
    _need_statsmodels("sunspots")
    from statsmodels.datasets import sunspots

    frame = sunspots.load_pandas().data
    y = frame["SUNACTIVITY"].to_numpy(dtype=np.float64)
    times = [str(int(v)) for v in frame["YEAR"]]
    return Series(y[:, None], ["SUNACTIVITY"], "sunspots", times, "YEAR", season=11)


def load_series(
    data: str,
    target: str | None = None,
    inputs: list[str] | None = None,
    time_column: str | None = None,
    fill: Fill = "none",
) -> Series:
    """An embedded series by name (co2, sunspots, synthetic) or a CSV file by path."""
    if data in EMBEDDED:
        if inputs or target or time_column:
            raise UserError(
                f"--data {data}: --target/--inputs/--time-column apply to CSV files only"
            )
        if data == "co2":
            return load_co2("interpolate" if fill == "none" else fill)
        if data == "sunspots":
            return load_sunspots()
        return synthetic_series()
    return read_csv(data, target=target, inputs=inputs, time_column=time_column, fill=fill)


# -- splitting and windows -----------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Row boundaries of the time split: train [0, train_end), valid, test [valid_end, n)."""

    n: int
    train_end: int
    valid_end: int


def time_split(n: int, valid_fraction: float, test_fraction: float) -> Split:
    """Cut `n` rows into consecutive train / valid / test parts (no shuffling)."""
    if not (
        0 < valid_fraction < 1 and 0 < test_fraction < 1 and valid_fraction + test_fraction < 1
    ):
        raise UserError(
            f"valid_fraction={valid_fraction}, test_fraction={test_fraction}: each must be in "
            f"(0, 1) and their sum below 1"
        )
    valid_end = n - int(round(n * test_fraction))
    train_end = valid_end - int(round(n * valid_fraction))
    return Split(n, train_end, valid_end)


def split_problem(split: Split, lookback: int, horizon: int, season: int) -> str | None:
    """Why this split cannot hold the windows (None when it can)."""
    if split.train_end < lookback + horizon:
        return f"the training part ({split.train_end} rows) is shorter than lookback + horizon"
    if split.train_end <= season:
        return f"the training part ({split.train_end} rows) is not longer than season={season}"
    if split.valid_end - split.train_end < horizon:
        return f"the validation part ({split.valid_end - split.train_end} rows) < horizon"
    if split.n - split.valid_end < horizon:
        return f"the test part ({split.n - split.valid_end} rows) < horizon"
    return None


def check_length(
    series: Series,
    lookback: int,
    horizon: int,
    season: int,
    valid_fraction: float,
    test_fraction: float,
) -> Split:
    """The split of `series`, or a UserError naming the file when it is too short."""
    if lookback < 1 or horizon < 1 or season < 1:
        raise UserError(f"lookback={lookback}, horizon={horizon}, season={season}: must be >= 1")
    split = time_split(len(series), valid_fraction, test_fraction)
    problem = split_problem(split, lookback, horizon, season)
    if problem is None:
        return split

    def fails(n: int) -> bool:
        split = time_split(n, valid_fraction, test_fraction)
        return split_problem(split, lookback, horizon, season) is not None

    # The parts grow in proportion to n: double until a length works, then bisect (the
    # rounding of the parts can make the answer off by a row or two from the very least).
    low, high = len(series), 2 * len(series) + 1
    while fails(high):
        low, high = high, 2 * high
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fails(mid) else (low, mid)
    need = high
    raise UserError(
        f"{series.source}: {len(series)} rows are too few for lookback={lookback} + "
        f"horizon={horizon} ({problem}); need at least {need} rows"
    )


def window_origins(start: int, stop: int, lookback: int, horizon: int, step: int = 1) -> range:
    """Origins t with the whole target span ``[t, t+H)`` in ``[start, stop)`` and ``t >= L``."""
    return range(max(start, lookback), stop - horizon + 1, step)


def backtest_origins(split: Split, horizon: int, step: int) -> list[int]:
    """Rolling origins over the test part, every `step` rows: the last one ends at row n-1."""
    if step < 1:
        raise UserError(f"step={step}: the backtest step must be >= 1")
    return list(range(split.valid_end, split.n - horizon + 1, step))


def make_windows(
    values: np.ndarray, target: np.ndarray, origins: Any, lookback: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``values[t-L:t]`` and targets ``target[t:t+H]`` for each origin t.

    values: (N, C), target: (N,) -> x: (len(origins), L, C), y: (len(origins), H).
    """
    origins = np.asarray(list(origins), dtype=np.int64)
    if len(origins) and (origins.min() < lookback or origins.max() + horizon > len(target)):
        raise ValueError(
            f"make_windows: origins must lie in [{lookback}, {len(target) - horizon}], "
            f"got [{origins.min()}, {origins.max()}]"
        )
    # Windows are views: (N-L+1, C, L) -> gather only the rows asked for.
    xs = np.lib.stride_tricks.sliding_window_view(values, lookback, axis=0)
    ys = np.lib.stride_tricks.sliding_window_view(target, horizon)
    x = xs[origins - lookback].transpose(0, 2, 1)  # (n, L, C)
    y = ys[origins]  # (n, H)
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


# -- scaling -------------------------------------------------------------------------------------


class Scaler:
    """Per-column standardisation, (x - mean) / std, fitted on the training rows only."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.asarray(std, dtype=np.float64)

    @classmethod
    def fit(cls, train_values: np.ndarray) -> Scaler:
        """train_values: (N_train, C). A constant column gets std 1."""
        with np.errstate(over="ignore", invalid="ignore"):  # too large: see `scaled`
            mean = train_values.mean(axis=0)
            std = train_values.std(axis=0)
        std = np.where(std > 0, std, 1.0)
        return cls(mean, std)

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def scaled(self, series: Series) -> np.ndarray:
        """The series in training units as float32 (what the model reads), or a `UserError`
        when some row lies too many standard deviations away to be represented."""
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = self.transform(series.values).astype(np.float32)
        bad = ~np.isfinite(scaled).all(axis=1)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise UserError(
                f"{series.source}: row {row + 1} ({series.values[row].tolist()}) is too far from "
                f"the training rows (mean {self.mean.tolist()}, std {self.std.tolist()}) to scale"
            )
        return scaled

    def inverse_target(self, y: np.ndarray) -> np.ndarray:
        """Scaled target values (any shape) back to the target column's units."""
        return y * self.std[0] + self.mean[0]

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: Any, columns: int | None = None) -> Scaler:
        """The scaler `to_dict` saved; a ValueError saying what is wrong with anything else
        (a checkpoint is input too). `columns`: how many columns it must scale."""
        if not isinstance(d, dict) or not {"mean", "std"} <= set(d):
            raise ValueError("expected a dict with 'mean' and 'std' lists")
        try:
            mean = np.asarray(d["mean"], dtype=np.float64)
            std = np.asarray(d["std"], dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError("'mean' and 'std' must be lists of numbers") from None
        if mean.ndim != 1 or mean.shape != std.shape or len(mean) == 0:
            raise ValueError(f"'mean' and 'std' must be lists of one length, got {d}")
        if columns is not None and len(mean) != columns:
            raise ValueError(f"{len(mean)} columns scaled, the model reads {columns}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError(f"'mean' must be finite and 'std' finite and > 0, got {d}")
        return cls(mean, std)
