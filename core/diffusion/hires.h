/* hires.h - AUTOMATIC1111's "hires fix": generate at the base size, upscale (the latent, or the
 * decoded picture with an image resampler), then a second img2img-style pass over the upscaled
 * result at a denoising strength, so large pictures keep the composition of a base-size one.
 *
 * HOW TO USE
 *   struct mx_sd_hires hr; mx_sd_hires_default(&hr);
 *   hr.scale = 2; hr.strength = 0.5f; mx_sd_upscaler_parse("lanczos", &hr.upscaler, &err);
 *   mx_sd_generate_hires(p, &par, &hr, 0, &img, on_progress, ud, &err);   (img at 2x par's size)
 *   mx_sd_hires_infotext(&hr, &par, &extras...)  -> the keys A1111 writes (params_text.h)
 *
 * As A1111 (modules/processing.py, StableDiffusionProcessingTxt2Img): the target is base * scale
 * (int()), or --hires-width/height (one given: the other from the aspect ratio; both: upscaled
 * to cover, then the latent cropped to the centre); the second pass runs `steps` (0: the first
 * pass's) at `strength` like img2img: the last int(strength * steps) + 1 sigmas of the schedule,
 * noise from the same seed. Strength 0 skips the second pass: the result is the upscaled first
 * pass itself (for a latent upscaler, its decode).
 */
#ifndef MX_SD_HIRES_H
#define MX_SD_HIRES_H

#include <stdbool.h>

#include "core/base/err.h"
#include "core/diffusion/infotext.h"
#include "core/diffusion/pipeline.h"

/* Upscalers: the latent ones are torch.nn.functional.interpolate modes A1111 offers
 * (shared.latent_upscale_modes); the image ones resample the decoded picture. */
enum mx_sd_upscaler {
    MX_SD_UP_LATENT = 0,          /* "Latent": bilinear, align_corners=False, no antialias */
    MX_SD_UP_LATENT_BICUBIC,      /* "Latent (bicubic)": cubic A=-0.75 */
    MX_SD_UP_LATENT_NEAREST,      /* "Latent (nearest)": floor(dst * in / out) */
    MX_SD_UP_LATENT_NEAREST_EXACT,/* "Latent (nearest-exact)": floor((dst + 0.5) * in / out) */
    MX_SD_UP_LANCZOS,             /* "Lanczos": Pillow's LANCZOS resize of the decoded image */
    MX_SD_UP_NEAREST,             /* "Nearest": Pillow's NEAREST resize */
    MX_SD_UP_COUNT
};

struct mx_sd_hires {
    bool enabled;      /* false: mx_sd_generate_hires is mx_sd_generate */
    float scale;       /* "Hires upscale" (used when width and height are 0) */
    int width, height; /* "Hires resize": target pixels; 0: from scale (and the aspect ratio) */
    int steps;         /* "Hires steps": second-pass steps; 0: the first pass's */
    float strength;    /* "Denoising strength" in [0, 1] */
    int upscaler;      /* enum mx_sd_upscaler */
};

/* A1111's defaults: off, scale 2, steps 0, strength 0.7, upscaler Latent. */
void mx_sd_hires_default(struct mx_sd_hires *h);

/* Reads an upscaler name: mixel's (latent, latent-bicubic, latent-nearest, latent-nearest-exact,
 * lanczos, nearest) or A1111's ("Latent (bicubic)", "Lanczos", ...; case ignored). Returns 0 or
 * MX_EINVAL with err "unknown upscaler 'X' (one of: ...)". */
int mx_sd_upscaler_parse(const char *name, int *out, struct mx_err *err);
/* A1111's name ("Latent", "Lanczos", ...) and mixel's ("latent", "lanczos"); "?" out of range. */
const char *mx_sd_upscaler_a1111_name(int u);
const char *mx_sd_upscaler_name(int u);
/* "latent, latent-bicubic, ..." for help texts. Static string. */
const char *mx_sd_upscaler_names(void);

/* The sizes for base size bw x bh: *up_w x *up_h the upscale goes to (multiples of 8), *w x *h
 * the second pass's (after the centre crop; multiples of 64 for the UNet). Returns 0 or MX_EINVAL
 * with a message naming the size (and the nearest one that works). */
int mx_sd_hires_sizes(const struct mx_sd_hires *h, int bw, int bh, int *up_w, int *up_h, int *w,
                      int *hh, struct mx_err *err);

/* Checks h against par (scale 1..8, steps 0..1000, strength 0..1, the sizes, and the memory the
 * second pass needs). Returns 0 or MX_EINVAL / MX_ENOMEM with a one-line message. */
int mx_sd_hires_check(const struct mx_sd_pipeline *p, const struct mx_sd_params *par,
                      const struct mx_sd_hires *h, struct mx_err *err);

/* Upscales a latent [4][lh][lw] to [4][oh][ow] with a latent mode of enum mx_sd_upscaler (the
 * interpolation torch's F.interpolate does for it), into out. */
void mx_sd_latent_upscale(int mode, const float *in, int lw, int lh, float *out, int ow, int oh);

/* Adds h's A1111 keys to it as extras: "Hires upscale" (scale, shortest form) or "Hires resize"
 * ("WxH"), "Hires steps" (when not 0), "Hires upscaler" (A1111's name). Returns 0 or an error of
 * mx_sd_infotext_set_extra. */
int mx_sd_hires_infotext(const struct mx_sd_hires *h, struct mx_sd_infotext *it);

/* Reads those keys and "Denoising strength" back from a parsed infotext into h (enabled when
 * "Hires upscaler" or "Hires upscale"/"Hires resize" is there). Returns 0 or MX_EINVAL naming a
 * value mixel cannot use. */
int mx_sd_hires_from_infotext(const struct mx_sd_infotext *it, struct mx_sd_hires *h,
                              struct mx_err *err);

/* One image with the hires fix when h->enabled (seed par->seed + index), else mx_sd_generate.
 * Progress: the first pass's phases, then the second pass's (its step count and steps again).
 * Returns 0, MX_ECANCELED or an error; *out at the second pass's size. */
int mx_sd_generate_hires(struct mx_sd_pipeline *p, const struct mx_sd_params *par,
                         const struct mx_sd_hires *h, int index, struct mx_image *out,
                         mx_sd_progress_fn progress, void *ud, struct mx_err *err);

#endif
