/* remote_calls.c - gathering a server's streamed tool calls into Mistral v3 call text (see
 * remote_calls.h). */
#include "net/remote_calls.h"

#include <stdlib.h>
#include <string.h>

/* The call with the server's index (a new one when none has it yet), or NULL with err set. */
static struct mx_remote_call *call_at(struct mx_remote_calls *c, long index,
                                      struct mx_err *err) {
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].index == index)
            return &c->v[i];
    if (c->n == MX_REMOTE_MAX_CALLS) {
        mx_err_set(err, MX_ERANGE, "tool call: the server sent more than %d calls in one answer",
                   MX_REMOTE_MAX_CALLS);
        return NULL;
    }
    struct mx_remote_call *k = &c->v[c->n++];
    memset(k, 0, sizeof *k);
    k->index = index;
    return k;
}

/* Appends a name fragment, bounded. */
static int add_name(struct mx_remote_call *k, const char *s, size_t n, struct mx_err *err) {
    size_t have = strlen(k->name);
    if (have + n > MX_REMOTE_MAX_NAME)
        return mx_err_set(err, MX_ERANGE, "tool call: the server's tool name is too long (%zu "
                          "bytes, at most %d)", have + n, MX_REMOTE_MAX_NAME);
    memcpy(k->name + have, s, n);
    k->name[have + n] = '\0';
    return 0;
}

/* Appends an arguments fragment, bounded. */
static int add_args(struct mx_remote_call *k, const char *s, size_t n, struct mx_err *err) {
    if (k->args_len + n > MX_REMOTE_MAX_ARGS)
        return mx_err_set(err, MX_ERANGE, "tool call: the arguments of %s are too long (%zu "
                          "bytes, at most %d)", k->name[0] ? k->name : "a call",
                          k->args_len + n, MX_REMOTE_MAX_ARGS);
    char *a = realloc(k->args, k->args_len + n + 1);
    if (!a)
        return mx_err_set(err, MX_ENOMEM, "tool call: out of memory");
    memcpy(a + k->args_len, s, n);
    k->args_len += n;
    a[k->args_len] = '\0';
    k->args = a;
    return 0;
}

int mx_remote_calls_add(struct mx_remote_calls *c, json_t *tool_calls, struct mx_err *err) {
    if (!json_is_array(tool_calls))
        return mx_err_set(err, MX_EFORMAT, "tool call: \"tool_calls\" is not an array");
    size_t i;
    json_t *e;
    json_array_foreach(tool_calls, i, e) {
        if (!json_is_object(e))
            return mx_err_set(err, MX_EFORMAT, "tool call: an entry of \"tool_calls\" is not "
                              "an object (entry %zu)", i);
        json_t *ix = json_object_get(e, "index");
        /* a whole message's calls carry no index: each is its own call (negative keys cannot
         * meet a server's) */
        long index = json_is_integer(ix) ? (long)json_integer_value(ix) : -1 - (long)c->n;
        struct mx_remote_call *k = call_at(c, index, err);
        if (!k)
            return MX_ERANGE; /* the only way call_at fails */
        json_t *fn = json_object_get(e, "function");
        json_t *name = json_object_get(fn, "name");
        json_t *args = json_object_get(fn, "arguments");
        int rc;
        if (json_is_string(name) &&
            (rc = add_name(k, json_string_value(name), json_string_length(name), err)) < 0)
            return rc;
        if (json_is_string(args) &&
            (rc = add_args(k, json_string_value(args), json_string_length(args), err)) < 0)
            return rc;
        if (json_is_object(args)) { /* some servers send the object itself, not its text */
            char *t = json_dumps(args, JSON_COMPACT);
            rc = t ? add_args(k, t, strlen(t), err)
                   : mx_err_set(err, MX_ENOMEM, "tool call: out of memory");
            free(t);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* The server's arguments text for a message: at most 200 bytes, cut on a UTF-8 boundary. */
static int quoted_len(const char *s, size_t n) {
    size_t m = n < 200 ? n : 200;
    while (m > 0 && m < n && ((unsigned char)s[m] & 0xC0) == 0x80)
        m--;
    return (int)m;
}

int mx_remote_calls_text(const struct mx_remote_calls *c, char **text, struct mx_err *err) {
    *text = NULL;
    if (c->n == 0) {
        *text = strdup("");
        return *text ? 0 : mx_err_set(err, MX_ENOMEM, "tool call: out of memory");
    }
    /* no "id": the server's ids (OpenAI's "call_…") are not Mistral's 9 characters, so the
     * parser makes one; the TUI stores it and sends it back as the call's id and the result's
     * tool_call_id in the next request. Servers accept that, since the whole conversation is
     * sent again with every request and only has to be consistent within itself. */
    json_t *arr = json_array();
    int rc = arr ? 0 : MX_ENOMEM;
    for (size_t i = 0; rc == 0 && i < c->n; i++) {
        const struct mx_remote_call *k = &c->v[i];
        if (!k->name[0]) {
            rc = mx_err_set(err, MX_EFORMAT, "tool call: the server sent a call without a name "
                            "(call %zu)", i + 1);
            break;
        }
        json_error_t je;
        size_t n = k->args_len;
        const char *s = k->args ? k->args : "";
        size_t sp = strspn(s, " \t\r\n");
        json_t *a = sp == n ? json_object() : json_loadb(s, n, 0, &je);
        if (!json_is_object(a)) {
            json_decref(a);
            rc = mx_err_set(err, MX_EFORMAT, "tool call: the arguments of %s are not a JSON "
                            "object: %.*s%s", k->name, quoted_len(s, n), s,
                            (size_t)quoted_len(s, n) < n ? "…" : "");
            break;
        }
        json_t *o = json_pack("{s:s, s:o}", "name", k->name, "arguments", a);
        if (!o || json_array_append_new(arr, o) != 0)
            rc = mx_err_set(err, MX_ENOMEM, "tool call: out of memory");
    }
    char *js = rc == 0 ? json_dumps(arr, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(arr);
    if (rc == 0 && !js)
        rc = mx_err_set(err, MX_ENOMEM, "tool call: out of memory");
    if (rc < 0)
        return rc;
    size_t len = strlen(js) + sizeof "[TOOL_CALLS]";
    if ((*text = malloc(len)))
        snprintf(*text, len, "[TOOL_CALLS]%s", js);
    free(js);
    return *text ? 0 : mx_err_set(err, MX_ENOMEM, "tool call: out of memory");
}

void mx_remote_calls_free(struct mx_remote_calls *c) {
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->v[i].args);
    memset(c, 0, sizeof *c);
}
