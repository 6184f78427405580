/* pull.h - `mixel pull`: downloading a model (GGUF) or an SD checkpoint (.safetensors) from the
 * Hugging Face hub, or any server that answers like it, into the folder mixel's discovery reads.
 *
 * The file goes to FILE.partial first and is renamed into place only once its SHA-256 matches the
 * one the hub publishes (the LFS oid, sent as X-Linked-Etag on the resolve URL). An interrupted
 * download (a dropped connection, Ctrl-C, a crash) leaves the .partial, and the next pull asks for
 * the rest with an HTTP Range request. A different file already at the destination is never
 * overwritten. libcurl does the HTTP (redirects to the CDN, TLS, proxies from the environment).
 *
 * Tuned for multi-gigabyte files on a slow link: the digest is computed as the bytes arrive (the
 * part already on disk is read once when resuming), so success costs no second read of the file.
 */
#ifndef MX_NET_PULL_H
#define MX_NET_PULL_H

#include <stdbool.h>
#include <stdint.h>

#include "core/base/err.h"

/* The public hub, used when neither --endpoint nor HF_ENDPOINT says otherwise. */
#define MX_PULL_ENDPOINT "https://huggingface.co"

/* Where a download stands, for a progress display. */
struct mx_pull_progress {
    const char *file;     /* the file's name (its last path segment; untrusted bytes) */
    uint64_t done;        /* bytes in the .partial so far (resumed bytes included) */
    uint64_t total;       /* the file's size, 0 unknown */
    uint64_t resumed;     /* bytes that were already there when this transfer started */
    double rate;          /* bytes per second over this transfer, 0 before the first second */
    double eta_s;         /* seconds left at that rate, -1 unknown */
    bool receiving;       /* the file's bytes are coming; false: still asking the hub (or waiting
                             to retry), the call is only a chance to cancel */
};

/* Called from the downloading thread about ten times a second (and once at the end). Returns
 * nonzero to stop the download (it then ends with MX_ECANCELED, the .partial kept). */
typedef int (*mx_pull_progress_fn)(void *ud, const struct mx_pull_progress *p);

/* A line for the user about what the pull does ("resuming at 1.2 GB", "the server ignored the
 * range: starting again", "retrying in 2 s"); untrusted bytes may appear in it. */
typedef void (*mx_pull_note_fn)(void *ud, const char *msg);

struct mx_pull_opts {
    const char *endpoint;         /* hub base URL; NULL: $HF_ENDPOINT, else MX_PULL_ENDPOINT */
    const char *token;            /* bearer token; NULL: $HF_TOKEN (none when unset); sent to the
                                     endpoint's host only, never printed */
    const char *dir;              /* destination folder; NULL: mx_pull_default_dir */
    int retries;                  /* tries after a connection error (<0: 4); backoff 1, 2, 4 s.. */
    mx_pull_progress_fn progress; /* NULL: none */
    mx_pull_note_fn note;         /* NULL: none */
    void *ud;                     /* for progress and note */
};

/* The folder a model file goes to when no --dir is given: ~/models, the plain folder discovery
 * searches for GGUFs and SD checkpoints (app/discover.h; the hub cache and ollama's store have
 * layouts of their own). For a .safetensors file, A1111's checkpoint folder
 * ~/stable-diffusion-webui/models/Stable-diffusion when it exists (discovery reads it first).
 * Writes into buf; returns 0, or MX_ENOENT when $HOME is unset, MX_ERANGE when buf is too
 * small. */
int mx_pull_default_dir(const char *file, char *buf, size_t size, struct mx_err *err);

/* Downloads ref (hf://OWNER/REPO/PATH, hf://OWNER/REPO:QUANT or hf://OWNER/REPO: net/hf.h) into
 * the destination folder (created when missing). On success (0) *path (NULL ok; caller frees) is
 * the file's path and *already (NULL ok) says the same file was there before (nothing was
 * downloaded). Errors, each with err saying what happened and what to do:
 *   MX_EINVAL   a bad reference, an ambiguous quant, a different file already at the destination
 *   MX_ENOENT   the repo or file does not exist (404)
 *   MX_EPERM    401/403: a private or gated repo (HF_TOKEN hint), or an unwritable folder
 *   MX_EFORMAT  the SHA-256 does not match the hub's (the .partial is kept)
 *   MX_ECANCELED the progress callback asked to stop (the .partial is kept, resumable)
 *   MX_EIO      connection errors after the retries (the .partial is kept), other HTTP errors,
 *               disk errors (MX_EFULL: the disk is full)
 *   MX_EUNSUP   a split model chosen by quant
 * Thread-safe apart from the environment it reads; blocks for the whole download. */
int mx_pull(const char *ref, const struct mx_pull_opts *opts, char **path, bool *already,
            struct mx_err *err);

/* mx_pull with the defaults and a progress callback of plain numbers (done, total bytes; rate in
 * bytes/s), for a caller that must not include this header: the TUI's first-run screen gets it
 * from cli/ as a function pointer (tui/app.h mx_model_fetch_fn). */
int mx_pull_fetch(const char *ref,
                  int (*progress)(void *ud, uint64_t done, uint64_t total, double rate), void *ud,
                  char **path, struct mx_err *err);

#endif
