"""Text corpora as id streams: tokenising, the vocabulary, and loading a corpus directory.

A corpus is a directory with three splits, in the PTB layout (``ptb.train.txt``,
``ptb.valid.txt``, ``ptb.test.txt``), WikiText's (``wiki.train.tokens``, ``wiki.valid.tokens``,
``wiki.test.tokens``: Merity et al. 2017's WikiText-2/103 as unpacked, already tokenised with
``<unk>``) or plainly ``train.txt``/``valid.txt``/``test.txt``.
Each split becomes one 1-D stream of token ids; `unroll.data.batching` lays it out for BPTT.

Tokenising (`tokenize`), as TensorFlow's PTB reader does at word level:

* ``word``: each line is split on whitespace and ``<eos>`` is appended at its end. Every line
  counts, so an empty line gives a lone ``<eos>``; a last line without a newline still ends
  with ``<eos>``.
* ``char``: each line's words (the same whitespace split) are joined by ``_``, the convention of
  the ``ptb.char.*`` files, and every character is a token; ``<eos>`` ends each line. So
  ``" the  cat \\n"`` becomes ``t h e _ c a t <eos>``. Runs of whitespace and leading/trailing
  whitespace collapse; a literal ``_`` in the text is indistinguishable from a space.

Files are read by `unroll.textio`'s rule: a line ends at ``\\n`` (or ``\\r\\n``) alone; other
separators (U+2028, ``\\v``, ...) are whitespace inside the line; a lone ``\\r`` is refused with
``file:line``. In a file read at word level, the word ``<eos>`` is refused with ``file:line``
(it would read as a line end); ``<unk>`` is kept as the unknown word (PTB writes it so).

The vocabulary is built from the training split only and ordered by (-count, word), so ids do
not depend on dictionary order or on the machine (TensorFlow's ``_build_vocab``).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from unroll.errors import UserError
from unroll.textio import check_reserved, read_lines

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
LEVELS = ("word", "char")
EMBEDDED_NAMES = ("pydoc", "embedded")  # --data values (besides None) for the embedded corpus
_SPACE = "_"  # how char level writes the gap between words (the ptb.char.* convention)


def _check_level(level: str) -> None:
    if level not in LEVELS:
        raise UserError(f"level {level!r}: expected one of {', '.join(LEVELS)}")


class Vocabulary:
    """Words and their ids; the id of a word is its index in `words`."""

    def __init__(self, words: Sequence[str]):
        words = list(words)
        index: dict[str, int] = {}
        for i, w in enumerate(words):
            if not isinstance(w, str):
                raise ValueError(f"Vocabulary: expected str words, got {type(w).__name__} at {i}")
            if w in index:
                raise ValueError(f"Vocabulary: duplicate word {w!r} at ids {index[w]} and {i}")
            index[w] = i
        self.words: list[str] = words
        self._index = index

    @classmethod
    def build(
        cls,
        tokens: Iterable[str],
        *,
        min_count: int = 1,
        max_size: int | None = None,
        unk: bool = False,
    ) -> Vocabulary:
        """The vocabulary of `tokens`, ordered by (-count, word) as TensorFlow's PTB reader.

        With the defaults every token is kept and nothing is added (PTB already contains
        ``<unk>``). `min_count`/`max_size` drop rare words; `unk=True`, or dropping any word,
        puts ``<unk>`` in the vocabulary (ranked by its own count, which includes the dropped
        words' occurrences) so that the dropped words can be encoded.
        """
        if max_size is not None and max_size < 1:
            raise ValueError(f"Vocabulary.build: max_size must be >= 1, got {max_size}")
        counts = Counter(tokens)
        ranked = sorted(counts, key=lambda w: (-counts[w], w))
        keep = [w for w in ranked if counts[w] >= min_count and w != UNK]
        need_unk = unk or UNK in counts or len(keep) < len(ranked)
        if max_size is not None and len(keep) + need_unk > max_size:
            need_unk = True
            keep = keep[: max_size - 1]
        if need_unk:
            # <unk> stands for every dropped word, and ranks by all their occurrences.
            kept = set(keep)
            counts_unk = sum(c for w, c in counts.items() if w not in kept)
            keep.append(UNK)
            counts = Counter({**{w: counts[w] for w in keep}, UNK: counts_unk})
            keep.sort(key=lambda w: (-counts[w], w))
        return cls(keep)

    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.words == other.words

    def __repr__(self) -> str:
        head = ", ".join(repr(w) for w in self.words[:5])
        return f"Vocabulary({len(self)} words: {head}{', ...' if len(self) > 5 else ''})"

    def id(self, word: str) -> int:
        try:
            return self._index[word]
        except KeyError:
            raise KeyError(f"{word!r} is not in the vocabulary") from None

    def word(self, i: int) -> str:
        if not 0 <= i < len(self.words):
            raise IndexError(f"id {i} out of range for a vocabulary of {len(self)} words")
        return self.words[i]

    @property
    def unk_id(self) -> int | None:
        """The id of ``<unk>``, or None when the vocabulary has no ``<unk>``."""
        return self._index.get(UNK)

    def encode(self, tokens: Sequence[str], source: str = "<input>") -> torch.Tensor:
        """Ids of `tokens` as a 1-D LongTensor; an unseen token becomes ``<unk>``.

        When the vocabulary has no ``<unk>``, an unseen token is a `UserError` naming
        ``source:line`` (lines counted by the ``<eos>`` tokens before it) and the token.
        """
        index, unk = self._index, self.unk_id
        if unk is not None:
            ids = [index.get(t, unk) for t in tokens]
        else:
            try:
                ids = [index[t] for t in tokens]
            except KeyError as e:
                bad = e.args[0]
                pos = list(tokens).index(bad)
                line = sum(1 for t in tokens[:pos] if t == EOS) + 1
                raise UserError(
                    f"{source}:{line}: {bad!r} is not in the vocabulary "
                    f"(of {len(self)} words, from the training split) and the vocabulary "
                    f"has no {UNK} to map it to"
                ) from None
        return torch.tensor(ids, dtype=torch.long)

    def encode_prompt(self, tokens: Sequence[str]) -> tuple[torch.Tensor, list[str]]:
        """Ids of a user prompt, and the unknown words (mapped to ``<unk>``) for a warning.

        Raises `UserError` when some word is unknown and the vocabulary has no ``<unk>``.
        """
        unknown = list(dict.fromkeys(t for t in tokens if t not in self._index))
        if unknown and self.unk_id is None:
            shown = ", ".join(repr(w) for w in unknown[:5])
            raise UserError(
                f"prompt: {shown}{' ...' if len(unknown) > 5 else ''} not in the vocabulary, "
                f"which has no {UNK}"
            )
        return self.encode(tokens, source="prompt"), unknown

    def decode(self, ids: Iterable[int] | torch.Tensor) -> list[str]:
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        return [self.word(int(i)) for i in ids]

    def to_list(self) -> list[str]:
        """The words in id order: what a checkpoint stores."""
        return list(self.words)

    @classmethod
    def from_list(cls, words: Sequence[str]) -> Vocabulary:
        return cls(words)


def _char_tokens(words: list[str]) -> list[str]:
    return list(_SPACE.join(words))


def tokenize(text: str, level: Literal["word", "char"] = "word") -> list[str]:
    """Tokens of `text`, with ``<eos>`` at every line end (see the module docstring). Lines
    end at ``\\n`` alone (`unroll.textio`), so a ``\\r`` before it is whitespace here."""
    _check_level(level)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the text ended with a newline: no extra empty line after it
    return tokenize_lines(lines, level)


def tokenize_lines(
    lines: Iterable[str], level: Literal["word", "char"] = "word", source: str | None = None
) -> list[str]:
    """Tokens of `lines`, ``<eos>`` after each. With a `source` (a file), a word ``<eos>`` in
    the text is a `UserError` naming ``source:line``: it would read as a line end. (A word
    ``<unk>`` is kept: it is the unknown word, as PTB writes it.)"""
    tokens: list[str] = []
    for number, line in enumerate(lines, 1):
        words = line.split()
        if level == "word":
            if source is not None and EOS in words:
                check_reserved(words, (EOS,), source, number, "the end of a line")
            tokens.extend(words)
        else:
            tokens.extend(_char_tokens(words))
        tokens.append(EOS)
    return tokens


def read_text_file(path: str | os.PathLike, level: Literal["word", "char"] = "word") -> list[str]:
    """The tokens of a UTF-8 text file; a missing, empty or non-UTF-8 file, a lone ``\\r``
    or a word ``<eos>`` is a `UserError` naming the file (and line)."""
    _check_level(level)
    lines = read_lines(path)
    if not any(line.strip() for line in lines):
        raise UserError(f"{path}: file is empty")
    return tokenize_lines(lines, level, source=str(path))


@dataclass
class Corpus:
    """A vocabulary and three 1-D id streams (LongTensor), one per split."""

    vocab: Vocabulary
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor
    level: str = "word"
    name: str = ""

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise UserError(f"split {name!r}: expected one of {', '.join(SPLITS)}")
        return getattr(self, name)

    def __repr__(self) -> str:
        return (
            f"Corpus({self.name!r}, level={self.level!r}, vocab={len(self.vocab)}, "
            f"train={self.train.numel()}, valid={self.valid.numel()}, test={self.test.numel()})"
        )


def find_split_files(directory: str | os.PathLike) -> dict[str, Path]:
    """``{'train', 'valid', 'test'}`` -> file: ``ptb.{split}.txt`` if present, else
    ``wiki.{split}.tokens`` (WikiText), else ``{split}.txt``. A missing directory or split
    file is a `UserError` naming what it expected.
    """
    directory = Path(directory)
    if not directory.is_dir():
        what = "not a directory" if directory.exists() else "no such directory"
        raise UserError(f"{directory}: {what}")
    found: dict[str, Path] = {}
    missing: list[str] = []
    for split in SPLITS:
        for name in (f"ptb.{split}.txt", f"wiki.{split}.tokens", f"{split}.txt"):
            if (directory / name).is_file():
                found[split] = directory / name
                break
        else:
            missing.append(f"ptb.{split}.txt or {split}.txt (or wiki.{split}.tokens)")
    if missing:
        raise UserError(
            f"{directory}: missing {'; '.join(missing)} "
            f"(a corpus directory holds train/valid/test text files)"
        )
    return found


def load_corpus(
    directory: str | os.PathLike,
    level: Literal["word", "char"] = "word",
    vocab: Vocabulary | None = None,
    name: str | None = None,
) -> Corpus:
    """Read a corpus directory. The vocabulary comes from the training split, unless given
    (evaluating a checkpoint passes the checkpoint's vocabulary)."""
    _check_level(level)
    files = find_split_files(directory)
    tokens = {split: read_text_file(path, level) for split, path in files.items()}
    if vocab is None:
        vocab = Vocabulary.build(tokens["train"])
    ids = {split: vocab.encode(tokens[split], source=str(files[split])) for split in SPLITS}
    return Corpus(vocab, ids["train"], ids["valid"], ids["test"], level, name or str(directory))
