/* sd_kind.c - model kind from safetensors key names (see sd_kind.h). */
#include "core/diffusion/sd_kind.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/base/util.h"

static bool has_prefix(const struct mx_st *st, const char *prefix) {
    size_t n = strlen(prefix);
    for (int64_t i = 0; i < mx_st_n_tensors(st); i++)
        if (strncmp(mx_st_tensor(st, i)->name, prefix, n) == 0)
            return true;
    return false;
}

/* Context width of the UNet's cross-attention (768: SD 1.x, 1024: SD 2.x, 2048: SDXL), or 0. */
int64_t mx_sd_unet_context_dim(const struct mx_st *st, const char *prefix) {
    const char *names[] = {"input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
                           "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight",
                           "input_blocks.4.1.transformer_blocks.0.attn2.to_k.weight",
                           "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"};
    char key[256];
    for (size_t i = 0; i < MX_ARRAY_LEN(names); i++) {
        snprintf(key, sizeof key, "%s%s", prefix, names[i]);
        const struct mx_st_tensor *t = mx_st_find_tensor(st, key);
        if (t && t->n_dims == 2)
            return t->shape[1];
    }
    return 0;
}

static const char *sd_version(int64_t ctx) {
    return ctx == 768 ? "SD 1.x" : ctx == 1024 ? "SD 2.x" : ctx == 2048 ? "SDXL" : "SD";
}

/* A guess of what the file is, from its key names (stable-diffusion.cpp style detection). */
void mx_st_guess_kind(const struct mx_st *st, char *out, size_t size) {
    out[0] = '\0';
    size_t n = 0;
#define ADD(...) (n += (size_t)snprintf(out + n, n < size ? size - n : 0, __VA_ARGS__))
    if (has_prefix(st, "model.diffusion_model.")) {
        int64_t ctx = mx_sd_unet_context_dim(st, "model.diffusion_model.");
        /* the label embedding (size and pooled-text conditioning) marks SDXL at any width */
        bool xl = mx_st_find_tensor(st, "model.diffusion_model.label_emb.0.0.weight") != NULL;
        ADD("%s checkpoint (CompVis/LDM key names): UNet", xl ? "SDXL" : sd_version(ctx));
        if (has_prefix(st, "first_stage_model."))
            ADD(" + VAE");
        if (has_prefix(st, "cond_stage_model.transformer.text_model."))
            ADD(" + CLIP ViT-L text encoder");
        else if (has_prefix(st, "cond_stage_model.model."))
            ADD(" + OpenCLIP text encoder");
        else if (has_prefix(st, "conditioner.embedders."))
            ADD(" + SDXL text encoders");
        return;
    }
    if (has_prefix(st, "first_stage_model.")) {
        ADD("VAE (CompVis key names)");
        return;
    }
    if (has_prefix(st, "down_blocks.") && has_prefix(st, "time_embedding.")) {
        ADD("%s UNet (diffusers key names)", sd_version(mx_sd_unet_context_dim(st, "")));
        return;
    }
    if (has_prefix(st, "encoder.down_blocks.") || has_prefix(st, "decoder.up_blocks.")) {
        ADD("VAE (diffusers key names)");
        return;
    }
    if (has_prefix(st, "encoder.") && has_prefix(st, "decoder.") && has_prefix(st, "quant_conv")) {
        ADD("VAE (CompVis key names, no prefix)");
        return;
    }
    if (has_prefix(st, "text_model.encoder.layers.")) {
        const struct mx_st_tensor *e =
            mx_st_find_tensor(st, "text_model.embeddings.token_embedding.weight");
        int64_t width = e && e->n_dims == 2 ? e->shape[1] : 0;
        ADD("CLIP text encoder%s", width == 768 ? " (ViT-L/14, SD 1.x)" : "");
        return;
    }
    if (has_prefix(st, "model.layers.") && has_prefix(st, "model.embed_tokens.")) {
        ADD("transformer language model (Hugging Face key names)");
        if (has_prefix(st, "model.layers.0.block_sparse_moe."))
            ADD(", mixture of experts");
        return;
    }
    ADD("unknown");
#undef ADD
}

