/* attn_avx2.c - AVX2 + FMA + F16C attention kernels of the CPU backend.
 *
 * Compiled with the other AVX2 kernels (kernels/cpu/cpu.am) and installed by mx_cpu_attn_avx2 from
 * mx_cpu_kernels_avx2. Kept apart from the matmul kernels because attention is a concern of its
 * own: flash-style prefill, split decode with a merge, and the dense path. mx_ref_attn
 * (ref_ops.c) is the truth they are tested against.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/kernels_x86.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "core/base/quant.h"
#include "core/base/util.h"

/* ---- attention ---------------------------------------------------------------------------------
 * Flash-style: for one KV head and a block of query tokens, stream the cache in blocks of 8 cells
 * and keep a running max, sum and output per query row (online softmax), so each cached K/V byte
 * is read once per query block and no n_kv-long score row is materialised. Keys are transposed
 * per block so 8 scores come out of head_dim broadcast-FMAs with no horizontal sums. */

/* n values from element i0 of a cache row into f32. */
static inline void load_slice(enum mx_type type, const void *row, int64_t i0, int64_t n,
                              float *out) {
    if (type == MX_TYPE_F32) {
        memcpy(out, (const float *)row + i0, (size_t)n * sizeof(float));
    } else if (type == MX_TYPE_F16) {
        const uint16_t *h = (const uint16_t *)row + i0;
        for (int64_t i = 0; i < n; i += 8)
            _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    } else if (type == MX_TYPE_Q8_0) { /* block by block; whole blocks 8 values at a time */
        const mx_block_q8_0 *b = row;
        for (int64_t i = 0; i < n;) {
            int64_t j = i0 + i, off = j % MX_QK8_0, cnt = MX_MIN(MX_QK8_0 - off, n - i);
            const mx_block_q8_0 *bj = &b[j / MX_QK8_0];
            float d = _cvtsh_ss(bj->d);
            if (cnt == MX_QK8_0) {
                __m256 dv = _mm256_set1_ps(d);
                for (int k = 0; k < MX_QK8_0; k += 8) {
                    __m256i q =
                        _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(bj->qs + k)));
                    _mm256_storeu_ps(out + i + k, _mm256_mul_ps(_mm256_cvtepi32_ps(q), dv));
                }
            } else {
                for (int64_t k = 0; k < cnt; k++)
                    out[i + k] = (float)bj->qs[off + k] * d;
            }
            i += cnt;
        }
    } else {
        mx_ref_load_f32(type, row, i0, n, out);
    }
}

/* Cache positions of cells [c0, c0 + n) into kp (-1 past end or for an empty cell); true when
 * some query at a position in [qmin, qmax] sees at least one of them (causal, window). */
static bool block_kpos(const int32_t *kpos, int64_t c0, int64_t end, int64_t n, int32_t qmin,
                       int32_t qmax, int32_t window, int32_t *kp) {
    bool any = false;
    for (int64_t j = 0; j < n; j++) {
        kp[j] = c0 + j < end ? kpos[c0 + j] : -1;
        any |= kp[j] >= 0 && kp[j] <= qmax && (window == 0 || (int64_t)qmin - kp[j] < window);
    }
    return any;
}

/* Lanes of 8 cells (positions kp) a query at position qp sees: filled, not in its future,
 * within the window (0: none). */
static inline __m256i visible8(__m256i kp, int32_t qp, int32_t window) {
    __m256i v = _mm256_and_si256(_mm256_cmpgt_epi32(kp, _mm256_set1_epi32(-1)),
                                 _mm256_cmpgt_epi32(_mm256_set1_epi32(qp + 1), kp));
    if (window > 0)
        v = _mm256_and_si256(v, _mm256_cmpgt_epi32(_mm256_set1_epi32(window),
                                                   _mm256_sub_epi32(_mm256_set1_epi32(qp), kp)));
    return v;
}

/* The keys and values of cells c0 + j (j < n, kp as block_kpos), elements [i0, i0 + len) of
 * each row, as f32 rows ld apart; empty cells give zeros (their scores are masked, and V must
 * stay finite). */
static void stage_kv(const struct mx_ref_args *a, const int32_t *kp, int64_t c0, int64_t n,
                     int64_t i0, int64_t len, float *kb, float *vb, int64_t ld) {
    const struct mx_tensor *kc = a->src[1], *vc = a->src[2];
    for (int64_t j = 0; j < n; j++) {
        if (kp[j] < 0) {
            memset(kb + j * ld, 0, (size_t)len * sizeof(float));
            memset(vb + j * ld, 0, (size_t)len * sizeof(float));
            continue;
        }
        load_slice(kc->type, (const char *)kc->data + (size_t)(c0 + j) * kc->nb[1], i0, len,
                   kb + j * ld);
        load_slice(vc->type, (const char *)vc->data + (size_t)(c0 + j) * vc->nb[1], i0, len,
                   vb + j * ld);
    }
}

/* Query row (token t, head h) into qr, rounded in ggml mode as ggml rounds it for the cache
 * type (f16; q8_0 blocks). */
static void load_query(const struct mx_ref_args *a, int64_t t, int64_t h, float *qr) {
    const struct mx_tensor *q = a->src[0], *kc = a->src[1];
    const struct mx_attn_params *p = a->p;
    const int64_t hd = p->head_dim;
    memcpy(qr, (const char *)q->data + (size_t)(t * p->n_head + h) * q->nb[1],
           (size_t)hd * sizeof(float));
    if (a->act_mode == MX_ACT_GGML && kc->type == MX_TYPE_F16)
        mx_ref_round_act(MX_TYPE_F16, qr, hd);
    else if (a->act_mode == MX_ACT_GGML && kc->type == MX_TYPE_Q8_0 && hd % 32 == 0)
        mx_ref_round_act(MX_TYPE_Q8_0, qr, hd);
}

/* Prefill: many query rows share each cache block, so the two products of a block go through
 * sgemm (S = Q K^T over MX_ATTN_GBLOCK cells, then acc += P V); only the masking and the online
 * softmax stay here. q rows, acc, m and l as in attn_avx2; kb, vb: [GB][hd], S: [R][GB]. */
static void attn_blocks_gemm(const struct mx_ref_args *a, int64_t g, int64_t t0, int64_t R,
                             int64_t G, int32_t qmin, int32_t qmax, const float *qs, float *acc,
                             float *mrow, float *lrow, float *kb, float *vb, float *S) {
    const int32_t *qpos = a->src[3]->data, *kpos = a->src[4]->data;
    const struct mx_attn_params *p = a->p;
    const int64_t hd = p->head_dim, n_kv = p->n_kv, GB = MX_ATTN_GBLOCK;
    for (int64_t c0 = 0; c0 < n_kv; c0 += GB) {
        int32_t kp[MX_ATTN_GBLOCK];
        if (!block_kpos(kpos, c0, n_kv, GB, qmin, qmax, p->window, kp))
            continue;
        stage_kv(a, kp, c0, GB, g * hd, hd, kb, vb, hd);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)GB, (int)hd, p->scale,
                    qs, (int)hd, kb, (int)hd, 0.0f, S, (int)GB);
        for (int64_t r = 0; r < R; r++) {
            int32_t qp = qpos[t0 + r / G];
            float *sr = S + r * GB;
            __m256 mv = _mm256_set1_ps(-INFINITY);
            for (int64_t j = 0; j < GB; j += 8) {
                __m256i v = visible8(_mm256_loadu_si256((const __m256i *)(kp + j)), qp, p->window);
                __m256 sv = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), _mm256_loadu_ps(sr + j),
                                             _mm256_castsi256_ps(v));
                _mm256_storeu_ps(sr + j, sv);
                mv = _mm256_max_ps(mv, sv);
            }
            float mb = hmax8(mv);
            if (mb == -INFINITY) { /* nothing visible to this row here: contributes nothing */
                memset(sr, 0, (size_t)GB * sizeof(float));
                continue;
            }
            float mold = mrow[r], mnew = mold > mb ? mold : mb;
            float corr = mold == -INFINITY ? 0.0f : expf(mold - mnew);
            __m256 lsum = _mm256_setzero_ps(), mn = _mm256_set1_ps(mnew);
            for (int64_t j = 0; j < GB; j += 8) {
                __m256 sv = _mm256_loadu_ps(sr + j);
                __m256 vis = _mm256_cmp_ps(sv, _mm256_set1_ps(-INFINITY), _CMP_NEQ_OQ);
                __m256 pv = _mm256_and_ps(exp8(_mm256_sub_ps(sv, mn)), vis);
                lsum = _mm256_add_ps(lsum, pv);
                _mm256_storeu_ps(sr + j, pv);
            }
            lrow[r] = lrow[r] * corr + hsum8(lsum);
            mrow[r] = mnew;
            if (corr != 1.0f) {
                float *ar = acc + r * hd;
                for (int64_t i = 0; i < hd; i++)
                    ar[i] *= corr;
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)hd, (int)GB, 1.0f, S,
                    (int)GB, vb, (int)hd, 1.0f, acc, (int)hd);
    }
}

/* Scores of one query row against 8 staged keys (kb: 8 rows of hd, ld apart): the 8 dot products
 * advance
 * together (8 independent FMA chains; one chain per key ran at FMA latency, not throughput),
 * then one transpose-add tree gives the 8 sums. */
static inline __m256 qk8(const float *qr, const float *kb, int64_t hd, int64_t ld) {
    __m256 d[8];
    __m256 q0 = _mm256_loadu_ps(qr);
#pragma GCC unroll 8
    for (int jj = 0; jj < 8; jj++)
        d[jj] = _mm256_mul_ps(q0, _mm256_loadu_ps(kb + jj * ld));
    for (int64_t i = 8; i < hd; i += 8) {
        __m256 qi = _mm256_loadu_ps(qr + i);
    #pragma GCC unroll 8
    for (int jj = 0; jj < 8; jj++)
            d[jj] = _mm256_fmadd_ps(qi, _mm256_loadu_ps(kb + jj * ld + i), d[jj]);
    }
    return hsum8x8(d);
}

/* ar[0..hd) = ar * corr + sum_j pj[j] * vb[j][..] over n cells (rows ld apart): 64 dimensions
 * at a time, so 8 independent FMA chains run at throughput (two chains over all cells were
 * latency-bound). */
static inline void pv_accum(float *ar, const float *pj, const float *vb, int64_t n, int64_t hd,
                            int64_t ld, float corr) {
    __m256 cv = _mm256_set1_ps(corr);
    int64_t i0 = 0;
    for (; i0 + 64 <= hd; i0 += 64) {
        __m256 o[8];
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
            o[k] = _mm256_mul_ps(_mm256_loadu_ps(ar + i0 + 8 * k), cv);
        for (int64_t j = 0; j < n; j++) {
            __m256 pv = _mm256_set1_ps(pj[j]);
    #pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
                o[k] = _mm256_fmadd_ps(pv, _mm256_loadu_ps(vb + j * ld + i0 + 8 * k), o[k]);
        }
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++)
            _mm256_storeu_ps(ar + i0 + 8 * k, o[k]);
    }
    for (; i0 < hd; i0 += 8) {
        __m256 o0 = _mm256_mul_ps(_mm256_loadu_ps(ar + i0), cv), o1 = _mm256_setzero_ps();
        for (int64_t j = 0; j + 1 < n; j += 2) {
            o0 = _mm256_fmadd_ps(_mm256_set1_ps(pj[j]), _mm256_loadu_ps(vb + j * ld + i0), o0);
            o1 = _mm256_fmadd_ps(_mm256_set1_ps(pj[j + 1]),
                                 _mm256_loadu_ps(vb + (j + 1) * ld + i0), o1);
        }
        if (n % 2)
            o0 = _mm256_fmadd_ps(_mm256_set1_ps(pj[n - 1]),
                                 _mm256_loadu_ps(vb + (n - 1) * ld + i0), o0);
        _mm256_storeu_ps(ar + i0, _mm256_add_ps(o0, o1));
    }
}

/* One online-softmax step of a query row over MX_ATTN_CBLOCK cells: s are the scaled scores
 * (-inf where vis hides the cell); updates the row's running max *m, sum *l and unnormalised
 * output ar with the cells' values vb (rows ld apart). A row that sees none of them is left as
 * it is. */
static inline void softmax_step(const __m256 *s, const __m256 *vis, float *m, float *l,
                                float *ar, const float *vb, int64_t hd, int64_t ld) {
    const int64_t NS = MX_ATTN_CBLOCK / 8;
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (int64_t sb = 0; sb < NS; sb++)
        mv = _mm256_max_ps(mv, s[sb]);
    float mb = hmax8(mv);
    if (mb == -INFINITY)
        return;
    float mold = *m, mnew = mold > mb ? mold : mb;
    float corr = mold == -INFINITY ? 0.0f : expf(mold - mnew);
    __m256 lsum = _mm256_setzero_ps();
    float pj[MX_ATTN_CBLOCK];
    for (int64_t sb = 0; sb < NS; sb++) {
        __m256 pv = _mm256_and_ps(exp8(_mm256_sub_ps(s[sb], _mm256_set1_ps(mnew))), vis[sb]);
        lsum = _mm256_add_ps(lsum, pv);
        _mm256_storeu_ps(pj + 8 * sb, pv);
    }
    *l = *l * corr + hsum8(lsum);
    *m = mnew;
    pv_accum(ar, pj, vb, MX_ATTN_CBLOCK, hd, ld, corr);
}

/* Query heads per KV head up to which decode reads blocks in place (its scratch is on the
 * stack). */
#define MX_ATTN_FUSED_G 64

/* ---- fused decode block ------------------------------------------------------------------------
 * Staging converted a block's whole rows to f32 (128 KiB for 32 cells of 8 KV heads) and every
 * query head of a group then re-read them from L2: the staging writes and the G re-reads, not
 * the cache, bounded decode at depth (about 5 GB/s of cache per thread). Here the cache is read
 * in place: 8 values at a time are converted in registers (F16C; q8_0 as int8 x scale) and used
 * by every query head of the group before the next 8 are loaded, so each cached byte is touched
 * once per block from L1 and nothing is written but the scores. */

/* 8 values of a cache row of type `type` from element i (i % 8 == 0) as f32; inlined with a
 * constant type so each kernel below has one straight path. */
static inline __attribute__((always_inline)) __m256 kv_load8(enum mx_type type, const char *row,
                                                             int64_t i) {
    if (type == MX_TYPE_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
    if (type == MX_TYPE_Q8_0) {
        const mx_block_q8_0 *b = (const mx_block_q8_0 *)row + i / MX_QK8_0;
        __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + i % MX_QK8_0)));
        return _mm256_mul_ps(_mm256_cvtepi32_ps(q), _mm256_set1_ps(_cvtsh_ss(b->d)));
    }
    return _mm256_loadu_ps((const float *)row + i);
}

/* Unnormalised scores of NH (1..4, a constant after inlining) query heads q[h][hd] against
 * cells c0 .. c0 + MX_ATTN_CBLOCK of KV head g into S[h][MX_ATTN_CBLOCK]. Two cells advance
 * together: each 8 query values are loaded once for both, each 8 key values converted once
 * for the NH heads, 2 NH independent FMA chains in registers; 8 cells' vectors per head then
 * reduce in one transpose-add (hsum8x8). */
static inline __attribute__((always_inline)) void
qk_heads(enum mx_type type, int NH, const struct mx_tensor *kc, int64_t c0, int64_t g,
         int64_t hd, const float *q, float *S) {
    const int64_t CB = MX_ATTN_CBLOCK;
    for (int64_t j0 = 0; j0 < CB; j0 += 8) {
        __m256 part[4][8];
        for (int64_t jj = 0; jj < 8; jj += 2) {
            const char *r0 = (const char *)kc->data + (size_t)(c0 + j0 + jj) * kc->nb[1];
            const char *r1 = r0 + kc->nb[1];
            __m256 a0[4], a1[4];
#pragma GCC unroll 4
            for (int h = 0; h < NH; h++)
                a0[h] = a1[h] = _mm256_setzero_ps();
            for (int64_t i = 0; i < hd; i += 8) {
                __m256 k0 = kv_load8(type, r0, g * hd + i), k1 = kv_load8(type, r1, g * hd + i);
#pragma GCC unroll 4
                for (int h = 0; h < NH; h++) {
                    __m256 qv = _mm256_loadu_ps(q + h * hd + i);
                    a0[h] = _mm256_fmadd_ps(qv, k0, a0[h]);
                    a1[h] = _mm256_fmadd_ps(qv, k1, a1[h]);
                }
            }
#pragma GCC unroll 4
            for (int h = 0; h < NH; h++) {
                part[h][jj] = a0[h];
                part[h][jj + 1] = a1[h];
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++)
            _mm256_storeu_ps(S + h * CB + j0, hsum8x8(part[h]));
    }
}

/* acc[h][hd] += sum_j P[h][j] V[c0 + j] (KV head g) for NH (1..4) heads over MX_ATTN_CBLOCK
 * cells: 16 output dimensions at a time, the 2 NH accumulators stay in registers while the
 * cells' V pieces stream past, each converted once for the NH heads and each weight broadcast
 * once for both halves (one set of NH chains over 32 cells ran at FMA latency). */
static inline __attribute__((always_inline)) void
pv_heads(enum mx_type type, int NH, const struct mx_tensor *vc, int64_t c0, int64_t g,
         int64_t hd, const float *P, float *acc) {
    const int64_t CB = MX_ATTN_CBLOCK;
    const char *base = (const char *)vc->data + (size_t)c0 * vc->nb[1];
    int64_t i = 0;
    for (; i + 16 <= hd; i += 16) {
        __m256 o0[4], o1[4];
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++) {
            o0[h] = _mm256_loadu_ps(acc + h * hd + i);
            o1[h] = _mm256_loadu_ps(acc + h * hd + i + 8);
        }
        for (int64_t j = 0; j < CB; j++) {
            const char *row = base + (size_t)j * vc->nb[1];
            __m256 v0 = kv_load8(type, row, g * hd + i), v1 = kv_load8(type, row, g * hd + i + 8);
#pragma GCC unroll 4
            for (int h = 0; h < NH; h++) {
                __m256 pw = _mm256_broadcast_ss(P + h * CB + j);
                o0[h] = _mm256_fmadd_ps(pw, v0, o0[h]);
                o1[h] = _mm256_fmadd_ps(pw, v1, o1[h]);
            }
        }
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++) {
            _mm256_storeu_ps(acc + h * hd + i, o0[h]);
            _mm256_storeu_ps(acc + h * hd + i + 8, o1[h]);
        }
    }
    if (i < hd) { /* hd % 16 == 8: the last 8 dimensions */
        __m256 o[4];
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++)
            o[h] = _mm256_loadu_ps(acc + h * hd + i);
        for (int64_t j = 0; j < CB; j++) {
            __m256 v = kv_load8(type, base + (size_t)j * vc->nb[1], g * hd + i);
#pragma GCC unroll 4
            for (int h = 0; h < NH; h++)
                o[h] = _mm256_fmadd_ps(_mm256_broadcast_ss(P + h * CB + j), v, o[h]);
        }
#pragma GCC unroll 4
        for (int h = 0; h < NH; h++)
            _mm256_storeu_ps(acc + h * hd + i, o[h]);
    }
}

/* qk_heads / pv_heads over the G heads of a group, 4 at a time (q rows and acc rows hd apart,
 * S and P rows MX_ATTN_CBLOCK apart). */
static inline __attribute__((always_inline)) void
qk_block(enum mx_type type, const struct mx_tensor *kc, int64_t c0, int64_t g, int64_t hd,
         int64_t G, const float *qs, float *S) {
    for (int64_t h0 = 0; h0 < G; h0 += 4) {
        const float *q = qs + h0 * hd;
        float *s = S + h0 * MX_ATTN_CBLOCK;
        switch (MX_MIN(4, G - h0)) {
        case 4: qk_heads(type, 4, kc, c0, g, hd, q, s); break;
        case 3: qk_heads(type, 3, kc, c0, g, hd, q, s); break;
        case 2: qk_heads(type, 2, kc, c0, g, hd, q, s); break;
        default: qk_heads(type, 1, kc, c0, g, hd, q, s); break;
        }
    }
}

static inline __attribute__((always_inline)) void
pv_block(enum mx_type type, const struct mx_tensor *vc, int64_t c0, int64_t g, int64_t hd,
         int64_t G, const float *P, float *acc) {
    for (int64_t h0 = 0; h0 < G; h0 += 4) {
        const float *pp = P + h0 * MX_ATTN_CBLOCK;
        float *o = acc + h0 * hd;
        switch (MX_MIN(4, G - h0)) {
        case 4: pv_heads(type, 4, vc, c0, g, hd, pp, o); break;
        case 3: pv_heads(type, 3, vc, c0, g, hd, pp, o); break;
        case 2: pv_heads(type, 2, vc, c0, g, hd, pp, o); break;
        default: pv_heads(type, 1, vc, c0, g, hd, pp, o); break;
        }
    }
}

/* Asks for KV head g's slices of cells c0 .. c0 + MX_ATTN_CBLOCK (K and V) to be brought into
 * L1 ahead of their pass: a pass reads 128-byte pieces of rows a whole row apart, a pattern the
 * hardware prefetchers did not follow, and decode_block then waited on memory at every row. */
static inline void prefetch_block(const struct mx_ref_args *a, int64_t c0, int64_t g) {
    const struct mx_tensor *kc = a->src[1], *vc = a->src[2];
    const int64_t hd = ((const struct mx_attn_params *)a->p)->head_dim;
    size_t off = 0, len = 0;
    if (!mx_row_size(kc->type, g * hd, &off) || !mx_row_size(kc->type, hd, &len))
        return;
    for (int64_t j = 0; j < MX_ATTN_CBLOCK; j++) {
        const char *kr = (const char *)kc->data + (size_t)(c0 + j) * kc->nb[1] + off;
        const char *vr = (const char *)vc->data + (size_t)(c0 + j) * vc->nb[1] + off;
        for (size_t b = 0; b < len + 63; b += 64) {
            _mm_prefetch(kr + MX_MIN(b, len - 1), _MM_HINT_T1);
            _mm_prefetch(vr + MX_MIN(b, len - 1), _MM_HINT_T1);
        }
    }
}

/* One block of MX_ATTN_CBLOCK filled cells for the G heads of KV head g, read in place: scores,
 * the online-softmax update of each head (m, l, acc rescaled), then P V. S: [G][CB] scratch. */
static inline __attribute__((always_inline)) void
decode_block(enum mx_type type, int HD, const struct mx_ref_args *a, int64_t c0, int64_t g,
             const __m256 *vis, const float *qs, float *acc, float *mrow, float *lrow, float *S) {
    const struct mx_attn_params *p = a->p;
    const int64_t hd = HD ? HD : p->head_dim, G = p->n_head / p->n_head_kv, CB = MX_ATTN_CBLOCK;
    const int64_t NS = CB / 8;
    qk_block(type, a->src[1], c0, g, hd, G, qs + g * G * hd, S);
    const __m256 sc = _mm256_set1_ps(p->scale), ninf = _mm256_set1_ps(-INFINITY);
    for (int64_t hh = 0; hh < G; hh++) {
        const int64_t h = g * G + hh;
        float *sr = S + hh * CB;
        __m256 sv[MX_ATTN_CBLOCK / 8], mv = ninf;
        for (int64_t sb = 0; sb < NS; sb++) {
            sv[sb] = _mm256_blendv_ps(ninf, _mm256_mul_ps(_mm256_loadu_ps(sr + 8 * sb), sc),
                                      vis[sb]);
            mv = _mm256_max_ps(mv, sv[sb]);
        }
        float mb = hmax8(mv);
        if (mb == -INFINITY) { /* no visible cell: weights 0, the row left as it is */
            memset(sr, 0, (size_t)CB * sizeof(float));
            continue;
        }
        float mold = mrow[h], mnew = mold > mb ? mold : mb;
        float corr = mold == -INFINITY ? 0.0f : expf(mold - mnew);
        __m256 lsum = _mm256_setzero_ps(), mn = _mm256_set1_ps(mnew);
        for (int64_t sb = 0; sb < NS; sb++) {
            __m256 pv = _mm256_and_ps(exp8(_mm256_sub_ps(sv[sb], mn)), vis[sb]);
            lsum = _mm256_add_ps(lsum, pv);
            _mm256_storeu_ps(sr + 8 * sb, pv);
        }
        lrow[h] = lrow[h] * corr + hsum8(lsum);
        mrow[h] = mnew;
        if (corr != 1.0f) {
            __m256 cv = _mm256_set1_ps(corr);
            float *ar = acc + h * hd;
            for (int64_t i = 0; i < hd; i += 8)
                _mm256_storeu_ps(ar + i, _mm256_mul_ps(_mm256_loadu_ps(ar + i), cv));
        }
    }
    pv_block(type, a->src[2], c0, g, hd, G, S, acc + g * G * hd);
}

/* decode_block for the cache's type (f16, q8_0 or f32) and head size: 64 and 128 (most models)
 * as constants, so the dimension loops unroll and a q8_0 block's scale is converted once per
 * block rather than per 8 values; false for other cache types. */
#define MX_DECODE_BLOCK_HD(type)                                                                  \
    do {                                                                                          \
        if (hd == 64)                                                                             \
            decode_block(type, 64, a, c0, g, vis, qs, acc, mrow, lrow, S);                        \
        else if (hd == 128)                                                                       \
            decode_block(type, 128, a, c0, g, vis, qs, acc, mrow, lrow, S);                       \
        else                                                                                      \
            decode_block(type, 0, a, c0, g, vis, qs, acc, mrow, lrow, S);                         \
    } while (0)

static bool decode_block_any(const struct mx_ref_args *a, int64_t c0, int64_t g,
                             const __m256 *vis, const float *qs, float *acc, float *mrow,
                             float *lrow, float *S) {
    const int64_t hd = ((const struct mx_attn_params *)a->p)->head_dim;
    switch (a->src[1]->type) {
    case MX_TYPE_F16:
        MX_DECODE_BLOCK_HD(MX_TYPE_F16);
        return true;
    case MX_TYPE_Q8_0:
        MX_DECODE_BLOCK_HD(MX_TYPE_Q8_0);
        return true;
    case MX_TYPE_F32:
        MX_DECODE_BLOCK_HD(MX_TYPE_F32);
        return true;
    default:
        return false;
    }
}

/* ---- decode attention split over the cache ----------------------------------------------------
 * One query token: the work is reading the whole K/V cache once. Split by heads, each thread
 * walked the cache once per KV head, taking a head_dim slice of every row (256 of 2048 bytes):
 * strided reads that kept it near 4 GB/s. Here the cache is cut into chunks of cells; a chunk is
 * walked in 32-cell blocks, each KV head's slice of a full block read in place by decode_block
 * while the next slice is prefetched into L2 (a partial block, or one with empty cells, is
 * staged: whole rows converted to f32), and gives each head a partial (max, sum, unnormalised
 * output), merged per head in chunk order afterwards (flash-decoding). The chunking depends on
 * n_kv only, never on the thread count, so results are the same for any number of threads. */

static void attn_split_avx2(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const int32_t *kpos = a->src[4]->data;
    const struct mx_attn_params *p = a->p;
    const int64_t hd = p->head_dim, n_kv = p->n_kv, H = p->n_head, G = H / p->n_head_kv;
    const int64_t kvd = p->n_head_kv * hd, CB = MX_ATTN_CBLOCK, NS = CB / 8;
    /* staged rows ld floats apart: a multiple of 4 KB (kvd = 1024) put the 8 keys of a score
     * vector in one L1 set and the block ran several times slower */
    const int64_t ld = kvd + 16;
    const int64_t chunk = mx_attn_split_chunk(n_kv), nch = (n_kv + chunk - 1) / chunk;
    const int32_t qp = ((const int32_t *)a->src[3]->data)[0];
    float S[MX_ATTN_FUSED_G * MX_ATTN_CBLOCK]; /* decode_block's scores / weights */
    float *qs = a->cpu->tbuf[ith]; /* [H][hd] (rounded) queries */
    float *kb = qs + H * hd;       /* [CB][ld]: a block's keys, all heads */
    float *vb = kb + CB * ld;      /* [CB][ld] */
    mx_block_q8_0 *qx = NULL;      /* the query as q8_0 blocks for kern.attn_block, or NULL */
    int64_t k0, k1;
    mx_split(nch, ith, nth, &k0, &k1);
    if (k0 >= k1)
        return;
    for (int64_t h = 0; h < H; h++)
        load_query(a, 0, h, qs + h * hd);
    /* a q8_0 cache in ggml mode: the query rounded to q8_0 above is this quantization's
     * dequantized value, so integer dots with its blocks give the same scores (up to float
     * rounding) */
    if (a->cpu->kern.attn_block && a->act_mode == MX_ACT_GGML && hd % 32 == 0 &&
        a->src[1]->type == MX_TYPE_Q8_0) {
        mx_block_q8_0 *blocks = (mx_block_q8_0 *)(vb + CB * ld);
        bool ok = true;
        for (int64_t h = 0; h < H && ok; h++)
            ok = mx_quantize_row(MX_TYPE_Q8_0,
                                 (const float *)((const char *)a->src[0]->data +
                                                 (size_t)h * a->src[0]->nb[1]),
                                 blocks + h * (hd / 32), hd) == 0;
        qx = ok ? blocks : NULL;
    }
    for (int64_t k = k0; k < k1; k++) {
        float *acc = (float *)a->cpu->sbuf + k * H * (hd + 2); /* [H][hd], then m[H], l[H] */
        float *mrow = acc + H * hd, *lrow = mrow + H;
        for (int64_t h = 0; h < H; h++) {
            mrow[h] = -INFINITY;
            lrow[h] = 0.0f;
        }
        memset(acc, 0, (size_t)(H * hd) * sizeof(float));
        const int64_t end = MX_MIN((k + 1) * chunk, n_kv);
        for (int64_t c0 = k * chunk; c0 < end; c0 += CB) {
            int32_t kp[MX_ATTN_CBLOCK];
            if (!block_kpos(kpos, c0, end, CB, qp, qp, p->window, kp))
                continue;
            __m256 vis[MX_ATTN_CBLOCK / 8];
            for (int64_t sb = 0; sb < NS; sb++)
                vis[sb] = _mm256_castsi256_ps(
                    visible8(_mm256_loadu_si256((const __m256i *)(kp + 8 * sb)), qp, p->window));
            /* a full block of filled cells is read in place (decode_block); a partial one, or
             * one with empty cells (whose values may be anything), goes through staging */
            bool inplace = c0 + CB <= end && G <= MX_ATTN_FUSED_G &&
                           a->src[1]->type == a->src[2]->type;
            for (int64_t j = 0; j < CB && inplace; j++)
                inplace = kp[j] >= 0;
            if (inplace) {
                uint32_t vbits = 0; /* the wider block's form of vis */
                for (int64_t sb = 0; sb < NS; sb++)
                    vbits |= (uint32_t)_mm256_movemask_ps(vis[sb]) << (8 * sb);
                int64_t g = 0;
                for (; g < p->n_head_kv; g++) {
                    if (g + 1 < p->n_head_kv) /* the next pass: this block's next KV head */
                        prefetch_block(a, c0, g + 1);
                    else if (c0 + 2 * CB <= end) /* or the next block's first */
                        prefetch_block(a, c0 + CB, 0);
                    bool (*wide)(const struct mx_ref_args *, int64_t, int64_t, uint32_t,
                                 const void *, float *, float *, float *, float *) =
                        a->cpu->kern.attn_block;
                    if (wide && wide(a, c0, g, vbits, qx, acc, mrow, lrow, S))
                        continue;
                    if (!decode_block_any(a, c0, g, vis, qs, acc, mrow, lrow, S))
                        break;
                }
                if (g == p->n_head_kv)
                    continue;
            }
            /* whole rows, every head at once: the cache streams in order */
            stage_kv(a, kp, c0, CB, 0, kvd, kb, vb, ld);
            for (int64_t g = 0; g < p->n_head_kv; g++)
                for (int64_t h = g * G; h < (g + 1) * G; h++) {
                    __m256 sv[MX_ATTN_CBLOCK / 8];
                    for (int64_t sb = 0; sb < NS; sb++)
                        sv[sb] = _mm256_blendv_ps(
                            _mm256_set1_ps(-INFINITY),
                            _mm256_mul_ps(qk8(qs + h * hd, kb + 8 * sb * ld + g * hd, hd, ld),
                                          _mm256_set1_ps(p->scale)),
                            vis[sb]);
                    softmax_step(sv, vis, &mrow[h], &lrow[h], acc + h * hd, vb + g * hd, hd, ld);
                }
        }
    }
}

/* Per head, the chunks' partials in chunk order: out = sum_k acc_k e^(m_k - M) / sum_k l_k
 * e^(m_k - M), M the largest m_k; a head that saw no cell gets zeros. */
static void attn_merge_avx2(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_attn_params *p = a->p;
    const int64_t hd = p->head_dim, H = p->n_head;
    const int64_t chunk = mx_attn_split_chunk(p->n_kv), nch = (p->n_kv + chunk - 1) / chunk;
    const float *part = a->cpu->sbuf;
    int64_t h0, h1;
    mx_split(H, ith, nth, &h0, &h1);
    for (int64_t h = h0; h < h1; h++) {
        float M = -INFINITY, L = 0.0f;
        for (int64_t k = 0; k < nch; k++)
            M = fmaxf(M, part[k * H * (hd + 2) + H * hd + h]);
        float *y = (float *)((char *)a->dst->data + (size_t)h * a->dst->nb[1]);
        memset(y, 0, (size_t)hd * sizeof(float));
        if (M == -INFINITY)
            continue;
        for (int64_t k = 0; k < nch; k++) {
            const float *acc = part + k * H * (hd + 2), *mrow = acc + H * hd, *lrow = mrow + H;
            if (mrow[h] == -INFINITY)
                continue;
            float w = expf(mrow[h] - M);
            L += lrow[h] * w;
            __m256 wv = _mm256_set1_ps(w);
            for (int64_t i = 0; i < hd; i += 8)
                _mm256_storeu_ps(y + i, _mm256_fmadd_ps(wv, _mm256_loadu_ps(acc + h * hd + i),
                                                        _mm256_loadu_ps(y + i)));
        }
        __m256 inv = _mm256_set1_ps(L > 0.0f ? mx_attn_sink_norm(p, h, M, L) : 0.0f);
        for (int64_t i = 0; i < hd; i += 8)
            _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), inv));
    }
}

static void attn_avx2(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *q = a->src[0];
    const int32_t *qpos = a->src[3]->data, *kpos = a->src[4]->data;
    const struct mx_attn_params *p = a->p;
    const int64_t hd = p->head_dim, n_kv = p->n_kv, G = p->n_head / p->n_head_kv;
    const int64_t T = q->ne[2], nqb = (T + MX_ATTN_QBLOCK - 1) / MX_ATTN_QBLOCK;
    const int64_t CB = MX_ATTN_CBLOCK, NS = CB / 8; /* cells per step, 8-cell sub-blocks */
    float *kt = a->cpu->tbuf[ith];               /* [hd][CB] keys of the block, transposed */
    float *vb = kt + CB * hd;                    /* [CB][hd] values of the block */
    float *kb = vb + CB * hd;                    /* [CB][hd] keys as loaded */
    float *qs = kb + CB * hd;                    /* [R][hd] (rounded) queries */
    float *acc = qs + MX_ATTN_QBLOCK * G * hd;   /* [R][hd] unnormalised outputs */
    float *mrow = acc + MX_ATTN_QBLOCK * G * hd; /* [R] running max */
    float *lrow = mrow + MX_ATTN_QBLOCK * G;     /* [R] running sum */
    int64_t u0, u1;
    mx_split(nqb * p->n_head_kv, ith, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t g = u % p->n_head_kv, t0 = (u / p->n_head_kv) * MX_ATTN_QBLOCK;
        int64_t t1 = MX_MIN(t0 + MX_ATTN_QBLOCK, T), R = (t1 - t0) * G;
        int32_t qmax = INT32_MIN, qmin = INT32_MAX;
        for (int64_t r = 0; r < R; r++) {
            load_query(a, t0 + r / G, g * G + r % G, qs + r * hd);
            mrow[r] = -INFINITY;
            lrow[r] = 0.0f;
            memset(acc + r * hd, 0, (size_t)hd * sizeof(float));
        }
        for (int64_t t = t0; t < t1; t++) {
            qmax = MX_MAX(qmax, qpos[t]);
            qmin = MX_MIN(qmin, qpos[t]);
        }
        if (R >= MX_ATTN_GEMM_ROWS) {
            float *gkb = lrow + MX_ATTN_QBLOCK * G, *gvb = gkb + MX_ATTN_GBLOCK * hd;
            attn_blocks_gemm(a, g, t0, R, G, qmin, qmax, qs, acc, mrow, lrow, gkb, gvb,
                             gvb + MX_ATTN_GBLOCK * hd);
        }
        for (int64_t c0 = 0; c0 < (R >= MX_ATTN_GEMM_ROWS ? 0 : n_kv); c0 += CB) {
            int32_t kp[MX_ATTN_CBLOCK];
            /* the block is skipped when no query of the unit can see any of its cells */
            if (!block_kpos(kpos, c0, n_kv, CB, qmin, qmax, p->window, kp))
                continue;
            stage_kv(a, kp, c0, CB, g * hd, hd, kb, vb, hd);
            /* Many query rows (prefill): transpose the keys once so each row's 32 scores come
             * from broadcast-FMAs. Few rows (decode, GQA groups of 1-4): the transpose would cost
             * more than it saves; take plain dot products instead. */
            bool transposed = R >= 8;
            if (transposed)
                for (int64_t j = 0; j < CB; j++)
                    for (int64_t i = 0; i < hd; i++)
                        kt[i * CB + j] = kb[j * hd + i];
            __m256i kpv[MX_ATTN_CBLOCK / 8];
            for (int64_t sb = 0; sb < NS; sb++)
                kpv[sb] = _mm256_loadu_si256((const __m256i *)(kp + 8 * sb));
            for (int64_t r = 0; r < R; r++) {
                int32_t qp = qpos[t0 + r / G];
                __m256 s[MX_ATTN_CBLOCK / 8], vis[MX_ATTN_CBLOCK / 8];
                int any = 0;
                for (int64_t sb = 0; sb < NS; sb++) {
                    __m256i v = visible8(kpv[sb], qp, p->window);
                    vis[sb] = _mm256_castsi256_ps(v);
                    any |= !_mm256_testz_si256(v, v);
                }
                if (!any)
                    continue;
                const float *qr = qs + r * hd;
                if (transposed) {
                    for (int64_t sb = 0; sb < NS; sb++)
                        s[sb] = _mm256_setzero_ps();
                    for (int64_t i = 0; i < hd; i++) {
                        __m256 qi = _mm256_set1_ps(qr[i]);
                        for (int64_t sb = 0; sb < NS; sb++)
                            s[sb] = _mm256_fmadd_ps(qi, _mm256_loadu_ps(kt + i * CB + 8 * sb),
                                                    s[sb]);
                    }
                } else {
                    /* 8 cells' dot products at once, reduced together (hsum8x8): a horizontal
                     * sum per cell cost as much as the cell's FMAs and kept decode attention at
                     * a few GB/s of cache */
                    for (int64_t sb = 0; sb < NS; sb++)
                        s[sb] = qk8(qr, kb + 8 * sb * hd, hd, hd);
                }
                for (int64_t sb = 0; sb < NS; sb++)
                    s[sb] = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY),
                                             _mm256_mul_ps(s[sb], _mm256_set1_ps(p->scale)),
                                             vis[sb]);
                softmax_step(s, vis, &mrow[r], &lrow[r], acc + r * hd, vb, hd, hd);
            }
        }
        for (int64_t r = 0; r < R; r++) {
            int64_t t = t0 + r / G, h = g * G + r % G;
            float *y =
                (float *)((char *)a->dst->data + (size_t)(t * p->n_head + h) * a->dst->nb[1]);
            float inv = lrow[r] > 0.0f ? mx_attn_sink_norm(p, h, mrow[r], lrow[r]) : 0.0f;
            for (int64_t i = 0; i < hd; i++)
                y[i] = acc[r * hd + i] * inv;
        }
    }
}

/* ---- dense attention (see attn_dense in cpu.h) ----------------------------------------------
 * Work unit: one head h and one block of up to MX_ATTN_DENSE_QB queries. q rows (token t, head
 * h) are ldq = n_head * hd floats apart, cache rows ldk / ldv apart; head h reads columns
 * [g*hd, (g+1)*hd) of the cache with g = h / (n_head / n_head_kv). */
static void attn_dense_avx2(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *q = a->src[0], *kc = a->src[1], *vc = a->src[2];
    const struct mx_attn_params *p = a->p;
    const int64_t hd = p->head_dim, n_kv = p->n_kv, H = p->n_head, G = H / p->n_head_kv;
    const int64_t T = q->ne[2], QB = MX_ATTN_DENSE_QB, nqb = (T + QB - 1) / QB;
    const int64_t ldq = (int64_t)(q->nb[2] / sizeof(float)), ldo =
        (int64_t)(a->dst->nb[2] / sizeof(float));
    const int64_t ldk = (int64_t)(kc->nb[1] / sizeof(float)), ldv =
        (int64_t)(vc->nb[1] / sizeof(float));
    const int64_t lds = n_kv + 16; /* row stride of S: off 4 KiB multiples */
    float *S = a->cpu->tbuf[ith];
    int64_t u0, u1;
    mx_split(H * nqb, ith, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t h = u / nqb, t0 = (u % nqb) * QB, R = MX_MIN(QB, T - t0), g = h / G;
        const float *qb = (const float *)q->data + t0 * ldq + h * hd;
        const float *kb = (const float *)kc->data + g * hd, *vb = (const float *)vc->data + g * hd;
        float *ob = (float *)a->dst->data + t0 * ldo + h * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)R, (int)n_kv, (int)hd, p->scale,
                    qb, (int)ldq, kb, (int)ldk, 0.0f, S, (int)lds);
        float inv[MX_ATTN_DENSE_QB];
        for (int64_t r = 0; r < R; r++) {
            float *sr = S + r * lds;
            __m256 mv = _mm256_set1_ps(-INFINITY);
            int64_t j = 0;
            for (; j + 8 <= n_kv; j += 8)
                mv = _mm256_max_ps(mv, _mm256_loadu_ps(sr + j));
            float m = hmax8(mv);
            for (; j < n_kv; j++)
                m = fmaxf(m, sr[j]);
            __m256 mm = _mm256_set1_ps(m), sum = _mm256_setzero_ps();
            for (j = 0; j + 8 <= n_kv; j += 8) {
                __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sr + j), mm));
                _mm256_storeu_ps(sr + j, e);
                sum = _mm256_add_ps(sum, e);
            }
            float l = hsum8(sum);
            for (; j < n_kv; j++) {
                sr[j] = expf(sr[j] - m);
                l += sr[j];
            }
            inv[r] = l > 0.0f ? 1.0f / l : 0.0f;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)hd, (int)n_kv, 1.0f,
                    S, (int)lds, vb, (int)ldv, 0.0f, ob, (int)ldo);
        for (int64_t r = 0; r < R; r++) {
            float *o = ob + r * ldo;
            __m256 iv = _mm256_set1_ps(inv[r]);
            int64_t i = 0;
            for (; i + 8 <= hd; i += 8)
                _mm256_storeu_ps(o + i, _mm256_mul_ps(_mm256_loadu_ps(o + i), iv));
            for (; i < hd; i++)
                o[i] *= inv[r];
        }
    }
}

/* Installs the attention kernels above into the AVX2 kernel table. */
void mx_cpu_attn_avx2(struct mx_cpu_kernels *k) {
    k->attn_dense = attn_dense_avx2;
    k->attn = attn_avx2;
    k->attn_split = attn_split_avx2;
    k->attn_merge = attn_merge_avx2;
}
