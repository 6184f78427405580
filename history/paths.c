/* paths.c - XDG base directories for mixel's config and data. */
#include "history/paths.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int xdg_dir(char *buf, size_t size, const char *var, const char *fallback,
                   struct mx_err *err) {
    const char *base = getenv(var);
    int n;
    /* The XDG spec says relative values are invalid and must be ignored. */
    if (base && base[0] == '/') {
        n = snprintf(buf, size, "%s/mixel", base);
    } else {
        const char *home = getenv("HOME");
        if (!home || !home[0])
            return mx_err_set(err, MX_ENOENT, "neither %s nor HOME is set", var);
        n = snprintf(buf, size, "%s/%s/mixel", home, fallback);
    }
    if (n < 0 || (size_t)n >= size)
        return mx_err_set(err, MX_ERANGE, "%s: path too long", var);
    return 0;
}

int mx_path_config_dir(char *buf, size_t size, struct mx_err *err) {
    return xdg_dir(buf, size, "XDG_CONFIG_HOME", ".config", err);
}

int mx_path_data_dir(char *buf, size_t size, struct mx_err *err) {
    return xdg_dir(buf, size, "XDG_DATA_HOME", ".local/share", err);
}

int mx_path_cache_dir(char *buf, size_t size, struct mx_err *err) {
    return xdg_dir(buf, size, "XDG_CACHE_HOME", ".cache", err);
}

int mx_mkdir_p(const char *path, struct mx_err *err) {
    char tmp[4096];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof tmp)
        return mx_err_set(err, MX_EINVAL, "%s: bad folder path", path);
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) {
                int e = errno;
                return mx_err_set(err, e == EACCES || e == EROFS ? MX_EPERM : MX_EIO,
                                  "%s: cannot create folder: %s", tmp, strerror(e));
            }
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return mx_err_set(err, MX_EIO, "%s: not a folder", path);
    return 0;
}
