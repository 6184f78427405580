/* eval.c - per-token log-probabilities, perplexity and KL divergence on an opened model (see
 * eval.h for the method). Tuned for the usual run: a few hundred chunks of 512 tokens, each one
 * batched decode with every row's logits, the scoring of a row (one pass of expf over the
 * vocabulary) small next to the decode. The saved-logits file lives in eval_file.c.
 *
 * Ref: llama.cpp tools/perplexity/perplexity.cpp (perplexity(), kl_divergence(), log_softmax())
 * at ggml-org/llama.cpp@050fc7f: the same sums in the same precision, so the numbers agree. */
#include "app/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "app/llm.h"
#include "core/base/util.h"
#include "core/llm/llama.h"
#include "core/text/tokenizer.h"

/* ---- scoring helpers ------------------------------------------------------------------------ */

double mx_eval_log_softmax(const float *logits, int32_t n_vocab, int32_t tok) {
    float max = logits[0];
    for (int32_t i = 1; i < n_vocab; i++)
        max = fmaxf(max, logits[i]);
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++)
        sum += expf(logits[i] - max);
    return (double)(logits[tok] - max) - log(sum);
}

/* Hands rows >= from to the caller's fn (the decode numbers rows from 0). */
struct rows_ud {
    size_t from;
    mx_eval_row_fn fn;
    void *ud;
};

static int rows_cb(void *ud, int64_t i, const float *logits) {
    struct rows_ud *r = ud;
    if ((size_t)i < r->from)
        return 0;
    return r->fn(r->ud, (size_t)i, logits);
}

int mx_eval_rows(struct mx_llm *L, const int32_t *ids, size_t n, size_t from, mx_eval_row_fn fn,
                 void *ud, struct mx_err *err) {
    if (n == 0)
        return mx_err_set(err, MX_EINVAL, "eval: an empty token sequence");
    if (n > mx_llm_n_ctx(L))
        return mx_err_set(err, MX_EFULL, "eval: %zu tokens do not fit the context of %zu",
                          n, mx_llm_n_ctx(L));
    /* the decode runs on the context directly (every row's logits); the llm's mirror of the
     * cache is emptied before and after so that it never disagrees with the cache */
    mx_llm_clear(L);
    struct rows_ud r = {from, fn, ud};
    int rc = mx_llama_decode(mx_llm_ctx(L), ids, (int64_t)n, true, rows_cb, &r, err);
    mx_llm_clear(L);
    return rc;
}

/* mx_eval_logprobs' row consumer: the log-probability of the next id. */
struct logprob_ud {
    const int32_t *ids;
    size_t n, from;
    int32_t n_vocab;
    double *out;
};

static int logprob_row(void *ud, size_t i, const float *logits) {
    struct logprob_ud *u = ud;
    if (i + 1 < u->n)
        u->out[i - u->from] = mx_eval_log_softmax(logits, u->n_vocab, u->ids[i + 1]);
    return 0;
}

int mx_eval_logprobs(struct mx_llm *L, const int32_t *ids, size_t n, size_t from, double *out,
                     struct mx_err *err) {
    if (n < 2 || from >= n - 1)
        return mx_err_set(err, MX_EINVAL, "eval: nothing to score (%zu tokens, from %zu)", n,
                          from);
    struct logprob_ud u = {ids, n, from, mx_llm_n_vocab(L), out};
    return mx_eval_rows(L, ids, n, from, logprob_row, &u, err);
}

/* ---- perplexity sums ------------------------------------------------------------------------ */

void mx_ppl_acc_add(struct mx_ppl_acc *a, double nll) {
    a->nll += nll;
    a->nll2 += nll * nll;
    a->count++;
}

void mx_ppl_acc_result(const struct mx_ppl_acc *a, double *ppl, double *ppl_err) {
    *ppl = NAN;
    *ppl_err = 0;
    if (a->count == 0)
        return;
    double mean = a->nll / (double)a->count;
    double var = a->nll2 / (double)a->count - mean * mean;
    *ppl = exp(mean);
    /* llama-perplexity: the standard error of the mean nll, carried to ppl by d exp(x)/dx */
    if (var > 0 && a->count > 1)
        *ppl_err = sqrt(var / (double)(a->count - 1)) * *ppl;
}

/* ---- KL divergence -------------------------------------------------------------------------- */

/* llama.cpp's nearest_int: round to nearest (ties to even) through the float mantissa, valid for
 * |x| < 2^22; the row encoding keeps x in [0, 65535]. */
static int nearest_int(float x) {
    float v = x + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

double mx_kl_row_encode(const float *logits, int32_t n_vocab, int32_t tok, uint16_t *q,
                        float *scale, float *min) {
    float max_l = logits[0], min_l = logits[0];
    for (int32_t i = 1; i < n_vocab; i++) {
        max_l = fmaxf(max_l, logits[i]);
        min_l = fminf(min_l, logits[i]);
    }
    min_l = fmaxf(min_l, max_l - 16);
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++)
        sum += expf(logits[i] - max_l);
    const float log_sum = (float)log(sum);
    *min = min_l - max_l - log_sum;
    *scale = (max_l - min_l) / 65535.f;
    if (*scale > 0) {
        const float inv = 1 / *scale;
        for (int32_t i = 0; i < n_vocab; i++)
            q[i] = logits[i] > min_l ? (uint16_t)nearest_int(inv * (logits[i] - min_l)) : 0;
    } else {
        memset(q, 0, (size_t)n_vocab * sizeof *q);
    }
    return (double)(max_l + log_sum - logits[tok]);
}

/* Grows the per-token arrays to hold one more value. */
static int kl_reserve(struct mx_kl_acc *k) {
    if (k->count < k->cap)
        return 0;
    size_t cap = k->cap ? k->cap * 2 : 4096, bytes;
    if (!mx_mul_size(cap, sizeof(float), &bytes))
        return MX_ENOMEM;
    float *a = realloc(k->kld, bytes);
    if (!a)
        return MX_ENOMEM;
    k->kld = a;
    float *b = realloc(k->p_diff, bytes);
    if (!b)
        return MX_ENOMEM;
    k->p_diff = b;
    k->cap = cap;
    return 0;
}

int mx_kl_acc_add(struct mx_kl_acc *k, const float *logits, int32_t n_vocab, int32_t tok,
                  const struct mx_kl_row *base) {
    if (kl_reserve(k) < 0)
        return MX_ENOMEM;
    /* Q's log-softmax: its max (first index on ties) and log-sum-exp, in llama.cpp's precision */
    float max_l = logits[0];
    int32_t imax = 0;
    for (int32_t i = 1; i < n_vocab; i++) {
        if (logits[i] > max_l) {
            max_l = logits[i];
            imax = i;
        }
    }
    double sum_exp = 0.0;
    for (int32_t i = 0; i < n_vocab; i++)
        sum_exp += expf(logits[i] - max_l);
    const float log_sum = (float)log(sum_exp);

    /* Q's nll exactly as mx_eval_log_softmax (and as a saved row's nll), so a model against
     * its own file gives PPL(Q) = PPL(base) to the last digit */
    const float nll = (float)(log(sum_exp) - (double)(logits[tok] - max_l));
    const float nll_base = base->nll;
    k->sum_nll += nll;
    k->sum_nll2 += nll * nll;
    k->sum_nll_base += nll_base;
    k->sum_nll_base2 += nll_base * nll_base;
    k->sum_nll_nll_base += nll * nll_base;

    /* KL(base || Q) = sum p_base (log p_base - log p_Q) over the base's likely tokens */
    const float norm = max_l + log_sum;
    double kld = 0;
    int32_t imax_base = 0;
    float lp_base_max = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        const float lp_base = base->scale * base->q[i] + base->min;
        if (i == 0 || lp_base > lp_base_max) {
            lp_base_max = lp_base;
            imax_base = i;
        }
        if (lp_base > -16.f)
            kld += expf(lp_base) * (lp_base - logits[i] + norm);
    }
    k->sum_kld += kld;
    k->sum_kld2 += kld * kld;
    if (imax == imax_base)
        k->n_same_top++;

    const float p_diff = expf(-nll) - expf(-nll_base);
    const double p_diff2 = (double)p_diff * p_diff;
    k->sum_p_diff += p_diff;
    k->sum_p_diff2 += p_diff2;
    k->sum_p_diff4 += p_diff2 * p_diff2;
    k->max_p_diff = fmaxf(k->max_p_diff, fabsf(p_diff));
    k->kld[k->count] = (float)kld;
    k->p_diff[k->count] = p_diff;
    k->count++;
    return 0;
}

void mx_kl_acc_deinit(struct mx_kl_acc *k) {
    if (!k)
        return;
    free(k->kld);
    free(k->p_diff);
    k->kld = k->p_diff = NULL;
    k->cap = 0;
}

/* Mean and standard error of the mean from sums, as llama.cpp's mean_and_uncertainty (no error
 * with 10 or fewer values). */
static void mean_err(double sum, double sum2, size_t count, double *mean, double *se) {
    *mean = sum / (double)count;
    double var = sum2 / (double)count - *mean * *mean;
    *se = var > 0 && count > 10 ? sqrt(var / (double)(count - 1)) : 0.;
}

/* Covariance of the two means, as llama.cpp's covariance() (0 below 10 values). */
static double mean_cov(double sa, double sb, double sab, size_t count) {
    if (count < 10)
        return 0.0;
    double n = (double)count;
    return (sab / n - (sa / n) * (sb / n)) / (n - 1);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Linear interpolation between sorted values (llama.cpp's percentile lambda). */
static double percentile(const float *v, size_t n, double fraction) {
    if (fraction <= 0)
        return v[0];
    if (fraction >= 1)
        return v[n - 1];
    double p = fraction * (double)(n - 1);
    size_t ip = (size_t)p;
    p -= (double)ip;
    return (1 - p) * v[ip] + p * v[MX_MIN(ip + 1, n - 1)];
}

static double median(const float *v, size_t n) {
    return n % 2 == 0 ? 0.5 * ((double)v[n / 2] + v[n / 2 - 1]) : v[n / 2];
}

int mx_kl_acc_stats(const struct mx_kl_acc *k, struct mx_kl_stats *s, struct mx_err *err) {
    memset(s, 0, sizeof *s);
    if (k->count == 0)
        return mx_err_set(err, MX_EINVAL, "KL divergence: no token was compared");
    size_t n = k->count, bytes;
    if (!mx_mul_size(n, 2 * sizeof(float), &bytes))
        return mx_err_set(err, MX_ENOMEM, "KL divergence: %zu tokens", n);
    float *kld = malloc(bytes);
    if (!kld)
        return mx_err_set(err, MX_ENOMEM, "KL divergence: out of memory for %zu tokens", n);
    float *dp = kld + n;
    memcpy(kld, k->kld, n * sizeof *kld);
    memcpy(dp, k->p_diff, n * sizeof *dp);
    qsort(kld, n, sizeof *kld, cmp_float);
    qsort(dp, n, sizeof *dp, cmp_float);
    s->count = n;

    double lq, lq_se, lb, lb_se;
    mean_err(k->sum_nll, k->sum_nll2, n, &lq, &lq_se);
    mean_err(k->sum_nll_base, k->sum_nll_base2, n, &lb, &lb_se);
    double cov = mean_cov(k->sum_nll, k->sum_nll_base, k->sum_nll_nll_base, n);
    s->ppl = exp(lq);
    s->ppl_err = s->ppl * lq_se;
    s->ppl_base = exp(lb);
    s->ppl_base_err = s->ppl_base * lb_se;
    s->cor = lq_se > 0 && lb_se > 0 ? cov / (lq_se * lb_se) : 0;
    s->ln_ratio = lq - lb;
    double r2 = lq_se * lq_se + lb_se * lb_se - 2.0 * cov;
    s->ln_ratio_err = r2 > 0 ? sqrt(r2) : 0;
    s->dppl = s->ppl - s->ppl_base;
    double d2 = s->ppl_err * s->ppl_err + s->ppl_base_err * s->ppl_base_err -
                2.0 * s->ppl * s->ppl_base * cov;
    s->dppl_err = d2 > 0 ? sqrt(d2) : 0;

    mean_err(k->sum_kld, k->sum_kld2, n, &s->kld, &s->kld_err);
    s->kld_max = kld[n - 1];
    s->kld_min = kld[0];
    s->kld_median = median(kld, n);
    s->kld_p99_9 = percentile(kld, n, 0.999);
    s->kld_p99 = percentile(kld, n, 0.99);
    s->kld_p95 = percentile(kld, n, 0.95);
    s->kld_p90 = percentile(kld, n, 0.90);
    s->kld_p10 = percentile(kld, n, 0.10);
    s->kld_p5 = percentile(kld, n, 0.05);
    s->kld_p1 = percentile(kld, n, 0.01);
    s->kld_p0_1 = percentile(kld, n, 0.001);

    s->top1 = (double)k->n_same_top / (double)n;
    s->top1_err = n > 1 ? sqrt(s->top1 * (1 - s->top1) / (double)(n - 1)) : 0;

    mean_err(k->sum_p_diff, k->sum_p_diff2, n, &s->dp, &s->dp_err);
    double mse, mse_se;
    mean_err(k->sum_p_diff2, k->sum_p_diff4, n, &mse, &mse_se);
    s->dp_rms = sqrt(mse);
    s->dp_rms_err = s->dp_rms > 0 ? 0.5 / s->dp_rms * mse_se : 0;
    s->dp_max = dp[n - 1];
    s->dp_min = dp[0];
    s->dp_median = median(dp, n);
    s->dp_p99_9 = percentile(dp, n, 0.999);
    s->dp_p99 = percentile(dp, n, 0.99);
    s->dp_p95 = percentile(dp, n, 0.95);
    s->dp_p90 = percentile(dp, n, 0.90);
    s->dp_p75 = percentile(dp, n, 0.75);
    s->dp_p25 = percentile(dp, n, 0.25);
    s->dp_p10 = percentile(dp, n, 0.10);
    s->dp_p5 = percentile(dp, n, 0.05);
    s->dp_p1 = percentile(dp, n, 0.01);
    s->dp_p0_1 = percentile(dp, n, 0.001);
    free(kld);
    return 0;
}

/* ---- the perplexity run --------------------------------------------------------------------- */

size_t mx_ppl_n_chunks(size_t n_tokens, int32_t n_ctx, int64_t n_chunks) {
    if (n_ctx < 1)
        return 0;
    size_t n = n_tokens / (size_t)n_ctx;
    if (n_chunks > 0 && (uint64_t)n_chunks < n)
        n = (size_t)n_chunks;
    return n;
}

/* One chunk's row consumer: scores rows first .. n_ctx-2 against the chunk's original tokens,
 * writes them to the save file and compares them with the base's. */
struct chunk_ud {
    const int32_t *tokens;     /* the chunk's original tokens [n_ctx] */
    int32_t n_ctx, n_vocab;
    size_t first;
    struct mx_ppl_acc *acc;
    struct mx_kl_acc *kl;      /* NULL: no base */
    const uint8_t *base_rows;  /* this chunk's base rows (n_ctx - 1 - first of them) */
    uint8_t *save_rows;        /* where this chunk's rows to save go; NULL: no saving */
    size_t row_bytes;          /* 12 + 2 * n_vocab: float32 scale, min, nll; uint16 q[] */
    struct mx_err *err;        /* the run's (NULL ok) */
};

static int chunk_row(void *ud, size_t i, const float *logits) {
    struct chunk_ud *c = ud;
    if (i + 1 >= (size_t)c->n_ctx)
        return 0; /* the last row predicts past the chunk */
    int32_t tok = c->tokens[i + 1];
    size_t r = i - c->first;
    /* the run's sums always come from the double-precision log-softmax, so saving changes no
     * digit of the perplexity; the row keeps it as its exact nll */
    const double nll = -mx_eval_log_softmax(logits, c->n_vocab, tok);
    mx_ppl_acc_add(c->acc, nll);
    if (c->save_rows) {
        uint8_t *p = c->save_rows + r * c->row_bytes;
        float scale, min, nllf = (float)nll;
        /* q is written in place (p + 12 is 2-byte aligned: row_bytes is even) */
        mx_kl_row_encode(logits, c->n_vocab, tok, (uint16_t *)(void *)(p + 12), &scale, &min);
        memcpy(p, &scale, 4);
        memcpy(p + 4, &min, 4);
        memcpy(p + 8, &nllf, 4);
    }
    if (c->kl) {
        const uint8_t *p = c->base_rows + r * c->row_bytes;
        struct mx_kl_row row;
        memcpy(&row.scale, p, 4);
        memcpy(&row.min, p + 4, 4);
        memcpy(&row.nll, p + 8, 4);
        row.q = (const uint16_t *)(const void *)(p + 12);
        int rc = mx_kl_acc_add(c->kl, logits, c->n_vocab, tok, &row);
        if (rc < 0)
            return mx_err_set(c->err, rc, "perplexity: out of memory for the KL values of %zu "
                              "tokens", c->kl->count);
    }
    return 0;
}

int mx_eval_ppl(struct mx_llm *L, const int32_t *tokens, size_t n_tokens,
                const struct mx_ppl_opts *o, struct mx_ppl_result *r, struct mx_err *err) {
    memset(r, 0, sizeof *r);
    r->ppl = NAN;
    const int32_t n_ctx = o->n_ctx, n_vocab = mx_llm_n_vocab(L);
    if (n_ctx < 2)
        return mx_err_set(err, MX_EINVAL, "perplexity: a context of %d tokens (at least 2)",
                          (int)n_ctx);
    if ((size_t)n_ctx > mx_llm_n_ctx(L))
        return mx_err_set(err, MX_EINVAL, "perplexity: chunks of %d tokens do not fit the "
                          "context of %zu", (int)n_ctx, mx_llm_n_ctx(L));
    size_t n_chunks = mx_ppl_n_chunks(n_tokens, n_ctx, o->n_chunks);
    if (n_chunks == 0)
        return mx_err_set(err, MX_EINVAL, "perplexity: %zu tokens, fewer than one chunk of %d",
                          n_tokens, (int)n_ctx);
    const size_t first = (size_t)n_ctx / 2, n_scored = (size_t)n_ctx - 1 - first;
    const size_t row_bytes = 12 + 2 * (size_t)n_vocab;
    struct mx_kl_file *files[2] = {o->save, o->base};
    for (int k = 0; k < 2; k++) {
        struct mx_kl_file *f = files[k];
        if (!f)
            continue;
        if (mx_kl_file_n_vocab(f) != n_vocab || mx_kl_file_n_ctx(f) != n_ctx ||
            (size_t)mx_kl_file_n_chunk(f) < n_chunks)
            return mx_err_set(err, MX_EINVAL, "perplexity: the %s file has n_vocab %d, n_ctx %d, "
                              "%d chunks; this run has n_vocab %d, n_ctx %d, %zu chunks",
                              k ? "base" : "save", (int)mx_kl_file_n_vocab(f),
                              (int)mx_kl_file_n_ctx(f), (int)mx_kl_file_n_chunk(f),
                              (int)n_vocab, (int)n_ctx, n_chunks);
    }
    size_t chunk_bytes;
    if (!mx_mul_size(n_scored, row_bytes, &chunk_bytes))
        return mx_err_set(err, MX_ENOMEM, "perplexity: rows of %zu bytes", row_bytes);
    int rc = 0;
    int32_t *ids = malloc((size_t)n_ctx * sizeof *ids);
    uint8_t *save_rows = o->save && chunk_bytes ? malloc(chunk_bytes) : NULL;
    uint8_t *base_rows = o->base && chunk_bytes ? malloc(chunk_bytes) : NULL;
    if (!ids || (o->save && chunk_bytes && !save_rows) || (o->base && chunk_bytes && !base_rows)) {
        rc = mx_err_set(err, MX_ENOMEM, "perplexity: out of memory for a chunk of %d tokens",
                        (int)n_ctx);
        goto done;
    }
    const struct mx_tokenizer *tok = mx_llm_tokenizer(L);
    const bool add_bos = mx_tokenizer_add_bos(tok) && mx_tokenizer_bos(tok) >= 0;
    double t0 = mx_time_s();
    for (size_t c = 0; c < n_chunks; c++) {
        if (o->canceled && o->canceled(o->ud)) {
            rc = mx_err_set(err, MX_ECANCELED, "perplexity: canceled after %zu chunks", c);
            goto done;
        }
        const int32_t *chunk = tokens + c * (size_t)n_ctx;
        memcpy(ids, chunk, (size_t)n_ctx * sizeof *ids);
        if (add_bos)
            ids[0] = mx_tokenizer_bos(tok);
        if (base_rows && (rc = mx_kl_file_read_chunk(o->base, base_rows, chunk_bytes, err)) < 0)
            goto done;
        struct chunk_ud u = {
            .tokens = chunk, .n_ctx = n_ctx, .n_vocab = n_vocab, .first = first, .acc = &r->acc,
            .kl = o->base ? &r->kl : NULL, .base_rows = base_rows, .save_rows = save_rows,
            .row_bytes = row_bytes, .err = err,
        };
        if ((rc = mx_eval_rows(L, ids, (size_t)n_ctx, first, chunk_row, &u, err)) < 0)
            goto done;
        if (save_rows && (rc = mx_kl_file_write_chunk(o->save, save_rows, chunk_bytes, err)) < 0)
            goto done;
        r->n_chunks = c + 1;
        r->seconds = mx_time_s() - t0;
        r->tok_s = r->seconds > 0 ? (double)(r->n_chunks * (size_t)n_ctx) / r->seconds : 0;
        mx_ppl_acc_result(&r->acc, &r->ppl, &r->ppl_err);
        if (o->progress) {
            struct mx_ppl_progress p = {
                .chunk = c + 1, .n_chunks = n_chunks, .count = r->acc.count, .ppl = r->ppl,
                .ppl_err = r->ppl_err, .elapsed_s = r->seconds, .tok_s = r->tok_s,
            };
            o->progress(o->ud, &p);
        }
    }
done:
    free(ids);
    free(save_rows);
    free(base_rows);
    return rc;
}
