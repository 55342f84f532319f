"""Training an image classifier on the engine's loop; ``--baselines`` trains three in a row.

The data (see `unroll.data.images`): the training set is split once, deterministically
(``split_seed``), into train and validation; the validation accuracy picks the best epoch;
the test set is used once, at the end, for the reported figure. Besides the engine's files,
each run directory holds::

    results.json     test accuracy, confusion matrix, best epoch, time, parameter count
    confusion.txt    the confusion matrix as text (rows: true class, columns: predicted)
    confusion.png    the same as a figure (skipped with a note when matplotlib is missing)

Under torchrun each rank trains on its part of every global batch (`shard_batches`: N
processes with batch B train exactly as one with batch N·B), validates its share of the
validation set (sums reduced over the ranks); rank 0 alone scores the test set and writes.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import nn

from unroll.data.images import ImageDataset, load_images, train_valid_split
from unroll.engine import distributed
from unroll.engine.device import num_threads, resolve_device
from unroll.engine.loop import decayed_lr, fit, make_optimizer, supervised_step
from unroll.engine.model_check import check_memory, check_resumable
from unroll.engine.recipe import Result
from unroll.engine.run import Run, resume_point
from unroll.engine.rundir import check_out_path, default_run_dir, dumps
from unroll.engine.seed import seed_everything
from unroll.errors import UserError
from unroll.fileio import atomic_write_text
from unroll.metrics.classification import accuracy, confusion_matrix, format_confusion
from unroll.recipes.classify.config import BASELINES, RECIPE, RNN_MODELS, ClassifyConfig
from unroll.recipes.classify.evaluate import build_model, check_saved_data, inputs, predict


@dataclass
class ClassifyResult(Result):
    run_dir: Path
    model: str
    test_accuracy: float
    confusion_matrix: list[list[int]]
    classes: tuple[str, ...]
    best_epoch: int | None
    best_valid_accuracy: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    parameters: int = 0

    def summary(self) -> str:
        return (
            f"test accuracy {self.test_accuracy:.4f}, best epoch {self.best_epoch} (valid "
            f"{self.best_valid_accuracy or 0:.4f}), {self.seconds:.0f} s training, "
            f"{self.parameters} parameters\n"
            + format_confusion(self.confusion_matrix, self.classes).rstrip("\n")
            + f"\nrun directory: {self.run_dir}"
        )


@dataclass
class _Splits:
    """Train/valid/test tensors on the training device (images stay uint8 until batched)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    valid_x: torch.Tensor
    valid_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


def _split(config: ClassifyConfig, data: ImageDataset, device: torch.device) -> _Splits:
    train_idx, valid_idx = train_valid_split(
        len(data.train_images), config.valid_fraction, config.split_seed
    )
    if config.max_train:
        train_idx = train_idx[: config.max_train]
    return _Splits(
        train_x=data.train_images[train_idx].to(device),
        train_y=data.train_labels[train_idx].to(device),
        valid_x=data.train_images[valid_idx].to(device),
        valid_y=data.train_labels[valid_idx].to(device),
        test_x=data.test_images.to(device),
        test_y=data.test_labels.to(device),
    )


def train(
    config: ClassifyConfig | None = None,
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    data: ImageDataset | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
    stream: TextIO | None = None,
) -> ClassifyResult | None:
    """Train one classifier into a new run directory `out` (or continue the run `resume`, whose
    config `config` may change only in its RESUMABLE fields), then score it on the test set
    (None on the ranks other than 0 of a torchrun job).

    Everything is validated (config, device, data files, model shape) before the run
    directory is created. `data` may be passed in to skip loading (``--baselines`` loads once).
    """
    point = None
    if resume is not None:
        point = resume_point(RECIPE, resume, config if config is not None else {})
        config = point.config
    config = ClassifyConfig() if config is None else config
    config.validate()
    device = resolve_device(config.device)
    if data is None:
        data = load_images(config.data, progress=not quiet)
    height, width = data.image_shape

    def build() -> nn.Module:
        return build_model(config, height, width, len(data.classes))

    check_memory(build, "hidden_size/num_layers/cnn_fc")  # (and a model that cannot be built)
    if point is not None and point.checkpoint is not None:
        last = str(point.run_dir.checkpoint("last"))
        check_saved_data(point.checkpoint, last)
        saved_shape = list(point.checkpoint["image_shape"])
        if list(data.image_shape) != saved_shape:
            raise UserError(
                f"--resume {resume}: data {config.data} has {data.image_shape} images, the run "
                f"was trained on {tuple(saved_shape)}"
            )
        check_resumable(build, point.checkpoint, last)
    splits = _split(config, data, device)  # a split that leaves no training examples: now
    with (
        num_threads(config.threads),
        Run.start(
            RECIPE,
            config,
            device=device,
            out=out,
            resume=point,
            argv=argv,
            quiet=quiet,
            stream=stream,
            extra_meta={"data_source": data.source},
        ) as run,
    ):
        return _train(run, config, data, splits, device)


def _train(
    run: Run, config: ClassifyConfig, data: ImageDataset, splits: _Splits, device: torch.device
) -> ClassifyResult | None:
    height, width = data.image_shape
    seed_everything(config.seed)
    model = build_model(config, height, width, len(data.classes)).to(device)
    optimizer = make_optimizer(
        config.optimizer, model.parameters(), config.lr, config.momentum, config.weight_decay
    )
    run.restore(model, optimizer)
    run.say(
        f"{config.model} on {data.name} ({len(splits.train_x)} train, {len(splits.valid_x)} "
        f"valid, {len(splits.test_x)} test, {height}x{width})"
    )
    n = len(splits.train_x)
    B = config.batch_size

    def batches(epoch: int):
        # The shuffling order is a function of the epoch alone (its own generator), so a
        # resumed run sees the same batches as an uninterrupted one.
        order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed + epoch))
        yield from distributed.shard_batches(
            order.to(device),
            B,
            lambda idx: (inputs(splits.train_x[idx], data.max_value), splits.train_y[idx]),
        )

    def loss_fn(model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def evaluate() -> dict[str, float]:
        # Summed on the device, read once: one host sync per evaluation (and, under torchrun,
        # one reduction of the ranks' sums over their shares of the validation set).
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        mine = distributed.share(len(splits.valid_x))
        valid_x, valid_y = splits.valid_x[mine], splits.valid_y[mine]
        for i in range(0, len(valid_x), config.eval_batch_size):
            x = inputs(valid_x[i : i + config.eval_batch_size], data.max_value)
            y = valid_y[i : i + config.eval_batch_size]
            logits = model(x)
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
        loss_sum, correct = distributed.all_sum(loss_sum, correct)
        count = len(splits.valid_x)
        return {"valid_loss": loss_sum / count, "valid_accuracy": correct / count}

    height, width = data.image_shape
    fit(
        run,
        model,
        optimizer,
        step=supervised_step(model, optimizer, loss_fn, config.clip),
        batches=batches,
        num_batches=distributed.batch_count(n, B),
        epochs=config.epochs,
        evaluate=evaluate,
        select="valid_accuracy",
        mode="max",
        lr_at=lambda e: decayed_lr(config.lr, config.lr_decay, config.lr_decay_after, e),
        # A mean cross-entropy whose exp overflows: the classifier's "perplexity overflow".
        max_loss=math.log(sys.float_info.max),
        checkpoint_extra=lambda: {
            "classes": list(data.classes),
            "image_shape": [height, width],
            "max_value": data.max_value,
            "data_name": data.name,
        },
        quiet=run.quiet,
        desc=config.model,
    )
    if not run.main:
        return None  # the test evaluation is rank 0's: it alone has the checkpoints
    return _finish(run, config, data, splits, model)


def _finish(
    run: Run,
    config: ClassifyConfig,
    data: ImageDataset,
    splits: _Splits,
    model: nn.Module,
) -> ClassifyResult:
    """Score the best checkpoint on the test set; write results.json (history and time: the
    run's whole record) and the confusion files."""
    ckpt = run.load_best(model)
    record = run.record()
    predicted = predict(model, splits.test_x, data.max_value, config.eval_batch_size)
    k = len(data.classes)
    matrix = confusion_matrix(splits.test_y, predicted, k).cpu().tolist()
    acc = accuracy(matrix)
    parameters = sum(p.numel() for p in model.parameters())
    atomic_write_text(run.path / "confusion.txt", format_confusion(matrix, data.classes))
    from unroll.plotting import MISSING_MATPLOTLIB, confusion_matrix_png

    png = confusion_matrix_png(
        run.path / "confusion.png",
        matrix,
        data.classes,
        title=f"{config.model} on {data.name}: test accuracy {acc:.4f}",
    )
    if png is None:
        run.say(f"note: confusion.png skipped: {MISSING_MATPLOTLIB}")
    result = ClassifyResult(
        run_dir=run.path,
        model=config.model,
        test_accuracy=acc,
        confusion_matrix=matrix,
        classes=tuple(data.classes),
        best_epoch=ckpt.get("best_epoch"),
        best_valid_accuracy=ckpt.get("best"),
        history=record.history,
        seconds=record.seconds,
        parameters=parameters,
    )
    run.write_results(
        {
            **result.to_dict(),
            "data": data.name,
            "sequence": config.sequence if config.model in RNN_MODELS else None,
            "test_correct": sum(matrix[i][i] for i in range(k)),
            "test_examples": len(splits.test_y),
            "epochs": config.epochs,
        }
    )
    return result


def train_baselines(
    config: ClassifyConfig,
    out: str | Path | None = None,
    *,
    data: ImageDataset | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
    stream: TextIO | None = None,
) -> list[ClassifyResult]:
    """Softmax regression, the small CNN and the recurrent model, same data and budget.

    Each gets its own run directory ``OUT/<model>``; ``OUT/comparison.{txt,json}`` holds the
    table. `config.model` names the recurrent model (a baseline name there means lstm).
    """
    config.validate()
    rnn_model = config.model if config.model in RNN_MODELS else "lstm"
    out = distributed.from_main(  # rank 0 names it (the time stamp) and checks it
        lambda: check_out_path(out if out is not None else default_run_dir("classify-baselines"))
    )
    resolve_device(config.device)
    if data is None:
        data = load_images(config.data, progress=not quiet)
    names = (*BASELINES, rnn_model)
    for name in names:  # fail before any training if one of them cannot be built
        cfg = dataclasses.replace(config, model=name)
        check_memory(
            lambda cfg=cfg: build_model(cfg, *data.image_shape, len(data.classes)),
            "hidden_size/num_layers/cnn_fc",
        )
    results = []
    for name in names:
        if not quiet:  # progress goes to stderr, as every run's lines do
            print(f"== {name} ==", file=stream if stream is not None else sys.stderr, flush=True)
        cfg = dataclasses.replace(config, model=name)
        results.append(train(cfg, out / name, data=data, quiet=quiet, argv=argv, stream=stream))
    if not distributed.world().main:
        return []  # the table is rank 0's
    table = format_comparison(results, config, data.name)
    atomic_write_text(out / "comparison.txt", table)
    rows = [
        {
            "model": r.model,
            "test_accuracy": r.test_accuracy,
            "best_valid_accuracy": r.best_valid_accuracy,
            "best_epoch": r.best_epoch,
            "train_seconds": r.seconds,
            "parameters": r.parameters,
            "run_dir": str(r.run_dir),
        }
        for r in results
    ]
    atomic_write_text(out / "comparison.json", dumps(rows))
    return results


def format_comparison(results: Sequence[ClassifyResult], config: ClassifyConfig, data: str) -> str:
    lines = [
        f"{data}, {config.epochs} epochs, batch {config.batch_size}, {config.optimizer} "
        f"lr {config.lr:g}",
        f"{'model':<10} {'test acc':>9} {'valid acc':>9} {'params':>9} {'seconds':>8}",
    ]
    for r in results:
        name = f"{r.model}" + (f"/{config.sequence}" if r.model in RNN_MODELS else "")
        lines.append(
            f"{name:<10} {r.test_accuracy:>9.4f} {r.best_valid_accuracy or 0:>9.4f} "
            f"{r.parameters:>9} {r.seconds:>8.0f}"
        )
    return "\n".join(lines) + "\n"
