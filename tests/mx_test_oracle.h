/* mx_test_oracle.h - oracles shared by the kernel tests (test_backend, test_repack): written
 * here from the ggml definitions, independent of the code under test. */
#ifndef MX_TEST_ORACLE_H
#define MX_TEST_ORACLE_H

#include <math.h>
#include <stdint.h>

#include "core/base/quant.h"
#include "core/base/util.h"

/* The tests' own ggml activation rounding for weights of type wtype (independent of kernels/cpu
 * and core/base/quant.c), in place: Q8_0 blocks with d = fp16(amax/127), q = rint(x * 127/amax);
 * Q8_K with iscale = -127/max(signed), d = 1/iscale; F16 / BF16 round trips. */
static inline void mx_test_round_act(enum mx_type wtype, float *x, int64_t n) {
    switch (wtype) {
    case MX_TYPE_F32:
        return;
    case MX_TYPE_F16:
        for (int64_t i = 0; i < n; i++)
            x[i] = mx_fp16_to_fp32(mx_fp32_to_fp16(x[i]));
        return;
    case MX_TYPE_BF16:
        for (int64_t i = 0; i < n; i++)
            x[i] = mx_bf16_to_fp32(mx_fp32_to_bf16(x[i]));
        return;
    case MX_TYPE_Q2_K: case MX_TYPE_Q3_K: case MX_TYPE_Q4_K: case MX_TYPE_Q5_K:
    case MX_TYPE_Q6_K:
        for (int64_t b = 0; b < n; b += 256) {
            float amax = 0, max = 0;
            for (int j = 0; j < 256; j++)
                if (fabsf(x[b + j]) > amax) {
                    amax = fabsf(x[b + j]);
                    max = x[b + j];
                }
            if (amax == 0)
                continue;
            float is = -127.0f / max;
            for (int j = 0; j < 256; j++) {
                float q = nearbyintf(is * x[b + j]);
                x[b + j] = fminf(q, 127.0f) * (1.0f / is);
            }
        }
        return;
    default: /* Q4_0, Q4_1, Q5_0, Q5_1, Q8_0: Q8_0/Q8_1 activations */
        for (int64_t b = 0; b < n; b += 32) {
            float amax = 0;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[b + j]));
            float d = mx_fp16_to_fp32(mx_fp32_to_fp16(amax / 127.0f));
            float id = amax != 0 ? 127.0f / amax : 0;
            for (int j = 0; j < 32; j++)
                x[b + j] = nearbyintf(x[b + j] * id) * d;
        }
        return;
    }
}

#endif
