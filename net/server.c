/* server.c - `mixel serve`'s HTTP server on libmicrohttpd (see server.h).
 *
 * Threads: libmicrohttpd runs one thread per connection (bounded by MAX_CONNECTIONS); that thread
 * reads the body, checks the key, parses the request and queues a job, then blocks: on the job's
 * end for a whole-body answer, or in the stream reader for server-sent events. One dispatcher
 * thread takes jobs off the queue in order and runs each on the engine worker (app/worker.h),
 * polling the worker's events every few milliseconds and moving them into the job under the one
 * server mutex, and polling the job's socket: a peer that has closed it cancels the generation.
 * A job is reference-counted between its connection and the dispatcher (whoever lets go last
 * frees it), so neither side waits on the other to clean up.
 *
 * Tuned for one model on one machine serving a handful of clients: the engine runs one answer at
 * a time anyway, so the queue is FIFO and short, and the cost per token on the server side is a
 * JSON chunk and a condition-variable broadcast.
 */
#include "net/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base/util.h"
#include "app/engine_llm.h"
#include "app/image_job.h"
#include "app/llm.h"
#include "app/worker.h"
#include "net/oai.h"
#include "core/base/readfile.h"
#include "net/base64.h"
#include "net/server_sd.h"

#define MAX_CONNECTIONS 64           /* concurrent sockets (each a thread) */
#define CONN_MEMORY (64u << 10)      /* per-connection buffer: bounds the request headers */
#define CONN_TIMEOUT_S 600           /* an idle keep-alive socket is closed after this */
#define POLL_MS 20                   /* dispatcher: worker events and client liveness */
#define MAX_IMAGE_FILE (256u << 20)  /* a PNG read back for base64 (4096 x 4096 RGB fits) */

/* What a queued request is. */
enum job_kind { JOB_CHAT, JOB_COMPLETION, JOB_IMAGE };

/* One request from its parse to its answer. Fields below `mu:` are guarded by srv->mu. */
struct job {
    enum job_kind kind;
    struct mx_oai_req oai;          /* JOB_CHAT / JOB_COMPLETION: the request */
    struct mx_gen_settings s;       /* its settings (stop strings point into oai) */
    struct mx_sdapi_req sd;         /* JOB_IMAGE: the request */
    struct mx_oai_meta meta;        /* id, created, model of the answer */
    char id[48];                    /* meta.id's storage */
    int fd;                         /* the client's socket (valid while !gone) */
    /* filled by the completion job on the worker, read by the dispatcher after MX_EV_DONE */
    size_t n_prompt, n_generated;
    enum mx_gen_end end;
    /* mu: */
    int refs;                       /* connection + dispatcher */
    bool done;                      /* the answer is complete (out/body final) */
    bool gone;                      /* the client went away: cancel, answer nobody */
    char *out;                      /* stream: SSE bytes so far; else: the answer's text */
    size_t out_len, out_cap;
    int status;                     /* HTTP status of a whole-body answer */
    char *body;                     /* the whole-body answer (JSON), malloc'd */
    char note[96];                  /* for the log line: tokens, images */
};

struct mx_server {
    struct mx_server_opts o;
    struct MHD_Daemon *mhd;
    int port;
    size_t max_body;
    long long started;              /* Unix seconds: "created" of /v1/models */
    char base[256], stem[256];      /* the model file's basename, and without ".gguf" */
    struct mx_worker *w;            /* runs every generation */
    pthread_t dispatcher;
    bool dispatcher_on;
    pthread_mutex_t mu;
    pthread_cond_t cv;              /* broadcast on any job change and on queue pushes */
    pthread_mutex_t log_mu;         /* serialises opts.log */
    /* mu: */
    bool stopping;
    struct job **q;                 /* FIFO ring of waiting jobs, cap opts.queue */
    size_t q_head, q_len;
    struct job *running;
    /* mu: the image progress /sdapi/v1/progress reports */
    double prog_done, prog_total, prog_t0;
    char prog_text[128];
};

/* Per-connection, per-request state (MHD's con_cls). */
struct req {
    double t0;
    char method[8];
    char url[96];
    char *body;
    size_t len, cap;
    bool too_big;
    bool answered;                  /* a response was queued early (401, 413) */
    int status;
    size_t bytes;                   /* response body bytes */
    struct job *job;                /* the job, for the log and the stream reader (a ref) */
    struct mx_server *srv;
};

/* ---- small things ---------------------------------------------------------------------------- */

static void slog(struct mx_server *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void slog(struct mx_server *srv, const char *fmt, ...) {
    if (!srv->o.log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&srv->log_mu);
    srv->o.log(srv->o.log_ud, line);
    pthread_mutex_unlock(&srv->log_mu);
}

bool mx_server_host_is_loopback(const char *host) {
    if (!host)
        return false;
    if (!strcmp(host, "localhost"))
        return true;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

/* Appends s[0..n) to the job's output. Returns 0 or MX_ENOMEM. Under srv->mu. */
static int out_add(struct job *j, const char *s, size_t n) {
    if (j->out_len + n + 1 > j->out_cap) {
        size_t cap = MX_MAX(j->out_cap * 2, j->out_len + n + 1);
        cap = MX_MAX(cap, (size_t)1024);
        char *p = realloc(j->out, cap);
        if (!p)
            return MX_ENOMEM;
        j->out = p;
        j->out_cap = cap;
    }
    memcpy(j->out + j->out_len, s, n);
    j->out_len += n;
    j->out[j->out_len] = '\0';
    return 0;
}

/* Drops a reference; the last one frees the job. Under srv->mu. */
static void job_unref(struct job *j) {
    if (!j || --j->refs > 0)
        return;
    mx_oai_req_free(&j->oai);
    mx_sdapi_req_free(&j->sd);
    free(j->out);
    free(j->body);
    free(j);
}

/* Compares in time independent of where the strings differ (the key is a secret). */
static bool key_equal(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < lb; i++)
        d |= (unsigned char)(a[i % (la ? la : 1)] ^ b[i]);
    return d == 0;
}

/* Queues a JSON body with status. Returns MHD's answer. */
static enum MHD_Result send_json(struct MHD_Connection *c, struct req *r, int status,
                                 char *json, const char *retry_after) {
    if (!json) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        json = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                      "\"param\":null,\"code\":null}}");
        if (!json)
            return MHD_NO;
    }
    size_t n = strlen(json);
    struct MHD_Response *res = MHD_create_response_from_buffer(n, json, MHD_RESPMEM_MUST_FREE);
    if (!res) {
        free(json);
        return MHD_NO;
    }
    MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (retry_after)
        MHD_add_response_header(res, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    r->status = status;
    r->bytes = n;
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)status, res);
    MHD_destroy_response(res);
    return ret;
}

/* An OpenAI-style error answer. */
static enum MHD_Result send_error(struct MHD_Connection *c, struct req *r, int status,
                                  const char *type, const char *code, const char *msg) {
    return send_json(c, r, status, mx_oai_error(msg, type, code),
                     status == MHD_HTTP_SERVICE_UNAVAILABLE ? "1" : NULL);
}

/* ---- the dispatcher ------------------------------------------------------------------------ */

/* True when the client's socket was closed by the peer (EOF or an error pending). Under srv->mu
 * while !j->gone (the fd is the connection's until its request completes). */
static bool client_gone(const struct job *j) {
    struct pollfd p = {.fd = j->fd, .events = POLLIN | POLLRDHUP};
    if (j->fd < 0 || poll(&p, 1, 0) <= 0)
        return false;
    if (p.revents & (POLLHUP | POLLERR | POLLRDHUP | POLLNVAL))
        return true;
    char c;
    ssize_t k = recv(j->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return k == 0;
}

/* The raw-text completion on the worker: as `mixel run` does it (app/llm.h), on the model the
 * chat engine holds; the cache is emptied first so an answer depends only on its request. */
struct compl_ud {
    struct mx_server *srv;
    struct job *j;
};

static int compl_text(void *ud, const char *s, size_t n) {
    struct mx_job *job = ud;
    return mx_job_post_text(job, s, n);
}

static bool compl_canceled(void *ud) {
    return mx_job_canceled(ud);
}

static void compl_fn(struct mx_job *job, void *ud) {
    struct compl_ud *c = ud;
    struct job *j = c->j;
    struct mx_llm *L = mx_engine_llm_handle(c->srv->o.llm);
    struct mx_err err = {0};
    struct mx_gen_stats st = {0};
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = mx_llm_tokenize(L, j->oai.prompt, j->oai.prompt_len, &ids, &n, &err);
    if (rc == 0 && n == 0)
        rc = mx_err_set(&err, MX_EINVAL, "prompt: gives no tokens");
    if (rc == 0 && n >= mx_llm_n_ctx(L))
        rc = mx_err_set(&err, MX_ERANGE, "prompt: %zu tokens, the context holds %zu", n,
                        mx_llm_n_ctx(L));
    j->n_prompt = n;
    if (rc == 0) {
        struct mx_gen_io io = {.text = compl_text, .canceled = compl_canceled, .ud = job};
        mx_llm_clear(L);
        rc = mx_llm_prefill(L, ids, n, &io, &st, &err);
        if (rc == 0)
            rc = mx_llm_generate(L, &j->s, ids, n, &io, &st, &err);
        if (rc == 0 && st.end == MX_GEN_CANCELED)
            rc = MX_ECANCELED;
    }
    j->n_generated = st.n_generated;
    j->end = st.end;
    free(ids);
    mx_job_done(job, rc, rc < 0 && rc != MX_ECANCELED ? mx_err_msg(&err, rc) : NULL);
}

struct chat_ud {
    struct mx_server *srv;
    struct job *j;
};

static void chat_fn(struct mx_job *job, void *ud) {
    struct chat_ud *c = ud;
    struct mx_engine *e = c->srv->o.llm;
    e->reply(e, job, c->j->oai.turns, (int)c->j->oai.n_turns, &c->j->s);
}

struct image_ud {
    struct mx_server *srv;
    struct mx_image_req *req;
    struct mx_image_result res;
};

static void image_fn(struct mx_job *job, void *ud) {
    struct image_ud *u = ud;
    mx_image_job_run(job, u->srv->o.sd, u->req, &u->res);
}

/* The HTTP status for an engine error: the request's fault (400) or the server's (500). */
static int status_of(int code) {
    return code == MX_EINVAL || code == MX_ERANGE || code == MX_EFULL || code == MX_EUNSUP
               ? MHD_HTTP_BAD_REQUEST : MHD_HTTP_INTERNAL_SERVER_ERROR;
}

static void job_abandon(struct mx_server *srv, struct job *j);

/* Drops the waiting jobs whose clients went away, so that they hold no place in the queue (their
 * connections are woken and end). Under srv->mu. */
static void queue_prune(struct mx_server *srv) {
    size_t cap = (size_t)srv->o.queue, kept = 0;
    for (size_t i = 0; i < srv->q_len; i++) {
        struct job *q = srv->q[(srv->q_head + i) % cap];
        if (!q->gone && client_gone(q))
            q->gone = true;
        if (q->gone) {
            job_abandon(srv, q);
            job_unref(q);
        } else {
            srv->q[(srv->q_head + kept++) % cap] = q;
        }
    }
    srv->q_len = kept;
}

/* Runs fn on the worker and moves its events into j until MX_EV_DONE, cancelling when the client
 * goes or the server stops. on_text appends a piece of text (under srv->mu). Returns the job's
 * end code; *msg gets its message (malloc'd, NULL: none), *cut whether a notice said the context
 * cut the answer short. */
static int run_on_worker(struct mx_server *srv, struct job *j, mx_job_fn fn, void *ud,
                         void (*on_text)(struct job *j, const char *s), char **msg, bool *cut) {
    *msg = NULL;
    while (mx_worker_busy(srv->w)) /* the previous job posted DONE and is returning */
        usleep(1000);
    if (mx_worker_start(srv->w, fn, ud) != 0) {
        *msg = strdup("cannot start the generation thread");
        return MX_ENOMEM;
    }
    bool canceled = false;
    int code = 0;
    for (;;) {
        struct pollfd p = {.fd = mx_worker_wake_fd(srv->w), .events = POLLIN};
        poll(&p, 1, POLL_MS);
        struct mx_event ev;
        bool done = false;
        while (mx_worker_poll(srv->w, &ev)) {
            pthread_mutex_lock(&srv->mu);
            if (ev.kind == MX_EV_TEXT && ev.text && on_text)
                on_text(j, ev.text);
            else if (ev.kind == MX_EV_NOTICE && ev.a == 1)
                *cut = true;
            else if (ev.kind == MX_EV_PROGRESS) {
                srv->prog_done = ev.a;
                srv->prog_total = ev.b;
                snprintf(srv->prog_text, sizeof srv->prog_text, "%s", ev.text ? ev.text : "");
            } else if (ev.kind == MX_EV_DONE) {
                done = true;
                code = ev.code;
                free(*msg);
                *msg = ev.text;
                ev.text = NULL;
            }
            pthread_cond_broadcast(&srv->cv);
            pthread_mutex_unlock(&srv->mu);
            free(ev.text);
        }
        if (done)
            return code;
        pthread_mutex_lock(&srv->mu);
        if (!j->gone && client_gone(j))
            j->gone = true;
        queue_prune(srv);
        bool stop = j->gone || srv->stopping;
        pthread_mutex_unlock(&srv->mu);
        if (stop && !canceled) {
            mx_worker_cancel(srv->w);
            canceled = true;
        }
    }
}

/* Text pieces: a stream gets one chunk per piece; a whole answer collects the text. */
static void text_piece(struct job *j, const char *s) {
    if (!j->oai.stream) {
        if (out_add(j, s, strlen(s)) < 0)
            j->gone = true;
        return;
    }
    char *ev = mx_oai_chunk(&j->meta, false, s, strlen(s), NULL, NULL);
    if (!ev || out_add(j, ev, strlen(ev)) < 0)
        j->gone = true; /* out of memory: end this answer rather than send it with a hole */
    free(ev);
}

/* Runs an LLM job and writes its end: the last chunk and [DONE], or the whole body. */
static void run_llm(struct mx_server *srv, struct job *j) {
    char *msg = NULL;
    bool cut = false;
    int code;
    struct mx_oai_usage u = {0};
    if (j->kind == JOB_CHAT) {
        struct chat_ud ud = {srv, j};
        code = run_on_worker(srv, j, chat_fn, &ud, text_piece, &msg, &cut);
        struct mx_engine_llm_stats st = {0};
        mx_engine_llm_stats(srv->o.llm, &st);
        u.prompt_tokens = st.n_prompt;
        u.completion_tokens = st.n_generated;
        j->end = cut ? MX_GEN_FULL
                     : j->s.n_predict > 0 && st.n_generated >= (size_t)j->s.n_predict
                           ? MX_GEN_LENGTH : MX_GEN_EOG;
    } else {
        struct compl_ud ud = {srv, j};
        code = run_on_worker(srv, j, compl_fn, &ud, text_piece, &msg, &cut);
        u.prompt_tokens = j->n_prompt;
        u.completion_tokens = j->n_generated;
    }
    const char *finish = mx_oai_finish(j->end);
    if (code == MX_ECANCELED)
        slog(srv, "%s: canceled after %zu tokens (%s)", j->id, u.completion_tokens,
             srv->stopping ? "the server stops" : "the client went away");
    pthread_mutex_lock(&srv->mu);
    snprintf(j->note, sizeof j->note, "prompt %zu, generated %zu tokens%s", u.prompt_tokens,
             u.completion_tokens, code == MX_ECANCELED ? ", canceled" : "");
    if (j->oai.stream) {
        char *ev = NULL;
        if (code == 0) {
            ev = mx_oai_chunk(&j->meta, false, NULL, 0, finish, &u);
        } else if (code != MX_ECANCELED) {
            char *e = mx_oai_error(msg ? msg : mx_strerror(code),
                                   status_of(code) == 400 ? "invalid_request_error"
                                                          : "server_error", NULL);
            if (e && (ev = malloc(strlen(e) + 9)))
                sprintf(ev, "data: %s\n\n", e);
            free(e);
        }
        if (ev)
            out_add(j, ev, strlen(ev));
        out_add(j, "data: [DONE]\n\n", 14);
        free(ev);
    } else if (code == 0) {
        j->status = MHD_HTTP_OK;
        j->body = mx_oai_response(&j->meta, j->out ? j->out : "", j->out_len, finish, &u);
    } else {
        j->status = code == MX_ECANCELED ? MHD_HTTP_SERVICE_UNAVAILABLE : status_of(code);
        j->body = mx_oai_error(code == MX_ECANCELED ? "the generation was canceled"
                                                    : msg ? msg : mx_strerror(code),
                               j->status == 400 ? "invalid_request_error" : "server_error",
                               NULL);
    }
    j->done = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    free(msg);
}

/* Runs an image request: one image job per picture (seed, seed + 1, ...), each PNG read back as
 * base64 and its file removed, then the A1111 response. */
static void run_image(struct mx_server *srv, struct job *j) {
    struct mx_sdapi_image *im = calloc((size_t)j->sd.batch, sizeof *im);
    char *msg = NULL;
    int code = im ? 0 : MX_ENOMEM, n = 0, w = 0, h = 0, steps = 0;
    bool cut = false;
    double t0 = mx_time_s();
    pthread_mutex_lock(&srv->mu);
    srv->prog_t0 = t0;
    srv->prog_done = srv->prog_total = 0;
    pthread_mutex_unlock(&srv->mu);
    for (int i = 0; code == 0 && i < j->sd.batch; i++) {
        struct mx_image_req req = j->sd.img; /* the strings stay the request's */
        req.seed = j->sd.img.seed + (uint64_t)i;
        req.seed_set = true;
        struct image_ud ud = {.srv = srv, .req = &req};
        code = run_on_worker(srv, j, image_fn, &ud, NULL, &msg, &cut);
        if (code == 0) {
            char *png = NULL;
            size_t len = 0;
            code = mx_read_file(ud.res.path, MAX_IMAGE_FILE, &png, &len, NULL);
            if (code == 0) {
                char *b64 = NULL;
                code = mx_base64_encode((const unsigned char *)png, len, &b64, NULL);
                im[n].png_b64 = b64;
                im[n].infotext = ud.res.infotext;
                im[n].seed = req.seed;
                ud.res.infotext = NULL;
                n++; /* freed with the others even when the encoding failed */
            } else {
                free(msg);
                msg = strdup("cannot read the image back");
            }
            free(png);
            unlink(ud.res.path);
            w = ud.res.w;
            h = ud.res.h;
            steps = ud.res.steps;
        }
        mx_image_result_free(&ud.res);
    }
    pthread_mutex_lock(&srv->mu);
    snprintf(j->note, sizeof j->note, "%d image%s %dx%d, %d steps, %.2f s", n, n == 1 ? "" : "s",
             w, h, steps, mx_time_s() - t0);
    srv->prog_done = srv->prog_total = 0;
    srv->prog_text[0] = '\0';
    if (code == 0) {
        j->status = MHD_HTTP_OK;
        j->body = mx_sdapi_response(&j->sd, im, n, w, h, steps);
    } else {
        j->status = code == MX_ECANCELED ? MHD_HTTP_SERVICE_UNAVAILABLE : status_of(code);
        j->body = mx_oai_error(msg ? msg : mx_strerror(code),
                               j->status == 400 ? "invalid_request_error" : "server_error", NULL);
    }
    j->done = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    for (int i = 0; i < n; i++) {
        free((char *)im[i].png_b64);
        free((char *)im[i].infotext);
    }
    free(im);
    free(msg);
}

/* Ends a job that never ran (shutdown, client gone): 503 for whoever still waits. Under mu. */
static void job_abandon(struct mx_server *srv, struct job *j) {
    if (j->oai.stream)
        out_add(j, "data: [DONE]\n\n", 14);
    j->status = MHD_HTTP_SERVICE_UNAVAILABLE;
    j->body = mx_oai_error(srv->stopping ? "the server is shutting down"
                                         : "the request was dropped: its client went away",
                           "server_error", NULL);
    j->done = true;
    pthread_cond_broadcast(&srv->cv);
}

static void *dispatcher_main(void *arg) {
    struct mx_server *srv = arg;
    pthread_mutex_lock(&srv->mu);
    for (;;) {
        while (!srv->stopping && srv->q_len == 0)
            pthread_cond_wait(&srv->cv, &srv->mu);
        if (srv->stopping)
            break;
        struct job *j = srv->q[srv->q_head];
        srv->q_head = (srv->q_head + 1) % (size_t)srv->o.queue;
        srv->q_len--;
        if (!j->gone && client_gone(j))
            j->gone = true;
        if (j->gone) { /* its client left while it waited */
            job_abandon(srv, j);
            job_unref(j);
            continue;
        }
        srv->running = j;
        if (j->kind == JOB_CHAT && j->oai.stream) { /* the role chunk opens a chat stream */
            char *ev = mx_oai_chunk(&j->meta, true, NULL, 0, NULL, NULL);
            if (ev)
                out_add(j, ev, strlen(ev));
            free(ev);
            pthread_cond_broadcast(&srv->cv);
        }
        pthread_mutex_unlock(&srv->mu);
        if (j->kind == JOB_IMAGE)
            run_image(srv, j);
        else
            run_llm(srv, j);
        pthread_mutex_lock(&srv->mu);
        srv->running = NULL;
        job_unref(j);
    }
    while (srv->q_len > 0) { /* shutting down: nobody will run these */
        struct job *j = srv->q[srv->q_head];
        srv->q_head = (srv->q_head + 1) % (size_t)srv->o.queue;
        srv->q_len--;
        job_abandon(srv, j);
        job_unref(j);
    }
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

/* ---- the HTTP side ------------------------------------------------------------------------- */

/* Whether a request's "model" names the served model (absent: yes). */
static bool model_ok(const struct mx_server *srv, const char *m) {
    return !m || !m[0] || !strcmp(m, srv->o.model_id) || !strcmp(m, srv->base) ||
           !strcmp(m, srv->stem) || (srv->o.model_path && !strcmp(m, srv->o.model_path));
}

/* The stream reader: copies what the dispatcher has written past pos, blocking until there is
 * some or the answer is complete. */
static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    struct req *r = cls;
    struct job *j = r->job;
    struct mx_server *srv = r->srv;
    pthread_mutex_lock(&srv->mu);
    while (j->out_len <= pos && !j->done && !j->gone)
        pthread_cond_wait(&srv->cv, &srv->mu);
    ssize_t k;
    if (j->out_len > pos) {
        size_t n = MX_MIN(max, j->out_len - (size_t)pos);
        memcpy(buf, j->out + pos, n);
        r->bytes += n;
        k = (ssize_t)n;
    } else {
        k = j->gone ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&srv->mu);
    return k;
}

/* Queues j (the dispatcher takes a reference). Returns 0, or MX_EBUSY when the queue is full or
 * the server stops. */
static int enqueue(struct mx_server *srv, struct job *j) {
    pthread_mutex_lock(&srv->mu);
    int rc = 0;
    if (srv->stopping || srv->q_len >= (size_t)srv->o.queue) {
        rc = MX_EBUSY;
    } else {
        srv->q[(srv->q_head + srv->q_len) % (size_t)srv->o.queue] = j;
        srv->q_len++;
        j->refs++;
        pthread_cond_broadcast(&srv->cv);
    }
    pthread_mutex_unlock(&srv->mu);
    return rc;
}

/* Answers a queued job: a stream at once (its reader blocks for chunks), a whole body when the
 * job is done (or the client is gone). */
static enum MHD_Result answer_job(struct MHD_Connection *c, struct req *r) {
    struct mx_server *srv = r->srv;
    struct job *j = r->job;
    if (j->kind != JOB_IMAGE && j->oai.stream) {
        struct MHD_Response *res = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096,
                                                                     stream_read, r, NULL);
        if (!res)
            return MHD_NO;
        MHD_add_response_header(res, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(res, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        r->status = MHD_HTTP_OK;
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, res);
        MHD_destroy_response(res);
        return ret;
    }
    pthread_mutex_lock(&srv->mu);
    while (!j->done && !j->gone)
        pthread_cond_wait(&srv->cv, &srv->mu);
    if (!j->done) { /* the client left: nobody reads an answer */
        pthread_mutex_unlock(&srv->mu);
        r->status = 499;
        return MHD_NO;
    }
    char *body = j->body;
    j->body = NULL;
    int status = j->status;
    pthread_mutex_unlock(&srv->mu);
    return send_json(c, r, status, body, status == MHD_HTTP_SERVICE_UNAVAILABLE ? "1" : NULL);
}

/* A new job for a parsed POST: the meta and the socket. */
static struct job *job_new(struct mx_server *srv, struct MHD_Connection *c, enum job_kind kind) {
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->kind = kind;
    j->refs = 1;
    j->fd = -1;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci)
        j->fd = ci->connect_fd;
    j->s = srv->o.settings;
    if (!srv->o.seed_set)
        j->s.sampling.seed = mx_gen_fresh_seed();
    snprintf(j->id, sizeof j->id, "%s%016llx", kind == JOB_CHAT ? "chatcmpl-" : "cmpl-",
             (unsigned long long)mx_gen_fresh_seed());
    j->meta = (struct mx_oai_meta){.kind = kind == JOB_CHAT ? MX_OAI_CHAT : MX_OAI_COMPLETION,
                                   .id = j->id, .created = (long long)time(NULL),
                                   .model = srv->o.model_id};
    return j;
}

/* POST /v1/chat/completions, /v1/completions, /sdapi/v1/txt2img. */
static enum MHD_Result handle_post(struct MHD_Connection *c, struct req *r, enum job_kind kind) {
    struct mx_server *srv = r->srv;
    struct mx_err err = {0};
    if ((kind == JOB_IMAGE && !srv->o.sd) || (kind != JOB_IMAGE && !srv->o.llm))
        return send_error(c, r, MHD_HTTP_NOT_FOUND, "not_found_error", NULL,
                          kind == JOB_IMAGE ? "no image model: start mixel serve with -d SD"
                                            : "no language model: start mixel serve with -m M");
    struct job *j = job_new(srv, c, kind);
    if (!j)
        return send_error(c, r, 500, "server_error", NULL, "out of memory");
    int rc;
    if (kind == JOB_IMAGE) {
        rc = mx_sdapi_parse(r->body, r->len, &j->sd, &err);
        if (rc == 0) {
            if (!j->sd.img.seed_set)
                j->sd.img.seed = mx_gen_fresh_seed() & 0xFFFFFFFFu;
            j->sd.img.ckpt = strdup(srv->o.sd_path);
            j->sd.img.out_dir = strdup(srv->o.image_dir);
            j->sd.img.device = strdup(srv->o.settings.device ? srv->o.settings.device : "auto");
            j->sd.img.threads = srv->o.settings.threads;
            if (!j->sd.img.ckpt || !j->sd.img.out_dir || !j->sd.img.device)
                rc = mx_err_set(&err, MX_ENOMEM, "out of memory");
        }
    } else {
        rc = mx_oai_parse(kind == JOB_CHAT ? MX_OAI_CHAT : MX_OAI_COMPLETION, r->body, r->len,
                          &j->oai, &j->s, &err);
        if (rc == 0 && !model_ok(srv, j->oai.model))
            rc = mx_err_set(&err, MX_ENOENT, "model: '%.80s' is not served here (GET /v1/models "
                            "lists '%.80s')", j->oai.model, srv->o.model_id);
    }
    if (rc < 0) {
        pthread_mutex_lock(&srv->mu);
        job_unref(j);
        pthread_mutex_unlock(&srv->mu);
        return send_error(c, r, rc == MX_ENOMEM ? 500 : MHD_HTTP_BAD_REQUEST,
                          rc == MX_ENOMEM ? "server_error" : "invalid_request_error",
                          rc == MX_ENOENT ? "model_not_found" : NULL, mx_err_msg(&err, rc));
    }
    if (enqueue(srv, j) != 0) {
        pthread_mutex_lock(&srv->mu);
        job_unref(j);
        pthread_mutex_unlock(&srv->mu);
        char msg[160];
        snprintf(msg, sizeof msg, "the server is busy: %d requests are waiting (--queue %d); "
                 "retry later", srv->o.queue, srv->o.queue);
        return send_error(c, r, MHD_HTTP_SERVICE_UNAVAILABLE, "server_error", "queue_full", msg);
    }
    r->job = j; /* the connection's reference, released when the request completes */
    return answer_job(c, r);
}

static enum MHD_Result handle_get(struct MHD_Connection *c, struct req *r) {
    struct mx_server *srv = r->srv;
    if (!strcmp(r->url, "/health"))
        return send_json(c, r, MHD_HTTP_OK, strdup("{\"status\":\"ok\"}"), NULL);
    if (!strcmp(r->url, "/v1/models") || !strcmp(r->url, "/models")) {
        const char *ids[1] = {srv->o.model_id};
        return send_json(c, r, MHD_HTTP_OK, mx_oai_models(ids, srv->o.llm ? 1 : 0, srv->started),
                         NULL);
    }
    if (!strcmp(r->url, "/sdapi/v1/progress") && srv->o.sd) {
        pthread_mutex_lock(&srv->mu);
        double done = srv->prog_done, total = srv->prog_total;
        double el = srv->prog_t0 > 0 ? mx_time_s() - srv->prog_t0 : 0;
        char text[128];
        snprintf(text, sizeof text, "%s", srv->prog_text);
        int jobs = (int)srv->q_len + (srv->running != NULL);
        pthread_mutex_unlock(&srv->mu);
        double eta = done > 0 && total > done ? el / done * (total - done) : 0;
        return send_json(c, r, MHD_HTTP_OK, mx_sdapi_progress(done, total, eta, jobs, text),
                         NULL);
    }
    return send_error(c, r, MHD_HTTP_NOT_FOUND, "not_found_error", NULL, "no such endpoint");
}

/* Routes a complete request. */
static enum MHD_Result route(struct MHD_Connection *c, struct req *r) {
    bool get = !strcmp(r->method, "GET") || !strcmp(r->method, "HEAD");
    bool post = !strcmp(r->method, "POST");
    if (r->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body: larger than %zu bytes", r->srv->max_body);
        return send_error(c, r, 413, "invalid_request_error",
                          "request_too_large", msg);
    }
    if (post && (!strcmp(r->url, "/v1/chat/completions") || !strcmp(r->url, "/chat/completions")))
        return handle_post(c, r, JOB_CHAT);
    if (post && (!strcmp(r->url, "/v1/completions") || !strcmp(r->url, "/completions")))
        return handle_post(c, r, JOB_COMPLETION);
    if (post && !strcmp(r->url, "/sdapi/v1/txt2img"))
        return handle_post(c, r, JOB_IMAGE);
    if (get)
        return handle_get(c, r);
    return send_error(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, "invalid_request_error", NULL,
                      "method not allowed here");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    struct mx_server *srv = cls;
    struct req *r = *con_cls;
    if (!r) { /* the headers are in: limits and the key before any body is read */
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        *con_cls = r;
        r->srv = srv;
        r->t0 = mx_time_s();
        snprintf(r->method, sizeof r->method, "%s", method);
        snprintf(r->url, sizeof r->url, "%s", url);
        if (srv->o.api_key && srv->o.api_key[0] && strcmp(url, "/health") != 0) {
            const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                           MHD_HTTP_HEADER_AUTHORIZATION);
            bool ok = auth && !strncmp(auth, "Bearer ", 7) && key_equal(srv->o.api_key, auth + 7);
            if (!ok) {
                r->answered = true;
                return send_error(c, r, MHD_HTTP_UNAUTHORIZED, "authentication_error",
                                  "invalid_api_key", auth ? "invalid API key"
                                  : "an API key is required (Authorization: Bearer KEY)");
            }
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > srv->max_body) {
            r->too_big = true;
            r->answered = true;
            return route(c, r);
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!r->answered && !r->too_big) {
            if (r->len + *upload_size > srv->max_body) {
                r->too_big = true;
                free(r->body);
                r->body = NULL;
                r->len = r->cap = 0;
            } else {
                if (r->len + *upload_size + 1 > r->cap) {
                    size_t cap = MX_MAX(r->cap * 2, r->len + *upload_size + 1);
                    char *b = realloc(r->body, cap);
                    if (!b)
                        return MHD_NO;
                    r->body = b;
                    r->cap = cap;
                }
                memcpy(r->body + r->len, upload_data, *upload_size);
                r->len += *upload_size;
                r->body[r->len] = '\0';
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->answered)
        return MHD_YES;
    r->answered = true;
    return route(c, r);
}

/* The log line, and the connection's job reference let go; a stream whose client left cancels
 * its generation here too (the dispatcher also sees the closed socket). */
static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    struct mx_server *srv = cls;
    struct req *r = *con_cls;
    if (!r)
        return;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    char ip[INET6_ADDRSTRLEN] = "?";
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
    }
    char note[112] = "";
    pthread_mutex_lock(&srv->mu);
    if (r->job) {
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->job->done)
            r->job->gone = true;
        r->job->fd = -1;
        if (r->job->note[0])
            snprintf(note, sizeof note, " (%s)", r->job->note);
        job_unref(r->job);
        pthread_cond_broadcast(&srv->cv);
    }
    pthread_mutex_unlock(&srv->mu);
    slog(srv, "%s %s %s %d %zu B %.2f s%s%s", ip, r->method, r->url, r->status, r->bytes,
         mx_time_s() - r->t0, note,
         toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " [client gone]");
    free(r->body);
    free(r);
    *con_cls = NULL;
}

/* ---- start and stop ------------------------------------------------------------------------ */

int mx_server_start(struct mx_server **out, const struct mx_server_opts *opts,
                    struct mx_err *err) {
    *out = NULL;
    const char *host = opts->host && opts->host[0] ? opts->host : "127.0.0.1";
    if (!mx_server_host_is_loopback(host) && !(opts->api_key && opts->api_key[0]))
        return mx_err_set(err, MX_EPERM, "--host %s: not a loopback address, so an API key is "
                          "required (--api-key KEY or MIXEL_API_KEY)", host);
    if (opts->port < 0 || opts->port > 65535 || opts->queue < 1)
        return mx_err_set(err, MX_EINVAL, "serve: port %d / queue %d out of range", opts->port,
                          opts->queue);
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL;
    const char *h = strcmp(host, "localhost") ? host : "127.0.0.1";
    struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, h, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)opts->port);
        sl = sizeof *s4;
    } else if (inet_pton(AF_INET6, h, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)opts->port);
        sl = sizeof *s6;
        flags |= MHD_USE_IPv6;
    } else {
        return mx_err_set(err, MX_EINVAL, "--host '%.64s': not a numeric IPv4 or IPv6 address",
                          host);
    }
    (void)sl;
    struct mx_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return mx_err_set(err, MX_ENOMEM, "serve: out of memory");
    srv->o = *opts;
    srv->max_body = opts->max_body ? opts->max_body : MX_SERVER_MAX_BODY;
    srv->started = (long long)time(NULL);
    if (!srv->o.model_id)
        srv->o.model_id = "mixel";
    const char *mp = opts->model_path ? opts->model_path : "";
    const char *slash = strrchr(mp, '/');
    snprintf(srv->base, sizeof srv->base, "%s", slash ? slash + 1 : mp);
    snprintf(srv->stem, sizeof srv->stem, "%s", srv->base);
    size_t bl = strlen(srv->stem);
    if (bl > 5 && !strcmp(srv->stem + bl - 5, ".gguf"))
        srv->stem[bl - 5] = '\0';
    pthread_mutex_init(&srv->mu, NULL);
    pthread_mutex_init(&srv->log_mu, NULL);
    pthread_cond_init(&srv->cv, NULL);
    int rc;
    srv->q = calloc((size_t)opts->queue, sizeof *srv->q);
    if (!srv->q) {
        rc = mx_err_set(err, MX_ENOMEM, "serve: out of memory");
        goto fail;
    }
    if ((rc = mx_worker_new(&srv->w)) != 0) {
        mx_err_set(err, rc, "serve: cannot create the engine worker");
        goto fail;
    }
    if (pthread_create(&srv->dispatcher, NULL, dispatcher_main, srv) != 0) {
        rc = mx_err_set(err, MX_ENOMEM, "serve: cannot start the dispatcher thread");
        goto fail;
    }
    srv->dispatcher_on = true;
    srv->mhd = MHD_start_daemon(
        flags, (uint16_t)opts->port, NULL, NULL, on_request, srv,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)MAX_CONNECTIONS,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONN_TIMEOUT_S,
        MHD_OPTION_END);
    if (!srv->mhd) {
        rc = mx_err_set(err, MX_EIO, "%s:%d: cannot listen there (%s)", host, opts->port,
                        errno ? strerror(errno) : "the port may be taken");
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(srv->mhd, MHD_DAEMON_INFO_BIND_PORT);
    srv->port = di ? di->port : opts->port;
    *out = srv;
    return 0;
fail:
    mx_server_stop(srv);
    return rc;
}

int mx_server_port(const struct mx_server *srv) {
    return srv ? srv->port : 0;
}

void mx_server_stop(struct mx_server *srv) {
    if (!srv)
        return;
    pthread_mutex_lock(&srv->mu);
    srv->stopping = true;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    if (srv->dispatcher_on) /* it cancels the running job and ends the queued ones */
        pthread_join(srv->dispatcher, NULL);
    if (srv->mhd) /* every connection's wait has an end now */
        MHD_stop_daemon(srv->mhd);
    mx_worker_free(srv->w);
    free(srv->q);
    pthread_cond_destroy(&srv->cv);
    pthread_mutex_destroy(&srv->log_mu);
    pthread_mutex_destroy(&srv->mu);
    free(srv);
}
