#!/bin/sh
# device-check.sh - everything that needs a GPU, in one go, for the minutes a GPU is lent:
# builds with CUDA (or uses a carried ./build that has it), runs every CUDA test (each op against
# the CPU backend; whole models' logits and greedy text against the CPU) and the GPU benchmarks,
# and prints a short table. Run from the repository root:
#   MX_SHARED=/path/to/shared tests/cuda/device-check.sh [BENCH_MODEL.gguf ...]
# Exit 0 when every test passed (skips count as failures here: the point is to run them).
set -u
root=$(pwd)
shared=${MX_SHARED:-}
for c in "$shared" "$root/shared" "$root/../shared"; do
    if [ -n "$c" ] && [ -d "$c/models" ]; then shared=$c; break; fi
done
log=${OUT:-/tmp}/device-check.log
: > "$log"
say() { echo "$*" | tee -a "$log"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/gpu: /' | tee -a "$log"
say "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), date: $(date -u +%F)"
if ! grep -q '^#define HAVE_CUDA 1' build/config.h 2>/dev/null; then
    say "building with CUDA ..."
    ( ./setup.sh build || { autoreconf -fi && mkdir -p build && cd build && ../configure --with-cuda && make -j"$(nproc)"; } ) >>"$log" 2>&1 ||
        { say "BUILD FAILED (see $log)"; tail -30 "$log"; exit 1; }
fi
make -C build -j"$(nproc)" mixel tests/test_cuda_ops tests/test_cuda_model tests/test_split \
    tests/test_cuda_kernels tests/cuda/bench_kernels >>"$log" 2>&1 ||
    { say "BUILD FAILED (see $log)"; tail -30 "$log"; exit 1; }
fails=0
# test_split: the split's plumbing with a CPU as the device (bit-exact); test_cuda_model runs
# the same splits on the GPU (--gpu-layers 2, --cpu-moe, --n-cpu-moe 1 against the CPU)
# test_cuda_kernels: the integer-dot mat-vec, tensor-core GEMM and flash attention kernels
for t in test_cuda_ops test_cuda_kernels test_cuda_model test_split; do
    MX_SHARED=$shared build/tests/$t > "${OUT:-/tmp}/$t.out" 2>&1
    rc=$?
    cat "${OUT:-/tmp}/$t.out" >> "$log"
    case $rc in 0) r=PASS ;; 77) r="SKIP ($(grep -m1 SKIP "${OUT:-/tmp}/$t.out"))"; fails=$((fails + 1)) ;; *) r="FAIL ($rc)"; fails=$((fails + 1)) ;; esac
    say "$t: $r"
    grep -E 'max \|(gpu|split) - cpu\||FAILED|ERROR' "${OUT:-/tmp}/$t.out" | head -80 | sed 's/^/    /'
done
# kernel micro-benchmarks (tests/cuda/bench_kernels.c): mat-vec GB/s (int8 dots vs the f32
# kernel), matmul_id decode GB/s, GEMM TFLOP/s (tensor cores vs f32 SGEMM), attention at 4K/64K
say "kernels (build/tests/cuda/bench_kernels, Mixtral 8x7B shapes):"
build/tests/cuda/bench_kernels 2>&1 | sed 's/^/    /' | tee -a "$log"
# benchmarks: tokens/s on the GPU and the CPU for each model given (or the shared tiny ones)
models="$*"
[ -n "$models" ] || models="$shared/models/tiny-mixtral-q4_0.gguf $shared/models/tiny-mixtral-d256-q4_k.gguf"
say "bench (mixel bench -p 512 -n 128 -r 3):"
for m in $models; do
    [ -f "$m" ] || continue
    for d in cuda "cuda --cpu-moe" "cuda --gpu-layers 2" cpu; do
        # shellcheck disable=SC2086
        line=$(build/mixel bench -m "$m" --device $d -p 512 -n 128 -r 3 2>&1 | grep -E 'pp|tg|tok' | tr '\n' ' ')
        say "    $(basename "$m") $d: $line"
    done
done
say "device-check: $fails test program(s) not passing"
[ "$fails" -eq 0 ]
