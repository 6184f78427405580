/* sd_load_gguf.c - a Stable Diffusion GGUF as stable-diffusion.cpp's `sd-cli -M convert` writes
 * it, as canonical LDM-named tensors (see sd_model.h).
 *
 * sd.cpp converts every source's names to its internal ones before writing, and for SD 1.x/2.x
 * those are the LDM names (model.diffusion_model.*, first_stage_model.*,
 * cond_stage_model.transformer.text_model.*; an SD 2.x text encoder keeps OpenCLIP's fused
 * self_attn.in_proj and text_projection), shapes in ggml order, no metadata. Its
 * tensor_should_be_converted() quantizes every tensor whose row length is a multiple of the
 * block size except biases, time_embed.*, label_emb.* and embeddings: so 3x3/1x1 conv kernels
 * (rows of 3 or 1) stay F16, matrices are quantized, and so are norm weights of 320/640/...
 * values (mx_sd_add widens those to F32). alphas_cumprod stays F32 (1000 is no block multiple).
 * Ref: stable-diffusion.cpp src/model_loader.cpp tensor_should_be_converted, src/convert.cpp,
 * src/name_conversion.cpp (97d2990).
 */
#include <string.h>

#include "core/diffusion/sd_model_impl.h"

static void close_gguf(void *g) {
    mx_gguf_close(g);
}

int mx_sd_load_gguf(struct mx_sd_model *m, struct mx_gguf *g, struct mx_err *err) {
    int rc = mx_sd_own(m, g, close_gguf, err);
    if (rc < 0)
        return rc;
    const char *path = mx_gguf_path(g);
    int64_t nt = mx_gguf_n_tensors(g);
    if (nt <= 0)
        return mx_err_set(err, MX_EFORMAT, "%s: no tensors", path);
    const char *arch = NULL;
    if (mx_gguf_get_str(g, "general.architecture", &arch, NULL) == 0 && arch &&
        !mx_gguf_find_tensor(g, "model.diffusion_model.input_blocks.0.0.weight"))
        return mx_err_set(err, MX_EFORMAT, "%s: a GGUF of architecture \"%.40s\" (a language "
                          "model?), not a Stable Diffusion checkpoint", path, arch);
    const struct mx_gguf_tensor *t0 = mx_gguf_tensor(g, 0);
    const char *base = (const char *)t0->data - t0->offset;
    struct mx_buf *buf;
    if ((rc = mx_sd_wrap(m, base, mx_gguf_file_size(g) - mx_gguf_data_offset(g), &buf, err)) < 0)
        return rc;
    const struct mx_gguf_tensor *a = mx_gguf_find_tensor(g, "alphas_cumprod");
    if (a) {
        if (a->type != MX_TYPE_F32)
            return mx_err_set(err, MX_EFORMAT, "%s: alphas_cumprod has type %s, expected f32",
                              path, mx_type_name(a->type));
        if ((rc = mx_sd_set_alphas(m, a->data, MX_ST_F32, a->ne[0] * a->ne[1] * a->ne[2] *
                                   a->ne[3], "alphas_cumprod in the file", err)) < 0)
            return rc;
    }
    for (int64_t i = 0; i < nt; i++) {
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
        struct mx_sd_src src = {.file = path, .type = t->type, .host = t->data, .buf = buf,
                                .offset = t->offset};
        memcpy(src.ne, t->ne, sizeof src.ne);
        if ((rc = mx_sd_add(m, t->name, &src, err)) < 0)
            return rc;
    }
    return 0;
}
