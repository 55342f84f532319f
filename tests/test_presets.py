"""Presets hold the Zaremba et al. 2014 table value for value; the lr schedule."""

import dataclasses

import pytest

from unroll.config import apply_overrides
from unroll.errors import UserError
from unroll.recipes.lm import LMConfig, format_presets, get_preset, lr_at
from unroll.recipes.lm.presets import PRESETS

# The paper's/tutorial's names (keep_prob = 1 - dropout) and unroll's.
TABLE_FIELDS = [
    "init_scale",
    "lr",  # learning_rate
    "clip",  # max_grad_norm
    "num_layers",
    "num_steps",
    "hidden_size",
    "lr_decay_after",  # max_epoch
    "epochs",  # max_max_epoch
    "keep_prob",  # 1 - dropout
    "lr_decay",
    "batch_size",
]


def table_values(cfg):
    return {f: 1 - cfg.dropout if f == "keep_prob" else getattr(cfg, f) for f in TABLE_FIELDS}


# The table (= TensorFlow ptb_word_lm.py SmallConfig/MediumConfig/LargeConfig/TestConfig).
TABLE = {
    "ptb-small": (0.1, 1.0, 5, 2, 20, 200, 4, 13, 1.0, 0.5, 20),
    "ptb-medium": (0.05, 1.0, 5, 2, 35, 650, 6, 39, 0.5, 0.8, 20),
    "ptb-large": (0.04, 1.0, 10, 2, 35, 1500, 14, 55, 0.35, 1 / 1.15, 20),
    "ptb-test": (0.1, 1.0, 1, 1, 2, 2, 1, 1, 1.0, 0.5, 20),
}


@pytest.mark.parametrize("name", list(TABLE))
def test_zaremba_presets_exactly(name):
    cfg = get_preset(name)
    assert table_values(cfg) == pytest.approx(dict(zip(TABLE_FIELDS, TABLE[name])), rel=1e-15)
    assert cfg.data == "ptb" and cfg.level == "word" and not cfg.tie_weights
    assert cfg.name == name
    assert cfg.eval_batch_size == 1  # test perplexity with batch 1, as the tutorial
    cfg.validate()


def test_every_preset_is_a_valid_config_of_known_fields():
    fields = {f.name for f in dataclasses.fields(LMConfig)}
    for name, values in PRESETS.items():
        assert set(values) <= fields, name
        get_preset(name).validate()
    assert get_preset("demo").data == "pydoc"  # the embedded corpus: no download
    assert get_preset("char-demo").level == "char"


def test_unknown_preset():
    with pytest.raises(UserError, match="unknown preset 'ptb-huge'.*ptb-small"):
        get_preset("ptb-huge")


def test_lr_schedule_ptb_large():
    cfg = get_preset("ptb-large")
    lrs = [lr_at(cfg, e) for e in range(1, 56)]
    assert lrs[:14] == [1.0] * 14  # epochs 1..14 at the full rate
    assert lrs[14] == pytest.approx(0.8695652173913044, rel=1e-12)  # epoch 15: 1/1.15
    assert lrs[15] == pytest.approx(0.7561436672967865, rel=1e-12)  # 1/1.15**2
    assert lrs[54] == pytest.approx(1.15**-41, rel=1e-12)  # epoch 55
    assert lrs[54] == pytest.approx(0.0032463, rel=1e-4)


def test_lr_schedule_ptb_small():
    cfg = get_preset("ptb-small")
    assert [lr_at(cfg, e) for e in range(1, 14)] == [
        1.0, 1.0, 1.0, 1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125,
        0.00390625, 0.001953125,
    ]  # fmt: skip


def test_presets_table_lists_every_preset_and_field():
    text = format_presets()
    header = text.splitlines()[0].split()
    assert header == ["field", "(default)", *PRESETS]
    rows = {line.split()[0]: line.split()[2:] for line in text.splitlines()[2:]}
    for f in TABLE_FIELDS:
        assert f in rows or f == "keep_prob"
    assert rows["dropout"][list(PRESETS).index("ptb-large")] == "0.65"
    assert rows["hidden_size"][list(PRESETS).index("ptb-large")] == "1500"
    assert rows["lr_decay"][list(PRESETS).index("ptb-large")] == "0.869565"
    assert rows["data"][list(PRESETS).index("demo")] == "pydoc"


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(keep_prob=0.0), "dropout=1.0"),
        (dict(keep_prob=1.5), "dropout=-0.5"),
        (dict(dropout=1.0), "dropout=1.0"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(learning_rate=-1.0), "lr=-1.0"),
        (dict(lr=float("nan")), "lr=nan"),
        (dict(max_max_epoch=0), "epochs=0"),
        (dict(threads=100000), "threads=100000"),
        (dict(tie_weights=True, embedding_size=100), "tie_weights"),
    ],
)
def test_bad_config_values(change, match):
    with pytest.raises(UserError, match=match):
        apply_overrides(get_preset("demo"), change).validate()


def test_old_names_are_aliases():
    old = apply_overrides(
        LMConfig(), ["learning_rate=0.5", "max_grad_norm=2", "max_epoch=3", "max_max_epoch=7",
                     "keep_prob=0.35", "fast=off"]
    )  # fmt: skip
    new = LMConfig(lr=0.5, clip=2.0, lr_decay_after=3, epochs=7, dropout=0.65, graphs="off")
    assert old == new
