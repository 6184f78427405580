/* sdxl_cond.h - SDXL's conditioning: the two text encoders' hidden states side by side as the
 * 2048-wide cross-attention context, and the vector y that label_emb takes (the pooled text
 * embedding plus the size, crop and target-size numbers as sinusoids).
 *
 * CONTEXT (per 77-token chunk, row t = token t): [CLIP-L h_t (768) | OpenCLIP bigG h_t (1280)],
 * both the penultimate layer without final_layer_norm (clip_skip 0 = 2), each tower's A1111
 * emphasis applied to its own half as A1111's two SDXL hijacks do (stable-diffusion.cpp
 * restores the mean over the joined row instead: the two differ only for weighted prompts).
 * The bigG tower pads with 0 after the EOS, CLIP-L with the EOS.
 *
 * Y (adm_dim = pooled + 6 x 256 = 2816): pooled (bigG's final_layer_norm at the first chunk's
 * EOS, @ text_projection), then timestep-style embeddings (cos half first, max period 10000)
 * of original height, original width, crop top, crop left, target height, target width, in
 * the order of SGM's conditioner (original_size_as_tuple, crop_coords_top_left,
 * target_size_as_tuple); A1111 and stable-diffusion.cpp pass the image size as both sizes and
 * a (0, 0) crop.
 *
 * UNCONDITIONAL with an empty negative prompt: A1111 asks SGM's conditioner for zeros
 * (force_zero_embeddings=['txt']): the context AND the pooled part of y are zero, the size
 * embeddings stay. (stable-diffusion.cpp zeroes only the context.)
 *
 * HOW TO USE
 *   mx_sdxl_encode(clip_l, clip_g, "a cat", 0, chunks, &ctx, &n_ctx, pooled, &err);
 *   mx_sdxl_adm(pooled, 1280, &(struct mx_sdxl_sizes){h, w, 0, 0, h, w}, y, 2816, &err);
 *   ... mx_sd_unet_eval_y(unet, ..., ctx, n_ctx, y, ...) ...
 */
#ifndef MX_SDXL_COND_H
#define MX_SDXL_COND_H

#include <stdint.h>

#include "core/base/err.h"
#include "core/diffusion/clip_text.h"

#define MX_SDXL_SIZE_EMB 256 /* width of each size number's sinusoidal embedding */

/* The six numbers of SDXL's micro-conditioning, in pixels. */
struct mx_sdxl_sizes {
    float orig_h, orig_w;      /* original_size_as_tuple */
    float crop_top, crop_left; /* crop_coords_top_left */
    float target_h, target_w;  /* target_size_as_tuple */
};

/* The sinusoidal embedding of one number into out[dim] (dim even): cos(v f_j) for j < dim/2,
 * then sin, f_j = 10000^(-j / (dim/2)) (frequencies in double, rounded to float, as
 * stable-diffusion.cpp's timestep_embedding). */
void mx_sdxl_sin_embed(float v, int dim, float *out);

/* y = [pooled[pooled_dim] | the six size embeddings of 256] into y[adm_dim]. pooled NULL: zeros
 * (the unconditional vector of an empty negative prompt). Returns 0 or MX_EINVAL when adm_dim
 * is not pooled_dim + 6 x 256. */
int mx_sdxl_adm(const float *pooled, int64_t pooled_dim, const struct mx_sdxl_sizes *s, float *y,
                int64_t adm_dim, struct mx_err *err);

/* The context of prompt through both towers: *ctx malloc'd host f32 [n_ctx][dim_l + dim_g]
 * (caller frees), n_ctx = 77 * max(chunks, min_chunks); pooled (host [proj_dim] of clip_g, or
 * NULL) gets the first chunk's pooled output. clip_skip as mx_sd_clip_encode. Returns 0 or the
 * encoders' errors (*ctx NULL then). */
int mx_sdxl_encode(struct mx_sd_clip *clip_l, struct mx_sd_clip *clip_g, const char *prompt,
                   int clip_skip, int min_chunks, float **ctx, int64_t *n_ctx, float *pooled,
                   struct mx_err *err);

#endif
