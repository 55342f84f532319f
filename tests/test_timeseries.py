"""Time-series data: CSV reading and its errors, time split, windows, scaler (hand-made data)."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch

from unroll.data.timeseries import (
    Scaler,
    Series,
    Split,
    backtest_origins,
    check_length,
    future_times,
    make_windows,
    read_csv,
    split_problem,
    synthetic_series,
    time_split,
    window_origins,
)
from unroll.errors import UserError
from unroll.recipes.forecast import ForecastConfig, prepare


def write(tmp_path, text, name="s.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_windows_hand_computed():
    values = np.array([[0, 10], [1, 11], [2, 12], [3, 13], [4, 14], [5, 15], [6, 16]], float)
    origins = list(window_origins(0, 7, lookback=3, horizon=2))
    assert origins == [3, 4, 5]
    x, y = make_windows(values, values[:, 0], origins, lookback=3, horizon=2)
    expected_x = np.array(
        [
            [[0, 10], [1, 11], [2, 12]],
            [[1, 11], [2, 12], [3, 13]],
            [[2, 12], [3, 13], [4, 14]],
        ],
        float,
    )
    expected_y = np.array([[3, 4], [4, 5], [5, 6]], float)
    np.testing.assert_array_equal(x, expected_x)
    np.testing.assert_array_equal(y, expected_y)


def test_window_origins_keep_targets_inside_the_part():
    # validation part [5, 10): targets t..t+1 must end before 10; inputs may reach back
    assert list(window_origins(5, 10, lookback=3, horizon=2)) == [5, 6, 7, 8]
    # training part [0, 6) with lookback 4: the first origin needs 4 rows before it
    assert list(window_origins(0, 6, lookback=4, horizon=2)) == [4]


def test_make_windows_rejects_origins_out_of_range():
    v = np.zeros((5, 1))
    with pytest.raises(ValueError, match="origins"):
        make_windows(v, v[:, 0], [1], lookback=2, horizon=1)


def test_recipe_gather_matches_make_windows():
    from unroll.recipes.forecast import gather

    values = np.arange(40, dtype=float).reshape(20, 2)
    origins = [5, 9, 17]
    x, y = make_windows(values, values[:, 0], origins, lookback=4, horizon=3)
    gx, gy = gather(torch.tensor(values), torch.tensor(origins), 4, 3)
    np.testing.assert_array_equal(gx.numpy(), x)
    np.testing.assert_array_equal(gy.numpy(), y)


def test_time_split_and_backtest_origins():
    s = time_split(100, valid_fraction=0.1, test_fraction=0.2)
    assert (s.train_end, s.valid_end, s.n) == (70, 80, 100)
    small = Split(n=20, train_end=10, valid_end=14)
    assert backtest_origins(small, horizon=3, step=1) == [14, 15, 16, 17]
    assert backtest_origins(small, horizon=3, step=2) == [14, 16]
    assert backtest_origins(small, horizon=6, step=1) == [14]  # 14..19 ends at row n-1
    with pytest.raises(UserError, match="step"):
        backtest_origins(small, horizon=3, step=0)


def test_scaler_never_sees_the_test_part(tmp_path):
    # 40 rows: the split puts rows 28..31 in validation and 32..39 in test; the test rows
    # hold a huge value that would dominate mean and std if the scaler saw them.
    y = [float((i * 7) % 11) for i in range(40)]
    y[35] = 1e9
    p = write(tmp_path, "t,y\n" + "".join(f"{i},{v}\n" for i, v in enumerate(y)))
    cfg = ForecastConfig(data=str(p), lookback=4, horizon=2, season=1)
    prep = prepare(cfg, torch.device("cpu"))
    assert (prep.split.train_end, prep.split.valid_end) == (28, 32)
    train = np.array(y[:28])
    np.testing.assert_allclose(prep.scaler.mean, [train.mean()])
    np.testing.assert_allclose(prep.scaler.std, [train.std()])
    assert prep.scaler.mean[0] < 10
    # the MASE scale also comes from the training rows only
    np.testing.assert_allclose(prep.mase_scale, np.abs(np.diff(train)).mean())


def test_scaler_roundtrip_and_constant_column():
    s = Scaler.fit(np.array([[1.0, 5.0], [3.0, 5.0]]))
    np.testing.assert_array_equal(s.mean, [2.0, 5.0])
    np.testing.assert_array_equal(s.std, [1.0, 1.0])  # constant column -> std 1
    t = Scaler.from_dict(s.to_dict())
    np.testing.assert_array_equal(t.transform(np.array([[4.0, 6.0]])), [[2.0, 1.0]])
    np.testing.assert_array_equal(t.inverse_target(np.array([2.0])), [4.0])


def test_read_csv_columns_time_and_inputs(tmp_path):
    p = write(tmp_path, "date,a,b,c\n2020-01-01,1,10,x\n2020-01-02,2,20,y\n2020-01-03,3,30,z\n")
    s = read_csv(p, target="b", inputs=["a"])
    assert s.columns == ["b", "a"]
    assert s.time_column == "date" and s.time == ["2020-01-01", "2020-01-02", "2020-01-03"]
    np.testing.assert_array_equal(s.values, [[10, 1], [20, 2], [30, 3]])
    # one value column left: no --target needed; an unused non-numeric column is fine
    s = read_csv(write(tmp_path, "year,v\n1,5\n2,6\n", "one.csv"))
    assert s.columns == ["v"] and s.time == ["1", "2"]


def test_fill_methods(tmp_path):
    p = write(tmp_path, "t,y\n0,1\n1,\n2,NA\n3,4\n4,5\n")
    with pytest.raises(UserError) as e:
        read_csv(p)
    msg = str(e.value)
    assert str(p) in msg and "'y'" in msg and "line 3" in msg and "\n" not in msg
    np.testing.assert_array_equal(read_csv(p, fill="interpolate").target, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(read_csv(p, fill="ffill").target, [1, 1, 1, 4, 5])
    dropped = read_csv(p, fill="drop")
    np.testing.assert_array_equal(dropped.target, [1, 4, 5])
    assert dropped.time == ["0", "3", "4"]


@pytest.mark.parametrize(
    ("text", "kwargs", "expect"),
    [
        ("t,y\n0,1\n1,abc\n", {}, "not numeric"),
        ("t,y\n0,1\n1,2\n", {"target": "nope"}, "unknown target column 'nope'"),
        ("t,y\n0,1\n1,2\n", {"inputs": ["q"]}, "unknown input column 'q'"),
        ("t,a,b\n0,1,2\n", {}, "--target"),
        ("t,y\n0,1\n1\n", {}, "line 3"),
        ("", {}, "empty"),
    ],
)
def test_bad_csv_names_the_file(tmp_path, text, kwargs, expect):
    p = write(tmp_path, text)
    with pytest.raises(UserError) as e:
        read_csv(p, **kwargs)
    assert str(p) in str(e.value) and expect in str(e.value)


def test_too_few_rows_names_the_file(tmp_path):
    p = write(tmp_path, "t,y\n" + "".join(f"{i},{i % 3}\n" for i in range(20)))
    s = read_csv(p)
    with pytest.raises(UserError) as e:
        check_length(s, lookback=12, horizon=6, season=1, valid_fraction=0.1, test_fraction=0.2)
    assert str(p) in str(e.value) and "too few" in str(e.value)
    need = int(str(e.value).rsplit("at least ", 1)[1].split()[0])
    long = read_csv(write(tmp_path, "t,y\n" + "".join(f"{i},{i}\n" for i in range(need)), "l"))
    check_length(long, lookback=12, horizon=6, season=1, valid_fraction=0.1, test_fraction=0.2)


def test_synthetic_series_is_deterministic_and_seasonal():
    a, b = synthetic_series(), synthetic_series()
    np.testing.assert_array_equal(a.values, b.values)
    y = a.target
    # one season apart differs far less than half a season apart
    assert np.abs(y[24:] - y[:-24]).mean() < 0.5 * np.abs(y[12:] - y[:-12]).mean()


def test_embedded_co2_gaps_are_interpolated():
    pytest.importorskip("statsmodels")
    from unroll.data.timeseries import load_series

    s = load_series("co2")
    assert len(s) == 2284 and s.season == 52 and s.columns == ["co2"]
    assert np.isfinite(s.values).all()
    assert s.time[0] == "1958-03-29" and s.time[-1] == "2001-12-29"
    with pytest.raises(UserError, match="CSV files only"):
        load_series("co2", target="x")


def test_rows_needed_for_long_windows_are_exact_and_found_at_once():
    s = Series(np.zeros((200, 1)), ["y"], "s.csv")
    for lookback, horizon, season in ((1_000_000, 4, 1), (4, 1_000_000, 1), (12, 4, 10**9)):
        started = time.perf_counter()
        with pytest.raises(UserError) as e:
            check_length(s, lookback, horizon, season, valid_fraction=0.1, test_fraction=0.2)
        assert time.perf_counter() - started < 1.0  # was a row-by-row search of seconds
        need = int(str(e.value).rsplit("at least ", 1)[1].split()[0])
        fits = [
            split_problem(time_split(n, 0.1, 0.2), lookback, horizon, season) is None
            for n in (need - 1, need)
        ]
        assert fits == [False, True], (lookback, horizon, season, need)


def test_future_times_continue_only_evenly_spaced_labels():
    assert future_times(["1998", "1999"], 2) == ["2000", "2001"]
    assert future_times(["2001-12-22", "2001-12-29"], 2) == ["2002-01-05", "2002-01-12"]
    # first-of-month dates step by months, not by a number of days
    months = ["2001-11-01", "2001-12-01", "2002-01-01"]
    assert future_times(months, 2) == ["2002-02-01", "2002-03-01"]
    assert future_times(["0.5", "1.0", "1.5"], 2) == ["2", "2.5"]
    assert future_times(["2001-12-29T00:00", "2001-12-29T06:00"], 1) == ["2001-12-29T12:00"]
    # evenly spaced at the end only (a gap earlier, e.g. rows dropped): no labels, no guess
    assert future_times(["1", "2", "4", "5"], 2) is None
    assert future_times(["2001-01-01", "2001-01-08", "2001-01-22", "2001-01-29"], 1) is None
    assert future_times(["a", "b"], 2) is None
    assert future_times(["7"], 2) is None and future_times(None, 2) is None


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("t,y\n1,5\n2,6\n2,7\n3,8\n", "line 4: time '2' repeats line 3's '2'"),
        ("t,y\n1,5\n3,6\n\n2,7\n", "line 5: time '2' comes before line 3's '3'"),
        (
            "date,y\n2020-01-02,5\n2020-01-01,6\n",
            "line 3: time '2020-01-01' comes before line 2's '2020-01-02'",
        ),
        ("date,y\nQ1,5\nQ2,6\nQ1,7\n", "line 4: time 'Q1' repeats line 2"),
    ],
)
def test_times_must_increase_and_the_line_is_named(tmp_path, text, expect):
    p = write(tmp_path, text)
    with pytest.raises(UserError) as e:
        read_csv(p)
    assert str(p) in str(e.value) and expect in str(e.value), str(e.value)
    assert "must increase" in str(e.value) or "repeats" in str(e.value)


def test_free_form_time_labels_in_any_order_are_kept(tmp_path):
    s = read_csv(write(tmp_path, "t,y\nb,1\na,2\nc,3\n"))
    assert s.time == ["b", "a", "c"] and future_times(s.time, 1) is None


@pytest.mark.parametrize("value", ["1e308", "-1e308", "1e151"])
def test_values_too_large_to_square_are_one_error_without_warnings(tmp_path, value):
    p = write(tmp_path, "t,y\n" + "".join(f"{i},{value if i == 3 else i}\n" for i in range(10)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warnings included
        with pytest.raises(UserError) as e:
            read_csv(p)
    assert f"column 'y' at line 5: {value} is out of range" in str(e.value)


def test_rows_too_far_from_the_training_rows_cannot_be_scaled():
    values = np.array([[1.0], [1.0], [1.0], [1e45]])  # the training rows are constant: std 1
    series = Series(values, ["y"], "s.csv")
    scaler = Scaler.fit(values[:3])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserError, match="s.csv: row 4 .* too far from the training rows"):
            scaler.scaled(series)
    ok = Series(values[:3], ["y"], "s.csv")
    assert scaler.scaled(ok).dtype == np.float32


@pytest.mark.parametrize(
    ("saved", "expect"),
    [
        (None, "expected a dict"),
        ({"mean": [0.0]}, "expected a dict"),
        ({"mean": "a", "std": "b"}, "lists of numbers"),
        ({"mean": [0.0, 1.0], "std": [1.0]}, "of one length"),
        ({"mean": [0.0, 1.0], "std": [1.0, 1.0]}, "2 columns scaled, the model reads 1"),
        ({"mean": [0.0], "std": [0.0]}, "'std' finite and > 0"),
        ({"mean": [float("nan")], "std": [1.0]}, "'mean' must be finite"),
    ],
)
def test_a_saved_scaler_is_checked(saved, expect):
    with pytest.raises(ValueError, match=expect):
        Scaler.from_dict(saved, columns=1)
