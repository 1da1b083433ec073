#!/usr/bin/env bash
# Reproduce every measured answer of docs/lab-questions.md: one sweep and one report per question.
#
#     bash docs/lab-questions.sh                 # from the lab's folder; about 15-40 minutes on 2 cores
#     QUESTIONS="lr batch" bash docs/lab-questions.sh    # only some of them
#
# Each sweep logs to boardlog/q-<question>/ and each report goes to report/q-<question>/ (report.md,
# curves.png). A sweep stopped half way carries on where it was when this is run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Small and quick, so that every question is three seeds: 10,000 training images, 3 epochs.
SMALL="--limit 10000 --epochs 3 --seed 1 2 3"
QUESTIONS="${QUESTIONS:-steps lr batch optimizer schedule mlp depth dropout batchnorm activation loss}"

ask() {  # ask NAME SWEEP-FLAGS...: the sweep, then its report
    local name=$1; shift
    [[ " $QUESTIONS " == *" $name "* ]] || return 0
    echo "=== $name: python sweep.py $* --name q-$name"
    local t0=$SECONDS
    python sweep.py "$@" --name "q-$name"
    python report.py "boardlog/q-$name" --out "report/q-$name" > /dev/null
    echo "=== $name: $((SECONDS - t0)) s"
}

t0=$SECONDS
# The reports' plain setup (SGD with momentum 0.9, a constant learning rate, no label smoothing), or ours
# (the default before 2026-12, on MNIST's images as they are: what these answers were measured with),
# unless the question is about one of those.
# How many steps to 98% and 99%, and how much the loss jumps from step to step: all 55,000 images.
ask steps      --recipe ours plain --epochs 1 --seed 1 2 3 --eval-every 25 --log-every 10
ask lr         --recipe plain --lr 0.1 0.01 0.001 $SMALL --eval-every 20
ask batch      --recipe plain --batch-size 32 64 128 $SMALL
ask optimizer  --recipe plain --optimizer sgd:lr=0.05 adam:lr=0.001 rmsprop:lr=0.001 adamw:lr=0.003 $SMALL --eval-every 20
ask schedule   --recipe plain --lr 0.05 --scheduler none step cosine onecycle --step-size 1 --gamma 0.3 $SMALL
ask mlp        --recipe ours --model mlp cnn $SMALL
ask depth      --recipe ours --channels 32 32,64 32,64,64 32,64,64,128 $SMALL
ask dropout    --recipe plain --lr 0.05 --dropout 0 0.5 --limit 2000 --epochs 15 --seed 1 2 3
ask batchnorm  --recipe plain --model cnn4bn --batchnorm yes no $SMALL
ask activation --recipe plain --lr 0.05 --activation relu tanh sigmoid $SMALL
ask loss       --recipe plain --lr 0.05 --loss cross-entropy mse $SMALL
echo "=== all: $((SECONDS - t0)) s"
