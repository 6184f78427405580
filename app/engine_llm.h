/* engine_llm.h - the real chat engine behind the TUI: a GGUF model (core/llama) with its
 * tokenizer, chat template and sampler, answering multi-turn conversations incrementally (the
 * KV cache keeps the conversation; a new turn prefills only the tokens it does not hold), and
 * KV-cache snapshots for instant resume (history/kvsnap).
 *
 * Threading: reply() runs on the worker thread; every other function here is for the UI thread
 * while no reply job is running (the engine is used by one thread at a time).
 */
#ifndef MX_ENGINE_LLM_H
#define MX_ENGINE_LLM_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "app/engine.h"

/* Opens model_path through the one open path (mx_llm_open: s->device, s->threads, s->n_ctx,
 * s->kv_type, ...; s NULL: defaults), then the chat template (template_override: a
 * --chat-template name, NULL/"" for the GGUF's own or the default). Fills name (general.name,
 * else the file's basename), device ("CPU", "CUDA") and n_ctx. Returns the engine (free with
 * e->free) or NULL with err set (the device's, model's, tokenizer's or template's error). */
struct mx_engine *mx_engine_llm_new(const char *model_path, const struct mx_gen_settings *s,
                                    const char *template_override, struct mx_err *err);

/* The same with the GGUF's own template: matches mx_engine_loader (tui/app.h). */
struct mx_engine *mx_engine_llm_loader(const char *model_path, const struct mx_gen_settings *s,
                                       struct mx_err *err);


/* The model and its cache behind the engine (borrowed, valid while e lives; NULL when e is not an
 * LLM engine), for a front end that also completes raw text on the same loaded model (`mixel
 * serve`'s /v1/completions) through app/llm.h. Only while no reply runs; the engine plans its next
 * reply against whatever the cache then holds. */
struct mx_llm *mx_engine_llm_handle(struct mx_engine *e);

/* The template warning for the user (non-empty when a default was used because the GGUF has no
 * or an unknown template), "" otherwise, or NULL when e is not an LLM engine. Valid while e
 * lives. */
const char *mx_engine_llm_warning(const struct mx_engine *e);

/* The chosen template's name ("mistral-v1", ...); NULL when e is not an LLM engine. */
const char *mx_engine_llm_template(const struct mx_engine *e);

/* What the last reply did (for the status line, tests and benchmarks). */
struct mx_engine_llm_stats {
    size_t n_prompt;      /* tokens of the last rendered prompt */
    size_t n_reused;      /* of them, already in the cache (kept + moved by a shift) */
    size_t n_prefilled;   /* prompt tokens the last reply evaluated */
    size_t n_generated;   /* tokens the last reply generated */
    size_t n_dropped;     /* messages left out to fit the context (0: none) */
    size_t n_cached;      /* tokens in the cache now */
    double prefill_s;     /* seconds spent prefilling */
    double gen_s;         /* seconds spent generating */
};

/* Copies the last reply's numbers into *out. Returns 0, or MX_EINVAL when e is not an LLM
 * engine. */
int mx_engine_llm_stats(const struct mx_engine *e, struct mx_engine_llm_stats *out);

/* The token ids the KV cache holds, in position order (*n of them); borrowed, valid until the
 * next call on e. NULL with *n = 0 when e is not an LLM engine or the cache is empty. */
const int32_t *mx_engine_llm_tokens(const struct mx_engine *e, size_t *n);

/* Feeds ids[0..n) after the cached tokens and copies the logits of the last one (n_vocab floats)
 * into logits (NULL: not copied); *n_vocab (NULL ok) gets the vocabulary size. For tests and
 * tools comparing a resumed cache with an uninterrupted one. Returns 0, MX_EINVAL, MX_EFULL or
 * a backend error (then the cache is emptied). */
int mx_engine_llm_eval(struct mx_engine *e, const int32_t *ids, size_t n, float *logits,
                       int32_t *n_vocab, struct mx_err *err);

/* Called on the worker thread after each generated token entered the cache (n: tokens generated
 * so far in this reply), before its text is posted. For tests (a deterministic cancel point) and
 * per-token instrumentation. */
typedef void (*mx_engine_llm_token_fn)(void *ud, int32_t id, size_t n);

/* Sets (fn NULL: removes) the per-token callback; ud is borrowed. */
void mx_engine_llm_on_token(struct mx_engine *e, mx_engine_llm_token_fn fn, void *ud);

/* Replaces the template's stop strings (NULL-terminated, borrowed: must outlive their use;
 * NULL: back to the template's). Each is matched in the streamed text; text that could still
 * become one is held back until resolved, and the stop string itself is never posted. */
void mx_engine_llm_set_stops(struct mx_engine *e, const char *const *stops);

/* Decodes ids with the model's tokenizer, special tokens as text (to show what a prompt held).
 * Returns 0 with *text (caller frees) and *len, or MX_EINVAL (not an LLM engine, an id out of
 * range) / MX_ENOMEM. */
int mx_engine_llm_detokenize(const struct mx_engine *e, const int32_t *ids, size_t n,
                             char **text, size_t *len, struct mx_err *err);

/* Empties the KV cache (the next reply prefills the whole conversation). */
void mx_engine_llm_clear(struct mx_engine *e);

/* Saves the KV cache for the current token sequence to path (history/kvsnap format: model
 * hash, n_ctx, kv type, token ids, then the cache; written to a temp file and renamed, 0600).
 * Returns 0, MX_EINVAL (not an LLM engine, or an empty cache: nothing worth saving), MX_EUNSUP
 * (this build's core/llama cannot serialise its cache), or the snapshot writer's error (the old
 * file at path is then untouched). */
int mx_engine_llm_save(struct mx_engine *e, const char *path, struct mx_err *err);

/* Replaces the KV cache with the snapshot at path if it was made with this model file (hash),
 * with this cache type and fits this context. The token prefix is checked at the next reply:
 * mx_chat_prepare reuses the snapshot's tokens as far as they equal the conversation's prompt
 * and re-prefills from the first difference on. Returns 0 (loaded), or an error with the reason
 * in err (MX_ENOENT no snapshot, MX_EINVAL another model, MX_EUNSUP another version, cache type
 * or a build without cache serialisation, MX_EFORMAT truncated/damaged, MX_ERANGE too long for
 * this context): then the cache is empty and the next reply re-prefills the whole
 * conversation (with progress events). */
int mx_engine_llm_load(struct mx_engine *e, const char *path, struct mx_err *err);

#endif
