"""The ``unroll`` command: parses arguments and calls the functions the Python API exposes.

One shape for every recipe: ``unroll <recipe> train|eval|predict|presets`` (what a recipe has),
with the config flags built once from its dataclass (`unroll.cli.flags`). The commands of
earlier versions keep working as aliases (`canonical_argv`): ``unroll train|eval|generate|
presets`` (the language model), ``unroll classify [...]``, ``unroll classify-eval``,
``unroll forecast [...]``, ``unroll forecast --demo sin-cos``. A `UserError` anywhere becomes
one line on stderr and exit status 2. Ctrl-C (SIGINT) and SIGTERM stop a run the same way (it
says how to resume), with exit status 130 and 143 (128 + the signal).

Under torchrun (``torchrun --nproc-per-node N -m unroll ...``) every process runs this same
command; the ranks other than 0 are quiet (`unroll.engine.distributed`), and their errors say
which rank they come from.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from unroll import __version__
from unroll.cli.flags import Parser, split_extras
from unroll.errors import Terminated, UserError

# recipe -> its actions (the first is the default when none is named)
ACTIONS = {
    "lm": ("train", "eval", "generate", "predict", "presets"),
    "classify": ("train", "eval", "presets"),
    "forecast": ("train", "predict", "presets"),
    "sincos": ("train", "presets"),
    "seq2seq": ("train", "eval", "predict", "presets"),
    "autoencode": ("train", "eval", "encode", "fewlabels", "presets"),
    "word2vec": ("train", "eval", "similar", "analogy", "export", "plot", "presets"),
}
LEGACY = {
    "train": ["lm", "train"],
    "eval": ["lm", "eval"],
    "generate": ["lm", "generate"],
    "presets": ["lm", "presets"],
    "classify-eval": ["classify", "eval"],
}


def canonical_argv(argv: Sequence[str]) -> list[str]:
    """Today's commands for the older spellings (see the module docstring)."""
    argv = list(argv)
    if not argv:
        return argv
    if argv[0] in LEGACY:
        argv = LEGACY[argv[0]] + argv[1:]
    elif argv[0] in ACTIONS and (
        len(argv) == 1 or argv[1] not in (*ACTIONS[argv[0]], "-h", "--help")
    ):
        argv = [argv[0], ACTIONS[argv[0]][0], *argv[1:]]
    if argv[:2] == ["forecast", "train"]:
        for i, tok in enumerate(argv):
            if tok == "--demo" and i + 1 < len(argv) and argv[i + 1] == "sin-cos":
                return ["sincos", "train", *argv[2:i], *argv[i + 2 :]]
            if tok == "--demo=sin-cos":
                return ["sincos", "train", *argv[2:i], *argv[i + 1 :]]
    if argv[:2] == ["classify", "train"]:
        for i, tok in enumerate(argv):
            if tok == "--model" and i + 1 < len(argv) and argv[i + 1] == "all":
                return [*argv[:i], "--baselines", *argv[i + 2 :]]
            if tok in ("--model=all", "model=all"):
                return [*argv[:i], "--baselines", *argv[i + 1 :]]
    return argv


def build_parser() -> Parser:
    from unroll.cli import autoencode, classify, forecast, lm, seq2seq, word2vec

    parser = Parser(
        prog="unroll",
        description="Train, evaluate and sample recurrent sequence models: "
        "unroll <recipe> train|eval|predict|presets.",
    )
    parser.add_argument("--version", action="version", version=f"unroll {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="RECIPE", parser_class=Parser)
    sub.required = True
    lm.register(sub)
    classify.register(sub)
    forecast.register(sub)
    seq2seq.register(sub)
    autoencode.register(sub)
    word2vec.register(sub)
    return parser


def one_line(message: str) -> str:
    """`message` on one line: a line break in it (from a path or a value the user typed) is
    shown as ``\\n``, so an error stays the one line scripts and people expect."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


class _NoteHandler(logging.Handler):
    """Library notes (``logging``, e.g. an old config name), kept until the command ends and
    then printed as ``unroll: note: ...`` lines on stderr — dropped when it ends in an error,
    which stays the one line printed."""

    def __init__(self) -> None:
        super().__init__()
        self.notes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        note = record.getMessage()
        if note not in self.notes:
            self.notes.append(note)

    def flush_notes(self, show: bool) -> None:
        if show:
            for note in self.notes:
                print(f"unroll: note: {one_line(note)}", file=sys.stderr, flush=True)
        self.notes.clear()


def _note_handler() -> _NoteHandler:
    log = logging.getLogger("unroll")
    for h in log.handlers:
        if isinstance(h, _NoteHandler):
            return h
    handler = _NoteHandler()
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handler


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread while a command
    runs, so a run stops as on Ctrl-C: files closed, the lock released, the resume hint."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    with _sigterm_unwinds():
        return _main(argv)


def _main(argv: Sequence[str] | None = None) -> int:
    from unroll.engine.distributed import RankZeroError, World, shutdown

    argv = list(sys.argv[1:] if argv is None else argv)
    notes = _note_handler()
    notes.notes.clear()  # logged since the last command (the Python API, in this process)
    ok = False
    world = World()
    try:
        world = World.from_env()  # torchrun's variables; the process group is joined on first use
        parser = build_parser()
        args, rest = parser.parse_known_args(canonical_argv(argv))
        extras = split_extras(rest)
        if extras and not getattr(args, "takes_overrides", False):
            raise UserError(f"unrecognized argument {extras[0]!r}")
        args.overrides = extras
        args.argv = ["unroll", *argv]  # recorded in the run directory's command.txt
        if not world.main and hasattr(args, "quiet"):
            args.quiet = True  # rank 0 alone shows progress
        code = int(args.func(args) or 0)
        shutdown()  # every rank waits for the others here (rank 0's test evaluation)
        ok = True
        return code
    except RankZeroError:
        return 2  # rank 0 printed it
    except UserError as e:
        rank = f"rank {world.rank}: " if world.size > 1 else ""
        print(f"unroll: error: {rank}{one_line(str(e))}", file=sys.stderr)
        return 2
    except Terminated:  # (under torchrun: rank 0 says it; the launcher stops the others)
        if world.main:
            print("unroll: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        if world.main:
            print("unroll: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (``unroll word2vec presets | head -1``): no traceback, and none from
        # the interpreter flushing stdout at exit either; 141 as for a tool killed by SIGPIPE.
        _silence_stdout()
        return 141
    finally:
        notes.flush_notes(show=ok and world.main)
        if not ok:
            shutdown(together=False)  # no barrier: the other ranks may never reach one


def _silence_stdout() -> None:
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (a test's StringIO)
        pass


if __name__ == "__main__":
    sys.exit(main())
