# Two entry points for a fresh machine (see README): `make serve` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install serve test test-fast lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# CPU torch first, so nothing later can pull a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/meshrag serve $(ARGS)

test: install
	$(BIN)/pytest $(ARGS)

test-fast: install
	$(BIN)/pytest -m "not slow and not pg" $(ARGS)

lint: install
	$(BIN)/ruff check . $(ARGS)

clean:
	rm -rf $(VENV) .meshrag .pytest_cache
