# Shared by the examples: stop on errors, echo commands, make the synthetic set when DATA is unset.
set -euo pipefail
# vidact on the PATH (an activated venv), else the checkout's .venv that `make demo` / `make test` create
if [ -z "${VIDACT:-}" ]; then
    if command -v vidact >/dev/null 2>&1; then
        VIDACT=vidact
    elif [ -x "$(dirname "${BASH_SOURCE[0]}")/../.venv/bin/vidact" ]; then
        VIDACT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv/bin/vidact"
    else
        echo "vidact not found: run 'make install' (or 'make demo') in the checkout, or 'source .venv/bin/activate'" >&2
        exit 127
    fi
fi
WORK=${WORK:-runs/examples}
EPOCHS=${EPOCHS:-8}
PER_CLASS=${PER_CLASS:-16}  # clips per class of the synthetic set (PER_CLASS=4 for a quick smoke run)
mkdir -p "$WORK"
run() { echo "+ $*" >&2; "$@"; }
synthetic_data() {  # a small synthetic motion set in $WORK/synth (classes differ only by motion)
    run $VIDACT data synth "$WORK/synth" --classes 8 --per-class "$PER_CLASS" --frames 30 >&2
    echo "$WORK/synth"
}
