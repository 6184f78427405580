/* test_markdown.c - Markdown essentials render to the expected styled lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <locale.h>
#include <string.h>

#include "tui/markdown.h"
#include "core/base/text.h"

static struct mx_rtext render(const char *s, int width) {
    struct mx_rtext r;
    assert_int_equal(mx_markdown_render(s, strlen(s), width, MX_ROLE_assistant, &r), 0);
    return r;
}

/* role/attrs of the first byte of `needle` in line l */
static int role_at(const struct mx_rline *l, const char *needle, unsigned *attrs) {
    const char *p = strstr(l->text, needle);
    assert_non_null(p);
    size_t i = (size_t)(p - l->text);
    if (attrs)
        *attrs = l->attrs[i];
    return l->role[i];
}

static void test_inline_styles(void **state) {
    (void)state;
    struct mx_rtext r = render("a **bold** and *it* and `x = 1` and 2*3*4", 80);
    assert_int_equal(r.n_lines, 1);
    assert_string_equal(r.lines[0].text, "a bold and it and x = 1 and 2*3*4");
    unsigned a;
    assert_int_equal(role_at(&r.lines[0], "bold", &a), MX_ROLE_assistant);
    assert_int_equal(a, MX_ATTR_BOLD);
    role_at(&r.lines[0], "it ", &a);
    assert_int_equal(a, MX_ATTR_ITALIC);
    assert_int_equal(role_at(&r.lines[0], "x = 1", NULL), MX_ROLE_code);
    assert_int_equal(role_at(&r.lines[0], "2*3", &a), MX_ROLE_assistant);
    assert_int_equal(a, 0);
    mx_rtext_free(&r);
    r = render("unclosed **bold and `tick", 80);
    assert_string_equal(r.lines[0].text, "unclosed **bold and `tick");
    mx_rtext_free(&r);
}

static void test_blocks(void **state) {
    (void)state;
    struct mx_rtext r = render("# Title\n> quoted\n- item one\n2. second\nplain", 40);
    assert_int_equal(r.n_lines, 5);
    assert_string_equal(r.lines[0].text, "Title");
    assert_int_equal(r.lines[0].role[0], MX_ROLE_heading);
    assert_string_equal(r.lines[1].text, "\xe2\x94\x82 quoted");
    assert_int_equal(role_at(&r.lines[1], "quoted", NULL), MX_ROLE_quote);
    assert_string_equal(r.lines[2].text, "\xe2\x80\xa2 item one");
    assert_string_equal(r.lines[3].text, "2. second");
    assert_string_equal(r.lines[4].text, "plain");
    mx_rtext_free(&r);
}

static void test_code_block_box_and_keywords(void **state) {
    (void)state;
    struct mx_rtext r = render("Here:\n```python\ndef f(x):\n    return x\n```\ndone", 30);
    assert_int_equal(r.n_lines, 6);
    assert_non_null(strstr(r.lines[1].text, "python"));
    assert_true(!strncmp(r.lines[1].text, "\xe2\x94\x8c", 3));             /* ┌ */
    assert_int_equal(mx_text_width(r.lines[1].text, r.lines[1].len), 30);   /* full width */
    assert_int_equal(role_at(&r.lines[2], "def", NULL), MX_ROLE_keyword);
    assert_int_equal(role_at(&r.lines[2], "f(x)", NULL), MX_ROLE_code);
    assert_int_equal(role_at(&r.lines[3], "return", NULL), MX_ROLE_keyword);
    assert_true(!strncmp(r.lines[4].text, "\xe2\x94\x94", 3));             /* └ */
    assert_string_equal(r.lines[5].text, "done");
    assert_string_equal(r.last_code, "def f(x):\n    return x");
    mx_rtext_free(&r);
    /* while streaming the fence is still open: the partial block is the last one */
    r = render("```c\nint x;", 30);
    assert_string_equal(r.last_code, "int x;");
    mx_rtext_free(&r);
}

static void test_wrapping_respects_width_and_indent(void **state) {
    (void)state;
    struct mx_rtext r = render("- a list item that is long enough to wrap twice at least here", 20);
    assert_true(r.n_lines >= 3);
    for (size_t i = 0; i < r.n_lines; i++) {
        assert_true(mx_text_width(r.lines[i].text, r.lines[i].len) <= 20);
        if (i > 0)
            assert_true(!strncmp(r.lines[i].text, "  ", 2)); /* hanging indent */
    }
    mx_rtext_free(&r);
    r = render("", 20);
    assert_int_equal(r.n_lines, 1);
    mx_rtext_free(&r);
}

/* Tables render as aligned columns (issue 15 item 13): the header bold, a rule under it, cells
 * padded by their alignment; a table wider than the screen wraps its cells inside columns. */
static void test_table_columns(void **state) {
    (void)state;
    struct mx_rtext r = render("Sizes:\n| Model | Params | Note |\n|:---|---:|:-:|\n"
                               "| tiny | 260K | **fast** |\n| mixtral | 46.7B | x |\nafter", 60);
    assert_int_equal(r.n_lines, 6);
    assert_string_equal(r.lines[0].text, "Sizes:");
    assert_string_equal(r.lines[1].text, "Model   \xe2\x94\x82 Params \xe2\x94\x82 Note");
    unsigned a;
    role_at(&r.lines[1], "Params", &a);
    assert_int_equal(a, MX_ATTR_BOLD);
    assert_int_equal(role_at(&r.lines[1], "\xe2\x94\x82", NULL), MX_ROLE_border);
    assert_non_null(strstr(r.lines[2].text, "\xe2\x94\x80\xe2\x94\xbc\xe2\x94\x80"));
    assert_string_equal(r.lines[3].text, "tiny    \xe2\x94\x82   260K \xe2\x94\x82 fast");
    role_at(&r.lines[3], "fast", &a);
    assert_int_equal(a, MX_ATTR_BOLD);
    assert_string_equal(r.lines[4].text, "mixtral \xe2\x94\x82  46.7B \xe2\x94\x82  x");
    assert_string_equal(r.lines[5].text, "after");
    mx_rtext_free(&r);
    /* narrower than the table: cells wrap inside their columns, every line within the width */
    r = render("| a | b |\n|---|---|\n| one two three four | five six seven eight |", 20);
    for (size_t i = 0; i < r.n_lines; i++)
        assert_true(mx_text_width(r.lines[i].text, r.lines[i].len) <= 20);
    assert_true(r.n_lines > 3);
    assert_non_null(strstr(r.lines[2].text, "\xe2\x94\x82"));
    mx_rtext_free(&r);
    /* no delimiter row: not a table, the line shows as written */
    r = render("| just | pipes |", 40);
    assert_string_equal(r.lines[0].text, "| just | pipes |");
    mx_rtext_free(&r);
}

/* Links: the text, underlined, then the URL dimmed (muted) in parentheses. */
static void test_links(void **state) {
    (void)state;
    struct mx_rtext r = render("see [the docs](https://example.org/x) now", 80);
    assert_string_equal(r.lines[0].text, "see the docs (https://example.org/x) now");
    unsigned a;
    assert_int_equal(role_at(&r.lines[0], "the docs", &a), MX_ROLE_assistant);
    assert_int_equal(a, MX_ATTR_UNDERLINE);
    assert_int_equal(role_at(&r.lines[0], "https://", NULL), MX_ROLE_muted);
    mx_rtext_free(&r);
    r = render("[not a link] and [x]() stay", 80);
    assert_string_equal(r.lines[0].text, "[not a link] and [x]() stay");
    mx_rtext_free(&r);
}

int main(void) {
    setlocale(LC_ALL, "C.UTF-8");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_inline_styles),
        cmocka_unit_test(test_blocks),
        cmocka_unit_test(test_table_columns),
        cmocka_unit_test(test_links),
        cmocka_unit_test(test_code_block_box_and_keywords),
        cmocka_unit_test(test_wrapping_respects_width_and_indent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
