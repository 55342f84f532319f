"""The minibatch training loop shared by the supervised recipes (classification, forecasting).

One explicit loop: for each epoch, train over minibatches (loss accumulated on the device, read
only when the progress bar draws and at epoch end), clip by global norm, evaluate, log one
metrics line, and write ``last`` (and, when the selection metric improved, ``best``) checkpoints
atomically. A recipe supplies what differs: how batches are made, the loss, the evaluation,
and the recipe-specific checkpoint entries (kind, config, scaler, class names ...).

Resuming: load ``last``, restore model/optimizer/RNG state, and call `fit` with
``start_epoch`` = the checkpoint's epoch and ``best`` = its best value; the result is the same
as an uninterrupted run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from unroll.errors import UserError
from unroll.engine.checkpoint import save_checkpoint
from unroll.engine.metrics import MetricsLogger
from unroll.engine.progress import Progress
from unroll.engine.rundir import RunDir
from unroll.engine.seed import get_rng_state

Batch = tuple[torch.Tensor, ...]


def make_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    """``adam`` or ``sgd`` (with momentum) — the two the classic tutorials use."""
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise UserError(f"optimizer={name!r}: expected adam or sgd")


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int | None = None


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    train_batches: Callable[[int], Iterable[Batch]],
    num_batches: int,
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    evaluate: Callable[[nn.Module], dict[str, float]],
    epochs: int,
    select: str,
    mode: Literal["min", "max"] = "min",
    clip: float | None = None,
    run: RunDir | None = None,
    metrics: MetricsLogger | None = None,
    checkpoint_entries: Callable[[], dict[str, Any]] | None = None,
    start_epoch: int = 0,
    best: float | None = None,
    best_epoch: int | None = None,
    progress: bool = True,
    desc: str = "train",
) -> FitResult:
    """Train `model` for epochs ``start_epoch+1 .. epochs``.

    train_batches(epoch) -> iterable of tensors tuples already on the model's device;
    loss_fn(model, batch) -> mean loss of the batch (a 0-d tensor);
    evaluate(model) -> validation metrics, which must contain `select`;
    checkpoint_entries() -> at least ``kind`` and ``config`` for the checkpoints.
    """
    result = FitResult(best=best, best_epoch=best_epoch)
    for epoch in range(start_epoch + 1, epochs + 1):
        model.train()
        start = time.perf_counter()
        total = None  # summed on the device: no host sync per step
        seen = 0
        bar = Progress(num_batches, desc=f"{desc} {epoch}/{epochs}", enabled=progress)
        for batch in train_batches(epoch):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), clip, foreach=True)
            optimizer.step()
            detached = loss.detach()
            total = detached if total is None else total + detached
            seen += 1
            if bar.due():
                bar.update(1, loss=total / seen)
            else:
                bar.update(1)
        bar.close()
        train_loss = (total / max(seen, 1)).item() if total is not None else math.nan
        model.eval()
        with torch.no_grad():
            valid = evaluate(model)
        if select not in valid:
            raise ValueError(f"fit: evaluate() returned {sorted(valid)}, missing {select!r}")
        value = float(valid[select])
        improved = result.best is None or (
            value < result.best if mode == "min" else value > result.best
        )
        if improved:
            result.best, result.best_epoch = value, epoch
        record = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            **{k: float(v) for k, v in valid.items()},
            "seconds": time.perf_counter() - start,
        }
        result.history.append(record)
        if metrics is not None:
            metrics.log(**record)
        if run is not None:
            payload = {
                **(checkpoint_entries() if checkpoint_entries else {}),
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": get_rng_state(),
                "epoch": epoch,
                "best": result.best,
                "best_epoch": result.best_epoch,
            }
            save_checkpoint(run.checkpoint("last"), payload)
            if improved:
                save_checkpoint(run.checkpoint("best"), payload)
    return result
