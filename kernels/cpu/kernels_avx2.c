/* kernels_avx2.c - AVX2 + FMA + F16C row kernels for the CPU backend's decode matmul.
 *
 * Compiled on its own with -mavx2 -mfma -mf16c (kernels/backend.am) and installed by
 * mx_cpu_kernels_init only when the CPU reports those features. Decode is memory-bound: each
 * kernel streams one weight row once and keeps the activation (already quantized to the weight's
 * ggml vec_dot type: Q8_0 blocks or F16) hot in cache, so the inner loops are integer
 * multiply-adds on 32-byte vectors, as in ggml. Every kernel has a scalar twin (dequantize + f32
 * dot on the rounded activations) that tests/test_backend.c compares it against.
 */
#include "kernels/cpu/cpu.h"

#include <immintrin.h>

#include "core/util.h"

static inline float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
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

/* Sum of products of 32 signed bytes x 32 signed bytes as 8 float lanes (ggml's
 * mul_sum_i8_pairs_float): maddubs needs an unsigned operand, so move x's sign onto y. */
static inline __m256 mul_sum_i8(__m256i x, __m256i y) {
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sy = _mm256_sign_epi8(y, x);
    __m256i dot = _mm256_maddubs_epi16(ax, sy);
    __m256i s32 = _mm256_madd_epi16(dot, _mm256_set1_epi16(1));
    return _mm256_cvtepi32_ps(s32);
}

static float vec_dot_q8_0(int64_t n, const void *w, const void *x) {
    const mx_block_q8_0 *a = w, *b = x;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / MX_QK8_0; i++) {
        __m256 d = _mm256_set1_ps(mx_fp16_to_fp32(a[i].d) * mx_fp16_to_fp32(b[i].d));
        __m256i qa = _mm256_loadu_si256((const __m256i *)a[i].qs);
        __m256i qb = _mm256_loadu_si256((const __m256i *)b[i].qs);
        acc = _mm256_fmadd_ps(d, mul_sum_i8(qa, qb), acc);
    }
    return hsum8(acc);
}

/* 32 nibbles (low nibbles = values 0..15, high nibbles = 16..31) as bytes 0..15. */
static inline __m256i unpack_nibbles(const uint8_t *qs) {
    __m128i t = _mm_loadu_si128((const __m128i *)qs);
    __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

static float vec_dot_q4_0(int64_t n, const void *w, const void *x) {
    const mx_block_q4_0 *a = w;
    const mx_block_q8_0 *b = x;
    __m256 acc = _mm256_setzero_ps();
    const __m256i off = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < n / MX_QK4_0; i++) {
        __m256 d = _mm256_set1_ps(mx_fp16_to_fp32(a[i].d) * mx_fp16_to_fp32(b[i].d));
        __m256i qa = _mm256_sub_epi8(unpack_nibbles(a[i].qs), off);
        __m256i qb = _mm256_loadu_si256((const __m256i *)b[i].qs);
        acc = _mm256_fmadd_ps(d, mul_sum_i8(qa, qb), acc);
    }
    return hsum8(acc);
}

void mx_cpu_kernels_avx2(struct mx_cpu_kernels *k) {
    k->name = "avx2";
    k->dot_f32 = dot_f32_avx2;
    k->vec_dot[MX_TYPE_F16] = vec_dot_f16;
    k->vec_dot[MX_TYPE_Q8_0] = vec_dot_q8_0;
    k->vec_dot[MX_TYPE_Q4_0] = vec_dot_q4_0;
}
