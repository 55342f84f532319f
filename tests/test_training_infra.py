import io
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from unroll.errors import UserError
from unroll.engine import (
    MetricsLogger,
    Progress,
    RunDir,
    get_rng_state,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from unroll.engine.checkpoint import find_checkpoint
from unroll.engine.metrics import read_metrics
from unroll.engine.supervised import fit, make_optimizer


def test_checkpoint_round_trip_and_kind_check(tmp_path):
    model = nn.Linear(3, 2)
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"kind": "unroll.test", "model": model.state_dict(), "config": {"a": 1}})
    ckpt = load_checkpoint(path, kind="unroll.test")
    assert ckpt["config"] == {"a": 1} and ckpt["format"] == 1
    assert torch.equal(ckpt["model"]["weight"], model.weight)
    with pytest.raises(UserError, match="is a 'unroll.test' checkpoint, expected 'unroll.lm'"):
        load_checkpoint(path, kind="unroll.lm")


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, {"kind": "k", "model": {"w": torch.ones(2)}})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, {"kind": "k", "model": {"w": torch.zeros(2)}})
    assert path.read_bytes() == before  # the old checkpoint survives a failed write
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]  # and no temp file is left behind


def test_non_checkpoints_are_one_line_errors(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not an unroll checkpoint"):
        load_checkpoint(junk)
    torch.save({"weights": torch.ones(1)}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="no 'kind'/'model'"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(UserError, match="no such checkpoint"):
        find_checkpoint(tmp_path / "missing")


def test_rundir_records_everything_and_refuses_to_clobber(tmp_path):
    from dataclasses import dataclass

    @dataclass
    class C:
        hidden: int = 4

    run = RunDir.create(
        tmp_path / "r",
        kind="unroll.test",
        config=C(),
        seed=7,
        device="cpu",
        argv=["unroll", "train", "hidden=4"],
    )
    assert run.read_config() == {"kind": "unroll.test", "hidden": 4}
    meta = run.read_meta()
    assert meta["seed"] == 7 and meta["torch_version"] == torch.__version__
    assert (run.path / "command.txt").read_text() == "unroll train hidden=4\n"
    assert run.checkpoints.is_dir()
    with pytest.raises(UserError, match="not empty"):
        RunDir.create(tmp_path / "r", kind="unroll.test", config=C(), seed=7, device="cpu")
    with pytest.raises(UserError, match="not a run directory"):
        RunDir.open(tmp_path)


def test_metrics_jsonl_and_truncation_on_resume(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as m:
        for e in (1, 2, 3):
            m.log(epoch=e, loss=torch.tensor(float(e)), bad=float("inf"))
    rows = read_metrics(tmp_path)
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[0]["loss"] == 1.0
    assert rows[0]["bad"] == "inf"
    MetricsLogger(tmp_path, tensorboard=False, truncate_after=2).close()
    assert [r["epoch"] for r in read_metrics(tmp_path)] == [1, 2]


def test_progress_plain_lines_when_not_a_tty():
    out = io.StringIO()
    bar = Progress(4, desc="epoch 1", stream=out, log_every=0.0)
    for _ in range(4):
        bar.update(1, ppl=torch.tensor(123.456))
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("epoch 1 [####################] 4/4")
    assert "ppl=123.5" in lines[-1]


def test_rng_state_round_trip_through_a_checkpoint(tmp_path):
    seed_everything(3)
    state = get_rng_state()
    save_checkpoint(tmp_path / "r.pt", {"kind": "k", "model": {}, "rng": state})
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="--device"):
        resolve_device("tpu")


def _toy_fit(tmp_path, epochs, start_epoch=0, model=None, opt=None, best=None):
    torch.manual_seed(0)
    xs = torch.randn(64, 3)
    ys = xs @ torch.tensor([1.0, -2.0, 0.5]) + 0.1
    model = model or nn.Linear(3, 1)
    opt = opt or make_optimizer("sgd", model.parameters(), lr=0.05)
    run = RunDir(tmp_path)
    run.checkpoints.mkdir(parents=True, exist_ok=True)

    def batches(epoch):
        g = torch.Generator().manual_seed(epoch)
        perm = torch.randperm(64, generator=g)
        for i in range(0, 64, 16):
            idx = perm[i : i + 16]
            yield xs[idx], ys[idx]

    def loss_fn(m, batch):
        x, y = batch
        return nn.functional.mse_loss(m(x).squeeze(-1), y)

    def evaluate(m):
        return {"valid_loss": loss_fn(m, (xs, ys)).item()}

    result = fit(
        model,
        opt,
        train_batches=batches,
        num_batches=4,
        loss_fn=loss_fn,
        evaluate=evaluate,
        epochs=epochs,
        select="valid_loss",
        clip=1.0,
        run=run,
        checkpoint_entries=lambda: {"kind": "unroll.toy", "config": {}},
        start_epoch=start_epoch,
        best=best,
        progress=False,
    )
    return model, opt, result


def test_fit_learns_checkpoints_and_resumes_exactly(tmp_path):
    straight, _, result = _toy_fit(tmp_path / "a", epochs=4)
    losses = [r["valid_loss"] for r in result.history]
    assert losses[-1] < losses[0] / 2
    assert result.best == min(losses)

    _toy_fit(tmp_path / "b", epochs=2)
    ckpt = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt", kind="unroll.toy")
    assert ckpt["epoch"] == 2
    model = nn.Linear(3, 1)
    model.load_state_dict(ckpt["model"])
    opt = make_optimizer("sgd", model.parameters(), lr=0.05)
    opt.load_state_dict(ckpt["optimizer"])
    resumed, _, _ = _toy_fit(
        tmp_path / "b", epochs=4, start_epoch=2, model=model, opt=opt, best=ckpt["best"]
    )
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    best = load_checkpoint(tmp_path / "b" / "checkpoints" / "best.pt")
    assert best["epoch"] == best["best_epoch"]


def test_make_optimizer_rejects_unknown():
    with pytest.raises(UserError, match="expected adam or sgd"):
        make_optimizer("rmsprop", nn.Linear(1, 1).parameters(), lr=0.1)
