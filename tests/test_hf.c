/* test_hf.c - hf:// references and choosing a file from the hub's listing (net/hf.c): the three
 * forms, the names refused (path escapes, non-model files), the URLs (percent-encoded), quant tags
 * matched as whole tags, and the picker's one / none / ambiguous / split answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "net/hf.h"

static void test_the_three_forms_parse(void **state) {
    (void)state;
    struct mx_hf_ref r;
    assert_int_equal(mx_hf_parse("hf://TheBloke/M-GGUF/sub/m.Q4_K_M.gguf", &r, NULL), 0);
    assert_string_equal(r.owner, "TheBloke");
    assert_string_equal(r.repo, "M-GGUF");
    assert_string_equal(r.path, "sub/m.Q4_K_M.gguf");
    assert_string_equal(r.quant, "");
    assert_int_equal(mx_hf_parse("hf://a/b.c_d:Q8_0", &r, NULL), 0);
    assert_string_equal(r.repo, "b.c_d");
    assert_string_equal(r.quant, "Q8_0");
    assert_string_equal(r.path, "");
    assert_int_equal(mx_hf_parse("hf://a/b", &r, NULL), 0);
    assert_string_equal(r.path, "");
    assert_string_equal(r.quant, "");
}

static void test_bad_names_are_refused(void **state) {
    (void)state;
    static const char *const bad[] = {
        "https://huggingface.co/a/b", "hf://a", "hf://a/", "hf:///b/f.gguf", "hf://../b/f.gguf",
        "hf://a/../f.gguf", "hf://a/b/../../f.gguf", "hf://a/b/./f.gguf", "hf://a/b//f.gguf",
        "hf://a/b/f.gguf/", "hf://a/b/README.md", "hf://a/b:", "hf://a/b:Q4/x", "hf://a b/c/f.gguf",
        "hf://-a/b/f.gguf", "hf://a/b/x\x1b[2J.gguf", "hf://a/b/x\\y.gguf",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct mx_hf_ref r;
        struct mx_err err = {0};
        if (mx_hf_parse(bad[i], &r, &err) != MX_EINVAL)
            fail_msg("accepted: %s", bad[i]);
        assert_true(err.msg[0] != '\0');
    }
}

static void test_urls_are_encoded(void **state) {
    (void)state;
    struct mx_hf_ref r;
    char url[256];
    assert_int_equal(mx_hf_parse("hf://o/r/dir/a b+c.gguf", &r, NULL), 0);
    mx_hf_resolve_url("http://127.0.0.1:8/", &r, url, sizeof url);
    assert_string_equal(url, "http://127.0.0.1:8/o/r/resolve/main/dir/a%20b%2Bc.gguf");
    mx_hf_api_url("https://hf.co", &r, url, sizeof url);
    assert_string_equal(url, "https://hf.co/api/models/o/r");
    /* cut short: the length wanted is returned, the buffer stays a C string */
    assert_true(mx_hf_resolve_url("http://h", &r, url, 10) >= 10);
    assert_int_equal(strlen(url), 9);
}

static void test_quant_tags_match_whole(void **state) {
    (void)state;
    assert_true(mx_hf_name_has_quant("m.Q4_K_M.gguf", "q4_k_m"));
    assert_true(mx_hf_name_has_quant("m-Q4_K_M-00001-of-00002.gguf", "Q4_K_M"));
    assert_true(mx_hf_name_has_quant("m_Q8_0.gguf", "Q8_0"));
    assert_false(mx_hf_name_has_quant("m.Q4_K_M.gguf", "Q4_K"));
    assert_false(mx_hf_name_has_quant("m.IQ4_XS.gguf", "Q4_XS"));
    assert_false(mx_hf_name_has_quant("m.Q4_0.gguf", ""));
}

/* Picks from a listing; returns the code and leaves the path (or the message) in out. */
static int pick(const char *spec, const char *json, char *out, size_t size) {
    struct mx_hf_ref r;
    struct mx_err err = {0};
    assert_int_equal(mx_hf_parse(spec, &r, NULL), 0);
    int rc = mx_hf_pick(json, strlen(json), &r, &err);
    snprintf(out, size, "%s", rc == 0 ? r.path : err.msg);
    return rc;
}

static void test_the_picker(void **state) {
    (void)state;
    const char *ls = "{\"siblings\": [{\"rfilename\": \"README.md\"},"
                     "{\"rfilename\": \"m.Q4_K_S.gguf\"}, {\"rfilename\": \"m.Q4_K_M.gguf\"},"
                     "{\"rfilename\": \"x/m.Q8_0.gguf\"}, {\"rfilename\": \"a-Q4_0.gguf\"},"
                     "{\"rfilename\": \"b-Q4_0.gguf\"}, {\"rfilename\": \"../up-Q6_K.gguf\"},"
                     "{\"rfilename\": \"s-Q5_K_M-00001-of-00002.gguf\"},"
                     "{\"rfilename\": \"s-Q5_K_M-00002-of-00002.gguf\"}, {\"rfilename\": 7}]}";
    char out[600];
    assert_int_equal(pick("hf://o/r:Q4_K_M", ls, out, sizeof out), 0);
    assert_string_equal(out, "m.Q4_K_M.gguf");
    assert_int_equal(pick("hf://o/r:q8_0", ls, out, sizeof out), 0);
    assert_string_equal(out, "x/m.Q8_0.gguf");
    assert_int_equal(pick("hf://o/r:Q4_0", ls, out, sizeof out), MX_EINVAL);
    assert_non_null(strstr(out, "ambiguous"));
    assert_non_null(strstr(out, "a-Q4_0.gguf, b-Q4_0.gguf"));
    assert_int_equal(pick("hf://o/r:Q6_K", ls, out, sizeof out), MX_ENOENT); /* "../" skipped */
    assert_null(strstr(out, "up-Q6_K"));
    assert_int_equal(pick("hf://o/r:Q5_K_M", ls, out, sizeof out), MX_EUNSUP);
    assert_non_null(strstr(out, "split"));
    assert_int_equal(pick("hf://o/r", ls, out, sizeof out), MX_EINVAL); /* many .gguf */
    /* no quant: the one .gguf, else the one .safetensors */
    assert_int_equal(pick("hf://o/r", "{\"siblings\": [{\"rfilename\": \"v1.safetensors\"},"
                          "{\"rfilename\": \"x.md\"}]}", out, sizeof out), 0);
    assert_string_equal(out, "v1.safetensors");
    assert_int_equal(pick("hf://o/r", "{\"siblings\": [{\"rfilename\": \"v1.safetensors\"},"
                          "{\"rfilename\": \"m.gguf\"}]}", out, sizeof out), 0);
    assert_string_equal(out, "m.gguf");
    assert_int_equal(pick("hf://o/r", "{\"siblings\": []}", out, sizeof out), MX_ENOENT);
    assert_int_equal(pick("hf://o/r", "<html>", out, sizeof out), MX_EFORMAT);
    assert_int_equal(pick("hf://o/r", "{\"id\": 1}", out, sizeof out), MX_EFORMAT);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_three_forms_parse),
        cmocka_unit_test(test_bad_names_are_refused),
        cmocka_unit_test(test_urls_are_encoded),
        cmocka_unit_test(test_quant_tags_match_whole),
        cmocka_unit_test(test_the_picker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
