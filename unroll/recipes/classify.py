"""Image classification with a recurrent net reading the image as a sequence, plus baselines.

``unroll classify`` trains one model (LSTM/GRU/RNN/IRNN on rows, pixels or permuted pixels;
softmax regression or a small CNN as baselines) on IDX images or scikit-learn's digits;
``--baselines`` trains softmax, cnn and the recurrent model in one command and prints a
comparison table. ``unroll classify-eval RUN_DIR`` re-scores a run's checkpoint.

The data (see `unroll.data.images`): the training set is split once, deterministically
(``split_seed``), into train and validation; the validation accuracy picks the best epoch;
the test set is used once, at the end, for the reported figure. Each run directory holds::

    config.json command.txt meta.json metrics.jsonl checkpoints/{last,best}.pt
    results.json     test accuracy, confusion matrix, best epoch, time, parameter count
    confusion.txt    the confusion matrix as text (rows: true class, columns: predicted)
    confusion.png    the same as a figure (skipped with a note when matplotlib is missing)

The training loop itself is `unroll.engine.supervised.fit`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from unroll.config import apply_overrides, config_from_dict, field_types
from unroll.data.images import ImageDataset, load_images, train_valid_split
from unroll.errors import UserError
from unroll.models.classifier import MODEL_NAMES, build_classifier
from unroll.plotting import MISSING_MATPLOTLIB, confusion_matrix_png
from unroll.engine import (
    MetricsLogger,
    RunDir,
    load_checkpoint,
    resolve_device,
    seed_everything,
    set_rng_state,
)
from unroll.engine.checkpoint import atomic_write_text, find_checkpoint
from unroll.engine.device import num_threads
from unroll.engine.rundir import default_run_dir
from unroll.engine.supervised import fit, make_optimizer

KIND = "unroll.classifier"
RNN_MODELS = ("lstm", "gru", "rnn", "irnn")
BASELINES = ("softmax", "cnn")


@dataclass
class ClassifyConfig:
    data: str = "digits"  # digits | mnist | fashion-mnist | a directory of IDX files
    model: Literal["lstm", "gru", "rnn", "irnn", "softmax", "cnn"] = "lstm"
    sequence: Literal["rows", "pixels", "permuted"] = "rows"
    permutation_seed: int = 0
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0  # between recurrent layers (num_layers > 1)
    readout: Literal["last", "mean"] = "last"  # last hidden state, or mean of outputs over time
    cnn_fc: int = 1024
    cnn_dropout: float = 0.5
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 2e-3
    lr_decay: float = 1.0  # the learning rate of epoch e is lr * lr_decay ** (e - 1)
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    clip: float = 1.0  # gradient clipping by global norm; 0 = off
    batch_size: int = 32  # for the embedded digits; the Fashion-MNIST presets set their own
    eval_batch_size: int = 1000
    epochs: int = 10
    valid_fraction: float = 0.1  # of the training set, split with split_seed
    split_seed: int = 0
    max_train: int = 0  # use only this many training examples (0 = all); for quick trials
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # torch.set_num_threads for this process; 0 = leave torch's default
    tensorboard: bool = True


# Presets are data: overrides of the defaults, named after what they reproduce.
PRESETS: dict[str, dict[str, Any]] = {
    "digits-rows-lstm": {"data": "digits", "model": "lstm", "sequence": "rows"},
    "fashion-rows-lstm": {
        "data": "fashion-mnist",
        "model": "lstm",
        "sequence": "rows",
        "hidden_size": 128,
        "batch_size": 64,
        "lr": 2e-3,
        "lr_decay": 0.85,
        "epochs": 15,
    },
    "fashion-cnn": {
        "data": "fashion-mnist",
        "model": "cnn",
        "batch_size": 128,
        "lr": 1e-3,
        "lr_decay": 0.8,
        "epochs": 8,
    },
    "fashion-softmax": {
        "data": "fashion-mnist",
        "model": "softmax",
        "batch_size": 128,
        "lr": 2e-3,
        "lr_decay": 0.8,
        "epochs": 10,
    },
}

# Keys a resumed run may change; everything else is fixed by the run's config.json.
RESUMABLE_KEYS = ("epochs", "device", "threads", "tensorboard")


@dataclass
class ClassifyResult:
    run_dir: Path
    model: str
    test_accuracy: float
    confusion: list[list[int]]
    classes: tuple[str, ...]
    best_epoch: int | None
    best_valid_accuracy: float | None
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    parameters: int = 0


# -- config -----------------------------------------------------------------------------------


def make_config(
    preset: str | None = None, overrides: Sequence[str] | dict[str, Any] = ()
) -> ClassifyConfig:
    """Defaults, then a preset, then ``key=value`` overrides, all type-checked."""
    config = ClassifyConfig()
    if preset is not None:
        if preset not in PRESETS:
            raise UserError(f"--preset {preset!r}: expected one of {', '.join(PRESETS)}")
        config = apply_overrides(config, PRESETS[preset])
    config = apply_overrides(config, overrides if isinstance(overrides, dict) else list(overrides))
    check_config(config)
    return config


def check_config(config: ClassifyConfig) -> None:
    """Range checks the types alone cannot express; each failure names the key."""
    checks = [
        (config.model in MODEL_NAMES, f"model={config.model!r}: expected one of {MODEL_NAMES}"),
        (config.epochs >= 1, f"epochs={config.epochs}: expected at least 1"),
        (config.batch_size >= 1, f"batch_size={config.batch_size}: expected at least 1"),
        (config.eval_batch_size >= 1, f"eval_batch_size={config.eval_batch_size}: expected >= 1"),
        (config.hidden_size >= 1, f"hidden_size={config.hidden_size}: expected at least 1"),
        (config.num_layers >= 1, f"num_layers={config.num_layers}: expected at least 1"),
        (config.cnn_fc >= 1, f"cnn_fc={config.cnn_fc}: expected at least 1"),
        (0.0 <= config.dropout < 1.0, f"dropout={config.dropout}: expected 0 <= dropout < 1"),
        (0.0 <= config.cnn_dropout < 1.0, f"cnn_dropout={config.cnn_dropout}: expected [0, 1)"),
        (config.lr > 0 and math.isfinite(config.lr), f"lr={config.lr}: expected > 0"),
        (config.lr_decay > 0, f"lr_decay={config.lr_decay}: expected > 0"),
        (config.clip >= 0, f"clip={config.clip}: expected >= 0 (0 = off)"),
        (config.threads >= 0, f"threads={config.threads}: expected >= 0 (0 = default)"),
        (config.max_train >= 0, f"max_train={config.max_train}: expected >= 0 (0 = all)"),
        (
            0.0 < config.valid_fraction < 1.0,
            f"valid_fraction={config.valid_fraction}: expected between 0 and 1",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise UserError(message)


# -- data and model ---------------------------------------------------------------------------


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


def _build_model(config: ClassifyConfig, height: int, width: int, num_classes: int) -> nn.Module:
    try:
        return build_classifier(
            config.model,
            height,
            width,
            num_classes,
            sequence=config.sequence,
            permutation_seed=config.permutation_seed,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            bidirectional=config.bidirectional,
            dropout=config.dropout,
            readout=config.readout,
            cnn_fc=config.cnn_fc,
            cnn_dropout=config.cnn_dropout,
        )
    except ValueError as e:  # e.g. images too small for the CNN's two poolings
        raise UserError(f"model={config.model}: {e}") from None


def _inputs(images: torch.Tensor, max_value: float) -> torch.Tensor:
    return images.float() / max_value  # uint8 [B, H, W] -> float in [0, 1]


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, max_value: float, batch_size: int = 1000
) -> torch.Tensor:
    """Predicted class ``[N]`` for uint8 images ``[N, H, W]`` (in eval mode, by batches)."""
    was_training = model.training
    model.eval()
    out = [
        model(_inputs(images[i : i + batch_size], max_value)).argmax(dim=1)
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=images.device)


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, k: int) -> torch.Tensor:
    """``[K, K]`` counts: row = true class, column = predicted class."""
    return torch.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)


def format_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str]) -> str:
    """The confusion matrix as aligned text with a legend of the class names."""
    k = len(classes)
    width = max(len(str(int(v))) for row in matrix for v in row)
    width = max(width, len(str(k - 1)), 3)
    head = "true\\pred " + " ".join(f"{j:>{width}}" for j in range(k))
    lines = [head]
    for i, row in enumerate(matrix):
        lines.append(f"{i:>9} " + " ".join(f"{int(v):>{width}}" for v in row))
    legend = ", ".join(f"{i}={name}" for i, name in enumerate(classes))
    return "\n".join(lines) + f"\nclasses: {legend}\n"


# -- training ---------------------------------------------------------------------------------


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(message, flush=True)


def _checkpoint_entries(config: ClassifyConfig, data: ImageDataset) -> dict[str, Any]:
    height, width = data.image_shape
    return {
        "kind": KIND,
        "config": dataclasses.asdict(config),
        "classes": list(data.classes),
        "image_shape": [height, width],
        "max_value": data.max_value,
        "data_name": data.name,
    }


def _train_loop(
    config: ClassifyConfig,
    data: ImageDataset,
    splits: _Splits,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    run: RunDir,
    metrics: MetricsLogger,
    *,
    start_epoch: int = 0,
    best: float | None = None,
    best_epoch: int | None = None,
    progress: bool = True,
    quiet: bool = False,
):
    n = len(splits.train_x)
    num_batches = math.ceil(n / config.batch_size)
    max_value = data.max_value
    device = splits.train_x.device

    def train_batches(epoch: int):
        # The epoch's learning rate is a function of the epoch alone, so a resumed run
        # follows the same schedule; so is the shuffling order (its own generator).
        for group in optimizer.param_groups:
            group["lr"] = config.lr * config.lr_decay ** (epoch - 1)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed + epoch))
        order = order.to(device)
        for i in range(num_batches):
            idx = order[i * config.batch_size : (i + 1) * config.batch_size]
            yield _inputs(splits.train_x[idx], max_value), splits.train_y[idx]

    def loss_fn(model: nn.Module, batch) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    epoch_counter = [start_epoch]
    epoch_start = [time.perf_counter()]

    def evaluate(model: nn.Module) -> dict[str, float]:
        # Summed on the device, read once: one host sync per evaluation.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), dtype=torch.long, device=device)
        for i in range(0, len(splits.valid_x), config.eval_batch_size):
            logits = model(_inputs(splits.valid_x[i : i + config.eval_batch_size], max_value))
            y = splits.valid_y[i : i + config.eval_batch_size]
            loss_sum += F.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
        count = len(splits.valid_x)
        result = {"valid_loss": loss_sum.item() / count, "valid_accuracy": correct.item() / count}
        epoch_counter[0] += 1
        now = time.perf_counter()
        _log(
            f"epoch {epoch_counter[0]}/{config.epochs}: valid accuracy "
            f"{result['valid_accuracy']:.4f}, valid loss {result['valid_loss']:.4f} "
            f"({now - epoch_start[0]:.0f}s)",
            quiet,
        )
        epoch_start[0] = now
        return result

    return fit(
        model,
        optimizer,
        train_batches=train_batches,
        num_batches=num_batches,
        loss_fn=loss_fn,
        evaluate=evaluate,
        epochs=config.epochs,
        select="valid_accuracy",
        mode="max",
        clip=config.clip or None,
        run=run,
        metrics=metrics,
        checkpoint_entries=lambda: _checkpoint_entries(config, data),
        start_epoch=start_epoch,
        best=best,
        best_epoch=best_epoch,
        progress=progress,
        desc=config.model,
    )


def _finish(
    config: ClassifyConfig,
    data: ImageDataset,
    splits: _Splits,
    model: nn.Module,
    run: RunDir,
    history: list[dict[str, Any]],
    seconds: float,
    quiet: bool,
) -> ClassifyResult:
    """Score the best checkpoint on the test set; write results.json and the confusion files."""
    ckpt = load_checkpoint(run.checkpoint("best"), kind=KIND, map_location=splits.test_x.device)
    model.load_state_dict(ckpt["model"])
    predicted = predict(model, splits.test_x, data.max_value, config.eval_batch_size)
    k = len(data.classes)
    matrix = confusion_matrix(splits.test_y, predicted, k).cpu().tolist()
    correct = sum(matrix[i][i] for i in range(k))
    total = len(splits.test_y)
    accuracy = correct / total
    parameters = sum(p.numel() for p in model.parameters())
    text = format_confusion(matrix, data.classes)
    atomic_write_text(run.path / "confusion.txt", text)
    png = confusion_matrix_png(
        run.path / "confusion.png",
        matrix,
        data.classes,
        title=f"{config.model} on {data.name}: test accuracy {accuracy:.4f}",
    )
    results = {
        "model": config.model,
        "data": data.name,
        "sequence": config.sequence if config.model in RNN_MODELS else None,
        "test_accuracy": accuracy,
        "test_correct": correct,
        "test_examples": total,
        "best_epoch": ckpt.get("best_epoch"),
        "best_valid_accuracy": ckpt.get("best"),
        "epochs": config.epochs,
        "train_seconds": seconds,
        "parameters": parameters,
        "classes": list(data.classes),
        "confusion_matrix": matrix,
    }
    run.write_json("results.json", results)
    _log(
        f"test accuracy {accuracy:.4f} ({correct}/{total}), best epoch {ckpt.get('best_epoch')} "
        f"(valid {ckpt.get('best'):.4f}), {seconds:.0f}s training, {parameters} parameters",
        quiet,
    )
    _log(text.rstrip("\n"), quiet)
    if png is None:
        _log(f"note: confusion.png skipped: {MISSING_MATPLOTLIB}", quiet)
    _log(
        f"wrote {run.path}/results.json, confusion.txt" + (", confusion.png" if png else ""), quiet
    )
    return ClassifyResult(
        run_dir=run.path,
        model=config.model,
        test_accuracy=accuracy,
        confusion=matrix,
        classes=data.classes,
        best_epoch=ckpt.get("best_epoch"),
        best_valid_accuracy=ckpt.get("best"),
        history=history,
        seconds=seconds,
        parameters=parameters,
    )


def train(
    config: ClassifyConfig,
    out: str | Path | None = None,
    *,
    data: ImageDataset | None = None,
    progress: bool = True,
    quiet: bool = False,
    argv: list[str] | None = None,
) -> ClassifyResult:
    """Train one classifier into a new run directory `out`, then score it on the test set.

    Everything is validated (config, device, data files, model shape) before the run
    directory is created. `data` may be passed in to skip loading (``--baselines`` loads once).
    """
    check_config(config)
    device = resolve_device(config.device)
    with num_threads(config.threads):
        return _train(config, out, device, data, progress, quiet, argv)


def _train(
    config: ClassifyConfig,
    out: str | Path | None,
    device: torch.device,
    data: ImageDataset | None,
    progress: bool,
    quiet: bool,
    argv: list[str] | None,
) -> ClassifyResult:
    if data is None:
        data = load_images(config.data, progress=progress)
    height, width = data.image_shape
    seed_everything(config.seed)
    model = _build_model(config, height, width, len(data.classes)).to(device)
    optimizer = make_optimizer(
        config.optimizer, model.parameters(), config.lr, config.momentum, config.weight_decay
    )
    splits = _split(config, data, device)
    out = Path(out) if out is not None else default_run_dir(f"classify-{config.model}")
    run = RunDir.create(
        out,
        kind=KIND,
        config=config,
        seed=config.seed,
        device=device,
        argv=argv,
        extra_meta={"data_source": data.source},
    )
    _log(
        f"{config.model} on {data.name} ({len(splits.train_x)} train, {len(splits.valid_x)} "
        f"valid, {len(splits.test_x)} test, {height}x{width}) -> {run.path}",
        quiet,
    )
    start = time.perf_counter()
    with MetricsLogger(run.path, tensorboard=config.tensorboard) as metrics:
        fitted = _train_loop(
            config, data, splits, model, optimizer, run, metrics, progress=progress, quiet=quiet
        )
    seconds = time.perf_counter() - start
    return _finish(config, data, splits, model, run, fitted.history, seconds, quiet)


def resume(
    run_dir: str | Path,
    overrides: Sequence[str] | dict[str, Any] = (),
    *,
    data: ImageDataset | None = None,
    progress: bool = True,
    quiet: bool = False,
    argv: list[str] | None = None,
) -> ClassifyResult:
    """Continue a run from its ``last`` checkpoint (optionally to more ``epochs``)."""
    run = RunDir.open(run_dir)
    saved = run.read_config()
    saved.pop("kind", None)
    config = config_from_dict(ClassifyConfig, saved, source=str(run.path / "config.json"))
    pairs = overrides if isinstance(overrides, dict) else list(overrides)
    changed = apply_overrides(config, pairs)
    for f in dataclasses.fields(ClassifyConfig):
        if getattr(changed, f.name) != getattr(config, f.name) and f.name not in RESUMABLE_KEYS:
            raise UserError(
                f"--resume {run.path}: {f.name} cannot change on resume "
                f"(only {', '.join(RESUMABLE_KEYS)})"
            )
    config = changed
    check_config(config)
    device = resolve_device(config.device)
    with num_threads(config.threads):
        return _resume(run, config, device, data, progress, quiet, argv)


def _resume(
    run: RunDir,
    config: ClassifyConfig,
    device: torch.device,
    data: ImageDataset | None,
    progress: bool,
    quiet: bool,
    argv: list[str] | None,
) -> ClassifyResult:
    ckpt = load_checkpoint(run.checkpoint("last"), kind=KIND, map_location=device)
    if data is None:
        data = load_images(config.data, progress=progress)
    if list(data.image_shape) != list(ckpt["image_shape"]):
        raise UserError(
            f"--resume {run.path}: data {config.data} has {data.image_shape} images, "
            f"the run was trained on {tuple(ckpt['image_shape'])}"
        )
    height, width = data.image_shape
    model = _build_model(config, height, width, len(data.classes)).to(device)
    model.load_state_dict(ckpt["model"])
    optimizer = make_optimizer(
        config.optimizer, model.parameters(), config.lr, config.momentum, config.weight_decay
    )
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    splits = _split(config, data, device)
    atomic_write_text(
        run.path / "config.json",
        json.dumps({"kind": KIND, **dataclasses.asdict(config)}, indent=2) + "\n",
    )
    run.record_command(argv)
    epoch = int(ckpt["epoch"])
    _log(f"resuming {run.path} after epoch {epoch} of {config.epochs}", quiet)
    start = time.perf_counter()
    with MetricsLogger(run.path, tensorboard=config.tensorboard, truncate_after=epoch) as metrics:
        fitted = _train_loop(
            config,
            data,
            splits,
            model,
            optimizer,
            run,
            metrics,
            start_epoch=epoch,
            best=ckpt.get("best"),
            best_epoch=ckpt.get("best_epoch"),
            progress=progress,
            quiet=quiet,
        )
    seconds = time.perf_counter() - start
    return _finish(config, data, splits, model, run, fitted.history, seconds, quiet)


def run_baselines(
    config: ClassifyConfig,
    out: str | Path | None = None,
    *,
    data: ImageDataset | None = None,
    progress: bool = True,
    quiet: bool = False,
    argv: list[str] | None = None,
) -> list[ClassifyResult]:
    """Softmax regression, the small CNN and the recurrent model, same data and budget.

    Each gets its own run directory ``OUT/<model>``; ``OUT/comparison.{txt,json}`` holds the
    table. `config.model` names the recurrent model (a baseline name there means lstm).
    """
    check_config(config)
    rnn_model = config.model if config.model in RNN_MODELS else "lstm"
    out = Path(out) if out is not None else default_run_dir("classify-baselines")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--out {out}: directory exists and is not empty (choose another --out)")
    resolve_device(config.device)
    if data is None:
        data = load_images(config.data, progress=progress)
    names = (*BASELINES, rnn_model)
    for name in names:  # fail before any training if one of them cannot be built
        _build_model(dataclasses.replace(config, model=name), *data.image_shape, len(data.classes))
    results = []
    for name in names:
        _log(f"== {name} ==", quiet)
        cfg = dataclasses.replace(config, model=name)
        results.append(train(cfg, out / name, data=data, progress=progress, quiet=quiet))
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
    atomic_write_text(out / "comparison.json", json.dumps(rows, indent=2) + "\n")
    _log(table.rstrip("\n"), quiet)
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


# -- evaluation of a finished run -------------------------------------------------------------


def load_classifier(
    path: str | Path, checkpoint: str = "best", device: str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """A trained classifier (eval mode) and its checkpoint entries, from a run dir or a file."""
    dev = resolve_device(device)
    ckpt = load_checkpoint(find_checkpoint(path, checkpoint), kind=KIND, map_location=dev)
    config = config_from_dict(ClassifyConfig, ckpt["config"], source=str(path))
    height, width = ckpt["image_shape"]
    model = _build_model(config, height, width, len(ckpt["classes"])).to(dev)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, ckpt


def evaluate_run(
    path: str | Path,
    *,
    checkpoint: str = "best",
    data: str | ImageDataset | None = None,
    device: str = "cpu",
    quiet: bool = False,
) -> dict[str, Any]:
    """Test accuracy and confusion matrix of a saved classifier (nothing is written)."""
    model, ckpt = load_classifier(path, checkpoint, device)
    config = config_from_dict(ClassifyConfig, ckpt["config"], source=str(path))
    if not isinstance(data, ImageDataset):
        data = load_images(data or config.data)
    if list(data.image_shape) != list(ckpt["image_shape"]):
        raise UserError(
            f"--data {data.name}: {data.image_shape[0]}x{data.image_shape[1]} images, the model "
            f"was trained on {ckpt['image_shape'][0]}x{ckpt['image_shape'][1]}"
        )
    if len(data.classes) > len(ckpt["classes"]):
        raise UserError(f"--data {data.name}: more classes than the model was trained on")
    dev = next(model.parameters()).device
    labels = data.test_labels.to(dev)
    predicted = predict(model, data.test_images.to(dev), float(ckpt["max_value"]))
    k = len(ckpt["classes"])
    matrix = confusion_matrix(labels, predicted, k).cpu().tolist()
    correct = sum(matrix[i][i] for i in range(k))
    result = {
        "test_accuracy": correct / len(labels),
        "test_correct": correct,
        "test_examples": len(labels),
        "epoch": ckpt.get("epoch"),
        "confusion_matrix": matrix,
        "classes": list(ckpt["classes"]),
    }
    _log(
        f"{ckpt['config']['model']} ({checkpoint}, epoch {ckpt.get('epoch')}) on {data.name}: "
        f"test accuracy {result['test_accuracy']:.4f} ({correct}/{len(labels)})",
        quiet,
    )
    _log(format_confusion(matrix, ckpt["classes"]).rstrip("\n"), quiet)
    return result


# -- command line -----------------------------------------------------------------------------


def _cmd_classify(args: argparse.Namespace) -> int:
    # --KEY VALUE flags are overrides like KEY=VALUE, type-checked the same way (flags first,
    # so a KEY=VALUE after them wins).
    overrides = []
    for name in field_types(ClassifyConfig):
        value = getattr(args, f"set_{name}")
        if value is not None and not (name == "model" and value == "all"):
            overrides.append(f"{name}={value}")
    overrides += list(args.overrides)
    all_models = args.set_model == "all"
    progress = not args.no_progress
    argv = getattr(args, "argv", None)  # set by unroll.cli.main
    if args.resume is not None:
        if args.out is not None or args.preset is not None or args.baselines:
            raise UserError("--resume RUN_DIR takes no --out, --preset or --baselines")
        resume(args.resume, overrides, progress=progress, argv=argv)
        return 0
    config = make_config(args.preset, overrides)
    if args.baselines or all_models:
        run_baselines(config, args.out, progress=progress, argv=argv)
    else:
        train(config, args.out, progress=progress, argv=argv)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.checkpoint not in ("best", "last"):
        raise UserError(f"--checkpoint {args.checkpoint!r}: expected best or last")
    evaluate_run(args.run_dir, checkpoint=args.checkpoint, data=args.data, device=args.device)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "classify",
        help="classify images read as sequences (LSTM/GRU/RNN/IRNN) with softmax/CNN baselines",
        description=(
            "Train an image classifier: a recurrent net reading each image row by row "
            "(rows), pixel by pixel (pixels) or in a fixed random pixel order (permuted); or "
            "the baselines softmax and cnn. Writes a run directory with metrics, checkpoints, "
            "results.json and a confusion matrix (text and PNG). Every config key can be "
            "set as --KEY VALUE or KEY=VALUE."
        ),
    )
    p.add_argument("--preset", default=None, help=f"one of: {', '.join(PRESETS)}")
    p.add_argument(
        "--baselines",
        action="store_true",
        help="train softmax, cnn and the recurrent model; print a comparison table",
    )
    p.add_argument("--out", default=None, help="new run directory (default runs/classify-...)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    helps = {
        "data": "digits (default), mnist, fashion-mnist, or a directory of IDX files",
        "model": "lstm (default), gru, rnn, irnn, softmax, cnn, or all (= --baselines)",
        "sequence": "rows (default), pixels or permuted",
    }
    group = p.add_argument_group("config (as --KEY VALUE or KEY=VALUE; types are checked)")
    for name in field_types(ClassifyConfig):
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        default = getattr(ClassifyConfig, name)
        group.add_argument(
            *flags,
            dest=f"set_{name}",
            metavar="VALUE",
            default=None,
            help=helps.get(name, f"default {default}"),
        )
    p.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (after the options)"
    )
    p.set_defaults(func=_cmd_classify)

    e = subparsers.add_parser(
        "classify-eval",
        help="test accuracy and confusion matrix of a trained classifier",
        description="Score a classify run's checkpoint on the test set (writes nothing).",
    )
    e.add_argument("run_dir", help="a classify run directory or checkpoint file")
    e.add_argument("--checkpoint", default="best", help="best (default) or last")
    e.add_argument("--data", default=None, help="data to score on (default: the run's own)")
    e.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    e.set_defaults(func=_cmd_eval)
