/* png_text.c - PNG text chunks: a chunk walker that finds one keyword's tEXt/zTXt/iTXt, and the
 * Latin-1/UTF-8 conversions the writer (image.c) and the reader share.
 *
 * Workload: one lookup per image opened (the gallery, `mixel image --show`, a pasted PNG): the
 * walker reads 8-byte chunk headers and seeks over everything else, so a large image costs a few
 * hundred small reads, and only the wanted chunk is read and inflated (zlib), bounded by
 * MX_PNG_TEXT_MAX. PNG layout: Ref: https://www.w3.org/TR/png-3/#11textinfo
 */
#include "core/image/png_text.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <zlib.h>

#include "core/base/text.h"

int mx_utf8_to_latin1(const char *s, size_t len, char **out, size_t *out_len) {
    *out = NULL;
    if (out_len)
        *out_len = 0;
    // Check first, so text that needs iTXt costs no allocation.
    for (size_t i = 0; i < len;) {
        unsigned int cp;
        size_t n = mx_utf8_decode(s + i, len - i, &cp);
        if (cp > 0xff)
            return 0;
        i += n;
    }
    char *o = malloc(len + 1);
    if (!o)
        return MX_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        unsigned int cp;
        i += mx_utf8_decode(s + i, len - i, &cp);
        o[k++] = (char)(unsigned char)cp;
    }
    o[k] = '\0';
    *out = o;
    if (out_len)
        *out_len = k;
    return 1;
}


int mx_utf8_sanitize_dup(const char *s, size_t len, char **out) {
    const char *nul = memchr(s, '\0', len);
    if (nul)
        len = (size_t)(nul - s);
    // Each invalid byte (1) becomes U+FFFD (3): 3 bytes per input byte is the bound.
    char *o = len <= (SIZE_MAX - 1) / 3 ? malloc(len * 3 + 1) : NULL;
    if (!o)
        return MX_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < len;) {
        unsigned int cp;
        i += mx_utf8_decode(s + i, len - i, &cp);
        k += mx_utf8_put(cp, o + k);
    }
    o[k] = '\0';
    *out = o;
    return 0;
}

/* Latin-1 bytes (to the first NUL) as UTF-8; returns 0 or MX_ENOMEM. */
static int latin1_to_utf8(const unsigned char *s, size_t len, char **out) {
    const unsigned char *nul = memchr(s, '\0', len);
    if (nul)
        len = (size_t)(nul - s);
    char *o = malloc(len * 2 + 1);
    if (!o)
        return MX_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < len; i++)
        k += mx_utf8_put((unsigned char)s[i], o + k);
    o[k] = '\0';
    *out = o;
    return 0;
}

/* Inflates a zlib stream into a new buffer of at most MX_PNG_TEXT_MAX bytes. Returns 0 with
 * *out (caller frees) and *out_len, MX_EFORMAT (corrupt or truncated stream), MX_ERANGE (the
 * text inflates past the cap) or MX_ENOMEM. */
static int inflate_text(const unsigned char *in, size_t n, unsigned char **out, size_t *out_len) {
    size_t cap = n < 4096 ? 8192 : n * 4;
    if (cap > MX_PNG_TEXT_MAX)
        cap = MX_PNG_TEXT_MAX;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return MX_ENOMEM;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) {
        free(buf);
        return MX_ENOMEM;
    }
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)n;
    int rc = 0;
    for (;;) {
        z.next_out = buf + z.total_out;
        z.avail_out = (uInt)(cap - z.total_out);
        int zr = inflate(&z, Z_NO_FLUSH);
        if (zr == Z_STREAM_END)
            break;
        if (zr == Z_MEM_ERROR) {
            rc = MX_ENOMEM;
            break;
        }
        if (zr != Z_OK && zr != Z_BUF_ERROR) {
            rc = MX_EFORMAT;
            break;
        }
        if (z.avail_out > 0) { /* no progress possible: the input ended inside the stream */
            rc = MX_EFORMAT;
            break;
        }
        if (cap >= MX_PNG_TEXT_MAX) {
            rc = MX_ERANGE;
            break;
        }
        size_t ncap = cap * 2 > MX_PNG_TEXT_MAX ? MX_PNG_TEXT_MAX : cap * 2;
        unsigned char *nb = realloc(buf, ncap);
        if (!nb) {
            rc = MX_ENOMEM;
            break;
        }
        buf = nb;
        cap = ncap;
    }
    size_t total = z.total_out;
    inflateEnd(&z);
    if (rc < 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_len = total;
    return 0;
}

/* Big-endian 32-bit value at p. */
static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The text of one text chunk (type tEXt/zTXt/iTXt, data d[0..n)) when its keyword is key:
 * returns 1 with *out (UTF-8, caller frees), 0 when the keyword differs, or a negative MX_E*
 * (corrupt chunk: MX_EFORMAT; see inflate_text). */
static int chunk_text(const char *type, const unsigned char *d, size_t n, const char *key,
                      char **out) {
    const unsigned char *nul = memchr(d, '\0', n);
    if (!nul)
        return 0; /* no keyword at all: not the chunk asked for */
    size_t klen = (size_t)(nul - d);
    if (klen != strlen(key) || memcmp(d, key, klen) != 0)
        return 0;
    const unsigned char *p = nul + 1, *end = d + n;
    int rc;
    if (!memcmp(type, "tEXt", 4))
        return (rc = latin1_to_utf8(p, (size_t)(end - p), out)) < 0 ? rc : 1;
    unsigned char *plain = NULL;
    size_t plen = 0;
    if (!memcmp(type, "zTXt", 4)) {
        if (end - p < 1 || p[0] != 0) /* compression method 0 (zlib) is the only one */
            return MX_EFORMAT;
        if ((rc = inflate_text(p + 1, (size_t)(end - p - 1), &plain, &plen)) < 0)
            return rc;
        rc = latin1_to_utf8(plain, plen, out);
        free(plain);
        return rc < 0 ? rc : 1;
    }
    // iTXt: compression flag, method, language tag NUL, translated keyword NUL, UTF-8 text.
    if (end - p < 2 || p[0] > 1 || p[1] != 0)
        return MX_EFORMAT;
    int compressed = p[0];
    p += 2;
    for (int field = 0; field < 2; field++) {
        const unsigned char *z = memchr(p, '\0', (size_t)(end - p));
        if (!z)
            return MX_EFORMAT;
        p = z + 1;
    }
    if (!compressed)
        return (rc = mx_utf8_sanitize_dup((const char *)p, (size_t)(end - p), out)) < 0 ? rc : 1;
    if ((rc = inflate_text(p, (size_t)(end - p), &plain, &plen)) < 0)
        return rc;
    rc = mx_utf8_sanitize_dup((const char *)plain, plen, out);
    free(plain);
    return rc < 0 ? rc : 1;
}

int mx_png_read_text(const char *path, const char *key, char **out, struct mx_err *err) {
    if (!path || !key || !out)
        return mx_err_set(err, MX_EINVAL, "png text: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return mx_err_set(err, errno == ENOENT ? MX_ENOENT : errno == EACCES ? MX_EPERM : MX_EIO,
                          "%s: %s", path, strerror(errno));
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    unsigned char hdr[8];
    unsigned char *data = NULL;
    int rc = 0;
    if (fread(hdr, 1, 8, f) != 8 || memcmp(hdr, sig, 8) != 0) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: not a PNG file", path);
        goto done;
    }
    for (long n_chunk = 0;; n_chunk++) {
        if (fread(hdr, 1, 8, f) != 8) {
            rc = mx_err_set(err, ferror(f) ? MX_EIO : MX_EFORMAT,
                            "%s: file ends before IEND (chunk %ld)", path, n_chunk);
            goto done;
        }
        uint32_t len = be32(hdr);
        char type[5] = {(char)hdr[4], (char)hdr[5], (char)hdr[6], (char)hdr[7], 0};
        if (len > 0x7fffffffu) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: chunk %ld '%.4s' has length %u past 2^31",
                            path, n_chunk, type, len);
            goto done;
        }
        if (!memcmp(type, "IEND", 4))
            break;
        bool is_text = !memcmp(type, "tEXt", 4) || !memcmp(type, "zTXt", 4) ||
                       !memcmp(type, "iTXt", 4);
        if (!is_text) {
            if (fseeko(f, (off_t)len + 4, SEEK_CUR) != 0) {
                rc = mx_err_set(err, MX_EIO, "%s: seek failed (%s)", path, strerror(errno));
                goto done;
            }
            continue;
        }
        if (len > MX_PNG_TEXT_MAX) {
            rc = mx_err_set(err, MX_ERANGE, "%s: %.4s chunk of %u bytes (limit %u)", path,
                            type, len, MX_PNG_TEXT_MAX);
            goto done;
        }
        data = malloc((size_t)len + 4);
        if (!data) {
            rc = mx_err_set(err, MX_ENOMEM, "%s: %u-byte text chunk", path, len);
            goto done;
        }
        if (fread(data, 1, (size_t)len + 4, f) != (size_t)len + 4) {
            rc = mx_err_set(err, ferror(f) ? MX_EIO : MX_EFORMAT,
                            "%s: file ends inside %.4s chunk %ld (truncated)", path, type,
                            n_chunk);
            goto done;
        }
        uLong crc = crc32(0L, hdr + 4, 4);
        crc = crc32(crc, data, (uInt)len);
        if ((uint32_t)crc != be32(data + len)) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: %.4s chunk %ld has a bad CRC", path, type,
                            n_chunk);
            goto done;
        }
        rc = chunk_text(type, data, len, key, out);
        free(data);
        data = NULL;
        if (rc == 1) {
            rc = 0;
            break;
        }
        if (rc < 0) {
            const char *why = rc == MX_ERANGE ? "inflates past the limit"
                              : rc == MX_ENOMEM ? "out of memory"
                                                : "is corrupt";
            rc = mx_err_set(err, rc, "%s: %.4s chunk %ld '%s' %s", path, type, n_chunk, key,
                            why);
            goto done;
        }
    }
done:
    free(data);
    fclose(f);
    return rc;
}
