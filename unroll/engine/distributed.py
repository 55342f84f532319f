"""Data-parallel training on several processes: torchrun starts them, PyTorch's
DistributedDataParallel (DDP) keeps their weights equal, this module does the rest once.

::

    torchrun --nproc-per-node 2 -m unroll classify train ...      # 2 processes, one machine

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in each process. Without
them (or with WORLD_SIZE=1) everything here is a no-op and a run is the single process it
always was. With them:

- the process group is joined on first use (`world`): NCCL for CUDA tensors, gloo for CPU
  ones; each process uses the GPU ``cuda:LOCAL_RANK`` (`unroll.engine.device.resolve_device`);
- the model is wrapped in DDP by the step builders (`ddp`; `unroll.engine.loop.supervised_step`
  and the language model's steps call it), which averages the gradients in the backward pass;
- each rank reads its own shard, cut so that N processes with batch B see exactly the
  batches of one process with batch N·B (``batch_size`` is per process):

    * shuffled minibatches (`shard_batches`): the epoch's order is rank 0's (broadcast); each
      global batch of N·B items is split into N parts, rank r takes part r. Every rank runs
      the same number of steps (no rank waits in an all-reduce the others never reach: no
      hang, no `Join` needed). A short last global batch gives parts of unequal size; each
      part's mean loss is weighted by N·n_r/m (`Part.weight`), so DDP's mean over the ranks is
      the global batch's mean loss, as one process would compute it (a rank with no item left
      runs one stand-in item at weight 0);
    * parallel streams (the language model's and sin→cos's rows, state carried across
      windows): the stream is laid out as N·B rows and rank r takes rows r·B .. r·B+B-1
      (`rows`), so its carried state is that of those rows in the one-process run::

        N = 2 processes, B = 2; ids 0..39    shuffled items, global batches of N·B = 4
        laid out as N·B = 4 rows:
          row 0 |  0  1  2 ...  9   rank 0   [a b c d] -> rank 0 [a b], rank 1 [c d], weight 1
          row 1 | 10 11 12 ... 19   rank 0   [e]       -> rank 0 [e] at weight 2·1/1 = 2,
          row 2 | 20 21 22 ... 29   rank 1                rank 1 [e] (stand-in) at weight 0
          row 3 | 30 31 32 ... 39   rank 1


- rank 0 alone writes the run directory, metrics, checkpoints and progress; the others are
  quiet (`unroll.engine.run.Run`). Decisions that must be the same everywhere are rank 0's,
  broadcast (`from_main`: creating/opening the run directory, reading the checkpoint to resume,
  or the error that stopped rank 0 — every rank then stops with it);
- per-epoch validation is sharded and the sums reduced (`share`, `all_sum`; sin→cos's one
  short test stream runs whole on every rank), and `fit` uses rank 0's metrics on every rank,
  so all take the same decisions (divergence, best epoch); the final test evaluation runs on
  rank 0 alone (it has the checkpoints);
- random streams: every rank seeds with ``seed`` (the same initial weights; DDP broadcasts
  rank 0's anyway). Rank 0's streams are the single process's (saved in its checkpoints); rank
  r > 0 reseeds its torch generators at each epoch start from (seed, rank, epoch) (`reseed`),
  so its dropout masks differ from rank 0's, and a resumed run redraws them exactly.

A rank that fails ends the job: torchrun stops the others and names the rank that failed
first; a rank left alone in a collective gets an error from gloo/NCCL when its peer's
connection closes (or after the process group's timeout).
"""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import numpy as np
import torch
from torch import nn

from unroll.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one training job."""

    rank: int = 0  # 0 .. size-1; rank 0 writes the run directory
    size: int = 1  # the number of processes (torchrun's WORLD_SIZE)
    local_rank: int = 0  # index on this machine (its GPU)
    local_size: int = 1  # processes on this machine (--nproc-per-node)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> World:
        """What torchrun's environment variables say (no process group is joined)."""
        size = _env_int("WORLD_SIZE", 1)
        if size <= 1:
            return cls()
        return cls(
            rank=_env_int("RANK", 0),
            size=size,
            local_rank=_env_int("LOCAL_RANK", 0),
            local_size=_env_int("LOCAL_WORLD_SIZE", 1),
        )


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError(f"environment {name}={text!r}: expected an integer") from None


def world() -> World:
    """This process's `World`. Under torchrun (WORLD_SIZE > 1) the first call joins the process
    group from the environment (``env://``): gloo for CPU tensors, and NCCL for CUDA tensors
    when this machine has a GPU for LOCAL_RANK. The process group is torch's own state."""
    env = World.from_env()
    if env.size == 1:
        return env
    import torch.distributed as dist

    if not dist.is_initialized():
        _join(env)
    return World(dist.get_rank(), dist.get_world_size(), env.local_rank, env.local_size)


def _join(env: World) -> None:
    import torch.distributed as dist

    missing = [v for v in ("MASTER_ADDR", "MASTER_PORT", "RANK") if not os.environ.get(v)]
    if missing:
        raise UserError(
            f"WORLD_SIZE={env.size} but {', '.join(missing)} unset: start several processes "
            f"with torchrun (torchrun --nproc-per-node N -m unroll ...)"
        )
    backend = "gloo"
    if torch.cuda.is_available() and env.local_rank < torch.cuda.device_count():
        torch.cuda.set_device(env.local_rank)
        backend = "cpu:gloo,cuda:nccl"  # collectives on CPU tensors go through gloo
    timeout = None  # PyTorch's default: 30 min for gloo, 10 min for NCCL
    text = os.environ.get("UNROLL_DIST_TIMEOUT")  # seconds a collective may wait
    if text:
        try:
            timeout = datetime.timedelta(seconds=float(text))
        except ValueError:
            raise UserError(f"UNROLL_DIST_TIMEOUT={text!r}: expected seconds") from None
    dist.init_process_group(backend, timeout=timeout)


def shutdown(*, together: bool = True) -> None:
    """Leave the process group (at the end of a command that joined one).

    ``together``: first wait for every rank (a barrier), so no rank tears its end down while
    another still works — rank 0 evaluates the test set alone after training, and a rank that
    left the group and the interpreter meanwhile could abort in gloo's C++ teardown ("terminate
    called without an active exception", SIGABRT). After an error the other ranks may never
    come, so the error paths leave without waiting. Then the objects that still hold the group
    (DDP wrappers in reference cycles) are collected while the interpreter is whole, and the
    group is destroyed explicitly rather than during interpreter finalization."""
    import gc

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if together:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()
    gc.collect()


def launch_command(argv: Sequence[str]) -> list[str]:
    """`argv` as the command that started this job: prefixed with the torchrun line when
    several processes run it (for the run directory's command.txt)."""
    w = World.from_env()
    if w.size == 1:
        return list(argv)
    nodes = max(1, w.size // max(w.local_size, 1))
    head = ["torchrun", "--nnodes", str(nodes), "--nproc-per-node", str(w.local_size)]
    argv = list(argv)
    if argv and argv[0] == "unroll":  # the CLI: torchrun runs it as a module
        return [*head, "-m", *argv]
    return [*head, *argv]


# -- decisions made once, on rank 0 ---------------------------------------------------------


def collective_failure(e: BaseException) -> str | None:
    """What went wrong, in one line, when `e` is a collective that failed because another
    process stopped or stalled (gloo/NCCL: a closed connection, or ``UNROLL_DIST_TIMEOUT``
    passed); None for any other exception."""
    import torch.distributed as dist

    text = " ".join(str(e).split())
    known = ("Timed out", "timed out", "Connection closed by peer", "Connection reset", "NCCL")
    if not (
        isinstance(e, getattr(dist, "DistError", ()))
        or (isinstance(e, RuntimeError) and any(k in text for k in known))
    ):
        return None
    if "] " in text[:200]:  # gloo's "[path/file.cc:129] Timed out ..."
        text = text.split("] ", 1)[1]
    return f"another process stopped or stalled, a collective operation failed ({text[:160]})"


class RankZeroError(UserError):
    """The `UserError` that stopped rank 0, raised on the other ranks (rank 0 printed it)."""


def broadcast_object(obj: T) -> T:
    """Rank 0's `obj` on every rank (pickled; for small things and checkpoints)."""
    w = world()
    if w.size == 1:
        return obj
    import torch.distributed as dist

    box = [obj if w.main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]  # type: ignore[return-value]


def from_main(fn: Callable[[], T]) -> T:
    """``fn()`` run on rank 0 alone, its result on every rank; a `UserError` it raises stops
    every rank (rank 0 with it, the others with a `RankZeroError` of the same text).

    All ranks first reach this point (a barrier), so nothing a rank did before it (e.g. checking
    that --out is free) can race with what rank 0 does inside `fn` (e.g. creating --out)."""
    w = world()
    if w.size == 1:
        return fn()
    import torch.distributed as dist

    dist.barrier()
    outcome: tuple[str, Any] = ("ok", None)
    if w.main:
        try:
            outcome = ("ok", fn())
        except UserError as e:
            outcome = ("error", str(e))
            broadcast_object(outcome)
            raise
        except BaseException as e:
            broadcast_object(("crash", f"{type(e).__name__}: {e}"))
            raise
    outcome = broadcast_object(outcome)
    kind, value = outcome
    if kind == "error":
        raise RankZeroError(value)
    if kind == "crash":
        raise RankZeroError(f"rank 0 failed ({value}); its traceback is above")
    return value


def broadcast(t: torch.Tensor) -> torch.Tensor:
    """Rank 0's tensor `t` (same shape and dtype on every rank), as a new tensor."""
    if world().size == 1:
        return t
    import torch.distributed as dist

    t = t.clone().contiguous()
    dist.broadcast(t, src=0)
    return t


def all_sum(*values: float | int | torch.Tensor) -> list[float]:
    """The sums over the ranks of a few numbers (0-d tensors are read: one sync), in float64."""
    out = [float(v) for v in values]
    if world().size == 1:
        return out
    import torch.distributed as dist

    t = torch.tensor(out, dtype=torch.float64)  # CPU: gloo, whatever the training device
    dist.all_reduce(t)
    return t.tolist()


def epoch_loss_sum(total: float, steps: int) -> float:
    """The one-process equivalent of an epoch's summed step losses: the mean over the ranks of
    their sums (each step's weighted losses average to the global batch's loss). Refuses ranks
    that ran different numbers of steps (their batches were not cut by this module)."""
    w = world()
    if w.size == 1:
        return total
    import torch.distributed as dist

    mine = torch.tensor([total, float(steps)], dtype=torch.float64)
    parts = [torch.empty_like(mine) for _ in range(w.size)]
    dist.all_gather(parts, mine)
    counts = [int(p[1]) for p in parts]
    if len(set(counts)) != 1:
        raise RuntimeError(
            f"the ranks ran {counts} training steps this epoch: every rank must run the same "
            f"number (cut the batches with unroll.engine.distributed.shard_batches or rows)"
        )
    return float(sum(float(p[0]) for p in parts)) / w.size


# -- the model -------------------------------------------------------------------------------


def ddp(module: nn.Module, *, capture: bool = False) -> nn.Module:
    """`module` wrapped in DistributedDataParallel (the module itself in a single process).

    Call the returned module for the training forward (its backward averages the gradients
    over the ranks); keep the bare `module` for evaluation and checkpoints (its state_dict has
    no ``module.`` prefix). DDP broadcasts rank 0's parameters and buffers when it is built.
    `capture`: the step will be captured in a CUDA graph — DDP is then built on a side stream,
    as PyTorch's CUDA-graph notes require (with at least 11 eager warm-up steps before
    capture)."""
    if world().size == 1:
        return module
    from torch.nn.parallel import DistributedDataParallel

    p = next(module.parameters())
    ids = [p.device.index if p.device.index is not None else 0] if p.device.type == "cuda" else None
    if capture and p.device.type == "cuda":
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            wrapped = DistributedDataParallel(module, device_ids=ids)
        torch.cuda.current_stream().wait_stream(side)
        return wrapped
    return DistributedDataParallel(module, device_ids=ids)


# Eager warm-up steps before a DDP step is captured (PyTorch's CUDA-graph notes: at least 11).
DDP_CAPTURE_WARMUP = 11


def reseed(seed: int, epoch: int) -> None:
    """Ranks > 0: their own torch random streams (dropout), drawn afresh at each epoch start
    from (seed, rank, epoch). Rank 0 (and a single process) keeps the stream it has."""
    w = world()
    if w.rank == 0:
        return
    state = np.random.SeedSequence([seed % 2**63, w.rank, epoch]).generate_state(2, np.uint32)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))  # CPU and every CUDA device


# -- the data ---------------------------------------------------------------------------------


class Part(NamedTuple):
    """This rank's part of one global batch, and the weight of its mean loss (`shard_batches`).
    `unroll.engine.loop.supervised_step` multiplies the loss by it."""

    batch: Any
    weight: float


def shard_batches(
    items: torch.Tensor,
    batch_size: int,
    make: Callable[[torch.Tensor], Any] = lambda rows: rows,
) -> Iterator[Part]:
    """The epoch's minibatches of `items` (1-D: the epoch's order of example indices, window
    origins ...) for this rank: global batches of N·`batch_size` consecutive items, rank r's
    part of each (see the module docstring), as ``Part(make(part), weight)``.

    The order is rank 0's (broadcast), so the ranks need not draw the same permutation. One
    process: the plain minibatches, weight 1."""
    w = world()
    items = broadcast(items)
    step = w.size * batch_size
    for start in range(0, len(items), step):
        part, weight = part_of(items[start : start + step], w.rank, w.size)
        yield Part(make(part), weight)


def part_of(glob: torch.Tensor, rank: int, size: int) -> tuple[torch.Tensor, float]:
    """Rank `rank`'s part of the global batch `glob` (m items) and its weight ``size·n/m``:
    consecutive parts, the first ``m % size`` one item longer; with fewer items than ranks a
    rank without one gets a stand-in item (the first) at weight 0. Σ weight·mean / size over
    the ranks is the mean over `glob`."""
    if size == 1:
        return glob, 1.0
    mine = torch.tensor_split(glob, size)[rank]
    if len(mine) == 0:
        return glob[:1], 0.0
    return mine, size * len(mine) / len(glob)


def batch_count(n: int, batch_size: int) -> int:
    """How many batches `shard_batches` gives each rank for `n` items."""
    return math.ceil(n / (world().size * batch_size))


def global_batch(batch_size: int) -> int:
    """The batch of the one-process run this job equals: N·`batch_size`."""
    return world().size * batch_size


def rows(batch_size: int) -> slice:
    """This rank's `batch_size` rows of a stream laid out as N·`batch_size` rows."""
    r = world().rank
    return slice(r * batch_size, (r + 1) * batch_size)


def share(n: int) -> slice:
    """This rank's contiguous part of `n` evaluation items (sizes differ by at most one; a
    rank may get none): sum over it, then `all_sum`."""
    w = world()
    return slice(n * w.rank // w.size, n * (w.rank + 1) // w.size)


def describe() -> str:
    """``2 processes (gloo)`` for a progress line; empty for a single process."""
    w = world()
    if w.size == 1:
        return ""
    import torch.distributed as dist

    return f"{w.size} processes ({dist.get_backend()})"


__all__ = [
    "DDP_CAPTURE_WARMUP",
    "Part",
    "RankZeroError",
    "World",
    "all_sum",
    "batch_count",
    "broadcast",
    "broadcast_object",
    "ddp",
    "describe",
    "epoch_loss_sum",
    "from_main",
    "global_batch",
    "launch_command",
    "part_of",
    "reseed",
    "rows",
    "shard_batches",
    "share",
    "shutdown",
    "world",
]
