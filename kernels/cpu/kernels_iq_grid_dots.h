/* kernels_iq_grid_dots.h - the AVX2 vec_dots of the grid IQ types (IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS, IQ3_S) against Q8_K, included by kernels_iq_avx2.c, which defines
 *   float h2f(mx_half)            the fp16 scale as float;
 *   int32_t hsum_i32(__m256i)     the exact sum of 8 int32 lanes;
 *   __m256i sign_mask(const uint8_t *)  32 bytes, 0xff where the 32 sign bits (one per value,
 *                                 4 bytes read from memory) are set.
 * (kernels_iq_avx512.c has its own forms, which build the super-block's indices, signs and
 * scales in vectors and apply the signs by masked subtracts.)
 *
 * Each sums a super-block in exact integers and adds d_w x d_x x isum in the scalar kernel's
 * order (kernels_iq.h), so they equal kernels_iq.c bit for bit (tests/test_quant_iq.c); the
 * integer order inside a super-block is free.
 *
 * Workload: decode, one activation row (L1) against each weight row. At 2-3 bits per weight the
 * dot is bound by the instructions that rebuild 8 grid bytes per index, not by DRAM, so every
 * step counts (bench_iq, tests/bench/vs_llama.sh on bench-moe-TYPE): two 32-value sub-blocks per
 * step with two accumulators; grid entries gathered by scalar loads into a vector (faster on
 * Zen 3 than vpgather); the 7-bit sign indices of IQ2_XXS/IQ3_XXS looked up as 8 ready +-1
 * bytes (even_signs, 1 KiB); IQ2_XS's 7-bit sign fields and its indices taken 16 at a time in
 * vectors (parity by a nibble table); explicit sign bytes (IQ2_S, IQ3_S) expanded by a shuffle
 * and applied as (x ^ m) - m; the 4-bit scales of a super-block unpacked once and picked per
 * sub-block by a byte shuffle. Techniques as ggml's and ik_llama.cpp's x86 kernels (read, not
 * copied).
 */
#ifndef MX_KERNELS_IQ_GRID_DOTS_H
#define MX_KERNELS_IQ_GRID_DOTS_H

/* ---- the even-parity sign table ------------------------------------------------------------ */

/* even_signs[s]: the 8 signs of a 7-bit sign field s of IQ2_XXS / IQ3_XXS as bytes +1 / -1
 * (byte j: bit j of s; byte 7: the parity of s, so an even count is negative - ggml's
 * ksigns_iq2xs[s] bit by bit), ready for _mm256_sign_epi8. Built by the preprocessor. */
#define MX_ES_B(s, j) ((uint64_t)((((s) >> (j)) & 1) ? 0xff : 0x01) << (8 * (j)))
#define MX_ES_PAR(s) (((s) ^ (s) >> 1 ^ (s) >> 2 ^ (s) >> 3 ^ (s) >> 4 ^ (s) >> 5 ^ (s) >> 6) & 1)
#define MX_ES(s)                                                                                 \
    (MX_ES_B(s, 0) | MX_ES_B(s, 1) | MX_ES_B(s, 2) | MX_ES_B(s, 3) | MX_ES_B(s, 4) |            \
     MX_ES_B(s, 5) | MX_ES_B(s, 6) | ((uint64_t)(MX_ES_PAR(s) ? 0xff : 0x01) << 56))
#define MX_ES4(s) MX_ES(s), MX_ES((s) + 1), MX_ES((s) + 2), MX_ES((s) + 3)
#define MX_ES16(s) MX_ES4(s), MX_ES4((s) + 4), MX_ES4((s) + 8), MX_ES4((s) + 12)
static const uint64_t even_signs[128] = {MX_ES16(0),  MX_ES16(16), MX_ES16(32), MX_ES16(48),
                                         MX_ES16(64), MX_ES16(80), MX_ES16(96), MX_ES16(112)};
#undef MX_ES16
#undef MX_ES4
#undef MX_ES
#undef MX_ES_PAR
#undef MX_ES_B

/* The +-1 bytes of the 4 sign fields (7 bits each, from bit 0) of a 28-bit word. */
static inline __m256i even_signs4(uint32_t a) {
    return _mm256_set_epi64x((long long)even_signs[(a >> 21) & 127],
                             (long long)even_signs[(a >> 14) & 127],
                             (long long)even_signs[(a >> 7) & 127], (long long)even_signs[a & 127]);
}

/* x negated where the byte mask m is 0xff: (x ^ m) - m (x = -128 never occurs: Q8_K is
 * symmetric in -127..127). */
static inline __m256i negate_where(__m256i x, __m256i m) {
    return _mm256_sub_epi8(_mm256_xor_si256(x, m), m);
}

/* The 16 scales 2s + 1 of a super-block's 8 scale bytes (two 4-bit scales each: low nibble for
 * values 0-15 of sub-block ib, high for 16-31) as int16, low 128-bit lane the low nibbles, high
 * lane the high ones, element ib in each; scale_pick(v, ib) broadcasts element ib within each
 * lane, so madd gives each 16-value half its own scale. */
static inline __m256i scales16_nibbles(const uint8_t *scales) {
    uint64_t s;
    memcpy(&s, scales, 8);
    const uint64_t m4 = 0x0f0f0f0f0f0f0f0fULL;
    __m128i v = _mm_set_epi64x((long long)((s >> 4) & m4), (long long)(s & m4));
    v = _mm_add_epi8(_mm_add_epi8(v, v), _mm_set1_epi8(1));
    /* elements 0-7 low nibbles, 8-15 high nibbles: lane 0 = lows, lane 1 = highs */
    return _mm256_cvtepu8_epi16(v);
}

static inline __m256i scale_pick(__m256i sc, int ib) {
    return _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)(0x0100 + 0x0202 * ib)));
}

/* ---- IQ2_XXS ------------------------------------------------------------------------------- */

/* Per 32 values: 4 grid bytes (8 unsigned values each, <= 43) and one word of 4 x 7 sign bits +
 * a 4-bit scale. Entries gathered into a vector, the activations given the signs, maddubs, madd
 * with 2s + 1 (one per 32). */
static float vec_dot_iq2_xxs(int64_t n, const void *w, const void *xq) {
    const mx_block_iq2_xxs *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint8_t *q2 = (const uint8_t *)x[i].qs;
        const int8_t *q8 = y[i].qs;
        __m256i acc1 = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32 += 2, q2 += 16, q8 += 64) {
            uint32_t a[4];
            memcpy(a, q2, sizeof a);
            __m256i g1 = _mm256_set_epi64x(
                (long long)mx_iq2xxs_grid[q2[3]], (long long)mx_iq2xxs_grid[q2[2]],
                (long long)mx_iq2xxs_grid[q2[1]], (long long)mx_iq2xxs_grid[q2[0]]);
            __m256i g2 = _mm256_set_epi64x(
                (long long)mx_iq2xxs_grid[q2[11]], (long long)mx_iq2xxs_grid[q2[10]],
                (long long)mx_iq2xxs_grid[q2[9]], (long long)mx_iq2xxs_grid[q2[8]]);
            __m256i x1 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)q8),
                                          even_signs4(a[1]));
            __m256i x2 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(q8 + 32)),
                                          even_signs4(a[3]));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(g1, x1),
                                                            _mm256_set1_epi16(
                                                                (short)(2 * (a[1] >> 28) + 1))));
            acc2 = _mm256_add_epi32(acc2, _mm256_madd_epi16(_mm256_maddubs_epi16(g2, x2),
                                                            _mm256_set1_epi16(
                                                                (short)(2 * (a[3] >> 28) + 1))));
        }
        const float d = h2f(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(_mm256_add_epi32(acc1, acc2));
    }
    return 0.125f * sumf;
}

/* ---- IQ2_XS -------------------------------------------------------------------------------- */

/* Per 128 values: the 16 words (9-bit grid index, 7-bit sign field) in one vector: indices
 * masked and stored for the scalar grid loads; the sign fields completed with their parity bit
 * (parity of bits 9-15 = parity of the nibble (bits 9-12) ^ (bits 13-15), from a 16-entry
 * table) and expanded to byte masks by a shuffle per 32 values; maddubs, madd with the two
 * 4-bit scales of each 32 (scales16_nibbles). */
static float vec_dot_iq2_xs(int64_t n, const void *w, const void *xq) {
    const mx_block_iq2_xs *x = w;
    const mx_block_q8_K *y = xq;
    const __m256i m511 = _mm256_set1_epi16(511);
    const __m256i odd = _mm256_setr_epi8(0, -128, -128, 0, -128, 0, 0, -128, -128, 0, 0, -128, 0,
                                         -128, -128, 0, 0, -128, -128, 0, -128, 0, 0, -128, -128,
                                         0, 0, -128, 0, -128, -128, 0);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    /* the sign bytes sit in the low byte of each 16-bit word: words 0-3 (bytes 0, 2, 4, 6) are
     * the first 32 values' 4 entries, words 4-7 (bytes 8..14) the next 32 */
    const __m256i sel0 = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 4, 4, 4,
                                          4, 4, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 6);
    const __m256i sel1 = _mm256_add_epi8(sel0, _mm256_set1_epi8(8));
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint16_t *q2 = x[i].qs;
        const int8_t *q8 = y[i].qs;
        const __m256i sc = scales16_nibbles(x[i].scales);
        __m256i acc1 = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32 += 4, q2 += 16, q8 += 128) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)q2);
            uint16_t idx[16];
            _mm256_storeu_si256((__m256i *)idx, _mm256_and_si256(q, m511));
            const __m256i f7 = _mm256_srli_epi16(q, 9);
            const __m256i s8 = _mm256_or_si256(
                f7, _mm256_shuffle_epi8(odd, _mm256_xor_si256(f7, _mm256_srli_epi16(q, 13))));
            /* both lanes = words 0-7 (values 0-63), then words 8-15 (values 64-127) */
            const __m256i slo = _mm256_permute2x128_si256(s8, s8, 0x00);
            const __m256i shi = _mm256_permute2x128_si256(s8, s8, 0x11);
            __m256i m[4];
            m[0] = _mm256_shuffle_epi8(slo, sel0);
            m[1] = _mm256_shuffle_epi8(slo, sel1);
            m[2] = _mm256_shuffle_epi8(shi, sel0);
            m[3] = _mm256_shuffle_epi8(shi, sel1);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) {
                const __m256i mk = _mm256_cmpeq_epi8(_mm256_and_si256(m[k], bits), bits);
                const __m256i xk =
                    negate_where(_mm256_loadu_si256((const __m256i *)(q8 + 32 * k)), mk);
                const __m256i g = _mm256_set_epi64x((long long)mx_iq2xs_grid[idx[4 * k + 3]],
                                                    (long long)mx_iq2xs_grid[idx[4 * k + 2]],
                                                    (long long)mx_iq2xs_grid[idx[4 * k + 1]],
                                                    (long long)mx_iq2xs_grid[idx[4 * k + 0]]);
                const __m256i p =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(g, xk), scale_pick(sc, ib32 + k));
                if (k % 2)
                    acc2 = _mm256_add_epi32(acc2, p);
                else
                    acc1 = _mm256_add_epi32(acc1, p);
            }
        }
        const float d = h2f(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(_mm256_add_epi32(acc1, acc2));
    }
    return 0.125f * sumf;
}

/* ---- IQ2_S --------------------------------------------------------------------------------- */

/* Per 64 values: 8 grid indices of 10 bits (a byte of qs + 2 bits of a qh byte; built in
 * scalar registers, which measured faster than building them in a vector and storing it), the
 * 4 + 4 sign bytes as stored, two 4-bit scales per 32 (as IQ2_XS). */
static float vec_dot_iq2_s(int64_t n, const void *w, const void *xq) {
    const mx_block_iq2_s *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint8_t *qs = x[i].qs, *signs = x[i].qs + MX_QK_K / 8, *qh = x[i].qh;
        const int8_t *q8 = y[i].qs;
        const __m256i sc = scales16_nibbles(x[i].scales);
        __m256i acc1 = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32 += 2, qs += 8, signs += 8, q8 += 64) {
            const uint32_t h0 = qh[ib32], h1 = qh[ib32 + 1];
            __m256i g1 = _mm256_set_epi64x((long long)mx_iq2s_grid[qs[3] | ((h0 << 2) & 0x300)],
                                           (long long)mx_iq2s_grid[qs[2] | ((h0 << 4) & 0x300)],
                                           (long long)mx_iq2s_grid[qs[1] | ((h0 << 6) & 0x300)],
                                           (long long)mx_iq2s_grid[qs[0] | ((h0 << 8) & 0x300)]);
            __m256i g2 = _mm256_set_epi64x((long long)mx_iq2s_grid[qs[7] | ((h1 << 2) & 0x300)],
                                           (long long)mx_iq2s_grid[qs[6] | ((h1 << 4) & 0x300)],
                                           (long long)mx_iq2s_grid[qs[5] | ((h1 << 6) & 0x300)],
                                           (long long)mx_iq2s_grid[qs[4] | ((h1 << 8) & 0x300)]);
            __m256i x1 = negate_where(_mm256_loadu_si256((const __m256i *)q8), sign_mask(signs));
            __m256i x2 = negate_where(_mm256_loadu_si256((const __m256i *)(q8 + 32)),
                                      sign_mask(signs + 4));
            acc1 = _mm256_add_epi32(
                acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(g1, x1), scale_pick(sc, ib32)));
            acc2 = _mm256_add_epi32(
                acc2, _mm256_madd_epi16(_mm256_maddubs_epi16(g2, x2), scale_pick(sc, ib32 + 1)));
        }
        const float d = h2f(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(_mm256_add_epi32(acc1, acc2));
    }
    return 0.125f * sumf;
}

/* ---- IQ3_XXS ------------------------------------------------------------------------------- */

/* Per 32 values: 8 grid bytes (4 unsigned values each, <= 62) and one word of 4 x 7 sign bits
 * + a 4-bit scale (the words follow the 64 grid bytes). */
static float vec_dot_iq3_xxs(int64_t n, const void *w, const void *xq) {
    const mx_block_iq3_xxs *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint8_t *q3 = x[i].qs, *gas = x[i].qs + MX_QK_K / 4;
        const int8_t *q8 = y[i].qs;
        __m256i acc1 = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32 += 2, q3 += 16, gas += 8, q8 += 64) {
            uint32_t a[2];
            memcpy(a, gas, sizeof a);
            __m256i g1 = _mm256_set_epi32(
                (int)mx_iq3xxs_grid[q3[7]], (int)mx_iq3xxs_grid[q3[6]],
                (int)mx_iq3xxs_grid[q3[5]], (int)mx_iq3xxs_grid[q3[4]],
                (int)mx_iq3xxs_grid[q3[3]], (int)mx_iq3xxs_grid[q3[2]],
                (int)mx_iq3xxs_grid[q3[1]], (int)mx_iq3xxs_grid[q3[0]]);
            __m256i g2 = _mm256_set_epi32(
                (int)mx_iq3xxs_grid[q3[15]], (int)mx_iq3xxs_grid[q3[14]],
                (int)mx_iq3xxs_grid[q3[13]], (int)mx_iq3xxs_grid[q3[12]],
                (int)mx_iq3xxs_grid[q3[11]], (int)mx_iq3xxs_grid[q3[10]],
                (int)mx_iq3xxs_grid[q3[9]], (int)mx_iq3xxs_grid[q3[8]]);
            __m256i x1 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)q8),
                                          even_signs4(a[0]));
            __m256i x2 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(q8 + 32)),
                                          even_signs4(a[1]));
            acc1 = _mm256_add_epi32(acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(g1, x1),
                                                            _mm256_set1_epi16(
                                                                (short)(2 * (a[0] >> 28) + 1))));
            acc2 = _mm256_add_epi32(acc2, _mm256_madd_epi16(_mm256_maddubs_epi16(g2, x2),
                                                            _mm256_set1_epi16(
                                                                (short)(2 * (a[1] >> 28) + 1))));
        }
        const float d = h2f(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(_mm256_add_epi32(acc1, acc2));
    }
    return 0.25f * sumf;
}

/* ---- IQ3_S --------------------------------------------------------------------------------- */

/* Per 64 values: 16 grid indices of 9 bits (a byte of qs + bit j of the sub-block's qh byte,
 * built in scalar registers; 4 unsigned values each, <= 15), the 4 + 4 sign bytes, one 4-bit
 * scale per 32 (the two nibbles of one scale byte). */
static float vec_dot_iq3_s(int64_t n, const void *w, const void *xq) {
    const mx_block_iq3_s *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const uint8_t *qs = x[i].qs, *signs = x[i].signs;
        const int8_t *q8 = y[i].qs;
        __m256i acc1 = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32 += 2, qs += 16, signs += 8, q8 += 64) {
            const uint32_t h0 = x[i].qh[ib32], h1 = x[i].qh[ib32 + 1];
            __m256i g1 = _mm256_set_epi32((int)mx_iq3s_grid[qs[7] | ((h0 << 1) & 256)],
                                          (int)mx_iq3s_grid[qs[6] | ((h0 << 2) & 256)],
                                          (int)mx_iq3s_grid[qs[5] | ((h0 << 3) & 256)],
                                          (int)mx_iq3s_grid[qs[4] | ((h0 << 4) & 256)],
                                          (int)mx_iq3s_grid[qs[3] | ((h0 << 5) & 256)],
                                          (int)mx_iq3s_grid[qs[2] | ((h0 << 6) & 256)],
                                          (int)mx_iq3s_grid[qs[1] | ((h0 << 7) & 256)],
                                          (int)mx_iq3s_grid[qs[0] | ((h0 << 8) & 256)]);
            __m256i g2 = _mm256_set_epi32((int)mx_iq3s_grid[qs[15] | ((h1 << 1) & 256)],
                                          (int)mx_iq3s_grid[qs[14] | ((h1 << 2) & 256)],
                                          (int)mx_iq3s_grid[qs[13] | ((h1 << 3) & 256)],
                                          (int)mx_iq3s_grid[qs[12] | ((h1 << 4) & 256)],
                                          (int)mx_iq3s_grid[qs[11] | ((h1 << 5) & 256)],
                                          (int)mx_iq3s_grid[qs[10] | ((h1 << 6) & 256)],
                                          (int)mx_iq3s_grid[qs[9] | ((h1 << 7) & 256)],
                                          (int)mx_iq3s_grid[qs[8] | ((h1 << 8) & 256)]);
            __m256i x1 = negate_where(_mm256_loadu_si256((const __m256i *)q8), sign_mask(signs));
            __m256i x2 = negate_where(_mm256_loadu_si256((const __m256i *)(q8 + 32)),
                                      sign_mask(signs + 4));
            const int sb = x[i].scales[ib32 / 2];
            acc1 = _mm256_add_epi32(
                acc1, _mm256_madd_epi16(_mm256_maddubs_epi16(g1, x1),
                                        _mm256_set1_epi16((short)(2 * (sb & 0xf) + 1))));
            acc2 = _mm256_add_epi32(
                acc2, _mm256_madd_epi16(_mm256_maddubs_epi16(g2, x2),
                                        _mm256_set1_epi16((short)(2 * (sb >> 4) + 1))));
        }
        const float d = h2f(x[i].d) * y[i].d;
        sumf += d * (float)hsum_i32(_mm256_add_epi32(acc1, acc2));
    }
    return sumf;
}

#endif
