"""``unroll train|eval|generate|presets``: end to end on a tiny corpus, and every bad input."""

import pytest

from unroll.cli import main
from unroll.engine import save_checkpoint
from unroll.engine.metrics_log import read_metrics
from unroll.recipes.lm.presets import PRESETS

TINY = [
    "--device",
    "cpu",
    "--quiet",
    "threads=1",
    "hidden_size=8",
    "num_layers=1",
    "num_steps=4",
    "batch_size=2",
    "epochs=1",
    "max_steps_per_epoch=6",
]


def write_corpus(directory, names=("train.txt", "valid.txt", "test.txt")):
    directory.mkdir(parents=True, exist_ok=True)
    text = "the cat sat on the mat\na dog ran to the tree\nthe cat ran\n" * 6
    for name in names:
        (directory / name).write_text(text, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    data = write_corpus(tmp_path_factory.mktemp("data"))
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 0
    return out


def test_train_prints_perplexities_and_a_sample(tmp_path, capsys):
    data = write_corpus(tmp_path / "data", ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"))
    out = tmp_path / "r"
    # flags and key=value overrides mix; '-' or '_' in flag names
    argv = ["train", "--data", str(data), "--out", str(out), "--init-scale", "0.2", "--seed=4"]
    assert main(argv + TINY[:-1] + ["--max_steps_per_epoch", "3"]) == 0
    printed = capsys.readouterr().out
    assert "perplexity: train" in printed and "test" in printed
    assert "sample:" in printed and str(out) in printed
    config = (out / "config.json").read_text()
    assert '"init_scale": 0.2' in config and '"seed": 4' in config and '"hidden_size": 8' in config
    assert read_metrics(out)[0]["tokens"] == 3 * 2 * 4


def test_eval_and_generate(run, capsys):
    capsys.readouterr()
    assert main(["eval", str(run), "--device", "cpu"]) == 0
    assert "test perplexity:" in capsys.readouterr().out
    assert main(["eval", str(run / "checkpoints" / "last.pt"), "--split", "valid"]) == 0
    assert "valid perplexity:" in capsys.readouterr().out
    args = ["generate", str(run), "--seed", "3", "--words", "12", "--device", "cpu"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first
    assert main(["generate", str(run), "--sentences", "2", "--top-k", "3", "--seed", "1"]) == 0


def test_generate_warns_on_unknown_prompt_words(tmp_path, capsys):
    data = write_corpus(tmp_path / "d")
    with open(data / "train.txt", "a", encoding="utf-8") as f:
        f.write("<unk> sat\n")
    out = tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["generate", str(out), "--prompt", "the zebra sat", "--words", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.err.strip().splitlines() == [
        "unroll: warning: prompt words not in the vocabulary, read as <unk>: zebra"
    ]
    assert captured.out.startswith("the zebra sat")


def test_resume_from_the_command_line(tmp_path, capsys):
    data = write_corpus(tmp_path / "d")
    out = tmp_path / "r"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 0
    assert main(["train", "--resume", str(out), "--quiet", "max_max_epoch=2"]) == 0
    assert [m["epoch"] for m in read_metrics(out)] == [1, 2]


def test_presets_table(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out.splitlines()[0]
    assert "lr_decay_after" in out and "1500" in out


def _bad(argv, capsys, match):
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("unroll: error: ") and match in lines[0], lines[0]


def _nothing_written(path):
    return not path.exists() or not any(path.iterdir())


@pytest.mark.parametrize(
    "make, extra, match",
    [
        ("missing", [], "no such directory"),
        ("empty", [], "train.txt: file is empty"),
        ("latin1", [], "not UTF-8"),
        ("missing-split", [], "missing ptb.test.txt or test.txt"),
        ("ok", ["--preset", "ptb-huge"], "unknown preset 'ptb-huge'"),
        ("ok", ["hidden_sise=3"], "unknown config key 'hidden_sise'"),
        ("ok", ["hidden_size=big"], "hidden_size='big': expected an integer"),
        ("ok", ["--lr", "fast"], "lr='fast': expected a number"),
        ("ok", ["--learning-rate", "fast"], "lr='fast': expected a number"),
        ("ok", ["dropout=1"], "dropout=1.0: expected a number in [0, 1)"),
        ("ok", ["precision=fp8"], "expected one of fp32, tf32, bf16"),
        ("ok", ["threads=100000"], "threads=100000: expected 0"),
        ("ok", ["tie_weights=true", "embedding_size=5"], "tie_weights=True needs"),
        ("ok", ["--device", "tpu"], "--device 'tpu'"),
        ("ok", ["batch_size=1000"], "train split: too little data"),
        ("ok", ["vocab_size=10000"], "vocab_size=10000: the data's vocabulary has"),
        ("ok", ["oops"], "unrecognized argument 'oops'"),
        ("ok", ["--hidden-sise", "3"], "unrecognized option '--hidden-sise'"),
    ],
)
def test_bad_train_input(tmp_path, capsys, make, extra, match):
    data = tmp_path / "data"
    if make != "missing":
        write_corpus(data)
    if make == "empty":
        (data / "train.txt").write_text("  \n", encoding="utf-8")
    elif make == "latin1":
        (data / "valid.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    elif make == "missing-split":
        (data / "test.txt").unlink()
    out = tmp_path / "out"
    _bad(["train", "--data", str(data), "--out", str(out), *TINY, *extra], capsys, match)
    assert not out.exists()


def test_existing_out_dir_is_refused(run, tmp_path, capsys):
    before = sorted(p.name for p in run.iterdir())
    command = (run / "command.txt").read_text()
    data = write_corpus(tmp_path / "d")
    _bad(["train", "--data", str(data), "--out", str(run), *TINY], capsys, "not empty")
    assert sorted(p.name for p in run.iterdir()) == before
    assert (run / "command.txt").read_text() == command


def test_checkpoint_of_another_kind(tmp_path, capsys):
    ckpt = tmp_path / "classifier.pt"
    save_checkpoint(ckpt, {"kind": "unroll.classifier", "model": {}})
    match = "is a 'unroll.classifier' checkpoint, expected 'unroll.lm'"
    _bad(["eval", str(ckpt)], capsys, match)
    _bad(["generate", str(ckpt)], capsys, match)
    # a run directory whose last checkpoint is another recipe's: resume refuses, writes nothing
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text("{}")
    save_checkpoint(run / "checkpoints" / "last.pt", {"kind": "unroll.classifier", "model": {}})
    _bad(["train", "--resume", str(run)], capsys, match)
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json"]


def test_bad_eval_and_generate_input(run, tmp_path, capsys):
    _bad(["eval", str(tmp_path / "nope")], capsys, "no such checkpoint file or run directory")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    _bad(["eval", str(tmp_path / "junk.pt")], capsys, "not an unroll checkpoint")
    _bad(["eval", str(run), "--data", str(tmp_path / "nope")], capsys, "no such directory")
    _bad(["generate", str(run), "--temperature", "0"], capsys, "--temperature")
    _bad(["generate", str(run), "--prompt", "zebra"], capsys, "not in the vocabulary")
    _bad(
        ["train", "--resume", str(run), "hidden_size=9"],
        capsys,
        "hidden_size cannot change when resuming",
    )
    _bad(
        ["train", "--resume", str(run), "--preset", "demo"],
        capsys,
        "--preset/--config and --resume",
    )


def test_key_value_after_an_option_is_an_override(tmp_path, capsys):
    data = write_corpus(tmp_path / "data")
    out = tmp_path / "o"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY, "--quiet", "seed=7"]) == 0
    assert '"seed": 7' in (out / "config.json").read_text()


def test_old_names_still_work_with_a_note(tmp_path, capsys):
    data = write_corpus(tmp_path / "data")
    out = tmp_path / "o"
    argv = ["train", "--data", str(data), "--out", str(out), *TINY, "max_max_epoch=1",
            "keep_prob=0.5"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "unroll: note: override: max_max_epoch is now called epochs" in err
    assert "keep_prob is now dropout (converted: dropout=0.5)" in err
    assert '"dropout": 0.5' in (out / "config.json").read_text()
