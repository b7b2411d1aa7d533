# Two commands a person needs: `make run` opens the app, `make test` runs every check.
# Both create the virtual environment in .venv and install the project into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest bench screenshots clean

run: $(STAMP)
	$(BIN)/python main.py $(ARGS)

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# make bench BENCH_ARGS="--quick --write-readme": a shorter run whose table goes in README.md
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py $(BENCH_ARGS)

screenshots: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python tools/screenshots.py
	QT_QPA_PLATFORM=offscreen $(BIN)/python tools/screenshots.py --dark

# What the installed commands (.venv/bin/extension-manager) are built from: a change to any of
# it installs them again, so they always run the code of the checkout.
APP_SOURCES := pyproject.toml setup.py build_package.py main.py \
	$(shell find cli gui registry migrations assets -type f -not -path '*/__pycache__/*')

# pip runs with -qq: errors only, since its notices (about index locations or its own
# version) say nothing about this project.
$(STAMP): $(APP_SOURCES)
	@if [ ! -x $(BIN)/python ]; then \
		echo "Creating a virtual environment in $(VENV)/ (first run only)"; \
		$(PYTHON) -m venv $(VENV); \
		$(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check --upgrade pip; \
	fi
	@echo "Installing Extension Manager and its test tools into $(VENV)/"
	@$(BIN)/python -m pip install --quiet --quiet --disable-pip-version-check '.[test]'
	@echo "Checking the system packages Qt and the window tests need (.ci/system-packages)"
	@bash .ci/system-packages
	@touch $(STAMP)

clean:
	rm -rf $(VENV) build dist *.egg-info
