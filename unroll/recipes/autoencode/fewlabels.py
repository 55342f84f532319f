"""Codes for a classifier with few labels: the same classifiers on raw inputs and on codes.

The autoencoder was trained on every training image without its label. Here only a fraction
of the training labels is kept (1%, 10%, 100% by default; nested subsets drawn once from
``seed``), and each classifier is trained on it from the same initial weights:

    softmax regression   on the raw pixels                         (`SoftmaxRegression`)
    softmax regression   on the frozen codes (standardised with the training part's mean/std)
    softmax regression   on the codes, the encoder fine-tuned along (`EncoderClassifier`)
    row LSTM             raw rows, from scratch                     (`RNNClassifier`; seq only)
    row LSTM             its LSTM started from the encoder's weights (Dai & Le 2015, SA-LSTM)

Every classifier gets ``epochs`` passes of at least ``min_steps / epochs`` updates (a small
subset is repeated, so 1% of the labels is not also 1% of the training), and is scored on
the test set after its last epoch: no labelled validation set picks an epoch, since with 1%
of the labels there would be none that large. The validation accuracy per epoch is kept in
the results for the curves.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F
from torch import nn

from unroll.config import check
from unroll.engine.device import num_threads, resolve_device
from unroll.engine.loop import fit, make_optimizer, supervised_step
from unroll.engine.recipe import Result
from unroll.engine.rundir import dumps
from unroll.errors import UserError
from unroll.fileio import atomic_write_text
from unroll.models.autoencoders import (
    EncoderClassifier,
    SequenceAutoencoder,
    rows_classifier_from_encoder,
)
from unroll.models.classifier import RNNClassifier, SoftmaxRegression
from unroll.recipes.autoencode.data import ImageData
from unroll.recipes.autoencode.evaluate import (
    codes_of,
    load_autoencoder,
    load_run_data,
    one_process,
)
from unroll.recipes.autoencode.score import base_model


@dataclasses.dataclass
class FewLabelsConfig:
    fractions: str = "0.01,0.1,1"  # of the training labels, comma-separated, each in (0, 1]
    epochs: int = 10
    min_steps: int = 500  # each classifier makes at least this many updates
    batch_size: int = 64
    lr: float = 2e-3
    clip: float = 1.0
    seed: int = 0  # the labelled subsets and the classifiers' initial weights
    device: str = "cpu"
    threads: int = 0
    eval_batch_size: int = 1000

    def validate(self) -> None:
        fractions(self)
        for f in ("epochs", "batch_size", "eval_batch_size"):
            check(self, f, getattr(self, f) >= 1, "an integer >= 1")
        check(self, "min_steps", self.min_steps >= 0, "an integer >= 0")
        check(self, "lr", math.isfinite(self.lr) and self.lr > 0, "a number > 0")
        check(self, "clip", math.isfinite(self.clip) and self.clip >= 0, "a number >= 0")
        check(self, "threads", 0 <= self.threads <= 1024, "an integer >= 0 (0 = torch's)")


def fractions(config: FewLabelsConfig) -> list[float]:
    try:
        values = [float(s) for s in config.fractions.split(",") if s.strip()]
    except ValueError:
        values = []
    check(
        config,
        "fractions",
        bool(values) and all(0.0 < v <= 1.0 for v in values),
        "comma-separated fractions in (0, 1], e.g. 0.01,0.1,1",
    )
    return sorted(set(values))


@dataclass
class FewLabelsResult(Result):
    data: str
    autoencoder: str
    code_size: int
    fractions: list[float]
    labelled: list[int]  # labelled examples per fraction
    rows: list[dict[str, Any]]  # classifier, inputs, test_accuracy per fraction, history
    table: str
    path: str | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        return self.table + (f"\nwrote {self.path}" if self.path else "")


class _Standardised(nn.Module):
    """(x - mean) / std in front of a model: codes of very different scales made alike."""

    def __init__(self, inner: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.inner((codes - self.mean) / self.std)


def few_labels(
    path: str | Path,
    config: FewLabelsConfig | None = None,
    *,
    checkpoint: str = "best",
    out: str | Path | None = None,
    quiet: bool = False,
    stream: TextIO | None = None,
) -> FewLabelsResult:
    """Run the experiment on the autoencoder saved at `path` (a run directory or checkpoint);
    writes ``fewlabels.txt`` and ``fewlabels.json`` to `out` (default: the run directory).
    One process (not torchrun)."""
    one_process("fewlabels")
    config = FewLabelsConfig() if config is None else config
    config.validate()
    device = resolve_device(config.device)
    ae, ckpt, ae_config = load_autoencoder(path, checkpoint, str(device))
    if ckpt["data_kind"] != "images":
        raise UserError(f"{path}: fewlabels needs a run on labelled images; this one is a series")
    data = load_run_data(ae_config, ckpt, device, quiet=quiet)
    assert isinstance(data, ImageData)
    p = Path(path)
    run_dir = p if p.is_dir() else p.parent.parent if p.parent.name == "checkpoints" else p.parent
    target = Path(out) if out is not None else run_dir
    if target.exists() and not target.is_dir():
        raise UserError(f"--out {target}: exists and is not a directory")
    log = (lambda s: None) if quiet else (lambda s: print(s, file=stream or sys.stderr, flush=True))
    with num_threads(config.threads):
        result = _experiment(ae, ae_config.model, data, config, device, log)
    target.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target / "fewlabels.txt", result.table + "\n")
    atomic_write_text(target / "fewlabels.json", dumps(result.to_dict()))
    result.path = str(target / "fewlabels.txt")
    return result


def _experiment(ae, ae_model: str, data: ImageData, config, device, log) -> FewLabelsResult:
    fracs = fractions(config)
    H, W = data.shape
    K = len(data.classes)
    base = base_model(ae)
    codes = {p: codes_of(ae, data, p, config.eval_batch_size).to(device) for p in data.images}
    D = codes["train"].shape[1]
    mean = codes["train"].mean(dim=0)
    std = codes["train"].std(dim=0).clamp_min(1e-6)  # a constant code unit: leave it be
    n = data.count("train")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed)).to(device)
    sizes = [max(1, round(f * n)) for f in fracs]

    def images(part, idx):
        return data.batch(part, idx)

    def code_rows(part, idx):
        return codes[part][idx]

    # (classifier, inputs, build(), what it reads)
    methods: list[tuple[str, str, Any, Any]] = [
        ("softmax regression", "raw pixels", lambda: SoftmaxRegression(H, W, K), images),
        (
            "softmax regression",
            "frozen codes",
            lambda: _Standardised(SoftmaxRegression(1, D, K), mean, std),
            code_rows,
        ),
        (
            "softmax regression",
            "codes, encoder fine-tuned",
            lambda: _fine_tuned(base, D, K, mean, std),
            images,
        ),
    ]
    if isinstance(base, SequenceAutoencoder):
        hidden, layers = base.encoder.hidden_size, base.encoder.num_layers
        name = f"row {base.cell.upper()} ({hidden})"
        methods += [
            (
                name,
                "raw rows, from scratch",
                lambda: RNNClassifier(
                    H, W, K, cell=base.cell, hidden_size=hidden, num_layers=layers
                ),
                images,
            ),
            (
                name,
                "started from the encoder",
                lambda: rows_classifier_from_encoder(copy.deepcopy(base), H, W, K),
                images,
            ),
        ]
    rows = []
    for classifier, inputs, build, read in methods:
        row: dict[str, Any] = {"classifier": classifier, "inputs": inputs, "test_accuracy": []}
        row["history"] = []
        for m in sizes:
            torch.manual_seed(config.seed)  # the same initial weights for every fraction
            model = build().to(device)
            acc, history = _train_classifier(model, read, order[:m], data, config, device)
            row["test_accuracy"].append(acc)
            row["history"].append(history)
            log(f"{classifier}, {inputs}, {m} labels: test accuracy {acc:.4f}")
        rows.append(row)
    table = format_table(data.name, ae_model, D, fracs, sizes, rows, config)
    return FewLabelsResult(
        data=data.name,
        autoencoder=ae_model,
        code_size=D,
        fractions=fracs,
        labelled=sizes,
        rows=rows,
        table=table,
        config=dataclasses.asdict(config),
    )


def _fine_tuned(base: nn.Module, D: int, K: int, mean, std) -> nn.Module:
    """The frozen-codes classifier with its encoder set free: the same standardisation and
    softmax, gradients reaching a copy of the encoder."""
    model = EncoderClassifier(copy.deepcopy(base), D, K)
    model.head = _Standardised(model.head, mean, std)
    return model


def _train_classifier(model, read, labelled, data: ImageData, config, device):
    """Train on the labelled indices; test accuracy after the last epoch, valid per epoch."""
    m, B = len(labelled), config.batch_size
    per_epoch = max(math.ceil(m / B), math.ceil(config.min_steps / config.epochs))
    y_train = data.labels("train")
    optimizer = make_optimizer("adam", model.parameters(), config.lr)

    def batches(epoch: int):
        # Passes over the labelled subset, each in its own order, until per_epoch batches.
        gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        passes = math.ceil(per_epoch * B / m)
        idx = torch.cat(
            [labelled[torch.randperm(m, generator=gen).to(device)] for _ in range(passes)]
        )
        for i in range(per_epoch):
            chunk = idx[i * B : (i + 1) * B]
            yield read("train", chunk), y_train[chunk]

    def loss_fn(model, batch):
        x, y = batch
        return F.cross_entropy(model(x), y)

    def accuracy(part: str) -> float:
        correct = 0
        for i in range(0, data.count(part), config.eval_batch_size):
            s = slice(i, i + config.eval_batch_size)
            correct += (model(read(part, s)).argmax(1) == data.labels(part)[s]).sum().item()
        return correct / max(1, data.count(part))

    fitted = fit(
        None,
        model,
        optimizer,
        step=supervised_step(model, optimizer, loss_fn, config.clip),
        batches=batches,
        num_batches=per_epoch,
        epochs=config.epochs,
        evaluate=lambda: {"valid_accuracy": accuracy("valid")},
        select="valid_accuracy",
        mode="max",
        quiet=True,
    )
    model.eval()
    with torch.no_grad():
        test = accuracy("test")
    history = [
        {"epoch": h["epoch"], "train_loss": h["train_loss"], "valid_accuracy": h["valid_accuracy"]}
        for h in fitted.history
    ]
    return test, history


def format_table(name, ae_model, D, fracs, sizes, rows, config) -> str:
    head = [
        f"{name}: test accuracy with a fraction of the training labels; codes of the {ae_model} "
        f"autoencoder ({D}-d); {config.epochs} epochs of >= {config.min_steps} updates in all, "
        f"batch {config.batch_size}, adam lr {config.lr:g}",
    ]
    width = max(len(f"{r['classifier']}, {r['inputs']}") for r in rows)
    cols = "".join(f"{f'{f:.0%}':>9}" for f in fracs)
    lines = [*head, f"{'classifier, inputs':<{width}}{cols}"]
    for r in rows:
        accs = "".join(f"{a:>9.4f}" for a in r["test_accuracy"])
        lines.append(f"{r['classifier'] + ', ' + r['inputs']:<{width}}{accs}")
    lines.append(f"{'labelled examples':<{width}}" + "".join(f"{m:>9}" for m in sizes))
    return "\n".join(lines)
