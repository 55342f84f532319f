#!/usr/bin/env bash
# The GPU check: ONE command, at most 570 s of wall time in all (GPU_CHECK_BUDGET), for a lent
# GPU machine whose command limit is 10 minutes. Each phase runs under its own cap, cut to what
# is left of the budget, so one hang cannot eat the rest; summary.json is rewritten after every
# phase, so even a kill leaves one.
#
#   make gpu-carry                                  # here, once: PTB and the commit into .carry/
#   bash benchmarks/gpu_check.sh OUT_DIR [COMMIT]   # there (= make test-gpu OUT=OUT_DIR)
#   DRY=1 bash benchmarks/gpu_check.sh OUT_DIR      # the same flow on the CPU, tiny sizes, ≤ 3 min
#
# With the device tool: run(command="bash benchmarks/gpu_check.sh $OUT", carry=[".carry"],
# timeout_s=600). ../shared does not travel: `make gpu-carry` copies PTB into .carry/data/ptb
# (ignored by git) and writes .carry/COMMIT, for a copy of the tree without .git.
#
# Phases, in order (caps in seconds on the GPU; DRY in brackets):
#   setup       a venv over the system python (--system-site-packages, and a .pth to that
#               python's own site-packages when it is itself a venv, so its CUDA torch stays),
#               the test dependencies checked, missing ones installed from .carry/wheels or the
#               index where one is reachable; environment and commit        (no cap: seconds)
#   data        PTB present and verified ($UNROLL_DATA/ptb, default .carry/data); missing PTB
#               fails loudly, and the phases that need it are skipped, never run on random ids
#               (DRY: a tiny generated corpus)
#   smoke       benchmarks/gpu_smoke.py: one JSON line per check                   70  [60]
#   ptb-medium  unroll lm train --preset ptb-medium to the end, alone on the GPU: wall time
#               and test perplexity (DRY: 3 steps of a tiny model)                300  [60]
#   ptb_speed   benchmarks/ptb_speed.py --all --data ptb --steps 150 (a line per preset)
#                                                                                  55  [40]
#   cells       benchmarks/cells.py --device cuda --quick (one line per case)      40  [30]
#               then benchmarks/parallel_rnn.py (minGRU/minLSTM vs cuDNN's GRU/LSTM, T 64..4096;
#               its lines appended to cells.jsonl)                                 30  [20]
#   tests       the suite with pytest-xdist, no -x, junit; stopped by SIGINT at its cap (the
#               rest of the budget, 20 s kept for pytest to write its summary and junit.xml)
#               (DRY: tests/test_config.py)
# Files (at most 8: the device tool returns 8): summary.json (every phase's status, seconds
# and headline figures; env and commit), log.txt, smoke.jsonl, ptb-medium.jsonl (the run's
# metrics lines, results.json last), ptb_speed.jsonl, cells.jsonl, tests.txt, junit.xml.
# Exit status: 0 when every phase is ok (or does not apply), else 1.
set -u
OUT=${1:-${OUT:-gpu-check}}
COMMIT=${2:-${GPU_CHECK_COMMIT:-}}
DRY=${DRY:-0}
BUDGET=${GPU_CHECK_BUDGET:-570}
ONLY=${GPU_CHECK_ONLY:-}  # (tests) these phases alone after setup, e.g. "tests"
# (tests) GPU_CHECK_DATA=tiny|ptb (default tiny with DRY=1), GPU_CHECK_TESTS (what pytest
# runs), GPU_CHECK_TESTS_CAP (its cap)
START_NS=$(date +%s%N)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd) || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check.XXXXXX")  # venv, run dirs: not returned
PHASES=$WORK/phases.jsonl
: > "$PHASES"
: > "$OUT/log.txt"
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ "$DRY" = 1 ] && [ -x .venv/bin/python ] && PYTHON=$ROOT/.venv/bin/python
fi
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export UNROLL_DATA=${UNROLL_DATA:-$ROOT/.carry/data}
[ "$DRY" = 1 ] && export CUDA_VISIBLE_DEVICES=""  # the CPU, even on a machine with a GPU

log() { echo "[$(date -u +%T)] $*" >> "$OUT/log.txt"; }
elapsed() { echo $(( ($(date +%s%N) - START_NS) / 1000000000 )); }
# cap WANT [RESERVE]: WANT seconds, or what is left of the budget after RESERVE, if less
cap() {
  local want=$1 left=$(( BUDGET - $(elapsed) - ${2:-8} ))
  (( left < want )) && want=$left
  (( want < 0 )) && want=0
  echo "$want"
}
wanted() { [ -z "$ONLY" ] || [[ " $ONLY " == *" $1 "* ]]; }

# record NAME STATUS SECONDS [JSON]: one phase's line; then summary.json is written again
record() {
  local extra=${4:-"{}"}
  printf '{"phase": "%s", "status": "%s", "seconds": %s, "extra": %s}\n' "$1" "$2" "$3" \
    "$extra" >> "$PHASES"
  log "phase $1: $2 ($3 s)"
  write_summary
}

write_summary() {
  "$PYTHON" - "$PHASES" "$WORK/env.json" "$OUT/summary.json" "$BUDGET" "$(elapsed)" "$DRY" \
    <<'EOF' 2>> "$OUT/log.txt"
import json, os, sys
phases_file, env_file, out, budget, elapsed, dry = sys.argv[1:]
phases = {}
for n, line in enumerate(open(phases_file, encoding="utf-8")):
    try:
        r = json.loads(line)
        phases[r["phase"]] = {"status": r["status"], "seconds": r["seconds"], **r["extra"]}
    except (ValueError, KeyError, TypeError) as e:  # a broken line must not lose the rest
        phases[f"line {n + 1}"] = {"status": f"unreadable record: {e}", "line": line[:500]}
env = json.load(open(env_file, encoding="utf-8")) if os.path.exists(env_file) else {}
bad = [k for k, v in phases.items() if v["status"] not in ("ok", "n/a")]
summary = {"check": "gpu_check", "dry": dry == "1", "ok": not bad, "not_ok": bad,
           "budget_seconds": int(budget), "elapsed_seconds": int(elapsed), **env,
           "phases": phases}
tmp = out + ".tmp"
with open(tmp, "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
    f.write("\n")
os.replace(tmp, out)
EOF
}

# run_phase NAME CAP SIGNAL STDOUT -- COMMAND...: COMMAND under `timeout` (SIGNAL at CAP, KILL
# 15 s later), stdout into STDOUT, stderr into log.txt; sets STATUS and SECS
run_phase() {
  local name=$1 limit=$2 signal=$3 stdout=$4 t0 rc
  shift 5
  if (( limit <= 0 )); then
    STATUS="skipped: no time left" SECS=0
    return
  fi
  log "phase $name: cap ${limit} s: $*"
  t0=$(date +%s%N)
  timeout --signal="$signal" --kill-after=15 "$limit" "$@" > "$stdout" 2>> "$OUT/log.txt"
  rc=$?
  SECS=$(( ($(date +%s%N) - t0) / 1000000 ))
  SECS=$(printf '%d.%03d' $(( SECS / 1000 )) $(( SECS % 1000 )))
  case $rc in
    0) STATUS=ok ;;
    124 | 137) STATUS="timeout after ${limit} s" ;;
    *) STATUS="failed (exit $rc)" ;;
  esac
}

# --- setup: venv, dependencies, environment, commit -----------------------------------------
VENV=$WORK/venv
VPY=$VENV/bin/python
setup() {
  "$PYTHON" -m venv --system-site-packages --without-pip "$VENV" || return 1
  # python3 on the GPU machine is itself a venv (/opt/torch/.venv): its site-packages are not
  # "system" ones, so a .pth adds them after the new venv's own, as site directories (their
  # own .pth files count: a venv made from this one, e.g. by the tests, sees them too).
  "$PYTHON" - "$VPY" <<'EOF' || return 1
import subprocess, sys
site = subprocess.check_output(
    [sys.argv[1], "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
).strip()
mine = [p for p in sys.path if p.endswith(("site-packages", "dist-packages"))]
with open(f"{site}/_gpu_check_parent.pth", "w", encoding="utf-8") as f:
    f.writelines(f"import site; site.addsitedir({p!r})\n" for p in mine)
EOF
  local missing
  missing=$("$VPY" - <<'EOF'
import importlib.util
need = {"torch": "torch", "numpy": "numpy", "pytest": "pytest", "xdist": "pytest-xdist",
        "execnet": "execnet", "triton": "triton", "ninja": "ninja"}
print(" ".join(d for m, d in need.items() if importlib.util.find_spec(m) is None))
EOF
  )
  if [ -n "$missing" ]; then
    log "setup: missing: $missing"
    local site
    site=$("$VPY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    local from=(--retries 0 --timeout 10)  # no index reachable: fail fast, go on without
    [ -d .carry/wheels ] && from=(--no-index --find-links .carry/wheels)
    "$PYTHON" -m pip install -q "${from[@]}" --target "$site" $missing \
      || log "setup: could not install $missing (env.json says what is there)"
  fi
  return 0
}

# the commit (argument, git, .carry/COMMIT) and the environment into env.json
setup_env() {
  if [ -z "$COMMIT" ]; then
    if git rev-parse HEAD > /dev/null 2>&1; then
      COMMIT=$(git rev-parse HEAD)
      [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && COMMIT="$COMMIT+dirty"
    elif [ -f .carry/COMMIT ]; then
      COMMIT=$(head -n 1 .carry/COMMIT)
    else
      COMMIT=unknown
    fi
  fi
  "$VPY" - "$COMMIT" "$WORK/env.json" <<'EOF'
import importlib.util, json, os, platform, subprocess, sys
import torch
env = {"commit": sys.argv[1], "python": platform.python_version(), "torch": torch.__version__,
       "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if torch.cuda.is_available():
    env["device"] = torch.cuda.get_device_name()
    env["cudnn"] = torch.backends.cudnn.version()
try:
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                          "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
    env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
except (OSError, subprocess.TimeoutExpired) as e:
    env["nvidia_smi"] = f"unavailable: {e}"
for m in ("triton", "numpy", "pytest", "xdist"):
    spec = importlib.util.find_spec(m)
    if spec is None:
        env[m] = None
    else:
        mod = __import__(m)
        env[m] = getattr(mod, "__version__", "present")
env["cpus"] = os.cpu_count()
json.dump(env, open(sys.argv[2], "w", encoding="utf-8"))
EOF
}
t0=$(date +%s)  # always (every phase runs in the venv)
if setup >> "$OUT/log.txt" 2>&1; then
  s=ok
else  # no venv: go on with the python itself, and say so
  s="failed: no venv, $PYTHON itself"
  VPY=$PYTHON
fi
setup_env >> "$OUT/log.txt" 2>&1 || s="failed: no environment (torch?), see log.txt"
record setup "$s" $(( $(date +%s) - t0 )) "{\"python\": \"$PYTHON\"}"
CUDA=$("$VPY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
if [ "$DRY" != 1 ] && [ "$CUDA" != 1 ]; then
  log "no CUDA device: this is the GPU check (DRY=1 runs it on the CPU)"
  record environment "failed: no CUDA device" 0
  exit 1
fi

# --- data: PTB, or (DRY) a tiny corpus in its file names --------------------------------------
DATA_OK=0
if wanted data; then
  t0=$(date +%s)
  if [ "${GPU_CHECK_DATA:-$([ "$DRY" = 1 ] && echo tiny || echo ptb)}" = tiny ]; then
    DATA=$WORK/tiny-ptb
    "$VPY" - "$DATA" <<'EOF' && DATA_OK=1
import random, sys
from pathlib import Path
d = Path(sys.argv[1]); d.mkdir()
r = random.Random(0)
words = [f"w{i}" for i in range(60)]
for split, n in (("train", 6000), ("valid", 800), ("test", 400)):
    text = "\n".join(" ".join(r.choice(words) for _ in range(20)) for _ in range(n // 20))
    (d / f"ptb.{split}.txt").write_text(text + "\n")
EOF
    DATA_DESC="tiny generated corpus"
  else
    DATA=ptb  # verified against PTB's SHA-256, never downloaded here, never random ids
    if DATA_DESC=$("$VPY" -c "from unroll.data.ptb import ptb_directory as d; print(d(download=False))" 2>&1); then
      DATA_OK=1
    fi
  fi
  if [ "$DATA_OK" = 1 ]; then
    record data ok $(( $(date +%s) - t0 )) "{\"data\": \"$DATA_DESC\"}"
  else
    DATA_DESC=$(echo "$DATA_DESC" | tail -n 1 | tr '"\\' "'/")
    echo "gpu_check: PTB missing: $DATA_DESC" >&2
    record data "failed: PTB missing" $(( $(date +%s) - t0 )) "{\"error\": \"$DATA_DESC\"}"
  fi
fi

# --- smoke -----------------------------------------------------------------------------------
if wanted smoke; then
  if [ "$DRY" = 1 ]; then args=(--device cpu); limit=$(cap 60); else args=(); limit=$(cap 70); fi
  run_phase smoke "$limit" TERM "$OUT/smoke.jsonl" -- "$VPY" benchmarks/gpu_smoke.py \
    --budget "$limit" "${args[@]}"
  extra=$("$VPY" -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
print(json.dumps({'checks': {r['check']: r.get('ok') for r in rows}}))" "$OUT/smoke.jsonl" 2>/dev/null || echo '{}')
  record smoke "$STATUS" "$SECS" "$extra"
fi

# --- ptb-medium to the end, alone on the GPU -----------------------------------------------------
if wanted ptb-medium; then
  if [ "$DATA_OK" != 1 ]; then
    record ptb-medium "skipped: no PTB (phase data)" 0
  else
    RUN=$WORK/ptb-medium  # checkpoints (~80 MB each) stay out of OUT
    if [ "$DRY" = 1 ]; then
      args=(--data "$DATA" hidden_size=8 epochs=1 max_steps_per_epoch=3 device=cpu threads=1)
      limit=$(cap 60)
    else
      args=(--data ptb)
      limit=$(cap 300)
    fi
    run_phase ptb-medium "$limit" TERM "$WORK/ptb-medium.out" -- "$VPY" -m unroll lm train \
      --preset ptb-medium --out "$RUN" --quiet tensorboard=false "${args[@]}"
    cat "$WORK/ptb-medium.out" >> "$OUT/log.txt"
    cat "$RUN/metrics.jsonl" > "$OUT/ptb-medium.jsonl" 2>/dev/null
    if [ -f "$RUN/results.json" ]; then
      "$VPY" -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))))" \
        "$RUN/results.json" >> "$OUT/ptb-medium.jsonl"
    fi
    extra=$("$VPY" - "$RUN" "$SECS" <<'EOF' 2>/dev/null || echo '{}'
import json, sys
from pathlib import Path
run, wall = Path(sys.argv[1]), float(sys.argv[2])
r = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
c = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
m = json.loads((run / "meta.json").read_text()) if (run / "meta.json").is_file() else {}
cfg = c.get("config", c)
print(json.dumps({"wall_seconds": wall, "test_ppl": r.get("test_ppl"),
                  "best_valid_ppl": r.get("best_valid_ppl"), "epochs": r.get("epochs"),
                  "seed": cfg.get("seed"), "device": r.get("device"),
                  "arithmetic": m.get("arithmetic")}))
EOF
    )
    record ptb-medium "$STATUS" "$SECS" "$extra"
  fi
fi

# --- ptb_speed --all --------------------------------------------------------------------------
if wanted ptb_speed; then
  if [ "$DATA_OK" != 1 ]; then
    record ptb_speed "skipped: no PTB (phase data)" 0
  else
    if [ "$DRY" = 1 ]; then
      args=(--presets ptb-test --device cpu --steps 2 --warmup 1 --rounds 1 --threads 1)
      limit=$(cap 40)
    else
      args=(--steps 150)
      limit=$(cap 55)
    fi
    run_phase ptb_speed "$limit" TERM "$OUT/ptb_speed.jsonl" -- "$VPY" benchmarks/ptb_speed.py \
      --all --data "$DATA" "${args[@]}"
    extra=$("$VPY" -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{') and 'preset' in l]
rows = [r for r in rows if 'results' not in r]
print(json.dumps({'ratio': {r['preset'] + '/' + r['precision']: r.get('ratio') for r in rows}}))" \
      "$OUT/ptb_speed.jsonl" 2>/dev/null || echo '{}')
    record ptb_speed "$STATUS" "$SECS" "$extra"
  fi
fi

# --- cells --device cuda ----------------------------------------------------------------------
if wanted cells; then
  if [ "$DRY" = 1 ]; then
    args=(--device cpu --shapes tiny --repeats 1 --threads 1)
    limit=$(cap 30)
  else
    args=(--device cuda --quick)
    limit=$(cap 40)
  fi
  run_phase cells "$limit" TERM "$OUT/cells.jsonl" -- "$VPY" benchmarks/cells.py "${args[@]}"
  extra=$("$VPY" -c "
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
cases = {r['case']: ('error' not in r) for r in rows if 'case' in r}
print(json.dumps({'cases': cases}))" "$OUT/cells.jsonl" 2>/dev/null || echo '{}')
  record cells "$STATUS" "$SECS" "$extra"
  # minGRU/minLSTM (the Triton loop, the scans) vs cuDNN's GRU/LSTM: its lines are appended to
  # cells.jsonl (the device tool returns at most 8 files)
  if [ "$DRY" = 1 ]; then
    args=(--device cpu --steps 16 64 --batch 2 --hidden 8 --rounds 1)
    limit=$(cap 20)
  else
    args=(--device cuda --steps 64 256 1024 4096 --batch 64 --hidden 256 --rounds 5)
    limit=$(cap 30)
  fi
  run_phase parallel_rnn "$limit" TERM "$WORK/parallel_rnn.jsonl" -- "$VPY" \
    benchmarks/parallel_rnn.py "${args[@]}"
  cat "$WORK/parallel_rnn.jsonl" >> "$OUT/cells.jsonl" 2>/dev/null
  record parallel_rnn "$STATUS" "$SECS"
fi

# --- the suite: xdist, no -x, junit, SIGINT at the cap ----------------------------------------
if wanted tests; then
  xdist=()
  if "$VPY" -c "import xdist" 2>/dev/null; then
    n=$("$VPY" -c "import os; print(max(1, min(16, (os.cpu_count() or 2) - 1)))")
    [ "$DRY" = 1 ] && n=2
    xdist=(-n "$n")
  fi
  if [ "$DRY" = 1 ]; then
    selection=(${GPU_CHECK_TESTS:-tests/test_config.py})
    limit=$(cap ${GPU_CHECK_TESTS_CAP:-60} 20)
  else
    selection=(${GPU_CHECK_TESTS:-tests})
    limit=$(cap ${GPU_CHECK_TESTS_CAP:-600} 20)
  fi
  run_phase tests "$limit" INT "$OUT/tests.txt" -- "$VPY" -m pytest -q -p no:cacheprovider \
    -o console_output_style=classic "${xdist[@]}" --junitxml="$OUT/junit.xml" "${selection[@]}"
  extra=$("$VPY" - "$OUT/junit.xml" "$OUT/tests.txt" <<'EOF' 2>/dev/null || echo '{}'
import json, sys
import xml.etree.ElementTree as ET
out = {"summary": ([l for l in open(sys.argv[2]) if l.strip()] or [""])[-1].strip()}
try:
    root = ET.parse(sys.argv[1]).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    out.update({k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")})
except (OSError, ET.ParseError) as e:
    out["junit"] = f"unreadable: {e}"
print(json.dumps(out))
EOF
  )
  record tests "$STATUS" "$SECS" "$extra"
fi

rm -rf "$WORK"
"$PYTHON" -c "
import json, sys
s = json.load(open(sys.argv[1]))
for k, v in s['phases'].items():
    print(f\"{k:11s} {v['status']:28s} {v['seconds']:>8} s\")
print('ok' if s['ok'] else 'NOT ok: ' + ', '.join(s['not_ok']), f\"({s['elapsed_seconds']} s)\")
sys.exit(0 if s['ok'] else 1)" "$OUT/summary.json"
