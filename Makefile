# The two commands at the top of the README. Both work on a fresh machine with only the package registries.
# Every package comes from requirements.lock (exact versions, installed without resolving), so a new upstream
# release cannot change what a fresh machine or CI installs. `make lock` refreshes the lock.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := pip==26.3
LOCK := requirements.lock
# What the lock is resolved against: the CPU torch wheel on this machine's disk (a plain `torch` would be a
# CUDA build of several GB), and the upscale extra's spandrel without torchvision (no CPU build for this torch;
# the ESRGAN code flipbook uses does not need it).
TORCH := torch==2.13.0
LOCK_FLAGS := --strip-extras --all-build-deps --extra test --extra upscale --extra farm --unsafe-package torchvision \
	--no-emit-index-url --no-emit-find-links

.PHONY: demo test install install-test lock lock-upgrade lint format bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q $(PIP)

# --no-deps: the lock is the whole set; nothing is resolved at install time. The editable install builds with
# the locked setuptools (no build isolation, which would fetch the newest one).
$(VENV)/.installed: $(BIN)/python $(LOCK) pyproject.toml
	$(BIN)/pip install -q --no-deps -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	touch $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed

## make demo: set up and render examples/quickstart.toml on the built-in shapes model (trained on coloured shapes)
demo: install
	HF_HUB_OFFLINE=1 $(BIN)/flipbook render examples/quickstart.toml --overwrite

## make test: set up with test extras, lint, format check and the test suite
test: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	HF_HUB_OFFLINE=1 $(BIN)/pytest -q --durations=25

## make lock: re-resolve after pyproject.toml changed, keeping every pin that still fits (adds, removes, moves
## only what the change needs); make lock-upgrade: every dependency to its newest allowed version. Land either
## only with a green `make test`. (pip-tools lives in its own venv so it cannot change the project's.)
lock lock-upgrade:
	test -x .venv-lock/bin/pip-compile || ($(PY) -m venv .venv-lock && .venv-lock/bin/pip install -q $(PIP) pip-tools==7.7.0)
	printf '%s\n' "$(TORCH)" > .venv-lock/constraints.txt
	.venv-lock/bin/pip-compile -q $(if $(filter lock-upgrade,$@),--upgrade) $(LOCK_FLAGS) -c .venv-lock/constraints.txt \
		-o $(LOCK) pyproject.toml

lint: install-test
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/flipbook bench sampler --model tiny --size 64x64 --steps 10
	$(BIN)/flipbook bench sampler --model random-sd15 --size 256x256 --steps 10

clean:
	rm -rf out .pytest_cache .ruff_cache
