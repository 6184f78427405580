/* test_gptoss_kernels.c - the kernel pieces gpt-oss needs, against plain oracles:
 *   - the MXFP4 x Q8_0 dot: every SIMD level gives the scalar twin's bits, and the scalar one
 *     equals a double-precision sum of the dequantized values;
 *   - matmul with MXFP4 weights (decode dot and prefill sgemm paths) against that oracle;
 *   - attention with sinks (reference, flash prefill, split decode) against a two-pass softmax
 *     in double with the sink in the denominator;
 *   - NEOX RoPE with gpt-oss's YaRN parameters against ggml's rope_yarn formula in double.
 * The dequantization of MXFP4 against ggml itself is in test_quant (tests/golden/quant). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/quant.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "tests/mx_test.h"

static struct mx_backend *be_best, *be_scalar;

/* A heap tensor of the given shape, zeroed (caller frees .data). */
static struct mx_tensor mk(enum mx_type type, int64_t ne0, int64_t ne1, int64_t ne2) {
    struct mx_tensor t;
    assert_int_equal(mx_tensor_init(&t, type, ne0, ne1, ne2, 1), 0);
    t.data = calloc(1, mx_tensor_nbytes(&t));
    assert_non_null(t.data);
    return t;
}

/* n random MXFP4 values: random floats of varied block magnitudes, quantized (so the exponent
 * bytes and codes are those real files hold). */
static void random_mxfp4(uint64_t *s, void *dst, int64_t n) {
    float *f = malloc((size_t)n * sizeof *f);
    assert_non_null(f);
    for (int64_t i = 0; i < n; i++)
        f[i] = mx_test_randf(s) * ldexpf(1.0f, (int)(i / 32 % 7) - 3);
    assert_int_equal(mx_quantize_row(MX_TYPE_MXFP4, f, dst, n), 0);
    free(f);
}

/* sum_i dequant(w)_i * dequant(xq)_i in double, and sum of |terms| for the tolerance. */
static double oracle_dot(const void *w, const void *xq, int64_t n, double *mag) {
    float *wf = malloc((size_t)n * sizeof *wf);
    assert_non_null(wf);
    assert_int_equal(mx_dequantize_row(MX_TYPE_MXFP4, w, wf, n), 0);
    const mx_block_q8_0 *x = xq;
    double s = 0.0;
    *mag = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double xv = (double)x[i / 32].qs[i % 32] * mx_fp16_to_fp32(x[i / 32].d);
        s += (double)wf[i] * xv;
        *mag += fabs((double)wf[i] * xv);
    }
    free(wf);
    return s;
}

/* The dot at every kernel level this binary and CPU have: the same bits as the scalar twin
 * (integer block sums are exact and the float sum runs in block order everywhere); the scalar
 * one within float rounding of the double oracle (n/32 roundings of ~2^-24 each). */
static void test_mxfp4_dot_levels(void **state) {
    (void)state;
    uint64_t s = 11;
    const int64_t n = 2880; /* gpt-oss's n_embd: 90 blocks */
    void *w = malloc((size_t)n / 32 * sizeof(mx_block_mxfp4));
    size_t xrow;
    assert_true(mx_act_row_size(MX_TYPE_Q8_0, n, &xrow));
    void *xq = malloc(xrow);
    float *x = malloc((size_t)n * sizeof *x);
    assert_true(w && xq && x);
    for (int rep = 0; rep < 20; rep++) {
        random_mxfp4(&s, w, n);
        for (int64_t i = 0; i < n; i++)
            x[i] = mx_test_randf(&s) * (rep % 2 ? 100.0f : 0.01f);
        mx_quantize_act(MX_TYPE_Q8_0, x, xq, n);
        float ref = mx_vec_dot_mxfp4_q8_0(n, w, xq);
        double mag, want = oracle_dot(w, xq, n, &mag);
        if (fabs(ref - want) > 1e-6 * mag)
            fail_msg("scalar dot %.9g, oracle %.9g (mag %g)", ref, want, mag);
        static const int levels[] = {MX_CPU_SCALAR, MX_CPU_AVX2, MX_CPU_AVX512};
        for (size_t l = 0; l < MX_ARRAY_LEN(levels); l++) {
            struct mx_cpu_kernels k;
            mx_cpu_kernels_init(&k, levels[l]);
            assert_non_null(k.vec_dot[MX_TYPE_MXFP4]);
            float got = k.vec_dot[MX_TYPE_MXFP4](n, w, xq);
            if (memcmp(&got, &ref, sizeof got) != 0)
                fail_msg("level %d (%s): %.9g, scalar %.9g", levels[l], k.name, got, ref);
        }
    }
    struct mx_cpu_kernels k;
    mx_cpu_kernels_init(&k, MX_CPU_BEST);
    printf("mxfp4 dot checked up to kernel set '%s'\n", k.name);
    free(w);
    free(xq);
    free(x);
}

/* W (MXFP4 [n_in, n_out]) times x for T = 1 (per-row dots), 5 (dots) and 24 (dequantize +
 * sgemm): each output equals the oracle on the Q8_0-rounded column, to 1e-5 of the sum of
 * |terms| (sgemm's float order). */
static void test_mxfp4_matmul(void **state) {
    (void)state;
    uint64_t s = 5;
    const int64_t n_in = 256, n_out = 24;
    struct mx_tensor w = mk(MX_TYPE_MXFP4, n_in, n_out, 1);
    random_mxfp4(&s, w.data, n_in * n_out);
    assert_true(mx_backend_supports(be_best, MX_OP_MATMUL, MX_TYPE_MXFP4));
    assert_true(mx_backend_supports(be_best, MX_OP_MATMUL_ID, MX_TYPE_MXFP4));
    static const int64_t Ts[] = {1, 5, 24};
    size_t xrow;
    assert_true(mx_act_row_size(MX_TYPE_Q8_0, n_in, &xrow));
    void *xq = malloc(xrow);
    for (size_t ti = 0; ti < MX_ARRAY_LEN(Ts); ti++) {
        int64_t T = Ts[ti];
        struct mx_tensor x = mk(MX_TYPE_F32, n_in, T, 1), y = mk(MX_TYPE_F32, n_out, T, 1);
        float *xv = x.data;
        for (int64_t i = 0; i < n_in * T; i++)
            xv[i] = mx_test_randf(&s);
        for (int b = 0; b < 2; b++) {
            struct mx_backend *be = b ? be_scalar : be_best;
            assert_int_equal(mx_op_matmul(be, &y, &w, &x), 0);
            for (int64_t t = 0; t < T; t++) {
                mx_quantize_act(MX_TYPE_Q8_0, xv + t * n_in, xq, n_in);
                for (int64_t o = 0; o < n_out; o++) {
                    double mag, want = oracle_dot((char *)w.data + o * w.nb[1], xq, n_in, &mag);
                    float got = ((float *)y.data)[t * n_out + o];
                    if (fabs(got - want) > 1e-5 * mag + 1e-30)
                        fail_msg("T %lld t %lld o %lld (%s): %.9g, oracle %.9g",
                                 (long long)T, (long long)t, (long long)o, b ? "scalar" : "best",
                                 got, want);
                }
            }
        }
        free(x.data);
        free(y.data);
    }
    free(xq);
    free(w.data);
}

/* Attention with sinks: out = sum_c w_c v_c, w_c = e^(s_c) / (sum e^(s_c') + e^(sink_h)),
 * s = scale q·k over the visible cells; in double. */
static void oracle_attn_sinks(const float *q, const float *k, const float *v, const int32_t *kp,
                              int64_t n_kv, int32_t qp, int window, int hd, int kvd, int g,
                              float scale, float sink, double *out) {
    double mx = sink;
    double *sc = malloc((size_t)n_kv * sizeof *sc);
    for (int64_t c = 0; c < n_kv; c++) {
        bool vis = kp[c] >= 0 && kp[c] <= qp && (window == 0 || qp - kp[c] < window);
        double d = 0;
        for (int i = 0; i < hd && vis; i++)
            d += (double)q[i] * k[c * kvd + g * hd + i];
        sc[c] = vis ? d * scale : -INFINITY;
        if (sc[c] > mx)
            mx = sc[c];
    }
    double sum = exp(sink - mx);
    bool any = false;
    for (int64_t c = 0; c < n_kv; c++) {
        any |= sc[c] != -INFINITY;
        sc[c] = sc[c] == -INFINITY ? 0 : exp(sc[c] - mx);
        sum += sc[c];
    }
    for (int i = 0; i < hd; i++) {
        out[i] = 0;
        for (int64_t c = 0; c < n_kv && any; c++)
            out[i] += sc[c] / sum * v[c * kvd + g * hd + i];
    }
    free(sc);
}

/* One attention case on both backends. T queries at positions n_kv - T .. n_kv - 1 over an F32
 * cache of n_kv cells (positions 0..n_kv-1). Tolerance: 2e-5 absolute on outputs of magnitude
 * <= 1 (f32 exp and online rescaling against the double oracle). */
static void attn_case(int64_t n_kv, int64_t T, int window, uint64_t seed) {
    const int hd = 64, H = 4, HKV = 2, kvd = hd * HKV;
    uint64_t s = seed;
    struct mx_tensor q = mk(MX_TYPE_F32, hd, H, T), y = mk(MX_TYPE_F32, hd, H, T);
    struct mx_tensor kc = mk(MX_TYPE_F32, kvd, n_kv, 1), vc = mk(MX_TYPE_F32, kvd, n_kv, 1);
    struct mx_tensor qpos = mk(MX_TYPE_I32, T, 1, 1), kpos = mk(MX_TYPE_I32, n_kv, 1, 1);
    struct mx_tensor sinks = mk(MX_TYPE_F32, H, 1, 1);
    float *qv = q.data, *kv = kc.data, *vv = vc.data, *sk = sinks.data;
    for (int64_t i = 0; i < hd * H * T; i++)
        qv[i] = mx_test_randf(&s);
    for (int64_t i = 0; i < kvd * n_kv; i++) {
        kv[i] = mx_test_randf(&s);
        vv[i] = mx_test_randf(&s);
    }
    /* a sink below, near and far above the scores (the last would overflow e^(sink - max)
     * taken against the scores' max alone) */
    sk[0] = -3.0f, sk[1] = 0.5f, sk[2] = 2.0f, sk[3] = 200.0f;
    for (int64_t c = 0; c < n_kv; c++)
        ((int32_t *)kpos.data)[c] = (int32_t)c;
    for (int64_t t = 0; t < T; t++)
        ((int32_t *)qpos.data)[t] = (int32_t)(n_kv - T + t);
    struct mx_attn_params p = {.n_head = H, .n_head_kv = HKV, .head_dim = hd, .n_kv = n_kv,
                               .scale = 1.0f / 8.0f, .window = window, .sinks = &sinks};
    double *want = malloc(hd * sizeof *want);
    for (int b = 0; b < 2; b++) {
        struct mx_backend *be = b ? be_scalar : be_best;
        assert_int_equal(mx_backend_set_act_mode(be, MX_ACT_F32), 0);
        assert_int_equal(mx_op_attn(be, &y, &q, &kc, &vc, &qpos, &kpos, &p), 0);
        assert_int_equal(mx_backend_set_act_mode(be, MX_ACT_GGML), 0);
        for (int64_t t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                oracle_attn_sinks(qv + (t * H + h) * hd, kv, vv, kpos.data, n_kv,
                                  ((int32_t *)qpos.data)[t], window, hd, kvd, h / (H / HKV),
                                  p.scale, sk[h], want);
                const float *got = (float *)y.data + (t * H + h) * hd;
                for (int i = 0; i < hd; i++)
                    if (!(fabs(got[i] - want[i]) <= 2e-5))
                        fail_msg("n_kv %lld T %lld window %d %s: t %lld head %d dim %d: %.7g, "
                                 "oracle %.7g", (long long)n_kv, (long long)T, window,
                                 b ? "scalar" : "best", (long long)t, h, i, got[i], want[i]);
            }
    }
    free(want);
    free(q.data), free(y.data), free(kc.data), free(vc.data), free(qpos.data), free(kpos.data);
    free(sinks.data);
}

/* Decode over a short cache (flash path), over a long one (split + merge path), prefill blocks
 * (flash and sgemm-block paths), each with and without a sliding window. */
static void test_attn_sinks(void **state) {
    (void)state;
    for (int win = 0; win < 2; win++) {
        attn_case(37, 1, win ? 8 : 0, 1);
        attn_case(MX_ATTN_SPLIT_MIN + 77, 1, win ? 300 : 0, 2);
        attn_case(70, 9, win ? 16 : 0, 3);
        attn_case(200, 130, win ? 50 : 0, 4);
    }
}

/* A sinks tensor of the wrong size or type is refused before any work. */
static void test_attn_sinks_checked(void **state) {
    (void)state;
    struct mx_tensor q = mk(MX_TYPE_F32, 8, 2, 1), y = mk(MX_TYPE_F32, 8, 2, 1);
    struct mx_tensor kc = mk(MX_TYPE_F32, 8, 4, 1), vc = mk(MX_TYPE_F32, 8, 4, 1);
    struct mx_tensor qpos = mk(MX_TYPE_I32, 1, 1, 1), kpos = mk(MX_TYPE_I32, 4, 1, 1);
    struct mx_tensor bad = mk(MX_TYPE_F32, 3, 1, 1), badt = mk(MX_TYPE_F16, 2, 1, 1);
    struct mx_attn_params p = {.n_head = 2, .n_head_kv = 1, .head_dim = 8, .n_kv = 4,
                               .scale = 1.0f, .sinks = &bad};
    assert_int_equal(mx_op_attn(be_best, &y, &q, &kc, &vc, &qpos, &kpos, &p), MX_EINVAL);
    p.sinks = &badt;
    assert_int_equal(mx_op_attn(be_best, &y, &q, &kc, &vc, &qpos, &kpos, &p), MX_EINVAL);
    free(q.data), free(y.data), free(kc.data), free(vc.data), free(qpos.data), free(kpos.data);
    free(bad.data), free(badt.data);
}

/* gpt-oss's rope: NEOX pairs (i, i + 32) of 64 dims, base 150000, YaRN factor 32 from 4096,
 * ext_factor 1, beta 32/1, attn_factor as llama.cpp sets it (1 / (1 + 0.1 ln 32) times
 * 1 + 0.1 ln 32: 1), checked against ggml's rope_yarn in double at positions up to 130000. */
static void test_rope_yarn_neox(void **state) {
    (void)state;
    const int hd = 64, nh = 3, T = 5, n_rot = 64;
    struct mx_tensor x = mk(MX_TYPE_F32, hd, nh, T), y = mk(MX_TYPE_F32, hd, nh, T);
    struct mx_tensor pos = mk(MX_TYPE_I32, T, 1, 1);
    uint64_t s = 3;
    for (int64_t i = 0; i < hd * nh * T; i++)
        ((float *)x.data)[i] = mx_test_randf(&s);
    int32_t pv[5] = {0, 1, 77, 4100, 130000};
    memcpy(pos.data, pv, sizeof pv);
    const float factor = 32.0f, base = 150000.0f;
    struct mx_rope_params p = {.n_rot = n_rot, .mode = MX_ROPE_NEOX, .freq_base = base,
                               .freq_scale = 1.0f / factor, .ext_factor = 1.0f,
                               .attn_factor = 1.0f / (1.0f + 0.1f * logf(factor)),
                               .beta_fast = 32.0f, .beta_slow = 1.0f, .n_ctx_orig = 4096};
    assert_int_equal(mx_op_rope(be_best, &y, &x, &pos, &p), 0);
    double lo = fmax(0, floor(n_rot * log(4096.0 / (32.0 * 2 * M_PI)) / (2 * log(base))));
    double hi = fmin(n_rot - 1, ceil(n_rot * log(4096.0 / (1.0 * 2 * M_PI)) / (2 * log(base))));
    for (int t = 0; t < T; t++)
        for (int h = 0; h < nh; h++) {
            const float *xv = (float *)x.data + (t * nh + h) * hd;
            const float *yv = (float *)y.data + (t * nh + h) * hd;
            for (int i = 0; i < n_rot / 2; i++) {
                double ex = pv[t] * pow(base, -2.0 * i / n_rot);
                double r = (i - lo) / fmax(0.001, hi - lo);
                double mix = 1.0 - fmin(1.0, fmax(0.0, r));
                double th = ex / factor * (1 - mix) + ex * mix;
                double ms = p.attn_factor * (1.0 + 0.1 * log(factor));
                double w0 = (xv[i] * cos(th) - xv[i + 32] * sin(th)) * ms;
                double w1 = (xv[i] * sin(th) + xv[i + 32] * cos(th)) * ms;
                /* float32 angles: at p = 130000 the fastest pair's theta (~1.3e5 rad) carries
                 * ~1e-2 rad of float error in ggml too; compare the slower pairs tightly and
                 * the fast ones where the angle is small */
                double tol = ex < 1000 ? 2e-4 : 2e-2;
                if (fabs(yv[i] - w0) > tol || fabs(yv[i + 32] - w1) > tol)
                    fail_msg("pos %d head %d pair %d: (%g, %g), want (%g, %g)", pv[t], h, i,
                             yv[i], yv[i + 32], w0, w1);
            }
        }
    free(x.data), free(y.data), free(pos.data);
}

static int setup(void **state) {
    (void)state;
    struct mx_err err = {0};
    be_best = mx_backend_cpu_new(2, &err);
    be_scalar = mx_backend_cpu_new(2, &err);
    if (!be_best || !be_scalar)
        return -1;
    mx_cpu_kernels_init(&mx_cpu_of(be_scalar)->kern, MX_CPU_SCALAR);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mx_backend_free(be_best);
    mx_backend_free(be_scalar);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mxfp4_dot_levels),
        cmocka_unit_test(test_mxfp4_matmul),
        cmocka_unit_test(test_attn_sinks),
        cmocka_unit_test(test_attn_sinks_checked),
        cmocka_unit_test(test_rope_yarn_neox),
    };
    return mx_test_status(cmocka_run_group_tests(tests, setup, teardown));
}
