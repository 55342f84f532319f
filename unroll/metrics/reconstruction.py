"""Reconstruction scores: per-pixel binary cross-entropy, MSE, PSNR, per-example errors, and
the anomaly threshold.

Conventions: `target` and `recon` are batches ``[B, ...]`` (an image ``[B, H, W]``, a window
``[B, T, C]``); a score "per example" is ``[B]``, the mean over every element of one example
(over its valid steps when `lengths` is given for ``[B, T, C]`` sequences). Images are in
[0, 1] (pixel / max value), as the Keras examples scale them.

- `bce_per_pixel`: ``-[x log p + (1-x) log(1-p)]`` averaged over pixels, from the logits
  (``p = sigmoid(logit)``), which is what Keras reports as ``binary_crossentropy`` for a
  sigmoid output. With grey targets (0 < x < 1) it cannot reach 0: its floor is the binary
  entropy of the targets (`binary_entropy`), reached when p = x.
- `psnr`: ``10 log10(max² / MSE)`` per example (dB), averaged over examples by the callers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _per_example(values: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``[B, ...]`` per example -> ``[B]``; with `lengths`, over the valid steps of a
    ``[B, T, C]`` batch only (steps ``t >= lengths[b]`` are padding)."""
    if lengths is None:
        return values.flatten(1).mean(dim=1)
    if values.dim() != 3:
        raise ValueError(f"lengths need [B, T, C] values, got {tuple(values.shape)}")
    B, T, C = values.shape
    lengths = torch.as_tensor(lengths, device=values.device)
    valid = torch.arange(T, device=values.device)[None, :] < lengths[:, None]  # [B, T]
    summed = (values * valid[:, :, None]).sum(dim=(1, 2))
    return summed / (lengths.to(values.dtype) * C)


def bce_per_pixel(
    logits: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """``[B]`` mean binary cross-entropy per pixel of each example (natural log)."""
    return _per_example(
        F.binary_cross_entropy_with_logits(logits, target, reduction="none"), lengths
    )


def mse_per_example(
    recon: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor | None = None
) -> torch.Tensor:
    """``[B]`` mean squared error per element of each example."""
    return _per_example((recon - target) ** 2, lengths)


def psnr(
    recon: torch.Tensor,
    target: torch.Tensor,
    max_value: float = 1.0,
    lengths: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[B]`` peak signal-to-noise ratio in dB: ``10 log10(max² / MSE)`` (inf when equal)."""
    mse = mse_per_example(recon, target, lengths)
    return 10.0 * torch.log10(max_value**2 / mse)


def binary_entropy(target: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
    """``[B]`` mean binary entropy of the targets: the least `bce_per_pixel` can be."""
    x = target.clamp(0.0, 1.0)
    # 0·log 0 = 0: xlogy is 0 where its first argument is 0.
    h = -(torch.special.xlogy(x, x) + torch.special.xlogy(1 - x, 1 - x))
    return _per_example(h, lengths)


def anomaly_threshold(train_errors: np.ndarray | torch.Tensor, quantile: float) -> float:
    """The `quantile` of the training part's errors: an error above it is flagged.

    Uses the "higher" rule (an observed error, never an interpolation below it), so with
    quantile 0.99 at most 1% of the training errors lie above the threshold.
    """
    errors = np.asarray(torch.as_tensor(train_errors).detach().cpu(), dtype=np.float64)
    if errors.size == 0:
        raise ValueError("anomaly_threshold: no training errors")
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"anomaly_threshold: quantile {quantile} not in (0, 1]")
    return float(np.quantile(errors, quantile, method="higher"))


def worst(errors: torch.Tensor | np.ndarray, k: int) -> list[int]:
    """Indices of the `k` largest errors, largest first (ties: the earlier index first)."""
    e = np.asarray(torch.as_tensor(errors).detach().cpu(), dtype=np.float64)
    order = np.argsort(-e, kind="stable")
    return [int(i) for i in order[: max(0, k)]]


def mean_psnr(values: torch.Tensor) -> float:
    """The mean of per-example PSNRs (dB), ignoring exact reconstructions (inf)."""
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else math.inf
