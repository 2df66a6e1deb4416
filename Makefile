# Two entry points for a fresh machine: `make demo` (the main job, offline) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/demo
DATA_DIR ?= $(RUN_DIR)/tensorflow_datasets

.PHONY: demo test install clean

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Builds the synthetic dataset, audits it, trains, evaluates and predicts one image.
demo: $(VENV)/.installed
	$(VENV)/bin/tfds build tfds_ctscan --config=synthetic --data_dir=$(DATA_DIR)
	$(PY) -m tfds_ctscan.synthetic $(RUN_DIR)/synthetic_files
	$(PY) -m tfds_ctscan.audit $(RUN_DIR)/synthetic_files --json=$(RUN_DIR)/audit.json

test: $(VENV)/.installed
	$(PY) -m pytest -q
