"""How big things may be: one table of caps for every recipe's config, and the machine's memory.

A size beyond these caps is a typo, not an experiment (the deepest published recurrent stacks
have around ten layers; the widest layers a few thousand units), and without a cap it costs
hours building a model, a hang, or an allocator's traceback. Every recipe's config is checked
against `CAPS` by `unroll.config.RunConfig.validate` (a recipe may only tighten a cap, never
loosen it); readers of files check what a header declares against the same numbers
(`MAX_VOCABULARY`, ``CAPS["dim"]``) and against the file's size before they allocate.

Sizes that are fine one by one can still be too much together (beam x output length x
vocabulary at decode time): `check_bytes` compares an estimate with this machine's memory.
"""

from __future__ import annotations

import os

# field -> (smallest, largest) value a config may hold. The smallest is the recipes' own
# lower bound; the table enforces the largest (the recipes check the lower bounds with their
# own messages, e.g. "0 = all").
CAPS: dict[str, tuple[int, int]] = {
    "num_layers": (1, 100),  # stacked recurrent layers
    "hidden_size": (1, 1 << 16),  # units of a recurrent layer
    "embedding_size": (1, 1 << 16),
    "code_size": (1, 1 << 16),  # an autoencoder's code
    "channels": (1, 1 << 16),
    "dim": (1, 1 << 16),  # word vectors' dimension
    "beam": (1, 1000),  # beam width at decoding
    "max_tokens": (1, 10_000),  # tokens of one line of a pair file or predict input
    "max_decode": (0, 10_000),  # output tokens at decoding
    "vocab_size": (1, 50_000_000),
    "max_vocab": (0, 50_000_000),
    "batch_size": (1, 1 << 24),
    "eval_batch_size": (1, 1 << 24),
    "torch_batch": (1, 1 << 24),
}
MAX_LAYERS = CAPS["num_layers"][1]
MAX_VOCABULARY = CAPS["max_vocab"][1]  # words of a vocabulary (a word2vec file's header too)
MAX_DIM = CAPS["dim"][1]


def cap_help(name: str) -> str:
    """``an integer from 1 to 100``: what the table accepts for `name`."""
    low, high = CAPS[name]
    return f"an integer from {low} to {high}"


def physical_memory() -> int | None:
    """This machine's RAM in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def fits_in_memory(nbytes: float) -> bool:
    have = physical_memory()
    return have is None or nbytes <= have


def check_bytes(nbytes: float, what: str, fix: str) -> None:
    """A one-line `UserError` when `what` needs more than this machine's memory: ``"<what>
    needs about N GiB, more than this machine's M GiB: <fix>"``."""
    if not fits_in_memory(nbytes):
        from unroll.errors import UserError

        raise UserError(
            f"{what} needs about {gib(nbytes)}, more than this machine's "
            f"{gib(physical_memory() or 0)}: {fix}"
        )
