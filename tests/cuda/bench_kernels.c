/* bench_kernels.c - micro-benchmarks of the CUDA backend's kernels, for tests/cuda/device-check.sh
 * on a lent GPU: the decode mat-vec (GB/s of weights read: the integer-dot kernels of the default
 * MX_ACT_GGML mode against the F32 warp kernel of MX_ACT_F32), matmul_id's decode (the two
 * selected experts' bytes), the prefill GEMM (TFLOP/s: F16/BF16 tensor cores against F32
 * SGEMM) and attention (decode: GB/s of the KV cells read; prefill: TFLOP/s). One line per
 * case; wall-clock medians of several timed runs after a warm-up, each run synchronized.
 *   bench_kernels [--quick]   (--quick: tiny sizes, one run: checks the program, not speed)
 * Exit 77 with the reason when no CUDA device answers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/quant.h"
#include "kernels/backend.h"

static struct mx_backend *gpu;
static int quick, reps = 9;

/* a device tensor of the given shape, filled with a harmless byte pattern (small f16 values,
 * valid block scales): speed does not depend on the values */
static struct mx_buf *dev_tensor(struct mx_tensor *t, enum mx_type type, int64_t ne0,
                                 int64_t ne1, int64_t ne2, unsigned char fill) {
    struct mx_err err = {0};
    struct mx_buf *buf = NULL;
    if (mx_tensor_init(t, type, ne0, ne1, ne2, 1) != 0)
        return NULL;
    size_t n = mx_tensor_nbytes(t);
    if (mx_buf_alloc(gpu, n, &buf, &err) != 0) {
        fprintf(stderr, "bench_kernels: %s\n", err.msg);
        return NULL;
    }
    t->buf = buf;
    t->data = buf->base;
    unsigned char *h = malloc(n);
    if (!h) {
        mx_buf_free(buf);
        return NULL;
    }
    memset(h, fill, n);
    int rc = mx_tensor_set(gpu, t, h, 0, n);
    free(h);
    if (rc != 0) {
        mx_buf_free(buf);
        return NULL;
    }
    return buf;
}

/* I32 positions or ids on the device */
static struct mx_buf *dev_i32(struct mx_tensor *t, int64_t n, const int32_t *v) {
    struct mx_err err = {0};
    struct mx_buf *buf = NULL;
    if (mx_tensor_init(t, MX_TYPE_I32, n, 1, 1, 1) != 0 ||
        mx_buf_alloc(gpu, (size_t)n * 4, &buf, &err) != 0)
        return NULL;
    t->buf = buf;
    t->data = buf->base;
    if (mx_tensor_set(gpu, t, v, 0, (size_t)n * 4) != 0) {
        mx_buf_free(buf);
        return NULL;
    }
    return buf;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* the op of a case, run once */
struct job {
    int kind; /* 0 matmul, 1 matmul_id, 2 attn */
    struct mx_tensor *dst, *w, *x, *ids, *kc, *vc, *qpos, *kpos;
    struct mx_attn_params ap;
};

static int run_job(const struct job *j) {
    switch (j->kind) {
    case 0: return mx_op_matmul(gpu, j->dst, j->w, j->x);
    case 1: return mx_op_matmul_id(gpu, j->dst, j->w, j->x, j->ids);
    default: return mx_op_attn(gpu, j->dst, j->x, j->kc, j->vc, j->qpos, j->kpos, &j->ap);
    }
}

/* median seconds of one run (a warm-up first), or a negative value on failure */
static double timed(const struct job *j) {
    double t[16];
    int n = quick ? 1 : reps;
    if (run_job(j) != 0 || mx_backend_sync(gpu) != 0)
        return -1;
    for (int r = 0; r < n; r++) {
        double t0 = now();
        if (run_job(j) != 0 || mx_backend_sync(gpu) != 0)
            return -1;
        t[r] = now() - t0;
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_d);
    return t[n / 2];
}

static int failed;

static void report(const char *what, double s, double amount, const char *unit) {
    if (s < 0) {
        printf("%-44s FAILED: %s\n", what, mx_backend_last_error(gpu));
        failed = 1;
        return;
    }
    printf("%-44s %9.1f us  %8.2f %s\n", what, s * 1e6, amount / s, unit);
}

/* decode mat-vec: W [n_in, n_out] of type, T columns, in the given activation mode */
static void bench_matvec(enum mx_type type, int64_t n_in, int64_t n_out, int64_t T, int mode) {
    struct mx_tensor w, x, y;
    struct mx_buf *bw = dev_tensor(&w, type, n_in, n_out, 1, 0x11);
    struct mx_buf *bx = dev_tensor(&x, MX_TYPE_F32, n_in, T, 1, 0);
    struct mx_buf *by = dev_tensor(&y, MX_TYPE_F32, n_out, T, 1, 0);
    char what[96];
    snprintf(what, sizeof what, "mat-vec %s %lldx%lld T=%lld %s", mx_type_name(type),
             (long long)n_in, (long long)n_out, (long long)T, mode == MX_ACT_GGML ? "int8" : "f32");
    if (bw && bx && by) {
        mx_backend_set_act_mode(gpu, mode);
        struct job j = {.kind = 0, .dst = &y, .w = &w, .x = &x};
        report(what, timed(&j), (double)mx_tensor_nbytes(&w) * 1e-9, "GB/s");
        mx_backend_set_act_mode(gpu, MX_ACT_GGML);
    } else {
        report(what, -1, 0, "");
    }
    mx_buf_free(bw);
    mx_buf_free(bx);
    mx_buf_free(by);
}

/* matmul_id's decode: n_exp experts, top-2, one token */
static void bench_matvec_id(enum mx_type type, int64_t n_in, int64_t n_out, int n_exp) {
    struct mx_tensor w, x, y, ids;
    const int32_t sel[2] = {1, n_exp - 2};
    struct mx_buf *bw = dev_tensor(&w, type, n_in, n_out, n_exp, 0x11);
    struct mx_buf *bx = dev_tensor(&x, MX_TYPE_F32, n_in, 1, 1, 0);
    struct mx_buf *by = dev_tensor(&y, MX_TYPE_F32, n_out, 2, 1, 0);
    struct mx_buf *bi = dev_i32(&ids, 2, sel);
    char what[96];
    snprintf(what, sizeof what, "matmul_id %s %lldx%lld top-2 of %d", mx_type_name(type),
             (long long)n_in, (long long)n_out, n_exp);
    if (bw && bx && by && bi) {
        struct job j = {.kind = 1, .dst = &y, .w = &w, .x = &x, .ids = &ids};
        report(what, timed(&j), 2.0 * (double)w.nb[2] * 1e-9, "GB/s");
    } else {
        report(what, -1, 0, "");
    }
    mx_buf_free(bw);
    mx_buf_free(bx);
    mx_buf_free(by);
    mx_buf_free(bi);
}

/* prefill GEMM: W [n_in, n_out] times T columns */
static void bench_gemm(enum mx_type type, int64_t n_in, int64_t n_out, int64_t T, int mode) {
    struct mx_tensor w, x, y;
    struct mx_buf *bw = dev_tensor(&w, type, n_in, n_out, 1, 0x11);
    struct mx_buf *bx = dev_tensor(&x, MX_TYPE_F32, n_in, T, 1, 0);
    struct mx_buf *by = dev_tensor(&y, MX_TYPE_F32, n_out, T, 1, 0);
    char what[96];
    snprintf(what, sizeof what, "gemm %s %lldx%lld T=%lld %s", mx_type_name(type),
             (long long)n_in, (long long)n_out, (long long)T,
             mode == MX_ACT_GGML ? "tensor cores" : "f32 sgemm");
    if (bw && bx && by) {
        mx_backend_set_act_mode(gpu, mode);
        struct job j = {.kind = 0, .dst = &y, .w = &w, .x = &x};
        report(what, timed(&j), 2.0 * (double)n_in * (double)n_out * (double)T * 1e-12,
               "TFLOP/s");
        mx_backend_set_act_mode(gpu, MX_ACT_GGML);
    } else {
        report(what, -1, 0, "");
    }
    mx_buf_free(bw);
    mx_buf_free(bx);
    mx_buf_free(by);
}

/* attention: T queries at the end of n_kv cells, n_head heads over n_head_kv, F16 or Q8_0 cache */
static void bench_attn(enum mx_type ct, int hd, int nh, int nkv, int64_t n_kv, int64_t T) {
    struct mx_tensor q, o, kc, vc, qp, kp;
    int32_t *kpv = malloc((size_t)n_kv * 4), *qpv = malloc((size_t)T * 4);
    if (!kpv || !qpv) {
        free(kpv);
        free(qpv);
        return;
    }
    for (int64_t c = 0; c < n_kv; c++)
        kpv[c] = (int32_t)c;
    for (int64_t t = 0; t < T; t++)
        qpv[t] = (int32_t)(n_kv - T + t);
    struct mx_buf *bq = dev_tensor(&q, MX_TYPE_F32, hd, nh, T, 0);
    struct mx_buf *bo = dev_tensor(&o, MX_TYPE_F32, hd, nh, T, 0);
    struct mx_buf *bk = dev_tensor(&kc, ct, (int64_t)hd * nkv, n_kv, 1, 0x11);
    struct mx_buf *bv = dev_tensor(&vc, ct, (int64_t)hd * nkv, n_kv, 1, 0x11);
    struct mx_buf *bqp = dev_i32(&qp, T, qpv), *bkp = dev_i32(&kp, n_kv, kpv);
    free(kpv);
    free(qpv);
    char what[96];
    snprintf(what, sizeof what, "attn %s hd=%d heads %d/%d n_kv=%lld T=%lld", mx_type_name(ct),
             hd, nh, nkv, (long long)n_kv, (long long)T);
    if (bq && bo && bk && bv && bqp && bkp) {
        struct job j = {.kind = 2, .dst = &o, .x = &q, .kc = &kc, .vc = &vc, .qpos = &qp,
                        .kpos = &kp,
                        .ap = {.n_head = nh, .n_head_kv = nkv, .head_dim = hd, .n_kv = n_kv,
                               .scale = 0.088f}};
        double s = timed(&j);
        if (T == 1) /* decode: the cache's bytes */
            report(what, s, 2.0 * (double)mx_tensor_nbytes(&kc) * 1e-9, "GB/s");
        else /* prefill: q·k and p·v over every cell (the causal half is masked, not skipped) */
            report(what, s, 4.0 * (double)T * (double)n_kv * hd * nh * 1e-12, "TFLOP/s");
    } else {
        report(what, -1, 0, "");
    }
    mx_buf_free(bq);
    mx_buf_free(bo);
    mx_buf_free(bk);
    mx_buf_free(bv);
    mx_buf_free(bqp);
    mx_buf_free(bkp);
}

int main(int argc, char **argv) {
    quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    struct mx_err err = {0};
    gpu = mx_backend_cuda_new(0, &err);
    if (!gpu) {
        printf("SKIP: no CUDA device to benchmark: %s\n", err.msg);
        return 77;
    }
    /* Mixtral 8x7B's shapes: FFN 4096 -> 14336, 8 experts; attention 32 heads over 8, hd 128 */
    const int64_t D = quick ? 256 : 4096, F = quick ? 96 : 14336, PT = quick ? 40 : 512;
    const int64_t CTX = quick ? 300 : 65536, CTX2 = quick ? 100 : 4096;
    const enum mx_type mv[] = {MX_TYPE_Q4_0, MX_TYPE_Q8_0, MX_TYPE_Q4_K, MX_TYPE_Q5_K,
                               MX_TYPE_Q6_K};
    for (size_t k = 0; k < sizeof mv / sizeof mv[0]; k++) {
        bench_matvec(mv[k], D, F, 1, MX_ACT_GGML);
        if (mv[k] == MX_TYPE_Q4_0 || mv[k] == MX_TYPE_Q4_K) {
            bench_matvec(mv[k], D, F, 1, MX_ACT_F32);
            bench_matvec(mv[k], D, F, 4, MX_ACT_GGML);
            bench_matvec(mv[k], D, F, 8, MX_ACT_GGML);
        }
    }
    bench_matvec_id(MX_TYPE_Q4_0, D, F, 8);
    bench_matvec_id(MX_TYPE_Q4_K, D, F, 8);
    bench_gemm(MX_TYPE_F16, D, D, PT, MX_ACT_GGML);
    bench_gemm(MX_TYPE_F16, D, D, PT, MX_ACT_F32);
    bench_gemm(MX_TYPE_Q4_K, D, F, PT, MX_ACT_GGML);
    bench_gemm(MX_TYPE_Q4_K, D, F, PT, MX_ACT_F32);
    bench_gemm(MX_TYPE_Q4_0, D, F, PT, MX_ACT_GGML);
    bench_attn(MX_TYPE_F16, 128, 32, 8, CTX2, 1);
    bench_attn(MX_TYPE_F16, 128, 32, 8, CTX, 1);
    bench_attn(MX_TYPE_Q8_0, 128, 32, 8, CTX, 1);
    bench_attn(MX_TYPE_F16, 128, 32, 8, CTX2, PT);
    mx_backend_free(gpu);
    return failed;
}
