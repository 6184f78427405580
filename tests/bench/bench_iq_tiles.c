/* bench_iq_tiles.c - single-thread CPU time of the IQ1-IQ3 prefill matmul, old (dequantize each
 * 32-row tile to f32 + sgemm) against new (the grid tiles of gemm_iq.h), alternately in the
 * same run (not a test; built by make check).
 *
 * Why: on the shared 2-core machine wall-clock tokens/s mean nothing; process CPU time of one
 * backend thread (OpenBLAS threads included) over repetitions, medians, is the comparison that
 * survives the load. Each type's weight is random blocks with sane scales (speed does not
 * depend on the values). Both paths are timed with the kernel set of the level asked for.
 *
 * usage: bench_iq_tiles [n_in] [n_out] [reps] [level: 1 avx2, 2 avx512]
 * prints per type and column count: old ms, new ms, GFLOP/s of each, speedup (rough).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/quant.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"

static double proc_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t next(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return *s >> 33;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Random bytes, each block's fp16 scale small and finite (IQ1_M: in its scale words' top
 * nibbles). */
static void fill(enum mx_type type, uint8_t *w, size_t bytes, uint64_t *s) {
    const struct mx_type_traits *t = mx_type_traits(type);
    for (size_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)next(s);
    uint16_t h = mx_fp32_to_fp16(0.01f);
    for (size_t off = 0; off < bytes; off += t->type_size) {
        if (type == MX_TYPE_IQ1_M) {
            for (int k = 0; k < 4; k++) {
                uint16_t v;
                memcpy(&v, w + off + 48 + 2 * k, 2);
                v = (uint16_t)((v & 0x0fff) | (((h >> (4 * k)) & 15) << 12));
                memcpy(w + off + 48 + 2 * k, &v, 2);
            }
        } else {
            memcpy(w + off, &h, 2);
        }
    }
}

int main(int argc, char **argv) {
    int64_t n_in = argc > 1 ? atoll(argv[1]) : 2048, n_out = argc > 2 ? atoll(argv[2]) : 512;
    int reps = argc > 3 ? atoi(argv[3]) : 7, level = argc > 4 ? atoi(argv[4]) : MX_CPU_AVX512;
    if (n_in <= 0 || n_in % 256 || n_out <= 0 || reps <= 0) {
        fprintf(stderr, "bench_iq_tiles: n_in a positive multiple of 256, n_out, reps > 0\n");
        return 2;
    }
    static const enum mx_type types[] = {MX_TYPE_IQ2_XXS, MX_TYPE_IQ2_XS, MX_TYPE_IQ3_XXS,
                                         MX_TYPE_IQ3_S,   MX_TYPE_IQ1_S,  MX_TYPE_IQ2_S,
                                         MX_TYPE_IQ1_M};
    static const int64_t cols[] = {2, 4, 32, 128, 512};
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    if (!be) {
        fprintf(stderr, "bench_iq_tiles: %s\n", err.msg);
        return 1;
    }
    struct mx_cpu_kernels *k = &mx_cpu_of(be)->kern;
    mx_cpu_kernels_init(k, level);
    printf("bench_iq_tiles: %lld x %lld, kernels '%s', 1 thread, %d reps, CPU time medians "
           "(rough, loaded machine)\n", (long long)n_out, (long long)n_in, k->name, reps);
    printf("%-8s %5s %10s %10s %9s %9s %8s\n", "type", "cols", "old ms", "tiles ms", "old GF/s",
           "new GF/s", "speedup");
    double *ta = malloc((size_t)reps * sizeof *ta), *tb = malloc((size_t)reps * sizeof *tb);
    uint64_t s = 5;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        enum mx_type type = types[ti];
        void (*tile)(int64_t, const void *, size_t, int, const void *, size_t, int64_t, float *,
                     size_t, int, void *) = k->gemm_iq[type];
        if (!tile) {
            printf("%-8s no tile with the '%s' kernels\n", mx_type_name(type), k->name);
            continue;
        }
        for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++) {
            int64_t T = cols[ci];
            struct mx_tensor w, x, y;
            mx_tensor_init(&w, type, n_in, n_out, 1, 1);
            mx_tensor_init(&x, MX_TYPE_F32, n_in, T, 1, 1);
            mx_tensor_init(&y, MX_TYPE_F32, n_out, T, 1, 1);
            w.data = malloc(mx_tensor_nbytes(&w));
            x.data = malloc(mx_tensor_nbytes(&x));
            y.data = malloc(mx_tensor_nbytes(&y));
            if (!w.data || !x.data || !y.data || !ta || !tb) {
                fprintf(stderr, "bench_iq_tiles: out of memory\n");
                return 1;
            }
            fill(type, w.data, mx_tensor_nbytes(&w), &s);
            for (int64_t i = 0; i < n_in * T; i++)
                ((float *)x.data)[i] = (float)((int64_t)next(&s) % 2001 - 1000) / 1000.f;
            int inner = T <= 32 ? 4 : 1;
            for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
                k->gemm_iq[type] = NULL;
                double t0 = proc_s();
                for (int i = 0; i < inner; i++)
                    mx_op_matmul(be, &y, &w, &x);
                double a = (proc_s() - t0) / inner;
                k->gemm_iq[type] = tile;
                t0 = proc_s();
                for (int i = 0; i < inner; i++)
                    mx_op_matmul(be, &y, &w, &x);
                double b = (proc_s() - t0) / inner;
                if (r >= 0)
                    ta[r] = a, tb[r] = b;
            }
            qsort(ta, (size_t)reps, sizeof *ta, cmp_d);
            qsort(tb, (size_t)reps, sizeof *tb, cmp_d);
            double flop = 2.0 * (double)n_in * (double)n_out * (double)T;
            printf("%-8s %5lld %10.3f %10.3f %9.1f %9.1f %7.2fx\n", mx_type_name(type),
                   (long long)T, ta[reps / 2] * 1e3, tb[reps / 2] * 1e3,
                   flop / ta[reps / 2] / 1e9, flop / tb[reps / 2] / 1e9,
                   ta[reps / 2] / tb[reps / 2]);
            free(w.data), free(x.data), free(y.data);
        }
    }
    free(ta), free(tb);
    mx_backend_free(be);
    return 0;
}
