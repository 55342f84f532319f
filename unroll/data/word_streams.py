"""Corpora for word embeddings: sentences of words -> a vocabulary with counts -> one id stream.

What a ``--data`` value names (`sentences`):

* ``pydoc`` (or ``embedded``, or empty): the English docs text that ships with Python, every
  line of it (`unroll.data.embedded`, lower-cased and split into words as the language model
  reads it) — no download;
* ``ptb``: the standard Penn Treebank's training file (`unroll.data.ptb`);
* ``text8``: Matt Mahoney's text8, one stream of 17M words (`unroll.data.text8`, downloaded and
  checked when not found);
* a text file, or a directory whose files (sorted, hidden ones skipped) are read in turn.

A line is a sentence of whitespace-separated words; a line longer than `max_sentence_length`
words (text8 is one line) is cut into sentences of that length, as gensim's ``LineSentence``
and ``Text8Corpus`` do (10,000 words). Files are read in blocks, so a 100 MB line never sits in
memory as one list of strings.

`build_corpus` reads the sentences twice (count, then encode) and keeps::

    vocab     words of count >= min_count, most frequent first (ties by the word), at most
              max_vocab of them; counts[i] is the count of vocab.words[i]
    ids       (N,) int32: the corpus's in-vocabulary words, sentence after sentence. Rarer words
              are dropped *before* windows are drawn (as gensim and the C tool do), so the
              words around a dropped word become neighbours.
    starts    (S + 1,) int64: sentence s is ids[starts[s]:starts[s + 1]] (none is empty)
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unroll import textio
from unroll.data.text import EMBEDDED_NAMES, Vocabulary
from unroll.errors import UserError

MAX_SENTENCE_LENGTH = 10_000  # gensim's MAX_WORDS_IN_BATCH
_BLOCK = 1 << 22  # bytes read at a time
_LAST_WORD = re.compile(r"\S+$")


@dataclass
class WordCorpus:
    """A corpus as in-vocabulary ids, sentence by sentence (see the module docstring)."""

    vocab: Vocabulary
    counts: torch.Tensor  # (V,) int64, descending
    ids: torch.Tensor  # (N,) int32
    starts: torch.Tensor  # (S + 1,) int64
    name: str
    raw_words: int  # words read, in or out of the vocabulary

    @property
    def words(self) -> list[str]:
        return self.vocab.words

    def __len__(self) -> int:
        return int(self.ids.numel())

    @property
    def sentence_index(self) -> torch.Tensor:
        """(N,) int64: the sentence of each position (windows stop at sentence ends)."""
        lengths = self.starts[1:] - self.starts[:-1]
        return torch.repeat_interleave(torch.arange(len(lengths)), lengths)

    def chunks(self, words: int) -> list[tuple[int, int]]:
        """[start, end) ranges of whole sentences, each the shortest run of at least `words`
        words (the last may be shorter): the sentences of one step, like gensim's jobs."""
        starts = self.starts.numpy()
        bounds, a, n = [], 0, len(self)
        while a < n:
            b = int(starts[min(np.searchsorted(starts, a + words), len(starts) - 1)])
            bounds.append((a, b))
            a = b
        return bounds


def sentences(
    data: str | os.PathLike | None, max_sentence_length: int = MAX_SENTENCE_LENGTH
) -> tuple[str, Callable[[], Iterator[list[str]]]]:
    """(name, a function giving a fresh iterator of sentences) for a ``--data`` value."""
    text = "" if data is None else str(data)
    if text in ("", *EMBEDDED_NAMES):
        return "pydoc", lambda: _cut(_pydoc_lines(), max_sentence_length)
    if text == "ptb":
        from unroll.data.ptb import ptb_directory

        path = ptb_directory() / "ptb.train.txt"
        return "ptb", lambda: _file_sentences(path, max_sentence_length)
    if text == "text8":
        from unroll.data.text8 import text8_path

        path = text8_path()
        return "text8", lambda: _file_sentences(path, max_sentence_length)
    path = Path(text).expanduser()
    if path.is_dir():
        files = _text_files(path)
        if not files:
            raise UserError(f"--data {data}: the directory holds no files (expected text files)")

        def read_all() -> Iterator[list[str]]:
            for f in files:
                yield from _file_sentences(f, max_sentence_length)

        return path.name, read_all
    if path.is_file():
        return path.name, lambda: _file_sentences(path, max_sentence_length)
    raise UserError(
        f"--data {data}: no such file or directory (expected a text file, a directory of them, "
        "'pydoc', 'ptb' or 'text8')"
    )


def _text_files(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out.extend(Path(dirpath) / f for f in sorted(filenames) if not f.startswith("."))
    return out


def _pydoc_lines() -> Iterator[list[str]]:
    from unroll.data.embedded import normalize, pydoc_lines

    for line in pydoc_lines():
        yield normalize(line).split()


def _cut(lines: Iterable[list[str]], max_len: int) -> Iterator[list[str]]:
    for words in lines:
        for i in range(0, len(words), max_len):
            yield words[i : i + max_len]


def _file_sentences(path: Path, max_len: int) -> Iterator[list[str]]:
    """The sentences of a text file, read in blocks (`unroll.textio.iter_line_parts`: lines end
    at ``\\n`` alone, whatever other separators a line holds).

    A block may end inside a word (kept for the next part) and inside a line (its words wait
    in `pending` until the line ends or `max_len` of them make a sentence)."""
    pending: list[str] = []
    carry = ""
    for part, ends_line in textio.iter_line_parts(path, _BLOCK):
        text = carry + part
        if ends_line:
            pending.extend(text.split())
            carry = ""
            yield from _full(pending, max_len)
            if pending:
                yield pending
            pending = []
            continue
        m = _LAST_WORD.search(text)  # the line goes on: its last word may too
        carry = m.group(0) if m else ""
        pending.extend(text[: m.start()].split() if m else text.split())
        yield from _full(pending, max_len)
    pending.extend(carry.split())
    yield from _full(pending, max_len)
    if pending:
        yield pending


def _full(pending: list[str], max_len: int) -> Iterator[list[str]]:
    """Yield (and remove) the leading whole sentences of `max_len` words from `pending`."""
    while len(pending) >= max_len:
        yield pending[:max_len]
        del pending[:max_len]


def count_words(sentences: Iterable[list[str]]) -> tuple[Counter, int]:
    """(word -> count, number of words)."""
    counts: Counter = Counter()
    total = 0
    for s in sentences:
        counts.update(s)
        total += len(s)
    return counts, total


def build_vocab(counts: Counter, min_count: int, max_vocab: int = 0) -> tuple[Vocabulary, list]:
    """(words of count >= `min_count`, most frequent first, ties by the word; their counts).
    `max_vocab` > 0 keeps only that many."""
    kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    if max_vocab:
        kept = kept[:max_vocab]
    return Vocabulary(kept), [counts[w] for w in kept]


def build_corpus(
    data: str | os.PathLike | None = None,
    *,
    min_count: int = 5,
    max_vocab: int = 0,
    max_sentence_length: int = MAX_SENTENCE_LENGTH,
) -> WordCorpus:
    """Read `data` (see `sentences`), build the vocabulary and encode the corpus. An empty
    corpus, or one where no word reaches `min_count`, is a `UserError` naming the data."""
    name, read = sentences(data, max_sentence_length)
    counter, raw = count_words(read())
    label = f"--data {data if data not in (None, '') else 'pydoc'}"
    if raw == 0:
        raise UserError(f"{label}: the corpus is empty (expected whitespace-separated words)")
    vocab, counts = build_vocab(counter, min_count, max_vocab)
    if len(vocab) == 0:
        top = max(counter.values())
        raise UserError(
            f"{label}: no word occurs min_count={min_count} times ({raw} words, the most "
            f"frequent {top} times); lower min_count or give more text"
        )
    index = {w: i for i, w in enumerate(vocab.words)}
    ids: list[np.ndarray] = []
    lengths: list[int] = []
    for s in read():
        row = np.fromiter((index[w] for w in s if w in index), dtype=np.int32)
        if len(row):
            ids.append(row)
            lengths.append(len(row))
    # A word and a context word: two words of the vocabulary in one sentence. Without one,
    # every step has no example and the run would report a loss of 0.
    if max(lengths, default=0) < 2:
        raise UserError(
            f"{label}: no sentence (line) holds two words of the vocabulary (min_count="
            f"{min_count}), so there is no (word, context) pair to train on; give more text"
        )
    starts = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=starts[1:])
    return WordCorpus(
        vocab=vocab,
        counts=torch.tensor(counts, dtype=torch.int64),
        ids=torch.from_numpy(np.concatenate(ids)),
        starts=torch.from_numpy(starts),
        name=name,
        raw_words=raw,
    )
