/* kernels_iq_grid_dots.h - the vec_dots of the grid IQ types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S) against Q8_K, written once for any x86 target with these helpers (today
 * kernels_iq_avx2.c; kernels_iq_avx512.c has its own forms, which build the super-block's
 * indices, signs and scales in vectors); the includer defines, for its instruction set,
 *   float h2f(mx_half)                         the fp16 scale as float;
 *   int32_t hsum_i32(__m256i)                  the exact sum of 8 int32 lanes;
 *   __m256i apply_signs(const int8_t *, uint32_t)  32 activations negated where the 32 sign
 *                                              bits say so (AVX2: a shuffle-made +-1 vector and
 *                                              sign_epi8; AVX-512 BW/VL: one masked subtract).
 * Each sums a super-block in exact integers and adds d_w x d_x x isum in the scalar kernel's
 * order (kernels_iq.h), so both targets equal kernels_iq.c bit for bit (tests/test_quant_iq.c).
 * Static functions: the including file installs them in its kernel table.
 */
#ifndef MX_KERNELS_IQ_GRID_DOTS_H
#define MX_KERNELS_IQ_GRID_DOTS_H

/* ---- IQ2_XS --------------------------------------------------------------------------------- */

/* Per 32 values: 4 grid entries (8 unsigned bytes each, <= 43) gathered into a vector, the
 * activations given the grid's signs, maddubs, then madd with the two 4-bit scales 2s + 1 (one
 * per 16 values). */
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
        const float d = h2f(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(acc);
    }
    return 0.125f * sumf;
}

/* ---- IQ3_S ---------------------------------------------------------------------------------- */

/* Per 32 values: 8 grid entries (4 unsigned bytes each, <= 15; index = qs | qh bit << 8), the
 * 4 sign bytes, maddubs, madd with the 4-bit scale 2s + 1. */
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
        const float d = h2f(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(acc);
    }
    return sumf;
}

/* ---- IQ2_XXS, IQ2_S, IQ3_XXS: the grids of the other IQ2/IQ3 types ------------------------- */

/* IQ2_XXS, per 32 values: 4 grid bytes (8 unsigned values each, <= 43) and one word of 4 x 7
 * sign-index bits + a 4-bit scale. The 4 entries gathered into a vector, the activations given
 * the signs (7 bits -> 8 through the parity table), maddubs, madd with 2s + 1 (one per 32). */
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
        const float d = h2f(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(acc);
    }
    return 0.125f * sumf;
}

/* IQ2_S, per 32 values: 4 grid indices of 10 bits (a byte of qs + 2 bits of qh), 4 sign bytes
 * as stored (no parity table), two 4-bit scales (one per 16 values, as IQ2_XS). */
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
        const float d = h2f(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(acc);
    }
    return 0.125f * sumf;
}

/* IQ3_XXS, per 32 values: 8 grid bytes (4 unsigned values each, <= 62) and one word of 4 x 7
 * sign-index bits + a 4-bit scale (the words follow the 64 grid bytes). */
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
        const float d = h2f(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(acc);
    }
    return 0.25f * sumf;
}

#endif
