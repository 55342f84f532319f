"""Every bad input we know of, through the command line (`unroll.cli.main`), in one table.

Each case must end with exit status 2, exactly one line on stderr, ``unroll: error: ...`` naming
what is wrong, and nothing left on disk: no run directory (a default ``runs/...`` would appear in
the case's working directory), no temp file, no file changed — in the case's directory or in the
trained runs that eval, predict and generate read. The cases cover the issue's categories:
config values, arguments and paths, data files (corpora, IDX, classes.txt, CSV), sizes that would
take the machine down, sampling arguments, hand-made checkpoints for every reader, resumes of
hand-made or foreign runs, and downloads that cannot happen.
"""

from __future__ import annotations

import gzip
import io
import pickle
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from unroll.cli import main
from unroll.config import MAX_LAYERS

# -- the world the cases read: tiny data and one trained run per recipe ---------------------------

TINY = ["--device", "cpu", "--quiet", "threads=1", "tensorboard=false", "epochs=1"]
LM = ["hidden_size=8", "num_layers=1", "num_steps=4", "batch_size=2", "max_steps_per_epoch=4"]
FC = ["hidden_size=8", "lookback=12", "horizon=4", "plot=false"]
SC = ["hidden_size=8", "periods=8", "batch_size=4", "num_steps=10"]
S2S = ["hidden_size=8", "embedding_size=4", "batch_size=16"]
AE = ["hidden_sizes=4", "code_size=2"]
W2V = ["dim=4", "min_count=1", "plot_words=0", "impl=torch", "batch_size=100"]
SENTENCES = "the cat sat on the mat\na dog ran to the tree\nthe cat ran\n"


def copy_lines(n: int, seed: int) -> str:
    """`n` lines of 2-5 letters of a-f (a copy task: the target is the source)."""
    return "".join(
        "".join("abcdef"[(seed + i * 5 + j * 3) % 6] for j in range(2 + i % 4)) + "\n"
        for i in range(n)
    )


def write_pairs(root: Path, edit: dict[str, str | bytes] | None = None) -> Path:
    """DIR/{train,valid,test}.{src,tgt}: a tiny copy task; `edit` replaces whole files."""
    root.mkdir(parents=True)
    for seed, (split, n) in enumerate((("train", 60), ("valid", 12), ("test", 12))):
        for side in ("src", "tgt"):
            (root / f"{split}.{side}").write_text(copy_lines(n, seed), encoding="utf-8")
    for name, text in (edit or {}).items():
        (root / name).write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return root


def idx(dims: tuple[int, ...], values: list[int], code: int = 0x08) -> bytes:
    return (
        struct.pack(">HBB", 0, code, len(dims))
        + struct.pack(f">{len(dims)}I", *dims)
        + bytes(values)
    )


def write_idx_dir(root: Path, n_train: int = 30, n_test: int = 9, h: int = 4, w: int = 4) -> Path:
    root.mkdir(parents=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        pixels = [(i * 37 + j * 11) % 256 for i in range(n) for j in range(h * w)]
        (root / f"{prefix}-images-idx3-ubyte").write_bytes(idx((n, h, w), pixels))
        (root / f"{prefix}-labels-idx1-ubyte").write_bytes(idx((n,), [i % 3 for i in range(n)]))
    return root


def series_text(n: int = 200, times: Callable[[int], Any] = lambda i: i) -> str:
    return "t,y\n" + "".join(f"{times(i)},{10 + (i * 7) % 5}\n" for i in range(n))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("world")
    corpus = root / "corpus"
    corpus.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (corpus / name).write_text(SENTENCES * 6, encoding="utf-8")
    img = write_idx_dir(root / "img")
    csv = root / "series.csv"
    csv.write_text(series_text())
    pairs = write_pairs(root / "pairs")
    text = root / "sentences.txt"
    text.write_text(SENTENCES * 10, encoding="utf-8")
    w = {"root": root, "corpus": corpus, "img": img, "csv": csv, "pairs": pairs, "text": text}
    for name, argv in (
        ("lm", ["lm", "train", "--data", str(corpus), *LM]),
        ("cl", ["classify", "train", "--data", str(img), "hidden_size=8"]),
        ("fc", ["forecast", "train", "--data", str(csv), *FC]),
        ("sc", ["sincos", "train", *SC]),
        ("s2s", ["seq2seq", "train", "--data", str(pairs), *S2S]),
        ("ae", ["autoencode", "train", *AE]),
        ("w2v", ["word2vec", "train", "--data", str(text), *W2V]),
    ):
        w[name] = root / name
        assert main([*argv, *TINY, "--out", str(w[name])]) == 0
    return w


# -- the table ------------------------------------------------------------------------------------


@dataclass
class Case:
    id: str
    argv: list[str]  # {tmp} {out} and the world's names ({corpus} {lm} {s2s} ...) are filled in
    match: str  # a part of the error line
    setup: Callable[[Path, dict[str, Path]], None] | None = None
    stdin: str | bytes | None = None  # what the command reads from stdin


def file(name: str, content: str | bytes) -> Callable[[Path, dict[str, Path]], None]:
    def setup(tmp: Path, world: dict[str, Path]) -> None:
        data = content.encode("utf-8") if isinstance(content, str) else content
        (tmp / name).write_bytes(data)

    return setup


def corpus(**files: str | bytes | None) -> Callable[[Path, dict[str, Path]], None]:
    """A copy of the world's corpus in {tmp}/c, with `files` replaced (None: removed; a dict
    value ``"<dir>"``: a directory instead of the file)."""

    def setup(tmp: Path, world: dict[str, Path]) -> None:
        shutil.copytree(world["corpus"], tmp / "c")
        for name, content in files.items():
            path = tmp / "c" / name.replace("_", ".")
            path.unlink()
            if content == "<dir>":
                path.mkdir()
            elif content is not None:
                path.write_bytes(content.encode() if isinstance(content, str) else content)

    return setup


def images(edit: Callable[[Path], None]) -> Callable[[Path, dict[str, Path]], None]:
    def setup(tmp: Path, world: dict[str, Path]) -> None:
        shutil.copytree(world["img"], tmp / "i")
        edit(tmp / "i")

    return setup


def small_images(tmp: Path, world: dict[str, Path]) -> None:
    write_idx_dir(tmp / "i", h=2, w=2)


def checkpoint(run: str, mutate: Callable[[dict[str, Any]], Any]) -> Callable:
    """{tmp}/ckpt.pt: the best checkpoint of a world run, edited by hand."""

    def setup(tmp: Path, world: dict[str, Path]) -> None:
        ckpt = torch.load(world[run] / "checkpoints" / "best.pt", weights_only=True)
        mutate(ckpt)
        torch.save(ckpt, tmp / "ckpt.pt")

    return setup


def resumable(
    run: str,
    mutate: Callable[[dict[str, Any]], Any] | None = None,
    edit: Callable[[Path], None] | None = None,
) -> Callable:
    """{tmp}/run: a copy of a world run, its last.pt (or any file, by `edit`) edited by hand."""

    def setup(tmp: Path, world: dict[str, Path]) -> None:
        shutil.copytree(world[run], tmp / "run")
        last = tmp / "run" / "checkpoints" / "last.pt"
        if mutate is not None:
            ckpt = torch.load(last, weights_only=True)
            mutate(ckpt)
            torch.save(ckpt, last)
        if edit is not None:
            edit(tmp / "run")

    return setup


def nan_weights(ckpt: dict[str, Any]) -> None:
    next(iter(ckpt["model"].values())).fill_(float("nan"))


def first_weight(shape: tuple[int, ...]) -> Callable[[dict[str, Any]], None]:
    def mutate(ckpt: dict[str, Any]) -> None:
        name = next(iter(ckpt["model"]))
        ckpt["model"][name] = torch.zeros(shape)

    return mutate


class _Evil:
    def __reduce__(self):
        return (print, ("a pickle ran code",))


EVIL = pickle.dumps({"kind": "unroll.lm", "model": _Evil()})
HUGE = str(2**70)
LM_TRAIN = ["lm", "train", "--data", "{corpus}", *LM, *TINY, "--out", "{out}"]
CL_TRAIN = ["classify", "train", "--data", "{img}", "hidden_size=8", *TINY, "--out", "{out}"]
FC_TRAIN = ["forecast", "train", "--data", "{csv}", *FC, *TINY, "--out", "{out}"]
FC_CSV = ["forecast", "train", "--data", "{tmp}/s.csv", *FC, *TINY, "--out", "{out}"]
SC_TRAIN = ["sincos", "train", *SC, *TINY, "--out", "{out}"]
PREDICT = ["forecast", "predict", "{tmp}/ckpt.pt", "--output", "{tmp}/f.csv"]


def c(
    id: str,
    argv: list[str],
    match: str,
    setup: Callable | None = None,
    stdin: str | bytes | None = None,
) -> Case:
    return Case(id, argv, match, setup, stdin)


def pairs_dir(**files: str | bytes) -> Callable[[Path, dict[str, Path]], None]:
    """{tmp}/p: the tiny copy task, with `files` (``train_src="..."``) replaced."""

    def setup(tmp: Path, world: dict[str, Path]) -> None:
        write_pairs(tmp / "p", {k.replace("_", "."): v for k, v in files.items()})

    return setup


def gzip_idx(dims: tuple[int, ...], data: bytes, zeros: int = 0) -> Callable[[Path], None]:
    """Edit an IDX directory: its training images become a gzip file of an IDX header for
    `dims`, `data`, then `zeros` zero bytes (compressed 1000:1: a small file, a big stream)."""

    def edit(d: Path) -> None:
        z = zlib.compressobj(9, zlib.DEFLATED, 31)
        parts = [z.compress(idx(dims, []) + data)]
        block = bytes(1 << 20)
        for _ in range(zeros >> 20):
            parts.append(z.compress(block))
        parts.append(z.flush())
        (d / "train-images-idx3-ubyte").unlink()
        (d / "train-images-idx3-ubyte.gz").write_bytes(b"".join(parts))

    return edit


S2S_TRAIN = ["seq2seq", "train", "--data", "{pairs}", *S2S, *TINY, "--out", "{out}"]
S2S_DIR = ["seq2seq", "train", "--data", "{tmp}/p", *S2S, *TINY, "--out", "{out}"]
AE_TRAIN = ["autoencode", "train", *AE, *TINY, "--out", "{out}"]
W2V_TRAIN = ["word2vec", "train", "--data", "{text}", *W2V, *TINY, "--out", "{out}"]
W2V_FILE = ["word2vec", "train", "--data", "{tmp}/t.txt", *W2V, *TINY, "--out", "{out}"]
LINE_BREAK = "a carriage return (\\r) inside the line"
KILO = "abcdef" * 170_000  # a 1 MB line

# -- one rule for lines (records end at \n or \r\n; a lone \r is refused with file:line; other
# separators stay inside their line), reserved tokens refused with file:line ---------------------
LINES = [
    c(
        "lm corpus lone CR",
        [*LM_TRAIN[:3], "{tmp}/c", *LM_TRAIN[4:]],
        f"train.txt:2: {LINE_BREAK}",
        corpus(train_txt="the cat sat\nthe dog\rran\n" * 6),
    ),
    c(
        "lm corpus <eos> word",
        [*LM_TRAIN[:3], "{tmp}/c", *LM_TRAIN[4:]],
        "valid.txt:3: '<eos>' is reserved",
        corpus(valid_txt="the cat\nthe dog\nthe <eos> ran\n"),
    ),
    c(
        "classes.txt lone CR",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        f"classes.txt:1: {LINE_BREAK}",
        images(lambda d: (d / "classes.txt").write_bytes(b"zero\rone\rtwo\r")),
    ),
    c(
        "csv lone CR",
        FC_CSV,
        f"s.csv:1: {LINE_BREAK}",
        file("s.csv", series_text().replace("\n", "\r")),
    ),
    c(
        "s2s pairs lone CR",
        S2S_DIR,
        f"train.src:3: {LINE_BREAK}",
        pairs_dir(train_src="ab\ncd\nef\rab\n" + "abc\n" * 57),
    ),
    c(
        "s2s pairs </s> word",
        [*S2S_DIR, "tokens=word"],
        "train.tgt:2: '</s>' is reserved",
        pairs_dir(train_tgt="a b\nc </s> d\n" + "a\n" * 58),
    ),
    c(
        "s2s pairs <pad> word",
        [*S2S_DIR, "tokens=word"],
        "valid.src:1: '<pad>' is reserved",
        pairs_dir(valid_src="<pad> a\n" + "a\n" * 11),
    ),
    c(
        "s2s pairs U+2028 keeps the lines",
        S2S_DIR,
        "train.src has 61 lines, train.tgt has 60",
        pairs_dir(train_src="ab\u2028cd\n" * 61),
    ),
    c(
        "s2s pairs latin1",
        S2S_DIR,
        "valid.tgt:2: not UTF-8 text (byte 0xe9",
        pairs_dir(valid_tgt=b"ab\ncaf\xe9\n"),
    ),
    c(
        "s2s predict stdin separator",
        ["seq2seq", "predict", "{s2s}"],
        "<stdin>:1: '\\u2028' is not in the model's source vocabulary",
        stdin="abc\u2028abd\nabc\n",
    ),
    c(
        "s2s predict stdin vertical tab",
        ["seq2seq", "predict", "{s2s}", "--beam", "2"],
        "<stdin>:2: '\\x0b' is not in the model's source vocabulary",
        stdin="abc\nab\x0bcd\n",
    ),
    c(
        "s2s predict stdin lone CR",
        ["seq2seq", "predict", "{s2s}"],
        f"<stdin>:1: {LINE_BREAK}",
        stdin="abc\rabd\n",
    ),
    c(
        "s2s predict stdin latin1",
        ["seq2seq", "predict", "{s2s}"],
        "<stdin>:2: not UTF-8 text (byte 0xe9",
        stdin=b"abc\nab\xe9\n",
    ),
    c(
        "s2s predict file lone CR",
        ["seq2seq", "predict", "{s2s}", "{tmp}/in.txt"],
        f"in.txt:2: {LINE_BREAK}",
        file("in.txt", "abc\r\nab\rc\r\n"),
    ),
    c(
        "s2s predict file missing",
        ["seq2seq", "predict", "{s2s}", "{tmp}/none.txt"],
        "none.txt: no such file",
    ),
    c(
        "s2s predict file is a dir",
        ["seq2seq", "predict", "{s2s}", "{tmp}"],
        "is a directory, expected a text file",
    ),
    c("w2v corpus lone CR", W2V_FILE, f"t.txt:3: {LINE_BREAK}", file("t.txt", "a b\nc d\ne\rf\n")),
    c("w2v corpus latin1", W2V_FILE, "t.txt:2: not UTF-8 text", file("t.txt", b"a b\nc\xe9 d\n")),
    c(
        "w2v vectors lone CR",
        ["word2vec", "similar", "{tmp}/v.txt", "a"],
        f"v.txt:3: {LINE_BREAK}",
        file("v.txt", "2 2\na 1 2\nb 3\r4\n"),
    ),
    c(
        "w2v analogies lone CR",
        ["word2vec", "eval", "{w2v}", "--analogies", "{tmp}/q.txt"],
        f"q.txt:2: {LINE_BREAK}",
        file("q.txt", ": s\nthe cat\rsat on\n"),
    ),
]

# -- sizes: one cap table for every recipe, memory checked before allocating -----------------
BOUNDS = [
    c(
        "s2s num_layers 1e6",
        [*S2S_TRAIN, "num_layers=1000000"],
        f"num_layers=1000000: expected an integer from 1 to {MAX_LAYERS}",
    ),
    c("s2s hidden 20000", [*S2S_TRAIN, "hidden_size=20000"], "hidden_size=20000: expected an"),
    c("s2s beam 1e6", [*S2S_TRAIN, "beam=1000000"], "beam=1000000: expected an integer from 1 to"),
    c(
        "s2s max_tokens 2e6, a 1 MB line",
        [*S2S_DIR, "max_tokens=2000000"],
        "max_tokens=2000000: expected an integer from 1 to",
        pairs_dir(train_src=f"ab\n{KILO}\n" + "ab\n" * 58),
    ),
    c(
        "s2s a 1 MB line",
        S2S_DIR,
        "train.src:2: 1020000 tokens, more than max_tokens=200",
        pairs_dir(train_src=f"ab\n{KILO}\n" + "ab\n" * 58),
    ),
    c("s2s eval_batch 1e9", [*S2S_TRAIN, "eval_batch_size=1000000000"], "eval_batch_size=1000"),
    c(
        "ae num_layers 65536",
        [*AE_TRAIN, "model=seq", "num_layers=65536"],
        f"num_layers=65536: expected an integer from 1 to {MAX_LAYERS}",
    ),
    c("ae batch 1e9", [*AE_TRAIN, "batch_size=1000000000"], "batch_size=1000000000: expected"),
    c("ae code 1e6", [*AE_TRAIN, "code_size=1000000"], "code_size=1000000: expected an integer"),
    c("sc batch 1e9", [*SC_TRAIN, "batch_size=1000000000"], "batch_size=1000000000: expected"),
    c("w2v dim 1e6", [*W2V_TRAIN, "dim=1000000"], "dim=1000000: expected an integer from 1"),
    c("w2v max_vocab 1e9", [*W2V_TRAIN, "max_vocab=1000000000"], "max_vocab=1000000000"),
    c(
        "idx gzip bomb",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "more than 1 MiB of unexpected bytes after the IDX data (header says 30x4x4)",
        images(gzip_idx((30, 4, 4), bytes(480), zeros=64 << 20)),
    ),
    c(
        "idx gzip header promises too much",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "(5,000,000,000 bytes of data), more than a gzip file of",
        images(gzip_idx((50_000, 10_000, 10), bytes(480))),
    ),
    c(
        "w2v vectors header words 3e9",
        ["word2vec", "similar", "{tmp}/v.bin", "a"],
        "line 1: the header declares 3000000000 words of dimension 4: expected at most",
        file("v.bin", b"3000000000 4\na " + bytes(16)),
    ),
    c(
        "w2v vectors header dim 1e9",
        ["word2vec", "analogy", "{tmp}/v.txt", "a", "b", "c"],
        "the header declares 2 words of dimension 1000000000",
        file("v.txt", b"2 1000000000\na 1\nb 2\n"),
    ),
    c(
        "w2v vectors header promises too much",
        ["word2vec", "export", "{tmp}/v.bin", "{tmp}/out.txt"],
        "truncated: the header promises 20000000 vectors of 1000 float32",
        file("v.bin", b"20000000 1000\na " + bytes(4000)),
    ),
]

# -- output files: into a missing directory or onto a directory ------------------------------
OUTPUTS = [
    c(
        "s2s predict attention png no dir",
        ["seq2seq", "predict", "{s2s}", "--attention-png", "{tmp}/no/a.png"],
        "no/a.png: cannot write (no such directory",
        stdin="abc\n",
    ),
    c(
        "s2s predict attention png is a dir",
        ["seq2seq", "predict", "{s2s}", "--attention-png", "{tmp}"],
        "cannot write (it is a directory",
        stdin="abc\n",
    ),
    c(
        "s2s eval png no dir",
        ["seq2seq", "eval", "{s2s}", "--png", "{tmp}/no/a.png"],
        "no/a.png: cannot write (no such directory",
    ),
    c(
        "s2s eval png is a dir",
        ["seq2seq", "eval", "{s2s}", "--png", "{tmp}"],
        "cannot write (it is a directory",
    ),
    c(
        "s2s eval png under a file",
        ["seq2seq", "eval", "{s2s}", "--png", "{tmp}/f/a.png"],
        "cannot write (not a directory",
        file("f", "x"),
    ),
    c(
        "w2v plot no dir",
        ["word2vec", "plot", "{w2v}", "--out", "{tmp}/no/e.png", "--method", "pca"],
        "no/e.png: cannot write (no such directory",
    ),
    c(
        "w2v plot is a dir",
        ["word2vec", "plot", "{w2v}", "--out", "{tmp}", "--method", "pca"],
        "cannot write (it is a directory",
    ),
    c(
        "w2v export no dir",
        ["word2vec", "export", "{w2v}", "{tmp}/no/v.txt"],
        "cannot write (no such directory",
    ),
    c("w2v export is a dir", ["word2vec", "export", "{w2v}", "{tmp}"], "cannot write"),
    c(
        "ae encode no dir",
        ["autoencode", "encode", "{ae}", "--output", "{tmp}/no/c.npz"],
        "cannot write",
    ),
    c("ae encode is a dir", ["autoencode", "encode", "{ae}", "--output", "{tmp}"], "cannot write"),
    c(
        "ae eval out is a file",
        ["autoencode", "eval", "{ae}", "--out", "{tmp}/f"],
        "exists and is not a directory",
        file("f", "x"),
    ),
    c(
        "ae fewlabels out is a file",
        ["autoencode", "fewlabels", "{ae}", "--out", "{tmp}/f"],
        "exists and is not a directory",
        file("f", "x"),
    ),
]

SEQ2SEQ = [
    c("s2s data missing", [*S2S_TRAIN[:3], "{tmp}/none", *S2S_TRAIN[4:]], "data='"),
    c("s2s attention", [*S2S_TRAIN, "attention=luong"], "attention='luong': expected one of"),
    c("s2s odd hidden", [*S2S_TRAIN, "hidden_size=7"], "hidden_size=7: expected even"),
    c(
        "s2s pair counts",
        S2S_DIR,
        "has 59 lines, train.tgt has 60",
        pairs_dir(train_src="ab\n" * 59),
    ),
    c("s2s eval beam 1e6", ["seq2seq", "eval", "{s2s}", "--beam", "1000000"], "--beam 1000000"),
    c("s2s eval missing", ["seq2seq", "eval", "{tmp}/none"], "no such checkpoint file"),
    c(
        "s2s predict beam 1e6",
        ["seq2seq", "predict", "{s2s}", "--beam", "1000000"],
        "--beam 1000000: expected an integer from 1 to",
        stdin="abc\n",
    ),
    c(
        "s2s predict unknown token",
        ["seq2seq", "predict", "{s2s}"],
        "<stdin>:1: 'z' is not in the model's source vocabulary",
        stdin="abz\n",
    ),
    c(
        "s2s ckpt nan",
        ["seq2seq", "predict", "{tmp}/ckpt.pt"],
        "holds inf or nan",
        checkpoint("s2s", nan_weights),
        stdin="abc\n",
    ),
]

AUTOENCODE = [
    c("ae model", [*AE_TRAIN, "model=vae"], "model='vae'"),
    c("ae hidden_sizes", [*AE_TRAIN, "hidden_sizes=4,x"], "hidden_sizes='4,x': expected"),
    c("ae eval missing", ["autoencode", "eval", "{tmp}/none"], "no such checkpoint file"),
    c("ae encode empty dir", ["autoencode", "encode", "{tmp}"], "no checkpoints/best.pt"),
    c(
        "ae fewlabels fractions",
        ["autoencode", "fewlabels", "{ae}", "fractions=0,2"],
        "fractions='0,2': expected",
    ),
    c(
        "ae csv lone CR",
        ["autoencode", "train", "--data", "{tmp}/s.csv", "model=seq", "window=8", *TINY],
        f"s.csv:1: {LINE_BREAK}",
        file("s.csv", series_text().replace("\n", "\r")),
    ),
]

WORD2VEC = [
    c(
        "w2v one-word corpus",
        W2V_FILE,
        "no sentence (line) holds two words of the vocabulary",
        file("t.txt", "word\n"),
    ),
    c(
        "w2v one word a line",
        W2V_FILE,
        "no sentence (line) holds two words of the vocabulary",
        file("t.txt", "cat\ndog\ncat\n"),
    ),
    c("w2v ns_exponent 1e300", [*W2V_TRAIN, "ns_exponent=1e300"], "ns_exponent=1e+300: expected"),
    c("w2v ns_exponent -1e300", [*W2V_TRAIN, "ns_exponent=-1e300"], "ns_exponent=-1e+300"),
    c("w2v ns_exponent nan", [*W2V_TRAIN, "ns_exponent=nan"], "ns_exponent=nan: expected"),
    c("w2v sg 2", [*W2V_TRAIN, "sg=2"], "sg=2: expected 0 (cbow) or 1 (skipgram)"),
    c("w2v sg word", [*W2V_TRAIN, "sg=yes"], "sg='yes': expected a number"),
    c(
        "w2v analogies malformed",
        [*W2V_TRAIN, "analogies={tmp}/q.txt"],
        "q.txt:2: expected 4 words 'a b c d'",
        file("q.txt", ": s\nthe cat sat\n"),
    ),
    c(
        "w2v wordsim malformed",
        [*W2V_TRAIN, "wordsim={tmp}/ws.tsv"],
        "ws.tsv:1: expected 'word1<TAB>word2<TAB>score'",
        file("ws.tsv", "cat dog 3\n"),
    ),
    c("w2v analogies missing", [*W2V_TRAIN, "analogies={tmp}/none"], "none: no such file"),
    c(
        "w2v eval restrict-vocab 0",
        ["word2vec", "eval", "{w2v}", "--restrict-vocab", "0"],
        "--restrict-vocab 0: expected",
    ),
    c("w2v similar unknown", ["word2vec", "similar", "{w2v}", "zebra"], "'zebra' is not in"),
    c("w2v similar topn 0", ["word2vec", "similar", "{w2v}", "cat", "--topn", "0"], "--topn 0"),
    c(
        "w2v analogy topn 0",
        ["word2vec", "analogy", "{w2v}", "a", "b", "c", "--topn", "0"],
        "--topn",
    ),
    c(
        "w2v vectors nan",
        ["word2vec", "similar", "{tmp}/v.txt", "a"],
        "v.txt: line 3: the vector of 'b' holds inf or nan",
        file("v.txt", "2 2\na 1 2\nb nan 4\n"),
    ),
    c(
        "w2v vectors inf binary",
        ["word2vec", "similar", "{tmp}/v.bin", "a"],
        "v.bin: record 1: the vector of 'a' holds inf or nan",
        file("v.bin", b"1 2\na " + struct.pack("<2f", float("inf"), 1.0) + b"\n"),
    ),
    c(
        "w2v ckpt nan",
        ["word2vec", "similar", "{tmp}/ckpt.pt", "cat"],
        "holds inf or nan",
        checkpoint("w2v", nan_weights),
    ),
    c(
        "w2v plot words 1",
        ["word2vec", "plot", "{w2v}", "--out", "{tmp}/e.png", "--words", "1"],
        "--words 1",
    ),
]

PRESETS = [
    c(f"{recipe} presets stray", [recipe, "presets", "x"], "unrecognized argument 'x'")
    for recipe in ("lm", "classify", "forecast", "sincos", "seq2seq", "autoencode", "word2vec")
]

CASES = [
    # -- config values, every recipe ---------------------------------------------------------
    c("lm unknown key", [*LM_TRAIN, "hidden_sise=3"], "unknown config key 'hidden_sise'"),
    c("lm int as word", [*LM_TRAIN, "hidden_size=big"], "hidden_size='big': expected an integer"),
    c("lm float as word", [*LM_TRAIN, "--lr", "fast"], "lr='fast': expected a number"),
    c("lm old name, bad value", [*LM_TRAIN, "--learning-rate", "x"], "lr='x': expected a number"),
    c("lm lr 1/0", [*LM_TRAIN, "lr=1/0"], "lr='1/0': expected a number"),
    c("lm lr inf", [*LM_TRAIN, "lr=inf"], "lr=inf: expected a number > 0"),
    c("lm epochs 0", [*LM_TRAIN, "epochs=0"], "epochs=0: expected an integer >= 1"),
    c("lm dropout 1", [*LM_TRAIN, "dropout=1"], "dropout=1.0: expected a number in [0, 1)"),
    c("lm clip 0", [*LM_TRAIN, "clip=0"], "clip=0.0: expected a number > 0"),
    c("lm init_scale nan", [*LM_TRAIN, "init_scale=nan"], "init_scale=nan: expected a number > 0"),
    c("lm precision", [*LM_TRAIN, "precision=fp8"], "expected one of fp32, tf32, bf16"),
    c("lm bool", [*LM_TRAIN, "tie_weights=maybe"], "tie_weights='maybe': expected a boolean"),
    c("lm tie needs sizes", [*LM_TRAIN, "tie_weights=true", "embedding_size=5"], "tie_weights"),
    c("lm threads 100000", [*LM_TRAIN, "threads=100000"], "threads=100000: expected 0"),
    c("lm threads -1", [*LM_TRAIN, "threads=-1"], "threads=-1: expected 0"),
    c("lm seed 2**70", [*LM_TRAIN, f"seed={HUGE}"], f"seed={HUGE}: expected an integer from"),
    c("lm device", [*LM_TRAIN, "--device", "tpu"], "--device 'tpu'"),
    # cuda:99: refused on every machine (no CUDA, or fewer devices), so the row holds on a GPU
    c("lm device cuda", [*LM_TRAIN, "--device", "cuda:99"], "--device cuda:99: "),
    c("lm vocab_size", [*LM_TRAIN, "vocab_size=10000"], "vocab_size=10000: the data's vocab"),
    c("lm num_layers 0", [*LM_TRAIN, "num_layers=0"], "num_layers=0: expected an integer >= 1"),
    c(
        "lm num_layers",
        [*LM_TRAIN, "num_layers=100000"],
        f"num_layers=100000: expected an integer from 1 to {MAX_LAYERS}",
    ),
    c("lm embedding 1e8", [*LM_TRAIN, "embedding_size=100000000"], "embedding_size=100000000"),
    c("lm hidden 1e8", [*LM_TRAIN, "hidden_size=100000000"], "hidden_size=100000000: expected"),
    c(
        "lm model too big",
        [*LM_TRAIN, "hidden_size=65536", "num_layers=50"],
        "more than this machine's",
    ),
    c("lm batch too big", [*LM_TRAIN, "batch_size=1000"], "train split: too little data"),
    c("lm num_steps huge", [*LM_TRAIN, "num_steps=1000000000"], "train split: too little data"),
    c("cl model", [*CL_TRAIN, "--model", "transformer"], "model='transformer'"),
    c("cl sequence", [*CL_TRAIN, "--sequence", "columns"], "sequence='columns'"),
    c("cl epochs word", [*CL_TRAIN, "epochs=ten"], "epochs='ten': expected an integer"),
    c("cl momentum nan", [*CL_TRAIN, "momentum=nan"], "momentum=nan: expected a number >= 0"),
    c("cl weight_decay", [*CL_TRAIN, "weight_decay=-1"], "weight_decay=-1.0: expected a number"),
    c("cl lr_decay inf", [*CL_TRAIN, "lr_decay=inf"], "lr_decay=inf: expected a number > 0"),
    c("cl split_seed", [*CL_TRAIN, f"split_seed={HUGE}"], f"split_seed={HUGE}: expected"),
    c(
        "cl permutation_seed",
        [*CL_TRAIN, "sequence=permuted", f"permutation_seed={HUGE}"],
        "permutation_seed=",
    ),
    c("cl max_train", [*CL_TRAIN, "max_train=-1"], "max_train=-1: expected an integer >= 0"),
    c("cl valid_fraction 1", [*CL_TRAIN, "valid_fraction=1"], "valid_fraction=1.0: expected"),
    c(
        "cl no training rows",
        [*CL_TRAIN, "valid_fraction=0.99"],
        "leaves no training examples of 30",
    ),
    c(
        "cl num_layers",
        [*CL_TRAIN, "num_layers=10000000"],
        "num_layers=10000000: expected an integer from 1 to",
    ),
    c(
        "cl hidden 65536",
        [*CL_TRAIN, "hidden_size=65536", "num_layers=50"],
        "more than this machine's",
    ),
    c(
        "cl cnn_fc huge",
        [*CL_TRAIN, "model=cnn", "cnn_fc=100000000000"],
        "more than this machine's",
    ),
    c(
        "cl cnn on 2x2",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:], "model=cnn"],
        "at least 4x4",
        small_images,
    ),
    c("fc lr nan", [*FC_TRAIN, "lr=nan"], "lr=nan: expected a number > 0"),
    c("fc weight_decay nan", [*FC_TRAIN, "weight_decay=nan"], "weight_decay=nan: expected"),
    c("fc lookback 1e8", [*FC_TRAIN, "lookback=100000000"], "lookback=100000000: expected"),
    c(
        "fc lookback 1e6",
        [*FC_TRAIN, "lookback=1000000"],
        "200 rows are too few for lookback=1000000",
    ),
    c("fc season 1e9", [*FC_TRAIN, "season=1000000000"], "is not longer than season=1000000000"),
    c("fc step 0", [*FC_TRAIN, "step=0"], "step=0: expected an integer >= 1"),
    c("fc fractions", [*FC_TRAIN, "valid_fraction=0.5", "test_fraction=0.5"], "their sum below 1"),
    c("fc fill", [*FC_TRAIN, "fill=zero"], "fill='zero': expected one of none"),
    c("fc recursive inputs", [*FC_TRAIN, "mode=recursive", "inputs=y"], "mode=recursive feeds"),
    c(
        "fc num_layers",
        [*FC_TRAIN, "num_layers=1000000"],
        "num_layers=1000000: expected an integer from 1 to",
    ),
    c("fc model too big", [*FC_TRAIN, "hidden_size=65536"], "more than this machine's"),
    c("sc data", [*SC_TRAIN, "data=x"], "data='x': expected sin-cos"),
    c("sc old name", [*SC_TRAIN, "bptt=0"], "num_steps=0: expected an integer >= 1"),
    c(
        "sc samples",
        [*SC_TRAIN, "periods=100000", "steps_per_period=100000"],
        "at most 10,000,000 samples",
    ),
    c("sc windows", [*SC_TRAIN, "num_steps=1000000000"], "at least one window of num_steps"),
    c("sc model too big", [*SC_TRAIN, "hidden_size=65536"], "more than this machine's"),
    # -- arguments and paths -----------------------------------------------------------------
    c("no recipe", [], "the following arguments are required: RECIPE"),
    c("unknown recipe", ["translate", "train"], "invalid choice: 'translate'"),
    c("stray argument", [*LM_TRAIN, "oops"], "unrecognized argument 'oops'"),
    c("unknown option", [*LM_TRAIN, "--hidden-sise", "3"], "unrecognized option '--hidden-sise'"),
    c("empty key", [*LM_TRAIN, "=5"], "unrecognized argument '=5'"),
    c("unknown preset", [*LM_TRAIN, "--preset", "ptb-huge"], "unknown preset 'ptb-huge'"),
    c("--config missing", [*LM_TRAIN, "--config", "{tmp}/none.toml"], "cannot read"),
    c(
        "--config bad json",
        [*LM_TRAIN, "--config", "{tmp}/c.json"],
        "not valid JSON",
        file("c.json", "{"),
    ),
    c(
        "--config latin1",
        [*LM_TRAIN, "--config", "{tmp}/c.toml"],
        "not valid TOML",
        file("c.toml", b"lr = \xe9\n"),
    ),
    c(
        "--config nested",
        [*FC_TRAIN, "--config", "{tmp}/c.json"],
        "a is a table or list",
        file("c.json", '{"a": {"b": 1}}'),
    ),
    c(
        "--config of another recipe",
        [*FC_TRAIN, "--config", "{lm}/config.json"],
        "unknown config key 'name'",
    ),
    c("--out is a file", [*LM_TRAIN, "--out", "{csv}"], "exists and is not a directory"),
    c("--out not empty", [*FC_TRAIN, "--out", "{fc}"], "directory exists and is not empty"),
    c("--out empty string", [*CL_TRAIN, "--out", ""], "--out '': expected a directory name"),
    c("--out under a file", [*SC_TRAIN, "--out", "{csv}/run"], "is not a directory"),
    c("--out cannot be made", [*SC_TRAIN, "--out", "/proc/unroll/run"], "--out /proc/unroll/run"),
    c(
        "--out and --resume",
        ["lm", "train", "--resume", "{lm}", "--out", "{out}"],
        "--out and --resume",
    ),
    c(
        "--preset and --resume",
        ["lm", "train", "--resume", "{lm}", "--preset", "demo"],
        "--preset/--config and --resume",
    ),
    c("--resume not a run", ["lm", "train", "--resume", "{tmp}"], "not a run directory"),
    c("--resume a file", ["forecast", "train", "--resume", "{csv}"], "not a run directory"),
    c(
        "path with a line break",
        [*CL_TRAIN[:3], "a\nb", *CL_TRAIN[4:]],
        "--data a\\nb: no such directory",
    ),
    c("eval no checkpoint", ["lm", "eval"], "required: RUN_DIR|CHECKPOINT"),
    c("eval split", ["lm", "eval", "{lm}", "--split", "dev"], "invalid choice: 'dev'"),
    c(
        "eval which",
        ["classify", "eval", "{cl}", "--checkpoint", "first"],
        "invalid choice: 'first'",
    ),
    c("eval missing", ["lm", "eval", "{tmp}/nope"], "no such checkpoint file or run directory"),
    c(
        "eval empty dir",
        ["classify", "eval", "{tmp}"],
        "no checkpoints/best.pt in this run directory",
    ),
    c("eval batch", ["lm", "eval", "{lm}", "--batch-size", "0"], "--batch-size 0: expected"),
    c("eval batch 1e9", ["lm", "eval", "{lm}", "--batch-size", "1000000000"], "too little data"),
    c("eval data missing", ["lm", "eval", "{lm}", "--data", "{tmp}/nope"], "no such directory"),
    c("eval device", ["classify", "eval", "{cl}", "--device", "tpu"], "--device 'tpu'"),
    c(
        "eval other images",
        ["classify", "eval", "{cl}", "--data", "{tmp}/i"],
        "2x2 images, the model was trained on 4x4",
        small_images,
    ),
    c("alias classify-eval", ["classify-eval", "{tmp}/nope"], "no such checkpoint"),
    c("alias train", ["train", "--data", "{tmp}/nope", *TINY], "no such directory"),
    # -- data files ----------------------------------------------------------------------------
    c("corpus missing", [*LM_TRAIN[:3], "{tmp}/nope", *LM_TRAIN[4:]], "no such directory"),
    c("corpus is a file", [*LM_TRAIN[:3], "{csv}", *LM_TRAIN[4:]], "not a directory"),
    c(
        "corpus empty file",
        [*LM_TRAIN[:3], "{tmp}/c", *LM_TRAIN[4:]],
        "train.txt: file is empty",
        corpus(train_txt="  \n"),
    ),
    c(
        "corpus latin1",
        [*LM_TRAIN[:3], "{tmp}/c", *LM_TRAIN[4:]],
        "not UTF-8",
        corpus(valid_txt=b"caf\xe9\n"),
    ),
    c(
        "corpus split missing",
        [*LM_TRAIN[:3], "{tmp}/c", *LM_TRAIN[4:]],
        "missing ptb.test.txt or test.txt",
        corpus(test_txt=None),
    ),
    c(
        "corpus split is a dir",
        [*LM_TRAIN[:3], "{tmp}/c", *LM_TRAIN[4:]],
        "train.txt",
        corpus(train_txt="<dir>"),
    ),
    c("idx missing dir", [*CL_TRAIN[:3], "{tmp}/nope", *CL_TRAIN[4:]], "no such directory"),
    c(
        "idx file missing",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "missing t10k-labels-idx1-ubyte",
        images(lambda d: (d / "t10k-labels-idx1-ubyte").unlink()),
    ),
    c(
        "idx bad magic",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "not an IDX file (magic number",
        images(lambda d: (d / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x07\x03garbage")),
    ),
    c(
        "idx truncated",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "truncated IDX data",
        images(lambda d: (d / "train-images-idx3-ubyte").write_bytes(idx((30, 4, 4), [0] * 10))),
    ),
    c(
        "idx corrupt gzip",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "corrupt or truncated gzip",
        images(
            lambda d: (d / "train-labels-idx1-ubyte").write_bytes(
                gzip.compress(idx((30,), [i * 7 % 256 for i in range(30)]))[:30]
            )
        ),
    ),
    c(
        "idx labels count",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "29 labels for 30 images",
        images(lambda d: (d / "train-labels-idx1-ubyte").write_bytes(idx((29,), [0] * 29))),
    ),
    c(
        "idx float images",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "expected IDX images (uint8",
        images(
            lambda d: (d / "t10k-images-idx3-ubyte").write_bytes(idx((9, 4, 4), [0] * 576, 0x0D))
        ),
    ),
    c(
        "idx empty test set",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "the training or test set is empty",
        lambda tmp, world: write_idx_dir(tmp / "i", n_test=0),
    ),
    c(
        "idx 0x4 images",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "images of 0x4 pixels",
        lambda tmp, world: write_idx_dir(tmp / "i", h=0),
    ),
    c(
        "classes.txt latin1",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "classes.txt:2: not UTF-8 text (byte 0xe9",
        images(lambda d: (d / "classes.txt").write_bytes(b"zero\nun\xe9\ntwo\n")),
    ),
    c(
        "classes.txt short",
        [*CL_TRAIN[:3], "{tmp}/i", *CL_TRAIN[4:]],
        "names 1 classes, the labels go up to 2",
        images(lambda d: (d / "classes.txt").write_text("a\n")),
    ),
    c("csv missing", [*FC_CSV], "s.csv: no such file"),
    c(
        "csv is a dir",
        [*FC_TRAIN[:3], "{tmp}", *FC_TRAIN[4:]],
        "is a directory, expected a CSV file",
    ),
    c("csv empty", FC_CSV, "empty file", file("s.csv", "")),
    c("csv header only", FC_CSV, "no data rows", file("s.csv", "t,y\n")),
    c(
        "csv latin1",
        FC_CSV,
        "s.csv:2: not UTF-8 text (byte 0xe9",
        file("s.csv", b"t,y\n0,caf\xe9\n"),
    ),
    c(
        "csv long field",
        FC_CSV,
        "field larger than field limit",
        file("s.csv", "t,y\n0," + "1" * 200_000 + "\n"),
    ),
    c(
        "csv ragged",
        FC_CSV,
        "line 3 has 1 fields, the header has 2",
        file("s.csv", "t,y\n0,1\n1\n"),
    ),
    c("csv duplicate header", FC_CSV, "duplicate column names", file("s.csv", "y,y\n0,1\n")),
    c(
        "csv not numeric",
        FC_CSV,
        "column 'y' is not numeric (line 4: 'oops')",
        file(
            "s.csv", "t,y\n" + "".join(f"{i},{'oops' if i == 2 else i % 4}\n" for i in range(200))
        ),
    ),
    c(
        "csv inf",
        FC_CSV,
        "column 'y' is not numeric (line 7: 'inf')",
        file("s.csv", "t,y\n" + "".join(f"{i},{'inf' if i == 5 else i % 4}\n" for i in range(200))),
    ),
    c(
        "csv missing value",
        FC_CSV,
        "missing value in column 'y' at line 5",
        file("s.csv", "t,y\n" + "".join(f"{i},{'' if i == 3 else i % 4}\n" for i in range(200))),
    ),
    c(
        "csv 1e308",
        FC_CSV,
        "column 'y' at line 2: -1e+308 is out of range",
        file("s.csv", "t,y\n" + "".join(f"{i},{(-1) ** (i + 1) * 1e308}\n" for i in range(200))),
    ),
    c(
        "csv 1e200",
        FC_CSV,
        "column 'y' at line 4: 1e+200 is out of range",
        file("s.csv", "t,y\n" + "".join(f"{i},{1e200 if i == 2 else i % 4}\n" for i in range(200))),
    ),
    c(
        "csv duplicate time",
        FC_CSV,
        "line 52: time '49' repeats line 51's '49'",
        file("s.csv", series_text(times=lambda i: i if i != 50 else 49)),
    ),
    c(
        "csv unsorted time",
        FC_CSV,
        "line 53: time '50' comes before line 52's '51'",
        file("s.csv", series_text(times=lambda i: 101 - i if i in (50, 51) else i)),
    ),
    c(
        "csv unsorted dates",
        FC_CSV,
        "time '2000-01-01' comes before line 29's '2000-01-28'",
        file(
            "s.csv", "date,y\n" + "".join(f"2000-01-{1 + i % 28:02d},{i % 4}\n" for i in range(200))
        ),
    ),
    c(
        "csv duplicate labels",
        FC_CSV,
        "time 'q1' repeats line 2",
        file("s.csv", "t,y\n" + "".join(f"q{1 + i % 150},{i % 4}\n" for i in range(200))),
    ),
    c(
        "csv target unknown",
        [*FC_CSV, "--target", "nope"],
        "unknown target column 'nope'",
        file("s.csv", series_text()),
    ),
    c(
        "csv input unknown",
        [*FC_CSV, "--inputs", "x"],
        "unknown input column 'x'",
        file("s.csv", series_text()),
    ),
    c(
        "csv target is time",
        [*FC_CSV, "target=t"],
        "is the time column and a value column",
        file("s.csv", series_text()),
    ),
    c(
        "csv two targets",
        FC_CSV,
        "choose the target column with --target",
        file("s.csv", "a,b\n1,2\n"),
    ),
    c("csv too short", FC_CSV, "20 rows are too few", file("s.csv", series_text(20))),
    c(
        "csv constant",
        FC_CSV,
        "does not change over one season",
        file("s.csv", "t,y\n" + "".join(f"{i},5\n" for i in range(200))),
    ),
    c(
        "embedded with --target",
        [*FC_TRAIN[:3], "synthetic", *FC_TRAIN[4:], "target=y"],
        "CSV files only",
    ),
    # -- sampling, prediction -------------------------------------------------------------------
    c(
        "generate temperature 0",
        ["lm", "generate", "{lm}", "--temperature", "0"],
        "--temperature 0.0: expected",
    ),
    c(
        "generate temperature nan",
        ["lm", "generate", "{lm}", "--temperature", "nan"],
        "--temperature nan",
    ),
    c(
        "generate temperature -1",
        ["lm", "predict", "{lm}", "--temperature", "-1"],
        "--temperature -1.0",
    ),
    c("generate top-k 0", ["lm", "generate", "{lm}", "--top-k", "0"], "--top-k 0: expected"),
    c("generate words -1", ["lm", "generate", "{lm}", "--words", "-1"], "--words -1: expected"),
    c(
        "generate words 1e9",
        ["lm", "generate", "{lm}", "--words", "1000000000"],
        "--words 1000000000",
    ),
    c(
        "generate sentences 1e9",
        ["lm", "generate", "{lm}", "--sentences", "1000000000"],
        "--sentences",
    ),
    c(
        "generate words and sentences",
        ["lm", "generate", "{lm}", "--words", "3", "--sentences", "1"],
        "not allowed with",
    ),
    c(
        "generate seed 2**70",
        ["lm", "generate", "{lm}", "--seed", HUGE],
        f"--seed {HUGE}: expected",
    ),
    c(
        "generate unknown prompt",
        ["lm", "generate", "{lm}", "--prompt", "zebra"],
        "not in the vocabulary",
    ),
    c(
        "predict output is a dir",
        ["forecast", "predict", "{fc}", "--output", "{tmp}"],
        "cannot write",
    ),
    c(
        "predict output dir missing",
        ["forecast", "predict", "{fc}", "--output", "{tmp}/a/b.csv"],
        "cannot write",
    ),
    c(
        "predict other columns",
        ["forecast", "predict", "{fc}", "--data", "synthetic", "--output", "{tmp}/f.csv"],
        "the model was trained on ['y']",
    ),
    c(
        "predict csv unsorted",
        ["forecast", "predict", "{fc}", "--data", "{tmp}/s.csv", "--output", "{tmp}/f.csv"],
        "comes before",
        file("s.csv", series_text(times=lambda i: 101 - i if i in (50, 51) else i)),
    ),
    c(
        "predict csv short",
        ["forecast", "predict", "{fc}", "--data", "{tmp}/s.csv", "--output", "{tmp}/f.csv"],
        "5 rows, the model needs the last lookback=12 rows",
        file("s.csv", series_text(5)),
    ),
    c(
        "predict csv far values",
        ["forecast", "predict", "{fc}", "--data", "{tmp}/s.csv", "--output", "{tmp}/f.csv"],
        "too far from the training rows",
        file("s.csv", "t,y\n" + "".join(f"{i},{1e149 * (i == 15)}\n" for i in range(20))),
    ),
    # -- hand-made checkpoints: every reader ----------------------------------------------------
    c(
        "ckpt junk",
        ["lm", "eval", "{tmp}/ckpt.pt"],
        "not an unroll checkpoint",
        file("ckpt.pt", b"not a checkpoint"),
    ),
    c(
        "ckpt empty",
        ["lm", "generate", "{tmp}/ckpt.pt"],
        "not an unroll checkpoint",
        file("ckpt.pt", b""),
    ),
    c(
        "ckpt malicious pickle",
        ["lm", "eval", "{tmp}/ckpt.pt"],
        "not an unroll checkpoint",
        file("ckpt.pt", EVIL),
    ),
    c(
        "ckpt no kind",
        ["forecast", "predict", "{tmp}/ckpt.pt"],
        "no 'kind'/'model' entries",
        checkpoint("fc", lambda k: k.pop("kind")),
    ),
    c(
        "ckpt other kind",
        ["lm", "eval", "{cl}"],
        "is a 'unroll.classifier' checkpoint, expected 'unroll.lm'",
    ),
    c("ckpt sincos to predict", ["forecast", "predict", "{sc}"], "expected 'unroll.forecaster'"),
    c(
        "lm ckpt no config",
        ["lm", "eval", "{tmp}/ckpt.pt"],
        "the checkpoint has no config",
        checkpoint("lm", lambda k: k.pop("config")),
    ),
    c(
        "lm ckpt unknown key",
        ["lm", "eval", "{tmp}/ckpt.pt"],
        "unknown config keys ['colour']",
        checkpoint("lm", lambda k: k["config"].update(colour=1)),
    ),
    c(
        "lm ckpt hidden string",
        ["lm", "generate", "{tmp}/ckpt.pt"],
        "its config: hidden_size='eight'",
        checkpoint("lm", lambda k: k["config"].update(hidden_size="eight")),
    ),
    c(
        "lm ckpt hidden mismatch",
        ["lm", "eval", "{tmp}/ckpt.pt"],
        "lstm.weight_ih_l0 is [32, 8], the config makes [36, 8]",
        checkpoint("lm", lambda k: k["config"].update(hidden_size=9)),
    ),
    c(
        "lm ckpt num_layers 0",
        ["lm", "eval", "{tmp}/ckpt.pt"],
        "its config: num_layers=0",
        checkpoint("lm", lambda k: k["config"].update(num_layers=0)),
    ),
    c(
        "lm ckpt embedding 1e8",
        ["lm", "eval", "{tmp}/ckpt.pt"],
        "its config: embedding_size=100000000",
        checkpoint("lm", lambda k: k["config"].update(embedding_size=100_000_000)),
    ),
    c(
        "lm ckpt vocab missing",
        ["lm", "generate", "{tmp}/ckpt.pt"],
        "the checkpoint has no vocabulary",
        checkpoint("lm", lambda k: k.pop("vocab")),
    ),
    c(
        "lm ckpt vocab short",
        ["lm", "eval", "{tmp}/ckpt.pt"],
        "the vocabulary has 3 words, its config says vocab_size=",
        checkpoint("lm", lambda k: k.update(vocab=k["vocab"][:3])),
    ),
    c(
        "lm ckpt vocab repeats",
        ["lm", "generate", "{tmp}/ckpt.pt"],
        "not a vocabulary (Vocabulary: duplicate word",
        checkpoint("lm", lambda k: k.update(vocab=[k["vocab"][0]] * len(k["vocab"]))),
    ),
    c(
        "lm ckpt vocab numbers",
        ["lm", "generate", "{tmp}/ckpt.pt"],
        "expected str words",
        checkpoint("lm", lambda k: k.update(vocab=list(range(len(k["vocab"]))))),
    ),
    c(
        "lm ckpt weights not a dict",
        ["lm", "eval", "{tmp}/ckpt.pt"],
        "weights are not a state_dict",
        checkpoint("lm", lambda k: k.update(model=[1])),
    ),
    c(
        "lm ckpt weight missing",
        ["lm", "eval", "{tmp}/ckpt.pt"],
        "weights do not fit its config (no embedding.weight)",
        checkpoint("lm", lambda k: k["model"].pop("embedding.weight")),
    ),
    c(
        "lm ckpt weight extra",
        ["lm", "eval", "{tmp}/ckpt.pt"],
        "(an unexpected extra.weight)",
        checkpoint("lm", lambda k: k["model"].update({"extra.weight": torch.zeros(1)})),
    ),
    c(
        "lm ckpt weights nan",
        ["lm", "generate", "{tmp}/ckpt.pt"],
        "holds inf or nan values",
        checkpoint("lm", nan_weights),
    ),
    c(
        "cl ckpt hidden mismatch",
        ["classify", "eval", "{tmp}/ckpt.pt"],
        "rnn.weight_ih_l0 is [32, 4], the config makes [36, 4]",
        checkpoint("cl", lambda k: k["config"].update(hidden_size=9)),
    ),
    c(
        "cl ckpt hidden string",
        ["classify", "eval", "{tmp}/ckpt.pt"],
        "its config: hidden_size='x'",
        checkpoint("cl", lambda k: k["config"].update(hidden_size="x")),
    ),
    c(
        "cl ckpt other model",
        ["classify", "eval", "{tmp}/ckpt.pt"],
        "weights do not fit its config (no conv1.weight",
        checkpoint("cl", lambda k: k["config"].update(model="cnn")),
    ),
    c(
        "cl ckpt classes missing",
        ["classify", "eval", "{tmp}/ckpt.pt"],
        "classes=None, expected",
        checkpoint("cl", lambda k: k.pop("classes")),
    ),
    c(
        "cl ckpt classes short",
        ["classify", "eval", "{tmp}/ckpt.pt"],
        "head.weight is [3, 8], the config makes [1, 8]",
        checkpoint("cl", lambda k: k.update(classes=["a"])),
    ),
    c(
        "cl ckpt image_shape",
        ["classify", "eval", "{tmp}/ckpt.pt"],
        "image_shape=[0, 0], expected",
        checkpoint("cl", lambda k: k.update(image_shape=[0, 0])),
    ),
    c(
        "cl ckpt max_value",
        ["classify", "eval", "{tmp}/ckpt.pt"],
        "max_value='x', expected a number",
        checkpoint("cl", lambda k: k.update(max_value="x")),
    ),
    c(
        "cl ckpt weights nan",
        ["classify", "eval", "{tmp}/ckpt.pt"],
        "holds inf or nan",
        checkpoint("cl", nan_weights),
    ),
    c(
        "fc ckpt hidden mismatch",
        PREDICT,
        "encoder.weight_ih_l0 is [32, 1], the config makes [36, 1]",
        checkpoint("fc", lambda k: k["config"].update(hidden_size=9)),
    ),
    c(
        "fc ckpt horizon mismatch",
        PREDICT,
        "head.weight is [4, 8], the config makes [5, 8]",
        checkpoint("fc", lambda k: k["config"].update(horizon=5)),
    ),
    c(
        "fc ckpt hidden string",
        PREDICT,
        "its config: hidden_size='x'",
        checkpoint("fc", lambda k: k["config"].update(hidden_size="x")),
    ),
    c(
        "fc ckpt scaler missing",
        PREDICT,
        "not a scaler (expected a dict",
        checkpoint("fc", lambda k: k.pop("scaler")),
    ),
    c(
        "fc ckpt scaler lengths",
        PREDICT,
        "lists of one length",
        checkpoint("fc", lambda k: k.update(scaler={"mean": [1, 2], "std": [1]})),
    ),
    c(
        "fc ckpt scaler columns",
        PREDICT,
        "2 columns scaled, the model reads 1",
        checkpoint("fc", lambda k: k.update(scaler={"mean": [1, 2], "std": [1, 1]})),
    ),
    c(
        "fc ckpt scaler std 0",
        PREDICT,
        "'std' finite and > 0",
        checkpoint("fc", lambda k: k.update(scaler={"mean": [0.0], "std": [0.0]})),
    ),
    c(
        "fc ckpt scaler strings",
        PREDICT,
        "lists of numbers",
        checkpoint("fc", lambda k: k.update(scaler={"mean": "a", "std": "b"})),
    ),
    c(
        "fc ckpt columns missing",
        PREDICT,
        "columns=None, expected",
        checkpoint("fc", lambda k: k.pop("columns")),
    ),
    c("fc ckpt weights nan", PREDICT, "holds inf or nan", checkpoint("fc", nan_weights)),
    # -- resumes -----------------------------------------------------------------------------
    c(
        "resume another recipe",
        ["classify", "train", "--resume", "{lm}"],
        "is a 'unroll.lm' checkpoint, expected 'unroll.classifier'",
    ),
    c(
        "resume sincos as forecast",
        ["sincos", "train", "--resume", "{fc}"],
        "expected 'unroll.forecaster.sin-cos'",
    ),
    c(
        "resume changes the model",
        ["lm", "train", "--resume", "{lm}", "hidden_size=9"],
        "hidden_size cannot change when resuming",
    ),
    c(
        "resume changes the data",
        ["lm", "train", "--resume", "{lm}", "data=pydoc"],
        "data cannot change when resuming",
    ),
    c(
        "resume baselines",
        ["classify", "train", "--resume", "{cl}", "--baselines"],
        "--resume and --baselines",
    ),
    c(
        "resume config.json junk",
        ["forecast", "train", "--resume", "{tmp}/run"],
        "not a readable config",
        resumable("fc", edit=lambda d: (d / "config.json").write_text("[1]")),
    ),
    c(
        "resume copied checkpoint",
        ["lm", "train", "--resume", "{tmp}/run"],
        "belongs to another run",
        resumable("lm", lambda k: k.update(run_id="0" * 32)),
    ),
    c(
        "resume no config",
        ["sincos", "train", "--resume", "{tmp}/run"],
        "last.pt: the checkpoint has no config",
        resumable("sc", lambda k: k.pop("config")),
    ),
    c(
        "resume weights",
        ["lm", "train", "--resume", "{tmp}/run"],
        "embedding.weight is [1], the config makes",
        resumable("lm", first_weight((1,))),
    ),
    c(
        "resume weights nan",
        ["classify", "train", "--resume", "{tmp}/run"],
        "holds inf or nan",
        resumable("cl", nan_weights),
    ),
    c(
        "resume no rng",
        ["forecast", "train", "--resume", "{tmp}/run"],
        "random-number states that cannot be set",
        resumable("fc", lambda k: k.pop("rng")),
    ),
    c(
        "resume epoch",
        ["sincos", "train", "--resume", "{tmp}/run"],
        "epoch='x', expected an integer >= 1",
        resumable("sc", lambda k: k.update(epoch="x")),
    ),
    c(
        "resume best",
        ["lm", "train", "--resume", "{tmp}/run"],
        "best='x', expected a number",
        resumable("lm", lambda k: k.update(best="x")),
    ),
    c(
        "resume optimizer",
        ["classify", "train", "--resume", "{tmp}/run"],
        "optimizer: state for 0 parameters, the model has",
        resumable("cl", lambda k: k.update(optimizer={"state": {}, "param_groups": []})),
    ),
    c(
        "resume optimizer string",
        ["forecast", "train", "--resume", "{tmp}/run"],
        "optimizer: not an optimizer's state_dict",
        resumable("fc", lambda k: k.update(optimizer="x")),
    ),
    c(
        "resume lm no vocab",
        ["lm", "train", "--resume", "{tmp}/run"],
        "the checkpoint has no vocabulary",
        resumable("lm", lambda k: k.pop("vocab")),
    ),
    c(
        "resume cl image_shape",
        ["classify", "train", "--resume", "{tmp}/run"],
        "image_shape=None",
        resumable("cl", lambda k: k.pop("image_shape")),
    ),
    # -- downloads that cannot happen (every URL points at a closed port on 127.0.0.1) ---------
    c(
        "ptb offline",
        [*LM_TRAIN[:3], "ptb", *LM_TRAIN[4:]],
        "Penn Treebank not found and the download failed",
    ),
    c(
        "mnist offline",
        [*CL_TRAIN[:3], "mnist", *CL_TRAIN[4:]],
        "could not download http://127.0.0.1",
    ),
    c(
        "fashion-mnist offline",
        [*CL_TRAIN[:3], "fashion-mnist", *CL_TRAIN[4:]],
        "could not download http://127.0.0.1",
    ),
    *LINES,
    *BOUNDS,
    *OUTPUTS,
    *SEQ2SEQ,
    *AUTOENCODE,
    *WORD2VEC,
    *PRESETS,
]


def _snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under `roots` (hidden ones too): size and modification time."""
    seen = {}
    for root in roots:
        for p in root.rglob("*"):
            st = p.lstat()
            seen[str(p)] = (st.st_size if p.is_file() else -1, st.st_mtime_ns)
    return seen


@pytest.fixture
def closed_port_urls(monkeypatch, tmp_path):
    """No data found locally, and every download URL on a port where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    for name in ("PTB", "MNIST", "FASHION_MNIST"):
        monkeypatch.setenv(f"UNROLL_{name}_URL", url)
    monkeypatch.setenv("UNROLL_DATA", str(tmp_path / "no-data"))
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(
    case, world, tmp_path, monkeypatch, capsys, closed_port_urls
):
    monkeypatch.chdir(tmp_path)  # where a default run directory (runs/...) would appear
    if case.setup is not None:
        case.setup(tmp_path, world)
    paths = {k: str(v) for k, v in world.items()}
    argv = [a.format(tmp=tmp_path, out=tmp_path / "out", **paths) for a in case.argv]
    if case.stdin is not None:  # bytes behind a text stream, as a terminal or a pipe gives
        data = case.stdin.encode("utf-8") if isinstance(case.stdin, str) else case.stdin
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    before = _snapshot(tmp_path, world["root"])
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("unroll: error: "), captured.err
    assert case.match in lines[0], lines[0]
    assert "a pickle ran code" not in captured.out
    assert _snapshot(tmp_path, world["root"]) == before  # nothing made, changed or left


def _cli_commands() -> set[tuple[str, str]]:
    """Every (recipe, command) the command line has, read from its parser."""
    import argparse

    from unroll.cli import build_parser

    def choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        return sub.choices

    return {
        (recipe, command)
        for recipe, recipe_parser in choices(build_parser()).items()
        for command in choices(recipe_parser)
    }


def test_the_table_covers_every_command():
    """Every command of every recipe, as the parser lists them (a new one must join the
    table), has bad-input cases."""
    commands = {tuple(case.argv[:2]) for case in CASES if len(case.argv) >= 2}
    listed = _cli_commands()
    assert len(listed) >= 27 and ("word2vec", "plot") in listed  # the parser was read
    missing = sorted(listed - commands)
    assert not missing, missing
    assert len(CASES) >= 240
    assert len({case.id for case in CASES}) == len(CASES)


def test_hand_made_checkpoints_are_checked_by_the_shapes_alone(world, tmp_path, capsys):
    """A checkpoint whose config would make a 17-billion-parameter model: refused from the
    shapes on the meta device, with nothing allocated (it would take minutes or the machine)."""
    ckpt = torch.load(world["fc"] / "checkpoints" / "best.pt", weights_only=True)
    ckpt["config"]["hidden_size"] = 65536
    buffer = io.BytesIO()
    torch.save(ckpt, buffer)
    (tmp_path / "big.pt").write_bytes(buffer.getvalue())
    assert main(["forecast", "predict", str(tmp_path / "big.pt")]) == 2
    assert "is [32, 1], the config makes [262144, 1]" in capsys.readouterr().err
