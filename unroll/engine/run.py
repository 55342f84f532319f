"""Starting and resuming runs: one set of rules for every recipe.

A recipe's ``train`` does, in this order::

    resume = recipe.resume_point(RUN_DIR, overrides)   # only with --resume: config + last.pt
    config.validate(); load and check the data          # nothing written yet: bad input leaves
                                                        # no run directory behind
    with Run.start(recipe, config, device=..., out=..., resume=resume) as run:
        model, optimizer = ...; run.restore(model, optimizer)
        fit(run, model, optimizer, ...)                 # checkpoints + metrics each epoch
        ckpt = run.load_best(model); ... run.write_results(result)

The rules (`Recipe.resume_point` and `Run.start`):
- a run directory belongs to one recipe (``kind`` in config.json and in every checkpoint);
- a resumed run keeps its config; only the recipe's ``RESUMABLE`` fields (epochs, device,
  threads, ...) may change, and config.json is rewritten with the new values;
- it continues from ``last.pt`` (model, optimizer, RNG state, epoch, best so far); a run with
  no finished epoch starts over in the same directory — but never one that holds results
  (``best.pt``, ``results.json``, lines of a second epoch in metrics.jsonl): without ``last.pt``
  such a run is refused with one line (start afresh with ``--out NEW``), not overwritten;
- a run that had finished all its epochs trains none: its best checkpoint is evaluated again
  and results.json rewritten from the same record (a note says so);
- what results.json reports about training is derived from the whole record (`Run.record`:
  every epoch's line of metrics.jsonl, the time summed over every process that ran some of
  them), so it does not depend on where a run was stopped and resumed;
- a run that diverges writes results.json with ``"status": "diverged"`` and the reason (its
  checkpoints keep the last good epoch, if any);
- a checkpoint copied in from another run is refused (``run_id`` in meta.json and checkpoints);
- on (re)start: the directory is locked, temp files of a killed write are removed, ``best.pt``
  is repaired if a kill cut the last save short, metrics.jsonl and TensorBoard lose the lines of
  epochs past the checkpoint.

Under torchrun (`unroll.engine.distributed`) rank 0 alone reads and writes the run directory
and holds its lock; it reads the checkpoint to resume and sends it to the other ranks, so they
need no access to its disk. A run resumes with the same or another number of processes (the
global batch is then N'·B: a note says so); ``world_size`` is in meta.json and each checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import torch
from torch import nn

from unroll.config import changed_fields, config_from_dict
from unroll.engine import distributed
from unroll.engine.checkpoint import (
    _epochs,
    best_checkpoint,
    load_checkpoint,
    remove_stale_temp_files,
    repair_best,
    save_epoch,
)
from unroll.engine.metrics_log import MetricsLogger, RunRecord, read_record
from unroll.engine.rundir import RunDir, default_run_dir
from unroll.engine.seed import get_rng_state, set_rng_state
from unroll.errors import UserError

if TYPE_CHECKING:
    from unroll.engine.recipe import Recipe


@dataclasses.dataclass
class ResumePoint:
    """Where a resumed run continues: its directory, its config (with the allowed changes) and
    its last checkpoint (None when no epoch had finished)."""

    run_dir: RunDir
    config: Any
    checkpoint: dict[str, Any] | None


def resume_point(recipe: Recipe, path: str | Path, overrides: Any = ()) -> ResumePoint:
    """Open `path` to continue it: the saved config with `overrides` (a dataclass of the
    recipe's config, a mapping or ``key=value`` tokens) applied, checked against the rules.
    (Under torchrun: read on rank 0, the same point — or error — on every rank.)"""
    return distributed.from_main(lambda: _resume_point(recipe, path, overrides))


def _resume_point(recipe: Recipe, path: str | Path, overrides: Any) -> ResumePoint:
    from unroll.config import apply_overrides

    run_dir = RunDir.open(path)
    run_dir.check_own_files()
    saved_dict = run_dir.read_config()
    kind = saved_dict.pop("kind", None)
    last = run_dir.checkpoint("last")
    ckpt = None
    if os.path.lexists(last):
        try:
            ckpt = load_checkpoint(last, kind=recipe.kind)
        except UserError as e:
            raise UserError(f"--resume {path}: {e} (to start afresh: --out NEW)") from None
    if kind != recipe.kind:
        raise UserError(
            f"--resume {path}: a {kind!r} run, not a {recipe.kind!r} one (resume it with the "
            f"command of its own recipe)"
        )
    if ckpt is not None:
        saved_dict = ckpt.get("config")  # what the weights were trained with
        if not isinstance(saved_dict, dict):
            raise UserError(f"{last}: the checkpoint has no config")
        meta_id = _meta(run_dir).get("run_id")
        if meta_id is not None and ckpt.get("run_id") not in (None, meta_id):
            raise UserError(
                f"--resume {path}: checkpoints/last.pt belongs to another run (run_id "
                f"{ckpt.get('run_id')}, this run is {meta_id}); copy whole run directories"
            )
    # The record must be readable up to the checkpoint (a damaged line: one line, now,
    # before anything is touched).
    epoch = ckpt.get("epoch") if ckpt else None  # (checked by the recipe's check_resumable)
    upto = epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None
    record = read_record(run_dir.metrics_path, upto=upto)
    if ckpt is None:
        _refuse_to_start_over(run_dir, path, record)
    saved = config_from_dict(recipe.config, saved_dict, source=str(run_dir.path))
    if dataclasses.is_dataclass(overrides) and not isinstance(overrides, type):
        wanted = overrides
    else:
        wanted = apply_overrides(saved, overrides or {})
    wanted = recipe.normalize_resumed(saved, wanted)
    changed = [f for f in changed_fields(saved, wanted) if f not in recipe.config.RESUMABLE]
    if changed:
        raise UserError(
            f"--resume {path}: {', '.join(changed)} cannot change when resuming (only "
            f"{', '.join(recipe.config.RESUMABLE)} may)"
        )
    wanted.validate()
    return ResumePoint(run_dir, wanted, ckpt)


def _refuse_to_start_over(run_dir: RunDir, path: str | Path, record: list[dict]) -> None:
    """A run without ``last.pt`` starts over only when it holds nothing a restart would
    overwrite: a kill in its first epoch leaves at most that epoch's metrics line."""
    held = []
    if os.path.lexists(run_dir.checkpoint("best")):
        held.append("checkpoints/best.pt")
    epochs = sorted({r["epoch"] for r in record})
    if epochs and epochs[-1] > 1:
        held.append(f"metrics of epochs {epochs[0]}-{epochs[-1]}")
    if os.path.lexists(run_dir.path / "results.json"):
        held.append("results.json")
    if held:
        raise UserError(
            f"--resume {path}: checkpoints/last.pt is missing, but the run holds "
            f"{', '.join(held)}: resuming would start it over and overwrite them (restore "
            f"last.pt, or start afresh with --out NEW)"
        )


def _meta(run_dir: RunDir) -> dict[str, Any]:
    try:
        return run_dir.read_meta()
    except (OSError, ValueError):
        return {}


class Run:
    """A run directory opened for training by this process (see the module docstring)."""

    def __init__(
        self,
        run_dir: RunDir,
        recipe: Recipe,
        config: Any,
        checkpoint: dict[str, Any] | None,
        *,
        quiet: bool,
        stream: TextIO | None,
        run_id: str,
        resumed: bool = False,
        main: bool = True,
    ):
        self.dir = run_dir
        self.recipe = recipe
        self.config = config
        self.checkpoint = checkpoint
        self.main = main  # this process writes the run directory (rank 0, or the only one)
        self.quiet = quiet or not main
        self.stream = stream
        self.run_id = run_id
        self.start_epoch = int(checkpoint["epoch"]) if checkpoint else 0
        self.saved_epoch = self.start_epoch  # the epoch last.pt holds
        self.best = _best_value(checkpoint)
        self.best_epoch = checkpoint.get("best_epoch") if checkpoint else None
        self.metrics = (
            MetricsLogger(
                run_dir.path,
                tensorboard=getattr(config, "tensorboard", True),
                truncate_after=self.start_epoch if resumed else None,
            )
            if main
            else _NoMetrics()
        )

    @classmethod
    def start(
        cls,
        recipe: Recipe,
        config: Any,
        *,
        device: torch.device | str,
        out: str | Path | None = None,
        resume: ResumePoint | None = None,
        argv: list[str] | None = None,
        quiet: bool = False,
        stream: TextIO | None = None,
        extra_meta: dict[str, Any] | None = None,
    ) -> Run:
        """Create `out` (default ``runs/<name>-<time>``) or reopen the run `resume` points to.
        Under torchrun every rank calls it: rank 0 does the work and gets the writing `Run`,
        the others a quiet one that writes nothing (or rank 0's error)."""
        world = distributed.world()
        argv = distributed.launch_command(sys.argv if argv is None else argv)
        opened: list[Run] = []

        def open_on_main() -> tuple[str, str]:
            run = cls._open(recipe, config, device, out, resume, argv, quiet, stream, extra_meta)
            opened.append(run)
            return str(run.path), run.run_id

        path, run_id = distributed.from_main(open_on_main)
        if world.main:
            return opened[0]
        return cls(
            RunDir(path),
            recipe,
            config,
            resume.checkpoint if resume is not None else None,
            quiet=True,
            stream=stream,
            run_id=run_id,
            main=False,
        )

    @classmethod
    def _open(
        cls,
        recipe: Recipe,
        config: Any,
        device: torch.device | str,
        out: str | Path | None,
        resume: ResumePoint | None,
        argv: list[str],
        quiet: bool,
        stream: TextIO | None,
        extra_meta: dict[str, Any] | None,
    ) -> Run:
        world = distributed.world()
        if resume is not None:
            if out is not None:
                raise UserError("--out and --resume: a resumed run continues in its own directory")
            run_dir = resume.run_dir
            run_dir.lock()
            remove_stale_temp_files(run_dir.checkpoints)
            remove_stale_temp_files(run_dir.path)
            if resume.checkpoint is not None:
                repair_best(run_dir.checkpoints)
            run_dir.write_config(recipe.kind, config)
            run_dir.record_command(argv)
            run_id = _meta(run_dir).get("run_id") or uuid.uuid4().hex
            run = cls(
                run_dir,
                recipe,
                config,
                resume.checkpoint,
                quiet=quiet,
                stream=stream,
                run_id=run_id,
                resumed=True,
            )
            epochs = getattr(config, "epochs", None)
            if resume.checkpoint and epochs is not None and run.start_epoch >= epochs:
                # (a note: printed at the end, --quiet or not)
                logging.getLogger("unroll").info(
                    f"{run_dir.path}: all {run.start_epoch} epochs had finished; no training, "
                    f"the best checkpoint evaluated again (history and time from the record)"
                )
            else:
                run.say(
                    f"resuming {run_dir.path} after epoch {run.start_epoch}"
                    if resume.checkpoint
                    else f"restarting {run_dir.path} (no epoch had finished)"
                )
            run._say_world()
            before = int((resume.checkpoint or {}).get("world_size", 1))
            if resume.checkpoint and before != world.size:
                B = getattr(config, "batch_size", "B")
                run.say(
                    f"note: the checkpoint was written by {before} process(es), this run has "
                    f"{world.size}: the global batch is now {world.size} x {B} (was {before} x {B})"
                )
            return run
        run_id = uuid.uuid4().hex
        # (`out` as given: Path("") would be ".", and check_out_path must see the empty string)
        path = out if out is not None else default_run_dir(recipe.run_name(config))
        run_dir = RunDir.create(
            path,
            kind=recipe.kind,
            config=config,
            seed=getattr(config, "seed", 0),
            device=device,
            argv=argv,
            extra_meta={"run_id": run_id, "world_size": world.size, **(extra_meta or {})},
        )
        run = cls(run_dir, recipe, config, None, quiet=quiet, stream=stream, run_id=run_id)
        run.say(f"run directory: {run_dir.path}")
        run._say_world()
        return run

    def _say_world(self) -> None:
        if distributed.world().size > 1:
            B = getattr(self.config, "batch_size", None)
            per = f": batch_size {B} per process, {distributed.global_batch(B)} in all" if B else ""
            self.say(distributed.describe() + per)

    # -- what the recipe calls --------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.dir.path

    @property
    def resumed(self) -> bool:
        return self.checkpoint is not None

    def say(self, text: str) -> None:
        """A progress line (per-epoch lines, notes) on stderr, unless quiet (ranks > 0 are)."""
        if not self.quiet:
            print(text, file=self.stream if self.stream is not None else sys.stderr, flush=True)

    def restore(self, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        """Load model, optimizer and RNG state from the checkpoint being resumed (no-op for a
        new run). Call it after building both, right before training."""
        if self.checkpoint is None:
            return
        model.load_state_dict(self.checkpoint["model"])
        if optimizer is not None and self.checkpoint.get("optimizer") is not None:
            optimizer.load_state_dict(self.checkpoint["optimizer"])
        set_rng_state(self.checkpoint["rng"])

    def save_epoch(self, payload: dict[str, Any], is_best: bool) -> None:
        """An epoch's checkpoints, with the run's kind, config, id, RNG state and number of
        processes added (rank 0's; the other ranks write nothing)."""
        if not self.main:
            self.saved_epoch = int(payload["epoch"])
            return
        full = {
            "kind": self.recipe.kind,
            "config": dataclasses.asdict(self.config),
            "run_id": self.run_id,
            "rng": get_rng_state(),
            "world_size": distributed.world().size,
            **payload,
        }
        save_epoch(self.dir.checkpoints, full, is_best)
        self.saved_epoch = int(payload["epoch"])
        self.best, self.best_epoch = payload.get("best"), payload.get("best_epoch")

    def kept(self) -> str:
        """What the checkpoints hold now, for a message: ``RUN/checkpoints keep epoch 3``."""
        epoch = self._epoch_on_disk()
        if not epoch:
            return f"{self.path} has no checkpoint (no epoch had finished)"
        return f"{self.path}/checkpoints keep epoch {epoch}"

    def _epoch_on_disk(self) -> int:
        """The epoch last.pt holds (read back: an interruption may fall between its write
        and the bookkeeping of it)."""
        if not self.main:
            return self.saved_epoch
        epoch = _epochs(self.dir.checkpoint("last"))[0]
        return epoch if isinstance(epoch, int) else 0

    def load_best(self, model: nn.Module, device: torch.device | str = "cpu") -> dict[str, Any]:
        """Load the best checkpoint's weights into `model`; returns the checkpoint. Rank 0
        only: the checkpoints are on its disk (a recipe's test evaluation is rank 0's)."""
        if not self.main:
            raise RuntimeError("Run.load_best: only rank 0 has the checkpoints")
        ckpt = load_checkpoint(best_checkpoint(self.dir.checkpoints), kind=self.recipe.kind)
        model.load_state_dict(ckpt["model"])
        return ckpt

    def record(self) -> RunRecord:
        """The run's whole record (every epoch's metrics line, across resumes): what
        results.json's history, time and speed are derived from. Rank 0 only."""
        if not self.main:
            raise RuntimeError("Run.record: only rank 0 has the run directory")
        return RunRecord.read(self.dir.path)

    def write_results(self, results: Any) -> Path:
        """results.json, with ``"status": "finished"`` (see `_write_diverged` for the other)."""
        if not self.main:
            return self.dir.path / "results.json"
        data = results.to_dict() if hasattr(results, "to_dict") else results
        return self.dir.write_json("results.json", {"status": "finished", **data})

    def _write_diverged(self, error: BaseException) -> None:
        """results.json of a run that diverged: the reason and the record so far, so that a
        directory with no checkpoint still says what happened."""
        try:
            record = self.record()
            self.dir.write_json(
                "results.json",
                {
                    "status": "diverged",
                    "error": str(error),
                    "checkpoint_epoch": self.saved_epoch or None,
                    "best_epoch": self.best_epoch,
                    "seconds": record.seconds,
                    "history": record.history,
                },
            )
        except (OSError, UserError):
            pass  # the error itself is what the user sees

    def close(self) -> None:
        self.metrics.close()
        self.dir.unlock()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, *_: object) -> None:
        from unroll.engine.loop import Diverged

        if self.main and isinstance(exc, Diverged):
            self._write_diverged(exc)
        self.close()
        failed = (
            distributed.collective_failure(exc)
            if exc is not None and distributed.world().size > 1
            else None
        )
        if failed is not None:  # one line (the CLI's), not gloo's traceback
            raise UserError(
                f"{failed}; {self.kept()} (continue with --resume {self.path})"
            ) from None
        if self.main and exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            epoch = self._epoch_on_disk()
            kept = (
                f"checkpoints keep epoch {epoch}"
                if epoch
                else "no epoch had finished; resuming starts it over"
            )
            print(
                f"unroll: stopped: {self.path}: {kept} (continue with --resume {self.path})",
                file=sys.stderr,
                flush=True,
            )


class _NoMetrics:
    """The metrics logger of a rank that writes nothing."""

    def log(self, step: int | None = None, **values: Any) -> dict[str, Any]:
        return values

    def close(self) -> None:
        pass


def _best_value(ckpt: dict[str, Any] | None) -> float | None:
    if not ckpt:
        return None
    best = ckpt.get("best", ckpt.get("best_valid_ppl"))  # (the language model's older name)
    return None if best is None else float(best)
