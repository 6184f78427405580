/* test_tools.c - the tools a chat model may call (app/tools.h): the registry from the config
 * (and its refusals), the argument check (never an undeclared argument), read_file's fence
 * (realpath, symlinks, "..", size, text only), user commands (no shell: `;` and `$()` in
 * arguments are inert; stdout bounded; killed on timeout; exit status and stderr reported; an
 * early exit does not kill mixel with SIGPIPE), the calls of an answer as the history stores
 * them (and the history's schema-2 migration), and generate_image's arguments as an image
 * request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app/config.h"
#include "app/image_job.h"
#include "app/tools.h"
#include "core/base/util.h"
#include "core/llm/grammar.h"
#include "history/db.h"
#include <sqlite3.h>

static char g_dir[256];   /* temp folder: config, the allowed folder, a forbidden one */
static char g_allow[300]; /* g_dir/allowed */
static char g_out[300];   /* g_dir/outside */

/* Writes text (n bytes; n 0: strlen) to path. */
static void put(const char *path, const char *text, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, n ? n : strlen(text), f);
    fclose(f);
}

/* A registry from the config text cfg_json (NULL: none), allowing g_allow on the command line. */
static struct mx_tools *tools_from(const char *cfg_json, int *rc, struct mx_err *err) {
    struct mx_config *c = NULL;
    if (cfg_json) {
        char path[400];
        snprintf(path, sizeof path, "%s/config.json", g_dir);
        put(path, cfg_json, 0);
        assert_int_equal(mx_config_load(&c, path, err), 0);
    }
    const char *dirs[] = {g_allow};
    struct mx_tools *t = NULL;
    *rc = mx_tools_new(&t, c, dirs, 1, true, err);
    mx_config_free(c);
    return t;
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/mx_tools_XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_allow, sizeof g_allow, "%s/allowed", g_dir);
    snprintf(g_out, sizeof g_out, "%s/outside", g_dir);
    assert_int_equal(mkdir(g_allow, 0700), 0);
    assert_int_equal(mkdir(g_out, 0700), 0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_registry(void **state) {
    (void)state;
    struct mx_err err = {0};
    int rc;
    struct mx_tools *t = tools_from(
        "{\"tools\": [{\"name\": \"echo_json\", \"description\": \"echoes\", \"parameters\": "
        "{\"type\": \"object\", \"properties\": {\"q\": {\"type\": \"string\"}}}, "
        "\"command\": [\"/bin/cat\"], \"timeout_s\": 2, \"max_output\": 100}]}", &rc, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(t->n, 3);
    assert_string_equal(t->v[0].name, "read_file");
    assert_string_equal(t->v[1].name, "generate_image");
    const struct mx_tool *e = mx_tools_find(t, "echo_json");
    assert_non_null(e);
    assert_int_equal(e->kind, MX_TOOL_COMMAND);
    assert_string_equal(e->argv[0], "/bin/cat");
    assert_null(e->argv[1]);
    assert_int_equal(e->max_output, 100);
    assert_string_equal(t->defs[2].name, "echo_json");
    assert_non_null(strstr(t->defs[2].parameters, "\"q\""));
    assert_null(mx_tools_find(t, "nope"));
    mx_tools_free(t);

    /* the object form: allowed folders in the config, tools under "list" */
    char cfg[800];
    snprintf(cfg, sizeof cfg, "{\"tools\": {\"allow_dirs\": [\"%s\"], \"list\": []}}", g_out);
    t = tools_from(cfg, &rc, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(t->n_allow, 2);
    mx_tools_free(t);

    /* refusals name the entry */
    static const struct { const char *json, *says; } bad[] = {
        {"{\"tools\": [{\"name\": \"x\", \"command\": [\"cat\"]}]}", "absolute path"},
        {"{\"tools\": [{\"name\": \"x y\", \"command\": [\"/bin/cat\"]}]}", "tools[0].name"},
        {"{\"tools\": [{\"name\": \"x\", \"command\": [\"/bin/cat\"], \"shell\": true}]}",
         "unknown key 'shell'"},
        {"{\"tools\": [{\"name\": \"x\", \"command\": \"/bin/cat\"}]}", "tools[0].command"},
        {"{\"tools\": [{\"name\": \"x\", \"command\": [\"/bin/cat\"], \"timeout_s\": 0}]}",
         "timeout_s"},
        {"{\"tools\": [{\"name\": \"read_file\", \"command\": [\"/bin/cat\"]}]}",
         "already a tool"},
        {"{\"tools\": {\"allow_dirs\": [\"/no/such/dir/here\"]}}", "allow_dirs[0]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mx_err_clear(&err);
        t = tools_from(bad[i].json, &rc, &err);
        assert_null(t);
        assert_true(rc < 0);
        if (!strstr(err.msg, bad[i].says))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].says);
    }
    /* no folder allowed: no read_file offered at all */
    t = NULL;
    assert_int_equal(mx_tools_new(&t, NULL, NULL, 0, false, &err), 0);
    assert_int_equal(t->n, 0);
    assert_null(mx_tools_find(t, "read_file"));
    mx_tools_free(t);
}

static void test_args_checked(void **state) {
    (void)state;
    struct mx_err err = {0};
    int rc;
    struct mx_tools *t = tools_from(
        "{\"tools\": [{\"name\": \"pick\", \"parameters\": {\"type\": \"object\", "
        "\"properties\": {\"n\": {\"type\": \"integer\"}, \"c\": {\"enum\": [\"red\", "
        "\"blue\"]}}, \"required\": [\"n\"]}, \"command\": [\"/bin/cat\"]}, "
        "{\"name\": \"noargs\", \"command\": [\"/bin/cat\"]}]}", &rc, &err);
    assert_int_equal(rc, 0);
    const struct mx_tool *p = mx_tools_find(t, "pick"), *z = mx_tools_find(t, "noargs");
    json_t *a = NULL;
    assert_int_equal(mx_tool_check_args(p, "{\"n\": 3, \"c\": \"red\"}", &a, &err), 0);
    assert_int_equal(json_integer_value(json_object_get(a, "n")), 3);
    json_decref(a);
    static const struct { const char *args, *says; } bad[] = {
        {"{\"n\": 3, \"extra\": 1}", "'extra' is not declared"},
        {"{\"c\": \"red\"}", "'n' is missing"},
        {"{\"n\": \"3\"}", "type integer"},
        {"{\"n\": 1, \"c\": \"green\"}", "allowed values"},
        {"[1]", "JSON object"},
        {"{\"n\": 1", "not JSON"},
        {"{\"n\": 1, \"n\": 2}", "not JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        mx_err_clear(&err);
        assert_int_equal(mx_tool_check_args(p, bad[i].args, NULL, &err), MX_EINVAL);
        if (!strstr(err.msg, bad[i].says))
            fail_msg("case %zu: '%s' lacks '%s'", i, err.msg, bad[i].says);
    }
    /* a tool without declared parameters takes none */
    assert_int_equal(mx_tool_check_args(z, "{}", NULL, &err), 0);
    assert_int_equal(mx_tool_check_args(z, NULL, NULL, &err), 0);
    assert_int_equal(mx_tool_check_args(z, "{\"x\": 1}", NULL, &err), MX_EINVAL);
    /* and nothing runs when the check fails */
    char *res = NULL;
    assert_int_equal(mx_tool_run(t, p, "{\"n\": 1, \"sneaky\": true}", NULL, NULL, &res, &err),
                     MX_EINVAL);
    assert_null(res);
    mx_tools_free(t);
}

static void test_read_file_fence(void **state) {
    (void)state;
    struct mx_err err = {0};
    int rc;
    struct mx_tools *t = tools_from(NULL, &rc, &err);
    assert_int_equal(rc, 0);
    char p[600], q[600];
    snprintf(p, sizeof p, "%s/notes.txt", g_allow);
    put(p, "hello, naïve world\n", 0);
    snprintf(p, sizeof p, "%s/secret.txt", g_out);
    put(p, "secret\n", 0);
    snprintf(q, sizeof q, "%s/link.txt", g_allow); /* a link out of the fence */
    assert_int_equal(symlink(p, q), 0);
    snprintf(p, sizeof p, "%s/bin.dat", g_allow);
    put(p, "ab\0cd", 5);
    snprintf(p, sizeof p, "%s/bad.txt", g_allow);
    put(p, "\xff\xfe", 2);
    snprintf(p, sizeof p, "%s/big.txt", g_allow);
    char *big = malloc(MX_TOOL_READ_MAX + 2);
    memset(big, 'a', MX_TOOL_READ_MAX + 1);
    big[MX_TOOL_READ_MAX + 1] = '\0';
    put(p, big, 0);
    free(big);
    snprintf(p, sizeof p, "%s/sub", g_allow);
    assert_int_equal(mkdir(p, 0700), 0);

    const struct mx_tool *rf = mx_tools_find(t, "read_file");
    char *text = NULL;
    assert_int_equal(mx_tool_run(t, rf, "{\"path\": \"notes.txt\"}", NULL, NULL, &text, &err), 0);
    assert_string_equal(text, "hello, naïve world\n");
    free(text);
    snprintf(p, sizeof p, "{\"path\": \"%s/sub/../notes.txt\"}", g_allow);
    assert_int_equal(mx_tool_run(t, rf, p, NULL, NULL, &text, &err), 0);
    free(text);

    static const struct { const char *path; int rc; const char *says; } bad[] = {
        {"link.txt", MX_EPERM, "outside the allowed folders"},
        {"../outside/secret.txt", MX_EPERM, "outside the allowed folders"},
        {"/etc/passwd", MX_EPERM, "outside the allowed folders"},
        {"bin.dat", MX_EFORMAT, "not a text file"},
        {"bad.txt", MX_EFORMAT, "not a text file"},
        {"big.txt", MX_ERANGE, "too big"},
        {"sub", MX_EPERM, "not a regular file"},
        {"missing.txt", MX_ENOENT, "missing.txt"},
        {"", MX_EINVAL, "no path"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        text = NULL;
        mx_err_clear(&err);
        rc = mx_tool_read_file(t, bad[i].path, &text, &err);
        if (rc != bad[i].rc || !strstr(err.msg, bad[i].says))
            fail_msg("case %zu (%s): rc %d '%s'", i, bad[i].path, rc, err.msg);
        assert_null(text);
    }
    /* the allowed folder itself may be a link: what counts is where it leads */
    snprintf(q, sizeof q, "%s/alias", g_dir);
    assert_int_equal(symlink(g_allow, q), 0);
    const char *dirs[] = {q};
    struct mx_tools *t2 = NULL;
    assert_int_equal(mx_tools_new(&t2, NULL, dirs, 1, false, &err), 0);
    assert_int_equal(mx_tool_read_file(t2, "notes.txt", &text, &err), 0);
    free(text);
    assert_int_equal(mx_tool_read_file(t2, "link.txt", &text, &err), MX_EPERM);
    mx_tools_free(t2);
    mx_tools_free(t);
}

/* A command tool made by hand (what the config's entries become). */
static struct mx_tool cmd_tool(char **argv, double timeout_s, size_t max_output) {
    struct mx_tool t = {.kind = MX_TOOL_COMMAND, .name = "t", .argv = argv,
                        .timeout_s = timeout_s, .max_output = max_output};
    return t;
}

static void test_command_no_shell(void **state) {
    (void)state;
    struct mx_err err = {0};
    int rc;
    char mark[400];
    snprintf(mark, sizeof mark, "%s/pwned", g_dir);
    char cfg[1200];
    snprintf(cfg, sizeof cfg,
             "{\"tools\": [{\"name\": \"echo_json\", \"parameters\": {\"type\": \"object\", "
             "\"properties\": {\"q\": {\"type\": \"string\"}}}, \"command\": [\"/bin/cat\"]}]}");
    struct mx_tools *t = tools_from(cfg, &rc, &err);
    assert_int_equal(rc, 0);
    char args[1600];
    snprintf(args, sizeof args, "{\"q\": \"x; touch %s; $(touch %s) `touch %s`\"}", mark, mark,
             mark);
    char *res = NULL;
    assert_int_equal(mx_tool_run(t, mx_tools_find(t, "echo_json"), args, NULL, NULL, &res,
                                 &err), 0);
    /* the command got the arguments as data on stdin, byte for byte, and nothing ran them */
    json_t *back = json_loads(res, 0, NULL);
    json_t *sent = json_loads(args, 0, NULL);
    assert_non_null(back);
    assert_true(json_equal(back, sent));
    json_decref(back);
    json_decref(sent);
    free(res);
    assert_int_equal(access(mark, F_OK), -1);
    mx_tools_free(t);
}

static void test_command_bounds(void **state) {
    (void)state;
    struct mx_err err = {0};
    char *res = NULL;
    /* stdout bounded */
    char *seq[] = {"/usr/bin/seq", "100000", NULL};
    struct mx_tool t = cmd_tool(seq, 5, 1000);
    assert_int_equal(mx_tool_run_command(&t, "{}", NULL, NULL, &res, &err), 0);
    assert_true(strlen(res) < 1100);
    assert_non_null(strstr(res, "[output cut:"));
    assert_memory_equal(res, "1\n2\n3\n", 6);
    free(res);
    /* killed on timeout, its children too (the group), in about the time given */
    char *sleeper[] = {"/bin/sleep", "30", NULL};
    t = cmd_tool(sleeper, 0.3, 100);
    double t0 = mx_time_s();
    mx_err_clear(&err);
    assert_int_equal(mx_tool_run_command(&t, "{}", NULL, NULL, &res, &err), MX_ETIMEDOUT);
    assert_true(mx_time_s() - t0 < 5);
    assert_null(res);
    assert_non_null(strstr(err.msg, "killed after 0.3 s"));
    /* a failure: exit status and the stderr tail go to the model */
    char *ls[] = {"/bin/ls", "/no/such/file/here", NULL};
    t = cmd_tool(ls, 5, 1000);
    assert_int_equal(mx_tool_run_command(&t, "{}", NULL, NULL, &res, &err), 0);
    assert_non_null(strstr(res, "exit status"));
    assert_non_null(strstr(res, "stderr:"));
    assert_non_null(strstr(res, "/no/such/file/here"));
    free(res);
    /* a program that does not exist */
    char *none[] = {"/no/such/program", NULL};
    t = cmd_tool(none, 5, 1000);
    assert_int_equal(mx_tool_run_command(&t, "{}", NULL, NULL, &res, &err), 0);
    assert_non_null(strstr(res, "exit status 127"));
    free(res);
    /* a program that exits without reading a large input: no SIGPIPE for us */
    size_t n = 4 << 20;
    char *in = malloc(n + 1);
    memset(in, ' ', n);
    in[0] = '{';
    in[n - 1] = '}';
    in[n] = '\0';
    char *tru[] = {"/bin/true", NULL};
    t = cmd_tool(tru, 5, 1000);
    assert_int_equal(mx_tool_run_command(&t, in, NULL, NULL, &res, &err), 0);
    assert_string_equal(res, "");
    free(res);
    free(in);
}

/* Cancels at once (the second poll). */
static bool cancel_now(void *ud) {
    int *k = ud;
    return ++*k > 1;
}

static void test_command_cancel(void **state) {
    (void)state;
    struct mx_err err = {0};
    char *res = NULL;
    char *sleeper[] = {"/bin/sleep", "30", NULL};
    struct mx_tool t = cmd_tool(sleeper, 30, 100);
    int k = 0;
    double t0 = mx_time_s();
    assert_int_equal(mx_tool_run_command(&t, "{}", cancel_now, &k, &res, &err), MX_ECANCELED);
    assert_true(mx_time_s() - t0 < 5);
}

static void test_calls_parse(void **state) {
    (void)state;
    struct mx_err err = {0};
    struct mx_tool_calls c;
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, "just text", 9, &c, &err), 0);
    assert_int_equal(c.n_calls, 0);
    assert_string_equal(c.content, "just text");
    mx_tool_calls_free(&c);
    const char *ans = "Let me draw.\n[TOOL_CALLS] [{\"name\": \"generate_image\", \"arguments\": "
                      "{\"prompt\": \"a red fox\", \"width\": 64}, \"id\": \"abcDEF123\"}, "
                      "{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.txt\"}}]";
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, ans, strlen(ans), &c, &err), 0);
    assert_int_equal(c.n_calls, 2);
    assert_string_equal(c.content, "Let me draw.");
    assert_string_equal(c.calls[0].name, "generate_image");
    assert_string_equal(c.calls[0].id, "abcDEF123");
    json_t *a0 = json_loads(c.calls[0].arguments, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(a0, "prompt")), "a red fox");
    json_decref(a0);
    assert_int_equal(strlen(c.calls[1].id), 9); /* made up: 9 characters as v3 wants */
    char *js = NULL;
    assert_int_equal(mx_tool_calls_to_json(c.calls, c.n_calls, &js), 0);
    struct mx_tool_calls d;
    assert_int_equal(mx_tool_calls_from_json(js, &d, &err), 0);
    assert_int_equal(d.n_calls, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_string_equal(d.calls[i].id, c.calls[i].id);
        assert_string_equal(d.calls[i].name, c.calls[i].name);
        assert_string_equal(d.calls[i].arguments, c.calls[i].arguments);
    }
    free(js);
    mx_tool_calls_free(&c);
    mx_tool_calls_free(&d);
    /* garbled calls are an error the user sees, not a crash (core/text/tool_call.h parses;
     * test_tool_call tests it: here, what the chat relies on) */
    static const char *bad[] = {"[TOOL_CALLS] [{\"name\": ", "[TOOL_CALLS] []",
                                "[TOOL_CALLS] [{\"arguments\": {}}]",
                                "[TOOL_CALLS] [{\"name\": \"x\", \"arguments\": 3}]",
                                "[TOOL_CALLS] {\"name\": \"x\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, bad[i], strlen(bad[i]), &c,
                                             &err), MX_EFORMAT);
        assert_int_equal(c.n_calls, 0);
        mx_tool_calls_free(&c);
    }
    assert_int_equal(mx_tool_calls_from_json("{}", &d, &err), MX_EFORMAT);
}

static void test_call_line(void **state) {
    (void)state;
    char buf[200];
    mx_tool_call_line("read_file", "{\"path\": \"/tmp/a.txt\"}", 40, buf, sizeof buf);
    assert_string_equal(buf, "read_file(path=\"/tmp/a.txt\")");
    mx_tool_call_line("x", "{\"a\": \"0123456789abcdef\", \"b\": 2}", 6, buf, sizeof buf);
    assert_string_equal(buf, "x(a=\"01234\xe2\x80\xa6, b=2)");
    /* escape sequences from the model never reach the line */
    mx_tool_call_line("x\x1b[31m", "{\"a\": \"\x1b]52;c;aGk=\x07\"}", 80, buf, sizeof buf);
    assert_null(strchr(buf, '\x1b'));
    assert_null(strchr(buf, '\x07'));
    mx_tool_call_line("x", "not json", 80, buf, sizeof buf);
    assert_string_equal(buf, "x(not json)");
    mx_tool_call_line("x", "{\"a\": 1}", 80, buf, 4);
    assert_string_equal(buf, "x(a");
}

static void test_image_req(void **state) {
    (void)state;
    struct mx_err err = {0};
    int rc;
    struct mx_tools *t = tools_from(NULL, &rc, &err);
    const struct mx_tool *g = mx_tools_find(t, "generate_image");
    struct mx_image_req r;
    assert_int_equal(mx_tool_image_req(g, "{\"prompt\": \"a fox\", \"negative_prompt\": "
                                          "\"blur\", \"width\": 64, \"height\": 128, \"steps\": "
                                          "2, \"seed\": 42}", &r, &err), 0);
    assert_string_equal(r.prompt, "a fox");
    assert_string_equal(r.negative, "blur");
    assert_int_equal(r.width, 64);
    assert_int_equal(r.height, 128);
    assert_int_equal(r.steps, 2);
    assert_true(r.seed_set);
    assert_int_equal(r.seed, 42);
    assert_true(r.cfg < 0);
    mx_image_req_free(&r);
    assert_int_equal(mx_tool_image_req(g, "{\"prompt\": \"a fox\"}", &r, &err), 0);
    assert_false(r.seed_set);
    assert_int_equal(r.width, 0);
    mx_image_req_free(&r);
    static const char *bad[] = {"{\"prompt\": \"\"}", "{\"prompt\": \"a\", \"width\": 60}",
                                "{\"prompt\": \"a\", \"steps\": 0}", "{\"width\": 64}",
                                "{\"prompt\": \"a\", \"model\": \"x\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(mx_tool_image_req(g, bad[i], &r, &err), MX_EINVAL);
    mx_tools_free(t);
}


/* Runs sql on the raw connection; fails the test on an error. */
static void exec_sql(sqlite3 *h, const char *sql) {
    char *e = NULL;
    if (sqlite3_exec(h, sql, NULL, NULL, &e) != SQLITE_OK)
        fail_msg("%s: %s", sql, e ? e : "?");
}

/* A schema-1 file (before tool calls) with a conversation is migrated on open: the old rows
 * read back with no calls, and calls and results are then stored, read and exported. */
static void test_history_migration(void **state) {
    (void)state;
    char p[400];
    snprintf(p, sizeof p, "%s/h.db", g_dir);
    struct mx_db_opts o = {.path = p};
    struct mx_db *db = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_db_open(&db, &o, &err), 0);
    int64_t s = 0, u = 0, a = 0, t = 0;
    assert_int_equal(mx_db_session_create(db, "t", NULL, NULL, NULL, NULL, &s, &err), 0);
    assert_int_equal(mx_db_msg_append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_USER, "draw a fox", 0,
                                      NULL, &u, &err), 0);
    /* back to schema 1, as an older mixel left it */
    sqlite3 *h = mx_db_sqlite(db);
    exec_sql(h, "ALTER TABLE messages DROP COLUMN tool_calls;"
                "ALTER TABLE messages DROP COLUMN tool_call_id;"
                "DELETE FROM migrations WHERE version = 2; PRAGMA user_version = 1");
    mx_db_close(db);
    assert_int_equal(mx_db_open(&db, &o, &err), 0);
    assert_false(mx_db_readonly(db));
    struct mx_msg m;
    assert_int_equal(mx_db_msg_get(db, u, &m, &err), 0);
    assert_string_equal(m.content, "draw a fox");
    assert_string_equal(m.tool_calls, "");
    assert_string_equal(m.tool_call_id, "");
    mx_msg_deinit(&m);
    /* the turn: an answer calling a tool, the tool's result */
    const char *calls = "[{\"id\":\"abcDEF123\",\"name\":\"generate_image\","
                        "\"arguments\":\"{\\\"prompt\\\":\\\"a fox\\\"}\"}]";
    assert_int_equal(mx_db_msg_append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_ASSISTANT, "", 0, NULL,
                                      &a, &err), 0);
    assert_int_equal(mx_db_msg_set_tool(db, a, calls, NULL, &err), 0);
    assert_int_equal(mx_db_msg_append(db, s, MX_DB_PARENT_LEAF, MX_ROLE_TOOL, "image saved", 0,
                                      NULL, &t, &err), 0);
    assert_int_equal(mx_db_msg_set_tool(db, t, NULL, "abcDEF123", &err), 0);
    assert_int_equal(mx_db_msg_set_tool(db, t, "{\"not\": \"a list\"}", NULL, &err),
                     MX_EINVAL);
    assert_int_equal(mx_db_msg_set_tool(db, 999999, NULL, "x", &err), MX_ENOENT);
    mx_db_close(db);
    assert_int_equal(mx_db_open(&db, &o, &err), 0);
    struct mx_msg_list l;
    assert_int_equal(mx_db_active_path(db, s, &l, &err), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[1].tool_calls, calls);
    assert_int_equal(l.v[2].role, MX_ROLE_TOOL);
    assert_string_equal(l.v[2].tool_call_id, "abcDEF123");
    struct mx_tool_calls back;
    assert_int_equal(mx_tool_calls_from_json(l.v[1].tool_calls, &back, &err), 0);
    assert_string_equal(back.calls[0].arguments, "{\"prompt\":\"a fox\"}");
    mx_tool_calls_free(&back);
    mx_msg_list_free(&l);
    char *js = NULL;
    assert_int_equal(mx_db_export_json(db, s, &js, &err), 0);
    json_t *root = json_loads(js, 0, NULL);
    json_t *msgs = json_object_get(root, "messages");
    json_t *tc = json_object_get(json_array_get(msgs, 1), "tool_calls");
    assert_true(json_is_array(tc));
    assert_string_equal(json_string_value(json_object_get(json_array_get(tc, 0), "name")),
                        "generate_image");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 2),
                                                          "tool_call_id")), "abcDEF123");
    json_decref(root);
    free(js);
    assert_int_equal(mx_db_export_md(db, s, &js, &err), 0);
    assert_non_null(strstr(js, "generate_image"));
    assert_non_null(strstr(js, "the result of call abcDEF123"));
    free(js);
    mx_db_close(db);
}

/* The lazy call grammar (core/text/tool_call.h mx_tool_grammar) from the registry's tools, as
 * the chat asks for it: every tool's schema converted; a well-formed call of a declared tool is
 * accepted, an undeclared argument or an unknown tool is not (the model cannot write them), and
 * a schema the converter refuses names its tool. */
static void test_grammar(void **state) {
    (void)state;
    struct mx_err err = {0};
    int rc;
    struct mx_tools *t = tools_from(
        "{\"tools\": [{\"name\": \"pick\", \"parameters\": {\"type\": \"object\", "
        "\"properties\": {\"c\": {\"enum\": [\"red\", \"blue\"]}}, \"required\": [\"c\"]}, "
        "\"command\": [\"/bin/cat\"]}]}", &rc, &err);
    assert_int_equal(rc, 0);
    char *gbnf = NULL;
    const char *trigger = NULL;
    assert_int_equal(mx_tool_grammar(MX_TMPL_MISTRAL_V3, t->defs, t->n, &gbnf, &trigger, &err),
                     0);
    assert_string_equal(trigger, "[TOOL_CALLS]");
    struct mx_grammar *g = NULL;
    assert_int_equal(mx_grammar_parse(gbnf, strlen(gbnf), "tools", &g, &err), 0);
    static const struct { const char *text; bool ok; } cases[] = {
        {"[TOOL_CALLS] [{\"name\": \"pick\", \"arguments\": {\"c\": \"red\"}}]", true},
        {"[TOOL_CALLS] [{\"name\": \"generate_image\", \"arguments\": {\"prompt\": \"a fox\", "
         "\"width\": 64}}]", true},
        {"[TOOL_CALLS] [{\"name\": \"read_file\", \"arguments\": {\"path\": \"a.txt\"}}]", true},
        {"[TOOL_CALLS] [{\"name\": \"pick\", \"arguments\": {\"c\": \"green\"}}]", false},
        {"[TOOL_CALLS] [{\"name\": \"pick\", \"arguments\": {\"c\": \"red\", \"x\": 1}}]", false},
        {"[TOOL_CALLS] [{\"name\": \"read_file\", \"arguments\": {\"path\": \"a\", \"mode\": "
         "\"w\"}}]", false},
        {"[TOOL_CALLS] [{\"name\": \"rm_rf\"", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mx_grammar_reset(g);
        bool ok = mx_grammar_accept(g, cases[i].text, strlen(cases[i].text)) == 0 &&
                  mx_grammar_complete(g);
        if (ok != cases[i].ok)
            fail_msg("case %zu: %s %s", i, cases[i].text, ok ? "accepted" : "refused");
    }
    mx_grammar_free(g);
    free(gbnf);
    mx_tools_free(t);
    /* a schema the converter cannot follow: the error names the tool */
    t = tools_from("{\"tools\": [{\"name\": \"odd\", \"parameters\": {\"type\": \"object\", "
                   "\"properties\": {\"a\": {\"not\": {\"type\": \"string\"}}}}, "
                   "\"command\": [\"/bin/cat\"]}]}", &rc, &err);
    assert_int_equal(rc, 0);
    mx_err_clear(&err);
    assert_int_equal(mx_tool_grammar(MX_TMPL_MISTRAL_V3, t->defs, t->n, &gbnf, &trigger, &err),
                     MX_EUNSUP);
    assert_null(gbnf);
    assert_non_null(strstr(err.msg, "tool 'odd'"));
    mx_tools_free(t);
}

/* A turn with a call, round trip through the real pieces: the scripted answer parsed by
 * core/text/tool_call.h, stored as the history stores it and read back, rendered with the
 * mistral-v3 template with the registry's tools and the tool's result: the prompt describes the
 * tools, replays the call with its id and arguments, and carries the result as a JSON string
 * answering that id; the call in the prompt parses back to the same call. */
static void test_template_round_trip(void **state) {
    (void)state;
    struct mx_err err = {0};
    int rc;
    struct mx_tools *t = tools_from(NULL, &rc, &err);
    assert_int_equal(rc, 0);
    const char *ans = "I will draw it.\n[TOOL_CALLS] [{\"name\": \"generate_image\", "
                      "\"arguments\": {\"prompt\": \"a \\\"red\\\" fox\", \"seed\": 42}}]";
    struct mx_tool_calls c, d;
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, ans, strlen(ans), &c, &err), 0);
    assert_int_equal(c.n_calls, 1);
    char *stored = NULL;
    assert_int_equal(mx_tool_calls_to_json(c.calls, c.n_calls, &stored), 0);
    assert_int_equal(mx_tool_calls_from_json(stored, &d, &err), 0);
    char *result = mx_tool_result_text(MX_TMPL_MISTRAL_V3, "drawn: 1-42.png, 64x64 \"ok\"\n\xff");
    assert_non_null(result);
    struct mx_chat_msg msgs[] = {
        {.role = MX_ROLE_USER, .content = "draw a fox"},
        {.role = MX_ROLE_ASSISTANT, .content = "", .tool_calls = d.calls, .n_tool_calls = 1},
        {.role = MX_ROLE_TOOL, .content = result, .tool_call_id = d.calls[0].id},
    };
    struct mx_tmpl_opts o = {.tools = t->defs, .n_tools = t->n};
    struct mx_tmpl_prompt p;
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V3, msgs, 3, &o, &p, &err), 0);
    assert_non_null(strstr(p.text, "[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": "
                                   "{\"name\": \"read_file\""));
    assert_non_null(strstr(p.text, "{\"name\": \"generate_image\", \"description\": "));
    char want[300];
    snprintf(want, sizeof want, "\"id\": \"%s\"}]", c.calls[0].id);
    assert_non_null(strstr(p.text, want));
    /* the result: valid JSON between the markers, answering the call's id */
    const char *r0 = strstr(p.text, "[TOOL_RESULTS] "), *r1 = strstr(p.text, "[/TOOL_RESULTS]");
    assert_non_null(r0);
    assert_non_null(r1);
    r0 += strlen("[TOOL_RESULTS] ");
    json_t *res = json_loadb(r0, (size_t)(r1 - r0), 0, NULL);
    assert_non_null(res);
    assert_string_equal(json_string_value(json_object_get(res, "content")),
                        "drawn: 1-42.png, 64x64 \"ok\"\n\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(res, "call_id")), c.calls[0].id);
    json_decref(res);
    /* the call as the prompt replays it parses back to the same call */
    const char *call = strstr(p.text, "[TOOL_CALLS]");
    struct mx_tool_calls e;
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, call, (size_t)(r0 - call), &e,
                                         &err), 0);
    assert_int_equal(e.n_calls, 1);
    assert_string_equal(e.calls[0].name, "generate_image");
    assert_string_equal(e.calls[0].id, c.calls[0].id);
    json_t *a1 = json_loads(e.calls[0].arguments, 0, NULL), *a2 = json_loads(c.calls[0].arguments,
                                                                             0, NULL);
    assert_true(json_equal(a1, a2));
    json_decref(a1);
    json_decref(a2);
    /* other families carry the result as it is */
    char *raw = mx_tool_result_text(MX_TMPL_CHATML, "plain");
    assert_string_equal(raw, "plain");
    free(raw);
    mx_tool_calls_free(&e);
    mx_tmpl_prompt_free(&p);
    free(result);
    free(stored);
    mx_tool_calls_free(&c);
    mx_tool_calls_free(&d);
    mx_tools_free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_args_checked),
        cmocka_unit_test(test_read_file_fence),
        cmocka_unit_test(test_command_no_shell),
        cmocka_unit_test(test_command_bounds),
        cmocka_unit_test(test_command_cancel),
        cmocka_unit_test(test_calls_parse),
        cmocka_unit_test(test_call_line),
        cmocka_unit_test(test_image_req),
        cmocka_unit_test(test_history_migration),
        cmocka_unit_test(test_grammar),
        cmocka_unit_test(test_template_round_trip),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
