/* engine_llm.c - the chat engine on a real model (see engine_llm.h).
 *
 * A reply is one pass through: render the conversation with the model's chat template and plan
 * the KV cache against the ids it already holds (core/chat: mx_chat_prepare, which also drops the
 * oldest exchanges when the conversation no longer fits) -> edit the cache as planned (remove
 * what changed, shift what moved) -> prefill only the new tokens, in chunks, with progress and
 * cancel checks between chunks -> sample token by token through the streaming detokenizer,
 * holding back text that could still become a stop string. The engine keeps `evaluated`, the
 * ids whose K/V the cache holds in position order; every cache edit updates it, so the next turn
 * reuses everything the conversation still shares (also after a cancel: the partial answer
 * stays in the cache).
 *
 * Tuned for long chats (days, up to 64K tokens): the cost of a turn is the new tokens, not the
 * history; resuming a session loads a KV snapshot instead of re-prefilling it.
 */
#include "app/engine_llm.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/chat.h"
#include "core/text/chat_vocab.h"
#include "core/format/gguf.h"
#include "core/llm/llama.h"
#include "core/base/quant.h"
#include "core/llm/sampler.h"
#include "core/text/template.h"
#include "core/text/tokenizer.h"
#include "core/base/util.h"
#include "history/kvsnap.h"
#include "kernels/backend.h"
#include "kernels/devices.h"

#define PREFILL_CHUNK 256   /* tokens per prefill step: progress and cancel granularity */
#define HOLD_MAX 256        /* longest stop string we hold text back for */

struct llm {
    struct mx_engine base;
    struct mx_backend *be;          /* owned */
    struct mx_llama_model *model;   /* owned */
    struct mx_llama_ctx *ctx;       /* owned */
    struct mx_tokenizer *tok;       /* owned */
    struct mx_chat_tokenizer ctok;  /* adapter over tok */
    struct mx_chat_vocab vocab;     /* BOS/EOS strings for the renderer */
    struct mx_tmpl_choice tmpl;     /* chosen template and its warning */
    const char *const *stops;       /* stop strings: the template's (static) or the caller's */
    char *model_path;               /* owned copy, for the model hash */
    uint64_t model_hash;            /* valid when have_hash */
    bool have_hash;
    int32_t n_vocab;
    enum mx_type kv_type;
    int32_t *evaluated;             /* [n_eval] ids the cache holds, position order */
    size_t n_eval, cap_eval;
    struct mx_engine_llm_stats st;  /* the last reply's numbers */
    mx_engine_llm_token_fn on_token; /* called per generated token (tests), or NULL */
    void *on_token_ud;
};

static struct llm *as_llm(const struct mx_engine *e);

/* ---- the evaluated-ids mirror of the cache ------------------------------------------------- */

/* Makes room for n ids in total. Returns 0 or MX_ENOMEM. */
static int eval_reserve(struct llm *L, size_t n) {
    if (n <= L->cap_eval)
        return 0;
    size_t cap = L->cap_eval ? L->cap_eval : 256, bytes;
    while (cap < n)
        cap *= 2;
    if (!mx_mul_size(cap, sizeof *L->evaluated, &bytes))
        return MX_ENOMEM;
    int32_t *p = realloc(L->evaluated, bytes);
    if (!p)
        return MX_ENOMEM;
    L->evaluated = p;
    L->cap_eval = cap;
    return 0;
}

/* Empties cache and mirror together (after an error that leaves the cache in doubt). */
static void cache_reset(struct llm *L) {
    mx_llama_kv_clear(L->ctx);
    L->n_eval = 0;
}

/* Decodes ids[0..n) after the cached ones and appends them to the mirror. The mirror has room
 * (the caller reserved it). On a decode error the cache is reset. Returns 0 or the error. */
static int feed(struct llm *L, const int32_t *ids, size_t n, struct mx_err *err) {
    int rc = mx_llama_decode(L->ctx, ids, (int64_t)n, false, NULL, NULL, err);
    if (rc < 0) {
        if (rc != MX_EFULL && rc != MX_EINVAL) /* those leave the cache as it was */
            cache_reset(L);
        return rc;
    }
    memcpy(L->evaluated + L->n_eval, ids, n * sizeof *ids);
    L->n_eval += n;
    return 0;
}

/* ---- loading -------------------------------------------------------------------------------- */

static void llm_free(struct mx_engine *e) {
    struct llm *L = (struct llm *)e;
    if (!L)
        return;
    mx_llama_ctx_free(L->ctx);
    mx_llama_model_free(L->model);
    mx_backend_free(L->be);
    mx_tokenizer_free(L->tok);
    free(L->model_path);
    free(L->evaluated);
    free(L);
}

static void llm_reply(struct mx_engine *e, struct mx_job *job, const struct mx_turn *turns,
                      int n, const struct mx_gen_settings *s);

/* general.name when it is printable text, else the file's basename, into L->base.name. */
static void set_name(struct llm *L, const char *path) {
    const char *name = NULL;
    struct mx_err ignore = {0};
    if (mx_gguf_get_str(mx_llama_model_gguf(L->model), "general.name", &name, &ignore) < 0 ||
        !name || !name[0]) {
        const char *slash = strrchr(path, '/');
        name = slash ? slash + 1 : path;
    }
    size_t k = 0;
    /* model metadata is untrusted: keep printable ASCII and whole UTF-8 bytes, drop controls */
    for (const unsigned char *p = (const unsigned char *)name;
         *p && k + 1 < sizeof L->base.name; p++)
        if (*p >= 0x20 && *p != 0x7f)
            L->base.name[k++] = (char)*p;
    /* never end in the middle of a UTF-8 sequence */
    size_t cut = k;
    while (cut > 0 && ((unsigned char)L->base.name[cut - 1] & 0xc0) == 0x80)
        cut--;
    if (cut > 0 && ((unsigned char)L->base.name[cut - 1] & 0x80)) {
        unsigned char lead = (unsigned char)L->base.name[cut - 1];
        size_t need = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
        if (k - (cut - 1) < need)
            k = cut - 1;
    }
    L->base.name[k] = '\0';
}

struct mx_engine *mx_engine_llm_new(const char *model_path, const struct mx_gen_settings *s,
                                    const char *template_override, struct mx_err *err) {
    int rc;
    struct llm *L = calloc(1, sizeof *L);
    if (!L) {
        mx_err_set(err, MX_ENOMEM, "engine: out of memory");
        return NULL;
    }
    L->base.reply = llm_reply;
    L->base.free = llm_free;
    L->kv_type = MX_TYPE_F16;
    L->model_path = strdup(model_path ? model_path : "");
    if (!L->model_path || !model_path) {
        mx_err_set(err, model_path ? MX_ENOMEM : MX_EINVAL, "engine: no model path");
        goto fail;
    }
    L->be = mx_device_open(NULL, 0, err); /* the best device; 0: physical cores on the CPU */
    if (!L->be)
        goto fail;
    /* shown as "CPU" / "CUDA" in the status line */
    snprintf(L->base.device, sizeof L->base.device, "%s", mx_backend_name(L->be));
    for (char *c = L->base.device; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    rc = mx_llama_model_load(model_path, L->be, &L->model, err);
    if (rc < 0)
        goto fail;
    const struct mx_gguf *g = mx_llama_model_gguf(L->model);
    rc = mx_tokenizer_from_gguf(g, &L->tok, err);
    if (rc < 0)
        goto fail;
    L->n_vocab = mx_tokenizer_n_vocab(L->tok);
    if (L->n_vocab != mx_llama_model_hparams(L->model)->n_vocab) {
        mx_err_set(err, MX_EFORMAT, "%s: tokenizer has %d tokens, the model %d", model_path,
                   (int)L->n_vocab, (int)mx_llama_model_hparams(L->model)->n_vocab);
        goto fail;
    }
    rc = mx_chat_choose_template(g, template_override && template_override[0] ?
                                 template_override : NULL, &L->tmpl, err);
    if (rc < 0)
        goto fail;
    rc = mx_chat_vocab_init(&L->vocab, L->tok, err);
    if (rc < 0)
        goto fail;
    L->ctok = mx_chat_tokenizer_from(L->tok);
    L->stops = mx_tmpl_stop_strings(L->tmpl.kind);
    struct mx_llama_ctx_params cp;
    mx_llama_ctx_params_default(&cp);
    cp.n_ctx = s && s->n_ctx > 0 ? s->n_ctx : 0;
    cp.kv_type = L->kv_type;
    rc = mx_llama_ctx_new(L->model, &cp, &L->ctx, err);
    if (rc < 0)
        goto fail;
    int64_t n_ctx = mx_llama_ctx_n_ctx(L->ctx);
    L->base.n_ctx = n_ctx > INT32_MAX ? INT32_MAX : (int)n_ctx;
    set_name(L, model_path);
    /* the hash only gates snapshots: a failure here must not stop the chat */
    struct mx_err herr = {0};
    L->have_hash = mx_kvsnap_model_hash(model_path, &L->model_hash, &herr) == 0;
    return &L->base;
fail:
    if (err && !err->code)
        mx_err_set(err, MX_EIO, "%s: cannot load", model_path ? model_path : "(null)");
    llm_free(&L->base);
    return NULL;
}

struct mx_engine *mx_engine_llm_loader(const char *model_path, const struct mx_gen_settings *s,
                                       struct mx_err *err) {
    return mx_engine_llm_new(model_path, s, NULL, err);
}

static struct llm *as_llm(const struct mx_engine *e) {
    return e && e->reply == llm_reply ? (struct llm *)e : NULL;
}

const char *mx_engine_llm_warning(const struct mx_engine *e) {
    struct llm *L = as_llm(e);
    return L ? L->tmpl.warning : NULL;
}

const char *mx_engine_llm_template(const struct mx_engine *e) {
    struct llm *L = as_llm(e);
    return L ? mx_tmpl_name(L->tmpl.kind) : NULL;
}

int mx_engine_llm_stats(const struct mx_engine *e, struct mx_engine_llm_stats *out) {
    struct llm *L = as_llm(e);
    if (!L)
        return MX_EINVAL;
    *out = L->st;
    out->n_cached = L->n_eval;
    return 0;
}

const int32_t *mx_engine_llm_tokens(const struct mx_engine *e, size_t *n) {
    struct llm *L = as_llm(e);
    *n = L ? L->n_eval : 0;
    return L && L->n_eval ? L->evaluated : NULL;
}

void mx_engine_llm_on_token(struct mx_engine *e, mx_engine_llm_token_fn fn, void *ud) {
    struct llm *L = as_llm(e);
    if (L) {
        L->on_token = fn;
        L->on_token_ud = ud;
    }
}

void mx_engine_llm_set_stops(struct mx_engine *e, const char *const *stops) {
    struct llm *L = as_llm(e);
    if (L)
        L->stops = stops ? stops : mx_tmpl_stop_strings(L->tmpl.kind);
}

int mx_engine_llm_detokenize(const struct mx_engine *e, const int32_t *ids, size_t n,
                             char **text, size_t *len, struct mx_err *err) {
    struct llm *L = as_llm(e);
    if (!L)
        return mx_err_set(err, MX_EINVAL, "engine: not an LLM engine");
    return mx_tokenizer_decode(L->tok, ids, n, MX_DETOK_SPECIAL, text, len, err);
}

void mx_engine_llm_clear(struct mx_engine *e) {
    struct llm *L = as_llm(e);
    if (L)
        cache_reset(L);
}

int mx_engine_llm_eval(struct mx_engine *e, const int32_t *ids, size_t n, float *logits,
                       int32_t *n_vocab, struct mx_err *err) {
    struct llm *L = as_llm(e);
    if (!L || !ids || n == 0)
        return mx_err_set(err, MX_EINVAL, "engine eval: no tokens");
    if (eval_reserve(L, L->n_eval + n) < 0)
        return mx_err_set(err, MX_ENOMEM, "engine eval: out of memory");
    int rc = feed(L, ids, n, err);
    if (rc < 0)
        return rc;
    if (logits)
        memcpy(logits, mx_llama_logits(L->ctx), (size_t)L->n_vocab * sizeof *logits);
    if (n_vocab)
        *n_vocab = L->n_vocab;
    return 0;
}

/* ---- a reply -------------------------------------------------------------------------------- */

/* Brings the cache from `evaluated` to the plan: positions [0, n_keep) stay, old [src, src +
 * n_move) move down to n_keep, everything else goes. Returns 0 or a backend error (then the
 * cache is reset, and the whole prompt will be prefilled). */
static int apply_plan(struct llm *L, const struct mx_chat_turn *t, struct mx_err *err) {
    const struct mx_chat_shift *sh = &t->cache;
    int rc = 0;
    if (sh->src + sh->n_move > L->n_eval || sh->n_keep > sh->src ||
        sh->n_prefill_from != sh->n_keep + sh->n_move) {
        cache_reset(L); /* a plan we do not understand: start over rather than guess */
        return 0;
    }
    if (sh->src + sh->n_move < L->n_eval)
        rc = mx_llama_kv_remove(L->ctx, (int64_t)(sh->src + sh->n_move), -1, err);
    if (rc == 0 && sh->src > sh->n_keep)
        rc = mx_llama_kv_discard(L->ctx, (int64_t)sh->n_keep, (int64_t)(sh->src - sh->n_keep),
                                 err);
    if (rc < 0) {
        cache_reset(L);
        return rc;
    }
    /* the mirror now equals the new prompt's first n_keep + n_move ids (that is the plan) */
    memcpy(L->evaluated, t->tokens, sh->n_prefill_from * sizeof *t->tokens);
    L->n_eval = sh->n_prefill_from;
    return 0;
}

/* Prefills tokens[from..n) in chunks, posting progress, polling cancel. Returns 0,
 * MX_ECANCELED (the chunks done stay in the cache) or a decode error. */
static int prefill(struct llm *L, struct mx_job *job, const int32_t *tokens, size_t from,
                   size_t n, struct mx_err *err) {
    size_t total = n - from;
    for (size_t i = from; i < n;) {
        if (mx_job_canceled(job))
            return MX_ECANCELED;
        size_t k = MX_MIN(n - i, (size_t)PREFILL_CHUNK);
        int rc = feed(L, tokens + i, k, err);
        if (rc < 0)
            return rc;
        i += k;
        L->st.n_prefilled += k;
        if (total > PREFILL_CHUNK)
            mx_job_post(job, MX_EV_PROGRESS, "prompt", (double)(i - from), (double)total);
    }
    return 0;
}

/* Text generated but not yet posted: the tail that may still turn into a stop string. */
struct holdback {
    char *buf;
    size_t len, cap;
};

/* Appends s[0..n) without NUL bytes (a <0x00> byte token): events carry C strings, and a NUL
 * would hide the text after it from the stop-string search. */
static int hold_append(struct holdback *h, const char *s, size_t n) {
    if (h->len + n + 1 > h->cap) {
        size_t cap = h->cap ? h->cap : 256;
        while (cap < h->len + n + 1)
            cap *= 2;
        char *p = realloc(h->buf, cap);
        if (!p)
            return MX_ENOMEM;
        h->buf = p;
        h->cap = cap;
    }
    for (size_t i = 0; i < n; i++)
        if (s[i] != '\0')
            h->buf[h->len++] = s[i];
    h->buf[h->len] = '\0';
    return 0;
}

/* Posts h->buf[0..n) as text and keeps the rest. n falls on a UTF-8 boundary: the buffer holds
 * whole characters and the kept tail starts where a stop string (valid UTF-8) starts. */
static void hold_post(struct mx_job *job, struct holdback *h, size_t n) {
    if (n == 0)
        return;
    char save = h->buf[n];
    h->buf[n] = '\0';
    mx_job_post(job, MX_EV_TEXT, h->buf, 0, 0);
    h->buf[n] = save;
    memmove(h->buf, h->buf + n, h->len - n + 1);
    h->len -= n;
}

/* Looks for the template's stop strings in h. Returns true when one is complete (text before
 * it is posted, the rest dropped); otherwise posts what can no longer start a stop string. */
static bool hold_scan(struct mx_job *job, struct holdback *h, const char *const *stops) {
    size_t keep = 0;
    for (const char *const *s = stops; s && *s; s++) {
        size_t sl = strlen(*s);
        if (sl == 0 || sl > HOLD_MAX)
            continue;
        const char *hit = h->len >= sl ? strstr(h->buf, *s) : NULL;
        if (hit) {
            hold_post(job, h, (size_t)(hit - h->buf));
            h->len = 0;
            return true;
        }
        /* longest suffix of the text that is a proper prefix of this stop string */
        for (size_t k = MX_MIN(sl - 1, h->len); k > keep; k--)
            if (!memcmp(h->buf + h->len - k, *s, k)) {
                keep = k;
                break;
            }
    }
    hold_post(job, h, h->len - keep);
    return false;
}

/* Builds the sampler chain from the session's settings (NULL: llama.cpp's defaults). */
static int make_sampler(const struct llm *L, const struct mx_gen_settings *s,
                        struct mx_sampler **out, struct mx_err *err) {
    struct mx_sampler_params p;
    mx_sampler_params_default(&p);
    if (s) {
        p.temp = s->temp;
        p.top_k = s->top_k;
        p.top_p = s->top_p > 0 ? s->top_p : 1.0f;
        p.min_p = s->min_p;
        p.repeat_penalty = s->repeat_penalty > 0 ? s->repeat_penalty : 1.0f;
        p.seed = s->seed;
    }
    return mx_sampler_new_params(L->n_vocab, &p, out, err);
}

/* Tokens kept free for the answer when the conversation is fitted into the context. */
static size_t answer_reserve(size_t n_ctx, const struct mx_gen_settings *s) {
    size_t r = MX_MIN(n_ctx / 4, (size_t)1024);
    if (s && s->n_predict > 0)
        r = MX_MIN(r, (size_t)s->n_predict);
    return MX_MAX(r, (size_t)1);
}

static void llm_reply(struct mx_engine *e, struct mx_job *job, const struct mx_turn *turns,
                      int n, const struct mx_gen_settings *s) {
    struct llm *L = (struct llm *)e;
    struct mx_err err = {0};
    struct mx_chat_msg *msgs = NULL;
    struct mx_chat_turn plan = {0};
    struct mx_sampler *smp = NULL;
    struct mx_detok_stream ds;
    struct holdback hold = {0};
    int rc = 0;
    const size_t n_ctx = (size_t)mx_llama_ctx_n_ctx(L->ctx);

    mx_detok_stream_init(&ds, L->tok, MX_DETOK_LSTRIP);
    memset(&L->st, 0, sizeof L->st);
    if (n <= 0 || !turns) {
        rc = mx_err_set(&err, MX_EINVAL, "engine: empty conversation");
        goto out;
    }
    msgs = calloc((size_t)n, sizeof *msgs);
    if (!msgs) {
        rc = mx_err_set(&err, MX_ENOMEM, "engine: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        msgs[i].role = turns[i].role;
        msgs[i].content = turns[i].text ? turns[i].text : "";
    }

    /* 1. render + tokenize + fit + plan against what the cache holds */
    struct mx_tmpl_opts opts = {.add_generation_prompt = true};
    mx_chat_vocab_apply(&L->vocab, &opts);
    rc = mx_chat_prepare(L->tmpl.kind, msgs, (size_t)n, NULL, &opts, &L->ctok, L->evaluated,
                         L->n_eval, n_ctx, answer_reserve(n_ctx, s), &plan, &err);
    if (rc < 0)
        goto out;
    L->st.n_prompt = plan.n_tokens;
    L->st.n_dropped = plan.drop_count;
    if (plan.drop_count > 0)
        mx_job_post(job, MX_EV_NOTICE, plan.note, 0, 0);
    rc = eval_reserve(L, MX_MAX(plan.n_tokens, n_ctx));
    if (rc < 0) {
        mx_err_set(&err, rc, "engine: out of memory");
        goto out;
    }

    /* 2. cache edits, then 3. prefill only the new part */
    rc = apply_plan(L, &plan, &err);
    if (rc < 0)
        goto out;
    L->st.n_reused = L->n_eval;
    double t0 = mx_time_s();
    rc = prefill(L, job, plan.tokens, L->n_eval, plan.n_tokens, &err);
    L->st.prefill_s = mx_time_s() - t0;
    if (rc < 0)
        goto out;

    /* 4. generate */
    rc = make_sampler(L, s, &smp, &err);
    if (rc < 0)
        goto out;
    for (size_t i = 0; i < plan.n_tokens; i++)
        mx_sampler_accept(smp, plan.tokens[i]); /* the penalties' window sees the prompt */
    int n_predict = s ? s->n_predict : -1;
    double t1 = mx_time_s();
    for (;;) {
        if (mx_job_canceled(job)) {
            rc = MX_ECANCELED;
            break;
        }
        if (n_predict > 0 && L->st.n_generated >= (size_t)n_predict)
            break;
        if (L->n_eval >= n_ctx) {
            mx_job_post(job, MX_EV_NOTICE, "context full: the answer was cut", 0, 0);
            break;
        }
        int32_t id;
        rc = mx_sampler_sample(smp, mx_llama_logits(L->ctx), &id);
        if (rc < 0) {
            mx_err_set(&err, rc, "sampler: no candidate left (check the sampling settings)");
            break;
        }
        if (mx_tokenizer_is_eog(L->tok, id))
            break;
        mx_sampler_accept(smp, id);
        /* the token goes into the cache before its text is shown: what the user saw is what
         * the next turn finds cached */
        rc = feed(L, &id, 1, &err);
        if (rc < 0)
            break;
        L->st.n_generated++;
        if (L->on_token)
            L->on_token(L->on_token_ud, id, L->st.n_generated);
        const char *piece;
        size_t np;
        rc = mx_detok_stream_push(&ds, id, &piece, &np);
        if (rc == 0 && np)
            rc = hold_append(&hold, piece, np);
        if (rc < 0) {
            mx_err_set(&err, rc, "engine: detokenizer failed on token %d", (int)id);
            break;
        }
        if (hold_scan(job, &hold, L->stops))
            break;
        double dt = mx_time_s() - t1;
        if ((L->st.n_generated & 15) == 0 && dt > 0)
            mx_job_post(job, MX_EV_STATS, NULL, (double)L->st.n_generated / dt,
                        (double)L->n_eval);
    }
    L->st.gen_s = mx_time_s() - t1;
    /* the held tail was no stop string after all: it is part of the answer */
    const char *tail;
    size_t nt;
    if (mx_detok_stream_flush(&ds, &tail, &nt) == 0 && nt)
        hold_append(&hold, tail, nt);
    hold_post(job, &hold, hold.len);

out:
    if (rc != MX_ECANCELED || L->st.n_generated > 0 || L->st.n_prefilled > 0) {
        double tps = L->st.gen_s > 0 ? (double)L->st.n_generated / L->st.gen_s : 0;
        mx_job_post(job, MX_EV_STATS, NULL, tps, (double)L->n_eval);
    }
    free(hold.buf);
    mx_detok_stream_deinit(&ds);
    mx_sampler_free(smp);
    mx_chat_turn_free(&plan);
    free(msgs);
    mx_job_done(job, rc, rc < 0 && rc != MX_ECANCELED ? mx_err_msg(&err, rc) : NULL);
}

/* ---- snapshots ------------------------------------------------------------------------------ */

static int snap_write(void *ud, const void *data, size_t n, struct mx_err *err) {
    return mx_kvsnap_write(ud, data, n, err);
}

static int snap_read(void *ud, void *data, size_t n, struct mx_err *err) {
    return mx_kvsnap_read(ud, data, n, err);
}

int mx_engine_llm_save(struct mx_engine *e, const char *path, struct mx_err *err) {
    struct llm *L = as_llm(e);
    if (!L || !path)
        return mx_err_set(err, MX_EINVAL, "snapshot: not an LLM engine");
    if (!L->have_hash)
        return mx_err_set(err, MX_EIO, "snapshot: %s: cannot fingerprint the model file",
                          L->model_path);
    if (L->n_eval == 0 || (size_t)mx_llama_ctx_n_past(L->ctx) != L->n_eval)
        return mx_err_set(err, MX_EINVAL, "snapshot: nothing to save (cache holds %zu tokens)",
                          L->n_eval);
    struct mx_kvsnap_info info = {
        .model_hash = L->model_hash,
        .n_ctx = (uint32_t)mx_llama_ctx_n_ctx(L->ctx),
        .kv_type = (uint32_t)L->kv_type,
        .n_layer = (uint32_t)mx_llama_model_hparams(L->model)->n_layer,
        .n_tokens = L->n_eval,
        .payload_size = mx_llama_kv_state_size(L->ctx),
    };
    struct mx_kvsnap_writer *w = NULL;
    int rc = mx_kvsnap_write_begin(&w, path, &info, L->evaluated, err);
    if (rc < 0)
        return rc;
    rc = mx_llama_kv_state_save(L->ctx, snap_write, w, err);
    if (rc < 0) {
        mx_kvsnap_write_abort(w);
        return rc;
    }
    return mx_kvsnap_write_commit(w, err);
}

int mx_engine_llm_load(struct mx_engine *e, const char *path, struct mx_err *err) {
    struct llm *L = as_llm(e);
    if (!L || !path)
        return mx_err_set(err, MX_EINVAL, "snapshot: not an LLM engine");
    cache_reset(L); /* whatever happens, the old cache is not the session's */
    if (!L->have_hash)
        return mx_err_set(err, MX_EIO, "snapshot: %s: cannot fingerprint the model file",
                          L->model_path);
    struct mx_kvsnap_reader *r = NULL;
    struct mx_kvsnap_info info;
    int rc = mx_kvsnap_open(&r, path, L->model_hash, &info, err);
    if (rc < 0)
        return rc;
    size_t n_ctx = (size_t)mx_llama_ctx_n_ctx(L->ctx);
    if (info.kv_type != (uint32_t)L->kv_type ||
        info.n_layer != (uint32_t)mx_llama_model_hparams(L->model)->n_layer) {
        rc = mx_err_set(err, MX_EUNSUP, "snapshot %s: cache type %u / %u layers, engine has "
                        "%u / %u", path, info.kv_type, info.n_layer, (unsigned)L->kv_type,
                        (unsigned)mx_llama_model_hparams(L->model)->n_layer);
        goto fail;
    }
    if (info.n_tokens == 0 || info.n_tokens > n_ctx) {
        rc = mx_err_set(err, MX_ERANGE, "snapshot %s: %llu tokens, the context holds %zu", path,
                        (unsigned long long)info.n_tokens, n_ctx);
        goto fail;
    }
    rc = eval_reserve(L, MX_MAX((size_t)info.n_tokens, n_ctx));
    if (rc < 0) {
        mx_err_set(err, rc, "snapshot: out of memory");
        goto fail;
    }
    const int32_t *ids = mx_kvsnap_tokens(r);
    for (uint64_t i = 0; i < info.n_tokens; i++)
        if (ids[i] < 0 || ids[i] >= L->n_vocab) {
            rc = mx_err_set(err, MX_EFORMAT, "snapshot %s: token %llu id %d out of range",
                            path, (unsigned long long)i, (int)ids[i]);
            goto fail;
        }
    rc = mx_llama_kv_state_load(L->ctx, (size_t)info.payload_size, snap_read, r, err);
    if (rc == 0)
        rc = mx_kvsnap_read_end(r, err); /* the checksum: only now is the payload trusted */
    if (rc == 0 && (uint64_t)mx_llama_ctx_n_past(L->ctx) != info.n_tokens)
        rc = mx_err_set(err, MX_EFORMAT, "snapshot %s: cache holds %lld positions for %llu "
                        "tokens", path, (long long)mx_llama_ctx_n_past(L->ctx),
                        (unsigned long long)info.n_tokens);
    if (rc < 0)
        goto fail;
    memcpy(L->evaluated, ids, (size_t)info.n_tokens * sizeof *ids);
    L->n_eval = (size_t)info.n_tokens;
    mx_kvsnap_close(r);
    return 0;
fail:
    mx_kvsnap_close(r);
    cache_reset(L);
    return rc;
}
