/* base64.c - RFC 4648 base64 (see base64.h). Images of a few hundred KiB to a few MiB, once per
 * request: a table lookup per byte is plenty. */
#include "net/base64.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const char ALPHABET[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int mx_base64_encode(const unsigned char *b, size_t n, char **out, struct mx_err *err) {
    *out = NULL;
    if (n > (SIZE_MAX - 1) / 4 * 3 - 3)
        return mx_err_set(err, MX_ERANGE, "base64: %zu bytes are too many to encode", n);
    size_t len = (n + 2) / 3 * 4;
    char *s = malloc(len + 1);
    if (!s)
        return mx_err_set(err, MX_ENOMEM, "base64: out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)b[i + 1] << 8;
        if (i + 2 < n)
            v |= b[i + 2];
        s[k++] = ALPHABET[v >> 18 & 63];
        s[k++] = ALPHABET[v >> 12 & 63];
        s[k++] = i + 1 < n ? ALPHABET[v >> 6 & 63] : '=';
        s[k++] = i + 2 < n ? ALPHABET[v & 63] : '=';
    }
    s[k] = '\0';
    *out = s;
    return 0;
}

/* The value of a base64 character, or -1. */
static int value(unsigned char c) {
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' || c == '-' ? 62 : c == '/' || c == '_' ? 63 : -1; /* URL-safe too */
}

int mx_base64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len,
                     struct mx_err *err) {
    *out = NULL;
    *out_len = 0;
    /* a data URL ("data:image/png;base64,...") as some servers send */
    if (n >= 5 && !memcmp(s, "data:", 5)) {
        const char *comma = memchr(s, ',', n);
        if (!comma)
            return mx_err_set(err, MX_EFORMAT, "base64: a data URL without a comma");
        n -= (size_t)(comma + 1 - s);
        s = comma + 1;
    }
    unsigned char *b = malloc(n / 4 * 3 + 3);
    if (!b)
        return mx_err_set(err, MX_ENOMEM, "base64: out of memory");
    uint32_t acc = 0;
    int bits = 0;
    size_t k = 0, n_pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            continue;
        if (c == '=') {
            n_pad++;
            continue;
        }
        int v = value(c);
        if (v < 0 || n_pad) {
            free(b);
            return mx_err_set(err, MX_EFORMAT, "base64: %s at offset %zu",
                              v < 0 ? "a byte that is not base64" : "text after the padding",
                              i);
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            b[k++] = (unsigned char)(acc >> bits & 0xff);
        }
    }
    if (bits >= 6 || n_pad > 2) { /* one character left over: not a whole byte */
        free(b);
        return mx_err_set(err, MX_EFORMAT, "base64: the text ends in the middle of a byte");
    }
    *out = b;
    *out_len = k;
    return 0;
}
