/* attn_avx512.c - decode attention at depth over a q8_0 KV cache with integer dots (AVX-512 VNNI).
 *
 * Compiled with the AVX-512 kernels (kernels/cpu/cpu.am) and installed by mx_cpu_attn_avx512 over
 * the AVX2 set; attn_split_avx2 (attn_avx2.c) walks the cache and calls this block for every full
 * block of filled cells, so chunking, prefetch, staging of partial blocks and the merge stay in
 * one place. Why: decode attention at 16K cells runs at the FMA throughput of the core (the AVX2
 * block's 64 8-wide f32 FMAs per cell and KV head, 4 query heads of 64 dimensions, measured at
 * the rate of a pure FMA loop on this machine; a 512-bit f32 version gave nothing, the FMAs
 * double-pumped).
 * Fewer multiplies are the only way: for a q8_0 cache the query is quantized once per token to
 * q8_0, as llama.cpp does for its q8_0 cache (ggml's vec_dot_q8_0_q8_0: per 32-value block
 * d_q d_k sum q_i k_i, the integer sum exact), and vpdpbusd takes 64 products per instruction.
 * The key bytes are made unsigned (k + 128) and transposed 16 cells at a time, both once for
 * every head, and 128 times the query block's sum is subtracted from the integer sum. P V stays
 * in f32 (the weights are not integers), 16 dimensions per register with up to 4 heads'
 * accumulators in the 32 registers. mx_ref_attn stays the truth (tests/test_attn).
 */
#include "kernels/cpu/cpu.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/base/quant.h"
#include "core/base/util.h"

/* e^x for 16 floats: the Cephes polynomial of exp8 (kernels_x86.h) on 512-bit registers, so the
 * softmax of this block matches the AVX2 one's to the last bit of each lane. */
static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(x, _mm512_set1_ps(88.3762626647949f));
    x = _mm512_max_ps(x, _mm512_set1_ps(-88.3762626647949f));
    __m512 fx = _mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f));
    fx = _mm512_roundscale_ps(fx, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 z = _mm512_mul_ps(x, x);
    __m512 y = _mm512_set1_ps(1.9875691500e-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
    y = _mm512_fmadd_ps(y, z, x);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    __m512i e = _mm512_slli_epi32(
        _mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

/* 16 values of a q8_0 cache row from element i (i % 16 == 0) as f32. */
static inline __attribute__((always_inline)) __m512 load16_q8(const char *row, int64_t i) {
    const mx_block_q8_0 *b = (const mx_block_q8_0 *)row + i / MX_QK8_0;
    __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + i % MX_QK8_0)));
    return _mm512_mul_ps(_mm512_cvtepi32_ps(q), _mm512_set1_ps(_cvtsh_ss(b->d)));
}

/* The query's side of one head and one pair of q8_0 blocks (64 dimensions): the 64 int8 values,
 * 128 x each block's sum (lanes 0-7 block a, 8-15 block b) and each block's scale the same
 * way (qk_q8t broadcasts lanes 0 and 8). */
struct qpair {
    __m512i q, corr;
    __m512 d;
};

/* qpair of blocks b[0], b[1]: the sums through vpdpbusd with bytes of 1, then added within each
 * 256-bit half (pairs, quads, 128-bit lanes). */
static inline struct qpair make_qpair(const mx_block_q8_0 *b) {
    struct qpair r;
    r.q = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[0].qs)),
                             _mm256_loadu_si256((const __m256i *)b[1].qs), 1);
    __m512i s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(1), r.q);
    s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_CDAB));
    s = _mm512_add_epi32(s, _mm512_shuffle_epi32(s, _MM_PERM_BADC));
    s = _mm512_add_epi32(s, _mm512_shuffle_i32x4(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
    r.corr = _mm512_slli_epi32(s, 7);
    r.d = _mm512_mask_blend_ps(0xff00, _mm512_set1_ps(_cvtsh_ss(b[0].d)),
                               _mm512_set1_ps(_cvtsh_ss(b[1].d)));
    return r;
}

/* A 16 x 16 transpose of 32-bit elements: t[e] lane c = r[c] element e (unpack epi32, unpack
 * epi64, then 128-bit lanes gathered across four registers in two shuffle_i32x4 steps). */
static inline __attribute__((always_inline)) void transpose16(const __m512i r[16], __m512i t[16]) {
    __m512i a[16], b[16];
    for (int k = 0; k < 8; k++) {
        a[2 * k] = _mm512_unpacklo_epi32(r[2 * k], r[2 * k + 1]);
        a[2 * k + 1] = _mm512_unpackhi_epi32(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) {
        b[4 * k] = _mm512_unpacklo_epi64(a[4 * k], a[4 * k + 2]);
        b[4 * k + 1] = _mm512_unpackhi_epi64(a[4 * k], a[4 * k + 2]);
        b[4 * k + 2] = _mm512_unpacklo_epi64(a[4 * k + 1], a[4 * k + 3]);
        b[4 * k + 3] = _mm512_unpackhi_epi64(a[4 * k + 1], a[4 * k + 3]);
    }
    for (int m = 0; m < 4; m++) { /* b[4k + m] lane L: element 4L + m of rows 4k .. 4k + 3 */
        __m512i clo = _mm512_shuffle_i32x4(b[m], b[4 + m], _MM_SHUFFLE(2, 0, 2, 0));
        __m512i chi = _mm512_shuffle_i32x4(b[m], b[4 + m], _MM_SHUFFLE(3, 1, 3, 1));
        __m512i dlo = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], _MM_SHUFFLE(2, 0, 2, 0));
        __m512i dhi = _mm512_shuffle_i32x4(b[8 + m], b[12 + m], _MM_SHUFFLE(3, 1, 3, 1));
        t[m] = _mm512_shuffle_i32x4(clo, dlo, _MM_SHUFFLE(2, 0, 2, 0));
        t[8 + m] = _mm512_shuffle_i32x4(clo, dlo, _MM_SHUFFLE(3, 1, 3, 1));
        t[4 + m] = _mm512_shuffle_i32x4(chi, dhi, _MM_SHUFFLE(2, 0, 2, 0));
        t[12 + m] = _mm512_shuffle_i32x4(chi, dhi, _MM_SHUFFLE(3, 1, 3, 1));
    }
}

/* Unnormalised scores of the G query heads of KV head g against the MX_ATTN_CBLOCK cells from
 * c0 (q8_0 rows) into S (rows MX_ATTN_CBLOCK apart), 16 cells at a time with the cells in the
 * lanes: their 64 key bytes per block pair (made unsigned) are transposed once (4 bytes of each
 * cell per 32-bit lane) for every head, so each head's 16 vpdpbusd (the query's 4 bytes
 * broadcast) leave the 16 cells' two block sums in two registers, then the block scales
 * (d_q d_k). A first version kept cells in rows and reduced 8 cells per head with a tree: at 4
 * heads per KV head the trees cost more than the products (1.39x over AVX2 at 16K, this one
 * 1.55x). qp[h * nz + z], qd[h * nz + z]: the heads' block pairs (nz = HD / 64), qd their 64
 * query bytes as 16 dwords. */
static inline __attribute__((always_inline)) void
qk_q8t(int HD, const struct mx_tensor *kc, int64_t c0, int64_t g, int64_t G,
       const struct qpair *qp, const int32_t (*qd)[16], float *S) {
    const int64_t CB = MX_ATTN_CBLOCK, nz = HD / 64;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (int64_t j0 = 0; j0 < CB; j0 += 16) {
        for (int64_t z = 0; z < nz; z++) {
            __m512i r[16], t[16];
            uint16_t dk[32]; /* the 16 cells' scales of block a, then of block b */
            for (int c = 0; c < 16; c++) {
                const mx_block_q8_0 *b = (const mx_block_q8_0 *)((const char *)kc->data +
                                                                 (size_t)(c0 + j0 + c) *
                                                                     kc->nb[1]) +
                                         (g * HD) / MX_QK8_0 + 2 * z;
                dk[c] = b[0].d;
                dk[16 + c] = b[1].d;
                r[c] = _mm512_xor_si512( /* k + 128 as unsigned bytes */
                    _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[0].qs)),
                        _mm256_loadu_si256((const __m256i *)b[1].qs), 1),
                    flip);
            }
            transpose16(r, t);
            __m512 dka = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)dk));
            __m512 dkb = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(dk + 16)));
            for (int64_t h = 0; h < G; h++) {
                const struct qpair *q = &qp[h * nz + z];
                const int32_t *w = qd[h * nz + z];
                __m512i ia = _mm512_setzero_si512(), ib = _mm512_setzero_si512();
#pragma GCC unroll 8
                for (int i = 0; i < 8; i++) {
                    ia = _mm512_dpbusd_epi32(ia, t[i], _mm512_set1_epi32(w[i]));
                    ib = _mm512_dpbusd_epi32(ib, t[8 + i], _mm512_set1_epi32(w[8 + i]));
                }
                ia = _mm512_sub_epi32(ia, _mm512_permutexvar_epi32(_mm512_setzero_si512(),
                                                                  q->corr));
                ib = _mm512_sub_epi32(ib, _mm512_permutexvar_epi32(_mm512_set1_epi32(8),
                                                                  q->corr));
                __m512 da = _mm512_permutexvar_ps(_mm512_setzero_si512(), q->d);
                __m512 db = _mm512_permutexvar_ps(_mm512_set1_epi32(8), q->d);
                __m512 f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ib), _mm512_mul_ps(db, dkb),
                                           _mm512_mul_ps(_mm512_cvtepi32_ps(ia),
                                                         _mm512_mul_ps(da, dka)));
                float *out = S + h * CB + j0;
                _mm512_storeu_ps(out, z ? _mm512_add_ps(_mm512_loadu_ps(out), f) : f);
            }
        }
    }
}

/* acc[h][hd] += sum_j P[h][j] V[c0 + j] (KV head g, q8_0 rows) for NH (1..4) heads over
 * MX_ATTN_CBLOCK cells, 64 dimensions (4 registers per head) per pass: the 4 NH accumulators
 * stay in registers while the cells' V pieces stream past, each converted once for the NH
 * heads. hd % 64 == 0. */
static inline __attribute__((always_inline)) void
pv_heads(int NH, int HD, const struct mx_tensor *vc, int64_t c0, int64_t g,
         int64_t hd, const float *P, float *acc) {
    const int64_t CB = MX_ATTN_CBLOCK, D = HD;
    const char *base = (const char *)vc->data + (size_t)c0 * vc->nb[1];
    for (int64_t i0 = 0; i0 < D; i0 += 64) {
        __m512 o[4][4];
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                o[h][v] = _mm512_loadu_ps(acc + h * hd + i0 + 16 * v);
        for (int64_t j = 0; j < CB; j++) {
            const char *row = base + (size_t)j * vc->nb[1];
            __m512 x[4];
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                x[v] = load16_q8(row, g * hd + i0 + 16 * v);
#pragma GCC unroll 4
            for (int h = 0; h < NH; h++) {
                __m512 pw = _mm512_set1_ps(P[h * CB + j]);
#pragma GCC unroll 4
                for (int v = 0; v < 4; v++)
                    o[h][v] = _mm512_fmadd_ps(pw, x[v], o[h][v]);
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++)
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                _mm512_storeu_ps(acc + h * hd + i0 + 16 * v, o[h][v]);
    }
}

/* The online-softmax update of one head over a block: S row sr holds its raw scores, vis the
 * visible cells (bit j: cell j); the row becomes the weights e^(s - m), m, l and acc row ar are
 * updated (acc rescaled when the max moved). A head that sees no cell gets weights 0. */
static inline void softmax_row(float *sr, uint32_t vis, float scale, float *m, float *l,
                               float *ar, int64_t hd) {
    const __m512 ninf = _mm512_set1_ps(-INFINITY), sc = _mm512_set1_ps(scale);
    const __mmask16 v0 = (__mmask16)(vis & 0xffff), v1 = (__mmask16)(vis >> 16);
    __m512 s0 = _mm512_mask_mul_ps(ninf, v0, _mm512_loadu_ps(sr), sc);
    __m512 s1 = _mm512_mask_mul_ps(ninf, v1, _mm512_loadu_ps(sr + 16), sc);
    float mb = _mm512_reduce_max_ps(_mm512_max_ps(s0, s1));
    if (mb == -INFINITY) {
        memset(sr, 0, MX_ATTN_CBLOCK * sizeof(float));
        return;
    }
    float mold = *m, mnew = mold > mb ? mold : mb;
    float corr = mold == -INFINITY ? 0.0f : expf(mold - mnew);
    __m512 mn = _mm512_set1_ps(mnew);
    __m512 p0 = _mm512_maskz_mov_ps(v0, exp16(_mm512_sub_ps(s0, mn)));
    __m512 p1 = _mm512_maskz_mov_ps(v1, exp16(_mm512_sub_ps(s1, mn)));
    _mm512_storeu_ps(sr, p0);
    _mm512_storeu_ps(sr + 16, p1);
    *l = *l * corr + _mm512_reduce_add_ps(_mm512_add_ps(p0, p1));
    *m = mnew;
    if (corr != 1.0f) {
        __m512 cv = _mm512_set1_ps(corr);
        for (int64_t i = 0; i < hd; i += 16)
            _mm512_storeu_ps(ar + i, _mm512_mul_ps(_mm512_loadu_ps(ar + i), cv));
    }
}

/* Query block pairs one block() keeps: 64 heads of a KV head (attn_split's MX_ATTN_FUSED_G) x 2
 * pairs (head size 128). */
#define MX_ATTN_QPAIRS 128

/* One block of MX_ATTN_CBLOCK filled cells for the G query heads of KV head g, read in place:
 * scores from the quantized query qx (the token's heads as q8_0 blocks, ggml's
 * quantizer), each head's softmax update, then P V 4 heads at a time. acc, mrow, lrow: every
 * head's running state; S: [G][CB] scratch. */
static inline __attribute__((always_inline)) void
block(int HD, const struct mx_ref_args *a, int64_t c0, int64_t g, uint32_t vis,
      const mx_block_q8_0 *qx, float *acc, float *mrow, float *lrow, float *S) {
    const struct mx_attn_params *p = a->p;
    const int64_t hd = HD, G = p->n_head / p->n_head_kv, nz = HD / 64;
    const int64_t CB = MX_ATTN_CBLOCK;
    struct qpair qp[MX_ATTN_QPAIRS]; /* G x nz: the callers' G is at most 64, hd 128 */
    for (int64_t h = 0; h < G * nz; h++)
        qp[h] = make_qpair(qx + (g * G + h / nz) * (hd / MX_QK8_0) + 2 * (h % nz));
    int32_t qd[MX_ATTN_QPAIRS][16];
    for (int64_t h = 0; h < G * nz; h++) {
        const mx_block_q8_0 *b = qx + (g * G + h / nz) * (hd / MX_QK8_0) + 2 * (h % nz);
        memcpy(qd[h], b[0].qs, MX_QK8_0);
        memcpy(qd[h] + 8, b[1].qs, MX_QK8_0);
    }
    qk_q8t(HD, a->src[1], c0, g, G, qp, (const int32_t (*)[16])qd, S);
    for (int64_t hh = 0; hh < G; hh++) {
        const int64_t h = g * G + hh;
        softmax_row(S + hh * CB, vis, p->scale, &mrow[h], &lrow[h], acc + h * hd, hd);
    }
    for (int64_t h0 = 0; h0 < G; h0 += 4) {
        const float *pp = S + h0 * CB;
        float *o = acc + (g * G + h0) * hd;
        switch (MX_MIN(4, G - h0)) {
        case 4: pv_heads(4, HD, a->src[2], c0, g, hd, pp, o); break;
        case 3: pv_heads(3, HD, a->src[2], c0, g, hd, pp, o); break;
        case 2: pv_heads(2, HD, a->src[2], c0, g, hd, pp, o); break;
        default: pv_heads(1, HD, a->src[2], c0, g, hd, pp, o); break;
        }
    }
}

/* block() for head sizes 64 and 128 (most models; constants, so the loops unroll) over a q8_0
 * cache with the query quantized (qx non-NULL); false otherwise (the caller then uses the AVX2
 * block). */
static bool attn_block_avx512(const struct mx_ref_args *a, int64_t c0, int64_t g, uint32_t vis,
                              const void *qx, float *acc, float *mrow, float *lrow, float *S) {
    const int64_t hd = ((const struct mx_attn_params *)a->p)->head_dim;
    if (!qx || a->src[1]->type != MX_TYPE_Q8_0 || a->src[2]->type != MX_TYPE_Q8_0)
        return false;
    if (hd == 64)
        block(64, a, c0, g, vis, qx, acc, mrow, lrow, S);
    else if (hd == 128)
        block(128, a, c0, g, vis, qx, acc, mrow, lrow, S);
    else
        return false;
    return true;
}

/* Installs the AVX-512 VNNI decode block (q8_0 cache) over the AVX2 attention set. */
void mx_cpu_attn_avx512(struct mx_cpu_kernels *k) {
    k->attn_block = attn_block_avx512;
}
