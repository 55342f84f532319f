"""Trained word vectors and what people ask of them (the shape of gensim's ``KeyedVectors``).

    kv = KeyedVectors.load_word2vec_format("vectors.bin")     # or unroll.word2vec.load(RUN_DIR)
    kv["king"]                                  # (D,) the vector
    kv.most_similar(positive=["king", "woman"], negative=["man"], topn=5)
    kv.similarity("cat", "dog"); kv.doesnt_match(["cat", "dog", "car"])
    kv.evaluate_word_analogies("questions-words.txt", restrict_vocab=30000)
    kv.save_word2vec_format("vectors.txt", binary=False)

Similarities are cosines. `most_similar` ranks the words by the cosine with the mean of the
unit vectors of `positive` minus those of `negative` (the words asked about are left out),
as gensim does; words are ordered most frequent first, so ``restrict_vocab=N`` means the top
N. Unknown words raise `UnknownWord` (a `KeyError` and a `UserError`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from unroll.data.word2vec_format import read_word2vec, write_word2vec
from unroll.errors import UserError
from unroll.metrics.embeddings import (
    AnalogyScores,
    PairScores,
    analogy_accuracy,
    unit_rows,
    word_pair_correlation,
)


class UnknownWord(UserError, KeyError):
    """A word that is not in the vocabulary (one line, as every `UserError`)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class KeyedVectors:
    """`words` (most frequent first) and their `vectors` (V, D) float32 on the CPU."""

    def __init__(self, words: Sequence[str], vectors: Tensor | np.ndarray):
        vectors = torch.as_tensor(vectors).detach().float().cpu().contiguous()
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(f"KeyedVectors: {len(words)} words, vectors {tuple(vectors.shape)}")
        self.words: list[str] = list(words)
        self.vectors = vectors
        self.index: dict[str, int] = {}
        for i, w in enumerate(self.words):
            if w in self.index:
                raise ValueError(f"KeyedVectors: duplicate word {w!r}")
            self.index[w] = i
        self._unit: Tensor | None = None

    def check_finite(self, source: str) -> None:
        """A `UserError` naming `source` and the first word whose vector holds inf or nan."""
        bad = ~torch.isfinite(self.vectors).all(dim=1)
        if bool(bad.any()):
            word = self.words[int(bad.nonzero()[0])]
            raise UserError(f"{source}: the vector of {word!r} holds inf or nan")

    # -- lookup ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.words)

    def __contains__(self, word: object) -> bool:
        return word in self.index

    def __repr__(self) -> str:
        return f"KeyedVectors({len(self)} words, dim {self.dim})"

    @property
    def dim(self) -> int:
        return self.vectors.shape[1]

    def id(self, word: str) -> int:
        try:
            return self.index[word]
        except KeyError:
            raise UnknownWord(f"{word!r} is not in the vocabulary ({len(self)} words)") from None

    def __getitem__(self, word: str | Sequence[str]) -> Tensor:
        """The vector (D,) of a word, or the vectors (n, D) of a list of words."""
        if isinstance(word, str):
            return self.vectors[self.id(word)]
        return self.vectors[[self.id(w) for w in word]]

    @property
    def unit(self) -> Tensor:
        """(V, D): the vectors scaled to unit length (computed once)."""
        if self._unit is None:
            self._unit = unit_rows(self.vectors)
        return self._unit

    # -- queries --------------------------------------------------------------------------------
    def similarity(self, a: str, b: str) -> float:
        """Cosine of the two words' vectors."""
        return float(self.unit[self.id(a)] @ self.unit[self.id(b)])

    def most_similar(
        self,
        positive: str | Iterable[str] = (),
        negative: str | Iterable[str] = (),
        topn: int = 10,
        restrict_vocab: int | None = None,
    ) -> list[tuple[str, float]]:
        """The `topn` words (of the `restrict_vocab` most frequent) nearest to the mean of the
        unit vectors of `positive` minus those of `negative`, with their cosines."""
        positive = [positive] if isinstance(positive, str) else list(positive)
        negative = [negative] if isinstance(negative, str) else list(negative)
        if not positive and not negative:
            raise UserError("most_similar: give at least one word")
        asked = [self.id(w) for w in positive + negative]
        sign = torch.tensor([1.0] * len(positive) + [-1.0] * len(negative))
        mean = (self.unit[asked] * sign[:, None]).mean(0)
        mean = mean / mean.norm().clamp_min(1e-30)
        n = len(self) if not restrict_vocab else min(restrict_vocab, len(self))
        cos = self.unit[:n] @ mean  # (n,)
        cos[[i for i in asked if i < n]] = float("-inf")
        k = min(topn, n - len({i for i in asked if i < n}))
        best = cos.topk(max(k, 0))
        return [(self.words[i], float(c)) for c, i in zip(best.values, best.indices.tolist())]

    def doesnt_match(self, words: Iterable[str]) -> str:
        """The word farthest (by cosine) from the mean of the words' unit vectors."""
        words = list(words)
        if len(words) < 2:
            raise UserError("doesnt_match: give at least two words")
        unit = self.unit[[self.id(w) for w in words]]
        mean = unit.mean(0)
        mean = mean / mean.norm().clamp_min(1e-30)
        return words[int((unit @ mean).argmin())]

    # -- evaluation -----------------------------------------------------------------------------
    def evaluate_word_analogies(
        self, path: str | os.PathLike, restrict_vocab: int | None = 30_000
    ) -> AnalogyScores:
        """Accuracy per section on an analogy file (`unroll.metrics.embeddings`)."""
        return analogy_accuracy(self.words, self.vectors, path, restrict_vocab)

    def evaluate_word_pairs(
        self, path: str | os.PathLike, restrict_vocab: int | None = 30_000
    ) -> PairScores:
        """Spearman/Pearson correlation with a word-similarity file."""
        return word_pair_correlation(self.words, self.vectors, path, restrict_vocab)

    # -- files ----------------------------------------------------------------------------------
    def save_word2vec_format(self, path: str | os.PathLike, binary: bool = False) -> Path:
        """Write the C tool's text or binary format (`unroll.data.word2vec_format`)."""
        return write_word2vec(path, self.words, self.vectors.numpy(), binary)

    @classmethod
    def load_word2vec_format(
        cls, path: str | os.PathLike, binary: bool | None = None
    ) -> KeyedVectors:
        """Read a text or binary word2vec file (`binary` None: told from the file)."""
        words, vectors = read_word2vec(path, binary)
        return cls(words, torch.from_numpy(vectors))
