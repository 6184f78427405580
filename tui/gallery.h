/* gallery.h - the gallery of thumbnails, the full-screen viewer, and the image commands
 * /show, /gallery, /save (gallery.c). */
#ifndef MX_TUI_GALLERY_H
#define MX_TUI_GALLERY_H

#include "tui/app_int.h"
#include "tui/view.h"

/* The message index of the gallery's k-th image, or -1. */
int mx_app_gallery_msg(const struct app *a, int k);
/* The gallery's and the viewer's draw and keys: mx_view_gallery, mx_view_viewer (view.h). */

/* The image commands (their table entries are in commands.c); each leaves a notice.
 * /show PATH: attaches a PNG/JPEG (stored with the session, not sent to the model). */
void mx_app_cmd_show(struct app *a, const char *arg);
/* /gallery: opens the thumbnails, the newest selected. */
void mx_app_cmd_gallery(struct app *a, const char *arg);
/* /save PATH: copies the selected (else the newest) image to PATH (via PATH.part + rename). */
void mx_app_cmd_save(struct app *a, const char *arg);
/* F3: the last image full screen. */
void mx_app_show_last_image(struct app *a);

#endif
