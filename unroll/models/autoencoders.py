"""Autoencoders: dense (stacked), convolutional, denoising, and the sequence autoencoder.

An autoencoder squeezes its input through a narrow code and rebuilds it. Every model here has
the same three calls, so one training loop and one evaluation serve them all:

    forward(x)       the training output: raw values shaped like x (logits for images)
    reconstruct(x)   the reconstruction used for scoring (the same, except for the sequence
                     autoencoder, which rebuilds from its code alone: see below)
    encode(x)        the code, ``[B, D]``

Images come in as ``[B, H, W]`` floats in [0, 1] and leave as logits (the sigmoid is in the
loss, ``binary_cross_entropy_with_logits``, as Keras's sigmoid + binary cross-entropy).
Sequences come in as ``[B, T, C]``.

- `DenseAutoencoder`: Linear+ReLU layers down to a linear code, mirrored back up (the "deep
  autoencoder" of Chollet's "Building Autoencoders in Keras", 784-128-64-32).
- `ConvAutoencoder`: the Keras example "Convolutional autoencoder for image denoising"
  (Valdarrama 2021), layer for layer: conv3x3(32)+ReLU, max-pool 2, conv3x3(32)+ReLU,
  max-pool 2 | transposed conv3x3 stride 2 (32)+ReLU, twice, conv3x3(1). 28,353 parameters
  on 28x28 images, as in the example's summary.
- `DenoisingAutoencoder`: any of them trained to rebuild the clean x from a corrupted x̃
  (Vincent et al. 2008): Gaussian noise (clipped, as the Keras example) or masking noise.
- `SequenceAutoencoder`: an encoder RNN reads the sequence into its final state, a decoder
  RNN started from that state rebuilds the sequence (Dai & Le 2015, "Semi-supervised Sequence
  Learning"). Training feeds the decoder the true previous step (teacher forcing, a
  "conditional" decoder) or zeros (an "unconditioned" decoder, Srivastava et al. 2015);
  `reconstruct` feeds back its own outputs, so it shows what the code alone holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import nn

from unroll.models.classifier import RNNClassifier, SoftmaxRegression
from unroll.nn.registry import RECURRENT_LAYERS

SEQUENCE_CELLS = {c: RECURRENT_LAYERS[c] for c in ("lstm", "gru", "mingru", "minlstm")}
NOISES = ("gaussian", "masking")


class DenseAutoencoder(nn.Module):
    """Stacked fully connected autoencoder: input -> hidden... -> code -> ...hidden -> input."""

    def __init__(
        self,
        input_shape: Sequence[int],
        hidden_sizes: Sequence[int] = (128, 64),
        code_size: int = 32,
    ):
        super().__init__()
        self.input_shape = tuple(int(s) for s in input_shape)
        d = 1
        for s in self.input_shape:
            d *= s
        sizes = [d, *hidden_sizes]
        down: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            down += [nn.Linear(a, b), nn.ReLU()]
        # A linear code: no ReLU on it, so no code unit can die and the classifier on the
        # codes sees signed values (the Keras blog puts a ReLU there).
        self.encoder = nn.Sequential(*down, nn.Linear(sizes[-1], code_size))
        mirrored = [code_size, *reversed(hidden_sizes)]  # e.g. 32 -> 64 -> 128
        up: list[nn.Module] = []
        for a, b in zip(mirrored[:-1], mirrored[1:]):
            up += [nn.Linear(a, b), nn.ReLU()]
        self.decoder = nn.Sequential(*up, nn.Linear(mirrored[-1], d))  # logits [B, H*W]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))  # [B, H*W] -> [B, D]

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code).view(code.shape[0], *self.input_shape)  # -> [B, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


class ConvAutoencoder(nn.Module):
    """The Keras convolutional autoencoder example (see the module docstring); images ``[B, H,
    W]`` with H and W divisible by 4 (two 2x2 poolings, two stride-2 upsamplings)."""

    def __init__(self, height: int, width: int, channels: int = 32):
        super().__init__()
        if height % 4 or width % 4 or height < 4 or width < 4:
            raise ValueError(
                f"ConvAutoencoder: images must be at least 4x4 with sides divisible by 4, got "
                f"{height}x{width}"
            )
        C = channels
        self.code_shape = (C, height // 4, width // 4)
        # padding=1 on a 3x3 kernel is Keras's padding="same".
        self.encoder = nn.Sequential(
            nn.Conv2d(1, C, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [B, C, H/2, W/2]
            nn.Conv2d(C, C, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # [B, C, H/4, W/4]
        )  # fmt: skip
        # Keras's Conv2DTranspose(3x3, strides=2, padding="same") doubles the size: in PyTorch
        # that is padding=1 with output_padding=1 ((n-1)·2 - 2 + 3 + 1 = 2n).
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(C, C, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.ConvTranspose2d(C, C, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),
            nn.Conv2d(C, 1, 3, padding=1),  # logits; the example's sigmoid is in the loss
        )  # fmt: skip

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.unsqueeze(1)).flatten(1)  # [B, C*H/4*W/4]

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        z = code.view(code.shape[0], *self.code_shape)  # [B, C, H/4, W/4]
        return self.decoder(z).squeeze(1)  # [B, H, W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def gaussian_noise(
    x: torch.Tensor,
    std: float,
    clip: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``x + std·N(0, 1)``, clipped to `clip` (the Keras example: noise factor 0.4, [0, 1])."""
    noise = torch.randn(x.shape, generator=generator, device="cpu").to(x.device)
    noisy = x + std * noise
    return noisy.clamp(*clip) if clip is not None else noisy


def masking_noise(
    x: torch.Tensor, fraction: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Vincent et al. 2008's masking noise: a fixed number, round(fraction·d), of the d values
    of each example chosen at random are set to 0."""
    B = x.shape[0]
    flat = x.reshape(B, -1)
    k = round(fraction * flat.shape[1])
    if k == 0:
        return x.clone()
    order = torch.rand(flat.shape, generator=generator, device="cpu").argsort(dim=1)
    mask = torch.ones(flat.shape, dtype=x.dtype)
    mask.scatter_(1, order[:, :k], 0.0)  # k zeros per row
    return (flat * mask.to(x.device)).view_as(x)


class DenoisingAutoencoder(nn.Module):
    """Any autoencoder here, trained on corrupted inputs against the clean ones (Vincent et al.
    2008): in training mode `forward` corrupts x first; the loss still compares with x.

    `encode` and `reconstruct` take the input as given: corrupt it with `corrupt` to see the
    model denoise (evaluation uses a fixed generator so the figures repeat).
    """

    def __init__(
        self,
        autoencoder: nn.Module,
        noise: Literal["gaussian", "masking"] = "gaussian",
        level: float = 0.4,
        clip: tuple[float, float] | None = (0.0, 1.0),
    ):
        super().__init__()
        if noise not in NOISES:
            raise ValueError(f"DenoisingAutoencoder: noise {noise!r}, expected one of {NOISES}")
        self.autoencoder = autoencoder
        self.noise, self.level, self.clip = noise, float(level), clip

    def corrupt(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.noise == "gaussian":
            return gaussian_noise(x, self.level, self.clip, generator)
        return masking_noise(x, self.level, generator)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        x_in = self.corrupt(x) if self.training else x  # x̃ ~ q(x̃ | x) while training only
        return self.autoencoder(x_in, *args, **kwargs)

    def encode(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.autoencoder.encode(x, *args, **kwargs)

    def reconstruct(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.autoencoder.reconstruct(x, *args, **kwargs)


class SequenceAutoencoder(nn.Module):
    """Encoder RNN -> final state -> decoder RNN -> Linear, over ``[B, T, C]`` (batch first).

    `lengths` ``[B]`` (optional) marks the valid steps of a padded batch: the encoder's final
    state is taken after each sequence's own last step, and outputs at padded steps are 0.
    The code (`encode`) is the top layer's final hidden state ``[B, H]``.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 128,
        num_layers: int = 1,
        cell: Literal["lstm", "gru", "mingru", "minlstm"] = "lstm",
        conditional: bool = True,
    ):
        super().__init__()
        if cell not in SEQUENCE_CELLS:
            raise ValueError(
                f"SequenceAutoencoder: cell {cell!r}, expected one of {', '.join(SEQUENCE_CELLS)}"
            )
        layer = SEQUENCE_CELLS[cell]
        self.cell, self.conditional = cell, conditional
        self.encoder = layer(input_size, hidden_size, num_layers, batch_first=True)
        self.decoder = layer(input_size, hidden_size, num_layers, batch_first=True)
        self.out = nn.Linear(hidden_size, input_size)

    def encode_state(self, x: torch.Tensor, lengths: torch.Tensor | None = None):
        """The encoder's final state (LSTM: (h, c), each ``[L, B, H]``; GRU: h)."""
        _, state = self.encoder(x, None, lengths=lengths)
        return state

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        state = self.encode_state(x, lengths)
        h = state[0] if isinstance(state, tuple) else state  # [L, B, H]
        return h[-1]  # the top layer's: [B, H]

    def decoder_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: step t sees the true x[t-1] (zeros at t = 0, the "go" input); an
        unconditioned decoder sees zeros throughout."""
        if not self.conditional:
            return torch.zeros_like(x)
        go = x.new_zeros(x.shape[0], 1, x.shape[2])
        return torch.cat([go, x[:, :-1]], dim=1)  # [B, T, C]

    def _mask(self, y: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if lengths is None:
            return y
        lengths = torch.as_tensor(lengths, device=y.device)
        valid = torch.arange(y.shape[1], device=y.device)[None, :] < lengths[:, None]
        return y * valid[:, :, None]  # padded steps are 0

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The training pass (teacher forced): raw outputs ``[B, T, C]``."""
        state = self.encode_state(x, lengths)
        y, _ = self.decoder(self.decoder_inputs(x), state, lengths=lengths)  # [B, T, H]
        return self._mask(self.out(y), lengths)

    def reconstruct(
        self,
        x: torch.Tensor,
        lengths: torch.Tensor | None = None,
        feedback: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Rebuild x from its code alone: a conditional decoder is fed its own previous output
        (through `feedback`, e.g. the sigmoid for pixels; default as is) instead of x[t-1]."""
        if not self.conditional:
            return self.forward(x, lengths)
        state = self.encode_state(x, lengths)
        step_in = x.new_zeros(x.shape[0], 1, x.shape[2])  # the "go" input
        outs = []
        for _ in range(x.shape[1]):
            y, state = self.decoder(step_in, state)  # [B, 1, H]
            raw = self.out(y)  # [B, 1, C]
            outs.append(raw)
            step_in = feedback(raw) if feedback is not None else raw
        return self._mask(torch.cat(outs, dim=1), lengths)


class EncoderClassifier(nn.Module):
    """A linear classifier on an autoencoder's code, the encoder trained along (fine-tuning):
    the same softmax regression as on frozen codes, with gradients reaching the encoder."""

    def __init__(self, autoencoder: nn.Module, code_size: int, num_classes: int):
        super().__init__()
        self.autoencoder = autoencoder
        self.head = SoftmaxRegression(1, code_size, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.autoencoder.encode(x))  # [B, D] -> [B, K]


def rows_classifier_from_encoder(
    autoencoder: SequenceAutoencoder, height: int, width: int, num_classes: int
) -> RNNClassifier:
    """The row-by-row classifier (`RNNClassifier`, rows, readout last) with its recurrent layer
    initialised from the sequence autoencoder's encoder: Dai & Le 2015's SA-LSTM."""
    enc = autoencoder.encoder
    model = RNNClassifier(
        height,
        width,
        num_classes,
        cell=autoencoder.cell,
        sequence="rows",
        hidden_size=enc.hidden_size,
        num_layers=enc.num_layers,
    )
    model.rnn.load_state_dict(enc.state_dict())  # same layer type, same parameter names
    return model
