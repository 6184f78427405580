/* cuda_dq.cuh - element-wise dequantization of GGUF blocks on the device, the same formulas as
 * core/base/quant.c's *_to_float (format constants: ggml-common.h's block layouts). One element
 * at a time: matvec kernels read a row's bytes once per warp, so re-reading a block's scale per
 * element costs cache hits, not memory traffic. Included by the .cu files (no separate device
 * linking). */
#ifndef MX_CUDA_DQ_CUH
#define MX_CUDA_DQ_CUH

#include <cuda_fp16.h>
#include <stdint.h>

static __device__ __forceinline__ float cu_half(const uint8_t *p) {
    uint16_t h = (uint16_t)(p[0] | (p[1] << 8));
    return __half2float(__ushort_as_half(h));
}

static __device__ __forceinline__ void cu_k4_scale_min(int j, const uint8_t *q, int *d, int *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Element i of a row of type t (an enum mx_type value), as a float. */
static __device__ inline float cu_dq(int t, const uint8_t *row, int64_t i) {
    switch (t) {
    case MX_TYPE_F32: return ((const float *)row)[i];
    case MX_TYPE_F16: return __half2float(((const __half *)row)[i]);
    case MX_TYPE_BF16: {
        uint32_t u = (uint32_t)((const uint16_t *)row)[i] << 16;
        return __uint_as_float(u);
    }
    case MX_TYPE_Q4_0: {
        const uint8_t *b = row + (i / 32) * 18;
        int j = (int)(i % 32);
        int q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
        return (float)(q - 8) * cu_half(b);
    }
    case MX_TYPE_Q4_1: {
        const uint8_t *b = row + (i / 32) * 20;
        int j = (int)(i % 32);
        int q = j < 16 ? (b[4 + j] & 15) : (b[4 + j - 16] >> 4);
        return (float)q * cu_half(b) + cu_half(b + 2);
    }
    case MX_TYPE_Q5_0: {
        const uint8_t *b = row + (i / 32) * 22;
        int j = (int)(i % 32);
        uint32_t qh = (uint32_t)b[2] | (uint32_t)b[3] << 8 | (uint32_t)b[4] << 16 |
                      (uint32_t)b[5] << 24;
        int lo = j < 16 ? (b[6 + j] & 15) : (b[6 + j - 16] >> 4);
        int q = lo | (int)((qh >> j) & 1) << 4;
        return (float)(q - 16) * cu_half(b);
    }
    case MX_TYPE_Q5_1: {
        const uint8_t *b = row + (i / 32) * 24;
        int j = (int)(i % 32);
        uint32_t qh = (uint32_t)b[4] | (uint32_t)b[5] << 8 | (uint32_t)b[6] << 16 |
                      (uint32_t)b[7] << 24;
        int lo = j < 16 ? (b[8 + j] & 15) : (b[8 + j - 16] >> 4);
        int q = lo | (int)((qh >> j) & 1) << 4;
        return (float)q * cu_half(b) + cu_half(b + 2);
    }
    case MX_TYPE_Q8_0: {
        const uint8_t *b = row + (i / 32) * 34;
        return (float)(int8_t)b[2 + i % 32] * cu_half(b);
    }
    case MX_TYPE_Q2_K: { /* scales[16] qs[64] d dmin */
        const uint8_t *b = row + (i / 256) * 84;
        int e = (int)(i % 256), hh = e / 128, r = e % 128, s = r / 32, r2 = r % 32;
        int is = hh * 8 + s * 2 + r2 / 16;
        uint8_t sc = b[is];
        int q = (b[16 + 32 * hh + r2] >> (2 * s)) & 3;
        return cu_half(b + 80) * (float)(sc & 15) * (float)q - cu_half(b + 82) * (float)(sc >> 4);
    }
    case MX_TYPE_Q3_K: { /* hmask[32] qs[64] scales[12] d */
        const uint8_t *b = row + (i / 256) * 110;
        int e = (int)(i % 256), hh = e / 128, r = e % 128, s = r / 32, r2 = r % 32;
        int is = hh * 8 + s * 2 + r2 / 16;
        const uint8_t *scs = b + 96;
        int lo = is < 8 ? (scs[is] & 0x0f) : (scs[is - 8] >> 4);
        int hi = (scs[8 + is % 4] >> (2 * (is / 4))) & 3;
        int scale = (lo | (hi << 4)) - 32;
        int m = 1 << (hh * 4 + s);
        int q = ((b[32 + 32 * hh + r2] >> (2 * s)) & 3) - ((b[r2] & m) ? 0 : 4);
        return cu_half(b + 108) * (float)scale * (float)q;
    }
    case MX_TYPE_Q4_K: { /* d dmin scales[12] qs[128] */
        const uint8_t *b = row + (i / 256) * 144;
        int e = (int)(i % 256), p = e / 64, r = e % 64, sc, mn;
        cu_k4_scale_min(2 * p + (r >= 32), b + 4, &sc, &mn);
        int q = r < 32 ? (b[16 + 32 * p + r] & 15) : (b[16 + 32 * p + r - 32] >> 4);
        return cu_half(b) * (float)sc * (float)q - cu_half(b + 2) * (float)mn;
    }
    case MX_TYPE_Q5_K: { /* d dmin scales[12] qh[32] qs[128] */
        const uint8_t *b = row + (i / 256) * 176;
        int e = (int)(i % 256), p = e / 64, r = e % 64, l = r % 32, sc, mn;
        cu_k4_scale_min(2 * p + (r >= 32), b + 4, &sc, &mn);
        int q = r < 32 ? (b[48 + 32 * p + l] & 15) : (b[48 + 32 * p + l] >> 4);
        int bit = r < 32 ? (1 << (2 * p)) : (2 << (2 * p));
        q += (b[16 + l] & bit) ? 16 : 0;
        return cu_half(b) * (float)sc * (float)q - cu_half(b + 2) * (float)mn;
    }
    case MX_TYPE_Q6_K: { /* ql[128] qh[64] scales[16] d */
        const uint8_t *b = row + (i / 256) * 210;
        int e = (int)(i % 256), hh = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
        const uint8_t *ql = b + 64 * hh, *qh = b + 128 + 32 * hh;
        const int8_t *sc = (const int8_t *)(b + 192) + 8 * hh;
        int q;
        switch (quarter) {
        case 0: q = (ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4); break;
        case 1: q = (ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4); break;
        case 2: q = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4); break;
        default: q = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4); break;
        }
        return cu_half(b + 208) * (float)sc[l / 16 + 2 * quarter] * (float)(q - 32);
    }
    case MX_TYPE_MXFP4: { /* e (E8M0) qs[16]: kvalue * 2^(e - 128), ggml's E8M0_TO_FP32_HALF */
        const uint8_t *b = row + (i / 32) * 17;
        int j = (int)(i % 32), q = j < 16 ? (b[1 + j] & 15) : (b[1 + j - 16] >> 4);
        const int8_t kv[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
        uint32_t e = b[0], u = e < 2 ? 0x00200000u << e : (e - 1) << 23;
        return (float)kv[q] * __uint_as_float(u);
    }
    case MX_TYPE_IQ4_NL: { /* d qs[16]: d * kvalues_iq4nl[q] (quant_iq.c's table) */
        const uint8_t *b = row + (i / 32) * 18;
        int j = (int)(i % 32), q = j < 16 ? (b[2 + j] & 15) : (b[2 + j - 16] >> 4);
        const int8_t kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                               1,    13,   25,  38,  53,  69,  89,  113};
        return cu_half(b) * (float)kv[q];
    }
    case MX_TYPE_IQ4_XS: { /* d scales_h scales_l[4] qs[128]: 8 sub-blocks of 32, 6-bit scales */
        const uint8_t *b = row + (i / 256) * 136;
        int k = (int)(i % 256), ib = k / 32, j = k % 32;
        int sh = b[2] | (b[3] << 8);
        int ls = ((b[4 + ib / 2] >> 4 * (ib % 2)) & 0xf) | (((sh >> 2 * ib) & 3) << 4);
        const uint8_t *qs = b + 8 + 16 * ib;
        int q = j < 16 ? (qs[j] & 15) : (qs[j - 16] >> 4);
        const int8_t kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                               1,    13,   25,  38,  53,  69,  89,  113};
        return cu_half(b) * (float)(ls - 32) * (float)kv[q];
    }
    default: return 0.0f;
    }
}

#endif
