/* config.c - the user's settings file (config.h): load, dotted lookups. */
#include "app/config.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/readfile.h"
#include "history/paths.h"

struct mx_config {
    json_t *root;    /* always an object (empty when the file does not exist) */
    char path[4096]; /* where it was (or would have been) read from */
};

int mx_config_load(struct mx_config **out, const char *path, struct mx_err *err)
{
    *out = NULL;
    struct mx_config *c = calloc(1, sizeof *c);
    if (!c)
        return mx_err_set(err, MX_ENOMEM, "config: out of memory");
    /* An explicit file must exist; the default one may be absent. */
    bool explicit_path = true;
    if (!path || !*path)
        path = getenv("MIXEL_CONFIG");
    if (path && *path) {
        if (strlen(path) >= sizeof c->path) {
            free(c);
            return mx_err_set(err, MX_ERANGE, "config: path too long");
        }
        strcpy(c->path, path);
    } else {
        explicit_path = false;
        char dir[4000];
        int rc = mx_path_config_dir(dir, sizeof dir, err);
        if (rc < 0) {
            free(c);
            return rc;
        }
        snprintf(c->path, sizeof c->path, "%s/config.json", dir);
    }
    char *text = NULL;
    size_t n = 0;
    int rc = mx_read_file(c->path, MX_CONFIG_MAX_BYTES, &text, &n, err);
    if (rc == MX_ENOENT && !explicit_path) {
        mx_err_clear(err);
        if (!(c->root = json_object())) {
            free(c);
            return mx_err_set(err, MX_ENOMEM, "config: out of memory");
        }
        *out = c;
        return 0;
    }
    if (rc < 0) {
        free(c);
        return rc;
    }
    json_error_t je;
    c->root = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!c->root) {
        rc = mx_err_set(err, MX_EFORMAT, "%s:%d:%d: %s", c->path, je.line, je.column, je.text);
        free(c);
        return rc;
    }
    if (!json_is_object(c->root)) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: the top level must be a JSON object {...}",
                        c->path);
        mx_config_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void mx_config_free(struct mx_config *c)
{
    if (!c)
        return;
    json_decref(c->root);
    free(c);
}

const char *mx_config_path(const struct mx_config *c)
{
    return c ? c->path : "";
}

json_t *mx_config_get(const struct mx_config *c, const char *dotted)
{
    if (!c || !dotted)
        return NULL;
    json_t *v = c->root;
    const char *p = dotted;
    while (v) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!json_is_object(v) || len == 0)
            return NULL;
        v = json_object_getn(v, p, len);
        if (!dot)
            return v;
        p = dot + 1;
    }
    return NULL;
}

int mx_config_string(const struct mx_config *c, const char *dotted, const char **out,
                     struct mx_err *err)
{
    *out = NULL;
    json_t *v = mx_config_get(c, dotted);
    if (!v)
        return MX_ENOENT;
    if (!json_is_string(v))
        return mx_err_set(err, MX_EFORMAT, "%s: %s: expected a string", mx_config_path(c),
                          dotted);
    *out = json_string_value(v);
    return 0;
}
