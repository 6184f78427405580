/* conv_gemm.c - 2-D convolution as im2col + OpenBLAS sgemm, the CPU backend's fast conv2d.
 *
 * The UNet and VAE of Stable Diffusion spend nearly all their time in 3x3 convolutions with
 * hundreds of channels; the direct loop in ref_conv.c runs those at ~1 GFLOP/s, sgemm at tens.
 * Each thread takes tiles of MX_CONV_TILE output pixels of one image, gathers their receptive
 * fields into a [K][tile] column matrix (K = KW*KH*C_in, zeros for padding) and multiplies:
 *   out[tile, C_out] = col^T[tile, K] . W[K, C_out]
 * in column-major terms, so the result lands directly in the [W_out*H_out, C_out] plane of dst.
 * The tile bounds scratch to K * MX_CONV_TILE floats per thread whatever the image size.
 */
#include "kernels/cpu/cpu.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>

#include "core/base/util.h"

#define MX_CONV_TILE 256

struct conv_task {
    const struct mx_tensor *x, *b;
    struct mx_tensor *dst;
    const float *w;          /* [C_out][K] f32 weights (K in the weight's memory order) */
    const struct mx_conv2d_params *p;
    struct mx_cpu *cpu;
    int64_t KW, KH, K;       /* kernel width, height, K = KW*KH*C_in */
    int64_t P, tiles;        /* output pixels per image, tiles per image */
};

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
        const float *xi = (const float *)((const char *)x->data + (size_t)img * x->nb[3]);
        /* gather: row k = kx + KW * (ky + KH * ci) holds input pixel (ix, iy, ci) of each output
         * pixel q of the tile, or 0 where the window hangs over the padding */
        int64_t k = 0;
        for (int64_t ci = 0; ci < C; ci++)
            for (int64_t ky = 0; ky < t->KH; ky++)
                for (int64_t kx = 0; kx < t->KW; kx++, k++) {
                    float *cr = col + k * n;
                    const float *xc = xi + ci * W * H;
                    for (int64_t j = 0; j < n; j++) {
                        int64_t q = q0 + j, ox = q % Wo, oy = q / Wo;
                        int64_t ix = ox * p->stride_x - p->pad_x + kx * p->dil_x;
                        int64_t iy = oy * p->stride_y - p->pad_y + ky * p->dil_y;
                        cr[j] = ix >= 0 && ix < W && iy >= 0 && iy < H ? xc[iy * W + ix] : 0.0f;
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
    size_t per = 0, wbytes = 0;
    bool ok = mx_mul_size((size_t)K * MX_CONV_TILE, sizeof(float), &per);
    if (ok && w->type != MX_TYPE_F32)
        ok = mx_mul_size((size_t)K * (size_t)CO, sizeof(float), &wbytes);
    int rc = ok ? mx_cpu_reserve(c, per, wbytes) : MX_ENOMEM;
    if (rc < 0) {
        be->last_err.code = rc;
        snprintf(be->last_err.msg, sizeof be->last_err.msg,
                 "conv2d: cannot allocate %zu + %zu bytes of scratch", per, wbytes);
        return rc;
    }
    const float *wf = w->data;
    if (w->type == MX_TYPE_F16) { /* once per call: small next to the GEMM's K * C_out * P */
        float *t = c->sbuf;
        mx_ref_load_f32(MX_TYPE_F16, w->data, 0, K * CO, t);
        wf = t;
    }
    int64_t P = dst->ne[0] * dst->ne[1];
    struct conv_task task = {
        .x = x, .b = b, .dst = dst, .w = wf, .p = p, .cpu = c, .KW = w->ne[0], .KH = w->ne[1],
        .K = K, .P = P, .tiles = (P + MX_CONV_TILE - 1) / MX_CONV_TILE,
    };
    mx_pool_run(c->pool, conv_task_run, &task);
    return 0;
}
