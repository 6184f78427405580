/* png_text.h - PNG text chunks (tEXt, zTXt, iTXt): read one by its keyword, and the text
 * encoding rule used when writing one (mx_image_save_png_text in image.h).
 *
 * AUTOMATIC1111 keeps an image's generation parameters in a text chunk keyed "parameters",
 * written by Pillow's PngInfo.add_text: a tEXt chunk when the text encodes as Latin-1, else an
 * uncompressed iTXt chunk (UTF-8, empty language and translated keyword). Other tools use zTXt
 * or compressed iTXt; the reader takes all four.
 *
 * PNG files are untrusted: every chunk length is checked against the file, CRCs are verified,
 * a text chunk may hold at most MX_PNG_TEXT_MAX bytes (compressed or inflated: no zip bombs),
 * and the text comes back as valid UTF-8 (invalid bytes become U+FFFD).
 */
#ifndef MX_PNG_TEXT_H
#define MX_PNG_TEXT_H

#include <stddef.h>

#include "core/base/err.h"

/* Largest text chunk read or written, in bytes (as stored and after inflating). */
#define MX_PNG_TEXT_MAX (16u << 20)

/* Converts UTF-8 text (len bytes; invalid bytes count as U+FFFD) to Latin-1 when every code
 * point is below U+0100, as Python's str.encode("latin-1") would. Returns 1 with *out (caller
 * frees; NUL-terminated, *out_len bytes), 0 when the text does not fit Latin-1 (*out NULL), or
 * MX_ENOMEM. */
int mx_utf8_to_latin1(const char *s, size_t len, char **out, size_t *out_len);

/* Copies s (len bytes) as valid UTF-8: each invalid byte becomes U+FFFD, a NUL ends the text.
 * Returns 0 with *out (caller frees, NUL-terminated), or MX_ENOMEM. */
int mx_utf8_sanitize_dup(const char *s, size_t len, char **out);

/* Reads the text of the first tEXt, zTXt or iTXt chunk whose keyword is key (compared byte for
 * byte), anywhere in the file (before or after the image data). On success returns 0 with *out
 * the text as UTF-8 (caller frees; Latin-1 chunks are converted; text after an embedded NUL is
 * dropped), or 0 with *out NULL when no such chunk exists. Errors: MX_EINVAL (NULL arguments),
 * MX_ENOENT/MX_EPERM/MX_EIO (open/read), MX_EFORMAT (not a PNG, truncated or bad CRC before the
 * chunk was found, corrupt compressed text), MX_ERANGE (the chunk exceeds MX_PNG_TEXT_MAX),
 * MX_ENOMEM; err says "path: problem". Thread-safe. */
int mx_png_read_text(const char *path, const char *key, char **out, struct mx_err *err);

#endif
