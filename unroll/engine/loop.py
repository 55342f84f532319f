"""The one training loop every recipe runs on.

`fit` is one explicit loop; a recipe hands it what differs:

    for epoch in start+1 .. epochs:
        set the learning rate (lr_at), on_epoch_start(epoch)     # e.g. zero the carried state
        for batch in batches(epoch):
            loss = step(batch)                                   # forward, backward, update
            total += loss                                        # on the device: no sync
        train metrics from total (one sync), evaluate(), divergence guard
        one metrics line (with the epoch's time), then the checkpoints (last, best) as one unit

A `step` is any callable ``step(batch) -> loss`` (a 0-d device tensor, detached): the
supervised step below (`supervised_step`), the language model's step with its carried state,
or a replay of a captured CUDA graph — the loop cannot tell them apart, which is what lets the
fast path plug in. Resuming is the `Run`'s business (`unroll.engine.run`): it restores model,
optimizer and RNG state and says from which epoch the loop starts, with which best so far; the
result equals an uninterrupted run.

Divergence: a non-finite training loss or metric (or a mean loss above the recipe's
`max_loss`) stops the run with a one-line `Diverged` error before that epoch's checkpoints
are written, so ``last``/``best`` keep the last good epoch.

Several processes (torchrun; `unroll.engine.distributed`): the step runs the model through
DDP (`supervised_step` wraps it), a batch may be a `Part` of a global batch (its loss is
weighted), ranks > 0 reseed their dropout streams at each epoch start, the epoch's loss sum is
reduced over the ranks (one collective per epoch), the validation metrics are rank 0's on every
rank (so all take the same decisions: divergence, best epoch), the speed counts every rank's
items, and only rank 0 draws progress and writes (the `Run` does nothing on the others).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from unroll.engine import distributed
from unroll.engine.checkpoint import fault_point
from unroll.engine.distributed import Part
from unroll.engine.progress import Progress
from unroll.errors import UserError

if TYPE_CHECKING:
    from unroll.engine.run import Run

Batch = Any
Step = Callable[[Batch], torch.Tensor]


class Diverged(UserError):
    """Training produced a non-finite loss or metric (the run stops; checkpoints are kept)."""


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


def decayed_lr(lr: float, decay: float, after: int, epoch: int) -> float:
    """``lr * decay ** max(epoch - after, 0)``: the full rate for `after` epochs, then decayed
    once per epoch (epoch counted from 1). Zaremba et al. 2014's schedule; ``after=1`` decays
    from the second epoch on."""
    return lr * decay ** max(epoch - after, 0)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate between epochs; an lr held as a tensor (as a captured CUDA-graph
    step needs) is filled in place, so the captured step sees the new value."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def supervised_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    clip: float = 0.0,
) -> Step:
    """The minibatch step: zero grads, ``loss_fn(model, batch)`` (a mean over the batch's
    rows), backward, clip to global norm `clip` (0 = off), optimizer step; returns the detached
    loss.

    Under torchrun the loss is computed inside DDP's forward (`distributed.ddp` of a module
    that calls ``loss_fn(model, batch)``), so whatever `loss_fn` calls on `model` — forward or
    another method — is synchronised, and the backward averages the gradients over the ranks.
    A `Part` batch (`distributed.shard_batches`) has its loss multiplied by its weight."""
    params = [p for p in model.parameters() if p.requires_grad]
    net = distributed.ddp(_LossOf(model, loss_fn)) if distributed.world().size > 1 else None

    def step(batch: Batch) -> torch.Tensor:
        weight = 1.0
        if isinstance(batch, Part):
            batch, weight = batch
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model, batch) if net is None else net(batch)
        if weight != 1.0:
            loss = loss * weight
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(params, clip, foreach=True)
        optimizer.step()
        return loss.detach()

    return step


class _LossOf(nn.Module):
    """``loss_fn(model, batch)`` as a module's forward: what DDP wraps (see supervised_step)."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Batch], torch.Tensor]):
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


@dataclass
class FitResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best: float | None = None
    best_epoch: int | None = None


def _mean_loss(total: float, steps: int) -> dict[str, float]:
    return {"train_loss": total / max(steps, 1)}


def fit(
    run: Run | None,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    step: Step,
    batches: Callable[[int], Iterable[Batch]],
    num_batches: int,
    epochs: int,
    evaluate: Callable[[], dict[str, float]],
    select: str,
    mode: Literal["min", "max"] = "min",
    lr_at: Callable[[int], float] | None = None,
    on_epoch_start: Callable[[int], None] | None = None,
    train_metrics: Callable[[float, int], dict[str, float]] = _mean_loss,
    bar_values: Callable[[torch.Tensor, int], dict[str, Any]] | None = None,
    items_per_batch: int | None = None,
    items: str = "items",
    max_loss: float = math.inf,
    checkpoint_extra: Callable[[], dict[str, Any]] | None = None,
    quiet: bool = False,
    desc: str = "train",
) -> FitResult:
    """Train `model` for epochs ``run.start_epoch + 1 .. epochs`` (see the module docstring).

    step(batch) -> the step's loss (0-d, detached, on the device); batches(epoch) -> the
    epoch's batches, `num_batches` of them (the progress bar's length); evaluate() -> the
    validation metrics (the model is in eval mode, under no_grad), which hold `select`, the
    metric that picks the best epoch (`mode` min or max). train_metrics(loss_sum, steps) -> the
    training metrics of the epoch (default: the mean loss); bar_values(loss_sum, steps) -> what
    the progress bar shows (read only when it draws). `items_per_batch` (e.g. B·T words, per
    process) adds the speed, ``<items>_per_sec`` (e.g. ``words_per_sec``, of all processes).
    checkpoint_extra() -> the recipe's entries of each checkpoint (vocabulary, scaler ...).
    With `run` None nothing is written (e.g. a benchmark). `max_loss`: a mean training loss
    above it counts as divergence (e.g. a cross-entropy whose exp overflows: the perplexity
    overflow of a classifier).
    Under torchrun every rank calls `fit` with its own shard (see the module docstring).
    """
    world = distributed.world()
    seed = int(getattr(run.config, "seed", 0)) if run is not None else 0
    start_epoch = run.start_epoch if run is not None else 0
    result = FitResult(
        best=run.best if run is not None else None,
        best_epoch=run.best_epoch if run is not None else None,
    )
    log = run.say if run is not None else (lambda text: None)
    mark = time.perf_counter()  # the end of the previous epoch's checkpoints (in this process)
    for epoch in range(start_epoch + 1, epochs + 1):
        if lr_at is not None:
            set_lr(optimizer, lr_at(epoch))
        if on_epoch_start is not None:
            on_epoch_start(epoch)
        distributed.reseed(seed, epoch)
        fault_point(f"epoch-start-rank{world.rank}", epoch)  # (tests: a rank that dies)
        model.train()
        bar = Progress(
            num_batches,
            desc=f"{desc} {epoch}/{epochs}",
            stream=run.stream if run is not None else None,
            enabled=not quiet and world.main,
        )
        start = time.perf_counter()
        total = torch.zeros((), dtype=torch.float64, device=_device_of(model))
        steps = 0
        for batch in batches(epoch):
            total += step(batch)
            steps += 1
            if bar.due():  # only here is the loss read (a sync)
                bar.update(
                    1, **(bar_values(total, steps) if bar_values else {"loss": total / steps})
                )
            else:
                bar.update(1)
        bar.close()
        record: dict[str, Any] = {"epoch": epoch, "lr": _lr(optimizer)}
        loss_sum = distributed.epoch_loss_sum(float(total), steps)  # one sync per epoch
        seconds = time.perf_counter() - start  # after the sync: the device's queue counts
        record.update(train_metrics(loss_sum, steps))
        _guard(record, epoch, run)
        mean = loss_sum / max(steps, 1)
        if mean > max_loss:
            raise Diverged(
                f"epoch {epoch}: mean training loss {mean:.4g} is above {max_loss:.4g} "
                f"(training diverged{_kept(run)}); try a lower lr or clip"
            )
        model.eval()
        with torch.no_grad():
            valid = distributed.broadcast_object(evaluate())  # the same decisions everywhere
        if select not in valid:
            raise ValueError(f"fit: evaluate() returned {sorted(valid)}, missing {select!r}")
        record.update({k: float(v) for k, v in valid.items()})
        _guard(record, epoch, run)
        record["seconds"] = seconds
        if items_per_batch:  # every rank's items
            record[f"{items}_per_sec"] = world.size * steps * items_per_batch / max(seconds, 1e-9)
        # The epoch's wall-clock time, validation and the previous epoch's checkpoints included:
        # summed over the record, the run's time however many processes ran it (RunRecord).
        record["wall_seconds"] = time.perf_counter() - mark
        value = record[select]
        improved = result.best is None or (
            value < result.best if mode == "min" else value > result.best
        )
        if improved:
            result.best, result.best_epoch = value, epoch
        result.history.append(record)
        if run is not None:
            # The metrics line first: a kill before the checkpoints are written leaves a line
            # that resuming drops (the log is cut back to the checkpoint's epoch).
            try:
                run.metrics.log(**record)
                run.save_epoch(
                    {
                        **(checkpoint_extra() if checkpoint_extra else {}),
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "epoch": epoch,
                        "best": result.best,
                        "best_epoch": result.best_epoch,
                        "select": select,
                    },
                    improved,
                )
            except UserError as e:  # a write that failed (disk full): the run stops here
                raise UserError(
                    f"{e}; {run.kept()} (make room, then continue with --resume {run.path})"
                ) from None
        log(format_epoch(record, epochs, items))
        mark = time.perf_counter()
    return result


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _lr(optimizer: torch.optim.Optimizer) -> float:
    lr = optimizer.param_groups[0]["lr"]
    return float(lr)


def _guard(record: dict[str, Any], epoch: int, run: Run | None) -> None:
    bad = {k: v for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)}
    if not bad:
        return
    what = ", ".join(f"{k} {v}" for k, v in bad.items())
    raise Diverged(f"epoch {epoch}: {what} (training diverged{_kept(run)}); try a lower lr or clip")


def _kept(run: Run | None) -> str:
    if run is None:
        return ""
    return f"; {run.kept()}, results.json says why"


def format_epoch(record: dict[str, Any], epochs: int, items: str = "items") -> str:
    """``epoch 3/13: lr 1  train_ppl 120.3  valid_ppl 130.2  (6100 words/s, 12.3 s)``."""
    speed_key = f"{items}_per_sec"
    parts = []
    for k, v in record.items():
        if k in ("epoch", "seconds", "wall_seconds", speed_key):
            continue
        parts.append(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}")
    speed = f"{record[speed_key]:.0f} {items}/s, " if speed_key in record else ""
    return (
        f"epoch {record['epoch']}/{epochs}: "
        + "  ".join(parts)
        + f"  ({speed}{record['seconds']:.1f} s)"
    )
