# Two entry points for a fresh machine (see README): `make serve` and `make test`.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed-stamp
ARGS     ?=
# The browser tests (tests/web) drive Debian's Chromium (or the binary MESHRAG_CHROMIUM names).
DEBIAN_CHROMIUM ?= /usr/bin/chromium

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install chromium serve test test-fast lint clean

# pip prints what it downloads and installs: the first install takes a few minutes.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	# CPU torch first, so nothing later can pull a CUDA build.
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Debian's chromium package for the browser tests, installed only when it is missing.
chromium:
	@if [ -n "$(MESHRAG_CHROMIUM)" ]; then \
	  [ -x "$(MESHRAG_CHROMIUM)" ] && exit 0; \
	  echo "MESHRAG_CHROMIUM=$(MESHRAG_CHROMIUM) is not an executable file: point it at a Chromium binary," \
	    "or unset it to use Debian's chromium package ($(DEBIAN_CHROMIUM))." >&2; exit 1; fi; \
	if [ -x "$(DEBIAN_CHROMIUM)" ]; then exit 0; fi; \
	if [ "$$(id -u)" -eq 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; \
	else echo "The browser tests need Chromium and $(DEBIAN_CHROMIUM) is missing: install Debian's package" \
	  "as root (apt-get install chromium), or set MESHRAG_CHROMIUM to a Chromium binary; then rerun." >&2; \
	  exit 1; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "The browser tests need Chromium and this machine has" \
	  "no apt-get: install Chromium and set MESHRAG_CHROMIUM to its binary; then rerun." >&2; exit 1; fi; \
	echo "$(DEBIAN_CHROMIUM) is missing: installing Debian's chromium package for the browser tests"; \
	apt="$$sudo env DEBIAN_FRONTEND=noninteractive apt-get"; \
	$$apt install -y chromium || { $$apt update && $$apt install -y chromium; }

serve: install
	$(BIN)/meshrag serve $(ARGS)

test: install chromium
	$(BIN)/pytest $(ARGS)

test-fast: install
	$(BIN)/pytest -m "not slow and not pg" $(ARGS)

lint: install
	$(BIN)/ruff check . $(ARGS)

clean:
	rm -rf $(VENV) .meshrag .pytest_cache
