"""A classifier from its config or checkpoint; predictions; scoring a saved run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unroll.data.images import ImageDataset, load_images
from unroll.engine.checkpoint import find_checkpoint, load_checkpoint
from unroll.engine.device import resolve_device
from unroll.engine.model_check import load_weights, saved_config
from unroll.engine.recipe import Result
from unroll.errors import UserError
from unroll.metrics.classification import accuracy, confusion_matrix, format_confusion
from unroll.models.classifier import build_classifier
from unroll.recipes.classify.config import KIND, ClassifyConfig


def build_model(config: ClassifyConfig, height: int, width: int, num_classes: int) -> nn.Module:
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


def inputs(images: torch.Tensor, max_value: float) -> torch.Tensor:
    return images.float() / max_value  # uint8 [B, H, W] -> float in [0, 1]


@torch.no_grad()
def predict(
    model: nn.Module, images: torch.Tensor, max_value: float, batch_size: int = 1000
) -> torch.Tensor:
    """Predicted class ``[N]`` for uint8 images ``[N, H, W]`` (in eval mode, by batches)."""
    was_training = model.training
    model.eval()
    out = [
        model(inputs(images[i : i + batch_size], max_value)).argmax(dim=1)
        for i in range(0, len(images), batch_size)
    ]
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, dtype=torch.long, device=images.device)


def check_saved_data(ckpt: dict[str, Any], source: str) -> None:
    """What a checkpoint says about its data, checked: ``image_shape`` (two sizes >= 1),
    ``classes`` (names), ``max_value`` (the pixel value read as 1.0)."""
    shape, classes, top = ckpt.get("image_shape"), ckpt.get("classes"), ckpt.get("max_value")
    if not (
        isinstance(shape, (list, tuple))
        and len(shape) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
    ):
        raise UserError(f"{source}: image_shape={shape!r}, expected [height, width]")
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise UserError(f"{source}: classes={classes!r}, expected a list of class names")
    if not (isinstance(top, (int, float)) and not isinstance(top, bool) and 0 < top < float("inf")):
        raise UserError(f"{source}: max_value={top!r}, expected a number > 0")


def load_classifier(
    path: str | Path, checkpoint: str = "best", device: str = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """A trained classifier (eval mode) and its checkpoint entries, from a run dir or a file."""
    dev = resolve_device(device)
    found = find_checkpoint(path, checkpoint)
    ckpt = load_checkpoint(found, kind=KIND, map_location="cpu")
    config = saved_config(ClassifyConfig, ckpt, str(found))
    check_saved_data(ckpt, str(found))
    height, width = ckpt["image_shape"]
    model = load_weights(
        lambda: build_model(config, height, width, len(ckpt["classes"])), ckpt["model"], str(found)
    )
    return model.to(dev).eval(), ckpt


@dataclass
class ClassifyEvaluation(Result):
    test_accuracy: float
    test_correct: int
    test_examples: int
    epoch: int | None
    confusion_matrix: list[list[int]]
    classes: list[str]
    model: str
    checkpoint: str
    data: str

    def summary(self) -> str:
        return (
            f"{self.model} ({self.checkpoint}, epoch {self.epoch}) on {self.data}: test accuracy "
            f"{self.test_accuracy:.4f} ({self.test_correct}/{self.test_examples})\n"
            + format_confusion(self.confusion_matrix, self.classes).rstrip("\n")
        )


def evaluate(
    path: str | Path,
    *,
    checkpoint: str = "best",
    data: str | ImageDataset | None = None,
    device: str = "cpu",
    quiet: bool = True,
) -> ClassifyEvaluation:
    """Test accuracy and confusion matrix of a saved classifier (nothing is written)."""
    model, ckpt = load_classifier(path, checkpoint, device)
    config = saved_config(ClassifyConfig, ckpt, str(path))
    if not isinstance(data, ImageDataset):
        data = load_images(data or config.data, progress=not quiet)
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
    return ClassifyEvaluation(
        test_accuracy=accuracy(matrix),
        test_correct=sum(matrix[i][i] for i in range(k)),
        test_examples=len(labels),
        epoch=ckpt.get("epoch"),
        confusion_matrix=matrix,
        classes=list(ckpt["classes"]),
        model=config.model,
        checkpoint=checkpoint,
        data=data.name,
    )
