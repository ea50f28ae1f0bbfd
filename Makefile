# The two commands of the README are `make lab` and `make test`; both set up .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.glx-installed
# Executed notebooks land here (ignored by git).
BUILD  := build
# `make lab LAB_IP=0.0.0.0 LAB_PORT=8890` listens on all interfaces, port 8890 (see tools/lab.sh).
LAB_IP   ?= localhost
LAB_PORT ?= 8888

.PHONY: setup lab book test test-fast notebooks bench lint strip clean

setup: $(STAMP)

# Re-install when the dependency list changes; pip's cap on this machine keeps torch <= 2.14.1.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'
	touch $(STAMP)

# As root too (--allow-root only then); no browser and the URL printed when there is no display.
lab: setup
	LAB_IP='$(LAB_IP)' LAB_PORT='$(LAB_PORT)' bash tools/lab.sh $(BIN)/jupyter

# The rendered edition: each chapter executed once with papermill (into build/), then Jupyter
# Book -> build/book/index.html. SMOKE=1: quick runs; EXECUTED=DIR: executed chapters to reuse.
book: setup
	$(BIN)/python tools/book.py $(if $(filter 1 true yes,$(SMOKE)),--smoke) \
	  $(if $(EXECUTED),--executed '$(EXECUTED)')

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
