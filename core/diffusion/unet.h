/* unet.h - the Stable Diffusion UNet (LDM/SGM openaimodel.py: SD 1.x, SD 2.x, SDXL) on the
 * backend.
 *
 * One call evaluates eps (or v) for a batch of latents at one timestep each; the pipeline puts
 * the conditional and the unconditional latent in one batch of 2 for CFG. The network's shape
 * (model channels, channel multipliers, res blocks per level, where the transformers sit, their
 * depth, heads, context width, 4 or 9 input channels, 1x1-conv or linear proj_in/out, SDXL's
 * label embedding) is read from the checkpoint's tensor shapes, so SD 1.x, SD 2.x, SDXL (no
 * attention at the first level, depths 2 / 10, context 2048) and inpainting UNets take the
 * same path. Weights stay as stored (F16 matrices and conv kernels are read in place); only the
 * bias and norm vectors are widened to F32 once at load (a few MB).
 *
 * HOW TO USE
 *   mx_sd_unet_new(m, 2, 64, 64, &u, &err);                   // CFG batch, up to 512x512
 *   mx_sd_unet_eval(u, 2, 64, 64, x, t, ctx, 77, eps, &cancel, &err);
 *   mx_sd_unet_free(u);
 */
#ifndef MX_SD_UNET_H
#define MX_SD_UNET_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/diffusion/sd_model.h"

struct mx_sd_unet;

/* Op classes the UNet times when profiling is on (mx_sd_unet_set_profile). */
enum mx_sd_unet_prof {
    MX_SD_UNET_PROF_CONV = 0, /* 3x3 / 1x1 / strided convolutions */
    MX_SD_UNET_PROF_MATMUL,   /* linear layers (q/k/v/out, proj_in/out, feed-forward, emb) */
    MX_SD_UNET_PROF_ATTN,     /* attention (self and cross) */
    MX_SD_UNET_PROF_NORM,     /* group norm, layer norm */
    MX_SD_UNET_PROF_ELTWISE,  /* silu, gelu_mul, add, transpose, concat, upsample, copies */
    MX_SD_UNET_PROF_COUNT
};

/* Seconds and calls per op class since profiling was switched on. */
struct mx_sd_unet_profile {
    double s[MX_SD_UNET_PROF_COUNT];  /* wall seconds per class */
    double cpu[MX_SD_UNET_PROF_COUNT]; /* CPU seconds of the process (all threads) per class:
                                          steadier than wall time on a shared machine */
    int64_t n[MX_SD_UNET_PROF_COUNT]; /* op calls per class */
};

/* Reads the UNet's hyperparameters from the weight shapes of m (borrowed: it must outlive u),
 * checks every tensor's shape, widens the vectors to F32 and sizes scratch for max_batch
 * latents of max_lw x max_lh (a 77-token context; longer contexts grow it at eval). Returns 0,
 * or MX_EFORMAT ("path: tensor NAME has shape [..], expected [..]" and the like), MX_EINVAL
 * (bad sizes), MX_ENOMEM. *out is owned by the caller (mx_sd_unet_free). */
int mx_sd_unet_new(const struct mx_sd_model *m, int max_batch, int max_lw, int max_lh,
                   struct mx_sd_unet **out, struct mx_err *err);

/* Frees the UNet and its scratch (not the model). NULL ok. */
void mx_sd_unet_free(struct mx_sd_unet *u);

/* Bytes of memory the UNet needs beyond the mapped weights for this batch / latent size and a
 * 77-token context: activation scratch, the F32 vectors, and an estimate of the CPU backend's
 * largest per-op scratch (an F16 conv kernel widened to F32, a rounded copy of the largest
 * activation, an im2col tile per thread). 0 when m is not a UNet this code can run. */
size_t mx_sd_unet_mem(const struct mx_sd_model *m, int batch, int lw, int lh);

/* eps (or v) for `batch` latents at once.
 * x: host f32 [batch][C_in][lh][lw] (C_in = 4 or 9); t: batch timesteps (may be fractional: the
 * sinusoidal embedding takes the float); ctx: host f32 [batch][n_ctx][ctx_dim] (n_ctx = 77*k);
 * out: host f32 [batch][4][lh][lw]. lw, lh must be multiples of 2^(levels-1) (8 for SD) and
 * batch <= max_batch; a larger lw*lh than sized at new regrows the scratch. cancel: polled
 * between blocks; non-NULL and non-zero -> MX_ECANCELED (out then undefined).
 * Returns 0, MX_EINVAL (sizes), MX_ENOMEM, MX_ECANCELED or a backend error (err says which op). */
int mx_sd_unet_eval(struct mx_sd_unet *u, int batch, int lw, int lh, const float *x,
                    const float *t, const float *ctx, int64_t n_ctx, float *out,
                    const volatile int *cancel, struct mx_err *err);

/* mx_sd_unet_eval for UNets with a label embedding (SDXL): y is host f32 [batch][adm_dim], the
 * pooled text embedding followed by the sinusoidal embeddings of the size conditioning (see
 * sdxl_cond.h); it is passed through label_emb and added to the time embedding. y is ignored
 * (may be NULL) for UNets without one; MX_EINVAL when it is NULL for one with. */
int mx_sd_unet_eval_y(struct mx_sd_unet *u, int batch, int lw, int lh, const float *x,
                      const float *t, const float *ctx, int64_t n_ctx, const float *y,
                      float *out, const volatile int *cancel, struct mx_err *err);

/* The width of y the UNet's label embedding takes (2816 for SDXL), 0 when it has none. */
int64_t mx_sd_unet_adm_dim(const struct mx_sd_unet *u);

/* Switches per-op-class timing on (and zeroes it) or off. Timing waits for each op
 * (mx_backend_sync), so leave it off outside measurements. */
void mx_sd_unet_set_profile(struct mx_sd_unet *u, int on);

/* The timing gathered since mx_sd_unet_set_profile(u, 1). */
void mx_sd_unet_get_profile(const struct mx_sd_unet *u, struct mx_sd_unet_profile *p);

/* Bytes of activation scratch the UNet holds now (sized for the largest eval so far). */
size_t mx_sd_unet_scratch_bytes(const struct mx_sd_unet *u);

/* Short description of the inferred architecture for logs, e.g. "ch 320 x(1,2,4,4) res 2,
 * attn at levels 0-2 depth 1, 8 heads, ctx 768, conv proj, in 4" (static per unet). */
const char *mx_sd_unet_describe(const struct mx_sd_unet *u);

#endif
