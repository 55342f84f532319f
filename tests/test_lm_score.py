"""``unroll.lm.perplexity(run, texts)``: your own sentences through a trained model, checked
against the model's own test evaluation of the same text written as a corpus split."""

from __future__ import annotations

import math

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
