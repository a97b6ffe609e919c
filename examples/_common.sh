# Shared by the examples: stop on errors, echo commands, make the synthetic set when DATA is unset.
set -euo pipefail
VIDACT=${VIDACT:-vidact}
WORK=${WORK:-runs/examples}
EPOCHS=${EPOCHS:-8}
PER_CLASS=${PER_CLASS:-16}  # clips per class of the synthetic set (PER_CLASS=4 for a quick smoke run)
mkdir -p "$WORK"
run() { echo "+ $*" >&2; "$@"; }
synthetic_data() {  # a small synthetic motion set in $WORK/synth (classes differ only by motion)
    run $VIDACT data synth "$WORK/synth" --classes 8 --per-class "$PER_CLASS" --frames 30 >&2
    echo "$WORK/synth"
}
