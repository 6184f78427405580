/* test_core_basics.c - errors as values, checked size maths, fp16/bf16 conversion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/readfile.h"
#include <math.h>
#include <string.h>

#include "core/base/bytes.h"
#include "core/base/err.h"
#include "core/base/role.h"
#include "core/base/util.h"
#include "tests/mx_test.h"

static void test_strerror_table(void **state) {
    (void)state;
    assert_string_equal(mx_strerror(MX_ENOMEM), "out of memory");
    assert_string_equal(mx_strerror(MX_ECANCELED), "canceled");
    assert_string_equal(mx_strerror(0), "success");
    assert_string_equal(mx_strerror(-12345), "unknown error");
}

static void test_err_keeps_first_message(void **state) {
    (void)state;
    struct mx_err e = {0};
    assert_int_equal(mx_err_set(&e, MX_EFORMAT, "m.gguf: bad magic %d", 7), MX_EFORMAT);
    assert_int_equal(mx_err_set(&e, MX_EIO, "outer"), MX_EIO);
    assert_int_equal(e.code, MX_EFORMAT);
    assert_string_equal(e.msg, "m.gguf: bad magic 7");
    assert_string_equal(mx_err_msg(&e, MX_EIO), "m.gguf: bad magic 7");
    mx_err_clear(&e);
    assert_string_equal(mx_err_msg(&e, MX_EIO), "input/output error");
    assert_int_equal(mx_err_set(NULL, MX_EINVAL, "x"), MX_EINVAL);
}

static void test_checked_size(void **state) {
    (void)state;
    size_t r = 0;
    assert_true(mx_mul_size(1u << 20, 1u << 20, &r));
    assert_true(r == (size_t)1 << 40);
    assert_false(mx_mul_size(SIZE_MAX / 2 + 1, 2, &r));
    assert_false(mx_add_size(SIZE_MAX, 1, &r));
}

/* Oracle for half->float: the value from its fields in double arithmetic. */
static double half_value(uint16_t h) {
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

static void test_fp16_exhaustive(void **state) {
    (void)state;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = mx_fp16_to_fp32((uint16_t)h);
        int e = (h >> 10) & 31;
        if (e == 31) {
            assert_true((h & 1023) ? isnan(f) : isinf(f));
            continue;
        }
        assert_true((double)f == half_value((uint16_t)h));
        /* every half survives float and back */
        assert_int_equal(mx_fp32_to_fp16(f), h);
    }
}

/* float->half must round to nearest even: check against the two neighbouring halves. */
static void test_fp16_rounding(void **state) {
    (void)state;
    uint64_t seed = 1;
    for (int i = 0; i < 200000; i++) {
        float f = mx_test_randf(&seed) * (float)ldexp(1.0, (int)(mx_test_rand(&seed) % 40) - 28);
        uint16_t h = mx_fp32_to_fp16(f);
        double v = half_value(h);
        double err = fabs(v - f);
        /* neighbours of h (same sign) must not be strictly closer */
        uint16_t up = (uint16_t)(h + 1), dn = (uint16_t)(h - 1);
        if (((up >> 10) & 31) != 31 && (up & 0x7fff) != 0)
            assert_true(fabs(half_value(up) - f) >= err);
        if ((h & 0x7fff) != 0)
            assert_true(fabs(half_value(dn) - f) >= err);
        if (fabs(half_value(up) - f) == err && (h & 0x7fff) != 0)
            assert_int_equal(h & 1, 0); /* tie -> even */
    }
    assert_int_equal(mx_fp32_to_fp16(65520.0f), 0x7c00);  /* rounds to inf */
    assert_int_equal(mx_fp32_to_fp16(65519.0f), 0x7bff);
    assert_int_equal(mx_fp32_to_fp16(-0.0f), 0x8000);
}

static void test_bf16(void **state) {
    (void)state;
    assert_true(mx_bf16_to_fp32(mx_fp32_to_bf16(1.0f)) == 1.0f);
    /* 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even -> 1.0 */
    assert_int_equal(mx_fp32_to_bf16(1.00390625f), 0x3f80);
    assert_int_equal(mx_fp32_to_bf16(1.01171875f), 0x3f82); /* 1 + 3*2^-8 -> up to even */
    assert_true(isnan(mx_bf16_to_fp32(mx_fp32_to_bf16(NAN))));
}

/* The byte buffer: pieces of every size append in order, the text stays NUL-terminated, and an
 * impossible size is refused with the buffer unchanged. */
static void test_bytes(void **state) {
    (void)state;
    struct mx_bytes b = {0};
    size_t want = 0;
    for (size_t k = 0; k < 300; k++) {
        char piece[600];
        size_t n = (k * 37) % sizeof piece;
        memset(piece, 'a' + (int)(k % 26), n);
        assert_int_equal(mx_bytes_add(&b, piece, n), 0);
        for (size_t j = 0; j < n; j++)
            assert_int_equal(b.p[want + j], 'a' + (int)(k % 26));
        want += n;
        assert_int_equal(b.n, want);
        assert_true(b.cap > b.n);
        assert_int_equal(b.p[b.n], '\0');
    }
    char *p = b.p;
    assert_int_equal(mx_bytes_add(&b, "x", (size_t)-1 / 2), MX_ENOMEM);
    assert_ptr_equal(b.p, p);
    assert_int_equal(b.n, want);
    assert_int_equal(mx_bytes_write(&b, "yz", 2), 0);
    assert_string_equal(b.p + want, "yz");
    mx_bytes_free(&b);
    assert_null(b.p);
    assert_int_equal(b.n, 0);
    mx_bytes_free(NULL);
    /* sizes that land exactly on the growth steps still leave room for the NUL */
    for (size_t n = 255; n <= 513; n++) {
        char big[513];
        memset(big, 'q', n);
        struct mx_bytes e = {0};
        assert_int_equal(mx_bytes_add(&e, big, n), 0);
        assert_true(e.cap > n);
        assert_int_equal(e.p[n], '\0');
        mx_bytes_free(&e);
    }
}

/* One table of role names: every role round-trips through its name, anything else is refused. */
static void test_role_names(void **state) {
    (void)state;
    const char *names[] = {"system", "user", "assistant", "tool"};
    for (int r = 0; r < MX_N_ROLES; r++) {
        assert_string_equal(mx_role_name((enum mx_role)r), names[r]);
        enum mx_role back = MX_ROLE_TOOL;
        assert_int_equal(mx_role_parse(names[r], &back), 0);
        assert_int_equal(back, r);
    }
    enum mx_role keep = MX_ROLE_USER;
    assert_int_equal(mx_role_parse("model", &keep), MX_EINVAL);
    assert_int_equal(mx_role_parse(NULL, &keep), MX_EINVAL);
    assert_int_equal(keep, MX_ROLE_USER);
    assert_string_equal(mx_role_name((enum mx_role)7), "?");
}

/* mx_read_file: exact bytes (NULs kept, NUL appended) across the growth steps, the cap exactly
 * at and one below the size, a pipe, a missing file. */
static void test_read_file(void **state) {
    (void)state;
    char path[] = "/tmp/mx_readfile_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t size = 100000;
    unsigned char *data = malloc(size);
    assert_non_null(data);
    for (size_t i = 0; i < size; i++)
        data[i] = (unsigned char)(i * 7 + (i >> 9));
    assert_int_equal(write(fd, data, size), (ssize_t)size);
    close(fd);
    char *b = NULL;
    size_t n = 0;
    struct mx_err err = {0};
    assert_int_equal(mx_read_file(path, 0, &b, &n, &err), 0);
    assert_int_equal(n, size);
    assert_memory_equal(b, data, size);
    assert_int_equal(b[n], '\0');
    free(b);
    assert_int_equal(mx_read_file(path, size, &b, &n, &err), 0);
    assert_int_equal(n, size);
    free(b);
    assert_int_equal(mx_read_file(path, size - 1, &b, &n, &err), MX_ERANGE);
    assert_null(b);
    assert_non_null(strstr(err.msg, "more than 99999 bytes"));
    mx_err_clear(&err);
    assert_int_equal(mx_read_file("/dev/null", 10, &b, &n, &err), 0);
    assert_int_equal(n, 0);
    assert_string_equal(b, "");
    free(b);
    unlink(path);
    assert_int_equal(mx_read_file(path, 0, &b, &n, &err), MX_ENOENT);
    assert_non_null(strstr(err.msg, "cannot open"));
    free(data);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_table),
        cmocka_unit_test(test_err_keeps_first_message),
        cmocka_unit_test(test_checked_size),
        cmocka_unit_test(test_fp16_exhaustive),
        cmocka_unit_test(test_fp16_rounding),
        cmocka_unit_test(test_bf16),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_role_names),
        cmocka_unit_test(test_read_file),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
