/* db.h - the history database: sessions, their messages (a tree: edits and regenerations are
 * branches), generated images and a full-text index, in one SQLite file,
 * $XDG_DATA_HOME/mixel/history.db (folder 0700, file 0600, WAL mode, versioned schema).
 *
 * Durability contract (DESIGN.md "Nothing is lost"): every write function commits its own
 * transaction before it returns, with synchronous=FULL, so a message an append returned for is on
 * disk before the UI shows it as sent; a kill -9, full disk or read-only folder leaves every
 * earlier commit intact (a failed write rolls back and reports MX_EFULL / MX_EPERM / MX_EBUSY).
 * A streaming assistant answer is begun, updated (the caller calls update about once a second:
 * each update is one commit) and finished, so a crash loses at most the text since the last
 * update; a message still in state "streaming" after its writer died is an interrupted answer
 * (a resumed chat may settle it with mx_db_msg_finish(..., MX_MSG_PARTIAL) to keep it as a
 * stopped answer; nothing does that at open, since another live instance may be streaming it).
 *
 * Several processes may use one database at once (WAL: readers never block, writers queue for a
 * busy timeout). When the database cannot be opened for writing (the folder or file is read-only,
 * or another process holds the write lock through a schema upgrade), mx_db_open falls back to a
 * read-only connection and says why in mx_db_readonly_reason(); writes then fail with MX_EPERM.
 *
 * Not thread-safe: one struct mx_db per thread (SQLite connections are cheap).
 */
#ifndef MX_DB_H
#define MX_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

struct mx_db;
struct sqlite3;

/* The schema version this build writes (PRAGMA user_version). Older files are migrated on open;
 * a newer file (a later mixel) is opened read-only so that nothing it relies on is damaged. */
#define MX_DB_SCHEMA_VERSION 2

#include "core/base/role.h" /* enum mx_role */

/* complete: finished normally; partial: stopped by the user or by an error, or cut short by a
 * full context (kept, marked; a cut answer's timings hold "stop": "context_full");
 * streaming: being written now, or its writer died mid-answer. */
enum mx_msg_state { MX_MSG_COMPLETE, MX_MSG_PARTIAL, MX_MSG_STREAMING };

/* Parent value for mx_db_msg_append/_begin: the session's active leaf (continue the branch). */
#define MX_DB_PARENT_LEAF ((int64_t)-1)

struct mx_db_opts {
    const char *path;  /* database file; NULL = $XDG_DATA_HOME/mixel/history.db */
    int busy_ms;       /* how long a write waits for another writer; 0 = default 3000 */
    bool readonly;     /* open read-only on purpose (no fallback message) */
};

/* One session row. Strings are owned by the struct (free with mx_session_deinit or the list). */
struct mx_session {
    int64_t id;
    char *title;          /* "" until the first user message names it */
    char *model_path;     /* "" when unknown */
    char *model_hash;     /* mx_kvsnap_model_hash as 16 hex digits, or "" */
    char *template_name;  /* chat template family, or "" */
    char *sampling;       /* JSON object text, "{}" by default */
    int64_t active_leaf;  /* message id the conversation continues from, 0 = empty */
    int64_t created_ms;   /* Unix time in milliseconds */
    int64_t updated_ms;   /* last message or change */
    int64_t n_messages;   /* all messages in every branch (filled by get and list) */
};

struct mx_session_list {
    struct mx_session *v;
    size_t n;
};

/* One message row; content and timings owned by the struct. */
struct mx_msg {
    int64_t id;
    int64_t session;
    int64_t parent;        /* 0 for the first message of a branch from the root */
    enum mx_role role;
    enum mx_msg_state state;
    char *content;
    char *timings;         /* JSON object text, "{}" when none */
    int n_tokens;          /* tokens of content as the model saw it, 0 = unknown */
    int64_t created_ms;
    char *tool_calls;      /* assistant: its tool calls as a JSON array of {"id", "name",
                            * "arguments"} (app/tools.h writes and reads it); "" none */
    char *tool_call_id;    /* tool: the id of the call this message answers; "" none */
    int sibling_index;     /* 1-based position among messages with the same parent (by id) */
    int sibling_count;     /* how many there are: shown as "index/count" */
};

struct mx_msg_list {
    struct mx_msg *v;
    size_t n;
};

/* A full-text search hit. snippet is the matching passage with the matches in [ ]. */
struct mx_db_hit {
    int64_t session;
    int64_t message;
    char *snippet;
};

struct mx_db_hit_list {
    struct mx_db_hit *v;
    size_t n;
};

/* ---- database ------------------------------------------------------------------------------ */

/* Opens (creating folder 0700 and file 0600 when needed) and migrates the database. opts may be
 * NULL. On a read-only folder/file or a held lock it returns 0 with a read-only connection
 * (mx_db_readonly() true, the reason in mx_db_readonly_reason()) when the file exists and is
 * readable. Errors: MX_EPERM (cannot create or read it), MX_EBUSY (locked and unreadable),
 * MX_EFORMAT (not a mixel database / corrupt), MX_ENOMEM, MX_EIO, MX_EDB. *out is NULL on error;
 * the caller owns the handle and closes it with mx_db_close. */
int mx_db_open(struct mx_db **out, const struct mx_db_opts *opts, struct mx_err *err);

/* Closes the connection (NULL ok). Nothing is pending: every write already committed. */
void mx_db_close(struct mx_db *db);

/* True when writes are refused; the reason is a sentence for a status-line warning. */
bool mx_db_readonly(const struct mx_db *db);
const char *mx_db_readonly_reason(const struct mx_db *db);

/* The file path (borrowed, valid until close) and the SQLite handle (tests, diagnostics). */
const char *mx_db_path(const struct mx_db *db);
struct sqlite3 *mx_db_sqlite(struct mx_db *db);

/* Default path: $XDG_DATA_HOME/mixel/history.db into buf. Returns 0, MX_ERANGE or MX_ENOENT. */
int mx_db_default_path(char *buf, size_t size, struct mx_err *err);

/* ---- sessions ------------------------------------------------------------------------------ */

/* Creates a session. title NULL or "" = named later from the first user prompt; the other
 * strings may be NULL (stored as "" / "{}"). sampling must be a JSON object text when given.
 * Writes the new id to *id. Errors: MX_EINVAL (bad JSON), MX_EPERM (read-only), MX_EFULL,
 * MX_EBUSY, MX_EDB. */
int mx_db_session_create(struct mx_db *db, const char *title, const char *model_path,
                         const char *model_hash, const char *template_name,
                         const char *sampling, int64_t *id, struct mx_err *err);

/* Updates the model, template and sampling settings of a session (NULL leaves a field as it is;
 * used when a session is resumed on another model). Errors as create, MX_ENOENT for no session. */
int mx_db_session_set_model(struct mx_db *db, int64_t id, const char *model_path,
                            const char *model_hash, const char *template_name,
                            const char *sampling, struct mx_err *err);

/* Fills *s (caller deinits) with session id. Errors: MX_ENOENT, MX_EDB, MX_ENOMEM. */
int mx_db_session_get(struct mx_db *db, int64_t id, struct mx_session *s, struct mx_err *err);

/* All sessions, most recently updated first (ties: newest id first); limit 0 = all. The caller
 * frees the list with mx_session_list_free. */
int mx_db_session_list(struct mx_db *db, size_t limit, struct mx_session_list *out,
                       struct mx_err *err);

/* Resolves what a user typed: a decimal id of an existing session, else an exact title. Errors:
 * MX_ENOENT (no such session), MX_EINVAL (the title names several sessions: the message lists
 * their ids). */
int mx_db_session_find(struct mx_db *db, const char *key, int64_t *id, struct mx_err *err);

/* Renames (title "" allowed). Errors: MX_ENOENT, write errors. */
int mx_db_session_rename(struct mx_db *db, int64_t id, const char *title, struct mx_err *err);

/* Deletes a session with all its messages, images rows and index entries in one transaction.
 * Image and snapshot FILES are the caller's (tui/ removes kv/<id>.kv). Errors: MX_ENOENT, write
 * errors. */
int mx_db_session_delete(struct mx_db *db, int64_t id, struct mx_err *err);

void mx_session_deinit(struct mx_session *s);
void mx_session_list_free(struct mx_session_list *l);

/* ---- messages ------------------------------------------------------------------------------ */

/* Appends a complete message under parent (a message of the same session, 0 = a new root,
 * MX_DB_PARENT_LEAF = the active leaf), makes it the active leaf, names an untitled session
 * after the first user message, and commits before returning. timings may be NULL ("{}").
 * Regenerating an answer = appending an assistant message under the same user message; editing
 * a user message = appending under that message's parent: both create siblings.
 * Errors: MX_EINVAL (bad parent or JSON), MX_ENOENT (no session), MX_EPERM, MX_EFULL,
 * MX_EBUSY, MX_EDB. On error nothing is stored. */
int mx_db_msg_append(struct mx_db *db, int64_t session, int64_t parent, enum mx_role role,
                     const char *content, int n_tokens, const char *timings, int64_t *id,
                     struct mx_err *err);

/* Streaming: begin stores an empty message in state streaming (active leaf, committed); update
 * replaces its content (commit each call: call it about once a second); finish writes the final
 * content, token count, timings (NULL keeps them) and state MX_MSG_COMPLETE or MX_MSG_PARTIAL.
 * content NULL in finish keeps the last update. Errors as append; update/finish of a message
 * that is not streaming return MX_EINVAL. */
int mx_db_msg_begin(struct mx_db *db, int64_t session, int64_t parent, enum mx_role role,
                    int64_t *id, struct mx_err *err);
int mx_db_msg_update(struct mx_db *db, int64_t id, const char *content, int n_tokens,
                     struct mx_err *err);
int mx_db_msg_finish(struct mx_db *db, int64_t id, const char *content, int n_tokens,
                     const char *timings, enum mx_msg_state state, struct mx_err *err);

/* Records an assistant message's tool calls (tool_calls: a JSON array, NULL/"" none) or the
 * call a tool message answers (tool_call_id, NULL/"" none) on message id, so a resumed or
 * exported session replays them. Errors: MX_EINVAL (tool_calls not a JSON array), MX_ENOENT
 * (no such message), write errors. */
int mx_db_msg_set_tool(struct mx_db *db, int64_t id, const char *tool_calls,
                       const char *tool_call_id, struct mx_err *err);

/* One message with its sibling index/count. Errors: MX_ENOENT, MX_EDB, MX_ENOMEM. */
int mx_db_msg_get(struct mx_db *db, int64_t id, struct mx_msg *m, struct mx_err *err);

/* Children of parent in session (parent 0 = the roots), oldest first. */
int mx_db_msg_children(struct mx_db *db, int64_t session, int64_t parent,
                       struct mx_msg_list *out, struct mx_err *err);

/* Messages sharing id's parent (id included), oldest first; *index is id's 1-based position. */
int mx_db_msg_siblings(struct mx_db *db, int64_t id, struct mx_msg_list *out, int *index,
                       struct mx_err *err);

/* The leaf reached from id by following the newest child at each step (id itself when it has
 * none): where the UI moves the active leaf when the user switches to a sibling branch. */
int mx_db_msg_latest_leaf(struct mx_db *db, int64_t id, int64_t *leaf, struct mx_err *err);

/* Makes id (a message of session; 0 = empty conversation) the active leaf. Errors: MX_EINVAL
 * (not in that session), write errors. */
int mx_db_set_leaf(struct mx_db *db, int64_t session, int64_t id, struct mx_err *err);

/* The conversation the model sees: the path from the root to the active leaf, root first, each
 * with sibling index/count. Empty list for an empty session. Errors: MX_ENOENT, MX_EFORMAT (a
 * parent cycle or a parent in another session: a damaged file), MX_EDB, MX_ENOMEM. */
int mx_db_active_path(struct mx_db *db, int64_t session, struct mx_msg_list *out,
                      struct mx_err *err);

void mx_msg_deinit(struct mx_msg *m);
void mx_msg_list_free(struct mx_msg_list *l);

const char *mx_msg_state_name(enum mx_msg_state s);

/* ---- images -------------------------------------------------------------------------------- */

/* Records a generated image file (path as given; params a JSON object text or NULL) in session,
 * attached to message (0 = none). Errors as append. */
int mx_db_image_add(struct mx_db *db, int64_t session, int64_t message, const char *path,
                    const char *params, int64_t *id, struct mx_err *err);

/* Count of image rows of a session (tests, `sessions list`). */
int mx_db_image_count(struct mx_db *db, int64_t session, int64_t *n, struct mx_err *err);

/* ---- search and export --------------------------------------------------------------------- */

/* Full-text search over every message: the words of text must all occur (each word is matched
 * as a literal, so quotes and operators in user text cannot make a syntax error). Best matches
 * first, at most limit (0 = 50). The caller frees out with mx_db_hit_list_free. */
int mx_db_search(struct mx_db *db, const char *text, size_t limit, struct mx_db_hit_list *out,
                 struct mx_err *err);
void mx_db_hit_list_free(struct mx_db_hit_list *l);

/* The active branch as JSON {"id","title","model","model_hash","template","sampling",
 * "created_ms","updated_ms","messages":[{"id","parent","role","content","state","n_tokens",
 * "timings","created_ms","sibling_index","sibling_count"}]} or as Markdown. *out is a
 * NUL-terminated malloc'd string the caller frees. Content is exported raw (untrusted: the
 * reader sanitizes before a terminal). Errors as mx_db_active_path. */
int mx_db_export_json(struct mx_db *db, int64_t session, char **out, struct mx_err *err);
int mx_db_export_md(struct mx_db *db, int64_t session, char **out, struct mx_err *err);

#endif
