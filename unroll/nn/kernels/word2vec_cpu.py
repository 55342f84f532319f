"""The compiled CPU update of word2vec (`word2vec_cpu.cpp`), built on first use.

`kernel()` builds it (once per machine, torch version and source; about 15 s) and returns its
ops, or None when they cannot be had — then unroll runs the PyTorch reference instead (same
math, several times slower on a CPU). Two ops:

* `update` applies a batch of examples one after another, as the C tool does
  (`unroll.models.word2vec.reference_update` is the specification);
* `examples` draws a chunk's examples, equal bit for bit to
  `unroll.data.word_windows.chunk_examples` (the specification).

``UNROLL_CPU_EXTENSION=0`` turns it off; `unavailable_reason()` says why it is not in use.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from unroll.nn.kernels.build import FLAG_SETS, compile_extension, try_flag_sets, turned_off

if TYPE_CHECKING:
    from unroll.data.word_windows import Examples

SOURCE = Path(__file__).with_name("word2vec_cpu.cpp")
# OpenMP first, for the threads of `update` (at::parallel_reduce); without it, one thread.
OPENMP_FLAG_SETS = (*([*f, "-fopenmp"] for f in FLAG_SETS.values()), *FLAG_SETS.values())

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_state: dict = {"tried": False, "op": None, "reason": "not loaded yet"}


def _build(flags: list[str]) -> None:
    compile_extension("unroll_word2vec_cpu", [SOURCE], flags, "the word2vec CPU kernel", 15)


def kernel():
    """The compiled ops (``torch.ops.unroll_word2vec_cpu``), or None; builds them on the first
    call."""
    off = turned_off()
    if off is not None:
        _state["reason"] = off
        return None
    if _state["tried"]:
        return _state["op"]
    with _lock:
        if not _state["tried"]:
            failed = try_flag_sets(_build, OPENMP_FLAG_SETS)
            if failed is None:
                _state["op"], _state["reason"] = torch.ops.unroll_word2vec_cpu, None
            else:
                _state["reason"] = f"could not build word2vec_cpu.cpp ({failed})"
                logger.warning(
                    "unroll: %s; word2vec uses its PyTorch update on CPU", _state["reason"]
                )
            _state["tried"] = True
    return _state["op"]


def unavailable_reason() -> str | None:
    """None when the kernel is in use, else why not (after `kernel()` was called)."""
    return None if kernel() is not None else _state["reason"]


def update(
    v: Tensor,
    u: Tensor,
    b: Tensor | None,
    log_kq: Tensor | None,
    ex: Examples,
    lr: float,
    mean: bool,
) -> float:
    """Apply the examples to v, u (and b for NCE) in place; returns their summed loss."""
    op = kernel()
    if op is None:
        raise RuntimeError(f"the word2vec CPU kernel is not available: {unavailable_reason()}")
    return op.update(
        v,
        u,
        b,
        log_kq,
        ex.inputs.contiguous(),
        None if ex.offsets is None else ex.offsets.contiguous(),
        ex.targets.contiguous(),
        ex.negatives.contiguous(),
        float(lr),
        bool(mean),
    )


def examples(
    ids: Tensor,
    sentence: Tensor,
    start: int,
    keep: Tensor,
    accept: Tensor,
    alias: Tensor,
    window: int,
    negative: int,
    cbow: bool,
    shrink: bool,
    keys: tuple[int, int, int, int],
) -> tuple[Tensor, Tensor | None, Tensor, Tensor]:
    """(inputs, offsets, targets, negatives) of a chunk; `keys` are the int64 keys of the
    subsample, window, noise-index and noise-coin streams."""
    op = kernel()
    if op is None:
        raise RuntimeError(f"the word2vec CPU kernel is not available: {unavailable_reason()}")
    inputs, offsets, targets, negatives = op.examples(
        ids.contiguous(),
        sentence.contiguous(),
        int(start),
        keep.contiguous(),
        accept.contiguous(),
        alias.contiguous(),
        int(window),
        int(negative),
        bool(cbow),
        bool(shrink),
        *keys,
    )
    return inputs, offsets if cbow else None, targets, negatives
