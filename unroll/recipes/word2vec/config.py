"""The word2vec recipe's config, presets and `Recipe` record.

Names follow the C tool and gensim (``window``, ``negative``, ``sample``, ``min_count``,
``cbow_mean``); gensim's and TensorFlow's other spellings are accepted as aliases
(``vector_size``/``size``/``embedding_size`` -> ``dim``, ``alpha`` -> ``lr``, ``min_alpha`` ->
``min_lr``, ``iter`` -> ``epochs``, ``sg=1|0`` -> ``model``, ``num_sampled`` -> ``negative``,
``skip_window`` -> ``window``, ``max_final_vocab`` -> ``max_vocab``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Literal

from unroll.config import Alias, RunConfig, check
from unroll.engine.recipe import Recipe
from unroll.errors import UserError

KIND = "unroll.word2vec"


@dataclasses.dataclass
class Word2VecConfig(RunConfig):
    """Defaults: skip-gram with negative sampling, gensim's and the C tool's settings (dim 100,
    window 5, negative 5, sample 1e-3, min_count 5, 5 epochs), on the embedded pydoc corpus."""

    data: str = "pydoc"  # pydoc | ptb | text8 | a text file | a directory of text files
    epochs: int = 5  # passes over the corpus; the lr decays linearly over all of them
    # Words a step (whole sentences). The lr is set once a step; each step is one parallel
    # region of the CPU kernel, so fewer, larger steps waste less time starting threads.
    batch_size: int = 50_000
    lr: float = 0.025  # the starting lr (gensim's alpha; the C tool uses 0.05 for CBOW)
    min_lr: float = 0.0001  # the lr reached at the last word (gensim's min_alpha)
    clip: float = 0.0  # (not used: word2vec's SGD is not clipped)
    model: Literal["skipgram", "cbow"] = "skipgram"
    cbow_mean: bool = True  # CBOW: the mean of the context vectors (else their sum)
    objective: Literal["neg", "nce"] = "neg"  # negative sampling, or noise-contrastive estimation
    dim: int = 100
    window: int = 5  # the largest distance of a context word
    shrink_windows: bool = True  # dynamic window: each word's is drawn from 1..window
    negative: int = 5  # noise words per example
    ns_exponent: float = 0.75  # noise distribution: count ** ns_exponent
    sample: float = 1e-3  # subsampling threshold of frequent words (0 = off)
    min_count: int = 5  # rarer words are dropped before training
    max_vocab: int = 0  # keep at most this many of the most frequent words (0 = all)
    max_sentence_length: int = 10_000  # longer lines are cut (gensim's limit)
    impl: Literal["auto", "compiled", "torch"] = "auto"  # auto: the CPU kernel when built
    torch_batch: int = 1024  # examples per update on the PyTorch path (GPU)
    analogies: str = ""  # questions-words.txt (empty: found in $UNROLL_DATA/word2vec or gensim)
    wordsim: str = ""  # wordsim353.tsv (same lookup)
    simlex: str = ""  # simlex999.txt (same lookup)
    restrict_vocab: int = 30_000  # evaluate on the N most frequent words (the C tool's N)
    plot_words: int = 300  # the most frequent words drawn in embedding.png (0 = no picture)
    plot_method: Literal["tsne", "pca"] = "tsne"  # t-SNE needs scikit-learn, else PCA

    ALIASES: ClassVar[dict[str, Alias]] = {
        "vector_size": "dim",
        "size": "dim",
        "embedding_size": "dim",
        "alpha": "lr",
        "min_alpha": "min_lr",
        "iter": "epochs",
        "sg": ("model", lambda sg: _model_of_sg(sg)),
        "num_sampled": "negative",
        "skip_window": "window",
        "max_final_vocab": "max_vocab",
    }
    # The lr decays over all the epochs, so `epochs` cannot change when resuming.
    RESUMABLE: ClassVar[tuple[str, ...]] = ("device", "threads", "tensorboard", "impl")

    def validate(self) -> None:
        super().validate()
        check(self, "clip", self.clip == 0, "0 (word2vec's SGD is not clipped)")
        check(self, "min_lr", 0 <= self.min_lr <= self.lr, f"a number from 0 to lr={self.lr}")
        for name in ("dim", "window", "negative", "min_count", "torch_batch", "restrict_vocab"):
            check(self, name, getattr(self, name) >= 1, "an integer >= 1")
        check(self, "dim", self.dim <= 1 << 16, "an integer from 1 to 65536")
        check(self, "window", self.window <= 1000, "an integer from 1 to 1000")
        check(self, "negative", self.negative <= 1000, "an integer from 1 to 1000")
        check(self, "max_sentence_length", self.max_sentence_length >= 2, "an integer >= 2")
        check(self, "max_vocab", self.max_vocab >= 0, "an integer >= 0 (0 = all words)")
        check(self, "plot_words", self.plot_words >= 0, "an integer >= 0 (0 = no picture)")
        check(self, "sample", 0 <= self.sample < 1, "a number in [0, 1) (0 = off)")
        # count ** ns_exponent: beyond +-10 it overflows, or one word takes all the noise
        # (gensim's and the literature's values lie in [-1, 1])
        check(self, "ns_exponent", abs(self.ns_exponent) <= 10, "a number from -10 to 10")


def _model_of_sg(sg: float) -> str:
    """gensim's ``sg``: 1 is skip-gram, 0 is CBOW, nothing else."""
    if sg not in (0, 1):
        raise UserError(f"sg={sg:g}: expected 0 (cbow) or 1 (skipgram)")
    return "skipgram" if sg else "cbow"


PRESETS: dict[str, dict[str, Any]] = {
    # The benchmark settings on PTB's training file (gensim's defaults, skip-gram).
    "ptb-sg": {"data": "ptb"},
    "ptb-cbow": {"data": "ptb", "model": "cbow", "lr": 0.05},  # the C tool's CBOW lr
    "ptb-nce": {"data": "ptb", "objective": "nce"},
    "text8-sg": {"data": "text8"},
    "text8-cbow": {"data": "text8", "model": "cbow", "lr": 0.05},
}

RECIPE = Recipe(
    name="word2vec",
    kind=KIND,
    config=Word2VecConfig,
    presets=PRESETS,
    run_name=lambda c: f"word2vec-{c.model}-{c.objective}",
)
