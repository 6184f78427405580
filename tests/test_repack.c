/* test_repack.c - the CPU backend's repacked weights (MX_LAYOUT_*X8 for Q4_0, Q8_0, Q4_K, Q5_K,
 * Q6_K; kernels/cpu/repack.c) against an oracle written here: double-precision sums of the
 * file layout's dequantized weights times activations rounded as ggml rounds them (Q8_0 blocks
 * for Q4_0 and Q8_0, Q8_K for the K-quants), on awkward sizes (one block, odd block counts, one
 * 8-row group, a partial 32-row tile), every column count the kernels split into (1..4 and
 * remainders), 1 and 3 threads, matmul and matmul_id.
 *
 * Tolerance: each block's integer sums are exact, then a few f32 products of scales and FMAs
 * per block: the classic bound n * 2^-24 * sum|terms| covers it (TOL_DOT, as test_backend),
 * with the Q4_K min terms (d_min * m * sum x, subtracted) counted in sum|terms|.
 * Decode (1 column) and prefill (many) must agree bit for bit: the engine's logits must not
 * depend on whether a token came in a batch.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/quant.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "tests/mx_test.h"
#include "tests/mx_test_oracle.h"

#define TOL_DOT(n) ((double)(n) * 5.97e-8 + 1e-7)

static struct mx_backend *be1, *be3, *be_scalar, *be_avx2;
static struct mx_backend *be_x8; /* the best set without its 16-row prefill tiles */
static uint64_t rng = 777;

static const enum mx_type types[] = {MX_TYPE_Q4_0, MX_TYPE_Q8_0, MX_TYPE_Q4_K, MX_TYPE_Q5_K,
                                     MX_TYPE_Q6_K};

/* A tensor [ne0, ne1, ne2] of type with malloc'd data (caller frees t.data). */
static struct mx_tensor mk(enum mx_type type, int64_t ne0, int64_t ne1, int64_t ne2) {
    struct mx_tensor t;
    assert_int_equal(mx_tensor_init(&t, type, ne0, ne1, ne2, 1), 0);
    t.data = malloc(mx_tensor_nbytes(&t));
    assert_non_null(t.data);
    return t;
}

/* A random weight [n_in, n_out, n_exp] in malloc'd memory (caller frees w->data). */
static struct mx_tensor make_w(enum mx_type type, int64_t n_in, int64_t n_out, int64_t n_exp) {
    struct mx_tensor w = mk(type, n_in, n_out, n_exp);
    float *row = malloc((size_t)n_in * sizeof(float));
    assert_non_null(row);
    for (int64_t r = 0; r < n_out * n_exp; r++) {
        for (int64_t i = 0; i < n_in; i++)
            row[i] = mx_test_randf(&rng) * (float)(1 + r % 3);
        assert_int_equal(mx_quantize_row(type, row, (char *)w.data + r * w.nb[1], n_in), 0);
    }
    free(row);
    return w;
}

/* A copy of w (same bytes, own memory) prepared by be: returns the backend's buffer. */
static struct mx_buf *prepared_copy(struct mx_backend *be, const struct mx_tensor *w,
                                    struct mx_tensor *out) {
    *out = *w;
    out->data = malloc(mx_tensor_nbytes(w));
    assert_non_null(out->data);
    memcpy(out->data, w->data, mx_tensor_nbytes(w));
    void *orig = out->data;
    struct mx_tensor *p = out;
    struct mx_buf *buf = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_backend_prepare_weights(be, &p, 1, &buf, &err), 0);
    free(orig); /* the backend's copy is all that is read from now on */
    return buf;
}

/* |got - sum_i w[i] x[i]| within the dot tolerance (x already rounded). */
static void check_dot(const float *wrow, const float *x, int64_t n, float got, const char *what) {
    double s = 0, mag = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)wrow[i] * x[i];
        mag += fabs((double)wrow[i] * x[i]);
    }
    if (fabs(got - s) > TOL_DOT(n) * mag + 1e-6)
        fail_msg("%s: %.9g, oracle %.9g (tolerance %.3g)", what, got, s, TOL_DOT(n) * mag);
}

/* The repacked layout holds the same numbers: every row dequantizes to the file row's values. */
static void test_layout_round_trip(void **state) {
    (void)state;
    for (size_t ti = 0; ti < MX_ARRAY_LEN(types); ti++) {
        enum mx_type type = types[ti];
        enum mx_layout layout = mx_repack_layout(type);
        assert_int_not_equal(layout, MX_LAYOUT_GGML);
        int64_t n = 3 * mx_type_traits(type)->blck_size, rows = 24;
        struct mx_tensor w = make_w(type, n, rows, 1);
        char *pk = malloc(mx_tensor_nbytes(&w));
        float *a = malloc((size_t)n * sizeof(float)), *b = malloc((size_t)n * sizeof(float));
        assert_true(pk && a && b);
        mx_repack_rows(layout, w.data, pk, n, rows);
        for (int64_t r = 0; r < rows; r++) {
            assert_int_equal(mx_dequantize_row(type, (char *)w.data + r * w.nb[1], a, n), 0);
            mx_dequant_x8_row(layout, pk + (r / 8) * 8 * w.nb[1], (int)(r % 8), b, n);
            assert_memory_equal(a, b, (size_t)n * sizeof(float));
        }
        free(pk);
        free(a);
        free(b);
        free(w.data);
    }
}

/* matmul on repacked weights vs the oracle, and column t of every batch equal (bitwise) to the
 * same column computed alone (decode). */
static void test_matmul_against_oracle(void **state) {
    (void)state;
    static const int64_t n_blocks[] = {1, 3, 10};
    static const int64_t n_outs[] = {8, 40, 64};
    static const int64_t Ts[] = {1, 2, 3, 4, 5, 7, 9, 70};
    struct mx_backend *bes[] = {be1, be3};
    int checked = 0;
    for (size_t ti = 0; ti < MX_ARRAY_LEN(types); ti++)
    for (size_t a = 0; a < MX_ARRAY_LEN(n_blocks); a++)
        for (size_t b = 0; b < MX_ARRAY_LEN(n_outs); b++) {
            enum mx_type type = types[ti];
            int64_t n_in = n_blocks[a] * mx_type_traits(type)->blck_size, n_out = n_outs[b];
            if (mx_type_traits(type)->blck_size == MX_QK_K && n_blocks[a] == 10)
                continue; /* 2560 values: slow and no new case */
            struct mx_tensor w = make_w(type, n_in, n_out, 1);
            float *wd = malloc((size_t)(n_in * n_out) * sizeof(float));
            assert_non_null(wd);
            for (int64_t r = 0; r < n_out; r++)
                mx_dequantize_row(type, (char *)w.data + r * w.nb[1], wd + r * n_in, n_in);
            for (size_t k = 0; k < MX_ARRAY_LEN(bes); k++) {
                struct mx_tensor wp;
                struct mx_buf *buf = prepared_copy(bes[k], &w, &wp);
                assert_non_null(buf);
                assert_int_equal(wp.layout, mx_repack_layout(type));
                for (size_t tt = 0; tt < MX_ARRAY_LEN(Ts); tt++) {
                    int64_t T = Ts[tt];
                    struct mx_tensor x = mk(MX_TYPE_F32, n_in, T, 1);
                    struct mx_tensor y = mk(MX_TYPE_F32, n_out, T, 1);
                    struct mx_tensor y1 = mk(MX_TYPE_F32, n_out, 1, 1), x1;
                    mx_tensor_init(&x1, MX_TYPE_F32, n_in, 1, 1, 1); /* views x's columns */
                    float *xr = malloc(mx_tensor_nbytes(&x));
                    assert_non_null(xr);
                    for (int64_t i = 0; i < n_in * T; i++)
                        ((float *)x.data)[i] = mx_test_randf(&rng) * 2.0f;
                    memcpy(xr, x.data, mx_tensor_nbytes(&x));
                    mx_test_round_act(type, xr, n_in * T);
                    assert_int_equal(mx_op_matmul(bes[k], &y, &wp, &x), 0);
                    for (int64_t t = 0; t < T; t++) {
                        x1.data = (float *)x.data + t * n_in;
                        assert_int_equal(mx_op_matmul(bes[k], &y1, &wp, &x1), 0);
                        for (int64_t o = 0; o < n_out; o++) {
                            char what[160];
                            snprintf(what, sizeof what, "%s n_in %lld n_out %lld T %lld t %lld "
                                     "o %lld", mx_type_name(type), (long long)n_in,
                                     (long long)n_out, (long long)T, (long long)t, (long long)o);
                            float got = ((float *)y.data)[t * n_out + o];
                            check_dot(wd + o * n_in, xr + t * n_in, n_in, got, what);
                            float one = ((float *)y1.data)[o];
                            if (memcmp(&got, &one, sizeof got) != 0)
                                fail_msg("%s: batch %.9g, alone %.9g", what, got, one);
                        }
                    }
                    free(x.data);
                    free(y.data);
                    free(y1.data);
                    free(xr);
                    checked++;
                }
                mx_buf_free(buf);
            }
            free(wd);
            free(w.data);
        }
    printf("%d repacked matmuls checked\n", checked);
}

/* matmul_id on repacked experts: each (slot, token) equals a plain matmul with the file-layout
 * expert within the tolerance, for a decode step and a prefill batch spread over 5 experts. */
static void check_matmul_id(enum mx_type type) {
    int64_t n_in = 256, n_out = 48, n_exp = 5, k = 2;
    struct mx_tensor w = make_w(type, n_in, n_out, n_exp);
    float *wd = malloc((size_t)(n_in * n_out * n_exp) * sizeof(float));
    assert_non_null(wd);
    for (int64_t r = 0; r < n_out * n_exp; r++)
        mx_dequantize_row(type, (char *)w.data + r * w.nb[1], wd + r * n_in, n_in);
    struct mx_tensor wp;
    struct mx_buf *buf = prepared_copy(be3, &w, &wp);
    assert_non_null(buf);
    for (int64_t T = 1; T <= 37; T += 36) {
        struct mx_tensor x = mk(MX_TYPE_F32, n_in, 1, T), ids = mk(MX_TYPE_I32, k, T, 1);
        struct mx_tensor y = mk(MX_TYPE_F32, n_out, k, T);
        float *xr = malloc(mx_tensor_nbytes(&x));
        assert_non_null(xr);
        for (int64_t i = 0; i < n_in * T; i++)
            ((float *)x.data)[i] = mx_test_randf(&rng);
        memcpy(xr, x.data, mx_tensor_nbytes(&x));
        mx_test_round_act(type, xr, n_in * T);
        int32_t *id = ids.data;
        for (int64_t t = 0; t < T; t++) {
            id[t * k] = (int32_t)(t % n_exp);
            id[t * k + 1] = (int32_t)((t * 3 + 1) % n_exp);
        }
        assert_int_equal(mx_op_matmul_id(be3, &y, &wp, &x, &ids), 0);
        for (int64_t t = 0; t < T; t++)
            for (int64_t s = 0; s < k; s++)
                for (int64_t o = 0; o < n_out; o++)
                    check_dot(wd + (id[t * k + s] * n_out + o) * n_in, xr + t * n_in, n_in,
                              ((float *)y.data)[(t * k + s) * n_out + o], "matmul_id");
        free(x.data);
        free(ids.data);
        free(y.data);
        free(xr);
    }
    mx_buf_free(buf);
    free(wd);
    free(w.data);
}

static void test_matmul_id_against_plain(void **state) {
    (void)state;
    for (size_t ti = 0; ti < MX_ARRAY_LEN(types); ti++)
        check_matmul_id(types[ti]);
}

/* Exact mode (f32 activations) and kernels without the repacked GEMM dequantize the repacked
 * rows: the same numbers as the file layout gives, bit for bit. */
static void check_dequant_paths(enum mx_type type) {
    int64_t n_in = 512, n_out = 40;
    struct mx_tensor w = make_w(type, n_in, n_out, 1), wp;
    struct mx_buf *buf = prepared_copy(be3, &w, &wp);
    assert_non_null(buf);
    for (int64_t T = 1; T <= 9; T += 8) {
        struct mx_tensor x = mk(MX_TYPE_F32, n_in, T, 1), ya = mk(MX_TYPE_F32, n_out, T, 1);
        struct mx_tensor yb = mk(MX_TYPE_F32, n_out, T, 1);
        for (int64_t i = 0; i < n_in * T; i++)
            ((float *)x.data)[i] = mx_test_randf(&rng);
        assert_int_equal(mx_backend_set_act_mode(be3, MX_ACT_F32), 0);
        assert_int_equal(mx_op_matmul(be3, &ya, &w, &x), 0);
        assert_int_equal(mx_op_matmul(be3, &yb, &wp, &x), 0);
        assert_memory_equal(ya.data, yb.data, mx_tensor_nbytes(&ya));
        assert_int_equal(mx_backend_set_act_mode(be3, MX_ACT_GGML), 0);
        /* scalar kernels: no repacked GEMM, so the rows are dequantized */
        assert_int_equal(mx_op_matmul(be_scalar, &ya, &w, &x), 0);
        assert_int_equal(mx_op_matmul(be_scalar, &yb, &wp, &x), 0);
        assert_memory_equal(ya.data, yb.data, mx_tensor_nbytes(&ya));
        free(x.data);
        free(ya.data);
        free(yb.data);
    }
    mx_buf_free(buf);
    free(w.data);
}

static void test_dequant_paths_equal_file_layout(void **state) {
    (void)state;
    for (size_t ti = 0; ti < MX_ARRAY_LEN(types); ti++)
        check_dequant_paths(types[ti]);
}

/* What is not repacked stays as it was; views may not cut an 8-row group. */
static void test_prepare_skips_and_views(void **state) {
    (void)state;
    struct mx_tensor odd = make_w(MX_TYPE_Q4_0, 64, 12, 1); /* 12 rows: not a multiple of 8 */
    struct mx_tensor q8; /* a type without a repacked layout */
    assert_int_equal(mx_tensor_init(&q8, MX_TYPE_Q5_0, 64, 16, 1, 1), 0);
    q8.data = calloc(1, mx_tensor_nbytes(&q8));
    assert_non_null(q8.data);
    struct mx_tensor *ws[] = {&odd, &q8};
    void *d0 = odd.data, *d1 = q8.data;
    struct mx_buf *buf = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_backend_prepare_weights(be3, ws, 2, &buf, &err), 0);
    assert_null(buf);
    assert_ptr_equal(odd.data, d0);
    assert_ptr_equal(q8.data, d1);
    assert_int_equal(odd.layout, MX_LAYOUT_GGML);
    /* the scalar kernel set does not repack */
    struct mx_tensor w = make_w(MX_TYPE_Q4_0, 64, 16, 1), *wpp = &w;
    void *d2 = w.data;
    assert_int_equal(mx_backend_prepare_weights(be_scalar, &wpp, 1, &buf, &err), 0);
    assert_null(buf);
    assert_ptr_equal(w.data, d2);
    struct mx_tensor wp, v;
    buf = prepared_copy(be3, &w, &wp);
    assert_non_null(buf);
    assert_int_equal(mx_tensor_view_rows(&wp, 8, 8, &v), 0);
    assert_int_equal(v.layout, MX_LAYOUT_Q4_0X8);
    assert_int_equal(mx_tensor_view_rows(&wp, 4, 8, &v), MX_EINVAL);
    assert_int_equal(mx_tensor_view_rows(&wp, 0, 12, &v), MX_EINVAL);
    mx_buf_free(buf);
    free(w.data);
    free(odd.data);
    free(q8.data);
}

static int setup(void **state) {
    (void)state;
    struct mx_err err = {0};
    be1 = mx_backend_cpu_new(1, &err);
    be3 = mx_backend_cpu_new(3, &err);
    be_scalar = mx_backend_cpu_new(2, &err);
    be_avx2 = mx_backend_cpu_new(2, &err);
    be_x8 = mx_backend_cpu_new(2, &err);
    if (!be1 || !be3 || !be_scalar || !be_avx2 || !be_x8)
        return -1;
    memset(mx_cpu_of(be_x8)->kern.gemm_x16, 0, sizeof mx_cpu_of(be_x8)->kern.gemm_x16);
    mx_cpu_kernels_init(&mx_cpu_of(be_scalar)->kern, MX_CPU_SCALAR);
    mx_cpu_kernels_init(&mx_cpu_of(be_avx2)->kern, MX_CPU_AVX2); /* also on AVX-512 CPUs */
    printf("kernels: best '%s', second '%s'\n", mx_cpu_of(be1)->kern.name,
           mx_cpu_of(be_avx2)->kern.name);
    if (!mx_cpu_of(be1)->kern.gemm_x8[MX_LAYOUT_Q4_0X8] ||
        !mx_cpu_of(be1)->kern.gemm_x8[MX_LAYOUT_Q4_KX8] ||
        !mx_cpu_of(be1)->kern.gemm_x8[MX_LAYOUT_Q6_KX8] ||
        !mx_cpu_of(be1)->kern.gemm_x8[MX_LAYOUT_Q5_KX8] ||
        !mx_cpu_of(be1)->kern.gemm_x8[MX_LAYOUT_Q8_0X8]) {
        printf("SKIP: this CPU has no repacked Q4_0 kernels (kernels '%s')\n",
               mx_cpu_of(be1)->kern.name);
        exit(77);
    }
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mx_backend_free(be1);
    mx_backend_free(be3);
    mx_backend_free(be_scalar);
    mx_backend_free(be_avx2);
    mx_backend_free(be_x8);
    return 0;
}

/* The AVX2 tiles and the best set's (AVX-512 VNNI where the CPU has it) give the same bits:
 * both sum integers exactly and share the float steps. Decode and prefill column counts. */
static void test_kernel_sets_agree(void **state) {
    (void)state;
    for (size_t ti = 0; ti < MX_ARRAY_LEN(types); ti++) {
        enum mx_type type = types[ti];
        int64_t n_in = 2 * mx_type_traits(type)->blck_size, n_out = 24;
        struct mx_tensor w = make_w(type, n_in, n_out, 1), wp;
        struct mx_buf *buf = prepared_copy(be3, &w, &wp);
        assert_non_null(buf);
        static const int64_t Ts[] = {1, 6, 9, 11, 17};
        for (size_t tt = 0; tt < MX_ARRAY_LEN(Ts); tt++) {
            int64_t T = Ts[tt];
            struct mx_tensor x = mk(MX_TYPE_F32, n_in, T, 1), ya = mk(MX_TYPE_F32, n_out, T, 1);
            struct mx_tensor yb = mk(MX_TYPE_F32, n_out, T, 1);
            for (int64_t i = 0; i < n_in * T; i++)
                ((float *)x.data)[i] = mx_test_randf(&rng) * 3.0f;
            assert_int_equal(mx_op_matmul(be3, &ya, &wp, &x), 0);
            assert_int_equal(mx_op_matmul(be_avx2, &yb, &wp, &x), 0);
            if (memcmp(ya.data, yb.data, mx_tensor_nbytes(&ya)) != 0)
                fail_msg("%s T %lld: kernels '%s' and '%s' differ", mx_type_name(type),
                         (long long)T, mx_cpu_of(be3)->kern.name,
                         mx_cpu_of(be_avx2)->kern.name);
            free(x.data);
            free(ya.data);
            free(yb.data);
        }
        mx_buf_free(buf);
        free(w.data);
    }
}

/* One matmul_id on be with T tokens, 2 slots each, over 6 experts of which expert 2 gets no
 * token and expert 0 most of them; y gets the result. */
static void run_id(struct mx_backend *be, const struct mx_tensor *wp, const struct mx_tensor *x,
                   int64_t T, struct mx_tensor *y) {
    struct mx_tensor ids = mk(MX_TYPE_I32, 2, T, 1);
    int32_t *id = ids.data;
    for (int64_t t = 0; t < T; t++) {
        id[2 * t] = t % 3 == 2 ? 5 : 0;
        id[2 * t + 1] = (int32_t)(1 + (t * 7) % 5);
        if (id[2 * t + 1] == 2)
            id[2 * t + 1] = 3;
    }
    assert_int_equal(mx_op_matmul_id(be, y, wp, x, &ids), 0);
    free(ids.data);
}

/* The 16-row prefill tiles (two 8-row groups per 512-bit register, up to 8 columns; AVX-512
 * only) give the 8-row tiles' bits for every row and column: row counts with and without a
 * last single 8-row group, 1..20 columns (every NC of the 8-column steps and remainders), and
 * matmul_id with experts of many, few and no tokens. Skipped types: no 16-row kernel. */
static void test_x16_tiles_equal_x8(void **state) {
    (void)state;
    static const int64_t n_outs[] = {16, 24, 56};
    int checked = 0;
    for (size_t ti = 0; ti < MX_ARRAY_LEN(types); ti++) {
        enum mx_type type = types[ti];
        if (!mx_cpu_of(be3)->kern.gemm_x16[mx_repack_layout(type)])
            continue;
        int64_t n_in = 3 * mx_type_traits(type)->blck_size;
        if (n_in < 256)
            n_in = 8 * mx_type_traits(type)->blck_size;
        for (size_t b = 0; b < MX_ARRAY_LEN(n_outs); b++) {
            int64_t n_out = n_outs[b];
            struct mx_tensor w = make_w(type, n_in, n_out, 1), wp;
            struct mx_buf *buf = prepared_copy(be3, &w, &wp);
            assert_non_null(buf);
            for (int64_t T = 1; T <= 20; T++) {
                struct mx_tensor x = mk(MX_TYPE_F32, n_in, T, 1);
                struct mx_tensor ya = mk(MX_TYPE_F32, n_out, T, 1);
                struct mx_tensor yb = mk(MX_TYPE_F32, n_out, T, 1);
                for (int64_t i = 0; i < n_in * T; i++)
                    ((float *)x.data)[i] = mx_test_randf(&rng) * 4.0f;
                assert_int_equal(mx_op_matmul(be3, &ya, &wp, &x), 0);
                assert_int_equal(mx_op_matmul(be_x8, &yb, &wp, &x), 0);
                if (memcmp(ya.data, yb.data, mx_tensor_nbytes(&ya)) != 0)
                    fail_msg("%s n_out %lld T %lld: 16-row tiles differ from 8-row tiles",
                             mx_type_name(type), (long long)n_out, (long long)T);
                free(x.data);
                free(ya.data);
                free(yb.data);
                checked++;
            }
            mx_buf_free(buf);
            free(w.data);
        }
        /* experts: 6 of n_out 24 */
        struct mx_tensor w = make_w(type, n_in, 24, 6), wp;
        struct mx_buf *buf = prepared_copy(be3, &w, &wp);
        assert_non_null(buf);
        for (int64_t T = 1; T <= 41; T += 20) {
            struct mx_tensor x = mk(MX_TYPE_F32, n_in, 1, T);
            struct mx_tensor ya = mk(MX_TYPE_F32, 24, 2, T), yb = mk(MX_TYPE_F32, 24, 2, T);
            for (int64_t i = 0; i < n_in * T; i++)
                ((float *)x.data)[i] = mx_test_randf(&rng);
            run_id(be3, &wp, &x, T, &ya);
            run_id(be_x8, &wp, &x, T, &yb);
            if (memcmp(ya.data, yb.data, mx_tensor_nbytes(&ya)) != 0)
                fail_msg("%s matmul_id T %lld: 16-row tiles differ from 8-row tiles",
                         mx_type_name(type), (long long)T);
            free(x.data);
            free(ya.data);
            free(yb.data);
            checked++;
        }
        mx_buf_free(buf);
        free(w.data);
    }
    printf("%d 16-row tile cases checked against the 8-row tiles\n", checked);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_round_trip),
        cmocka_unit_test(test_matmul_against_oracle),
        cmocka_unit_test(test_matmul_id_against_plain),
        cmocka_unit_test(test_dequant_paths_equal_file_layout),
        cmocka_unit_test(test_prepare_skips_and_views),
        cmocka_unit_test(test_kernel_sets_agree),
        cmocka_unit_test(test_x16_tiles_equal_x8),
    };
    return mx_test_status(cmocka_run_group_tests(tests, setup, teardown));
}
