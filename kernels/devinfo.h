/* devinfo.h - what the machine offers the backends: CPU SIMD features (detected at run time, so
 * one binary runs everywhere), the BLAS library, and CUDA devices. Used by backend selection and
 * by `mixel doctor`. */
#ifndef MX_DEVINFO_H
#define MX_DEVINFO_H

#include <stdbool.h>
#include <stddef.h>

struct mx_cpu_info {
    char model[128];     /* "AMD EPYC 7B13" from /proc/cpuinfo or CPUID brand string */
    int n_logical;       /* online logical CPUs */
    int n_physical;      /* physical cores (threads default); n_logical when unknown */
    bool sse3, ssse3, avx, avx2, fma, f16c, avx512f, avx512bw, avx512vnni, avx_vnni, neon;
    bool avx512vl;       /* AVX-512 on 256-bit registers (what the VNNI kernels use) */
};

/* Fills *info from CPUID (x86) / hwcaps (ARM) and /proc. Never fails; unknown fields stay 0. */
void mx_cpu_info_get(struct mx_cpu_info *info);

/* Writes "AVX2 FMA F16C ..." (the detected features, space separated) into buf. */
void mx_cpu_features_str(const struct mx_cpu_info *info, char *buf, size_t size);

struct mx_blas_info {
    char config[256];    /* OpenBLAS build string: version, target core, threading model */
    char core[64];       /* the core kernel OpenBLAS picked at run time ("Haswell") */
    int n_threads;       /* OpenBLAS thread count */
};

void mx_blas_info_get(struct mx_blas_info *info);

#define MX_MAX_CUDA_DEVICES 16

struct mx_cuda_device {
    char name[128];
    size_t total_mem;    /* bytes */
    size_t free_mem;     /* bytes, when queried */
    int cc_major, cc_minor;
    double mem_bw;       /* peak memory bandwidth, bytes/s (memory clock x bus width x 2, DDR);
                          * 0 if the runtime does not say */
};

struct mx_cuda_info {
    bool compiled;       /* the CUDA backend is in this binary */
    int runtime_version; /* cudart version, 0 if unknown */
    int driver_version;  /* 0 when no driver answers */
    int n_devices;
    struct mx_cuda_device dev[MX_MAX_CUDA_DEVICES];
    char status[160];    /* why no device answered ("no CUDA driver"), empty if some did */
};

/* Queries the CUDA runtime for devices. Never fails: without CUDA or a driver, n_devices = 0 and
 * status says why. */
void mx_cuda_info_get(struct mx_cuda_info *info);

#endif
