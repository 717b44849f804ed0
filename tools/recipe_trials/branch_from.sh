#!/bin/bash
# usage: branch_from.sh SOURCE_RUN CUT_STEP NAME NUM_STEPS [gin params...]
# Continues the pruning phase of SOURCE_RUN (its checkpoint at CUT_STEP, the
# cut) with a retraining recipe in runs/exp/NAME, validating every 100 steps
# on the held-out training slice (extras/validation.gin), then draws the
# checkpoint curve (2,000 samples, seed 0) against the teacher's reference.
set -e
cd "$(dirname "$0")/../.."
SOURCE=$1; CUT=$2; NAME=$3; STEPS=$4; shift 4
DIR=runs/exp/$NAME
if [ ! -d $DIR ]; then
  mkdir -p $DIR/checkpoints
  cp $SOURCE/models.json $DIR/
  cp $SOURCE/checkpoints/ckpt-$CUT.* $DIR/checkpoints/
  printf 'model_checkpoint_path: "ckpt-%s"\nall_model_checkpoint_paths: "ckpt-%s"\n' $CUT $CUT > $DIR/checkpoints/checkpoint
fi
FRAC=$(python3 -c "print($CUT/$STEPS)")
ARGS=()
for p in "$@"; do ARGS+=(--gin_param "$p"); done
start=$(date +%s)
.venv/bin/python -m ppcd_tf.train --gin_file data/fashion_mnist32.gin --gin_file model/biggan32.gin \
 --gin_file stage/teacher.gin --gin_file stage/ppcd.gin --gin_file extras/validation.gin \
 --gin_param "TEACHER_DIR = '$PWD/ppcd_tf/assets/teacher_fashion_mnist32'" \
 --gin_param "TARGET_PARAM_RATIO = 0.19" --gin_param "NUM_STEPS = $STEPS" --gin_param "EMA_DECAY = 0.99" \
 --gin_param "EMA_START_STEP = 0" \
 --gin_param "Trainer.log_every = 50" --gin_param "Trainer.sample_every = 500" \
 --gin_param "Trainer.checkpoint_every = 100" --gin_param "Trainer.max_checkpoints = 30" \
 --gin_param "PPCDTrainer.prune_end_fraction = $FRAC" "${ARGS[@]}" --model_dir $DIR
echo "TRAIN_SECONDS $(( $(date +%s) - start ))"
.venv/bin/python tools/checkpoint_curve.py --model_dir $DIR --reference runs/exp/teacher_eval2k.json --min_step $((CUT + 1))
