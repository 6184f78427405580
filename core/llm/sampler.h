/* sampler.h - turning a row of logits into the next token: a configurable chain of stages, like
 * llama.cpp's llama_sampler_chain.
 *
 * A chain holds stages applied in order to a candidate list (id, logit, p): logit bias, the
 * repetition/frequency/presence penalties over the last N accepted tokens, top-k, typical-p,
 * top-p, min-p, temperature, and a final pick (greedy argmax, or a draw from the softmax with a
 * seeded RNG, so the same seed and settings give the same text). Stop strings and EOS are the
 * caller's business: the chain only picks tokens.
 *
 * The single stages are also exported as plain functions over a candidate list, so tests (and
 * callers building their own policy) can check each one against a hand-computed distribution.
 *
 * Thread-safety: a chain is used by one thread at a time.
 */
#ifndef MX_SAMPLER_H
#define MX_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

/* One candidate token. */
struct mx_token_data {
    int32_t id;   /* token id */
    float logit;  /* current (possibly modified) logit */
    float p;      /* probability, valid after mx_cand_softmax() */
};

/* A candidate list (caller owns data). */
struct mx_cand {
    struct mx_token_data *data; /* n entries */
    size_t n;                   /* number of live candidates */
    int sorted;                 /* 1 when data is sorted by logit descending (ties: lower id) */
};

/* ---- stages on a candidate list (pure; no allocation) --------------------------------------- */

/* Sorts by logit descending (lower id first on ties) and sets p = softmax(logit). n > 0. */
void mx_cand_softmax(struct mx_cand *c);
/* Keeps the k highest (k <= 0: no-op; at least min_keep). */
void mx_cand_top_k(struct mx_cand *c, int k, size_t min_keep);
/* Keeps the smallest prefix (by probability) whose mass reaches p (p >= 1: no-op). */
void mx_cand_top_p(struct mx_cand *c, float p, size_t min_keep);
/* Keeps tokens whose probability is at least p times the top one's (p <= 0: no-op). */
void mx_cand_min_p(struct mx_cand *c, float p, size_t min_keep);
/* Locally typical sampling (Meister et al. 2022) with mass p (p >= 1: no-op). */
void mx_cand_typical(struct mx_cand *c, float p, size_t min_keep);
/* Divides logits by t; t <= 0 keeps only the argmax (greedy through the same path). */
void mx_cand_temp(struct mx_cand *c, float t);
/* llama.cpp penalties: for a token seen `count` times in the window, a positive logit is divided
 * by repeat (a negative one multiplied), then count*freq + (count > 0)*presence is subtracted.
 * counts[] is indexed by token id, n_vocab entries. */
void mx_cand_penalties(struct mx_cand *c, const int32_t *counts, int32_t n_vocab, float repeat,
                       float freq, float presence);
/* Index (into c->data) of the largest logit, lowest id on ties. n > 0. */
size_t mx_cand_argmax(const struct mx_cand *c);

/* ---- a seeded RNG (xoshiro256**, seeded through splitmix64) --------------------------------- */

struct mx_rng {
    uint64_t s[4]; /* state; never all zero */
};

void mx_rng_seed(struct mx_rng *r, uint64_t seed);
uint64_t mx_rng_next(struct mx_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double mx_rng_uniform(struct mx_rng *r);

/* ---- the chain ------------------------------------------------------------------------------- */

/* Settings for mx_sampler_new_params (the usual CLI knobs). */
struct mx_sampler_params {
    float temp;              /* <= 0: greedy */
    int top_k;               /* <= 0: off */
    float top_p;             /* >= 1: off */
    float min_p;             /* <= 0: off */
    float typical_p;         /* >= 1: off */
    float repeat_penalty;    /* 1: off */
    float freq_penalty;      /* 0: off */
    float presence_penalty;  /* 0: off */
    int penalty_last_n;      /* window of accepted tokens the penalties look at; 0: off */
    uint64_t seed;           /* RNG seed for the final draw */
};

/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05, repeat 1.0 over 64. */
void mx_sampler_params_default(struct mx_sampler_params *p);

struct mx_sampler;

/* A new empty chain for a vocabulary of n_vocab tokens (caller frees). Returns 0, MX_EINVAL for
 * n_vocab <= 0, MX_ENOMEM. */
int mx_sampler_new(int32_t n_vocab, struct mx_sampler **out, struct mx_err *err);
/* The usual chain from params: penalties, top-k, typical, top-p, min-p, temp, dist (or greedy
 * when temp <= 0). Errors as mx_sampler_new, plus MX_EINVAL for out-of-range settings. */
int mx_sampler_new_params(int32_t n_vocab, const struct mx_sampler_params *p,
                          struct mx_sampler **out, struct mx_err *err);
void mx_sampler_free(struct mx_sampler *s); /* NULL ok */

/* Adding stages: each returns 0, MX_EINVAL for a bad argument, MX_ENOMEM. The chain is applied in
 * the order stages were added; the last stage should be dist or greedy (otherwise sampling picks
 * the argmax of what is left). */
int mx_sampler_add_logit_bias(struct mx_sampler *s, int32_t n, const int32_t *ids,
                              const float *bias);
int mx_sampler_add_penalties(struct mx_sampler *s, int last_n, float repeat, float freq,
                             float presence);
int mx_sampler_add_top_k(struct mx_sampler *s, int k);
int mx_sampler_add_top_p(struct mx_sampler *s, float p, size_t min_keep);
int mx_sampler_add_min_p(struct mx_sampler *s, float p, size_t min_keep);
int mx_sampler_add_typical(struct mx_sampler *s, float p, size_t min_keep);
int mx_sampler_add_temp(struct mx_sampler *s, float t);
int mx_sampler_add_greedy(struct mx_sampler *s);
int mx_sampler_add_dist(struct mx_sampler *s, uint64_t seed);

/* Runs the chain on a row of n_vocab logits (borrowed, not modified) and stores the chosen token
 * in *out. Does not record it: call mx_sampler_accept() with the token actually used. Returns 0,
 * or MX_EINVAL when every candidate was filtered out or the logits are all NaN. */
int mx_sampler_sample(struct mx_sampler *s, const float *logits, int32_t *out);

/* The candidates left after the last mx_sampler_sample() before the final pick (borrowed, valid
 * until the next call). For tests and for showing alternatives. */
const struct mx_cand *mx_sampler_last_cand(const struct mx_sampler *s);

/* Records a generated token: the penalties' window and the grammar (if any) take it. Returns 0,
 * or MX_EINVAL when the grammar refuses it (the grammar unchanged; the window has it). */
int mx_sampler_accept(struct mx_sampler *s, int32_t token);
/* Records a prompt token: the penalties' window only (the grammar constrains the answer). */
void mx_sampler_accept_prompt(struct mx_sampler *s, int32_t token);

/* ---- grammar-constrained sampling (core/llm/grammar.h) ------------------------------------- */

struct mx_grammar;

/* Constrains the chain to g (which must have a vocabulary of the chain's n_vocab ids): the chain
 * runs as usual and its pick is checked against the grammar; only when it is refused does the
 * grammar filter the whole candidate list and the chain run again on what is left (so the result
 * is a draw from the chain over the allowed tokens, at the cost of one check in the common case).
 * The chain owns g from now on and frees it (a previous grammar is freed; NULL removes it).
 * mx_sampler_sample() then returns MX_ENOENT when no token may come next. */
void mx_sampler_set_grammar(struct mx_sampler *s, struct mx_grammar *g);
/* The chain's grammar (borrowed), or NULL. */
struct mx_grammar *mx_sampler_grammar(const struct mx_sampler *s);

/* What the grammar stage cost so far. */
struct mx_sampler_grammar_stats {
    uint64_t n_sample;  /* mx_sampler_sample() calls under a grammar */
    uint64_t n_refused; /* of those, picks the grammar refused (the whole list was filtered) */
    double seconds;     /* time spent in grammar checks and filtering (not the chain itself) */
};
void mx_sampler_grammar_stats(const struct mx_sampler *s, struct mx_sampler_grammar_stats *st);
/* Forgets the penalty history, reseeds the RNG with its seed, and puts the grammar (if any) back
 * at its start. */
void mx_sampler_reset(struct mx_sampler *s);

#endif
