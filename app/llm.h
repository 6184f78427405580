/* llm.h - the one LLM stack every front end shares: the settings (one struct: how to open a
 * model, how to sample, when to stop), opening a model on a device (backend + weights +
 * tokenizer + KV cache, with a mirror of the token ids the cache holds), prefill, and the
 * generate loop (sampling, end-of-generation, stop strings with hold-back, context shift,
 * cancel, statistics).
 *
 * Every front end opens models through mx_llm_open (run, run --session, the TUI's engine in
 * engine_llm.c, bench, logits), and run, run --session and the TUI generate through
 * mx_llm_generate, so --device, --stop, the hold-back, the statistics and the settings cannot
 * drift apart between them.
 *
 * Threading: an mx_llm is used by one thread at a time (the worker while a reply runs).
 */
#ifndef MX_LLM_H
#define MX_LLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/llm/sampler.h"

struct mx_tool_def; /* core/text/template.h */

#define MX_GEN_MAX_STOPS 8 /* --stop strings a caller may add to the template's */
#define MX_GEN_MAX_LORAS 8 /* --lora adapters on one model */

/* Everything a front end decides about a model run; persisted per chat session (the sampling
 * part) and handed around by value. Strings are borrowed: they must outlive every copy. */
struct mx_gen_settings {
    /* opening a model (mx_llm_open) */
    const char *device;     /* "auto" (or NULL), "cpu", "cuda": kernels/devices.h names */
    int threads;            /* CPU threads; 0: physical cores */
    int n_ctx;              /* KV cache cells; 0: the model's context_length, capped by memory */
    int kv_type;            /* enum mx_type of the KV cache: F16 (default), F32, Q8_0 */
    int ubatch;             /* tokens per forward chunk; 0: 512 */
    int act_mode;           /* enum mx_act_mode: rounding of activations before matmuls */
    bool no_mmap;           /* read the weights into memory instead of mapping them */
    bool mlock;             /* lock the weights in RAM (a failure is a warning: RLIMIT_MEMLOCK) */
    int gpu_layers;         /* on a device: blocks on it, the output layer counting as one
                             * (llama.cpp's -ngl; core/llm/placement.h); -1 (default): all */
    bool cpu_moe;           /* on a device: every block's expert weights stay in host memory
                             * and run on the CPU (llama.cpp's --cpu-moe) */
    int n_cpu_moe;          /* on a device: the first N blocks' experts do (--n-cpu-moe) */
    bool no_mem_check;      /* open even when the memory plan (app/memplan.h) says the model,
                             * its KV cache and buffers do not fit what the machine has: for
                             * swap or zram the plan cannot see */
    /* not a setting but a hook: the load's progress in bytes (weights read and prepared), called
     * on the opening thread; NULL: none (struct mx_llama_load_opts) */
    void (*on_load)(void *ud, uint64_t done, uint64_t total);
    void *on_load_ud;
    const char *lora[MX_GEN_MAX_LORAS]; /* LoRA adapter GGUFs (llama.cpp's --lora), applied on
                                         * the fly with their scales (core/llm/lora.h) */
    float lora_scale[MX_GEN_MAX_LORAS]; /* scale of each (1: as trained; 0: off) */
    int n_lora;             /* adapters in lora[] */
    /* sampling: handed to the sampler chain as it is (core/llm/sampler.h) */
    struct mx_sampler_params sampling;
    /* generating (mx_llm_generate) */
    int n_predict;          /* longest answer in tokens; -1: until the end or a full context */
    const char *stop[MX_GEN_MAX_STOPS + 1]; /* extra stop strings, NULL-terminated */
    bool ignore_eos;        /* go on past end-of-generation tokens */
    bool ctx_shift;         /* full context: drop the older half after n_keep tokens, go on */
    int n_keep;             /* tokens kept at the start when the context shifts (1: BOS) */
    const char *grammar;    /* a GBNF file the answer must follow (llama.cpp's dialect, see
                             * core/llm/grammar.h); NULL: unconstrained */
    const char *grammar_text; /* GBNF text in memory (--json-schema, --json); used instead of
                               * the file when set */
    const char *grammar_name; /* what messages call grammar_text ("schema.json"); NULL:
                               * "grammar" */
    const char *grammar_trigger; /* a lazy grammar: the answer is free text until this text
                               * appears in it, then the grammar (whose sentences start with it)
                               * constrains the rest, from the trigger's first byte on, as
                               * llama.cpp's lazy grammars (tool calls: core/text/tool_call.h).
                               * A control token whose text this is (Mistral's [TOOL_CALLS])
                               * counts, and its text is written into the answer, with or
                               * without a grammar. NULL: the grammar (if any) applies from the
                               * first token */
    /* chatting (app/engine.h): the tools the chat template describes to the model, which may
     * answer with calls (app/tools.h runs them); borrowed; NULL/0: none */
    const struct mx_tool_def *tools;
    size_t n_tools;
};

/* The defaults every front end starts from: automatic device, physical cores, the model's
 * context, f16 cache, ubatch 512, ggml activations, llama.cpp's sampling defaults with seed 0,
 * no length limit, no extra stops, stop at a full context (n_keep 1 for when shifting is on). */
void mx_gen_settings_default(struct mx_gen_settings *s);

/* A seed for an answer the user did not pin to one: from the kernel's random source (getrandom),
 * else the clock and a counter, so two calls in the same second still differ. Thread-safe. */
uint64_t mx_gen_fresh_seed(void);

/* Why a generation ended. */
enum mx_gen_end {
    MX_GEN_LENGTH,    /* n_predict tokens */
    MX_GEN_EOG,       /* an end-of-generation token */
    MX_GEN_STOP,      /* a stop string (not emitted) */
    MX_GEN_FULL,      /* the context was full and shifting was off */
    MX_GEN_CANCELED,  /* the cancel callback said so */
    MX_GEN_ERROR,     /* an error (the return value) */
    MX_GEN_GRAMMAR,   /* the grammar allowed no token of the vocabulary (a clean end) */
};

/* "length", "end of text", "stop string", "context full", "canceled", "error". */
const char *mx_gen_end_name(enum mx_gen_end end);

/* What a prefill + generation did. */
struct mx_gen_stats {
    size_t n_prefilled;   /* prompt tokens evaluated by mx_llm_prefill */
    size_t n_generated;   /* tokens sampled and emitted (the last may not be in the cache when
                           * the context was full) */
    size_t n_shifts;      /* context shifts */
    double prefill_s;     /* seconds in mx_llm_prefill */
    double gen_s;         /* seconds in the generate loop */
    enum mx_gen_end end;  /* why the loop ended */
    double grammar_s;     /* seconds of the generation spent in grammar checks (--grammar) */
    size_t grammar_refused; /* sampled tokens the grammar refused (then the whole vocabulary
                             * was filtered) */
};

/* Tokens per second of the generation (0 when nothing was generated). */
double mx_gen_stats_tok_s(const struct mx_gen_stats *st);

/* Where prefill and generation report; every callback but text may be NULL. Called on the thread
 * running the loop. */
struct mx_gen_io {
    /* s[0..n): whole UTF-8 characters of the answer, never a stop string or its start; may
     * contain NUL bytes (a <0x00> byte token). Returns 0, or < 0 to stop with that error. */
    int (*text)(void *ud, const char *s, size_t n);
    bool (*canceled)(void *ud);                      /* polled between tokens and chunks */
    void (*progress)(void *ud, size_t done, size_t total); /* prefill, after each chunk */
    void (*stats)(void *ud, double tok_s, size_t n_cached); /* every 16 generated tokens */
    void (*token)(void *ud, int32_t id, size_t n);   /* after the n-th generated token */
    void *ud;
    const char *const *stops;   /* more stop strings (the chat template's), NULL-terminated */
    unsigned detok_flags;       /* mx_detok_stream flags (MX_DETOK_LSTRIP for an answer) */
    size_t prefill_chunk;       /* tokens per prefill step (progress and cancel); 0: one step */
};

struct mx_llm;
struct mx_backend;
struct mx_llama_model;
struct mx_llama_ctx;
struct mx_tokenizer;

/* Opens model_path on the device s->device (s NULL: defaults) with s->threads threads: backend,
 * weights (mapped, or read with s->no_mmap; locked with s->mlock), tokenizer (checked against the model's vocabulary), a context of s->n_ctx
 * cells with an s->kv_type cache. Before anything is allocated, plans the memory from the file's
 * header (app/memplan.h): a model that does not fit is refused with MX_ENOMEM and the numbers
 * (unless s->no_mem_check), and n_ctx 0 becomes the largest context that fits (logged). Returns 0 with *out (mx_llm_close), or an error in err
 * (MX_EINVAL/MX_EUNSUP device names, MX_ENOMEM, the loader's, the tokenizer's); then *out is NULL and
 * nothing is left behind. */
int mx_llm_open(struct mx_llm **out, const char *model_path, const struct mx_gen_settings *s,
                struct mx_err *err);
void mx_llm_close(struct mx_llm *L); /* NULL ok */

/* Borrowed parts, valid while L lives. */
struct mx_backend *mx_llm_backend(const struct mx_llm *L);
struct mx_llama_model *mx_llm_model(const struct mx_llm *L);
struct mx_llama_ctx *mx_llm_ctx(const struct mx_llm *L);
struct mx_tokenizer *mx_llm_tokenizer(const struct mx_llm *L);
const char *mx_llm_name(const struct mx_llm *L);  /* general.name or the basename, no controls */
const char *mx_llm_device(const struct mx_llm *L); /* "CPU", "CUDA" */
double mx_llm_load_s(const struct mx_llm *L);     /* seconds to open backend + weights */
int32_t mx_llm_n_vocab(const struct mx_llm *L);
size_t mx_llm_n_ctx(const struct mx_llm *L);

/* Tokenizes text[0..len) with BOS as the vocabulary says. Returns 0 with *ids (caller frees)
 * and *n, or the tokenizer's error. */
int mx_llm_tokenize(const struct mx_llm *L, const char *text, size_t len, int32_t **ids,
                    size_t *n, struct mx_err *err);

/* The token ids the KV cache holds, in position order (*n of them; borrowed, valid until the
 * next call that changes the cache). NULL with *n = 0 when it is empty. */
const int32_t *mx_llm_cached(const struct mx_llm *L, size_t *n);

/* Decodes ids[0..n) after the cached ones (logits of the last are then mx_llama_logits). Returns
 * 0, MX_EFULL/MX_EINVAL (cache unchanged), MX_ENOMEM, or a backend error (cache emptied). */
int mx_llm_feed(struct mx_llm *L, const int32_t *ids, size_t n, struct mx_err *err);

/* Empties the cache. */
void mx_llm_clear(struct mx_llm *L);

/* Edits the cache to hold `ids`' first n_keep + n_move tokens: cells [0, n_keep) stay, cached
 * cells [src, src + n_move) move down to n_keep (keys re-rotated), the rest goes. A plan that
 * does not fit what is cached, or one that needs keys the sliding-window layers' trimmed cache
 * has dropped (core/llm/llama_ctx.c), empties the cache (all is prefilled again). Returns 0, or
 * a backend error (cache emptied). */
int mx_llm_cache_plan(struct mx_llm *L, const int32_t *ids, size_t n_keep, size_t src,
                      size_t n_move, struct mx_err *err);

/* Feeds ids[0..n) after the cache in io->prefill_chunk steps, reporting progress and polling
 * cancel between steps; adds to st (NULL ok). Returns 0, MX_ECANCELED (the steps done stay in
 * the cache) or mx_llm_feed's error. */
int mx_llm_prefill(struct mx_llm *L, const int32_t *ids, size_t n, const struct mx_gen_io *io,
                   struct mx_gen_stats *st, struct mx_err *err);

/* The generate loop, after the prompt is in the cache (its last logits current): samples with
 * s->sampling (the penalty window first sees history[0..n_history), usually the prompt), stops
 * at n_predict tokens, an end-of-generation token (unless ignore_eos), a stop string (s->stop
 * and io->stops; text that could still become one is held back and never emitted past it) or
 * cancel; a full context shifts (s->ctx_shift) or ends the answer after one last token that is
 * emitted but not cached. Each token enters the cache before its text is emitted. Fills *st
 * (its generation fields). Returns 0 (also when canceled: st->end says so), or an error (the
 * sampler's "no candidate left", io->text's, a decode error); text emitted so far stays. */
int mx_llm_generate(struct mx_llm *L, const struct mx_gen_settings *s, const int32_t *history,
                    size_t n_history, const struct mx_gen_io *io, struct mx_gen_stats *st,
                    struct mx_err *err);

/* KV snapshots (history/kvsnap): save the cache with its token ids to path (temp file + rename,
 * 0600), or replace the cache with a snapshot made with this model file, cache type and a fitting
 * context. Errors as mx_engine_llm_save / mx_engine_llm_load (engine_llm.h) say. */
int mx_llm_save(struct mx_llm *L, const char *path, struct mx_err *err);
int mx_llm_load(struct mx_llm *L, const char *path, struct mx_err *err);

#endif
