/* unet_impl.h - the UNet's blocks one at a time, for the unit tests that check a ResBlock and a
 * SpatialTransformer against scalar recomputations. Private to core/diffusion/ and tests/. */
#ifndef MX_SD_UNET_IMPL_H
#define MX_SD_UNET_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/diffusion/sd_model.h"

/* Runs one block of the UNet whose weights m holds under "model.diffusion_model." + prefix, on
 * a batch of n images x: host f32 [n][cin][h][w], into y: host f32 [n][cout][h][w], with the
 * code the whole network runs.
 *   st false: the ResBlock at prefix (e.g. "input_blocks.4.0": in_layers, emb_layers,
 *             out_layers, skip_connection when cin != cout); emb: host f32 [n][emb_dim], the
 *             time embedding (time_embed's output; the block's SiLU is applied here as the
 *             forward pass does); ctx unused.
 *   st true:  the SpatialTransformer at prefix (e.g. "input_blocks.1.1"; cin == cout); proj_in
 *             as 1x1 conv (SD 1.x, 8 heads) or linear (SD 2.x, heads of 64) as stored; ctx:
 *             host f32 [n][n_ctx][ctx_dim]; emb unused.
 * Channel counts must be multiples of 32 (GroupNorm). Returns 0 or an error as mx_sd_unet_new /
 * mx_sd_unet_eval. Allocates and frees its own parameters and scratch. */
int mx_sd_unet_block(const struct mx_sd_model *m, const char *prefix, bool st, int64_t cin,
                     int64_t cout, int w, int h, int n, const float *x, const float *emb,
                     const float *ctx, int64_t n_ctx, float *y, struct mx_err *err);

#endif
