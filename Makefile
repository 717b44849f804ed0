# ppcd_tf: set-up, tests and the demo. Both `make test` and `make demo` create
# (once) and reuse the virtual environment in .venv.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
DEMO_DIR := runs/demo
DEMO_CH ?= 16
DEMO_TEACHER_STEPS ?= 600
DEMO_PPCD_STEPS ?= 400
DEMO_TARGET_RATIO ?= 0.19

.PHONY: setup data test test-fast demo tensorboard clean

$(STAMP): requirements.txt requirements-test.txt setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-test.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

# The offline Fashion-MNIST: Debian's dataset-fashion-mnist package.
data:
	@if [ ! -f $(FMNIST_DIR)/train-images-idx3-ubyte.gz ]; then \
	  echo "Installing Debian package dataset-fashion-mnist ..."; \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -q && apt-get install -y -q dataset-fashion-mnist; \
	  else \
	    sudo apt-get update -q && sudo apt-get install -y -q dataset-fashion-mnist; \
	  fi; \
	fi

setup: $(STAMP) data

test: setup
	$(PY) -m pytest -q

# Everything but the multi-second integration tests.
test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# The demo: a small Fashion-MNIST teacher, then PPCD compression of it to
# DEMO_TARGET_RATIO of its generator parameters (5.2x smaller), both
# resumable, then the export of the compact generator as a SavedModel.
# What both demo stages share: data, model and teacher stage files, width.
DEMO_TRAIN = $(PY) -m ppcd_tf.train \
	  --gin_file data/fashion_mnist32.gin \
	  --gin_file model/biggan32.gin \
	  --gin_file stage/teacher.gin \
	  --gin_param "CH = $(DEMO_CH)"

demo: setup
	$(DEMO_TRAIN) \
	  --gin_param "Trainer.num_steps = $(DEMO_TEACHER_STEPS)" \
	  --gin_param "EMA_START_STEP = 200" \
	  --gin_param "EMA_DECAY = 0.99" \
	  --gin_param "Trainer.log_every = 25" \
	  --gin_param "Trainer.sample_every = 200" \
	  --gin_param "Trainer.checkpoint_every = 100" \
	  --model_dir $(DEMO_DIR)/teacher
	$(DEMO_TRAIN) \
	  --gin_file stage/ppcd.gin \
	  --gin_param "TEACHER_DIR = '$(DEMO_DIR)/teacher'" \
	  --gin_param "TARGET_PARAM_RATIO = $(DEMO_TARGET_RATIO)" \
	  --gin_param "Trainer.num_steps = $(DEMO_PPCD_STEPS)" \
	  --gin_param "EMA_DECAY = 0.99" \
	  --gin_param "Trainer.log_every = 25" \
	  --gin_param "Trainer.sample_every = 100" \
	  --gin_param "Trainer.checkpoint_every = 100" \
	  --model_dir $(DEMO_DIR)/ppcd
	$(PY) -m ppcd_tf.export --model_dir $(DEMO_DIR)/ppcd \
	  --output $(DEMO_DIR)/export --overwrite
	@echo "Demo done: teacher in $(DEMO_DIR)/teacher, compressed student in"\
	  "$(DEMO_DIR)/ppcd (samples/teacher_vs_student_*.png), its compact"\
	  "SavedModel in $(DEMO_DIR)/export; run 'make tensorboard'."

tensorboard: setup
	$(VENV)/bin/tensorboard --logdir $(DEMO_DIR)

clean:
	rm -rf $(DEMO_DIR)
