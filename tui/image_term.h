/* image_term.h - images for the terminal: fit in cells, encode as sixel (libsixel) or Unicode
 * half blocks, wrap for tmux.
 *
 * Encoders write through a callback so the caller decides when the bytes reach the terminal
 * (after curses' doupdate(), or stdout). Nothing here prints.
 */
#ifndef MX_IMAGE_TERM_H
#define MX_IMAGE_TERM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/image/image.h"

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
