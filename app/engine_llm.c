/* engine_llm.c - the chat engine on a real model (see engine_llm.h).
 *
 * A reply is one pass through: render the conversation with the model's chat template and plan
 * the KV cache against the ids it already holds (core/chat: mx_chat_prepare, which also drops the
 * oldest exchanges when the conversation no longer fits) -> edit the cache as planned (remove
 * what changed, shift what moved) -> prefill only the new tokens, in chunks, with progress and
 * cancel checks between chunks -> the generate loop every front end shares (app/llm.c:
 * sampling, stop strings with hold-back, statistics), its text posted as job events. app/llm.c
 * keeps the ids whose K/V the cache holds in position order; every cache edit updates them, so
 * the next turn reuses everything the conversation still shares (also after a cancel: the
 * partial answer stays in the cache).
 *
 * Tuned for long chats (days, up to 64K tokens): the cost of a turn is the new tokens, not the
 * history; resuming a session loads a KV snapshot instead of re-prefilling it.
 */
#include "app/engine_llm.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/chat.h"
#include "core/text/chat_vocab.h"
#include "core/text/harmony.h"
#include "core/format/gguf.h"
#include "core/llm/llama.h"
#include "core/text/template.h"
#include "core/text/tokenizer.h"
#include "core/base/util.h"
#include "app/llm.h"

#define PREFILL_CHUNK 256   /* tokens per prefill step: progress and cancel granularity */

struct llm {
    struct mx_engine base;
    struct mx_llm *L;               /* owned: model, context, the cache's mirror */
    struct mx_chat_tokenizer ctok;  /* adapter over the model's tokenizer */
    struct mx_chat_vocab vocab;     /* BOS/EOS strings for the renderer */
    struct mx_tmpl_choice tmpl;     /* chosen template and its warning */
    const char *const *stops;       /* stop strings: the template's (static) or the caller's */
    struct mx_engine_llm_stats st;  /* the last reply's numbers */
    mx_engine_llm_token_fn on_token; /* called per generated token (tests), or NULL */
    void *on_token_ud;
    bool tools_warned;              /* said once that the template cannot describe tools */
};

static struct llm *as_llm(const struct mx_engine *e);

/* ---- loading -------------------------------------------------------------------------------- */

static void llm_free(struct mx_engine *e) {
    struct llm *E = (struct llm *)e;
    if (!E)
        return;
    mx_llm_close(E->L);
    free(E);
}

static void llm_reply(struct mx_engine *e, struct mx_job *job, const struct mx_turn *turns,
                      int n, const struct mx_gen_settings *s);

struct mx_engine *mx_engine_llm_new(const char *model_path, const struct mx_gen_settings *s,
                                    const char *template_override, struct mx_err *err) {
    int rc;
    struct llm *E = calloc(1, sizeof *E);
    if (!E) {
        mx_err_set(err, MX_ENOMEM, "engine: out of memory");
        return NULL;
    }
    E->base.reply = llm_reply;
    E->base.free = llm_free;
    if ((rc = mx_llm_open(&E->L, model_path, s, err)) < 0)
        goto fail;
    snprintf(E->base.device, sizeof E->base.device, "%s", mx_llm_device(E->L));
    snprintf(E->base.name, sizeof E->base.name, "%s", mx_llm_name(E->L));
    const struct mx_gguf *g = mx_llama_model_gguf(mx_llm_model(E->L));
    rc = mx_chat_choose_template(g, template_override && template_override[0] ?
                                 template_override : NULL, &E->tmpl, err);
    if (rc < 0)
        goto fail;
    struct mx_tokenizer *tok = mx_llm_tokenizer(E->L);
    if ((rc = mx_chat_vocab_init(&E->vocab, tok, err)) < 0)
        goto fail;
    E->ctok = mx_chat_tokenizer_from(tok);
    E->stops = mx_tmpl_stop_strings(E->tmpl.kind);
    size_t n_ctx = mx_llm_n_ctx(E->L);
    E->base.n_ctx = n_ctx > INT32_MAX ? INT32_MAX : (int)n_ctx;
    return &E->base;
fail:
    if (err && !err->code)
        mx_err_set(err, MX_EIO, "%s: cannot load", model_path ? model_path : "(null)");
    llm_free(&E->base);
    return NULL;
}

struct mx_engine *mx_engine_llm_loader(const char *model_path, const struct mx_gen_settings *s,
                                       struct mx_err *err) {
    return mx_engine_llm_new(model_path, s, NULL, err);
}

static struct llm *as_llm(const struct mx_engine *e) {
    return e && e->reply == llm_reply ? (struct llm *)e : NULL;
}

struct mx_llm *mx_engine_llm_handle(struct mx_engine *e) {
    struct llm *E = as_llm(e);
    return E ? E->L : NULL;
}

const char *mx_engine_llm_warning(const struct mx_engine *e) {
    struct llm *E = as_llm(e);
    return E ? E->tmpl.warning : NULL;
}

const char *mx_engine_llm_template(const struct mx_engine *e) {
    struct llm *E = as_llm(e);
    return E ? mx_tmpl_name(E->tmpl.kind) : NULL;
}

int mx_engine_llm_stats(const struct mx_engine *e, struct mx_engine_llm_stats *out) {
    struct llm *E = as_llm(e);
    if (!E)
        return MX_EINVAL;
    *out = E->st;
    mx_llm_cached(E->L, &out->n_cached);
    return 0;
}

const int32_t *mx_engine_llm_tokens(const struct mx_engine *e, size_t *n) {
    struct llm *E = as_llm(e);
    return mx_llm_cached(E ? E->L : NULL, n);
}

void mx_engine_llm_on_token(struct mx_engine *e, mx_engine_llm_token_fn fn, void *ud) {
    struct llm *E = as_llm(e);
    if (E) {
        E->on_token = fn;
        E->on_token_ud = ud;
    }
}

void mx_engine_llm_set_stops(struct mx_engine *e, const char *const *stops) {
    struct llm *E = as_llm(e);
    if (E)
        E->stops = stops ? stops : mx_tmpl_stop_strings(E->tmpl.kind);
}

int mx_engine_llm_detokenize(const struct mx_engine *e, const int32_t *ids, size_t n,
                             char **text, size_t *len, struct mx_err *err) {
    struct llm *E = as_llm(e);
    if (!E)
        return mx_err_set(err, MX_EINVAL, "engine: not an LLM engine");
    return mx_tokenizer_decode(mx_llm_tokenizer(E->L), ids, n, MX_DETOK_SPECIAL, text, len, err);
}

void mx_engine_llm_clear(struct mx_engine *e) {
    struct llm *E = as_llm(e);
    if (E)
        mx_llm_clear(E->L);
}

int mx_engine_llm_eval(struct mx_engine *e, const int32_t *ids, size_t n, float *logits,
                       int32_t *n_vocab, struct mx_err *err) {
    struct llm *E = as_llm(e);
    if (!E || !ids || n == 0)
        return mx_err_set(err, MX_EINVAL, "engine eval: no tokens");
    int rc = mx_llm_feed(E->L, ids, n, err);
    if (rc < 0)
        return rc;
    int32_t nv = mx_llm_n_vocab(E->L);
    if (logits)
        memcpy(logits, mx_llama_logits(mx_llm_ctx(E->L)), (size_t)nv * sizeof *logits);
    if (n_vocab)
        *n_vocab = nv;
    return 0;
}

/* ---- a reply -------------------------------------------------------------------------------- */

/* The generate loop's callbacks, posting to the job (the worker's event queue). */
struct reply_io {
    struct llm *E;
    struct mx_job *job;
    struct mx_harmony_stream *harmony; /* harmony template: the answer's channel splitter */
};

/* A harmony channel's text: the final channel is the answer, the others reasoning. */
static int io_harmony(void *ud, enum mx_harmony_part part, const char *s, size_t n) {
    struct reply_io *r = ud;
    return part == MX_HARMONY_FINAL ? mx_job_post_text(r->job, s, n)
                                    : mx_job_post_reasoning(r->job, s, n);
}

/* The answer's text as events (NUL bytes left out: mx_job_post_text). */
static int io_text(void *ud, const char *s, size_t n) {
    struct reply_io *r = ud;
    if (r->harmony) /* gpt-oss: the channels apart, only the final one is the answer */
        return mx_harmony_stream_push(r->harmony, s, n, io_harmony, r);
    return mx_job_post_text(r->job, s, n);
}

static bool io_canceled(void *ud) {
    return mx_job_canceled(((struct reply_io *)ud)->job);
}

static void io_progress(void *ud, size_t done, size_t total) {
    mx_job_post(((struct reply_io *)ud)->job, MX_EV_PROGRESS, "prompt", (double)done,
                (double)total);
}

static void io_stats(void *ud, double tok_s, size_t n_cached) {
    mx_job_post(((struct reply_io *)ud)->job, MX_EV_STATS, NULL, tok_s, (double)n_cached);
}

static void io_token(void *ud, int32_t id, size_t n) {
    struct llm *E = ((struct reply_io *)ud)->E;
    if (E->on_token)
        E->on_token(E->on_token_ud, id, n);
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
    struct llm *E = (struct llm *)e;
    struct mx_err err = {0};
    struct mx_chat_msg *msgs = NULL;
    struct mx_chat_turn plan = {0};
    struct mx_gen_stats gs = {0};
    struct mx_gen_settings def;
    int rc = 0;
    const size_t n_ctx = mx_llm_n_ctx(E->L);
    size_t n_cached = 0;
    const int32_t *cached = mx_llm_cached(E->L, &n_cached);

    if (!s) {
        mx_gen_settings_default(&def);
        s = &def;
    }
    memset(&E->st, 0, sizeof E->st);
    if (n <= 0 || !turns) {
        rc = mx_err_set(&err, MX_EINVAL, "engine: empty conversation");
        goto out;
    }
    msgs = calloc((size_t)n, sizeof *msgs);
    if (!msgs) {
        rc = mx_err_set(&err, MX_ENOMEM, "engine: out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) /* the template sees the whole turn, tool calls included */
        msgs[i] = (struct mx_chat_msg){
            .role = turns[i].role,
            .content = turns[i].text || turns[i].n_tool_calls ? turns[i].text : "",
            .tool_calls = turns[i].tool_calls,
            .n_tool_calls = turns[i].n_tool_calls,
            .tool_call_id = turns[i].tool_call_id,
        };

    /* 1. render + tokenize + fit + plan against what the cache holds */
    struct mx_tmpl_opts opts = {.add_generation_prompt = true, .tools = s->tools,
                                .n_tools = s->tools ? s->n_tools : 0};
    mx_chat_vocab_apply(&E->vocab, &opts);
    rc = mx_chat_prepare(E->tmpl.kind, msgs, (size_t)n, NULL, &opts, &E->ctok, cached, n_cached,
                         n_ctx, answer_reserve(n_ctx, s), &plan, &err);
    if ((rc == MX_EUNSUP || rc == MX_EFULL) && opts.n_tools) {
        /* a template family that cannot describe tools, or a context too small for their
         * descriptions: the chat goes on without them */
        mx_chat_turn_free(&plan);
        memset(&err, 0, sizeof err);
        opts.tools = NULL;
        opts.n_tools = 0;
        if (!E->tools_warned)
            mx_job_post(job, MX_EV_NOTICE, rc == MX_EUNSUP
                        ? "tools: this model's chat template cannot describe tools; it answers "
                          "without them"
                        : "tools: the context is too small to describe the tools as well; the "
                          "model answers without them (/ctx N sets a larger context)", 0, 0);
        E->tools_warned = true;
        rc = mx_chat_prepare(E->tmpl.kind, msgs, (size_t)n, NULL, &opts, &E->ctok, cached,
                             n_cached, n_ctx, answer_reserve(n_ctx, s), &plan, &err);
    }
    if (rc < 0)
        goto out;
    E->st.n_prompt = plan.n_tokens;
    E->st.n_dropped = plan.drop_count;
    if (plan.drop_count > 0)
        mx_job_post(job, MX_EV_NOTICE, plan.note, 0, 0);

    /* 2. cache edits, then 3. prefill only the new part, then 4. the generate loop */
    const struct mx_chat_shift *sh = &plan.cache;
    if (sh->n_prefill_from != sh->n_keep + sh->n_move)
        mx_llm_clear(E->L); /* a plan we do not understand: start over rather than guess */
    else if ((rc = mx_llm_cache_plan(E->L, plan.tokens, sh->n_keep, sh->src, sh->n_move,
                                     &err)) < 0)
        goto out;
    mx_llm_cached(E->L, &E->st.n_reused);
    /* harmony answers come with their channel tags (special tokens as text) to be split */
    struct mx_harmony_stream hs;
    bool harmony = E->tmpl.kind == MX_TMPL_HARMONY;
    mx_harmony_stream_init(&hs);
    struct reply_io rio = {E, job, harmony ? &hs : NULL};
    struct mx_gen_io io = {
        .text = io_text, .canceled = io_canceled, .progress = io_progress, .stats = io_stats,
        .token = io_token, .ud = &rio, .stops = E->stops,
        .detok_flags = MX_DETOK_LSTRIP | (harmony ? MX_DETOK_SPECIAL : 0u),
        .prefill_chunk = PREFILL_CHUNK,
    };
    rc = mx_llm_prefill(E->L, plan.tokens + E->st.n_reused, plan.n_tokens - E->st.n_reused, &io,
                        &gs, &err);
    E->st.n_prefilled = gs.n_prefilled;
    E->st.prefill_s = gs.prefill_s;
    if (rc < 0)
        goto out;
    rc = mx_llm_generate(E->L, s, plan.tokens, plan.n_tokens, &io, &gs, &err);
    if (harmony) {
        int frc = mx_harmony_stream_flush(&hs, io_harmony, &rio);
        rc = rc < 0 ? rc : frc;
    }
    E->st.n_generated = gs.n_generated;
    E->st.gen_s = gs.gen_s;
    if (rc == 0 && gs.end == MX_GEN_CANCELED)
        rc = MX_ECANCELED;
    if (rc == 0 && gs.end == MX_GEN_FULL)
        mx_job_post(job, MX_EV_NOTICE, "the context is full: the answer was cut short", 1, 0);

out:
    if (rc != MX_ECANCELED || E->st.n_generated > 0 || E->st.n_prefilled > 0) {
        double tps = E->st.gen_s > 0 ? (double)E->st.n_generated / E->st.gen_s : 0;
        mx_llm_cached(E->L, &n_cached);
        mx_job_post(job, MX_EV_STATS, NULL, tps, (double)n_cached);
    }
    mx_chat_turn_free(&plan);
    free(msgs);
    mx_job_done(job, rc, rc < 0 && rc != MX_ECANCELED ? mx_err_msg(&err, rc) : NULL);
}

/* ---- snapshots ------------------------------------------------------------------------------ */

int mx_engine_llm_save(struct mx_engine *e, const char *path, struct mx_err *err) {
    struct llm *E = as_llm(e);
    if (!E || !path)
        return mx_err_set(err, MX_EINVAL, "snapshot: not an LLM engine");
    return mx_llm_save(E->L, path, err);
}

int mx_engine_llm_load(struct mx_engine *e, const char *path, struct mx_err *err) {
    struct llm *E = as_llm(e);
    if (!E || !path)
        return mx_err_set(err, MX_EINVAL, "snapshot: not an LLM engine");
    return mx_llm_load(E->L, path, err);
}
