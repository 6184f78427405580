/* kernels_mxfp4.c - MXFP4 weight rows times Q8_0 activation rows (ggml's vec_dot_mxfp4_q8_0):
 * the decode dot of gpt-oss's expert matrices, in a scalar, an AVX2 and an AVX-512 VNNI version,
 * chosen at run time by mx_cpu_kernels_mxfp4.
 *
 * Why its own file: MXFP4 is the one 4-bit type whose codes are not integers on a grid but an
 * E2M1 lookup table, so the SIMD versions use a byte shuffle as the table; the SIMD functions
 * carry their instruction sets as function attributes, so this file builds with the plain flags
 * and the rest of the binary still runs on any x86-64.
 *
 * Numerics: per block the integer sum of kvalue * q8 is exact in every version; the float sum
 * over blocks is done in block order with one multiply-add per block (sumf += d_w * d_x * sumi,
 * as ggml's generic kernel), so the three versions give the same bits (tests check it).
 *
 * Workload: decode, one activation column per weight row; memory-bound (17 bytes per 32
 * weights). On the AVX2 and AVX-512 VNNI levels the weights are repacked 8 rows at a time
 * (mx_block_mxfp4x8, converters here) and prefill and decode both run an 8-row GEMM tile
 * (VNNI, as Q4_0's: levels + 128 as unsigned bytes, vpdpbusd against 4 broadcast activation
 * bytes, 128 x the block's activation sum taken back; AVX2: maddubs of |level| against the
 * signed activations), whose every column equals the scalar vec_dot bit for bit.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/kernels_iq.h"

#include <string.h>

#include "config.h"
#include "core/base/util.h"

#if defined(__x86_64__) && defined(HAVE_AVX2_BUILD)
#include <immintrin.h>
#endif

/* The f32 scale of block i of each side: 2^(e - 128) times the activation's fp16 scale. */
static inline float block_scale(const mx_block_mxfp4 *w, const mx_block_q8_0 *x) {
    return mx_e8m0_to_fp32_half(w->e) * mx_fp16_to_fp32(x->d);
}

float mx_vec_dot_mxfp4_q8_0(int64_t n, const void *vw, const void *vx) {
    const mx_block_mxfp4 *w = vw;
    const mx_block_q8_0 *x = vx;
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < n / MX_QK_MXFP4; ib++) {
        int sumi = 0;
        for (int j = 0; j < MX_QK_MXFP4 / 2; j++) {
            sumi += mx_kvalues_mxfp4[w[ib].qs[j] & 0x0f] * x[ib].qs[j];
            sumi += mx_kvalues_mxfp4[w[ib].qs[j] >> 4] * x[ib].qs[j + MX_QK_MXFP4 / 2];
        }
        sumf += block_scale(&w[ib], &x[ib]) * (float)sumi;
    }
    return sumf;
}

void mx_mxfp4x8_repack(const void *const rows[8], void *dst) {
    mx_block_mxfp4x8 *out = dst;
    for (int r = 0; r < 8; r++) {
        mx_block_mxfp4 b;
        memcpy(&b, rows[r], sizeof b);
        out->e[r] = b.e;
        for (int j = 0; j < 4; j++)
            memcpy(&out->qs[j][4 * r], b.qs + 4 * j, 4);
    }
}

/* The scalar dequantizer's arithmetic (quant.c): value = level x 2^(e - 128). */
void mx_mxfp4x8_dequant(const void *src, int r, float *out) {
    const mx_block_mxfp4x8 *a = src;
    const float d = mx_e8m0_to_fp32_half(a->e[r]);
    for (int j = 0; j < 4; j++)
        for (int k = 0; k < 4; k++) {
            const uint8_t q = a->qs[j][4 * r + k];
            out[4 * j + k] = mx_kvalues_mxfp4[q & 0x0f] * d;
            out[16 + 4 * j + k] = mx_kvalues_mxfp4[q >> 4] * d;
        }
}

#if defined(__x86_64__) && defined(HAVE_AVX2_BUILD)

/* The 32 codes of a block as signed bytes (values 0..15 low lane, 16..31 high lane) through the
 * table in a byte shuffle. */
__attribute__((target("avx2"))) static inline __m256i mxfp4_values(const mx_block_mxfp4 *w,
                                                                  __m128i lut) {
    const __m128i m4 = _mm_set1_epi8(0x0f);
    __m128i q = _mm_loadu_si128((const __m128i *)w->qs);
    __m128i lo = _mm_shuffle_epi8(lut, _mm_and_si128(q, m4));
    __m128i hi = _mm_shuffle_epi8(lut, _mm_and_si128(_mm_srli_epi16(q, 4), m4));
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* Sum of the 8 int32 lanes (exact). */
__attribute__((target("avx2"))) static inline int hsum_i32x8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* AVX2: signed x signed bytes via maddubs(|w|, sign(x, w)) (|w| <= 12, so pair sums fit int16),
 * then madd to int32. */
__attribute__((target("avx2"))) static float vec_dot_mxfp4_avx2(int64_t n, const void *vw,
                                                                const void *vx) {
    const mx_block_mxfp4 *w = vw;
    const mx_block_q8_0 *x = vx;
    const __m128i lut = _mm_loadu_si128((const __m128i *)mx_kvalues_mxfp4);
    const __m256i ones = _mm256_set1_epi16(1);
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < n / MX_QK_MXFP4; ib++) {
        __m256i wv = mxfp4_values(&w[ib], lut);
        __m256i xv = _mm256_loadu_si256((const __m256i *)x[ib].qs);
        __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
        int sumi = hsum_i32x8(_mm256_madd_epi16(p16, ones));
        sumf += block_scale(&w[ib], &x[ib]) * (float)sumi;
    }
    return sumf;
}

/* The 8 rows' f32 block scales 2^(e - 128) of a repacked block from its 8 E8M0 bytes, exactly
 * (mx_e8m0_to_fp32_half): e >= 2 as a normal float's exponent field e - 1, e = 0 and 1 as the
 * subnormals 2^-128 and 2^-127. */
__attribute__((target("avx2"))) static inline __m256 mxfp4x8_scales(const uint8_t e8[8]) {
    int64_t e8v;
    memcpy(&e8v, e8, 8);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i e = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(e8v));
    const __m256i big = _mm256_slli_epi32(_mm256_sub_epi32(e, one), 23);
    const __m256i small = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e);
    return _mm256_castsi256_ps(_mm256_blendv_epi8(small, big, _mm256_cmpgt_epi32(e, one)));
}

#define MX_AVX2_TARGET __attribute__((target("avx2,fma,f16c")))

/* AVX2 tile of 8 repacked MXFP4 rows times NC (1..4) Q8_0 columns: per 4 values and row,
 * maddubs(|w|, sign(x, w)) against 4 broadcast activation bytes (|w| <= 12: no int16
 * saturation), madd with ones, so each row lane holds the block's exact isum; then
 * acc += (d_w x d_x) x isum per block in block order: the scalar vec_dot's float steps, so every
 * column equals it bit for bit (no vpdpbusd here, so no +128 offset and no activation sums).
 * Why: without it MXFP4 decode on AVX2 ran the one-row vec_dot, about half as fast as
 * llama.cpp's repacked mxfp4_8x8 (tests/bench vs_llama.sh, bench-moe-mxfp4). */
MX_AVX2_TARGET static inline __attribute__((always_inline)) void
gemm_mxfp4x8_avx2_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC,
                     float *out, size_t ldo) {
    const mx_block_mxfp4x8 *a = w;
    const int64_t nb = n / MX_QK_MXFP4;
    const __m256i tbl = _mm256_broadcastsi128_si256(
        _mm_loadu_si128((const __m128i *)mx_kvalues_mxfp4));
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    const mx_block_q8_0 *xb[4];
    for (int c = 0; c < NC; c++)
        xb[c] = (const mx_block_q8_0 *)((const char *)xq + (size_t)c * xq_row);
    for (int64_t b = 0; b < nb; b++) {
        __m256i lo[4], hi[4], loa[4], hia[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m256i v = _mm256_loadu_si256((const __m256i *)a[b].qs[j]);
            lo[j] = _mm256_shuffle_epi8(tbl, _mm256_and_si256(v, m4));
            hi[j] = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4));
            loa[j] = _mm256_sign_epi8(lo[j], lo[j]);
            hia[j] = _mm256_sign_epi8(hi[j], hi[j]);
        }
        const __m256 wd = mxfp4x8_scales(a[b].e);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const int8_t *x = xb[c][b].qs;
            __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                int32_t x0, x1;
                memcpy(&x0, x + 4 * j, 4);
                memcpy(&x1, x + 16 + 4 * j, 4);
                s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(
                    loa[j], _mm256_sign_epi8(_mm256_set1_epi32(x0), lo[j])), ones));
                s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(
                    hia[j], _mm256_sign_epi8(_mm256_set1_epi32(x1), hi[j])), ones));
            }
            const __m256 d = _mm256_mul_ps(wd, _mm256_set1_ps(_cvtsh_ss(xb[c][b].d)));
            acc[c] = _mm256_add_ps(acc[c], _mm256_mul_ps(d, _mm256_cvtepi32_ps(s)));
        }
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, acc[c]);
}

/* The AVX2 gemm_x8 entry: each column count gets its own unrolled code. */
MX_AVX2_TARGET static void gemm_mxfp4x8_avx2(int64_t n, const void *w, const void *xq,
                                             size_t xq_row, int ncols, float *out, size_t ldo) {
    switch (ncols) {
    case 1: gemm_mxfp4x8_avx2_nc(n, w, xq, xq_row, 1, out, ldo); break;
    case 2: gemm_mxfp4x8_avx2_nc(n, w, xq, xq_row, 2, out, ldo); break;
    case 3: gemm_mxfp4x8_avx2_nc(n, w, xq, xq_row, 3, out, ldo); break;
    default: gemm_mxfp4x8_avx2_nc(n, w, xq, xq_row, 4, out, ldo); break;
    }
}

#ifdef HAVE_AVX512VNNI_BUILD
/* AVX-512 VNNI (256-bit registers): vpdpbusd takes |w| unsigned times sign(x, w) signed and adds
 * the 4-byte groups straight into int32 lanes. */
__attribute__((target("avx2,avx512f,avx512vl,avx512bw,avx512vnni"))) static float
vec_dot_mxfp4_vnni(int64_t n, const void *vw, const void *vx) {
    const mx_block_mxfp4 *w = vw;
    const mx_block_q8_0 *x = vx;
    const __m128i lut = _mm_loadu_si128((const __m128i *)mx_kvalues_mxfp4);
    float sumf = 0.0f;
    for (int64_t ib = 0; ib < n / MX_QK_MXFP4; ib++) {
        __m256i wv = mxfp4_values(&w[ib], lut);
        __m256i xv = _mm256_loadu_si256((const __m256i *)x[ib].qs);
        __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(wv, wv),
                                        _mm256_sign_epi8(xv, wv));
        sumf += block_scale(&w[ib], &x[ib]) * (float)hsum_i32x8(s);
    }
    return sumf;
}

#define MX_VNNI_TARGET __attribute__((target("avx2,f16c,avx512f,avx512vl,avx512bw,avx512vnni")))

/* 8 repacked MXFP4 rows times NC (1..4) Q8_0 columns (with the f32 block sums mx_quantize_act
 * appends): per block the 8 rows' isum in int32, then scale_w x d_x x isum added per block in
 * float, the scalar kernel's order (the 8 E8M0 scales made in-vector as mx_e8m0_to_fp32_half:
 * e < 2 gives the subnormal 2^21 << e bits, else (e - 1) << 23). */
MX_VNNI_TARGET static inline __attribute__((always_inline)) void
gemm_mxfp4x8_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
                size_t ldo) {
    const mx_block_mxfp4x8 *a = w;
    const int64_t nb = n / MX_QK_MXFP4;
    const size_t so = mx_act_sums_offset(n);
    int8_t lv[16];
    for (int i = 0; i < 16; i++)
        lv[i] = (int8_t)(uint8_t)(mx_kvalues_mxfp4[i] + 128);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)lv));
    const __m256i m4 = _mm256_set1_epi8(0x0f), one = _mm256_set1_epi32(1);
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
        int64_t e8;
        memcpy(&e8, a[b].e, 8);
        const __m256i e = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(e8));
        const __m256i big = _mm256_slli_epi32(_mm256_sub_epi32(e, one), 23);
        const __m256i small = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e);
        const __m256 wd = _mm256_castsi256_ps(
            _mm256_blendv_epi8(small, big, _mm256_cmpgt_epi32(e, one)));
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const int8_t *x = xb[c][b].qs;
            __m256i s = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                int32_t x0, x1;
                memcpy(&x0, x + 4 * j, 4);
                memcpy(&x1, x + 16 + 4 * j, 4);
                s = _mm256_dpbusd_epi32(s, lo[j], _mm256_set1_epi32(x0));
                s = _mm256_dpbusd_epi32(s, hi[j], _mm256_set1_epi32(x1));
            }
            s = _mm256_sub_epi32(s, _mm256_set1_epi32(128 * (int32_t)xs[c][b]));
            const __m256 d = _mm256_mul_ps(wd, _mm256_set1_ps(mx_fp16_to_fp32(xb[c][b].d)));
            acc[c] = _mm256_add_ps(acc[c], _mm256_mul_ps(d, _mm256_cvtepi32_ps(s)));
        }
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, acc[c]);
}

/* The gemm_x8 entry: each column count gets its own unrolled code. */
MX_VNNI_TARGET static void gemm_mxfp4x8(int64_t n, const void *w, const void *xq, size_t xq_row,
                                        int ncols, float *out, size_t ldo) {
    switch (ncols) {
    case 1: gemm_mxfp4x8_nc(n, w, xq, xq_row, 1, out, ldo); break;
    case 2: gemm_mxfp4x8_nc(n, w, xq, xq_row, 2, out, ldo); break;
    case 3: gemm_mxfp4x8_nc(n, w, xq, xq_row, 3, out, ldo); break;
    default: gemm_mxfp4x8_nc(n, w, xq, xq_row, 4, out, ldo); break;
    }
}
#endif

#endif /* x86-64 with AVX2 builds */


void mx_cpu_kernels_mxfp4(struct mx_cpu_kernels *k, int level) {
    k->vec_dot[MX_TYPE_MXFP4] = mx_vec_dot_mxfp4_q8_0;
#if defined(__x86_64__) && defined(HAVE_AVX2_BUILD)
    if (level >= MX_CPU_AVX2) {
        k->vec_dot[MX_TYPE_MXFP4] = vec_dot_mxfp4_avx2;
        k->gemm_x8[MX_LAYOUT_MXFP4X8] = gemm_mxfp4x8_avx2;
    }
#ifdef HAVE_AVX512VNNI_BUILD
    if (level >= MX_CPU_AVX512) {
        k->vec_dot[MX_TYPE_MXFP4] = vec_dot_mxfp4_vnni;
        k->gemm_x8[MX_LAYOUT_MXFP4X8] = gemm_mxfp4x8;
    }
#endif
#else
    (void)level;
#endif
}
