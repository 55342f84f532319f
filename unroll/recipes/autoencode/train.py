"""Training an autoencoder on the engine's loop, then scoring it and writing its figures.

The loss is the reconstruction's: per-pixel binary cross-entropy on images (the Keras
examples' ``binary_crossentropy`` on a sigmoid output), mean squared error on series windows.
A denoising model is fed corrupted inputs and scored against the clean ones (Vincent et al.
2008); the sequence autoencoder is trained with teacher forcing (Dai & Le 2015). The
validation loss picks the best epoch; the best checkpoint is scored on valid and test (see
`unroll.recipes.autoencode.score`). Besides the engine's files, each run directory holds::

    results.json          scores (BCE/pixel, MSE, PSNR; denoising PSNR table; anomaly flags),
                          best epoch, time, parameter count
    reconstructions.png   inputs vs reconstructions (and noisy inputs, for denoising)
    codes.png             the codes' first two principal components, coloured by label
    worst.png             the worst-rebuilt examples
    test_errors.csv       images: per-example errors on the test set
    series.png, window_errors.csv, anomalies.csv      series: reconstruction and flags

Under torchrun (``torchrun --nproc-per-node N -m unroll autoencode train ...``) each rank trains
on its part of every global batch of examples or windows (`distributed.shard_batches`, each
part's mean loss weighted: N processes with batch B train exactly as one with batch N·B). The
validation loss is reduced across the ranks: each sums its share of the validation set
(`distributed.share`) and the sums are added (`distributed.all_sum`); a denoiser's fixed
validation noise is drawn for the whole set on every rank, so each rank's share sees the noise
one process would. Training noise (denoising) comes from each rank's own stream (ranks > 0
reseed theirs per epoch, as dropout). Rank 0 alone scores the best checkpoint on valid and
test and writes the figures, CSV files and results.json; the other ranks return None.
``eval``, ``encode`` and ``fewlabels`` run in one process (they refuse torchrun).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import nn

from unroll.engine import distributed
from unroll.engine.device import num_threads, resolve_device
from unroll.engine.loop import fit, make_optimizer, supervised_step
from unroll.engine.model_check import check_memory, check_resumable
from unroll.engine.recipe import Result
from unroll.engine.run import Run, resume_point
from unroll.engine.seed import seed_everything
from unroll.errors import UserError
from unroll.models.autoencoders import DenoisingAutoencoder
from unroll.plotting import MISSING_MATPLOTLIB, matplotlib_available
from unroll.recipes.autoencode.config import RECIPE, AutoencodeConfig
from unroll.recipes.autoencode.data import ImageData, SeriesData, prepare
from unroll.recipes.autoencode.evaluate import build_model, model_name, score
from unroll.recipes.autoencode.score import NOISE_SEED, format_scores, loss_of

FILES = ("reconstructions.png", "codes.png", "worst.png", "series.png")


@dataclass
class AutoencodeResult(Result):
    run_dir: Path
    model: str
    data: str
    parameters: int
    best_epoch: int | None
    best_valid_loss: float | None
    scores: dict[str, Any]
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.model} autoencoder on {self.data}: {self.parameters} parameters, best epoch "
            f"{self.best_epoch} (valid loss {self.best_valid_loss or 0:.4g}), "
            f"{self.seconds:.0f} s training\n"
            + format_scores(self.scores)
            + f"\nrun directory: {self.run_dir}"
        )


def train(
    config: AutoencodeConfig | None = None,
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    data: ImageData | SeriesData | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
    stream: TextIO | None = None,
) -> AutoencodeResult | None:
    """Train an autoencoder into a new run directory `out` (or continue the run `resume`), then
    score its best checkpoint and write the figures (None on the ranks other than 0 of a
    torchrun job). Config, device, data and model are all checked before the run directory is
    created. `data` may be passed in to skip loading."""
    point = None
    if resume is not None:
        point = resume_point(RECIPE, resume, config if config is not None else {})
        config = point.config
    config = AutoencodeConfig() if config is None else config
    config.validate()
    device = resolve_device(config.device)
    if data is None:
        data = prepare(config, device, progress=not quiet)
    ckpt = point.checkpoint if point is not None else None
    if ckpt is not None and list(ckpt["shape"]) != list(data.shape):
        raise UserError(
            f"--resume {resume}: data {config.data} gives examples of shape {data.shape}, "
            f"the run was trained on {tuple(ckpt['shape'])}"
        )

    def build() -> nn.Module:
        return build_model(config, data.kind, data.shape)

    check_memory(build, "hidden_sizes/code_size/channels/hidden_size/num_layers")
    if ckpt is not None:
        check_resumable(build, ckpt, str(point.run_dir.checkpoint("last")))
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
            extra_meta={"data_source": getattr(data, "source", data.name)},
        ) as run,
    ):
        return _train(run, config, data, device)


def _train(
    run: Run, config: AutoencodeConfig, data: ImageData | SeriesData, device: torch.device
) -> AutoencodeResult | None:
    seed_everything(config.seed)
    model = build_model(config, data.kind, data.shape).to(device)
    optimizer = make_optimizer("adam", model.parameters(), config.lr)
    run.restore(model, optimizer)
    n, B = data.count("train"), config.batch_size
    if n == 0:
        raise UserError(f"--data {data.name}: no training examples")
    run.say(
        f"{model_name(config)} autoencoder on {data.name} ({n} train, {data.count('valid')} "
        f"valid, {data.count('test')} test, each {data.shape[0]}x{data.shape[1]})"
    )

    def batches(epoch: int):
        # The order is a function of the epoch alone (its own generator), so a resumed run
        # sees the batches an uninterrupted one would.
        order = torch.randperm(n, generator=torch.Generator().manual_seed(config.seed + epoch))
        # Under torchrun: rank 0's order, this rank's part of each global batch of N·B.
        yield from distributed.shard_batches(
            order.to(device), B, lambda idx: data.batch("train", idx)
        )

    def loss_fn(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return loss_of(data.kind, model(x), x)  # a denoiser corrupts x inside, in training

    def evaluate() -> dict[str, float]:
        # A denoiser is validated as the Keras example does, noisy inputs vs clean targets;
        # one fixed noise draw, so epochs compare on the same inputs. Under torchrun each rank
        # sums its share of the examples (the noise still drawn batch by batch for all of
        # them, as one process does), and the sums are added.
        gen = torch.Generator().manual_seed(NOISE_SEED)
        denoiser = isinstance(model, DenoisingAutoencoder)
        total, count = 0.0, data.count("valid")
        mine = distributed.share(count)
        for i in range(0, count, config.eval_batch_size):
            end = min(i + config.eval_batch_size, count)
            lo, hi = max(i, mine.start), min(end, mine.stop)  # this rank's rows of the batch
            if denoiser:  # the noise of every row of the batch, as one process draws it
                whole = data.batch("valid", slice(i, end))
                noisy = model.corrupt(whole, gen)
            if lo >= hi:
                continue
            if denoiser:
                x, x_in = whole[lo - i : hi - i], noisy[lo - i : hi - i]
            else:
                x = x_in = data.batch("valid", slice(lo, hi))
            total += loss_of(data.kind, model(x_in), x).item() * (hi - lo)
        (total,) = distributed.all_sum(total)
        return {"valid_loss": total / max(count, 1)}

    fit(
        run,
        model,
        optimizer,
        step=supervised_step(model, optimizer, loss_fn, config.clip),
        batches=batches,
        num_batches=distributed.batch_count(n, B),
        epochs=config.epochs,
        evaluate=evaluate,
        select="valid_loss",
        mode="min",
        # Pixels and standardised windows: a mean loss of a million is a run that blew up.
        max_loss=1e6,
        checkpoint_extra=data.checkpoint_entries,
        items_per_batch=B,
        items="examples",
        quiet=run.quiet,
        desc=f"autoencode-{config.model}",
    )
    if not run.main:
        return None  # scoring and the files are rank 0's: it alone has the checkpoints
    ckpt = run.load_best(model)
    record = run.record()  # the whole run's, across resumes
    model.eval()
    scores = score(model, config, data, run.path)
    figures = [f for f in FILES if (run.path / f).is_file()]
    if not matplotlib_available():
        run.say(f"note: figures skipped: {MISSING_MATPLOTLIB}")
    result = AutoencodeResult(
        run_dir=run.path,
        model=model_name(config),
        data=data.name,
        parameters=sum(p.numel() for p in model.parameters()),
        best_epoch=ckpt.get("best_epoch"),
        best_valid_loss=ckpt.get("best"),
        scores=scores,
        seconds=round(record.seconds, 2),
        history=record.history,
        figures=figures,
    )
    run.write_results({**result.to_dict(), "epochs": config.epochs})
    return result
