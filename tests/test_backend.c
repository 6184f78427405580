/* test_backend.c - every op of the CPU backend against a simple oracle written here (double
 * precision loops over the same inputs), on random inputs of awkward sizes, with 1 and several
 * threads, and with the SIMD kernels on and off.
 *
 * Tolerances: an f32 dot product of n terms summed in any order is within n * 2^-24 * sum|terms|
 * of the exact value (the classic recursive-summation bound; blocked/SIMD sums only do better),
 * so matmul-like results are checked against TOL_DOT(n) * sum|terms|. Elementwise ops are a few
 * float roundings from exact: 1e-6 relative. Cache-type tolerances are derived where used.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/base/quant.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "tests/mx_test.h"
#include "tests/mx_test_oracle.h"

#define TOL_DOT(n) ((double)(n) * 5.97e-8 + 1e-7)

static struct mx_backend *be1, *be4, *be_scalar, *be_avx2;

/* ---- helpers --------------------------------------------------------------------------------- */

#define MAX_ALLOCS 512
static void *allocs[MAX_ALLOCS];
static int n_allocs;

static void *talloc(size_t n) {
    void *p = calloc(1, n ? n : 1);
    assert_non_null(p);
    assert_true(n_allocs < MAX_ALLOCS);
    allocs[n_allocs++] = p;
    return p;
}

static void free_all(void) {
    for (int i = 0; i < n_allocs; i++)
        free(allocs[i]);
    n_allocs = 0;
}

static struct mx_tensor mk(enum mx_type type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3) {
    struct mx_tensor t;
    assert_int_equal(mx_tensor_init(&t, type, ne0, ne1, ne2, ne3), 0);
    t.data = talloc(mx_tensor_nbytes(&t));
    return t;
}

static uint64_t rng = 12345;

static void fill(struct mx_tensor *t, float amp) {
    float *p = t->data;
    for (int64_t i = 0; i < mx_tensor_nelements(t); i++)
        p[i] = amp * mx_test_randf(&rng);
}

static float *F(const struct mx_tensor *t) {
    return t->data;
}

static int32_t *I(const struct mx_tensor *t) {
    return t->data;
}

/* max |a - b| over n floats */
static double maxdiff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - (double)b[i]));
    return m;
}

/* A weight matrix of type from random f32 values: the quantized tensor and its dequantized f32
 * values (what the oracle multiplies by). */
static struct mx_tensor make_weight(enum mx_type type, int64_t n_in, int64_t n_out, int64_t n_exp,
                                    float **deq) {
    struct mx_tensor w = mk(type, n_in, n_out, n_exp, 1);
    int64_t rows = n_out * n_exp;
    float *src = talloc((size_t)(n_in * rows) * sizeof(float));
    *deq = talloc((size_t)(n_in * rows) * sizeof(float));
    for (int64_t i = 0; i < n_in * rows; i++)
        src[i] = mx_test_randf(&rng);
    for (int64_t r = 0; r < rows; r++) {
        assert_int_equal(mx_quantize_row(type, src + r * n_in, mx_row(&w, r), n_in), 0);
        assert_int_equal(mx_dequantize_row(type, mx_row(&w, r), *deq + r * n_in, n_in), 0);
    }
    return w;
}

static const enum mx_type wtypes[] = {
    MX_TYPE_F32,  MX_TYPE_F16,  MX_TYPE_BF16, MX_TYPE_Q4_0, MX_TYPE_Q4_1, MX_TYPE_Q5_0,
    MX_TYPE_Q5_1, MX_TYPE_Q8_0, MX_TYPE_Q2_K, MX_TYPE_Q3_K, MX_TYPE_Q4_K, MX_TYPE_Q5_K,
    MX_TYPE_Q6_K,
};

/* Every test starts from the default activation mode, even after a failed test left another. */
static int reset_modes(void **state) {
    mx_backend_set_act_mode(be1, MX_ACT_GGML);
    mx_backend_set_act_mode(be4, MX_ACT_GGML);
    mx_backend_set_act_mode(be_scalar, MX_ACT_GGML);
    mx_backend_set_act_mode(be_avx2, MX_ACT_GGML);
    return 0;
}

/* ---- tensors, arena -------------------------------------------------------------------------- */

static void test_tensor_helpers(void **state) {
    struct mx_tensor t, v;
    assert_int_equal(mx_tensor_init(&t, MX_TYPE_Q4_0, 64, 3, 2, 0), 0);
    assert_int_equal(t.nb[1], 36);
    assert_int_equal(mx_tensor_nrows(&t), 6);
    assert_int_equal(mx_tensor_nbytes(&t), 216);
    assert_true(mx_tensor_is_contiguous(&t));
    assert_int_equal(mx_tensor_init(&t, MX_TYPE_Q4_0, 48, 1, 1, 1), MX_EINVAL); /* not a block */
    assert_int_equal(mx_tensor_init(&t, (enum mx_type)99, 4, 1, 1, 1), MX_EINVAL);
    assert_int_equal(mx_tensor_init(&t, MX_TYPE_F32, INT64_MAX / 2, 4, 1, 1), MX_EINVAL);
    struct mx_tensor f = mk(MX_TYPE_F16, 8, 5, 2, 1);
    assert_int_equal(mx_tensor_view_rows(&f, 3, 7, &v), 0);
    assert_ptr_equal(v.data, (char *)f.data + 3 * 16);
    assert_int_equal(v.ne[1], 7);
    assert_int_equal(mx_tensor_view_rows(&f, 4, 7, &v), MX_EINVAL);
    assert_int_equal(mx_tensor_reshape(&f, 16, 5, 1, 1, &v), 0);
    assert_int_equal(mx_tensor_reshape(&f, 16, 4, 1, 1, &v), MX_EINVAL);
    free_all();
}

static void test_arena_measure_then_alloc(void **state) {
    struct mx_arena a;
    struct mx_tensor t[3];
    struct mx_err err = {0};
    for (int pass = 0; pass < 2; pass++) {
        size_t need = a.used;
        if (pass == 0)
            mx_arena_init_measure(&a);
        else
            assert_int_equal(mx_arena_init(&a, be1, need, &err), 0);
        assert_int_equal(mx_arena_tensor(&a, &t[0], MX_TYPE_F32, 10, 3, 1, 1, "a", &err), 0);
        assert_int_equal(mx_arena_tensor(&a, &t[1], MX_TYPE_Q8_0, 64, 7, 1, 1, "b", &err), 0);
        assert_int_equal(mx_arena_tensor(&a, &t[2], MX_TYPE_I32, 5, 1, 1, 1, "c", &err), 0);
        if (pass == 0) {
            assert_null(t[0].data);
            assert_int_equal(a.used, 128 + 512 + 20); /* 120 -> 128, 7 * 68 = 476 -> 512, 20 */
        }
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal((uintptr_t)t[i].data % 64, 0);
    assert_true((char *)t[1].data >= (char *)t[0].data + 120);
    assert_true((char *)t[2].data >= (char *)t[1].data + 7 * 68);
    memset(t[2].data, 1, 20); /* the last byte is in bounds (ASan checks) */
    struct mx_tensor x;
    assert_int_equal(mx_arena_tensor(&a, &x, MX_TYPE_F32, 1, 1, 1, 1, "d", &err), MX_ENOMEM);
    assert_non_null(strstr(err.msg, "arena: d"));
    mx_arena_reset(&a);
    assert_int_equal(mx_arena_tensor(&a, &x, MX_TYPE_F32, 1, 1, 1, 1, "d", &err), 0);
    mx_arena_deinit(&a);
    mx_arena_deinit(&a);
}

/* ---- matmul ---------------------------------------------------------------------------------- */

/* dst = W x checked against the double oracle on the rounded activations. */
static void check_matmul(struct mx_backend *be, enum mx_type type, int64_t n_in, int64_t n_out,
                         int64_t T, int mode) {
    float *wd;
    struct mx_tensor w = make_weight(type, n_in, n_out, 1, &wd);
    struct mx_tensor x = mk(MX_TYPE_F32, n_in, T, 1, 1), y = mk(MX_TYPE_F32, n_out, T, 1, 1);
    fill(&x, 2.0f);
    assert_int_equal(mx_backend_set_act_mode(be, mode), 0);
    assert_int_equal(mx_op_matmul(be, &y, &w, &x), 0);
    float *xr = talloc((size_t)n_in * sizeof(float));
    /* A Q4_1 / Q5_1 row kernel takes each block's min times the Q8_1 column's s = fp16(d x
     * sum(q)), as ggml does, not times the rounded values' sum: the oracle adds that difference
     * for backends with the kernel (the dequantize + f32 dot path has none). */
    bool q8_1 = mode == MX_ACT_GGML && mx_vec_dot_type(type) == MX_TYPE_Q8_1 &&
                mx_cpu_of(be)->kern.vec_dot[type];
    mx_block_q8_1 *xq = talloc((size_t)(n_in / MX_QK8_1) * sizeof(mx_block_q8_1));
    for (int64_t t = 0; t < T; t++) {
        memcpy(xr, F(&x) + t * n_in, (size_t)n_in * sizeof(float));
        if (q8_1)
            mx_quantize_act(MX_TYPE_Q8_1, xr, xq, n_in);
        if (mode == MX_ACT_GGML)
            mx_test_round_act(type, xr, n_in);
        for (int64_t o = 0; o < n_out; o++) {
            double s = 0, sa = 0;
            for (int64_t i = 0; i < n_in; i++) {
                s += (double)wd[o * n_in + i] * xr[i];
                sa += fabs((double)wd[o * n_in + i] * xr[i]);
            }
            for (int64_t b = 0; q8_1 && b < n_in / MX_QK8_1; b++) {
                const char *blk = (const char *)mx_row(&w, o) +
                                  (size_t)b * mx_type_traits(type)->type_size;
                mx_half m;
                memcpy(&m, blk + sizeof(mx_half), sizeof m); /* d, then m, in both types */
                int sum = 0;
                for (int j = 0; j < MX_QK8_1; j++)
                    sum += xq[b].qs[j];
                s += (double)mx_fp16_to_fp32(m) * ((double)mx_fp16_to_fp32(xq[b].s) -
                                                   (double)mx_fp16_to_fp32(xq[b].d) * sum);
            }
            double got = F(&y)[t * n_out + o];
            if (fabs(got - s) > TOL_DOT(n_in) * sa + 1e-6)
                fail_msg("matmul %s mode %d n_in %lld T %lld: y[%lld,%lld] = %.9g, oracle %.9g",
                         mx_type_name(type), mode, (long long)n_in, (long long)T, (long long)o,
                         (long long)t, got, s);
        }
    }
}

static void test_matmul_all_types(void **state) {
    for (size_t k = 0; k < MX_ARRAY_LEN(wtypes); k++) {
        enum mx_type type = wtypes[k];
        int64_t blk = mx_type_traits(type)->blck_size;
        int64_t n_in = blk == 256 ? 512 : 224; /* 7 blocks: a 4-block SIMD loop and a tail */
        assert_true(mx_backend_supports(be4, MX_OP_MATMUL, type));
        /* decode, small batch, GEMM path (>= 8 columns), and for float weights the wide path
         * (>= 256 columns: the whole weight widened once, columns split over the threads) */
        int64_t Ts[] = {1, 3, 9, 300};
        for (int mode = 0; mode < 2; mode++)
            for (int i = 0; i < 4; i++) {
                check_matmul(be4, type, n_in, 37, Ts[i], mode); /* 37: a tile and a remainder */
                check_matmul(be1, type, n_in, 1, Ts[i], mode);  /* a single output row */
                check_matmul(be_scalar, type, n_in, 5, Ts[i], mode);
                check_matmul(be_avx2, type, n_in, 9, Ts[i], mode);
                free_all();
            }
    }
    mx_backend_set_act_mode(be1, MX_ACT_GGML);
    mx_backend_set_act_mode(be4, MX_ACT_GGML);
    mx_backend_set_act_mode(be_scalar, MX_ACT_GGML);
}

/* The fast row dequantizers used for prefill tiles are bit-identical to core/base/quant.c's reference
 * (so prefill and decode see the same weights), on random bytes: every code and scale pattern,
 * including extreme fp16 scales. */
static void test_fast_dequant_bit_exact(void **state) {
    const struct mx_cpu_kernels *k = &mx_cpu_of(be4)->kern;
    int n_checked = 0;
    for (size_t ti = 0; ti < MX_ARRAY_LEN(wtypes); ti++) {
        enum mx_type type = wtypes[ti];
        if (!k->dequant[type])
            continue;
        int64_t n = 4 * mx_type_traits(type)->blck_size;
        size_t bytes;
        assert_true(mx_row_size(type, n, &bytes));
        uint8_t *raw = talloc(bytes);
        float *a = talloc((size_t)n * 4), *b = talloc((size_t)n * 4);
        for (int rep = 0; rep < 50; rep++) {
            for (size_t i = 0; i < bytes; i++)
                raw[i] = (uint8_t)mx_test_rand(&rng);
            /* keep the fp16 scales finite: NaN/inf compare unequal to themselves */
            size_t bs = mx_type_traits(type)->type_size;
            for (size_t off = 0; off < bytes; off += bs) {
                size_t dpos = type == MX_TYPE_Q6_K ? bs - 2 : 0;
                raw[off + dpos + 1] &= 0x7b;
                if (type == MX_TYPE_Q4_K)
                    raw[off + 3] &= 0x7b;
            }
            k->dequant[type](raw, a, n);
            assert_int_equal(mx_dequantize_row(type, raw, b, n), 0);
            if (memcmp(a, b, (size_t)n * 4) != 0)
                fail_msg("fast dequant %s differs from the reference", mx_type_name(type));
        }
        n_checked++;
        free_all();
    }
    printf("%d fast dequantizers checked (kernels '%s')\n", n_checked, k->name);
}

/* The fast activation quantizers write the same bytes as mx_quantize_act (Q8_0 blocks with their
 * sums, Q8_K blocks with bsums), on random rows with zero blocks, exact ties of magnitude with
 * opposite signs, and values on the .5 rounding boundaries. */
static void test_fast_act_quant_bit_exact(void **state) {
    const struct mx_cpu_kernels *k = &mx_cpu_of(be4)->kern;
    enum mx_type vts[] = {MX_TYPE_Q8_0, MX_TYPE_Q8_K, MX_TYPE_Q8_1};
    int64_t n = 1024;
    float *x = talloc((size_t)n * 4);
    for (int ti = 0; ti < 3; ti++) {
        if (!k->quantize_act[vts[ti]])
            continue;
        size_t bytes;
        assert_true(mx_act_row_size(vts[ti], n, &bytes));
        uint8_t *a = talloc(bytes), *b = talloc(bytes);
        for (int rep = 0; rep < 40; rep++) {
            for (int64_t i = 0; i < n; i++)
                x[i] = (float)(rep % 3 + 1) * mx_test_randf(&rng);
            for (int64_t i = 0; i < 32; i++)
                x[i] = 0.0f; /* a zero block */
            x[300] = 2.5f, x[301] = -3.0f, x[302] = 3.0f; /* a tie in magnitude */
            x[520] = 63.5f / 127.0f * 3.0f, x[521] = 3.0f; /* x * id near a .5 boundary */
            memset(a, 0xaa, bytes);
            memset(b, 0xaa, bytes);
            k->quantize_act[vts[ti]](x, a, n);
            mx_quantize_act(vts[ti], x, b, n);
            if (memcmp(a, b, bytes) != 0)
                fail_msg("fast %s activation quantizer differs (rep %d)", mx_type_name(vts[ti]),
                         rep);
        }
    }
    free_all();
}

/* Value j (0..31) of a legacy-quant weight block as the integer ggml's kernels multiply: Q4_1
 * and Q5_1 unsigned (their min is applied apart), Q5_0 and Q8_0 signed. */
static int legacy_value(enum mx_type type, const void *blk, int j) {
    const uint8_t *qs, *qh = NULL;
    switch (type) {
    case MX_TYPE_Q8_0: return ((const mx_block_q8_0 *)blk)->qs[j];
    case MX_TYPE_Q4_1: qs = ((const mx_block_q4_1 *)blk)->qs; break;
    case MX_TYPE_Q5_0:
        qs = ((const mx_block_q5_0 *)blk)->qs, qh = ((const mx_block_q5_0 *)blk)->qh;
        break;
    default:
        qs = ((const mx_block_q5_1 *)blk)->qs, qh = ((const mx_block_q5_1 *)blk)->qh;
        break;
    }
    int v = j < 16 ? qs[j] & 15 : qs[j - 16] >> 4;
    if (qh)
        v |= ((qh[j / 8] >> (j % 8)) & 1) << 4;
    return type == MX_TYPE_Q5_0 ? v - 16 : v;
}

/* The row kernels of Q8_0, Q4_1, Q5_0 and Q5_1 compute ggml's AVX2 vec_dot bit for bit, written
 * out here in scalar C: per block, 8 exact integer lane sums (lane k: values 4k..4k+3) each
 * fused-multiply-added into its lane with (weight d x activation d), the lanes summed
 * ((4 + 0) + (6 + 2)) + ((5 + 1) + (7 + 3)), plus the mins' m x s summed block by block. The
 * float order is what makes logits agree with llama.cpp to the ulp; both kernel sets. */
static void test_legacy_dots_in_ggml_order(void **state) {
    enum mx_type types[] = {MX_TYPE_Q8_0, MX_TYPE_Q4_1, MX_TYPE_Q5_0, MX_TYPE_Q5_1};
    const struct mx_cpu_kernels *sets[] = {&mx_cpu_of(be4)->kern, &mx_cpu_of(be_avx2)->kern};
    int n_checked = 0;
    for (size_t ti = 0; ti < MX_ARRAY_LEN(types); ti++) {
        enum mx_type type = types[ti], vt = mx_vec_dot_type(type);
        int64_t n = 7 * 32, nb = 7;
        size_t wb, xb, bs = mx_type_traits(type)->type_size;
        assert_true(mx_row_size(type, n, &wb));
        assert_true(mx_act_row_size(vt, n, &xb));
        uint8_t *w = talloc(wb), *xq = talloc(xb);
        float *x = talloc((size_t)n * 4);
        for (int rep = 0; rep < 30; rep++) {
            for (size_t i = 0; i < wb; i++)
                w[i] = (uint8_t)mx_test_rand(&rng);
            for (size_t off = 0; off < wb; off += bs) {
                w[off + 1] &= 0x3b; /* finite, moderate fp16 scale (and min) */
                if (type == MX_TYPE_Q4_1 || type == MX_TYPE_Q5_1)
                    w[off + 3] &= 0x3b;
            }
            for (int64_t i = 0; i < n; i++)
                x[i] = (float)(rep % 4 + 1) * mx_test_randf(&rng);
            mx_quantize_act(vt, x, xq, n);
            float lane[8] = {0}, summs = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = w + (size_t)b * bs;
                const int8_t *q8;
                float xd;
                if (vt == MX_TYPE_Q8_1) {
                    const mx_block_q8_1 *y = (const mx_block_q8_1 *)xq + b;
                    q8 = y->qs, xd = mx_fp16_to_fp32(y->d);
                    mx_half m;
                    memcpy(&m, blk + 2, 2);
                    summs += mx_fp16_to_fp32(m) * mx_fp16_to_fp32(y->s);
                } else {
                    const mx_block_q8_0 *y = (const mx_block_q8_0 *)xq + b;
                    q8 = y->qs, xd = mx_fp16_to_fp32(y->d);
                }
                mx_half wdh;
                memcpy(&wdh, blk, 2);
                float d = mx_fp16_to_fp32(wdh) * xd;
                for (int k = 0; k < 8; k++) {
                    int sum = 0;
                    for (int j = 4 * k; j < 4 * k + 4; j++)
                        sum += legacy_value(type, blk, j) * q8[j];
                    lane[k] = fmaf(d, (float)sum, lane[k]);
                }
            }
            float want = ((lane[4] + lane[0]) + (lane[6] + lane[2])) +
                         ((lane[5] + lane[1]) + (lane[7] + lane[3]));
            if (vt == MX_TYPE_Q8_1)
                want += summs;
            for (size_t si = 0; si < MX_ARRAY_LEN(sets); si++) {
                if (!sets[si]->vec_dot[type])
                    continue;
                float got = sets[si]->vec_dot[type](n, w, xq);
                if (memcmp(&got, &want, sizeof got) != 0)
                    fail_msg("%s vec_dot (kernels '%s'): %.9g, ggml's order %.9g",
                             mx_type_name(type), sets[si]->name, got, want);
                n_checked++;
            }
        }
        free_all();
    }
    printf("%d legacy-quant dots checked against ggml's order\n", n_checked);
}

/* Q2_K and Q3_K row kernels against ggml's AVX2 order written out in scalar C: per
 * super-block 8 exact int32 lanes (lane l of the 32-value vector k of half h: values
 * 128h + 32k + 4l .. +3, times their 16-value group's scale), Q2_K's mins as lanes
 * (mins[2l] bsums[2l] + mins[2l + 1] bsums[2l + 1]) fused-multiply-added first with -d_x dmin,
 * then the values with d_x d; the lanes summed as hsum8. Random blocks, both kernel sets. */
static void test_low_k_dots_in_ggml_order(void **state) {
    enum mx_type types[] = {MX_TYPE_Q2_K, MX_TYPE_Q3_K};
    const struct mx_cpu_kernels *sets[] = {&mx_cpu_of(be4)->kern, &mx_cpu_of(be_avx2)->kern};
    int n_checked = 0;
    for (size_t ti = 0; ti < MX_ARRAY_LEN(types); ti++) {
        enum mx_type type = types[ti];
        int64_t nb = 3, n = nb * MX_QK_K;
        size_t wb, xb, bs = mx_type_traits(type)->type_size;
        assert_true(mx_row_size(type, n, &wb));
        assert_true(mx_act_row_size(MX_TYPE_Q8_K, n, &xb));
        uint8_t *w = talloc(wb);
        mx_block_q8_K *xq = talloc(xb);
        float *x = talloc((size_t)n * 4);
        for (int rep = 0; rep < 30; rep++) {
            for (size_t i = 0; i < wb; i++)
                w[i] = (uint8_t)mx_test_rand(&rng);
            for (size_t off = 0; off < wb; off += bs) /* finite fp16 d (and dmin) at the end */
                for (size_t k = bs - (type == MX_TYPE_Q2_K ? 3 : 1); k < bs; k += 2)
                    w[off + k] &= 0x3b;
            for (int64_t i = 0; i < n; i++)
                x[i] = (float)(rep % 4 + 1) * mx_test_randf(&rng);
            mx_quantize_act(MX_TYPE_Q8_K, x, xq, n);
            float lane[8] = {0};
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = w + (size_t)b * bs;
                const int8_t *y = xq[b].qs;
                int sc[16], val[256];
                float d, dmin = 0.0f;
                if (type == MX_TYPE_Q2_K) {
                    const mx_block_q2_K *q = (const mx_block_q2_K *)blk;
                    d = mx_fp16_to_fp32(q->d), dmin = mx_fp16_to_fp32(q->dmin);
                    for (int g = 0; g < 16; g++)
                        sc[g] = q->scales[g] & 15;
                    for (int v = 0; v < 256; v++) /* half h, bit pair k, byte l */
                        val[v] = (q->qs[32 * (v / 128) + v % 32] >> (2 * ((v % 128) / 32))) & 3;
                    for (int l = 0; l < 8; l++) {
                        int mt = (q->scales[2 * l] >> 4) * xq[b].bsums[2 * l] +
                                 (q->scales[2 * l + 1] >> 4) * xq[b].bsums[2 * l + 1];
                        lane[l] = fmaf(-xq[b].d * dmin, (float)mt, lane[l]);
                    }
                } else {
                    const mx_block_q3_K *q = (const mx_block_q3_K *)blk;
                    d = mx_fp16_to_fp32(q->d);
                    for (int g = 0; g < 16; g++) { /* the format's 6-bit scales */
                        int lo = g < 8 ? q->scales[g] & 15 : q->scales[g - 8] >> 4;
                        int hi = (q->scales[8 + g % 4] >> (2 * (g / 4))) & 3;
                        sc[g] = (lo | hi << 4) - 32;
                    }
                    for (int v = 0; v < 256; v++) {
                        int u = (q->qs[32 * (v / 128) + v % 32] >> (2 * ((v % 128) / 32))) & 3;
                        int hb = (q->hmask[v % 32] >> (v / 32)) & 1;
                        val[v] = u + 4 * hb - 4;
                    }
                }
                for (int l = 0; l < 8; l++) {
                    int sum = 0;
                    for (int v = 0; v < 256; v++)
                        if ((v % 32) / 4 == l)
                            sum += sc[v / 16] * val[v] * y[v];
                    lane[l] = fmaf(xq[b].d * d, (float)sum, lane[l]);
                }
            }
            float want = ((lane[4] + lane[0]) + (lane[6] + lane[2])) +
                         ((lane[5] + lane[1]) + (lane[7] + lane[3]));
            for (size_t si = 0; si < MX_ARRAY_LEN(sets); si++) {
                if (!sets[si]->vec_dot[type])
                    continue;
                float got = sets[si]->vec_dot[type](n, w, xq);
                if (memcmp(&got, &want, sizeof got) != 0)
                    fail_msg("%s vec_dot (kernels '%s'): %.9g, ggml's order %.9g",
                             mx_type_name(type), sets[si]->name, got, want);
                n_checked++;
            }
        }
        free_all();
    }
    printf("%d Q2_K / Q3_K dots checked against ggml's order\n", n_checked);
}

/* The 4-column prefill dots give, per column, exactly vec_dot's value (prefill and decode agree
 * bit for bit), on 7 blocks (the 2-block loop and its tail) of random weights and activations. */
static void test_vec_dot4_equals_vec_dot(void **state) {
    const struct mx_cpu_kernels *k = &mx_cpu_of(be4)->kern;
    int n_checked = 0;
    for (size_t ti = 0; ti < MX_ARRAY_LEN(wtypes); ti++) {
        enum mx_type type = wtypes[ti], vt = mx_vec_dot_type(type);
        if (!k->vec_dot4[type])
            continue;
        int64_t n = 7 * mx_type_traits(type)->blck_size;
        size_t wb, xb;
        assert_true(mx_row_size(type, n, &wb));
        assert_true(mx_act_row_size(vt, n, &xb));
        uint8_t *w = talloc(wb), *xq = talloc(4 * xb);
        float *x = talloc((size_t)n * 4);
        for (int rep = 0; rep < 20; rep++) {
            for (size_t i = 0; i < wb; i++)
                w[i] = (uint8_t)mx_test_rand(&rng);
            size_t bs = mx_type_traits(type)->type_size;
            for (size_t off = 0; off < wb; off += bs) {
                w[off + 1] &= 0x3b; /* finite, moderate fp16 scales (and Q4_1 / Q5_1 mins) */
                if (type == MX_TYPE_Q4_1 || type == MX_TYPE_Q5_1)
                    w[off + 3] &= 0x3b;
            }
            for (int c = 0; c < 4; c++) {
                for (int64_t i = 0; i < n; i++)
                    x[i] = (float)(c + 1) * mx_test_randf(&rng);
                mx_quantize_act(vt, x, xq + (size_t)c * xb, n);
            }
            float r[4], xd[4 * 7];
            for (int c = 0; c < 4; c++)
                for (int i = 0; i < 7; i++)
                    xd[c * 7 + i] = mx_fp16_to_fp32(
                        ((const mx_block_q8_0 *)(xq + (size_t)c * xb))[i].d);
            k->vec_dot4[type](n, w, xq, xb, xd, r);
            for (int c = 0; c < 4; c++) {
                float e = k->vec_dot[type](n, w, xq + (size_t)c * xb);
                /* a NaN (a K-quant's random scale at the block's end can be inf) is a NaN: its
                 * sign depends on which operand the instructions carried it from */
                if (memcmp(&e, &r[c], sizeof e) != 0 && !(isnan(e) && isnan(r[c])))
                    fail_msg("vec_dot4 %s column %d: %.9g, vec_dot %.9g", mx_type_name(type), c,
                             r[c], e);
            }
        }
        n_checked++;
        free_all();
    }
    printf("%d 4-column dots checked (kernels '%s')\n", n_checked, k->name);
}

/* The 2-row decode dots give, per row, exactly vec_dot's value, for every type that has one in
 * either kernel set (AVX-512 where the CPU has it, and the forced AVX2 set): 5 blocks of random
 * bytes (IQ grids and signs included), drawn again while a row's dot is not finite. */
static void test_vec_dot2_equals_vec_dot(void **state) {
    const struct mx_cpu_kernels *sets[] = {&mx_cpu_of(be4)->kern, &mx_cpu_of(be_avx2)->kern};
    int n_checked = 0;
    for (size_t si = 0; si < MX_ARRAY_LEN(sets); si++) {
        const struct mx_cpu_kernels *k = sets[si];
        for (int ti = 0; ti < MX_TYPE_COUNT; ti++) {
            enum mx_type type = (enum mx_type)ti;
            if (!k->vec_dot2[type] || !k->vec_dot[type])
                continue;
            enum mx_type vt = mx_vec_dot_type(type);
            int64_t n = 5 * mx_type_traits(type)->blck_size;
            size_t wb, xb;
            assert_true(mx_row_size(type, n, &wb));
            assert_true(mx_act_row_size(vt, n, &xb));
            uint8_t *w = talloc(2 * wb), *xq = talloc(xb);
            float *x = talloc((size_t)n * 4);
            for (int rep = 0; rep < 20; rep++) {
                float e[2];
                for (int tries = 0;; tries++) {
                    assert_true(tries < 1000);
                    for (size_t i = 0; i < 2 * wb; i++)
                        w[i] = (uint8_t)mx_test_rand(&rng);
                    for (int64_t i = 0; i < n; i++)
                        x[i] = (float)(rep % 3 + 1) * mx_test_randf(&rng);
                    mx_quantize_act(vt, x, xq, n);
                    e[0] = k->vec_dot[type](n, w, xq);
                    e[1] = k->vec_dot[type](n, w + wb, xq);
                    if (isfinite(e[0]) && isfinite(e[1]) && e[0] != 0.0f && e[1] != 0.0f)
                        break;
                }
                float r[2];
                k->vec_dot2[type](n, w, wb, xq, r);
                for (int row = 0; row < 2; row++)
                    if (memcmp(&e[row], &r[row], sizeof e[row]) != 0)
                        fail_msg("vec_dot2 %s row %d (kernels '%s'): %.9g, vec_dot %.9g",
                                 mx_type_name(type), row, k->name, r[row], e[row]);
            }
            n_checked++;
            free_all();
        }
    }
    if (n_checked == 0) { /* an AVX2-only CPU: that set has none (slower in the model there) */
        printf("no 2-row dots in these kernel sets\n");
        skip();
    }
    printf("%d 2-row dots checked\n", n_checked);
}

/* Results do not depend on the thread count (each output value has one owner). */
static void test_matmul_threads_bitwise(void **state) {
    enum mx_type types[] = {MX_TYPE_F32, MX_TYPE_Q4_0, MX_TYPE_Q6_K};
    for (size_t k = 0; k < 3; k++) {
        float *wd;
        struct mx_tensor w = make_weight(types[k], 256, 70, 1, &wd);
        for (int64_t T = 1; T <= 17; T += 8) {
            struct mx_tensor x = mk(MX_TYPE_F32, 256, T, 1, 1);
            struct mx_tensor y1 = mk(MX_TYPE_F32, 70, T, 1, 1), y4 = mk(MX_TYPE_F32, 70, T, 1, 1);
            fill(&x, 1.0f);
            assert_int_equal(mx_op_matmul(be1, &y1, &w, &x), 0);
            assert_int_equal(mx_op_matmul(be4, &y4, &w, &x), 0);
            assert_memory_equal(y1.data, y4.data, (size_t)(70 * T) * sizeof(float));
        }
        free_all();
    }
}

/* Broadcast: 3-D W [n_in, n_out, 2] against x [n_in, T, 4]: plane i of x uses W plane i / 2. */
static void test_matmul_broadcast(void **state) {
    float *wd;
    struct mx_tensor w = make_weight(MX_TYPE_F32, 32, 6, 2, &wd);
    struct mx_tensor x = mk(MX_TYPE_F32, 32, 3, 4, 1), y = mk(MX_TYPE_F32, 6, 3, 4, 1);
    fill(&x, 1.0f);
    assert_int_equal(mx_op_matmul(be4, &y, &w, &x), 0);
    for (int p = 0; p < 4; p++)
        for (int t = 0; t < 3; t++)
            for (int o = 0; o < 6; o++) {
                double s = 0;
                for (int i = 0; i < 32; i++)
                    s += (double)wd[(p / 2) * 6 * 32 + o * 32 + i] * F(&x)[(p * 3 + t) * 32 + i];
                assert_true(fabs(F(&y)[(p * 3 + t) * 6 + o] - s) < 1e-5);
            }
    free_all();
}

/* ---- matmul_id ------------------------------------------------------------------------------- */

/* Weights in their own pages; unselected experts are made unreadable, so reading one crashes. */
static void test_matmul_id_reads_only_selected(void **state) {
    long page = sysconf(_SC_PAGESIZE);
    int64_t n_in = 64, n_out = 64, n_exp = 6; /* 16 KiB per F32 expert */
    size_t per = (size_t)(n_in * n_out) * 4;
    assert_int_equal(per % (size_t)page, 0);
    char *mem = mmap(NULL, per * (size_t)n_exp, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(mem != MAP_FAILED);
    for (size_t i = 0; i < per * (size_t)n_exp / 4; i++)
        ((float *)mem)[i] = mx_test_randf(&rng);
    struct mx_tensor w;
    assert_int_equal(mx_tensor_init(&w, MX_TYPE_F32, n_in, n_out, n_exp, 1), 0);
    w.data = mem;
    bool used[6] = {false, true, false, false, true, false};
    for (int e = 0; e < n_exp; e++)
        if (!used[e])
            assert_int_equal(mprotect(mem + per * (size_t)e, per, PROT_NONE), 0);
    for (int64_t T = 1; T <= 12; T += 11) { /* decode and a batch that takes the GEMM path */
        struct mx_tensor x = mk(MX_TYPE_F32, n_in, 1, T, 1);
        struct mx_tensor ids = mk(MX_TYPE_I32, 2, T, 1, 1), y = mk(MX_TYPE_F32, n_out, 2, T, 1);
        fill(&x, 1.0f);
        for (int64_t t = 0; t < T; t++) {
            I(&ids)[2 * t] = t % 2 ? 4 : 1;
            I(&ids)[2 * t + 1] = t % 2 ? 1 : 4;
        }
        assert_int_equal(mx_op_matmul_id(be4, &y, &w, &x, &ids), 0);
        for (int64_t t = 0; t < T; t++)
            for (int s = 0; s < 2; s++) {
                int e = I(&ids)[2 * t + s];
                for (int64_t o = 0; o < n_out; o++) {
                    double acc = 0;
                    const float *wr = (const float *)(mem + per * (size_t)e) + o * n_in;
                    for (int64_t i = 0; i < n_in; i++)
                        acc += (double)wr[i] * F(&x)[t * n_in + i];
                    assert_true(fabs(F(&y)[(t * 2 + s) * n_out + o] - acc) < 1e-5);
                }
            }
    }
    munmap(mem, per * (size_t)n_exp);
    free_all();
}

/* matmul_id equals a matmul with the selected expert, per (slot, token), for both x layouts
 * (shared input [n_in, 1, T] and per-slot input [n_in, k, T]) and several weight types. */
static void test_matmul_id_equals_per_expert_matmul(void **state) {
    enum mx_type types[] = {MX_TYPE_F32, MX_TYPE_F16, MX_TYPE_Q4_0, MX_TYPE_Q8_0, MX_TYPE_Q4_K,
                            MX_TYPE_Q6_K};
    for (size_t k = 0; k < MX_ARRAY_LEN(types); k++) {
        int64_t n_in = mx_type_traits(types[k])->blck_size == 256 ? 256 : 64;
        int64_t n_out = 40, n_exp = 5, n_used = 2;
        float *wd;
        struct mx_tensor w = make_weight(types[k], n_in, n_out, n_exp, &wd);
        int64_t Ts[] = {1, 2, 21};
        for (int it = 0; it < 3; it++)
            for (int shared = 0; shared < 2; shared++) {
                int64_t T = Ts[it], xs = shared ? 1 : n_used;
                struct mx_tensor x = mk(MX_TYPE_F32, n_in, xs, T, 1);
                struct mx_tensor ids = mk(MX_TYPE_I32, n_used, T, 1, 1);
                struct mx_tensor y = mk(MX_TYPE_F32, n_out, n_used, T, 1);
                fill(&x, 1.0f);
                for (int64_t t = 0; t < T; t++) {
                    int a = (int)(mx_test_rand(&rng) % 5), b = (int)(mx_test_rand(&rng) % 4);
                    I(&ids)[t * 2] = a;
                    I(&ids)[t * 2 + 1] = b >= a ? b + 1 : b;
                }
                assert_int_equal(mx_op_matmul_id(be4, &y, &w, &x, &ids), 0);
                for (int64_t t = 0; t < T; t++)
                    for (int64_t s = 0; s < n_used; s++) {
                        struct mx_tensor we, xc, yc = mk(MX_TYPE_F32, n_out, 1, 1, 1);
                        assert_int_equal(mx_tensor_init(&we, types[k], n_in, n_out, 1, 1), 0);
                        we.data = (char *)w.data + (size_t)I(&ids)[t * 2 + s] * w.nb[2];
                        assert_int_equal(mx_tensor_view_rows(&x, t * xs + s % xs, 1, &xc), 0);
                        assert_int_equal(mx_op_matmul(be1, &yc, &we, &xc), 0);
                        /* same rounded activations, same dequantized weights: only the
                         * summation order may differ (GEMM vs dot) */
                        double tol = TOL_DOT(n_in) * n_in * 2.0;
                        double d = maxdiff(F(&yc), F(&y) + (t * n_used + s) * n_out, n_out);
                        if (d > tol)
                            fail_msg("matmul_id %s T %lld: slot %lld token %lld differs by %g",
                                     mx_type_name(types[k]), (long long)T, (long long)s,
                                     (long long)t, d);
                    }
                free_all();
                w = make_weight(types[k], n_in, n_out, n_exp, &wd);
            }
        free_all();
    }
}

static void test_matmul_id_bad_id(void **state) {
    float *wd;
    struct mx_tensor w = make_weight(MX_TYPE_F32, 32, 4, 3, &wd);
    struct mx_tensor x = mk(MX_TYPE_F32, 32, 1, 1, 1), ids = mk(MX_TYPE_I32, 1, 1, 1, 1);
    struct mx_tensor y = mk(MX_TYPE_F32, 4, 1, 1, 1);
    I(&ids)[0] = 3;
    assert_int_equal(mx_op_matmul_id(be4, &y, &w, &x, &ids), MX_EINVAL);
    assert_non_null(strstr(mx_backend_last_error(be4), "expert id 3"));
    I(&ids)[0] = -1;
    assert_int_equal(mx_op_matmul_id(be4, &y, &w, &x, &ids), MX_EINVAL);
    free_all();
}

/* matmul_n (an attention block's q, k, v in one pass) gives each output bit for bit what
 * matmul gives for its weight alone: every weight type with the next type in the list and
 * Q6_K beside it (Q4_K_M's mix: q, k Q4_K, v Q6_K), rows of 40, 24 and 8 (GQA's smaller k and
 * v; 8-row and 16-row repacked tiles), as loaded and repacked, on the SIMD and scalar kernel
 * sets and the 1-thread backend (no pool), at decode and prefill column counts; the wide f32
 * path (256+ columns of a float weight) too. */
static void test_matmul_n_equals_matmul(void **state) {
    struct mx_backend *bes[] = {be4, be_scalar, be1};
    for (size_t k = 0; k < MX_ARRAY_LEN(wtypes); k++)
        for (size_t b = 0; b < MX_ARRAY_LEN(bes); b++)
            for (int prep = 0; prep < 2; prep++) {
                enum mx_type ts[3] = {wtypes[k], wtypes[(k + 1) % MX_ARRAY_LEN(wtypes)],
                                      MX_TYPE_Q6_K};
                int64_t n_in = 256, n_out[3] = {40, 24, 8};
                float *wd;
                struct mx_tensor w[3];
                const struct mx_tensor *wp[3];
                for (int i = 0; i < 3; i++) {
                    w[i] = make_weight(ts[i], n_in, n_out[i], 1, &wd);
                    wp[i] = &w[i];
                }
                struct mx_buf *buf = NULL;
                if (prep) {
                    struct mx_tensor *ws[3] = {&w[0], &w[1], &w[2]};
                    struct mx_err err = {0};
                    assert_int_equal(mx_backend_prepare_weights(bes[b], ws, 3, &buf, &err), 0);
                }
                int64_t Ts[] = {1, 3, 37, 260};
                for (int it = 0; it < 4; it++) {
                    int64_t T = Ts[it];
                    struct mx_tensor x = mk(MX_TYPE_F32, n_in, T, 1, 1);
                    struct mx_tensor y[3], r[3], *yp[3];
                    for (int i = 0; i < 3; i++) {
                        y[i] = mk(MX_TYPE_F32, n_out[i], T, 1, 1);
                        r[i] = mk(MX_TYPE_F32, n_out[i], T, 1, 1);
                        yp[i] = &y[i];
                    }
                    fill(&x, 1.0f);
                    for (int i = 0; i < 3; i++)
                        assert_int_equal(mx_op_matmul(bes[b], &r[i], &w[i], &x), 0);
                    assert_int_equal(mx_op_matmul_n(bes[b], 3, yp, wp, &x), 0);
                    for (int i = 0; i < 3; i++)
                        if (memcmp(y[i].data, r[i].data, mx_tensor_nbytes(&y[i])))
                            fail_msg("matmul_n %s %s%s T %lld: output %d (%s) not bit-equal "
                                     "to matmul (%g)", mx_type_name(ts[0]),
                                     mx_backend_cpu_kernels(bes[b]), prep ? " repacked" : "",
                                     (long long)T, i, mx_type_name(ts[i]),
                                     maxdiff(F(&y[i]), F(&r[i]), n_out[i] * T));
                }
                mx_buf_free(buf);
                free_all();
            }
    /* refused: no weights, too many, aliasing outputs, a bad shape */
    float *wd;
    struct mx_tensor w = make_weight(MX_TYPE_Q8_0, 64, 8, 1, &wd);
    struct mx_tensor x = mk(MX_TYPE_F32, 64, 1, 1, 1), y = mk(MX_TYPE_F32, 8, 1, 1, 1);
    struct mx_tensor y2 = mk(MX_TYPE_F32, 4, 1, 1, 1);
    struct mx_tensor *yy[5] = {&y, &y, &y, &y, &y}, *yb[2] = {&y, &y2};
    const struct mx_tensor *ww[5] = {&w, &w, &w, &w, &w};
    assert_int_equal(mx_op_matmul_n(be4, 0, yy, ww, &x), MX_EINVAL);
    assert_int_equal(mx_op_matmul_n(be4, 5, yy, ww, &x), MX_EINVAL);
    assert_int_equal(mx_op_matmul_n(be4, 2, yy, ww, &x), MX_EINVAL);
    assert_non_null(strstr(mx_backend_last_error(be4), "alias"));
    assert_int_equal(mx_op_matmul_n(be4, 2, yb, ww, &x), MX_EINVAL);
    free_all();
}

/* matmul_id2 (an MoE block's gate and up in one pass) gives each output bit for bit what
 * matmul_id gives for its weight alone, and with silu_mul what mx_op_silu_mul gives on those:
 * every weight type, as loaded and repacked by the
 * backend (the 16-row tiles, with an 8-row tail: n_out 40), on the SIMD and scalar kernel sets,
 * decode and prefill column counts, both x layouts. */
static void test_matmul_id2_equals_two_matmul_id(void **state) {
    struct mx_backend *bes[] = {be4, be_scalar};
    for (size_t k = 0; k < MX_ARRAY_LEN(wtypes); k++)
        for (size_t b = 0; b < MX_ARRAY_LEN(bes); b++)
            for (int prep = 0; prep < 2; prep++) {
                int64_t n_in = mx_type_traits(wtypes[k])->blck_size == 256 ? 256 : 64;
                int64_t n_out = 40, n_exp = 5, n_used = 2;
                float *wd;
                struct mx_tensor wa = make_weight(wtypes[k], n_in, n_out, n_exp, &wd);
                struct mx_tensor wb = make_weight(wtypes[k], n_in, n_out, n_exp, &wd);
                struct mx_buf *buf = NULL;
                if (prep) {
                    struct mx_tensor *ws[2] = {&wa, &wb};
                    struct mx_err err = {0};
                    assert_int_equal(mx_backend_prepare_weights(bes[b], ws, 2, &buf, &err), 0);
                }
                int64_t Ts[] = {1, 3, 37};
                for (int it = 0; it < 3; it++)
                    for (int shared = 0; shared < 2; shared++) {
                        int64_t T = Ts[it], xs = shared ? 1 : n_used;
                        struct mx_tensor x = mk(MX_TYPE_F32, n_in, xs, T, 1);
                        struct mx_tensor ids = mk(MX_TYPE_I32, n_used, T, 1, 1);
                        struct mx_tensor ya = mk(MX_TYPE_F32, n_out, n_used, T, 1);
                        struct mx_tensor yb = mk(MX_TYPE_F32, n_out, n_used, T, 1);
                        struct mx_tensor ra = mk(MX_TYPE_F32, n_out, n_used, T, 1);
                        struct mx_tensor rb = mk(MX_TYPE_F32, n_out, n_used, T, 1);
                        fill(&x, 1.0f);
                        for (int64_t t = 0; t < T; t++) {
                            int e0 = (int)(mx_test_rand(&rng) % 5);
                            int e1 = (int)(mx_test_rand(&rng) % 4);
                            I(&ids)[t * 2] = e0;
                            I(&ids)[t * 2 + 1] = e1 >= e0 ? e1 + 1 : e1;
                        }
                        assert_int_equal(mx_op_matmul_id(bes[b], &ra, &wa, &x, &ids), 0);
                        assert_int_equal(mx_op_matmul_id(bes[b], &rb, &wb, &x, &ids), 0);
                        assert_int_equal(
                            mx_op_matmul_id2(bes[b], &ya, &wa, &yb, &wb, &x, &ids, false), 0);
                        size_t nb = mx_tensor_nbytes(&ya);
                        if (memcmp(ya.data, ra.data, nb) || memcmp(yb.data, rb.data, nb))
                            fail_msg("matmul_id2 %s %s%s T %lld x.ne1 %lld: not bit-equal to "
                                     "matmul_id (gate %g, up %g)",
                                     mx_type_name(wtypes[k]), mx_backend_cpu_kernels(bes[b]),
                                     prep ? " repacked" : "", (long long)T, (long long)xs,
                                     maxdiff(F(&ya), F(&ra), n_out * n_used * T),
                                     maxdiff(F(&yb), F(&rb), n_out * n_used * T));
                        /* with the gated unit: silu_mul's bits after the two matmul_ids */
                        assert_int_equal(
                            mx_op_matmul_id2(bes[b], &ya, &wa, &yb, &wb, &x, &ids, true), 0);
                        assert_int_equal(mx_op_silu_mul(bes[b], &ra, &ra, &rb), 0);
                        if (memcmp(ya.data, ra.data, nb))
                            fail_msg("matmul_id2 + silu_mul %s %s%s T %lld: not bit-equal to "
                                     "matmul_id and silu_mul (%g)",
                                     mx_type_name(wtypes[k]), mx_backend_cpu_kernels(bes[b]),
                                     prep ? " repacked" : "", (long long)T,
                                     maxdiff(F(&ya), F(&ra), n_out * n_used * T));
                    }
                mx_buf_free(buf);
                free_all();
            }
}

/* matmul_id2 on two weights of different types takes the plain ops (same numbers); an
 * output aliasing the other, or a bad expert id, is refused with a message. */
static void test_matmul_id2_mixed_and_errors(void **state) {
    float *wd;
    struct mx_tensor wa = make_weight(MX_TYPE_Q4_0, 64, 16, 3, &wd);
    struct mx_tensor wb = make_weight(MX_TYPE_Q8_0, 64, 16, 3, &wd);
    struct mx_tensor x = mk(MX_TYPE_F32, 64, 1, 9, 1), ids = mk(MX_TYPE_I32, 1, 9, 1, 1);
    struct mx_tensor ya = mk(MX_TYPE_F32, 16, 1, 9, 1), yb = mk(MX_TYPE_F32, 16, 1, 9, 1);
    struct mx_tensor ra = mk(MX_TYPE_F32, 16, 1, 9, 1), rb = mk(MX_TYPE_F32, 16, 1, 9, 1);
    fill(&x, 1.0f);
    for (int t = 0; t < 9; t++)
        I(&ids)[t] = t % 3;
    assert_int_equal(mx_op_matmul_id(be4, &ra, &wa, &x, &ids), 0);
    assert_int_equal(mx_op_matmul_id(be4, &rb, &wb, &x, &ids), 0);
    assert_int_equal(mx_op_matmul_id2(be4, &ya, &wa, &yb, &wb, &x, &ids, false), 0);
    assert_memory_equal(ya.data, ra.data, mx_tensor_nbytes(&ya));
    assert_memory_equal(yb.data, rb.data, mx_tensor_nbytes(&yb));
    assert_int_equal(mx_op_matmul_id2(be4, &ya, &wa, &yb, &wb, &x, &ids, true), 0);
    assert_int_equal(mx_op_silu_mul(be4, &ra, &ra, &rb), 0);
    assert_memory_equal(ya.data, ra.data, mx_tensor_nbytes(&ya));
    assert_int_equal(mx_op_matmul_id2(be4, &ya, &wa, &ya, &wa, &x, &ids, false), MX_EINVAL);
    assert_non_null(strstr(mx_backend_last_error(be4), "alias"));
    I(&ids)[4] = 3;
    assert_int_equal(mx_op_matmul_id2(be4, &ya, &wa, &yb, &wa, &x, &ids, false), MX_EINVAL);
    assert_non_null(strstr(mx_backend_last_error(be4), "expert id 3"));
    free_all();
}

/* ---- get_rows -------------------------------------------------------------------------------- */

static void test_get_rows(void **state) {
    for (size_t k = 0; k < MX_ARRAY_LEN(wtypes); k++) {
        int64_t n = mx_type_traits(wtypes[k])->blck_size == 256 ? 256 : 64;
        float *wd;
        struct mx_tensor w = make_weight(wtypes[k], n, 11, 1, &wd);
        struct mx_tensor ids = mk(MX_TYPE_I32, 4, 1, 1, 1), y = mk(MX_TYPE_F32, n, 4, 1, 1);
        int32_t want[4] = {10, 0, 3, 3};
        memcpy(ids.data, want, sizeof want);
        assert_int_equal(mx_op_get_rows(be4, &y, &w, &ids), 0);
        for (int t = 0; t < 4; t++) /* exactly the reference dequantization */
            assert_memory_equal(F(&y) + t * n, wd + want[t] * n, (size_t)n * sizeof(float));
        I(&ids)[2] = 11;
        assert_int_equal(mx_op_get_rows(be4, &y, &w, &ids), MX_EINVAL);
        free_all();
    }
}

/* ---- norms, softmax, elementwise ------------------------------------------------------------- */

static void test_norms(void **state) {
    int64_t n = 77, R = 5;
    struct mx_tensor x = mk(MX_TYPE_F32, n, R, 1, 1), w = mk(MX_TYPE_F32, n, 1, 1, 1);
    struct mx_tensor b = mk(MX_TYPE_F32, n, 1, 1, 1), y = mk(MX_TYPE_F32, n, R, 1, 1);
    fill(&x, 3.0f);
    fill(&w, 1.0f);
    fill(&b, 1.0f);
    for (int wi = 0; wi < 2; wi++) {
        assert_int_equal(mx_op_rms_norm(be4, &y, &x, wi ? &w : NULL, 1e-5f), 0);
        for (int64_t r = 0; r < R; r++) {
            double ss = 0;
            for (int64_t i = 0; i < n; i++)
                ss += (double)F(&x)[r * n + i] * F(&x)[r * n + i];
            double sc = 1.0 / sqrt(ss / n + 1e-5);
            for (int64_t i = 0; i < n; i++) {
                double want = F(&x)[r * n + i] * sc * (wi ? F(&w)[i] : 1.0);
                assert_true(fabs(F(&y)[r * n + i] - want) <= 1e-6 * (fabs(want) + 1));
            }
        }
        assert_int_equal(mx_op_layer_norm(be4, &y, &x, wi ? &w : NULL, wi ? &b : NULL, 1e-5f), 0);
        for (int64_t r = 0; r < R; r++) {
            double m = 0, v = 0;
            for (int64_t i = 0; i < n; i++)
                m += F(&x)[r * n + i];
            m /= n;
            for (int64_t i = 0; i < n; i++)
                v += (F(&x)[r * n + i] - m) * (F(&x)[r * n + i] - m);
            v /= n;
            for (int64_t i = 0; i < n; i++) {
                double want = (F(&x)[r * n + i] - m) / sqrt(v + 1e-5);
                if (wi)
                    want = want * F(&w)[i] + F(&b)[i];
                assert_true(fabs(F(&y)[r * n + i] - want) <= 2e-6 * (fabs(want) + 1));
            }
        }
    }
    /* in place */
    memcpy(y.data, x.data, (size_t)(n * R) * 4);
    struct mx_tensor y2 = mk(MX_TYPE_F32, n, R, 1, 1);
    assert_int_equal(mx_op_rms_norm(be4, &y2, &x, &w, 1e-5f), 0);
    assert_int_equal(mx_op_rms_norm(be4, &y, &y, &w, 1e-5f), 0);
    assert_memory_equal(y.data, y2.data, (size_t)(n * R) * 4);
    /* a wrong weight length is refused with a message */
    struct mx_tensor w2 = mk(MX_TYPE_F32, n - 1, 1, 1, 1);
    assert_int_equal(mx_op_rms_norm(be4, &y, &x, &w2, 1e-5f), MX_EINVAL);
    assert_non_null(strstr(mx_backend_last_error(be4), "rms_norm"));
    free_all();
}

static void test_softmax_and_activations(void **state) {
    int64_t n = 45, R = 3;
    struct mx_tensor x = mk(MX_TYPE_F32, n, R, 1, 1), u = mk(MX_TYPE_F32, n, R, 1, 1);
    struct mx_tensor y = mk(MX_TYPE_F32, n, R, 1, 1);
    fill(&x, 6.0f);
    fill(&u, 2.0f);
    assert_int_equal(mx_op_softmax(be4, &y, &x, 0.7f), 0);
    for (int64_t r = 0; r < R; r++) {
        double mx = -1e30, s = 0;
        for (int64_t i = 0; i < n; i++)
            mx = fmax(mx, 0.7 * F(&x)[r * n + i]);
        for (int64_t i = 0; i < n; i++)
            s += exp(0.7 * F(&x)[r * n + i] - mx);
        for (int64_t i = 0; i < n; i++) {
            double want = exp(0.7 * F(&x)[r * n + i] - mx) / s;
            assert_true(fabs(F(&y)[r * n + i] - want) <= 1e-6 * want + 1e-9);
        }
    }
    int64_t N = n * R;
    assert_int_equal(mx_op_silu_mul(be4, &y, &x, &u), 0);
    for (int64_t i = 0; i < N; i++) {
        double xv = F(&x)[i], want = xv / (1 + exp(-xv)) * F(&u)[i];
        assert_true(fabs(F(&y)[i] - want) <= 1e-6 * (fabs(want) + 1e-3));
    }
    assert_int_equal(mx_op_silu(be4, &y, &x), 0);
    for (int64_t i = 0; i < N; i++) {
        double xv = F(&x)[i], want = xv / (1 + exp(-xv));
        assert_true(fabs(F(&y)[i] - want) <= 1e-6 * (fabs(want) + 1e-3));
    }
    assert_int_equal(mx_op_gelu_mul(be4, &y, &x, &u), 0);
    for (int64_t i = 0; i < N; i++) {
        double xv = F(&x)[i];
        double want = 0.5 * xv * (1 + tanh(sqrt(2 / M_PI) * (xv + 0.044715 * xv * xv * xv)));
        /* for x << 0, 1 + tanh(..) cancels: up to |x| * 2^-24 absolute error is float's due */
        double tol = 2e-6 * fabs(want * F(&u)[i]) + 1.2e-7 * fabs(xv * F(&u)[i]);
        assert_true(fabs(F(&y)[i] - want * F(&u)[i]) <= tol);
    }
    assert_int_equal(mx_op_scale(be4, &y, &x, -0.5f), 0);
    for (int64_t i = 0; i < N; i++)
        assert_true(F(&y)[i] == -0.5f * F(&x)[i]);
    /* add/mul with broadcasting: b [n, 1] over a [n, R]; b [1, R] over a [n, R] */
    struct mx_tensor b1 = mk(MX_TYPE_F32, n, 1, 1, 1), b2 = mk(MX_TYPE_F32, 1, R, 1, 1);
    fill(&b1, 1.0f);
    fill(&b2, 1.0f);
    assert_int_equal(mx_op_add(be4, &y, &x, &b1), 0);
    for (int64_t i = 0; i < N; i++)
        assert_true(F(&y)[i] == F(&x)[i] + F(&b1)[i % n]);
    assert_int_equal(mx_op_mul(be4, &y, &x, &b2), 0);
    for (int64_t i = 0; i < N; i++)
        assert_true(F(&y)[i] == F(&x)[i] * F(&b2)[i / n]);
    memcpy(y.data, x.data, (size_t)N * 4);
    assert_int_equal(mx_op_add(be4, &y, &y, &u), 0); /* in place */
    for (int64_t i = 0; i < N; i++)
        assert_true(F(&y)[i] == F(&x)[i] + F(&u)[i]);
    struct mx_tensor bad = mk(MX_TYPE_F32, 2, 1, 1, 1);
    assert_int_equal(mx_op_add(be4, &y, &x, &bad), MX_EINVAL);
    free_all();
}

/* ---- rope ------------------------------------------------------------------------------------ */

/* Exact rotation in double: pair i at position p by p * base^(-2i/n_rot). */
static void oracle_rope(const float *x, double *y, int hd, int n_rot, int mode, double base,
                        double pos) {
    for (int i = 0; i < hd; i++)
        y[i] = x[i];
    for (int i = 0; i < n_rot / 2; i++) {
        double th = pos * pow(base, -2.0 * i / n_rot);
        int i0 = mode == MX_ROPE_NEOX ? i : 2 * i,
            i1 = mode == MX_ROPE_NEOX ? i + n_rot / 2 : 2 * i + 1;
        y[i0] = x[i0] * cos(th) - x[i1] * sin(th);
        y[i1] = x[i0] * sin(th) + x[i1] * cos(th);
    }
}

static void test_rope_formula(void **state) {
    int hd = 24, nh = 3, T = 5;
    int n_rots[] = {24, 16};
    struct mx_tensor x = mk(MX_TYPE_F32, hd, nh, T, 1), y = mk(MX_TYPE_F32, hd, nh, T, 1);
    struct mx_tensor pos = mk(MX_TYPE_I32, T, 1, 1, 1);
    fill(&x, 1.0f);
    int32_t pv[5] = {0, 1, 7, 31, 50};
    memcpy(pos.data, pv, sizeof pv);
    double ref[24];
    for (int m = 0; m < 2; m++)
        for (int r = 0; r < 2; r++) {
            struct mx_rope_params p = {.n_rot = n_rots[r], .mode = m ? MX_ROPE_NEOX : MX_ROPE_NORM,
                                       .freq_base = 10000.0f, .freq_scale = 1.0f};
            assert_int_equal(mx_op_rope(be4, &y, &x, &pos, &p), 0);
            /* float32 angles at p <= 50: |theta error| <= p * (pairs * 2^-24) ~ 1e-5 rad worst
             * case at the fastest pair; so 2e-5 on values of magnitude <= 1.5 */
            for (int t = 0; t < T; t++)
                for (int h = 0; h < nh; h++) {
                    oracle_rope(F(&x) + (t * nh + h) * hd, ref, hd, p.n_rot, p.mode, 10000.0,
                                pv[t]);
                    for (int i = 0; i < hd; i++)
                        assert_true(fabs(F(&y)[(t * nh + h) * hd + i] - ref[i]) < 2e-5);
                }
        }
    free_all();
}

/* Llama 3.1 frequency factors and YaRN, against ggml's rope_yarn formulas evaluated in double:
 * theta_extrap = p * base^(-2i/n_rot) / ff[i]; theta_interp = freq_scale * theta_extrap;
 * mix = ext_factor * (1 - clamp((i - lo) / max(0.001, hi - lo), 0, 1)) with lo/hi the YaRN
 * correction dims; theta = interp (1 - mix) + extrap mix; magnitude attn_factor *
 * (1 + 0.1 ln(1/freq_scale)). Same float32-angle tolerance as test_rope_formula. */
static void test_rope_freq_factors_and_yarn(void **state) {
    int hd = 32, nh = 2, T = 4, n_rot = 32;
    struct mx_tensor x = mk(MX_TYPE_F32, hd, nh, T, 1), y = mk(MX_TYPE_F32, hd, nh, T, 1);
    struct mx_tensor pos = mk(MX_TYPE_I32, T, 1, 1, 1), ff = mk(MX_TYPE_F32, n_rot / 2, 1, 1, 1);
    fill(&x, 1.0f);
    for (int i = 0; i < n_rot / 2; i++)
        F(&ff)[i] = 1.0f + (float)i * 0.37f;
    int32_t pv[4] = {0, 3, 17, 40};
    memcpy(pos.data, pv, sizeof pv);
    for (int yarn = 0; yarn < 2; yarn++) {
        struct mx_rope_params p = {.n_rot = n_rot, .mode = MX_ROPE_NORM, .freq_base = 10000.0f,
                                   .freq_scale = yarn ? 0.25f : 1.0f, .freq_factors = &ff};
        if (yarn) {
            p.ext_factor = 1.0f;
            p.attn_factor = 1.0f;
            p.beta_fast = 32.0f;
            p.beta_slow = 1.0f;
            p.n_ctx_orig = 4096;
        }
        assert_int_equal(mx_op_rope(be4, &y, &x, &pos, &p), 0);
        double lo = 0, hi = 0;
        if (yarn) {
            double a = n_rot * log(4096.0 / (32.0 * 2 * M_PI)) / (2 * log(10000.0));
            double b = n_rot * log(4096.0 / (1.0 * 2 * M_PI)) / (2 * log(10000.0));
            lo = fmax(0, floor(a));
            hi = fmin(n_rot - 1, ceil(b));
        }
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                const float *xv = F(&x) + (t * nh + h) * hd;
                for (int i = 0; i < n_rot / 2; i++) {
                    double ex = pv[t] * pow(10000.0, -2.0 * i / n_rot) / F(&ff)[i];
                    double th = p.freq_scale * ex, ms = 1.0;
                    if (yarn) {
                        double r = (i - lo) / fmax(0.001, hi - lo);
                        double mix = 1.0 - fmin(1.0, fmax(0.0, r));
                        th = th * (1 - mix) + ex * mix;
                        ms = 1.0 + 0.1 * log(1.0 / p.freq_scale);
                    }
                    double w0 = (xv[2 * i] * cos(th) - xv[2 * i + 1] * sin(th)) * ms;
                    double w1 = (xv[2 * i] * sin(th) + xv[2 * i + 1] * cos(th)) * ms;
                    const float *yv = F(&y) + (t * nh + h) * hd;
                    if (fabs(yv[2 * i] - w0) > 2e-5 || fabs(yv[2 * i + 1] - w1) > 2e-5)
                        fail_msg("rope yarn %d t %d pair %d: (%g, %g) vs (%g, %g)", yarn, t, i,
                                 yv[2 * i], yv[2 * i + 1], w0, w1);
                }
            }
    }
    struct mx_tensor ff_short = mk(MX_TYPE_F32, 3, 1, 1, 1);
    struct mx_rope_params bad = {.n_rot = n_rot, .freq_base = 1e4f, .freq_scale = 1.0f,
                                 .freq_factors = &ff_short};
    assert_int_equal(mx_op_rope(be4, &y, &x, &pos, &bad), MX_EINVAL);
    free_all();
}

/* At large positions ggml's float32 angle recipe (documented in backend.h) is followed exactly:
 * compare against that recipe evaluated here, and against exact angles with a loose bound. */
static void test_rope_large_positions_follow_ggml(void **state) {
    int hd = 16, T = 3;
    struct mx_tensor x = mk(MX_TYPE_F32, hd, 1, T, 1), y = mk(MX_TYPE_F32, hd, 1, T, 1);
    struct mx_tensor pos = mk(MX_TYPE_I32, T, 1, 1, 1);
    fill(&x, 1.0f);
    int32_t pv[3] = {16380, 40000, 65535};
    memcpy(pos.data, pv, sizeof pv);
    struct mx_rope_params p = {.n_rot = hd, .mode = MX_ROPE_NORM, .freq_base = 1e6f,
                               .freq_scale = 1.0f};
    assert_int_equal(mx_op_rope(be4, &y, &x, &pos, &p), 0);
    for (int t = 0; t < T; t++) {
        float ts = powf(1e6f, -2.0f / hd), base = (float)pv[t];
        const float *xv = F(&x) + t * hd;
        for (int i = 0; i < hd / 2; i++) {
            float th = 1.0f * base, c = cosf(th), s = sinf(th);
            /* the rotation fused as in ggml's FMA builds */
            assert_true(F(&y)[t * hd + 2 * i] == fmaf(xv[2 * i], c, -(xv[2 * i + 1] * s)));
            assert_true(F(&y)[t * hd + 2 * i + 1] == fmaf(xv[2 * i], s, xv[2 * i + 1] * c));
            base *= ts;
        }
        double ref[16];
        oracle_rope(xv, ref, hd, hd, MX_ROPE_NORM, 1e6, pv[t]);
        /* theta ~ 6.5e4 rad in float32 has an ulp of 0.004 rad: differences of that order are
         * the documented ggml behaviour, not an error */
        for (int i = 0; i < hd; i++)
            assert_true(fabs(F(&y)[t * hd + i] - ref[i]) < 0.02);
    }
    free_all();
}

/* ---- KV cache: write, attention, shift ------------------------------------------------------- */

struct attn_case {
    int hd, nh, nkv;   /* head_dim, heads, kv heads */
    int T, ncell;      /* queries, cache cells scanned */
    int window;
};

/* Double-precision attention over f32 copies of the cache. */
static void oracle_attn(const struct attn_case *c, const float *q, const float *k, const float *v,
                        const int32_t *qpos, const int32_t *kpos, double scale, double *out) {
    int group = c->nh / c->nkv, ekv = c->hd * c->nkv;
    double *w = malloc((size_t)c->ncell * sizeof(double));
    for (int t = 0; t < c->T; t++)
        for (int h = 0; h < c->nh; h++) {
            int g = h / group;
            double mx = -1e300, s = 0;
            for (int j = 0; j < c->ncell; j++) {
                bool vis = kpos[j] >= 0 && kpos[j] <= qpos[t] &&
                           (c->window == 0 || qpos[t] - kpos[j] < c->window);
                w[j] = NAN;
                if (!vis)
                    continue;
                double d = 0;
                for (int i = 0; i < c->hd; i++)
                    d += (double)q[(t * c->nh + h) * c->hd + i] * k[j * ekv + g * c->hd + i];
                w[j] = d * scale;
                mx = fmax(mx, w[j]);
            }
            for (int j = 0; j < c->ncell; j++)
                if (!isnan(w[j]))
                    s += exp(w[j] - mx);
            double *o = out + (t * c->nh + h) * c->hd;
            for (int i = 0; i < c->hd; i++)
                o[i] = 0;
            for (int j = 0; j < c->ncell; j++) {
                if (isnan(w[j]))
                    continue;
                double p = exp(w[j] - mx) / s;
                for (int i = 0; i < c->hd; i++)
                    o[i] += p * v[j * ekv + g * c->hd + i];
            }
        }
    free(w);
}

/* Fills a cache of type from f32 rows via mx_op_cpy (the KV write) and returns f32 copies of what
 * the cache now holds (the oracle reads those, so it checks the attention, not the rounding). */
static struct mx_tensor make_cache(enum mx_type type, int ekv, int ncell, const float *src,
                                   float *held) {
    struct mx_tensor c = mk(type, ekv, ncell, 1, 1), s, back;
    assert_int_equal(mx_tensor_init(&s, MX_TYPE_F32, ekv, ncell, 1, 1), 0);
    s.data = (void *)src;
    assert_int_equal(mx_op_cpy(be4, &c, &s), 0);
    back = s;
    back.data = held;
    assert_int_equal(mx_op_cpy(be4, &back, &c), 0);
    return c;
}

static void run_attn_case(const struct attn_case *c, enum mx_type kvt, int mode, double tol_held,
                          double tol_src) {
    int ekv = c->hd * c->nkv;
    struct mx_tensor q = mk(MX_TYPE_F32, c->hd, c->nh, c->T, 1);
    struct mx_tensor y = mk(MX_TYPE_F32, c->hd, c->nh, c->T, 1);
    struct mx_tensor qpos = mk(MX_TYPE_I32, c->T, 1, 1, 1);
    struct mx_tensor kpos = mk(MX_TYPE_I32, c->ncell + 3, 1, 1, 1); /* longer than scanned */
    float *ks = talloc((size_t)(ekv * c->ncell) * 4), *vs = talloc((size_t)(ekv * c->ncell) * 4);
    float *kh = talloc((size_t)(ekv * c->ncell) * 4), *vh = talloc((size_t)(ekv * c->ncell) * 4);
    for (int i = 0; i < ekv * c->ncell; i++) {
        ks[i] = mx_test_randf(&rng);
        vs[i] = mx_test_randf(&rng);
    }
    fill(&q, 1.0f);
    /* cells hold a shuffled set of positions, with holes (-1) */
    for (int j = 0; j < c->ncell + 3; j++)
        I(&kpos)[j] = (j * 7) % c->ncell;
    I(&kpos)[2] = -1;
    I(&kpos)[c->ncell - 1] = -1;
    for (int t = 0; t < c->T; t++)
        I(&qpos)[t] = c->ncell - 1 - 3 * t; /* later queries see fewer cells */
    I(&qpos)[c->T - 1] = -5;                 /* sees nothing: zeros */
    struct mx_tensor kc = make_cache(kvt, ekv, c->ncell, ks, kh);
    struct mx_tensor vc = make_cache(kvt, ekv, c->ncell, vs, vh);
    struct mx_attn_params p = {.n_head = c->nh, .n_head_kv = c->nkv, .head_dim = c->hd,
                               .n_kv = c->ncell, .scale = 1.0f / sqrtf((float)c->hd),
                               .window = c->window};
    mx_backend_set_act_mode(be4, mode);
    assert_int_equal(mx_op_attn(be4, &y, &q, &kc, &vc, &qpos, &kpos, &p), 0);
    mx_backend_set_act_mode(be4, MX_ACT_GGML);
    int n = c->hd * c->nh * c->T;
    double *ref = talloc((size_t)n * sizeof(double));
    double worst_h = 0, worst_s = 0;
    oracle_attn(c, F(&q), kh, vh, I(&qpos), I(&kpos), p.scale, ref);
    for (int i = 0; i < n; i++)
        worst_h = fmax(worst_h, fabs(F(&y)[i] - ref[i]));
    oracle_attn(c, F(&q), ks, vs, I(&qpos), I(&kpos), p.scale, ref);
    for (int i = 0; i < n; i++)
        worst_s = fmax(worst_s, fabs(F(&y)[i] - ref[i]));
    if (worst_h > tol_held || worst_s > tol_src)
        fail_msg("attn %s mode %d window %d: %g vs held cache (tol %g), %g vs f32 source (tol %g)",
                 mx_type_name(kvt), mode, c->window, worst_h, tol_held, worst_s, tol_src);
    for (int i = 0; i < c->hd * c->nh; i++) /* the blind query */
        assert_true(F(&y)[(c->T - 1) * c->hd * c->nh + i] == 0.0f);
}

static void test_attn_against_oracle(void **state) {
    struct attn_case c1 = {.hd = 16, .nh = 6, .nkv = 2, .T = 5, .ncell = 23};
    struct attn_case c2 = {.hd = 16, .nh = 4, .nkv = 4, .T = 4, .ncell = 19, .window = 6};
    struct attn_case c3 = {.hd = 32, .nh = 2, .nkv = 1, .T = 3, .ncell = 9};
    const struct attn_case *cs[] = {&c1, &c2, &c3};
    for (int i = 0; i < 3; i++) {
        /* F32 cache: f32 dot of hd terms and a softmax-weighted sum: ~1e-6 */
        run_attn_case(cs[i], MX_TYPE_F32, MX_ACT_F32, 1e-5, 1e-5);
        run_attn_case(cs[i], MX_TYPE_F32, MX_ACT_GGML, 1e-5, 1e-5);
        /* F16 cache, exact activations: vs the values the cache holds, float error only. Vs the
         * f32 source: k, v off by <= 2^-11 relative, |q|,|k| <= 1, scale 1/sqrt(hd): score error
         * <= hd * 2^-11 / sqrt(hd) = sqrt(hd) * 4.9e-4 <= 2.8e-3, weights move <= 2x that
         * relative, output (|v| <= 1) by <= 5.6e-3 + 4.9e-4. */
        run_attn_case(cs[i], MX_TYPE_F16, MX_ACT_F32, 1e-5, 7e-3);
        /* GGML mode rounds q and the weights to f16 too: another 4.9e-4 relative each */
        run_attn_case(cs[i], MX_TYPE_F16, MX_ACT_GGML, 4e-3, 1e-2);
        /* Q8_0 cache: each value off by <= amax/254 <= 3.9e-3: score error <= sqrt(hd) * 3.9e-3
         * <= 0.022, weights <= 4.4 %, output <= 0.044 + 0.004 */
        run_attn_case(cs[i], MX_TYPE_Q8_0, MX_ACT_F32, 1e-5, 0.05);
        free_all();
    }
}

/* The fast (flash-style, online softmax) attention equals the two-pass reference: several query
 * blocks, GQA, holes, a window, long-ish cache. Both compute in f32 from the same cache values;
 * only exp() (Cephes polynomial vs libm, ~1 ulp) and the summation order differ: 1e-5 on outputs
 * of magnitude <= 1. */
/* One-token attention over a long cache takes the split path (chunks of cells, partials merged
 * per head): against the reference for every cache type and both activation modes, with empty
 * cells, future cells, a window that hides whole chunks, and a query that sees nothing; and the
 * same bits for 1 and 4 threads (the chunking depends on the cache length only). */
static void test_attn_split_decode(void **state) {
    if (!mx_cpu_of(be4)->kern.attn_split) {
        mx_test_skip("no split decode attention on this CPU: nothing to compare");
    }
    int hd = 64, nh = 8, nkv = 2, ncell = 3001, ekv = hd * nkv;
    enum mx_type types[] = {MX_TYPE_F32, MX_TYPE_F16, MX_TYPE_Q8_0};
    int32_t qposs[] = {2800, 2800, 0};
    int windows[] = {0, 500, 0};
    for (int ti = 0; ti < 3; ti++)
        for (int k = 0; k < 3; k++) {
            struct mx_tensor q = mk(MX_TYPE_F32, hd, nh, 1, 1),
                             src = mk(MX_TYPE_F32, ekv, ncell, 1, 1);
            struct mx_tensor kc = mk(types[ti], ekv, ncell, 1, 1),
                             vc = mk(types[ti], ekv, ncell, 1, 1);
            struct mx_tensor qp = mk(MX_TYPE_I32, 1, 1, 1, 1), kp = mk(MX_TYPE_I32, ncell, 1, 1, 1);
            struct mx_tensor y1 = mk(MX_TYPE_F32, hd, nh, 1, 1), y2 = mk(MX_TYPE_F32, hd, nh, 1, 1);
            struct mx_tensor y3 = mk(MX_TYPE_F32, hd, nh, 1, 1);
            fill(&q, 1.0f);
            fill(&src, 1.0f);
            assert_int_equal(mx_op_cpy(be4, &kc, &src), 0);
            fill(&src, 1.0f);
            assert_int_equal(mx_op_cpy(be4, &vc, &src), 0);
            for (int j = 0; j < ncell; j++) /* holes, and a query at 0 that sees nothing */
                I(&kp)[j] = j % 37 == 5 ? -1 : (k == 2 ? j + 1 : j);
            I(&qp)[0] = qposs[k];
            struct mx_attn_params p = {.n_head = nh, .n_head_kv = nkv, .head_dim = hd,
                                       .n_kv = ncell, .scale = 0.125f, .window = windows[k]};
            for (int mode = 0; mode < 2; mode++) {
                mx_backend_set_act_mode(be4, mode);
                mx_backend_set_act_mode(be1, mode);
                mx_backend_set_act_mode(be_scalar, mode);
                assert_int_equal(mx_op_attn(be4, &y1, &q, &kc, &vc, &qp, &kp, &p), 0);
                assert_int_equal(mx_op_attn(be_scalar, &y2, &q, &kc, &vc, &qp, &kp, &p), 0);
                assert_int_equal(mx_op_attn(be1, &y3, &q, &kc, &vc, &qp, &kp, &p), 0);
                double tol = mode == MX_ACT_GGML && types[ti] == MX_TYPE_F16 ? 1e-3 : 1e-5;
                double d = maxdiff(F(&y1), F(&y2), hd * nh);
                if (d > tol)
                    fail_msg("split attn %s case %d mode %d: %g from the reference",
                             mx_type_name(types[ti]), k, mode, d);
                assert_memory_equal(y1.data, y3.data, (size_t)(hd * nh) * sizeof(float));
            }
            mx_backend_set_act_mode(be4, MX_ACT_GGML);
            mx_backend_set_act_mode(be1, MX_ACT_GGML);
            mx_backend_set_act_mode(be_scalar, MX_ACT_GGML);
            free_all();
        }
}

/* Non-causal attention with many queries that all see every cell (the diffusion UNet: all
 * positions 0) takes the dense path (two sgemm per head and block of queries): against the
 * reference for a query count that is not a multiple of the block, head dims 40 (not a multiple
 * of 8) and 64, GQA, and a cache whose rows are wider than the heads; and a cache with one cell
 * in a query's future falls back to the masked paths, still equal to the reference. */
static void test_attn_dense(void **state) {
    if (!mx_cpu_of(be4)->kern.attn_dense) {
        mx_test_skip("no dense attention on this CPU: nothing to compare");
    }
    struct { int hd, nh, nkv, T, ncell; } cs[] = {{40, 8, 8, 130, 77}, {64, 4, 2, 200, 300}};
    for (int ci = 0; ci < 2; ci++)
        for (int future = 0; future < 2; future++) {
            int hd = cs[ci].hd, nh = cs[ci].nh, nkv = cs[ci].nkv, T = cs[ci].T;
            int ncell = cs[ci].ncell, ekv = hd * nkv;
            struct mx_tensor q = mk(MX_TYPE_F32, hd, nh, T, 1);
            struct mx_tensor kc = mk(MX_TYPE_F32, ekv, ncell, 1, 1),
                             vc = mk(MX_TYPE_F32, ekv, ncell, 1, 1);
            struct mx_tensor qp = mk(MX_TYPE_I32, T, 1, 1, 1), kp = mk(MX_TYPE_I32, ncell, 1, 1, 1);
            struct mx_tensor y1 = mk(MX_TYPE_F32, hd, nh, T, 1), y2 = mk(MX_TYPE_F32, hd, nh, T, 1);
            fill(&q, 2.0f);
            fill(&kc, 2.0f);
            fill(&vc, 1.0f);
            for (int j = 0; j < ncell; j++)
                I(&kp)[j] = 0;
            for (int t = 0; t < T; t++)
                I(&qp)[t] = 0;
            if (future)
                I(&kp)[ncell / 2] = 1; /* seen by no query: not the dense case */
            struct mx_attn_params p = {.n_head = nh, .n_head_kv = nkv, .head_dim = hd,
                                       .n_kv = ncell, .scale = 1.0f / sqrtf((float)hd)};
            assert_int_equal(mx_op_attn(be4, &y1, &q, &kc, &vc, &qp, &kp, &p), 0);
            assert_int_equal(mx_op_attn(be_scalar, &y2, &q, &kc, &vc, &qp, &kp, &p), 0);
            double d = maxdiff(F(&y1), F(&y2), (int64_t)hd * nh * T);
            if (d > 1e-5)
                fail_msg("dense attn case %d future %d: %g from the reference", ci, future, d);
            free_all();
        }
}

static void test_attn_fast_equals_reference(void **state) {
    if (!mx_cpu_of(be4)->kern.attn) {
        mx_test_skip("no fast attention on this CPU: nothing to compare");
    }
    int hd = 64, nh = 8, nkv = 2, T = 70, ncell = 301, ekv = hd * nkv;
    enum mx_type types[] = {MX_TYPE_F32, MX_TYPE_F16, MX_TYPE_Q8_0};
    for (int ti = 0; ti < 3; ti++)
        for (int window = 0; window <= 50; window += 50) {
            struct mx_tensor q = mk(MX_TYPE_F32, hd, nh, T, 1),
                             src = mk(MX_TYPE_F32, ekv, ncell, 1, 1);
            struct mx_tensor kc = mk(types[ti], ekv, ncell, 1, 1),
                             vc = mk(types[ti], ekv, ncell, 1, 1);
            struct mx_tensor qp = mk(MX_TYPE_I32, T, 1, 1, 1), kp = mk(MX_TYPE_I32, ncell, 1, 1, 1);
            struct mx_tensor y1 = mk(MX_TYPE_F32, hd, nh, T, 1), y2 = mk(MX_TYPE_F32, hd, nh, T, 1);
            fill(&q, 1.0f);
            fill(&src, 1.0f);
            assert_int_equal(mx_op_cpy(be4, &kc, &src), 0);
            fill(&src, 1.0f);
            assert_int_equal(mx_op_cpy(be4, &vc, &src), 0);
            for (int j = 0; j < ncell; j++)
                I(&kp)[j] = j % 37 == 5 ? -1 : j;
            for (int t = 0; t < T; t++)
                I(&qp)[t] = ncell - T + t;
            struct mx_attn_params p = {.n_head = nh, .n_head_kv = nkv, .head_dim = hd,
                                       .n_kv = ncell, .scale = 0.125f, .window = window};
            for (int mode = 0; mode < 2; mode++) {
                mx_backend_set_act_mode(be4, mode);
                mx_backend_set_act_mode(be_scalar, mode);
                assert_int_equal(mx_op_attn(be4, &y1, &q, &kc, &vc, &qp, &kp, &p), 0);
                assert_int_equal(mx_op_attn(be_scalar, &y2, &q, &kc, &vc, &qp, &kp, &p), 0);
                /* GGML mode with an F16 V: the reference also rounds the weights to f16 */
                double tol = mode == MX_ACT_GGML && types[ti] == MX_TYPE_F16 ? 1e-3 : 1e-5;
                double d = maxdiff(F(&y1), F(&y2), hd * nh * T);
                if (d > tol)
                    fail_msg("fast attn %s window %d mode %d: %g from the reference",
                             mx_type_name(types[ti]), window, mode, d);
            }
            mx_backend_set_act_mode(be4, MX_ACT_GGML);
            mx_backend_set_act_mode(be_scalar, MX_ACT_GGML);
            free_all();
        }
    /* one wide head (the SD VAE's mid-block attention has head_dim 512): decode (1 row) and
     * batched (20 rows, sgemm) paths */
    for (int T2 = 1; T2 <= 20; T2 += 19) {
        int hd2 = 264, nc2 = 45;
        struct mx_tensor q = mk(MX_TYPE_F32, hd2, 1, T2, 1), kv = mk(MX_TYPE_F32, hd2, nc2, 1, 1);
        struct mx_tensor vv = mk(MX_TYPE_F32, hd2, nc2, 1, 1), qp = mk(MX_TYPE_I32, T2, 1, 1, 1);
        struct mx_tensor kp = mk(MX_TYPE_I32, nc2, 1, 1, 1);
        struct mx_tensor y1 = mk(MX_TYPE_F32, hd2, 1, T2, 1), y2 = mk(MX_TYPE_F32, hd2, 1, T2, 1);
        fill(&q, 1.0f);
        fill(&kv, 1.0f);
        fill(&vv, 1.0f);
        for (int j = 0; j < nc2; j++)
            I(&kp)[j] = 0; /* all visible, as in image self-attention */
        for (int t = 0; t < T2; t++)
            I(&qp)[t] = 0;
        struct mx_attn_params p = {.n_head = 1, .n_head_kv = 1, .head_dim = hd2, .n_kv = nc2,
                                   .scale = 1.0f / sqrtf((float)hd2)};
        assert_int_equal(mx_op_attn(be4, &y1, &q, &kv, &vv, &qp, &kp, &p), 0);
        assert_int_equal(mx_op_attn(be_scalar, &y2, &q, &kv, &vv, &qp, &kp, &p), 0);
        double d = maxdiff(F(&y1), F(&y2), hd2 * T2);
        if (d > 1e-5)
            fail_msg("fast attn, head_dim %d, %d rows: %g from the reference", hd2, T2, d);
        free_all();
    }
}

/* Decoding token by token (write K/V, attend with n_kv growing) equals one batched call over the
 * same tokens. Masked cells contribute exact zeros; the fast kernel scores few query rows with
 * dot products and many with transposed keys, so only the f32 summation order of the hd = 16
 * products differs: 16 * 2^-24 relative on scores of magnitude <= 4, ~1e-6 on the outputs. */
static void test_attn_incremental_equals_batch(void **state) {
    int hd = 16, nh = 4, nkv = 2, T = 9, ekv = hd * nkv;
    enum mx_type types[] = {MX_TYPE_F32, MX_TYPE_F16, MX_TYPE_Q8_0};
    for (int ti = 0; ti < 3; ti++) {
        struct mx_tensor q = mk(MX_TYPE_F32, hd, nh, T, 1), ksrc = mk(MX_TYPE_F32, ekv, T, 1, 1);
        struct mx_tensor vsrc = mk(MX_TYPE_F32, ekv, T, 1, 1);
        struct mx_tensor kc = mk(types[ti], ekv, 16, 1, 1), vc = mk(types[ti], ekv, 16, 1, 1);
        struct mx_tensor pos = mk(MX_TYPE_I32, T, 1, 1, 1), kpos = mk(MX_TYPE_I32, 16, 1, 1, 1);
        struct mx_tensor yb = mk(MX_TYPE_F32, hd, nh, T, 1), yi = mk(MX_TYPE_F32, hd, nh, T, 1);
        fill(&q, 1.0f);
        fill(&ksrc, 1.0f);
        fill(&vsrc, 1.0f);
        for (int t = 0; t < T; t++)
            I(&pos)[t] = t;
        for (int j = 0; j < 16; j++)
            I(&kpos)[j] = j < T ? j : -1;
        struct mx_attn_params p = {.n_head = nh, .n_head_kv = nkv, .head_dim = hd, .n_kv = T,
                                   .scale = 0.25f};
        /* batch: write all, attend all */
        struct mx_tensor kv, vv;
        assert_int_equal(mx_tensor_view_rows(&kc, 0, T, &kv), 0);
        assert_int_equal(mx_tensor_view_rows(&vc, 0, T, &vv), 0);
        assert_int_equal(mx_op_cpy(be4, &kv, &ksrc), 0);
        assert_int_equal(mx_op_cpy(be4, &vv, &vsrc), 0);
        assert_int_equal(mx_op_attn(be4, &yb, &q, &kc, &vc, &pos, &kpos, &p), 0);
        /* incremental, in a fresh cache */
        memset(kc.data, 0, mx_tensor_nbytes(&kc));
        memset(vc.data, 0, mx_tensor_nbytes(&vc));
        for (int t = 0; t < T; t++) {
            struct mx_tensor kr, vr, ks1, vs1, q1, y1, p1;
            assert_int_equal(mx_tensor_view_rows(&kc, t, 1, &kr), 0);
            assert_int_equal(mx_tensor_view_rows(&vc, t, 1, &vr), 0);
            assert_int_equal(mx_tensor_view_rows(&ksrc, t, 1, &ks1), 0);
            assert_int_equal(mx_tensor_view_rows(&vsrc, t, 1, &vs1), 0);
            assert_int_equal(mx_op_cpy(be4, &kr, &ks1), 0);
            assert_int_equal(mx_op_cpy(be4, &vr, &vs1), 0);
            assert_int_equal(mx_tensor_view_rows(&q, t * nh, nh, &q1), 0);
            assert_int_equal(mx_tensor_reshape(&q1, hd, nh, 1, 1, &q1), 0);
            assert_int_equal(mx_tensor_view_rows(&yi, t * nh, nh, &y1), 0);
            assert_int_equal(mx_tensor_reshape(&y1, hd, nh, 1, 1, &y1), 0);
            assert_int_equal(mx_tensor_reshape(&pos, 1, T, 1, 1, &p1), 0); /* 1-D slice */
            assert_int_equal(mx_tensor_view_rows(&p1, t, 1, &p1), 0);
            p.n_kv = t + 1;
            int rc = mx_op_attn(be1, &y1, &q1, &kc, &vc, &p1, &kpos, &p);
            if (rc != 0)
                fail_msg("attn: %s", mx_backend_last_error(be1));
        }
        double d = maxdiff(F(&yb), F(&yi), hd * nh * T);
        if (d > 2e-6)
            fail_msg("attn %s: token by token differs from the batch by %g",
                     mx_type_name(types[ti]), d);
        free_all();
    }
}

/* Keys roped at p and shifted by d equal keys roped at p + d; then attention over the shifted
 * cache equals attention computed from scratch at the shifted positions. */
static void test_kv_shift(void **state) {
    int hd = 16, nkv = 2, ekv = hd * nkv, n = 12, nh = 4;
    struct mx_rope_params rp = {.n_rot = hd, .mode = MX_ROPE_NORM, .freq_base = 10000.0f,
                                .freq_scale = 1.0f};
    enum mx_type types[] = {MX_TYPE_F32, MX_TYPE_F16, MX_TYPE_Q8_0};
    /* tolerance on roped keys (|k| <= 1): f32 composition of two rotations ~ 1e-5 rad at
     * positions <= 100; f16 storage adds 2 roundings of 2^-11 relative; q8_0 re-quantization
     * adds <= amax/254 per rounding, twice. */
    double tol[] = {5e-5, 2.5e-3, 1.2e-2};
    for (int ti = 0; ti < 3; ti++) {
        struct mx_tensor k = mk(MX_TYPE_F32, hd, nkv, n, 1), k2 = mk(MX_TYPE_F32, hd, nkv, n, 1);
        struct mx_tensor pos = mk(MX_TYPE_I32, n, 1, 1, 1), pos2 = mk(MX_TYPE_I32, n, 1, 1, 1);
        struct mx_tensor delta = mk(MX_TYPE_I32, n, 1, 1, 1);
        struct mx_tensor kc = mk(types[ti], ekv, n, 1, 1), back = mk(MX_TYPE_F32, ekv, n, 1, 1);
        fill(&k, 1.0f);
        for (int j = 0; j < n; j++) {
            I(&pos)[j] = 20 + j;
            I(&delta)[j] = j < 4 ? 0 : -3 - j; /* cells 0-3 stay, the rest move back */
            I(&pos2)[j] = I(&pos)[j] + I(&delta)[j];
        }
        assert_int_equal(mx_op_rope(be4, &k2, &k, &pos, &rp), 0);
        struct mx_tensor k2r;
        assert_int_equal(mx_tensor_reshape(&k2, ekv, n, 1, 1, &k2r), 0);
        assert_int_equal(mx_op_cpy(be4, &kc, &k2r), 0);
        assert_int_equal(mx_op_kv_shift(be4, &kc, &delta, hd, &rp), 0);
        assert_int_equal(mx_op_cpy(be4, &back, &kc), 0);
        assert_int_equal(mx_op_rope(be4, &k2, &k, &pos2, &rp), 0); /* direct at p + d */
        double d = maxdiff(F(&back), F(&k2), ekv * n);
        if (d > tol[ti])
            fail_msg("kv_shift %s: %g from keys roped at the new positions",
                     mx_type_name(types[ti]), d);
        if (types[ti] == MX_TYPE_F32) {
            /* attention at the shifted positions */
            struct mx_tensor q = mk(MX_TYPE_F32, hd, nh, 1, 1), qp = mk(MX_TYPE_I32, 1, 1, 1, 1);
            struct mx_tensor v = mk(MX_TYPE_F32, ekv, n, 1, 1), y = mk(MX_TYPE_F32, hd, nh, 1, 1);
            struct mx_tensor y2 = mk(MX_TYPE_F32, hd, nh, 1, 1), kd = mk(MX_TYPE_F32, ekv, n, 1, 1);
            fill(&q, 1.0f);
            fill(&v, 1.0f);
            I(&qp)[0] = 30;
            struct mx_attn_params ap = {.n_head = nh, .n_head_kv = nkv, .head_dim = hd, .n_kv = n,
                                        .scale = 0.25f};
            assert_int_equal(mx_op_attn(be4, &y, &q, &kc, &v, &qp, &pos2, &ap), 0);
            memcpy(kd.data, k2.data, mx_tensor_nbytes(&kd));
            assert_int_equal(mx_op_attn(be4, &y2, &q, &kd, &v, &qp, &pos2, &ap), 0);
            assert_true(maxdiff(F(&y), F(&y2), hd * nh) < 1e-4);
        }
        free_all();
    }
}

/* ---- cpy ------------------------------------------------------------------------------------- */

static void test_cpy_conversions(void **state) {
    int64_t n = 96, R = 3;
    struct mx_tensor x = mk(MX_TYPE_F32, n, R, 1, 1), back = mk(MX_TYPE_F32, n, R, 1, 1);
    fill(&x, 5.0f);
    enum mx_type ts[] = {MX_TYPE_F16, MX_TYPE_BF16, MX_TYPE_Q8_0};
    for (int k = 0; k < 3; k++) {
        /* the destination has another shape: data is taken in memory order */
        struct mx_tensor c = mk(ts[k], n * R, 1, 1, 1);
        assert_int_equal(mx_op_cpy(be4, &c, &x), 0);
        assert_int_equal(mx_op_cpy(be4, &back, &c), 0);
        for (int64_t b = 0; b < n * R; b += 32) {
            float amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(F(&x)[b + j]));
            for (int j = 0; j < 32; j++) {
                float xv = F(&x)[b + j], got = F(&back)[b + j];
                if (ts[k] == MX_TYPE_F16)
                    assert_true(got == mx_fp16_to_fp32(mx_fp32_to_fp16(xv)));
                else if (ts[k] == MX_TYPE_BF16)
                    assert_true(got == mx_bf16_to_fp32(mx_fp32_to_bf16(xv)));
                else /* half a quantization step plus the fp16 rounding of d times 127 */
                    assert_true(fabsf(got - xv) <= amax / 254.0f * 1.0001f + amax * 4.9e-4f);
            }
        }
    }
    /* same-type overlapping move (cache compaction): rows 3..9 to 1..7 */
    struct mx_tensor c = mk(MX_TYPE_F16, 8, 10, 1, 1), src, dst;
    for (int i = 0; i < 80; i++)
        ((uint16_t *)c.data)[i] = (uint16_t)i;
    assert_int_equal(mx_tensor_view_rows(&c, 3, 7, &src), 0);
    assert_int_equal(mx_tensor_view_rows(&c, 1, 7, &dst), 0);
    assert_int_equal(mx_op_cpy(be4, &dst, &src), 0);
    for (int i = 8; i < 64; i++)
        assert_int_equal(((uint16_t *)c.data)[i], i + 16);
    /* converting in place is refused */
    struct mx_tensor alias = c;
    alias.type = MX_TYPE_BF16;
    assert_int_equal(mx_op_cpy(be4, &alias, &c), MX_EINVAL);
    free_all();
}

/* ---- MoE routing ----------------------------------------------------------------------------- */

static void test_moe_route_and_combine(void **state) {
    int64_t ne = 8, k = 2, T = 6;
    struct mx_tensor lg = mk(MX_TYPE_F32, ne, T, 1, 1), ids = mk(MX_TYPE_I32, k, T, 1, 1);
    struct mx_tensor w = mk(MX_TYPE_F32, k, T, 1, 1);
    fill(&lg, 3.0f);
    F(&lg)[5 * ne + 6] = F(&lg)[5 * ne + 2] = 10.0f; /* a tie: lower id first */
    for (int renorm = 0; renorm < 2; renorm++) {
        assert_int_equal(mx_op_moe_route(be4, &ids, &w, &lg, renorm), 0);
        for (int64_t t = 0; t < T; t++) {
            const float *l = F(&lg) + t * ne;
            double z = 0, mx = -1e30;
            for (int e = 0; e < ne; e++)
                mx = fmax(mx, l[e]);
            for (int e = 0; e < ne; e++)
                z += exp(l[e] - mx);
            int a = I(&ids)[t * k], b = I(&ids)[t * k + 1];
            assert_true(a != b);
            for (int e = 0; e < ne; e++) { /* nothing unselected beats a selected one */
                if (e == a || e == b)
                    continue;
                assert_true(l[e] < l[b] || (l[e] == l[b] && e > b));
            }
            assert_true(l[a] > l[b] || (l[a] == l[b] && a < b));
            double pa = exp(l[a] - mx) / z, pb = exp(l[b] - mx) / z;
            double wa = renorm ? pa / (pa + pb) : pa, wb = renorm ? pb / (pa + pb) : pb;
            assert_true(fabs(F(&w)[t * k] - wa) < 1e-6);
            assert_true(fabs(F(&w)[t * k + 1] - wb) < 1e-6);
        }
        assert_int_equal(I(&ids)[5 * k], 2);
        assert_int_equal(I(&ids)[5 * k + 1], 6);
    }
    struct mx_tensor y = mk(MX_TYPE_F32, 33, k, T, 1), d = mk(MX_TYPE_F32, 33, T, 1, 1);
    fill(&y, 2.0f);
    assert_int_equal(mx_op_moe_combine(be4, &d, &y, &w), 0);
    for (int64_t t = 0; t < T; t++)
        for (int i = 0; i < 33; i++) {
            double want = 0;
            for (int s = 0; s < k; s++)
                want += (double)F(&y)[(t * k + s) * 33 + i] * F(&w)[t * k + s];
            assert_true(fabs(F(&d)[t * 33 + i] - want) < 1e-6);
        }
    free_all();
}

/* ---- image ops ------------------------------------------------------------------------------- */

static void test_conv2d(void **state) {
    struct mx_conv2d_params ps[] = {
        {.stride_x = 2, .stride_y = 2, .pad_x = 1, .pad_y = 1, .dil_x = 1, .dil_y = 1},
        {.stride_x = 1, .stride_y = 1, .pad_x = 2, .pad_y = 0, .dil_x = 2, .dil_y = 1},
    };
    for (int pi = 0; pi < 2; pi++)
        for (int wt = 0; wt < 2; wt++) {
            const struct mx_conv2d_params *p = &ps[pi];
            int W = 9, H = 7, C = 3, N = 2, KW = 3, KH = 3, CO = 4;
            int WO = (W + 2 * p->pad_x - p->dil_x * (KW - 1) - 1) / p->stride_x + 1;
            int HO = (H + 2 * p->pad_y - p->dil_y * (KH - 1) - 1) / p->stride_y + 1;
            struct mx_tensor x = mk(MX_TYPE_F32, W, H, C, N), wf = mk(MX_TYPE_F32, KW, KH, C, CO);
            struct mx_tensor b = mk(MX_TYPE_F32, CO, 1, 1, 1), y = mk(MX_TYPE_F32, WO, HO, CO, N);
            fill(&x, 1.0f);
            fill(&wf, 1.0f);
            fill(&b, 1.0f);
            struct mx_tensor w = wf;
            if (wt) { /* F16 weights: the oracle uses the rounded values, of the weights and
                       * (ggml numerics: im2col in f16) of the input */
                w = mk(MX_TYPE_F16, KW, KH, C, CO);
                assert_int_equal(mx_op_cpy(be4, &w, &wf), 0);
                assert_int_equal(mx_op_cpy(be4, &wf, &w), 0);
                struct mx_tensor x16 = mk(MX_TYPE_F16, W, H, C, N);
                assert_int_equal(mx_op_cpy(be4, &x16, &x), 0);
                assert_int_equal(mx_op_cpy(be4, &x, &x16), 0);
            }
            assert_int_equal(mx_op_conv2d(be4, &y, &x, &w, &b, p), 0);
            for (int n = 0; n < N; n++)
                for (int co = 0; co < CO; co++)
                    for (int oy = 0; oy < HO; oy++)
                        for (int ox = 0; ox < WO; ox++) {
                            double s = F(&b)[co], sa = fabs(s);
                            for (int ci = 0; ci < C; ci++)
                                for (int ky = 0; ky < KH; ky++)
                                    for (int kx = 0; kx < KW; kx++) {
                                        int iy = oy * p->stride_y - p->pad_y + ky * p->dil_y;
                                        int ix = ox * p->stride_x - p->pad_x + kx * p->dil_x;
                                        if (ix < 0 || iy < 0 || ix >= W || iy >= H)
                                            continue;
                                        double t =
                                            (double)F(&wf)[((co * C + ci) * KH + ky) * KW + kx] *
                                            F(&x)[((n * C + ci) * H + iy) * W + ix];
                                        s += t;
                                        sa += fabs(t);
                                    }
                            double got = F(&y)[((n * CO + co) * HO + oy) * WO + ox];
                            assert_true(fabs(got - s) <= TOL_DOT(28) * sa);
                        }
            free_all();
        }
}

/* The im2col + sgemm conv2d equals the direct reference loop on a case with several pixel tiles
 * (W_out * H_out > 256), padding, stride, and F16 weights: both sum K = 5*5*7 = 175 products in
 * f32, in different orders, so TOL_DOT(175) * sum|terms| bounds the gap; sum|terms| <= 175 here. */
static void test_conv2d_gemm_equals_reference(void **state) {
    struct mx_conv2d_params ps[] = {
        {.stride_x = 1, .stride_y = 1, .pad_x = 2, .pad_y = 2, .dil_x = 1, .dil_y = 1},
        {.stride_x = 2, .stride_y = 1, .pad_x = 0, .pad_y = 3, .dil_x = 1, .dil_y = 2},
    };
    for (int pi = 0; pi < 2; pi++)
        for (int wt = 0; wt < 2; wt++) {
            const struct mx_conv2d_params *p = &ps[pi];
            int W = 23, H = 19, C = 7, N = 2, KW = 5, KH = 5, CO = 6;
            int WO = (W + 2 * p->pad_x - p->dil_x * (KW - 1) - 1) / p->stride_x + 1;
            int HO = (H + 2 * p->pad_y - p->dil_y * (KH - 1) - 1) / p->stride_y + 1;
            struct mx_tensor x = mk(MX_TYPE_F32, W, H, C, N), wf = mk(MX_TYPE_F32, KW, KH, C, CO);
            struct mx_tensor b = mk(MX_TYPE_F32, CO, 1, 1, 1);
            struct mx_tensor y1 = mk(MX_TYPE_F32, WO, HO, CO, N),
                             y2 = mk(MX_TYPE_F32, WO, HO, CO, N);
            fill(&x, 1.0f);
            fill(&wf, 1.0f);
            fill(&b, 1.0f);
            struct mx_tensor w = wf;
            if (wt) {
                w = mk(MX_TYPE_F16, KW, KH, C, CO);
                assert_int_equal(mx_op_cpy(be4, &w, &wf), 0);
            }
            assert_non_null(mx_cpu_of(be4)->kern.conv2d);
            assert_int_equal(mx_op_conv2d(be4, &y1, &x, &w, &b, p), 0);
            assert_int_equal(mx_op_conv2d(be_scalar, &y2, &x, &w, &b, p), 0);
            double d = maxdiff(F(&y1), F(&y2), (int64_t)WO * HO * CO * N);
            if (d > TOL_DOT(175) * 175 * 2)
                fail_msg("conv2d gemm vs reference: %g", d);
            free_all();
        }
}

static void test_group_norm_upsample_concat(void **state) {
    int W = 5, H = 3, C = 6, N = 2, G = 3;
    struct mx_tensor x = mk(MX_TYPE_F32, W, H, C, N), y = mk(MX_TYPE_F32, W, H, C, N);
    struct mx_tensor w = mk(MX_TYPE_F32, C, 1, 1, 1), b = mk(MX_TYPE_F32, C, 1, 1, 1);
    fill(&x, 4.0f);
    fill(&w, 1.0f);
    fill(&b, 1.0f);
    assert_int_equal(mx_op_group_norm(be4, &y, &x, &w, &b, G, 1e-6f), 0);
    int gs = W * H * (C / G);
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++) {
            const float *xs = F(&x) + (n * C + g * (C / G)) * W * H;
            double m = 0, v = 0;
            for (int i = 0; i < gs; i++)
                m += xs[i];
            m /= gs;
            for (int i = 0; i < gs; i++)
                v += (xs[i] - m) * (xs[i] - m);
            v /= gs;
            for (int i = 0; i < gs; i++) {
                int c = g * (C / G) + i / (W * H);
                double want = (xs[i] - m) / sqrt(v + 1e-6) * F(&w)[c] + F(&b)[c];
                assert_true(fabs(F(&y)[(n * C + g * (C / G)) * W * H + i] - want) <
                            2e-6 * (fabs(want) + 1));
            }
        }
    assert_int_equal(mx_op_group_norm(be4, &y, &x, &w, &b, 4, 1e-6f), MX_EINVAL);
    struct mx_tensor u = mk(MX_TYPE_F32, 2 * W, 2 * H, C, N);
    assert_int_equal(mx_op_upsample(be4, &u, &x, 2), 0);
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            for (int yy = 0; yy < 2 * H; yy++)
                for (int xx = 0; xx < 2 * W; xx++)
                    assert_true(F(&u)[((n * C + c) * 2 * H + yy) * 2 * W + xx] ==
                                F(&x)[((n * C + c) * H + yy / 2) * W + xx / 2]);
    for (int dim = 0; dim < 4; dim++) {
        int64_t ne[4] = {W, H, C, N}, nb2[4] = {W, H, C, N};
        nb2[dim] = 2;
        struct mx_tensor b2 = mk(MX_TYPE_F32, nb2[0], nb2[1], nb2[2], nb2[3]);
        fill(&b2, 1.0f);
        int64_t nd[4] = {ne[0], ne[1], ne[2], ne[3]};
        nd[dim] += 2;
        struct mx_tensor d = mk(MX_TYPE_F32, nd[0], nd[1], nd[2], nd[3]);
        assert_int_equal(mx_op_concat(be4, &d, &x, &b2, dim), 0);
        for (int64_t i3 = 0; i3 < nd[3]; i3++)
            for (int64_t i2 = 0; i2 < nd[2]; i2++)
                for (int64_t i1 = 0; i1 < nd[1]; i1++)
                    for (int64_t i0 = 0; i0 < nd[0]; i0++) {
                        int64_t ii[4] = {i0, i1, i2, i3};
                        const struct mx_tensor *s = &x;
                        const int64_t *sn = ne;
                        if (ii[dim] >= ne[dim]) {
                            ii[dim] -= ne[dim];
                            s = &b2;
                            sn = nb2;
                        }
                        float want =
                            F(s)[((ii[3] * sn[2] + ii[2]) * sn[1] + ii[1]) * sn[0] + ii[0]];
                        assert_true(F(&d)[((i3 * nd[2] + i2) * nd[1] + i1) * nd[0] + i0] == want);
                    }
    }
    free_all();
}

static void test_gelu_quick_and_transpose(void **state) {
    struct mx_tensor x = mk(MX_TYPE_F32, 13, 7, 3, 2), y = mk(MX_TYPE_F32, 13, 7, 3, 2);
    fill(&x, 6.0f);
    assert_int_equal(mx_op_gelu_quick(be4, &y, &x), 0);
    for (int64_t i = 0; i < mx_tensor_nelements(&x); i++) {
        double xv = F(&x)[i], want = xv / (1 + exp(-1.702 * xv));
        /* a few float roundings of the result and of expf's argument (|1.702 x| <= 10.2) */
        assert_true(fabs(F(&y)[i] - want) <= 2e-6 * fabs(want) + 1e-6 * fabs(xv) * 1e-1);
    }
    struct mx_tensor t = mk(MX_TYPE_F32, 7, 13, 3, 2), back = mk(MX_TYPE_F32, 13, 7, 3, 2);
    assert_int_equal(mx_op_transpose(be4, &t, &x), 0);
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < 3; k++)
            for (int j = 0; j < 13; j++)
                for (int i = 0; i < 7; i++)
                    assert_true(F(&t)[((l * 3 + k) * 13 + j) * 7 + i] ==
                                F(&x)[((l * 3 + k) * 7 + i) * 13 + j]);
    assert_int_equal(mx_op_transpose(be4, &back, &t), 0);
    assert_memory_equal(back.data, x.data, mx_tensor_nbytes(&x));
    assert_int_equal(mx_op_transpose(be4, &back, &x), MX_EINVAL); /* wrong shape */
    free_all();
}

/* sigmoid (the qwen2moe shared expert's gate): 1 / (1 + exp(-x)) in place on [1, T], then that
 * gate broadcast over the expert output [n, T] with mul, as the forward uses them. */
static void test_sigmoid_gate(void **state) {
    struct mx_tensor g = mk(MX_TYPE_F32, 1, 37, 1, 1), y = mk(MX_TYPE_F32, 19, 37, 1, 1);
    struct mx_tensor g0 = mk(MX_TYPE_F32, 1, 37, 1, 1), y0 = mk(MX_TYPE_F32, 19, 37, 1, 1);
    fill(&g, 12.0f);
    fill(&y, 3.0f);
    memcpy(g0.data, g.data, mx_tensor_nbytes(&g));
    memcpy(y0.data, y.data, mx_tensor_nbytes(&y));
    F(&g)[0] = -100.0f; /* exp overflows to inf: 0, not NaN */
    F(&g)[1] = 100.0f;
    F(&g0)[0] = -100.0f;
    F(&g0)[1] = 100.0f;
    assert_int_equal(mx_op_sigmoid(be4, &g, &g), 0);
    for (int t = 0; t < 37; t++) {
        double want = 1.0 / (1.0 + exp(-(double)F(&g0)[t]));
        assert_true(fabs(F(&g)[t] - want) <= 2e-7 * want + 1e-30);
    }
    assert_true(F(&g)[0] >= 0.0f && F(&g)[0] < 1e-40f);
    assert_true(F(&g)[1] == 1.0f);
    assert_int_equal(mx_op_mul(be4, &y, &y, &g), 0);
    for (int t = 0; t < 37; t++)
        for (int i = 0; i < 19; i++)
            assert_true(F(&y)[t * 19 + i] == F(&y0)[t * 19 + i] * F(&g)[t]);
    struct mx_tensor bad = mk(MX_TYPE_F32, 2, 37, 1, 1);
    assert_int_equal(mx_op_sigmoid(be4, &bad, &g), MX_EINVAL); /* shapes differ */
    /* a backend whose table lacks the op (written before it existed) says so in supports(),
     * whatever its own supports() answers, and the op call fails cleanly */
    struct mx_backend_ops ops = *be4->ops;
    ops.sigmoid = NULL;
    struct mx_backend old = *be4;
    old.ops = &ops;
    assert_false(mx_backend_supports(&old, MX_OP_SIGMOID, MX_TYPE_F32));
    assert_true(mx_backend_supports(&old, MX_OP_SILU, MX_TYPE_F32));
    assert_int_equal(mx_op_sigmoid(&old, &g, &g), MX_EUNSUP);
    free_all();
}

/* ---- pool and support matrix ----------------------------------------------------------------- */

/* Many tiny ops back to back through the pool's spin/sleep barrier: every one completes. */
static void test_pool_many_small_ops(void **state) {
    struct mx_tensor x = mk(MX_TYPE_F32, 5, 1, 1, 1);
    for (int i = 0; i < 5; i++)
        F(&x)[i] = 1.0f;
    for (int i = 0; i < 3000; i++)
        assert_int_equal(mx_op_scale(be4, &x, &x, i % 2 ? 0.5f : 2.0f), 0);
    for (int i = 0; i < 5; i++)
        assert_true(F(&x)[i] == 1.0f);
    free_all();
}

/* mx_pool_run_units: every unit runs once, whatever the ranges; and the threads done with
 * their own ranges take the units left in another's. Thread 0 owns all 64 units here and
 * holds its first one until the other three have run the other 63 from its back, which
 * they can only do by stealing (a stealing bug fails at the deadline instead of hanging). */
struct units_probe {
    atomic_int runs[64];
    atomic_int done;
    atomic_int n_by_others; /* units run by threads 1-3 */
    bool timed_out;
};

static void units_probe_run(void *args, int64_t u, int ith) {
    struct units_probe *p = args;
    if (u == 0 && ith == 0) {
        time_t end = time(NULL) + 30;
        while (atomic_load(&p->done) < 63 && !(p->timed_out = time(NULL) > end))
            ;
    }
    if (ith != 0)
        atomic_fetch_add(&p->n_by_others, 1);
    atomic_fetch_add(&p->runs[u], 1);
    atomic_fetch_add(&p->done, 1);
}

static void test_pool_units_steal(void **state) {
    struct mx_pool *pool = mx_cpu_of(be4)->pool;
    const int64_t all0[5] = {0, 64, 64, 64, 64}, uneven[5] = {0, 3, 3, 40, 64};
    for (int round = 0; round < 2; round++) {
        struct units_probe p = {0};
        mx_pool_run_units(pool, units_probe_run, &p, round == 0 ? all0 : uneven);
        for (int u = 0; u < 64; u++)
            if (atomic_load(&p.runs[u]) != 1)
                fail_msg("round %d: unit %d ran %d times", round, u, atomic_load(&p.runs[u]));
        assert_false(p.timed_out);
        if (round == 0) /* 64 when a thief got to unit 0 before thread 0 started */
            assert_true(atomic_load(&p.n_by_others) >= 63);
    }
}

static void test_supports_and_errors(void **state) {
    assert_false(mx_backend_supports(be4, MX_OP_MATMUL, MX_TYPE_Q8_K));
    assert_false(mx_backend_supports(be4, MX_OP_MATMUL, MX_TYPE_I32));
    assert_false(mx_backend_supports(be4, MX_OP_ATTN, MX_TYPE_Q4_0));
    assert_true(mx_backend_supports(be4, MX_OP_ATTN, MX_TYPE_Q8_0));
    assert_false(mx_backend_supports(be4, (enum mx_op)999, MX_TYPE_F32));
    for (int op = 0; op < MX_OP_COUNT; op++) /* every op has a CPU implementation */
        assert_true(mx_backend_supports(be4, (enum mx_op)op, MX_TYPE_F32));
    assert_string_equal(mx_op_name(MX_OP_MATMUL_ID), "matmul_id");
    assert_string_equal(mx_backend_name(be4), "cpu");
    assert_int_equal(mx_backend_cpu_n_threads(be4), 4);
    float *wd;
    struct mx_tensor w = make_weight(MX_TYPE_Q8_0, 64, 3, 1, &wd);
    struct mx_tensor x = mk(MX_TYPE_F32, 32, 1, 1, 1), y = mk(MX_TYPE_F32, 3, 1, 1, 1);
    w.name = "blk.0.ffn_up.weight";
    assert_int_equal(mx_op_matmul(be4, &y, &w, &x), MX_EINVAL);
    assert_non_null(strstr(mx_backend_last_error(be4), "blk.0.ffn_up.weight"));
    struct mx_tensor k8 = make_weight(MX_TYPE_Q8_K, 256, 3, 1, &wd);
    struct mx_tensor x2 = mk(MX_TYPE_F32, 256, 1, 1, 1);
    assert_int_equal(mx_op_matmul(be4, &y, &k8, &x2), MX_EUNSUP);
    assert_int_equal(mx_backend_set_act_mode(be4, 7), MX_EINVAL);
    free_all();
}

static int setup(void **state) {
    struct mx_err err = {0};
    be1 = mx_backend_cpu_new(1, &err);
    be4 = mx_backend_cpu_new(4, &err);
    be_scalar = mx_backend_cpu_new(3, &err);
    if (!be1 || !be4 || !be_scalar)
        return -1;
    be_avx2 = mx_backend_cpu_new(2, &err);
    if (!be_avx2)
        return -1;
    mx_cpu_kernels_init(&mx_cpu_of(be_scalar)->kern, MX_CPU_SCALAR);
    mx_cpu_kernels_init(&mx_cpu_of(be_avx2)->kern, MX_CPU_AVX2); /* also on AVX-512 CPUs */
    printf("kernels: best '%s', second '%s'\n", mx_cpu_of(be4)->kern.name,
           mx_cpu_of(be_avx2)->kern.name);
    return 0;
}

static int teardown(void **state) {
    mx_backend_free(be1);
    mx_backend_free(be4);
    mx_backend_free(be_scalar);
    mx_backend_free(be_avx2);
    mx_backend_free(NULL);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_tensor_helpers, reset_modes),
        cmocka_unit_test_setup(test_arena_measure_then_alloc, reset_modes),
        cmocka_unit_test_setup(test_matmul_all_types, reset_modes),
        cmocka_unit_test_setup(test_fast_dequant_bit_exact, reset_modes),
        cmocka_unit_test_setup(test_fast_act_quant_bit_exact, reset_modes),
        cmocka_unit_test_setup(test_vec_dot4_equals_vec_dot, reset_modes),
        cmocka_unit_test_setup(test_vec_dot2_equals_vec_dot, reset_modes),
        cmocka_unit_test_setup(test_legacy_dots_in_ggml_order, reset_modes),
        cmocka_unit_test_setup(test_low_k_dots_in_ggml_order, reset_modes),
        cmocka_unit_test_setup(test_matmul_threads_bitwise, reset_modes),
        cmocka_unit_test_setup(test_matmul_broadcast, reset_modes),
        cmocka_unit_test_setup(test_matmul_id_reads_only_selected, reset_modes),
        cmocka_unit_test_setup(test_matmul_id_equals_per_expert_matmul, reset_modes),
        cmocka_unit_test_setup(test_matmul_id_bad_id, reset_modes),
        cmocka_unit_test_setup(test_matmul_n_equals_matmul, reset_modes),
        cmocka_unit_test_setup(test_matmul_id2_equals_two_matmul_id, reset_modes),
        cmocka_unit_test_setup(test_matmul_id2_mixed_and_errors, reset_modes),
        cmocka_unit_test_setup(test_get_rows, reset_modes),
        cmocka_unit_test_setup(test_norms, reset_modes),
        cmocka_unit_test_setup(test_softmax_and_activations, reset_modes),
        cmocka_unit_test_setup(test_rope_formula, reset_modes),
        cmocka_unit_test_setup(test_rope_freq_factors_and_yarn, reset_modes),
        cmocka_unit_test_setup(test_rope_large_positions_follow_ggml, reset_modes),
        cmocka_unit_test_setup(test_attn_against_oracle, reset_modes),
        cmocka_unit_test_setup(test_attn_fast_equals_reference, reset_modes),
        cmocka_unit_test_setup(test_attn_split_decode, reset_modes),
        cmocka_unit_test_setup(test_attn_dense, reset_modes),
        cmocka_unit_test_setup(test_attn_incremental_equals_batch, reset_modes),
        cmocka_unit_test_setup(test_kv_shift, reset_modes),
        cmocka_unit_test_setup(test_cpy_conversions, reset_modes),
        cmocka_unit_test_setup(test_moe_route_and_combine, reset_modes),
        cmocka_unit_test_setup(test_conv2d, reset_modes),
        cmocka_unit_test_setup(test_conv2d_gemm_equals_reference, reset_modes),
        cmocka_unit_test_setup(test_group_norm_upsample_concat, reset_modes),
        cmocka_unit_test_setup(test_gelu_quick_and_transpose, reset_modes),
        cmocka_unit_test_setup(test_sigmoid_gate, reset_modes),
        cmocka_unit_test_setup(test_pool_many_small_ops, reset_modes),
        cmocka_unit_test_setup(test_pool_units_steal, reset_modes),
        cmocka_unit_test_setup(test_supports_and_errors, reset_modes),
    };
    return mx_test_status(cmocka_run_group_tests(tests, setup, teardown));
}
