/* schedule.c - the model's sigma table, sigma <-> t, and the sigma lists samplers walk (see
 * schedule.h).
 *
 * Each schedule repeats stable-diffusion.cpp's float arithmetic in its order: its lists are
 * compared with the peer's to 1e-6 relative in tests/test_sd_sampler.c, and the timesteps the
 * UNet gets must be equal. Where the peer calls C's unqualified pow() on floats it resolves to
 * the double function (see rng.c), so those spots compute in double and round once.
 *
 * Ref: stable-diffusion.cpp src/runtime/denoiser.hpp (CompVisDenoiser, *Scheduler) and
 * src/stable-diffusion.cpp (the table, the default schedule per sampler) at 97d2990.
 */
#include "core/diffusion/schedule.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "core/diffusion/sampler.h"

#define T_MAX (MX_SD_TRAIN_STEPS - 1) /* the last training timestep, 999 */

void mx_sd_sigma_table_init(struct mx_sd_sigma_table *tab, const float *alphas_cumprod) {
    for (int i = 0; i < MX_SD_TRAIN_STEPS; i++) {
        float ac = alphas_cumprod[i];
        tab->sigmas[i] = sqrtf((1 - ac) / ac);
        tab->log_sigmas[i] = logf(tab->sigmas[i]);
    }
}

float mx_sd_sigma_min(const struct mx_sd_sigma_table *tab) { return tab->sigmas[0]; }

float mx_sd_sigma_max(const struct mx_sd_sigma_table *tab) { return tab->sigmas[T_MAX]; }

float mx_sd_t_to_sigma(const struct mx_sd_sigma_table *tab, float t) {
    if (!(t >= 0.0f)) /* also NaN */
        t = 0.0f;
    if (t > (float)T_MAX)
        t = (float)T_MAX;
    int lo = (int)floorf(t);
    int hi = (int)ceilf(t);
    float w = t - (float)lo;
    float log_sigma = (1.0f - w) * tab->log_sigmas[lo] + w * tab->log_sigmas[hi];
    return expf(log_sigma);
}

float mx_sd_sigma_to_t(const struct mx_sd_sigma_table *tab, float sigma) {
    if (!(sigma > 0.0f))
        return 0.0f;
    float log_sigma = logf(sigma);
    /* lo: the last table entry at or below log_sigma (the peer counts dists >= 0) */
    int lo = 0;
    for (int i = 0; i < MX_SD_TRAIN_STEPS; i++)
        if (log_sigma - tab->log_sigmas[i] >= 0)
            lo++;
    lo -= 1;
    if (lo < 0)
        lo = 0;
    if (lo > T_MAX - 1)
        lo = T_MAX - 1;
    int hi = lo + 1;
    float low = tab->log_sigmas[lo];
    float high = tab->log_sigmas[hi];
    float w = (low - log_sigma) / (low - high);
    w = w < 0.f ? 0.f : w > 1.f ? 1.f : w;
    return (1.0f - w) * (float)lo + w * (float)hi;
}

/* ---- schedules ---------------------------------------------------------------------------- */

/* linspace as the peer computes it: by accumulating the float increment. */
static void linear_space(float start, float end, int n, float *out) {
    float inc = (end - start) / (float)(n - 1);
    out[0] = start;
    for (int i = 1; i < n; i++)
        out[i] = out[i - 1] + inc;
}

/* Align Your Steps for SD 1.5 (NVIDIA's published noise levels, 10 steps). */
static const float ays_sd15[11] = {14.6146412293f, 6.4745760956f, 3.8636745985f, 2.6946151520f,
                                   1.8841921177f,  1.3943805092f, 0.9642583904f, 0.6523686016f,
                                   0.3977456272f,  0.1515232662f, 0.0291671582f};

/* The peer's log_linear_interpolation: in[n_in] (descending) resampled to out[n_out] by linear
 * interpolation of log sigma over [0, 1]. */
static void log_linear_interp(const float *in, int n_in, float *out, int n_out) {
    float x[16], y[16], nx[10001];
    linear_space(0.f, 1.f, n_in, x);
    for (int i = 0; i < n_in; i++)
        y[i] = logf(in[n_in - i - 1]); /* ascending */
    linear_space(0.f, 1.f, n_out, nx);
    if (nx[0] < x[0])
        nx[0] = x[0];
    if (nx[n_out - 1] > x[n_in - 1])
        nx[n_out - 1] = x[n_in - 1];
    int j = 0;
    for (int i = 0; i < n_out;) {
        if (j + 1 < n_in - 1 && (x[j] > nx[i] || nx[i] > x[j + 1])) {
            j++;
            continue;
        }
        double perc = (double)(nx[i] - x[j]) / (double)(x[j + 1] - x[j]);
        double ny = (double)y[j] * (1. - perc) + (double)y[j + 1] * perc;
        out[n_out - i - 1] = (float)exp(ny);
        i++;
    }
}

/* ---- Beta(alpha, beta) quantiles (the peer's BetaScheduler: Lentz continued fraction for the
 * regularised incomplete beta, Newton for its inverse) -------------------------------------- */

/* log B(a, b). */
static double log_beta(double a, double b) { return lgamma(a) + lgamma(b) - lgamma(a + b); }

/* The regularised incomplete beta I_x(a, b) by Lentz's continued fraction (for x below the
 * mean; beta_cdf uses the symmetry otherwise). */
static double incbeta(double x, double a, double b) {
    if (x <= 0.0)
        return 0.0;
    if (x >= 1.0)
        return 1.0;
    const double eps = 3.0e-7, tiny = 1e-30;
    double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double c = 1.0, d = 1.0 - qab * x / qap;
    if (fabs(d) < tiny)
        d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 200; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny)
            d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny)
            d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < eps)
            break;
    }
    return exp(a * log(x) + b * log(1.0 - x) - log_beta(a, b)) / a * h;
}

/* The Beta(a, b) distribution function. */
static double beta_cdf(double x, double a, double b) {
    if (x == 0.0)
        return 0.0;
    if (x == 1.0)
        return 1.0;
    if (x < (a + 1.0) / (a + b + 2.0))
        return incbeta(x, a, b);
    return 1.0 - incbeta(1.0 - x, b, a);
}

/* Its inverse at u by 30 Newton steps from 0.5, kept inside (0, 1). */
static double beta_ppf(double u, double a, double b) {
    double x = 0.5;
    for (int i = 0; i < 30; i++) {
        double f = beta_cdf(x, a, b) - u;
        if (fabs(f) < 1e-10)
            break;
        double df = exp((a - 1.0) * log(x) + (b - 1.0) * log(1.0 - x) - log_beta(a, b));
        x -= f / df;
        if (x <= 0.0)
            x = 1e-10;
        if (x >= 1.0)
            x = 1.0 - 1e-10;
    }
    return x;
}

int mx_sd_schedule_sigmas(const struct mx_sd_sigma_table *tab, int s, int steps, float *out,
                          int *n_out, struct mx_err *err) {
    if (steps < 1 || steps > 10000)
        return mx_err_set(err, MX_EINVAL, "schedule: %d steps (valid: 1 to 10000)", steps);
    if (s < 0 || s >= MX_SD_SCHED_COUNT)
        return mx_err_set(err, MX_EINVAL, "schedule %d: unknown (valid: %s)", s,
                          mx_sd_schedule_names());
    const int n = steps;
    float smin = mx_sd_sigma_min(tab), smax = mx_sd_sigma_max(tab);
    int count = n + 1;
    switch (s) {
    case MX_SD_SCHED_DISCRETE:
        if (n == 1) {
            out[0] = mx_sd_t_to_sigma(tab, (float)T_MAX);
        } else {
            float step = (float)T_MAX / (float)(n - 1);
            for (int i = 0; i < n; i++)
                out[i] = mx_sd_t_to_sigma(tab, (float)T_MAX - step * (float)i);
        }
        break;
    case MX_SD_SCHED_KARRAS: {
        const float rho = 7.f;
        if (smin <= 1e-6f)
            smin = 1e-6f;
        float min_inv_rho = (float)pow(smin, 1.f / rho);
        float max_inv_rho = (float)pow(smax, 1.f / rho);
        for (int i = 0; i < n; i++) {
            /* n == 1: the peer divides 0 by 0; k-diffusion's linspace(0, 1, 1) gives sigma_max */
            float ramp = n == 1 ? 0.f : (float)i / ((float)n - 1.f);
            out[i] = (float)pow(max_inv_rho + ramp * (min_inv_rho - max_inv_rho), rho);
        }
        break;
    }
    case MX_SD_SCHED_EXPONENTIAL: {
        float lmin = logf(smin), lmax = logf(smax);
        float step = n == 1 ? 0.f : (lmax - lmin) / (float)(n - 1);
        for (int i = 0; i < n; i++)
            out[i] = expf(lmax - step * (float)i);
        break;
    }
    case MX_SD_SCHED_AYS:
        if (n + 1 == 11)
            memcpy(out, ays_sd15, sizeof ays_sd15);
        else
            log_linear_interp(ays_sd15, 11, out, n + 1);
        break;
    case MX_SD_SCHED_SGM_UNIFORM: {
        /* t = linspace(999, 0, n + 1), the last (0) replaced by sigma 0; reuse out as scratch */
        linear_space((float)T_MAX, 0.f, n + 1, out);
        for (int i = 0; i < n; i++)
            out[i] = mx_sd_t_to_sigma(tab, out[i]);
        break;
    }
    case MX_SD_SCHED_SIMPLE: {
        float step_factor = (float)MX_SD_TRAIN_STEPS / (float)n;
        for (int i = 0; i < n; i++) {
            int idx = MX_SD_TRAIN_STEPS - 1 - (int)((float)i * step_factor);
            out[i] = mx_sd_t_to_sigma(tab, (float)(idx < 0 ? 0 : idx));
        }
        break;
    }
    case MX_SD_SCHED_SMOOTHSTEP:
        if (n == 1) {
            out[0] = mx_sd_t_to_sigma(tab, (float)T_MAX);
        } else {
            for (int i = 0; i < n; i++) {
                float u = 1.f - (float)i / (float)n;
                float sm = u * u * (3.0f - 2.0f * u);
                out[i] = mx_sd_t_to_sigma(tab, roundf(sm * (float)T_MAX));
            }
        }
        break;
    case MX_SD_SCHED_KL_OPTIMAL:
        if (n == 1) {
            out[0] = smax;
        } else {
            if (smin <= 1e-6f)
                smin = 1e-6f;
            float amin = atanf(smin), amax = atanf(smax);
            for (int i = 0; i < n; i++) {
                float t = (float)i / (float)(n - 1);
                out[i] = tanf(t * amin + (1.0f - t) * amax);
            }
        }
        break;
    case MX_SD_SCHED_LCM: {
        const int original_steps = 50, k = MX_SD_TRAIN_STEPS / original_steps;
        for (int i = 0; i < n; i++) {
            int index = (int)(((unsigned)i * (unsigned)original_steps) / (unsigned)n);
            out[i] = mx_sd_t_to_sigma(tab, (float)((original_steps - index) * k - 1));
        }
        break;
    }
    case MX_SD_SCHED_BETA:
        if (n == 1) {
            out[0] = mx_sd_t_to_sigma(tab, (float)T_MAX);
        } else {
            int last_t = -1;
            count = 0;
            for (int i = 0; i < n; i++) {
                double u = 1.0 - (double)i / (double)n;
                int t = (int)lround(beta_ppf(u, 0.6, 0.6) * T_MAX);
                if (t != last_t) {
                    out[count++] = mx_sd_t_to_sigma(tab, (float)t);
                    last_t = t;
                }
            }
            count++; /* the final 0 */
        }
        break;
    }
    out[count - 1] = 0.0f;
    if (n_out)
        *n_out = count;
    else if (count != n + 1)
        return mx_err_set(err, MX_EINVAL,
                          "beta schedule: only %d distinct timesteps for %d steps", count - 1, n);
    return 0;
}

int mx_sd_schedule_default(int sampler) {
    switch (sampler) {
    case MX_SD_SAMPLER_DDIM_TRAILING:
        return MX_SD_SCHED_SIMPLE;
    case MX_SD_SAMPLER_LCM:
    case MX_SD_SAMPLER_TCD:
        return MX_SD_SCHED_LCM;
    default:
        return MX_SD_SCHED_DISCRETE;
    }
}

/* ---- names -------------------------------------------------------------------------------- */

/* sd.cpp name and A1111 "Schedule type" value of each schedule, in enum order. */
static const struct {
    const char *name;
    const char *a1111;
} sched_names[MX_SD_SCHED_COUNT] = {
    [MX_SD_SCHED_DISCRETE] = {"discrete", "Uniform"},
    [MX_SD_SCHED_KARRAS] = {"karras", "Karras"},
    [MX_SD_SCHED_EXPONENTIAL] = {"exponential", "Exponential"},
    [MX_SD_SCHED_AYS] = {"ays", "Align Your Steps"},
    [MX_SD_SCHED_SGM_UNIFORM] = {"sgm_uniform", "SGM Uniform"},
    [MX_SD_SCHED_SIMPLE] = {"simple", "Simple"},
    [MX_SD_SCHED_SMOOTHSTEP] = {"smoothstep", "Smoothstep"},
    [MX_SD_SCHED_KL_OPTIMAL] = {"kl_optimal", "KL Optimal"},
    [MX_SD_SCHED_LCM] = {"lcm", "LCM"},
    [MX_SD_SCHED_BETA] = {"beta", "Beta"},
};

const char *mx_sd_schedule_name(int s) {
    return s >= 0 && s < MX_SD_SCHED_COUNT ? sched_names[s].name : "unknown";
}

const char *mx_sd_schedule_a1111_name(int s) {
    return s >= 0 && s < MX_SD_SCHED_COUNT ? sched_names[s].a1111 : "unknown";
}

const char *mx_sd_schedule_names(void) {
    return "discrete, karras, exponential, ays, sgm_uniform, simple, smoothstep, kl_optimal, "
           "lcm, beta";
}

int mx_sd_schedule_parse(const char *name, int *schedule, struct mx_err *err) {
    if (name) {
        for (int s = 0; s < MX_SD_SCHED_COUNT; s++)
            if (strcasecmp(name, sched_names[s].name) == 0 ||
                strcasecmp(name, sched_names[s].a1111) == 0) {
                *schedule = s;
                return 0;
            }
        /* A1111's "Normal" and the peer's "normal" alias: the same t grid as discrete */
        if (strcasecmp(name, "normal") == 0) {
            *schedule = MX_SD_SCHED_DISCRETE;
            return 0;
        }
        if (strcasecmp(name, "automatic") == 0) {
            *schedule = -1;
            return 0;
        }
    }
    return mx_err_set(err, MX_EINVAL, "schedule '%s': unknown (valid: %s)",
                      name ? name : "(null)", mx_sd_schedule_names());
}
