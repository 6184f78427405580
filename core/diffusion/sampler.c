/* sampler.c - the k-diffusion samplers over a denoiser callback, and sampler names (see
 * sampler.h).
 *
 * Each sampler repeats stable-diffusion.cpp's element-wise float arithmetic in its order, so a
 * run with the same denoiser gives the peer's latents. Two C details matter for that: scalar
 * coefficients are float (the peer's tensor ops cast scalars to float), and where the peer calls
 * unqualified log/exp on a float the double function runs (see rng.c), so those coefficients
 * are computed in double and rounded once; its std::log/std::exp/std::sqrt are the float ones.
 *
 * Workload: steps x (one or two UNet evaluations) on latents of 4*h*w floats; the loops here
 * are a rounding error beside the UNet, so they stay plain scalar loops.
 *
 * dpm++sde, which the peer lacks, follows k-diffusion's sample_dpmpp_sde on the peer's
 * Brownian tree.
 *
 * Ref: stable-diffusion.cpp src/runtime/denoiser.hpp (sample_*, BrownianTreeNoiseSampler) and
 * src/stable-diffusion.cpp (resolve_eta) at 97d2990; k-diffusion k_diffusion/sampling.py.
 */
#include "core/diffusion/sampler.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/util.h"
#include "core/diffusion/schedule.h"

/* One sampling run: the caller's callbacks and the scratch latents. */
struct run {
    const char *name;       /* sampler name, for messages */
    int64_t n;              /* latent values */
    int steps;              /* sigma intervals */
    const float *sigmas;    /* [steps + 1], borrowed */
    struct mx_sd_rng *rng;  /* noise source, borrowed (NULL for deterministic samplers) */
    mx_sd_denoise_fn denoise; /* the network */
    mx_sd_step_fn step_fn;  /* progress / cancel; NULL ok */
    void *ud;               /* the caller's, passed to both callbacks */
    struct mx_err *err;     /* detail of a failure; NULL ok */
    float *den;             /* [n] denoised at the step's first evaluation */
    float *den2;            /* [n] denoised at the second evaluation / the previous step's */
    float *x2;              /* [n] intermediate latent */
    float *d;               /* [n] derivative (x - denoised) / sigma */
    float *noise;           /* [n] one randn draw */
    float *hist[3];         /* [n] each: ipndm's/lms's previous derivatives, oldest first */
    int n_hist;             /* entries of hist in use */
};

/* The denoiser at sigma; on failure a message naming the step (the callback's own, set first
 * into the same err, wins). */
static int eval(struct run *r, const float *x, float sigma, float *out, int step) {
    int rc = r->denoise(r->ud, x, sigma, out);
    if (rc < 0)
        mx_err_set(r->err, rc, "%s: denoiser failed at step %d of %d (sigma %g): %s", r->name,
                   step + 1, r->steps, (double)sigma, mx_strerror(rc));
    return rc;
}

/* After step i: the progress callback, which may cancel. */
static int step_done(struct run *r, int i, const float *x, const float *denoised) {
    if (r->step_fn && r->step_fn(r->ud, i + 1, r->steps, x, denoised) != 0)
        return mx_err_set(r->err, MX_ECANCELED, "sampling canceled after step %d of %d", i + 1,
                          r->steps);
    return 0;
}

/* x += randn(n) * scale: one draw from the run's generator. */
static void add_noise(struct run *r, float *x, float scale) {
    mx_sd_rng_randn(r->rng, r->noise, r->n);
    for (int64_t k = 0; k < r->n; k++)
        x[k] += r->noise[k] * scale;
}

/* k-diffusion's get_ancestral_step: the deterministic target sigma_down and the noise sigma_up
 * with sigma_down^2 + sigma_up^2 = sigma_to^2 (eta scales the noise). */
static void ancestral_step(float from, float to, float eta, float *down, float *up) {
    *up = 0.0f;
    *down = to;
    if (eta <= 0.0f)
        return;
    float from_sq = from * from, to_sq = to * to;
    if (from_sq > 0.0f) {
        float term = to_sq * (from_sq - to_sq) / from_sq;
        float u = eta * sqrtf(term > 0.0f ? term : 0.0f);
        *up = to < u ? to : u;
    }
    float down_sq = to_sq - *up * *up;
    *down = down_sq > 0.0f ? sqrtf(down_sq) : 0.0f;
}

/* ---- the samplers ------------------------------------------------------------------------- */

/* Euler ancestral (and DDIM trailing, its eta-0 case on the simple schedule): step to
 * sigma_down along the ODE, then add sigma_up of fresh noise. */
static int sample_euler_a(struct run *r, float *x, float eta) {
    const int64_t n = r->n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_to = r->sigmas[i + 1];
        int rc = eval(r, x, sigma, r->den, i);
        if (rc < 0)
            return rc;
        if (sigma_to == 0.f) {
            memcpy(x, r->den, sizeof(float) * (size_t)n);
        } else if (eta == 0.f) {
            float ratio = sigma_to / sigma;
            float c = (float)(1.0 - ratio);
            for (int64_t k = 0; k < n; k++)
                x[k] = x[k] * ratio + r->den[k] * c;
        } else {
            float down, up;
            ancestral_step(sigma, sigma_to, eta, &down, &up);
            float ratio = down / sigma;
            float c = 1.0f - ratio;
            for (int64_t k = 0; k < n; k++)
                x[k] = x[k] * ratio + r->den[k] * c;
            if (up > 0.f)
                add_noise(r, x, up);
        }
        if ((rc = step_done(r, i, x, r->den)) < 0)
            return rc;
    }
    return 0;
}

/* Euler: x += (x - denoised) / sigma * (sigma_next - sigma). */
static int sample_euler(struct run *r, float *x) {
    const int64_t n = r->n;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i];
        int rc = eval(r, x, sigma, r->den, i);
        if (rc < 0)
            return rc;
        float dt = r->sigmas[i + 1] - sigma;
        for (int64_t k = 0; k < n; k++) {
            float d = (x[k] - r->den[k]) / sigma;
            x[k] += d * dt;
        }
        if ((rc = step_done(r, i, x, r->den)) < 0)
            return rc;
    }
    return 0;
}

/* Heun: an Euler predictor, then the average of both slopes (plain Euler onto sigma 0). */
static int sample_heun(struct run *r, float *x) {
    const int64_t n = r->n;
    for (int i = 0; i < r->steps; i++) {
        float s0 = r->sigmas[i], s1 = r->sigmas[i + 1];
        int rc = eval(r, x, s0, r->den, i);
        if (rc < 0)
            return rc;
        float dt = s1 - s0;
        for (int64_t k = 0; k < n; k++)
            r->d[k] = (x[k] - r->den[k]) / s0;
        if (s1 == 0) {
            for (int64_t k = 0; k < n; k++)
                x[k] += r->d[k] * dt;
        } else {
            for (int64_t k = 0; k < n; k++)
                r->x2[k] = x[k] + r->d[k] * dt;
            if ((rc = eval(r, r->x2, s1, r->den2, i)) < 0)
                return rc;
            for (int64_t k = 0; k < n; k++) {
                float d2 = (r->x2[k] - r->den2[k]) / s1;
                float dm = (r->d[k] + d2) / 2.0f;
                x[k] += dm * dt;
            }
        }
        if ((rc = step_done(r, i, x, r->den)) < 0)
            return rc;
    }
    return 0;
}

/* DPM-Solver-2: the slope at the log-sigma midpoint carries the whole step. */
static int sample_dpm2(struct run *r, float *x) {
    const int64_t n = r->n;
    for (int i = 0; i < r->steps; i++) {
        float s0 = r->sigmas[i], s1 = r->sigmas[i + 1];
        int rc = eval(r, x, s0, r->den, i);
        if (rc < 0)
            return rc;
        for (int64_t k = 0; k < n; k++)
            r->d[k] = (x[k] - r->den[k]) / s0;
        if (s1 == 0) {
            float dt = s1 - s0;
            for (int64_t k = 0; k < n; k++)
                x[k] += r->d[k] * dt;
        } else {
            float mid = (float)exp(0.5f * (log(s0) + log(s1)));
            float dt1 = mid - s0, dt2 = s1 - s0;
            for (int64_t k = 0; k < n; k++)
                r->x2[k] = x[k] + r->d[k] * dt1;
            if ((rc = eval(r, r->x2, mid, r->den2, i)) < 0)
                return rc;
            for (int64_t k = 0; k < n; k++)
                x[k] += ((r->x2[k] - r->den2[k]) / mid) * dt2;
        }
        if ((rc = step_done(r, i, x, r->den)) < 0)
            return rc;
    }
    return 0;
}

/* sigma <-> t = -log sigma, as the peer's lambdas (double libm, float results). */
static float t_of(float sigma) { return (float)-log(sigma); }
static float sigma_of(float t) { return (float)exp(-t); }

/* DPM-Solver++(2S) ancestral: a second-order step to sigma_down through the midpoint in t, then
 * sigma_up of noise (drawn on every step that does not end at 0, even when sigma_up is 0). */
static int sample_dpmpp2s_a(struct run *r, float *x, float eta) {
    const int64_t n = r->n;
    for (int i = 0; i < r->steps; i++) {
        float s0 = r->sigmas[i], s1 = r->sigmas[i + 1];
        int rc = eval(r, x, s0, r->den, i);
        if (rc < 0)
            return rc;
        float down, up;
        ancestral_step(s0, s1, eta, &down, &up);
        if (down == 0) {
            memcpy(x, r->den, sizeof(float) * (size_t)n);
        } else {
            float t = t_of(s0), t_next = t_of(down);
            float h = t_next - t;
            float s = t + 0.5f * h;
            float sigma_s = sigma_of(s);
            float a1 = sigma_s / sigma_of(t);
            float b1 = (float)(exp(-h * 0.5f) - 1);
            for (int64_t k = 0; k < n; k++)
                r->x2[k] = x[k] * a1 - r->den[k] * b1;
            if ((rc = eval(r, r->x2, sigma_s, r->den2, i)) < 0)
                return rc;
            float a2 = sigma_of(t_next) / sigma_of(t);
            float b2 = (float)(exp(-h) - 1);
            for (int64_t k = 0; k < n; k++)
                x[k] = x[k] * a2 - r->den2[k] * b2;
        }
        if (s1 > 0)
            add_noise(r, x, up);
        if ((rc = step_done(r, i, x, r->den)) < 0)
            return rc;
    }
    return 0;
}

/* DPM-Solver++(2M) (v2: the step ratio taken as max/min with the mean step in the exponent):
 * a linear multistep correction from the previous step's denoised. */
static int sample_dpmpp2m(struct run *r, float *x, bool v2) {
    const int64_t n = r->n;
    float *old = r->den2;
    for (int i = 0; i < r->steps; i++) {
        float s0 = r->sigmas[i], s1 = r->sigmas[i + 1];
        int rc = eval(r, x, s0, r->den, i);
        if (rc < 0)
            return rc;
        float t = t_of(s0), t_next = t_of(s1);
        float h = t_next - t;
        float a = s1 / s0;
        if (i == 0 || s1 == 0) {
            float b = (float)(exp(-h) - 1.f);
            for (int64_t k = 0; k < n; k++)
                x[k] = x[k] * a - r->den[k] * b;
        } else {
            float h_last = t - t_of(r->sigmas[i - 1]);
            float rr, b;
            if (v2) {
                float h_min = h_last < h ? h_last : h, h_max = h_last < h ? h : h_last;
                rr = h_max / h_min;
                b = (float)(exp(-((h_max + h_min) / 2.f)) - 1.f);
            } else {
                rr = h_last / h;
                b = (float)(exp(-h) - 1.f);
            }
            float c1 = 1.f + 1.f / (2.f * rr), c2 = 1.f / (2.f * rr);
            for (int64_t k = 0; k < n; k++) {
                float dd = r->den[k] * c1 - old[k] * c2;
                x[k] = x[k] * a - dd * b;
            }
        }
        memcpy(old, r->den, sizeof(float) * (size_t)n);
        if ((rc = step_done(r, i, x, r->den)) < 0)
            return rc;
    }
    return 0;
}

/* DPM-Solver++(2M) SDE, midpoint variant. Its noise: plain randn from the run's generator
 * (bt false: the peer's dpm++2m_sde; k-diffusion's default is a Brownian tree instead), or the
 * Brownian tree's increments (bt true: dpm++2m_sde_bt; tree NULL when the schedule spans no
 * interval, then no noise). */
static int dpmpp2m_sde_run(struct run *r, float *x, float eta, bool bt,
                           struct mx_sd_brownian *tree) {
    const int64_t n = r->n;
    float *old = r->den2;
    bool have_old = false;
    float h_last = 0.f;
    for (int i = 0; i < r->steps; i++) {
        float s0 = r->sigmas[i], s1 = r->sigmas[i + 1];
        int rc = eval(r, x, s0, r->den, i);
        if (rc < 0)
            return rc;
        if (s1 == 0.f) {
            memcpy(x, r->den, sizeof(float) * (size_t)n);
        } else {
            float t = -logf(s0), s = -logf(s1);
            float h = s - t;
            float eta_h = eta * h;
            float a = s1 / s0 * expf(-eta_h);
            float b = -expm1f(-h - eta_h);
            for (int64_t k = 0; k < n; k++)
                x[k] = x[k] * a + r->den[k] * b;
            if (have_old) {
                float c = 0.5f * b / (h_last / h);
                for (int64_t k = 0; k < n; k++)
                    x[k] += (r->den[k] - old[k]) * c;
            }
            float scale = s1 * sqrtf(-expm1f(-2.f * eta_h));
            if (eta > 0.f && !bt) {
                add_noise(r, x, scale);
            } else if (eta > 0.f && tree) {
                mx_sd_brownian_noise(tree, s0, s1, r->noise);
                for (int64_t k = 0; k < n; k++)
                    x[k] += r->noise[k] * scale;
            }
            h_last = h;
        }
        memcpy(old, r->den, sizeof(float) * (size_t)n);
        have_old = true;
        if ((rc = step_done(r, i, x, r->den)) < 0)
            return rc;
    }
    return 0;
}

static int sample_dpmpp2m_sde(struct run *r, float *x, float eta) {
    return dpmpp2m_sde_run(r, x, eta, false, NULL);
}

/* iPNDM (v: variable step sizes in the second-order term): Adams-Bashforth on the derivative
 * history, up to 4th order. */
static int sample_ipndm(struct run *r, float *x, bool variable) {
    const int64_t n = r->n;
    r->n_hist = 0;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_next = r->sigmas[i + 1];
        int rc = eval(r, x, sigma, r->den, i);
        if (rc < 0)
            return rc;
        float *d = r->d;
        for (int64_t k = 0; k < n; k++)
            d[k] = (x[k] - r->den[k]) / sigma;
        int order = i + 1 < 4 ? i + 1 : 4;
        float dt = sigma_next - sigma;
        float *h1 = r->n_hist >= 1 ? r->hist[r->n_hist - 1] : NULL;
        float *h2 = r->n_hist >= 2 ? r->hist[r->n_hist - 2] : NULL;
        float *h3 = r->n_hist >= 3 ? r->hist[r->n_hist - 3] : NULL;
        if (order == 1) {
            for (int64_t k = 0; k < n; k++)
                x[k] += d[k] * dt;
        } else if (order == 2 && variable) {
            float h_n_1 = sigma - r->sigmas[i - 1];
            float q = dt / h_n_1, c = 2.f + q;
            for (int64_t k = 0; k < n; k++)
                x[k] += ((d[k] * c - h1[k] * q) / 2.f) * dt;
        } else if (order == 2) {
            for (int64_t k = 0; k < n; k++)
                x[k] += ((d[k] * 3.f - h1[k]) / 2.f) * dt;
        } else if (order == 3) {
            for (int64_t k = 0; k < n; k++)
                x[k] += ((d[k] * 23.f - h1[k] * 16.f + h2[k] * 5.f) / 12.f) * dt;
        } else {
            for (int64_t k = 0; k < n; k++)
                x[k] += ((d[k] * 55.f - h1[k] * 59.f + h2[k] * 37.f - h3[k] * 9.f) / 24.f) * dt;
        }
        /* push d: the oldest buffer is recycled when three are kept */
        if (r->n_hist == 3) {
            float *oldest = r->hist[0];
            r->hist[0] = r->hist[1];
            r->hist[1] = r->hist[2];
            r->hist[2] = oldest;
            r->n_hist = 2;
        }
        memcpy(r->hist[r->n_hist++], d, sizeof(float) * (size_t)n);
        if ((rc = step_done(r, i, x, r->den)) < 0)
            return rc;
    }
    return 0;
}

/* LCM: jump to the denoised estimate, then renoise to the next sigma. */
static int sample_lcm(struct run *r, float *x) {
    for (int i = 0; i < r->steps; i++) {
        float s1 = r->sigmas[i + 1];
        int rc = eval(r, x, r->sigmas[i], r->den, i);
        if (rc < 0)
            return rc;
        memcpy(x, r->den, sizeof(float) * (size_t)r->n);
        if (s1 > 0)
            add_noise(r, x, s1 * 1.0f);
        if ((rc = step_done(r, i, x, r->den)) < 0)
            return rc;
    }
    return 0;
}

/* TCD (Zheng et al. 2024): DDIM to the intermediate timestep s = floor((1 - eta) t_prev), then
 * forward-noised to the next sigma when eta > 0. Uses SD's scaled-linear training schedule in
 * double, as the peer does, whatever the model's own. */
static int sample_tcd(struct run *r, float *x, float eta) {
    const int64_t n = r->n;
    double ac[MX_SD_TRAIN_STEPS], cs[MX_SD_TRAIN_STEPS]; /* alphas_cumprod, their sigmas */
    const float beta_start = 0.00085f, beta_end = 0.0120f;
    for (int i = 0; i < MX_SD_TRAIN_STEPS; i++) {
        float b = sqrtf(beta_start) +
                  (sqrtf(beta_end) - sqrtf(beta_start)) * ((float)i / (MX_SD_TRAIN_STEPS - 1));
        ac[i] = (i == 0 ? 1.0 : ac[i - 1]) * (1.0f - pow((double)b, 2));
        cs[i] = sqrt((1 - ac[i]) / ac[i]);
    }
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i], sigma_to = r->sigmas[i + 1];
        /* the training timestep nearest sigma_to (lower_bound, then the closer neighbour) */
        int lo = 0, hi = MX_SD_TRAIN_STEPS;
        while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (cs[mid] < (double)sigma_to)
                lo = mid + 1;
            else
                hi = mid;
        }
        int prev_t;
        if (lo == 0)
            prev_t = 0;
        else if (lo == MX_SD_TRAIN_STEPS)
            prev_t = MX_SD_TRAIN_STEPS - 1;
        else
            prev_t = fabs(cs[lo] - sigma_to) < fabs(cs[lo - 1] - sigma_to) ? lo : lo - 1;
        int ts = (int)floor((1 - eta) * (float)prev_t);
        if (ts < 0)
            ts = 0;
        if (ts > MX_SD_TRAIN_STEPS - 1)
            ts = MX_SD_TRAIN_STEPS - 1;
        int rc = eval(r, x, sigma, r->den, i);
        if (rc < 0)
            return rc;
        float ap_prev = 1.0f / (sigma_to * sigma_to + 1.0f);
        float ap_s = (float)ac[ts];
        float bp_s = 1.0f - ap_s;
        float c_den = sqrtf(ap_s / ap_prev), c_d = sqrtf(bp_s / ap_prev);
        for (int64_t k = 0; k < n; k++) {
            float d = (x[k] - r->den[k]) / sigma;
            x[k] = r->den[k] * c_den + d * c_d;
        }
        if (eta > 0 && sigma_to > 0.0f) {
            float c_x = sqrtf(ap_prev / ap_s), c_n = sqrtf(1.0f / ap_prev - 1.0f / ap_s);
            mx_sd_rng_randn(r->rng, r->noise, n);
            for (int64_t k = 0; k < n; k++)
                x[k] = x[k] * c_x + r->noise[k] * c_n;
        }
        if ((rc = step_done(r, i, x, r->den)) < 0)
            return rc;
    }
    return 0;
}

/* LMS as the peer runs it: k-diffusion's linear multistep (order up to 4, coefficients the
 * integrals of the Lagrange basis over each step, here a 1000-division midpoint sum in float)
 * with its "history shift" of 1, which pairs the older coefficients with newer derivatives
 * (stable-diffusion.cpp PR 1843: fewer steps needed). */
static float lms_coeff(const float *sg, int order, int m, int j) {
    const int divisions = 1000;
    const float a = sg[m], dx = (sg[m + 1] - a) / (float)divisions, s = sg[m - j];
    const float b0 = a + 0.5f * dx;
    float sum = 0.0f;
    for (int h = 0; h < divisions; h++) {
        const float b = (float)h * dx + b0;
        float prod = 1.0f;
        for (int k = 0; k < order; k++) {
            if (k == j)
                continue;
            const float t = sg[m - k];
            prod *= (b - t) / (s - t);
        }
        sum += prod;
    }
    return sum * dx;
}

static int sample_lms(struct run *r, float *x) {
    const int64_t n = r->n;
    const int shift = 1;
    int max_order = r->steps < 4 ? r->steps : 4;
    float coeff[4];
    r->n_hist = 0;
    for (int i = 0; i < r->steps; i++) {
        float sigma = r->sigmas[i];
        int rc = eval(r, x, sigma, r->den, i);
        if (rc < 0)
            return rc;
        int order = i + 1 < max_order ? i + 1 : max_order;
        for (int c = 0; c < order; c++)
            coeff[c] = lms_coeff(r->sigmas, order, i, c);
        float *d = r->d;
        for (int64_t k = 0; k < n; k++) {
            d[k] = (x[k] - r->den[k]) / sigma;
            x[k] += d[k] * coeff[0];
        }
        if (max_order > 1) {
            int h_p1 = r->n_hist + 1;
            if (i) {
                int h_max = r->n_hist - 1;
                for (int c = 2; c <= order; c++) {
                    int idx = h_p1 - c + shift < h_max ? h_p1 - c + shift : h_max;
                    const float *h = r->hist[idx];
                    for (int64_t k = 0; k < n; k++)
                        x[k] += h[k] * coeff[c - 1];
                }
            }
            if (h_p1 == max_order) { /* drop the oldest, recycling its buffer */
                float *oldest = r->hist[0];
                for (int q = 0; q + 1 < r->n_hist; q++)
                    r->hist[q] = r->hist[q + 1];
                r->hist[r->n_hist - 1] = oldest;
                r->n_hist--;
            }
            memcpy(r->hist[r->n_hist++], d, sizeof(float) * (size_t)n);
        }
        if ((rc = step_done(r, i, x, r->den)) < 0)
            return rc;
    }
    return 0;
}

/* ---- the Brownian tree -------------------------------------------------------------------- */

#define BT_MAX_DEPTH 24 /* bisection levels: intervals down to (t_max - t_min) / 2^24 */

/* splitmix64's finaliser on v + salt: the seed of a child node / a derived generator. */
static uint64_t mix64(uint64_t v, uint64_t salt) {
    uint64_t z = v + salt;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

int mx_sd_brownian_init(struct mx_sd_brownian *b, int64_t n, double sigma_min, double sigma_max,
                        uint64_t seed, struct mx_err *err) {
    memset(b, 0, sizeof *b);
    if (n < 1 || !(sigma_min < sigma_max))
        return mx_err_set(err, MX_EINVAL, "brownian tree: bad range [%g, %g] or size %lld",
                          sigma_min, sigma_max, (long long)n);
    size_t bytes;
    if (!mx_mul_size((size_t)n, 7 * sizeof(float), &bytes))
        return mx_err_set(err, MX_ENOMEM, "brownian tree: %lld values overflow", (long long)n);
    float *mem = malloc(bytes);
    if (!mem)
        return mx_err_set(err, MX_ENOMEM, "brownian tree: no memory for %zu bytes", bytes);
    b->n = n;
    b->t_min = sigma_min;
    b->t_max = sigma_max;
    b->root_seed = mix64(seed, 0x9E3779B97F4A7C15ull);
    b->w_max = mem;
    b->buf = mem + n;
    for (int i = 0; i < 3; i++)
        b->w[i] = mem + (4 + i) * n;
    struct mx_sd_rng rng;
    mx_sd_rng_init(&rng, MX_SD_RNG_STD_DEFAULT, mix64(seed, 0xBF58476D1CE4E5B9ull));
    mx_sd_rng_randn(&rng, b->w_max, n);
    float scale = sqrtf((float)(sigma_max - sigma_min));
    for (int64_t k = 0; k < n; k++)
        b->w_max[k] *= scale;
    return 0;
}

void mx_sd_brownian_deinit(struct mx_sd_brownian *b) {
    if (!b)
        return;
    free(b->w_max);
    memset(b, 0, sizeof *b);
}

/* W(t) into out: bisect [t_min, t_max] towards t, each midpoint drawn from the Brownian bridge
 * between the current ends with a generator seeded by the node; linear interpolation at the
 * bottom. Uses buf[0..3n) (out must not be one of those). */
static void brownian_bisect(struct mx_sd_brownian *b, double t, float *out) {
    const int64_t n = b->n;
    float *wa = b->buf, *wc = b->buf + n, *wm = b->buf + 2 * n;
    double a = b->t_min, c = b->t_max;
    uint64_t seed = b->root_seed;
    memset(wa, 0, sizeof(float) * (size_t)n);
    memcpy(wc, b->w_max, sizeof(float) * (size_t)n);
    for (int depth = BT_MAX_DEPTH;; depth--) {
        if (depth <= 0 || c - a < 1e-9) {
            float alpha = c > a ? (float)((t - a) / (c - a)) : 0.5f;
            for (int64_t k = 0; k < n; k++)
                out[k] = wa[k] * (1.0f - alpha) + wc[k] * alpha;
            return;
        }
        double m = 0.5 * (a + c);
        float sd = (float)sqrt((c - m) * (m - a) / (c - a));
        struct mx_sd_rng rng;
        mx_sd_rng_init(&rng, MX_SD_RNG_STD_DEFAULT, seed);
        mx_sd_rng_randn(&rng, wm, n);
        for (int64_t k = 0; k < n; k++)
            wm[k] = (wa[k] + wc[k]) * 0.5f + wm[k] * sd;
        if (t == m) {
            memcpy(out, wm, sizeof(float) * (size_t)n);
            return;
        }
        float *tmp = wm;
        if (t < m) { /* descend left: the midpoint becomes the right end */
            c = m;
            wm = wc;
            wc = tmp;
            seed = mix64(seed, 1);
        } else {
            a = m;
            wm = wa;
            wa = tmp;
            seed = mix64(seed, 2);
        }
    }
}

/* W(t) from the cache of the last three levels, or bisected into the least recently used slot
 * (never the one just returned, so two calls in a row give two valid arrays). Borrowed until
 * the second call after. Bit-identical either way: W(t) depends only on (seed, t). */
static const float *brownian_w(struct mx_sd_brownian *b, double t) {
    int slot = 0;
    b->clock++;
    for (int i = 0; i < 3; i++) {
        if (b->w_used[i] && b->w_t[i] == t) {
            b->w_used[i] = b->clock;
            return b->w[i];
        }
        if (b->w_used[i] < b->w_used[slot])
            slot = i;
    }
    brownian_bisect(b, t, b->w[slot]);
    b->w_t[slot] = t;
    b->w_used[slot] = b->clock;
    return b->w[slot];
}

void mx_sd_brownian_noise(struct mx_sd_brownian *b, double sigma_a, double sigma_b, float *out) {
    double lo = sigma_a < sigma_b ? sigma_a : sigma_b, hi = sigma_a < sigma_b ? sigma_b : sigma_a;
    lo = lo < b->t_min ? b->t_min : lo > b->t_max ? b->t_max : lo;
    hi = hi < b->t_min ? b->t_min : hi > b->t_max ? b->t_max : hi;
    const float *w_hi = brownian_w(b, hi);
    const float *w_lo = brownian_w(b, lo);
    double span = fabs(sigma_b - sigma_a);
    float c = 1.0f / sqrtf((float)(span > 1e-12 ? span : 1e-12));
    for (int64_t k = 0; k < b->n; k++)
        out[k] = (w_hi[k] - w_lo[k]) * c;
}

/* The Brownian tree over the run's positive sigma range, seeded by the bit pattern of one
 * randn(2) from the run's generator (drawn here, first). *have is false, and nothing drawn,
 * when there is a single positive sigma (no step then needs noise). */
static int make_tree(struct run *r, struct mx_sd_brownian *tree, bool *have) {
    double smax = 0.0, smin = INFINITY;
    for (int i = 0; i <= r->steps; i++)
        if (r->sigmas[i] > 0.0f) {
            smax = fmax(smax, r->sigmas[i]);
            smin = fmin(smin, r->sigmas[i]);
        }
    *have = smax > smin;
    if (!*have)
        return 0;
    float draw[2];
    uint64_t seed;
    mx_sd_rng_randn(r->rng, draw, 2);
    memcpy(&seed, draw, sizeof seed); /* little-endian: draw[0] is the low half */
    return mx_sd_brownian_init(tree, r->n, smin, smax, seed, r->err);
}

/* k-diffusion's sample_dpmpp_sde (r = 1/2): an ancestral DPM-Solver++ half step to the
 * log-sigma midpoint, a second evaluation there, then the full step from the blend of both
 * estimates, each half with Brownian noise of its interval. Computed in float with the
 * k-diffusion order of operations (no peer to match). */
static int sample_dpmpp_sde(struct run *r, float *x, float eta) {
    const int64_t n = r->n;
    struct mx_sd_brownian tree = {0};
    bool have_tree;
    int rc = make_tree(r, &tree, &have_tree);
    if (rc < 0)
        return rc;
    for (int i = 0; i < r->steps; i++) {
        float s0 = r->sigmas[i], s1 = r->sigmas[i + 1];
        if ((rc = eval(r, x, s0, r->den, i)) < 0)
            break;
        if (s1 == 0.f) {
            float dt = s1 - s0;
            for (int64_t k = 0; k < n; k++)
                x[k] += (x[k] - r->den[k]) / s0 * dt;
        } else {
            float t = -logf(s0), t_next = -logf(s1);
            float h = t_next - t, t_mid = t + h * 0.5f;
            float sig_mid = expf(-t_mid);
            /* step 1: to the midpoint, sigma_down plus sigma_up of noise */
            float down, up;
            ancestral_step(s0, sig_mid, eta, &down, &up);
            float t_d = -logf(down);
            float a1 = expf(-t_d) / s0, b1 = expm1f(t - t_d);
            for (int64_t k = 0; k < n; k++)
                r->x2[k] = x[k] * a1 - r->den[k] * b1;
            if (have_tree && up > 0.f) {
                mx_sd_brownian_noise(&tree, s0, sig_mid, r->noise);
                for (int64_t k = 0; k < n; k++)
                    r->x2[k] += r->noise[k] * up;
            }
            if ((rc = eval(r, r->x2, sig_mid, r->den2, i)) < 0)
                break;
            /* step 2: the whole step from (den + den2) / 2 */
            ancestral_step(s0, s1, eta, &down, &up);
            t_d = -logf(down);
            float a2 = expf(-t_d) / s0, b2 = expm1f(t - t_d);
            for (int64_t k = 0; k < n; k++) {
                float dd = r->den[k] * 0.5f + r->den2[k] * 0.5f;
                x[k] = x[k] * a2 - dd * b2;
            }
            if (have_tree && up > 0.f) {
                mx_sd_brownian_noise(&tree, s0, s1, r->noise);
                for (int64_t k = 0; k < n; k++)
                    x[k] += r->noise[k] * up;
            }
        }
        if ((rc = step_done(r, i, x, r->den)) < 0)
            break;
    }
    mx_sd_brownian_deinit(&tree);
    return rc;
}

/* DPM-Solver++(2M) SDE with Brownian-tree noise over the run's positive sigma range; the tree's
 * seed is the bit pattern of one randn(2) from the run's generator, drawn first. With a single
 * positive sigma no noise is ever needed and no tree is made (the peer then returns x
 * unsampled, which this does not copy). */
static int sample_dpmpp2m_sde_bt(struct run *r, float *x, float eta) {
    struct mx_sd_brownian tree = {0};
    bool have_tree;
    int rc = make_tree(r, &tree, &have_tree);
    if (rc < 0)
        return rc;
    rc = dpmpp2m_sde_run(r, x, eta, true, have_tree ? &tree : NULL);
    mx_sd_brownian_deinit(&tree);
    return rc;
}

/* ---- the entry point ---------------------------------------------------------------------- */

float mx_sd_sampler_default_eta(int s) {
    switch (s) {
    case MX_SD_SAMPLER_EULER_A:
    case MX_SD_SAMPLER_DPMPP2S_A:
    case MX_SD_SAMPLER_DPMPP2M_SDE:
    case MX_SD_SAMPLER_DPMPP2M_SDE_BT:
    case MX_SD_SAMPLER_DPMPP_SDE:
        return 1.0f;
    default:
        return 0.0f;
    }
}

int mx_sd_sampler_evals(int s, int steps) {
    if (steps < 1)
        return 0;
    switch (s) {
    case MX_SD_SAMPLER_HEUN:
    case MX_SD_SAMPLER_DPM2:
    case MX_SD_SAMPLER_DPMPP2S_A:
    case MX_SD_SAMPLER_DPMPP_SDE:
        return 2 * steps - 1;
    default:
        return steps;
    }
}

/* Whether sampler s with this eta draws noise. */
static bool needs_rng(int s, float eta) {
    switch (s) {
    case MX_SD_SAMPLER_EULER_A:
    case MX_SD_SAMPLER_DDIM_TRAILING:
    case MX_SD_SAMPLER_TCD:
    case MX_SD_SAMPLER_DPMPP2M_SDE:
        return eta > 0.f;
    case MX_SD_SAMPLER_DPMPP2S_A:
    case MX_SD_SAMPLER_LCM:
    case MX_SD_SAMPLER_DPMPP2M_SDE_BT: /* the tree's seed is drawn whatever eta */
    case MX_SD_SAMPLER_DPMPP_SDE:
        return true;
    default:
        return false;
    }
}

int mx_sd_sample(int s, float eta, float *x, int64_t n, const float *sigmas, int steps,
                 struct mx_sd_rng *rng, mx_sd_denoise_fn denoise, mx_sd_step_fn step_fn,
                 void *ud, struct mx_err *err) {
    if (s < 0 || s >= MX_SD_SAMPLER_COUNT)
        return mx_err_set(err, MX_EINVAL, "sampler %d: unknown (valid: %s)", s,
                          mx_sd_sampler_names());
    if (steps < 1 || n < 1 || !x || !sigmas || !denoise)
        return mx_err_set(err, MX_EINVAL, "%s: bad arguments (%d steps, %lld values)",
                          mx_sd_sampler_name(s), steps, (long long)n);
    for (int i = 0; i < steps; i++)
        if (!(sigmas[i] > 0.0f) || !(sigmas[i + 1] >= 0.0f))
            return mx_err_set(err, MX_EINVAL, "%s: sigma %d is %g (must be > 0 before the last)",
                              mx_sd_sampler_name(s), sigmas[i] > 0.0f ? i + 1 : i,
                              (double)(sigmas[i] > 0.0f ? sigmas[i + 1] : sigmas[i]));
    if (!(eta >= 0.0f) || isinf(eta))
        eta = mx_sd_sampler_default_eta(s);
    if (needs_rng(s, eta) && !rng)
        return mx_err_set(err, MX_EINVAL, "%s: needs a noise generator (eta %g)",
                          mx_sd_sampler_name(s), (double)eta);

    /* scratch: den, den2, x2, d, noise, 3 history slots (ipndm and lms only) */
    int n_buf = s == MX_SD_SAMPLER_IPNDM || s == MX_SD_SAMPLER_IPNDM_V || s == MX_SD_SAMPLER_LMS
                    ? 8
                    : 5;
    size_t bytes;
    if (!mx_mul_size((size_t)n, sizeof(float) * (size_t)n_buf, &bytes))
        return mx_err_set(err, MX_ENOMEM, "%s: %lld latent values overflow",
                          mx_sd_sampler_name(s), (long long)n);
    float *buf = malloc(bytes);
    if (!buf)
        return mx_err_set(err, MX_ENOMEM, "%s: no memory for %zu bytes of scratch",
                          mx_sd_sampler_name(s), bytes);
    struct run r = {
        .name = mx_sd_sampler_name(s), .n = n, .steps = steps, .sigmas = sigmas, .rng = rng,
        .denoise = denoise, .step_fn = step_fn, .ud = ud, .err = err,
        .den = buf, .den2 = buf + n, .x2 = buf + 2 * n, .d = buf + 3 * n, .noise = buf + 4 * n,
    };
    if (n_buf == 8)
        for (int k = 0; k < 3; k++)
            r.hist[k] = buf + (5 + k) * n;

    int rc;
    switch (s) {
    case MX_SD_SAMPLER_EULER:
        rc = sample_euler(&r, x);
        break;
    case MX_SD_SAMPLER_EULER_A:
    case MX_SD_SAMPLER_DDIM_TRAILING:
        rc = sample_euler_a(&r, x, eta);
        break;
    case MX_SD_SAMPLER_HEUN:
        rc = sample_heun(&r, x);
        break;
    case MX_SD_SAMPLER_DPM2:
        rc = sample_dpm2(&r, x);
        break;
    case MX_SD_SAMPLER_DPMPP2S_A:
        rc = sample_dpmpp2s_a(&r, x, eta);
        break;
    case MX_SD_SAMPLER_DPMPP2M:
        rc = sample_dpmpp2m(&r, x, false);
        break;
    case MX_SD_SAMPLER_DPMPP2MV2:
        rc = sample_dpmpp2m(&r, x, true);
        break;
    case MX_SD_SAMPLER_DPMPP2M_SDE:
        rc = sample_dpmpp2m_sde(&r, x, eta);
        break;
    case MX_SD_SAMPLER_IPNDM:
        rc = sample_ipndm(&r, x, false);
        break;
    case MX_SD_SAMPLER_IPNDM_V:
        rc = sample_ipndm(&r, x, true);
        break;
    case MX_SD_SAMPLER_LCM:
        rc = sample_lcm(&r, x);
        break;
    case MX_SD_SAMPLER_LMS:
        rc = sample_lms(&r, x);
        break;
    case MX_SD_SAMPLER_DPMPP2M_SDE_BT:
        rc = sample_dpmpp2m_sde_bt(&r, x, eta);
        break;
    case MX_SD_SAMPLER_DPMPP_SDE:
        rc = sample_dpmpp_sde(&r, x, eta);
        break;
    default: /* MX_SD_SAMPLER_TCD */
        rc = sample_tcd(&r, x, eta);
        break;
    }
    free(buf);
    return rc;
}

/* ---- names -------------------------------------------------------------------------------- */

/* Each sampler's sd.cpp name, A1111 display name and A1111's old API alias, in enum order. */
static const struct {
    const char *name;
    const char *a1111;
    const char *alias;
} sampler_names[MX_SD_SAMPLER_COUNT] = {
    [MX_SD_SAMPLER_EULER] = {"euler", "Euler", "k_euler"},
    [MX_SD_SAMPLER_EULER_A] = {"euler_a", "Euler a", "k_euler_a"},
    [MX_SD_SAMPLER_HEUN] = {"heun", "Heun", "k_heun"},
    [MX_SD_SAMPLER_DPM2] = {"dpm2", "DPM2", "k_dpm_2"},
    [MX_SD_SAMPLER_DPMPP2S_A] = {"dpm++2s_a", "DPM++ 2S a", "k_dpmpp_2s_a"},
    [MX_SD_SAMPLER_DPMPP2M] = {"dpm++2m", "DPM++ 2M", "k_dpmpp_2m"},
    [MX_SD_SAMPLER_DPMPP2MV2] = {"dpm++2mv2", "DPM++ 2M v2", NULL},
    [MX_SD_SAMPLER_DPMPP2M_SDE] = {"dpm++2m_sde", "DPM++ 2M SDE", "k_dpmpp_2m_sde"},
    [MX_SD_SAMPLER_IPNDM] = {"ipndm", "iPNDM", NULL},
    [MX_SD_SAMPLER_IPNDM_V] = {"ipndm_v", "iPNDM v", NULL},
    [MX_SD_SAMPLER_LCM] = {"lcm", "LCM", "k_lcm"},
    [MX_SD_SAMPLER_DDIM_TRAILING] = {"ddim_trailing", "DDIM", "ddim"},
    [MX_SD_SAMPLER_TCD] = {"tcd", "TCD", NULL},
    [MX_SD_SAMPLER_LMS] = {"lms", "LMS", "k_lms"},
    [MX_SD_SAMPLER_DPMPP2M_SDE_BT] = {"dpm++2m_sde_bt", "DPM++ 2M SDE BT", NULL},
    [MX_SD_SAMPLER_DPMPP_SDE] = {"dpm++sde", "DPM++ SDE", "k_dpmpp_sde"},
};

const char *mx_sd_sampler_name(int s) {
    return s >= 0 && s < MX_SD_SAMPLER_COUNT ? sampler_names[s].name : "unknown";
}

const char *mx_sd_sampler_a1111_name(int s) {
    return s >= 0 && s < MX_SD_SAMPLER_COUNT ? sampler_names[s].a1111 : "unknown";
}

const char *mx_sd_sampler_names(void) {
    return "euler, euler_a, heun, dpm2, dpm++2s_a, dpm++2m, dpm++2mv2, dpm++2m_sde, ipndm, "
           "ipndm_v, lcm, ddim_trailing, tcd, lms, dpm++2m_sde_bt, dpm++sde";
}

/* A sampler by exact name (any of its three spellings, case-insensitive), or -1. */
static int find_sampler(const char *name, size_t len) {
    for (int s = 0; s < MX_SD_SAMPLER_COUNT; s++) {
        const char *cand[3] = {sampler_names[s].name, sampler_names[s].a1111,
                               sampler_names[s].alias};
        for (int c = 0; c < 3; c++)
            if (cand[c] && strlen(cand[c]) == len && strncasecmp(name, cand[c], len) == 0)
                return s;
    }
    return -1;
}

int mx_sd_sampler_parse(const char *name, int *sampler, int *schedule, struct mx_err *err) {
    if (name) {
        /* trim surrounding blanks (pasted parameters often carry them) */
        while (isspace((unsigned char)*name))
            name++;
        size_t len = strlen(name);
        while (len > 0 && isspace((unsigned char)name[len - 1]))
            len--;
        int s = find_sampler(name, len);
        if (s >= 0) {
            *sampler = s;
            *schedule = -1;
            return 0;
        }
        /* A1111 before 1.9: "<sampler> <Schedule>", e.g. "DPM++ 2M Karras" */
        for (int sc = 0; sc < MX_SD_SCHED_COUNT; sc++) {
            const char *sn = mx_sd_schedule_a1111_name(sc);
            size_t sl = strlen(sn);
            if (len > sl + 1 && name[len - sl - 1] == ' ' &&
                strncasecmp(name + len - sl, sn, sl) == 0) {
                size_t pl = len - sl - 1;
                while (pl > 0 && name[pl - 1] == ' ')
                    pl--;
                if ((s = find_sampler(name, pl)) >= 0) {
                    *sampler = s;
                    *schedule = sc;
                    return 0;
                }
            }
        }
    }
    return mx_err_set(err, MX_EINVAL, "sampler '%s': unknown (valid: %s)",
                      name ? name : "(null)", mx_sd_sampler_names());
}
