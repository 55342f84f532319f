"""Image classification with a recurrent net reading the image as a sequence, plus baselines.

One model (LSTM/GRU/RNN/IRNN on rows, pixels or permuted pixels; softmax regression or a small
CNN as baselines) on IDX images or scikit-learn's digits; `train_baselines` trains softmax,
cnn and the recurrent model in one call and writes a comparison table. CLI: ``unroll classify
train|eval|presets`` (and the older ``unroll classify``, ``unroll classify-eval``).

    config.py    ClassifyConfig, presets, the Recipe record
    train.py     training on the engine's loop, the baselines table
    evaluate.py  the model from a config or checkpoint, predictions, scoring a saved run
"""

from unroll.metrics.classification import confusion_matrix, format_confusion
from unroll.recipes.classify.config import (
    BASELINES,
    KIND,
    PRESETS,
    RECIPE,
    RNN_MODELS,
    ClassifyConfig,
    make_config,
)
from unroll.recipes.classify.evaluate import (
    ClassifyEvaluation,
    evaluate,
    load_classifier,
    predict,
)
from unroll.recipes.classify.train import (
    ClassifyResult,
    format_comparison,
    train,
    train_baselines,
)

__all__ = [
    "BASELINES",
    "KIND",
    "PRESETS",
    "RECIPE",
    "RNN_MODELS",
    "ClassifyConfig",
    "ClassifyEvaluation",
    "ClassifyResult",
    "confusion_matrix",
    "evaluate",
    "format_comparison",
    "format_confusion",
    "load_classifier",
    "make_config",
    "predict",
    "train",
    "train_baselines",
]
