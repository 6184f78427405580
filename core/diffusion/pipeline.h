/* pipeline.h - one image from a prompt: text encoding, sampling, VAE decode; txt2img, img2img
 * and inpainting. The one path the CLI (`mixel image`), the chat (/image) and a server share.
 *
 * HOW TO USE
 *   struct mx_sd_pipeline *p;
 *   mx_sd_pipeline_open(be, "v1-5.safetensors", &open_opts, &p, &err);
 *   struct mx_sd_params par; mx_sd_params_default(&par, p);
 *   par.prompt = "a lighthouse"; par.seed = 42;
 *   struct mx_image img; mx_sd_generate(p, &par, 0, &img, on_progress, ud, &err);
 *   ... mx_image_save_png(&img, ...) ; mx_image_free(&img);
 *   mx_sd_pipeline_close(p);
 * The progress callback runs on the generating thread; returning non-zero cancels (the call then
 * returns MX_ECANCELED within one UNet evaluation).
 */
#ifndef MX_SD_PIPELINE_H
#define MX_SD_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/diffusion/sd_model.h"
#include "core/image/image.h"
#include "kernels/backend.h"

struct mx_sd_pipeline;

enum mx_sd_task { MX_SD_TXT2IMG = 0, MX_SD_IMG2IMG, MX_SD_INPAINT };

/* A LoRA file to apply (`--lora PATH[:W]`). */
struct mx_sd_lora_req {
    const char *path; /* a kohya/diffusers LoRA .safetensors (see sd_lora.h) */
    float w_te;       /* text-encoder multiplier */
    float w_unet;     /* UNet multiplier (the CLI gives both the same W) */
};

struct mx_sd_params {
    const char *prompt;          /* A1111 syntax: (word:1.2), [word], BREAK */
    const char *negative;        /* "" for none */
    int width, height;           /* pixels, multiples of 8 */
    int steps;
    float cfg;                   /* 1: no unconditional pass */
    int sampler;                 /* enum mx_sd_sampler (sampler.h) */
    int scheduler;               /* enum mx_sd_schedule (schedule.h); -1: the sampler's default */
    float eta;                   /* ancestral/DDIM noise; < 0: the sampler's default */
    uint64_t seed;               /* image i of a batch uses seed + i */
    int rng;                     /* enum mx_sd_rng_kind (rng.h) */
    int clip_skip;               /* A1111 meaning: 1 = last layer; 0 = the family's default */
    const struct mx_image *init; /* img2img/inpaint source (any size: resized), or NULL */
    float strength;              /* img2img denoising strength in (0, 1] */
    const struct mx_image *mask; /* inpaint mask (white = repaint), same size as init, or NULL */
    bool vae_tiling;             /* decode in tiles (automatic when the whole would not fit) */
    /* LoRAs: loras[n_loras] (--lora), then the prompt's <lora:NAME:W> tags, each looked up as
     * NAME.safetensors in lora_dirs (NULL-terminated, or NULL: tags are an error). The tags
     * are stripped from the prompt before encoding. Files stay loaded in the pipeline and the
     * working copies are remade only when the set or a weight changes. */
    const struct mx_sd_lora_req *loras;
    int n_loras;
    const char *const *lora_dirs;
    /* Textual-inversion embeddings (embedding.h) the prompts may call by file stem (A1111) or
     * embedding:NAME (ComfyUI): the .safetensors files in these folders (NULL-terminated, the
     * first folder wins a name clash; NULL: none). Listed at each generation. */
    const char *const *embedding_dirs;
};

enum mx_sd_phase { MX_SD_PHASE_TEXT = 0, MX_SD_PHASE_ENCODE, MX_SD_PHASE_SAMPLE,
                   MX_SD_PHASE_DECODE, MX_SD_PHASE_DONE };

struct mx_sd_progress {
    enum mx_sd_phase phase;
    int step, steps;             /* sampling: steps done of steps */
    double elapsed_s;            /* since mx_sd_generate started */
    double step_s;               /* seconds of the last sampling step (what the progress
                                  * callback itself spends, a preview, is not counted) */
    double text_s, decode_s;     /* time spent encoding the prompt / decoding (when done) */
    /* sampling steps > 0: the model's current estimate of the clean latent (k-diffusion's
     * "denoised", [4][lh][lw] as the UNet sees it, scaled), valid only during the callback, for
     * a live preview (preview.h); NULL in the other phases */
    const float *latent;
    int lw, lh;                  /* latent size of latent */
};

/* Returns non-zero to cancel. */
typedef int (*mx_sd_progress_fn)(void *ud, const struct mx_sd_progress *p);

/* Opens the checkpoint (see sd_model.h) and the CLIP vocabulary (a diffusers folder's
 * tokenizer/, else the installed bpe_simple_vocab_16e6.txt). */
int mx_sd_pipeline_open(struct mx_backend *be, const char *path,
                        const struct mx_sd_open_opts *opts, struct mx_sd_pipeline **out,
                        struct mx_err *err);
void mx_sd_pipeline_close(struct mx_sd_pipeline *p); /* NULL ok */
const struct mx_sd_model *mx_sd_pipeline_model(const struct mx_sd_pipeline *p);

/* The defaults A1111 uses for the model's family (512x512, 768x768 for SD2 v-prediction,
 * 1024x1024 for SDXL; 20 steps, cfg 7, euler_a + discrete, seed 0, rng cuda); for SDXL-Turbo
 * (m->turbo) its model card's: 512x512, 1 step, cfg 1 (no negative pass), euler_a. */
void mx_sd_params_default(struct mx_sd_params *par, const struct mx_sd_pipeline *p);

/* The schedule par runs with: par->scheduler, or the sampler's default when it is -1. */
int mx_sd_params_schedule(const struct mx_sd_params *par);

/* Checks par before anything runs: sizes (multiples of 8, bounds), steps, strength, mask size,
 * and whether the memory the run needs is there. Returns 0 or MX_EINVAL / MX_ENOMEM with a
 * one-line message naming the problem (and the numbers). mx_sd_generate calls it too. */
int mx_sd_params_check(const struct mx_sd_pipeline *p, const struct mx_sd_params *par,
                       struct mx_err *err);

/* Generates one image with seed par->seed + index into *out (caller frees with
 * mx_image_free). Returns 0, MX_ECANCELED, or an error. */
int mx_sd_generate(struct mx_sd_pipeline *p, const struct mx_sd_params *par, int index,
                   struct mx_image *out, mx_sd_progress_fn progress, void *ud,
                   struct mx_err *err);

/* A1111's "TI hashes" infotext value for the embeddings the last generation's prompts called
 * ("name: 0123456789ab, ..."), into buf; "" when none. */
const char *mx_sd_pipeline_ti_hashes(const struct mx_sd_pipeline *p, char *buf, size_t size);

/* Reads a `--lora PATH[:W]` argument: the path into path (size bytes) and W (default 1). A ':'
 * followed by something that is not a number from -100 to 100 belongs to the path. Returns 0 or
 * MX_EINVAL with err "--lora: 'ARG' is not FILE[:WEIGHT]". */
int mx_sd_lora_arg_parse(const char *arg, char *path, size_t size, float *w, struct mx_err *err);

/* The LoRAs the last mx_sd_generate ran with, as A1111 writes them in the infotext:
 * "NAME: hash12, NAME2: hash12" (NAME the file stem) into buf; "" when none. Returns buf. */
const char *mx_sd_pipeline_lora_hashes(const struct mx_sd_pipeline *p, char *buf, size_t size);

#endif
