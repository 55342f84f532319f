"""Scores of output sequences against references: edit distance, exact match, token accuracy,
error rates, BLEU.

An example may have several references (CMUdict lists several pronunciations); each output is
scored against the reference closest to it in edit distance (the first listed on a tie). Over
a set of outputs:

    exact_match        outputs equal to one of their references / outputs
    sequence_error     1 - exact_match: g2p's word error rate (WER), a word being one example
    token_error        sum of edit distances / sum of reference lengths: g2p's phoneme error
                       rate (PER); with word tokens, speech recognition's WER
    token_accuracy     tokens equal at the same position / the longer length, summed over
                       outputs (per-character accuracy; an extra or a missing token counts
                       as wrong)
    bleu               sacrebleu's corpus BLEU (0-100) against the first references, when
                       sacrebleu is installed (``pip install 'unroll[seq2seq]'``)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

Tokens = Sequence[str]


def edit_distance(a: Sequence[object], b: Sequence[object]) -> int:
    """Levenshtein distance: the fewest insertions, deletions and substitutions (each 1) that
    turn `a` into `b`. The classic two-row dynamic programme, O(len(a)·len(b))."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))  # distance of a[:0] to each b[:j]
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def closest_reference(output: Tokens, references: Sequence[Tokens]) -> tuple[int, Tokens]:
    """(edit distance, reference) of the reference nearest `output` (the first on a tie)."""
    best = min(range(len(references)), key=lambda i: edit_distance(output, references[i]))
    return edit_distance(output, references[best]), references[best]


def same_position(output: Tokens, reference: Tokens) -> int:
    return sum(x == y for x, y in zip(output, reference))


def sequence_scores(outputs: Sequence[Tokens], references: Sequence[Sequence[Tokens]]) -> dict:
    """exact_match, sequence_error, token_error, token_accuracy (see the module docstring)."""
    return scores_from_counts(sequence_counts(outputs, references))


def sequence_counts(
    outputs: Sequence[Tokens], references: Sequence[Sequence[Tokens]]
) -> dict[str, int]:
    """The sums the scores are ratios of: examples, exact, errors (edit distances), ref_tokens,
    same (tokens at the same position), longer (the longer lengths). Sums over parts of a set
    (e.g. one per process) add up to the whole set's; `scores_from_counts` divides them."""
    if len(outputs) != len(references):
        raise ValueError(f"{len(outputs)} outputs but {len(references)} reference lists")
    exact = errors = ref_tokens = same = longer = 0
    for out, refs in zip(outputs, references):
        out = list(out)
        refs = [list(r) for r in refs]
        if out in refs:
            exact += 1
            ref = out
            distance = 0
        else:
            distance, ref = closest_reference(out, refs)
        errors += distance
        ref_tokens += len(ref)
        same += same_position(out, ref)
        longer += max(len(out), len(ref))
    return {
        "examples": len(outputs),
        "exact": exact,
        "errors": errors,
        "ref_tokens": ref_tokens,
        "same": same,
        "longer": longer,
    }


def scores_from_counts(counts: dict[str, int | float]) -> dict:
    """`sequence_scores`' ratios from `sequence_counts` (possibly summed over parts)."""
    n = counts["examples"]
    if not n:
        raise ValueError("no outputs to score")
    return {
        "exact_match": counts["exact"] / n,
        "sequence_error": 1 - counts["exact"] / n,
        "token_error": counts["errors"] / max(counts["ref_tokens"], 1),
        "token_accuracy": counts["same"] / max(counts["longer"], 1),
    }


def accuracy_by_length(lengths: Sequence[int], correct: Sequence[bool]) -> dict[int, float]:
    """Length -> the fraction correct among the examples of that (source) length."""
    hits: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for n, ok in zip(lengths, correct):
        hits[n][0] += int(ok)
        hits[n][1] += 1
    return {n: h / total for n, (h, total) in sorted(hits.items())}


def bleu(outputs: Sequence[str], references: Sequence[str]) -> float | None:
    """Corpus BLEU (sacrebleu, its default 13a tokeniser) of detokenised strings; None when
    sacrebleu is not installed."""
    try:
        import sacrebleu
    except ImportError:
        return None
    return float(sacrebleu.corpus_bleu(list(outputs), [list(references)]).score)
