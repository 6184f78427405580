/* db_int.h - what the files of the history database share and nothing else should use: the
 * connection struct, SQLite error mapping, transaction helpers and row readers. */
#ifndef MX_DB_INT_H
#define MX_DB_INT_H

#include <sqlite3.h>

#include "history/db.h"

struct mx_db {
    sqlite3 *h;             /* the connection, owned */
    bool ro;                /* writes refused */
    char ro_reason[256];    /* why, for the UI's warning; "" when writable */
    char path[4096];        /* the database file */
    int busy_ms;            /* how long a write waits for another writer */
    double busy_start;      /* mx_time_s() when the current wait began */
    uint64_t busy_rng;      /* jitter for the wait's polling */
};

/* Turns a failed SQLite call into an MX_E* code with "path: what: sqlite message" in err.
 * Returns the code. */
int mx_db__fail(struct mx_db *db, int rc, const char *what, struct mx_err *err);

/* Prepares sql; returns 0 or an error code (message in err). */
int mx_db__prepare(struct mx_db *db, const char *sql, sqlite3_stmt **st, struct mx_err *err);

/* Fills m from a row selected with MX_DB__MSG_COLS (columns 0..10); sibling fields are zeroed.
 * Returns 0 or MX_ENOMEM. */
#define MX_DB__MSG_COLS "id, session, parent, role, state, content, timings, n_tokens, created, " \
                        "tool_calls, tool_call_id"
int mx_db__msg_from_row(sqlite3_stmt *st, struct mx_msg *m);

/* Replaces invalid UTF-8 in s by U+FFFD (model output is arbitrary bytes; JSON needs UTF-8).
 * Returns a malloc'd copy or NULL on out of memory. */
char *mx_db__utf8_clean(const char *s);

#endif
