"""Trained vectors from a run or a file, their scores, queries, export and picture.

`load` reads a run directory, a checkpoint or a word2vec text/binary file (gensim's or the C
tool's) into a `KeyedVectors`; the other functions are what ``unroll word2vec eval|similar|
analogy|export|plot`` call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from unroll import textio
from unroll.engine.checkpoint import (
    find_checkpoint,
    load_checkpoint,
    refuse_to_overwrite_checkpoints,
)
from unroll.engine.recipe import Result
from unroll.errors import UserError
from unroll.metrics.embeddings import (
    ANALOGIES,
    SIMLEX,
    WORDSIM,
    analogy_accuracy,
    find_eval_file,
    read_analogies,
    read_word_pairs,
    word_pair_correlation,
)
from unroll.models.keyed_vectors import KeyedVectors
from unroll.recipes.word2vec.config import KIND

MISSING_FILES = (
    "no evaluation files found: pass analogies=/wordsim=/simlex= paths (or --analogies ...), "
    "put them in $UNROLL_DATA/word2vec, or pip install gensim (its wheel ships them)"
)


def load(path: str | os.PathLike, checkpoint: str = "best") -> KeyedVectors:
    """The word vectors of a run directory or checkpoint (its `checkpoint`: best or last), or
    of a word2vec file (text or binary, told from the file)."""
    p = Path(path)
    if p.is_file():
        with open(p, "rb") as f:
            is_checkpoint = f.read(2) == b"PK"  # torch.save writes a zip archive
        if not is_checkpoint:
            return KeyedVectors.load_word2vec_format(p)
    found = find_checkpoint(p, checkpoint)
    ckpt = load_checkpoint(found, kind=KIND)
    try:
        kv = KeyedVectors(list(ckpt["words"]), ckpt["model"]["in_vectors"])
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"{path}: checkpoint without its words and vectors ({e})") from None
    kv.check_finite(str(found))
    return kv


@dataclass
class EvalFiles:
    """The evaluation files in use (None: not found)."""

    analogies: Path | None
    wordsim: Path | None
    simlex: Path | None

    @classmethod
    def find(cls, analogies: str = "", wordsim: str = "", simlex: str = "") -> EvalFiles:
        """Given paths (each must exist), else the default lookup (`find_eval_file`)."""
        return cls(
            find_eval_file(ANALOGIES, analogies or None),
            find_eval_file(WORDSIM, wordsim or None),
            find_eval_file(SIMLEX, simlex or None),
        )

    def any(self) -> bool:
        return any((self.analogies, self.wordsim, self.simlex))

    def check(self) -> EvalFiles:
        """Read every file once: a malformed line is a `UserError` naming ``file:line`` now,
        before training, not after the first epoch."""
        if self.analogies is not None:
            read_analogies(self.analogies)
        for path in (self.wordsim, self.simlex):
            if path is not None:
                read_word_pairs(path)
        return self


def scores(kv: KeyedVectors, files: EvalFiles, restrict_vocab: int) -> tuple[dict, list[str]]:
    """(metrics, report lines): analogy accuracy per section, WordSim-353 and SimLex-999
    Spearman (and Pearson) correlations, for the files that are there."""
    metrics: dict[str, Any] = {}
    lines: list[str] = []
    if files.analogies is not None:
        a = analogy_accuracy(kv.words, kv.vectors, files.analogies, restrict_vocab)
        metrics.update(
            analogy_accuracy=a.accuracy,
            analogy_correct=a.total.correct,
            analogy_answered=a.total.answered,
            analogy_skipped=a.total.skipped,
            analogy_semantic=a.semantic.accuracy,
            analogy_syntactic=a.syntactic.accuracy,
            analogy_sections={s.name: s.accuracy for s in a.sections},
            restrict_vocab=a.restrict_vocab,
        )
        lines.append(a.format())
    for name, path in (("wordsim353", files.wordsim), ("simlex999", files.simlex)):
        if path is None:
            continue
        try:
            p = word_pair_correlation(kv.words, kv.vectors, path, restrict_vocab)
        except UserError as e:  # e.g. a tiny vocabulary knows fewer than two pairs
            lines.append(f"{name}: not scored ({e})")
            continue
        metrics.update(
            {
                f"{name}_spearman": p.spearman,
                f"{name}_pearson": p.pearson,
                f"{name}_pairs": p.pairs,
                f"{name}_skipped": p.skipped,
            }
        )
        lines.append(p.format())
    if not files.any():
        lines.append(MISSING_FILES)
    return metrics, lines


@dataclass
class Word2VecEvaluation(Result):
    source: str
    vocab_size: int
    dim: int
    scores: dict[str, Any] = field(default_factory=dict)
    report: str = ""

    def summary(self) -> str:
        return f"{self.source}: {self.vocab_size} words, dim {self.dim}\n{self.report}"


def evaluate(
    path: str | os.PathLike,
    *,
    analogies: str = "",
    wordsim: str = "",
    simlex: str = "",
    restrict_vocab: int = 30_000,
    checkpoint: str = "best",
) -> Word2VecEvaluation:
    """Score saved vectors (a run, checkpoint or word2vec file); nothing is written."""
    if restrict_vocab < 1:
        raise UserError(f"--restrict-vocab {restrict_vocab}: expected an integer >= 1")
    files = EvalFiles.find(analogies, wordsim, simlex)
    kv = load(path, checkpoint)
    metrics, lines = scores(kv, files, restrict_vocab)
    return Word2VecEvaluation(str(path), len(kv), kv.dim, metrics, "\n".join(lines))


def similar(
    path: str | os.PathLike,
    positive: list[str],
    negative: list[str] | None = None,
    topn: int = 10,
    checkpoint: str = "best",
) -> list[tuple[str, float]]:
    """The nearest words to positive − negative (`KeyedVectors.most_similar`)."""
    return load(path, checkpoint).most_similar(positive, negative or [], topn)


def analogy(
    path: str | os.PathLike, a: str, b: str, c: str, topn: int = 5, checkpoint: str = "best"
) -> list[tuple[str, float]]:
    """a is to b as c is to ?: the words nearest to b − a + c."""
    return load(path, checkpoint).most_similar([b, c], [a], topn)


def export(
    path: str | os.PathLike, out: str | os.PathLike, binary: bool = False, checkpoint: str = "best"
) -> Path:
    """Write the vectors of a run (or file) in the word2vec text or binary format (never over
    a checkpoint: `refuse_to_overwrite_checkpoints`)."""
    refuse_to_overwrite_checkpoints(out, "export to")
    textio.output_file(out, "OUT")
    return load(path, checkpoint).save_word2vec_format(out, binary)


def project_2d(vectors: torch.Tensor, method: str = "tsne", seed: int = 0) -> tuple[Any, str]:
    """(points (n, 2), the method used): t-SNE of the unit vectors when scikit-learn is
    installed (else, or with method="pca", their first two principal components)."""
    unit = vectors.float() / vectors.float().norm(dim=1, keepdim=True).clamp_min(1e-30)
    if method == "tsne" and len(unit) > 3:
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            method = "pca"
        else:
            perplexity = min(30.0, (len(unit) - 1) / 3)
            tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed)
            return tsne.fit_transform(unit.numpy()), "tsne"
    centred = unit - unit.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    return (centred @ vh[:2].T).numpy(), "pca"


def plot(
    path: str | os.PathLike,
    out: str | os.PathLike,
    words: int = 300,
    method: str = "tsne",
    checkpoint: str = "best",
    seed: int = 0,
) -> Path | None:
    """A PNG of the `words` most frequent words in 2-D (None: matplotlib is not installed)."""
    textio.output_file(out, "--out")
    kv = load(path, checkpoint)
    return embedding_picture(kv, out, words, method, seed, title=f"{Path(path).name}")


def embedding_picture(
    kv: KeyedVectors, out: str | os.PathLike, words: int, method: str, seed: int, title: str
) -> Path | None:
    from unroll.plotting import embedding_png

    n = min(words, len(kv))
    if n < 2:
        raise UserError(f"plot: {len(kv)} words, need at least 2 to draw")
    points, used = project_2d(kv.vectors[:n], method, seed)
    name = {"tsne": "t-SNE", "pca": "PCA"}[used]
    return embedding_png(
        out, kv.words[:n], points, title=f"{title}: {n} most frequent words, {name}"
    )
