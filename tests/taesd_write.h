/* taesd_write.h - writes a random-weight TAESD decoder with the exact key names and shapes of
 * madebyollin's taesd_decoder.safetensors ("1.weight" .. "19.bias": the Sequential's indices,
 * the clamp at 0) or of the diffusers AutoencoderTiny ("decoder.layers.0.weight" ..), for the
 * TAESD tests (test_taesd.c, sd_preview_tool.c). Weights ~ N(0, 1/fan_in) scaled so the
 * activations stay near unit size; biases 0.05 x N(0, 1). */
#ifndef MX_TEST_TAESD_WRITE_H
#define MX_TEST_TAESD_WRITE_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/err.h"
#include "core/base/util.h"
#include "core/format/safetensors.h"
#include "tests/mx_test.h"

/* A standard normal draw (Box-Muller over mx_test_randf). */
static inline float taesd_test_normal(uint64_t *s) {
    float u1 = mx_test_randf(s) * 0.5f + 0.5f, u2 = mx_test_randf(s) * 0.5f + 0.5f;
    if (u1 < 1e-7f)
        u1 = 1e-7f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

/* One tensor of n random values (scale) under name into w. */
static inline int taesd_test_add(struct mx_st_writer *w, const char *name, int n_dims,
                                 const int64_t *shape, float scale, bool f16, uint64_t *s) {
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++)
        n *= shape[i];
    float *v = malloc((size_t)n * sizeof *v);
    uint16_t *h = malloc((size_t)n * sizeof *h);
    if (!v || !h) {
        free(v);
        free(h);
        return MX_ENOMEM;
    }
    for (int64_t i = 0; i < n; i++)
        v[i] = scale * taesd_test_normal(s);
    int rc;
    if (f16) {
        for (int64_t i = 0; i < n; i++)
            h[i] = mx_fp32_to_fp16(v[i]);
        rc = mx_st_writer_add_tensor(w, name, MX_ST_F16, n_dims, shape, h);
    } else {
        rc = mx_st_writer_add_tensor(w, name, MX_ST_F32, n_dims, shape, v);
    }
    free(v);
    free(h);
    return rc;
}

/* Writes the decoder to path: diffusers layout or madebyollin's, F16 or F32, from seed. With
 * skip (a name) that tensor is left out; with bad_shape that tensor gets cout 32 instead. */
static inline int taesd_test_write(const char *path, bool diffusers, bool f16, uint64_t seed,
                                   const char *skip, const char *bad_shape, struct mx_err *err) {
    struct mx_st_writer *w = mx_st_writer_new();
    if (!w)
        return MX_ENOMEM;
    uint64_t s = seed;
    const char *pre = diffusers ? "decoder.layers." : "";
    int off = diffusers ? 0 : 1;
    /* diffusers indices: conv 0, blocks 2-4, conv 6, blocks 7-9, conv 11, blocks 12-14, conv 16,
     * block 17, conv 18 */
    static const int convs[5] = {0, 6, 11, 16, 18};
    static const int blocks[10] = {2, 3, 4, 7, 8, 9, 12, 13, 14, 17};
    int rc = 0;
    char name[96];
    for (int i = 0; i < 5 && rc == 0; i++) {
        int64_t cin = i == 0 ? 4 : 64, cout = i == 4 ? 3 : 64;
        bool bias = i == 0 || i == 4;
        snprintf(name, sizeof name, "%s%d.weight", pre, convs[i] + off);
        int64_t shape[4] = {cout, cin, 3, 3};
        if (bad_shape && !strcmp(bad_shape, name))
            shape[0] = 32;
        /* the up convs carry the signal on: a little above He's scale */
        float sc = 1.2f / sqrtf((float)(cin * 9));
        if (!(skip && !strcmp(skip, name)))
            rc = taesd_test_add(w, name, 4, shape, sc, f16, &s);
        if (rc == 0 && bias) {
            snprintf(name, sizeof name, "%s%d.bias", pre, convs[i] + off);
            if (!(skip && !strcmp(skip, name)))
                rc = taesd_test_add(w, name, 1, (int64_t[]){cout}, 0.05f, f16, &s);
        }
    }
    for (int b = 0; b < 10 && rc == 0; b++)
        for (int k = 0; k < 3 && rc == 0; k++) {
            snprintf(name, sizeof name, "%s%d.conv.%d.weight", pre, blocks[b] + off, 2 * k);
            int64_t shape[4] = {64, 64, 3, 3};
            if (bad_shape && !strcmp(bad_shape, name))
                shape[0] = 32;
            if (!(skip && !strcmp(skip, name)))
                rc = taesd_test_add(w, name, 4, shape, 0.5f / sqrtf(64.0f * 9.0f), f16, &s);
            snprintf(name, sizeof name, "%s%d.conv.%d.bias", pre, blocks[b] + off, 2 * k);
            if (rc == 0 && !(skip && !strcmp(skip, name)))
                rc = taesd_test_add(w, name, 1, (int64_t[]){64}, 0.05f, f16, &s);
        }
    if (rc == 0 && diffusers) /* the encoder a full AutoencoderTiny file holds: ignored */
        rc = taesd_test_add(w, "encoder.layers.0.weight", 4, (int64_t[]){64, 3, 3, 3}, 0.1f, f16,
                            &s);
    if (rc == 0)
        rc = mx_st_writer_write(w, path, err);
    mx_st_writer_free(w);
    return rc;
}

#endif
