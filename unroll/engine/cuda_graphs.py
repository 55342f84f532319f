"""Whole-step CUDA graphs: capture a training (or evaluation) step once, replay it every batch.

At the PTB shapes most of a step's time is kernel-launch overhead and host synchronisation,
not arithmetic. Capturing forward + loss + backward + clipping + optimizer update into one
CUDA graph turns ~hundreds of launches into one replay.

What a captured step may do (and what `GraphedStep` relies on):
- read its inputs from *static* tensors that the caller refills in place before each replay
  (``static_x.copy_(X[i])``), and write its outputs (loss sums, carried state) into static
  tensors in place;
- never synchronise with the host (no ``.item()``, no Python branching on tensor values);
- take the learning rate from a device tensor (`sgd_update_`), so a schedule can change it
  between replays without re-capturing;
- draw random numbers (dropout) from the default CUDA generator: PyTorch registers the graph
  with the generator, and every replay advances its offset, so masks are fresh each replay.

Warm-up before capture runs the step a few times on a side stream (cuDNN/cuBLAS pick their
algorithms and allocate workspaces). The caller makes warm-up harmless — learning rate 0 and
accumulators/state reset afterwards — so the captured run matches the plain run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def sgd_update_(params: Sequence[torch.Tensor], lr: torch.Tensor) -> None:
    """Plain SGD, ``p <- p - lr * grad``, with `lr` a 0-d device tensor: capturable.

    (torch.optim.SGD with a tensor lr calls ``.item()`` outside torch.compile, which would bake
    the first value into a graph.)
    """
    with torch.no_grad():
        params = [p for p in params if p.grad is not None]
        grads = [p.grad for p in params]
        torch._foreach_add_(params, torch._foreach_mul(grads, -lr))


class GraphedStep:
    """``step()`` captured into a CUDA graph on CUDA; ``replay()`` runs it again.

    On any other device nothing is captured and ``replay()`` calls ``step()`` eagerly: the
    caller's bookkeeping around it (static buffers refilled in place, the learning rate in a
    device tensor, outputs read from static tensors) is the same Python path on every device,
    so the CPU test suite runs the code that CUDA runs; only the capture differs.

    ``step`` must follow the rules in the module docstring. On CUDA, ``warmup`` eager calls run
    first on a side stream (make them harmless, see above); parameters' ``.grad`` are set to
    None before capture so that backward allocates them from the graph's memory pool and every
    replay writes (not accumulates) them.
    """

    def __init__(
        self,
        step: Callable[[], None],
        *,
        device: torch.device | str = "cuda",
        warmup: int = 3,
        parameters: Sequence[torch.nn.Parameter] = (),
        pool: object | None = None,
    ):
        self.step = step
        self.parameters = list(parameters)
        self.captured = torch.device(device).type == "cuda"
        self.graph = None
        if not self.captured:
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                for p in parameters:
                    p.grad = None
                step()
        torch.cuda.current_stream().wait_stream(side)
        for p in parameters:
            p.grad = None
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            step()

    def pool(self) -> object | None:
        """The graph's memory pool, to share with a second graph (e.g. evaluation)."""
        return self.graph.pool() if self.graph is not None else None

    def replay(self) -> None:
        if self.graph is not None:
            self.graph.replay()
            return
        # What a replay of the capture does: backward writes fresh gradients (the capture saw
        # them as None), it does not add to the last step's.
        for p in self.parameters:
            p.grad = None
        self.step()
