/* sdxl_cond.c - SDXL's context and label vector from the two text encoders (see sdxl_cond.h).
 * Ref: Stability-AI/generative-models sgm/modules/encoders/modules.py (GeneralConditioner,
 *      ConcatTimestepEmbedderND, FrozenOpenCLIPEmbedder2)
 * Ref: AUTOMATIC1111 stable-diffusion-webui v1.10.1 modules/sd_models_xl.py
 */
#include "core/diffusion/sdxl_cond.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mx_sdxl_sin_embed(float v, int dim, float *out) {
    int half = dim / 2;
    for (int j = 0; j < half; j++) {
        float freq = (float)exp(-log(10000.0) * j / half);
        float arg = v * freq;
        out[j] = cosf(arg);
        out[half + j] = sinf(arg);
    }
}

int mx_sdxl_adm(const float *pooled, int64_t pooled_dim, const struct mx_sdxl_sizes *s, float *y,
                int64_t adm_dim, struct mx_err *err) {
    if (pooled_dim < 0 || pooled_dim + 6 * MX_SDXL_SIZE_EMB != adm_dim)
        return mx_err_set(err, MX_EINVAL, "sdxl: label vector of %lld is not the pooled text "
                          "(%lld) + 6 x %d", (long long)adm_dim, (long long)pooled_dim,
                          MX_SDXL_SIZE_EMB);
    if (pooled)
        memcpy(y, pooled, (size_t)pooled_dim * sizeof *y);
    else
        memset(y, 0, (size_t)pooled_dim * sizeof *y);
    const float v[6] = {s->orig_h, s->orig_w, s->crop_top, s->crop_left, s->target_h,
                        s->target_w};
    for (int i = 0; i < 6; i++)
        mx_sdxl_sin_embed(v[i], MX_SDXL_SIZE_EMB, y + pooled_dim + i * MX_SDXL_SIZE_EMB);
    return 0;
}

int mx_sdxl_encode(struct mx_sd_clip *clip_l, struct mx_sd_clip *clip_g, const char *prompt,
                   int clip_skip, int min_chunks, float **ctx, int64_t *n_ctx, float *pooled,
                   struct mx_err *err) {
    *ctx = NULL;
    *n_ctx = 0;
    float *hl = NULL, *hg = NULL;
    int64_t nl = 0, ng = 0;
    int rc = mx_sd_clip_encode(clip_l, prompt, clip_skip, min_chunks, &hl, &nl, err);
    if (rc == 0)
        rc = mx_sd_clip_encode_pooled(clip_g, prompt, clip_skip, min_chunks, &hg, &ng, pooled,
                                      err);
    if (rc < 0)
        goto done;
    if (nl != ng) { /* one tokenizer, one prompt: the chunk counts agree */
        rc = mx_err_set(err, MX_EINVAL, "sdxl: the encoders made %lld and %lld tokens",
                        (long long)nl, (long long)ng);
        goto done;
    }
    const int64_t dl = mx_sd_clip_dim(clip_l), dg = mx_sd_clip_dim(clip_g);
    float *out = malloc((size_t)(nl * (dl + dg)) * sizeof *out);
    if (!out) {
        rc = mx_err_set(err, MX_ENOMEM, "sdxl: out of memory (context of %lld tokens)",
                        (long long)nl);
        goto done;
    }
    for (int64_t t = 0; t < nl; t++) {
        memcpy(out + t * (dl + dg), hl + t * dl, (size_t)dl * sizeof *out);
        memcpy(out + t * (dl + dg) + dl, hg + t * dg, (size_t)dg * sizeof *out);
    }
    *ctx = out;
    *n_ctx = nl;
done:
    free(hl);
    free(hg);
    return rc;
}
