# The two set-up-and-go commands (see README): `make demo` and `make test`.
# Each installs what it needs first (Debian packages via apt-get, Python packages into .venv).
VENV := .venv
PY   := $(VENV)/bin/python

.PHONY: setup setup-test demo test test-fast bench clean

setup:
	@bash scripts/setup.sh

# What the tests need besides: Debian's Chromium for the report-in-a-browser tests.
setup-test:
	@bash scripts/setup.sh --test

# Train -> convert -> rtl -> verify -> synth -> report on sklearn's digits (the embedded default).
demo: setup
	$(VENV)/bin/codesign flow --out runs/demo

# The whole test suite (CI runs this through .ci/run).
test: setup-test
	$(PY) -m pytest -q -rs -n 2 --dist loadfile --durations=15

# Unit tests only: no hls4ml conversion, no training, no simulation, no synthesis, no browser (markers: pyproject.toml).
test-fast: setup
	$(PY) -m pytest -q -n 2 -m "not (slow or hls4ml or train or verilator or icarus or yosys or browser)"

# Long benchmarks, kept out of the test suite: they print their measured figures.
bench: setup
	$(PY) -m codesign.tools.bench all

clean:
	rm -rf runs sim_build .pytest_cache
