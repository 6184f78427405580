/* test_sampler.c - each sampling stage against a hand-computed distribution, the chain's
 * determinism by seed, the penalty window, and the draw's frequencies against softmax. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/llm/sampler.h"
#include "tests/mx_test.h"

/* Fills c with ids 0..n-1 and the given logits. */
static void fill(struct mx_cand *c, struct mx_token_data *buf, const float *logits, size_t n) {
    for (size_t i = 0; i < n; i++) {
        buf[i].id = (int32_t)i;
        buf[i].logit = logits[i];
        buf[i].p = 0.0f;
    }
    c->data = buf;
    c->n = n;
    c->sorted = 0;
}

static int has_id(const struct mx_cand *c, int32_t id) {
    for (size_t i = 0; i < c->n; i++)
        if (c->data[i].id == id)
            return 1;
    return 0;
}

static void test_softmax(void **state) {
    (void)state;
    struct mx_token_data buf[3];
    struct mx_cand c;
    fill(&c, buf, (const float[]){1.0f, 3.0f, 2.0f}, 3);
    mx_cand_softmax(&c);
    /* e^3, e^2, e^1 over their sum */
    double z = exp(1.0) + exp(2.0) + exp(3.0);
    assert_int_equal(c.data[0].id, 1);
    assert_int_equal(c.data[1].id, 2);
    assert_int_equal(c.data[2].id, 0);
    assert_true(fabs(c.data[0].p - exp(3.0) / z) < 1e-6);
    assert_true(fabs(c.data[1].p - exp(2.0) / z) < 1e-6);
    assert_true(fabs(c.data[2].p - exp(1.0) / z) < 1e-6);
}

static void test_top_k(void **state) {
    (void)state;
    struct mx_token_data buf[5];
    struct mx_cand c;
    fill(&c, buf, (const float[]){0.1f, 3.0f, 2.0f, 5.0f, 1.0f}, 5);
    mx_cand_top_k(&c, 2, 1);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.data[0].id, 3);
    assert_int_equal(c.data[1].id, 1);
    fill(&c, buf, (const float[]){0.1f, 3.0f, 2.0f, 5.0f, 1.0f}, 5);
    mx_cand_top_k(&c, 0, 1); /* off */
    assert_int_equal(c.n, 5);
    mx_cand_top_k(&c, 1, 3); /* min_keep wins */
    assert_int_equal(c.n, 3);
    assert_true(has_id(&c, 2) && has_id(&c, 1) && has_id(&c, 3));
}

/* Quickselect + sort equals a full sort, ties included, on a large random vocabulary. */
static void test_top_k_matches_full_sort(void **state) {
    (void)state;
    enum { N = 32000 };
    static struct mx_token_data a[N], b[N];
    static float logits[N];
    uint64_t seed = 7;
    for (int i = 0; i < N; i++) /* few distinct values: many ties */
        logits[i] = (float)(mx_test_rand(&seed) % 200) / 10.0f;
    struct mx_cand ca, cb;
    for (int k = 1; k < 2000; k = k * 3 + 1) {
        fill(&ca, a, logits, N);
        fill(&cb, b, logits, N);
        mx_cand_softmax(&cb); /* sorted */
        mx_cand_top_k(&ca, k, 1);
        assert_int_equal(ca.n, (size_t)k);
        for (int i = 0; i < k; i++)
            assert_int_equal(ca.data[i].id, cb.data[i].id);
    }
}

/* Probabilities 0.5, 0.3, 0.15, 0.05 as logits ln p. */
static const float P4[4] = {0.5f, 0.3f, 0.15f, 0.05f};

static void fill_p4(struct mx_cand *c, struct mx_token_data *buf) {
    float l[4];
    for (int i = 0; i < 4; i++)
        l[i] = logf(P4[i]);
    fill(c, buf, l, 4);
}

static void test_top_p(void **state) {
    (void)state;
    struct mx_token_data buf[4];
    struct mx_cand c;
    fill_p4(&c, buf);
    mx_cand_top_p(&c, 0.75f, 1); /* 0.5 < 0.75 <= 0.8: two tokens */
    assert_int_equal(c.n, 2);
    assert_int_equal(c.data[0].id, 0);
    assert_int_equal(c.data[1].id, 1);
    fill_p4(&c, buf);
    mx_cand_top_p(&c, 0.85f, 1); /* 0.8 < 0.85 <= 0.95: three */
    assert_int_equal(c.n, 3);
    fill_p4(&c, buf);
    mx_cand_top_p(&c, 0.1f, 1); /* the top token alone covers it */
    assert_int_equal(c.n, 1);
    fill_p4(&c, buf);
    mx_cand_top_p(&c, 0.1f, 3); /* min_keep */
    assert_int_equal(c.n, 3);
    fill_p4(&c, buf);
    mx_cand_top_p(&c, 1.0f, 1); /* off */
    assert_int_equal(c.n, 4);
}

static void test_min_p(void **state) {
    (void)state;
    struct mx_token_data buf[4];
    struct mx_cand c;
    fill_p4(&c, buf);
    mx_cand_min_p(&c, 0.25f, 1); /* keep p >= 0.125: 0.5, 0.3, 0.15 */
    assert_int_equal(c.n, 3);
    assert_false(has_id(&c, 3));
    fill_p4(&c, buf);
    mx_cand_min_p(&c, 0.35f, 1); /* keep p >= 0.175 */
    assert_int_equal(c.n, 2);
    fill_p4(&c, buf);
    mx_cand_min_p(&c, 0.9f, 1);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.data[0].id, 0);
    fill_p4(&c, buf);
    mx_cand_min_p(&c, 0.0f, 1); /* off */
    assert_int_equal(c.n, 4);
}

static void test_typical(void **state) {
    (void)state;
    /* H = -sum p ln p = 1.1422; |-ln p - H| = 0.449, 0.062, 0.755, 1.853 -> order 1, 0, 2, 3.
     * Mass over p = 0.5: 0.3 (not > 0.5), 0.8 (> 0.5) -> {1, 0}. */
    double h = 0.0;
    for (int i = 0; i < 4; i++)
        h -= P4[i] * log(P4[i]);
    assert_true(fabs(h - 1.1422) < 1e-3);
    struct mx_token_data buf[4];
    struct mx_cand c;
    fill_p4(&c, buf);
    mx_cand_typical(&c, 0.5f, 1);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.data[0].id, 1);
    assert_int_equal(c.data[1].id, 0);
    assert_true(fabs(c.data[0].logit - logf(0.3f)) < 1e-6); /* logits untouched */
    fill_p4(&c, buf);
    mx_cand_typical(&c, 0.9f, 1); /* 0.3, 0.8, 0.95 */
    assert_int_equal(c.n, 3);
    assert_int_equal(c.data[2].id, 2);
}

static void test_temp(void **state) {
    (void)state;
    struct mx_token_data buf[3];
    struct mx_cand c;
    fill(&c, buf, (const float[]){1.0f, -4.0f, 2.0f}, 3);
    mx_cand_temp(&c, 0.5f);
    assert_true(c.data[0].logit == 2.0f && c.data[1].logit == -8.0f && c.data[2].logit == 4.0f);
    fill(&c, buf, (const float[]){1.0f, 7.0f, 7.0f}, 3);
    mx_cand_temp(&c, 0.0f); /* greedy: the argmax, lowest id on ties */
    assert_int_equal(c.n, 1);
    assert_int_equal(c.data[0].id, 1);
}

static void test_penalties(void **state) {
    (void)state;
    struct mx_token_data buf[4];
    struct mx_cand c;
    int32_t counts[4] = {3, 1, 0, 2};
    fill(&c, buf, (const float[]){4.0f, -1.0f, 5.0f, 0.0f}, 4);
    mx_cand_penalties(&c, counts, 4, 2.0f, 0.5f, 1.0f);
    /* id0: 4/2 - 3*0.5 - 1 = -0.5; id1: -1*2 - 0.5 - 1 = -3.5; id2 unseen: 5; id3: 0*2 - 1 - 1 */
    assert_true(fabs(c.data[0].logit - -0.5f) < 1e-6);
    assert_true(fabs(c.data[1].logit - -3.5f) < 1e-6);
    assert_true(c.data[2].logit == 5.0f);
    assert_true(fabs(c.data[3].logit - -2.0f) < 1e-6);
}

/* The chain's penalty window counts only the last N accepted tokens. */
static void test_penalty_window(void **state) {
    (void)state;
    struct mx_sampler *s;
    assert_int_equal(mx_sampler_new(4, &s, NULL), 0);
    assert_int_equal(mx_sampler_add_penalties(s, 2, 1.0f, 0.0f, 10.0f), 0);
    assert_int_equal(mx_sampler_add_greedy(s), 0);
    const float l[4] = {3.0f, 2.0f, 1.0f, 0.0f};
    int32_t t;
    mx_sampler_accept(s, 0);
    mx_sampler_accept(s, 1);
    assert_int_equal(mx_sampler_sample(s, l, &t), 0);
    assert_int_equal(t, 2); /* 0 and 1 are penalised by 10 */
    mx_sampler_accept(s, 3);
    mx_sampler_accept(s, 3); /* 0 and 1 fell out of the 2-token window */
    assert_int_equal(mx_sampler_sample(s, l, &t), 0);
    assert_int_equal(t, 0);
    mx_sampler_accept(s, 0);
    mx_sampler_reset(s);
    assert_int_equal(mx_sampler_sample(s, l, &t), 0);
    assert_int_equal(t, 0);
    mx_sampler_free(s);
}

static void test_logit_bias_and_bans(void **state) {
    (void)state;
    struct mx_sampler *s;
    assert_int_equal(mx_sampler_new(3, &s, NULL), 0);
    const int32_t ids[2] = {0, 2};
    const float bias[2] = {-INFINITY, 5.0f};
    assert_int_equal(mx_sampler_add_logit_bias(s, 2, ids, bias), 0);
    assert_int_equal(mx_sampler_add_dist(s, 1), 0);
    int32_t t;
    for (int i = 0; i < 50; i++) { /* id 2 has 1 + 5 vs 3: p = 0.95; id 0 never */
        assert_int_equal(mx_sampler_sample(s, (const float[]){10.0f, 3.0f, 1.0f}, &t), 0);
        assert_true(t != 0);
    }
    const int32_t bad = 7;
    assert_int_equal(mx_sampler_add_logit_bias(s, 1, &bad, bias), MX_EINVAL);
    mx_sampler_free(s);
    /* every token banned: an error, not a random pick */
    assert_int_equal(mx_sampler_new(2, &s, NULL), 0);
    const int32_t all[2] = {0, 1};
    const float ban[2] = {-INFINITY, -INFINITY};
    assert_int_equal(mx_sampler_add_logit_bias(s, 2, all, ban), 0);
    assert_int_equal(mx_sampler_add_dist(s, 1), 0);
    assert_int_equal(mx_sampler_sample(s, (const float[]){1.0f, 2.0f}, &t), MX_EINVAL);
    mx_sampler_free(s);
    assert_int_equal(mx_sampler_new(0, &s, NULL), MX_EINVAL);
}

/* Draw frequencies follow softmax(logits / T) (20000 draws: 3 sigma ~ 0.011). */
static void test_dist_frequencies(void **state) {
    (void)state;
    struct mx_sampler *s;
    assert_int_equal(mx_sampler_new(4, &s, NULL), 0);
    assert_int_equal(mx_sampler_add_temp(s, 2.0f), 0);
    assert_int_equal(mx_sampler_add_dist(s, 12345), 0);
    const float l[4] = {2.0f, 0.0f, 1.0f, -2.0f};
    double z = 0, want[4];
    for (int i = 0; i < 4; i++)
        z += want[i] = exp(l[i] / 2.0);
    int hist[4] = {0};
    enum { N = 20000 };
    for (int i = 0; i < N; i++) {
        int32_t t;
        assert_int_equal(mx_sampler_sample(s, l, &t), 0);
        assert_true(t >= 0 && t < 4);
        hist[t]++;
    }
    for (int i = 0; i < 4; i++)
        assert_true(fabs(hist[i] / (double)N - want[i] / z) < 0.012);
    mx_sampler_free(s);
}

static void run_chain(uint64_t seed, int32_t *out, int n) {
    struct mx_sampler_params p;
    mx_sampler_params_default(&p);
    p.seed = seed;
    p.repeat_penalty = 1.1f;
    p.top_k = 50;
    p.min_p = 0.0f;
    struct mx_sampler *s;
    assert_int_equal(mx_sampler_new_params(300, &p, &s, NULL), 0);
    float l[300];
    uint64_t r = 99;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < 300; j++)
            l[j] = mx_test_randf(&r) * 3.0f;
        assert_int_equal(mx_sampler_sample(s, l, &out[i]), 0);
        mx_sampler_accept(s, out[i]);
    }
    mx_sampler_free(s);
}

/* Same seed and settings: the same tokens; another seed: other tokens. */
static void test_seed_determinism(void **state) {
    (void)state;
    int32_t a[64], b[64], c[64];
    run_chain(42, a, 64);
    run_chain(42, b, 64);
    run_chain(43, c, 64);
    assert_memory_equal(a, b, sizeof a);
    assert_memory_not_equal(a, c, sizeof a);
}

static void test_greedy_params(void **state) {
    (void)state;
    struct mx_sampler_params p;
    mx_sampler_params_default(&p);
    p.temp = 0.0f;
    struct mx_sampler *s;
    assert_int_equal(mx_sampler_new_params(5, &p, &s, NULL), 0);
    int32_t t;
    assert_int_equal(mx_sampler_sample(s, (const float[]){1, 9, NAN, 9, 2}, &t), 0);
    assert_int_equal(t, 1);
    mx_sampler_free(s);
    p.repeat_penalty = -1.0f;
    struct mx_err e = {0};
    assert_int_equal(mx_sampler_new_params(5, &p, &s, &e), MX_EINVAL);
    assert_non_null(strstr(e.msg, "repeat penalty"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_top_k),
        cmocka_unit_test(test_top_k_matches_full_sort),
        cmocka_unit_test(test_top_p),
        cmocka_unit_test(test_min_p),
        cmocka_unit_test(test_typical),
        cmocka_unit_test(test_temp),
        cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_penalty_window),
        cmocka_unit_test(test_logit_bias_and_bans),
        cmocka_unit_test(test_dist_frequencies),
        cmocka_unit_test(test_seed_determinism),
        cmocka_unit_test(test_greedy_params),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
