/* preview.c - live previews: when to make one, and TAESD or the linear map (see preview.h). */
#include "core/diffusion/preview.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "core/diffusion/taesd.h"

/* Transcribed from ComfyUI comfy/latent_formats.py (SD15, SDXL latent_rgb_factors): data. */
static const float rgb_factors[2][4][3] = {
    {{0.3512f, 0.2297f, 0.3227f},
     {0.3250f, 0.4974f, 0.2350f},
     {-0.2829f, 0.1762f, 0.2721f},
     {-0.2120f, -0.2616f, -0.7177f}},
    {{0.3920f, 0.4054f, 0.4549f},
     {-0.2634f, -0.0196f, 0.0653f},
     {0.0568f, 0.1687f, -0.0755f},
     {-0.3112f, -0.2359f, -0.2076f}},
};

struct mx_sd_preview {
    int space;                   /* enum mx_sd_preview_space */
    struct mx_sd_taesd *taesd;   /* NULL: linear */
    int every;                   /* 0: automatic */
    int last_step;               /* the step of the last preview (0: none yet) */
    double sampled_s;            /* sampling seconds since the last preview */
    double last_cost_s;          /* what the last preview took */
    double spent_s;              /* all previews */
    int count;
};

int mx_sd_preview_new(struct mx_backend *be, int space, const char *taesd_path, int every,
                      struct mx_sd_preview **out, struct mx_err *err) {
    *out = NULL;
    struct mx_sd_preview *pv = calloc(1, sizeof *pv);
    if (!pv)
        return mx_err_set(err, MX_ENOMEM, "preview: out of memory");
    pv->space = space == MX_SD_PREVIEW_SDXL ? MX_SD_PREVIEW_SDXL : MX_SD_PREVIEW_SD1;
    pv->every = every > 0 ? every : 0;
    if (taesd_path) {
        int rc = mx_sd_taesd_open(be, taesd_path, &pv->taesd, err);
        if (rc < 0) {
            free(pv);
            return rc;
        }
    }
    *out = pv;
    return 0;
}

void mx_sd_preview_free(struct mx_sd_preview *pv) {
    if (!pv)
        return;
    mx_sd_taesd_free(pv->taesd);
    free(pv);
}

const char *mx_sd_preview_kind(const struct mx_sd_preview *pv) {
    return pv->taesd ? "taesd" : "linear";
}

double mx_sd_preview_spent_s(const struct mx_sd_preview *pv) {
    return pv->spent_s;
}

int mx_sd_preview_count(const struct mx_sd_preview *pv) {
    return pv->count;
}

bool mx_sd_preview_due(struct mx_sd_preview *pv, const struct mx_sd_progress *p) {
    if (p->phase != MX_SD_PHASE_SAMPLE || !p->latent || p->step < 1)
        return false;
    if (p->step < pv->last_step) { /* a new pass (the next image, the hires pass) */
        pv->last_step = 0;
        pv->sampled_s = 0;
    }
    pv->sampled_s += p->step_s;
    if (pv->every) /* the first at once, then every `every` steps */
        return pv->last_step == 0 || p->step - pv->last_step >= pv->every;
    /* automatic: the first at once (to learn the cost), then when the budget covers it */
    return pv->last_step == 0 || pv->sampled_s * MX_SD_PREVIEW_BUDGET >= pv->last_cost_s;
}

int mx_sd_preview_linear(int space, const float *latent, int lw, int lh, struct mx_image *out) {
    memset(out, 0, sizeof *out);
    const float(*f)[3] = rgb_factors[space == MX_SD_PREVIEW_SDXL ? 1 : 0];
    size_t plane = (size_t)lw * (size_t)lh;
    uint8_t *px = malloc(plane * 3);
    if (!px)
        return MX_ENOMEM;
    for (size_t i = 0; i < plane; i++)
        for (int c = 0; c < 3; c++) {
            float v = 0.0f;
            for (int k = 0; k < 4; k++)
                v += latent[(size_t)k * plane + i] * f[k][c];
            v = MX_CLAMP((v + 1.0f) * 0.5f, 0.0f, 1.0f);
            px[3 * i + (size_t)c] = (uint8_t)lrintf(v * 255.0f);
        }
    out->w = lw;
    out->h = lh;
    out->rgb = px;
    return 0;
}

/* TAESD's output [3][h][w] in [0, 1] as RGB8. */
static int taesd_image(struct mx_sd_preview *pv, const float *latent, int lw, int lh,
                       struct mx_image *out, struct mx_err *err) {
    int w = 8 * lw, h = 8 * lh;
    size_t P = (size_t)w * (size_t)h;
    float *rgb = malloc(3 * P * sizeof *rgb);
    uint8_t *px = malloc(3 * P);
    int rc = rgb && px ? mx_sd_taesd_decode(pv->taesd, latent, lw, lh, rgb, err)
                       : mx_err_set(err, MX_ENOMEM, "preview: out of memory");
    if (rc == 0) {
        for (size_t i = 0; i < P; i++)
            for (int c = 0; c < 3; c++) {
                float v = MX_CLAMP(rgb[(size_t)c * P + i], 0.0f, 1.0f);
                px[3 * i + (size_t)c] = (uint8_t)lrintf(v * 255.0f);
            }
        out->w = w;
        out->h = h;
        out->rgb = px;
        px = NULL;
    }
    free(rgb);
    free(px);
    return rc;
}

int mx_sd_preview_make(struct mx_sd_preview *pv, const struct mx_sd_progress *p, int w, int h,
                       struct mx_image *out, struct mx_err *err) {
    memset(out, 0, sizeof *out);
    if (!p->latent || p->lw < 1 || p->lh < 1)
        return mx_err_set(err, MX_EINVAL, "preview: no latent in this report");
    double t0 = mx_time_s();
    struct mx_image small = {0};
    int rc = pv->taesd ? taesd_image(pv, p->latent, p->lw, p->lh, &small, err)
                       : mx_sd_preview_linear(pv->space, p->latent, p->lw, p->lh, &small);
    if (rc < 0 && !pv->taesd)
        rc = mx_err_set(err, rc, "preview: out of memory");
    if (rc == 0 && w > 0 && h > 0 && (small.w != w || small.h != h)) {
        rc = mx_image_scale(&small, w, h, out);
        mx_image_free(&small);
        if (rc < 0)
            rc = mx_err_set(err, rc, "preview: scaling to %dx%d failed", w, h);
    } else if (rc == 0) {
        *out = small;
    }
    double dt = mx_time_s() - t0;
    pv->spent_s += dt;
    pv->last_cost_s = dt;
    pv->last_step = p->step;
    pv->sampled_s = 0;
    pv->count++;
    return rc;
}
