/* history_writer.c - the victim of tests/history_kill.sh: holds a conversation in a history
 * database the way the chat does (user message appended, assistant answer streamed with a commit
 * per chunk, finished complete or stopped, sometimes regenerated as a branch) until it is killed.
 *
 * Every text is derived from a key written at its start ("U<key>:" / "A<key>:"), so the checker
 * can regenerate what each message must be. After each commit returns, the writer appends
 * "<id> <length>" (or "F <id> <length>" when finished) to a log: the checker then knows what was
 * committed and must still be there, whatever instant the SIGKILL hit.
 *
 * usage: history_writer DB LOG SEED [MAX_ANSWERS]   (MAX_ANSWERS 0 = until killed)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "history/db.h"
#include "tests/history_text.h"

static int log_fd = -1;

/* One log line, with a single write() so a kill leaves at most one unterminated line. */
static void logf_line(const char *tag, int64_t id, size_t len) {
    char line[64];
    int n = snprintf(line, sizeof line, "%s%lld %zu\n", tag, (long long)id, len);
    if (write(log_fd, line, (size_t)n) != n)
        exit(3);
}

static void die(const char *what, const struct mx_err *err) {
    fprintf(stderr, "history_writer: %s: %s\n", what, err->msg);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: history_writer DB LOG SEED [MAX_ANSWERS]\n");
        return 2;
    }
    uint64_t rng = strtoull(argv[3], NULL, 10) * 0x9e3779b97f4a7c15ull + (uint64_t)getpid();
    long max = argc > 4 ? atol(argv[4]) : 0;
    log_fd = open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (log_fd < 0)
        return 1;
    struct mx_db *db;
    struct mx_err err = {0};
    struct mx_db_opts o = {.path = argv[1], .busy_ms = 5000};
    if (mx_db_open(&db, &o, &err) != 0)
        die("open", &err);
    int64_t s;
    if (mx_db_session_find(db, "kill test", &s, &err) != 0) {
        mx_err_clear(&err);
        if (mx_db_session_create(db, "kill test", "/m.gguf", NULL, NULL, NULL, &s, &err) != 0)
            die("create", &err);
    }
    char *text = NULL;
    for (long n = 0; max == 0 || n < max; n++) {
        /* the user's turn: committed before it counts as sent */
        uint64_t key = mx_ht_next(&rng);
        size_t len = mx_ht_user_len(key);
        free(text);
        text = mx_ht_text('U', key, len);
        int64_t u;
        if (mx_db_msg_append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_USER, text, 0, NULL, &u, &err))
            die("append", &err);
        logf_line("", u, len);
        /* one or two answers (the second one a regeneration: a sibling branch) */
        int answers = 1 + (int)(mx_ht_next(&rng) % 4 == 0);
        for (int k = 0; k < answers; k++) {
            key = mx_ht_next(&rng);
            len = mx_ht_answer_len(key);
            free(text);
            text = mx_ht_text('A', key, len);
            bool stop = mx_ht_next(&rng) % 5 == 0; /* the user stops it half-way */
            size_t end = stop ? len / 2 : len;
            int64_t a;
            if (mx_db_msg_begin(db, s, u, MX_ROLE_ASSISTANT, &a, &err))
                die("begin", &err);
            logf_line("", a, 0);
            size_t done = 0;
            while (done < end) {
                size_t chunk = 1 + mx_ht_next(&rng) % 96;
                done = done + chunk > end ? end : done + chunk;
                char c = text[done];
                text[done] = '\0';
                int rc = mx_db_msg_update(db, a, text, (int)done / 4, &err);
                text[done] = c;
                if (rc)
                    die("update", &err);
                logf_line("", a, done);
            }
            char c = text[end];
            text[end] = '\0';
            int rc = mx_db_msg_finish(db, a, text, (int)end / 4, "{\"tok_s\": 1}",
                                      stop ? MX_MSG_PARTIAL : MX_MSG_COMPLETE, &err);
            text[end] = c;
            if (rc)
                die("finish", &err);
            logf_line("F ", a, end);
        }
    }
    free(text);
    mx_db_close(db);
    return 0;
}
