/* oai.c - the OpenAI API's request and response JSON (see oai.h).
 *
 * Requests are read field by field with explicit type checks (no json_unpack format strings: the
 * error must name the field and what was wrong with it). Responses are built as jansson trees and
 * dumped compactly in the key order OpenAI uses, so clients that compare bytes or parse loosely
 * (SSE line splitters) see what they see from OpenAI and llama.cpp's server.
 */
#include "net/oai.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/text.h"
#include "core/llm/json_schema.h"

/* ---- requests ------------------------------------------------------------------------------ */

/* Keeps a malloc'd string in req (freed with it). Returns 0 or MX_ENOMEM (s freed). */
static int keep(struct mx_oai_req *req, char *s, struct mx_err *err) {
    char **v = realloc(req->owned, (req->n_owned + 1) * sizeof *v);
    if (!v) {
        free(s);
        return mx_err_set(err, MX_ENOMEM, "request: out of memory");
    }
    req->owned = v;
    v[req->n_owned++] = s;
    return 0;
}

/* A short text of what a value is, for error messages ("a string", "an array", ...). */
static const char *type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* Reads the number field `key` of o into *out when present (and not null) and in [lo, hi].
 * Returns 1 when it was read, 0 when absent, MX_EINVAL with the field named. */
static int get_num(const json_t *o, const char *key, double lo, double hi, double *out,
                   struct mx_err *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return mx_err_set(err, MX_EINVAL, "%s: must be a number from %g to %g (got %s)", key, lo,
                          hi, type_name(v));
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi))
        return mx_err_set(err, MX_EINVAL, "%s: must be a number from %g to %g (got %g)", key, lo,
                          hi, d);
    *out = d;
    return 1;
}

/* The same for a whole number (an integer, or a real with no fraction). */
static int get_int(const json_t *o, const char *key, long long lo, long long hi, long long *out,
                   struct mx_err *err) {
    double d;
    int rc = get_num(o, key, (double)lo, (double)hi, &d, err);
    if (rc <= 0)
        return rc;
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        *out = json_integer_value(v);
    else if (d == floor(d))
        *out = (long long)d;
    else
        return mx_err_set(err, MX_EINVAL, "%s: must be a whole number (got %g)", key, d);
    return 1;
}

/* Reads a boolean field; absent or null leaves *out. Returns 0 or MX_EINVAL. */
static int get_bool(const json_t *o, const char *key, bool *out, struct mx_err *err) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return mx_err_set(err, MX_EINVAL, "%s: must be true or false (got %s)", key,
                          type_name(v));
    *out = json_is_true(v);
    return 0;
}

/* A message's content: a string, null (only for an assistant's tool calls), or OpenAI's array of
 * parts of which the "text" ones are joined (others refused: this server has no vision input).
 * *text gets the string (borrowed from the tree or kept in req) or NULL. */
static int read_content(struct mx_oai_req *req, const json_t *c, size_t i, const char **text,
                        struct mx_err *err) {
    *text = NULL;
    if (!c || json_is_null(c))
        return 0;
    if (json_is_string(c)) {
        *text = json_string_value(c);
        return 0;
    }
    if (!json_is_array(c))
        return mx_err_set(err, MX_EINVAL, "messages[%zu].content: must be a string or an array "
                          "of parts (got %s)", i, type_name(c));
    size_t total = 0, k;
    const json_t *part;
    json_array_foreach(c, k, part) {
        const json_t *type = json_object_get(part, "type");
        const json_t *t = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type) ||
            strcmp(json_string_value(type), "text") != 0 || !json_is_string(t))
            return mx_err_set(err, MX_EINVAL, "messages[%zu].content[%zu]: only {\"type\":"
                              "\"text\",\"text\":...} parts are understood", i, k);
        total += json_string_length(t);
    }
    char *s = malloc(total + 1);
    if (!s)
        return mx_err_set(err, MX_ENOMEM, "request: out of memory");
    size_t off = 0;
    json_array_foreach(c, k, part) {
        const json_t *t = json_object_get(part, "text");
        memcpy(s + off, json_string_value(t), json_string_length(t));
        off += json_string_length(t);
    }
    s[off] = '\0';
    *text = s;
    return keep(req, s, err);
}

/* An assistant message's tool_calls into calls[*n_calls...]; the turn points at them. */
static int read_tool_calls(struct mx_oai_req *req, const json_t *tc, size_t i,
                           struct mx_turn *t, size_t *n_calls, struct mx_err *err) {
    if (!json_is_array(tc))
        return mx_err_set(err, MX_EINVAL, "messages[%zu].tool_calls: must be an array (got %s)",
                          i, type_name(tc));
    t->tool_calls = req->calls + *n_calls;
    t->n_tool_calls = json_array_size(tc);
    size_t k;
    const json_t *call;
    json_array_foreach(tc, k, call) {
        const json_t *fn = json_object_get(call, "function");
        const json_t *id = json_object_get(call, "id");
        const json_t *name = json_object_get(fn, "name");
        const json_t *args = json_object_get(fn, "arguments");
        if (!json_is_object(call) || !json_is_object(fn) || !json_is_string(name) ||
            (id && !json_is_string(id)) || (args && !json_is_string(args) && !json_is_null(args)))
            return mx_err_set(err, MX_EINVAL, "messages[%zu].tool_calls[%zu]: must be {\"id\":"
                              "STRING,\"type\":\"function\",\"function\":{\"name\":STRING,"
                              "\"arguments\":STRING}}", i, k);
        req->calls[(*n_calls)++] = (struct mx_tool_call){
            .id = id ? json_string_value(id) : "",
            .name = json_string_value(name),
            .arguments = json_is_string(args) ? json_string_value(args) : NULL,
        };
    }
    return 0;
}

/* "messages" into req->turns. */
static int read_messages(struct mx_oai_req *req, const json_t *msgs, struct mx_err *err) {
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return mx_err_set(err, MX_EINVAL, "messages: must be a non-empty array (got %s)",
                          msgs ? type_name(msgs) : "nothing");
    size_t n = json_array_size(msgs), n_calls = 0, i;
    const json_t *m;
    json_array_foreach(msgs, i, m) {
        const json_t *tc = json_object_get(m, "tool_calls");
        if (json_is_array(tc))
            n_calls += json_array_size(tc);
    }
    req->turns = calloc(n, sizeof *req->turns);
    req->calls = n_calls ? calloc(n_calls, sizeof *req->calls) : NULL;
    if (!req->turns || (n_calls && !req->calls))
        return mx_err_set(err, MX_ENOMEM, "request: out of memory");
    n_calls = 0;
    json_array_foreach(msgs, i, m) {
        struct mx_turn *t = &req->turns[i];
        if (!json_is_object(m))
            return mx_err_set(err, MX_EINVAL, "messages[%zu]: must be an object (got %s)", i,
                              type_name(m));
        const json_t *role = json_object_get(m, "role");
        const char *r = json_string_value(role);
        if (r && !strcmp(r, "developer")) /* OpenAI's newer name for the system role */
            r = "system";
        enum mx_role er;
        if (!r || mx_role_parse(r, &er) != 0)
            return mx_err_set(err, MX_EINVAL, "messages[%zu].role: must be \"system\", \"user\", "
                              "\"assistant\" or \"tool\"", i);
        t->role = er;
        int rc = read_content(req, json_object_get(m, "content"), i, &t->text, err);
        if (rc < 0)
            return rc;
        const json_t *tc = json_object_get(m, "tool_calls");
        if (tc && !json_is_null(tc) && er == MX_ROLE_ASSISTANT) {
            if ((rc = read_tool_calls(req, tc, i, t, &n_calls, err)) < 0)
                return rc;
        } else if (tc && !json_is_null(tc)) {
            return mx_err_set(err, MX_EINVAL, "messages[%zu].tool_calls: only an assistant "
                              "message has tool calls", i);
        }
        const json_t *tid = json_object_get(m, "tool_call_id");
        if (tid && !json_is_null(tid)) {
            if (!json_is_string(tid))
                return mx_err_set(err, MX_EINVAL, "messages[%zu].tool_call_id: must be a string",
                                  i);
            t->tool_call_id = json_string_value(tid);
        }
        if (!t->text && t->n_tool_calls == 0)
            return mx_err_set(err, MX_EINVAL, "messages[%zu].content: missing (only an "
                              "assistant message with tool_calls may leave it out)", i);
    }
    req->n_turns = n;
    return 0;
}

/* "stop": a string or an array of strings, appended to s->stop. */
static int read_stop(const json_t *v, struct mx_gen_settings *s, struct mx_err *err) {
    if (!v || json_is_null(v))
        return 0;
    size_t n = 0;
    while (n < MX_GEN_MAX_STOPS && s->stop[n])
        n++;
    const json_t *one[1] = {v};
    const json_t *const *items = one;
    size_t n_items = 1;
    if (json_is_array(v)) {
        n_items = json_array_size(v);
        items = NULL;
    } else if (!json_is_string(v)) {
        return mx_err_set(err, MX_EINVAL, "stop: must be a string or an array of strings (got "
                          "%s)", type_name(v));
    }
    for (size_t k = 0; k < n_items; k++) {
        const json_t *it = items ? items[k] : json_array_get(v, k);
        if (!json_is_string(it) || json_string_length(it) == 0 ||
            strlen(json_string_value(it)) != json_string_length(it))
            return mx_err_set(err, MX_EINVAL, "stop[%zu]: must be a non-empty string", k);
        if (n >= MX_GEN_MAX_STOPS)
            return mx_err_set(err, MX_EINVAL, "stop: at most %d stop strings (server's "
                              "included)", MX_GEN_MAX_STOPS);
        s->stop[n++] = json_string_value(it);
    }
    s->stop[n] = NULL;
    return 0;
}

/* The sampling and length fields onto s. */
static int read_sampling(const json_t *o, struct mx_gen_settings *s, bool *max_set,
                         struct mx_err *err) {
    double d;
    long long ll;
    int rc;
    if ((rc = get_num(o, "temperature", 0, 100, &d, err)) < 0)
        return rc;
    if (rc)
        s->sampling.temp = (float)d;
    if ((rc = get_num(o, "top_p", 0, 1, &d, err)) < 0)
        return rc;
    if (rc)
        s->sampling.top_p = (float)d;
    if ((rc = get_num(o, "min_p", 0, 1, &d, err)) < 0)
        return rc;
    if (rc)
        s->sampling.min_p = (float)d;
    if ((rc = get_num(o, "typical_p", 0, 1, &d, err)) < 0)
        return rc;
    if (rc)
        s->sampling.typical_p = (float)d;
    if ((rc = get_num(o, "frequency_penalty", -2, 2, &d, err)) < 0)
        return rc;
    if (rc)
        s->sampling.freq_penalty = (float)d;
    if ((rc = get_num(o, "presence_penalty", -2, 2, &d, err)) < 0)
        return rc;
    if (rc)
        s->sampling.presence_penalty = (float)d;
    if ((rc = get_num(o, "repeat_penalty", 0, 10, &d, err)) < 0) /* llama.cpp's extension */
        return rc;
    if (rc)
        s->sampling.repeat_penalty = (float)d;
    if ((rc = get_int(o, "top_k", 0, 1 << 30, &ll, err)) < 0)
        return rc;
    if (rc)
        s->sampling.top_k = (int)ll;
    /* -1 is llama.cpp's "a random seed": the caller's fresh seed stays */
    if ((rc = get_int(o, "seed", -1, 9007199254740991LL, &ll, err)) < 0)
        return rc;
    if (rc && ll >= 0)
        s->sampling.seed = (uint64_t)ll;
    const char *mt = json_object_get(o, "max_completion_tokens") ? "max_completion_tokens"
                                                                 : "max_tokens";
    if ((rc = get_int(o, mt, 1, 1 << 30, &ll, err)) < 0)
        return rc;
    if (rc) {
        s->n_predict = (int)ll;
        *max_set = true;
    }
    if ((rc = get_int(o, "n", 1, 1, &ll, err)) < 0) {
        mx_err_clear(err);
        return mx_err_set(err, MX_EINVAL, "n: only one choice per request (n = 1)");
    }
    return read_stop(json_object_get(o, "stop"), s, err);
}

/* "response_format": OpenAI's {"type": "text" | "json_object" | "json_schema", "json_schema":
 * {"name", "schema", "strict"}} (llama.cpp's server also takes "schema" beside "json_object"),
 * turned into the grammar the answer must follow: the same converter as `--json-schema` and the
 * same any-object grammar as `--json`, so the server and the CLI constrain alike. The grammar
 * text is kept in req. */
static int read_response_format(const json_t *o, struct mx_oai_req *req,
                                struct mx_gen_settings *s, struct mx_err *err) {
    const json_t *rf = json_object_get(o, "response_format");
    if (!rf || json_is_null(rf))
        return 0;
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !type)
        return mx_err_set(err, MX_EINVAL, "response_format: must be {\"type\": ...}");
    const json_t *schema = NULL;
    if (strcmp(type, "text") == 0)
        return 0;
    if (strcmp(type, "json_object") == 0) {
        schema = json_object_get(rf, "schema");
    } else if (strcmp(type, "json_schema") == 0) {
        const json_t *js = json_object_get(rf, "json_schema");
        schema = json_is_object(js) ? json_object_get(js, "schema") : NULL;
        if (!schema)
            return mx_err_set(err, MX_EINVAL, "response_format: type \"json_schema\" needs "
                              "\"json_schema\": {\"schema\": {...}}");
    } else {
        return mx_err_set(err, MX_EINVAL, "response_format: type '%.40s' is not one of text, "
                          "json_object, json_schema", type);
    }
    if (!schema) {
        s->grammar_text = mx_json_any_gbnf();
        s->grammar_name = "response_format";
        return 0;
    }
    char *text = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text)
        return mx_err_set(err, MX_ENOMEM, "response_format: out of memory");
    char *gbnf = NULL;
    struct mx_err e2 = {0};
    int rc = mx_json_schema_to_gbnf(text, strlen(text), &gbnf, &e2);
    free(text);
    if (rc < 0)
        return mx_err_set(err, MX_EINVAL, "response_format: %s", mx_err_msg(&e2, rc));
    if ((rc = keep(req, gbnf, err)) < 0)
        return rc;
    s->grammar_text = gbnf;
    s->grammar_name = "response_format";
    return 0;
}

/* Fields this server would otherwise silently ignore although they change the answer. */
static int refuse_unsupported(const json_t *o, struct mx_err *err) {
    const json_t *tools = json_object_get(o, "tools");
    if (json_is_array(tools) && json_array_size(tools) > 0)
        return mx_err_set(err, MX_EINVAL, "tools: function calling is not supported by mixel "
                          "serve yet");
    const json_t *lp = json_object_get(o, "logprobs");
    if (json_is_true(lp) || (json_is_integer(lp) && json_integer_value(lp) > 0))
        return mx_err_set(err, MX_EINVAL, "logprobs: not supported by mixel serve");
    return 0;
}

int mx_oai_parse(enum mx_oai_kind kind, const char *body, size_t len, struct mx_oai_req *req,
                 struct mx_gen_settings *s, struct mx_err *err) {
    memset(req, 0, sizeof *req);
    req->kind = kind;
    json_error_t je;
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return mx_err_set(err, MX_EINVAL, "request body: not valid JSON (%s at line %d column "
                          "%d)", je.text, je.line, je.column);
    req->root = root;
    int rc;
    if (!json_is_object(root)) {
        rc = mx_err_set(err, MX_EINVAL, "request body: must be a JSON object (got %s)",
                        type_name(root));
        goto fail;
    }
    const json_t *model = json_object_get(root, "model");
    if (model && !json_is_null(model)) {
        if (!json_is_string(model)) {
            rc = mx_err_set(err, MX_EINVAL, "model: must be a string (got %s)",
                            type_name(model));
            goto fail;
        }
        req->model = json_string_value(model);
    }
    if ((rc = get_bool(root, "stream", &req->stream, err)) < 0 ||
        (rc = refuse_unsupported(root, err)) < 0 ||
        (rc = read_sampling(root, s, &req->max_set, err)) < 0 ||
        (rc = read_response_format(root, req, s, err)) < 0)
        goto fail;
    if (kind == MX_OAI_CHAT) {
        if ((rc = read_messages(req, json_object_get(root, "messages"), err)) < 0)
            goto fail;
    } else {
        const json_t *p = json_object_get(root, "prompt");
        if (json_is_array(p) && json_array_size(p) == 1) /* ["text"]: one prompt */
            p = json_array_get(p, 0);
        if (!json_is_string(p)) {
            rc = mx_err_set(err, MX_EINVAL, "prompt: must be a string (got %s)",
                            p ? type_name(p) : "nothing");
            goto fail;
        }
        req->prompt = json_string_value(p);
        req->prompt_len = json_string_length(p);
    }
    return 0;
fail:
    mx_oai_req_free(req);
    return rc;
}

void mx_oai_req_free(struct mx_oai_req *req) {
    if (!req)
        return;
    for (size_t i = 0; i < req->n_owned; i++)
        free(req->owned[i]);
    free(req->owned);
    free(req->turns);
    free(req->calls);
    json_decref(req->root);
    memset(req, 0, sizeof *req);
}

/* ---- responses ----------------------------------------------------------------------------- */

void *mx_oai_json_text(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) { /* the common case: valid already, no copy */
        unsigned int cp;
        size_t k = mx_utf8_decode(s + i, n - i, &cp);
        if (cp == 0xFFFD && !(k == 3 && !memcmp(s + i, "\xEF\xBF\xBD", 3)))
            break;
        i += k;
    }
    if (i == n)
        return json_stringn(s ? s : "", n);
    char *t = malloc(n * 3 + 1); /* each invalid byte becomes 3 */
    if (!t)
        return NULL;
    size_t o = 0;
    for (i = 0; i < n;) {
        unsigned int cp;
        size_t k = mx_utf8_decode(s + i, n - i, &cp);
        if (cp == 0xFFFD) {
            memcpy(t + o, "\xEF\xBF\xBD", 3);
            o += 3;
        } else {
            memcpy(t + o, s + i, k);
            o += k;
        }
        i += k;
    }
    json_t *j = json_stringn(t, o);
    free(t);
    return j;
}

/* Dumps v compactly and drops it. NULL in, NULL out. */
static char *dump(json_t *v) {
    if (!v)
        return NULL;
    char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(v);
    return s;
}

/* The usage object, or JSON null for no usage. */
static json_t *usage_json(const struct mx_oai_usage *u) {
    if (!u)
        return json_null();
    return json_pack("{sIsIsI}", "prompt_tokens", (json_int_t)u->prompt_tokens,
                     "completion_tokens", (json_int_t)u->completion_tokens, "total_tokens",
                     (json_int_t)(u->prompt_tokens + u->completion_tokens));
}

/* finish NULL: null. */
static json_t *finish_json(const char *finish) {
    return finish ? json_string(finish) : json_null();
}

char *mx_oai_chunk(const struct mx_oai_meta *m, bool role, const char *text, size_t n,
                   const char *finish, const struct mx_oai_usage *usage) {
    json_t *choice;
    if (m->kind == MX_OAI_CHAT) {
        json_t *delta = json_object();
        if (role) {
            json_object_set_new(delta, "role", json_string("assistant"));
            json_object_set_new(delta, "content", json_string(""));
        } else if (text && n) {
            json_object_set_new(delta, "content", mx_oai_json_text(text, n));
        }
        choice = json_pack("{sisosO}", "index", 0, "delta", delta, "finish_reason",
                           json_null());
    } else {
        choice = json_pack("{sosisnso}", "text", mx_oai_json_text(text, text ? n : 0), "index", 0,
                           "logprobs", "finish_reason", json_null());
    }
    if (!choice)
        return NULL;
    json_object_set_new(choice, "finish_reason", finish_json(finish));
    json_t *o = json_pack("{sssssIss}", "id", m->id, "object",
                          m->kind == MX_OAI_CHAT ? "chat.completion.chunk" : "text_completion",
                          "created", (json_int_t)m->created, "model", m->model);
    if (!o) {
        json_decref(choice);
        return NULL;
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    if (usage)
        json_object_set_new(o, "usage", usage_json(usage));
    char *j = dump(o);
    if (!j)
        return NULL;
    size_t jl = strlen(j);
    char *ev = malloc(jl + 9);
    if (ev) {
        memcpy(ev, "data: ", 6);
        memcpy(ev + 6, j, jl);
        memcpy(ev + 6 + jl, "\n\n", 3);
    }
    free(j);
    return ev;
}

char *mx_oai_response(const struct mx_oai_meta *m, const char *text, size_t n,
                      const char *finish, const struct mx_oai_usage *usage) {
    json_t *choice;
    if (m->kind == MX_OAI_CHAT)
        choice = json_pack("{sis{ssso}so}", "index", 0, "message", "role", "assistant",
                           "content", mx_oai_json_text(text, text ? n : 0), "finish_reason",
                           finish_json(finish));
    else
        choice = json_pack("{sosisnso}", "text", mx_oai_json_text(text, text ? n : 0), "index", 0,
                           "logprobs", "finish_reason", finish_json(finish));
    if (!choice)
        return NULL;
    return dump(json_pack("{sssssIsss[o]so}", "id", m->id, "object",
                          m->kind == MX_OAI_CHAT ? "chat.completion" : "text_completion",
                          "created", (json_int_t)m->created, "model", m->model, "choices",
                          choice, "usage", usage_json(usage)));
}

char *mx_oai_models(const char *const *ids, size_t n, long long created) {
    json_t *data = json_array();
    for (size_t i = 0; data && i < n; i++)
        json_array_append_new(data, json_pack("{sssssIss}", "id", ids[i], "object", "model",
                                              "created", (json_int_t)created, "owned_by",
                                              "mixel"));
    return dump(json_pack("{ssso}", "object", "list", "data", data));
}

char *mx_oai_error(const char *msg, const char *type, const char *code) {
    return dump(json_pack("{s{sosssnso}}", "error", "message",
                          mx_oai_json_text(msg, msg ? strlen(msg) : 0), "type", type, "param",
                          "code", code ? json_string(code) : json_null()));
}

const char *mx_oai_finish(enum mx_gen_end end) {
    return end == MX_GEN_LENGTH || end == MX_GEN_FULL ? "length" : "stop";
}
