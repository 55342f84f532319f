"""Word vectors: the word2vec files both ways with gensim (and the C tool's layouts), the
queries and the scores against gensim's own, and every malformed file as one line."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
import torch

from unroll.data.word2vec_format import format_word2vec, read_word2vec, write_word2vec
from unroll.errors import UserError
from unroll.metrics.embeddings import (
    analogy_accuracy,
    pearson,
    ranks,
    read_analogies,
    spearman,
    word_pair_correlation,
)
from unroll.models.keyed_vectors import KeyedVectors, UnknownWord

WORDS = ["the", "of", "café", "Paris", "paris", "naïve", "x1", "über"]


@pytest.fixture
def vectors():
    rng = np.random.default_rng(0)
    # wide dynamic range: tiny and huge values, negative zero, exact integers
    v = rng.standard_normal((len(WORDS), 6)).astype(np.float32)
    v[:, 1] *= 1e-7
    v[:, 2] *= 1e6
    v[0, 3], v[1, 3] = -0.0, 3.0
    return v


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_reads_ours_and_we_read_gensims_with_identical_numbers(tmp_path, vectors, binary):
    gensim = pytest.importorskip("gensim")
    ours = tmp_path / "ours"
    KeyedVectors(WORDS, vectors).save_word2vec_format(ours, binary=binary)
    g = gensim.models.KeyedVectors.load_word2vec_format(ours, binary=binary)
    assert g.index_to_key == WORDS
    assert g.vectors.tobytes() == vectors.tobytes()  # bit for bit, -0.0 included
    theirs = tmp_path / "theirs"
    g.save_word2vec_format(theirs, binary=binary)
    for detect in (binary, None):
        kv = KeyedVectors.load_word2vec_format(theirs, binary=detect)
        assert kv.words == WORDS and kv.vectors.numpy().tobytes() == vectors.tobytes()
    if not binary:  # the text files are the same bytes
        assert ours.read_bytes() == theirs.read_bytes()


def test_binary_layout_is_the_c_tools(vectors):
    data = format_word2vec(WORDS, vectors, binary=True)
    want = f"{len(WORDS)} 6\n".encode()
    for w, row in zip(WORDS, vectors):
        want += w.encode() + b" " + struct.pack("<6f", *row) + b"\n"
    assert data == want


def test_we_read_the_c_tools_text_layout(tmp_path):
    # "%lf " after each number, so a trailing space before the newline
    path = tmp_path / "c.txt"
    path.write_text("2 3\nthe 0.100000 -2.500000 3.000000 \nof 1.000000 2.000000 0.000001 \n")
    words, v = read_word2vec(path)
    assert words == ["the", "of"]
    np.testing.assert_array_equal(v, np.float32([[0.1, -2.5, 3.0], [1.0, 2.0, 1e-6]]))


@pytest.mark.parametrize(
    "content,match",
    [
        (b"", "expected the header 'V D'"),
        (b"two 3\n", "expected the header 'V D'"),
        (b"2 3\nthe 1 2 3\n", "truncated: the header promises 2 vectors, the file has 1"),
        (b"1 3\nthe 1 2\n", "line 2: expected a word and 3 numbers, got 3 fields"),
        (b"1 2\nthe 1 x\n", "line 2: expected 2 numbers after the word"),
        (b"1 2\nthe 1 2\nof 3 4\n", "more lines than the 1 vectors"),
        (b"2 1\nthe 1\nthe 2\n", "word 'the' appears twice"),
    ],
)
def test_bad_text_files(tmp_path, content, match):
    path = tmp_path / "v.txt"
    path.write_bytes(content)
    with pytest.raises(UserError) as e:
        read_word2vec(path, binary=False if content else None)
    assert match in one_line(e) and str(path) in one_line(e)


def test_a_truncated_binary_file_is_one_line(tmp_path, vectors):
    data = format_word2vec(WORDS, vectors, binary=True)
    path = tmp_path / "v.bin"
    for cut in (len(data) - 2, len(data) - 30, 40):
        path.write_bytes(data[:cut])
        with pytest.raises(UserError) as e:
            KeyedVectors.load_word2vec_format(path, binary=True)
        msg = one_line(e)
        assert "truncated" in msg and "8 vectors of 6 float32" in msg and str(path) in msg
    path.write_bytes(data + b"extra")
    with pytest.raises(UserError, match="more data after the 8 vectors"):
        read_word2vec(path, binary=True)
    path.write_bytes(data[: data.index(b" ", 5)] + b"\xff" + data[data.index(b" ", 5) :])
    with pytest.raises(UserError, match="not UTF-8"):
        read_word2vec(path, binary=True)


def test_writing_is_atomic_and_checks_words(tmp_path, vectors):
    with pytest.raises(UserError, match="cannot write"):
        write_word2vec(tmp_path / "missing" / "v.txt", WORDS, vectors)
    path = write_word2vec(tmp_path / "v.txt", WORDS, vectors)
    assert os.listdir(tmp_path) == ["v.txt"]  # no temporary file left
    assert path.read_bytes().startswith(b"8 6\nthe ")
    with pytest.raises(ValueError, match="whitespace"):
        format_word2vec(["a b"], vectors[:1])


# --- queries -------------------------------------------------------------------------------------


@pytest.fixture
def kv_pair():
    gensim = pytest.importorskip("gensim")
    rng = np.random.default_rng(3)
    words = [f"w{i}" for i in range(200)]
    v = rng.standard_normal((200, 16)).astype(np.float32)
    g = gensim.models.KeyedVectors(16)
    g.add_vectors(words, v)
    return KeyedVectors(words, v), g


def test_queries_are_gensims(kv_pair):
    kv, g = kv_pair
    for pos, neg, restrict in ((["w3"], [], None), (["w1", "w7"], ["w2"], None), ("w5", "w9", 50)):
        ours = kv.most_similar(pos, neg, topn=8, restrict_vocab=restrict)
        theirs = g.most_similar(pos, neg, topn=8, restrict_vocab=restrict)
        assert [w for w, _ in ours] == [w for w, _ in theirs]
        np.testing.assert_allclose([c for _, c in ours], [c for _, c in theirs], atol=1e-5)
    assert kv.similarity("w1", "w2") == pytest.approx(float(g.similarity("w1", "w2")), abs=1e-6)
    group = ["w1", "w2", "w3", "w4", "w5"]
    assert kv.doesnt_match(group) == g.doesnt_match(group)
    assert torch.equal(kv["w4"], torch.tensor(g["w4"]))
    assert kv[["w4", "w0"]].shape == (2, 16)


def test_unknown_words_are_key_errors_of_one_line():
    kv = KeyedVectors(["a", "b"], torch.eye(2))
    with pytest.raises(KeyError) as e:
        kv["zz"]
    assert isinstance(e.value, UserError) and isinstance(e.value, UnknownWord)
    assert str(e.value) == "'zz' is not in the vocabulary (2 words)"
    with pytest.raises(UnknownWord):
        kv.most_similar(["a"], ["zz"])
    assert "zz" not in kv and "a" in kv and len(kv) == 2


# --- scores --------------------------------------------------------------------------------------


def _analogy_world(tmp_path):
    """Vectors where analogies hold up to noise: word = entity + relation role + noise."""
    rng = np.random.default_rng(7)
    D = 24
    entities = [f"e{i}" for i in range(12)]
    base = {e: rng.standard_normal(D) for e in entities}
    roles = {"": np.zeros(D), "_x": rng.standard_normal(D), "_y": rng.standard_normal(D)}
    words, rows = [], []
    for role, offset in roles.items():
        for e in entities:
            words.append(e + role)
            rows.append(base[e] + 1.5 * offset + 0.9 * rng.standard_normal(D))
    # a second spelling of a frequent word, further down the list, and filler words
    words += ["E0", "filler1", "filler2"]
    rows += [base["e0"] + 0.1 * rng.standard_normal(D)] + [rng.standard_normal(D)] * 2
    lines = []
    for section, role in (("relation-x", "_x"), ("gram-relation-y", "_y")):
        lines.append(f": {section}")
        for i in range(12):
            for j in range(12):
                if i != j:
                    a, b, c, d = entities[i], entities[i] + role, entities[j], entities[j] + role
                    lines.append(f"{a.upper()} {b} {c} {d}")
        lines.append(f"e0 e1 unknownword e2{role}")  # skipped: a word outside the vocabulary
    path = tmp_path / "q.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return words, np.asarray(rows, dtype=np.float32), path


@pytest.mark.parametrize("restrict", [None, 30])
def test_analogy_accuracy_is_gensims_per_section(tmp_path, restrict):
    gensim = pytest.importorskip("gensim")
    words, v, path = _analogy_world(tmp_path)
    ours = analogy_accuracy(words, torch.from_numpy(v), path, restrict_vocab=restrict)
    g = gensim.models.KeyedVectors(v.shape[1])
    g.add_vectors(words, v)
    score, sections = g.evaluate_word_analogies(path, restrict_vocab=restrict or len(words))
    assert [s.name for s in ours.sections] == [s["section"] for s in sections[:-1]]
    for mine, theirs in zip(ours.sections, sections):
        assert (mine.correct, mine.answered) == (
            len(theirs["correct"]),
            len(theirs["correct"]) + len(theirs["incorrect"]),
        )
    assert ours.accuracy == pytest.approx(score)
    assert 0.2 < ours.accuracy < 0.95  # neither trivial nor hopeless: the test can fail
    assert ours.sections[0].skipped >= 1
    assert "total" in ours.format() and "relation-x" in ours.format()


def test_word_pair_correlations_are_gensims(tmp_path, kv_pair):
    kv, g = kv_pair
    rng = np.random.default_rng(5)
    lines = ["# comment", "# Word 1\tWord 2\tHuman (mean)"]
    for _ in range(60):
        a, b = rng.integers(0, 200, 2)
        lines.append(f"W{a}\tw{b}\t{rng.integers(0, 10) / 2}")  # upper case and tied scores
    lines.append("w1\tnotaword\t3.0")
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    ours = word_pair_correlation(kv.words, kv.vectors, path, restrict_vocab=150)
    pearson_g, spearman_g, oov = g.evaluate_word_pairs(path, restrict_vocab=150)
    assert ours.spearman == pytest.approx(spearman_g.statistic, abs=1e-6)
    assert ours.pearson == pytest.approx(pearson_g.statistic, abs=1e-6)
    assert 100 * ours.skipped / (ours.pairs + ours.skipped) == pytest.approx(oov)


def test_ranks_and_spearman_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(2)
    x = rng.integers(0, 6, 50).astype(float)  # many ties
    y = x + rng.standard_normal(50)
    np.testing.assert_allclose(ranks(torch.tensor(x)).numpy(), stats.rankdata(x))
    assert spearman(torch.tensor(x), torch.tensor(y)) == pytest.approx(stats.spearmanr(x, y)[0])
    assert pearson(torch.tensor(x), torch.tensor(y)) == pytest.approx(stats.pearsonr(x, y)[0])


@pytest.mark.parametrize(
    "content,match",
    [
        ("a b c d\n", "q.txt:1: a question before the first ': section' line"),
        (": s\na b c\n", "q.txt:2: expected 4 words 'a b c d' or a ': section' line, got 3"),
        (": s\n", "no analogy questions"),
    ],
)
def test_malformed_analogy_files(tmp_path, content, match):
    path = tmp_path / "q.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError) as e:
        read_analogies(path)
    assert match in one_line(e) and str(path) in one_line(e)


def test_malformed_pair_files(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("a\tb\tc\n", encoding="utf-8")
    with pytest.raises(UserError, match="p.tsv:1: expected 'word1<TAB>word2<TAB>score'"):
        word_pair_correlation(["a", "b"], torch.eye(2), path)
    path.write_text("a\tb\t1\nzz\tb\t2\n", encoding="utf-8")
    with pytest.raises(UserError, match="fewer than 2 of its 2 pairs"):
        word_pair_correlation(["a", "b"], torch.eye(2), path)
