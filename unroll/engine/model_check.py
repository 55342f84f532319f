"""Checks on a model before it is made: its size against the machine's memory (a new run), and
a checkpoint's config and weights against the model that config describes (eval, predict,
generate). Both build the model on PyTorch's meta device first, where a model of any size
costs no memory and no time, so a typo (``hidden_size=65536``) or a hand-edited checkpoint
gives one line instead of an allocator error, a traceback or minutes of swapping.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from unroll.config import config_from_dict
from unroll.engine.seed import get_rng_state, set_rng_state
from unroll.errors import UserError

M = TypeVar("M", bound=nn.Module)
C = TypeVar("C")


def meta_model(build: Callable[[], M]) -> M:
    """What `build` makes, with every tensor on the meta device (shapes only, no storage)."""
    with torch.device("meta"):
        return build()


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:200] if text else type(e).__name__


def physical_memory() -> int | None:
    """This machine's RAM in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(build: Callable[[], nn.Module], fields: str, copies: int = 4) -> None:
    """A `UserError` when training the model `build` makes needs more than this machine's RAM:
    `copies` of its parameters (weights, gradients, and Adam's two moments by default). `fields`
    names the config fields that size it, for the message. The model is first made on the
    host whatever the device, so host memory is the bound."""
    params = sum(p.numel() for p in meta_model(build).parameters())
    need = params * 4 * copies  # fp32
    have = physical_memory()
    if have is not None and need > have:
        raise UserError(
            f"the model has {params:,} parameters (about {need / 2**30:.0f} GiB to train), more "
            f"than this machine's {have / 2**30:.0f} GiB: check {fields}"
        )


def saved_config(cls: type[C], ckpt: Mapping[str, Any], source: str) -> C:
    """The config a checkpoint was trained with, type-checked and validated like one given on
    the command line (a hand-edited ``num_layers=0`` is a one-line error, not a traceback).
    ``threads`` is not held to this machine's cores: the run may come from a bigger one, and
    `unroll.engine.device.num_threads` clamps it."""
    saved = ckpt.get("config")
    if not isinstance(saved, Mapping):
        raise UserError(f"{source}: the checkpoint has no config")
    try:
        config = config_from_dict(cls, saved, source=source)
        dataclasses.replace(config, threads=0).validate()  # type: ignore[type-var]
    except UserError as e:
        msg = str(e)
        raise UserError(msg if msg.startswith(source) else f"{source}: its config: {msg}") from None
    return config


def check_weights(build: Callable[[], nn.Module], state_dict: Any, source: str) -> None:
    """A one-line `UserError` unless a checkpoint's weights fit the model `build` makes: a
    missing or extra entry, another shape (named, with both shapes), a value that is not
    finite. Compared on the meta device: nothing is allocated, so a config that would make a
    huge model costs nothing."""
    if not isinstance(state_dict, Mapping):
        raise UserError(f"{source}: the checkpoint's weights are not a state_dict")
    try:
        expected = meta_model(build).state_dict()
    except (ValueError, TypeError, RuntimeError) as e:
        raise UserError(f"{source}: its config makes no model ({_first_line(e)})") from None
    missing = [k for k in expected if k not in state_dict]
    extra = [k for k in state_dict if k not in expected]
    if missing or extra:
        what = f"no {missing[0]}" if missing else f"an unexpected {extra[0]}"
        more = len(missing) + len(extra) - 1
        raise UserError(
            f"{source}: weights do not fit its config ({what}"
            + (f" and {more} more differences)" if more else ")")
        )
    for name, want in expected.items():
        got = state_dict[name]
        if not isinstance(got, torch.Tensor):
            raise UserError(f"{source}: weights: {name} is not a tensor")
        if got.shape != want.shape:
            raise UserError(
                f"{source}: weights do not fit its config ({name} is {list(got.shape)}, the "
                f"config makes {list(want.shape)})"
            )
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise UserError(f"{source}: weights: {name} holds inf or nan values")


def load_weights(build: Callable[[], M], state_dict: Any, source: str) -> M:
    """The model `build` makes, holding a checkpoint's weights (`check_weights` first)."""
    check_weights(build, state_dict, source)
    model = build()
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError, ValueError) as e:  # e.g. a dtype that cannot be copied
        raise UserError(f"{source}: weights do not fit its config ({_first_line(e)})") from None
    return model


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_resumable(build: Callable[[], nn.Module], ckpt: Mapping[str, Any], source: str) -> None:
    """A one-line `UserError` unless a run can continue from `ckpt` (its ``last.pt``): weights
    that fit (`check_weights`), the epoch and best so far, random-number states that can be
    set, and an optimizer state for as many parameters as the model has. Run before the run
    directory is touched, so a hand-made checkpoint leaves it as it was."""
    check_weights(build, ckpt.get("model"), source)
    epoch, best_epoch, best = ckpt.get("epoch"), ckpt.get("best_epoch"), ckpt.get("best")
    if not (_is_int(epoch) and epoch >= 1):
        raise UserError(f"{source}: epoch={epoch!r}, expected an integer >= 1")
    if best_epoch is not None and not (_is_int(best_epoch) and 1 <= best_epoch <= epoch):
        raise UserError(f"{source}: best_epoch={best_epoch!r}, expected 1 to epoch={epoch}")
    if best is not None and not (isinstance(best, (int, float)) and not isinstance(best, bool)):
        raise UserError(f"{source}: best={best!r}, expected a number")
    current = get_rng_state()
    try:
        set_rng_state(ckpt.get("rng"))  # a dry run: the states are put back below
    except Exception as e:  # noqa: BLE001 - any malformed state; the reason is in the message
        raise UserError(
            f"{source}: random-number states that cannot be set ({_first_line(e)})"
        ) from None
    finally:
        set_rng_state(current)
    optimizer = ckpt.get("optimizer")
    if optimizer is None:
        return
    state = optimizer.get("state") if isinstance(optimizer, Mapping) else None
    groups = optimizer.get("param_groups") if isinstance(optimizer, Mapping) else None
    if not (
        isinstance(state, Mapping)
        and isinstance(groups, list)
        and all(isinstance(g, Mapping) and isinstance(g.get("params"), list) for g in groups)
    ):
        raise UserError(f"{source}: optimizer: not an optimizer's state_dict")
    have = sum(len(g["params"]) for g in groups)
    want = sum(1 for _ in meta_model(build).parameters())
    if have != want:
        raise UserError(f"{source}: optimizer: state for {have} parameters, the model has {want}")
