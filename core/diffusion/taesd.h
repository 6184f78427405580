/* taesd.h - TAESD, the tiny autoencoder (madebyollin/taesd): a 1.2 M-parameter decoder that
 * turns a latent into a picture for a fraction of the VAE's cost, for live previews while an
 * image is sampled (preview.h). Same network for SD 1.x/2.x (taesd) and SDXL (taesdxl); both
 * take the latent as the UNet sees it (scaled), and give RGB in [0, 1].
 *
 * Architecture (taesd.py Decoder; stable-diffusion.cpp src/model/vae/tae.hpp TinyDecoder):
 *   tanh(z / 3) * 3 -> conv 3x3 (4->64) -> ReLU -> 3 x Block -> (nearest x2, conv 3x3 no bias,
 *   3 x Block) twice -> nearest x2 -> conv 3x3 no bias -> Block -> conv 3x3 (64->3)
 *   Block: ReLU(conv.4(ReLU(conv.2(ReLU(conv.0(x))))) + x), all 3x3 with bias, 64 channels.
 * Files (safetensors): the decoder alone as madebyollin publishes it (taesd_decoder.safetensors:
 * keys "1.weight" .. "19.bias", the Sequential's indices with the clamp at 0), or the diffusers
 * AutoencoderTiny (taesd/diffusion_pytorch_model.safetensors, "decoder.layers.0.weight" ..
 * "decoder.layers.18.bias", the encoder ignored). F32, F16 or BF16; kept as F32.
 *
 * Runs on the CPU backend with host-memory activations (its ReLU and tanh are done in place
 * between the backend's convs). One decoder is used by one thread at a time.
 */
#ifndef MX_SD_TAESD_H
#define MX_SD_TAESD_H

#include <stddef.h>

#include "core/base/err.h"
#include "kernels/backend.h"

struct mx_sd_taesd;

/* Reads path's decoder weights (checking every name, shape and type) for be, which must be the
 * CPU backend (NULL: load only, for checks and the fuzz target; decoding then fails). Returns 0,
 * MX_ENOENT/MX_EIO, MX_EFORMAT ("path: tensor NAME missing", "... has shape [..], expected
 * [..]", "not a TAESD decoder"), MX_EUNSUP (another backend) or MX_ENOMEM. */
int mx_sd_taesd_open(struct mx_backend *be, const char *path, struct mx_sd_taesd **out,
                     struct mx_err *err);
/* The same from a safetensors image in memory (borrowed while opening); name is for messages. */
int mx_sd_taesd_open_mem(struct mx_backend *be, const void *buf, size_t size, const char *name,
                         struct mx_sd_taesd **out, struct mx_err *err);
void mx_sd_taesd_free(struct mx_sd_taesd *t); /* NULL ok */

/* Bytes of host scratch a decode of an lw x lh latent needs (three 64-channel images at the
 * output size); SIZE_MAX on overflow. */
size_t mx_sd_taesd_decode_mem(int lw, int lh);

/* Decodes latent: host f32 [4][lh][lw] (scaled, as the UNet sees it) into rgb: host f32
 * [3][8 lh][8 lw], the network's output (pixel = round(clamp(x, 0, 1) * 255)). Returns 0,
 * MX_EINVAL (sizes < 1), MX_ENOMEM or an op error. */
int mx_sd_taesd_decode(struct mx_sd_taesd *t, const float *latent, int lw, int lh, float *rgb,
                       struct mx_err *err);

#endif
