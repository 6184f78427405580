/* cuda_bf16.h (emulator) - bfloat16: the high 16 bits of a float, rounded to nearest even on the
 * way in (__float2bfloat16), exact on the way out. */
#ifndef MX_EMU_CUDA_BF16_H
#define MX_EMU_CUDA_BF16_H

#include <stdint.h>
#include <string.h>

#include <cuda_runtime.h>

/* float -> bf16 bits, nearest even; NaN stays NaN */
static inline uint16_t mx_emu_f2bf(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}
static inline float mx_emu_bf2f(uint16_t b) {
    uint32_t x = (uint32_t)b << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* __nv_bfloat16: the 16 bits, converting through float like the CUDA type */
struct __nv_bfloat16 {
    uint16_t x;
    __nv_bfloat16() = default;
    __nv_bfloat16(float f) : x(mx_emu_f2bf(f)) {}
    operator float() const { return mx_emu_bf2f(x); }
};
typedef __nv_bfloat16 nv_bfloat16;
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

static inline __nv_bfloat16 mx_emu_bfbits(uint16_t b) {
    __nv_bfloat16 h;
    h.x = b;
    return h;
}
static inline __nv_bfloat16 __float2bfloat16(float f) { return mx_emu_bfbits(mx_emu_f2bf(f)); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return mx_emu_bfbits(mx_emu_f2bf(f)); }
static inline float __bfloat162float(__nv_bfloat16 h) { return mx_emu_bf2f(h.x); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return mx_emu_bfbits(u); }
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
    return __nv_bfloat162{__float2bfloat16(a), __float2bfloat16(b)};
}
static inline float2 __bfloat1622float2(__nv_bfloat162 h) {
    return float2{__bfloat162float(h.x), __bfloat162float(h.y)};
}

#endif
