"""The engine's promises, checked through the real recipes: a kill at any point of the save
sequence resumes to the uninterrupted result, divergence stops every recipe with one line,
one process at a time per run directory, and no dead ends after an interrupted first epoch."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unroll.cli import main
from unroll.engine.checkpoint import find_checkpoint, load_checkpoint
from unroll.engine.metrics_log import read_metrics
from unroll.engine.rundir import RunDir
from unroll.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def write_corpus(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        "the cat sat on the mat", "a dog ran to the tree", "the cat ran", "my friend sat on a tree"
    ]  # fmt: skip
    for name, k in (("train.txt", 20), ("valid.txt", 4), ("test.txt", 4)):
        (directory / name).write_text("\n".join(lines * k) + "\n", encoding="utf-8")
    return directory


def lm_args(data: Path, *extra: str) -> list[str]:
    return [
        "lm", "train", "--data", str(data), "--device", "cpu", "--quiet", "threads=1",
        "hidden_size=8", "num_layers=1", "num_steps=4", "batch_size=2", "epochs=3",
        "lr_decay_after=1", "dropout=0.2", "tensorboard=false", *extra,
    ]  # fmt: skip


def run_cli(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unroll", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        timeout=300,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("engine")
    data = write_corpus(root / "data")
    out = root / "straight"
    assert main(lm_args(data, "--out", str(out))) == 0
    return data, json.loads((out / "results.json").read_text()), out


def _weights_equal(a: Path, b: Path) -> bool:
    wa, wb = load_checkpoint(a)["model"], load_checkpoint(b)["model"]
    return all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("point", ["before-last", "mid-last", "after-last", "after-best"])
def test_a_kill_at_any_save_step_resumes_to_the_uninterrupted_result(
    point, uninterrupted, tmp_path
):
    data, want, straight = uninterrupted
    assert want["best_epoch"] >= 2  # epoch 2 improves, so its save writes best.pt too
    out = tmp_path / "run"
    killed = run_cli(lm_args(data, "--out", str(out)), UNROLL_FAULT=f"{point}@2")
    assert killed.returncode == -9, killed.stderr  # SIGKILL, as kill -9
    # Before any repair, "best" names the best epoch on record, never an older one.
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    best = load_checkpoint(find_checkpoint(out, "best"))
    assert best["epoch"] == last["best_epoch"]
    # The resumed run ends where the uninterrupted one did: weights, metrics, results.
    assert main(["lm", "train", "--resume", str(out), "--quiet"]) == 0
    got = json.loads((out / "results.json").read_text())
    for key in ("test_ppl", "best_valid_ppl", "best_epoch", "train_ppl", "valid_ppl"):
        assert got[key] == want[key], key
    for name in ("last", "best"):
        assert _weights_equal(
            out / "checkpoints" / f"{name}.pt", straight / "checkpoints" / f"{name}.pt"
        )
    assert [m["epoch"] for m in read_metrics(out)] == [1, 2, 3]
    assert not list((out / "checkpoints").glob(".*.tmp"))  # a killed write's leftovers: gone


def write_images(directory: Path) -> Path:
    """IDX files of 4x4 images in three classes: class k has row k bright, plus noise."""
    directory.mkdir(parents=True)
    rng = random.Random(0)
    for prefix, n in (("train", 120), ("t10k", 30)):
        labels = [i % 3 for i in range(n)]
        pixels = [
            min(255, (120 if row == label else 0) + rng.randrange(136))
            for label in labels
            for row in range(4)
            for _ in range(4)
        ]
        for name, dims, values in (("images-idx3", (n, 4, 4), pixels),
                                   ("labels-idx1", (n,), labels)):  # fmt: skip
            head = struct.pack(">HBB", 0, 8, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
            (directory / f"{prefix}-{name}-ubyte").write_bytes(head + bytes(values))
    return directory


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("engine") / "images")


def classify_args(images: Path, *extra: str) -> list[str]:
    # Two layers with dropout (the RNG state must survive the kill), small batches; validation
    # accuracy improves in epoch 2 and not in epoch 3, so best.pt and last.pt part ways.
    return [
        "classify", "train", "--data", str(images), "--device", "cpu", "--quiet", "threads=1",
        "tensorboard=false", "epochs=3", "hidden_size=4", "num_layers=2", "dropout=0.3",
        "batch_size=4", "lr=0.02", "valid_fraction=0.25", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def classified(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("engine") / "straight"
    assert main(classify_args(images, "--out", str(out))) == 0
    return json.loads((out / "results.json").read_text()), out


@pytest.mark.parametrize("point", ["before-last", "mid-last", "after-last", "after-best"])
def test_a_kill_at_any_save_step_resumes_classification_to_the_same_result(
    point, images, classified, tmp_path
):
    want, straight = classified
    assert want["best_epoch"] == 2  # epoch 2 writes best.pt too; epoch 3 only last.pt
    out = tmp_path / "run"
    killed = run_cli(classify_args(images, "--out", str(out)), UNROLL_FAULT=f"{point}@2")
    assert killed.returncode == -9, killed.stderr
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert load_checkpoint(find_checkpoint(out, "best"))["epoch"] == last["best_epoch"]
    assert main(["classify", "train", "--resume", str(out), "--quiet"]) == 0
    got = json.loads((out / "results.json").read_text())
    for key in ("test_accuracy", "best_valid_accuracy", "best_epoch", "confusion_matrix"):
        assert got[key] == want[key], key
    for name in ("last", "best"):
        assert _weights_equal(
            out / "checkpoints" / f"{name}.pt", straight / "checkpoints" / f"{name}.pt"
        )

    def scores(run: Path) -> list[tuple]:
        return [(m["epoch"], m["train_loss"], m["valid_accuracy"]) for m in read_metrics(run)]

    assert scores(out) == scores(straight)
    assert not list((out / "checkpoints").glob(".*.tmp"))


def _strict_json(line: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in a JSON file: not JSON")

    return json.loads(line, parse_constant=refuse)


# Epoch 1 trains, epoch 2 blows up (lr_decay 1e12 after epoch 1) where a recipe has a schedule;
# the others blow up in epoch 1.
DIVERGING = {
    "lm": ["epochs=2", "lr_decay_after=1", "lr_decay=1e12"],
    "classify": ["epochs=2", "lr=0.01", "lr_decay_after=1", "lr_decay=1e12", "clip=0"],
    "forecast": ["--data", "synthetic", "lr=1e30", "clip=0", "epochs=2", "plot=false"],
    "sincos": ["lr=1e10", "clip=0", "epochs=2", "periods=8", "batch_size=4", "num_steps=10"],
}


@pytest.mark.parametrize("recipe", sorted(DIVERGING))
def test_divergence_stops_every_recipe_with_one_line(
    recipe, uninterrupted, images, tmp_path, capsys
):
    out = tmp_path / "run"
    if recipe == "lm":
        args = lm_args(uninterrupted[0], *DIVERGING["lm"])
    else:
        data = ["--data", str(images)] if recipe == "classify" else []
        args = [recipe, "train", *data, "--device", "cpu", "--quiet", "threads=1",
                "hidden_size=4", "tensorboard=false", *DIVERGING[recipe]]  # fmt: skip
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(training diverged" in err[0] and "try a lower lr" in err[0], err
    # results.json says what happened, with the record so far (no test scores)
    said = _strict_json((out / "results.json").read_text())
    assert said["status"] == "diverged" and said["error"] in err[0], said
    records = [_strict_json(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    kept = [r["epoch"] for r in records]
    assert [h["epoch"] for h in said["history"]] == kept
    assert kept == ([1] if recipe in ("lm", "classify") else [])
    if kept:  # the last good epoch's checkpoints are kept, finite, and named in the message
        assert "checkpoints keep epoch 1" in err[0]
        for name in ("last", "best"):
            ckpt = load_checkpoint(out / "checkpoints" / f"{name}.pt")
            assert ckpt["epoch"] == 1
            assert all(
                torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point()
            )
    else:
        assert not list((out / "checkpoints").iterdir())
        assert "has no checkpoint (no epoch had finished)" in err[0]


def test_one_process_per_run_directory(uninterrupted, tmp_path, capsys):
    data, _, _ = uninterrupted
    out = tmp_path / "run"
    assert main(lm_args(data, "--out", str(out), "epochs=1")) == 0
    holder = RunDir.open(out)
    holder.lock()  # another process training here
    try:
        assert main(["lm", "train", "--resume", str(out), "epochs=2", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"{out}: in use by process {os.getpid()}" in err
        assert [m["epoch"] for m in read_metrics(out)] == [1]  # nothing touched
    finally:
        holder.unlock()
    assert main(["lm", "train", "--resume", str(out), "epochs=2", "--quiet"]) == 0


def test_resume_of_a_run_stopped_in_its_first_epoch_starts_it_over(uninterrupted, tmp_path):
    data, want, _ = uninterrupted
    out = tmp_path / "run"
    killed = run_cli(lm_args(data, "--out", str(out)), UNROLL_FAULT="before-last@1")
    assert killed.returncode == -9
    assert not (out / "checkpoints" / "last.pt").exists()
    # neither a dead end for --resume nor for eval's message
    with pytest.raises(UserError, match="no checkpoints/best.pt"):
        find_checkpoint(out, "best")
    assert main(["lm", "train", "--resume", str(out), "--quiet"]) == 0
    got = json.loads((out / "results.json").read_text())
    assert got["test_ppl"] == want["test_ppl"]


def test_a_directory_left_by_a_kill_while_it_was_made_is_not_a_dead_end(
    uninterrupted, tmp_path, capsys
):
    data, _, _ = uninterrupted
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)  # a kill before config.json was written: no
    (out / ".lock").write_text("12345\n")  # run to --resume, and not an empty --out either
    (out / ".config.json.k1ll3d.tmp").write_text('{"kind": ')
    assert main(lm_args(data, "--out", str(out), "epochs=1")) == 0
    assert not list(out.glob(".*.tmp")) and (out / "results.json").is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")  # anything else: still refused
    assert main(lm_args(data, "--out", str(tmp_path / "other"), "epochs=1")) == 2
    assert "directory exists and is not empty" in capsys.readouterr().err


def test_a_checkpoint_from_another_run_is_refused(uninterrupted, tmp_path, capsys):
    data, _, straight = uninterrupted
    out = tmp_path / "run"
    assert main(lm_args(data, "--out", str(out), "epochs=1")) == 0
    (out / "checkpoints" / "last.pt").write_bytes(
        (straight / "checkpoints" / "last.pt").read_bytes()
    )
    assert main(["lm", "train", "--resume", str(out), "--quiet"]) == 2
    assert "belongs to another run" in capsys.readouterr().err


def test_resume_with_a_recipe_of_another_kind(uninterrupted, tmp_path, capsys):
    data, _, straight = uninterrupted
    assert main(["classify", "train", "--resume", str(straight)]) == 2
    err = capsys.readouterr().err
    assert "is a 'unroll.lm' checkpoint, expected 'unroll.classifier'" in err


def test_resume_rewrites_config_and_drops_redone_epochs_from_tensorboard(uninterrupted, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data, _, _ = uninterrupted
    out = tmp_path / "run"
    args = [a for a in lm_args(data, "--out", str(out)) if a != "tensorboard=false"]
    killed = run_cli(args, UNROLL_FAULT="before-last@2")  # epoch 2 logged, not saved
    assert killed.returncode == -9
    assert main(["lm", "train", "--resume", str(out), "--quiet", "epochs=4"]) == 0
    assert json.loads((out / "config.json").read_text())["epochs"] == 4  # not stale
    events = EventAccumulator(str(out / "tb"))
    events.Reload()
    steps = [e.step for e in events.Scalars("valid_ppl")]
    assert steps == [1, 2, 3, 4]  # epoch 2 once: the killed run's line was purged


def test_a_resumed_runs_event_file_sorts_after_the_killed_runs(tmp_path):
    """TensorBoard reads event files in name order and applies a purge only to files read
    before; a file made in the same second by a process whose pid sorts higher as text would
    come later. The resumed run's file must come last (CI saw [2, 3, 4, 1, 2])."""
    pytest.importorskip("tensorboard")
    import socket
    import time

    from unroll.engine.metrics_log import MetricsLogger

    tb = tmp_path / "tb"
    tb.mkdir()
    host = socket.gethostname()  # as SummaryWriter names it; a pid that sorts after any
    killed = tb / f"events.out.tfevents.{int(time.time())}.{host}.99999999.0"
    killed.write_bytes(b"")
    log = MetricsLogger(tmp_path, tensorboard=True, truncate_after=1)
    log.log(epoch=2, valid_ppl=3.0)
    log.close()
    names = sorted(f.name for f in tb.glob("events.out.tfevents.*"))
    assert len(names) == 2 and names[0] == killed.name
