# The two commands of the README are `make lab` and `make test`; both set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.glx-installed
# Executed notebooks land here (ignored by git).
BUILD  := build

.PHONY: setup lab test test-fast notebooks bench lint strip clean

setup: $(STAMP)

# Re-install when the dependency list changes; pip's cap on this machine keeps torch <= 2.14.1.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

lab: setup
	$(BIN)/jupyter lab notebooks/

test: setup
	$(BIN)/python -m pytest

# Unit tests only (no notebook execution).
test-fast: setup
	$(BIN)/python -m pytest -m "not notebook"

# Every notebook, headless, with its default (full) parameters.
notebooks: setup
	mkdir -p $(BUILD)/notebooks
	for nb in notebooks/[0-9]*.ipynb; do \
	  $(BIN)/papermill --cwd notebooks "$$nb" "$(BUILD)/notebooks/$$(basename $$nb)" || exit 1; \
	done

bench: setup
	$(BIN)/python benchmarks/bench_select.py
	$(BIN)/python benchmarks/bench_generation.py
	$(BIN)/python benchmarks/bench_paths.py

lint: setup
	$(BIN)/ruff check glx tests benchmarks

# Remove outputs from notebooks before committing (a test also fails when outputs are committed).
strip: setup
	$(BIN)/python tools/strip_notebooks.py notebooks/*.ipynb

clean:
	rm -rf $(BUILD) .pytest_cache
