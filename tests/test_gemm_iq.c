/* test_gemm_iq.c - the IQ1-IQ3 prefill tiles (kernels/cpu/gemm_iq.h): every output of the AVX2
 * and the AVX-512 VNNI tile equals, bit for bit, the scalar vec_dot of its row and column (panel
 * off) or a scalar reference of llama.cpp's IQ panel order (panel on: per super-block
 * fma(isum, dfac x dy, sumf)), over row counts that are not multiples of the 8/16-row groups,
 * column counts that leave partial column blocks, and activations at the +-127 extremes (the
 * unsigned offset and the 16-bit pair sums at their largest); rows past n_rows are never
 * written. And through the backend's matmul: jobs of 8+ columns (a plain matmul, matmul_id's
 * busy experts) give each column the panel reference's bits, as llama.cpp's panel would, and
 * jobs of fewer columns those of a one-column decode (vec_dot), as llama.cpp's vec_dot would. */
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
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gemm_iq.h"
#include "kernels/cpu/kernels_iq.h"
#include "tests/mx_test.h"

static const int tile_types[] = {MX_TYPE_IQ2_XXS, MX_TYPE_IQ2_XS, MX_TYPE_IQ2_S,
                                 MX_TYPE_IQ3_XXS, MX_TYPE_IQ3_S,  MX_TYPE_IQ1_S,
                                 MX_TYPE_IQ1_M};

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* Random blocks with small finite super-scales (IQ1_M keeps its scale in the top nibbles of
 * the 4 scale words). */
static void random_rows(int type, int64_t n, int64_t rows, uint8_t *w, uint64_t *rng) {
    const struct mx_type_traits *t = mx_type_traits(type);
    size_t bytes = (size_t)(n / t->blck_size) * t->type_size * (size_t)rows;
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

/* Column c's activations: random, except column 0 at +-127 everywhere (the largest products
 * and the x + 128 offset at both ends) and column 1 all +127. */
static void random_cols(int64_t n, int64_t ncols, float *x, uint64_t *rng) {
    for (int64_t c = 0; c < ncols; c++)
        for (int64_t i = 0; i < n; i++)
            x[c * n + i] = c == 0 ? (i % 3 ? 1.0f : -1.0f)
                           : c == 1 ? 1.0f
                                    : mx_test_randf(rng) * (float)(1 + c % 4);
}

/* llama.cpp's panel factor 2^-k of each type's super-scale (dfac = d x this; ggml-cpu/iqp.cpp's
 * iqp_decode_*, transcribed). */
static float panel_kfac(int type) {
    return type == MX_TYPE_IQ3_S ? 1.0f : type == MX_TYPE_IQ3_XXS ? 0.25f : 0.125f;
}

/* The fp16 super-scale d of one block (IQ1_M: spread over the top nibbles of its scale words). */
static float block_d(int type, const uint8_t *b) {
    uint16_t h;
    if (type == MX_TYPE_IQ1_M) {
        uint16_t s[4];
        memcpy(s, b + 48, sizeof s);
        h = (uint16_t)((s[0] >> 12) | ((s[1] >> 8) & 0x00f0) | ((s[2] >> 4) & 0x0f00) |
                       (s[3] & 0xf000));
    } else {
        memcpy(&h, b, 2);
    }
    return mx_fp16_to_fp32(h);
}

/* Scalar reference of llama.cpp's IQ panel for one row and one Q8_K column: per super-block the
 * integer sum of (scale x value) x activation, then sumf = fma((float)isum, dfac x dy, sumf).
 * The integers come from mx_dequantize_row (each value is dfac x scale x integer exactly, as
 * iqp.cpp's GGML_IQP_VERIFY checks), so the reference shares no code with the tiles. */
static float panel_dot(int type, int64_t n, const uint8_t *w, const void *xq) {
    const mx_block_q8_K *y = xq;
    const size_t bsz = mx_type_traits(type)->type_size;
    float sumf = 0.0f, deq[256];
    for (int64_t i = 0; i < n / 256; i++) {
        const uint8_t *b = w + (size_t)i * bsz;
        const float dfac = block_d(type, b) * panel_kfac(type);
        assert_int_equal(mx_dequantize_row(type, b, deq, 256), 0);
        int64_t isum = 0;
        for (int j = 0; j < 256 && dfac != 0.0f; j++) {
            const float q = deq[j] / dfac;
            if (q != rintf(q) || q * dfac != deq[j])
                fail_msg("%s: value %d of block %lld is not dfac x an integer (%.9g / %.9g)",
                         mx_type_name(type), j, (long long)i, deq[j], dfac);
            isum += (int64_t)q * y[i].qs[j];
        }
        sumf = fmaf((float)isum, dfac * y[i].d, sumf);
    }
    return sumf;
}

/* The tile against the scalar vec_dot (panel off) and the panel reference (panel on), for
 * every type and each kernel level that has tiles. */
static void test_tile_equals_vec_dot(void **state) {
    (void)state;
    static const int levels[] = {MX_CPU_AVX2, MX_CPU_AVX512};
    static const int row_counts[] = {1, 5, 8, 13, 16, 17, 31, 32};
    static const int col_counts[] = {1, 2, 3, 4, 5, 8, 9, 13};
    uint64_t rng = 1717;
    const int64_t nmax = 3 * 256, cmax = 13;
    const size_t ldo = 40;
    uint8_t *w = xmalloc((size_t)nmax * 2 * 32);
    float *x = xmalloc((size_t)(nmax * cmax) * sizeof(float));
    float *out = xmalloc(ldo * (size_t)cmax * sizeof(float));
    size_t xq_row;
    assert_true(mx_act_row_size(MX_TYPE_Q8_K, nmax, &xq_row));
    char *xq = xmalloc(xq_row * (size_t)cmax);
    void *scratch = aligned_alloc(64, (mx_gemm_iq_scratch(nmax) + 63) / 64 * 64);
    assert_non_null(scratch);
    int tested = 0;
    for (size_t li = 0; li < MX_ARRAY_LEN(levels); li++) {
        struct mx_cpu_kernels k;
        mx_cpu_kernels_init(&k, levels[li]);
        if (levels[li] == MX_CPU_AVX512 && !strcmp(k.name, "avx2"))
            continue; /* no AVX-512 on this CPU: the AVX2 tiles again */
        for (size_t ti = 0; ti < MX_ARRAY_LEN(tile_types); ti++) {
            int type = tile_types[ti];
            if (!k.gemm_iq[type])
                continue;
            tested++;
            for (int rep = 0; rep < 32; rep++) {
                const int panel = rep >= 16;
                int64_t n = rep % 2 ? 3 * 256 : 256;
                int nr = row_counts[rep % 8], nc = col_counts[(rep / 2 + ti) % 8];
                size_t w_row;
                assert_true(mx_row_size(type, n, &w_row));
                size_t xr;
                assert_true(mx_act_row_size(MX_TYPE_Q8_K, n, &xr));
                random_rows(type, n, nr, w, &rng);
                random_cols(n, nc, x, &rng);
                for (int c = 0; c < nc; c++)
                    mx_quantize_act(MX_TYPE_Q8_K, x + c * n, xq + (size_t)c * xr, n);
                for (size_t i = 0; i < ldo * (size_t)cmax; i++)
                    out[i] = -12345.0f;
                k.gemm_iq[type](n, w, w_row, nr, xq, xr, nc, out, ldo, panel, scratch);
                for (int c = 0; c < nc; c++)
                    for (size_t r = 0; r < ldo; r++) {
                        float got = out[(size_t)c * ldo + r];
                        if ((int)r >= nr) {
                            if (got != -12345.0f)
                                fail_msg("%s '%s': row %zu of %d written", mx_type_name(type),
                                         k.name, r, nr);
                            continue;
                        }
                        float want = panel ? panel_dot(type, n, w + r * w_row,
                                                       xq + (size_t)c * xr)
                                           : mx_iq_vec_dot_scalar[type](n, w + r * w_row,
                                                                        xq + (size_t)c * xr);
                        if (memcmp(&want, &got, 4) != 0)
                            fail_msg("%s '%s' n %lld rows %d cols %d: row %zu col %d tile %.9g, "
                                     "%s %.9g", mx_type_name(type), k.name, (long long)n, nr,
                                     nc, r, c, got, panel ? "panel" : "vec_dot", want);
                    }
            }
        }
    }
    printf("%d (level, type) pairs of IQ tiles equal vec_dot and the panel order\n", tested);
    free(scratch);
    free(w), free(x), free(out), free(xq);
}

/* Column c of x (n_in values) quantized to Q8_K, as the backend's activations. */
static void *quant_col(const float *x, int64_t n_in) {
    size_t xr;
    assert_true(mx_act_row_size(MX_TYPE_Q8_K, n_in, &xr));
    void *q = xmalloc(xr);
    mx_quantize_act(MX_TYPE_Q8_K, x, q, n_in);
    return q;
}

/* Through the backend (1 and 2 threads): y = W x for T columns equals, bit for bit, llama.cpp's
 * choice of order: the panel reference where it would run its panel (T >= 8, rows a multiple of
 * 8), else each column alone (decode: vec_dot). n_out = 40 leaves a partial tile; 36 rows take
 * the vec_dot order at any T. */
static void test_matmul_prefill_order(void **state) {
    (void)state;
    uint64_t rng = 2718;
    static const int64_t cfg[][2] = {{40, 11}, {40, 5}, {36, 11}}; /* n_out, T */
    const int64_t n_in = 512;
    for (size_t ci = 0; ci < MX_ARRAY_LEN(cfg); ci++)
    for (size_t ti = 0; ti < MX_ARRAY_LEN(tile_types); ti++) {
        const int64_t n_out = cfg[ci][0], T = cfg[ci][1];
        const bool panel = T >= MX_GEMM_IQ_PANEL_MIN_COLS && n_out % 8 == 0;
        int type = tile_types[ti];
        for (int nth = 1; nth <= 2; nth++) {
            struct mx_err err = {0};
            struct mx_backend *be = mx_backend_cpu_new(nth, &err);
            assert_non_null(be);
            bool tiles = mx_cpu_of(be)->kern.gemm_iq[type] != NULL;
            struct mx_tensor w, x, x1, y, y1;
            mx_tensor_init(&w, type, n_in, n_out, 1, 1);
            mx_tensor_init(&x, MX_TYPE_F32, n_in, T, 1, 1);
            mx_tensor_init(&x1, MX_TYPE_F32, n_in, 1, 1, 1);
            mx_tensor_init(&y, MX_TYPE_F32, n_out, T, 1, 1);
            mx_tensor_init(&y1, MX_TYPE_F32, n_out, 1, 1, 1);
            w.data = xmalloc(mx_tensor_nbytes(&w));
            x.data = xmalloc(mx_tensor_nbytes(&x));
            y.data = xmalloc(mx_tensor_nbytes(&y));
            y1.data = xmalloc(mx_tensor_nbytes(&y1));
            random_rows(type, n_in, n_out, w.data, &rng);
            random_cols(n_in, T, x.data, &rng);
            assert_int_equal(mx_op_matmul(be, &y, &w, &x), 0);
            for (int64_t c = 0; c < T; c++) {
                x1.data = (float *)x.data + c * n_in;
                assert_int_equal(mx_op_matmul(be, &y1, &w, &x1), 0);
                void *xq = quant_col(x1.data, n_in);
                for (int64_t o = 0; o < n_out; o++) {
                    float a = ((float *)y.data)[c * n_out + o];
                    float b = panel && tiles
                                  ? panel_dot(type, n_in,
                                              (const uint8_t *)w.data + (size_t)o * w.nb[1], xq)
                                  : ((float *)y1.data)[o];
                    if (memcmp(&a, &b, 4) != 0)
                        fail_msg("%s (%s, %d threads) %lld x %lld col %lld row %lld: prefill "
                                 "%.9g, %s %.9g", mx_type_name(type),
                                 tiles ? "tiles" : "no tiles", nth, (long long)n_out,
                                 (long long)T, (long long)c, (long long)o, a,
                                 panel ? "panel" : "decode", b);
                }
                free(xq);
            }
            free(w.data), free(x.data), free(y.data), free(y1.data);
            mx_backend_free(be);
        }
    }
}

/* matmul_id with 5 experts, top-2 over T tokens: expert jobs of 13 (llama.cpp's panel: the
 * panel reference's bits), 7 and 5 (tiles in vec_dot's order), 1 and 0 columns, each token's
 * values against the panel reference or against the token decoded alone. 3 super-blocks: with
 * one, the two orders give the same bits. */
static void test_matmul_id_prefill_order(void **state) {
    (void)state;
    uint64_t rng = 31415;
    const int64_t n_in = 768, n_out = 24, n_exp = 5, n_used = 2, T = 13;
    for (size_t ti = 0; ti < MX_ARRAY_LEN(tile_types); ti++) {
        int type = tile_types[ti];
        struct mx_err err = {0};
        struct mx_backend *be = mx_backend_cpu_new(2, &err);
        assert_non_null(be);
        bool tiles = mx_cpu_of(be)->kern.gemm_iq[type] != NULL;
        struct mx_tensor w, x, ids, y, x1, ids1, y1;
        mx_tensor_init(&w, type, n_in, n_out, n_exp, 1);
        mx_tensor_init(&x, MX_TYPE_F32, n_in, 1, T, 1);
        mx_tensor_init(&ids, MX_TYPE_I32, n_used, T, 1, 1);
        mx_tensor_init(&y, MX_TYPE_F32, n_out, n_used, T, 1);
        mx_tensor_init(&x1, MX_TYPE_F32, n_in, 1, 1, 1);
        mx_tensor_init(&ids1, MX_TYPE_I32, n_used, 1, 1, 1);
        mx_tensor_init(&y1, MX_TYPE_F32, n_out, n_used, 1, 1);
        w.data = xmalloc(mx_tensor_nbytes(&w));
        x.data = xmalloc(mx_tensor_nbytes(&x));
        ids.data = xmalloc(mx_tensor_nbytes(&ids));
        y.data = xmalloc(mx_tensor_nbytes(&y));
        y1.data = xmalloc(mx_tensor_nbytes(&y1));
        random_rows(type, n_in, n_out * n_exp, w.data, &rng);
        random_cols(n_in, T, x.data, &rng);
        int32_t *id = ids.data;
        int count[5] = {0};
        for (int64_t t = 0; t < T; t++) { /* experts 0: 13 tokens, 1: 5, 2: 7, 3: 1, 4: none */
            id[2 * t] = t == 5 ? 3 : 0;
            id[2 * t + 1] = t % 3 == 0 ? 1 : t == 5 ? 0 : 2;
            count[id[2 * t]]++, count[id[2 * t + 1]]++;
        }
        assert_int_equal(count[0], 13);
        assert_int_equal(mx_op_matmul_id(be, &y, &w, &x, &ids), 0);
        for (int64_t t = 0; t < T; t++) {
            x1.data = (float *)x.data + t * n_in;
            ids1.data = id + 2 * t;
            assert_int_equal(mx_op_matmul_id(be, &y1, &w, &x1, &ids1), 0);
            void *xq = quant_col(x1.data, n_in);
            for (int64_t k = 0; k < n_used * n_out; k++) {
                const int e = id[2 * t + k / n_out];
                const bool panel = tiles && count[e] >= MX_GEMM_IQ_PANEL_MIN_COLS;
                const uint8_t *row = (const uint8_t *)w.data + (size_t)e * w.nb[2] +
                                     (size_t)(k % n_out) * w.nb[1];
                float a = ((float *)y.data)[t * n_used * n_out + k];
                float b = panel ? panel_dot(type, n_in, row, xq) : ((float *)y1.data)[k];
                if (memcmp(&a, &b, 4) != 0)
                    fail_msg("%s token %lld value %lld (expert %d, %d tokens): prefill %.9g, "
                             "%s %.9g", mx_type_name(type), (long long)t, (long long)k, e,
                             count[e], a, panel ? "panel" : "decode", b);
            }
            free(xq);
        }
        free(w.data), free(x.data), free(ids.data), free(y.data), free(y1.data);
        mx_backend_free(be);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tile_equals_vec_dot),
        cmocka_unit_test(test_matmul_prefill_order),
        cmocka_unit_test(test_matmul_id_prefill_order),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
