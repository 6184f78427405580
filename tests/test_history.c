/* test_history.c - the history database and the KV-snapshot files: schema and migrations,
 * durability as seen by a second connection, the message tree (branches, active path, '2/3'),
 * full-text search, cascading delete, export round trips, locked / read-only / full database
 * faults, and every way a snapshot file can be damaged. Each test works in its own temp folder. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <jansson.h>
#include <sched.h>
#include <setjmp.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "history/db.h"
#include "history/kvsnap.h"
#include "tests/mx_test.h"

/* ---- fixtures ------------------------------------------------------------------------------ */

struct fx {
    char dir[64];       /* temp folder */
    char data[128];     /* dir/data: what XDG_DATA_HOME points at */
    char dbpath[256];   /* dir/data/mixel/history.db */
};

static int setup(void **state) {
    struct fx *f = calloc(1, sizeof *f);
    strcpy(f->dir, "/tmp/mx-hist-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->data, sizeof f->data, "%s/data", f->dir);
    snprintf(f->dbpath, sizeof f->dbpath, "%s/mixel/history.db", f->data);
    setenv("XDG_DATA_HOME", f->data, 1);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    struct fx *f = *state;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", f->dir, f->dir);
    int rc = system(cmd);
    (void)rc;
    free(f);
    return 0;
}

static struct mx_db *open_db(const char *path) {
    struct mx_db *db = NULL;
    struct mx_err err = {0};
    struct mx_db_opts o = {.path = path, .busy_ms = 200};
    int rc = mx_db_open(&db, &o, &err);
    if (rc != 0)
        fail_msg("open %s: %s", path ? path : "(default)", err.msg);
    return db;
}

static int64_t new_session(struct mx_db *db, const char *title) {
    int64_t id = 0;
    struct mx_err err = {0};
    int rc = mx_db_session_create(db, title, "/models/m.gguf", "0123456789abcdef", "chatml",
                                  "{\"temp\": 0.7, \"top_p\": 0.9}", &id, &err);
    if (rc != 0)
        fail_msg("create session: %s", err.msg);
    return id;
}

static int64_t append(struct mx_db *db, int64_t s, int64_t parent, enum mx_role r,
                      const char *text) {
    int64_t id = 0;
    struct mx_err err = {0};
    int rc = mx_db_msg_append(db, s, parent, r, text, (int)strlen(text) / 4, NULL, &id, &err);
    if (rc != 0)
        fail_msg("append: %s", err.msg);
    return id;
}

/* One integer from a SQL query on a raw connection. */
static int64_t q_int(sqlite3 *h, const char *sql) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("prepare %s: %s", sql, sqlite3_errmsg(h));
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
}

static void assert_integrity(sqlite3 *h) {
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    /* the full-text index must match the messages exactly */
    assert_int_equal(sqlite3_exec(h, "INSERT INTO messages_fts(messages_fts) "
                                  "VALUES ('integrity-check')", NULL, NULL, NULL), SQLITE_OK);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits (spinning, a few ms at most) until the wall clock has moved to a later millisecond, so
 * "updated" times differ without sleeping. */
static void next_ms(void) {
    int64_t t = now_ms();
    while (now_ms() <= t + 1)
        sched_yield();
}

/* ---- schema -------------------------------------------------------------------------------- */

static void test_schema_created_with_modes(void **state) {
    struct fx *f = *state;
    struct mx_db *db = open_db(NULL); /* default path from XDG_DATA_HOME */
    assert_string_equal(mx_db_path(db), f->dbpath);
    assert_false(mx_db_readonly(db));
    sqlite3 *h = mx_db_sqlite(db);
    assert_int_equal(q_int(h, "PRAGMA user_version"), MX_DB_SCHEMA_VERSION);
    assert_int_equal(q_int(h, "SELECT count(*) FROM migrations"), MX_DB_SCHEMA_VERSION);
    assert_int_equal(q_int(h, "SELECT max(version) FROM migrations"), MX_DB_SCHEMA_VERSION);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(h, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    new_session(db, "x"); /* makes the -wal file exist */
    struct stat sb;
    char p[300];
    snprintf(p, sizeof p, "%s/mixel", f->data);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    assert_int_equal(stat(f->dbpath, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    snprintf(p, sizeof p, "%s-wal", f->dbpath);
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    mx_db_close(db);
    /* reopening an up-to-date file changes nothing */
    db = open_db(NULL);
    assert_int_equal(q_int(mx_db_sqlite(db), "SELECT count(*) FROM migrations"),
                     MX_DB_SCHEMA_VERSION);
    assert_int_equal(q_int(mx_db_sqlite(db), "SELECT count(*) FROM sessions"), 1);
    mx_db_close(db);
}

static void test_migration_from_v0_and_foreign(void **state) {
    struct fx *f = *state;
    char p[300];
    /* version 0: an empty SQLite database made by someone else's sqlite3 (mode 0644) */
    snprintf(p, sizeof p, "%s/v0.db", f->dir);
    sqlite3 *h;
    assert_int_equal(sqlite3_open(p, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "PRAGMA user_version = 0; VACUUM", NULL, NULL, NULL), 0);
    sqlite3_close(h);
    chmod(p, 0644);
    struct mx_db *db = open_db(p);
    assert_int_equal(q_int(mx_db_sqlite(db), "PRAGMA user_version"), MX_DB_SCHEMA_VERSION);
    assert_int_equal(q_int(mx_db_sqlite(db), "SELECT version FROM migrations"), 1);
    int64_t s = new_session(db, NULL);
    append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_USER, "hello");
    mx_db_close(db);
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600); /* tightened */

    /* a foreign database at version 0 is refused, not "migrated" into */
    snprintf(p, sizeof p, "%s/foreign.db", f->dir);
    assert_int_equal(sqlite3_open(p, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "CREATE TABLE notes(x); INSERT INTO notes VALUES (42)",
                                  NULL, NULL, NULL), 0);
    sqlite3_close(h);
    struct mx_err err = {0};
    struct mx_db_opts o = {.path = p};
    assert_int_equal(mx_db_open(&db, &o, &err), MX_EFORMAT);
    assert_null(db);
    assert_non_null(strstr(err.msg, "not a mixel history database"));
    assert_int_equal(sqlite3_open(p, &h), SQLITE_OK);
    assert_int_equal(q_int(h, "SELECT x FROM notes"), 42);
    assert_int_equal(q_int(h, "SELECT count(*) FROM sqlite_master"), 1);
    sqlite3_close(h);

    /* not a database at all */
    snprintf(p, sizeof p, "%s/junk.db", f->dir);
    FILE *fp = fopen(p, "wb");
    for (int i = 0; i < 4096; i++)
        fputc(i * 37, fp);
    fclose(fp);
    mx_err_clear(&err);
    assert_int_equal(mx_db_open(&db, &o, &err), MX_EFORMAT);

    /* a newer schema (a later mixel) opens read-only, untouched */
    snprintf(p, sizeof p, "%s/new.db", f->dir);
    db = open_db(p);
    new_session(db, "future");
    mx_db_close(db);
    assert_int_equal(sqlite3_open(p, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "PRAGMA user_version = 99", NULL, NULL, NULL), 0);
    sqlite3_close(h);
    db = open_db(p);
    assert_true(mx_db_readonly(db));
    assert_non_null(strstr(mx_db_readonly_reason(db), "newer mixel"));
    mx_err_clear(&err);
    int64_t id;
    assert_int_equal(mx_db_session_create(db, "x", NULL, NULL, NULL, NULL, &id, &err), MX_EPERM);
    assert_int_equal(mx_db_session_find(db, "future", &id, NULL), 0);
    mx_db_close(db);
}

/* ---- durability and concurrency ------------------------------------------------------------ */

static void test_commit_visible_to_second_connection(void **state) {
    struct fx *f = *state;
    struct mx_db *db = open_db(NULL);
    sqlite3 *h;
    assert_int_equal(sqlite3_open_v2(f->dbpath, &h, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int64_t s = new_session(db, NULL);
    int64_t u = append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_USER, "first question");
    char sql[200];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM messages WHERE id = %lld AND content = "
             "'first question' AND state = 'complete'", (long long)u);
    assert_int_equal(q_int(h, sql), 1);

    /* streaming: each update is visible before the answer ends */
    int64_t a;
    struct mx_err err = {0};
    assert_int_equal(mx_db_msg_begin(db, s, MX_DB_PARENT_LEAF, MX_ROLE_ASSISTANT, &a, &err), 0);
    snprintf(sql, sizeof sql, "SELECT parent = %lld AND state = 'streaming' FROM messages "
             "WHERE id = %lld", (long long)u, (long long)a);
    assert_int_equal(q_int(h, sql), 1);
    assert_int_equal(mx_db_msg_update(db, a, "Once upon", 2, &err), 0);
    snprintf(sql, sizeof sql, "SELECT content = 'Once upon' FROM messages WHERE id = %lld",
             (long long)a);
    assert_int_equal(q_int(h, sql), 1);
    assert_int_equal(mx_db_msg_update(db, a, "Once upon a time", 4, &err), 0);
    assert_int_equal(mx_db_msg_finish(db, a, NULL, 4, "{\"tok_s\": 12.5}", MX_MSG_PARTIAL,
                                      &err), 0);
    snprintf(sql, sizeof sql, "SELECT content = 'Once upon a time' AND state = 'partial' AND "
             "n_tokens = 4 AND json_extract(timings, '$.tok_s') = 12.5 FROM messages "
             "WHERE id = %lld", (long long)a);
    assert_int_equal(q_int(h, sql), 1);
    /* a finished message is no longer writable as a stream */
    assert_int_equal(mx_db_msg_update(db, a, "more", 5, &err), MX_EINVAL);
    mx_err_clear(&err);
    assert_int_equal(mx_db_msg_finish(db, a, "x", 1, NULL, MX_MSG_STREAMING, &err), MX_EINVAL);
    mx_err_clear(&err);
    assert_int_equal(mx_db_msg_append(db, s, u, MX_ROLE_USER, "x", 0, "[1]", NULL, &err),
                     MX_EINVAL);
    sqlite3_close(h);
    mx_db_close(db);
}

static void test_locked_database(void **state) {
    struct fx *f = *state;
    struct mx_db *db = open_db(NULL);
    int64_t s = new_session(db, NULL);
    int64_t u = append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_USER, "kept safe");
    /* another process holds the write lock (an open write transaction) */
    sqlite3 *h;
    assert_int_equal(sqlite3_open(f->dbpath, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN IMMEDIATE; INSERT INTO sessions(title, created, "
                                  "updated) VALUES ('other', 1, 1)", NULL, NULL, NULL), 0);
    struct mx_err err = {0};
    int64_t id = 0;
    double t0 = (double)now_ms();
    assert_int_equal(mx_db_msg_append(db, s, u, MX_ROLE_ASSISTANT, "blocked", 1, NULL, &id,
                                      &err), MX_EBUSY);
    assert_true((double)now_ms() - t0 < 5000); /* the busy timeout, not forever */
    assert_non_null(strstr(err.msg, "locked"));
    /* a second instance opening now still works: WAL lets it read and queue its writes */
    struct mx_db *db2 = open_db(NULL);
    struct mx_msg_list path;
    assert_int_equal(mx_db_active_path(db2, s, &path, &err), 0);
    assert_int_equal(path.n, 1);
    assert_string_equal(path.v[0].content, "kept safe");
    mx_msg_list_free(&path);
    mx_db_close(db2);
    assert_int_equal(sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL), 0);
    /* the failed write left nothing behind; writing works again */
    assert_int_equal(q_int(h, "SELECT count(*) FROM messages"), 1);
    mx_err_clear(&err);
    assert_int_equal(mx_db_msg_append(db, s, u, MX_ROLE_ASSISTANT, "now", 1, NULL, &id, &err),
                     0);
    assert_integrity(h);

    /* a writer in rollback-journal mode holding its lock: the switch to WAL cannot happen, so
     * a new instance falls back to read-only and says why */
    mx_db_close(db);
    assert_int_equal(sqlite3_exec(h, "PRAGMA journal_mode = DELETE; BEGIN IMMEDIATE; "
                                  "UPDATE sessions SET title = 'held'", NULL, NULL, NULL), 0);
    db = open_db(NULL);
    assert_true(mx_db_readonly(db));
    assert_non_null(strstr(mx_db_readonly_reason(db), f->dbpath));
    struct mx_session ss;
    mx_err_clear(&err);
    assert_int_equal(mx_db_session_get(db, s, &ss, &err), 0);
    assert_string_equal(ss.title, "kept safe"); /* the committed state, not the held change */
    mx_session_deinit(&ss);
    assert_int_equal(mx_db_session_rename(db, s, "x", &err), MX_EPERM);
    mx_db_close(db);
    assert_int_equal(sqlite3_exec(h, "COMMIT", NULL, NULL, NULL), 0);
    assert_integrity(h);
    sqlite3_close(h);
    db = open_db(NULL); /* lock gone: read-write again, back in WAL */
    assert_false(mx_db_readonly(db));
    mx_db_close(db);

    /* a brand-new database whose creator still holds it locked: nothing to read -> busy */
    char p[300];
    snprintf(p, sizeof p, "%s/fresh.db", f->dir);
    assert_int_equal(sqlite3_open(p, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "BEGIN EXCLUSIVE", NULL, NULL, NULL), 0);
    mx_err_clear(&err);
    struct mx_db_opts o = {.path = p, .busy_ms = 100};
    assert_int_equal(mx_db_open(&db, &o, &err), MX_EBUSY);
    sqlite3_exec(h, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(h);
}

/* Checks run where the data folder is read-only (chmod for a normal user, a read-only bind
 * mount for root, for whom permissions do not apply). Returns 0 when all held. */
static int readonly_checks(const struct fx *f) {
    struct mx_db *db = NULL;
    struct mx_err err = {0};
    if (mx_db_open(&db, NULL, &err) != 0)
        return 1;
    if (!mx_db_readonly(db) || !mx_db_readonly_reason(db)[0])
        return 2;
    int64_t id;
    if (mx_db_session_find(db, "stays", &id, &err) != 0)
        return 3;
    struct mx_msg_list path;
    if (mx_db_active_path(db, id, &path, &err) != 0 || path.n != 1 ||
        strcmp(path.v[0].content, "stays"))
        return 4;
    mx_msg_list_free(&path);
    mx_err_clear(&err);
    if (mx_db_msg_append(db, id, MX_DB_PARENT_LEAF, MX_ROLE_USER, "x", 1, NULL, NULL, &err) !=
            MX_EPERM || !strstr(err.msg, "read-only"))
        return 5;
    mx_db_close(db);
    /* a database that does not exist yet cannot be made there */
    char p[300];
    snprintf(p, sizeof p, "%s/mixel/other.db", f->data);
    struct mx_db_opts o = {.path = p};
    mx_err_clear(&err);
    if (mx_db_open(&db, &o, &err) != MX_EPERM || db)
        return 6;
    /* nor a snapshot */
    snprintf(p, sizeof p, "%s/mixel/kv/1.kv", f->data);
    struct mx_kvsnap_info in = {.n_ctx = 8};
    mx_err_clear(&err);
    if (mx_kvsnap_save(p, &in, NULL, NULL, &err) != MX_EPERM)
        return 7;
    return 0;
}

/* As root, for whom permissions do not apply, in a child process: the folder is made read-only
 * by a read-only bind mount in a private mount namespace or, where root has no mount rights (a
 * container without CAP_SYS_ADMIN), by handing the test folder to nobody, making the folder
 * 0500 and dropping to nobody. Returns readonly_checks()'s code, or 77 when neither could be
 * set up. The folder is root's again afterwards. */
static int readonly_checks_as_root(const struct fx *f, const char *dir) {
    char cmd[400];
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
            mount(dir, dir, NULL, MS_BIND, NULL) == 0 &&
            mount(NULL, dir, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) == 0) {
            printf("# read-only folder: a read-only bind mount\n");
            fflush(stdout);
            _exit(readonly_checks(f));
        }
        const uid_t nobody = 65534;
        snprintf(cmd, sizeof cmd, "chown -R %d:%d '%s'", (int)nobody, (int)nobody, f->dir);
        if (system(cmd) != 0 || chmod(dir, 0500) != 0 || setgroups(0, NULL) != 0 ||
            setresgid(nobody, nobody, nobody) != 0 || setresuid(nobody, nobody, nobody) != 0 ||
            access(dir, W_OK) == 0)
            _exit(77);
        printf("# read-only folder: no mount rights; chmod 0500 and run as nobody\n");
        fflush(stdout);
        _exit(readonly_checks(f));
    }
    int ws;
    waitpid(pid, &ws, 0);
    snprintf(cmd, sizeof cmd, "chown -R 0:0 '%s' && chmod 0700 '%s'", f->dir, dir);
    assert_int_equal(system(cmd), 0);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 100;
}

static void test_readonly_folder(void **state) {
    struct fx *f = *state;
    struct mx_db *db = open_db(NULL);
    int64_t s = new_session(db, NULL);
    append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_USER, "stays");
    mx_db_close(db); /* clean close: -wal and -shm are gone, like after a normal quit */
    char dir[300];
    snprintf(dir, sizeof dir, "%s/mixel", f->data);
    int rc;
    if (geteuid() != 0) {
        assert_int_equal(chmod(dir, 0500), 0);
        rc = readonly_checks(f);
        chmod(dir, 0700);
    } else {
        rc = readonly_checks_as_root(f, dir);
        if (rc == 77)
            mx_test_skip("read-only folder: root with neither mount rights nor setuid to nobody");
    }
    if (rc != 0)
        fail_msg("read-only folder check %d failed", rc);
    /* and the data is still intact and writable afterwards */
    db = open_db(NULL);
    assert_false(mx_db_readonly(db));
    assert_integrity(mx_db_sqlite(db));
    mx_db_close(db);
}

static void test_disk_full_keeps_data(void **state) {
    (void)state;
    struct mx_db *db = open_db(NULL);
    sqlite3 *h = mx_db_sqlite(db);
    int64_t s = new_session(db, NULL);
    int64_t u = append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_USER, "before the disk filled");
    struct mx_err err = {0};
    int64_t a;
    assert_int_equal(mx_db_msg_begin(db, s, u, MX_ROLE_ASSISTANT, &a, &err), 0);
    /* SQLite reports a database that cannot grow as SQLITE_FULL, exactly as for ENOSPC */
    int64_t pages = q_int(h, "PRAGMA page_count");
    char sql[80];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %lld", (long long)pages);
    q_int(h, sql);
    size_t n = 1 << 20;
    char *big = malloc(n + 1);
    memset(big, 'z', n);
    big[n] = '\0';
    int64_t id = 0;
    assert_int_equal(mx_db_msg_append(db, s, u, MX_ROLE_ASSISTANT, big, 1, NULL, &id, &err),
                     MX_EFULL);
    assert_true(strlen(err.msg) > 0);
    mx_err_clear(&err);
    assert_int_equal(mx_db_msg_update(db, a, big, 1, &err), MX_EFULL);
    /* nothing earlier damaged, the failed rows absent, the stream still at its last commit */
    struct mx_msg m;
    assert_int_equal(mx_db_msg_get(db, u, &m, &err), 0);
    assert_string_equal(m.content, "before the disk filled");
    mx_msg_deinit(&m);
    assert_int_equal(mx_db_msg_get(db, a, &m, &err), 0);
    assert_string_equal(m.content, "");
    assert_int_equal(m.state, MX_MSG_STREAMING);
    mx_msg_deinit(&m);
    assert_int_equal(q_int(h, "SELECT count(*) FROM messages"), 2);
    assert_integrity(h);
    /* space back: the same write succeeds */
    q_int(h, "PRAGMA max_page_count = 1000000");
    mx_err_clear(&err);
    assert_int_equal(mx_db_msg_update(db, a, big, 1, &err), 0);
    free(big);
    mx_db_close(db);
}

/* ---- the message tree ---------------------------------------------------------------------- */

static void expect_path(struct mx_db *db, int64_t s, int n, const int64_t *ids) {
    struct mx_msg_list l;
    struct mx_err err = {0};
    assert_int_equal(mx_db_active_path(db, s, &l, &err), 0);
    assert_int_equal(l.n, n);
    for (int i = 0; i < n; i++)
        assert_int_equal(l.v[i].id, ids[i]);
    mx_msg_list_free(&l);
}

static void test_branches(void **state) {
    (void)state;
    struct mx_db *db = open_db(NULL);
    struct mx_err err = {0};
    int64_t s = new_session(db, NULL);
    expect_path(db, s, 0, NULL);
    int64_t sys = append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_SYSTEM, "be brief");
    int64_t u1 = append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_USER, "what is 2+2?");
    int64_t a1 = append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_ASSISTANT, "5");
    expect_path(db, s, 3, (int64_t[]){sys, u1, a1});
    /* regenerate twice: siblings under the same user message */
    int64_t a2 = append(db, s, u1, MX_ROLE_ASSISTANT, "four");
    int64_t a3 = append(db, s, u1, MX_ROLE_ASSISTANT, "4");
    expect_path(db, s, 3, (int64_t[]){sys, u1, a3});
    struct mx_msg m;
    assert_int_equal(mx_db_msg_get(db, a2, &m, &err), 0);
    assert_int_equal(m.sibling_index, 2);
    assert_int_equal(m.sibling_count, 3); /* '2/3' */
    assert_int_equal(m.parent, u1);
    mx_msg_deinit(&m);
    struct mx_msg_list sib;
    int idx = 0;
    assert_int_equal(mx_db_msg_siblings(db, a3, &sib, &idx, &err), 0);
    assert_int_equal(sib.n, 3);
    assert_int_equal(idx, 3);
    assert_int_equal(sib.v[0].id, a1);
    assert_int_equal(sib.v[1].id, a2);
    assert_int_equal(sib.v[2].id, a3);
    mx_msg_list_free(&sib);
    /* continue on a3, then edit u1: a sibling of u1 under the system prompt */
    int64_t u2 = append(db, s, a3, MX_ROLE_USER, "and 3+3?");
    int64_t u1e = append(db, s, sys, MX_ROLE_USER, "what is 2+3?");
    int64_t a1e = append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_ASSISTANT, "5");
    expect_path(db, s, 3, (int64_t[]){sys, u1e, a1e});
    assert_int_equal(mx_db_msg_get(db, u1e, &m, &err), 0);
    assert_int_equal(m.sibling_index, 2);
    assert_int_equal(m.sibling_count, 2);
    mx_msg_deinit(&m);
    /* the user goes back to the first version of the question: the UI follows the newest
     * answers down that branch */
    int64_t leaf = 0;
    assert_int_equal(mx_db_msg_latest_leaf(db, u1, &leaf, &err), 0);
    assert_int_equal(leaf, u2);
    assert_int_equal(mx_db_set_leaf(db, s, leaf, &err), 0);
    expect_path(db, s, 4, (int64_t[]){sys, u1, a3, u2});
    struct mx_msg_list path;
    assert_int_equal(mx_db_active_path(db, s, &path, &err), 0);
    assert_int_equal(path.v[1].sibling_index, 1);
    assert_int_equal(path.v[1].sibling_count, 2);
    assert_int_equal(path.v[2].sibling_index, 3);
    assert_int_equal(path.v[2].sibling_count, 3);
    assert_int_equal(path.v[0].sibling_count, 1);
    mx_msg_list_free(&path);
    /* an explicit older answer */
    assert_int_equal(mx_db_set_leaf(db, s, a1, &err), 0);
    expect_path(db, s, 3, (int64_t[]){sys, u1, a1});
    /* appending continues from the active leaf */
    int64_t u3 = append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_USER, "no, 4");
    expect_path(db, s, 4, (int64_t[]){sys, u1, a1, u3});
    /* children of the root and of u1 */
    struct mx_msg_list ch;
    assert_int_equal(mx_db_msg_children(db, s, 0, &ch, &err), 0);
    assert_int_equal(ch.n, 1);
    assert_int_equal(ch.v[0].id, sys);
    mx_msg_list_free(&ch);
    assert_int_equal(mx_db_msg_children(db, s, u1, &ch, &err), 0);
    assert_int_equal(ch.n, 3);
    mx_msg_list_free(&ch);
    /* a parent or leaf from another session is refused */
    int64_t s2 = new_session(db, NULL);
    mx_err_clear(&err);
    assert_int_equal(mx_db_msg_append(db, s2, u1, MX_ROLE_USER, "x", 0, NULL, NULL, &err),
                     MX_EINVAL);
    mx_err_clear(&err);
    assert_int_equal(mx_db_set_leaf(db, s2, u1, &err), MX_EINVAL);
    mx_err_clear(&err);
    assert_int_equal(mx_db_msg_append(db, 9999, 0, MX_ROLE_USER, "x", 0, NULL, NULL, &err),
                     MX_ENOENT);
    assert_int_equal(mx_db_set_leaf(db, s2, 0, &err), 0);
    mx_db_close(db);
}

static void test_titles_list_find(void **state) {
    (void)state;
    struct mx_db *db = open_db(NULL);
    struct mx_err err = {0};
    int64_t s1 = new_session(db, NULL);
    append(db, s1, MX_DB_PARENT_LEAF, MX_ROLE_SYSTEM, "system text is not a title");
    append(db, s1, MX_DB_PARENT_LEAF, MX_ROLE_USER,
           "\n  Tell me\ta   story\x1b[31m about a dragon who collects teapots and worries "
           "about dust\nsecond line");
    append(db, s1, MX_DB_PARENT_LEAF, MX_ROLE_USER, "another prompt");
    struct mx_session ss;
    assert_int_equal(mx_db_session_get(db, s1, &ss, &err), 0);
    /* first line, spaces folded, ESC dropped, cut at 60 bytes + "..." */
    assert_string_equal(ss.title,
                        "Tell me a story[31m about a dragon who collects teapots and...");
    assert_int_equal(ss.n_messages, 3);
    assert_string_equal(ss.model_path, "/models/m.gguf");
    assert_string_equal(ss.template_name, "chatml");
    mx_session_deinit(&ss);
    /* a UTF-8 title is never cut inside a character */
    int64_t s2 = new_session(db, NULL);
    char u[200] = "x";
    for (int i = 0; i < 40; i++)
        strcat(u, "\xc3\xa9"); /* é: the 60-byte cut falls inside the 30th */
    append(db, s2, MX_DB_PARENT_LEAF, MX_ROLE_USER, u);
    assert_int_equal(mx_db_session_get(db, s2, &ss, &err), 0);
    assert_int_equal(strlen(ss.title), 59 + 3);
    assert_string_equal(ss.title + 57, "\xc3\xa9...");
    mx_session_deinit(&ss);
    int64_t s3 = new_session(db, "named");
    append(db, s3, MX_DB_PARENT_LEAF, MX_ROLE_USER, "does not rename");
    next_ms();
    /* s1 touched last -> first in the list */
    append(db, s1, MX_DB_PARENT_LEAF, MX_ROLE_ASSISTANT, "ok");
    struct mx_session_list l;
    assert_int_equal(mx_db_session_list(db, 0, &l, &err), 0);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.v[0].id, s1);
    assert_int_equal(l.v[1].id, s3);
    assert_int_equal(l.v[2].id, s2);
    assert_string_equal(l.v[1].title, "named");
    mx_session_list_free(&l);
    assert_int_equal(mx_db_session_list(db, 1, &l, &err), 0);
    assert_int_equal(l.n, 1);
    mx_session_list_free(&l);
    /* find by id, by title; ambiguity is an error naming the ids */
    int64_t id = 0;
    char key[32];
    snprintf(key, sizeof key, "%lld", (long long)s2);
    assert_int_equal(mx_db_session_find(db, key, &id, &err), 0);
    assert_int_equal(id, s2);
    assert_int_equal(mx_db_session_find(db, "named", &id, &err), 0);
    assert_int_equal(id, s3);
    assert_int_equal(mx_db_session_rename(db, s2, "named", &err), 0);
    assert_int_equal(mx_db_session_find(db, "named", &id, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "several sessions"));
    mx_err_clear(&err);
    assert_int_equal(mx_db_session_find(db, "nothing", &id, &err), MX_ENOENT);
    mx_err_clear(&err);
    assert_int_equal(mx_db_session_rename(db, 12345, "x", &err), MX_ENOENT);
    mx_err_clear(&err);
    assert_int_equal(mx_db_session_set_model(db, s2, "/m2.gguf", NULL, NULL, "{\"temp\":0}",
                                             &err), 0);
    assert_int_equal(mx_db_session_get(db, s2, &ss, &err), 0);
    assert_string_equal(ss.model_path, "/m2.gguf");
    assert_string_equal(ss.template_name, "chatml");
    assert_string_equal(ss.sampling, "{\"temp\":0}");
    mx_session_deinit(&ss);
    assert_int_equal(mx_db_session_set_model(db, s2, NULL, NULL, NULL, "not json", &err),
                     MX_EINVAL);
    mx_db_close(db);
}

/* ---- search, delete, export ---------------------------------------------------------------- */

static void test_search(void **state) {
    (void)state;
    struct mx_db *db = open_db(NULL);
    struct mx_err err = {0};
    int64_t s1 = new_session(db, NULL);
    int64_t m1 = append(db, s1, MX_DB_PARENT_LEAF, MX_ROLE_USER,
                        "The quick brown fox jumps over the lazy dog");
    int64_t s2 = new_session(db, NULL);
    int64_t m2 = append(db, s2, MX_DB_PARENT_LEAF, MX_ROLE_USER, "Quantum foxes, café au lait");
    struct mx_db_hit_list h;
    assert_int_equal(mx_db_search(db, "lazy", 0, &h, &err), 0);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.v[0].session, s1);
    assert_int_equal(h.v[0].message, m1);
    assert_non_null(strstr(h.v[0].snippet, "[lazy]"));
    mx_db_hit_list_free(&h);
    /* all words must match; case and accents folded */
    assert_int_equal(mx_db_search(db, "FOX dog", 0, &h, &err), 0);
    assert_int_equal(h.n, 1);
    mx_db_hit_list_free(&h);
    assert_int_equal(mx_db_search(db, "cafe", 0, &h, &err), 0);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.v[0].message, m2);
    mx_db_hit_list_free(&h);
    /* user text with FTS syntax is taken literally, never a syntax error */
    const char *odd[] = {"\"", "AND", "fox OR", "NEAR(", "a*", "-x", "col:fox", "'); DROP"};
    for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
        assert_int_equal(mx_db_search(db, odd[i], 0, &h, &err), 0);
        mx_db_hit_list_free(&h);
    }
    assert_int_equal(mx_db_search(db, "   ", 0, &h, &err), MX_EINVAL);
    /* streaming updates re-index: the new words are found, the replaced ones not */
    int64_t a;
    mx_err_clear(&err);
    assert_int_equal(mx_db_msg_begin(db, s1, MX_DB_PARENT_LEAF, MX_ROLE_ASSISTANT, &a, &err), 0);
    assert_int_equal(mx_db_msg_update(db, a, "zebra", 1, &err), 0);
    assert_int_equal(mx_db_msg_update(db, a, "giraffe", 1, &err), 0);
    assert_int_equal(mx_db_search(db, "zebra", 0, &h, &err), 0);
    assert_int_equal(h.n, 0);
    mx_db_hit_list_free(&h);
    assert_int_equal(mx_db_search(db, "giraffe", 0, &h, &err), 0);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.v[0].message, a);
    mx_db_hit_list_free(&h);
    assert_integrity(mx_db_sqlite(db));
    mx_db_close(db);
}

static void test_delete_cascades(void **state) {
    (void)state;
    struct mx_db *db = open_db(NULL);
    sqlite3 *h = mx_db_sqlite(db);
    struct mx_err err = {0};
    int64_t keep = new_session(db, NULL);
    append(db, keep, MX_DB_PARENT_LEAF, MX_ROLE_USER, "keep this unicorn");
    int64_t s = new_session(db, NULL);
    int64_t u = append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_USER, "delete this unicorn");
    int64_t a = append(db, s, u, MX_ROLE_ASSISTANT, "a");
    append(db, s, u, MX_ROLE_ASSISTANT, "b");
    append(db, s, a, MX_ROLE_USER, "c");
    int64_t img;
    assert_int_equal(mx_db_image_add(db, s, a, "/tmp/x.png", "{\"seed\": 42}", &img, &err), 0);
    assert_int_equal(mx_db_image_add(db, keep, 0, "/tmp/y.png", NULL, &img, &err), 0);
    int64_t n;
    assert_int_equal(mx_db_image_count(db, s, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(mx_db_session_delete(db, s, &err), 0);
    assert_int_equal(q_int(h, "SELECT count(*) FROM messages"), 1);
    assert_int_equal(q_int(h, "SELECT count(*) FROM images"), 1);
    assert_int_equal(mx_db_image_count(db, s, &n, &err), 0);
    assert_int_equal(n, 0);
    struct mx_db_hit_list hits;
    assert_int_equal(mx_db_search(db, "unicorn", 0, &hits, &err), 0);
    assert_int_equal(hits.n, 1);
    assert_int_equal(hits.v[0].session, keep);
    mx_db_hit_list_free(&hits);
    struct mx_session ss;
    assert_int_equal(mx_db_session_get(db, s, &ss, &err), MX_ENOENT);
    mx_err_clear(&err);
    assert_int_equal(mx_db_session_delete(db, s, &err), MX_ENOENT);
    assert_integrity(h);
    mx_db_close(db);
}

static void test_export_round_trip(void **state) {
    (void)state;
    struct mx_db *db = open_db(NULL);
    struct mx_err err = {0};
    int64_t s = new_session(db, "export \"me\"");
    const char *texts[] = {
        "You are terse.",
        "Quote \" backslash \\ newline\n tab\t unicode é 日本 emoji \xf0\x9f\x90\x89",
        "control \x01\x1b[2J bytes stay raw",
        "last",
    };
    enum mx_role roles[] = {MX_ROLE_SYSTEM, MX_ROLE_USER, MX_ROLE_ASSISTANT, MX_ROLE_TOOL};
    int64_t ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = append(db, s, MX_DB_PARENT_LEAF, roles[i], texts[i]);
    append(db, s, ids[1], MX_ROLE_ASSISTANT, "off-branch answer");
    assert_int_equal(mx_db_set_leaf(db, s, ids[3], &err), 0);
    char *js = NULL;
    assert_int_equal(mx_db_export_json(db, s, &js, &err), 0);
    json_error_t je;
    json_t *j = json_loads(js, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "id")), s);
    assert_string_equal(json_string_value(json_object_get(j, "title")), "export \"me\"");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "/models/m.gguf");
    assert_true(json_real_value(json_object_get(json_object_get(j, "sampling"), "temp")) == 0.7);
    json_t *msgs = json_object_get(j, "messages");
    assert_int_equal(json_array_size(msgs), 4);
    for (int i = 0; i < 4; i++) {
        json_t *m = json_array_get(msgs, (size_t)i);
        assert_int_equal(json_integer_value(json_object_get(m, "id")), ids[i]);
        assert_string_equal(json_string_value(json_object_get(m, "role")),
                            mx_role_name(roles[i]));
        assert_string_equal(json_string_value(json_object_get(m, "content")), texts[i]);
        assert_string_equal(json_string_value(json_object_get(m, "state")), "complete");
    }
    assert_int_equal(json_integer_value(json_object_get(json_array_get(msgs, 2),
                                                        "sibling_count")), 2);
    json_decref(j);
    free(js);
    /* invalid UTF-8 from a model still gives parseable JSON */
    int64_t s2 = new_session(db, NULL);
    append(db, s2, MX_DB_PARENT_LEAF, MX_ROLE_ASSISTANT, "bad \xff\xc3( \xed\xa0\x80 end");
    assert_int_equal(mx_db_export_json(db, s2, &js, &err), 0);
    j = json_loads(js, 0, &je);
    assert_non_null(j);
    const char *c = json_string_value(json_object_get(json_array_get(json_object_get(j,
                                                                     "messages"), 0), "content"));
    assert_string_equal(c, "bad \xef\xbf\xbd\xef\xbf\xbd( \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd end");
    json_decref(j);
    free(js);
    /* Markdown: headings per role, branch position, the raw text */
    char *md = NULL;
    assert_int_equal(mx_db_export_md(db, s, &md, &err), 0);
    assert_true(!strncmp(md, "# export \"me\"\n", 14));
    assert_non_null(strstr(md, "\n## System\n\nYou are terse.\n"));
    assert_non_null(strstr(md, "\n## Assistant (1/2)\n\ncontrol \x01\x1b[2J bytes"));
    assert_non_null(strstr(md, "\n## Tool\n\nlast\n"));
    assert_null(strstr(md, "off-branch"));
    free(md);
    mx_err_clear(&err);
    assert_int_equal(mx_db_export_json(db, 777, &js, &err), MX_ENOENT);
    mx_db_close(db);
}

/* ---- KV snapshots -------------------------------------------------------------------------- */

static void test_xxh64_vectors(void **state) {
    (void)state;
    /* reference values from xxhsum -H64 (xxHash 0.8) */
    assert_true(mx_xxh64("", 0, 0) == 0xef46db3751d8e999ull);
    assert_true(mx_xxh64("abc", 3, 0) == 0x44bc2cf5ad770999ull);
    uint8_t b[1000];
    for (int i = 0; i < 1000; i++)
        b[i] = (uint8_t)(i * 7 + 3);
    assert_true(mx_xxh64(b, 1000, 0) == 0x5f235fa033f1a3fbull);
    assert_true(mx_xxh64(b, 37, 0) == 0xe32ef63802f5a3fdull);
    /* streaming in random pieces equals one shot */
    uint64_t seed = 7;
    for (int t = 0; t < 200; t++) {
        struct mx_xxh64 s;
        mx_xxh64_init(&s, 0);
        size_t off = 0;
        while (off < 1000) {
            size_t k = mx_test_rand(&seed) % 70;
            if (k > 1000 - off)
                k = 1000 - off;
            mx_xxh64_update(&s, b + off, k);
            off += k;
        }
        assert_true(mx_xxh64_digest(&s) == 0x5f235fa033f1a3fbull);
    }
}

static void make_snapshot(const char *path, struct mx_kvsnap_info *in, int32_t *tok,
                          uint8_t *payload) {
    *in = (struct mx_kvsnap_info){.model_hash = 0x1122334455667788ull, .n_ctx = 64,
                                  .kv_type = 1, .n_layer = 2, .n_tokens = 10,
                                  .payload_size = 300};
    for (int i = 0; i < 10; i++)
        tok[i] = i * 1000 - 3;
    for (int i = 0; i < 300; i++)
        payload[i] = (uint8_t)(i * 13 + 1);
    struct mx_err err = {0};
    if (mx_kvsnap_save(path, in, tok, payload, &err) != 0)
        fail_msg("save: %s", err.msg);
}

static int try_load(const char *path, uint64_t hash) {
    struct mx_kvsnap_info got;
    int32_t *t;
    void *p;
    struct mx_err err = {0};
    int rc = mx_kvsnap_load(path, hash, 1 << 20, &got, &t, &p, &err);
    if (rc == 0) {
        free(t);
        free(p);
    } else {
        assert_true(strlen(err.msg) > 0);
        assert_null(t);
        assert_null(p);
    }
    return rc;
}

static void test_kvsnap_round_trip(void **state) {
    struct fx *f = *state;
    char path[300], dir[300];
    struct mx_err err = {0};
    assert_int_equal(mx_kvsnap_path(path, sizeof path, 42, &err), 0);
    assert_int_equal(mx_kvsnap_dir(dir, sizeof dir, &err), 0);
    char want[300];
    snprintf(want, sizeof want, "%s/mixel/kv/42.kv", f->data);
    assert_string_equal(path, want);
    struct mx_kvsnap_info in, got;
    int32_t tok[10];
    uint8_t payload[300];
    make_snapshot(path, &in, tok, payload);
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0600);
    assert_int_equal(sb.st_size, 64 + 40 + 300);
    assert_int_equal(stat(dir, &sb), 0);
    assert_int_equal(sb.st_mode & 0777, 0700);
    int32_t *t;
    void *p;
    assert_int_equal(mx_kvsnap_load(path, in.model_hash, 1 << 20, &got, &t, &p, &err), 0);
    assert_true(got.model_hash == in.model_hash && got.n_ctx == in.n_ctx &&
                got.kv_type == in.kv_type && got.n_layer == in.n_layer &&
                got.n_tokens == in.n_tokens && got.payload_size == in.payload_size);
    assert_memory_equal(t, tok, sizeof tok);
    assert_memory_equal(p, payload, sizeof payload);
    assert_int_equal(mx_kvsnap_common_prefix(t, 10, tok, 5), 5);
    free(t);
    free(p);
    /* streaming read in pieces */
    struct mx_kvsnap_reader *r;
    assert_int_equal(mx_kvsnap_open(&r, path, in.model_hash, &got, &err), 0);
    assert_int_equal(mx_kvsnap_tokens(r)[9], 8997);
    uint8_t buf[300];
    assert_int_equal(mx_kvsnap_read(r, buf, 100, &err), 0);
    assert_int_equal(mx_kvsnap_read_end(r, &err), MX_EINVAL); /* unread bytes */
    assert_int_equal(mx_kvsnap_read(r, buf + 100, 200, &err), 0);
    assert_int_equal(mx_kvsnap_read(r, buf, 1, &err), MX_EINVAL);
    mx_err_clear(&err);
    assert_int_equal(mx_kvsnap_read_end(r, &err), 0);
    assert_memory_equal(buf, payload, 300);
    mx_kvsnap_close(r);
    /* payload over the caller's limit is refused before allocating */
    assert_int_equal(mx_kvsnap_load(path, in.model_hash, 299, &got, &t, &p, &err), MX_ERANGE);
    /* a failed write leaves the old snapshot and no temp file */
    struct mx_kvsnap_writer *w;
    struct mx_kvsnap_info in2 = in;
    in2.payload_size = 1000;
    mx_err_clear(&err);
    assert_int_equal(mx_kvsnap_write_begin(&w, path, &in2, tok, &err), 0);
    assert_int_equal(mx_kvsnap_write(w, payload, 300, &err), 0);
    assert_int_equal(mx_kvsnap_write_commit(w, &err), MX_EINVAL); /* 300 of 1000 bytes */
    mx_err_clear(&err);
    assert_int_equal(mx_kvsnap_write_begin(&w, path, &in2, tok, &err), 0);
    assert_int_equal(mx_kvsnap_write(w, payload, 300, &err), 0);
    mx_kvsnap_write_abort(w);
    assert_int_equal(try_load(path, in.model_hash), 0);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
    assert_int_equal(system(cmd), 0);
    /* overwriting replaces atomically */
    in2.payload_size = 3;
    mx_err_clear(&err);
    assert_int_equal(mx_kvsnap_save(path, &in2, tok, "abc", &err), 0);
    assert_int_equal(mx_kvsnap_load(path, in.model_hash, 1 << 20, &got, &t, &p, &err), 0);
    assert_int_equal(got.payload_size, 3);
    assert_memory_equal(p, "abc", 3);
    free(t);
    free(p);
    /* an empty snapshot is valid */
    in2.n_tokens = 0;
    in2.payload_size = 0;
    assert_int_equal(mx_kvsnap_save(path, &in2, NULL, NULL, &err), 0);
    assert_int_equal(try_load(path, in.model_hash), 0);
}

static void test_kvsnap_corruption(void **state) {
    struct fx *f = *state;
    char path[300], bad[300];
    snprintf(path, sizeof path, "%s/good.kv", f->dir);
    snprintf(bad, sizeof bad, "%s/bad.kv", f->dir);
    struct mx_kvsnap_info in;
    int32_t tok[10];
    uint8_t payload[300];
    make_snapshot(path, &in, tok, payload);
    FILE *fp = fopen(path, "rb");
    uint8_t file[404];
    assert_int_equal(fread(file, 1, sizeof file, fp), sizeof file);
    assert_int_equal(fgetc(fp), EOF);
    fclose(fp);
    assert_int_equal(try_load(path, in.model_hash), 0);
    /* wrong model */
    assert_int_equal(try_load(path, in.model_hash ^ 1), MX_EINVAL);
    /* truncated at every length, and one byte too long */
    for (size_t n = 0; n <= sizeof file; n++) {
        fp = fopen(bad, "wb");
        fwrite(file, 1, n, fp);
        if (n == sizeof file)
            fputc(0, fp);
        fclose(fp);
        int rc = try_load(bad, in.model_hash);
        if (rc != MX_EFORMAT)
            fail_msg("truncated to %zu bytes: got %d", n, rc);
    }
    /* every single-bit flip anywhere (header, tokens, payload, checksum) is caught */
    for (size_t i = 0; i < sizeof file; i++) {
        for (int bit = 0; bit < 8; bit += 7) {
            file[i] ^= (uint8_t)(1u << bit);
            fp = fopen(bad, "wb");
            fwrite(file, 1, sizeof file, fp);
            fclose(fp);
            file[i] ^= (uint8_t)(1u << bit);
            int rc = try_load(bad, in.model_hash);
            if (rc == 0)
                fail_msg("flip of bit %d in byte %zu not detected", bit, i);
        }
    }
    /* a newer format version is named as such */
    file[8] = 2;
    fp = fopen(bad, "wb");
    fwrite(file, 1, sizeof file, fp);
    fclose(fp);
    file[8] = 1;
    assert_int_equal(try_load(bad, in.model_hash), MX_EUNSUP);
    /* a header announcing a giant token count or payload never allocates it */
    uint8_t h2[sizeof file];
    memcpy(h2, file, sizeof file);
    memset(h2 + 40, 0xff, 8);
    fp = fopen(bad, "wb");
    fwrite(h2, 1, sizeof h2, fp);
    fclose(fp);
    assert_int_equal(try_load(bad, in.model_hash), MX_EFORMAT);
    memcpy(h2, file, sizeof file);
    memset(h2 + 48, 0xff, 8);
    fp = fopen(bad, "wb");
    fwrite(h2, 1, sizeof h2, fp);
    fclose(fp);
    assert_int_equal(try_load(bad, in.model_hash), MX_EFORMAT);
    /* not a file */
    assert_int_equal(try_load(f->dir, in.model_hash), MX_EFORMAT);
    snprintf(bad, sizeof bad, "%s/missing.kv", f->dir);
    assert_int_equal(try_load(bad, in.model_hash), MX_ENOENT);
}

static void test_kvsnap_lru_cap(void **state) {
    struct fx *f = *state;
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/kv", f->dir);
    struct mx_kvsnap_info in = {.n_ctx = 8, .payload_size = 936}; /* 1000-byte files */
    uint8_t payload[936] = {0};
    struct mx_err err = {0};
    /* files 1..5, file i last used at time 1000*i; 3 is then read (used now) */
    for (int i = 1; i <= 5; i++) {
        snprintf(p, sizeof p, "%s/%d.kv", dir, i);
        assert_int_equal(mx_kvsnap_save(p, &in, NULL, payload, &err), 0);
        struct timespec ts[2] = {{1000 * i, 0}, {1000 * i, 0}};
        assert_int_equal(utimensat(AT_FDCWD, p, ts, 0), 0);
    }
    snprintf(p, sizeof p, "%s/3.kv", dir);
    assert_int_equal(try_load(p, 0), 0);
    /* a stale temp of a crashed writer, and an unrelated file that must survive */
    snprintf(p, sizeof p, "%s/9.kv.tmp.1234", dir);
    FILE *fp = fopen(p, "w");
    fputs("partial", fp);
    fclose(fp);
    struct timespec old[2] = {{1, 0}, {1, 0}};
    utimensat(AT_FDCWD, p, old, 0);
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    fp = fopen(p, "w");
    fputs("x", fp);
    fclose(fp);
    /* cap 2500 bytes: keep "1.kv" (the one being resumed) whatever its age */
    char keep[400];
    snprintf(keep, sizeof keep, "%s/1.kv", dir);
    uint64_t freed = 0;
    assert_int_equal(mx_kvsnap_evict(dir, 2500, keep, &freed, &err), 0);
    assert_int_equal(freed, 3000 + 7);
    const char *expect[] = {"1.kv", "3.kv", "notes.txt"};
    snprintf(p, sizeof p, "ls '%s' | tr '\\n' ' ' > '%s/ls.out'", dir, f->dir);
    assert_int_equal(system(p), 0);
    snprintf(p, sizeof p, "%s/ls.out", f->dir);
    fp = fopen(p, "r");
    char line[200] = "";
    assert_non_null(fgets(line, sizeof line, fp));
    fclose(fp);
    char want[200] = "";
    for (int i = 0; i < 3; i++) {
        strcat(want, expect[i]);
        strcat(want, " ");
    }
    assert_string_equal(line, want);
    /* under the cap: nothing more goes; a missing folder is fine */
    assert_int_equal(mx_kvsnap_evict(dir, 2500, NULL, &freed, &err), 0);
    assert_int_equal(freed, 0);
    snprintf(p, sizeof p, "%s/nope", f->dir);
    assert_int_equal(mx_kvsnap_evict(p, 0, NULL, &freed, &err), 0);
}

static void test_model_hash(void **state) {
    struct fx *f = *state;
    char p[300];
    snprintf(p, sizeof p, "%s/model.gguf", f->dir);
    /* 5 MiB: head, samples and tail are distinct ranges */
    size_t n = 5u << 20;
    uint8_t *b = malloc(n);
    uint64_t seed = 3;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)mx_test_rand(&seed);
    struct mx_err err = {0};
    uint64_t h[6];
    for (int v = 0; v < 6; v++) {
        FILE *fp = fopen(p, "wb");
        size_t len = n;
        if (v == 1)
            b[10] ^= 1;                  /* header byte */
        if (v == 2)
            b[n / 17 * 8 + 5] ^= 1;      /* inside the 8th sample, far from head and tail */
        if (v == 3)
            b[n - 3] ^= 1;               /* last MiB */
        if (v >= 4)
            len = n - 1;                 /* size (v5: the same file again) */
        fwrite(b, 1, len, fp);
        fclose(fp);
        assert_int_equal(mx_kvsnap_model_hash(p, &h[v], &err), 0);
    }
    /* v5 = same content as v4 written again: stable */
    assert_true(h[4] == h[5]);
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            assert_true(h[i] != h[j]);
    /* tiny file */
    FILE *fp = fopen(p, "wb");
    fputs("GGUF", fp);
    fclose(fp);
    assert_int_equal(mx_kvsnap_model_hash(p, &h[0], &err), 0);
    uint8_t expect[12] = {4, 0, 0, 0, 0, 0, 0, 0, 'G', 'G', 'U', 'F'};
    /* size, then the head (the whole file), 16 samples at offset 0 (size / 17 == 0: the whole
     * file each), the tail (the whole file) */
    struct mx_xxh64 s;
    mx_xxh64_init(&s, 0);
    mx_xxh64_update(&s, expect, 12);
    for (int i = 0; i < 17; i++)
        mx_xxh64_update(&s, "GGUF", 4);
    assert_true(h[0] == mx_xxh64_digest(&s));
    char hex[17];
    mx_kvsnap_hash_hex(0xabcull, hex);
    assert_string_equal(hex, "0000000000000abc");
    snprintf(p, sizeof p, "%s/none.gguf", f->dir);
    assert_int_equal(mx_kvsnap_model_hash(p, &h[0], &err), MX_ENOENT);
    free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_schema_created_with_modes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_from_v0_and_foreign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_visible_to_second_connection, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_locked_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_folder, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_full_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_branches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_titles_list_find, setup, teardown),
        cmocka_unit_test_setup_teardown(test_search, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_cascades, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_round_trip, setup, teardown),
        cmocka_unit_test(test_xxh64_vectors),
        cmocka_unit_test_setup_teardown(test_kvsnap_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kvsnap_corruption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kvsnap_lru_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_hash, setup, teardown),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
