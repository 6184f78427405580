/* session_tree.c - test helper: checks the stored session trees of a history database (issue 15's
 * property test reads the database, not only the screen). For every session: the active path
 * loads, no message is left "streaming" (every writer exited cleanly), and every branch - the
 * path from the root to each leaf, the active one included - can take the next turn: the
 * conversation along it plus a new user message (or the path as it is when it ends with one)
 * goes through the chat planner (mx_chat_prepare) with a strict-alternation template
 * (mistral-v1: user/assistant must alternate after the optional system message) and renders;
 * messages with an image are not turns (the engines leave them out) and are skipped.
 *
 * usage: session_tree DB [--dump]
 * --dump also prints every message: "S<session> leaf=<id>" then "<id> <parent> <role> <state>
 * <index>/<count> <first line of content>", and "I <message> <path>" per image, for the tmux
 * tests to assert the stored session.
 * Prints "ok: ..." and exits 0 when every branch passes; 1 with the reasons otherwise.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/chat.h"
#include "history/db.h"

/* A stand-in tokenizer: one id per byte (the planner only needs ids to count and compare). */
static int byte_tokens(void *ud, const char *text, size_t len, bool add_bos, int32_t **ids,
                       size_t *n_ids, struct mx_err *err) {
    (void)ud;
    (void)err;
    *ids = malloc((len + 1) * sizeof **ids);
    if (!*ids)
        return MX_ENOMEM;
    size_t n = 0;
    if (add_bos)
        (*ids)[n++] = 1;
    for (size_t i = 0; i < len; i++)
        (*ids)[n++] = 3 + (unsigned char)text[i];
    *n_ids = n;
    return 0;
}

static const char *state_name(enum mx_msg_state s) {
    return s == MX_MSG_COMPLETE ? "complete" : s == MX_MSG_PARTIAL ? "partial" : "streaming";
}

/* Whether message id has an image (a /show attachment, an /image result): such messages are
 * not turns of the conversation the model sees (app/run_session.c and tui/gen.c leave them
 * out), so they are left out of the branch check too. */
static bool has_image(struct mx_db *db, int64_t id) {
    sqlite3_stmt *st = NULL;
    bool yes = sqlite3_prepare_v2(mx_db_sqlite(db), "SELECT 1 FROM images WHERE message = ?1",
                                  -1, &st, NULL) == SQLITE_OK &&
               sqlite3_bind_int64(st, 1, id) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW;
    sqlite3_finalize(st);
    return yes;
}

/* Checks the branch path[0..n) (root first) of session sid ending at leaf. Returns 0 or 1. */
static int check_branch(struct mx_db *db, int64_t sid, int64_t leaf, const struct mx_msg *path,
                        size_t n) {
    struct mx_chat_msg *msgs = calloc(n + 1, sizeof *msgs);
    if (!msgs)
        return 1;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (path[i].state == MX_MSG_STREAMING) {
            printf("session %lld, branch to %lld: message %lld is still 'streaming'\n",
                   (long long)sid, (long long)leaf, (long long)path[i].id);
            free(msgs);
            return 1;
        }
        if (has_image(db, path[i].id))
            continue;
        msgs[k].role = path[i].role;
        msgs[k++].content = path[i].content;
    }
    if (k == 0 || msgs[k - 1].role != MX_ROLE_USER) { /* the next turn: a new user message */
        msgs[k].role = MX_ROLE_USER;
        msgs[k++].content = "and the next message";
    }
    struct mx_chat_tokenizer tok = {.fn = byte_tokens};
    struct mx_tmpl_opts opts = {0};
    struct mx_chat_turn turn = {0};
    struct mx_err err = {0};
    int rc = mx_chat_prepare(MX_TMPL_MISTRAL_V1, msgs, k, NULL, &opts, &tok, NULL, 0,
                             (size_t)1 << 24, 64, &turn, &err);
    mx_chat_turn_free(&turn);
    free(msgs);
    if (rc != 0) {
        printf("session %lld, branch to %lld (%zu messages): the next turn does not render: %s\n",
               (long long)sid, (long long)leaf, n, err.msg);
        return 1;
    }
    return 0;
}

/* The path from the root to id (root first) into *out. Returns 0 or an MX_E* code. */
static int path_to(struct mx_db *db, int64_t id, struct mx_msg_list *out) {
    out->v = NULL;
    out->n = 0;
    size_t cap = 0;
    while (id) {
        if (out->n == cap) {
            cap = cap ? 2 * cap : 16;
            struct mx_msg *v = realloc(out->v, cap * sizeof *v);
            if (!v)
                return MX_ENOMEM;
            out->v = v;
        }
        int rc = mx_db_msg_get(db, id, &out->v[out->n], NULL);
        if (rc != 0)
            return rc;
        id = out->v[out->n++].parent;
    }
    for (size_t i = 0; i < out->n / 2; i++) { /* leaf first -> root first */
        struct mx_msg t = out->v[i];
        out->v[i] = out->v[out->n - 1 - i];
        out->v[out->n - 1 - i] = t;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || (argc == 3 && strcmp(argv[2], "--dump")) || argc > 3) {
        fprintf(stderr, "usage: session_tree DB [--dump]\n");
        return 2;
    }
    bool dump = argc == 3;
    struct mx_db *db = NULL;
    struct mx_err err = {0};
    struct mx_db_opts o = {.path = argv[1], .readonly = true};
    if (mx_db_open(&db, &o, &err) != 0) {
        printf("session_tree: %s: %s\n", argv[1], err.msg);
        return 1;
    }
    struct mx_session_list sl = {0};
    if (mx_db_session_list(db, 0, &sl, &err) != 0) {
        printf("session_tree: %s\n", err.msg);
        mx_db_close(db);
        return 1;
    }
    int bad = 0;
    size_t n_branches = 0;
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(mx_db_sqlite(db),
                       "SELECT id FROM messages m WHERE session = ?1 AND NOT EXISTS"
                       " (SELECT 1 FROM messages c WHERE c.parent = m.id) ORDER BY id",
                       -1, &st, NULL);
    for (size_t s = 0; s < sl.n; s++) {
        int64_t sid = sl.v[s].id;
        struct mx_msg_list act;
        if (mx_db_active_path(db, sid, &act, &err) != 0) {
            printf("session %lld: the active path does not load: %s\n", (long long)sid, err.msg);
            bad = 1;
            continue;
        }
        bad |= check_branch(db, sid, sl.v[s].active_leaf, act.v, act.n);
        n_branches++;
        mx_msg_list_free(&act);
        if (dump)
            printf("S%lld leaf=%lld title=%s\n", (long long)sid, (long long)sl.v[s].active_leaf,
                   sl.v[s].title);
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, sid);
        while (sqlite3_step(st) == SQLITE_ROW) {
            int64_t leaf = sqlite3_column_int64(st, 0);
            struct mx_msg_list p;
            if (path_to(db, leaf, &p) != 0) {
                printf("session %lld: the branch to %lld does not load\n", (long long)sid,
                       (long long)leaf);
                bad = 1;
            } else {
                bad |= check_branch(db, sid, leaf, p.v, p.n);
                n_branches++;
            }
            mx_msg_list_free(&p);
        }
        if (!dump)
            continue;
        /* every message of the session, in id order */
        sqlite3_stmt *all = NULL;
        sqlite3_prepare_v2(mx_db_sqlite(db),
                           "SELECT id FROM messages WHERE session = ?1 ORDER BY id",
                           -1, &all, NULL);
        sqlite3_bind_int64(all, 1, sid);
        while (sqlite3_step(all) == SQLITE_ROW) {
            struct mx_msg m;
            if (mx_db_msg_get(db, sqlite3_column_int64(all, 0), &m, NULL) != 0)
                continue;
            printf("%lld %lld %s %s %d/%d %.*s\n", (long long)m.id, (long long)m.parent,
                   mx_role_name(m.role), state_name(m.state), m.sibling_index, m.sibling_count,
                   (int)strcspn(m.content, "\n"), m.content);
            mx_msg_deinit(&m);
        }
        sqlite3_finalize(all);
        /* and its images: "I <message> <path>" */
        sqlite3_prepare_v2(mx_db_sqlite(db),
                           "SELECT message, path FROM images WHERE session = ?1 ORDER BY id", -1,
                           &all, NULL);
        sqlite3_bind_int64(all, 1, sid);
        while (sqlite3_step(all) == SQLITE_ROW)
            printf("I %lld %s\n", (long long)sqlite3_column_int64(all, 0),
                   (const char *)sqlite3_column_text(all, 1));
        sqlite3_finalize(all);
    }
    sqlite3_finalize(st);
    if (!bad)
        printf("ok: %zu sessions, %zu branches take the next turn\n", sl.n, n_branches);
    mx_session_list_free(&sl);
    mx_db_close(db);
    return bad;
}
