#!/usr/bin/env bash
# UCF101 from the official archives: UCF101.rar (-> UCF-101/<Class>/v_*.avi) and
# UCF101TrainTestSplits-RecognitionTask.zip (-> ucfTrainTestlist/), then frames, C3D training, 10x3 testing.
#   UCF101=/data/UCF101 SPLIT=1 EPOCHS=45 bash examples/ucf101.sh     # real data (UCF101/ holds both folders)
#   EPOCHS=1 bash examples/ucf101.sh                                  # smoke run on the synthetic set
source "$(dirname "$0")/_common.sh"
SPLIT=${SPLIT:-1}
if [ -n "${UCF101:-}" ]; then
    run $VIDACT data index "$UCF101" --format ucf101 --split "$SPLIT" --ann "$UCF101/ucfTrainTestlist" -o "$WORK/ucf101-$SPLIT"
    LISTS="$WORK/ucf101-$SPLIT" SRC="$UCF101"; SIZE=112; FRAMES=16; WIDTH=1.0; SHORT=128
else
    LISTS=$(synthetic_data) SRC=$LISTS; SIZE=48; FRAMES=8; WIDTH=0.25; SHORT=64
fi
run $VIDACT data check "$LISTS" --workers 2 -o "$WORK/check.md" || true   # problems listed before training
run $VIDACT frames extract "$SRC" "$WORK/frames" --list "$LISTS" --short-side "$SHORT" --workers 2
run $VIDACT train --arch c3d-bn --data "$WORK/frames" --frames "$FRAMES" --size "$SIZE" --epochs "$EPOCHS" \
    --optimizer adamw --lr 0.0003 --set width_mult="$WIDTH" --out "$WORK/runs/c3d"
run $VIDACT eval "$WORK/runs/c3d/best.pt" --clips 10 --crops 3 --save-scores "$WORK/c3d_val.npz"
