/* gemm_iq_expand.h - one super-block of an IQ1-IQ3 grid type expanded to signed bytes with one
 * integer scale per 16 values: the common input of the prefill tiles (gemm_iq_avx2.c,
 * gemm_iq_avx512.c).
 *
 * Why: the grid types' vec_dots do 4-8 table loads and a sign expansion per 32 values for every
 * (row, column) pair; a prefill tile expands each weight super-block once and then runs plain
 * integer dots of the expanded bytes against every column. The expansion keeps each type's
 * integer sum exactly (kernels_iq.c's arithmetic, read): for the IQ2/IQ3 types the value is the
 * grid byte with its sign, for IQ1_S/IQ1_M it is 8 x grid + shift sign (-9..9), whose sum is
 * 8 x (sumi + sumi1 / 8) of the scalar kernel, exactly representable in float (|8 x sumi| <
 * 2^22), so the float steps that follow can be the scalar kernel's own.
 *
 * Static inline with AVX2 intrinsics: included only by files built with -mavx2.
 */
#ifndef MX_GEMM_IQ_EXPAND_H
#define MX_GEMM_IQ_EXPAND_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "core/base/quant_iq.h"
#include "core/base/util.h"

/* How a type's integer sum becomes the vec_dot's float (kernels_iq.c): IQ2_*: sumf +=
 * (dw dy) isum, result x 1/8; IQ3_XXS: x 1/4; IQ3_S: x 1; IQ1_S/IQ1_M: sumf += (dw dy) x
 * (isum8 / 8), isum8 / 8 being exactly sumi + sumi1 / 8. Or, in llama.cpp's panel order, the
 * same integer sums with the 2^-k folded into the super-scale (dfac). */
struct mx_iq_post {
    float inner; /* isum is multiplied by this before (dw dy) x it (1 or 1/8) */
    float outer; /* the row's float sum is multiplied by this at the end (1, 1/4 or 1/8) */
    /* llama.cpp's panel order (ggml-cpu/iqp.cpp, read: its matmuls of >= 8 columns) instead:
     * the super-scale is dfac = dw x this (inner x outer, a power of two) and per super-block
     * sumf = fma((float)isum, dfac x dy, sumf), nothing after; the peer's logits follow it */
    float dfac;
};

/* The float steps of type t's vec_dot (kernels_iq.c), for the tiles to repeat. */
static inline struct mx_iq_post mx_iq_post_of(enum mx_type t) {
    switch (t) {
    case MX_TYPE_IQ1_S: case MX_TYPE_IQ1_M:
        return (struct mx_iq_post){MX_IQ1_DELTA, 1.0f, 0.125f};
    case MX_TYPE_IQ3_XXS:
        return (struct mx_iq_post){1.0f, 0.25f, 0.25f};
    case MX_TYPE_IQ3_S:
        return (struct mx_iq_post){1.0f, 1.0f, 1.0f};
    default:
        return (struct mx_iq_post){1.0f, 0.125f, 0.125f};
    }
}

/* Whether a type's scales cover 32 values (the tile then sums two 16-value groups before
 * scaling); IQ2_XS, IQ2_S and IQ1_M scale every 16 values. */
static inline int mx_iq_sub32(enum mx_type t) {
    return t == MX_TYPE_IQ2_XXS || t == MX_TYPE_IQ3_XXS || t == MX_TYPE_IQ3_S ||
           t == MX_TYPE_IQ1_S;
}

/* 8 sign bits per 8 values (4 bytes in s4, bit j of byte k: value 8k + j negative) applied to
 * 32 unsigned magnitudes. */
static inline __m256i mx_iq_apply_signs(__m256i mag, uint32_t s4) {
    const __m256i bytesel = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                              0x0101010101010101, 0x0000000000000000);
    const __m256i bits = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)s4), bytesel);
    __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(b, bits), bits);
    return _mm256_sub_epi8(_mm256_xor_si256(mag, neg), neg); /* -mag where neg */
}

/* Four 8-value grid entries as one vector, a lowest (values 0..7). */
static inline __m256i mx_iq_u64x4(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
    return _mm256_set_epi64x((long long)d, (long long)c, (long long)b, (long long)a);
}

/* Two 4-value IQ3 grid entries as one 8-value word, lo first. */
static inline uint64_t mx_iq_u32x2(uint32_t lo, uint32_t hi) {
    return (uint64_t)lo | (uint64_t)hi << 32;
}

/* The 4 sign bytes of 4 7-bit ksigns indices packed in aux (IQ2_XXS, IQ3_XXS: bits 7l..7l+6). */
static inline uint32_t mx_iq_ksigns4(uint32_t aux) {
    return (uint32_t)mx_ksigns_iq2xs[aux & 127] | (uint32_t)mx_ksigns_iq2xs[(aux >> 7) & 127] << 8 |
           (uint32_t)mx_ksigns_iq2xs[(aux >> 14) & 127] << 16 |
           (uint32_t)mx_ksigns_iq2xs[(aux >> 21) & 127] << 24;
}

/* IQ1 values from 4 grid entries and their deltas: 32 bytes (8 g + delta) by vector ops. */
static inline __m256i mx_iq1_vals32(uint64_t g0, uint64_t g1, uint64_t g2, uint64_t g3,
                                    int d0, int d1, int d2, int d3) {
    __m256i g = mx_iq_u64x4(g0, g1, g2, g3);
    __m256i dl = _mm256_set_epi64x((long long)(0x0101010101010101ULL * (uint8_t)(int8_t)d3),
                                   (long long)(0x0101010101010101ULL * (uint8_t)(int8_t)d2),
                                   (long long)(0x0101010101010101ULL * (uint8_t)(int8_t)d1),
                                   (long long)(0x0101010101010101ULL * (uint8_t)(int8_t)d0));
    /* 8 g: three doublings of signed bytes (|8 g| <= 8, no overflow) */
    g = _mm256_add_epi8(g, g);
    g = _mm256_add_epi8(g, g);
    g = _mm256_add_epi8(g, g);
    return _mm256_add_epi8(g, dl);
}

/* Super-block blk of type t: the 256 values as signed bytes (w), the integer scale of each 16
 * values (sc), the float super-scale (*dw). */
static inline void mx_iq_expand(enum mx_type t, const void *blk, int8_t w[256], int16_t sc[16],
                                float *dw) {
    switch (t) {
    case MX_TYPE_IQ2_XXS: {
        const mx_block_iq2_xxs *x = blk;
        *dw = mx_fp16_to_fp32(x->d);
        for (int ib = 0; ib < 8; ib++) {
            uint32_t aux[2];
            memcpy(aux, x->qs + 4 * ib, sizeof aux);
            __m256i mag = mx_iq_u64x4(mx_iq2xxs_grid[aux[0] & 0xff],
                                      mx_iq2xxs_grid[(aux[0] >> 8) & 0xff],
                                      mx_iq2xxs_grid[(aux[0] >> 16) & 0xff],
                                      mx_iq2xxs_grid[aux[0] >> 24]);
            _mm256_storeu_si256((__m256i *)(w + 32 * ib),
                                mx_iq_apply_signs(mag, mx_iq_ksigns4(aux[1])));
            sc[2 * ib] = sc[2 * ib + 1] = (int16_t)(2 * (aux[1] >> 28) + 1);
        }
        break;
    }
    case MX_TYPE_IQ2_XS: {
        const mx_block_iq2_xs *x = blk;
        *dw = mx_fp16_to_fp32(x->d);
        for (int ib = 0; ib < 8; ib++) {
            const uint16_t *q = x->qs + 4 * ib;
            __m256i mag = mx_iq_u64x4(mx_iq2xs_grid[q[0] & 511], mx_iq2xs_grid[q[1] & 511],
                                      mx_iq2xs_grid[q[2] & 511], mx_iq2xs_grid[q[3] & 511]);
            uint32_t s4 = (uint32_t)mx_ksigns_iq2xs[q[0] >> 9] |
                          (uint32_t)mx_ksigns_iq2xs[q[1] >> 9] << 8 |
                          (uint32_t)mx_ksigns_iq2xs[q[2] >> 9] << 16 |
                          (uint32_t)mx_ksigns_iq2xs[q[3] >> 9] << 24;
            _mm256_storeu_si256((__m256i *)(w + 32 * ib), mx_iq_apply_signs(mag, s4));
            sc[2 * ib] = (int16_t)(2 * (x->scales[ib] & 0xf) + 1);
            sc[2 * ib + 1] = (int16_t)(2 * (x->scales[ib] >> 4) + 1);
        }
        break;
    }
    case MX_TYPE_IQ2_S: {
        const mx_block_iq2_s *x = blk;
        *dw = mx_fp16_to_fp32(x->d);
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *qs = x->qs + 4 * ib;
            const int qh = x->qh[ib];
            __m256i mag = mx_iq_u64x4(mx_iq2s_grid[qs[0] | ((qh << 8) & 0x300)],
                                      mx_iq2s_grid[qs[1] | ((qh << 6) & 0x300)],
                                      mx_iq2s_grid[qs[2] | ((qh << 4) & 0x300)],
                                      mx_iq2s_grid[qs[3] | ((qh << 2) & 0x300)]);
            uint32_t s4;
            memcpy(&s4, x->qs + MX_QK_K / 8 + 4 * ib, 4);
            _mm256_storeu_si256((__m256i *)(w + 32 * ib), mx_iq_apply_signs(mag, s4));
            sc[2 * ib] = (int16_t)(2 * (x->scales[ib] & 0xf) + 1);
            sc[2 * ib + 1] = (int16_t)(2 * (x->scales[ib] >> 4) + 1);
        }
        break;
    }
    case MX_TYPE_IQ3_XXS: {
        const mx_block_iq3_xxs *x = blk;
        *dw = mx_fp16_to_fp32(x->d);
        const uint8_t *q3 = x->qs, *gas = x->qs + MX_QK_K / 4;
        for (int ib = 0; ib < 8; ib++, q3 += 8) {
            uint32_t aux;
            memcpy(&aux, gas + 4 * ib, sizeof aux);
            __m256i mag = mx_iq_u64x4(
                mx_iq_u32x2(mx_iq3xxs_grid[q3[0]], mx_iq3xxs_grid[q3[1]]),
                mx_iq_u32x2(mx_iq3xxs_grid[q3[2]], mx_iq3xxs_grid[q3[3]]),
                mx_iq_u32x2(mx_iq3xxs_grid[q3[4]], mx_iq3xxs_grid[q3[5]]),
                mx_iq_u32x2(mx_iq3xxs_grid[q3[6]], mx_iq3xxs_grid[q3[7]]));
            _mm256_storeu_si256((__m256i *)(w + 32 * ib),
                                mx_iq_apply_signs(mag, mx_iq_ksigns4(aux)));
            sc[2 * ib] = sc[2 * ib + 1] = (int16_t)(2 * (aux >> 28) + 1);
        }
        break;
    }
    case MX_TYPE_IQ3_S: {
        const mx_block_iq3_s *x = blk;
        *dw = mx_fp16_to_fp32(x->d);
        const uint8_t *qs = x->qs;
        for (int ib = 0; ib < 8; ib++, qs += 8) {
            const int qh = x->qh[ib];
            /* four named entries, not an array: an array went through the stack, and the
             * 32-byte load of four 8-byte stores cannot be forwarded (half the tile's time) */
            const uint64_t e0 = mx_iq_u32x2(mx_iq3s_grid[qs[0] | ((qh << 8) & 256)],
                                            mx_iq3s_grid[qs[1] | ((qh << 7) & 256)]);
            const uint64_t e1 = mx_iq_u32x2(mx_iq3s_grid[qs[2] | ((qh << 6) & 256)],
                                            mx_iq3s_grid[qs[3] | ((qh << 5) & 256)]);
            const uint64_t e2 = mx_iq_u32x2(mx_iq3s_grid[qs[4] | ((qh << 4) & 256)],
                                            mx_iq3s_grid[qs[5] | ((qh << 3) & 256)]);
            const uint64_t e3 = mx_iq_u32x2(mx_iq3s_grid[qs[6] | ((qh << 2) & 256)],
                                            mx_iq3s_grid[qs[7] | ((qh << 1) & 256)]);
            uint32_t s4;
            memcpy(&s4, x->signs + 4 * ib, 4);
            _mm256_storeu_si256((__m256i *)(w + 32 * ib),
                                mx_iq_apply_signs(mx_iq_u64x4(e0, e1, e2, e3), s4));
            int ls = ib % 2 ? x->scales[ib / 2] >> 4 : x->scales[ib / 2] & 0xf;
            sc[2 * ib] = sc[2 * ib + 1] = (int16_t)(2 * ls + 1);
        }
        break;
    }
    case MX_TYPE_IQ1_S: {
        const mx_block_iq1_s *x = blk;
        *dw = mx_fp16_to_fp32(x->d);
        const uint8_t *qs = x->qs;
        for (int ib = 0; ib < 8; ib++, qs += 4) {
            const uint16_t qh = x->qh[ib];
            const int delta = qh & 0x8000 ? -1 : 1;
            __m256i v = mx_iq1_vals32(mx_iq1s_grid[qs[0] | ((qh & 7) << 8)],
                                      mx_iq1s_grid[qs[1] | (((qh >> 3) & 7) << 8)],
                                      mx_iq1s_grid[qs[2] | (((qh >> 6) & 7) << 8)],
                                      mx_iq1s_grid[qs[3] | (((qh >> 9) & 7) << 8)], delta,
                                      delta, delta, delta);
            _mm256_storeu_si256((__m256i *)(w + 32 * ib), v);
            sc[2 * ib] = sc[2 * ib + 1] = (int16_t)(2 * ((qh >> 12) & 7) + 1);
        }
        break;
    }
    case MX_TYPE_IQ1_M: {
        const mx_block_iq1_m *x = blk;
        uint16_t s[4];
        memcpy(s, x->scales, sizeof s);
        const uint16_t su = (uint16_t)((s[0] >> 12) | ((s[1] >> 8) & 0x00f0) |
                                       ((s[2] >> 4) & 0x0f00) | (s[3] & 0xf000));
        *dw = mx_fp16_to_fp32(su);
        const uint8_t *qs = x->qs, *qh = x->qh;
        for (int ib = 0; ib < 8; ib++, qs += 4, qh += 2) {
            __m256i v = mx_iq1_vals32(mx_iq1s_grid[qs[0] | (((uint16_t)qh[0] << 8) & 0x700)],
                                      mx_iq1s_grid[qs[1] | (((uint16_t)qh[0] << 4) & 0x700)],
                                      mx_iq1s_grid[qs[2] | (((uint16_t)qh[1] << 8) & 0x700)],
                                      mx_iq1s_grid[qs[3] | (((uint16_t)qh[1] << 4) & 0x700)],
                                      qh[0] & 0x08 ? -1 : 1, qh[0] & 0x80 ? -1 : 1,
                                      qh[1] & 0x08 ? -1 : 1, qh[1] & 0x80 ? -1 : 1);
            _mm256_storeu_si256((__m256i *)(w + 32 * ib), v);
            sc[2 * ib] = (int16_t)(2 * ((s[ib / 2] >> (6 * (ib % 2))) & 7) + 1);
            sc[2 * ib + 1] = (int16_t)(2 * ((s[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1);
        }
        break;
    }
    default:
        break;
    }
}

/* The prepared form of R rows (8 or 16) for one super-block, as the tiles read it: value word
 * k (values 4k..4k+3) of row r at w + 4 (R k + r), so one vector load gives word k of all R
 * rows (vpdpbusd / maddubs against one broadcast activation word); then the scales, one int32
 * per row per 16-value group g at sc + R g + r (pair_scales: the 16-bit scale in both halves,
 * for madd), the offset sums (128 x sum over the groups of scale x the group's values: what the
 * tiles' unsigned activations x + 128 add to the exact sum, taken off once per row and
 * super-block) and the super-scales. 328 R bytes. */
static inline size_t mx_iq_prep_bytes(int R) {
    return (size_t)328 * (size_t)R;
}

/* Row r (of R) of a prepared group, all nsb super-blocks of the file row at src (NULL: a padding
 * row, zero, whose outputs are not stored): the values into v + (R i + r) 256 (row-major per
 * super-block; the caller interleaves them into the words of dst, a transpose of 4-byte words),
 * the scales and super-scales into their places in dst's block i (the offset sums are taken
 * while interleaving, from the interleaved words: a few vector ops per 16 rows). Row by row, so
 * the tile reads its weights as one sequential stream (16 rows at a time, a super-block each,
 * left the prefetcher behind: a fifth of the expansion's time waited on those loads). */
static inline void mx_iq_expand_row(enum mx_type t, const char *src, int r, int R, int64_t nsb,
                                    int pair_scales, int8_t *v, char *dst) {
    const size_t bsz = mx_type_traits(t)->type_size, pb = mx_iq_prep_bytes(R);
    int16_t sc[16] = {0};
    for (int64_t i = 0; i < nsb; i++) {
        char *p = dst + (size_t)i * pb;
        int8_t *vr = v + (size_t)(R * i + r) * 256;
        int32_t *psc = (int32_t *)(p + 256 * R), *pcorr = psc + 16 * R;
        float *pdw = (float *)(pcorr + R);
        if (!src) {
            memset(vr, 0, 256);
            for (int g = 0; g < 16; g++)
                psc[R * g + r] = 0;
            pdw[r] = 0.0f;
            continue;
        }
        /* the weights come from DRAM: ask for the lines ~5 blocks ahead (past the row's end:
         * the next row's, read next) */
        _mm_prefetch(src + (size_t)i * bsz + 512, _MM_HINT_T0);
        _mm_prefetch(src + (size_t)i * bsz + 576, _MM_HINT_T0);
        mx_iq_expand(t, src + (size_t)i * bsz, vr, sc, &pdw[r]);
        for (int g = 0; g < 16; g++)
            psc[R * g + r] = pair_scales ? (int32_t)((uint32_t)(uint16_t)sc[g] * 0x10001u) : sc[g];
    }
}

/* Columns [c0, c0 + nc) of the Q8_K activations (xq_row bytes apart, nsb blocks each) as
 * unsigned bytes x + 128 (xu + c n_in) and their block scales (dy + c nsb). */
static inline void mx_iq_cols(const char *xq, size_t xq_row, int64_t nsb, int nc, uint8_t *xu,
                              float *dy) {
    const __m256i flip = _mm256_set1_epi8((char)0x80);
    for (int c = 0; c < nc; c++) {
        const mx_block_q8_K *y = (const mx_block_q8_K *)(xq + (size_t)c * xq_row);
        uint8_t *o = xu + (size_t)c * (size_t)nsb * 256;
        for (int64_t i = 0; i < nsb; i++) {
            dy[c * nsb + i] = y[i].d;
            for (int k = 0; k < 8; k++)
                _mm256_storeu_si256(
                    (__m256i *)(o + 256 * i + 32 * k),
                    _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * k)),
                                     flip));
        }
    }
}

#endif
