/* readline_glue.h - GNU readline in callback mode under curses (readline_glue.c). */
#ifndef MX_TUI_READLINE_GLUE_H
#define MX_TUI_READLINE_GLUE_H

#include "tui/app_int.h"

/* Hooks readline up (it never writes to the screen), loads the input history, binds the keys. */
void mx_app_rl_init(struct app *a);
/* Saves the input history and unhooks readline. */
void mx_app_rl_deinit(struct app *a);
/* Hands typed bytes to readline, which takes a run of plain characters in one go (linear in the
 * text typed). Stops early, after a whole key, when stop(a) says the focus went elsewhere (a
 * key opened a view) or the user quit. Returns the bytes consumed (>= 1 when n > 0). */
size_t mx_app_rl_feed(struct app *a, const unsigned char *buf, size_t n,
                      bool (*stop)(const struct app *a));
/* Puts the text given back to the input line (a->rl.next_text, mx_app_input_give) in front of
 * what is typed there, cursor at the end. Called after each key readline took and after worker
 * events; nothing when none is waiting. */
void mx_app_rl_take_text(struct app *a);

#endif
