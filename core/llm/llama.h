/* llama.h - the LLM engine: llama / mistral / Mixtral, the llama-like sparse MoE architectures
 * (qwen2moe, qwen3moe, olmoe, granitemoe) and gpt-oss, from GGUF.
 *
 * Three objects, in the llama2.c spirit of keeping config, weights and state apart:
 *   struct mx_llama_hparams  the hyperparameters (read from the GGUF `<arch>.*` keys, validated);
 *   struct mx_llama_model    read-only weights: views into the GGUF mmap (no copy on the CPU);
 *   struct mx_llama_ctx      one sequence's state: the KV cache and every scratch tensor, all
 *                            allocated at creation (nothing per token).
 * The forward pass calls the device only through kernels/backend.h (mx_op_*), so the same code
 * runs on every backend.
 *
 * Thread-safety: a model may be shared by contexts used from different threads only if they use
 * different backends; a context is used by one thread at a time.
 */
#ifndef MX_LLAMA_H
#define MX_LLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/base/quant.h"

struct mx_gguf;
struct mx_backend;

/* Hyperparameters of a llama-like model (Mixtral when n_expert > 0; arch_flags say what the
 * other architectures change). */
struct mx_llama_hparams {
    char arch[32];          /* general.architecture ("llama", "qwen3moe", ...) */
    int32_t n_vocab;        /* tokens (token_embd rows) */
    int32_t n_ctx_train;    /* llama.context_length */
    int32_t n_embd;         /* llama.embedding_length */
    int32_t n_layer;        /* llama.block_count */
    int32_t n_ff;           /* llama.feed_forward_length (dense FFN; Mixtral: per expert) */
    int32_t n_head;         /* llama.attention.head_count */
    int32_t n_head_kv;      /* llama.attention.head_count_kv (default n_head) */
    int32_t head_dim;       /* attention.key_length, default n_embd / n_head */
    int32_t n_rot;          /* llama.rope.dimension_count (default head_dim) */
    int32_t n_expert;       /* llama.expert_count (0: dense) */
    int32_t n_expert_used;  /* llama.expert_used_count */
    int32_t sliding_window; /* llama.attention.sliding_window (0: none) */
    float rope_freq_base;   /* llama.rope.freq_base (default 10000) */
    float rope_freq_scale;  /* 1 / linear rope scaling factor (1: none) */
    float norm_eps;         /* llama.attention.layer_norm_rms_epsilon (default 1e-5) */
    /* gpt-oss (general.architecture "gpt-oss", llama.cpp's LLM_ARCH_OPENAI_MOE); all zero for
     * llama files */
    bool gptoss;            /* the gpt-oss block: biases, attention sinks, post-attention norm,
                               SwiGLU-OAI experts with softmax-over-top-k weights */
    int32_t swa_pattern;    /* attention.sliding_window_pattern: layer il uses the sliding window
                               iff il % swa_pattern < swa_pattern - 1 (gpt-oss: 2, so even
                               layers); 0: every layer uses sliding_window (Mistral) */
    int32_t rope_mode;      /* enum mx_rope_mode: 0 NORM (llama), 2 NEOX (gpt-oss) */
    float yarn_ext_factor;  /* YaRN (rope.scaling.type yarn): 1, else 0 (no YaRN) */
    float yarn_attn_factor; /* YaRN magnitude factor handed to the rope op (llama.cpp's
                               yarn_attn_factor after its mscale cancellation) */
    float yarn_beta_fast;   /* rope.scaling.yarn_beta_fast (32) */
    float yarn_beta_slow;   /* rope.scaling.yarn_beta_slow (1) */
    int32_t yarn_n_ctx_orig;/* rope.scaling.original_context_length */
    /* What the architectures beyond llama add (core/llm/llama.c's arch table sets the flags;
     * every other field here reads <arch>.<key>). */
    uint32_t arch_flags;    /* MX_LLAMA_F_* of general.architecture */
    int32_t n_ff_exp;       /* expert_feed_forward_length: one expert's FFN width (default:
                               n_ff, or n_ff / expert_used_count for the Qwen MoEs) */
    int32_t n_ff_shexp;     /* expert_shared_feed_forward_length: the shared expert's width
                               (0: no shared expert; qwen2moe defaults it to n_ff) */
    float embd_scale;       /* granite embedding_scale: x = embd * s (0: none) */
    float residual_scale;   /* granite residual_scale: sub-block outputs * s (0: none) */
    float attn_scale;       /* granite attention.scale: score scale (0: 1/sqrt(head_dim)) */
    float logit_scale;      /* granite logit_scale: logits / s (0: none) */
};

/* Architecture features (mx_llama_hparams.arch_flags), one per way the forward differs. */
enum {
    MX_LLAMA_F_ROPE_NEOX = 1u << 0,   /* rotate (x[i], x[i + n_rot/2]) pairs (Qwen, OLMoE) */
    MX_LLAMA_F_QK_NORM_HEAD = 1u << 1,/* RMS-norm each q/k head before RoPE (qwen3moe) */
    MX_LLAMA_F_QK_NORM_FULL = 1u << 2,/* RMS-norm the whole q/k vectors before RoPE (olmoe) */
    MX_LLAMA_F_MOE_NORM_W = 1u << 3,  /* top-k router weights renormalised to sum 1 */
    MX_LLAMA_F_SHEXP_GATE = 1u << 4,  /* shared expert scaled by sigmoid(ffn_gate_inp_shexp x) */
    MX_LLAMA_F_GRANITE = 1u << 5,     /* granite's embedding/residual/attention/logit scales */
    MX_LLAMA_F_FF_EXP_DIV = 1u << 6,  /* absent expert width = n_ff / expert_used_count */
    MX_LLAMA_F_MOE_ONLY = 1u << 7,    /* every layer is MoE: expert_count 0 is refused */
};

/* Reads hyperparameters from g's metadata (n_vocab from the token list, else 0 until the
 * tensors are seen). Returns 0, MX_EUNSUP (architecture or rope scaling not supported),
 * MX_EFORMAT (a key missing or of the wrong type); err names the key. Does not validate. */
int mx_llama_hparams_read(const struct mx_gguf *g, struct mx_llama_hparams *hp,
                          struct mx_err *err);

/* Checks ranges and consistency (head counts dividing, expert_used_count <= expert_count, ...).
 * Returns 0 or MX_EFORMAT with err saying what is wrong, with the numbers. */
int mx_llama_hparams_validate(const struct mx_llama_hparams *hp, struct mx_err *err);

struct mx_llama_model;

/* Loads a model from a GGUF file for backend be (borrowed: it must outlive the model). Checks the
 * hyperparameters, every tensor's presence, shape and type, and that the backend supports every
 * op/type the forward pass will use. Returns 0 (caller frees *out), or MX_ENOENT / MX_EIO /
 * MX_EFORMAT / MX_EUNSUP / MX_ENOMEM with err set ("M.gguf: ..."). */
int mx_llama_model_load(const char *path, struct mx_backend *be, struct mx_llama_model **out,
                        struct mx_err *err);

/* How a load goes beyond the defaults of mx_llama_model_load. */
struct mx_llama_load_opts {
    unsigned map_flags; /* MX_MAP_* (core/base/mapfile.h: --no-mmap, --mlock) for the file */
    /* called on the loading thread as the weights are read and prepared for the backend (the
     * long part of a load: every byte of a cold file comes from the disk here), with the bytes
     * done and the total; NULL: none */
    void (*progress)(void *ud, uint64_t done, uint64_t total);
    void *progress_ud;
    /* Splitting the model between be (a device) and a host backend (core/llm/placement.c). With
     * host NULL everything lives on be, as in mx_llama_model_load. With host (a CPU backend,
     * borrowed, outliving the model) the file is mapped for host, the token embedding stays
     * there (llama.cpp's input layer), and the parts placed on be are copied into its memory:
     * the last gpu_layers blocks counting the output layer as one, as llama.cpp's -ngl (block
     * il is on be iff il >= n_layer + 1 - gpu_layers; the output iff gpu_layers >= 1), except
     * the expert weights of the first n_cpu_moe blocks, which stay on host (llama.cpp's
     * --n-cpu-moe). The forward runs each part's ops on the backend holding its weights. */
    struct mx_backend *host;
    int gpu_layers;     /* with host: < 0 all (n_layer + 1) */
    int n_cpu_moe;      /* with host: < 0 all the blocks' experts stay on host; 0 none */
};

/* mx_llama_model_load with options (NULL: the defaults). */
int mx_llama_model_load_opts(const char *path, struct mx_backend *be,
                             const struct mx_llama_load_opts *o, struct mx_llama_model **out,
                             struct mx_err *err);

void mx_llama_model_free(struct mx_llama_model *m); /* NULL ok */

const struct mx_llama_hparams *mx_llama_model_hparams(const struct mx_llama_model *m);
/* The opened file (borrowed, valid until the model is freed): the tokenizer reads from it. */
const struct mx_gguf *mx_llama_model_gguf(const struct mx_llama_model *m);
/* Parameter and byte counts: all weights, and what one generated token reads (attention, norms,
 * output, one embedding row, and only expert_used_count of the experts). */
struct mx_llama_size {
    uint64_t n_params;          /* every weight element */
    uint64_t n_params_active;   /* elements read per generated token */
    uint64_t n_bytes;           /* bytes of every weight */
    uint64_t n_bytes_active;    /* bytes of weights read per generated token */
};
void mx_llama_model_size(const struct mx_llama_model *m, struct mx_llama_size *s);

/* ---- a context: one sequence, its KV cache and scratch ----------------------------------- */

struct mx_llama_ctx_params {
    int64_t n_ctx;       /* cells in the KV cache; 0 = default (see mx_llama_ctx_new) */
    enum mx_type kv_type;/* KV cache type: MX_TYPE_F32, MX_TYPE_F16 (default) or MX_TYPE_Q8_0 */
    int32_t n_ubatch;    /* tokens per forward chunk (0: 512) */
    bool swa_full;       /* sliding-window layers keep every cell (default: window + n_ubatch,
                            as llama.cpp's SWA cache; see llama_ctx.c) */
};

void mx_llama_ctx_params_default(struct mx_llama_ctx_params *p);

struct mx_llama_ctx;

/* Creates a context on the model's backend. n_ctx 0 means the model's context_length, capped so
 * that the KV cache takes at most half of the machine's available memory (but at least 65536 when
 * the model supports it, memory permitting), and never below 16. Logs the cache size (mx_log).
 * Returns 0 (caller frees *out; the model must outlive it), MX_EINVAL (bad params), MX_EUNSUP
 * (cache type unsupported by the backend), MX_ENOMEM ("KV cache: needs N bytes ..."). */
int mx_llama_ctx_new(struct mx_llama_model *m, const struct mx_llama_ctx_params *p,
                     struct mx_llama_ctx **out, struct mx_err *err);

void mx_llama_ctx_free(struct mx_llama_ctx *c); /* NULL ok */

/* What a context takes (mx_llama_ctx_need), in bytes. */
struct mx_llama_ctx_bytes {
    uint64_t kv;       /* the KV cache; of a split, the device lane's (its blocks' K/V and its
                          copy of the positions) */
    uint64_t kv_host;  /* of a split, the host lane's KV cache (0 unsplit) */
    uint64_t kv_full;  /* kv + kv_host if the sliding-window layers kept every cell (swa_full):
                          their trimming saves kv_full - kv - kv_host */
    uint64_t buffers;  /* one lane's scratch arena and the host arrays */
};

/* What mx_llama_ctx_new would allocate for n_ctx cells of kv_type and ubatch n_ubatch (0: 512),
 * without allocating it, into *out. i_dev: of a model split between a device and the host
 * (placement.h), the first block on the device; -1 unsplit. For planning memory before a model
 * is loaded (app/memplan.h): the same walks as the allocation, so the plan equals it. Returns 0,
 * MX_EINVAL (bad sizes) or MX_ENOMEM (sizes overflow). */
int mx_llama_ctx_need(const struct mx_llama_hparams *hp, enum mx_type kv_type, int64_t n_ctx,
                      int32_t n_ubatch, int32_t i_dev, struct mx_llama_ctx_bytes *out,
                      struct mx_err *err);

int64_t mx_llama_ctx_n_ctx(const struct mx_llama_ctx *c);
/* Tokens currently in the cache (also the position of the next token, unless shifted). */
int64_t mx_llama_ctx_n_past(const struct mx_llama_ctx *c);
/* Bytes of the KV cache and of the scratch arena. */
size_t mx_llama_ctx_kv_bytes(const struct mx_llama_ctx *c);

/* Called with the logits of batch row i (n_vocab floats, borrowed for the call). Return 0 to go
 * on, a negative MX_E* to stop decoding (returned by mx_llama_decode). */
typedef int (*mx_llama_logits_fn)(void *ud, int64_t i, const float *logits);

/* Feeds n tokens at the next positions, in chunks of n_ubatch through the batched path. With
 * all = false only the last row's logits are computed (kept in the context: mx_llama_logits);
 * with all = true every row is computed and handed to fn (if not NULL) in order. Returns 0,
 * MX_EINVAL (an id out of range, n <= 0), MX_EFULL (not enough room: err gives the numbers; the
 * cache is left as before the call), a backend error, or fn's error (cache then holds the rows
 * fed so far). */
int mx_llama_decode(struct mx_llama_ctx *c, const int32_t *ids, int64_t n, bool all,
                    mx_llama_logits_fn fn, void *ud, struct mx_err *err);

/* The logits of the last row of the last decode (n_vocab floats, valid until the next decode). */
const float *mx_llama_logits(const struct mx_llama_ctx *c);

/* Empties the cache. */
void mx_llama_kv_clear(struct mx_llama_ctx *c);

/* Removes the cached tokens at positions [p0, p1) (p1 < 0: to the end) and compacts the cache.
 * Positions of the others are unchanged (call mx_llama_kv_shift to close the gap). When what is
 * left would need keys the sliding-window layers' trimmed cache has dropped, the whole cache is
 * cleared instead (n_past 0: the caller prefills again). Returns 0 or a backend error. */
int mx_llama_kv_remove(struct mx_llama_ctx *c, int64_t p0, int64_t p1, struct mx_err *err);

/* Adds delta to the positions of cached tokens in [p0, p1) (p1 < 0: to the end), re-rotating
 * their keys (RoPE angles add), as llama.cpp's context shift does. Returns 0, MX_EINVAL (a
 * position would become negative), or a backend error. */
int mx_llama_kv_shift(struct mx_llama_ctx *c, int64_t p0, int64_t p1, int64_t delta,
                      struct mx_err *err);

/* Context shift in one call: drops n_discard tokens after the first n_keep and moves the rest
 * down, so generation can go on in a full context. Returns as above. */
int mx_llama_kv_discard(struct mx_llama_ctx *c, int64_t n_keep, int64_t n_discard,
                        struct mx_err *err);

/* ---- cache state (KV snapshots for instant resume) -------------------------------------- */

/* Writes/reads n bytes of cache state; returns 0 or a negative MX_E* (then the call stops). */
typedef int (*mx_llama_write_fn)(void *ud, const void *data, size_t n, struct mx_err *err);
typedef int (*mx_llama_read_fn)(void *ud, void *data, size_t n, struct mx_err *err);

/* Bytes mx_llama_kv_state_save will write for the cache as it is now (cells [0, n_used)). */
size_t mx_llama_kv_state_size(const struct mx_llama_ctx *c);

/* Serializes the cache: a small header (n_layer, kv_type, row bytes of K and V, n_used, the
 * window table's n_used_swa, next_pos), kpos[0..n_used), kpos_swa[0..n_used_swa), then per layer
 * K rows and V rows of its table as stored (kv_type), through fn. Returns 0, a backend error or fn's error. */
int mx_llama_kv_state_save(const struct mx_llama_ctx *c, mx_llama_write_fn fn, void *ud,
                           struct mx_err *err);

/* Replaces the cache with a serialized state of exactly size bytes read through fn. Checks the
 * header against this context (n_layer, kv_type, row sizes, n_used <= n_ctx, positions in
 * range): MX_EFORMAT with the numbers otherwise. On any error the cache is left empty (as
 * mx_llama_kv_clear). The logits are not restored (decode a token to get fresh ones). */
int mx_llama_kv_state_load(struct mx_llama_ctx *c, size_t size, mx_llama_read_fn fn, void *ud,
                           struct mx_err *err);

#endif
