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
