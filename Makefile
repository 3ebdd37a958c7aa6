# neudep: `make demo` (set up + run the default pipeline), `make test`, `make ui`.
# NEUDEP_CONFIG picks another config file, NEUDEP_DATA another data root.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
NEUDEP_DATA ?= data
export NEUDEP_DATA
export DAGSTER_HOME := $(abspath $(NEUDEP_DATA))/dagster
# torch's OpenMP threads spin-wait otherwise; on a shared 2-core machine that costs ~15x.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: demo test ui install clean-data cluster-demo

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	@mkdir -p $(DAGSTER_HOME)
	$(BIN)/neudep demo

# the tiny graph on a local Dask cluster (scheduler + 2 one-thread workers on 127.0.0.1) and with the
# default executor, each run training its own checkpoints; the two stores must be equal bit for bit
# (docs/cluster.md). Another config: NEUDEP_CONFIG=... make cluster-demo
cluster-demo: $(BIN)/.installed
	NEUDEP_CONFIG=$${NEUDEP_CONFIG:-tests/tiny.yaml} $(BIN)/neudep cluster-demo

# the suite on TEST_WORKERS processes (pytest-xdist; files whole on one worker): make test TEST_WORKERS=0 runs
# it in this process. One file: $(BIN)/python -m pytest tests/test_x.py (docs/development.md)
TEST_WORKERS ?= 2
test: $(BIN)/.installed
	$(BIN)/python -m pytest -n $(TEST_WORKERS)

ui: $(BIN)/.installed
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

clean-data:
	rm -rf $(NEUDEP_DATA)/store $(NEUDEP_DATA)/artifacts $(NEUDEP_DATA)/pointers $(NEUDEP_DATA)/neudep.duckdb $(NEUDEP_DATA)/dagster
