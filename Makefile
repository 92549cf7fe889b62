# Two set-up commands: `make demo` and `make test`. Both create .venv and install the package with the
# tested versions (constraints.txt) when needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install test test-fast lint format demo bench clean

$(STAMP): setup.cfg pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# The whole suite: lint, then pytest (slow tests included).
test: lint
	$(PY) -m pytest --runslow

# Fast subset while developing.
test-fast: lint
	$(PY) -m pytest

# Trains the two demos on bundled data (scikit-learn digits; scikit-image / scikit-learn photographs).
demo: install
	$(PY) -m an_gan fit
	$(PY) -m an_inpaint fit
	@echo "Demo results: the 'results in' lines above (sample grid and AN layouts under runs/an_gan/.../images,"
	@echo "inpainting panels and AN layouts under runs/an_inpaint/.../images)."

bench: install
	$(PY) -m benchmarks.layers
	$(PY) -m benchmarks.gan_throughput
	$(PY) -m benchmarks.inpaint_throughput

clean:
	rm -rf runs wandb lightning_logs .pytest_cache
