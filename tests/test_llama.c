/* test_llama.c - the LLM engine against llama.cpp's goldens and against itself.
 *
 * Oracles (tolerances from ../shared/refs/llm/README.md):
 *   - F32 models (stories260K, its 8-expert twin, tiny-mixtral-f32) with an F32 KV cache: every
 *     prompt row within 1e-4 of llama.cpp, and the 48 greedy ids token for token (the README
 *     measured 1.2e-5 between llama.cpp and float64 maths, so 1e-4 leaves room for summation
 *     order but catches any real error, which moves logits by >= 1e-2);
 *   - F16 weights: within 0.02 of llama.cpp (llama.cpp f32 vs f16 of the same master weights:
 *     0.017) and the greedy ids;
 *   - quantized weights with float activations (--act f32): refs/llm/exact (float64 maths on the
 *     dequantized weights) within 1e-4 on every prompt row and teacher-forced step; this checks
 *     block layouts, scales and the MoE maths directly;
 *   - quantized weights with ggml activation rounding: llama.cpp's goldens teacher-forced on
 *     prompt + greedy ids, with the margin-aware rule (the tiny MoE models are chaotic once
 *     activations are rounded: a 1e-6 change can flip an expert choice);
 *   - dense stories260K == its 8 identical experts (routing correctness);
 *   - one-token-at-a-time decode == one batch; small ubatches == one ubatch;
 *   - KV-cache edits: removing and refeeding the tail reproduces the logits; a context shift
 *     (discard + re-rotation) equals a fresh context fed the kept tokens;
 *   - bad models (made with the project's GGUF writer) are refused with a message naming the
 *     problem; the project's own random tiny MoE model in every weight type equals its
 *     dequantized F32 twin (1e-4) and stays near the unquantized original (per-type bound).
 * Skips (77) when ../shared is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/format/gguf.h"
#include "core/llm/llama.h"
#include "core/base/quant.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu.h"
#include "tests/mx_test.h"

static const char *g_shared;

static json_t *load_json(const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/refs/llm/%s", g_shared, rel);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    if (!j)
        fail_msg("%s: %s (line %d)", path, e.text, e.line);
    return j;
}

struct engine {
    struct mx_backend *be;
    struct mx_llama_model *m;
    struct mx_llama_ctx *c;
    int32_t n_vocab;
};

static void engine_open(struct engine *e, const char *model, int64_t n_ctx, int kv_type,
                        int act, int ubatch) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s", g_shared, model);
    struct mx_err err = {0};
    e->be = mx_backend_cpu_new(2, &err);
    if (!e->be)
        fail_msg("backend: %s", err.msg);
    assert_int_equal(mx_backend_set_act_mode(e->be, act), 0);
    int rc = mx_llama_model_load(path, e->be, &e->m, &err);
    if (rc < 0)
        fail_msg("load %s: %s", model, mx_err_msg(&err, rc));
    struct mx_llama_ctx_params p;
    mx_llama_ctx_params_default(&p);
    p.n_ctx = n_ctx;
    p.kv_type = (enum mx_type)kv_type;
    p.n_ubatch = ubatch;
    rc = mx_llama_ctx_new(e->m, &p, &e->c, &err);
    if (rc < 0)
        fail_msg("context: %s", mx_err_msg(&err, rc));
    e->n_vocab = mx_llama_model_hparams(e->m)->n_vocab;
}

static void engine_close(struct engine *e) {
    mx_llama_ctx_free(e->c);
    mx_llama_model_free(e->m);
    mx_backend_free(e->be);
    memset(e, 0, sizeof *e);
}

/* Collects every row of a decode. */
struct rows {
    float *v;       /* n * n_vocab */
    int64_t n;
    int32_t n_vocab;
};

static int keep_row(void *ud, int64_t i, const float *l) {
    struct rows *r = ud;
    if (i < r->n)
        memcpy(r->v + i * r->n_vocab, l, (size_t)r->n_vocab * sizeof *l);
    return 0;
}

/* Decodes ids (all rows) into a new rows buffer. */
static struct rows decode_all(struct engine *e, const int32_t *ids, int64_t n) {
    struct rows r = {calloc((size_t)(n * e->n_vocab), sizeof(float)), n, e->n_vocab};
    assert_non_null(r.v);
    struct mx_err err = {0};
    int rc = mx_llama_decode(e->c, ids, n, true, keep_row, &r, &err);
    if (rc < 0)
        fail_msg("decode: %s", mx_err_msg(&err, rc));
    return r;
}

static int32_t *json_ids(json_t *a, int64_t *n) {
    *n = (int64_t)json_array_size(a);
    int32_t *v = malloc((size_t)(*n + 1) * sizeof *v);
    for (int64_t i = 0; i < *n; i++)
        v[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return v;
}

static double row_diff(const float *l, json_t *row, int32_t n) {
    assert_int_equal(json_array_size(row), (size_t)n);
    double mx = 0;
    for (int32_t j = 0; j < n; j++) {
        double d = fabs((double)l[j] - json_number_value(json_array_get(row, (size_t)j)));
        if (!(d <= mx))
            mx = d; /* NaN propagates as failure */
    }
    return mx;
}

static int32_t argmax(const float *l, int32_t n) {
    int32_t b = 0;
    for (int32_t j = 1; j < n; j++)
        if (l[j] > l[b])
            b = j;
    return b;
}

/* Max |diff| over the 5 ids recorded for a generation step. */
static double top5_diff(const float *l, json_t *top5) {
    double mx = 0;
    for (size_t k = 0; k < json_array_size(top5); k++) {
        json_t *p = json_array_get(top5, k);
        int32_t id = (int32_t)json_integer_value(json_array_get(p, 0));
        double d = fabs(l[id] - json_number_value(json_array_get(p, 1)));
        if (!(d <= mx))
            mx = d;
    }
    return mx;
}

/* Golden check. Every prompt row within tol. Then 48 generation steps, one token at a time:
 * strict: our argmax is fed back and must equal the golden id at every step; !strict
 * (teacher-forced: the golden id is fed back): the argmax must agree wherever the golden
 * top-1/top-2 margin exceeds 4 tol. Both: at least 95 % of the steps keep their top-5 logits
 * within tol (f16 rounding moves logits enough to flip a near-tied expert choice of the random
 * tiny MoE now and then, which moves a step by whole units), all of them when tol <= 1e-4. */
static void check_golden(const char *model, const char *golden, int kv_type, int act, double tol,
                         bool strict) {
    json_t *g = load_json(golden);
    json_t *cases = json_object_get(g, "cases");
    struct engine e;
    engine_open(&e, model, 2048, kv_type, act, 512);
    double worst = 0, worst_gen = 0;
    int steps = 0, steps_close = 0, n_margin = 0, n_margin_ok = 0;
    float *last = malloc((size_t)e.n_vocab * sizeof *last);
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *cs = json_array_get(cases, ci);
        int64_t n, n_gen;
        int32_t *ids = json_ids(json_object_get(cs, "prompt_ids"), &n);
        int32_t *gen = json_ids(json_object_get(cs, "gen_ids"), &n_gen);
        json_t *pl = json_object_get(cs, "prompt_logits");
        json_t *top5 = json_object_get(cs, "gen_top5");
        mx_llama_kv_clear(e.c);
        struct rows r = decode_all(&e, ids, n);
        for (int64_t i = 0; i < n; i++) {
            double d = row_diff(r.v + i * e.n_vocab, json_array_get(pl, (size_t)i), e.n_vocab);
            if (d > worst)
                worst = d;
            if (!(d <= tol))
                fail_msg("%s case %zu row %lld: max |diff| %g > %g", golden, ci, (long long)i,
                         d, tol);
        }
        memcpy(last, r.v + (n - 1) * e.n_vocab, (size_t)e.n_vocab * sizeof *last);
        for (int64_t k = 0; k < n_gen; k++) {
            json_t *t5 = json_array_get(top5, (size_t)k);
            double d = top5_diff(last, t5);
            double margin = json_number_value(json_array_get(json_array_get(t5, 0), 1)) -
                            json_number_value(json_array_get(json_array_get(t5, 1), 1));
            int32_t t = argmax(last, e.n_vocab);
            if (d > worst_gen)
                worst_gen = d;
            steps++;
            steps_close += d <= tol;
            if (margin > 4 * tol) {
                n_margin++;
                n_margin_ok += t == gen[k];
            }
            if (strict && t != gen[k])
                fail_msg("%s case %zu gen step %lld: id %d (golden %d), top-5 |diff| %g",
                         golden, ci, (long long)k, t, gen[k], d);
            if (!strict)
                t = gen[k];
            struct mx_err err = {0};
            int rc = mx_llama_decode(e.c, &t, 1, false, NULL, NULL, &err);
            if (rc < 0)
                fail_msg("decode: %s", mx_err_msg(&err, rc));
            memcpy(last, mx_llama_logits(e.c), (size_t)e.n_vocab * sizeof *last);
        }
        free(r.v);
        free(ids);
        free(gen);
    }
    print_message("  %s (kv %s, act %s): prompt rows max |diff| %.3g; gen steps max %.3g, "
                  "%d/%d within %g, argmax %d/%d where margin > %g\n", golden,
                  mx_type_name(kv_type), act == MX_ACT_F32 ? "f32" : "ggml", worst, worst_gen,
                  steps_close, steps, tol, n_margin_ok, n_margin, 4 * tol);
    assert_int_equal(n_margin_ok, n_margin);
    assert_true(steps_close >= steps * 95 / 100);
    if (tol <= 1e-4) /* float32 maths: no chaos, every step within tol */
        assert_int_equal(steps_close, steps);
    free(last);
    engine_close(&e);
    json_decref(g);
}

static __attribute__((unused)) void test_stories260K(void **state) {
    (void)state;
    check_golden("stories260K.gguf", "logits-stories260K.json", MX_TYPE_F32, MX_ACT_GGML, 1e-4,
                 true);
}

static __attribute__((unused)) void test_stories260K_moe8(void **state) {
    (void)state;
    check_golden("stories260K-moe8.gguf", "logits-stories260K-moe8.json", MX_TYPE_F32,
                 MX_ACT_GGML, 1e-4, true);
}

static __attribute__((unused)) void test_tiny_mixtral_f32(void **state) {
    (void)state;
    check_golden("tiny-mixtral-f32.gguf", "logits-tiny-mixtral-f32.json", MX_TYPE_F32,
                 MX_ACT_GGML, 1e-4, true);
}

/* F16 KV cache on the F32 models: llama.cpp's own F16-vs-F32 cache gap is 0.023 / 0.008. */
static __attribute__((unused)) void test_f16_kv_cache(void **state) {
    (void)state;
    check_golden("stories260K.gguf", "logits-stories260K.json", MX_TYPE_F16, MX_ACT_GGML, 0.03,
                 true);
    check_golden("tiny-mixtral-f32.gguf", "logits-tiny-mixtral-f32.json", MX_TYPE_F16,
                 MX_ACT_GGML, 0.03, false);
}

static void check_ggml_quant(const char *model, const char *golden, enum mx_type kv,
                             double max_median, double min_close, double max_worst,
                             double min_exact);

/* Q8_0 KV cache: 8-bit blocks of 32 carry ~0.4 % error (f16: 0.05 %). llama.cpp itself refuses
 * a Q8_0 cache for stories260K and tiny-mixtral (head dims 8 and 16 do not hold a block of 32),
 * so the peer figure comes from tiny-mixtral-d256-q4_k (head dim 32): llama.cpp's own Q8_0 cache
 * (flash attention, which it needs for a quantized V) against its F32-cache golden gives, over
 * the 421 teacher-forced rows, median 0.142, worst 5.37 (a flipped expert), 12 rows within 0.05
 * (tests/bench/peer_kv_gap.py; mixel measured the same to 3 digits). Allowed: 1.2 times the
 * peer. stories260K, where one block spans 4 heads of 8 dims (a small head loses most of its
 * bits), has no peer figure: its bound stays what mixel measures with room, 1.2 (measured 0.96,
 * the same with float or ggml activations; it was 1.5), with the argmax where the margin is
 * clear. */
static __attribute__((unused)) void test_q8_0_kv_cache(void **state) {
    (void)state;
    check_golden("stories260K.gguf", "logits-stories260K.json", MX_TYPE_Q8_0, MX_ACT_GGML, 1.2,
                 false);
    check_ggml_quant("tiny-mixtral-d256-q4_k.gguf", "logits-tiny-mixtral-d256-q4_k.json",
                     MX_TYPE_Q8_0, 1.2 * 0.142, 0.0, 1.2 * 5.37, 0.0);
}

/* F16 weights against llama.cpp, with ggml's f16 rounding of the activations (all rows and steps
 * within 0.0075) and with float activations (same greedy ids; one step of 288, case 3 step 22,
 * is off by 2.6: a near-tied expert choice that the f16 rounding flips in llama.cpp). */
static __attribute__((unused)) void test_tiny_mixtral_f16(void **state) {
    (void)state;
    check_golden("tiny-mixtral-f16.gguf", "logits-tiny-mixtral-f16.json", MX_TYPE_F32,
                 MX_ACT_GGML, 0.02, true);
    check_golden("tiny-mixtral-f16.gguf", "logits-tiny-mixtral-f16.json", MX_TYPE_F32,
                 MX_ACT_F32, 0.02, true);
}

/* Quantized weights, float activations, against float64 maths on the dequantized weights. */
static __attribute__((unused)) void test_exact_quantized(void **state) {
    (void)state;
    static const char *models[] = {"tiny-mixtral-f16", "tiny-mixtral-q8_0", "tiny-mixtral-q4_0",
                                   "tiny-mixtral-d256-q4_k", "tiny-mixtral-d256-q6_k"};
    for (size_t i = 0; i < MX_ARRAY_LEN(models); i++) {
        char m[128], g[160];
        snprintf(m, sizeof m, "%s.gguf", models[i]);
        snprintf(g, sizeof g, "exact/logits-%s.json", models[i]);
        check_golden(m, g, MX_TYPE_F32, MX_ACT_F32, 1e-4, false);
    }
}

/* Quantized weights with ggml's activation rounding against llama.cpp, teacher-forced on the
 * prompt and the golden continuation. Rule (README "robust checks"): the argmax agrees wherever
 * the golden top-1/top-2 margin exceeds 0.5 on all but 3 % of those steps, the median row's
 * max |diff| stays under max_median, at least min_close of the rows are within 0.05, and no row
 * is off by max_worst or more. The README's float64 emulation of ggml reaches ~1e-6 (most rows),
 * float activations (no emulation) ~0.2. Rows agree with the golden bit for bit (|diff| under
 * 4.8e-7 is the JSON's shortest decimal against the float) until one activation rounds the other
 * way on a 1-ulp difference elsewhere, after which the cache carries it. RoPE rotates as ggml's
 * FMA build does (fmaf(x0, c, -(x1 s))): the plain products differed on 13 % of the rotated
 * values, which took the Q8_0 median from 5e-7 to 0.045. What still differs (found by dumping
 * llama.cpp's graph tensors): the F32 router matmul (llama.cpp: tinyBLAS's 8-lane order; mixel:
 * sgemm / dot_f32) and the attention (ggml's two-pass softmax without flash attention against
 * mixel's online softmax), both 1-2 ulp. Q8_0 sums per lane as ggml's vec_dot and llamafile's
 * tinyBLAS do, repacked or not (MIXEL_NO_REPACK): median 4.7e-7, 56 % of the rows within 1e-6;
 * repacked Q4_0 (8-row groups, as llama.cpp repacks on AVX2 when it made these goldens) sums
 * each block the way ggml's repacked kernel does: median 4.6e-7, 80 % exact; non-repacked Q4_0
 * sums its row kernel's two accumulators in another order (median 0.058). The K-quants: median
 * 1.5e-6 (Q4_K) / 2.3e-6 (Q6_K), 6e-6 without repacking. min_exact (the share within 1e-6)
 * catches a summation order that is not ggml's. The rows are chaotic (an expert flip moves a
 * row by whole units), so the share within 0.05 and the worst row have bounds measured on this
 * suite's CPU (AMD EPYC, AVX-512; with and without MIXEL_NO_REPACK) with some room: within 0.05
 * 86-99.8 % (Q4_K), 77-79 % (Q6_K), 64 % (Q8_0), 93 % (Q4_0 repacked), 45 % (Q4_0 not
 * repacked); worst rows 0.18 (Q4_K), 0.20 (Q6_K), 1.38 (Q8_0), 0.11 / 1.7 (Q4_0 repacked / not).
 * A bug that spoils a minority of the rows passes the median and the argmax rule but not these
 * two. */
static void check_ggml_quant(const char *model, const char *golden, enum mx_type kv,
                             double max_median, double min_close, double max_worst,
                             double min_exact) {
    json_t *g = load_json(golden);
    json_t *cases = json_object_get(g, "cases");
    struct engine e;
    engine_open(&e, model, 2048, kv, MX_ACT_GGML, 512);
    int n_rows = 0, n_close = 0, n_exact = 0, n_margin = 0, n_margin_ok = 0;
    double worst = 0;
    double *diffs = malloc(4096 * sizeof *diffs);
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *cs = json_array_get(cases, ci);
        int64_t n, n_gen;
        int32_t *ids = json_ids(json_object_get(cs, "prompt_ids"), &n);
        int32_t *gen = json_ids(json_object_get(cs, "gen_ids"), &n_gen);
        int32_t *all = malloc((size_t)(n + n_gen) * sizeof *all);
        memcpy(all, ids, (size_t)n * sizeof *all);
        memcpy(all + n, gen, (size_t)(n_gen - 1) * sizeof *all);
        json_t *pl = json_object_get(cs, "prompt_logits"), *top5 = json_object_get(cs, "gen_top5");
        mx_llama_kv_clear(e.c);
        struct rows r = decode_all(&e, all, n + n_gen - 1);
        for (int64_t i = 0; i < n + n_gen - 1; i++) {
            const float *l = r.v + i * e.n_vocab;
            double d;
            if (i < n - 1) {
                d = row_diff(l, json_array_get(pl, (size_t)i), e.n_vocab);
            } else {
                json_t *t5 = json_array_get(top5, (size_t)(i - (n - 1)));
                d = top5_diff(l, t5);
                double margin = json_number_value(json_array_get(json_array_get(t5, 0), 1)) -
                                json_number_value(json_array_get(json_array_get(t5, 1), 1));
                if (margin > 0.5) {
                    n_margin++;
                    n_margin_ok += argmax(l, e.n_vocab) == gen[i - (n - 1)];
                }
            }
            if (n_rows < 4096)
                diffs[n_rows] = d;
            n_rows++;
            n_close += d <= 0.05;
            n_exact += d <= 1e-6;
            worst = d > worst ? d : worst;
        }
        free(r.v);
        free(all);
        free(ids);
        free(gen);
    }
    int k = MX_MIN(n_rows, 4096);
    for (int i = 1; i < k; i++) /* insertion sort for the median */
        for (int j = i; j > 0 && diffs[j - 1] > diffs[j]; j--) {
            double t = diffs[j]; diffs[j] = diffs[j - 1]; diffs[j - 1] = t;
        }
    double median = diffs[k / 2];
    print_message("  %s (act ggml, kv %s): %d rows, median max|diff| %.3g, worst %.3g, %d within "
                  "0.05, %d within 1e-6, argmax %d/%d where margin > 0.5\n", golden,
                  mx_type_name(kv), n_rows, median, worst, n_close, n_exact, n_margin_ok,
                  n_margin);
    free(diffs);
    engine_close(&e);
    json_decref(g);
    assert_true(median < max_median);
    assert_true(n_margin_ok >= n_margin - n_margin * 3 / 100);
    if (n_close < min_close * n_rows)
        fail_msg("%s: only %d of %d rows within 0.05 (want >= %.0f %%)", golden, n_close, n_rows,
                 100 * min_close);
    if (worst >= max_worst)
        fail_msg("%s: the worst row is off by %.3g (bound %.3g)", golden, worst, max_worst);
    if (n_exact < min_exact * n_rows)
        fail_msg("%s: only %d of %d rows within 1e-6 (want >= %.0f %%)", golden, n_exact, n_rows,
                 100 * min_exact);
}

static __attribute__((unused)) void test_ggml_quantized(void **state) {
    (void)state;
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    assert_non_null(be);
    const char *no = getenv("MIXEL_NO_REPACK");
    bool no_repack = no && *no && strcmp(no, "0") != 0;
    bool repacks = mx_cpu_of(be)->kern.gemm_x8[MX_LAYOUT_Q4_0X8] && !no_repack;
    mx_backend_free(be);
    check_ggml_quant("tiny-mixtral-d256-q4_k.gguf", "logits-tiny-mixtral-d256-q4_k.json",
                     MX_TYPE_F32, 1e-4, 0.75, 0.5, 0.0);
    check_ggml_quant("tiny-mixtral-d256-q6_k.gguf", "logits-tiny-mixtral-d256-q6_k.json",
                     MX_TYPE_F32, 2e-5, 0.7, 0.5, 0.0);
    /* Q8_0 sums in ggml's lane order on both paths: 235 of 421 rows within 1e-6 (the
     * two-accumulator order before gave ~1.3e-6 on rows that agree; plain-product RoPE 185) */
    check_ggml_quant("tiny-mixtral-q8_0.gguf", "logits-tiny-mixtral-q8_0.json", MX_TYPE_F32, 2e-6,
                     0.58, 2.0, 0.5);
    check_ggml_quant("tiny-mixtral-q4_0.gguf", "logits-tiny-mixtral-q4_0.json", MX_TYPE_F32,
                     repacks ? 2e-6 : 0.07, repacks ? 0.85 : 0.38, repacks ? 1.0 : 3.0,
                     repacks ? 0.7 : 0.0);
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double mx = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= mx))
            mx = d;
    }
    return mx;
}

/* A fixed pseudo-random id sequence (BOS first). */
static void some_ids(int32_t *ids, int64_t n, int32_t n_vocab, uint64_t seed) {
    ids[0] = 1;
    for (int64_t i = 1; i < n; i++)
        ids[i] = 3 + (int32_t)(mx_test_rand(&seed) % (uint64_t)(n_vocab - 3));
}

/* 8 identical experts with a random router = the dense model (any routing, weights sum to 1). */
static __attribute__((unused)) void test_moe8_equals_dense(void **state) {
    (void)state;
    struct engine d, m;
    engine_open(&d, "stories260K.gguf", 256, MX_TYPE_F32, MX_ACT_GGML, 512);
    engine_open(&m, "stories260K-moe8.gguf", 256, MX_TYPE_F32, MX_ACT_GGML, 512);
    int32_t ids[200];
    some_ids(ids, 200, d.n_vocab, 5);
    struct rows a = decode_all(&d, ids, 200), b = decode_all(&m, ids, 200);
    double md = max_diff(a.v, b.v, 200 * d.n_vocab);
    print_message("  dense vs 8 identical experts, 200 rows: max |diff| %.3g\n", md);
    assert_true(md < 1e-4);
    free(a.v);
    free(b.v);
    engine_close(&d);
    engine_close(&m);
}

/* Token-by-token decode == one batch; ubatch 7 == ubatch 512 (on the MoE model, so routing of a
 * batch is covered too). */
static __attribute__((unused)) void test_incremental_and_chunked(void **state) {
    (void)state;
    struct engine e, f;
    engine_open(&e, "tiny-mixtral-f32.gguf", 256, MX_TYPE_F32, MX_ACT_GGML, 512);
    engine_open(&f, "tiny-mixtral-f32.gguf", 256, MX_TYPE_F32, MX_ACT_GGML, 7);
    enum { N = 100 };
    int32_t ids[N];
    some_ids(ids, N, e.n_vocab, 11);
    struct rows one = decode_all(&e, ids, N);
    struct rows chunked = decode_all(&f, ids, N);
    double dc = max_diff(one.v, chunked.v, (int64_t)N * e.n_vocab);
    mx_llama_kv_clear(e.c);
    double di = 0;
    for (int64_t i = 0; i < N; i++) {
        struct mx_err err = {0};
        assert_int_equal(mx_llama_decode(e.c, &ids[i], 1, false, NULL, NULL, &err), 0);
        double d = max_diff(mx_llama_logits(e.c), one.v + i * e.n_vocab, e.n_vocab);
        if (d > di)
            di = d;
    }
    print_message("  one batch vs ubatch 7: %.3g; vs token by token: %.3g\n", dc, di);
    assert_true(dc < 1e-4);
    assert_true(di < 1e-4);
    free(one.v);
    free(chunked.v);
    engine_close(&e);
    engine_close(&f);
}

/* KV-cache edits. Removing the tail and feeding it again reproduces the logits. Moving every
 * cached token by +d (keys re-rotated) and going on gives the same logits as never moving them:
 * RoPE attention depends only on relative positions. The context refuses to overflow with
 * MX_EFULL and keeps its state. A context shift (drop a range, move the rest down) with nothing
 * kept before the range equals dropping the range and not moving the rest (to 1e-4): attention
 * sees the same relative positions, so an off-by-one in the range or the move shows. With BOS
 * kept it keeps generating with finite logits. Its difference from a fresh recompute of the kept
 * tokens is only printed: on this random model it is large (~7.6: the kept tokens' cached states
 * saw the dropped ones, as in llama.cpp); test_context_shift_text checks real text instead. */
static __attribute__((unused)) void test_kv_edits(void **state) {
    (void)state;
    struct engine e, f;
    engine_open(&e, "tiny-mixtral-f32.gguf", 64, MX_TYPE_F32, MX_ACT_GGML, 16);
    engine_open(&f, "tiny-mixtral-f32.gguf", 64, MX_TYPE_F32, MX_ACT_GGML, 16);
    int32_t ids[64];
    some_ids(ids, 64, e.n_vocab, 3);
    struct mx_err err = {0};
    struct rows a = decode_all(&e, ids, 50);
    /* remove the last 10 and refeed them */
    assert_int_equal(mx_llama_kv_remove(e.c, 40, -1, &err), 0);
    assert_int_equal(mx_llama_ctx_n_past(e.c), 40);
    struct rows b = decode_all(&e, ids + 40, 10);
    double dr = max_diff(a.v + 40 * e.n_vocab, b.v, 10 * (int64_t)e.n_vocab);
    assert_true(dr < 1e-5);
    /* shift everything by +9, then by -4: the next token sees the same relative positions */
    assert_int_equal(mx_llama_kv_remove(e.c, 30, -1, &err), 0);
    assert_int_equal(mx_llama_kv_shift(e.c, 0, -1, 9, &err), 0);
    assert_int_equal(mx_llama_kv_shift(e.c, 0, -1, -4, &err), 0);
    assert_int_equal(mx_llama_ctx_n_past(e.c), 35);
    struct rows c = decode_all(&e, ids + 30, 20);
    double dshift = max_diff(a.v + 30 * e.n_vocab, c.v, 20 * (int64_t)e.n_vocab);
    assert_true(dshift < 1e-4);
    assert_int_equal(mx_llama_kv_shift(e.c, 0, -1, -40, &err), MX_EINVAL); /* negative */
    /* overflow: 50 + 20 > 64 */
    mx_err_clear(&err);
    assert_int_equal(mx_llama_decode(e.c, ids, 20, false, NULL, NULL, &err), MX_EFULL);
    assert_non_null(strstr(err.msg, "64"));
    assert_int_equal(mx_llama_ctx_n_past(e.c), 55);
    /* context shift: keep 4, drop 20, the 26 others move down to positions 4..29 */
    mx_err_clear(&err);
    assert_int_equal(mx_llama_kv_shift(e.c, 5, -1, -5, &err), 0); /* back to 0..49 */
    assert_int_equal(mx_llama_kv_discard(e.c, 4, 20, &err), 0);
    assert_int_equal(mx_llama_ctx_n_past(e.c), 30);
    int32_t kept[31];
    memcpy(kept, ids, 4 * sizeof *kept);
    memcpy(kept + 4, ids + 24, 26 * sizeof *kept);
    kept[30] = ids[60];
    assert_int_equal(mx_llama_decode(e.c, &kept[30], 1, false, NULL, NULL, &err), 0);
    struct rows fresh = decode_all(&f, kept, 31);
    double ds = max_diff(mx_llama_logits(e.c), fresh.v + 30 * f.n_vocab, f.n_vocab);
    /* a shift with n_keep 0 == the same removal without the move: tokens 20..49 at 0..29 and the
     * next one at 30 see the distances that tokens 20..49 at 20..49 and the next at 50 see */
    float *moved = malloc((size_t)f.n_vocab * sizeof *moved);
    mx_llama_kv_clear(f.c);
    free(decode_all(&f, ids, 50).v);
    assert_int_equal(mx_llama_kv_discard(f.c, 0, 20, &err), 0);
    assert_int_equal(mx_llama_ctx_n_past(f.c), 30);
    assert_int_equal(mx_llama_decode(f.c, &ids[60], 1, false, NULL, NULL, &err), 0);
    memcpy(moved, mx_llama_logits(f.c), (size_t)f.n_vocab * sizeof *moved);
    mx_llama_kv_clear(f.c);
    free(decode_all(&f, ids, 50).v);
    assert_int_equal(mx_llama_kv_remove(f.c, 0, 20, &err), 0);
    assert_int_equal(mx_llama_decode(f.c, &ids[60], 1, false, NULL, NULL, &err), 0);
    double dmove = max_diff(moved, mx_llama_logits(f.c), f.n_vocab);
    free(moved);
    if (dmove >= 1e-4)
        fail_msg("context shift (keep 0, drop 20) vs the same removal unmoved: %.3g", dmove);
    /* and generation goes on to the end of the context */
    int32_t t = argmax(mx_llama_logits(e.c), e.n_vocab);
    for (int k = 0; k < 33; k++) {
        assert_int_equal(mx_llama_decode(e.c, &t, 1, false, NULL, NULL, &err), 0);
        const float *l = mx_llama_logits(e.c);
        for (int32_t j = 0; j < e.n_vocab; j++)
            assert_true(isfinite(l[j]));
        t = argmax(l, e.n_vocab);
    }
    assert_int_equal(mx_llama_ctx_n_past(e.c), 64);
    print_message("  kv remove+refeed %.3g; shifted +9-4 %.3g; shift vs unmoved removal %.3g; "
                  "after a context shift vs fresh %.3g (random model, random ids)\n", dr, dshift,
                  dmove, ds);
    free(a.v);
    free(b.v);
    free(c.v);
    free(fresh.v);
    engine_close(&e);
    engine_close(&f);
}

/* Context shift on real text (stories260K): fill a 96-token context with a story (a golden prompt
 * and its continuation, then greedy tokens), drop 40 tokens
 * after BOS, keep generating to the end of the context. The continuation stays sane: fed the
 * same text, its next-token argmax agrees with a fresh recompute of the kept tokens on most
 * steps (not all: the kept tokens' cached states saw the dropped text). */
static __attribute__((unused)) void test_context_shift_text(void **state) {
    (void)state;
    /* the text: the longest golden prompt + continuation, at most 80 tokens */
    json_t *g = load_json("logits-stories260K.json");
    json_t *cases = json_object_get(g, "cases");
    int32_t ids[256];
    int64_t n = 0;
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *cs = json_array_get(cases, ci);
        int64_t np, ng;
        int32_t *p = json_ids(json_object_get(cs, "prompt_ids"), &np);
        int32_t *gi = json_ids(json_object_get(cs, "gen_ids"), &ng);
        if (np + ng > n && np + ng <= 256) {
            memcpy(ids, p, (size_t)np * sizeof *ids);
            memcpy(ids + np, gi, (size_t)ng * sizeof *ids);
            n = np + ng;
        }
        free(p);
        free(gi);
    }
    n = MX_MIN(n, 80);
    assert_true(n >= 50);
    struct engine e, f;
    engine_open(&e, "stories260K.gguf", 96, MX_TYPE_F16, MX_ACT_GGML, 512);
    engine_open(&f, "stories260K.gguf", 96, MX_TYPE_F16, MX_ACT_GGML, 512);
    struct mx_err err = {0};
    int32_t seq[256];
    memcpy(seq, ids, (size_t)n * sizeof *seq);
    int64_t len = n;
    assert_int_equal(mx_llama_decode(e.c, ids, n, false, NULL, NULL, &err), 0);
    while (len < 96) {
        seq[len] = argmax(mx_llama_logits(e.c), e.n_vocab);
        assert_int_equal(mx_llama_decode(e.c, &seq[len], 1, false, NULL, NULL, &err), 0);
        len++;
    }
    int32_t t = argmax(mx_llama_logits(e.c), e.n_vocab);
    assert_int_equal(mx_llama_decode(e.c, &t, 1, false, NULL, NULL, &err), MX_EFULL);
    assert_int_equal(mx_llama_kv_discard(e.c, 1, 40, &err), 0);
    assert_int_equal(mx_llama_ctx_n_past(e.c), 56);
    /* the same kept text, computed fresh */
    int32_t kept[256];
    kept[0] = seq[0];
    memcpy(kept + 1, seq + 41, 55 * sizeof *kept);
    assert_int_equal(mx_llama_decode(f.c, kept, 56, false, NULL, NULL, &err), 0);
    /* both fed the fresh context's greedy text: how often does the shifted one agree? */
    int same = 0;
    for (int k = 0; k < 40; k++) {
        int32_t te = argmax(mx_llama_logits(e.c), e.n_vocab);
        int32_t tf = argmax(mx_llama_logits(f.c), f.n_vocab);
        same += te == tf;
        assert_int_equal(mx_llama_decode(e.c, &tf, 1, false, NULL, NULL, &err), 0);
        assert_int_equal(mx_llama_decode(f.c, &tf, 1, false, NULL, NULL, &err), 0);
    }
    print_message("  context shift on text: next-token argmax agrees with a fresh recompute on "
                  "%d/40 steps (teacher-forced)\n", same);
    assert_true(same >= 30);
    engine_close(&e);
    engine_close(&f);
    json_decref(g);
}

/* KV snapshot: save after a prompt, load into a fresh context, and the next token's logits are
 * bit-identical; a state of the wrong size or for another cache type is refused and leaves the
 * cache empty. */
struct membuf {
    unsigned char *p;
    size_t n, cap, pos;
};

static int mem_write(void *ud, const void *data, size_t n, struct mx_err *err) {
    (void)err;
    struct membuf *b = ud;
    if (b->n + n > b->cap) {
        size_t cap = (b->n + n) * 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q)
            return MX_ENOMEM;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
    return 0;
}

static int mem_read(void *ud, void *data, size_t n, struct mx_err *err) {
    struct membuf *b = ud;
    if (b->pos + n > b->n)
        return mx_err_set(err, MX_EIO, "short read");
    memcpy(data, b->p + b->pos, n);
    b->pos += n;
    return 0;
}

static __attribute__((unused)) void test_kv_state(void **state) {
    (void)state;
    struct engine e, f, g;
    engine_open(&e, "tiny-mixtral-f32.gguf", 128, MX_TYPE_F16, MX_ACT_GGML, 512);
    engine_open(&f, "tiny-mixtral-f32.gguf", 128, MX_TYPE_F16, MX_ACT_GGML, 512);
    engine_open(&g, "tiny-mixtral-f32.gguf", 128, MX_TYPE_F32, MX_ACT_GGML, 512);
    int32_t ids[41];
    some_ids(ids, 41, e.n_vocab, 9);
    struct mx_err err = {0};
    assert_int_equal(mx_llama_decode(e.c, ids, 40, false, NULL, NULL, &err), 0);
    struct membuf b = {0};
    assert_int_equal(mx_llama_kv_state_save(e.c, mem_write, &b, &err), 0);
    assert_int_equal(b.n, mx_llama_kv_state_size(e.c));
    assert_int_equal(mx_llama_kv_state_load(f.c, b.n, mem_read, &b, &err), 0);
    assert_int_equal(mx_llama_ctx_n_past(f.c), 40);
    assert_int_equal(mx_llama_decode(e.c, &ids[40], 1, false, NULL, NULL, &err), 0);
    assert_int_equal(mx_llama_decode(f.c, &ids[40], 1, false, NULL, NULL, &err), 0);
    assert_memory_equal(mx_llama_logits(e.c), mx_llama_logits(f.c), e.n_vocab * sizeof(float));
    /* wrong size, wrong cache type */
    b.pos = 0;
    assert_int_equal(mx_llama_kv_state_load(f.c, b.n - 1, mem_read, &b, &err), MX_EFORMAT);
    assert_int_equal(mx_llama_ctx_n_past(f.c), 0);
    b.pos = 0;
    mx_err_clear(&err);
    assert_int_equal(mx_llama_kv_state_load(g.c, b.n, mem_read, &b, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "does not fit"));
    free(b.p);
    engine_close(&e);
    engine_close(&f);
    engine_close(&g);
}

/* A tiny model written with the project's GGUF writer, with one thing wrong at a time. */
static int write_bad_model(const char *path, int what) {
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    if (!w)
        return -1;
    const int E = 32, F = 64, V = 40, NH = 4, NKV = what == 1 ? 3 : 2, X = 4;
    mx_gguf_writer_set_str(w, "general.architecture", what == 4 ? "gpt2" : "llama");
    mx_gguf_writer_set_u32(w, "llama.context_length", 64);
    mx_gguf_writer_set_u32(w, "llama.embedding_length", E);
    mx_gguf_writer_set_u32(w, "llama.block_count", 1);
    mx_gguf_writer_set_u32(w, "llama.feed_forward_length", F);
    mx_gguf_writer_set_u32(w, "llama.attention.head_count", NH);
    mx_gguf_writer_set_u32(w, "llama.attention.head_count_kv", NKV);
    mx_gguf_writer_set_u32(w, "llama.expert_count", X);
    mx_gguf_writer_set_u32(w, "llama.expert_used_count", what == 2 ? 5 : 2);
    if (what == 6)
        mx_gguf_writer_set_u32(w, "llama.attention.sliding_window", 1);
    static float buf[64 * 64 * 4];
    for (size_t i = 0; i < MX_ARRAY_LEN(buf); i++)
        buf[i] = 0.01f * (float)(i % 7);
    int64_t hd = E / NH;
    struct { const char *n; int nd; int64_t ne[3]; } t[] = {
        {"token_embd.weight", 2, {E, V, 1}},
        {"output_norm.weight", 1, {E, 1, 1}},
        {"blk.0.attn_norm.weight", 1, {E, 1, 1}},
        {"blk.0.attn_q.weight", 2, {E, E, 1}},
        {"blk.0.attn_k.weight", 2, {E, hd * 2, 1}},
        {"blk.0.attn_v.weight", 2, {E, hd * 2, 1}},
        {"blk.0.attn_output.weight", 2, {E, E, 1}},
        {"blk.0.ffn_norm.weight", 1, {E, 1, 1}},
        {"blk.0.ffn_gate_inp.weight", 2, {E, X, 1}},
        {"blk.0.ffn_gate_exps.weight", 3, {E, F, X}},
        {"blk.0.ffn_up_exps.weight", 3, {E, what == 3 ? F + 1 : F, X}},
        {"blk.0.ffn_down_exps.weight", 3, {F, E, X}},
    };
    for (size_t i = 0; i < MX_ARRAY_LEN(t); i++) {
        if (what == 5 && !strcmp(t[i].n, "blk.0.attn_v.weight"))
            continue;
        mx_gguf_writer_add_tensor(w, t[i].n, MX_TYPE_F32, t[i].nd, t[i].ne, buf);
    }
    struct mx_err err = {0};
    int rc = mx_gguf_writer_write(w, path, 3, &err);
    mx_gguf_writer_free(w);
    return rc;
}

/* Sliding window: with a window of 1 a token attends to itself only, so the same token gives the
 * same logits at any position (RoPE cancels in a one-cell softmax); without the window the
 * context changes them. */
static __attribute__((unused)) void test_sliding_window(void **state) {
    (void)state;
    char path[64];
    snprintf(path, sizeof path, "/tmp/mx-test-swa-%d.gguf", (int)getpid());
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    assert_non_null(be);
    double d[2];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(write_bad_model(path, k == 0 ? 6 : 0), 0);
        struct mx_llama_model *m = NULL;
        assert_int_equal(mx_llama_model_load(path, be, &m, &err), 0);
        assert_int_equal(mx_llama_model_hparams(m)->sliding_window, k == 0 ? 1 : 0);
        struct mx_llama_ctx *c;
        struct mx_llama_ctx_params p;
        mx_llama_ctx_params_default(&p);
        p.n_ctx = 32;
        p.kv_type = MX_TYPE_F32;
        assert_int_equal(mx_llama_ctx_new(m, &p, &c, &err), 0);
        struct engine e = {be, m, c, 40};
        int32_t ids[4] = {5, 9, 17, 5};
        struct rows r = decode_all(&e, ids, 4);
        d[k] = max_diff(r.v, r.v + 3 * 40, 40);
        free(r.v);
        mx_llama_ctx_free(c);
        mx_llama_model_free(m);
    }
    print_message("  same token at positions 0 and 3: window 1 %.3g, no window %.3g\n", d[0], d[1]);
    assert_true(d[0] < 1e-6);
    assert_true(d[1] > 5e-5); /* small: this model's weights are nearly constant */
    unlink(path);
    mx_backend_free(be);
}

static __attribute__((unused)) void test_bad_models(void **state) {
    (void)state;
    static const struct { int what; int code; const char *msg; } cases[] = {
        {0, 0, NULL},
        {1, MX_EFORMAT, "head_count 4 is not a multiple of head_count_kv 3"},
        {2, MX_EFORMAT, "expert_used_count 5"},
        {3, MX_EFORMAT, "'blk.0.ffn_up_exps.weight' has shape [32, 65, 4], expected [32, 64, 4]"},
        {4, MX_EUNSUP, "architecture 'gpt2'"},
        {5, MX_EFORMAT, "tensor 'blk.0.attn_v.weight' missing"},
    };
    char path[64];
    snprintf(path, sizeof path, "/tmp/mx-test-llama-%d.gguf", (int)getpid());
    struct mx_err err = {0};
    struct mx_backend *be = mx_backend_cpu_new(1, &err);
    assert_non_null(be);
    for (size_t i = 0; i < MX_ARRAY_LEN(cases); i++) {
        assert_int_equal(write_bad_model(path, cases[i].what), 0);
        struct mx_llama_model *m = NULL;
        mx_err_clear(&err);
        int rc = mx_llama_model_load(path, be, &m, &err);
        if (cases[i].code == 0) {
            if (rc < 0)
                fail_msg("good model refused: %s", err.msg);
            /* and it runs */
            struct mx_llama_ctx *c;
            struct mx_llama_ctx_params p;
            mx_llama_ctx_params_default(&p);
            p.n_ctx = 32;
            assert_int_equal(mx_llama_ctx_new(m, &p, &c, &err), 0);
            int32_t ids[3] = {1, 5, 39}, bad = 40;
            assert_int_equal(mx_llama_decode(c, ids, 3, false, NULL, NULL, &err), 0);
            assert_int_equal(mx_llama_decode(c, &bad, 1, false, NULL, NULL, &err), MX_EINVAL);
            mx_llama_ctx_free(c);
            mx_llama_model_free(m);
            continue;
        }
        assert_int_equal(rc, cases[i].code);
        assert_null(m);
        if (!strstr(err.msg, cases[i].msg))
            fail_msg("case %d: message '%s' lacks '%s'", cases[i].what, err.msg, cases[i].msg);
    }
    unlink(path);
    mx_backend_free(be);
}

/* ---- the project's own tiny models in every quant type ---------------------------------------
 * Random models (dim 256 so K-quants fit, 2 layers) are written with the project's GGUF writer
 * once per weight type T. MoE (4 experts top-2): weights quantized to T vs the same weights
 * quantized and dequantized back to F32; with float activations (act f32) both compute the same
 * products, so the logits agree to float32 summation noise (1e-4): each type's matmul, matmul_id
 * and get_rows end to end. Dense: quantized vs the unquantized original, a gap that follows the
 * bits (the MoE is unfit for that: quantization error flips near-tied expert choices). */

enum { QD = 256, QF = 256, QV = 300, QX = 4, QL = 2 };

struct qmodel {
    const char *name;
    int nd;
    int64_t ne[3];
    float *w;                 /* original f32 values */
};

/* Set to write 3-D expert tensors as the older per-expert 2-D tensors (blk.N.ffn_gate.E.weight). */
static bool g_split_experts;

static void add_weight(struct mx_gguf_writer *w, const struct qmodel *t, int type, bool dequant) {
    int64_t n = t->ne[0] * t->ne[1] * t->ne[2];
    if (g_split_experts && strstr(t->name, "_exps") && !dequant) {
        int il;
        char kind[8];
        assert_int_equal(sscanf(t->name, "blk.%d.ffn_%4[a-z]_exps", &il, kind), 2);
        int64_t per = t->ne[0] * t->ne[1];
        size_t bytes;
        assert_true(mx_row_size(type, per, &bytes));
        void *q = malloc(bytes);
        for (int64_t e = 0; e < t->ne[2]; e++) {
            char nm[64];
            snprintf(nm, sizeof nm, "blk.%d.ffn_%s.%d.weight", il, kind, (int)e);
            const int64_t ne[2] = {t->ne[0], t->ne[1]};
            const float *src = t->w + e * per;
            if (type != MX_TYPE_F32)
                assert_int_equal(mx_quantize_row(type, src, q, per), 0);
            assert_int_equal(mx_gguf_writer_add_tensor(w, nm, type, 2, ne,
                                                       type == MX_TYPE_F32 ? (const void *)src
                                                                           : q), 0);
        }
        free(q);
        return;
    }
    bool is_norm = t->nd == 1 || strstr(t->name, "ffn_gate_inp");
    if (is_norm || type == MX_TYPE_F32) {
        assert_int_equal(mx_gguf_writer_add_tensor(w, t->name, MX_TYPE_F32, t->nd, t->ne, t->w),
                         0);
        return;
    }
    size_t bytes;
    assert_true(mx_row_size(type, n, &bytes));
    void *q = malloc(bytes);
    float *back = malloc((size_t)n * sizeof *back);
    assert_int_equal(mx_quantize_row(type, t->w, q, n), 0);
    if (dequant) {
        assert_int_equal(mx_dequantize_row(type, q, back, n), 0);
        assert_int_equal(mx_gguf_writer_add_tensor(w, t->name, MX_TYPE_F32, t->nd, t->ne, back),
                         0);
    } else {
        assert_int_equal(mx_gguf_writer_add_tensor(w, t->name, type, t->nd, t->ne, q), 0);
    }
    free(q);
    free(back);
}

static void write_qmodel(const char *path, struct qmodel *ts, int nt, int type, bool dequant) {
    bool moe = false;
    for (int i = 0; i < nt; i++)
        moe |= strstr(ts[i].name, "_exps") != NULL;
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    assert_non_null(w);
    mx_gguf_writer_set_str(w, "general.architecture", "llama");
    mx_gguf_writer_set_u32(w, "llama.context_length", 128);
    mx_gguf_writer_set_u32(w, "llama.embedding_length", QD);
    mx_gguf_writer_set_u32(w, "llama.block_count", QL);
    mx_gguf_writer_set_u32(w, "llama.feed_forward_length", QF);
    mx_gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    mx_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 2);
    if (moe) {
        mx_gguf_writer_set_u32(w, "llama.expert_count", QX);
        mx_gguf_writer_set_u32(w, "llama.expert_used_count", 2);
    }
    mx_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    for (int i = 0; i < nt; i++)
        add_weight(w, &ts[i], type, dequant);
    struct mx_err err = {0};
    assert_int_equal(mx_gguf_writer_write(w, path, 3, &err), 0);
    mx_gguf_writer_free(w);
}

static struct rows run_qmodel(const char *path, const int32_t *ids, int64_t n) {
    struct engine e;
    struct mx_err err = {0};
    e.be = mx_backend_cpu_new(2, &err);
    assert_non_null(e.be);
    assert_int_equal(mx_backend_set_act_mode(e.be, MX_ACT_F32), 0);
    int rc = mx_llama_model_load(path, e.be, &e.m, &err);
    if (rc < 0)
        fail_msg("%s", err.msg);
    struct mx_llama_ctx_params p;
    mx_llama_ctx_params_default(&p);
    p.n_ctx = 64;
    p.kv_type = MX_TYPE_F32;
    assert_int_equal(mx_llama_ctx_new(e.m, &p, &e.c, &err), 0);
    e.n_vocab = QV;
    struct rows r = decode_all(&e, ids, n);
    engine_close(&e);
    return r;
}

/* The tensor list of the own test model (dense FFN, or 4 experts top-2) with random values. */
static int make_qtensors(struct qmodel *ts, char (*names)[48], bool moe, uint64_t seed) {
    int nt = 0;
#define T(nm, d, a, b, c)                                                                    \
    do {                                                                                   \
        snprintf(names[nt], 48, "%s", nm);                                                 \
        ts[nt] = (struct qmodel){names[nt], d, {a, b, c}, NULL};                          \
        nt++;                                                                              \
    } while (0)
    T("token_embd.weight", 2, QD, QV, 1);
    T("output_norm.weight", 1, QD, 1, 1);
    T("output.weight", 2, QD, QV, 1);
    for (int il = 0; il < QL; il++) {
        char b[48];
#define TL(sfx, d, a, bb, c)                                                                 \
        do {                                                                                 \
            snprintf(b, sizeof b, "blk.%d." sfx ".weight", il);                             \
            T(b, d, a, bb, c);                                                               \
        } while (0)
        TL("attn_norm", 1, QD, 1, 1);
        TL("attn_q", 2, QD, QD, 1);
        TL("attn_k", 2, QD, 128, 1);
        TL("attn_v", 2, QD, 128, 1);
        TL("attn_output", 2, QD, QD, 1);
        TL("ffn_norm", 1, QD, 1, 1);
        if (moe) {
            TL("ffn_gate_inp", 2, QD, QX, 1);
            TL("ffn_gate_exps", 3, QD, QF, QX);
            TL("ffn_up_exps", 3, QD, QF, QX);
            TL("ffn_down_exps", 3, QF, QD, QX);
        } else {
            TL("ffn_gate", 2, QD, QF, 1);
            TL("ffn_up", 2, QD, QF, 1);
            TL("ffn_down", 2, QF, QD, 1);
        }
#undef TL
    }
#undef T
    for (int i = 0; i < nt; i++) {
        int64_t n = ts[i].ne[0] * ts[i].ne[1] * ts[i].ne[2];
        ts[i].w = malloc((size_t)n * sizeof(float));
        /* norms near 1, weights ~ U(-1,1)*sqrt(3/fan_in) (unit variance outputs), embeddings 1 */
        float sc = ts[i].nd == 1 ? 0.2f : strstr(ts[i].name, "token_embd") ? 1.0f
                 : sqrtf(3.0f / (float)ts[i].ne[0]);
        for (int64_t j = 0; j < n; j++)
            ts[i].w[j] = (ts[i].nd == 1 ? 1.0f : 0.0f) + sc * mx_test_randf(&seed);
    }
    return nt;
}

static __attribute__((unused)) void test_own_quantized_models(void **state) {
    (void)state;
    static char names[64][48], dnames[64][48];
    struct qmodel ts[64], ds[64];
    int nt = make_qtensors(ts, names, true, 2024), nd = make_qtensors(ds, dnames, false, 2025);
    int32_t ids[24];
    some_ids(ids, 24, QV, 77);
    char pa[64], pb[64];
    snprintf(pa, sizeof pa, "/tmp/mx-test-q-a-%d.gguf", (int)getpid());
    snprintf(pb, sizeof pb, "/tmp/mx-test-q-b-%d.gguf", (int)getpid());
    write_qmodel(pa, ds, nd, MX_TYPE_F32, false);
    struct rows orig = run_qmodel(pa, ids, 24);
    /* Dense model vs its unquantized original: the gap is the weights' quantization error
     * carried to the logits (spread ~3 here), so it follows the bits: measured f16 0.0027,
     * bf16 0.020, q8_0 0.051, q6_K 0.16, q5_* 0.41-0.44, q4_* 0.77-0.87, q3_K 1.8, q2_K 2.6
     * (about 2x per bit lost, as the step size doubles). The bound is 2x the measured gap
     * (deterministic seed), so a broken scale or nibble order fails; summation noise does not. */
    static const struct { int type; double vs_orig; } types[] = {
        {MX_TYPE_F16, 0.006}, {MX_TYPE_BF16, 0.04}, {MX_TYPE_Q8_0, 0.1}, {MX_TYPE_Q6_K, 0.32},
        {MX_TYPE_Q5_0, 0.82}, {MX_TYPE_Q5_1, 0.88}, {MX_TYPE_Q5_K, 0.87}, {MX_TYPE_Q4_0, 1.7},
        {MX_TYPE_Q4_1, 1.6},  {MX_TYPE_Q4_K, 1.65}, {MX_TYPE_Q3_K, 3.6},  {MX_TYPE_Q2_K, 5.3},
    };
    for (size_t k = 0; k < MX_ARRAY_LEN(types); k++) {
        int type = types[k].type;
        /* MoE: quantized == dequantized twin (covers matmul_id and get_rows per type) */
        write_qmodel(pa, ts, nt, type, false);
        write_qmodel(pb, ts, nt, type, true);
        struct rows q = run_qmodel(pa, ids, 24), d = run_qmodel(pb, ids, 24);
        double same = max_diff(q.v, d.v, 24 * QV);
        free(q.v);
        free(d.v);
        /* dense: quantized vs the original f32 weights */
        write_qmodel(pa, ds, nd, type, false);
        q = run_qmodel(pa, ids, 24);
        double gap = max_diff(q.v, orig.v, 24 * QV);
        free(q.v);
        print_message("  own model %-5s: MoE vs its dequantized f32 twin %.3g; dense vs the "
                      "original %.3g\n", mx_type_name(type), same, gap);
        if (!(same < 1e-4) || !(gap < types[k].vs_orig))
            fail_msg("%s: twin %g (tol 1e-4), original %g (tol %g)", mx_type_name(type), same,
                     gap, types[k].vs_orig);
    }
    free(orig.v);
    /* the older Mixtral layout (one 2-D tensor per expert) gives the same logits as 3-D */
    write_qmodel(pa, ts, nt, MX_TYPE_F32, false);
    g_split_experts = true;
    write_qmodel(pb, ts, nt, MX_TYPE_F32, false);
    g_split_experts = false;
    struct rows s3 = run_qmodel(pa, ids, 24), s2 = run_qmodel(pb, ids, 24);
    double dsplit = max_diff(s3.v, s2.v, 24 * QV);
    print_message("  per-expert 2-D tensors vs stacked 3-D: %.3g\n", dsplit);
    assert_true(dsplit == 0.0);
    free(s3.v);
    free(s2.v);
    /* the same with Q4_0 experts: gathered, then repacked by the backend (the gathered copy is
     * freed once every expert moved) */
    write_qmodel(pa, ts, nt, MX_TYPE_Q4_0, false);
    g_split_experts = true;
    write_qmodel(pb, ts, nt, MX_TYPE_Q4_0, false);
    g_split_experts = false;
    s3 = run_qmodel(pa, ids, 24);
    s2 = run_qmodel(pb, ids, 24);
    dsplit = max_diff(s3.v, s2.v, 24 * QV);
    print_message("  q4_0 per-expert 2-D tensors vs stacked 3-D: %.3g\n", dsplit);
    assert_true(dsplit == 0.0);
    free(s3.v);
    free(s2.v);
    for (int i = 0; i < nt; i++)
        free(ts[i].w);
    for (int i = 0; i < nd; i++)
        free(ds[i].w);
    unlink(pa);
    unlink(pb);
}

/* Built twice (see core/llm/llm.am): tests/test_llama runs the goldens and self-consistency
 * checks, tests/test_llama_quant (-DMX_TEST_LLAMA_QUANT) the quantized-weight checks, so each
 * program stays well under 30 s. */
#ifndef MX_TEST_LLAMA_QUANT /* registered in test_llama only */
/* The expert block's gate, up and gated unit in one backend pass (mx_op_matmul_id2 with
 * silu_mul) give the same logits, bit for bit, as the separate ops (two matmul_id and a
 * silu_mul: the path a backend without matmul_id2 takes, forced here by a copy of the CPU
 * backend's op table without it; likewise attention's q, k, v in one mx_op_matmul_n pass
 * against three matmuls): a 70-token prompt (prefill tiles, ubatch 32 so the last
 * chunk is short) and 6 single-token steps (decode), on tiny MoE models of the repacked types
 * and f32. */
static void test_moe_fused_gate_up_bit_equal(void **state) {
    (void)state;
    const char *models[] = {"tiny-mixtral-q4_0.gguf", "tiny-mixtral-d256-q4_k.gguf",
                            "tiny-mixtral-q8_0.gguf", "stories260K-moe8.gguf"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        struct engine e[2];
        struct mx_backend_ops plain;
        struct rows r[2];
        float *steps[2];
        for (int k = 0; k < 2; k++) {
            engine_open(&e[k], models[i], 128, MX_TYPE_F16, MX_ACT_GGML, 32);
            if (k == 1) { /* the unfused path */
                plain = *e[k].be->ops;
                plain.matmul_id2 = NULL;
                plain.matmul_n = NULL; /* and q, k, v as three matmuls */
                e[k].be->ops = &plain;
            }
            int32_t ids[76];
            uint64_t s = 99;
            for (int t = 0; t < 76; t++)
                ids[t] = (int32_t)(1 + mx_test_rand(&s) % (uint64_t)(e[k].n_vocab - 1));
            r[k] = decode_all(&e[k], ids, 70);
            steps[k] = calloc((size_t)(6 * e[k].n_vocab), sizeof(float));
            assert_non_null(steps[k]);
            for (int t = 70; t < 76; t++) {
                struct mx_err err = {0};
                int rc = mx_llama_decode(e[k].c, &ids[t], 1, false, NULL, NULL, &err);
                if (rc < 0)
                    fail_msg("decode: %s", mx_err_msg(&err, rc));
                memcpy(steps[k] + (t - 70) * e[k].n_vocab, mx_llama_logits(e[k].c),
                       (size_t)e[k].n_vocab * sizeof(float));
            }
        }
        if (memcmp(r[0].v, r[1].v, (size_t)(70 * e[0].n_vocab) * sizeof(float)))
            fail_msg("%s: prompt logits of the fused expert block differ from the separate ops",
                     models[i]);
        if (memcmp(steps[0], steps[1], (size_t)(6 * e[0].n_vocab) * sizeof(float)))
            fail_msg("%s: decode logits of the fused expert block differ from the separate ops",
                     models[i]);
        print_message("  %s: 70 prompt rows and 6 decode steps bit-equal\n", models[i]);
        for (int k = 0; k < 2; k++) {
            free(r[k].v);
            free(steps[k]);
            engine_close(&e[k]);
        }
    }
}
#endif /* !MX_TEST_LLAMA_QUANT */

int main(void) {
    g_shared = mx_test_require_shared("test_llama");
#ifndef MX_TEST_LLAMA_QUANT
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moe_fused_gate_up_bit_equal),
        cmocka_unit_test(test_bad_models),
        cmocka_unit_test(test_sliding_window),
        cmocka_unit_test(test_stories260K),
        cmocka_unit_test(test_stories260K_moe8),
        cmocka_unit_test(test_tiny_mixtral_f32),
        cmocka_unit_test(test_moe8_equals_dense),
        cmocka_unit_test(test_incremental_and_chunked),
        cmocka_unit_test(test_kv_edits),
        cmocka_unit_test(test_context_shift_text),
        cmocka_unit_test(test_kv_state),
        cmocka_unit_test(test_f16_kv_cache),
        cmocka_unit_test(test_q8_0_kv_cache),
        cmocka_unit_test(test_tiny_mixtral_f16),
    };
#else
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_quantized),
        cmocka_unit_test(test_ggml_quantized),
        cmocka_unit_test(test_own_quantized_models),
    };
#endif
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
