"""Training an encoder–decoder on the engine's loop, then scoring it on the test split.

Each step runs the whole batch of targets with teacher forcing (`Seq2Seq.forward`) and scores
every real target token (`sequence_loss`); each epoch ends with the validation split decoded
greedily, and its exact match picks the best epoch. At the end the best checkpoint decodes the
test split greedily and, with ``beam`` > 1, with beam search. Besides the engine's files, each
run directory holds::

    results.json              test scores (greedy and beam), accuracy by length, time, sizes
    test_outputs.tsv          source, output, correct (1/0) per test example (greedy;
                              ``unroll seq2seq eval --split S`` writes S_outputs.tsv)
    accuracy_by_length.png    test exact match by source length (matplotlib)
    attention.png             the attention weights of the first test example (with attention)

Under torchrun (`unroll.engine.distributed`) N processes with batch B train exactly as one
process with batch N·B: the epoch's batches are drawn as one process's of N·B pairs (the same
shuffle and length buckets, from (seed, epoch) on every rank), and rank r trains on part r of
each (`distributed.part_of`). The loss is a mean per target token, so a part's weight is
N·(its target tokens)/(the global batch's): DDP's mean over the ranks is then the global
batch's loss (a rank left without a pair runs a stand-in at weight 0; every rank runs the same
number of steps). Randomness differs per rank, as dropout's does: the teacher-forcing coins
(``teacher_forcing`` < 1) of rank 0 are the single process's, ranks > 0 draw theirs from
(seed, rank, epoch). Validation is reduced across the ranks: each rank scores its share of the
validation pairs (loss and token counts, greedy decoding and the sums of exact matches and edit
distances, `unroll.metrics.sequence.sequence_counts`) and the sums are added over the ranks
(`distributed.all_sum`), so every rank gets the whole split's metrics. Rank 0 alone decodes the
test split and writes the files above; `train` returns None on the other ranks.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn

from unroll.data import pairs as P
from unroll.data.text import Vocabulary
from unroll.engine import distributed
from unroll.engine.device import num_threads, resolve_device
from unroll.engine.loop import decayed_lr, fit, make_optimizer, supervised_step
from unroll.engine.model_check import check_memory, check_resumable
from unroll.engine.recipe import Result
from unroll.engine.run import Run, resume_point
from unroll.engine.seed import seed_everything
from unroll.errors import UserError
from unroll.fileio import atomic_write_text
from unroll.metrics.sequence import scores_from_counts, sequence_counts
from unroll.models.seq2seq import Seq2Seq, sequence_loss
from unroll.recipes.seq2seq.config import RECIPE, Seq2SeqConfig
from unroll.recipes.seq2seq.evaluate import (
    SplitScores,
    Translator,
    auto_max_decode,
    build_model,
    check_sizes,
    load_task,
    score,
)


@dataclass
class Seq2SeqResult(Result):
    run_dir: Path
    task: str
    best_epoch: int | None
    best_valid_exact: float | None
    test: dict[str, Any]  # greedy
    test_beam: dict[str, Any] | None  # beam search (beam > 1)
    seconds: float = 0.0
    parameters: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [SplitScores(**self.test).line(self.task)]
        if self.test_beam is not None:
            lines.append(SplitScores(**self.test_beam).line(self.task))
        return (
            "\n".join(lines)
            + f"\nbest epoch {self.best_epoch} (valid exact match {self.best_valid_exact or 0:.4f})"
            f", {self.seconds:.0f} s training, {self.parameters} parameters"
            f"\nrun directory: {self.run_dir}"
        )


def task_name(data: P.PairData) -> str:
    return data.name if data.name in P.TASKS else "pairs"


def train(
    config: Seq2SeqConfig | None = None,
    out: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    data: P.PairData | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
    stream: TextIO | None = None,
) -> Seq2SeqResult | None:
    """Train into a new run directory `out` (or continue the run `resume`), then score the
    best checkpoint on the test split (None on the ranks other than 0 of a torchrun job).
    Config, device and data are checked before the run directory is created. `data` may be
    passed in (tests) instead of loading `config.data`."""
    point = None
    if resume is not None:
        point = resume_point(RECIPE, resume, config if config is not None else {})
        config = point.config
    config = Seq2SeqConfig() if config is None else config
    config.validate()
    device = resolve_device(config.device)
    data = load_task(config) if data is None else data
    # The vocabularies come from the training split alone: ids depend on the data only.
    src_vocab = P.build_vocabulary(data.train.sources)
    tgt_vocab = P.build_vocabulary(data.train.targets)
    if point is not None and point.checkpoint is not None:
        saved = (point.checkpoint["src_vocab"], point.checkpoint["tgt_vocab"])
        if saved != (src_vocab.to_list(), tgt_vocab.to_list()):
            raise UserError(f"--resume {resume}: the data's vocabularies differ from the run's")

    def build() -> nn.Module:
        return build_model(config, len(src_vocab), len(tgt_vocab))

    try:
        check_memory(build, "hidden_size/embedding_size/num_layers")  # on the meta device
    except ValueError as e:  # a model that cannot be built
        raise UserError(f"model: {e}") from None
    check_sizes(config, data, len(tgt_vocab))  # a step and the final decode (beam), in memory
    if point is not None and point.checkpoint is not None:
        check_resumable(build, point.checkpoint, str(point.run_dir.checkpoint("last")))
    with (
        num_threads(config.threads),
        Run.start(
            RECIPE,
            config,
            device=device,
            out=out,
            resume=point,
            argv=argv,
            quiet=quiet,
            stream=stream,
            extra_meta={"task": task_name(data)},
        ) as run,
    ):
        return _train(run, config, data, src_vocab, tgt_vocab, device)


def _train(
    run: Run,
    config: Seq2SeqConfig,
    data: P.PairData,
    src_vocab: Vocabulary,
    tgt_vocab: Vocabulary,
    device: torch.device,
) -> Seq2SeqResult | None:
    seed_everything(config.seed)
    model = build_model(config, len(src_vocab), len(tgt_vocab)).to(device)
    optimizer = make_optimizer("adam", model.parameters(), config.lr)
    run.restore(model, optimizer)
    train_set = P.encode(data.train, src_vocab, tgt_vocab).to(device)
    valid_set = P.encode(data.valid, src_vocab, tgt_vocab).to(device)
    extra = {
        "src_vocab": src_vocab.to_list(),
        "tgt_vocab": tgt_vocab.to_list(),
        "src_level": data.src_level,
        "tgt_level": data.tgt_level,
        "max_decode": config.max_decode or auto_max_decode(data),
        "task": task_name(data),
    }
    translator = Translator(
        model,
        src_vocab,
        tgt_vocab,
        data.src_level,
        data.tgt_level,
        extra["max_decode"],
        config,
        extra,
    )
    run.say(
        f"{task_name(data)}: {len(data.train)} train, {len(data.valid)} valid, "
        f"{len(data.test)} test pairs; vocabularies {len(src_vocab)} -> {len(tgt_vocab)}; "
        f"{config.cell} {config.hidden_size}, attention {config.attention}"
    )
    # The teacher-forcing coins and the batch order are functions of the epoch (and rank)
    # alone, so a resumed run sees what an uninterrupted one would.
    coins = torch.Generator()
    world = distributed.world()
    glob_batch = distributed.global_batch(config.batch_size)  # N·B pairs
    tgt_len = train_set.tgt_len.cpu()  # the tokens each pair's loss counts

    def batches(epoch: int):
        coins.manual_seed(_coin_seed(config.seed, epoch, world.rank))
        order = torch.Generator().manual_seed(config.seed + epoch)
        for glob in P.batch_indices(train_set, glob_batch, order):
            part, weight = distributed.part_of(glob, world.rank, world.size)
            if weight:  # a mean per target token: weighted by the part's share of the tokens
                weight = world.size * int(tgt_len[part].sum()) / int(tgt_len[glob].sum())
            yield distributed.Part(train_set.batch(part.to(device)), weight)

    def loss_fn(model: Seq2Seq, batch) -> torch.Tensor:
        src, src_len, tgt_in, tgt_out = batch
        logits, _ = model(src, src_len, tgt_in, config.teacher_forcing, coins)
        return sequence_loss(logits, tgt_out, P.PAD_ID)

    def evaluate() -> dict[str, float]:
        # This rank's share of the validation pairs (all of them in one process), then the
        # sums over the ranks.
        mine = distributed.share(len(valid_set))
        loss = torch.zeros((), device=device)
        tokens = 0
        for i in range(mine.start, mine.stop, config.eval_batch_size):
            src, src_len, tgt_in, tgt_out = valid_set.batch(
                torch.arange(i, min(i + config.eval_batch_size, mine.stop), device=device)
            )
            n = int((tgt_out != P.PAD_ID).sum())
            loss += sequence_loss(model(src, src_len, tgt_in)[0], tgt_out, P.PAD_ID) * n
            tokens += n
        sources = data.valid.sources[mine]
        hyps = translator.decode(sources, batch_size=config.eval_batch_size) if sources else []
        counts = sequence_counts(
            [translator.tokens(h[0].tokens) for h in hyps], data.valid.references[mine]
        )
        keys = sorted(counts)
        loss_sum, tokens, *sums = distributed.all_sum(loss, tokens, *(counts[k] for k in keys))
        s = scores_from_counts(dict(zip(keys, sums)))
        return {
            "valid_loss": loss_sum / tokens,
            "valid_exact": s["exact_match"],
            "valid_token_error": s["token_error"],
        }

    steps = P.num_batches(len(train_set), glob_batch)
    fit(
        run,
        model,
        optimizer,
        step=supervised_step(model, optimizer, loss_fn, config.clip),
        batches=batches,
        num_batches=steps,
        epochs=config.epochs,
        evaluate=evaluate,
        select="valid_exact",
        mode="max",
        lr_at=lambda e: decayed_lr(config.lr, config.lr_decay, config.lr_decay_after, e),
        max_loss=math.log(sys.float_info.max),
        checkpoint_extra=lambda: extra,
        # per rank (buckets end in short batches)
        items_per_batch=max(1, round(len(train_set) / (steps * world.size))),
        items="pairs",
        quiet=run.quiet,
        desc=task_name(data),
    )
    if not run.main:
        return None  # the test decoding is rank 0's: it alone has the checkpoints
    return _finish(run, config, data, translator)


def _coin_seed(seed: int, epoch: int, rank: int) -> int:
    """The teacher-forcing coins' seed: the single process's on rank 0, (seed, rank, epoch)'s
    own on the others."""
    if rank == 0:
        return seed * 100_003 + epoch
    state = np.random.SeedSequence([seed % 2**63, rank, epoch, 1]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


def _finish(
    run: Run,
    config: Seq2SeqConfig,
    data: P.PairData,
    translator: Translator,
) -> Seq2SeqResult:
    """Score the best checkpoint on the test split (valid when there is none); write the
    results (history and time: the run's whole record), the outputs and the figures."""
    ckpt = run.load_best(translator.model)
    record = run.record()
    translator.model.eval()
    split, pairs = ("test", data.test) if len(data.test) else ("valid", data.valid)
    with torch.no_grad():
        greedy, outputs = score(translator, pairs, split, 1, config.eval_batch_size)
        beam = (
            score(translator, pairs, split, config.beam, config.eval_batch_size)[0]
            if config.beam > 1
            else None
        )
    lines = [
        f"{P.join(s, data.src_level)}\t{P.join(o, data.tgt_level)}\t{int(o in refs)}"
        for s, o, refs in zip(pairs.sources, outputs, pairs.references)
    ]
    atomic_write_text(run.path / f"{split}_outputs.tsv", "\n".join(lines) + "\n")
    _figures(run, config, translator, pairs, greedy, beam)
    result = Seq2SeqResult(
        run_dir=run.path,
        task=task_name(data),
        best_epoch=ckpt.get("best_epoch"),
        best_valid_exact=ckpt.get("best"),
        test=greedy.to_dict(),
        test_beam=None if beam is None else beam.to_dict(),
        seconds=record.seconds,
        parameters=sum(p.numel() for p in translator.model.parameters()),
        history=record.history,
    )
    run.write_results(result)
    return result


def _figures(
    run: Run,
    config: Seq2SeqConfig,
    translator: Translator,
    pairs: P.Pairs,
    greedy: SplitScores,
    beam: SplitScores | None,
) -> None:
    from unroll.plotting import MISSING_MATPLOTLIB, accuracy_by_length_png, attention_png

    curves = {"greedy": greedy.by_length}
    if beam is not None:
        curves[f"beam {beam.beam}"] = beam.by_length
    png = accuracy_by_length_png(
        run.path / "accuracy_by_length.png",
        curves,
        title=f"{config.data}: {config.cell} {config.hidden_size}, attention {config.attention}",
    )
    if png is None:
        run.say(f"note: figures skipped: {MISSING_MATPLOTLIB}")
        return
    if config.attention != "none":
        source = pairs.sources[0]
        hyp = translator.decode([source], beam=config.beam)[0][0]
        attention_png(
            run.path / "attention.png",
            hyp.weights.numpy(),
            source,
            translator.tokens(hyp.tokens) + (["</s>"] if hyp.finished else []),
        )
