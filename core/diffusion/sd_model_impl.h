/* sd_model_impl.h - what the checkpoint readers (one per source format) share with sd_model.c.
 * Private to core/diffusion/.
 *
 * A reader opens its files, hands them to the model (mx_sd_own: closed with the model), wraps
 * their data for the backend (mx_sd_wrap) and adds each tensor under a name (mx_sd_add), which
 * sd_model.c turns into the canonical one in one place (OpenCLIP names, fused in_proj, the VAE's
 * linear attention projections, types the ops cannot read, names to leave out).
 */
#ifndef MX_SD_MODEL_IMPL_H
#define MX_SD_MODEL_IMPL_H

#include "core/diffusion/sd_model.h"
#include "core/format/gguf.h"
#include "core/format/safetensors.h"

/* One tensor as a reader found it. */
struct mx_sd_src {
    const char *file;   /* the file it is in, for messages */
    int type;           /* enum mx_type */
    int64_t ne[4];      /* ggml order */
    const void *host;   /* its bytes in host memory (the mapping) */
    struct mx_buf *buf; /* the backend buffer wrapping the mapping (NULL: be is NULL) */
    size_t offset;      /* of host inside that buffer */
};

/* Adds a tensor under name (an LDM name, or OpenCLIP names under cond_stage_model.model.):
 * canonicalises it, leaves out what the engine never reads (returns 0), widens types the ops
 * cannot read, splits fused in_proj. A tensor added later under an existing name replaces the
 * earlier one. Returns 0, MX_EFORMAT (bad shape/type, err "file: tensor NAME ...") or
 * MX_ENOMEM. */
int mx_sd_add(struct mx_sd_model *m, const char *name, const struct mx_sd_src *s,
              struct mx_err *err);

/* The table entry of weight name, writable (LoRA working copies swap its data in and out;
 * sd_lora.c), or NULL. */
struct mx_tensor *mx_sd_weight_mut(struct mx_sd_model *m, const char *name);

/* Wraps host memory [base, base + size) for the model's backend; the model frees the buffer at
 * close. *out is NULL when the model has no backend. Returns 0 or the backend's error. */
int mx_sd_wrap(struct mx_sd_model *m, const void *base, size_t size, struct mx_buf **out,
               struct mx_err *err);

/* Wraps the data section of st (every tensor's bytes) for the backend: *out is owned by m.
 * Returns 0, MX_EFORMAT (a file with no tensors) or the backend's error. */
int mx_sd_wrap_st(struct mx_sd_model *m, const struct mx_st *st, struct mx_buf **out,
                  struct mx_err *err);

/* Adds safetensors tensor s of st, whose data buf wraps, under canonical name (dtype and rank
 * checked: "path: tensor NAME has dtype ..."). Returns 0 or a negative MX_E*. */
int mx_sd_add_st_tensor(struct mx_sd_model *m, const struct mx_st *st,
                        const struct mx_st_tensor *s, struct mx_buf *buf, const char *name,
                        struct mx_err *err);

/* Gives obj to the model, which calls close(obj) at close (after freeing the buffers). On
 * failure (MX_ENOMEM) obj is closed here. */
int mx_sd_own(struct mx_sd_model *m, void *obj, void (*close)(void *), struct mx_err *err);

/* Adds every float tensor of st whose name starts with `from`, renamed to `to` + the rest
 * (from "" adds all); position_ids is skipped, other non-float tensors under the canonical
 * prefixes are an error. The model takes ownership of st, also on failure. */
int mx_sd_add_st(struct mx_sd_model *m, struct mx_st *st, const char *from, const char *to,
                 struct mx_err *err);

/* The schedule from n values of alphas_cumprod (F32 or F64 as safetensors dtype MX_ST_F32 /
 * MX_ST_F64). Returns 0 or MX_EFORMAT (count other than 1000, a value outside (0, 1)). */
int mx_sd_set_alphas(struct mx_sd_model *m, const void *data, int st_dtype, int64_t n,
                     const char *source, struct mx_err *err);

/* The SD schedule from betas: scaled (sqrt-spaced, "scaled_linear") or linear between b0 and b1,
 * computed in float32 as stable-diffusion.cpp does. */
void mx_sd_betas_schedule(float *ac, float b0, float b1, bool scaled);

/* Prediction hint from a reader (ignored when the user forced one). */
void mx_sd_hint_prediction(struct mx_sd_model *m, enum mx_sd_pred p, const char *source);

/* The readers (sd_load_diffusers.c, sd_load_gguf.c): add everything of their source to m. */
int mx_sd_load_diffusers(struct mx_sd_model *m, const char *dir, struct mx_err *err);

/* Adds the tensors of one diffusers component file st (borrowed: the caller keeps it open as
 * long as m), each renamed to its canonical name by kind: 0 UNet (lpb layers per block,
 * up_attn[i]: up block i has attentions), 1 VAE, 2 text encoder. Returns 0,
 * or MX_EFORMAT naming a tensor no mapping knows or a bad dtype/rank. */
int mx_sd_add_diffusers(struct mx_sd_model *m, const struct mx_st *st, int kind, int lpb,
                        const bool up_attn[8], struct mx_err *err);
int mx_sd_load_gguf(struct mx_sd_model *m, struct mx_gguf *g, struct mx_err *err); /* owns g */

/* diffusers -> LDM names: a UNet (lpb resnets per down block), a VAE (n_up up blocks) key
 * without prefix into out. Returns true when the name is known. */
bool mx_sd_diffusers_unet_name(const char *name, int lpb, const bool up_has_attn[8], char *out,
                               size_t size);
bool mx_sd_diffusers_vae_name(const char *name, int n_up, char *out, size_t size);

#endif
