/* sd_kind.h - what a safetensors file holds, guessed from its key names the way
 * stable-diffusion.cpp detects a model version: an SD 1.x/2.x/SDXL checkpoint (CompVis/LDM or
 * diffusers names), a VAE, a CLIP text encoder, a Hugging Face language model. The first piece
 * of the diffusion engine's loader; `mixel inspect` prints it.
 */
#ifndef MX_SD_KIND_H
#define MX_SD_KIND_H

#include <stddef.h>
#include <stdint.h>

#include "core/format/safetensors.h"

/* Width of the UNet's cross-attention context under prefix (768: SD 1.x, 1024: SD 2.x,
 * 2048: SDXL), or 0 when no cross-attention key is found. */
int64_t mx_sd_unet_context_dim(const struct mx_st *st, const char *prefix);

/* Writes a one-line description ("SD 1.x checkpoint (CompVis/LDM key names): UNet + VAE + ...",
 * "unknown") into out (always terminated, cut to size). */
void mx_st_guess_kind(const struct mx_st *st, char *out, size_t size);

#endif
