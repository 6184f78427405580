/* run_session.h - `mixel run --session NAME`: one chat turn of a saved session from a script.
 * The prompt goes through the model's chat template with the session's history, the answer is
 * streamed to stdout and stored, and the KV snapshot makes the next call start instantly. */
#ifndef MX_RUN_SESSION_H
#define MX_RUN_SESSION_H

#include "app/engine.h"

struct mx_run_session_opts {
    const char *model;        /* GGUF path (with engine: the model path the session stores) */
    struct mx_engine *engine; /* borrowed: answers instead of a GGUF opened from model (a
                               * remote engine); NULL: open model. No KV snapshot with it */
    const char *session;      /* id or title; a new session with this title when none matches */
    const char *prompt;       /* the user's message (UTF-8) */
    const char *db_path;      /* NULL: $XDG_DATA_HOME/mixel/history.db */
    const char *tmpl;         /* chat template override, NULL: the model's */
    struct mx_gen_settings settings;
    bool show_reasoning;      /* print the model's reasoning (gpt-oss's analysis channel) before
                               * the answer; false: left out (it is never stored) */
};

/* Runs the turn. Prints the answer to stdout, a one-line summary to stderr. Returns the exit
 * status: 0, 1 (load, storage or generation failed), 130 (interrupted: the partial answer is
 * stored as such). */
int mx_run_session(const struct mx_run_session_opts *o);

/* Writes model output s[0..n) (whole UTF-8 characters) to stdout and flushes: as it is into a
 * pipe or file, made inert (mx_text_sanitize, newlines kept) when stdout is a terminal. Returns
 * 0 or MX_EIO. For `mixel run` with and without --session. */
int mx_run_write(const char *s, size_t n);

#endif
