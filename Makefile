# Two entry points for a fresh machine: `make demo` (the main job, offline) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/demo
DATA_DIR ?= $(RUN_DIR)/tensorflow_datasets
# The demo recipe (synthetic data, random init, 32 px, XLA, deterministic) is demo.flags:
# one file, read by `make demo` and by tests/test_demo.py.
DEMO_FLAGS ?= --flagfile=demo.flags --data_dir=$(DATA_DIR) --model_dir=$(RUN_DIR)/model

.PHONY: demo test lint install clean

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Write + audit a synthetic Kaggle-layout folder; train (which builds tfds_ctscan/synthetic,
# the same 1,000 images, on first use, and ends with the test split's table, whole and
# leak-free; `ctdist.evaluate` re-scores any split; report.html); classify two images,
# show where the model looked (Grad-CAM) and score that against the drawn findings.
demo: $(VENV)/.installed
	$(PY) -m tfds_ctscan.synthetic $(RUN_DIR)/files
	$(PY) -m tfds_ctscan.audit $(RUN_DIR)/files --json=$(RUN_DIR)/audit.json
	$(PY) -m ctdist.train $(DEMO_FLAGS)
	$(PY) -m ctdist.predict --model_dir=$(RUN_DIR)/model \
	  "$(RUN_DIR)/files/Data/test/large.cell.carcinoma/0000.png" \
	  "$(RUN_DIR)/files/Data/test/normal/0020.png"
	$(PY) -m ctdist.explain --model_dir=$(RUN_DIR)/model \
	  "$(RUN_DIR)/files/Data/test/large.cell.carcinoma/0000.png" \
	  "$(RUN_DIR)/files/Data/test/normal/0020.png"
	$(PY) -m ctdist.explain --model_dir=$(RUN_DIR)/model --pointing_game
	@echo "report: $(RUN_DIR)/model/report.html"

# Lint (ruff.toml), then three pytest workers on two cores: much of a test is one core's
# work (tracing a graph), so a third worker fills the gaps; the slow modules are dealt
# out whole, heaviest first, one share to each worker (tests/conftest.py), and idle
# workers steal. The 15 slowest tests are listed at the end.
test: lint
	$(PY) -m pytest -q -n 3 --dist worksteal --durations=15

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs
