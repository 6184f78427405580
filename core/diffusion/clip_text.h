/* clip_text.h - the Stable Diffusion text encoders: CLIP ViT-L/14 (SD 1.x) and OpenCLIP ViT-H
 * (SD 2.x), both as Hugging Face CLIPTextModel weights under
 * "cond_stage_model.transformer.text_model.*" (sd_model.h), run on the model's backend, with
 * A1111 prompt weighting (prompt.h) applied to their output.
 *
 * THE NETWORK (per 77-token chunk; dim 768/1024, n_layer 12/24, heads of 64):
 *   x = token_embedding[ids] + position_embedding
 *   per layer: x += out_proj(causal MHA(LN1(x)));  x += fc2(act(fc1(LN2(x))))
 *     act = quick_gelu (SD 1.x) or gelu (SD 2.x; the backend's tanh form, as
 *     stable-diffusion.cpp's ggml_gelu, within 1e-3 of OpenCLIP's erf GELU)
 *   h = final_layer_norm(x after the layer clip_skip picks)
 * clip_skip in A1111's meaning: 1 = the last layer, 2 = the penultimate, ...; final_layer_norm
 * is applied to the chosen layer's output in every case. 0 means the family's default: 1 for
 * SD 1.x, 2 for SD 2.x (LDM's FrozenOpenCLIPEmbedder uses layer "penultimate"; A1111 and
 * stable-diffusion.cpp do the same). Diffusers stores SD 2.x's encoder with 23 layers (the
 * penultimate output is its last): clip_skip still counts OpenCLIP's 24, so the default (2) and
 * 1 both run the 23 there are, and 3 runs 22.
 *
 * WEIGHTING (A1111 "Original" emphasis), per chunk: z = h; h *= w[token] row by row; then
 * h *= mean(z) / mean(h), means over the whole [77][dim] chunk.
 *
 * HOW TO USE
 *   struct mx_tokenizer *tok;  mx_sd_clip_tokenizer_open(ckpt_path, &tok, &err);
 *   struct mx_sd_clip *c;      mx_sd_clip_new(model, tok, &c, &err);
 *   float *h; int64_t n_ctx;   mx_sd_clip_encode(c, "a (red:1.3) cube", 0, 1, &h, &n_ctx, &err);
 *   ... h is [n_ctx][dim] (row t = token t), the UNet's cross-attention context ...
 *   free(h); mx_sd_clip_free(c); mx_tokenizer_free(tok);
 * One encoder is used by one thread at a time (it owns scratch memory on the backend).
 */
#ifndef MX_SD_CLIP_TEXT_H
#define MX_SD_CLIP_TEXT_H

#include <stdint.h>

#include "core/base/err.h"
#include "core/diffusion/sd_model.h"
#include "core/text/tokenizer.h"

struct mx_sd_clip;

/* Opens the CLIP vocabulary for a checkpoint: model_path's tokenizer/ folder when model_path is
 * a diffusers folder that has one, else the installed bpe_simple_vocab_16e6.txt
 * (mx_clip_vocab_default_path). Returns 0 and *out (caller frees with mx_tokenizer_free), or
 * MX_ENOENT (no vocabulary: the message names scripts/install-clip-vocab.sh) / MX_EFORMAT /
 * MX_ENOMEM. */
int mx_sd_clip_tokenizer_open(const char *model_path, struct mx_tokenizer **out,
                              struct mx_err *err);

/* Binds the text encoder of m (borrowed, must outlive the encoder) and tok (borrowed, CLIP).
 * Checks every weight's shape, copies the small vectors (norms, biases, positions) to F32 on
 * the backend and allocates the scratch for one chunk. Returns 0 and *out (caller frees), or
 * MX_EFORMAT (no text encoder, a tensor missing or misshapen, a vocabulary larger than the
 * token embedding), MX_EUNSUP (the backend lacks an op), MX_ENOMEM; err says which. */
int mx_sd_clip_new(const struct mx_sd_model *m, const struct mx_tokenizer *tok,
                   struct mx_sd_clip **out, struct mx_err *err);

/* The text towers of a checkpoint: SD 1.x/2.x have one (MAIN); SDXL has CLIP ViT-L (MAIN,
 * "cond_stage_model.transformer.text_model.*") and OpenCLIP ViT-bigG (BIGG,
 * "cond_stage_model.1.transformer.text_model.*" with text_projection). */
enum mx_sd_clip_tower { MX_SD_CLIP_MAIN = 0, MX_SD_CLIP_BIGG = 1 };

/* mx_sd_clip_new for one tower. For an SDXL model both towers give their hidden states
 * without final_layer_norm, clip_skip 0 meaning 2 (the penultimate layer, as SGM's configs and
 * stable-diffusion.cpp); BIGG uses gelu, pads with 0 after the EOS and loads text_projection
 * for the pooled output. Errors as mx_sd_clip_new. */
int mx_sd_clip_new_tower(const struct mx_sd_model *m, const struct mx_tokenizer *tok, int tower,
                         struct mx_sd_clip **out, struct mx_err *err);

void mx_sd_clip_free(struct mx_sd_clip *c); /* NULL ok */

/* Encodes prompt (A1111 syntax) into *h (malloc'd host f32 [n_ctx][dim], caller frees),
 * n_ctx = 77 * chunks; min_chunks pads with empty-prompt chunks at the end (so cond and uncond
 * have equal length, as A1111 does). clip_skip: A1111 meaning, 0 = family default. Returns 0,
 * or MX_ERANGE (more than MX_SD_MAX_CHUNKS chunks, or min_chunks above it), MX_EINVAL
 * (clip_skip < 0 or beyond the layer count), MX_ENOMEM, or a backend error; *h is NULL then. */
int mx_sd_clip_encode(struct mx_sd_clip *c, const char *prompt, int clip_skip, int min_chunks,
                      float **h, int64_t *n_ctx, struct mx_err *err);

/* mx_sd_clip_encode that also writes the pooled output of the first chunk into pooled (host
 * [mx_sd_clip_proj_dim], or NULL for none): all layers, final_layer_norm, the first EOS's row,
 * @ text_projection (OpenCLIP's x @ P), before any weighting. MX_EINVAL when the tower has no
 * text_projection. */
int mx_sd_clip_encode_pooled(struct mx_sd_clip *c, const char *prompt, int clip_skip,
                             int min_chunks, float **h, int64_t *n_ctx, float *pooled,
                             struct mx_err *err);

/* How many 77-token chunks prompt needs (tokenizing only, no encoder work): the pipeline takes
 * the larger of the prompt's and the negative prompt's count as min_chunks for both. Returns
 * the count (>= 1), or MX_ERANGE / MX_ENOMEM as mx_sd_clip_encode. */
int mx_sd_clip_n_chunks(struct mx_sd_clip *c, const char *prompt, struct mx_err *err);

/* The encoder alone on one chunk of 77 ids (checked against the vocabulary): h [77][dim]
 * (caller's memory) gets the hidden states before weighting. clip_skip as above. Returns 0,
 * MX_EINVAL (an id outside the vocabulary, a bad clip_skip) or a backend error. */
int mx_sd_clip_encode_ids(struct mx_sd_clip *c, const int32_t *ids, int clip_skip, float *h,
                          struct mx_err *err);

/* mx_sd_clip_encode_ids plus the pooled output of the chunk (see mx_sd_clip_encode_pooled). */
int mx_sd_clip_encode_ids_pooled(struct mx_sd_clip *c, const int32_t *ids, int clip_skip,
                                 float *h, float *pooled, struct mx_err *err);

/* A1111 emphasis on one chunk: h [n_tok][dim] *= w[t] per row, then scaled so that the mean
 * over the chunk is what it was (means taken in double). Leaves h alone when the new mean is 0
 * (A1111 would divide by it). */
void mx_sd_clip_apply_weights(float *h, const float *w, int64_t n_tok, int64_t dim);

/* Textual-inversion embeddings (embedding.h) that prompts given to mx_sd_clip_encode and
 * mx_sd_clip_n_chunks may call by name; db is borrowed (it must outlive its use), NULL: none.
 * Each vector takes one token's place in the encoder's input (before the position embedding),
 * the vectors for this encoder's width (SDXL files: clip_l or clip_g). */
struct mx_sd_emb_db;
void mx_sd_clip_set_embeddings(struct mx_sd_clip *c, struct mx_sd_emb_db *db);

int64_t mx_sd_clip_dim(const struct mx_sd_clip *c);      /* 768 (SD 1.x), 1024 (SD 2.x) */
int mx_sd_clip_n_layers(const struct mx_sd_clip *c);     /* in the file: 12, 23 or 24 */
int mx_sd_clip_default_skip(const struct mx_sd_clip *c); /* 1 (SD 1.x) or 2 (SD 2.x) */
int32_t mx_sd_clip_pad_id(const struct mx_sd_clip *c);   /* EOS (SD 1.x) or 0 (SD 2.x) */
int64_t mx_sd_clip_proj_dim(const struct mx_sd_clip *c); /* pooled width (1280), 0: none */

#endif
