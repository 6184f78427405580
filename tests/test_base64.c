/* test_base64.c - base64 for the remote image client (net/base64.h): RFC 4648's test vectors
 * both ways, a round trip of every length up to 300 over random bytes, what the decoder accepts
 * from servers (no padding, line breaks, a data URL, the URL-safe alphabet) and what it refuses
 * (a foreign byte, text after the padding, a lone last character). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/base64.h"

static const char *const VEC[][2] = {
    {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},
    {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"},
};

/* Decodes s and checks the result is want (NUL-terminated text). */
static void decodes_to(const char *s, const char *want) {
    unsigned char *b = NULL;
    size_t n = 0;
    struct mx_err err = {0};
    assert_int_equal(mx_base64_decode(s, strlen(s), &b, &n, &err), 0);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(b, want, n);
    free(b);
}

static void test_vectors(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof VEC / sizeof VEC[0]; i++) {
        char *s = NULL;
        assert_int_equal(mx_base64_encode((const unsigned char *)VEC[i][0], strlen(VEC[i][0]),
                                          &s, NULL), 0);
        assert_string_equal(s, VEC[i][1]);
        free(s);
        decodes_to(VEC[i][1], VEC[i][0]);
    }
}

static void test_round_trip(void **state) {
    (void)state;
    unsigned char src[300];
    uint64_t x = 88172645463325252u;
    for (size_t i = 0; i < sizeof src; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        src[i] = (unsigned char)x;
    }
    for (size_t n = 0; n <= sizeof src; n++) {
        char *s = NULL;
        unsigned char *b = NULL;
        size_t m = 0;
        assert_int_equal(mx_base64_encode(src, n, &s, NULL), 0);
        assert_int_equal(strlen(s), (n + 2) / 3 * 4);
        assert_int_equal(mx_base64_decode(s, strlen(s), &b, &m, NULL), 0);
        assert_int_equal(m, n);
        assert_memory_equal(b, src, n);
        free(s);
        free(b);
    }
}

static void test_lenient_forms(void **state) {
    (void)state;
    decodes_to("Zm9vYg", "foob");                        /* no padding */
    decodes_to("Zm9v\r\nYmFy\n", "foobar");              /* line breaks */
    decodes_to("data:image/png;base64,Zm9vYmE=", "fooba");
    decodes_to("-_8=", "\xfb\xff");                      /* URL-safe alphabet */
    decodes_to("+/8=", "\xfb\xff");
}

static void test_refused(void **state) {
    (void)state;
    const char *bad[] = {"Zm9v!", "Zg==Zg==", "Zm9vY", "Zg===", "data:nocomma"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        unsigned char *b = (unsigned char *)"x";
        size_t n = 7;
        struct mx_err err = {0};
        assert_int_equal(mx_base64_decode(bad[i], strlen(bad[i]), &b, &n, &err), MX_EFORMAT);
        assert_null(b);
        assert_int_equal(n, 0);
        assert_true(err.msg[0] != '\0');
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors), cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_lenient_forms), cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
