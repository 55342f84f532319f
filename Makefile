# Two commands do all set-up on a fresh machine:
#   make demo   creates .venv, installs unroll, trains the embedded default language model
#   make test   creates .venv, installs unroll with test extras, runs the default test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# A CPU build of torch here; a GPU user installs their own torch build into .venv first,
# and set-up keeps any torch that is already there.
TORCH  ?= torch==2.13.0

.PHONY: demo test test-slow test-gpu gpu-carry lint format bench venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[all,dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(VENV)/bin/unroll lm train

test: venv
	$(PY) -m pytest -q

test-slow: venv
	$(PY) -m pytest -q -m slow

# On a GPU machine (its own python3 with a CUDA torch), one command of at most 570 s: smoke
# checks, ptb-medium to the end, ptb_speed --all, cells --device cuda and the suite, all under
# OUT (summary.json first; see benchmarks/gpu_check.sh). DRY=1 make test-gpu: the same flow on
# the CPU with tiny sizes (CI; tests/test_gpu_ready.py runs it).
test-gpu:
	bash benchmarks/gpu_check.sh $${OUT:-gpu-check} $(COMMIT)

# Here, before sending the tree to a GPU machine: PTB (from UNROLL_DATA, default ../shared/data)
# and the commit into .carry/ (ignored by git), which the check reads on a copy without .git.
gpu-carry:
	mkdir -p .carry/data/ptb
	cp $${UNROLL_DATA:-../shared/data}/ptb/ptb.*.txt .carry/data/ptb/
	{ git rev-parse HEAD; git status --porcelain --untracked-files=no | head -n 20; } > .carry/COMMIT

lint: venv
	$(VENV)/bin/ruff check unroll tests benchmarks
	$(VENV)/bin/ruff format --check unroll tests benchmarks

format: venv
	$(VENV)/bin/ruff format unroll tests benchmarks
	$(VENV)/bin/ruff check --fix unroll tests benchmarks

bench: venv
	$(PY) benchmarks/cells.py
	$(PY) benchmarks/ptb_speed.py

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache
