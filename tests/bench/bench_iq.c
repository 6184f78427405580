/* bench_iq.c - single-thread CPU time of the IQ types' decode dots, scalar against SIMD (not a
 * test; built by make check).
 *
 * Why: on the shared 2-core machine wall-clock tokens/s mean nothing, so each type's vec_dot is
 * timed by thread CPU time (CLOCK_THREAD_CPUTIME_ID) over a weight of n_out x n_in, the scalar
 * kernel, the AVX2 one and the AVX-512 one (where the CPU has them) alternately in the same
 * run, and the medians of the repetitions printed (ns per 256 values, speedups). Weights are
 * random bytes with sane scales (speed does not depend on the values; the grids are hit at
 * random, as in real files).
 *
 * Then IQ4_XS, IQ4_NL and MXFP4 (and Q4_0 for reference) through the CPU backend's matmul with
 * one thread: file layout (decode: vec_dot; prefill: dequantize + sgemm per tile) against the
 * repacked 8-row layout (GEMM tile), for 1, 64 and 512 activation columns, with the AVX-512
 * VNNI kernels and then the AVX2 ones, alternately,
 * process CPU time (OpenBLAS threads included). Last, the IQ types without a repacked layout at
 * 512 columns (dequantize + sgemm per tile) with the scalar dequantizer against the AVX2 one.
 *
 * usage: bench_iq [n_in] [n_out] [reps]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/quant.h"
#include "core/base/quant_iq.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/kernels_iq.h"

/* Thread CPU seconds (not wall: other processes' load does not count). */
static double thread_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
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

/* Random weight bytes, each block's fp16 scale set to a small finite value (IQ1_M keeps its
 * super-scale in the top nibbles of the 4 scale words; IQ4_NL/XS and the rest at offset 0). */
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

/* CPU seconds of one pass of f over every row. */
static double pass(float (*f)(int64_t, const void *, const void *), const uint8_t *w,
                   size_t row_bytes, const void *xq, int64_t n_in, int64_t n_out, float *sink) {
    double t0 = thread_s();
    float acc = 0;
    for (int64_t r = 0; r < n_out; r++)
        acc += f(n_in, w + (size_t)r * row_bytes, xq);
    *sink += acc;
    return thread_s() - t0;
}

/* Process CPU seconds (the matmul may run OpenBLAS threads). */
static double proc_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* W [n_in x n_out] of type times T columns, file layout vs repacked, one backend thread with
 * the kernels of level, alternately; prints medians of CPU time and GFLOP/s (2 n_in n_out T per
 * call). Returns 0, 1 on failure, 2 when those kernels do not repack the type. */
static int bench_matmul(enum mx_type type, int level, int64_t n_in, int64_t n_out, int64_t T,
                        int reps) {
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    if (!be) {
        fprintf(stderr, "bench_iq: %s\n", err.msg);
        return 1;
    }
    mx_cpu_kernels_init(&mx_cpu_of(be)->kern, level);
    struct mx_tensor w, wp, x, y;
    mx_tensor_init(&w, type, n_in, n_out, 1, 1);
    mx_tensor_init(&x, MX_TYPE_F32, n_in, T, 1, 1);
    mx_tensor_init(&y, MX_TYPE_F32, n_out, T, 1, 1);
    w.data = malloc(mx_tensor_nbytes(&w));
    x.data = malloc(mx_tensor_nbytes(&x));
    y.data = malloc(mx_tensor_nbytes(&y));
    double *ta = malloc((size_t)reps * sizeof *ta), *tb = malloc((size_t)reps * sizeof *tb);
    if (!w.data || !x.data || !y.data || !ta || !tb) {
        fprintf(stderr, "bench_iq: out of memory\n");
        return 1;
    }
    uint64_t s = 99;
    fill(type, w.data, mx_tensor_nbytes(&w), &s);
    for (int64_t i = 0; i < n_in * T; i++)
        ((float *)x.data)[i] = (float)((int64_t)next(&s) % 2001 - 1000) / 1000.f;
    wp = w;
    wp.data = malloc(mx_tensor_nbytes(&w));
    if (!wp.data) {
        fprintf(stderr, "bench_iq: out of memory\n");
        return 1;
    }
    memcpy(wp.data, w.data, mx_tensor_nbytes(&w));
    void *wp_orig = wp.data;
    struct mx_tensor *wpp = &wp;
    struct mx_buf *pbuf = NULL;
    if (mx_backend_prepare_weights(be, &wpp, 1, &pbuf, &err) < 0 || !pbuf) {
        printf("%s matmul: no repacked layout with the '%s' kernels\n", mx_type_name(type),
               mx_cpu_of(be)->kern.name);
        free(w.data), free(x.data), free(y.data), free(wp_orig), free(ta), free(tb);
        mx_backend_free(be);
        return 2;
    }
    mx_op_matmul(be, &y, &w, &x); /* warm up: scratch, caches */
    mx_op_matmul(be, &y, &wp, &x);
    int inner = T == 1 ? 50 : T <= 64 ? 4 : 1;
    for (int r = 0; r < reps; r++) {
        double t0 = proc_s();
        for (int i = 0; i < inner; i++)
            mx_op_matmul(be, &y, &w, &x);
        ta[r] = (proc_s() - t0) / inner;
        t0 = proc_s();
        for (int i = 0; i < inner; i++)
            mx_op_matmul(be, &y, &wp, &x);
        tb[r] = (proc_s() - t0) / inner;
    }
    qsort(ta, (size_t)reps, sizeof *ta, cmp_d);
    qsort(tb, (size_t)reps, sizeof *tb, cmp_d);
    double flop = 2.0 * (double)n_in * (double)n_out * (double)T;
    printf("%-7s %-10s %-5lld %10.3f %10.3f %9.1f %9.1f %7.2fx\n", mx_type_name(type),
           mx_cpu_of(be)->kern.name, (long long)T, ta[reps / 2] * 1e3,
           tb[reps / 2] * 1e3, flop / ta[reps / 2] / 1e9, flop / tb[reps / 2] / 1e9,
           ta[reps / 2] / tb[reps / 2]);
    free(w.data), free(x.data), free(y.data), free(wp_orig), free(ta), free(tb);
    mx_buf_free(pbuf);
    mx_backend_free(be);
    return 0;
}

/* type W [n_in x n_out] times T columns through dequantize + sgemm, the backend's kernels
 * with the scalar dequantizer (dequant[type] = NULL) against the SIMD one, alternately. */
static int bench_dequant_prefill(enum mx_type type, int64_t n_in, int64_t n_out, int64_t T,
                                 int reps) {
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    if (!be) {
        fprintf(stderr, "bench_iq: %s\n", err.msg);
        return 1;
    }
    struct mx_cpu_kernels *kern = &mx_cpu_of(be)->kern;
    mx_to_float_fn simd = kern->dequant[type];
    struct mx_tensor w, x, y;
    mx_tensor_init(&w, type, n_in, n_out, 1, 1);
    mx_tensor_init(&x, MX_TYPE_F32, n_in, T, 1, 1);
    mx_tensor_init(&y, MX_TYPE_F32, n_out, T, 1, 1);
    w.data = malloc(mx_tensor_nbytes(&w));
    x.data = malloc(mx_tensor_nbytes(&x));
    y.data = malloc(mx_tensor_nbytes(&y));
    double *ta = malloc((size_t)reps * sizeof *ta), *tb = malloc((size_t)reps * sizeof *tb);
    if (!w.data || !x.data || !y.data || !ta || !tb) {
        fprintf(stderr, "bench_iq: out of memory\n");
        return 1;
    }
    uint64_t s = 77;
    fill(type, w.data, mx_tensor_nbytes(&w), &s);
    for (int64_t i = 0; i < n_in * T; i++)
        ((float *)x.data)[i] = (float)((int64_t)next(&s) % 2001 - 1000) / 1000.f;
    mx_op_matmul(be, &y, &w, &x); /* warm up */
    for (int r = 0; r < reps; r++) {
        kern->dequant[type] = NULL;
        double t0 = proc_s();
        mx_op_matmul(be, &y, &w, &x);
        ta[r] = proc_s() - t0;
        kern->dequant[type] = simd;
        t0 = proc_s();
        mx_op_matmul(be, &y, &w, &x);
        tb[r] = proc_s() - t0;
    }
    qsort(ta, (size_t)reps, sizeof *ta, cmp_d);
    qsort(tb, (size_t)reps, sizeof *tb, cmp_d);
    double flop = 2.0 * (double)n_in * (double)n_out * (double)T;
    printf("%-8s %-5lld %10.3f %10.3f %9.1f %9.1f %7.2fx%s\n", mx_type_name(type), (long long)T,
           ta[reps / 2] * 1e3, tb[reps / 2] * 1e3, flop / ta[reps / 2] / 1e9,
           flop / tb[reps / 2] / 1e9, ta[reps / 2] / tb[reps / 2],
           simd ? "" : "  (no SIMD dequantizer)");
    free(w.data), free(x.data), free(y.data), free(ta), free(tb);
    mx_backend_free(be);
    return 0;
}

int main(int argc, char **argv) {
    int64_t n_in = argc > 1 ? atoll(argv[1]) : 4096, n_out = argc > 2 ? atoll(argv[2]) : 256;
    int reps = argc > 3 ? atoi(argv[3]) : 15;
    if (n_in <= 0 || n_in % 256 || n_out <= 0 || reps <= 0) {
        fprintf(stderr, "bench_iq: n_in must be a positive multiple of 256, n_out and reps > 0\n");
        return 2;
    }
    static const enum mx_type types[] = {MX_TYPE_IQ1_S,   MX_TYPE_IQ1_M,  MX_TYPE_IQ2_XXS,
                                         MX_TYPE_IQ2_XS,  MX_TYPE_IQ2_S,  MX_TYPE_IQ3_XXS,
                                         MX_TYPE_IQ3_S,   MX_TYPE_IQ4_NL, MX_TYPE_IQ4_XS};
    struct mx_cpu_kernels k2, k5;
    mx_cpu_kernels_init(&k2, MX_CPU_AVX2);
    mx_cpu_kernels_init(&k5, MX_CPU_AVX512);
    printf("bench_iq: %lld x %lld, %d reps, single-thread CPU time medians, ns per 256 values "
           "(rough)\n", (long long)n_out, (long long)n_in, reps);
    printf("%-8s %9s %9s %9s %8s %8s\n", "type", "scalar", k2.name, k5.name, "x scalar",
           "512/avx2");
    uint64_t s = 16;
    float sink = 0;
    float *x = malloc((size_t)n_in * sizeof *x);
    double *ta = malloc((size_t)reps * sizeof *ta), *tb = malloc((size_t)reps * sizeof *tb),
           *tc = malloc((size_t)reps * sizeof *tc);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        enum mx_type type = types[ti], vt = mx_vec_dot_type(type);
        size_t row_bytes, act_bytes;
        if (!mx_row_size(type, n_in, &row_bytes) || !mx_act_row_size(vt, n_in, &act_bytes)) {
            fprintf(stderr, "bench_iq: %s: bad row size\n", mx_type_name(type));
            return 1;
        }
        uint8_t *w = malloc(row_bytes * (size_t)n_out);
        void *xq = malloc(act_bytes);
        if (!w || !xq || !x || !ta || !tb || !tc) {
            fprintf(stderr, "bench_iq: out of memory\n");
            return 1;
        }
        fill(type, w, row_bytes * (size_t)n_out, &s);
        for (int64_t i = 0; i < n_in; i++)
            x[i] = (float)((int64_t)next(&s) % 2001 - 1000) / 1000.f;
        mx_quantize_act(vt, x, xq, n_in);
        float (*fs)(int64_t, const void *, const void *) = mx_iq_vec_dot_scalar[type];
        float (*f2)(int64_t, const void *, const void *) = k2.vec_dot[type];
        float (*f5)(int64_t, const void *, const void *) = k5.vec_dot[type];
        for (int r = 0; r < reps; r++) { /* alternately, so load changes hit all alike */
            ta[r] = pass(fs, w, row_bytes, xq, n_in, n_out, &sink);
            tb[r] = pass(f2, w, row_bytes, xq, n_in, n_out, &sink);
            tc[r] = pass(f5, w, row_bytes, xq, n_in, n_out, &sink);
        }
        qsort(ta, (size_t)reps, sizeof *ta, cmp_d);
        qsort(tb, (size_t)reps, sizeof *tb, cmp_d);
        qsort(tc, (size_t)reps, sizeof *tc, cmp_d);
        double per = 1e9 / ((double)n_out * (double)(n_in / 256));
        double a = ta[reps / 2] * per, b = tb[reps / 2] * per, c = tc[reps / 2] * per;
        printf("%-8s %9.1f %9.1f %9.1f %7.2fx %7.2fx%s\n", mx_type_name(type), a, b, c,
               a / (b < c ? b : c), b / c,
               f5 == f2 ? "  (no AVX-512 kernel: same as avx2)" : "");
        free(w);
        free(xq);
    }
    printf("(checksum %g)\n", (double)sink);
    free(x), free(ta), free(tb), free(tc);
    printf("\nmatmul %lld x %lld, 1 thread, CPU time medians (rough)\n", (long long)n_out,
           (long long)n_in);
    printf("%-7s %-10s %-5s %10s %10s %9s %9s %8s\n", "type", "kernels", "cols", "file ms",
           "repack ms", "file GF/s", "rep GF/s", "speedup");
    /* Q4_0 last: the reference the repacked IQ tiles were modelled on */
    static const enum mx_type rtypes[] = {MX_TYPE_IQ4_XS, MX_TYPE_IQ4_NL, MX_TYPE_MXFP4,
                                          MX_TYPE_Q4_0};
    for (int level = MX_CPU_AVX512; level >= MX_CPU_AVX2; level--)
        for (size_t ti = 0; ti < sizeof rtypes / sizeof rtypes[0]; ti++)
            for (int64_t T = 1; T <= 512; T *= T == 1 ? 64 : 8) {
                int rc = bench_matmul(rtypes[ti], level, n_in, n_out, T, reps < 5 ? reps : 5);
                if (rc == 1)
                    return 1;
                if (rc == 2) /* no layout: the same for every column count */
                    break;
            }
    printf("\nprefill (dequantize + sgemm) %lld x %lld, 1 thread, CPU time medians (rough)\n",
           (long long)n_out, (long long)n_in);
    printf("%-8s %-5s %10s %10s %9s %9s %8s\n", "type", "cols", "scalar ms", "simd ms",
           "sc GF/s", "simd GF/s", "speedup");
    static const enum mx_type dtypes[] = {MX_TYPE_IQ1_S,  MX_TYPE_IQ1_M,   MX_TYPE_IQ2_XXS,
                                          MX_TYPE_IQ2_XS, MX_TYPE_IQ2_S,   MX_TYPE_IQ3_XXS,
                                          MX_TYPE_IQ3_S};
    for (size_t ti = 0; ti < sizeof dtypes / sizeof dtypes[0]; ti++)
        for (int64_t T = 64; T <= 512; T *= 8)
            if (bench_dequant_prefill(dtypes[ti], n_in, n_out, T, reps < 5 ? reps : 5) != 0)
                return 1;
    return 0;
}
