/* quant_iq.c - scalar reference dequantizers of the IQ quant types and the IQ4_NL / IQ4_XS
 * quantizers.
 *
 * Why: like quant.c for the K-quants, this is the ground truth the SIMD kernels are tested
 * against, and it must give exactly ggml's floats (dequantize_row_iq*: same float operations in
 * the same order, no FMA contraction under -std=c11) and exactly llama-quantize's bytes
 * (quantize_iq4_nl / quantize_iq4_xs). Blocks are memcpy'd in and out, so rows may sit at any
 * byte offset of a mapped file.
 *
 * Workload: reference code (loading, converting, tests, the scalar kernel level). Thread-safe:
 * only constant tables.
 *
 * Ref: https://github.com/ggml-org/llama.cpp/blob/master/ggml/src/ggml-quants.c (read, not copied)
 */
#include "core/base/quant_iq.h"

#include <math.h>
#include <string.h>

#include "core/base/util.h"

/* Below this absmax a 32-value group is all zeros (ggml's GROUP_MAX_EPS). */
#define IQ_GROUP_MAX_EPS 1e-15f

/* Byte j of a grid entry (the grids are arrays of bytes read as integers, little endian). */
static inline uint8_t grid8(uint64_t g, int j) { return (uint8_t)(g >> (8 * j)); }
static inline int8_t grid8s(uint64_t g, int j) { return (int8_t)(uint8_t)(g >> (8 * j)); }
static inline uint8_t grid4(uint32_t g, int j) { return (uint8_t)(g >> (8 * j)); }

/* -1.f or 1.f: bit j of a sign byte set means negative. */
static inline float sgn(uint8_t signs, int j) { return signs & (1u << j) ? -1.f : 1.f; }

void mx_iq2_xxs_to_float(const void *src, float *y, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq2_xxs b;
        memcpy(&b, p + i * sizeof b, sizeof b);
        const float d = mx_fp16_to_fp32(b.d);
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++) {
            uint32_t aux[2];
            memcpy(aux, b.qs + 4 * ib32, sizeof aux);
            const float db = d * (0.5f + (aux[1] >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++) {
                const uint64_t g = mx_iq2xxs_grid[(aux[0] >> (8 * l)) & 0xff];
                const uint8_t signs = mx_ksigns_iq2xs[(aux[1] >> (7 * l)) & 127];
                for (int j = 0; j < 8; j++)
                    y[j] = db * grid8(g, j) * sgn(signs, j);
                y += 8;
            }
        }
    }
}

void mx_iq2_xs_to_float(const void *src, float *y, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq2_xs b;
        memcpy(&b, p + i * sizeof b, sizeof b);
        const float d = mx_fp16_to_fp32(b.d);
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++) {
            float db[2];
            db[0] = d * (0.5f + (b.scales[ib32] & 0xf)) * 0.25f;
            db[1] = d * (0.5f + (b.scales[ib32] >> 4)) * 0.25f;
            for (int l = 0; l < 4; l++) {
                const uint16_t q = b.qs[4 * ib32 + l];
                const uint64_t g = mx_iq2xs_grid[q & 511];
                const uint8_t signs = mx_ksigns_iq2xs[q >> 9];
                for (int j = 0; j < 8; j++)
                    y[j] = db[l / 2] * grid8(g, j) * sgn(signs, j);
                y += 8;
            }
        }
    }
}

void mx_iq2_s_to_float(const void *src, float *y, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq2_s b;
        memcpy(&b, p + i * sizeof b, sizeof b);
        const float d = mx_fp16_to_fp32(b.d);
        const uint8_t *qs = b.qs, *signs = b.qs + MX_QK_K / 8;
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++) {
            float db[2];
            db[0] = d * (0.5f + (b.scales[ib32] & 0xf)) * 0.25f;
            db[1] = d * (0.5f + (b.scales[ib32] >> 4)) * 0.25f;
            for (int l = 0; l < 4; l++) {
                const uint64_t g = mx_iq2s_grid[qs[l] | ((b.qh[ib32] << (8 - 2 * l)) & 0x300)];
                for (int j = 0; j < 8; j++)
                    y[j] = db[l / 2] * grid8(g, j) * sgn(signs[l], j);
                y += 8;
            }
            qs += 4;
            signs += 4;
        }
    }
}

void mx_iq3_xxs_to_float(const void *src, float *y, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq3_xxs b;
        memcpy(&b, p + i * sizeof b, sizeof b);
        const float d = mx_fp16_to_fp32(b.d);
        const uint8_t *qs = b.qs, *sas = b.qs + MX_QK_K / 4;
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++) {
            uint32_t aux;
            memcpy(&aux, sas + 4 * ib32, sizeof aux);
            const float db = d * (0.5f + (aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++) {
                const uint8_t signs = mx_ksigns_iq2xs[(aux >> (7 * l)) & 127];
                const uint32_t g1 = mx_iq3xxs_grid[qs[2 * l]], g2 = mx_iq3xxs_grid[qs[2 * l + 1]];
                for (int j = 0; j < 4; j++) {
                    y[j + 0] = db * grid4(g1, j) * sgn(signs, j);
                    y[j + 4] = db * grid4(g2, j) * sgn(signs, j + 4);
                }
                y += 8;
            }
            qs += 8;
        }
    }
}

/* 32 values of an IQ3_S block: 8 grid indices (low bits qs, 9th bits qh) and 4 sign bytes. */
static void iq3_s_32(const uint8_t *qs, uint8_t qh, const uint8_t *signs, float db, float *y) {
    for (int l = 0; l < 4; l++) {
        const uint32_t g1 = mx_iq3s_grid[qs[2 * l] | ((qh << (8 - 2 * l)) & 256)];
        const uint32_t g2 = mx_iq3s_grid[qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256)];
        for (int j = 0; j < 4; j++) {
            y[j + 0] = db * grid4(g1, j) * sgn(signs[l], j);
            y[j + 4] = db * grid4(g2, j) * sgn(signs[l], j + 4);
        }
        y += 8;
    }
}

void mx_iq3_s_to_float(const void *src, float *y, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq3_s b;
        memcpy(&b, p + i * sizeof b, sizeof b);
        const float d = mx_fp16_to_fp32(b.d);
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32 += 2) {
            const float db1 = d * (1 + 2 * (b.scales[ib32 / 2] & 0xf));
            const float db2 = d * (1 + 2 * (b.scales[ib32 / 2] >> 4));
            iq3_s_32(b.qs + 8 * ib32, b.qh[ib32], b.signs + 4 * ib32, db1, y);
            iq3_s_32(b.qs + 8 * ib32 + 8, b.qh[ib32 + 1], b.signs + 4 * ib32 + 4, db2, y + 32);
            y += 64;
        }
    }
}

void mx_iq1_s_to_float(const void *src, float *y, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq1_s b;
        memcpy(&b, p + i * sizeof b, sizeof b);
        const float d = mx_fp16_to_fp32(b.d);
        const uint8_t *qs = b.qs;
        for (int ib = 0; ib < MX_QK_K / 32; ib++) {
            const uint16_t qh = b.qh[ib];
            const float dl = d * (2 * ((qh >> 12) & 7) + 1);
            const float delta = qh & 0x8000 ? -MX_IQ1_DELTA : MX_IQ1_DELTA;
            for (int l = 0; l < 4; l++) {
                const uint64_t g = mx_iq1s_grid[qs[l] | (((qh >> (3 * l)) & 7) << 8)];
                for (int j = 0; j < 8; j++)
                    y[j] = dl * (grid8s(g, j) + delta);
                y += 8;
            }
            qs += 4;
        }
    }
}

void mx_iq1_m_to_float(const void *src, float *y, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq1_m b;
        memcpy(&b, p + i * sizeof b, sizeof b);
        uint16_t sc[4];
        memcpy(sc, b.scales, sizeof sc);
        const uint16_t su = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                       ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
        const float d = mx_fp16_to_fp32(su);
        const uint8_t *qs = b.qs, *qh = b.qh;
        for (int ib = 0; ib < MX_QK_K / 32; ib++) {
            const float dl1 = d * (2 * ((sc[ib / 2] >> (6 * (ib % 2) + 0)) & 0x7) + 1);
            const float dl2 = d * (2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 0x7) + 1);
            const int idx[4] = {qs[0] | ((qh[0] << 8) & 0x700), qs[1] | ((qh[0] << 4) & 0x700),
                                qs[2] | ((qh[1] << 8) & 0x700), qs[3] | ((qh[1] << 4) & 0x700)};
            const float delta[4] = {qh[0] & 0x08 ? -MX_IQ1_DELTA : MX_IQ1_DELTA,
                                    qh[0] & 0x80 ? -MX_IQ1_DELTA : MX_IQ1_DELTA,
                                    qh[1] & 0x08 ? -MX_IQ1_DELTA : MX_IQ1_DELTA,
                                    qh[1] & 0x80 ? -MX_IQ1_DELTA : MX_IQ1_DELTA};
            for (int l = 0; l < 4; l++) {
                const uint64_t g = mx_iq1s_grid[idx[l]];
                const float dl = l < 2 ? dl1 : dl2;
                for (int j = 0; j < 8; j++)
                    y[j] = dl * (grid8s(g, j) + delta[l]);
                y += 8;
            }
            qs += 4;
            qh += 2;
        }
    }
}

void mx_iq4_nl_to_float(const void *src, float *y, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK4_NL; i++, y += MX_QK4_NL) {
        mx_block_iq4_nl b;
        memcpy(&b, p + i * sizeof b, sizeof b);
        const float d = mx_fp16_to_fp32(b.d);
        for (int j = 0; j < MX_QK4_NL / 2; j++) {
            y[j] = d * mx_kvalues_iq4nl[b.qs[j] & 0xf];
            y[j + MX_QK4_NL / 2] = d * mx_kvalues_iq4nl[b.qs[j] >> 4];
        }
    }
}

void mx_iq4_xs_to_float(const void *src, float *y, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq4_xs b;
        memcpy(&b, p + i * sizeof b, sizeof b);
        const float d = mx_fp16_to_fp32(b.d);
        const uint8_t *qs = b.qs;
        for (int ib = 0; ib < MX_QK_K / 32; ib++) {
            const int ls = ((b.scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) |
                           (((b.scales_h >> 2 * ib) & 3) << 4);
            const float dl = d * (ls - 32);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * mx_kvalues_iq4nl[qs[j] & 0xf];
                y[j + 16] = dl * mx_kvalues_iq4nl[qs[j] >> 4];
            }
            y += 32;
            qs += 16;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * IQ4_NL / IQ4_XS quantization
 */

/* Round half to even via the 1.5*2^23 trick (ggml's nearest_int), exact for |v| <= 2^22. */
static inline int iq_nearest_int(float v) {
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* Index of the level of the sorted table val[16] nearest to x (the lower one on ties, like
 * ggml's best_index_int8). NaN lands on some valid index. */
static int best_index_iq4(const int8_t *val, float x) {
    if (x <= val[0])
        return 0;
    if (x >= val[15])
        return 15;
    int ml = 0, mu = 15;
    while (mu - ml > 1) {
        int mav = (ml + mu) / 2;
        if (x < val[mav])
            mu = mav;
        else
            ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* One super-block of sb values (32: IQ4_NL, 256: IQ4_XS) in groups of 32: per group, the scale
 * that minimises the weighted error over the level table (ntry > 0: 2 ntry + 1 extra candidate
 * scales), then for IQ4_XS the group scales as 6-bit multiples of a super-scale. Writes the fp16
 * scale *dh, the packed nibbles q4 and (sb > 32) the 6-bit scales. ggml's
 * quantize_row_iq4_nl_impl step for step. */
static void iq4_quantize_sb(int sb, const float *x, mx_half *dh, uint8_t *q4, uint16_t *scales_h,
                            uint8_t *scales_l, const float *qw, int ntry) {
    const int8_t *values = mx_kvalues_iq4nl;
    uint8_t L[MX_QK_K];
    float scales[MX_QK_K / 32], weight[32];
    float sigma2 = 0;
    for (int j = 0; j < sb; j++)
        sigma2 += x[j] * x[j];
    sigma2 *= 2.f / sb;
    memset(q4, 0, (size_t)sb / 2);
    *dh = mx_fp32_to_fp16(0.f);
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < sb / 32; ib++) {
        const float *xb = x + ib * 32;
        uint8_t *Lb = L + ib * 32;
        for (int j = 0; j < 32; j++)
            weight[j] = qw ? qw[ib * 32 + j] * sqrtf(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            float ax = fabsf(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < IQ_GROUP_MAX_EPS) {
            /* ggml leaves this group's indices unset (stale or uninitialised; its scale is 0 so
             * they decode to 0 anyway): here the level nearest 0, which is what its refinement
             * step and the IQ4_XS repass compute */
            scales[ib] = 0;
            memset(Lb, 8, 32);
            continue;
        }
        float d = ntry > 0 ? -max / values[0] : max / values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            float al = id * xb[j];
            int l = best_index_iq4(values, al);
            Lb[j] = (uint8_t)l;
            float q = values[l];
            float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                float al = id * xb[j];
                int l = best_index_iq4(values, al);
                float q = values[l];
                float w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        float abs_d = fabsf(d);
        if (abs_d > amax_scale) {
            amax_scale = abs_d;
            max_scale = d;
        }
    }
    if (sb > 32) {
        *scales_h = 0;
        float d = -max_scale / 32;
        *dh = mx_fp32_to_fp16(d);
        float id = d != 0 ? 1 / d : 0.f;
        for (int ib = 0; ib < sb / 32; ib++) {
            int l = iq_nearest_int(id * scales[ib]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            float dl = d * l;
            float idl = dl != 0 ? 1 / dl : 0.f;
            uint8_t *Lb = L + ib * 32;
            const float *xb = x + ib * 32;
            for (int j = 0; j < 32; j++)
                Lb[j] = (uint8_t)best_index_iq4(values, idl * xb[j]);
            l += 32;
            uint8_t l_l = (uint8_t)(l & 0xf), l_h = (uint8_t)(l >> 4);
            if (ib % 2 == 0)
                scales_l[ib / 2] = l_l;
            else
                scales_l[ib / 2] |= (uint8_t)(l_l << 4);
            *scales_h |= (uint16_t)(l_h << 2 * (ib % 8));
        }
    } else {
        *dh = mx_fp32_to_fp16(scales[0]);
        if (ntry > 0) {
            float id = scales[0] != 0 ? 1 / scales[0] : 0;
            for (int j = 0; j < sb; j++)
                L[j] = (uint8_t)best_index_iq4(values, id * x[j]);
        }
    }
    for (int i = 0; i < sb / 32; i++)
        for (int j = 0; j < 16; j++)
            q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

/* Row drivers: blocks copied out through memcpy (dst may be unaligned). */
static void iq4_nl_row(const float *src, void *dst, int64_t n, const float *qw, int ntry) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK4_NL; i++) {
        mx_block_iq4_nl b;
        iq4_quantize_sb(MX_QK4_NL, src + i * MX_QK4_NL, &b.d, b.qs, NULL, NULL,
                        qw ? qw + i * MX_QK4_NL : NULL, ntry);
        memcpy(p + i * sizeof b, &b, sizeof b);
    }
}

void mx_iq4_nl_from_float(const float *src, void *dst, int64_t n) {
    iq4_nl_row(src, dst, n, NULL, -1);
}

void mx_quantize_iq4_nl(const float *src, void *dst, int64_t n, const float *qw) {
    iq4_nl_row(src, dst, n, qw, 7);
}

void mx_quantize_iq4_xs(const float *src, void *dst, int64_t n, const float *qw) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq4_xs b;
        memset(&b, 0, sizeof b);
        iq4_quantize_sb(MX_QK_K, src + i * MX_QK_K, &b.d, b.qs, &b.scales_h, b.scales_l,
                        qw ? qw + i * MX_QK_K : NULL, 7);
        memcpy(p + i * sizeof b, &b, sizeof b);
    }
}

void mx_iq4_xs_from_float(const float *src, void *dst, int64_t n) {
    mx_quantize_iq4_xs(src, dst, n, NULL);
}
