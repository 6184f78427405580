/* sd_model.h - a Stable Diffusion checkpoint opened for the engine: every weight as a backend
 * tensor under one canonical name, plus the facts the pipeline needs (family, prediction type,
 * inpainting UNet, the training schedule).
 *
 * CANONICAL NAMES are the CompVis/LDM single-file names, whatever the file used:
 *   UNet  "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn1.to_q.weight", ...
 *   VAE   "first_stage_model.decoder.up.0.block.0.conv1.weight", ...
 *   CLIP  "cond_stage_model.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight", ...
 *         (Hugging Face CLIPTextModel names for SD 1.x and SD 2.x alike: the loader splits
 *         OpenCLIP's fused in_proj of SD 2.x checkpoints into q/k/v row views)
 * Diffusers folders and stable-diffusion.cpp GGUF files are renamed to these at load.
 *
 * SHAPES are in ggml order (ne[0] innermost): a conv weight [out, in, kh, kw] in the file is
 * ne = [kw, kh, in, out]; a linear weight [out, in] is ne = [in, out]; vectors [n]. Where two
 * layouts hold the same bytes (the VAE's attention projections: 1x1 convs in LDM files, linears
 * in diffusers) the loader presents the LDM shape. Weight types stay as stored (F16 stays F16);
 * only types an op cannot read are widened at load (BF16 conv kernels -> F32).
 *
 * HOW TO USE
 *   mx_sd_model_open(be, "v1-5.safetensors", NULL, &m, &err);
 *   const struct mx_tensor *w;
 *   rc = mx_sd_need(m, &w, (int64_t[4]){3, 3, 4, 320}, &err,
 *                   "model.diffusion_model.input_blocks.0.0.weight");
 *   ... mx_op_conv2d(be, &out, &x, w, b, &p) ...
 *   mx_sd_model_close(m);
 */
#ifndef MX_SD_MODEL_H
#define MX_SD_MODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/err.h"
#include "kernels/backend.h"

#define MX_SD_TRAIN_STEPS 1000 /* DDPM steps every SD 1.x/2.x model was trained with */

enum mx_sd_family {
    MX_SD_FAMILY_UNKNOWN = 0,
    MX_SD_FAMILY_SD1, /* CLIP ViT-L/14 text encoder, context 768 */
    MX_SD_FAMILY_SD2, /* OpenCLIP ViT-H text encoder, context 1024, linear proj_in/out */
};

enum mx_sd_pred {
    MX_SD_PRED_EPS = 0, /* the UNet predicts the noise */
    MX_SD_PRED_V = 1,   /* v-prediction (SD 2.x 768-v) */
};

enum mx_sd_source {
    MX_SD_SRC_SAFETENSORS = 0, /* one file, CompVis/LDM names */
    MX_SD_SRC_DIFFUSERS,       /* a folder: unet/ vae/ text_encoder/ tokenizer/ scheduler/ */
    MX_SD_SRC_GGUF,            /* stable-diffusion.cpp's `-M convert` output */
};

struct mx_sd_open_opts {
    const char *vae_path; /* a separate VAE file (its tensors replace the checkpoint's), or NULL */
    int prediction;       /* -1: detect; else enum mx_sd_pred (the user's --prediction) */
};

struct mx_sd_model {
    struct mx_backend *be;        /* borrowed */
    enum mx_sd_family family;
    enum mx_sd_pred prediction;
    enum mx_sd_source source;
    bool prediction_detected;     /* false when opts forced it */
    bool inpaint;                 /* the UNet takes 9 input channels (latent + mask + masked) */
    bool has_vae, has_text_encoder;
    int64_t context_dim;          /* cross-attention width: 768 (SD1), 1024 (SD2) */
    int64_t unet_in_channels;     /* 4, or 9 for inpainting */
    int64_t n_params;             /* weights counted over every tensor loaded */
    /* The schedule the model was trained with: the file's alphas_cumprod when it has one (as
     * stable-diffusion.cpp reads it), else the SD "scaled linear" betas 0.00085..0.012. */
    bool alphas_from_file;
    float alphas_cumprod[MX_SD_TRAIN_STEPS];
    const char *path;             /* as opened (owned by the model) */
    struct mx_sd_model_priv *priv;
};

/* Opens a checkpoint: a .safetensors file, a diffusers folder or a .gguf file (the kind is
 * detected from the content). Every tensor becomes a view into the mapped file (on the CPU, no
 * copy). Returns 0, or MX_ENOENT / MX_EFORMAT / MX_EUNSUP / MX_ENOMEM with err saying "path:
 * problem" in one line. opts may be NULL. */
int mx_sd_model_open(struct mx_backend *be, const char *path, const struct mx_sd_open_opts *opts,
                     struct mx_sd_model **out, struct mx_err *err);

void mx_sd_model_close(struct mx_sd_model *m); /* NULL ok */

/* A weight by canonical name, or NULL when the checkpoint has none. Borrowed. */
const struct mx_tensor *mx_sd_weight(const struct mx_sd_model *m, const char *name);

/* A required weight whose name is printf(fmt, ...) and whose shape must equal ne (ggml order;
 * an entry of -1 matches anything; ne NULL: any shape). Returns 0, or MX_EFORMAT with err
 * "path: tensor NAME missing" / "path: tensor NAME has shape [..], expected [..]". */
int mx_sd_need(const struct mx_sd_model *m, const struct mx_tensor **out, const int64_t ne[4],
               struct mx_err *err, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* "SD 1.x", "SD 2.x", "unknown"; "eps", "v". Static strings. */
const char *mx_sd_family_name(enum mx_sd_family f);
const char *mx_sd_pred_name(enum mx_sd_pred p);

#endif
