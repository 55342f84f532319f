"""The public API re-exported from `unroll` (what the README shows)."""

import torch

import unroll


def test_every_exported_name_resolves():
    for name in unroll.__all__:
        assert getattr(unroll, name) is not None, name
    assert unroll.lm.train.__module__ == "unroll.recipes.lm.train"
    assert unroll.classify.train.__module__ == "unroll.recipes.classify.train"
    assert unroll.forecast.predict.__module__ == "unroll.recipes.forecast.predict"
    assert unroll.sincos.train.__module__ == "unroll.recipes.sincos"


def test_readme_layer_example():
    torch.manual_seed(0)
    lstm = unroll.LSTM(16, 32, num_layers=2, dropout=0.2, batch_first=True, peephole=True)
    lengths = torch.tensor([5, 1, 3])
    y, (h, c) = lstm(torch.randn(3, 5, 16), lengths=lengths)
    assert y.shape == (3, 5, 32) and h.shape == c.shape == (2, 3, 32)
    assert torch.all(y[1, 1:] == 0)  # padded steps give zero output
    torch.testing.assert_close(h[-1, 2], y[2, 2])  # the final state is at each last step
