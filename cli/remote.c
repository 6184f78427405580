/* remote.c (cli) - --remote on the command line (see cli/remote.h). */
#include "cli/remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/config.h"
#include "app/engine_llm.h"

/* The settings file and the options of this process's remote engine: the loader reopens a
 * remote session's model with them (the key is never in the stored path). */
static struct mx_config *g_cfg;
static struct mx_remote_opts g_ro;

int mx_cli_remote_begin(const char *cmd, const struct mx_cli_opts *o,
                        struct mx_remote_opts *ro) {
    struct mx_err err = {0};
    *ro = (struct mx_remote_opts){.url = o->remote_url, .model = o->remote_model, .retries = -1};
    if (o->model && !o->remote_url) { /* -m: local, whatever the config says */
        g_ro = *ro;
        return 0;
    }
    int rc = g_cfg ? 0 : mx_config_load(&g_cfg, NULL, &err);
    if (rc == 0)
        rc = mx_remote_opts_fill(ro, g_cfg, &err);
    if (rc < 0) {
        mx_cli_err(cmd, "%s", mx_err_msg(&err, rc));
        return -1;
    }
    g_ro = *ro;
    if (!ro->url || !ro->url[0])
        return 0;
    if (o->model) {
        mx_cli_err(cmd, "-m and --remote exclude each other (a local model, or a server's)");
        return -1;
    }
    return 1;
}

void mx_cli_remote_end(void) {
    mx_config_free(g_cfg);
    g_cfg = NULL;
    memset(&g_ro, 0, sizeof g_ro);
}

struct mx_engine *mx_cli_remote_loader(const char *path, const struct mx_gen_settings *s,
                                       struct mx_err *err) {
    if (strncmp(path, "remote:", 7) != 0)
        return mx_engine_llm_loader(path, s, err);
    char *url = strdup(path + 7);
    if (!url) {
        mx_err_set(err, MX_ENOMEM, "remote: out of memory");
        return NULL;
    }
    char *hash = strrchr(url, '#');
    struct mx_remote_opts ro = g_ro;
    if (hash)
        *hash = '\0';
    ro.url = url;
    ro.model = hash ? hash + 1 : NULL;
    struct mx_engine *e = mx_remote_engine_new(&ro, err);
    free(url);
    return e;
}

int mx_cli_remote_models(const char *current, char ***paths, size_t *n, struct mx_err *err) {
    *paths = NULL;
    *n = 0;
    char *url = NULL;
    if (current && !strncmp(current, "remote:", 7)) { /* the server of the model in use */
        const char *hash = strrchr(current, '#');
        url = strndup(current + 7, hash ? (size_t)(hash - current - 7) : strlen(current + 7));
    } else if (g_ro.url && g_ro.url[0]) {
        url = strdup(g_ro.url);
    } else {
        return 1;
    }
    if (!url) {
        mx_err_set(err, MX_ENOMEM, "remote: out of memory");
        return MX_ENOMEM;
    }
    /* the screen waits for this: short timeouts, no retries */
    struct mx_remote_opts ro = g_ro;
    ro.url = url;
    if (ro.connect_timeout_s <= 0 || ro.connect_timeout_s > 2)
        ro.connect_timeout_s = 2;
    if (ro.stall_timeout_s <= 0 || ro.stall_timeout_s > 3)
        ro.stall_timeout_s = 3;
    ro.retries = 0;
    char **names = NULL;
    size_t count = 0;
    int rc = mx_remote_models(&ro, &names, &count, err);
    if (rc == 0 && count && !(*paths = calloc(count, sizeof **paths))) {
        mx_err_set(err, MX_ENOMEM, "remote: out of memory");
        rc = MX_ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < count; i++) {
        size_t len = strlen(url) + strlen(names[i]) + 9;
        if (!((*paths)[i] = malloc(len))) {
            mx_err_set(err, MX_ENOMEM, "remote: out of memory");
            rc = MX_ENOMEM;
            break;
        }
        snprintf((*paths)[i], len, "remote:%s#%s", url, names[i]);
        *n = i + 1;
    }
    if (rc < 0) {
        for (size_t i = 0; i < *n; i++)
            free((*paths)[i]);
        free(*paths);
        *paths = NULL;
        *n = 0;
    }
    mx_remote_names_free(names, count);
    free(url);
    return rc;
}

int mx_cli_remote_images_opts(const char *cmd, const char *url, struct mx_remote_opts *ro) {
    struct mx_err err = {0};
    *ro = (struct mx_remote_opts){.url = url, .model = "-", .retries = -1};
    int rc = g_cfg ? 0 : mx_config_load(&g_cfg, NULL, &err);
    if (rc == 0)
        rc = mx_remote_opts_fill(ro, g_cfg, &err);
    if (rc < 0) {
        mx_cli_err(cmd, "%s", mx_err_msg(&err, rc));
        return -1;
    }
    ro->model = NULL; /* the image server draws with its own checkpoint */
    return 0;
}

int mx_cli_remote_list(const char *cmd, const struct mx_remote_opts *ro, FILE *f) {
    struct mx_err err = {0};
    char **names = NULL;
    size_t n = 0;
    int rc = mx_remote_models(ro, &names, &n, &err);
    if (rc < 0) {
        mx_cli_err(cmd, "%s", mx_err_msg(&err, rc));
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", mx_safe(names[i]));
    mx_remote_names_free(names, n);
    return 0;
}
