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
 *
 * NAMES: `-M convert` keeps the source's names unless --convert-name is given, only adding a
 * prefix to files that came without one: a single file keeps its LDM (and, for SD 2.x, OpenCLIP
 * cond_stage_model.model.*) names; a diffusers folder becomes unet.<diffusers UNet name>,
 * vae.<diffusers VAE name>, te.text_model.*; a --vae file vae.<its names>. With --convert-name
 * everything is already LDM (an SD 2.x text encoder in HF names with a fused in_proj). All of
 * these are mapped here; sd_model.c does the rest (OpenCLIP, in_proj, the VAE's linear attention
 * projections, which sd.cpp quantizes when they come from diffusers: widened to F32).
 * Ref: stable-diffusion.cpp src/model_loader.cpp tensor_should_be_converted,
 * init_from_diffusers_file, src/convert.cpp, src/name_conversion.cpp (97d2990).
 */
#include <stdio.h>
#include <string.h>

#include "core/diffusion/sd_model_impl.h"

static void close_gguf(void *g) {
    mx_gguf_close(g);
}

/* Layout facts of a converted diffusers folder, read off the tensor names. */
struct layout {
    bool up_attn[8];  /* unet.up_blocks.L has attentions */
    int n_up;         /* vae.decoder.up_blocks count */
    bool vae_diffusers; /* the vae.* tensors have diffusers names */
};

static void read_layout(const struct mx_gguf *g, struct layout *l) {
    char key[96];
    memset(l, 0, sizeof *l);
    for (int L = 0; L < 8; L++) {
        snprintf(key, sizeof key, "unet.up_blocks.%d.attentions.0.proj_in.weight", L);
        l->up_attn[L] = mx_gguf_find_tensor(g, key) != NULL;
    }
    while (l->n_up < 8 && (snprintf(key, sizeof key, "vae.decoder.up_blocks.%d.resnets.0.conv1."
                                    "weight", l->n_up), mx_gguf_find_tensor(g, key)))
        l->n_up++;
    l->vae_diffusers = l->n_up > 0;
}

/* The name mx_sd_add understands for a tensor of the file (see NAMES); false: unknown. */
static bool map_name(const char *name, const struct layout *l, char *out, size_t size) {
    size_t np;
    if (!strncmp(name, "unet.", 5)) {
        np = (size_t)snprintf(out, size, "model.diffusion_model.");
        return mx_sd_diffusers_unet_name(name + 5, 2, l->up_attn, out + np, size - np);
    }
    if (!strncmp(name, "vae.", 4)) {
        const char *r = name + 4;
        np = (size_t)snprintf(out, size, "first_stage_model.");
        if (l->vae_diffusers)
            return mx_sd_diffusers_vae_name(r, l->n_up, out + np, size - np);
        if (!strncmp(r, "first_stage_model.", 18))
            r += 18;
        return (size_t)snprintf(out + np, size - np, "%s", r) < size - np;
    }
    if (!strncmp(name, "te.", 3))
        return (size_t)snprintf(out, size, "cond_stage_model.transformer.%s", name + 3) < size;
    return (size_t)snprintf(out, size, "%s", name) < size;
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
        !mx_gguf_find_tensor(g, "model.diffusion_model.input_blocks.0.0.weight") &&
        !mx_gguf_find_tensor(g, "unet.conv_in.weight"))
        return mx_err_set(err, MX_EFORMAT, "%s: a GGUF of architecture \"%.40s\" (a language "
                          "model?), not a Stable Diffusion checkpoint", path, arch);
    const struct mx_gguf_tensor *t0 = mx_gguf_tensor(g, 0);
    const char *base = (const char *)t0->data - t0->offset;
    struct mx_buf *buf;
    if ((rc = mx_sd_wrap(m, base, mx_gguf_file_size(g) - mx_gguf_data_offset(g), &buf, err)) < 0)
        return rc;
    /* F32 as sd.cpp leaves it for quantized types; `--type f16` (block size 1) converts it too */
    const struct mx_gguf_tensor *a = mx_gguf_find_tensor(g, "alphas_cumprod");
    if (a) {
        int64_t n = a->ne[0] * a->ne[1] * a->ne[2] * a->ne[3];
        if (n != MX_SD_TRAIN_STEPS || (a->type != MX_TYPE_F32 && a->type != MX_TYPE_F16 &&
                                       a->type != MX_TYPE_BF16))
            return mx_err_set(err, MX_EFORMAT, "%s: alphas_cumprod has %lld %s values, expected "
                              "%d f32/f16/bf16", path, (long long)n, mx_type_name(a->type),
                              MX_SD_TRAIN_STEPS);
        float ac[MX_SD_TRAIN_STEPS];
        mx_type_traits(a->type)->to_float(a->data, ac, MX_SD_TRAIN_STEPS);
        if ((rc = mx_sd_set_alphas(m, ac, MX_ST_F32, n, "alphas_cumprod in the file", err)) < 0)
            return rc;
    }
    struct layout l;
    read_layout(g, &l);
    for (int64_t i = 0; i < nt; i++) {
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
        struct mx_sd_src src = {.file = path, .type = t->type, .host = t->data, .buf = buf,
                                .offset = t->offset};
        memcpy(src.ne, t->ne, sizeof src.ne);
        char name[320];
        if (!map_name(t->name, &l, name, sizeof name))
            return mx_err_set(err, MX_EFORMAT, "%s: unknown tensor %s (a diffusers name "
                              "stable-diffusion.cpp left unconverted?)", path, t->name);
        if ((rc = mx_sd_add(m, name, &src, err)) < 0)
            return rc;
    }
    return 0;
}
