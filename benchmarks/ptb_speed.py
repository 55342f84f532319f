"""Training speed on PTB: the plain PyTorch script a user would write vs unroll's trainer.

Both run in one process, on the same data and device, for the same preset. The anchor (a) is
written out below exactly as the plain Zaremba et al. (2014) script: ``nn.LSTM`` (cuDNN on a
GPU), SGD, gradient clipping by global norm, ``loss.item()`` every step. (b) is
``unroll.recipes.lm``'s trainer with its defaults for the device (on CUDA: whole-step CUDA
graphs; ``--precision bf16`` for bf16 autocast).

    python benchmarks/ptb_speed.py --preset ptb-small            # N timed steps each
    python benchmarks/ptb_speed.py --preset ptb-medium --full    # train both to the end
    python benchmarks/ptb_speed.py --all                         # every preset/precision

Prints one JSON line. Words/sec counts the B·T target tokens of each training step.
Data: the real PTB when found (``$UNROLL_DATA/ptb`` or the cache, no download); otherwise a
random id stream of PTB's size and vocabulary (speed does not depend on the words).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unroll.data.batching import batchify, bptt_batches, epoch_size  # noqa: E402
from unroll.presets import get_preset  # noqa: E402


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
        nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
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
    return cfg.learning_rate * cfg.lr_decay ** max(epoch - cfg.max_epoch, 0)
