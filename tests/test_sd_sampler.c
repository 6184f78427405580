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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedules_match_peer),
        cmocka_unit_test(test_unet_timesteps_match_peer),
        cmocka_unit_test(test_schedule_shapes),
        cmocka_unit_test(test_replay_peer_trajectories),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
