import io
import os
import random
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from unroll.config import RunConfig
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
from unroll.engine.loop import fit, make_optimizer, supervised_step
from unroll.engine.metrics_log import read_metrics
from unroll.engine.recipe import Recipe
from unroll.engine.run import Run, resume_point
from unroll.errors import UserError


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
    assert rows[0]["bad"] is None  # JSON has no inf: null
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
    if not torch.backends.mps.is_available():  # the other accelerators PyTorch knows
        with pytest.raises(UserError, match="--device mps: mps is not available"):
            resolve_device("mps")


@dataclass
class ToyConfig(RunConfig):
    epochs: int = 4
    lr: float = 0.05
    clip: float = 1.0


TOY = Recipe(name="toy", kind="unroll.toy", config=ToyConfig)


def _toy_train(config, out=None, resume=None):
    """A recipe in a dozen lines: the engine does the rest (run dir, checkpoints, resume)."""
    point = resume_point(TOY, resume, config) if resume is not None else None
    config = point.config if point is not None else config
    torch.manual_seed(0)
    xs = torch.randn(64, 3)
    ys = xs @ torch.tensor([1.0, -2.0, 0.5]) + 0.1
    model = nn.Linear(3, 1)
    opt = make_optimizer("sgd", model.parameters(), lr=config.lr)

    def batches(epoch):
        perm = torch.randperm(64, generator=torch.Generator().manual_seed(epoch))
        for i in range(0, 64, 16):
            yield xs[perm[i : i + 16]], ys[perm[i : i + 16]]

    def loss_fn(m, batch):
        x, y = batch
        return nn.functional.mse_loss(m(x).squeeze(-1), y)

    with Run.start(TOY, config, device="cpu", out=out, resume=point, quiet=True) as run:
        run.restore(model, opt)
        result = fit(
            run,
            model,
            opt,
            step=supervised_step(model, opt, loss_fn, config.clip),
            batches=batches,
            num_batches=4,
            epochs=config.epochs,
            evaluate=lambda: {"valid_loss": loss_fn(model, (xs, ys)).item()},
            select="valid_loss",
            quiet=True,
        )
    return model, result


def test_fit_learns_checkpoints_and_resumes_exactly(tmp_path):
    straight, result = _toy_train(ToyConfig(), tmp_path / "a")
    losses = [r["valid_loss"] for r in result.history]
    assert losses[-1] < losses[0] / 2
    assert result.best == min(losses)

    _toy_train(ToyConfig(epochs=2), tmp_path / "b")
    ckpt = load_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt", kind="unroll.toy")
    assert ckpt["epoch"] == 2
    resumed, _ = _toy_train({"epochs": 4}, resume=tmp_path / "b")
    for p, q in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    best = load_checkpoint(tmp_path / "b" / "checkpoints" / "best.pt")
    assert best["epoch"] == best["best_epoch"]
    assert [r["epoch"] for r in read_metrics(tmp_path / "b")] == [1, 2, 3, 4]
    with pytest.raises(UserError, match="lr cannot change when resuming"):
        _toy_train({"lr": 0.1}, resume=tmp_path / "b")


def test_make_optimizer_rejects_unknown():
    with pytest.raises(UserError, match="expected adam or sgd"):
        make_optimizer("rmsprop", nn.Linear(1, 1).parameters(), lr=0.1)
