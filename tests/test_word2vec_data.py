"""word2vec's data: corpora and vocabulary (against gensim's), the draws (hand-made cases,
brute force, the compiled producer bit for bit), the noise table, and text8's download."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import threading
import zipfile
from collections import Counter

import numpy as np
import pytest
import torch

from unroll.data import text8, word_streams
from unroll.data.word_streams import build_corpus, build_vocab, count_words, sentences
from unroll.data.word_windows import (
    NoiseTable,
    Stream,
    chunk_examples,
    keep_probabilities,
    splitmix64,
    splitmix64_int,
    window_examples,
)
from unroll.errors import UserError
from unroll.nn.kernels import word2vec_cpu

TEXT = "the cat sat on the mat\nthe dog sat\n\na cat and a dog ran on the mat\n"


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


# --- corpora and vocabulary ----------------------------------------------------------------------


def test_a_file_is_lines_of_words_and_long_lines_are_cut(tmp_path, monkeypatch):
    path = tmp_path / "c.txt"
    words = [f"w{i % 37}" for i in range(2500)]
    path.write_text("a b\n" + " ".join(words) + "\n  \nlast line no newline", encoding="utf-8")
    monkeypatch.setattr(word_streams, "_BLOCK", 97)  # blocks end inside words and lines
    _, read = sentences(path, max_sentence_length=1000)
    got = list(read())
    assert got == [
        ["a", "b"],
        words[:1000],
        words[1000:2000],
        words[2000:],
        ["last", "line", "no", "newline"],
    ]


def test_a_directory_is_its_files_in_order_and_pydoc_is_the_default(tmp_path):
    (tmp_path / "b.txt").write_text("two\n", encoding="utf-8")
    (tmp_path / "a.txt").write_text("one\n", encoding="utf-8")
    (tmp_path / ".hidden").write_text("no\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_text("three\n", encoding="utf-8")
    name, read = sentences(tmp_path)
    assert list(read()) == [["one"], ["two"], ["three"]]
    name, read = sentences(None)
    assert name == "pydoc" and next(read())


def test_vocabulary_counts_order_and_encoding(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(TEXT, encoding="utf-8")
    corpus = build_corpus(path, min_count=2)
    counts = Counter(TEXT.split())
    # most frequent first, ties by the word; rarer words dropped before windows are drawn
    assert corpus.words == ["the", "a", "cat", "dog", "mat", "on", "sat"]
    assert corpus.counts.tolist() == [counts[w] for w in corpus.words]
    index = {w: i for i, w in enumerate(corpus.words)}
    kept = [[index[w] for w in line.split() if w in index] for line in TEXT.splitlines()]
    kept = [s for s in kept if s]
    assert corpus.ids.tolist() == [i for s in kept for i in s]
    assert corpus.starts.tolist() == np.cumsum([0] + [len(s) for s in kept]).tolist()
    assert corpus.sentence_index.tolist() == [k for k, s in enumerate(kept) for _ in s]
    assert corpus.raw_words == len(TEXT.split())
    assert build_corpus(path, min_count=2, max_vocab=3).words == ["the", "a", "cat"]


def test_chunks_are_whole_sentences_covering_the_corpus(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text(TEXT * 30, encoding="utf-8")
    corpus = build_corpus(path, min_count=1)
    chunks = corpus.chunks(25)
    assert chunks[0][0] == 0 and chunks[-1][1] == len(corpus)
    assert all(a == b for (_, a), (b, _) in zip(chunks, chunks[1:]))
    starts = set(corpus.starts.tolist())
    assert all(a in starts for a, _ in chunks)
    assert all(b - a >= 25 for a, b in chunks[:-1])


def test_vocabulary_is_gensims(tmp_path):
    gensim = pytest.importorskip("gensim")
    path = tmp_path / "c.txt"
    rng = np.random.default_rng(0)
    lines = [" ".join(f"w{int(z)}" for z in rng.zipf(1.3, 12) % 500) for _ in range(400)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    corpus = build_corpus(path, min_count=3)
    model = gensim.models.Word2Vec(min_count=3, sample=1e-3)
    model.build_vocab([line.split() for line in lines])
    theirs = {w: model.wv.get_vecattr(w, "count") for w in model.wv.index_to_key}
    assert dict(zip(corpus.words, corpus.counts.tolist())) == theirs
    # and the keep probabilities are gensim's (it stores them as a fraction of 2^32 - 1)
    keep = keep_probabilities(corpus.counts, 1e-3)
    sample_int = [model.wv.get_vecattr(w, "sample_int") for w in corpus.words]
    np.testing.assert_allclose(keep.numpy() * (2**32 - 1), sample_int, atol=1.0)
    assert (keep < 1).any() and (keep == 1).any()


@pytest.mark.parametrize(
    "write,kwargs,match",
    [
        ("  \n\n", {}, "the corpus is empty"),
        ("a b c a\n", {"min_count": 3}, "no word occurs min_count=3 times (4 words, the most"),
        (b"caf\xe9\n", {}, "not UTF-8 text"),
        (None, {}, "no such file or directory"),
    ],
)
def test_bad_corpora_are_one_line_errors(tmp_path, write, kwargs, match):
    path = tmp_path / "c.txt"
    if isinstance(write, bytes):
        path.write_bytes(write)
    elif write is not None:
        path.write_text(write, encoding="utf-8")
    with pytest.raises(UserError) as e:
        build_corpus(path, **kwargs)
    assert match in one_line(e)


def test_empty_directory(tmp_path):
    with pytest.raises(UserError, match="holds no files"):
        build_corpus(tmp_path)


def test_max_vocab_and_min_count():
    counts = Counter({"a": 5, "b": 5, "c": 2, "d": 1})
    vocab, c = build_vocab(counts, min_count=2)
    assert vocab.words == ["a", "b", "c"] and c == [5, 5, 2]
    assert build_vocab(counts, min_count=1, max_vocab=2)[0].words == ["a", "b"]
    assert count_words([["a", "b"], ["a"]]) == (Counter({"a": 2, "b": 1}), 3)


# --- draws ---------------------------------------------------------------------------------------


def test_splitmix64_on_tensors_is_the_64_bit_one():
    xs = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, 0x123456789ABCDEF0]
    signed = torch.tensor([x - 2**64 if x >= 2**63 else x for x in xs], dtype=torch.int64)
    got = [v % 2**64 for v in splitmix64(signed).tolist()]
    assert got == [splitmix64_int(x) for x in xs]
    assert splitmix64_int(0) == 0xE220A8397B1DCDAF  # SplitMix64's first output from seed 0


def test_streams_are_uniform_and_independent_of_everything_but_their_key():
    i = torch.arange(200_000)
    u = Stream(3, 1, Stream.SUBSAMPLE).uniform(i)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.005
    assert torch.equal(Stream(3, 1, 0).bits(i[5:9]), Stream(3, 1, 0).bits(i)[5:9])
    assert not torch.equal(Stream(3, 2, 0).bits(i[:9]), Stream(3, 1, 0).bits(i[:9]))
    b = Stream(3, 1, Stream.WINDOW).below(5, i)
    assert set(b.tolist()) == {0, 1, 2, 3, 4}


def test_alias_table_is_exact_and_draws_follow_it():
    counts = torch.tensor([1000, 300, 300, 20, 5, 1])
    table = NoiseTable(counts, 0.75)
    q = counts.double() ** 0.75
    q /= q.sum()
    torch.testing.assert_close(table.probs, q)
    V = len(counts)
    mass = table.accept / V  # what each column keeps, plus what it gives to its alias
    mass = mass.index_add(0, table.alias, (1 - table.accept) / V)
    torch.testing.assert_close(mass, q)
    draws = table.draw((400_000,), Stream(0, 1, 2), Stream(0, 1, 3))
    freq = torch.bincount(draws, minlength=V).double() / draws.numel()
    assert (freq - q).abs().max() < 4 * (q * (1 - q) / draws.numel()).sqrt().max()
    torch.testing.assert_close(table.log_expected(5), (5 * q).log().float())


def brute_force(ids, sentence, reach, cbow):
    """Windows by plain loops: neighbours j of i in the same sentence with |i - j| <= reach_i."""
    inputs, offsets, targets = [], [0], []
    for i in range(len(ids)):
        ctx = [
            ids[j]
            for j in range(len(ids))
            if j != i and abs(i - j) <= reach[i] and sentence[j] == sentence[i]
        ]
        if cbow and ctx:
            inputs += ctx
            offsets.append(len(inputs))
            targets.append(ids[i])
        elif not cbow:
            inputs += ctx
            targets += [ids[i]] * len(ctx)
    return inputs, offsets, targets


@pytest.mark.parametrize("cbow", [False, True])
def test_windows_by_hand_and_by_brute_force(cbow):
    ids = torch.tensor([10, 11, 12, 13, 14])
    sentence = torch.tensor([0, 0, 0, 1, 1])
    reach = torch.tensor([2, 1, 1, 1, 1])
    inputs, offsets, targets = window_examples(ids, sentence, reach, cbow=cbow)
    if not cbow:  # input = the neighbour, target = the word (the C tool's order)
        pairs = list(zip(inputs.tolist(), targets.tolist()))
        assert pairs == [(11, 10), (12, 10), (10, 11), (12, 11), (11, 12), (14, 13), (13, 14)]
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(1, 40))
        ids = torch.from_numpy(rng.integers(0, 9, n))
        sentence = torch.from_numpy(np.sort(rng.integers(0, 4, n)))
        reach = torch.from_numpy(rng.integers(1, 4, n))
        got = window_examples(ids, sentence, reach, cbow=cbow)
        want = brute_force(ids.tolist(), sentence.tolist(), reach.tolist(), cbow)
        assert got[0].tolist() == want[0] and got[2].tolist() == want[2]
        assert (got[1] is None) if not cbow else (got[1].tolist() == want[1])


@pytest.fixture(scope="module")
def ptb_like():
    rng = np.random.default_rng(1)
    lines = [
        " ".join(f"w{int(z)}" for z in rng.zipf(1.2, rng.integers(1, 30)) % 300) for _ in range(600)
    ]
    counts = Counter(w for line in lines for w in line.split())
    words = sorted(counts, key=lambda w: (-counts[w], w))
    index = {w: i for i, w in enumerate(words)}
    ids = [index[w] for line in lines for w in line.split()]
    sentence = [k for k, line in enumerate(lines) for _ in line.split()]
    return (
        torch.tensor(ids),
        torch.tensor(sentence),
        torch.tensor([counts[w] for w in words]),
    )


@pytest.mark.parametrize("cbow", [False, True])
@pytest.mark.parametrize("shrink", [True, False])
def test_compiled_producer_is_the_reference_bit_for_bit(ptb_like, cbow, shrink):
    if word2vec_cpu.kernel() is None:
        pytest.skip(f"no compiled kernel here: {word2vec_cpu.unavailable_reason()}")
    ids, sentence, counts = ptb_like
    common = dict(
        keep=keep_probabilities(counts, 1e-3),
        noise=NoiseTable(counts),
        window=5,
        negative=7,
        cbow=cbow,
        shrink=shrink,
        seed=11,
        epoch=2,
    )
    a, b = 500, 3500
    ref = chunk_examples(ids[a:b], sentence[a:b], a, impl="torch", **common)
    fast = chunk_examples(ids[a:b], sentence[a:b], a, impl="compiled", **common)
    assert len(ref) > 1000 and ref.negatives.shape == (len(ref), 7)
    for x, y in (
        (ref.inputs, fast.inputs),
        (ref.targets, fast.targets),
        (ref.negatives, fast.negatives),
    ):
        assert torch.equal(x, y)
    assert (ref.offsets is None) == (fast.offsets is None) == (not cbow)
    if cbow:
        assert torch.equal(ref.offsets, fast.offsets)
    # a draw depends on the corpus position, not on where the chunk starts
    head = chunk_examples(ids[a:b], sentence[a:b], a, impl="torch", **{**common, "negative": 1})
    whole = chunk_examples(ids[:b], sentence[:b], 0, impl="torch", **{**common, "negative": 1})
    assert len(whole) > len(head)
    again = chunk_examples(ids[a:b], sentence[a:b], a, impl="torch", **{**common, "epoch": 3})
    assert not torch.equal(again.negatives[:50], ref.negatives[:50])


def test_subsampling_keeps_the_expected_share(ptb_like):
    ids, sentence, counts = ptb_like
    keep = keep_probabilities(counts, 1e-2)
    ex = chunk_examples(
        ids, sentence, 0, keep=keep, noise=NoiseTable(counts), window=1, negative=1,
        cbow=True, shrink=False, seed=0, epoch=1, impl="torch",
    )  # fmt: skip
    del ex
    from unroll.data.word_windows import subsample

    kept = subsample(ids, torch.arange(len(ids)), keep, Stream(0, 1, Stream.SUBSAMPLE))
    expected = float(keep[ids].sum())
    assert abs(int(kept.sum()) - expected) < 4 * expected**0.5
    frequent = ids == 0
    assert kept[frequent].float().mean() == pytest.approx(float(keep[0]), abs=0.05)


# --- text8's download ----------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(_Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _zip(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member, data)
    return buf.getvalue()


@pytest.fixture
def tiny_text8(server, tmp_path, monkeypatch):
    root, url = server
    text = b" anarchism originated as a term of abuse" * 50
    archive = _zip("text8", text)
    (root / "text8.zip").write_bytes(archive)
    monkeypatch.setattr(text8, "TEXT8_ZIP_SHA256", hashlib.sha256(archive).hexdigest())
    monkeypatch.setattr(text8, "TEXT8_BYTES", len(text))
    monkeypatch.setenv(text8.URL_ENV, url + "text8.zip")
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("UNROLL_DATA", raising=False)
    return root, text


def test_text8_is_downloaded_checked_and_unpacked(tiny_text8, tmp_path, monkeypatch):
    root, text = tiny_text8
    path = text8.text8_path()
    assert path.read_bytes() == text
    assert sorted(os.listdir(path.parent)) == ["text8", "text8.zip"]  # no temporary files
    (root / "text8.zip").unlink()  # found in the cache from now on
    corpus = build_corpus("text8", min_count=1)
    assert corpus.name == "text8" and corpus.raw_words == len(text.split())
    assert len(corpus.starts) == 2  # one line: one sentence (shorter than 10,000 words)
    # $UNROLL_DATA/text8/text8 comes first
    local = tmp_path / "data" / "text8"
    local.mkdir(parents=True)
    (local / "text8").write_text("just this", encoding="utf-8")
    monkeypatch.setenv("UNROLL_DATA", str(tmp_path / "data"))
    assert build_corpus("text8", min_count=1).words == ["just", "this"]


def test_text8_with_a_wrong_digest_keeps_nothing(tiny_text8, tmp_path, monkeypatch):
    monkeypatch.setattr(text8, "TEXT8_ZIP_SHA256", "0" * 64)
    with pytest.raises(UserError) as e:
        text8.text8_path()
    assert "SHA-256 mismatch" in one_line(e)
    assert not (tmp_path / "cache" / "text8").exists() or not os.listdir(
        tmp_path / "cache" / "text8"
    )


def test_text8_archive_without_the_member_or_offline(tiny_text8, tmp_path, monkeypatch):
    root, _ = tiny_text8
    archive = _zip("other", b"x")
    (root / "text8.zip").write_bytes(archive)
    monkeypatch.setattr(text8, "TEXT8_ZIP_SHA256", hashlib.sha256(archive).hexdigest())
    with pytest.raises(UserError) as e:
        text8.text8_path()
    assert "not the text8 archive" in one_line(e)
    assert not (tmp_path / "cache" / "text8" / "text8").exists()
    monkeypatch.setenv(text8.URL_ENV, "http://127.0.0.1:9/text8.zip")
    (tmp_path / "cache" / "text8" / "text8.zip").unlink()
    with pytest.raises(UserError) as e:
        text8.text8_path()
    assert "the download failed" in one_line(e) and "text8.zip in" in one_line(e)
    with pytest.raises(UserError, match="text8 not found"):
        text8.text8_path(download_ok=False)
