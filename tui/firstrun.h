/* firstrun.h - the first-run screen (firstrun.c): mixel started with no model given and none
 * found on this machine. Instead of a dead end it says what a model is, how much memory this
 * machine has, and offers a few well-known models that fit, each with its size and the exact
 * `mixel pull` command; Enter downloads the selected one on the worker (with progress; Esc
 * stops it, resumable) and then opens the chat with it. */
#ifndef MX_TUI_FIRSTRUN_H
#define MX_TUI_FIRSTRUN_H

#include "tui/app_int.h"
#include "tui/view.h"

/* Opens the screen (called at start-up when no model was given and discovery found none). */
void mx_app_firstrun_open(struct app *a);
/* A progress event of the running download: done of total bytes (total 0: unknown). */
void mx_app_firstrun_progress(struct app *a, double done, double total);
/* The download job ended with code (msg: why it failed): a chat model is loaded (load.c), an
 * image checkpoint is announced, a failure or a stop is said. */
void mx_app_firstrun_done(struct app *a, int code, const char *msg);
/* Frees what the last download left (its path). At exit. */
void mx_app_firstrun_deinit(void);
/* The screen's draw and keys: mx_view_firstrun (view.h). */

#endif
