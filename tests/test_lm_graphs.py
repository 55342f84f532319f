"""The language model's captured-step path (``graphs``), run on the CPU.

On CUDA the train and evaluation steps are captured into graphs and replayed; on the CPU the
same Python path runs with an eager call where the replay would be (`GraphedStep`), so these
tests exercise every line of `unroll.recipes.lm.graphs` and the bookkeeping around it: static
buffers, the carried state reset per epoch, the learning rate refilled, the evaluation's
remainder. The tests marked `cuda` run the real capture and skip on the CPU.
"""

import dataclasses

import pytest
import torch

from unroll.engine.cuda_graphs import GraphedStep, sgd_update_
from unroll.engine.loop import set_lr
from unroll.models.lm import lm_loss
from unroll.recipes.lm import LMConfig, build_model, evaluate_ids, train
from unroll.recipes.lm.graphs import GraphedTrainStep, graphed_eval_nll
from unroll.recipes.lm.steps import build_train_step, uses_graphs

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _tiny(dropout=0.0, precision="fp32", device="cpu", graphs="auto"):
    return LMConfig(
        vocab_size=50,
        hidden_size=16,
        num_layers=2,
        num_steps=5,
        batch_size=4,
        dropout=dropout,
        precision=precision,
        lr=0.5,
        clip=1.0,
        device=device,
        graphs=graphs,
    )


def _batches(n, cfg, device):
    g = torch.Generator().manual_seed(1)
    X = torch.randint(cfg.vocab_size, (n, cfg.batch_size, cfg.num_steps), generator=g)
    Y = torch.randint(cfg.vocab_size, (n, cfg.batch_size, cfg.num_steps), generator=g)
    return X.to(device), Y.to(device)


def _epochs(model, step, X, Y, lrs, opt):
    """Epochs over X, Y with the state carried and zeroed per epoch (the recipe's bookkeeping);
    returns each epoch's device-side loss sum."""
    sums = []
    for lr in lrs:
        set_lr(opt, lr)
        state = model.init_state(X.shape[1], X.device)
        total = torch.zeros((), dtype=torch.float64, device=X.device)
        for i in range(X.shape[0]):
            loss, state = step(X[i], Y[i], state)
            total += loss
        sums.append(float(total))
    return sums


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


def test_which_path_runs():
    cfg = LMConfig()
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not uses_graphs(cfg, cpu) and uses_graphs(cfg, cuda)  # auto: CUDA only
    assert uses_graphs(dataclasses.replace(cfg, graphs="on"), cpu)
    assert not uses_graphs(dataclasses.replace(cfg, graphs="off"), cuda)
    model = build_model(_tiny(), 50)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert isinstance(build_train_step(_tiny(graphs="on"), model, opt, cpu), GraphedTrainStep)
    assert not isinstance(build_train_step(_tiny(), model, opt, cpu), GraphedTrainStep)


def test_graphed_step_on_cpu_replays_eagerly():
    calls = []
    g = GraphedStep(lambda: calls.append(1), device="cpu", warmup=3)
    assert calls == [] and not g.captured  # nothing runs until replayed: no warm-up to undo
    g.replay()
    g.replay()
    assert calls == [1, 1]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_captured_step_gives_the_plain_parameters_after_k_steps(device):
    device = torch.device(device)
    cfg = _tiny(device=device.type)
    X, Y = _batches(6, cfg, device)
    runs = []
    for graphs in ("on", "off"):
        torch.manual_seed(0)
        model = build_model(cfg, cfg.vocab_size).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
        step = build_train_step(dataclasses.replace(cfg, graphs=graphs), model, opt, device)
        sums = _epochs(model, step, X, Y, (0.5, 0.25), opt)  # the lr changes between epochs
        runs.append((sums, [p.detach().clone() for p in model.parameters()]))
    (s_graph, p_graph), (s_plain, p_plain) = runs
    # The same operations; the update is p + g*(-lr) instead of p - lr*g: rounding only.
    torch.testing.assert_close(s_graph, s_plain, rtol=1e-5, atol=1e-5)
    for a, b in zip(p_graph, p_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_captured_step_matches_one_sgd_step_by_hand():
    cfg = _tiny(graphs="on")
    cpu = torch.device("cpu")
    model = build_model(cfg, cfg.vocab_size)
    ref = build_model(cfg, cfg.vocab_size)
    ref.load_state_dict(model.state_dict())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = build_train_step(cfg, model, opt, cpu)
    X, Y = _batches(1, cfg, cpu)
    loss, _ = step(X[0], Y[0], model.init_state(cfg.batch_size))
    # forward, the tutorial's loss, backward, clip, p -= lr * g
    logits, _ = ref(X[0], ref.init_state(cfg.batch_size))
    ref_loss = lm_loss(logits, Y[0])
    ref_loss.backward()
    torch.nn.utils.clip_grad_norm_(ref.parameters(), cfg.clip)
    with torch.no_grad():
        for p in ref.parameters():
            p -= 0.1 * p.grad
    torch.testing.assert_close(loss, ref_loss.detach())
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


# The evaluation's captured chunks and its remainder. `covered` targets per row are read in
# chunks of `chunk`; the graphed part covers the full chunks, the plain forward the rest.
# n = 1003 ids, batch 2: rows of 501, covered = 500 targets (num_steps 1).
@pytest.mark.parametrize(
    "chunk, why",
    [
        (50, "no remainder: the chunks cover every target (the first GPU run crashed here)"),
        (60, "a remainder of 20 targets after 8 chunks"),
        (250, "exactly two chunks"),
        (400, "one chunk: not graphed at all"),
        (1, "chunks of one step"),
    ],
)
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_graphed_evaluation_equals_eager(chunk, why, device):
    cfg = _tiny(device=device)
    torch.manual_seed(0)
    model = build_model(cfg, cfg.vocab_size).to(device)
    ids = torch.randint(cfg.vocab_size, (1003,), generator=torch.Generator().manual_seed(2))
    eager = evaluate_ids(model, ids, 2, 1, chunk_steps=chunk, graphs=False)
    graphed = evaluate_ids(model, ids, 2, 1, chunk_steps=chunk, graphs=True)
    assert graphed[1] == eager[1] == 1000, why
    assert graphed[0] == pytest.approx(eager[0], rel=1e-6), why


def test_graphed_eval_nll_covers_full_chunks_only():
    cfg = _tiny()
    torch.manual_seed(0)
    model = build_model(cfg, cfg.vocab_size).eval()
    data = torch.randint(cfg.vocab_size, (2, 131))  # [B, N + 1]: 3 full chunks of 40 + 10
    nll, (h, c), done = graphed_eval_nll(
        model, data, 40, model.init_state(2), lambda: torch.autocast("cpu", enabled=False)
    )
    assert done == 120
    with torch.no_grad():
        logits, (h_ref, c_ref) = model(data[:, :120], model.init_state(2))
        ref = lm_loss(logits, data[:, 1:121]) * 2
    torch.testing.assert_close(nll.float(), ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(h, h_ref, rtol=1e-5, atol=1e-6)


def _write_corpus(directory):
    directory.mkdir(parents=True, exist_ok=True)
    text = "the cat sat on the mat\na dog ran to the tree\nthe cat ran\n" * 12
    for name in ("train.txt", "valid.txt", "test.txt"):
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def test_training_with_graphs_on_equals_off_and_resumes(tmp_path):
    """The whole recipe on the captured-step path (eager on the CPU): training, validation and
    the batch-1 test evaluation give the plain path's numbers; a resumed run the full one's."""
    data = _write_corpus(tmp_path / "data")
    base = LMConfig(
        data=str(data), hidden_size=8, num_layers=1, num_steps=4, batch_size=2, epochs=2,
        lr_decay_after=1, device="cpu", threads=1, eval_num_steps=7, tensorboard=False,
    )  # fmt: skip
    on = train(dataclasses.replace(base, graphs="on"), out=tmp_path / "on", quiet=True)
    off = train(dataclasses.replace(base, graphs="off"), out=tmp_path / "off", quiet=True)
    assert on.test_ppl == pytest.approx(off.test_ppl, rel=1e-5)
    assert on.valid_ppl == pytest.approx(off.valid_ppl, rel=1e-5)
    part = dataclasses.replace(base, graphs="on", epochs=1)
    train(part, out=tmp_path / "part", quiet=True)
    resumed = train({"epochs": 2}, resume=tmp_path / "part", quiet=True)
    assert resumed.test_ppl == pytest.approx(on.test_ppl, rel=1e-6)


@needs_cuda
def test_dropout_masks_differ_between_replays():
    device = torch.device("cuda")
    cfg = _tiny(dropout=0.5, device="cuda")
    X, Y = _batches(1, cfg, device)
    model = build_model(cfg, cfg.vocab_size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # parameters never change
    step = build_train_step(cfg, model, opt, device)
    state = model.init_state(cfg.batch_size, device)
    losses = {float(step(X[0], Y[0], state)[0]) for _ in range(4)}  # same input, zero state
    assert len(losses) == 4, "dropout masks repeat between replays"


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda)])
def test_bf16_step_runs_and_learns(device):
    device = torch.device(device)
    cfg = _tiny(precision="bf16", device=device.type, graphs="on")
    X, Y = _batches(1, cfg, device)
    X, Y = X.expand(20, -1, -1).contiguous(), Y.expand(20, -1, -1).contiguous()
    model = build_model(cfg, cfg.vocab_size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    step = build_train_step(cfg, model, opt, device)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # fp32 weights
    first = float(step(X[0], Y[0], model.init_state(cfg.batch_size, device))[0])
    for i in range(1, 20):
        loss, _ = step(X[i], Y[i], model.init_state(cfg.batch_size, device))
    assert float(loss) < first  # memorising one batch
