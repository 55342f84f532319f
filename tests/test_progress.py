"""The progress bar as a person sees it: a redrawn line that fits a narrow terminal, and a
finished bar that keeps its values (the callers compute them only when `due`)."""

from __future__ import annotations

import io

from unroll.engine.progress import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drawn_lines(text: str) -> list[str]:
    """What a terminal shows: each ``\\r`` starts the line again."""
    return [part for line in text.split("\n") for part in line.split("\r") if part]


def run_like_the_training_loop(bar: Progress, steps: int) -> None:
    for step in range(1, steps + 1):
        if bar.due():  # the loop reads the loss (a sync) only then
            bar.update(1, ppl=100.0 + step, loss=4.61234)
        else:
            bar.update(1)
    bar.close()


def test_a_redrawn_line_never_wraps_in_a_45_column_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "45")
    out = Terminal()
    bar = Progress(210, desc="epoch 12/13", stream=out, min_interval=0.0)
    run_like_the_training_loop(bar, 210)
    lines = drawn_lines(out.getvalue())
    assert lines and max(len(line.rstrip()) for line in lines) <= 44
    assert "[" in lines[-1] and "210/210" in lines[-1]  # the bar narrowed, the counts stayed


def test_a_wide_terminal_keeps_the_20_character_bar(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    out = Terminal()
    run_like_the_training_loop(Progress(3, desc="e", stream=out, min_interval=0.0), 3)
    assert "[####################] 3/3" in drawn_lines(out.getvalue())[-1]


def test_the_finished_bar_shows_its_last_values_even_when_not_due():
    out = io.StringIO()  # not a terminal: a plain line every 30 s, and the last one
    bar = Progress(50, desc="epoch 1", stream=out)  # log_every 30 s: only the end is due
    run_like_the_training_loop(bar, 50)
    last = out.getvalue().splitlines()[-1]
    assert last.startswith("epoch 1 [####################] 50/50")
    assert "ppl=150" in last and "loss=4.612" in last
