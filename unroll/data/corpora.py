"""The corpora a ``--data`` argument names, in one registry: the embedded pydoc corpus, the
standard Penn Treebank, or any corpus directory; and prompts written as their corpus was.

(Here, not in `text`, so that `text` stays the plain format layer that `embedded` and `ptb`
build on: imports run one way, text -> embedded/ptb -> corpora.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from unroll.data.embedded import normalize, pydoc_corpus
from unroll.data.ptb import ptb_directory
from unroll.data.text import (
    EMBEDDED_NAMES,
    EOS,
    Corpus,
    Vocabulary,
    _check_level,
    load_corpus,
    tokenize,
)
from unroll.errors import UserError
from unroll.fileio import atomic_write_text


def tokenize_prompt(
    text: str, level: Literal["word", "char"] = "word", data: str | None = None
) -> list[str]:
    """Tokens of a generation prompt, written the way the training corpus was.

    `data` is the ``--data`` value (or `Corpus.name`) the model was trained on: for the
    embedded corpus (None, "pydoc", "embedded") the prompt is lower-cased and its punctuation
    split off as `unroll.data.embedded.normalize` does; other corpora are taken as they are.
    No ``<eos>`` follows the prompt's last line.
    """
    _check_level(level)
    if data is None or str(data) in EMBEDDED_NAMES:
        text = normalize(text, level)
    tokens = tokenize(text, level)
    return tokens[:-1] if tokens and tokens[-1] == EOS else tokens


SPLITS = ("train", "valid", "test")


def texts_directory(texts: object) -> Path:
    """In-memory texts as a corpus directory a run can name (and resume, evaluate and sample
    from later): ``{"train": ..., "valid": ..., "test": ...}`` (each a string or a list of
    strings, one line each), or a list of at least 10 strings, split as the embedded corpus is
    (of every 10 in order, the 9th to valid and the 10th to test). Written once under the
    user cache (``$UNROLL_CACHE/texts/<SHA-256 of the texts>``), never twice."""
    import hashlib

    from unroll.data.download import cache_dir

    if isinstance(texts, dict):
        missing = [s for s in SPLITS if s not in texts]
        extra = [k for k in texts if k not in SPLITS]
        if missing or extra:
            raise UserError(
                f"data: a dict of texts needs the keys train, valid and test"
                f"{f' (missing {missing})' if missing else ''}"
                f"{f' (unknown {extra})' if extra else ''}"
            )
        parts = {s: _lines(texts[s], f"data[{s!r}]") for s in SPLITS}
    elif isinstance(texts, (list, tuple)):
        lines = _lines(texts, "data")
        if len(lines) < 10:
            raise UserError(
                f"data: {len(lines)} texts; a list needs at least 10 (of every 10, the 9th "
                f"validates and the 10th tests), or give {{'train': ..., 'valid': ..., "
                f"'test': ...}}"
            )
        parts = {
            "train": [t for i, t in enumerate(lines) if i % 10 < 8],
            "valid": [t for i, t in enumerate(lines) if i % 10 == 8],
            "test": [t for i, t in enumerate(lines) if i % 10 == 9],
        }
    else:
        raise UserError(
            f"data: a {type(texts).__name__}; expected a name (pydoc, ptb), a directory, a "
            f"list of texts or a dict of train/valid/test texts"
        )
    files = {s: "".join(line + "\n" for line in parts[s]) for s in SPLITS}
    digest = hashlib.sha256("\0".join(files[s] for s in SPLITS).encode("utf-8")).hexdigest()
    directory = cache_dir("texts") / digest[:32]
    if not all((directory / f"{s}.txt").is_file() for s in SPLITS):
        directory.mkdir(parents=True, exist_ok=True)
        for s in SPLITS:
            atomic_write_text(directory / f"{s}.txt", files[s])
    return directory


def _lines(texts: object, what: str) -> list[str]:
    """A string's lines, or a list of strings each taken as lines (line breaks inside one
    text end its lines there)."""
    if isinstance(texts, str):
        return texts.split("\n")
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise UserError(f"{what}: expected a string or a list of strings")
    return [line for t in texts for line in t.split("\n")]


def resolve_corpus(
    data: str | os.PathLike | None,
    level: Literal["word", "char"] = "word",
    vocab: Vocabulary | None = None,
) -> Corpus:
    """The corpus a ``--data`` argument names.

    ``None``, ``"pydoc"`` or ``"embedded"``: the corpus shipped with Python
    (`unroll.data.embedded`); ``"ptb"``: the standard Penn Treebank (`unroll.data.ptb`, which
    may download it); anything else: a corpus directory (write ``./ptb`` for a directory
    named ptb).
    """
    _check_level(level)
    if data is None or str(data) in EMBEDDED_NAMES:
        return pydoc_corpus(level, vocab=vocab)
    if str(data) == "ptb":
        return load_corpus(ptb_directory(), level, vocab, name="ptb")
    path = Path(data)
    if not path.is_dir():
        what = "not a directory" if path.exists() else "no such directory"
        raise UserError(f"--data {data}: {what} (expected a corpus directory, 'ptb' or 'pydoc')")
    return load_corpus(path, level, vocab)
