# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# Both create the virtualenv on first use. Plain pip + venv: here pip resolves the
# pinned torch==2.13.0 to the CPU wheel on disk, where uv or poetry would fetch CUDA.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xnnquant-installed

.PHONY: demo test test-fast bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,examples]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/quickstart.py

test: $(STAMP)
	$(PY) -m pytest -q tests

# For development: everything but the tests marked slow (training, benchmark, many lowerings).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests

# The chart needs matplotlib, which only the benchmark uses: the 'plot' extra.
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[plot]'
	$(PY) examples/benchmark.py --plot out/benchmark.png

# A long fuzz run (tests/fuzz): N random graphs on both IRs, a summary at the end.
# SEED picks another fixed sequence of graphs.
N ?= 500
SEED ?= 0
.PHONY: fuzz
fuzz: $(STAMP)
	XNNQUANT_FUZZ_N=$(N) XNNQUANT_FUZZ_SEED=$(SEED) $(PY) -m pytest -q -s tests/fuzz/test_fuzz.py

# The ARM test (tests/arm): `make test` runs it once these tools are there and skips it otherwise.
.PHONY: arm-tools test-arm
arm-tools: $(STAMP)
	PY=$(PY) bash tests/arm/setup.sh

test-arm: arm-tools
	$(PY) -m pytest -q tests/arm

clean:
	rm -rf $(VENV) build *.egg-info
