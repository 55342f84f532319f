"""Language-model presets, as data: each maps `LMConfig` fields to values.

Names are unroll's (``lr``, ``clip``, ``epochs``, ``lr_decay_after``, ``dropout``); the paper's
and the tutorial's (``learning_rate``, ``max_grad_norm``, ``max_max_epoch``, ``max_epoch``,
``keep_prob`` = 1 - dropout) are accepted as aliases.

The ``ptb-*`` presets are the configurations of Zaremba, Sutskever & Vinyals 2014, "Recurrent
Neural Network Regularization" (Small / Medium / Large), value for value as in TensorFlow's
``ptb_word_lm.py`` tutorial; ``ptb-test`` is that tutorial's tiny smoke-test config. ``demo``
and ``char-demo`` train on the corpus embedded in every Python installation (no download)
and are sized to finish in about two minutes on two CPU cores.

The ``awd-*`` presets are AWD-LSTM (Merity, Keskar & Socher 2018, ``model="awd"``,
`unroll.models.awd`): its PTB model (``awd-ptb``, the paper's hyperparameters from its
README's PTB command) and ``awd-small``, the same recipe at ptb-small's parameter count
(4,651,488 vs 4,653,200 parameters on PTB's 10k vocabulary) for the CPU. Their loss is
unroll's sum over the T steps of the batch-mean cross-entropy (Zaremba's scale), so AWD's
lr, clip and weight decay (defined on the per-token mean) appear divided/multiplied by T:
lr 30 / T, clip 0.25 · T, weight_decay 1.2e-6 · T — the same updates. NT-ASGD (``nonmono``):
SGD until the validation loss is worse than the best of those more than n epochs before, then
averaged SGD; validation and test use the averaged weights. NOT here: AWD's randomised BPTT
length (T is fixed), its finetuning stage and the cache pointer.

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
    # AWD-LSTM's PTB model (README: --batch_size 20 --dropouti 0.4 --dropouth 0.25 --epoch 500;
    # main.py defaults: bptt 70, lr 30, clip 0.25, dropout 0.4, dropoute 0.1, wdrop 0.5,
    # alpha 2, beta 1, wdecay 1.2e-6, nonmono 5, tied, 3 layers 1150 hidden 400 embedding;
    # the paper: 58.8 test perplexity without finetuning). Not run here (a GPU job).
    "awd-ptb": dict(
        data="ptb",
        model="awd",
        num_layers=3,
        hidden_size=1150,
        embedding_size=400,
        tie_weights=True,
        num_steps=70,
        batch_size=20,
        lr=30 / 70,  # Merity et al. 2018, §5: lr 30 on the per-token mean loss
        clip=0.25 * 70,
        weight_decay=1.2e-6 * 70,
        lr_decay_after=500,  # constant lr (AWD switches to ASGD instead of decaying)
        lr_decay=1.0,
        epochs=500,
        nonmono=5,
        dropout=0.4,  # output (locked)
        dropout_between=0.25,  # dropouth
        dropout_input=0.4,  # dropouti
        dropout_embedding=0.1,  # dropoute
        weight_drop=0.5,  # wdrop
        ar=2.0,  # alpha
        tar=1.0,  # beta
    ),
    # AWD-LSTM's WikiText-2 model (README: --epochs 750 --dropouth 0.2 --seed 1882; main.py
    # defaults otherwise: batch 80, dropouti 0.65; the paper: 65.8 test perplexity without
    # finetuning). The data is a directory holding wiki.{train,valid,test}.tokens (as the
    # wikitext-2 archive unpacks): ./wikitext-2 unless --data names another. No download:
    # unroll does not know the archive's checksum. Not run here (a GPU job).
    "awd-wt2": dict(
        data="wikitext-2",
        model="awd",
        num_layers=3,
        hidden_size=1150,
        embedding_size=400,
        tie_weights=True,
        num_steps=70,
        batch_size=80,
        lr=30 / 70,
        clip=0.25 * 70,
        weight_decay=1.2e-6 * 70,
        lr_decay_after=750,
        lr_decay=1.0,
        epochs=750,
        nonmono=5,
        dropout=0.4,
        dropout_between=0.2,
        dropout_input=0.65,
        dropout_embedding=0.1,
        weight_drop=0.5,
        ar=2.0,
        tar=1.0,
        seed=1882,
    ),
    # awd-ptb's recipe at ptb-small's size (E = H = 278, 3 layers, tied) for the CPU, 13
    # epochs as ptb-small, NT-ASGD with n = 2 (AWD's 5 is for 500 epochs). Its other
    # hyperparameters are AWD's PTB ones, not tuned for this size; whether it beats
    # ptb-small at the same wall time has not been measured.
    "awd-small": dict(
        data="ptb",
        model="awd",
        num_layers=3,
        hidden_size=278,
        embedding_size=278,
        tie_weights=True,
        num_steps=35,
        batch_size=20,
        lr=30 / 35,
        clip=0.25 * 35,
        weight_decay=1.2e-6 * 35,
        lr_decay_after=13,
        lr_decay=1.0,
        epochs=13,
        nonmono=2,
        dropout=0.4,
        dropout_between=0.25,
        dropout_input=0.4,
        dropout_embedding=0.1,
        weight_drop=0.5,
        ar=2.0,
        tar=1.0,
    ),
}

DEFAULT_PRESET = "demo"
