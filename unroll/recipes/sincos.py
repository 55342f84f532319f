"""The sin -> cos tutorial: learn cos(t) from sin(t), the state carried across windows.

sin(t) alone does not tell cos(t) (sin rises and falls through each value), so the model must
remember where it came from: the state carries that across consecutive windows of one long
series (truncated BPTT), exactly as the language model carries it across BPTT windows. CLI:
``unroll sincos train`` (and the older ``unroll forecast --demo sin-cos``); writes a PNG.

Under torchrun the series is laid out as N·B streams and rank r reads streams r·B .. r·B+B-1
(`distributed.rows`), as the language model does; the held-out test (one stream) is small and
every rank runs all of it, so all get the same metric.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TextIO

import numpy as np
import torch
import torch.nn.functional as F

from unroll.config import Alias, RunConfig, check
from unroll.engine import distributed
from unroll.engine.device import num_threads, resolve_device
from unroll.engine.loop import fit, make_optimizer, supervised_step
from unroll.engine.model_check import check_memory, check_resumable
from unroll.engine.recipe import Recipe, Result
from unroll.engine.run import Run, resume_point
from unroll.engine.seed import seed_everything
from unroll.errors import UserError
from unroll.models.forecaster import Forecaster

KIND = "unroll.forecaster.sin-cos"


@dataclasses.dataclass
class SinCosConfig(RunConfig):
    data: str = "sin-cos"  # the series is made here; no other data
    epochs: int = 8
    batch_size: int = 16  # parallel streams of the one long series
    lr: float = 1e-2
    clip: float = 1.0
    cell: Literal["lstm", "gru", "rnn"] = "lstm"
    hidden_size: int = 32
    steps_per_period: int = 40  # samples of t per 2π
    periods: int = 160  # length of the training stretch, in periods
    num_steps: int = 20  # window length: gradients flow this far back, the state flows on

    ALIASES: ClassVar[dict[str, Alias]] = {"streams": "batch_size", "bptt": "num_steps"}

    def validate(self) -> None:
        super().validate()
        check(self, "data", self.data == "sin-cos", "sin-cos (this recipe makes its own data)")
        for name in ("hidden_size", "steps_per_period", "periods", "num_steps"):
            check(self, name, getattr(self, name) >= 1, "an integer >= 1")
        check(self, "periods", self.periods <= 100_000, "an integer from 1 to 100000")
        check(self, "steps_per_period", self.steps_per_period <= 100_000, "1 to 100000")
        # The series is made in memory (float64 while computed): keep it to 80 MB.
        if self.periods * self.steps_per_period > MAX_SAMPLES:
            raise UserError(
                f"periods={self.periods} x steps_per_period={self.steps_per_period}: expected "
                f"at most {MAX_SAMPLES:,} samples in all"
            )


MAX_SAMPLES = 10_000_000
# Where the held-out stretches start (t, radians): phases the training rows never begin with.
VALID_START, TEST_START = 500.456, 1000.123

RECIPE = Recipe(name="sincos", kind=KIND, config=SinCosConfig, run_name=lambda c: "sin-cos")


@dataclass
class SinCosResult(Result):
    run_dir: Path
    best_valid_mse: float | None  # what chose the epoch (the validation stretch)
    test_mse: float  # the chosen epoch on the test stretch, measured once
    best_epoch: int | None
    plot: str | None
    seconds: float = 0.0  # training (with validation), every epoch on record: across resumes
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"sin->cos: test MSE {self.test_mse:.4g} (epoch {self.best_epoch}, chosen by its "
            f"validation MSE {self.best_valid_mse:.4g})\n"
            + (f"plot: {self.plot}" if self.plot else "plot: skipped (matplotlib not installed)")
            + f"\nrun directory: {self.run_dir}"
        )


def _model(config: SinCosConfig) -> Forecaster:
    return Forecaster(1, 1, cell=config.cell, hidden_size=config.hidden_size, normalize="none")


def _sin_cos(start: float, n: int, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
    t = start + dt * torch.arange(n, dtype=torch.float64)
    return torch.sin(t).float(), torch.cos(t).float()


def train(
    config: SinCosConfig | None = None,
    *,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
    stream: TextIO | None = None,
) -> SinCosResult | None:
    """Train the sin -> cos model into a new run directory (or continue `resume`); None on the
    ranks other than 0 of a torchrun job."""
    point = None
    if resume is not None:
        point = resume_point(RECIPE, resume, config if config is not None else {})
        config = point.config
    config = SinCosConfig() if config is None else config
    config.validate()
    device = resolve_device(config.device)
    streams = distributed.global_batch(config.batch_size)  # N·B under torchrun
    per_stream = config.periods * config.steps_per_period // streams
    per_stream -= per_stream % config.num_steps
    if per_stream < config.num_steps:
        raise UserError(
            "periods * steps_per_period must give each of the batch_size streams (of every "
            "process) at least one window of num_steps"
        )

    def build() -> Forecaster:
        return _model(config)

    check_memory(build, "hidden_size")
    if point is not None and point.checkpoint is not None:
        check_resumable(build, point.checkpoint, str(point.run_dir.checkpoint("last")))
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
        ) as run,
    ):
        return _train(run, config, device, per_stream)


def _train(
    run: Run, config: SinCosConfig, device: torch.device, per_stream: int
) -> SinCosResult | None:
    seed_everything(config.seed)
    dt = 2 * math.pi / config.steps_per_period
    B, T = config.batch_size, config.num_steps
    streams, mine = distributed.global_batch(B), distributed.rows(B)
    x_all, y_all = _sin_cos(0.0, streams * per_stream, dt)
    # Batchify: one long series cut into B rows, read left to right in windows of T, so window
    # k+1 of a row continues exactly where window k stopped:
    #   row 0: [w0 | w1 | w2 ...]   row 1: [w0 | w1 | w2 ...]   (each window (B, T))
    # (under torchrun: N·B rows, of which this rank reads its B.)
    xs = x_all.view(streams, per_stream, 1)[mine].to(device)  # (B, N, 1)
    ys = y_all.view(streams, per_stream, 1)[mine].to(device)
    # Two held-out stretches, at phases the training rows never begin with: validation picks
    # the best epoch, test measures it once (selecting on the test stretch would report an
    # optimistic figure by construction).
    test_n = 4 * config.steps_per_period
    held_out = {}
    for name, start in (("valid", VALID_START), ("test", TEST_START)):
        x, y = _sin_cos(start, test_n, dt)
        held_out[name] = (x.view(1, test_n, 1).to(device), y.view(1, test_n, 1).to(device))

    model = _model(config).to(device)
    optimizer = make_optimizer("adam", model.parameters(), config.lr)
    run.restore(model, optimizer)
    carry: dict[str, Any] = {"state": None}

    def batches(epoch: int):
        carry["state"] = None  # each epoch starts the streams afresh
        for i in range(0, per_stream, T):
            yield xs[:, i : i + T], ys[:, i : i + T]

    def loss_fn(model: Forecaster, batch) -> torch.Tensor:
        x, y = batch
        pred, state = model(x, carry["state"])
        # Truncated BPTT: keep the state, cut the graph.
        carry["state"] = (
            tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        )
        return F.mse_loss(pred, y)

    def predict(split: str) -> torch.Tensor:
        x = held_out[split][0]
        state, preds = None, []
        for i in range(0, test_n, T):
            p, state = model(x[:, i : i + T], state)
            preds.append(p)
        return torch.cat(preds, dim=1)  # (1, test_n, 1)

    def mse(split: str) -> float:
        # Skip the first quarter period: with a zero state, the sign of cos is a guess.
        skip = config.steps_per_period // 4
        return F.mse_loss(predict(split)[:, skip:], held_out[split][1][:, skip:]).item()

    def evaluate() -> dict[str, float]:
        return {"valid_mse": mse("valid")}

    result = fit(
        run,
        model,
        optimizer,
        step=supervised_step(model, optimizer, loss_fn, config.clip),
        batches=batches,
        num_batches=per_stream // T,
        epochs=config.epochs,
        evaluate=evaluate,
        select="valid_mse",
        # cos(t) lies in [-1, 1]: a mean squared error of a million is a run that blew up.
        max_loss=1e6,
        quiet=run.quiet,
        desc="sin-cos",
    )
    if not run.main:
        return None  # the plot and results are rank 0's: it alone has the checkpoints
    best = run.load_best(model)
    record = run.record()
    model.eval()
    with torch.no_grad():
        test_mse = mse("test")
        pred = predict("test")[0, :, 0].cpu().numpy()
    yt = held_out["test"][1]
    from unroll.plotting import plot_forecast

    t = (TEST_START + dt * np.arange(test_n)).tolist()
    png = plot_forecast(
        run.path / "sin_cos.png",
        t,
        {"cos(t) (truth)": yt[0, :, 0].cpu().numpy(), f"{config.cell} from sin(t)": pred},
        title=f"{config.cell.upper()} reading sin(t), predicting cos(t) (state carried across "
        f"windows of {T})",
    )
    out = SinCosResult(
        run_dir=run.path,
        best_valid_mse=best.get("best", result.best),
        test_mse=test_mse,
        best_epoch=best.get("best_epoch", result.best_epoch),
        plot=str(png) if png else None,
        seconds=record.seconds,
        history=record.history,
    )
    run.write_results(out)
    return out
