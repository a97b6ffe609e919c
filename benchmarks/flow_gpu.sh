#!/usr/bin/env bash
# TV-L1 on a GPU machine: the same table as benchmarks/flow.py plus torch-CUDA rows
# (batch 1, batch 32 and a large batch of tiled pairs), and a short end-to-end extraction.
# Usage: bash benchmarks/flow_gpu.sh [OUT_DIR]     (needs the venv: .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-/tmp/vidact_flow_gpu}}"
mkdir -p "$OUT"
PY="${PY:-.venv/bin/python}"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" benchmarks/flow.py --device cuda --batch 32 --cuda-repeat 32 --skip-eager --real-pairs 8 \
    --json "$OUT/flow_bench.json" 2>&1 | tee "$OUT/flow_bench.txt"
# End to end: synthetic videos -> flow JPEGs on the GPU (decode prefetch overlaps the solver).
"$PY" -m vidact data synth "$OUT/synth" --classes 4 --per-class 4 --frames 32 --size 128 >/dev/null
/usr/bin/time -v "$PY" -m vidact flow extract "$OUT/synth/videos" "$OUT/flow" --device cuda --json \
    > "$OUT/extract.json" 2> "$OUT/extract_time.txt" || true
grep -E "Elapsed|Maximum resident" "$OUT/extract_time.txt" || true
cat "$OUT/extract.json"
