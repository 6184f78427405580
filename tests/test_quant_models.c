/* test_quant_models.c - the reference quantizers against real model files.
 *
 * ../shared/models/tiny-mixtral-{f16,q8_0,q4_0}.gguf were made from the same master f32 weights
 * as tiny-mixtral-f32.gguf by ggml-identical quantizers (shared/refs/llm/README.md), so
 * quantizing each f32 tensor with mx_quantize_row must give exactly the bytes in those files. The
 * d256 K-quant files (whose f32 master is not shipped) must dequantize to finite values of a
 * plausible size. Skips (exit 77) when ../shared is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/err.h"
#include "core/format/gguf.h"
#include "core/base/quant.h"
#include "tests/mx_test.h"

static const char *shared;

static struct mx_gguf *open_model(const char *file) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/models/%s", shared, file);
    struct mx_gguf *g = NULL;
    struct mx_err err = {0};
    int rc = mx_gguf_open(path, &g, &err);
    if (rc < 0)
        fail_msg("%s", mx_err_msg(&err, rc));
    return g;
}

static int64_t n_values(const struct mx_gguf_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < MX_GGUF_MAX_DIMS; d++)
        n *= t->ne[d];
    return n;
}

/* Every tensor of the quantized file equals mx_quantize_row of the f32 master's tensor. */
static void check_requantize(const char *file, int want_type) {
    struct mx_gguf *f32 = open_model("tiny-mixtral-f32.gguf");
    struct mx_gguf *q = open_model(file);
    int64_t nt = mx_gguf_n_tensors(q), n_quant = 0;
    assert_int_equal(nt, mx_gguf_n_tensors(f32));
    for (int64_t i = 0; i < nt; i++) {
        const struct mx_gguf_tensor *tq = mx_gguf_tensor(q, i);
        const struct mx_gguf_tensor *tf = mx_gguf_find_tensor(f32, tq->name);
        assert_non_null(tf);
        assert_int_equal(tf->type, MX_TYPE_F32);
        assert_memory_equal(tq->ne, tf->ne, sizeof(tq->ne));
        int64_t n = n_values(tf);
        size_t bytes;
        assert_true(mx_row_size(tq->type, n, &bytes));
        assert_int_equal(bytes, tq->nbytes);
        if (tq->type == MX_TYPE_F32) { /* norms and the router stay f32 */
            assert_memory_equal(tq->data, tf->data, bytes);
            continue;
        }
        assert_int_equal(tq->type, want_type);
        uint8_t *buf = malloc(bytes);
        assert_non_null(buf);
        /* rows are contiguous and whole blocks, so one call equals row by row */
        assert_int_equal(mx_quantize_row(tq->type, tf->data, buf, n), 0);
        if (memcmp(buf, tq->data, bytes) != 0) {
            size_t k = 0;
            while (((const uint8_t *)tq->data)[k] == buf[k])
                k++;
            fail_msg("%s: tensor %s (%s, %lld values) differs at byte %zu", file, tq->name,
                     mx_type_name(tq->type), (long long)n, k);
        }
        free(buf);
        n_quant++;
    }
    print_message("%s: %lld quantized tensors byte-identical\n", file, (long long)n_quant);
    assert_true(n_quant > 10);
    mx_gguf_close(q);
    mx_gguf_close(f32);
}

static void test_requantize_f16(void **state) {
    (void)state;
    check_requantize("tiny-mixtral-f16.gguf", MX_TYPE_F16);
}

static void test_requantize_q8_0(void **state) {
    (void)state;
    check_requantize("tiny-mixtral-q8_0.gguf", MX_TYPE_Q8_0);
}

static void test_requantize_q4_0(void **state) {
    (void)state;
    check_requantize("tiny-mixtral-q4_0.gguf", MX_TYPE_Q4_0);
}

/* Dequantizes every tensor; values must be finite and the weights' RMS in a sane range (the
 * generator draws N(0, 0.02)-ish weights; norms are ~1). */
static void check_dequantize_all(const char *file, int want_type) {
    struct mx_gguf *g = open_model(file);
    int64_t nt = mx_gguf_n_tensors(g), n_quant = 0;
    for (int64_t i = 0; i < nt; i++) {
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
        int64_t n = n_values(t);
        float *y = malloc((size_t)n * sizeof(float));
        assert_non_null(y);
        assert_int_equal(mx_dequantize_row(t->type, t->data, y, n), 0);
        double ss = 0;
        for (int64_t k = 0; k < n; k++) {
            if (!isfinite(y[k]))
                fail_msg("%s: %s value %lld is %g", file, t->name, (long long)k, y[k]);
            ss += (double)y[k] * y[k];
        }
        double rms = sqrt(ss / (double)n);
        assert_true(rms > 1e-4 && rms < 10);
        if (t->type != MX_TYPE_F32) {
            assert_int_equal(t->type, want_type);
            n_quant++;
        }
        free(y);
    }
    print_message("%s: %lld %s tensors dequantized\n", file, (long long)n_quant,
                  mx_type_name(want_type));
    assert_true(n_quant > 5);
    mx_gguf_close(g);
}

static void test_dequantize_d256_q4_k(void **state) {
    (void)state;
    check_dequantize_all("tiny-mixtral-d256-q4_k.gguf", MX_TYPE_Q4_K);
}

static void test_dequantize_d256_q6_k(void **state) {
    (void)state;
    check_dequantize_all("tiny-mixtral-d256-q6_k.gguf", MX_TYPE_Q6_K);
}

int main(void) {
    shared = mx_test_require_shared("test_quant_models (tiny-mixtral GGUF files)");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_requantize_f16),
        cmocka_unit_test(test_requantize_q8_0),
        cmocka_unit_test(test_requantize_q4_0),
        cmocka_unit_test(test_dequantize_d256_q4_k),
        cmocka_unit_test(test_dequantize_d256_q6_k),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
