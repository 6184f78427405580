/* vae_impl.h - the VAE's blocks one at a time, for the unit tests that check a ResnetBlock, the
 * attention block and a decoder up block against scalar recomputations. Private to
 * core/diffusion/ and tests/. */
#ifndef MX_SD_VAE_IMPL_H
#define MX_SD_VAE_IMPL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/diffusion/sd_model.h"

/* Runs the ResnetBlock (attn false: prefix.norm1, conv1, norm2, conv2, nin_shortcut when
 * cin != cout) or the AttnBlock (attn true: prefix.norm, q, k, v, proj_out; cin == cout) whose
 * weights m holds under prefix, on x: host f32 [cin][h][w], into y: host f32 [cout][h][w].
 * Channel counts must be multiples of 32 (GroupNorm). Returns 0 or an error as mx_sd_vae_new /
 * mx_sd_vae_decode. Allocates and frees its own parameters and scratch. */
int mx_sd_vae_block(const struct mx_sd_model *m, const char *prefix, bool attn, int64_t cin,
                    int64_t cout, int w, int h, const float *x, float *y, struct mx_err *err);

/* Runs the decoder up block whose weights m holds under prefix (e.g.
 * "first_stage_model.decoder.up.1": block.0 cin -> cout, block.1 and block.2 cout -> cout, then,
 * when upsample, nearest x2 and upsample.conv) on x: host f32 [cin][h][w], into y: host f32
 * [cout][2h][2w] (upsample) or [cout][h][w]. Channel counts must be multiples of 32. Returns 0
 * or an error as mx_sd_vae_block. Allocates and frees its own parameters and scratch. */
int mx_sd_vae_up_block(const struct mx_sd_model *m, const char *prefix, bool upsample,
                       int64_t cin, int64_t cout, int w, int h, const float *x, float *y,
                       struct mx_err *err);

#endif
