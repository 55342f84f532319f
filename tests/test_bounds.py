"""Sizes checked against memory before anything is allocated: a seq2seq training step on the
longest pairs, and decoding (beam x output length x vocabulary) at the start of training, in
eval and in predict. The machine's memory is set small here, so the tests do not depend on the
machine they run on."""

from __future__ import annotations

from pathlib import Path

import pytest

from unroll.cli import main
from unroll.errors import UserError
from unroll.recipes import seq2seq

TINY = {
    "hidden_size": 8,
    "embedding_size": 4,
    "batch_size": 16,
    "epochs": 1,
    "threads": 1,
    "tensorboard": False,
}


pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


def write_pairs(root: Path, long: int = 0) -> Path:
    """A copy task of 60/12/12 short lines; `long` > 0 adds a training pair of that length."""
    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 60), ("valid", 12), ("test", 12)):
        lines = ["".join("abcdef"[(i + j) % 6] for j in range(2 + i % 4)) for i in range(n)]
        if split == "train" and long:
            lines.append("ab" * (long // 2))
        for side in ("src", "tgt"):
            (root / f"{split}.{side}").write_text("\n".join(lines) + "\n")
    return root


def small_machine(monkeypatch, mib: int) -> None:
    monkeypatch.setattr("unroll.limits.physical_memory", lambda: mib << 20)


def test_a_training_step_on_long_lines_is_checked_before_the_run(tmp_path, monkeypatch):
    """One 1000-token pair in a batch of 16: attention and logits of 1000 x 1000 per pair,
    about 200 MB; on a 64 MiB machine that is one line before the run directory exists."""
    data = write_pairs(tmp_path / "data", long=1000)
    small_machine(monkeypatch, 64)
    config = seq2seq.make_config(overrides={**TINY, "data": str(data), "max_tokens": 1000})
    with pytest.raises(UserError) as e:
        seq2seq.train(config, out=tmp_path / "run", quiet=True)
    assert str(e.value).startswith(
        "a training step on 16 pairs of up to 1000 source and 1000 target tokens needs about"
    )
    assert "lower batch_size or max_tokens" in str(e.value)
    assert not (tmp_path / "run").exists()


def test_the_final_beam_decode_is_checked_before_training(tmp_path, monkeypatch):
    """beam 500 x 200 output tokens x 12 test sources: about 60 MB at the final decode, which
    used to come after all the training (beam 1e6 died there allocating 20 GB)."""
    data = write_pairs(tmp_path / "data")
    small_machine(monkeypatch, 32)
    overrides = {**TINY, "data": str(data), "beam": 500, "max_decode": 200}
    with pytest.raises(UserError) as e:
        seq2seq.train(seq2seq.make_config(overrides=overrides), out=tmp_path / "run", quiet=True)
    assert str(e.value).startswith("decoding 12 sources of up to 5 tokens with beam 500, up to")
    assert "lower beam, eval_batch_size or max_decode" in str(e.value)
    assert not (tmp_path / "run").exists()


def test_eval_and_predict_check_the_beam_too(tmp_path, monkeypatch, capsys):
    data = write_pairs(tmp_path / "data")
    config = seq2seq.make_config(overrides={**TINY, "data": str(data)})
    run = seq2seq.train(config, out=tmp_path / "run", quiet=True).run_dir
    small_machine(monkeypatch, 8)
    assert main(["seq2seq", "eval", str(run), "--beam", "1000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unroll: error: decoding 12 sources") and err.count("\n") == 1, err
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("abc\n" * 300))
    assert main(["seq2seq", "predict", str(run), "--beam", "1000"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unroll: error: decoding 300 sources of up to 3 tokens with beam 1000")
    monkeypatch.undo()
    assert main(["seq2seq", "eval", str(run), "--beam", "2"]) == 0  # what fits still runs


def test_the_decode_estimate_grows_as_beam_search_does():
    """decode_bytes is linear in the rows (sources x beam) and in the vocabulary, and the
    attention history is t x S per row."""
    from unroll.models.decoding import decode_bytes

    base = decode_bytes(10, 5, 20, 30, 100, 64, 2)
    assert decode_bytes(20, 5, 20, 30, 100, 64, 2) == 2 * base
    assert decode_bytes(10, 10, 20, 30, 100, 64, 2) == 2 * base
    rows = 10 * 5
    assert decode_bytes(10, 5, 20, 30, 200, 64, 2) - base == 4 * rows * 3 * 100
    assert decode_bytes(10, 5, 20, 31, 100, 64, 2) - base == 4 * rows * (2 + 2 * 20)


def test_word2vec_vectors_are_checked_against_memory(tmp_path, monkeypatch):
    """dim 65,536 (within the cap) for a 10-word vocabulary is 5 MiB of vectors: on a 4 MiB
    machine that is one line before the run directory exists."""
    from unroll.recipes import word2vec

    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(f"w{i}" for i in range(10)) + "\n")
    small_machine(monkeypatch, 4)
    config = word2vec.Word2VecConfig(
        data=str(corpus), min_count=1, dim=65536, plot_words=0, tensorboard=False
    )
    with pytest.raises(UserError, match="10 words x dim 65536 needs about .* GiB, more than"):
        word2vec.train(config, out=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run").exists()
