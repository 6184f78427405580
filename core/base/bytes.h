/* bytes.h - a growing byte buffer: the sink encoders write into (sixel, half blocks), the text a
 * generation holds back while it may still become a stop string. One implementation, so the
 * growth and the out-of-memory rule are the same everywhere.
 */
#ifndef MX_BYTES_H
#define MX_BYTES_H

#include <stddef.h>

struct mx_bytes {
    char *p;      /* p[0..n) the bytes, p[n] == '\0' once anything was added; owned */
    size_t n;     /* bytes held */
    size_t cap;   /* bytes allocated (> n once anything was added) */
};

/* Appends s[0..n) (s may point into b itself only when no growth is needed) and keeps p
 * NUL-terminated. Returns 0, or MX_ENOMEM with b unchanged. */
int mx_bytes_add(struct mx_bytes *b, const void *s, size_t n);

/* mx_bytes_add with the shape of an encoder's write callback (ud: the struct mx_bytes). */
int mx_bytes_write(void *ud, const char *buf, size_t n);

/* Frees the bytes and empties b (the struct itself is the caller's). NULL ok. */
void mx_bytes_free(struct mx_bytes *b);

#endif
