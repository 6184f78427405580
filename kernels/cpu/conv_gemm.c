/* conv_gemm.c - 2-D convolution as im2col + OpenBLAS sgemm, the CPU backend's fast conv2d.
 *
 * The UNet and VAE of Stable Diffusion spend nearly all their time in 3x3 convolutions with
 * hundreds of channels; the direct loop in ref_conv.c runs those at ~1 GFLOP/s, sgemm at tens.
 * Each thread takes tiles of MX_CONV_TILE output pixels of one image, gathers their receptive
 * fields into a [K][tile] column matrix (K = KW*KH*C_in, zeros for padding) and multiplies:
 *   out[tile, C_out] = col^T[tile, K] . W[K, C_out]
 * in column-major terms, so the result lands directly in the [W_out*H_out, C_out] plane of dst.
 * The tile bounds scratch to K * MX_CONV_TILE floats per thread whatever the image size.
 *
 * F16 kernels are widened to f32 once per call, split over the threads (F16C when the CPU has
 * it). Numerics like ggml_conv_2d (im2col in the kernel's type): in MX_ACT_GGML mode the input
 * of an F16 kernel is rounded to f16 first, once per call into shared scratch; in MX_ACT_F32 it
 * stays f32. The gather copies runs of input pixels (one output row segment at a time) instead
 * of computing each element's source position.
 */
#include "kernels/cpu/cpu.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "core/base/util.h"

#define MX_CONV_TILE 256

struct conv_task {
    const struct mx_tensor *x, *b;
    const float *xf;         /* the input plane data the gather reads (x's, or its rounded copy) */
    struct mx_tensor *dst;
    const struct mx_tensor *wt; /* the kernel as given */
    float *wbuf;             /* f32 kernel being widened (NULL: F32 kernel used in place) */
    const float *w;          /* [C_out][K] f32 weights (K in the weight's memory order) */
    float *xr;               /* rounded input being written (NULL: no rounding) */
    const struct mx_conv2d_params *p;
    struct mx_cpu *cpu;
    int64_t KW, KH, K;       /* kernel width, height, K = KW*KH*C_in */
    int64_t P, tiles;        /* output pixels per image, tiles per image */
};

/* Phase 1: widen the kernel rows [C_out split] and round the input [planes split]. */
static void conv_prep_run(void *args, int ith, int nth) {
    const struct conv_task *t = args;
    struct mx_cpu *c = t->cpu;
    if (t->wbuf) {
        int64_t CO = t->wt->ne[3], r0, r1;
        mx_split(CO, ith, nth, &r0, &r1);
        mx_to_float_fn fast = c->kern.dequant[t->wt->type];
        const char *src = (const char *)t->wt->data;
        size_t es = t->wt->nb[0];
        for (int64_t r = r0; r < r1; r++) {
            if (fast)
                fast(src + (size_t)(r * t->K) * es, t->wbuf + r * t->K, t->K);
            else
                mx_ref_load_f32(t->wt->type, src + (size_t)(r * t->K) * es, 0, t->K,
                                t->wbuf + r * t->K);
        }
    }
    if (t->xr) {
        const struct mx_tensor *x = t->x;
        int64_t plane = x->ne[0] * x->ne[1], planes = x->ne[2] * x->ne[3], p0, p1;
        mx_split(planes, ith, nth, &p0, &p1);
        for (int64_t q = p0; q < p1; q++) {
            const float *src = (const float *)((const char *)x->data +
                                               (size_t)(q % x->ne[2]) * x->nb[2] +
                                               (size_t)(q / x->ne[2]) * x->nb[3]);
            float *d = t->xr + q * plane;
            memcpy(d, src, (size_t)plane * sizeof(float));
            if (c->kern.round_f16)
                c->kern.round_f16(d, plane);
            else
                mx_ref_round_act(MX_TYPE_F16, d, plane);
        }
    }
}

static void conv_task_run(void *args, int ith, int nth) {
    const struct conv_task *t = args;
    const struct mx_tensor *x = t->x;
    struct mx_tensor *d = t->dst;
    const struct mx_conv2d_params *p = t->p;
    int64_t W = x->ne[0], H = x->ne[1], C = x->ne[2], Wo = d->ne[0], CO = d->ne[2];
    float *col = t->cpu->tbuf[ith]; /* [K][n] */
    int64_t u0, u1;
    mx_split(d->ne[3] * t->tiles, ith, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t img = u / t->tiles, q0 = (u % t->tiles) * MX_CONV_TILE;
        int64_t n = MX_MIN(q0 + MX_CONV_TILE, t->P) - q0;
        const float *xi = t->xf + (size_t)img * (size_t)(W * H * C);
        /* gather: row k = kx + KW * (ky + KH * ci) holds input pixel (ix, iy, ci) of each output
         * pixel q of the tile, or 0 where the window hangs over the padding; the tile's pixels
         * go by output-row segments, each a run of input pixels */
        int64_t k = 0;
        for (int64_t ci = 0; ci < C; ci++)
            for (int64_t ky = 0; ky < t->KH; ky++)
                for (int64_t kx = 0; kx < t->KW; kx++, k++) {
                    float *cr = col + k * n;
                    const float *xc = xi + ci * W * H;
                    for (int64_t j = 0; j < n;) {
                        int64_t q = q0 + j, oy = q / Wo, ox0 = q % Wo;
                        int64_t len = MX_MIN(Wo - ox0, n - j);
                        int64_t iy = oy * p->stride_y - p->pad_y + ky * p->dil_y;
                        float *o = cr + j;
                        if (iy < 0 || iy >= H) {
                            memset(o, 0, (size_t)len * sizeof(float));
                        } else {
                            const float *row = xc + iy * W;
                            int64_t sx = p->stride_x, ix0 = ox0 * sx - p->pad_x + kx * p->dil_x;
                            int64_t a = 0;
                            /* leading pixels left of the image, then the inside, then right */
                            while (a < len && ix0 + a * sx < 0)
                                o[a++] = 0.0f;
                            int64_t b = len;
                            while (b > a && ix0 + (b - 1) * sx >= W)
                                o[--b] = 0.0f;
                            if (sx == 1)
                                memcpy(o + a, row + ix0 + a, (size_t)(b - a) * sizeof(float));
                            else
                                for (int64_t e = a; e < b; e++)
                                    o[e] = row[ix0 + e * sx];
                        }
                        j += len;
                    }
                }
        float *out = (float *)((char *)d->data + (size_t)img * d->nb[3]) + q0;
        cblas_sgemm(CblasColMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)CO, (int)t->K, 1.0f,
                    col, (int)n, t->w, (int)t->K, 0.0f, out, (int)t->P);
        if (t->b) {
            const float *bv = t->b->data;
            for (int64_t co = 0; co < CO; co++)
                for (int64_t j = 0; j < n; j++)
                    out[co * t->P + j] += bv[co];
        }
    }
}

int mx_cpu_conv2d_gemm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                       const struct mx_tensor *w, const struct mx_tensor *b,
                       const struct mx_conv2d_params *p) {
    struct mx_cpu *c = mx_cpu_of(be);
    int64_t K = w->ne[0] * w->ne[1] * w->ne[2], CO = w->ne[3];
    bool round = be->act_mode == MX_ACT_GGML && w->type == MX_TYPE_F16;
    size_t per = 0, wbytes = 0, xbytes = 0, shared = 0;
    bool ok = mx_mul_size((size_t)K * MX_CONV_TILE, sizeof(float), &per);
    if (ok && w->type != MX_TYPE_F32)
        ok = mx_mul_size((size_t)K * (size_t)CO, sizeof(float), &wbytes);
    if (ok && round)
        ok = mx_mul_size((size_t)mx_tensor_nelements(x), sizeof(float), &xbytes);
    wbytes = (wbytes + 63) / 64 * 64;
    ok = ok && mx_add_size(wbytes, xbytes, &shared);
    int rc = ok ? mx_cpu_reserve(c, per, shared) : MX_ENOMEM;
    if (rc < 0) {
        be->last_err.code = rc;
        snprintf(be->last_err.msg, sizeof be->last_err.msg,
                 "conv2d: cannot allocate %zu + %zu bytes of scratch", per, shared);
        return rc;
    }
    int64_t P = dst->ne[0] * dst->ne[1];
    struct conv_task task = {
        .x = x, .b = b, .xf = x->data, .dst = dst, .wt = w, .w = w->data, .p = p, .cpu = c,
        .KW = w->ne[0], .KH = w->ne[1], .K = K, .P = P,
        .tiles = (P + MX_CONV_TILE - 1) / MX_CONV_TILE,
    };
    if (w->type != MX_TYPE_F32) {
        task.wbuf = c->sbuf;
        task.w = task.wbuf;
    }
    if (round) {
        task.xr = (float *)((char *)c->sbuf + wbytes);
        task.xf = task.xr;
    }
    if (task.wbuf || task.xr)
        mx_pool_run(c->pool, conv_prep_run, &task);
    mx_pool_run(c->pool, conv_task_run, &task);
    return 0;
}
