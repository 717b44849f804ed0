#!/bin/bash
# Pruning phase of the demo recipe (cut at step 300 of 1000); branches start from ckpt-300.
cd "$(dirname "$0")/../.."
.venv/bin/python -m ppcd_tf.train --gin_file data/fashion_mnist32.gin --gin_file model/biggan32.gin \
 --gin_file stage/teacher.gin --gin_file stage/ppcd.gin \
 --gin_param "TEACHER_DIR = '$PWD/ppcd_tf/assets/teacher_fashion_mnist32'" \
 --gin_param "TARGET_PARAM_RATIO = 0.19" --gin_param "NUM_STEPS = 1000" --gin_param "EMA_DECAY = 0.99" \
 --gin_param "Trainer.log_every = 25" --gin_param "Trainer.sample_every = 250" \
 --gin_param "Trainer.checkpoint_every = 100" --gin_param "Trainer.max_checkpoints = 20" \
 --gin_param "PPCDTrainer.prune_end_fraction = 0.3" --model_dir runs/exp/prune300
