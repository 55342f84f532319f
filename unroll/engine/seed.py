"""Seeding and saving/restoring every random number generator a run uses.

`get_rng_state` returns only tensors, ints, strings and lists, so it can live in a checkpoint
that `torch.load(weights_only=True)` reads back (no pickled objects). `set_rng_state` accepts
the tensors on any device (a checkpoint loaded with ``map_location="cuda"``): generator states
are set from CPU copies.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def get_rng_state() -> dict[str, Any]:
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [
            np_name,
            torch.from_numpy(np_keys.astype(np.int64)),
            np_pos,
            np_has_gauss,
            np_gauss,
        ],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _cpu_bytes(t: torch.Tensor) -> torch.Tensor:
    """A generator state as the CPU uint8 tensor the setters take, wherever it was loaded."""
    return t.detach().cpu().to(torch.uint8)


def set_rng_state(state: dict[str, Any]) -> None:
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    keys = np_keys.detach().cpu().numpy() if isinstance(np_keys, torch.Tensor) else np_keys
    np.random.set_state(
        (np_name, np.asarray(keys).astype(np.uint32), np_pos, np_has_gauss, np_gauss)
    )
    torch.set_rng_state(_cpu_bytes(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        cuda = [_cpu_bytes(s) for s in state["cuda"]]
        n = torch.cuda.device_count()
        # A checkpoint from a machine with more GPUs: set the devices this one has.
        for i, s in enumerate(cuda[:n]):
            torch.cuda.set_rng_state(s, i)
