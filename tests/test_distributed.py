"""Data-parallel training (`unroll.engine.distributed`): the sharding arithmetic by hand, and
real 2-process jobs — ``torchrun --nproc-per-node 2 -m unroll ...`` on the CPU with gloo on
127.0.0.1, started here with a bounded timeout — against one process with the combined batch.

Tolerance of the equivalence: 1e-6 on every parameter after k steps (measured: about 1e-7 for
the language model after 16 SGD steps at lr 1, 3e-8 for the classifier after 14 Adam steps).
The only difference is the order of float32 sums (each rank's gradient, then their mean over
the ranks), so a wrong shard, a wrong weight or a rank seeing its neighbour's rows is orders
of magnitude above it — the control runs below (one process with the per-process batch) show
how far: about 1e-2.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from unroll.engine import distributed, load_checkpoint
from unroll.engine.distributed import World, part_of

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-6
TIMEOUT = 240  # seconds a 2-process job may take (a few on a quiet machine): a hang fails


@pytest.fixture(autouse=True, scope="module")
def on_the_cpu():
    """Every job here runs on the CPU (gloo), also on a GPU machine: there device=auto would
    give each rank cuda:LOCAL_RANK (rank 1 stops on a one-GPU machine) and the one-process
    runs CUDA, against a CPU job. The jobs' processes see no GPU (CUDA_VISIBLE_DEVICES, set in
    `torchrun`), and neither does this one."""
    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch.cuda, "is_available", lambda: False)
        yield


pytestmark = pytest.mark.usefixtures("one_thread")  # (tests/conftest.py)


# -- the arithmetic, one process -------------------------------------------------------------


@pytest.mark.parametrize("m, size", [(8, 2), (5, 2), (7, 3), (1, 2), (2, 3), (6, 1)])
def test_parts_cover_the_global_batch_and_weights_give_its_mean(m, size):
    glob = torch.arange(10, 10 + m)
    values = torch.randn(100, dtype=torch.float64)  # a per-item "loss"
    parts = [part_of(glob, r, size) for r in range(size)]
    real = [p for p, w in parts if w > 0]
    assert torch.equal(torch.cat(real), glob)  # each item once, in order
    assert [len(p) for p, _ in parts] == [
        len(c) if len(c) else 1 for c in torch.tensor_split(glob, size)
    ]
    # DDP averages over the ranks: sum_r weight_r * mean_r / size is the global batch's mean.
    mean = sum(w * values[p].mean() for p, w in parts) / size
    assert mean.item() == pytest.approx(values[glob].mean().item(), rel=1e-12)


def test_one_process_is_unchanged(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.world() == World()
    items = torch.arange(10)
    parts = list(distributed.shard_batches(items, 4))
    assert [p.weight for p in parts] == [1.0, 1.0, 1.0]
    assert [p.batch.tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert distributed.batch_count(10, 4) == 3 and distributed.rows(4) == slice(0, 4)
    assert distributed.all_sum(torch.tensor(1.5), 2) == [1.5, 2.0]
    model = torch.nn.Linear(2, 2)
    assert distributed.ddp(model) is model
    assert distributed.launch_command(["unroll", "lm", "train"]) == ["unroll", "lm", "train"]


def test_launch_command_and_world_from_env(monkeypatch):
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert World.from_env() == World(rank=3, size=4, local_rank=1, local_size=2)
    assert not World.from_env().main
    command = distributed.launch_command(["unroll", "lm", "train", "x=1"])
    assert " ".join(command) == "torchrun --nnodes 2 --nproc-per-node 2 -m unroll lm train x=1"


def test_ranks_draw_their_own_dropout_streams(monkeypatch):
    def draws(rank: int, epoch: int) -> torch.Tensor:
        monkeypatch.setattr(distributed, "world", lambda: World(rank=rank, size=2))
        torch.manual_seed(0)
        distributed.reseed(seed=0, epoch=epoch)
        return torch.rand(4)

    torch.manual_seed(0)
    untouched = torch.rand(4)
    assert torch.equal(draws(0, 1), untouched)  # rank 0 keeps the single process's stream
    assert not torch.equal(draws(1, 1), untouched)
    assert not torch.equal(draws(1, 1), draws(1, 2))  # afresh each epoch ...
    assert torch.equal(draws(1, 2), draws(1, 2))  # ... and again the same on resume


# -- 2-process jobs ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(*args: str, cwd: Path, env: dict[str, str] | None = None, nproc: int = 2):
    """``torchrun --nproc-per-node 2 -m unroll ARGS`` on 127.0.0.1, bounded by TIMEOUT."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(_free_port()),
        "-m",
        "unroll",
        *args,
    ]
    full_env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "CUDA_VISIBLE_DEVICES": "",  # on the CPU with gloo (`on_the_cpu`)
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        **(env or {}),
    }
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "UNROLL_FAULT"):
        if name not in (env or {}):
            full_env.pop(name, None)
    return subprocess.run(
        command, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=TIMEOUT
    )


def _params(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _written_once_by_rank_0(run_dir: Path, result) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    command = (run_dir / "command.txt").read_text()
    assert command.startswith("torchrun --nnodes 1 --nproc-per-node 2 -m unroll ")
    assert json.loads((run_dir / "meta.json").read_text())["world_size"] == 2
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["world_size"] == 2
    assert result.stderr.count("run directory:") == 1  # rank 1 is quiet
    assert "2 processes (gloo): batch_size" in result.stderr


def _corpus(root: Path) -> Path:
    import random

    r = random.Random(0)
    words = [f"w{i}" for i in range(40)]
    root.mkdir()
    for name, n in (("train", 3000), ("valid", 600), ("test", 300)):
        lines = [
            " ".join(r.choice(words[: r.randint(5, 40)]) for _ in range(10)) for _ in range(n // 10)
        ]
        (root / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize(
    "graphs",
    ["off", pytest.param("on", marks=pytest.mark.slow)],  # (another 2-process job)
)
def test_language_model_on_2_processes_equals_one_with_the_combined_batch(graphs, tmp_path):
    """Rows r·B .. r·B+B-1 of the 2·B-row layout per rank, the state carried per rank: after
    2 epochs of 8 steps the weights and the validation perplexity are one process's with
    batch 2·B. graphs=on runs the captured step's code (eagerly on the CPU) through DDP."""
    from unroll.recipes.lm import train
    from unroll.recipes.lm.config import RECIPE

    data = _corpus(tmp_path / "corpus")
    common = [
        f"data={data}",
        "epochs=2",
        "lr_decay_after=1",
        "hidden_size=16",
        "num_steps=5",
        "max_steps_per_epoch=8",
        "dropout=0",  # dropout masks cannot be the same: the ranks draw their own
        "threads=1",
        "tensorboard=false",
        f"graphs={graphs}",
    ]
    job = torchrun("lm", "train", "--out", "ddp", *common, "batch_size=3", cwd=tmp_path)
    _written_once_by_rank_0(tmp_path / "ddp", job)
    one = {}
    for B in (6, 3):  # the combined batch, and the control: one process's batch alone
        config = RECIPE.make_config(overrides=[*common, f"batch_size={B}", "graphs=off"])
        train(config, out=tmp_path / f"one-{B}", quiet=True)
        one[B] = tmp_path / f"one-{B}"
    assert _max_diff(_params(tmp_path / "ddp"), _params(one[6])) < TOLERANCE
    assert _max_diff(_params(tmp_path / "ddp"), _params(one[3])) > 1e3 * TOLERANCE
    for two, single in zip(_metrics(tmp_path / "ddp"), _metrics(one[6])):
        assert two["valid_ppl"] == pytest.approx(single["valid_ppl"], rel=1e-6)
        assert two["train_ppl"] == pytest.approx(single["train_ppl"], rel=1e-6)
        assert two["tokens"] == single["tokens"] == 8 * 6 * 5


def test_classifier_on_2_processes_equals_one_with_the_combined_batch(tmp_path):
    """193 training images, batch 16 per process: 6 global batches of 32, then one image —
    rank 0 trains on it at weight 2, rank 1 on a stand-in at weight 0 (equal-length shards,
    no hang). Adam, 2 epochs; validation is sharded and reduced."""
    pytest.importorskip("sklearn", reason="scikit-learn (the digits extra) not installed")
    from unroll.recipes.classify import make_config, train

    common = [
        "epochs=2",
        "max_train=193",
        "hidden_size=16",
        "threads=1",
        "tensorboard=false",
    ]
    job = torchrun("classify", "train", "--out", "ddp", *common, "batch_size=16", cwd=tmp_path)
    _written_once_by_rank_0(tmp_path / "ddp", job)
    assert (tmp_path / "ddp" / "results.json").is_file()
    one = {}
    for B in (32, 16):
        train(
            make_config(overrides=[*common, f"batch_size={B}"]), tmp_path / f"one-{B}", quiet=True
        )
        one[B] = tmp_path / f"one-{B}"
    assert _max_diff(_params(tmp_path / "ddp"), _params(one[32])) < TOLERANCE
    assert _max_diff(_params(tmp_path / "ddp"), _params(one[16])) > 1e3 * TOLERANCE
    for two, single in zip(_metrics(tmp_path / "ddp"), _metrics(one[32])):
        assert two["valid_accuracy"] == single["valid_accuracy"]
        assert two["valid_loss"] == pytest.approx(single["valid_loss"], rel=1e-6)
        assert two["train_loss"] == pytest.approx(single["train_loss"], rel=1e-6)


def test_a_rank_that_dies_ends_the_job_and_the_run_resumes_on_one_process(tmp_path):
    """Rank 1 is killed (SIGKILL) at the start of epoch 2, while rank 0 waits for it in an
    all-reduce: the job ends with an error naming rank 1 (no hang), epoch 1's checkpoints are
    intact, and one process resumes the run (another number of processes: a note says so)."""
    pytest.importorskip("sklearn", reason="scikit-learn (the digits extra) not installed")
    import io

    from unroll.recipes.classify import train

    args = ["--out", "run", "epochs=3", "max_train=96", "hidden_size=8", "batch_size=16"]
    job = torchrun(
        "classify",
        "train",
        *args,
        "threads=1",
        "tensorboard=false",
        cwd=tmp_path,
        env={"UNROLL_FAULT": "epoch-start-rank1@2"},
    )
    assert job.returncode != 0
    assert "rank      : 1 (local_rank: 1)" in job.stderr  # torchrun's root cause
    assert "SIGKILL" in job.stderr
    run = tmp_path / "run"
    assert [m["epoch"] for m in _metrics(run)] == [1]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 1

    stream = io.StringIO()
    result = train(resume=run, stream=stream)
    assert "written by 2 process(es), this run has 1" in stream.getvalue()
    assert [m["epoch"] for m in _metrics(run)] == [1, 2, 3]
    assert result.best_epoch is not None
    assert load_checkpoint(run / "checkpoints" / "last.pt")["world_size"] == 1


def test_an_error_on_rank_0_stops_every_rank(tmp_path):
    """--out in use: rank 0 refuses it, rank 1 stops with it too (no rank left waiting)."""
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    job = torchrun("sincos", "train", "--out", "used", "epochs=1", cwd=tmp_path)
    assert job.returncode != 0
    # One line: rank 1 stops with rank 0's error without printing it again.
    assert job.stderr.count("error: rank 0: --out used: directory exists and is not empty") == 1
    assert "unroll: error: rank 1" not in job.stderr


@pytest.mark.slow
def test_resume_on_2_processes_equals_an_uninterrupted_run_with_dropout(tmp_path):
    """The CNN's dropout (0.5) on 2 processes, each rank its own masks: 1 epoch + a resumed
    second equals 2 epochs in one go, bit for bit (rank 0's stream is in the checkpoint, the
    others redraw theirs from (seed, rank, epoch))."""
    pytest.importorskip("sklearn", reason="scikit-learn (the digits extra) not installed")
    common = ["model=cnn", "cnn_fc=32", "max_train=150", "batch_size=16", "threads=1"]
    assert (
        torchrun("classify", "train", "--out", "a", "epochs=2", *common, cwd=tmp_path).returncode
        == 0
    )
    assert (
        torchrun("classify", "train", "--out", "b", "epochs=1", *common, cwd=tmp_path).returncode
        == 0
    )
    assert torchrun("classify", "train", "--resume", "b", "epochs=2", cwd=tmp_path).returncode == 0
    assert _max_diff(_params(tmp_path / "a"), _params(tmp_path / "b")) == 0.0
    assert _metrics(tmp_path / "a") == [
        {**m, "seconds": a["seconds"], "wall_seconds": a["wall_seconds"]}  # (wall-clock)
        for m, a in zip(_metrics(tmp_path / "b"), _metrics(tmp_path / "a"))
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "recipe, args, per_process, tolerance",
    [
        # Adam on a loss that spikes in epoch 2 amplifies the rounding: measured 5e-5 (the
        # control with the per-process batch: 0.17).
        ("sincos", ["epochs=2", "periods=40"], 4, 1e-3),
        ("forecast", ["data=synthetic", "epochs=2", "plot=false"], 16, TOLERANCE),
    ],
)
def test_forecasting_on_2_processes_equals_one_with_the_combined_batch(
    recipe, args, per_process, tolerance, tmp_path
):
    from unroll.recipes import forecast, sincos

    module = {"sincos": sincos, "forecast": forecast}[recipe]
    common = [*args, "threads=1", "tensorboard=false"]
    job = torchrun(
        recipe, "train", "--out", "ddp", *common, f"batch_size={per_process}", cwd=tmp_path
    )
    _written_once_by_rank_0(tmp_path / "ddp", job)
    config = module.RECIPE.make_config(overrides=[*common, f"batch_size={2 * per_process}"])
    module.train(config, out=tmp_path / "one", quiet=True)
    assert _max_diff(_params(tmp_path / "ddp"), _params(tmp_path / "one")) < tolerance


# -- autoencode ------------------------------------------------------------------------------


def test_autoencoder_on_2_processes_equals_one_with_the_combined_batch(tmp_path):
    """The dense autoencoder on 53 digits, batch 8 per process: 3 global batches of 16, then 5
    images (3 on rank 0 at weight 6/5, 2 on rank 1 at weight 4/5); Adam, 2 epochs, noise=none
    (a denoiser's training noise is each rank's own). Measured: 2e-8 (the control: 3e-2)."""
    pytest.importorskip("sklearn", reason="scikit-learn (the digits extra) not installed")
    from unroll.recipes import autoencode

    common = ["epochs=2", "max_train=53", "noise=none", "threads=1", "tensorboard=false"]
    job = torchrun("autoencode", "train", "--out", "ddp", *common, "batch_size=8", cwd=tmp_path)
    _written_once_by_rank_0(tmp_path / "ddp", job)
    one = {}
    for B in (16, 8):
        config = autoencode.make_config(overrides=[*common, f"batch_size={B}"])
        autoencode.train(config, out=tmp_path / f"one-{B}", quiet=True)
        one[B] = tmp_path / f"one-{B}"
    assert _max_diff(_params(tmp_path / "ddp"), _params(one[16])) < TOLERANCE
    assert _max_diff(_params(tmp_path / "ddp"), _params(one[8])) > 1e3 * TOLERANCE
    for two, single in zip(_metrics(tmp_path / "ddp"), _metrics(one[16]), strict=True):
        assert two["valid_loss"] == pytest.approx(single["valid_loss"], rel=1e-6)
        assert two["train_loss"] == pytest.approx(single["train_loss"], rel=1e-6)


def test_autoencoder_files_are_rank_0s_and_encode_refuses_torchrun(tmp_path):
    """A denoiser (masking noise; its validation noise drawn whole on each rank) on 2
    processes: rank 0 alone writes the run directory, figures, CSV and results.json and prints
    the summary. ``autoencode encode`` is single-process: under torchrun it stops with one
    line per rank and writes nothing."""
    pytest.importorskip("sklearn", reason="scikit-learn (the digits extra) not installed")
    args = ["epochs=1", "max_train=40", "batch_size=8", "noise=masking", "noise_level=0.3"]
    job = torchrun("autoencode", "train", "--out", "run", *args, "threads=1", cwd=tmp_path)
    run = tmp_path / "run"
    _written_once_by_rank_0(run, job)
    assert job.stdout.count("run directory:") == 1  # the summary: rank 0's alone
    results = json.loads((run / "results.json").read_text())
    assert results["model"].startswith("dense denoising") and results["best_epoch"] == 1
    assert (run / "test_errors.csv").is_file()
    assert set(results["figures"]) <= {p.name for p in run.glob("*.png")}

    job = torchrun("autoencode", "encode", "run", cwd=tmp_path)
    assert job.returncode != 0
    for rank in (0, 1):
        line = f"unroll: error: rank {rank}: autoencode encode runs in one process, not under"
        assert job.stderr.count(line) == 1, job.stderr[-3000:]
    assert not (run / "codes.npz").exists()


# -- seq2seq ----------------------------------------------------------------------------------

_SEQ2SEQ = [
    # 97 pairs, 8 per process: global batches of 16 cut from one length bucket (sorted, so the
    # two parts of a batch hold different numbers of target tokens: token weights), the last
    # one a single pair (rank 0 at weight 2, rank 1 a stand-in at weight 0).
    "data=reverse",
    "train_size=97",
    "min_len=3",
    "max_len=8",
    "hidden_size=16",
    "embedding_size=8",
    "epochs=2",
    "threads=1",
    "tensorboard=false",
]


@pytest.fixture(scope="module")
def seq2seq_runs(tmp_path_factory):
    """One 2-process job with batch 8, one process with batch 16 and (the control) with 8."""
    from unroll.recipes.seq2seq import make_config, train

    root = tmp_path_factory.mktemp("seq2seq")
    job = torchrun("seq2seq", "train", "--out", "ddp", *_SEQ2SEQ, "batch_size=8", cwd=root)
    for B in (16, 8):
        train(make_config(overrides=[*_SEQ2SEQ, f"batch_size={B}"]), root / f"one-{B}", quiet=True)
    return root, job


def test_seq2seq_on_2_processes_equals_one_with_the_combined_batch(seq2seq_runs):
    """Adam, 2 epochs of 7 steps: the weights (measured: 2.4e-7 apart; the control 6e-2) and
    the validation metrics, reduced over the ranks' shares, are one process's with batch 16."""
    root, job = seq2seq_runs
    assert job.returncode == 0, job.stderr[-3000:]
    ddp, one = _params(root / "ddp"), _params(root / "one-16")
    assert _max_diff(ddp, one) < TOLERANCE
    assert _max_diff(ddp, _params(root / "one-8")) > 1e3 * TOLERANCE
    two, single = _metrics(root / "ddp"), _metrics(root / "one-16")
    assert len(two) == len(single) == 2
    for a, b in zip(two, single):
        assert a["valid_exact"] == b["valid_exact"]
        assert a["valid_token_error"] == pytest.approx(b["valid_token_error"], rel=1e-9)
        assert a["valid_loss"] == pytest.approx(b["valid_loss"], rel=1e-6)
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)


def test_seq2seq_on_2_processes_rank_0_alone_writes(seq2seq_runs):
    root, job = seq2seq_runs
    _written_once_by_rank_0(root / "ddp", job)
    names = {p.name for p in (root / "ddp").iterdir()}
    assert names == {p.name for p in (root / "one-16").iterdir()}
    assert {"results.json", "test_outputs.tsv"} <= names
    assert job.stdout.count("test (greedy, 1200 examples)") == 1  # rank 1 returned None
    results = json.loads((root / "ddp" / "results.json").read_text())
    assert results["test"]["examples"] == 1200
