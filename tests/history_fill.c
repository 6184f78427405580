/* history_fill.c - writes the fixed sessions tests/sessions_cli.sh inspects with `mixel
 * sessions`: "alpha" (a system prompt, hostile escape sequences in a title and an answer, a
 * regenerated answer making a 1/2 branch), an untitled-then-named session with an interrupted
 * answer, and a KV snapshot file for alpha so `rm` can be seen removing it.
 *
 * usage: history_fill DB   (prints the ids: "alpha=N beta=M") */
#include <stdio.h>
#include <string.h>

#include "history/db.h"
#include "history/kvsnap.h"

static int check(int rc, const struct mx_err *err) {
    if (rc < 0) {
        fprintf(stderr, "history_fill: %s\n", err->msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 2)
        return 2;
    struct mx_db *db;
    struct mx_err err = {0};
    struct mx_db_opts o = {.path = argv[1]};
    if (check(mx_db_open(&db, &o, &err), &err))
        return 1;
    int64_t a, b, u, x, m;
    int bad = 0;
    bad |= check(mx_db_session_create(db, "alpha", "/models/tiny.gguf", "00000000000000aa",
                                      "chatml", "{\"temp\": 0.5}", &a, &err), &err);
    bad |= check(mx_db_msg_append(db, a, 0, MX_ROLE_SYSTEM, "You are a pirate.", 5, NULL, &x,
                                  &err), &err);
    bad |= check(mx_db_msg_append(db, a, x, MX_ROLE_USER, "Where is the treasure?", 6, NULL, &u,
                                  &err), &err);
    bad |= check(mx_db_msg_append(db, a, u, MX_ROLE_ASSISTANT, "Old answer about parrots", 5,
                                  NULL, &m, &err), &err);
    bad |= check(mx_db_msg_append(db, a, u, MX_ROLE_ASSISTANT,
                                  "Arr, \x1b]0;pwned\x07 buried \x1b[2Jnear the \xc2\x9b"
                                  "31m palm\nsecond line", 9, NULL, &m, &err), &err);
    bad |= check(mx_db_session_create(db, NULL, NULL, NULL, NULL, NULL, &b, &err), &err);
    bad |= check(mx_db_msg_append(db, b, 0, MX_ROLE_USER, "Title \x1b[31mred\x1b[0m please",
                                  3, NULL, &u, &err), &err);
    bad |= check(mx_db_msg_begin(db, b, u, MX_ROLE_ASSISTANT, &m, &err), &err);
    bad |= check(mx_db_msg_update(db, m, "half an answer about kraken \xe2\x80\xae"
                                  "reversed\xe2\x80\xac bad\xff byte", 5, &err), &err);
    char kv[4096];
    const char *slash = strrchr(argv[1], '/');
    snprintf(kv, sizeof kv, "%.*s/kv/%lld.kv", slash ? (int)(slash - argv[1]) : 1,
             slash ? argv[1] : ".", (long long)a);
    struct mx_kvsnap_info in = {.n_ctx = 16, .payload_size = 4};
    bad |= check(mx_kvsnap_save(kv, &in, NULL, "data", &err), &err);
    mx_db_close(db);
    printf("alpha=%lld beta=%lld\n", (long long)a, (long long)b);
    return bad;
}
