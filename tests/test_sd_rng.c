/* test_sd_rng.c - the SD noise generators against their references: stable-diffusion.cpp's dumps
 * in ../shared/refs/sd/noise (4 consecutive randn(N) after seeding, N = 256 and 1024, all three
 * kinds, bit for bit), the first values the refs README and PyTorch publish, and the structure
 * each generator must have (Philox prefix property and per-call offset, torch CPU's overlapping
 * tail block and small-n double path, libstdc++'s spare dropped between calls); name parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/rng.h"
#include "tests/mx_test.h"

/* Draws one randn(n) after seeding. */
static void draw(enum mx_sd_rng_kind kind, uint64_t seed, float *out, int64_t n) {
    struct mx_sd_rng r;
    mx_sd_rng_init(&r, kind, seed);
    mx_sd_rng_randn(&r, out, n);
}

/* Every file of refs/sd/noise reproduced bit for bit: 4 calls on one generator object. */
static void test_noise_files_bit_exact(void **state) {
    (void)state;
    const char *shared = mx_test_shared_dir();
    if (!shared) {
        mx_test_skip("refs/sd/noise needs ../shared (set MX_SHARED); it is absent here");
        return;
    }
    const char *kinds[] = {"cuda", "cpu", "std_default"};
    const int seeds[] = {42, 1234};
    const int ns[] = {256, 1024};
    int n_files = 0;
    for (int k = 0; k < 3; k++)
        for (int s = 0; s < 2; s++)
            for (int q = 0; q < 2; q++) {
                char path[1024];
                snprintf(path, sizeof path, "%s/refs/sd/noise/%s_seed%d_n%d_x4.f32", shared,
                         kinds[k], seeds[s], ns[q]);
                int n = ns[q];
                float *ref = malloc(sizeof(float) * 4 * (size_t)n);
                float *got = malloc(sizeof(float) * 4 * (size_t)n);
                assert_non_null(ref);
                assert_non_null(got);
                FILE *f = fopen(path, "rb");
                if (!f)
                    fail_msg("%s: cannot open", path);
                assert_int_equal(fread(ref, sizeof(float), 4 * (size_t)n, f), 4 * (size_t)n);
                fclose(f);
                int kind = -1;
                assert_int_equal(mx_sd_rng_parse(kinds[k], &kind, NULL), 0);
                struct mx_sd_rng r;
                mx_sd_rng_init(&r, kind, (uint64_t)seeds[s]);
                for (int c = 0; c < 4; c++)
                    mx_sd_rng_randn(&r, got + (size_t)c * n, n);
                for (int i = 0; i < 4 * n; i++)
                    if (memcmp(&ref[i], &got[i], sizeof(float)) != 0)
                        fail_msg("%s: value %d (call %d) is %.9g, expected %.9g", path, i, i / n,
                                 got[i], ref[i]);
                free(ref);
                free(got);
                n_files++;
            }
    assert_int_equal(n_files, 12);
}

/* The refs README's first values of seed 42 (cuda and cpu), and PyTorch's well-known
 * torch.manual_seed(42); torch.randn(k) for k < 16, which takes the double Box-Muller path:
 * [0.3367, 0.1288, 0.2345, 0.2303, -1.1229]. */
static void test_published_first_values(void **state) {
    (void)state;
    float v[16];
    draw(MX_SD_RNG_CUDA, 42, v, 4);
    const float cuda42[] = {0.1940189f, 2.1613739f, -0.1720506f, 0.8490601f};
    for (int i = 0; i < 4; i++)
        assert_float_equal(v[i], cuda42[i], 1e-6);
    draw(MX_SD_RNG_CPU, 42, v, 16);
    assert_float_equal(v[0], 1.9269154f, 1e-6);
    assert_float_equal(v[1], 1.4872841f, 1e-6);
    draw(MX_SD_RNG_CPU, 42, v, 5);
    const float small42[] = {0.3367f, 0.1288f, 0.2345f, 0.2303f, -1.1229f};
    for (int i = 0; i < 5; i++)
        assert_float_equal(v[i], small42[i], 6e-5);
}

/* Philox: element i depends only on (seed, offset, i), so a shorter draw is a prefix of a longer
 * one, and each call moves to the next offset whatever its length. */
static void test_philox_prefix_and_offset(void **state) {
    (void)state;
    float a[300], b[7], c[300];
    draw(MX_SD_RNG_CUDA, 7, a, 300);
    draw(MX_SD_RNG_CUDA, 7, b, 7);
    assert_memory_equal(a, b, sizeof b);
    struct mx_sd_rng r, r2;
    mx_sd_rng_init(&r, MX_SD_RNG_CUDA, 7);
    mx_sd_rng_randn(&r, b, 3); /* offset 0 -> 1, however few values */
    mx_sd_rng_randn(&r, c, 300);
    mx_sd_rng_init(&r2, MX_SD_RNG_CUDA, 7);
    mx_sd_rng_randn(&r2, a, 300);
    mx_sd_rng_randn(&r2, a, 300);
    assert_memory_equal(a, c, sizeof c);
    /* the upper 32 bits of the seed are the key's second word */
    draw(MX_SD_RNG_CUDA, 7, a, 7);
    draw(MX_SD_RNG_CUDA, 7 + (UINT64_C(1) << 32), b, 7);
    assert_memory_not_equal(a, b, sizeof b);
}

/* torch CPU, n >= 16 with a tail: randn(20) draws uniforms u0..u19, fills the block u0..u15,
 * then redraws the last 16 slots from u20..u35 and fills them. So values 0..3 equal randn(16)'s,
 * and values 4..19 equal a randn(16) made after exactly 20 words were used - which randn(10)
 * does (five double Box-Muller pairs of two 64-bit draws, no spare left). */
static void test_mt_tail_block(void **state) {
    (void)state;
    float a[20], b[16], skip[10], t[16];
    draw(MX_SD_RNG_CPU, 42, a, 20);
    draw(MX_SD_RNG_CPU, 42, b, 16);
    assert_memory_equal(a, b, 4 * sizeof(float));
    struct mx_sd_rng r;
    mx_sd_rng_init(&r, MX_SD_RNG_CPU, 42);
    mx_sd_rng_randn(&r, skip, 10);
    mx_sd_rng_randn(&r, t, 16);
    assert_memory_equal(a + 4, t, sizeof t);
    /* and a whole number of blocks has no tail: randn(32) starts with randn(16) */
    float d[32];
    draw(MX_SD_RNG_CPU, 42, d, 32);
    assert_memory_equal(d, b, sizeof b);
}

/* torch CPU small path: the double spare survives between calls (randn(1) twice equals
 * randn(2)); a reseed drops it. */
static void test_mt_small_spare(void **state) {
    (void)state;
    float two[2], one[2];
    draw(MX_SD_RNG_CPU, 5, two, 2);
    struct mx_sd_rng r;
    mx_sd_rng_init(&r, MX_SD_RNG_CPU, 5);
    mx_sd_rng_randn(&r, &one[0], 1);
    mx_sd_rng_randn(&r, &one[1], 1);
    assert_memory_equal(two, one, sizeof two);
    mx_sd_rng_init(&r, MX_SD_RNG_CPU, 5);
    mx_sd_rng_randn(&r, &one[0], 1);
    assert_memory_equal(two, one, sizeof(float));
}

/* std_default: a new distribution per call, so an odd call's spare is dropped: randn(3) then
 * randn(2) gives values 4 and 5 of randn(6) (pairs 1, 2 consumed, pair 3 drawn afresh). */
static void test_std_spare_dropped(void **state) {
    (void)state;
    float six[6], three[3], two[2];
    draw(MX_SD_RNG_STD_DEFAULT, 42, six, 6);
    struct mx_sd_rng r;
    mx_sd_rng_init(&r, MX_SD_RNG_STD_DEFAULT, 42);
    mx_sd_rng_randn(&r, three, 3);
    mx_sd_rng_randn(&r, two, 2);
    assert_memory_equal(three, six, sizeof three);
    assert_memory_equal(two, six + 4, sizeof two);
    /* seed 0 is minstd's forbidden state: seeded as 1, so it differs from nothing else */
    float z[4], o[4];
    draw(MX_SD_RNG_STD_DEFAULT, 0, z, 4);
    draw(MX_SD_RNG_STD_DEFAULT, 1, o, 4);
    assert_memory_equal(z, o, sizeof z);
}

/* Names: the peer's --rng names, case-insensitive; unknown names list the valid ones. */
static void test_names(void **state) {
    (void)state;
    int k = -1;
    assert_int_equal(mx_sd_rng_parse("CUDA", &k, NULL), 0);
    assert_int_equal(k, MX_SD_RNG_CUDA);
    assert_int_equal(mx_sd_rng_parse("cpu", &k, NULL), 0);
    assert_int_equal(k, MX_SD_RNG_CPU);
    assert_int_equal(mx_sd_rng_parse("std_default", &k, NULL), 0);
    assert_int_equal(k, MX_SD_RNG_STD_DEFAULT);
    assert_int_equal(mx_sd_rng_parse("GPU", &k, NULL), 0);
    assert_int_equal(k, MX_SD_RNG_CUDA);
    struct mx_err err = {0};
    assert_int_equal(mx_sd_rng_parse("philox", &k, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "philox"));
    assert_non_null(strstr(err.msg, "std_default"));
    for (int i = 0; i < MX_SD_RNG_COUNT; i++) {
        assert_int_equal(mx_sd_rng_parse(mx_sd_rng_name(i), &k, NULL), 0);
        assert_int_equal(k, i);
    }
    assert_string_equal(mx_sd_rng_name(99), "unknown");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_noise_files_bit_exact),
        cmocka_unit_test(test_published_first_values),
        cmocka_unit_test(test_philox_prefix_and_offset),
        cmocka_unit_test(test_mt_tail_block),
        cmocka_unit_test(test_mt_small_spare),
        cmocka_unit_test(test_std_spare_dropped),
        cmocka_unit_test(test_names),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
