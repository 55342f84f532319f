"""The language-model recipe on tiny corpora: training, exact resume, evaluation, generation."""

import dataclasses
import json
import math
import random

import pytest
import torch
import torch.nn.functional as F

from unroll.data.batching import batchify, bptt_batches
from unroll.engine import load_checkpoint, save_checkpoint
from unroll.engine.metrics_log import read_metrics
from unroll.errors import UserError
from unroll.models.lm import LanguageModel
from unroll.recipes.lm import (
    KIND,
    LMConfig,
    evaluate,
    evaluate_ids,
    generate,
    load_model,
    train,
)


def write_corpus(directory, lines=(300, 40, 40), seed=0):
    """A learnable toy language: short sentences from a tiny grammar."""
    rng = random.Random(seed)
    subjects = ["the cat", "a dog", "the big bird", "my friend"]
    verbs = ["sat on", "ran to", "looked at", "jumped over"]
    objects = ["the mat", "a tree", "the red house", "the old wall"]
    directory.mkdir(parents=True, exist_ok=True)
    for name, n in zip(("train", "valid", "test"), lines):
        text = "".join(
            f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}\n" for _ in range(n)
        )
        (directory / f"{name}.txt").write_text(text, encoding="utf-8")
    return directory


def tiny_config(**kw) -> LMConfig:
    base = LMConfig(
        name="tiny",
        hidden_size=12,
        num_layers=2,
        init_scale=0.5,  # a model this small learns slowly from 0.1
        num_steps=5,
        batch_size=4,
        lr_decay_after=1,
        epochs=2,
        dropout=0.3,
        lr_decay=0.5,
        device="cpu",
        seed=3,
        threads=1,  # tiny models on a shared CPU: one thread is many times faster
    )
    return dataclasses.replace(base, **kw)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def trained(corpus_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = train(tiny_config(), data=str(corpus_dir), out=out, quiet=True)
    return out, result


def test_train_writes_a_complete_run_dir(trained, corpus_dir):
    out, result = trained
    for f in ("config.json", "meta.json", "command.txt", "metrics.jsonl", "results.json"):
        assert (out / f).is_file(), f
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == KIND
    assert config["vocab_size"] == 23 and config["embedding_size"] == 12  # resolved
    assert config["data"] == str(corpus_dir.resolve())
    assert json.loads((out / "meta.json").read_text())["seed"] == 3
    metrics = read_metrics(out)
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert [m["lr"] for m in metrics] == [1.0, 0.5]
    for m in metrics:
        assert set(m) >= {"train_ppl", "valid_ppl", "words_per_sec", "seconds", "tokens"}
    # it learns: far below the uniform (23) and the unigram (about 19) perplexity
    assert metrics[1]["valid_ppl"] < metrics[0]["valid_ppl"] < 19
    assert result["test_ppl"] < 5
    assert json.loads((out / "results.json").read_text())["test_ppl"] == result["test_ppl"]
    for name in ("last", "best"):
        ckpt = load_checkpoint(out / "checkpoints" / f"{name}.pt", kind=KIND)
        assert ckpt["vocab"][0] in ("the", "<eos>") and len(ckpt["vocab"]) == 23
        assert set(ckpt) >= {"config", "model", "optimizer", "rng", "epoch", "best", "best_epoch"}
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 2
    assert result["sample"].strip()


def test_resume_gives_exactly_the_uninterrupted_parameters(corpus_dir, tmp_path):
    # dropout > 0 (dropout draws random numbers) and a decay in epoch 2: the RNG, the
    # optimizer and the schedule must all be restored for the parameters to match.
    config = tiny_config(max_steps_per_epoch=12)
    straight = train(config, data=str(corpus_dir), out=tmp_path / "a", quiet=True)
    first = dataclasses.replace(config, epochs=1)
    train(first, data=str(corpus_dir), out=tmp_path / "b", quiet=True)
    resumed = train(config, resume=tmp_path / "b", quiet=True)
    a = load_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert resumed["test_ppl"] == straight["test_ppl"]
    ma, mb = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [(m["epoch"], m["train_ppl"], m["valid_ppl"]) for m in ma] == [
        (m["epoch"], m["train_ppl"], m["valid_ppl"]) for m in mb
    ]
    assert len((tmp_path / "b" / "command.txt").read_text().splitlines()) == 2
    # resuming a finished run trains nothing more and reports the same numbers
    again = train(config, resume=tmp_path / "b", quiet=True)
    assert (again["train_ppl"], again["test_ppl"]) == (straight["train_ppl"], straight["test_ppl"])
    assert len(read_metrics(tmp_path / "b")) == 2


def test_resume_refuses_changes_that_break_exactness(trained):
    out, _ = trained
    with pytest.raises(UserError, match="hidden_size cannot change when resuming"):
        train(tiny_config(hidden_size=16), resume=out, quiet=True)
    with pytest.raises(UserError, match="--out and --resume"):
        train(tiny_config(), out=out / "x", resume=out, quiet=True)


def _step_by_step_nll(model, ids):
    """The tutorial's evaluation: batch 1, one token per step, state carried."""
    state, nll = None, 0.0
    for i in range(ids.numel() - 1):
        logits, state = model(ids[i : i + 1].view(1, 1), state)
        nll += F.cross_entropy(logits[0], ids[i + 1 : i + 2], reduction="sum").item()
    return nll


def test_batch1_chunked_evaluation_equals_step_by_step():
    torch.manual_seed(0)
    model = LanguageModel(9, 6, 2, init_scale=0.5).double().eval()
    ids = torch.randint(0, 9, (41,))
    want = _step_by_step_nll(model, ids)
    for chunk in (1, 7, 40, None):
        nll, tokens = evaluate_ids(model, ids, 1, 1, chunk_steps=chunk)
        assert tokens == 40
        assert nll == pytest.approx(want, rel=1e-12), chunk


def test_chunked_evaluation_keeps_the_training_layout():
    torch.manual_seed(0)
    model = LanguageModel(9, 6, 1, init_scale=0.5).double().eval()
    ids = torch.randint(0, 9, (103,))
    B, T = 3, 4  # L = 34, epoch_size = 33 // 4 = 8 windows: 32 targets per row
    state, want = None, 0.0
    for x, y in bptt_batches(batchify(ids, B), T):
        logits, state = model(x, state)
        want += F.cross_entropy(logits.reshape(-1, 9), y.reshape(-1), reduction="sum").item()
    for chunk in (4, 5, 32, None):
        nll, tokens = evaluate_ids(model, ids, B, T, chunk_steps=chunk)
        assert tokens == B * 32
        assert nll == pytest.approx(want, rel=1e-12)


def test_evaluate_reproduces_the_training_test_perplexity(trained):
    out, result = trained
    r = evaluate(out, device="cpu")
    assert r["perplexity"] == pytest.approx(result["test_ppl"], rel=1e-9)
    assert r["split"] == "test" and r["batch_size"] == 1
    v = evaluate(out / "checkpoints" / "best.pt", split="valid", batch_size=2, device="cpu")
    assert 1 < v["perplexity"] < 5


def test_generate_is_reproducible_with_a_seed(trained):
    out, _ = trained
    a = generate(out, words=25, seed=1, device="cpu")
    assert a == generate(out, words=25, seed=1, device="cpu")
    assert a != generate(out, words=25, seed=2, device="cpu")
    assert len(a.split()) <= 25
    two = generate(out, sentences=2, seed=1, device="cpu")
    assert two.count("\n") == 2 and two.endswith("\n")
    greedy = generate(out, prompt="the cat", words=3, top_k=1, seed=1, device="cpu")
    assert greedy == generate(out, prompt="the cat", words=3, top_k=1, seed=9, device="cpu")
    assert greedy.startswith("the cat ")


def test_generate_warns_about_unknown_prompt_words(trained):
    out, _ = trained
    vocab = load_model(out, "cpu")[2]
    assert "<unk>" not in vocab  # the toy corpus has none: unknown words are an error
    with pytest.raises(UserError, match="zebra"):
        generate(out, prompt="the zebra", words=3, seed=0, device="cpu")


def test_generate_maps_unknown_prompt_words_to_unk(corpus_dir, tmp_path):
    data = write_corpus(tmp_path / "c")
    with open(data / "train.txt", "a", encoding="utf-8") as f:
        f.write("the <unk> sat on the mat\n")
    out = tmp_path / "run"
    train(tiny_config(epochs=1, max_steps_per_epoch=2), data=str(data), out=out, quiet=True)
    with pytest.warns(UserWarning, match="<unk>: zebra"):
        text = generate(out, prompt="the zebra", words=3, seed=0, device="cpu")
    assert text.startswith("the zebra ")


def test_bad_generate_arguments(trained):
    out, _ = trained
    with pytest.raises(UserError, match="temperature"):
        generate(out, temperature=0.0)
    with pytest.raises(UserError, match="top-k"):
        generate(out, top_k=0)
    with pytest.raises(UserError, match="--words and --sentences"):
        generate(out, words=3, sentences=1)


def test_checkpoint_of_another_kind(tmp_path):
    save_checkpoint(tmp_path / "c.pt", {"kind": "unroll.classifier", "model": {}})
    with pytest.raises(UserError, match="'unroll.classifier' checkpoint, expected 'unroll.lm'"):
        evaluate(tmp_path / "c.pt")
    with pytest.raises(UserError, match="unroll.classifier"):
        generate(tmp_path / "c.pt")


def test_too_little_data_is_an_error_before_any_run_dir(corpus_dir, tmp_path):
    with pytest.raises(UserError, match="train split: too little data"):
        train(tiny_config(batch_size=5000), data=str(corpus_dir), out=tmp_path / "r", quiet=True)
    assert not (tmp_path / "r").exists()


def test_max_steps_per_epoch_bf16_and_char_level(corpus_dir, tmp_path):
    config = tiny_config(
        epochs=1, max_steps_per_epoch=3, precision="bf16", level="char", num_steps=8
    )
    threads = torch.get_num_threads()
    result = train(config, data=str(corpus_dir), out=tmp_path / "r", quiet=True)
    assert torch.get_num_threads() == threads  # restored after the run
    (m,) = read_metrics(tmp_path / "r")
    assert m["tokens"] == 3 * 4 * 8
    assert math.isfinite(result["test_ppl"])
    text = generate(tmp_path / "r", words=40, seed=0, device="cpu")
    assert "_" not in text and len(text) >= 40 - text.count("\n")
