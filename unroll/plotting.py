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


# -- word2vec -------------------------------------------------------------------------------------


def embedding_png(
    path: str | Path, words: Sequence[str], points: Sequence[Sequence[float]], title: str = ""
) -> Path | None:
    """Words at their 2-D points (a t-SNE or PCA of word vectors), each labelled."""
    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np

    xy = np.asarray(points, dtype=float)
    fig, ax = plt.subplots(figsize=(14, 14))
    try:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, color="tab:blue")
        for word, (x, y) in zip(words, xy):
            ax.annotate(word, (x, y), xytext=(2, 2), textcoords="offset points", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
        if title:
            ax.set_title(title)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)
