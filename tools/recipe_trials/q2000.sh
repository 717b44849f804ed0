#!/bin/bash
# Q continued from step 1,500 to 2,000 at constant rates (cut stays at 300).
# Before the first run: cp -a runs/exp/Q_l1x10_dfeat10 runs/exp/Q2000 (trial Q at step 1,500).
cd "$(dirname "$0")/../.."
DIR=runs/exp/Q2000
start=$(date +%s)
.venv/bin/python -m ppcd_tf.train --gin_file data/fashion_mnist32.gin --gin_file model/biggan32.gin \
 --gin_file stage/teacher.gin --gin_file stage/ppcd.gin --gin_file extras/validation.gin \
 --gin_param "TEACHER_DIR = '$PWD/ppcd_tf/assets/teacher_fashion_mnist32'" \
 --gin_param "TARGET_PARAM_RATIO = 0.19" --gin_param "NUM_STEPS = 2000" --gin_param "EMA_DECAY = 0.99" \
 --gin_param "EMA_START_STEP = 0" \
 --gin_param "Trainer.log_every = 50" --gin_param "Trainer.sample_every = 500" \
 --gin_param "Trainer.checkpoint_every = 100" --gin_param "Trainer.max_checkpoints = 30" \
 --gin_param "PPCDTrainer.prune_end_fraction = 0.15" --model_dir $DIR
echo "TRAIN_SECONDS $(( $(date +%s) - start ))"
.venv/bin/python tools/checkpoint_curve.py --model_dir $DIR --reference runs/exp/teacher_eval2k.json --min_step 1600
cat $DIR/best.json 2>/dev/null; cat $DIR/best/*.json 2>/dev/null
.venv/bin/python -m ppcd_tf.evaluate --model_dir $DIR --checkpoint best --num_samples 10000 --seeds 0,1,2 --output $DIR/eval10k_best.json
echo DONE
