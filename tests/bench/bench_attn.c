/* bench_attn.c - CPU time of the attention kernels at depth (not a test).
 *
 * Attention at long context is a stream over the KV cache, so its cost is best read as the
 * cache bytes read per second of CPU time. On a shared, loaded machine wall-clock rates say
 * little; the process CPU time of one thread (-t 1) over many calls does. Compare two builds by
 * running their bench_attn binaries alternately, several times each, and taking medians.
 *
 * usage: bench_attn [threads] [n_kv] [T] [kv type f16|q8_0|f32] [reps] [head_dim] [heads]
 *                   [kv heads] [window] [kernels scalar|avx2|avx512]
 * Defaults: the bench model's layer (head_dim 64, 32 heads, 8 KV heads), one query token (decode)
 * over 16384 cells, f16, the best kernel set of the CPU (a lower one named last: old against new
 * kernels alternately in one build). T > 1 times a prefill chunk of T tokens at positions
 * n_kv - T .. n_kv - 1 (the last T tokens of an n_kv-token prompt). Prints one line:
 *   ATTN kernels=... type=f16 hd=64 heads=32/8 T=1 n_kv=16384 threads=1 cpu_ms=... wall_ms=...
 *        kv_mb=... gbps_cpu=... read_gbps_cpu=... (sum ...)
 * gbps_cpu: KV bytes of the call over (process CPU time / threads); per token for T > 1 the
 * cache is read once per query block, so it is a rate of the cache size, not of traffic.
 * read_gbps_cpu: the same buffers read by a plain summing loop on one thread (a STREAM-like read
 * of K and V, CPU time, best of 5), the ceiling of a load-bound attention with the cache where
 * the repeated calls leave it (a cache below the L3 size stays there; n_kv 65536 reads memory);
 * gbps_cpu / read_gbps_cpu is attention's share of it.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/quant.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"

/* Process CPU time in seconds (all threads). */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Seconds of process CPU time for one read of n bytes at p summed as 64-bit words, best of
 * reps passes (one thread); the sum goes to *sink so the loop is not optimised away. */
static double read_s(const void *p, size_t n, int reps, uint64_t *sink) {
    const uint64_t *w = p;
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double c0 = cpu_s();
        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (size_t i = 0; i + 4 <= n / 8; i += 4) {
            s0 += w[i];
            s1 += w[i + 1];
            s2 += w[i + 2];
            s3 += w[i + 3];
        }
        *sink += s0 + s1 + s2 + s3;
        double dt = cpu_s() - c0;
        best = dt < best ? dt : best;
    }
    return best;
}

/* A deterministic pseudo-random stream (the values only need to be varied and finite). */
static uint32_t rnd(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(*s >> 33);
}

/* Fills one cache tensor: f32/f16 values in [-1, 1); q8_0 blocks with scale 1/127 and random
 * quants (the layout of mx_block_q8_0: fp16 scale then 32 int8). */
static void fill_cache(struct mx_tensor *t, uint64_t *s) {
    int64_t n = mx_tensor_nelements(t);
    if (t->type == MX_TYPE_F32) {
        for (int64_t i = 0; i < n; i++)
            ((float *)t->data)[i] = (float)(rnd(s) % 2000) / 1000.0f - 1.0f;
    } else if (t->type == MX_TYPE_F16) {
        for (int64_t i = 0; i < n; i++)
            ((mx_half *)t->data)[i] = mx_fp32_to_fp16((float)(rnd(s) % 2000) / 1000.0f - 1.0f);
    } else {
        mx_block_q8_0 *b = t->data;
        for (int64_t i = 0; i < n / MX_QK8_0; i++) {
            b[i].d = mx_fp32_to_fp16(1.0f / 127.0f);
            for (int j = 0; j < MX_QK8_0; j++)
                b[i].qs[j] = (int8_t)(rnd(s) % 255 - 127);
        }
    }
}

int main(int argc, char **argv) {
    int nth = argc > 1 ? atoi(argv[1]) : 1;
    int64_t n_kv = argc > 2 ? atoll(argv[2]) : 16384, T = argc > 3 ? atoll(argv[3]) : 1;
    const char *tname = argc > 4 ? argv[4] : "f16";
    int reps = argc > 5 ? atoi(argv[5]) : 20;
    int hd = argc > 6 ? atoi(argv[6]) : 64, nh = argc > 7 ? atoi(argv[7]) : 32;
    int nkv = argc > 8 ? atoi(argv[8]) : 8, window = argc > 9 ? atoi(argv[9]) : 0;
    const char *kset = argc > 10 ? argv[10] : "avx512";
    int level = !strcmp(kset, "scalar") ? MX_CPU_SCALAR
                : !strcmp(kset, "avx2") ? MX_CPU_AVX2
                                        : MX_CPU_AVX512;
    enum mx_type kvt = !strcmp(tname, "q8_0")  ? MX_TYPE_Q8_0
                       : !strcmp(tname, "f32") ? MX_TYPE_F32
                                               : MX_TYPE_F16;
    if (nth < 1 || n_kv < 1 || T < 1 || T > n_kv || reps < 1 || hd < 8 || nh < 1 || nkv < 1 ||
        nh % nkv || (kvt == MX_TYPE_Q8_0 && hd % MX_QK8_0)) {
        fprintf(stderr, "bench_attn: bad arguments (see the usage in bench_attn.c)\n");
        return 2;
    }
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(nth, &err);
    if (!be) {
        fprintf(stderr, "bench_attn: %s\n", err.msg);
        return 1;
    }
    mx_cpu_kernels_init(&mx_cpu_of(be)->kern, level); /* at most `level`, as the CPU allows */
    struct mx_tensor q, y, kc, vc, qp, kp;
    mx_tensor_init(&q, MX_TYPE_F32, hd, nh, T, 1);
    mx_tensor_init(&y, MX_TYPE_F32, hd, nh, T, 1);
    mx_tensor_init(&kc, kvt, (int64_t)hd * nkv, n_kv, 1, 1);
    mx_tensor_init(&vc, kvt, (int64_t)hd * nkv, n_kv, 1, 1);
    mx_tensor_init(&qp, MX_TYPE_I32, T, 1, 1, 1);
    mx_tensor_init(&kp, MX_TYPE_I32, n_kv, 1, 1, 1);
    q.data = malloc(mx_tensor_nbytes(&q));
    y.data = malloc(mx_tensor_nbytes(&y));
    kc.data = malloc(mx_tensor_nbytes(&kc));
    vc.data = malloc(mx_tensor_nbytes(&vc));
    qp.data = malloc(mx_tensor_nbytes(&qp));
    kp.data = malloc(mx_tensor_nbytes(&kp));
    if (!q.data || !y.data || !kc.data || !vc.data || !qp.data || !kp.data) {
        fprintf(stderr, "bench_attn: out of memory\n");
        return 1;
    }
    uint64_t s = 42;
    for (int64_t i = 0; i < mx_tensor_nelements(&q); i++)
        ((float *)q.data)[i] = (float)(rnd(&s) % 2000) / 1000.0f - 1.0f;
    fill_cache(&kc, &s);
    fill_cache(&vc, &s);
    for (int64_t i = 0; i < n_kv; i++)
        ((int32_t *)kp.data)[i] = (int32_t)i;
    for (int64_t t = 0; t < T; t++)
        ((int32_t *)qp.data)[t] = (int32_t)(n_kv - T + t);
    struct mx_attn_params p = {.n_head = nh, .n_head_kv = nkv, .head_dim = hd, .n_kv = n_kv,
                               .scale = 1.0f / sqrtf((float)hd), .window = window};
    if (mx_op_attn(be, &y, &q, &kc, &vc, &qp, &kp, &p) < 0) { /* warm-up, pages faulted in */
        fprintf(stderr, "bench_attn: the attention op failed\n");
        return 1;
    }
    double t0 = mx_time_s(), c0 = cpu_s();
    for (int i = 0; i < reps; i++)
        mx_op_attn(be, &y, &q, &kc, &vc, &qp, &kp, &p);
    double wall = (mx_time_s() - t0) / reps, cpu = (cpu_s() - c0) / reps;
    double bytes = 2.0 * (double)mx_tensor_nbytes(&kc);
    uint64_t sink = 0;
    double rd = read_s(kc.data, mx_tensor_nbytes(&kc), 5, &sink) +
                read_s(vc.data, mx_tensor_nbytes(&vc), 5, &sink);
    printf("ATTN kernels=%s type=%s hd=%d heads=%d/%d T=%lld n_kv=%lld threads=%d cpu_ms=%.3f "
           "wall_ms=%.3f kv_mb=%.1f gbps_cpu=%.2f read_gbps_cpu=%.2f (sum %llu)\n",
           mx_cpu_of(be)->kern.name, mx_type_name(kvt), hd, nh, nkv, (long long)T,
           (long long)n_kv, nth, cpu * 1e3, wall * 1e3, bytes / 1e6, bytes / (cpu / nth) / 1e9,
           bytes / rd / 1e9, (unsigned long long)(sink & 0xff));
    free(q.data);
    free(y.data);
    free(kc.data);
    free(vc.data);
    free(qp.data);
    free(kp.data);
    mx_backend_free(be);
    return 0;
}
