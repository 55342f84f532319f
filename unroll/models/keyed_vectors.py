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

gensim's names are here too, with gensim's arguments and results (tested side by side with
gensim): `index_to_key`, `key_to_index`, `vector_size`, `get_index`, `get_vector(norm=)`,
`get_mean_vector`, `similar_by_key`/`_word`/`_vector`, `most_similar` with vectors and
``(key, weight)`` pairs in `positive`/`negative` and ``topn=None`` (all similarities),
`most_similar_cosmul`, `n_similarity`, `distance`, `distances`, `closer_than`, `rank`,
`most_similar_to_given`; ``score, sections = kv.evaluate_word_analogies(...)`` and
``pearson, spearman, oov_ratio = kv.evaluate_word_pairs(...)`` unpack as gensim's do, and both
find the evaluation files by name as the CLI does. The one difference: vectors come back as
torch tensors (gensim: numpy arrays; ``.numpy()`` converts without a copy). `save`/`load` use a
NumPy ``.npz`` file (no pickle); `to_gensim`/`from_gensim` convert when gensim is installed.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from unroll.data.word2vec_format import read_word2vec, write_word2vec
from unroll.errors import UserError
from unroll.fileio import atomic_write_bytes
from unroll.metrics.embeddings import (
    ANALOGIES,
    WORDSIM,
    AnalogyScores,
    PairScores,
    analogy_accuracy,
    find_eval_file,
    unit_rows,
    word_pair_correlation,
)

# What `most_similar` takes in `positive`/`negative`: a word, a row number, a vector, or any of
# those paired with a weight.
Key = str | int | Tensor | np.ndarray


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

    # gensim's names for the same things
    @property
    def index_to_key(self) -> list[str]:
        return self.words

    @property
    def key_to_index(self) -> dict[str, int]:
        return self.index

    @property
    def vector_size(self) -> int:
        return self.dim

    def get_index(self, key: str | int, default: int | None = None) -> int:
        """The row of a word (a row number is taken as it is); `default`, if given, for an
        unknown word, else `UnknownWord`."""
        if isinstance(key, str) and key in self.index:
            return self.index[key]
        is_row = isinstance(key, (int, np.integer)) and not isinstance(key, bool)
        if is_row and 0 <= int(key) < len(self):
            return int(key)
        if default is not None:
            return default
        if isinstance(key, str):
            return self.id(key)  # (raises UnknownWord)
        raise UnknownWord(f"{key!r} is not a word or a row number below {len(self)}")

    def has_index_for(self, key: object) -> bool:
        return isinstance(key, (str, int, np.integer)) and self.get_index(key, -1) >= 0

    def get_vector(self, key: str | int, norm: bool = False) -> Tensor:
        """The vector (D,) of a word (unit length with `norm`)."""
        i = self.get_index(key)
        return self.unit[i] if norm else self.vectors[i]

    def get_normed_vectors(self) -> Tensor:
        """(V, D): every vector scaled to unit length."""
        return self.unit

    def get_mean_vector(
        self,
        keys: Sequence[Key],
        weights: Sequence[float] | np.ndarray | Tensor | None = None,
        pre_normalize: bool = True,
        post_normalize: bool = False,
        ignore_missing: bool = True,
    ) -> Tensor:
        """The weighted mean (D,) of words' vectors (unit ones with `pre_normalize`) and of
        vectors given as they are, divided by the sum of |weights| (gensim's rule); scaled to
        unit length with `post_normalize`. Unknown words are skipped with `ignore_missing`."""
        keys = list(keys)
        if not keys:
            raise UserError("get_mean_vector: give at least one word or vector")
        w = torch.ones(len(keys)) if weights is None else torch.as_tensor(weights).double()
        if w.shape != (len(keys),):
            raise UserError(f"get_mean_vector: {len(keys)} keys but {tuple(w.shape)} weights")
        total = torch.zeros(self.dim, dtype=torch.float64)
        weight = 0.0
        for key, wk in zip(keys, w.tolist()):
            if self._is_key(key):
                if not self.has_index_for(key):
                    if ignore_missing:
                        continue
                    self.get_index(key)  # raises UnknownWord
                v = self.get_vector(key, norm=pre_normalize)
            else:
                v = self._vector(key)
            total += wk * v.double()
            weight += abs(wk)
        mean = total / weight if weight > 0 else total
        if post_normalize:
            mean = mean / mean.norm().clamp_min(1e-30)
        return mean.float()

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
        positive: Key | Iterable[Key | tuple[Key, float]] | None = (),
        negative: Key | Iterable[Key | tuple[Key, float]] | None = (),
        topn: int | None = 10,
        restrict_vocab: int | None = None,
    ) -> list[tuple[str, float]] | Tensor:
        """The `topn` words (of the `restrict_vocab` most frequent) nearest to the weighted mean
        of the unit vectors of `positive` (weight 1) minus those of `negative` (weight -1),
        with their cosines; the words asked about are left out. An item may be a word, a row
        number, a vector (used as given, not scaled) or ``(item, weight)``. ``topn=None``: the
        cosines with all of those words (n,), the asked ones included, as gensim gives them."""
        if topn is not None and topn < 1:
            return []
        items = [(k, 1.0) for k in _as_list(positive)] + [(k, -1.0) for k in _as_list(negative)]
        if not items:
            raise UserError("most_similar: give at least one word or vector")
        keys = [k for k, _ in items]
        weights = [w for _, w in items]
        for j, item in enumerate(keys):
            if isinstance(item, tuple):
                keys[j], weights[j] = item[0], float(item[1])
        mean = self.get_mean_vector(
            keys, weights, pre_normalize=True, post_normalize=True, ignore_missing=False
        )
        return self._nearest(mean, topn, restrict_vocab, self._rows_of(keys))

    def similar_by_key(
        self, key: str, topn: int | None = 10, restrict_vocab: int | None = None
    ) -> list[tuple[str, float]] | Tensor:
        return self.most_similar([key], topn=topn, restrict_vocab=restrict_vocab)

    similar_by_word = similar_by_key

    def similar_by_vector(
        self, vector: Tensor | np.ndarray, topn: int | None = 10, restrict_vocab: int | None = None
    ) -> list[tuple[str, float]] | Tensor:
        """The words nearest (by cosine) to a vector (D,)."""
        return self.most_similar([self._vector(vector)], topn=topn, restrict_vocab=restrict_vocab)

    def most_similar_cosmul(
        self,
        positive: Key | Iterable[Key] | None = (),
        negative: Key | Iterable[Key] | None = (),
        topn: int | None = 10,
        restrict_vocab: int | None = None,
    ) -> list[tuple[str, float]] | Tensor:
        """3CosMul (Levy & Goldberg 2014, eq. 4): rank w by ∏ cos'(w, p) / (∏ cos'(w, n) + ε)
        with cosines shifted to [0, 1] (cos' = (1 + cos) / 2, their footnote 7), ε = 1e-6."""
        if topn is not None and topn < 1:
            return []
        pos, neg = _as_list(positive), _as_list(negative)
        if not pos:
            raise UserError("most_similar_cosmul: give at least one positive word or vector")
        n = self._restricted(restrict_vocab)

        def shifted(item: Key) -> Tensor:  # (n,)
            v = self.get_vector(item, norm=True) if self._is_key(item) else self._vector(item)
            return (1 + self.unit[:n] @ v) / 2

        score = torch.stack([shifted(k) for k in pos]).prod(0)
        if neg:
            score = score / (torch.stack([shifted(k) for k in neg]).prod(0) + 1e-6)
        return self._ranked(score, topn, self._rows_of(pos + neg))

    def n_similarity(self, ws1: Iterable[str], ws2: Iterable[str]) -> float:
        """Cosine between the means of two sets of words' (unscaled) vectors."""
        ws1, ws2 = list(ws1), list(ws2)
        if not ws1 or not ws2:
            raise UserError("n_similarity: both word lists must be non-empty")
        a = self.get_mean_vector(ws1, pre_normalize=False, post_normalize=True)
        b = self.get_mean_vector(ws2, pre_normalize=False, post_normalize=True)
        return float(a @ b)

    def distance(self, w1: str, w2: str) -> float:
        """1 - cosine similarity."""
        return 1.0 - self.similarity(w1, w2)

    def distances(self, word_or_vector: Key, other_words: Iterable[str] = ()) -> Tensor:
        """1 - cosine from a word or vector to each of `other_words` (all words when empty)."""
        if self._is_key(word_or_vector):
            v = self.get_vector(word_or_vector, norm=True)
        else:
            v = self._vector(word_or_vector)
            v = v / v.norm().clamp_min(1e-30)
        others = list(other_words)
        unit = self.unit if not others else self.unit[[self.id(w) for w in others]]
        return 1 - unit @ v

    def closer_than(self, key1: str, key2: str) -> list[str]:
        """The words nearer to `key1` than `key2` is (`key1` itself left out)."""
        d = self.distances(key1)
        i = self.id(key1)
        closer = (d < d[self.id(key2)]).nonzero().flatten().tolist()
        return [self.words[j] for j in closer if j != i]

    def rank(self, key1: str, key2: str) -> int:
        """1 + how many words are nearer to `key1` than `key2` is."""
        return len(self.closer_than(key1, key2)) + 1

    def most_similar_to_given(self, key1: str, keys_list: Sequence[str]) -> str:
        """The word of `keys_list` most similar to `key1`."""
        if not keys_list:
            raise UserError("most_similar_to_given: keys_list is empty")
        return max(keys_list, key=lambda k: self.similarity(key1, k))

    # -- the pieces the queries share ----------------------------------------------------------
    def _is_key(self, item: object) -> bool:
        return isinstance(item, (str, int, np.integer)) and not isinstance(item, bool)

    def _vector(self, item: object) -> Tensor:
        """A vector given as a tensor or array (D,), checked."""
        v = torch.as_tensor(item).detach().float().cpu().flatten()
        if v.numel() != self.dim:
            raise UserError(f"a vector of {v.numel()} numbers given; these vectors have {self.dim}")
        return v

    def _rows_of(self, keys: Sequence[object]) -> list[int]:
        """The rows of the words among `keys` (what a query leaves out of its answer)."""
        return [self.get_index(k) for k in keys if self._is_key(k)]

    def _restricted(self, restrict_vocab: int | None) -> int:
        return len(self) if not restrict_vocab else min(int(restrict_vocab), len(self))

    def _nearest(
        self, unit_mean: Tensor, topn: int | None, restrict_vocab: int | None, asked: list[int]
    ) -> list[tuple[str, float]] | Tensor:
        n = self._restricted(restrict_vocab)
        return self._ranked(self.unit[:n] @ unit_mean, topn, asked)

    def _ranked(
        self, score: Tensor, topn: int | None, asked: list[int]
    ) -> list[tuple[str, float]] | Tensor:
        """`score` (n,) of the first n words: all of it (topn None) or the best `topn` words
        that were not asked about, best first."""
        if topn is None:
            return score
        score = score.clone()
        left_out = sorted({i for i in asked if i < score.shape[0]})
        score[left_out] = float("-inf")
        k = max(min(int(topn), score.shape[0] - len(left_out)), 0)
        best = score.topk(k)
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
        self,
        path: str | os.PathLike = ANALOGIES,
        restrict_vocab: int | None = 30_000,
        case_insensitive: bool = True,
    ) -> AnalogyScores:
        """Accuracy per section on an analogy file (`unroll.metrics.embeddings`); a bare name
        such as ``questions-words.txt`` is looked for where the CLI looks (``$UNROLL_DATA/
        word2vec``, gensim's test data). Unpacks as gensim's: ``score, sections = ...``."""
        found = _eval_file(path, ANALOGIES)
        return analogy_accuracy(self.words, self.vectors, found, restrict_vocab, case_insensitive)

    def evaluate_word_pairs(
        self,
        path: str | os.PathLike = WORDSIM,
        restrict_vocab: int | None = 30_000,
        case_insensitive: bool = True,
    ) -> PairScores:
        """Spearman/Pearson correlation with a word-similarity file (found as above). Unpacks
        as gensim's: ``(pearson, p), (spearman, p), oov_ratio = ...``."""
        found = _eval_file(path, WORDSIM)
        return word_pair_correlation(
            self.words, self.vectors, found, restrict_vocab, case_insensitive
        )

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

    def save(self, path: str | os.PathLike) -> Path:
        """Words and vectors in one NumPy ``.npz`` file (no pickle: `load` reads it safely)."""
        buffer = io.BytesIO()
        np.savez(buffer, words=np.array(self.words, dtype=np.str_), vectors=self.vectors.numpy())
        path = Path(path)
        atomic_write_bytes(path, buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> KeyedVectors:
        """Read what `save` wrote (a word2vec file: use `load_word2vec_format`)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                words, vectors = data["words"].tolist(), data["vectors"]
        except OSError as e:
            raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
        except (ValueError, KeyError, zipfile.BadZipFile) as e:
            raise UserError(
                f"{path}: not a file KeyedVectors.save wrote (expected a .npz with words and "
                f"vectors: {e})"
            ) from None
        if vectors.ndim != 2 or len(words) != vectors.shape[0]:
            raise UserError(f"{path}: {len(words)} words but vectors {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise UserError(f"{path}: the vectors hold inf or nan")
        return cls(words, torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32)))

    def to_gensim(self) -> Any:
        """A ``gensim.models.KeyedVectors`` with the same words and vectors (needs gensim)."""
        try:
            from gensim.models import KeyedVectors as GensimKeyedVectors
        except ImportError:
            raise UserError("to_gensim: gensim is not installed (pip install gensim)") from None
        kv = GensimKeyedVectors(self.dim)
        kv.add_vectors(self.words, self.vectors.numpy())
        return kv

    @classmethod
    def from_gensim(cls, kv: Any) -> KeyedVectors:
        """From a ``gensim.models.KeyedVectors`` (its order kept)."""
        return cls(list(kv.index_to_key), torch.from_numpy(np.asarray(kv.vectors)))


def _as_list(items: object) -> list[Any]:
    """gensim's rule: one word or one vector, or an iterable of them; None: nothing."""
    if items is None:
        return []
    if isinstance(items, (str, int, np.integer, Tensor, np.ndarray)):
        return [items]
    return list(items)  # type: ignore[call-overload]


def _eval_file(path: str | os.PathLike, default_name: str) -> Path:
    """`path` when it is a file; else a bare name looked for as the CLI does."""
    if Path(path).expanduser().is_file():
        return Path(path).expanduser()
    name = Path(path).name if str(path) else default_name
    if Path(path).name == str(path):  # a bare name: look where the CLI looks
        found = find_eval_file(name)
        if found is not None:
            return found
    return find_eval_file(name, path)  # a UserError naming the path  # type: ignore[return-value]
