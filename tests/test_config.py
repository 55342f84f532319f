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
