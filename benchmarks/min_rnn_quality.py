"""Quality side by side: LSTM, GRU, minGRU, minLSTM at the same parameter count and the same
CPU-time budget, one thread.

Tasks (``--task``):
  char     character-level language modelling on PTB's text as characters (the Mikolov split,
           ``$UNROLL_DATA/ptb``): Embedding(V, 32) -> 2 recurrent layers -> Linear(H, V),
           truncated BPTT over windows of 128 characters with the state carried, B = 32.
           Score: bits per character on the first ``--eval-chars`` characters of the valid
           split (state carried through, B = 1).
  pixels   Fashion-MNIST pixel by pixel (T = 784, one input per step): 2 recurrent layers ->
           Linear(H, 10) on the last state, B = 64. Score: accuracy on the first
           ``--eval-images`` test images.

Every model has (within 1%) the parameter count of the LSTM with ``--lstm-hidden`` units: H is
solved per model (a min-RNN has no W_hh, so it gets more units). Each trains with Adam
(lr ``--lr``), gradients clipped to norm 1, until ``--budget`` seconds of this thread's CPU
time have passed (CPU time, not wall time: the machine is shared; evaluation not counted),
then is scored. Denormals are flushed to zero for every model (`torch.set_flush_denormal`):
gradients decaying over hundreds of steps go denormal, and without it a T = 784 LSTM step
runs 5× slower on x86 (measured: 2.7 s vs 0.5 s), which would hand the min-RNNs (whose
compiled loop flushes them itself) an unfair lead. Prints one JSON line per model::

    python benchmarks/min_rnn_quality.py --task char --budget 120
    python benchmarks/min_rnn_quality.py --task pixels --budget 120
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
import torch.nn.functional as F
from torch import nn

import unroll
from unroll.data.text import load_corpus

LAYERS = {
    "lstm": unroll.LSTM,
    "gru": unroll.GRU,
    "mingru": unroll.MinGRU,
    "minlstm": unroll.MinLSTM,
}


class Net(nn.Module):
    """(embedding or raw input) -> recurrent layers -> linear head."""

    def __init__(self, cell: str, hidden: int, layers: int, inputs: int, outputs: int, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, inputs) if vocab else None
        self.rnn = LAYERS[cell](inputs, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, outputs)
        self.cell = cell

    def forward(self, x, state=None):
        x = self.embed(x) if self.embed is not None else x
        y, state = self.rnn(x, state)
        return y, state


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def matched_hidden(cell, target, layers, inputs, outputs, vocab) -> int:
    """The H whose model has the parameter count closest to `target`."""
    best = min(
        range(8, 2048),
        key=lambda h: abs(_params(cell, h, layers, inputs, outputs, vocab) - target),
    )
    return best


def _params(cell, H, layers, C, out, vocab) -> int:
    gates = {"lstm": 4, "gru": 3, "mingru": 2, "minlstm": 3}[cell]
    rec = 0
    for k in range(layers):
        c = C if k == 0 else H
        rec += gates * H * (c + 1) + (gates * H * (H + 1) if cell in ("lstm", "gru") else 0)
    return rec + H * out + out + (vocab * C if vocab else 0)


def detach(state):
    return tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()


def run_char(args, cell, H):
    corpus = load_corpus(os.path.join(os.environ.get("UNROLL_DATA", "data"), "ptb"), "char")
    V = len(corpus.vocab)
    torch.manual_seed(args.seed)
    model = Net(cell, H, 2, 32, V, V)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    B, T = 32, 128
    train = torch.as_tensor(corpus.train)
    n = (len(train) - 1) // B
    data = train[: n * B + 1]
    xs = data[:-1].view(B, n)  # B parallel streams
    ys = data[1:].view(B, n)
    state, pos, steps, chars = None, 0, 0, 0
    start = time.thread_time()
    while time.thread_time() - start < args.budget:
        if pos + T > n:
            pos, state = 0, None
        x, y = xs[:, pos : pos + T], ys[:, pos : pos + T]
        out, state = model(x, state)
        loss = F.cross_entropy(model.head(out).reshape(-1, V), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        state = detach(state)
        pos, steps, chars = pos + T, steps + 1, chars + B * T
    seconds = time.thread_time() - start
    model.eval()
    valid = torch.as_tensor(corpus.valid[: args.eval_chars + 1])
    nll, state = 0.0, None
    with torch.no_grad():
        for i in range(0, len(valid) - 1, 1000):
            y = valid[None, i + 1 : i + 1001]
            x = valid[None, i : i + y.shape[1]]
            out, state = model(x, state)
            nll += F.cross_entropy(model.head(out)[0], y[0], reduction="sum").item()
    bpc = nll / (len(valid) - 1) / math.log(2)
    return {
        "bpc": round(bpc, 4),
        "train_steps": steps,
        "train_chars": chars,
        "seconds": round(seconds, 1),
    }, model


def run_pixels(args, cell, H):
    from unroll.data.images import load_images

    data = load_images("fashion-mnist", progress=False)
    torch.manual_seed(args.seed)
    model = Net(cell, H, 2, 1, 10, None)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    images = data.train_images.float().div(255).reshape(len(data.train_images), -1, 1)
    labels = data.train_labels.long()
    B, steps, seen = 64, 0, 0
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(images), generator=g)
    start = time.thread_time()
    while time.thread_time() - start < args.budget:
        idx = order[(steps * B) % len(order) : (steps * B) % len(order) + B]
        _, h = model(images[idx])
        h = h[0] if isinstance(h, tuple) else h
        loss = F.cross_entropy(model.head(h[-1]), labels[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        steps, seen = steps + 1, seen + len(idx)
    seconds = time.thread_time() - start
    model.eval()
    test = data.test_images[: args.eval_images].float().div(255).reshape(-1, 784, 1)
    tl = data.test_labels[: args.eval_images].long()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(test), 500):
            _, h = model(test[i : i + 500])
            h = h[0] if isinstance(h, tuple) else h
            correct += (model.head(h[-1]).argmax(1) == tl[i : i + 500]).sum().item()
    acc = correct / len(test)
    return {
        "accuracy": round(acc, 4),
        "train_steps": steps,
        "train_images": seen,
        "seconds": round(seconds, 1),
    }, model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", choices=["char", "pixels"], required=True)
    p.add_argument("--models", nargs="+", default=["lstm", "gru", "mingru", "minlstm"])
    p.add_argument("--budget", type=float, default=120.0, help="CPU seconds of training per model")
    p.add_argument("--lstm-hidden", type=int, default=None, help="default: 256 char, 64 pixels")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-chars", type=int, default=100_000)
    p.add_argument("--eval-images", type=int, default=2000)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    if args.task == "char":
        V = len(
            load_corpus(os.path.join(os.environ.get("UNROLL_DATA", "data"), "ptb"), "char").vocab
        )
        shape = (2, 32, V, V)
        lstm_h = args.lstm_hidden or 256
    else:
        shape = (2, 1, 10, None)
        lstm_h = args.lstm_hidden or 64
    target = _params("lstm", lstm_h, *shape)
    for cell in args.models:
        H = lstm_h if cell == "lstm" else matched_hidden(cell, target, *shape)
        runner = run_char if args.task == "char" else run_pixels
        result, model = runner(args, cell, H)
        assert count(model) == _params(cell, H, *shape), (count(model), _params(cell, H, *shape))
        print(json.dumps({
            "task": args.task, "cell": cell, "hidden": H, "parameters": count(model),
            "budget_cpu_s": args.budget, "lr": args.lr, **result,
            "cpu": "Intel(R) Xeon(R) Processor", "threads": torch.get_num_threads(),
            "load_average": [round(v, 2) for v in os.getloadavg()], "flush_denormal": True,
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
