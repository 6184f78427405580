/* gallery.h - the gallery of thumbnails, the full-screen viewer, and the image commands
 * /show, /gallery, /save (gallery.c). */
#ifndef MX_TUI_GALLERY_H
#define MX_TUI_GALLERY_H

#include "tui/app_int.h"

void mx_app_draw_gallery(struct app *a, int top, int height, int width);
/* The message index of the gallery's k-th image, or -1. */
int mx_app_gallery_msg(const struct app *a, int k);
/* Keys while the gallery is open. Returns bytes consumed (0: not its key). */
size_t mx_app_gallery_key(struct app *a, const unsigned char *b, size_t n);
void mx_app_draw_viewer(struct app *a, int rows, int cols);
void mx_app_cmd_show(struct app *a, const char *arg);
void mx_app_cmd_gallery(struct app *a, const char *arg);
void mx_app_cmd_save(struct app *a, const char *arg);
/* F3: the last image full screen. */
void mx_app_show_last_image(struct app *a);

#endif
