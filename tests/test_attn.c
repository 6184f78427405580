/* test_attn.c - the SIMD attention kernels (kernels/cpu/attn_avx2.c) against the scalar reference
 * (mx_ref_attn) at depths that cross their block and split boundaries.
 *
 * Decode reads full blocks of the cache in place (decode_block) and falls back to staging for
 * partial blocks and blocks with empty cells; long caches are split into chunks merged per head;
 * prefill goes through blocks of queries (and sgemm tiles from MX_ATTN_GEMM_ROWS rows). Each of
 * these paths is compared with the reference for 1, 17 and 4097 cells, GQA ratios 1, 4 and 8,
 * f16 and q8_0 caches, sliding windows and attention sinks as gpt-oss uses them, holes in the
 * cache, with the AVX2 set forced (also on AVX-512 CPUs) and, where the CPU has AVX-512, with the
 * AVX-512 set (its wider decode block, attn_avx512.c, against the same reference and bounds); and
 * decode results must not depend on the thread count (the split depends on the cache length
 * only).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/base/util.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "tests/mx_test.h"

static struct mx_backend *be_ref, *be_a1, *be_a3; /* scalar; AVX2 on 1 and 3 threads */
static struct mx_backend *be_w1, *be_w3; /* the CPU's best set (AVX-512 where it has it) */
static uint64_t rng = 4242;

/* Every test needs the AVX2 set: on a CPU without it there is nothing to compare. */
#define REQUIRE_AVX2()                                                                            \
    do {                                                                                          \
        if (!mx_cpu_of(be_a1)->kern.attn_split)                                                   \
            mx_test_skip("no AVX2 attention kernels on this CPU: nothing to compare");           \
    } while (0)

/* A tensor of zeros (callers free t->data). */
static struct mx_tensor mk(enum mx_type type, int64_t ne0, int64_t ne1, int64_t ne2) {
    struct mx_tensor t;
    assert_int_equal(mx_tensor_init(&t, type, ne0, ne1, ne2, 1), 0);
    t.data = calloc(1, mx_tensor_nbytes(&t));
    assert_non_null(t.data);
    return t;
}

/* One attention case: geometry, cache type, query count, window, sinks, holes. */
struct acase {
    enum mx_type kvt;
    int group;     /* query heads per KV head */
    int64_t n_kv;  /* cache cells */
    int64_t T;     /* query tokens: the last T positions */
    int32_t window;
    bool sinks;
    bool holes;    /* every 53rd cell empty (kpos -1), as after a removal */
    int hd;        /* head size; 0: 64 */
};

/* Runs c on the reference and on one SIMD set (1 and 3 threads: b1, b3); fails with the case
 * when the SIMD result is farther than the tolerance from the reference, or the thread counts
 * differ. */
static void run_case_on(const struct acase *c, struct mx_backend *b1, struct mx_backend *b3) {
    const int hd = c->hd ? c->hd : 64, nkv = 2, nh = nkv * c->group;
    struct mx_tensor q = mk(MX_TYPE_F32, hd, nh, c->T);
    struct mx_tensor src = mk(MX_TYPE_F32, (int64_t)hd * nkv, c->n_kv, 1);
    struct mx_tensor kc = mk(c->kvt, (int64_t)hd * nkv, c->n_kv, 1);
    struct mx_tensor vc = mk(c->kvt, (int64_t)hd * nkv, c->n_kv, 1);
    struct mx_tensor qp = mk(MX_TYPE_I32, c->T, 1, 1), kp = mk(MX_TYPE_I32, c->n_kv, 1, 1);
    struct mx_tensor sk = mk(MX_TYPE_F32, nh, 1, 1);
    struct mx_tensor y0 = mk(MX_TYPE_F32, hd, nh, c->T), y1 = mk(MX_TYPE_F32, hd, nh, c->T);
    struct mx_tensor y3 = mk(MX_TYPE_F32, hd, nh, c->T);
    float *fq = q.data, *fs = src.data, *fk = sk.data;
    for (int64_t i = 0; i < mx_tensor_nelements(&q); i++)
        fq[i] = 2.0f * mx_test_randf(&rng);
    for (int64_t i = 0; i < mx_tensor_nelements(&src); i++)
        fs[i] = mx_test_randf(&rng);
    assert_int_equal(mx_op_cpy(be_ref, &kc, &src), 0);
    for (int64_t i = 0; i < mx_tensor_nelements(&src); i++)
        fs[i] = mx_test_randf(&rng);
    assert_int_equal(mx_op_cpy(be_ref, &vc, &src), 0);
    for (int h = 0; h < nh; h++)
        fk[h] = 3.0f * mx_test_randf(&rng);
    for (int64_t j = 0; j < c->n_kv; j++)
        ((int32_t *)kp.data)[j] = c->holes && j % 53 == 7 ? -1 : (int32_t)j;
    for (int64_t t = 0; t < c->T; t++)
        ((int32_t *)qp.data)[t] = (int32_t)(c->n_kv - c->T + t);
    struct mx_attn_params p = {.n_head = nh, .n_head_kv = nkv, .head_dim = hd, .n_kv = c->n_kv,
                               .scale = 0.125f, .window = c->window,
                               .sinks = c->sinks ? &sk : NULL};
    assert_int_equal(mx_op_attn(be_ref, &y0, &q, &kc, &vc, &qp, &kp, &p), 0);
    assert_int_equal(mx_op_attn(b1, &y1, &q, &kc, &vc, &qp, &kp, &p), 0);
    assert_int_equal(mx_op_attn(b3, &y3, &q, &kc, &vc, &qp, &kp, &p), 0);
    int64_t n = mx_tensor_nelements(&y0);
    /* q8_0: every path sits within ~2e-7 of the reference (the query is rounded to q8_0 in both,
     * products of exact values); 1e-5 still catches a score off by one query block's sum */
    double d = 0, tol = c->kvt == MX_TYPE_F16 ? 1e-3 : 1e-5;
    for (int64_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)((float *)y1.data)[i] - ((float *)y0.data)[i]));
    if (d > tol)
        fail_msg("attn (%s) %s hd %d group %d n_kv %lld T %lld window %d sinks %d holes %d: %g "
                 "from the reference (tol %g)", mx_cpu_of(b1)->kern.name, mx_type_name(c->kvt),
                 hd, c->group, (long long)c->n_kv, (long long)c->T, c->window, c->sinks,
                 c->holes, d, tol);
    if (c->T == 1 && memcmp(y1.data, y3.data, (size_t)n * sizeof(float)) != 0)
        fail_msg("decode attn (%s) %s group %d n_kv %lld: 1 and 3 threads differ",
                 mx_cpu_of(b1)->kern.name, mx_type_name(c->kvt), c->group, (long long)c->n_kv);
    free(q.data), free(src.data), free(kc.data), free(vc.data), free(qp.data), free(kp.data);
    free(sk.data), free(y0.data), free(y1.data), free(y3.data);
}

/* c on the AVX2 set and, when the CPU has a wider decode block, on the AVX-512 set too. */
static void run_case(const struct acase *c) {
    run_case_on(c, be_a1, be_a3);
    if (mx_cpu_of(be_w1)->kern.attn_block)
        run_case_on(c, be_w1, be_w3);
}

/* Decode (one query) at 1, 17 and 4097 cells: one partial block; a full block and a partial
 * one; the split path with chunks of whole blocks and a 1-cell tail. */
static void test_decode_depths(void **state) {
    (void)state;
    REQUIRE_AVX2();
    const enum mx_type types[] = {MX_TYPE_F16, MX_TYPE_Q8_0};
    const int groups[] = {1, 4, 8};
    const int64_t depths[] = {1, 17, 4097};
    for (int ti = 0; ti < 2; ti++)
        for (int gi = 0; gi < 3; gi++)
            for (int di = 0; di < 3; di++) {
                struct acase c = {.kvt = types[ti], .group = groups[gi], .n_kv = depths[di],
                                  .T = 1};
                run_case(&c);
            }
}

/* gpt-oss's layers: a 128-cell sliding window (blocks wholly outside it skipped, the edge block
 * masked in place) and sinks in the denominator; and empty cells, which send their block
 * through staging. */
static void test_decode_window_sinks_holes(void **state) {
    (void)state;
    REQUIRE_AVX2();
    const enum mx_type types[] = {MX_TYPE_F16, MX_TYPE_Q8_0};
    for (int ti = 0; ti < 2; ti++)
        for (int g = 1; g <= 8; g *= 8) {
            struct acase w = {.kvt = types[ti], .group = g, .n_kv = 4097, .T = 1, .window = 128,
                              .sinks = true};
            struct acase s = {.kvt = types[ti], .group = g, .n_kv = 4097, .T = 1, .sinks = true};
            struct acase h = {.kvt = types[ti], .group = g, .n_kv = 4097, .T = 1, .holes = true};
            run_case(&w);
            run_case(&s);
            run_case(&h);
        }
}

/* Prefill chunks at depth: 5 queries (few rows: the block path) and 40 queries (sgemm tiles)
 * after 4097 - T cells, and a 17-token prompt on its own; with a window and sinks. */
static void test_prefill_depths(void **state) {
    (void)state;
    REQUIRE_AVX2();
    const enum mx_type types[] = {MX_TYPE_F16, MX_TYPE_Q8_0};
    for (int ti = 0; ti < 2; ti++)
        for (int g = 1; g <= 4; g *= 4) {
            struct acase a = {.kvt = types[ti], .group = g, .n_kv = 4097, .T = 5};
            struct acase b = {.kvt = types[ti], .group = g, .n_kv = 4097, .T = 40};
            struct acase c = {.kvt = types[ti], .group = g, .n_kv = 17, .T = 17};
            struct acase d = {.kvt = types[ti], .group = g, .n_kv = 1000, .T = 40, .window = 128,
                              .sinks = true};
            run_case(&a);
            run_case(&b);
            run_case(&c);
            run_case(&d);
        }
}

/* Head sizes other than 64: 128 (a constant in the decode kernel, like 64), 96 and 40 (the
 * generic loop; 40 leaves 8 dimensions after the 16-wide steps of P V). q8_0 needs multiples of
 * 32. */
static void test_head_sizes(void **state) {
    (void)state;
    REQUIRE_AVX2();
    const struct {
        enum mx_type kvt;
        int hd;
    } hs[] = {{MX_TYPE_F16, 128}, {MX_TYPE_F16, 40}, {MX_TYPE_Q8_0, 128}, {MX_TYPE_Q8_0, 96}};
    for (int i = 0; i < 4; i++)
        for (int g = 1; g <= 4; g *= 4) {
            struct acase d = {.kvt = hs[i].kvt, .hd = hs[i].hd, .group = g, .n_kv = 4097, .T = 1};
            struct acase w = {.kvt = hs[i].kvt, .hd = hs[i].hd, .group = g, .n_kv = 2000, .T = 1,
                              .window = 128, .sinks = true};
            struct acase p = {.kvt = hs[i].kvt, .hd = hs[i].hd, .group = g, .n_kv = 600, .T = 24};
            run_case(&d);
            run_case(&w);
            run_case(&p);
        }
}

static int setup(void **state) {
    (void)state;
    struct mx_err err = {0};
    be_ref = mx_backend_cpu_new(1, &err);
    be_a1 = mx_backend_cpu_new(1, &err);
    be_a3 = mx_backend_cpu_new(3, &err);
    be_w1 = mx_backend_cpu_new(1, &err);
    be_w3 = mx_backend_cpu_new(3, &err);
    if (!be_ref || !be_a1 || !be_a3 || !be_w1 || !be_w3)
        return -1;
    mx_cpu_kernels_init(&mx_cpu_of(be_ref)->kern, MX_CPU_SCALAR);
    mx_cpu_kernels_init(&mx_cpu_of(be_a1)->kern, MX_CPU_AVX2); /* also on AVX-512 CPUs */
    mx_cpu_kernels_init(&mx_cpu_of(be_a3)->kern, MX_CPU_AVX2);
    mx_cpu_kernels_init(&mx_cpu_of(be_w1)->kern, MX_CPU_AVX512); /* as far as the CPU goes */
    mx_cpu_kernels_init(&mx_cpu_of(be_w3)->kern, MX_CPU_AVX512);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mx_backend_free(be_ref);
    mx_backend_free(be_a1);
    mx_backend_free(be_a3);
    mx_backend_free(be_w1);
    mx_backend_free(be_w3);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_depths),
        cmocka_unit_test(test_decode_window_sinks_holes),
        cmocka_unit_test(test_prefill_depths),
        cmocka_unit_test(test_head_sizes),
    };
    return mx_test_status(cmocka_run_group_tests(tests, setup, teardown));
}
