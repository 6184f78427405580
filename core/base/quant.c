/* quant.c - the per-type traits table and the scalar reference (de)quantizers for the GGUF
 * tensor types (F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K..Q6_K, Q8_K, MXFP4);
 * the IQ types' converters live in quant_iq.c and are listed here.
 *
 * Why: these are the ground truth for every fast kernel and for files mixel writes. Dequantizers
 * compute exactly what ggml's dequantize_row_* compute (same float operations in the same
 * order), and quantizers produce the bytes of ggml's quantize_row_*_ref (no importance matrix),
 * so a tensor quantized here is byte-identical to one quantized by llama.cpp's tools. The
 * importance-weighted quantizers llama-quantize runs with --imatrix (ggml's quantize_row_*_impl:
 * the K-quants, the 32-block types, IQ2_XXS, IQ2_XS, IQ3_XXS, IQ3_S) are here too, behind
 * mx_quantize_row_weighted, with the grid-neighbour tables of the IQ2/IQ3 searches built once
 * (pthread_once) from the dequantization grids of quant_iq_tables.c.
 *
 * Bit-exactness notes:
 * - The arithmetic is float, in ggml's operation order; the build uses -std=c11, so GCC does not
 *   contract a*b+c into FMA (ISO mode implies -ffp-contract=off).
 * - ggml converts floats to 8-bit ints with plain C casts, which are undefined for NaN or
 *   out-of-range values. cvtt() below does what x86 does for those casts (cvttss2si, then the low
 *   byte), so finite inputs give ggml's bytes and garbage inputs give defined garbage, no UB.
 * - Blocks are copied in and out with memcpy, so src/dst may sit at any byte offset of a mapped
 *   file. Multi-byte fields are little endian, as in GGUF; like ggml, a little-endian host is
 *   assumed.
 *
 * Workload: reference code, called on rows when loading, converting or testing; the hot paths
 * live in kernels/. Thread-safe: no state besides the constant traits table.
 *
 * Ref: https://github.com/ggml-org/llama.cpp/blob/master/ggml/src/ggml-quants.c (read, not copied)
 */
#include "core/base/quant.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/base/err.h"
#include "core/base/quant_iq.h"
#include "core/base/util.h"

#define GROUP_MAX_EPS 1e-15f

/* ---------------------------------------------------------------------------------------------
 * Small helpers shared by the quantizers
 */

/* Round half to even via the 1.5*2^23 trick, exactly like ggml's nearest_int(): exact for
 * |fval| <= 2^22, defined (garbage) beyond. */
static inline int nearest_int(float fval) {
    float val = fval + 12582912.f;
    int32_t i;
    memcpy(&i, &val, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

/* (int32_t)v as x86 computes it: truncation, and INT32_MIN for NaN or out-of-range values
 * (where the C cast would be undefined). ggml's (int8_t)/(uint8_t) casts of floats are the low
 * byte of this. */
static inline int32_t cvtt(float v) {
    if (!(v > -2147483904.0f && v < 2147483648.0f))
        return INT32_MIN;
    return (int32_t)v;
}

/* Low byte of cvtt: the value of C's (int8_t)v / (uint8_t)v on x86. */
static inline uint8_t cvtt_u8(float v) {
    return (uint8_t)((uint32_t)cvtt(v) & 0xff);
}

static inline int8_t cvtt_i8(float v) {
    return (int8_t)cvtt_u8(v);
}

static inline float ld_half(mx_half h) {
    return mx_fp16_to_fp32(h);
}

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }

/* The signed value of largest magnitude (first one on ties) and its magnitude; 0 when all are
 * zero. The sign matters: ggml maps that value to the most negative quant, which has one more
 * level than the positive side. */
static void absmax_signed(const float *x, int n, float *max, float *amax) {
    float m = 0, a = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > a) {
            a = ax;
            m = x[i];
        }
    }
    *max = m;
    *amax = a;
}

/* ---------------------------------------------------------------------------------------------
 * Plain float types
 */

static void f32_to_float(const void *src, float *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f32_from_float(const float *src, void *dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = mx_fp16_to_fp32(h);
    }
}

static void f16_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = mx_fp32_to_fp16(src[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

static void bf16_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        dst[i] = mx_bf16_to_fp32(h);
    }
}

static void bf16_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n; i++) {
        uint16_t h = mx_fp32_to_bf16(src[i]);
        memcpy(p + 2 * i, &h, 2);
    }
}

static void f64_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n; i++) {
        double v;
        memcpy(&v, p + 8 * i, 8);
        dst[i] = (float)v;
    }
}

static void f64_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n; i++) {
        double v = src[i];
        memcpy(p + 8 * i, &v, 8);
    }
}

/* ---------------------------------------------------------------------------------------------
 * 32-value blocks: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1
 */

/* w = d * (q - 8); value j < 16 is the low nibble of qs[j], value j + 16 its high nibble. */
static void q4_0_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK4_0; i++, dst += MX_QK4_0) {
        mx_block_q4_0 b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d = ld_half(b.d);
        for (int j = 0; j < MX_QK4_0 / 2; j++) {
            const int x0 = (b.qs[j] & 0x0f) - 8;
            const int x1 = (b.qs[j] >> 4) - 8;
            dst[j] = x0 * d;
            dst[j + MX_QK4_0 / 2] = x1 * d;
        }
    }
}

/* d = max / -8 where max is the signed absmax, so max itself maps to q = 0 exactly. */
static void q4_0_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK4_0; i++, src += MX_QK4_0) {
        mx_block_q4_0 b;
        float max, amax;
        absmax_signed(src, MX_QK4_0, &max, &amax);
        const float d = max / -8;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        b.d = mx_fp32_to_fp16(d);
        for (int j = 0; j < MX_QK4_0 / 2; j++) {
            const float x0 = src[j] * id;
            const float x1 = src[j + MX_QK4_0 / 2] * id;
            const uint8_t q0 = (uint8_t)imin(15, cvtt_i8(x0 + 8.5f));
            const uint8_t q1 = (uint8_t)imin(15, cvtt_i8(x1 + 8.5f));
            b.qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* w = d * q + m, q in 0..15. */
static void q4_1_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK4_1; i++, dst += MX_QK4_1) {
        mx_block_q4_1 b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d = ld_half(b.d);
        const float m = ld_half(b.m);
        for (int j = 0; j < MX_QK4_1 / 2; j++) {
            const int x0 = b.qs[j] & 0x0f;
            const int x1 = b.qs[j] >> 4;
            dst[j] = x0 * d + m;
            dst[j + MX_QK4_1 / 2] = x1 * d + m;
        }
    }
}

/* Affine: m = min, d = (max - min) / 15. */
static void q4_1_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK4_1; i++, src += MX_QK4_1) {
        mx_block_q4_1 b;
        float min = 3.40282347e+38f, max = -3.40282347e+38f;
        for (int j = 0; j < MX_QK4_1; j++) {
            if (src[j] < min)
                min = src[j];
            if (src[j] > max)
                max = src[j];
        }
        const float d = (max - min) / 15;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        b.d = mx_fp32_to_fp16(d);
        b.m = mx_fp32_to_fp16(min);
        for (int j = 0; j < MX_QK4_1 / 2; j++) {
            const float x0 = (src[j] - min) * id;
            const float x1 = (src[j + MX_QK4_1 / 2] - min) * id;
            const uint8_t q0 = (uint8_t)imin(15, cvtt_i8(x0 + 0.5f));
            const uint8_t q1 = (uint8_t)imin(15, cvtt_i8(x1 + 0.5f));
            b.qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* qh (4 bytes, little endian) holds the 5th bit: bit j for value j. */
static uint32_t load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static void store_qh(uint8_t qh[4], uint32_t v) {
    for (int k = 0; k < 4; k++)
        qh[k] = (uint8_t)(v >> (8 * k));
}

/* w = d * (q - 16), q 5 bit. */
static void q5_0_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK5_0; i++, dst += MX_QK5_0) {
        mx_block_q5_0 b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d = ld_half(b.d);
        const uint32_t qh = load_qh(b.qh);
        for (int j = 0; j < MX_QK5_0 / 2; j++) {
            const int h0 = (int)((qh >> j) & 1) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            const int x0 = ((b.qs[j] & 0x0f) | h0) - 16;
            const int x1 = ((b.qs[j] >> 4) | h1) - 16;
            dst[j] = x0 * d;
            dst[j + MX_QK5_0 / 2] = x1 * d;
        }
    }
}

static void q5_0_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK5_0; i++, src += MX_QK5_0) {
        mx_block_q5_0 b;
        float max, amax;
        absmax_signed(src, MX_QK5_0, &max, &amax);
        const float d = max / -16;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        b.d = mx_fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < MX_QK5_0 / 2; j++) {
            const float x0 = src[j] * id;
            const float x1 = src[j + MX_QK5_0 / 2] * id;
            const uint8_t q0 = (uint8_t)imin(31, cvtt_i8(x0 + 16.5f));
            const uint8_t q1 = (uint8_t)imin(31, cvtt_i8(x1 + 16.5f));
            b.qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 & 0x10u) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10u) >> 4) << (j + MX_QK5_0 / 2);
        }
        store_qh(b.qh, qh);
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* w = d * q + m, q 5 bit. */
static void q5_1_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK5_1; i++, dst += MX_QK5_1) {
        mx_block_q5_1 b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d = ld_half(b.d);
        const float m = ld_half(b.m);
        const uint32_t qh = load_qh(b.qh);
        for (int j = 0; j < MX_QK5_1 / 2; j++) {
            const int h0 = (int)((qh >> j) & 1) << 4;
            const int h1 = (int)((qh >> (j + 16)) & 1) << 4;
            const int x0 = (b.qs[j] & 0x0f) | h0;
            const int x1 = (b.qs[j] >> 4) | h1;
            dst[j] = x0 * d + m;
            dst[j + MX_QK5_1 / 2] = x1 * d + m;
        }
    }
}

static void q5_1_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK5_1; i++, src += MX_QK5_1) {
        mx_block_q5_1 b;
        float min = 3.40282347e+38f, max = -3.40282347e+38f;
        for (int j = 0; j < MX_QK5_1; j++) {
            if (src[j] < min)
                min = src[j];
            if (src[j] > max)
                max = src[j];
        }
        const float d = (max - min) / 31;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        b.d = mx_fp32_to_fp16(d);
        b.m = mx_fp32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < MX_QK5_1 / 2; j++) {
            const float x0 = (src[j] - min) * id;
            const float x1 = (src[j + MX_QK5_1 / 2] - min) * id;
            /* ggml casts straight to uint8_t here, without a MIN(31, ...) */
            const uint8_t q0 = cvtt_u8(x0 + 0.5f);
            const uint8_t q1 = cvtt_u8(x1 + 0.5f);
            b.qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 & 0x10u) >> 4) << j;
            qh |= (uint32_t)((q1 & 0x10u) >> 4) << (j + MX_QK5_1 / 2);
        }
        store_qh(b.qh, qh);
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* w = d * q. */
static void q8_0_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK8_0; i++, dst += MX_QK8_0) {
        mx_block_q8_0 b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d = ld_half(b.d);
        for (int j = 0; j < MX_QK8_0; j++)
            dst[j] = b.qs[j] * d;
    }
}

/* Symmetric: d = absmax / 127, q = roundf(x / d) (half away from zero). */
static void q8_0_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK8_0; i++, src += MX_QK8_0) {
        mx_block_q8_0 b;
        float amax = 0.0f;
        for (int j = 0; j < MX_QK8_0; j++)
            amax = MX_MAX(amax, fabsf(src[j]));
        const float d = amax / 127;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        b.d = mx_fp32_to_fp16(d);
        for (int j = 0; j < MX_QK8_0; j++)
            b.qs[j] = cvtt_i8(roundf(src[j] * id));
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* w = d * q; s = d * sum(q) is only used by dot products. */
static void q8_1_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK8_1; i++, dst += MX_QK8_1) {
        mx_block_q8_1 b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d = ld_half(b.d);
        for (int j = 0; j < MX_QK8_1; j++)
            dst[j] = b.qs[j] * d;
    }
}

static void q8_1_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK8_1; i++, src += MX_QK8_1) {
        mx_block_q8_1 b;
        float amax = 0.0f;
        for (int j = 0; j < MX_QK8_1; j++)
            amax = MX_MAX(amax, fabsf(src[j]));
        const float d = amax / 127;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        b.d = mx_fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < MX_QK8_1; j++) {
            b.qs[j] = cvtt_i8(roundf(src[j] * id));
            sum += b.qs[j];
        }
        b.s = mx_fp32_to_fp16((float)sum * d);
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* ---------------------------------------------------------------------------------------------
 * K-quant helpers: ggml's scale searches (reference versions, no importance matrix)
 */

/* Fits x (n values, weights w) as scale * L + min with L in 0..nmax and min <= 0, trying nstep+1
 * candidate scales around nmax/(max - min) and keeping the least weighted error (squared, or
 * absolute with use_mad). Writes L, *the_min = -min, returns the scale. Laux: n bytes scratch.
 * ggml's make_qkx2_quants; with importance weights, use_mad false and nstep >= 1 also its
 * make_qkx3_quants (the weighted quantizers' fit: the same operations in the same order). */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *w, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                              bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += w[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = imax(0, imin(nmax, l));
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += w[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Symmetric fit x ~ scale * (L - nmax), L in 0..2*nmax-1, weights qw (an importance-matrix
 * slice) or x^2 when qw is NULL (ggml's rmse_type 1), searching 19 candidate scales. Returns the
 * scale (0 and L = 0 for an all-zero group). */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L, const float *qw) {
    float max, amax;
    absmax_signed(x, n, &max, &amax);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = imax(-nmax, imin(nmax - 1, l));
            float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's group fit: like make_qx_quants' first guess, then up to 5 passes of coordinate descent
 * on each L (weights x^2). L ends in 0..2*nmax-1 (biased by nmax); all-zero groups get L = 0. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    float max, amax;
    absmax_signed(x, n, &max, &amax);
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = nearest_int(x[i] * sl2 / slx);
                new_l = imax(-nmax, imin(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Q4_K/Q5_K pack 8 6-bit scales and 8 6-bit mins in 12 bytes: j < 4 in the low 6 bits of
 * bytes j and j+4; j >= 4 split as 4 low bits in byte j+4 and 2 high bits in the top of bytes
 * j-4 (scale) and j (min). */
void mx_q4_k_scale_min(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void set_scale_min_k4(int j, uint8_t *q, uint8_t ls, uint8_t lm) {
    if (j < 4) {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = (uint8_t)((ls & 0x0f) | ((lm & 0x0f) << 4));
        q[j - 4] |= (uint8_t)((ls >> 4) << 6);
        q[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* Q3_K's 16 6-bit scales (biased by 32): low nibbles in bytes 0..7 (j < 8 low half, j >= 8 high
 * half of byte j-8), the 2 high bits of scale j in byte 8 + j%4 at bit 2*(j/4). */
static int q3_k_scale(const uint8_t *s, int j) {
    int lo = j < 8 ? (s[j] & 0x0f) : (s[j - 8] >> 4);
    int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* ---------------------------------------------------------------------------------------------
 * K-quants: 256-value super-blocks
 */

/* 16 groups of 16: w = d * (scales[g] & 15) * q - dmin * (scales[g] >> 4), q 2 bit. Values
 * 128h + 32k + l (l < 32) sit in qs[32h + l] at bits 2k. */
static void q2_k_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_q2_K b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d = ld_half(b.d);
        const float min = ld_half(b.dmin);
        const uint8_t *q = b.qs;
        int is = 0;
        for (int h = 0; h < MX_QK_K; h += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int half = 0; half < 2; half++) {
                    const uint8_t sc = b.scales[is++];
                    const float dl = d * (sc & 0x0f);
                    const float ml = min * (sc >> 4);
                    for (int l = 0; l < 16; l++)
                        *dst++ = dl * ((q[l + 16 * half] >> shift) & 3) - ml;
                }
            }
        }
    }
}

/* The tail shared by both Q2_K quantizers: requantizes the 256 values x against the rounded
 * 4-bit scales/mins the block b stores (groups whose scale is 0 keep the fit's L), then packs L
 * (0..3) into b->qs. */
static void q2_k_finish(const float *x, uint8_t *L, mx_block_q2_K *b) {
    for (int j = 0; j < MX_QK_K / 16; j++) {
        const float d = ld_half(b->d) * (b->scales[j] & 0x0f);
        if (d == 0)
            continue;
        const float dm = ld_half(b->dmin) * (b->scales[j] >> 4);
        for (int ii = 0; ii < 16; ii++) {
            int l = nearest_int((x[16 * j + ii] + dm) / d);
            L[16 * j + ii] = (uint8_t)imax(0, imin(3, l));
        }
    }
    for (int j = 0; j < MX_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            b->qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) |
                                         (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

static void q2_k_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    const float q4scale = 15.f;
    for (int64_t i = 0; i < n / MX_QK_K; i++, src += MX_QK_K) {
        mx_block_q2_K b;
        uint8_t L[MX_QK_K], Laux[16];
        float weights[16], mins[MX_QK_K / 16], scales[MX_QK_K / 16];
        float max_scale = 0, max_min = 0; /* scales are positive: the min was taken out */
        for (int j = 0; j < MX_QK_K / 16; j++) {
            for (int l = 0; l < 16; l++)
                weights[l] = fabsf(src[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, src + 16 * j, weights, L + 16 * j, &mins[j],
                                         Laux, -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < MX_QK_K / 16; j++)
                b.scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            b.d = mx_fp32_to_fp16(max_scale / q4scale);
        } else {
            memset(b.scales, 0, sizeof(b.scales));
            b.d = mx_fp32_to_fp16(0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < MX_QK_K / 16; j++)
                b.scales[j] |= (uint8_t)((unsigned)nearest_int(iscale * mins[j]) << 4);
            b.dmin = mx_fp32_to_fp16(max_min / q4scale);
        } else {
            b.dmin = mx_fp32_to_fp16(0.f);
        }
        q2_k_finish(src, L, &b);
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* 16 groups of 16: w = d * scale_g * (q - 4) with q = 2 low bits from qs (as in Q2_K) plus a high
 * bit from hmask: value 128h + 32k + l has it in hmask[l] at bit 4h + k. */
static void q3_k_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_q3_K b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d_all = ld_half(b.d);
        const uint8_t *q = b.qs;
        uint8_t m = 1;
        int is = 0;
        for (int h = 0; h < MX_QK_K; h += 128, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m = (uint8_t)(m << 1)) {
                for (int half = 0; half < 2; half++) {
                    const float dl = d_all * q3_k_scale(b.scales, is++);
                    for (int l = 16 * half; l < 16 * half + 16; l++)
                        *dst++ = dl * (((q[l] >> shift) & 3) - ((b.hmask[l] & m) ? 0 : 4));
                }
            }
        }
    }
}

/* Packs Q3_K's 16 scale codes Ls (0..63, biased by 32) into the 12 scale bytes. */
static void q3_k_set_scales(uint8_t *scales, const int8_t *Ls) {
    memset(scales, 0, 12);
    for (int j = 0; j < MX_QK_K / 16; j++) {
        int l = Ls[j];
        if (j < 8)
            scales[j] = (uint8_t)(l & 0x0f);
        else
            scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
        l >>= 4;
        scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
    }
}

/* The tail shared by both Q3_K quantizers: requantizes x against the stored 6-bit scales and d
 * (groups whose scale is 0 keep the fit's L, biased 0..7), then splits L into hmask (high bit of
 * value j: hmask[j % 32], bit j / 32) and qs (2 low bits). */
static void q3_k_finish(const float *x, int8_t *L, mx_block_q3_K *b) {
    for (int j = 0; j < MX_QK_K / 16; j++) {
        const int8_t sc = (int8_t)q3_k_scale(b->scales, j);
        const float d = ld_half(b->d) * sc;
        if (d == 0)
            continue;
        for (int ii = 0; ii < 16; ii++) {
            int l = nearest_int(x[16 * j + ii] / d);
            L[16 * j + ii] = (int8_t)(imax(-4, imin(3, l)) + 4);
        }
    }
    memset(b->hmask, 0, sizeof(b->hmask));
    for (int j = 0; j < MX_QK_K; j++) {
        if (L[j] > 3) {
            b->hmask[j % 32] |= (uint8_t)(1u << (j / 32));
            L[j] = (int8_t)(L[j] - 4);
        }
    }
    for (int j = 0; j < MX_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            b->qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) |
                                         (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

static void q3_k_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++, src += MX_QK_K) {
        mx_block_q3_K b;
        int8_t L[MX_QK_K];
        float scales[MX_QK_K / 16];
        float max_scale = 0, amax = 0;
        for (int j = 0; j < MX_QK_K / 16; j++) {
            scales[j] = make_q3_quants(16, 4, src + 16 * j, L + 16 * j);
            float a = fabsf(scales[j]);
            if (a > amax) {
                amax = a;
                max_scale = scales[j];
            }
        }
        memset(b.scales, 0, sizeof(b.scales));
        if (max_scale != 0) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < MX_QK_K / 16; j++) {
                int8_t l = (int8_t)nearest_int(iscale * scales[j]);
                l = (int8_t)(imax(-32, imin(31, l)) + 32);
                if (j < 8)
                    b.scales[j] = l & 0x0f;
                else
                    b.scales[j - 8] |= (uint8_t)((l & 0x0f) << 4);
                l >>= 4;
                b.scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            b.d = mx_fp32_to_fp16(1 / iscale);
        } else {
            b.d = mx_fp32_to_fp16(0.f);
        }
        q3_k_finish(src, L, &b);
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* 8 groups of 32: w = d * sc_g * q - dmin * m_g, q 4 bit; values 64c + l (l < 32) are the low
 * nibbles of qs[32c + l], values 64c + 32 + l the high nibbles. */
static void q4_k_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_q4_K b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d = ld_half(b.d);
        const float min = ld_half(b.dmin);
        const uint8_t *q = b.qs;
        for (int is = 0; is < 8; is += 2, q += 32) {
            uint8_t sc, m;
            mx_q4_k_scale_min(is, b.scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            mx_q4_k_scale_min(is + 1, b.scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * (q[l] & 0x0f) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

/* Shared by Q4_K and Q5_K: per-group (scale, min) fits with weights rms(group) + |x|, then the
 * 6-bit scale/min codes and the super-block d/dmin. Fills L with the group fits' quants and the
 * block's scales, d and dmin. */
static void k_scales_mins(const float *x, int nmax, float rmin, float rdelta, int nstep,
                          uint8_t *L, uint8_t b_scales[MX_K_SCALE_SIZE], mx_half *b_d,
                          mx_half *b_dmin) {
    uint8_t Laux[32];
    float weights[32], mins[MX_QK_K / 32], scales[MX_QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < MX_QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, rdelta, nstep, false);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(b_scales, 0, MX_K_SCALE_SIZE);
    for (int j = 0; j < MX_QK_K / 32; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        set_scale_min_k4(j, b_scales, MX_MIN(ls, 63), MX_MIN(lm, 63));
    }
    *b_d = mx_fp32_to_fp16(max_scale / 63.f);
    *b_dmin = mx_fp32_to_fp16(max_min / 63.f);
}

/* Requantizes each group of 32 against the stored 6-bit scale/min (groups whose scale rounds to
 * 0 keep the fit's quants), L in 0..nmax. */
static void k_requantize(const float *x, int nmax, const uint8_t *b_scales, mx_half b_d,
                         mx_half b_dmin, uint8_t *L) {
    for (int j = 0; j < MX_QK_K / 32; j++) {
        uint8_t sc, m;
        mx_q4_k_scale_min(j, b_scales, &sc, &m);
        const float d = ld_half(b_d) * sc;
        if (d == 0)
            continue;
        const float dm = ld_half(b_dmin) * m;
        for (int ii = 0; ii < 32; ii++) {
            int l = nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, l));
        }
    }
}

/* Q4_K's 4-bit quants: values 64c + l and 64c + 32 + l share byte qs[32c + l]. */
static void q4_k_pack(const uint8_t *L, mx_block_q4_K *b) {
    for (int j = 0; j < MX_QK_K; j += 64)
        for (int l = 0; l < 32; l++)
            b->qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

static void q4_k_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++, src += MX_QK_K) {
        mx_block_q4_K b;
        uint8_t L[MX_QK_K];
        k_scales_mins(src, 15, -1.f, 0.1f, 20, L, b.scales, &b.d, &b.dmin);
        k_requantize(src, 15, b.scales, b.d, b.dmin, L);
        q4_k_pack(L, &b);
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* As Q4_K with a 5th bit: value 64c + l takes its high bit from qh[l] bit 2c, value 64c + 32 + l
 * from qh[l] bit 2c + 1. */
static void q5_k_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_q5_K b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d = ld_half(b.d);
        const float min = ld_half(b.dmin);
        const uint8_t *ql = b.qs;
        uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < 8; is += 2, ql += 32) {
            uint8_t sc, m;
            mx_q4_k_scale_min(is, b.scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            mx_q4_k_scale_min(is + 1, b.scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++)
                *dst++ = d1 * ((ql[l] & 0x0f) + (b.qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++)
                *dst++ = d2 * ((ql[l] >> 4) + (b.qh[l] & u2 ? 16 : 0)) - m2;
            u1 = (uint8_t)(u1 << 2);
            u2 = (uint8_t)(u2 << 2);
        }
    }
}

/* Q5_K's 5-bit quants: low nibbles as in Q4_K, the 5th bit of value 64c + l in qh[l] bit 2c and
 * of value 64c + 32 + l in qh[l] bit 2c + 1. */
static void q5_k_pack(const uint8_t *L, mx_block_q5_K *b) {
    memset(b->qh, 0, sizeof(b->qh));
    uint8_t m1 = 1, m2 = 2;
    for (int c = 0; c < MX_QK_K; c += 64) {
        for (int j = 0; j < 32; j++) {
            int l1 = L[c + j], l2 = L[c + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                b->qh[j] |= m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                b->qh[j] |= m2;
            }
            b->qs[c / 2 + j] = (uint8_t)(l1 | (l2 << 4));
        }
        m1 = (uint8_t)(m1 << 2);
        m2 = (uint8_t)(m2 << 2);
    }
}

static void q5_k_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++, src += MX_QK_K) {
        mx_block_q5_K b;
        uint8_t L[MX_QK_K];
        k_scales_mins(src, 31, -0.5f, 0.1f, 15, L, b.scales, &b.d, &b.dmin);
        k_requantize(src, 31, b.scales, b.d, b.dmin, L);
        q5_k_pack(L, &b);
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* 16 groups of 16: w = d * scales[g] * (q - 32), q 6 bit. For h in {0,1} and l < 32 the values
 * 128h + l, +32, +64, +96 take low nibbles from ql[64h + l] (low), ql[64h + 32 + l] (low),
 * ql[64h + l] (high), ql[64h + 32 + l] (high), and their 2 high bits from qh[32h + l] at bits
 * 0, 2, 4, 6. */
static void q6_k_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_q6_K b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d = ld_half(b.d);
        const uint8_t *ql = b.ql, *qh = b.qh;
        const int8_t *sc = b.scales;
        for (int h = 0; h < MX_QK_K; h += 128, ql += 64, qh += 32, sc += 8, dst += 128) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dst[l] = d * sc[is] * q1;
                dst[l + 32] = d * sc[is + 2] * q2;
                dst[l + 64] = d * sc[is + 4] * q3;
                dst[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

/* Q6_K of n values; qw (n importance weights, or NULL for ggml's x^2) weighs the 16-value group
 * fits. With qw NULL this is quantize_row_q6_K_ref, else quantize_row_q6_K_impl. */
static void q6_k_quantize(const float *src, void *dst, int64_t n, const float *qw) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++, src += MX_QK_K) {
        mx_block_q6_K b;
        int8_t L[MX_QK_K];
        float scales[MX_QK_K / 16];
        float max_scale, max_abs_scale;
        for (int ib = 0; ib < MX_QK_K / 16; ib++)
            scales[ib] = make_qx_quants(16, 32, src + 16 * ib, L + 16 * ib,
                                        qw ? qw + MX_QK_K * i + 16 * ib : NULL);
        absmax_signed(scales, MX_QK_K / 16, &max_scale, &max_abs_scale);
        memset(&b, 0, sizeof(b));
        if (max_abs_scale < GROUP_MAX_EPS) { /* all (near) zero: the all-zero block */
            memcpy(p + i * sizeof(b), &b, sizeof(b));
            continue;
        }
        float iscale = -128.f / max_scale;
        b.d = mx_fp32_to_fp16(1 / iscale);
        for (int ib = 0; ib < MX_QK_K / 16; ib++)
            b.scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < MX_QK_K / 16; j++) {
            const float d = ld_half(b.d) * b.scales[j];
            if (d == 0)
                continue;
            for (int ii = 0; ii < 16; ii++) {
                int l = nearest_int(src[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, l)) + 32);
            }
        }
        uint8_t *ql = b.ql, *qh = b.qh;
        for (int j = 0; j < MX_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const uint8_t a0 = (uint8_t)L[j + l], a1 = (uint8_t)L[j + l + 32];
                const uint8_t a2 = (uint8_t)L[j + l + 64], a3 = (uint8_t)L[j + l + 96];
                ql[l] = (uint8_t)((a0 & 0x0f) | ((a2 & 0x0f) << 4));
                ql[l + 32] = (uint8_t)((a1 & 0x0f) | ((a3 & 0x0f) << 4));
                qh[l] = (uint8_t)((a0 >> 4) | ((a1 >> 4) << 2) | ((a2 >> 4) << 4) |
                                  ((a3 >> 4) << 6));
            }
        }
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

static void q6_k_from_float(const float *src, void *dst, int64_t n) {
    q6_k_quantize(src, dst, n, NULL);
}

/* w = d * q (d a float here: Q8_K is the activation type, never stored in files). */
static void q8_k_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_K; i++, dst += MX_QK_K) {
        mx_block_q8_K b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        for (int j = 0; j < MX_QK_K; j++)
            dst[j] = b.d * b.qs[j];
    }
}

/* iscale = -127/max (signed absmax), q = min(127, nearest_int(iscale * x)), d = 1/iscale, and
 * bsums = sums of 16 quants for the K-quant dot products' min terms. An all-zero block is all
 * zero bytes (ggml leaves bsums unwritten there; we zero them). */
static void q8_k_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++, src += MX_QK_K) {
        mx_block_q8_K b;
        float max, amax;
        memset(&b, 0, sizeof(b));
        absmax_signed(src, MX_QK_K, &max, &amax);
        if (amax != 0) {
            const float iscale = -127.f / max;
            for (int j = 0; j < MX_QK_K; j++)
                b.qs[j] = (int8_t)imin(127, nearest_int(iscale * src[j]));
            for (int j = 0; j < MX_QK_K / 16; j++) {
                int sum = 0;
                for (int ii = 0; ii < 16; ii++)
                    sum += b.qs[16 * j + ii];
                b.bsums[j] = (int16_t)sum;
            }
            b.d = 1 / iscale;
        }
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* ---------------------------------------------------------------------------------------------
 * MXFP4: 32 E2M1 values sharing one E8M0 exponent (gpt-oss expert weights)
 */

/* Doubled E2M1 values by 4-bit code: transcribed from the format (ggml-common.h kvalues_mxfp4). */
const int8_t mx_kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

/* w = kvalue * 2^(e - 128); low nibbles are values 0..15, high nibbles 16..31. */
static void mxfp4_to_float(const void *src, float *dst, int64_t n) {
    const unsigned char *p = src;
    for (int64_t i = 0; i < n / MX_QK_MXFP4; i++, dst += MX_QK_MXFP4) {
        mx_block_mxfp4 b;
        memcpy(&b, p + i * sizeof(b), sizeof(b));
        const float d = mx_e8m0_to_fp32_half(b.e);
        for (int j = 0; j < MX_QK_MXFP4 / 2; j++) {
            dst[j] = mx_kvalues_mxfp4[b.qs[j] & 0x0f] * d;
            dst[j + MX_QK_MXFP4 / 2] = mx_kvalues_mxfp4[b.qs[j] >> 4] * d;
        }
    }
}

/* The code whose value times d is nearest to x (the first on ties), as ggml's best_index. */
static uint8_t mxfp4_best(float x, float d) {
    uint8_t best = 0;
    float best_err = fabsf(mx_kvalues_mxfp4[0] * d - x);
    for (uint8_t i = 1; i < 16; i++) {
        float err = fabsf(mx_kvalues_mxfp4[i] * d - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return best;
}

/* e = floor(log2(absmax)) - 2 + 127 (so absmax lands in the top code's range), then the nearest
 * code per value (ggml's quantize_row_mxfp4_ref). */
static void mxfp4_from_float(const float *src, void *dst, int64_t n) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_MXFP4; i++, src += MX_QK_MXFP4) {
        mx_block_mxfp4 b;
        float amax = 0.0f;
        for (int j = 0; j < MX_QK_MXFP4; j++)
            if (amax < fabsf(src[j]))
                amax = fabsf(src[j]);
        b.e = amax > 0.0f ? cvtt_u8(floorf(log2f(amax)) - 2 + 127) : 0;
        const float d = mx_e8m0_to_fp32_half(b.e);
        for (int j = 0; j < MX_QK_MXFP4 / 2; j++)
            b.qs[j] = (uint8_t)(mxfp4_best(src[j], d) |
                                mxfp4_best(src[j + MX_QK_MXFP4 / 2], d) << 4);
        memcpy(p + i * sizeof(b), &b, sizeof(b));
    }
}

/* ---------------------------------------------------------------------------------------------
 * The traits table and the public entry points
 */

/* ---------------------------------------------------------------------------------------------
 * Importance-weighted quantizers: what llama-quantize runs with --imatrix (ggml's
 * quantize_row_*_impl with quant_weights), same float operations in the same order. The weight
 * of value i is qw[i] * sqrt(sigma2 + x[i]^2): the imatrix column's mean squared activation,
 * times a magnitude term so that small weights in busy columns still count.
 */

/* Fits the n non-negative values x (a block's group scales or mins) as scale * L, L in 0..nmax,
 * weighted by qw: 9 candidate scales, then up to 5 passes of coordinate descent on each L
 * (ggml's make_qp_quants). Returns the scale; 0 and L = 0 when every x is (near) zero. */
static float make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float max = 0;
    for (int i = 0; i < n; i++)
        max = max > x[i] ? max : x[i];
    if (max < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)nearest_int(iscale * x[i]);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        float diff = x[i] - scale * L[i];
        best += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0)
            continue;
        float iscale_is = (0.1f * is + nmax) / max;
        float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            int l = imin(nmax, nearest_int(iscale_is * x[i]));
            float diff = x[i] - scale_is * l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best) {
            best = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imin(nmax, nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * l;
        suml2 += qw[i] * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = qw[i];
            float slx = sumlx - w * x[i] * L[i];
            float sl2 = suml2 - w * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int new_l = imin(nmax, nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* sigma2 = sum(x^2) / n * mul: the mean power the weights add to each x^2 (the 32-block types use
 * the whole row with mul 1, the K-quants each 256-block; Q3_K..Q5_K with mul 2). */
static float mean_sq(const float *x, int64_t n, float mul) {
    float s = 0;
    for (int64_t j = 0; j < n; j++)
        s += x[j] * x[j];
    return mul * s / n;
}

/* The weights of one group: qw[l] * sqrt(sigma2 + x[l]^2). */
static void group_weights(const float *x, const float *qw, int n, float sigma2, float *w) {
    for (int l = 0; l < n; l++)
        w[l] = qw[l] * sqrtf(sigma2 + x[l] * x[l]);
}

/* Q4_0 / Q5_0 (nmax 8 / 16): the symmetric fit per block with the weights. */
static void q4_0_q5_0_weighted(int type, const float *x, void *dst, int64_t n, const float *qw) {
    unsigned char *p = dst;
    const float sigma2 = mean_sq(x, n, 1.f);
    for (int64_t ib = 0; ib < n / 32; ib++) {
        const float *xb = x + 32 * ib;
        float w[32];
        int8_t L[32];
        group_weights(xb, qw + 32 * ib, 32, sigma2, w);
        float d = make_qx_quants(32, type == MX_TYPE_Q4_0 ? 8 : 16, xb, L, w);
        if (type == MX_TYPE_Q4_0) {
            mx_block_q4_0 b;
            b.d = mx_fp32_to_fp16(d);
            for (int j = 0; j < 16; j++)
                b.qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
            memcpy(p + ib * sizeof b, &b, sizeof b);
        } else {
            mx_block_q5_0 b;
            uint32_t qh = 0;
            b.d = mx_fp32_to_fp16(d);
            for (int j = 0; j < 16; j++) {
                const uint8_t a = (uint8_t)L[j], c = (uint8_t)L[j + 16];
                b.qs[j] = (uint8_t)((a & 0x0f) | ((c & 0x0f) << 4));
                qh |= (uint32_t)((a & 0x10u) >> 4) << j;
                qh |= (uint32_t)((c & 0x10u) >> 4) << (j + 16);
            }
            store_qh(b.qh, qh);
            memcpy(p + ib * sizeof b, &b, sizeof b);
        }
    }
}

/* Q4_1 / Q5_1 (nmax 15 / 31): the affine fit per block with the weights. */
static void q4_1_q5_1_weighted(int type, const float *x, void *dst, int64_t n, const float *qw) {
    unsigned char *p = dst;
    const float sigma2 = mean_sq(x, n, 1.f);
    for (int64_t ib = 0; ib < n / 32; ib++) {
        const float *xb = x + 32 * ib;
        float w[32], min;
        uint8_t L[32], Laux[32];
        group_weights(xb, qw + 32 * ib, 32, sigma2, w);
        float d = make_qkx2_quants(32, type == MX_TYPE_Q4_1 ? 15 : 31, xb, w, L, &min, Laux,
                                   -0.9f, 0.05f, 36, false);
        if (type == MX_TYPE_Q4_1) {
            mx_block_q4_1 b;
            b.d = mx_fp32_to_fp16(d);
            b.m = mx_fp32_to_fp16(-min);
            for (int j = 0; j < 16; j++)
                b.qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
            memcpy(p + ib * sizeof b, &b, sizeof b);
        } else {
            mx_block_q5_1 b;
            uint32_t qh = 0;
            b.d = mx_fp32_to_fp16(d);
            b.m = mx_fp32_to_fp16(-min);
            for (int j = 0; j < 16; j++) {
                b.qs[j] = (uint8_t)((L[j] & 0x0f) | ((L[j + 16] & 0x0f) << 4));
                qh |= (uint32_t)((L[j] & 0x10u) >> 4) << j;
                qh |= (uint32_t)((L[j + 16] & 0x10u) >> 4) << (j + 16);
            }
            store_qh(b.qh, qh);
            memcpy(p + ib * sizeof b, &b, sizeof b);
        }
    }
}

/* Q2_K: affine fits of the 16-value groups, then the 4-bit scale and min codes fitted with the
 * groups' weight sums (make_qp_quants). */
static void q2_k_weighted(const float *x, void *dst, int64_t n, const float *qw) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++, x += MX_QK_K) {
        mx_block_q2_K b;
        uint8_t L[MX_QK_K], Laux[16], Ls[MX_QK_K / 16], Lm[MX_QK_K / 16];
        float mins[MX_QK_K / 16], scales[MX_QK_K / 16], sw[MX_QK_K / 16], w[16];
        const float sigma2 = mean_sq(x, MX_QK_K, 1.f);
        for (int j = 0; j < MX_QK_K / 16; j++) {
            group_weights(x + 16 * j, qw + MX_QK_K * i + 16 * j, 16, sigma2, w);
            sw[j] = 0;
            for (int l = 0; l < 16; l++)
                sw[j] += w[l];
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux,
                                         -0.9f, 0.05f, 36, false);
        }
        float dm = make_qp_quants(MX_QK_K / 16, 15, scales, Ls, sw);
        float mm = make_qp_quants(MX_QK_K / 16, 15, mins, Lm, sw);
        b.d = mx_fp32_to_fp16(dm);
        b.dmin = mx_fp32_to_fp16(mm);
        for (int j = 0; j < MX_QK_K / 16; j++)
            b.scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        q2_k_finish(x, L, &b);
        memcpy(p + i * sizeof b, &b, sizeof b);
    }
}

/* Q3_K: weighted symmetric fits of the 16-value groups, then the 6-bit scale codes fitted the
 * same way with the groups' weight sums. */
static void q3_k_weighted(const float *x, void *dst, int64_t n, const float *qw) {
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++, x += MX_QK_K) {
        mx_block_q3_K b;
        int8_t L[MX_QK_K], Ls[MX_QK_K / 16];
        float scales[MX_QK_K / 16], sw[MX_QK_K / 16], w[16];
        const float sigma2 = mean_sq(x, MX_QK_K, 2.f);
        for (int j = 0; j < MX_QK_K / 16; j++) {
            group_weights(x + 16 * j, qw + MX_QK_K * i + 16 * j, 16, sigma2, w);
            float sumw = 0;
            for (int l = 0; l < 16; l++)
                sumw += w[l];
            sw[j] = sumw;
            scales[j] = make_qx_quants(16, 4, x + 16 * j, L + 16 * j, w);
        }
        float d_block = make_qx_quants(MX_QK_K / 16, 32, scales, Ls, sw);
        q3_k_set_scales(b.scales, Ls);
        b.d = mx_fp32_to_fp16(d_block);
        q3_k_finish(x, L, &b);
        memcpy(p + i * sizeof b, &b, sizeof b);
    }
}

/* Q4_K / Q5_K (nmax 15 / 31): weighted affine fits of the 32-value groups, then the 6-bit scale
 * and min codes (make_qp_quants with the groups' weight sums), requantized and packed as the
 * reference quantizers do. */
static void q45_k_weighted(int type, const float *x, void *dst, int64_t n, const float *qw) {
    unsigned char *p = dst;
    const int nmax = type == MX_TYPE_Q4_K ? 15 : 31;
    for (int64_t i = 0; i < n / MX_QK_K; i++, x += MX_QK_K) {
        uint8_t L[MX_QK_K], Laux[32], Ls[MX_QK_K / 32], Lm[MX_QK_K / 32];
        uint8_t scales_b[MX_K_SCALE_SIZE];
        float mins[MX_QK_K / 32], scales[MX_QK_K / 32], sw[MX_QK_K / 32], w[32];
        const float sigma2 = mean_sq(x, MX_QK_K, 2.f);
        for (int j = 0; j < MX_QK_K / 32; j++) {
            group_weights(x + 32 * j, qw + MX_QK_K * i + 32 * j, 32, sigma2, w);
            float sumw = 0;
            for (int l = 0; l < 32; l++)
                sumw += w[l];
            sw[j] = sumw;
            scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], Laux,
                                         -0.9f, 0.05f, 36, false);
        }
        float d_block = make_qp_quants(MX_QK_K / 32, 63, scales, Ls, sw);
        float m_block = make_qp_quants(MX_QK_K / 32, 63, mins, Lm, sw);
        memset(scales_b, 0, sizeof scales_b);
        for (int j = 0; j < MX_QK_K / 32; j++)
            set_scale_min_k4(j, scales_b, MX_MIN(Ls[j], 63), MX_MIN(Lm[j], 63));
        const mx_half d = mx_fp32_to_fp16(d_block), dmin = mx_fp32_to_fp16(m_block);
        k_requantize(x, nmax, scales_b, d, dmin, L);
        if (type == MX_TYPE_Q4_K) {
            mx_block_q4_K b;
            b.d = d;
            b.dmin = dmin;
            memcpy(b.scales, scales_b, sizeof scales_b);
            q4_k_pack(L, &b);
            memcpy(p + i * sizeof b, &b, sizeof b);
        } else {
            mx_block_q5_K b;
            b.d = d;
            b.dmin = dmin;
            memcpy(b.scales, scales_b, sizeof scales_b);
            q5_k_pack(L, &b);
            memcpy(p + i * sizeof b, &b, sizeof b);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * IQ2_XXS with importance weights (ggml's quantize_row_iq2_xxs_impl; no unweighted version: the
 * type is refused without an imatrix). Each 8-value group is a point of a 256-entry grid whose
 * coordinates are 1, 3 or 5 (times the group scale), with 7 sign bits (the 8th makes the parity
 * even). Off-grid candidates snap to the nearest grid points, found through a map of all 4^8
 * 2-bit patterns built once (ggml's iq2xs_init_impl for IQ2_XXS).
 */

/* The weighted least-squares sums of magnitudes xval against odd levels q = 2 L + 1 (the grid
 * coordinates of the IQ2/IQ3 searches): sumqx = sum w x q, sumq2 = sum w q^2, accumulated in index
 * order as ggml does (the byte-equality goldens depend on the order). The best scale is
 * sumqx / sumq2. */
static void odd_level_sums(int n, const float *weight, const float *xval, const int8_t *L,
                           float *sumqx, float *sumq2) {
    float sx = 0, s2 = 0;
    for (int i = 0; i < n; i++) {
        float q = 2 * L[i] + 1;
        sx += weight[i] * xval[i] * q;
        s2 += weight[i] * q * q;
    }
    *sumqx = sx;
    *sumq2 = s2;
}

#define IQ2_KMAP_SIZE 43692 /* 2-bit patterns with digits 0..2 in 8 places fit below this */

/* The grid as 8 coordinates 1/3/5 per point, the pattern -> point map (>= 0: on the grid; else
 * -(offset + 1) into the neighbour lists: a count, then that many point indices, the points at
 * the nwant smallest squared distances, by distance then index). IQ1_S and IQ1_M use the same
 * tables for their 2048-point grid of levels -1/0/1 (coordinates 1/3/5 stand for levels 0..2). */
struct iq2_tables {
    int n_grid;             /* 256 (IQ2_XXS), 512 (IQ2_XS), 1024 (IQ2_S), 2048 (IQ1_S/M) */
    int8_t grid[2048][8];
    int32_t map[IQ2_KMAP_SIZE];
    uint16_t *neighbours;
};

static struct iq2_tables *iq2xxs_tab, *iq2xs_tab, *iq2s_tab, *iq1s_tab;
static pthread_once_t iq2xxs_once = PTHREAD_ONCE_INIT, iq2xs_once = PTHREAD_ONCE_INIT,
                      iq2s_once = PTHREAD_ONCE_INIT, iq1s_once = PTHREAD_ONCE_INIT;

/* Builds the tables of a grid of n_grid points (as ggml's iq2xs_init_impl); NULL when out of
 * memory. The grid coordinates come from the dequantization grid, whose bytes level_byte[0..2]
 * are levels 0, 1, 2 (coordinate 2l + 1); each off-grid pattern lists the points at its nwant
 * smallest distinct distances. */
static struct iq2_tables *iq2_build(const uint64_t *src, int n_grid, const uint8_t level_byte[3],
                                    int nwant) {
    struct iq2_tables *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->n_grid = n_grid;
    for (int k = 0; k < n_grid; k++)
        for (int i = 0; i < 8; i++) {
            uint8_t b = (uint8_t)(src[k] >> (8 * i));
            t->grid[k][i] = (int8_t)(b == level_byte[0] ? 1 : b == level_byte[1] ? 3 : 5);
        }
    for (int i = 0; i < IQ2_KMAP_SIZE; i++)
        t->map[i] = -1;
    for (int k = 0; k < n_grid; k++) {
        int u = 0;
        for (int i = 0; i < 8; i++)
            u |= ((t->grid[k][i] - 1) / 2) << (2 * i);
        t->map[u] = k;
    }
    size_t cap = 1 << 20, n = 0;
    t->neighbours = malloc(cap * sizeof *t->neighbours);
    /* the coordinates transposed (coordinate i of every point in a row), so that the distances
     * of a pattern to all points vectorise: 2048 points x 43692 patterns for the IQ1 grid */
    int *d2 = malloc((size_t)n_grid * sizeof *d2);
    int32_t(*gt)[2048] = malloc(8 * sizeof *gt);
    if (!d2 || !gt) {
        free(t->neighbours);
        t->neighbours = NULL;
    } else {
        for (int i = 0; i < 8; i++)
            for (int k = 0; k < n_grid; k++)
                gt[i][k] = t->grid[k][i];
    }
    for (int u = 0; u < IQ2_KMAP_SIZE && t->neighbours; u++) {
        if (t->map[u] >= 0)
            continue;
        int lev[3], nlev;
        for (int k = 0; k < n_grid; k++)
            d2[k] = 0;
        for (int i = 0; i < 8; i++) {
            const int32_t pos = 2 * ((u >> (2 * i)) & 3) + 1;
            const int32_t *g = gt[i];
            for (int k = 0; k < n_grid; k++)
                d2[k] += (g[k] - pos) * (g[k] - pos);
        }
        for (nlev = 0; nlev < nwant; nlev++) { /* the nwant smallest distinct distances */
            int m = INT32_MAX;
            for (int k = 0; k < n_grid; k++)
                if ((nlev == 0 || d2[k] > lev[nlev - 1]) && d2[k] < m)
                    m = d2[k];
            if (m == INT32_MAX)
                break;
            lev[nlev] = m;
        }
        if (n + 1 + (size_t)n_grid > cap) {
            cap *= 2;
            uint16_t *p = realloc(t->neighbours, cap * sizeof *p);
            if (!p) {
                free(t->neighbours);
                t->neighbours = NULL;
                break;
            }
            t->neighbours = p;
        }
        t->map[u] = -(int32_t)(n + 1);
        size_t start = n++;
        for (int pass = 0; pass < nlev; pass++)
            for (int k = 0; k < n_grid; k++)
                if (d2[k] == lev[pass])
                    t->neighbours[n++] = (uint16_t)k;
        t->neighbours[start] = (uint16_t)(n - start - 1);
    }
    free(d2);
    free(gt);
    if (!t->neighbours) {
        free(t);
        return NULL;
    }
    return t;
}

/* pthread_once callbacks: the tables of each type, built once per process. The IQ2 grids' level
 * bytes are 0x08, 0x19, 0x2b, IQ1_S's -1, 0, 1; ggml keeps 2 distances of neighbours for IQ2_XXS
 * and IQ2_XS, 1 for IQ2_S, 3 for the IQ1 grid. */
static const uint8_t iq2_level_bytes[3] = {0x08, 0x19, 0x2b};
static void iq2xxs_build(void) { iq2xxs_tab = iq2_build(mx_iq2xxs_grid, 256, iq2_level_bytes, 2); }
static void iq2xs_build(void) { iq2xs_tab = iq2_build(mx_iq2xs_grid, 512, iq2_level_bytes, 2); }
static void iq2s_build(void) { iq2s_tab = iq2_build(mx_iq2s_grid, 1024, iq2_level_bytes, 1); }
static void iq1s_build(void) {
    static const uint8_t lb[3] = {0xff, 0x00, 0x01};
    iq1s_tab = iq2_build(mx_iq1s_grid, 2048, lb, 3);
}

/* The neighbour of pattern list nb (count first) nearest to xval in the weighted distance of
 * scale * coordinate; writes its levels (0..2) to L, returns its grid index. */
static int iq2_best_neighbour(const struct iq2_tables *t, const uint16_t *nb, const float *xval,
                              const float *w, float scale, int8_t *L) {
    float best = FLT_MAX;
    int gi = nb[1];
    for (int j = 1; j <= nb[0]; j++) {
        const int8_t *pg = t->grid[nb[j]];
        float d2 = 0;
        for (int i = 0; i < 8; i++) {
            float diff = scale * pg[i] - xval[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            gi = nb[j];
        }
    }
    for (int i = 0; i < 8; i++)
        L[i] = (int8_t)((t->grid[gi][i] - 1) / 2);
    return gi;
}

/* The grid point of 8 levels (0..2, with 3s clamped away), snapping through the neighbours when
 * the pattern is off the grid (L then gets the neighbour's levels). */
static int iq2_point(const struct iq2_tables *t, int8_t *L, const float *xval, const float *w,
                     float scale) {
    int u = 0;
    for (int i = 0; i < 8; i++)
        u |= L[i] << (2 * i);
    int gi = t->map[u];
    if (gi < 0)
        gi = iq2_best_neighbour(t, t->neighbours - t->map[u] - 1, xval, w, scale, L);
    return gi;
}

/* The magnitudes of 8 values (xval) and all 8 sign bits, for the types that store every sign
 * (IQ2_S, IQ3_S): no parity to fix. */
static uint8_t plain_signs8(const float *xb, float *xval) {
    uint8_t s8 = 0;
    for (int i = 0; i < 8; i++) {
        if (xb[i] >= 0) {
            xval[i] = xb[i];
        } else {
            xval[i] = -xb[i];
            s8 |= (uint8_t)(1u << i);
        }
    }
    return s8;
}

/* The magnitudes of 8 values (xval) and their sign bits with even parity, as the IQ2/IQ3 grids
 * store 7 of them and imply the 8th: when an odd number are negative, the value of least
 * weighted square keeps the wrong sign (its magnitude negated in xval instead). Returns the 7
 * stored bits. */
static uint8_t even_signs8(const float *xb, const float *weight, float *xval) {
    int nflip = 0;
    uint8_t s = 0;
    for (int i = 0; i < 8; i++) {
        xval[i] = xb[i] >= 0 ? xb[i] : -xb[i];
        if (xb[i] < 0) {
            nflip++;
            s |= (uint8_t)(1u << i);
        }
    }
    if (nflip % 2) {
        int imin = 0;
        float min = weight[0] * xb[0] * xb[0];
        for (int i = 1; i < 8; i++) {
            float ax = weight[i] * xb[i] * xb[i];
            if (ax < min) {
                min = ax;
                imin = i;
            }
        }
        xval[imin] = -xval[imin];
        s ^= (uint8_t)(1u << imin);
    }
    return s & 127;
}

/* One 256-value block; qw: its 256 importance weights. */
static void iq2_xxs_block(const struct iq2_tables *t, const float *xbl, const float *qw,
                          mx_block_iq2_xxs *y) {
    const int kMaxQ = 3;
    float scales[MX_QK_K / 32], weight[32], waux[32], xval[32];
    int8_t L[32], Laux[32];
    uint8_t signs[4];
    uint32_t q2[2 * (MX_QK_K / 32)];
    memset(q2, 0, sizeof q2);
    y->d = mx_fp32_to_fp16(0.f);
    float max_scale = 0;
    float sumx2 = 0;
    for (int i = 0; i < MX_QK_K; i++)
        sumx2 += xbl[i] * xbl[i];
    const float sigma2 = sumx2 / MX_QK_K;
    for (int ib = 0; ib < MX_QK_K / 32; ib++) {
        const float *xb = xbl + 32 * ib;
        group_weights(xb, qw + 32 * ib, 32, sigma2, weight);
        for (int i = 0; i < 32; i++)
            waux[i] = sqrtf(weight[i]);
        for (int k = 0; k < 4; k++)
            signs[k] = even_signs8(xb + 8 * k, weight + 8 * k, xval + 8 * k);
        float max = xval[0];
        for (int i = 1; i < 32; i++)
            max = max > xval[i] ? max : xval[i];
        if (max < GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float scale = make_qp_quants(32, kMaxQ + 1, xval, (uint8_t *)L, weight);
        float eff_max = scale * kMaxQ;
        if (eff_max <= 0) {
            scales[ib] = 0;
            continue;
        }
        /* 13 candidate scales: levels from each, snapped to the grid, refit */
        float best = 0;
        for (int is = -6; is <= 6; is++) {
            float id = (2 * kMaxQ - 1 + is * 0.1f) / eff_max;
            float this_scale = 1 / id;
            for (int k = 0; k < 4; k++) {
                for (int i = 0; i < 8; i++) {
                    int l = nearest_int(0.5f * (id * xval[8 * k + i] - 1));
                    Laux[8 * k + i] = (int8_t)imax(0, imin(kMaxQ - 1, l));
                }
                iq2_point(t, Laux + 8 * k, xval + 8 * k, waux + 8 * k, this_scale);
            }
            float sumqx, sumq2;
            odd_level_sums(32, weight, xval, Laux, &sumqx, &sumq2);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                scale = sumqx / sumq2;
                best = scale * sumqx;
                memcpy(L, Laux, 32);
            }
        }
        if (scale > 0) {
            float id = 1 / scale;
            for (int k = 0; k < 4; k++) {
                int8_t Lk[8];
                for (int i = 0; i < 8; i++) {
                    int l = nearest_int(0.5f * (id * xval[8 * k + i] - 1));
                    Lk[i] = (int8_t)imax(0, imin(kMaxQ - 1, l));
                }
                int gi = iq2_point(t, Lk, xval + 8 * k, waux + 8 * k, scale);
                for (int i = 0; i < 8; i++)
                    L[8 * k + i] = (int8_t)((t->grid[gi][i] - 1) / 2);
            }
            float sumqx, sumq2;
            odd_level_sums(32, weight, xval, L, &sumqx, &sumq2);
            if (sumq2 > 0)
                scale = sumqx / sumq2;
        }
        if (scale < 0) { /* ggml: "should never happen"; the scale is stored unsigned */
            scale = -scale;
            for (int k = 0; k < 4; k++)
                signs[k] = (uint8_t)(~signs[k] & 127);
        }
        for (int k = 0; k < 4; k++) {
            int u = 0;
            for (int i = 0; i < 8; i++)
                u |= L[8 * k + i] << (2 * i);
            int gi = u < IQ2_KMAP_SIZE ? t->map[u] : -1;
            if (gi < 0)
                gi = 0; /* unreachable: L came from grid points (ggml aborts here) */
            q2[2 * ib] |= (uint32_t)gi << (8 * k);
            q2[2 * ib + 1] |= (uint32_t)signs[k] << (7 * k);
        }
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) {
        memset(y->qs, 0, sizeof y->qs);
        return;
    }
    float d = max_scale / 31;
    y->d = mx_fp32_to_fp16(d);
    float id = 1 / d;
    for (int ib = 0; ib < MX_QK_K / 32; ib++) {
        int l = nearest_int(0.5f * (id * scales[ib] - 1));
        l = imax(0, imin(15, l));
        q2[2 * ib + 1] |= (uint32_t)l << 28;
    }
    memcpy(y->qs, q2, sizeof y->qs);
}

/* The IQ2_XS / IQ2_S search of 16 magnitudes xval (2 groups of 8; weights weight, their roots
 * waux; max their largest): levels (0..2) from 19 candidate scales 1/id = max / (5 + is / 10),
 * snapped to the grid, the least-squares scale of the best; groups that had to snap are redone
 * with that scale, then the scale refit (ggml's quantize_row_iq2_xs_impl / _s_impl). Writes the
 * levels of grid points to L; returns the scale. */
static float iq2_group16_search(const struct iq2_tables *t, float max, const float *xval,
                                const float *weight, const float *waux, int8_t L[16]) {
    const int kMaxQ = 3;
    int8_t Laux[16];
    bool on_grid[2], on_grid_aux[2];
    float best = 0;
    float scale = max / (2 * kMaxQ - 1);
    on_grid[0] = on_grid[1] = true;
    for (int is = -9; is <= 9; is++) {
        float id = (2 * kMaxQ - 1 + is * 0.1f) / max;
        float this_scale = 1 / id;
        for (int k = 0; k < 2; k++) {
            int u = 0;
            for (int i = 0; i < 8; i++) {
                int l = nearest_int(0.5f * (id * xval[8 * k + i] - 1));
                Laux[8 * k + i] = (int8_t)imax(0, imin(kMaxQ - 1, l));
                u |= Laux[8 * k + i] << (2 * i);
            }
            on_grid_aux[k] = t->map[u] >= 0;
            if (!on_grid_aux[k])
                iq2_best_neighbour(t, t->neighbours - t->map[u] - 1, xval + 8 * k,
                                   waux + 8 * k, this_scale, Laux + 8 * k);
        }
        float sumqx, sumq2;
        odd_level_sums(16, weight, xval, Laux, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, 16);
            on_grid[0] = on_grid_aux[0];
            on_grid[1] = on_grid_aux[1];
        }
    }
    /* groups that had to snap: redo them with the fitted scale, then refit */
    if ((!on_grid[0] || !on_grid[1]) && scale > 0) {
        float id = 1 / scale;
        for (int k = 0; k < 2; k++) {
            if (on_grid[k])
                continue;
            int u = 0;
            for (int i = 0; i < 8; i++) {
                int l = nearest_int(0.5f * (id * xval[8 * k + i] - 1));
                l = imax(0, imin(kMaxQ - 1, l));
                u |= l << (2 * i);
                L[8 * k + i] = (int8_t)l;
            }
            if (t->map[u] < 0)
                iq2_best_neighbour(t, t->neighbours - t->map[u] - 1, xval + 8 * k,
                                   waux + 8 * k, scale, L + 8 * k);
        }
        float sumqx, sumq2;
        odd_level_sums(16, weight, xval, L, &sumqx, &sumq2);
        if (sumq2 > 0)
            scale = sumqx / sumq2;
    }
    return scale;
}

/* One IQ2_XS block (ggml's quantize_row_iq2_xs_impl): 16 groups of 16 values, each two points of
 * the 512-point grid with 7 sign bits and a 4-bit scale; qw: the block's 256 weights. */
static void iq2_xs_block(const struct iq2_tables *t, const float *xbl, const float *qw,
                         mx_block_iq2_xs *y) {
    float scales[MX_QK_K / 16], weight[16], waux[16], xval[16];
    int8_t L[16];
    uint8_t signs[2];
    uint16_t q2[2 * (MX_QK_K / 16)];
    memset(q2, 0, sizeof q2);
    memset(y->scales, 0, sizeof y->scales);
    y->d = mx_fp32_to_fp16(0.f);
    float max_scale = 0;
    float sumx2 = 0;
    for (int i = 0; i < MX_QK_K; i++)
        sumx2 += xbl[i] * xbl[i];
    const float sigma2 = sumx2 / MX_QK_K;
    for (int ib = 0; ib < MX_QK_K / 16; ib++) {
        const float *xb = xbl + 16 * ib;
        group_weights(xb, qw + 16 * ib, 16, sigma2, weight);
        for (int i = 0; i < 16; i++)
            waux[i] = sqrtf(weight[i]);
        for (int k = 0; k < 2; k++)
            signs[k] = even_signs8(xb + 8 * k, weight + 8 * k, xval + 8 * k);
        float max = xval[0];
        for (int i = 1; i < 16; i++)
            max = max > xval[i] ? max : xval[i];
        memset(L, 0, sizeof L);
        if (max < GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float scale = iq2_group16_search(t, max, xval, weight, waux, L);
        if (scale < 0) { /* ggml: "should never happen"; the scale is stored unsigned */
            scale = -scale;
            for (int k = 0; k < 2; k++)
                signs[k] = (uint8_t)(~signs[k] & 127);
        }
        for (int k = 0; k < 2; k++) {
            int u = 0;
            for (int i = 0; i < 8; i++)
                u |= L[8 * k + i] << (2 * i);
            int gi = u < IQ2_KMAP_SIZE ? t->map[u] : -1;
            if (gi < 0)
                gi = 0; /* unreachable: L came from grid points (ggml aborts here) */
            q2[2 * ib + k] = (uint16_t)(gi | (signs[k] << 9));
        }
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) {
        memset(y->qs, 0, sizeof y->qs);
        return;
    }
    float d = max_scale / 31;
    y->d = mx_fp32_to_fp16(d);
    float id = 1 / d;
    for (int ib = 0; ib < MX_QK_K / 16; ib++) {
        int l = nearest_int(0.5f * (id * scales[ib] - 1));
        l = imax(0, imin(15, l));
        if (ib % 2 == 0)
            y->scales[ib / 2] = (uint8_t)l;
        else
            y->scales[ib / 2] |= (uint8_t)(l << 4);
    }
    memcpy(y->qs, q2, sizeof y->qs);
}

/* IQ2_XS of a row (n a multiple of 256) with weights qw. Returns 0 or MX_ENOMEM (tables). */
static int iq2_xs_weighted(const float *x, void *dst, int64_t n, const float *qw) {
    pthread_once(&iq2xs_once, iq2xs_build);
    const struct iq2_tables *t = iq2xs_tab;
    if (!t)
        return MX_ENOMEM;
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq2_xs b;
        iq2_xs_block(t, x + i * MX_QK_K, qw + i * MX_QK_K, &b);
        memcpy(p + i * sizeof b, &b, sizeof b);
    }
    return 0;
}

/* IQ2_XXS of a row (n a multiple of 256) with weights qw. Returns 0 or MX_ENOMEM (tables). */
static int iq2_xxs_weighted(const float *x, void *dst, int64_t n, const float *qw) {
    pthread_once(&iq2xxs_once, iq2xxs_build);
    const struct iq2_tables *t = iq2xxs_tab;
    if (!t)
        return MX_ENOMEM;
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq2_xxs b;
        iq2_xxs_block(t, x + i * MX_QK_K, qw + i * MX_QK_K, &b);
        memcpy(p + i * sizeof b, &b, sizeof b);
    }
    return 0;
}

/* One IQ2_S block (ggml's quantize_row_iq2_s_impl): 16 groups of 16 values, each two points of the
 * 1024-point grid (10-bit indices: low byte in qs, 2 high bits in qh) with all 8 sign bits
 * stored, 4-bit scales in pairs; qw: the block's 256 weights, or NULL (weights
 * sigma2 / 4 + x^2, ggml's quantize_row_iq2_s_ref). */
static void iq2_s_block(const struct iq2_tables *t, const float *xbl, const float *qw,
                        mx_block_iq2_s *y) {
    float scales[MX_QK_K / 16], weight[16], waux[16], xval[16];
    int8_t L[16];
    uint8_t signs[2];
    memset(y, 0, sizeof *y);
    y->d = mx_fp32_to_fp16(0.f);
    float max_scale = 0;
    float sumx2 = 0;
    for (int i = 0; i < MX_QK_K; i++)
        sumx2 += xbl[i] * xbl[i];
    const float sigma2 = 2 * sumx2 / MX_QK_K;
    for (int ib = 0; ib < MX_QK_K / 16; ib++) {
        const float *xb = xbl + 16 * ib;
        if (qw)
            group_weights(xb, qw + 16 * ib, 16, sigma2, weight);
        else
            for (int i = 0; i < 16; i++)
                weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
        for (int i = 0; i < 16; i++)
            waux[i] = sqrtf(weight[i]);
        for (int k = 0; k < 2; k++)
            signs[k] = plain_signs8(xb + 8 * k, xval + 8 * k);
        float max = xval[0];
        for (int i = 1; i < 16; i++)
            max = max > xval[i] ? max : xval[i];
        memset(L, 0, sizeof L);
        if (max < 1e-8f) { /* ggml's GROUP_MAX_EPS_IQ2_S: the group stays zero */
            scales[ib] = 0;
            continue;
        }
        float scale = iq2_group16_search(t, max, xval, weight, waux, L);
        if (scale < 0) { /* ggml: "should never happen"; the scale is stored unsigned */
            scale = -scale;
            for (int k = 0; k < 2; k++)
                signs[k] = (uint8_t)~signs[k];
        }
        for (int k = 0; k < 2; k++) {
            int u = 0;
            for (int i = 0; i < 8; i++)
                u |= L[8 * k + i] << (2 * i);
            int gi = t->map[u];
            if (gi < 0)
                gi = 0; /* unreachable: L came from grid points (ggml aborts here) */
            const int i8 = 2 * ib + k;
            y->qs[i8] = (uint8_t)(gi & 255);
            y->qh[i8 / 4] |= (uint8_t)((gi >> 8) << (2 * (i8 % 4)));
            y->qs[MX_QK_K / 8 + i8] = signs[k];
        }
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale)
        return;
    float d = max_scale / 31;
    y->d = mx_fp32_to_fp16(d * 0.9875f); /* ggml's fudge factor */
    float id = 1 / d;
    for (int ib = 0; ib < MX_QK_K / 16; ib++) {
        int l = imax(0, imin(15, nearest_int(0.5f * (id * scales[ib] - 1))));
        if (ib % 2 == 0)
            y->scales[ib / 2] = (uint8_t)l;
        else
            y->scales[ib / 2] |= (uint8_t)(l << 4);
    }
}

/* IQ2_S of a row (n a multiple of 256), weights qw or NULL. Returns 0 or MX_ENOMEM (tables). */
static int iq2_s_quantize(const float *x, void *dst, int64_t n, const float *qw) {
    pthread_once(&iq2s_once, iq2s_build);
    const struct iq2_tables *t = iq2s_tab;
    if (!t)
        return MX_ENOMEM;
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq2_s b;
        iq2_s_block(t, x + i * MX_QK_K, qw ? qw + i * MX_QK_K : NULL, &b);
        memcpy(p + i * sizeof b, &b, sizeof b);
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * IQ1_S and IQ1_M (ggml's quantize_row_iq1_s_impl / _m_impl): groups of 8 values are points of a
 * 2048-point grid of levels -1, 0, 1, shifted by +-1/8 (IQ1S_DELTA = IQ1M_DELTA in ggml-common.h)
 * per sub-block; 3-bit sub-block scales. The levels of a sub-block come from an exact search over
 * the two boundaries that split its sorted values into 3 groups, then off-grid groups snap to the
 * nearest grid point.
 */

#define IQ1_DELTA 0.125f

/* The shifted levels -1, 0, 1 plus (iq1_plus) or minus (iq1_minus) IQ1_DELTA. */
static const float iq1_plus[3] = {-1 + IQ1_DELTA, IQ1_DELTA, 1 + IQ1_DELTA};
static const float iq1_minus[3] = {-1 - IQ1_DELTA, -IQ1_DELTA, 1 - IQ1_DELTA};

/* The indices 0..n-1 of xb in ascending order of value, equal values in index order (the order
 * glibc's stable qsort gives ggml's iq1_sort_helper; n <= 32). */
static void iq1_sort(const float *xb, int n, int *idx) {
    for (int j = 0; j < n; j++) {
        int k = j;
        while (k > 0 && xb[idx[k - 1]] > xb[j]) {
            idx[k] = idx[k - 1];
            k--;
        }
        idx[k] = j;
    }
}

/* The grid point of 8 levels L (0..2) for xb at scale with shifted levels xx, snapping an
 * off-grid pattern to the neighbour of least weighted squared error (ggml's
 * iq1_find_best_neighbour2; L then gets its levels). Returns the index; *on_grid says whether
 * the pattern was a grid point. */
static int iq1_point(const struct iq2_tables *t, int8_t *L, const float *xb, const float *w,
                     float scale, const float *xx, bool *on_grid) {
    int u = 0;
    for (int i = 0; i < 8; i++)
        u |= L[i] << (2 * i);
    int gi = t->map[u];
    *on_grid = gi >= 0;
    if (gi >= 0)
        return gi;
    const uint16_t *nb = t->neighbours - t->map[u] - 1;
    float best = FLT_MAX;
    gi = nb[1];
    for (int j = 1; j <= nb[0]; j++) {
        const int8_t *pg = t->grid[nb[j]];
        float d2 = 0;
        for (int i = 0; i < 8; i++) {
            float diff = scale * xx[(pg[i] - 1) / 2] - xb[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            gi = nb[j];
        }
    }
    for (int i = 0; i < 8; i++)
        L[i] = (int8_t)((t->grid[gi][i] - 1) / 2);
    return gi;
}

/* One IQ1_S block: 8 sub-blocks of 32 values, each 4 grid points (8-bit index in qs, 3 high bits
 * in qh) and in qh's top nibble a 3-bit scale and the sign of its shift; qw: 256 weights. */
static void iq1_s_block(const struct iq2_tables *t, const float *xbl, const float *qw,
                        mx_block_iq1_s *y) {
    float scales[MX_QK_K / 32], weight[32], sumx[33], sumw[33];
    int8_t L[32], shifts[MX_QK_K / 32];
    int idx[32];
    uint16_t index[4];
    memset(y, 0, sizeof *y);
    y->d = mx_fp32_to_fp16(0.f);
    float max_scale = 0;
    float sumx2 = 0;
    for (int i = 0; i < MX_QK_K; i++)
        sumx2 += xbl[i] * xbl[i];
    const float sigma2 = 2 * sumx2 / MX_QK_K;
    for (int ib = 0; ib < MX_QK_K / 32; ib++) {
        const float *xb = xbl + 32 * ib;
        group_weights(xb, qw + 32 * ib, 32, sigma2, weight);
        float max = fabsf(xb[0]);
        for (int i = 1; i < 32; i++)
            max = max > fabsf(xb[i]) ? max : fabsf(xb[i]);
        scales[ib] = 0;
        shifts[ib] = 1;
        if (max < 1e-12f) /* ggml's GROUP_MAX_EPS_IQ1_S: the sub-block stays zero */
            continue;
        /* prefix sums over the sorted values: every split into levels 0 | 1 | 2 in O(1) */
        iq1_sort(xb, 32, idx);
        sumx[0] = sumw[0] = 0;
        for (int j = 0; j < 32; j++) {
            int i = idx[j];
            sumx[j + 1] = sumx[j] + weight[i] * xb[i];
            sumw[j + 1] = sumw[j] + weight[i];
        }
        float best_score = -FLT_MAX, scale = max;
        int besti1 = -1, besti2 = -1, best_shift = 0;
        for (int i1 = 0; i1 <= 32; i1++) {
            for (int i2 = i1; i2 <= 32; i2++) {
                for (int sh = 1; sh >= -1; sh -= 2) {
                    const float *xs = sh == 1 ? iq1_plus : iq1_minus;
                    float sumqx = (sumx[i1] - sumx[0]) * xs[0] + (sumx[i2] - sumx[i1]) * xs[1] +
                                  (sumx[32] - sumx[i2]) * xs[2];
                    float sumq2 = (sumw[i1] - sumw[0]) * xs[0] * xs[0] +
                                  (sumw[i2] - sumw[i1]) * xs[1] * xs[1] +
                                  (sumw[32] - sumw[i2]) * xs[2] * xs[2];
                    if (sumq2 > 0 && sumqx * sumqx > best_score * sumq2) {
                        scale = sumqx / sumq2;
                        best_score = scale * sumqx;
                        besti1 = i1;
                        besti2 = i2;
                        best_shift = sh;
                    }
                }
            }
        }
        if (besti1 < 0 || besti2 < 0 || best_shift == 0)
            continue;
        for (int j = 0; j < 32; j++)
            L[idx[j]] = (int8_t)(j < besti1 ? 0 : j < besti2 ? 1 : 2);
        if (scale < 0) {
            for (int j = 0; j < 32; j++)
                L[j] = (int8_t)(2 - L[j]);
            scale = -scale;
            best_shift = -best_shift;
        }
        bool all_on_grid = true;
        const float *xx = best_shift == 1 ? iq1_plus : iq1_minus;
        for (int k = 0; k < 4; k++) {
            bool og;
            index[k] = (uint16_t)iq1_point(t, L + 8 * k, xb + 8 * k, weight + 8 * k, scale, xx,
                                           &og);
            all_on_grid &= og;
        }
        if (!all_on_grid) {
            float sumqx = 0, sumq2 = 0;
            for (int k = 0; k < 4; k++) {
                const int8_t *pg = t->grid[index[k]];
                for (int j = 0; j < 8; j++) {
                    float w = weight[8 * k + j];
                    float q = xx[(pg[j] - 1) / 2];
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
            if (sumqx > 0 && sumq2 > 0)
                scale = sumqx / sumq2;
        }
        uint16_t h = 0;
        for (int k = 0; k < 4; k++) {
            y->qs[4 * ib + k] = (uint8_t)(index[k] & 255);
            h |= (uint16_t)((index[k] >> 8) << (3 * k));
        }
        y->qh[ib] = h;
        scales[ib] = scale;
        shifts[ib] = (int8_t)best_shift;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale)
        return;
    float d = max_scale / 15;
    y->d = mx_fp32_to_fp16(d * 1.125f); /* ggml's fudge factor */
    float id = 1 / d;
    for (int ib = 0; ib < MX_QK_K / 32; ib++) {
        int l = imax(0, imin(7, nearest_int(0.5f * (id * scales[ib] - 1))));
        if (shifts[ib] == -1)
            l |= 8;
        y->qh[ib] |= (uint16_t)(l << 12);
    }
}

/* The shifted levels of group k (0 or 1) of an IQ1_M sub-block whose shift signs are combination
 * c (0: +,+  1: +,-  2: -,+  3: -,-). */
static const float *iq1m_levels(int c, int k) {
    return (k == 0 ? c < 2 : c % 2 == 0) ? iq1_plus : iq1_minus;
}

/* One IQ1_M block: 16 sub-blocks of 16 values, each 2 grid points (8-bit index in qs, 3 high bits
 * and the shift sign per point in qh), 3-bit sub-block scales, the fp16 block scale spread over
 * the top nibbles of the 4 scale words; qw: 256 weights or NULL (x^2). */
static void iq1_m_block(const struct iq2_tables *t, const float *xbl, const float *qw,
                        mx_block_iq1_m *y) {
    static const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88};
    float scales[MX_QK_K / 16], weight[16];
    int8_t L[16], shifts[MX_QK_K / 16];
    int idx[16];
    uint16_t index[2];
    memset(y, 0, sizeof *y);
    float max_scale = 0;
    float sumx2 = 0;
    for (int i = 0; i < MX_QK_K; i++)
        sumx2 += xbl[i] * xbl[i];
    const float sigma2 = 2 * sumx2 / MX_QK_K;
    for (int ib = 0; ib < MX_QK_K / 16; ib++) {
        const float *xb = xbl + 16 * ib;
        if (qw)
            group_weights(xb, qw + 16 * ib, 16, sigma2, weight);
        else
            for (int i = 0; i < 16; i++)
                weight[i] = xb[i] * xb[i];
        float max = fabsf(xb[0]);
        for (int i = 1; i < 16; i++)
            max = max > fabsf(xb[i]) ? max : fabsf(xb[i]);
        scales[ib] = 0;
        shifts[ib] = 0;
        if (max < 1e-7f) /* ggml's GROUP_MAX_EPS_IQ1_M: the sub-block stays zero */
            continue;
        iq1_sort(xb, 16, idx);
        /* the terms w v x and w v^2 of each sorted value j at each level and shift-sign
         * combination c (0: +,+  1: +,-  2: -,+  3: -,-), as ggml forms them */
        float tqx[3][4][16], tq2[3][4][16];
        for (int j = 0; j < 16; j++) {
            int i = idx[j];
            for (int lv = 0; lv < 3; lv++)
                for (int c = 0; c < 4; c++) {
                    float v = iq1m_levels(c, i >= 8)[lv];
                    tqx[lv][c][j] = weight[i] * v * xb[i];
                    tq2[lv][c][j] = weight[i] * v * v;
                }
        }
        float best_score = -FLT_MAX, scale = max;
        int besti1 = -1, besti2 = -1, best_k = -1;
        float s0x[4] = {0, 0, 0, 0}, s02[4] = {0, 0, 0, 0}; /* terms j < i1 at level 0 */
        for (int i1 = 0; i1 <= 16; i1++) {
            if (i1 > 0)
                for (int c = 0; c < 4; c++) {
                    s0x[c] += tqx[0][c][i1 - 1];
                    s02[c] += tq2[0][c][i1 - 1];
                }
            float s1x[4], s12[4]; /* then the terms i1 <= j < i2 at level 1 */
            memcpy(s1x, s0x, sizeof s1x);
            memcpy(s12, s02, sizeof s12);
            for (int i2 = i1; i2 <= 16; i2++) {
                if (i2 > i1)
                    for (int c = 0; c < 4; c++) {
                        s1x[c] += tqx[1][c][i2 - 1];
                        s12[c] += tq2[1][c][i2 - 1];
                    }
                /* and the rest at level 2: each sum adds its terms in sorted order from 0, as
                 * ggml's loop does (so the same float results) */
                float sumqx[4], sumq2[4];
                for (int c = 0; c < 4; c++) {
                    float sx = s1x[c], s2 = s12[c];
                    for (int j = i2; j < 16; j++) {
                        sx += tqx[2][c][j];
                        s2 += tq2[2][c][j];
                    }
                    sumqx[c] = sx;
                    sumq2[c] = s2;
                }
                for (int c = 0; c < 4; c++) {
                    if (sumq2[c] > 0 && sumqx[c] * sumqx[c] > best_score * sumq2[c]) {
                        scale = sumqx[c] / sumq2[c];
                        best_score = scale * sumqx[c];
                        besti1 = i1;
                        besti2 = i2;
                        best_k = c;
                    }
                }
            }
        }
        if (besti1 < 0 || besti2 < 0 || best_k < 0)
            continue;
        for (int j = 0; j < 16; j++)
            L[idx[j]] = (int8_t)(j < besti1 ? 0 : j < besti2 ? 1 : 2);
        if (scale < 0) {
            for (int j = 0; j < 16; j++)
                L[j] = (int8_t)(2 - L[j]);
            scale = -scale;
            best_k = 3 - best_k;
        }
        bool all_on_grid = true;
        for (int k = 0; k < 2; k++) {
            bool og;
            index[k] = (uint16_t)iq1_point(t, L + 8 * k, xb + 8 * k, weight + 8 * k, scale,
                                           iq1m_levels(best_k, k), &og);
            all_on_grid &= og;
        }
        if (!all_on_grid) {
            float sumqx = 0, sumq2 = 0;
            for (int k = 0; k < 2; k++) {
                const float *xx = iq1m_levels(best_k, k);
                const int8_t *pg = t->grid[index[k]];
                for (int j = 0; j < 8; j++) {
                    float w = weight[8 * k + j];
                    float q = xx[(pg[j] - 1) / 2];
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
            if (sumqx > 0 && sumq2 > 0)
                scale = sumqx / sumq2;
        }
        y->qs[2 * ib] = (uint8_t)(index[0] & 255);
        y->qs[2 * ib + 1] = (uint8_t)(index[1] & 255);
        y->qh[ib] = (uint8_t)((index[0] >> 8) | ((index[1] >> 8) << 4));
        scales[ib] = scale;
        shifts[ib] = (int8_t)best_k;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale)
        return;
    /* the block scale: least squares over the stored points and 3-bit scales */
    uint16_t sc[4] = {0, 0, 0, 0};
    float d = max_scale / 15;
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int ib = 0; ib < MX_QK_K / 16; ib++) {
        int l = imax(0, imin(7, nearest_int(0.5f * (id * scales[ib] - 1))));
        sc[ib / 4] |= (uint16_t)(l << (3 * (ib % 4)));
        y->qh[ib] |= masks[shifts[ib]];
        const float *xb = xbl + 16 * ib;
        if (qw)
            group_weights(xb, qw + 16 * ib, 16, sigma2, weight);
        else
            for (int i = 0; i < 16; i++)
                weight[i] = xb[i] * xb[i];
        for (int k = 0; k < 2; k++) {
            const float *xx = iq1m_levels(shifts[ib], k);
            const int8_t *pg = t->grid[y->qs[2 * ib + k] + ((y->qh[ib] << (8 - 4 * k)) & 0x700)];
            for (int j = 0; j < 8; j++) {
                float w = weight[8 * k + j];
                float q = xx[(pg[j] - 1) / 2] * (2 * l + 1);
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        }
    }
    if (sumq2 > 0)
        d = sumqx / sumq2;
    uint16_t h = mx_fp32_to_fp16(d * 1.1125f); /* ggml's fudge factor */
    sc[0] |= (uint16_t)((h & 0x000f) << 12);
    sc[1] |= (uint16_t)((h & 0x00f0) << 8);
    sc[2] |= (uint16_t)((h & 0x0f00) << 4);
    sc[3] |= (uint16_t)(h & 0xf000);
    memcpy(y->scales, sc, sizeof sc);
}

/* IQ1_S (qw required) or IQ1_M (qw or NULL) of a row, n a multiple of 256. Returns 0 or
 * MX_ENOMEM (tables). */
static int iq1_quantize(int type, const float *x, void *dst, int64_t n, const float *qw) {
    pthread_once(&iq1s_once, iq1s_build);
    const struct iq2_tables *t = iq1s_tab;
    if (!t)
        return MX_ENOMEM;
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        const float *w = qw ? qw + i * MX_QK_K : NULL;
        if (type == MX_TYPE_IQ1_S) {
            mx_block_iq1_s b;
            iq1_s_block(t, x + i * MX_QK_K, w, &b);
            memcpy(p + i * sizeof b, &b, sizeof b);
        } else {
            mx_block_iq1_m b;
            iq1_m_block(t, x + i * MX_QK_K, w, &b);
            memcpy(p + i * sizeof b, &b, sizeof b);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * IQ3_XXS (ggml's quantize_row_iq3_xxs_impl for its 256-point grid): groups of 4 values are
 * points of a grid with 3-bit levels l (coordinate 2l + 1), 7 sign bits per 8 values, a 4-bit
 * scale per 32 values. Weighted by the imatrix when given, else by x^2 (ggml's
 * quantize_row_iq3_xxs_ref). Off-grid candidates snap through a map of all 8^4 patterns.
 */

#define IQ3_KMAP_SIZE 4096

/* The grid's levels per point, the pattern -> point map (as struct iq2_tables: >= 0 on the grid,
 * else -(offset + 1) into the neighbour lists, count first). */
struct iq3_tables {
    int n_grid;               /* 256 (IQ3_XXS) or 512 (IQ3_S) */
    int8_t grid[512][4];
    int32_t map[IQ3_KMAP_SIZE];
    uint16_t *neighbours;
};

static struct iq3_tables *iq3xxs_tab, *iq3s_tab;
static pthread_once_t iq3xxs_once = PTHREAD_ONCE_INIT, iq3s_once = PTHREAD_ONCE_INIT;

/* Builds the tables of an IQ3 grid of n_grid points whose dequantization bytes for levels 0..7
 * are level_byte[]; each off-grid pattern lists the points at its nwant smallest distances.
 * NULL when out of memory. */
static struct iq3_tables *iq3_build(const uint32_t *src, int n_grid, const uint8_t *level_byte,
                                    int nwant) {
    struct iq3_tables *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->n_grid = n_grid;
    for (int k = 0; k < n_grid; k++)
        for (int i = 0; i < 4; i++) {
            uint8_t b = (uint8_t)(src[k] >> (8 * i));
            int l = 0;
            while (l < 7 && level_byte[l] != b)
                l++;
            t->grid[k][i] = (int8_t)(2 * l + 1);
        }
    for (int i = 0; i < IQ3_KMAP_SIZE; i++)
        t->map[i] = -1;
    for (int k = 0; k < n_grid; k++) {
        int u = 0;
        for (int i = 0; i < 4; i++)
            u |= ((t->grid[k][i] - 1) / 2) << (3 * i);
        t->map[u] = k;
    }
    size_t n = 0, cap = (size_t)IQ3_KMAP_SIZE * 24;
    t->neighbours = malloc(cap * sizeof *t->neighbours);
    for (int u = 0; u < IQ3_KMAP_SIZE && t->neighbours; u++) {
        if (t->map[u] >= 0)
            continue;
        int d2[512], pos[4], lev[4], nlev = 0;
        for (int i = 0; i < 4; i++)
            pos[i] = 2 * ((u >> (3 * i)) & 7) + 1;
        for (int k = 0; k < n_grid; k++) {
            int d = 0;
            for (int i = 0; i < 4; i++)
                d += (t->grid[k][i] - pos[i]) * (t->grid[k][i] - pos[i]);
            d2[k] = d;
        }
        /* the nwant smallest distinct distances, ascending */
        for (nlev = 0; nlev < nwant; nlev++) {
            int m = INT32_MAX;
            for (int k = 0; k < n_grid; k++)
                if ((nlev == 0 || d2[k] > lev[nlev - 1]) && d2[k] < m)
                    m = d2[k];
            if (m == INT32_MAX)
                break;
            lev[nlev] = m;
        }
        if (n + 1 + (size_t)n_grid > cap) {
            cap *= 2;
            uint16_t *p = realloc(t->neighbours, cap * sizeof *p);
            if (!p) {
                free(t->neighbours);
                t->neighbours = NULL;
                break;
            }
            t->neighbours = p;
        }
        t->map[u] = -(int32_t)(n + 1);
        size_t start = n++;
        for (int pass = 0; pass < nlev; pass++)
            for (int k = 0; k < n_grid; k++)
                if (d2[k] == lev[pass])
                    t->neighbours[n++] = (uint16_t)k;
        t->neighbours[start] = (uint16_t)(n - start - 1);
    }
    if (!t->neighbours) {
        free(t);
        return NULL;
    }
    return t;
}

/* pthread_once callbacks: IQ3_XXS's grid (levels 0..7 are bytes 0x04, 0x0c, ..., 0x34, 0x3e;
 * neighbours at 2 distances) and IQ3_S's (bytes 1, 3, ..., 15; 3 distances), as ggml. */
static void iq3xxs_build(void) {
    static const uint8_t lb[8] = {0x04, 0x0c, 0x14, 0x1c, 0x24, 0x2c, 0x34, 0x3e};
    iq3xxs_tab = iq3_build(mx_iq3xxs_grid, 256, lb, 2);
}
static void iq3s_build(void) {
    static const uint8_t lb[8] = {1, 3, 5, 7, 9, 11, 13, 15};
    iq3s_tab = iq3_build(mx_iq3s_grid, 512, lb, 3);
}

/* The grid point of 4 levels l (0..7) for xval, snapping off-grid patterns to the neighbour
 * nearest in weighted distance at scale; writes the point's levels to L, returns its index. */
static int iq3_point(const struct iq3_tables *t, int8_t *L, const float *xval, const float *w,
                     float scale, bool *on_grid) {
    int u = 0;
    for (int i = 0; i < 4; i++)
        u |= L[i] << (3 * i);
    int gi = t->map[u];
    *on_grid = gi >= 0;
    if (gi < 0) {
        const uint16_t *nb = t->neighbours - t->map[u] - 1;
        float best = FLT_MAX;
        gi = nb[1];
        for (int j = 1; j <= nb[0]; j++) {
            const int8_t *pg = t->grid[nb[j]];
            float d2 = 0;
            for (int i = 0; i < 4; i++) {
                float diff = scale * pg[i] - xval[i];
                d2 += w[i] * diff * diff;
            }
            if (d2 < best) {
                best = d2;
                gi = nb[j];
            }
        }
    }
    for (int i = 0; i < 4; i++)
        L[i] = (int8_t)((t->grid[gi][i] - 1) / 2);
    return gi;
}

/* The IQ3 searches' scale for 32 magnitudes xval (weights weight, their roots waux): levels from
 * each candidate 1/id = max / (2 kMaxQ - 1 + is / 5), is in [-n_try, n_try], snapped to the grid,
 * the least-squares scale of the best candidate. L and on_grid (per 4 values) are left as the
 * caller set them unless a candidate wins, then they are its. Returns that scale, or
 * max / (2 kMaxQ - 1) when none won. */
static float iq3_scale_search(const struct iq3_tables *t, int kMaxQ, int n_try, float max,
                              const float *xval, const float *waux, const float *weight,
                              int8_t L[32], bool on_grid[8]) {
    int8_t Laux[32];
    bool on_grid_aux[8];
    float best = 0;
    float scale = max / (2 * kMaxQ - 1);
    for (int is = -n_try; is <= n_try; is++) {
        float id = (2 * kMaxQ - 1 + is * 0.2f) / max;
        float this_scale = 1 / id;
        for (int k = 0; k < 8; k++) {
            for (int i = 0; i < 4; i++) {
                int l = nearest_int(0.5f * (id * xval[4 * k + i] - 1));
                Laux[4 * k + i] = (int8_t)imax(0, imin(kMaxQ - 1, l));
            }
            iq3_point(t, Laux + 4 * k, xval + 4 * k, waux + 4 * k, this_scale, &on_grid_aux[k]);
        }
        float sumqx, sumq2;
        odd_level_sums(32, weight, xval, Laux, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, 32);
            memcpy(on_grid, on_grid_aux, 8 * sizeof *on_grid);
        }
    }
    return scale;
}

/* One IQ3_XXS block; qw: its 256 weights or NULL (x^2). */
static void iq3_xxs_block(const struct iq3_tables *t, const float *xbl, const float *qw,
                          mx_block_iq3_xxs *y) {
    const int kMaxQ = 8;
    float scales[MX_QK_K / 32], weight[32], waux[32], xval[32];
    int8_t L[32];
    bool on_grid[8];
    uint8_t signs[4];
    uint8_t q3[3 * (MX_QK_K / 8)]; /* 64 grid indices, then 8 u32 of scale and signs */
    uint32_t sas[MX_QK_K / 32];
    memset(q3, 0, sizeof q3);
    memset(sas, 0, sizeof sas);
    y->d = mx_fp32_to_fp16(0.f);
    float max_scale = 0;
    float sumx2 = 0;
    for (int i = 0; i < MX_QK_K; i++)
        sumx2 += xbl[i] * xbl[i];
    const float sigma2 = 2 * sumx2 / MX_QK_K;
    for (int ib = 0; ib < MX_QK_K / 32; ib++) {
        const float *xb = xbl + 32 * ib;
        if (qw)
            group_weights(xb, qw + 32 * ib, 32, sigma2, weight);
        else
            for (int i = 0; i < 32; i++)
                weight[i] = xb[i] * xb[i];
        for (int i = 0; i < 32; i++)
            waux[i] = sqrtf(weight[i]);
        for (int k = 0; k < 4; k++)
            signs[k] = even_signs8(xb + 8 * k, weight + 8 * k, xval + 8 * k);
        float max = xval[0];
        for (int i = 1; i < 32; i++)
            max = max > xval[i] ? max : xval[i];
        memset(L, 0, sizeof L);
        if (max < 1e-8f) { /* ggml's GROUP_MAX_EPS_IQ3_XXS */
            scales[ib] = 0;
            continue;
        }
        /* 31 candidate scales: levels from each, snapped to the grid, refit */
        for (int k = 0; k < 8; k++)
            on_grid[k] = true;
        float scale = iq3_scale_search(t, kMaxQ, 15, max, xval, waux, weight, L, on_grid);
        int n_off = 0;
        for (int k = 0; k < 8; k++)
            n_off += !on_grid[k];
        if (n_off > 0 && scale > 0) {
            float id = 1 / scale;
            for (int k = 0; k < 8; k++) {
                if (on_grid[k])
                    continue;
                for (int i = 0; i < 4; i++) {
                    int l = nearest_int(0.5f * (id * xval[4 * k + i] - 1));
                    L[4 * k + i] = (int8_t)imax(0, imin(kMaxQ - 1, l));
                }
                bool og;
                iq3_point(t, L + 4 * k, xval + 4 * k, waux + 4 * k, scale, &og);
            }
            float sumqx, sumq2;
            odd_level_sums(32, weight, xval, L, &sumqx, &sumq2);
            if (sumq2 > 0)
                scale = sumqx / sumq2;
        }
        if (scale < 0) { /* ggml: "should never happen"; the scale is stored unsigned */
            scale = -scale;
            for (int k = 0; k < 4; k++)
                signs[k] = (uint8_t)(~signs[k] & 127);
        }
        for (int k = 0; k < 8; k++) {
            int u = 0;
            for (int i = 0; i < 4; i++)
                u |= L[4 * k + i] << (3 * i);
            int gi = t->map[u];
            q3[8 * ib + k] = (uint8_t)(gi < 0 ? 0 : gi); /* off grid: unreachable (ggml aborts) */
        }
        sas[ib] = (uint32_t)signs[0] | (uint32_t)signs[1] << 7 | (uint32_t)signs[2] << 14 |
                  (uint32_t)signs[3] << 21;
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale) {
        memset(y->qs, 0, sizeof y->qs);
        return;
    }
    float d = max_scale / 31;
    y->d = mx_fp32_to_fp16(d * 1.0125f); /* ggml's fudge factor */
    float id = 1 / d;
    for (int ib = 0; ib < MX_QK_K / 32; ib++) {
        int l = nearest_int(0.5f * (id * scales[ib] - 1));
        l = imax(0, imin(15, l));
        sas[ib] |= (uint32_t)l << 28;
    }
    memcpy(q3 + MX_QK_K / 4, sas, sizeof sas);
    memcpy(y->qs, q3, sizeof y->qs);
}

/* One IQ3_S block (ggml's quantize_row_iq3_s_impl with 32-value sub-blocks): 8 groups of 4
 * values per sub-block on the 512-point grid (9-bit indices: low byte in qs, 9th bit in qh),
 * all 8 sign bits stored, 4-bit scales in pairs; qw: 256 weights or NULL (x^2). */
static void iq3_s_block(const struct iq3_tables *t, const float *xbl, const float *qw,
                        mx_block_iq3_s *y) {
    const int kMaxQ = 8;
    float scales[MX_QK_K / 32], weight[32], waux[32], xval[32];
    int8_t L[32];
    bool on_grid[8];
    uint8_t signs[4];
    memset(y, 0, sizeof *y);
    y->d = mx_fp32_to_fp16(0.f);
    uint8_t *qs = y->qs, *sg = y->signs;
    float max_scale = 0;
    float sumx2 = 0;
    for (int i = 0; i < MX_QK_K; i++)
        sumx2 += xbl[i] * xbl[i];
    const float sigma2 = 2 * sumx2 / MX_QK_K;
    for (int ib = 0; ib < MX_QK_K / 32; ib++) {
        const float *xb = xbl + 32 * ib;
        if (qw)
            group_weights(xb, qw + 32 * ib, 32, sigma2, weight);
        else
            for (int i = 0; i < 32; i++)
                weight[i] = xb[i] * xb[i];
        for (int i = 0; i < 32; i++)
            waux[i] = sqrtf(weight[i]);
        for (int k = 0; k < 4; k++)
            signs[k] = plain_signs8(xb + 8 * k, xval + 8 * k);
        float max = xval[0];
        for (int i = 1; i < 32; i++)
            max = max > xval[i] ? max : xval[i];
        memset(L, 0, sizeof L);
        if (!max) { /* sub-block left zero: its qs, signs and qh bits stay 0 */
            scales[ib] = 0;
            qs += 8;
            sg += 4;
            continue;
        }
        for (int k = 0; k < 8; k++)
            on_grid[k] = false;
        float scale = iq3_scale_search(t, kMaxQ, 9, max, xval, waux, weight, L, on_grid);
        int n_off = 0;
        for (int k = 0; k < 8; k++)
            n_off += !on_grid[k];
        if (n_off > 0 && scale > 0) { /* ggml redoes every group here, on the grid or not */
            float id = 1 / scale;
            for (int k = 0; k < 8; k++) {
                for (int i = 0; i < 4; i++) {
                    int l = nearest_int(0.5f * (id * xval[4 * k + i] - 1));
                    L[4 * k + i] = (int8_t)imax(0, imin(kMaxQ - 1, l));
                }
                bool og;
                iq3_point(t, L + 4 * k, xval + 4 * k, waux + 4 * k, scale, &og);
            }
            float sumqx, sumq2;
            odd_level_sums(32, weight, xval, L, &sumqx, &sumq2);
            if (sumq2 > 0)
                scale = sumqx / sumq2;
        }
        if (scale < 0) { /* ggml: "should never happen"; the scale is stored unsigned */
            scale = -scale;
            for (int k = 0; k < 4; k++)
                signs[k] = (uint8_t)~signs[k];
        }
        for (int k = 0; k < 8; k++) {
            int u = 0;
            for (int i = 0; i < 4; i++)
                u |= L[4 * k + i] << (3 * i);
            int gi = t->map[u];
            if (gi < 0)
                gi = 0; /* unreachable: L came from grid points (ggml aborts here) */
            qs[k] = (uint8_t)(gi & 255);
            y->qh[(ib * 8 + k) / 8] |= (uint8_t)((gi >> 8) << ((ib * 8 + k) % 8));
        }
        qs += 8;
        memcpy(sg, signs, 4);
        sg += 4;
        scales[ib] = scale;
        max_scale = max_scale > scale ? max_scale : scale;
    }
    if (!max_scale)
        return;
    float d = max_scale / 31;
    y->d = mx_fp32_to_fp16(d * 1.033f); /* ggml's fudge factor */
    float id = 1 / d;
    for (int ib = 0; ib < MX_QK_K / 32; ib += 2) {
        int l1 = imax(0, imin(15, nearest_int(0.5f * (id * scales[ib] - 1))));
        int l2 = imax(0, imin(15, nearest_int(0.5f * (id * scales[ib + 1] - 1))));
        y->scales[ib / 2] = (uint8_t)(l1 | (l2 << 4));
    }
}

/* IQ3_S of a row (n a multiple of 256), weights qw or NULL. Returns 0 or MX_ENOMEM. */
static int iq3_s_quantize(const float *x, void *dst, int64_t n, const float *qw) {
    pthread_once(&iq3s_once, iq3s_build);
    const struct iq3_tables *t = iq3s_tab;
    if (!t)
        return MX_ENOMEM;
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq3_s b;
        iq3_s_block(t, x + i * MX_QK_K, qw ? qw + i * MX_QK_K : NULL, &b);
        memcpy(p + i * sizeof b, &b, sizeof b);
    }
    return 0;
}

/* IQ3_XXS of a row (n a multiple of 256), weights qw or NULL. Returns 0 or MX_ENOMEM. */
static int iq3_xxs_quantize(const float *x, void *dst, int64_t n, const float *qw) {
    pthread_once(&iq3xxs_once, iq3xxs_build);
    const struct iq3_tables *t = iq3xxs_tab;
    if (!t)
        return MX_ENOMEM;
    unsigned char *p = dst;
    for (int64_t i = 0; i < n / MX_QK_K; i++) {
        mx_block_iq3_xxs b;
        iq3_xxs_block(t, x + i * MX_QK_K, qw ? qw + i * MX_QK_K : NULL, &b);
        memcpy(p + i * sizeof b, &b, sizeof b);
    }
    return 0;
}

#define T_FLOAT(id, nm, sz, to, from) [id] = { nm, 1, sz, false, to, from }
#define T_QUANT(id, nm, bs, to, from) \
    [id] = { #nm, bs, sizeof(mx_block_##nm), true, to, from }

static const struct mx_type_traits traits[MX_TYPE_COUNT] = {
    T_FLOAT(MX_TYPE_F32,  "f32",  4, f32_to_float,  f32_from_float),
    T_FLOAT(MX_TYPE_F16,  "f16",  2, f16_to_float,  f16_from_float),
    T_FLOAT(MX_TYPE_BF16, "bf16", 2, bf16_to_float, bf16_from_float),
    T_FLOAT(MX_TYPE_F64,  "f64",  8, f64_to_float,  f64_from_float),
    T_FLOAT(MX_TYPE_I8,   "i8",   1, NULL, NULL),
    T_FLOAT(MX_TYPE_I16,  "i16",  2, NULL, NULL),
    T_FLOAT(MX_TYPE_I32,  "i32",  4, NULL, NULL),
    T_FLOAT(MX_TYPE_I64,  "i64",  8, NULL, NULL),
    T_QUANT(MX_TYPE_Q4_0, q4_0, MX_QK4_0, q4_0_to_float, q4_0_from_float),
    T_QUANT(MX_TYPE_Q4_1, q4_1, MX_QK4_1, q4_1_to_float, q4_1_from_float),
    T_QUANT(MX_TYPE_Q5_0, q5_0, MX_QK5_0, q5_0_to_float, q5_0_from_float),
    T_QUANT(MX_TYPE_Q5_1, q5_1, MX_QK5_1, q5_1_to_float, q5_1_from_float),
    T_QUANT(MX_TYPE_Q8_0, q8_0, MX_QK8_0, q8_0_to_float, q8_0_from_float),
    T_QUANT(MX_TYPE_Q8_1, q8_1, MX_QK8_1, q8_1_to_float, q8_1_from_float),
    T_QUANT(MX_TYPE_Q2_K, q2_K, MX_QK_K,  q2_k_to_float, q2_k_from_float),
    T_QUANT(MX_TYPE_Q3_K, q3_K, MX_QK_K,  q3_k_to_float, q3_k_from_float),
    T_QUANT(MX_TYPE_Q4_K, q4_K, MX_QK_K,  q4_k_to_float, q4_k_from_float),
    T_QUANT(MX_TYPE_Q5_K, q5_K, MX_QK_K,  q5_k_to_float, q5_k_from_float),
    T_QUANT(MX_TYPE_Q6_K, q6_K, MX_QK_K,  q6_k_to_float, q6_k_from_float),
    T_QUANT(MX_TYPE_Q8_K, q8_K, MX_QK_K,  q8_k_to_float, q8_k_from_float),
    /* IQ types (quant_iq.c): only IQ4_NL / IQ4_XS quantize without an importance matrix */
    T_QUANT(MX_TYPE_IQ2_XXS, iq2_xxs, MX_QK_K, mx_iq2_xxs_to_float, NULL),
    T_QUANT(MX_TYPE_IQ2_XS,  iq2_xs,  MX_QK_K, mx_iq2_xs_to_float,  NULL),
    T_QUANT(MX_TYPE_IQ2_S,   iq2_s,   MX_QK_K, mx_iq2_s_to_float,   NULL),
    T_QUANT(MX_TYPE_IQ3_XXS, iq3_xxs, MX_QK_K, mx_iq3_xxs_to_float, NULL),
    T_QUANT(MX_TYPE_IQ3_S,   iq3_s,   MX_QK_K, mx_iq3_s_to_float,   NULL),
    T_QUANT(MX_TYPE_IQ1_S,   iq1_s,   MX_QK_K, mx_iq1_s_to_float,   NULL),
    T_QUANT(MX_TYPE_IQ1_M,   iq1_m,   MX_QK_K, mx_iq1_m_to_float,   NULL),
    T_QUANT(MX_TYPE_IQ4_NL,  iq4_nl,  MX_QK4_NL, mx_iq4_nl_to_float, mx_iq4_nl_from_float),
    T_QUANT(MX_TYPE_IQ4_XS,  iq4_xs,  MX_QK_K, mx_iq4_xs_to_float,  mx_iq4_xs_from_float),
    T_QUANT(MX_TYPE_MXFP4, mxfp4, MX_QK_MXFP4, mxfp4_to_float, mxfp4_from_float),
};

#undef T_FLOAT
#undef T_QUANT

const struct mx_type_traits *mx_type_traits(int type) {
    if (type < 0 || type >= MX_TYPE_COUNT || traits[type].name == NULL)
        return NULL;
    return &traits[type];
}

const char *mx_type_name(int type) {
    const struct mx_type_traits *t = mx_type_traits(type);
    return t ? t->name : "?";
}

int mx_type_from_name(const char *name) {
    if (name == NULL)
        return -1;
    for (int i = 0; i < MX_TYPE_COUNT; i++)
        if (traits[i].name != NULL && strcasecmp(traits[i].name, name) == 0)
            return i;
    return -1;
}

bool mx_row_size(int type, int64_t n, size_t *out) {
    const struct mx_type_traits *t = mx_type_traits(type);
    if (t == NULL || n < 0 || n % t->blck_size != 0)
        return false;
    return mx_mul_size((size_t)(n / t->blck_size), t->type_size, out);
}

/* Shared argument checks of the two row converters: MX_EUNSUP without a converter, MX_EINVAL
 * for a negative n, one that is not whole blocks, or one whose bytes do not fit a size_t. */
static int check_row(const struct mx_type_traits *t, bool have_fn, int type, const void *a,
                     const void *b, int64_t n) {
    size_t bytes, floats;
    if (t == NULL || !have_fn)
        return MX_EUNSUP;
    if (n < 0 || n % t->blck_size != 0 || !mx_row_size(type, n, &bytes) ||
        !mx_mul_size((size_t)n, sizeof(float), &floats))
        return MX_EINVAL;
    if (n > 0 && (a == NULL || b == NULL))
        return MX_EINVAL;
    return 0;
}

int mx_dequantize_row(int type, const void *src, float *dst, int64_t n) {
    const struct mx_type_traits *t = mx_type_traits(type);
    int rc = check_row(t, t && t->to_float, type, src, dst, n);
    if (rc < 0)
        return rc;
    if (n > 0)
        t->to_float(src, dst, n);
    return 0;
}

int mx_quantize_row(int type, const float *src, void *dst, int64_t n) {
    const struct mx_type_traits *t = mx_type_traits(type);
    int rc = check_row(t, t && t->from_float, type, src, dst, n);
    if (rc < 0)
        return rc;
    if (n > 0)
        t->from_float(src, dst, n);
    return 0;
}

int mx_quantize_row_weighted(int type, const float *src, void *dst, int64_t n,
                             const float *qw) {
    const struct mx_type_traits *t = mx_type_traits(type);
    if (type == MX_TYPE_IQ3_XXS || type == MX_TYPE_IQ3_S) { /* x^2 without an imatrix (_ref) */
        int rc = check_row(t, true, type, src, dst, n);
        if (rc < 0 || n == 0)
            return rc;
        return type == MX_TYPE_IQ3_XXS ? iq3_xxs_quantize(src, dst, n, qw)
                                       : iq3_s_quantize(src, dst, n, qw);
    }
    if (type == MX_TYPE_IQ2_S || type == MX_TYPE_IQ1_M) { /* x^2-based weights without */
        int rc = check_row(t, true, type, src, dst, n);
        if (rc < 0 || n == 0)
            return rc;
        return type == MX_TYPE_IQ2_S ? iq2_s_quantize(src, dst, n, qw)
                                     : iq1_quantize(type, src, dst, n, qw);
    }
    if (type == MX_TYPE_IQ1_S) { /* only with weights (ggml asserts them) */
        int rc = check_row(t, qw != NULL, type, src, dst, n);
        if (rc < 0 || n == 0)
            return rc;
        return iq1_quantize(type, src, dst, n, qw);
    }
    if (type == MX_TYPE_IQ2_XXS || type == MX_TYPE_IQ2_XS) { /* only with weights */
        int rc = check_row(t, qw != NULL, type, src, dst, n);
        if (rc < 0 || n == 0)
            return rc;
        return type == MX_TYPE_IQ2_XXS ? iq2_xxs_weighted(src, dst, n, qw)
                                       : iq2_xs_weighted(src, dst, n, qw);
    }
    int rc = check_row(t, t && t->from_float, type, src, dst, n);
    if (rc < 0 || n == 0)
        return rc;
    if (!qw) {
        /* llama-quantize without an importance matrix: the *_ref quantizers, except IQ4_NL
         * whose quantize_iq4_nl refines the scale with 7 more tries */
        if (type == MX_TYPE_IQ4_NL)
            mx_quantize_iq4_nl(src, dst, n, NULL);
        else
            t->from_float(src, dst, n);
        return 0;
    }
    switch (type) {
    case MX_TYPE_Q4_0:
    case MX_TYPE_Q5_0: q4_0_q5_0_weighted(type, src, dst, n, qw); break;
    case MX_TYPE_Q4_1:
    case MX_TYPE_Q5_1: q4_1_q5_1_weighted(type, src, dst, n, qw); break;
    case MX_TYPE_Q2_K: q2_k_weighted(src, dst, n, qw); break;
    case MX_TYPE_Q3_K: q3_k_weighted(src, dst, n, qw); break;
    case MX_TYPE_Q4_K:
    case MX_TYPE_Q5_K: q45_k_weighted(type, src, dst, n, qw); break;
    case MX_TYPE_Q6_K: q6_k_quantize(src, dst, n, qw); break;
    case MX_TYPE_IQ4_NL: mx_quantize_iq4_nl(src, dst, n, qw); break;
    case MX_TYPE_IQ4_XS: mx_quantize_iq4_xs(src, dst, n, qw); break;
    default: t->from_float(src, dst, n); break; /* Q8_0, F16, BF16, MXFP4: weights unused */
    }
    return 0;
}
