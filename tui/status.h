/* status.h - the status line: notices, progress, and the status bar (status.c). */
#ifndef MX_TUI_STATUS_H
#define MX_TUI_STATUS_H

#include "tui/app_int.h"

/* Sets the notice shown above the input (replacing the previous one) and logs it for /log. */
void mx_app_notice(struct app *a, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same, with the internal detail behind it (an error's text; NULL or "" none), which only
 * /log shows. */
void mx_app_notice_detail(struct app *a, bool error, const char *detail, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Takes the notice off the screen (the log keeps it). */
void mx_app_notice_clear(struct app *a);
/* The user pressed a key: the next notice replaces what is shown (without one since, notices
 * that come within 2 s of each other stack, so that none is hidden at once). */
void mx_app_notice_keyed(struct app *a);
/* The logged notices, oldest first, one "HH:MM:SS [(error) ]text" line each, into buf (always
 * NUL-terminated, cut at size). Returns how many there are. */
int mx_app_notice_log(const struct app *a, char *buf, size_t size);
/* Rows the notice takes wrapped at width (0: none). */
int mx_app_notice_rows(const struct app *a, int width);
/* Draws the notice on rows y .. y + rows - 1, wrapped; cut with "… (/log)" when longer. */
void mx_app_draw_notice(struct app *a, int y, int rows, int width);
/* A storage problem as a notice: the chat goes on in memory ("not saved: ..."). */
void mx_app_store_warn(struct app *a, const struct mx_err *err, int rc);
/* A progress event (what, done of total) as a bar with an ETA in the status bar; gone when
 * done reaches total or at mx_app_progress_end. */
void mx_app_progress(struct app *a, const char *what, double done, double total);
void mx_app_progress_end(struct app *a);
/* The same for an amount in bytes ("1.21 GB of 4.37 GB"), with no "Esc cancels": a model's
 * load cannot be stopped half-way. */
void mx_app_progress_bytes(struct app *a, const char *what, double done, double total);

/* Draws the status bar on row y. */
void mx_app_draw_status(struct app *a, int y, int width);

#endif
