/* cuda_fp16.h (emulator) - IEEE half precision as CUDA device code uses it: __half holds the 16
 * bits, arithmetic goes through float (as the GPU's FP16 units round each result to half, so do
 * these operators); __half2 is a pair. Conversions round to nearest even like __float2half_rn. */
#ifndef MX_EMU_CUDA_FP16_H
#define MX_EMU_CUDA_FP16_H

#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

/* float -> IEEE binary16 bits, round to nearest even (overflow to inf, NaN kept quiet) */
static inline uint16_t mx_emu_f2h(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) /* rounds to >= 65520: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below the smallest normal half: subnormal or zero */
        if (ax < 0x33000000u) /* < 2^-25: rounds to zero */
            return (uint16_t)sign;
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14 + (113 - e) - 1 ... bits dropped */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((ax >> 13) - (112u << 10)); /* rebias exponent 127 -> 15 */
    uint32_t rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1)))
        r++;
    return (uint16_t)(sign | r);
}

/* IEEE binary16 bits -> float (exact) */
static inline float mx_emu_h2f(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0x1f)
        x = sign | 0x7f800000u | (m << 13);
    else if (e != 0)
        x = sign | ((e + 112u) << 23) | (m << 13);
    else if (m == 0)
        x = sign;
    else { /* subnormal: normalize */
        e = 113;
        while (!(m & 0x400u)) {
            m <<= 1;
            e--;
        }
        x = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* __half: the 16 bits; converts from and to float like the CUDA type's constructors */
struct __half {
    uint16_t x;
    __half() = default;
    __half(float f) : x(mx_emu_f2h(f)) {}
    __half(double f) : x(mx_emu_f2h((float)f)) {}
    __half(int i) : x(mx_emu_f2h((float)i)) {}
    operator float() const { return mx_emu_h2f(x); }
};
typedef __half half;
struct __half2 {
    __half x, y;
};
typedef __half2 half2;

static inline __half mx_emu_hbits(uint16_t b) {
    __half h;
    h.x = b;
    return h;
}
static inline __half __float2half_rn(float f) { return mx_emu_hbits(mx_emu_f2h(f)); }
static inline __half __float2half(float f) { return mx_emu_hbits(mx_emu_f2h(f)); }
static inline float __half2float(__half h) { return mx_emu_h2f(h.x); }
static inline __half __int2half_rn(int i) { return __float2half_rn((float)i); }
static inline unsigned short __half_as_ushort(__half h) { return h.x; }
static inline short __half_as_short(__half h) { return (short)h.x; }
static inline __half __ushort_as_half(unsigned short u) { return mx_emu_hbits(u); }
static inline __half __short_as_half(short s) { return mx_emu_hbits((uint16_t)s); }
static inline __half2 __floats2half2_rn(float a, float b) {
    return __half2{__float2half_rn(a), __float2half_rn(b)};
}
static inline __half2 __float2half2_rn(float a) { return __floats2half2_rn(a, a); }
static inline __half2 __halves2half2(__half a, __half b) { return __half2{a, b}; }
static inline __half2 __half2half2(__half a) { return __half2{a, a}; }
static inline float2 __half22float2(__half2 h) {
    return float2{__half2float(h.x), __half2float(h.y)};
}
static inline __half2 __float22half2_rn(float2 f) { return __floats2half2_rn(f.x, f.y); }
static inline float __low2float(__half2 h) { return __half2float(h.x); }
static inline float __high2float(__half2 h) { return __half2float(h.y); }
static inline __half __low2half(__half2 h) { return h.x; }
static inline __half __high2half(__half2 h) { return h.y; }
static inline __half __hadd(__half a, __half b) { return __float2half_rn((float)a + (float)b); }
static inline __half __hsub(__half a, __half b) { return __float2half_rn((float)a - (float)b); }
static inline __half __hmul(__half a, __half b) { return __float2half_rn((float)a * (float)b); }
static inline __half __hdiv(__half a, __half b) { return __float2half_rn((float)a / (float)b); }
static inline __half __hfma(__half a, __half b, __half c) {
    return __float2half_rn(fmaf((float)a, (float)b, (float)c));
}
static inline __half __hneg(__half a) { return mx_emu_hbits((uint16_t)(a.x ^ 0x8000u)); }
static inline __half __hmax(__half a, __half b) { return (float)a >= (float)b ? a : b; }
static inline __half __hmin(__half a, __half b) { return (float)a <= (float)b ? a : b; }
static inline bool __hisnan(__half a) { return (a.x & 0x7fffu) > 0x7c00u; }
static inline __half2 __hadd2(__half2 a, __half2 b) { return __half2{__hadd(a.x, b.x), __hadd(a.y, b.y)}; }
static inline __half2 __hmul2(__half2 a, __half2 b) { return __half2{__hmul(a.x, b.x), __hmul(a.y, b.y)}; }
static inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) {
    return __half2{__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y)};
}
static inline __half hexp(__half a) { return __float2half_rn(expf((float)a)); }
static inline __half hsqrt(__half a) { return __float2half_rn(sqrtf((float)a)); }
static inline __half operator+(__half a, __half b) { return __hadd(a, b); }
static inline __half operator-(__half a, __half b) { return __hsub(a, b); }
static inline __half operator*(__half a, __half b) { return __hmul(a, b); }
static inline __half operator/(__half a, __half b) { return __hdiv(a, b); }
static inline __half operator-(__half a) { return __hneg(a); }
static inline __half &operator+=(__half &a, __half b) { return a = __hadd(a, b); }
static inline __half &operator*=(__half &a, __half b) { return a = __hmul(a, b); }
static inline __half2 operator+(__half2 a, __half2 b) { return __hadd2(a, b); }
static inline __half2 operator*(__half2 a, __half2 b) { return __hmul2(a, b); }

#include <cuda_bf16.h>

#endif
