"""results.json is a function of the whole run, in every recipe: a run killed at any epoch and
any step of its save sequence (``UNROLL_FAULT``, `unroll.engine.checkpoint.fault_point`) and
resumed writes the uninterrupted run's results.json — history (every epoch, from
metrics.jsonl), epochs, scores — with its time summed over the segments; resuming a finished
run changes nothing and says so in one line.

The default suite runs one kill per recipe (after ``last.pt`` of epoch 2: the resumed process
trains epoch 3 only); the full sweep (four save steps x three epochs x seven recipes) is
``slow``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from unroll.cli import main

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["--device", "cpu", "--quiet", "threads=1", "tensorboard=false", "epochs=3"]
SENTENCES = "the cat sat on the mat\na dog ran to the tree\nthe cat ran\nmy friend sat\n"


def _images(root: Path) -> Path:
    import struct

    root.mkdir(parents=True)
    for prefix, n in (("train", 48), ("t10k", 12)):
        head = struct.pack(">HBB", 0, 8, 3) + struct.pack(">3I", n, 4, 4)
        pixels = bytes((i * 37 + j * 11 + (i % 3) * 60) % 256 for i in range(n) for j in range(16))
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(head + pixels)
        labels = (
            struct.pack(">HBB", 0, 8, 1) + struct.pack(">I", n) + bytes(i % 3 for i in range(n))
        )
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(labels)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("record-data")
    corpus = root / "corpus"
    corpus.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (corpus / name).write_text(SENTENCES * 6, encoding="utf-8")
    text = root / "words.txt"
    text.write_text(
        "".join(
            f"t{i % 3}w{i % 7} t{i % 3}w{(i * 5) % 7} t{i % 3}w{(i * 3) % 7}\n" for i in range(90)
        )
    )
    questions = root / "questions.txt"
    questions.write_text(": topics\nt0w1 t0w2 t1w1 t1w2\nt0w1 t0w3 t2w1 t2w3\n", encoding="utf-8")
    pairs = root / "pairs.tsv"
    pairs.write_text("t0w1\tt0w2\t9\nt0w1\tt1w2\t1\nt1w3\tt1w4\t8\n", encoding="utf-8")
    return {
        "corpus": corpus,
        "images": _images(root / "images"),
        "words": text,
        "questions": questions,
        "pairs": pairs,
    }


def recipe_args(recipe: str, data: dict[str, Path]) -> list[str]:
    """A tiny run of `recipe`, three epochs, dropout where the recipe has it (the RNG state
    must survive the kill)."""
    return {
        "lm": ["lm", "train", "--data", str(data["corpus"]), "hidden_size=8", "num_layers=1",
               "num_steps=4", "batch_size=2", "max_steps_per_epoch=6", "lr_decay_after=1",
               "dropout=0.2"],
        "classify": ["classify", "train", "--data", str(data["images"]), "hidden_size=4",
                     "num_layers=2", "dropout=0.3", "batch_size=8", "lr=0.02"],
        "forecast": ["forecast", "train", "--data", "synthetic", "hidden_size=8", "plot=false",
                     "lookback=12", "horizon=4"],
        "sincos": ["sincos", "train", "hidden_size=8", "periods=8", "batch_size=4",
                   "num_steps=10"],
        "seq2seq": ["seq2seq", "train", "data=reverse", "train_size=40", "min_len=3",
                    "max_len=6", "hidden_size=8", "embedding_size=4", "batch_size=8"],
        "autoencode": ["autoencode", "train", "max_train=64", "hidden_size=8"],
        "word2vec": ["word2vec", "train", "--data", str(data["words"]), "dim=8", "window=2",
                     "negative=3", "sample=0", "min_count=1", "batch_size=50", "plot_words=0",
                     f"analogies={data['questions']}", f"wordsim={data['pairs']}",
                     f"simlex={data['pairs']}"],
    }[recipe] + COMMON  # fmt: skip


RECIPES = ["lm", "classify", "forecast", "sincos", "seq2seq", "autoencode", "word2vec"]
CLOCK = ("seconds", "train_seconds", "wall_seconds")  # honestly wall-clock


def _is_clock(key: str) -> bool:
    return key in CLOCK or key.endswith("_per_sec")


def comparable(results: dict, run: Path) -> dict:
    """results.json without its wall-clock fields, the run's own path written as RUN."""

    def strip(v):
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if not _is_clock(k)}
        if isinstance(v, list):
            return [strip(x) for x in v]
        if isinstance(v, str):
            return v.replace(str(run), "RUN")
        return v

    return strip(results)


def read(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def kill(args: list[str], point: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unroll", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "UNROLL_FAULT": point, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory) -> dict[str, Path]:
    """Each recipe's uninterrupted run (made on first use)."""
    root = tmp_path_factory.mktemp("record-straight")
    made: dict[str, Path] = {}

    class Runs(dict):
        def __missing__(self, recipe: str) -> Path:
            out = root / recipe
            assert main([*recipe_args(recipe, data), "--out", str(out)]) == 0
            made[recipe] = out
            self[recipe] = out
            return out

    return Runs()


def check_resumed_equals_straight(recipe: str, point: str, data, straight, tmp_path) -> None:
    want_run = straight[recipe]
    want = read(want_run)
    out = tmp_path / "run"
    killed = kill([*recipe_args(recipe, data), "--out", str(out)], point)
    assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL at the named point
    assert main([recipe, "train", "--resume", str(out), "--quiet"]) == 0
    got = read(out)
    assert comparable(got, out) == comparable(want, want_run)
    # every epoch on record, once, and the time is their sum (not the last segment's)
    assert [h["epoch"] for h in got["history"]] == [1, 2, 3]
    assert all(h["wall_seconds"] > 0 for h in got["history"])
    key = "train_seconds" if recipe == "forecast" else "seconds"
    field = "seconds" if recipe == "word2vec" else "wall_seconds"
    total = sum(h[field] for h in got["history"])
    assert got[key] == pytest.approx(total, abs=0.01)


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_resumed_run_writes_the_uninterrupted_runs_results(recipe, data, straight, tmp_path):
    """One representative per recipe: killed once epoch 2's last.pt is written, so the
    resumed process trains epoch 3 alone — on old main its results.json then had a history
    of one epoch and the time of one epoch."""
    check_resumed_equals_straight(recipe, "after-last@2", data, straight, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("epoch", [1, 2, 3])
@pytest.mark.parametrize("point", ["before-last", "mid-last", "after-last", "after-best"])
@pytest.mark.parametrize("recipe", RECIPES)
def test_a_kill_at_every_epoch_and_save_step_resumes_to_the_same_results(
    recipe, point, epoch, data, straight, tmp_path
):
    if point == "after-best" and not _improves(straight[recipe], epoch):
        pytest.skip(f"epoch {epoch} of this {recipe} run writes no best.pt")
    check_resumed_equals_straight(recipe, f"{point}@{epoch}", data, straight, tmp_path)


def _improves(run: Path, epoch: int) -> bool:
    """Whether `epoch` was the best so far (its save writes best.pt: after-best is reached)."""
    from unroll.engine.checkpoint import load_checkpoint

    key = load_checkpoint(run / "checkpoints" / "last.pt")["select"]
    higher = key in ("valid_accuracy", "valid_exact", "progress")
    values = [h[key] for h in read(run)["history"]][:epoch]
    best = max(values[:-1], default=None) if higher else min(values[:-1], default=None)
    return best is None or (values[-1] > best if higher else values[-1] < best)


@pytest.mark.parametrize("recipe", ["seq2seq", "word2vec"])
def test_resuming_a_finished_run_changes_nothing_and_says_so(recipe, straight, tmp_path, capsys):
    """On old main: results.json rewritten with history [] and seconds ~0 (word2vec: 0.0
    words/s)."""
    run = tmp_path / "run"
    shutil.copytree(straight[recipe], run)
    before = read(run)
    capsys.readouterr()
    assert main([recipe, "train", "--resume", str(run), "--quiet"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "all 3 epochs had finished" in err[0], err
    after = read(run)
    assert comparable(after, run) == comparable(before, straight[recipe])
    for key in ("seconds", "words_per_sec", "history"):
        if key in before:
            assert after[key] == before[key], key
