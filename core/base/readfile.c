/* readfile.c - a whole small file into memory (readfile.h). */
#include "core/base/readfile.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int mx_read_file(const char *path, size_t max, char **buf, size_t *n, struct mx_err *err) {
    *buf = NULL;
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int code = errno == ENOENT ? MX_ENOENT : errno == EACCES ? MX_EPERM : MX_EIO;
        return mx_err_set(err, code, "%s: cannot open (%s)", path, strerror(errno));
    }
    if (max == 0 || max > SIZE_MAX / 2 - 1)
        max = SIZE_MAX / 2 - 1;
    size_t cap = 1 << 14, len = 0;
    char *b = malloc(cap);
    int rc = 0;
    while (b) {
        if (len + 1 >= cap) { /* room for the NUL and one more byte to see the cap passed */
            char *nb = realloc(b, cap *= 2);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
        }
        size_t want = cap - len - 1;
        if (want > max + 1 - len)
            want = max + 1 - len; /* never read much past the cap */
        size_t k = fread(b + len, 1, want, f);
        len += k;
        if (len > max) {
            rc = mx_err_set(err, MX_ERANGE, "%s: more than %zu bytes", path, max);
            break;
        }
        if (k == 0)
            break;
    }
    if (!b)
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    else if (rc == 0 && ferror(f))
        rc = mx_err_set(err, MX_EIO, "%s: read error", path);
    fclose(f);
    if (rc < 0) {
        free(b);
        return rc;
    }
    b[len] = '\0';
    *buf = b;
    *n = len;
    return 0;
}
