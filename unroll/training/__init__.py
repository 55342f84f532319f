"""Pieces every recipe's training loop uses: run directories, checkpoints, metrics, progress."""

from unroll.training.checkpoint import load_checkpoint, save_checkpoint
from unroll.training.device import resolve_device
from unroll.training.metrics import MetricsLogger
from unroll.training.progress import Progress
from unroll.training.rundir import RunDir
from unroll.training.seed import get_rng_state, seed_everything, set_rng_state

__all__ = [
    "MetricsLogger",
    "Progress",
    "RunDir",
    "get_rng_state",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "seed_everything",
    "set_rng_state",
]
