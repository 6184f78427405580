/* gemm_x16_avx512.c - prefill GEMM tiles on 512-bit registers: two repacked 8-row groups (16
 * weight rows) times up to 8 quantized activation columns per call.
 *
 * Why: prompt processing spends ~80 % of its time in these tiles (MoE experts and attention
 * projections; the bench model at 512 tokens). The 8-row tiles of kernels_avx512.c run
 * vpdpbusd on 256-bit registers, 8 rows x 4 bytes per instruction, and unpack the weights once
 * for at most 4 columns. Here the lower 256 bits hold group g's 8 rows and the upper 256 bits
 * group g + 1's (the repacked layout is unchanged: the two groups are simply 8 rows apart), so
 * one instruction does the work of two, and the unpacked weights serve 8 columns, which the 32
 * vector registers hold. ik_llama.cpp reaches its prefill rate the same way (16 interleaved
 * rows in a zmm, many columns per tile); the repacked layout and the arithmetic are mixel's own.
 *
 * Bits: every lane runs exactly the float steps of its 8-row twin in kernels_avx512.c /
 * kernels_avx2.c (same integer sums, which are exact in any order; the same products and FMAs
 * in the same order per block), so a row's value does not depend on whether it came through a
 * 16-row tile, an 8-row tile, with 1 or 8 columns: prefill equals decode bit for bit
 * (tests/test_repack.c checks it).
 *
 * Compiled with the AVX-512 F/VL/BW/VNNI flags of libmx_avx512 (kernels/cpu/cpu.am) and
 * installed by mx_cpu_kernels_avx512 only on CPUs that report them.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/kernels_x86.h"

#include <immintrin.h>
#include <string.h>

/* GCC turns the tiles' loops that zero accumulator arrays into memset calls (rep stos), which
 * moves those arrays to memory: the Q4_K tile then loaded and stored each column's integer sums
 * per sub-block (~20 % of its time, perf annotate). Clang does not do this. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif

/* 32 bytes of group 0 (low half) and the matching 32 bytes of group 1 (high half). */
static inline __m512i ld2(const void *p0, const void *p1) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p0)),
                              _mm256_loadu_si256((const __m256i *)p1), 1);
}

/* Two 8-lane vectors as one 16-lane vector (group 0 low, group 1 high). */
static inline __m512i cat_i(__m256i a, __m256i b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

/* The 16 rows' f16 scales (8 of group 0, 8 of group 1) as f32. */
static inline __m512 scales16(const mx_half *d0, const mx_half *d1) {
    __m256i h = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)d0)),
        _mm_loadu_si128((const __m128i *)d1), 1);
    return _mm512_cvtph_ps(h);
}

/* 4 activation bytes broadcast to all 16 rows' lanes. */
static inline __m512i bcast4_16(const int8_t *x) {
    int32_t v;
    memcpy(&v, x, 4);
    return _mm512_set1_epi32(v);
}

/* Writes the 16 row values of column c: rows 0-7 from group 0, 8-15 from group 1. */
static inline void store16(float *out, __m512 v) {
    _mm512_storeu_ps(out, v);
}

/* A gemm_x16 entry: the ncols switch over an always-inline kernel that takes NC as a constant
 * (each column count gets its own unrolled code and register allocation). */
#define MX_X16_ENTRY(name, kernel)                                                            \
    static void name(int64_t n, const void *w, size_t gstride, const void *xq, size_t xq_row, \
                     int ncols, float *out, size_t ldo) {                                     \
        switch (ncols) {                                                                      \
        case 1: kernel(n, w, gstride, xq, xq_row, 1, out, ldo); break;                        \
        case 2: kernel(n, w, gstride, xq, xq_row, 2, out, ldo); break;                        \
        case 3: kernel(n, w, gstride, xq, xq_row, 3, out, ldo); break;                        \
        case 4: kernel(n, w, gstride, xq, xq_row, 4, out, ldo); break;                        \
        case 5: kernel(n, w, gstride, xq, xq_row, 5, out, ldo); break;                        \
        case 6: kernel(n, w, gstride, xq, xq_row, 6, out, ldo); break;                        \
        case 7: kernel(n, w, gstride, xq, xq_row, 7, out, ldo); break;                        \
        default: kernel(n, w, gstride, xq, xq_row, 8, out, ldo); break;                       \
        }                                                                                     \
    }

/* Q4_0: per block, the 16 rows' nibbles (0..15) times the column's Q8_0 bytes in int32 lanes,
 * the chain started at -8 x sum(x) (the table at mx_act_pre_offset), so it ends at the exact
 * integer (sum - 8 x sum(x)) that gemm_q4_0x8_vnni_nc forms in f32 (exactly, all terms being
 * small integers); then the same FMA with (row scale x column scale). Per column and block:
 * 8 vpdpbusd in two chains (one chain of 8 measured ~290-297 GFLOP/s against ~320, rough), an
 * add, a conversion, a multiply and an FMA; the broadcasts come from memory. */
static inline __attribute__((always_inline)) void
gemm_q4_0x16_nc(int64_t n, const void *w, size_t gstride, const void *xq, size_t xq_row, int NC,
                float *out, size_t ldo) {
    const mx_block_q4_0x8 *a0 = w;
    const mx_block_q4_0x8 *a1 = (const mx_block_q4_0x8 *)((const char *)w + gstride);
    const int64_t nb = n / MX_QK4_0;
    const size_t po = mx_act_pre_offset(n);
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 acc[8];
    const mx_block_q8_0 *xb[8];
    const char *xp[8]; /* per block: f32 scale, int32 -8 x sum */
    for (int c = 0; c < NC; c++) {
        acc[c] = _mm512_setzero_ps();
        xb[c] = (const mx_block_q8_0 *)((const char *)xq + (size_t)c * xq_row);
        xp[c] = (const char *)xb[c] + po;
    }
    for (int64_t b = 0; b < nb; b++) {
        __m512i lo[4], hi[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            __m512i v = ld2(a0[b].qs + 32 * j, a1[b].qs + 32 * j);
            lo[j] = _mm512_and_si512(v, m4);
            hi[j] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        }
        __m512 wd = scales16(a0[b].d, a1[b].d);
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++) {
            const int8_t *x = xb[c][b].qs;
            float xd;
            int32_t m8;
            memcpy(&xd, xp[c] + 8 * b, 4);
            memcpy(&m8, xp[c] + 8 * b + 4, 4);
            __m512i s0 = _mm512_set1_epi32(m8), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                s0 = _mm512_dpbusd_epi32(s0, lo[j], bcast4_16(x + 4 * j));
                s1 = _mm512_dpbusd_epi32(s1, hi[j], bcast4_16(x + 16 + 4 * j));
            }
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(wd, _mm512_set1_ps(xd)),
                                     _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), acc[c]);
        }
    }
    for (int c = 0; c < NC; c++)
        store16(out + (size_t)c * ldo, acc[c]);
}

MX_X16_ENTRY(gemm_q4_0x16, gemm_q4_0x16_nc)

/* As q4kx8_min_sums for 16 rows: per row, the sum over the 8 sub-blocks of min x the
 * activation's sub-block sum (from Q8_K's 16 bsums, paired once for both groups), int32. */
static inline __m512i q4kx16_min_sums(const __m512i mnv[4], const int16_t *bsums) {
    __m256i bs = _mm256_loadu_si256((const __m256i *)bsums);
    __m128i bx = _mm_hadd_epi16(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
    __m512i p0 = _mm512_madd_epi16(mnv[0], _mm512_broadcastd_epi32(bx));
    __m512i p1 = _mm512_madd_epi16(mnv[1], _mm512_broadcastd_epi32(_mm_srli_si128(bx, 4)));
    __m512i p2 = _mm512_madd_epi16(mnv[2], _mm512_broadcastd_epi32(_mm_srli_si128(bx, 8)));
    __m512i p3 = _mm512_madd_epi16(mnv[3], _mm512_broadcastd_epi32(_mm_srli_si128(bx, 12)));
    return _mm512_add_epi32(_mm512_add_epi32(p0, p1), _mm512_add_epi32(p2, p3));
}

/* Q4_K and Q5_K (q5: the fifth bits added, as q5kx8_unpack does): per 32-value sub-block, the 16 rows' nibbles times the column's Q8_K bytes (int32),
 * times the row's 6-bit scale (vpmulld, exact), summed over the super-block; then the steps of
 * q4kx8_accumulate per lane (d x xd x sum, dmin x xd x min terms) and acc - accm at the end,
 * as gemm_q4_Kx8_vnni_nc. One half-chunk of weights (8 vectors) is live at a time so 8
 * columns' sums fit the registers; the float accumulators, touched once per super-block, live
 * in memory (as registers they pushed the sums out: spills in the inner loop). */
static inline __attribute__((always_inline)) void
gemm_k4x16_nc(int64_t n, const void *w, size_t gstride, const void *xq, size_t xq_row, int NC,
              float *out, size_t ldo, bool q5) {
    const size_t bsz = q5 ? sizeof(mx_block_q5_Kx8) : sizeof(mx_block_q4_Kx8);
    const char *a0 = w, *a1 = (const char *)w + gstride;
    const int64_t nb = n / MX_QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m10 = _mm512_set1_epi8(0x10);
    float acc[8][16], accm[8][16];
    const mx_block_q8_K *xb[8];
    for (int c = 0; c < NC; c++) {
        _mm512_storeu_ps(acc[c], _mm512_setzero_ps());
        _mm512_storeu_ps(accm[c], _mm512_setzero_ps());
        xb[c] = (const mx_block_q8_K *)((const char *)xq + (size_t)c * xq_row);
    }
    for (int64_t b = 0; b < nb; b++) {
        /* Q4_K and Q5_K x8 blocks share the header's layout (d, dmin, sm_lo, sm_hi) */
        const mx_block_q4_Kx8 *k0 = (const mx_block_q4_Kx8 *)(a0 + (size_t)b * bsz);
        const mx_block_q4_Kx8 *k1 = (const mx_block_q4_Kx8 *)(a1 + (size_t)b * bsz);
        const mx_block_q5_Kx8 *f0 = (const mx_block_q5_Kx8 *)k0, *f1 = (const mx_block_q5_Kx8 *)k1;
        __m256i scv0[8], mnv0[4], scv1[8], mnv1[4];
        q4kx8_header(k0->sm_lo, k0->sm_hi, true, scv0, mnv0);
        q4kx8_header(k1->sm_lo, k1->sm_hi, true, scv1, mnv1);
        __m512i isum[8];
        /* unrolled: as a loop GCC makes it a memset, which puts isum in memory (a load and a
         * store per column and sub-block; ~20 % of the tile's time) */
#pragma GCC unroll 8
        for (int c = 0; c < NC; c++)
            isum[c] = _mm512_setzero_si512();
        for (int sb = 0; sb < 8; sb++) { /* sub-block: chunk sb / 2, low or high nibbles */
            const int ch = sb / 2, high = sb % 2;
            __m512i q[8];
            if (q5) { /* the fifth bits: bit v of qh[high] to bit 4 of each byte */
                __m512i qh = ld2(f0->ch[ch].qh[high], f1->ch[ch].qh[high]);
#pragma GCC unroll 8
                for (int v = 0; v < 8; v++) {
                    __m512i raw = ld2(f0->ch[ch].qs + 32 * v, f1->ch[ch].qs + 32 * v);
                    __m512i hb = v <= 4 ? _mm512_slli_epi16(qh, 4 - v)
                                        : _mm512_srli_epi16(qh, v - 4);
                    q[v] = _mm512_or_si512(
                        _mm512_and_si512(high ? _mm512_srli_epi16(raw, 4) : raw, m4),
                        _mm512_and_si512(hb, m10));
                }
            } else {
#pragma GCC unroll 8
                for (int v = 0; v < 8; v++) {
                    __m512i raw = ld2(k0->qs + 256 * ch + 32 * v, k1->qs + 256 * ch + 32 * v);
                    q[v] = _mm512_and_si512(high ? _mm512_srli_epi16(raw, 4) : raw, m4);
                }
            }
            __m512i sc = cat_i(scv0[sb], scv1[sb]);
#pragma GCC unroll 8
            for (int c = 0; c < NC; c++) {
                const int8_t *x = xb[c][b].qs + 64 * ch + 32 * high;
                __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++) { /* two chains: vpdpbusd latency */
                    s0 = _mm512_dpbusd_epi32(s0, q[v], bcast4_16(x + 4 * v));
                    s1 = _mm512_dpbusd_epi32(s1, q[v + 4], bcast4_16(x + 16 + 4 * v));
                }
                isum[c] = _mm512_add_epi32(isum[c],
                                           _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc));
            }
        }
        __m512 d = scales16(k0->d, k1->d), dmin = scales16(k0->dmin, k1->dmin);
        __m512i mnv[4];
        for (int p = 0; p < 4; p++)
            mnv[p] = cat_i(mnv0[p], mnv1[p]);
        for (int c = 0; c < NC; c++) {
            __m512 xd = _mm512_set1_ps(xb[c][b].d);
            __m512i ms = q4kx16_min_sums(mnv, xb[c][b].bsums);
            _mm512_storeu_ps(acc[c], _mm512_fmadd_ps(_mm512_mul_ps(d, xd),
                                                     _mm512_cvtepi32_ps(isum[c]),
                                                     _mm512_loadu_ps(acc[c])));
            _mm512_storeu_ps(accm[c], _mm512_fmadd_ps(_mm512_mul_ps(dmin, xd),
                                                      _mm512_cvtepi32_ps(ms),
                                                      _mm512_loadu_ps(accm[c])));
        }
    }
    for (int c = 0; c < NC; c++)
        store16(out + (size_t)c * ldo,
                _mm512_sub_ps(_mm512_loadu_ps(acc[c]), _mm512_loadu_ps(accm[c])));
}

static inline __attribute__((always_inline)) void
gemm_q4_Kx16_nc(int64_t n, const void *w, size_t gstride, const void *xq, size_t xq_row, int NC,
                float *out, size_t ldo) {
    gemm_k4x16_nc(n, w, gstride, xq, xq_row, NC, out, ldo, false);
}

static inline __attribute__((always_inline)) void
gemm_q5_Kx16_nc(int64_t n, const void *w, size_t gstride, const void *xq, size_t xq_row, int NC,
                float *out, size_t ldo) {
    gemm_k4x16_nc(n, w, gstride, xq, xq_row, NC, out, ldo, true);
}

MX_X16_ENTRY(gemm_q5_Kx16, gemm_q5_Kx16_nc)
MX_X16_ENTRY(gemm_q4_Kx16, gemm_q4_Kx16_nc)

/* One ql vector of two Q6_K x8 chunks (group 0 low, group 1 high) with their qh vectors: the
 * 6-bit values of the low and high nibbles, as q6x8_unpack does for one group. */
static inline void q6x16_unpack(const uint8_t *ql0, const uint8_t *ql1, __m512i h, bool odd,
                                __m512i *lo, __m512i *hi) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    __m512i l = ld2(ql0, ql1);
    __m512i hl = odd ? h : _mm512_slli_epi16(h, 4);
    __m512i hh = odd ? _mm512_srli_epi16(h, 2) : _mm512_slli_epi16(h, 2);
    *lo = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_and_si512(hl, m30));
    *hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                          _mm512_and_si512(hh, m30));
}

/* Q6_K: each 16-value group's sum per row in int32 (vpdpbusd on the unsigned q + 32), times
 * the group's signed scale (vpmulld), minus 32 x the scale-weighted activation group sums; the
 * integer total is the one gemm_q6_Kx8_vnni_nc forms (exact, in another order), then the same
 * single FMA per super-block. */
static inline __attribute__((always_inline)) void
gemm_q6_Kx16_nc(int64_t n, const void *w, size_t gstride, const void *xq, size_t xq_row, int NC,
                float *out, size_t ldo) {
    const mx_block_q6_Kx8 *a0 = w;
    const mx_block_q6_Kx8 *a1 = (const mx_block_q6_Kx8 *)((const char *)w + gstride);
    const int64_t nb = n / MX_QK_K;
    __m512 acc[8];
    const mx_block_q8_K *xb[8];
    for (int c = 0; c < NC; c++) {
        acc[c] = _mm512_setzero_ps();
        xb[c] = (const mx_block_q8_K *)((const char *)xq + (size_t)c * xq_row);
    }
    for (int64_t b = 0; b < nb; b++) {
        const mx_block_q6_Kx8 *k0 = &a0[b], *k1 = &a1[b];
        __m512i isum[8];
        for (int c = 0; c < NC; c++)
            isum[c] = _mm512_setzero_si512();
        for (int ch = 0; ch < 8; ch++) {
            __m128i sx0 = _mm_loadu_si128((const __m128i *)k0->ch[ch].scales);
            __m128i sx1 = _mm_loadu_si128((const __m128i *)k1->ch[ch].scales);
            __m512i sa = cat_i(_mm256_cvtepi8_epi32(sx0), _mm256_cvtepi8_epi32(sx1));
            __m512i sb = cat_i(_mm256_cvtepi8_epi32(_mm_srli_si128(sx0, 8)),
                               _mm256_cvtepi8_epi32(_mm_srli_si128(sx1, 8)));
            /* 32 x the scale pairs (int16; |32 x 128| fits), so the madd below is the offset */
            __m512i sp = _mm512_slli_epi16(
                cat_i(_mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sx0, _mm_srli_si128(sx0, 8))),
                      _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sx1, _mm_srli_si128(sx1, 8)))),
                5);
            __m512i h0 = ld2(k0->ch[ch].qh[0], k1->ch[ch].qh[0]);
            __m512i h1 = ld2(k0->ch[ch].qh[1], k1->ch[ch].qh[1]);
            __m512i lo[4], hi[4];
            q6x16_unpack(k0->ch[ch].ql[0], k1->ch[ch].ql[0], h0, false, &lo[0], &hi[0]);
            q6x16_unpack(k0->ch[ch].ql[1], k1->ch[ch].ql[1], h0, true, &lo[1], &hi[1]);
            q6x16_unpack(k0->ch[ch].ql[2], k1->ch[ch].ql[2], h1, false, &lo[2], &hi[2]);
            q6x16_unpack(k0->ch[ch].ql[3], k1->ch[ch].ql[3], h1, true, &lo[3], &hi[3]);
#pragma GCC unroll 8
            for (int c = 0; c < NC; c++) {
                const int8_t *x = xb[c][b].qs + 32 * ch;
                __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    s0 = _mm512_dpbusd_epi32(s0, lo[j], bcast4_16(x + 4 * j));
                    s1 = _mm512_dpbusd_epi32(s1, hi[j], bcast4_16(x + 16 + 4 * j));
                }
                int32_t bp;
                memcpy(&bp, xb[c][b].bsums + 2 * ch, 4);
                __m512i off = _mm512_madd_epi16(sp, _mm512_set1_epi32(bp));
                isum[c] = _mm512_add_epi32(
                    isum[c], _mm512_sub_epi32(_mm512_add_epi32(_mm512_mullo_epi32(s0, sa),
                                                               _mm512_mullo_epi32(s1, sb)),
                                              off));
            }
        }
        __m512 d = scales16(k0->d, k1->d);
        for (int c = 0; c < NC; c++)
            acc[c] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(xb[c][b].d)),
                                     _mm512_cvtepi32_ps(isum[c]), acc[c]);
    }
    for (int c = 0; c < NC; c++)
        store16(out + (size_t)c * ldo, acc[c]);
}

MX_X16_ENTRY(gemm_q6_Kx16, gemm_q6_Kx16_nc)

/* Q8_0 in ggml's per-lane float order (gemm_q8_0x8_nc): for each column, 8 accumulators, one
 * per 4-value group g of the block (lane r = row r), fed by d x (the group's exact int32 sum);
 * summed at the end as q8_0x8_lane_sum sums them, per 256-bit half. Signed weights: vpdpbusd
 * takes |w| and the activation bytes negated where w < 0 (AVX-512 has no byte sign op; where
 * w = 0 the product is 0 either way, as with sign). Two columns at a time share |w| and the
 * masks (16 accumulators); an odd last column runs alone. */
static inline __attribute__((always_inline)) void
gemm_q8_0x16_cols(int64_t nb, const mx_block_q8_0x8 *a0, const mx_block_q8_0x8 *a1,
                  const mx_block_q8_0 *const *xb, int NC, float *out, size_t ldo) {
    __m512 acc[2][8];
    for (int c = 0; c < NC; c++)
        for (int g = 0; g < 8; g++)
            acc[c][g] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        __m512 wd = scales16(a0[b].d, a1[b].d), d[2];
        for (int c = 0; c < NC; c++)
            d[c] = _mm512_mul_ps(wd, _mm512_set1_ps(_cvtsh_ss(xb[c][b].d)));
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            __m512i wv = ld2(a0[b].qs[g], a1[b].qs[g]);
            __m512i aw = _mm512_abs_epi8(wv);
            __mmask64 neg = _mm512_movepi8_mask(wv);
            for (int c = 0; c < NC; c++) {
                __m512i xv = bcast4_16(xb[c][b].qs + 4 * g);
                xv = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
                __m512i sv = _mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, xv);
                acc[c][g] = _mm512_fmadd_ps(d[c], _mm512_cvtepi32_ps(sv), acc[c][g]);
            }
        }
    }
    for (int c = 0; c < NC; c++) {
        __m512 u0 = _mm512_add_ps(_mm512_add_ps(acc[c][4], acc[c][0]),
                                  _mm512_add_ps(acc[c][6], acc[c][2]));
        __m512 u1 = _mm512_add_ps(_mm512_add_ps(acc[c][5], acc[c][1]),
                                  _mm512_add_ps(acc[c][7], acc[c][3]));
        store16(out + (size_t)c * ldo, _mm512_add_ps(u0, u1));
    }
}

static void gemm_q8_0x16(int64_t n, const void *w, size_t gstride, const void *xq, size_t xq_row,
                         int ncols, float *out, size_t ldo) {
    const mx_block_q8_0x8 *a0 = w;
    const mx_block_q8_0x8 *a1 = (const mx_block_q8_0x8 *)((const char *)w + gstride);
    const int64_t nb = n / MX_QK8_0;
    int c = 0;
    for (; c + 2 <= ncols; c += 2) {
        const mx_block_q8_0 *xb[2] = {
            (const mx_block_q8_0 *)((const char *)xq + (size_t)c * xq_row),
            (const mx_block_q8_0 *)((const char *)xq + (size_t)(c + 1) * xq_row)};
        gemm_q8_0x16_cols(nb, a0, a1, xb, 2, out + (size_t)c * ldo, ldo);
    }
    if (c < ncols) {
        const mx_block_q8_0 *xb[1] = {
            (const mx_block_q8_0 *)((const char *)xq + (size_t)c * xq_row)};
        gemm_q8_0x16_cols(nb, a0, a1, xb, 1, out + (size_t)c * ldo, ldo);
    }
}

void mx_cpu_kernels_x16_avx512(struct mx_cpu_kernels *k) {
    k->gemm_x16[MX_LAYOUT_Q4_0X8] = gemm_q4_0x16;
    k->gemm_x16[MX_LAYOUT_Q4_KX8] = gemm_q4_Kx16;
    k->gemm_x16[MX_LAYOUT_Q6_KX8] = gemm_q6_Kx16;
    k->gemm_x16[MX_LAYOUT_Q5_KX8] = gemm_q5_Kx16;
    k->gemm_x16[MX_LAYOUT_Q8_0X8] = gemm_q8_0x16;
}
