/* kernels.c - run-time choice of the CPU's row kernels: the scalar ones always, the AVX2+FMA+F16C
 * ones (kernels_avx2.c, built with those flags) when configure could compile them and the CPU
 * reports the features, so one binary runs on any x86-64. */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gemm_iq.h"
#include "kernels/cpu/kernels_iq.h"

#include <string.h>

#include "config.h"
#include "kernels/devinfo.h"

/* Plain sequential f32 dot: the reference summation order. */
static float dot_f32_scalar(int64_t n, const float *a, const float *b) {
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void mx_cpu_kernels_init(struct mx_cpu_kernels *k, int max_level) {
    memset(k, 0, sizeof *k);
    k->name = "scalar";
    k->dot_f32 = dot_f32_scalar;
    if (max_level > MX_CPU_SCALAR) /* sgemm is not ours, but level 0 means the reference set */
        k->conv2d = mx_cpu_conv2d_gemm;
    if (max_level > MX_CPU_SCALAR) /* integer dots of the IQ types (ggml's numbers) */
        mx_cpu_kernels_iq(k);
#ifdef HAVE_AVX2_BUILD
    struct mx_cpu_info ci;
    mx_cpu_info_get(&ci);
    int level = MX_CPU_SCALAR;
    if (max_level >= MX_CPU_AVX2 && ci.avx2 && ci.fma && ci.f16c) {
        mx_cpu_kernels_avx2(k);
        mx_cpu_kernels_iq_avx2(k);
        mx_cpu_kernels_gemm_iq_avx2(k);
        level = MX_CPU_AVX2;
#ifdef HAVE_AVX512VNNI_BUILD
        if (max_level >= MX_CPU_AVX512 && ci.avx512f && ci.avx512vl && ci.avx512bw &&
            ci.avx512vnni) {
            mx_cpu_kernels_avx512(k);
            mx_cpu_kernels_iq_avx512(k);
            mx_cpu_attn_avx512(k);
            mx_cpu_kernels_gemm_iq_avx512(k);
            level = MX_CPU_AVX512;
        }
#endif
    }
    mx_cpu_kernels_mxfp4(k, level);
#else
    mx_cpu_kernels_mxfp4(k, MX_CPU_SCALAR);
#endif
}
