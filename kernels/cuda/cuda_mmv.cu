/* cuda_mmv.cu - quantized matrix-vector and small-batch products (T <= 8 columns) straight from
 * the GGUF blocks with integer dots, for the backend's MX_ACT_GGML mode (the default): the
 * activations are quantized once per call on the device to the blocks ggml's CPU vec_dot uses
 * for that weight type (Q8_0/Q8_1: 32 values, fp16 scale; Q8_K: 256 values, f32 scale; the
 * same rounding as kernels/cpu/ref_ops.c's quant_block_q8 / quant_block_q8_K), then each CUDA
 * block of 4 warps computes one output row for all T columns: the warps' threads take
 * consecutive chunks of consecutive weight blocks (coalesced 4-byte loads, 2-byte ones where a
 * block size leaves the quants only 2-aligned), multiply 4 quants at a time with __dp4a and add
 * the chunk's scales in f32. The integer sums are the CPU's; only the f32 summation order
 * differs, so logits agree with the CPU backend within f32 rounding.
 *
 * Types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, MXFP4 (32-value blocks, Q8_0/Q8_1 activations)
 * and Q4_K, Q5_K, Q6_K, IQ4_XS (256-value blocks, Q8_K activations). The others (and every
 * type in MX_ACT_F32 mode) keep cuda_matmul.cu's F32 warp kernel.
 * Block layouts (format constants): ggml-common.h, as in cuda_dq.cuh.
 */
#include "kernels/cuda/cuda_impl.h"
#include "kernels/cuda/cuda_dq.cuh"

#define MMV_THREADS 128 /* threads per output row: 4 warps split the row's blocks */

/* One 32-value block of quantized activations (Q8_0 values; Q8_1's sum for Q4_1/Q5_1).
 * 48 bytes so that qs is 16-byte aligned. */
struct cu_q8a {
    float d;        /* the scale as the CPU keeps it: fp16(amax / 127), as f32 */
    float s;        /* Q8_1's fp16(d * sum of qs) as f32, with d before the fp16 rounding */
    int pad[2];     /* keeps qs aligned */
    int8_t qs[32];  /* rint(x * 127 / amax) */
};

/* One 256-value block of Q8_K activations: 272 bytes, qs 16-byte aligned. */
struct cu_q8k {
    float d;        /* 1 / iscale, f32 (Q8_K keeps no fp16 scale) */
    int pad[3];     /* keeps qs aligned */
    int8_t qs[256]; /* min(127, rint(x * -127 / max)), max the signed value of largest |x| */
};

/* ---- activation quantization ------------------------------------------------------------------ */

/* x [n, T] (columns x_col floats apart) to cu_q8a blocks (columns xq_col bytes apart): one warp
 * per block of 32, lane = element. The CPU's quant_block_q8: d = amax/127, q = rint(x*127/amax). */
__global__ void k_quant_q8a(const float *x, int64_t x_col, int64_t n, uint8_t *xq,
                            size_t xq_col) {
    const int64_t ib = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32, t = blockIdx.y;
    if (ib * 32 >= n)
        return;
    const float v = x[t * x_col + ib * 32 + lane];
    float amax = fabsf(v);
    for (int off = 16; off > 0; off >>= 1)
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    const int q = (int)rintf(v * id);
    int sum = q;
    for (int off = 16; off > 0; off >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, off);
    struct cu_q8a *b = (struct cu_q8a *)(xq + t * xq_col) + ib;
    b->qs[lane] = (int8_t)q;
    if (lane == 0) {
        b->d = __half2float(__float2half_rn(d));
        b->s = __half2float(__float2half_rn(d * (float)sum));
        b->pad[0] = b->pad[1] = 0;
    }
}

/* x [n, T] to cu_q8k blocks: one CUDA block of 256 threads per block of 256 values. The CPU's
 * quant_block_q8_K: the first value of largest |x| gives iscale = -127 / max, q clamped to 127. */
__global__ void k_quant_q8k(const float *x, int64_t x_col, uint8_t *xq, size_t xq_col) {
    __shared__ float s_amax[8];
    __shared__ int s_idx[8];
    const int64_t ib = blockIdx.x;
    const int tid = threadIdx.x, lane = tid % 32, wid = tid / 32, t = blockIdx.y;
    const float v = x[t * x_col + ib * 256 + tid];
    float amax = fabsf(v);
    int idx = tid;
    for (int off = 16; off > 0; off >>= 1) { /* largest |x|, the lowest index among equals */
        float oa = __shfl_xor_sync(0xffffffffu, amax, off);
        int oi = __shfl_xor_sync(0xffffffffu, idx, off);
        if (oa > amax || (oa == amax && oi < idx)) {
            amax = oa;
            idx = oi;
        }
    }
    if (lane == 0) {
        s_amax[wid] = amax;
        s_idx[wid] = idx;
    }
    __syncthreads();
    float a = s_amax[0]; /* every thread takes the max of the 8 warps' (no second barrier) */
    int i = s_idx[0];
    for (int k = 1; k < 8; k++)
        if (s_amax[k] > a) { /* warps in index order: equal values keep the earlier one */
            a = s_amax[k];
            i = s_idx[k];
        }
    const float mx = a == 0.0f ? 0.0f : x[t * x_col + ib * 256 + i];
    struct cu_q8k *b = (struct cu_q8k *)(xq + t * xq_col) + ib;
    if (mx == 0.0f) {
        b->qs[tid] = 0;
        if (tid == 0)
            b->d = 0.0f;
        return;
    }
    const float iscale = -127.0f / mx;
    const int q = (int)rintf(iscale * v);
    b->qs[tid] = (int8_t)(q < 127 ? q : 127);
    if (tid == 0)
        b->d = 1.0f / iscale;
    if (tid < 3)
        b->pad[tid] = 0;
}

/* ---- loads and helpers ------------------------------------------------------------------------ */

/* 4 bytes at a 2-byte aligned address (blocks of 18, 22, 34, 210 bytes) */
static __device__ __forceinline__ int ld2(const uint8_t *p) {
    const uint16_t *h = (const uint16_t *)p;
    return (int)((uint32_t)h[0] | (uint32_t)h[1] << 16);
}

/* 4 bytes at a 4-byte aligned address */
static __device__ __forceinline__ int ld4(const uint8_t *p) {
    return *(const int *)p;
}

/* 4 bytes at any address (MXFP4's 17-byte blocks) */
static __device__ __forceinline__ int ld1(const uint8_t *p) {
    return (int)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24);
}

/* bits 0..3 of h to bit 4 of bytes 0..3 (Q5_0/Q5_1's fifth bits) */
static __device__ __forceinline__ int spread4(uint32_t h) {
    return (int)(((h & 1u) << 4) | ((h & 2u) << 11) | ((h & 4u) << 18) | ((h & 8u) << 25));
}

/* the four nibbles in bytes of v (each 0..15) mapped through a 16-entry table of int8 */
static __device__ __forceinline__ int tab4(int v, const int8_t *kv) {
    uint32_t r = 0;
    for (int k = 0; k < 4; k++)
        r |= (uint32_t)(uint8_t)kv[(v >> (8 * k)) & 15] << (8 * k);
    return (int)r;
}

/* an int whose 4 bytes are all 1: dp4a(ONES, x, 0) = the sum of x's 4 signed bytes */
#define ONES 0x01010101
/* an int whose 4 bytes all hold the int8 k: dp4a(BYTES(k), x, 0) = k * (sum of x's bytes) */
#define BYTES(k) ((int)(((unsigned)(k) & 0xffu) * 0x01010101u))

/* ---- per-type chunk dots ---------------------------------------------------------------------
 * Each type: QK values per block, BS bytes per block, CPB chunks per block (the threads working
 * on one block), A its activation block, and dot(b, a, c): chunk c of block b times the same
 * values of a, in f32 (the block's scales applied). */

/* IQ4_NL and IQ4_XS's value table (kvalues_iq4nl, ggml-common.h) */
#define KV_IQ4 {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
/* MXFP4's (kvalues_mxfp4, ggml-common.h: E2M1 values doubled) */
#define KV_MXFP4 {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

template <int TYPE> struct qt;

template <> struct qt<MX_TYPE_Q4_0> { /* d qs[16]; chunk c: values 4c..4c+3 and 16+4c.. */
    enum { QK = 32, BS = 18, CPB = 4 };
    typedef cu_q8a A;
    static __device__ __forceinline__ float dot(const uint8_t *b, const A *a, int c) {
        const int *x = (const int *)a->qs;
        int v = ld2(b + 2 + 4 * c), x0 = x[c], x1 = x[4 + c];
        int s = __dp4a(v & 0x0F0F0F0F, x0, 0);
        s = __dp4a((v >> 4) & 0x0F0F0F0F, x1, s);
        s = __dp4a(BYTES(-8), x0, s); /* the quants are q - 8 */
        s = __dp4a(BYTES(-8), x1, s);
        return cu_half(b) * a->d * (float)s;
    }
};

template <> struct qt<MX_TYPE_Q4_1> { /* d m qs[16] */
    enum { QK = 32, BS = 20, CPB = 4 };
    typedef cu_q8a A;
    static __device__ __forceinline__ float dot(const uint8_t *b, const A *a, int c) {
        const int *x = (const int *)a->qs;
        int v = ld4(b + 4 + 4 * c);
        int s = __dp4a(v & 0x0F0F0F0F, x[c], 0);
        s = __dp4a((v >> 4) & 0x0F0F0F0F, x[4 + c], s);
        float r = cu_half(b) * a->d * (float)s;
        return c == 0 ? r + cu_half(b + 2) * a->s : r; /* the min times the block's sum once */
    }
};

template <> struct qt<MX_TYPE_Q5_0> { /* d qh[4] qs[16] */
    enum { QK = 32, BS = 22, CPB = 4 };
    typedef cu_q8a A;
    static __device__ __forceinline__ float dot(const uint8_t *b, const A *a, int c) {
        const int *x = (const int *)a->qs;
        uint32_t qh = (uint32_t)ld2(b + 2);
        int v = ld2(b + 6 + 4 * c), x0 = x[c], x1 = x[4 + c];
        int lo = (v & 0x0F0F0F0F) | spread4(qh >> (4 * c));
        int hi = ((v >> 4) & 0x0F0F0F0F) | spread4(qh >> (16 + 4 * c));
        int s = __dp4a(lo, x0, 0);
        s = __dp4a(hi, x1, s);
        s = __dp4a(BYTES(-16), x0, s); /* the quants are q - 16 */
        s = __dp4a(BYTES(-16), x1, s);
        return cu_half(b) * a->d * (float)s;
    }
};

template <> struct qt<MX_TYPE_Q5_1> { /* d m qh[4] qs[16] */
    enum { QK = 32, BS = 24, CPB = 4 };
    typedef cu_q8a A;
    static __device__ __forceinline__ float dot(const uint8_t *b, const A *a, int c) {
        const int *x = (const int *)a->qs;
        uint32_t qh = (uint32_t)ld4(b + 4);
        int v = ld4(b + 8 + 4 * c);
        int lo = (v & 0x0F0F0F0F) | spread4(qh >> (4 * c));
        int hi = ((v >> 4) & 0x0F0F0F0F) | spread4(qh >> (16 + 4 * c));
        int s = __dp4a(lo, x[c], 0);
        s = __dp4a(hi, x[4 + c], s);
        float r = cu_half(b) * a->d * (float)s;
        return c == 0 ? r + cu_half(b + 2) * a->s : r;
    }
};

template <> struct qt<MX_TYPE_Q8_0> { /* d qs[32]; chunk c: values 8c..8c+7 */
    enum { QK = 32, BS = 34, CPB = 4 };
    typedef cu_q8a A;
    static __device__ __forceinline__ float dot(const uint8_t *b, const A *a, int c) {
        const int *x = (const int *)a->qs;
        int s = __dp4a(ld2(b + 2 + 8 * c), x[2 * c], 0);
        s = __dp4a(ld2(b + 6 + 8 * c), x[2 * c + 1], s);
        return cu_half(b) * a->d * (float)s;
    }
};

template <> struct qt<MX_TYPE_IQ4_NL> { /* d qs[16], values through the table */
    enum { QK = 32, BS = 18, CPB = 4 };
    typedef cu_q8a A;
    static __device__ __forceinline__ float dot(const uint8_t *b, const A *a, int c) {
        const int8_t kv[16] = KV_IQ4;
        const int *x = (const int *)a->qs;
        int v = ld2(b + 2 + 4 * c);
        int s = __dp4a(tab4(v, kv), x[c], 0);
        s = __dp4a(tab4(v >> 4, kv), x[4 + c], s);
        return cu_half(b) * a->d * (float)s;
    }
};

template <> struct qt<MX_TYPE_MXFP4> { /* e (E8M0) qs[16] */
    enum { QK = 32, BS = 17, CPB = 4 };
    typedef cu_q8a A;
    static __device__ __forceinline__ float dot(const uint8_t *b, const A *a, int c) {
        const int8_t kv[16] = KV_MXFP4;
        const int *x = (const int *)a->qs;
        int v = ld1(b + 1 + 4 * c);
        int s = __dp4a(tab4(v, kv), x[c], 0);
        s = __dp4a(tab4(v >> 4, kv), x[4 + c], s);
        uint32_t e = b[0], u = e < 2 ? 0x00200000u << e : (e - 1) << 23; /* E8M0, halved */
        return __uint_as_float(u) * a->d * (float)s;
    }
};

/* Q4_K/Q5_K: chunk c = (p = c / 2, h = c % 2): bytes 16h..16h+15 of the 32-byte group p, i.e.
 * values 16h.. of sub-blocks 2p (low nibbles) and 2p + 1 (high nibbles). */
static __device__ __forceinline__ float k45_finish(const uint8_t *b, const cu_q8k *a, int p,
                                                   int dl, int dh, int sl, int sh) {
    int sc0, m0, sc1, m1;
    cu_k4_scale_min(2 * p, b + 4, &sc0, &m0);
    cu_k4_scale_min(2 * p + 1, b + 4, &sc1, &m1);
    return a->d * (cu_half(b) * (float)(sc0 * dl + sc1 * dh) -
                   cu_half(b + 2) * (float)(m0 * sl + m1 * sh));
}

template <> struct qt<MX_TYPE_Q4_K> { /* d dmin scales[12] qs[128] */
    enum { QK = 256, BS = 144, CPB = 8 };
    typedef cu_q8k A;
    static __device__ __forceinline__ float dot(const uint8_t *b, const A *a, int c) {
        const int p = c / 2, h = c % 2;
        const int *xl = (const int *)(a->qs + 64 * p + 16 * h), *xh = xl + 8;
        int dl = 0, dh = 0, sl = 0, sh = 0;
        for (int k = 0; k < 4; k++) {
            int v = ld4(b + 16 + 32 * p + 16 * h + 4 * k);
            dl = __dp4a(v & 0x0F0F0F0F, xl[k], dl);
            dh = __dp4a((v >> 4) & 0x0F0F0F0F, xh[k], dh);
            sl = __dp4a(ONES, xl[k], sl);
            sh = __dp4a(ONES, xh[k], sh);
        }
        return k45_finish(b, a, p, dl, dh, sl, sh);
    }
};

template <> struct qt<MX_TYPE_Q5_K> { /* d dmin scales[12] qh[32] qs[128] */
    enum { QK = 256, BS = 176, CPB = 8 };
    typedef cu_q8k A;
    static __device__ __forceinline__ float dot(const uint8_t *b, const A *a, int c) {
        const int p = c / 2, h = c % 2;
        const int *xl = (const int *)(a->qs + 64 * p + 16 * h), *xh = xl + 8;
        int dl = 0, dh = 0, sl = 0, sh = 0;
        for (int k = 0; k < 4; k++) {
            int v = ld4(b + 48 + 32 * p + 16 * h + 4 * k);
            int qh = ld4(b + 16 + 16 * h + 4 * k);
            int lo = (v & 0x0F0F0F0F) | (((qh >> (2 * p)) & ONES) << 4);
            int hi = ((v >> 4) & 0x0F0F0F0F) | (((qh >> (2 * p + 1)) & ONES) << 4);
            dl = __dp4a(lo, xl[k], dl);
            dh = __dp4a(hi, xh[k], dh);
            sl = __dp4a(ONES, xl[k], sl);
            sh = __dp4a(ONES, xh[k], sh);
        }
        return k45_finish(b, a, p, dl, dh, sl, sh);
    }
};

template <> struct qt<MX_TYPE_Q6_K> { /* ql[128] qh[64] scales[16] d; chunk c: half c / 4,
                                          values l0..l0+7 (l0 = 8 (c % 4)) of its 4 quarters */
    enum { QK = 256, BS = 210, CPB = 8 };
    typedef cu_q8k A;
    static __device__ __forceinline__ float dot(const uint8_t *b, const A *a, int c) {
        const int hh = c / 4, l0 = 8 * (c % 4);
        const uint8_t *ql = b + 64 * hh, *qh = b + 128 + 32 * hh;
        const int8_t *sc = (const int8_t *)(b + 192) + 8 * hh + l0 / 16;
        const int8_t *xs = a->qs + 128 * hh + l0;
        int s[4] = {0, 0, 0, 0};
        for (int k = 0; k < 2; k++) {
            int lA = ld2(ql + l0 + 4 * k), lB = ld2(ql + 32 + l0 + 4 * k);
            int hb = ld2(qh + l0 + 4 * k);
            int q[4] = {(lA & 0x0F0F0F0F) | ((hb & 0x03030303) << 4),
                        (lB & 0x0F0F0F0F) | (((hb >> 2) & 0x03030303) << 4),
                        ((lA >> 4) & 0x0F0F0F0F) | (((hb >> 4) & 0x03030303) << 4),
                        ((lB >> 4) & 0x0F0F0F0F) | (((hb >> 6) & 0x03030303) << 4)};
            for (int Q = 0; Q < 4; Q++) {
                int xv = *(const int *)(xs + 32 * Q + 4 * k);
                s[Q] = __dp4a(q[Q], xv, s[Q]);
                s[Q] = __dp4a(BYTES(-32), xv, s[Q]); /* the quants are q - 32 */
            }
        }
        int tot = sc[0] * s[0] + sc[2] * s[1] + sc[4] * s[2] + sc[6] * s[3];
        return cu_half(b + 208) * a->d * (float)tot;
    }
};

template <> struct qt<MX_TYPE_IQ4_XS> { /* d scales_h scales_l[4] qs[128]; chunk = sub-block */
    enum { QK = 256, BS = 136, CPB = 8 };
    typedef cu_q8k A;
    static __device__ __forceinline__ float dot(const uint8_t *b, const A *a, int c) {
        const int8_t kv[16] = KV_IQ4;
        const int *x = (const int *)(a->qs + 32 * c);
        int s = 0;
        for (int k = 0; k < 4; k++) {
            int v = ld4(b + 8 + 16 * c + 4 * k);
            s = __dp4a(tab4(v, kv), x[k], s);
            s = __dp4a(tab4(v >> 4, kv), x[4 + k], s);
        }
        int sh = b[2] | (b[3] << 8);
        int ls = ((b[4 + c / 2] >> 4 * (c % 2)) & 0xf) | (((sh >> 2 * c) & 3) << 4);
        return cu_half(b) * a->d * (float)((ls - 32) * s);
    }
};

/* ---- the product kernels ---------------------------------------------------------------------- */

/* acc[t] (each thread's partial sums) summed over the CUDA block; thread 0 gets the totals. */
template <int NC>
static __device__ __forceinline__ void block_sum(float *acc) {
    __shared__ float red[MMV_THREADS / 32][NC];
    const int lane = threadIdx.x % 32, wid = threadIdx.x / 32;
    for (int t = 0; t < NC; t++) {
        float s = acc[t];
        for (int off = 16; off > 0; off >>= 1)
            s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0)
            red[wid][t] = s;
    }
    __syncthreads();
    if (threadIdx.x == 0)
        for (int t = 0; t < NC; t++) {
            float s = red[0][t];
            for (int k = 1; k < MMV_THREADS / 32; k++)
                s += red[k][t];
            acc[t] = s;
        }
}

/* one row (nb blocks at wr) times NC activation columns (xq_col bytes apart) */
template <int TYPE, int NC>
static __device__ __forceinline__ void row_dot(const uint8_t *__restrict__ wr, int64_t nb,
                                               const uint8_t *__restrict__ xq, size_t xq_col,
                                               float *acc) {
    typedef qt<TYPE> Q;
    typedef typename Q::A A;
    const int c = threadIdx.x % Q::CPB;
    for (int t = 0; t < NC; t++)
        acc[t] = 0.0f;
    for (int64_t i = threadIdx.x / Q::CPB; i < nb; i += MMV_THREADS / Q::CPB) {
        const uint8_t *b = wr + i * Q::BS;
        for (int t = 0; t < NC; t++)
            acc[t] += Q::dot(b, (const A *)(xq + t * xq_col) + i, c);
    }
    block_sum<NC>(acc);
}

/* dst[o, t] = W[:, o] · x[:, t] for t < NC: one CUDA block per row o (gridDim.x = n_out). */
template <int TYPE, int NC>
__global__ void __launch_bounds__(MMV_THREADS)
k_mmvq(const uint8_t *__restrict__ w, size_t w_row, int64_t nb,
       const uint8_t *__restrict__ xq, size_t xq_col, float *__restrict__ dst, int64_t d_col) {
    const int64_t o = blockIdx.x;
    float acc[NC];
    row_dot<TYPE, NC>(w + o * w_row, nb, xq, xq_col, acc);
    if (threadIdx.x == 0)
        for (int t = 0; t < NC; t++)
            dst[t * d_col + o] = acc[t];
}

/* matmul_id's decode: dst[o, s, t] = W[:, o, ids[s, t]] · x[:, s % x_slots, t]; grid (n_out,
 * n_used, T). An id outside [0, n_expert) writes NaN there and raises *bad. */
template <int TYPE>
__global__ void __launch_bounds__(MMV_THREADS)
k_mmvq_id(const uint8_t *__restrict__ w, size_t w_row, size_t w_expert, int64_t nb,
          int64_t n_out, int n_expert, const uint8_t *__restrict__ xq, size_t xq_col,
          int64_t x_slots, const int32_t *ids, int n_used, float *dst, int *bad) {
    const int64_t o = blockIdx.x, t = blockIdx.z;
    const int s = blockIdx.y;
    const int e = ids[t * n_used + s];
    float *out = dst + (t * n_used + s) * n_out + o;
    if (e < 0 || e >= n_expert) {
        if (threadIdx.x == 0) {
            *out = __int_as_float(0x7fc00000);
            atomicExch(bad, 1);
        }
        return;
    }
    float acc[1];
    row_dot<TYPE, 1>(w + (size_t)e * w_expert + o * w_row, nb,
                     xq + (t * x_slots + s % x_slots) * xq_col, 0, acc);
    if (threadIdx.x == 0)
        *out = acc[0];
}

/* ---- host side -------------------------------------------------------------------------------- */

bool mx_cu_mmvq_type(enum mx_type t) {
    switch (t) {
    case MX_TYPE_Q4_0: case MX_TYPE_Q4_1: case MX_TYPE_Q5_0: case MX_TYPE_Q5_1:
    case MX_TYPE_Q8_0: case MX_TYPE_IQ4_NL: case MX_TYPE_MXFP4: case MX_TYPE_Q4_K:
    case MX_TYPE_Q5_K: case MX_TYPE_Q6_K: case MX_TYPE_IQ4_XS:
        return true;
    default:
        return false;
    }
}

/* whether t's activations are Q8_K (256-value blocks) rather than Q8_0/Q8_1 */
static bool act_k(enum mx_type t) {
    return t == MX_TYPE_Q4_K || t == MX_TYPE_Q5_K || t == MX_TYPE_Q6_K || t == MX_TYPE_IQ4_XS;
}

/* bytes of one quantized activation column of n values */
static size_t act_col_bytes(enum mx_type t, int64_t n) {
    return act_k(t) ? (size_t)(n / 256) * sizeof(cu_q8k) : (size_t)(n / 32) * sizeof(cu_q8a);
}

/* x [n, ncols] (x_col floats apart) quantized into xq for weights of type t */
static int quantize_act(struct mx_backend *be, enum mx_type t, const float *x, int64_t x_col,
                        int64_t n, int64_t ncols, uint8_t *xq, size_t xq_col) {
    struct cu_ctx *c = cu(be);
    for (int64_t t0 = 0; t0 < ncols; t0 += 65535) { /* grid y limit */
        const int64_t nc = ncols - t0 < 65535 ? ncols - t0 : 65535;
        if (act_k(t)) {
            dim3 grid((unsigned)(n / 256), (unsigned)nc);
            MX_LAUNCH(k_quant_q8k, grid, 256, 0, c->stream)(x + t0 * x_col, x_col,
                                                            xq + t0 * xq_col, xq_col);
        } else {
            dim3 grid(mx_cu_blocks(n / 32, 8), (unsigned)nc);
            MX_LAUNCH(k_quant_q8a, grid, 256, 0, c->stream)(x + t0 * x_col, x_col, n,
                                                            xq + t0 * xq_col, xq_col);
        }
        int rc = mx_cu_check(be, "matmul: quantizing the activations");
        if (rc < 0)
            return rc;
    }
    return 0;
}

template <int TYPE>
static void launch_mmvq(cudaStream_t st, const uint8_t *w, size_t w_row, int64_t nb,
                        int64_t n_out, const uint8_t *xq, size_t xq_col, float *dst,
                        int64_t d_col, int T) {
    const dim3 grid((unsigned)n_out), block(MMV_THREADS);
    switch (T) {
    case 1: MX_LAUNCH((k_mmvq<TYPE, 1>), grid, block, 0, st)(w, w_row, nb, xq, xq_col, dst, d_col); break;
    case 2: MX_LAUNCH((k_mmvq<TYPE, 2>), grid, block, 0, st)(w, w_row, nb, xq, xq_col, dst, d_col); break;
    case 3: MX_LAUNCH((k_mmvq<TYPE, 3>), grid, block, 0, st)(w, w_row, nb, xq, xq_col, dst, d_col); break;
    case 4: MX_LAUNCH((k_mmvq<TYPE, 4>), grid, block, 0, st)(w, w_row, nb, xq, xq_col, dst, d_col); break;
    case 5: MX_LAUNCH((k_mmvq<TYPE, 5>), grid, block, 0, st)(w, w_row, nb, xq, xq_col, dst, d_col); break;
    case 6: MX_LAUNCH((k_mmvq<TYPE, 6>), grid, block, 0, st)(w, w_row, nb, xq, xq_col, dst, d_col); break;
    case 7: MX_LAUNCH((k_mmvq<TYPE, 7>), grid, block, 0, st)(w, w_row, nb, xq, xq_col, dst, d_col); break;
    default: MX_LAUNCH((k_mmvq<TYPE, 8>), grid, block, 0, st)(w, w_row, nb, xq, xq_col, dst, d_col); break;
    }
}

/* every type of mx_cu_mmvq_type, as a switch calling F<TYPE>(args) */
#define MMV_DISPATCH(type, F, ...)                                                           \
    switch (type) {                                                                          \
    case MX_TYPE_Q4_0: F<MX_TYPE_Q4_0>(__VA_ARGS__); break;                                  \
    case MX_TYPE_Q4_1: F<MX_TYPE_Q4_1>(__VA_ARGS__); break;                                  \
    case MX_TYPE_Q5_0: F<MX_TYPE_Q5_0>(__VA_ARGS__); break;                                  \
    case MX_TYPE_Q5_1: F<MX_TYPE_Q5_1>(__VA_ARGS__); break;                                  \
    case MX_TYPE_Q8_0: F<MX_TYPE_Q8_0>(__VA_ARGS__); break;                                  \
    case MX_TYPE_IQ4_NL: F<MX_TYPE_IQ4_NL>(__VA_ARGS__); break;                              \
    case MX_TYPE_MXFP4: F<MX_TYPE_MXFP4>(__VA_ARGS__); break;                                \
    case MX_TYPE_Q4_K: F<MX_TYPE_Q4_K>(__VA_ARGS__); break;                                  \
    case MX_TYPE_Q5_K: F<MX_TYPE_Q5_K>(__VA_ARGS__); break;                                  \
    case MX_TYPE_Q6_K: F<MX_TYPE_Q6_K>(__VA_ARGS__); break;                                  \
    default: F<MX_TYPE_IQ4_XS>(__VA_ARGS__); break;                                          \
    }

int mx_cu_mmvq(struct mx_backend *be, float *dst, int64_t d_col, const struct mx_tensor *w,
               const uint8_t *wdata, const float *x, int64_t x_col, int64_t T) {
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    const size_t xq_col = act_col_bytes(w->type, n_in);
    uint8_t *xq = (uint8_t *)mx_cu_work(be, xq_col * (size_t)T);
    if (!xq)
        return MX_ENOMEM;
    int rc = quantize_act(be, w->type, x, x_col, n_in, T, xq, xq_col);
    if (rc < 0)
        return rc;
    const int64_t nb = n_in / (act_k(w->type) ? 256 : 32);
    cudaStream_t st = cu(be)->stream;
    MMV_DISPATCH(w->type, launch_mmvq, st, wdata, w->nb[1], nb, n_out, xq, xq_col, dst, d_col,
                 (int)T);
    return mx_cu_check(be, "matmul: quantized mat-vec");
}

template <int TYPE>
static void launch_mmvq_id(cudaStream_t st, dim3 grid, const uint8_t *w, size_t w_row,
                           size_t w_expert, int64_t nb, int64_t n_out, int n_expert,
                           const uint8_t *xq, size_t xq_col, int64_t x_slots, const int32_t *ids,
                           int n_used, float *dst, int *bad) {
    MX_LAUNCH((k_mmvq_id<TYPE>), grid, MMV_THREADS, 0, st)(w, w_row, w_expert, nb, n_out,
                                                           n_expert, xq, xq_col, x_slots, ids,
                                                           n_used, dst, bad);
}

extern int *mx_cu_bad_flag(struct mx_backend *be);

int mx_cu_mmvq_id(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                  const struct mx_tensor *x, const struct mx_tensor *ids) {
    const int n_used = (int)ids->ne[0];
    const int64_t T = ids->ne[1], n_in = w->ne[0], n_out = w->ne[1], x_slots = x->ne[1];
    const size_t xq_col = act_col_bytes(w->type, n_in);
    uint8_t *xq = (uint8_t *)mx_cu_work(be, xq_col * (size_t)(x_slots * T));
    if (!xq)
        return MX_ENOMEM;
    /* every (slot, token) column of x once: x is [n_in, x_slots, T], contiguous */
    int rc = quantize_act(be, w->type, (const float *)x->data, n_in, n_in, x_slots * T, xq,
                          xq_col);
    if (rc < 0)
        return rc;
    const int64_t nb = n_in / (act_k(w->type) ? 256 : 32);
    cudaStream_t st = cu(be)->stream;
    dim3 grid((unsigned)n_out, (unsigned)n_used, (unsigned)T);
    MMV_DISPATCH(w->type, launch_mmvq_id, st, grid, (const uint8_t *)w->data, w->nb[1], w->nb[2],
                 nb, n_out, (int)w->ne[2], xq, xq_col, x_slots, (const int32_t *)ids->data,
                 n_used, (float *)dst->data, mx_cu_bad_flag(be));
    return mx_cu_check(be, "matmul_id: quantized mat-vec");
}
