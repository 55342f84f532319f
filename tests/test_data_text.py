"""Reader: vocabulary order, <eos>, <unk>, char level, bad input, and the real PTB counts."""

import os
from pathlib import Path

import pytest
import torch

from unroll.data.corpora import resolve_corpus, tokenize_prompt
from unroll.data.text import (
    EOS,
    UNK,
    Corpus,
    Vocabulary,
    find_split_files,
    load_corpus,
    read_text_file,
    tokenize,
)
from unroll.errors import UserError


def write_corpus(d: Path, train: str, valid: str, test: str, prefix: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (d / f"{prefix}{split}.txt").write_text(text, encoding="utf-8")
    return d


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg
    return msg


# --- vocabulary ------------------------------------------------------------------------------


def test_vocab_ordered_by_count_then_word():
    # counts: c 3, a 2, b 2, <eos> 2, d 1 -> ties (a, b, <eos>) by the word itself
    tokens = tokenize("b a c\nc a b d c\n")
    v = Vocabulary.build(tokens)
    assert v.words == ["c", "<eos>", "a", "b", "d"]  # "<" sorts before letters
    assert [v.id(w) for w in ["c", "<eos>", "a", "b", "d"]] == [0, 1, 2, 3, 4]
    assert v.word(3) == "b" and len(v) == 5 and "d" in v and "z" not in v


def test_vocab_ties_broken_by_the_whole_word():
    tokens = ["ba", "ab", "bb", "aa", "b", "a", "ab", "ba", "aa", "bb", "a", "b"]  # all twice
    assert Vocabulary.build(tokens).words == ["a", "aa", "ab", "b", "ba", "bb"]


def test_vocab_order_independent_of_input_order():
    a = Vocabulary.build(["x", "y", "z", "y", "z", "z", "w", "w", "w"])
    b = Vocabulary.build(["w", "z", "y", "w", "z", "x", "z", "w", "y"])
    assert a.words == b.words == ["w", "z", "y", "x"]


def test_vocab_min_count_and_max_size_add_unk_ranked_by_dropped_counts():
    tokens = ["a", "a", "a", "a", "b", "b", "b", "c", "c", "d", "e", "f"]  # a4 b3 c2 d1 e1 f1
    # <unk> stands for d, e, f: 3 tokens, tied with b and before it ("<" < "b")
    assert Vocabulary.build(tokens, min_count=2).words == ["a", UNK, "b", "c"]
    # <unk> stands for c..f: 5 tokens, the most frequent
    assert Vocabulary.build(tokens, min_count=3).words == [UNK, "a", "b"]
    assert Vocabulary.build(tokens, max_size=3).words == [UNK, "a", "b"]
    assert Vocabulary.build(tokens, unk=True).words == ["a", "b", "c", "d", "e", "f", UNK]
    assert Vocabulary.build(tokens).words == ["a", "b", "c", "d", "e", "f"]  # nothing added
    assert len(Vocabulary.build(tokens, max_size=1, min_count=1)) == 1


def test_vocab_roundtrip_and_decode():
    v = Vocabulary.build(tokenize("the cat sat\nthe dog\n"))
    w = Vocabulary.from_list(v.to_list())
    assert w == v and w.words is not v.words
    ids = v.encode(["the", "dog", EOS])
    assert ids.dtype == torch.long and ids.shape == (3,)
    assert v.decode(ids) == ["the", "dog", EOS] == v.decode(ids.tolist())
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(IndexError):
        v.word(len(v))


def test_unseen_word_maps_to_unk_when_vocab_has_it():
    v = Vocabulary(["the", UNK, EOS, "cat"])
    assert v.encode(["the", "zebra", "cat", EOS]).tolist() == [0, 1, 3, 2]


def test_unseen_word_without_unk_names_file_and_line(tmp_path):
    d = write_corpus(tmp_path / "c", "a b\nb a\n", "a b\nb zebra a\n", "a\n")
    with pytest.raises(UserError) as e:
        load_corpus(d)
    msg = one_line(e)
    assert f"{d / 'valid.txt'}:2:" in msg and "'zebra'" in msg and UNK in msg
    (d / "test.txt").write_text("yak\n")
    (d / "valid.txt").write_text("a\n")
    with pytest.raises(UserError, match=r"test\.txt:1: 'yak'"):
        load_corpus(d)


def test_encode_prompt_reports_unknown_words():
    v = Vocabulary(["the", UNK, EOS, "cat"])
    ids, unknown = v.encode_prompt(["the", "gnu", "cat", "gnu", "yak"])
    assert ids.tolist() == [0, 1, 3, 1, 1] and unknown == ["gnu", "yak"]
    assert v.encode_prompt(["the", "cat"])[1] == []
    with pytest.raises(UserError, match="'gnu'") as e:
        Vocabulary(["the", EOS]).encode_prompt(["the", "gnu"])
    one_line(e)


# --- tokenising --------------------------------------------------------------------------------


def test_eos_at_every_line_end():
    assert tokenize(" a  b \nc\n") == ["a", "b", EOS, "c", EOS]
    assert tokenize("a\n\nb") == ["a", EOS, EOS, "b", EOS]  # empty line, no final newline
    assert tokenize("a\r\nb\r\n") == ["a", EOS, "b", EOS]


def test_char_level_writes_spaces_as_underscore():
    assert tokenize(" the  cat \nab\n", "char") == [*"the_cat", EOS, "a", "b", EOS]
    with pytest.raises(UserError, match="level"):
        tokenize("a", "byte")


def test_char_level_corpus(tmp_path):
    d = write_corpus(tmp_path / "c", "ab ba\n", "ba\n", "a b\n")
    c = load_corpus(d, level="char")
    assert c.level == "char" and sorted(c.vocab.words) == sorted(["a", "b", "_", EOS])
    assert c.vocab.decode(c.test) == ["a", "_", "b", EOS]


# --- corpus directories -----------------------------------------------------------------------


def test_load_corpus_vocab_from_train_only(tmp_path):
    d = write_corpus(tmp_path / "c", "x y y\n", "y x\n", "x\n", prefix="ptb.")
    c = load_corpus(d)
    assert isinstance(c, Corpus) and c.name == str(d) and c.level == "word"
    assert c.vocab.words == ["y", "<eos>", "x"]
    assert c.train.tolist() == [2, 0, 0, 1] and c.valid.tolist() == [0, 2, 1]
    assert c.test.tolist() == [2, 1] and c.split("test") is c.test
    # a given vocabulary (a checkpoint's) is used as is, for train too
    v = Vocabulary(["x", "y", UNK, EOS])
    c2 = load_corpus(d, vocab=v)
    assert c2.vocab is v and c2.train.tolist() == [0, 1, 1, 3]


def test_find_split_files_prefers_ptb_names(tmp_path):
    d = write_corpus(tmp_path / "c", "a\n", "a\n", "a\n")
    (d / "ptb.train.txt").write_text("b\n")
    files = find_split_files(d)
    assert files == {"train": d / "ptb.train.txt", "valid": d / "valid.txt", "test": d / "test.txt"}


def test_missing_split_file_names_dir_and_expected_files(tmp_path):
    d = write_corpus(tmp_path / "c", "a\n", "a\n", "a\n")
    (d / "valid.txt").unlink()
    with pytest.raises(UserError) as e:
        find_split_files(d)
    msg = one_line(e)
    assert str(d) in msg and "ptb.valid.txt or valid.txt" in msg and "ptb.train.txt" not in msg


def test_missing_directory(tmp_path):
    with pytest.raises(UserError) as e:
        load_corpus(tmp_path / "nope")
    assert one_line(e) == f"{tmp_path / 'nope'}: no such directory"
    with pytest.raises(UserError) as e:
        resolve_corpus(str(tmp_path / "nope"))
    assert one_line(e).startswith(f"--data {tmp_path / 'nope'}: no such directory")


def test_empty_file(tmp_path):
    d = write_corpus(tmp_path / "c", "a\n", "", "a\n")
    with pytest.raises(UserError) as e:
        load_corpus(d)
    assert one_line(e) == f"{d / 'valid.txt'}: file is empty"
    (d / "valid.txt").write_text(" \n\n")
    with pytest.raises(UserError, match="file is empty"):
        read_text_file(d / "valid.txt")


def test_non_utf8_file_names_line_and_offset(tmp_path):
    p = tmp_path / "train.txt"
    p.write_bytes(b"ok line\nbad \xff here\n")
    with pytest.raises(UserError) as e:
        read_text_file(p)
    msg = one_line(e)
    assert msg.startswith(f"{p}:2: not UTF-8") and "offset 12" in msg and "0xff" in msg


def test_utf8_byte_order_mark_is_not_a_word(tmp_path):
    p = tmp_path / "train.txt"
    p.write_bytes("\ufeffcafé au lait\n".encode())
    assert read_text_file(p) == ["café", "au", "lait", EOS]


def test_prompt_tokens_of_other_corpora_are_kept_as_written():
    assert tokenize_prompt("The cat N\n", data="ptb") == ["The", "cat", "N"]
    assert tokenize_prompt("a b\nc", data="/some/dir") == ["a", "b", EOS, "c"]


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_text_file(tmp_path / "x.txt")


def test_resolve_corpus_directory_and_embedded(tmp_path):
    d = write_corpus(tmp_path / "c", "a b\n", "a\n", "b\n")
    assert resolve_corpus(str(d)).name == str(d)
    for data in (None, "pydoc", "embedded"):
        assert resolve_corpus(data).name == "pydoc"


# --- the real PTB -------------------------------------------------------------------------------

PTB_DIR = Path(os.environ.get("UNROLL_DATA", "/nonexistent")) / "ptb"
needs_ptb = pytest.mark.skipif(
    not (PTB_DIR / "ptb.train.txt").is_file(),
    reason="PTB not found: set UNROLL_DATA (CI: ../shared/data)",
)


@pytest.fixture(scope="module")
def ptb():
    return load_corpus(PTB_DIR)


@needs_ptb
def test_real_ptb_counts(ptb):
    # The well-known sizes (words + one <eos> per line), and TensorFlow's first ids.
    assert len(ptb.vocab) == 10000
    assert (ptb.train.numel(), ptb.valid.numel(), ptb.test.numel()) == (929589, 73760, 82430)
    assert ptb.vocab.words[:4] == ["the", UNK, EOS, "N"]
    assert ptb.train.max().item() == 9999 and ptb.train.min().item() == 0


@needs_ptb
def test_resolve_ptb_uses_unroll_data(ptb):
    c = resolve_corpus("ptb", vocab=ptb.vocab)
    assert c.name == "ptb" and torch.equal(c.test, ptb.test)
