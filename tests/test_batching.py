"""BPTT batching against a hand-computed stream and against TensorFlow's ptb_producer formula."""

import random

import pytest
import torch

from unroll.data.batching import batchify, bptt_batches, bptt_tensors, epoch_size
from unroll.errors import UserError

IDS = torch.arange(25)  # 0..24, B = 2 -> L = 12, token 24 dropped; T = 3 -> 3 batches


def test_batchify_by_hand():
    expected = torch.tensor(
        [
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23],
        ]
    )
    assert torch.equal(batchify(IDS, 2), expected)
    assert torch.equal(batchify(IDS, 5), IDS.view(5, 5))
    assert torch.equal(batchify(IDS, 1), IDS.view(1, 25))


def test_bptt_batches_by_hand():
    batches = list(bptt_batches(batchify(IDS, 2), 3))
    expected = [
        ([[0, 1, 2], [12, 13, 14]], [[1, 2, 3], [13, 14, 15]]),
        ([[3, 4, 5], [15, 16, 17]], [[4, 5, 6], [16, 17, 18]]),
        ([[6, 7, 8], [18, 19, 20]], [[7, 8, 9], [19, 20, 21]]),
    ]
    assert len(batches) == 3 == epoch_size(25, 2, 3)
    for (x, y), (ex, ey) in zip(batches, expected, strict=True):
        assert torch.equal(x, torch.tensor(ex)) and torch.equal(y, torch.tensor(ey))


def test_remainder_batch_by_hand():
    batches = list(bptt_batches(batchify(IDS, 2), 3, include_remainder=True))
    assert len(batches) == 4
    x, y = batches[-1]
    assert torch.equal(x, torch.tensor([[9, 10], [21, 22]]))
    assert torch.equal(y, torch.tensor([[10, 11], [22, 23]]))
    # no remainder when (L - 1) is a multiple of T: L = 12, T = 11
    assert len(list(bptt_batches(batchify(IDS, 2), 11, include_remainder=True))) == 1


def test_bptt_tensors_by_hand():
    X, Y = bptt_tensors(batchify(IDS, 2), 3)
    assert X.shape == Y.shape == (3, 2, 3) and X.is_contiguous() and Y.is_contiguous()
    assert torch.equal(X[1], torch.tensor([[3, 4, 5], [15, 16, 17]]))
    assert torch.equal(Y[2], torch.tensor([[7, 8, 9], [19, 20, 21]]))


def test_epoch_size_formula():
    assert epoch_size(929589, 20, 20) == 2323  # ptb-small: (46479 - 1) // 20
    assert epoch_size(929589, 20, 35) == 1327
    assert epoch_size(8, 2, 3) == 1  # L = 4: exactly T + 1 columns
    with pytest.raises(UserError) as e:
        epoch_size(7, 2, 3)
    msg = str(e.value)
    assert "batch_size=2" in msg and "num_steps=3" in msg and "\n" not in msg


@pytest.mark.parametrize("seed", range(20))
def test_random_sizes_against_ptb_producer(seed):
    rng = random.Random(seed)
    B, T = rng.randint(1, 7), rng.randint(1, 9)
    N = rng.randint(B * (T + 1), 400)
    L = N // B
    ids = torch.arange(N)  # ids equal positions, so every entry can be checked by formula
    data = batchify(ids, B)
    n = ((N // B) - 1) // T
    assert data.shape == (B, L) and epoch_size(N, B, T) == n
    batches = list(bptt_batches(data, T))
    assert len(batches) == n
    b = torch.arange(B).view(B, 1)
    t = torch.arange(T).view(1, T)
    for i, (x, y) in enumerate(batches):
        assert torch.equal(x, b * L + i * T + t)  # x[b, t] = ids[b*L + i*T + t]
        assert torch.equal(y, x + 1)
        # views of the data, not copies
        assert x.untyped_storage().data_ptr() == ids.untyped_storage().data_ptr()
    X, Y = bptt_tensors(data, T)
    assert X.shape == Y.shape == (n, B, T)
    assert torch.equal(X, torch.stack([x for x, _ in batches]))
    assert torch.equal(Y, torch.stack([y for _, y in batches]))
    # the same layout for arbitrary ids: X[i, b, t] = ids[b*L + i*T + t], Y = the next id
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed))
    X, Y = bptt_tensors(batchify(perm, B), T)
    pos = torch.arange(n).view(n, 1, 1) * T + b.view(1, B, 1) * L + t.view(1, 1, T)
    assert torch.equal(X, perm[pos]) and torch.equal(Y, perm[pos + 1])
    # with the remainder every token but each row's first is a target exactly once
    ys = [y for _, y in bptt_batches(data, T, include_remainder=True)]
    assert torch.equal(torch.cat(ys, dim=1), data[:, 1:])


def test_bad_arguments_are_value_errors():
    with pytest.raises(ValueError, match="1-D torch.long"):
        batchify(torch.arange(10.0), 2)
    with pytest.raises(ValueError, match="2-D torch.long"):
        list(bptt_batches(torch.arange(10), 2))
    with pytest.raises(ValueError, match="batch_size"):
        batchify(IDS, 0)
    with pytest.raises(UserError, match="too little data"):
        bptt_tensors(batchify(IDS, 2), 12)
