/* kernels_iq_avx512.c - AVX-512 (BW + VL, 256-bit registers) vec_dots of the IQ types with
 * sign bits: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S; and of IQ1_S / IQ1_M, with 2-row forms
 * (vec_dot2) for decode. Each builds a super-block's grid indices (IQ1_S, IQ1_M, IQ2_S, IQ3_S)
 * or sign bytes and scales (IQ2_XS, IQ2_XXS, IQ3_XXS) in vectors, where kernels_iq_grid_dots.h
 * (the AVX2 text) works them out one by one in scalar code; the grid entries are scalar loads
 * put together by vpinsrq: vpgatherdq / vpgatherdd measured slower on the AMD EPYC here
 * (decode A/B by CPU time, bench_kernels MX_BENCH_DOT2: IQ2_XXS 1.22x over AVX2 with gathers,
 * 1.51x with loads; IQ3_XXS 1.02x vs 1.52x).
 *
 * Why: in the AVX2 kernels (kernels_iq_avx2.c) the grid signs cost 5 vector ops per 32 values
 * (broadcast bytes to lanes, test the bits, make +-1, apply). With AVX-512BW the 32 sign bits
 * are a mask register as they are stored, and one masked subtract negates the activations.
 * The integer sums and the float accumulation are those of the scalar kernels, so results are
 * bit-identical (tests/test_quant_iq.c). VNNI's vpdpbusd does not fit (the 4-bit scales change
 * every 16 values), but its vpdpwssd takes maddubs' int16 pairs times the scales into the int32
 * lanes in one step where AVX2 needs madd + add.
 *
 * The repacked IQ4_XS GEMM (gemm_iq4_xsx8; gemm_iq4_nlx8 likewise for IQ4_NL) is Q4_0's VNNI
 * tile for IQ4_XS's layout: the 16 levels + 128 looked up by vpshufb as unsigned bytes,
 * vpdpbusd against 4 broadcast activation bytes for 8 rows at once, 128 x the sub-block's
 * activation sum (from Q8_K's bsums) taken back, times the 6-bit scale - 32 (vpmulld), all in
 * exact integers per super-block; then d_w x d_x x isum in float as the scalar vec_dot, so
 * every column equals vec_dot_iq4_xs bit for bit whatever ncols is.
 *
 * Compiled with the AVX-512 flags of kernels/cpu/cpu.am; installed by kernels.c only when the
 * CPU has AVX-512 F/VL/BW/VNNI (the AVX-512 level).
 */
#include "kernels/cpu/kernels_iq.h"

#include <immintrin.h>
#include <string.h>

#include "core/base/quant_iq.h"
#include "core/base/util.h"
#include "kernels/cpu/kernels_x86.h"

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

static inline float h2f(mx_half h) {
    return _cvtsh_ss(h);
}


/* ---- IQ1_S, IQ1_M (vec_dot, vec_dot2) ---------------------------------------------------------
 * The AVX2 kernels' integers (kernels_iq_avx2.c) with the grid indices built in vectors: 8
 * indices of 11 bits (qs bytes + the 3 bits of qh, shifted into place per lane by vpsrlvd) for
 * 64 values, stored once and read back as the loads' offsets, where the AVX2 kernel computes
 * each index in scalar code. The grid values are -1/0/+1, so
 * sign(y, grid) is their product; maddubs with ones adds pairs and vpdpwssd multiplies by the
 * scale 2s + 1 and adds (AVX2: madd + add). The super-block's float step is the scalar kernel's
 * (same integers, same expression), so the bits equal vec_dot_iq1_s / _m. R rows (1 or 2) per
 * call share the activation loads. */

/* 8 grid indices from 8 qs bytes and the 32-bit word hw of their high bits: lane l takes bits
 * sh[l] .. sh[l] + 2 of hw as bits 8..10. */
static inline __m256i iq1_idx8(const uint8_t *qs, uint32_t hw, __m256i sh) {
    __m256i lo = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)qs));
    __m256i hi = _mm256_slli_epi32(_mm256_srlv_epi32(_mm256_set1_epi32((int)hw), sh), 8);
    return _mm256_or_si256(lo, _mm256_and_si256(hi, _mm256_set1_epi32(0x700)));
}

/* vpermw index: int16 lane k (< 8) to all 16 lanes. */
static inline __m256i iq1_lane_idx(int k) {
    return _mm256_set1_epi16((short)k);
}

static inline __attribute__((always_inline)) void
iq1_s_rows(int64_t n, const void *w, size_t w_row, const void *xq, int R, float *out) {
    const mx_block_q8_K *y = xq;
    const __m256i ones = _mm256_set1_epi8(1);
    const __m256i sh = _mm256_setr_epi32(0, 3, 6, 9, 16, 19, 22, 25);
    const long long *grid = (const long long *)mx_iq1s_grid;
    __m256i lidx[8];
    for (int k = 0; k < 8; k++)
        lidx[k] = iq1_lane_idx(k);
    /* bsums lane j belongs to ib = j / 2 */
    const __m256i pidx = _mm256_setr_epi16(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    float sumf[2] = {0.0f, 0.0f};
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        __m256i yv[8];
        for (int ib = 0; ib < 8; ib++)
            yv[ib] = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib));
        const __m256i bs = _mm256_loadu_si256((const __m256i *)y[i].bsums);
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const mx_block_iq1_s *x = (const mx_block_iq1_s *)((const char *)w + r * w_row) + i;
            /* the 8 scales 2s + 1 (int16 lanes 0-7) and, negated where the shift is negative,
             * times the activation's 32-value sums: the shift term's integer */
            __m128i qh = _mm_loadu_si128((const __m128i *)x->qh);
            __m128i ls = _mm_add_epi16(
                _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(qh, 12), _mm_set1_epi16(7)), 1),
                _mm_set1_epi16(1));
            __m128i neg = _mm_srai_epi16(qh, 15);
            __m128i lsd = _mm_sub_epi16(_mm_xor_si128(ls, neg), neg);
            __m256i ls256 = _mm256_castsi128_si256(ls);
            const int32_t sumi1 = hsum_i32(
                _mm256_madd_epi16(bs, _mm256_permutexvar_epi16(pidx, _mm256_castsi128_si256(lsd))));
            __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int ib = 0; ib < 8; ib += 2) {
                uint32_t hw;
                memcpy(&hw, &x->qh[ib], 4);
                __m256i idx = iq1_idx8(x->qs + 4 * ib, hw, sh);
                uint32_t ix[8];
                _mm256_storeu_si256((__m256i *)ix, idx);
                __m256i g0 = _mm256_set_epi64x(grid[ix[3]], grid[ix[2]], grid[ix[1]], grid[ix[0]]);
                __m256i g1 = _mm256_set_epi64x(grid[ix[7]], grid[ix[6]], grid[ix[5]], grid[ix[4]]);
                for (int k = 0; k < 2; k++) {
                    __m256i p = _mm256_maddubs_epi16(ones, _mm256_sign_epi8(yv[ib + k], k ? g1 : g0));
                    acc = _mm256_dpwssd_epi32(acc, p, _mm256_permutexvar_epi16(lidx[ib + k], ls256));
                }
            }
            const int32_t sumi = hsum_i32(acc);
            sumf[r] += h2f(x->d) * y[i].d * (sumi + MX_IQ1_DELTA * sumi1);
        }
    }
    for (int r = 0; r < R; r++)
        out[r] = sumf[r];
}

static inline __attribute__((always_inline)) void
iq1_m_rows(int64_t n, const void *w, size_t w_row, const void *xq, int R, float *out) {
    const mx_block_q8_K *y = xq;
    const __m256i ones = _mm256_set1_epi8(1);
    const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    const __m256i dsh = _mm256_setr_epi64x(3, 7, 11, 15);
    const long long *grid = (const long long *)mx_iq1s_grid;
    float sumf[2] = {0.0f, 0.0f};
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        __m256i yv[8];
        for (int ib = 0; ib < 8; ib++)
            yv[ib] = _mm256_loadu_si256((const __m256i *)(y[i].qs + 32 * ib));
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const mx_block_iq1_m *x = (const mx_block_iq1_m *)((const char *)w + r * w_row) + i;
            uint16_t sc[4];
            memcpy(sc, x->scales, sizeof sc);
            const uint16_t su = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                           ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
            __m256i acc1 = _mm256_setzero_si256(), acc2 = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int ib = 0; ib < 8; ib += 2) {
                uint32_t hw;
                memcpy(&hw, x->qh + 2 * ib, 4);
                __m256i idx = iq1_idx8(x->qs + 4 * ib, hw, sh);
                uint32_t ix[8];
                _mm256_storeu_si256((__m256i *)ix, idx);
                __m256i g0 = _mm256_set_epi64x(grid[ix[3]], grid[ix[2]], grid[ix[1]], grid[ix[0]]);
                __m256i g1 = _mm256_set_epi64x(grid[ix[7]], grid[ix[6]], grid[ix[5]], grid[ix[4]]);
                for (int k = 0; k < 2; k++) {
                    /* the shift's sign per 8 values: bit 3 of each qh nibble -> +-1 bytes */
                    __m256i t = _mm256_and_si256(
                        _mm256_srlv_epi64(_mm256_set1_epi64x((long long)(hw >> (16 * k) & 0xffff)), dsh),
                        _mm256_set1_epi64x(1));
                    __m256i dl = _mm256_or_si256(_mm256_sub_epi64(_mm256_setzero_si256(), t), ones);
                    __m256i p1 = _mm256_maddubs_epi16(ones, _mm256_sign_epi8(yv[ib + k], k ? g1 : g0));
                    __m256i p2 = _mm256_maddubs_epi16(ones, _mm256_sign_epi8(yv[ib + k], dl));
                    const int s = sc[(ib + k) / 2] >> (6 * ((ib + k) % 2));
                    __m256i scv = _mm256_set_m128i(_mm_set1_epi16((short)(2 * ((s >> 3) & 7) + 1)),
                                                   _mm_set1_epi16((short)(2 * (s & 7) + 1)));
                    acc1 = _mm256_dpwssd_epi32(acc1, p1, scv);
                    acc2 = _mm256_dpwssd_epi32(acc2, p2, scv);
                }
            }
            const int32_t sumi1 = hsum_i32(acc1), sumi2 = hsum_i32(acc2);
            sumf[r] += h2f(su) * y[i].d * (sumi1 + MX_IQ1_DELTA * sumi2);
        }
    }
    for (int r = 0; r < R; r++)
        out[r] = sumf[r];
}

/* ---- IQ2_XS (vec_dot, vec_dot2) ---------------------------------------------------------------
 * The grid dot of kernels_iq_grid_dots.h (same integers per super-block, same float steps, so
 * the same bits) with its scalar parts done in vectors: the 32 sign bytes made from
 * the 7 stored bits plus their parity bit (ggml's ksigns table, computed: xor-folds) and packed
 * by vpmovwb into the mask words of the masked subtract, the 16 scales 2s + 1 as one int16
 * vector whose pairs reach each 32 values' lanes by vpermw, and vpdpwssd (madd + add). */
static inline __attribute__((always_inline)) void
iq2_xs_rows(int64_t n, const void *w, size_t w_row, const void *xq, int R, float *out) {
    const mx_block_q8_K *y = xq;
    const long long *grid = (const long long *)mx_iq2xs_grid;
    const __m256i one16 = _mm256_set1_epi16(1);
    __m256i pidx[8];
    for (int k = 0; k < 8; k++)
        pidx[k] = _mm256_set_m128i(_mm_set1_epi16((short)(2 * k + 1)), _mm_set1_epi16((short)(2 * k)));
    float sumf[2] = {0.0f, 0.0f};
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const mx_block_iq2_xs *x = (const mx_block_iq2_xs *)((const char *)w + r * w_row) + i;
            __m128i sc8 = _mm_loadl_epi64((const __m128i *)x->scales);
            __m128i scl = _mm_and_si128(sc8, _mm_set1_epi8(15));
            __m128i sch = _mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(15));
            __m256i ls = _mm256_add_epi16(
                _mm256_slli_epi16(_mm256_cvtepu8_epi16(_mm_unpacklo_epi8(scl, sch)), 1), one16);
            __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
            for (int hh = 0; hh < 2; hh++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(x->qs + 16 * hh));
                __m256i s7 = _mm256_srli_epi16(q, 9);
                __m256i p = _mm256_xor_si256(s7, _mm256_srli_epi16(s7, 4));
                p = _mm256_xor_si256(p, _mm256_srli_epi16(p, 2));
                p = _mm256_xor_si256(p, _mm256_srli_epi16(p, 1));
                __m256i s8 = _mm256_or_si256(s7, _mm256_slli_epi16(_mm256_and_si256(p, one16), 7));
                __m128i sb = _mm256_cvtepi16_epi8(s8); /* 16 sign bytes: 4 per 32 values */
                uint64_t sg[2] = {(uint64_t)_mm_cvtsi128_si64(sb),
                                  (uint64_t)_mm_extract_epi64(sb, 1)};
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    const int ib = 4 * hh + k;
                    const uint16_t *q2 = x->qs + 4 * ib;
                    __m256i g = _mm256_set_epi64x(grid[q2[3] & 511], grid[q2[2] & 511],
                                                  grid[q2[1] & 511], grid[q2[0] & 511]);
                    uint32_t s4 = (uint32_t)(sg[k / 2] >> (32 * (k % 2)));
                    __m256i pr = _mm256_maddubs_epi16(g, apply_signs(y[i].qs + 32 * ib, s4));
                    acc = _mm256_dpwssd_epi32(acc, pr, _mm256_permutexvar_epi16(pidx[ib], ls));
                }
            }
            const float d = h2f(x->d) * y[i].d;
            sumf[r] += d * (float)hsum_i32(acc);
        }
    }
    for (int r = 0; r < R; r++)
        out[r] = 0.125f * sumf[r];
}

static float vec_dot_iq2_xs_avx512(int64_t n, const void *w, const void *xq) {
    float r;
    iq2_xs_rows(n, w, 0, xq, 1, &r);
    return r;
}

static void vec_dot2_iq2_xs_avx512(int64_t n, const void *w, size_t w_row, const void *xq,
                                   float *out) {
    iq2_xs_rows(n, w, w_row, xq, 2, out);
}

/* ---- IQ2_XXS (vec_dot, vec_dot2) --------------------------------------------------------------
 * The grid dot of kernels_iq_grid_dots.h (same integers, same float steps, same bits) with the
 * super-block's 32 sign bytes made at once in vectors: the 8 words of 4 x 7 sign-index bits
 * spread to one field per byte ((a << k) & (0x7f << 8k)), each byte given its parity bit (ggml's
 * ksigns table, computed: two vpshufb lookups of 4 bits), the 8 scales 2s + 1 likewise; the
 * scale applied by vpdpwssd. */
/* 8 words of 4 x 7 sign-index bits (IQ2_XXS, IQ3_XXS) as 8 words of 4 sign bytes: each field
 * spread to its byte ((a << k) & (0x7f << 8k)) and given its parity bit as bit 7 (ggml's ksigns
 * table, computed: the parities of the two nibbles by vpshufb, xored). */
static inline __m256i iq2_sign_words(__m256i a) {
    const __m256i ptab = _mm256_broadcastsi128_si256(_mm_setr_epi8(
        0, (char)0x80, (char)0x80, 0, (char)0x80, 0, 0, (char)0x80, (char)0x80, 0, 0, (char)0x80, 0,
        (char)0x80, (char)0x80, 0));
    const __m256i m4 = _mm256_set1_epi8(15);
    __m256i f = _mm256_and_si256(a, _mm256_set1_epi32(0x7f));
    for (int k = 1; k < 4; k++)
        f = _mm256_or_si256(f, _mm256_and_si256(_mm256_slli_epi32(a, k),
                                                _mm256_set1_epi32(0x7f << (8 * k))));
    __m256i par = _mm256_xor_si256(
        _mm256_shuffle_epi8(ptab, _mm256_and_si256(f, m4)),
        _mm256_shuffle_epi8(ptab, _mm256_and_si256(_mm256_srli_epi16(f, 4), m4)));
    return _mm256_or_si256(f, par);
}

static inline __attribute__((always_inline)) void
iq2_xxs_rows(int64_t n, const void *w, size_t w_row, const void *xq, int R, float *out) {
    const mx_block_q8_K *y = xq;
    const long long *grid = (const long long *)mx_iq2xxs_grid;
    const __m256i odd = _mm256_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15);
    float sumf[2] = {0.0f, 0.0f};
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const mx_block_iq2_xxs *x = (const mx_block_iq2_xxs *)((const char *)w + r * w_row) + i;
            __m256i a = _mm256_permutex2var_epi32(_mm256_loadu_si256((const __m256i *)x->qs), odd,
                                                  _mm256_loadu_si256((const __m256i *)(x->qs + 16)));
            __m256i sgv = iq2_sign_words(a);
            uint32_t sg[8], ls[8];
            _mm256_storeu_si256((__m256i *)sg, sgv);
            _mm256_storeu_si256(
                (__m256i *)ls,
                _mm256_add_epi32(_mm256_slli_epi32(_mm256_srli_epi32(a, 28), 1), _mm256_set1_epi32(1)));
            __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int ib = 0; ib < 8; ib++) {
                const uint8_t *g8 = (const uint8_t *)(x->qs + 4 * ib);
                __m256i g = _mm256_set_epi64x(grid[g8[3]], grid[g8[2]], grid[g8[1]], grid[g8[0]]);
                __m256i pr = _mm256_maddubs_epi16(g, apply_signs(y[i].qs + 32 * ib, sg[ib]));
                acc = _mm256_dpwssd_epi32(acc, pr, _mm256_set1_epi16((short)ls[ib]));
            }
            const float d = h2f(x->d) * y[i].d;
            sumf[r] += d * (float)hsum_i32(acc);
        }
    }
    for (int r = 0; r < R; r++)
        out[r] = 0.125f * sumf[r];
}

static float vec_dot_iq2_xxs_avx512(int64_t n, const void *w, const void *xq) {
    float r;
    iq2_xxs_rows(n, w, 0, xq, 1, &r);
    return r;
}

static void vec_dot2_iq2_xxs_avx512(int64_t n, const void *w, size_t w_row, const void *xq,
                                    float *out) {
    iq2_xxs_rows(n, w, w_row, xq, 2, out);
}

/* IQ3_XXS as IQ2_XXS: the 8 sign words (after the 64 grid bytes) and scales made in vectors,
 * 8 grid entries of 4 bytes per 32 values; the scalar kernel's float steps. */
static inline __attribute__((always_inline)) void
iq3_xxs_rows(int64_t n, const void *w, size_t w_row, const void *xq, int R, float *out) {
    const mx_block_q8_K *y = xq;
    const int *grid = (const int *)mx_iq3xxs_grid;
    float sumf[2] = {0.0f, 0.0f};
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const mx_block_iq3_xxs *x = (const mx_block_iq3_xxs *)((const char *)w + r * w_row) + i;
            __m256i a = _mm256_loadu_si256((const __m256i *)(x->qs + MX_QK_K / 4));
            uint32_t sg[8], ls[8];
            _mm256_storeu_si256((__m256i *)sg, iq2_sign_words(a));
            _mm256_storeu_si256(
                (__m256i *)ls,
                _mm256_add_epi32(_mm256_slli_epi32(_mm256_srli_epi32(a, 28), 1), _mm256_set1_epi32(1)));
            __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int ib = 0; ib < 8; ib++) {
                const uint8_t *q3 = x->qs + 8 * ib;
                __m256i g = _mm256_set_epi32(grid[q3[7]], grid[q3[6]], grid[q3[5]], grid[q3[4]],
                                             grid[q3[3]], grid[q3[2]], grid[q3[1]], grid[q3[0]]);
                __m256i pr = _mm256_maddubs_epi16(g, apply_signs(y[i].qs + 32 * ib, sg[ib]));
                acc = _mm256_dpwssd_epi32(acc, pr, _mm256_set1_epi16((short)ls[ib]));
            }
            const float d = h2f(x->d) * y[i].d;
            sumf[r] += d * (float)hsum_i32(acc);
        }
    }
    for (int r = 0; r < R; r++)
        out[r] = 0.25f * sumf[r];
}

static float vec_dot_iq3_xxs_avx512(int64_t n, const void *w, const void *xq) {
    float r;
    iq3_xxs_rows(n, w, 0, xq, 1, &r);
    return r;
}

static void vec_dot2_iq3_xxs_avx512(int64_t n, const void *w, size_t w_row, const void *xq,
                                    float *out) {
    iq3_xxs_rows(n, w, w_row, xq, 2, out);
}

/* IQ3_S and IQ2_S as the grid dots of kernels_iq_grid_dots.h (same integers, same float steps,
 * same bits; signs as stored, by the masked subtract) with the grid indices of a super-block
 * built in vectors (qs bytes | the qh bits shifted into place per lane by vpsllvd / vpsrlvd),
 * stored once and read back as the scalar loads' offsets, and the scale applied by vpdpwssd. */
static inline __attribute__((always_inline)) void
iq3_s_rows(int64_t n, const void *w, size_t w_row, const void *xq, int R, float *out) {
    const mx_block_q8_K *y = xq;
    const int *grid = (const int *)mx_iq3s_grid;
    const __m256i sh = _mm256_setr_epi32(8, 7, 6, 5, 4, 3, 2, 1);
    float sumf[2] = {0.0f, 0.0f};
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const mx_block_iq3_s *x = (const mx_block_iq3_s *)((const char *)w + r * w_row) + i;
            uint32_t ix[64];
            for (int ib = 0; ib < 8; ib++)
                _mm256_storeu_si256(
                    (__m256i *)(ix + 8 * ib),
                    _mm256_or_si256(
                        _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(x->qs + 8 * ib))),
                        _mm256_and_si256(_mm256_sllv_epi32(_mm256_set1_epi32(x->qh[ib]), sh),
                                         _mm256_set1_epi32(256))));
            __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int ib = 0; ib < 8; ib++) {
                const uint32_t *q = ix + 8 * ib;
                __m256i g = _mm256_set_epi32(grid[q[7]], grid[q[6]], grid[q[5]], grid[q[4]],
                                             grid[q[3]], grid[q[2]], grid[q[1]], grid[q[0]]);
                uint32_t s4;
                memcpy(&s4, x->signs + 4 * ib, 4);
                __m256i p = _mm256_maddubs_epi16(g, apply_signs(y[i].qs + 32 * ib, s4));
                const int ls = ib % 2 ? x->scales[ib / 2] >> 4 : x->scales[ib / 2] & 0xf;
                acc = _mm256_dpwssd_epi32(acc, p, _mm256_set1_epi16((short)(2 * ls + 1)));
            }
            const float d = h2f(x->d) * y[i].d;
            sumf[r] += d * (float)hsum_i32(acc);
        }
    }
    for (int r = 0; r < R; r++)
        out[r] = sumf[r];
}

static inline __attribute__((always_inline)) void
iq2_s_rows(int64_t n, const void *w, size_t w_row, const void *xq, int R, float *out) {
    const mx_block_q8_K *y = xq;
    const long long *grid = (const long long *)mx_iq2s_grid;
    const __m256i shr = _mm256_setr_epi32(0, 0, 0, 0, 8, 8, 8, 8);
    const __m256i shl = _mm256_setr_epi32(8, 6, 4, 2, 8, 6, 4, 2);
    float sumf[2] = {0.0f, 0.0f};
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const mx_block_iq2_s *x = (const mx_block_iq2_s *)((const char *)w + r * w_row) + i;
            const uint8_t *signs = x->qs + MX_QK_K / 8;
            uint32_t ix[32];
            for (int ib = 0; ib < 8; ib += 2) {
                uint16_t h2;
                memcpy(&h2, x->qh + ib, 2);
                __m256i hi = _mm256_sllv_epi32(_mm256_srlv_epi32(_mm256_set1_epi32(h2), shr), shl);
                _mm256_storeu_si256(
                    (__m256i *)(ix + 4 * ib),
                    _mm256_or_si256(
                        _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(x->qs + 4 * ib))),
                        _mm256_and_si256(hi, _mm256_set1_epi32(0x300))));
            }
            __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int ib = 0; ib < 8; ib++) {
                const uint32_t *q = ix + 4 * ib;
                __m256i g = _mm256_set_epi64x(grid[q[3]], grid[q[2]], grid[q[1]], grid[q[0]]);
                uint32_t s4;
                memcpy(&s4, signs + 4 * ib, 4);
                __m256i p = _mm256_maddubs_epi16(g, apply_signs(y[i].qs + 32 * ib, s4));
                const uint8_t sc = x->scales[ib];
                __m256i scv = _mm256_set_m128i(_mm_set1_epi16((short)(2 * (sc >> 4) + 1)),
                                               _mm_set1_epi16((short)(2 * (sc & 0xf) + 1)));
                acc = _mm256_dpwssd_epi32(acc, p, scv);
            }
            const float d = h2f(x->d) * y[i].d;
            sumf[r] += d * (float)hsum_i32(acc);
        }
    }
    for (int r = 0; r < R; r++)
        out[r] = 0.125f * sumf[r];
}

static float vec_dot_iq3_s_avx512(int64_t n, const void *w, const void *xq) {
    float r;
    iq3_s_rows(n, w, 0, xq, 1, &r);
    return r;
}

static void vec_dot2_iq3_s_avx512(int64_t n, const void *w, size_t w_row, const void *xq,
                                  float *out) {
    iq3_s_rows(n, w, w_row, xq, 2, out);
}

static float vec_dot_iq2_s_avx512(int64_t n, const void *w, const void *xq) {
    float r;
    iq2_s_rows(n, w, 0, xq, 1, &r);
    return r;
}

static void vec_dot2_iq2_s_avx512(int64_t n, const void *w, size_t w_row, const void *xq,
                                  float *out) {
    iq2_s_rows(n, w, w_row, xq, 2, out);
}

static float vec_dot_iq1_s_avx512(int64_t n, const void *w, const void *xq) {
    float r;
    iq1_s_rows(n, w, 0, xq, 1, &r);
    return r;
}

static void vec_dot2_iq1_s_avx512(int64_t n, const void *w, size_t w_row, const void *xq,
                                  float *out) {
    iq1_s_rows(n, w, w_row, xq, 2, out);
}

static float vec_dot_iq1_m_avx512(int64_t n, const void *w, const void *xq) {
    float r;
    iq1_m_rows(n, w, 0, xq, 1, &r);
    return r;
}

static void vec_dot2_iq1_m_avx512(int64_t n, const void *w, size_t w_row, const void *xq,
                                  float *out) {
    iq1_m_rows(n, w, w_row, xq, 2, out);
}

/* 8 repacked IQ4_XS rows times NC (1..4) Q8_K columns (see the header comment). Per sub-block:
 * the 8 vectors of unsigned levels are made once for all columns, and ls - 32 of the 8 rows is
 * decoded from the scales_l word and scales_h half-word of each row. */
static inline __attribute__((always_inline)) void
gemm_iq4_xsx8_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
                 size_t ldo) {
    const mx_block_iq4_xsx8 *a = w;
    const int64_t nb = n / MX_QK_K;
    int8_t lv[16];
    for (int i = 0; i < 16; i++) /* the levels + 128 (1..241) as the unsigned bytes */
        lv[i] = (int8_t)(uint8_t)(mx_kvalues_iq4nl[i] + 128);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lv));
    const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi32(3),
                  mf = _mm256_set1_epi32(0xf), k32 = _mm256_set1_epi32(32);
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
            __m256i lo[4], hi[4];
            for (int j = 0; j < 4; j++) {
                __m256i v = _mm256_loadu_si256((const __m256i *)blk->qs[ib][j]);
                lo[j] = _mm256_shuffle_epi8(tbl, _mm256_and_si256(v, m4));
                hi[j] = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
            }
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *x = xb[c][b].qs + 32 * ib;
                __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    s = _mm256_dpbusd_epi32(s, lo[j], bcast4(x + 4 * j));
                    s = _mm256_dpbusd_epi32(s, hi[j], bcast4(x + 16 + 4 * j));
                }
                const int xs = xb[c][b].bsums[2 * ib] + xb[c][b].bsums[2 * ib + 1];
                s = _mm256_sub_epi32(s, _mm256_set1_epi32(128 * xs));
                isum[c] = _mm256_add_epi32(isum[c], _mm256_mullo_epi32(s, ls));
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

/* 8 repacked IQ4_NL rows times NC (1..4) Q8_0 columns: per 32-value block the levels + 128 by
 * vpshufb, vpdpbusd, minus 128 x the block's activation sum (the f32 sums mx_quantize_act
 * appends to Q8_0 rows: exact integers), then d_x x d_w x isum added per block in float, the
 * scalar vec_dot_iq4_nl's order. */
static inline __attribute__((always_inline)) void
gemm_iq4_nlx8_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
                 size_t ldo) {
    const mx_block_iq4_nlx8 *a = w;
    const int64_t nb = n / MX_QK4_NL;
    const size_t so = mx_act_sums_offset(n);
    int8_t lv[16];
    for (int i = 0; i < 16; i++)
        lv[i] = (int8_t)(uint8_t)(mx_kvalues_iq4nl[i] + 128);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lv));
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    const mx_block_q8_0 *xb[4];
    const float *xs[4];
    for (int c = 0; c < NC; c++) {
        xb[c] = (const mx_block_q8_0 *)((const char *)xq + (size_t)c * xq_row);
        xs[c] = (const float *)((const char *)xb[c] + so);
    }
    for (int64_t b = 0; b < nb; b++) {
        __m256i lo[4], hi[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)a[b].qs[j]);
            lo[j] = _mm256_shuffle_epi8(tbl, _mm256_and_si256(v, m4));
            hi[j] = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
        }
        const __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)a[b].d));
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const int8_t *x = xb[c][b].qs;
            __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                s = _mm256_dpbusd_epi32(s, lo[j], bcast4(x + 4 * j));
                s = _mm256_dpbusd_epi32(s, hi[j], bcast4(x + 16 + 4 * j));
            }
            s = _mm256_sub_epi32(s, _mm256_set1_epi32(128 * (int32_t)xs[c][b]));
            const __m256 d = _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(xb[c][b].d)), wd);
            acc[c] = _mm256_add_ps(acc[c], _mm256_mul_ps(d, _mm256_cvtepi32_ps(s)));
        }
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, acc[c]);
}

MX_X8_ENTRY(gemm_iq4_nlx8, gemm_iq4_nlx8_nc)

void mx_cpu_kernels_iq_avx512(struct mx_cpu_kernels *k) {
    k->vec_dot[MX_TYPE_IQ2_XS] = vec_dot_iq2_xs_avx512;
    k->vec_dot2[MX_TYPE_IQ2_XS] = vec_dot2_iq2_xs_avx512;
    k->vec_dot[MX_TYPE_IQ3_S] = vec_dot_iq3_s_avx512;
    k->vec_dot2[MX_TYPE_IQ3_S] = vec_dot2_iq3_s_avx512;
    k->vec_dot[MX_TYPE_IQ2_XXS] = vec_dot_iq2_xxs_avx512;
    k->vec_dot2[MX_TYPE_IQ2_XXS] = vec_dot2_iq2_xxs_avx512;
    k->vec_dot[MX_TYPE_IQ2_S] = vec_dot_iq2_s_avx512;
    k->vec_dot2[MX_TYPE_IQ2_S] = vec_dot2_iq2_s_avx512;
    k->vec_dot[MX_TYPE_IQ3_XXS] = vec_dot_iq3_xxs_avx512;
    k->vec_dot2[MX_TYPE_IQ3_XXS] = vec_dot2_iq3_xxs_avx512;
    k->gemm_x8[MX_LAYOUT_IQ4_XSX8] = gemm_iq4_xsx8;
    k->gemm_x8[MX_LAYOUT_IQ4_NLX8] = gemm_iq4_nlx8;
    k->vec_dot[MX_TYPE_IQ1_S] = vec_dot_iq1_s_avx512;
    k->vec_dot2[MX_TYPE_IQ1_S] = vec_dot2_iq1_s_avx512;
    k->vec_dot[MX_TYPE_IQ1_M] = vec_dot_iq1_m_avx512;
    k->vec_dot2[MX_TYPE_IQ1_M] = vec_dot2_iq1_m_avx512;
}
