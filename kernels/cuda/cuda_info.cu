/* cuda_info.cu - asks the CUDA runtime which devices answer, for backend choice and doctor. */
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" {
#include "kernels/devinfo.h"
}

extern "C" void mx_cuda_info_get(struct mx_cuda_info *info) {
    memset(info, 0, sizeof *info);
    info->compiled = true;
    cudaRuntimeGetVersion(&info->runtime_version);
    cudaError_t e = cudaDriverGetVersion(&info->driver_version);
    int n = 0;
    e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        snprintf(info->status, sizeof info->status, "no device answers: %s", cudaGetErrorString(e));
        return;
    }
    if (n > MX_MAX_CUDA_DEVICES)
        n = MX_MAX_CUDA_DEVICES;
    for (int i = 0; i < n; i++) {
        cudaDeviceProp p;
        if (cudaGetDeviceProperties(&p, i) != cudaSuccess)
            continue;
        struct mx_cuda_device *d = &info->dev[info->n_devices++];
        snprintf(d->name, sizeof d->name, "%.*s", (int)sizeof d->name - 1, p.name);
        d->total_mem = p.totalGlobalMem;
        d->cc_major = p.major;
        d->cc_minor = p.minor;
        int khz = 0, bits = 0;
        if (cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, i) == cudaSuccess &&
            cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, i) == cudaSuccess)
            d->mem_bw = 2.0 * khz * 1e3 * (bits / 8.0);
        size_t fr = 0, tot = 0;
        if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&fr, &tot) == cudaSuccess)
            d->free_mem = fr;
    }
    if (info->n_devices == 0)
        snprintf(info->status, sizeof info->status, "the CUDA runtime lists no usable device");
}
