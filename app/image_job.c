/* image_job.c - image generation as a job on the engine worker (see image_job.h): the request
 * from a slash command's words, the pipeline kept open between images, the run with progress
 * and cancel, the PNG with its A1111 parameters, and its record in the session.
 *
 * Tuned for a chat: the checkpoint (2-7 GB) is opened once and kept while the user goes on
 * drawing; a different -d reopens. Progress reaches the UI as one short text per step, which is
 * all the status bar shows.
 */
#include "app/image_job.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "app/memplan.h"
#include "app/discover.h"
#include "app/model_hash.h"
#include "core/base/util.h"
#include "core/diffusion/hires.h"
#include "core/diffusion/params_text.h"
#include "core/diffusion/preview.h"
#include "core/diffusion/rng.h"
#include "core/diffusion/sampler.h"
#include "core/diffusion/schedule.h"
#include "core/image/grid.h"
#include "core/image/image.h"
#include "history/db.h"
#include "history/paths.h"
#include "kernels/devices.h"

struct mx_sd_engine {
    struct mx_backend *be;       /* owned; opened with the first job */
    char be_device[32];          /* the device name it was opened for ("auto", "cpu", ...) */
    struct mx_sd_pipeline *p;    /* owned; NULL: none open */
    char *path;                  /* the checkpoint p was opened from (owned) */
    bool hashed;                 /* hash below computed for path */
    char hash[11];               /* A1111's "Model hash" of path; "" when it could not be read */
};

int mx_sd_engine_new(struct mx_sd_engine **out) {
    *out = calloc(1, sizeof **out);
    return *out ? 0 : MX_ENOMEM;
}

void mx_sd_engine_close(struct mx_sd_engine *e) {
    if (!e)
        return;
    mx_sd_pipeline_close(e->p);
    e->p = NULL;
    free(e->path);
    e->path = NULL;
    mx_backend_free(e->be); /* its device memory goes back too */
    e->be = NULL;
    e->hashed = false;
}

void mx_sd_engine_free(struct mx_sd_engine *e) {
    mx_sd_engine_close(e);
    free(e);
}

const char *mx_sd_engine_path(const struct mx_sd_engine *e) {
    return e && e->p ? e->path : NULL;
}

/* Bytes of the files under path (a checkpoint file, or a diffusers folder two levels deep). */
static uint64_t path_bytes(const char *path, int depth) {
    struct stat st;
    if (stat(path, &st) != 0)
        return 0;
    if (!S_ISDIR(st.st_mode))
        return (uint64_t)st.st_size;
    if (depth >= 2)
        return 0;
    static const char *const subs[] = {"unet", "vae", "text_encoder"};
    uint64_t sum = 0;
    char sub[4200];
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        /* the weights of each part: the largest file there is a fair stand-in */
        snprintf(sub, sizeof sub, "%s/%s/diffusion_pytorch_model.safetensors", path, subs[i]);
        uint64_t b = path_bytes(sub, depth + 1);
        if (!b) {
            snprintf(sub, sizeof sub, "%s/%s/model.safetensors", path, subs[i]);
            b = path_bytes(sub, depth + 1);
        }
        if (!b) {
            snprintf(sub, sizeof sub, "%s/%s/diffusion_pytorch_model.fp16.safetensors", path,
                     subs[i]);
            b = path_bytes(sub, depth + 1);
        }
        sum += b;
    }
    return sum;
}

void mx_image_mem_need(const struct mx_sd_engine *e, const struct mx_image_req *req,
                       uint64_t *need, uint64_t *avail) {
    uint64_t weights = 0;
    if (!mx_sd_engine_path(e) || !req->ckpt || strcmp(mx_sd_engine_path(e), req->ckpt))
        weights = path_bytes(req->ckpt ? req->ckpt : "", 0);
    /* working memory: latents, the UNet's activations at 1/8 scale with cfg's doubled batch and
     * the VAE decoder's full-size feature maps (512 channels at 1/8 .. 128 at full size, f32):
     * about 1.5 GB at 512x512 on stable-diffusion.cpp, scaled by the pixel count */
    double px = (double)(req->width > 0 ? req->width : 512) * (req->height > 0 ? req->height : 512);
    *need = weights + (uint64_t)(1.5e9 * px / (512.0 * 512.0)) + (256u << 20);
    *avail = mx_app_mem_available();
}

/* ---- the run --------------------------------------------------------------------------------- */

/* What the progress callback needs: the job (cancel, events) and the sampling clock. */
struct progress_ud {
    struct mx_job *job;
    struct mx_sd_preview *pv;    /* the live preview, or NULL */
    const char *preview_path;    /* where it goes */
    int w, h;                    /* the image's final size */
    double t_sample0;            /* elapsed_s when sampling started (-1: not yet) */
    double step_s;               /* mean seconds per step so far */
};

/* Posts a progress text per report; returns non-zero once the user cancelled (the pipeline then
 * stops within one UNet evaluation). */
static int on_progress(void *ud, const struct mx_sd_progress *p) {
    struct progress_ud *pu = ud;
    if (p->phase == MX_SD_PHASE_SAMPLE) {
        if (pu->t_sample0 < 0 || p->step == 0)
            pu->t_sample0 = p->elapsed_s - (p->step > 0 ? p->step * p->step_s : 0);
        if (p->step > 0)
            pu->step_s = (p->elapsed_s - pu->t_sample0) / p->step;
    }
    if (pu->pv && mx_sd_preview_due(pu->pv, p)) {
        struct mx_image img;
        struct mx_err err = {0};
        /* best effort: a preview that cannot be made or written is just not shown */
        if (mx_sd_preview_make(pu->pv, p, pu->w, pu->h, &img, &err) == 0) {
            mx_image_save_png(&img, pu->preview_path, NULL);
            mx_image_free(&img);
        }
    }
    char text[160];
    mx_image_progress_text(p, pu->step_s, text, sizeof text);
    mx_job_post(pu->job, MX_EV_PROGRESS, text, p->phase == MX_SD_PHASE_SAMPLE ? p->step : 0,
                p->phase == MX_SD_PHASE_SAMPLE ? p->steps : 0);
    return mx_job_canceled(pu->job);
}

/* Opens req's checkpoint unless it is the one open (closing the other first). */
static int engine_open(struct mx_job *job, struct mx_sd_engine *e, const struct mx_image_req *req,
                       double *load_s, struct mx_err *err) {
    const char *dev = req->device && req->device[0] ? req->device : "auto";
    *load_s = 0;
    if (e->p && !strcmp(e->path, req->ckpt) && !strcmp(e->be_device, dev))
        return 0;
    mx_sd_engine_close(e);
    const char *base = strrchr(req->ckpt, '/');
    char note[512];
    snprintf(note, sizeof note, "loading the image model %s\xe2\x80\xa6",
             base ? base + 1 : req->ckpt);
    mx_job_post(job, MX_EV_NOTICE, note, 0, 0);
    double t0 = mx_time_s();
    /* the same device choice as the LLM (app/llm.c): the registry picks or honours --device */
    if (!(e->be = mx_device_open(dev, req->threads, err)))
        return err && err->code ? err->code : MX_EIO;
    snprintf(e->be_device, sizeof e->be_device, "%s", dev);
    int rc = mx_sd_pipeline_open(e->be, req->ckpt, NULL, &e->p, err);
    if (rc == 0 && !(e->path = strdup(req->ckpt)))
        rc = mx_err_set(err, MX_ENOMEM, "out of memory");
    if (rc != 0) {
        mx_sd_engine_close(e);
        return rc;
    }
    *load_s = mx_time_s() - t0;
    return 0;
}

/* The sampler, schedule and RNG names of req as the pipeline's enums in par (NULL: keep). */
static int resolve_names(const struct mx_image_req *req, struct mx_sd_params *par,
                         struct mx_err *err) {
    int rc = 0, v, sched = -1;
    if (req->sampler) {
        if ((rc = mx_sd_sampler_parse(req->sampler, &v, &sched, err)) != 0)
            return rc;
        par->sampler = v;
        /* "DPM++ 2M Karras" names the schedule too; else the sampler's own (ddim_trailing:
         * simple, as stable-diffusion.cpp), which --scheduler overrides below */
        par->scheduler = sched >= 0 ? sched : mx_sd_schedule_default(v);
    }
    if (req->scheduler) {
        if ((rc = mx_sd_schedule_parse(req->scheduler, &v, err)) != 0)
            return rc;
        par->scheduler = v;
    }
    if (req->rng) {
        if ((rc = mx_sd_rng_parse(req->rng, &v, err)) != 0)
            return rc;
        par->rng = v;
    }
    return 0;
}

/* The record of an image as JSON (stored with its row; `mixel sessions export` shows it). */
static char *params_json(const struct mx_image_req *req, const struct mx_sd_params *par,
                         const struct mx_sd_hires *hr, const struct mx_image_result *res) {
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_object_set_new(o, "source", json_string(req->init_path ? "img2img" : "txt2img"));
    json_object_set_new(o, "prompt", json_string(par->prompt));
    json_object_set_new(o, "negative", json_string(par->negative));
    json_object_set_new(o, "steps", json_integer(par->steps));
    json_object_set_new(o, "cfg", json_real(par->cfg));
    json_object_set_new(o, "sampler", json_string(mx_sd_sampler_name(par->sampler)));
    json_object_set_new(o, "scheduler", json_string(mx_sd_schedule_name(mx_sd_params_schedule(par))));
    json_object_set_new(o, "seed", json_integer((json_int_t)par->seed));
    json_object_set_new(o, "rng", json_string(mx_sd_rng_name(par->rng)));
    json_object_set_new(o, "width", json_integer(res->w));
    json_object_set_new(o, "height", json_integer(res->h));
    json_object_set_new(o, "clip_skip", json_integer(par->clip_skip));
    if (req->init_path) {
        json_object_set_new(o, "strength", json_real(par->strength));
        json_object_set_new(o, "init", json_string(req->init_path));
    }
    if (hr->enabled) {
        json_object_set_new(o, "hires_upscaler",
                            json_string(mx_sd_upscaler_a1111_name(hr->upscaler)));
        json_object_set_new(o, "hires_scale", json_real(hr->scale));
        json_object_set_new(o, "hires_steps", json_integer(hr->steps));
        json_object_set_new(o, "denoising_strength", json_real(hr->strength));
    }
    if (res->n_images > 1)
        json_object_set_new(o, "grid_of", json_integer(res->n_images));
    json_object_set_new(o, "model", json_string(req->ckpt));
    json_object_set_new(o, "seconds", json_real(res->seconds));
    json_object_set_new(o, "parameters", json_string(res->infotext ? res->infotext : ""));
    char *s = json_dumps(o, JSON_REAL_PRECISION(6));
    json_decref(o);
    return s;
}

/* A file name for the image that no earlier one has: <ms since the epoch>-<seed>.png. */
static int out_path(const struct mx_image_req *req, uint64_t seed, const char *suffix,
                    char **out, struct mx_err *err) {
    int rc = mx_mkdir_p(req->out_dir, err);
    if (rc != 0)
        return rc;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    size_t n = strlen(req->out_dir) + strlen(suffix) + 64;
    if (!(*out = malloc(n)))
        return mx_err_set(err, MX_ENOMEM, "out of memory");
    for (int k = 0; k < 100; k++) {
        snprintf(*out, n, "%s/%lld-%llu%s%s%.0d.png", req->out_dir, ms,
                 (unsigned long long)seed, suffix, k ? "-" : "", k);
        if (access(*out, F_OK) != 0)
            return 0;
    }
    free(*out);
    *out = NULL;
    return mx_err_set(err, MX_EIO, "%s: no free file name for the image", req->out_dir);
}

void mx_image_job_run(struct mx_job *job, struct mx_sd_engine *e, const struct mx_image_req *req,
                      struct mx_image_result *res) {
    struct mx_err err = {0};
    struct mx_image init = {0}, img = {0};
    struct mx_image_result r = {0};
    char **lora_dirs = NULL, **emb_dirs = NULL;
    struct mx_image *made = NULL; /* a batch's images, for the grid */
    int n_made = 0;
    struct mx_sd_preview *pu_pv = NULL; /* the live preview (owned; pu.pv borrows it) */
    memset(res, 0, sizeof *res);
    int rc = engine_open(job, e, req, &r.load_s, &err);
    if (rc != 0)
        goto done;
    struct mx_sd_params par;
    mx_sd_params_default(&par, e->p);
    par.prompt = req->prompt ? req->prompt : "";
    par.negative = req->negative ? req->negative : "";
    if (req->width)
        par.width = req->width;
    if (req->height)
        par.height = req->height;
    if (req->steps)
        par.steps = req->steps;
    if (req->cfg >= 0)
        par.cfg = req->cfg;
    if (req->clip_skip)
        par.clip_skip = req->clip_skip;
    if (req->eta >= 0)
        par.eta = req->eta;
    par.seed = req->seed;
    if ((rc = resolve_names(req, &par, &err)) != 0)
        goto done;
    if (req->init_path) {
        if ((rc = mx_image_load(req->init_path, &init, &err)) != 0)
            goto done;
        par.init = &init;
        par.strength = req->strength > 0 ? req->strength : 0.75f;
        /* no size given: the source's, rounded down to a multiple of 8 (A1111 resizes to the
         * size asked, which defaults to the source's) */
        if (!req->width)
            par.width = init.w / 8 * 8;
        if (!req->height)
            par.height = init.h / 8 * 8;
    }
    /* <lora:NAME:W> in the prompt: NAME.safetensors in the LoRA folders of the checkpoint */
    if ((rc = mx_discover_lora_dirs(getenv("HOME"), req->ckpt, &lora_dirs, &err)) != 0)
        goto done;
    par.lora_dirs = (const char *const *)lora_dirs;
    /* textual-inversion embeddings the prompt calls: the checkpoint's embeddings folders */
    if ((rc = mx_discover_embedding_dirs(getenv("HOME"), req->ckpt, NULL, &emb_dirs, &err)) != 0)
        goto done;
    par.embedding_dirs = (const char *const *)emb_dirs;
    struct mx_sd_lora_req loras[MX_IMAGE_MAX_LORAS];
    char lora_paths[MX_IMAGE_MAX_LORAS][4096];
    for (int i = 0; i < req->n_loras && rc == 0; i++) {
        float w = 1.0f;
        rc = mx_sd_lora_arg_parse(req->loras[i], lora_paths[i], sizeof lora_paths[i], &w, &err);
        loras[i] = (struct mx_sd_lora_req){lora_paths[i], w, w};
    }
    if (rc != 0)
        goto done;
    par.loras = loras;
    par.n_loras = req->n_loras;
    if ((rc = mx_sd_params_check(e->p, &par, &err)) != 0)
        goto done;
    struct mx_sd_hires hr;
    mx_sd_hires_default(&hr);
    if (req->hires) {
        hr.enabled = true;
        if (req->hires_scale > 0)
            hr.scale = req->hires_scale;
        hr.width = req->hires_width;
        hr.height = req->hires_height;
        hr.steps = req->hires_steps;
        if (req->denoise >= 0)
            hr.strength = req->denoise;
        if (req->hires_upscaler &&
            (rc = mx_sd_upscaler_parse(req->hires_upscaler, &hr.upscaler, &err)) != 0)
            goto done;
        if (req->init_path) {
            rc = mx_err_set(&err, MX_EINVAL, "the hires fix is for /image, not /img2img");
            goto done;
        }
        if ((rc = mx_sd_hires_check(e->p, &par, &hr, &err)) != 0)
            goto done;
    }
    int n = (req->batch_count > 0 ? req->batch_count : 1) *
            (req->batch_size > 0 ? req->batch_size : 1);
    if (n > 1 && !(made = calloc((size_t)n, sizeof *made))) {
        rc = mx_err_set(&err, MX_ENOMEM, "out of memory");
        goto done;
    }
    struct progress_ud pu = {.job = job, .t_sample0 = -1, .preview_path = req->preview_path,
                             .w = par.width, .h = par.height};
    if (hr.enabled) {
        int uw, uh;
        mx_sd_hires_sizes(&hr, par.width, par.height, &uw, &uh, &pu.w, &pu.h, NULL);
    }
    if (req->preview_path) {
        mx_mkdir_p(req->out_dir, NULL); /* the preview comes before the first image */
        char tf[4096];
        /* SDXL latents have their own TAESD (taesdxl) and linear factors */
        bool xl = mx_sd_pipeline_model(e->p)->family == MX_SD_FAMILY_SDXL;
        enum mx_sd_preview_space sp = xl ? MX_SD_PREVIEW_SDXL : MX_SD_PREVIEW_SD1;
        bool have = mx_discover_taesd(getenv("HOME"), req->ckpt, xl, tf, sizeof tf) == 0;
        struct mx_err perr = {0};
        if (mx_sd_preview_new(e->be, sp, have ? tf : NULL, 0, &pu.pv, &perr) != 0) {
            char note[600];
            snprintf(note, sizeof note, "preview: %s; the linear approximation instead", perr.msg);
            mx_job_post(job, MX_EV_NOTICE, note, 0, 0);
            mx_sd_preview_new(e->be, sp, NULL, 0, &pu.pv, NULL);
        }
        pu_pv = pu.pv;
    }
    double t0 = mx_time_s();
    char lh[1024], th[1024];
    for (int i = 0; i < n; i++) {
        if (n > 1) {
            char note[64];
            snprintf(note, sizeof note, "image %d of %d", i + 1, n);
            mx_job_post(job, MX_EV_PROGRESS, note, 0, 0);
        }
        pu.t_sample0 = -1;
        if ((rc = mx_sd_generate_hires(e->p, &par, &hr, i, &img, on_progress, &pu, &err)) != 0)
            goto done;
        /* A1111's "Model hash": the file's SHA-256, read once and cached (app/model_hash.h); an
         * image is not lost for want of it */
        if (!e->hashed) { /* once per opened checkpoint */
            mx_job_post(job, MX_EV_PROGRESS, "image: the checkpoint's hash (read once per file)",
                        0, 0);
            if (mx_sd_model_hash(req->ckpt, e->hash, NULL) != 0)
                e->hash[0] = '\0';
            e->hashed = true;
        }
        char *text = NULL, *path = NULL;
        uint64_t seed = par.seed + (uint64_t)i;
        if ((rc = mx_sd_params_to_infotext_full(&par, &hr, seed, req->ckpt, e->hash,
                                                mx_sd_pipeline_lora_hashes(e->p, lh, sizeof lh),
                                                mx_sd_pipeline_ti_hashes(e->p, th, sizeof th),
                                                &text, &err)) != 0)
            goto done;
        if ((rc = out_path(req, seed, "", &path, &err)) == 0)
            rc = mx_image_save_png_text(&img, path, "parameters", text, &err);
        if (rc == 0 && i == 0) { /* the result (a batch's parameters are its first image's) */
            r.infotext = text;
            r.path = path;
            r.w = img.w;
            r.h = img.h;
            text = path = NULL;
        }
        free(text);
        free(path);
        if (rc != 0)
            goto done;
        if (made)
            made[n_made++] = img;
        else
            mx_image_free(&img);
        memset(&img, 0, sizeof img);
    }
    r.seconds = mx_time_s() - t0;
    r.step_s = pu.step_s;
    r.steps = par.steps; /* as asked (img2img runs fewer: A1111 says the same) */
    r.n_images = n;
    if (made) { /* the contact sheet is what the conversation shows */
        struct mx_image sheet;
        char *gpath = NULL;
        if ((rc = mx_image_grid(made, n_made, 0, &sheet)) != 0) {
            rc = mx_err_set(&err, rc, "grid of %d images: cannot be made", n_made);
            goto done;
        }
        rc = out_path(req, par.seed, "-grid", &gpath, &err);
        if (rc == 0)
            rc = mx_image_save_png_text(&sheet, gpath, "parameters", r.infotext, &err);
        if (rc == 0) {
            r.w = sheet.w;
            r.h = sheet.h;
            free(r.path);
            r.path = gpath;
            gpath = NULL;
        }
        free(gpath);
        mx_image_free(&sheet);
        if (rc != 0)
            goto done;
    }
    if (!(r.params_json = params_json(req, &par, &hr, &r))) {
        rc = mx_err_set(&err, MX_ENOMEM, "out of memory");
        goto done;
    }
    *res = r;
    memset(&r, 0, sizeof r);
done:
    for (int i = 0; i < n_made; i++)
        mx_image_free(&made[i]);
    free(made);
    mx_sd_preview_free(pu_pv);
    mx_discover_lora_dirs_free(lora_dirs);
    mx_discover_lora_dirs_free(emb_dirs);
    mx_image_result_free(&r);
    mx_image_free(&img);
    mx_image_free(&init);
    mx_job_done(job, rc, rc ? mx_err_msg(&err, rc) : NULL);
}

int mx_image_store(struct mx_db *db, int64_t session, const struct mx_image_result *res,
                   const char *caption, int64_t *msg_id, struct mx_err *err) {
    *msg_id = 0;
    int rc = mx_db_msg_append(db, session, MX_DB_PARENT_LEAF, MX_ROLE_ASSISTANT, caption, 0, NULL,
                              msg_id, err);
    if (rc == 0)
        rc = mx_db_image_add(db, session, *msg_id, res->path, res->params_json, NULL, err);
    return rc;
}
