"""Image classifiers: a recurrent net reading the image as a sequence, and two baselines.

Every model maps images ``[B, H, W]`` (floats in [0, 1]) to logits ``[B, K]`` (K classes), so
one training loop serves all of them:

- `RNNClassifier`: image -> sequence ``[B, T, C]`` (rows, pixels or permuted pixels; see
  `unroll.data.images`) -> LSTM/GRU/RNN (layers, bidirectional) -> the last hidden state (or
  the mean of the outputs over time) -> Linear -> logits. ``irnn=True`` is the IRNN.
- `SoftmaxRegression`: one Linear on the raw pixels (multinomial logistic regression).
- `SmallCNN`: the classic TensorFlow MNIST tutorial CNN ("Deep MNIST for experts"): conv 5x5
  (32) + ReLU + max-pool 2, conv 5x5 (64) + ReLU + max-pool 2, fully connected (1024 by
  default) + ReLU + dropout, Linear. On 28x28 images that is ~3.3 M parameters and ~13 M
  multiply-adds per image, which trains in minutes per epoch on a CPU core or two; ``fc`` can
  be made smaller for weaker machines.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from unroll.data.images import pixel_permutation, sequence_shape, to_sequences
from unroll.nn.registry import RECURRENT_LAYERS

CELLS = RECURRENT_LAYERS  # lstm, gru, rnn, mingru, minlstm
MODEL_NAMES = ("lstm", "gru", "rnn", "irnn", "mingru", "minlstm", "softmax", "cnn")


class RNNClassifier(nn.Module):
    def __init__(
        self,
        height: int,
        width: int,
        num_classes: int,
        *,
        cell: Literal["lstm", "gru", "rnn", "mingru", "minlstm"] = "lstm",
        sequence: Literal["rows", "pixels", "permuted"] = "rows",
        permutation_seed: int = 0,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        readout: Literal["last", "mean"] = "last",
        irnn: bool = False,
        nonlinearity: Literal["tanh", "relu"] = "tanh",
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"RNNClassifier: cell {cell!r}, expected one of {sorted(CELLS)}")
        if readout not in ("last", "mean"):
            raise ValueError(f"RNNClassifier: readout {readout!r}, expected last or mean")
        if irnn and cell != "rnn":
            raise ValueError("RNNClassifier: irnn=True needs cell='rnn'")
        self.sequence = sequence
        self.readout = readout
        self.num_directions = 2 if bidirectional else 1
        _, input_size = sequence_shape(sequence, height, width)
        # The permutation is a buffer so that it travels with the weights in the state_dict:
        # a checkpoint reads its test images in the order it was trained on.
        perm = (
            pixel_permutation(height * width, permutation_seed) if sequence == "permuted" else None
        )
        self.register_buffer("permutation", perm)
        kwargs = dict(
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        if cell == "rnn":
            kwargs["nonlinearity"] = "relu" if irnn else nonlinearity
        self.rnn = CELLS[cell](input_size, hidden_size, **kwargs)
        self.head = nn.Linear(self.num_directions * hidden_size, num_classes)
        if irnn:
            init_irnn(self.rnn)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = to_sequences(images, self.sequence, self.permutation)  # [B, T, C]
        y, state = self.rnn(x)  # y: [B, T, D*H]
        if self.readout == "mean":
            features = y.mean(dim=1)
        else:
            h = state[0] if isinstance(state, tuple) else state  # LSTM state is (h, c)
            # h: [L*D, B, H]; the top layer's final states are the last D entries. For the
            # backward direction "final" is its state after reading t = 0.
            last = h[-self.num_directions :]  # [D, B, H]
            features = last.transpose(0, 1).reshape(images.shape[0], -1)  # [B, D*H]
        return self.head(features)


def init_irnn(rnn: nn.Module, input_std: float = 0.001) -> None:
    """IRNN initialisation (Le, Jaitly & Hinton 2015, "A Simple Way to Initialize Recurrent
    Networks of Rectified Linear Units"): ReLU units, recurrent weights = identity, biases 0,
    input weights ~ N(0, 0.001^2)."""
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            if name.startswith("weight_hh"):
                nn.init.eye_(p)  # Le et al. 2015: W_hh = I
            elif name.startswith("weight_ih"):
                nn.init.normal_(p, mean=0.0, std=input_std)  # Le et al. 2015: std 0.001
            elif name.startswith("bias"):
                nn.init.zeros_(p)


class SoftmaxRegression(nn.Module):
    """Multinomial logistic regression on the raw pixels."""

    def __init__(self, height: int, width: int, num_classes: int):
        super().__init__()
        self.linear = nn.Linear(height * width, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.flatten(1))  # [B, H*W] -> [B, K]


class SmallCNN(nn.Module):
    """Two conv 5x5 + max-pool layers (32, 64 channels), FC + dropout, as the TF MNIST CNN."""

    def __init__(
        self,
        height: int,
        width: int,
        num_classes: int,
        *,
        channels: tuple[int, int] = (32, 64),
        fc: int = 1024,
        dropout: float = 0.5,
    ):
        super().__init__()
        if height < 4 or width < 4:
            raise ValueError(f"SmallCNN: images must be at least 4x4, got {height}x{width}")
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=5, padding=2)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(c2 * (height // 4) * (width // 4), fc)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(fc, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.unsqueeze(1)  # [B, 1, H, W]
        x = self.pool(torch.relu(self.conv1(x)))  # [B, 32, H/2, W/2]
        x = self.pool(torch.relu(self.conv2(x)))  # [B, 64, H/4, W/4]
        x = self.dropout(torch.relu(self.fc(x.flatten(1))))
        return self.out(x)


def build_classifier(
    model: str,
    height: int,
    width: int,
    num_classes: int,
    *,
    sequence: str = "rows",
    permutation_seed: int = 0,
    hidden_size: int = 128,
    num_layers: int = 1,
    bidirectional: bool = False,
    dropout: float = 0.0,
    readout: str = "last",
    cnn_fc: int = 1024,
    cnn_dropout: float = 0.5,
) -> nn.Module:
    """One of `MODEL_NAMES` for ``height x width`` images and `num_classes` classes."""
    if model == "softmax":
        return SoftmaxRegression(height, width, num_classes)
    if model == "cnn":
        return SmallCNN(height, width, num_classes, fc=cnn_fc, dropout=cnn_dropout)
    if model in ("lstm", "gru", "rnn", "irnn", "mingru", "minlstm"):
        return RNNClassifier(
            height,
            width,
            num_classes,
            cell="rnn" if model == "irnn" else model,
            sequence=sequence,
            permutation_seed=permutation_seed,
            hidden_size=hidden_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            readout=readout,
            irnn=model == "irnn",
        )
    raise ValueError(f"build_classifier: model {model!r}, expected one of {MODEL_NAMES}")
