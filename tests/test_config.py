from dataclasses import dataclass
from typing import Literal

import pytest

from unroll.config import apply_overrides, config_from_dict, parse_override_tokens
from unroll.errors import UserError


@dataclass
class Cfg:
    layers: int = 2
    lr: float = 1.0
    tie: bool = False
    name: str = "x"
    device: str | None = None
    mode: Literal["direct", "recursive"] = "direct"


def test_tokens_in_all_three_spellings():
    assert parse_override_tokens(["a=1", "--b", "2", "--c-d=3"]) == [
        ("a", "1"),
        ("b", "2"),
        ("c_d", "3"),
    ]


def test_overrides_are_converted_to_field_types():
    cfg = apply_overrides(Cfg(), ["layers=3", "--lr", "1/1.15", "tie=true", "device=none"])
    assert cfg == Cfg(layers=3, lr=1 / 1.15, tie=True, device=None)
    assert apply_overrides(Cfg(), ["mode=recursive"]).mode == "recursive"
    assert apply_overrides(Cfg(), ["device=cuda"]).device == "cuda"


@pytest.mark.parametrize(
    "token, fragment",
    [
        ("layres=3", "unknown config key 'layres'"),
        ("layers=two", "expected an integer"),
        ("lr=fast", "expected a number"),
        ("tie=maybe", "expected a boolean"),
        ("mode=sideways", "expected one of direct, recursive"),
        ("justaword", "overrides are key=value"),
    ],
)
def test_bad_overrides_are_errors(token, fragment):
    with pytest.raises(UserError, match=fragment):
        apply_overrides(Cfg(), [token])


def test_flag_without_value_is_an_error():
    with pytest.raises(UserError, match="needs a value"):
        apply_overrides(Cfg(), ["--lr"])


def test_config_from_dict_rejects_unknown_keys():
    assert config_from_dict(Cfg, {"layers": 4}).layers == 4
    with pytest.raises(UserError, match="unknown config keys"):
        config_from_dict(Cfg, {"layers": 4, "bogus": 1})


def test_config_files_json_and_toml(tmp_path):
    from unroll.recipes.lm import RECIPE

    (tmp_path / "c.json").write_text('{"hidden_size": 33, "learning_rate": 0.5, "kind": "x"}')
    (tmp_path / "c.toml").write_text('hidden_size = 34\nlevel = "char"\n')
    a = RECIPE.make_config(None, tmp_path / "c.json", ["seed=4"])
    assert (a.hidden_size, a.lr, a.seed, a.name) == (33, 0.5, 4, "demo")  # demo preset first
    b = RECIPE.make_config("ptb-small", tmp_path / "c.toml", {})
    assert (b.hidden_size, b.level, b.data) == (34, "char", "ptb")
    (tmp_path / "bad.toml").write_text("hidden_size = \n")
    with pytest.raises(UserError, match="bad.toml: not valid TOML"):
        RECIPE.make_config(None, tmp_path / "bad.toml")
    (tmp_path / "bad.json").write_text('{"hidden_size": "many"}')
    with pytest.raises(UserError, match="hidden_size='many': expected an integer"):
        RECIPE.make_config(None, tmp_path / "bad.json")
    with pytest.raises(UserError, match="nope.json: cannot read"):
        RECIPE.make_config(None, tmp_path / "nope.json")


def test_typed_values_from_files_are_checked():
    @dataclass
    class T:
        n: int = 1
        x: float = 0.5
        flag: bool = False

    assert apply_overrides(T(), {"n": 3, "x": 2, "flag": True}) == T(3, 2.0, True)
    for bad, match in (({"n": 1.5}, "expected an integer"), ({"flag": 1}, "expected a boolean")):
        with pytest.raises(UserError, match=match):
            apply_overrides(T(), bad)


# -- one cap table for every recipe (unroll.limits.CAPS) ----------------------------------------


def _recipe_configs():
    from unroll.recipes import autoencode, classify, forecast, lm, seq2seq, sincos, word2vec

    return [
        r.RECIPE.config for r in (lm, classify, forecast, sincos, seq2seq, autoencode, word2vec)
    ]


@pytest.mark.parametrize("cls", _recipe_configs(), ids=lambda cls: cls.__name__)
def test_every_recipe_caps_every_size_field_from_the_one_table(cls):
    """Each size field a recipe has is capped (seq2seq's num_layers=1000000 used to hang,
    autoencode took 65,536 layers), and no recipe loosens the shared table."""
    import dataclasses

    from unroll.limits import CAPS

    for name, (low, high) in cls.CAPS.items():
        assert high <= CAPS[name][1] and low >= CAPS[name][0], (cls.__name__, name)
    fields = {f.name for f in dataclasses.fields(cls)}
    checked = [name for name in CAPS if name in fields]
    assert checked, cls.__name__
    for name in checked:
        high = cls.CAPS[name][1]
        with pytest.raises(UserError) as e:
            apply_overrides(cls(), {name: high + 1}).validate()
        assert (
            str(e.value)
            == f"{name}={high + 1}: expected an integer from {cls.CAPS[name][0]} to {high}"
        )
