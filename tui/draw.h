/* draw.h - one frame: the layout of the views, and the sixels placed after it (draw.c). */
#ifndef MX_TUI_DRAW_H
#define MX_TUI_DRAW_H

#include "tui/app_int.h"

/* Draws the whole screen and sends it (only the main loop calls this). */
void mx_app_draw(struct app *a);

#endif
