/* input.h - input: the input area view, bracketed paste, and routing typed bytes to the view
 * that has the focus or to readline (input.c). */
#ifndef MX_TUI_INPUT_H
#define MX_TUI_INPUT_H

#include "tui/app_int.h"
#include "tui/view.h"

/* Rows the input area needs for buf at width columns. */
int mx_app_input_rows(const char *buf, int width);
/* Draws the prompt and readline's buffer in rows at top; returns the cursor cell. */
void mx_app_draw_input(struct app *a, int top, int rows, int width, int *cy, int *cx);
/* Handles n bytes read from the terminal: the focused view (view.h) takes its keys, the rest
 * goes to readline. Returns MX_KEY_* flags (view.h); only the main loop draws. */
int mx_app_input(struct app *a, const unsigned char *buf, size_t n);

#endif
