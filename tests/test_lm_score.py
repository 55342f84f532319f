"""``unroll.lm.perplexity(run, texts)``: your own sentences through a trained model, checked
against the model's own test evaluation of the same text written as a corpus split."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from test_lm_recipe import tiny_config, write_corpus  # noqa: I001  (tests/ is on sys.path)

from unroll import lm
from unroll.errors import UserError

SENTENCES = ["the cat sat on the mat", "a dog ran to the red house", "my friend looked at a tree"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    corpus = write_corpus(tmp_path_factory.mktemp("corpus"))
    out = tmp_path_factory.mktemp("runs") / "run"
    lm.train(tiny_config(), data=str(corpus), out=out, quiet=True)
    return out


def test_equals_the_test_evaluation_of_the_same_text(run, tmp_path):
    # A test split of one line, after an empty line: the stream is <eos> s <eos>, and the
    # evaluation (batch 1) predicts every token but the first -- what perplexity() predicts.
    for sentence in SENTENCES:
        split = tmp_path / sentence.replace(" ", "_")
        split.mkdir()
        for name in ("train", "valid"):
            (split / f"{name}.txt").write_text(SENTENCES[0] + "\n")  # (any in-vocabulary text)
        (split / "test.txt").write_text("\n" + sentence + "\n")
        expected = lm.evaluate(run, data=str(split), split="test").perplexity
        assert lm.perplexity(run, sentence) == pytest.approx(expected, rel=1e-5)


def test_several_texts_pool_their_tokens_and_per_text_gives_each(run):
    each = lm.perplexity(run, SENTENCES, per_text=True)
    lengths = [len(s.split()) + 1 for s in SENTENCES]  # + the final <eos>
    pooled = math.exp(sum(n * math.log(p) for p, n in zip(each, lengths)) / sum(lengths))
    assert lm.perplexity(run, SENTENCES) == pytest.approx(pooled, rel=1e-9)
    # the toy grammar is learnt a little: its sentences beat a shuffled word salad
    assert lm.perplexity(run, "the cat sat on the mat") < lm.perplexity(
        run, "mat the on sat cat the"
    )


def test_long_texts_are_read_in_chunks_with_the_state_carried(run, monkeypatch):
    text = "\n".join(SENTENCES * 20)
    whole = lm.perplexity(run, text)
    monkeypatch.setattr("unroll.recipes.lm.score.CHUNK", 7)
    assert lm.perplexity(run, text) == pytest.approx(whole, rel=1e-5)


def test_unknown_words_and_empty_texts_are_one_line_errors(run):
    with pytest.raises(UserError, match=r"texts\[1\]:1: 'zebra' is not in the vocabulary"):
        lm.perplexity(run, ["the cat", "the zebra sat"])
    with pytest.raises(UserError, match=r"texts\[0\] holds no token"):
        lm.perplexity(run, ["   "])


def test_train_takes_texts_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))
    rng = random.Random(1)
    texts = [
        " ".join(rng.choice(["the cat", "a dog", "sat", "ran", "on the mat"]) for _ in range(4))
        for _ in range(60)
    ]
    a = lm.train(tiny_config(epochs=1), data=texts, out=tmp_path / "a", quiet=True)
    saved = json.loads((a.run_dir / "config.json").read_text())["data"]
    assert saved.startswith(str(tmp_path / "cache" / "texts"))  # a directory the run can name
    lines = (Path(saved) / "test.txt").read_text().splitlines()
    assert lines == texts[9::10]  # of every 10 texts, the 10th tests
    # the same texts: the same directory, and resume/eval find it
    b = lm.train(tiny_config(epochs=1), data=list(texts), out=tmp_path / "b", quiet=True)
    assert json.loads((b.run_dir / "config.json").read_text())["data"] == saved
    assert lm.evaluate(a.run_dir).perplexity == pytest.approx(a.test_ppl, rel=1e-6)
    split = {"train": texts[:40], "valid": texts[40:50], "test": "\n".join(texts[50:])}
    c = lm.train(tiny_config(epochs=1), data=split, out=tmp_path / "c", quiet=True)
    assert c.test_ppl > 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["too", "few"], "data: 2 texts; a list needs at least 10"),
        ({"train": "a", "test": "b"}, "needs the keys train, valid and test (missing ['valid'])"),
        ([1, 2, 3], "data: expected a string or a list of strings"),
    ],
)
def test_texts_in_memory_that_cannot_work_are_one_line_errors(tmp_path, data, message):
    with pytest.raises(UserError) as e:
        lm.train(tiny_config(), data=data, out=tmp_path / "x", quiet=True)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not (tmp_path / "x").exists()
