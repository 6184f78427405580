/* ref_conv.c - scalar reference kernels for the image (diffusion) ops: group norm, 2-D
 * convolution, nearest upsampling, concatenation. Tensors are [W, H, C, N] (ggml order).
 *
 * These are the ground truth, not the fast path: conv2d is a direct 7-deep loop. The UNet/VAE
 * work will add an im2col + sgemm version tested against this one.
 */
#include "kernels/cpu/cpu.h"

#include <math.h>
#include <string.h>

#include "core/base/util.h"

/* Element (i0, i1, i2, i3) of a contiguous F32 tensor. */
static inline float at(const struct mx_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return *(const float *)((const char *)t->data + (size_t)i0 * t->nb[0] + (size_t)i1 * t->nb[1] +
                            (size_t)i2 * t->nb[2] + (size_t)i3 * t->nb[3]);
}

static inline float *at_w(struct mx_tensor *t, int64_t i0, int64_t i1, int64_t i2, int64_t i3) {
    return (float *)((char *)t->data + (size_t)i0 * t->nb[0] + (size_t)i1 * t->nb[1] +
                     (size_t)i2 * t->nb[2] + (size_t)i3 * t->nb[3]);
}

void mx_ref_group_norm(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *x = a->src[0], *w = a->src[1], *b = a->src[2];
    int64_t C = x->ne[2], G = a->i, cpg = C / G, plane = x->ne[0] * x->ne[1];
    int64_t n = plane * cpg, r0, r1;
    mx_split(G * x->ne[3], ith, nth, &r0, &r1); /* one unit = one group of one image */
    for (int64_t u = r0; u < r1; u++) {
        int64_t img = u / G, g = u % G;
        /* a group's channels are adjacent, so its values are one contiguous run */
        const float *xs = (const float *)((const char *)x->data + (size_t)img * x->nb[3] +
                                          (size_t)(g * cpg) * x->nb[2]);
        float *ys = (float *)((char *)a->dst->data + (size_t)img * a->dst->nb[3] +
                              (size_t)(g * cpg) * a->dst->nb[2]);
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++)
            sum += (double)xs[i];
        float mean = (float)(sum / (double)n);
        double sum2 = 0.0;
        for (int64_t i = 0; i < n; i++) {
            float v = xs[i] - mean;
            ys[i] = v;
            sum2 += (double)(v * v);
        }
        float scale = 1.0f / sqrtf((float)(sum2 / (double)n) + a->f);
        for (int64_t i = 0; i < n; i++) {
            int64_t c = g * cpg + i / plane;
            float v = ys[i] * scale;
            if (w)
                v *= ((const float *)w->data)[c];
            if (b)
                v += ((const float *)b->data)[c];
            ys[i] = v;
        }
    }
}

void mx_ref_conv2d(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *x = a->src[0], *w = a->src[1], *b = a->src[2];
    const struct mx_conv2d_params *p = a->p;
    struct mx_tensor *d = a->dst;
    int64_t KW = w->ne[0], KH = w->ne[1], CI = w->ne[2], CO = w->ne[3];
    int64_t r0, r1;
    bool round = a->act_mode == MX_ACT_GGML && w->type == MX_TYPE_F16;
    mx_split(CO * d->ne[3], ith, nth, &r0, &r1); /* one unit = one output channel of one image */
    for (int64_t u = r0; u < r1; u++) {
        int64_t img = u / CO, co = u % CO;
        float bias = b ? ((const float *)b->data)[co] : 0.0f;
        for (int64_t oy = 0; oy < d->ne[1]; oy++) {
            for (int64_t ox = 0; ox < d->ne[0]; ox++) {
                float s = 0.0f;
                for (int64_t ci = 0; ci < CI; ci++) {
                    for (int64_t ky = 0; ky < KH; ky++) {
                        int64_t iy = oy * p->stride_y - p->pad_y + ky * p->dil_y;
                        if (iy < 0 || iy >= x->ne[1])
                            continue;
                        for (int64_t kx = 0; kx < KW; kx++) {
                            int64_t ix = ox * p->stride_x - p->pad_x + kx * p->dil_x;
                            if (ix < 0 || ix >= x->ne[0])
                                continue;
                            const char *wp = (const char *)w->data + (size_t)kx * w->nb[0] +
                                             (size_t)ky * w->nb[1] + (size_t)ci * w->nb[2] +
                                             (size_t)co * w->nb[3];
                            float wv = w->type == MX_TYPE_F16
                                           ? mx_fp16_to_fp32(*(const uint16_t *)wp)
                                           : *(const float *)wp;
                            float xv = at(x, ix, iy, ci, img);
                            if (round) /* ggml's im2col in the kernel's type */
                                xv = mx_fp16_to_fp32(mx_fp32_to_fp16(xv));
                            s += wv * xv;
                        }
                    }
                }
                *at_w(d, ox, oy, co, img) = s + bias;
            }
        }
    }
}

void mx_ref_upsample(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *x = a->src[0];
    struct mx_tensor *d = a->dst;
    int64_t f = a->i, r0, r1;
    mx_split(mx_tensor_nrows(d), ith, nth, &r0, &r1); /* rows of dst: (y, c, n) */
    for (int64_t r = r0; r < r1; r++) {
        int64_t oy = r % d->ne[1], c = (r / d->ne[1]) % d->ne[2], img = r / (d->ne[1] * d->ne[2]);
        float *y = mx_row(d, r);
        for (int64_t ox = 0; ox < d->ne[0]; ox++)
            y[ox] = at(x, ox / f, oy / f, c, img);
    }
}

void mx_ref_concat(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *x = a->src[0], *y = a->src[1];
    struct mx_tensor *d = a->dst;
    int dim = a->i;
    int64_t r0, r1;
    mx_split(mx_tensor_nrows(d), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t i1 = r % d->ne[1], i2 = (r / d->ne[1]) % d->ne[2], i3 = r / (d->ne[1] * d->ne[2]);
        for (int64_t i0 = 0; i0 < d->ne[0]; i0++) {
            int64_t i[4] = {i0, i1, i2, i3};
            const struct mx_tensor *s = x;
            if (i[dim] >= x->ne[dim]) {
                i[dim] -= x->ne[dim];
                s = y;
            }
            *at_w(d, i0, i1, i2, i3) = at(s, i[0], i[1], i[2], i[3]);
        }
    }
}

void mx_ref_transpose(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *x = a->src[0];
    struct mx_tensor *d = a->dst;
    int64_t r0, r1;
    mx_split(mx_tensor_nrows(d), ith, nth, &r0, &r1); /* rows of dst: (j, k, l) */
    for (int64_t r = r0; r < r1; r++) {
        int64_t j = r % d->ne[1], k = (r / d->ne[1]) % d->ne[2], l = r / (d->ne[1] * d->ne[2]);
        float *y = mx_row(d, r);
        for (int64_t i = 0; i < d->ne[0]; i++)
            y[i] = at(x, j, i, k, l);
    }
}
