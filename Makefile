# Two commands for a fresh machine:  `make demo` (set up, then serve the app) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# System tools: ffmpeg for every decode; chromium (headless) for the browser tests; the distillation
# data's TTS voices and free texts (the tests run the pipeline with every engine).
APT_RUNTIME := ffmpeg
APT_DISTILL := espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts \
               r-cran-janeaustenr wordnet-base fortunes
APT_TEST    := ffmpeg chromium $(APT_DISTILL)

.PHONY: setup setup-test setup-distill demo test clean-models

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt requirements-distill.txt $(VENV)/.runtime
	$(BIN)/pip install -q -r requirements-dev.txt -r requirements-distill.txt
	touch $@

setup: $(VENV)/.runtime
	@bash tools/apt_ensure.sh $(APT_RUNTIME)
	$(BIN)/python -m core setup

setup-test: $(VENV)/.dev
	@bash tools/apt_ensure.sh $(APT_TEST)
	$(BIN)/python -m core setup

setup-distill: setup-test

demo: setup
	$(BIN)/python app.py

test: setup-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean-models:
	rm -rf models
