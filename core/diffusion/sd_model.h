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
 *   SDXL  (SGM names in the file) conditioner.embedders.0.transformer.text_model.* (CLIP-L) ->
 *         cond_stage_model.transformer.text_model.*; conditioner.embedders.1.model.* (OpenCLIP
 *         bigG) -> cond_stage_model.1.transformer.text_model.* (HF names, in_proj split as for
 *         SD 2.x) plus cond_stage_model.1.transformer.text_model.text_projection, kept in
 *         OpenCLIP's orientation (pooled = x @ P: torch [width, proj], ne [proj, width]); the
 *         names stable-diffusion.cpp uses (its `-M convert` GGUF of an SGM file, names kept,
 *         loads as the file: tests/test_sdxl with MX_SD_CLI)
 * Diffusers folders and stable-diffusion.cpp GGUF files are renamed to these at load.
 * Only tensors under these three prefixes are kept: EMA copies (model_ema.*), the 12 DDPM
 * schedule buffers (betas, alphas_cumprod, ...), position_ids, text_projection and anything else
 * are left out of the table (alphas_cumprod is read into the schedule first).
 *
 * SOURCES (mx_sd_model_open tells them apart by content, not by file name):
 *   .safetensors  CompVis/LDM names. SD 2.x files carry OpenCLIP names under
 *                 cond_stage_model.model.* (transformer.resblocks.N.attn.in_proj_weight, ln_1,
 *                 mlp.c_fc, token_embedding, positional_embedding, ln_final): renamed to the HF
 *                 names, the fused in_proj [3*w, w] split into q/k/v row views of the same bytes.
 *   diffusers     a folder with unet/ vae/ text_encoder/ (diffusion_pytorch_model[.fp16]
 *                 .safetensors, model[.fp16].safetensors) and scheduler/scheduler_config.json;
 *                 UNet down_blocks/mid_block/up_blocks and VAE down/up/mid names (old
 *                 query/key/value/proj_attn or to_q/to_k/to_v/to_out.0) mapped to LDM names.
 *   .gguf         stable-diffusion.cpp's `sd-cli -M convert` output. It keeps the source's
 *                 names unless --convert-name: a single file's LDM (and SD 2.x OpenCLIP) names,
 *                 a diffusers folder's under unet./vae./te. (mapped as a folder's); with
 *                 --convert-name, LDM names (an SD 2.x text encoder in HF names with a fused
 *                 self_attn.in_proj, split here). Quantized matrices stay quantized (matmul
 *                 reads every type); a quantized vector (sd.cpp quantizes norm weights whose
 *                 length is a block multiple) is dequantized to F32 at load, as is any
 *                 quantized or BF16 conv kernel (the VAE's attention projections from diffusers
 *                 sources are quantized linears: F32 1x1 kernels here).
 *
 * PREDICTION TYPE (what is detected, in this order; m->prediction_source says which):
 *   1. opts->prediction >= 0 (the user's --prediction): "--prediction", not detected
 *   2. safetensors __metadata__ "modelspec.prediction_type", "prediction_type" or
 *      "parameterization": "epsilon"/"eps" -> eps, "v"/"v_prediction"/"v-prediction" -> v
 *   3. a tensor named "v_pred" (the marker some v-prediction exports carry) -> v
 *   4. diffusers scheduler/scheduler_config.json "prediction_type" (epsilon, v_prediction)
 *   5. the LDM config A1111 reads beside a file checkpoint, <stem>.yaml (768-v-ema.yaml next to
 *      768-v-ema.safetensors): "parameterization: v" -> v, "eps" -> eps
 *   6. otherwise eps, ASSUMED: SD 2.x 768-v and 512-base have identical tensor names and
 *      shapes, so a v-model without one of the markers above needs --prediction v.
 *
 * SCHEDULE (m->schedule_source): the file's alphas_cumprod (single file, GGUF), else a diffusers
 * scheduler_config.json (beta_schedule scaled_linear/linear, beta_start, beta_end or
 * trained_betas), else the SD default scaled_linear 0.00085..0.012.
 *
 * PARTIAL CHECKPOINTS: a UNet is required (else MX_EFORMAT "no Stable Diffusion UNet"). A missing
 * VAE or text encoder is not an error at open (has_vae / has_text_encoder are false; a separate
 * VAE may come with opts->vae_path); mx_sd_require() gives the one-line error when a job needs
 * the part. A VAE whose latent has other than 4 channels (SD3/Flux VAEs have 16), a text encoder
 * whose width is not the UNet's context width, and weights in a non-float dtype are errors.
 *
 * SHAPES are in ggml order (ne[0] innermost): a conv weight [out, in, kh, kw] in the file is
 * ne = [kw, kh, in, out]; a linear weight [out, in] is ne = [in, out]; vectors [n]. Where two
 * layouts hold the same bytes (the VAE's attention projections: 1x1 convs in LDM files, linears
 * in diffusers) the loader presents the LDM shape. Weight types stay as stored (F16 stays F16);
 * only types an op cannot read are widened to F32 at load (BF16 or quantized conv kernels,
 * quantized vectors), into copies the model owns.
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
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "kernels/backend.h"

#define MX_SD_TRAIN_STEPS 1000 /* DDPM steps every SD 1.x/2.x model was trained with */

enum mx_sd_family {
    MX_SD_FAMILY_UNKNOWN = 0,
    MX_SD_FAMILY_SD1, /* CLIP ViT-L/14 text encoder, context 768 */
    MX_SD_FAMILY_SD2, /* OpenCLIP ViT-H text encoder, context 1024, linear proj_in/out */
    MX_SD_FAMILY_SDXL, /* CLIP ViT-L + OpenCLIP ViT-bigG, context 768 + 1280 = 2048, a label
                          embedding (label_emb) for the pooled text and the size conditioning */
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

/* Parts of a checkpoint a job needs (mx_sd_require). */
enum mx_sd_part {
    MX_SD_PART_UNET = 1, /* model.diffusion_model.* */
    MX_SD_PART_VAE = 2,  /* first_stage_model.*: decoding latents (and img2img encoding) */
    MX_SD_PART_TEXT = 4, /* cond_stage_model.*: encoding the prompt (SDXL: both encoders) */
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
    bool turbo;                   /* SDXL-Turbo (adversarially distilled: 1-4 steps, no CFG, 512
                                     px): "turbo" in the file name or in the metadata's
                                     modelspec.title / modelspec.architecture; it only changes
                                     the defaults (mx_sd_params_default) */
    bool has_vae, has_text_encoder;
    int64_t context_dim;          /* cross-attention width: 768 (SD1), 1024 (SD2), 2048 (SDXL) */
    int64_t adm_dim;              /* SDXL: width of the vector label_emb takes (2816: the pooled
                                     text 1280 + 6 x 256 size/crop embeddings); 0 otherwise */
    int64_t unet_in_channels;     /* 4, or 9 for inpainting */
    int64_t n_params;             /* weights of every tensor in the table (UNet + VAE + text
                                     encoder; schedule buffers and skipped tensors excluded) */
    int64_t n_params_unet;        /* of them under model.diffusion_model. */
    int64_t n_params_vae;         /* under first_stage_model. */
    int64_t n_params_text;        /* under cond_stage_model. */
    const char *prediction_source; /* how prediction was found (see PREDICTION TYPE); static */
    const char *schedule_source;  /* where alphas_cumprod came from (see SCHEDULE); static */
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
 * problem" in one line. opts may be NULL. be may be NULL: the tensors then point into host
 * memory with buf NULL (inspect, tests, fuzzing: nothing can be computed with them). */
int mx_sd_model_open(struct mx_backend *be, const char *path, const struct mx_sd_open_opts *opts,
                     struct mx_sd_model **out, struct mx_err *err);

/* The same over a safetensors or GGUF image in memory (borrowed: it must outlive the model);
 * name is used in messages. opts->vae_path, when set, is still a file. */
int mx_sd_model_open_mem(struct mx_backend *be, const void *buf, size_t size, const char *name,
                         const struct mx_sd_open_opts *opts, struct mx_sd_model **out,
                         struct mx_err *err);

/* Checks that the parts (enum mx_sd_part bits) a job needs are present. Returns 0 or MX_EFORMAT
 * with err "path: no VAE (first_stage_model.*): pass a VAE file (--vae)" and the like. */
int mx_sd_require(const struct mx_sd_model *m, unsigned parts, struct mx_err *err);

/* The table in name order: n entries, entry i (0 <= i < n) or NULL. Borrowed. */
int64_t mx_sd_n_weights(const struct mx_sd_model *m);
const struct mx_tensor *mx_sd_weight_at(const struct mx_sd_model *m, int64_t i);

void mx_sd_model_close(struct mx_sd_model *m); /* NULL ok */

/* A weight by canonical name, or NULL when the checkpoint has none. Borrowed. */
const struct mx_tensor *mx_sd_weight(const struct mx_sd_model *m, const char *name);

/* A required weight whose name is printf(fmt, ...) and whose shape must equal ne (ggml order;
 * an entry of -1 matches anything; ne NULL: any shape). Returns 0, or MX_EFORMAT with err
 * "path: tensor NAME missing" / "path: tensor NAME has shape [..], expected [..]". */
int mx_sd_need(const struct mx_sd_model *m, const struct mx_tensor **out, const int64_t ne[4],
               struct mx_err *err, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* "SD 1.x", "SD 2.x", "SDXL", "unknown"; "eps", "v"; "safetensors", "diffusers", "gguf". Static. */
const char *mx_sd_family_name(enum mx_sd_family f);
const char *mx_sd_pred_name(enum mx_sd_pred p);
const char *mx_sd_source_name(enum mx_sd_source s);

#endif
