#!/usr/bin/env bash
# Evaluation with saved scores: multi-view testing of two checkpoints (K clips x C crops), their scores
# saved as .npz, then late fusion with several weightings -- no model is run again for the fusion.
#   RGB_CKPT=runs/c3d/best.pt FLOW_CKPT=runs/temporal/best.pt DATA=lists/ucf101-1 bash examples/eval_fusion.sh
#   bash examples/eval_fusion.sh            # without checkpoints: uses (or makes) the demo's, in demo_out/
source "$(dirname "$0")/_common.sh"
if [ -z "${RGB_CKPT:-}" ]; then
    run $VIDACT demo "${DEMO_OUT:-demo_out}" ${DEMO_ARGS:-} > /dev/null
    RGB_CKPT=${DEMO_OUT:-demo_out}/runs/single-frame/best.pt FLOW_CKPT=${DEMO_OUT:-demo_out}/runs/two-stream-temporal/best.pt
fi
data=(); if [ -n "${DATA:-}" ]; then data=(--data "$DATA"); fi
run $VIDACT eval "$RGB_CKPT" "${data[@]}" --clips 3 --crops 3 --save-scores "$WORK/rgb.npz" --json > "$WORK/rgb.json"
run $VIDACT eval "$FLOW_CKPT" "${data[@]}" --clips 3 --crops 3 --save-scores "$WORK/flow.npz" --json > "$WORK/flow.json"
for w in 1,1 1,1.5 1,3; do
    run $VIDACT eval fuse "$WORK/rgb.npz" "$WORK/flow.npz" --weights "$w"
done
