/* test_tui_rate.c - the live tokens/s (tui/rate.c) replayed on arrival patterns that made the old
 * rate (tokens since the request / time since the request) jump: a long prompt before the first
 * token, tokens in bursts, a pause. Issue 15 item 13: "175 -> 1228 -> 7620 for one model". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "tui/rate.h"

/* 1 s of prompt processing, then 200 tok/s in bursts of 16 every 80 ms for 3 s: every rate shown
 * is within 25 % of 200, none before 8 tokens. */
static void test_bursts_after_a_long_prompt(void **state) {
    (void)state;
    struct mx_rate r;
    mx_rate_reset(&r);
    double t = 1.0; /* the request was at 0 */
    long tokens = 0;
    int shown = 0;
    for (int burst = 0; burst < 38; burst++, t += 0.08) {
        for (int k = 0; k < 16; k++) {
            double v = mx_rate_add(&r, t + k * 1e-4, 1);
            tokens++;
            if (tokens < 8)
                assert_true(v == 0);
            if (v > 0) {
                shown++;
                assert_true(v > 150 && v < 250);
            }
        }
    }
    assert_true(shown > 100);
}

/* A steady stream at 1000 tok/s, one token per event, then a stall of 1 s and the same again:
 * the figure stays near 1000 and moves smoothly (no step of more than 25 % per token). */
static void test_steady_then_pause(void **state) {
    (void)state;
    struct mx_rate r;
    mx_rate_reset(&r);
    double t = 0.5, prev = 0;
    for (int i = 0; i < 3000; i++) {
        if (i == 1500)
            t += 1.0;
        double v = mx_rate_add(&r, t, 1);
        if (prev > 0 && i != 1500)
            assert_true(v > prev * 0.75 && v < prev * 1.25);
        if (i > 500 && i < 1500)
            assert_true(v > 900 && v < 1100);
        prev = v;
        t += 0.001;
    }
    assert_true(prev > 800 && prev < 1200);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bursts_after_a_long_prompt),
        cmocka_unit_test(test_steady_then_pause),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
