/* cuda_runtime.h (emulator) - the CUDA runtime as kernels/cuda's .cu files see it, run on the
 * CPU so that `make check` exercises the CUDA backend's logic where no GPU is (CI, this project's
 * machines). Only the emulated build (-DMX_CUDA_EMU, kernels/cuda/cuda.am) puts this directory
 * on the include path; nvcc builds use the toolkit's headers. See kernels/cuda/emu/README.
 *
 * Device code is plain C++: __global__/__device__ vanish, __shared__ is static storage (blocks
 * of a launch run one after another on one OS thread, so all threads of the running block share
 * it), the built-in indices are the running fiber's. Every thread of a block is a fiber
 * (emu_sched.cc): __syncthreads and the warp intrinsics are barriers that switch fibers; a
 * thread that meets no barrier costs a call. Launches go through MX_LAUNCH (cuda_impl.h), which
 * checks what a GPU would refuse and runs the grid at once (streams are synchronous). */
#ifndef MX_EMU_CUDA_RUNTIME_H
#define MX_EMU_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <utility>

/* ---- qualifiers ---------------------------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __restrict__ __restrict
#define __launch_bounds__(...)
#define __shared__ static /* one block at a time: static storage is the block's */
#define __constant__ static
#define __align__(n) __attribute__((aligned(n)))

/* ---- vector types and the built-in indices --------------------------------------------------- */
struct uint3 {
    unsigned x, y, z;
};
/* dim3: launch geometry; unset components are 1, as in CUDA */
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct int2 {
    int x, y;
};
struct int4 {
    int x, y, z, w;
};
struct float2 {
    float x, y;
};
struct float4 {
    float x, y, z, w;
};
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return int2{x, y}; }

constexpr int warpSize = 32;

/* The running thread's coordinates: set by the scheduler before it resumes a fiber. */
/* A plain global, not thread_local: launches hold a lock, and a trivially constructed global is
 * one load (a thread_local of a type with constructors costs a call per access). */
struct mx_emu_thread_regs {
    uint3 tid;  /* threadIdx */
    uint3 bid;  /* blockIdx */
    uint3 bdim; /* blockDim */
    uint3 gdim; /* gridDim */
};
extern mx_emu_thread_regs mx_emu_regs;
#define threadIdx (static_cast<const uint3 &>(mx_emu_regs.tid))
#define blockIdx (static_cast<const uint3 &>(mx_emu_regs.bid))
#define blockDim (static_cast<const uint3 &>(mx_emu_regs.bdim))
#define gridDim (static_cast<const uint3 &>(mx_emu_regs.gdim))

/* ---- errors and the runtime API (emu_runtime.cc) --------------------------------------------- */
enum cudaError_t {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorIllegalAddress = 700,
    cudaErrorLaunchOutOfResources = 701,
    cudaErrorLaunchFailure = 719,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorIllegalState = 401,
    cudaErrorNoDevice = 100,
};
typedef cudaError_t cudaError;

enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
    cudaDevAttrMaxThreadsPerBlock = 1,
    cudaDevAttrMaxBlockDimX = 2,
    cudaDevAttrMaxGridDimX = 5,
    cudaDevAttrMaxGridDimY = 6,
    cudaDevAttrMaxGridDimZ = 7,
    cudaDevAttrMaxSharedMemoryPerBlock = 8,
    cudaDevAttrWarpSize = 10,
    cudaDevAttrClockRate = 13,
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrMemoryClockRate = 36,
    cudaDevAttrGlobalMemoryBusWidth = 37,
    cudaDevAttrL2CacheSize = 38,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
    cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2,
};

#define cudaStreamDefault 0x0u
#define cudaStreamNonBlocking 0x1u
#define cudaEventDefault 0x0u
#define cudaEventDisableTiming 0x2u
#define cudaHostAllocDefault 0x0u
#define cudaHostAllocPortable 0x1u
#define cudaHostAllocMapped 0x2u
#define cudaHostRegisterDefault 0x0u
#define cudaHostRegisterReadOnly 0x8u

/* The properties the code reads (the real struct has many more). */
struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem;
    size_t sharedMemPerBlock;
    int regsPerBlock;
    int warpSize;
    int maxThreadsPerBlock;
    int maxThreadsDim[3];
    int maxGridSize[3];
    int clockRate;
    int major;
    int minor;
    int multiProcessorCount;
    int memoryClockRate;
    int memoryBusWidth;
    int l2CacheSize;
    size_t sharedMemPerBlockOptin;
};

typedef struct mx_emu_stream *cudaStream_t;
typedef struct mx_emu_event *cudaEvent_t;
typedef struct mx_emu_graph *cudaGraph_t;
typedef struct mx_emu_graph_exec *cudaGraphExec_t;
typedef struct mx_emu_graph_node *cudaGraphNode_t;

const char *cudaGetErrorString(cudaError_t e);
const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaDeviceReset(void);
cudaError_t cudaRuntimeGetVersion(int *v);
cudaError_t cudaDriverGetVersion(int *v);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total);

cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned flags);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaHostRegister(void *p, size_t n, unsigned flags);
cudaError_t cudaHostUnregister(void *p);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k,
                            cudaStream_t s = 0);
cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind k, cudaStream_t s = 0);
cudaError_t cudaMemset(void *p, int v, size_t n);
cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s = 0);

cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *st);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *x, cudaGraph_t g,
                                          unsigned long long flags);
cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t *nodes, size_t *n);

enum cudaFuncAttribute {
    cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
    cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
/* Opts kernel fn in to more dynamic shared memory (up to sharedMemPerBlockOptin), as the
 * larger tiles of attention kernels do; the launch check then allows that much. */
cudaError_t mx_emu_func_set_attribute(const void *fn, cudaFuncAttribute a, int v);
template <class F> static inline cudaError_t cudaFuncSetAttribute(F *fn, cudaFuncAttribute a, int v) {
    return mx_emu_func_set_attribute(reinterpret_cast<const void *>(fn), a, v);
}
/* __constant__ / __device__ symbols are host statics: copies check the symbol's size */
template <class T>
static inline cudaError_t cudaMemcpyToSymbol(T &sym, const void *src, size_t n, size_t off = 0,
                                             cudaMemcpyKind k = cudaMemcpyHostToDevice) {
    (void)k;
    if (off > sizeof(T) || n > sizeof(T) - off)
        return cudaErrorInvalidValue;
    memcpy((char *)&sym + off, src, n);
    return cudaSuccess;
}
template <class T>
static inline cudaError_t cudaMemcpyFromSymbol(void *dst, const T &sym, size_t n, size_t off = 0,
                                               cudaMemcpyKind k = cudaMemcpyDeviceToHost) {
    (void)k;
    if (off > sizeof(T) || n > sizeof(T) - off)
        return cudaErrorInvalidValue;
    memcpy(dst, (const char *)&sym + off, n);
    return cudaSuccess;
}
struct cudaGraphExecUpdateResultInfo {
    int result;
    cudaGraphNode_t errorNode, errorFromNode;
};
/* Replaces an instantiated graph's work by g's (the emulator accepts every topology change). */
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t x, cudaGraph_t g,
                                cudaGraphExecUpdateResultInfo *info);

/* ---- emulator entry points (emu_sched.cc / emu_runtime.cc) ------------------------------------ */
/* Runs a kernel's grid now, or records it when s is capturing; checks the configuration first. A
 * failure becomes cudaGetLastError's (configuration) or a sticky error (execution). */
void mx_emu_launch(const char *name, const void *fn, dim3 grid, dim3 block, size_t smem,
                   cudaStream_t s, std::function<void()> body);
/* Queues work on stream s: runs it now, or records it into the graph s is capturing. */
cudaError_t mx_emu_enqueue(cudaStream_t s, std::function<cudaError_t()> op);
/* The message of the last emulator-detected error (a kernel's name and what a GPU refuses). */
const char *mx_emu_last_message(void);
/* Kernel launches run since the process started (tests count graph replays with it). */
unsigned long long mx_emu_launch_count(void);
/* Pointer to the running block's dynamic shared memory (MX_DYN_SHARED). */
void *mx_emu_dyn_shared(void);

/* MX_LAUNCH(kernel, grid, block, smem, stream)(args...): binds the arguments by value, as a
 * launch copies them, and hands the grid to mx_emu_launch. */
template <class F> struct mx_emu_launcher {
    F *fn;
    const char *name;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    template <class... A> void operator()(A &&...args) const {
        F *f = fn;
        mx_emu_launch(name, reinterpret_cast<const void *>(f), grid, block, smem, stream,
                      [f, args...]() { f(args...); });
    }
};
template <class F>
static inline mx_emu_launcher<F> mx_emu_launch_of(F *fn, const char *name, dim3 g, dim3 b,
                                                  size_t smem, cudaStream_t s) {
    return mx_emu_launcher<F>{fn, name, g, b, smem, s};
}
#define MX_LAUNCH(kern, grid, block, smem, stream)                                             \
    mx_emu_launch_of(kern, #kern, dim3(grid), dim3(block), (size_t)(smem), (stream))
#define MX_DYN_SHARED(type, name) type *name = static_cast<type *>(mx_emu_dyn_shared())

/* ---- barriers and warp intrinsics (emu_sched.cc) --------------------------------------------- */
enum mx_emu_warp_op {
    MX_EMU_SHFL,      /* from lane arg (within width) */
    MX_EMU_SHFL_UP,   /* from lane - arg */
    MX_EMU_SHFL_DOWN, /* from lane + arg */
    MX_EMU_SHFL_XOR,  /* from lane ^ arg */
    MX_EMU_BALLOT,    /* bit per lane of the predicate */
    MX_EMU_SYNCWARP,  /* a barrier only */
};
/* Block barrier of the running fiber; op 0: plain, 1: count, 2: and, 3: or of pred. */
int mx_emu_syncthreads(int op, int pred, const char *file, int line);
/* Warp barrier exchanging v (bits); returns the value the op delivers to this lane. */
uint64_t mx_emu_warp(mx_emu_warp_op op, unsigned mask, uint64_t v, int arg, int width,
                     const char *file, int line);
/* Lanes of the running warp that have not exited. */
unsigned mx_emu_activemask(void);

#define __syncthreads() ((void)mx_emu_syncthreads(0, 0, __FILE__, __LINE__))
#define __syncthreads_count(p) mx_emu_syncthreads(1, (p) != 0, __FILE__, __LINE__)
#define __syncthreads_and(p) mx_emu_syncthreads(2, (p) != 0, __FILE__, __LINE__)
#define __syncthreads_or(p) mx_emu_syncthreads(3, (p) != 0, __FILE__, __LINE__)
#define __syncwarp(...) ((void)mx_emu_warp(MX_EMU_SYNCWARP, mx_emu_mask_or_all(__VA_ARGS__), 0, \
                                           0, 32, __FILE__, __LINE__))
static inline unsigned mx_emu_mask_or_all(unsigned m = 0xffffffffu) { return m; }
#define __activemask() mx_emu_activemask()

template <class T> static inline uint64_t mx_emu_bits(T v) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}
template <class T> static inline T mx_emu_from_bits(uint64_t u) {
    T v;
    memcpy(&v, &u, sizeof v);
    return v;
}
#define MX_EMU_SHUFFLE(fn, op)                                                                 \
    template <class T>                                                                         \
    static inline T mx_emu_##fn(unsigned mask, T v, int arg, int width, const char *file,      \
                                int line) {                                                    \
        return mx_emu_from_bits<T>(mx_emu_warp(op, mask, mx_emu_bits(v), arg, width, file,     \
                                               line));                                         \
    }
MX_EMU_SHUFFLE(shfl, MX_EMU_SHFL)
MX_EMU_SHUFFLE(shfl_up, MX_EMU_SHFL_UP)
MX_EMU_SHUFFLE(shfl_down, MX_EMU_SHFL_DOWN)
MX_EMU_SHUFFLE(shfl_xor, MX_EMU_SHFL_XOR)
#undef MX_EMU_SHUFFLE
/* width defaults to warpSize, as in CUDA: the helper takes the optional argument */
static inline int mx_emu_width(int w = 32) { return w; }
#define __shfl_sync(m, v, src, ...)                                                            \
    mx_emu_shfl((m), (v), (src), mx_emu_width(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_up_sync(m, v, d, ...)                                                           \
    mx_emu_shfl_up((m), (v), (int)(d), mx_emu_width(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_down_sync(m, v, d, ...)                                                         \
    mx_emu_shfl_down((m), (v), (int)(d), mx_emu_width(__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_xor_sync(m, v, lm, ...)                                                         \
    mx_emu_shfl_xor((m), (v), (int)(lm), mx_emu_width(__VA_ARGS__), __FILE__, __LINE__)
#define __ballot_sync(m, p)                                                                    \
    ((unsigned)mx_emu_warp(MX_EMU_BALLOT, (m), (p) != 0, 0, 32, __FILE__, __LINE__))
#define __any_sync(m, p) (__ballot_sync((m), (p)) != 0u)
#define __all_sync(m, p) (__ballot_sync((m), (p)) == (unsigned)(m))

/* ---- integer and float intrinsics ---------------------------------------------------------- */
static inline float __int_as_float(int i) { return mx_emu_from_bits<float>((uint32_t)i); }
static inline int __float_as_int(float f) { return (int)(uint32_t)mx_emu_bits(f); }
static inline float __uint_as_float(unsigned u) { return mx_emu_from_bits<float>(u); }
static inline unsigned __float_as_uint(float f) { return (unsigned)mx_emu_bits(f); }
static inline double __longlong_as_double(long long i) { return mx_emu_from_bits<double>((uint64_t)i); }
static inline long long __double_as_longlong(double d) { return (long long)mx_emu_bits(d); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __clzll(long long x) { return x ? __builtin_clzll((unsigned long long)x) : 64; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline unsigned __brev(unsigned x) {
    x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
    x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
    x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
    return __builtin_bswap32(x);
}
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    uint64_t v = (uint64_t)y << 32 | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++)
        r |= (unsigned)((v >> (8 * ((s >> (4 * i)) & 7))) & 0xff) << (8 * i);
    return r;
}
/* __dp4a: four signed (or unsigned) byte products summed into c */
static inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; i++)
        c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
}
static inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
    for (int i = 0; i < 4; i++)
        c += ((a >> (8 * i)) & 0xffu) * ((b >> (8 * i)) & 0xffu);
    return c;
}
static inline int __mul24(int a, int b) { return (int)((a << 8 >> 8) * (b << 8 >> 8)); }
static inline int __mulhi(int a, int b) { return (int)(((int64_t)a * b) >> 32); }
static inline unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
static inline unsigned __vabsdiffu4(unsigned a, unsigned b) {
    unsigned r = 0;
    for (int i = 0; i < 4; i++) {
        int x = (a >> (8 * i)) & 0xff, y = (b >> (8 * i)) & 0xff;
        r |= (unsigned)(x > y ? x - y : y - x) << (8 * i);
    }
    return r;
}

/* fast-math forms: the CPU computes them exactly (GPU error bounds are looser, so a test that
 * passes on the emulator has its tolerance set by the tests' own precision arguments) */
static inline float mx_emu_expf(float x) { return expf(x); }
static inline float mx_emu_exp10f(float x) { return powf(10.0f, x); }
static inline float mx_emu_logf(float x) { return logf(x); }
static inline float mx_emu_log2f(float x) { return log2f(x); }
static inline float mx_emu_powf(float x, float y) { return powf(x, y); }
static inline float mx_emu_sinf(float x) { return sinf(x); }
static inline float mx_emu_cosf(float x) { return cosf(x); }
static inline float mx_emu_tanf(float x) { return tanf(x); }
static inline void mx_emu_sincosf(float x, float *s, float *c) { *s = sinf(x); *c = cosf(x); }
static inline float mx_emu_fdividef(float a, float b) { return a / b; }
/* glibc declares some of these names itself: the device spellings are macros */
#define __expf mx_emu_expf
#define __exp10f mx_emu_exp10f
#define __logf mx_emu_logf
#define __log2f mx_emu_log2f
#define __powf mx_emu_powf
#define __sinf mx_emu_sinf
#define __cosf mx_emu_cosf
#define __tanf mx_emu_tanf
#define __sincosf mx_emu_sincosf
#define __fdividef mx_emu_fdividef
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __frsqrt_rn(float x) { return 1.0f / sqrtf(x); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
template <class T> static inline T __ldg(const T *p) { return *p; }
template <class T> static inline T __ldcs(const T *p) { return *p; }
template <class T> static inline void __stcs(T *p, T v) { *p = v; }

/* min/max over the mixed integer and float arguments device code passes */
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
static inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
static inline double min(double a, double b) { return fmin(a, b); }
static inline double max(double a, double b) { return fmax(a, b); }

/* atomics: plain read-modify-write (the emulator runs one thread at a time); they return the
 * old value as on the GPU */
template <class T> static inline T atomicAdd(T *p, T v) { T o = *p; *p = o + v; return o; }
template <class T> static inline T atomicSub(T *p, T v) { T o = *p; *p = o - v; return o; }
template <class T> static inline T atomicMax(T *p, T v) { T o = *p; *p = o > v ? o : v; return o; }
template <class T> static inline T atomicMin(T *p, T v) { T o = *p; *p = o < v ? o : v; return o; }
template <class T> static inline T atomicExch(T *p, T v) { T o = *p; *p = v; return o; }
template <class T> static inline T atomicAnd(T *p, T v) { T o = *p; *p = o & v; return o; }
template <class T> static inline T atomicOr(T *p, T v) { T o = *p; *p = o | v; return o; }
template <class T> static inline T atomicXor(T *p, T v) { T o = *p; *p = o ^ v; return o; }
template <class T> static inline T atomicCAS(T *p, T cmp, T v) {
    T o = *p;
    if (o == cmp)
        *p = v;
    return o;
}
static inline unsigned atomicInc(unsigned *p, unsigned lim) {
    unsigned o = *p;
    *p = o >= lim ? 0 : o + 1;
    return o;
}
static inline void __threadfence(void) {}
static inline void __threadfence_block(void) {}
static inline long long clock64(void) { return 0; }
static inline void __trap(void) { __builtin_trap(); }
static inline void __nanosleep(unsigned) {}

#endif
