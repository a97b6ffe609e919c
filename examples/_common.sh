# Shared by the examples: stop on errors, echo commands, make the synthetic set when DATA is unset.
set -euo pipefail
VIDACT=${VIDACT:-vidact}
WORK=${WORK:-runs/examples}
EPOCHS=${EPOCHS:-8}
mkdir -p "$WORK"
run() { echo "+ $*" >&2; "$@"; }
synthetic_data() {  # a small synthetic motion set in $WORK/synth (classes differ only by motion)
    run $VIDACT data synth "$WORK/synth" --classes 8 --per-class 16 --frames 30 >&2
    echo "$WORK/synth"
}
