/* sampler.c - the sampling chain of sampler.h.
 *
 * Tuned for one call per generated token over vocabularies of 32K-128K: a candidate buffer and the
 * penalty counters are allocated when the chain is built, nothing per token. Full sorts happen
 * only in the stages that need an order (top-p, typical, softmax); top-k selects first so the
 * usual chain sorts k entries, not the whole vocabulary.
 *
 * The stage semantics follow llama.cpp's src/llama-sampling.cpp (top-k, top-p, min-p, typical,
 * temp, penalties) so that the knobs mean what llama.cpp users expect. The final draw uses our own
 * RNG, so a seed gives the same text in mixel across runs, not the same text as llama.cpp.
 */
#include "core/llm/sampler.h"

#include "core/base/util.h"
#include "core/llm/grammar.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- candidate stages ----------------------------------------------------------------------- */

/* Order: higher logit first, lower id on ties (a total order, so results do not depend on the
 * sort algorithm). */
static int cand_cmp(const void *a, const void *b) {
    const struct mx_token_data *x = a, *y = b;
    if (x->logit > y->logit)
        return -1;
    if (x->logit < y->logit)
        return 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int cand_before(const struct mx_token_data *x, const struct mx_token_data *y) {
    return cand_cmp(x, y) < 0;
}

static void cand_sort(struct mx_cand *c) {
    if (!c->sorted) {
        qsort(c->data, c->n, sizeof *c->data, cand_cmp);
        c->sorted = 1;
    }
}

/* Moves the k best candidates (in cand_cmp order) to the front, unordered: quickselect. */
static void cand_select(struct mx_token_data *d, size_t n, size_t k) {
    size_t lo = 0, hi = n; /* the k-th best lies in [lo, hi) */
    while (hi - lo > 1) {
        /* median of three as pivot */
        size_t mid = lo + (hi - lo) / 2;
        struct mx_token_data a = d[lo], b = d[mid], c = d[hi - 1], piv;
        if (cand_before(&a, &b))
            piv = cand_before(&b, &c) ? b : (cand_before(&a, &c) ? c : a);
        else
            piv = cand_before(&a, &c) ? a : (cand_before(&b, &c) ? c : b);
        /* three-way partition: [lo,lt) before pivot, [lt,gt) equal, [gt,hi) after */
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            int r = cand_cmp(&d[i], &piv);
            if (r < 0) {
                struct mx_token_data t = d[lt]; d[lt] = d[i]; d[i] = t;
                lt++, i++;
            } else if (r > 0) {
                gt--;
                struct mx_token_data t = d[gt]; d[gt] = d[i]; d[i] = t;
            } else {
                i++;
            }
        }
        if (k <= lt)
            hi = lt;
        else if (k <= gt)
            return;
        else
            lo = gt;
    }
}

void mx_cand_softmax(struct mx_cand *c) {
    cand_sort(c);
    float max = c->data[0].logit;
    double sum = 0.0;
    for (size_t i = 0; i < c->n; i++) {
        float e = c->data[i].logit == -INFINITY ? 0.0f : expf(c->data[i].logit - max);
        c->data[i].p = e;
        sum += e;
    }
    for (size_t i = 0; i < c->n; i++) /* all banned (-inf): uniform, callers check the logit */
        c->data[i].p = sum > 0.0 ? (float)(c->data[i].p / sum) : 1.0f / (float)c->n;
}

void mx_cand_top_k(struct mx_cand *c, int k, size_t min_keep) {
    if (k <= 0)
        return;
    size_t kk = (size_t)k;
    if (kk < min_keep)
        kk = min_keep;
    if (kk >= c->n)
        return;
    if (!c->sorted) {
        cand_select(c->data, c->n, kk);
        c->n = kk;
        c->sorted = 0;
        cand_sort(c);
    } else {
        c->n = kk;
    }
}

void mx_cand_top_p(struct mx_cand *c, float p, size_t min_keep) {
    if (p >= 1.0f)
        return;
    mx_cand_softmax(c);
    double cum = 0.0;
    size_t last = c->n;
    for (size_t i = 0; i < c->n; i++) {
        cum += c->data[i].p;
        if (cum >= p && i + 1 >= min_keep) {
            last = i + 1;
            break;
        }
    }
    c->n = last;
}

void mx_cand_min_p(struct mx_cand *c, float p, size_t min_keep) {
    if (p <= 0.0f || c->n == 0)
        return;
    cand_sort(c);
    float min_logit = c->data[0].logit + logf(p);
    size_t i = 0;
    while (i < c->n && (c->data[i].logit >= min_logit || i < min_keep))
        i++;
    c->n = i > 0 ? i : 1;
}

static int typical_cmp(const void *a, const void *b) {
    /* p holds the shifted score here (see mx_cand_typical): ascending, lower id on ties */
    const struct mx_token_data *x = a, *y = b;
    if (x->p < y->p)
        return -1;
    if (x->p > y->p)
        return 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* p = softmax(logit) in the current order (no sort). */
static void cand_probs(struct mx_cand *c) {
    float max = -INFINITY;
    for (size_t i = 0; i < c->n; i++)
        if (c->data[i].logit > max)
            max = c->data[i].logit;
    double sum = 0.0;
    for (size_t i = 0; i < c->n; i++) {
        c->data[i].p = c->data[i].logit == -INFINITY ? 0.0f : expf(c->data[i].logit - max);
        sum += c->data[i].p;
    }
    for (size_t i = 0; i < c->n; i++)
        c->data[i].p = (float)(c->data[i].p / sum);
}

void mx_cand_typical(struct mx_cand *c, float p, size_t min_keep) {
    if (p >= 1.0f)
        return;
    mx_cand_softmax(c);
    double entropy = 0.0;
    for (size_t i = 0; i < c->n; i++)
        if (c->data[i].p > 0.0f)
            entropy -= c->data[i].p * log(c->data[i].p);
    /* Order by the shifted score |-log p - H| (carried in p; p == 0 goes last), then restore
     * the probabilities from the untouched logits. */
    for (size_t i = 0; i < c->n; i++) {
        struct mx_token_data *t = &c->data[i];
        t->p = t->p > 0.0f ? (float)fabs(-log(t->p) - entropy) : INFINITY;
    }
    qsort(c->data, c->n, sizeof *c->data, typical_cmp);
    cand_probs(c);
    double cum = 0.0;
    size_t last = c->n;
    for (size_t i = 0; i < c->n; i++) {
        cum += c->data[i].p;
        if (cum > p && i + 1 >= min_keep) {
            last = i + 1;
            break;
        }
    }
    c->n = last;
    c->sorted = 0;
}

size_t mx_cand_argmax(const struct mx_cand *c) {
    if (c->sorted)
        return 0;
    size_t best = 0;
    for (size_t i = 1; i < c->n; i++)
        if (cand_before(&c->data[i], &c->data[best]))
            best = i;
    return best;
}

void mx_cand_temp(struct mx_cand *c, float t) {
    if (t <= 0.0f) {
        size_t best = mx_cand_argmax(c);
        struct mx_token_data keep = c->data[best];
        c->data[0] = keep;
        c->n = 1;
        c->sorted = 1;
        return;
    }
    for (size_t i = 0; i < c->n; i++)
        c->data[i].logit /= t;
}

void mx_cand_penalties(struct mx_cand *c, const int32_t *counts, int32_t n_vocab, float repeat,
                       float freq, float presence) {
    if (repeat == 1.0f && freq == 0.0f && presence == 0.0f)
        return;
    for (size_t i = 0; i < c->n; i++) {
        int32_t id = c->data[i].id;
        if (id < 0 || id >= n_vocab || counts[id] == 0)
            continue;
        float *l = &c->data[i].logit;
        if (*l <= 0.0f)
            *l *= repeat;
        else
            *l /= repeat;
        *l -= (float)counts[id] * freq + presence;
    }
    c->sorted = 0;
}

/* ---- RNG --------------------------------------------------------------------------------------
 * Ref: https://prng.di.unimi.it/xoshiro256starstar.c (public domain), seeded with splitmix64. */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void mx_rng_seed(struct mx_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mx_rng_next(struct mx_rng *r) {
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

double mx_rng_uniform(struct mx_rng *r) {
    return (double)(mx_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* ---- the chain ------------------------------------------------------------------------------- */

enum stage_kind {
    ST_BIAS, ST_PENALTIES, ST_TOP_K, ST_TOP_P, ST_MIN_P, ST_TYPICAL, ST_TEMP, ST_GREEDY, ST_DIST
};

struct stage {
    enum stage_kind kind;
    int k;            /* top-k */
    float f;          /* p, temperature, or repeat penalty */
    float freq;       /* penalties */
    float presence;   /* penalties */
    size_t min_keep;  /* filters */
    float *bias;      /* ST_BIAS: n_vocab additive biases (owned) */
};

struct mx_sampler {
    int32_t n_vocab;
    struct stage *st;            /* stages, in order */
    int n_st, cap_st;
    struct mx_token_data *buf;   /* n_vocab candidates, refilled per call */
    struct mx_cand cand;         /* view over buf */
    /* penalties' window of accepted tokens */
    int32_t *counts;             /* n_vocab occurrences in the window (NULL without penalties) */
    int32_t *ring;               /* last_n most recent tokens, circular */
    int last_n;                  /* window size (0: no penalties stage) */
    int ring_len, ring_head;     /* tokens in the window, index of the oldest */
    struct mx_rng rng;
    uint64_t seed;
    struct mx_grammar *grammar;             /* owned; NULL: unconstrained */
    struct mx_sampler_grammar_stats gstats; /* the grammar stage's cost */
};

void mx_sampler_params_default(struct mx_sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temp = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->typical_p = 1.0f;
    p->repeat_penalty = 1.0f;
    p->penalty_last_n = 64;
    p->seed = 0x5eed;
}

int mx_sampler_new(int32_t n_vocab, struct mx_sampler **out, struct mx_err *err) {
    *out = NULL;
    if (n_vocab <= 0)
        return mx_err_set(err, MX_EINVAL, "sampler: vocabulary size %d", (int)n_vocab);
    struct mx_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return mx_err_set(err, MX_ENOMEM, "sampler: out of memory");
    s->n_vocab = n_vocab;
    s->buf = malloc((size_t)n_vocab * sizeof *s->buf);
    if (!s->buf) {
        free(s);
        return mx_err_set(err, MX_ENOMEM, "sampler: out of memory (%d candidates)", (int)n_vocab);
    }
    s->cand.data = s->buf;
    mx_rng_seed(&s->rng, 0);
    *out = s;
    return 0;
}

void mx_sampler_free(struct mx_sampler *s) {
    if (!s)
        return;
    for (int i = 0; i < s->n_st; i++)
        free(s->st[i].bias);
    free(s->st);
    free(s->buf);
    free(s->counts);
    free(s->ring);
    mx_grammar_free(s->grammar);
    free(s);
}

static struct stage *push(struct mx_sampler *s, enum stage_kind kind) {
    if (s->n_st == s->cap_st) {
        int cap = s->cap_st ? s->cap_st * 2 : 8;
        struct stage *n = realloc(s->st, (size_t)cap * sizeof *n);
        if (!n)
            return NULL;
        s->st = n;
        s->cap_st = cap;
    }
    struct stage *st = &s->st[s->n_st++];
    memset(st, 0, sizeof *st);
    st->kind = kind;
    st->min_keep = 1;
    return st;
}

int mx_sampler_add_logit_bias(struct mx_sampler *s, int32_t n, const int32_t *ids,
                              const float *bias) {
    if (n < 0 || (n > 0 && (!ids || !bias)))
        return MX_EINVAL;
    for (int32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->n_vocab || isnan(bias[i]))
            return MX_EINVAL;
    float *b = calloc((size_t)s->n_vocab, sizeof *b);
    if (!b)
        return MX_ENOMEM;
    for (int32_t i = 0; i < n; i++)
        b[ids[i]] += bias[i];
    struct stage *st = push(s, ST_BIAS);
    if (!st) {
        free(b);
        return MX_ENOMEM;
    }
    st->bias = b;
    return 0;
}

int mx_sampler_add_penalties(struct mx_sampler *s, int last_n, float repeat, float freq,
                             float presence) {
    if (last_n < 0 || s->last_n > 0 || !(repeat > 0.0f) || isnan(freq) || isnan(presence))
        return MX_EINVAL;
    if (last_n == 0)
        return 0; /* a zero window penalises nothing */
    s->counts = calloc((size_t)s->n_vocab, sizeof *s->counts);
    s->ring = malloc((size_t)last_n * sizeof *s->ring);
    struct stage *st = s->counts && s->ring ? push(s, ST_PENALTIES) : NULL;
    if (!st) {
        free(s->counts);
        free(s->ring);
        s->counts = s->ring = NULL;
        return MX_ENOMEM;
    }
    s->last_n = last_n;
    st->f = repeat;
    st->freq = freq;
    st->presence = presence;
    return 0;
}

int mx_sampler_add_top_k(struct mx_sampler *s, int k) {
    struct stage *st = push(s, ST_TOP_K);
    if (!st)
        return MX_ENOMEM;
    st->k = k;
    return 0;
}

static int add_p(struct mx_sampler *s, enum stage_kind kind, float p, size_t min_keep) {
    if (isnan(p))
        return MX_EINVAL;
    struct stage *st = push(s, kind);
    if (!st)
        return MX_ENOMEM;
    st->f = p;
    st->min_keep = min_keep ? min_keep : 1;
    return 0;
}

int mx_sampler_add_top_p(struct mx_sampler *s, float p, size_t min_keep) {
    return add_p(s, ST_TOP_P, p, min_keep);
}

int mx_sampler_add_min_p(struct mx_sampler *s, float p, size_t min_keep) {
    return add_p(s, ST_MIN_P, p, min_keep);
}

int mx_sampler_add_typical(struct mx_sampler *s, float p, size_t min_keep) {
    return add_p(s, ST_TYPICAL, p, min_keep);
}

int mx_sampler_add_temp(struct mx_sampler *s, float t) {
    return add_p(s, ST_TEMP, t, 1);
}

int mx_sampler_add_greedy(struct mx_sampler *s) {
    return push(s, ST_GREEDY) ? 0 : MX_ENOMEM;
}

int mx_sampler_add_dist(struct mx_sampler *s, uint64_t seed) {
    if (!push(s, ST_DIST))
        return MX_ENOMEM;
    s->seed = seed;
    mx_rng_seed(&s->rng, seed);
    return 0;
}

int mx_sampler_new_params(int32_t n_vocab, const struct mx_sampler_params *p,
                          struct mx_sampler **out, struct mx_err *err) {
    if (isnan(p->temp) || isnan(p->top_p) || isnan(p->min_p) || isnan(p->typical_p) ||
        !(p->repeat_penalty > 0.0f) || p->penalty_last_n < 0 || p->min_p > 1.0f)
        return mx_err_set(err, MX_EINVAL,
                          "sampler: bad settings (temp %g, top-p %g, min-p %g, typical %g, "
                          "repeat penalty %g over %d)",
                          p->temp, p->top_p, p->min_p, p->typical_p, p->repeat_penalty,
                          p->penalty_last_n);
    struct mx_sampler *s;
    int rc = mx_sampler_new(n_vocab, &s, err);
    if (rc < 0)
        return rc;
    if (p->penalty_last_n > 0 &&
        (p->repeat_penalty != 1.0f || p->freq_penalty != 0.0f || p->presence_penalty != 0.0f))
        rc = mx_sampler_add_penalties(s, p->penalty_last_n, p->repeat_penalty, p->freq_penalty,
                                      p->presence_penalty);
    if (p->temp <= 0.0f) {
        if (rc == 0)
            rc = mx_sampler_add_greedy(s);
    } else {
        if (rc == 0)
            rc = mx_sampler_add_top_k(s, p->top_k);
        if (rc == 0)
            rc = mx_sampler_add_typical(s, p->typical_p, 1);
        if (rc == 0)
            rc = mx_sampler_add_top_p(s, p->top_p, 1);
        if (rc == 0)
            rc = mx_sampler_add_min_p(s, p->min_p, 1);
        if (rc == 0)
            rc = mx_sampler_add_temp(s, p->temp);
        if (rc == 0)
            rc = mx_sampler_add_dist(s, p->seed);
    }
    if (rc < 0) {
        mx_sampler_free(s);
        return mx_err_set(err, rc, "sampler: cannot build the chain");
    }
    *out = s;
    return 0;
}

/* One run of the chain: fill the candidates, (under a grammar, when constrain) drop the tokens
 * it refuses, the stages, the pick. Returns 0, MX_EINVAL (nothing left), MX_ENOENT (the grammar
 * allows no token). */
static int chain(struct mx_sampler *s, const float *logits, bool constrain, int32_t *out) {
    struct mx_cand *c = &s->cand;
    int any = 0;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        float l = logits[i];
        if (isnan(l))
            l = -INFINITY;
        else
            any = 1;
        s->buf[i].id = i;
        s->buf[i].logit = l;
        s->buf[i].p = 0.0f;
    }
    if (!any)
        return MX_EINVAL;
    c->data = s->buf;
    c->n = (size_t)s->n_vocab;
    c->sorted = 0;
    if (constrain) {
        double t0 = mx_time_s();
        mx_grammar_filter(s->grammar, c);
        s->gstats.seconds += mx_time_s() - t0;
        if (c->n == 0)
            return MX_ENOENT;
    }
    for (int i = 0; i < s->n_st; i++) {
        const struct stage *st = &s->st[i];
        switch (st->kind) {
        case ST_BIAS:
            for (size_t j = 0; j < c->n; j++)
                c->data[j].logit += st->bias[c->data[j].id];
            c->sorted = 0;
            break;
        case ST_PENALTIES:
            mx_cand_penalties(c, s->counts, s->n_vocab, st->f, st->freq, st->presence);
            break;
        case ST_TOP_K: mx_cand_top_k(c, st->k, st->min_keep); break;
        case ST_TOP_P: mx_cand_top_p(c, st->f, st->min_keep); break;
        case ST_MIN_P: mx_cand_min_p(c, st->f, st->min_keep); break;
        case ST_TYPICAL: mx_cand_typical(c, st->f, st->min_keep); break;
        case ST_TEMP: mx_cand_temp(c, st->f); break;
        case ST_GREEDY:
        case ST_DIST:
            break;
        }
        if (c->n == 0)
            return MX_EINVAL;
    }
    /* the final pick: the last dist stage draws, otherwise the argmax */
    enum stage_kind last = s->n_st ? s->st[s->n_st - 1].kind : ST_GREEDY;
    size_t pick;
    if (last == ST_DIST) {
        mx_cand_softmax(c);
        if (isinf(c->data[0].logit) && c->data[0].logit < 0)
            return MX_EINVAL; /* every candidate was banned */
        double u = mx_rng_uniform(&s->rng), cum = 0.0;
        pick = c->n - 1;
        for (size_t j = 0; j < c->n; j++) {
            cum += c->data[j].p;
            if (u < cum) {
                pick = j;
                break;
            }
        }
    } else {
        pick = mx_cand_argmax(c);
        if (isinf(c->data[pick].logit) && c->data[pick].logit < 0)
            return MX_EINVAL;
    }
    *out = c->data[pick].id;
    return 0;
}

int mx_sampler_sample(struct mx_sampler *s, const float *logits, int32_t *out) {
    if (!s->grammar)
        return chain(s, logits, false, out);
    s->gstats.n_sample++;
    int rc = chain(s, logits, false, out);
    double t0 = mx_time_s();
    bool ok = rc == 0 && mx_grammar_token_allowed(s->grammar, *out);
    s->gstats.seconds += mx_time_s() - t0;
    if (ok)
        return 0;
    s->gstats.n_refused++;
    return chain(s, logits, true, out);
}

void mx_sampler_set_grammar(struct mx_sampler *s, struct mx_grammar *g) {
    mx_grammar_free(s->grammar);
    s->grammar = g;
    memset(&s->gstats, 0, sizeof s->gstats);
}

struct mx_grammar *mx_sampler_grammar(const struct mx_sampler *s) { return s->grammar; }

void mx_sampler_grammar_stats(const struct mx_sampler *s, struct mx_sampler_grammar_stats *st) {
    *st = s->gstats;
}

const struct mx_cand *mx_sampler_last_cand(const struct mx_sampler *s) {
    return &s->cand;
}

int mx_sampler_accept(struct mx_sampler *s, int32_t token) {
    mx_sampler_accept_prompt(s, token);
    if (!s->grammar)
        return 0;
    double t0 = mx_time_s();
    int rc = mx_grammar_accept_token(s->grammar, token);
    s->gstats.seconds += mx_time_s() - t0;
    return rc;
}

void mx_sampler_accept_prompt(struct mx_sampler *s, int32_t token) {
    if (s->last_n == 0 || token < 0 || token >= s->n_vocab)
        return;
    if (s->ring_len == s->last_n) {
        s->counts[s->ring[s->ring_head]]--;
        s->ring[s->ring_head] = token;
        s->ring_head = (s->ring_head + 1) % s->last_n;
    } else {
        s->ring[(s->ring_head + s->ring_len) % s->last_n] = token;
        s->ring_len++;
    }
    s->counts[token]++;
}

void mx_sampler_reset(struct mx_sampler *s) {
    if (s->counts)
        memset(s->counts, 0, (size_t)s->n_vocab * sizeof *s->counts);
    s->ring_len = s->ring_head = 0;
    mx_rng_seed(&s->rng, s->seed);
    if (s->grammar)
        mx_grammar_reset(s->grammar);
}
