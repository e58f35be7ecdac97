# The two commands at the top of the README. Both work on a fresh machine with only the package registries.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: demo test install install-test lint format bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first and pinned, so no dependency pulls a CUDA build
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e . $(TORCH)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[test]" $(TORCH)
	# spandrel without its torchvision requirement: there is no CPU torchvision for this torch, and the CUDA
	# one breaks transformers' imports; the ESRGAN code flipbook uses does not need it (tests stub it)
	$(BIN)/pip install -q --no-deps "spandrel>=0.4" "einops>=0.7"
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make demo: set up and render examples/quickstart.toml on the built-in tiny model
demo: install
	HF_HUB_OFFLINE=1 $(BIN)/flipbook render examples/quickstart.toml

## make test: set up with test extras, lint, format check and the test suite
test: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q

lint: install-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/flipbook bench sampler --model tiny --size 64x64 --steps 10
	$(BIN)/flipbook bench sampler --model random-sd15 --size 256x256 --steps 10

clean:
	rm -rf out .pytest_cache .ruff_cache
