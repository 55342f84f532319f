"""An autoencoder from its config or checkpoint; scoring a saved run; writing its codes."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unroll import textio
from unroll.data.timeseries import Scaler
from unroll.engine.checkpoint import find_checkpoint, load_checkpoint
from unroll.engine.device import resolve_device
from unroll.engine.distributed import World
from unroll.engine.model_check import load_weights, saved_config
from unroll.engine.recipe import Result
from unroll.engine.rundir import dumps
from unroll.errors import UserError
from unroll.fileio import atomic_write_bytes
from unroll.models.autoencoders import (
    ConvAutoencoder,
    DenoisingAutoencoder,
    DenseAutoencoder,
    SequenceAutoencoder,
)
from unroll.recipes.autoencode.config import KIND, AutoencodeConfig, hidden_sizes
from unroll.recipes.autoencode.data import (
    PARTS,
    ImageData,
    SeriesData,
    prepare_images,
    prepare_series,
)
from unroll.recipes.autoencode.score import format_scores, score_images, score_series


def build_model(config: AutoencodeConfig, data_kind: str, shape: tuple[int, int]) -> nn.Module:
    """The autoencoder for images ``shape = (H, W)`` or windows ``shape = (T, C)``."""
    a, b = shape
    try:
        if config.model == "dense":
            model: nn.Module = DenseAutoencoder((a, b), hidden_sizes(config), config.code_size)
        elif config.model == "conv":
            model = ConvAutoencoder(a, b, config.channels)
        else:  # seq: an image's rows are its steps (C = W), a window's rows likewise
            model = SequenceAutoencoder(
                b,
                config.hidden_size,
                config.num_layers,
                cell=config.cell,
                conditional=config.teacher_forcing,
            )
    except ValueError as e:  # e.g. images too small or odd-sized for the conv model
        raise UserError(f"model={config.model}: {e}") from None
    if config.noise != "none":
        clip = (0.0, 1.0) if data_kind == "images" else None  # pixels stay pixels
        model = DenoisingAutoencoder(model, config.noise, config.noise_level, clip)
    return model


def load_autoencoder(
    path: str | Path, checkpoint: str = "best", device: str = "cpu"
) -> tuple[nn.Module, dict[str, Any], AutoencodeConfig]:
    """A trained autoencoder (eval mode), its checkpoint entries and config."""
    dev = resolve_device(device)
    found = find_checkpoint(path, checkpoint)
    ckpt = load_checkpoint(found, kind=KIND, map_location="cpu")
    config = saved_config(AutoencodeConfig, ckpt, str(found))
    try:
        kind, (a, b) = ckpt["data_kind"], (int(v) for v in ckpt["shape"])
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{found}: the checkpoint has no data_kind and shape (H, W)") from None
    model = load_weights(lambda: build_model(config, kind, (a, b)), ckpt.get("model"), str(found))
    return model.to(dev).eval(), ckpt, config


def load_run_data(
    config: AutoencodeConfig,
    ckpt: dict[str, Any],
    device: torch.device,
    data: str | None = None,
    quiet: bool = True,
) -> ImageData | SeriesData:
    """The data a saved run was trained on (or, for images, `data` of the same size)."""
    if ckpt["data_kind"] == "series":
        if data is not None:
            raise UserError("--data: a time-series run is scored on its own series")
        return prepare_series(config, device, scaler=Scaler.from_dict(ckpt["scaler"]))
    images = prepare_images(config, device, progress=not quiet, data=data)
    if list(images.shape) != list(ckpt["shape"]):
        h, w = ckpt["shape"]
        raise UserError(
            f"--data {images.name}: {images.shape[0]}x{images.shape[1]} images, the model was "
            f"trained on {h}x{w}"
        )
    return images


def score(
    model: nn.Module, config: AutoencodeConfig, data: ImageData | SeriesData, out: Path | None
) -> dict[str, Any]:
    if isinstance(data, SeriesData):
        return score_series(model, data, out, config.eval_batch_size, config.threshold_quantile)
    return score_images(model, data, out, config.eval_batch_size)


@dataclass
class AutoencodeEvaluation(Result):
    model: str
    checkpoint: str
    epoch: int | None
    data: str
    scores: dict[str, Any]
    out: str | None

    def summary(self) -> str:
        where = f"\nfiles: {self.out}" if self.out else ""
        return (
            f"{self.model} ({self.checkpoint}, epoch {self.epoch}) on {self.data}\n"
            + format_scores(self.scores)
            + where
        )


def one_process(command: str) -> None:
    """Refuse a torchrun job (WORLD_SIZE > 1) for `command`: only ``train`` is data-parallel."""
    if World.from_env().size > 1:
        raise UserError(
            f"autoencode {command} runs in one process, not under torchrun (only autoencode "
            f"train is data-parallel); start it as: unroll autoencode {command} ..."
        )


def evaluate(
    path: str | Path,
    *,
    checkpoint: str = "best",
    data: str | None = None,
    out: str | Path | None = None,
    device: str = "cpu",
    quiet: bool = True,
) -> AutoencodeEvaluation:
    """Scores of a saved autoencoder on valid and test; the PNG/CSV files and the scores as
    ``eval.json`` go to `out` (a directory, created) when given, else nothing is written. One
    process (not torchrun)."""
    one_process("eval")
    model, ckpt, config = load_autoencoder(path, checkpoint, device)
    dev = next(model.parameters()).device
    ds = load_run_data(config, ckpt, dev, data, quiet)
    target = None
    if out is not None:
        target = Path(out)
        if target.exists() and not target.is_dir():
            raise UserError(f"--out {target}: exists and is not a directory")
        target.mkdir(parents=True, exist_ok=True)
    scores = score(model, config, ds, target)
    result = AutoencodeEvaluation(
        model=model_name(config),
        checkpoint=checkpoint,
        epoch=ckpt.get("epoch"),
        data=ds.name,
        scores=scores,
        out=str(target) if target is not None else None,
    )
    if target is not None:  # beside the figures; not results.json, which is training's
        atomic_write_bytes(target / "eval.json", dumps(result.to_dict()).encode())
    return result


def model_name(config: AutoencodeConfig) -> str:
    noise = f" denoising ({config.noise} {config.noise_level:g})" if config.noise != "none" else ""
    return f"{config.model}{noise}"


@dataclass
class Encoded(Result):
    path: str
    sizes: dict[str, list[int]]

    def summary(self) -> str:
        shapes = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in self.sizes.items())
        return f"wrote {self.path} ({shapes})"


@torch.no_grad()
def codes_of(model: nn.Module, data: ImageData | SeriesData, part: str, batch_size: int):
    """``[N, D]`` codes of every example of `part` (the encoder sees clean inputs)."""
    model.eval()
    n = data.count(part)
    out = [
        model.encode(data.batch(part, slice(i, i + batch_size))) for i in range(0, n, batch_size)
    ]
    return torch.cat(out).cpu() if out else torch.zeros(0, 0)


def encode(
    path: str | Path,
    *,
    output: str | Path | None = None,
    checkpoint: str = "best",
    device: str = "cpu",
    quiet: bool = True,
) -> Encoded:
    """Write the codes of train, valid and test to an ``.npz`` (default RUN_DIR/codes.npz):
    ``{part}_codes`` [N, D] float32, ``{part}_labels`` [N] (class; for series the part), and
    for series ``{part}_starts`` (the first row of each window). One process (not torchrun)."""
    one_process("encode")
    if output is not None:
        textio.output_file(output, "--output")  # before the codes are computed
    model, ckpt, config = load_autoencoder(path, checkpoint, device)
    dev = next(model.parameters()).device
    data = load_run_data(config, ckpt, dev, None, quiet)
    arrays: dict[str, np.ndarray] = {}
    for part in PARTS:
        arrays[f"{part}_codes"] = codes_of(model, data, part, config.eval_batch_size).numpy()
        arrays[f"{part}_labels"] = data.labels(part).cpu().numpy()
        if isinstance(data, SeriesData):
            arrays[f"{part}_starts"] = data.starts(part).cpu().numpy()
    p = Path(path)
    run_dir = p if p.is_dir() else p.parent.parent if p.parent.name == "checkpoints" else p.parent
    target = Path(output) if output is not None else run_dir / "codes.npz"
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    try:
        atomic_write_bytes(target, buf.getvalue())
    except OSError as e:
        raise UserError(f"--output {target}: cannot write ({e.strerror})") from None
    return Encoded(
        path=str(target),
        sizes={k: list(v.shape) for k, v in arrays.items() if k.endswith("_codes")},
    )
