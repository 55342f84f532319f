"""The language model's training step, and the one switch between it and the captured step.

A step is ``step(x [B, T], y [B, T], state) -> (loss, next state)``: forward, loss, backward,
clipping and the optimizer update on fixed-shape device tensors, with no host synchronisation
and no Python branching on tensor values — the unit a CUDA graph captures. `loss` is a 0-d
device tensor (the loop adds it to a device-side sum) and the returned state is detached
(truncated BPTT).

Under torchrun the forward runs through DDP (`unroll.engine.distributed.ddp`): the backward
averages the gradients over the ranks before clipping, so every rank clips and updates the
same gradient — that of one process with all the ranks' rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from unroll.engine import distributed
from unroll.engine.device import autocast_factory
from unroll.models.lm import LanguageModel, State, detach_state, loss_and_grads
from unroll.recipes.lm.config import LMConfig
from unroll.recipes.lm.graphs import GraphedTrainStep

StepFn = Callable[[torch.Tensor, torch.Tensor, State], tuple[torch.Tensor, State]]


def uses_graphs(config: LMConfig, device: torch.device) -> bool:
    """Whether the captured-step path runs: ``graphs="on"`` anywhere (on the CPU nothing is
    captured and the same bookkeeping runs eagerly), ``"auto"`` on CUDA only."""
    if config.weight_decay or config.nonmono:  # the captured step's update is plain SGD
        return False
    return config.graphs == "on" or (config.graphs == "auto" and device.type == "cuda")


def captures_training(config: LMConfig, device: torch.device) -> bool:
    """Whether the training step is the captured one: as `uses_graphs`, except that ``auto``
    leaves a torchrun job's step eager — a captured DDP step (its all-reduce inside the graph)
    has not been run on a multi-GPU machine yet, so it is ``graphs=on`` only."""
    if distributed.world().size > 1:
        return config.graphs == "on"
    return uses_graphs(config, device)


def make_train_step(
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    clip: float,
    device: torch.device,
    precision: str = "fp32",
) -> StepFn:
    """The plain step (see the module docstring), with `optimizer`'s own update."""
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = autocast_factory(device, precision)
    net = distributed.ddp(model)  # the model itself in a single process

    def step(x: torch.Tensor, y: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        optimizer.zero_grad(set_to_none=True)
        loss, state = loss_and_grads(net, params, x, y, state, clip, autocast)
        optimizer.step()
        return loss, detach_state(state)

    return step


def build_train_step(
    config: LMConfig,
    model: LanguageModel,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> StepFn:
    """The one switch between the plain step and the captured one (`captures_training`);
    both have the same signature and give the same parameters (tests hold them equal)."""
    if captures_training(config, device):
        return GraphedTrainStep(
            model,
            optimizer,
            config.clip,
            config.batch_size,
            config.num_steps,
            autocast_factory(device, config.precision),
            device,
        )
    return make_train_step(model, optimizer, config.clip, device, config.precision)
