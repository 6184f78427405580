/* hires.c - the hires fix (see hires.h): first pass at the base size to a latent, the upscale
 * (latent interpolation, or decode + Pillow resample + encode), the second pass from it. */
#include "core/diffusion/hires.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/util.h"
#include "core/diffusion/pipeline_impl.h"
#include "core/image/resample.h"

#define HIRES_MAX_SCALE 8.0f
#define HIRES_MAX_STEPS 1000

/* Names per enum mx_sd_upscaler: mixel's, then A1111's. */
static const char *const up_names[MX_SD_UP_COUNT][2] = {
    {"latent", "Latent"},
    {"latent-bicubic", "Latent (bicubic)"},
    {"latent-nearest", "Latent (nearest)"},
    {"latent-nearest-exact", "Latent (nearest-exact)"},
    {"lanczos", "Lanczos"},
    {"nearest", "Nearest"},
};

void mx_sd_hires_default(struct mx_sd_hires *h) {
    memset(h, 0, sizeof *h);
    h->scale = 2.0f;
    h->strength = 0.7f;
    h->upscaler = MX_SD_UP_LATENT;
}

const char *mx_sd_upscaler_names(void) {
    return "latent, latent-bicubic, latent-nearest, latent-nearest-exact, lanczos, nearest";
}

const char *mx_sd_upscaler_a1111_name(int u) {
    return u >= 0 && u < MX_SD_UP_COUNT ? up_names[u][1] : "?";
}

const char *mx_sd_upscaler_name(int u) {
    return u >= 0 && u < MX_SD_UP_COUNT ? up_names[u][0] : "?";
}

int mx_sd_upscaler_parse(const char *name, int *out, struct mx_err *err) {
    for (int u = 0; name && u < MX_SD_UP_COUNT; u++)
        if (!strcasecmp(name, up_names[u][0]) || !strcasecmp(name, up_names[u][1])) {
            *out = u;
            return 0;
        }
    return mx_err_set(err, MX_EINVAL, "unknown upscaler '%s' (one of: %s)", name ? name : "",
                      mx_sd_upscaler_names());
}

static bool is_latent(int u) {
    return u <= MX_SD_UP_LATENT_NEAREST_EXACT;
}

int mx_sd_hires_sizes(const struct mx_sd_hires *h, int bw, int bh, int *up_w, int *up_h, int *w,
                      int *hh, struct mx_err *err) {
    int ux, uy, tw, th;
    if (!h->width && !h->height) { /* A1111: int(width * hr_scale) */
        ux = (int)((float)bw * h->scale);
        uy = (int)((float)bh * h->scale);
        tw = ux;
        th = uy;
    } else if (!h->height) {
        ux = tw = h->width;
        uy = th = (int)((long long)h->width * bh / bw);
    } else if (!h->width) {
        ux = tw = (int)((long long)h->height * bw / bh);
        uy = th = h->height;
    } else { /* both: cover the target, then crop the centre */
        tw = h->width;
        th = h->height;
        if ((double)bw / bh < (double)h->width / h->height) {
            ux = h->width;
            uy = (int)((long long)h->width * bh / bw);
        } else {
            ux = (int)((long long)h->height * bw / bh);
            uy = h->height;
        }
    }
    *up_w = ux / 8 * 8;
    *up_h = uy / 8 * 8;
    /* A1111 crops the latent by the truncation (up - target) / 8 */
    *w = *up_w - (*up_w - tw) / 8 * 8;
    *hh = *up_h - (*up_h - th) / 8 * 8;
    if (*w < 64 || *hh < 64 || *w % 64 || *hh % 64 || *w > 4096 || *hh > 4096)
        return mx_err_set(err, MX_EINVAL, "hires size %dx%d (from %dx%d): width and height must "
                          "be multiples of 64 from 64 to 4096 (the UNet halves the latent three "
                          "times); try %dx%d", *w, *hh, bw, bh, MX_MAX(64, (*w + 32) / 64 * 64),
                          MX_MAX(64, (*hh + 32) / 64 * 64));
    return 0;
}

int mx_sd_hires_check(const struct mx_sd_pipeline *p, const struct mx_sd_params *par,
                      const struct mx_sd_hires *h, struct mx_err *err) {
    if (!h->enabled)
        return 0;
    if (!(h->scale >= 1.0f && h->scale <= HIRES_MAX_SCALE))
        return mx_err_set(err, MX_EINVAL, "hires scale %g: must be 1 to %g", (double)h->scale,
                          (double)HIRES_MAX_SCALE);
    if (h->steps < 0 || h->steps > HIRES_MAX_STEPS)
        return mx_err_set(err, MX_EINVAL, "hires steps %d: must be 0 (the first pass's) to %d",
                          h->steps, HIRES_MAX_STEPS);
    if (!(h->strength >= 0.0f && h->strength <= 1.0f))
        return mx_err_set(err, MX_EINVAL, "denoising strength %g: must be 0 to 1",
                          (double)h->strength);
    if (h->upscaler < 0 || h->upscaler >= MX_SD_UP_COUNT)
        return mx_err_set(err, MX_EINVAL, "upscaler %d: unknown", h->upscaler);
    if (par->init || par->mask)
        return mx_err_set(err, MX_EINVAL, "the hires fix is for txt2img (not with an init "
                          "image or a mask)");
    int uw, uh, w, hh;
    int rc = mx_sd_hires_sizes(h, par->width, par->height, &uw, &uh, &w, &hh, err);
    if (rc < 0)
        return rc;
    struct mx_sd_params q = *par;
    q.width = w;
    q.height = hh;
    q.steps = h->steps ? h->steps : par->steps;
    return mx_sd_params_check(p, &q, err);
}

/* v in its shortest form that reads back as the same float (Python's repr of A1111's value). */
static void shortest(float v, char *buf, size_t size) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, size, "%.*g", prec, (double)v);
        if (strtof(buf, NULL) == v)
            return;
    }
}

int mx_sd_hires_infotext(const struct mx_sd_hires *h, struct mx_sd_infotext *it) {
    char v[64];
    int rc;
    if (h->width || h->height) {
        snprintf(v, sizeof v, "%dx%d", h->width, h->height);
        rc = mx_sd_infotext_set_extra(it, "Hires resize", v);
    } else {
        shortest(h->scale, v, sizeof v);
        rc = mx_sd_infotext_set_extra(it, "Hires upscale", v);
    }
    if (rc == 0 && h->steps) {
        snprintf(v, sizeof v, "%d", h->steps);
        rc = mx_sd_infotext_set_extra(it, "Hires steps", v);
    }
    if (rc == 0)
        rc = mx_sd_infotext_set_extra(it, "Hires upscaler", mx_sd_upscaler_a1111_name(h->upscaler));
    return rc;
}

int mx_sd_hires_from_infotext(const struct mx_sd_infotext *it, struct mx_sd_hires *h,
                              struct mx_err *err) {
    const char *scale = mx_sd_infotext_get_extra(it, "Hires upscale");
    const char *resize = mx_sd_infotext_get_extra(it, "Hires resize");
    const char *steps = mx_sd_infotext_get_extra(it, "Hires steps");
    const char *up = mx_sd_infotext_get_extra(it, "Hires upscaler");
    if (!scale && !resize && !up)
        return 0;
    h->enabled = true;
    char *end;
    if (scale) {
        h->scale = strtof(scale, &end);
        if (end == scale || *end)
            return mx_err_set(err, MX_EINVAL, "Hires upscale '%s' is not a number", scale);
    }
    if (resize && sscanf(resize, "%dx%d", &h->width, &h->height) != 2)
        return mx_err_set(err, MX_EINVAL, "Hires resize '%s' is not WxH", resize);
    if (steps) {
        long n = strtol(steps, &end, 10);
        if (end == steps || *end || n < 0 || n > HIRES_MAX_STEPS)
            return mx_err_set(err, MX_EINVAL, "Hires steps '%s' is not 0 to %d", steps,
                              HIRES_MAX_STEPS);
        h->steps = (int)n;
    }
    if (up) {
        int u;
        if (mx_sd_upscaler_parse(up, &u, err) < 0)
            return MX_EINVAL;
        h->upscaler = u;
    }
    if (it->strength >= 0)
        h->strength = it->strength;
    return 0;
}

/* ---- latent interpolation (torch.nn.functional.interpolate, align_corners=False) ---------- */

/* Source coordinate of output index d for a linear or cubic kernel. */
static float src_coord(int d, float scale, bool cubic) {
    float s = scale * ((float)d + 0.5f) - 0.5f;
    return !cubic && s < 0.0f ? 0.0f : s;
}

/* torch's cubic convolution weights for fraction t, A = -0.75. */
static void cubic_w(float t, float w[4]) {
    const float A = -0.75f;
    float x = t + 1.0f;
    w[0] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
    x = t;
    w[1] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 1.0f - t;
    w[2] = ((A + 2.0f) * x - (A + 3.0f)) * x * x + 1.0f;
    x = 2.0f - t;
    w[3] = ((A * x - 5.0f * A) * x + 8.0f * A) * x - 4.0f * A;
}

void mx_sd_latent_upscale(int mode, const float *in, int lw, int lh, float *out, int ow, int oh) {
    const float sx = (float)lw / (float)ow, sy = (float)lh / (float)oh;
    for (int c = 0; c < 4; c++) {
        const float *pi = in + (size_t)c * (size_t)lw * (size_t)lh;
        float *po = out + (size_t)c * (size_t)ow * (size_t)oh;
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                float v;
                if (mode == MX_SD_UP_LATENT_NEAREST || mode == MX_SD_UP_LATENT_NEAREST_EXACT) {
                    float off = mode == MX_SD_UP_LATENT_NEAREST_EXACT ? 0.5f : 0.0f;
                    int xs = MX_MIN((int)floorf(((float)x + off) * sx), lw - 1);
                    int ys = MX_MIN((int)floorf(((float)y + off) * sy), lh - 1);
                    v = pi[(size_t)ys * (size_t)lw + (size_t)xs];
                } else if (mode == MX_SD_UP_LATENT_BICUBIC) {
                    float fx = src_coord(x, sx, true), fy = src_coord(y, sy, true);
                    int x0 = (int)floorf(fx), y0 = (int)floorf(fy);
                    float wx[4], wy[4];
                    cubic_w(fx - (float)x0, wx);
                    cubic_w(fy - (float)y0, wy);
                    v = 0.0f;
                    for (int j = 0; j < 4; j++) {
                        int yy = MX_CLAMP(y0 - 1 + j, 0, lh - 1);
                        float row = 0.0f;
                        for (int i = 0; i < 4; i++)
                            row += wx[i] * pi[(size_t)yy * (size_t)lw +
                                              (size_t)MX_CLAMP(x0 - 1 + i, 0, lw - 1)];
                        v += wy[j] * row;
                    }
                } else { /* bilinear */
                    float fx = src_coord(x, sx, false), fy = src_coord(y, sy, false);
                    int x0 = (int)fx, y0 = (int)fy;
                    int x1 = x0 + (x0 < lw - 1), y1 = y0 + (y0 < lh - 1);
                    float ax = fx - (float)x0, ay = fy - (float)y0;
                    const float *r0 = pi + (size_t)y0 * (size_t)lw, *r1 = pi + (size_t)y1 * (size_t)lw;
                    v = (1.0f - ay) * ((1.0f - ax) * r0[x0] + ax * r0[x1]) +
                        ay * ((1.0f - ax) * r1[x0] + ax * r1[x1]);
                }
                po[(size_t)y * (size_t)ow + (size_t)x] = v;
            }
    }
}

/* The centre w x h of a [4][uh][uw] latent (A1111's truncate_x/y crop) into a new array. */
static float *crop_latent(const float *in, int uw, int uh, int w, int h) {
    float *o = malloc((size_t)4 * (size_t)w * (size_t)h * sizeof *o);
    if (!o)
        return NULL;
    int tx = uw - w, ty = uh - h, x0 = tx / 2, y0 = ty / 2;
    for (int c = 0; c < 4; c++)
        for (int y = 0; y < h; y++)
            memcpy(o + ((size_t)c * (size_t)h + (size_t)y) * (size_t)w,
                   in + ((size_t)c * (size_t)uh + (size_t)(y + y0)) * (size_t)uw + (size_t)x0,
                   (size_t)w * sizeof *o);
    return o;
}

/* The centre w x h pixels of img, in place. */
static int crop_image(struct mx_image *img, int w, int h) {
    if (img->w == w && img->h == h)
        return 0;
    uint8_t *px = malloc((size_t)w * (size_t)h * 3);
    if (!px)
        return MX_ENOMEM;
    int x0 = (img->w - w) / 16 * 8, y0 = (img->h - h) / 16 * 8; /* as the latent crop, x8 */
    for (int y = 0; y < h; y++)
        memcpy(px + (size_t)y * (size_t)w * 3,
               img->rgb + ((size_t)(y + y0) * (size_t)img->w + (size_t)x0) * 3, (size_t)w * 3);
    free(img->rgb);
    img->rgb = px;
    img->w = w;
    img->h = h;
    return 0;
}

int mx_sd_generate_hires(struct mx_sd_pipeline *p, const struct mx_sd_params *par,
                         const struct mx_sd_hires *h, int index, struct mx_image *out,
                         mx_sd_progress_fn progress, void *ud, struct mx_err *err) {
    memset(out, 0, sizeof *out);
    if (!h || !h->enabled)
        return mx_sd_generate(p, par, index, out, progress, ud, err);
    int rc = mx_sd_hires_check(p, par, h, err);
    if (rc < 0)
        return rc;
    int uw, uh, w, hh;
    if ((rc = mx_sd_hires_sizes(h, par->width, par->height, &uw, &uh, &w, &hh, err)) < 0)
        return rc;
    float *base = NULL, *up = NULL, *lat = NULL;
    struct mx_image img = {0}, big = {0};
    struct mx_sd_gen_ext ext = {.latent_out = &base};
    if ((rc = mx_sd_generate_ext(p, par, index, &ext, out, progress, ud, err)) < 0)
        return rc;
    struct mx_sd_params q = *par; /* the second pass */
    q.width = w;
    q.height = hh;
    q.steps = h->steps ? h->steps : par->steps;
    q.strength = h->strength;
    const int lw = par->width / 8, lh = par->height / 8;
    if (is_latent(h->upscaler)) {
        up = malloc((size_t)4 * (size_t)(uw / 8) * (size_t)(uh / 8) * sizeof *up);
        if (!up) {
            rc = mx_err_set(err, MX_ENOMEM, "out of memory (upscaled latent)");
            goto done;
        }
        mx_sd_latent_upscale(h->upscaler, base, lw, lh, up, uw / 8, uh / 8);
        if (!(lat = crop_latent(up, uw / 8, uh / 8, w / 8, hh / 8))) {
            rc = mx_err_set(err, MX_ENOMEM, "out of memory (upscaled latent)");
            goto done;
        }
        if (h->strength == 0.0f) { /* nothing to denoise: the upscaled latent's picture */
            rc = mx_sd_decode_latent(p, &q, lat, out, progress, ud, err);
            goto done;
        }
    } else {
        if ((rc = mx_sd_decode_latent(p, par, base, &img, progress, ud, err)) < 0)
            goto done;
        rc = mx_image_resample(&img, uw, uh, h->upscaler == MX_SD_UP_LANCZOS ?
                               MX_RESAMPLE_LANCZOS : MX_RESAMPLE_NEAREST, &big);
        if (rc == 0)
            rc = crop_image(&big, w, hh);
        if (rc != 0) {
            rc = mx_err_set(err, rc, "hires: upscaling the image to %dx%d failed", uw, uh);
            goto done;
        }
        if (h->strength == 0.0f) { /* the resampled picture itself */
            *out = big;
            memset(&big, 0, sizeof big);
            goto done;
        }
        q.init = &big;
        rc = mx_sd_encode_image(p, &q, par->seed + (uint64_t)index, &lat, err);
        q.init = NULL;
        if (rc < 0)
            goto done;
    }
    ext = (struct mx_sd_gen_ext){.init_latent = lat};
    rc = mx_sd_generate_ext(p, &q, index, &ext, out, progress, ud, err);
done:
    free(base);
    free(up);
    free(lat);
    mx_image_free(&img);
    mx_image_free(&big);
    return rc;
}
