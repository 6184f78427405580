/* test_tui_text.c - untrusted text made inert; widths and word wrap of UTF-8. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/text.h"

static char *san(const char *s, bool nl) {
    static char buf[1024];
    mx_text_sanitize(s, strlen(s), buf, nl);
    return buf;
}

static void test_escape_sequences_are_inert(void **state) {
    (void)state;
    /* OSC 0 retitle, CSI cursor move, OSC 52 clipboard write, DCS sixel */
    assert_string_equal(san("\033]0;pwned\007", true), "^[]0;pwned^G");
    assert_string_equal(san("a\033[2J\033[Hb", true), "a^[[2J^[[Hb");
    assert_string_equal(san("\033]52;c;aGk=\033\\", true), "^[]52;c;aGk=^[\\");
    assert_string_equal(san("\033Pq#0;2;0;0;0~-\033\\", true), "^[Pq#0;2;0;0;0~-^[\\");
    /* 8-bit C1 CSI (U+009B) and a bidi override */
    assert_string_equal(san("x\xc2\x9b" "2J", true), "x<U+009B>2J");
    assert_string_equal(san("\xe2\x80\xae" "abc", true), "<U+202E>abc");
    assert_string_equal(san("del\x7f", true), "del^?");
}

static void test_newlines_and_invalid_bytes(void **state) {
    (void)state;
    assert_string_equal(san("a\nb\tc", true), "a\nb\tc");
    assert_string_equal(san("a\nb\tc", false), "a^Jb^Ic");
    assert_string_equal(san("caf\xc3\xa9", true), "caf\xc3\xa9");
    assert_string_equal(san("\xff" "a\xc3", true), "\xef\xbf\xbd" "a\xef\xbf\xbd");
    assert_string_equal(san("\xc0\xaf", true), "\xef\xbf\xbd\xef\xbf\xbd"); /* overlong '/' */
    /* worst case fits the documented bound */
    char in[64], out[MX_SANITIZE_MAX(64)];
    for (int i = 0; i < 64; i += 2) {
        in[i] = (char)0xc2;
        in[i + 1] = (char)0x9b;
    }
    size_t n = mx_text_sanitize(in, 64, out, true);
    assert_true(n < sizeof out);
    assert_int_equal(n, 32 * strlen("<U+009B>"));
}

static void test_widths(void **state) {
    (void)state;
    assert_int_equal(mx_text_width("abc", 3), 3);
    assert_int_equal(mx_text_width("\xe6\x97\xa5\xe6\x9c\xac", 6), 4);     /* 日本 */
    assert_int_equal(mx_text_width("e\xcc\x81", 3), 1);                    /* e + combining acute */
    assert_int_equal(mx_text_width("\xf0\x9f\x98\x80", 4), 2);             /* 😀 */
}

static void test_wrap_words_and_hard_breaks(void **state) {
    (void)state;
    const char *s = "the quick brown fox";
    size_t next, n = mx_text_wrap(s, strlen(s), 10, &next);
    assert_int_equal(n, 9); /* "the quick" */
    assert_int_equal(next, 10);
    n = mx_text_wrap(s + next, strlen(s + next), 10, &next);
    assert_memory_equal(s + 10, "brown fox", 9);
    assert_int_equal(n, 9);
    /* no space: break between characters */
    const char *w = "abcdefghij";
    n = mx_text_wrap(w, 10, 4, &next);
    assert_int_equal(n, 4);
    assert_int_equal(next, 4);
    /* newline ends a line */
    n = mx_text_wrap("ab\ncd", 5, 10, &next);
    assert_int_equal(n, 2);
    assert_int_equal(next, 3);
}

static void test_wrap_never_splits_characters(void **state) {
    (void)state;
    /* 日本語 is 6 columns: width 5 fits two characters (4 columns) */
    const char *cjk = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e";
    size_t next, n = mx_text_wrap(cjk, 9, 5, &next);
    assert_int_equal(n, 6);
    /* a double-width char on a 1-column line still makes progress */
    n = mx_text_wrap(cjk, 9, 1, &next);
    assert_int_equal(n, 3);
    /* combining mark stays with its base: "abe\u0301" at width 3 keeps e+mark together */
    const char *comb = "abe\xcc\x81" "d";
    n = mx_text_wrap(comb, strlen(comb), 3, &next);
    assert_int_equal(n, 5);
    assert_int_equal(next, 5);
    /* every line of a long mixed text fits the width */
    const char *mix = "emoji \xf0\x9f\x98\x80\xf0\x9f\x98\x80 caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac"
                      " word wrapping test with some longer words";
    size_t pos = 0, len = strlen(mix);
    int lines = 0;
    while (pos < len) {
        n = mx_text_wrap(mix + pos, len - pos, 7, &next);
        assert_true(n > 0 || next > 0);
        assert_true(mx_text_width(mix + pos, n) <= 7);
        pos += next;
        lines++;
    }
    assert_true(lines >= 8);
}

int main(void) {
    setlocale(LC_ALL, "C.UTF-8");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_sequences_are_inert),
        cmocka_unit_test(test_newlines_and_invalid_bytes),
        cmocka_unit_test(test_widths),
        cmocka_unit_test(test_wrap_words_and_hard_breaks),
        cmocka_unit_test(test_wrap_never_splits_characters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
