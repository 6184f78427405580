/* bench_kernels.c - throughput of the CPU backend's matmul and attention kernels (not a test).
 *
 * Decode: one token through an n_out x n_in weight of each type, reported as weight bytes read
 * per second (the number that bounds generation speed). Prefill: a 512-column batch, in GFLOP/s.
 * Both with the fast kernels and with the scalar ones. Attention: one token over a 16K and a
 * 60K cache (KV bytes read per token), and a 512-token chunk over 4K cells.
 * Wall time and process CPU time are both printed: on a shared machine CPU time / threads is the
 * better estimate of what an idle machine would do.
 *
 * usage: bench_kernels [threads] [n_in] [n_out] [level of the second set: 0 scalar, 1 avx2]
 *        MX_BENCH_AB=ROUNDS bench_kernels 1 N_IN N_OUT: the prefill GEMM tiles old (8-row)
 *        against new (16-row), one thread, CPU time, alternating, medians
 *        MX_BENCH_DOT2=ROUNDS bench_kernels 1 N_IN N_OUT: the decode dots, the AVX2 set row by
 *        row (old) against the best set with vec_dot2 (new), one thread, CPU time, alternating,
 *        medians
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/quant.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"

static double cpu_s(void) {
    return (double)clock() / CLOCKS_PER_SEC;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fprintf(stderr, "out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void bench_matmul(struct mx_backend *be, enum mx_type type, int64_t n_in, int64_t n_out,
                         int64_t T, int reps, const char *label, bool prepare) {
    struct mx_tensor w, x, y;
    if (mx_tensor_init(&w, type, n_in, n_out, 1, 1) < 0)
        return;
    mx_tensor_init(&x, MX_TYPE_F32, n_in, T, 1, 1);
    mx_tensor_init(&y, MX_TYPE_F32, n_out, T, 1, 1);
    w.data = xmalloc(mx_tensor_nbytes(&w));
    x.data = xmalloc(mx_tensor_nbytes(&x));
    y.data = xmalloc(mx_tensor_nbytes(&y));
    float *row = xmalloc((size_t)n_in * sizeof(float));
    uint64_t s = 1;
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t i = 0; i < n_in; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            row[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 23);
        }
        mx_quantize_row(type, row, (char *)w.data + (size_t)r * w.nb[1], n_in);
    }
    for (int64_t i = 0; i < n_in * T; i++)
        ((float *)x.data)[i] = row[i % n_in];
    struct mx_buf *pbuf = NULL;
    void *orig = w.data;
    if (prepare) {
        struct mx_tensor *wp = &w;
        struct mx_err err = {0};
        if (mx_backend_prepare_weights(be, &wp, 1, &pbuf, &err) < 0 || !pbuf) {
            free(orig);
            free(x.data);
            free(y.data);
            free(row);
            return; /* not a type this backend repacks */
        }
    }
    mx_op_matmul(be, &y, &w, &x); /* warm up: scratch, caches */
    double t0 = mx_time_s(), c0 = cpu_s();
    for (int i = 0; i < reps; i++)
        mx_op_matmul(be, &y, &w, &x);
    double wall = (mx_time_s() - t0) / reps, cpu = (cpu_s() - c0) / reps;
    double bytes = (double)mx_tensor_nbytes(&w), flop = 2.0 * (double)n_in * n_out * T;
    int nth = mx_backend_cpu_n_threads(be);
    if (T == 1)
        printf("  %-6s %-7s decode  %8.3f ms  %6.2f GB/s wall  %6.2f GB/s by cpu time\n",
               mx_type_name(type), label, wall * 1e3, bytes / wall / 1e9,
               bytes / (cpu / nth) / 1e9);
    else
        printf("  %-6s %-7s T=%-4lld %8.3f ms  %6.1f GFLOP/s wall  %6.1f by cpu time\n",
               mx_type_name(type), label, (long long)T, wall * 1e3, flop / wall / 1e9,
               flop / (cpu / nth) / 1e9);
    free(orig);
    mx_buf_free(pbuf);
    free(x.data);
    free(y.data);
    free(row);
}

/* Process CPU time in seconds (the A/B runs use one thread, so this is that thread's). */
static double proc_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Prefill GEMM, old against new: the repacked weight times T columns on one thread, with the
 * best kernel set ("x16": 16-row tiles where it has them) and the same set without the 16-row
 * tiles ("x8": the 8-row, 4-column tiles alone), alternating call by call; prints the median
 * CPU time of each and GFLOP/s by CPU time. Rough on a shared machine; CPU time, not wall. */
static void bench_gemm_ab(enum mx_type type, int64_t n_in, int64_t n_out, int64_t T,
                          int rounds) {
    struct mx_err err = {0};
    struct mx_backend *bn = mx_backend_cpu_new(1, &err), *bo = mx_backend_cpu_new(1, &err);
    if (!bn || !bo) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    struct mx_cpu_kernels *ko = &mx_cpu_of(bo)->kern;
    memset(ko->gemm_x16, 0, sizeof ko->gemm_x16);
    struct mx_tensor w, x, y;
    if (mx_tensor_init(&w, type, n_in, n_out, 1, 1) < 0)
        exit(1);
    mx_tensor_init(&x, MX_TYPE_F32, n_in, T, 1, 1);
    mx_tensor_init(&y, MX_TYPE_F32, n_out, T, 1, 1);
    w.data = xmalloc(mx_tensor_nbytes(&w));
    x.data = xmalloc(mx_tensor_nbytes(&x));
    y.data = xmalloc(mx_tensor_nbytes(&y));
    float *row = xmalloc((size_t)n_in * sizeof(float));
    uint64_t s = 7;
    for (int64_t r = 0; r < n_out; r++) {
        for (int64_t i = 0; i < n_in; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            row[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 23);
        }
        mx_quantize_row(type, row, (char *)w.data + (size_t)r * w.nb[1], n_in);
    }
    for (int64_t i = 0; i < n_in * T; i++)
        ((float *)x.data)[i] = row[(i * 7) % n_in];
    struct mx_tensor *wp = &w;
    struct mx_buf *pbuf = NULL;
    void *orig = w.data;
    if (mx_backend_prepare_weights(bn, &wp, 1, &pbuf, &err) < 0 || !pbuf) {
        printf("  %-6s not repacked by this CPU's kernels\n", mx_type_name(type));
        goto out;
    }
    if (!mx_cpu_of(bn)->kern.gemm_x16[w.layout])
        printf("  %-6s (no 16-row tiles for this type: x16 = x8)\n", mx_type_name(type));
    double *tn = xmalloc((size_t)rounds * sizeof(double));
    double *to = xmalloc((size_t)rounds * sizeof(double));
    mx_op_matmul(bn, &y, &w, &x); /* warm up: scratch, caches */
    mx_op_matmul(bo, &y, &w, &x);
    for (int r = 0; r < rounds; r++) {
        double c0 = proc_cpu_s();
        mx_op_matmul(bo, &y, &w, &x);
        double c1 = proc_cpu_s();
        mx_op_matmul(bn, &y, &w, &x);
        to[r] = c1 - c0;
        tn[r] = proc_cpu_s() - c1;
    }
    qsort(tn, (size_t)rounds, sizeof *tn, cmp_double);
    qsort(to, (size_t)rounds, sizeof *to, cmp_double);
    double flop = 2.0 * (double)n_in * (double)n_out * (double)T;
    double mo = to[rounds / 2], mn = tn[rounds / 2];
    printf("  %-6s %5lld x %-5lld T=%-4lld x8 %8.3f ms %6.1f GFLOP/s | x16 %8.3f ms %6.1f "
           "GFLOP/s | %.2fx  (CPU time, 1 thread, median of %d)\n",
           mx_type_name(type), (long long)n_in, (long long)n_out, (long long)T, mo * 1e3,
           flop / mo / 1e9, mn * 1e3, flop / mn / 1e9, mo / mn, rounds);
    free(tn);
    free(to);
out:
    mx_buf_free(pbuf);
    free(orig);
    free(x.data);
    free(y.data);
    free(row);
    mx_backend_free(bn);
    mx_backend_free(bo);
}

/* One attention call: T queries (positions at the end) over n_kv cells of a cache of type kvt;
 * prints the cache bytes read per call and the rate. */
static void bench_attn(struct mx_backend *be, enum mx_type kvt, int hd, int nh, int nkv,
                       int64_t T, int64_t n_kv, int reps) {
    struct mx_tensor q, y, kc, vc, qp, kp;
    mx_tensor_init(&q, MX_TYPE_F32, hd, nh, T, 1);
    mx_tensor_init(&y, MX_TYPE_F32, hd, nh, T, 1);
    mx_tensor_init(&kc, kvt, (int64_t)hd * nkv, n_kv, 1, 1);
    mx_tensor_init(&vc, kvt, (int64_t)hd * nkv, n_kv, 1, 1);
    mx_tensor_init(&qp, MX_TYPE_I32, T, 1, 1, 1);
    mx_tensor_init(&kp, MX_TYPE_I32, n_kv, 1, 1, 1);
    q.data = calloc(1, mx_tensor_nbytes(&q));
    y.data = xmalloc(mx_tensor_nbytes(&y));
    kc.data = calloc(1, mx_tensor_nbytes(&kc));
    vc.data = calloc(1, mx_tensor_nbytes(&vc));
    qp.data = xmalloc(mx_tensor_nbytes(&qp));
    kp.data = xmalloc(mx_tensor_nbytes(&kp));
    if (!q.data || !kc.data || !vc.data) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    /* written, not just calloc'd: untouched pages all map the one zero page, which reads from
     * cache and would make any attention look memory-fast */
    memset(kc.data, 0x11, mx_tensor_nbytes(&kc));
    memset(vc.data, 0x22, mx_tensor_nbytes(&vc));
    for (int64_t i = 0; i < n_kv; i++)
        ((int32_t *)kp.data)[i] = (int32_t)i;
    for (int64_t t = 0; t < T; t++)
        ((int32_t *)qp.data)[t] = (int32_t)(n_kv - T + t);
    struct mx_attn_params p = {.n_head = nh, .n_head_kv = nkv, .head_dim = hd, .n_kv = n_kv,
                               .scale = 1.0f / sqrtf((float)hd)};
    mx_op_attn(be, &y, &q, &kc, &vc, &qp, &kp, &p);
    double t0 = mx_time_s(), c0 = cpu_s();
    for (int i = 0; i < reps; i++)
        mx_op_attn(be, &y, &q, &kc, &vc, &qp, &kp, &p);
    double wall = (mx_time_s() - t0) / reps, cpu = (cpu_s() - c0) / reps;
    double bytes = 2.0 * (double)mx_tensor_nbytes(&kc);
    int nth = mx_backend_cpu_n_threads(be);
    printf("  attn %-4s hd %d, %d/%d heads, T=%-4lld n_kv=%-6lld %8.2f ms  KV %.1f MB/call  "
           "%.2f GB/s wall  %.2f by cpu time\n", mx_type_name(kvt), hd, nh, nkv, (long long)T,
           (long long)n_kv, wall * 1e3, bytes / 1e6, bytes / wall / 1e9,
           bytes / (cpu / nth) / 1e9);
    free(q.data);
    free(y.data);
    free(kc.data);
    free(vc.data);
    free(qp.data);
    free(kp.data);
}

/* Decode, old against new: one token through an n_in x n_out weight of random bytes (the
 * speed of these integer dots does not depend on the values) on one thread, the full kernel set
 * ("new": AVX-512 and vec_dot2 where the type has them) against the AVX2 set without vec_dot2
 * ("old": the row-by-row AVX2 dots these types had before),
 * alternating call by call; median CPU times and weight GB/s by CPU time. Rough on a shared
 * machine. */
static void bench_dot2_ab(enum mx_type type, int64_t n_in, int64_t n_out, int rounds) {
    struct mx_err err = {0};
    struct mx_backend *bn = mx_backend_cpu_new(1, &err), *bo = mx_backend_cpu_new(1, &err);
    if (!bn || !bo) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    mx_backend_set_act_mode(bn, MX_ACT_GGML);
    mx_backend_set_act_mode(bo, MX_ACT_GGML);
    struct mx_cpu_kernels *ko = &mx_cpu_of(bo)->kern;
    mx_cpu_kernels_init(ko, MX_CPU_AVX2);
    memset(ko->vec_dot2, 0, sizeof ko->vec_dot2);
    struct mx_tensor w, x, y;
    if (mx_tensor_init(&w, type, n_in, n_out, 1, 1) < 0)
        exit(1);
    mx_tensor_init(&x, MX_TYPE_F32, n_in, 1, 1, 1);
    mx_tensor_init(&y, MX_TYPE_F32, n_out, 1, 1, 1);
    w.data = xmalloc(mx_tensor_nbytes(&w));
    x.data = xmalloc(mx_tensor_nbytes(&x));
    y.data = xmalloc(mx_tensor_nbytes(&y));
    uint64_t s = 11;
    for (size_t i = 0; i < mx_tensor_nbytes(&w); i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ((uint8_t *)w.data)[i] = (uint8_t)(s >> 56);
    }
    for (int64_t i = 0; i < n_in; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        ((float *)x.data)[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 23);
    }
    double *tn = xmalloc((size_t)rounds * sizeof(double));
    double *to = xmalloc((size_t)rounds * sizeof(double));
    mx_op_matmul(bn, &y, &w, &x); /* warm up: scratch, caches */
    mx_op_matmul(bo, &y, &w, &x);
    for (int r = 0; r < rounds; r++) {
        double c0 = proc_cpu_s();
        mx_op_matmul(bo, &y, &w, &x);
        double c1 = proc_cpu_s();
        mx_op_matmul(bn, &y, &w, &x);
        to[r] = c1 - c0;
        tn[r] = proc_cpu_s() - c1;
    }
    qsort(tn, (size_t)rounds, sizeof *tn, cmp_double);
    qsort(to, (size_t)rounds, sizeof *to, cmp_double);
    double bytes = (double)mx_tensor_nbytes(&w), mo = to[rounds / 2], mn = tn[rounds / 2];
    printf("  %-7s %5lld x %-5lld old %8.3f ms %6.2f GB/s | new %8.3f ms %6.2f GB/s | %.2fx"
           "%s  (CPU time, 1 thread, median of %d)\n",
           mx_type_name(type), (long long)n_in, (long long)n_out, mo * 1e3, bytes / mo / 1e9,
           mn * 1e3, bytes / mn / 1e9, mo / mn,
           mx_cpu_of(bn)->kern.vec_dot2[type] ? "" : " (no vec_dot2)", rounds);
    free(tn);
    free(to);
    free(w.data);
    free(x.data);
    free(y.data);
    mx_backend_free(bn);
    mx_backend_free(bo);
}

int main(int argc, char **argv) {
    int nth = argc > 1 ? atoi(argv[1]) : 2;
    int64_t n_in = argc > 2 ? atoll(argv[2]) : 4096, n_out = argc > 3 ? atoll(argv[3]) : 4096;
    /* MX_BENCH_AB=ROUNDS: only the prefill GEMM A/B (8-row against 16-row tiles, one thread)
     * on the bench MoE model's shapes: an expert's 128 routed tokens and a dense 512 */
    /* MX_BENCH_DOT2=ROUNDS: only the decode A/B of the 2-row dots (MX_BENCH_TYPE: one type) */
    const char *d2 = getenv("MX_BENCH_DOT2");
    if (d2) {
        int rounds = atoi(d2) > 0 ? atoi(d2) : 21;
        const enum mx_type dt[] = {MX_TYPE_Q3_K,    MX_TYPE_Q5_1,   MX_TYPE_Q5_0,  MX_TYPE_IQ1_M,
                                   MX_TYPE_IQ1_S,   MX_TYPE_IQ2_XS, MX_TYPE_Q2_K,  MX_TYPE_Q4_1,
                                   MX_TYPE_IQ2_XXS, MX_TYPE_IQ2_S,  MX_TYPE_IQ3_S, MX_TYPE_IQ3_XXS};
        const char *one = getenv("MX_BENCH_TYPE");
        printf("decode 2-row dot A/B, W %lld x %lld\n", (long long)n_in, (long long)n_out);
        for (size_t i = 0; i < sizeof dt / sizeof dt[0]; i++)
            if (!one || strcmp(one, mx_type_name(dt[i])) == 0)
                bench_dot2_ab(dt[i], n_in, n_out, rounds);
        return 0;
    }
    const char *ab = getenv("MX_BENCH_AB");
    if (ab) {
        int rounds = atoi(ab) > 0 ? atoi(ab) : 5;
        const enum mx_type abt[] = {MX_TYPE_Q4_0, MX_TYPE_Q4_K, MX_TYPE_Q6_K, MX_TYPE_Q8_0,
                                    MX_TYPE_Q5_K};
        const char *one = getenv("MX_BENCH_TYPE");
        printf("prefill GEMM A/B, W %lld x %lld\n", (long long)n_in, (long long)n_out);
        for (size_t i = 0; i < sizeof abt / sizeof abt[0]; i++) {
            if (one && strcmp(one, mx_type_name(abt[i])) != 0)
                continue;
            bench_gemm_ab(abt[i], n_in, n_out, 128, rounds);
            bench_gemm_ab(abt[i], n_in, n_out, 512, rounds);
        }
        return 0;
    }
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(nth, &err);
    struct mx_backend *bs = mx_backend_cpu_new(nth, &err);
    if (!be || !bs) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    mx_cpu_kernels_init(&mx_cpu_of(bs)->kern, argc > 4 ? atoi(argv[4]) : MX_CPU_SCALAR);
    printf("threads %d, W %lld x %lld, kernels '%s' vs '%s'\n", nth, (long long)n_in,
           (long long)n_out, mx_cpu_of(be)->kern.name, mx_cpu_of(bs)->kern.name);
    enum mx_type types[] = {MX_TYPE_F32,  MX_TYPE_F16,  MX_TYPE_BF16, MX_TYPE_Q8_0,
                            MX_TYPE_Q4_0, MX_TYPE_Q4_1, MX_TYPE_Q5_0, MX_TYPE_Q5_1,
                            MX_TYPE_Q2_K, MX_TYPE_Q3_K, MX_TYPE_Q4_K, MX_TYPE_Q5_K,
                            MX_TYPE_Q6_K, MX_TYPE_MXFP4};
    /* MX_BENCH_TYPE=q4_0 limits the matmul runs to one type */
    const char *only = getenv("MX_BENCH_TYPE");
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (only && strcmp(only, mx_type_name(types[i])) != 0)
            continue;
        bench_matmul(be, types[i], n_in, n_out, 1, 20, "fast", false);
        bench_matmul(be, types[i], n_in, n_out, 1, 20, "repack", true);
        bench_matmul(bs, types[i], n_in, n_out, 1, 3, mx_cpu_of(bs)->kern.name, false);
    }
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        if (only && strcmp(only, mx_type_name(types[i])) != 0)
            continue;
        bench_matmul(be, types[i], n_in, n_out / 4, 512, 2, "sgemm", false);
        bench_matmul(be, types[i], n_in, n_out / 4, 512, 2, "repack", true);
        bench_matmul(bs, types[i], n_in, n_out / 4, 512, 1, mx_cpu_of(bs)->kern.name, false);
    }
    /* decode at long context (a Mixtral-like layer: hd 128, 32 heads, 8 KV heads) and a
     * prefill chunk of 512 tokens */
    bench_attn(be, MX_TYPE_F16, 128, 32, 8, 1, 16384, 5);
    bench_attn(be, MX_TYPE_F16, 128, 32, 8, 1, 61440, 2);
    bench_attn(be, MX_TYPE_Q8_0, 128, 32, 8, 1, 61440, 2);
    bench_attn(be, MX_TYPE_F16, 128, 32, 8, 512, 4096, 1);
    mx_backend_free(be);
    mx_backend_free(bs);
    return 0;
}
