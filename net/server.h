/* server.h - `mixel serve`'s HTTP server: the local engines behind an OpenAI-compatible API
 * (/v1/chat/completions, /v1/completions, /v1/models, /health) and AUTOMATIC1111's image API
 * (/sdapi/v1/txt2img, /sdapi/v1/progress), on libmicrohttpd.
 *
 * One model is shared by every client: a request is parsed and checked on its connection's
 * thread, then waits in a bounded queue (full: 503 with Retry-After) for the one dispatcher
 * thread, which runs it on the engine worker (app/worker.h: the same job path the TUI uses) and
 * hands text back to the connection as it comes (server-sent events) or as one body. A client
 * that goes away (its socket closes) cancels its generation through the worker's cancel flag,
 * whether it is running or still queued.
 *
 * Limits against hostile clients: bodies up to opts->max_body bytes (413 past it, refused before
 * reading when Content-Length says so), headers within a fixed connection memory (431 from
 * libmicrohttpd past it), a bounded number of connections, an API key checked in constant time.
 *
 * Threading: mx_server_start and mx_server_stop from one thread (the CLI's main thread); the
 * engines given in opts belong to the server's worker between the two.
 */
#ifndef MX_SERVER_H
#define MX_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/err.h"
#include "app/engine.h"
#include "app/llm.h"

struct mx_sd_engine;

#define MX_SERVER_MAX_BODY (8u << 20) /* default body limit: 8 MiB (a long chat, a prompt file) */

/* What the server serves and how. Strings and engines are borrowed: they must outlive the
 * server. */
struct mx_server_opts {
    const char *host;              /* numeric address to bind ("127.0.0.1", "::1", "0.0.0.0") */
    int port;                      /* TCP port; 0: any free one (mx_server_port says which) */
    const char *api_key;           /* required as "Authorization: Bearer KEY"; NULL/"": none */
    int queue;                     /* requests that may wait behind the running one (>= 1) */
    size_t max_body;               /* request body limit in bytes; 0: MX_SERVER_MAX_BODY */
    struct mx_engine *llm;         /* the chat engine (mx_engine_llm_new); NULL: no LLM routes */
    const char *model_id;          /* the id /v1/models lists and "model" may name */
    const char *model_path;        /* the GGUF file (its basename is accepted as "model" too) */
    struct mx_gen_settings settings; /* every request starts from these (then its own fields) */
    bool seed_set;                 /* settings.sampling.seed is fixed by the operator; else a
                                    * request without "seed" gets a fresh one */
    struct mx_sd_engine *sd;       /* the image engine (mx_sd_engine_new); NULL: no /sdapi */
    const char *sd_path;           /* the SD checkpoint the image jobs open */
    const char *image_dir;         /* a private folder the image jobs write their PNGs into
                                    * (each is read back and removed) */
    /* One line per request and per notable event ("127.0.0.1 POST /v1/completions 200 512 B
     * 0.42 s ..."), without a newline, from any of the server's threads (calls are serialised).
     * NULL: silent. */
    void (*log)(void *ud, const char *line);
    void *log_ud;
};

struct mx_server;

/* Binds opts->host:opts->port and starts serving. Refuses (MX_EPERM, with the reason) an address
 * that is not loopback without an API key. Returns 0 with *out, or MX_EINVAL (bad address or
 * options), MX_EPERM, MX_EIO (cannot bind: the port is taken, ...), MX_ENOMEM; then nothing runs
 * and *out is NULL. */
int mx_server_start(struct mx_server **out, const struct mx_server_opts *opts,
                    struct mx_err *err);

/* The port the server listens on (the one chosen when opts->port was 0). */
int mx_server_port(const struct mx_server *srv);

/* Stops accepting, answers queued requests 503, cancels the running one, waits for every thread
 * and frees the server. The engines are then the caller's again. NULL ok. */
void mx_server_stop(struct mx_server *srv);

/* True when host (a numeric address, or "localhost") is a loopback address (127.0.0.0/8, ::1). */
bool mx_server_host_is_loopback(const char *host);

#endif
