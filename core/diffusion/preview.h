/* preview.h - live previews of an image being sampled: the current estimate of the clean latent
 * (mx_sd_progress.latent) turned into a picture every few steps, with TAESD (taesd.h) when a
 * decoder file is given, else with the cheap linear latent -> RGB map A1111 ("Approx cheap") and
 * ComfyUI ("latent2rgb") use.
 *
 * HOW TO USE (in the mx_sd_progress_fn, on the sampling thread)
 *   mx_sd_preview_new(be, MX_SD_PREVIEW_SD1, "taesd_decoder.safetensors" or NULL, 0, &pv, &err);
 *   if (p->latent && mx_sd_preview_due(pv, p)) { mx_sd_preview_make(pv, p, w, h, &img, &err);
 *       ... draw img ...; mx_image_free(&img); }
 *   mx_sd_preview_spent_s(pv) / the sampling time = what the previews cost
 *
 * The cost is kept to a few percent of the sampling time: with every = 0 a preview is made when
 * MX_SD_PREVIEW_BUDGET of the sampling time since the last one covers what the last one took
 * (the linear map then runs every step; TAESD at 512x512 on a CPU every several steps).
 *
 * The linear factors, rows = latent channels, columns = R, G, B, out = (sum + 1) / 2 clamped:
 *   SD 1.x/2.x: ComfyUI comfy/latent_formats.py SD15.latent_rgb_factors
 *     [0.3512 0.2297 0.3227] [0.3250 0.4974 0.2350] [-0.2829 0.1762 0.2721]
 *     [-0.2120 -0.2616 -0.7177]
 *   SDXL: ComfyUI comfy/latent_formats.py SDXL.latent_rgb_factors
 *     [0.3920 0.4054 0.4549] [-0.2634 -0.0196 0.0653] [0.0568 0.1687 -0.0755]
 *     [-0.3112 -0.2359 -0.2076]
 * (least-squares fits of the VAE's decode, averaged per 8x8 block, to the 4 latent channels).
 */
#ifndef MX_SD_PREVIEW_H
#define MX_SD_PREVIEW_H

#include <stdbool.h>

#include "core/base/err.h"
#include "core/diffusion/pipeline.h"
#include "core/image/image.h"
#include "kernels/backend.h"

#define MX_SD_PREVIEW_BUDGET 0.03 /* previews may take this share of the sampling time */

/* Which latent space (the linear factors differ; TAESD files too: taesd vs taesdxl). */
enum mx_sd_preview_space { MX_SD_PREVIEW_SD1 = 0, MX_SD_PREVIEW_SDXL };

struct mx_sd_preview;

/* taesd_path NULL: the linear map. every: a preview each every steps; 0: automatic (see above).
 * Returns 0 or an error of mx_sd_taesd_open / MX_ENOMEM. */
int mx_sd_preview_new(struct mx_backend *be, int space, const char *taesd_path, int every,
                      struct mx_sd_preview **out, struct mx_err *err);
void mx_sd_preview_free(struct mx_sd_preview *pv); /* NULL ok */

/* "taesd" or "linear". */
const char *mx_sd_preview_kind(const struct mx_sd_preview *pv);

/* Whether a preview should be made at this report (a sampling step with a latent). Also keeps
 * the step clock the automatic interval uses: call it at every report. */
bool mx_sd_preview_due(struct mx_sd_preview *pv, const struct mx_sd_progress *p);

/* The preview of p's latent as a w x h picture (the image's size: TAESD gives it, the linear
 * map's 1/8-size picture is scaled up) into *out (caller frees). Returns 0 or an error. */
int mx_sd_preview_make(struct mx_sd_preview *pv, const struct mx_sd_progress *p, int w, int h,
                       struct mx_image *out, struct mx_err *err);

/* Seconds spent making previews so far, and how many were made. */
double mx_sd_preview_spent_s(const struct mx_sd_preview *pv);
int mx_sd_preview_count(const struct mx_sd_preview *pv);

/* The linear map of latent [4][lh][lw] to an lw x lh picture into *out (caller frees). Returns 0
 * or MX_ENOMEM. */
int mx_sd_preview_linear(int space, const float *latent, int lw, int lh, struct mx_image *out);

#endif
