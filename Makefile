# Two entry points for a fresh machine: `make demo` (the main job, offline) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
RUN_DIR ?= runs/demo
DATA_DIR ?= $(RUN_DIR)/tensorflow_datasets
# Synthetic data, random init (ImageNet weights need the network), 64 px: a few minutes on 2 CPU cores.
DEMO_FLAGS ?= --dataset=tfds_ctscan/synthetic --data_dir=$(DATA_DIR) --model_dir=$(RUN_DIR)/model \
  --weights=none --nofreeze_batchnorm --image_size=64 --batch_size=32 \
  --head_epochs=0 --finetune_layers=-1 --finetune_lr=1e-3 --finetune_epochs=10 \
  --augment_rotation=0 --augment_zoom=0 --augment_shift=0 --augment_brightness=0 \
  --patience=10 --log_every_steps=10

.PHONY: demo test install clean

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

# Build + audit the synthetic dataset, train, evaluate (whole and leak-free), predict one image.
demo: $(VENV)/.installed
	$(VENV)/bin/tfds build tfds_ctscan --config=synthetic --data_dir=$(DATA_DIR)
	$(PY) -m tfds_ctscan.synthetic $(RUN_DIR)/files
	$(PY) -m tfds_ctscan.audit $(RUN_DIR)/files --json=$(RUN_DIR)/audit.json
	$(PY) -m ctdist.train --strategy=auto $(DEMO_FLAGS)
	$(PY) -m ctdist.evaluate --model_dir=$(RUN_DIR)/model --split=test
	$(PY) -m ctdist.predict --model=$(RUN_DIR)/model/model.keras \
	  "$(RUN_DIR)/files/Data/test/large.cell.carcinoma/0000.png" \
	  "$(RUN_DIR)/files/Data/test/normal/0020.png"

test: $(VENV)/.installed
	$(PY) -m pytest -q

clean:
	rm -rf runs
