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
 * weights). Prefill goes through dequantize + sgemm in matmul.c.
 */
#include "kernels/cpu/cpu.h"

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
#endif

#endif /* x86-64 with AVX2 builds */

void mx_cpu_kernels_mxfp4(struct mx_cpu_kernels *k, int level) {
    k->vec_dot[MX_TYPE_MXFP4] = mx_vec_dot_mxfp4_q8_0;
#if defined(__x86_64__) && defined(HAVE_AVX2_BUILD)
    if (level >= MX_CPU_AVX2)
        k->vec_dot[MX_TYPE_MXFP4] = vec_dot_mxfp4_avx2;
#ifdef HAVE_AVX512VNNI_BUILD
    if (level >= MX_CPU_AVX512)
        k->vec_dot[MX_TYPE_MXFP4] = vec_dot_mxfp4_vnni;
#endif
#else
    (void)level;
#endif
}
