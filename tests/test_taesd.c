/* test_taesd.c - the pieces of the live preview, hires fix and grids that need no checkpoint:
 * TAESD files (both key layouts give the same picture; a missing tensor or a wrong shape is
 * refused naming it), the linear latent -> RGB map against hand-computed values, the automatic
 * preview interval, torch's latent interpolation modes against values worked out by hand, the
 * hires sizes and infotext keys as A1111 writes them, Pillow-style resampling invariants, and
 * A1111's grid layout. The TAESD decoder's numbers against an independent numpy restatement are
 * tests/sd_preview_taesd.sh; the end-to-end checks are sd_hires.sh, sd_grid.sh and
 * sd_preview_shot.sh. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/diffusion/hires.h"
#include "core/diffusion/params_text.h"
#include "core/diffusion/preview.h"
#include "core/diffusion/taesd.h"
#include "core/image/grid.h"
#include "core/image/resample.h"
#include "kernels/backend.h"
#include "tests/mx_test.h"
#include "tests/taesd_write.h"

static char *tmp_path(const char *tag) {
    char *p = malloc(256);
    snprintf(p, 256, "/tmp/test_taesd_%d_%s.safetensors", (int)getpid(), tag);
    return p;
}

/* Decodes a fixed 3x2 latent with the file at path into a new array ([3][16][24]). */
static float *decode(struct mx_backend *be, const char *path) {
    struct mx_sd_taesd *t;
    struct mx_err err = {0};
    assert_int_equal(mx_sd_taesd_open(be, path, &t, &err), 0);
    float z[4 * 6];
    uint64_t s = 5;
    for (int i = 0; i < 24; i++)
        z[i] = 2.0f * taesd_test_normal(&s);
    float *o = malloc(3 * 16 * 24 * sizeof *o);
    assert_non_null(o);
    assert_int_equal(mx_sd_taesd_decode(t, z, 3, 2, o, &err), 0);
    mx_sd_taesd_free(t);
    return o;
}

static void test_layouts(void **state) {
    (void)state;
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    assert_non_null(be);
    char *raw = tmp_path("raw"), *dif = tmp_path("dif");
    /* the same seed draws the same values in the same order: only the names differ */
    assert_int_equal(taesd_test_write(raw, false, false, 9, NULL, NULL, &err), 0);
    assert_int_equal(taesd_test_write(dif, true, false, 9, NULL, NULL, &err), 0);
    float *a = decode(be, raw), *b = decode(be, dif);
    double sum = 0;
    for (int i = 0; i < 3 * 16 * 24; i++) {
        assert_true(isfinite(a[i]));
        assert_true(a[i] == b[i]);
        sum += fabs(a[i]);
    }
    assert_true(sum > 1.0); /* not all zeros */
    free(a);
    free(b);
    unlink(raw);
    unlink(dif);
    free(raw);
    free(dif);
    mx_backend_free(be);
}

static void test_refused(void **state) {
    (void)state;
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    char *p = tmp_path("bad");
    struct mx_sd_taesd *t = NULL;
    assert_int_equal(taesd_test_write(p, false, true, 3, "8.conv.2.weight", NULL, &err), 0);
    assert_int_equal(mx_sd_taesd_open(be, p, &t, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "tensor 8.conv.2.weight missing"));
    assert_null(t);
    memset(&err, 0, sizeof err);
    assert_int_equal(taesd_test_write(p, true, true, 3, NULL, "decoder.layers.6.weight", &err),
                     0);
    assert_int_equal(mx_sd_taesd_open(be, p, &t, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "decoder.layers.6.weight has shape [32, 64, 3, 3], "
                                    "expected [64, 64, 3, 3]"));
    memset(&err, 0, sizeof err);
    /* a safetensors file that is not a TAESD decoder */
    struct mx_st_writer *w = mx_st_writer_new();
    float one = 1;
    assert_int_equal(mx_st_writer_add_tensor(w, "x", MX_ST_F32, 1, (int64_t[]){1}, &one), 0);
    assert_int_equal(mx_st_writer_write(w, p, &err), 0);
    mx_st_writer_free(w);
    assert_int_equal(mx_sd_taesd_open(be, p, &t, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "not a TAESD decoder"));
    unlink(p);
    free(p);
    mx_backend_free(be);
}

static void test_linear(void **state) {
    (void)state;
    /* 2x1 latent: pixel 0 = channel 0 only (1.0), pixel 1 = channel 3 only (-1.0) */
    float z[8] = {1, 0, 0, 0, 0, 0, 0, -1};
    struct mx_image img;
    assert_int_equal(mx_sd_preview_linear(MX_SD_PREVIEW_SD1, z, 2, 1, &img), 0);
    assert_int_equal(img.w, 2);
    /* SD15 row 0 (0.3512, 0.2297, 0.3227): (v + 1) / 2 * 255, rounded */
    assert_int_equal(img.rgb[0], (int)lrintf((0.3512f + 1) / 2 * 255));
    assert_int_equal(img.rgb[1], (int)lrintf((0.2297f + 1) / 2 * 255));
    assert_int_equal(img.rgb[2], (int)lrintf((0.3227f + 1) / 2 * 255));
    /* -row 3 (-0.2120, -0.2616, -0.7177) */
    assert_int_equal(img.rgb[3], (int)lrintf((0.2120f + 1) / 2 * 255));
    assert_int_equal(img.rgb[5], (int)lrintf((0.7177f + 1) / 2 * 255));
    mx_image_free(&img);
    assert_int_equal(mx_sd_preview_linear(MX_SD_PREVIEW_SDXL, z, 2, 1, &img), 0);
    assert_int_equal(img.rgb[0], (int)lrintf((0.3920f + 1) / 2 * 255));
    mx_image_free(&img);
}

static void test_due(void **state) {
    (void)state;
    struct mx_sd_preview *pv;
    struct mx_err err = {0};
    assert_int_equal(mx_sd_preview_new(NULL, MX_SD_PREVIEW_SD1, NULL, 0, &pv, &err), 0);
    float z[4 * 64] = {0};
    struct mx_sd_progress p = {.phase = MX_SD_PHASE_SAMPLE, .steps = 100, .step_s = 1.0,
                               .latent = z, .lw = 8, .lh = 8};
    struct mx_image img;
    p.step = 1;
    assert_true(mx_sd_preview_due(pv, &p)); /* the first at once */
    assert_int_equal(mx_sd_preview_make(pv, &p, 64, 64, &img, &err), 0);
    assert_int_equal(img.w, 64);
    assert_int_equal(img.h, 64);
    mx_image_free(&img);
    assert_int_equal(mx_sd_preview_count(pv), 1);
    p.step = 2;
    assert_true(mx_sd_preview_due(pv, &p)); /* the linear map costs next to nothing */
    p.latent = NULL;
    assert_false(mx_sd_preview_due(pv, &p));
    mx_sd_preview_free(pv);
    assert_int_equal(mx_sd_preview_new(NULL, MX_SD_PREVIEW_SD1, NULL, 3, &pv, &err), 0);
    p.latent = z;
    int made = 0;
    for (p.step = 1; p.step <= 10; p.step++)
        if (mx_sd_preview_due(pv, &p)) {
            assert_int_equal(mx_sd_preview_make(pv, &p, 0, 0, &img, &err), 0);
            mx_image_free(&img);
            made++;
        }
    assert_int_equal(made, 4); /* steps 1, 4, 7, 10 */
    mx_sd_preview_free(pv);
}

static void test_latent_modes(void **state) {
    (void)state;
    /* [[0, 1], [2, 3]] in every channel, 2x2 -> 4x4 */
    float in[16], out[64];
    for (int c = 0; c < 4; c++)
        for (int i = 0; i < 4; i++)
            in[c * 4 + i] = (float)i;
    mx_sd_latent_upscale(MX_SD_UP_LATENT, in, 2, 2, out, 4, 4);
    /* torch F.interpolate(bilinear, align_corners=False): source x = (d + 0.5) / 2 - 0.5,
     * clamped at 0: rows 0 and 1 by hand */
    const float r0[4] = {0, 0.25f, 0.75f, 1}, r1[4] = {0.5f, 0.75f, 1.25f, 1.5f};
    for (int c = 0; c < 4; c++)
        for (int x = 0; x < 4; x++) {
            assert_float_equal(out[c * 16 + x], r0[x], 1e-6);
            assert_float_equal(out[c * 16 + 4 + x], r1[x], 1e-6);
        }
    mx_sd_latent_upscale(MX_SD_UP_LATENT_NEAREST, in, 2, 2, out, 4, 4);
    const float n0[4] = {0, 0, 1, 1};
    for (int x = 0; x < 4; x++)
        assert_true(out[x] == n0[x] && out[12 + x] == n0[x] + 2);
    /* 2 -> 3: nearest floor(d * 2/3) = 0, 0, 1; nearest-exact floor((d + .5) 2/3) = 0, 1, 1 */
    float o3[36];
    mx_sd_latent_upscale(MX_SD_UP_LATENT_NEAREST, in, 2, 2, o3, 3, 3);
    assert_true(o3[0] == 0 && o3[1] == 0 && o3[2] == 1);
    mx_sd_latent_upscale(MX_SD_UP_LATENT_NEAREST_EXACT, in, 2, 2, o3, 3, 3);
    assert_true(o3[0] == 0 && o3[1] == 1 && o3[2] == 1);
    /* bicubic on a ramp 0, 1, 2, 3: at source 1.25 the weights (t = 0.25, A = -0.75) are
     * -0.10546875, 0.87890625, 0.26171875, -0.03515625 over 0..3 -> 1.296875 (A = -0.75 does not
     * keep a ramp straight: torch's values); at 1.75 the mirror image, 3 - 1.296875 */
    float ramp[4 * 16], big[4 * 64];
    for (int c = 0; c < 4; c++)
        for (int y = 0; y < 4; y++)
            for (int x = 0; x < 4; x++)
                ramp[c * 16 + y * 4 + x] = (float)x;
    mx_sd_latent_upscale(MX_SD_UP_LATENT_BICUBIC, ramp, 4, 4, big, 8, 8);
    assert_float_equal(big[3 * 8 + 3], 1.296875f, 1e-6);
    assert_float_equal(big[3 * 8 + 4], 1.703125f, 1e-6);
}

static void test_hires_sizes(void **state) {
    (void)state;
    struct mx_sd_hires h;
    struct mx_err err = {0};
    int uw, uh, w, hh;
    mx_sd_hires_default(&h);
    h.scale = 1.5f;
    assert_int_equal(mx_sd_hires_sizes(&h, 512, 512, &uw, &uh, &w, &hh, &err), 0);
    assert_true(uw == 768 && uh == 768 && w == 768 && hh == 768);
    h.width = 1024; /* height from the aspect ratio */
    assert_int_equal(mx_sd_hires_sizes(&h, 512, 768, &uw, &uh, &w, &hh, &err), 0);
    assert_true(w == 1024 && hh == 1536);
    h.height = 768; /* both: cover 1024x768 from 512x512 -> 1024x1024, crop to 1024x768 */
    assert_int_equal(mx_sd_hires_sizes(&h, 512, 512, &uw, &uh, &w, &hh, &err), 0);
    assert_true(uw == 1024 && uh == 1024 && w == 1024 && hh == 768);
    h.width = 0;
    h.height = 0;
    h.scale = 1.3f; /* 512 * 1.3 = 665 -> 664: not a multiple of 64 */
    assert_int_equal(mx_sd_hires_sizes(&h, 512, 512, &uw, &uh, &w, &hh, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "multiples of 64"));
    int u;
    memset(&err, 0, sizeof err);
    assert_int_equal(mx_sd_upscaler_parse("Latent (bicubic)", &u, &err), 0);
    assert_int_equal(u, MX_SD_UP_LATENT_BICUBIC);
    assert_int_equal(mx_sd_upscaler_parse("lanczos", &u, &err), 0);
    assert_int_equal(u, MX_SD_UP_LANCZOS);
    assert_int_equal(mx_sd_upscaler_parse("ESRGAN_4x", &u, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "unknown upscaler 'ESRGAN_4x'"));
}

static void test_hires_infotext(void **state) {
    (void)state;
    struct mx_sd_params par;
    mx_sd_params_default(&par, NULL);
    par.prompt = "a fox";
    struct mx_sd_hires h;
    mx_sd_hires_default(&h);
    h.enabled = true;
    h.strength = 0.55f;
    h.steps = 10;
    char *text;
    struct mx_err err = {0};
    assert_int_equal(mx_sd_params_to_infotext_full(&par, &h, 42, "/m/v1-5.safetensors", NULL,
                                                   NULL, NULL, &text, &err), 0);
    assert_non_null(strstr(text, "Size: 512x512, Model: v1-5, Denoising strength: 0.55, "));
    assert_non_null(strstr(text, "Hires upscale: 2, Hires steps: 10, Hires upscaler: Latent"));
    /* and back, as --from-png reads it */
    struct mx_sd_infotext it;
    assert_int_equal(mx_sd_infotext_parse(text, strlen(text), &it, &err), 0);
    struct mx_sd_hires back;
    mx_sd_hires_default(&back);
    assert_int_equal(mx_sd_hires_from_infotext(&it, &back, &err), 0);
    assert_true(back.enabled && back.scale == 2.0f && back.steps == 10 &&
                back.strength == 0.55f && back.upscaler == MX_SD_UP_LATENT);
    mx_sd_infotext_free(&it);
    free(text);
    h.steps = 0;
    h.width = 1024;
    h.height = 768;
    h.upscaler = MX_SD_UP_LANCZOS;
    h.scale = 1.5f;
    assert_int_equal(mx_sd_params_to_infotext_full(&par, &h, 42, NULL, NULL, NULL, NULL, &text, &err),
                     0);
    assert_non_null(strstr(text, "Hires resize: 1024x768, Hires upscaler: Lanczos"));
    assert_null(strstr(text, "Hires steps"));
    assert_null(strstr(text, "Hires upscale:"));
    free(text);
    h.enabled = false; /* off: no hires key, no strength */
    assert_int_equal(mx_sd_params_to_infotext_full(&par, &h, 42, NULL, NULL, NULL, NULL, &text, &err),
                     0);
    assert_null(strstr(text, "Hires"));
    assert_null(strstr(text, "Denoising"));
    free(text);
}

static void test_resample(void **state) {
    (void)state;
    struct mx_image src = {.w = 5, .h = 3, .rgb = malloc(45)}, out;
    for (int i = 0; i < 45; i++)
        src.rgb[i] = (uint8_t)(i * 37 % 251);
    /* the same size: a copy */
    assert_int_equal(mx_image_resample(&src, 5, 3, MX_RESAMPLE_LANCZOS, &out), 0);
    assert_memory_equal(out.rgb, src.rgb, 45);
    mx_image_free(&out);
    /* nearest x2: each pixel twice in each direction */
    assert_int_equal(mx_image_resample(&src, 10, 6, MX_RESAMPLE_NEAREST, &out), 0);
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 10; x++)
            assert_memory_equal(out.rgb + (y * 10 + x) * 3, src.rgb + (y / 2 * 5 + x / 2) * 3, 3);
    mx_image_free(&out);
    /* lanczos of a flat image stays flat (the weights sum to one in fixed point) */
    memset(src.rgb, 200, 45);
    assert_int_equal(mx_image_resample(&src, 13, 7, MX_RESAMPLE_LANCZOS, &out), 0);
    for (int i = 0; i < 13 * 7 * 3; i++)
        assert_int_equal(out.rgb[i], 200);
    mx_image_free(&out);
    assert_int_equal(mx_image_resample(&src, 0, 7, MX_RESAMPLE_LANCZOS, &out), MX_EINVAL);
    mx_image_free(&src);
}

static void test_grid(void **state) {
    (void)state;
    /* A1111 (n_rows -1): rows = round(sqrt(n)), cols = ceil(n / rows) */
    const int rows[11] = {0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3};
    for (int n = 1; n <= 10; n++)
        assert_int_equal(mx_image_grid_rows(n), rows[n]);
    struct mx_image im[3], g;
    for (int i = 0; i < 3; i++) {
        im[i].w = 2;
        im[i].h = 1;
        im[i].rgb = malloc(6);
        memset(im[i].rgb, 10 * (i + 1), 6);
    }
    assert_int_equal(mx_image_grid(im, 3, 0, &g), 0); /* 2 rows x 2 cols */
    assert_int_equal(g.w, 4);
    assert_int_equal(g.h, 2);
    const uint8_t want[8] = {10, 10, 20, 20, 30, 30, 0, 0}; /* R of each pixel */
    for (int i = 0; i < 8; i++)
        assert_int_equal(g.rgb[3 * i], want[i]);
    mx_image_free(&g);
    assert_int_equal(mx_image_grid(im, 3, 4, &g), MX_EINVAL);
    for (int i = 0; i < 3; i++)
        mx_image_free(&im[i]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layouts),      cmocka_unit_test(test_refused),
        cmocka_unit_test(test_linear),       cmocka_unit_test(test_due),
        cmocka_unit_test(test_latent_modes), cmocka_unit_test(test_hires_sizes),
        cmocka_unit_test(test_hires_infotext), cmocka_unit_test(test_resample),
        cmocka_unit_test(test_grid),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
