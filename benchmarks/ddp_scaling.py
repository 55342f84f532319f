"""Data-parallel scaling: the language model's training speed with 1 and with N processes.

Each count of processes is one ``torchrun --nproc-per-node N`` job (gloo on the CPU, NCCL on
GPUs) running the recipe's own trainer (`unroll.recipes.lm.train.fit_lm`: DDP, this rank's
B rows of the N·B-row layout, the state carried per rank). The batch is per process (weak
scaling: N processes train on N·B rows per step), so perfect scaling is N times the words/s of
one process; the one-process job is the anchor.

    python benchmarks/ddp_scaling.py                                  # CPU: 1 and 2 processes
    python benchmarks/ddp_scaling.py --device cuda --processes 1,2,4,8    # one GPU each

Prints one JSON line. Words/s counts the B·T target tokens of every rank's steps, timed on
rank 0 over the second of two epochs of ``--steps`` steps (the first warms up). Data: the real
PTB when found (``$UNROLL_DATA/ptb`` or the cache, no download); otherwise a random id stream
of PTB's size and vocabulary (speed does not depend on the words).

On a CPU the processes share the machine's cores and memory bandwidth: with 2 cores, 2
processes of 1 thread each can at best double one process of 1 thread, and anything else
running on the machine takes from them (the JSON line records the load average).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unroll.data.batching import batchify, bptt_tensors  # noqa: E402
from unroll.engine import distributed  # noqa: E402
from unroll.engine.device import device_name, resolve_device  # noqa: E402
from unroll.recipes.lm import get_preset  # noqa: E402


def _train_ids(vocab_size: int) -> tuple[torch.Tensor, str]:
    """PTB's training ids when the data is here, else random ids of its size."""
    from unroll.data.corpora import resolve_corpus
    from unroll.errors import UserError

    for root in (os.environ.get("UNROLL_DATA"), Path.home() / ".cache" / "unroll"):
        if root and (Path(root) / "ptb").is_dir():
            try:
                return resolve_corpus(str(Path(root) / "ptb")).train, "ptb"
            except UserError:
                pass
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, vocab_size, (929_589,), generator=g), "random ids, PTB's size"


def worker(args: argparse.Namespace) -> None:
    """One rank of the job: two epochs of `steps` steps, rank 0 prints the second's speed."""
    from unroll.recipes.lm.evaluate import build_model
    from unroll.recipes.lm.train import fit_lm

    torch.set_num_threads(args.threads)
    world = distributed.world()
    config = dataclasses.replace(
        get_preset(args.preset),
        vocab_size=10_000,
        dropout=0.0,
        max_steps_per_epoch=args.steps,
        device=args.device,
    )
    device = resolve_device(config.device)
    ids, data = _train_ids(config.vocab_size)
    torch.manual_seed(0)
    model = build_model(config, config.vocab_size).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    B, T = config.batch_size, config.num_steps
    mine = batchify(ids, distributed.global_batch(B))[distributed.rows(B)]  # [B, L]
    X, Y = bptt_tensors(mine.to(device), T)
    fitted = fit_lm(
        None, model, optimizer, config, X, Y, device, lambda: {"valid_ppl": 0.0}, epochs=2
    )
    if world.main:
        record = fitted.history[-1]
        print(
            json.dumps(
                {
                    "processes": world.size,
                    "words_per_sec": round(record["words_per_sec"], 1),
                    "seconds": round(record["seconds"], 3),
                    "data": data,
                }
            ),
            flush=True,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(n: int, args: argparse.Namespace) -> dict:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(n),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        __file__,
        "--worker",
        f"--preset={args.preset}",
        f"--steps={args.steps}",
        f"--threads={args.threads}",
        f"--device={args.device}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        sys.exit(f"ddp_scaling: the {n}-process job failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="ptb-small")
    p.add_argument("--processes", default="1,2", help="comma-separated process counts")
    p.add_argument("--steps", type=int, default=60, help="timed steps per process")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (one GPU per process)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    load_before = os.getloadavg()
    runs = [launch(int(n), args) for n in args.processes.split(",")]
    base = runs[0]["words_per_sec"] / runs[0]["processes"]
    for r in runs:
        r["speedup"] = round(r["words_per_sec"] / runs[0]["words_per_sec"], 3)
        r["efficiency"] = round(r["words_per_sec"] / (base * r["processes"]), 3)
    preset = get_preset(args.preset)
    print(
        json.dumps(
            {
                "benchmark": "ddp_scaling",
                "preset": args.preset,
                "batch_per_process": preset.batch_size,
                "num_steps": preset.num_steps,
                "hidden_size": preset.hidden_size,
                "threads_per_process": args.threads,
                "steps": args.steps,
                "device": device_name(args.device),
                "cpu_cores": os.cpu_count(),
                "torch": torch.__version__,
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "runs": runs,
            }
        )
    )


if __name__ == "__main__":
    main()
