/* remote.h - remote engines: mixel as the terminal in front of an OpenAI-compatible server
 * (vLLM, llama.cpp's server, ollama, TGI, `mixel serve`) for models one machine cannot hold.
 *
 * A remote chat engine is a struct mx_engine (app/engine.h) like the local one: the TUI and
 * `mixel run` use it through the same interface, and it streams the answer from
 * POST {url}/chat/completions as server-sent events (net/sse.h) into the job's events. `mixel
 * run --remote` sends the raw prompt to {url}/completions, which is what the local `mixel run`
 * does with a prompt (no chat template). {url}/models lists what the server offers.
 *
 * Transport (libcurl): a connect timeout, a stall timeout (no byte for that long while a reply
 * streams), retries with backoff on connection errors only (never once a byte was received: a
 * request is not repeated behind the server's back), cancel polled in libcurl's progress
 * callback, and HTTP errors reported with the server's own message (OpenAI's
 * {"error":{"message"}} or the start of a plain body). The API key goes out only as an
 * "Authorization: Bearer" header: it is never part of a message, a log line or a session.
 *
 * Threading: an engine's reply runs on the worker thread; the other functions block the caller
 * (the CLI's thread) for at most the timeouts.
 */
#ifndef MX_REMOTE_H
#define MX_REMOTE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/err.h"
#include "app/config.h"
#include "app/engine.h"
#include "app/llm.h"

/* Where and how to reach a server. Strings borrowed for the call (an engine copies them). */
struct mx_remote_opts {
    const char *url;          /* base URL, e.g. "http://gpu-box:8000/v1"; a URL with no path
                               * gets "/v1" (OpenAI's layout) */
    const char *model;        /* model name to ask for; NULL/"": the first of {url}/models */
    const char *api_key;      /* sent as a Bearer token; NULL/"": none */
    double connect_timeout_s; /* per connection attempt; <= 0: 10 */
    double stall_timeout_s;   /* no byte for this long ends a request; <= 0: 120 */
    int retries;              /* extra attempts after a connection error; < 0: 3 */
};

/* Fills o from the environment and the configuration (c NULL ok), for what the command line
 * left unset (NULL fields): url from config "remote.url"; model from "remote.model"; the key
 * from $MIXEL_API_KEY, else $OPENAI_API_KEY, else "remote.api_key"; timeouts from
 * "remote.connect_timeout" and "remote.stall_timeout" (seconds, numbers); retries from
 * "remote.retries". Strings borrowed from the environment or c. Returns 0, or MX_EFORMAT when a
 * config value has the wrong type (the message names the key, never a value). */
int mx_remote_opts_fill(struct mx_remote_opts *o, const struct mx_config *c, struct mx_err *err);

/* The model ids {url}/models lists (its "data"[].id), in the server's order. Returns 0 with
 * *names (free with mx_remote_names_free) and *n, or an error (transport, HTTP, MX_EFORMAT for
 * an answer that is not a model list). */
int mx_remote_models(const struct mx_remote_opts *o, char ***names, size_t *n,
                     struct mx_err *err);
void mx_remote_names_free(char **names, size_t n); /* NULL ok */

/* A chat engine on the server: o's strings copied, the model resolved ({url}/models when
 * o->model is empty: then the server is asked once, now). name is "remote: HOST / MODEL",
 * device "http" or "https", n_ctx the context length {url}/models states for the model (vLLM's
 * max_model_len, llama.cpp's meta.n_ctx_train; 0 when none). Returns the engine (e->free), or
 * NULL with err set. */
struct mx_engine *mx_remote_engine_new(const struct mx_remote_opts *o, struct mx_err *err);

/* The model an engine made by mx_remote_engine_new asks for; NULL for any other engine. */
const char *mx_remote_engine_model(const struct mx_engine *e);

/* "remote:URL#MODEL", the model path a session stores for a remote engine (so the session says
 * which backend and model answered; never the key). Writes at most size bytes into buf. */
void mx_remote_engine_id(const struct mx_engine *e, char *buf, size_t size);

/* What a completion did (for `mixel run`'s summary line). */
struct mx_remote_stats {
    size_t n_prompt;       /* prompt tokens, from the server's usage (0: it did not say) */
    size_t n_generated;    /* generated tokens: usage, else the streamed pieces */
    double first_s;        /* seconds until the first piece of text */
    double total_s;        /* seconds of the whole request */
    char finish[32];       /* the server's finish_reason ("stop", "length"), or "" */
};

/* Where a completion's text goes: s[0..n) as the server streams it; returns 0 or < 0 to stop
 * with that error. canceled (NULL ok) is polled while the request runs. */
struct mx_remote_sink {
    int (*text)(void *ud, const char *s, size_t n);
    bool (*canceled)(void *ud);
    void *ud;
};

/* `mixel run --remote`: streams the completion of the raw prompt from {url}/completions with
 * s's sampling settings (temperature, top_p, top_k, min_p, seed, max_tokens = n_predict when
 * > 0, stop strings). Resolves the model like mx_remote_engine_new. Returns 0 with *st (NULL ok),
 * MX_ECANCELED, or the transport's, HTTP's or sink's error. */
int mx_remote_complete(const struct mx_remote_opts *o, const char *prompt,
                       const struct mx_gen_settings *s, const struct mx_remote_sink *sink,
                       struct mx_remote_stats *st, struct mx_err *err);

#endif
