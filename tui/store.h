/* store.h - persistence glue: the session in the history database, its settings and KV snapshots
 * (store.c). Storage problems never stop the chat: they become notices. */
#ifndef MX_TUI_STORE_H
#define MX_TUI_STORE_H

#include "tui/app_int.h"

/* The database takes writes (open and not read-only). */
bool mx_app_store_writable(const struct app *a);
/* Opens the history database (unless --no-history) and resumes opts->resume if asked. */
void mx_app_store_open(struct app *a);
/* Creates the session on first use. Returns 0, or < 0 when sessions are not saved. */
int mx_app_ensure_session(struct app *a);
/* Saves the sampling settings with the session. */
void mx_app_store_settings(struct app *a);
/* Re-reads the session title into the status bar. */
void mx_app_store_refresh_title(struct app *a);
/* Saves / loads the engine's KV cache for the current session (only between jobs). */
void mx_app_snapshot_save(struct app *a);
void mx_app_snapshot_load(struct app *a);
/* Replaces the view with session id's active branch. Returns 0 or an MX_E* code (notice set). */
int mx_app_session_load(struct app *a, int64_t id);
/* Re-reads the current branch (sibling counts) after the active leaf moved. */
void mx_app_session_reload(struct app *a);
/* Leaves the current session for an empty conversation, saying what. */
void mx_app_session_fresh(struct app *a, const char *what);
/* Opens the session with id or title arg. Returns 0 or an MX_E* code (notice set). */
int mx_app_session_resume(struct app *a, const char *arg);
/* Moves to the previous (dir -1) or next (+1) branch of the last message that has siblings. */
void mx_app_branch_step(struct app *a, int dir);

#endif
