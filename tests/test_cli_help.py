"""``--help`` that explains: each flag says what its field is (the config's own comment), the
value that will run (the default preset's, or the named preset's), what an old name does;
a near-miss key gets "did you mean"; `presets` shows the defaults even with no preset."""

from __future__ import annotations

import re

import pytest

from unroll.cli import main


def help_of(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 0
    text = capsys.readouterr().out
    return re.sub(r"\s+", " ", text)  # argparse wraps at the terminal's width


def test_help_shows_what_runs_by_default_not_the_dataclass_defaults(capsys):
    text = help_of(capsys, ["lm", "train", "--help"])
    # lm runs the demo preset when none is named: 8 epochs, dropout 0.35 (the dataclass: 13, 0)
    assert "--epochs VALUE epochs in all (int; default (preset demo): 8)" in text
    assert "(float; default (preset demo): 0.35)" in text
    assert "learning rate (float; default (preset demo): 1.0)" in text  # a base-class comment


def test_help_after_a_preset_shows_that_presets_values(capsys):
    for argv in (["--preset", "ptb-large", "--help"], ["--help", "--preset=ptb-large"]):
        text = help_of(capsys, ["lm", "train", *argv])
        assert "(int; preset ptb-large: 55)" in text
        assert "(int; preset ptb-large: 1500)" in text


def test_an_old_name_that_converts_says_how(capsys):
    text = help_of(capsys, ["lm", "train", "--help"])
    assert (
        "--keep-prob VALUE, --keep_prob VALUE old name: sets --dropout to 1.0 - float(VALUE)"
        in text
    )
    assert "--learning-rate VALUE, --learning_rate VALUE old name of --lr" in text


def test_a_recipe_without_presets_says_so_and_lists_its_defaults(capsys):
    text = help_of(capsys, ["sincos", "train", "--help"])
    assert "--preset NAME this recipe has no presets" in text
    assert main(["sincos", "presets"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["field", "(default)"]
    assert any(line.split() == ["num_steps", "20"] for line in table)


def test_a_mistyped_key_gets_did_you_mean(capsys):
    assert main(["lm", "train", "hidden_sise=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "unroll: error: unknown config key 'hidden_sise'; did you mean 'hidden_size'?"
    assert main(["lm", "train", "zzzz=3"]) == 2  # nothing close: the known keys
    err = capsys.readouterr().err
    assert "unknown config key 'zzzz'; known keys: " in err and ", batch_size, " in err
