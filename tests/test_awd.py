"""AWD-LSTM's parts (unroll.models.awd): each regulariser against its definition on tiny
inputs, the model's state layout, tying, weight drop, NT-ASGD's trigger and averaging."""

import math

import pytest
import torch

import unroll
from unroll.models.awd import (
    AWDLanguageModel,
    averaged_weights,
    awd_penalty,
    embedding_dropout,
    locked_dropout,
    nt_asgd_should_switch,
)
from unroll.models.lm import detach_state, lm_loss


def test_embedding_dropout_drops_whole_words():
    """A dropped word is zero wherever it occurs; the others are scaled by 1/(1 − p)."""
    torch.manual_seed(0)
    w = torch.randn(50, 6)
    d = embedding_dropout(w, 0.3, training=True)
    zero_rows = (d == 0).all(1)
    assert 0 < zero_rows.sum() < 50
    torch.testing.assert_close(d[~zero_rows], w[~zero_rows] / 0.7)
    assert embedding_dropout(w, 0.3, training=False) is w


def test_locked_dropout_is_one_mask_per_sequence():
    """The same units are dropped at every time step of a sequence, different per sequence."""
    torch.manual_seed(0)
    x = torch.ones(4, 7, 10)
    y = locked_dropout(x, 0.5, training=True)
    assert torch.equal(y, y[:, :1].expand_as(y))  # constant over time
    assert not torch.equal(y[0], y[1])
    assert set(y.unique().tolist()) <= {0.0, 2.0}
    assert locked_dropout(x, 0.5, training=False) is x


def test_ar_tar_hand_computed():
    raw = torch.tensor([[[1.0, 2.0], [3.0, 5.0]]])  # [B=1, T=2, E=2]
    dropped = torch.tensor([[[0.0, 4.0], [6.0, 0.0]]])
    # AR = α mean(dropped²) = α (16 + 36) / 4; TAR = β mean((h_t − h_{t+1})²) = β (4 + 9) / 2
    torch.testing.assert_close(awd_penalty(raw, dropped, 2.0, 0.0), torch.tensor(26.0))
    torch.testing.assert_close(awd_penalty(raw, dropped, 0.0, 1.0), torch.tensor(6.5))
    torch.testing.assert_close(awd_penalty(raw, dropped, 2.0, 1.0), torch.tensor(32.5))


def tiny(**kw):
    torch.manual_seed(0)
    return AWDLanguageModel(30, embedding_size=6, hidden_size=8, num_layers=3, **kw)


def test_model_shapes_state_tying_and_weight_drop():
    model = tiny()
    assert model.decoder.weight is model.embedding.weight  # tied
    assert [layer.hidden_size for layer in model.layers] == [8, 8, 6]
    assert all(layer.weight_drop == 0.5 for layer in model.layers)
    x = torch.randint(0, 30, (3, 5))
    state = model.init_state(3)
    assert state[0].shape == (1, 3, 22)  # the layers' states side by side
    logits, new = model(x, state)
    assert logits.shape == (3, 5, 30) and new[0].shape == (1, 3, 22)
    new = detach_state(new)  # the LM recipe's carry works on it
    # The state carries: two windows equal one window of twice the length (eval: no noise).
    model.eval()
    x2 = torch.randint(0, 30, (3, 10))
    full, _ = model(x2)
    first, s = model(x2[:, :5])
    second, _ = model(x2[:, 5:], s)
    torch.testing.assert_close(torch.cat((first, second), 1), full)


def test_eval_is_deterministic_and_training_is_not():
    model = tiny()
    x = torch.randint(0, 30, (2, 6))
    model.eval()
    torch.testing.assert_close(model(x)[0], model(x)[0], rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])


def test_untied_and_bad_values():
    model = tiny(tie_weights=False)
    assert model.decoder.weight is not model.embedding.weight
    assert [layer.hidden_size for layer in model.layers] == [8, 8, 8]
    with pytest.raises(ValueError, match="dropout_input in"):
        tiny(dropout_input=1.0)


def test_nt_asgd_trigger_hand_computed():
    """Switch when the newest loss is worse than the best of those more than n checks ago."""
    assert not nt_asgd_should_switch([5.0, 4.0, 3.0], 5)  # too few checks
    assert not nt_asgd_should_switch([5, 4, 3, 2, 1, 0.5], 5)  # still improving
    assert nt_asgd_should_switch([5, 1, 3, 2, 2, 2, 1.5], 5)  # 1.5 > min([5, 1])
    assert not nt_asgd_should_switch([5, 1, 3, 2, 2, 2, 0.9], 5)


def test_averaged_weights_swap_in_asgd_averages_and_restore():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.ASGD(model.parameters(), lr=0.1, t0=0, lambd=0.0)
    for _ in range(4):
        opt.zero_grad()
        model(torch.randn(5, 3)).square().sum().backward()
        opt.step()
    current = model.weight.detach().clone()
    ax = opt.state[model.weight]["ax"]
    assert not torch.allclose(ax, current)
    with averaged_weights(model, opt):
        torch.testing.assert_close(model.weight, ax)
    torch.testing.assert_close(model.weight, current)
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    with averaged_weights(model, sgd):
        torch.testing.assert_close(model.weight, current)


def test_tiny_awd_model_learns_with_every_regulariser():
    """A repeating sequence: with every regulariser on (embedding, locked and weight dropout,
    AR/TAR), SGD brings the training loss well down; every layer's W_hh gets gradient."""
    torch.manual_seed(0)
    model = AWDLanguageModel(
        30,
        embedding_size=8,
        hidden_size=16,
        num_layers=3,
        dropout=0.1,
        dropout_between=0.1,
        dropout_input=0.1,
        dropout_embedding=0.05,
        weight_drop=0.2,
    )
    opt = torch.optim.SGD(model.parameters(), lr=10.0)  # AWD-LSTM: high lr, clip 0.25
    seq = torch.arange(40).view(2, 20) % 7  # period 7: ln 7 ≈ 1.95 without memory
    x, y = seq[:, :-1], seq[:, 1:]
    losses = []
    for _ in range(150):
        opt.zero_grad()
        logits, _, raw, dropped = model.forward_with_outputs(x)
        loss = lm_loss(logits, y) / x.shape[1] + awd_penalty(raw, dropped, 2.0, 1.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 1.0 < losses[0]  # below what a unigram model gets
    assert all(layer.weight_hh_l0.grad.abs().sum() > 0 for layer in model.layers)
    assert isinstance(model.layers[0], unroll.LSTM)


# --- the recipe: unroll lm with model="awd" ------------------------------------------------------
def awd_tiny(**kw):
    from test_lm_recipe import tiny_config

    base = dict(
        model="awd",
        hidden_size=12,
        embedding_size=8,
        num_layers=3,
        tie_weights=True,
        dropout=0.3,
        dropout_between=0.2,
        dropout_input=0.3,
        dropout_embedding=0.1,
        weight_drop=0.4,
        ar=2.0,
        tar=1.0,
        weight_decay=1e-4,
        lr=2.0,
        clip=1.0,
        max_steps_per_epoch=12,
    )
    base.update(kw)
    return tiny_config(**base)


def test_awd_recipe_trains_and_resumes_exactly(tmp_path):
    """unroll lm with model=awd: it runs end to end, and an interrupted run resumed from its
    checkpoint ends with exactly the parameters of the uninterrupted one — every mask
    (embedding, locked, weight drop) drawn after the resume is the one the straight run drew
    (the engine checkpoints the RNG state)."""
    import dataclasses

    from test_lm_recipe import write_corpus

    from unroll.engine import load_checkpoint
    from unroll.recipes.lm import train

    data = str(write_corpus(tmp_path / "corpus"))
    config = awd_tiny()
    straight = train(config, data=data, out=tmp_path / "a", quiet=True)
    train(dataclasses.replace(config, epochs=1), data=data, out=tmp_path / "b", quiet=True)
    resumed = train(config, resume=tmp_path / "b", quiet=True)
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert "layers.2.weight_hh_l0" in a and a["layers.2.weight_hh_l0"].shape == (32, 8)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed["test_ppl"] == straight["test_ppl"]
    assert math.isfinite(straight["test_ppl"]) and straight["test_ppl"] < 60  # vocab is 22


def test_awd_penalty_enters_the_gradient_not_the_reported_loss():
    """loss_and_grads differentiates CE + T·(AR + TAR) but returns the CE (perplexity)."""
    from contextlib import nullcontext

    from unroll.models.lm import loss_and_grads

    x = torch.randint(0, 30, (2, 6))
    y = torch.randint(0, 30, (2, 6))
    out = {}
    for ar in (0.0, 5.0):
        model = tiny(ar=ar, tar=ar)
        for layer in model.layers:
            layer.weight_drop = 0.0
        model.dropout = model.dropout_between = model.dropout_input = 0.0
        model.dropout_embedding = 0.0  # no noise: the same forward for both
        params = list(model.parameters())
        state = model.init_state(2)
        loss, _ = loss_and_grads(model, params, x, y, state, 1e9, nullcontext)
        out[ar] = (loss, model.layers[0].weight_hh_l0.grad.clone())
    torch.testing.assert_close(out[0.0][0], out[5.0][0])  # the same CE
    assert not torch.allclose(out[0.0][1], out[5.0][1])  # a different gradient


def test_awd_presets_sizes():
    """awd-ptb is AWD-LSTM's 24M-parameter PTB model; awd-small has ptb-small's count."""
    from unroll.recipes.lm.config import get_preset
    from unroll.recipes.lm.evaluate import build_model

    counts = {}
    for name in ("ptb-small", "awd-small", "awd-ptb"):
        config = get_preset(name)
        config.validate()
        counts[name] = sum(p.numel() for p in build_model(config, 10000).parameters())
    assert counts["ptb-small"] == 4_653_200
    assert abs(counts["awd-small"] - counts["ptb-small"]) / counts["ptb-small"] < 0.001
    assert 24_000_000 < counts["awd-ptb"] < 24_300_000  # the paper: 24M


def test_awd_fields_refused_on_the_zaremba_model():
    from unroll.errors import UserError
    from unroll.recipes.lm.config import LMConfig

    with pytest.raises(UserError, match="weight_drop=0.5: expected 0 unless model=awd"):
        LMConfig(weight_drop=0.5).validate()
    with pytest.raises(UserError, match="dropout_input=1.0: expected a number in"):
        LMConfig(model="awd", dropout_input=1.0).validate()


def test_ntasgd_is_sgd_until_switched_then_averages():
    """Before the switch: torch.optim.SGD(lr, weight_decay) bit for bit. After: the same
    update, and ax = the mean of the iterates since the switch; the switch and the averages
    survive a state_dict round trip."""
    from unroll.models.awd import NTASGD

    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    nt = NTASGD(a.parameters(), lr=0.1, weight_decay=0.01)
    sgd = torch.optim.SGD(b.parameters(), lr=0.1, weight_decay=0.01)
    xs = [torch.randn(4, 3) for _ in range(7)]

    def step(model, opt, x):
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()

    for x in xs[:3]:
        step(a, nt, x)
        step(b, sgd, x)
    assert torch.equal(a.weight, b.weight)
    assert not nt.state.get(a.weight)
    nt.switch()
    iterates = []
    for x in xs[3:]:
        step(a, nt, x)
        step(b, sgd, x)
        iterates.append(a.weight.detach().clone())
    assert torch.equal(a.weight, b.weight)  # the same update while averaging
    torch.testing.assert_close(nt.state[a.weight]["ax"], torch.stack(iterates).mean(0))
    again = NTASGD(a.parameters(), lr=0.1)
    again.load_state_dict(nt.state_dict())
    assert again.averaging
    torch.testing.assert_close(again.state[a.weight]["ax"], nt.state[a.weight]["ax"])


def test_awd_recipe_switches_to_averaging_and_resumes_across_the_switch(tmp_path, monkeypatch):
    """The recipe's NT-ASGD wiring: when the trigger fires (here after the 2nd epoch, by
    replacing the trigger, whose rule `test_nt_asgd_trigger_hand_computed` checks) the run
    averages from then on, evaluates the averages, and a run interrupted after the switch
    resumes to the same parameters and the same test perplexity."""
    import dataclasses
    import importlib

    from test_lm_recipe import write_corpus

    from unroll.engine import load_checkpoint
    from unroll.engine.metrics_log import read_metrics
    from unroll.recipes.lm import train

    data = str(write_corpus(tmp_path / "corpus"))
    lm_train = importlib.import_module("unroll.recipes.lm.train")  # the module, not train()
    monkeypatch.setattr(lm_train, "nt_asgd_should_switch", lambda v, n: len(v) >= 2)
    config = awd_tiny(nonmono=1, epochs=4, max_steps_per_epoch=8)
    straight = train(config, data=data, out=tmp_path / "a", quiet=True)
    ckpt = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    groups = ckpt["optimizer"]["param_groups"]
    assert groups[0]["averaging"], [m["valid_ppl"] for m in read_metrics(tmp_path / "a")]
    assert any("ax" in s for s in ckpt["optimizer"]["state"].values())
    train(dataclasses.replace(config, epochs=3), data=data, out=tmp_path / "b", quiet=True)
    resumed = train(config, resume=tmp_path / "b", quiet=True)
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    for k in ckpt["model"]:
        assert torch.equal(ckpt["model"][k], b["model"][k]), k
    assert resumed["test_ppl"] == straight["test_ppl"]
    # `unroll lm evaluate` of the best checkpoint tests the averaged weights too
    from unroll.recipes.lm import evaluate

    again = evaluate(tmp_path / "a", device="cpu")
    assert again["perplexity"] == pytest.approx(straight["test_ppl"], rel=1e-9)


def test_wikitext_directory_layout_and_the_awd_wt2_preset(tmp_path):
    """A directory in WikiText's layout (wiki.{split}.tokens, headers and blank lines kept,
    each line ending in <eos> as AWD-LSTM's data.py does) is a corpus; awd-wt2 names one."""
    from unroll.data.text import find_split_files, load_corpus
    from unroll.recipes.lm.config import get_preset

    text = " = Title = \n\n the cat <unk> sat \n"
    for split in ("train", "valid", "test"):
        (tmp_path / f"wiki.{split}.tokens").write_text(text, encoding="utf-8")
    assert find_split_files(tmp_path)["valid"].name == "wiki.valid.tokens"
    corpus = load_corpus(tmp_path, "word")
    words = [corpus.vocab.to_list()[i] for i in corpus.train.tolist()]
    assert words == ["=", "Title", "=", "<eos>", "<eos>", "the", "cat", "<unk>", "sat", "<eos>"]
    config = get_preset("awd-wt2")
    config.validate()
    assert (config.data, config.model, config.batch_size, config.dropout_input) == (
        "wikitext-2",
        "awd",
        80,
        0.65,
    )
