#!/bin/bash
# usage: branch.sh NAME NUM_STEPS [gin params...]
# Continues the pruning phase of runs/exp/prune300 (cut at step 300) with a
# retraining recipe, then evaluates the EMA student on 2,000 samples, seed 0.
set -e
cd "$(dirname "$0")/../.."
NAME=$1; STEPS=$2; shift 2
DIR=runs/exp/$NAME
if [ ! -d $DIR ]; then
  mkdir -p $DIR/checkpoints
  cp runs/exp/prune300/models.json $DIR/
  cp runs/exp/prune300/checkpoints/ckpt-300.* $DIR/checkpoints/
  printf 'model_checkpoint_path: "ckpt-300"\nall_model_checkpoint_paths: "ckpt-300"\n' > $DIR/checkpoints/checkpoint
fi
FRAC=$(python3 -c "print(300/$STEPS)")
ARGS=()
for p in "$@"; do ARGS+=(--gin_param "$p"); done
start=$(date +%s)
.venv/bin/python -m ppcd_tf.train --gin_file data/fashion_mnist32.gin --gin_file model/biggan32.gin \
 --gin_file stage/teacher.gin --gin_file stage/ppcd.gin \
 --gin_param "TEACHER_DIR = '$PWD/ppcd_tf/assets/teacher_fashion_mnist32'" \
 --gin_param "TARGET_PARAM_RATIO = 0.19" --gin_param "NUM_STEPS = $STEPS" --gin_param "EMA_DECAY = 0.99" \
 --gin_param "Trainer.log_every = 50" --gin_param "Trainer.sample_every = 500" \
 --gin_param "Trainer.checkpoint_every = 100" --gin_param "Trainer.max_checkpoints = 30" \
 --gin_param "PPCDTrainer.prune_end_fraction = $FRAC" "${ARGS[@]}" --model_dir $DIR
echo "TRAIN_SECONDS $(( $(date +%s) - start ))"
.venv/bin/python -m ppcd_tf.evaluate --model_dir $DIR --num_samples 2000 --seeds 0 --output $DIR/eval2k.json
