/* db.c - the history database (see db.h): opening with a read-only fallback, the versioned
 * schema and its migrations, sessions, messages as a tree, images, full-text search.
 *
 * Workload: a few writes a second at most (a user prompt, an answer's periodic update), reads of
 * one conversation path (tens to thousands of messages) when a session is resumed or shown. So
 * every write is its own short BEGIN IMMEDIATE transaction with synchronous=FULL: durability over
 * throughput. Statements are prepared per call; they are microseconds next to an fsync.
 */
#include "history/db_int.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base/util.h"
#include "history/paths.h"

/* ---- schema -------------------------------------------------------------------------------- */

/* One migration step: applying steps[v-1] takes a file from user_version v-1 to v. Steps are
 * append-only: a released step is never edited, a change is a new step. */
struct migration {
    int version;
    const char *name;
    const char *sql;
};

static const struct migration steps[] = {
    {1, "initial schema",
     "CREATE TABLE migrations(version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
     "  applied_ms INTEGER NOT NULL);"
     "CREATE TABLE sessions(id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '',"
     "  model_path TEXT NOT NULL DEFAULT '', model_hash TEXT NOT NULL DEFAULT '',"
     "  template TEXT NOT NULL DEFAULT '', sampling TEXT NOT NULL DEFAULT '{}',"
     "  active_leaf INTEGER NOT NULL DEFAULT 0,"
     "  created INTEGER NOT NULL, updated INTEGER NOT NULL);"
     "CREATE INDEX sessions_updated ON sessions(updated);"
     "CREATE INDEX sessions_title ON sessions(title);"
     /* parent < id always (a parent exists before its child), which bounds every walk up. */
     "CREATE TABLE messages(id INTEGER PRIMARY KEY,"
     "  session INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
     "  parent INTEGER REFERENCES messages(id) ON DELETE CASCADE,"
     "  role TEXT NOT NULL CHECK(role IN ('system','user','assistant','tool')),"
     "  content TEXT NOT NULL DEFAULT '', n_tokens INTEGER NOT NULL DEFAULT 0,"
     "  timings TEXT NOT NULL DEFAULT '{}',"
     "  state TEXT NOT NULL DEFAULT 'complete'"
     "    CHECK(state IN ('complete','partial','streaming')),"
     "  created INTEGER NOT NULL, CHECK(parent IS NULL OR parent < id));"
     "CREATE INDEX messages_tree ON messages(session, parent, id);"
     /* the foreign-key cascade looks children up by parent alone */
     "CREATE INDEX messages_parent ON messages(parent);"
     "CREATE TABLE images(id INTEGER PRIMARY KEY,"
     "  session INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,"
     "  message INTEGER REFERENCES messages(id) ON DELETE SET NULL,"
     "  path TEXT NOT NULL, params TEXT NOT NULL DEFAULT '{}', created INTEGER NOT NULL);"
     "CREATE INDEX images_session ON images(session);"
     "CREATE INDEX images_message ON images(message);"
     /* External-content FTS5: the text lives once, in messages; triggers keep the index. */
     "CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages',"
     "  content_rowid='id', tokenize='unicode61 remove_diacritics 2');"
     "CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN"
     "  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;"
     "CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN"
     "  INSERT INTO messages_fts(messages_fts, rowid, content)"
     "    VALUES ('delete', old.id, old.content); END;"
     "CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN"
     "  INSERT INTO messages_fts(messages_fts, rowid, content)"
     "    VALUES ('delete', old.id, old.content);"
     "  INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END;"},
    /* an assistant's tool calls (JSON array of {"id","name","arguments"}, '' none) and the
     * call a tool message answers ('' none): what the chat template needs to replay them */
    {2, "tool calls",
     "ALTER TABLE messages ADD COLUMN tool_calls TEXT NOT NULL DEFAULT '';"
     "ALTER TABLE messages ADD COLUMN tool_call_id TEXT NOT NULL DEFAULT '';"},
};

_Static_assert(sizeof steps / sizeof steps[0] == MX_DB_SCHEMA_VERSION,
               "one migration step per schema version");

/* ---- helpers ------------------------------------------------------------------------------- */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *xstrdup(const char *s) {
    size_t n = strlen(s ? s : "") + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s ? s : "", n);
    return d;
}

static const char *states[] = {"complete", "partial", "streaming"};

const char *mx_msg_state_name(enum mx_msg_state s) {
    return (unsigned)s < 3 ? states[s] : "?";
}

static enum mx_msg_state state_parse(const char *s) {
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, states[i]))
            return (enum mx_msg_state)i;
    return MX_MSG_PARTIAL;
}

int mx_db__fail(struct mx_db *db, int rc, const char *what, struct mx_err *err) {
    int sys = db && db->h ? sqlite3_system_errno(db->h) : 0;
    int code;
    switch (rc & 0xff) {
    case SQLITE_FULL: code = MX_EFULL; break;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH: code = MX_EPERM; break;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: code = MX_EBUSY; break;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: code = MX_EFORMAT; break;
    case SQLITE_NOMEM: code = MX_ENOMEM; break;
    case SQLITE_CONSTRAINT:
    case SQLITE_MISMATCH: code = MX_EINVAL; break;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
        code = sys == ENOSPC || sys == EDQUOT ? MX_EFULL
             : sys == EACCES || sys == EROFS || sys == EPERM ? MX_EPERM
             : (rc & 0xff) == SQLITE_CANTOPEN && sys == ENOENT ? MX_ENOENT : MX_EIO;
        break;
    default: code = MX_EDB; break;
    }
    const char *msg = db && db->h ? sqlite3_errmsg(db->h) : sqlite3_errstr(rc);
    return mx_err_set(err, code, "%s: %s: %s (sqlite %d)%s%s", db ? db->path : "history", what,
                      msg, rc, sys ? " / " : "", sys ? strerror(sys) : "");
}

int mx_db__prepare(struct mx_db *db, const char *sql, sqlite3_stmt **st, struct mx_err *err) {
    int rc = sqlite3_prepare_v2(db->h, sql, -1, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return mx_db__fail(db, rc, "prepare", err);
    }
    return 0;
}

static int exec(struct mx_db *db, const char *sql, const char *what, struct mx_err *err) {
    int rc = sqlite3_exec(db->h, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? 0 : mx_db__fail(db, rc, what, err);
}

/* Starts a write transaction; MX_EPERM on a read-only connection. */
static int tx_begin(struct mx_db *db, struct mx_err *err) {
    if (db->ro)
        return mx_err_set(err, MX_EPERM, "%s: history is read-only (%s)", db->path,
                          db->ro_reason);
    return exec(db, "BEGIN IMMEDIATE", "begin write", err);
}

/* Leaves no transaction open, whatever state a failure left. */
static void tx_rollback(struct mx_db *db) {
    if (!sqlite3_get_autocommit(db->h))
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

static int tx_commit(struct mx_db *db, struct mx_err *err) {
    int rc = exec(db, "COMMIT", "commit", err);
    if (rc < 0)
        tx_rollback(db);
    return rc;
}

/* Runs a prepared write statement to completion and finalizes it. */
static int step_done(struct mx_db *db, sqlite3_stmt *st, const char *what, struct mx_err *err) {
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? 0 : mx_db__fail(db, rc, what, err);
    sqlite3_finalize(st);
    return ret;
}

static void bind_id_or_null(sqlite3_stmt *st, int i, int64_t id) {
    if (id > 0)
        sqlite3_bind_int64(st, i, id);
    else
        sqlite3_bind_null(st, i);
}

/* JSON text check for sampling/timings/params: NULL ok (default used), else an object. */
static int check_json_object(const char *s, const char *what, struct mx_err *err) {
    if (!s)
        return 0;
    json_error_t je;
    json_t *j = json_loads(s, JSON_DECODE_ANY, &je);
    bool ok = j && json_is_object(j);
    json_decref(j);
    if (!ok)
        return mx_err_set(err, MX_EINVAL, "%s: not a JSON object (%s)", what,
                          j ? "another JSON type" : je.text);
    return 0;
}

char *mx_db__utf8_clean(const char *s) {
    size_t n = strlen(s);
    size_t cap;
    if (!mx_mul_size(n, 3, &cap))
        return NULL;
    char *o = malloc(cap + 1), *p = o;
    if (!o)
        return NULL;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xf8) == 0xf0 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (size_t k = 1; ok && k < len; k++) {
            ok = (u[i + k] & 0xc0) == 0x80;
            cp = cp << 6 | (u[i + k] & 0x3f);
        }
        /* overlong forms, surrogates and > U+10FFFF are invalid too */
        if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) ||
                   (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
                   (cp >= 0xd800 && cp <= 0xdfff)))
            ok = false;
        if (ok) {
            memcpy(p, s + i, len);
            p += len;
            i += len;
        } else {
            memcpy(p, "\xef\xbf\xbd", 3);
            p += 3;
            i++;
        }
    }
    *p = '\0';
    return o;
}

/* ---- open ---------------------------------------------------------------------------------- */

/* Busy handler: polls the lock every 0.5-2.5 ms (jittered) until busy_ms have passed. SQLite's
 * own busy_timeout backs off to 100 ms sleeps, and a writer polling that slowly starves behind
 * another process committing every few ms (seen with 3 concurrent writers: 5 s timeouts). */
static int busy_wait(void *ud, int count) {
    struct mx_db *db = ud;
    double now = mx_time_s();
    if (count == 0)
        db->busy_start = now;
    if ((now - db->busy_start) * 1000.0 >= db->busy_ms)
        return 0;
    db->busy_rng = db->busy_rng * 6364136223846793005ull + 1442695040888963407ull;
    struct timespec ts = {0, 500000 + (long)((db->busy_rng >> 33) % 2000000)};
    nanosleep(&ts, NULL);
    return 1;
}

static void set_busy(struct mx_db *db, int busy_ms) {
    db->busy_ms = busy_ms;
    db->busy_rng = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull + (uint64_t)(uintptr_t)db;
    sqlite3_busy_handler(db->h, busy_wait, db);
}

int mx_db_default_path(char *buf, size_t size, struct mx_err *err) {
    char dir[4000];
    int rc = mx_path_data_dir(dir, sizeof dir, err);
    if (rc < 0)
        return rc;
    int n = snprintf(buf, size, "%s/history.db", dir);
    if (n < 0 || (size_t)n >= size)
        return mx_err_set(err, MX_ERANGE, "%s: path too long", dir);
    return 0;
}

/* SQLite URI for path with immutable=1: for a read-only folder where no -shm can be made. */
static int immutable_uri(const char *path, char *buf, size_t size) {
    size_t o = 0;
    const char *pre = "file:";
    for (const char *q = pre; *q && o + 1 < size; q++)
        buf[o++] = *q;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if (o + 4 >= size)
            return MX_ERANGE;
        if (*p == '?' || *p == '#' || *p == '%' || *p < 0x20)
            o += (size_t)snprintf(buf + o, size - o, "%%%02X", *p);
        else
            buf[o++] = (char)*p;
    }
    int n = snprintf(buf + o, size - o, "?immutable=1");
    return n < 0 || (size_t)n >= size - o ? MX_ERANGE : 0;
}

static int user_version(struct mx_db *db, int *v, struct mx_err *err) {
    sqlite3_stmt *st;
    int rc = mx_db__prepare(db, "PRAGMA user_version", &st, err);
    if (rc < 0)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *v = sqlite3_column_int(st, 0);
        rc = 0;
    } else {
        rc = mx_db__fail(db, rc, "read schema version", err);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Brings the schema to MX_DB_SCHEMA_VERSION inside one write transaction (all or nothing), so a
 * crash mid-migration leaves the old version intact. The version is re-read under the lock:
 * another process may have migrated meanwhile. */
static int migrate(struct mx_db *db, struct mx_err *err) {
    int v, rc = exec(db, "BEGIN IMMEDIATE", "lock for schema upgrade", err);
    if (rc < 0)
        return rc;
    rc = user_version(db, &v, err);
    if (rc < 0)
        goto fail;
    if (v == 0) {
        /* version 0 must mean an empty file, not someone else's database */
        sqlite3_stmt *st;
        rc = mx_db__prepare(db, "SELECT count(*) FROM sqlite_master", &st, err);
        if (rc < 0)
            goto fail;
        int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
        sqlite3_finalize(st);
        if (n != 0) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: not a mixel history database (%d foreign "
                            "tables, schema version 0)", db->path, n);
            goto fail;
        }
    }
    for (; v < MX_DB_SCHEMA_VERSION; v++) {
        const struct migration *m = &steps[v];
        rc = exec(db, m->sql, m->name, err);
        if (rc < 0)
            goto fail;
        char sql[160];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", m->version);
        rc = exec(db, sql, "set schema version", err);
        if (rc < 0)
            goto fail;
        sqlite3_stmt *st;
        rc = mx_db__prepare(db, "INSERT INTO migrations(version, name, applied_ms) "
                            "VALUES (?, ?, ?)", &st, err);
        if (rc < 0)
            goto fail;
        sqlite3_bind_int(st, 1, m->version);
        sqlite3_bind_text(st, 2, m->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, now_ms());
        rc = step_done(db, st, "record migration", err);
        if (rc < 0)
            goto fail;
    }
    return tx_commit(db, err);
fail:
    tx_rollback(db);
    return rc;
}

/* Opens path read-only (plain, then immutable when no -shm can be created beside it) and checks
 * that the schema is readable. */
static int open_readonly(struct mx_db *db, struct mx_err *err) {
    int rc = sqlite3_open_v2(db->path, &db->h, SQLITE_OPEN_READONLY, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(db->h, 1);
        rc = sqlite3_exec(db->h, "SELECT count(*) FROM sessions", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK && access(db->path, R_OK) == 0) {
        /* WAL needs a -shm file; a read-only folder without one can only be read as immutable,
         * which is safe there because nobody can write the folder either. */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", db->path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        if (access(slash ? dir : ".", W_OK) != 0) {
            char uri[8300];
            if (immutable_uri(db->path, uri, sizeof uri) == 0) {
                sqlite3_close(db->h);
                db->h = NULL;
                rc = sqlite3_open_v2(uri, &db->h, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
                if (rc == SQLITE_OK)
                    rc = sqlite3_exec(db->h, "SELECT count(*) FROM sessions", NULL, NULL, NULL);
            }
        }
    }
    if (rc != SQLITE_OK)
        return mx_db__fail(db, rc, "open read-only", err);
    db->ro = true;
    return 0;
}

/* Makes sure a new database file is born 0600: SQLite would create it 0644 & ~umask, and its
 * -wal/-shm files copy the main file's mode. An existing file with group/other bits is
 * tightened when we own it. */
static int prepare_file(const char *path, struct mx_err *err) {
    int fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && (st.st_mode & 077) && st.st_uid == geteuid())
            chmod(path, st.st_mode & 0700);
        return 0;
    }
    int e = errno;
    return mx_err_set(err, e == EACCES || e == EROFS || e == EPERM ? MX_EPERM
                      : e == ENOSPC || e == EDQUOT ? MX_EFULL : MX_EIO,
                      "%s: cannot create: %s", path, strerror(e));
}

static void set_ro(struct mx_db *db, const char *fmt, const char *detail) {
    snprintf(db->ro_reason, sizeof db->ro_reason, fmt, detail);
}

/* The read-write path: open, WAL, sync level, schema upgrade. Leaves db->h open on success; a
 * file SQLite could only open read-only, or a newer schema, sets db->ro with a reason. */
static int open_rw(struct mx_db *db, int busy, struct mx_err *err) {
    int rc = sqlite3_open_v2(db->path, &db->h, SQLITE_OPEN_READWRITE, NULL);
    if (rc != SQLITE_OK)
        return mx_db__fail(db, rc, "open", err);
    sqlite3_extended_result_codes(db->h, 1);
    set_busy(db, busy);
    if (sqlite3_db_readonly(db->h, "main") == 1)
        return mx_err_set(err, MX_EPERM, "%s: the database file is read-only", db->path);
    /* WAL: readers never wait for the writer, and a kill mid-commit leaves the database as of
     * the last complete commit. FULL syncs the WAL at every commit: a message an append
     * returned for survives a power cut too. */
    sqlite3_stmt *st;
    if ((rc = mx_db__prepare(db, "PRAGMA journal_mode = WAL", &st, err)) < 0)
        return rc;
    int src = sqlite3_step(st);
    bool wal = src == SQLITE_ROW &&
               !sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    if (!wal)
        return src == SQLITE_ROW ? mx_err_set(err, MX_EBUSY, "%s: cannot switch to WAL mode "
                                              "(another process holds it)", db->path)
                                 : mx_db__fail(db, src, "switch to WAL mode", err);
    if ((rc = exec(db, "PRAGMA synchronous = FULL", "set synchronous", err)) < 0)
        return rc;
    int v;
    if ((rc = user_version(db, &v, err)) < 0)
        return rc;
    if (v > MX_DB_SCHEMA_VERSION) {
        char d[64];
        snprintf(d, sizeof d, "%d > %d", v, MX_DB_SCHEMA_VERSION);
        db->ro = true;
        set_ro(db, "written by a newer mixel (schema %s)", d);
        return 0;
    }
    if (v < MX_DB_SCHEMA_VERSION)
        return migrate(db, err);
    return 0;
}

int mx_db_open(struct mx_db **out, const struct mx_db_opts *opts, struct mx_err *err) {
    struct mx_db_opts o = opts ? *opts : (struct mx_db_opts){0};
    *out = NULL;
    struct mx_db *db = calloc(1, sizeof *db);
    if (!db)
        return mx_err_set(err, MX_ENOMEM, "history: out of memory");
    int rc;
    if (o.path) {
        if (strlen(o.path) >= sizeof db->path) {
            rc = mx_err_set(err, MX_ERANGE, "history: path too long");
            goto fail;
        }
        strcpy(db->path, o.path);
    } else if ((rc = mx_db_default_path(db->path, sizeof db->path, err)) < 0) {
        goto fail;
    }
    int busy = o.busy_ms > 0 ? o.busy_ms : 3000;

    struct mx_err werr = {0};
    if (o.readonly) {
        snprintf(werr.msg, sizeof werr.msg, "opened read-only on request");
    } else {
        /* the folder (0700) and the file (0600), then the read-write connection */
        char dir[4096];
        strcpy(dir, db->path);
        char *slash = strrchr(dir, '/');
        rc = 0;
        if (slash && slash != dir) {
            *slash = '\0';
            rc = mx_mkdir_p(dir, &werr);
        }
        if (rc == 0)
            rc = prepare_file(db->path, &werr);
        if (rc == 0)
            rc = open_rw(db, busy, &werr);
        if (rc == 0)
            goto done;
        /* a read-only folder or file, or another writer holding the lock: read what is there
         * when there is something to read; anything else is an error */
        if (db->h) {
            sqlite3_close_v2(db->h);
            db->h = NULL;
        }
        db->ro = false;
        if ((rc != MX_EPERM && rc != MX_EBUSY) || access(db->path, R_OK) != 0)
            goto fail_w;
    }
    struct mx_err rerr = {0};
    rc = open_readonly(db, &rerr);
    if (rc < 0) {
        if (o.readonly) {
            mx_err_set(err, rc, "%s", rerr.msg);
            goto fail;
        }
        rc = werr.code ? werr.code : rc;
        goto fail_w;
    }
    set_busy(db, busy);
    set_ro(db, "%s", werr.msg);
done:
    if ((rc = exec(db, "PRAGMA foreign_keys = ON", "enable foreign keys", err)) < 0)
        goto fail;
    *out = db;
    return 0;
fail_w:
    mx_err_set(err, rc, "%s", werr.msg);
fail:
    mx_db_close(db);
    return rc;
}

void mx_db_close(struct mx_db *db) {
    if (!db)
        return;
    if (db->h)
        sqlite3_close_v2(db->h);
    free(db);
}

bool mx_db_readonly(const struct mx_db *db) {
    return db->ro;
}

const char *mx_db_readonly_reason(const struct mx_db *db) {
    return db->ro_reason;
}

const char *mx_db_path(const struct mx_db *db) {
    return db->path;
}

struct sqlite3 *mx_db_sqlite(struct mx_db *db) {
    return db->h;
}

/* ---- sessions ------------------------------------------------------------------------------ */

#define SESSION_COLS                                                                       \
    "s.id, s.title, s.model_path, s.model_hash, s.template, s.sampling, s.active_leaf, "  \
    "s.created, s.updated, (SELECT count(*) FROM messages m WHERE m.session = s.id)"

static const char *col_text(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}

static int session_from_row(sqlite3_stmt *st, struct mx_session *s) {
    memset(s, 0, sizeof *s);
    s->id = sqlite3_column_int64(st, 0);
    s->title = xstrdup(col_text(st, 1));
    s->model_path = xstrdup(col_text(st, 2));
    s->model_hash = xstrdup(col_text(st, 3));
    s->template_name = xstrdup(col_text(st, 4));
    s->sampling = xstrdup(col_text(st, 5));
    s->active_leaf = sqlite3_column_int64(st, 6);
    s->created_ms = sqlite3_column_int64(st, 7);
    s->updated_ms = sqlite3_column_int64(st, 8);
    s->n_messages = sqlite3_column_int64(st, 9);
    if (!s->title || !s->model_path || !s->model_hash || !s->template_name || !s->sampling) {
        mx_session_deinit(s);
        return MX_ENOMEM;
    }
    return 0;
}

void mx_session_deinit(struct mx_session *s) {
    if (!s)
        return;
    free(s->title);
    free(s->model_path);
    free(s->model_hash);
    free(s->template_name);
    free(s->sampling);
    memset(s, 0, sizeof *s);
}

void mx_session_list_free(struct mx_session_list *l) {
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        mx_session_deinit(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

int mx_db_session_create(struct mx_db *db, const char *title, const char *model_path,
                         const char *model_hash, const char *template_name,
                         const char *sampling, int64_t *id, struct mx_err *err) {
    int rc = check_json_object(sampling, "sampling settings", err);
    if (rc < 0)
        return rc;
    if ((rc = tx_begin(db, err)) < 0)
        return rc;
    sqlite3_stmt *st;
    if ((rc = mx_db__prepare(db, "INSERT INTO sessions(title, model_path, model_hash, template,"
                             " sampling, created, updated) VALUES (?,?,?,?,?,?,?)",
                             &st, err)) < 0)
        goto fail;
    int64_t t = now_ms();
    sqlite3_bind_text(st, 1, title ? title : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, model_path ? model_path : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, model_hash ? model_hash : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, template_name ? template_name : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, sampling ? sampling : "{}", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, t);
    sqlite3_bind_int64(st, 7, t);
    if ((rc = step_done(db, st, "create session", err)) < 0)
        goto fail;
    int64_t nid = sqlite3_last_insert_rowid(db->h);
    if ((rc = tx_commit(db, err)) < 0)
        return rc;
    if (id)
        *id = nid;
    return 0;
fail:
    tx_rollback(db);
    return rc;
}

/* Runs an UPDATE/DELETE on session id (bound as the last parameter after the text binds in
 * vals, NULL values left as they are via COALESCE in the SQL) in its own transaction.
 * MX_ENOENT when no row changed. */
static int session_write(struct mx_db *db, int64_t id, const char *sql, const char **vals,
                         int n_vals, const char *what, struct mx_err *err) {
    int rc = tx_begin(db, err);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st;
    if ((rc = mx_db__prepare(db, sql, &st, err)) < 0)
        goto fail;
    for (int i = 0; i < n_vals; i++) {
        if (vals[i])
            sqlite3_bind_text(st, i + 1, vals[i], -1, SQLITE_TRANSIENT);
        else
            sqlite3_bind_null(st, i + 1);
    }
    sqlite3_bind_int64(st, n_vals + 1, now_ms());
    sqlite3_bind_int64(st, n_vals + 2, id);
    if ((rc = step_done(db, st, what, err)) < 0)
        goto fail;
    if (sqlite3_changes(db->h) == 0) {
        rc = mx_err_set(err, MX_ENOENT, "session %lld: no such session", (long long)id);
        goto fail;
    }
    return tx_commit(db, err);
fail:
    tx_rollback(db);
    return rc;
}

int mx_db_session_set_model(struct mx_db *db, int64_t id, const char *model_path,
                            const char *model_hash, const char *template_name,
                            const char *sampling, struct mx_err *err) {
    int rc = check_json_object(sampling, "sampling settings", err);
    if (rc < 0)
        return rc;
    const char *vals[] = {model_path, model_hash, template_name, sampling};
    return session_write(db, id,
                         "UPDATE sessions SET model_path = COALESCE(?1, model_path),"
                         " model_hash = COALESCE(?2, model_hash),"
                         " template = COALESCE(?3, template), sampling = COALESCE(?4, sampling),"
                         " updated = ?5 WHERE id = ?6",
                         vals, 4, "set session model", err);
}

int mx_db_session_rename(struct mx_db *db, int64_t id, const char *title, struct mx_err *err) {
    const char *vals[] = {title ? title : ""};
    return session_write(db, id, "UPDATE sessions SET title = ?1, updated = ?2 WHERE id = ?3",
                         vals, 1, "rename session", err);
}

int mx_db_session_delete(struct mx_db *db, int64_t id, struct mx_err *err) {
    /* ?1 (the time) is unused by a DELETE but keeps session_write's binding order */
    return session_write(db, id, "DELETE FROM sessions WHERE id = ?2 AND ?1 IS NOT NULL",
                         NULL, 0, "delete session", err);
}

int mx_db_session_get(struct mx_db *db, int64_t id, struct mx_session *s, struct mx_err *err) {
    sqlite3_stmt *st;
    int rc = mx_db__prepare(db, "SELECT " SESSION_COLS " FROM sessions s WHERE s.id = ?", &st,
                            err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = session_from_row(st, s) < 0 ? mx_err_set(err, MX_ENOMEM, "out of memory") : 0;
    else if (rc == SQLITE_DONE)
        rc = mx_err_set(err, MX_ENOENT, "session %lld: no such session", (long long)id);
    else
        rc = mx_db__fail(db, rc, "read session", err);
    sqlite3_finalize(st);
    return rc;
}

int mx_db_session_list(struct mx_db *db, size_t limit, struct mx_session_list *out,
                       struct mx_err *err) {
    out->v = NULL;
    out->n = 0;
    sqlite3_stmt *st;
    int rc = mx_db__prepare(db, "SELECT " SESSION_COLS " FROM sessions s"
                            " ORDER BY s.updated DESC, s.id DESC LIMIT ?", &st, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, limit ? (int64_t)limit : -1);
    size_t cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            cap = cap ? cap * 2 : 16;
            struct mx_session *v = realloc(out->v, cap * sizeof *v);
            if (!v)
                goto nomem;
            out->v = v;
        }
        if (session_from_row(st, &out->v[out->n]) < 0)
            goto nomem;
        out->n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        mx_session_list_free(out);
        return mx_db__fail(db, rc, "list sessions", err);
    }
    return 0;
nomem:
    sqlite3_finalize(st);
    mx_session_list_free(out);
    return mx_err_set(err, MX_ENOMEM, "list sessions: out of memory");
}

int mx_db_session_find(struct mx_db *db, const char *key, int64_t *id, struct mx_err *err) {
    if (!key || !key[0])
        return mx_err_set(err, MX_EINVAL, "empty session name");
    sqlite3_stmt *st;
    int rc;
    /* a decimal id first */
    char *end;
    errno = 0;
    long long n = strtoll(key, &end, 10);
    if (key[0] >= '0' && key[0] <= '9' && !*end && errno == 0 && n > 0) {
        if ((rc = mx_db__prepare(db, "SELECT id FROM sessions WHERE id = ?", &st, err)) < 0)
            return rc;
        sqlite3_bind_int64(st, 1, n);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc == SQLITE_ROW) {
            *id = n;
            return 0;
        }
    }
    if ((rc = mx_db__prepare(db, "SELECT id FROM sessions WHERE title = ? ORDER BY id LIMIT 6",
                             &st, err)) < 0)
        return rc;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_TRANSIENT);
    int64_t ids[6];
    int k = 0;
    while (k < 6 && (rc = sqlite3_step(st)) == SQLITE_ROW)
        ids[k++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (k == 0)
        return mx_err_set(err, MX_ENOENT, "%s: no session with this id or title", key);
    if (k > 1) {
        char list[128] = "";
        for (int i = 0; i < k && i < 5; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%lld", i ? ", " : "",
                     (long long)ids[i]);
        return mx_err_set(err, MX_EINVAL, "%s: several sessions have this title (ids %s%s); "
                          "use the id", key, list, k > 5 ? ", ..." : "");
    }
    *id = ids[0];
    return 0;
}

/* ---- messages ------------------------------------------------------------------------------ */

int mx_db__msg_from_row(sqlite3_stmt *st, struct mx_msg *m) {
    memset(m, 0, sizeof *m);
    m->id = sqlite3_column_int64(st, 0);
    m->session = sqlite3_column_int64(st, 1);
    m->parent = sqlite3_column_int64(st, 2);  /* NULL reads as 0 */
    enum mx_role r = MX_ROLE_USER;
    mx_role_parse(col_text(st, 3), &r);
    m->role = r;
    m->state = state_parse(col_text(st, 4));
    m->content = xstrdup(col_text(st, 5));
    m->timings = xstrdup(col_text(st, 6));
    m->n_tokens = sqlite3_column_int(st, 7);
    m->created_ms = sqlite3_column_int64(st, 8);
    m->tool_calls = xstrdup(col_text(st, 9));
    m->tool_call_id = xstrdup(col_text(st, 10));
    if (!m->content || !m->timings || !m->tool_calls || !m->tool_call_id) {
        mx_msg_deinit(m);
        return MX_ENOMEM;
    }
    return 0;
}

void mx_msg_deinit(struct mx_msg *m) {
    if (!m)
        return;
    free(m->content);
    free(m->timings);
    free(m->tool_calls);
    free(m->tool_call_id);
    memset(m, 0, sizeof *m);
}

void mx_msg_list_free(struct mx_msg_list *l) {
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        mx_msg_deinit(&l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static int list_push(struct mx_msg_list *l, size_t *cap, sqlite3_stmt *st) {
    if (l->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        struct mx_msg *v = realloc(l->v, nc * sizeof *v);
        if (!v)
            return MX_ENOMEM;
        l->v = v;
        *cap = nc;
    }
    int rc = mx_db__msg_from_row(st, &l->v[l->n]);
    if (rc == 0)
        l->n++;
    return rc;
}

/* Sibling position of message (session, parent, id): 1-based index and count. */
static int sibling_pos(struct mx_db *db, const struct mx_msg *m, int *index, int *count,
                       struct mx_err *err) {
    sqlite3_stmt *st;
    int rc = mx_db__prepare(db, "SELECT count(*), sum(id <= ?3) FROM messages"
                            " WHERE session = ?1 AND parent IS ?2", &st, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, m->session);
    bind_id_or_null(st, 2, m->parent);
    sqlite3_bind_int64(st, 3, m->id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *count = sqlite3_column_int(st, 0);
        *index = sqlite3_column_int(st, 1);
        rc = 0;
    } else {
        rc = mx_db__fail(db, rc, "count siblings", err);
    }
    sqlite3_finalize(st);
    return rc;
}

int mx_db_msg_get(struct mx_db *db, int64_t id, struct mx_msg *m, struct mx_err *err) {
    sqlite3_stmt *st;
    int rc = mx_db__prepare(db, "SELECT " MX_DB__MSG_COLS " FROM messages WHERE id = ?", &st,
                            err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = mx_db__msg_from_row(st, m) < 0 ? mx_err_set(err, MX_ENOMEM, "out of memory") : 0;
    else if (rc == SQLITE_DONE)
        rc = mx_err_set(err, MX_ENOENT, "message %lld: no such message", (long long)id);
    else
        rc = mx_db__fail(db, rc, "read message", err);
    sqlite3_finalize(st);
    if (rc == 0 && (rc = sibling_pos(db, m, &m->sibling_index, &m->sibling_count, err)) < 0)
        mx_msg_deinit(m);
    return rc;
}

/* Reads session's active leaf inside the caller's transaction. */
static int active_leaf(struct mx_db *db, int64_t session, int64_t *leaf, struct mx_err *err) {
    sqlite3_stmt *st;
    int rc = mx_db__prepare(db, "SELECT active_leaf FROM sessions WHERE id = ?", &st, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, session);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *leaf = sqlite3_column_int64(st, 0);
        rc = 0;
    } else if (rc == SQLITE_DONE) {
        rc = mx_err_set(err, MX_ENOENT, "session %lld: no such session", (long long)session);
    } else {
        rc = mx_db__fail(db, rc, "read session", err);
    }
    sqlite3_finalize(st);
    return rc;
}

/* 0 when message id belongs to session, MX_EINVAL otherwise. */
static int check_in_session(struct mx_db *db, int64_t session, int64_t id, struct mx_err *err) {
    sqlite3_stmt *st;
    int rc = mx_db__prepare(db, "SELECT session FROM messages WHERE id = ?", &st, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, id);
    rc = sqlite3_step(st);
    int64_t s = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return mx_db__fail(db, rc, "read message", err);
    if (s != session)
        return mx_err_set(err, MX_EINVAL, "message %lld is not in session %lld", (long long)id,
                          (long long)session);
    return 0;
}

/* Title from the first user prompt: its first non-blank line, whitespace runs folded, control
 * characters dropped, cut at 60 bytes on a UTF-8 boundary with "..." when cut. */
static void make_title(const char *content, char *out, size_t size) {
    const unsigned char *p = (const unsigned char *)content;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    size_t o = 0, limit = size - 4 < 60 ? size - 4 : 60;
    bool space = false, cut = false;
    for (; *p && *p != '\n' && *p != '\r'; p++) {
        if (*p == ' ' || *p == '\t') {
            space = o > 0;
            continue;
        }
        if (*p < 0x20 || *p == 0x7f)
            continue;
        size_t need = space ? 2 : 1;
        if (o + need > limit) {
            cut = true;
            break;
        }
        if (space)
            out[o++] = ' ';
        space = false;
        out[o++] = (char)*p;
    }
    /* never end inside a UTF-8 sequence */
    if (cut) {
        size_t k = o;
        while (k > 0 && ((unsigned char)out[k - 1] & 0xc0) == 0x80)
            k--;
        if (k > 0 && ((unsigned char)out[k - 1] & 0x80)) {
            unsigned char lead = (unsigned char)out[k - 1];
            size_t len = (lead & 0xe0) == 0xc0 ? 2 : (lead & 0xf0) == 0xe0 ? 3 : 4;
            if (o - (k - 1) < len)
                o = k - 1;
        }
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* The shared body of append and begin: validates, inserts, moves the leaf, names the session. */
static int msg_insert(struct mx_db *db, int64_t session, int64_t parent, enum mx_role role,
                      const char *content, int n_tokens, const char *timings,
                      enum mx_msg_state state, int64_t *id, struct mx_err *err) {
    if ((unsigned)role > MX_ROLE_TOOL)
        return mx_err_set(err, MX_EINVAL, "bad message role %d", (int)role);
    int rc = check_json_object(timings, "timings", err);
    if (rc < 0)
        return rc;
    if ((rc = tx_begin(db, err)) < 0)
        return rc;
    int64_t leaf;
    if ((rc = active_leaf(db, session, &leaf, err)) < 0)
        goto fail;
    if (parent == MX_DB_PARENT_LEAF)
        parent = leaf;
    if (parent < 0) {
        rc = mx_err_set(err, MX_EINVAL, "bad parent message %lld", (long long)parent);
        goto fail;
    }
    if (parent > 0 && (rc = check_in_session(db, session, parent, err)) < 0)
        goto fail;
    sqlite3_stmt *st;
    if ((rc = mx_db__prepare(db, "INSERT INTO messages(session, parent, role, content, n_tokens,"
                             " timings, state, created) VALUES (?,?,?,?,?,?,?,?)",
                             &st, err)) < 0)
        goto fail;
    int64_t t = now_ms();
    sqlite3_bind_int64(st, 1, session);
    bind_id_or_null(st, 2, parent);
    sqlite3_bind_text(st, 3, mx_role_name(role), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, content ? content : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 5, n_tokens);
    sqlite3_bind_text(st, 6, timings ? timings : "{}", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 7, states[state], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 8, t);
    if ((rc = step_done(db, st, "append message", err)) < 0)
        goto fail;
    int64_t nid = sqlite3_last_insert_rowid(db->h);
    if ((rc = mx_db__prepare(db, "UPDATE sessions SET active_leaf = ?, updated = ? WHERE id = ?",
                             &st, err)) < 0)
        goto fail;
    sqlite3_bind_int64(st, 1, nid);
    sqlite3_bind_int64(st, 2, t);
    sqlite3_bind_int64(st, 3, session);
    if ((rc = step_done(db, st, "move active leaf", err)) < 0)
        goto fail;
    if (role == MX_ROLE_USER && content && content[0]) {
        char title[80];
        make_title(content, title, sizeof title);
        if ((rc = mx_db__prepare(db, "UPDATE sessions SET title = ? WHERE id = ? AND title = ''",
                                 &st, err)) < 0)
            goto fail;
        sqlite3_bind_text(st, 1, title, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(st, 2, session);
        if ((rc = step_done(db, st, "name session", err)) < 0)
            goto fail;
    }
    if ((rc = tx_commit(db, err)) < 0)
        return rc;
    if (id)
        *id = nid;
    return 0;
fail:
    tx_rollback(db);
    return rc;
}

int mx_db_msg_append(struct mx_db *db, int64_t session, int64_t parent, enum mx_role role,
                     const char *content, int n_tokens, const char *timings, int64_t *id,
                     struct mx_err *err) {
    return msg_insert(db, session, parent, role, content, n_tokens, timings, MX_MSG_COMPLETE,
                      id, err);
}

int mx_db_msg_begin(struct mx_db *db, int64_t session, int64_t parent, enum mx_role role,
                    int64_t *id, struct mx_err *err) {
    return msg_insert(db, session, parent, role, "", 0, NULL, MX_MSG_STREAMING, id, err);
}

/* Updates a streaming message and its session's time in one transaction. */
static int msg_write(struct mx_db *db, int64_t id, const char *content, int n_tokens,
                     const char *timings, int state, struct mx_err *err) {
    int rc = check_json_object(timings, "timings", err);
    if (rc < 0)
        return rc;
    if ((rc = tx_begin(db, err)) < 0)
        return rc;
    sqlite3_stmt *st;
    if ((rc = mx_db__prepare(db, "UPDATE messages SET content = COALESCE(?1, content),"
                             " n_tokens = ?2, timings = COALESCE(?3, timings),"
                             " state = COALESCE(?4, state)"
                             " WHERE id = ?5 AND state = 'streaming'", &st, err)) < 0)
        goto fail;
    if (content)
        sqlite3_bind_text(st, 1, content, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 1);
    sqlite3_bind_int(st, 2, n_tokens);
    if (timings)
        sqlite3_bind_text(st, 3, timings, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 3);
    if (state >= 0)
        sqlite3_bind_text(st, 4, states[state], -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, 4);
    sqlite3_bind_int64(st, 5, id);
    if ((rc = step_done(db, st, "update message", err)) < 0)
        goto fail;
    if (sqlite3_changes(db->h) == 0) {
        rc = mx_err_set(err, MX_EINVAL, "message %lld: not a streaming message", (long long)id);
        goto fail;
    }
    if ((rc = mx_db__prepare(db, "UPDATE sessions SET updated = ?1 WHERE id ="
                             " (SELECT session FROM messages WHERE id = ?2)", &st, err)) < 0)
        goto fail;
    sqlite3_bind_int64(st, 1, now_ms());
    sqlite3_bind_int64(st, 2, id);
    if ((rc = step_done(db, st, "touch session", err)) < 0)
        goto fail;
    return tx_commit(db, err);
fail:
    tx_rollback(db);
    return rc;
}

int mx_db_msg_update(struct mx_db *db, int64_t id, const char *content, int n_tokens,
                     struct mx_err *err) {
    return msg_write(db, id, content, n_tokens, NULL, -1, err);
}

int mx_db_msg_finish(struct mx_db *db, int64_t id, const char *content, int n_tokens,
                     const char *timings, enum mx_msg_state state, struct mx_err *err) {
    if (state != MX_MSG_COMPLETE && state != MX_MSG_PARTIAL)
        return mx_err_set(err, MX_EINVAL, "message %lld: finish needs complete or partial",
                          (long long)id);
    return msg_write(db, id, content, n_tokens, timings, (int)state, err);
}

int mx_db_msg_set_tool(struct mx_db *db, int64_t id, const char *tool_calls,
                       const char *tool_call_id, struct mx_err *err) {
    if (tool_calls && tool_calls[0]) {
        json_t *j = json_loads(tool_calls, 0, NULL);
        bool ok = json_is_array(j);
        json_decref(j);
        if (!ok)
            return mx_err_set(err, MX_EINVAL, "message %lld: tool calls: not a JSON array",
                              (long long)id);
    }
    int rc = tx_begin(db, err);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st;
    if ((rc = mx_db__prepare(db, "UPDATE messages SET tool_calls = ?1, tool_call_id = ?2"
                             " WHERE id = ?3", &st, err)) < 0)
        goto fail;
    sqlite3_bind_text(st, 1, tool_calls ? tool_calls : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, tool_call_id ? tool_call_id : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 3, id);
    if ((rc = step_done(db, st, "store tool calls", err)) < 0)
        goto fail;
    if (sqlite3_changes(db->h) == 0) {
        rc = mx_err_set(err, MX_ENOENT, "message %lld: no such message", (long long)id);
        goto fail;
    }
    return tx_commit(db, err);
fail:
    tx_rollback(db);
    return rc;
}

static int select_list(struct mx_db *db, sqlite3_stmt *st, struct mx_msg_list *out,
                       const char *what, struct mx_err *err) {
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (list_push(out, &cap, st) < 0) {
            sqlite3_finalize(st);
            mx_msg_list_free(out);
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory", what);
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        mx_msg_list_free(out);
        return mx_db__fail(db, rc, what, err);
    }
    for (size_t i = 0; i < out->n; i++) {
        out->v[i].sibling_index = (int)i + 1;
        out->v[i].sibling_count = (int)out->n;
    }
    return 0;
}

int mx_db_msg_children(struct mx_db *db, int64_t session, int64_t parent,
                       struct mx_msg_list *out, struct mx_err *err) {
    out->v = NULL;
    out->n = 0;
    sqlite3_stmt *st;
    int rc = mx_db__prepare(db, "SELECT " MX_DB__MSG_COLS " FROM messages"
                            " WHERE session = ? AND parent IS ? ORDER BY id", &st, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, session);
    bind_id_or_null(st, 2, parent);
    return select_list(db, st, out, "list children", err);
}

int mx_db_msg_siblings(struct mx_db *db, int64_t id, struct mx_msg_list *out, int *index,
                       struct mx_err *err) {
    out->v = NULL;
    out->n = 0;
    struct mx_msg m;
    int rc = mx_db_msg_get(db, id, &m, err);
    if (rc < 0)
        return rc;
    rc = mx_db_msg_children(db, m.session, m.parent, out, err);
    if (index)
        *index = m.sibling_index;
    mx_msg_deinit(&m);
    return rc;
}

int mx_db_msg_latest_leaf(struct mx_db *db, int64_t id, int64_t *leaf, struct mx_err *err) {
    sqlite3_stmt *st;
    int rc = mx_db__prepare(db, "SELECT max(id) FROM messages WHERE parent = ?", &st, err);
    if (rc < 0)
        return rc;
    int64_t cur = id;
    /* ids grow down the tree, so this ends; bounded anyway against a damaged file */
    for (int guard = 0; guard < 100000000; guard++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, cur);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            sqlite3_finalize(st);
            return mx_db__fail(db, rc, "follow branch", err);
        }
        if (sqlite3_column_type(st, 0) == SQLITE_NULL)
            break;
        int64_t next = sqlite3_column_int64(st, 0);
        if (next <= cur) {
            sqlite3_finalize(st);
            return mx_err_set(err, MX_EFORMAT, "%s: message %lld has child %lld: damaged tree",
                              db->path, (long long)cur, (long long)next);
        }
        cur = next;
    }
    sqlite3_finalize(st);
    *leaf = cur;
    return 0;
}

int mx_db_set_leaf(struct mx_db *db, int64_t session, int64_t id, struct mx_err *err) {
    if (id < 0)
        return mx_err_set(err, MX_EINVAL, "bad message id %lld", (long long)id);
    int rc = tx_begin(db, err);
    if (rc < 0)
        return rc;
    int64_t leaf;
    if ((rc = active_leaf(db, session, &leaf, err)) < 0)
        goto fail;
    if (id > 0 && (rc = check_in_session(db, session, id, err)) < 0)
        goto fail;
    sqlite3_stmt *st;
    if ((rc = mx_db__prepare(db, "UPDATE sessions SET active_leaf = ?, updated = ? WHERE id = ?",
                             &st, err)) < 0)
        goto fail;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int64(st, 2, now_ms());
    sqlite3_bind_int64(st, 3, session);
    if ((rc = step_done(db, st, "set active leaf", err)) < 0)
        goto fail;
    return tx_commit(db, err);
fail:
    tx_rollback(db);
    return rc;
}

int mx_db_active_path(struct mx_db *db, int64_t session, struct mx_msg_list *out,
                      struct mx_err *err) {
    out->v = NULL;
    out->n = 0;
    int64_t leaf;
    /* one read transaction: the path is a consistent snapshot even while another writes */
    int rc = exec(db, "BEGIN", "begin read", err);
    if (rc < 0)
        return rc;
    if ((rc = active_leaf(db, session, &leaf, err)) < 0)
        goto done;
    sqlite3_stmt *st;
    if ((rc = mx_db__prepare(db, "SELECT " MX_DB__MSG_COLS " FROM messages WHERE id = ?", &st,
                             err)) < 0)
        goto done;
    size_t cap = 0;
    for (int64_t cur = leaf; cur > 0;) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, cur);
        int src = sqlite3_step(st);
        if (src != SQLITE_ROW) {
            rc = src == SQLITE_DONE
                     ? mx_err_set(err, MX_EFORMAT, "%s: session %lld: message %lld is missing",
                                  db->path, (long long)session, (long long)cur)
                     : mx_db__fail(db, src, "read path", err);
            break;
        }
        if (list_push(out, &cap, st) < 0) {
            rc = mx_err_set(err, MX_ENOMEM, "read path: out of memory");
            break;
        }
        const struct mx_msg *m = &out->v[out->n - 1];
        if (m->session != session || (m->parent != 0 && m->parent >= m->id)) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: message %lld: bad parent %lld: damaged tree",
                            db->path, (long long)m->id, (long long)m->parent);
            break;
        }
        cur = m->parent;
    }
    sqlite3_finalize(st);
    if (rc < 0)
        goto done;
    /* root first */
    for (size_t i = 0; i < out->n / 2; i++) {
        struct mx_msg t = out->v[i];
        out->v[i] = out->v[out->n - 1 - i];
        out->v[out->n - 1 - i] = t;
    }
    for (size_t i = 0; i < out->n && rc == 0; i++)
        rc = sibling_pos(db, &out->v[i], &out->v[i].sibling_index, &out->v[i].sibling_count,
                         err);
done:
    sqlite3_exec(db->h, "COMMIT", NULL, NULL, NULL);
    if (rc < 0)
        mx_msg_list_free(out);
    return rc;
}

/* ---- images -------------------------------------------------------------------------------- */

int mx_db_image_add(struct mx_db *db, int64_t session, int64_t message, const char *path,
                    const char *params, int64_t *id, struct mx_err *err) {
    if (!path || !path[0])
        return mx_err_set(err, MX_EINVAL, "image: empty path");
    int rc = check_json_object(params, "image parameters", err);
    if (rc < 0)
        return rc;
    if ((rc = tx_begin(db, err)) < 0)
        return rc;
    int64_t leaf;
    if ((rc = active_leaf(db, session, &leaf, err)) < 0)
        goto fail;
    if (message > 0 && (rc = check_in_session(db, session, message, err)) < 0)
        goto fail;
    sqlite3_stmt *st;
    if ((rc = mx_db__prepare(db, "INSERT INTO images(session, message, path, params, created)"
                             " VALUES (?,?,?,?,?)", &st, err)) < 0)
        goto fail;
    sqlite3_bind_int64(st, 1, session);
    bind_id_or_null(st, 2, message);
    sqlite3_bind_text(st, 3, path, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, params ? params : "{}", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 5, now_ms());
    if ((rc = step_done(db, st, "add image", err)) < 0)
        goto fail;
    int64_t nid = sqlite3_last_insert_rowid(db->h);
    if ((rc = tx_commit(db, err)) < 0)
        return rc;
    if (id)
        *id = nid;
    return 0;
fail:
    tx_rollback(db);
    return rc;
}

int mx_db_image_count(struct mx_db *db, int64_t session, int64_t *n, struct mx_err *err) {
    sqlite3_stmt *st;
    int rc = mx_db__prepare(db, "SELECT count(*) FROM images WHERE session = ?", &st, err);
    if (rc < 0)
        return rc;
    sqlite3_bind_int64(st, 1, session);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *n = sqlite3_column_int64(st, 0);
        rc = 0;
    } else {
        rc = mx_db__fail(db, rc, "count images", err);
    }
    sqlite3_finalize(st);
    return rc;
}

/* ---- search -------------------------------------------------------------------------------- */

void mx_db_hit_list_free(struct mx_db_hit_list *l) {
    if (!l)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].snippet);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* FTS5 query from user text: each whitespace-separated word as a quoted string ("" inside), so
 * every word must match and nothing the user types is an operator. */
static char *fts_query(const char *text) {
    size_t n = strlen(text), cap;
    if (!mx_mul_size(n, 3, &cap) || !mx_add_size(cap, 4, &cap))
        return NULL;
    char *q = malloc(cap), *o = q;
    if (!q)
        return NULL;
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (!*p)
            break;
        if (o != q)
            *o++ = ' ';
        *o++ = '"';
        for (; *p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r'; p++) {
            if (*p == '"')
                *o++ = '"';
            *o++ = *p;
        }
        *o++ = '"';
    }
    *o = '\0';
    return q;
}

int mx_db_search(struct mx_db *db, const char *text, size_t limit, struct mx_db_hit_list *out,
                 struct mx_err *err) {
    out->v = NULL;
    out->n = 0;
    char *q = fts_query(text ? text : "");
    if (!q)
        return mx_err_set(err, MX_ENOMEM, "search: out of memory");
    if (!q[0]) {
        free(q);
        return mx_err_set(err, MX_EINVAL, "search: no words to look for");
    }
    sqlite3_stmt *st;
    int rc = mx_db__prepare(db, "SELECT m.session, m.id,"
                            " snippet(messages_fts, 0, '[', ']', '...', 16)"
                            " FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
                            " WHERE messages_fts MATCH ? ORDER BY rank, m.id LIMIT ?", &st, err);
    if (rc < 0) {
        free(q);
        return rc;
    }
    sqlite3_bind_text(st, 1, q, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, limit ? (int64_t)limit : 50);
    free(q);
    size_t cap = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            cap = cap ? cap * 2 : 16;
            struct mx_db_hit *v = realloc(out->v, cap * sizeof *v);
            if (!v)
                goto nomem;
            out->v = v;
        }
        struct mx_db_hit *h = &out->v[out->n];
        h->session = sqlite3_column_int64(st, 0);
        h->message = sqlite3_column_int64(st, 1);
        h->snippet = xstrdup(col_text(st, 2));
        if (!h->snippet)
            goto nomem;
        out->n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        mx_db_hit_list_free(out);
        return mx_db__fail(db, rc, "search", err);
    }
    return 0;
nomem:
    sqlite3_finalize(st);
    mx_db_hit_list_free(out);
    return mx_err_set(err, MX_ENOMEM, "search: out of memory");
}
