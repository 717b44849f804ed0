#!/bin/bash
# usage: full_run.sh NAME NUM_STEPS PRUNE_END_FRACTION [gin params...]
# A whole demo-style PPCD run (pruning phase included), then the checkpoint curve.
set -e
cd "$(dirname "$0")/../.."
NAME=$1; STEPS=$2; FRAC=$3; shift 3
DIR=runs/exp/$NAME
ARGS=()
for p in "$@"; do ARGS+=(--gin_param "$p"); done
start=$(date +%s)
.venv/bin/python -m ppcd_tf.train --gin_file data/fashion_mnist32.gin --gin_file model/biggan32.gin \
 --gin_file stage/teacher.gin --gin_file stage/ppcd.gin \
 --gin_param "TEACHER_DIR = '$PWD/ppcd_tf/assets/teacher_fashion_mnist32'" \
 --gin_param "TARGET_PARAM_RATIO = 0.19" --gin_param "NUM_STEPS = $STEPS" --gin_param "EMA_DECAY = 0.99" \
 --gin_param "EMA_START_STEP = 0" \
 --gin_param "Trainer.log_every = 50" --gin_param "Trainer.sample_every = 500" \
 --gin_param "Trainer.checkpoint_every = 100" --gin_param "Trainer.max_checkpoints = 30" \
 --gin_param "PPCDTrainer.prune_end_fraction = $FRAC" "${ARGS[@]}" --model_dir $DIR
echo "TRAIN_SECONDS $(( $(date +%s) - start ))"
.venv/bin/python tools/checkpoint_curve.py --model_dir $DIR --reference runs/exp/teacher_eval2k.json
