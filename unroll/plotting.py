"""PNG figures for the recipes (matplotlib, an optional extra: ``pip install 'unroll[plot]'``).

A plain module of functions. Each returns the path it wrote, or None (with nothing written)
when matplotlib is not installed, so a recipe can print a note instead of failing. Files are
written atomically (rendered to memory, then renamed into place).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from unroll.engine.checkpoint import atomic_write_bytes

MISSING_MATPLOTLIB = "matplotlib is not installed (pip install 'unroll[plot]')"


def _pyplot():
    """matplotlib.pyplot on the non-interactive Agg backend, or None when not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def confusion_matrix_png(
    path: str | Path,
    matrix: Sequence[Sequence[int]],
    class_names: Sequence[str],
    title: str = "",
) -> Path | None:
    """A confusion matrix (rows: true class, columns: predicted) with counts in the cells."""
    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np

    m = np.asarray(matrix)
    k = len(class_names)
    size = max(4.0, 0.6 * k + 2.0)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        # Colour by the row-normalised rate so classes of different sizes read alike.
        rates = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right")
        ax.set_yticks(range(k), labels=list(class_names))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if title:
            ax.set_title(title)
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    str(int(m[i, j])),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_forecast(
    path: str | Path,
    x: Sequence[float],
    series: dict[str, Sequence[float]],
    title: str = "",
    xlabel: str = "t",
) -> Path | None:
    """Lines over a shared x axis, e.g. {"truth cos(t)": ..., "prediction": ...}."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(10, 3.5))
    try:
        for i, (label, values) in enumerate(series.items()):
            ax.plot(x, values, label=label, lw=1.5 if i == 0 else 1.2, ls="-" if i == 0 else "--")
        ax.set_xlabel(xlabel)
        ax.legend(loc="upper right")
        if title:
            ax.set_title(title)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def plot_backtest(
    path: str | Path,
    y: Sequence[float],
    start: int,
    origins: Sequence[int],
    forecasts: dict[str, Sequence[Sequence[float]]],
    time: Sequence[str] | None = None,
    title: str = "",
) -> Path | None:
    """The series from row `start` on, and each forecaster's (n, H) forecasts from `origins`.

    Pass non-overlapping origins (every H-th) for a readable figure; the first forecaster is
    drawn solid, the others dashed.
    """
    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np

    y = np.asarray(y, dtype=float)
    fig, ax = plt.subplots(figsize=(11, 4))
    try:
        rows = np.arange(start, len(y))
        ax.plot(rows, y[start:], color="black", lw=1.0, label="observed")
        colors = ["tab:red", "tab:blue", "tab:green", "tab:orange"]
        for k, (name, f) in enumerate(forecasts.items()):
            f = np.asarray(f, dtype=float)
            for i, t in enumerate(origins):
                ax.plot(
                    np.arange(t, t + f.shape[1]),
                    f[i],
                    color=colors[k % len(colors)],
                    lw=1.4 if k == 0 else 1.0,
                    ls="-" if k == 0 else "--",
                    label=name if i == 0 else None,
                )
        for t in origins:
            ax.axvline(t, color="grey", lw=0.5, alpha=0.5)
        if time is not None:
            ticks = np.linspace(start, len(y) - 1, 6).astype(int)
            ax.set_xticks(ticks, labels=[str(time[i]) for i in ticks])
        else:
            ax.set_xlabel("row")
        ax.legend(loc="upper left")
        if title:
            ax.set_title(title)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


# --- sequence to sequence (unroll.recipes.seq2seq) -------------------------------------------


def accuracy_by_length_png(
    path: str | Path,
    curves: dict[str, dict[int, float]],
    title: str = "",
    ylabel: str = "exact match",
) -> Path | None:
    """One line per curve: accuracy (0-1) by source length, e.g. {"attention": {5: 1.0, ...},
    "no attention": {...}}."""
    plt = _pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    try:
        for label, by_length in curves.items():
            lengths = sorted(by_length)
            ax.plot(lengths, [by_length[n] for n in lengths], marker="o", ms=3, label=label)
        ax.xaxis.get_major_locator().set_params(integer=True)  # lengths are whole numbers
        ax.set_xlabel("source length")
        ax.set_ylabel(ylabel)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left")
        if title:
            ax.set_title(title)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def attention_png(
    path: str | Path,
    weights: Sequence[Sequence[float]],
    source: Sequence[str],
    output: Sequence[str],
    title: str = "",
) -> Path | None:
    """A heat map of attention weights [output steps, source positions]: row t is where the
    decoder looked while writing output token t."""
    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np

    w = np.asarray(weights, dtype=float)
    rows, cols = w.shape
    fig, ax = plt.subplots(figsize=(max(3.0, 0.35 * cols + 1.5), max(2.5, 0.35 * rows + 1.2)))
    try:
        ax.imshow(w, cmap="Greys", vmin=0.0, vmax=1.0, aspect="auto")
        ax.set_xticks(range(cols), labels=list(source)[:cols], rotation=90)
        ax.set_yticks(range(rows), labels=list(output)[:rows])
        ax.set_xlabel("source")
        ax.set_ylabel("output")
        if title:
            ax.set_title(title)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)
