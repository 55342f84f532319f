"""Training speed on PTB: the plain PyTorch script a user would write vs unroll's trainer.

Both run in one process, on the same data and device, for the same preset. The anchor (a) is
written out below exactly as the plain Zaremba et al. (2014) script: ``nn.LSTM`` (cuDNN on a
GPU), SGD, gradient clipping by global norm, ``loss.item()`` every step. (b) is
``unroll.recipes.lm``'s trainer with its defaults for the device (on CUDA: whole-step CUDA
graphs; ``--precision`` fp32|tf32|bf16, default tf32 on CUDA for both sides).

    python benchmarks/ptb_speed.py --preset ptb-small            # N timed steps each
    python benchmarks/ptb_speed.py --preset ptb-medium --full    # train both to the end
    python benchmarks/ptb_speed.py --all                         # every preset/precision

Prints one JSON line (``--all``: one per preset and precision as each finishes, then all of
them in the last line). Words/sec counts the B·T target tokens of each training step.
Data (``--data``): ``auto`` (default) the real PTB when found (``$UNROLL_DATA/ptb`` or the
cache, no download), otherwise a random id stream of PTB's size and vocabulary (speed does not
depend on the words); ``ptb`` the real PTB or an error (exit 2) — what a run that also reports
perplexity needs; ``random``; or a corpus directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unroll.data.batching import batchify, bptt_batches, epoch_size  # noqa: E402
from unroll.engine.device import device_name  # noqa: E402
from unroll.recipes.lm import get_preset  # noqa: E402


# --------------------------------------------------------------------------------------------
# (a) The anchor: the plain PyTorch script, as a user would write it.
# --------------------------------------------------------------------------------------------
class PlainLM(nn.Module):
    def __init__(self, vocab_size: int, hidden: int, layers: int, dropout: float, init: float):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, hidden)
        self.drop = nn.Dropout(dropout)
        self.lstm = nn.LSTM(hidden, hidden, layers, dropout=dropout)
        self.decoder = nn.Linear(hidden, vocab_size)
        for p in self.parameters():
            nn.init.uniform_(p, -init, init)

    def forward(self, x, state):  # x [T, B]
        y, state = self.lstm(self.drop(self.embedding(x)), state)
        return self.decoder(self.drop(y)), state  # [T, B, V]


def plain_epoch(model, opt, data, cfg, device, max_steps=None, on_step=None):
    """One epoch of the plain script; returns (words, seconds, perplexity)."""
    model.train()
    B, T, V = cfg.batch_size, cfg.num_steps, model.decoder.out_features
    zeros = torch.zeros(cfg.num_layers, B, cfg.hidden_size, device=device)
    state = (zeros, zeros)
    total, words, steps = 0.0, 0, 0
    start = time.perf_counter()
    for x, y in bptt_batches(data, T):
        x, y = x.t().to(device), y.t().to(device)  # [T, B]
        state = tuple(s.detach() for s in state)
        logits, state = model(x, state)
        # TF tutorial convention: sum over time steps of the batch-mean cross-entropy.
        loss = nn.functional.cross_entropy(logits.view(-1, V), y.reshape(-1)) * T
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
        opt.step()
        total += loss.item()  # the host sync every step that a plain script does
        words += B * T
        steps += 1
        if on_step is not None:
            on_step(steps)
        if max_steps is not None and steps >= max_steps:
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return words, time.perf_counter() - start, math.exp(total / (steps * T))


@torch.no_grad()
def plain_eval(model, ids, cfg, device, batch_size=1):
    model.eval()
    data = batchify(ids, batch_size)
    state = None
    total, n = 0.0, 0
    for x, y in bptt_batches(data, 400, include_remainder=True):
        x, y = x.t().to(device), y.t().to(device)
        logits, state = model(x, state)
        total += nn.functional.cross_entropy(
            logits.view(-1, logits.size(-1)), y.reshape(-1), reduction="sum"
        ).item()
        n += y.numel()
    return math.exp(total / n)


def plain_lr(cfg, epoch):
    return cfg.lr * cfg.lr_decay ** max(epoch - cfg.lr_decay_after, 0)


# --------------------------------------------------------------------------------------------
# (b) unroll's trainer: the same function `unroll lm train` runs (`fit_lm`, the engine's loop).
# --------------------------------------------------------------------------------------------
def unroll_setup(cfg, vocab_size, device):
    from unroll.recipes.lm import build_model
    from unroll.recipes.lm.steps import build_train_step

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, vocab_size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    t0 = time.perf_counter()
    step = build_train_step(cfg, model, opt, device)  # on CUDA: captures the graph here
    if device.type == "cuda":
        torch.cuda.synchronize()
    return model, opt, step, time.perf_counter() - t0


def unroll_epochs(model, opt, step, cfg, X, Y, device, n_steps, epochs=1):
    """`epochs` epochs of `n_steps` steps through `fit_lm`; returns (words, seconds, last ppl)."""
    from unroll.recipes.lm.train import fit_lm

    cfg = dataclasses.replace(cfg, max_steps_per_epoch=n_steps)
    start = time.perf_counter()
    result = fit_lm(
        None, model, opt, cfg, X, Y, device, lambda: {"valid_ppl": 0.0}, epochs=epochs,
        train_step=step,
    )  # fmt: skip
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return epochs * n_steps * X.shape[1] * X.shape[2], seconds, result.history[-1]["train_ppl"]


# --------------------------------------------------------------------------------------------
def load_ids(source: str = "auto", vocab_hint: int = 10000):
    """(name, vocabulary size, train, valid, test ids) of `source` (see ``--data``): ``auto``
    PTB's if PTB is on disk, else random ids of PTB's sizes; ``ptb`` PTB's (verified; a
    `UserError` when absent, never a download); ``random``; or a corpus directory's."""
    from unroll.data.ptb import ptb_directory
    from unroll.data.text import load_corpus

    if source not in ("auto", "random"):
        directory = ptb_directory(download=False) if source == "ptb" else Path(source)
        c = load_corpus(directory)
        return (
            ("ptb" if source == "ptb" else str(directory)),
            len(c.vocab),
            c.train,
            c.valid,
            c.test,
        )
    roots = [os.environ.get("UNROLL_DATA"), os.path.expanduser("~/.cache/unroll")]
    for root in roots if source == "auto" else []:
        if root and all(
            (Path(root) / "ptb" / f"ptb.{s}.txt").is_file() for s in ("train", "valid", "test")
        ):
            c = load_corpus(Path(root) / "ptb")
            return "ptb", len(c.vocab), c.train, c.valid, c.test
    g = torch.Generator().manual_seed(0)
    sizes = (929589, 73760, 82430)
    streams = [torch.randint(vocab_hint, (n,), generator=g) for n in sizes]
    return "random", vocab_hint, *streams


def device_info(device):
    info = {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["device_name"] = device_name(device)
        info["cudnn"] = torch.backends.cudnn.version()
        info["tf32"] = torch.backends.cuda.matmul.allow_tf32
    else:
        info["device_name"] = device_name(device)
        info["cpus"] = os.cpu_count()
    return info


def bench_preset(name, precision, device, steps, warmup, full, data, rounds=1):
    # TF32 for both sides unless fp32 is asked for (bf16: the anchor's best plain setting).
    tf32 = device.type == "cuda" and precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    source, V, train_ids, valid_ids, test_ids = data
    cfg = get_preset(name)
    cfg = dataclasses.replace(cfg, precision=precision, device=str(device))
    B, T = cfg.batch_size, cfg.num_steps
    train = batchify(train_ids, B)
    n_epoch = epoch_size(train_ids.numel(), B, T)
    result = {"preset": name, "precision": precision, "data": source, "epoch_steps": n_epoch}

    # (a) anchor
    torch.manual_seed(cfg.seed)
    plain = PlainLM(V, cfg.hidden_size, cfg.num_layers, cfg.dropout, cfg.init_scale).to(device)
    plain_opt = torch.optim.SGD(plain.parameters(), lr=cfg.lr)
    # (b) unroll
    from unroll.data.batching import bptt_tensors

    X, Y = bptt_tensors(train.to(device), T)  # [n, B, T], staged once
    model, opt, step, setup_s = unroll_setup(cfg, V, device)
    result["unroll_setup_seconds"] = round(setup_s, 3)

    if not full:
        # warm-up, then N timed steps each, in `rounds` alternating turns (anchor first in odd
        # rounds, unroll first in even ones) so that a change of the machine's load during the
        # run falls on both sides alike; words/s are totals over the rounds.
        plain_epoch(plain, plain_opt, train, cfg, device, max_steps=warmup)
        unroll_epochs(model, opt, step, cfg, X, Y, device, warmup)
        n = max(1, min(steps, n_epoch) // rounds)
        w_a = s_a = w_u = s_u = 0.0
        per_round = []
        for r in range(rounds):
            turns = ["a", "u"] if r % 2 == 0 else ["u", "a"]
            got = {}
            for side in turns:
                if side == "a":
                    got["a"] = plain_epoch(plain, plain_opt, train, cfg, device, max_steps=n)
                else:
                    got["u"] = unroll_epochs(model, opt, step, cfg, X, Y, device, n)
            w_a, s_a = w_a + got["a"][0], s_a + got["a"][1]
            w_u, s_u = w_u + got["u"][0], s_u + got["u"][1]
            per_round.append(round((got["u"][0] / got["u"][1]) / (got["a"][0] / got["a"][1]), 3))
        result.update(
            steps=n * rounds,
            rounds=rounds,
            anchor_wps=round(w_a / s_a),
            unroll_wps=round(w_u / s_u),
            ratio=round((w_u / s_u) / (w_a / s_a), 3),
            ratio_per_round=per_round,
        )
        return result

    # --full: both trained to the end with the preset's schedule; test perplexity at batch 1.
    from unroll.recipes.lm import evaluate_ids
    from unroll.recipes.lm.steps import uses_graphs

    t0 = time.perf_counter()
    for epoch in range(1, cfg.epochs + 1):
        for g in plain_opt.param_groups:
            g["lr"] = plain_lr(cfg, epoch)
        plain_epoch(plain, plain_opt, train, cfg, device)
    anchor_test = plain_eval(plain, test_ids, cfg, device)
    anchor_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    words, _, _ = unroll_epochs(model, opt, step, cfg, X, Y, device, n_epoch, cfg.epochs)
    nll, tokens = evaluate_ids(
        model,
        test_ids,
        1,
        1,
        chunk_steps=cfg.eval_num_steps,
        precision=precision,
        graphs=uses_graphs(cfg, device),
    )
    unroll_seconds = time.perf_counter() - t0 + setup_s
    result.update(
        anchor_test_ppl=round(anchor_test, 2),
        unroll_test_ppl=round(math.exp(nll / tokens), 2),
        anchor_seconds=round(anchor_seconds, 1),
        unroll_seconds=round(unroll_seconds, 1),
        anchor_wps=round(cfg.epochs * n_epoch * B * T / anchor_seconds),
        unroll_wps=round(words / unroll_seconds),
        ratio=round(anchor_seconds / unroll_seconds, 3),
    )
    return result


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--preset", default="ptb-small", help="ptb-small|ptb-medium|ptb-large|ptb-test")
    p.add_argument(
        "--precision",
        default=None,
        choices=["fp32", "tf32", "bf16"],
        help="default tf32 on CUDA (both sides; bf16: the anchor in tf32), fp32 on the CPU",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--steps", type=int, default=None, help="timed steps (default 300 on CUDA, 40 on CPU)"
    )
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 20 / 5)")
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="alternating turns the timed steps are split into (default 1 on CUDA, 4 on CPU)",
    )
    p.add_argument("--full", action="store_true", help="train both to the end, add test perplexity")
    p.add_argument(
        "--all", action="store_true", help="every ptb preset (and bf16 on CUDA) in one run"
    )
    p.add_argument(
        "--presets",
        default="ptb-small,ptb-medium,ptb-large",
        help="with --all: which presets (comma-separated)",
    )
    p.add_argument("--data", default="auto", help="auto (default), ptb, random or a directory")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from unroll.engine.device import resolve_device

    device = resolve_device(args.device)
    precision = args.precision or ("tf32" if device.type == "cuda" else "fp32")
    steps = args.steps or (300 if device.type == "cuda" else 40)
    warmup = args.warmup if args.warmup is not None else (20 if device.type == "cuda" else 5)
    from unroll.errors import UserError

    try:
        data = load_ids(args.data)
    except UserError as e:  # e.g. --data ptb without PTB: never random ids in its place
        p.exit(2, f"ptb_speed: error: --data {args.data}: {e}\n")
    if args.all:
        presets = [n for n in args.presets.split(",") if n]
        runs = [(n, precision) for n in presets]
        if device.type == "cuda":
            runs += [(n, "bf16") for n in presets]
    else:
        runs = [(args.preset, precision)]
    rounds = args.rounds or (1 if device.type == "cuda" else 4)
    results = []
    for n, prec in runs:
        results.append(bench_preset(n, prec, device, steps, warmup, args.full, data, rounds))
        if len(runs) > 1:  # as it goes: a run stopped at its time limit keeps what it did
            print(json.dumps({"benchmark": "ptb_speed", **results[-1]}), flush=True)
    out = {"benchmark": "ptb_speed", **device_info(device)}
    if len(results) == 1:
        out.update(results[0])
    else:
        out["results"] = results
    print(json.dumps(out))


if __name__ == "__main__":
    main()
