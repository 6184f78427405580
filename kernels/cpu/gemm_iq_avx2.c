/* gemm_iq_avx2.c - AVX2 prefill tiles of the IQ1-IQ3 grid types (gemm_iq.h).
 *
 * A tile of up to 32 rows goes as groups of 8: each group's super-blocks are expanded once
 * (gemm_iq_expand.h) into 8-row interleaved words, so one maddubs takes 4 values of 8 rows
 * against one broadcast word of a column's activations (made unsigned, x + 128, once per tile
 * and 4 columns; |w| <= 62, so a pair of products stays below 2^15), and one madd applies each
 * row's 16-bit scale while summing the pairs into int32. Per super-block the offset sum is taken
 * off and the float steps of the scalar vec_dot follow lane by lane (d = dw x dy; sumf +=
 * d x isum), so every output equals vec_dot's bit for bit.
 *
 * Compiled with -mavx2 -mfma -mf16c (cpu.am); installed by kernels.c when the CPU has them.
 */
#include "kernels/cpu/gemm_iq.h"

#include <immintrin.h>

#include "kernels/cpu/gemm_iq_expand.h"

#define R8 8

/* nc (1..4, a constant after inlining) columns against one prepared 8-row group. */
static inline __attribute__((always_inline)) void
group8(const char *prep, int64_t nsb, const uint8_t *xu, const float *dy, const int nc,
       struct mx_iq_post post, int panel, float *out, size_t ldo, int nrows) {
    const size_t pb = mx_iq_prep_bytes(R8);
    __m256 sumf[4];
    __m256i acc[4];
    _Pragma("GCC unroll 8")
    for (int c = 0; c < nc; c++)
        sumf[c] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nsb; i++) {
        const char *p = prep + (size_t)i * pb;
        const int32_t *sc = (const int32_t *)(p + 256 * R8);
        const uint8_t *xb = xu + 256 * i;
        _Pragma("GCC unroll 8")
        for (int c = 0; c < nc; c++)
            acc[c] = _mm256_setzero_si256();
        for (int g = 0; g < 16; g++) {
            const __m256i s = _mm256_load_si256((const __m256i *)(sc + R8 * g));
            _Pragma("GCC unroll 8")
            for (int k = 0; k < 4; k++) {
                const int word = 4 * g + k;
                const __m256i wv = _mm256_load_si256((const __m256i *)(p + 32 * word));
                _Pragma("GCC unroll 8")
                for (int c = 0; c < nc; c++) {
                    int32_t xw;
                    memcpy(&xw, xb + (size_t)c * (size_t)nsb * 256 + 4 * word, 4);
                    __m256i pr = _mm256_maddubs_epi16(_mm256_set1_epi32(xw), wv);
                    acc[c] = _mm256_add_epi32(acc[c], _mm256_madd_epi16(pr, s));
                }
            }
        }
        const __m256i corr = _mm256_load_si256((const __m256i *)(sc + 16 * R8));
        const __m256 dw = _mm256_load_ps((const float *)(sc + 17 * R8));
        if (panel) { /* llama.cpp's panel: fma(isum, dfac x dy, sumf), dfac = dw x 2^-k */
            const __m256 dfac = _mm256_mul_ps(dw, _mm256_set1_ps(post.dfac));
            _Pragma("GCC unroll 8")
            for (int c = 0; c < nc; c++)
                sumf[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[c], corr)),
                                          _mm256_mul_ps(dfac, _mm256_set1_ps(dy[c * nsb + i])),
                                          sumf[c]);
            continue;
        }
        _Pragma("GCC unroll 8")
        for (int c = 0; c < nc; c++) {
            __m256 f = _mm256_cvtepi32_ps(_mm256_sub_epi32(acc[c], corr));
            if (post.inner != 1.0f)
                f = _mm256_mul_ps(f, _mm256_set1_ps(post.inner));
            const __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(dy[c * nsb + i]));
            sumf[c] = _mm256_add_ps(sumf[c], _mm256_mul_ps(d, f));
        }
    }
    _Pragma("GCC unroll 8")
    for (int c = 0; c < nc; c++) {
        _Alignas(32) float v[8];
        _mm256_store_ps(v, panel ? sumf[c] : _mm256_mul_ps(_mm256_set1_ps(post.outer), sumf[c]));
        memcpy(out + (size_t)c * ldo, v, (size_t)nrows * sizeof(float));
    }
}

/* The group kernel for a run-time column count (each count its own unrolled copy). */
static void group8_n(const char *prep, int64_t nsb, const uint8_t *xu, const float *dy, int nc,
                     struct mx_iq_post post, int panel, float *out, size_t ldo, int nrows) {
    switch (nc) {
    case 1: group8(prep, nsb, xu, dy, 1, post, panel, out, ldo, nrows); break;
    case 2: group8(prep, nsb, xu, dy, 2, post, panel, out, ldo, nrows); break;
    case 3: group8(prep, nsb, xu, dy, 3, post, panel, out, ldo, nrows); break;
    case 4: group8(prep, nsb, xu, dy, 4, post, panel, out, ldo, nrows); break;
    default: break;
    }
}

/* Words 8 kb .. 8 kb + 7 of the 8 rows of v (row-major) stored word-major at p: an 8 x 8
 * transpose of 4-byte words (32- and 64-bit unpacks within 128-bit lanes, then lane swaps).
 * Returns the block's part of the offset sums: per row, sum over its 2 groups of 16 values of
 * scale x 128 x the group's sum (maddubs of 128 bytes against the words, madd by the scale). */
static inline __m256i interleave8(const int8_t (*v)[256], int kb, char *p) {
    __m256i a[8], t[8], u[8];
    for (int r = 0; r < 8; r++)
        a[r] = _mm256_load_si256((const __m256i *)(v[r] + 32 * kb));
    for (int r = 0; r < 8; r += 2) {
        t[r] = _mm256_unpacklo_epi32(a[r], a[r + 1]);
        t[r + 1] = _mm256_unpackhi_epi32(a[r], a[r + 1]);
    }
    /* u[4 g + m], 128-bit lane l: rows 4g..4g+3 of word 4 l + m */
    for (int g = 0; g < 2; g++) {
        u[4 * g + 0] = _mm256_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm256_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm256_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm256_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    char *o = p + 32 * 8 * kb;
    __m256i b[8]; /* b[j]: word 8 kb + j of the 8 rows */
    for (int m = 0; m < 4; m++) {
        b[m] = _mm256_permute2x128_si256(u[m], u[4 + m], 0x20);
        b[4 + m] = _mm256_permute2x128_si256(u[m], u[4 + m], 0x31);
    }
    const int32_t *sc = (const int32_t *)(p + 256 * R8);
    const __m256i x128 = _mm256_set1_epi8((char)0x80);
    __m256i corr = _mm256_setzero_si256();
    for (int j = 0; j < 8; j++) {
        _mm256_store_si256((__m256i *)(o + 32 * j), b[j]);
        /* 128 (w0 + w1) per 16-bit lane: at most 128 x 124, no saturation */
        __m256i pr = _mm256_maddubs_epi16(x128, b[j]);
        const __m256i s = _mm256_load_si256((const __m256i *)(sc + R8 * (2 * kb + j / 4)));
        corr = _mm256_add_epi32(corr, _mm256_madd_epi16(pr, s));
    }
    return corr;
}

/* Rows [0, nr) of w prepared for super-blocks [0, nsb) into dst (gemm_iq_expand.h's layout),
 * through v (R8 x n values of scratch). */
static void prepare8(enum mx_type type, const char *w, size_t w_row, int nr, int64_t nsb,
                      char *dst, int8_t *v) {
    for (int r = 0; r < R8; r++)
        mx_iq_expand_row(type, r < nr ? w + (size_t)r * w_row : NULL, r, R8, nsb, 1, v,
                         dst);
    for (int64_t i = 0; i < nsb; i++) {
        char *p = dst + (size_t)i * mx_iq_prep_bytes(R8);
        __m256i corr = _mm256_setzero_si256();
        for (int kb = 0; kb < 8; kb++)
            corr = _mm256_add_epi32(
                corr, interleave8((const int8_t(*)[256])(v + (size_t)i * R8 * 256), kb, p));
        _mm256_store_si256((__m256i *)(p + 256 * R8 + 64 * R8), corr);
    }
}

/* The tile: prepare the row groups, then per 4 columns make them unsigned and run each group. */
static inline void tile(enum mx_type type, int64_t n, const void *w, size_t w_row, int n_rows,
                        const void *xq, size_t xq_row, int64_t ncols, float *out, size_t ldo,
                        int panel, void *scratch) {
    const int64_t nsb = n / MX_QK_K;
    const size_t gb = (size_t)nsb * mx_iq_prep_bytes(R8);
    const int ng = (n_rows + R8 - 1) / R8;
    char *prep = scratch;
    uint8_t *xu = (uint8_t *)(prep + (size_t)ng * gb);
    float *dy = (float *)(xu + (size_t)8 * (size_t)nsb * 256);
    int8_t *v = (int8_t *)(((uintptr_t)(dy + 8 * nsb) + 63) & ~(uintptr_t)63);
    const struct mx_iq_post post = mx_iq_post_of(type);
    for (int g = 0; g < ng; g++)
        prepare8(type, (const char *)w + (size_t)(R8 * g) * w_row, w_row,
                 MX_MIN(R8, n_rows - R8 * g), nsb, prep + (size_t)g * gb, v);
    for (int64_t c = 0; c < ncols; c += 4) {
        const int nc = (int)MX_MIN(4, ncols - c);
        mx_iq_cols((const char *)xq + (size_t)c * xq_row, xq_row, nsb, nc, xu, dy);
        for (int g = 0; g < ng; g++)
            group8_n(prep + (size_t)g * gb, nsb, xu, dy, nc, post, panel,
                     out + (size_t)c * ldo + R8 * g, ldo, MX_MIN(R8, n_rows - R8 * g));
    }
}

/* One entry point per type, so tile() and the expansion inline with the type constant. */
#define MX_TILE_FN(name, T)                                                                    \
    static void name(int64_t n, const void *w, size_t w_row, int n_rows, const void *xq,      \
                     size_t xq_row, int64_t ncols, float *out, size_t ldo, int panel,         \
                     void *scratch) {                                                         \
        tile(T, n, w, w_row, n_rows, xq, xq_row, ncols, out, ldo, panel, scratch);            \
    }
MX_TILE_FN(tile_iq2_xxs, MX_TYPE_IQ2_XXS)
MX_TILE_FN(tile_iq2_xs, MX_TYPE_IQ2_XS)
MX_TILE_FN(tile_iq2_s, MX_TYPE_IQ2_S)
MX_TILE_FN(tile_iq3_xxs, MX_TYPE_IQ3_XXS)
MX_TILE_FN(tile_iq3_s, MX_TYPE_IQ3_S)
MX_TILE_FN(tile_iq1_s, MX_TYPE_IQ1_S)
MX_TILE_FN(tile_iq1_m, MX_TYPE_IQ1_M)
#undef MX_TILE_FN

void mx_cpu_kernels_gemm_iq_avx2(struct mx_cpu_kernels *k) {
    k->gemm_iq[MX_TYPE_IQ2_XXS] = tile_iq2_xxs;
    k->gemm_iq[MX_TYPE_IQ2_XS] = tile_iq2_xs;
    k->gemm_iq[MX_TYPE_IQ2_S] = tile_iq2_s;
    k->gemm_iq[MX_TYPE_IQ3_XXS] = tile_iq3_xxs;
    k->gemm_iq[MX_TYPE_IQ3_S] = tile_iq3_s;
    k->gemm_iq[MX_TYPE_IQ1_S] = tile_iq1_s;
    k->gemm_iq[MX_TYPE_IQ1_M] = tile_iq1_m;
}
