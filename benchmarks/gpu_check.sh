#!/usr/bin/env bash
# The speed issue's CUDA checks in one run, for a machine with a GPU (CI never runs this; a CPU machine skips it).
#   bash benchmarks/gpu_check.sh [OUT_DIR]     (default runs/benchmarks/gpu; PYTHON=... picks the interpreter)
# Each step has its own time limit and its log in OUT_DIR; a failing step does not stop the others. Steps: the
# Triton kernels against the reference (float32, bf16; until they pass on a GPU, implementation='triton' stays
# opt-in and 'auto' uses the reference on CUDA), the layer benchmark (paper Table 5 sizes, CUDA targets),
# both training-throughput benchmarks at the paper's settings (fp32 and bf16), FID / IS time over 50k samples, and
# `check` (docs/check.md) of both paper configs on this GPU over small synthetic trees in ImageNet's and Paris
# StreetView's layouts (benchmarks/synthetic_trees.py; random Inception weights when the real ones are not cached):
# the paper's networks, batch and evaluators; the verdicts in OUT_DIR/{gan,inpaint}_check.json (the counts warn:
# the trees are small; the projected wall time is the paper run's on this GPU).
set -u
OUT_DIR=${1:-runs/benchmarks/gpu}
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$(pwd)
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: $PY cannot import torch or sees no CUDA device; nothing run" | tee "$OUT_DIR/summary.txt"
    exit 0
fi
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    timeout "$limit" "$@" > "$OUT_DIR/$name.log" 2>&1
    local rc=$?
    echo "$name: exit $rc after $((SECONDS - start)) s ($*)" | tee -a "$OUT_DIR/summary.txt"
}
: > "$OUT_DIR/summary.txt"
"$PY" -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT_DIR/summary.txt"
step triton_tests 240 "$PY" -m pytest -q -p no:cacheprovider tests/common/test_attentive_norm_triton.py
# AN as it runs by default ("auto": the reference on CUDA) beside the fused torch path and the opt-in Triton kernels
step layers 300 "$PY" -m benchmarks.layers --device cuda --layers in an an_fused an_triton sa \
    --json "$OUT_DIR/layers_{device}.json"
step gan_throughput 300 "$PY" -m benchmarks.gan_throughput --device cuda --configs paper --rounds 3 --bf16 \
    --json "$OUT_DIR/gan_throughput.json"
step inpaint_throughput 240 "$PY" -m benchmarks.inpaint_throughput --device cuda --configs paper \
    --json "$OUT_DIR/inpaint_throughput.json"
step eval_speed 300 "$PY" -m benchmarks.eval_speed --device cuda --json "$OUT_DIR/eval_speed.json"
# check of the paper configs: trees and the checks' run folders (a 1 GiB checkpoint) in a scratch folder
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
step synthetic_trees 300 "$PY" -m benchmarks.synthetic_trees "$SCRATCH" --classes 1000 --train-per-class 4 \
    --paris-train 324 --paris-test 100 --inception
keep_verdict() {  # keep_verdict NAME: the check's verdict (check.json) as OUT_DIR/NAME_check.json
    cp "$SCRATCH/$1/check/check.json" "$OUT_DIR/$1_check.json" 2>/dev/null \
        || echo "$1_check: no check.json written" | tee -a "$OUT_DIR/summary.txt"
}
INCEPTION=()  # the real weights when cached, else the random ones the tree writer left
if [ -f "$SCRATCH/inception-random.pth" ]; then
    for evaluator in val_evaluator test_evaluator; do
        INCEPTION+=("--model.$evaluator.init_args.inception_weights" "$SCRATCH/inception-random.pth")
    done
fi
step gan_check 600 "$PY" -m an_gan check --config configs/an_gan/imagenet128.yaml \
    --data.init_args.root "$SCRATCH/imagenet" --trainer.accelerator gpu --trainer.default_root_dir "$SCRATCH/gan" \
    ${INCEPTION[@]+"${INCEPTION[@]}"}
keep_verdict gan
step inpaint_check 480 "$PY" -m an_inpaint check --config configs/an_inpaint/paris256.yaml \
    --data.init_args.root "$SCRATCH/paris" --trainer.accelerator gpu --trainer.default_root_dir "$SCRATCH/inpaint"
keep_verdict inpaint
grep -h -E "PASS|FAIL" --exclude='*_check.log' "$OUT_DIR"/*.log | tee -a "$OUT_DIR/summary.txt"
grep -H "^verdict:" "$OUT_DIR"/*_check.log | tee -a "$OUT_DIR/summary.txt"
