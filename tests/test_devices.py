"""Runs move between devices: a run trained on a GPU resumes and evaluates on the CPU (and the
reverse), for every recipe — checked on the CPU side with stand-ins for the GPU's tensors.

The first real GPU run crashed in `set_rng_state` on a checkpoint loaded onto the GPU
(``can't convert cuda:0 device type tensor to numpy``); `OnGPU` reproduces that failure mode
on a CPU-only machine.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from unroll.cli import main
from unroll.engine.checkpoint import load_checkpoint, save_checkpoint
from unroll.engine.seed import get_rng_state, seed_everything, set_rng_state


class OnGPU(torch.Tensor):
    """A tensor that behaves as a CUDA tensor does where it matters here: no ``.numpy()``
    until it is copied to the CPU."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor)


def _as_if_on_gpu(state):
    if isinstance(state, torch.Tensor):
        return state.as_subclass(OnGPU)
    if isinstance(state, dict):
        return {k: _as_if_on_gpu(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_as_if_on_gpu(v) for v in state]
    return state


def test_rng_state_restores_from_tensors_on_another_device():
    seed_everything(3)
    state = _as_if_on_gpu(get_rng_state())
    assert isinstance(state["torch"], OnGPU)
    want = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)  # the GPU run's crash: numpy() on a CUDA tensor
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == want


def _corpus(directory):
    directory.mkdir(parents=True, exist_ok=True)
    text = "the cat sat on the mat\na dog ran to the tree\nthe cat ran\n" * 8
    for name in ("train.txt", "valid.txt", "test.txt"):
        (directory / name).write_text(text, encoding="utf-8")
    return directory


def _move_run_to(run, device: str) -> None:
    """Make a CPU run look like one trained on `device`: its config and every checkpoint say
    so. (Checkpoints are always read onto the CPU and moved from there, so what the tensors
    in the file were on does not matter; `set_rng_state` copes either way, see above.)"""
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "device": device}))
    for path in (run / "checkpoints").glob("*.pt"):
        ckpt = load_checkpoint(path)
        ckpt["config"]["device"] = device
        save_checkpoint(path, {k: v for k, v in ckpt.items() if k not in ("format",)})


TRAIN = {
    "lm": lambda tmp: [
        "lm", "train", "--data", str(_corpus(tmp / "data")), "hidden_size=8", "num_layers=1",
        "num_steps=4", "batch_size=2", "max_steps_per_epoch=5",
    ],
    "classify": lambda tmp: [
        "classify", "train", "max_train=100", "hidden_size=8", "batch_size=50",
    ],
    "forecast": lambda tmp: [
        "forecast", "train", "--data", "synthetic", "hidden_size=8", "plot=false",
    ],
}  # fmt: skip
EVAL = {
    "lm": lambda run: ["lm", "eval", str(run), "--device", "cpu"],
    "classify": lambda run: ["classify", "eval", str(run), "--device", "cpu"],
    "forecast": lambda run: ["forecast", "predict", str(run)],
}


@pytest.mark.parametrize("recipe", list(TRAIN))
def test_a_gpu_run_resumes_and_evaluates_on_the_cpu(recipe, tmp_path, capsys):
    if recipe == "classify":
        pytest.importorskip("sklearn")
    run = tmp_path / "run"
    common = ["--out", str(run), "--quiet", "epochs=1", "threads=1", "tensorboard=false"]
    assert main([*TRAIN[recipe](tmp_path), *common, "--device", "cpu"]) == 0
    _move_run_to(run, "cuda")
    capsys.readouterr()
    if not torch.cuda.is_available():  # resuming as it was, on a machine without the GPU
        assert main([recipe, "train", "--resume", str(run), "--quiet"]) == 2
        assert "cuda is not available on this machine (use cpu)" in capsys.readouterr().err
    # ... and with the device changed (device is one of the fields a resume may change)
    assert main([recipe, "train", "--resume", str(run), "--quiet", "epochs=2", "device=cpu"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2
    assert main(EVAL[recipe](run)) == 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("recipe", list(TRAIN))
def test_a_cpu_run_resumes_on_the_gpu(recipe, tmp_path):
    if recipe == "classify":
        pytest.importorskip("sklearn")
    run = tmp_path / "run"
    common = ["--out", str(run), "--quiet", "epochs=1", "threads=1", "tensorboard=false"]
    assert main([*TRAIN[recipe](tmp_path), *common, "--device", "cpu"]) == 0
    assert main([recipe, "train", "--resume", str(run), "--quiet", "epochs=2", "device=cuda"]) == 0
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 2
