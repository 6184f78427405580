/* test_eval.c - app/eval: the perplexity, standard error, KL and percentile maths on logits worked
 * out by hand; the 16-bit row encoding against exact log-softmax; the saved-logits file (round
 * trip, truncated and foreign files refused, a stopped run leaves nothing); and, on the real
 * stories260K model, per-token log-probabilities against token-by-token decoding (cached vs
 * recomputed) and mx_eval_ppl's chunking (BOS replacement, second half scored) against the same
 * sums done by hand with mx_eval_logprobs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "app/eval.h"
#include "app/llm.h"
#include "core/llm/llama.h"
#include "core/text/tokenizer.h"
#include "tests/mx_test.h"

#define LN2 0.69314718055994530942

/* ---- maths on hand-computed logits --------------------------------------------------------- */

/* logits {0, 0, ln 2} are probabilities {1/4, 1/4, 1/2}; a shift changes nothing */
static void test_log_softmax_by_hand(void **state) {
    (void)state;
    float l[3] = {0, 0, (float)LN2};
    assert_true(fabs(mx_eval_log_softmax(l, 3, 2) - log(0.5)) < 1e-6);
    assert_true(fabs(mx_eval_log_softmax(l, 3, 0) - log(0.25)) < 1e-6);
    float s[3] = {100, 100, 100 + (float)LN2};
    assert_true(fabs(mx_eval_log_softmax(s, 3, 1) - log(0.25)) < 1e-5);
}

/* nlls ln 2 and ln 4: mean 1.5 ln 2, ppl 2^1.5; variance 0.25 ln^2 2, so the standard error of
 * the mean is sqrt(0.25 ln^2 2 / 1) = 0.5 ln 2, times ppl */
static void test_ppl_and_stderr_by_hand(void **state) {
    (void)state;
    struct mx_ppl_acc a = {0};
    double ppl, se;
    mx_ppl_acc_result(&a, &ppl, &se);
    assert_true(isnan(ppl));
    mx_ppl_acc_add(&a, LN2);
    mx_ppl_acc_add(&a, 2 * LN2);
    mx_ppl_acc_result(&a, &ppl, &se);
    assert_int_equal(a.count, 2);
    assert_true(fabs(ppl - pow(2, 1.5)) < 1e-12);
    assert_true(fabs(se - 0.5 * LN2 * pow(2, 1.5)) < 1e-12);
    /* every token equally likely: no spread, no error */
    struct mx_ppl_acc b = {0};
    for (int i = 0; i < 5; i++)
        mx_ppl_acc_add(&b, log(512));
    mx_ppl_acc_result(&b, &ppl, &se);
    assert_true(fabs(ppl - 512) < 1e-9);
    assert_true(se == 0);
}

/* The 16-bit row decodes to the exact log-softmax within half a step for tokens in the top 16
 * nats, clamps the rest to the bottom, and returns the exact nll. */
static void test_row_encoding_exact_enough(void **state) {
    (void)state;
    enum { N = 300 };
    float l[N];
    uint16_t q[N];
    uint64_t seed = 7;
    for (int i = 0; i < N; i++)
        l[i] = 6 * mx_test_randf(&seed);
    l[17] = -30; /* far below: clamped */
    float scale, min;
    double nll = mx_kl_row_encode(l, N, 5, q, &scale, &min);
    assert_true(fabs(nll + mx_eval_log_softmax(l, N, 5)) < 1e-6);
    assert_true(scale > 0 && scale < 16.f / 65535 * 1.001f);
    for (int i = 0; i < N; i++) {
        double exact = mx_eval_log_softmax(l, N, i), dec = min + scale * q[i];
        if (i == 17)
            assert_true(q[i] == 0 && dec > exact);
        else
            assert_true(fabs(dec - exact) <= scale * 0.5 + 1e-5);
    }
    /* all logits equal: scale 0, every q 0, min = log(1/N) */
    float flat[4] = {1, 1, 1, 1};
    uint16_t fq[4] = {9, 9, 9, 9};
    mx_kl_row_encode(flat, 4, 0, fq, &scale, &min);
    assert_true(scale == 0 && fq[0] == 0 && fq[3] == 0 && fabsf(min - logf(0.25f)) < 1e-6f);
}

/* Encodes base logits into a row (q owned by the caller). */
static struct mx_kl_row make_row(const float *l, int n, int tok, uint16_t *q) {
    struct mx_kl_row r;
    r.nll = (float)mx_kl_row_encode(l, n, tok, q, &r.scale, &r.min);
    r.q = q;
    return r;
}

/* base {1/2, 1/4, 1/4}, Q {1/4, 1/4, 1/2}: KL(base || Q) = 1/2 ln 2 + 0 + 1/4 ln(1/2) =
 * 1/4 ln 2; the argmaxes differ (0 vs 2); the actual token 0: p_Q - p_base = -1/4. A second
 * position where Q equals the base: KL 0, same argmax, dp 0. */
static void test_kl_by_hand(void **state) {
    (void)state;
    float base[3] = {(float)log(0.5), (float)log(0.25), (float)log(0.25)};
    float qa[3] = {(float)log(0.25), (float)log(0.25), (float)log(0.5)};
    uint16_t q[3];
    struct mx_kl_acc k = {0};
    struct mx_kl_row r = make_row(base, 3, 0, q);
    assert_int_equal(mx_kl_acc_add(&k, qa, 3, 0, &r), 0);
    assert_true(fabs(k.kld[0] - 0.25 * LN2) < 2e-4);
    assert_true(fabs(k.p_diff[0] - (-0.25)) < 1e-6);
    assert_int_equal(k.n_same_top, 0);
    assert_int_equal(mx_kl_acc_add(&k, base, 3, 0, &r), 0);
    assert_true(fabs(k.kld[1]) < 2e-4);
    assert_true(fabs(k.p_diff[1]) < 1e-7);
    assert_int_equal(k.n_same_top, 1);

    struct mx_kl_stats s;
    struct mx_err err = {0};
    assert_int_equal(mx_kl_acc_stats(&k, &s, &err), 0);
    assert_int_equal(s.count, 2);
    assert_true(fabs(s.top1 - 0.5) < 1e-12);
    assert_true(fabs(s.kld - 0.125 * LN2) < 2e-4);
    assert_true(s.kld_err == 0); /* no uncertainty with 10 or fewer values (llama.cpp) */
    assert_true(fabs(s.kld_max - 0.25 * LN2) < 2e-4 && fabs(s.kld_min) < 2e-4);
    assert_true(fabs(s.kld_median - 0.125 * LN2) < 2e-4); /* the mean of the middle two */
    /* PPL(Q) = exp(mean(ln 4, ln 2)); PPL(base) = exp(ln 2) */
    assert_true(fabs(s.ppl - exp(1.5 * LN2)) < 1e-5);
    assert_true(fabs(s.ppl_base - 2) < 1e-5);
    assert_true(fabs(s.dppl - (exp(1.5 * LN2) - 2)) < 1e-5);
    assert_true(fabs(s.dp_rms - sqrt(0.0625 / 2)) < 1e-6);
    mx_kl_acc_deinit(&k);

    struct mx_kl_acc none = {0};
    assert_int_equal(mx_kl_acc_stats(&none, &s, &err), MX_EINVAL);
}

/* Percentiles interpolate between sorted values (llama.cpp's rule): 101 positions with KL
 * 0.00, 0.01, ..., 1.00 in shuffled order give p90 = 0.90, p99.9 = 0.999, median 0.50. The
 * per-token KL is built from Q = base shifted on one token, so the values are set directly. */
static void test_percentiles(void **state) {
    (void)state;
    struct mx_kl_acc k = {0};
    float l[2] = {0, 0};
    uint16_t q[2];
    struct mx_kl_row r = make_row(l, 2, 0, q);
    for (int i = 0; i < 101; i++)
        assert_int_equal(mx_kl_acc_add(&k, l, 2, 0, &r), 0);
    for (int i = 0; i < 101; i++)
        k.kld[i] = (float)(((i * 37) % 101) / 100.0);
    struct mx_kl_stats s;
    assert_int_equal(mx_kl_acc_stats(&k, &s, NULL), 0);
    assert_true(fabs(s.kld_p90 - 0.90) < 1e-6);
    assert_true(fabs(s.kld_p99_9 - 0.999) < 1e-6);
    assert_true(fabs(s.kld_p0_1 - 0.001) < 1e-6);
    assert_true(fabs(s.kld_median - 0.50) < 1e-6);
    assert_true(s.kld_max == 1.0 && s.kld_min == 0.0);
    assert_true(fabs(s.top1 - 1) < 1e-12);
    mx_kl_acc_deinit(&k);
}

/* ---- the saved-logits file ------------------------------------------------------------------ */

static void tmp_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/mx-test-eval-%d-%s", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid(), name);
}

static long file_size(const char *p) {
    FILE *f = fopen(p, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* n_vocab 5, n_ctx 4 (1 scored row a chunk: position 2), 2 chunks: written, read back equal;
 * truncated by a byte, a wrong magic, a lying header: refused with a message; a run that stops
 * before its last chunk leaves neither the file nor its .part. */
static void test_file_round_trip_and_refusals(void **state) {
    (void)state;
    char path[512], part[600];
    tmp_path(path, sizeof path, "a.mxlp");
    snprintf(part, sizeof part, "%s.part", path);
    const int32_t toks[8] = {1, 2, 3, 4, 1, 0, 4, 2};
    const size_t row = 12 + 2 * 5;
    uint8_t rows[12 + 2 * 5];
    for (size_t i = 0; i < row; i++)
        rows[i] = (uint8_t)(i * 7);
    struct mx_kl_file *f = NULL;
    struct mx_err err = {0};
    assert_int_equal(mx_kl_file_create(&f, path, "tiny \"model\"", 5, 4, 2, toks, &err), 0);
    assert_int_equal(mx_kl_file_write_chunk(f, rows, row, &err), 0);
    assert_int_equal(file_size(path), -1); /* not there until complete */
    assert_int_equal(mx_kl_file_write_chunk(f, rows, row, &err), 0);
    assert_int_equal(mx_kl_file_close(f, &err), 0);
    assert_int_equal(file_size(part), -1);
    long size = file_size(path);
    assert_int_equal(size, 24 + (long)strlen("tiny \"model\"") + 8 * 4 + 2 * (long)row);

    assert_int_equal(mx_kl_file_open(&f, path, &err), 0);
    assert_int_equal(mx_kl_file_n_vocab(f), 5);
    assert_int_equal(mx_kl_file_n_ctx(f), 4);
    assert_int_equal(mx_kl_file_n_chunk(f), 2);
    assert_string_equal(mx_kl_file_model(f), "tiny \"model\"");
    assert_memory_equal(mx_kl_file_tokens(f), toks, sizeof toks);
    uint8_t back[12 + 2 * 5];
    assert_int_equal(mx_kl_file_read_chunk(f, back, row, &err), 0);
    assert_memory_equal(back, rows, row);
    assert_int_equal(mx_kl_file_read_chunk(f, back, row, &err), 0);
    assert_int_not_equal(mx_kl_file_read_chunk(f, back, row, &err), 0); /* past the end */
    mx_kl_file_close(f, NULL);

    /* truncated by one byte */
    assert_int_equal(truncate(path, size - 1), 0);
    mx_err_clear(&err);
    assert_int_equal(mx_kl_file_open(&f, path, &err), MX_EFORMAT);
    assert_null(f);
    assert_non_null(strstr(err.msg, "expected"));
    /* not this format */
    FILE *w = fopen(path, "wb");
    fputs("_logits_ and then some bytes of llama.cpp's format", w);
    fclose(w);
    mx_err_clear(&err);
    assert_int_equal(mx_kl_file_open(&f, path, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "not a mixel logits file"));
    /* a header that claims 2^24 chunks of a short file */
    w = fopen(path, "wb");
    uint32_t h[4] = {5, 4, 1u << 24, 0};
    fwrite(MX_KL_MAGIC, 1, 8, w);
    fwrite(h, 4, 4, w);
    fclose(w);
    mx_err_clear(&err);
    assert_int_equal(mx_kl_file_open(&f, path, &err), MX_EFORMAT);
    /* a token outside the vocabulary */
    const int32_t bad[8] = {1, 2, 3, 4, 1, 9, 4, 2};
    assert_int_equal(mx_kl_file_create(&f, path, "m", 5, 4, 2, bad, &err), 0);
    mx_kl_file_write_chunk(f, rows, row, &err);
    mx_kl_file_write_chunk(f, rows, row, &err);
    assert_int_equal(mx_kl_file_close(f, &err), 0);
    mx_err_clear(&err);
    assert_int_equal(mx_kl_file_open(&f, path, &err), MX_EFORMAT);
    assert_non_null(strstr(err.msg, "outside the vocabulary"));
    remove(path);
    /* stopped after one chunk of two: nothing left behind */
    assert_int_equal(mx_kl_file_create(&f, path, "m", 5, 4, 2, toks, &err), 0);
    assert_int_equal(mx_kl_file_write_chunk(f, rows, row, &err), 0);
    mx_err_clear(&err);
    assert_int_equal(mx_kl_file_close(f, &err), MX_EINVAL);
    assert_int_equal(file_size(path), -1);
    assert_int_equal(file_size(part), -1);
    assert_int_equal(mx_kl_file_open(&f, path, &err), MX_ENOENT);
}

/* ---- on the real tiny story model ----------------------------------------------------------- */

static struct mx_llm *open_story(int n_ctx) {
    const char *d = mx_test_shared_dir();
    if (!d)
        return NULL;
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K.gguf", d);
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.n_ctx = n_ctx;
    s.kv_type = MX_TYPE_F32;
    s.threads = 1;
    struct mx_llm *L = NULL;
    struct mx_err err = {0};
    if (mx_llm_open(&L, path, &s, &err) < 0)
        fail_msg("open %s: %s", path, err.msg);
    return L;
}

static const char *STORY = "Once upon a time, there was a little girl named Lily. She loved to "
                           "play outside in the park. One day, she saw a big, red ball. She "
                           "wanted to play with it, but it was too high.";

/* log p(ids[i+1] | ids[..i]) from one batched pass equals the same read after feeding the
 * tokens one at a time (the cache path), and the cache is empty afterwards. */
static void test_logprobs_equal_token_by_token(void **state) {
    (void)state;
    struct mx_llm *L = open_story(128);
    if (!L)
        mx_test_skip("test_eval: the model tests need ../shared (MX_SHARED)");
    int32_t *ids = NULL;
    size_t n = 0;
    struct mx_err err = {0};
    assert_int_equal(mx_llm_tokenize(L, STORY, strlen(STORY), &ids, &n, &err), 0);
    assert_true(n > 20);
    double *lp = calloc(n, sizeof *lp);
    assert_int_equal(mx_eval_logprobs(L, ids, n, 3, lp, &err), 0);
    size_t nc;
    assert_null(mx_llm_cached(L, &nc));
    assert_int_equal(nc, 0);
    int32_t nv = mx_llm_n_vocab(L);
    for (size_t i = 0; i + 1 < n; i++) {
        assert_int_equal(mx_llm_feed(L, &ids[i], 1, &err), 0);
        if (i < 3)
            continue;
        double ref = mx_eval_log_softmax(mx_llama_logits(mx_llm_ctx(L)), nv, ids[i + 1]);
        assert_true(lp[i - 3] < 0);
        if (fabs(lp[i - 3] - ref) > 1e-4)
            fail_msg("position %zu: batched %.7f, token by token %.7f", i, lp[i - 3], ref);
    }
    mx_llm_clear(L);
    /* nothing to score, too long for the context */
    assert_int_equal(mx_eval_logprobs(L, ids, 1, 0, lp, &err), MX_EINVAL);
    int32_t *many = calloc(200, sizeof *many);
    assert_int_equal(mx_eval_logprobs(L, many, 200, 0, lp, &err), MX_EFULL);
    free(many);
    free(lp);
    free(ids);
    mx_llm_close(L);
}

/* Counts progress reports and cancels after the second when asked. */
struct prog {
    size_t calls, last_chunk;
    bool cancel_after_2;
};

static void on_prog(void *ud, const struct mx_ppl_progress *p) {
    struct prog *g = ud;
    g->calls++;
    g->last_chunk = p->chunk;
}

static bool canceled(void *ud) {
    struct prog *g = ud;
    return g->cancel_after_2 && g->calls >= 2;
}

/* mx_eval_ppl over 3 chunks of 16 (and a tail it must drop) equals the hand-made sums: each
 * chunk's first token set to BOS, rows 8..14 scored against the original next tokens. Then the
 * same run saving its rows, and the model against its own file: KL ~0, top-1 100 %, PPL(base) =
 * PPL(Q). Cancel stops between chunks. */
static void test_ppl_chunks_like_llama_perplexity(void **state) {
    (void)state;
    struct mx_llm *L = open_story(16);
    if (!L)
        mx_test_skip("test_eval: the model tests need ../shared (MX_SHARED)");
    int32_t *ids = NULL;
    size_t n = 0;
    struct mx_err err = {0};
    assert_int_equal(mx_llm_tokenize(L, STORY, strlen(STORY), &ids, &n, &err), 0);
    assert_true(n >= 3 * 16 + 1 && n < 4 * 16);
    const int32_t bos = mx_tokenizer_bos(mx_llm_tokenizer(L));
    struct mx_ppl_acc ref = {0};
    for (size_t c = 0; c < 3; c++) {
        int32_t chunk[16];
        memcpy(chunk, ids + c * 16, sizeof chunk);
        chunk[0] = bos;
        double lp[7];
        assert_int_equal(mx_eval_logprobs(L, chunk, 16, 8, lp, &err), 0);
        for (int i = 0; i < 7; i++)
            mx_ppl_acc_add(&ref, -lp[i]);
    }
    double rp, rse;
    mx_ppl_acc_result(&ref, &rp, &rse);

    char path[512];
    tmp_path(path, sizeof path, "self.mxlp");
    struct mx_kl_file *save = NULL;
    assert_int_equal(mx_kl_file_create(&save, path, "stories260K", mx_llm_n_vocab(L), 16, 3, ids,
                                       &err), 0);
    struct prog g = {0};
    struct mx_ppl_opts o = {.n_ctx = 16, .save = save, .progress = on_prog, .ud = &g};
    struct mx_ppl_result r;
    assert_int_equal(mx_eval_ppl(L, ids, n, &o, &r, &err), 0);
    assert_int_equal(mx_kl_file_close(save, &err), 0);
    assert_int_equal(r.n_chunks, 3);
    assert_int_equal(r.acc.count, 21);
    assert_int_equal(g.calls, 3);
    assert_int_equal(g.last_chunk, 3);
    if (fabs(r.ppl - rp) > 1e-9 * rp || fabs(r.ppl_err - rse) > 1e-9 * rse)
        fail_msg("ppl %.9f +/- %.9f, by hand %.9f +/- %.9f", r.ppl, r.ppl_err, rp, rse);
    assert_true(r.ppl > 1 && r.ppl < 100 && r.tok_s > 0);

    /* against its own saved rows */
    struct mx_kl_file *base = NULL;
    assert_int_equal(mx_kl_file_open(&base, path, &err), 0);
    o = (struct mx_ppl_opts){.n_ctx = 16, .base = base};
    assert_int_equal(mx_eval_ppl(L, ids, n, &o, &r, &err), 0);
    struct mx_kl_stats s;
    assert_int_equal(mx_kl_acc_stats(&r.kl, &s, &err), 0);
    assert_int_equal(s.count, 21);
    assert_true(fabs(s.kld) < 1e-5 && s.kld_max < 1e-4);
    assert_true(s.top1 == 1.0);
    assert_true(s.dppl == 0);
    mx_kl_acc_deinit(&r.kl);
    mx_kl_file_close(base, NULL);
    remove(path);

    /* two chunks asked for; then a cancel after the second report */
    o = (struct mx_ppl_opts){.n_ctx = 16, .n_chunks = 2};
    assert_int_equal(mx_eval_ppl(L, ids, n, &o, &r, &err), 0);
    assert_int_equal(r.n_chunks, 2);
    assert_int_equal(r.acc.count, 14);
    g = (struct prog){.cancel_after_2 = true};
    o = (struct mx_ppl_opts){.n_ctx = 16, .progress = on_prog, .canceled = canceled, .ud = &g};
    assert_int_equal(mx_eval_ppl(L, ids, n, &o, &r, &err), MX_ECANCELED);
    assert_int_equal(r.n_chunks, 2);
    /* bad sizes: a chunk bigger than the context, fewer tokens than a chunk */
    o = (struct mx_ppl_opts){.n_ctx = 32};
    assert_int_equal(mx_eval_ppl(L, ids, n, &o, &r, &err), MX_EINVAL);
    o = (struct mx_ppl_opts){.n_ctx = 16};
    assert_int_equal(mx_eval_ppl(L, ids, 15, &o, &r, &err), MX_EINVAL);
    free(ids);
    mx_llm_close(L);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_softmax_by_hand),
        cmocka_unit_test(test_ppl_and_stderr_by_hand),
        cmocka_unit_test(test_row_encoding_exact_enough),
        cmocka_unit_test(test_kl_by_hand),
        cmocka_unit_test(test_percentiles),
        cmocka_unit_test(test_file_round_trip_and_refusals),
        cmocka_unit_test(test_logprobs_equal_token_by_token),
        cmocka_unit_test(test_ppl_chunks_like_llama_perplexity),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
