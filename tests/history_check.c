/* history_check.c - the judge of tests/history_kill.sh: after a SIGKILL of history_writer, opens
 * the database the normal way (which must work), runs PRAGMA integrity_check and the FTS index
 * check, verifies every message is exactly the text its key generates (complete answers whole,
 * stopped or interrupted ones a prefix), and that everything the writer's log says was committed
 * is still there at least that long. Prints one summary line; exit 0 = intact.
 *
 * usage: history_check DB LOG
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history/db.h"
#include "tests/history_text.h"

static int fails;

static void bad(const char *fmt, long long a, long long b) {
    fprintf(stderr, "history_check: ");
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    fails++;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: history_check DB LOG\n");
        return 2;
    }
    struct mx_db *db;
    struct mx_err err = {0};
    struct mx_db_opts o = {.path = argv[1], .busy_ms = 5000};
    if (mx_db_open(&db, &o, &err) != 0) {
        fprintf(stderr, "history_check: open after kill: %s\n", err.msg);
        return 1;
    }
    sqlite3 *h = mx_db_sqlite(db);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(st, 0), "ok") != 0) {
        fprintf(stderr, "history_check: integrity_check: %s\n",
                st ? (const char *)sqlite3_column_text(st, 0) : sqlite3_errmsg(h));
        return 1;
    }
    sqlite3_finalize(st);
    if (sqlite3_exec(h, "INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')",
                     NULL, NULL, NULL) != SQLITE_OK) {
        fprintf(stderr, "history_check: FTS index: %s\n", sqlite3_errmsg(h));
        return 1;
    }

    /* every message is its key's text: whole when complete, a prefix otherwise */
    long n_msg = 0, n_stream = 0;
    sqlite3_prepare_v2(h, "SELECT id, content, state FROM messages ORDER BY id", -1, &st, NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        long long id = sqlite3_column_int64(st, 0);
        const char *c = (const char *)sqlite3_column_text(st, 1);
        const char *state = (const char *)sqlite3_column_text(st, 2);
        size_t len = strlen(c);
        n_msg++;
        if (!strcmp(state, "streaming"))
            n_stream++;
        if (len == 0 && strcmp(state, "complete") != 0)
            continue; /* begun, nothing streamed yet */
        char tag = c[0];
        unsigned long long key;
        bool whole = !strcmp(state, "complete");
        /* A chunk may end inside the "<tag><key>:" prefix: a streaming message cut there ("A",
         * "A12") is a valid prefix that names no key yet, so there is nothing more to check. */
        if (!whole && (tag == 'U' || tag == 'A') && strspn(c + 1, "0123456789") == len - 1)
            continue;
        if ((tag != 'U' && tag != 'A') || sscanf(c + 1, "%llu:", &key) != 1) {
            /* killed before the first chunk's prefix was complete? only a streaming prefix */
            bad("message %lld: unrecognisable content (length %lld)", id, (long long)len);
            continue;
        }
        size_t full = tag == 'U' ? mx_ht_user_len(key) : mx_ht_answer_len(key);
        char *want = mx_ht_text(tag, key, full);
        if (len > full || memcmp(c, want, len) != 0 || (whole && len != full))
            bad("message %lld: content differs from its key's text (length %lld)", id,
                (long long)len);
        free(want);
    }
    sqlite3_finalize(st);

    /* everything the log says was committed is still there, at least that long */
    FILE *f = fopen(argv[2], "r");
    long n_log = 0;
    if (f) {
        char line[128];
        sqlite3_prepare_v2(h, "SELECT length(CAST(content AS BLOB)), state FROM messages "
                           "WHERE id = ?", -1, &st, NULL);
        while (fgets(line, sizeof line, f)) {
            if (!strchr(line, '\n'))
                break; /* the kill cut this line: nothing is promised by it */
            bool fin = line[0] == 'F';
            long long id, len;
            if (sscanf(line + (fin ? 2 : 0), "%lld %lld", &id, &len) != 2) {
                bad("log line unreadable (%lld, %lld)", n_log, 0);
                break;
            }
            n_log++;
            sqlite3_reset(st);
            sqlite3_bind_int64(st, 1, id);
            if (sqlite3_step(st) != SQLITE_ROW) {
                bad("committed message %lld (length %lld) is gone", id, len);
                continue;
            }
            long long have = sqlite3_column_int64(st, 0);
            const char *state = (const char *)sqlite3_column_text(st, 1);
            if (have < len)
                bad("committed message %lld shrank to %lld bytes", id, have);
            if (fin && (!strcmp(state, "streaming") || have != len))
                bad("finished message %lld lost its final state (%lld bytes)", id, have);
        }
        sqlite3_finalize(st);
        fclose(f);
    }
    mx_db_close(db);
    printf("history_check: %ld messages (%ld interrupted), %ld logged commits, %d problems\n",
           n_msg, n_stream, n_log, fails);
    return fails ? 1 : 0;
}
