/* remote_images.c - the A1111-compatible image client (see remote_images.h).
 *
 * One image is one POST that blocks until the server has drawn it (tens of seconds on a busy
 * GPU box); a second thread polls /sdapi/v1/progress twice a second meanwhile, as A1111's own
 * web page does, and turns its step counts into the same progress text a local job shows.
 */
#include "net/remote_images.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base/util.h"
#include "core/diffusion/sampler.h"
#include "core/diffusion/schedule.h"
#include "core/image/image.h"
#include "core/image/png_text.h"
#include "history/paths.h"
#include "net/base64.h"
#include "net/remote_http.h"

#define POLL_S 0.5          /* between progress polls */
#define SOURCE_MAX ((size_t)64 << 20) /* largest img2img source file sent */

/* Monotonic seconds: the image's timings and the poll clock. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The server's root ("http://h:7860") from what the user gave: no trailing '/', no "/sdapi/v1".
 * Returns a new string or NULL (OOM; or not http(s): *bad). */
static char *server_root(const char *url, bool *bad) {
    *bad = !url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8));
    if (*bad)
        return NULL;
    size_t n = strlen(url);
    while (n > 8 && url[n - 1] == '/')
        n--;
    if (n > 9 + 8 && !strncmp(url + n - 9, "/sdapi/v1", 9))
        n -= 9;
    char *s = strndup(url, n);
    return s;
}

/* root + path, or NULL (OOM). */
static char *join(const char *root, const char *path) {
    size_t n = strlen(root) + strlen(path) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", root, path);
    return s;
}

/* A request to url with o's key, timeouts and retries (defaults for what is unset). */
static struct mx_http_req request(const struct mx_remote_opts *o, const char *url) {
    return (struct mx_http_req){
        .url = url, .api_key = o->api_key,
        .connect_timeout_s = o->connect_timeout_s > 0 ? o->connect_timeout_s : 10,
        /* the POST is silent until the image is done: the stall clock allows for a slow GPU */
        .stall_timeout_s = o->stall_timeout_s > 0 ? o->stall_timeout_s : 600,
        .retries = o->retries >= 0 ? o->retries : 3,
    };
}

/* ---- progress ------------------------------------------------------------------------------- */

/* The progress thread's state, shared with the request's thread. */
struct poller {
    const struct mx_remote_opts *o;      /* borrowed: the server */
    const struct mx_remote_image_io *io; /* borrowed: where progress goes, the cancel flag */
    char *url;                  /* owned: root + /sdapi/v1/progress */
    atomic_bool stop;           /* set when the POST is over */
    double t0;                  /* when the request began */
};

/* The poller ends when the image request is over or the user cancelled. */
static bool poll_stopped(void *ud) {
    struct poller *p = ud;
    return atomic_load(&p->stop) || (p->io->canceled && p->io->canceled(p->io->ud));
}

/* One progress answer into the status text. */
static void report(struct poller *p, const char *body, size_t n) {
    json_t *j = json_loadb(body, n, 0, NULL);
    json_t *st = json_object_get(j, "state");
    json_t *k = json_object_get(st, "sampling_step"), *of = json_object_get(st, "sampling_steps");
    json_t *eta = json_object_get(j, "eta_relative");
    if (json_is_integer(k) && json_is_integer(of) && json_integer_value(of) > 0) {
        struct mx_sd_progress pr = {
            .phase = MX_SD_PHASE_SAMPLE,
            .step = (int)json_integer_value(k),
            .steps = (int)json_integer_value(of),
            .elapsed_s = now_s() - p->t0,
        };
        double step_s = pr.step > 0 ? pr.elapsed_s / pr.step : 0;
        char text[160];
        size_t len = mx_image_progress_text(&pr, step_s, text, sizeof text);
        if (json_is_number(eta) && json_number_value(eta) > 0 && len + 40 < sizeof text)
            snprintf(text + len, sizeof text - len, " (server ETA %.0f s)",
                     json_number_value(eta));
        p->io->progress(p->io->ud, text, pr.step, pr.steps);
    }
    json_decref(j);
}

/* The progress thread: GET /sdapi/v1/progress every POLL_S until stopped (errors ignored: the
 * bar is a courtesy, the image request says what went wrong). */
static void *poll_main(void *ud) {
    struct poller *p = ud;
    double next = now_s() + POLL_S;
    while (!poll_stopped(p)) {
        if (now_s() < next) {
            struct timespec ts = {0, 50 * 1000 * 1000};
            nanosleep(&ts, NULL);
            continue;
        }
        next = now_s() + POLL_S;
        struct mx_http_req r = request(p->o, p->url);
        r.retries = 0;
        r.stall_timeout_s = 5;
        r.canceled = poll_stopped;
        r.cancel_ud = p;
        if (mx_http_do(&r, NULL) == 0 && r.answer)
            report(p, r.answer, r.answer_len);
        free(r.answer);
    }
    return NULL;
}

/* ---- the request ---------------------------------------------------------------------------- */

/* The JSON body for req (txt2img, or img2img with the source inlined). NULL with err set. */
static char *body_json(const struct mx_image_req *req, struct mx_err *err) {
    json_t *o = json_object(), *ov = json_object();
    char *text = NULL, *b64 = NULL;
    unsigned char *src = NULL;
    int rc = 0;
    if (!o || !ov) {
        mx_err_set(err, MX_ENOMEM, "remote image: out of memory");
        goto out;
    }
    int w = req->width, h = req->height;
    if (req->init_path) {
        struct mx_image init = {0};
        if ((rc = mx_image_load(req->init_path, &init, err)) != 0)
            goto out;
        /* no size given: the source's, rounded down to a multiple of 8 (as the local job) */
        if (!w)
            w = init.w / 8 * 8;
        if (!h)
            h = init.h / 8 * 8;
        mx_image_free(&init);
        FILE *f = fopen(req->init_path, "rb");
        size_t n = 0;
        if (f && (src = malloc(SOURCE_MAX)))
            n = fread(src, 1, SOURCE_MAX, f);
        bool whole = f && src && feof(f);
        if (f)
            fclose(f);
        if (!whole) {
            mx_err_set(err, src ? MX_EIO : MX_ENOMEM, "%s: cannot read it whole (at most %zu "
                       "bytes)", req->init_path, SOURCE_MAX);
            goto out;
        }
        if (mx_base64_encode(src, n, &b64, err) != 0)
            goto out;
        json_t *arr = json_array();
        rc |= json_array_append_new(arr, json_string(b64));
        rc |= json_object_set_new(o, "init_images", arr);
        rc |= json_object_set_new(o, "denoising_strength",
                                  json_real(req->strength > 0 ? req->strength : 0.75));
    }
    rc |= json_object_set_new(o, "prompt", json_string(req->prompt ? req->prompt : ""));
    rc |= json_object_set_new(o, "negative_prompt", json_string(req->negative ? req->negative
                                                                             : ""));
    rc |= json_object_set_new(o, "width", json_integer(w ? w : 512));
    rc |= json_object_set_new(o, "height", json_integer(h ? h : 512));
    rc |= json_object_set_new(o, "steps", json_integer(req->steps ? req->steps : 20));
    rc |= json_object_set_new(o, "cfg_scale", json_real(req->cfg >= 0 ? req->cfg : 7.0));
    rc |= json_object_set_new(o, "seed", json_integer((json_int_t)req->seed));
    rc |= json_object_set_new(o, "batch_size", json_integer(1));
    rc |= json_object_set_new(o, "n_iter", json_integer(1));
    rc |= json_object_set_new(o, "send_images", json_true());
    rc |= json_object_set_new(o, "save_images", json_false());
    /* sampler names in A1111's spelling, which every A1111-compatible server reads */
    int smp = MX_SD_SAMPLER_EULER_A, sch = -1;
    if (req->sampler && mx_sd_sampler_parse(req->sampler, &smp, &sch, err) != 0)
        goto out;
    rc |= json_object_set_new(o, "sampler_name", json_string(mx_sd_sampler_a1111_name(smp)));
    if (req->scheduler && mx_sd_schedule_parse(req->scheduler, &sch, err) != 0)
        goto out;
    if (sch >= 0)
        rc |= json_object_set_new(o, "scheduler", json_string(mx_sd_schedule_a1111_name(sch)));
    if (req->eta >= 0)
        rc |= json_object_set_new(o, "eta", json_real(req->eta));
    if (req->ckpt && req->ckpt[0])
        rc |= json_object_set_new(ov, "sd_model_checkpoint", json_string(req->ckpt));
    if (req->clip_skip)
        rc |= json_object_set_new(ov, "CLIP_stop_at_last_layers", json_integer(req->clip_skip));
    if (json_object_size(ov)) {
        rc |= json_object_set(o, "override_settings", ov);
        rc |= json_object_set_new(o, "override_settings_restore_afterwards", json_true());
    }
    if (rc || !(text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(7))))
        mx_err_set(err, MX_ENOMEM, "remote image: out of memory");
out:
    free(b64);
    free(src);
    json_decref(o);
    json_decref(ov);
    return text;
}

/* A new file name in dir: <ms since the epoch>-<seed>.png. Returns a new string or NULL. */
static char *new_path(const char *dir, uint64_t seed, struct mx_err *err) {
    if (!dir || mx_mkdir_p(dir, err) != 0) {
        if (!dir)
            mx_err_set(err, MX_EINVAL, "remote image: no folder for the image");
        return NULL;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    size_t n = strlen(dir) + 64;
    char *p = malloc(n);
    for (int k = 0; p && k < 100; k++) {
        snprintf(p, n, "%s/%lld-%llu%s%.0d.png", dir, ms, (unsigned long long)seed, k ? "-" : "",
                 k);
        if (access(p, F_OK) != 0)
            return p;
    }
    free(p);
    mx_err_set(err, MX_EIO, "%s: no free file name for the image", dir);
    return NULL;
}

/* Writes b[0..n) to path (0600, through path.part and a rename). */
static int write_file(const char *path, const unsigned char *b, size_t n, struct mx_err *err) {
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.part", path) >= sizeof tmp)
        return mx_err_set(err, MX_ERANGE, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f)
        return mx_err_set(err, MX_EIO, "%s: cannot create it", tmp);
    fchmod(fileno(f), 0600);
    bool ok = fwrite(b, 1, n, f) == n;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return mx_err_set(err, MX_EIO, "%s: cannot write it", path);
    }
    return 0;
}

/* The record of the image (stored with its row), like the local job's plus where it was drawn. */
static char *params_json(const struct mx_image_req *req, const char *server, json_t *info,
                         const struct mx_image_result *r) {
    json_t *o = json_object();
    if (!o)
        return NULL;
    json_t *v;
    json_object_set_new(o, "source", json_string(req->init_path ? "img2img" : "txt2img"));
    json_object_set_new(o, "backend", json_string("remote"));
    json_object_set_new(o, "server", json_string(server));
    json_object_set_new(o, "prompt", json_string(req->prompt ? req->prompt : ""));
    json_object_set_new(o, "negative", json_string(req->negative ? req->negative : ""));
    json_object_set_new(o, "steps", json_integer(r->steps));
    json_object_set_new(o, "seed", json_is_integer(v = json_object_get(info, "seed"))
                                       ? json_incref(v) : json_integer((json_int_t)req->seed));
    json_object_set_new(o, "width", json_integer(r->w));
    json_object_set_new(o, "height", json_integer(r->h));
    if (json_is_string(v = json_object_get(info, "sd_model_name")))
        json_object_set(o, "model", v);
    if (req->init_path) {
        json_object_set_new(o, "strength", json_real(req->strength > 0 ? req->strength : 0.75));
        json_object_set_new(o, "init", json_string(req->init_path));
    }
    json_object_set_new(o, "seconds", json_real(r->seconds));
    json_object_set_new(o, "parameters", json_string(r->infotext ? r->infotext : ""));
    char *s = json_dumps(o, JSON_REAL_PRECISION(6));
    json_decref(o);
    return s;
}

int mx_remote_image_generate(const struct mx_remote_opts *o, const struct mx_image_req *req,
                             const char *out_path, const struct mx_remote_image_io *io,
                             struct mx_image_result *res, struct mx_err *err) {
    static const struct mx_remote_image_io no_io = {0};
    bool bad;
    int rc = 0;
    char *root = NULL, *url = NULL, *body = NULL, *path = NULL;
    unsigned char *png = NULL;
    size_t png_len = 0;
    json_t *ans = NULL, *info = NULL;
    struct mx_image img = {0};
    struct mx_image_result r = {0};
    struct mx_http_req hr = {0};
    struct poller p = {.o = o, .io = io ? io : &no_io};
    pthread_t th;
    bool polling = false;
    memset(res, 0, sizeof *res);
    if (!(root = server_root(o->url, &bad))) {
        return bad ? mx_err_set(err, MX_EINVAL, "remote images: '%s' is not an http:// or "
                                "https:// URL", o->url ? o->url : "")
                   : mx_err_set(err, MX_ENOMEM, "remote images: out of memory");
    }
    char shown[512];
    mx_http_url_display(root, shown, sizeof shown);
    if (!(body = body_json(req, err))) {
        rc = err && err->code ? err->code : MX_ENOMEM;
        goto out;
    }
    if (!(url = join(root, req->init_path ? "/sdapi/v1/img2img" : "/sdapi/v1/txt2img")) ||
        !(p.url = join(root, "/sdapi/v1/progress?skip_current_image=true"))) {
        rc = mx_err_set(err, MX_ENOMEM, "remote images: out of memory");
        goto out;
    }
    p.t0 = now_s();
    atomic_init(&p.stop, false);
    if (p.io->progress)
        polling = pthread_create(&th, NULL, poll_main, &p) == 0;
    hr = request(o, url);
    hr.body = body;
    hr.canceled = p.io->canceled;
    hr.cancel_ud = p.io->ud;
    rc = mx_http_do(&hr, err);
    atomic_store(&p.stop, true);
    if (polling)
        pthread_join(th, NULL);
    if (rc == MX_ECANCELED) { /* the server draws on unless told: A1111's interrupt */
        char *iu = join(root, "/sdapi/v1/interrupt");
        struct mx_http_req ir = request(o, iu);
        ir.body = "{}";
        ir.retries = 0;
        ir.connect_timeout_s = ir.stall_timeout_s = 2;
        if (iu)
            mx_http_do(&ir, NULL);
        free(ir.answer);
        free(iu);
    }
    if (rc != 0)
        goto out;
    r.seconds = now_s() - p.t0;
    /* the answer: {"images": [base64 PNG], "parameters": {...}, "info": "<JSON text>"} */
    json_error_t je;
    ans = hr.answer ? json_loadb(hr.answer, hr.answer_len, 0, &je) : NULL;
    json_t *im = json_array_get(json_object_get(ans, "images"), 0);
    if (!json_is_string(im)) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: the answer holds no image", shown);
        goto out;
    }
    json_t *iv = json_object_get(ans, "info");
    info = json_is_string(iv) ? json_loads(json_string_value(iv), 0, NULL)
                              : json_is_object(iv) ? json_incref(iv) : NULL;
    if ((rc = mx_base64_decode(json_string_value(im), json_string_length(im), &png, &png_len,
                               err)) != 0)
        goto out;
    if (!(path = out_path ? strdup(out_path) : new_path(req->out_dir, req->seed, err))) {
        rc = err && err->code ? err->code : MX_ENOMEM;
        goto out;
    }
    if ((rc = write_file(path, png, png_len, err)) != 0)
        goto out;
    /* untrusted bytes: the image must decode before it is kept and shown */
    if ((rc = mx_image_load(path, &img, err)) != 0) {
        unlink(path);
        goto out;
    }
    r.w = img.w;
    r.h = img.h;
    rc = mx_png_read_text(path, "parameters", &r.infotext, err);
    if (rc != 0)
        goto out;
    if (!r.infotext) { /* a server that does not embed them: its infotext, as A1111 writes it */
        json_t *t = json_array_get(json_object_get(info, "infotexts"), 0);
        if (json_is_string(t)) {
            if (!(r.infotext = strdup(json_string_value(t))) ||
                (rc = mx_image_save_png_text(&img, path, "parameters", r.infotext, err)) != 0) {
                rc = rc ? rc : mx_err_set(err, MX_ENOMEM, "out of memory");
                goto out;
            }
        }
    }
    json_t *sv = json_object_get(info, "steps");
    r.steps = json_is_integer(sv) ? (int)json_integer_value(sv) : req->steps ? req->steps : 20;
    r.step_s = r.steps > 0 ? r.seconds / r.steps : 0;
    r.path = path;
    path = NULL;
    if (!(r.params_json = params_json(req, shown, info, &r))) {
        rc = mx_err_set(err, MX_ENOMEM, "out of memory");
        goto out;
    }
    *res = r;
    memset(&r, 0, sizeof r);
out:
    mx_image_result_free(&r);
    mx_image_free(&img);
    json_decref(ans);
    json_decref(info);
    free(png);
    free(path);
    free(hr.answer);
    free(p.url);
    free(url);
    free(body);
    free(root);
    return rc;
}

/* ---- the chat's image engine ---------------------------------------------------------------- */

/* The chat's image engine: a copy of the server's options. */
struct remote_images {
    struct mx_image_remote base;     /* what the TUI calls */
    char *url, *api_key;             /* owned */
    struct mx_remote_opts o;         /* borrows url and api_key */
};

/* A job's side of the progress and cancel callbacks. */
struct job_io {
    struct mx_job *job;   /* borrowed: the running image job */
};

/* Progress as the job's event (from the polling thread: mx_job_post is thread-safe). */
static void job_progress(void *ud, const char *text, double done, double total) {
    mx_job_post(((struct job_io *)ud)->job, MX_EV_PROGRESS, text, done, total);
}

/* Esc in the chat: the job's cancel flag. */
static bool job_canceled(void *ud) {
    return mx_job_canceled(((struct job_io *)ud)->job);
}

/* r->run on the worker thread: the image from the server, then mx_job_done. */
static void ri_run(struct mx_image_remote *ri, struct mx_job *job, const struct mx_image_req *req,
                   struct mx_image_result *res) {
    struct remote_images *R = (struct remote_images *)ri;
    struct mx_err err = {0};
    struct job_io jio = {job};
    struct mx_remote_image_io io = {.progress = job_progress, .canceled = job_canceled,
                                    .ud = &jio};
    char text[200];
    snprintf(text, sizeof text, "image: asking %s", ri->name);
    mx_job_post(job, MX_EV_PROGRESS, text, 0, 0);
    int rc = mx_remote_image_generate(&R->o, req, NULL, &io, res, &err);
    mx_job_done(job, rc, rc ? mx_err_msg(&err, rc) : NULL);
}

/* r->free: the key wiped before it is freed. NULL ok. */
static void ri_free(struct mx_image_remote *ri) {
    struct remote_images *R = (struct remote_images *)ri;
    if (!R)
        return;
    if (R->api_key) {
        explicit_bzero(R->api_key, strlen(R->api_key));
        free(R->api_key);
    }
    free(R->url);
    free(R);
}

struct mx_image_remote *mx_remote_images_new(const struct mx_remote_opts *o, struct mx_err *err) {
    bool bad;
    struct remote_images *R = calloc(1, sizeof *R);
    if (!R) {
        mx_err_set(err, MX_ENOMEM, "remote images: out of memory");
        return NULL;
    }
    R->base.run = ri_run;
    R->base.free = ri_free;
    R->o = *o;
    if (!(R->url = server_root(o->url, &bad))) {
        mx_err_set(err, bad ? MX_EINVAL : MX_ENOMEM, bad ? "remote images: '%s' is not an "
                   "http:// or https:// URL" : "remote images: out of memory (%s)",
                   o->url ? o->url : "");
        ri_free(&R->base);
        return NULL;
    }
    if (o->api_key && o->api_key[0] && !(R->api_key = strdup(o->api_key))) {
        mx_err_set(err, MX_ENOMEM, "remote images: out of memory");
        ri_free(&R->base);
        return NULL;
    }
    R->o.url = R->url;
    R->o.api_key = R->api_key;
    R->o.model = NULL;
    char shown[512];
    mx_http_url_display(R->url, shown, sizeof shown);
    const char *host = strstr(shown, "://") + 3;
    snprintf(R->base.name, sizeof R->base.name, "remote: %.*s", (int)strcspn(host, "/"), host);
    return &R->base;
}
