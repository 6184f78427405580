/* remote_engine.c - the remote chat engine and `mixel run --remote` (see remote.h).
 *
 * A reply is one POST {url}/chat/completions with "stream": true: the conversation becomes
 * OpenAI's messages (roles, an assistant's tool_calls, a tool answer's tool_call_id), the
 * session's sampling settings the fields OpenAI-compatible servers take (top_k and min_p are
 * extensions llama.cpp's server, vLLM and ollama's OpenAI layer accept; others ignore them), and
 * each streamed chunk's choices[0].delta.content becomes a text event. A server that answers
 * with one JSON object instead of a stream (some proxies turn streaming off) is read the same
 * way from choices[0].message.content.
 *
 * Tools: the chat's tools go out as OpenAI's "tools" definitions; the calls the server streams
 * back (delta.tool_calls fragments, or message.tool_calls) are gathered (net/remote_calls.h) and
 * posted after the answer's text as Mistral v3 call text, which the TUI parses for any engine
 * that is not the local LLM, so remote calls are confirmed, run and stored like local ones.
 *
 * Tuned for a chat's rhythm: one request per answer, events of a token or a few, so nothing is
 * kept between replies but the settings (the server keeps its own caches).
 */
#include "net/remote.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "net/remote_calls.h"
#include "net/remote_http.h"

#define DEFAULT_CONNECT_S 10.0
#define DEFAULT_STALL_S 120.0
#define DEFAULT_RETRIES 3

/* The engine: a copy of the options (strings owned) and its identity. */
struct remote {
    struct mx_engine base;
    char *url;                  /* owned: the base URL, "/v1" added when it had no path */
    char *model;                /* owned: the model asked for */
    char *api_key;              /* owned: NULL when none; wiped at free */
    double connect_s, stall_s;  /* timeouts (seconds) */
    int retries;                /* extra attempts after a connection error */
};

/* Monotonic seconds, for the answer's timings. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- options -------------------------------------------------------------------------------- */

/* A config number at key into *out (left as it is when absent). */
static int config_number(const struct mx_config *c, const char *key, double *out,
                         struct mx_err *err) {
    json_t *v = mx_config_get(c, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return mx_err_set(err, MX_EFORMAT, "%s: %s: expected a number",
                          mx_config_path(c) ? mx_config_path(c) : "config", key);
    *out = json_number_value(v);
    return 0;
}

int mx_remote_opts_fill(struct mx_remote_opts *o, const struct mx_config *c, struct mx_err *err) {
    int rc;
    const char *s = NULL;
    if (!o->url || !o->url[0]) {
        if ((rc = mx_config_string(c, "remote.url", &s, err)) < 0 && rc != MX_ENOENT)
            return rc;
        o->url = s;
    }
    if (!o->model || !o->model[0]) {
        s = NULL;
        if ((rc = mx_config_string(c, "remote.model", &s, err)) < 0 && rc != MX_ENOENT)
            return rc;
        o->model = s;
    }
    if (!o->api_key || !o->api_key[0]) {
        const char *k = getenv("MIXEL_API_KEY");
        if (!k || !k[0])
            k = getenv("OPENAI_API_KEY");
        if (!k || !k[0]) {
            k = NULL;
            if ((rc = mx_config_string(c, "remote.api_key", &k, err)) < 0 && rc != MX_ENOENT)
                return rc;
        }
        o->api_key = k;
    }
    double v = o->connect_timeout_s;
    if ((rc = config_number(c, "remote.connect_timeout", &v, err)) < 0)
        return rc;
    if (o->connect_timeout_s <= 0)
        o->connect_timeout_s = v;
    v = o->stall_timeout_s;
    if ((rc = config_number(c, "remote.stall_timeout", &v, err)) < 0)
        return rc;
    if (o->stall_timeout_s <= 0)
        o->stall_timeout_s = v;
    v = o->retries;
    if ((rc = config_number(c, "remote.retries", &v, err)) < 0)
        return rc;
    if (o->retries < 0 && v >= 0)
        o->retries = v > 100 ? 100 : (int)v;
    return 0;
}

/* The base URL with "/v1" added when it has no path ("http://h:8000" -> "http://h:8000/v1"),
 * without a trailing '/'. Returns a new string or NULL (OOM, or not http(s)://: *bad set). */
static char *base_url(const char *url, bool *bad) {
    *bad = false;
    if (!url || (strncmp(url, "http://", 7) && strncmp(url, "https://", 8))) {
        *bad = true;
        return NULL;
    }
    const char *host = strstr(url, "://") + 3;
    size_t n = strlen(url);
    while (n > (size_t)(host - url) && url[n - 1] == '/')
        n--;
    bool has_path = memchr(host, '/', n - (size_t)(host - url)) != NULL;
    if (n == (size_t)(host - url)) {
        *bad = true;
        return NULL;
    }
    char *s = malloc(n + 4);
    if (s)
        snprintf(s, n + 4, "%.*s%s", (int)n, url, has_path ? "" : "/v1");
    return s;
}

/* base + "/" + what, or NULL (OOM). */
static char *join(const char *base, const char *what) {
    size_t n = strlen(base) + strlen(what) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", base, what);
    return s;
}

/* A request with o's transport settings (defaults for what is unset). */
static struct mx_http_req request(const char *url, const char *api_key, double connect_s,
                                  double stall_s, int retries) {
    return (struct mx_http_req){
        .url = url, .api_key = api_key,
        .connect_timeout_s = connect_s > 0 ? connect_s : DEFAULT_CONNECT_S,
        .stall_timeout_s = stall_s > 0 ? stall_s : DEFAULT_STALL_S,
        .retries = retries >= 0 ? retries : DEFAULT_RETRIES,
    };
}

/* ---- /models -------------------------------------------------------------------------------- */

void mx_remote_names_free(char **names, size_t n) {
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* The context length a model entry states: vLLM's "max_model_len", llama.cpp's
 * "meta": {"n_ctx_train"}, or "context_length"; 0 when none. */
static int entry_n_ctx(json_t *e) {
    json_t *v = json_object_get(e, "max_model_len");
    if (!json_is_integer(v))
        v = json_object_get(json_object_get(e, "meta"), "n_ctx_train");
    if (!json_is_integer(v))
        v = json_object_get(e, "context_length");
    json_int_t k = json_is_integer(v) ? json_integer_value(v) : 0;
    return k > 0 && k <= INT32_MAX ? (int)k : 0;
}

/* GET base/models: the ids; *n_ctx (NULL ok) gets the context length the entry of `want` (NULL:
 * the first) states, 0 when none. */
static int list_models(const char *base, const char *key, double connect_s, double stall_s,
                       int retries, const char *want, int *n_ctx, char ***names, size_t *n,
                       struct mx_err *err) {
    *names = NULL;
    *n = 0;
    char *url = join(base, "models");
    if (!url)
        return mx_err_set(err, MX_ENOMEM, "remote: out of memory");
    char shown[512];
    mx_http_url_display(url, shown, sizeof shown);
    struct mx_http_req r = request(url, key, connect_s, stall_s, retries);
    int rc = mx_http_do(&r, err);
    json_t *j = NULL;
    if (rc < 0)
        goto out;
    j = r.answer ? json_loadb(r.answer, r.answer_len, 0, NULL) : NULL;
    json_t *data = json_is_object(j) ? json_object_get(j, "data") : NULL;
    if (!json_is_array(data)) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: not a model list (no \"data\" array)", shown);
        goto out;
    }
    size_t m = json_array_size(data);
    char **v = calloc(m ? m : 1, sizeof *v);
    if (!v) {
        rc = mx_err_set(err, MX_ENOMEM, "remote: out of memory");
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        json_t *id = json_object_get(json_array_get(data, i), "id");
        if (!json_is_string(id))
            continue;
        if (n_ctx && (want ? !strcmp(want, json_string_value(id)) : k == 0))
            *n_ctx = entry_n_ctx(json_array_get(data, i));
        if (!(v[k] = strdup(json_string_value(id)))) {
            mx_remote_names_free(v, k);
            rc = mx_err_set(err, MX_ENOMEM, "remote: out of memory");
            goto out;
        }
        k++;
    }
    *names = v;
    *n = k;
out:
    json_decref(j);
    free(r.answer);
    free(url);
    return rc;
}

int mx_remote_models(const struct mx_remote_opts *o, char ***names, size_t *n,
                     struct mx_err *err) {
    bool bad;
    char *base = base_url(o->url, &bad);
    if (!base)
        return bad ? mx_err_set(err, MX_EINVAL, "remote: '%s' is not an http:// or https:// URL",
                                o->url ? o->url : "")
                   : mx_err_set(err, MX_ENOMEM, "remote: out of memory");
    int rc = list_models(base, o->api_key, o->connect_timeout_s, o->stall_timeout_s, o->retries,
                         NULL, NULL, names, n, err);
    free(base);
    return rc;
}

/* The model to ask for: o->model, else the server's first. *n_ctx (NULL ok) gets the context
 * length the server states for it (0: none; a named model's list is asked for this only, and
 * its failure is no error). Returns a new string or NULL with err set. */
static char *resolve_model(const struct mx_remote_opts *o, const char *base, int *n_ctx,
                           struct mx_err *err) {
    char **names = NULL;
    size_t n = 0;
    if (n_ctx)
        *n_ctx = 0;
    if (o->model && o->model[0]) {
        if (n_ctx && list_models(base, o->api_key, o->connect_timeout_s, o->stall_timeout_s,
                                 0, o->model, n_ctx, &names, &n, NULL) == 0)
            mx_remote_names_free(names, n);
        char *m = strdup(o->model);
        if (!m)
            mx_err_set(err, MX_ENOMEM, "remote: out of memory");
        return m;
    }
    if (list_models(base, o->api_key, o->connect_timeout_s, o->stall_timeout_s, o->retries,
                    NULL, n_ctx, &names, &n, err) < 0)
        return NULL;
    char *m = NULL;
    if (n == 0) {
        char shown[512];
        mx_http_url_display(base, shown, sizeof shown);
        mx_err_set(err, MX_ENOENT, "%s/models: the server lists no model (name one with "
                   "--remote-model)", shown);
    } else if (!(m = strdup(names[0]))) {
        mx_err_set(err, MX_ENOMEM, "remote: out of memory");
    }
    mx_remote_names_free(names, n);
    return m;
}

/* ---- the request body ----------------------------------------------------------------------- */

/* Adds the sampling settings that map onto OpenAI's fields (and the two common extensions). */
static int add_sampling(json_t *req, const struct mx_gen_settings *s) {
    if (!s)
        return 0;
    const struct mx_sampler_params *p = &s->sampling;
    int rc = 0;
    /* every truncation is sent also when it is off (top_k 0, top_p 1, min_p 0): left out, the
     * server's own defaults (top_k 40 in llama.cpp's) would sample differently */
    rc |= json_object_set_new(req, "temperature", json_real(p->temp > 0 ? p->temp : 0.0));
    rc |= json_object_set_new(req, "top_p", json_real(p->top_p < 1 ? p->top_p : 1.0));
    rc |= json_object_set_new(req, "top_k", json_integer(p->top_k > 0 ? p->top_k : 0));
    rc |= json_object_set_new(req, "min_p", json_real(p->min_p > 0 ? p->min_p : 0.0));
    if (p->typical_p > 0 && p->typical_p < 1)
        rc |= json_object_set_new(req, "typical_p", json_real(p->typical_p));
    if (p->freq_penalty != 0)
        rc |= json_object_set_new(req, "frequency_penalty", json_real(p->freq_penalty));
    if (p->presence_penalty != 0)
        rc |= json_object_set_new(req, "presence_penalty", json_real(p->presence_penalty));
    if (p->repeat_penalty != 1 && p->repeat_penalty > 0) { /* llama.cpp's name, vLLM's name */
        rc |= json_object_set_new(req, "repeat_penalty", json_real(p->repeat_penalty));
        rc |= json_object_set_new(req, "repetition_penalty", json_real(p->repeat_penalty));
    }
    if ((p->repeat_penalty != 1 || p->freq_penalty != 0 || p->presence_penalty != 0) &&
        p->penalty_last_n != 64) /* llama.cpp's window, when not its default */
        rc |= json_object_set_new(req, "repeat_last_n", json_integer(p->penalty_last_n));
    /* a seed past 2^53 (a fresh random one: the user's are small) is folded to 31 bits: many
     * JSON readers keep numbers as doubles, and llama.cpp's server takes 32-bit seeds */
    uint64_t seed = p->seed <= ((uint64_t)1 << 53) ? p->seed : p->seed % 2147483647u;
    rc |= json_object_set_new(req, "seed", json_integer((json_int_t)seed));
    if (s->n_predict > 0)
        rc |= json_object_set_new(req, "max_tokens", json_integer(s->n_predict));
    if (s->stop[0]) {
        json_t *st = json_array();
        for (int i = 0; st && i < MX_GEN_MAX_STOPS && s->stop[i]; i++)
            rc |= json_array_append_new(st, json_string(s->stop[i]));
        rc |= json_object_set_new(req, "stop", st);
    }
    return rc ? MX_ENOMEM : 0;
}

/* OpenAI's role names. */
static const char *role_name(enum mx_role r) {
    switch (r) {
    case MX_ROLE_SYSTEM: return "system";
    case MX_ROLE_ASSISTANT: return "assistant";
    case MX_ROLE_TOOL: return "tool";
    default: return "user";
    }
}

/* One message: {"role", "content", "tool_calls": [{"id", "type", "function": {"name",
 * "arguments"}}], "tool_call_id"}. NULL on OOM. */
static json_t *message_json(const struct mx_turn *t) {
    json_t *m = json_object();
    if (!m)
        return NULL;
    int rc = json_object_set_new(m, "role", json_string(role_name(t->role)));
    rc |= json_object_set_new(m, "content", t->text ? json_string(t->text) : json_null());
    if (t->n_tool_calls > 0) {
        json_t *calls = json_array();
        for (size_t i = 0; calls && i < t->n_tool_calls; i++) {
            const struct mx_tool_call *c = &t->tool_calls[i];
            json_t *fn = json_pack("{s:s, s:s}", "name", c->name ? c->name : "", "arguments",
                                   c->arguments ? c->arguments : "{}");
            json_t *call = fn ? json_pack("{s:s, s:s, s:o}", "id", c->id ? c->id : "", "type",
                                          "function", "function", fn) : NULL;
            rc |= json_array_append_new(calls, call);
        }
        rc |= json_object_set_new(m, "tool_calls", calls);
    }
    if (t->tool_call_id)
        rc |= json_object_set_new(m, "tool_call_id", json_string(t->tool_call_id));
    if (rc) {
        json_decref(m);
        return NULL;
    }
    return m;
}

/* The chat's tools as OpenAI's definitions, [{"type": "function", "function": {"name",
 * "description", "parameters"}}], into *out (NULL when there are none). Returns 0, MX_EFORMAT
 * (a tool's parameters are not a JSON object), MX_ENOMEM. */
static int tools_json(const struct mx_gen_settings *s, json_t **out, struct mx_err *err) {
    *out = NULL;
    if (!s || s->n_tools == 0 || !s->tools)
        return 0;
    json_t *arr = json_array();
    if (!arr)
        return mx_err_set(err, MX_ENOMEM, "remote: out of memory");
    for (size_t i = 0; i < s->n_tools; i++) {
        const struct mx_tool_def *t = &s->tools[i];
        json_error_t je;
        json_t *params = t->parameters ? json_loads(t->parameters, 0, &je) : json_object();
        if (!json_is_object(params)) {
            json_decref(params);
            json_decref(arr);
            return mx_err_set(err, MX_EFORMAT, "tool %s: its parameters are not a JSON object",
                              t->name ? t->name : "?");
        }
        json_t *fn = json_pack("{s:s, s:s, s:o}", "name", t->name ? t->name : "", "description",
                               t->description ? t->description : "", "parameters", params);
        json_t *def = fn ? json_pack("{s:s, s:o}", "type", "function", "function", fn) : NULL;
        if (!def || json_array_append_new(arr, def) != 0) {
            json_decref(arr);
            return mx_err_set(err, MX_ENOMEM, "remote: out of memory");
        }
    }
    *out = arr;
    return 0;
}

/* The body of a streamed request: model, stream, the usage chunk, sampling, then `what` (the
 * messages array or the prompt string, stolen) and tools (stolen, NULL: none). Returns the JSON
 * text (caller frees) or NULL. */
static char *request_body(const char *model, const char *key, json_t *what, json_t *tools,
                          const struct mx_gen_settings *s) {
    json_t *req = json_pack("{s:s, s:b, s:{s:b}}", "model", model, "stream", 1,
                            "stream_options", "include_usage", 1);
    if (!req) {
        json_decref(what);
        json_decref(tools);
        return NULL;
    }
    /* json_object_set_new takes the value also when it fails */
    int rc = tools ? json_object_set_new(req, "tools", tools) : 0;
    if (rc != 0 || !what || json_object_set_new(req, key, what) != 0 ||
        add_sampling(req, s) != 0) {
        json_decref(req);
        return NULL;
    }
    /* settings are floats: 7 digits give 0.8 back as "0.8", not 0.800000011920929 */
    char *text = json_dumps(req, JSON_COMPACT | JSON_REAL_PRECISION(7));
    json_decref(req);
    return text;
}

/* ---- the streamed answer -------------------------------------------------------------------- */

/* Reading a completion's chunks (streamed or whole), for a reply and for `mixel run`. */
struct reader {
    bool chat;                         /* chat chunks (delta.content) or completions (text) */
    int (*text)(void *ud, const char *s, size_t n);
    void *ud;
    size_t n_pieces;                   /* text pieces received */
    size_t n_prompt, n_completion;     /* the usage chunk's numbers (0: none) */
    bool done;                         /* [DONE] came */
    double t0, t_first;                /* request start, first text (0: none yet) */
    char finish[32];                   /* finish_reason */
    struct mx_remote_calls *calls;     /* chat: the tool calls gathered (NULL: not asked for) */
    struct mx_err err;                 /* an error inside the stream */
};

/* One chunk object (a streamed one or a whole answer). */
static int take_chunk(struct reader *rd, json_t *j) {
    json_t *e = json_object_get(j, "error");
    if (e) { /* llama.cpp and vLLM report a failure mid-stream as an error object */
        char *dump = json_dumps(j, JSON_COMPACT);
        char text[300];
        mx_http_error_text(dump, dump ? strlen(dump) : 0, text, sizeof text);
        free(dump);
        return mx_err_set(&rd->err, MX_EIO, "the server stopped with an error: %s", text);
    }
    json_t *u = json_object_get(j, "usage");
    if (json_is_object(u)) {
        json_t *v;
        if (json_is_integer(v = json_object_get(u, "prompt_tokens")))
            rd->n_prompt = (size_t)json_integer_value(v);
        if (json_is_integer(v = json_object_get(u, "completion_tokens")))
            rd->n_completion = (size_t)json_integer_value(v);
    }
    json_t *c0 = json_array_get(json_object_get(j, "choices"), 0);
    if (!json_is_object(c0))
        return 0;
    json_t *fr = json_object_get(c0, "finish_reason");
    if (json_is_string(fr))
        snprintf(rd->finish, sizeof rd->finish, "%s", json_string_value(fr));
    json_t *t;
    if (rd->chat) {
        json_t *d = json_object_get(c0, "delta");
        if (!json_is_object(d))
            d = json_object_get(c0, "message");
        json_t *tc = json_object_get(d, "tool_calls");
        if (rd->calls && tc && !json_is_null(tc)) {
            int rc = mx_remote_calls_add(rd->calls, tc, &rd->err);
            if (rc < 0)
                return rc;
        }
        t = json_object_get(d, "content");
    } else {
        t = json_object_get(c0, "text");
    }
    if (!json_is_string(t) || json_string_length(t) == 0)
        return 0;
    if (rd->t_first == 0)
        rd->t_first = now_s();
    rd->n_pieces++;
    int rc = rd->text(rd->ud, json_string_value(t), json_string_length(t));
    if (rc < 0)
        return mx_err_set(&rd->err, rc, "the answer could not be written (%s)",
                          mx_strerror(rc));
    return 0;
}

/* One server-sent event: "[DONE]" ends the answer, anything else must be a JSON chunk. */
static int on_event(void *ud, const char *type, const char *data, size_t n) {
    struct reader *rd = ud;
    (void)type;
    if (rd->done)
        return 0;
    if (n == 6 && !memcmp(data, "[DONE]", 6)) {
        rd->done = true;
        return 0;
    }
    json_error_t je;
    json_t *j = json_loadb(data, n, 0, &je);
    if (!json_is_object(j)) {
        json_decref(j);
        return mx_err_set(&rd->err, MX_EFORMAT, "a streamed chunk is not a JSON object (%s at "
                          "column %d)", je.text, je.column);
    }
    int rc = take_chunk(rd, j);
    json_decref(j);
    return rc;
}

/* POSTs body to url and reads the answer into rd. Returns 0 or an error (err set). */
static int run_request(const char *url, const char *key, double connect_s, double stall_s,
                       int retries, const char *body, struct reader *rd,
                       bool (*canceled)(void *), void *cancel_ud, struct mx_err *err) {
    char shown[512];
    mx_http_url_display(url, shown, sizeof shown);
    struct mx_http_req r = request(url, key, connect_s, stall_s, retries);
    r.body = body;
    r.on_event = on_event;
    r.event_ud = rd;
    r.canceled = canceled;
    r.cancel_ud = cancel_ud;
    rd->t0 = now_s();
    struct mx_err herr = {0};
    int rc = mx_http_do(&r, &herr);
    if (rc < 0 && rd->err.code) /* the stream's own error says more than "callback failed" */
        mx_err_set(err, rc, "%s: %s", shown, rd->err.msg);
    else if (rc < 0)
        mx_err_set(err, rc, "%s", herr.msg);
    if (rc == 0 && !r.streamed) { /* one JSON object: a server that does not stream */
        json_error_t je;
        json_t *j = r.answer ? json_loadb(r.answer, r.answer_len, 0, &je) : NULL;
        if (!json_is_object(j))
            rc = mx_err_set(err, MX_EFORMAT, "%s: the answer is neither an event stream nor a "
                            "JSON object", shown);
        else if ((rc = take_chunk(rd, j)) < 0)
            rc = mx_err_set(err, rc, "%s: %s", shown, rd->err.msg);
        json_decref(j);
    } else if (rc == 0 && !rd->done && !rd->finish[0]) {
        /* neither [DONE] nor a finish_reason: the connection closed mid-answer (a crashed or
         * restarted server); not retried, since the server may have done the work */
        rc = mx_err_set(err, MX_EIO, "%s: the stream broke off before the end (%zu pieces "
                        "received)", shown, rd->n_pieces);
    }
    free(r.answer);
    return rc;
}

/* ---- the engine ----------------------------------------------------------------------------- */

/* e->free: the key wiped before it is freed. NULL ok. */
static void remote_free(struct mx_engine *e) {
    struct remote *R = (struct remote *)e;
    if (!R)
        return;
    if (R->api_key) {
        explicit_bzero(R->api_key, strlen(R->api_key));
        free(R->api_key);
    }
    free(R->url);
    free(R->model);
    free(R);
}

/* A reply's sink: the job its text events go to. */
struct reply_io {
    struct mx_job *job;   /* borrowed: the running job */
};

/* A streamed piece as a text event (events carry C strings: NUL bytes are left out). */
static int reply_text(void *ud, const char *s, size_t n) {
    struct reply_io *io = ud;
    return mx_job_post_text(io->job, s, n);
}

/* Esc in the chat: the job's cancel flag, polled by the transfer. */
static bool reply_canceled(void *ud) {
    return mx_job_canceled(((struct reply_io *)ud)->job);
}

/* e->reply on the worker thread: the conversation as one streamed chat request; text events,
 * the server's numbers as stats, an error also as a notice; ends with mx_job_done. */
static void remote_reply(struct mx_engine *e, struct mx_job *job, const struct mx_turn *turns,
                         int n, const struct mx_gen_settings *s) {
    struct remote *R = (struct remote *)e;
    struct mx_err err = {0};
    int rc = 0;
    char *body = NULL, *url = NULL;
    struct mx_remote_calls calls = {0};
    json_t *tools = NULL;
    if ((rc = tools_json(s, &tools, &err)) < 0)
        goto out;
    json_t *msgs = json_array();
    for (int i = 0; msgs && i < n; i++)
        if (json_array_append_new(msgs, message_json(&turns[i])) != 0) {
            json_decref(msgs);
            msgs = NULL;
        }
    if (!msgs)
        json_decref(tools); /* request_body takes both, but is not reached */
    if (!msgs || !(body = request_body(R->model, "messages", msgs, tools, s)) ||
        !(url = join(R->url, "chat/completions"))) {
        rc = mx_err_set(&err, MX_ENOMEM, "remote: out of memory");
        goto out;
    }
    struct reply_io io = {job};
    struct reader rd = {.chat = true, .text = reply_text, .ud = &io, .calls = &calls};
    rc = run_request(url, R->api_key, R->connect_s, R->stall_s, R->retries, body, &rd,
                     reply_canceled, &io, &err);
    if (rc == 0 && calls.n > 0) {
        /* the calls after the text, in the syntax the TUI parses for a remote engine; calls it
         * cannot use (arguments that are not JSON) are a notice, the answer's text stays */
        char *ct = NULL;
        struct mx_err cerr = {0};
        int crc = mx_remote_calls_text(&calls, &ct, &cerr);
        if (crc == MX_ENOMEM)
            rc = mx_err_set(&err, crc, "%s", cerr.msg);
        else if (crc < 0)
            mx_job_post(job, MX_EV_NOTICE, cerr.msg, 0, 0);
        else if (rd.n_pieces > 0 && mx_job_post_text(job, "\n", 1) < 0)
            rc = mx_err_set(&err, MX_ENOMEM, "remote: out of memory");
        if (ct && rc == 0 && mx_job_post_text(job, ct, strlen(ct)) < 0)
            rc = mx_err_set(&err, MX_ENOMEM, "remote: out of memory");
        free(ct);
    }
    double gen_s = rd.t_first > 0 ? now_s() - rd.t_first : 0;
    size_t n_gen = rd.n_completion ? rd.n_completion : rd.n_pieces;
    if (rc == 0 || n_gen > 0)
        mx_job_post(job, MX_EV_STATS, NULL, gen_s > 0 ? (double)n_gen / gen_s : 0,
                    (double)(rd.n_prompt + rd.n_completion));
    if (rc == 0 && !strcmp(rd.finish, "length") && (!s || s->n_predict <= 0))
        mx_job_post(job, MX_EV_NOTICE, "the server's context is full: the answer was cut "
                    "short", 1, 0);
out:
    mx_remote_calls_free(&calls);
    free(body);
    free(url);
    /* the server's own words (HTTP 401: Invalid API key) are what the user needs to act on:
     * shown as a notice, not only in the failure's detail */
    if (rc < 0 && rc != MX_ECANCELED)
        mx_job_post(job, MX_EV_NOTICE, mx_err_msg(&err, rc), 0, 0);
    mx_job_done(job, rc, rc < 0 && rc != MX_ECANCELED ? mx_err_msg(&err, rc) : NULL);
}

struct mx_engine *mx_remote_engine_new(const struct mx_remote_opts *o, struct mx_err *err) {
    bool bad;
    struct remote *R = calloc(1, sizeof *R);
    if (!R) {
        mx_err_set(err, MX_ENOMEM, "remote: out of memory");
        return NULL;
    }
    R->base.reply = remote_reply;
    R->base.free = remote_free;
    R->connect_s = o->connect_timeout_s;
    R->stall_s = o->stall_timeout_s;
    R->retries = o->retries;
    if (!(R->url = base_url(o->url, &bad))) {
        if (bad)
            mx_err_set(err, MX_EINVAL, "remote: '%s' is not an http:// or https:// URL",
                       o->url ? o->url : "");
        else
            mx_err_set(err, MX_ENOMEM, "remote: out of memory");
        goto fail;
    }
    if (o->api_key && o->api_key[0] && !(R->api_key = strdup(o->api_key))) {
        mx_err_set(err, MX_ENOMEM, "remote: out of memory");
        goto fail;
    }
    if (!(R->model = resolve_model(o, R->url, &R->base.n_ctx, err)))
        goto fail;
    char shown[512];
    mx_http_url_display(R->url, shown, sizeof shown);
    const char *host = strstr(shown, "://") + 3;
    size_t host_len = strcspn(host, "/");
    snprintf(R->base.name, sizeof R->base.name, "remote: %.*s / %s", (int)host_len, host,
             R->model);
    snprintf(R->base.device, sizeof R->base.device, "%s",
             strncmp(R->url, "https", 5) ? "http" : "https");
    return &R->base;
fail:
    remote_free(&R->base);
    return NULL;
}

/* e as a remote engine, or NULL when it is another kind. */
static struct remote *as_remote(const struct mx_engine *e) {
    return e && e->reply == remote_reply ? (struct remote *)e : NULL;
}

const char *mx_remote_engine_model(const struct mx_engine *e) {
    struct remote *R = as_remote(e);
    return R ? R->model : NULL;
}

void mx_remote_engine_id(const struct mx_engine *e, char *buf, size_t size) {
    struct remote *R = as_remote(e);
    char shown[512];
    if (!size)
        return;
    if (!R) {
        buf[0] = '\0';
        return;
    }
    mx_http_url_display(R->url, shown, sizeof shown);
    snprintf(buf, size, "remote:%s#%s", shown, R->model);
}

/* ---- mixel run --remote --------------------------------------------------------------------- */

int mx_remote_complete(const struct mx_remote_opts *o, const char *prompt,
                       const struct mx_gen_settings *s, const struct mx_remote_sink *sink,
                       struct mx_remote_stats *st, struct mx_err *err) {
    bool bad;
    int rc = 0;
    char *model = NULL, *body = NULL, *url = NULL;
    char *base = base_url(o->url, &bad);
    if (!base)
        return bad ? mx_err_set(err, MX_EINVAL, "remote: '%s' is not an http:// or https:// URL",
                                o->url ? o->url : "")
                   : mx_err_set(err, MX_ENOMEM, "remote: out of memory");
    if (!(model = resolve_model(o, base, NULL, err))) {
        rc = err && err->code ? err->code : MX_EIO;
        goto out;
    }
    json_t *p = json_string(prompt ? prompt : "");
    if (!p || !(body = request_body(model, "prompt", p, NULL, s)) ||
        !(url = join(base, "completions"))) {
        rc = mx_err_set(err, MX_ENOMEM, "remote: out of memory");
        goto out;
    }
    struct reader rd = {.chat = false, .text = sink->text, .ud = sink->ud};
    rc = run_request(url, o->api_key, o->connect_timeout_s, o->stall_timeout_s, o->retries, body,
                     &rd, sink->canceled, sink->ud, err);
    if (st) {
        memset(st, 0, sizeof *st);
        st->n_prompt = rd.n_prompt;
        st->n_generated = rd.n_completion ? rd.n_completion : rd.n_pieces;
        st->first_s = rd.t_first > 0 ? rd.t_first - rd.t0 : 0;
        st->total_s = now_s() - rd.t0;
        snprintf(st->finish, sizeof st->finish, "%s", rd.finish);
    }
out:
    free(body);
    free(url);
    free(model);
    free(base);
    return rc;
}
