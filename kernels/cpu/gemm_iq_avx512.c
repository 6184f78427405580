/* gemm_iq_avx512.c - AVX-512 VNNI prefill tiles of the IQ1-IQ3 grid types (gemm_iq.h).
 *
 * A tile of up to 32 rows goes as groups of 16: each group's super-blocks are expanded once
 * (gemm_iq_expand.h) into 16-row interleaved words, so one vpdpbusd takes 4 values of 16 rows
 * against one broadcast word of a column's activations (made unsigned, x + 128, once per tile
 * and 8 columns). Per 16 (or 32) values the 16 lanes' sums are scaled by each row's integer
 * scale (vpmulld) and added; per super-block the offset sum is taken off and the float steps of
 * the scalar vec_dot follow lane by lane (d = dw x dy; sumf += d x isum), so every output equals
 * vec_dot's bit for bit. 8 columns share each weight vector load (28 of 32 registers).
 *
 * Compiled with the AVX-512 VNNI flags (cpu.am); installed by kernels.c when the CPU has them.
 */
#include "kernels/cpu/gemm_iq.h"

#include <immintrin.h>

#include "kernels/cpu/gemm_iq_expand.h"

#define R16 16

/* nc (1..8, a constant after inlining) columns against one prepared 16-row group. */
static inline __attribute__((always_inline)) void
group16(const char *prep, int64_t nsb, const uint8_t *xu, const float *dy, const int nc,
        const int sub32, struct mx_iq_post post, int panel, float *out, size_t ldo, int nrows) {
    const size_t pb = mx_iq_prep_bytes(R16);
    /* the float sums live in memory (touched once per super-block): 8 columns' int32 sums
     * and group sums already take 16 of the 32 registers */
    _Alignas(64) float sumf[8][16];
    __m512i acc[8], t[8];
    _Pragma("GCC unroll 8")
    for (int c = 0; c < nc; c++)
        _mm512_store_ps(sumf[c], _mm512_setzero_ps());
    const int G = sub32 ? 8 : 16, K = sub32 ? 8 : 4;
    for (int64_t i = 0; i < nsb; i++) {
        const char *p = prep + (size_t)i * pb;
        const int32_t *sc = (const int32_t *)(p + 256 * R16);
        const uint8_t *xb = xu + 256 * i;
        _Pragma("GCC unroll 8")
        for (int c = 0; c < nc; c++)
            acc[c] = _mm512_setzero_si512();
        for (int g = 0; g < G; g++) {
            const __m512i s = _mm512_load_si512(sc + R16 * (sub32 ? 2 * g : g));
            _Pragma("GCC unroll 8")
            for (int c = 0; c < nc; c++)
                t[c] = _mm512_setzero_si512();
            _Pragma("GCC unroll 8")
            for (int k = 0; k < K; k++) {
                const int word = g * K + k;
                const __m512i wv = _mm512_load_si512(p + 64 * word);
                _Pragma("GCC unroll 8")
                for (int c = 0; c < nc; c++) {
                    int32_t xw;
                    memcpy(&xw, xb + (size_t)c * (size_t)nsb * 256 + 4 * word, 4);
                    t[c] = _mm512_dpbusd_epi32(t[c], _mm512_set1_epi32(xw), wv);
                }
            }
            _Pragma("GCC unroll 8")
            for (int c = 0; c < nc; c++)
                acc[c] = _mm512_add_epi32(acc[c], _mm512_mullo_epi32(t[c], s));
        }
        const __m512i corr = _mm512_load_si512(sc + 16 * R16);
        const __m512 dw = _mm512_load_ps((const float *)(sc + 17 * R16));
        if (panel) { /* llama.cpp's panel: fma(isum, dfac x dy, sumf), dfac = dw x 2^-k */
            const __m512 dfac = _mm512_mul_ps(dw, _mm512_set1_ps(post.dfac));
            _Pragma("GCC unroll 8")
            for (int c = 0; c < nc; c++)
                _mm512_store_ps(
                    sumf[c],
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[c], corr)),
                                    _mm512_mul_ps(dfac, _mm512_set1_ps(dy[c * nsb + i])),
                                    _mm512_load_ps(sumf[c])));
            continue;
        }
        _Pragma("GCC unroll 8")
        for (int c = 0; c < nc; c++) {
            __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[c], corr));
            if (post.inner != 1.0f)
                f = _mm512_mul_ps(f, _mm512_set1_ps(post.inner));
            const __m512 d = _mm512_mul_ps(dw, _mm512_set1_ps(dy[c * nsb + i]));
            _mm512_store_ps(sumf[c], _mm512_add_ps(_mm512_load_ps(sumf[c]), _mm512_mul_ps(d, f)));
        }
    }
    const __mmask16 m = (__mmask16)((1u << nrows) - 1);
    _Pragma("GCC unroll 8")
    for (int c = 0; c < nc; c++)
        _mm512_mask_storeu_ps(out + (size_t)c * ldo, m,
                              panel ? _mm512_load_ps(sumf[c])
                                    : _mm512_mul_ps(_mm512_set1_ps(post.outer),
                                                    _mm512_load_ps(sumf[c])));
}

/* The group kernel for a run-time column count (each count its own unrolled copy). */
static void group16_n(const char *prep, int64_t nsb, const uint8_t *xu, const float *dy, int nc,
                      int sub32, struct mx_iq_post post, int panel, float *out, size_t ldo,
                      int nrows) {
#define MX_G16(N)                                                                              \
    case N:                                                                                    \
        if (sub32)                                                                             \
            group16(prep, nsb, xu, dy, N, 1, post, panel, out, ldo, nrows);                        \
        else                                                                                   \
            group16(prep, nsb, xu, dy, N, 0, post, panel, out, ldo, nrows);                        \
        break;
    switch (nc) {
        MX_G16(1) MX_G16(2) MX_G16(3) MX_G16(4) MX_G16(5) MX_G16(6) MX_G16(7) MX_G16(8)
    default:
        break;
    }
#undef MX_G16
}

/* Words 16 kb .. 16 kb + 15 of the 16 rows of v (row-major) stored word-major at p: a 16 x 16
 * transpose of 4-byte words (32- and 64-bit unpacks within 128-bit lanes, then lane shuffles).
 * Returns the block's part of the offset sums: per row, sum over its 4 groups of 16 values of
 * scale x 128 x the group's sum (vpdpbusd of 128 bytes against the words). */
static inline __m512i interleave16(const int8_t (*v)[256], int kb, char *p) {
    __m512i a[16], t[16], u[16];
    for (int r = 0; r < 16; r++)
        a[r] = _mm512_load_si512(v[r] + 64 * kb);
    for (int r = 0; r < 16; r += 2) {
        t[r] = _mm512_unpacklo_epi32(a[r], a[r + 1]);
        t[r + 1] = _mm512_unpackhi_epi32(a[r], a[r + 1]);
    }
    /* u[4 g + m], 128-bit lane l: rows 4g..4g+3 of word 4 l + m */
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    char *o = p + 64 * 16 * kb;
    __m512i b[16]; /* b[j]: word 16 kb + j of the 16 rows */
    for (int m = 0; m < 4; m++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0x88);
        __m512i v1 = _mm512_shuffle_i32x4(u[m], u[4 + m], 0xdd);
        __m512i w0 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0x88);
        __m512i w1 = _mm512_shuffle_i32x4(u[8 + m], u[12 + m], 0xdd);
        b[m] = _mm512_shuffle_i32x4(v0, w0, 0x88);
        b[4 + m] = _mm512_shuffle_i32x4(v1, w1, 0x88);
        b[8 + m] = _mm512_shuffle_i32x4(v0, w0, 0xdd);
        b[12 + m] = _mm512_shuffle_i32x4(v1, w1, 0xdd);
    }
    const int32_t *sc = (const int32_t *)(p + 256 * R16);
    const __m512i x128 = _mm512_set1_epi8((char)0x80);
    __m512i corr = _mm512_setzero_si512();
    for (int gl = 0; gl < 4; gl++) {
        __m512i s = _mm512_setzero_si512();
        for (int k = 0; k < 4; k++) {
            _mm512_store_si512(o + 64 * (4 * gl + k), b[4 * gl + k]);
            s = _mm512_dpbusd_epi32(s, x128, b[4 * gl + k]);
        }
        corr = _mm512_add_epi32(
            corr, _mm512_mullo_epi32(s, _mm512_load_si512(sc + R16 * (4 * kb + gl))));
    }
    return corr;
}

/* Rows [0, nr) of w prepared for super-blocks [0, nsb) into dst (gemm_iq_expand.h's layout),
 * through v (R16 x n values of scratch). */
static void prepare16(enum mx_type type, const char *w, size_t w_row, int nr, int64_t nsb,
                      char *dst, int8_t *v) {
    for (int r = 0; r < R16; r++)
        mx_iq_expand_row(type, r < nr ? w + (size_t)r * w_row : NULL, r, R16, nsb, 0, v,
                         dst);
    for (int64_t i = 0; i < nsb; i++) {
        char *p = dst + (size_t)i * mx_iq_prep_bytes(R16);
        __m512i corr = _mm512_setzero_si512();
        for (int kb = 0; kb < 4; kb++)
            corr = _mm512_add_epi32(
                corr, interleave16((const int8_t(*)[256])(v + (size_t)i * R16 * 256), kb, p));
        _mm512_store_si512(p + 256 * R16 + 64 * R16, corr);
    }
}

/* The tile: prepare the row groups, then per 8 columns make them unsigned and run each group. */
static inline void tile(enum mx_type type, int64_t n, const void *w, size_t w_row, int n_rows,
                        const void *xq, size_t xq_row, int64_t ncols, float *out, size_t ldo,
                        int panel, void *scratch) {
    const int64_t nsb = n / MX_QK_K;
    const size_t gb = (size_t)nsb * mx_iq_prep_bytes(R16);
    const int ng = (n_rows + R16 - 1) / R16;
    char *prep = scratch;
    uint8_t *xu = (uint8_t *)(prep + (size_t)ng * gb);
    float *dy = (float *)(xu + (size_t)8 * (size_t)nsb * 256);
    int8_t *v = (int8_t *)(((uintptr_t)(dy + 8 * nsb) + 63) & ~(uintptr_t)63);
    const int sub32 = mx_iq_sub32(type);
    const struct mx_iq_post post = mx_iq_post_of(type);
    for (int g = 0; g < ng; g++)
        prepare16(type, (const char *)w + (size_t)(R16 * g) * w_row, w_row,
                  MX_MIN(R16, n_rows - R16 * g), nsb, prep + (size_t)g * gb, v);
    for (int64_t c = 0; c < ncols; c += 8) {
        const int nc = (int)MX_MIN(8, ncols - c);
        mx_iq_cols((const char *)xq + (size_t)c * xq_row, xq_row, nsb, nc, xu, dy);
        for (int g = 0; g < ng; g++)
            group16_n(prep + (size_t)g * gb, nsb, xu, dy, nc, sub32, post, panel,
                      out + (size_t)c * ldo + R16 * g, ldo, MX_MIN(R16, n_rows - R16 * g));
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

void mx_cpu_kernels_gemm_iq_avx512(struct mx_cpu_kernels *k) {
    k->gemm_iq[MX_TYPE_IQ2_XXS] = tile_iq2_xxs;
    k->gemm_iq[MX_TYPE_IQ2_XS] = tile_iq2_xs;
    k->gemm_iq[MX_TYPE_IQ2_S] = tile_iq2_s;
    k->gemm_iq[MX_TYPE_IQ3_XXS] = tile_iq3_xxs;
    k->gemm_iq[MX_TYPE_IQ3_S] = tile_iq3_s;
    k->gemm_iq[MX_TYPE_IQ1_S] = tile_iq1_s;
    k->gemm_iq[MX_TYPE_IQ1_M] = tile_iq1_m;
}
