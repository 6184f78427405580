/* schedule.h - noise schedules: the model's discrete sigma table (from its training
 * alphas_cumprod), the sigma lists a sampler walks (discrete, karras, exponential, ...), and the
 * sigma <-> timestep maps the UNet's time embedding needs.
 *
 * Semantics are stable-diffusion.cpp's (src/runtime/denoiser.hpp at 97d2990, the peer of
 * ../shared/refs/sd), float for float, so that a schedule is bit-identical to the peer's:
 *   sigma_i = sqrt((1 - ac_i) / ac_i), i = 0..999, and log sigma_i, in float;
 *   t_to_sigma(t): linear interpolation of log sigma between floor(t) and ceil(t), then exp;
 *   sigma_to_t(s): the inverse (fractional t, clamped to [0, 999]).
 * Every list has steps + 1 entries, the last one 0.
 *
 * HOW TO USE
 *   struct mx_sd_sigma_table tab;
 *   mx_sd_sigma_table_init(&tab, model->alphas_cumprod);
 *   float sig[steps + 1];
 *   mx_sd_schedule_sigmas(&tab, MX_SD_SCHED_KARRAS, steps, sig, &err);
 *   ... the UNet at sigma s gets timestep mx_sd_sigma_to_t(&tab, s) ...
 */
#ifndef MX_SD_SCHEDULE_H
#define MX_SD_SCHEDULE_H

#include "core/base/err.h"
#include "core/diffusion/sd_model.h"

/* The schedule kinds, in stable-diffusion.cpp's names (mx_sd_schedule_name). */
enum mx_sd_schedule {
    MX_SD_SCHED_DISCRETE = 0, /* t = linspace(999, 0, steps) (A1111 "Uniform"/"Normal") */
    MX_SD_SCHED_KARRAS,       /* Karras et al. 2022 eq. 5, rho 7, between the table's ends */
    MX_SD_SCHED_EXPONENTIAL,  /* evenly spaced in log sigma between the table's ends */
    MX_SD_SCHED_AYS,          /* Align Your Steps, the SD 1.5 levels (log-linear stretched) */
    MX_SD_SCHED_SGM_UNIFORM,  /* t = linspace(999, 0, steps + 1), last t dropped */
    MX_SD_SCHED_SIMPLE,       /* every (1000/steps)-th table entry from the top (DDIM trailing) */
    MX_SD_SCHED_SMOOTHSTEP,   /* t = round(smoothstep(1 - i/steps) * 999) */
    MX_SD_SCHED_KL_OPTIMAL,   /* tan of evenly spaced atan(sigma) */
    MX_SD_SCHED_LCM,          /* LCM's 50-step training grid, t = (50 - 50i/steps) * 20 - 1 */
    MX_SD_SCHED_BETA,         /* t at the Beta(0.6, 0.6) quantiles, duplicates dropped */
    MX_SD_SCHED_COUNT
};

/* The model's discrete noise levels, ascending in t (sigma_0 smallest). */
struct mx_sd_sigma_table {
    float sigmas[MX_SD_TRAIN_STEPS];     /* sqrt((1 - ac) / ac), float */
    float log_sigmas[MX_SD_TRAIN_STEPS]; /* logf(sigmas[i]) */
};

/* Fills tab from a model's alphas_cumprod[1000] (sd_model.h). Values must be in (0, 1);
 * nothing is checked (the model loader validates the file's buffer). */
void mx_sd_sigma_table_init(struct mx_sd_sigma_table *tab, const float *alphas_cumprod);

/* Smallest and largest noise level of the table (sigma_0, sigma_999). */
float mx_sd_sigma_min(const struct mx_sd_sigma_table *tab);
float mx_sd_sigma_max(const struct mx_sd_sigma_table *tab);

/* sigma of a fractional timestep t in [0, 999] (clamped), by log-linear interpolation. */
float mx_sd_t_to_sigma(const struct mx_sd_sigma_table *tab, float t);

/* The fractional timestep of sigma (the UNet's time-embedding input), clamped to [0, 999];
 * sigma <= 0 gives 0. */
float mx_sd_sigma_to_t(const struct mx_sd_sigma_table *tab, float sigma);

/* Writes the sigmas of schedule s (descending, last 0) into out, which has room for steps + 1,
 * and their count into *n_out: steps + 1, except for MX_SD_SCHED_BETA, which drops quantiles
 * that round to an already used timestep (as the peer and ComfyUI do), so with many steps it
 * can give fewer. n_out may be NULL; a shortened beta list is then MX_EINVAL. Returns 0, or
 * MX_EINVAL for steps outside [1, 10000] or an unknown schedule (err says which). */
int mx_sd_schedule_sigmas(const struct mx_sd_sigma_table *tab, int s, int steps, float *out,
                          int *n_out, struct mx_err *err);

/* The schedule a sampler uses when the user names none (stable-diffusion.cpp's defaults):
 * simple for ddim_trailing, lcm for lcm and tcd, else discrete. sampler: enum mx_sd_sampler. */
int mx_sd_schedule_default(int sampler);

/* Parses a schedule name, case-insensitive: stable-diffusion.cpp's ("discrete", "karras",
 * "exponential", "ays", "sgm_uniform", "simple", "smoothstep", "kl_optimal", "lcm", "beta",
 * "normal") and A1111's "Schedule type" values ("Uniform", "Karras", "Exponential",
 * "SGM Uniform", "KL Optimal", "Align Your Steps", "Simple", "Normal", "Beta"). "Automatic"
 * gives -1 (the sampler's default). Returns 0, or MX_EINVAL with err listing the valid names. */
int mx_sd_schedule_parse(const char *name, int *schedule, struct mx_err *err);

/* stable-diffusion.cpp's name ("discrete", ...) / A1111's "Schedule type" value ("Uniform",
 * "Karras", ...) of a schedule; "unknown" out of range. Static strings. */
const char *mx_sd_schedule_name(int s);
const char *mx_sd_schedule_a1111_name(int s);

/* All valid sd.cpp names joined by ", " (for --help and messages). Static string. */
const char *mx_sd_schedule_names(void);

#endif
