"""A recurrent forecaster: an LSTM/GRU/RNN encoder and a linear head.

Two ways to reach H steps ahead (``mode``):

* ``direct``: one Linear maps the last hidden state to all H steps at once (B, H).
* ``recursive``: the head predicts one step; `forecast` appends that prediction to the window,
  drops the oldest row and runs again, H times. The target must be the only input column (the
  future of other columns is unknown).

Window normalisation (``normalize="last"``): each window is expressed relative to its own last
row, x - x[:, -1:], and the model predicts the change of the target from its last observed
value, so ŷ = y_last + head(...). A trending series (CO2) then looks the same at every level:
the test period, later and higher than anything in training, needs no extrapolation of the
level — a scaler alone cannot give that, since tanh units saturate outside the training range.
``normalize="none"`` feeds the values as they are (used by the sin→cos demo, where the target
is not an input).

`forward` is the sequence interface shared with the layers: ``y, state = model(x, state)``
gives the head's output at every step (B, T, out), so a state can be carried across
consecutive windows (truncated BPTT).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from unroll.nn.registry import RECURRENT_LAYERS

LAYERS = RECURRENT_LAYERS  # lstm, gru, rnn, mingru, minlstm


class Forecaster(nn.Module):
    def __init__(
        self,
        input_size: int,
        horizon: int,
        *,
        mode: Literal["direct", "recursive"] = "direct",
        cell: Literal["lstm", "gru", "rnn", "mingru", "minlstm"] = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        normalize: Literal["last", "none"] = "last",
    ):
        super().__init__()
        if mode not in ("direct", "recursive"):
            raise ValueError(f"Forecaster: mode must be 'direct' or 'recursive', got {mode!r}")
        if normalize not in ("last", "none"):
            raise ValueError(f"Forecaster: normalize must be 'last' or 'none', got {normalize!r}")
        if cell not in LAYERS:
            raise ValueError(f"Forecaster: cell must be one of {sorted(LAYERS)}, got {cell!r}")
        if mode == "recursive" and input_size != 1:
            raise ValueError(
                f"Forecaster: recursive mode feeds predictions back, so the target must be the "
                f"only input (input_size=1), got input_size={input_size}"
            )
        self.input_size = input_size
        self.horizon = horizon
        self.mode = mode
        self.normalize = normalize
        self.encoder = LAYERS[cell](
            input_size,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(hidden_size, horizon if mode == "direct" else 1)

    def forward(self, x: Tensor, state=None) -> tuple[Tensor, object]:
        """x: (B, T, C) -> head output at every step (B, T, out), final state."""
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            raise ValueError(
                f"Forecaster: expected input (B, T, {self.input_size}), got {tuple(x.shape)}"
            )
        h, state = self.encoder(x, state)  # (B, T, H)
        return self.head(h), state

    def _one_shot(self, window: Tensor) -> Tensor:
        """window: (B, L, C) -> the head at the last step (B, out), in the window's units."""
        if self.normalize == "last":
            ref = window[:, -1:, :]  # (B, 1, C)
            out, _ = self(window - ref)
            return out[:, -1] + ref[:, 0, :1]  # the target is column 0
        out, _ = self(window)
        return out[:, -1]

    def forecast(self, window: Tensor, horizon: int | None = None) -> Tensor:
        """window: (B, L, C) of past rows, target in column 0 -> (B, H) target forecasts."""
        horizon = self.horizon if horizon is None else horizon
        if self.mode == "direct":
            if horizon != self.horizon:
                raise ValueError(
                    f"Forecaster: a direct head gives horizon={self.horizon}, asked for {horizon}"
                )
            return self._one_shot(window)
        steps = []
        for _ in range(horizon):
            nxt = self._one_shot(window)  # (B, 1)
            steps.append(nxt)
            window = torch.cat([window[:, 1:], nxt[:, None, :]], dim=1)
        return torch.cat(steps, dim=1)

    def training_forecast(self, window: Tensor) -> Tensor:
        """What the loss compares with the targets: H steps (direct) or the next one (recursive)."""
        return self._one_shot(window)
