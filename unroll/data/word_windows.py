"""From a stretch of the id stream to word2vec's training examples, drawn as the C tool and
gensim draw them: frequent-word subsampling, dynamic windows, negative samples.

For one step (a chunk of whole sentences, `WordCorpus.chunks`)::

    keep word w with probability min(1, (sqrt(c_w / t) + 1) · t / c_w),  t = sample · N
                                           (Mikolov et al. 2013b, as the C tool and gensim)
    for each kept word at position i: b_i ~ U{0 .. window-1}; its neighbours are the kept words
    of its sentence at distance <= window - b_i        ("dynamic window": near words count more)
    skip-gram: one example per (word i, neighbour j): input j, target i   (the C tool's order)
    CBOW:      one example per word i with a neighbour: inputs = its neighbours, target i
    negatives: K noise words per example, P(w) ∝ c_w^0.75 (`NoiseTable`, Walker's alias method)

The examples are `Examples` (below), the one format the reference update and the compiled
kernel both take, in the order the C tool visits them (by position, then neighbour).

Random numbers are counter-based (`Stream`): draw i of a stream is a hash of (seed, epoch,
stream, i), where i is the word's position in the corpus (or the example's number in its
chunk). So a draw does not depend on how the corpus is cut into steps, on threads, or on what
ran before: resuming is exact without saving a generator, and a compiled producer of the same
examples can be held equal to this one bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

_M64 = (1 << 64) - 1
_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB


def _signed(x: int) -> int:
    """An unsigned 64-bit value as the int64 torch holds it (two's complement)."""
    x &= _M64
    return x - (1 << 64) if x >> 63 else x


def _shr(z: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def splitmix64(z: Tensor) -> Tensor:
    """SplitMix64's output function on int64 tensors (arithmetic wraps modulo 2^64)."""
    z = z + _signed(_GOLDEN)
    z = (z ^ _shr(z, 30)) * _signed(_MIX1)
    z = (z ^ _shr(z, 27)) * _signed(_MIX2)
    return z ^ _shr(z, 31)


def splitmix64_int(x: int) -> int:
    """The same on one Python int (unsigned result)."""
    z = (x + _GOLDEN) & _M64
    z = ((z ^ (z >> 30)) * _MIX1) & _M64
    z = ((z ^ (z >> 27)) * _MIX2) & _M64
    return z ^ (z >> 31)


class Stream:
    """Counter-based random numbers: draw i is splitmix64(key + i), key a hash of (seed, epoch,
    stream number, chunk). `bits` gives 53 uniform bits as int64, `uniform` a float64 in
    [0, 1), `below(n)` an integer in [0, n) (its modulo bias is below n · 2^-53)."""

    # The streams of one epoch.
    SUBSAMPLE, WINDOW, NOISE_INDEX, NOISE_COIN = range(4)

    def __init__(self, seed: int, epoch: int, stream: int, chunk: int = 0):
        key = splitmix64_int(seed & _M64)
        for part in (epoch, stream, chunk):
            key = splitmix64_int(key ^ (part & _M64))
        self.key = key  # unsigned

    def bits(self, index: Tensor) -> Tensor:
        return _shr(splitmix64(index + _signed(self.key)), 11)  # (…,) int64 in [0, 2^53)

    def uniform(self, index: Tensor) -> Tensor:
        return self.bits(index).double() * 2.0**-53

    def below(self, n: int, index: Tensor) -> Tensor:
        return self.bits(index) % n


@dataclass
class Examples:
    """One step's examples: predict each target from its input words.

    inputs     (M,) int64: the input words, example n's are inputs[offsets[n]:offsets[n+1]]
    offsets    (N + 1,) int64, or None when every example has one input (skip-gram: M = N)
    targets    (N,) int64
    negatives  (N, K) int64: noise words; one equal to its example's target is skipped (no
               loss, no update), as in the C tool and gensim
    """

    inputs: Tensor
    offsets: Tensor | None
    targets: Tensor
    negatives: Tensor

    def __len__(self) -> int:
        return int(self.targets.numel())

    def to(self, device: torch.device | str) -> Examples:
        return Examples(
            self.inputs.to(device),
            None if self.offsets is None else self.offsets.to(device),
            self.targets.to(device),
            self.negatives.to(device),
        )

    def input_counts(self) -> Tensor:
        """(N,) int64: how many inputs each example has."""
        if self.offsets is None:
            return torch.ones_like(self.targets)
        return self.offsets[1:] - self.offsets[:-1]


def keep_probabilities(counts: Tensor, sample: float) -> Tensor:
    """(V,) float64: the chance that an occurrence of each word is kept (1 where sample = 0).

    gensim's and the C tool's formula, t = sample · (the sum of the vocabulary's counts)."""
    c = counts.double()
    if sample <= 0:
        return torch.ones_like(c)
    t = sample * float(c.sum())
    return ((c / t).sqrt() + 1.0).mul(t / c).clamp(max=1.0)


class NoiseTable:
    """Draws from q(w) ∝ count_w ** power by Walker's alias method (exact, O(1) a draw): pick a
    column w uniformly, keep it with probability `accept[w]`, else take `alias[w]`."""

    def __init__(self, counts: Tensor, power: float = 0.75):
        weights = counts.double().pow(power)
        self.probs = weights / weights.sum()  # (V,) float64
        self.accept, self.alias = _alias_table(self.probs.numpy())

    def draw(self, shape: tuple[int, ...], index: Stream, coin: Stream) -> Tensor:
        """Noise words of the given shape, draw i from the streams' i-th numbers."""
        n = int(np.prod(shape))
        i = torch.arange(n, dtype=torch.int64)
        column = index.below(len(self.probs), i)
        keep = coin.uniform(i) < self.accept[column]
        return torch.where(keep, column, self.alias[column]).view(shape)

    def log_expected(self, k: int) -> Tensor:
        """(V,) float32: log(k · q(w)), NCE's correction of each word's logit."""
        return (self.probs * k).log().float()


def _alias_table(p: np.ndarray) -> tuple[Tensor, Tensor]:
    """Vose's construction: (accept (V,) float64, alias (V,) int64)."""
    n = len(p)
    scaled = p * n
    accept = np.ones(n)
    alias = np.arange(n, dtype=np.int64)
    small = [i for i in range(n) if scaled[i] < 1.0]
    large = [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, g = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], g
        scaled[g] -= 1.0 - scaled[s]
        (small if scaled[g] < 1.0 else large).append(g)
    return torch.from_numpy(accept), torch.from_numpy(alias)


def subsample(ids: Tensor, positions: Tensor, keep: Tensor, stream: Stream) -> Tensor:
    """(n,) bool: which occurrences are kept; `positions` (n,) their places in the corpus."""
    return stream.uniform(positions) < keep[ids]


def window_examples(
    ids: Tensor,
    sentence: Tensor,
    reach: Tensor,
    *,
    cbow: bool = False,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """(inputs, offsets, targets) of the kept words `ids` (n,), with `sentence` (n,) their
    sentence numbers and `reach` (n,) their window sizes (window - b_i): see the docstring."""
    n = ids.numel()
    window = int(reach.max()) if n else 0
    # The windows as a grid: row i holds positions i-w .. i-1, i+1 .. i+w.
    shifts = torch.cat([torch.arange(-window, 0), torch.arange(1, window + 1)])  # (2w,)
    pos = torch.arange(n)[:, None] + shifts[None, :]  # (n, 2w)
    valid = (shifts.abs()[None, :] <= reach[:, None]) & (pos >= 0) & (pos < n)
    pos = pos.clamp(0, max(n - 1, 0))
    valid &= sentence[pos] == sentence[:, None]
    if not cbow:
        centre = valid.nonzero()[:, 0]  # row-major: by position, then neighbour
        return ids[pos[valid]], None, ids[centre]
    counts = valid.sum(1)
    has = counts > 0  # a word alone in its sentence has no neighbour: no example
    offsets = torch.zeros(int(has.sum()) + 1, dtype=torch.int64)
    torch.cumsum(counts[has], 0, out=offsets[1:])
    return ids[pos[valid]], offsets, ids[has]


def chunk_examples(
    ids: Tensor,
    sentence: Tensor,
    start: int,
    *,
    keep: Tensor,
    noise: NoiseTable,
    window: int,
    negative: int,
    cbow: bool,
    shrink: bool,
    seed: int,
    epoch: int,
    impl: str = "auto",
) -> Examples:
    """The examples of the chunk that starts at corpus position `start`: its words `ids` (n,)
    and their `sentence` numbers (n,). Deterministic in (seed, epoch, start). ``impl``:
    ``compiled`` (the CPU kernel's producer, equal bit for bit), ``torch`` (this code),
    ``auto`` (the kernel when it could be built)."""
    streams = [
        Stream(seed, epoch, Stream.SUBSAMPLE),
        Stream(seed, epoch, Stream.WINDOW),
        Stream(seed, epoch, Stream.NOISE_INDEX, start),
        Stream(seed, epoch, Stream.NOISE_COIN, start),
    ]
    if impl != "torch" and ids.device.type == "cpu":
        from unroll.nn.kernels import word2vec_cpu

        if impl == "compiled" or word2vec_cpu.kernel() is not None:
            return Examples(
                *word2vec_cpu.examples(
                    ids,
                    sentence,
                    start,
                    keep,
                    noise.accept,
                    noise.alias,
                    window,
                    negative,
                    cbow,
                    shrink,
                    tuple(_signed(s.key) for s in streams),
                )
            )
    positions = torch.arange(start, start + ids.numel(), dtype=torch.int64)
    kept = subsample(ids, positions, keep, streams[0])
    ids, sentence, positions = ids[kept], sentence[kept], positions[kept]
    if shrink:
        reach = window - streams[1].below(window, positions)
    else:
        reach = torch.full_like(ids, window)
    inputs, offsets, targets = window_examples(ids, sentence, reach, cbow=cbow)
    negatives = noise.draw((targets.numel(), negative), streams[2], streams[3])
    return Examples(inputs, offsets, targets, negatives)
