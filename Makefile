# ppcd_tf: set-up, tests and the demo. Both `make test` and `make demo` create
# (once) and reuse the virtual environment in .venv.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST_DIR := /usr/share/datasets/fashion-mnist
DEMO_DIR := runs/demo
DEMO_STEPS ?= 600

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

demo: setup
	$(PY) -m ppcd_tf.train \
	  --gin_file data/fashion_mnist32.gin \
	  --gin_file model/biggan32.gin \
	  --gin_file stage/teacher.gin \
	  --gin_param "Trainer.num_steps = $(DEMO_STEPS)" \
	  --gin_param "Trainer.log_every = 20" \
	  --gin_param "Trainer.sample_every = 200" \
	  --gin_param "Trainer.checkpoint_every = 100" \
	  --model_dir $(DEMO_DIR)/teacher
	@echo "Demo teacher in $(DEMO_DIR)/teacher: samples in"\
	  "$(DEMO_DIR)/teacher/samples/latest.png; run 'make tensorboard'."

tensorboard: setup
	$(VENV)/bin/tensorboard --logdir $(DEMO_DIR)

clean:
	rm -rf $(DEMO_DIR)
