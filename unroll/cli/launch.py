"""``unroll-torchrun``: PyTorch's ``torchrun``, with a failed job ending in one line.

torchrun reports a process that exited non-zero with a Python traceback of its own
(``ChildFailedError``) and a summary table, below the one-line ``unroll: error:`` the process
already printed. This launcher takes exactly torchrun's arguments and runs its launch
(`torch.distributed.run.run`), but ends a failed job with one line naming the failed ranks and
their exit status, and exits with the first failure's status (2 for a bad input, 143 for
SIGTERM ...)::

    unroll-torchrun --nproc-per-node 4 -m unroll lm train --preset ptb-medium --data ptb

A job that succeeds behaves exactly as under torchrun.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    # The agent logs each failed process with its own summary; the line below says it once.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as e:
        failed = sorted(e.failures.items(), key=lambda kv: kv[1].timestamp)
        first_rank, first = failed[0]
        ranks = ", ".join(
            f"rank {rank} ({_how(f.exitcode)})" for rank, f in sorted(e.failures.items())
        )
        print(
            f"unroll-torchrun: error: {len(failed)} process(es) failed: {ranks}; rank "
            f"{first_rank} first (its own error is above)",
            file=sys.stderr,
            flush=True,
        )
        code = first.exitcode
        return code if 0 < code < 256 else 1
    except KeyboardInterrupt:
        print("unroll-torchrun: interrupted", file=sys.stderr)
        return 130
    return 0


def _how(code: int) -> str:
    """``exit 2``; ``signal SIGTERM`` for a process torchrun stopped after another failed."""
    import signal

    if code >= 0:
        return f"exit {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


if __name__ == "__main__":
    sys.exit(main())
