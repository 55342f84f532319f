"""The embedded pydoc corpus: deterministic, sensible sizes, always encodable."""

import pytest
import torch

from unroll.data import embedded
from unroll.data.corpora import resolve_corpus, tokenize_prompt
from unroll.data.text import EOS, UNK, Vocabulary


@pytest.fixture(scope="module")
def word():
    return embedded.pydoc_corpus()


def test_deterministic(word):
    again = embedded.pydoc_corpus()
    assert again.vocab == word.vocab
    for split in ("train", "valid", "test"):
        assert torch.equal(again.split(split), word.split(split))


def test_sizes_and_vocab(word):
    assert word.name == "pydoc" and word.level == "word"
    n = {s: word.split(s).numel() for s in ("train", "valid", "test")}
    total = sum(n.values())
    assert 50_000 < total < 500_000
    assert 0.7 < n["train"] / total < 0.9
    assert 0.05 < n["valid"] / total < 0.15 and 0.05 < n["test"] / total < 0.15
    assert 1_000 <= len(word.vocab) <= embedded.MAX_VOCAB
    assert UNK in word.vocab and EOS in word.vocab
    for split in ("train", "valid", "test"):
        ids = word.split(split)
        assert ids.dtype == torch.long and ids.min() >= 0 and ids.max() < len(word.vocab)
        assert (ids == word.vocab.id(UNK)).float().mean() < 0.05  # few unknown words


def test_vocab_is_min_count_of_train(word):
    # every kept word but <unk> occurs at least MIN_COUNT times in train
    counts = torch.bincount(word.train, minlength=len(word.vocab))
    unk = word.vocab.id(UNK)
    kept = [i for i in range(len(word.vocab)) if i != unk]
    assert counts[kept].min().item() >= embedded.MIN_COUNT
    # ordered by (-count, word) over train
    order = sorted(range(len(word.vocab)), key=lambda i: (-counts[i].item(), word.vocab.word(i)))
    assert order == list(range(len(word.vocab)))


def test_pretokenised_like_ptb(word):
    text = " ".join(word.vocab.decode(word.train[:60]))
    assert text.startswith('the " assert " statement <eos>')
    assert "*" * 3 not in text  # heading rules dropped
    assert "(" in word.vocab and "the" in word.vocab and "__init__" in word.vocab


def test_char_level():
    c = embedded.pydoc_corpus("char")
    assert c.level == "char" and 30 < len(c.vocab) < 200
    assert "_" in c.vocab and UNK in c.vocab
    assert "".join(c.vocab.decode(c.train[:14])) == 'the_"assert"_s'
    assert c.train.numel() > 3 * embedded.pydoc_corpus().train.numel()


def test_given_vocab_and_resolve(word):
    v = Vocabulary([UNK, EOS, "the"])
    c = embedded.pydoc_corpus(vocab=v)
    assert c.vocab is v and c.train.max().item() <= 2
    r = resolve_corpus(None, vocab=word.vocab)
    assert r.name == "pydoc" and torch.equal(r.test, word.test)


def test_prompt_is_written_like_the_corpus(word):
    tokens = tokenize_prompt("The print() Function’s value\n")
    assert tokens == ["the", "print", "(", ")", "function's", "value"]
    assert all(t in word.vocab for t in tokens)
    assert tokenize_prompt("Ab c", "char", data="pydoc") == ["a", "b", "_", "c"]
    assert tokenize_prompt("   ") == [] == tokenize_prompt("")


def test_split_by_blocks_of_lines():
    B = embedded.BLOCK_LINES
    lines = [str(i) for i in range(20 * B + 3)]
    parts = embedded._split_lines(lines)
    block = lambda k: lines[k * B : (k + 1) * B]  # noqa: E731
    assert parts["valid"] == block(8) + block(18)
    assert parts["test"] == block(9) + block(19)
    assert parts["train"] == [x for k in (*range(8), *range(10, 18), 20) for x in block(k)]
