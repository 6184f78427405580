/* test_quant_iq.c - the IQ quant types: dequantization bit-exact against ggml's
 * dequantize_row_iq* (goldens whose grid indices run through every table entry), the IQ4_NL /
 * IQ4_XS quantizers byte-identical to ggml's (reference and llama-quantize variants, with and
 * without importance weights), and the vec_dot kernels: the scalar integer dots against the
 * dequantized float dot, and every SIMD level against the scalar one; the repacked IQ4_XS and
 * IQ4_NL layouts and their 8-row GEMMs. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/err.h"
#include "core/base/quant.h"
#include "core/base/quant_iq.h"
#include "core/base/util.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/kernels_iq.h"
#include "tests/mx_test.h"

static const int iq_types[] = {
    MX_TYPE_IQ2_XXS, MX_TYPE_IQ2_XS, MX_TYPE_IQ2_S,  MX_TYPE_IQ3_XXS, MX_TYPE_IQ3_S,
    MX_TYPE_IQ1_S,   MX_TYPE_IQ1_M,  MX_TYPE_IQ4_NL, MX_TYPE_IQ4_XS,
};

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* Reads tests/golden/quant/<file> whole (fails when absent: the goldens are committed). */
static uint8_t *read_golden(const char *file, size_t *size) {
    const char *src = getenv("MX_SRCDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/golden/quant/%s", src ? src : ".", file);
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("golden %s missing", path);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long sz = ftell(f);
    assert_true(sz >= 0);
    rewind(f);
    uint8_t *buf = xmalloc((size_t)sz);
    assert_int_equal(fread(buf, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *size = (size_t)sz;
    return buf;
}

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The float rows of inputs.bin (see make_goldens.py). */
struct cases {
    int n;
    uint32_t len[32];
    float *x[32];
};

static void load_cases(struct cases *c) {
    size_t size;
    uint8_t *buf = read_golden("inputs.bin", &size);
    assert_true(size >= 12 && memcmp(buf, "MXQG", 4) == 0 && rd32(buf + 4) == 1);
    c->n = (int)rd32(buf + 8);
    assert_true(c->n > 0 && c->n <= 32);
    size_t off = 12;
    for (int i = 0; i < c->n; i++) {
        assert_true(off + 4 <= size);
        c->len[i] = rd32(buf + off);
        off += 4;
        assert_true(c->len[i] <= (size - off) / 4);
        c->x[i] = xmalloc(c->len[i] * sizeof(float));
        memcpy(c->x[i], buf + off, c->len[i] * sizeof(float));
        off += c->len[i] * sizeof(float);
    }
    assert_int_equal(off, size);
    free(buf);
}

static void free_cases(struct cases *c) {
    for (int i = 0; i < c->n; i++)
        free(c->x[i]);
}

/* ---- tables -------------------------------------------------------------------------------- */

/* The sign table is 7 bits plus an even-parity 8th bit; the IQ4 levels are sorted (the
 * quantizer's binary search needs it). The grids themselves are checked by the goldens. */
static void test_tables(void **state) {
    (void)state;
    for (int i = 0; i < 128; i++) {
        int par = __builtin_popcount((unsigned)i) & 1;
        assert_int_equal(mx_ksigns_iq2xs[i], i | (par << 7));
    }
    for (int i = 1; i < 16; i++)
        assert_true(mx_kvalues_iq4nl[i - 1] < mx_kvalues_iq4nl[i]);
    for (int i = 0; i < 2048; i++) /* IQ1 grids are ternary */
        for (int j = 0; j < 8; j++) {
            int8_t v = (int8_t)(mx_iq1s_grid[i] >> (8 * j));
            assert_true(v >= -1 && v <= 1);
        }
}

/* ---- dequantization ------------------------------------------------------------------------ */

/* dq_<type>.bin: nb blocks, then ggml's nb * blck floats for them. Bit-identical, and the same
 * through an odd byte offset (rows sit anywhere in a mapped file). */
static void test_golden_dequant(void **state) {
    (void)state;
    for (size_t i = 0; i < MX_ARRAY_LEN(iq_types); i++) {
        const struct mx_type_traits *t = mx_type_traits(iq_types[i]);
        assert_non_null(t);
        char file[64];
        snprintf(file, sizeof file, "dq_%s.bin", t->name);
        size_t size;
        uint8_t *buf = read_golden(file, &size);
        size_t per = t->type_size + (size_t)t->blck_size * 4;
        assert_int_equal(size % per, 0);
        int64_t nb = (int64_t)(size / per), n = nb * t->blck_size;
        size_t bytes = (size_t)nb * t->type_size;
        float *got = xmalloc((size_t)n * sizeof(float));
        uint8_t *odd = xmalloc(bytes + 1);
        memcpy(odd + 1, buf, bytes);
        for (int pass = 0; pass < 2; pass++) {
            memset(got, 0xff, (size_t)n * sizeof(float));
            assert_int_equal(mx_dequantize_row(iq_types[i], pass ? odd + 1 : buf, got, n), 0);
            for (int64_t k = 0; k < n; k++) {
                float w;
                memcpy(&w, buf + bytes + 4 * k, 4);
                if (memcmp(&w, &got[k], 4) != 0)
                    fail_msg("%s: value %lld is %.9g, ggml gives %.9g", t->name, (long long)k,
                             got[k], w);
            }
        }
        printf("%-8s %lld blocks dequantized as ggml does\n", t->name, (long long)nb);
        free(odd);
        free(got);
        free(buf);
    }
}

/* Whether a row has a 32-value group with every |x| < 1e-15 (ggml's IQ4_NL reference quantizer
 * leaves such a group's indices uninitialised, so make_goldens.py leaves those rows out). */
static bool has_zero_group(const float *x, uint32_t n) {
    for (uint32_t g = 0; g < n / 32; g++) {
        float amax = 0;
        for (int j = 0; j < 32; j++)
            amax = fmaxf(amax, fabsf(x[32 * g + j]));
        if (amax < 1e-15f)
            return true;
    }
    return false;
}

/* Compares n bytes with a golden at *off and advances it. */
static void cmp_bytes(const char *what, const char *cname, const uint8_t *got,
                      const uint8_t *want, size_t want_size, size_t *off, size_t n,
                      size_t block) {
    assert_true(*off + n <= want_size);
    for (size_t k = 0; k < n; k++)
        if (got[k] != want[*off + k])
            fail_msg("%s case %s: byte %zu (block %zu, offset %zu) is 0x%02x, ggml 0x%02x",
                     what, cname, k, k / block, k % block, got[k], want[*off + k]);
    *off += n;
}

/* IQ4_NL / IQ4_XS quantizers: <type>.bin = quantize_row_*_ref (mx_quantize_row), <type>_w.bin =
 * quantize_iq4_* as llama-quantize calls it, per row without and then with importance weights
 * qw[i] = 0.25 + (i % 11) / 4. */
static void test_golden_quantize(void **state) {
    (void)state;
    static const int types[] = {MX_TYPE_IQ4_NL, MX_TYPE_IQ4_XS};
    struct cases c;
    load_cases(&c);
    for (size_t ti = 0; ti < 2; ti++) {
        const struct mx_type_traits *t = mx_type_traits(types[ti]);
        char file[64];
        size_t rsize, wsize, roff = 0, woff = 0;
        snprintf(file, sizeof file, "%s.bin", t->name);
        uint8_t *ref = read_golden(file, &rsize);
        snprintf(file, sizeof file, "%s_w.bin", t->name);
        uint8_t *wq = read_golden(file, &wsize);
        int n_rows = 0;
        for (int i = 0; i < c.n; i++) {
            uint32_t n = c.len[i];
            if (n % t->blck_size)
                continue;
            size_t bytes;
            assert_true(mx_row_size(types[ti], n, &bytes));
            uint8_t *got = xmalloc(bytes + 1);
            float *qw = xmalloc(n * sizeof(float));
            for (uint32_t k = 0; k < n; k++)
                qw[k] = 0.25f + (float)(k % 11) / 4.0f;
            char cname[16];
            snprintf(cname, sizeof cname, "%d", i);
            if (types[ti] == MX_TYPE_IQ4_XS || !has_zero_group(c.x[i], n)) {
                assert_int_equal(mx_quantize_row(types[ti], c.x[i], got + 1, n), 0);
                cmp_bytes(t->name, cname, got + 1, ref, rsize, &roff, bytes, t->type_size);
            }
            for (int w = 0; w < 2; w++) {
                memset(got, 0x5a, bytes + 1);
                if (types[ti] == MX_TYPE_IQ4_NL)
                    mx_quantize_iq4_nl(c.x[i], got + 1, n, w ? qw : NULL);
                else
                    mx_quantize_iq4_xs(c.x[i], got + 1, n, w ? qw : NULL);
                cmp_bytes(w ? "weighted" : "unweighted", cname, got + 1, wq, wsize, &woff,
                          bytes, t->type_size);
            }
            n_rows++;
            free(qw);
            free(got);
        }
        assert_int_equal(roff, rsize);
        assert_int_equal(woff, wsize);
        printf("%-8s %d rows quantized as ggml does\n", t->name, n_rows);
        free(ref);
        free(wq);
    }
    free_cases(&c);
}

/* The round trip stays within a few percent of the row's scale (a sanity bound: IQ4 levels are
 * at most 24/127 apart, so half a step of the largest scale). */
static void test_roundtrip(void **state) {
    (void)state;
    uint64_t rng = 16;
    int64_t n = 1024;
    float *x = xmalloc((size_t)n * 4), *y = xmalloc((size_t)n * 4);
    uint8_t *q = xmalloc((size_t)n);
    for (int64_t i = 0; i < n; i++)
        x[i] = mx_test_randf(&rng);
    static const int types[] = {MX_TYPE_IQ4_NL, MX_TYPE_IQ4_XS};
    for (int ti = 0; ti < 2; ti++) {
        assert_int_equal(mx_quantize_row(types[ti], x, q, n), 0);
        assert_int_equal(mx_dequantize_row(types[ti], q, y, n), 0);
        for (int64_t i = 0; i < n; i++)
            if (fabsf(y[i] - x[i]) > 0.12f)
                fail_msg("%s: value %lld: %g -> %g", mx_type_name(types[ti]), (long long)i,
                         x[i], y[i]);
    }
    free(x);
    free(y);
    free(q);
}

/* ---- kernels -------------------------------------------------------------------------------- */

/* A random row of n values of an IQ type: random bytes, every block's fp16 scale a finite half
 * of moderate size (IQ1_M keeps it in the top nibbles of its 4 scale words). */
static void random_row(int type, int64_t n, uint8_t *w, uint64_t *rng) {
    const struct mx_type_traits *t = mx_type_traits(type);
    size_t bytes = (size_t)(n / t->blck_size) * t->type_size;
    for (size_t i = 0; i < bytes; i++)
        w[i] = (uint8_t)mx_test_rand(rng);
    for (size_t off = 0; off < bytes; off += t->type_size) {
        uint16_t h = mx_fp32_to_fp16(mx_test_randf(rng) * 0.01f);
        if (type == MX_TYPE_IQ1_M) {
            for (int k = 0; k < 4; k++) {
                uint16_t v;
                memcpy(&v, w + off + 48 + 2 * k, 2);
                v = (uint16_t)((v & 0x0fff) | (((h >> (4 * k)) & 15) << 12));
                memcpy(w + off + 48 + 2 * k, &v, 2);
            }
        } else {
            memcpy(w + off, &h, 2);
        }
    }
}

/* The activation row as floats (Q8_K: q * d; Q8_0: q * fp16 d). */
static void act_to_float(enum mx_type vt, const void *xq, float *x, int64_t n) {
    assert_int_equal(mx_dequantize_row(vt, xq, x, n), 0);
}

/* The scalar integer dots equal the dot of the dequantized weights and activations: the
 * integer path decodes grids, signs, scales and shifts the way dequantization does. Bound: both
 * sides are float sums of the same products (each within a few ulps), so 1e-5 of sum |w x|. */
static void test_scalar_vec_dot(void **state) {
    (void)state;
    uint64_t rng = 1616;
    int64_t n = 1024;
    uint8_t *w = xmalloc((size_t)n * 2), *xq = xmalloc((size_t)n * 2);
    float *wf = xmalloc((size_t)n * 4), *x = xmalloc((size_t)n * 4), *xf = xmalloc((size_t)n * 4);
    for (size_t ti = 0; ti < MX_ARRAY_LEN(iq_types); ti++) {
        int type = iq_types[ti];
        enum mx_type vt = mx_vec_dot_type((enum mx_type)type);
        assert_true(vt == (type == MX_TYPE_IQ4_NL ? MX_TYPE_Q8_0 : MX_TYPE_Q8_K));
        assert_non_null(mx_iq_vec_dot_scalar[type]);
        for (int rep = 0; rep < 30; rep++) {
            random_row(type, n, w, &rng);
            for (int64_t i = 0; i < n; i++)
                x[i] = mx_test_randf(&rng) * (float)(1 + rep % 5);
            mx_quantize_act(vt, x, xq, n);
            assert_int_equal(mx_dequantize_row(type, w, wf, n), 0);
            act_to_float(vt, xq, xf, n);
            double exact = 0, mag = 0;
            for (int64_t i = 0; i < n; i++) {
                exact += (double)wf[i] * xf[i];
                mag += fabs((double)wf[i] * xf[i]);
            }
            float got = mx_iq_vec_dot_scalar[type](n, w, xq);
            if (!(fabs(got - exact) <= 1e-5 * mag + 1e-30))
                fail_msg("%s rep %d: integer dot %.9g, dequantized dot %.9g (sum |wx| %g)",
                         mx_type_name(type), rep, got, exact, mag);
        }
    }
    free(w), free(xq), free(wf), free(x), free(xf);
}

/* Every kernel level's IQ vec_dot and dequantizer equals the scalar one bit for bit (the AVX2
 * set is checked on AVX-512 CPUs too, by asking for that level). */
static void test_simd_equals_scalar(void **state) {
    (void)state;
    static const int levels[] = {MX_CPU_AVX2, MX_CPU_AVX512};
    uint64_t rng = 4242;
    int64_t n = 7 * 256; /* odd block counts: the 2-block loops and their tails; and 1 block */
    uint8_t *w = xmalloc((size_t)n * 2), *xq = xmalloc((size_t)n * 2);
    float *x = xmalloc((size_t)n * 4), *a = xmalloc((size_t)n * 4), *b = xmalloc((size_t)n * 4);
    for (size_t li = 0; li < MX_ARRAY_LEN(levels); li++) {
        struct mx_cpu_kernels k;
        mx_cpu_kernels_init(&k, levels[li]);
        int n_simd = 0;
        for (size_t ti = 0; ti < MX_ARRAY_LEN(iq_types); ti++) {
            int type = iq_types[ti];
            enum mx_type vt = mx_vec_dot_type((enum mx_type)type);
            assert_non_null(k.vec_dot[type]); /* at least the scalar integer dot */
            bool simd = k.vec_dot[type] != mx_iq_vec_dot_scalar[type];
            if (!simd && !k.dequant[type])
                continue;
            n_simd++;
            for (int rep = 0; rep < 40; rep++) {
                /* 7 super-blocks (IQ4_NL: 55 blocks), every 4th row a single block */
                n = type == MX_TYPE_IQ4_NL ? (rep % 4 == 3 ? 32 : 7 * 256 - 32)
                                           : (rep % 4 == 3 ? 256 : 7 * 256);
                random_row(type, n, w, &rng);
                for (int64_t i = 0; i < n; i++)
                    x[i] = mx_test_randf(&rng) * (float)(1 + rep % 3);
                if (rep == 0) /* the extremes: activations at +-127 against the largest levels */
                    for (int64_t i = 0; i < n; i++)
                        x[i] = i % 2 ? 1.0f : -1.0f;
                mx_quantize_act(vt, x, xq, n);
                float want = mx_iq_vec_dot_scalar[type](n, w, xq), got = k.vec_dot[type](n, w, xq);
                if (memcmp(&want, &got, 4) != 0)
                    fail_msg("%s level %s rep %d: vec_dot %.9g, scalar %.9g", mx_type_name(type),
                             k.name, rep, got, want);
                if (k.dequant[type]) {
                    assert_int_equal(mx_dequantize_row(type, w, a, n), 0);
                    k.dequant[type](w, b, n);
                    for (int64_t i = 0; i < n; i++)
                        if (memcmp(&a[i], &b[i], 4) != 0)
                            fail_msg("%s level %s: dequant value %lld %.9g, scalar %.9g",
                                     mx_type_name(type), k.name, (long long)i, b[i], a[i]);
                }
            }
        }
        printf("kernels '%s': %d IQ types with SIMD kernels equal the scalar ones\n", k.name,
               n_simd);
    }
    free(w), free(xq), free(x), free(a), free(b);
}

/* A random MXFP4 row: random codes, exponents mostly in 110..139 (no overflow to inf), every
 * 8th one 0 or 1 (the subnormal scales). */
static void random_row_mxfp4(int64_t n, uint8_t *w, uint64_t *rng) {
    for (int64_t b = 0; b < n / 32; b++, w += 17) {
        for (int i = 1; i < 17; i++)
            w[i] = (uint8_t)mx_test_rand(rng);
        uint64_t r = mx_test_rand(rng);
        w[0] = (uint8_t)(r % 8 == 0 ? (r >> 3) % 2 : 110 + (r >> 3) % 30);
    }
}

/* The repacked IQ4_XS, IQ4_NL and MXFP4 layouts: every row of an 8-row group dequantizes to the
 * file row's values bit for bit, and each level's 8-row GEMM tile (AVX2 and AVX-512 VNNI, where
 * the CPU has them: all three) gives each column exactly the scalar vec_dot's number for 1-4
 * columns, 1 and 7 super-blocks
 * (IQ4_NL, MXFP4: 1 and 55 blocks), strided output. */
static void test_iq4_repack(void **state) {
    (void)state;
    const struct {
        enum mx_type type;
        enum mx_layout layout;
        int64_t n[2];
        float (*ref)(int64_t n, const void *w, const void *xq);
    } cases[] = {
        {MX_TYPE_IQ4_XS, MX_LAYOUT_IQ4_XSX8, {256, 7 * 256}, mx_iq_vec_dot_scalar[MX_TYPE_IQ4_XS]},
        {MX_TYPE_IQ4_NL, MX_LAYOUT_IQ4_NLX8, {32, 55 * 32}, mx_iq_vec_dot_scalar[MX_TYPE_IQ4_NL]},
        {MX_TYPE_MXFP4, MX_LAYOUT_MXFP4X8, {32, 55 * 32}, mx_vec_dot_mxfp4_q8_0},
    };
    uint64_t rng = 8080;
    const int64_t rows = 16;
    struct mx_cpu_kernels k[2]; /* the AVX2 and the AVX-512 VNNI level's tiles */
    mx_cpu_kernels_init(&k[0], MX_CPU_AVX2);
    mx_cpu_kernels_init(&k[1], MX_CPU_AVX512);
    for (size_t ci = 0; ci < MX_ARRAY_LEN(cases); ci++) {
        const enum mx_type type = cases[ci].type, vt = mx_vec_dot_type(type);
        const enum mx_layout layout = cases[ci].layout;
        int n_gemm = 0;
        assert_int_equal(mx_repack_layout(type), layout);
        for (int shape = 0; shape < 2; shape++) {
            const int64_t n = cases[ci].n[shape];
            size_t row, xq_row;
            assert_true(mx_row_size(type, n, &row));
            assert_true(mx_act_row_size(vt, n, &xq_row));
            uint8_t *w = xmalloc(row * rows), *pk = xmalloc(row * rows);
            uint8_t *xq = xmalloc(4 * xq_row);
            float *a = xmalloc((size_t)n * 4), *b = xmalloc((size_t)n * 4);
            float *x = xmalloc((size_t)n * 4), out[4 * 11];
            for (int rep = 0; rep < 10; rep++) {
                for (int64_t r = 0; r < rows; r++)
                    if (type == MX_TYPE_MXFP4)
                        random_row_mxfp4(n, w + r * row, &rng);
                    else
                        random_row(type, n, w + r * row, &rng);
                mx_repack_rows(layout, w, pk, n, rows);
                for (int64_t r = 0; r < rows; r++) {
                    assert_int_equal(mx_dequantize_row(type, w + r * row, a, n), 0);
                    mx_dequant_x8_row(layout, pk + (r / 8) * 8 * row, (int)(r % 8), b, n);
                    if (memcmp(a, b, (size_t)n * 4) != 0)
                        fail_msg("%s x8 row %lld (n %lld): dequantized values differ",
                                 mx_type_name(type), (long long)r, (long long)n);
                }
                for (int c = 0; c < 4; c++) {
                    for (int64_t i = 0; i < n; i++)
                        x[i] = rep == 0 ? (i % 2 ? 1.0f : -1.0f) /* +-127 */
                                        : mx_test_randf(&rng) * (float)(1 + c);
                    mx_quantize_act(vt, x, xq + c * xq_row, n);
                }
                for (int li = 0; li < 2; li++) {
                    void (*gemm)(int64_t, const void *, const void *, size_t, int, float *,
                                 size_t) = k[li].gemm_x8[layout];
                    if (!gemm || (li == 1 && gemm == k[0].gemm_x8[layout]))
                        continue; /* none, or the AVX2 one again (no AVX-512 CPU) */
                    n_gemm += rep == 0 && shape == 0;
                    for (int nc = 1; nc <= 4; nc++)
                        for (int64_t g = 0; g < rows / 8; g++) {
                            gemm(n, pk + g * 8 * row, xq, xq_row, nc, out, 11);
                            for (int c = 0; c < nc; c++)
                                for (int r = 0; r < 8; r++) {
                                    float want = cases[ci].ref(n, w + (g * 8 + r) * row,
                                                               xq + c * xq_row);
                                    if (memcmp(&want, &out[c * 11 + r], 4) != 0)
                                        fail_msg("%s x8 gemm (%s) n %lld ncols %d col %d row "
                                                 "%lld: %.9g, scalar vec_dot %.9g",
                                                 mx_type_name(type), k[li].name, (long long)n,
                                                 nc, c, (long long)(g * 8 + r),
                                                 out[c * 11 + r], want);
                                }
                        }
                }
            }
            free(w), free(pk), free(xq), free(a), free(b), free(x);
        }
        printf("%s repacked layout: round trip ok; %d 8-row GEMM tiles equal the scalar "
               "vec_dot\n", mx_type_name(type), n_gemm);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_golden_dequant),
        cmocka_unit_test(test_golden_quantize),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_scalar_vec_dot),
        cmocka_unit_test(test_simd_equals_scalar),
        cmocka_unit_test(test_iq4_repack),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
