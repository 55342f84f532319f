"""Pieces every recipe's training loop uses: run directories, checkpoints, metrics, progress."""

from unroll.engine.checkpoint import load_checkpoint, save_checkpoint
from unroll.engine.device import resolve_device
from unroll.engine.metrics import MetricsLogger
from unroll.engine.progress import Progress
from unroll.engine.rundir import RunDir
from unroll.engine.seed import get_rng_state, seed_everything, set_rng_state

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
