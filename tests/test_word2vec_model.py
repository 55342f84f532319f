"""word2vec's update: the written-out gradients against autograd, a case by hand, and the
compiled CPU kernel against the reference (one example at a time, one thread)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from unroll.data.word_windows import Examples
from unroll.models.word2vec import (
    Word2Vec,
    _rows_and_labels,
    example_losses,
    hidden,
    loss,
    reference_update,
    scores,
    split_examples,
)
from unroll.nn.kernels import word2vec_cpu


@pytest.fixture(scope="module")
def compiled():
    if word2vec_cpu.kernel() is None:
        pytest.skip(f"no compiled kernel here: {word2vec_cpu.unavailable_reason()}")


def make_model(objective="neg", cbow_mean=True, V=7, D=5, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    log_kq = torch.randn(V, generator=g) if objective == "nce" else None
    m = Word2Vec(V, D, objective=objective, cbow_mean=cbow_mean, log_kq=log_kq, generator=g)
    # non-zero output vectors and biases, so every term of the gradients is exercised
    m.out_vectors.data.normal_(generator=g)
    m.out_bias.data.normal_(generator=g)
    return m.to(dtype)


def make_examples(cbow, N=30, V=7, K=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    targets = torch.randint(0, V, (N,), generator=g)
    negatives = torch.randint(0, V, (N, K), generator=g)
    negatives[0, 1] = targets[0]  # a noise word equal to its target: skipped
    negatives[1, :2] = negatives[1, 2]  # a repeated noise word
    if not cbow:
        return Examples(torch.randint(0, V, (N,), generator=g), None, targets, negatives)
    counts = torch.randint(1, 4, (N,), generator=g)
    counts[2] = 3
    offsets = torch.zeros(N + 1, dtype=torch.int64)
    offsets[1:] = counts.cumsum(0)
    inputs = torch.randint(0, V, (int(offsets[-1]),), generator=g)
    inputs[offsets[2] + 1] = inputs[offsets[2]]  # a context word twice in one window
    return Examples(inputs, offsets, targets, negatives)


CASES = [
    (cbow, objective, mean)
    for cbow in (False, True)
    for objective in ("neg", "nce")
    for mean in ((True, False) if cbow else (True,))
]


def _ids(case):
    cbow, objective, mean = case
    return f"{'cbow-' + ('mean' if mean else 'sum') if cbow else 'skipgram'}-{objective}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_written_out_gradients_are_autograds(case):
    cbow, objective, cbow_mean = case
    model = make_model(objective, cbow_mean, dtype=torch.float64)
    ex = make_examples(cbow)
    v, u, b = (p.detach().clone().requires_grad_() for p in model.parameters())
    total = loss(model, ex, v, u, b)
    gv, gu, gb = torch.autograd.grad(total, (v, u, b), allow_unused=True)
    gb = torch.zeros_like(b) if gb is None else gb  # negative sampling has no bias
    # dL/dh of each example, from autograd with h as the leaf
    h = hidden(model, ex).clone().requires_grad_()
    rows, _, live = _rows_and_labels(ex)
    (gh,) = torch.autograd.grad(
        example_losses(scores(model, h, rows, model.out_vectors[rows]), live).sum(), h
    )

    before = [p.detach().clone() for p in model.parameters()]
    lr = 0.1
    mean_loss = reference_update(model, ex, lr)
    dv, du, db = ((q - p) / lr for p, q in zip(model.parameters(), before))
    torch.testing.assert_close(mean_loss, total.detach() / len(ex))
    torch.testing.assert_close(du, gu)
    torch.testing.assert_close(db, gb)
    # every input row gets all of dL/dh (the C tool's rule) ...
    rule = torch.zeros_like(gv).index_add_(0, ex.inputs, gh.repeat_interleave(ex.input_counts(), 0))
    torch.testing.assert_close(dv, rule)
    if not (cbow and cbow_mean):
        torch.testing.assert_close(dv, gv)  # ... which is the gradient, but for the CBOW mean
    else:
        assert not torch.allclose(dv, gv)


def test_one_example_by_hand():
    """D = 1: v_c = 0.5, u_o = 2, u_n = -1; s_o = 1, s_n = -0.5."""
    model = Word2Vec(3, 1, generator=torch.Generator().manual_seed(0)).double()
    model.in_vectors.data[:, 0] = torch.tensor([0.5, 0.0, 0.0], dtype=torch.float64)
    model.out_vectors.data[:, 0] = torch.tensor([0.0, 2.0, -1.0], dtype=torch.float64)
    ex = Examples(torch.tensor([0]), None, torch.tensor([1]), torch.tensor([[2]]))
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    g_o, g_n = sig(1.0) - 1, sig(-0.5)
    lr = 0.5
    got = reference_update(model, ex, lr)
    assert got.item() == pytest.approx(-math.log(sig(1.0)) - math.log(sig(0.5)))
    assert model.out_vectors[1, 0].item() == pytest.approx(2.0 - lr * g_o * 0.5)
    assert model.out_vectors[2, 0].item() == pytest.approx(-1.0 - lr * g_n * 0.5)
    assert model.in_vectors[0, 0].item() == pytest.approx(0.5 - lr * (g_o * 2.0 + g_n * -1.0))


def test_a_noise_word_equal_to_the_target_is_skipped():
    model = make_model(dtype=torch.float64)
    t = torch.tensor([3])
    alone = copy.deepcopy(model)
    reference_update(model, Examples(torch.tensor([0]), None, t, torch.tensor([[3, 3]])), 0.1)
    reference_update(alone, Examples(torch.tensor([0]), None, t, torch.zeros(1, 0).long()), 0.1)
    for p, q in zip(model.parameters(), alone.parameters()):
        assert torch.equal(p, q)


def test_initialisation_is_gensims():
    m = Word2Vec(1000, 50, generator=torch.Generator().manual_seed(0))
    # U(-1/D, 1/D): standard deviation 1/(D·sqrt(3))
    assert m.in_vectors.abs().max() <= 1 / 50 and m.in_vectors.abs().max() > 0.99 / 50
    assert m.in_vectors.std().item() == pytest.approx(1 / (50 * 3**0.5), rel=0.01)
    assert not m.out_vectors.any() and not m.out_bias.any()
    assert not any(p.requires_grad for p in m.parameters())


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_kernel_is_the_reference_one_example_at_a_time(compiled, case, dtype):
    cbow, objective, cbow_mean = case
    model = make_model(objective, cbow_mean, dtype=dtype)
    reference = copy.deepcopy(model)
    ex = make_examples(cbow)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = model.update(ex, 0.3, impl="compiled")
    finally:
        torch.set_num_threads(threads)
    want = sum(reference_update(reference, part, 0.3) for part in split_examples(ex, 1))
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got.double(), (want / len(ex)).double(), **tol)
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, **tol)


def test_torch_path_applies_batches_of_torch_batch():
    model, reference = make_model(), make_model()
    ex = make_examples(True)
    got = model.update(ex, 0.2, impl="torch", torch_batch=7)
    parts = split_examples(ex, 7)
    assert [len(p) for p in parts] == [7, 7, 7, 7, 2]
    want = sum(reference_update(reference, p, 0.2) * len(p) for p in parts) / len(ex)
    torch.testing.assert_close(got.float(), want)
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)


def test_split_examples_keeps_each_examples_inputs():
    ex = make_examples(True, N=10)
    parts = split_examples(ex, 3)
    assert torch.equal(torch.cat([p.targets for p in parts]), ex.targets)
    got = [p.inputs[p.offsets[i] : p.offsets[i + 1]].tolist() for p in parts for i in range(len(p))]
    want = [ex.inputs[ex.offsets[i] : ex.offsets[i + 1]].tolist() for i in range(len(ex))]
    assert got == want


def test_bad_arguments():
    with pytest.raises(ValueError, match="objective"):
        Word2Vec(3, 2, objective="hs")
    with pytest.raises(ValueError, match="needs log_kq"):
        Word2Vec(3, 2, objective="nce")
    with pytest.raises(ValueError, match="impl"):
        make_model().update(make_examples(False), 0.1, impl="fast")


def test_threads_share_the_examples_once(compiled):
    """Examples touching disjoint rows commute, so two threads (each a contiguous share, no
    locks) must give exactly the one-thread update: every example applied once."""
    N = 1000
    model = Word2Vec(3 * N, 8, generator=torch.Generator().manual_seed(0))
    model.out_vectors.data.normal_(generator=torch.Generator().manual_seed(1))
    rows = torch.arange(N)
    ex = Examples(2 * rows, None, 2 * rows + 1, (2 * N + rows)[:, None])
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            m = copy.deepcopy(model)
            results.append((m.update(ex, 0.1, impl="compiled"), m))
    finally:
        torch.set_num_threads(threads)
    (l1, m1), (l2, m2) = results
    torch.testing.assert_close(l1, l2)
    for p, q in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(p, q)
    assert not torch.equal(m1.in_vectors, model.in_vectors)
