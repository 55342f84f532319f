"""Encoder–decoder pieces against independent references: attention weights, the loss with
teacher forcing written out from the equations in numpy, one pass = step by step, padding,
greedy = beam search at k = 1, beam scores = the model's own log-probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unroll.models.attention import AdditiveAttention, DotAttention, make_attention, masked_softmax
from unroll.models.decoding import beam_search, greedy_decode
from unroll.models.seq2seq import ATTENTIONS, Encoder, build_seq2seq, sequence_loss

KINDS = ("bahdanau", "dot", "general")


pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


def _batch(seed=0, B=3, S=6, V=9, lengths=(6, 2, 4)):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (B, S), generator=g)
    lengths = torch.tensor(lengths)
    for b, n in enumerate(lengths.tolist()):
        src[b, n:] = 0
    return src, lengths


# --- attention --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_attention_weights_sum_to_one_over_valid_positions_and_are_zero_on_padding(kind):
    torch.manual_seed(0)
    attn = make_attention(kind, 8, 8)
    keys = torch.randn(3, 6, 8)
    mask = torch.arange(6)[None, :] < torch.tensor([6, 2, 4])[:, None]
    query = torch.randn(3, 5, 8)
    weights, context = attn(query, keys, mask)
    assert weights.shape == (3, 5, 6) and context.shape == (3, 5, 8)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
    assert torch.all(weights[~mask[:, None, :].expand_as(weights)] == 0)
    assert torch.all(weights[mask[:, None, :].expand_as(weights)] > 0)
    # Padding is never looked at: changing the keys there changes nothing.
    keys2 = keys.clone()
    keys2[~mask] = 100.0
    w2, c2 = attn(query, keys2, mask)
    torch.testing.assert_close(w2, weights)
    torch.testing.assert_close(c2, context)


def test_masked_softmax_by_hand():
    scores = torch.tensor([[[0.0, math.log(3.0), 5.0]]])  # the 5.0 is padding
    w = masked_softmax(scores, torch.tensor([[True, True, False]]))
    torch.testing.assert_close(w, torch.tensor([[[0.25, 0.75, 0.0]]]))


def test_dot_and_additive_scores_by_hand():
    keys = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # [1, S=2, H=2]
    query = torch.tensor([[[3.0, 1.0]]])  # scores 3 and 2
    mask = torch.tensor([[True, True]])
    w, c = DotAttention()(query, keys, mask)
    e = np.exp([3.0, 2.0])
    a = e / e.sum()
    torch.testing.assert_close(w[0, 0], torch.tensor(a, dtype=torch.float32))
    torch.testing.assert_close(c[0, 0], torch.tensor([a[0], 2 * a[1]], dtype=torch.float32))
    add = AdditiveAttention(2, 2, 1)
    with torch.no_grad():  # e_j = v tanh(W s + U h_j + b) with W = [1, 0], U = [0, 1], b = 0, v = 2
        add.W_a.weight.copy_(torch.tensor([[1.0, 0.0]]))
        add.U_a.weight.copy_(torch.tensor([[0.0, 1.0]]))
        add.U_a.bias.zero_()
        add.v_a.weight.fill_(2.0)
    w, _ = add(query, keys, mask)
    e = np.exp([2 * np.tanh(3.0 + 0.0), 2 * np.tanh(3.0 + 2.0)])
    torch.testing.assert_close(w[0, 0], torch.tensor(e / e.sum(), dtype=torch.float32))


# --- the loss with teacher forcing, from the equations -----------------------------------------


def _np(p):
    return p.detach().double().numpy()


def _reference_loss(model, src, lengths, tgt_in, tgt_out, kind):
    """The model's mean token cross-entropy written out from the equations (numpy, float64):
    a tanh RNN encoder, the decoder of `kind`, softmax over the target vocabulary."""
    enc, dec = model.encoder, model.decoder
    E_src, E_tgt = _np(enc.embedding.weight), _np(dec.embedding.weight)
    r = enc.rnn
    W_ih, W_hh, b_ih, b_hh = (
        _np(getattr(r, n)) for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    )
    d = dec.rnn
    V_ih, V_hh, c_ih, c_hh = (
        _np(getattr(d, n)) for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
    )
    W_o, b_o = _np(dec.out.weight), _np(dec.out.bias)
    total, count = 0.0, 0
    for b in range(src.shape[0]):
        h = np.zeros(W_hh.shape[0])
        states = []
        for j in range(int(lengths[b])):  # h_j = tanh(W_ih x_j + b_ih + W_hh h_{j-1} + b_hh)
            h = np.tanh(W_ih @ E_src[src[b, j]] + b_ih + W_hh @ h + b_hh)
            states.append(h)
        H = np.stack(states)  # [S_b, H]: padding never enters
        s = h  # the decoder starts from the encoder's final state
        for t in range(tgt_in.shape[1]):
            y_prev = E_tgt[tgt_in[b, t]]
            if kind == "bahdanau":
                A = dec.attention
                Wa, Ua, ub, va = (
                    _np(A.W_a.weight),
                    _np(A.U_a.weight),
                    _np(A.U_a.bias),
                    _np(A.v_a.weight)[0],
                )
                e = np.array([va @ np.tanh(Wa @ s + Ua @ hj + ub) for hj in H])  # query s_{t-1}
                a = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
                ctx = a @ H
                s = np.tanh(V_ih @ np.concatenate([y_prev, ctx]) + c_ih + V_hh @ s + c_hh)
            else:
                s = np.tanh(V_ih @ y_prev + c_ih + V_hh @ s + c_hh)
                if kind in ("dot", "general"):
                    M = np.eye(len(s)) if kind == "dot" else _np(dec.attention.W_a.weight)
                    e = np.array([s @ (M @ hj) for hj in H])  # query: the current output
                    a = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
                    ctx = a @ H
            if kind == "none":
                out = s
            else:
                W_c, b_c = _np(dec.combine.weight), _np(dec.combine.bias)
                out = np.tanh(W_c @ np.concatenate([ctx, s]) + b_c)
            logits = W_o @ out + b_o
            if tgt_out[b, t] == 0:  # padding is not scored
                continue
            logp = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
            total -= logp[tgt_out[b, t]]
            count += 1
    return total / count


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_teacher_forced_loss_equals_the_equations(kind):
    torch.manual_seed(1)
    model = build_seq2seq(9, 8, hidden_size=4, embedding_size=3, cell="rnn", attention=kind)
    src, lengths = _batch(V=9)
    tgt = torch.tensor([[1, 4, 5, 6, 2], [1, 7, 2, 0, 0], [1, 5, 5, 2, 0]])  # <s> .. </s> <pad>
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    logits, _ = model(src, lengths, tgt_in)
    loss = sequence_loss(logits, tgt_out).item()
    assert loss == pytest.approx(
        _reference_loss(model, src, lengths, tgt_in, tgt_out, kind), rel=1e-5
    )


def test_loss_of_a_model_that_knows_nothing_is_log_v():
    model = build_seq2seq(6, 7, hidden_size=2, embedding_size=2, cell="rnn", attention="general")
    for p in model.parameters():
        torch.nn.init.zeros_(p)  # all logits 0: every token has probability 1/7
    src, lengths = _batch(V=6)
    tgt = torch.tensor([[1, 4, 2], [1, 5, 2], [1, 2, 0]])
    loss = sequence_loss(model(src, lengths, tgt[:, :-1])[0], tgt[:, 1:])
    assert loss.item() == pytest.approx(math.log(7), rel=1e-6)


@pytest.mark.parametrize("kind", ATTENTIONS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_one_pass_equals_step_by_step(kind, cell):
    torch.manual_seed(2)
    model = build_seq2seq(
        9,
        8,
        hidden_size=6,
        embedding_size=4,
        cell=cell,
        attention=kind,
        num_layers=2,
        bidirectional=True,
    ).eval()
    src, lengths = _batch(V=9)
    tgt_in = torch.randint(3, 8, (3, 5))
    one, w1 = model(src, lengths, tgt_in)
    # teacher_forcing just below 1 with coins that never fail: the step-by-step path
    coins = torch.Generator().manual_seed(0)
    stepped, w2 = model(src, lengths, tgt_in, teacher_forcing=1.0 - 1e-12, generator=coins)
    torch.testing.assert_close(stepped, one, atol=1e-6, rtol=1e-5)
    if kind != "none":
        torch.testing.assert_close(w2, w1, atol=1e-6, rtol=1e-5)


def test_teacher_forcing_zero_feeds_the_models_own_guesses():
    torch.manual_seed(3)
    model = build_seq2seq(9, 8, hidden_size=6, embedding_size=4, attention="dot").eval()
    src, lengths = _batch(V=9)
    tgt_in = torch.full((3, 5), 1)
    tgt_in[:, 1:] = 7  # ignored after the first step
    logits, _ = model(src, lengths, tgt_in, teacher_forcing=0.0)
    # Feeding the argmaxes in with teacher forcing gives the same logits.
    fed = torch.cat([tgt_in[:, :1], logits.argmax(-1)[:, :-1]], 1)
    torch.testing.assert_close(model(src, lengths, fed)[0], logits, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_padding_changes_nothing(kind):
    torch.manual_seed(4)
    model = build_seq2seq(
        9, 8, hidden_size=6, embedding_size=4, attention=kind, bidirectional=True
    ).eval()
    src, lengths = _batch(V=9)
    tgt_in = torch.randint(3, 8, (3, 4))
    batched, _ = model(src, lengths, tgt_in)
    for b in range(3):
        n = int(lengths[b])
        alone, _ = model(src[b : b + 1, :n], lengths[b : b + 1], tgt_in[b : b + 1])
        torch.testing.assert_close(batched[b : b + 1], alone, atol=1e-5, rtol=1e-5)


def test_bidirectional_final_state_joins_each_directions_last_step():
    torch.manual_seed(5)
    enc = Encoder(9, 4, 6, bidirectional=True, cell="gru")
    src, lengths = _batch(V=9)
    states, final = enc(src, lengths)
    assert states.shape == (3, 6, 6) and final.shape == (1, 3, 6)
    for b, n in enumerate(lengths.tolist()):
        # forward direction: its state after the last real step; backward: after position 0
        torch.testing.assert_close(final[0, b, :3], states[b, n - 1, :3])
        torch.testing.assert_close(final[0, b, 3:], states[b, 0, 3:])
        assert torch.all(states[b, n:] == 0)


# --- decoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ATTENTIONS)
def test_beam_of_one_is_greedy(kind):
    torch.manual_seed(6)
    model = build_seq2seq(9, 8, hidden_size=8, embedding_size=4, attention=kind).eval()
    src, lengths = _batch(V=9, B=5, lengths=(6, 2, 4, 1, 3))
    greedy = greedy_decode(model, src, lengths, max_len=7)
    beam = beam_search(model, src, lengths, max_len=7, beam=1)
    for g, (b,) in zip(greedy, beam):
        assert b.tokens == g.tokens and b.finished == g.finished
        assert b.log_prob == pytest.approx(g.log_prob, abs=1e-5)
        assert b.score == pytest.approx(g.score, abs=1e-5)
        if kind != "none":
            torch.testing.assert_close(b.weights, g.weights)


@pytest.fixture(scope="module")
def trained():
    """A model that prefers some outputs over others: a few steps on fixed targets."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(7)
    model = build_seq2seq(9, 8, hidden_size=8, embedding_size=4, attention="general")
    opt = torch.optim.Adam(model.parameters(), 0.05)
    src, lengths = _batch(V=9)
    tgt = torch.tensor([[1, 4, 5, 2], [1, 6, 2, 0], [1, 7, 7, 2]])
    for _ in range(30):
        opt.zero_grad()
        sequence_loss(model(src, lengths, tgt[:, :-1])[0], tgt[:, 1:]).backward()
        opt.step()
    torch.set_num_threads(before)
    return model.eval(), src, lengths


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_returns_k_sorted_hypotheses_scored_by_the_model(trained, length_penalty):
    model, src, lengths = trained
    k = 4
    beams = beam_search(model, src, lengths, max_len=6, beam=k, length_penalty=length_penalty)
    for b, hyps in enumerate(beams):
        assert len(hyps) == k
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == k  # k different outputs
        for h in hyps:
            # Rescore with teacher forcing: the same log-probability.
            ids = [model.bos_id, *h.tokens] + ([model.eos_id] if h.finished else [])
            tgt = torch.tensor([ids])
            logp = torch.log_softmax(model(src[b : b + 1], lengths[b : b + 1], tgt[:, :-1])[0], -1)
            lp = logp[0].gather(1, tgt[0, 1:, None]).sum().item()
            assert h.log_prob == pytest.approx(lp, abs=1e-4)
            steps = len(ids) - 1
            assert h.score == pytest.approx(lp / steps**length_penalty, abs=1e-4)
            assert h.weights.shape == (steps, int(lengths[b]))


def test_beam_finds_at_least_the_greedy_log_probability_on_finished_outputs(trained):
    model, src, lengths = trained
    greedy = greedy_decode(model, src, lengths, max_len=6, length_penalty=0.0)
    beams = beam_search(model, src, lengths, max_len=6, beam=6, length_penalty=0.0)
    for g, hyps in zip(greedy, beams):
        if g.finished:  # the greedy output is one of the beam's candidates or beaten by one
            assert hyps[0].score >= g.score - 1e-5


def test_decoding_stops_at_max_len():
    torch.manual_seed(8)
    model = build_seq2seq(9, 8, hidden_size=8, embedding_size=4, attention="dot").eval()
    with torch.no_grad():
        model.decoder.out.bias[model.eos_id] = -100.0  # never ends by itself
    src, lengths = _batch(V=9)
    for h in greedy_decode(model, src, lengths, max_len=5):
        assert len(h.tokens) == 5 and not h.finished
    for hyps in beam_search(model, src, lengths, max_len=5, beam=3):
        assert all(len(h.tokens) == 5 and not h.finished for h in hyps)
    with torch.no_grad():
        model.decoder.out.bias[model.eos_id] = 100.0  # ends at once
    for h in greedy_decode(model, src, lengths, max_len=5):
        assert h.tokens == [] and h.finished
