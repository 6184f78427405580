/* db_export.c - a session's active branch as JSON (for scripts and other tools: jansson builds
 * it, so escaping is right by construction) or as Markdown (for people). Content is exported raw
 * but always as valid UTF-8: model output may hold any bytes, and invalid sequences become
 * U+FFFD rather than an unparseable file. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "history/db_int.h"

/* json_string of possibly invalid UTF-8; NULL on out of memory. */
static json_t *jstr(const char *s) {
    char *c = mx_db__utf8_clean(s ? s : "");
    if (!c)
        return NULL;
    json_t *j = json_string(c);
    free(c);
    return j;
}

/* Parses stored JSON object text; a damaged value is kept as a string rather than lost. */
static json_t *jobj(const char *s) {
    json_t *j = json_loads(s ? s : "{}", JSON_DECODE_ANY, NULL);
    if (j && json_is_object(j))
        return j;
    json_decref(j);
    return jstr(s);
}

/* Adds a new reference under key; returns -1 when v is NULL or the set fails. */
static int put(json_t *o, const char *key, json_t *v) {
    return v ? json_object_set_new(o, key, v) : -1;
}

int mx_db_export_json(struct mx_db *db, int64_t session, char **out, struct mx_err *err) {
    *out = NULL;
    struct mx_session s;
    int rc = mx_db_session_get(db, session, &s, err);
    if (rc < 0)
        return rc;
    struct mx_msg_list path;
    if ((rc = mx_db_active_path(db, session, &path, err)) < 0) {
        mx_session_deinit(&s);
        return rc;
    }
    json_t *root = json_object(), *msgs = json_array();
    int bad = !root || !msgs;
    bad |= put(root, "id", json_integer(s.id));
    bad |= put(root, "title", jstr(s.title));
    bad |= put(root, "model", jstr(s.model_path));
    bad |= put(root, "model_hash", jstr(s.model_hash));
    bad |= put(root, "template", jstr(s.template_name));
    bad |= put(root, "sampling", jobj(s.sampling));
    bad |= put(root, "created_ms", json_integer(s.created_ms));
    bad |= put(root, "updated_ms", json_integer(s.updated_ms));
    for (size_t i = 0; i < path.n && !bad; i++) {
        const struct mx_msg *m = &path.v[i];
        json_t *o = json_object();
        bad |= !o;
        bad |= put(o, "id", json_integer(m->id));
        bad |= put(o, "parent", m->parent ? json_integer(m->parent) : json_null());
        bad |= put(o, "role", json_string(mx_role_name(m->role)));
        bad |= put(o, "content", jstr(m->content));
        bad |= put(o, "state", json_string(mx_msg_state_name(m->state)));
        bad |= put(o, "n_tokens", json_integer(m->n_tokens));
        bad |= put(o, "timings", jobj(m->timings));
        bad |= put(o, "created_ms", json_integer(m->created_ms));
        bad |= put(o, "sibling_index", json_integer(m->sibling_index));
        bad |= put(o, "sibling_count", json_integer(m->sibling_count));
        if (m->tool_calls && m->tool_calls[0]) { /* stored as an array: kept one when sound */
            json_t *tc = json_loads(m->tool_calls, 0, NULL);
            bad |= put(o, "tool_calls", json_is_array(tc) ? tc : jstr(m->tool_calls));
            if (tc && !json_is_array(tc))
                json_decref(tc);
        }
        if (m->tool_call_id && m->tool_call_id[0])
            bad |= put(o, "tool_call_id", jstr(m->tool_call_id));
        bad |= json_array_append_new(msgs, o);
    }
    if (!bad) {
        bad |= json_object_set(root, "messages", msgs);
        if (!bad)
            *out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    }
    json_decref(msgs);
    json_decref(root);
    mx_msg_list_free(&path);
    mx_session_deinit(&s);
    if (!*out)
        return mx_err_set(err, MX_ENOMEM, "session %lld: export: out of memory",
                          (long long)session);
    return 0;
}

/* A growable string; ok goes false on the first allocation failure. */
struct buf {
    char *p;
    size_t n, cap;
    bool ok;
};

static void bput(struct buf *b, const char *s) {
    size_t k = strlen(s);
    if (!b->ok)
        return;
    if (b->n + k + 1 > b->cap) {
        size_t nc = (b->n + k + 1) * 2;
        char *p = realloc(b->p, nc);
        if (!p) {
            b->ok = false;
            return;
        }
        b->p = p;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, k + 1);
    b->n += k;
}

static void bput_time(struct buf *b, int64_t ms) {
    char t[64];
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&sec, &tm) && strftime(t, sizeof t, "%Y-%m-%d %H:%M:%S UTC", &tm))
        bput(b, t);
}

int mx_db_export_md(struct mx_db *db, int64_t session, char **out, struct mx_err *err) {
    *out = NULL;
    struct mx_session s;
    int rc = mx_db_session_get(db, session, &s, err);
    if (rc < 0)
        return rc;
    struct mx_msg_list path;
    if ((rc = mx_db_active_path(db, session, &path, err)) < 0) {
        mx_session_deinit(&s);
        return rc;
    }
    struct buf b = {.ok = true};
    char line[128];
    bput(&b, "# ");
    bput(&b, s.title[0] ? s.title : "(untitled)");
    snprintf(line, sizeof line, "\n\n- session: %lld\n", (long long)s.id);
    bput(&b, line);
    if (s.model_path[0]) {
        bput(&b, "- model: ");
        bput(&b, s.model_path);
        bput(&b, "\n");
    }
    if (s.template_name[0]) {
        bput(&b, "- template: ");
        bput(&b, s.template_name);
        bput(&b, "\n");
    }
    bput(&b, "- created: ");
    bput_time(&b, s.created_ms);
    bput(&b, "\n");
    for (size_t i = 0; i < path.n; i++) {
        const struct mx_msg *m = &path.v[i];
        const char *r = mx_role_name(m->role);
        snprintf(line, sizeof line, "\n## %c%s", r[0] - 'a' + 'A', r + 1);
        bput(&b, line);
        if (m->sibling_count > 1) {
            snprintf(line, sizeof line, " (%d/%d)", m->sibling_index, m->sibling_count);
            bput(&b, line);
        }
        if (m->state == MX_MSG_PARTIAL && m->timings && strstr(m->timings, "\"context_full\""))
            bput(&b, " [cut: the context was full]");
        else if (m->state == MX_MSG_PARTIAL)
            bput(&b, " [stopped]");
        else if (m->state == MX_MSG_STREAMING)
            bput(&b, " [interrupted]");
        bput(&b, "\n\n");
        bput(&b, m->content);
        bput(&b, "\n");
        if (m->tool_calls && m->tool_calls[0]) {
            bput(&b, "\nTool calls:\n\n```json\n");
            bput(&b, m->tool_calls);
            bput(&b, "\n```\n");
        }
        if (m->tool_call_id && m->tool_call_id[0]) {
            bput(&b, "\n(the result of call ");
            bput(&b, m->tool_call_id);
            bput(&b, ")\n");
        }
    }
    mx_msg_list_free(&path);
    mx_session_deinit(&s);
    if (!b.ok || !b.p) {
        free(b.p);
        return mx_err_set(err, MX_ENOMEM, "session %lld: export: out of memory",
                          (long long)session);
    }
    *out = b.p;
    return 0;
}
