"""Scores of word vectors: the Google analogy questions and word-similarity correlations.

Analogies (``questions-words.txt``, Mikolov et al. 2013a: 19,544 questions in 14 sections,
``: section`` lines between them, then ``a b c d`` lines: a is to b as c is to d), scored as
gensim's ``evaluate_word_analogies`` scores them, so the figures compare:

* only the `restrict_vocab` most frequent words count (N: the C tool's compute-accuracy uses
  30,000, gensim 300,000 by default; we default to 30,000 and always say which N);
* words are compared upper-cased (a word's most frequent spelling stands for all of them);
* a question with a word outside the top N is skipped (reported as such, not counted wrong);
* the answer is the word w of the top N, other than a, b and c, of the highest cosine with
  unit(b̂ − â + ĉ) (3CosAdd on unit vectors; hats: unit length); among the 5 best, the first
  that is not a spelling of a, b or c.

The semantic sections are the first five (capitals, currency, city-in-state, family); the
nine ``gram*`` sections are syntactic.

Word similarity (``wordsim353.tsv``, ``simlex999.txt``: ``word1<TAB>word2<TAB>score``, ``#``
lines are comments): Spearman's rank correlation (average ranks for ties) and Pearson's
correlation between the human scores and the cosines, over the pairs whose two words are in
the top N.

The files ship in gensim's wheel (``gensim/test/test_data``); `find_eval_file` looks for them
there, in ``$UNROLL_DATA/word2vec``, or takes a path.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from unroll import textio
from unroll.errors import UserError

ANALOGIES = "questions-words.txt"
WORDSIM = "wordsim353.tsv"
SIMLEX = "simlex999.txt"
SEMANTIC_SECTIONS = 5  # the first five sections of questions-words.txt


def find_eval_file(name: str, path: str | os.PathLike | None = None) -> Path | None:
    """`path` when given (a `UserError` if it is not a file); else ``$UNROLL_DATA/word2vec/
    NAME``, then gensim's copy (found without importing gensim); None when none is there."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(f"{path}: no such file (expected the evaluation file {name})")
        return p
    root = os.environ.get("UNROLL_DATA")
    candidates = [Path(root).expanduser() / "word2vec" / name] if root else []
    spec = importlib.util.find_spec("gensim")
    if spec is not None and spec.origin:
        candidates.append(Path(spec.origin).parent / "test" / "test_data" / name)
    return next((c for c in candidates if c.is_file()), None)


def read_analogies(path: str | os.PathLike) -> list[tuple[str, list[tuple[str, ...]]]]:
    """[(section, [(a, b, c, d), ...]), ...]; a malformed line is a `UserError` naming it."""
    path = Path(path)
    sections: list[tuple[str, list[tuple[str, ...]]]] = []
    for number, line in enumerate(textio.read_lines(path), 1):
        if not line.strip():
            continue
        if line.startswith(":"):
            sections.append((line[1:].strip(), []))
            continue
        words = line.split()
        if len(words) != 4:
            raise UserError(
                f"{path}:{number}: expected 4 words 'a b c d' or a ': section' line, got "
                f"{len(words)} words"
            )
        if not sections:
            raise UserError(f"{path}:{number}: a question before the first ': section' line")
        sections[-1][1].append(tuple(words))
    if not any(questions for _, questions in sections):
        raise UserError(f"{path}: no analogy questions (expected ': section' and 'a b c d' lines)")
    return sections


def read_word_pairs(path: str | os.PathLike) -> list[tuple[str, str, float]]:
    """[(word1, word2, human score), ...] of a tab-separated file (``#`` lines skipped)."""
    path = Path(path)
    pairs = []
    for number, line in enumerate(textio.read_lines(path), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        try:
            a, b, score = parts
            pairs.append((a, b, float(score)))
        except ValueError:
            raise UserError(
                f"{path}:{number}: expected 'word1<TAB>word2<TAB>score', got {line[:60]!r}"
            ) from None
    if not pairs:
        raise UserError(f"{path}: no word pairs (expected 'word1<TAB>word2<TAB>score' lines)")
    return pairs


def _lookup(words: Sequence[str], restrict_vocab: int | None, case_insensitive: bool):
    """(key -> row among the top N, canonical row of each of the top N): a key's row is that of
    its most frequent spelling (gensim's ok_vocab)."""
    n = len(words) if not restrict_vocab else min(restrict_vocab, len(words))
    key = str.upper if case_insensitive else str
    index: dict[str, int] = {}
    for i in range(n):
        index.setdefault(key(words[i]), i)
    canonical = torch.tensor([index[key(words[i])] for i in range(n)], dtype=torch.int64)
    return index, canonical, key


def unit_rows(vectors: Tensor) -> Tensor:
    """Rows scaled to unit length (a zero row stays zero), in float32."""
    v = vectors.float()
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-30)


@dataclass
class SectionScore:
    name: str
    correct: int
    answered: int  # questions whose four words are in the top N
    skipped: int  # the others
    # The answered questions (a, b, c, d) as compared (upper-cased when case-insensitive):
    right: list[tuple[str, ...]] = field(default_factory=list, repr=False)
    wrong: list[tuple[str, ...]] = field(default_factory=list, repr=False)

    @property
    def accuracy(self) -> float:
        return self.correct / self.answered if self.answered else 0.0

    def as_gensim(self) -> dict[str, Any]:
        """gensim's section: ``{"section": name, "correct": [...], "incorrect": [...]}``."""
        return {"section": self.name, "correct": list(self.right), "incorrect": list(self.wrong)}


@dataclass
class AnalogyScores:
    """Accuracy per section of an analogy file, and in total (over the answered questions)."""

    sections: list[SectionScore]
    restrict_vocab: int
    file: str = ""

    def _sum(self, sections: Sequence[SectionScore]) -> SectionScore:
        return SectionScore(
            "",
            sum(s.correct for s in sections),
            sum(s.answered for s in sections),
            sum(s.skipped for s in sections),
        )

    @property
    def total(self) -> SectionScore:
        return self._sum(self.sections)

    @property
    def accuracy(self) -> float:
        return self.total.accuracy

    @property
    def semantic(self) -> SectionScore:
        return self._sum(self.sections[:SEMANTIC_SECTIONS])

    @property
    def syntactic(self) -> SectionScore:
        return self._sum(self.sections[SEMANTIC_SECTIONS:])

    def __iter__(self) -> Iterator[Any]:
        """``score, sections = kv.evaluate_word_analogies(...)`` as with gensim: the total
        accuracy and gensim's list of sections, the last one ``"Total accuracy"``."""
        total = SectionScore(
            "Total accuracy",
            self.total.correct,
            self.total.answered,
            self.total.skipped,
            [q for s in self.sections for q in s.right],
            [q for s in self.sections for q in s.wrong],
        )
        return iter((self.accuracy, [s.as_gensim() for s in [*self.sections, total]]))

    def format(self) -> str:
        rows = [(s.name, s) for s in self.sections]
        if len(self.sections) > SEMANTIC_SECTIONS:
            rows += [("semantic", self.semantic), ("syntactic", self.syntactic)]
        rows.append(("total", self.total))
        width = max(len(name) for name, _ in rows)
        lines = [
            f"analogies ({Path(self.file).name or 'questions'}, top {self.restrict_vocab} words):",
            f"  {'section':<{width}}  accuracy  correct/answered  skipped",
        ]
        for name, s in rows:
            lines.append(
                f"  {name:<{width}}  {100 * s.accuracy:7.2f}%  {s.correct:>7}/{s.answered:<8}"
                f"  {s.skipped:>7}"
            )
        return "\n".join(lines)


def analogy_accuracy(
    words: Sequence[str],
    vectors: Tensor,
    path: str | os.PathLike,
    restrict_vocab: int | None = 30_000,
    case_insensitive: bool = True,
    block: int = 1024,
) -> AnalogyScores:
    """Score `vectors` (V, D) of `words` (most frequent first) on an analogy file (see the
    module docstring)."""
    sections = read_analogies(path)
    index, canonical, key = _lookup(words, restrict_vocab, case_insensitive)
    unit = unit_rows(vectors[: len(canonical)])  # (N, D)
    scores = []
    for name, questions in sections:
        rows = [tuple(index.get(key(w), -1) for w in q) for q in questions]
        kept = [tuple(key(w) for w in q) for q, r in zip(questions, rows) if -1 not in r]
        asked = torch.tensor([r for r in rows if -1 not in r], dtype=torch.int64).view(-1, 4)
        hits: list[Tensor] = []
        for q in asked.split(block):
            a, b, c, d = q.unbind(1)
            target = unit[b] - unit[a] + unit[c]  # (Q, D); the cosine ignores the 1/3 and the norm
            cos = target @ unit.T  # (Q, N)
            cos.scatter_(1, q[:, :3], float("-inf"))  # never a, b or c themselves
            top = cos.topk(min(5, cos.shape[1]), dim=1).indices  # (Q, 5)
            spelled = canonical[top]  # the same word however spelt
            other = (spelled != a[:, None]) & (spelled != b[:, None]) & (spelled != c[:, None])
            # The first of the 5 that is not a, b or c; gensim keeps the 5th when there is none.
            first = torch.where(other.any(1), other.int().argmax(1), top.shape[1] - 1)
            predicted = spelled.gather(1, first[:, None])[:, 0]
            hits.append(predicted == d)
        hit = torch.cat(hits).tolist() if hits else []
        right = [q for q, h in zip(kept, hit) if h]
        wrong = [q for q, h in zip(kept, hit) if not h]
        skipped = len(questions) - len(asked)
        scores.append(SectionScore(name, len(right), len(asked), skipped, right, wrong))
    n = len(canonical)
    return AnalogyScores(scores, n if restrict_vocab else len(words), str(path))


@dataclass
class PairScores:
    """Correlation of cosines with human similarity scores."""

    spearman: float
    pearson: float
    pairs: int  # scored (both words in the top N)
    skipped: int
    file: str = ""
    restrict_vocab: int = 0
    oov_words: list[str] = field(default_factory=list)

    @property
    def oov_ratio(self) -> float:
        """Percent of the pairs skipped (gensim's ``oov_ratio``)."""
        total = self.pairs + self.skipped
        return 100.0 * self.skipped / total if total else 0.0

    def __iter__(self) -> Iterator[Any]:
        """``pearson, spearman, oov_ratio = kv.evaluate_word_pairs(...)`` as with gensim:
        ``(r, p-value)`` twice (two-sided, Student's t with n - 2 degrees of freedom, as
        scipy's pearsonr and spearmanr give them), then the percent of pairs skipped."""
        return iter(
            (
                (self.pearson, correlation_p_value(self.pearson, self.pairs)),
                (self.spearman, correlation_p_value(self.spearman, self.pairs)),
                self.oov_ratio,
            )
        )

    def format(self) -> str:
        return (
            f"{Path(self.file).name}: Spearman {self.spearman:.4f}, Pearson {self.pearson:.4f} "
            f"({self.pairs} pairs, {self.skipped} skipped: a word outside the top "
            f"{self.restrict_vocab})"
        )


def word_pair_correlation(
    words: Sequence[str],
    vectors: Tensor,
    path: str | os.PathLike,
    restrict_vocab: int | None = 30_000,
    case_insensitive: bool = True,
) -> PairScores:
    """Spearman and Pearson correlations on a word-pair file (see the module docstring)."""
    pairs = read_word_pairs(path)
    index, canonical, key = _lookup(words, restrict_vocab, case_insensitive)
    unit = unit_rows(vectors[: len(canonical)])
    human, cosine, oov = [], [], set()
    for a, b, score in pairs:
        i, j = index.get(key(a)), index.get(key(b))
        if i is None or j is None:
            oov.update(w for w, x in ((a, i), (b, j)) if x is None)
            continue
        human.append(score)
        cosine.append(float(unit[i] @ unit[j]))
    if len(human) < 2:
        raise UserError(
            f"{path}: fewer than 2 of its {len(pairs)} pairs have both words in the top "
            f"{len(canonical)} words; nothing to correlate"
        )
    x, y = torch.tensor(human, dtype=torch.float64), torch.tensor(cosine, dtype=torch.float64)
    return PairScores(
        spearman=spearman(x, y),
        pearson=pearson(x, y),
        pairs=len(human),
        skipped=len(pairs) - len(human),
        file=str(path),
        restrict_vocab=len(canonical),
        oov_words=sorted(oov),
    )


def ranks(x: Tensor) -> Tensor:
    """1-based ranks of a 1-D tensor, ties given the average of their ranks."""
    values, inverse, counts = torch.unique(x, return_inverse=True, return_counts=True)
    last = counts.cumsum(0).double()  # rank of each distinct value's last copy
    return (last - (counts.double() - 1) / 2)[inverse]


def pearson(x: Tensor, y: Tensor) -> float:
    x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
    den = float(x.norm() * y.norm())
    return float(x @ y) / den if den > 0 else float("nan")


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman's rho: Pearson's correlation of the (tie-averaged) ranks."""
    return pearson(ranks(x), ranks(y))


def correlation_p_value(r: float, n: int) -> float:
    """Two-sided p-value of a correlation `r` over `n` pairs under no correlation: Student's t
    ``t = r·sqrt((n-2)/(1-r²))`` with n - 2 degrees of freedom, whose two tails are the
    regularized incomplete beta ``I_x(df/2, 1/2)`` at ``x = df/(df+t²)`` (no scipy needed)."""
    df = n - 2
    if df <= 0 or math.isnan(r):
        return float("nan")
    if abs(r) >= 1.0:
        return 0.0
    x = df / (df + r * r * df / (1.0 - r * r))  # = 1 - r²
    return _betainc(df / 2.0, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by its continued fraction (Lentz's method),
    used on the side where it converges fast (x < (a+1)/(a+b+2)), else by symmetry."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) * f / a
