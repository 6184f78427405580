/* worker.c - background job thread + event queue + wake-up pipe (see worker.h). */
#include "app/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/err.h"

struct mx_job {
    struct mx_worker *w;
};

struct mx_worker {
    pthread_t thread;
    bool joinable;
    atomic_bool busy;
    atomic_bool cancel;
    int pipe_r, pipe_w;
    pthread_mutex_t mu;
    struct mx_event *q;       /* ring of events */
    size_t q_head, q_len, q_cap;
    mx_job_fn fn;
    void *ud;
    struct mx_job job;
};

int mx_worker_new(struct mx_worker **out) {
    *out = NULL;
    struct mx_worker *w = calloc(1, sizeof *w);
    if (!w)
        return MX_ENOMEM;
    int p[2];
    if (pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
        free(w);
        return MX_EIO;
    }
    w->pipe_r = p[0];
    w->pipe_w = p[1];
    pthread_mutex_init(&w->mu, NULL);
    w->job.w = w;
    *out = w;
    return 0;
}

static void join(struct mx_worker *w) {
    if (w->joinable) {
        pthread_join(w->thread, NULL);
        w->joinable = false;
    }
}

void mx_worker_free(struct mx_worker *w) {
    if (!w)
        return;
    mx_worker_cancel(w);
    join(w);
    struct mx_event ev;
    while (mx_worker_poll(w, &ev))
        free(ev.text);
    free(w->q);
    close(w->pipe_r);
    close(w->pipe_w);
    pthread_mutex_destroy(&w->mu);
    free(w);
}

int mx_worker_wake_fd(const struct mx_worker *w) {
    return w->pipe_r;
}

static void *thread_main(void *arg) {
    struct mx_worker *w = arg;
    w->fn(&w->job, w->ud);
    atomic_store(&w->busy, false);
    return NULL;
}

int mx_worker_start(struct mx_worker *w, mx_job_fn fn, void *ud) {
    if (atomic_load(&w->busy))
        return MX_EBUSY;
    join(w);
    w->fn = fn;
    w->ud = ud;
    atomic_store(&w->cancel, false);
    atomic_store(&w->busy, true);
    if (pthread_create(&w->thread, NULL, thread_main, w) != 0) {
        atomic_store(&w->busy, false);
        return MX_ENOMEM;
    }
    w->joinable = true;
    return 0;
}

bool mx_worker_busy(const struct mx_worker *w) {
    return atomic_load(&w->busy);
}

void mx_worker_cancel(struct mx_worker *w) {
    atomic_store(&w->cancel, true);
}

bool mx_worker_poll(struct mx_worker *w, struct mx_event *ev) {
    char buf[256];
    while (read(w->pipe_r, buf, sizeof buf) > 0)
        ;
    pthread_mutex_lock(&w->mu);
    bool have = w->q_len > 0;
    if (have) {
        *ev = w->q[w->q_head];
        w->q_head = (w->q_head + 1) % w->q_cap;
        w->q_len--;
    }
    pthread_mutex_unlock(&w->mu);
    if (have && ev->kind == MX_EV_DONE)
        join(w);
    return have;
}

bool mx_job_canceled(const struct mx_job *job) {
    return atomic_load(&job->w->cancel);
}

static void post(struct mx_job *job, enum mx_event_kind kind, const char *text, double a, double b,
                 int code) {
    struct mx_worker *w = job->w;
    struct mx_event ev = {
        .kind = kind, .text = text ? strdup(text) : NULL, .a = a, .b = b, .code = code};
    pthread_mutex_lock(&w->mu);
    if (w->q_len == w->q_cap) {
        size_t cap = w->q_cap ? w->q_cap * 2 : 64;
        struct mx_event *q = malloc(cap * sizeof *q);
        if (!q) { /* drop the event rather than block the engine; the UI shows what arrived */
            pthread_mutex_unlock(&w->mu);
            free(ev.text);
            return;
        }
        for (size_t i = 0; i < w->q_len; i++)
            q[i] = w->q[(w->q_head + i) % w->q_cap];
        free(w->q);
        w->q = q;
        w->q_head = 0;
        w->q_cap = cap;
    }
    w->q[(w->q_head + w->q_len) % w->q_cap] = ev;
    w->q_len++;
    pthread_mutex_unlock(&w->mu);
    char one = 1;
    while (write(w->pipe_w, &one, 1) < 0 && errno == EINTR)
        ;
}

void mx_job_post(struct mx_job *job, enum mx_event_kind kind, const char *text, double a,
                 double b) {
    post(job, kind, text, a, b, 0);
}

/* s[0..n) without its NUL bytes as one event of kind. */
static int post_text_kind(struct mx_job *job, enum mx_event_kind kind, const char *s, size_t n) {
    char small[512]; /* a piece is a token or two: nothing allocated per token */
    char *t = n < sizeof small ? small : malloc(n + 1);
    if (!t)
        return MX_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != '\0')
            t[k++] = s[i];
    t[k] = '\0';
    if (k)
        mx_job_post(job, kind, t, 0, 0);
    if (t != small)
        free(t);
    return 0;
}

int mx_job_post_text(struct mx_job *job, const char *s, size_t n) {
    return post_text_kind(job, MX_EV_TEXT, s, n);
}

int mx_job_post_reasoning(struct mx_job *job, const char *s, size_t n) {
    return post_text_kind(job, MX_EV_REASONING, s, n);
}

void mx_job_done(struct mx_job *job, int code, const char *msg) {
    post(job, MX_EV_DONE, msg, 0, 0, code);
}
