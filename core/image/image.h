/* image.h - images in memory: load PNG/JPEG into RGB8 and scale them. The terminal encoders
 * (sixel, half blocks) are in tui/image_term.h.
 *
 * Images are untrusted user files: sizes are capped before anything is allocated, decoder errors
 * come back as values with a message, and nothing here prints.
 */
#ifndef MX_IMAGE_H
#define MX_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

/* Limits on what we decode: a side beyond 16384 px or more than 64 Mpx (192 MiB RGB) is refused
 * as a hostile or mistaken file before any pixel buffer is allocated. */
#define MX_IMAGE_MAX_SIDE   16384
#define MX_IMAGE_MAX_PIXELS (64u * 1024u * 1024u)

/* An RGB8 image, rows top to bottom, no padding. */
struct mx_image {
    int w, h;          /* pixels */
    uint8_t *rgb;      /* w * h * 3 bytes; owned by the image */
};

/* Loads a PNG (libpng; any bit depth/colour type/interlace; alpha composited over black) or a
 * JPEG (libsixel's built-in loader, after checking the size in its SOF header; turned as its
 * EXIF orientation says), chosen by the file's magic bytes. On success *out owns its pixels
 * (mx_image_free). Errors: MX_ENOENT/MX_EIO (open/read), MX_EFORMAT (corrupt or not PNG/JPEG),
 * MX_ERANGE (too large), MX_EUNSUP (JPEG in a build without libsixel), MX_ENOMEM; *out is then
 * empty and err says "path: problem". */
int mx_image_load(const char *path, struct mx_image *out, struct mx_err *err);

/* mx_image_load compositing PNG alpha over bg (RGB8; e.g. the terminal's background) instead of
 * black. */
int mx_image_load_over(const char *path, const uint8_t bg[3], struct mx_image *out,
                       struct mx_err *err);

/* Writes img as an 8-bit RGB PNG at path (through path.part and a rename, so a failure never
 * leaves half a file). Errors: MX_EINVAL (empty image), MX_ENOENT/MX_EPERM/MX_EIO, MX_ERANGE
 * (path too long); err says "path: problem". */
int mx_image_save_png(const struct mx_image *img, const char *path, struct mx_err *err);

/* mx_image_save_png with one text chunk, as AUTOMATIC1111 stores its "parameters": text (UTF-8)
 * goes into a tEXt chunk when it encodes as Latin-1, else into an uncompressed iTXt chunk
 * (Pillow's PngInfo.add_text), placed before the image data; invalid UTF-8 bytes are written
 * as U+FFFD. key: 1-79 printable ASCII characters, no leading, trailing or double spaces.
 * Read back with mx_png_read_text (png_text.h). Errors: those of mx_image_save_png, MX_EINVAL
 * (bad key, NULL text), MX_ERANGE (text over MX_PNG_TEXT_MAX bytes), MX_ENOMEM. */
int mx_image_save_png_text(const struct mx_image *img, const char *path, const char *key,
                           const char *text, struct mx_err *err);

/* Frees the pixels (img may be NULL) and empties the struct. */
void mx_image_free(struct mx_image *img);

/* Resamples src to dw x dh into *out (caller frees): area averaging where it shrinks (each output
 * pixel is the exact mean of the source area it covers), bilinear where it grows. Errors:
 * MX_EINVAL (empty sizes), MX_ERANGE (dw/dh over the caps), MX_ENOMEM. */
int mx_image_scale(const struct mx_image *src, int dw, int dh, struct mx_image *out);

#endif
