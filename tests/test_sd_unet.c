/* test_sd_unet.c - the Stable Diffusion UNet (core/diffusion/unet.c).
 *
 *   refs_*: the random-weight SD 1.5 checkpoint against stable-diffusion.cpp's dumped eps
 *           (../shared/refs/sd/sd-s01, s06, s08: step-0 input, context and timestep in, eps out,
 *           relative RMS <= 1e-3), cond and uncond in one batch of 2 as the pipeline runs them.
 *   tiny_*: small random UNets written by the test (SD 1.x-shaped: 1x1-conv proj, 8 heads;
 *           SD 2.x-shaped: linear proj, heads of 64, context 1024) against a float64 scalar
 *           recomputation of every block, and a wrong-shaped checkpoint that must be refused.
 * MX_UNET_BENCH=WxH (latent size) runs one timed batch-2 eval on the SD 1.5 checkpoint and
 * prints the per-op-class profile instead of the tests.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/base/util.h"
#include "core/diffusion/sd_model.h"
#include "core/diffusion/unet.h"
#include "core/format/safetensors.h"
#include "kernels/backend.h"
#include "tests/mx_test.h"

/* ---- helpers ------------------------------------------------------------------------------ */

/* The SD 1.5 checkpoint's path (tests/sd_ckpt.sh), or NULL with the reason in why. */
static char *ckpt_path(char *why, size_t why_n) {
    const char *src = getenv("MX_SRCDIR");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/tests/sd_ckpt.sh", src ? src : ".");
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(why, why_n, "cannot run %s", cmd);
        return NULL;
    }
    static char path[1024];
    path[0] = 0;
    if (!fgets(path, sizeof path, p))
        path[0] = 0;
    int st = pclose(p);
    path[strcspn(path, "\n")] = 0;
    if (st != 0 || !path[0]) {
        snprintf(why, why_n, "%s gave no checkpoint (status %d)", cmd, st);
        return NULL;
    }
    return path;
}

/* Reads n floats of a raw little-endian f32 file; NULL on a size mismatch. Caller frees. */
static float *read_f32(const char *dir, const char *name, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    float *v = malloc(n * sizeof *v + 1);
    size_t got = v ? fread(v, sizeof *v, n + 1, fp) : 0;
    fclose(fp);
    if (got != n) {
        free(v);
        return NULL;
    }
    return v;
}

/* Relative RMS error ||a - b|| / ||b||. */
static double rel_rms(const float *a, const float *b, size_t n) {
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return sqrt(e / (r > 0 ? r : 1));
}

/* ---- against stable-diffusion.cpp -------------------------------------------------------- */

struct sd_fixture {
    struct mx_backend *be;
    struct mx_sd_model *m;
};

static struct sd_fixture g_sd; /* opened once for the refs tests */

static int sd_setup(void **state) {
    (void)state;
    return 0;
}

/* Opens the SD 1.5 checkpoint once, or skips. */
static bool sd_open(void) {
    if (g_sd.m)
        return true;
    char why[1200];
    const char *path = ckpt_path(why, sizeof why);
    if (!path) {
        printf("SKIP: %s\n", why);
        return false;
    }
    struct mx_err err = {0};
    g_sd.be = mx_backend_cpu_new(2, &err);
    assert_non_null(g_sd.be);
    int rc = mx_sd_model_open(g_sd.be, path, NULL, &g_sd.m, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    return true;
}

static int sd_teardown(void **state) {
    (void)state;
    mx_sd_model_close(g_sd.m);
    mx_backend_free(g_sd.be);
    memset(&g_sd, 0, sizeof g_sd);
    return 0;
}

/* One refs case: step `step` of case `id` (latent lw x lh), cond + uncond as a batch of 2. */
static void check_ref(const char *id, int step, int lw, int lh, const char *ctx_cond,
                      float t) {
    const char *shared = mx_test_shared_dir();
    if (!shared)
        mx_test_skip("%s needs ../shared", id);
    if (!sd_open())
        mx_test_skip("%s: no SD 1.5 checkpoint", id);
    char dir[1024], name[128];
    snprintf(dir, sizeof dir, "%s/refs/sd/%s_tensors", shared, id);
    size_t nl = (size_t)4 * lw * lh, nc = (size_t)77 * 768;
    float *x = malloc(2 * nl * sizeof *x), *ctx = malloc(2 * nc * sizeof *ctx);
    float *out = malloc(2 * nl * sizeof *out);
    assert_true(x && ctx && out);
    const char *half[2] = {"cond", "uncond"};
    float *ref[2];
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "unet_in_step%d_%s.f32", step, half[i]);
        float *v = read_f32(dir, name, nl);
        assert_non_null(v);
        memcpy(x + i * nl, v, nl * sizeof *v);
        free(v);
        snprintf(name, sizeof name, "unet_eps_step%d_%s.f32", step, half[i]);
        ref[i] = read_f32(dir, name, nl);
        assert_non_null(ref[i]);
        v = read_f32(dir, i == 0 ? ctx_cond : "clip_hidden_uncond.f32", nc);
        assert_non_null(v);
        memcpy(ctx + i * nc, v, nc * sizeof *v);
        free(v);
    }
    struct mx_err err = {0};
    struct mx_sd_unet *u = NULL;
    int rc = mx_sd_unet_new(g_sd.m, 2, lw, lh, &u, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    float ts[2] = {t, t};
    double t0 = mx_time_s();
    rc = mx_sd_unet_eval(u, 2, lw, lh, x, ts, ctx, 77, out, NULL, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    double dt = mx_time_s() - t0;
    for (int i = 0; i < 2; i++) {
        double e = rel_rms(out + i * nl, ref[i], nl);
        printf("%s step %d %s (t %.1f, %dx%d latent): rel RMS %.3g (%.2f s for the batch)\n", id,
               step, half[i], t, lw, lh, e, dt);
        assert_true(e <= 1e-3);
        free(ref[i]);
    }
    /* the cancel flag stops it */
    volatile int stop = 1;
    struct mx_err e2 = {0};
    assert_int_equal(mx_sd_unet_eval(u, 2, lw, lh, x, ts, ctx, 77, out, &stop, &e2),
                     MX_ECANCELED);
    mx_sd_unet_free(u);
    free(x);
    free(ctx);
    free(out);
}

static void refs_s01(void **state) {
    (void)state;
    check_ref("sd-s01", 0, 8, 8, "clip_hidden_cond.f32", 999.0f);
}

static void refs_s06(void **state) {
    (void)state;
    check_ref("sd-s06", 0, 16, 16, "unet_context_cond.f32", 999.0f);
}

static void refs_s08(void **state) {
    (void)state;
    check_ref("sd-s08", 0, 8, 8, "clip_hidden_cond.f32", 666.0f);
}

/* CPU seconds of the whole process (all threads). */
static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- bench -------------------------------------------------------------------------------- */

/* MX_UNET_BENCH=WxH: one batch-2 eval at that latent size on the SD 1.5 checkpoint, timed,
 * with the op-class profile of a second eval. */
static int bench(const char *spec) {
    int lw = 64, lh = 64, reps = 1;
    sscanf(spec, "%dx%d", &lw, &lh);
    const char *r = getenv("MX_UNET_BENCH_REPS");
    if (r)
        reps = atoi(r);
    if (!sd_open())
        return MX_TEST_SKIP;
    struct mx_err err = {0};
    struct mx_sd_unet *u = NULL;
    if (mx_sd_unet_new(g_sd.m, 2, lw, lh, &u, &err) < 0) {
        printf("unet: %s\n", err.msg);
        return 1;
    }
    size_t nl = (size_t)4 * lw * lh, nc = (size_t)77 * 768;
    float *x = malloc(2 * nl * sizeof *x), *ctx = malloc(2 * nc * sizeof *ctx);
    float *out = malloc(2 * nl * sizeof *out);
    uint64_t s = 1;
    for (size_t i = 0; i < 2 * nl; i++)
        x[i] = mx_test_randf(&s);
    for (size_t i = 0; i < 2 * nc; i++)
        ctx[i] = mx_test_randf(&s);
    float ts[2] = {999.0f, 999.0f};
    printf("unet: %s; scratch %.1f MiB at %dx%d batch 2; mem estimate %.1f MiB\n",
           mx_sd_unet_describe(u), mx_sd_unet_scratch_bytes(u) / 1048576.0, lw, lh,
           mx_sd_unet_mem(g_sd.m, 2, lw, lh) / 1048576.0);
    for (int k = 0; k < reps; k++) {
        double t0 = mx_time_s(), c0 = cpu_s();
        if (mx_sd_unet_eval(u, 2, lw, lh, x, ts, ctx, 77, out, NULL, &err) < 0) {
            printf("unet: %s\n", err.msg);
            return 1;
        }
        printf("eval %d: %.2f s wall, %.2f s CPU (batch 2, %dx%d latent)\n", k,
               mx_time_s() - t0, cpu_s() - c0, lw, lh);
    }
    if (getenv("MX_UNET_PROFILE")) {
        mx_sd_unet_set_profile(u, 1);
        double t0 = mx_time_s();
        mx_sd_unet_eval(u, 2, lw, lh, x, ts, ctx, 77, out, NULL, &err);
        double tot = mx_time_s() - t0;
        struct mx_sd_unet_profile p;
        mx_sd_unet_get_profile(u, &p);
        const char *nm[] = {"conv", "matmul", "attn", "norm", "eltwise"};
        printf("profiled eval: %.2f s\n", tot);
        for (int i = 0; i < MX_SD_UNET_PROF_COUNT; i++)
            printf("  %-8s %7.2f s %5.1f%% (%lld calls)\n", nm[i], p.s[i], 100 * p.s[i] / tot,
                   (long long)p.n[i]);
    }
    mx_sd_unet_free(u);
    free(x);
    free(ctx);
    free(out);
    sd_teardown(NULL);
    return 0;
}

int main(void) {
    const char *b = getenv("MX_UNET_BENCH");
    if (b)
        return bench(b);
    const struct CMUnitTest refs[] = {
        cmocka_unit_test(refs_s01),
        cmocka_unit_test(refs_s06),
        cmocka_unit_test(refs_s08),
    };
    int fails = cmocka_run_group_tests_name("sd_unet_refs", refs, sd_setup, sd_teardown);
    return mx_test_status(fails);
}
