"""PNG figures for the recipes (matplotlib, an optional extra: ``pip install 'unroll[plot]'``).

A plain module of functions. Each returns the path it wrote, or None (with nothing written)
when matplotlib is not installed, so a recipe can print a note instead of failing. Files are
written atomically (rendered to memory, then renamed into place).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from unroll.errors import UserError
from unroll.fileio import atomic_write_bytes

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
    """Write the figure; a path that cannot be written (no such directory, a directory, a
    full disk) is a one-line `UserError` naming it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a PNG file name")
    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror or e})") from None
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


# -- autoencoders (unroll autoencode) ---------------------------------------------------------


def matplotlib_available() -> bool:
    return _pyplot() is not None


def image_rows_png(
    path: str | Path,
    rows: dict[str, Sequence],
    captions: Sequence[str] | None = None,
    title: str = "",
) -> Path | None:
    """A grid of greyscale images: one row per entry of `rows` (name -> ``[N, H, W]`` values
    in [0, 1], e.g. input / reconstruction), N columns, `captions` under the last row."""
    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np

    arrays = {k: np.asarray(v, dtype=float) for k, v in rows.items()}
    n = max(len(a) for a in arrays.values())
    r = len(arrays)
    fig, axes = plt.subplots(r, n, figsize=(1.3 * n + 1.2, 1.45 * r + 0.6), squeeze=False)
    try:
        for i, (name, images) in enumerate(arrays.items()):
            for j in range(n):
                ax = axes[i][j]
                ax.set_xticks([])
                ax.set_yticks([])
                if j < len(images):
                    ax.imshow(images[j], cmap="gray", vmin=0.0, vmax=1.0)
                else:
                    ax.axis("off")
                if j == 0:
                    ax.set_ylabel(name, fontsize=8)
                if captions is not None and i == r - 1 and j < len(captions):
                    ax.set_xlabel(captions[j], fontsize=7)
        if title:
            fig.suptitle(title, fontsize=10)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def code_map_png(
    path: str | Path,
    xy: Sequence[Sequence[float]],
    labels: Sequence[int],
    names: Sequence[str],
    title: str = "",
) -> Path | None:
    """A 2-D scatter of codes (e.g. their first two principal components), coloured by label."""
    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np

    xy = np.asarray(xy, dtype=float)
    labels = np.asarray(labels)
    fig, ax = plt.subplots(figsize=(7, 6))
    try:
        cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
        for k, name in enumerate(names):
            pick = labels == k
            if pick.any():
                ax.scatter(xy[pick, 0], xy[pick, 1], s=6, color=cmap(k % cmap.N), label=name)
        ax.set_xlabel("component 1")
        ax.set_ylabel("component 2")
        ax.legend(loc="best", fontsize=7, markerscale=2)
        if title:
            ax.set_title(title, fontsize=10)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def series_reconstruction_png(
    path: str | Path,
    y: Sequence[float],
    recon: Sequence[float],
    flagged: Sequence[tuple[int, int]] = (),
    bounds: tuple[int, int] | None = None,
    injected: Sequence[tuple[int, int]] = (),
    time: Sequence[str] | None = None,
    title: str = "",
) -> Path | None:
    """A series and its reconstruction; flagged windows shaded red, injected anomalies marked
    on the x axis, the train/valid/test boundaries as vertical lines."""
    plt = _pyplot()
    if plt is None:
        return None
    import numpy as np

    y = np.asarray(y, dtype=float)
    fig, ax = plt.subplots(figsize=(12, 4))
    try:
        rows = np.arange(len(y))
        ax.plot(rows, y, color="black", lw=0.9, label="series")
        ax.plot(rows, np.asarray(recon, dtype=float), color="tab:blue", lw=0.9, ls="--",
                label="reconstruction")  # fmt: skip
        for k, (a, b) in enumerate(flagged):
            ax.axvspan(a, b - 1, color="tab:red", alpha=0.2, label="flagged" if k == 0 else None)
        for k, (a, b) in enumerate(injected):
            ax.plot([a, b - 1], [y.min()] * 2, color="tab:orange", lw=4,
                    label="injected anomaly" if k == 0 else None)  # fmt: skip
        if bounds is not None:
            for b, name in zip(bounds, ("valid", "test")):
                ax.axvline(b, color="grey", lw=0.8)
                ax.text(b, ax.get_ylim()[1], f" {name}", va="top", fontsize=8, color="grey")
        if time is not None:
            ticks = np.linspace(0, len(y) - 1, 7).astype(int)
            ax.set_xticks(ticks, labels=[str(time[i]) for i in ticks])
        else:
            ax.set_xlabel("row")
        ax.legend(loc="upper left", fontsize=8)
        if title:
            ax.set_title(title, fontsize=10)
        return _save(fig, Path(path))
    finally:
        plt.close(fig)


def windows_png(
    path: str | Path,
    windows: Sequence[tuple[Sequence[float], Sequence[float], str]],
    title: str = "",
) -> Path | None:
    """Small multiples of (actual, reconstruction, caption) windows, e.g. the worst ones."""
    plt = _pyplot()
    if plt is None:
        return None
    n = max(1, len(windows))
    cols = min(3, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    try:
        for k, ax in enumerate(axes.flat):
            if k >= len(windows):
                ax.axis("off")
                continue
            actual, recon, caption = windows[k]
            ax.plot(actual, color="black", lw=1.0, label="series")
            ax.plot(recon, color="tab:blue", lw=1.0, ls="--", label="reconstruction")
            ax.set_title(caption, fontsize=8)
            if k == 0:
                ax.legend(fontsize=7)
        if title:
            fig.suptitle(title, fontsize=10)
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
