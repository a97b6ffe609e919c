#!/usr/bin/env bash
# Two-stream: the spatial net on single RGB frames, the temporal net on 10 stacked TV-L1 flow fields,
# late fusion of their saved scores (weights 1 : 1.5, as in Simonyan & Zisserman).
#   DATA=lists/ucf101-1 SRC=/data/UCF101 bash examples/two_stream.sh   # a data set folder from `vidact data index`
#   EPOCHS=1 PER_CLASS=4 bash examples/two_stream.sh                  # smoke run on a small synthetic set
# Flow uses OpenCV's full TV-L1 effort here (about 1 s per frame pair on one CPU core; use --device cuda on a GPU).
source "$(dirname "$0")/_common.sh"
if [ -n "${DATA:-}" ]; then SRC=${SRC:-$DATA}; SIZE=${SIZE:-224}; WIDTH=${WIDTH:-1.0}
else DATA=$(synthetic_data) SRC=$DATA; SIZE=48; WIDTH=0.25; fi
run $VIDACT frames extract "$SRC" "$WORK/frames" --list "$DATA" --fps 12.5 --workers 2
run $VIDACT flow extract "$WORK/frames" "$WORK/flow" --list "$WORK/frames" --workers 2   # flow_x/flow_y JPEGs + flow.json
common=(--data "$WORK/frames" --size "$SIZE" --epochs "$EPOCHS" --optimizer adamw --lr 0.002 --set width_mult="$WIDTH")
run $VIDACT train --arch two-stream-spatial "${common[@]}" --out "$WORK/runs/spatial"
run $VIDACT train --arch two-stream-temporal "${common[@]}" --set flow_root="$WORK/flow" --out "$WORK/runs/temporal"
run $VIDACT eval "$WORK/runs/spatial/best.pt" --clips 5 --save-scores "$WORK/rgb.npz"
run $VIDACT eval "$WORK/runs/temporal/best.pt" --clips 5 --save-scores "$WORK/flow.npz"
run $VIDACT eval fuse "$WORK/rgb.npz" "$WORK/flow.npz" --weights 1,1.5
