"""The CUDA-graph fast path of the language model (issue: fast training on one GPU).

The captured-step tests need CUDA and skip with a reason on the CPU; the capturable SGD update
they rely on is checked everywhere.
"""

import dataclasses

import pytest
import torch

from unroll.models.lm import lm_loss
from unroll.recipes.lm import (
    LMConfig,
    build_model,
    build_train_step,
    evaluate_ids,
    set_lr,
    train_epoch,
    uses_graphs,
)
from unroll.recipes.lm_graphs import GraphedTrainStep
from unroll.engine.cuda_graphs import sgd_update_

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_sgd_update_matches_torch_sgd():
    torch.manual_seed(0)
    a = torch.nn.Linear(5, 3)
    b = torch.nn.Linear(5, 3)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 5)
    for m in (a, b):
        m(x).square().sum().backward()
    torch.optim.SGD(a.parameters(), lr=0.3).step()
    sgd_update_(list(b.parameters()), torch.tensor(0.3))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)


def test_graphs_only_on_cuda_with_fast_auto():
    cfg = LMConfig()
    assert not uses_graphs(cfg, torch.device("cpu"))
    assert uses_graphs(cfg, torch.device("cuda"))
    assert not uses_graphs(dataclasses.replace(cfg, fast="off"), torch.device("cuda"))


def _tiny(keep_prob=1.0, precision="fp32"):
    return LMConfig(
        vocab_size=50,
        hidden_size=16,
        num_layers=2,
        num_steps=5,
        batch_size=4,
        keep_prob=keep_prob,
        precision=precision,
        learning_rate=0.5,
        max_grad_norm=1.0,
        device="cuda",
    )


def _batches(n, cfg, device):
    g = torch.Generator().manual_seed(1)
    X = torch.randint(cfg.vocab_size, (n, cfg.batch_size, cfg.num_steps), generator=g)
    Y = torch.randint(cfg.vocab_size, (n, cfg.batch_size, cfg.num_steps), generator=g)
    return X.to(device), Y.to(device)


@needs_cuda
def test_captured_step_gives_the_plain_parameters_after_k_steps():
    device = torch.device("cuda")
    cfg = _tiny()
    X, Y = _batches(12, cfg, device)
    results = []
    for fast in ("auto", "off"):
        torch.manual_seed(0)
        model = build_model(cfg, cfg.vocab_size).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
        step = build_train_step(dataclasses.replace(cfg, fast=fast), model, opt, device)
        losses = []
        for lr in (0.5, 0.25):  # the lr changes between epochs
            set_lr(opt, lr)
            losses.append(float(train_epoch(model, step, X, Y, X.shape[0])))
        results.append((losses, [p.detach().clone() for p in model.parameters()]))
    (l_graph, p_graph), (l_plain, p_plain) = results
    # fp32, same operations; the update is p + g*(-lr) instead of p - lr*g: rounding only.
    torch.testing.assert_close(l_graph, l_plain, rtol=1e-5, atol=1e-5)
    for a, b in zip(p_graph, p_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@needs_cuda
def test_dropout_masks_differ_between_replays():
    device = torch.device("cuda")
    cfg = _tiny(keep_prob=0.5)
    X, Y = _batches(1, cfg, device)
    model = build_model(cfg, cfg.vocab_size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # parameters never change
    step = build_train_step(cfg, model, opt, device)
    state = model.init_state(cfg.batch_size, device)
    losses = {float(step(X[0], Y[0], state)[0]) for _ in range(4)}  # same input, zero state
    assert len(losses) == 4, "dropout masks repeat between replays"


@needs_cuda
def test_graphed_evaluation_equals_eager():
    device = torch.device("cuda")
    cfg = _tiny()
    model = build_model(cfg, cfg.vocab_size).to(device)
    ids = torch.randint(cfg.vocab_size, (1003,))
    eager = evaluate_ids(model, ids, 2, 1, chunk_steps=50, graphs=False)
    graphed = evaluate_ids(model, ids, 2, 1, chunk_steps=50, graphs=True)
    assert graphed[1] == eager[1]
    assert graphed[0] == pytest.approx(eager[0], rel=1e-5)


@needs_cuda
def test_bf16_step_runs_and_learns():
    device = torch.device("cuda")
    cfg = _tiny(precision="bf16")
    X, Y = _batches(1, cfg, device)
    X, Y = X.expand(20, -1, -1).contiguous(), Y.expand(20, -1, -1).contiguous()
    model = build_model(cfg, cfg.vocab_size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
    step = build_train_step(cfg, model, opt, device)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 weights
    state = model.init_state(cfg.batch_size, device)
    first = float(step(X[0], Y[0], state)[0])
    for i in range(1, 20):
        loss, state = step(X[i], Y[i], model.init_state(cfg.batch_size, device))
    assert float(loss) < first  # memorising one batch


def test_plain_step_is_the_cpu_path_and_is_one_sgd_step():
    cfg = dataclasses.replace(_tiny(), device="cpu")
    cpu = torch.device("cpu")
    model = build_model(cfg, cfg.vocab_size)
    ref = build_model(cfg, cfg.vocab_size)
    ref.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = build_train_step(cfg, model, opt, cpu)
    assert not isinstance(step, GraphedTrainStep)
    X, Y = _batches(1, cfg, cpu)
    loss, _ = step(X[0], Y[0], model.init_state(cfg.batch_size))
    # the same step by hand: forward, TF loss, backward, clip, p -= lr * g
    logits, _ = ref(X[0], ref.init_state(cfg.batch_size))
    ref_loss = lm_loss(logits, Y[0])
    ref_loss.backward()
    torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.max_grad_norm)
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    torch.testing.assert_close(loss, ref_loss.detach())
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b)


class EagerGraph:
    """Stands in for `GraphedStep` on the CPU, to check the fast path's bookkeeping (static
    buffers, state carried and reset, lr refilled, warm-up leaving no trace) without CUDA:
    warm-up calls run as in `GraphedStep`; "capture" only records the step (a real capture
    does not execute it either); each replay runs it, with grads reset as a graph's backward
    writes them fresh."""

    def __init__(self, step, *, warmup=3, parameters=(), pool=None):
        self.step, self.parameters = step, list(parameters)
        for _ in range(warmup):
            self._clear()
            step()
        self._clear()

    def _clear(self):
        for p in self.parameters:
            p.grad = None

    def replay(self):
        self._clear()
        self.step()


def test_fast_path_bookkeeping_matches_the_plain_step(monkeypatch):
    import unroll.recipes.lm_graphs as lm_graphs

    monkeypatch.setattr(lm_graphs, "GraphedStep", EagerGraph)
    cpu = torch.device("cpu")
    cfg = dataclasses.replace(_tiny(), device="cpu")
    X, Y = _batches(6, cfg, cpu)
    runs = []
    for graphed in (True, False):
        torch.manual_seed(0)
        model = build_model(cfg, cfg.vocab_size)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.learning_rate)
        if graphed:
            step = GraphedTrainStep(
                model,
                opt,
                cfg.max_grad_norm,
                cfg.batch_size,
                cfg.num_steps,
                lambda: torch.autocast("cpu", enabled=False),
                cpu,
            )
        else:
            step = build_train_step(cfg, model, opt, cpu)
        sums = []
        for lr in (0.5, 0.25):  # two epochs: state reset to zero, lr changed in between
            set_lr(opt, lr)
            sums.append(float(train_epoch(model, step, X, Y, X.shape[0])))
        runs.append((sums, [p.detach().clone() for p in model.parameters()]))
    (s_graph, p_graph), (s_plain, p_plain) = runs
    torch.testing.assert_close(s_graph, s_plain, rtol=1e-6, atol=1e-6)
    for a, b in zip(p_graph, p_plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_graphed_evaluation_bookkeeping_matches_eager(monkeypatch):
    import unroll.recipes.lm_graphs as lm_graphs

    monkeypatch.setattr(lm_graphs, "GraphedStep", EagerGraph)
    cfg = dataclasses.replace(_tiny(), device="cpu")
    torch.manual_seed(0)
    model = build_model(cfg, cfg.vocab_size).eval()
    data = torch.randint(cfg.vocab_size, (2, 131))  # [B, N + 1]: 3 full chunks of 40 + 10
    state = model.init_state(2)
    nll, (h, c), done = lm_graphs.graphed_eval_nll(
        model, data, 40, state, lambda: torch.autocast("cpu", enabled=False)
    )
    assert done == 120
    with torch.no_grad():
        logits, (h_ref, c_ref) = model(data[:, :120], model.init_state(2))
        ref = lm_loss(logits, data[:, 1:121]) * 2
    torch.testing.assert_close(nll.float(), ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-6)
