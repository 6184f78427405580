/* kernels_x86.h - vector helpers shared by the AVX2 and the AVX-512 VNNI kernel files (each
 * compiled with its own flags; everything here is static inline and needs AVX2 + F16C only). */
#ifndef MX_KERNELS_X86_H
#define MX_KERNELS_X86_H

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

/* 4 activation bytes broadcast to the 8 rows' lanes. */
static inline __m256i bcast4(const int8_t *x) {
    int32_t v;
    memcpy(&v, x, 4);
    return _mm256_set1_epi32(v);
}

/* The 8 rows' 6-bit scales and mins of a repacked Q4_K / Q5_K super-block (its sm_lo, sm_hi;
 * mx_block_q4_Kx8): sc[0]
 * holds scales k = 0..31 (sub-blocks 0-3) as bytes, sc[1] k = 32..63; mn[0], mn[1] the mins in
 * their pair-interleaved order. */
static inline void q4kx8_scales(const uint8_t *sm_lo, const uint8_t *sm_hi, __m256i sc[2],
                                __m256i mn[2]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    __m256i l0 = _mm256_loadu_si256((const __m256i *)sm_lo);
    __m256i l1 = _mm256_loadu_si256((const __m256i *)(sm_lo + 32));
    __m256i h = _mm256_loadu_si256((const __m256i *)sm_hi);
    sc[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                            _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
    sc[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                            _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
    mn[0] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                            _mm256_and_si256(h, m30));
    mn[1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                            _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
}

/* A Q4_K / Q5_K x8 super-block's scales and mins, ready for the kernels: scv[j] holds
 * sub-block j's 8 row scales, as int16 pairs (row r in lanes 2r, 2r + 1: madd's multiplier,
 * AVX2) or, with i32, as int32 lanes (vpmulld's, VNNI); mnv[p] the mins of sub-blocks 2p and
 * 2p + 1 as int16, row r's pair in lanes 2r, 2r + 1. */
static inline __attribute__((always_inline)) void q4kx8_header(const uint8_t *sm_lo, const uint8_t *sm_hi, bool i32,
                                __m256i scv[8], __m256i mnv[4]) {
    __m256i sc[2], mn[2];
    q4kx8_scales(sm_lo, sm_hi, sc, mn);
    for (int h = 0; h < 2; h++) {
        __m128i lo = _mm256_castsi256_si128(sc[h]), hi = _mm256_extracti128_si256(sc[h], 1);
        if (i32) {
            scv[4 * h] = _mm256_cvtepu8_epi32(lo);
            scv[4 * h + 1] = _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8));
            scv[4 * h + 2] = _mm256_cvtepu8_epi32(hi);
            scv[4 * h + 3] = _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8));
        } else {
            scv[4 * h] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(lo, lo));
            scv[4 * h + 1] = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(lo, lo));
            scv[4 * h + 2] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(hi, hi));
            scv[4 * h + 3] = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(hi, hi));
        }
        mnv[2 * h] = _mm256_cvtepu8_epi16(_mm256_castsi256_si128(mn[h]));
        mnv[2 * h + 1] = _mm256_cvtepu8_epi16(_mm256_extracti128_si256(mn[h], 1));
    }
}

/* Per row, sum over the 8 sub-blocks of min x (the activation's sub-block sum, from Q8_K's 16
 * bsums), as int32 lanes. */
static inline __m256i q4kx8_min_sums(const __m256i mnv[4], const int16_t *bsums) {
    __m256i bs = _mm256_loadu_si256((const __m256i *)bsums);
    __m128i bx = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    return _mm256_add_epi32(
        _mm256_add_epi32(_mm256_madd_epi16(mnv[0], _mm256_broadcastd_epi32(bx)),
                         _mm256_madd_epi16(mnv[1], _mm256_broadcastd_epi32(_mm_srli_si128(bx, 4)))),
        _mm256_add_epi32(
            _mm256_madd_epi16(mnv[2], _mm256_broadcastd_epi32(_mm_srli_si128(bx, 8))),
            _mm256_madd_epi16(mnv[3], _mm256_broadcastd_epi32(_mm_srli_si128(bx, 12)))));
}

/* One column's share of a Q4_K / Q5_K x8 super-block: acc += d x xd x isum (the scaled row
 * sums), accm += dmin x xd x (mins times the activation's sub-block sums); the kernels return
 * acc - accm. */
static inline void q4kx8_accumulate(__m256 d, __m256 dmin, const __m256i mnv[4],
                                    const mx_block_q8_K *x, __m256i isum, __m256 *acc,
                                    __m256 *accm) {
    __m256 xd = _mm256_set1_ps(x->d);
    *acc = _mm256_fmadd_ps(_mm256_mul_ps(d, xd), _mm256_cvtepi32_ps(isum), *acc);
    *accm = _mm256_fmadd_ps(_mm256_mul_ps(dmin, xd),
                            _mm256_cvtepi32_ps(q4kx8_min_sums(mnv, x->bsums)), *accm);
}

/* Per row (lane r), the 8 accumulators acc[g] summed as ggml's hsum_float_8 sums the lanes
 * g of one row's accumulator: ((4 + 0) + (6 + 2)) + ((5 + 1) + (7 + 3)). */
static inline __m256 q8_0x8_lane_sum(const __m256 acc[8]) {
    __m256 u0 = _mm256_add_ps(_mm256_add_ps(acc[4], acc[0]), _mm256_add_ps(acc[6], acc[2]));
    __m256 u1 = _mm256_add_ps(_mm256_add_ps(acc[5], acc[1]), _mm256_add_ps(acc[7], acc[3]));
    return _mm256_add_ps(u0, u1);
}

/* A gemm_x8 entry: the ncols switch over an always-inline kernel that takes NC as a constant
 * (so each column count gets its own unrolled code). */
#define MX_X8_ENTRY(name, kernel)                                                             \
    static void name(int64_t n, const void *w, const void *xq, size_t xq_row, int ncols,      \
                     float *out, size_t ldo) {                                                \
        switch (ncols) {                                                                      \
        case 1: kernel(n, w, xq, xq_row, 1, out, ldo); break;                                 \
        case 2: kernel(n, w, xq, xq_row, 2, out, ldo); break;                                 \
        case 3: kernel(n, w, xq, xq_row, 3, out, ldo); break;                                 \
        default: kernel(n, w, xq, xq_row, 4, out, ldo); break;                                \
        }                                                                                     \
    }

/* One ql vector of a repacked Q6_K chunk with its qh vector: the 6-bit values of its low
 * nibbles (bit pair 0 or, for the odd vector of the pair, 2 of qh) and high nibbles (pair 1 /
 * 3), see mx_block_q6_Kx8. */
static inline void q6x8_unpack(const uint8_t *ql, __m256i h, bool odd, __m256i *lo,
                               __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    __m256i l = _mm256_loadu_si256((const __m256i *)ql);
    __m256i hl = odd ? h : _mm256_slli_epi16(h, 4);
    __m256i hh = odd ? _mm256_srli_epi16(h, 2) : _mm256_slli_epi16(h, 2);
    *lo = _mm256_or_si256(_mm256_and_si256(l, m4), _mm256_and_si256(hl, m30));
    *hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l, 4), m4),
                          _mm256_and_si256(hh, m30));
}

/* Vector v of a repacked Q5_K chunk (mx_block_q5_Kx8): its 4-bit values (low nibbles: the
 * chunk's first sub-block, high: its second) with the fifth bits of qhl / qhh (bit v) added. */
static inline void q5kx8_unpack(const uint8_t *qs, __m256i qhl, __m256i qhh, int v, __m256i *lo,
                                __m256i *hi) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), m10 = _mm256_set1_epi8(0x10);
    __m256i q = _mm256_loadu_si256((const __m256i *)qs);
    __m256i bl = v <= 4 ? _mm256_slli_epi16(qhl, 4 - v) : _mm256_srli_epi16(qhl, v - 4);
    __m256i bh = v <= 4 ? _mm256_slli_epi16(qhh, 4 - v) : _mm256_srli_epi16(qhh, v - 4);
    *lo = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_and_si256(bl, m10));
    *hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                          _mm256_and_si256(bh, m10));
}

/* The 16 Q3_K scales as signed bytes (6 bits each, minus 32), in group order. The four words go
 * into the vector from registers (_mm_set_epi32): storing them to memory and loading 16 bytes
 * back stalled on store forwarding, a quarter of vec_dot_q3_K's time (perf, decode). */
static inline __m128i q3_K_scales(const uint8_t *packed) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t a0, a1, a2;
    memcpy(&a0, packed, 4);
    memcpy(&a1, packed + 4, 4);
    memcpy(&a2, packed + 8, 4);
    __m128i v = _mm_set_epi32((int)(((a1 >> 4) & kmask2) | (((a2 >> 6) & kmask1) << 4)),
                              (int)(((a0 >> 4) & kmask2) | (((a2 >> 4) & kmask1) << 4)),
                              (int)((a1 & kmask2) | (((a2 >> 2) & kmask1) << 4)),
                              (int)((a0 & kmask2) | ((a2 & kmask1) << 4)));
    return _mm_sub_epi8(v, _mm_set1_epi8(32));
}

/* Sum of the 8 lanes (shared by the row kernels and attention). */
static inline float hsum8(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
    return _mm_cvtss_f32(lo);
}

/* The horizontal sums of 8 vectors as one vector (lane j = sum of d[j]): a transpose-add tree,
 * 9 instructions instead of 8 separate horizontal sums. */
static inline __m256 hsum8x8(const __m256 d[8]) {
    __m256 t0 = _mm256_hadd_ps(d[0], d[1]), t1 = _mm256_hadd_ps(d[2], d[3]);
    __m256 t2 = _mm256_hadd_ps(d[4], d[5]), t3 = _mm256_hadd_ps(d[6], d[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* e^x for 8 floats (Cephes expf polynomial, about 1 ulp; x <= -88 gives ~0, never NaN): the
 * softmax of attention and gelu need it. */
static inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3762626647949f));
    x = _mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f));
    __m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
    fx = _mm256_floor_ps(fx);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 z = _mm256_mul_ps(x, x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, z, x);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)),
                                  23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* Largest of the 8 lanes (attention's running max, the quantizers' absmax). */
static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

#endif
