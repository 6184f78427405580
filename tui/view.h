/* view.h - a view of the chat (ncdu's xxx_draw/xxx_key, tig's view_ops, htop's HandlerResult): a
 * pane that draws itself and, while it has the focus, takes the keys before the input line. Key
 * handlers change state and return flags; only the main loop (loop.c) draws.
 *
 * The views: the conversation (conv_view.c), the sessions sidebar (sidebar.c), the model picker
 * (picker.c), the gallery and the full-screen image viewer (gallery.c). draw.c lays them out;
 * input.c offers each key to the focused one, in the order of its table.
 */
#ifndef MX_TUI_VIEW_H
#define MX_TUI_VIEW_H

#include <stdbool.h>
#include <stddef.h>

struct app;

/* What a key handler did (flags; 0: not this view's key, offer it on). */
#define MX_KEY_HANDLED 1 /* the key was the view's: *used bytes consumed */
#define MX_KEY_REDRAW  2 /* something on screen changed */
#define MX_KEY_RESIZE  4 /* the layout changed: views get resize() before the next frame */
#define MX_KEY_QUIT    8 /* leave mixel */

struct mx_view_ops {
    const char *name;
    /* The view has the keys now (NULL: never; the input line keeps them). */
    bool (*focused)(const struct app *a);
    /* Draws the view into the cells (top, left) .. (top + height, left + width). */
    void (*draw)(struct app *a, int top, int left, int height, int width);
    /* Offers the key at b[0..n) (n >= 1; escape sequences arrive whole when read together).
     * Returns MX_KEY_* flags; sets *used when MX_KEY_HANDLED. NULL: takes no keys. */
    int (*key)(struct app *a, const unsigned char *b, size_t n, size_t *used);
    /* The terminal is now rows x cols (NULL: nothing to adjust). */
    void (*resize)(struct app *a, int rows, int cols);
};

/* Bytes of the key at b[0..n): a whole escape sequence (CSI ESC [ ... final byte, SS3 ESC O x,
 * Alt-x ESC x), else 1. A list that does not know a key still takes all of it, so no tail of an
 * escape sequence ("[15~") reaches the input line as text. */
static inline size_t mx_key_len(const unsigned char *b, size_t n) {
    if (n < 2 || b[0] != 0x1b)
        return 1;
    if (b[1] == 'O')
        return n >= 3 ? 3 : 2;
    if (b[1] != '[')
        return 2;
    size_t i = 2;
    while (i < n && !(b[i] >= 0x40 && b[i] <= 0x7e))
        i++;
    return i < n ? i + 1 : n;
}

extern const struct mx_view_ops mx_view_conversation; /* conv_view.c */
extern const struct mx_view_ops mx_view_sidebar;      /* sidebar.c */
extern const struct mx_view_ops mx_view_picker;       /* picker.c */
extern const struct mx_view_ops mx_view_firstrun;     /* firstrun.c */
extern const struct mx_view_ops mx_view_gallery;      /* gallery.c */
extern const struct mx_view_ops mx_view_viewer;       /* gallery.c */

#endif
