/* test_sse.c - the server-sent-events parser (net/sse.h): data lines, multi-line events joined
 * with LF, event names, comments, CRLF / lone CR line ends (also split across chunks), "[DONE]"
 * as plain data, an event without data not dispatched, an unfinished event dropped, every
 * chunking of a stream giving the same events as one feed, the size cap, and a callback's error
 * stopping the stream. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/sse.h"

/* The events one parse gave, as "type|data" lines. */
struct got {
    char text[8192];
    size_t len;
    int n;
    int fail_at;   /* the callback returns MX_EIO at this event (1-based); 0: never */
};

static int on_event(void *ud, const char *type, const char *data, size_t n) {
    struct got *g = ud;
    g->n++;
    assert_int_equal(strlen(data), n); /* NUL-terminated, n bytes */
    int w = snprintf(g->text + g->len, sizeof g->text - g->len, "%s|%s\n", type, data);
    assert_true(w > 0 && (size_t)w < sizeof g->text - g->len);
    g->len += (size_t)w;
    return g->n == g->fail_at ? MX_EIO : 0;
}

/* Parses s in one feed; returns the events. */
static struct got parse(const char *s) {
    struct got g = {0};
    struct mx_sse p;
    mx_sse_init(&p, on_event, &g, 0);
    assert_int_equal(mx_sse_feed(&p, s, strlen(s), NULL), 0);
    mx_sse_deinit(&p);
    return g;
}

static void test_basic_events(void **state) {
    (void)state;
    struct got g = parse("data: {\"a\":1}\n\ndata:[DONE]\n\n");
    assert_string_equal(g.text, "message|{\"a\":1}\nmessage|[DONE]\n");
    /* several data lines are one event, joined with LF; one leading space dropped, not two */
    g = parse("data: one\ndata:  two\ndata\n\n");
    assert_string_equal(g.text, "message|one\n two\n\n");
    assert_int_equal(g.n, 1);
    /* event names, ids and unknown fields */
    g = parse("event: error\nid: 7\nretry: 10\nfoo: bar\ndata: x\n\ndata: y\n\n");
    assert_string_equal(g.text, "error|x\nmessage|y\n");
}

static void test_comments_and_empty(void **state) {
    (void)state;
    /* keep-alive comments, empty lines without data, an event with only a name: nothing */
    struct got g = parse(": ping\n\n\n\n:\nevent: x\n\n");
    assert_int_equal(g.n, 0);
    /* a comment inside an event does not end it */
    g = parse("data: a\n: keep-alive\ndata: b\n\n");
    assert_string_equal(g.text, "message|a\nb\n");
    /* an event the stream never finished is not dispatched */
    g = parse("data: done\n\ndata: cut off");
    assert_string_equal(g.text, "message|done\n");
    g = parse("data: cut off\n");
    assert_int_equal(g.n, 0);
}

static void test_line_ends(void **state) {
    (void)state;
    const char *want = "message|a\nmessage|b\nc\n";
    assert_string_equal(parse("data: a\r\n\r\ndata: b\r\ndata: c\r\n\r\n").text, want);
    assert_string_equal(parse("data: a\r\rdata: b\rdata: c\r\r").text, want);
    assert_string_equal(parse("data: a\n\ndata: b\r\ndata: c\r\r").text, want);
}

/* Every split of the stream into two and into single bytes gives the same events as one feed:
 * libcurl hands data over in arbitrary pieces, e.g. between the CR and the LF of a CRLF. */
static void test_every_chunking(void **state) {
    (void)state;
    const char *s = "data: {\"choices\":[{\"delta\":{\"content\":\"h\\u00e9\"}}]}\r\n\r\n"
                    ": ping\r\n\r\nevent: e\rdata: x\rdata: y\r\r"
                    "data: z\n\ndata: [DONE]\r\n\r\n";
    size_t n = strlen(s);
    struct got whole = parse(s);
    assert_int_equal(whole.n, 4);
    for (size_t cut = 0; cut <= n; cut++) {
        struct got g = {0};
        struct mx_sse p;
        mx_sse_init(&p, on_event, &g, 0);
        assert_int_equal(mx_sse_feed(&p, s, cut, NULL), 0);
        assert_int_equal(mx_sse_feed(&p, s + cut, n - cut, NULL), 0);
        mx_sse_deinit(&p);
        assert_string_equal(g.text, whole.text);
    }
    struct got g = {0};
    struct mx_sse p;
    mx_sse_init(&p, on_event, &g, 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(mx_sse_feed(&p, s + i, 1, NULL), 0);
    mx_sse_deinit(&p);
    assert_string_equal(g.text, whole.text);
}

static void test_cap(void **state) {
    (void)state;
    struct got g = {0};
    struct mx_sse p;
    struct mx_err err = {0};
    mx_sse_init(&p, on_event, &g, 16);
    /* a line over the cap, even arriving in pieces */
    assert_int_equal(mx_sse_feed(&p, "data: 0123456", 13, &err), 0);
    assert_int_equal(mx_sse_feed(&p, "789abcdef", 9, &err), MX_ERANGE);
    assert_non_null(strstr(err.msg, "16 bytes"));
    /* the stream is over after an error */
    assert_int_equal(mx_sse_feed(&p, "\n\n", 2, NULL), MX_EINVAL);
    mx_sse_deinit(&p);
    /* an event whose data lines each fit but together do not */
    g = (struct got){0};
    mx_sse_init(&p, on_event, &g, 16);
    const char *s = "data: 12345\ndata: 12345\ndata: 12345\n\n";
    assert_int_equal(mx_sse_feed(&p, s, strlen(s), NULL), MX_ERANGE);
    assert_int_equal(g.n, 0);
    mx_sse_deinit(&p);
}

static void test_callback_error(void **state) {
    (void)state;
    struct got g = {.fail_at = 2};
    struct mx_sse p;
    mx_sse_init(&p, on_event, &g, 0);
    const char *s = "data: 1\n\ndata: 2\n\ndata: 3\n\n";
    assert_int_equal(mx_sse_feed(&p, s, strlen(s), NULL), MX_EIO);
    assert_int_equal(g.n, 2); /* nothing after the failing event */
    mx_sse_deinit(&p);
    mx_sse_deinit(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic_events),     cmocka_unit_test(test_comments_and_empty),
        cmocka_unit_test(test_line_ends),        cmocka_unit_test(test_every_chunking),
        cmocka_unit_test(test_cap),              cmocka_unit_test(test_callback_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
