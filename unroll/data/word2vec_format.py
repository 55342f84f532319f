"""The word2vec vector files, as the C tool (``-binary 0|1``) and gensim write them.

Both start with a header line ``V D\\n`` (number of words, dimension), then one record per word,
most frequent first:

* text:   ``word x_1 x_2 ... x_D\\n``, numbers separated by single spaces. We write each float32
  as its shortest decimal that reads back to the same float32 (numpy's ``str``, which is what
  gensim writes), so a round trip is exact; the C tool writes ``%lf `` (6 decimals, a trailing
  space), which we read too.
* binary: ``word`` + one space + D little-endian float32 (4·D bytes) + ``\\n``. The newline is
  the C tool's; gensim writes none. Readers of both (the C tool's ``distance``, gensim's
  ``load_word2vec_format``, ours) skip a newline before a word, so either reads the other.

Words are UTF-8 and contain no whitespace. Reading checks what it reads: a bad header, a
record of the wrong length, a duplicate word or a file cut short is a one-line `UserError`
naming the file (and line or record); writing is atomic (nothing half-written on disk).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from unroll.errors import UserError
from unroll.fileio import atomic_write_bytes
from unroll.limits import MAX_DIM, MAX_VOCABULARY, check_bytes
from unroll.textio import read_bytes, split_lines


def format_word2vec(words: Sequence[str], vectors: np.ndarray, binary: bool = False) -> bytes:
    """The file's bytes for `words` and their `vectors` (V, D) (see the module docstring)."""
    vectors = np.ascontiguousarray(vectors, dtype="<f4")
    if vectors.ndim != 2 or vectors.shape[0] != len(words):
        raise ValueError(f"format_word2vec: {len(words)} words, vectors of shape {vectors.shape}")
    for w in words:
        if not w or any(ch.isspace() for ch in w):
            raise ValueError(f"format_word2vec: word {w!r} is empty or holds whitespace")
    parts = [f"{len(words)} {vectors.shape[1]}\n".encode()]
    if binary:
        for w, row in zip(words, vectors):
            parts.append(w.encode("utf-8") + b" " + row.tobytes() + b"\n")
    else:
        for w, row in zip(words, vectors):
            parts.append(f"{w} {' '.join(map(str, row))}\n".encode())
    return b"".join(parts)


def write_word2vec(
    path: str | os.PathLike, words: Sequence[str], vectors: np.ndarray, binary: bool = False
) -> Path:
    """Write the file atomically (a temporary file renamed into place)."""
    path = Path(path)
    data = format_word2vec(words, vectors, binary)
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror})") from None
    return path


def read_word2vec(
    path: str | os.PathLike, binary: bool | None = None
) -> tuple[list[str], np.ndarray]:
    """(words, vectors (V, D) float32) of a word2vec file; `binary` None tells the format from
    the first record. The header is checked before anything is allocated: V and D within
    `unroll.limits` (``MAX_VOCABULARY``, ``MAX_DIM``), and the file long enough for what it
    promises; a value that is not finite (nan, inf) is refused with its line or record."""
    path = Path(path)
    data = read_bytes(path, "a word2vec vectors file")
    end = data.find(b"\n")
    header = data[: end if end >= 0 else len(data)].split()
    try:
        count, dim = (int(x) for x in header)
        if count < 0 or dim < 1:
            raise ValueError
    except ValueError:
        raise UserError(
            f"{path}: line 1: expected the header 'V D' (number of words, dimension), got "
            f"{data[:40]!r}"
        ) from None
    if count > MAX_VOCABULARY or dim > MAX_DIM:
        raise UserError(
            f"{path}: line 1: the header declares {count} words of dimension {dim}: expected "
            f"at most {MAX_VOCABULARY:,} words and dimension {MAX_DIM:,}"
        )
    body = end + 1
    if binary is None:
        binary = not _looks_like_text(data, body, dim)
    read = _read_binary if binary else _read_text
    words, vectors = read(path, data, body, count, dim)
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        where = f"record {i + 1}" if binary else f"line {i + 2}"
        raise UserError(
            f"{path}: {where}: the vector of {words[i]!r} holds inf or nan (expected finite "
            f"numbers)"
        )
    seen: set[str] = set()
    for i, w in enumerate(words):
        if w in seen:
            raise UserError(f"{path}: word {w!r} appears twice (record {i + 1})")
        seen.add(w)
    return words, vectors


def _looks_like_text(data: bytes, start: int, dim: int) -> bool:
    end = data.find(b"\n", start)
    try:
        fields = data[start : end if end >= 0 else len(data)].decode("utf-8").split()
        return len(fields) == dim + 1 and all(_is_number(x) for x in fields[1:])
    except UnicodeDecodeError:
        return False


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_text(path: Path, data: bytes, start: int, count: int, dim: int):
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text ({e.reason}); is it a binary file?") from None
    lines = split_lines(text, str(path), first=2)  # (the one rule: lines end at \n alone)
    if len(lines) < count:
        raise UserError(
            f"{path}: truncated: the header promises {count} vectors, the file has {len(lines)}"
        )
    if any(line.strip() for line in lines[count:]):
        raise UserError(f"{path}: more lines than the {count} vectors the header promises")
    _check_length(path, count, dim, 1 + 2 * dim, len(text), "numbers")  # "w" + " 0" * D
    words, vectors = [], np.empty((count, dim), dtype=np.float32)
    for i, line in enumerate(lines[:count]):
        fields = line.rstrip().split(" ")
        if len(fields) != dim + 1:
            raise UserError(
                f"{path}: line {i + 2}: expected a word and {dim} numbers, got {len(fields)} fields"
            )
        try:
            vectors[i] = np.array(fields[1:], dtype=np.float32)
        except ValueError:
            raise UserError(
                f"{path}: line {i + 2}: expected {dim} numbers after the word"
            ) from None
        words.append(fields[0])
    return words, vectors


def _check_length(path: Path, count: int, dim: int, shortest: int, have: int, unit: str) -> None:
    """A `UserError` before anything is allocated when the file is shorter than `count` records
    of at least `shortest` bytes each can be (a header that promises too much)."""
    if count * shortest > have + 1:
        raise UserError(
            f"{path}: truncated: the header promises {count} vectors of {dim} {unit} (at least "
            f"{count * shortest:,} bytes), the file has {max(have, 0):,} after the header"
        )
    check_bytes(
        count * dim * 4,
        f"{path}: {count} vectors of dimension {dim}",
        "read it on a machine with more memory",
    )


def _read_binary(path: Path, data: bytes, start: int, count: int, dim: int):
    size = 4 * dim
    _check_length(path, count, dim, 2 + size, len(data) - start, "float32")  # "w " + 4·D bytes
    words, vectors = [], np.empty((count, dim), dtype=np.float32)
    pos = start
    for i in range(count):
        while pos < len(data) and data[pos : pos + 1] == b"\n":
            pos += 1  # the C tool's newline after the previous vector
        space = data.find(b" ", pos)
        if space < 0 or space + 1 + size > len(data):
            raise UserError(
                f"{path}: truncated: the header promises {count} vectors of {dim} float32, the "
                f"file ends in record {i + 1}"
            )
        try:
            words.append(data[pos:space].decode("utf-8"))
        except UnicodeDecodeError:
            raise UserError(f"{path}: record {i + 1}: the word is not UTF-8") from None
        vectors[i] = np.frombuffer(data, dtype="<f4", count=dim, offset=space + 1)
        pos = space + 1 + size
    if data[pos:].strip(b"\n"):
        raise UserError(f"{path}: more data after the {count} vectors the header promises")
    return words, vectors
