/* test_sd_sampler.c - schedules, sigma <-> t, samplers and their names.
 *
 * Oracles:
 *   - the peer's schedules and UNet timesteps in ../shared/refs/sd/sd-s*.json, with the
 *     alphas_cumprod of the checkpoint they were made with (tests/sd_ckpt.sh);
 *   - the peer's own trajectories: sd-s01 (euler, 1 step), sd-s06 (euler_a, 2 steps, 128x128)
 *     and sd-s08 (img2img euler, 3 of 4 steps) replayed through mx_sd_sample with a denoiser
 *     that returns the peer's dumped UNet eps (CFG 7): every UNet input the peer dumped and the
 *     final latent must come out (this checks rng + schedule + sampler together);
 *   - every sampler against a float64 re-derivation of its published (k-diffusion) formula on an
 *     analytic denoiser, noise included;
 *   - determinism, cancellation, error passing, names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/rng.h"
#include "core/diffusion/sampler.h"
#include "core/diffusion/schedule.h"
#include "core/diffusion/sd_model.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "tests/mx_test.h"

/* ---- fixtures ----------------------------------------------------------------------------- */

/* SD's "scaled linear" training schedule in float64, as the LDM code makes alphas_cumprod. */
static void scaled_linear_alphas(float *ac) {
    double prod = 1.0;
    for (int i = 0; i < MX_SD_TRAIN_STEPS; i++) {
        double b = sqrt(0.00085) + (sqrt(0.012) - sqrt(0.00085)) * i / (MX_SD_TRAIN_STEPS - 1);
        prod *= 1.0 - b * b;
        ac[i] = (float)prod;
    }
}

static int have_ckpt = -1;                      /* -1: not tried; 0: absent; 1: loaded */
static char ckpt_skip_reason[512];
static struct mx_sd_sigma_table ckpt_tab;       /* from the reference checkpoint */

/* Loads the reference checkpoint's alphas_cumprod once (via tests/sd_ckpt.sh and
 * mx_sd_model_open). Returns false with ckpt_skip_reason set when it cannot be had. */
static bool load_ckpt(void) {
    if (have_ckpt >= 0)
        return have_ckpt == 1;
    have_ckpt = 0;
    const char *src = getenv("MX_SRCDIR");
    if (!mx_test_shared_dir() || !src) {
        snprintf(ckpt_skip_reason, sizeof ckpt_skip_reason,
                 "needs ../shared and MX_SRCDIR (run under make check)");
        return false;
    }
    char cmd[1024], path[1024] = {0};
    snprintf(cmd, sizeof cmd, "'%s/tests/sd_ckpt.sh'", src);
    FILE *p = popen(cmd, "r");
    if (!p || !fgets(path, sizeof path, p)) {
        if (p)
            pclose(p);
        snprintf(ckpt_skip_reason, sizeof ckpt_skip_reason,
                 "tests/sd_ckpt.sh gave no checkpoint (see its message above)");
        return false;
    }
    int st = pclose(p);
    path[strcspn(path, "\n")] = '\0';
    if (st != 0) {
        snprintf(ckpt_skip_reason, sizeof ckpt_skip_reason, "tests/sd_ckpt.sh failed");
        return false;
    }
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    assert_non_null(be);
    struct mx_sd_model *m = NULL;
    int rc = mx_sd_model_open(be, path, NULL, &m, &err);
    if (rc != 0)
        fail_msg("%s: %s", path, mx_err_msg(&err, rc));
    assert_true(m->alphas_from_file);
    mx_sd_sigma_table_init(&ckpt_tab, m->alphas_cumprod);
    mx_sd_model_close(m);
    mx_backend_free(be);
    have_ckpt = 1;
    return true;
}

/* A whole little-endian f32 file of exactly n values (malloc'd), or a test failure. */
static float *read_f32(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("%s: cannot open", path);
    float *v = malloc(n * sizeof(float));
    assert_non_null(v);
    size_t got = fread(v, sizeof(float), n, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != n || extra != EOF)
        fail_msg("%s: expected exactly %zu floats", path, n);
    return v;
}

static json_t *load_case(const char *id) {
    char path[1024];
    snprintf(path, sizeof path, "%s/refs/sd/%s.json", mx_test_shared_dir(), id);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("%s: %s", path, je.text);
    return j;
}

/* ---- schedules against the peer ----------------------------------------------------------- */

/* Every case's peer_sigmas_full_schedule, and its peer_sigmas_used as the img2img tail. */
static void test_schedules_match_peer(void **state) {
    (void)state;
    if (!load_ckpt()) {
        mx_test_skip("peer schedules: %s", ckpt_skip_reason);
        return;
    }
    int n_cases = 0;
    for (int c = 1; c <= 11; c++) {
        char id[16];
        snprintf(id, sizeof id, "sd-s%02d", c);
        json_t *j = load_case(id);
        int steps = (int)json_integer_value(json_object_get(j, "steps"));
        const char *sampler = json_string_value(json_object_get(j, "sampler"));
        const char *sched = json_string_value(json_object_get(j, "scheduler"));
        int s = -1, sc = -1, sc2 = -1;
        assert_int_equal(mx_sd_sampler_parse(sampler, &s, &sc, NULL), 0);
        assert_int_equal(mx_sd_schedule_parse(sched, &sc2, NULL), 0);
        assert_int_equal(sc, -1);
        json_t *full = json_object_get(j, "peer_sigmas_full_schedule");
        assert_int_equal((int)json_array_size(full), steps + 1);
        float sig[64];
        int n_out = 0;
        assert_int_equal(mx_sd_schedule_sigmas(&ckpt_tab, sc2, steps, sig, &n_out, NULL), 0);
        assert_int_equal(n_out, steps + 1);
        for (int i = 0; i <= steps; i++) {
            double want = json_number_value(json_array_get(full, (size_t)i));
            if (fabs(sig[i] - want) > 1e-6 * fabs(want))
                fail_msg("%s: sigma %d is %.9g, peer %.9g", id, i, (double)sig[i], want);
        }
        /* ddim_trailing's default schedule is the peer's: simple */
        if (s == MX_SD_SAMPLER_DDIM_TRAILING)
            assert_int_equal(mx_sd_schedule_default(s), MX_SD_SCHED_SIMPLE);
        /* used = sigmas[steps - t_enc - 1 :] for img2img/inpaint */
        json_t *used = json_object_get(j, "peer_sigmas_used");
        json_t *tenc = json_object_get(j, "img2img_t_enc");
        int start = json_is_integer(tenc) ? steps - (int)json_integer_value(tenc) - 1 : 0;
        assert_int_equal((int)json_array_size(used), steps + 1 - start);
        for (int i = start; i <= steps; i++)
            assert_float_equal(json_number_value(json_array_get(used, (size_t)(i - start))),
                               sig[i], 1e-6 * sig[i]);
        json_decref(j);
        n_cases++;
    }
    assert_int_equal(n_cases, 11);
}

/* The UNet timesteps of sd-s01/06/08 (cond and uncond per step) from sigma_to_t, exactly. */
static void test_unet_timesteps_match_peer(void **state) {
    (void)state;
    if (!load_ckpt()) {
        mx_test_skip("peer timesteps: %s", ckpt_skip_reason);
        return;
    }
    const char *ids[] = {"sd-s01", "sd-s06", "sd-s08"};
    for (int c = 0; c < 3; c++) {
        json_t *j = load_case(ids[c]);
        json_t *used = json_object_get(j, "peer_sigmas_used");
        json_t *ts = json_object_get(j, "unet_timesteps_per_call");
        size_t n_steps = json_array_size(used) - 1;
        assert_int_equal(json_array_size(ts), 2 * n_steps);
        for (size_t i = 0; i < n_steps; i++) {
            float sigma = (float)json_number_value(json_array_get(used, i));
            float t = mx_sd_sigma_to_t(&ckpt_tab, sigma);
            for (size_t k = 0; k < 2; k++) {
                double want = json_number_value(json_array_get(ts, 2 * i + k));
                if ((double)t != want)
                    fail_msg("%s: call %zu: t %.9g, peer %.9g", ids[c], 2 * i + k, (double)t,
                             want);
            }
        }
        json_decref(j);
    }
    /* fractional t survives the round trip (the 3-step discrete schedule's 499.5) */
    float s = mx_sd_t_to_sigma(&ckpt_tab, 499.5f);
    assert_float_equal(mx_sd_sigma_to_t(&ckpt_tab, s), 499.5f, 1e-3);
}

/* ---- schedules: shapes, on SD's scaled-linear table (no ../shared needed) ------------------- */

static void test_schedule_shapes(void **state) {
    (void)state;
    float ac[MX_SD_TRAIN_STEPS];
    scaled_linear_alphas(ac);
    struct mx_sd_sigma_table tab;
    mx_sd_sigma_table_init(&tab, ac);
    float smin = mx_sd_sigma_min(&tab), smax = mx_sd_sigma_max(&tab);
    assert_float_equal(smax, 14.6146, 1e-3); /* SD's well-known sigma range */
    assert_float_equal(smin, 0.0292, 1e-4);
    for (int t = 0; t < MX_SD_TRAIN_STEPS; t += 37) {
        assert_float_equal(mx_sd_t_to_sigma(&tab, (float)t), tab.sigmas[t], 2e-6 * tab.sigmas[t]);
        assert_float_equal(mx_sd_sigma_to_t(&tab, tab.sigmas[t]), (float)t, 1e-2);
    }
    assert_float_equal(mx_sd_sigma_to_t(&tab, 1000.f), 999.f, 0); /* clamped */
    assert_float_equal(mx_sd_sigma_to_t(&tab, 1e-5f), 0.f, 0);
    static float sig[1002];
    for (int sc = 0; sc < MX_SD_SCHED_COUNT; sc++) {
        const int steps_list[] = {1, 2, 3, 4, 7, 10, 20, 50, 1000};
        for (size_t q = 0; q < MX_ARRAY_LEN(steps_list); q++) {
            int steps = steps_list[q], n_out = -1;
            struct mx_err err = {0};
            int rc = mx_sd_schedule_sigmas(&tab, sc, steps, sig, &n_out, &err);
            if (rc != 0)
                fail_msg("%s %d steps: %s", mx_sd_schedule_name(sc), steps, err.msg);
            if (sc != MX_SD_SCHED_BETA)
                assert_int_equal(n_out, steps + 1);
            assert_true(n_out >= 2 && n_out <= steps + 1);
            assert_true(sig[n_out - 1] == 0.0f);
            for (int i = 0; i + 1 < n_out; i++) {
                if (!(sig[i] > 0.0f) || !isfinite(sig[i]))
                    fail_msg("%s %d steps: sigma %d = %g", mx_sd_schedule_name(sc), steps, i,
                             (double)sig[i]);
                /* descending (lcm's and simple's grids may repeat at very many steps) */
                if (sig[i + 1] > sig[i])
                    fail_msg("%s %d steps: sigma %d < sigma %d", mx_sd_schedule_name(sc), steps,
                             i, i + 1);
            }
            /* all but ays/lcm start at the top of the table */
            if (sc != MX_SD_SCHED_AYS && sc != MX_SD_SCHED_LCM)
                assert_float_equal(sig[0], smax, 1e-4 * smax);
        }
    }
    /* Karras eq. 5 endpoints and midpoint; exponential is geometric */
    int n_out;
    assert_int_equal(mx_sd_schedule_sigmas(&tab, MX_SD_SCHED_KARRAS, 5, sig, &n_out, NULL), 0);
    assert_float_equal(sig[4], smin, 1e-5 * smin);
    double mid = pow(0.5 * (pow(smax, 1 / 7.) + pow(smin, 1 / 7.)), 7);
    assert_float_equal(sig[2], mid, 1e-5 * mid);
    assert_int_equal(mx_sd_schedule_sigmas(&tab, MX_SD_SCHED_EXPONENTIAL, 5, sig, &n_out, NULL),
                     0);
    assert_float_equal(sig[1] / sig[0], sig[3] / sig[2], 1e-5);
    assert_float_equal(sig[4], smin, 1e-5 * smin);
    /* simple: every 250th table entry from the top for 4 steps */
    assert_int_equal(mx_sd_schedule_sigmas(&tab, MX_SD_SCHED_SIMPLE, 4, sig, &n_out, NULL), 0);
    for (int i = 0; i < 4; i++)
        assert_float_equal(sig[i], tab.sigmas[999 - 250 * i], 2e-6 * sig[i]);
    /* lcm: timesteps 999, 759, 499, 259 for 4 steps */
    assert_int_equal(mx_sd_schedule_sigmas(&tab, MX_SD_SCHED_LCM, 4, sig, &n_out, NULL), 0);
    const int lcm_t[] = {999, 759, 499, 259};
    for (int i = 0; i < 4; i++)
        assert_float_equal(sig[i], tab.sigmas[lcm_t[i]], 2e-6 * sig[i]);
    /* ays at 10 steps is NVIDIA's table */
    assert_int_equal(mx_sd_schedule_sigmas(&tab, MX_SD_SCHED_AYS, 10, sig, &n_out, NULL), 0);
    assert_float_equal(sig[1], 6.4745760956, 1e-6);
    /* bad arguments */
    struct mx_err err = {0};
    assert_int_equal(mx_sd_schedule_sigmas(&tab, MX_SD_SCHED_KARRAS, 0, sig, &n_out, &err),
                     MX_EINVAL);
    assert_int_equal(mx_sd_schedule_sigmas(&tab, 99, 4, sig, &n_out, NULL), MX_EINVAL);
}

/* ---- replaying the peer's trajectories ---------------------------------------------------- */

/* The peer's denoiser, from its dumps: at call i, checks c_in * x against unet_in_step<i>_cond
 * and returns x + c_out * (uncond + cfg (cond - uncond)) with the dumped eps. */
struct replay {
    const char *dir;  /* <shared>/refs/sd/<id>_tensors */
    int64_t n;
    float cfg;
    int call;         /* UNet step index */
    double max_in_err; /* largest relative error of c_in * x against the dump */
};

static int replay_denoise(void *ud, const float *x, float sigma, float *den) {
    struct replay *r = ud;
    char p[1024];
    snprintf(p, sizeof p, "%s/unet_in_step%d_cond.f32", r->dir, r->call);
    float *in = read_f32(p, (size_t)r->n);
    snprintf(p, sizeof p, "%s/unet_eps_step%d_cond.f32", r->dir, r->call);
    float *ec = read_f32(p, (size_t)r->n);
    snprintf(p, sizeof p, "%s/unet_eps_step%d_uncond.f32", r->dir, r->call);
    float *eu = read_f32(p, (size_t)r->n);
    float c_in = 1.0f / sqrtf(sigma * sigma + 1.0f), c_out = -sigma;
    for (int64_t k = 0; k < r->n; k++) {
        double e = fabs((double)(x[k] * c_in) - in[k]) / (fabs(in[k]) + 1e-3);
        if (e > r->max_in_err)
            r->max_in_err = e;
        float eps = eu[k] + (ec[k] - eu[k]) * r->cfg;
        den[k] = eps * c_out + x[k] * 1.0f;
    }
    free(in);
    free(ec);
    free(eu);
    r->call++;
    return 0;
}

/* One case: initial latent as the peer makes it, mx_sd_sample, final latent against
 * vae_decoder_in * 0.18215. */
static void replay_case(const char *id, int sampler) {
    json_t *j = load_case(id);
    int w = (int)json_integer_value(json_object_get(j, "width"));
    int h = (int)json_integer_value(json_object_get(j, "height"));
    int64_t n = 4 * (int64_t)(w / 8) * (h / 8);
    uint64_t seed = (uint64_t)json_integer_value(json_object_get(j, "seed"));
    int steps = (int)json_integer_value(json_object_get(j, "steps"));
    json_t *tenc = json_object_get(j, "img2img_t_enc");
    int start = json_is_integer(tenc) ? steps - (int)json_integer_value(tenc) - 1 : 0;
    float sig[64];
    int n_out;
    assert_int_equal(mx_sd_schedule_sigmas(&ckpt_tab, MX_SD_SCHED_DISCRETE, steps, sig, &n_out,
                                           NULL),
                     0);
    char dir[1024], p[1100];
    snprintf(dir, sizeof dir, "%s/refs/sd/%s_tensors", mx_test_shared_dir(), id);
    float *x = calloc((size_t)n, sizeof(float));
    float *noise = malloc((size_t)n * sizeof(float));
    assert_non_null(x);
    assert_non_null(noise);
    struct mx_sd_rng rng;
    if (start > 0) {
        /* img2img: latent = (mean + std * randn) * 0.18215 from the encoder moments, with the
         * first draw after seeding; then the generator is seeded again */
        snprintf(p, sizeof p, "%s/vae_encoder_moments.f32", dir);
        float *mom = read_f32(p, (size_t)(2 * n));
        mx_sd_rng_init(&rng, MX_SD_RNG_CUDA, seed);
        mx_sd_rng_randn(&rng, noise, n);
        for (int64_t k = 0; k < n; k++) {
            float lv = mom[n + k] < -30.f ? -30.f : mom[n + k] > 20.f ? 20.f : mom[n + k];
            x[k] = (mom[k] + expf(0.5f * lv) * noise[k]) * 0.18215f;
        }
        free(mom);
    }
    mx_sd_rng_init(&rng, MX_SD_RNG_CUDA, seed);
    mx_sd_rng_randn(&rng, noise, n);
    for (int64_t k = 0; k < n; k++)
        x[k] = x[k] + noise[k] * sig[start];
    struct replay r = {.dir = dir, .n = n, .cfg = 7.0f};
    struct mx_err err = {0};
    int rc = mx_sd_sample(sampler, -1.0f, x, n, sig + start, steps - start, &rng, replay_denoise,
                          NULL, &r, &err);
    if (rc != 0)
        fail_msg("%s: %s", id, mx_err_msg(&err, rc));
    assert_int_equal(r.call, steps - start);
    /* UNet inputs: the peer's c_in * x, to float rounding (step 0 is bit-exact per the README) */
    printf("%s: max UNet-input rel err %.3g\n", id, r.max_in_err);
    if (r.max_in_err > 1e-5)
        fail_msg("%s: UNet input off by %.3g relative", id, r.max_in_err);
    snprintf(p, sizeof p, "%s/vae_decoder_in.f32", dir);
    float *fin = read_f32(p, (size_t)n);
    double max_err = 0;
    for (int64_t k = 0; k < n; k++) {
        double e = fabs(x[k] / 0.18215 - fin[k]) / (fabs(fin[k]) + 1e-2);
        if (e > max_err)
            max_err = e;
    }
    printf("%s: max final-latent rel err %.3g\n", id, max_err);
    if (max_err > 1e-6)
        fail_msg("%s: final latent off by %.3g relative", id, max_err);
    free(fin);
    free(x);
    free(noise);
    json_decref(j);
}

static void test_replay_peer_trajectories(void **state) {
    (void)state;
    if (!load_ckpt()) {
        mx_test_skip("peer trajectories: %s", ckpt_skip_reason);
        return;
    }
    replay_case("sd-s01", MX_SD_SAMPLER_EULER);
    replay_case("sd-s06", MX_SD_SAMPLER_EULER_A);
    replay_case("sd-s08", MX_SD_SAMPLER_EULER);
}

/* ---- samplers against float64 re-derivations of their formulas ----------------------------- */

#define TOY_N 40 /* latent values in the toy runs */

/* The analytic denoiser: the exact E[x0 | x] for x0 ~ N(0, 1) plus a smooth, element- and
 * sigma-dependent bias so that derivatives differ between elements and steps. */
static double toy_den(double x, double sigma, int k) {
    return x / (1.0 + sigma * sigma) + 0.3 * sin(k + 1.0) * sigma / (1.0 + sigma);
}

/* The toy's state for mx_sd_sample: counts calls, may fail or cancel on request. */
struct toy {
    int calls;
    int fail_at;    /* call index that returns fail_rc (-1: never) */
    int fail_rc;
    int cancel_at;  /* step after which the step callback cancels (0: never) */
    int steps_seen;
};

static int toy_denoise(void *ud, const float *x, float sigma, float *den) {
    struct toy *t = ud;
    if (t->calls++ == t->fail_at)
        return t->fail_rc;
    for (int k = 0; k < TOY_N; k++)
        den[k] = (float)toy_den(x[k], sigma, k);
    return 0;
}

static int toy_step(void *ud, int step, int steps, const float *x, const float *den) {
    struct toy *t = ud;
    assert_int_equal(step, t->steps_seen + 1);
    assert_true(step <= steps);
    assert_non_null(x);
    assert_non_null(den);
    t->steps_seen = step;
    return t->cancel_at != 0 && step == t->cancel_at;
}

/* k-diffusion's get_ancestral_step in double. */
static void ref_ancestral(double from, double to, double eta, double *down, double *up) {
    *up = 0, *down = to;
    if (eta <= 0)
        return;
    *up = fmin(to, eta * sqrt(to * to * (from * from - to * to) / (from * from)));
    *down = sqrt(to * to - *up * *up);
}

/* One element's trajectory under sampler s, in double, from the formulas as published
 * (k-diffusion sampling.py; the peer's variants for dpm++2mv2, ipndm_v, lcm, tcd). noise[j][k]
 * is the j-th draw; *n_draws receives how many draws the formula makes. */
static double ref_sample(int s, double eta, double x, int k, const float *sg, int steps,
                         float noise[][TOY_N], int *n_draws) {
    int nd = 0;
    double old_den = 0, h_last = 0, hist[3] = {0};
    int n_hist = 0;
    for (int i = 0; i < steps; i++) {
        double sig = sg[i], sn = sg[i + 1];
        double den = toy_den((float)x, sig, k), d = (x - den) / sig;
        switch (s) {
        case MX_SD_SAMPLER_EULER:
            x += d * (sn - sig);
            break;
        case MX_SD_SAMPLER_EULER_A:
        case MX_SD_SAMPLER_DDIM_TRAILING: {
            double down, up;
            ref_ancestral(sig, sn, eta, &down, &up);
            x += d * (down - sig);
            if (sn > 0 && eta > 0)
                x += noise[nd++][k] * up;
            break;
        }
        case MX_SD_SAMPLER_HEUN:
            if (sn == 0) {
                x += d * (sn - sig);
            } else {
                double x2 = x + d * (sn - sig);
                double d2 = (x2 - toy_den((float)x2, (float)sn, k)) / sn;
                x += (d + d2) / 2 * (sn - sig);
            }
            break;
        case MX_SD_SAMPLER_DPM2:
            if (sn == 0) {
                x += d * (sn - sig);
            } else {
                double mid = (float)sqrt(sig * sn);
                double x2 = x + d * (mid - sig);
                double d2 = (x2 - toy_den((float)x2, mid, k)) / mid;
                x += d2 * (sn - sig);
            }
            break;
        case MX_SD_SAMPLER_DPMPP2S_A: {
            double down, up;
            ref_ancestral(sig, sn, eta, &down, &up);
            if (down == 0) {
                x = den;
            } else {
                double t = -log(sig), tn = -log(down), h = tn - t, ss = (float)exp(-(t + h / 2));
                double x2 = (ss / sig) * x - expm1(-h / 2) * den;
                double den2 = toy_den((float)x2, ss, k);
                x = (down / sig) * x - expm1(-h) * den2;
            }
            if (sn > 0)
                x += noise[nd++][k] * up;
            break;
        }
        case MX_SD_SAMPLER_DPMPP2M:
        case MX_SD_SAMPLER_DPMPP2MV2: {
            double t = -log(sig), tn = -log(sn), h = tn - t;
            if (i == 0 || sn == 0) {
                x = (sn / sig) * x - expm1(-h) * den;
            } else {
                double hl = t + log(sg[i - 1]), r = hl / h, b = expm1(-h);
                if (s == MX_SD_SAMPLER_DPMPP2MV2) {
                    r = fmax(hl, h) / fmin(hl, h);
                    b = expm1(-(hl + h) / 2);
                }
                double dd = (1 + 1 / (2 * r)) * den - (1 / (2 * r)) * old_den;
                x = (sn / sig) * x - b * dd;
            }
            old_den = den;
            break;
        }
        case MX_SD_SAMPLER_DPMPP2M_SDE:
        case MX_SD_SAMPLER_DPMPP2M_SDE_BT: /* noise[] then holds the tree's increments */
            if (sn == 0) {
                x = den;
            } else {
                double t = -log(sig), tn = -log(sn), h = tn - t, eh = eta * h;
                x = sn / sig * exp(-eh) * x - expm1(-h - eh) * den;
                if (i > 0)
                    x += 0.5 * -expm1(-h - eh) * (h / h_last) * (den - old_den);
                if (eta > 0)
                    x += noise[nd++][k] * sn * sqrt(-expm1(-2 * eh));
                h_last = h;
            }
            old_den = den;
            break;
        case MX_SD_SAMPLER_IPNDM:
        case MX_SD_SAMPLER_IPNDM_V: {
            double dt = sn - sig;
            int order = i + 1 < 4 ? i + 1 : 4;
            double *h1 = hist + (n_hist > 0 ? n_hist - 1 : 0); /* the newest */
            if (order == 1)
                x += d * dt;
            else if (order == 2 && s == MX_SD_SAMPLER_IPNDM_V) {
                double q = dt / (sig - sg[i - 1]);
                x += ((2 + q) * d - q * h1[0]) / 2 * dt;
            } else if (order == 2)
                x += (3 * d - h1[0]) / 2 * dt;
            else if (order == 3)
                x += (23 * d - 16 * h1[0] + 5 * h1[-1]) / 12 * dt;
            else
                x += (55 * d - 59 * h1[0] + 37 * h1[-1] - 9 * h1[-2]) / 24 * dt;
            if (n_hist == 3) {
                hist[0] = hist[1];
                hist[1] = hist[2];
                n_hist = 2;
            }
            hist[n_hist++] = d;
            break;
        }
        case MX_SD_SAMPLER_LCM:
            x = den;
            if (sn > 0)
                x += noise[nd++][k] * sn;
            break;
        case MX_SD_SAMPLER_TCD: {
            /* DDIM from t to s = floor((1 - eta) t_prev) on SD's scaled-linear alphas, t_prev
             * the training step nearest sigma_next; then renoised to sigma_next for eta > 0 */
            double ac[MX_SD_TRAIN_STEPS], prod = 1, best = INFINITY;
            int tp = 0;
            for (int q = 0; q < MX_SD_TRAIN_STEPS; q++) {
                double b = sqrt(0.00085) + (sqrt(0.012) - sqrt(0.00085)) * q / 999.0;
                ac[q] = prod *= 1 - b * b;
                double dist = fabs(sqrt((1 - ac[q]) / ac[q]) - sn);
                if (dist < best)
                    best = dist, tp = q;
            }
            int ts = (int)floor((float)(1 - (float)eta) * (float)tp); /* float, as the peer */
            double a_prev = 1 / (sn * sn + 1), a_s = ac[ts];
            x = sqrt(a_s / a_prev) * den + sqrt((1 - a_s) / a_prev) * d;
            if (eta > 0 && sn > 0) {
                /* 1/a_prev - 1/a_s cancels badly when s is t_prev (near sigma_min): there the
                 * result is the float rounding noise of the peer's formula, so take it in
                 * float as the peer does */
                float fa_prev = 1.0f / ((float)sn * (float)sn + 1.0f), fa_s = (float)ac[ts];
                double c_n = sqrtf(1.0f / fa_prev - 1.0f / fa_s);
                x = sqrt(a_prev / a_s) * x + c_n * noise[nd++][k];
            }
            break;
        }
        case MX_SD_SAMPLER_DPMPP_SDE:
            /* k-diffusion sample_dpmpp_sde, r = 1/2; noise[] holds the tree's increments over
             * (sigma, sigma_mid) and (sigma, sigma_next) of each noisy step, in that order */
            if (sn == 0) {
                x += d * (sn - sig);
            } else {
                double t = -log(sig), tn = -log(sn), h = tn - t, smid = exp(-(t + h / 2));
                double down, up;
                ref_ancestral(sig, smid, eta, &down, &up);
                double x2 = (down / sig) * x - expm1(t + log(down)) * den;
                x2 += noise[nd++][k] * up;
                double den2 = toy_den((float)x2, (float)smid, k);
                ref_ancestral(sig, sn, eta, &down, &up);
                x = (down / sig) * x - expm1(t + log(down)) * (0.5 * den + 0.5 * den2);
                x += noise[nd++][k] * up;
            }
            break;
        case MX_SD_SAMPLER_LMS: {
            /* k-diffusion's coefficients (integrals of the Lagrange basis over the step, here
             * exact by 4-point Gauss-Legendre) and the peer's history shift 1: the derivative
             * paired with coefficient c >= 2 is hist[min(newest, n_hist + 1 - c + 1)] */
            int max_order = steps < 4 ? steps : 4, order = i + 1 < max_order ? i + 1 : max_order;
            static const double gx[4] = {-0.8611363115940526, -0.3399810435848563,
                                         0.3399810435848563, 0.8611363115940526};
            static const double gw[4] = {0.3478548451374538, 0.6521451548625461,
                                         0.6521451548625461, 0.3478548451374538};
            double coeff[4];
            for (int j = 0; j < order; j++) {
                double sum = 0;
                for (int g = 0; g < 4; g++) {
                    double tau = sig + (sn - sig) * (gx[g] + 1) / 2, prod = 1;
                    for (int q = 0; q < order; q++)
                        if (q != j)
                            prod *= (tau - sg[i - q]) / (sg[i - j] - sg[i - q]);
                    sum += gw[g] * prod;
                }
                coeff[j] = sum * (sn - sig) / 2;
            }
            x += d * coeff[0];
            if (max_order > 1) {
                for (int c = 2; c <= order && i > 0; c++) {
                    int idx = n_hist + 1 - c + 1 < n_hist - 1 ? n_hist + 1 - c + 1 : n_hist - 1;
                    x += hist[idx] * coeff[c - 1];
                }
                if (n_hist + 1 == max_order) {
                    for (int q = 0; q + 1 < n_hist; q++)
                        hist[q] = hist[q + 1];
                    n_hist--;
                }
                hist[n_hist++] = d;
            }
            break;
        }
        default:
            fail_msg("no reference for sampler %d", s);
        }
    }
    *n_draws = nd;
    return x;
}

/* Each sampler, at its default eta and at a second eta where it has one, over a full discrete
 * schedule, a Karras schedule and an img2img tail, against ref_sample. The float
 * implementation may differ from the double formula by accumulated rounding only: 5e-6
 * relative, ten times the worst seen (a wrong coefficient or a missed draw is off by 1e-3
 * or far more). Also checks the
 * number of denoiser calls (mx_sd_sampler_evals) and of noise draws (the Philox offset). */
static void test_samplers_match_formulas(void **state) {
    (void)state;
    float ac[MX_SD_TRAIN_STEPS];
    scaled_linear_alphas(ac);
    struct mx_sd_sigma_table tab;
    mx_sd_sigma_table_init(&tab, ac);
    float disc[9], kar[7];
    int n_out;
    assert_int_equal(mx_sd_schedule_sigmas(&tab, MX_SD_SCHED_DISCRETE, 8, disc, &n_out, NULL), 0);
    assert_int_equal(mx_sd_schedule_sigmas(&tab, MX_SD_SCHED_KARRAS, 6, kar, &n_out, NULL), 0);
    struct {
        const float *sg;
        int steps;
        bool full;
    } scheds[] = {{disc, 8, true}, {kar, 6, true}, {disc + 3, 5, true}, {disc, 5, false}};
    static float noise[16][TOY_N];
    memset(noise, 0, sizeof noise);
    double worst = 0;
    for (int s = 0; s < MX_SD_SAMPLER_COUNT; s++) {
        float etas[2] = {-1.0f, mx_sd_sampler_default_eta(s) > 0 ? 0.5f : 0.3f};
        for (int e = 0; e < 2; e++) {
            for (size_t q = 0; q < MX_ARRAY_LEN(scheds); q++) {
                const float *sg = scheds[q].sg;
                int steps = scheds[q].steps;
                float eta = etas[e] < 0 ? mx_sd_sampler_default_eta(s) : etas[e];
                struct mx_sd_rng rng, ref_rng;
                mx_sd_rng_init(&rng, MX_SD_RNG_CUDA, 1000 + (uint64_t)s);
                float x[TOY_N];
                mx_sd_rng_randn(&rng, x, TOY_N);
                for (int k = 0; k < TOY_N; k++)
                    x[k] *= sg[0];
                float x0[TOY_N];
                memcpy(x0, x, sizeof x);
                ref_rng = rng;
                int want_draws = -1; /* from the formula, except for the tree's one seed draw */
                if (s == MX_SD_SAMPLER_DPMPP2M_SDE_BT || s == MX_SD_SAMPLER_DPMPP_SDE) {
                    /* the Brownian increments of the noisy steps, in order, from a tree seeded
                     * with the bits of the generator's next randn(2) */
                    float draw[2];
                    uint64_t seed;
                    mx_sd_rng_randn(&ref_rng, draw, 2);
                    memcpy(&seed, draw, sizeof seed);
                    struct mx_sd_brownian bt;
                    float smin = sg[steps] > 0 ? sg[steps] : sg[steps - 1]; /* least > 0 */
                    assert_int_equal(mx_sd_brownian_init(&bt, TOY_N, smin, sg[0], seed, NULL), 0);
                    for (int j = 0, m = 0; j < steps; j++) {
                        if (!(sg[j + 1] > 0))
                            continue;
                        if (s == MX_SD_SAMPLER_DPMPP_SDE) {
                            /* the half step's interval first, its end the float midpoint the
                             * sampler computes: the path is rough at the tree's 2^-24 grid,
                             * so a level 1e-7 off gives visibly different noise */
                            float t = -logf(sg[j]), h = -logf(sg[j + 1]) - t;
                            mx_sd_brownian_noise(&bt, sg[j], expf(-(t + h * 0.5f)), noise[m++]);
                        }
                        mx_sd_brownian_noise(&bt, sg[j], sg[j + 1], noise[m++]);
                    }
                    mx_sd_brownian_deinit(&bt);
                    want_draws = 1;
                } else {
                    for (int j = 0; j < 16; j++)
                        mx_sd_rng_randn(&ref_rng, noise[j], TOY_N);
                }
                uint32_t offset0 = rng.offset;
                struct toy t = {.fail_at = -1};
                struct mx_err err = {0};
                int rc = mx_sd_sample(s, etas[e], x, TOY_N, sg, steps, &rng, toy_denoise,
                                      toy_step, &t, &err);
                if (rc != 0)
                    fail_msg("%s: %s", mx_sd_sampler_name(s), mx_err_msg(&err, rc));
                assert_int_equal(t.steps_seen, steps);
                if (scheds[q].full)
                    assert_int_equal(t.calls, mx_sd_sampler_evals(s, steps));
                int n_draws = 0;
                for (int k = 0; k < TOY_N; k++) {
                    double want = ref_sample(s, eta, x0[k], k, sg, steps, noise, &n_draws);
                    double err_k = fabs(x[k] - want) / (1.0 + fabs(want));
                    if (err_k > worst)
                        worst = err_k;
                    if (err_k > 5e-6)
                        fail_msg("%s eta %g schedule %zu: x[%d] = %.9g, formula %.9g",
                                 mx_sd_sampler_name(s), (double)eta, q, k, (double)x[k], want);
                }
                if (want_draws >= 0)
                    n_draws = want_draws;
                if ((int)(rng.offset - offset0) != n_draws)
                    fail_msg("%s eta %g: %u noise draws, formula %d", mx_sd_sampler_name(s),
                             (double)eta, rng.offset - offset0, n_draws);
            }
        }
    }
    printf("samplers vs float64 formulas: worst relative difference %.3g\n", worst);
}

/* The Brownian tree is a Brownian path: increments add up across a split interval (to float
 * rounding), have mean 0 and variance 1 once scaled, are uncorrelated across disjoint
 * intervals, and depend only on (seed, interval), not on what was asked before. */
static void test_brownian_tree(void **state) {
    (void)state;
    enum { N = 20000 };
    static float a[N], b[N], c[N], a2[N];
    struct mx_sd_brownian bt;
    struct mx_err err = {0};
    assert_int_equal(mx_sd_brownian_init(&bt, N, 0.03, 14.6, 12345, &err), 0);
    const double t0 = 0.5, t1 = 1.7, t2 = 6.25;
    mx_sd_brownian_noise(&bt, t0, t2, a);
    mx_sd_brownian_noise(&bt, t1, t0, b); /* either order */
    mx_sd_brownian_noise(&bt, t1, t2, c);
    double max_err = 0, sum = 0, sum2 = 0, cross = 0;
    for (int k = 0; k < N; k++) {
        double whole = a[k] * sqrt(t2 - t0), parts = b[k] * sqrt(t1 - t0) + c[k] * sqrt(t2 - t1);
        max_err = fmax(max_err, fabs(whole - parts));
        sum += b[k];
        sum2 += (double)b[k] * b[k];
        cross += (double)b[k] * c[k];
    }
    if (max_err > 1e-4)
        fail_msg("W(t2)-W(t0) differs from the sum of its parts by %g", max_err);
    /* 4.5 standard errors for N = 20000 */
    assert_true(fabs(sum / N) < 0.032);
    assert_true(fabs(sum2 / N - 1) < 0.045);
    assert_true(fabs(cross / N) < 0.032);
    /* the same interval again, after other queries: the same values */
    mx_sd_brownian_noise(&bt, 0.03, 14.6, a2);
    mx_sd_brownian_noise(&bt, t0, t2, a2);
    assert_memory_equal(a, a2, sizeof a);
    /* the level cache changes nothing: a long run of queries on one tree equals fresh trees */
    uint64_t rs = 99;
    double prev = 14.6;
    for (int q = 0; q < 12; q++) {
        double u = (double)(mx_test_rand(&rs) >> 11) / 9007199254740992.0; /* [0, 1) */
        double lvl = q % 3 == 2 ? prev : 0.03 + 14.5 * u;
        mx_sd_brownian_noise(&bt, prev, lvl == prev ? 1.0 : lvl, a2);
        struct mx_sd_brownian fresh;
        assert_int_equal(mx_sd_brownian_init(&fresh, N, 0.03, 14.6, 12345, NULL), 0);
        mx_sd_brownian_noise(&fresh, prev, lvl == prev ? 1.0 : lvl, b);
        assert_memory_equal(a2, b, sizeof b);
        mx_sd_brownian_deinit(&fresh);
        prev = lvl;
    }
    mx_sd_brownian_deinit(&bt);
    /* another seed, another path */
    assert_int_equal(mx_sd_brownian_init(&bt, N, 0.03, 14.6, 12346, NULL), 0);
    mx_sd_brownian_noise(&bt, t0, t2, a2);
    assert_memory_not_equal(a, a2, sizeof a);
    mx_sd_brownian_deinit(&bt);
    mx_sd_brownian_deinit(NULL);
    assert_int_equal(mx_sd_brownian_init(&bt, N, 2.0, 1.0, 1, &err), MX_EINVAL);
}

/* Same inputs, same outputs, bit for bit; a different seed changes ancestral results. */
static void test_sampler_determinism(void **state) {
    (void)state;
    float ac[MX_SD_TRAIN_STEPS];
    scaled_linear_alphas(ac);
    struct mx_sd_sigma_table tab;
    mx_sd_sigma_table_init(&tab, ac);
    float sg[6];
    int n_out;
    assert_int_equal(mx_sd_schedule_sigmas(&tab, MX_SD_SCHED_KARRAS, 5, sg, &n_out, NULL), 0);
    for (int s = 0; s < MX_SD_SAMPLER_COUNT; s++) {
        float out[3][TOY_N], start[TOY_N];
        struct mx_sd_rng rng;
        mx_sd_rng_init(&rng, MX_SD_RNG_CPU, 7);
        mx_sd_rng_randn(&rng, start, TOY_N);
        for (int run = 0; run < 3; run++) {
            /* the same start for all three; run 2's sampler noise comes from another seed */
            mx_sd_rng_init(&rng, MX_SD_RNG_CPU, run == 2 ? 8 : 7);
            for (int k = 0; k < TOY_N; k++)
                out[run][k] = start[k] * sg[0];
            struct toy t = {.fail_at = -1};
            assert_int_equal(mx_sd_sample(s, 0.7f, out[run], TOY_N, sg, 5, &rng, toy_denoise,
                                          NULL, &t, NULL),
                             0);
        }
        assert_memory_equal(out[0], out[1], sizeof out[0]);
        bool noisy = s == MX_SD_SAMPLER_EULER_A || s == MX_SD_SAMPLER_DPMPP2S_A ||
                     s == MX_SD_SAMPLER_DPMPP2M_SDE || s == MX_SD_SAMPLER_LCM ||
                     s == MX_SD_SAMPLER_DDIM_TRAILING || s == MX_SD_SAMPLER_TCD ||
                     s == MX_SD_SAMPLER_DPMPP2M_SDE_BT || s == MX_SD_SAMPLER_DPMPP_SDE;
        if (noisy)
            assert_memory_not_equal(out[0], out[2], sizeof out[0]);
        else
            assert_memory_equal(out[0], out[2], sizeof out[0]);
    }
}

/* The step callback cancels (MX_ECANCELED after exactly that step); a denoiser error or cancel
 * passes through with its code; bad arguments are MX_EINVAL with a message. */
static void test_sampler_cancel_and_errors(void **state) {
    (void)state;
    float sg[] = {14.6f, 4.0f, 1.0f, 0.3f, 0.0f};
    float x[TOY_N] = {0};
    struct mx_sd_rng rng;
    mx_sd_rng_init(&rng, MX_SD_RNG_CUDA, 1);
    for (int s = 0; s < MX_SD_SAMPLER_COUNT; s++) {
        struct toy t = {.fail_at = -1, .cancel_at = 2};
        struct mx_err err = {0};
        int rc = mx_sd_sample(s, -1, x, TOY_N, sg, 4, &rng, toy_denoise, toy_step, &t, &err);
        assert_int_equal(rc, MX_ECANCELED);
        assert_int_equal(t.steps_seen, 2);
        assert_non_null(strstr(err.msg, "canceled"));
        struct toy t2 = {.fail_at = 2, .fail_rc = MX_ENOMEM};
        mx_err_clear(&err);
        rc = mx_sd_sample(s, -1, x, TOY_N, sg, 4, &rng, toy_denoise, toy_step, &t2, &err);
        assert_int_equal(rc, MX_ENOMEM);
        assert_int_equal(t2.calls, 3);
        assert_non_null(strstr(err.msg, mx_sd_sampler_name(s)));
        struct toy t3 = {.fail_at = 0, .fail_rc = MX_ECANCELED};
        rc = mx_sd_sample(s, -1, x, TOY_N, sg, 4, &rng, toy_denoise, NULL, &t3, NULL);
        assert_int_equal(rc, MX_ECANCELED);
    }
    struct toy t = {.fail_at = -1};
    struct mx_err err = {0};
    assert_int_equal(mx_sd_sample(MX_SD_SAMPLER_COUNT, -1, x, TOY_N, sg, 4, &rng, toy_denoise,
                                  NULL, &t, &err),
                     MX_EINVAL);
    assert_non_null(strstr(err.msg, "euler_a"));
    assert_int_equal(mx_sd_sample(MX_SD_SAMPLER_EULER_A, -1, x, TOY_N, sg, 4, NULL, toy_denoise,
                                  NULL, &t, NULL),
                     MX_EINVAL);
    float bad[] = {14.6f, 0.0f, 1.0f};
    assert_int_equal(mx_sd_sample(MX_SD_SAMPLER_EULER, -1, x, TOY_N, bad, 2, NULL, toy_denoise,
                                  NULL, &t, NULL),
                     MX_EINVAL);
    assert_int_equal(mx_sd_sample(MX_SD_SAMPLER_EULER, -1, x, TOY_N, sg, 0, NULL, toy_denoise,
                                  NULL, &t, NULL),
                     MX_EINVAL);
    assert_int_equal(t.calls, 0);
}

/* ---- names -------------------------------------------------------------------------------- */

static void test_names(void **state) {
    (void)state;
    int s, sc;
    /* every spelling round-trips */
    for (int i = 0; i < MX_SD_SAMPLER_COUNT; i++) {
        assert_int_equal(mx_sd_sampler_parse(mx_sd_sampler_name(i), &s, &sc, NULL), 0);
        assert_int_equal(s, i);
        assert_int_equal(sc, -1);
        assert_int_equal(mx_sd_sampler_parse(mx_sd_sampler_a1111_name(i), &s, &sc, NULL), 0);
        assert_int_equal(s, i);
        assert_non_null(strstr(mx_sd_sampler_names(), mx_sd_sampler_name(i)));
    }
    for (int i = 0; i < MX_SD_SCHED_COUNT; i++) {
        assert_int_equal(mx_sd_schedule_parse(mx_sd_schedule_name(i), &sc, NULL), 0);
        assert_int_equal(sc, i);
        assert_int_equal(mx_sd_schedule_parse(mx_sd_schedule_a1111_name(i), &sc, NULL), 0);
        assert_int_equal(sc, i);
        assert_non_null(strstr(mx_sd_schedule_names(), mx_sd_schedule_name(i)));
    }
    /* A1111 spellings, case-insensitive, with and without a schedule */
    const struct {
        const char *name;
        int sampler, schedule;
    } cases[] = {
        {"Euler a", MX_SD_SAMPLER_EULER_A, -1},
        {"euler A", MX_SD_SAMPLER_EULER_A, -1},
        {" DPM++ 2M ", MX_SD_SAMPLER_DPMPP2M, -1},
        {"DPM++ 2M Karras", MX_SD_SAMPLER_DPMPP2M, MX_SD_SCHED_KARRAS},
        {"dpm++ 2m sde exponential", MX_SD_SAMPLER_DPMPP2M_SDE, MX_SD_SCHED_EXPONENTIAL},
        {"DPM++ 2S a Karras", MX_SD_SAMPLER_DPMPP2S_A, MX_SD_SCHED_KARRAS},
        {"DPM2 Karras", MX_SD_SAMPLER_DPM2, MX_SD_SCHED_KARRAS},
        {"Euler SGM Uniform", MX_SD_SAMPLER_EULER, MX_SD_SCHED_SGM_UNIFORM},
        {"Heun Align Your Steps", MX_SD_SAMPLER_HEUN, MX_SD_SCHED_AYS},
        {"k_dpmpp_2m", MX_SD_SAMPLER_DPMPP2M, -1},
        {"k_euler_a", MX_SD_SAMPLER_EULER_A, -1},
        {"DDIM", MX_SD_SAMPLER_DDIM_TRAILING, -1},
        {"LCM", MX_SD_SAMPLER_LCM, -1},
        {"dpm++2m", MX_SD_SAMPLER_DPMPP2M, -1},
        {"LMS Karras", MX_SD_SAMPLER_LMS, MX_SD_SCHED_KARRAS},
        {"DPM++ 2M SDE", MX_SD_SAMPLER_DPMPP2M_SDE, -1},
        {"dpm++2m_sde_bt", MX_SD_SAMPLER_DPMPP2M_SDE_BT, -1},
        {"DPM++ SDE Karras", MX_SD_SAMPLER_DPMPP_SDE, MX_SD_SCHED_KARRAS},
    };
    for (size_t i = 0; i < MX_ARRAY_LEN(cases); i++) {
        struct mx_err err = {0};
        int rc = mx_sd_sampler_parse(cases[i].name, &s, &sc, &err);
        if (rc != 0)
            fail_msg("'%s': %s", cases[i].name, err.msg);
        assert_int_equal(s, cases[i].sampler);
        assert_int_equal(sc, cases[i].schedule);
    }
    /* A1111 1.9+'s PNG parameters: "Sampler: DPM++ 2M, Schedule type: Karras" */
    assert_string_equal(mx_sd_sampler_a1111_name(MX_SD_SAMPLER_DPMPP2M), "DPM++ 2M");
    assert_string_equal(mx_sd_sampler_a1111_name(MX_SD_SAMPLER_EULER_A), "Euler a");
    assert_string_equal(mx_sd_schedule_a1111_name(MX_SD_SCHED_KARRAS), "Karras");
    assert_string_equal(mx_sd_schedule_a1111_name(MX_SD_SCHED_DISCRETE), "Uniform");
    assert_int_equal(mx_sd_schedule_parse("Automatic", &sc, NULL), 0);
    assert_int_equal(sc, -1);
    assert_int_equal(mx_sd_schedule_parse("normal", &sc, NULL), 0);
    assert_int_equal(sc, MX_SD_SCHED_DISCRETE);
    /* unknown names list the valid ones */
    struct mx_err err = {0};
    assert_int_equal(mx_sd_sampler_parse("DPM++ 3M SDE", &s, &sc, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "DPM++ 3M SDE"));
    assert_non_null(strstr(err.msg, "dpm++2m_sde"));
    assert_int_equal(mx_sd_sampler_parse("Euler Karras Karras", &s, &sc, NULL), MX_EINVAL);
    assert_int_equal(mx_sd_sampler_parse("", &s, &sc, NULL), MX_EINVAL);
    assert_int_equal(mx_sd_sampler_parse(NULL, &s, &sc, NULL), MX_EINVAL);
    mx_err_clear(&err);
    assert_int_equal(mx_sd_schedule_parse("linear", &sc, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "karras"));
    assert_string_equal(mx_sd_sampler_name(-1), "unknown");
    assert_string_equal(mx_sd_schedule_a1111_name(MX_SD_SCHED_COUNT), "unknown");
    /* defaults */
    assert_int_equal(mx_sd_schedule_default(MX_SD_SAMPLER_LCM), MX_SD_SCHED_LCM);
    assert_int_equal(mx_sd_schedule_default(MX_SD_SAMPLER_EULER_A), MX_SD_SCHED_DISCRETE);
    assert_float_equal(mx_sd_sampler_default_eta(MX_SD_SAMPLER_EULER_A), 1.0, 0);
    assert_float_equal(mx_sd_sampler_default_eta(MX_SD_SAMPLER_DDIM_TRAILING), 0.0, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules_match_peer),
        cmocka_unit_test(test_unet_timesteps_match_peer),
        cmocka_unit_test(test_schedule_shapes),
        cmocka_unit_test(test_replay_peer_trajectories),
        cmocka_unit_test(test_samplers_match_formulas),
        cmocka_unit_test(test_brownian_tree),
        cmocka_unit_test(test_sampler_determinism),
        cmocka_unit_test(test_sampler_cancel_and_errors),
        cmocka_unit_test(test_names),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
