"""The engine under every recipe: the training loop, runs (directories, resume rules, locks),
checkpoints, metrics logging, progress, seeding, device and precision, CUDA-graph capture, and
data-parallel training on several processes (`unroll.engine.distributed`)."""

from unroll.engine.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from unroll.engine.device import num_threads, resolve_device
from unroll.engine.loop import Diverged, FitResult, fit, make_optimizer, set_lr, supervised_step
from unroll.engine.metrics_log import MetricsLogger, read_metrics
from unroll.engine.progress import Progress
from unroll.engine.recipe import Recipe, Result
from unroll.engine.run import ResumePoint, Run, resume_point
from unroll.engine.rundir import RunDir
from unroll.engine.seed import get_rng_state, seed_everything, set_rng_state

__all__ = [
    "Diverged",
    "FitResult",
    "MetricsLogger",
    "Progress",
    "Recipe",
    "Result",
    "ResumePoint",
    "Run",
    "RunDir",
    "find_checkpoint",
    "fit",
    "get_rng_state",
    "load_checkpoint",
    "make_optimizer",
    "num_threads",
    "read_metrics",
    "resolve_device",
    "resume_point",
    "save_checkpoint",
    "seed_everything",
    "set_lr",
    "set_rng_state",
    "supervised_step",
]
