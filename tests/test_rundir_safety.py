"""A run directory is never destroyed or written through by mistake: ``--resume`` never starts
over a run that holds results, a damaged record is one line (not silently dropped), writes
never follow symbolic links, the lock truncates nothing it does not own, a full disk and
SIGTERM end in one line with the state kept. Each case failed on the code before it (the
note on each test says how)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unroll.cli import main
from unroll.engine.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = "the cat sat on the mat\na dog ran to the tree\nthe cat ran\n"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("safety") / "corpus"
    root.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (root / name).write_text(SENTENCES * 6, encoding="utf-8")
    return root


def lm_args(corpus: Path, *extra: str) -> list[str]:
    return [
        "lm", "train", "--data", str(corpus), "--device", "cpu", "--quiet", "threads=1",
        "hidden_size=8", "num_layers=1", "num_steps=4", "batch_size=2", "epochs=2",
        "max_steps_per_epoch=4", "tensorboard=false", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("safety") / "run"
    assert main(lm_args(corpus, "--out", str(out))) == 0
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "run"
    shutil.copytree(run, dest)
    return dest


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unroll: error: "), err
    return err[0]


def snapshot(run: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(run)): p.read_bytes()
        for p in sorted(run.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != ".lock"
    }


# -- --resume never starts over a run that holds results --------------------------------------


def test_resume_without_last_pt_refuses_to_start_over(finished, tmp_path, capsys):
    """Old main: "restarting (no epoch had finished)", metrics.jsonl truncated, best.pt
    overwritten by epoch 1's."""
    run = copy_of(finished, tmp_path)
    (run / "checkpoints" / "last.pt").unlink()
    before = snapshot(run)
    assert main(["lm", "train", "--resume", str(run), "--quiet"]) == 2
    err = one_error(capsys)
    assert "checkpoints/last.pt is missing" in err and "best.pt" in err and "--out NEW" in err
    assert snapshot(run) == before  # nothing touched


def test_resume_with_an_unreadable_last_pt_is_one_line(finished, tmp_path, capsys):
    run = copy_of(finished, tmp_path)
    (run / "checkpoints" / "last.pt").write_bytes(b"garbage")
    before = snapshot(run)
    assert main(["lm", "train", "--resume", str(run), "--quiet"]) == 2
    err = one_error(capsys)
    assert "last.pt" in err and "--out NEW" in err
    assert snapshot(run) == before


def test_a_damaged_metrics_line_is_one_line_not_dropped(finished, tmp_path, capsys):
    """Old main dropped a line that was not JSON, silently: the history lost an epoch."""
    run = copy_of(finished, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(["{not json", *lines[1:]]) + "\n")
    before = snapshot(run)
    assert main(["lm", "train", "--resume", str(run), "epochs=3", "--quiet"]) == 2
    err = one_error(capsys)
    assert "metrics.jsonl: line 1 is not a metrics record" in err
    assert snapshot(run) == before


def test_a_metrics_line_cut_by_a_kill_is_dropped(finished, tmp_path):
    """A last line without its newline is a write a kill cut short: resuming drops it."""
    run = copy_of(finished, tmp_path)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "train_p')
    assert main(["lm", "train", "--resume", str(run), "epochs=3", "--quiet"]) == 0
    history = json.loads((run / "results.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


# -- writes never follow symbolic links; the lock truncates nothing of others ---------------


def test_a_lock_that_is_a_symlink_is_refused_and_its_target_kept(
    corpus, finished, tmp_path, capsys
):
    """Old main truncated the link's target (a file outside the run directory) and wrote its
    pid into it."""
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".lock").symlink_to(outside)  # (what --out accepts as a killed run's leftover)
    assert main(lm_args(corpus, "--out", str(fresh))) == 2
    assert ".lock" in one_error(capsys)
    run = copy_of(finished, tmp_path)
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(outside)
    assert main(["lm", "train", "--resume", str(run), "--quiet"]) == 2
    assert "symbolic link" in one_error(capsys)
    assert outside.read_text() == "keep me\n"


def test_command_txt_through_a_symlink_is_refused(finished, tmp_path, capsys):
    """Old main appended the command line to the link's target."""
    outside = tmp_path / "other.txt"
    outside.write_text("mine\n")
    run = copy_of(finished, tmp_path)
    (run / "command.txt").unlink()
    (run / "command.txt").symlink_to(outside)
    assert main(["lm", "train", "--resume", str(run), "epochs=3", "--quiet"]) == 2
    assert "command.txt: is a symbolic link" in one_error(capsys)
    assert outside.read_text() == "mine\n"


def test_a_hard_linked_lock_is_not_truncated(finished, tmp_path, capsys):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me\n")
    run = copy_of(finished, tmp_path)
    (run / ".lock").unlink()
    os.link(outside, run / ".lock")
    assert main(["lm", "train", "--resume", str(run), "--quiet"]) == 2
    assert "not a regular file of the run's own" in one_error(capsys)
    assert outside.read_text() == "keep me\n"


@pytest.mark.parametrize("what", ["lock-dir", "checkpoints-file"])
def test_lock_directory_and_checkpoints_file_are_one_line(what, corpus, finished, tmp_path, capsys):
    """Old main: IsADirectoryError / FileExistsError tracebacks."""
    run = copy_of(finished, tmp_path)
    if what == "lock-dir":
        (run / ".lock").unlink()
        (run / ".lock").mkdir()
    else:
        shutil.rmtree(run / "checkpoints")
        (run / "checkpoints").write_text("")
    assert main(["lm", "train", "--resume", str(run), "--quiet"]) == 2
    err = one_error(capsys)
    assert (
        ".lock: is a directory" if what == "lock-dir" else "checkpoints: expected a directory"
    ) in err
    if what == "lock-dir":  # a new run in a directory holding only a .lock directory
        fresh = tmp_path / "fresh"
        (fresh / ".lock").mkdir(parents=True)
        assert main(lm_args(corpus, "--out", str(fresh))) == 2
        assert ".lock: is a directory" in one_error(capsys)


# -- full disk and SIGTERM: one line, state kept ------------------------------------------------


def _cli(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "unroll", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        **kwargs,
    )


def test_a_full_disk_is_one_line_and_the_run_resumes(corpus, tmp_path):
    """A file-size limit (``ulimit -f``: EFBIG) smaller than a checkpoint: old main ended in
    an OSError traceback."""
    out = tmp_path / "run"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))

    job = _cli(lm_args(corpus, "--out", str(out)), preexec_fn=limit)
    _, err = job.communicate(timeout=300)
    lines = err.strip().splitlines()
    assert job.returncode == 2 and len(lines) == 1, err
    assert "last.pt: cannot write (file too large" in lines[0]
    assert "has no checkpoint" in lines[0] and f"--resume {out}" in lines[0]
    assert not list(out.rglob(".*.tmp"))  # the cut write is gone
    assert main(["lm", "train", "--resume", str(out), "--quiet"]) == 0
    history = json.loads((out / "results.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]


def test_sigterm_stops_like_ctrl_c_with_exit_143(corpus, tmp_path):
    """Old main: killed by the signal (exit -15), nothing said."""
    out = tmp_path / "run"
    job = _cli(lm_args(corpus, "--out", str(out), "epochs=100000"))
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "last.pt").exists():
        assert time.monotonic() < deadline and job.poll() is None
        time.sleep(0.05)
    job.send_signal(signal.SIGTERM)
    _, err = job.communicate(timeout=60)
    assert job.returncode == 143, err
    assert f"continue with --resume {out}" in err and "unroll: terminated" in err
    assert "Traceback" not in err
    epoch = load_checkpoint(out / "checkpoints" / "last.pt")["epoch"]
    assert f"checkpoints keep epoch {epoch}" in err


def test_word2vec_export_never_overwrites_a_checkpoint(tmp_path, capsys):
    """Old main: ``word2vec export RUN RUN/checkpoints/best.pt`` replaced the run's own
    checkpoint with a vectors file."""
    (tmp_path / "c.txt").write_text("a b c d e f\nb c d e f a\n" * 20)
    (tmp_path / "q.txt").write_text(": s\na b c d\n")
    (tmp_path / "p.tsv").write_text("a\tb\t9\nc\td\t1\ne\tf\t5\n")
    run = tmp_path / "w"
    args = ["word2vec", "train", "--data", str(tmp_path / "c.txt"), "--out", str(run),
            "--quiet", "dim=4", "epochs=1", "min_count=1", "sample=0", "threads=1",
            "tensorboard=false", "plot_words=0", f"analogies={tmp_path / 'q.txt'}",
            f"wordsim={tmp_path / 'p.tsv'}", f"simlex={tmp_path / 'p.tsv'}"]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    best = run / "checkpoints" / "best.pt"
    before = best.read_bytes()
    assert main(["word2vec", "export", str(run), str(best)]) == 2
    assert "inside the checkpoints of the run" in one_error(capsys)
    copy = tmp_path / "copy.pt"
    copy.write_bytes(before)
    assert main(["word2vec", "export", str(run), str(copy)]) == 2
    assert "is a checkpoint; not overwritten" in one_error(capsys)
    assert best.read_bytes() == before and copy.read_bytes() == before
    assert main(["word2vec", "export", str(run), str(tmp_path / "v.txt")]) == 0
