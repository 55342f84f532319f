"""The language model's captured steps (``graphs="auto"`` on CUDA, ``"on"`` anywhere): train
and evaluation steps with the same signatures and results as the plain ones (`steps`,
`evaluate`). On CUDA the step is captured once and replayed; on the CPU the same bookkeeping
runs around an eager call (`unroll.engine.cuda_graphs.GraphedStep`), so the CPU tests cover
every line of this file.

Buffers (all on the device, allocated once, refilled in place before each replay)::

    x, y      [B, T]     long    the batch: copied from the staged X[i], Y[i]
    h, c      [L, B, H]  float   the carried LSTM state: read by the forward, overwritten with
                                 the final state at the end of the step (truncated BPTT)
    loss      []         float   this step's loss (sum over T of the batch-mean CE)
    lr        []         float   the learning rate, refilled when the schedule changes it

The captured training step is `unroll.models.lm.loss_and_grads` (forward under bf16 autocast if
asked, loss, backward, clipping by global norm) — the same call as `make_train_step` — and the
plain-SGD update `sgd_update_`, so after k steps the parameters agree with the plain path up
to float rounding (the test states its tolerance). Dropout draws from the CUDA generator, which
advances at every replay: masks are fresh each step.

Under torchrun (``graphs=on``) the forward runs through DDP, built on a side stream and warmed
up 11 times before capture as PyTorch's CUDA-graph notes ask: the gradient all-reduce is then
part of each rank's graph (not yet run on a multi-GPU machine; the CPU tests run it eagerly).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from unroll.engine import distributed
from unroll.engine.cuda_graphs import GraphedStep, sgd_update_
from unroll.models.lm import LanguageModel, State, lm_loss, loss_and_grads

Autocast = Callable[[], contextlib.AbstractContextManager]


class GraphedTrainStep:
    """``step(x [B, T], y [B, T], state) -> (loss, next state)``, replaying a CUDA graph.

    A `state` other than the one this step last returned (a fresh zero state at an epoch start)
    is copied into the static state buffers first. The learning rate is read from the
    optimizer's first param group at every call (a Python float: no sync) and copied to the
    device only when it changed.
    """

    def __init__(
        self,
        model: LanguageModel,
        optimizer: torch.optim.Optimizer,
        clip: float,
        batch_size: int,
        num_steps: int,
        autocast: Autocast,
        device: torch.device,
    ):
        self.optimizer = optimizer
        params = [p for p in model.parameters() if p.requires_grad]
        B, T = batch_size, num_steps
        self.x = torch.zeros(B, T, dtype=torch.long, device=device)
        self.y = torch.zeros(B, T, dtype=torch.long, device=device)
        self.state = tuple(s.clone() for s in model.init_state(B, device))  # (h, c): [L, B, H]
        self.loss = torch.zeros((), device=device)
        self.lr = torch.zeros((), device=device)  # 0 while warming up: parameters unchanged
        self._lr_value: float | None = None
        several = distributed.world().size > 1
        net = distributed.ddp(model, capture=True)  # the model itself in a single process

        def body() -> None:
            loss, new = loss_and_grads(net, params, self.x, self.y, self.state, clip, autocast)
            sgd_update_(params, self.lr)
            self.loss.copy_(loss)
            for s, n in zip(self.state, new):
                s.copy_(n.detach())

        warmup = distributed.DDP_CAPTURE_WARMUP if several else 3
        self.graph = GraphedStep(body, device=device, warmup=warmup, parameters=params)
        self._returned: State | None = None

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, state: State
    ) -> tuple[torch.Tensor, State]:
        lr = float(self.optimizer.param_groups[0]["lr"])
        if lr != self._lr_value:
            self.lr.fill_(lr)
            self._lr_value = lr
        if state is not self._returned:
            for s, n in zip(self.state, state):
                s.copy_(n)
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        self._returned = self.state
        return self.loss, self._returned


@torch.no_grad()
def graphed_eval_nll(
    model: LanguageModel,
    data: torch.Tensor,
    chunk: int,
    state: State,
    autocast: Autocast,
) -> tuple[torch.Tensor, State, int]:
    """Sum of ``lm_loss * B`` over the full `chunk`-column windows of `data` [B, N+1], replayed
    from one captured forward; returns (nll, state, columns done). The caller runs the rest."""
    B = data.shape[0]
    full = (data.shape[1] - 1) // chunk
    x = data[:, :chunk].clone()
    y = data[:, 1 : chunk + 1].clone()
    carried = tuple(s.clone() for s in state)  # (h, c), or (h,) for a min-RNN
    nll = torch.zeros((), device=data.device, dtype=torch.float64)

    def body() -> None:
        with autocast():
            logits, new = model(x, carried)  # [B, chunk, V]
        nll.add_(lm_loss(logits, y) * B)
        for s, n in zip(carried, new):
            s.copy_(n)

    graph = GraphedStep(body, device=data.device, warmup=2)
    nll.zero_()  # undo the warm-up's effects (on CUDA; on the CPU nothing ran yet)
    for s, n in zip(carried, state):
        s.copy_(n)
    for i in range(full):
        x.copy_(data[:, i * chunk : (i + 1) * chunk])
        y.copy_(data[:, i * chunk + 1 : (i + 1) * chunk + 1])
        graph.replay()
    return nll, carried, full * chunk
