/* vae.h - the Stable Diffusion VAE (LDM AutoencoderKL, SD 1.x/2.x): the decoder that turns a
 * latent into pixels and the encoder that turns an init image into latent moments.
 *
 * HOW TO USE
 *   struct mx_sd_vae *v;
 *   mx_sd_vae_new(model, &v, &err);                   (checks every VAE tensor's shape)
 *   if (mx_sd_vae_decode_mem(v, lw, lh, false) > budget) tiled = true;
 *   mx_sd_vae_decode(v, lw, lh, z, tiled, rgb, &cancel, &err);
 *   mx_sd_vae_encode(v, w, h, rgb, moments, &cancel, &err);   (img2img / inpaint)
 *   mx_sd_vae_free(v);
 * Scratch (activations) is allocated on the model's backend at the start of each decode/encode
 * and freed at its end: one allocation per image, none per block. One vae is used by one thread
 * at a time (the backend's rule).
 */
#ifndef MX_SD_VAE_H
#define MX_SD_VAE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/err.h"
#include "core/diffusion/sd_model.h"

#define MX_SD_VAE_SCALE 0.18215f /* SD 1.x/2.x latent scale factor (z = latent / scale) */
#define MX_SD_VAE_TILE 32        /* default latent tile side of the tiled decode (sd.cpp's) */
#define MX_SD_VAE_OVERLAP 16     /* default latent overlap of neighbouring tiles (factor 0.5) */

struct mx_sd_vae;

/* Binds the VAE weights of m (borrowed: m must outlive the vae) and converts its small vectors
 * (biases, norm scales) to F32 on m's backend. The decoder is required; the encoder is optional
 * (a decode-only VAE file): without it mx_sd_vae_encode fails with MX_EUNSUP. Returns 0, or
 * MX_EFORMAT ("path: tensor NAME missing" / "... has shape [..], expected [..]"), MX_EUNSUP (the
 * backend lacks an op), MX_ENOMEM. *out is caller-owned (mx_sd_vae_free). */
int mx_sd_vae_new(const struct mx_sd_model *m, struct mx_sd_vae **out, struct mx_err *err);

/* Frees the vae (not the model). NULL ok. */
void mx_sd_vae_free(struct mx_sd_vae *v);

/* Sets the latent tile side and overlap the tiled decode uses (defaults MX_SD_VAE_TILE and
 * MX_SD_VAE_OVERLAP). Returns 0, or MX_EINVAL unless 4 <= tile and 0 <= overlap <= tile / 2. */
int mx_sd_vae_set_tiling(struct mx_sd_vae *v, int tile, int overlap);

/* Bytes of backend scratch a decode of an lw x lh latent needs (tiled: one tile's, since tiles
 * run one after the other), plus a host-side estimate of the CPU backend's conv scratch.
 * SIZE_MAX when the size overflows. */
size_t mx_sd_vae_decode_mem(const struct mx_sd_vae *v, int lw, int lh, bool tiled);

/* Bytes of backend scratch an encode of a w x h image needs; SIZE_MAX on overflow. */
size_t mx_sd_vae_encode_mem(const struct mx_sd_vae *v, int w, int h);

/* Decodes z: host f32 [4][lh][lw] (already divided by MX_SD_VAE_SCALE) into rgb: host f32
 * [3][8 lh][8 lw], the decoder's output before clamping (pixel = round(clamp((x+1)/2,0,1)*255)).
 * tiled: decode overlapping latent tiles one at a time and blend them with smootherstep
 * weights (as stable-diffusion.cpp's --vae-tiling), so scratch stays at one tile's size.
 * cancel (may be NULL) is polled between blocks. Returns 0, MX_EINVAL (sizes < 1), MX_ENOMEM,
 * MX_ECANCELED (rgb then undefined), or an op error; err says which. */
int mx_sd_vae_decode(struct mx_sd_vae *v, int lw, int lh, const float *z, bool tiled,
                     float *rgb, const volatile int *cancel, struct mx_err *err);

/* Encodes rgb: host f32 [3][h][w] in [-1, 1] (w, h positive multiples of 8) into moments: host
 * f32 [8][h/8][w/8] = quant_conv(encoder(rgb)): mean in channels 0-3, logvar in 4-7. Returns 0,
 * MX_EINVAL, MX_EUNSUP (no encoder), MX_ENOMEM, MX_ECANCELED or an op error. */
int mx_sd_vae_encode(struct mx_sd_vae *v, int w, int h, const float *rgb, float *moments,
                     const volatile int *cancel, struct mx_err *err);

#endif
