/* eval.h - measured quality of an opened model, the engine side of `mixel eval`: per-token
 * log-probabilities of a token sequence (what every likelihood benchmark is built on),
 * perplexity over a token stream exactly as llama.cpp's llama-perplexity computes it, and the KL
 * divergence of this model's next-token distributions against a reference model's, saved in a
 * compact file (the way quantizations are compared).
 *
 * The perplexity method (Ref: llama.cpp tools/perplexity/perplexity.cpp, perplexity() and
 * kl_divergence()): the text is tokenized once with BOS as the vocabulary says and cut into
 * chunks of n_ctx tokens (a tail shorter than n_ctx is dropped); each chunk is decoded from an
 * empty cache with its first token replaced by BOS when the vocabulary adds one; only the second
 * half is scored: the rows at positions first = n_ctx/2 .. n_ctx-2 predict the tokens at
 * first+1 .. n_ctx-1, so n_ctx - 1 - first tokens per chunk. nll and nll^2 are summed in double,
 * ppl = exp(mean(nll)), and its standard error is ppl * sqrt((mean(nll^2) - mean(nll)^2) / (N-1)).
 *
 * Everything goes through mx_llm (app/llm.h), so it runs on whatever device the model was opened
 * on. Functions that decode leave the model's cache empty. An mx_llm is used by one thread at a
 * time; nothing here keeps global state.
 */
#ifndef MX_EVAL_H
#define MX_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

struct mx_llm;

/* ---- scoring helpers (also used by eval mc / gen) ----------------------------------------- */

/* log p(tok) under softmax(logits[0..n_vocab)), computed as llama.cpp does (float max, expf of
 * each shifted logit summed in double). tok must be in [0, n_vocab). */
double mx_eval_log_softmax(const float *logits, int32_t n_vocab, int32_t tok);

/* Called with the logits of position i (n_vocab floats, borrowed for the call). Return 0 to go
 * on, or a negative MX_E* to stop (returned by the caller). */
typedef int (*mx_eval_row_fn)(void *ud, size_t i, const float *logits);

/* Decodes ids[0..n) at positions 0..n-1 from an empty cache in one batched pass (chunks of the
 * context's ubatch) and hands every row i >= from to fn in order. n must fit the context.
 * Returns 0, MX_EINVAL (n == 0, an id out of range), MX_EFULL (n > the context: err has the
 * numbers), a backend error, or fn's error. The cache is empty afterwards in every case. */
int mx_eval_rows(struct mx_llm *L, const int32_t *ids, size_t n, size_t from, mx_eval_row_fn fn,
                 void *ud, struct mx_err *err);

/* Per-token log-probabilities of a sequence: out[i - from] = log p(ids[i+1] | ids[0..i]) for
 * every i in [from, n-1), so out holds n - 1 - from values (caller's array). from < n - 1.
 * Errors as mx_eval_rows; the cache is empty afterwards. */
int mx_eval_logprobs(struct mx_llm *L, const int32_t *ids, size_t n, size_t from, double *out,
                     struct mx_err *err);

/* ---- perplexity sums ------------------------------------------------------------------------ */

/* Running sums of the scored tokens' negative log-likelihoods. Zero-initialise. */
struct mx_ppl_acc {
    double nll, nll2;   /* sum of -log p and of its square */
    size_t count;       /* tokens scored */
};

/* Adds one token's negative log-likelihood. */
void mx_ppl_acc_add(struct mx_ppl_acc *a, double nll);

/* ppl = exp(nll / count) and its standard error as llama-perplexity prints it ("PPL = x +/- y");
 * *ppl_err is 0 when count < 2 or the variance is not positive (all tokens equally likely).
 * With count == 0: *ppl = NAN. */
void mx_ppl_acc_result(const struct mx_ppl_acc *a, double *ppl, double *ppl_err);

/* ---- KL divergence against a base model's log-probabilities --------------------------------- */

/* One scored position of the base model, stored compactly: log p_i = min + scale * q[i], with
 * q[i] in [0, 65535] covering the 16 nats below the most likely token (llama.cpp's
 * --kl-divergence-base row encoding: rounding error <= scale/2 <= 1.3e-4 nats; tokens more than
 * 16 nats below the top one are clamped there, below what KL and top-1 can notice), plus the
 * exact -log p of the actual next token. llama.cpp takes PPL(base) from the 16-bit row, which
 * the clamp biases on models that are confidently wrong (random weights: the base then looks
 * better than itself); mixel takes it from nll, so a model against its own file gives
 * PPL(Q) - PPL(base) = 0. */
struct mx_kl_row {
    float scale, min;        /* log p = min + scale * q */
    float nll;               /* -log p(next token), as mx_eval_log_softmax */
    const uint16_t *q;       /* [n_vocab], borrowed */
};

/* Encodes one row of logits: q[0..n_vocab) (caller's array) and *scale, *min. Returns the
 * negative log-likelihood of tok (as mx_eval_log_softmax). */
double mx_kl_row_encode(const float *logits, int32_t n_vocab, int32_t tok, uint16_t *q,
                        float *scale, float *min);

/* Running KL sums of this model (Q) against the base, per scored token. Zero-initialise; the
 * per-token arrays grow (mx_kl_acc_deinit frees them). */
struct mx_kl_acc {
    double sum_nll, sum_nll2;             /* Q's -log p(token) */
    double sum_nll_base, sum_nll_base2;   /* the base's */
    double sum_nll_nll_base;              /* for the covariance of ln PPL(Q) and ln PPL(base) */
    double sum_kld, sum_kld2;             /* KL(base || Q) per token */
    double sum_p_diff, sum_p_diff2, sum_p_diff4; /* p_Q(token) - p_base(token) */
    float max_p_diff;                     /* largest |p_Q - p_base| */
    size_t n_same_top;                    /* positions where both argmaxes agree */
    size_t count;                         /* positions compared */
    float *kld, *p_diff;                  /* [count]: per-token values for the percentiles */
    size_t cap;                           /* allocated length of kld and p_diff */
};

/* Compares Q's logits[0..n_vocab) at one position with the base's row there, tok being the
 * actual next token (as llama.cpp's kl_divergence: base log-probabilities below -16 are left out
 * of the KL sum; but the base's nll is the row's exact one, see struct mx_kl_row). Returns 0 or MX_ENOMEM (sums unchanged). */
int mx_kl_acc_add(struct mx_kl_acc *k, const float *logits, int32_t n_vocab, int32_t tok,
                  const struct mx_kl_row *base);

void mx_kl_acc_deinit(struct mx_kl_acc *k); /* frees the arrays; NULL ok */

/* What llama-perplexity --kl-divergence prints, from the sums. Uncertainties are standard errors
 * of the mean (0 with 10 or fewer tokens, like llama.cpp). Percentiles interpolate linearly
 * between sorted values. */
struct mx_kl_stats {
    size_t count;                    /* positions compared */
    double ppl, ppl_err;             /* PPL(Q) */
    double ppl_base, ppl_base_err;   /* PPL(base) on the same tokens */
    double ln_ratio, ln_ratio_err;   /* mean ln(PPL(Q)/PPL(base)) */
    double dppl, dppl_err;           /* PPL(Q) - PPL(base) */
    double cor;                      /* correlation of ln PPL(Q) and ln PPL(base), in [-1, 1] */
    double kld, kld_err;             /* mean KL divergence (nats) */
    double kld_max, kld_median, kld_min;
    double kld_p99_9, kld_p99, kld_p95, kld_p90, kld_p10, kld_p5, kld_p1, kld_p0_1;
    double top1, top1_err;           /* fraction of positions with the same argmax */
    double dp, dp_err;               /* mean p_Q - p_base of the actual token */
    double dp_rms, dp_rms_err;       /* root mean square of it */
    double dp_max, dp_median, dp_min;
    double dp_p99_9, dp_p99, dp_p95, dp_p90, dp_p75, dp_p25, dp_p10, dp_p5, dp_p1, dp_p0_1;
};

/* Computes the statistics (sorts copies of the per-token arrays). Returns 0, MX_EINVAL (no
 * token compared), MX_ENOMEM. */
int mx_kl_acc_stats(const struct mx_kl_acc *k, struct mx_kl_stats *s, struct mx_err *err);

/* ---- the saved-logits file ("mixel eval ppl --save-logits") ---------------------------------
 *
 * Little-endian, a fixed header then the data:
 *   char     magic[8]     "MXLOGPR1"
 *   uint32   n_vocab, n_ctx, n_chunk
 *   uint32   name_len     then name_len bytes: the base model's name (mx_llm_name), no NUL
 *   int32    tokens[n_chunk * n_ctx]   the text's tokens as tokenized (before BOS replacement)
 *   per chunk, per scored position (n_ctx - 1 - n_ctx/2 of them, in order):
 *            float32 scale, float32 min, float32 nll, uint16 q[n_vocab]  (struct mx_kl_row)
 * The file's size must be exactly that; a reader refuses anything else. At n_vocab 32000 a row
 * is 64 KB, a 512-token chunk 16 MB. */

#define MX_KL_MAGIC "MXLOGPR1"

struct mx_kl_file;

/* Creates path (truncating) and writes the header. Returns 0 with *out, MX_EIO / MX_ENOMEM with
 * err naming the path. */
int mx_kl_file_create(struct mx_kl_file **out, const char *path, const char *model_name,
                      int32_t n_vocab, int32_t n_ctx, int32_t n_chunk, const int32_t *tokens,
                      struct mx_err *err);

/* Opens a saved file and checks its header and size. Returns 0 with *out, MX_ENOENT/MX_EIO,
 * MX_EFORMAT ("F: not a mixel logits file", "F: 1234 bytes, expected 5678 for ..."),
 * MX_ENOMEM. */
int mx_kl_file_open(struct mx_kl_file **out, const char *path, struct mx_err *err);

/* Closes. A created file is renamed from PATH.part to PATH when every chunk was written and
 * synced; otherwise the partial file is removed and MX_EIO (a write failed) or MX_EINVAL (fewer
 * chunks than the header says) is returned. NULL ok (returns 0). */
int mx_kl_file_close(struct mx_kl_file *f, struct mx_err *err);

/* The header of an opened or created file (borrowed, valid until close). */
int32_t mx_kl_file_n_vocab(const struct mx_kl_file *f);
int32_t mx_kl_file_n_ctx(const struct mx_kl_file *f);
int32_t mx_kl_file_n_chunk(const struct mx_kl_file *f);
const char *mx_kl_file_model(const struct mx_kl_file *f);
const int32_t *mx_kl_file_tokens(const struct mx_kl_file *f);

/* The rows of the next chunk: bytes = (n_ctx - 1 - n_ctx/2) * (12 + 2 * n_vocab). Read from an
 * opened file (MX_EIO when it ends early), or appended to a created one (MX_EIO). */
int mx_kl_file_read_chunk(struct mx_kl_file *f, uint8_t *rows, size_t bytes, struct mx_err *err);
int mx_kl_file_write_chunk(struct mx_kl_file *f, const uint8_t *rows, size_t bytes,
                           struct mx_err *err);

/* ---- the perplexity run ------------------------------------------------------------------- */

/* The running state handed to the progress callback after each chunk. */
struct mx_ppl_progress {
    size_t chunk, n_chunks;   /* chunks done, chunks in all */
    size_t count;             /* tokens scored so far */
    double ppl, ppl_err;      /* running estimate */
    double elapsed_s;         /* seconds since the first chunk started */
    double tok_s;             /* tokens decoded per second so far (n_ctx per chunk) */
};

/* What to run. */
struct mx_ppl_opts {
    int32_t n_ctx;            /* tokens per chunk (>= 2; must fit the model's context) */
    int64_t n_chunks;         /* at most this many chunks; <= 0: all that fit */
    struct mx_kl_file *save;  /* write the scored rows here (created with this n_ctx and the
                               * chunk count of this run); NULL: no */
    struct mx_kl_file *base;  /* compare with this base (opened; same n_vocab, n_ctx, tokens);
                               * NULL: no */
    void (*progress)(void *ud, const struct mx_ppl_progress *p); /* NULL ok */
    bool (*canceled)(void *ud); /* polled between chunks; NULL ok */
    void *ud;
};

/* What it gave. */
struct mx_ppl_result {
    struct mx_ppl_acc acc;    /* the sums (ppl from mx_ppl_acc_result) */
    double ppl, ppl_err;
    size_t n_chunks;          /* chunks evaluated */
    double seconds;           /* decoding and scoring time */
    double tok_s;             /* tokens decoded per second (n_chunks * n_ctx / seconds) */
    struct mx_kl_acc kl;      /* with opts->base: the KL sums (mx_kl_acc_deinit) */
};

/* How many chunks a run over n_tokens tokens evaluates: n_tokens / n_ctx, at most n_chunks
 * (when > 0). llama-perplexity refuses fewer than 2 * n_ctx tokens; callers do too. */
size_t mx_ppl_n_chunks(size_t n_tokens, int32_t n_ctx, int64_t n_chunks);

/* Runs perplexity over tokens[0..n_tokens) (tokenized with BOS: mx_llm_tokenize) as described at
 * the top. With o->base, the base's rows are read chunk by chunk and compared (the caller has
 * checked that its tokens are these). Returns 0 with *r filled, MX_EINVAL (n_ctx < 2, fewer than
 * n_ctx tokens, a base or save file that does not fit: err says which numbers), MX_ECANCELED,
 * a decode, read or write error. On error *r holds what was summed so far (deinit r->kl). */
int mx_eval_ppl(struct mx_llm *L, const int32_t *tokens, size_t n_tokens,
                const struct mx_ppl_opts *o, struct mx_ppl_result *r, struct mx_err *err);

#endif
