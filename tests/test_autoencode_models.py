"""The autoencoders' shapes, sizes and equations, and the reconstruction scores by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unroll.metrics.reconstruction import (
    anomaly_threshold,
    bce_per_pixel,
    binary_entropy,
    mean_psnr,
    mse_per_example,
    psnr,
    worst,
)
from unroll.models.autoencoders import (
    ConvAutoencoder,
    DenoisingAutoencoder,
    DenseAutoencoder,
    EncoderClassifier,
    SequenceAutoencoder,
    gaussian_noise,
    masking_noise,
    rows_classifier_from_encoder,
)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# -- scores by hand ---------------------------------------------------------------------------


def test_bce_per_pixel_by_hand():
    # logit 0 is p = 1/2: -ln(1/2) = ln 2 whatever the target
    assert bce_per_pixel(torch.zeros(1, 2, 2), torch.rand(1, 2, 2)).item() == pytest.approx(
        math.log(2)
    )
    # p = sigmoid(ln 3) = 3/4: target 1 costs -ln(3/4), target 0 costs -ln(1/4), 0.5 the mean
    logits = torch.full((1, 1, 3), math.log(3.0))
    target = torch.tensor([[[1.0, 0.0, 0.5]]])
    by_hand = (-math.log(0.75) - math.log(0.25) + 0.5 * (-math.log(0.75) - math.log(0.25))) / 3
    assert bce_per_pixel(logits, target).item() == pytest.approx(by_hand)
    # one value per example
    assert bce_per_pixel(torch.zeros(4, 3, 3), torch.zeros(4, 3, 3)).shape == (4,)


def test_binary_entropy_is_the_floor_of_bce():
    x = torch.tensor([[0.0, 1.0, 0.5, 0.25]])
    h = (0 + 0 + math.log(2) + -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))) / 4
    assert binary_entropy(x).item() == pytest.approx(h)
    # reached when p = x (logit = log(x / (1 - x))) and nowhere lower
    target = torch.tensor([[0.1, 0.5, 0.8]])
    at_target = bce_per_pixel(torch.logit(target), target).item()
    assert at_target == pytest.approx(binary_entropy(target).item(), rel=1e-6)
    assert bce_per_pixel(torch.logit(target) + 0.3, target).item() > at_target


def test_mse_and_psnr_by_hand():
    target = torch.rand(2, 4, 4)
    recon = target + 0.1  # MSE 0.01 everywhere: PSNR = 10 log10(1 / 0.01) = 20 dB
    torch.testing.assert_close(mse_per_example(recon, target), torch.full((2,), 0.01))
    torch.testing.assert_close(psnr(recon, target), torch.full((2,), 20.0))
    # MSE 0.25 with a peak of 2: 10 log10(4 / 0.25) = 10 log10(16)
    assert psnr(target + 0.5, target, max_value=2.0)[0].item() == pytest.approx(10 * math.log10(16))
    assert mean_psnr(torch.tensor([10.0, 20.0, math.inf])) == 15.0


def test_lengths_count_only_the_valid_steps():
    target = torch.zeros(2, 3, 2)
    recon = torch.ones(2, 3, 2)
    recon[0, 2] = 5.0  # a padded step of sequence 0 (length 2): must not count
    got = mse_per_example(recon, target, torch.tensor([2, 3]))
    torch.testing.assert_close(got, torch.tensor([1.0, 1.0]))
    # without lengths the padded step would count: (4 * 1 + 2 * 25) / 6
    assert mse_per_example(recon, target)[0].item() == pytest.approx(9.0)


def test_anomaly_threshold_and_worst():
    errors = np.arange(1, 101, dtype=float)  # 1..100
    # "higher" quantile: position 0.95 * 99 = 94.05 rounds up to index 95, the value 96;
    # 4 of the 100 errors (97..100) lie above it, at most 5%.
    assert anomaly_threshold(errors, 0.95) == 96.0
    assert anomaly_threshold(errors, 1.0) == 100.0
    with pytest.raises(ValueError):
        anomaly_threshold(np.array([]), 0.9)
    assert worst(torch.tensor([0.1, 0.5, 0.3, 0.5]), 3) == [1, 3, 2]


# -- dense and convolutional ------------------------------------------------------------------


def test_conv_autoencoder_is_the_keras_example_size():
    model = ConvAutoencoder(28, 28)
    # conv 3x3 1->32, conv 32->32, two transposed 32->32, conv 32->1 (weights + biases): the
    # Keras example's summary says 28,353.
    by_hand = (9 * 32 + 32) + 3 * (9 * 32 * 32 + 32) + (9 * 32 + 1)
    assert _params(model) == by_hand == 28_353
    x = torch.rand(3, 28, 28)
    assert model.encode(x).shape == (3, 32 * 7 * 7)
    assert model(x).shape == (3, 28, 28)
    assert ConvAutoencoder(8, 12, channels=4)(torch.rand(2, 8, 12)).shape == (2, 8, 12)
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvAutoencoder(7, 8)


def test_dense_autoencoder_layers():
    model = DenseAutoencoder((28, 28), (128, 64), 32)
    sizes = [784, 128, 64, 32, 64, 128, 784]
    assert _params(model) == sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    x = torch.rand(5, 28, 28)
    assert model.encode(x).shape == (5, 32)
    assert model(x).shape == (5, 28, 28)
    # no hidden layer: input -> code -> input
    bare = DenseAutoencoder((4, 4), (), 3)
    assert _params(bare) == (16 * 3 + 3) + (3 * 16 + 16)


# -- denoising --------------------------------------------------------------------------------


def test_gaussian_noise_is_clipped_noise():
    x = torch.rand(4, 5, 5)
    noisy = gaussian_noise(x, 0.4, generator=torch.Generator().manual_seed(3))
    expected = (x + 0.4 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(
        0, 1
    )
    torch.testing.assert_close(noisy, expected)
    unclipped = gaussian_noise(x, 10.0, clip=None, generator=torch.Generator().manual_seed(0))
    assert unclipped.min() < 0 and unclipped.max() > 1


def test_masking_noise_zeros_a_fixed_number_per_example():
    x = torch.rand(6, 4, 5) + 1.0  # no zeros to start with
    masked = masking_noise(x, 0.3, torch.Generator().manual_seed(0))
    zeros = (masked == 0).flatten(1).sum(dim=1)
    assert zeros.tolist() == [6] * 6  # round(0.3 * 20)
    kept = masked != 0
    torch.testing.assert_close(masked[kept], x[kept])  # the rest untouched


def test_denoiser_corrupts_only_while_training():
    torch.manual_seed(0)
    base = DenseAutoencoder((4, 4), (8,), 3)
    model = DenoisingAutoencoder(base, "masking", 0.5)
    x = torch.rand(3, 4, 4) + 0.1
    model.eval()
    torch.testing.assert_close(model(x), base(x))
    model.train()
    torch.manual_seed(1)
    noisy_out = model(x)
    torch.manual_seed(1)
    torch.testing.assert_close(noisy_out, base(masking_noise(x, 0.5)))
    torch.testing.assert_close(model.encode(x), base.encode(x))


# -- the sequence autoencoder -----------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_sequence_autoencoder_is_encoder_state_then_teacher_forced_decoder(cell):
    torch.manual_seed(0)
    model = SequenceAutoencoder(3, 5, num_layers=2, cell=cell)
    x = torch.randn(4, 6, 3)
    # by hand: the encoder's final state starts the decoder, which reads [0, x0 .. x4]
    _, state = model.encoder(x)
    shifted = torch.cat([torch.zeros(4, 1, 3), x[:, :-1]], dim=1)
    y, _ = model.decoder(shifted, state)
    torch.testing.assert_close(model(x), model.out(y))
    h = state[0] if cell == "lstm" else state
    torch.testing.assert_close(model.encode(x), h[-1])
    # free running: each step is fed the previous output, here through a sigmoid
    st, inp, outs = state, torch.zeros(4, 1, 3), []
    for _ in range(6):
        yt, st = model.decoder(inp, st)
        outs.append(model.out(yt))
        inp = torch.sigmoid(outs[-1])
    torch.testing.assert_close(model.reconstruct(x, feedback=torch.sigmoid), torch.cat(outs, 1))


def test_unconditioned_decoder_sees_zeros():
    torch.manual_seed(0)
    model = SequenceAutoencoder(2, 4, conditional=False)
    x = torch.randn(3, 5, 2)
    _, state = model.encoder(x)
    y, _ = model.decoder(torch.zeros_like(x), state)
    torch.testing.assert_close(model(x), model.out(y))
    torch.testing.assert_close(model.reconstruct(x), model(x))


def test_sequence_autoencoder_variable_lengths():
    torch.manual_seed(0)
    model = SequenceAutoencoder(2, 4)
    x = torch.randn(3, 7, 2)
    lengths = torch.tensor([7, 4, 2])
    padded = x.clone()
    padded[1, 4:] = 99.0  # whatever sits in the padding must not matter
    padded[2, 2:] = -99.0
    out = model(padded, lengths)
    codes = model.encode(padded, lengths)
    rebuilt = model.reconstruct(padded, lengths)
    for b, n in enumerate(lengths.tolist()):
        alone = x[b : b + 1, :n]
        torch.testing.assert_close(out[b : b + 1, :n], model(alone))
        torch.testing.assert_close(codes[b : b + 1], model.encode(alone))
        torch.testing.assert_close(rebuilt[b : b + 1, :n], model.reconstruct(alone))
        assert torch.count_nonzero(out[b, n:]) == 0 and torch.count_nonzero(rebuilt[b, n:]) == 0


def test_row_classifier_starts_from_the_encoder():
    torch.manual_seed(0)
    ae = SequenceAutoencoder(6, 5, num_layers=2)
    clf = rows_classifier_from_encoder(ae, 4, 6, 3)
    images = torch.rand(2, 4, 6)  # rows: T = 4 steps of 6 pixels
    torch.testing.assert_close(clf(images), clf.head(ae.encode(images)))
    for name, p in ae.encoder.named_parameters():
        assert torch.equal(p, dict(clf.rnn.named_parameters())[name])


def test_encoder_classifier_trains_the_encoder():
    torch.manual_seed(0)
    ae = DenseAutoencoder((4, 4), (8,), 3)
    clf = EncoderClassifier(ae, 3, 5)
    logits = clf(torch.rand(2, 4, 4))
    assert logits.shape == (2, 5)
    logits.sum().backward()
    assert ae.encoder[0].weight.grad is not None and ae.decoder[0].weight.grad is None
