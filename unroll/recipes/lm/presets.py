"""Language-model presets, as data: each maps `LMConfig` fields to values.

Names are unroll's (``lr``, ``clip``, ``epochs``, ``lr_decay_after``, ``dropout``); the paper's
and the tutorial's (``learning_rate``, ``max_grad_norm``, ``max_max_epoch``, ``max_epoch``,
``keep_prob`` = 1 - dropout) are accepted as aliases.

The ``ptb-*`` presets are the configurations of Zaremba, Sutskever & Vinyals 2014, "Recurrent
Neural Network Regularization" (Small / Medium / Large), value for value as in TensorFlow's
``ptb_word_lm.py`` tutorial; ``ptb-test`` is that tutorial's tiny smoke-test config. ``demo``
and ``char-demo`` train on the corpus embedded in every Python installation (no download)
and are sized to finish in about two minutes on two CPU cores.

Fields not named here keep `LMConfig`'s defaults; ``vocab_size`` comes from the data.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    # Zaremba et al. 2014, table "Small" (non-regularized): test perplexity 114.5.
    "ptb-small": dict(
        data="ptb",
        init_scale=0.1,
        lr=1.0,
        clip=5.0,
        num_layers=2,
        num_steps=20,
        hidden_size=200,
        lr_decay_after=4,
        epochs=13,
        dropout=0.0,
        lr_decay=0.5,
        batch_size=20,
    ),
    # "Medium" regularized LSTM: test perplexity 82.7.
    "ptb-medium": dict(
        data="ptb",
        init_scale=0.05,
        lr=1.0,
        clip=5.0,
        num_layers=2,
        num_steps=35,
        hidden_size=650,
        lr_decay_after=6,
        epochs=39,
        dropout=0.5,
        lr_decay=0.8,
        batch_size=20,
    ),
    # "Large" regularized LSTM: test perplexity 78.4.
    "ptb-large": dict(
        data="ptb",
        init_scale=0.04,
        lr=1.0,
        clip=10.0,
        num_layers=2,
        num_steps=35,
        hidden_size=1500,
        lr_decay_after=14,
        epochs=55,
        dropout=0.65,
        lr_decay=1 / 1.15,
        batch_size=20,
    ),
    # The tutorial's "test" config: checks that everything runs, learns next to nothing.
    "ptb-test": dict(
        data="ptb",
        init_scale=0.1,
        lr=1.0,
        clip=1.0,
        num_layers=1,
        num_steps=2,
        hidden_size=2,
        lr_decay_after=1,
        epochs=1,
        dropout=0.0,
        lr_decay=0.5,
        batch_size=20,
    ),
    # Word level on the embedded pydoc corpus (84k training words): ptb-small's model with
    # dropout (the corpus is small enough to overfit without it), 8 epochs; about two
    # minutes on two CPU cores. One thread: for a model this small, a second one mostly
    # waits, and on a shared machine it can make a run several times slower.
    "demo": dict(
        data="pydoc",
        init_scale=0.1,
        lr=1.0,
        clip=5.0,
        num_layers=2,
        num_steps=20,
        hidden_size=200,
        lr_decay_after=4,
        epochs=8,
        dropout=0.35,
        lr_decay=0.5,
        batch_size=20,
        threads=1,
    ),
    # Character level on the embedded corpus (333k training characters); about two minutes.
    "char-demo": dict(
        data="pydoc",
        level="char",
        init_scale=0.1,
        lr=1.0,
        clip=5.0,
        num_layers=2,
        num_steps=50,
        hidden_size=200,
        lr_decay_after=2,
        epochs=4,
        dropout=0.0,
        lr_decay=0.5,
        batch_size=20,
        threads=1,
    ),
}

DEFAULT_PRESET = "demo"
