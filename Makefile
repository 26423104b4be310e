# Two entry points: `make demo` and `make test`. Both set up .venv and the reference data, idempotently:
# the venv is reinstalled only when pyproject.toml changes, and `yolo9000 setup` fetches only what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
export YOLO9000_HOME ?= $(HOME)/.cache/yolo9000

.PHONY: demo test test-all setup bench clean

$(INSTALLED): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[dev]'
	touch $(INSTALLED)

setup: $(INSTALLED)
	$(BIN)/yolo9000 setup

demo: setup
	$(BIN)/yolo9000 demo

test: setup
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

test-all: setup
	$(BIN)/python -m pytest -q -m "not gpu"

bench: setup
	for f in bench/*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) runs
