#!/bin/bash
# A whole PPCD run with a MAC budget beside the parameter budget and kept
# counts in multiples of 8 (issue "speed at ratio"), recipe Q otherwise,
# 1,400 steps with the cut at 300. The compaction check's tolerance is 2e-3:
# this student's activations reach ~2,000 at the cut, and float32 rounding
# alone moves its images by 1.2e-3 (relative differences <= 7e-6).
cd "$(dirname "$0")/../.."
DIR=runs/exp/R_mac10_m8
start=$(date +%s)
.venv/bin/python -m ppcd_tf.train --gin_file data/fashion_mnist32.gin --gin_file model/biggan32.gin \
 --gin_file stage/teacher.gin --gin_file stage/ppcd.gin --gin_file extras/validation.gin \
 --gin_param "TEACHER_DIR = '$PWD/ppcd_tf/assets/teacher_fashion_mnist32'" \
 --gin_param "TARGET_PARAM_RATIO = 0.19" --gin_param "TARGET_MAC_RATIO = 0.1" \
 --gin_param "PPCDTrainer.width_multiple = 8" \
 --gin_param "NUM_STEPS = 1400" --gin_param "EMA_DECAY = 0.99" \
 --gin_param "EMA_START_STEP = 0" \
 --gin_param "Trainer.log_every = 50" --gin_param "Trainer.sample_every = 500" \
 --gin_param "Trainer.checkpoint_every = 100" --gin_param "Trainer.max_checkpoints = 30" \
 --gin_param "PPCDTrainer.prune_end_fraction = 0.21428571428571427" \
 --gin_param "PPCDTrainer.compaction_tolerance = 2e-3" --model_dir $DIR
echo "TRAIN_SECONDS $(( $(date +%s) - start ))"
.venv/bin/python -m ppcd_tf.evaluate --model_dir $DIR --checkpoint best --num_samples 10000 --seeds 0,1,2 --output $DIR/eval10k_best.json
.venv/bin/python -m ppcd_tf.export --model_dir $DIR --checkpoint best --output $DIR/export_best --tolerance 2e-3
echo DONE
