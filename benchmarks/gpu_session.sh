#!/usr/bin/env bash
# The GPU measurements (training speed, TV-L1, multigrid), in one short run on a CUDA machine:
#   1. training clips/s of X3D-M (B=32 16x224) and SlowFast R50 8x8 (B=16 32x224) vs PyTorchVideo;
#   2. TV-L1 at 340x256 (the CUDA targets: solver >= 1000 pairs/s, whole extraction >= 600 pairs/s):
#      the fused Triton kernel with CUDA graphs at batch 1, 32 and 384, without graphs, and the
#      torch.compile step, each with its kernel path, EPE vs known flow and vs OpenCV; the batched
#      extraction (frames in, JPEG folders out, 1024 pairs); pixel-iterations per pair, bytes per
#      pair and the bound from the measured copy bandwidth; OpenCV's CPU TV-L1 as the reference;
#   3. multigrid: step time of every schedule shape and each schedule's predicted training time.
# Needs python with torch, vidact's dependencies, opencv-contrib (cv2.optflow) and, for part 1,
# pytorchvideo. PyAV is not needed when FRAMES exists (make it with: python benchmarks/flow.py
# --save-frames FRAMES). Each part has its own time limit and writes its table under OUT.
#     OUT=/tmp/gpu [PARTS="flow models multigrid"] bash benchmarks/gpu_session.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/vidact_gpu}"
PY="${PY:-python3}"
FRAMES="${FRAMES:-.gpu/bikes_frames.npz}"
PARTS="${PARTS:-flow models multigrid}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" -c "import torch, cv2; print('torch', torch.__version__, 'cv2', cv2.__version__, 'optflow', hasattr(cv2, 'optflow'))"
[ -f "$FRAMES" ] || "$PY" benchmarks/flow.py --real-pairs 8 --save-frames "$FRAMES"

if [[ " $PARTS " == *" models "* ]]; then
    echo "== 1. training clips/s vs PyTorchVideo"
    timeout 170 "$PY" benchmarks/models.py --device cuda --rounds 2 --steps 5 2>&1 | tee "$OUT/models.txt"
fi
if [[ " $PARTS " == *" flow "* ]]; then
    echo "== 2. TV-L1"
    timeout 300 "$PY" benchmarks/flow.py --device cuda --skip-cpu --batch 32 --cuda-batch 384 --cuda-repeat 16 \
        --real-pairs 8 --frames "$FRAMES" --json "$OUT/flow.json" 2>&1 | tee "$OUT/flow.txt"
fi
if [[ " $PARTS " == *" multigrid "* ]]; then
    echo "== 3. multigrid schedule speed"
    timeout 110 "$PY" benchmarks/multigrid_speed.py --device cuda --steps 4 --contiguous 2>&1 \
        | tee "$OUT/multigrid_speed.txt"
fi
