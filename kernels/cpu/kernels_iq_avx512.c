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

/* IQ2_XS, IQ3_S, IQ2_XXS, IQ2_S, IQ3_XXS: the AVX2 kernels' text with the masked signs */
#include "kernels/cpu/kernels_iq_grid_dots.h"

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
    k->vec_dot[MX_TYPE_IQ2_XS] = vec_dot_iq2_xs;
    k->vec_dot[MX_TYPE_IQ3_S] = vec_dot_iq3_s;
    k->vec_dot[MX_TYPE_IQ2_XXS] = vec_dot_iq2_xxs;
    k->vec_dot[MX_TYPE_IQ2_S] = vec_dot_iq2_s;
    k->vec_dot[MX_TYPE_IQ3_XXS] = vec_dot_iq3_xxs;
    k->gemm_x8[MX_LAYOUT_IQ4_XSX8] = gemm_iq4_xsx8;
    k->gemm_x8[MX_LAYOUT_IQ4_NLX8] = gemm_iq4_nlx8;
}
