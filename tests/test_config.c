/* test_config.c - the settings file (app/config.h): a missing default file is an empty
 * configuration, an explicit missing file is an error, dotted lookups, type errors with the key,
 * syntax errors with line and column, a non-object top level, duplicate keys and an oversized
 * file refused. */
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

static char g_dir[256]; /* a temp folder standing in for $XDG_CONFIG_HOME */

/* Writes text to g_dir/name and returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/mx_config_XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    setenv("XDG_CONFIG_HOME", g_dir, 1);
    unsetenv("MIXEL_CONFIG");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_missing_default_is_empty(void **state)
{
    (void)state;
    struct mx_config *c = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_config_load(&c, NULL, &err), 0);
    assert_non_null(c);
    assert_non_null(strstr(mx_config_path(c), "/mixel/config.json"));
    assert_null(mx_config_get(c, "remote.url"));
    const char *s = "x";
    assert_int_equal(mx_config_string(c, "remote.url", &s, &err), MX_ENOENT);
    assert_null(s);
    mx_config_free(c);
}

static void test_explicit_missing_is_error(void **state)
{
    (void)state;
    struct mx_config *c = NULL;
    struct mx_err err = {0};
    setenv("MIXEL_CONFIG", "/nonexistent/mixel.json", 1);
    assert_int_equal(mx_config_load(&c, NULL, &err), MX_ENOENT);
    assert_null(c);
    assert_non_null(strstr(err.msg, "/nonexistent/mixel.json"));
    unsetenv("MIXEL_CONFIG");
}

static void test_dotted_lookup(void **state)
{
    (void)state;
    char sub[300];
    snprintf(sub, sizeof sub, "%s/mixel", g_dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file("mixel/config.json",
               "{\"remote\": {\"url\": \"http://gpu:8000/v1\", \"port\": 8000},\n"
               " \"tools\": [1, 2]}\n");
    struct mx_config *c = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_config_load(&c, NULL, &err), 0);
    const char *s = NULL;
    assert_int_equal(mx_config_string(c, "remote.url", &s, &err), 0);
    assert_string_equal(s, "http://gpu:8000/v1");
    assert_true(json_is_array(mx_config_get(c, "tools")));
    assert_null(mx_config_get(c, "remote.url.more"));
    assert_null(mx_config_get(c, "remote..url"));
    assert_null(mx_config_get(c, ""));
    assert_int_equal(mx_config_string(c, "remote.port", &s, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "remote.port: expected a string"));
    mx_config_free(c);
}

static void test_bad_files(void **state)
{
    (void)state;
    struct mx_config *c = NULL;
    struct mx_err err = {0};
    const char *p = write_file("syntax.json", "{\n  \"a\": 1,\n  \"b\": }\n");
    assert_int_equal(mx_config_load(&c, p, &err), MX_EFORMAT);
    assert_null(c);
    assert_non_null(strstr(err.msg, "syntax.json:3:"));
    mx_err_clear(&err);
    p = write_file("array.json", "[1, 2]");
    assert_int_equal(mx_config_load(&c, p, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "must be a JSON object"));
    mx_err_clear(&err);
    p = write_file("dup.json", "{\"a\": 1, \"a\": 2}");
    assert_int_equal(mx_config_load(&c, p, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "duplicate"));
    mx_err_clear(&err);
    char *big = malloc(MX_CONFIG_MAX_BYTES + 16);
    assert_non_null(big);
    memset(big, ' ', MX_CONFIG_MAX_BYTES + 8);
    big[0] = '{';
    big[MX_CONFIG_MAX_BYTES + 8] = '}';
    big[MX_CONFIG_MAX_BYTES + 9] = '\0';
    p = write_file("big.json", big);
    free(big);
    assert_int_equal(mx_config_load(&c, p, &err), MX_ERANGE);
    assert_non_null(strstr(err.msg, "more than"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_missing_default_is_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_explicit_missing_is_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dotted_lookup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
