# Two commands do all set-up on a fresh machine:
#   make demo   creates .venv, installs unroll, trains the embedded default language model
#   make test   creates .venv, installs unroll with test extras, runs the default test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# A CPU build of torch here; a GPU user installs their own torch build into .venv first,
# and set-up keeps any torch that is already there.
TORCH  ?= torch==2.13.0

.PHONY: demo test test-slow test-gpu lint format bench venv clean

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

# On a GPU machine (its own python3 with a CUDA torch): the suite, the benchmarks and
# ptb-medium to the end, all under OUT (see benchmarks/gpu_check.sh).
test-gpu:
	bash benchmarks/gpu_check.sh $${OUT:-gpu-check}

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
