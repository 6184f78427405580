/* images.h - images in cells: inline under their message, as sixels or half blocks (images.c). */
#ifndef MX_TUI_IMAGES_H
#define MX_TUI_IMAGES_H

#include "tui/app_int.h"

/* A growing byte buffer used as an encoder's sink (mx_image_write_fn). */
struct mx_app_bytes {
    char *p;
    size_t n, cap;
};

void mx_app_img_ensure(struct app *a, struct msg *m);
int mx_app_img_rows(struct app *a, struct msg *m, int width, struct mx_image_layout *lay);
void mx_app_draw_block_row(struct app *a, struct msg *m, int r, int y, int x0, int width);
void mx_app_draw_blocks_box(struct app *a, const struct mx_image *img, int y, int x, int box_cols,
                            int box_rows);
int mx_app_bytes_write(void *ud, const char *buf, size_t n);
void mx_app_emit_at(struct app *a, int y, int x, const char *bytes, size_t n);
int mx_app_encode_sixel(struct app *a, const struct mx_image *img, int box_cols, int box_rows,
                        struct mx_app_bytes *b, struct mx_err *err);
void mx_app_emit_sixel(struct app *a, struct msg *m, int y, int x, int box_cols, int box_rows);

#endif
