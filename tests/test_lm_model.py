"""The language model, its loss convention, and sampling."""

import math

import pytest
import torch

import unroll
from unroll.models.lm import LanguageModel, detach_state, lm_loss
from unroll.models.sampling import detokenize, sample


def tiny(V=11, H=8, L=2, **kw) -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(V, H, L, **kw)


def test_shapes_batch_first_and_state():
    m = tiny()
    x = torch.randint(0, 11, (3, 5))  # [B, T]
    logits, (h, c) = m(x)
    assert logits.shape == (3, 5, 11)
    assert h.shape == c.shape == (2, 3, 8)
    assert isinstance(m.lstm, unroll.LSTM)
    assert m.lstm.batch_first


def test_rejects_bad_input():
    m = tiny()
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        m(torch.zeros(3, 5))  # float ids
    with pytest.raises(ValueError, match=r"\[B, T\]"):
        m(torch.zeros(5, dtype=torch.long))


def test_all_parameters_uniform_in_init_scale():
    m = tiny(V=50, H=16, init_scale=0.05)
    for name, p in m.named_parameters():
        assert p.abs().max() <= 0.05, name
        assert p.abs().max() > 0.04, name  # really drawn over the range, not zeros
    assert m.decoder.bias.abs().max() > 0  # biases too, as the TF tutorial


def test_tie_weights():
    m = tiny(tie_weights=True)
    assert m.decoder.weight is m.embedding.weight
    assert len(list(m.parameters())) == len(list(tiny().parameters())) - 1
    with pytest.raises(ValueError, match="embedding_size == hidden_size"):
        LanguageModel(11, 8, 1, embedding_size=6, tie_weights=True)
    m = LanguageModel(11, 8, 1, embedding_size=6)
    assert m(torch.zeros(2, 3, dtype=torch.long))[0].shape == (2, 3, 11)


def test_state_carry_equals_one_long_pass():
    m = tiny().double()
    x = torch.randint(0, 11, (2, 8))
    full, s_full = m(x)
    a, s = m(x[:, :3])
    b, s = m(x[:, 3:], detach_state(s))
    torch.testing.assert_close(torch.cat([a, b], 1), full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s[0], s_full[0], rtol=1e-12, atol=1e-12)


def test_dropout_only_in_training():
    m = tiny(dropout=0.5)
    x = torch.randint(0, 11, (2, 6))
    m.train()
    assert not torch.equal(m(x)[0], m(x)[0])
    m.eval()
    assert torch.equal(m(x)[0], m(x)[0])
    assert m.lstm.dropout == 0.5


def test_loss_is_sum_over_time_of_batch_mean_cross_entropy():
    torch.manual_seed(1)
    B, T, V = 3, 4, 5
    logits = torch.randn(B, T, V, dtype=torch.float64)
    y = torch.randint(0, V, (B, T))
    want = 0.0
    for t in range(T):
        ce = []
        for b in range(B):
            row = logits[b, t].tolist()
            log_z = math.log(sum(math.exp(v) for v in row))
            ce.append(log_z - row[int(y[b, t])])
        want += sum(ce) / B  # batch mean, summed over time
    assert lm_loss(logits, y).item() == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match="targets"):
        lm_loss(logits, y[:, :2])


def test_uniform_model_has_perplexity_vocab_size():
    V, B, T = 7, 2, 3
    logits = torch.zeros(B, T, V)
    y = torch.randint(0, V, (B, T))
    # perplexity = exp(total NLL / tokens) = exp(loss * B / (B * T))
    assert math.exp(lm_loss(logits, y).item() * B / (B * T)) == pytest.approx(V)


def test_sampling_reproducible_with_seed():
    m = tiny()
    ctx = torch.tensor([1, 2, 3])
    a = sample(m, ctx, max_tokens=30, generator=torch.Generator().manual_seed(5))
    b = sample(m, ctx, max_tokens=30, generator=torch.Generator().manual_seed(5))
    c = sample(m, ctx, max_tokens=30, generator=torch.Generator().manual_seed(6))
    assert a == b and len(a) == 30
    assert a != c
    assert all(0 <= i < 11 for i in a)


def test_sampling_top_k_1_is_greedy_and_stop_token():
    m = tiny().eval()
    ctx = torch.tensor([4])
    got = sample(m, ctx, max_tokens=6, top_k=1, generator=torch.Generator().manual_seed(0))
    # greedy decoding by hand, feeding the whole sequence each time
    seq = [4]
    for _ in range(6):
        logits, _ = m(torch.tensor([seq]))
        seq.append(int(logits[0, -1].argmax()))
    assert got == seq[1:]
    stop = got[0]
    assert sample(m, ctx, max_tokens=6, top_k=1, stop_id=stop, stop_count=1) == [stop]
    with pytest.raises(ValueError, match="temperature"):
        sample(m, ctx, max_tokens=1, temperature=0)


def test_detokenize():
    assert detokenize(["a", "b", "<eos>", "c"]) == "a b\nc"
    assert detokenize(["a", "<eos>"]) == "a\n"
    assert detokenize(list("hi_there") + ["<eos>"], "char") == "hi there\n"
