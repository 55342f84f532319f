"""word2vec: skip-gram and CBOW with negative sampling or NCE, side by side with gensim.

Python API (the CLI calls these): `train`, `load` (a run, checkpoint or word2vec file ->
`KeyedVectors`), `evaluate`, `similar`, `analogy`, `export`, `plot`; the config
`Word2VecConfig` and its presets. CLI: ``unroll word2vec train|eval|similar|analogy|export|
plot|presets``.

    config.py    Word2VecConfig, presets, the Recipe record
    train.py     the training run on the engine's loop, the lr schedule
    evaluate.py  loading vectors, their scores, queries, export, the 2-D picture

The pieces it is built from: `unroll.data.word_streams` (corpora, vocabulary),
`unroll.data.word_windows` (subsampling, windows, noise words), `unroll.models.word2vec` (the
update), `unroll.models.keyed_vectors` (the vectors and their queries),
`unroll.metrics.embeddings` (analogies, word similarity), `unroll.data.word2vec_format`.
"""

from unroll.models.keyed_vectors import KeyedVectors, UnknownWord
from unroll.recipes.word2vec.config import KIND, PRESETS, RECIPE, Word2VecConfig
from unroll.recipes.word2vec.evaluate import (
    EvalFiles,
    Word2VecEvaluation,
    analogy,
    evaluate,
    export,
    load,
    plot,
    similar,
)
from unroll.recipes.word2vec.train import Word2VecResult, lr_at, train

__all__ = [
    "KIND",
    "PRESETS",
    "RECIPE",
    "EvalFiles",
    "KeyedVectors",
    "UnknownWord",
    "Word2VecConfig",
    "Word2VecEvaluation",
    "Word2VecResult",
    "analogy",
    "evaluate",
    "export",
    "load",
    "lr_at",
    "plot",
    "similar",
    "train",
]
