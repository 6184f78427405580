/* image_job.h - image generation as a job on the engine worker, for the chat (/image, /img2img):
 * the request read from a slash command's argument (the CLI's option names), the SD pipeline kept
 * open between jobs on the same device choice as the LLM, the run (progress, cancel, the PNG with
 * its A1111 parameters chunk) and the record of the result in the session's history.
 *
 * HOW TO USE (the TUI; another front end the same way)
 *   struct mx_sd_engine *se; mx_sd_engine_new(&se);
 *   struct mx_image_req req; mx_image_req_parse(arg, &req, &err);      main thread
 *   req.ckpt = ...; req.out_dir = ...; (seed drawn when !req.seed_set)
 *   mx_worker_start(w, fn, ...) -> mx_image_job_run(job, se, &req, &res)  worker thread
 *   MX_EV_DONE code 0 -> mx_image_store(db, session, &req, &res, &msg_id, &err)  main thread
 *   mx_image_result_free(&res); mx_image_req_free(&req); mx_sd_engine_free(se) (worker idle)
 *
 * Threading: the engine belongs to the worker while a job runs; the main thread may close or
 * free it only between jobs. Events the job posts: MX_EV_NOTICE (loading the image model),
 * MX_EV_PROGRESS (text "image 3/20 · 1.2 s/step · ETA 20 s", a = steps done, b = steps), then
 * MX_EV_DONE (0, MX_ECANCELED, or an error with its message).
 */
#ifndef MX_IMAGE_JOB_H
#define MX_IMAGE_JOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/diffusion/pipeline.h"
#include "app/worker.h"

struct mx_db;

/* One image to make. Strings owned by the request (mx_image_req_free); NULL: the default. */
#define MX_IMAGE_MAX_LORAS 8 /* --lora options one /image takes */

struct mx_image_req {
    char *prompt;          /* the words of the command that are not options ("" none) */
    char *negative;        /* -n/--negative(-prompt) */
    char *ckpt;            /* -d/-m/--model as typed (the caller resolves it), then the checkpoint
                            * path the job opens */
    int width, height;     /* -W/-H pixels; 0: the model family's default */
    int steps;             /* --steps; 0: default (20) */
    float cfg;             /* --cfg; < 0: default (7) */
    char *sampler;         /* --sampler name (sd.cpp or A1111 spelling) */
    char *scheduler;       /* --scheduler name */
    char *rng;             /* --rng: cuda, cpu, std_default */
    uint64_t seed;         /* --seed; the caller draws one when !seed_set */
    bool seed_set;         /* -s/--seed given (and not -1) */
    int clip_skip;         /* --clip-skip; 0: the family's default */
    float eta;             /* --eta: ancestral/DDIM noise; < 0: the sampler's default */
    float strength;        /* --strength for img2img; < 0: 0.75 (A1111's default) */
    char *init_path;       /* img2img: the source image file; NULL: txt2img */
    char *out_dir;         /* the folder the PNG goes into (created 0700 when missing) */
    char *device;          /* backend name as the LLM's settings say ("auto", "cpu", "cuda") */
    int threads;           /* CPU threads; 0: physical cores */
    char *loras[MX_IMAGE_MAX_LORAS]; /* --lora FILE[:W] arguments as typed, n_loras of them */
    int n_loras;
    /* the hires fix (core/diffusion/hires.h), on when any of its options is given */
    bool hires;            /* any of the options below was given */
    float hires_scale;     /* --hires-scale; <= 0: 2 */
    int hires_width, hires_height; /* --hires-width/--hires-height; 0: from the scale */
    int hires_steps;       /* --hires-steps; 0: --steps */
    float denoise;         /* --denoise: the second pass's strength; < 0: 0.7 */
    char *hires_upscaler;  /* --hires-upscaler name; NULL: latent */
    int batch_count, batch_size; /* A1111's n_iter and batch_size; 0: 1. More than one image:
                            * each saved, and the grid is the result (the panel shows it) */
    char *preview_path;    /* NULL, or where the job writes the live preview PNG while it
                            * samples (core/diffusion/preview.h: TAESD when the checkpoint's
                            * models folder or ~ has a taesd_decoder.safetensors, else the
                            * linear map; at the automatic interval), each time before the step's
                            * MX_EV_PROGRESS: the front end shows it (tui/imagegen.c) and removes
                            * the file when the job is done */
};

/* What a finished job made. Strings owned (mx_image_result_free). */
struct mx_image_result {
    char *path;            /* the PNG written (a batch: its grid; the images beside it) */
    int n_images;          /* images made (a batch: more than 1) */
    char *infotext;        /* A1111 parameters text (also in the PNG's "parameters" chunk) */
    char *params_json;     /* the same as a JSON object (stored with the image row) */
    int w, h;              /* pixels */
    int steps;             /* sampling steps asked for (img2img runs steps * strength) */
    double seconds;        /* whole generation, model load excluded */
    double step_s;         /* mean seconds per sampling step */
    double load_s;         /* seconds spent opening the checkpoint (0: it was open) */
};

/* An SD pipeline and its backend kept open between jobs (one checkpoint at a time). */
struct mx_sd_engine;

/* Returns 0 or MX_ENOMEM. Nothing is opened until the first job. */
int mx_sd_engine_new(struct mx_sd_engine **out);
/* Closes the pipeline and the backend and frees the engine. NULL ok; never while a job runs. */
void mx_sd_engine_free(struct mx_sd_engine *e);
/* Closes the pipeline (memory back) and keeps the engine for a later job. Never while a job
 * runs. NULL ok. */
void mx_sd_engine_close(struct mx_sd_engine *e);
/* The checkpoint open now (borrowed, valid until the next job or close), or NULL. */
const char *mx_sd_engine_path(const struct mx_sd_engine *e);

/* Reads a slash command's argument: words and options, with '...' and "..." quoting and \
 * escapes as a shell does; "--" ends the options. Options (`mixel image`'s names): -n/--negative
 * (--negative-prompt), -W/--width, -H/--height, --steps, --cfg (--cfg-scale), --sampler,
 * --scheduler, -s/--seed (-1: random), --rng, --clip-skip, --eta, --strength, -d/-m/--model,
 * --lora, the hires fix's --hires-scale, --hires-width, --hires-height, --hires-steps, --denoise,
 * --hires-upscaler, and --batch-count, --batch-size.
 * Numbers are checked for form and range here; the pipeline
 * checks the rest (multiples of 8, memory). Returns 0, MX_EINVAL (err: which option and why,
 * one line) or MX_ENOMEM; *req is then empty. */
int mx_image_req_parse(const char *arg, struct mx_image_req *req, struct mx_err *err);
/* Frees the strings and empties the request. NULL ok. */
void mx_image_req_free(struct mx_image_req *req);
void mx_image_result_free(struct mx_image_result *res); /* NULL ok */

/* The status-bar text for a progress report: "image: encoding the prompt", "image 3/20 · 1.2
 * s/step · ETA 20 s" (step_s: the mean seconds per step so far, 0: none yet), "image: decoding".
 * Returns the length written (always NUL-terminated, cut at size). */
size_t mx_image_progress_text(const struct mx_sd_progress *p, double step_s, char *buf,
                              size_t size);

/* Bytes a job for req needs that are not held yet (the checkpoint's weights when another or
 * none is open, plus the working memory for the image size) into *need, and the memory the
 * machine can still give (MemAvailable; 0 unknown) into *avail. Main thread, between jobs. */
void mx_image_mem_need(const struct mx_sd_engine *e, const struct mx_image_req *req,
                       uint64_t *need, uint64_t *avail);

/* Runs req on the worker thread: opens the checkpoint when it is not the open one (notice),
 * generates with progress and cancel, writes the PNG (A1111 parameters chunk) into req->out_dir
 * and fills *res; ends with mx_job_done (0, MX_ECANCELED, or the error and its message). res is
 * emptied first and filled only on success. */
void mx_image_job_run(struct mx_job *job, struct mx_sd_engine *e, const struct mx_image_req *req,
                      struct mx_image_result *res);

/* An image engine elsewhere (net/remote_images.h: an AUTOMATIC1111-compatible server). run does
 * what mx_image_job_run does - the same events, the PNG with its "parameters" chunk written into
 * req->out_dir, *res filled (params_json with "backend": "remote"), mx_job_done at the end - so
 * the chat's /image and /img2img do not care where the picture is drawn. The server draws with
 * its loaded checkpoint unless req->ckpt names one of its own; device and threads are unused. */
struct mx_image_remote {
    char name[128];    /* "remote: HOST", for notices */
    void (*run)(struct mx_image_remote *r, struct mx_job *job, const struct mx_image_req *req,
                struct mx_image_result *res);           /* on the worker thread */
    void (*free)(struct mx_image_remote *r);            /* NULL ok as r; never while running */
};

/* Records a finished image in the session (main thread): an assistant message with caption
 * (the conversation's text for it) after the active leaf, and the image row (path, params JSON)
 * attached to it. Writes the message id to *msg_id. Errors: those of mx_db_msg_append /
 * mx_db_image_add (the message may then be stored without its image row). */
int mx_image_store(struct mx_db *db, int64_t session, const struct mx_image_result *res,
                   const char *caption, int64_t *msg_id, struct mx_err *err);

#endif
