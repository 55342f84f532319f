"""What would break or mislead on the first GPU run, checked on the CPU (issue 24): each test
stands a CUDA device in with a stand-in (a patched ``is_cuda``, a mocked ``torch.cuda``) where
the code path needs one, and fails on the code before the fix."""

from __future__ import annotations

import contextlib

import pytest
import torch
from torch.backends.cudnn import rnn as cudnn_rnn

import unroll
from unroll.nn import layers


@contextlib.contextmanager
def cuda_stand_in(monkeypatch, calls: list):
    """Tensors that say they are on CUDA, and a cuDNN flatten that records its arguments."""
    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
        m.setattr(torch.backends.cudnn, "is_acceptable", lambda t: True)
        m.setattr(torch, "_use_cudnn_rnn_flatten_weight", lambda: True)
        m.setattr(torch.cuda, "device_of", lambda t: contextlib.nullcontext())
        m.setattr(cudnn_rnn, "get_cudnn_mode", lambda mode: mode)  # (torch._cudnn: CUDA builds)
        m.setattr(torch, "_cudnn_rnn_flatten_weight", lambda flat, *a: calls.append((flat, a)))
        yield


@pytest.mark.parametrize(
    "make, mode",
    [
        (lambda: unroll.LSTM(4, 6, num_layers=2), "LSTM"),
        (lambda: unroll.LSTM(4, 6, proj_size=3, bidirectional=True), "LSTM"),
        (lambda: unroll.GRU(4, 6), "GRU"),
        (lambda: unroll.RNN(4, 6, nonlinearity="relu"), "RNN_RELU"),
    ],
)
def test_a_layer_built_on_cuda_flattens_its_weights(make, mode, monkeypatch):
    """`LSTM(..., device="cuda")` must lay its weights out for cuDNN at once, as torch.nn.LSTM
    does, not only after ``.to()``: else cuDNN compacts them on every call and warns (an error
    under pytest's ``error::UserWarning:unroll``)."""
    calls: list = []
    with cuda_stand_in(monkeypatch, calls):
        layer = make()
    assert len(calls) == 1, "built on (stand-in) CUDA, the layer did not flatten its weights"
    flat, args = calls[0]
    assert [w is p for w, p in zip(flat, layer._flat_weights)] == [True] * len(flat)
    assert args[1:4] == (layer.input_size, mode, layer.hidden_size)
    calls.clear()
    with cuda_stand_in(monkeypatch, calls):
        layer.to(torch.float32)  # .to() flattened before the fix too: still once
    assert len(calls) == 1


def test_epoch_seconds_are_read_after_the_device_finished(monkeypatch):
    """On CUDA the steps only queue work: the epoch's time is known once the loss sum is read
    back (the sync). A stand-in device that takes 5 s to finish at that read: the epoch's
    ``seconds`` (and so words/s) must include them."""
    from unroll.engine import loop

    clock = [100.0]
    monkeypatch.setattr(loop.time, "perf_counter", lambda: clock[0])
    to_float = torch.Tensor.__float__

    def sync_then_read(t):
        clock[0] += 5.0  # the device drains its queue
        return to_float(t)

    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def step(batch):
        clock[0] += 1.0  # queuing a step takes 1 s of host time
        return torch.tensor(0.5, dtype=torch.float64)

    with monkeypatch.context() as m:
        m.setattr(torch.Tensor, "__float__", sync_then_read)
        result = loop.fit(
            None,
            model,
            optimizer,
            step=step,
            batches=lambda epoch: range(3),
            num_batches=3,
            epochs=1,
            evaluate=lambda: {"valid_loss": 1.0},
            select="valid_loss",
            items_per_batch=10,
            quiet=True,
        )
    (record,) = result.history
    assert record["seconds"] == pytest.approx(3 * 1.0 + 5.0)
    assert record["items_per_sec"] == pytest.approx(30 / 8.0)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_bf16_autocast_never_runs_the_rnn_kernel_in_fp16(kind, monkeypatch):
    """On CUDA, autocast's wrapper of cuDNN's RNN casts to float16 whatever dtype autocast asked
    for, so precision=bf16 trained the LSTM in fp16. The CPU's autocast stands in for CUDA's
    here (AUTOCAST_RNN_HALF): torch's kernel must then run outside autocast, in the weights'
    float32, and the run must record it (meta.json's arithmetic.lstm_dtype)."""
    from unroll.engine.device import arithmetic

    layer = getattr(unroll, kind)(3, 4)
    x = torch.randn(5, 2, 3)
    assert arithmetic(torch.device("cpu"), "bf16")["lstm_dtype"] == "bfloat16"
    seen = []
    vf = torch._VF.lstm if kind == "LSTM" else torch._VF.gru

    def recording(x, *args):
        seen.append((x.dtype, torch.is_autocast_enabled("cpu")))
        return vf(x, *args)

    monkeypatch.setattr(layers, "AUTOCAST_RNN_HALF", ("cpu",))  # as CUDA's autocast does
    monkeypatch.setattr(torch._VF, kind.lower(), recording)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, state = layer(x)
        assert layer(x, lengths=[5, 3])[0].dtype == torch.float32  # packed: the same
    assert y.dtype == torch.float32 and seen[0] == (torch.float32, False)
    with torch.autocast("cpu", dtype=torch.float16):  # fp16 asked for: autocast's own business
        assert not layers._autocast_to_half(x)
    monkeypatch.setattr(torch._VF, kind.lower(), vf)
    assert arithmetic(torch.device("cpu"), "bf16") == {
        "tf32": False,
        "autocast": "bfloat16",
        "lstm_dtype": "float32",
    }


def test_meta_json_records_the_arithmetic(tmp_path):
    """precision=fp32 means IEEE fp32 for cuBLAS and cuDNN alike (TF32 off, unlike PyTorch's
    default for cuDNN), tf32 turns both on: set as decided, and written into meta.json."""
    import json

    from unroll.engine.device import arithmetic, matmul_precision
    from unroll.recipes.lm import train
    from unroll.recipes.lm.config import RECIPE

    cuda = torch.device("cuda")  # the flags alone: nothing runs on it
    for precision, tf32 in (("fp32", False), ("tf32", True), ("bf16", False)):
        with matmul_precision(cuda, precision):
            assert torch.backends.cuda.matmul.allow_tf32 is tf32
            assert torch.backends.cudnn.allow_tf32 is tf32
    data = tmp_path / "corpus"
    data.mkdir()
    for name in ("train", "valid", "test"):
        (data / f"{name}.txt").write_text(" ".join(f"w{i % 7}" for i in range(400)) + "\n")
    config = RECIPE.make_config(
        overrides=[f"data={data}", "epochs=1", "hidden_size=8", "num_steps=5", "batch_size=4",
                   "max_steps_per_epoch=2", "precision=bf16", "tensorboard=false", "threads=1",
                   "device=cpu"]
    )  # fmt: skip
    train(config, out=tmp_path / "run", quiet=True)
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["arithmetic"] == arithmetic(torch.device("cpu"), "bf16")
    assert meta["arithmetic"] == {"tf32": False, "autocast": "bfloat16", "lstm_dtype": "bfloat16"}


def test_a_failed_graph_capture_warns_once_also_from_another_thread():
    """A capture that fails turns the Triton loops' graph cache off for the process: that must
    be said (once), also when it happens on autograd's CUDA backward thread, where nothing else
    would show it — not pass silently with the loops running eagerly ever after."""
    import threading
    import warnings

    from unroll.nn.kernels.lstm_triton import GraphCache

    def failing(fn):
        raise RuntimeError("operation not permitted when stream is capturing")

    def loop(x, y):
        y.copy_(2 * x)

    cache = GraphCache(failing, lambda t: ("stream", 0))
    tensors = {"x": torch.arange(3.0), "y": torch.zeros(3)}

    def calls(n):
        for _ in range(n):
            if not cache.run(loop, tensors, ("x",), ("y",)):
                loop(**tensors)  # eager, as TritonLoops does

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        worker = threading.Thread(target=calls, args=(2,))  # seen, then the failed capture
        worker.start()
        worker.join()
        calls(3)  # off: eager, no more warnings
    said = [w for w in caught if "graph cache is off" in str(w.message)]
    assert len(said) == 1 and "capture failed (RuntimeError" in str(said[0].message)
    assert cache.disabled.startswith("capture failed (RuntimeError") and not cache.entries
    assert torch.equal(tensors["y"], 2 * tensors["x"])


# -- the tests that failed on any one-GPU machine because of what device=auto picks ---------

FAKE_ONE_GPU = """\
import os
if os.environ.get("CUDA_VISIBLE_DEVICES") != "":  # (a real machine honours it too)
    import torch
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 1
"""

ON_ONE_GPU = {
    "fast": ["tests/test_word2vec_recipe.py::test_compiled_on_request_or_a_one_line_error"],
    "slow": [  # (test_bad_input's module fixture trains a run of every recipe first)
        "tests/test_bad_input.py::test_bad_input_is_one_line_exit_2_and_leaves_nothing"
        "[lm device cuda]",
        "tests/test_word2vec_recipe.py::test_compiled_path_trains_what_the_pytorch_reference_"
        "trains",
        "tests/test_distributed.py",
    ],
}


@pytest.mark.parametrize(
    "which", ["fast", pytest.param("slow", marks=pytest.mark.slow)], ids=["fast", "slow"]
)
def test_device_auto_tests_pass_on_a_one_gpu_machine(which, tmp_path):
    """On a machine with one GPU (a mocked ``torch.cuda``: is_available, device_count 1, in
    every process, torchrun's too, through a sitecustomize), the tests that assumed device=auto
    means the CPU pass: they pin the device (``--device cuda`` now succeeds there; word2vec's
    impl=compiled is refused on CUDA; two ranks would share one GPU)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    (tmp_path / "sitecustomize.py").write_text(FAKE_ONE_GPU)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    probe = "import torch; print(torch.cuda.is_available(), torch.cuda.device_count())"
    seen = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert seen.stdout.split() == ["True", "1"], seen.stderr  # the stand-in is in place
    job = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ON_ONE_GPU[which]],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, job.stdout[-3000:]


def _benchmark(name: str):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cells_prints_each_case_as_it_goes_and_survives_a_failing_one(monkeypatch, capsys):
    """A case that fails (on CUDA: a bf16 nn.LSTM on an older cuDNN) must not lose the others:
    one JSON line per case as it finishes, the error in its own line, the whole result last."""
    import json

    cells = _benchmark("cells")
    real = cells.bench_shape

    def bench_shape(name, *args):
        if name == "small":
            raise RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED")
        return real(name, *args)

    monkeypatch.setattr(cells, "bench_shape", bench_shape)
    cells.main(["--shapes", "tiny,small", "--repeats", "1", "--threads", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line.get("case") for line in lines] == ["tiny", "small", None]
    assert lines[0]["ms"]["torch.nn.LSTM"] > 0 and "NOT_SUPPORTED" in lines[1]["error"]
    assert lines[2]["shapes"]["tiny"] == {k: v for k, v in lines[0].items() if k not in
                                          ("benchmark", "case")}  # fmt: skip


def test_ptb_speed_never_runs_random_ids_for_ptb(tmp_path, monkeypatch, capsys):
    """``--data ptb`` (what the GPU check runs) without PTB on disk: a one-line error and exit
    2, not the silent random-id stream that ``--data auto`` falls back to."""
    monkeypatch.setenv("UNROLL_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))
    ptb_speed = _benchmark("ptb_speed")
    with pytest.raises(SystemExit) as stop:
        ptb_speed.main(["--data", "ptb", "--device", "cpu"])
    assert stop.value.code == 2
    assert "--data ptb: Penn Treebank not found" in capsys.readouterr().err
    assert ptb_speed.load_ids("random")[0] == "random"


# -- benchmarks/gpu_check.sh ---------------------------------------------------------------------


def gpu_check(out, *args, timeout=300, **env):
    """``DRY=1 bash benchmarks/gpu_check.sh OUT ARGS`` with this interpreter; (exit, summary)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = env.pop("script", Path(__file__).resolve().parents[1] / "benchmarks/gpu_check.sh")
    full = {**os.environ, "DRY": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", **env}
    job = subprocess.run(
        ["bash", str(script), str(out), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    summary = out / "summary.json"
    assert summary.is_file(), job.stdout + job.stderr
    return job, json.loads(summary.read_text())


def returned_files(out):
    """What the device tool would bring back: at most 8 files, plain names, 2 folders deep."""
    import re

    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8, files
    for p in files:
        assert re.fullmatch(r"[A-Za-z0-9._-]+", p.name) and len(p.relative_to(out).parts) <= 3
    return {p.name for p in files}


def test_gpu_check_dry_run_goes_through_every_phase(tmp_path):
    """DRY=1: the GPU check's whole flow on the CPU with tiny sizes, well inside 3 minutes
    (the issue's CI check): every phase ok, summary.json with each phase's status and
    seconds, the smoke phase's JSON lines, ptb-medium's wall time and test perplexity, and
    nothing that the device tool would not bring back."""
    import json
    import math

    out = tmp_path / "out"
    job, summary = gpu_check(out, "abc123")
    assert job.returncode == 0, (summary, job.stderr[-2000:])
    assert summary["ok"] and summary["dry"] and summary["commit"] == "abc123"
    phases = summary["phases"]
    order = ["setup", "data", "smoke", "ptb-medium", "ptb_speed", "cells", "parallel_rnn", "tests"]
    assert list(phases) == order
    assert all(p["status"] == "ok" and p["seconds"] >= 0 for p in phases.values()), phases
    assert summary["elapsed_seconds"] <= 180
    smoke = [json.loads(line) for line in (out / "smoke.jsonl").read_text().splitlines()]
    assert [r["check"] for r in smoke] == list(phases["smoke"]["checks"])
    assert {"lm_step", "triton_float32", "triton_bfloat16", "persistent"} <= set(
        phases["smoke"]["checks"]
    )
    assert phases["smoke"]["checks"]["flatten"] is None  # CUDA only
    medium = phases["ptb-medium"]
    assert math.isfinite(medium["test_ppl"]) and medium["wall_seconds"] > 0
    assert medium["seed"] is not None and medium["arithmetic"]["lstm_dtype"] == "float32"
    results = json.loads((out / "ptb-medium.jsonl").read_text().splitlines()[-1])
    assert results["test_ppl"] == medium["test_ppl"]
    assert phases["tests"]["tests"] > 0 and phases["tests"]["failures"] == 0
    cells = [json.loads(line) for line in (out / "cells.jsonl").read_text().splitlines()]
    assert any("case" in r for r in cells)  # benchmarks/cells.py's lines ...
    assert any(r.get("benchmark") == "parallel_rnn" for r in cells)  # ... then parallel_rnn's
    assert any("MinGRU:fused" in r.get("ms", {}) for r in cells)
    assert returned_files(out) == {
        "summary.json", "log.txt", "smoke.jsonl", "ptb-medium.jsonl", "ptb_speed.jsonl",
        "cells.jsonl", "tests.txt", "junit.xml",
    }  # fmt: skip


def test_gpu_check_stops_the_suite_with_sigint_and_keeps_its_results(tmp_path):
    """At its cap the suite gets SIGINT, not SIGTERM: pytest still prints its summary and
    writes junit.xml with the tests done so far, and summary.json says it timed out."""
    tests = tmp_path / "sleepy" / "test_sleepy.py"
    tests.parent.mkdir()
    tests.write_text("import time\n\ndef test_quick():\n    pass\n\n"
                     "def test_sleeps():\n    time.sleep(300)\n")  # fmt: skip
    out = tmp_path / "out"
    job, summary = gpu_check(
        out,
        GPU_CHECK_ONLY="tests",
        GPU_CHECK_TESTS=str(tests),
        GPU_CHECK_TESTS_CAP="12",
    )
    assert job.returncode == 1 and not summary["ok"] and summary["not_ok"] == ["tests"]
    phase = summary["phases"]["tests"]
    assert phase["status"] == "timeout after 12 s" and phase["seconds"] < 12 + 30
    assert phase["tests"] == 1 and phase["failures"] == 0  # test_quick, from junit.xml
    assert "KeyboardInterrupt" in (out / "tests.txt").read_text()


def test_gpu_check_fails_loudly_without_ptb_and_knows_its_commit_without_git(tmp_path):
    """A copy of the tree without .git (as the device tool may send it): the commit comes from
    .carry/COMMIT. PTB missing: the data phase fails and names what is missing, and the
    phases that need PTB are skipped (never run on random ids)."""
    import shutil
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    tree = tmp_path / "tree"
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=root, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    if not any(files):
        pytest.skip("not a git checkout")
    for name in filter(None, files):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, tree / name)
    (tree / ".carry").mkdir()
    (tree / ".carry" / "COMMIT").write_text("0123abcd (from make gpu-carry)\n")
    out = tmp_path / "out"
    job, summary = gpu_check(
        out,
        script=tree / "benchmarks" / "gpu_check.sh",
        GPU_CHECK_ONLY="data ptb-medium ptb_speed",
        GPU_CHECK_DATA="ptb",
        UNROLL_DATA=str(tmp_path / "no-data"),
        UNROLL_CACHE=str(tmp_path / "cache"),
    )
    assert summary["commit"] == "0123abcd (from make gpu-carry)"
    assert job.returncode == 1 and "PTB missing" in job.stderr
    phases = summary["phases"]
    assert phases["data"]["status"] == "failed: PTB missing"
    assert "Penn Treebank not found" in phases["data"]["error"]
    assert phases["ptb-medium"]["status"].startswith("skipped: no PTB")
    assert phases["ptb_speed"]["status"].startswith("skipped: no PTB")
    assert not (out / "ptb_speed.jsonl").exists()
