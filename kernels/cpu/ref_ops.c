/* ref_ops.c - scalar reference kernels of the CPU backend: the ground truth that faster kernels
 * and other backends are tested against.
 *
 * Honest loops, with the float rounding of ggml's CPU ops wherever that is cheap to mirror
 * (double sums in norms and softmax, RoPE angles in float32, the x86 Q8_0 rounding), so the
 * engine's logits can be compared with llama.cpp's. Each task splits its output rows by
 * (ith, nth); every output value is computed by one thread in one fixed order.
 */
#include "kernels/cpu/cpu.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "core/base/util.h"

/* ---- row conversion ------------------------------------------------------------------------- */

void mx_ref_load_f32(enum mx_type type, const void *row, int64_t i0, int64_t n, float *out) {
    switch (type) {
    case MX_TYPE_F32:
        memcpy(out, (const float *)row + i0, (size_t)n * sizeof(float));
        break;
    case MX_TYPE_F16: {
        const uint16_t *h = (const uint16_t *)row + i0;
        for (int64_t i = 0; i < n; i++)
            out[i] = mx_fp16_to_fp32(h[i]);
        break;
    }
    case MX_TYPE_BF16: {
        const uint16_t *h = (const uint16_t *)row + i0;
        for (int64_t i = 0; i < n; i++)
            out[i] = mx_bf16_to_fp32(h[i]);
        break;
    }
    case MX_TYPE_Q8_0: {
        const mx_block_q8_0 *b = row;
        for (int64_t i = 0; i < n; i++) {
            int64_t j = i0 + i;
            const mx_block_q8_0 *bj = &b[j / MX_QK8_0];
            out[i] = (float)bj->qs[j % MX_QK8_0] * mx_fp16_to_fp32(bj->d);
        }
        break;
    }
    default:
        memset(out, 0, (size_t)n * sizeof(float)); /* excluded by the op checks */
        break;
    }
}

/* ggml's x86 quantize_row_q8_0 (AVX2 build): d = amax/127 stored as fp16, q = rint(x * 127/amax)
 * with the unrounded inverse. Returns the block's sum of q (for Q8_1). */
static int quant_block_q8(const float *x, int8_t *qs, float *d_out) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    float d = amax / 127.0f;
    float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    int sum = 0;
    for (int j = 0; j < 32; j++) {
        int q = (int)nearbyintf(x[j] * id);
        qs[j] = (int8_t)q;
        sum += q;
    }
    *d_out = d;
    return sum;
}

void mx_ref_store_row(enum mx_type type, const float *src, void *dst, int64_t n) {
    switch (type) {
    case MX_TYPE_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        break;
    case MX_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = mx_fp32_to_fp16(src[i]);
        break;
    case MX_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            ((uint16_t *)dst)[i] = mx_fp32_to_bf16(src[i]);
        break;
    case MX_TYPE_Q8_0: {
        mx_block_q8_0 *b = dst;
        for (int64_t ib = 0; ib < n / MX_QK8_0; ib++) {
            float d;
            quant_block_q8(src + ib * MX_QK8_0, b[ib].qs, &d);
            b[ib].d = mx_fp32_to_fp16(d);
        }
        break;
    }
    default:
        break;
    }
}

enum mx_type mx_vec_dot_type(enum mx_type wtype) {
    switch (wtype) {
    case MX_TYPE_Q4_0: case MX_TYPE_Q5_0: case MX_TYPE_Q8_0: case MX_TYPE_MXFP4:
    case MX_TYPE_IQ4_NL:
        return MX_TYPE_Q8_0;
    case MX_TYPE_Q4_1: case MX_TYPE_Q5_1:
        return MX_TYPE_Q8_1;
    case MX_TYPE_Q2_K: case MX_TYPE_Q3_K: case MX_TYPE_Q4_K: case MX_TYPE_Q5_K:
    case MX_TYPE_Q6_K:
    case MX_TYPE_IQ2_XXS: case MX_TYPE_IQ2_XS: case MX_TYPE_IQ2_S: case MX_TYPE_IQ3_XXS:
    case MX_TYPE_IQ3_S: case MX_TYPE_IQ1_S: case MX_TYPE_IQ1_M: case MX_TYPE_IQ4_XS:
        return MX_TYPE_Q8_K;
    case MX_TYPE_F16:
        return MX_TYPE_F16;
    case MX_TYPE_BF16:
        return MX_TYPE_BF16;
    default:
        return MX_TYPE_F32;
    }
}

/* ggml's quantize_row_q8_K_ref: the signed value of largest magnitude maps to -127. */
static void quant_block_q8_K(const float *x, mx_block_q8_K *y) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < MX_QK_K; j++) {
        float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    if (amax == 0.0f) {
        memset(y, 0, sizeof *y);
        return;
    }
    float iscale = -127.0f / max;
    for (int j = 0; j < MX_QK_K; j++) {
        int v = (int)nearbyintf(iscale * x[j]);
        y->qs[j] = (int8_t)(v < 127 ? v : 127);
    }
    for (int j = 0; j < MX_QK_K / 16; j++) {
        int sum = 0;
        for (int ii = 0; ii < 16; ii++)
            sum += y->qs[j * 16 + ii];
        y->bsums[j] = (int16_t)sum;
    }
    y->d = 1.0f / iscale;
}

void mx_quantize_act(enum mx_type vdtype, const float *x, void *dst, int64_t n) {
    switch (vdtype) {
    case MX_TYPE_Q8_0: {
        mx_block_q8_0 *b = dst;
        float *sums = (float *)((char *)dst + mx_act_sums_offset(n));
        for (int64_t ib = 0; ib < n / MX_QK8_0; ib++) {
            float d;
            sums[ib] = (float)quant_block_q8(x + ib * MX_QK8_0, b[ib].qs, &d);
            b[ib].d = mx_fp32_to_fp16(d);
        }
        break;
    }
    case MX_TYPE_Q8_1: {
        mx_block_q8_1 *b = dst;
        for (int64_t ib = 0; ib < n / MX_QK8_1; ib++) {
            float d;
            int sum = quant_block_q8(x + ib * MX_QK8_1, b[ib].qs, &d);
            b[ib].d = mx_fp32_to_fp16(d);
            b[ib].s = mx_fp32_to_fp16(d * (float)sum);
        }
        break;
    }
    case MX_TYPE_Q8_K: {
        mx_block_q8_K *b = dst;
        for (int64_t ib = 0; ib < n / MX_QK_K; ib++)
            quant_block_q8_K(x + ib * MX_QK_K, &b[ib]);
        break;
    }
    case MX_TYPE_F16:
    case MX_TYPE_BF16:
    case MX_TYPE_F32:
        mx_ref_store_row(vdtype, x, dst, n);
        break;
    default:
        break;
    }
}

void mx_ref_round_act(enum mx_type wtype, float *x, int64_t n) {
    switch (mx_vec_dot_type(wtype)) {
    case MX_TYPE_Q8_0:
    case MX_TYPE_Q8_1: /* same values as Q8_0; only the extra sum differs */
        for (int64_t ib = 0; ib < n / 32; ib++) {
            int8_t qs[32];
            float d;
            quant_block_q8(x + ib * 32, qs, &d);
            float dh = mx_fp16_to_fp32(mx_fp32_to_fp16(d));
            for (int j = 0; j < 32; j++)
                x[ib * 32 + j] = (float)qs[j] * dh;
        }
        break;
    case MX_TYPE_Q8_K:
        for (int64_t ib = 0; ib < n / MX_QK_K; ib++) {
            mx_block_q8_K b;
            quant_block_q8_K(x + ib * MX_QK_K, &b);
            for (int j = 0; j < MX_QK_K; j++)
                x[ib * MX_QK_K + j] = (float)b.qs[j] * b.d;
        }
        break;
    case MX_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            x[i] = mx_fp16_to_fp32(mx_fp32_to_fp16(x[i]));
        break;
    case MX_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            x[i] = mx_bf16_to_fp32(mx_fp32_to_bf16(x[i]));
        break;
    default:
        break;
    }
}

static void set_status(struct mx_ref_args *a, int code) {
    int zero = 0;
    atomic_compare_exchange_strong(&a->status, &zero, code);
}

/* ---- norms ----------------------------------------------------------------------------------- */

void mx_ref_rms_norm(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *x = a->src[0], *w = a->src[1];
    int64_t n = x->ne[0], r0, r1;
    mx_split(mx_tensor_nrows(x), ith, nth, &r0, &r1);
    const float *wv = w ? w->data : NULL;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = mx_row(x, r);
        float *y = mx_row(a->dst, r);
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++)
            sum += (double)(xr[i] * xr[i]);
        float mean = (float)(sum / (double)n);
        float scale = 1.0f / sqrtf(mean + a->f);
        for (int64_t i = 0; i < n; i++) {
            float v = xr[i] * scale; /* ggml: rms_norm, then a separate mul by the weight */
            y[i] = wv ? v * wv[i] : v;
        }
    }
}

void mx_ref_layer_norm(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *x = a->src[0], *w = a->src[1], *b = a->src[2];
    int64_t n = x->ne[0], r0, r1;
    mx_split(mx_tensor_nrows(x), ith, nth, &r0, &r1);
    const float *wv = w ? w->data : NULL, *bv = b ? b->data : NULL;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = mx_row(x, r);
        float *y = mx_row(a->dst, r);
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++)
            sum += (double)xr[i];
        float mean = (float)(sum / (double)n);
        double sum2 = 0.0;
        for (int64_t i = 0; i < n; i++) {
            float v = xr[i] - mean;
            y[i] = v;
            sum2 += (double)(v * v);
        }
        float scale = 1.0f / sqrtf((float)(sum2 / (double)n) + a->f);
        for (int64_t i = 0; i < n; i++) {
            float v = y[i] * scale;
            if (wv)
                v *= wv[i];
            if (bv)
                v += bv[i];
            y[i] = v;
        }
    }
}

/* ---- rope ----------------------------------------------------------------------------------- */

/* Per-call RoPE constants (ggml_rope_cache_init's inputs). */
struct rope_consts {
    float theta_scale;  /* freq_base^(-2/n_rot) */
    float corr[2];      /* YaRN ramp ends in pair units */
    float mscale;       /* magnitude factor */
    const float *ff;    /* freq factors or NULL */
};

/* ggml_rope_yarn_corr_dim: the pair index whose wavelength fits n_rot_turns in n_ctx_orig. */
static float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot_turns, float base) {
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot_turns * 2.0f * (float)M_PI)) /
           (2.0f * logf(base));
}

static void rope_consts_init(const struct mx_rope_params *rp, struct rope_consts *k) {
    k->theta_scale = powf(rp->freq_base, -2.0f / (float)rp->n_rot);
    k->mscale = rp->attn_factor != 0.0f ? rp->attn_factor : 1.0f;
    k->ff = rp->freq_factors ? rp->freq_factors->data : NULL;
    k->corr[0] = k->corr[1] = 0.0f;
    if (rp->ext_factor != 0.0f) {
        float start =
            floorf(yarn_corr_dim(rp->n_rot, rp->n_ctx_orig, rp->beta_fast, rp->freq_base));
        float end = ceilf(yarn_corr_dim(rp->n_rot, rp->n_ctx_orig, rp->beta_slow, rp->freq_base));
        k->corr[0] = fmaxf(0.0f, start);
        k->corr[1] = fminf((float)(rp->n_rot - 1), end);
    }
}

/* Rotates one head's first n_rot dims at position p, in place on x (f32), with ggml's float32
 * angle recurrence and rope_yarn mixing. */
static void rope_head(float *x, int64_t p, const struct mx_rope_params *rp,
                      const struct rope_consts *k) {
    float base = (float)p;
    int half = rp->n_rot / 2;
    for (int i = 0; i < half; i++) {
        float extrap = k->ff ? base / k->ff[i] : base;
        float theta = rp->freq_scale * extrap, ms = k->mscale;
        if (rp->ext_factor != 0.0f) {
            float y = ((float)i - k->corr[0]) / fmaxf(0.001f, k->corr[1] - k->corr[0]);
            float mix = (1.0f - fminf(1.0f, fmaxf(0.0f, y))) * rp->ext_factor;
            theta = theta * (1.0f - mix) + extrap * mix;
            ms *= 1.0f + 0.1f * logf(1.0f / rp->freq_scale);
        }
        float c = cosf(theta) * ms, s = sinf(theta) * ms;
        int i0 = rp->mode == MX_ROPE_NEOX ? i : 2 * i;
        int i1 = rp->mode == MX_ROPE_NEOX ? i + half : 2 * i + 1;
        float x0 = x[i0], x1 = x[i1];
        /* fused as ggml's rope is on FMA machines (its C++ is built with fp-contract on, and
         * the x86 CPU backends llama.cpp ships all have FMA): x0*c rounds once with -(x1*s) */
        x[i0] = fmaf(x0, c, -(x1 * s));
        x[i1] = fmaf(x0, s, x1 * c);
        base *= k->theta_scale;
    }
}

void mx_ref_rope(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *x = a->src[0], *pos = a->src[1];
    const struct mx_rope_params *rp = a->p;
    const int32_t *pv = pos->data;
    int64_t hd = x->ne[0], r0, r1;
    struct rope_consts k;
    rope_consts_init(rp, &k);
    mx_split(mx_tensor_nrows(x), ith, nth, &r0, &r1); /* a row = one head of one token */
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = mx_row(x, r);
        float *y = mx_row(a->dst, r);
        if (y != xr)
            memcpy(y, xr, (size_t)hd * sizeof(float));
        rope_head(y, pv[r / x->ne[1]], rp, &k);
    }
}

void mx_ref_kv_shift(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    struct mx_tensor *k = a->dst;
    const int32_t *dv = a->src[0]->data;
    const struct mx_rope_params *rp = a->p;
    int64_t n = k->ne[0], hd = a->i, r0, r1;
    float *buf = a->cpu->tbuf[ith];
    struct rope_consts rc;
    rope_consts_init(rp, &rc);
    mx_split(mx_tensor_nrows(k), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        void *row = mx_row(k, r);
        mx_ref_load_f32(k->type, row, 0, n, buf);
        for (int64_t h = 0; h < n / hd; h++)
            rope_head(buf + h * hd, dv[r], rp, &rc);
        mx_ref_store_row(k->type, buf, row, n);
    }
}

/* ---- attention ------------------------------------------------------------------------------- */

void mx_ref_attn(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *q = a->src[0], *kc = a->src[1], *vc = a->src[2];
    const int32_t *qpos = a->src[3]->data, *kpos = a->src[4]->data;
    const struct mx_attn_params *p = a->p;
    int64_t hd = p->head_dim, n_kv = p->n_kv, group = p->n_head / p->n_head_kv;
    bool ggml = a->act_mode == MX_ACT_GGML;
    float *sc = a->cpu->tbuf[ith];     /* [n_kv] scores, then weights */
    float *qv = sc + n_kv;             /* [hd] the query, rounded like ggml */
    float *kv = qv + hd;               /* [hd] one cached key or value */
    float *acc = kv + hd;              /* [hd] output accumulator */
    int64_t r0, r1;
    mx_split(mx_tensor_nrows(q), ith, nth, &r0, &r1); /* a row = one head of one token */
    for (int64_t r = r0; r < r1; r++) {
        int64_t t = r / p->n_head, h = r % p->n_head, g = h / group;
        int32_t qp = qpos[t];
        memcpy(qv, mx_row(q, r), (size_t)hd * sizeof(float));
        /* ggml's mul_mat rounds q to the cache's vec_dot type (F16, or Q8_0 blocks) */
        if (ggml && kc->type == MX_TYPE_F16)
            mx_ref_round_act(MX_TYPE_F16, qv, hd);
        else if (ggml && kc->type == MX_TYPE_Q8_0 && hd % 32 == 0)
            mx_ref_round_act(MX_TYPE_Q8_0, qv, hd);
        float max = -INFINITY;
        for (int64_t c = 0; c < n_kv; c++) {
            int32_t kp = kpos[c];
            if (kp < 0 || kp > qp || (p->window > 0 && (int64_t)qp - kp >= p->window)) {
                sc[c] = -INFINITY;
                continue;
            }
            mx_ref_load_f32(kc->type, mx_row(kc, c), g * hd, hd, kv);
            float s = 0.0f;
            for (int64_t i = 0; i < hd; i++)
                s += qv[i] * kv[i];
            sc[c] = s * p->scale;
            max = fmaxf(max, sc[c]);
        }
        float *y = mx_row(a->dst, r);
        if (max == -INFINITY) { /* nothing visible */
            memset(y, 0, (size_t)hd * sizeof(float));
            continue;
        }
        /* a sink logit above every score becomes the max, so no term overflows */
        float sink = p->sinks ? ((const float *)p->sinks->data)[h] : -INFINITY;
        max = fmaxf(max, sink);
        double sum = p->sinks ? (double)expf(sink - max) : 0.0;
        for (int64_t c = 0; c < n_kv; c++) {
            float e = sc[c] == -INFINITY ? 0.0f : expf(sc[c] - max);
            sc[c] = e;
            sum += (double)e;
        }
        float inv = (float)(1.0 / sum);
        memset(acc, 0, (size_t)hd * sizeof(float));
        for (int64_t c = 0; c < n_kv; c++) {
            if (sc[c] == 0.0f)
                continue;
            float w = sc[c] * inv;
            if (ggml && vc->type == MX_TYPE_F16)
                w = mx_fp16_to_fp32(mx_fp32_to_fp16(w));
            mx_ref_load_f32(vc->type, mx_row(vc, c), g * hd, hd, kv);
            for (int64_t i = 0; i < hd; i++)
                acc[i] += w * kv[i];
        }
        memcpy(y, acc, (size_t)hd * sizeof(float));
    }
}

/* ---- softmax, activations, elementwise ------------------------------------------------------ */

/* softmax(scale * x) of n values into y, like ggml_soft_max: max-subtracted expf, double sum. */
static void softmax_row(const float *x, float *y, int64_t n, float scale) {
    float max = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        max = fmaxf(max, x[i] * scale);
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float e = expf(x[i] * scale - max);
        y[i] = e;
        sum += (double)e;
    }
    float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        y[i] *= inv;
}

void mx_ref_softmax(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *x = a->src[0];
    int64_t r0, r1;
    mx_split(mx_tensor_nrows(x), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++)
        softmax_row(mx_row(x, r), mx_row(a->dst, r), x->ne[0], a->f);
}

static float silu(float x) {
    return mx_silu_f(x);
}

static float gelu(float x) {
    const float sqrt_2_over_pi = 0.79788456080286535587989211986876f;
    return 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * x * (1.0f + 0.044715f * x * x)));
}

/* Element range [e0, e1) of a contiguous tensor of n elements for thread ith. */
static void split_elems(const struct mx_tensor *t, int ith, int nth, int64_t *e0, int64_t *e1) {
    mx_split(mx_tensor_nelements(t), ith, nth, e0, e1);
}

#define UNARY_TASK(fname, expr)                                                                  \
    void fname(void *args, int ith, int nth) {                                                   \
        struct mx_ref_args *a = args;                                                            \
        const float *x = a->src[0]->data;                                                        \
        const float *u = a->src[1] ? a->src[1]->data : NULL;                                     \
        float *y = a->dst->data;                                                                 \
        float s = a->f;                                                                          \
        int64_t e0, e1;                                                                          \
        split_elems(a->dst, ith, nth, &e0, &e1);                                                 \
        for (int64_t i = e0; i < e1; i++)                                                        \
            y[i] = (expr);                                                                       \
        (void)u;                                                                                 \
        (void)s;                                                                                 \
    }

UNARY_TASK(mx_ref_silu, silu(x[i]))
UNARY_TASK(mx_ref_gelu, gelu(x[i]))
UNARY_TASK(mx_ref_silu_mul, silu(x[i]) * u[i])
UNARY_TASK(mx_ref_gelu_mul, gelu(x[i]) * u[i])
UNARY_TASK(mx_ref_scale, x[i] * s)
UNARY_TASK(mx_ref_gelu_quick, x[i] / (1.0f + expf(-1.702f * x[i])))
UNARY_TASK(mx_ref_sigmoid, 1.0f / (1.0f + expf(-x[i])))

/* ggml_swiglu_oai: a->f = alpha, a->p = &limit (float). */
void mx_ref_swiglu_oai(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const float *x = a->src[0]->data, *u = a->src[1]->data;
    float *y = a->dst->data;
    const float alpha = a->f, limit = *(const float *)a->p;
    int64_t e0, e1;
    split_elems(a->dst, ith, nth, &e0, &e1);
    for (int64_t i = e0; i < e1; i++) {
        float g = fminf(x[i], limit);
        float v = fminf(fmaxf(u[i], -limit), limit);
        y[i] = g / (1.0f + expf(alpha * (-g))) * (v + 1.0f);
    }
}

/* a op b with b broadcast (ggml repeat rule), split by rows of a. */
static void binary(struct mx_ref_args *a, int ith, int nth, bool mul) {
    const struct mx_tensor *x = a->src[0], *b = a->src[1];
    int64_t n = x->ne[0], r0, r1;
    mx_split(mx_tensor_nrows(x), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1 = r % x->ne[1], i2 = (r / x->ne[1]) % x->ne[2], i3 = r / (x->ne[1] * x->ne[2]);
        const float *xr = mx_row(x, r);
        const float *br =
            (const float *)((const char *)b->data + (size_t)(i1 % b->ne[1]) * b->nb[1] +
                            (size_t)(i2 % b->ne[2]) * b->nb[2] +
                            (size_t)(i3 % b->ne[3]) * b->nb[3]);
        float *y = mx_row(a->dst, r);
        int64_t nb0 = b->ne[0];
        /* the common shapes without the per-element modulo (which keeps the loop scalar): the
         * same row, or one value per row (a per-channel bias over an image plane) */
        if (nb0 == n && !mul)
            for (int64_t i = 0; i < n; i++)
                y[i] = xr[i] + br[i];
        else if (nb0 == n)
            for (int64_t i = 0; i < n; i++)
                y[i] = xr[i] * br[i];
        else if (nb0 == 1 && !mul)
            for (int64_t i = 0; i < n; i++)
                y[i] = xr[i] + br[0];
        else
            for (int64_t i = 0; i < n; i++)
                y[i] = mul ? xr[i] * br[i % nb0] : xr[i] + br[i % nb0];
    }
}

void mx_ref_add(void *args, int ith, int nth) {
    binary(args, ith, nth, false);
}

void mx_ref_mul(void *args, int ith, int nth) {
    binary(args, ith, nth, true);
}

void mx_ref_cpy(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *src = a->src[0];
    struct mx_tensor *dst = a->dst;
    if (src->type == dst->type) { /* one memmove: rows may overlap (cache compaction) */
        if (ith == 0)
            memmove(dst->data, src->data, mx_tensor_nbytes(dst));
        return;
    }
    int64_t n = dst->ne[0], r0, r1;
    float *buf = a->cpu->tbuf[ith];
    mx_split(mx_tensor_nrows(dst), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        mx_ref_load_f32(src->type, src->data, r * n, n, buf);
        mx_ref_store_row(dst->type, buf, mx_row(dst, r), n);
    }
}

/* ---- MoE ----------------------------------------------------------------------------------- */

void mx_ref_moe_route(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *lg = a->src[0];
    struct mx_tensor *ids = a->dst, *wts = a->dst2;
    int64_t ne = lg->ne[0], k = ids->ne[0], r0, r1;
    float *prob = a->cpu->tbuf[ith];
    mx_split(mx_tensor_nrows(lg), ith, nth, &r0, &r1);
    for (int64_t t = r0; t < r1; t++) {
        softmax_row(mx_row(lg, t), prob, ne, 1.0f);
        int32_t *id = mx_row(ids, t);
        float *w = mx_row(wts, t);
        for (int64_t s = 0; s < k; s++) { /* k-th largest, lower id first on ties */
            int64_t best = -1;
            for (int64_t e = 0; e < ne; e++) {
                bool taken = false;
                for (int64_t j = 0; j < s; j++)
                    taken |= id[j] == e;
                if (!taken && (best < 0 || prob[e] > prob[best]))
                    best = e;
            }
            id[s] = (int32_t)best;
            w[s] = prob[best];
        }
        if (a->flag) {
            double sum = 0.0;
            for (int64_t s = 0; s < k; s++)
                sum += (double)w[s];
            float fs = (float)sum;
            for (int64_t s = 0; s < k; s++)
                w[s] /= fs;
        }
    }
}

void mx_ref_moe_combine(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *y = a->src[0], *wt = a->src[1];
    int64_t n = y->ne[0], k = y->ne[1], r0, r1;
    mx_split(y->ne[2], ith, nth, &r0, &r1);
    for (int64_t t = r0; t < r1; t++) {
        float *d = mx_row(a->dst, t);
        const float *w = mx_row(wt, t);
        const float *y0 = mx_row(y, t * k);
        for (int64_t i = 0; i < n; i++)
            d[i] = y0[i] * w[0];
        for (int64_t s = 1; s < k; s++) {
            const float *ys = mx_row(y, t * k + s);
            for (int64_t i = 0; i < n; i++)
                d[i] += ys[i] * w[s];
        }
    }
}

/* ---- embedding lookup ------------------------------------------------------------------------ */

void mx_ref_get_rows(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *w = a->src[0], *ids = a->src[1];
    const int32_t *iv = ids->data;
    int64_t n = w->ne[0], r0, r1;
    mx_split(mx_tensor_nrows(a->dst), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        float *y = mx_row(a->dst, r);
        int32_t id = iv[r];
        if (id < 0 || id >= w->ne[1]) {
            memset(y, 0, (size_t)n * sizeof(float));
            set_status(a, MX_EINVAL);
            continue;
        }
        if (w->type == MX_TYPE_F32)
            memcpy(y, mx_row(w, id), (size_t)n * sizeof(float));
        else if (mx_dequantize_row(w->type, mx_row(w, id), y, n) < 0)
            set_status(a, MX_EUNSUP);
    }
}
