/* worker.h - one background job at a time (model generation, image steps) and the queue that
 * brings its results to the UI thread (redis bio style). The UI polls wake_fd together with the
 * terminal; the job posts events and writes one byte to the pipe. Cancel is an atomic flag the job
 * polls between tokens/steps, so the UI never blocks on the engine.
 */
#ifndef MX_WORKER_H
#define MX_WORKER_H

#include <stdbool.h>
#include <stddef.h>

enum mx_event_kind {
    MX_EV_TEXT,      /* text: a piece of the answer (UTF-8, may be partial-free: whole chars) */
    MX_EV_PROGRESS,  /* a = done, b = total; text: what is in progress ("prompt", "loading") */
    MX_EV_STATS,     /* a = tokens/s, b = context tokens used */
    MX_EV_NOTICE,    /* text: a message for the user; a = 1: the answer stops here, cut short
                      * by a full context (the job still ends with code 0) */
    MX_EV_DONE,      /* code: 0 ok, MX_ECANCELED stopped, other < 0 failed; text: error message */
    MX_EV_REASONING, /* text: a piece of the model's reasoning (gpt-oss's analysis channel):
                      * shown folded, never part of the stored answer; receivers that do not
                      * show reasoning ignore it */
};

struct mx_event {
    enum mx_event_kind kind;
    char *text;      /* owned by the receiver after mx_worker_poll (free it); may be NULL */
    double a, b;
    int code;
};

struct mx_worker;
struct mx_job;       /* the running job's handle, passed to the job function */

typedef void (*mx_job_fn)(struct mx_job *job, void *ud);

/* Creates the worker (thread started lazily per job). Returns 0 or MX_ENOMEM/MX_EIO. */
int mx_worker_new(struct mx_worker **out);

/* Cancels a running job, waits for it to end, frees everything. NULL ok. */
void mx_worker_free(struct mx_worker *w);

/* File descriptor that becomes readable when events are queued. */
int mx_worker_wake_fd(const struct mx_worker *w);

/* Runs fn(job, ud) on the worker thread. The job must post MX_EV_DONE last (mx_job_done).
 * Returns 0, or MX_EBUSY when a job is still running. */
int mx_worker_start(struct mx_worker *w, mx_job_fn fn, void *ud);

bool mx_worker_busy(const struct mx_worker *w);

/* Asks the running job to stop (it ends with MX_ECANCELED at its next check). */
void mx_worker_cancel(struct mx_worker *w);

/* Pops one event (true) or returns false when the queue is empty; drains the wake pipe. */
bool mx_worker_poll(struct mx_worker *w, struct mx_event *ev);

/* ---- called by the job, on the worker thread ---- */
bool mx_job_canceled(const struct mx_job *job);
void mx_job_post(struct mx_job *job, enum mx_event_kind kind, const char *text, double a, double b);
void mx_job_done(struct mx_job *job, int code, const char *msg);
/* Posts s[0..n) as one MX_EV_TEXT event, leaving out NUL bytes (a <0x00> byte token): events
 * carry C strings, and a NUL would hide the text after it. Nothing is posted when no byte is
 * left. Returns 0 or MX_ENOMEM (a piece over 512 bytes needs a buffer). */
int mx_job_post_text(struct mx_job *job, const char *s, size_t n);
/* The same as one MX_EV_REASONING event. */
int mx_job_post_reasoning(struct mx_job *job, const char *s, size_t n);

#endif
