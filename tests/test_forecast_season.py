"""season=1 on dated rows: the seasonal-naive baseline is then the naive one; the run says
which season the rows' spacing suggests (and leaves the numbers as asked)."""

from __future__ import annotations

import numpy as np
import pytest

from unroll.cli import main
from unroll.data.timeseries import natural_season


@pytest.mark.parametrize(
    ("times", "expect"),
    [
        ([f"2024-01-01T{h:02d}:00" for h in range(5)], (24, "an hour")),
        ([f"2024-01-{d:02d}" for d in range(1, 6)], (7, "a day")),
        (["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-22"], (52, "a week")),
        (["2023-11-01", "2023-12-01", "2024-01-01", "2024-02-01"], (12, "a month")),
        (["2023-01-01", "2023-04-01", "2023-07-01", "2023-10-01"], (4, "a quarter")),
        (["2024-01-01", "2024-01-02", "2024-01-04"], None),  # uneven
        (["1", "2", "3", "4"], None),  # numbers: no calendar
        (None, None),
    ],
)
def test_natural_season_from_the_time_step(times, expect):
    assert natural_season(times) == expect


def test_hourly_rows_with_season_1_get_a_note(tmp_path, capsys):
    hours = np.arange(24 * 40)
    y = np.sin(2 * np.pi * hours / 24) + 0.01 * hours
    stamps = np.datetime64("2024-01-01T00:00") + hours.astype("timedelta64[h]")
    csv = tmp_path / "load.csv"
    csv.write_text("time,load\n" + "".join(f"{t},{v:.5f}\n" for t, v in zip(stamps, y)))
    argv = ["forecast", "train", "--data", str(csv), "--out", str(tmp_path / "run"), "--quiet"]
    argv += ["lookback=24", "horizon=6", "epochs=1", "hidden_size=4", "step=24", "plot=false"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "season=1 makes the seasonal-naive baseline the naive one" in err
    assert "the rows are an hour apart, so season=24" in err
    assert main([*argv[:5], str(tmp_path / "run2"), *argv[6:], "season=24"]) == 0
    assert "season=1" not in capsys.readouterr().err
