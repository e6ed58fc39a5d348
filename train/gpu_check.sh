#!/usr/bin/env bash
# The runtime's GPU check in one call (issue 6): CUDA tests, then the larger-preset decode
# benchmark (roofline, fused quantized decode vs bf16, CUDA graphs vs eager, HF per token),
# then `autoui bench runtime` on the shipped model against HF generate().
#
# Run from the repo root on a CUDA machine whose python3 has torch, triton and transformers:
#   OUT=runs/gpu bash train/gpu_check.sh
# Needs the held-out demonstrations (data/miniwob-area/heldout, `make default-model` collects
# them) and, where they are missing there (the workplace's CUDA image lacks both), wheels of
# crc32c and tfrecord in .whl/ (git-ignored), fetched where pip works with:
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux1_x86_64 -d .whl crc32c==2.9.post0 tfrecord==1.14.4
# With the workplace's device tool: carry ["data/miniwob-area/heldout", ".whl"], timeout ~570 s.
# Each stage has its own time limit; results and logs go to $OUT.
set -u
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
DATA=${DATA:-data/miniwob-area/heldout}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
    python3 -c "import torch, triton, transformers; print('torch', torch.__version__, 'triton', triton.__version__, 'transformers', transformers.__version__)"
    python3 -c "import flash_attn; print('flash-attn', flash_attn.__version__)" 2>&1 | tail -1
} 2>&1 | tee "$OUT/env.txt"

echo "== CUDA tests"
timeout 120 python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_runtime_gpu.py tests/test_runtime_attention.py \
    tests/test_model_vlm.py 2>&1 | tail -25 | tee "$OUT/pytest.txt"

echo "== larger preset: decode vs roofline"
timeout "${DECODE_LIMIT:-200}" python3 train/bench_decode.py --device cuda --preset clip-l336-tinyllama-1.1b \
    --batches 1,32 --contexts 512,2048 --steps 32 --json "$OUT/bench_decode.json" 2>&1 \
    | grep -v '^\[' | tail -60 | tee "$OUT/bench_decode.txt"

echo "== shipped model: runtime vs HF generate"
timeout "${BENCH_LIMIT:-200}" python3 -m autoui bench runtime --model models/default-model --device cuda \
    --json "$OUT/bench_runtime.json" --data "$DATA" --batches 1,8,32 --eval-steps 256 --latency-steps 32 \
    --repeats 3 --max-new-tokens 32 --no-hf-quantized 2>&1 | grep -v "it/s\]" | tail -40 | tee "$OUT/bench_runtime.txt"
date -u
