"""Choosing the device and the arithmetic: CUDA when present, the CPU otherwise, or what the
user names; fp32, TF32 or bf16 autocast; the number of CPU threads."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch

from unroll.engine.distributed import World
from unroll.errors import UserError

DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")
PRECISIONS = ("fp32", "tf32", "bf16")


def _available(kind: str) -> bool:
    if kind == "cpu":
        return True
    backend = getattr(torch, kind, None) if kind != "mps" else getattr(torch.backends, "mps", None)
    try:
        return bool(backend is not None and backend.is_available())
    except Exception:  # noqa: BLE001 - a backend that cannot even answer is not available
        return False


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` if available (else ``mps``, ``xpu``), else ``cpu``; ``cpu``,
    ``cuda[:N]``, ``mps``, ``xpu[:N]`` as given, when this machine has them.

    Under torchrun each process has its own GPU: ``auto`` and ``cuda[:N]`` mean
    ``cuda:LOCAL_RANK`` (one config serves every process; `unroll.engine.distributed`)."""
    if name == "auto":
        for kind in ("cuda", "mps", "xpu"):
            if _available(kind):
                return _per_process(torch.device(kind))
        return torch.device("cpu")
    expected = "expected auto, cpu, cuda, cuda:N, mps or xpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"--device {name!r}: {expected}") from None
    if device.type not in DEVICE_TYPES:
        raise UserError(f"--device {name}: {expected}")
    if not _available(device.type):
        raise UserError(
            f"--device {name}: {device.type} is not available on this machine (use cpu)"
        )
    if (
        device.type == "cuda"
        and device.index is not None
        and device.index >= torch.cuda.device_count()
    ):
        raise UserError(
            f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
        )
    return _per_process(device)


def _per_process(device: torch.device) -> torch.device:
    """``cuda:LOCAL_RANK`` for a CUDA device when torchrun started several processes."""
    local = World.from_env()
    if device.type != "cuda" or local.size == 1:
        return device
    if local.local_rank >= torch.cuda.device_count():
        raise UserError(
            f"process LOCAL_RANK={local.local_rank}: this machine has "
            f"{torch.cuda.device_count()} CUDA device(s) (--nproc-per-node at most that)"
        )
    return torch.device("cuda", local.local_rank)


def device_name(device: str | torch.device = "cpu") -> str:
    """The GPU's name, or the CPU model (from /proc/cpuinfo where there is one)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


@contextlib.contextmanager
def num_threads(n: int) -> Iterator[None]:
    """Run with `n` intra-op threads (0: unchanged), restoring the previous number after.

    On a small, shared CPU one thread is often much faster for models this size: with more,
    threads wait for each other whenever another process holds a core.
    """
    if n <= 0:
        yield
        return
    from unroll.config import max_threads

    n = min(n, max_threads())  # a checkpoint from a bigger machine must not oversubscribe this one
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def autocast_factory(
    device: torch.device, precision: str
) -> Callable[[], contextlib.AbstractContextManager]:
    """A zero-argument function giving the forward's autocast context: bf16 autocast for
    ``precision="bf16"`` (weights, optimizer and loss stay fp32), nothing otherwise."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


@contextlib.contextmanager
def matmul_precision(device: torch.device, precision: str) -> Iterator[None]:
    """TF32 tensor-core matmuls for ``precision="tf32"`` on CUDA (10-bit mantissa products,
    fp32 accumulation); full fp32 otherwise. Restores PyTorch's previous setting after.

    The choice, for cuBLAS and cuDNN alike: ``fp32`` means IEEE float32 everywhere — the
    reference arithmetic, which TF32 is measured against — so it turns cuDNN's TF32 off too,
    although PyTorch's default leaves it on (``torch.backends.cudnn.allow_tf32``); ``tf32``
    turns both on; ``bf16`` (autocast) leaves the fp32 parts in IEEE fp32. `arithmetic` records
    what ran in meta.json."""
    if precision not in PRECISIONS:
        raise UserError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")
    if device.type != "cuda":
        yield
        return
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    tf32 = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def effective_precision(device: torch.device, precision: str) -> str:
    """What `precision` means on `device`, for the run's metadata (TF32 exists only on CUDA)."""
    if precision == "tf32" and device.type != "cuda":
        return "fp32 (tf32 applies to CUDA only)"
    return precision


def arithmetic(device: torch.device, precision: str) -> dict[str, object]:
    """What a run's arithmetic really is, for meta.json: ``tf32`` (matmuls and cuDNN in TF32:
    only ``precision=tf32`` on CUDA, see `matmul_precision`), ``autocast`` (the forward's
    autocast dtype, or None) and ``lstm_dtype``, the dtype the LSTM layer's torch kernel
    really runs in under that autocast, read off a one-step probe on `device` — under bf16
    on CUDA float32, not cuDNN autocast's float16 (`unroll.nn.layers.AUTOCAST_RNN_HALF`).
    Nothing runs in float16, so no gradient scaler is needed."""
    from unroll.nn.layers import LSTM

    with torch.random.fork_rng(devices=[]):  # (the run's seeded streams stay untouched)
        probe = LSTM(1, 1).to(device)
    x = torch.zeros(1, 1, 1, device=device)
    with torch.no_grad(), autocast_factory(device, precision)():
        y, _ = probe(x)
    return {
        "tf32": device.type == "cuda" and precision == "tf32",
        "autocast": "bfloat16" if precision == "bf16" else None,
        "lstm_dtype": str(y.dtype).removeprefix("torch."),
    }
