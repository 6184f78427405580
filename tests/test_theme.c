/* test_theme.c - built-in themes load from anywhere, theme files parse, bad ones fall back to the default, colours reduce sanely. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tui/theme.h"

/* The shipped themes are built in: they load with no themes folder at all, from any working
 * directory, and each one's text is byte for byte its file in themes/ (so the embedding cannot
 * drift from the files people read and copy). */
static void test_builtin_themes_are_the_shipped_files(void **state) {
    (void)state;
    const char *src = getenv("MX_SRCDIR");
    assert_non_null(src);
    setenv("XDG_CONFIG_HOME", "/nonexistent-mixel-test", 1);
    assert_int_equal(chdir("/"), 0);
    const char *names[] = {"dark", "light", "high-contrast", "basic16"};
    size_t n_builtin = 0;
    while (mx_builtin_themes[n_builtin].name)
        n_builtin++;
    assert_int_equal(n_builtin, 4);
    for (size_t i = 0; i < 4; i++) {
        struct mx_theme t;
        struct mx_err err = {0};
        assert_int_equal(mx_theme_load(names[i], &t, &err), 0);
        assert_string_equal(t.name, names[i]);
        char path[4096], file[65536];
        snprintf(path, sizeof path, "%s/themes/%s.theme", src, names[i]);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        size_t n = fread(file, 1, sizeof file - 1, f);
        fclose(f);
        file[n] = '\0';
        const char *text = NULL;
        for (size_t k = 0; mx_builtin_themes[k].name; k++)
            if (!strcmp(mx_builtin_themes[k].name, names[i]))
                text = mx_builtin_themes[k].text;
        assert_non_null(text);
        assert_string_equal(text, file);
    }
    struct mx_theme hc;
    assert_int_equal(mx_theme_load("high-contrast", &hc, NULL), 0);
    assert_int_equal(hc.style[MX_ROLE_selection].bg.kind, MX_COLOUR_RGB);
    assert_int_equal(hc.style[MX_ROLE_selection].bg.r, 255);
    assert_int_equal(hc.style[MX_ROLE_selection].bg.b, 0);
    struct mx_err err = {0};
    assert_int_equal(mx_theme_load("no-such-theme", &hc, &err), MX_ENOENT);
    assert_int_equal(mx_theme_load("../etc/passwd", &hc, &err), MX_EINVAL);
}

/* A user's theme file of the same name overrides the built-in one; other names still resolve to
 * the built-ins. */
static void test_user_theme_overrides_builtin(void **state) {
    (void)state;
    char dir[] = "/tmp/mx-theme-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/mixel", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/mixel/themes", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof path, "%s/mixel/themes/dark.theme", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("name = my-dark\nuser = #010203\n", f);
    fclose(f);
    setenv("XDG_CONFIG_HOME", dir, 1);
    struct mx_theme t;
    assert_int_equal(mx_theme_load("dark", &t, NULL), 0);
    assert_string_equal(t.name, "my-dark");
    assert_int_equal(t.style[MX_ROLE_user].fg.r, 1);
    assert_int_equal(mx_theme_load("light", &t, NULL), 0);
    assert_string_equal(t.name, "light");
    unlink(path);
    snprintf(path, sizeof path, "%s/mixel/themes", dir);
    rmdir(path);
    snprintf(path, sizeof path, "%s/mixel", dir);
    rmdir(path);
    rmdir(dir);
    setenv("XDG_CONFIG_HOME", "/nonexistent-mixel-test", 1);
}

static void test_parse_values_and_comments(void **state) {
    (void)state;
    const char *txt = "# comment\nname = t1\nuser = #102030 200 bold underline # trailing\n"
                      "error = red\n\n";
    struct mx_theme t;
    struct mx_err err = {0};
    assert_int_equal(mx_theme_parse(txt, strlen(txt), "t1.theme", &t, &err), 0);
    assert_string_equal(t.name, "t1");
    const struct mx_theme_style *u = &t.style[MX_ROLE_user];
    assert_int_equal(u->fg.kind, MX_COLOUR_RGB);
    assert_int_equal(u->fg.r, 0x10);
    assert_int_equal(u->fg.b, 0x30);
    assert_int_equal(u->bg.kind, MX_COLOUR_INDEX);
    assert_int_equal(u->bg.index, 200);
    assert_int_equal(u->attrs, MX_ATTR_BOLD | MX_ATTR_UNDERLINE);
    assert_int_equal(t.style[MX_ROLE_error].fg.index, 1);
    assert_int_equal(t.style[MX_ROLE_error].bg.kind, MX_COLOUR_DEFAULT);
}

static void test_bad_theme_gives_message_and_default(void **state) {
    (void)state;
    struct mx_theme def, t;
    mx_theme_default(&def);
    const char *bad[] = {"user = #12345\n", "nosuchrole = red\n", "user red\n",
                         "user = red blue green\n", "user = 256\n", "user = sparkly\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct mx_err err = {0};
        assert_int_equal(mx_theme_parse(bad[i], strlen(bad[i]), "bad.theme", &t, &err),
                         MX_EFORMAT);
        assert_non_null(strstr(err.msg, "bad.theme:1:"));
        assert_memory_equal(&t, &def, sizeof t);
    }
    char bin[] = "user = red\n\x01\x02";
    struct mx_err err = {0};
    assert_int_equal(mx_theme_parse(bin, sizeof bin - 1, "b", &t, &err), MX_EFORMAT);
}

static void test_colour_reduction(void **state) {
    (void)state;
    struct mx_colour red = {.kind = MX_COLOUR_RGB, .r = 255};
    assert_int_equal(mx_colour_reduce(&red, 256), 196);
    assert_int_equal(mx_colour_reduce(&red, 16), 9);
    assert_int_equal(mx_colour_reduce(&red, 8), 1);
    assert_int_equal(mx_colour_reduce(&red, 0), -1);
    struct mx_colour grey = {.kind = MX_COLOUR_RGB, .r = 128, .g = 128, .b = 128};
    int g = mx_colour_reduce(&grey, 256);
    assert_true(g >= 232 || g == 244 || g == 102 || g == 145); /* a grey entry */
    struct mx_colour idx = {.kind = MX_COLOUR_INDEX, .index = 21}; /* pure blue in the cube */
    assert_int_equal(mx_colour_reduce(&idx, 256), 21);
    assert_int_equal(mx_colour_reduce(&idx, 8), 4);
    struct mx_colour def = {.kind = MX_COLOUR_DEFAULT};
    assert_int_equal(mx_colour_reduce(&def, 256), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_themes_are_the_shipped_files),
        cmocka_unit_test(test_user_theme_overrides_builtin),
        cmocka_unit_test(test_parse_values_and_comments),
        cmocka_unit_test(test_bad_theme_gives_message_and_default),
        cmocka_unit_test(test_colour_reduction),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
