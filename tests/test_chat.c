/* test_chat.c - conversation to tokens with a fake tokenizer (a few special strings map to
 * fixed ids, every other byte to 256 + byte, so token boundaries are exact and predictable):
 * incremental multi-turn prefill, regenerate/edit, the moving Mistral v3 system prompt, the
 * context-overflow policy (which exchanges go, never the system prompt or the current turn), the
 * cache-shift plan after a drop, and bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "core/text/chat.h"
#include "core/base/util.h"
#include "tests/mx_test.h"

/* ---- fake tokenizer ---- */

static const struct {
    const char *s;
    int32_t id;
} specials[] = {
    {"<s>", 1}, {"</s>", 2}, {"[INST]", 3}, {"[/INST]", 4}, {"<|im_start|>", 5}, {"<|im_end|>", 6},
};

struct fake {
    int calls;   /* how often fn ran */
    int fail_rc; /* non-zero: return it */
};

static int fake_tokenize(void *ud, const char *text, size_t len, bool add_bos, int32_t **ids,
                         size_t *n_ids, struct mx_err *err) {
    struct fake *f = ud;
    f->calls++;
    if (f->fail_rc)
        return mx_err_set(err, f->fail_rc, "fake tokenizer: asked to fail");
    int32_t *v = malloc((len + 1) * sizeof(*v));
    size_t n = 0;
    if (!v)
        return MX_ENOMEM;
    if (add_bos)
        v[n++] = 1;
    for (size_t i = 0; i < len;) {
        size_t k;
        for (k = 0; k < sizeof(specials) / sizeof(specials[0]); k++) {
            size_t sl = strlen(specials[k].s);
            if (sl <= len - i && memcmp(text + i, specials[k].s, sl) == 0) {
                v[n++] = specials[k].id;
                i += sl;
                break;
            }
        }
        if (k == sizeof(specials) / sizeof(specials[0]))
            v[n++] = 256 + (unsigned char)text[i++];
    }
    *ids = v;
    *n_ids = n;
    return 0;
}

static struct fake fk;
static const struct mx_chat_tokenizer tok = {fake_tokenize, &fk};

/* Token count of a plain string (no BOS). */
static size_t ntok(const char *s) {
    int32_t *v;
    size_t n;
    assert_int_equal(fake_tokenize(&fk, s, strlen(s), false, &v, &n, NULL), 0);
    free(v);
    return n;
}

/* Renders msgs and tokenizes like the engine; caller frees *ids. */
static size_t render_tok(enum mx_tmpl_kind k, const struct mx_chat_msg *m, size_t n, bool agp,
                         int32_t **ids) {
    struct mx_tmpl_opts o = {.add_generation_prompt = agp};
    struct mx_tmpl_prompt p;
    size_t nt;
    assert_int_equal(mx_tmpl_render(k, m, n, &o, &p, NULL), 0);
    assert_int_equal(mx_chat_tokenize_prompt(&p, &tok, ids, &nt, NULL), 0);
    mx_tmpl_prompt_free(&p);
    return nt;
}

static int32_t *concat(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    int32_t *v = malloc((na + nb + 1) * sizeof(*v));
    assert_non_null(v);
    if (na)
        memcpy(v, a, na * sizeof(*v));
    if (nb)
        memcpy(v + na, b, nb * sizeof(*v));
    return v;
}

static int32_t *tok_plain(const char *s, size_t *n) {
    int32_t *v;
    assert_int_equal(fake_tokenize(&fk, s, strlen(s), false, &v, n, NULL), 0);
    return v;
}

/* ---- tests ---- */

static void test_common_prefix(void **state) {
    (void)state;
    const int32_t a[] = {1, 2, 3, 4}, b[] = {1, 2, 9};
    assert_int_equal(mx_chat_common_prefix(a, 4, b, 3), 2);
    assert_int_equal(mx_chat_common_prefix(a, 4, a, 4), 4);
    assert_int_equal(mx_chat_common_prefix(a, 2, a, 4), 2);
    assert_int_equal(mx_chat_common_prefix(NULL, 0, a, 4), 0);
}

/* Turn 2 reuses everything turn 1 evaluated (prompt + generated answer) and prefills only the
 * new user turn; BOS appears once. */
static void test_incremental_turns(void **state) {
    (void)state;
    struct mx_chat_msg m[] = {
        {MX_ROLE_USER, "Hello", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "Hi there", NULL, 0, NULL},
        {MX_ROLE_USER, "Who?", NULL, 0, NULL},
    };
    struct mx_tmpl_opts o = {.add_generation_prompt = true, .model_add_bos = true};
    struct mx_tmpl_prompt p;
    struct mx_chat_prefill pl;
    size_t n_gen;

    /* Turn 1: nothing cached. */
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V1, m, 1, &o, &p, NULL), 0);
    assert_int_equal(mx_chat_plan_prefill(&p, &tok, NULL, 0, &pl, NULL), 0);
    mx_tmpl_prompt_free(&p);
    assert_int_equal(pl.n_keep, 0);
    assert_int_equal(pl.n_discard, 0);
    assert_int_equal(pl.tokens[0], 1);
    assert_int_not_equal(pl.tokens[1], 1); /* one BOS, not two */
    assert_int_equal(pl.n_tokens, 1 + ntok(" [INST] Hello [/INST]"));

    /* The model answers " Hi there" then EOS: the cache now holds prompt + answer. */
    int32_t *gen = tok_plain(" Hi there</s>", &n_gen);
    int32_t *evaluated = concat(pl.tokens, pl.n_tokens, gen, n_gen);
    size_t n_eval = pl.n_tokens + n_gen;
    int32_t *turn1 = concat(pl.tokens, pl.n_tokens, NULL, 0);
    size_t n_turn1 = pl.n_tokens;
    mx_chat_prefill_free(&pl);

    /* Turn 2: only " [INST] Who? [/INST]" is new. */
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V1, m, 3, &o, &p, NULL), 0);
    assert_int_equal(mx_chat_plan_prefill(&p, &tok, evaluated, n_eval, &pl, NULL), 0);
    mx_tmpl_prompt_free(&p);
    assert_int_equal(pl.n_keep, n_eval);
    assert_int_equal(pl.n_discard, 0);
    size_t n_new;
    int32_t *want_new = tok_plain(" [INST] Who? [/INST]", &n_new);
    assert_int_equal(pl.n_tokens - pl.n_keep, n_new);
    assert_memory_equal(pl.tokens + pl.n_keep, want_new, n_new * sizeof(int32_t));
    mx_chat_prefill_free(&pl);
    free(want_new);

    /* Regenerate turn 1's answer: same prompt, cache holds prompt + old answer. The old answer
     * goes and the last prompt token is re-evaluated for fresh logits. */
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V1, m, 1, &o, &p, NULL), 0);
    assert_int_equal(mx_chat_plan_prefill(&p, &tok, evaluated, n_eval, &pl, NULL), 0);
    mx_tmpl_prompt_free(&p);
    assert_int_equal(pl.n_keep, n_turn1 - 1);
    assert_int_equal(pl.n_discard, n_eval - (n_turn1 - 1));
    mx_chat_prefill_free(&pl);

    /* Edit the first user message "Hello" -> "Hellx": reuse up to "<s> [INST] Hell". */
    m[0].content = "Hellx";
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V1, m, 3, &o, &p, NULL), 0);
    assert_int_equal(mx_chat_plan_prefill(&p, &tok, evaluated, n_eval, &pl, NULL), 0);
    mx_tmpl_prompt_free(&p);
    assert_int_equal(pl.n_keep, 1 + ntok(" [INST] Hell"));
    assert_int_equal(pl.n_discard, n_eval - pl.n_keep);
    mx_chat_prefill_free(&pl);

    free(gen);
    free(evaluated);
    free(turn1);
}

/* Mistral v3 moves the system prompt to the last user message, so turn 2 re-evaluates from the
 * first user message's content on: the cost the Jinja template imposes, made visible. */
static void test_v3_moving_system_prompt(void **state) {
    (void)state;
    const struct mx_chat_msg m[] = {
        {MX_ROLE_SYSTEM, "Be brief.", NULL, 0, NULL},
        {MX_ROLE_USER, "Hello", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "Hi", NULL, 0, NULL},
        {MX_ROLE_USER, "Who?", NULL, 0, NULL},
    };
    int32_t *t1, *t2;
    size_t n1 = render_tok(MX_TMPL_MISTRAL_V3, m, 2, true, &t1);
    size_t n2 = render_tok(MX_TMPL_MISTRAL_V3, m, 4, true, &t2);
    struct mx_chat_prefill pl;
    struct mx_tmpl_opts o = {.add_generation_prompt = true};
    struct mx_tmpl_prompt p;
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V3, m, 4, &o, &p, NULL), 0);
    assert_int_equal(mx_chat_plan_prefill(&p, &tok, t1, n1, &pl, NULL), 0);
    mx_tmpl_prompt_free(&p);
    /* "<s>[INST] " is shared, then "Be brief." (old) vs "Hello" (new) differ. */
    assert_int_equal(pl.n_keep, 1 + ntok("[INST] "));
    assert_int_equal(pl.n_tokens, n2);
    assert_int_equal(pl.n_discard, n1 - pl.n_keep);
    mx_chat_prefill_free(&pl);
    free(t1);
    free(t2);
}

/* Tokenizer failures and bad prompts come back as errors, nothing leaks. */
static void test_prefill_errors(void **state) {
    (void)state;
    struct mx_chat_prefill pl;
    struct mx_err e = {0};
    struct mx_tmpl_prompt empty = {"", 0, 0, false};
    struct mx_tmpl_prompt bad = {"abc", 3, 4, false};
    struct mx_tmpl_prompt ok = {"abc", 3, 0, false};
    assert_int_equal(mx_chat_plan_prefill(&empty, &tok, NULL, 0, &pl, &e), MX_EINVAL);
    assert_non_null(strstr(e.msg, "nothing"));
    assert_null(pl.tokens);
    assert_int_equal(mx_chat_plan_prefill(&bad, &tok, NULL, 0, &pl, NULL), MX_EINVAL);
    assert_int_equal(mx_chat_plan_prefill(NULL, &tok, NULL, 0, &pl, NULL), MX_EINVAL);
    assert_int_equal(mx_chat_plan_prefill(&ok, NULL, NULL, 0, &pl, NULL), MX_EINVAL);
    assert_int_equal(mx_chat_plan_prefill(&ok, &tok, NULL, 5, &pl, NULL), MX_EINVAL);
    assert_int_equal(mx_chat_plan_prefill(&ok, &tok, NULL, 0, NULL, NULL), MX_EINVAL);
    fk.fail_rc = MX_ENOMEM;
    mx_err_clear(&e);
    assert_int_equal(mx_chat_plan_prefill(&ok, &tok, NULL, 0, &pl, &e), MX_ENOMEM);
    assert_non_null(strstr(e.msg, "fake tokenizer"));
    assert_null(pl.tokens);
    fk.fail_rc = 0;
    mx_chat_prefill_free(&pl);
    mx_chat_prefill_free(NULL);
}

/* Overflow policy: whole exchanges, oldest first, never the system prompt or the current turn. */
static void test_fit_context(void **state) {
    (void)state;
    const enum mx_role r[] = {MX_ROLE_SYSTEM, MX_ROLE_USER, MX_ROLE_ASSISTANT, MX_ROLE_USER,
                              MX_ROLE_ASSISTANT, MX_ROLE_USER, MX_ROLE_ASSISTANT, MX_ROLE_USER};
    const size_t n[] = {10, 5, 5, 7, 7, 9, 9, 20}; /* sum 72 */
    struct mx_chat_fit f;
    struct mx_err e = {0};

    /* Fits: nothing dropped. */
    assert_int_equal(mx_chat_fit_context(r, n, 8, 72, 100, 28, &f, NULL), 0);
    assert_int_equal(f.count, 0);
    assert_string_equal(f.note, "");
    /* Needs 22 tokens: exchange 1 frees 10, exchange 2 brings it to 24. */
    assert_int_equal(mx_chat_fit_context(r, n, 8, 72, 60, 10, &f, NULL), 0);
    assert_int_equal(f.first, 1);
    assert_int_equal(f.count, 4);
    assert_int_equal(f.n_exchanges, 2);
    assert_int_equal(f.n_tokens_dropped, 24);
    assert_string_equal(f.note,
                        "context full: dropped the 2 oldest exchanges (4 messages, 24 tokens)");
    /* Needs 1 token: one exchange. */
    assert_int_equal(mx_chat_fit_context(r, n, 8, 72, 71, 0, &f, NULL), 0);
    assert_int_equal(f.first, 1);
    assert_int_equal(f.count, 2);
    /* Everything droppable (42 tokens) is not enough: system 10 + current 20 + reserve > 35. */
    assert_int_equal(mx_chat_fit_context(r, n, 8, 72, 35, 10, &f, &e), MX_EFULL);
    assert_non_null(strstr(e.msg, "n_ctx 35"));
    assert_int_equal(f.count, 0);
    /* Exactly enough: 72 - 42 = 30 tokens + 5 reserve = 35. */
    assert_int_equal(mx_chat_fit_context(r, n, 8, 72, 35, 5, &f, NULL), 0);
    assert_int_equal(f.first, 1);
    assert_int_equal(f.count, 6);
    assert_int_equal(f.n_exchanges, 3);

    /* No system prompt: the first exchange is droppable from index 0. */
    assert_int_equal(mx_chat_fit_context(r + 1, n + 1, 7, 62, 60, 0, &f, NULL), 0);
    assert_int_equal(f.first, 0);
    assert_int_equal(f.count, 2);

    /* Tool traffic stays with its exchange; the current turn includes the answers after the
     * last user message (a continuation). */
    const enum mx_role rt[] = {MX_ROLE_SYSTEM, MX_ROLE_USER, MX_ROLE_ASSISTANT, MX_ROLE_TOOL,
                               MX_ROLE_ASSISTANT, MX_ROLE_USER, MX_ROLE_ASSISTANT};
    const size_t nt[] = {3, 4, 6, 8, 5, 4, 2}; /* sum 32 */
    assert_int_equal(mx_chat_fit_context(rt, nt, 7, 32, 30, 0, &f, NULL), 0);
    assert_int_equal(f.first, 1);
    assert_int_equal(f.count, 4);
    assert_int_equal(f.n_exchanges, 1);
    assert_int_equal(f.n_tokens_dropped, 23);

    /* Only system + current turn: nothing can go. */
    const enum mx_role rs[] = {MX_ROLE_SYSTEM, MX_ROLE_USER};
    const size_t ns[] = {9, 20};
    assert_int_equal(mx_chat_fit_context(rs, ns, 2, 29, 20, 0, &f, NULL), MX_EFULL);
    /* A lone user message over the limit: MX_EFULL too. */
    assert_int_equal(mx_chat_fit_context(rs + 1, ns + 1, 1, 20, 20, 1, &f, NULL), MX_EFULL);

    /* Bad arguments. */
    assert_int_equal(mx_chat_fit_context(r, n, 0, 1, 10, 0, &f, NULL), MX_EINVAL);
    assert_int_equal(mx_chat_fit_context(r, n, 8, 72, 10, 10, &f, NULL), MX_EINVAL);
    assert_int_equal(mx_chat_fit_context(NULL, n, 8, 72, 10, 0, &f, NULL), MX_EINVAL);
    assert_int_equal(mx_chat_fit_context(r, n, 8, 72, 10, 0, NULL, NULL), MX_EINVAL);
    const size_t huge[] = {1, SIZE_MAX, SIZE_MAX, 1};
    assert_int_equal(mx_chat_fit_context(r, huge, 4, SIZE_MAX, 10, 0, &f, NULL), MX_EINVAL);
}

/* End to end: a ChatML conversation overflows, the policy drops the oldest exchange, and the
 * shift plan keeps the system block, moves the surviving exchange down and prefills only the
 * new turn. Offsets come from tokenizing prefixes of the conversation. */
static void test_overflow_then_shift(void **state) {
    (void)state;
    const struct mx_chat_msg m[] = {
        {MX_ROLE_SYSTEM, "Be brief.", NULL, 0, NULL},
        {MX_ROLE_USER, "First question", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "First answer", NULL, 0, NULL},
        {MX_ROLE_USER, "Second question", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "Second answer", NULL, 0, NULL},
        {MX_ROLE_USER, "Third question", NULL, 0, NULL},
    };
    enum mx_role roles[6];
    size_t counts[6];
    int32_t *ids;
    size_t prev = 0;
    /* Per-message counts by differences of prefix renders (additive for ChatML). */
    for (size_t i = 0; i < 6; i++) {
        size_t n = render_tok(MX_TMPL_CHATML, m, i + 1, false, &ids);
        free(ids);
        roles[i] = m[i].role;
        counts[i] = n - prev;
        prev = n;
    }
    int32_t *full;
    size_t n_full = render_tok(MX_TMPL_CHATML, m, 6, true, &full);
    free(full);
    struct mx_chat_fit f;
    size_t reserve = 16;
    assert_int_equal(mx_chat_fit_context(roles, counts, 6, n_full, n_full + reserve - 1, reserve,
                                         &f, NULL),
                     0);
    assert_int_equal(f.first, 1);
    assert_int_equal(f.count, 2);

    /* The cache holds the conversation up to the second answer. */
    int32_t *old;
    size_t n_old = render_tok(MX_TMPL_CHATML, m, 5, false, &old);
    /* The new prompt without the dropped exchange. */
    const struct mx_chat_msg kept[] = {m[0], m[3], m[4], m[5]};
    int32_t *nw;
    size_t n_new = render_tok(MX_TMPL_CHATML, kept, 4, true, &nw);
    assert_true(n_new + reserve <= n_full + reserve - 1);

    struct mx_chat_shift sh;
    assert_int_equal(mx_chat_plan_shift(old, n_old, nw, n_new, &sh, NULL), 0);
    size_t hdr = ntok("<|im_start|>user\n"); /* the user header is shared at the same place */
    int32_t *t;
    size_t n_sys = render_tok(MX_TMPL_CHATML, m, 1, false, &t);
    free(t);
    size_t n_first = render_tok(MX_TMPL_CHATML, m, 3, false, &t);
    free(t);
    assert_int_equal(sh.n_keep, n_sys + hdr);
    assert_int_equal(sh.src, n_first + hdr);
    assert_int_equal(sh.n_move, n_old - (n_first + hdr));
    assert_int_equal(sh.n_prefill_from, sh.n_keep + sh.n_move);
    /* What is moved is token-identical, and what is prefilled is the third turn + prompt. */
    assert_memory_equal(old + sh.src, nw + sh.n_keep, sh.n_move * sizeof(int32_t));
    size_t n_tail;
    int32_t *tail = tok_plain("<|im_start|>user\nThird question<|im_end|>\n"
                              "<|im_start|>assistant\n",
                              &n_tail);
    assert_int_equal(n_new - sh.n_prefill_from, n_tail);
    assert_memory_equal(nw + sh.n_prefill_from, tail, n_tail * sizeof(int32_t));
    free(tail);
    free(old);
    free(nw);
}

static void test_shift_edges(void **state) {
    (void)state;
    struct mx_chat_shift sh;
    const int32_t a[] = {1, 2, 3, 4, 5};
    /* Identical: keep all but the last (re-evaluated for logits). */
    assert_int_equal(mx_chat_plan_shift(a, 5, a, 5, &sh, NULL), 0);
    assert_int_equal(sh.n_keep, 4);
    assert_int_equal(sh.n_move, 0);
    assert_int_equal(sh.src, 4);
    assert_int_equal(sh.n_prefill_from, 4);
    /* Nothing cached. */
    assert_int_equal(mx_chat_plan_shift(NULL, 0, a, 5, &sh, NULL), 0);
    assert_int_equal(sh.n_keep, 0);
    assert_int_equal(sh.n_prefill_from, 0);
    /* New is the old with [2,3] removed, ending exactly where old ends: one token left. */
    const int32_t b[] = {1, 4, 5};
    assert_int_equal(mx_chat_plan_shift(a, 5, b, 3, &sh, NULL), 0);
    assert_int_equal(sh.n_keep, 1);
    assert_int_equal(sh.src, 3);
    assert_int_equal(sh.n_move, 1);
    assert_int_equal(sh.n_prefill_from, 2);
    /* No later match: plain truncate + prefill. */
    const int32_t c[] = {1, 9, 9};
    assert_int_equal(mx_chat_plan_shift(a, 5, c, 3, &sh, NULL), 0);
    assert_int_equal(sh.n_keep, 1);
    assert_int_equal(sh.n_move, 0);
    assert_int_equal(sh.src, 1);
    /* The longest run wins over an earlier shorter one. */
    const int32_t o2[] = {1, 7, 8, 0, 7, 8, 9, 6}, n2[] = {1, 7, 8, 9, 5};
    assert_int_equal(mx_chat_plan_shift(o2, 8, n2, 5, &sh, NULL), 0);
    assert_int_equal(sh.n_keep, 3);
    assert_int_equal(sh.src, 6);
    assert_int_equal(sh.n_move, 1);
    /* Bad input. */
    assert_int_equal(mx_chat_plan_shift(a, 5, a, 0, &sh, NULL), MX_EINVAL);
    assert_int_equal(mx_chat_plan_shift(NULL, 5, a, 5, &sh, NULL), MX_EINVAL);
    assert_int_equal(mx_chat_plan_shift(a, 5, a, 5, NULL, NULL), MX_EINVAL);
}

/* A pathological input (thousands of candidate positions, each matching a long way) finishes
 * quickly thanks to the comparison budget and still finds a valid run. */
static void test_shift_pathological(void **state) {
    (void)state;
    const size_t K = 1000, R = 80;
    size_t n_old = 2 + R * (K + 1), n_new = 1 + K + 1;
    int32_t *o = calloc(n_old, sizeof(*o)), *nw = calloc(n_new, sizeof(*nw));
    assert_non_null(o);
    assert_non_null(nw);
    o[0] = 1;
    o[1] = 2;
    for (size_t r = 0; r < R; r++)
        o[2 + r * (K + 1) + K] = 3; /* runs of K zeros separated by 3 */
    nw[0] = 1;
    nw[n_new - 1] = 4; /* K zeros then a 4 nothing matches */
    struct mx_chat_shift sh;
    double t0 = mx_time_s();
    assert_int_equal(mx_chat_plan_shift(o, n_old, nw, n_new, &sh, NULL), 0);
    double dt = mx_time_s() - t0;
    assert_int_equal(sh.n_keep, 1);
    assert_int_equal(sh.n_move, K);
    assert_int_equal(sh.src, 2);
    assert_memory_equal(o + sh.src, nw + sh.n_keep, sh.n_move * sizeof(int32_t));
    assert_true(dt < 2.0);
    free(o);
    free(nw);
}

/* A turn that failed (or was cancelled before any answer) leaves a user message with no answer;
 * the next user message follows it directly. The planner leaves every such message out, so the
 * prompt is exactly the conversation without them, valid for templates that demand alternation
 * (Gemma, Mistral), and says so; the last message (the current turn) is always kept. */
static void test_prepare_leaves_out_unanswered(void **state) {
    (void)state;
    const struct mx_chat_msg m[] = {
        {MX_ROLE_SYSTEM, "Be brief.", NULL, 0, NULL},
        {MX_ROLE_USER, "First question", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "First answer", NULL, 0, NULL},
        {MX_ROLE_USER, "a paste far too long for the context", NULL, 0, NULL},
        {MX_ROLE_USER, "and a retry that was cancelled", NULL, 0, NULL},
        {MX_ROLE_USER, "short one", NULL, 0, NULL},
    };
    const struct mx_chat_msg answered[] = {m[0], m[1], m[2], m[5]};
    struct mx_tmpl_opts o = {.add_generation_prompt = true};
    const enum mx_tmpl_kind kinds[] = {MX_TMPL_GEMMA, MX_TMPL_CHATML};
    for (size_t k = 0; k < 2; k++) {
        int32_t *want;
        size_t n_want = render_tok(kinds[k], answered, 4, true, &want);
        struct mx_chat_turn t;
        struct mx_err e = {0};
        assert_int_equal(mx_chat_prepare(kinds[k], m, 6, NULL, &o, &tok, NULL, 0, 4096, 16, &t,
                                         &e),
                         0);
        assert_int_equal(t.n_unanswered, 2);
        assert_int_equal(t.drop_count, 0);
        assert_int_equal(t.n_tokens, n_want);
        assert_memory_equal(t.tokens, want, n_want * sizeof(int32_t));
        assert_non_null(strstr(t.note, "2 earlier messages that got no answer"));
        mx_chat_turn_free(&t);
        /* per-message counts stay aligned with the messages that are kept */
        const size_t n_tok[] = {3, 3, 3, 500, 500, 3};
        assert_int_equal(mx_chat_prepare(kinds[k], m, 6, n_tok, &o, &tok, NULL, 0, 4096, 16, &t,
                                         &e),
                         0);
        assert_int_equal(t.n_tokens, n_want);
        mx_chat_turn_free(&t);
        free(want);
    }
    /* a conversation that is only the current turn, or only answered turns: nothing left out */
    struct mx_chat_turn t;
    assert_int_equal(mx_chat_prepare(MX_TMPL_GEMMA, m + 5, 1, NULL, &o, &tok, NULL, 0, 4096, 16,
                                     &t, NULL),
                     0);
    assert_int_equal(t.n_unanswered, 0);
    assert_string_equal(t.note, "");
    mx_chat_turn_free(&t);
}

/* The whole turn through mx_chat_prepare: fits -> exact prefix reuse; overflows -> the oldest
 * exchange is left out and the cache plan moves the survivors; per-message counts optional. */
static void test_prepare(void **state) {
    (void)state;
    const struct mx_chat_msg m[] = {
        {MX_ROLE_SYSTEM, "Be brief.", NULL, 0, NULL},
        {MX_ROLE_USER, "First question", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "First answer", NULL, 0, NULL},
        {MX_ROLE_USER, "Second question", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "Second answer", NULL, 0, NULL},
        {MX_ROLE_USER, "Third question", NULL, 0, NULL},
    };
    struct mx_tmpl_opts o = {.add_generation_prompt = true};
    struct mx_chat_turn t;
    struct mx_err e = {0};
    int32_t *old, *full, *kept_ids;
    size_t n_old = render_tok(MX_TMPL_CHATML, m, 5, false, &old);
    size_t n_full = render_tok(MX_TMPL_CHATML, m, 6, true, &full);
    const struct mx_chat_msg kept[] = {m[0], m[3], m[4], m[5]};
    size_t n_kept = render_tok(MX_TMPL_CHATML, kept, 4, true, &kept_ids);

    /* Fits: the whole conversation, the cache keeps all it has. */
    assert_int_equal(mx_chat_prepare(MX_TMPL_CHATML, m, 6, NULL, &o, &tok, old, n_old, 4096, 512,
                                     &t, &e),
                     0);
    assert_int_equal(t.n_tokens, n_full);
    assert_memory_equal(t.tokens, full, n_full * sizeof(int32_t));
    assert_int_equal(t.drop_count, 0);
    assert_int_equal(t.cache.n_keep, n_old);
    assert_int_equal(t.cache.n_move, 0);
    assert_int_equal(t.cache.n_prefill_from, n_old);
    assert_string_equal(t.note, "");
    mx_chat_turn_free(&t);

    /* One token short: the first exchange goes; estimates from the tokenizer, then from
     * deliberately wrong counts (all 1: calibrated to the measured total). */
    const size_t ones[] = {1, 1, 1, 1, 1, 1};
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(mx_chat_prepare(MX_TMPL_CHATML, m, 6, pass ? ones : NULL, &o, &tok, old,
                                         n_old, n_full + 15, 16, &t, &e),
                         0);
        assert_int_equal(t.drop_first, 1);
        assert_int_equal(t.drop_count, 2);
        assert_int_equal(t.n_tokens, n_kept);
        assert_memory_equal(t.tokens, kept_ids, n_kept * sizeof(int32_t));
        assert_true(t.n_tokens + 16 <= n_full + 15);
        assert_true(t.cache.n_move > 0);
        assert_memory_equal(old + t.cache.src, t.tokens + t.cache.n_keep,
                            t.cache.n_move * sizeof(int32_t));
        assert_non_null(strstr(t.note, "2 oldest messages (1 exchange)"));
        mx_chat_turn_free(&t);
    }

    /* Nothing but system + current turn fits in less: MX_EFULL, output empty. */
    assert_int_equal(mx_chat_prepare(MX_TMPL_CHATML, m, 6, NULL, &o, &tok, old, n_old, 40, 16, &t,
                                     &e),
                     MX_EFULL);
    assert_null(t.tokens);
    /* Tokenizer failure propagates. */
    fk.fail_rc = MX_EIO;
    assert_int_equal(mx_chat_prepare(MX_TMPL_CHATML, m, 6, NULL, &o, &tok, NULL, 0, 4096, 0, &t,
                                     NULL),
                     MX_EIO);
    fk.fail_rc = 0;
    /* Render errors propagate (Gemma refuses two user messages in a row). */
    assert_int_equal(mx_chat_prepare(MX_TMPL_GEMMA, m + 5, 1, NULL, &o, &tok, NULL, 0, 4096, 0,
                                     &t, NULL),
                     0);
    mx_chat_turn_free(&t);
    const struct mx_chat_msg au[] = {m[2], m[3]}; /* Gemma refuses an assistant first */
    assert_int_equal(mx_chat_prepare(MX_TMPL_GEMMA, au, 2, NULL, &o, &tok, NULL, 0, 4096, 0, &t,
                                     NULL),
                     MX_EINVAL);
    assert_int_equal(mx_chat_prepare(MX_TMPL_CHATML, m, 6, NULL, &o, &tok, NULL, 0, 16, 16, &t,
                                     NULL),
                     MX_EINVAL);
    mx_chat_turn_free(NULL);
    free(old);
    free(full);
    free(kept_ids);
}

/* ---- keeping the ids the model wrote ---------------------------------------------------- */

/* Text of fake ids as the engine stores a generation: specials as their text, byte ids as their
 * byte, the merged id 600 as "ab", and id 601 as a byte that is not UTF-8 on its own: shown as
 * U+FFFD, like the streaming detokenizer does. */
static int fake_text(void *ud, const int32_t *ids, size_t n, char **text, size_t **ends) {
    (void)ud;
    char *t = malloc(n * 8 + 1);
    size_t *e = malloc((n + 1) * sizeof(*e)), len = 0;
    assert_non_null(t);
    assert_non_null(e);
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        const char *p = NULL;
        for (size_t k = 0; k < sizeof(specials) / sizeof(specials[0]); k++)
            if (specials[k].id == id)
                p = specials[k].s;
        if (p) {
            memcpy(t + len, p, strlen(p));
            len += strlen(p);
        } else if (id == 600) {
            memcpy(t + len, "ab", 2);
            len += 2;
        } else if (id == 601) {
            memcpy(t + len, "\xef\xbf\xbd", 3);
            len += 3;
        } else {
            t[len++] = (char)(id - 256);
        }
        e[i] = len;
    }
    *text = t;
    *ends = e;
    return 0;
}

static const struct mx_chat_tokenizer tok_text = {fake_tokenize, &fk, fake_text};

static void ids_of(const char *s, int32_t *out, size_t *n) {
    int32_t *v;
    assert_int_equal(fake_tokenize(&fk, s, strlen(s), false, &v, n, NULL), 0);
    memcpy(out, v, *n * sizeof(*v));
    free(v);
}

/* The cache holds "[INST] hi [/INST]" and then the model's own ids for "xab\xef\xbf\xbdy" (with
 * the merged "ab", the U+FFFD byte and no leading space); the next prompt renders the stored
 * answer with the template's space and re-tokenizes it byte by byte. Everything up to the end of
 * the answer is kept, spliced in as the model's ids; the rest is the new prompt's. */
static void test_keep_evaluated(void **state) {
    (void)state;
    int32_t ev[64], pr[128];
    size_t n_ev, n_pr;
    ids_of("[INST] hi [/INST]", ev, &n_ev);
    size_t n_prompt = n_ev;
    int32_t answer[] = {256 + 'x', 600, 601, 256 + 'y'};
    memcpy(ev + n_ev, answer, sizeof answer);
    n_ev += 4;
    ids_of("[INST] hi [/INST] xab\xef\xbf\xbdy</s>[INST] more [/INST]", pr, &n_pr);
    int32_t *ids = malloc(n_pr * sizeof(*ids));
    memcpy(ids, pr, n_pr * sizeof(*ids));
    size_t n = n_pr;
    size_t keep = mx_chat_common_prefix(ids, n, ev, n_ev);
    assert_int_equal(keep, n_prompt);
    size_t k2 = mx_chat_keep_evaluated(&tok_text, &ids, &n, keep, ev, n_ev, SIZE_MAX);
    assert_int_equal(k2, n_ev); /* the whole cache is kept */
    assert_memory_equal(ids, ev, n_ev * sizeof(*ids));
    /* the new part is the prompt's own tail: "</s>[INST] more [/INST]" */
    int32_t tail[32];
    size_t n_tail;
    ids_of("</s>[INST] more [/INST]", tail, &n_tail);
    assert_int_equal(n, n_ev + n_tail);
    assert_memory_equal(ids + n_ev, tail, n_tail * sizeof(*ids));

    /* no text callback: nothing beyond the common prefix */
    size_t n2 = n_pr;
    int32_t *ids2 = malloc(n_pr * sizeof(*ids2));
    memcpy(ids2, pr, n_pr * sizeof(*ids2));
    assert_int_equal(mx_chat_keep_evaluated(&tok, &ids2, &n2, keep, ev, n_ev, SIZE_MAX), keep);
    assert_int_equal(n2, n_pr);
    /* a limit the spliced prompt would pass: kept as it was (the splice is 2 ids shorter here,
     * so a limit below the new length refuses it) */
    assert_int_equal(mx_chat_keep_evaluated(&tok_text, &ids2, &n2, keep, ev, n_ev, n_ev), keep);
    free(ids2);

    /* an edited answer ("xaBy"): kept only up to the last boundary both share ("x") */
    ids_of("[INST] hi [/INST] xaB\xef\xbf\xbdy</s>[INST] more [/INST]", pr, &n_pr);
    ids2 = malloc(n_pr * sizeof(*ids2));
    memcpy(ids2, pr, n_pr * sizeof(*ids2));
    n2 = n_pr;
    assert_int_equal(mx_chat_keep_evaluated(&tok_text, &ids2, &n2, keep, ev, n_ev, SIZE_MAX),
                     keep + 1);
    assert_int_equal(ids2[keep], 256 + 'x');
    assert_int_equal(ids2[keep + 1], 256 + 'a'); /* the prompt's own ids from there on */
    free(ids2);
    /* two spaces where the model wrote none: only one is the template's, nothing is kept */
    ids_of("[INST] hi [/INST]  xab\xef\xbf\xbdy</s>", pr, &n_pr);
    ids2 = malloc(n_pr * sizeof(*ids2));
    memcpy(ids2, pr, n_pr * sizeof(*ids2));
    n2 = n_pr;
    assert_int_equal(mx_chat_keep_evaluated(&tok_text, &ids2, &n2, keep, ev, n_ev, SIZE_MAX),
                     keep);
    free(ids2);
    free(ids);
}

/* Three turns through mx_chat_prepare: each turn reuses the whole cache (prompts and the
 * model's answers, as it wrote them) and evaluates only the new user turn. */
static void test_prepare_keeps_answer_ids(void **state) {
    (void)state;
    int32_t cache[512];
    size_t n_cache = 0;
    struct mx_chat_msg msgs[8];
    const char *users[] = {"one", "two", "three"};
    /* the model writes merged and U+FFFD ids the byte tokenizer never makes */
    int32_t answer[] = {600, 256 + 'c', 601, 600};
    for (int t = 0; t < 3; t++) {
        msgs[2 * t] = (struct mx_chat_msg){.role = MX_ROLE_USER, .content = users[t]};
        struct mx_chat_turn plan;
        struct mx_err err = {0};
        assert_int_equal(mx_chat_prepare(MX_TMPL_MISTRAL_V1, msgs, (size_t)(2 * t + 1), NULL,
                                         NULL, &tok_text, cache, n_cache, 512, 16, &plan, &err),
                         0);
        assert_int_equal(plan.cache.n_keep, n_cache); /* all of it */
        assert_memory_equal(plan.tokens, cache, n_cache * sizeof(*cache));
        /* what is new: this user turn and its markers, no earlier answer */
        size_t n_new = plan.n_tokens - plan.cache.n_keep;
        assert_true(n_new <= 2 + ntok(" [INST] ") + ntok(users[t]) + ntok(" [/INST]"));
        memcpy(cache, plan.tokens, plan.n_tokens * sizeof(*cache));
        n_cache = plan.n_tokens;
        memcpy(cache + n_cache, answer, sizeof answer);
        n_cache += 4;
        msgs[2 * t + 1] = (struct mx_chat_msg){.role = MX_ROLE_ASSISTANT,
                                               .content = "abc\xef\xbf\xbd" "ab"};
        mx_chat_turn_free(&plan);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_common_prefix),
        cmocka_unit_test(test_incremental_turns),
        cmocka_unit_test(test_v3_moving_system_prompt),
        cmocka_unit_test(test_prefill_errors),
        cmocka_unit_test(test_fit_context),
        cmocka_unit_test(test_overflow_then_shift),
        cmocka_unit_test(test_shift_edges),
        cmocka_unit_test(test_shift_pathological),
        cmocka_unit_test(test_prepare),
        cmocka_unit_test(test_prepare_leaves_out_unanswered),
        cmocka_unit_test(test_keep_evaluated),
        cmocka_unit_test(test_prepare_keeps_answer_ids),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
