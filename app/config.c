/* config.c - the user's settings file (config.h): load, dotted lookups. */
#include "app/config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "history/paths.h"

struct mx_config {
    json_t *root;    /* always an object (empty when the file does not exist) */
    char path[4096]; /* where it was (or would have been) read from */
};

/* Reads the whole file into a NUL-terminated buffer of at most MX_CONFIG_MAX_BYTES. */
static int read_small_file(const char *path, char **out, size_t *n, struct mx_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return mx_err_set(err, errno == ENOENT ? MX_ENOENT : MX_EIO, "%s: cannot open (%s)",
                          path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return mx_err_set(err, MX_EIO, "%s: not a regular file", path);
    }
    if ((size_t)st.st_size > MX_CONFIG_MAX_BYTES) {
        fclose(f);
        return mx_err_set(err, MX_ERANGE, "%s: too large for a settings file (%lld bytes, at "
                          "most %zu)", path, (long long)st.st_size, MX_CONFIG_MAX_BYTES);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    }
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return mx_err_set(err, MX_EIO, "%s: read error", path);
    }
    buf[got] = '\0';
    *out = buf;
    *n = got;
    return 0;
}

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
    int rc = read_small_file(c->path, &text, &n, err);
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
