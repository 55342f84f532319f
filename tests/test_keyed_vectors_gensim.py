"""KeyedVectors with gensim's names and results, asked side by side with gensim's own
KeyedVectors holding the same words and vectors (gensim is in the dev extra)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unroll.errors import UserError
from unroll.metrics.embeddings import correlation_p_value
from unroll.models.keyed_vectors import KeyedVectors, UnknownWord

gensim = pytest.importorskip("gensim")

WORDS = [f"w{i}" for i in range(300)]


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(11)
    v = rng.standard_normal((len(WORDS), 20)).astype(np.float32)
    v[5] *= 40.0  # norms that differ: a mean of raw vectors is not a mean of unit ones
    g = gensim.models.KeyedVectors(20)
    g.add_vectors(WORDS, v)
    return KeyedVectors(WORDS, v), g, v


def same_answers(ours, theirs, tol=1e-5):
    assert [w for w, _ in ours] == [w for w, _ in theirs]
    np.testing.assert_allclose([c for _, c in ours], [c for _, c in theirs], atol=tol)


def test_gensims_attribute_names(pair):
    kv, g, v = pair
    assert kv.index_to_key == g.index_to_key
    assert kv.key_to_index == g.key_to_index
    assert kv.vector_size == g.vector_size == 20
    assert kv.get_index("w7") == g.get_index("w7") == 7
    assert kv.get_index(12) == g.get_index(12) == 12  # a row number is taken as it is
    assert kv.get_index("nope", default=-1) == -1
    with pytest.raises(UnknownWord):
        kv.get_index("nope")
    assert kv.has_index_for("w3") and not kv.has_index_for("nope")
    np.testing.assert_array_equal(kv.get_vector("w5").numpy(), g.get_vector("w5"))
    np.testing.assert_allclose(
        kv.get_vector("w5", norm=True).numpy(), g.get_vector("w5", True), rtol=1e-6
    )
    np.testing.assert_allclose(kv.get_normed_vectors().numpy(), g.get_normed_vectors(), atol=1e-6)


@pytest.mark.parametrize(
    "positive,negative,restrict",
    [
        (["w1"], [], None),
        (["w1", "w5"], ["w2"], None),
        ([("w1", 2.0), ("w5", 0.5)], [("w9", -0.25)], 100),  # weights
        ("w4", "w8", 50),  # bare strings
    ],
)
def test_most_similar_with_weights_is_gensims(pair, positive, negative, restrict):
    kv, g, _ = pair
    ours = kv.most_similar(positive, negative, topn=7, restrict_vocab=restrict)
    same_answers(ours, g.most_similar(positive, negative, topn=7, restrict_vocab=restrict))


def test_a_vector_in_positive_and_similar_by_vector(pair):
    kv, g, v = pair
    probe = v[3] + 0.5 * v[17]
    same_answers(
        kv.most_similar(positive=[probe, "w2"], topn=6), g.most_similar([probe, "w2"], topn=6)
    )
    same_answers(
        kv.most_similar([torch.from_numpy(probe)], topn=5), g.most_similar([probe], topn=5)
    )
    same_answers(kv.similar_by_vector(probe, topn=8), g.similar_by_vector(probe, topn=8))
    same_answers(kv.similar_by_key("w9", topn=4), g.similar_by_key("w9", topn=4))
    same_answers(kv.similar_by_word("w9", topn=4), g.similar_by_word("w9", topn=4))
    with pytest.raises(UserError, match="a vector of 3 numbers given; these vectors have 20"):
        kv.similar_by_vector(np.ones(3))


def test_topn_none_gives_every_similarity_and_topn_0_none(pair):
    kv, g, _ = pair
    all_ours = kv.most_similar(["w1", "w2"], ["w3"], topn=None)
    np.testing.assert_allclose(
        all_ours.numpy(), g.most_similar(["w1", "w2"], ["w3"], topn=None), atol=1e-5
    )
    restricted = kv.most_similar("w1", topn=None, restrict_vocab=40)
    assert restricted.shape == (40,)
    assert kv.most_similar("w1", topn=0) == g.most_similar("w1", topn=0) == []


def test_unknown_words_still_raise(pair):
    kv, _, _ = pair
    with pytest.raises(UnknownWord, match="'zzz' is not in the vocabulary"):
        kv.most_similar(["w1", "zzz"])
    with pytest.raises(UserError, match="give at least one"):
        kv.most_similar()


@pytest.mark.parametrize("positive,negative", [(["w1", "w5"], ["w2"]), (["w7"], []), ("w3", "w4")])
def test_most_similar_cosmul_is_gensims(pair, positive, negative):
    kv, g, _ = pair
    same_answers(
        kv.most_similar_cosmul(positive, negative, topn=6),
        g.most_similar_cosmul(positive, negative, topn=6),
    )
    np.testing.assert_allclose(
        kv.most_similar_cosmul(positive, negative, topn=None).numpy(),
        g.most_similar_cosmul(positive, negative, topn=None),
        rtol=1e-4,
    )


def test_distances_ranks_and_set_similarities_are_gensims(pair):
    kv, g, v = pair
    assert kv.distance("w1", "w2") == pytest.approx(float(g.distance("w1", "w2")), abs=1e-6)
    assert kv.n_similarity(["w1", "w5"], ["w2", "w3"]) == pytest.approx(
        float(g.n_similarity(["w1", "w5"], ["w2", "w3"])), abs=1e-6
    )
    np.testing.assert_allclose(kv.distances("w4").numpy(), g.distances("w4"), atol=1e-6)
    np.testing.assert_allclose(
        kv.distances(v[8], ["w1", "w2", "w3"]).numpy(),
        g.distances(v[8], ["w1", "w2", "w3"]),
        atol=1e-6,
    )
    for a, b in (("w1", "w2"), ("w5", "w250"), ("w0", "w0")):
        assert kv.rank(a, b) == g.rank(a, b)
        assert kv.closer_than(a, b) == g.closer_than(a, b)
    assert kv.most_similar_to_given("w1", ["w2", "w3", "w9"]) == g.most_similar_to_given(
        "w1", ["w2", "w3", "w9"]
    )
    mean = kv.get_mean_vector(["w1", "w5", v[2]], weights=[1.0, -2.0, 0.5])
    np.testing.assert_allclose(
        mean.numpy(), g.get_mean_vector(["w1", "w5", v[2]], weights=[1.0, -2.0, 0.5]), atol=1e-6
    )


def test_analogies_and_pairs_unpack_as_gensims(tmp_path, pair):
    kv, g, _ = pair
    rng = np.random.default_rng(4)
    lines = [": first"]
    for _ in range(40):
        lines.append(" ".join(f"w{i}" for i in rng.integers(0, 30, 4)))
    lines += [": second", "w1 w2 w3 w4", "w5 w6 notaword w7"]
    questions = tmp_path / "q.txt"
    questions.write_text("\n".join(lines) + "\n", encoding="utf-8")
    score, sections = kv.evaluate_word_analogies(questions, restrict_vocab=300)
    g_score, g_sections = g.evaluate_word_analogies(questions, restrict_vocab=300)
    assert score == pytest.approx(g_score)
    assert sections == g_sections  # names, and every question in its correct/incorrect list
    assert sections[-1]["section"] == "Total accuracy"

    pairs = tmp_path / "p.tsv"
    rows = [f"w{a}\tw{b}\t{rng.integers(0, 10)}" for a, b in rng.integers(0, 300, (50, 2))]
    pairs.write_text("\n".join([*rows, "w1\tnotaword\t2"]) + "\n", encoding="utf-8")
    (p, p_p), (s, s_p), oov = kv.evaluate_word_pairs(pairs, restrict_vocab=300)
    (gp, gp_p), (gs, gs_p), g_oov = g.evaluate_word_pairs(pairs, restrict_vocab=300)
    assert (p, s) == pytest.approx((gp, gs), abs=1e-6)
    assert (p_p, s_p) == pytest.approx((gp_p, gs_p), rel=1e-6)
    assert oov == pytest.approx(g_oov)


def test_correlation_p_values_match_scipys():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (3, 7, 40, 2000):
        x = rng.standard_normal(n)
        y = 0.2 * x + rng.standard_normal(n)
        r, p = stats.pearsonr(x, y)
        assert correlation_p_value(float(r), n) == pytest.approx(p, rel=1e-9, abs=1e-300)
    assert np.isnan(correlation_p_value(0.5, 2))  # no degrees of freedom


def test_evaluation_files_are_found_by_name_as_the_cli_finds_them(pair, monkeypatch, tmp_path):
    kv, _, _ = pair
    root = tmp_path / "data"
    (root / "word2vec").mkdir(parents=True)
    (root / "word2vec" / "questions-words.txt").write_text(": s\nw1 w2 w3 w4\n", encoding="utf-8")
    monkeypatch.setenv("UNROLL_DATA", str(root))
    monkeypatch.chdir(tmp_path)  # not where the file is
    assert kv.evaluate_word_analogies("questions-words.txt").file.endswith(
        "word2vec/questions-words.txt"
    )
    with pytest.raises(UserError, match="no-such-dir/q.txt: no such file"):
        kv.evaluate_word_analogies("no-such-dir/q.txt")


def test_save_and_load_round_trip_without_pickle(tmp_path, pair):
    kv, _, v = pair
    path = kv.save(tmp_path / "vectors.npz")
    back = KeyedVectors.load(path)
    assert back.words == kv.words
    assert back.vectors.numpy().tobytes() == v.tobytes()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="bad.npz: not a file KeyedVectors.save wrote"):
        KeyedVectors.load(tmp_path / "bad.npz")
    bad = v.copy()
    bad[3, 2] = np.nan
    np.savez(tmp_path / "nan.npz", words=np.array(WORDS), vectors=bad)
    with pytest.raises(UserError, match="nan.npz: the vectors hold inf or nan"):
        KeyedVectors.load(tmp_path / "nan.npz")


def test_to_and_from_gensim(pair):
    kv, _, v = pair
    g = kv.to_gensim()
    assert g.index_to_key == WORDS and g.vectors.tobytes() == v.tobytes()
    back = KeyedVectors.from_gensim(g)
    assert back.words == WORDS and back.vectors.numpy().tobytes() == v.tobytes()
