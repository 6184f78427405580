/* kernels_iq_avx512.c - AVX-512 (BW + VL, 256-bit registers) vec_dots of the IQ types with
 * sign bits: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S.
 *
 * Why: in the AVX2 kernels (kernels_iq_avx2.c) the grid signs cost 5 vector ops per 32 values
 * (broadcast bytes to lanes, test the bits, make +-1, apply). With AVX-512BW the 32 sign bits
 * are a mask register as they are stored, and one masked subtract negates the activations.
 * The integer sums and the float accumulation are those of the scalar kernels, so results are
 * bit-identical (tests/test_quant_iq.c). VNNI's vpdpbusd does not help here: the 4-bit scales
 * change every 16 values, and maddubs + madd with the scale is already 2 ops.
 *
 * Compiled with the AVX-512 flags of kernels/cpu/cpu.am; installed by kernels.c only when the
 * CPU has AVX-512 F/VL/BW/VNNI (the AVX-512 level).
 */
#include "kernels/cpu/kernels_iq.h"

#include <immintrin.h>
#include <string.h>

#include "core/base/quant_iq.h"
#include "core/base/util.h"

static inline int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* 32 activations negated where the 32 sign bits say so. */
static inline __m256i apply_signs(const int8_t *q8, uint32_t s32) {
    __m256i y = _mm256_loadu_si256((const __m256i *)q8);
    return _mm256_mask_sub_epi8(y, (__mmask32)s32, _mm256_setzero_si256(), y);
}

static float vec_dot_iq2_xs(int64_t n, const void *w, const void *xq) {
    const mx_block_iq2_xs *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint16_t *q2 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        __m256i acc = _mm256_setzero_si256();
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, q2 += 4, q8 += 32) {
            __m256i g = _mm256_set_epi64x((long long)mx_iq2xs_grid[q2[3] & 511],
                                          (long long)mx_iq2xs_grid[q2[2] & 511],
                                          (long long)mx_iq2xs_grid[q2[1] & 511],
                                          (long long)mx_iq2xs_grid[q2[0] & 511]);
            uint32_t s4 = (uint32_t)mx_ksigns_iq2xs[q2[0] >> 9] |
                          (uint32_t)mx_ksigns_iq2xs[q2[1] >> 9] << 8 |
                          (uint32_t)mx_ksigns_iq2xs[q2[2] >> 9] << 16 |
                          (uint32_t)mx_ksigns_iq2xs[q2[3] >> 9] << 24;
            __m256i p = _mm256_maddubs_epi16(g, apply_signs(q8, s4));
            const uint8_t sc = x[i].scales[ib32];
            __m256i scv = _mm256_set_m128i(_mm_set1_epi16((short)(2 * (sc >> 4) + 1)),
                                           _mm_set1_epi16((short)(2 * (sc & 0xf) + 1)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scv));
        }
        const float d = _cvtsh_ss(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(acc);
    }
    return 0.125f * sumf;
}

static float vec_dot_iq3_s(int64_t n, const void *w, const void *xq) {
    const mx_block_iq3_s *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint8_t *qs = x[i].qs, *signs = x[i].signs;
        const int8_t *q8 = y[i].qs;
        __m256i acc = _mm256_setzero_si256();
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, qs += 8, signs += 4, q8 += 32) {
            const uint32_t qh = x[i].qh[ib32];
            __m256i g = _mm256_set_epi32(
                (int)mx_iq3s_grid[qs[7] | ((qh << 1) & 256)],
                (int)mx_iq3s_grid[qs[6] | ((qh << 2) & 256)],
                (int)mx_iq3s_grid[qs[5] | ((qh << 3) & 256)],
                (int)mx_iq3s_grid[qs[4] | ((qh << 4) & 256)],
                (int)mx_iq3s_grid[qs[3] | ((qh << 5) & 256)],
                (int)mx_iq3s_grid[qs[2] | ((qh << 6) & 256)],
                (int)mx_iq3s_grid[qs[1] | ((qh << 7) & 256)],
                (int)mx_iq3s_grid[qs[0] | ((qh << 8) & 256)]);
            uint32_t s4;
            memcpy(&s4, signs, 4);
            __m256i p = _mm256_maddubs_epi16(g, apply_signs(q8, s4));
            const int ls = ib32 % 2 ? x[i].scales[ib32 / 2] >> 4 : x[i].scales[ib32 / 2] & 0xf;
            acc = _mm256_add_epi32(acc,
                                   _mm256_madd_epi16(p, _mm256_set1_epi16((short)(2 * ls + 1))));
        }
        const float d = _cvtsh_ss(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(acc);
    }
    return sumf;
}

/* IQ2_XXS: as the AVX2 kernel (one 4-bit scale per 32 values), signs by mask. */
static float vec_dot_iq2_xxs(int64_t n, const void *w, const void *xq) {
    const mx_block_iq2_xxs *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        __m256i acc = _mm256_setzero_si256();
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, q8 += 32) {
            uint32_t aux[2];
            memcpy(aux, x[i].qs + 4 * ib32, sizeof aux);
            const uint8_t *g8 = (const uint8_t *)aux;
            __m256i g = _mm256_set_epi64x(
                (long long)mx_iq2xxs_grid[g8[3]], (long long)mx_iq2xxs_grid[g8[2]],
                (long long)mx_iq2xxs_grid[g8[1]], (long long)mx_iq2xxs_grid[g8[0]]);
            uint32_t s4 = (uint32_t)mx_ksigns_iq2xs[aux[1] & 127] |
                          (uint32_t)mx_ksigns_iq2xs[(aux[1] >> 7) & 127] << 8 |
                          (uint32_t)mx_ksigns_iq2xs[(aux[1] >> 14) & 127] << 16 |
                          (uint32_t)mx_ksigns_iq2xs[(aux[1] >> 21) & 127] << 24;
            __m256i p = _mm256_maddubs_epi16(g, apply_signs(q8, s4));
            acc = _mm256_add_epi32(
                acc, _mm256_madd_epi16(p, _mm256_set1_epi16((short)(2 * (aux[1] >> 28) + 1))));
        }
        const float d = _cvtsh_ss(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(acc);
    }
    return 0.125f * sumf;
}

/* IQ2_S: 10-bit grid indices, the sign bytes used as stored (one mask of 32 bits). */
static float vec_dot_iq2_s(int64_t n, const void *w, const void *xq) {
    const mx_block_iq2_s *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint8_t *qs = x[i].qs, *signs = x[i].qs + MX_QK_K / 8;
        const int8_t *q8 = y[i].qs;
        __m256i acc = _mm256_setzero_si256();
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, qs += 4, signs += 4, q8 += 32) {
            const uint32_t qh = x[i].qh[ib32];
            __m256i g = _mm256_set_epi64x((long long)mx_iq2s_grid[qs[3] | ((qh << 2) & 0x300)],
                                          (long long)mx_iq2s_grid[qs[2] | ((qh << 4) & 0x300)],
                                          (long long)mx_iq2s_grid[qs[1] | ((qh << 6) & 0x300)],
                                          (long long)mx_iq2s_grid[qs[0] | ((qh << 8) & 0x300)]);
            uint32_t s4;
            memcpy(&s4, signs, 4);
            __m256i p = _mm256_maddubs_epi16(g, apply_signs(q8, s4));
            const uint8_t sc = x[i].scales[ib32];
            __m256i scv = _mm256_set_m128i(_mm_set1_epi16((short)(2 * (sc >> 4) + 1)),
                                           _mm_set1_epi16((short)(2 * (sc & 0xf) + 1)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, scv));
        }
        const float d = _cvtsh_ss(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(acc);
    }
    return 0.125f * sumf;
}

/* IQ3_XXS: 8 grid entries of 4 bytes per 32 values, 7-bit sign indices through the parity
 * table, one 4-bit scale per 32 values. */
static float vec_dot_iq3_xxs(int64_t n, const void *w, const void *xq) {
    const mx_block_iq3_xxs *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint8_t *q3 = x[i].qs, *gas = x[i].qs + MX_QK_K / 4;
        const int8_t *q8 = y[i].qs;
        __m256i acc = _mm256_setzero_si256();
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, q3 += 8, q8 += 32) {
            uint32_t aux;
            memcpy(&aux, gas + 4 * ib32, sizeof aux);
            __m256i g = _mm256_set_epi32((int)mx_iq3xxs_grid[q3[7]], (int)mx_iq3xxs_grid[q3[6]],
                                         (int)mx_iq3xxs_grid[q3[5]], (int)mx_iq3xxs_grid[q3[4]],
                                         (int)mx_iq3xxs_grid[q3[3]], (int)mx_iq3xxs_grid[q3[2]],
                                         (int)mx_iq3xxs_grid[q3[1]], (int)mx_iq3xxs_grid[q3[0]]);
            uint32_t s4 = (uint32_t)mx_ksigns_iq2xs[aux & 127] |
                          (uint32_t)mx_ksigns_iq2xs[(aux >> 7) & 127] << 8 |
                          (uint32_t)mx_ksigns_iq2xs[(aux >> 14) & 127] << 16 |
                          (uint32_t)mx_ksigns_iq2xs[(aux >> 21) & 127] << 24;
            __m256i p = _mm256_maddubs_epi16(g, apply_signs(q8, s4));
            acc = _mm256_add_epi32(
                acc, _mm256_madd_epi16(p, _mm256_set1_epi16((short)(2 * (aux >> 28) + 1))));
        }
        const float d = _cvtsh_ss(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(acc);
    }
    return 0.25f * sumf;
}

void mx_cpu_kernels_iq_avx512(struct mx_cpu_kernels *k) {
    k->vec_dot[MX_TYPE_IQ2_XS] = vec_dot_iq2_xs;
    k->vec_dot[MX_TYPE_IQ3_S] = vec_dot_iq3_s;
    k->vec_dot[MX_TYPE_IQ2_XXS] = vec_dot_iq2_xxs;
    k->vec_dot[MX_TYPE_IQ2_S] = vec_dot_iq2_s;
    k->vec_dot[MX_TYPE_IQ3_XXS] = vec_dot_iq3_xxs;
}
