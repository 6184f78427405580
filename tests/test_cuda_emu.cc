/* test_cuda_emu.cc - the CUDA emulator itself (kernels/cuda/emu/): kernels written as device
 * code run through MX_LAUNCH and checked against host-computed answers: block barriers over many
 * rounds and partial warps, every shuffle form with widths, ballot/any/all, the errors a GPU
 * gives (divergent __syncthreads, a warp mask naming exited lanes, each launch limit) with the
 * kernel's name in the message, sticky errors, graph capture and replay, cuBLAS GEMMs against a
 * naive product in double, half/bf16 conversions against core/base's, memory accounting. Prints
 * the cost of an emulated thread and of a barrier (rough: a loaded machine). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern "C" {
#include <cmocka.h>

#include "core/base/util.h"
}

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

/* ---- kernels -------------------------------------------------------------------------------- */

/* inclusive prefix sum of each block's slice (Hillis-Steele: two barriers per step) */
__global__ void k_scan(const int *in, int *out, int n) {
    __shared__ int s[1024];
    int t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
    s[t] = i < n ? in[i] : 0;
    __syncthreads();
    for (int off = 1; off < (int)blockDim.x; off *= 2) {
        int v = t >= off ? s[t - off] : 0;
        __syncthreads();
        s[t] += v;
        __syncthreads();
    }
    if (i < n)
        out[i] = s[t];
}

/* every shuffle form; out has 10 values per thread */
__global__ void k_shuffles(int *out) {
    int t = threadIdx.x, lane = t % 32, v = 1000 + t;
    int *o = out + t * 10;
    o[0] = __shfl_xor_sync(0xffffffffu, v, 1);
    o[1] = __shfl_down_sync(0xffffffffu, v, 3);
    o[2] = __shfl_up_sync(0xffffffffu, v, 5);
    o[3] = __shfl_sync(0xffffffffu, v, 7);
    o[4] = __shfl_xor_sync(0xffffffffu, v, 12, 8);
    o[5] = __shfl_down_sync(0xffffffffu, v, 6, 16);
    o[6] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
    o[7] = __any_sync(0xffffffffu, lane == 31);
    o[8] = __all_sync(0xffffffffu, lane < 31);
    float f = __shfl_sync(0xffffffffu, (float)t * 0.5f, 31 - lane);
    o[9] = (int)(f * 2.0f);
}

/* the block-level reduction pattern of kernels/cuda (warp shuffles, then one warp over the
 * warps' partial sums) */
__global__ void k_block_sum(const float *x, float *y, int n) {
    __shared__ float sh[32];
    float v = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        v += x[blockIdx.x * n + i];
    for (int off = 16; off > 0; off >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, off);
    int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0)
        sh[w] = v;
    __syncthreads();
    v = lane < (int)blockDim.x / 32 ? sh[lane] : 0.0f;
    for (int off = 16; off > 0; off >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, off);
    if (threadIdx.x == 0)
        y[blockIdx.x] = v;
}

__global__ void k_divergent(int *out) {
    if (threadIdx.x < 16)
        __syncthreads();
    else
        __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void k_exited_lane(int *out) {
    if (threadIdx.x == 5)
        return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}

__global__ void k_partial_warp(int *out) { /* 16 threads: the full mask names absent lanes */
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}

__global__ void k_add(int *x, int n, int v) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        x[i] += v;
}

/* dynamic shared memory, 3-D indices and the integer intrinsics */
__global__ void k_misc(int *out, unsigned *counter) {
    MX_DYN_SHARED(int, dsh);
    int t = threadIdx.x + threadIdx.y * blockDim.x;
    dsh[t] = t * 3;
    __syncthreads();
    int nt = (int)(blockDim.x * blockDim.y);
    int b = blockIdx.x + blockIdx.y * gridDim.x + blockIdx.z * gridDim.x * gridDim.y;
    out[b * nt + t] = dsh[nt - 1 - t];
    atomicAdd(counter, 1u);
    int odd = __syncthreads_count(t & 1);
    if (b == 0 && t == 0) {
        out[1000] = __dp4a(0x01020304, 0x05060708, 10); /* 4*8+3*7+2*6+1*5 + 10 */
        out[1001] = __popc(0xf0f0u) + 100 * __clz(1 << 20) + 10000 * __ffs(0x80);
        out[1002] = odd;
    }
}

/* a missing __syncthreads: each thread reads its left neighbour's fresh value; run in thread
 * order that happens to work, run last-first (MX_CUDA_EMU_REVERSE=1) it does not */
__global__ void k_no_barrier(int *out, int seed) {
    __shared__ int s[64];
    int t = threadIdx.x;
    s[t] = 7 * t + seed;
    out[t] = t > 0 ? s[t - 1] : seed;
}

__constant__ int c_table[4];

__global__ void k_read_table(int *out) {
    out[threadIdx.x] = c_table[threadIdx.x % 4];
}

__global__ void k_nop(int *x) {
    (void)x;
}

__global__ void k_barriers(int *x, int rounds) {
    for (int r = 0; r < rounds; r++)
        __syncthreads();
    (void)x;
}

/* ---- helpers -------------------------------------------------------------------------------- */

static void *dmalloc(size_t n) {
    void *p = NULL;
    assert_int_equal(cudaMalloc(&p, n), cudaSuccess);
    return p;
}

/* After a launch that must fail with e: the message names the kernel and says what. */
static void expect_error(cudaError_t e, const char *kernel, const char *what) {
    cudaError_t got = cudaGetLastError();
    const char *msg = cudaGetErrorString(got);
    printf("expected: %s\n", msg);
    assert_int_equal(got, e);
    assert_non_null(strstr(msg, kernel));
    assert_non_null(strstr(msg, what));
}

static double thread_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_barriers(void **state) {
    (void)state;
    const int n = 1000, bs = 256; /* 4 blocks, the last one partly idle */
    int h[1000], r[1000];
    for (int i = 0; i < n; i++)
        h[i] = i % 7 - 3;
    int *din = (int *)dmalloc(sizeof h), *dout = (int *)dmalloc(sizeof h);
    assert_int_equal(cudaMemcpy(din, h, sizeof h, cudaMemcpyHostToDevice), cudaSuccess);
    MX_LAUNCH(k_scan, (n + bs - 1) / bs, bs, 0, 0)(din, dout, n);
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    assert_int_equal(cudaMemcpy(r, dout, sizeof r, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int i = 0, acc = 0; i < n; i++) {
        acc = (i % bs == 0 ? 0 : acc) + h[i];
        assert_int_equal(r[i], acc);
    }
    /* a block of 100 threads (a partial warp) and one of 1024 reduce as the kernels do */
    const int widths[2] = {96, 1024};
    for (int k = 0; k < 2; k++) {
        float x[3 * 300], y[3];
        for (int i = 0; i < 900; i++)
            x[i] = (float)(i % 11);
        float *dx = (float *)dmalloc(sizeof x), *dy = (float *)dmalloc(sizeof y);
        assert_int_equal(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice), cudaSuccess);
        MX_LAUNCH(k_block_sum, 3, widths[k], 0, 0)(dx, dy, 300);
        assert_int_equal(cudaGetLastError(), cudaSuccess);
        assert_int_equal(cudaMemcpy(y, dy, sizeof y, cudaMemcpyDeviceToHost), cudaSuccess);
        for (int b = 0; b < 3; b++) {
            float s = 0;
            for (int i = 0; i < 300; i++)
                s += x[b * 300 + i];
            assert_true(y[b] == s);
        }
        cudaFree(dx);
        cudaFree(dy);
    }
    cudaFree(din);
    cudaFree(dout);
}

static void test_shuffles(void **state) {
    (void)state;
    const int nt = 64;
    int r[64 * 10];
    int *d = (int *)dmalloc(sizeof r);
    MX_LAUNCH(k_shuffles, 1, nt, 0, 0)(d);
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    assert_int_equal(cudaMemcpy(r, d, sizeof r, cudaMemcpyDeviceToHost), cudaSuccess);
    unsigned ballot = 0;
    for (int l = 0; l < 32; l++)
        if (l % 3 == 0)
            ballot |= 1u << l;
    for (int t = 0; t < nt; t++) {
        int lane = t % 32, base = t - lane, *o = r + t * 10;
        assert_int_equal(o[0], 1000 + base + (lane ^ 1));
        assert_int_equal(o[1], 1000 + base + (lane + 3 < 32 ? lane + 3 : lane));
        assert_int_equal(o[2], 1000 + base + (lane >= 5 ? lane - 5 : lane));
        assert_int_equal(o[3], 1000 + base + 7);
        /* width 8: lane ^ 12 leaves the segment of 8 for later ones: own value then */
        int seg8 = lane & ~7, x = lane ^ 12;
        assert_int_equal(o[4], 1000 + base + (x >= seg8 + 8 ? lane : x));
        int seg16 = lane & ~15;
        assert_int_equal(o[5], 1000 + base + (lane - seg16 + 6 < 16 ? lane + 6 : lane));
        assert_int_equal((unsigned)o[6], ballot);
        assert_int_equal(o[7], 1);
        assert_int_equal(o[8], 0);
        assert_int_equal(o[9], base + 31 - lane);
    }
    cudaFree(d);
}

static void test_errors(void **state) {
    (void)state;
    int *d = (int *)dmalloc(1024 * sizeof(int));
    /* execution errors: sticky until cudaDeviceReset, every call fails meanwhile */
    MX_LAUNCH(k_divergent, 1, 64, 0, 0)(d);
    expect_error(cudaErrorLaunchFailure, "k_divergent", "divergent __syncthreads");
    int x = 0;
    assert_int_equal(cudaMemcpy(&x, d, sizeof x, cudaMemcpyDeviceToHost), cudaErrorLaunchFailure);
    assert_int_equal(cudaDeviceSynchronize(), cudaErrorLaunchFailure);
    assert_int_equal(cudaDeviceReset(), cudaSuccess);
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    MX_LAUNCH(k_exited_lane, 1, 32, 0, 0)(d);
    expect_error(cudaErrorLaunchFailure, "k_exited_lane", "names lane 5, which has exited");
    cudaDeviceReset();
    MX_LAUNCH(k_partial_warp, 1, 16, 0, 0)(d);
    expect_error(cudaErrorLaunchFailure, "k_partial_warp", "does not exist");
    cudaDeviceReset();
    /* configuration errors: reported once, the next launch works */
    MX_LAUNCH(k_add, 1, 1025, 0, 0)(d, 1024, 1);
    expect_error(cudaErrorInvalidConfiguration, "k_add", "1025 x 1 x 1 threads");
    MX_LAUNCH(k_add, 1, dim3(8, 8, 65), 0, 0)(d, 1024, 1);
    expect_error(cudaErrorInvalidConfiguration, "k_add", "z <= 64");
    MX_LAUNCH(k_add, dim3(1, 65536), 32, 0, 0)(d, 1024, 1);
    expect_error(cudaErrorInvalidConfiguration, "k_add", "1 x 65536 x 1 blocks");
    MX_LAUNCH(k_add, dim3(1, 1, 70000), 32, 0, 0)(d, 1024, 1);
    expect_error(cudaErrorInvalidConfiguration, "k_add", "y and z at most 65535");
    MX_LAUNCH(k_add, 0, 32, 0, 0)(d, 1024, 1);
    expect_error(cudaErrorInvalidConfiguration, "k_add", "empty grid");
    MX_LAUNCH(k_add, 1, 32, 48 * 1024 + 1, 0)(d, 1024, 1);
    expect_error(cudaErrorInvalidConfiguration, "k_add", "49153 bytes of dynamic shared");
    /* opting in to more: up to the device's limit, and then the launch passes */
    assert_int_equal(cudaFuncSetAttribute(k_misc, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          200000), cudaErrorInvalidValue);
    cudaGetLastError();
    assert_int_equal(cudaFuncSetAttribute(k_misc, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          100000), cudaSuccess);
    MX_LAUNCH(k_misc, 1, 32, 100001, 0)(d, (unsigned *)(d + 1020));
    expect_error(cudaErrorInvalidConfiguration, "k_misc", "100001 bytes");
    MX_LAUNCH(k_misc, 1, 32, 100000, 0)(d, (unsigned *)(d + 1020));
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    assert_int_equal(cudaMemset(d, 0, 1024 * sizeof(int)), cudaSuccess);
    MX_LAUNCH(k_add, 1, 1024, 48 * 1024, 0)(d, 1024, 2); /* the limits themselves pass */
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    assert_int_equal(cudaMemcpy(&x, d + 1023, sizeof x, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_int_equal(x, 2);
    /* copies reaching past an allocation, frees of foreign pointers */
    assert_int_equal(cudaMemcpy(&x, d + 1023, 2 * sizeof x, cudaMemcpyDeviceToHost),
                     cudaErrorInvalidValue);
    assert_int_equal(cudaFree(&x), cudaErrorInvalidValue);
    cudaGetLastError();
    cudaFree(d);
}

static void test_misc_and_memory(void **state) {
    (void)state;
    int *d = (int *)dmalloc(2048 * sizeof(int));
    unsigned *cnt = (unsigned *)dmalloc(sizeof(unsigned));
    assert_int_equal(cudaMemset(cnt, 0, sizeof(unsigned)), cudaSuccess);
    dim3 grid(2, 2, 2), block(8, 4);
    MX_LAUNCH(k_misc, grid, block, 32 * sizeof(int), 0)(d, cnt);
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    int r[1003];
    unsigned c = 0;
    assert_int_equal(cudaMemcpy(r, d, sizeof r, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_int_equal(cudaMemcpy(&c, cnt, sizeof c, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_int_equal(c, 8 * 32);
    for (int b = 0; b < 8; b++)
        for (int t = 0; t < 32; t++)
            assert_int_equal(r[b * 32 + t], (31 - t) * 3);
    assert_int_equal(r[1000], 4 * 8 + 3 * 7 + 2 * 6 + 1 * 5 + 10);
    assert_int_equal(r[1001], 8 + 100 * 11 + 10000 * 8);
    assert_int_equal(r[1002], 16);
    cudaFree(d);
    cudaFree(cnt);
    /* the device's memory: MIXEL_VRAM_AVAILABLE bytes, refused beyond */
    setenv("MIXEL_VRAM_AVAILABLE", "1000000", 1);
    size_t fr = 0, tot = 0;
    assert_int_equal(cudaMemGetInfo(&fr, &tot), cudaSuccess);
    assert_int_equal(tot, 1000000);
    void *p = NULL, *q = NULL;
    size_t fr0 = fr;
    assert_int_equal(cudaMalloc(&p, 600000), cudaSuccess);
    assert_int_equal(cudaMemGetInfo(&fr, &tot), cudaSuccess);
    assert_int_equal(fr, fr0 - 600000);
    assert_int_equal(cudaMalloc(&q, 600000), cudaErrorMemoryAllocation);
    assert_null(q);
    cudaGetLastError();
    cudaFree(p);
    unsetenv("MIXEL_VRAM_AVAILABLE");
    cudaDeviceProp prop;
    assert_int_equal(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
    assert_string_equal(prop.name, "mixel CUDA emulator");
    int n = 0;
    assert_int_equal(cudaGetDeviceCount(&n), cudaSuccess);
    assert_int_equal(n, 1);
    assert_int_equal(cudaDeviceGetAttribute(&n, cudaDevAttrMaxSharedMemoryPerBlock, 0),
                     cudaSuccess);
    assert_int_equal(n, 48 * 1024);
    /* half and bf16 conversions: every half value, and floats around the rounding points,
     * against core/base/util.h's (checked on their own in test_quant) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = __half2float(__ushort_as_half((unsigned short)h));
        uint32_t fb, cb;
        float cf = mx_fp16_to_fp32((uint16_t)h);
        memcpy(&fb, &f, 4);
        memcpy(&cb, &cf, 4);
        assert_int_equal(fb, cb);
        if ((h & 0x7fffu) <= 0x7c00u) /* not NaN: round trip exact */
            assert_int_equal(__half_as_ushort(__float2half_rn(f)), h);
    }
    uint64_t s = 99;
    for (int i = 0; i < 200000; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t bits = (uint32_t)(s >> 32);
        float f;
        memcpy(&f, &bits, 4);
        if (f != f)
            continue;
        assert_int_equal(__half_as_ushort(__float2half_rn(f)), mx_fp32_to_fp16(f));
        assert_int_equal(__bfloat16_as_ushort(__float2bfloat16(f)), mx_fp32_to_bf16(f));
    }
    const int tab[4] = {5, 6, 7, 8};
    assert_int_equal(cudaMemcpyToSymbol(c_table, tab, sizeof tab), cudaSuccess);
    assert_int_equal(cudaMemcpyToSymbol(c_table, tab, sizeof tab, 4), cudaErrorInvalidValue);
    int *dt = (int *)dmalloc(8 * sizeof(int)), rt[8];
    MX_LAUNCH(k_read_table, 1, 8, 0, 0)(dt);
    assert_int_equal(cudaMemcpy(rt, dt, sizeof rt, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int i = 0; i < 8; i++)
        assert_int_equal(rt[i], tab[i % 4]);
    cudaFree(dt);
    float2 two = __half22float2(__floats2half2_rn(1.5f, -2.25f));
    assert_true(two.x == 1.5f && two.y == -2.25f);
    assert_true(__int_as_float(0x3f800000) == 1.0f && __float_as_uint(2.0f) == 0x40000000u);
}

/* MX_CUDA_EMU_REVERSE=1 runs blocks, warps and lanes last first: a kernel that relies on the
 * emulator's thread order (a missing barrier, blocks depending on each other) changes result. */
static void test_reverse_order(void **state) {
    (void)state;
    int *d = (int *)dmalloc(64 * sizeof(int)), r[64];
    for (int pass = 0; pass < 2; pass++) {
        if (pass)
            setenv("MX_CUDA_EMU_REVERSE", "1", 1);
        MX_LAUNCH(k_no_barrier, 1, 64, 0, 0)(d, pass + 1);
        assert_int_equal(cudaMemcpy(r, d, sizeof r, cudaMemcpyDeviceToHost), cudaSuccess);
        int wrong = 0;
        for (int t = 1; t < 64; t++)
            wrong += r[t] != 7 * (t - 1) + pass + 1;
        assert_int_equal(wrong, pass ? 63 : 0);
    }
    /* correct kernels give the same answers in either order */
    const int n = 1000, bs = 256;
    int h[1000], out[1000];
    for (int i = 0; i < n; i++)
        h[i] = i % 5;
    int *din = (int *)dmalloc(sizeof h), *dout = (int *)dmalloc(sizeof h);
    cudaMemcpy(din, h, sizeof h, cudaMemcpyHostToDevice);
    MX_LAUNCH(k_scan, (n + bs - 1) / bs, bs, 0, 0)(din, dout, n);
    assert_int_equal(cudaMemcpy(out, dout, sizeof out, cudaMemcpyDeviceToHost), cudaSuccess);
    for (int i = 0, acc = 0; i < n; i++) {
        acc = (i % bs == 0 ? 0 : acc) + h[i];
        assert_int_equal(out[i], acc);
    }
    unsetenv("MX_CUDA_EMU_REVERSE");
    cudaFree(din);
    cudaFree(dout);
    cudaFree(d);
}

static void test_graphs(void **state) {
    (void)state;
    const int n = 300;
    int *d = (int *)dmalloc(n * sizeof(int)), h[300];
    cudaStream_t s;
    assert_int_equal(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    assert_int_equal(cudaMemset(d, 0, n * sizeof(int)), cudaSuccess);
    unsigned long long before = mx_emu_launch_count();
    assert_int_equal(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
    MX_LAUNCH(k_add, 3, 128, 0, s)(d, n, 1);
    MX_LAUNCH(k_add, 3, 128, 0, s)(d, n, 10);
    assert_int_equal(cudaMemcpyAsync(h, d, sizeof h, cudaMemcpyDeviceToHost, s), cudaSuccess);
    cudaGraph_t g;
    assert_int_equal(cudaStreamEndCapture(s, &g), cudaSuccess);
    assert_int_equal(mx_emu_launch_count(), before); /* recorded, not run */
    size_t nodes = 0;
    assert_int_equal(cudaGraphGetNodes(g, NULL, &nodes), cudaSuccess);
    assert_int_equal(nodes, 3);
    cudaGraphExec_t x;
    assert_int_equal(cudaGraphInstantiate(&x, g, 0), cudaSuccess);
    for (int k = 1; k <= 3; k++) {
        memset(h, 0, sizeof h);
        assert_int_equal(cudaGraphLaunch(x, s), cudaSuccess);
        assert_int_equal(cudaStreamSynchronize(s), cudaSuccess);
        for (int i = 0; i < n; i++)
            assert_int_equal(h[i], 11 * k);
    }
    assert_int_equal(mx_emu_launch_count(), before + 6);
    /* an update swaps in another capture's work */
    cudaGraph_t g2;
    assert_int_equal(cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed), cudaSuccess);
    MX_LAUNCH(k_add, 3, 128, 0, s)(d, n, 100);
    assert_int_equal(cudaStreamEndCapture(s, &g2), cudaSuccess);
    assert_int_equal(cudaGraphExecUpdate(x, g2, NULL), cudaSuccess);
    assert_int_equal(cudaGraphLaunch(x, s), cudaSuccess);
    assert_int_equal(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_int_equal(h[n - 1], 33 + 100);
    cudaGraphDestroy(g2);
    cudaGraphExecDestroy(x);
    cudaGraphDestroy(g);
    /* a synchronous wait inside a capture invalidates it, as on a GPU */
    assert_int_equal(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
    assert_int_equal(cudaStreamSynchronize(s), cudaErrorStreamCaptureUnsupported);
    assert_int_equal(cudaStreamEndCapture(s, &g), cudaErrorStreamCaptureInvalidated);
    cudaGetLastError();
    cudaStreamDestroy(s);
    cudaFree(d);
}

/* naive column-major product in double of the (already rounded) inputs */
static void naive(bool ta, bool tb, int m, int n, int k, const float *A, int lda,
                  const float *B, int ldb, float *C, int ldc, float alpha, float beta) {
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double acc = 0;
            for (int l = 0; l < k; l++)
                acc += (double)(ta ? A[i * lda + l] : A[l * lda + i]) *
                       (tb ? B[l * ldb + j] : B[j * ldb + l]);
            C[j * ldc + i] = (float)(alpha * acc + beta * C[j * ldc + i]);
        }
}

static void test_gemm(void **state) {
    (void)state;
    cublasHandle_t h;
    assert_int_equal(cublasCreate(&h), CUBLAS_STATUS_SUCCESS);
    const int m = 5, n = 7, k = 9, lda = 12, ldb = 11, ldc = 6, batch = 3;
    const cudaDataType_t types[3] = {CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF};
    uint64_t s = 7;
    for (int ti = 0; ti < 3; ti++)
        for (int op = 0; op < 4; op++) {
            bool ta = op & 1, tb = op & 2;
            cudaDataType_t t = types[ti];
            size_t es = t == CUDA_R_32F ? 4 : 2;
            const long long sa = 12 * 12, sb = 12 * 11, sc = 6 * 7;
            float A[3 * 144], B[3 * 132], C[3 * 42], R[3 * 42];
            unsigned char ab[3 * 144 * 4], bb[3 * 132 * 4];
            for (int i = 0; i < 3 * 144; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                A[i] = (float)((int)(s >> 40) % 200) / 64.0f;
            }
            for (int i = 0; i < 3 * 132; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                B[i] = (float)((int)(s >> 40) % 200) / 32.0f;
            }
            for (int i = 0; i < 3 * 42; i++)
                C[i] = R[i] = (float)(i % 5);
            /* inputs stored in type t; the reference multiplies the same rounded values */
            for (int i = 0; i < 3 * 144; i++) {
                if (t == CUDA_R_16F) {
                    uint16_t v = mx_fp32_to_fp16(A[i]);
                    memcpy(ab + 2 * i, &v, 2);
                    A[i] = mx_fp16_to_fp32(v);
                } else if (t == CUDA_R_16BF) {
                    uint16_t v = mx_fp32_to_bf16(A[i]);
                    memcpy(ab + 2 * i, &v, 2);
                    A[i] = mx_bf16_to_fp32(v);
                } else
                    memcpy(ab + 4 * i, &A[i], 4);
            }
            for (int i = 0; i < 3 * 132; i++) {
                if (t == CUDA_R_16F) {
                    uint16_t v = mx_fp32_to_fp16(B[i]);
                    memcpy(bb + 2 * i, &v, 2);
                    B[i] = mx_fp16_to_fp32(v);
                } else if (t == CUDA_R_16BF) {
                    uint16_t v = mx_fp32_to_bf16(B[i]);
                    memcpy(bb + 2 * i, &v, 2);
                    B[i] = mx_bf16_to_fp32(v);
                } else
                    memcpy(bb + 4 * i, &B[i], 4);
            }
            void *dA = dmalloc(3 * 144 * es), *dB = dmalloc(3 * 132 * es);
            float *dC = (float *)dmalloc(sizeof C);
            cudaMemcpy(dA, ab, 3 * 144 * es, cudaMemcpyHostToDevice);
            cudaMemcpy(dB, bb, 3 * 132 * es, cudaMemcpyHostToDevice);
            cudaMemcpy(dC, C, sizeof C, cudaMemcpyHostToDevice);
            const float alpha = 0.75f, beta = 0.5f;
            cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
            assert_int_equal(cublasGemmStridedBatchedEx(h, oa, ob, m, n, k, &alpha, dA, t, lda,
                                                        sa, dB, t, ldb, sb, &beta, dC,
                                                        CUDA_R_32F, ldc, sc, batch,
                                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                             CUBLAS_STATUS_SUCCESS);
            cudaMemcpy(C, dC, sizeof C, cudaMemcpyDeviceToHost);
            for (int b = 0; b < batch; b++)
                naive(ta, tb, m, n, k, A + b * sa, lda, B + b * sb, ldb, R + b * sc, ldc, alpha,
                      beta);
            for (int i = 0; i < 3 * 42; i++)
                assert_float_equal(C[i], R[i], 1e-5 * (1 + fabsf(R[i])));
            if (t == CUDA_R_32F) { /* cublasSgemm and cublasGemmEx on batch 0 */
                float C1[42];
                assert_int_equal(cublasSgemm(h, oa, ob, m, n, k, &alpha, (const float *)dA, lda,
                                             (const float *)dB, ldb, &beta, dC, ldc),
                                 CUBLAS_STATUS_SUCCESS);
                cudaMemcpy(C1, dC, sizeof C1, cudaMemcpyDeviceToHost);
                naive(ta, tb, m, n, k, A, lda, B, ldb, R, ldc, alpha, beta);
                for (int i = 0; i < 42; i++)
                    if (i % ldc < m) /* rows past m: untouched */
                        assert_float_equal(C1[i], R[i], 1e-5 * (1 + fabsf(R[i])));
            }
            /* cuBLAS's checks: a leading dimension below the stored rows */
            assert_int_equal(cublasGemmEx(h, oa, ob, m, n, k, &alpha, dA, t, ta ? k - 1 : m - 1,
                                          dB, t, ldb, &beta, dC, CUDA_R_32F, ldc,
                                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                             CUBLAS_STATUS_INVALID_VALUE);
            cudaFree(dA);
            cudaFree(dB);
            cudaFree(dC);
        }
    /* F16 output, rounded once from the F32 result */
    {
        float A[4] = {1, 2, 3, 4}, B[2] = {0.1f, 0.2f}; /* 2x2 times 2x1 */
        float *dA = (float *)dmalloc(sizeof A), *dB = (float *)dmalloc(sizeof B);
        uint16_t *dC = (uint16_t *)dmalloc(2 * sizeof(uint16_t)), c[2];
        cudaMemcpy(dA, A, sizeof A, cudaMemcpyHostToDevice);
        cudaMemcpy(dB, B, sizeof B, cudaMemcpyHostToDevice);
        const float one = 1, zero = 0;
        assert_int_equal(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 2, 1, 2, &one, dA, CUDA_R_32F,
                                      2, dB, CUDA_R_32F, 2, &zero, dC, CUDA_R_16F, 2,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                         CUBLAS_STATUS_SUCCESS);
        cudaMemcpy(c, dC, sizeof c, cudaMemcpyDeviceToHost);
        assert_int_equal(c[0], mx_fp32_to_fp16(1 * 0.1f + 3 * 0.2f));
        assert_int_equal(c[1], mx_fp32_to_fp16(2 * 0.1f + 4 * 0.2f));
        cudaFree(dA);
        cudaFree(dB);
        cudaFree(dC);
    }
    cublasDestroy(h);
}

/* The emulator's costs (printed, not asserted): a barrier-free thread, one __syncthreads. */
static void test_costs(void **state) {
    (void)state;
    int *d = (int *)dmalloc(4);
    double t0 = thread_s();
    MX_LAUNCH(k_nop, 4096, 256, 0, 0)(d);
    double t1 = thread_s();
    MX_LAUNCH(k_barriers, 64, 256, 0, 0)(d, 16);
    double t2 = thread_s();
    assert_int_equal(cudaGetLastError(), cudaSuccess);
    printf("emulator cost (rough, loaded machine): %.0f ns per barrier-free thread, %.0f ns per "
           "thread per __syncthreads\n", (t1 - t0) * 1e9 / (4096.0 * 256),
           (t2 - t1) * 1e9 / (64.0 * 256 * 16));
    cudaFree(d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_barriers), cmocka_unit_test(test_shuffles),
        cmocka_unit_test(test_errors),   cmocka_unit_test(test_misc_and_memory),
        cmocka_unit_test(test_graphs),   cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_reverse_order),
        cmocka_unit_test(test_costs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL) ? 1 : 0;
}
