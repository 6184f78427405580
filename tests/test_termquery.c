/* test_termquery.c - DA1 parsing against answers recorded from real terminals
 * (../shared/TERMINALS.md), plus garbage and partial input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <string.h>

#include "tui/termquery.h"

static void test_da1_xterm_vt340_has_sixel(void **state) {
    (void)state;
    const char *r = "\033[?63;1;2;4;6;9;15;16;22;28c";
    struct mx_da1 d;
    const char *end = mx_tq_parse_da1(r, strlen(r), &d);
    assert_non_null(end);
    assert_true(end == r + strlen(r));
    assert_true(d.valid);
    assert_true(d.sixel);
    assert_int_equal(d.n_attrs, 10);
    assert_int_equal(d.attrs[0], 63);
}

static void test_da1_tmux_has_no_sixel(void **state) {
    (void)state;
    const char *r = "\033[?1;2c";
    struct mx_da1 d;
    assert_non_null(mx_tq_parse_da1(r, strlen(r), &d));
    assert_false(d.sixel);
    assert_int_equal(d.n_attrs, 2);
}

static void test_da1_after_other_reply(void **state) {
    (void)state;
    /* XTSMGRAPHICS answer first (also CSI ?), then mlterm's DA1 */
    const char *r = "\033[?2;0;960;680S\033[?63;1;2;3;4;6;7;15;18;22;29c";
    struct mx_da1 d;
    assert_non_null(mx_tq_parse_da1(r, strlen(r), &d));
    assert_true(d.sixel);
    assert_int_equal(d.attrs[0], 63);
    char before[64];
    size_t n = mx_tq_strip_da1(r, strlen(r), before, sizeof before);
    assert_int_equal(n, strlen("\033[?2;0;960;680S"));
    assert_string_equal(before, "\033[?2;0;960;680S");
}

static void test_da1_garbage_and_partial(void **state) {
    (void)state;
    struct mx_da1 d;
    const char *partial = "\033[?63;1;2;4";
    assert_null(mx_tq_parse_da1(partial, strlen(partial), &d));
    assert_false(d.valid);
    const char *junk = "hello\033[?x;4c\033[";
    assert_null(mx_tq_parse_da1(junk, strlen(junk), &d));
    assert_null(mx_tq_parse_da1("", 0, &d));
    /* attribute 14 or 40 is not attribute 4 */
    const char *near = "\033[?14;40;44c";
    assert_non_null(mx_tq_parse_da1(near, strlen(near), &d));
    assert_false(d.sixel);
    char out[8];
    assert_int_equal(mx_tq_strip_da1("\033[?1;2c", 7, out, sizeof out), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_da1_xterm_vt340_has_sixel),
        cmocka_unit_test(test_da1_tmux_has_no_sixel),
        cmocka_unit_test(test_da1_after_other_reply),
        cmocka_unit_test(test_da1_garbage_and_partial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
