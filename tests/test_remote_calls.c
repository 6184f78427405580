/* test_remote_calls.c - the remote engine's tool-call gathering (net/remote_calls.h): streamed
 * fragments split inside names and arguments, per index and interleaved, become Mistral v3 call
 * text that mx_tool_calls_parse reads back to the same names and arguments (after any content);
 * a whole message's calls without index; empty arguments as {}; arguments that are not a JSON
 * object give MX_EFORMAT quoting the server's text; too many calls and too-long names and
 * arguments are MX_ERANGE; no calls give "". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/tool_call.h"
#include "net/remote_calls.h"

/* Adds one tool_calls array given as JSON text; returns the code. */
static int add(struct mx_remote_calls *c, const char *json, struct mx_err *err) {
    json_t *j = json_loads(json, 0, NULL);
    assert_non_null(j);
    int rc = mx_remote_calls_add(c, j, err);
    json_decref(j);
    return rc;
}

/* Parses "content" + the calls' text with the chat's Mistral v3 parser. */
static void parse_back(const struct mx_remote_calls *c, const char *content,
                       struct mx_tool_calls *out) {
    char *t = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_remote_calls_text(c, &t, &err), 0);
    size_t n = strlen(content) + strlen(t) + 1;
    char *all = malloc(n);
    assert_non_null(all);
    strcpy(all, content);
    strcat(all, t);
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, all, strlen(all), out, &err), 0);
    free(all);
    free(t);
}

static void test_fragments_parse_back(void **state) {
    (void)state;
    struct mx_remote_calls c = {0};
    struct mx_err err = {0};
    /* two calls interleaved, names and arguments cut anywhere (inside a key, a string, a
     * UTF-8 character's escape) */
    assert_int_equal(add(&c, "[{\"index\": 0, \"id\": \"call_abc\", \"type\": \"function\", "
                             "\"function\": {\"name\": \"read_\", \"arguments\": \"\"}}]", &err), 0);
    assert_int_equal(add(&c, "[{\"index\": 0, \"function\": {\"name\": \"file\", "
                             "\"arguments\": \"{\\\"pa\"}}]", &err), 0);
    assert_int_equal(add(&c, "[{\"index\": 1, \"id\": \"call_2\", \"function\": "
                             "{\"name\": \"get_time\", \"arguments\": \"{\\\"tz\\\": \"}}]",
                         &err), 0);
    assert_int_equal(add(&c, "[{\"index\": 0, \"function\": {\"arguments\": "
                             "\"th\\\": \\\"n\\u00f6te.txt\\\", \\\"n\\\": [1, 2]}\"}}]", &err), 0);
    assert_int_equal(add(&c, "[{\"index\": 1, \"function\": {\"arguments\": \"\\\"UTC\\\"}\"}}]",
                         &err), 0);
    assert_int_equal(c.n, 2);
    struct mx_tool_calls p;
    parse_back(&c, "Let me look.\n", &p);
    assert_string_equal(p.content, "Let me look.");
    assert_int_equal(p.n_calls, 2);
    assert_string_equal(p.calls[0].name, "read_file");
    assert_string_equal(p.calls[0].arguments, "{\"path\": \"n\xc3\xb6te.txt\", \"n\": [1, 2]}");
    assert_string_equal(p.calls[1].name, "get_time");
    assert_string_equal(p.calls[1].arguments, "{\"tz\": \"UTC\"}");
    assert_int_equal(strlen(p.calls[0].id), 9); /* made by the parser, sent back by the TUI */
    mx_tool_calls_free(&p);
    mx_remote_calls_free(&c);
    assert_int_equal(c.n, 0);
}

static void test_whole_message_and_empty_args(void **state) {
    (void)state;
    struct mx_remote_calls c = {0};
    struct mx_err err = {0};
    /* a non-streaming answer's message.tool_calls: no index; arguments "" and as an object */
    assert_int_equal(add(&c, "[{\"id\": \"a\", \"function\": {\"name\": \"now\", \"arguments\": "
                             "\"\"}}, {\"id\": \"b\", \"function\": {\"name\": \"now\", "
                             "\"arguments\": {\"x\": 1}}}]", &err), 0);
    assert_int_equal(c.n, 2);
    struct mx_tool_calls p;
    parse_back(&c, "", &p);
    assert_string_equal(p.content, "");
    assert_int_equal(p.n_calls, 2);
    assert_string_equal(p.calls[0].arguments, "{}");
    assert_string_equal(p.calls[1].arguments, "{\"x\": 1}");
    mx_tool_calls_free(&p);
    mx_remote_calls_free(&c);
    /* none: "" */
    char *t = NULL;
    assert_int_equal(mx_remote_calls_text(&c, &t, &err), 0);
    assert_string_equal(t, "");
    free(t);
}

static void test_bad_arguments(void **state) {
    (void)state;
    struct mx_remote_calls c = {0};
    struct mx_err err = {0};
    assert_int_equal(add(&c, "[{\"index\": 0, \"function\": {\"name\": \"f\", \"arguments\": "
                             "\"{\\\"path\\\": oops\"}}]", &err), 0);
    char *t = NULL;
    assert_int_equal(mx_remote_calls_text(&c, &t, &err), MX_EFORMAT);
    assert_null(t);
    assert_non_null(strstr(err.msg, "the arguments of f are not a JSON object: {\"path\": oops"));
    mx_remote_calls_free(&c);
    /* an array is JSON but not an object; a call without a name */
    struct mx_err e2 = {0}, e3 = {0};
    assert_int_equal(add(&c, "[{\"index\": 0, \"function\": {\"name\": \"f\", \"arguments\": "
                             "\"[1]\"}}]", &e2), 0);
    assert_int_equal(mx_remote_calls_text(&c, &t, &e2), MX_EFORMAT);
    mx_remote_calls_free(&c);
    assert_int_equal(add(&c, "[{\"index\": 0, \"function\": {\"arguments\": \"{}\"}}]", &e3), 0);
    assert_int_equal(mx_remote_calls_text(&c, &t, &e3), MX_EFORMAT);
    assert_non_null(strstr(e3.msg, "without a name"));
    mx_remote_calls_free(&c);
    /* not an array, an entry not an object */
    struct mx_err e4 = {0}, e5 = {0};
    assert_int_equal(add(&c, "{\"index\": 0}", &e4), MX_EFORMAT);
    assert_int_equal(add(&c, "[3]", &e5), MX_EFORMAT);
    mx_remote_calls_free(&c);
}

static void test_bounds(void **state) {
    (void)state;
    struct mx_remote_calls c = {0};
    struct mx_err err = {0};
    char buf[128];
    for (int i = 0; i < MX_REMOTE_MAX_CALLS; i++) {
        snprintf(buf, sizeof buf, "[{\"index\": %d, \"function\": {\"name\": \"f\"}}]", i);
        assert_int_equal(add(&c, buf, &err), 0);
    }
    assert_int_equal(add(&c, "[{\"index\": 99, \"function\": {\"name\": \"f\"}}]", &err),
                     MX_ERANGE);
    mx_remote_calls_free(&c);
    /* a name of 64 bytes is fine, one more is not */
    struct mx_err e2 = {0};
    char name[MX_REMOTE_MAX_NAME + 1];
    memset(name, 'n', MX_REMOTE_MAX_NAME);
    name[MX_REMOTE_MAX_NAME] = '\0';
    char big[256];
    snprintf(big, sizeof big, "[{\"index\": 0, \"function\": {\"name\": \"%s\"}}]", name);
    assert_int_equal(add(&c, big, &e2), 0);
    assert_int_equal(add(&c, "[{\"index\": 0, \"function\": {\"name\": \"x\"}}]", &e2),
                     MX_ERANGE);
    mx_remote_calls_free(&c);
    /* arguments past the cap, in fragments */
    struct mx_err e3 = {0};
    size_t piece = 64 * 1024;
    char *a = malloc(piece + 128);
    assert_non_null(a);
    strcpy(a, "[{\"index\": 0, \"function\": {\"arguments\": \"");
    size_t at = strlen(a);
    memset(a + at, 'a', piece);
    strcpy(a + at + piece, "\"}}]");
    int rc = 0;
    for (int i = 0; i < 5 && rc == 0; i++)
        rc = add(&c, a, &e3);
    assert_int_equal(rc, MX_ERANGE);
    assert_true(c.v[0].args_len <= MX_REMOTE_MAX_ARGS);
    free(a);
    mx_remote_calls_free(&c);
    mx_remote_calls_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fragments_parse_back),
        cmocka_unit_test(test_whole_message_and_empty_args),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
