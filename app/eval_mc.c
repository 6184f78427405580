/* eval_mc.c - multiple-choice scoring (see eval_mc.h).
 *
 * A task is a few token sequences that share a prefix: BOS + context (+ the k-shot prompt), then
 * each choice. llama.cpp batches them as parallel sequences; mixel's context holds one sequence,
 * so the sequences run one after the other and only what differs from the cached one is decoded
 * again (the last shared token is decoded once more per choice, for the logits that predict the
 * choice's first token). Costs: one context per task plus each choice's tokens, the same token
 * count as llama.cpp's batch; the prefix shared with the previous task stays too (the k-shot
 * examples of MMLU). That is why this file decodes through mx_llama_decode itself instead of
 * app/eval.h's mx_eval_logprobs, which starts each sequence from an empty cache: on the 5-shot
 * stories_test.csv run (713 tokens per choice) it decodes 152 tokens per task instead of ~2,850.
 * The log-probability of a token is app/eval.h's mx_eval_log_softmax, the one every eval uses.
 */
#include "app/eval_mc.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "core/llm/llama.h"
#include "app/eval.h"
#include "app/llm.h"

/* ---- llama.cpp's task order: std::mt19937 and libstdc++'s uniform_int_distribution ---------- */

/* std::mt19937 (32-bit Mersenne Twister), seeded as std::mt19937(seed). */
struct mt19937 {
    uint32_t s[624];
    int i;
};

static void mt_seed(struct mt19937 *m, uint32_t seed) {
    m->s[0] = seed;
    for (int i = 1; i < 624; i++)
        m->s[i] = 1812433253u * (m->s[i - 1] ^ (m->s[i - 1] >> 30)) + (uint32_t)i;
    m->i = 624;
}

static uint32_t mt_next(struct mt19937 *m) {
    if (m->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (m->s[k] & 0x80000000u) | (m->s[(k + 1) % 624] & 0x7fffffffu);
            m->s[k] = m->s[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        m->i = 0;
    }
    uint32_t y = m->s[m->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    return y ^ (y >> 18);
}

/* std::uniform_int_distribution<size_t>(0, n - 1)(mt) as libstdc++ (GCC 11 and later) computes
 * it for a 32-bit generator: Lemire's nearly divisionless method on 64-bit products. n >= 1,
 * n <= 2^32. */
static size_t mt_below(struct mt19937 *m, uint32_t n) {
    uint64_t prod = (uint64_t)mt_next(m) * n;
    uint32_t low = (uint32_t)prod;
    if (low < n) {
        uint32_t threshold = (uint32_t)(0u - n) % n;
        while (low < threshold) {
            prod = (uint64_t)mt_next(m) * n;
            low = (uint32_t)prod;
        }
    }
    return (size_t)(prod >> 32);
}

int mx_mc_pick(enum mx_mc_format f, size_t n_total, size_t n_want, size_t *idx, size_t *n_out) {
    size_t n = n_want > 0 && n_want < n_total ? n_want : n_total;
    *n_out = n;
    if (f != MX_MC_HELLASWAG && n == n_total) {
        for (size_t i = 0; i < n; i++)
            idx[i] = i;
        return 0;
    }
    size_t *pool = malloc((n_total ? n_total : 1) * sizeof *pool);
    if (!pool)
        return MX_ENOMEM;
    for (size_t i = 0; i < n_total; i++)
        pool[i] = i;
    struct mt19937 m;
    mt_seed(&m, 1);
    size_t left = n_total;
    for (size_t i = 0; i < n; i++) {
        size_t j;
        if (f == MX_MC_HELLASWAG) {
            /* llama.cpp: idx = dist(0, remaining - 1); the task is erased from the list */
            j = mt_below(&m, (uint32_t)left);
            idx[i] = pool[j];
            memmove(pool + j, pool + j + 1, (left - j - 1) * sizeof *pool);
        } else {
            /* llama.cpp: j = (int)(scale * rng() * aux.size()) in float; aux[j] = aux.back() */
            const float scale = 1.f / (1.f + (float)4294967295u);
            float x = scale * (float)mt_next(&m) * (float)left;
            j = (size_t)x < left ? (size_t)x : left - 1;
            idx[i] = pool[j];
            pool[j] = pool[left - 1];
        }
        left--;
    }
    free(pool);
    return 0;
}

/* ---- statistics ----------------------------------------------------------------------------- */

void mx_eval_wilson(size_t k, size_t n, double *lo, double *hi) {
    if (n == 0) {
        *lo = *hi = 0;
        return;
    }
    /* llama.cpp's hellaswag_score: za = 1.95996398454, z = za^2 / n */
    const double za = 1.95996398454;
    double p = (double)k / (double)n, z = za * za / (double)n;
    double cnf = z * sqrt((double)n * (4.0 * p * (1 - p) + z)) / (za + za);
    *lo = (p + z * 0.5 - cnf) / (1.0 + z);
    *hi = (p + z * 0.5 + cnf) / (1.0 + z);
}

double mx_eval_stderr(size_t k, size_t n) {
    if (n < 2)
        return 0;
    double p = (double)k / (double)n;
    return sqrt(p * (1 - p) / (double)(n - 1));
}

/* ---- the MMLU prompt ------------------------------------------------------------------------ */

/* A growing string. */
struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n) {
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = (b->n + n + 1) * 2;
        char *np = realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(struct sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* One example in Hendrycks' format (evaluate.py format_example). */
static void mmlu_example(struct sbuf *b, const struct mx_mc_item *it, bool with_answer) {
    sb_str(b, it->context);
    for (size_t k = 0; k < it->n_choices && k < 26; k++) {
        char head[5] = {'\n', (char)('A' + k), '.', ' ', '\0'};
        sb_str(b, head);
        sb_str(b, it->choices[k]);
    }
    sb_str(b, "\nAnswer:");
    if (with_answer) {
        char tail[5] = {' ', (char)('A' + it->answer), '\n', '\n', '\0'};
        sb_str(b, tail);
    }
}

char *mx_mc_mmlu_prompt(const struct mx_mc_item *it, const struct mx_mc_item *const *shots,
                        size_t n_shots, const char *subject) {
    struct sbuf b = {0};
    sb_str(&b, "The following are multiple choice questions (with answers)");
    if (subject && subject[0]) {
        sb_str(&b, " about ");
        sb_str(&b, subject);
    }
    sb_str(&b, ".\n\n");
    for (size_t i = 0; i < n_shots; i++)
        mmlu_example(&b, shots[i], true);
    mmlu_example(&b, it, false);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- scoring -------------------------------------------------------------------------------- */

/* The model and what its KV cache holds. */
struct scorer {
    struct mx_llm *L;
    struct mx_llama_ctx *c;
    int32_t n_vocab;
    int32_t *cached;       /* [n_cached] ids whose K/V the cache holds, position order */
    size_t n_cached, cap;
    size_t n_decoded;      /* tokens decoded so far */
};

/* The decode callback's view of one sequence. */
struct span {
    const int32_t *ids;
    size_t keep;           /* position of batch row 0 */
    size_t from, to;       /* score ids[from..to) */
    int32_t n_vocab;
    double sum;
};

/* Row i holds the logits after ids[keep + i]: they predict ids[keep + i + 1]. Adds that token's
 * log-probability (the one log-softmax every eval uses, app/eval.h) when it is a scored one. */
static int on_row(void *ud, int64_t i, const float *logits) {
    struct span *s = ud;
    size_t target = s->keep + (size_t)i + 1;
    if (target >= s->from && target < s->to)
        s->sum += mx_eval_log_softmax(logits, s->n_vocab, s->ids[target]);
    return 0;
}

/* Sums log p(ids[j] | ids[0..j)) over j in [from, to) (1 <= from < to <= n) into *sum. The
 * cached prefix shared with ids is kept (up to from - 1: the row that predicts ids[from] must be
 * computed); ids[0..to - 1) are cached afterwards. */
static int score_span(struct scorer *S, const int32_t *ids, size_t from, size_t to, double *sum,
                      struct mx_err *err) {
    size_t keep = 0;
    while (keep < S->n_cached && keep < from - 1 && S->cached[keep] == ids[keep])
        keep++;
    size_t need = to - 1;
    if (need > (size_t)mx_llama_ctx_n_ctx(S->c))
        return mx_err_set(err, MX_EFULL, "a choice needs %zu tokens, the context holds %lld "
                          "(raise -c)", need, (long long)mx_llama_ctx_n_ctx(S->c));
    if (S->n_cached > keep) {
        int rc = mx_llama_kv_remove(S->c, (int64_t)keep, -1, err);
        if (rc < 0) {
            S->n_cached = 0;
            mx_llama_kv_clear(S->c);
            return rc;
        }
        S->n_cached = keep;
    }
    if (need > S->cap) {
        size_t nc = need * 2;
        int32_t *p = realloc(S->cached, nc * sizeof *p);
        if (!p)
            return mx_err_set(err, MX_ENOMEM, "out of memory");
        S->cached = p;
        S->cap = nc;
    }
    struct span sp = {ids, keep, from, to, S->n_vocab, 0};
    int rc = mx_llama_decode(S->c, ids + keep, (int64_t)(need - keep), true, on_row, &sp, err);
    if (rc < 0) { /* the cache may hold part of it: start over next time */
        mx_llama_kv_clear(S->c);
        S->n_cached = 0;
        return rc;
    }
    memcpy(S->cached + keep, ids + keep, (need - keep) * sizeof *ids);
    S->n_cached = need;
    S->n_decoded += need - keep;
    *sum = sp.sum;
    return 0;
}

/* Tokenizes a + b + c (BOS as the vocabulary says). */
static int tok3(struct mx_llm *L, const char *a, const char *b, const char *c, int32_t **ids,
                size_t *n, struct mx_err *err) {
    size_t la = strlen(a), lb = strlen(b), lc = c ? strlen(c) : 0;
    char *t = malloc(la + lb + lc + 1);
    if (!t)
        return mx_err_set(err, MX_ENOMEM, "out of memory");
    memcpy(t, a, la);
    memcpy(t + la, b, lb);
    if (lc)
        memcpy(t + la + lb, c, lc);
    t[la + lb + lc] = '\0';
    int rc = mx_llm_tokenize(L, t, la + lb + lc, ids, n, err);
    free(t);
    return rc;
}

/* Scores one task's choices into sum[] / count[]. ctx is the context text (the MMLU prompt for
 * mmlu); choices[k] are the texts scored after it. */
static int score_task(struct scorer *S, enum mx_mc_format f, const struct mx_mc_item *it,
                      const char *ctx, const char *const *choices, double *sum, size_t *count,
                      struct mx_err *err) {
    size_t nc = it->n_choices;
    int32_t **seq = calloc(nc, sizeof *seq);
    size_t *len = calloc(nc, sizeof *len);
    int rc = 0;
    if (!seq || !len) {
        rc = mx_err_set(err, MX_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t k = 0; k < nc; k++) {
        if (f == MX_MC_WINOGRANDE) /* llama.cpp: first + choice + second */
            rc = tok3(S->L, ctx, choices[k], it->tail, &seq[k], &len[k], err);
        else /* llama.cpp: context + " " + ending */
            rc = tok3(S->L, ctx, " ", choices[k], &seq[k], &len[k], err);
        if (rc < 0)
            goto done;
    }
    /* the longest prefix every choice shares */
    size_t cp = len[0];
    for (size_t k = 1; k < nc; k++) {
        size_t j = 0;
        while (j < cp && j < len[k] && seq[k][j] == seq[0][j])
            j++;
        cp = j;
    }
    if (cp == 0) {
        rc = mx_err_set(err, MX_EINVAL, "task %zu: the choices share no first token (a model "
                        "without BOS needs a context)", it->index + 1);
        goto done;
    }
    for (size_t k = 0; k < nc; k++) {
        size_t from = cp, to = len[k];
        if (f == MX_MC_WINOGRANDE) {
            /* llama.cpp's partial evaluation: when both sentences go on for more than 3 tokens
             * after the shared prefix, only the tokens after the choice word are scored (the
             * choice itself is not), and the last token (the full stop) neither */
            bool skip_choice = len[0] - cp > 3 && len[1] - cp > 3;
            if (skip_choice) {
                int32_t *base = NULL;
                size_t n_base = 0;
                if ((rc = tok3(S->L, ctx, choices[k], NULL, &base, &n_base, err)) < 0)
                    goto done;
                free(base);
                from = n_base;
            }
            if (to > from + 1)
                to--;
        }
        if (from >= to || from == 0) {
            rc = mx_err_set(err, MX_EINVAL, "task %zu: choice %zu adds no tokens to score",
                            it->index + 1, k + 1);
            goto done;
        }
        if ((rc = score_span(S, seq[k], from, to, &sum[k], err)) < 0) {
            if (rc == MX_EFULL && err) {
                char msg[sizeof err->msg];
                snprintf(msg, sizeof msg, "task %zu: %.200s", it->index + 1, err->msg);
                snprintf(err->msg, sizeof err->msg, "%s", msg);
            }
            goto done;
        }
        count[k] = to - from;
    }
done:
    for (size_t k = 0; seq && k < nc; k++)
        free(seq[k]);
    free(seq);
    free(len);
    return rc;
}

/* The index of the largest v[k] / (div ? div[k] : 1); the first on ties (llama.cpp's strict >). */
static int argmax(const double *v, const size_t *div, size_t n) {
    int best = 0;
    for (size_t k = 1; k < n; k++) {
        double a = div ? v[k] / (double)div[k] : v[k];
        double b = div ? v[best] / (double)div[best] : v[best];
        if (a > b)
            best = (int)k;
    }
    return best;
}

int mx_mc_run(struct mx_llm *L, const struct mx_mc_set *set, const struct mx_mc_opts *o,
              struct mx_mc_totals *tot, struct mx_err *err) {
    static const char *const letters[26] = {"A", "B", "C", "D", "E", "F", "G", "H", "I",
                                            "J", "K", "L", "M", "N", "O", "P", "Q", "R",
                                            "S", "T", "U", "V", "W", "X", "Y", "Z"};
    struct mx_mc_opts none = {0};
    if (!o)
        o = &none;
    memset(tot, 0, sizeof *tot);
    if (!L || !set || set->n == 0)
        return mx_err_set(err, MX_EINVAL, "eval mc: no tasks");
    struct scorer S = {.L = L, .c = mx_llm_ctx(L), .n_vocab = mx_llm_n_vocab(L)};
    enum mx_mc_format f = set->format;
    size_t k_shot = f == MX_MC_MMLU && o->k_shot > 0 ? (size_t)o->k_shot : 0;
    const struct mx_mc_set *shots = o->shots ? o->shots : set;
    size_t first = o->shots ? 0 : k_shot; /* shots from the set itself are not scored */
    if (shots->n < k_shot || first >= set->n)
        return mx_err_set(err, MX_EINVAL, "eval mc: -k %zu needs %zu solved examples, the %s "
                          "has %zu%s", k_shot, k_shot, o->shots ? "dev file" : "file",
                          shots->n, o->shots ? "" : " (and one more task to score)");
    size_t n_pool = set->n - first, n_pick = 0;
    size_t *pick = malloc(n_pool * sizeof *pick);
    const struct mx_mc_item **shot = calloc(k_shot ? k_shot : 1, sizeof *shot);
    size_t max_nc = 0;
    for (size_t i = 0; i < set->n; i++)
        max_nc = set->items[i].n_choices > max_nc ? set->items[i].n_choices : max_nc;
    double *sum = calloc(max_nc, sizeof *sum);
    size_t *count = calloc(max_nc, sizeof *count);
    int rc = 0;
    if (!pick || !shot || !sum || !count ||
        mx_mc_pick(f, n_pool, o->n_tasks, pick, &n_pick) < 0) {
        rc = mx_err_set(err, MX_ENOMEM, "eval mc: out of memory");
        goto done;
    }
    for (size_t i = 0; i < k_shot; i++)
        shot[i] = &shots->items[i];
    tot->n_total = n_pick;
    mx_llm_clear(L); /* the cache is this scorer's until it is emptied again below */
    double t0 = mx_time_s();
    for (size_t t = 0; t < n_pick; t++) {
        if (o->canceled && o->canceled(o->ud)) {
            rc = MX_ECANCELED;
            break;
        }
        const struct mx_mc_item *it = &set->items[first + pick[t]];
        char *prompt = NULL;
        const char *ctx = it->context;
        const char *const *choices = (const char *const *)it->choices;
        if (f == MX_MC_MMLU) {
            if (it->n_choices > 26) {
                rc = mx_err_set(err, MX_EINVAL, "task %zu: %zu options, MMLU letters go to Z",
                                it->index + 1, it->n_choices);
                break;
            }
            if (!(prompt = mx_mc_mmlu_prompt(it, shot, k_shot, o->subject))) {
                rc = mx_err_set(err, MX_ENOMEM, "eval mc: out of memory");
                break;
            }
            ctx = prompt;
            choices = letters;
        } else if (f == MX_MC_WINOGRANDE && (it->n_choices != 2 || !it->tail)) {
            rc = mx_err_set(err, MX_EINVAL, "task %zu: not a Winogrande task (two choices and a "
                            "blank)", it->index + 1);
            break;
        }
        rc = score_task(&S, f, it, ctx, choices, sum, count, err);
        free(prompt);
        if (rc < 0)
            break;
        struct mx_mc_task res = {
            .index = it->index, .n_choices = it->n_choices, .answer = it->answer,
            .pred = argmax(sum, count, it->n_choices), .pred_sum = argmax(sum, NULL, it->n_choices),
            .sum = sum, .count = count,
        };
        tot->n_done++;
        tot->n_correct += res.pred == res.answer;
        tot->n_correct_sum += res.pred_sum == res.answer;
        tot->chance += 1.0 / (double)it->n_choices;
        tot->n_tokens = S.n_decoded;
        tot->seconds = mx_time_s() - t0;
        if (o->progress)
            o->progress(o->ud, &res, tot);
    }
    tot->n_tokens = S.n_decoded;
    tot->seconds = mx_time_s() - t0;
    mx_llama_kv_clear(S.c);
    mx_llm_clear(L);
done:
    free(S.cached);
    free(pick);
    free(shot);
    free(sum);
    free(count);
    return rc;
}
