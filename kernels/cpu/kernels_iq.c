/* kernels_iq.c - scalar integer vec_dots of the IQ quant types against their ggml activation
 * types (Q8_K; Q8_0 for IQ4_NL).
 *
 * Why: ggml computes these dots in integers per block; doing the same gives llama.cpp's numbers
 * without a float dequantization per value, and the SIMD twins (kernels_iq_avx2.c) are tested
 * against these bit for bit (kernels_iq.h says why they can be). The arithmetic follows ggml's
 * ggml_vec_dot_iq*_generic (ggml-cpu/quants.c, read, not copied).
 *
 * Workload: decode rows of IQ1_S/IQ1_M/IQ2_XXS/IQ2_S/IQ3_XXS on every CPU, and of all IQ types
 * where no SIMD kernel exists. Weight rows are aligned (GGUF tensor data is 32-aligned and every
 * IQ block is an even number of bytes), as for the other kernels.
 */
#include "kernels/cpu/kernels_iq.h"

#include <string.h>

#include "core/base/quant_iq.h"
#include "core/base/util.h"

/* Sum over 8 values of grid byte j x q8[j], negated where sign bit j is set. */
static inline int32_t dot8_signed(uint64_t grid, uint8_t signs, const int8_t *q8) {
    int32_t s = 0;
    for (int j = 0; j < 8; j++) {
        int32_t v = (int32_t)(uint8_t)(grid >> (8 * j)) * q8[j];
        s += signs & (1u << j) ? -v : v;
    }
    return s;
}

/* The same for two 4-byte grid entries (IQ3 types). */
static inline int32_t dot4x2_signed(uint32_t g1, uint32_t g2, uint8_t signs, const int8_t *q8) {
    return dot8_signed((uint64_t)g1 | (uint64_t)g2 << 32, signs, q8);
}

static float vec_dot_iq2_xxs(int64_t n, const void *w, const void *xq) {
    const mx_block_iq2_xxs *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = mx_fp16_to_fp32(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++) {
            uint32_t aux[2];
            memcpy(aux, x[i].qs + 4 * ib32, sizeof aux);
            int32_t sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8)
                sumi += dot8_signed(mx_iq2xxs_grid[(aux[0] >> (8 * l)) & 0xff],
                                    mx_ksigns_iq2xs[(aux[1] >> (7 * l)) & 127], q8);
            bsum += sumi * (int32_t)(2 * (aux[1] >> 28) + 1);
        }
        sumf += d * bsum;
    }
    return 0.125f * sumf;
}

static float vec_dot_iq2_xs(int64_t n, const void *w, const void *xq) {
    const mx_block_iq2_xs *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = mx_fp16_to_fp32(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        const uint16_t *q2 = x[i].qs;
        int32_t bsum = 0;
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, q2 += 4) {
            int32_t s1 = 0, s2 = 0;
            for (int l = 0; l < 2; l++, q8 += 8)
                s1 += dot8_signed(mx_iq2xs_grid[q2[l] & 511], mx_ksigns_iq2xs[q2[l] >> 9], q8);
            for (int l = 2; l < 4; l++, q8 += 8)
                s2 += dot8_signed(mx_iq2xs_grid[q2[l] & 511], mx_ksigns_iq2xs[q2[l] >> 9], q8);
            bsum += s1 * (2 * (x[i].scales[ib32] & 0xf) + 1) +
                    s2 * (2 * (x[i].scales[ib32] >> 4) + 1);
        }
        sumf += d * bsum;
    }
    return 0.125f * sumf;
}

static float vec_dot_iq2_s(int64_t n, const void *w, const void *xq) {
    const mx_block_iq2_s *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = mx_fp16_to_fp32(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        const uint8_t *qs = x[i].qs, *qh = x[i].qh, *signs = x[i].qs + MX_QK_K / 8;
        int32_t bsum = 0;
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, qs += 4, signs += 4) {
            int32_t s[2] = {0, 0};
            for (int l = 0; l < 4; l++, q8 += 8)
                s[l / 2] += dot8_signed(mx_iq2s_grid[qs[l] | ((qh[ib32] << (8 - 2 * l)) & 0x300)],
                                        signs[l], q8);
            bsum += s[0] * (2 * (x[i].scales[ib32] & 0xf) + 1) +
                    s[1] * (2 * (x[i].scales[ib32] >> 4) + 1);
        }
        sumf += d * bsum;
    }
    return 0.125f * sumf;
}

static float vec_dot_iq3_xxs(int64_t n, const void *w, const void *xq) {
    const mx_block_iq3_xxs *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = mx_fp16_to_fp32(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        const uint8_t *q3 = x[i].qs, *gas = x[i].qs + MX_QK_K / 4;
        int32_t bsum = 0;
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, q3 += 8) {
            uint32_t aux;
            memcpy(&aux, gas + 4 * ib32, sizeof aux);
            int32_t sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8)
                sumi += dot4x2_signed(mx_iq3xxs_grid[q3[2 * l]], mx_iq3xxs_grid[q3[2 * l + 1]],
                                      mx_ksigns_iq2xs[(aux >> (7 * l)) & 127], q8);
            bsum += sumi * (int32_t)(2 * (aux >> 28) + 1);
        }
        sumf += d * bsum;
    }
    return 0.25f * sumf;
}

static float vec_dot_iq3_s(int64_t n, const void *w, const void *xq) {
    const mx_block_iq3_s *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = mx_fp16_to_fp32(x[i].d) * y[i].d;
        const int8_t *q8 = y[i].qs;
        const uint8_t *qs = x[i].qs, *signs = x[i].signs;
        int32_t bsum = 0;
        for (int ib32 = 0; ib32 < MX_QK_K / 32; ib32++, qs += 8, signs += 4) {
            const int qh = x[i].qh[ib32];
            int32_t sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8)
                sumi += dot4x2_signed(mx_iq3s_grid[qs[2 * l] | ((qh << (8 - 2 * l)) & 256)],
                                      mx_iq3s_grid[qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256)],
                                      signs[l], q8);
            int ls = ib32 % 2 ? x[i].scales[ib32 / 2] >> 4 : x[i].scales[ib32 / 2] & 0xf;
            bsum += sumi * (2 * ls + 1);
        }
        sumf += d * bsum;
    }
    return sumf;
}

static float vec_dot_iq1_s(int64_t n, const void *w, const void *xq) {
    const mx_block_iq1_s *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        const uint8_t *qs = x[i].qs;
        int32_t sumi = 0, sumi1 = 0;
        for (int ib = 0; ib < MX_QK_K / 32; ib++, qs += 4) {
            const uint16_t qh = x[i].qh[ib];
            const int ls = 2 * ((qh >> 12) & 7) + 1;
            const int delta = qh & 0x8000 ? -1 : 1;
            int32_t lsum = 0;
            for (int l = 0; l < 4; l++, q8 += 8) {
                uint64_t g = mx_iq1s_grid[qs[l] | (((qh >> (3 * l)) & 7) << 8)];
                for (int j = 0; j < 8; j++)
                    lsum += q8[j] * (int8_t)(uint8_t)(g >> (8 * j));
            }
            sumi += ls * lsum;
            sumi1 += ls * delta * (y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1]);
        }
        sumf += mx_fp16_to_fp32(x[i].d) * y[i].d * (sumi + MX_IQ1_DELTA * sumi1);
    }
    return sumf;
}

static float vec_dot_iq1_m(int64_t n, const void *w, const void *xq) {
    const mx_block_iq1_m *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        const uint8_t *qs = x[i].qs, *qh = x[i].qh;
        uint16_t sc[4];
        memcpy(sc, x[i].scales, sizeof sc);
        const uint16_t su = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                       ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
        int32_t sumi1 = 0, sumi2 = 0;
        for (int ib = 0; ib < MX_QK_K / 32; ib++, qs += 4, qh += 2) {
            const int delta[4] = {qh[0] & 0x08 ? -1 : 1, qh[0] & 0x80 ? -1 : 1,
                                  qh[1] & 0x08 ? -1 : 1, qh[1] & 0x80 ? -1 : 1};
            int32_t sum1[2] = {0, 0}, sum2[2] = {0, 0};
            for (int l = 0; l < 4; l++, q8 += 8) {
                uint64_t g = mx_iq1s_grid[qs[l] | (((uint16_t)qh[l / 2] << (8 - 4 * (l % 2))) &
                                                   0x700)];
                int32_t lsum1 = 0, lsum2 = 0;
                for (int j = 0; j < 8; j++) {
                    lsum1 += q8[j] * (int8_t)(uint8_t)(g >> (8 * j));
                    lsum2 += q8[j];
                }
                sum1[l / 2] += lsum1;
                sum2[l / 2] += lsum2 * delta[l];
            }
            const int ls1 = 2 * ((sc[ib / 2] >> (6 * (ib % 2) + 0)) & 0x7) + 1;
            const int ls2 = 2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 0x7) + 1;
            sumi1 += sum1[0] * ls1 + sum1[1] * ls2;
            sumi2 += sum2[0] * ls1 + sum2[1] * ls2;
        }
        sumf += mx_fp16_to_fp32(su) * y[i].d * (sumi1 + MX_IQ1_DELTA * sumi2);
    }
    return sumf;
}

static float vec_dot_iq4_nl(int64_t n, const void *w, const void *xq) {
    const mx_block_iq4_nl *x = w;
    const mx_block_q8_0 *y = xq;
    float sumf = 0;
    for (int64_t ib = 0; ib < n / MX_QK4_NL; ib++) {
        const float d = mx_fp16_to_fp32(y[ib].d) * mx_fp16_to_fp32(x[ib].d);
        int32_t sumi = 0;
        for (int j = 0; j < MX_QK4_NL / 2; j++)
            sumi += y[ib].qs[j] * mx_kvalues_iq4nl[x[ib].qs[j] & 0xf] +
                    y[ib].qs[j + MX_QK4_NL / 2] * mx_kvalues_iq4nl[x[ib].qs[j] >> 4];
        sumf += d * sumi;
    }
    return sumf;
}

/* IQ4_XS: each sub-block's integer sum times its 6-bit scale - 32, summed in int32 over the
 * super-block (at most 8 x 32 x 32 x 127 x 127 < 2^31), then scaled once in float. */
static float vec_dot_iq4_xs(int64_t n, const void *w, const void *xq) {
    const mx_block_iq4_xs *x = w;
    const mx_block_q8_K *y = xq;
    float sumf = 0;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float d = mx_fp16_to_fp32(x[i].d) * y[i].d;
        const uint8_t *qs = x[i].qs;
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < MX_QK_K / 32; ib++, qs += 16, q8 += 32) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) |
                           (((x[i].scales_h >> 2 * ib) & 3) << 4);
            int32_t sumi = 0;
            for (int j = 0; j < 16; j++)
                sumi += q8[j] * mx_kvalues_iq4nl[qs[j] & 0xf] +
                        q8[j + 16] * mx_kvalues_iq4nl[qs[j] >> 4];
            bsum += sumi * (ls - 32);
        }
        sumf += d * bsum;
    }
    return sumf;
}

float (*const mx_iq_vec_dot_scalar[MX_TYPE_COUNT])(int64_t, const void *, const void *) = {
    [MX_TYPE_IQ2_XXS] = vec_dot_iq2_xxs, [MX_TYPE_IQ2_XS] = vec_dot_iq2_xs,
    [MX_TYPE_IQ2_S] = vec_dot_iq2_s,     [MX_TYPE_IQ3_XXS] = vec_dot_iq3_xxs,
    [MX_TYPE_IQ3_S] = vec_dot_iq3_s,     [MX_TYPE_IQ1_S] = vec_dot_iq1_s,
    [MX_TYPE_IQ1_M] = vec_dot_iq1_m,     [MX_TYPE_IQ4_NL] = vec_dot_iq4_nl,
    [MX_TYPE_IQ4_XS] = vec_dot_iq4_xs,
};

void mx_cpu_kernels_iq(struct mx_cpu_kernels *k) {
    for (int t = 0; t < MX_TYPE_COUNT; t++)
        if (mx_iq_vec_dot_scalar[t])
            k->vec_dot[t] = mx_iq_vec_dot_scalar[t];
}
