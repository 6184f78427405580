/* emu_runtime.cc - the emulator's CUDA runtime API: one device ("mixel CUDA emulator"), device
 * memory on the heap (so ASan sees a kernel's out-of-bounds access), synchronous streams and
 * events, errors with the emulator's detailed message, and stream capture into graphs that
 * replay the recorded closures. The cuda* functions behave as the CUDA Runtime API documents
 * them, on one device; a comment says where they differ or what they check beyond it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <map>
#include <mutex>
#include <vector>

#include <cuda_runtime.h>
#include "kernels/cuda/emu/emu_internal.h"

/* a stream: synchronous; while capturing, its work goes into graph */
struct mx_emu_stream {
    mx_emu_graph *capture;
    bool invalidated; /* a forbidden call happened during the capture */
};
/* an event: the time it was recorded (work before it has run: streams are synchronous) */
struct mx_emu_event {
    bool recorded;
    double ms;
};
/* a graph: the recorded work in order */
struct mx_emu_graph {
    std::vector<std::function<cudaError_t()>> ops;
};
/* an instantiated graph: its own copy of the work */
struct mx_emu_graph_exec {
    std::vector<std::function<cudaError_t()>> ops;
};

namespace {

std::recursive_mutex mu;              /* the tables below */
std::map<uintptr_t, size_t> dev_mem;  /* cudaMalloc'd ranges */
std::map<uintptr_t, size_t> host_mem; /* pinned or registered host ranges */
size_t dev_used;
cudaError_t last_err = cudaSuccess, sticky_err = cudaSuccess;
char last_msg[600];
cudaError_t msg_err = cudaSuccess; /* the error last_msg describes */
int n_capturing;
mx_emu_stream default_stream = {NULL, false};
const size_t DEFAULT_VRAM = (size_t)8 << 30;

mx_emu_stream *stream_of(cudaStream_t s) {
    return s ? s : &default_stream;
}

/* The emulated device's memory: MIXEL_VRAM_AVAILABLE (bytes) or 8 GiB. */
size_t vram_total() {
    const char *e = getenv("MIXEL_VRAM_AVAILABLE");
    if (e && *e) {
        unsigned long long v = strtoull(e, NULL, 10);
        if (v > 0)
            return (size_t)v;
    }
    return DEFAULT_VRAM;
}

double now_ms() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

bool in_map(const std::map<uintptr_t, size_t> &m, uintptr_t p, size_t n) {
    auto it = m.upper_bound(p);
    if (it == m.begin())
        return false;
    --it;
    return p >= it->first && p - it->first <= it->second && n <= it->second - (p - it->first);
}

/* A synchronous call while a capture runs: invalidates it, as CUDA does. */
cudaError_t refuse_in_capture() {
    if (n_capturing == 0)
        return cudaSuccess;
    mx_emu_set_error(cudaErrorStreamCaptureUnsupported,
                     "a synchronous CUDA call while a stream captures a graph", false);
    return cudaErrorStreamCaptureUnsupported;
}

/* Both ends of a copy of n bytes of kind k are memory the device may touch. */
cudaError_t check_copy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
    bool dd = k == cudaMemcpyHostToDevice || k == cudaMemcpyDeviceToDevice;
    bool sd = k == cudaMemcpyDeviceToHost || k == cudaMemcpyDeviceToDevice;
    char msg[200];
    if (n == 0)
        return cudaSuccess;
    if ((dd && !mx_emu_device_range(dst, n)) || (sd && !mx_emu_device_range(src, n))) {
        snprintf(msg, sizeof msg, "cudaMemcpy of %zu bytes: the %s range is not inside one "
                                  "device allocation", n,
                 dd && !mx_emu_device_range(dst, n) ? "destination" : "source");
        mx_emu_set_error(cudaErrorInvalidValue, msg, false);
        return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

} // namespace

void mx_emu_set_error(cudaError_t e, const char *msg, bool sticky) {
    std::lock_guard<std::recursive_mutex> l(mu);
    last_err = e;
    if (sticky && sticky_err == cudaSuccess)
        sticky_err = e;
    msg_err = e;
    snprintf(last_msg, sizeof last_msg, "%s", msg);
}

bool mx_emu_device_range(const void *p, size_t n) {
    std::lock_guard<std::recursive_mutex> l(mu);
    return in_map(dev_mem, (uintptr_t)p, n) || in_map(host_mem, (uintptr_t)p, n);
}

const char *mx_emu_last_message() {
    return last_msg;
}

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    }
    return "cudaErrorUnknown";
}

/* The generic text, or the emulator's message (kernel name and cause) for the error it last
 * detected: the backend's messages then name the failing kernel. */
const char *cudaGetErrorString(cudaError_t e) {
    static thread_local char buf[700];
    std::lock_guard<std::recursive_mutex> l(mu);
    if (e != cudaSuccess && last_msg[0] && e == msg_err) {
        snprintf(buf, sizeof buf, "%s (mixel CUDA emulator: %s)", cudaGetErrorName(e), last_msg);
        return buf;
    }
    return cudaGetErrorName(e);
}

cudaError_t cudaGetLastError() {
    std::lock_guard<std::recursive_mutex> l(mu);
    cudaError_t e = last_err != cudaSuccess ? last_err : sticky_err;
    last_err = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError() {
    std::lock_guard<std::recursive_mutex> l(mu);
    return last_err != cudaSuccess ? last_err : sticky_err;
}

cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
    return d == 0 ? cudaSuccess : cudaErrorInvalidDevice;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (d != 0)
        return cudaErrorInvalidDevice;
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "mixel CUDA emulator");
    p->totalGlobalMem = vram_total();
    p->sharedMemPerBlock = 48 << 10;
    p->sharedMemPerBlockOptin = MX_EMU_SMEM_OPTIN;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff;
    p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->clockRate = 1000000;
    p->major = 8;
    p->minor = 0;
    p->multiProcessorCount = 1;
    p->memoryClockRate = 1000000; /* kHz: 2 * 1 GHz * 32 bytes = 64 GB/s, a made-up figure */
    p->memoryBusWidth = 256;
    p->l2CacheSize = 1 << 20;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int d) {
    cudaDeviceProp p;
    cudaError_t e = cudaGetDeviceProperties(&p, d);
    if (e != cudaSuccess)
        return e;
    switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *v = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxGridDimX: *v = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *v = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *v = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)p.sharedMemPerBlockOptin; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrClockRate: *v = p.clockRate; break;
    case cudaDevAttrMultiProcessorCount: *v = p.multiProcessorCount; break;
    case cudaDevAttrMemoryClockRate: *v = p.memoryClockRate; break;
    case cudaDevAttrGlobalMemoryBusWidth: *v = p.memoryBusWidth; break;
    case cudaDevAttrL2CacheSize: *v = p.l2CacheSize; break;
    case cudaDevAttrComputeCapabilityMajor: *v = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *v = p.minor; break;
    default: return cudaErrorInvalidValue;
    }
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
    cudaError_t e = refuse_in_capture();
    if (e != cudaSuccess)
        return e;
    std::lock_guard<std::recursive_mutex> l(mu);
    return sticky_err;
}

/* Clears the errors (a sticky one too); memory stays allocated (the tests free theirs). */
cudaError_t cudaDeviceReset() {
    std::lock_guard<std::recursive_mutex> l(mu);
    last_err = sticky_err = msg_err = cudaSuccess;
    last_msg[0] = 0;
    return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int *v) {
    *v = 12040; /* the API level these headers follow */
    return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int *v) {
    *v = 12040;
    return cudaSuccess;
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total) {
    std::lock_guard<std::recursive_mutex> l(mu);
    size_t t = vram_total();
    *total = t;
    *free_bytes = dev_used < t ? t - dev_used : 0;
    return cudaSuccess;
}

/* ---- memory --------------------------------------------------------------------------------- */

cudaError_t cudaMalloc(void **p, size_t n) {
    std::lock_guard<std::recursive_mutex> l(mu);
    *p = NULL;
    if (sticky_err != cudaSuccess)
        return sticky_err;
    if (n == 0)
        return cudaSuccess;
    if (n > vram_total() - (dev_used < vram_total() ? dev_used : vram_total())) {
        char msg[160];
        snprintf(msg, sizeof msg, "cudaMalloc of %zu bytes: %zu of %zu bytes in use", n, dev_used,
                 vram_total());
        mx_emu_set_error(cudaErrorMemoryAllocation, msg, false);
        return cudaErrorMemoryAllocation;
    }
    /* exactly n bytes, 256-aligned as cudaMalloc promises: ASan's redzone starts at byte n */
    void *q = NULL;
    if (posix_memalign(&q, 256, n) != 0) {
        mx_emu_set_error(cudaErrorMemoryAllocation, "cudaMalloc: the host heap is full", false);
        return cudaErrorMemoryAllocation;
    }
    memset(q, 0xcd, n); /* VRAM is not zeroed: neither is this */
    dev_mem[(uintptr_t)q] = n;
    dev_used += n;
    *p = q;
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p)
        return cudaSuccess;
    std::lock_guard<std::recursive_mutex> l(mu);
    auto it = dev_mem.find((uintptr_t)p);
    if (it == dev_mem.end()) {
        mx_emu_set_error(cudaErrorInvalidValue, "cudaFree of a pointer cudaMalloc did not return",
                         false);
        return cudaErrorInvalidValue;
    }
    dev_used -= it->second;
    dev_mem.erase(it);
    free(p);
    return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **p, size_t n, unsigned flags) {
    (void)flags;
    std::lock_guard<std::recursive_mutex> l(mu);
    *p = malloc(n ? n : 1);
    if (!*p)
        return cudaErrorMemoryAllocation;
    host_mem[(uintptr_t)*p] = n;
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t n) {
    return cudaHostAlloc(p, n, 0);
}
cudaError_t cudaFreeHost(void *p) {
    if (!p)
        return cudaSuccess;
    std::lock_guard<std::recursive_mutex> l(mu);
    auto it = host_mem.find((uintptr_t)p);
    if (it == host_mem.end())
        return cudaErrorInvalidValue;
    host_mem.erase(it);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaHostRegister(void *p, size_t n, unsigned flags) {
    (void)flags;
    std::lock_guard<std::recursive_mutex> l(mu);
    if (!p || !n)
        return cudaErrorInvalidValue;
    host_mem[(uintptr_t)p] = n;
    return cudaSuccess;
}
cudaError_t cudaHostUnregister(void *p) {
    std::lock_guard<std::recursive_mutex> l(mu);
    return host_mem.erase((uintptr_t)p) ? cudaSuccess : cudaErrorInvalidValue;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, cudaMemcpyKind k) {
    cudaError_t e = refuse_in_capture();
    if (e == cudaSuccess)
        e = check_copy(dst, src, n, k);
    if (e != cudaSuccess)
        return e;
    if (sticky_err != cudaSuccess)
        return sticky_err;
    if (n)
        memcpy(dst, src, n); /* overlapping ranges are undefined in CUDA too: ASan reports them */
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind k,
                            cudaStream_t s) {
    cudaError_t e = check_copy(dst, src, n, k);
    if (e != cudaSuccess)
        return e;
    return mx_emu_enqueue(s, [dst, src, n]() {
        if (n)
            memcpy(dst, src, n);
        return cudaSuccess;
    });
}

cudaError_t cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind k, cudaStream_t s) {
    if (width > dpitch || width > spitch)
        return cudaErrorInvalidValue;
    for (size_t r = 0; r < height; r++) {
        cudaError_t e = check_copy((char *)dst + r * dpitch, (const char *)src + r * spitch,
                                   width, k);
        if (e != cudaSuccess)
            return e;
    }
    return mx_emu_enqueue(s, [=]() {
        for (size_t r = 0; r < height; r++)
            memcpy((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
        return cudaSuccess;
    });
}

cudaError_t cudaMemset(void *p, int v, size_t n) {
    cudaError_t e = refuse_in_capture();
    if (e == cudaSuccess)
        e = check_copy(p, NULL, n, cudaMemcpyHostToDevice);
    if (e != cudaSuccess)
        return e;
    if (sticky_err != cudaSuccess)
        return sticky_err;
    memset(p, v, n);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int v, size_t n, cudaStream_t s) {
    cudaError_t e = check_copy(p, NULL, n, cudaMemcpyHostToDevice);
    if (e != cudaSuccess)
        return e;
    return mx_emu_enqueue(s, [p, v, n]() {
        memset(p, v, n);
        return cudaSuccess;
    });
}

/* ---- streams, events, launches ---------------------------------------------------------------- */

cudaError_t mx_emu_enqueue(cudaStream_t s, std::function<cudaError_t()> op) {
    mx_emu_stream *st = stream_of(s);
    {
        std::lock_guard<std::recursive_mutex> l(mu);
        if (sticky_err != cudaSuccess)
            return sticky_err;
        if (st->capture) {
            st->capture->ops.push_back(std::move(op));
            return cudaSuccess;
        }
    }
    return op();
}

void mx_emu_launch(const char *name, const void *fn, dim3 grid, dim3 block, size_t smem,
                   cudaStream_t s, std::function<void()> body) {
    cudaError_t e = mx_emu_enqueue(s, [name, fn, grid, block, smem, body]() {
        return mx_emu_run_grid(name, fn, grid, block, smem, body);
    });
    /* mx_emu_run_grid recorded its own error; a sticky one from before stays visible */
    (void)e;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    (void)flags;
    *s = new mx_emu_stream{NULL, false};
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) {
    return cudaStreamCreateWithFlags(s, 0);
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (!s)
        return cudaErrorInvalidResourceHandle;
    if (s->capture) {
        n_capturing--;
        delete s->capture;
    }
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    mx_emu_stream *st = stream_of(s);
    std::lock_guard<std::recursive_mutex> l(mu);
    if (st->capture) {
        st->invalidated = true;
        mx_emu_set_error(cudaErrorStreamCaptureUnsupported,
                         "cudaStreamSynchronize on a stream that captures a graph", false);
        return cudaErrorStreamCaptureUnsupported;
    }
    return sticky_err;
}
cudaError_t cudaStreamQuery(cudaStream_t s) {
    (void)s;
    return sticky_err;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags) {
    (void)s;
    (void)e;
    (void)flags;
    return sticky_err; /* everything before the event has run already */
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    (void)flags;
    *e = new mx_emu_event{false, 0};
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    return cudaEventCreateWithFlags(e, 0);
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
    if (!e)
        return cudaErrorInvalidResourceHandle;
    return mx_emu_enqueue(s, [e]() {
        e->recorded = true;
        e->ms = now_ms();
        return cudaSuccess;
    });
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    return e && e->recorded ? sticky_err : cudaErrorInvalidResourceHandle;
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
    return e && e->recorded ? cudaSuccess : cudaErrorNotReady;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    if (!a || !b || !a->recorded || !b->recorded)
        return cudaErrorInvalidResourceHandle;
    *ms = (float)(b->ms - a->ms);
    return cudaSuccess;
}

/* ---- graphs --------------------------------------------------------------------------------- */

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    (void)mode;
    std::lock_guard<std::recursive_mutex> l(mu);
    if (!s) /* the legacy default stream cannot capture */
        return cudaErrorStreamCaptureUnsupported;
    if (s->capture)
        return cudaErrorIllegalState;
    s->capture = new mx_emu_graph;
    s->invalidated = false;
    n_capturing++;
    return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    std::lock_guard<std::recursive_mutex> l(mu);
    *g = NULL;
    if (!s || !s->capture)
        return cudaErrorIllegalState;
    n_capturing--;
    mx_emu_graph *gr = s->capture;
    s->capture = NULL;
    if (s->invalidated) {
        delete gr;
        return cudaErrorStreamCaptureInvalidated;
    }
    *g = gr;
    return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *st) {
    mx_emu_stream *x = stream_of(s);
    *st = !x->capture ? cudaStreamCaptureStatusNone
                      : x->invalidated ? cudaStreamCaptureStatusInvalidated
                                       : cudaStreamCaptureStatusActive;
    return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t *x, cudaGraph_t g, unsigned long long flags) {
    (void)flags;
    if (!g)
        return cudaErrorInvalidValue;
    *x = new mx_emu_graph_exec{g->ops};
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiateWithFlags(cudaGraphExec_t *x, cudaGraph_t g,
                                          unsigned long long flags) {
    return cudaGraphInstantiate(x, g, flags);
}

/* Replays the recorded work in order; the first failing piece stops it. */
cudaError_t cudaGraphLaunch(cudaGraphExec_t x, cudaStream_t s) {
    if (!x)
        return cudaErrorInvalidResourceHandle;
    return mx_emu_enqueue(s, [x]() {
        for (auto &op : x->ops) {
            cudaError_t e = op();
            if (e != cudaSuccess)
                return e;
        }
        return cudaSuccess;
    });
}
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t x, cudaGraph_t g,
                                cudaGraphExecUpdateResultInfo *info) {
    if (!x || !g)
        return cudaErrorInvalidValue;
    x->ops = g->ops;
    if (info)
        memset(info, 0, sizeof *info);
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t x) {
    delete x;
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t *nodes, size_t *n) {
    if (!g || !n)
        return cudaErrorInvalidValue;
    if (nodes) /* the emulator has no node objects to hand out */
        return cudaErrorInvalidValue;
    *n = g->ops.size();
    return cudaSuccess;
}
