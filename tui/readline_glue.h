/* readline_glue.h - GNU readline in callback mode under curses (readline_glue.c). */
#ifndef MX_TUI_READLINE_GLUE_H
#define MX_TUI_READLINE_GLUE_H

#include "tui/app_int.h"

/* Hooks readline up (it never writes to the screen), loads the input history, binds the keys. */
void mx_app_rl_init(struct app *a);
/* Saves the input history and unhooks readline. */
void mx_app_rl_deinit(struct app *a);
/* Hands one typed byte to readline. */
void mx_app_rl_feed(struct app *a, unsigned char c);
/* More input is waiting on stdin. */
int mx_app_rl_input_available(void);

#endif
