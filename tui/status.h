/* status.h - the status line: notices, progress, and the status bar (status.c). */
#ifndef MX_TUI_STATUS_H
#define MX_TUI_STATUS_H

#include "tui/app_int.h"

/* Sets the status-line notice (replacing the previous one). */
void mx_app_notice(struct app *a, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A storage problem as a notice: the chat goes on in memory ("not saved: ..."). */
void mx_app_store_warn(struct app *a, const struct mx_err *err, int rc);
/* A progress event (what, done of total) as a bar with an ETA in the notice. */
void mx_app_progress(struct app *a, const char *what, double done, double total);
/* Draws the status bar on row y. */
void mx_app_draw_status(struct app *a, int y, int width);

#endif
