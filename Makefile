# Two commands for a fresh machine:  `make demo` (set up, then serve the app) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# System tools: ffmpeg for every decode; chromium (headless) only for the browser tests.
APT_RUNTIME := ffmpeg
APT_TEST    := ffmpeg chromium espeak-ng

# Distillation data (TTS voices and free texts); not needed to run or test the app.
APT_DISTILL := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
               r-cran-janeaustenr wordnet-base fortunes

.PHONY: setup setup-test setup-distill demo test clean-models

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

setup: $(VENV)/.runtime
	@bash tools/apt_ensure.sh $(APT_RUNTIME)
	$(BIN)/python -m core setup

setup-test: $(VENV)/.dev
	@bash tools/apt_ensure.sh $(APT_TEST)
	$(BIN)/python -m core setup

setup-distill: $(VENV)/.dev
	@bash tools/apt_ensure.sh $(APT_DISTILL)
	$(BIN)/pip install -q -r requirements-distill.txt
	$(BIN)/python -m core setup

demo: setup
	$(BIN)/python app.py

test: setup-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean-models:
	rm -rf models
