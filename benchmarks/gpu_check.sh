#!/usr/bin/env bash
# The GPU check, as one prepared command: about 8 minutes on one H200.
#
#   mkdir -p .carry/data && cp -r ../shared/data/ptb .carry/data/   # once, here (ignored by git)
#   bash benchmarks/gpu_check.sh OUT_DIR                            # there: writes 9 files
#
# (With the device tool: run(command="bash benchmarks/gpu_check.sh $OUT", carry=[".carry"]).)
# In order, each under its own time limit so one hang cannot eat the rest:
#   1. unroll lm train --preset ptb-medium to the end (the wall time is the run's own)
#   2. the whole test suite on the GPU (the CUDA tests run there; pytest-xdist when present)
#   3. benchmarks/ptb_speed.py --all (short: N steps of each preset, tf32 and bf16)
#   4. benchmarks/cells.py --device cuda (layers vs cuDNN's nn.LSTM)
#   5. benchmarks/parallel_rnn.py --device cuda (minGRU/minLSTM: Triton loop and scans vs cuDNN)
# Files: env.txt summary.txt ptb-medium.txt ptb-medium-results.json ptb-medium-metrics.jsonl
#        tests.txt ptb_speed.json cells.json parallel_rnn.jsonl
set -u
OUT=${1:-${OUT:-gpu-check}}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export UNROLL_DATA=${UNROLL_DATA:-$PWD/.carry/data}
RUN=$(mktemp -d)/ptb-medium  # checkpoints are ~80 MB each: kept out of OUT
summary() { echo "$(date +%T) $*" | tee -a "$OUT/summary.txt"; }

{
  nvidia-smi 2>&1 | head -15
  $PY -c "import torch, platform; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cudnn', torch.backends.cudnn.version(), torch.cuda.get_device_name(), 'python', platform.python_version())"
  git rev-parse HEAD 2>/dev/null
} > "$OUT/env.txt" 2>&1
summary "start; data: $UNROLL_DATA"

timeout 300 $PY -m unroll lm train --preset ptb-medium --data ptb --out "$RUN" --quiet \
  > "$OUT/ptb-medium.txt" 2>&1
summary "ptb-medium exit $?"
cp "$RUN/results.json" "$OUT/ptb-medium-results.json" 2>/dev/null
cp "$RUN/metrics.jsonl" "$OUT/ptb-medium-metrics.jsonl" 2>/dev/null

XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")
timeout 180 $PY -m pytest -q -p no:cacheprovider $XDIST tests > "$OUT/tests.txt" 2>&1
summary "tests exit $? ($(tail -n 1 "$OUT/tests.txt"))"

timeout 150 $PY benchmarks/ptb_speed.py --all --steps 300 > "$OUT/ptb_speed.json" 2>> "$OUT/summary.txt"
summary "ptb_speed exit $?"

timeout 180 $PY benchmarks/cells.py --device cuda > "$OUT/cells.json" 2>> "$OUT/summary.txt"
summary "cells exit $?"

timeout 120 $PY benchmarks/parallel_rnn.py --device cuda --batch 64 --hidden 256 --rounds 10 \
    > "$OUT/parallel_rnn.jsonl" 2>> "$OUT/summary.txt"
summary "parallel_rnn exit $?"
