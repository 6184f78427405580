/* bytes.c - the growing byte buffer (see bytes.h). Doubling growth: appending n bytes in pieces
 * costs O(n) in all. */
#include "core/base/bytes.h"

#include <stdlib.h>
#include <string.h>

#include "core/base/err.h"

int mx_bytes_add(struct mx_bytes *b, const void *s, size_t n) {
    if (n > (size_t)-1 / 2 - b->n)
        return MX_ENOMEM;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return MX_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

int mx_bytes_write(void *ud, const char *buf, size_t n) {
    return mx_bytes_add(ud, buf, n);
}

void mx_bytes_free(struct mx_bytes *b) {
    if (!b)
        return;
    free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}
