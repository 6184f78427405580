/* imagegen.c - /image and /img2img in the chat: the command's words read into a request
 * (app/image_job.h), the checkpoint chosen (the one given, else the session's, else --sd-model,
 * else the first discovered) and remembered with the session, the job run on the engine worker
 * like an answer (Esc cancels, messages typed meanwhile are queued), its progress in the status
 * bar, and the finished image stored in the session and shown under its message and in the
 * gallery, as /show images are.
 *
 * With --remote-images an A1111-compatible server draws instead (app/image_job.h's
 * mx_image_remote, made by cli/): no checkpoint is chosen here (the server's, or -d naming one of
 * its own), no memory is made room for, and the rest - progress, Esc, the stored PNG - is the
 * same.
 *
 * Memory: the chat model stays loaded while both fit. When the machine cannot hold the image
 * model beside it (MemAvailable before the job, or the job failing with MX_ENOMEM), the chat
 * model is unloaded with a notice, and loaded again (the image model freed) by the next message.
 */
#include "tui/imagegen.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/llm.h"
#include "core/base/err.h"
#include "core/base/text.h"
#include "tui/images.h"
#include "core/base/util.h"
#include "history/paths.h"
#include "tui/conv.h"
#include "tui/load.h"
#include "tui/status.h"
#include "tui/store.h"

/* The running (or last) image job: the worker runs one job at a time. */
static struct {
    struct mx_sd_engine *engine;  /* borrowed from a->imgen.engine */
    struct mx_image_req req;
    struct mx_image_result res;
    int preview_msg;              /* the conversation's "forming" message + 1 (0: none) */
    struct timespec preview_mtime;/* of the preview file when last loaded */
} g_img;

/* The text of the message that shows the live preview while an image is sampled. */
#define PREVIEW_TEXT "[preview: the picture forming\xe2\x80\xa6]"

/* The live-preview message, or NULL (none, or the conversation changed under it). */
static struct msg *preview_msg(struct app *a) {
    int i = g_img.preview_msg - 1;
    if (i < 0 || i >= a->conv.n_msgs || !a->conv.msgs[i].text ||
        strcmp(a->conv.msgs[i].text, PREVIEW_TEXT) != 0)
        return NULL;
    return &a->conv.msgs[i];
}

/* Takes the live-preview message out of the conversation and removes its file. */
static void preview_end(struct app *a) {
    struct msg *m = preview_msg(a);
    if (m) {
        int i = (int)(m - a->conv.msgs);
        mx_app_msg_free(m);
        memmove(m, m + 1, (size_t)(a->conv.n_msgs - i - 1) * sizeof *m);
        a->conv.n_msgs--;
        a->frame.full_repaint = true;
    }
    g_img.preview_msg = 0;
    if (g_img.req.preview_path)
        unlink(g_img.req.preview_path);
}

/* Shows the preview file in its message when the job wrote a new one since the last look. */
static void preview_poll(struct app *a) {
    struct msg *m = preview_msg(a);
    struct stat st;
    if (!m || !g_img.req.preview_path || stat(g_img.req.preview_path, &st) != 0)
        return;
    if (st.st_mtim.tv_sec == g_img.preview_mtime.tv_sec &&
        st.st_mtim.tv_nsec == g_img.preview_mtime.tv_nsec)
        return;
    g_img.preview_mtime = st.st_mtim;
    if (!m->image && !(m->image = strdup(g_img.req.preview_path)))
        return;
    /* drop the cached pixels: the next frame loads the new picture */
    mx_app_msg_img_drop(m);
    m->r_valid = false;
    a->frame.full_repaint = true;
}

static void image_job_fn(struct mx_job *job, void *ud) {
    struct mx_image_remote *remote = ud; /* NULL: the local engine */
    if (remote)
        remote->run(remote, job, &g_img.req, &g_img.res);
    else
        mx_image_job_run(job, g_img.engine, &g_img.req, &g_img.res);
}

/* The file name of a path, for notices. */
static const char *base_name(const char *path) {
    const char *s = strrchr(path, '/');
    return s && s[1] ? s + 1 : path;
}

/* path with a leading ~/ expanded, resolved (realpath) into out. Returns 0 or -1 (errno). */
static int resolve_path(const char *path, char *out, size_t size) {
    char tmp[4200];
    const char *home = getenv("HOME");
    if (path[0] == '~' && (path[1] == '/' || !path[1]) && home)
        snprintf(tmp, sizeof tmp, "%s%s", home, path + 1);
    else
        snprintf(tmp, sizeof tmp, "%s", path);
    char real[4096];
    if (!realpath(tmp, real))
        return -1;
    if (strlen(real) >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(out, real, strlen(real) + 1);
    return 0;
}

/* The checkpoint for a request without -d: the session's, --sd-model, else the first SD
 * checkpoint found on this machine (app/discover.h). Returns a path (owned by the caller) or
 * NULL. */
static char *default_ckpt(struct app *a) {
    if (a->imgen.ckpt)
        return strdup(a->imgen.ckpt);
    if (a->o.sd_model && a->o.sd_model[0]) {
        char p[4096];
        return resolve_path(a->o.sd_model, p, sizeof p) == 0 ? strdup(p) : strdup(a->o.sd_model);
    }
    /* the first SD 1.x/2.x checkpoint found where A1111, ComfyUI and the hub keep them */
    char cwd[4096];
    return mx_discover_sd_default(getenv("HOME"), getcwd(cwd, sizeof cwd));
}

/* Unloads the chat model to make room for the image model (only one that can be loaded again),
 * saying so. Returns true when it did. */
static bool park_llm(struct app *a, const char *why) {
    if (!a->o.engine || !a->o.load_engine || !a->o.model_path || a->imgen.parked_llm)
        return false;
    char *path = strdup(a->o.model_path);
    if (!path)
        return false;
    mx_app_snapshot_save(a); /* the conversation's processed context, for the reload */
    if (a->load.owned == a->o.engine)
        a->load.owned = NULL;
    a->o.engine->free(a->o.engine);
    a->o.engine = NULL;
    a->imgen.parked_llm = path;
    mx_app_notice(a, false, "unloaded the chat model %s to make room for the image model (%s); "
                  "your next message loads it again", base_name(path), why);
    return true;
}

bool mx_app_image_unpark(struct app *a) {
    if (!a->imgen.parked_llm || a->o.engine || a->gen.busy || a->load.busy)
        return false;
    mx_sd_engine_close(a->imgen.engine); /* the room the chat model needs */
    char *path = a->imgen.parked_llm;
    a->imgen.parked_llm = NULL;
    mx_app_notice(a, false, "loading the chat model %s again (the image model is unloaded)",
                  base_name(path));
    mx_app_load_start(a, path);
    free(path);
    a->imgen.answer_after_load = a->load.busy;
    return a->load.busy;
}

/* Starts g_img.req on the worker (the request is complete). */
static void job_start(struct app *a) {
    g_img.engine = a->imgen.engine;
    if (mx_worker_start(a->w, image_job_fn, a->o.remote_images) != 0) {
        mx_app_notice(a, true, "could not start the image job");
        mx_image_req_free(&g_img.req);
        return;
    }
    a->gen.busy = true;
    a->gen.image = true;
    a->gen.t0 = mx_time_s();
    a->gen.tok_s = 0;
    g_img.preview_msg = 0;
    memset(&g_img.preview_mtime, 0, sizeof g_img.preview_mtime);
    if (g_img.req.preview_path && mx_app_msg_add(a, MX_ROLE_ASSISTANT, MSG_DONE, PREVIEW_TEXT))
        g_img.preview_msg = a->conv.n_msgs;
    mx_app_image_progress(a, "image: starting");
}

/* The conversation's last image (a /show attachment or a generated one), or NULL. */
static const char *last_image(const struct app *a) {
    for (int i = a->conv.n_msgs - 1; i >= 0; i--)
        if (a->conv.msgs[i].image)
            return a->conv.msgs[i].image;
    return NULL;
}

/* /image and /img2img: img2img takes the conversation's last image as the source. */
static void image_cmd(struct app *a, const char *cmd, const char *arg, bool img2img) {
    if (a->gen.busy || a->load.busy) {
        mx_app_notice(a, true, "%s: busy: wait for the answer or image (Esc stops it)", cmd);
        return;
    }
    struct mx_image_req req;
    struct mx_err err = {0};
    if (mx_image_req_parse(arg, &req, &err) != 0) {
        mx_app_notice(a, true, "%s: %s", cmd, err.msg);
        return;
    }
    if (!req.prompt[0]) {
        mx_app_notice(a, true, "%s takes a prompt, then options: -n NEGATIVE, -W/-H PIXELS, "
                      "--steps N, --cfg S, --sampler NAME, --seed N, -d CHECKPOINT, "
                      "--lora FILE[:W]%s", cmd,
                      img2img ? ", --strength S" : "");
        goto fail;
    }
    if (!img2img && req.strength > 0) {
        mx_app_notice(a, true, "/image: --strength is for /img2img (how much of the source "
                      "image is redrawn)");
        goto fail;
    }
    char path[4096];
    if (!a->o.remote_images && req.ckpt) {
        /* a path, else a name as `mixel list` shows it (as `mixel image -d NAME` takes); a
         * server's checkpoint (--remote-images) is the server's to resolve */
        char *named = NULL;
        char cwd[4096];
        if (resolve_path(req.ckpt, path, sizeof path) != 0) {
            int e = errno;
            if (mx_discover_sd_resolve(getenv("HOME"), getcwd(cwd, sizeof cwd), NULL, req.ckpt,
                                       &named, NULL) != 0 || !named) {
                mx_app_notice(a, true, "%s: -d %s: %s (nor is it a checkpoint `mixel list` "
                              "shows)", cmd, req.ckpt, strerror(e));
                goto fail;
            }
            snprintf(path, sizeof path, "%s", named);
            free(named);
        }
        free(req.ckpt);
        if (!(req.ckpt = strdup(path))) {
            mx_app_notice(a, true, "%s: out of memory", cmd);
            goto fail;
        }
    }
    if (img2img) {
        const char *src = last_image(a);
        if (!src) {
            mx_app_notice(a, true, "/img2img: the conversation has no image yet (/image makes "
                          "one, /show attaches one)");
            goto fail;
        }
        if (!(req.init_path = strdup(src))) {
            mx_app_notice(a, true, "%s: out of memory", cmd);
            goto fail;
        }
    }
    mx_app_image_request(a, cmd, &req, false);
    return;
fail:
    mx_image_req_free(&req);
}

int mx_app_image_request(struct app *a, const char *cmd, struct mx_image_req *reqp,
                         bool for_tool) {
    struct mx_image_req req = *reqp;
    struct mx_err err = {0};
    memset(reqp, 0, sizeof *reqp);
    const bool remote = a->o.remote_images != NULL;
    if (a->gen.busy || a->load.busy) {
        mx_app_notice(a, true, "%s: busy: wait for the answer or image (Esc stops it)", cmd);
        goto fail;
    }
    if (remote && (req.hires || req.batch_count > 1 || req.batch_size > 1)) {
        mx_app_notice(a, true, "%s: the hires fix and batches are for local images (not with "
                      "--remote-images)", cmd);
        goto fail;
    }
    if (!remote && !req.ckpt && !(req.ckpt = default_ckpt(a))) {
        mx_app_notice(a, true, "%s: no image model: give one with -d CHECKPOINT.safetensors "
                      "(kept for this session) or start mixel with --sd-model PATH", cmd);
        goto fail;
    }
    if (!req.seed_set) /* A1111's seed range: what its UI and the infotext show */
        req.seed = mx_gen_fresh_seed() & 0xffffffffu;
    char dir[4096];
    if (mx_path_data_dir(dir, sizeof dir, &err) != 0) {
        mx_app_notice(a, true, "%s: %s", cmd, err.msg);
        goto fail;
    }
    size_t n = strlen(dir) + 8;
    if ((req.out_dir = malloc(n)))
        snprintf(req.out_dir, n, "%s/images", dir);
    req.device = strdup(a->settings.device ? a->settings.device : "auto");
    req.threads = a->settings.threads;
    if ((!remote && !req.ckpt) || !req.out_dir || !req.device) {
        mx_app_notice(a, true, "%s: out of memory", cmd);
        goto fail;
    }
    if (remote) {
        mx_image_req_free(&g_img.req);
        mx_image_result_free(&g_img.res);
        g_img.req = req;
        a->imgen.retried = true; /* no memory to make room for */
    } else {
        if (!a->imgen.engine && mx_sd_engine_new(&a->imgen.engine) != 0) {
            mx_app_notice(a, true, "%s: out of memory", cmd);
            goto fail;
        }
        /* the checkpoint is the session's from now on: remembered with its settings */
        if (!a->imgen.ckpt || strcmp(a->imgen.ckpt, req.ckpt)) {
            free(a->imgen.ckpt);
            a->imgen.ckpt = strdup(req.ckpt);
            mx_app_ensure_session(a);
            mx_app_store_settings(a);
        }
        /* both models where both fit; else the chat model makes room (and comes back later) */
        uint64_t need, avail;
        mx_image_mem_need(a->imgen.engine, &req, &need, &avail);
        if (avail && need > avail) {
            char why[96];
            snprintf(why, sizeof why, "it needs %.1f GB, %.1f GB are free", need / 1e9,
                     avail / 1e9);
            park_llm(a, why);
        }
        /* the picture forming, shown in the conversation while it is sampled */
        size_t pn = strlen(req.out_dir) + 48;
        if ((req.preview_path = malloc(pn)))
            snprintf(req.preview_path, pn, "%s/.preview-%ld.png", req.out_dir, (long)getpid());
        mx_image_req_free(&g_img.req);
        mx_image_result_free(&g_img.res);
        g_img.req = req;
        a->imgen.retried = false;
    }
    a->imgen.for_tool = for_tool;
    a->conv.scroll = 0;
    mx_app_notice_clear(a);
    job_start(a);
    if (!a->gen.busy)
        a->imgen.for_tool = false;
    return a->gen.busy ? 0 : -1;
fail:
    mx_image_req_free(&req);
    return -1;
}

void mx_app_cmd_image(struct app *a, const char *arg) {
    image_cmd(a, "/image", arg, false);
}

void mx_app_cmd_img2img(struct app *a, const char *arg) {
    image_cmd(a, "/img2img", arg, true);
}

void mx_app_image_progress(struct app *a, const char *text) {
    char clean[MX_SANITIZE_MAX(200)];
    size_t n = mx_text_sanitize(text ? text : "", strnlen(text ? text : "", 200), clean, false);
    snprintf(a->status.prog, sizeof a->status.prog, "%.*s (Esc cancels)", (int)n, clean);
    preview_poll(a);
}

void mx_app_image_done(struct app *a, int code, const char *msg) {
    preview_end(a);
    a->gen.busy = false;
    a->gen.image = false;
    mx_app_progress_end(a);
    if (code == MX_ENOMEM && !a->imgen.retried && a->o.engine &&
        park_llm(a, "there was no room for both")) {
        /* once more, with the chat model's memory given back */
        a->imgen.retried = true;
        job_start(a);
        return;
    }
    char *result = a->imgen.result; /* gen.c hands it to the tool call that asked (for_tool) */
    size_t rsize = sizeof a->imgen.result;
    result[0] = '\0';
    if (code == MX_ECANCELED) {
        mx_app_notice(a, false, "image cancelled: nothing was saved");
        snprintf(result, rsize, "the user stopped the image: nothing was drawn");
    } else if (code != 0) {
        snprintf(result, rsize, "no image: %s", msg && msg[0] ? msg : mx_strerror(code));
        mx_app_notice_detail(a, true, msg, "no image: %s", msg && msg[0] ? msg : mx_strerror(code));
    } else {
        const struct mx_image_result *r = &g_img.res;
        const struct mx_image_req *q = &g_img.req;
        char caption[1024];
        snprintf(caption, sizeof caption, "[image: %s, %dx%d, seed %llu, %d step%s, %.1f s%s] %s",
                 base_name(r->path), r->w, r->h, (unsigned long long)q->seed, r->steps,
                 r->steps == 1 ? "" : "s", r->seconds, q->init_path ? ", from the last image" : "",
                 q->prompt);
        int64_t id = 0;
        if (mx_app_ensure_session(a) == 0) {
            struct mx_err err = {0};
            int rc = mx_image_store(a->store.db, a->store.session, r, caption, &id, &err);
            if (rc != 0)
                mx_app_store_warn(a, &err, rc);
        }
        struct msg *m = mx_app_msg_add(a, MX_ROLE_ASSISTANT, MSG_DONE, caption);
        if (m) {
            m->db_id = id;
            m->image = strdup(r->path);
        }
        if (!a->store.title[0])
            mx_app_store_refresh_title(a);
        a->conv.scroll = 0;
        mx_app_notice(a, false, "image saved in %s (%.2f s/step%s); F3 shows it full screen",
                      r->path, r->step_s,
                      r->load_s > 0 ? ", the model loaded first" : "");
        snprintf(result, rsize, "the image is drawn and shown to the user: %s, %dx%d, "
                 "seed %llu, %d step%s", base_name(r->path), r->w, r->h,
                 (unsigned long long)q->seed, r->steps, r->steps == 1 ? "" : "s");
    }
    mx_image_result_free(&g_img.res);
}

void mx_app_image_deinit(struct app *a) {
    mx_image_req_free(&g_img.req);
    mx_image_result_free(&g_img.res);
    memset(&g_img, 0, sizeof g_img);
    mx_sd_engine_free(a->imgen.engine);
    a->imgen.engine = NULL;
    free(a->imgen.ckpt);
    free(a->imgen.parked_llm);
    a->imgen.ckpt = a->imgen.parked_llm = NULL;
    if (a->o.remote_images)
        a->o.remote_images->free(a->o.remote_images);
    a->o.remote_images = NULL;
}
