#!/usr/bin/env bash
# Multigrid (Wu et al., 2020): the same X3D-XS run with the plain schedule and with long+short cycles;
# compare wall-clock and top-1 (the multigrid run does epochs x 1.5 of mostly smaller, cheaper batches).
#   DATA=lists/k400 EPOCHS=30 SIZE=160 bash examples/multigrid.sh
#   EPOCHS=2 bash examples/multigrid.sh                              # smoke run on the synthetic set
source "$(dirname "$0")/_common.sh"
if [ -z "${DATA:-}" ]; then DATA=$(synthetic_data); fi
SIZE=${SIZE:-48}
common=(--arch x3d-xs --data "$DATA" --frames 4 --stride 2 --size "$SIZE" --epochs "$EPOCHS" --lr 0.05 --set threads=1)
run $VIDACT train "${common[@]}" --multigrid long+short --dry-run          # the schedule: epochs, T, S, batch, LR
run $VIDACT train "${common[@]}" --out "$WORK/runs/x3d-plain" --json > "$WORK/plain.json"
run $VIDACT train "${common[@]}" --multigrid long+short --out "$WORK/runs/x3d-mg" --json > "$WORK/mg.json"
python3 - "$WORK/plain.json" "$WORK/mg.json" <<'PY'
import json, sys
plain, mg = (json.load(open(p)) for p in sys.argv[1:])
for name, r in (("plain", plain), ("multigrid", mg)):
    print(f"{name:10s} {r['seconds']:7.0f} s   best val top-1 {100 * (r['best_val_top1'] or 0):5.1f}%")
print(f"multigrid wall-clock: {mg['seconds'] / plain['seconds']:.2f}x the plain run")
PY
