"""One line-reading rule for every reader of text (`unroll.textio`): records end at \\n (and
\\r\\n), nothing else; a lone \\r is refused with file:line; other separators stay inside their
line. Each reader is tested here on the separators that `str.splitlines` splits at, so a
reader that goes back to `splitlines` (or to Python's universal newlines) fails."""

from __future__ import annotations

import io
import random
import struct

import numpy as np
import pytest

from unroll.data import pairs as P
from unroll.data.images import read_class_names
from unroll.data.text import load_corpus, read_text_file
from unroll.data.timeseries import read_csv
from unroll.data.word2vec_format import read_word2vec
from unroll.data.word_streams import build_corpus, sentences
from unroll.errors import UserError
from unroll.metrics.embeddings import read_analogies, read_word_pairs

# Every character `str.splitlines` ends a line at, besides \n and \r\n.
SEPARATORS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"]


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text, text
    return text


def test_lines_end_at_newline_alone():
    from unroll import textio  # (here: the readers' tests below run on any version)

    text = "a" + "b".join(SEPARATORS) + "c\nd\r\ne\n\nf"
    assert textio.split_lines(text, "x") == ["a" + "b".join(SEPARATORS) + "c", "d", "e", "", "f"]
    assert textio.split_lines("", "x") == [] and textio.split_lines("\n", "x") == [""]
    assert textio.split_lines("a\r\n", "x") == ["a"]


@pytest.mark.parametrize("text,line", [("a\rb\n", 1), ("a\nb\r\nc\rd", 3), ("a\n\r", 2)])
def test_a_lone_carriage_return_is_refused_with_its_line(text, line):
    from unroll import textio  # (here: the readers' tests below run on any version)

    with pytest.raises(UserError) as e:
        textio.split_lines(text, "f.txt")
    assert one_line(e).startswith(f"f.txt:{line}: a carriage return")


def test_files_stdin_and_byte_order_marks(tmp_path):
    from unroll import textio  # (here: the readers' tests below run on any version)

    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbfone\r\ntwo\xe2\x80\xa8half\n")
    assert textio.read_lines(path) == ["one", "two\u2028half"]
    stdin = io.TextIOWrapper(io.BytesIO(b"a\x0bb\nc\n"), encoding="utf-8")
    assert textio.stream_lines(stdin) == ["a\x0bb", "c"]
    assert textio.stream_lines(io.StringIO("a\u2028b\n")) == ["a\u2028b"]  # no .buffer
    path.write_bytes(b"ok\nno \xff\n")
    with pytest.raises(UserError) as e:
        textio.read_lines(path)
    assert one_line(e) == f"{path}:2: not UTF-8 text (byte 0xff at offset 6)"
    for bad, match in ((tmp_path / "none", "no such file"), (tmp_path, "is a directory")):
        with pytest.raises(UserError, match=match):
            textio.read_lines(bad)


@pytest.mark.parametrize("block", [1, 2, 3, 5, 8, 64])
def test_streamed_lines_are_the_same_lines_whatever_the_block_size(tmp_path, block):
    """`iter_line_parts` (the word2vec corpora's reader, which never holds a long line) cuts
    blocks anywhere: inside a \\r\\n, inside a multi-byte character, inside a word."""
    from unroll import textio  # (here: the readers' tests below run on any version)

    rng = random.Random(block)
    alphabet = ["a", "b", " ", "\n", "\r\n", "é", "€", "𝄞", *SEPARATORS]
    for trial in range(20):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        path = tmp_path / f"t{trial}.txt"
        path.write_bytes(text.encode("utf-8"))
        lines, current = [], ""
        for part, ends in textio.iter_line_parts(path, block):
            current += part
            if ends:
                lines.append(current)
                current = ""
        if current:
            lines.append(current)
        assert lines == textio.split_lines(text, "t"), repr(text)


@pytest.mark.parametrize("block", [1, 2, 4, 1 << 20])
def test_streamed_lines_refuse_a_lone_carriage_return_and_bad_bytes(tmp_path, block):
    from unroll import textio  # (here: the readers' tests below run on any version)

    path = tmp_path / "t.txt"
    for data, message in (
        (b"ab\ncd\ref\n", "t.txt:2: a carriage return"),
        (b"ab\ncd\r", "t.txt:2: a carriage return"),
        (b"ab\r\ncd\n\xff", "t.txt:3: not UTF-8 text"),
    ):
        path.write_bytes(data)
        with pytest.raises(UserError) as e:
            list(textio.iter_line_parts(path, block))
        assert message in one_line(e), (data, block)


def test_output_files_are_checked_before_any_work(tmp_path):
    from unroll import textio  # (here: the readers' tests below run on any version)

    assert textio.output_file(tmp_path / "a.png", "--png") == tmp_path / "a.png"
    with pytest.raises(UserError, match="--png .*: cannot write \\(it is a directory"):
        textio.output_file(tmp_path, "--png")
    with pytest.raises(UserError, match="cannot write \\(no such directory: .*/no\\)"):
        textio.output_file(tmp_path / "no" / "a.png", "--out")
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="cannot write \\(not a directory"):
        textio.output_file(tmp_path / "f" / "a.png", "--out")


# -- every reader, on every separator ---------------------------------------------------------


def test_seq2seq_pairs_stay_aligned(tmp_path):
    """A separator inside a source line and another inside a later target line: with
    `splitlines` both files grow by one line (equal counts, no error) and every pair between
    the two lines is shifted."""
    sources = [f"s{i}" for i in range(12)]
    targets = [f"t{i}" for i in range(12)]
    sources[2] = "s2" + SEPARATORS[0] + "x"
    targets[9] = "t9" + SEPARATORS[3] + "y"
    for split in ("train", "valid"):
        (tmp_path / f"{split}.src").write_text("\n".join(sources) + "\n", encoding="utf-8")
        (tmp_path / f"{split}.tgt").write_text("\r\n".join(targets) + "\r\n", encoding="utf-8")
    data = P.pair_files(tmp_path, "char", max_tokens=20)
    assert len(data.train) == 12
    for i in range(12):
        assert "".join(data.train.sources[i]) == sources[i]
        assert "".join(data.train.targets[i]) == targets[i]
    words = P.pair_files(tmp_path, "word", max_tokens=20)  # a separator is whitespace there
    assert words.train.sources[2] == ["s2", "x"] and words.train.targets[9] == ["t9", "y"]


def test_seq2seq_refuses_its_markers_in_word_data_but_keeps_unk(tmp_path):
    for split in ("train", "valid"):
        (tmp_path / f"{split}.src").write_text("a <unk> b\nc\n", encoding="utf-8")
        (tmp_path / f"{split}.tgt").write_text("x\ny <s>\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        P.pair_files(tmp_path, "word")
    assert one_line(e).startswith(f"{tmp_path / 'train.tgt'}:2: '<s>' is reserved")
    (tmp_path / "train.tgt").write_text("x\ny\n", encoding="utf-8")
    (tmp_path / "valid.tgt").write_text("x\ny\n", encoding="utf-8")
    assert P.pair_files(tmp_path, "word").train.sources[0] == ["a", "<unk>", "b"]
    assert P.pair_files(tmp_path, "char").train.targets[1] == ["y"]  # chars: no markers


def test_a_language_model_corpus(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a\u2028b c\nd\x0ce\r\n", encoding="utf-8")
    assert read_text_file(path) == ["a", "b", "c", "<eos>", "d", "e", "<eos>"]
    assert read_text_file(path, "char") == list("a_b_c") + ["<eos>"] + list("d_e") + ["<eos>"]
    path.write_text("the <unk> cat\nsat <eos> on\n", encoding="utf-8")
    with pytest.raises(UserError) as e:
        read_text_file(path)
    assert one_line(e).startswith(f"{path}:2: '<eos>' is reserved")
    path.write_text("the <unk> cat\n", encoding="utf-8")  # PTB's own unknown word is a word
    assert read_text_file(path) == ["the", "<unk>", "cat", "<eos>"]
    path.write_text("the cat\rsat\n", encoding="utf-8")
    with pytest.raises(UserError, match=":1: a carriage return"):
        read_text_file(path)


def test_a_ptb_layout_corpus_keeps_its_unk(tmp_path):
    for split in ("train", "valid", "test"):
        (tmp_path / f"ptb.{split}.txt").write_text(" the <unk> cat \n a <unk> \n")
    corpus = load_corpus(tmp_path)
    assert "<unk>" in corpus.vocab and corpus.train.numel() == 7


def test_word2vec_corpora(tmp_path, monkeypatch):
    import unroll.data.word_streams as ws

    path = tmp_path / "c.txt"
    path.write_text("a b\u2028c\nd\x1ce f\r\ng\n", encoding="utf-8")
    for block in (1, 3, 1 << 22):
        monkeypatch.setattr(ws, "_BLOCK", block)
        assert list(sentences(path)[1]()) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    path.write_text("a b\nc\rd\n", encoding="utf-8")
    with pytest.raises(UserError, match="c.txt:2: a carriage return"):
        build_corpus(path, min_count=1)


def test_word2vec_vector_text_files(tmp_path):
    path = tmp_path / "v.txt"
    path.write_text("2 2\r\nthe 1 2\r\nof 3 4\r\n", encoding="utf-8")
    words, vectors = read_word2vec(path, binary=False)
    assert words == ["the", "of"] and vectors.tolist() == [[1, 2], [3, 4]]
    path.write_text("2 2\nthe 1 2\nof\u2028x 3 4\n", encoding="utf-8")  # a word, whole
    assert read_word2vec(path, binary=False)[0] == ["the", "of\u2028x"]


def test_analogy_and_similarity_files(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text(": capitals\nathens greece\u2028oslo norway\n", encoding="utf-8")
    assert read_analogies(path) == [("capitals", [("athens", "greece", "oslo", "norway")])]
    path = tmp_path / "ws.tsv"
    path.write_text("cat\tdog\t7.5\r\ncar\u0085x\tbus\t6\n", encoding="utf-8")
    assert read_word_pairs(path) == [("cat", "dog", 7.5), ("car\u0085x", "bus", 6.0)]


def test_cmudict_and_class_names(tmp_path):
    path = tmp_path / "dict"
    path.write_text("cat K AE1 T\x0c\ndog D AO1 G\r\n", encoding="utf-8")
    assert P.read_cmudict(path) == {"cat": [["K", "AE", "T"]], "dog": [["D", "AO", "G"]]}
    path = tmp_path / "classes.txt"
    path.write_text("zero\nun\x0bune\ntwo\n", encoding="utf-8")
    assert read_class_names(path) == ("zero", "un\x0bune", "two")


def test_csv_series(tmp_path):
    path = tmp_path / "s.csv"
    rows = "".join(f"{i},{i % 5}\r\n" for i in range(30))
    path.write_text('t,"y\r\nvalue"\r\n' + rows, encoding="utf-8")  # a quoted line break
    series = read_csv(path)
    assert series.columns == ["y\nvalue"] and len(series.values) == 30
    path.write_text("t,y\n0,1\n1,2\r2,3\n", encoding="utf-8")  # a classic Mac line end
    with pytest.raises(UserError, match="s.csv:3: a carriage return"):
        read_csv(path)


def test_binary_word2vec_files_are_not_split_into_lines(tmp_path):
    """A binary vector may hold the bytes of \\n and \\r: the binary reader reads records, not
    lines."""
    path = tmp_path / "v.bin"
    vector = np.frombuffer(b"\r\n\x0b\r" + b"\n\r\x85\x0c", dtype="<f4")
    assert np.isfinite(vector).all()
    path.write_bytes(b"1 2\na " + vector.tobytes() + b"\n")
    words, vectors = read_word2vec(path, binary=True)
    assert words == ["a"] and vectors[0].tobytes() == struct.pack("<2f", *vector)
