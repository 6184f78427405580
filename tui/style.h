/* style.h - theme roles as curses attributes, and the styled text every view draws with
 * (style.c). */
#ifndef MX_TUI_STYLE_H
#define MX_TUI_STYLE_H

#include "tui/app_int.h"

/* Starts colours (unless NO_COLOR or the terminal has none) and sets one pair per theme role. */
void mx_app_style_apply(struct app *a);
/* The curses attributes of a theme role plus MX_ATTR_* extra. */
attr_t mx_app_role_attr(const struct app *a, int role, unsigned extra);
/* Draws s[0..len) at (y, x) clipped to width columns, styled by role; returns columns used. */
int mx_app_put_text(struct app *a, int y, int x, const char *s, size_t len, int width, int role,
                    unsigned attrs);

#endif
