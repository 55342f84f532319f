"""Classification scores: accuracy and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, k: int) -> torch.Tensor:
    """``[K, K]`` counts: row = true class, column = predicted class."""
    return torch.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)


def accuracy(matrix: Sequence[Sequence[int]]) -> float:
    """Correct / total from a confusion matrix (0 for an empty one)."""
    total = sum(sum(row) for row in matrix)
    return sum(matrix[i][i] for i in range(len(matrix))) / total if total else 0.0


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
