"""Reading text: one rule for every reader of a text file or of stdin.

Every reader of lines in unroll (corpora, PTB and word streams, character level, seq2seq pair
files and ``predict`` input, CSV series, word2vec corpora and vector files, analogy and
similarity files, cmudict, ``classes.txt``) goes through this module, so they agree on what a
line is:

* A record ends at ``\\n``; a ``\\r`` just before it (Windows' ``\\r\\n``) is dropped. Nothing
  else ends a line. `str.splitlines` also splits at U+2028, U+2029, U+0085, ``\\v``, ``\\f`` and
  ``\\x1c``-``\\x1e``, which would silently shift every later line of a pair file against its
  partner: here those characters stay inside their line (word-level readers see them as
  whitespace, as `str.split` does; character-level readers see them as characters).
* A ``\\r`` anywhere else (a lone carriage return, as classic Mac OS wrote line ends) is
  refused with ``file:line``: read as a line end it would shift the lines, kept inside the line
  it would join them, and either way the error would show up far from its cause.
* Files are UTF-8; a byte-order mark at the start is dropped; anything else is a one-line
  `UserError` naming ``file:line`` and the byte. A file that cannot be read (missing, a
  directory, no permission) is a one-line `UserError` too.

Token readers also refuse their reserved tokens in user data (``<eos>`` for the language
model, ``<pad>``/``<s>``/``</s>`` for seq2seq) with `check_reserved`: such a word would be
read as the marker, not as a word.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, TextIO

from unroll.errors import UserError

LONE_CR = (
    "a carriage return (\\r) inside the line: lines end at \\n or \\r\\n only "
    "(a classic Mac file? convert it: tr '\\r' '\\n')"
)


def read_bytes(path: str | os.PathLike, what: str = "a text file") -> bytes:
    """The bytes of `path`; a missing file, a directory or an unreadable file is a `UserError`
    naming it (`what`: what was expected there)."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected {what}") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def decode(data: bytes, source: str) -> str:
    """`data` as UTF-8 text without a leading byte-order mark; bytes that are not UTF-8 are a
    `UserError` naming ``source:line`` and the byte."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise UserError(
            f"{source}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})"
        ) from None


def read_text(path: str | os.PathLike, what: str = "a text file") -> str:
    """The UTF-8 text of `path` (`read_bytes`, then `decode`)."""
    return decode(read_bytes(path, what), str(path))


def split_lines(text: str, source: str, first: int = 1) -> list[str]:
    """The lines of `text` by the module's rule: split at ``\\n`` alone, a ``\\r`` before it
    dropped, a lone ``\\r`` a `UserError` naming ``source:line`` (lines numbered from `first`).
    A text that ends with ``\\n`` has no empty line after it; an empty text has no lines."""
    lines = text.split("\n")
    last = lines.pop()  # after the last \n: a last line without its end, or nothing
    for i, line in enumerate(lines):
        if line.endswith("\r"):
            line = lines[i] = line[:-1]
        if "\r" in line:
            raise UserError(f"{source}:{first + i}: {LONE_CR}")
    if "\r" in last:  # (no \n after it: even a final \r is alone)
        raise UserError(f"{source}:{first + len(lines)}: {LONE_CR}")
    if last:
        lines.append(last)
    return lines


def read_lines(path: str | os.PathLike, what: str = "a text file") -> list[str]:
    """The lines of a UTF-8 text file (`split_lines`), as ``file:line`` counts them."""
    return split_lines(read_text(path, what), str(path))


def stream_lines(stream: TextIO | BinaryIO, source: str = "<stdin>") -> list[str]:
    """The lines of an open stream (stdin), by the same rule; bytes are decoded as UTF-8."""
    raw = getattr(stream, "buffer", stream)
    data = raw.read()
    text = decode(data, source) if isinstance(data, bytes) else data.removeprefix("\ufeff")
    return split_lines(text, source)


def stdin_lines() -> list[str]:
    return stream_lines(sys.stdin)


def iter_line_parts(path: str | os.PathLike, block: int = 1 << 22) -> Iterator[tuple[str, bool]]:
    """The lines of a UTF-8 file as (text, ends_line) parts, read `block` bytes at a time: a
    line longer than a block comes in several parts, the last with ends_line True. The
    module's rule holds (``\\r\\n`` ends a line, a lone ``\\r`` is a `UserError` naming
    ``file:line``, as is a byte that is not UTF-8); a reader that needs whole lines joins the
    parts, one that splits words keeps only the unfinished word of a part (text8 is one line of
    100 MB)."""
    path = Path(path)
    decoder = codecs.getincrementaldecoder("utf-8")()
    number = 1
    cr = False  # the last part ended with "\r": the next must start with "\n"
    first = True
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, expected a text file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    with f:
        while True:
            try:
                data = f.read(block)
            except OSError as e:
                raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
            try:
                chunk = decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                line = number + data[: max(e.start, 0)].count(b"\n")
                raise UserError(f"{path}:{line}: not UTF-8 text ({e.reason})") from None
            if first:
                chunk, first = chunk.removeprefix("\ufeff"), not chunk
            if not chunk:
                if not data:
                    break
                continue
            if cr and not chunk.startswith("\n"):
                raise UserError(f"{path}:{number}: {LONE_CR}")
            cr = False
            pieces = chunk.split("\n")
            for piece in pieces[:-1]:
                if piece.endswith("\r"):
                    piece = piece[:-1]
                if "\r" in piece:
                    raise UserError(f"{path}:{number}: {LONE_CR}")
                yield piece, True
                number += 1
            tail = pieces[-1]
            if "\r" in tail[:-1]:
                raise UserError(f"{path}:{number}: {LONE_CR}")
            if tail.endswith("\r"):
                cr, tail = True, tail[:-1]
            if tail:
                yield tail, False
    if cr:
        raise UserError(f"{path}:{number}: {LONE_CR}")


def check_reserved(
    tokens: Iterable[str], reserved: Collection[str], source: str, line: int, meaning: str
) -> None:
    """A `UserError` naming ``source:line`` when a token of the line is one of `reserved`
    (`meaning`: what the recipe uses those tokens for)."""
    for t in tokens:
        if t in reserved:
            raise UserError(
                f"{source}:{line}: {t!r} is reserved ({meaning}) and cannot be a word of the "
                f"data; rewrite it (e.g. {t.replace('<', '&lt;').replace('>', '&gt;')})"
            )


def output_file(path: str | os.PathLike, flag: str) -> Path:
    """`path` checked as a file to write, before any work is done: a `UserError` naming `flag`
    when its directory does not exist or it is a directory itself."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path}: cannot write (it is a directory; expected a file name)")
    parent = path.parent
    if not parent.is_dir():
        what = "not a directory" if parent.exists() else "no such directory"
        raise UserError(f"{flag} {path}: cannot write ({what}: {parent})")
    return path
