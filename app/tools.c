/* tools.c - the tool registry (tools.h): built-ins and the config's tools, the check of a call's
 * arguments against the declared schema, a call's one-line form for the user, and the calls in
 * an answer (parsed, stored as JSON in the history, read back). The runners are in tool_run.c.
 */
#include "app/tools.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "core/base/text.h"
#include "core/base/util.h"

/* ---- the registry --------------------------------------------------------------------------- */

static const char READ_FILE_SCHEMA[] =
    "{\"type\": \"object\", \"properties\": {\"path\": {\"type\": \"string\", \"description\": "
    "\"the file: absolute, or relative to the first allowed folder\"}}, \"required\": "
    "[\"path\"]}";

static const char IMAGE_SCHEMA[] =
    "{\"type\": \"object\", \"properties\": {"
    "\"prompt\": {\"type\": \"string\", \"description\": \"what the picture shows\"}, "
    "\"negative_prompt\": {\"type\": \"string\", \"description\": \"what it must not show\"}, "
    "\"width\": {\"type\": \"integer\", \"description\": \"pixels, a multiple of 8\"}, "
    "\"height\": {\"type\": \"integer\", \"description\": \"pixels, a multiple of 8\"}, "
    "\"steps\": {\"type\": \"integer\", \"description\": \"sampling steps\"}, "
    "\"seed\": {\"type\": \"integer\", \"description\": \"the same seed draws the same "
    "picture\"}}, \"required\": [\"prompt\"]}";

/* Frees one tool's strings (the struct itself belongs to the array). */
static void tool_deinit(struct mx_tool *t) {
    free(t->name);
    free(t->description);
    free(t->parameters);
    json_decref(t->schema);
    if (t->argv)
        for (char **a = t->argv; *a; a++)
            free(*a);
    free(t->argv);
    memset(t, 0, sizeof *t);
}

void mx_tools_free(struct mx_tools *t) {
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        tool_deinit(&t->v[i]);
    for (size_t i = 0; i < t->n_allow; i++)
        free(t->allow_dirs[i]);
    free(t->allow_dirs);
    free(t->v);
    free(t->defs);
    free(t);
}

/* A tool name the templates can carry and the user can read: [A-Za-z0-9_-]{1,64}. */
static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* Adds a tool with name, description and schema (text parsed here); argv taken over (NULL for
 * the built-ins). Returns 0 or MX_ENOMEM / MX_EFORMAT (a schema that is not an object). */
static int tool_add(struct mx_tools *t, enum mx_tool_kind kind, const char *name,
                    const char *description, json_t *schema, struct mx_err *err) {
    struct mx_tool *v = realloc(t->v, (t->n + 1) * sizeof *v);
    if (!v)
        return mx_err_set(err, MX_ENOMEM, "tools: out of memory");
    t->v = v;
    struct mx_tool *x = &v[t->n];
    memset(x, 0, sizeof *x);
    x->kind = kind;
    x->timeout_s = MX_TOOL_TIMEOUT_DEFAULT;
    x->max_output = MX_TOOL_OUTPUT_DEFAULT;
    x->name = strdup(name);
    x->description = strdup(description ? description : "");
    x->schema = json_incref(schema);
    x->parameters = json_dumps(schema, JSON_COMPACT | JSON_SORT_KEYS);
    if (!x->name || !x->description || !x->parameters) {
        tool_deinit(x);
        return mx_err_set(err, MX_ENOMEM, "tools: out of memory");
    }
    t->n++;
    return 0;
}

/* Adds a built-in whose schema is a constant. */
static int builtin_add(struct mx_tools *t, enum mx_tool_kind kind, const char *name,
                       const char *description, const char *schema, struct mx_err *err) {
    json_t *s = json_loads(schema, 0, NULL);
    if (!s)
        return mx_err_set(err, MX_ENOMEM, "tools: out of memory");
    int rc = tool_add(t, kind, name, description, s, err);
    json_decref(s);
    return rc;
}

/* Adds a folder read_file may read below (resolved; must exist and be a folder). */
static int allow_add(struct mx_tools *t, const char *dir, const char *where,
                     struct mx_err *err) {
    char real[PATH_MAX];
    if (!realpath(dir, real))
        return mx_err_set(err, MX_ENOENT, "%s: allowed folder '%s': %s", where, dir,
                          strerror(errno));
    char **v = realloc(t->allow_dirs, (t->n_allow + 1) * sizeof *v);
    if (!v)
        return mx_err_set(err, MX_ENOMEM, "tools: out of memory");
    t->allow_dirs = v;
    if (!(v[t->n_allow] = strdup(real)))
        return mx_err_set(err, MX_ENOMEM, "tools: out of memory");
    t->n_allow++;
    return 0;
}

/* Reads the config's tools[i] (where: "config.json: tools[i]") into a command tool. */
static int user_tool_add(struct mx_tools *t, json_t *e, const char *where, struct mx_err *err) {
    if (!json_is_object(e))
        return mx_err_set(err, MX_EFORMAT, "%s: expected an object", where);
    const char *known[] = {"name", "description", "parameters", "command", "timeout_s",
                           "max_output"};
    const char *key;
    json_t *val;
    json_object_foreach(e, key, val) {
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok |= !strcmp(key, known[i]);
        if (!ok)
            return mx_err_set(err, MX_EFORMAT, "%s: unknown key '%s' (name, description, "
                              "parameters, command, timeout_s, max_output)", where, key);
    }
    json_t *name = json_object_get(e, "name"), *desc = json_object_get(e, "description");
    json_t *params = json_object_get(e, "parameters"), *cmd = json_object_get(e, "command");
    json_t *to = json_object_get(e, "timeout_s"), *mo = json_object_get(e, "max_output");
    if (!json_is_string(name) || !name_ok(json_string_value(name)))
        return mx_err_set(err, MX_EFORMAT, "%s.name: expected 1-64 letters, digits, _ or -",
                          where);
    if (mx_tools_find(t, json_string_value(name)))
        return mx_err_set(err, MX_EFORMAT, "%s.name: '%s' is already a tool", where,
                          json_string_value(name));
    if (desc && !json_is_string(desc))
        return mx_err_set(err, MX_EFORMAT, "%s.description: expected a string", where);
    if (params && (!json_is_object(params) ||
                   (json_object_get(params, "properties") &&
                    !json_is_object(json_object_get(params, "properties")))))
        return mx_err_set(err, MX_EFORMAT, "%s.parameters: expected a JSON schema object "
                          "(with \"properties\" an object)", where);
    size_t argc = json_array_size(cmd);
    if (!json_is_array(cmd) || argc == 0)
        return mx_err_set(err, MX_EFORMAT, "%s.command: expected [\"/abs/program\", \"arg\", "
                          "...]", where);
    for (size_t i = 0; i < argc; i++)
        if (!json_is_string(json_array_get(cmd, i)))
            return mx_err_set(err, MX_EFORMAT, "%s.command[%zu]: expected a string", where, i);
    if (json_string_value(json_array_get(cmd, 0))[0] != '/')
        return mx_err_set(err, MX_EFORMAT, "%s.command: the program must be an absolute path "
                          "(it runs without a shell or PATH search)", where);
    double timeout = MX_TOOL_TIMEOUT_DEFAULT;
    if (to) {
        if (!json_is_number(to) || !(json_number_value(to) > 0) ||
            json_number_value(to) > MX_TOOL_TIMEOUT_MAX)
            return mx_err_set(err, MX_EFORMAT, "%s.timeout_s: expected seconds in (0, %g]",
                              where, MX_TOOL_TIMEOUT_MAX);
        timeout = json_number_value(to);
    }
    size_t max_out = MX_TOOL_OUTPUT_DEFAULT;
    if (mo) {
        if (!json_is_integer(mo) || json_integer_value(mo) < 1 ||
            (size_t)json_integer_value(mo) > MX_TOOL_OUTPUT_MAX)
            return mx_err_set(err, MX_EFORMAT, "%s.max_output: expected bytes in 1..%zu", where,
                              MX_TOOL_OUTPUT_MAX);
        max_out = (size_t)json_integer_value(mo);
    }
    json_t *empty = params ? NULL : json_pack("{s:s, s:{}}", "type", "object", "properties");
    int rc = tool_add(t, MX_TOOL_COMMAND, json_string_value(name),
                      desc ? json_string_value(desc) : "", params ? params : empty, err);
    json_decref(empty);
    if (rc < 0)
        return rc;
    struct mx_tool *x = &t->v[t->n - 1];
    x->timeout_s = timeout;
    x->max_output = max_out;
    if (!(x->argv = calloc(argc + 1, sizeof *x->argv)))
        return mx_err_set(err, MX_ENOMEM, "tools: out of memory");
    for (size_t i = 0; i < argc; i++)
        if (!(x->argv[i] = strdup(json_string_value(json_array_get(cmd, i)))))
            return mx_err_set(err, MX_ENOMEM, "tools: out of memory");
    return 0;
}

int mx_tools_new(struct mx_tools **out, const struct mx_config *cfg,
                 const char *const *extra_dirs, size_t n_extra, bool with_image,
                 struct mx_err *err) {
    *out = NULL;
    struct mx_tools *t = calloc(1, sizeof *t);
    if (!t)
        return mx_err_set(err, MX_ENOMEM, "tools: out of memory");
    int rc = 0;
    const char *file = cfg ? mx_config_path(cfg) : "config";
    const char *slash = strrchr(file, '/');
    file = slash ? slash + 1 : file;
    char where[128];
    /* 1. the allowed folders: the config's, then the command line's */
    json_t *dirs = mx_config_get(cfg, "tools.allow_dirs");
    if (dirs && !json_is_array(dirs)) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: tools.allow_dirs: expected a list of folders",
                        file);
        goto fail;
    }
    for (size_t i = 0; i < json_array_size(dirs); i++) {
        snprintf(where, sizeof where, "%s: tools.allow_dirs[%zu]", file, i);
        json_t *d = json_array_get(dirs, i);
        if (!json_is_string(d)) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: expected a string", where);
            goto fail;
        }
        if ((rc = allow_add(t, json_string_value(d), where, err)) < 0)
            goto fail;
    }
    for (size_t i = 0; i < n_extra; i++)
        if ((rc = allow_add(t, extra_dirs[i], "--allow-dir", err)) < 0)
            goto fail;
    /* 2. the built-ins, then the user's */
    if (t->n_allow && (rc = builtin_add(t, MX_TOOL_READ_FILE, "read_file",
                                        "Reads a text file from a folder the user allowed.",
                                        READ_FILE_SCHEMA, err)) < 0)
        goto fail;
    if (with_image && (rc = builtin_add(t, MX_TOOL_GENERATE_IMAGE, "generate_image",
                                        "Draws a picture with Stable Diffusion and shows it to "
                                        "the user.", IMAGE_SCHEMA, err)) < 0)
        goto fail;
    json_t *list = mx_config_get(cfg, "tools");
    if (list && json_is_object(list)) /* "tools": {"allow_dirs": ...} without user tools */
        list = json_object_get(list, "list");
    if (list && !json_is_array(list)) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: tools.list: expected a list of tools", file);
        goto fail;
    }
    for (size_t i = 0; i < json_array_size(list); i++) {
        snprintf(where, sizeof where, "%s: tools[%zu]", file, i);
        if ((rc = user_tool_add(t, json_array_get(list, i), where, err)) < 0)
            goto fail;
    }
    /* 3. the template's view */
    if (t->n && !(t->defs = calloc(t->n, sizeof *t->defs))) {
        rc = mx_err_set(err, MX_ENOMEM, "tools: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < t->n; i++)
        t->defs[i] = (struct mx_tool_def){t->v[i].name, t->v[i].description, t->v[i].parameters};
    *out = t;
    return 0;
fail:
    mx_tools_free(t);
    return rc;
}

const struct mx_tool *mx_tools_find(const struct mx_tools *t, const char *name) {
    for (size_t i = 0; t && name && i < t->n; i++)
        if (!strcmp(t->v[i].name, name))
            return &t->v[i];
    return NULL;
}

/* ---- arguments ------------------------------------------------------------------------------ */

/* True when v is of the JSON schema type named type (unknown names: no constraint). */
static bool type_ok(const json_t *v, const char *type) {
    if (!strcmp(type, "string"))
        return json_is_string(v);
    if (!strcmp(type, "integer"))
        return json_is_integer(v) ||
               (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)));
    if (!strcmp(type, "number"))
        return json_is_number(v);
    if (!strcmp(type, "boolean"))
        return json_is_boolean(v);
    if (!strcmp(type, "array"))
        return json_is_array(v);
    if (!strcmp(type, "object"))
        return json_is_object(v);
    if (!strcmp(type, "null"))
        return json_is_null(v);
    return true;
}

/* Checks one value against its property schema's "type" (a name or a list) and "enum". */
static int value_check(const char *tool, const char *key, const json_t *v, const json_t *prop,
                       struct mx_err *err) {
    const json_t *type = json_object_get(prop, "type");
    if (json_is_string(type) && !type_ok(v, json_string_value(type)))
        return mx_err_set(err, MX_EINVAL, "%s: argument '%s' must be of type %s", tool, key,
                          json_string_value(type));
    if (json_is_array(type)) {
        bool any = false;
        for (size_t i = 0; i < json_array_size(type); i++) {
            const json_t *ti = json_array_get(type, i);
            any |= json_is_string(ti) && type_ok(v, json_string_value(ti));
        }
        if (!any)
            return mx_err_set(err, MX_EINVAL, "%s: argument '%s' has none of its declared "
                              "types", tool, key);
    }
    const json_t *en = json_object_get(prop, "enum");
    if (json_is_array(en)) {
        bool any = false;
        for (size_t i = 0; i < json_array_size(en); i++)
            any |= json_equal((json_t *)v, json_array_get(en, i)) != 0;
        if (!any)
            return mx_err_set(err, MX_EINVAL, "%s: argument '%s' is not one of its allowed "
                              "values", tool, key);
    }
    return 0;
}

int mx_tool_check_args(const struct mx_tool *tool, const char *arguments, json_t **args,
                       struct mx_err *err) {
    if (args)
        *args = NULL;
    json_error_t je;
    json_t *a = arguments && arguments[0] ? json_loads(arguments, JSON_REJECT_DUPLICATES, &je)
                                          : json_object();
    if (!a)
        return mx_err_set(err, MX_EINVAL, "%s: the arguments are not JSON (%s)", tool->name,
                          je.text);
    int rc = 0;
    if (!json_is_object(a)) {
        rc = mx_err_set(err, MX_EINVAL, "%s: the arguments must be a JSON object", tool->name);
        goto out;
    }
    const json_t *props = json_object_get(tool->schema, "properties");
    const char *key;
    json_t *val;
    json_object_foreach(a, key, val) {
        const json_t *p = json_object_get(props, key);
        if (!p) {
            rc = mx_err_set(err, MX_EINVAL, "%s: argument '%.64s' is not declared", tool->name,
                            key);
            goto out;
        }
        if ((rc = value_check(tool->name, key, val, p, err)) < 0)
            goto out;
    }
    const json_t *req = json_object_get(tool->schema, "required");
    for (size_t i = 0; i < json_array_size(req); i++) {
        const json_t *r = json_array_get(req, i);
        if (json_is_string(r) && !json_object_get(a, json_string_value(r))) {
            rc = mx_err_set(err, MX_EINVAL, "%s: the required argument '%.64s' is missing",
                            tool->name, json_string_value(r));
            goto out;
        }
    }
out:
    if (rc == 0 && args)
        *args = json_incref(a);
    json_decref(a);
    return rc;
}

/* ---- a call for the user -------------------------------------------------------------------- */

/* Appends s[0..n) to buf (len of size used) without control characters, cut at size. */
static void put_clean(char *buf, size_t size, size_t *len, const char *s, size_t n) {
    for (size_t i = 0; i < n && *len + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            continue;
        buf[(*len)++] = (char)c;
    }
    buf[*len] = '\0';
}

/* Length of s cut to at most max bytes at a UTF-8 character boundary. */
static size_t utf8_cut(const char *s, size_t n, size_t max) {
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)s[max] & 0xc0) == 0x80)
        max--;
    return max;
}

char *mx_tool_call_line(const char *name, const char *arguments, size_t max_value, char *buf,
                        size_t size) {
    size_t len = 0;
    if (!size)
        return buf;
    buf[0] = '\0';
    put_clean(buf, size, &len, name, strlen(name));
    put_clean(buf, size, &len, "(", 1);
    json_t *a = arguments && arguments[0] ? json_loads(arguments, 0, NULL) : json_object();
    if (json_is_object(a)) {
        const char *key;
        json_t *val;
        bool first = true;
        json_object_foreach(a, key, val) {
            if (!first)
                put_clean(buf, size, &len, ", ", 2);
            first = false;
            put_clean(buf, size, &len, key, strlen(key));
            put_clean(buf, size, &len, "=", 1);
            char *v = json_dumps(val, JSON_ENCODE_ANY | JSON_COMPACT);
            if (v) {
                size_t n = strlen(v), k = utf8_cut(v, n, max_value);
                put_clean(buf, size, &len, v, k);
                if (k < n)
                    put_clean(buf, size, &len, "\xe2\x80\xa6", 3);
                free(v);
            }
        }
    } else if (arguments) { /* not an object: shown as the model wrote it, cut */
        size_t n = strlen(arguments), k = utf8_cut(arguments, n, max_value);
        put_clean(buf, size, &len, arguments, k);
    }
    json_decref(a);
    put_clean(buf, size, &len, ")", 1);
    return buf;
}

char *mx_tool_result_text(enum mx_tmpl_kind kind, const char *result) {
    bool mistral = kind == MX_TMPL_MISTRAL_V3 || kind == MX_TMPL_MISTRAL_V3_TEKKEN ||
                   kind == MX_TMPL_MISTRAL_V7 || kind == MX_TMPL_MISTRAL_V7_TEKKEN;
    if (!mistral)
        return strdup(result ? result : "");
    /* a result that is not UTF-8 (a command's bytes) is still a result: invalid bytes become
     * U+FFFD (3 bytes for 1: the copy needs at most 3 times the length) */
    size_t n = result ? strlen(result) : 0, k = 0, cap;
    if (!mx_mul_size(n, 3, &cap))
        return NULL;
    char *clean = malloc(cap + 1);
    if (!clean)
        return NULL;
    for (size_t i = 0; i < n;) {
        unsigned int cp;
        i += mx_utf8_decode(result + i, n - i, &cp);
        k += mx_utf8_put(cp, clean + k);
    }
    json_t *j = json_stringn(clean, k);
    free(clean);
    char *out = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    return out;
}

/* ---- calls as stored ------------------------------------------------------------------------ */

/* Reads a stored JSON array of {"name", "arguments" (object or JSON text), "id"} into
 * out->calls; an id that is not 9 characters (Mistral v3 wants exactly 9) is replaced by one
 * made from the position ("call0000k"). */
static int calls_from_array(const json_t *arr, struct mx_tool_calls *out, struct mx_err *err) {
    size_t n = json_array_size(arr);
    if (!json_is_array(arr) || n == 0)
        return mx_err_set(err, MX_EFORMAT, "tool calls: expected a non-empty list of calls");
    if (n > 64)
        return mx_err_set(err, MX_EFORMAT, "tool calls: %zu calls in one answer (at most 64)",
                          n);
    if (!(out->calls = calloc(n, sizeof *out->calls)))
        return mx_err_set(err, MX_ENOMEM, "tool calls: out of memory");
    for (size_t i = 0; i < n; i++) {
        const json_t *c = json_array_get(arr, i);
        const json_t *name = json_object_get(c, "name"), *args = json_object_get(c, "arguments");
        const json_t *id = json_object_get(c, "id");
        if (!json_is_string(name))
            return mx_err_set(err, MX_EFORMAT, "tool call %zu: no function name", i + 1);
        char idbuf[16];
        snprintf(idbuf, sizeof idbuf, "call%05zu", i);
        struct mx_tool_call *x = &out->calls[out->n_calls++];
        x->name = strdup(json_string_value(name));
        x->id = strdup(json_is_string(id) && json_string_length(id) == 9 ? json_string_value(id)
                                                                           : idbuf);
        if (json_is_string(args))
            x->arguments = strdup(json_string_value(args));
        else if (!args || json_is_object(args))
            x->arguments = args ? json_dumps(args, JSON_COMPACT) : strdup("{}");
        else
            return mx_err_set(err, MX_EFORMAT, "tool call %zu: the arguments are not an object",
                              i + 1);
        if (!x->name || !x->id || !x->arguments)
            return mx_err_set(err, MX_ENOMEM, "tool calls: out of memory");
    }
    return 0;
}

int mx_tool_calls_to_json(const struct mx_tool_call *calls, size_t n, char **json) {
    *json = NULL;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, json_pack("{s:s, s:s, s:s}", "id", calls[i].id,
                                                 "name", calls[i].name, "arguments",
                                                 calls[i].arguments ? calls[i].arguments
                                                                    : "{}")) != 0) {
            json_decref(arr);
            return MX_ENOMEM;
        }
    *json = arr ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    return *json ? 0 : MX_ENOMEM;
}

int mx_tool_calls_from_json(const char *json, struct mx_tool_calls *out, struct mx_err *err) {
    memset(out, 0, sizeof *out);
    json_t *arr = json ? json_loads(json, 0, NULL) : NULL;
    if (!arr)
        return mx_err_set(err, MX_EFORMAT, "stored tool calls: not JSON");
    int rc = calls_from_array(arr, out, err);
    json_decref(arr);
    if (rc == 0 && !(out->content = strdup("")))
        rc = mx_err_set(err, MX_ENOMEM, "tool calls: out of memory");
    if (rc < 0)
        mx_tool_calls_free(out);
    return rc;
}
