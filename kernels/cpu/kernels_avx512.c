/* kernels_avx512.c - AVX-512 VNNI versions of the repacked-weight GEMM tiles (prefill).
 *
 * Compiled on its own with -mavx512vl -mavx512vnni (kernels/cpu/cpu.am) and installed over the
 * AVX2 set by mx_cpu_kernels_init only when the CPU reports AVX-512 F/VL/BW/VNNI. vpdpbusd
 * multiplies 4 unsigned weight bytes by 4 signed activation bytes and adds them into an int32
 * lane in one instruction, where AVX2 needs maddubs, an int16 add and a final madd; with the
 * repacked layout's "4 values of each of 8 rows" vectors a lane is exactly one row. On 256-bit
 * registers (AVX-512VL) the CPU keeps its full clock and the compiler gets 32 vector registers.
 * Integer sums are exact, so these give the same bits as the AVX2 kernels (tests check it), and
 * decode (one column, memory-bound) may use them as well.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/kernels_x86.h"

#include <immintrin.h>
#include <string.h>

/* As gemm_q4_0x8_nc in kernels_avx2.c; two int32 chains per column (low and high nibbles) so
 * the vpdpbusd latency overlaps. */
static inline __attribute__((always_inline)) void
gemm_q4_0x8_vnni_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
                    size_t ldo) {
    const mx_block_q4_0x8 *a = w;
    const int64_t nb = n / MX_QK4_0;
    const size_t so = mx_act_sums_offset(n);
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
            __m256i v = _mm256_loadu_si256((const __m256i *)(a[b].qs + 32 * j));
            lo[j] = _mm256_and_si256(v, m4);
            hi[j] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        }
        __m256 wd = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)a[b].d));
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const int8_t *x = xb[c][b].qs;
            __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                s0 = _mm256_dpbusd_epi32(s0, lo[j], bcast4(x + 4 * j));
                s1 = _mm256_dpbusd_epi32(s1, hi[j], bcast4(x + 16 + 4 * j));
            }
            __m256 f = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)),
                                     _mm256_set1_ps(8.0f * xs[c][b]));
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(wd, _mm256_set1_ps(_cvtsh_ss(xb[c][b].d))), f,
                                     acc[c]);
        }
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, acc[c]);
}

MX_X8_ENTRY(gemm_q4_0x8_vnni, gemm_q4_0x8_vnni_nc)

/* As gemm_q8_0x8_nc in kernels_avx2.c (ggml's per-lane float order, one column at a time):
 * vpdpbusd takes |w| as its unsigned operand and the activation bytes carrying w's sign (|-128|
 * reads as 128 unsigned, so -128 stays exact), one instruction where AVX2 needs two. */
static inline __attribute__((always_inline)) void
gemm_q8_0x8_vnni_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
                    size_t ldo) {
    const mx_block_q8_0x8 *a = w;
    const int64_t nb = n / MX_QK8_0;
    for (int c = 0; c < NC; c++) {
        const mx_block_q8_0 *xb = (const mx_block_q8_0 *)((const char *)xq + (size_t)c * xq_row);
        __m256 acc[8];
        for (int g = 0; g < 8; g++)
            acc[g] = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            __m256 d = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)a[b].d)),
                                     _mm256_set1_ps(_cvtsh_ss(xb[b].d)));
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                __m256i wv = _mm256_loadu_si256((const __m256i *)a[b].qs[g]);
                __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(wv, wv),
                                                _mm256_sign_epi8(bcast4(xb[b].qs + 4 * g), wv));
                acc[g] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(s), acc[g]);
            }
        }
        _mm256_storeu_ps(out + (size_t)c * ldo, q8_0x8_lane_sum(acc));
    }
}

MX_X8_ENTRY(gemm_q8_0x8_vnni, gemm_q8_0x8_vnni_nc)

/* As gemm_q4_Kx8_nc in kernels_avx2.c: per 64-value chunk, vpdpbusd sums each sub-block's
 * 32 values per row in int32, then the row's 6-bit scale multiplies them (vpmulld; exact). */
static inline __attribute__((always_inline)) void
gemm_q4_Kx8_vnni_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
                    size_t ldo) {
    const mx_block_q4_Kx8 *a = w;
    const int64_t nb = n / MX_QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
    const mx_block_q8_K *xb[4];
    for (int c = 0; c < NC; c++)
        xb[c] = (const mx_block_q8_K *)((const char *)xq + (size_t)c * xq_row);
    for (int64_t b = 0; b < nb; b++) {
        const mx_block_q4_Kx8 *blk = &a[b];
        __m256i scv[8], mnv[4];
        q4kx8_header(blk->sm_lo, blk->sm_hi, true, scv, mnv);
        __m256i isum[4];
        for (int c = 0; c < NC; c++)
            isum[c] = _mm256_setzero_si256();
        for (int ch = 0; ch < 4; ch++) {
            __m256i lo[8], hi[8];
#pragma GCC unroll 8
            for (int v = 0; v < 8; v++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(blk->qs + 256 * ch + 32 * v));
                lo[v] = _mm256_and_si256(q, m4);
                hi[v] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
            }
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *x = xb[c][b].qs + 64 * ch;
                __m256i sl = _mm256_setzero_si256(), sh = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int v = 0; v < 8; v++) {
                    sl = _mm256_dpbusd_epi32(sl, lo[v], bcast4(x + 4 * v));
                    sh = _mm256_dpbusd_epi32(sh, hi[v], bcast4(x + 32 + 4 * v));
                }
                isum[c] = _mm256_add_epi32(
                    isum[c], _mm256_add_epi32(_mm256_mullo_epi32(sl, scv[2 * ch]),
                                              _mm256_mullo_epi32(sh, scv[2 * ch + 1])));
            }
        }
        __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk->d));
        __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk->dmin));
        for (int c = 0; c < NC; c++)
            q4kx8_accumulate(d, dmin, mnv, &xb[c][b], isum[c], &acc[c], &accm[c]);
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, _mm256_sub_ps(acc[c], accm[c]));
}

MX_X8_ENTRY(gemm_q4_Kx8_vnni, gemm_q4_Kx8_vnni_nc)

/* As gemm_q5_Kx8_nc in kernels_avx2.c, the sums in int32 (vpdpbusd), scaled by vpmulld. */
static inline __attribute__((always_inline)) void
gemm_q5_Kx8_vnni_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
                    size_t ldo) {
    const mx_block_q5_Kx8 *a = w;
    const int64_t nb = n / MX_QK_K;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    __m256 accm[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                      _mm256_setzero_ps()};
    const mx_block_q8_K *xb[4];
    for (int c = 0; c < NC; c++)
        xb[c] = (const mx_block_q8_K *)((const char *)xq + (size_t)c * xq_row);
    for (int64_t b = 0; b < nb; b++) {
        const mx_block_q5_Kx8 *blk = &a[b];
        __m256i scv[8], mnv[4];
        q4kx8_header(blk->sm_lo, blk->sm_hi, true, scv, mnv);
        __m256i isum[4];
        for (int c = 0; c < NC; c++)
            isum[c] = _mm256_setzero_si256();
        for (int ch = 0; ch < 4; ch++) {
            __m256i qhl = _mm256_loadu_si256((const __m256i *)blk->ch[ch].qh[0]);
            __m256i qhh = _mm256_loadu_si256((const __m256i *)blk->ch[ch].qh[1]);
            __m256i lo[8], hi[8];
#pragma GCC unroll 8
            for (int v = 0; v < 8; v++)
                q5kx8_unpack(blk->ch[ch].qs + 32 * v, qhl, qhh, v, &lo[v], &hi[v]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *x = xb[c][b].qs + 64 * ch;
                __m256i sl = _mm256_setzero_si256(), sh = _mm256_setzero_si256();
#pragma GCC unroll 8
                for (int v = 0; v < 8; v++) {
                    sl = _mm256_dpbusd_epi32(sl, lo[v], bcast4(x + 4 * v));
                    sh = _mm256_dpbusd_epi32(sh, hi[v], bcast4(x + 32 + 4 * v));
                }
                isum[c] = _mm256_add_epi32(
                    isum[c], _mm256_add_epi32(_mm256_mullo_epi32(sl, scv[2 * ch]),
                                              _mm256_mullo_epi32(sh, scv[2 * ch + 1])));
            }
        }
        __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk->d));
        __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk->dmin));
        for (int c = 0; c < NC; c++)
            q4kx8_accumulate(d, dmin, mnv, &xb[c][b], isum[c], &acc[c], &accm[c]);
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, _mm256_sub_ps(acc[c], accm[c]));
}

MX_X8_ENTRY(gemm_q5_Kx8_vnni, gemm_q5_Kx8_vnni_nc)

/* As gemm_q6_Kx8_nc in kernels_avx2.c: each 16-value group's sum per row in int32 (vpdpbusd),
 * times the group's signed scale (vpmulld), minus 32 x the scale-weighted activation sums. */
static inline __attribute__((always_inline)) void
gemm_q6_Kx8_vnni_nc(int64_t n, const void *w, const void *xq, size_t xq_row, int NC, float *out,
                    size_t ldo) {
    const mx_block_q6_Kx8 *a = w;
    const int64_t nb = n / MX_QK_K;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                     _mm256_setzero_ps()};
    const mx_block_q8_K *xb[4];
    for (int c = 0; c < NC; c++)
        xb[c] = (const mx_block_q8_K *)((const char *)xq + (size_t)c * xq_row);
    for (int64_t b = 0; b < nb; b++) {
        const mx_block_q6_Kx8 *blk = &a[b];
        __m256i isum[4], off[4];
        for (int c = 0; c < NC; c++)
            isum[c] = off[c] = _mm256_setzero_si256();
        for (int ch = 0; ch < 8; ch++) {
            __m128i sx = _mm_loadu_si128((const __m128i *)blk->ch[ch].scales);
            __m256i sa = _mm256_cvtepi8_epi32(sx);                   /* group 2ch */
            __m256i sb = _mm256_cvtepi8_epi32(_mm_srli_si128(sx, 8)); /* group 2ch + 1 */
            __m256i sp = _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(sx, _mm_srli_si128(sx, 8)));
            __m256i h0 = _mm256_loadu_si256((const __m256i *)blk->ch[ch].qh[0]);
            __m256i h1 = _mm256_loadu_si256((const __m256i *)blk->ch[ch].qh[1]);
            __m256i lo[4], hi[4];
            q6x8_unpack(blk->ch[ch].ql[0], h0, false, &lo[0], &hi[0]);
            q6x8_unpack(blk->ch[ch].ql[1], h0, true, &lo[1], &hi[1]);
            q6x8_unpack(blk->ch[ch].ql[2], h1, false, &lo[2], &hi[2]);
            q6x8_unpack(blk->ch[ch].ql[3], h1, true, &lo[3], &hi[3]);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *x = xb[c][b].qs + 32 * ch;
                __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
#pragma GCC unroll 4
                for (int j = 0; j < 4; j++) {
                    s0 = _mm256_dpbusd_epi32(s0, lo[j], bcast4(x + 4 * j));
                    s1 = _mm256_dpbusd_epi32(s1, hi[j], bcast4(x + 16 + 4 * j));
                }
                isum[c] = _mm256_add_epi32(isum[c],
                                           _mm256_add_epi32(_mm256_mullo_epi32(s0, sa),
                                                            _mm256_mullo_epi32(s1, sb)));
                int32_t bp;
                memcpy(&bp, xb[c][b].bsums + 2 * ch, 4);
                off[c] = _mm256_add_epi32(off[c], _mm256_madd_epi16(sp, _mm256_set1_epi32(bp)));
            }
        }
        __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk->d));
        for (int c = 0; c < NC; c++) {
            __m256i t = _mm256_sub_epi32(isum[c], _mm256_slli_epi32(off[c], 5));
            acc[c] = _mm256_fmadd_ps(_mm256_mul_ps(d, _mm256_set1_ps(xb[c][b].d)),
                                     _mm256_cvtepi32_ps(t), acc[c]);
        }
    }
    for (int c = 0; c < NC; c++)
        _mm256_storeu_ps(out + (size_t)c * ldo, acc[c]);
}

MX_X8_ENTRY(gemm_q6_Kx8_vnni, gemm_q6_Kx8_vnni_nc)

/* ---- decode dots of Q2_K, Q3_K (vec_dot, vec_dot2) -------------------------------------------
 * ggml's AVX2 float order as kernels_avx2.c's (per super-block the 8 int32 lanes, lane l of a
 * 32-value vector: values 4l..4l+3 times their 16-value group's scale, one FMA per block; Q2_K's
 * mins first), so the same bits; fewer instructions per vector: vpdpwssd multiplies maddubs'
 * int16 pairs by the scales and adds them into the lanes in one step (AVX2: madd + add), the
 * scales reach their lanes by one vpermw each (AVX2: a store and 16 scalar broadcasts), and Q3_K
 * takes its 3-bit value as u + 4h (0..7, the high bit set by a masked or from a test mask)
 * minus the 4 x y pairs, which depend on the column only (shared by the R = 1 or 2 rows). */
static inline __attribute__((always_inline)) void
low_k_rows_vnni(bool q3, int64_t n, const void *w, size_t w_row, const void *x, int R,
                float *out) {
    const mx_block_q8_K *b = x;
    const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4);
    /* vpermw indices: vector v's int16 lanes 0-7 take scale 2v, lanes 8-15 scale 2v + 1 */
    __m256i sidx[8];
    for (int v = 0; v < 8; v++)
        sidx[v] = _mm256_set_m128i(_mm_set1_epi16((short)(2 * v + 1)), _mm_set1_epi16((short)(2 * v)));
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        __m256i yv[8], y4[8];
#pragma GCC unroll 8
        for (int v = 0; v < 8; v++) {
            yv[v] = _mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * v));
            if (q3)
                y4[v] = _mm256_maddubs_epi16(four, yv[v]);
        }
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            const char *wr = (const char *)w + (size_t)r * w_row;
            const uint8_t *qs;
            __m256i sc16, hm = _mm256_setzero_si256();
            mx_half dh;
            if (q3) {
                const mx_block_q3_K *a = (const mx_block_q3_K *)wr + i;
                sc16 = _mm256_cvtepi8_epi16(q3_K_scales(a->scales));
                hm = _mm256_loadu_si256((const __m256i *)a->hmask);
                qs = a->qs, dh = a->d;
            } else {
                const mx_block_q2_K *a = (const mx_block_q2_K *)wr + i;
                __m128i sc8 = _mm_loadu_si128((const __m128i *)a->scales);
                sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sc8, _mm_set1_epi8(15)));
                __m256i mins = _mm256_cvtepu8_epi16(
                    _mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(15)));
                __m256i mt =
                    _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)b[i].bsums));
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(-b[i].d * _cvtsh_ss(a->dmin)),
                                         _mm256_cvtepi32_ps(mt), acc[r]);
                qs = a->qs, dh = a->d;
            }
            __m256i sumi = _mm256_setzero_si256();
#pragma GCC unroll 2
            for (int h = 0; h < 2; h++) {
                __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * h));
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    const int v = 4 * h + k;
                    __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * k), m3);
                    __m256i p16;
                    if (q3) {
                        __mmask32 hb = _mm256_test_epi8_mask(hm, _mm256_set1_epi8((char)(1 << v)));
                        u = _mm256_mask_add_epi8(u, hb, u, four);
                        p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(u, yv[v]), y4[v]);
                    } else {
                        p16 = _mm256_maddubs_epi16(u, yv[v]);
                    }
                    sumi = _mm256_dpwssd_epi32(sumi, p16,
                                               _mm256_permutexvar_epi16(sidx[v], sc16));
                }
            }
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(b[i].d * _cvtsh_ss(dh)),
                                     _mm256_cvtepi32_ps(sumi), acc[r]);
        }
    }
    for (int r = 0; r < R; r++)
        out[r] = hsum8(acc[r]);
}

static float vec_dot_q2_K_vnni(int64_t n, const void *w, const void *x) {
    float r;
    low_k_rows_vnni(false, n, w, 0, x, 1, &r);
    return r;
}

static float vec_dot_q3_K_vnni(int64_t n, const void *w, const void *x) {
    float r;
    low_k_rows_vnni(true, n, w, 0, x, 1, &r);
    return r;
}

static void vec_dot2_q2_K_vnni(int64_t n, const void *w, size_t w_row, const void *x,
                               float *out) {
    low_k_rows_vnni(false, n, w, w_row, x, 2, out);
}

static void vec_dot2_q3_K_vnni(int64_t n, const void *w, size_t w_row, const void *x,
                               float *out) {
    low_k_rows_vnni(true, n, w, w_row, x, 2, out);
}

void mx_cpu_kernels_avx512(struct mx_cpu_kernels *k) {
    k->name = "avx512vnni";
    k->gemm_x8[MX_LAYOUT_Q4_0X8] = gemm_q4_0x8_vnni;
    k->gemm_x8[MX_LAYOUT_Q4_KX8] = gemm_q4_Kx8_vnni;
    k->gemm_x8[MX_LAYOUT_Q6_KX8] = gemm_q6_Kx8_vnni;
    k->gemm_x8[MX_LAYOUT_Q5_KX8] = gemm_q5_Kx8_vnni;
    k->gemm_x8[MX_LAYOUT_Q8_0X8] = gemm_q8_0x8_vnni;
    mx_cpu_kernels_x16_avx512(k);
    k->vec_dot[MX_TYPE_Q2_K] = vec_dot_q2_K_vnni;
    k->vec_dot2[MX_TYPE_Q2_K] = vec_dot2_q2_K_vnni;
    k->vec_dot[MX_TYPE_Q3_K] = vec_dot_q3_K_vnni;
    k->vec_dot2[MX_TYPE_Q3_K] = vec_dot2_q3_K_vnni;
}
