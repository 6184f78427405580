/* test_patharg.c - a command's path argument read like one shell word (tui/patharg.c), and the
 * quoting Tab completion writes read back to the same name (issue 15 item 11). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tui/patharg.h"

static const char *rd(const char *arg) {
    static char out[256];
    assert_int_equal(mx_path_arg(arg, out, sizeof out, NULL), 0);
    return out;
}

static void test_tilde_is_the_home_folder(void **state) {
    (void)state;
    setenv("HOME", "/home/ann", 1);
    assert_string_equal(rd("~/x.png"), "/home/ann/x.png");
    assert_string_equal(rd("~"), "/home/ann");
    assert_string_equal(rd("  ~/x.png  "), "/home/ann/x.png");
    assert_string_equal(rd("a~/x"), "a~/x");               /* only a leading ~ */
    assert_string_equal(rd("'~/x'"), "~/x");               /* quoted: literal */
    assert_string_equal(rd("\\~/x"), "~/x");
    struct passwd *pw = getpwuid(getuid()); /* ~user: from the password database */
    if (pw) {
        char arg[300], want[300];
        snprintf(arg, sizeof arg, "~%s/x", pw->pw_name);
        snprintf(want, sizeof want, "%s/x", pw->pw_dir);
        assert_string_equal(rd(arg), want);
    }
    assert_int_equal(mx_path_arg("~no-such-user-15/x", (char[64]){0}, 64, NULL), MX_ENOENT);
}

static void test_quotes_and_backslashes(void **state) {
    (void)state;
    assert_string_equal(rd("my\\ pics/a\\ b.png"), "my pics/a b.png");
    assert_string_equal(rd("\"my pics\"/'a b.png'"), "my pics/a b.png");
    assert_string_equal(rd("\"say \\\"hi\\\"\""), "say \"hi\"");
    assert_string_equal(rd("'a\\b'"), "a\\b");              /* nothing escapes inside '...' */
    assert_string_equal(rd("my pics/a b.png"), "my pics/a b.png"); /* the rest of the line */
    assert_string_equal(rd("x\\ "), "x ");                  /* a quoted trailing blank stays */
    assert_string_equal(rd(""), "");
    struct mx_err err = {0};
    char out[64];
    assert_int_equal(mx_path_arg("'open", out, sizeof out, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "not closed"));
    assert_int_equal(mx_path_arg("0123456789", out, 8, NULL), MX_ERANGE);
}

/* What completion writes (mx_path_quote), the command reads back as the name. */
static void test_completion_quoting_round_trips(void **state) {
    (void)state;
    const char *names[] = {"a b.png", "it's.png", "x\"y", "back\\slash", "semi;colon&",
                           "plain.png", "tab\there", "star*?[1]"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *q = mx_path_quote(names[i], 0);
        assert_non_null(q);
        assert_string_equal(rd(q), names[i]);
        char *u = mx_path_unquote(q, 0);
        assert_string_equal(u, names[i]);
        free(u);
        free(q);
        if (!strchr(names[i], '"')) { /* inside "..." as completion writes it after a " */
            char *dq = mx_path_quote(names[i], '"'), buf[128];
            snprintf(buf, sizeof buf, "\"%s\"", dq);
            assert_string_equal(rd(buf), names[i]);
            free(dq);
        }
    }
    assert_true(mx_path_char_quoted("my\\ f", 3));
    assert_false(mx_path_char_quoted("my\\\\ f", 4));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tilde_is_the_home_folder),
        cmocka_unit_test(test_quotes_and_backslashes),
        cmocka_unit_test(test_completion_quoting_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
