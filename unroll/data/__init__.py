"""Turning files into tensors: text corpora and BPTT batches, IDX images, time series."""

from unroll.data.batching import batchify, bptt_batches, bptt_tensors, epoch_size
from unroll.data.corpora import resolve_corpus, tokenize_prompt
from unroll.data.download import cache_dir, download, sha256_file
from unroll.data.embedded import pydoc_corpus
from unroll.data.ptb import ptb_directory
from unroll.data.text import (
    EOS,
    UNK,
    Corpus,
    Vocabulary,
    load_corpus,
    tokenize,
)

__all__ = [
    "EOS",
    "UNK",
    "Corpus",
    "Vocabulary",
    "batchify",
    "bptt_batches",
    "bptt_tensors",
    "cache_dir",
    "download",
    "epoch_size",
    "load_corpus",
    "ptb_directory",
    "pydoc_corpus",
    "resolve_corpus",
    "sha256_file",
    "tokenize",
    "tokenize_prompt",
]
