"""Every checkpoint load is checked (`unroll.engine.checkpoint.load_checkpoint`): a flipped bit
is one line naming the file, by the zip records' CRC-32s and by the digest of the contents
that a checkpoint written here carries. On old main a flipped bit in the weights gave wrong
numbers with exit 0 (eval, predict) or a "training diverged" resume."""

from __future__ import annotations

import io
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
import torch

from unroll.cli import main
from unroll.engine.checkpoint import load_checkpoint, save_checkpoint
from unroll.errors import UserError

SENTENCES = "the cat sat on the mat\na dog ran to the tree\nthe cat ran\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("integrity")
    corpus = root / "corpus"
    corpus.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        (corpus / name).write_text(SENTENCES * 6, encoding="utf-8")
    out = root / "run"
    args = ["lm", "train", "--data", str(corpus), "--device", "cpu", "--quiet", "threads=1",
            "hidden_size=8", "num_layers=1", "num_steps=4", "batch_size=2", "epochs=2",
            "max_steps_per_epoch=4", "tensorboard=false", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    return out


def record_of(data: bytes, pick) -> tuple[zipfile.ZipInfo, int]:
    """The zip record `pick` chooses among a checkpoint's records and where its bytes start."""
    info = pick(zipfile.ZipFile(io.BytesIO(data)).infolist())
    head = data[info.header_offset + 26 : info.header_offset + 30]
    name_len, extra_len = struct.unpack("<HH", head)
    return info, info.header_offset + 30 + name_len + extra_len


def rewrite(path: Path, pick, change, fix_crc: bool) -> None:
    """Replace the bytes of one record of the file by ``change(bytes)`` (same length); with
    `fix_crc`, write the record's new CRC-32 in both zip headers too (damage that the zip
    layer cannot see)."""
    data = bytearray(path.read_bytes())
    info, start = record_of(bytes(data), pick)
    new = change(bytes(data[start : start + info.file_size]))
    assert len(new) == info.file_size and new != data[start : start + info.file_size]
    data[start : start + info.file_size] = new
    if fix_crc:
        crc = struct.pack("<I", zlib.crc32(new))
        data[info.header_offset + 14 : info.header_offset + 18] = crc  # local header
        central = bytes(data).rindex(b"PK\x01\x02", 0, bytes(data).rindex(info.filename.encode()))
        data[central + 16 : central + 20] = crc
        assert zipfile.ZipFile(io.BytesIO(bytes(data))).testzip() is None
    path.write_bytes(bytes(data))


def flip(record: bytes) -> bytes:
    middle = len(record) // 2
    return record[:middle] + bytes([record[middle] ^ 0x10]) + record[middle + 1 :]


def flip_a_weight_bit(path: Path, fix_crc: bool = False) -> None:
    """Flip one bit in the middle of the largest tensor."""
    rewrite(path, lambda infos: max(infos, key=lambda i: i.file_size), flip, fix_crc)


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unroll: error: "), err
    return err[0]


@pytest.mark.parametrize("fix_crc", [False, True], ids=["crc", "digest"])
def test_a_flipped_bit_in_the_weights_is_one_line_naming_the_file(run, fix_crc, tmp_path, capsys):
    ckpt = tmp_path / "best.pt"
    shutil.copy(run / "checkpoints" / "best.pt", ckpt)
    flip_a_weight_bit(ckpt, fix_crc)
    for command in (["lm", "eval", str(ckpt)], ["lm", "generate", str(ckpt)]):
        assert main(command) == 2
        err = one_error(capsys)
        assert f"{ckpt}: damaged checkpoint" in err, err
        assert ("digest" if fix_crc else "CRC") in err


def test_a_flipped_bit_in_last_pt_stops_a_resume_with_one_line(run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    flip_a_weight_bit(copy / "checkpoints" / "last.pt")
    before = (copy / "metrics.jsonl").read_bytes()
    assert main(["lm", "train", "--resume", str(copy), "epochs=3", "--quiet"]) == 2
    err = one_error(capsys)
    assert "last.pt: damaged checkpoint" in err and "diverged" not in err
    assert (copy / "metrics.jsonl").read_bytes() == before


def test_a_checkpoint_re_saved_by_hand_loads_without_the_digest(run, tmp_path, capsys):
    """``torch.load`` + edit + ``torch.save`` (what a user, or tests/test_bad_input.py, does)
    drops the digest record: the file loads, checked by its CRCs alone."""
    ckpt = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    torch.save(ckpt, tmp_path / "hand.pt")
    assert main(["lm", "eval", str(tmp_path / "hand.pt")]) == 0
    capsys.readouterr()


def test_the_digest_covers_every_value_and_survives_devices_and_views(tmp_path):
    from unroll.engine.checkpoint import content_digest

    base = {"kind": "k", "model": {"w": torch.arange(6.0).reshape(2, 3)}, "best": 0.5}
    d = content_digest(base)
    assert not base["model"]["w"].t().contiguous().t().is_contiguous()
    assert d == content_digest(
        {**base, "model": {"w": torch.arange(6.0).reshape(2, 3).t().contiguous().t()}}
    )
    assert content_digest({**base, "best": 0.5000000001}) != d
    assert content_digest({**base, "model": {"w": torch.arange(6.0).reshape(3, 2)}}) != d
    assert content_digest({**base, "model": {"w": torch.arange(6).reshape(2, 3)}}) != d
    save_checkpoint(tmp_path / "c.pt", base)
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["model"]["w"], base["model"]["w"])
    # a value changed in the pickled part (not a tensor), the CRCs fixed: the digest sees it
    half = b"G?\xe0\x00\x00\x00\x00\x00\x00"  # 0.5, a pickled double (big-endian)
    rewrite(
        tmp_path / "c.pt",
        lambda infos: next(i for i in infos if i.filename.endswith("data.pkl")),
        lambda record: record.replace(half, half[:-1] + b"\x01"),
        fix_crc=True,
    )
    with pytest.raises(UserError, match="do not match the digest"):
        load_checkpoint(tmp_path / "c.pt")
