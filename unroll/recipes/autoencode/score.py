"""Scoring a trained autoencoder, and the files a person looks at.

Images (`score_images`): per-pixel BCE, MSE and PSNR per example on valid and test, the BCE
floor (the targets' binary entropy), and for a denoising model the PSNR table on the test
set: noisy input vs clean, and its reconstruction vs clean (one fixed noise draw,
``NOISE_SEED``, so the table repeats). Files: ``test_errors.csv``, ``reconstructions.png``
(one test image per class: input and reconstruction, with the noisy input for denoising),
``worst.png`` (the worst-rebuilt test images), ``codes.png`` (the test codes' first two
principal components, coloured by class).

Series (`score_series`): the error of every window (MSE in units of the training part's
standard deviation); the threshold is the ``threshold_quantile`` of the training windows'
errors; non-overlapping windows over the whole series above it are flagged. Files:
``window_errors.csv``, ``anomalies.csv`` (the flagged windows), ``series.png`` (the series,
its reconstruction, flagged windows shaded), ``worst.png``, ``codes.png`` (coloured by part).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unroll.fileio import atomic_write_text
from unroll.metrics.reconstruction import (
    anomaly_threshold,
    bce_per_pixel,
    binary_entropy,
    mean_psnr,
    mse_per_example,
    psnr,
    worst,
)
from unroll.models.autoencoders import DenoisingAutoencoder, SequenceAutoencoder
from unroll.recipes.autoencode.data import PARTS, ImageData, SeriesData

NOISE_SEED = 1234  # the evaluation's noise draw (training draws from the run's generator)
MAX_MAP_POINTS = 2000


def base_model(model: nn.Module) -> nn.Module:
    return model.autoencoder if isinstance(model, DenoisingAutoencoder) else model


def rebuild(model: nn.Module, x: torch.Tensor, kind: str) -> torch.Tensor:
    """The reconstruction's raw output (logits for images). A sequence autoencoder on images
    feeds back pixel probabilities, which is what its decoder was taught on."""
    if kind == "images" and isinstance(base_model(model), SequenceAutoencoder):
        return model.reconstruct(x, feedback=torch.sigmoid)
    return model.reconstruct(x)


def loss_of(kind: str, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training loss: per-pixel BCE on images (Keras's choice), MSE on series."""
    if kind == "images":
        return nn.functional.binary_cross_entropy_with_logits(raw, target)
    return nn.functional.mse_loss(raw, target)


def pca_2d(codes: torch.Tensor) -> np.ndarray:
    """``[N, D]`` -> ``[N, 2]``: the codes on their first two principal axes."""
    x = codes.double() - codes.double().mean(dim=0, keepdim=True)
    if x.shape[1] < 2:
        x = torch.cat([x, torch.zeros_like(x)], dim=1)
    _, _, vh = torch.linalg.svd(x, full_matrices=False)
    return (x @ vh[:2].T).cpu().numpy()


def _chunks(n: int, size: int):
    for i in range(0, n, size):
        yield slice(i, min(n, i + size))


@torch.no_grad()
def image_part(model: nn.Module, data: ImageData, part: str, batch_size: int) -> dict[str, Any]:
    """Per-example scores of one part (and codes, noisy-input scores for a denoiser)."""
    model.eval()
    denoising = isinstance(model, DenoisingAutoencoder)
    gen = torch.Generator().manual_seed(NOISE_SEED)
    cols: dict[str, list[torch.Tensor]] = {}

    def add(name: str, value: torch.Tensor) -> None:
        cols.setdefault(name, []).append(value.float().cpu())

    for s in _chunks(data.count(part), batch_size):
        x = data.batch(part, s)
        raw = rebuild(model, x, "images")
        recon = torch.sigmoid(raw)
        add("bce", bce_per_pixel(raw, x))
        add("mse", mse_per_example(recon, x))
        add("psnr", psnr(recon, x))
        add("bce_floor", binary_entropy(x))
        add("codes", model.encode(x))
        if denoising:
            noisy = model.corrupt(x, gen)
            denoised = torch.sigmoid(rebuild(model, noisy, "images"))
            add("psnr_noisy", psnr(noisy, x))
            add("psnr_denoised", psnr(denoised, x))
            add("mse_denoised", mse_per_example(denoised, x))
    return {k: torch.cat(v) for k, v in cols.items()}


def score_images(
    model: nn.Module, data: ImageData, out: Path | None, batch_size: int, parts=("valid", "test")
) -> dict[str, Any]:
    """Mean scores per part (and the denoising table); files into `out` unless None."""
    scores: dict[str, Any] = {}
    per: dict[str, dict[str, torch.Tensor]] = {}
    for part in parts:
        per[part] = p = image_part(model, data, part, batch_size)
        scores[part] = {
            "bce": float(p["bce"].mean()),
            "bce_floor": float(p["bce_floor"].mean()),
            "mse": float(p["mse"].mean()),
            "psnr": mean_psnr(p["psnr"]),
            "examples": len(p["bce"]),
        }
        if "psnr_noisy" in p:
            scores[part]["denoising"] = {
                "psnr_noisy": mean_psnr(p["psnr_noisy"]),
                "psnr_denoised": mean_psnr(p["psnr_denoised"]),
                "psnr_clean_input": mean_psnr(p["psnr"]),
                "mse_denoised": float(p["mse_denoised"].mean()),
            }
    if out is not None:
        _image_files(model, data, per[parts[-1]], parts[-1], Path(out), scores, batch_size)
    return scores


def _image_files(model, data: ImageData, p, part: str, out: Path, scores, batch_size) -> None:
    from unroll.plotting import code_map_png, image_rows_png

    labels = data.labels(part).cpu()
    lines = ["index,label,bce,mse,psnr"]
    for i in range(len(p["bce"])):
        lines.append(
            f"{i},{data.classes[labels[i]]},{p['bce'][i]:.6g},{p['mse'][i]:.6g},{p['psnr'][i]:.4f}"
        )
    atomic_write_text(out / f"{part}_errors.csv", "\n".join(lines) + "\n")
    # One example of each class (the first of each, up to 10), so every class is seen.
    first = [
        int((labels == k).nonzero()[0]) for k in range(len(data.classes)) if (labels == k).any()
    ]
    show = torch.tensor(first[:10])
    with torch.no_grad():
        x = data.batch(part, show.to(data.images[part].device))
        rows = {"input": x}
        if isinstance(model, DenoisingAutoencoder):
            rows["noisy input"] = noisy = model.corrupt(
                x, torch.Generator().manual_seed(NOISE_SEED)
            )
            rows["rebuilt from noisy"] = torch.sigmoid(rebuild(model, noisy, "images"))
        clean = "rebuilt from input" if len(rows) > 1 else "reconstruction"
        rows[clean] = torch.sigmoid(rebuild(model, x, "images"))
    s = scores[part]
    image_rows_png(
        out / "reconstructions.png",
        {k: v.cpu().numpy() for k, v in rows.items()},
        captions=[data.classes[labels[i]] for i in show],
        title=f"{data.name} {part}: BCE/pixel {s['bce']:.4f}, MSE {s['mse']:.4f}, "
        f"PSNR {s['psnr']:.2f} dB",
    )
    bad = worst(p["bce"], 10)
    with torch.no_grad():
        x = data.batch(part, torch.tensor(bad).to(data.images[part].device))
        recon = torch.sigmoid(rebuild(model, x, "images"))
    image_rows_png(
        out / "worst.png",
        {"input": x.cpu().numpy(), "reconstruction": recon.cpu().numpy()},
        captions=[f"#{i} {data.classes[labels[i]]}\nBCE {p['bce'][i]:.3f}" for i in bad],
        title=f"{data.name} {part}: the {len(bad)} worst-rebuilt images (per-pixel BCE)",
    )
    keep = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    keep = keep[:MAX_MAP_POINTS]
    code_map_png(
        out / "codes.png",
        pca_2d(p["codes"][keep]),
        labels[keep].numpy(),
        data.classes,
        title=f"{data.name} {part}: codes ({p['codes'].shape[1]}-d), first two principal "
        f"components",
    )


@torch.no_grad()
def window_scores(model: nn.Module, data: SeriesData, starts: torch.Tensor, batch_size: int):
    """``(errors [N], reconstructions [N, T, C] with the window means put back, codes)``."""
    model.eval()
    errs, recs, codes = [], [], []
    for s in _chunks(len(starts), batch_size):
        x = data.windows(starts[s])
        rec = rebuild(model, x, "series")
        errs.append(mse_per_example(rec, x).cpu())
        offset = data.offsets(data.raw_windows(starts[s])) if data.normalize == "mean" else 0
        recs.append((rec + offset).cpu())
        codes.append(model.encode(x).cpu())
    return torch.cat(errs), torch.cat(recs), torch.cat(codes)


def score_series(
    model: nn.Module, data: SeriesData, out: Path | None, batch_size: int, quantile: float
) -> dict[str, Any]:
    train_err, _, _ = window_scores(model, data, data.starts("train"), batch_size)
    threshold = anomaly_threshold(train_err, quantile)
    scores: dict[str, Any] = {}
    for part in ("valid", "test"):
        err, _, _ = window_scores(model, data, data.starts(part), batch_size)
        scores[part] = {"mse": float(err.mean()), "windows": len(err)}
    starts = data.score_starts()
    err, rec, codes = window_scores(
        model, data, torch.tensor(starts, device=data.scaled.device), batch_size
    )
    flagged = [i for i in range(len(starts)) if err[i] > threshold]
    scores["anomalies"] = {
        "threshold": threshold,
        "quantile": quantile,
        "train_windows": len(train_err),
        "scored_windows": len(starts),
        "flagged": {part: sum(data.part_of(starts[i]) == part for i in flagged) for part in PARTS},
        "flagged_windows": [[starts[i], starts[i] + data.window] for i in flagged],
    }
    if data.anomalies:
        found = [
            any(starts[i] < end and start < starts[i] + data.window for i in flagged)
            for start, end in data.anomalies
        ]
        hits = [
            i
            for i in flagged
            if any(starts[i] < e and s < starts[i] + data.window for s, e in data.anomalies)
        ]
        scores["anomalies"]["injected"] = [list(a) for a in data.anomalies]
        scores["anomalies"]["injected_found"] = sum(found)
        scores["anomalies"]["other_flags"] = len(flagged) - len(hits)
    if out is not None:
        _series_files(data, starts, err, rec, codes, flagged, threshold, Path(out))
    return scores


def _series_files(data: SeriesData, starts, err, rec, codes, flagged, threshold, out: Path):
    from unroll.plotting import code_map_png, series_reconstruction_png, windows_png

    series, L = data.series, data.window
    time = series.time
    units = data.scaler.inverse_target(rec[:, :, 0].double().numpy())  # [N, T]

    def label(row: int) -> str:
        return time[row] if time is not None else str(row)

    lines = ["start,end,first,last,part,mse,flagged"]
    for i, s in enumerate(starts):
        lines.append(
            f"{s},{s + L},{label(s)},{label(s + L - 1)},{data.part_of(s)},{err[i]:.6g},"
            f"{int(i in flagged)}"
        )
    atomic_write_text(out / "window_errors.csv", "\n".join(lines) + "\n")
    flagged_lines = [lines[0]] + [lines[i + 1] for i in flagged]
    atomic_write_text(out / "anomalies.csv", "\n".join(flagged_lines) + "\n")
    recon = np.full(len(series), np.nan)
    for i, s in enumerate(starts):  # later windows overwrite the overlap of the last one
        recon[s : s + L] = units[i]
    series_reconstruction_png(
        out / "series.png",
        series.target,
        recon,
        flagged=[(starts[i], starts[i] + L) for i in flagged],
        bounds=(data.train_end, data.valid_end),
        injected=data.anomalies,
        time=time,
        title=f"{series.source}: reconstruction of {L}-step windows; {len(flagged)} flagged "
        f"(error > {threshold:.3g}, training part's quantile)",
    )
    bad = worst(err, 6)
    windows_png(
        out / "worst.png",
        [
            (series.target[starts[i] : starts[i] + L], units[i], f"rows {starts[i]}-"
             f"{starts[i] + L - 1} ({label(starts[i])}), MSE {err[i]:.3g}")
            for i in bad
        ],
        title=f"{series.source}: the {len(bad)} worst-rebuilt windows",
    )  # fmt: skip
    parts = np.array([PARTS.index(data.part_of(s)) for s in starts])
    code_map_png(
        out / "codes.png",
        pca_2d(codes),
        parts,
        PARTS,
        title=f"{series.source}: window codes, first two principal components",
    )


def format_scores(scores: dict[str, Any]) -> str:
    """The scores as the CLI prints them (images: a table per part; series: the flags)."""
    lines = []
    if "anomalies" in scores:
        for part in ("valid", "test"):
            s = scores[part]
            lines.append(f"{part}: window MSE {s['mse']:.4g} ({s['windows']} windows)")
        a = scores["anomalies"]
        flagged = ", ".join(f"{part} {n}" for part, n in a["flagged"].items())
        lines.append(
            f"threshold {a['threshold']:.4g} (quantile {a['quantile']:g} of "
            f"{a['train_windows']} training windows); flagged of {a['scored_windows']} "
            f"non-overlapping windows: {flagged}"
        )
        if "injected" in a:
            lines.append(
                f"injected anomalies found: {a['injected_found']}/{len(a['injected'])}; "
                f"other flagged windows: {a['other_flags']}"
            )
        return "\n".join(lines)
    lines.append(f"{'part':<6} {'BCE/pixel':>9} {'floor':>7} {'MSE':>8} {'PSNR dB':>8}")
    for part in ("valid", "test"):
        if part in scores:
            s = scores[part]
            lines.append(
                f"{part:<6} {s['bce']:>9.4f} {s['bce_floor']:>7.4f} {s['mse']:>8.5f} "
                f"{s['psnr']:>8.2f}"
            )
    for part in ("valid", "test"):
        d = scores.get(part, {}).get("denoising")
        if d:
            lines.append(
                f"denoising ({part}, PSNR vs the clean images): noisy input "
                f"{d['psnr_noisy']:.2f} dB -> rebuilt {d['psnr_denoised']:.2f} dB "
                f"(clean input rebuilt: {d['psnr_clean_input']:.2f} dB)"
            )
    lines.append("(floor: the least BCE/pixel can be, the binary entropy of the grey pixels)")
    return "\n".join(lines)
