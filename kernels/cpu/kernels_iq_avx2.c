/* kernels_iq_avx2.c - AVX2 kernels of the IQ types: integer vec_dots for decode and bit-exact
 * dequantizers for the prefill tiles (dequantize + sgemm), of every IQ type.
 *
 * Compiled with -mavx2 -mfma -mf16c (kernels/cpu/cpu.am), installed by kernels.c only when the
 * CPU has them. Each vec_dot sums a super-block (IQ4_NL: a block) in exact integers and adds
 * d_w x d_x x isum to a float in the scalar kernel's order (kernels_iq.h), so results equal
 * kernels_iq.c's bit for bit; tests/test_quant_iq.c checks that.
 *
 * Techniques (as ggml's x86 kernels, read, not copied): the 16 IQ4 levels are looked up with
 * one byte shuffle; signed x signed byte products go through maddubs as |w| x (x with w's sign);
 * IQ2/IQ3 grid entries are gathered with scalar loads into a vector, and the 8 sign bits per 8
 * values are expanded to byte masks by a shuffle + compare against a bit table, or looked up as
 * +-1 bytes (kernels_iq_grid_dots.h); the IQ1 grids hold -1/0/+1, so sign(activation, grid) is
 * the product and maddubs with ones sums it, and the +-1/8 shift is summed with the grid term
 * in one integer vector (8 x grid + shift, exact).
 *
 * Workload: at 1-3 bits per weight decode is bound by these instructions, not by DRAM (one
 * 2-bit super-block takes ~25 ns on a Zen 3 core against ~3 ns to stream its 66-82 bytes), so
 * the dots were tuned against llama.cpp's own (commit messages give the numbers).
 */
#include "kernels/cpu/kernels_iq.h"

#include <immintrin.h>
#include <string.h>

#include "core/base/quant_iq.h"
#include "core/base/util.h"
#include "kernels/cpu/kernels_x86.h"

static inline float h2f(mx_half h) {
    return _cvtsh_ss(h);
}

/* Sum of the 8 int32 lanes (exact). */
static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* Signed bytes w times signed bytes x, pairs summed to int16 (|w| <= 127, so no saturation). */
static inline __m256i mul_i8_pairs(__m256i w, __m256i x) {
    return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

/* The 16 IQ4 levels in both 128-bit lanes, for vpshufb. */
static inline __m256i iq4_table(void) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)mx_kvalues_iq4nl));
}

/* 32 IQ4 values of 16 packed bytes: low nibbles (values 0..15) in the low lane, high nibbles
 * (values 16..31) in the high lane, as signed levels. */
static inline __m256i iq4_values32(const uint8_t *qs, __m256i tbl) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m256i idx = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    idx = _mm256_and_si256(idx, _mm256_set1_epi8(0x0f));
    return _mm256_shuffle_epi8(tbl, idx);
}

/* ---- IQ4_NL (Q8_0 activations) --------------------------------------------------------------- */

/* Per block: isum in integers (maddubs + madd, then a horizontal add of 8 lanes), then
 * sumf += (d_x * d_w) * isum as the scalar kernel does. Two blocks per step share the
 * horizontal reduction. */
static float vec_dot_iq4_nl(int64_t n, const void *w, const void *xq) {
    const mx_block_iq4_nl *x = w;
    const mx_block_q8_0 *y = xq;
    const __m256i tbl = iq4_table(), ones = _mm256_set1_epi16(1);
    const int64_t nb = n / MX_QK4_NL;
    float sumf = 0;
    int64_t ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
        __m256i p0 = _mm256_madd_epi16(
            mul_i8_pairs(iq4_values32(x[ib].qs, tbl),
                         _mm256_loadu_si256((const __m256i *)y[ib].qs)), ones);
        __m256i p1 = _mm256_madd_epi16(
            mul_i8_pairs(iq4_values32(x[ib + 1].qs, tbl),
                         _mm256_loadu_si256((const __m256i *)y[ib + 1].qs)), ones);
        /* lanes 0-3 / 4-7 of hadd: pair sums of p0 and p1 per 128-bit half */
        __m256i h = _mm256_hadd_epi32(p0, p1);
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        s = _mm_hadd_epi32(s, s); /* s0 = isum0, s1 = isum1 */
        const float d0 = h2f(y[ib].d) * h2f(x[ib].d), d1 = h2f(y[ib + 1].d) * h2f(x[ib + 1].d);
        sumf += d0 * (float)_mm_cvtsi128_si32(s);
        sumf += d1 * (float)_mm_extract_epi32(s, 1);
    }
    for (; ib < nb; ib++) {
        __m256i p = _mm256_madd_epi16(
            mul_i8_pairs(iq4_values32(x[ib].qs, tbl),
                         _mm256_loadu_si256((const __m256i *)y[ib].qs)), ones);
        sumf += h2f(y[ib].d) * h2f(x[ib].d) * (float)hsum_i32(p);
    }
    return sumf;
}

/* ---- IQ4_XS --------------------------------------------------------------------------------- */

static float vec_dot_iq4_xs(int64_t n, const void *w, const void *xq) {
    const mx_block_iq4_xs *x = w;
    const mx_block_q8_K *y = xq;
    const __m256i tbl = iq4_table();
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint8_t *qs = x[i].qs;
        const int8_t *q8 = y[i].qs;
        const uint16_t sh = x[i].scales_h;
        __m256i acc = _mm256_setzero_si256();
        for (int ib = 0; ib < MX_QK_K / 32; ib += 2, qs += 32, q8 += 64) {
            const int ls1 = (x[i].scales_l[ib / 2] & 0xf) | (((sh >> 2 * ib) & 3) << 4);
            const int ls2 = (x[i].scales_l[ib / 2] >> 4) | (((sh >> (2 * ib + 2)) & 3) << 4);
            __m256i p1 = mul_i8_pairs(iq4_values32(qs, tbl),
                                      _mm256_loadu_si256((const __m256i *)q8));
            __m256i p2 = mul_i8_pairs(iq4_values32(qs + 16, tbl),
                                      _mm256_loadu_si256((const __m256i *)(q8 + 32)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, _mm256_set1_epi16((short)(ls1 - 32))));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p2, _mm256_set1_epi16((short)(ls2 - 32))));
        }
        const float d = h2f(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(acc);
    }
    return sumf;
}

/* ---- sign masks of the IQ2/IQ3 grids -------------------------------------------------------- */

/* 4 sign bytes at s (one per 8 values; bit j set: value j negative) as 32 bytes, 0xff where
 * negative (kernels_iq_grid_dots.h). The 4 bytes are broadcast straight from memory (one load,
 * no move from a general register, which competed with the grid inserts' ports). */
static inline __m256i sign_mask(const uint8_t *s) {
    const __m256i bytesel = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                              0x0101010101010101, 0x0000000000000000);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i b = _mm256_shuffle_epi8(
        _mm256_castps_si256(_mm256_broadcast_ss((const float *)(const void *)s)), bytesel);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, bits), bits);
}

/* IQ2_XS, IQ3_S, IQ2_XXS, IQ2_S, IQ3_XXS */
#include "kernels/cpu/kernels_iq_grid_dots.h"

/* ---- IQ1_S, IQ1_M: grids of -1/0/+1 bytes plus a +-1/8 shift ------------------------------- */

/* Both IQ1 dots sum tot = 8 x sumi + sumi1 in one int32 vector, where the scalar kernel keeps
 * sumi (grid values -1/0/+1 times activations, scaled) and sumi1 (the +-1 shift's term) apart
 * and adds sumi + 0.125f x sumi1 at the end: |tot| <= 8 x 256 x 127 x 15 x 9/8 < 2^24, so
 * (float)tot x 0.125f and that float sum are the same exact number (no rounding in either) and
 * the bits are the scalar kernel's.
 *
 * IQ1_S, per 32 values: 4 grid indices of 11 bits (a byte of qs + 3 bits of the qh word), a
 * 3-bit scale and the shift's sign in the same word. sign(activation, grid) is the product,
 * maddubs with ones adds pairs, madd with 8 (2s + 1) scales; the shift term is the activations'
 * 16-value sums (bsums) times +-(2s + 1), one madd per super-block. The 8 scales are unpacked
 * once per super-block and picked per sub-block by a shuffle. Before (one sub-block per step,
 * scalar shift term): 0.65x of llama.cpp's dot, now ~1.05x (bench notes in the commit). */
static float vec_dot_iq1_s(int64_t n, const void *w, const void *xq) {
    const mx_block_iq1_s *x = w;
    const mx_block_q8_K *y = xq;
    const __m256i ones = _mm256_set1_epi8(1);
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint8_t *qs = x[i].qs;
        const uint16_t *qh = x[i].qh;
        const int8_t *q8 = y[i].qs;
        const __m128i h = _mm_loadu_si128((const __m128i *)qh);
        const __m128i ls = _mm_add_epi16(_mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(h, 12), _mm_set1_epi16(7)), 1), _mm_set1_epi16(1));
        const __m128i neg = _mm_srai_epi16(h, 15);
        const __m128i lsd = _mm_sub_epi16(_mm_xor_si128(ls, neg), neg);
        __m256i acc = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y[i].bsums),
                                        _mm256_set_m128i(_mm_unpackhi_epi16(lsd, lsd), _mm_unpacklo_epi16(lsd, lsd)));
        const __m256i ls8 = _mm256_broadcastsi128_si256(_mm_slli_epi16(ls, 3));
        __m256i acc2 = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int ib = 0; ib < MX_QK_K / 32; ib += 2, qs += 8, q8 += 64) {
            const uint32_t h0 = qh[ib], h1 = qh[ib + 1];
            __m256i g1 = _mm256_set_epi64x((long long)mx_iq1s_grid[qs[3] | ((h0 >> 1) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[2] | ((h0 << 2) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[1] | ((h0 << 5) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[0] | ((h0 << 8) & 0x700)]);
            __m256i g2 = _mm256_set_epi64x((long long)mx_iq1s_grid[qs[7] | ((h1 >> 1) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[6] | ((h1 << 2) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[5] | ((h1 << 5) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[4] | ((h1 << 8) & 0x700)]);
            __m256i p1 = _mm256_maddubs_epi16(ones, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)q8), g1));
            __m256i p2 = _mm256_maddubs_epi16(ones, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(q8 + 32)), g2));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p1, scale_pick(ls8, ib)));
            acc2 = _mm256_add_epi32(acc2, _mm256_madd_epi16(p2, scale_pick(ls8, ib + 1)));
        }
        /* tot / 8 = sumi + sumi1 / 8 exactly (|tot| < 2^24), the scalar kernel's factor */
        const float c = (float)hsum_i32(_mm256_add_epi32(acc, acc2)) * 0.125f;
        sumf += h2f(x[i].d) * y[i].d * c;
    }
    return sumf;
}
/* IQ1_M, per 32 values: 4 grid indices of 11 bits (qs byte + 3 bits of a qh nibble), the
 * shift's sign per 8 values (bit 3 of each qh nibble), two 3-bit scales (one per 16 values)
 * and the fp16 super-scale spread over the top nibbles of the 4 scale words. The grid value and
 * the shift are fused into one signed weight 8g + delta (-9..9) per value, so one signed dot
 * (maddubs(|w|, sign(x, w))) per 32 values gives 8 x grid term + shift term; the 16 scales are
 * unpacked once per super-block (each shifted into bits 9-11 by a multiply) and picked per
 * sub-block by a shuffle; the shift signs become +-1 bytes by a compare per 64-bit lane. */
static float vec_dot_iq1_m(int64_t n, const void *w, const void *xq) {
    const mx_block_iq1_m *x = w;
    const mx_block_q8_K *y = xq;
    const __m256i eight = _mm256_set1_epi8(8), ones = _mm256_set1_epi8(1);
    const __m256i dm1 = _mm256_set_epi64x(1 << 15, 1 << 11, 1 << 7, 1 << 3);
    const __m256i dm2 = _mm256_set_epi64x(1u << 31, 1 << 27, 1 << 23, 1 << 19);
    const __m256i mult = _mm256_setr_epi16(512, 8, 512, 8, 512, 8, 512, 8, 64, 1, 64, 1, 64, 1, 64, 1);
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint8_t *qs = x[i].qs, *qh = x[i].qh;
        const int8_t *q8 = y[i].qs;
        uint16_t sc[4];
        memcpy(sc, x[i].scales, sizeof sc);
        const uint16_t su = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                       ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
        /* lane 0 element k: the scale of sub-block k's first 16 values ((sc[k/2] >> 6 (k%2)) & 7),
         * lane 1: of its second 16 ((sc[k/2] >> (6 (k%2) + 3)) & 7): shifted into bits 9-11 by a
         * multiply by 2^(9 - shift), then down */
        __m128i t = _mm_loadl_epi64((const __m128i *)x[i].scales);
        t = _mm_unpacklo_epi16(t, t);
        __m256i s16 = _mm256_mullo_epi16(_mm256_broadcastsi128_si256(t), mult);
        s16 = _mm256_and_si256(_mm256_srli_epi16(s16, 9), _mm256_set1_epi16(7));
        s16 = _mm256_add_epi16(_mm256_add_epi16(s16, s16), _mm256_set1_epi16(1));
        __m256i acc1 = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int ib = 0; ib < MX_QK_K / 32; ib += 2, qs += 8, qh += 4, q8 += 64) {
            const uint32_t h0 = qh[0], h1 = qh[1], h2 = qh[2], h3 = qh[3];
            __m256i g1 = _mm256_set_epi64x((long long)mx_iq1s_grid[qs[3] | ((h1 << 4) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[2] | ((h1 << 8) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[1] | ((h0 << 4) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[0] | ((h0 << 8) & 0x700)]);
            __m256i g2 = _mm256_set_epi64x((long long)mx_iq1s_grid[qs[7] | ((h3 << 4) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[6] | ((h3 << 8) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[5] | ((h2 << 4) & 0x700)],
                                           (long long)mx_iq1s_grid[qs[4] | ((h2 << 8) & 0x700)]);
            const __m256i hb = _mm256_castps_si256(_mm256_broadcast_ss((const float *)(const void *)qh));
            const __m256i d1 = _mm256_or_si256(_mm256_cmpeq_epi64(_mm256_and_si256(hb, dm1), dm1), ones);
            const __m256i d2 = _mm256_or_si256(_mm256_cmpeq_epi64(_mm256_and_si256(hb, dm2), dm2), ones);
            /* 8 g + delta: -9, -7, -1, 1, 7, 9 */
            const __m256i w1 = _mm256_add_epi8(_mm256_sign_epi8(eight, g1), d1);
            const __m256i w2 = _mm256_add_epi8(_mm256_sign_epi8(eight, g2), d2);
            __m256i p1 = _mm256_maddubs_epi16(_mm256_abs_epi8(w1), _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)q8), w1));
            __m256i p2 = _mm256_maddubs_epi16(_mm256_abs_epi8(w2), _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(q8 + 32)), w2));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(p1, scale_pick(s16, ib)));
            acc2 = _mm256_add_epi32(acc2, _mm256_madd_epi16(p2, scale_pick(s16, ib + 1)));
        }
        const float c = (float)hsum_i32(_mm256_add_epi32(acc1, acc2)) * 0.125f;
        sumf += h2f(su) * y[i].d * c;
    }
    return sumf;
}
/* ---- dequantizers (prefill tiles): the scalar ones' products, 8 floats at a time ------------- */

/* 8 bytes (unsigned) x db, negated where sign bit j is set: (db * g) * (+-1) as in the scalar
 * code, the sign applied by flipping the sign bit (exact, -0.0 included). */
static inline void store8_signed(float *y, uint64_t g8, uint8_t signs, __m256 db) {
    __m256 v = _mm256_mul_ps(db, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(
                                     _mm_cvtsi64_si128((long long)g8))));
    const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i neg = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(signs), bits), bits);
    v = _mm256_xor_ps(v, _mm256_and_ps(_mm256_castsi256_ps(neg), _mm256_set1_ps(-0.0f)));
    _mm256_storeu_ps(y, v);
}

static void dequant_iq2_xs(const void *src, float *y, int64_t n) {
    const mx_block_iq2_xs *x = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = h2f(x[i].d);
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++) {
            const float db0 = d * (0.5f + (x[i].scales[ib32] & 0xf)) * 0.25f;
            const float db1 = d * (0.5f + (x[i].scales[ib32] >> 4)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8) {
                const uint16_t q = x[i].qs[4 * ib32 + l];
                store8_signed(y, mx_iq2xs_grid[q & 511], mx_ksigns_iq2xs[q >> 9],
                              _mm256_set1_ps(l < 2 ? db0 : db1));
            }
        }
    }
}

static void dequant_iq3_s(const void *src, float *y, int64_t n) {
    const mx_block_iq3_s *x = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = h2f(x[i].d);
        const uint8_t *qs = x[i].qs, *signs = x[i].signs;
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, qs += 8, signs += 4) {
            const int ls = ib32 % 2 ? x[i].scales[ib32 / 2] >> 4 : x[i].scales[ib32 / 2] & 0xf;
            const __m256 db = _mm256_set1_ps(d * (1 + 2 * ls));
            const uint32_t qh = x[i].qh[ib32];
            for (int l = 0; l < 4; l++, y += 8) {
                uint64_t g = (uint64_t)mx_iq3s_grid[qs[2 * l] | ((qh << (8 - 2 * l)) & 256)] |
                             (uint64_t)mx_iq3s_grid[qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256)]
                                 << 32;
                store8_signed(y, g, signs[l], db);
            }
        }
    }
}

static void dequant_iq2_xxs(const void *src, float *y, int64_t n) {
    const mx_block_iq2_xxs *x = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = h2f(x[i].d);
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++) {
            uint32_t aux[2];
            memcpy(aux, x[i].qs + 4 * ib32, sizeof aux);
            const __m256 db = _mm256_set1_ps(d * (0.5f + (aux[1] >> 28)) * 0.25f);
            for (int l = 0; l < 4; l++, y += 8)
                store8_signed(y, mx_iq2xxs_grid[(aux[0] >> (8 * l)) & 0xff],
                              mx_ksigns_iq2xs[(aux[1] >> (7 * l)) & 127], db);
        }
    }
}

static void dequant_iq2_s(const void *src, float *y, int64_t n) {
    const mx_block_iq2_s *x = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = h2f(x[i].d);
        const uint8_t *qs = x[i].qs, *signs = x[i].qs + MX_QK_K / 8;
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, qs += 4, signs += 4) {
            const float db0 = d * (0.5f + (x[i].scales[ib32] & 0xf)) * 0.25f;
            const float db1 = d * (0.5f + (x[i].scales[ib32] >> 4)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8)
                store8_signed(y, mx_iq2s_grid[qs[l] | ((x[i].qh[ib32] << (8 - 2 * l)) & 0x300)],
                              signs[l], _mm256_set1_ps(l < 2 ? db0 : db1));
        }
    }
}

static void dequant_iq3_xxs(const void *src, float *y, int64_t n) {
    const mx_block_iq3_xxs *x = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = h2f(x[i].d);
        const uint8_t *qs = x[i].qs, *sas = x[i].qs + MX_QK_K / 4;
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, qs += 8) {
            uint32_t aux;
            memcpy(&aux, sas + 4 * ib32, sizeof aux);
            const __m256 db = _mm256_set1_ps(d * (0.5f + (aux >> 28)) * 0.5f);
            for (int l = 0; l < 4; l++, y += 8)
                store8_signed(y, (uint64_t)mx_iq3xxs_grid[qs[2 * l]] |
                                     (uint64_t)mx_iq3xxs_grid[qs[2 * l + 1]] << 32,
                              mx_ksigns_iq2xs[(aux >> (7 * l)) & 127], db);
        }
    }
}

/* 8 signed grid bytes (-1/0/+1) plus the shift, times dl: (g + delta) is exact, then one
 * rounding in the product, as the scalar dequantizer. */
static inline void store8_iq1(float *y, uint64_t g8, float delta, float dl) {
    __m256 v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_cvtsi64_si128((long long)g8)));
    _mm256_storeu_ps(y, _mm256_mul_ps(_mm256_set1_ps(dl),
                                      _mm256_add_ps(v, _mm256_set1_ps(delta))));
}

static void dequant_iq1_s(const void *src, float *y, int64_t n) {
    const mx_block_iq1_s *x = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = h2f(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < MX_QK_K / 32; ib++, qs += 4) {
            const uint16_t qh = x[i].qh[ib];
            const float dl = d * (2 * ((qh >> 12) & 7) + 1);
            const float delta = qh & 0x8000 ? -MX_IQ1_DELTA : MX_IQ1_DELTA;
            for (int l = 0; l < 4; l++, y += 8)
                store8_iq1(y, mx_iq1s_grid[qs[l] | (((qh >> (3 * l)) & 7) << 8)], delta, dl);
        }
    }
}

static void dequant_iq1_m(const void *src, float *y, int64_t n) {
    const mx_block_iq1_m *x = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        uint16_t sc[4];
        memcpy(sc, x[i].scales, sizeof sc);
        const uint16_t su = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                       ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
        const float d = h2f(su);
        const uint8_t *qs = x[i].qs, *qh = x[i].qh;
        for (int ib = 0; ib < MX_QK_K / 32; ib++, qs += 4, qh += 2) {
            const float dl1 = d * (2 * ((sc[ib / 2] >> (6 * (ib % 2) + 0)) & 0x7) + 1);
            const float dl2 = d * (2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 0x7) + 1);
            for (int l = 0; l < 4; l++, y += 8) {
                const uint8_t h = qh[l / 2];
                const int idx = qs[l] | ((h << (l % 2 ? 4 : 8)) & 0x700);
                const float delta = h & (l % 2 ? 0x80 : 0x08) ? -MX_IQ1_DELTA : MX_IQ1_DELTA;
                store8_iq1(y, mx_iq1s_grid[idx], delta, l < 2 ? dl1 : dl2);
            }
        }
    }
}

/* 32 IQ4 values times dl: levels widened to int32, converted, multiplied (exact as scalar). */
static inline void store32_iq4(float *y, const uint8_t *qs, __m256i tbl, __m256 dl) {
    __m256i v = iq4_values32(qs, tbl);
    __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
    _mm256_storeu_ps(y, _mm256_mul_ps(dl, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(dl, _mm256_cvtepi32_ps(
                                                  _mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(dl, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(dl, _mm256_cvtepi32_ps(
                                                   _mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
}

static void dequant_iq4_nl(const void *src, float *y, int64_t n) {
    const mx_block_iq4_nl *x = src;
    const __m256i tbl = iq4_table();
    for (int64_t i = 0; i < n / MX_QK4_NL; i++, y += 32)
        store32_iq4(y, x[i].qs, tbl, _mm256_set1_ps(h2f(x[i].d)));
}

static void dequant_iq4_xs(const void *src, float *y, int64_t n) {
    const mx_block_iq4_xs *x = src;
    const __m256i tbl = iq4_table();
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < MX_QK_K / 32; ib++, y += 32) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) |
                           (((x[i].scales_h >> 2 * ib) & 3) << 4);
            store32_iq4(y, x[i].qs + 16 * ib, tbl, _mm256_set1_ps(d * (ls - 32)));
        }
    }
}

/* ---- 8-row GEMM tiles of the repacked IQ4_XS / IQ4_NL layouts (kernels_iq.h) ----------------- */

/* The signed IQ4 levels of one 32-byte chunk of 8 rows: low and high nibbles. */
static inline void iq4x8_levels(const uint8_t *qs, __m256i tbl, __m256i *lo, __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256i v = _mm256_loadu_si256((const __m256i *)qs);
    *lo = _mm256_shuffle_epi8(tbl, _mm256_and_si256(v, m4));
    *hi = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
}

/* Per row lane: w (signed levels, 4 per row) times 4 broadcast activation bytes, as two int16
 * pair sums (|w| <= 127, |x| <= 127: no saturation), madd with m (one int16 per pair). */
static inline __m256i x8_dot4(__m256i w, __m256i wabs, const int8_t *x, __m256i m) {
    int32_t v;
    memcpy(&v, x, 4);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(wabs, _mm256_sign_epi8(_mm256_set1_epi32(v), w)),
                             m);
}

/* As the VNNI tile of kernels_iq_avx512.c, on AVX2: maddubs(|w|, sign(x, w)) per 4 values and
 * row, madd with the row's scale ls - 32 (both int16 halves of its lane), so the integer sums and
 * the float steps are the scalar vec_dot's (bit-equal columns). */
static inline __attribute__((always_inline)) void
gemm_iq4_xsx8_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
                 size_t ldo) {
    const mx_block_iq4_xsx8 *a = w;
    const int64_t nb = n / MX_QK_K;
    const __m256i tbl = iq4_table(), m3 = _mm256_set1_epi32(3), mf = _mm256_set1_epi32(0xf),
                  k32 = _mm256_set1_epi32(32), lo16 = _mm256_set1_epi32(0xffff);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    const mx_block_q8_K *xb[4];
    for (int c = 0; c < NC; c++)
        xb[c] = (const mx_block_q8_K *)((const char *)xq + (size_t)c * xq_row);
    for (int64_t b = 0; b < nb; b++) {
        const mx_block_iq4_xsx8 *blk = &a[b];
        const __m256i sl = _mm256_loadu_si256((const __m256i *)blk->scales_l);
        const __m256i sh = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)blk->scales_h));
        __m256i isum[4];
        for (int c = 0; c < NC; c++)
            isum[c] = _mm256_setzero_si256();
        for (int ib = 0; ib < MX_QK_K / 32; ib++) {
            __m256i ls = _mm256_or_si256(
                _mm256_and_si256(_mm256_srl_epi32(sl, _mm_cvtsi32_si128(4 * ib)), mf),
                _mm256_slli_epi32(
                    _mm256_and_si256(_mm256_srl_epi32(sh, _mm_cvtsi32_si128(2 * ib)), m3), 4));
            ls = _mm256_sub_epi32(ls, k32);
            const __m256i ls16 = _mm256_or_si256(_mm256_and_si256(ls, lo16),
                                                 _mm256_slli_epi32(ls, 16));
            __m256i lo[4], hi[4], loa[4], hia[4];
            for (int j = 0; j < 4; j++) {
                iq4x8_levels(blk->qs[ib][j], tbl, &lo[j], &hi[j]);
                loa[j] = _mm256_sign_epi8(lo[j], lo[j]);
                hia[j] = _mm256_sign_epi8(hi[j], hi[j]);
            }
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *x = xb[c][b].qs + 32 * ib;
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    isum[c] = _mm256_add_epi32(isum[c], x8_dot4(lo[j], loa[j], x + 4 * j, ls16));
                    isum[c] = _mm256_add_epi32(isum[c],
                                               x8_dot4(hi[j], hia[j], x + 16 + 4 * j, ls16));
                }
            }
        }
        const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk->d));
        for (int c = 0; c < NC; c++)
            acc[c] = _mm256_add_ps(acc[c],
                                   _mm256_mul_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb[c][b].d)),
                                                 _mm256_cvtepi32_ps(isum[c])));
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, acc[c]);
}

MX_X8_ENTRY(gemm_iq4_xsx8, gemm_iq4_xsx8_nc)

/* IQ4_NL: per 32-value block the 8 rows' isum (madd with ones), then d_x x d_w x isum added per
 * block in float, the scalar vec_dot_iq4_nl's order. */
static inline __attribute__((always_inline)) void
gemm_iq4_nlx8_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
                 size_t ldo) {
    const mx_block_iq4_nlx8 *a = w;
    const int64_t nb = n / MX_QK4_NL;
    const __m256i tbl = iq4_table(), ones = _mm256_set1_epi16(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    const mx_block_q8_0 *xb[4];
    for (int c = 0; c < NC; c++)
        xb[c] = (const mx_block_q8_0 *)((const char *)xq + (size_t)c * xq_row);
    for (int64_t b = 0; b < nb; b++) {
        __m256i lo[4], hi[4], loa[4], hia[4];
        for (int j = 0; j < 4; j++) {
            iq4x8_levels(a[b].qs[j], tbl, &lo[j], &hi[j]);
            loa[j] = _mm256_sign_epi8(lo[j], lo[j]);
            hia[j] = _mm256_sign_epi8(hi[j], hi[j]);
        }
        const __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)a[b].d));
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const int8_t *x = xb[c][b].qs;
            __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                s = _mm256_add_epi32(s, x8_dot4(lo[j], loa[j], x + 4 * j, ones));
                s = _mm256_add_epi32(s, x8_dot4(hi[j], hia[j], x + 16 + 4 * j, ones));
            }
            const __m256 d = _mm256_mul_ps(_mm256_set1_ps(h2f(xb[c][b].d)), wd);
            acc[c] = _mm256_add_ps(acc[c], _mm256_mul_ps(d, _mm256_cvtepi32_ps(s)));
        }
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, acc[c]);
}

MX_X8_ENTRY(gemm_iq4_nlx8, gemm_iq4_nlx8_nc)

void mx_cpu_kernels_iq_avx2(struct mx_cpu_kernels *k) {
    k->vec_dot[MX_TYPE_IQ4_NL] = vec_dot_iq4_nl;
    k->vec_dot[MX_TYPE_IQ4_XS] = vec_dot_iq4_xs;
    k->vec_dot[MX_TYPE_IQ2_XS] = vec_dot_iq2_xs;
    k->vec_dot[MX_TYPE_IQ3_S] = vec_dot_iq3_s;
    k->vec_dot[MX_TYPE_IQ2_XXS] = vec_dot_iq2_xxs;
    k->vec_dot[MX_TYPE_IQ2_S] = vec_dot_iq2_s;
    k->vec_dot[MX_TYPE_IQ3_XXS] = vec_dot_iq3_xxs;
    k->vec_dot[MX_TYPE_IQ1_S] = vec_dot_iq1_s;
    k->vec_dot[MX_TYPE_IQ1_M] = vec_dot_iq1_m;
    k->dequant[MX_TYPE_IQ4_NL] = dequant_iq4_nl;
    k->dequant[MX_TYPE_IQ4_XS] = dequant_iq4_xs;
    k->dequant[MX_TYPE_IQ2_XS] = dequant_iq2_xs;
    k->dequant[MX_TYPE_IQ3_S] = dequant_iq3_s;
    k->dequant[MX_TYPE_IQ2_XXS] = dequant_iq2_xxs;
    k->dequant[MX_TYPE_IQ2_S] = dequant_iq2_s;
    k->dequant[MX_TYPE_IQ3_XXS] = dequant_iq3_xxs;
    k->dequant[MX_TYPE_IQ1_S] = dequant_iq1_s;
    k->dequant[MX_TYPE_IQ1_M] = dequant_iq1_m;
    k->gemm_x8[MX_LAYOUT_IQ4_XSX8] = gemm_iq4_xsx8;
    k->gemm_x8[MX_LAYOUT_IQ4_NLX8] = gemm_iq4_nlx8;
}
