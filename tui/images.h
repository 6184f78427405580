/* images.h - images in cells: inline under their message, as sixels or half blocks (images.c). */
#ifndef MX_TUI_IMAGES_H
#define MX_TUI_IMAGES_H

#include "core/base/bytes.h"
#include "tui/app_int.h"

/* Loads m's image once (a file that cannot be read: a notice, and the caption only). */
void mx_app_img_ensure(struct app *a, struct msg *m);
/* What transparent pixels are composited over: the theme's background when it has one of its
 * own, else the terminal's (OSC 11; black when it did not answer). */
void mx_app_img_bg(const struct app *a, unsigned char bg[3]);
/* Drops every message's decoded and encoded pixels (they load again when next drawn): the
 * background they were composited over changed (/theme). */
void mx_app_img_forget(struct app *a);

/* Drops m's decoded and encoded pictures (the file stays): the next frame loads it again. */
void mx_app_msg_img_drop(struct msg *m);

/* mx_image_load with PNG alpha composited over mx_app_img_bg. Errors as mx_image_load. */
int mx_app_img_load(const struct app *a, const char *path, struct mx_image *img,
                    struct mx_err *err);
/* Rows m's image takes at width columns (0: no image, or graphics off); its layout in *lay. */
int mx_app_img_rows(struct app *a, struct msg *m, int width, struct mx_image_layout *lay);
/* Draws row r of m's image as half blocks at (y, x0). */
void mx_app_draw_block_row(struct app *a, struct msg *m, int r, int y, int x0, int width);
/* Draws img as half blocks fitted into box_cols x box_rows cells at (y, x). */
void mx_app_draw_blocks_box(struct app *a, const struct mx_image *img, int y, int x, int box_cols,
                            int box_rows);
/* Writes bytes (a sixel) at cell (y, x), the cursor saved and restored; inside tmux through one
 * passthrough at the outer terminal's coordinates. */
void mx_app_emit_at(struct app *a, int y, int x, const char *bytes, size_t n);
/* Encodes img as a bare sixel fitted to box_cols x box_rows into b. Returns 0 or an MX_E* code. */
int mx_app_encode_sixel(struct app *a, const struct mx_image *img, int box_cols, int box_rows,
                        struct mx_bytes *b, struct mx_err *err);
/* Sends m's sixel (encoded once per size, cached with m) at cell (y, x), after the frame. */
void mx_app_emit_sixel(struct app *a, struct msg *m, int y, int x, int box_cols, int box_rows);

#endif
