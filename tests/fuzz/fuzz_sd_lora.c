/* fuzz_sd_lora.c - libFuzzer target for the LoRA reader (core/diffusion/sd_lora.h) over its
 * in-memory path: the input is a LoRA .safetensors image, opened on a tiny SD 1.x checkpoint
 * built once here (conv_in, one cross-attention to_k, a text encoder q_proj; host tensors).
 * Either a clean error (one-line message, nothing returned, nothing leaked under LSan) or a LoRA
 * whose every module names a weight of the model; it is then applied at two weights and undone,
 * and the table must be back to the stored tensors exactly. Built by `make check-fuzz`. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/sd_lora.h"
#include "core/diffusion/sd_model.h"
#include "core/format/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mx_sd_model *model;
static void *model_buf;

static void add(struct mx_st_writer *w, const char *name, int nd, int64_t a, int64_t b,
                int64_t c, int64_t d) {
    int64_t shape[4] = {a, b, c, d}, n = 1;
    for (int i = 0; i < nd; i++)
        n *= shape[i];
    float *v = calloc((size_t)n, sizeof *v);
    for (int64_t i = 0; v && i < n; i++)
        v[i] = (float)((i * 7) % 13) / 13.0f - 0.5f;
    if (!v || mx_st_writer_add_tensor(w, name, MX_ST_F32, nd, shape, v) != 0)
        abort();
    free(v);
}

static void init(void) {
    if (model)
        return;
    struct mx_st_writer *w = mx_st_writer_new();
    add(w, "model.diffusion_model.input_blocks.0.0.weight", 4, 8, 4, 3, 3);
    add(w, "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight", 2,
        8, 768, 1, 1);
    add(w, "model.diffusion_model.out.2.weight", 4, 4, 8, 3, 3);
    add(w, "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight", 2, 4,
        768, 1, 1);
    add(w, "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
        2, 768, 768, 1, 1);
    size_t n;
    if (mx_st_writer_write_mem(w, &model_buf, &n, NULL) != 0 ||
        mx_sd_model_open_mem(NULL, model_buf, n, "tiny", NULL, &model, NULL) != 0)
        abort();
    mx_st_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init();
    struct mx_sd_lora *l = NULL;
    struct mx_err err = {0};
    int rc = mx_sd_lora_open_mem(model, data, size, "fuzz.lora", &l, &err);
    if (rc < 0) {
        if (l || err.code != rc || !err.msg[0] || strchr(err.msg, '\n'))
            abort();
        return 0;
    }
    int n = mx_sd_lora_n_modules(l);
    if (n < 1)
        abort();
    struct mx_tensor before[8];
    const char *names[8];
    int nb = 0;
    for (int i = 0; i < n; i++) {
        const struct mx_tensor *t = mx_sd_weight(model, mx_sd_lora_target(l, i));
        if (!t)
            abort();
        if (nb < 8)
            names[nb] = t->name, before[nb++] = *t;
    }
    struct mx_sd_lora_state *s = mx_sd_lora_state_new();
    struct mx_sd_lora_use u[2] = {{l, 0.5f, -1.0f}, {l, 2.0f, 0.0f}};
    if (!s || mx_sd_lora_apply(model, s, u, 2, &err) != 0 ||
        mx_sd_lora_apply(model, s, u + 1, 1, &err) != 0)
        abort();
    mx_sd_lora_state_free(model, s);
    for (int i = 0; i < nb; i++)
        if (memcmp(mx_sd_weight(model, names[i]), &before[i], sizeof before[i]) != 0)
            abort();
    mx_sd_lora_close(l);
    return 0;
}
