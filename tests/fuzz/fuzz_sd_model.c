/* fuzz_sd_model.c - libFuzzer target for the Stable Diffusion checkpoint loader
 * (core/diffusion/sd_model.h) over its in-memory path: a safetensors or GGUF image is opened
 * without a backend (host tensors). Either a clean error with a one-line message and nothing
 * left allocated (ASan/LSan), or a model whose every tensor's bytes can be read in full (first
 * and last byte touched under ASan), whose lookups agree with its table, and whose facts are
 * consistent. Built by `make check-fuzz` (tests/fuzz/fuzz.am); seeds from make_sd_seeds.py. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/sd_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct mx_sd_model *m = NULL;
    struct mx_err err = {0};
    struct mx_sd_open_opts o = {.prediction = -1};
    int rc = mx_sd_model_open_mem(NULL, data, size, "fuzz.ckpt", &o, &m, &err);
    if (rc < 0) {
        if (m || err.code != rc || !err.msg[0] || strchr(err.msg, '\n'))
            abort();
        return 0;
    }
    int64_t n = mx_sd_n_weights(m), total = 0;
    for (int64_t i = 0; i < n; i++) {
        const struct mx_tensor *t = mx_sd_weight_at(m, i);
        if (!t || mx_sd_weight(m, t->name) != t)
            abort();
        if (i > 0 && strcmp(mx_sd_weight_at(m, i - 1)->name, t->name) >= 0)
            abort();
        size_t nb = mx_tensor_nbytes(t);
        if (nb) {
            const uint8_t *p = t->data;
            sink += p[0] + p[nb - 1];
        }
        total += mx_tensor_nelements(t);
    }
    if (total != m->n_params || m->n_params_unet + m->n_params_vae + m->n_params_text != total)
        abort();
    if ((m->family != MX_SD_FAMILY_SD1 && m->family != MX_SD_FAMILY_SD2) ||
        (m->unet_in_channels != 4 && m->unet_in_channels != 9) || !m->prediction_source ||
        !m->schedule_source)
        abort();
    for (int i = 0; i < MX_SD_TRAIN_STEPS; i++)
        if (!(m->alphas_cumprod[i] > 0.0f && m->alphas_cumprod[i] < 1.0f))
            abort();
    const struct mx_tensor *w;
    (void)mx_sd_need(m, &w, (int64_t[4]){3, 3, -1, -1}, NULL,
                     "model.diffusion_model.input_blocks.%d.0.weight", 0);
    (void)mx_sd_require(m, MX_SD_PART_UNET | MX_SD_PART_VAE | MX_SD_PART_TEXT, NULL);
    mx_sd_model_close(m);
    return 0;
}
