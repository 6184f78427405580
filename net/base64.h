/* base64.h - RFC 4648 base64 for the images A1111-compatible servers exchange in JSON (the
 * remote image client, net/remote_images.c): the encoder for an img2img source, the decoder for
 * the answer's PNGs. The decoder reads untrusted text: it takes an optional "data:...;base64,"
 * prefix, skips whitespace, accepts missing padding, and refuses any other byte. */
#ifndef MX_BASE64_H
#define MX_BASE64_H

#include <stddef.h>

#include "core/base/err.h"

/* Encodes b[0..n) with padding. Returns 0 with *out (caller frees, NUL-terminated), or
 * MX_ENOMEM / MX_ERANGE (n too large to encode). */
int mx_base64_encode(const unsigned char *b, size_t n, char **out, struct mx_err *err);

/* Decodes s[0..n). Returns 0 with *out (caller frees) and *out_len, or MX_EFORMAT (a byte that is
 * not base64, padding in the middle, a lone trailing character: err says where) / MX_ENOMEM. */
int mx_base64_decode(const char *s, size_t n, unsigned char **out, size_t *out_len,
                     struct mx_err *err);

#endif
