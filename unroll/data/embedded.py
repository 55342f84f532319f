"""The corpus that ships with every Python: the English docs text of ``pydoc_data.topics``.

``pydoc_data.topics.topics`` maps ~80 help topics ("assert", "atom-identifiers", ...) to the
text of the language reference (~465k characters), so the default demo needs no download.
It is turned into a small PTB-like corpus, deterministically (for a given Python version;
the text changes between Python releases):

1. Topics in sorted key order; each topic's text lower-cased (as PTB is), with curly quotes
   made straight. Blank lines and lines without a letter or digit (the ``*****``/``-----``
   heading rules and table borders of reStructuredText) are dropped.
2. Word level: each line is re-spaced as PTB is pre-tokenised, so that whitespace splitting
   gives the tokens: an identifier or word (``__init__``, ``isn't``), a number, or one
   punctuation character (``print("x")`` -> ``print ( " x " )``). Char level uses the
   lower-cased line itself (see `unroll.data.text.tokenize`).
3. Lines are cut into blocks of `BLOCK_LINES`; of every 10 blocks, the 9th goes to valid, the
   10th to test, the rest to train (80/10/10, all three drawing from every part of the docs).
4. Every line ends in ``<eos>``. The vocabulary comes from train: words seen fewer than
   `MIN_COUNT` times become ``<unk>`` (so it always has ``<unk>``, and valid/test words
   unseen in train map to it), capped at `MAX_VOCAB`.
"""

from __future__ import annotations

import re
from typing import Literal

from unroll.data.text import SPLITS, Corpus, Vocabulary, _check_level, tokenize
from unroll.errors import UserError

BLOCK_LINES = 20
MIN_COUNT = 2
MAX_VOCAB = 10_000

_HAS_ALNUM = re.compile(r"[a-z0-9]")
_TOKEN = re.compile(r"[a-z_][a-z0-9_]*(?:'[a-z]+)?|\d+|[^\sa-z0-9_]")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def normalize(text: str, level: Literal["word", "char"] = "word") -> str:
    """`text` written as this corpus writes its lines (steps 1-2): lower-cased, straight quotes,
    and at word level re-spaced into tokens. Used on generation prompts too."""
    _check_level(level)
    text = text.lower().translate(_QUOTES)
    if level == "char":
        return text
    return "\n".join(" ".join(_TOKEN.findall(line)) for line in text.split("\n"))


def pydoc_lines() -> list[str]:
    """The cleaned, lower-cased lines of the pydoc topics, in a fixed order (step 1)."""
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise UserError(
            "the embedded corpus needs the standard library's pydoc_data, which this Python "
            "lacks; pass --data DIR (a corpus directory) or --data ptb"
        ) from None
    lines = []
    for key in sorted(topics):
        for line in topics[key].lower().translate(_QUOTES).split("\n"):
            if _HAS_ALNUM.search(line):
                lines.append(line)
    return lines


def _split_lines(lines: list[str]) -> dict[str, list[str]]:
    parts: dict[str, list[str]] = {s: [] for s in SPLITS}
    for start in range(0, len(lines), BLOCK_LINES):
        k = (start // BLOCK_LINES) % 10
        split = "valid" if k == 8 else "test" if k == 9 else "train"
        parts[split].extend(lines[start : start + BLOCK_LINES])
    return parts


def pydoc_corpus(
    level: Literal["word", "char"] = "word", vocab: Vocabulary | None = None
) -> Corpus:
    """The pydoc corpus (see the module docstring), name ``"pydoc"``.

    `vocab`, when given (evaluating a checkpoint), replaces the one built from train.
    """
    _check_level(level)
    parts = _split_lines(pydoc_lines())
    tokens = {
        s: tokenize(normalize("\n".join(lines) + "\n", level), level) for s, lines in parts.items()
    }
    if vocab is None:
        vocab = Vocabulary.build(tokens["train"], min_count=MIN_COUNT, max_size=MAX_VOCAB, unk=True)
    ids = {s: vocab.encode(tokens[s], source=f"pydoc {s} split") for s in SPLITS}
    return Corpus(vocab, ids["train"], ids["valid"], ids["test"], level, "pydoc")
