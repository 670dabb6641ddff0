# Two entry points for a fresh machine: `make demo` (the main job) and `make test`.
# Both create the virtualenv on first use. Plain pip + venv: here pip resolves the
# pinned torch==2.13.0 to the CPU wheel on disk, where uv or poetry would fetch CUDA.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.xnnquant-installed

.PHONY: demo test bench venv clean

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

bench: $(STAMP)
	$(PY) examples/benchmark.py

clean:
	rm -rf $(VENV) build *.egg-info
