/* pipeline_impl.h - the pipeline's pieces below mx_sd_generate, for the passes built on it (the
 * hires fix in hires.c): generation from a given latent or up to the final latent, the VAE decode
 * of a latent and the VAE encode of an image. Private to core/diffusion/ and tests/. Latents are
 * host f32 [4][height/8][width/8] as the UNet sees them (scaled by the VAE's factor). */
#ifndef MX_SD_PIPELINE_IMPL_H
#define MX_SD_PIPELINE_IMPL_H

#include <stdint.h>

#include "core/diffusion/pipeline.h"

/* What mx_sd_generate_ext does besides mx_sd_generate. */
struct mx_sd_gen_ext {
    /* NULL, or the latent to start from at par's size (par->init must be NULL): noise at the
     * first sigma of the last strength * steps steps is added to it, as img2img does to an
     * encoded image (the hires fix's second pass) */
    const float *init_latent;
    /* NULL, or where the final latent goes (malloc'd, caller frees) instead of being decoded:
     * out stays empty and no DONE report is made */
    float **latent_out;
};

/* mx_sd_generate with ext (NULL: the same as mx_sd_generate). */
int mx_sd_generate_ext(struct mx_sd_pipeline *p, const struct mx_sd_params *par, int index,
                       const struct mx_sd_gen_ext *ext, struct mx_image *out,
                       mx_sd_progress_fn progress, void *ud, struct mx_err *err);

/* Decodes latent (par->width/8 x par->height/8, par->vae_tiling honoured) into *out, reporting
 * the DECODE and DONE phases. Returns 0, MX_ECANCELED or an error. */
int mx_sd_decode_latent(struct mx_sd_pipeline *p, const struct mx_sd_params *par,
                        const float *latent, struct mx_image *out, mx_sd_progress_fn progress,
                        void *ud, struct mx_err *err);

/* Encodes par->init (resized to par's size) into a latent sampled from the VAE's moments with
 * seed's first draws, as img2img does; *latent malloc'd (caller frees). */
int mx_sd_encode_image(struct mx_sd_pipeline *p, const struct mx_sd_params *par, uint64_t seed,
                       float **latent, struct mx_err *err);

#endif
