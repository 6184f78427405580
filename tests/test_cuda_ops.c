/* test_cuda_ops.c - every op of the CUDA backend against the CPU backend (itself checked against
 * double-precision oracles in test_backend.c) on random inputs of awkward sizes. Skips (exit 77)
 * with the reason when no CUDA device answers or the build has no CUDA: CI has no GPU; the
 * device check (tests/cuda/device-check.sh) runs it where one is lent.
 *
 * Tolerances: both sides sum f32 products in different orders; a dot of n terms is within
 * n * 2^-24 * sum|terms| of exact on either side, so results are compared relative to the
 * largest magnitude with 1e-5 (n <= 4096 and |terms| ~ |result| for these inputs), 1e-4 where
 * a softmax's exp sits in between (attention, routing), and matmuls run both backends in
 * MX_ACT_F32 mode (the exact path; test_cuda_kernels.c checks the MX_ACT_GGML kernels).
 *
 * Built a second time as test_cuda_ops_emu, linked against the CPU emulator of CUDA
 * (kernels/cuda/emu/README): there it runs in every make check, with ASan under
 * check-sanitize, checking the kernels' indexing, reductions and host glue without a GPU.
 */
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
#include "kernels/backend.h"
#include "tests/mx_test.h"

static struct mx_backend *cpu, *gpu;
static uint64_t rng = 4242;

#include "tests/cuda_pairs.h"

/* random F32 values in [-amp, amp), on both sides */
static struct pair *rnd(int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3, float amp) {
    struct pair *p = mkp(MX_TYPE_F32, ne0, ne1, ne2, ne3);
    float *v = p->h.data;
    for (int64_t i = 0; i < mx_tensor_nelements(&p->h); i++)
        v[i] = amp * mx_test_randf(&rng);
    up(p);
    return p;
}

/* The device result of p against its host result, relative to the largest host magnitude. */
static void cmp(struct pair *p, double tol, const char *what) {
    assert_int_equal(mx_backend_sync(gpu), 0);
    int64_t n = mx_tensor_nelements(&p->h);
    float *g = malloc((size_t)n * sizeof *g), *c = p->h.data;
    if (p->h.type == MX_TYPE_F32) {
        assert_int_equal(mx_tensor_get(gpu, &p->d, g, 0, (size_t)n * 4), 0);
    } else { /* compare as floats */
        void *raw = malloc(mx_tensor_nbytes(&p->h));
        assert_int_equal(mx_tensor_get(gpu, &p->d, raw, 0, mx_tensor_nbytes(&p->h)), 0);
        float *cf = malloc((size_t)n * sizeof *cf);
        assert_int_equal(mx_dequantize_row(p->h.type, raw, g, n), 0);
        assert_int_equal(mx_dequantize_row(p->h.type, p->h.data, cf, n), 0);
        free(raw);
        c = cf;
    }
    double mx = 0, md = 0;
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++) {
        mx = fmax(mx, fabs(c[i]));
        double d = fabs((double)g[i] - c[i]);
        if (!(d <= md)) {
            md = d;
            worst = i;
        }
    }
    printf("%-28s max |gpu - cpu| %.3g (max |cpu| %.3g)\n", what, md, mx);
    if (!(md <= tol * mx + tol))
        fail_msg("%s: element %lld is %.9g on the GPU, %.9g on the CPU", what, (long long)worst,
                 g[worst], c[worst]);
    if (c != p->h.data)
        free(c);
    free(g);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_matmul_types(void **state) {
    (void)state;
    const enum mx_type types[] = {MX_TYPE_F32,  MX_TYPE_F16,  MX_TYPE_BF16, MX_TYPE_Q4_0,
                                  MX_TYPE_Q4_1, MX_TYPE_Q5_0, MX_TYPE_Q5_1, MX_TYPE_Q8_0,
                                  MX_TYPE_Q2_K, MX_TYPE_Q3_K, MX_TYPE_Q4_K, MX_TYPE_Q5_K,
                                  MX_TYPE_Q6_K, MX_TYPE_MXFP4, MX_TYPE_IQ4_NL, MX_TYPE_IQ4_XS};
    const int64_t Ts[] = {1, 3, 8, 37}; /* decode kernel and the cuBLAS path */
    mx_backend_set_act_mode(cpu, MX_ACT_F32);
    mx_backend_set_act_mode(gpu, MX_ACT_F32); /* the exact path: test_cuda_kernels has GGML */
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        for (size_t j = 0; j < sizeof Ts / sizeof Ts[0]; j++) {
            struct pair *w = rnd_w(types[k], 512, 67, 1);
            struct pair *x = rnd(512, Ts[j], 1, 1, 1.0f);
            struct pair *y = mkp(MX_TYPE_F32, 67, Ts[j], 1, 1);
            assert_int_equal(mx_op_matmul(cpu, &y->h, &w->h, &x->h), 0);
            assert_int_equal(mx_op_matmul(gpu, &y->d, &w->d, &x->d), 0);
            char what[64];
            snprintf(what, sizeof what, "matmul %s T=%lld", mx_type_name(types[k]),
                     (long long)Ts[j]);
            cmp(y, 1e-5, what);
            free_pairs();
        }
    }
    mx_backend_set_act_mode(cpu, MX_ACT_GGML);
    mx_backend_set_act_mode(gpu, MX_ACT_GGML);
}

static void test_matmul_id_get_rows(void **state) {
    (void)state;
    mx_backend_set_act_mode(cpu, MX_ACT_F32);
    mx_backend_set_act_mode(gpu, MX_ACT_F32); /* the exact path: test_cuda_kernels has GGML */
    const int E = 6, K = 2, T = 5;
    int32_t sel[K * T];
    for (int i = 0; i < K * T; i++)
        sel[i] = (i * 7 + 3) % E;
    struct pair *w = rnd_w(MX_TYPE_Q4_K, 256, 40, E);
    struct pair *ids = ids_p(K, T, sel);
    struct pair *x1 = rnd(256, 1, T, 1, 1.0f), *xk = rnd(256, K, T, 1, 1.0f);
    struct pair *y1 = mkp(MX_TYPE_F32, 40, K, T, 1), *yk = mkp(MX_TYPE_F32, 40, K, T, 1);
    assert_int_equal(mx_op_matmul_id(cpu, &y1->h, &w->h, &x1->h, &ids->h), 0);
    assert_int_equal(mx_op_matmul_id(gpu, &y1->d, &w->d, &x1->d, &ids->d), 0);
    cmp(y1, 1e-5, "matmul_id shared x");
    assert_int_equal(mx_op_matmul_id(cpu, &yk->h, &w->h, &xk->h, &ids->h), 0);
    assert_int_equal(mx_op_matmul_id(gpu, &yk->d, &w->d, &xk->d, &ids->d), 0);
    cmp(yk, 1e-5, "matmul_id per slot");
    /* an id outside the table is refused at the next wait */
    int32_t badv[K * T];
    memcpy(badv, sel, sizeof badv);
    badv[3] = E;
    struct pair *bad = ids_p(K, T, badv);
    assert_int_equal(mx_op_matmul_id(gpu, &yk->d, &w->d, &xk->d, &bad->d), 0);
    assert_int_equal(mx_backend_sync(gpu), MX_EINVAL);
    assert_int_equal(mx_backend_sync(gpu), 0); /* reported once */

    struct pair *emb = rnd_w(MX_TYPE_Q6_K, 256, 30, 1);
    int32_t toks[4] = {0, 29, 7, 7};
    struct pair *tid = ids_p(4, 1, toks);
    struct pair *e = mkp(MX_TYPE_F32, 256, 4, 1, 1);
    assert_int_equal(mx_op_get_rows(cpu, &e->h, &emb->h, &tid->h), 0);
    assert_int_equal(mx_op_get_rows(gpu, &e->d, &emb->d, &tid->d), 0);
    cmp(e, 1e-6, "get_rows q6_K");
    free_pairs();
    mx_backend_set_act_mode(cpu, MX_ACT_GGML);
    mx_backend_set_act_mode(gpu, MX_ACT_GGML);
}

/* Prefill's expert-grouped matmul_id (T > 8 tokens: tokens gathered per expert, one product per
 * selected expert) against the CPU, with an expert no token picks, both x layouts, a
 * quantized and an IQ type; an id out of range is refused at once. */
static void test_matmul_id_grouped(void **state) {
    (void)state;
    mx_backend_set_act_mode(cpu, MX_ACT_F32);
    mx_backend_set_act_mode(gpu, MX_ACT_F32); /* the exact path: test_cuda_kernels has GGML */
    enum { E = 8, K = 2, T = 40 };
    int32_t sel[K * T];
    for (int i = 0; i < K * T; i++) {
        int e = (i * 5 + i / 7) % E;
        sel[i] = e == 5 ? 6 : e; /* expert 5: never chosen */
    }
    for (int i = 0; i < T; i++) /* the two slots of a token differ, as top-k's do */
        if (sel[2 * i] == sel[2 * i + 1])
            sel[2 * i + 1] = (sel[2 * i] + 1) % E == 5 ? 7 : (sel[2 * i] + 1) % E;
    const enum mx_type types[] = {MX_TYPE_Q4_0, MX_TYPE_Q4_K, MX_TYPE_IQ4_XS, MX_TYPE_F32};
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        struct pair *w = rnd_w(types[k], 256, 48, E);
        struct pair *ids = ids_p(K, T, sel);
        struct pair *x1 = rnd(256, 1, T, 1, 1.0f), *xk = rnd(256, K, T, 1, 1.0f);
        struct pair *y1 = mkp(MX_TYPE_F32, 48, K, T, 1), *yk = mkp(MX_TYPE_F32, 48, K, T, 1);
        char what[64];
        assert_int_equal(mx_op_matmul_id(cpu, &y1->h, &w->h, &x1->h, &ids->h), 0);
        assert_int_equal(mx_op_matmul_id(gpu, &y1->d, &w->d, &x1->d, &ids->d), 0);
        snprintf(what, sizeof what, "matmul_id grouped %s x1", mx_type_name(types[k]));
        cmp(y1, 1e-5, what);
        assert_int_equal(mx_op_matmul_id(cpu, &yk->h, &w->h, &xk->h, &ids->h), 0);
        assert_int_equal(mx_op_matmul_id(gpu, &yk->d, &w->d, &xk->d, &ids->d), 0);
        snprintf(what, sizeof what, "matmul_id grouped %s xk", mx_type_name(types[k]));
        cmp(yk, 1e-5, what);
        if (k == 0) {
            int32_t badv[K * T];
            memcpy(badv, sel, sizeof badv);
            badv[17] = E;
            struct pair *bad = ids_p(K, T, badv);
            assert_int_equal(mx_op_matmul_id(gpu, &yk->d, &w->d, &xk->d, &bad->d), MX_EINVAL);
            assert_int_equal(mx_backend_sync(gpu), 0);
        }
        free_pairs();
    }
    mx_backend_set_act_mode(cpu, MX_ACT_GGML);
    mx_backend_set_act_mode(gpu, MX_ACT_GGML);
}

static void test_norms_and_elementwise(void **state) {
    (void)state;
    struct pair *x = rnd(300, 7, 1, 1, 2.0f), *w = rnd(300, 1, 1, 1, 1.0f);
    struct pair *b = rnd(300, 1, 1, 1, 1.0f), *y = mkp(MX_TYPE_F32, 300, 7, 1, 1);
    assert_int_equal(mx_op_rms_norm(cpu, &y->h, &x->h, &w->h, 1e-5f), 0);
    assert_int_equal(mx_op_rms_norm(gpu, &y->d, &x->d, &w->d, 1e-5f), 0);
    cmp(y, 1e-5, "rms_norm");
    assert_int_equal(mx_op_layer_norm(cpu, &y->h, &x->h, &w->h, &b->h, 1e-5f), 0);
    assert_int_equal(mx_op_layer_norm(gpu, &y->d, &x->d, &w->d, &b->d, 1e-5f), 0);
    cmp(y, 1e-5, "layer_norm");
    assert_int_equal(mx_op_softmax(cpu, &y->h, &x->h, 0.7f), 0);
    assert_int_equal(mx_op_softmax(gpu, &y->d, &x->d, 0.7f), 0);
    cmp(y, 1e-5, "softmax");
    assert_int_equal(mx_op_silu(cpu, &y->h, &x->h), 0);
    assert_int_equal(mx_op_silu(gpu, &y->d, &x->d), 0);
    cmp(y, 1e-5, "silu");
    assert_int_equal(mx_op_gelu(cpu, &y->h, &x->h), 0);
    assert_int_equal(mx_op_gelu(gpu, &y->d, &x->d), 0);
    cmp(y, 1e-3, "gelu (CPU: ggml's f16 table)");
    assert_int_equal(mx_op_gelu_quick(cpu, &y->h, &x->h), 0);
    assert_int_equal(mx_op_gelu_quick(gpu, &y->d, &x->d), 0);
    cmp(y, 1e-3, "gelu_quick");
    struct pair *u = rnd(300, 7, 1, 1, 2.0f);
    assert_int_equal(mx_op_silu_mul(cpu, &y->h, &x->h, &u->h), 0);
    assert_int_equal(mx_op_silu_mul(gpu, &y->d, &x->d, &u->d), 0);
    cmp(y, 1e-5, "silu_mul");
    assert_int_equal(mx_op_gelu_mul(cpu, &y->h, &x->h, &u->h), 0);
    assert_int_equal(mx_op_gelu_mul(gpu, &y->d, &x->d, &u->d), 0);
    cmp(y, 1e-3, "gelu_mul");
    assert_int_equal(mx_op_add(cpu, &y->h, &x->h, &b->h), 0); /* bias broadcast */
    assert_int_equal(mx_op_add(gpu, &y->d, &x->d, &b->d), 0);
    cmp(y, 1e-6, "add (broadcast)");
    assert_int_equal(mx_op_mul(cpu, &y->h, &x->h, &u->h), 0);
    assert_int_equal(mx_op_mul(gpu, &y->d, &x->d, &u->d), 0);
    cmp(y, 1e-6, "mul");
    assert_int_equal(mx_op_sigmoid(cpu, &y->h, &x->h), 0);
    assert_int_equal(mx_op_sigmoid(gpu, &y->d, &x->d), 0);
    cmp(y, 1e-6, "sigmoid");
    assert_int_equal(mx_op_swiglu_oai(cpu, &y->h, &x->h, &u->h, 1.702f, 1.5f), 0);
    assert_int_equal(mx_op_swiglu_oai(gpu, &y->d, &x->d, &u->d, 1.702f, 1.5f), 0);
    cmp(y, 1e-5, "swiglu_oai (clamped)");
    assert_int_equal(mx_op_scale(cpu, &y->h, &x->h, -0.3f), 0);
    assert_int_equal(mx_op_scale(gpu, &y->d, &x->d, -0.3f), 0);
    cmp(y, 1e-6, "scale");
    free_pairs();
}

static void test_rope_and_shift(void **state) {
    (void)state;
    const int hd = 64, nh = 4, T = 9;
    int32_t posv[T];
    for (int i = 0; i < T; i++)
        posv[i] = 3 + 1000 * i;
    struct pair *pos = ids_p(T, 1, posv);
    struct pair *ff = rnd(hd / 2, 1, 1, 1, 0.5f);
    float *f = ff->h.data;
    for (int i = 0; i < hd / 2; i++)
        f[i] += 1.5f;
    up(ff);
    for (int v = 0; v < 4; v++) {
        struct mx_rope_params rp = {.n_rot = v == 3 ? 32 : hd, .mode = v & 1 ? MX_ROPE_NEOX : 0,
                                    .freq_base = 10000.0f, .freq_scale = v == 2 ? 0.25f : 1.0f};
        if (v == 2) { /* YaRN */
            rp.ext_factor = 1.0f;
            rp.attn_factor = 1.0f;
            rp.beta_fast = 32.0f;
            rp.beta_slow = 1.0f;
            rp.n_ctx_orig = 4096;
        }
        if (v == 3)
            rp.freq_factors = &ff->h;
        struct pair *x = rnd(hd, nh, T, 1, 1.0f), *y = mkp(MX_TYPE_F32, hd, nh, T, 1);
        assert_int_equal(mx_op_rope(cpu, &y->h, &x->h, &pos->h, &rp), 0);
        if (v == 3)
            rp.freq_factors = &ff->d;
        assert_int_equal(mx_op_rope(gpu, &y->d, &x->d, &pos->d, &rp), 0);
        char what[32];
        snprintf(what, sizeof what, "rope variant %d", v);
        cmp(y, 1e-4, what);
    }
    /* K shift of F16 and Q8_0 caches */
    const enum mx_type ct[] = {MX_TYPE_F32, MX_TYPE_F16, MX_TYPE_Q8_0};
    struct mx_rope_params rp = {.n_rot = hd, .mode = 0, .freq_base = 10000.0f, .freq_scale = 1};
    for (int k = 0; k < 3; k++) {
        struct pair *src = rnd(hd * 2, 6, 1, 1, 1.0f);
        struct pair *kc = mkp(ct[k], hd * 2, 6, 1, 1);
        assert_int_equal(mx_op_cpy(cpu, &kc->h, &src->h), 0);
        up(kc);
        int32_t dv[6] = {-5, 7, 100, -100, 0, 31};
        struct pair *d = ids_p(6, 1, dv);
        assert_int_equal(mx_op_kv_shift(cpu, &kc->h, &d->h, hd, &rp), 0);
        assert_int_equal(mx_op_kv_shift(gpu, &kc->d, &d->d, hd, &rp), 0);
        char what[32];
        snprintf(what, sizeof what, "kv_shift %s", mx_type_name(ct[k]));
        cmp(kc, k == 2 ? 2e-2 : 1e-3, what); /* one Q8_0 step when a rounding tie flips */
    }
    free_pairs();
}

static void test_attention(void **state) {
    (void)state;
    const int hd = 64, nh = 8, nkv = 2, ctx = 300, T = 5;
    const enum mx_type ct[] = {MX_TYPE_F32, MX_TYPE_F16, MX_TYPE_Q8_0};
    for (int k = 0; k < 3; k++) {
        for (int win = 0; win < 2; win++) {
            struct pair *kf = rnd(hd * nkv, ctx, 1, 1, 1.0f), *vf = rnd(hd * nkv, ctx, 1, 1, 1.0f);
            struct pair *kc = mkp(ct[k], hd * nkv, ctx, 1, 1), *vc = mkp(ct[k], hd * nkv, ctx, 1, 1);
            assert_int_equal(mx_op_cpy(cpu, &kc->h, &kf->h), 0);
            assert_int_equal(mx_op_cpy(cpu, &vc->h, &vf->h), 0);
            up(kc);
            up(vc);
            int32_t kp[ctx], qp[T];
            for (int c = 0; c < ctx; c++) /* some empty cells, positions out of order */
                kp[c] = c % 17 == 5 ? -1 : (c * 37) % ctx;
            for (int t = 0; t < T; t++)
                qp[t] = 250 + 10 * t;
            struct pair *kpos = ids_p(ctx, 1, kp), *qpos = ids_p(T, 1, qp);
            struct pair *q = rnd(hd, nh, T, 1, 1.0f), *o = mkp(MX_TYPE_F32, hd, nh, T, 1);
            struct pair *sk = rnd(nh, 1, 1, 1, 4.0f); /* gpt-oss sinks on the windowed runs */
            struct mx_attn_params ap = {.n_head = nh, .n_head_kv = nkv, .head_dim = hd,
                                        .n_kv = ctx, .scale = 0.125f, .window = win ? 64 : 0,
                                        .sinks = win ? &sk->h : NULL};
            assert_int_equal(mx_op_attn(cpu, &o->h, &q->h, &kc->h, &vc->h, &qpos->h, &kpos->h,
                                        &ap), 0);
            if (win)
                ap.sinks = &sk->d;
            assert_int_equal(mx_op_attn(gpu, &o->d, &q->d, &kc->d, &vc->d, &qpos->d, &kpos->d,
                                        &ap), 0);
            char what[48];
            snprintf(what, sizeof what, "attn %s window %d%s", mx_type_name(ct[k]), ap.window,
                     win ? " sinks" : "");
            cmp(o, 1e-4, what);
            free_pairs();
        }
    }
}

static void test_cpy_and_moe(void **state) {
    (void)state;
    struct pair *x = rnd(256, 10, 1, 1, 3.0f);
    const enum mx_type dt[] = {MX_TYPE_F16, MX_TYPE_BF16, MX_TYPE_Q8_0};
    for (int k = 0; k < 3; k++) {
        struct pair *y = mkp(dt[k], 256, 10, 1, 1);
        assert_int_equal(mx_op_cpy(cpu, &y->h, &x->h), 0);
        assert_int_equal(mx_op_cpy(gpu, &y->d, &x->d), 0);
        char what[32];
        snprintf(what, sizeof what, "cpy f32 -> %s", mx_type_name(dt[k]));
        cmp(y, 1e-6, what); /* the same rounding: equal up to ties */
    }
    /* overlapping rows of one tensor (cache compaction) */
    struct mx_tensor a, b;
    assert_int_equal(mx_tensor_view_rows(&x->h, 2, 6, &a), 0);
    assert_int_equal(mx_tensor_view_rows(&x->h, 0, 6, &b), 0);
    assert_int_equal(mx_op_cpy(cpu, &b, &a), 0);
    assert_int_equal(mx_tensor_view_rows(&x->d, 2, 6, &a), 0);
    assert_int_equal(mx_tensor_view_rows(&x->d, 0, 6, &b), 0);
    assert_int_equal(mx_op_cpy(gpu, &b, &a), 0);
    cmp(x, 0, "cpy overlapping rows");

    struct pair *lg = rnd(8, 6, 1, 1, 2.0f);
    float *l = lg->h.data;
    l[3] = l[5]; /* a tie: the lower id first */
    up(lg);
    struct pair *ids = mkp(MX_TYPE_I32, 2, 6, 1, 1), *w = mkp(MX_TYPE_F32, 2, 6, 1, 1);
    for (int renorm = 0; renorm < 2; renorm++) {
        assert_int_equal(mx_op_moe_route(cpu, &ids->h, &w->h, &lg->h, renorm), 0);
        assert_int_equal(mx_op_moe_route(gpu, &ids->d, &w->d, &lg->d, renorm), 0);
        int32_t gi[12];
        assert_int_equal(mx_tensor_get(gpu, &ids->d, gi, 0, sizeof gi), 0);
        assert_memory_equal(gi, ids->h.data, sizeof gi);
        cmp(w, 1e-5, renorm ? "moe_route renorm" : "moe_route");
    }
    struct pair *ey = rnd(64, 2, 6, 1, 1.0f), *out = mkp(MX_TYPE_F32, 64, 6, 1, 1);
    assert_int_equal(mx_op_moe_combine(cpu, &out->h, &ey->h, &w->h), 0);
    assert_int_equal(mx_op_moe_combine(gpu, &out->d, &ey->d, &w->d), 0);
    cmp(out, 1e-6, "moe_combine");
    free_pairs();
}

static void test_diffusion_ops(void **state) {
    (void)state;
    struct pair *x = rnd(13, 11, 8, 2, 1.0f);
    const enum mx_type kt[] = {MX_TYPE_F32, MX_TYPE_F16};
    for (int k = 0; k < 2; k++) {
        for (int s = 1; s <= 2; s++) {
            struct pair *w = rnd_w(kt[k], 3, 3, 8 * 5), *b = rnd(5, 1, 1, 1, 1.0f);
            struct mx_tensor w4; /* [3, 3, 8, 5] */
            assert_int_equal(mx_tensor_reshape(&w->h, 3, 3, 8, 5, &w4), 0);
            struct mx_tensor w4d = w4;
            w4d.buf = w->d.buf;
            w4d.data = w->d.data;
            int Wo = (13 + 2 - 3) / s + 1, Ho = (11 + 2 - 3) / s + 1;
            struct pair *y = mkp(MX_TYPE_F32, Wo, Ho, 5, 2);
            struct mx_conv2d_params cp = {s, s, 1, 1, 1, 1};
            assert_int_equal(mx_op_conv2d(cpu, &y->h, &x->h, &w4, &b->h, &cp), 0);
            assert_int_equal(mx_op_conv2d(gpu, &y->d, &x->d, &w4d, &b->d, &cp), 0);
            char what[32];
            snprintf(what, sizeof what, "conv2d %s stride %d", mx_type_name(kt[k]), s);
            cmp(y, 1e-5, what);
        }
    }
    struct pair *gw = rnd(8, 1, 1, 1, 1.0f), *gb = rnd(8, 1, 1, 1, 1.0f);
    struct pair *gy = mkp(MX_TYPE_F32, 13, 11, 8, 2);
    assert_int_equal(mx_op_group_norm(cpu, &gy->h, &x->h, &gw->h, &gb->h, 4, 1e-6f), 0);
    assert_int_equal(mx_op_group_norm(gpu, &gy->d, &x->d, &gw->d, &gb->d, 4, 1e-6f), 0);
    cmp(gy, 1e-5, "group_norm");
    struct pair *up2 = mkp(MX_TYPE_F32, 26, 22, 8, 2);
    assert_int_equal(mx_op_upsample(cpu, &up2->h, &x->h, 2), 0);
    assert_int_equal(mx_op_upsample(gpu, &up2->d, &x->d, 2), 0);
    cmp(up2, 0, "upsample");
    struct pair *x2 = rnd(13, 11, 3, 2, 1.0f), *cc = mkp(MX_TYPE_F32, 13, 11, 11, 2);
    assert_int_equal(mx_op_concat(cpu, &cc->h, &x->h, &x2->h, 2), 0);
    assert_int_equal(mx_op_concat(gpu, &cc->d, &x->d, &x2->d, 2), 0);
    cmp(cc, 0, "concat dim 2");
    struct pair *tr = mkp(MX_TYPE_F32, 11, 13, 8, 2);
    assert_int_equal(mx_op_transpose(cpu, &tr->h, &x->h), 0);
    assert_int_equal(mx_op_transpose(gpu, &tr->d, &x->d), 0);
    cmp(tr, 0, "transpose");
    free_pairs();
}

int main(void) {
    struct mx_err err = {0};
    gpu = mx_backend_cuda_new(0, &err);
    if (!gpu) {
        printf("SKIP: no CUDA device to test the CUDA backend on: %s\n", err.msg);
        return 77;
    }
    cpu = mx_backend_cpu_new(0, &err);
    if (!cpu)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_types),   cmocka_unit_test(test_matmul_id_get_rows),
        cmocka_unit_test(test_matmul_id_grouped),
        cmocka_unit_test(test_norms_and_elementwise), cmocka_unit_test(test_rope_and_shift),
        cmocka_unit_test(test_attention),      cmocka_unit_test(test_cpy_and_moe),
        cmocka_unit_test(test_diffusion_ops),
    };
    int rc = mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
    mx_backend_free(cpu);
    mx_backend_free(gpu);
    return rc;
}
