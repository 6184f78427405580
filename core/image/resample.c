/* resample.c - Pillow's LANCZOS and NEAREST resize (see resample.h). */
#include "core/image/resample.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/err.h"

#define LANCZOS_SUPPORT 3.0 /* Pillow's lanczos filter: a = 3 */
#define PRECISION_BITS (32 - 8 - 2) /* Pillow's fixed point for 8-bit images */

/* sin(pi x) / (pi x), 1 at 0 (Pillow's sinc_filter). */
static double sinc(double x) {
    if (x == 0.0)
        return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

/* Pillow's lanczos_filter: sinc(x) sinc(x / 3) inside the support. */
static double lanczos(double x) {
    if (-LANCZOS_SUPPORT <= x && x < LANCZOS_SUPPORT)
        return sinc(x) * sinc(x / LANCZOS_SUPPORT);
    return 0.0;
}

/* One axis's taps: for each output pixel, its first input pixel (bounds[2 o]), tap count
 * (bounds[2 o + 1]) and the fixed-point weights kk[o * ksize ..] (Pillow's precompute_coeffs then
 * normalize_coeffs_8bpc). Returns ksize, or -1 out of memory. */
static int coeffs(int in, int out, int **bounds_out, int32_t **kk_out) {
    double scale = (double)in / out;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = LANCZOS_SUPPORT * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    double *k = malloc((size_t)out * (size_t)ksize * sizeof *k);
    int32_t *kk = malloc((size_t)out * (size_t)ksize * sizeof *kk);
    int *bounds = malloc((size_t)out * 2 * sizeof *bounds);
    if (!k || !kk || !bounds) {
        free(k);
        free(kk);
        free(bounds);
        return -1;
    }
    double ss = 1.0 / filterscale;
    for (int xx = 0; xx < out; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in)
            xmax = in;
        xmax -= xmin;
        double *kp = k + (size_t)xx * (size_t)ksize;
        int x = 0;
        for (; x < xmax; x++) {
            double w = lanczos((x + xmin - center + 0.5) * ss);
            kp[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0)
                kp[x] /= ww;
        for (; x < ksize; x++)
            kp[x] = 0;
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    for (size_t i = 0; i < (size_t)out * (size_t)ksize; i++)
        kk[i] = (int32_t)(k[i] < 0 ? -0.5 + k[i] * (1 << PRECISION_BITS)
                                   : 0.5 + k[i] * (1 << PRECISION_BITS));
    free(k);
    *bounds_out = bounds;
    *kk_out = kk;
    return ksize;
}

/* Pillow's clip8 of a fixed-point sum. */
static uint8_t clip8(int32_t v) {
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Lanczos along x: src w x h -> dst dw x h. */
static int pass_h(const uint8_t *src, int w, int h, uint8_t *dst, int dw) {
    int *b;
    int32_t *kk;
    int ksize = coeffs(w, dw, &b, &kk);
    if (ksize < 0)
        return MX_ENOMEM;
    for (int y = 0; y < h; y++)
        for (int xx = 0; xx < dw; xx++) {
            int xmin = b[2 * xx], xmax = b[2 * xx + 1];
            const int32_t *k = kk + (size_t)xx * (size_t)ksize;
            for (int c = 0; c < 3; c++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < xmax; x++)
                    ss += src[((size_t)y * (size_t)w + (size_t)(x + xmin)) * 3 + (size_t)c] *
                          k[x];
                dst[((size_t)y * (size_t)dw + (size_t)xx) * 3 + (size_t)c] = clip8(ss);
            }
        }
    free(b);
    free(kk);
    return 0;
}

/* Lanczos along y: src w x h -> dst w x dh. */
static int pass_v(const uint8_t *src, int w, int h, uint8_t *dst, int dh) {
    int *b;
    int32_t *kk;
    int ksize = coeffs(h, dh, &b, &kk);
    if (ksize < 0)
        return MX_ENOMEM;
    for (int yy = 0; yy < dh; yy++) {
        int ymin = b[2 * yy], ymax = b[2 * yy + 1];
        const int32_t *k = kk + (size_t)yy * (size_t)ksize;
        for (int xx = 0; xx < w; xx++)
            for (int c = 0; c < 3; c++) {
                int32_t ss = 1 << (PRECISION_BITS - 1);
                for (int y = 0; y < ymax; y++)
                    ss += src[((size_t)(y + ymin) * (size_t)w + (size_t)xx) * 3 + (size_t)c] *
                          k[y];
                dst[((size_t)yy * (size_t)w + (size_t)xx) * 3 + (size_t)c] = clip8(ss);
            }
    }
    free(b);
    free(kk);
    return 0;
}

int mx_image_resample(const struct mx_image *src, int dw, int dh, int filter,
                      struct mx_image *out) {
    memset(out, 0, sizeof *out);
    if (!src->rgb || src->w < 1 || src->h < 1 || dw < 1 || dh < 1)
        return MX_EINVAL;
    if (dw > MX_IMAGE_MAX_SIDE || dh > MX_IMAGE_MAX_SIDE ||
        (uint64_t)dw * (uint64_t)dh > MX_IMAGE_MAX_PIXELS)
        return MX_ERANGE;
    uint8_t *dst = malloc((size_t)dw * (size_t)dh * 3);
    if (!dst)
        return MX_ENOMEM;
    int rc = 0;
    if (filter == MX_RESAMPLE_NEAREST) {
        /* Pillow's affine NEAREST: the source pixel under the destination pixel's centre */
        double sx = (double)src->w / dw, sy = (double)src->h / dh;
        for (int y = 0; y < dh; y++) {
            int ys = (int)floor((y + 0.5) * sy);
            ys = ys >= src->h ? src->h - 1 : ys;
            for (int x = 0; x < dw; x++) {
                int xs = (int)floor((x + 0.5) * sx);
                xs = xs >= src->w ? src->w - 1 : xs;
                memcpy(dst + ((size_t)y * (size_t)dw + (size_t)x) * 3,
                       src->rgb + ((size_t)ys * (size_t)src->w + (size_t)xs) * 3, 3);
            }
        }
    } else {
        /* the horizontal pass first, into an 8-bit image, as Pillow does */
        const uint8_t *cur = src->rgb;
        uint8_t *tmp = NULL;
        if (dw != src->w) {
            if (!(tmp = malloc((size_t)dw * (size_t)src->h * 3)))
                rc = MX_ENOMEM;
            else
                rc = pass_h(src->rgb, src->w, src->h, tmp, dw);
            cur = tmp;
        }
        if (rc == 0 && dh != src->h)
            rc = pass_v(cur, dw, src->h, dst, dh);
        else if (rc == 0)
            memcpy(dst, cur, (size_t)dw * (size_t)dh * 3);
        free(tmp);
    }
    if (rc != 0) {
        free(dst);
        return rc;
    }
    out->w = dw;
    out->h = dh;
    out->rgb = dst;
    return 0;
}
