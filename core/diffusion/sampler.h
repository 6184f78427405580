/* sampler.h - the diffusion samplers (k-diffusion formulations, as stable-diffusion.cpp runs
 * them) over a denoiser callback, and their names in stable-diffusion.cpp's and A1111's
 * spelling.
 *
 * A sampler walks a sigma list (schedule.h) from sigmas[0] down to sigmas[steps] (0 for a full
 * run; img2img passes the tail that starts at its strength). The network is a callback that
 * turns a noisy latent x at noise level sigma into its estimate of the clean latent
 * ("denoised": for an eps model x - sigma * eps(c_in * x, t(sigma)), with CFG and inpaint masks
 * applied inside the callback). Latents are host float arrays of n values (4*h*w, NCHW).
 * Ancestral and SDE samplers draw their noise from the caller's generator, continuing its
 * stream after the initial noise, one randn(n) per noisy step, none on the step to sigma 0.
 *
 * HOW TO USE
 *   mx_sd_rng_randn(&rng, x, n); for (i) x[i] *= sigmas[0];          // txt2img start
 *   rc = mx_sd_sample(MX_SD_SAMPLER_EULER_A, -1, x, n, sigmas, steps, &rng,
 *                     my_denoise, my_step, ud, &err);                // x: the final latent
 */
#ifndef MX_SD_SAMPLER_H
#define MX_SD_SAMPLER_H

#include <stdint.h>

#include "core/base/err.h"
#include "core/diffusion/rng.h"

/* The samplers, in stable-diffusion.cpp's names (mx_sd_sampler_name). */
enum mx_sd_sampler {
    MX_SD_SAMPLER_EULER = 0,     /* "euler": first-order ODE step */
    MX_SD_SAMPLER_EULER_A,       /* "euler_a": Euler ancestral (eta, default 1) */
    MX_SD_SAMPLER_HEUN,          /* "heun": 2nd order, two evaluations per step */
    MX_SD_SAMPLER_DPM2,          /* "dpm2": DPM-Solver-2, midpoint in log sigma */
    MX_SD_SAMPLER_DPMPP2S_A,     /* "dpm++2s_a": DPM-Solver++(2S) ancestral (eta, default 1) */
    MX_SD_SAMPLER_DPMPP2M,       /* "dpm++2m": DPM-Solver++(2M), multistep */
    MX_SD_SAMPLER_DPMPP2MV2,     /* "dpm++2mv2": 2M with a symmetric step-size ratio */
    MX_SD_SAMPLER_DPMPP2M_SDE,   /* "dpm++2m_sde": 2M SDE midpoint, plain randn noise (eta 1) */
    MX_SD_SAMPLER_IPNDM,         /* "ipndm": improved PNDM, 4th-order multistep */
    MX_SD_SAMPLER_IPNDM_V,       /* "ipndm_v": iPNDM with variable step sizes */
    MX_SD_SAMPLER_LCM,           /* "lcm": latent consistency, denoise then renoise */
    MX_SD_SAMPLER_DDIM_TRAILING, /* "ddim_trailing": DDIM (eta, default 0) = Euler a on simple */
    MX_SD_SAMPLER_TCD,           /* "tcd": trajectory consistency distillation (eta, default 0) */
    MX_SD_SAMPLER_LMS,           /* "lms": linear multistep, order 4, the peer's history shift 1 */
    MX_SD_SAMPLER_DPMPP2M_SDE_BT, /* "dpm++2m_sde_bt": 2M SDE with Brownian-tree noise (eta 1) */
    MX_SD_SAMPLER_DPMPP_SDE,     /* "dpm++sde": k-diffusion's DPM++ SDE (A1111 "DPM++ SDE"), two
                                    evaluations per step, Brownian-tree noise (eta 1); not in
                                    the peer, so its name is mixel's */
    MX_SD_SAMPLER_COUNT
};

/* The network: writes into denoised[n] the clean-latent estimate for latent x[n] at noise level
 * sigma (> 0). Returns 0, or a negative MX_E* code (MX_ECANCELED to stop), which mx_sd_sample
 * returns as is. x and denoised never alias. ud: the caller's. */
typedef int (*mx_sd_denoise_fn)(void *ud, const float *x, float sigma, float *denoised);

/* Called after step `step` (1-based) of `steps` with the current latent and the last denoised
 * estimate (for previews; both borrowed for the call). Returns non-zero to cancel. */
typedef int (*mx_sd_step_fn)(void *ud, int step, int steps, const float *x,
                             const float *denoised);

/* Runs sampler s over sigmas[0..steps] (steps + 1 values, descending, sigmas[0..steps-1] > 0)
 * on x[n] in place. eta < 0 (or NaN) selects the sampler's default (mx_sd_sampler_default_eta);
 * samplers without noise ignore it. rng is used by the noisy samplers (euler_a with eta > 0,
 * dpm++2s_a, dpm++2m_sde, lcm, ddim_trailing/tcd with eta > 0, dpm++2m_sde_bt and dpm++sde,
 * whose tree seed is one randn(2) drawn first) and may be NULL for the others.
 * step_fn may be NULL. Returns 0 with x the sampled latent; MX_ECANCELED (from the callbacks);
 * the denoiser's error; MX_EINVAL (bad sampler, steps < 1, n < 1, missing rng); MX_ENOMEM.
 * After an error x holds an intermediate latent. Allocates its scratch (at most 10 n floats,
 * 8 n for all but the Brownian-tree samplers) per call. Thread-safe for distinct x and rng. */
int mx_sd_sample(int s, float eta, float *x, int64_t n, const float *sigmas, int steps,
                 struct mx_sd_rng *rng, mx_sd_denoise_fn denoise, mx_sd_step_fn step_fn,
                 void *ud, struct mx_err *err);

/* A Brownian motion W over noise levels [sigma_min, sigma_max] on n values, sampled lazily
 * by bisection (torchsde's BrownianTree idea, the peer's BrownianTreeNoiseSampler, bit-exact):
 * W(sigma_max) is one randn(n) times sqrt(sigma_max - sigma_min); W(t) at any other level comes
 * from 24 levels of Brownian bridges whose midpoint draws are seeded per tree node
 * (std_default generators). So the noise of an interval does not depend on which other
 * intervals were asked for: runs with different step counts see the same path. */
struct mx_sd_brownian {
    int64_t n;            /* values per sample */
    double t_min, t_max;  /* the interval the path is defined on */
    uint64_t root_seed;   /* seed of the bisection tree's root node */
    float *w_max;         /* [n] W(t_max) */
    float *buf;           /* [3n] scratch: the bridge's two ends and its midpoint */
    float *w[3];          /* [n] each: W at the levels last asked for (samplers ask each level
                             two or three times; a W costs 24 randn(n)) */
    double w_t[3];        /* their levels */
    unsigned w_used[3];   /* when each was last used (0: empty) */
    unsigned clock;       /* use counter for w_used */
};

/* Builds the path for seed (the peer takes it from the bits of one randn(2) of the sampling
 * generator). sigma_min < sigma_max. Returns 0, MX_EINVAL or MX_ENOMEM; on failure b needs no
 * deinit. */
int mx_sd_brownian_init(struct mx_sd_brownian *b, int64_t n, double sigma_min, double sigma_max,
                        uint64_t seed, struct mx_err *err);

/* out[n] = (W(hi) - W(lo)) / sqrt(hi - lo) for the interval between sigma_a and sigma_b (either
 * order, clamped to the path's range): unit-variance noise for that step. */
void mx_sd_brownian_noise(struct mx_sd_brownian *b, double sigma_a, double sigma_b, float *out);

void mx_sd_brownian_deinit(struct mx_sd_brownian *b); /* NULL ok; frees the buffers */

/* The eta a sampler uses when given none: 1 for euler_a, dpm++2s_a, dpm++2m_sde,
 * dpm++2m_sde_bt and dpm++sde, else 0 (stable-diffusion.cpp's resolve_eta). */
float mx_sd_sampler_default_eta(int s);

/* Denoiser evaluations for `steps` steps of sampler s over a full schedule (ending at 0): steps
 * for one-evaluation samplers, 2 steps - 1 for heun, dpm2, dpm++2s_a and dpm++sde (their last
 * step is a plain Euler step). For progress bars and time estimates. */
int mx_sd_sampler_evals(int s, int steps);

/* Parses a sampler name, case-insensitive: stable-diffusion.cpp's ("euler", "euler_a", "heun",
 * "dpm2", "dpm++2s_a", "dpm++2m", "dpm++2mv2", "dpm++2m_sde", "ipndm", "ipndm_v", "lcm",
 * "ddim_trailing", "tcd", "lms", "dpm++2m_sde_bt"; and mixel's "dpm++sde"), A1111's display
 * names ("Euler a", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ SDE", "DDIM", "LCM", ...), A1111's old
 * API aliases ("k_euler_a", "k_dpmpp_2m", ...) and A1111's pre-1.9
 * names that carry a schedule ("DPM++ 2M Karras", "DPM++ 2M SDE Exponential"). *schedule gets
 * that schedule (enum mx_sd_schedule) or -1 when the name has none. Returns 0, or MX_EINVAL
 * with err listing the valid sd.cpp names. */
int mx_sd_sampler_parse(const char *name, int *sampler, int *schedule, struct mx_err *err);

/* stable-diffusion.cpp's name ("euler_a") / A1111's display name ("Euler a") of a sampler, as
 * A1111 1.9+ writes it in the PNG parameters ("Sampler: DPM++ 2M, Schedule type: Karras");
 * samplers A1111 lacks get a name in its style ("DPM++ 2M v2", "iPNDM", "TCD", "DPM++ 2M SDE
 * BT"). A1111's "DPM++ 2M SDE" is dpm++2m_sde (the peer's randn noise; A1111 itself uses a
 * Brownian tree, so no SDE sampler is bit-exact with A1111).
 * "unknown" out of range. Static strings. */
const char *mx_sd_sampler_name(int s);
const char *mx_sd_sampler_a1111_name(int s);

/* All valid sd.cpp sampler names joined by ", " (for --help and messages). Static string. */
const char *mx_sd_sampler_names(void);

#endif
