#!/usr/bin/env bash
# The speed issue's CUDA checks in one run, for a machine with a GPU (CI never runs this; a CPU machine skips it).
#   bash benchmarks/gpu_check.sh [OUT_DIR]     (default runs/benchmarks/gpu; PYTHON=... picks the interpreter)
# Each step has its own time limit and its log in OUT_DIR; a failing step does not stop the others. Steps: the
# Triton kernels against the reference (float32, bf16; until they pass on a GPU, implementation='triton' stays
# opt-in and 'auto' uses the reference on CUDA), the layer benchmark (paper Table 5 sizes, CUDA targets),
# both training-throughput benchmarks at the paper's settings (fp32 and bf16), FID / IS time over 50k samples.
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
grep -h -E "PASS|FAIL" "$OUT_DIR"/*.log | tee -a "$OUT_DIR/summary.txt"
