/* conv_view.h - the conversation view: messages, their images, scrolling (conv_view.c). */
#ifndef MX_TUI_CONV_VIEW_H
#define MX_TUI_CONV_VIEW_H

#include "tui/app_int.h"

/* Draws the conversation into the pane (top, left, height, width); records sixel placements. */
void mx_app_draw_conversation(struct app *a, int top, int left, int height, int width);

#endif
