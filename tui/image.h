/* image.h - images for the terminal: load PNG/JPEG into RGB8, scale, encode as sixel (libsixel)
 * or Unicode half blocks.
 *
 * Images are untrusted user files: sizes are capped before anything is allocated, decoder errors
 * come back as values with a message, and nothing here prints. Encoders write through a callback
 * so the caller decides when the bytes reach the terminal (after curses' doupdate(), or stdout).
 */
#ifndef MX_IMAGE_H
#define MX_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

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

/* Frees the pixels (img may be NULL) and empties the struct. */
void mx_image_free(struct mx_image *img);

/* Resamples src to dw x dh into *out (caller frees): area averaging where it shrinks (each output
 * pixel is the exact mean of the source area it covers), bilinear where it grows. Errors:
 * MX_EINVAL (empty sizes), MX_ERANGE (dw/dh over the caps), MX_ENOMEM. */
int mx_image_scale(const struct mx_image *src, int dw, int dh, struct mx_image *out);

/* Where an image goes on the terminal, in cells and in pixels. */
struct mx_image_layout {
    int cols, rows;    /* cells the image occupies (both layouts use the same rectangle) */
    int px_w, px_h;    /* sixel size in pixels, <= cols*cell_w x rows*cell_h */
    int blk_w, blk_h;  /* half-block size in "pixels": <= cols x 2*rows */
};

/* Fits an img_w x img_h image into at most box_cols x box_rows cells (box_rows <= 0: no limit)
 * and max_w x max_h sixel pixels (<= 0: no limit), keeping the aspect ratio, scaling up or down
 * so that the width or the height fills the box. Cells are cell_w x cell_h px. Pure; every
 * output is >= 1. Returns MX_EINVAL for non-positive sizes. */
int mx_image_fit(int img_w, int img_h, int cell_w, int cell_h, int box_cols, int box_rows,
                 int max_w, int max_h, struct mx_image_layout *lay);

/* Byte sink for encoders: returns 0, or a negative MX_E* to stop encoding. */
typedef int (*mx_image_write_fn)(void *ud, const char *buf, size_t n);

/* Encodes img as one sixel image (DCS `ESC P 0;1;0 q ... ESC \`, 7-bit) with a palette of
 * n_colours (2..256) built for this image (libsixel median cut, error diffusion). With
 * tmux_wrap the whole DCS is wrapped for tmux passthrough (`ESC P tmux; ... ESC \`, every ESC
 * inside doubled). Errors: MX_EUNSUP without libsixel, MX_ENOMEM, MX_EIO, or what write
 * returned. */
int mx_image_sixel(const struct mx_image *img, int n_colours, bool tmux_wrap,
                   mx_image_write_fn write, void *ud, struct mx_err *err);

/* Encodes img (already scaled to blk_w x blk_h: one column per cell, two rows per cell) as rows
 * of `▀` with the upper pixel as foreground and the lower as background: 24-bit SGR 38;2/48;2
 * when truecolor, else the nearest xterm-256 colours (38;5/48;5). Each row ends with SGR 0 and
 * "\n"; an odd last row uses the default background below. Returns 0 or what write returned. */
int mx_image_blocks(const struct mx_image *img, bool truecolor, mx_image_write_fn write, void *ud);

/* Nearest xterm-256 palette index (16..255: the 6x6x6 cube and the grey ramp; 0..15 are left out
 * because terminals redefine them) by squared RGB distance. */
int mx_image_rgb_to_256(uint8_t r, uint8_t g, uint8_t b);
/* The RGB of xterm-256 index i (16..255), into rgb[3]. */
void mx_image_256_to_rgb(int i, uint8_t rgb[3]);

/* Wraps bytes for tmux passthrough: starts with `ESC P tmux;`, doubles each ESC, ends with
 * `ESC \`. Writes begin, then each chunk, then end through `write`. */
struct mx_tmux_wrap {
    mx_image_write_fn write;   /* the real sink (borrowed) */
    void *ud;
};
int mx_tmux_wrap_begin(struct mx_tmux_wrap *t);
int mx_tmux_wrap_chunk(struct mx_tmux_wrap *t, const char *buf, size_t n);
int mx_tmux_wrap_end(struct mx_tmux_wrap *t);

#endif
