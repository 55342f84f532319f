"""``unroll word2vec``: training end to end on a small corpus with known structure, the run
directory, exact resume after a kill, the compiled path against the PyTorch one, every
command, and bad input as one line with exit status 2 and nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unroll.cli import main
from unroll.engine.checkpoint import load_checkpoint
from unroll.engine.metrics_log import read_metrics
from unroll.errors import UserError
from unroll.nn.kernels import word2vec_cpu
from unroll.recipes import word2vec
from unroll.recipes.word2vec import Word2VecConfig

ROOT = Path(__file__).resolve().parents[1]
TOPICS = 3  # words of a topic only ever appear with each other


def write_corpus(path: Path, sentences: int = 700, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(sentences):
        t = int(rng.integers(0, TOPICS))
        lines.append(" ".join(f"t{t}w{int(i)}" for i in rng.integers(0, 12, 10)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_eval_files(directory: Path) -> dict[str, str]:
    questions = directory / "questions.txt"
    questions.write_text(": topics\nt0w1 t0w2 t1w1 t1w2\nt0w1 t0w3 t2w1 t2w3\n", encoding="utf-8")
    pairs = directory / "pairs.tsv"
    pairs.write_text("# word1\tword2\tscore\nt0w1\tt0w2\t9\nt0w1\tt1w2\t1\nt1w3\tt1w4\t8\n"
                     "t2w1\tt0w5\t2\n", encoding="utf-8")  # fmt: skip
    return {"analogies": str(questions), "wordsim": str(pairs), "simlex": str(pairs)}


def tiny(**overrides) -> Word2VecConfig:
    base = dict(
        dim=16, window=3, negative=5, sample=0.0, min_count=1, epochs=3, batch_size=1000,
        threads=1, tensorboard=False, plot_words=0, lr=0.05,
    )  # fmt: skip
    return Word2VecConfig(**{**base, **overrides})


def topic_purity(kv, topn: int = 5) -> float:
    """Share of each word's nearest words that are of its own topic."""
    hits = total = 0
    for w in kv.words:
        for other, _ in kv.most_similar(w, topn=topn):
            hits += other[:2] == w[:2]
            total += 1
    return hits / total


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("w2v")
    write_corpus(d / "corpus.txt")
    return d


@pytest.fixture(scope="module")
def trained(corpus_dir, tmp_path_factory):
    files = write_eval_files(corpus_dir)
    out = tmp_path_factory.mktemp("runs") / "run"
    config = tiny(data=str(corpus_dir / "corpus.txt"), plot_words=20, plot_method="pca", **files)
    return out, word2vec.train(config, out=out, quiet=True)


def test_training_learns_the_topics_and_writes_the_run_dir(trained):
    out, result = trained
    for name in ("config.json", "command.txt", "meta.json", "metrics.jsonl", "results.json",
                 "vectors.bin", "checkpoints/last.pt", "checkpoints/best.pt"):  # fmt: skip
        assert (out / name).is_file(), name
    kv = word2vec.load(out)
    assert len(kv) == TOPICS * 12 and kv.dim == 16
    assert topic_purity(kv) > 0.95  # 3 topics: chance is about 0.3
    assert word2vec.analogy(out, "t0w1", "t0w2", "t1w1", topn=3)[0][0].startswith("t1")
    # vectors.bin holds the last (= best) checkpoint's vectors
    file_kv = word2vec.load(out / "vectors.bin")
    assert file_kv.words == kv.words and torch.equal(file_kv.vectors, kv.vectors)
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    assert last["epoch"] == last["best_epoch"] == 3 and last["words"] == kv.words
    metrics = read_metrics(out)
    assert [m["epoch"] for m in metrics] == [1, 2, 3]
    assert [m["progress"] for m in metrics] == pytest.approx([1 / 3, 2 / 3, 1])
    assert metrics[-1]["lr"] < metrics[0]["lr"] < 0.05  # decayed within the epochs
    assert metrics[-1]["train_loss"] < metrics[0]["train_loss"]
    assert {"analogy_accuracy", "wordsim353_spearman", "words_per_sec"} <= set(metrics[-1])
    saved = json.loads((out / "results.json").read_text())
    assert saved["scores"]["analogy_answered"] == 2 and saved["scores"]["wordsim353_pairs"] == 4
    assert saved["scores"]["wordsim353_spearman"] > 0.5  # same-topic pairs score higher
    assert result.words_per_sec > 0 and result.vocab_size == 36
    if result.plot is not None:
        assert Path(result.plot).read_bytes()[:4] == b"\x89PNG"


def _weights(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")["model"]


def test_resume_after_a_kill_repeats_the_uninterrupted_run(corpus_dir, tmp_path):
    data = str(corpus_dir / "corpus.txt")
    straight = tmp_path / "straight"
    word2vec.train(tiny(data=data), out=straight, quiet=True)
    killed = tmp_path / "killed"
    args = ["word2vec", "train", "--data", data, "--out", str(killed), "--quiet", "dim=16",
            "window=3", "sample=0", "min_count=1", "epochs=3", "batch_size=1000", "threads=1",
            "tensorboard=false", "plot_words=0", "lr=0.05"]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "unroll", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "UNROLL_FAULT": "after-best@1"},
        timeout=300,
    )
    assert done.returncode == -9, done.stderr
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["epoch"] == 1
    word2vec.train(resume=killed, quiet=True)
    a, b = _weights(straight), _weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [m["train_loss"] for m in read_metrics(killed)] == [
        m["train_loss"] for m in read_metrics(straight)
    ]
    with pytest.raises(UserError, match="epochs cannot change when resuming"):
        word2vec.train({"epochs": 5}, resume=killed, quiet=True)


def test_compiled_path_trains_what_the_pytorch_reference_trains(corpus_dir, tmp_path):
    if word2vec_cpu.kernel() is None:
        pytest.skip(f"no compiled kernel here: {word2vec_cpu.unavailable_reason()}")
    data = str(tmp_path / "small.txt")
    write_corpus(Path(data), sentences=60)
    runs = {}
    for impl in ("compiled", "torch"):
        # torch_batch=1: one example at a time, the order the kernel applies them in
        # device=cpu: the compiled kernel is the CPU's; torch's path runs there too (on a GPU
        # machine auto would pick CUDA, where impl=compiled is refused)
        cfg = tiny(
            data=data, impl=impl, torch_batch=1, epochs=2, model="cbow", objective="nce",
            device="cpu",
        )  # fmt: skip
        runs[impl] = word2vec.train(cfg, out=tmp_path / impl, quiet=True)
    a, b = _weights(tmp_path / "compiled"), _weights(tmp_path / "torch")
    for k in ("in_vectors", "out_vectors", "out_bias"):
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)
    assert a["in_vectors"].abs().max() > 0.1  # it trained


@pytest.mark.parametrize("overrides", [{"model": "cbow"}, {"objective": "nce"}])
def test_cbow_and_nce_learn_the_topics_too(corpus_dir, tmp_path, overrides):
    r = word2vec.train(tiny(data=str(corpus_dir / "corpus.txt"), **overrides), out=tmp_path / "r",
                       quiet=True)  # fmt: skip
    assert topic_purity(word2vec.load(r.run_dir)) > 0.9


# --- the command line ----------------------------------------------------------------------------


def _bad(argv, capsys, match):
    capsys.readouterr()
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unroll: error: "), lines
    assert match in lines[0], lines[0]


def test_commands(trained, corpus_dir, tmp_path, capsys):
    out, _ = trained
    files = write_eval_files(corpus_dir)
    capsys.readouterr()
    assert main(["word2vec", "eval", str(out), "--analogies", files["analogies"],
                 "--wordsim", files["wordsim"], "--restrict-vocab", "30"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "analogies (questions.txt, top 30 words)" in printed and "Spearman" in printed
    assert main(["word2vec", "similar", str(out), "t0w1", "--topn", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith("t0") for line in lines)
    assert main(["word2vec", "analogy", str(out), "t0w1", "t0w2", "t1w1"]) == 0
    assert "t0w1 : t0w2 :: t1w1 : ?" in capsys.readouterr().out
    for binary in ([], ["--binary"]):
        target = tmp_path / f"v{len(binary)}"
        assert main(["word2vec", "export", str(out), str(target), *binary]) == 0
        kv = word2vec.load(target)
        assert torch.equal(kv.vectors, word2vec.load(out).vectors)
    gensim = pytest.importorskip("gensim")
    g = gensim.models.KeyedVectors.load_word2vec_format(tmp_path / "v1", binary=True)
    assert g.index_to_key == kv.words and np.array_equal(g.vectors, kv.vectors.numpy())
    pytest.importorskip("matplotlib")
    png = tmp_path / "e.png"
    assert main(["word2vec", "plot", str(out), "--out", str(png), "--method", "pca"]) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["word2vec", "presets"]) == 0
    assert "text8-sg" in capsys.readouterr().out


@pytest.mark.parametrize(
    "corpus,extra,match",
    [
        ("  \n", [], "the corpus is empty"),
        ("a b a\n", ["min_count=5"], "no word occurs min_count=5 times"),
        ("ok ok\n", ["analogies=/nonexistent/q.txt"], "/nonexistent/q.txt: no such file"),
        ("ok ok\n", ["clip=1"], "clip=1.0: expected 0"),
        ("ok ok\n", ["model=glove"], "expected one of skipgram, cbow"),
        ("ok ok\n", ["min_lr=1"], "min_lr=1.0: expected a number from 0 to lr"),
    ],
)
def test_bad_train_input_writes_nothing(tmp_path, capsys, corpus, extra, match):
    data = tmp_path / "c.txt"
    data.write_text(corpus, encoding="utf-8")
    out = tmp_path / "out"
    _bad(["word2vec", "train", "--data", str(data), "--out", str(out), "--quiet", "min_count=1",
          *extra], capsys, match)  # fmt: skip
    assert not out.exists()


def test_torchrun_is_refused_in_one_line(tmp_path, capsys, monkeypatch):
    """word2vec is one process (lock-free threads); torchrun's environment stops it before
    any process group or run directory: rank 0 says so, the other ranks stop silently (one
    line for the job, not one per rank)."""
    data = tmp_path / "c.txt"
    data.write_text("ok ok\n", encoding="utf-8")
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    args = ["word2vec", "train", "--data", str(data), "--out", str(out), "--quiet"]
    _bad(args, capsys, "rank 0: word2vec trains in one process (WORLD_SIZE=2")
    for name, value in {"RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    assert main(args) == 2
    assert capsys.readouterr().err == ""
    assert not out.exists()


def test_bad_query_input(trained, tmp_path, capsys):
    out, _ = trained
    _bad(["word2vec", "similar", str(out), "nosuchword"], capsys, "'nosuchword' is not in")
    bad = tmp_path / "q.txt"
    bad.write_text(": s\na b c\n", encoding="utf-8")
    _bad(["word2vec", "eval", str(out), "--analogies", str(bad)], capsys, "q.txt:2: expected 4")
    data = (out / "vectors.bin").read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[: len(data) // 2])
    _bad(["word2vec", "eval", str(cut)], capsys, "truncated")
    _bad(["word2vec", "similar", str(out), "t0w1", "--topn", "0"], capsys, "--topn 0")
    target = tmp_path / "sub" / "v.txt"
    _bad(["word2vec", "export", str(out), str(target)], capsys, "cannot write")
    assert not target.parent.exists()


def test_compiled_on_request_or_a_one_line_error(tmp_path, capsys, monkeypatch):
    data = tmp_path / "c.txt"
    data.write_text("ok ok\n", encoding="utf-8")
    monkeypatch.setenv("UNROLL_CPU_EXTENSION", "0")
    out = tmp_path / "out"
    argv = ["word2vec", "train", "--data", str(data), "--out", str(out), "min_count=1"]
    argv += ["device=cpu"]  # (on a GPU, impl=compiled is refused for the device first)
    _bad([*argv, "impl=compiled"], capsys, "impl=compiled: turned off by UNROLL_CPU_EXTENSION=0")
    assert not out.exists()
    # auto falls back to the PyTorch path
    assert main([*argv, "--quiet", "plot_words=0", "epochs=1"]) == 0
    assert (out / "vectors.bin").is_file()
