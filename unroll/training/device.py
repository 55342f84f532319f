"""Choosing the device: CUDA when present, the CPU otherwise, or what the user names."""

from __future__ import annotations

import torch

from unroll.errors import UserError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` if available else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` as given."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine (use cpu)")
    if device.type not in ("cpu", "cuda"):
        raise UserError(f"--device {name}: expected auto, cpu, cuda or cuda:N")
    return device
