/* db_integrity.c - test helper: runs PRAGMA integrity_check on an SQLite file and opens it the
 * normal way (mx_db_open, which migrates and checks it is a mixel database). Prints "ok" and
 * exits 0 when both pass. usage: db_integrity DB */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "history/db.h"

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: db_integrity DB\n");
        return 2;
    }
    sqlite3 *h = NULL;
    if (sqlite3_open_v2(argv[1], &h, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "db_integrity: %s: %s\n", argv[1], sqlite3_errmsg(h));
        sqlite3_close(h);
        return 1;
    }
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
             sqlite3_step(st) == SQLITE_ROW &&
             !strcmp((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(h);
    if (!ok) {
        fprintf(stderr, "db_integrity: %s: integrity_check failed\n", argv[1]);
        return 1;
    }
    struct mx_db *db = NULL;
    struct mx_err err = {0};
    struct mx_db_opts o = {.path = argv[1]};
    int rc = mx_db_open(&db, &o, &err);
    if (rc != 0 || mx_db_readonly(db)) {
        fprintf(stderr, "db_integrity: %s: %s\n", argv[1], rc ? err.msg : "opened read-only");
        mx_db_close(db);
        return 1;
    }
    mx_db_close(db);
    puts("ok");
    return 0;
}
