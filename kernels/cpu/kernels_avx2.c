/* kernels_avx2.c - AVX2 + FMA + F16C row kernels for the CPU backend's decode matmul.
 *
 * Compiled on its own with -mavx2 -mfma -mf16c (kernels/cpu/cpu.am) and installed by
 * mx_cpu_kernels_init only when the CPU reports those features. Decode is memory-bound: each
 * kernel streams one weight row once and keeps the activation (already quantized to the weight's
 * ggml vec_dot type: Q8_0 blocks or F16) hot in cache, so the inner loops are integer
 * multiply-adds on 32-byte vectors, as in ggml. Every kernel has a scalar twin (dequantize + f32
 * dot on the rounded activations) that tests/test_backend.c compares it against.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/kernels_x86.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/base/util.h"

/* fp16 -> f32 in one F16C instruction (util.h's portable version branches on the exponent). */
static inline float h2f(mx_half h) {
    return _cvtsh_ss(h);
}

static float dot_f32_avx2(int64_t n, const float *a, const float *b) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* F16 weights times F16 activations, f32 accumulation (ggml_vec_dot_f16). */
static float vec_dot_f16(int64_t n, const void *w, const void *x) {
    const uint16_t *a = w, *b = x;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 a0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i)));
        __m256 b0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i)));
        __m256 a1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(a + i + 8)));
        __m256 b1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8)));
        s0 = _mm256_fmadd_ps(a0, b0, s0);
        s1 = _mm256_fmadd_ps(a1, b1, s1);
    }
    float s = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += mx_fp16_to_fp32(a[i]) * mx_fp16_to_fp32(b[i]);
    return s;
}

/* 8 bf16 values as f32: bf16 is the top half of a float. */
static inline __m256 load_bf16(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* BF16 weights times BF16 activations, f32 accumulation (ggml_vec_dot_bf16). */
static float vec_dot_bf16(int64_t n, const void *w, const void *x) {
    const uint16_t *a = w, *b = x;
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(load_bf16(a + i), load_bf16(b + i), s0);
        s1 = _mm256_fmadd_ps(load_bf16(a + i + 8), load_bf16(b + i + 8), s1);
    }
    float s = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += mx_bf16_to_fp32(a[i]) * mx_bf16_to_fp32(b[i]);
    return s;
}

/* Sum of products of 32 signed bytes x 32 signed bytes as 8 float lanes (ggml's
 * mul_sum_i8_pairs_float): maddubs needs an unsigned operand, so move x's sign onto y. */
static inline __m256 mul_sum_i8(__m256i x, __m256i y) {
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sy = _mm256_sign_epi8(y, x);
    __m256i dot = _mm256_maddubs_epi16(ax, sy);
    __m256i s32 = _mm256_madd_epi16(dot, _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(s32);
}

/* ggml's order (ggml_vec_dot_q8_0_q8_0 on AVX2, and llamafile's tinyBLAS_Q0_AVX for prompt
 * batches): one 8-lane accumulator, lane k gathering values 4k..4k+3 of every block, and the
 * 8 lanes summed at the end. A second accumulator would be faster but rounds differently, and
 * those roundings moved Q8_0 logits by a median 0.04 from llama.cpp's. */
static float vec_dot_q8_0(int64_t n, const void *w, const void *x) {
    const mx_block_q8_0 *a = w, *b = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / MX_QK8_0; i++) {
        __m256 d = _mm256_set1_ps(h2f(a[i].d) * h2f(b[i].d));
        acc = _mm256_fmadd_ps(d, mul_sum_i8(_mm256_loadu_si256((const __m256i *)a[i].qs),
                                            _mm256_loadu_si256((const __m256i *)b[i].qs)),
                              acc);
    }
    return hsum8(acc);
}

static inline __m256i unpack_nibbles(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

/* Q4_0 x Q8_0: q - 8 times y summed = (nibbles . y) - 8 * sum(y); the nibbles are unsigned, so
 * maddubs takes them as they are, and sum(y) comes with the activation row (mx_quantize_act). */
static float vec_dot_q4_0(int64_t n, const void *w, const void *x) {
    const mx_block_q4_0 *a = w;
    const mx_block_q8_0 *b = x;
    const float *ys = (const float *)((const char *)x + mx_act_sums_offset(n));
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    float corr0 = 0.0f, corr1 = 0.0f;
    int64_t nb = n / MX_QK4_0, i = 0;
    for (; i + 2 <= nb; i += 2) {
        float d0 = h2f(a[i].d) * h2f(b[i].d), d1 = h2f(a[i + 1].d) * h2f(b[i + 1].d);
        __m256i p0 = _mm256_madd_epi16(
            _mm256_maddubs_epi16(unpack_nibbles(a[i].qs),
                                 _mm256_loadu_si256((const __m256i *)b[i].qs)),
            ones);
        __m256i p1 = _mm256_madd_epi16(
            _mm256_maddubs_epi16(unpack_nibbles(a[i + 1].qs),
                                 _mm256_loadu_si256((const __m256i *)b[i + 1].qs)),
            ones);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d0), _mm256_cvtepi32_ps(p0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_set1_ps(d1), _mm256_cvtepi32_ps(p1), acc1);
        corr0 += d0 * ys[i];
        corr1 += d1 * ys[i + 1];
    }
    for (; i < nb; i++) {
        float d = h2f(a[i].d) * h2f(b[i].d);
        __m256i p = _mm256_madd_epi16(
            _mm256_maddubs_epi16(unpack_nibbles(a[i].qs),
                                 _mm256_loadu_si256((const __m256i *)b[i].qs)),
            ones);
        acc0 = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc0);
        corr0 += d * ys[i];
    }
    return hsum8(_mm256_add_ps(acc0, acc1)) - 8.0f * (corr0 + corr1);
}

/* One Q4_0 row against 4 activation columns (xq_row bytes apart; xd: their block scales as f32,
 * n / 32 per column, converted once per tile by the caller instead of once per row) for
 * prefill: the nibbles are unpacked once per block and used 4 times, so a tile of rows x
 * columns runs from the caches on integer dots instead of dequantize + sgemm (whose packing of
 * the dequantized tile cost as much as the GEMM itself at MoE expert batch sizes). Per column
 * the arithmetic is vec_dot_q4_0's, in the same order (the f32 scale is exact), so the results
 * are bit-identical to it. */
static void vec_dot4_q4_0(int64_t n, const void *w, const void *x, size_t xq_row,
                          const float *xd, float *out) {
    const mx_block_q4_0 *a = w;
    const mx_block_q8_0 *b0 = x, *b1 = (const void *)((const char *)x + xq_row);
    const mx_block_q8_0 *b2 = (const void *)((const char *)x + 2 * xq_row);
    const mx_block_q8_0 *b3 = (const void *)((const char *)x + 3 * xq_row);
    size_t so = mx_act_sums_offset(n);
    const float *y0 = (const float *)((const char *)b0 + so);
    const float *y1 = (const float *)((const char *)b1 + so);
    const float *y2 = (const float *)((const char *)b2 + so);
    const float *y3 = (const float *)((const char *)b3 + so);
    int64_t nbk = n / MX_QK4_0;
    const float *x0 = xd, *x1 = xd + nbk, *x2 = xd + 2 * nbk, *x3 = xd + 3 * nbk;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00;
    __m256 a20 = a00, a21 = a00, a30 = a00, a31 = a00;
    float c00 = 0.0f, c01 = 0.0f, c10 = 0.0f, c11 = 0.0f;
    float c20 = 0.0f, c21 = 0.0f, c30 = 0.0f, c31 = 0.0f;
    int64_t nb = n / MX_QK4_0, i = 0;
#define MX_Q40_STEP(B, XD, Y, Q, WD, ACC, CORR, I)                                                \
    do {                                                                                         \
        float d_ = (WD) * XD[I];                                                                 \
        __m256i p_ = _mm256_madd_epi16(                                                          \
            _mm256_maddubs_epi16(Q, _mm256_loadu_si256((const __m256i *)B[I].qs)), ones);        \
        ACC = _mm256_fmadd_ps(_mm256_set1_ps(d_), _mm256_cvtepi32_ps(p_), ACC);                  \
        CORR += d_ * Y[I];                                                                       \
    } while (0)
    for (; i + 2 <= nb; i += 2) {
        __m256i q0 = unpack_nibbles(a[i].qs), q1 = unpack_nibbles(a[i + 1].qs);
        float w0 = h2f(a[i].d), w1 = h2f(a[i + 1].d);
        MX_Q40_STEP(b0, x0, y0, q0, w0, a00, c00, i);
        MX_Q40_STEP(b0, x0, y0, q1, w1, a01, c01, i + 1);
        MX_Q40_STEP(b1, x1, y1, q0, w0, a10, c10, i);
        MX_Q40_STEP(b1, x1, y1, q1, w1, a11, c11, i + 1);
        MX_Q40_STEP(b2, x2, y2, q0, w0, a20, c20, i);
        MX_Q40_STEP(b2, x2, y2, q1, w1, a21, c21, i + 1);
        MX_Q40_STEP(b3, x3, y3, q0, w0, a30, c30, i);
        MX_Q40_STEP(b3, x3, y3, q1, w1, a31, c31, i + 1);
    }
    for (; i < nb; i++) {
        __m256i q0 = unpack_nibbles(a[i].qs);
        float w0 = h2f(a[i].d);
        MX_Q40_STEP(b0, x0, y0, q0, w0, a00, c00, i);
        MX_Q40_STEP(b1, x1, y1, q0, w0, a10, c10, i);
        MX_Q40_STEP(b2, x2, y2, q0, w0, a20, c20, i);
        MX_Q40_STEP(b3, x3, y3, q0, w0, a30, c30, i);
    }
#undef MX_Q40_STEP
    out[0] = hsum8(_mm256_add_ps(a00, a01)) - 8.0f * (c00 + c01);
    out[1] = hsum8(_mm256_add_ps(a10, a11)) - 8.0f * (c10 + c11);
    out[2] = hsum8(_mm256_add_ps(a20, a21)) - 8.0f * (c20 + c21);
    out[3] = hsum8(_mm256_add_ps(a30, a31)) - 8.0f * (c30 + c31);
}

/* ---- Q4_1, Q5_0, Q5_1 ------------------------------------------------------------------------
 * In ggml's float order (ggml_vec_dot_q4_1_q8_1 / _q5_0_q8_0 / _q5_1_q8_1 on AVX2, and for Q5_0
 * prompt batches llamafile's tinyBLAS_Q0_AVX, which does the same per column): per block one
 * FMA of the block's 8 int32 lane sums (lane k: values 4k..4k+3) into one 8-lane accumulator,
 * the lanes summed at the end as hsum8 does; for the types with a min, m x s (the activation
 * block's d x sum, from Q8_1) summed in a float, block after block, and added last. */

/* 32 bits -> 32 bytes, byte i = 0xff where bit i is set (the fifth bits of Q5_0 / Q5_1). */
static inline __m256i bits_to_bytes(const uint8_t *qh) {
    uint32_t v;
    memcpy(&v, qh, 4);
    /* byte i holds byte i / 8 of v; then test bit i % 8 */
    const __m256i pick = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2,
                                          2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v), pick);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
}

/* Unsigned bytes times signed bytes, 8 int32 lane sums as floats (ggml's
 * mul_sum_us8_pairs_float): no saturation, a pair is at most 2 x 31 x 127. */
static inline __m256 mul_sum_u8(__m256i u, __m256i y) {
    return _mm256_cvtepi32_ps(
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1)));
}

/* Q5_0's 32 values as signed bytes: (nibble | fifth bit << 4) - 16, i.e. nibble | 0xf0 where the
 * fifth bit is clear. */
static inline __m256i q5_0_values(const mx_block_q5_0 *a) {
    return _mm256_or_si256(unpack_nibbles(a->qs),
                           _mm256_andnot_si256(bits_to_bytes(a->qh), _mm256_set1_epi8((char)0xf0)));
}

/* Q5_1's 32 values as unsigned bytes 0..31. */
static inline __m256i q5_1_values(const mx_block_q5_1 *a) {
    return _mm256_or_si256(unpack_nibbles(a->qs),
                           _mm256_and_si256(bits_to_bytes(a->qh), _mm256_set1_epi8(0x10)));
}

/* The first 4 fp16 values at p as floats in one F16C instruction: a block's d and (Q4_1, Q5_1,
 * Q8_1) its m or s in lanes 0 and 1; lanes 2-3 are the bytes that follow, never used. At ~25
 * instructions per 32-value block the 2-4 scalar conversions per block were a fifth of the
 * work, and one vmulps then gives d x yd and m x ys (the same products, so the same bits). */
static inline __m128 h4(const void *p) {
    return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)p));
}

/* One row of Q4_1 / Q5_0 / Q5_1 (type, a constant after inlining) against one column. */
static inline __attribute__((always_inline)) float legacy_row(enum mx_type type, int64_t n,
                                                              const void *w, const void *x) {
    __m256 acc = _mm256_setzero_ps();
    float summs = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        if (type == MX_TYPE_Q5_0) {
            const mx_block_q5_0 *a = (const mx_block_q5_0 *)w + i;
            const mx_block_q8_0 *b = (const mx_block_q8_0 *)x + i;
            __m128 d = _mm_mul_ss(h4(a), h4(b));
            acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(d),
                                  mul_sum_i8(q5_0_values(a),
                                             _mm256_loadu_si256((const __m256i *)b->qs)),
                                  acc);
            continue;
        }
        const mx_block_q8_1 *b = (const mx_block_q8_1 *)x + i;
        __m256i y = _mm256_loadu_si256((const __m256i *)b->qs);
        __m256i q;
        __m128 dm; /* d x yd, m x ys */
        if (type == MX_TYPE_Q4_1) {
            const mx_block_q4_1 *a = (const mx_block_q4_1 *)w + i;
            dm = _mm_mul_ps(h4(a), h4(b));
            q = unpack_nibbles(a->qs);
        } else {
            const mx_block_q5_1 *a = (const mx_block_q5_1 *)w + i;
            dm = _mm_mul_ps(h4(a), h4(b));
            q = q5_1_values(a);
        }
        summs += _mm_cvtss_f32(_mm_movehdup_ps(dm));
        acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm), mul_sum_u8(q, y), acc);
    }
    return type == MX_TYPE_Q5_0 ? hsum8(acc) : hsum8(acc) + summs;
}

static float vec_dot_q4_1(int64_t n, const void *w, const void *x) {
    return legacy_row(MX_TYPE_Q4_1, n, w, x);
}

static float vec_dot_q5_0(int64_t n, const void *w, const void *x) {
    return legacy_row(MX_TYPE_Q5_0, n, w, x);
}

static float vec_dot_q5_1(int64_t n, const void *w, const void *x) {
    return legacy_row(MX_TYPE_Q5_1, n, w, x);
}

/* The 4-column forms for prefill (vec_dot4): a weight block is unpacked once and meets the 4
 * columns' blocks; per column the arithmetic is the row kernel's, in its order, so the bits are
 * the same. The columns' scales are read from their blocks (one F16C instruction each); xd is not
 * used (it holds Q8_0 scales, and Q4_1 / Q5_1 columns are Q8_1). */
#define MX_COL4(T, X, C) ((const T *)((const char *)(X) + (size_t)(C) * xq_row))

static void vec_dot4_q4_1(int64_t n, const void *w, const void *x, size_t xq_row,
                          const float *xd, float *out) {
    (void)xd;
    const mx_block_q4_1 *a = w;
    const mx_block_q8_1 *b[4];
    __m256 acc[4];
    float summs[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = 0; c < 4; c++) {
        b[c] = MX_COL4(mx_block_q8_1, x, c);
        acc[c] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < n / MX_QK4_1; i++) {
        __m256i q = unpack_nibbles(a[i].qs);
        __m128 wdm = h4(&a[i]);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m128 dm = _mm_mul_ps(wdm, h4(&b[c][i])); /* d x yd, m x ys */
            summs[c] += _mm_cvtss_f32(_mm_movehdup_ps(dm));
            acc[c] = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm),
                                     mul_sum_u8(q, _mm256_loadu_si256((const __m256i *)b[c][i].qs)),
                                     acc[c]);
        }
    }
    for (int c = 0; c < 4; c++)
        out[c] = hsum8(acc[c]) + summs[c];
}

static void vec_dot4_q5_0(int64_t n, const void *w, const void *x, size_t xq_row,
                          const float *xd, float *out) {
    const mx_block_q5_0 *a = w;
    const mx_block_q8_0 *b[4];
    const int64_t nb = n / MX_QK5_0;
    __m256 acc[4];
    for (int c = 0; c < 4; c++) {
        b[c] = MX_COL4(mx_block_q8_0, x, c);
        acc[c] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i++) {
        __m256i q = q5_0_values(&a[i]);
        __m256i aq = _mm256_sign_epi8(q, q);
        float wd = h2f(a[i].d);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i y = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)b[c][i].qs), q);
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(wd * xd[c * nb + i]), mul_sum_u8(aq, y),
                                     acc[c]);
        }
    }
    for (int c = 0; c < 4; c++)
        out[c] = hsum8(acc[c]);
}

static void vec_dot4_q5_1(int64_t n, const void *w, const void *x, size_t xq_row,
                          const float *xd, float *out) {
    (void)xd;
    const mx_block_q5_1 *a = w;
    const mx_block_q8_1 *b[4];
    __m256 acc[4];
    float summs[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = 0; c < 4; c++) {
        b[c] = MX_COL4(mx_block_q8_1, x, c);
        acc[c] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < n / MX_QK5_1; i++) {
        __m256i q = q5_1_values(&a[i]);
        __m128 wdm = h4(&a[i]);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m128 dm = _mm_mul_ps(wdm, h4(&b[c][i])); /* d x yd, m x ys */
            summs[c] += _mm_cvtss_f32(_mm_movehdup_ps(dm));
            acc[c] = _mm256_fmadd_ps(_mm256_broadcastss_ps(dm),
                                     mul_sum_u8(q, _mm256_loadu_si256((const __m256i *)b[c][i].qs)),
                                     acc[c]);
        }
    }
    for (int c = 0; c < 4; c++)
        out[c] = hsum8(acc[c]) + summs[c];
}

#undef MX_COL4

/* How far ahead of the block being read the decode (one column) x8 GEMMs prefetch the
 * weights: a decode step streams every weight from DRAM once with little arithmetic per byte,
 * and on this Zen 3 box the hardware prefetcher alone left the kernels waiting on memory.
 * bench-moe-q4_0, bench -p 0 -n 48, CPU samples in gemm_q4_0x8 (perf record -e cpu-clock,
 * which does not count a descheduled thread, so less noisy than tok/s on the shared box),
 * medians of 3 alternating runs, load average ~12 (rough): 1 thread 26703 without, 20644 at
 * 1 KB, 21237 at 3 KB, 19367 at 6 KB; 2 threads 23939 / 22427 / 18063 (1 KB / 3 KB), tg 7.97 /
 * 8.72 / 9.92 tok/s. Beyond the end of a thread's rows it only touches weights another thread
 * reads. */
#define MX_DECODE_PREFETCH 3072

/* Prefetches the cache lines of [p, p + bytes) MX_DECODE_PREFETCH bytes ahead (one line more
 * when the span straddles one). */
static inline __attribute__((always_inline)) void prefetch_ahead(const void *p, size_t bytes) {
    const char *q = (const char *)p + MX_DECODE_PREFETCH;
    for (size_t off = 0; off < bytes + 64; off += 64)
        _mm_prefetch(q + off, _MM_HINT_T0);
}

/* Repacked Q4_0 (8 rows, mx_block_q4_0x8) times NC activation columns. Per block: the 4 chunks
 * give, masked and shifted, 8 vectors "values 4g..4g+3 of the 8 rows"; each meets 4 activation
 * bytes broadcast to every row, and maddubs leaves row r's partial sums in int16 lanes 2r, 2r+1.
 * The 8 groups are summed in int16: a lane is at most 8 x 2 x 15 x 127 = 30480 < 32767, so
 * nothing saturates, and one madd per block makes the row sums int32 (lane r = row r). Then
 * (sum - 8 * sum(x)) is exact in f32 and one FMA with the 8 rows' scales times the column's
 * scale accumulates it. Columns share the unpacked nibbles; their arithmetic is independent of
 * NC (integer sums are exact in any order), so every NC gives the same bits per column. */
static inline __attribute__((always_inline)) void
gemm_q4_0x8_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
               size_t ldo) {
    const mx_block_q4_0x8 *a = w;
    const int64_t nb = n / MX_QK4_0;
    const size_t so = mx_act_sums_offset(n);
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    const mx_block_q8_0 *xb[4];
    const float *xs[4];
    for (int c = 0; c < NC; c++) {
        xb[c] = (const mx_block_q8_0 *)((const char *)xq + (size_t)c * xq_row);
        xs[c] = (const float *)((const char *)xb[c] + so);
    }
    for (int64_t b = 0; b < nb; b++) {
        __m256i s[4];
        if (NC == 1) /* decode: see MX_DECODE_PREFETCH */
            prefetch_ahead(&a[b], sizeof a[b]);
        for (int j = 0; j < 4; j++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(a[b].qs + 32 * j));
            __m256i lo = _mm256_and_si256(v, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
            for (int c = 0; c < NC; c++) {
                __m256i p = _mm256_add_epi16(
                    _mm256_maddubs_epi16(lo, bcast4(xb[c][b].qs + 4 * j)),
                    _mm256_maddubs_epi16(hi, bcast4(xb[c][b].qs + 4 * (j + 4))));
                s[c] = j == 0 ? p : _mm256_add_epi16(s[c], p);
            }
        }
        __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)a[b].d));
        for (int c = 0; c < NC; c++) {
            __m256 f = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(s[c], ones)),
                                     _mm256_set1_ps(8.0f * xs[c][b]));
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(wd, _mm256_set1_ps(h2f(xb[c][b].d))), f,
                                     acc[c]);
        }
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, acc[c]);
}

MX_X8_ENTRY(gemm_q4_0x8, gemm_q4_0x8_nc)

/* Repacked Q8_0 (mx_block_q8_0x8) times NC Q8_0 columns, in ggml's float order (see
 * vec_dot_q8_0): vector g of a block holds values 4g..4g+3 of the 8 rows, so its dot with 4
 * broadcast activation bytes is, for row r, lane g of ggml's per-row accumulator. Each column
 * keeps those 8 lanes as 8 accumulators (one per g, lane r = row r) and sums them at the end
 * the way hsum8 sums lanes; so a repacked row gives the bits of vec_dot_q8_0 on the file row.
 * Signed weights: maddubs takes |w| and the activation bytes carrying w's sign (a pair reaches
 * 2 x 127 x 127 = 32258, so each maddubs goes to int32 at once). Columns one after the other
 * (8 accumulators each; 4 columns at once would not fit the 16 registers). */
static inline __attribute__((always_inline)) void
gemm_q8_0x8_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
               size_t ldo) {
    const mx_block_q8_0x8 *a = w;
    const int64_t nb = n / MX_QK8_0;
    const __m256i ones = _mm256_set1_epi16(1);
    for (int c = 0; c < NC; c++) {
        const mx_block_q8_0 *xb = (const mx_block_q8_0 *)((const char *)xq + (size_t)c * xq_row);
        __m256 acc[8];
        for (int g = 0; g < 8; g++)
            acc[g] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)a[b].d)),
                                     _mm256_set1_ps(h2f(xb[b].d)));
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m256i wv = _mm256_loadu_si256((const __m256i *)a[b].qs[g]);
                __m256i xs = _mm256_sign_epi8(bcast4(xb[b].qs + 4 * g), wv);
                __m256i s = _mm256_madd_epi16(
                    _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), xs), ones);
                acc[g] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[g]);
            }
        }
        _mm256_storeu_ps(out + (size_t)c * ldo, q8_0x8_lane_sum(acc));
    }
}

MX_X8_ENTRY(gemm_q8_0x8, gemm_q8_0x8_nc)

/* ---- K-quants against Q8_K activations ------------------------------------------------------- */

/* ggml's get_scale_min_k4: 6-bit scale and min j of a Q4_K/Q5_K block. */
static inline void scale_min_k4(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

/* The 12 packed scale bytes of a Q4_K/Q5_K block as 8 scales (bytes 0-7 of out) and 8 mins
 * (bytes 8-15): ggml's utmp shuffle, four 32-bit operations instead of eight byte lookups. */
static inline void k4_scales_mins(const uint8_t *packed, uint32_t out[4]) {
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    uint32_t u[3];
    memcpy(u, packed, 12);
    out[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    out[2] = u[1] & kmask1;
    out[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    out[0] = u[0] & kmask1;
}

/* sum over the 8 groups of 32 of min_j * (sum of the group's q8), from Q8_K's 16 bsums. */
static inline __m128 k4_min_terms(const uint32_t sm[4], const int16_t *bsums) {
    __m128i mins = _mm_cvtepu8_epi16(_mm_set_epi32(0, 0, (int)sm[3], (int)sm[2]));
    __m256i bs = _mm256_loadu_si256((const __m256i *)bsums);
    __m128i pairs = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    return _mm_cvtepi32_ps(_mm_madd_epi16(mins, pairs));
}

/* Q4_K: value = d*sc*q - dmin*m per 32; dot = y.d * (d * sum_j sc_j (q.q8)_j
 * - dmin * sum_j m_j sum(q8)_j), the second sum from Q8_K's bsums. Per-block sums stay in
 * vectors; one horizontal sum at the end. */
static float vec_dot_q4_K(int64_t n, const void *w, const void *x) {
    const mx_block_q4_K *a = w;
    const mx_block_q8_K *b = x;
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        uint32_t sm[4];
        k4_scales_mins(a[i].scales, sm);
        const uint8_t *sc = (const uint8_t *)sm;
        float d = b[i].d * h2f(a[i].d), dm = b[i].d * h2f(a[i].dmin);
        accm = _mm_fmadd_ps(_mm_set1_ps(dm), k4_min_terms(sm, b[i].bsums), accm);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            __m256i q4 = _mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * j));
            __m256i lo = _mm256_and_si256(q4, m4);
            __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(b[i].qs + 64 * j));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(b[i].qs + 64 * j + 32));
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0),
                                           _mm256_set1_epi16(sc[2 * j]));
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1),
                                           _mm256_set1_epi16(sc[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return hsum8(acc) - _mm_cvtss_f32(m);
}

/* Repacked Q4_K (8 rows, mx_block_q4_Kx8) times NC Q8_K activation columns. Per super-block:
 * the 8 rows' scales and mins decode from 96 bytes in a few vector ops; per 64-value chunk, 8
 * vectors of "4 values of each of 8 rows" (low nibbles: the chunk's first sub-block, high: its
 * second) meet 4 broadcast activation bytes in maddubs, summed in int16 (at most 8 x 3810, no
 * saturation), then madd with the sub-block's scales (each row's scale in its two int16 lanes)
 * gives int32 row sums already scaled. The mins meet the activation's sub-block sums (from the
 * Q8_K bsums) two sub-blocks per madd. d and dmin of the 8 rows scale the two int32 vectors in
 * f32. Integer sums are exact, so the bits per column do not depend on NC. */
static inline __attribute__((always_inline)) void
gemm_q4_Kx8_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
               size_t ldo) {
    const mx_block_q4_Kx8 *a = w;
    const int64_t nb = n / MX_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
    const mx_block_q8_K *xb[4];
    for (int c = 0; c < NC; c++)
        xb[c] = (const mx_block_q8_K *)((const char *)xq + (size_t)c * xq_row);
    for (int64_t b = 0; b < nb; b++) {
        const mx_block_q4_Kx8 *blk = &a[b];
        if (NC == 1)
            prefetch_ahead(blk, sizeof *blk);
        __m256i scv[8], mnv[4];
        q4kx8_header(blk->sm_lo, blk->sm_hi, false, scv, mnv);
        __m256i isum[4];
        for (int c = 0; c < NC; c++)
            isum[c] = _mm256_setzero_si256();
        for (int ch = 0; ch < 4; ch++) {
            __m256i slo[4], shi[4];
            for (int v = 0; v < 8; v++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(blk->qs + 256 * ch + 32 * v));
                __m256i lo = _mm256_and_si256(q, m4);
                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                for (int c = 0; c < NC; c++) {
                    const int8_t *x = xb[c][b].qs + 64 * ch;
                    __m256i p0 = _mm256_maddubs_epi16(lo, bcast4(x + 4 * v));
                    __m256i p1 = _mm256_maddubs_epi16(hi, bcast4(x + 32 + 4 * v));
                    slo[c] = v == 0 ? p0 : _mm256_add_epi16(slo[c], p0);
                    shi[c] = v == 0 ? p1 : _mm256_add_epi16(shi[c], p1);
                }
            }
            for (int c = 0; c < NC; c++)
                isum[c] = _mm256_add_epi32(
                    isum[c], _mm256_add_epi32(_mm256_madd_epi16(slo[c], scv[2 * ch]),
                                              _mm256_madd_epi16(shi[c], scv[2 * ch + 1])));
        }
        __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk->d));
        __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk->dmin));
        for (int c = 0; c < NC; c++)
            q4kx8_accumulate(d, dmin, mnv, &xb[c][b], isum[c], &acc[c], &accm[c]);
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, _mm256_sub_ps(acc[c], accm[c]));
}

MX_X8_ENTRY(gemm_q4_Kx8, gemm_q4_Kx8_nc)

/* Repacked Q5_K (mx_block_q5_Kx8): gemm_q4_Kx8_nc with the fifth bit ORed into each value.
 * Values reach 31, so an int16 sum takes at most 4 maddubs (4 x 2 x 31 x 127 = 31496) and each
 * sub-block's two halves are madd'ed with the scales separately. */
static inline __attribute__((always_inline)) void
gemm_q5_Kx8_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
               size_t ldo) {
    const mx_block_q5_Kx8 *a = w;
    const int64_t nb = n / MX_QK_K;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
    const mx_block_q8_K *xb[4];
    for (int c = 0; c < NC; c++)
        xb[c] = (const mx_block_q8_K *)((const char *)xq + (size_t)c * xq_row);
    for (int64_t b = 0; b < nb; b++) {
        const mx_block_q5_Kx8 *blk = &a[b];
        __m256i scv[8], mnv[4];
        q4kx8_header(blk->sm_lo, blk->sm_hi, false, scv, mnv);
        __m256i isum[4];
        for (int c = 0; c < NC; c++)
            isum[c] = _mm256_setzero_si256();
        for (int ch = 0; ch < 4; ch++) {
            __m256i qhl = _mm256_loadu_si256((const __m256i *)blk->ch[ch].qh[0]);
            __m256i qhh = _mm256_loadu_si256((const __m256i *)blk->ch[ch].qh[1]);
            for (int half = 0; half < 2; half++) {
                __m256i slo[4], shi[4];
#pragma GCC unroll 4
                for (int v4 = 0; v4 < 4; v4++) {
                    int v = 4 * half + v4;
                    __m256i lo, hi;
                    q5kx8_unpack(blk->ch[ch].qs + 32 * v, qhl, qhh, v, &lo, &hi);
#pragma GCC unroll 4
                    for (int c = 0; c < NC; c++) {
                        const int8_t *x = xb[c][b].qs + 64 * ch;
                        __m256i p0 = _mm256_maddubs_epi16(lo, bcast4(x + 4 * v));
                        __m256i p1 = _mm256_maddubs_epi16(hi, bcast4(x + 32 + 4 * v));
                        slo[c] = v4 == 0 ? p0 : _mm256_add_epi16(slo[c], p0);
                        shi[c] = v4 == 0 ? p1 : _mm256_add_epi16(shi[c], p1);
                    }
                }
                for (int c = 0; c < NC; c++)
                    isum[c] = _mm256_add_epi32(
                        isum[c], _mm256_add_epi32(_mm256_madd_epi16(slo[c], scv[2 * ch]),
                                                  _mm256_madd_epi16(shi[c], scv[2 * ch + 1])));
            }
        }
        __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk->d));
        __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk->dmin));
        for (int c = 0; c < NC; c++)
            q4kx8_accumulate(d, dmin, mnv, &xb[c][b], isum[c], &acc[c], &accm[c]);
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, _mm256_sub_ps(acc[c], accm[c]));
}

MX_X8_ENTRY(gemm_q5_Kx8, gemm_q5_Kx8_nc)

/* Repacked Q6_K (8 rows, mx_block_q6_Kx8) times NC Q8_K columns. Values are unsigned 6-bit
 * (q + 32) so maddubs takes them as they are; 32 x (scale-weighted activation group sums, from
 * the bsums) is taken back at the end of each super-block. Two maddubs per int16 sum at most
 * (2 x 2 x 63 x 127 = 32004 < 32767), then madd with the group's scales (row r's in lanes 2r,
 * 2r + 1) into int32. Integer sums are exact: the bits per column do not depend on NC. */
static inline __attribute__((always_inline)) void
gemm_q6_Kx8_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
               size_t ldo) {
    const mx_block_q6_Kx8 *a = w;
    const int64_t nb = n / MX_QK_K;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    const mx_block_q8_K *xb[4];
    for (int c = 0; c < NC; c++)
        xb[c] = (const mx_block_q8_K *)((const char *)xq + (size_t)c * xq_row);
    for (int64_t b = 0; b < nb; b++) {
        const mx_block_q6_Kx8 *blk = &a[b];
        if (NC == 1)
            prefetch_ahead(blk, sizeof *blk);
        __m256i isum[4], off[4];
        for (int c = 0; c < NC; c++)
            isum[c] = off[c] = _mm256_setzero_si256();
        for (int ch = 0; ch < 8; ch++) {
            __m128i sx = _mm_loadu_si128((const __m128i *)blk->ch[ch].scales);
            __m256i sa = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sx, sx)); /* group 2ch */
            __m256i sb = _mm256_cvtepi8_epi16(_mm_unpackhi_epi8(sx, sx)); /* group 2ch + 1 */
            __m256i sp = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sx, _mm_srli_si128(sx, 8)));
            __m256i h0 = _mm256_loadu_si256((const __m256i *)blk->ch[ch].qh[0]);
            __m256i h1 = _mm256_loadu_si256((const __m256i *)blk->ch[ch].qh[1]);
            __m256i lo[4], hi[4];
            q6x8_unpack(blk->ch[ch].ql[0], h0, false, &lo[0], &hi[0]);
            q6x8_unpack(blk->ch[ch].ql[1], h0, true, &lo[1], &hi[1]);
            q6x8_unpack(blk->ch[ch].ql[2], h1, false, &lo[2], &hi[2]);
            q6x8_unpack(blk->ch[ch].ql[3], h1, true, &lo[3], &hi[3]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *x = xb[c][b].qs + 32 * ch;
                __m256i sla = _mm256_add_epi16(_mm256_maddubs_epi16(lo[0], bcast4(x)),
                                               _mm256_maddubs_epi16(lo[1], bcast4(x + 4)));
                __m256i slb = _mm256_add_epi16(_mm256_maddubs_epi16(lo[2], bcast4(x + 8)),
                                               _mm256_maddubs_epi16(lo[3], bcast4(x + 12)));
                __m256i sha = _mm256_add_epi16(_mm256_maddubs_epi16(hi[0], bcast4(x + 16)),
                                               _mm256_maddubs_epi16(hi[1], bcast4(x + 20)));
                __m256i shb = _mm256_add_epi16(_mm256_maddubs_epi16(hi[2], bcast4(x + 24)),
                                               _mm256_maddubs_epi16(hi[3], bcast4(x + 28)));
                isum[c] = _mm256_add_epi32(
                    isum[c],
                    _mm256_add_epi32(_mm256_add_epi32(_mm256_madd_epi16(sla, sa),
                                                      _mm256_madd_epi16(slb, sa)),
                                     _mm256_add_epi32(_mm256_madd_epi16(sha, sb),
                                                      _mm256_madd_epi16(shb, sb))));
                int32_t bp;
                memcpy(&bp, xb[c][b].bsums + 2 * ch, 4); /* groups 2ch, 2ch + 1 */
                off[c] = _mm256_add_epi32(off[c], _mm256_madd_epi16(sp, _mm256_set1_epi32(bp)));
            }
        }
        __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk->d));
        for (int c = 0; c < NC; c++) {
            __m256i t = _mm256_sub_epi32(isum[c], _mm256_slli_epi32(off[c], 5));
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb[c][b].d)),
                                     _mm256_cvtepi32_ps(t), acc[c]);
        }
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, acc[c]);
}

MX_X8_ENTRY(gemm_q6_Kx8, gemm_q6_Kx8_nc)

/* Q5_K: Q4_K with a fifth bit per value from qh (bit 2j for the low nibbles of 64-value chunk
 * j, bit 2j + 1 for the high ones). */
static float vec_dot_q5_K(int64_t n, const void *w, const void *x) {
    const mx_block_q5_K *a = w;
    const mx_block_q8_K *b = x;
    __m256 acc = _mm256_setzero_ps();
    __m128 accm = _mm_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        uint32_t sm[4];
        k4_scales_mins(a[i].scales, sm);
        const uint8_t *sc = (const uint8_t *)sm;
        float d = b[i].d * h2f(a[i].d), dm = b[i].d * h2f(a[i].dmin);
        accm = _mm_fmadd_ps(_mm_set1_ps(dm), k4_min_terms(sm, b[i].bsums), accm);
        __m256i qh = _mm256_loadu_si256((const __m256i *)a[i].qh);
        __m256i sumi = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            __m256i q4 = _mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * j));
            __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one), 4);
            __m256i h1 =
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one), 4);
            __m256i lo = _mm256_or_si256(_mm256_and_si256(q4, m4), h0);
            __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4, 4), m4), h1);
            __m256i y0 = _mm256_loadu_si256((const __m256i *)(b[i].qs + 64 * j));
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(b[i].qs + 64 * j + 32));
            __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, y0),
                                           _mm256_set1_epi16(sc[2 * j]));
            __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, y1),
                                           _mm256_set1_epi16(sc[2 * j + 1]));
            sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(p0, p1));
        }
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
    }
    __m128 m = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));
    m = _mm_add_ss(m, _mm_movehdup_ps(m));
    return hsum8(acc) - _mm_cvtss_f32(m);
}

/* ---- Q2_K, Q3_K in ggml's float order (ggml_vec_dot_q2_K_q8_K / _q3_K_q8_K on AVX2; ggml
 * takes prompts through the same kernels on AVX2): per super-block, int32 lanes (vector k of
 * a 128-value half: lane l holds values 4l..4l+3, times the scale of their 16-value group),
 * one FMA per block into a single 8-lane accumulator (Q2_K: first -dmin x the mins' lanes, then
 * d x the values' lanes), the lanes summed by hsum8 at the end.
 *
 * Decode streams these rows from DRAM, and at 2-3 bits per weight the instructions per byte
 * decide the speed (the Q2_K model decoded slower than the Q4_0 one): each 32-value vector is
 * unpacked, multiplied and scaled in registers as it is read (an earlier form unpacked all 8
 * vectors and built their scale multipliers through a stack array first, ~150 instructions a
 * super-block against ggml's ~70, and spilled). The int32 lane sums are exact, so the order in
 * which the vectors are added is free; the float steps are ggml's. */

/* pshufb controls that make vector v's madd multipliers out of a Q2_K super-block's 16 4-bit
 * scales (as bytes, in both 128-bit halves): int16 words = scale 2v (low half) and 2v + 1 (high
 * half), zero-extended (an index with bit 7 set gives a zero byte). */
#define MX_PICK8(a) a, 0x80, a, 0x80, a, 0x80, a, 0x80, a, 0x80, a, 0x80, a, 0x80, a, 0x80
static const uint8_t q2_K_pick[8][32] __attribute__((aligned(32))) = {
    {MX_PICK8(0), MX_PICK8(1)},   {MX_PICK8(2), MX_PICK8(3)},   {MX_PICK8(4), MX_PICK8(5)},
    {MX_PICK8(6), MX_PICK8(7)},   {MX_PICK8(8), MX_PICK8(9)},   {MX_PICK8(10), MX_PICK8(11)},
    {MX_PICK8(12), MX_PICK8(13)}, {MX_PICK8(14), MX_PICK8(15)}};
#undef MX_PICK8

/* The same for Q3_K's signed 6-bit scales, already int16: half h of the super-block has its
 * 8 scales (words) in both 128-bit halves, and vector k of the half takes word 2k (low half)
 * and 2k + 1 (high half), ggml's get_scale_shuffle_q3k. */
#define MX_PICKW(a) a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1, a, a + 1
static const uint8_t q3_K_pick[4][32] __attribute__((aligned(32))) = {
    {MX_PICKW(0), MX_PICKW(2)}, {MX_PICKW(4), MX_PICKW(6)},
    {MX_PICKW(8), MX_PICKW(10)}, {MX_PICKW(12), MX_PICKW(14)}};
#undef MX_PICKW

static inline __m256i pick(__m256i sc, const uint8_t *ctl) {
    return _mm256_shuffle_epi8(sc, _mm256_load_si256((const __m256i *)ctl));
}

/* Q2_K vector v's 2-bit values (v = 4h + k: values 128h + 32k .. +31) from q = qs[32h..]. */
static inline __m256i q2_K_vals(__m256i q, int k) {
    return _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), _mm256_set1_epi8(3));
}

/* Q3_K: 4 where the high bit of vector v's values is clear (the value is u + 4h - 4 = u - nh):
 * bit v of each hmask byte moved to bit 2 by one 16-bit shift (it stays inside its byte). */
static inline __m256i q3_K_nh(__m256i hm, int v) {
    __m256i t = v < 2 ? _mm256_slli_epi16(hm, 2 - v) : v > 2 ? _mm256_srli_epi16(hm, v - 2) : hm;
    return _mm256_andnot_si256(t, _mm256_set1_epi8(4));
}

/* A Q2_K block's 16 scales as bytes in both halves, and the mins' lanes against bsums. */
static inline __m256i q2_K_scales(const mx_block_q2_K *a, const int16_t *bsums, __m256i *mt) {
    __m128i sc8 = _mm_loadu_si128((const __m128i *)a->scales);
    __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(15)));
    *mt = _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)bsums));
    return _mm256_broadcastsi128_si256(_mm_and_si128(sc8, _mm_set1_epi8(15)));
}

/* A Q3_K block's 16 scales as int16, half h's 8 in both 128-bit halves of sc[h]. */
static inline void q3_K_scales16(const mx_block_q3_K *a, __m256i sc[2]) {
    __m256i s = _mm256_cvtepi8_epi16(q3_K_scales(a->scales));
    sc[0] = _mm256_permute2x128_si256(s, s, 0x00);
    sc[1] = _mm256_permute2x128_si256(s, s, 0x11);
}

/* The value lanes of one Q2_K super-block against column y (q8 values of one Q8_K block). */
static inline __m256i q2_K_lanes(const mx_block_q2_K *a, __m256i scb, const int8_t *y) {
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(a->qs + 32 * h));
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i p = _mm256_maddubs_epi16(
                q2_K_vals(q, k), _mm256_loadu_si256((const __m256i *)(y + 128 * h + 32 * k)));
            p = _mm256_madd_epi16(pick(scb, q2_K_pick[4 * h + k]), p);
            if (k & 1)
                s1 = _mm256_add_epi32(s1, p);
            else
                s0 = _mm256_add_epi32(s0, p);
        }
    }
    return _mm256_add_epi32(s0, s1);
}

/* The same for Q3_K: maddubs(u, y) - maddubs(nh, y) per int16 pair (ggml's split; each |.| <=
 * 1024, no saturation). */
static inline __m256i q3_K_lanes(const mx_block_q3_K *a, const __m256i sc[2], const int8_t *y) {
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
    __m256i hm = _mm256_loadu_si256((const __m256i *)a->hmask);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(a->qs + 32 * h));
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i yv = _mm256_loadu_si256((const __m256i *)(y + 128 * h + 32 * k));
            __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q2_K_vals(q, k), yv),
                                         _mm256_maddubs_epi16(q3_K_nh(hm, 4 * h + k), yv));
            p = _mm256_madd_epi16(pick(sc[h], q3_K_pick[k]), p);
            if (k & 1)
                s1 = _mm256_add_epi32(s1, p);
            else
                s0 = _mm256_add_epi32(s0, p);
        }
    }
    return _mm256_add_epi32(s0, s1);
}

static float vec_dot_q2_K(int64_t n, const void *w, const void *x) {
    const mx_block_q2_K *a = w;
    const mx_block_q8_K *b = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        __m256i mt, scb = q2_K_scales(&a[i], b[i].bsums, &mt);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(-b[i].d * h2f(a[i].dmin)), _mm256_cvtepi32_ps(mt),
                              acc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].d)),
                              _mm256_cvtepi32_ps(q2_K_lanes(&a[i], scb, b[i].qs)), acc);
    }
    return hsum8(acc);
}

static float vec_dot_q3_K(int64_t n, const void *w, const void *x) {
    const mx_block_q3_K *a = w;
    const mx_block_q8_K *b = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        __m256i sc[2];
        q3_K_scales16(&a[i], sc);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].d)),
                              _mm256_cvtepi32_ps(q3_K_lanes(&a[i], sc, b[i].qs)), acc);
    }
    return hsum8(acc);
}

/* 4-column forms (prefill): per weight vector the values and their scale multipliers are made
 * once and meet the 4 columns' vectors; per column the row kernel's arithmetic in its order
 * (same bits). xd is not used (Q8_K columns). */
static void vec_dot4_q2_K(int64_t n, const void *w, const void *x, size_t xq_row,
                          const float *xd, float *out) {
    (void)xd;
    const mx_block_q2_K *a = w;
    const mx_block_q8_K *b[4];
    __m256 acc[4];
    for (int c = 0; c < 4; c++) {
        b[c] = (const mx_block_q8_K *)((const char *)x + c * xq_row);
        acc[c] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        __m128i sc8 = _mm_loadu_si128((const __m128i *)a[i].scales);
        __m256i mins =
            _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(15)));
        __m256i scb = _mm256_broadcastsi128_si256(_mm_and_si128(sc8, _mm_set1_epi8(15)));
        float wd = h2f(a[i].d), wm = h2f(a[i].dmin);
        __m256i sum[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) {
            __m256i mt =
                _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)b[c][i].bsums));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(-b[c][i].d * wm), _mm256_cvtepi32_ps(mt),
                                     acc[c]);
            sum[c] = _mm256_setzero_si256();
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * h));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i u = q2_K_vals(q, k), s = pick(scb, q2_K_pick[4 * h + k]);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    __m256i yv =
                        _mm256_loadu_si256((const __m256i *)(b[c][i].qs + 128 * h + 32 * k));
                    sum[c] = _mm256_add_epi32(
                        sum[c], _mm256_madd_epi16(s, _mm256_maddubs_epi16(u, yv)));
                }
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(b[c][i].d * wd), _mm256_cvtepi32_ps(sum[c]),
                                     acc[c]);
    }
    for (int c = 0; c < 4; c++)
        out[c] = hsum8(acc[c]);
}

/* Q3_K's 4 columns: per vector the signed values w = u - nh in [-4, 3] once, then per column
 * maddubs(|w|, sign(y, w)): the same exact int16 pair sums as the row kernel's two maddubs
 * (Q8_K values are in [-127, 127], so moving w's sign onto y cannot overflow). */
static void vec_dot4_q3_K(int64_t n, const void *w, const void *x, size_t xq_row,
                          const float *xd, float *out) {
    (void)xd;
    const mx_block_q3_K *a = w;
    const mx_block_q8_K *b[4];
    __m256 acc[4];
    for (int c = 0; c < 4; c++) {
        b[c] = (const mx_block_q8_K *)((const char *)x + c * xq_row);
        acc[c] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        __m256i sc[2], sum[4];
        q3_K_scales16(&a[i], sc);
        __m256i hm = _mm256_loadu_si256((const __m256i *)a[i].hmask);
        for (int c = 0; c < 4; c++)
            sum[c] = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i q = _mm256_loadu_si256((const __m256i *)(a[i].qs + 32 * h));
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                __m256i v = _mm256_sub_epi8(q2_K_vals(q, k), q3_K_nh(hm, 4 * h + k));
                __m256i av = _mm256_sign_epi8(v, v), s = pick(sc[h], q3_K_pick[k]);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    __m256i yv =
                        _mm256_loadu_si256((const __m256i *)(b[c][i].qs + 128 * h + 32 * k));
                    __m256i p = _mm256_maddubs_epi16(av, _mm256_sign_epi8(yv, v));
                    sum[c] = _mm256_add_epi32(sum[c], _mm256_madd_epi16(s, p));
                }
            }
        }
        float wd = h2f(a[i].d);
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++)
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(b[c][i].d * wd), _mm256_cvtepi32_ps(sum[c]),
                                     acc[c]);
    }
    for (int c = 0; c < 4; c++)
        out[c] = hsum8(acc[c]);
}

/* Q6_K: 6-bit q in [-32, 31] = u - 32 with u in [0, 63]; q.q8 = u.q8 - 32 sum(q8), the last
 * from bsums. 16 int8 scales per block, one per 16 values. */
static float vec_dot_q6_K(int64_t n, const void *w, const void *x) {
    const mx_block_q6_K *a = w;
    const mx_block_q8_K *b = x;
    __m256 acc = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint8_t *ql = a[i].ql, *qh = a[i].qh;
        const int8_t *sc = a[i].scales, *q8 = b[i].qs;
        /* 32 * sum_g sc_g * bsum_g, lane-wise (lanes are summed at the very end anyway) */
        __m256i corr = _mm256_madd_epi16(
            _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc)),
            _mm256_loadu_si256((const __m256i *)b[i].bsums));
        __m256i sumi = _mm256_setzero_si256();
        for (int half = 0; half < 2; half++) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            __m256i u[4];
            u[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            u[1] = _mm256_or_si256(
                _mm256_and_si256(l1, m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
            u[2] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
            u[3] = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
            for (int k = 0; k < 4; k++) {
                __m256i y = _mm256_loadu_si256((const __m256i *)(q8 + 32 * k));
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16(sc[2 * k + 1]),
                                               _mm_set1_epi16(sc[2 * k]));
                sumi = _mm256_add_epi32(sumi,
                                        _mm256_madd_epi16(_mm256_maddubs_epi16(u[k], y), scv));
            }
            ql += 64;
            qh += 32;
            sc += 8;
            q8 += 128;
        }
        sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32(corr, 5));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * h2f(a[i].d)), _mm256_cvtepi32_ps(sumi), acc);
    }
    return hsum8(acc);
}

/* ---- dequantization for the prefill GEMM ------------------------------------------------------
 * Bit-identical to core/base/quant.c's reference: the same float operations in the same order, and no
 * FMA (a fused multiply-add rounds once where the reference rounds twice). */

/* 8 int8 -> 8 floats */
static inline __m256 i8x8_to_ps(const int8_t *q) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
}

static void dequant_q8_0(const void *src, float *dst, int64_t n) {
    const mx_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / MX_QK8_0; i++, dst += MX_QK8_0) {
        __m256 d = _mm256_set1_ps(h2f(b[i].d));
        for (int j = 0; j < 32; j += 8)
            _mm256_storeu_ps(dst + j, _mm256_mul_ps(i8x8_to_ps(b[i].qs + j), d));
    }
}

static void dequant_q4_0(const void *src, float *dst, int64_t n) {
    const mx_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / MX_QK4_0; i++, dst += MX_QK4_0) {
        __m256 d = _mm256_set1_ps(h2f(b[i].d));
        int8_t q[32];
        _mm256_storeu_si256((__m256i *)q,
                            _mm256_sub_epi8(unpack_nibbles(b[i].qs), _mm256_set1_epi8(8)));
        for (int j = 0; j < 32; j += 8)
            _mm256_storeu_ps(dst + j, _mm256_mul_ps(i8x8_to_ps(q + j), d));
    }
}

static void dequant_q4_K(const void *src, float *dst, int64_t n) {
    const mx_block_q4_K *b = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        for (int j = 0; j < 4; j++) {
            int sc0, m0, sc1, m1;
            scale_min_k4(2 * j, b[i].scales, &sc0, &m0);
            scale_min_k4(2 * j + 1, b[i].scales, &sc1, &m1);
            __m256 d0 = _mm256_set1_ps(d * (float)sc0), mm0 = _mm256_set1_ps(dmin * (float)m0);
            __m256 d1 = _mm256_set1_ps(d * (float)sc1), mm1 = _mm256_set1_ps(dmin * (float)m1);
            const uint8_t *q = b[i].qs + 32 * j;
            for (int l = 0; l < 32; l += 8) {
                __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(q + l)));
                __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(v, _mm256_set1_epi32(15)));
                __m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
                _mm256_storeu_ps(dst + l, _mm256_sub_ps(_mm256_mul_ps(d0, lo), mm0));
                _mm256_storeu_ps(dst + 32 + l, _mm256_sub_ps(_mm256_mul_ps(d1, hi), mm1));
            }
            dst += 64;
        }
    }
}

static void dequant_q6_K(const void *src, float *dst, int64_t n) {
    const mx_block_q6_K *b = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        float d = h2f(b[i].d);
        const uint8_t *ql = b[i].ql, *qh = b[i].qh;
        const int8_t *sc = b[i].scales;
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, dst += 128) {
            for (int l = 0; l < 32; l += 8) {
                __m256i lo0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ql + l)));
                __m256i lo1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(ql + l + 32)));
                __m256i hv = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(qh + l)));
                __m256i m15 = _mm256_set1_epi32(15), m3 = _mm256_set1_epi32(3);
                __m256i o32 = _mm256_set1_epi32(32);
                __m256i q[4];
                q[0] = _mm256_or_si256(_mm256_and_si256(lo0, m15),
                                       _mm256_slli_epi32(_mm256_and_si256(hv, m3), 4));
                q[1] = _mm256_or_si256(
                    _mm256_and_si256(lo1, m15),
                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hv, 2), m3), 4));
                q[2] = _mm256_or_si256(
                    _mm256_srli_epi32(lo0, 4),
                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hv, 4), m3), 4));
                q[3] = _mm256_or_si256(
                    _mm256_srli_epi32(lo1, 4),
                    _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(hv, 6), m3), 4));
                int is = l / 16;
                for (int k = 0; k < 4; k++) {
                    __m256 ds = _mm256_set1_ps(d * (float)sc[is + 2 * k]);
                    __m256 qf = _mm256_cvtepi32_ps(_mm256_sub_epi32(q[k], o32));
                    _mm256_storeu_ps(dst + 32 * k + l, _mm256_mul_ps(ds, qf));
                }
            }
        }
    }
}

/* ---- F16 rows <-> f32 (F16C) -----------------------------------------------------------------
 * The UNet and VAE read F16 conv kernels and linear weights as f32 tiles for sgemm, and round
 * their f32 activations to f16 first as ggml does: one instruction per 8 values each way. */

static void dequant_f16(const void *src, float *dst, int64_t n) {
    const uint16_t *h = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++)
        dst[i] = h2f(h[i]);
}

static void quant_act_f16(const float *x, void *dst, int64_t n) {
    uint16_t *h = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        h[i] = _cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

static void round_f16(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i),
                                                                _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++)
        x[i] = _cvtsh_ss(_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT));
}

/* ---- activation quantization (decode) ----------------------------------------------------------
 * Bit-identical to mx_quantize_act: same products, round-to-nearest-even like nearbyintf, the
 * same fp16 rounding (F16C, round to nearest even). */

/* 32 int32 lanes (4 vectors) -> 32 int8 in order. */
static inline __m256i pack32(__m256i q0, __m256i q1, __m256i q2, __m256i q3) {
    __m256i a = _mm256_packs_epi32(q0, q1), b = _mm256_packs_epi32(q2, q3);
    __m256i c = _mm256_packs_epi16(a, b); /* lane-interleaved */
    return _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void quant_act_q8_0(const float *x, void *dst, int64_t n) {
    mx_block_q8_0 *b = dst;
    float *sums = (float *)((char *)dst + mx_act_sums_offset(n));
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t ib = 0; ib < n / MX_QK8_0; ib++) {
        const float *xb = x + ib * MX_QK8_0;
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        }
        float amax = hmax8(m);
        float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        b[ib].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        __m256 idv = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(_mm256_round_ps(
                _mm256_mul_ps(v[k], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm256_storeu_si256((__m256i *)b[ib].qs, pack32(q[0], q[1], q[2], q[3]));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        sums[ib] = (float)_mm_cvtsi128_si32(s4);
    }
}

/* Q8_1 (Q4_1 / Q5_1 activations): Q8_0's values, and s = fp16(d x sum) with d the f32 scale
 * before its fp16 rounding, as ggml's quantize_row_q8_1 and mx_quantize_act. */
static void quant_act_q8_1(const float *x, void *dst, int64_t n) {
    mx_block_q8_1 *b = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t ib = 0; ib < n / MX_QK8_1; ib++) {
        const float *xb = x + ib * MX_QK8_1;
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(xb + 8 * k);
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[k]));
        }
        float amax = hmax8(m);
        float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
        __m256 idv = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++)
            q[k] = _mm256_cvtps_epi32(_mm256_round_ps(
                _mm256_mul_ps(v[k], idv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        _mm256_storeu_si256((__m256i *)b[ib].qs, pack32(q[0], q[1], q[2], q[3]));
        __m256i s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        b[ib].d = _cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT);
        b[ib].s = _cvtss_sh(d * (float)_mm_cvtsi128_si32(s4), _MM_FROUND_TO_NEAREST_INT);
    }
}

static void quant_act_q8_K(const float *x, void *dst, int64_t n) {
    mx_block_q8_K *b = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t ib = 0; ib < n / MX_QK_K; ib++) {
        const float *xb = x + ib * MX_QK_K;
        __m256 m = _mm256_setzero_ps();
        for (int k = 0; k < MX_QK_K; k += 8)
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(xb + k)));
        float amax = hmax8(m);
        if (amax == 0.0f) {
            memset(&b[ib], 0, sizeof b[ib]);
            continue;
        }
        float max = 0.0f; /* the first value of largest magnitude, with its sign */
        __m256 am = _mm256_set1_ps(amax);
        for (int k = 0; k < MX_QK_K; k += 8) {
            int mask = _mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(xb + k)), am, _CMP_EQ_OQ));
            if (mask) {
                max = xb[k + __builtin_ctz((unsigned)mask)];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m256 is = _mm256_set1_ps(iscale);
        for (int k = 0; k < MX_QK_K; k += 32) {
            __m256i q[4];
            for (int j = 0; j < 4; j++) {
                __m256 r = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + k + 8 * j), is),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q[j] = _mm256_min_epi32(_mm256_cvtps_epi32(r), _mm256_set1_epi32(127));
            }
            _mm256_storeu_si256((__m256i *)(b[ib].qs + k), pack32(q[0], q[1], q[2], q[3]));
        }
        for (int g = 0; g < MX_QK_K / 16; g++) {
            __m128i v = _mm_loadu_si128((const __m128i *)(b[ib].qs + 16 * g));
            __m256i w16 = _mm256_cvtepi8_epi16(v);
            __m256i s = _mm256_madd_epi16(w16, _mm256_set1_epi16(1));
            __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
            s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
            b[ib].bsums[g] = (int16_t)_mm_cvtsi128_si32(s4);
        }
        b[ib].d = 1.0f / iscale;
    }
}

/* dst = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) * u, with tanh(y) = 1 - 2 / (1 + e^2y)
 * (exp8 saturates, so large |y| give exactly +-1). */
static void gelu_mul_avx2(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const float *x = a->src[0]->data, *u = a->src[1]->data;
    float *y = a->dst->data;
    int64_t e0, e1;
    mx_split(mx_tensor_nelements(a->dst), ith, nth, &e0, &e1);
    const __m256 c = _mm256_set1_ps(2.0f * 0.79788456080286535587989211986876f);
    const __m256 k = _mm256_set1_ps(0.044715f), one = _mm256_set1_ps(1.0f);
    const __m256 two = _mm256_set1_ps(2.0f), half = _mm256_set1_ps(0.5f);
    int64_t i = e0;
    for (; i + 8 <= e1; i += 8) {
        __m256 xv = _mm256_loadu_ps(x + i);
        __m256 inner = _mm256_mul_ps(_mm256_mul_ps(c, xv),
                                     _mm256_fmadd_ps(_mm256_mul_ps(k, xv), xv, one));
        __m256 t = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(one, exp8(inner))));
        __m256 g = _mm256_mul_ps(_mm256_mul_ps(half, xv), _mm256_add_ps(one, t));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(g, _mm256_loadu_ps(u + i)));
    }
    for (; i < e1; i++) {
        float v = x[i];
        y[i] = 0.5f * v * (1.0f + tanhf(0.79788456080286535587989211986876f * v *
                                        (1.0f + 0.044715f * v * v))) * u[i];
    }
}

void mx_cpu_kernels_avx2(struct mx_cpu_kernels *k) {
    k->gelu_mul = gelu_mul_avx2;
    mx_cpu_attn_avx2(k);
    k->name = "avx2";
    k->dot_f32 = dot_f32_avx2;
    k->vec_dot[MX_TYPE_F16] = vec_dot_f16;
    k->vec_dot[MX_TYPE_Q8_0] = vec_dot_q8_0;
    k->vec_dot[MX_TYPE_Q4_0] = vec_dot_q4_0;
    k->vec_dot4[MX_TYPE_Q4_0] = vec_dot4_q4_0;
    k->gemm_x8[MX_LAYOUT_Q4_0X8] = gemm_q4_0x8;
    k->gemm_x8[MX_LAYOUT_Q4_KX8] = gemm_q4_Kx8;
    k->gemm_x8[MX_LAYOUT_Q6_KX8] = gemm_q6_Kx8;
    k->gemm_x8[MX_LAYOUT_Q5_KX8] = gemm_q5_Kx8;
    k->gemm_x8[MX_LAYOUT_Q8_0X8] = gemm_q8_0x8;
    k->vec_dot[MX_TYPE_Q4_1] = vec_dot_q4_1;
    k->vec_dot4[MX_TYPE_Q4_1] = vec_dot4_q4_1;
    k->vec_dot[MX_TYPE_Q5_0] = vec_dot_q5_0;
    k->vec_dot4[MX_TYPE_Q5_0] = vec_dot4_q5_0;
    k->vec_dot[MX_TYPE_Q5_1] = vec_dot_q5_1;
    k->vec_dot4[MX_TYPE_Q5_1] = vec_dot4_q5_1;
    k->quantize_act[MX_TYPE_Q8_1] = quant_act_q8_1;
    k->vec_dot[MX_TYPE_Q2_K] = vec_dot_q2_K;
    k->vec_dot4[MX_TYPE_Q2_K] = vec_dot4_q2_K;
    k->vec_dot[MX_TYPE_Q3_K] = vec_dot_q3_K;
    k->vec_dot4[MX_TYPE_Q3_K] = vec_dot4_q3_K;
    k->vec_dot[MX_TYPE_Q4_K] = vec_dot_q4_K;
    k->vec_dot[MX_TYPE_Q5_K] = vec_dot_q5_K;
    k->vec_dot[MX_TYPE_Q6_K] = vec_dot_q6_K;
    k->vec_dot[MX_TYPE_BF16] = vec_dot_bf16;
    k->dequant[MX_TYPE_F16] = dequant_f16;
    k->quantize_act[MX_TYPE_F16] = quant_act_f16;
    k->round_f16 = round_f16;
    k->dequant[MX_TYPE_Q8_0] = dequant_q8_0;
    k->quantize_act[MX_TYPE_Q8_0] = quant_act_q8_0;
    k->quantize_act[MX_TYPE_Q8_K] = quant_act_q8_K;
    k->dequant[MX_TYPE_Q4_0] = dequant_q4_0;
    k->dequant[MX_TYPE_Q4_K] = dequant_q4_K;
    k->dequant[MX_TYPE_Q6_K] = dequant_q6_K;
}
