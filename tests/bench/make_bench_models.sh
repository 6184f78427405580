#!/bin/sh
# make_bench_models.sh - the benchmark models of tests/bench/RESULTS.md, made reproducibly into
# DIR (default $BENCH_DIR or /tmp; ~1 GB each as Q4_0, 3.7 GB for the F16 source; never commit
# them). All come from ../shared/tools/make_bench_moe.py with its fixed seed (7), so the same
# command gives the same bytes:
#   bench-moe-q4_0.gguf           default shape (dim 2048, 8 layers, 8 experts, top-2), Q4_0
#   bench-moe-top8-q4_0.gguf      the same weights, all 8 experts used
#   bench-dense-active-q4_0.gguf  2 experts, top-2: a dense model of the active size
#   bench-moe-f16.gguf            the default model as F16: the source of the next one
#   bench-moe-q4_k_m.gguf         `mixel quantize bench-moe-f16.gguf ... Q4_K_M` (types and
#                                 tensors byte-identical to llama.cpp's quantizer)
# Existing files are kept. Prints each file's size and sha256 prefix (for RESULTS.md).
# $BENCH_SHAPE adds make_bench_moe.py options to every model (e.g. "--dim 256 --layers 2" for a
# quick check of this script; such files are not the benchmark models).
#
# usage: tests/bench/make_bench_models.sh MIXEL [DIR]
set -eu
MIXEL=${1:?usage: make_bench_models.sh MIXEL [DIR]}
D=${2:-${BENCH_DIR:-/tmp}}
TOOLS=$(cd "$(dirname "$0")/../../../shared/tools" 2>/dev/null && pwd || echo /work/shared/tools)
PY=/usr/bin/python3
mkdir -p "$D"
make() { # make NAME MAKE_BENCH_MOE_OPTIONS...
    out="$D/$1.gguf"
    shift
    # shellcheck disable=SC2086
    [ -f "$out" ] || $PY "$TOOLS/make_bench_moe.py" "$out" ${BENCH_SHAPE:-} "$@"
}
make bench-moe-q4_0
make bench-moe-top8-q4_0 --top-k 8
make bench-dense-active-q4_0 --experts 2 --top-k 2
make bench-moe-f16 --type F16
[ -f "$D/bench-moe-q4_k_m.gguf" ] ||
    "$MIXEL" quantize -q "$D/bench-moe-f16.gguf" "$D/bench-moe-q4_k_m.gguf" Q4_K_M
for m in bench-moe-q4_0 bench-moe-top8-q4_0 bench-dense-active-q4_0 bench-moe-f16 \
         bench-moe-q4_k_m; do
    echo "$m.gguf $(stat -c %s "$D/$m.gguf") bytes sha256 $(sha256sum "$D/$m.gguf" | cut -c1-16)"
done
