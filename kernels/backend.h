/* backend.h - one interface for every compute device: tensors, buffers, ops.
 *
 * core/ (the LLM, later the diffusion models) is written once against this header; a backend
 * (kernels/cpu now, kernels/cuda later) owns its buffers and implements the ops. Anchor: ggml's
 * ggml-backend.h, but eager: every mx_op_* call runs (or, on a device, is queued) in call order
 * on the backend's one stream, and only mx_tensor_get / mx_backend_sync wait. There is no graph.
 *
 * HOW TO USE (the LLM's forward pass, in short)
 *   be = mx_backend_cpu_new(n_threads, &err);
 *   weights: mx_buf_from_host(be, mmap_base, mmap_size, &wbuf, &err) wraps the mapped file
 *            (no copy on the CPU); each weight is mx_tensor_init(&t, type, ne0, ne1, ne2, 0)
 *            then t.buf = wbuf, t.data = (char *)wbuf->base + offset_in_file.
 *   KV cache + activations: an arena (mx_arena_*) sized at load from the hyperparameters;
 *            first a measuring pass (mx_arena_init_measure) to learn the size, then the real
 *            one; nothing is allocated per token.
 *   per token batch: mx_tensor_set() the ids and positions (I32 tensors), then call the ops in
 *            order; mx_tensor_get() the logits (waits for the work queued before it).
 *
 * SHAPES follow ggml: ne[0] is the fastest (contiguous) dimension, a "row" is ne[0] elements, a
 * matrix W with ne = [n_in, n_out] stores one output row per ne[1]. nb[i] are byte strides;
 * nb[0] = element or block size. Unused trailing dimensions are 1. Activations are F32.
 * Quantized rows: ne[0] must be a multiple of the type's block size, nb[1] = row bytes.
 * A "column" below is one token: x with ne = [n_embd, n_tokens] holds token t at column t.
 *
 * RULES for every op:
 *   - returns 0, or MX_EINVAL (shape/type mismatch; checked in backend.c before dispatch),
 *     MX_EUNSUP (the backend does not implement this op for these types: ask
 *     mx_backend_supports() at load so this never happens at token 5,000), MX_ENOMEM.
 *     Error detail goes to mx_backend_last_error(be) (the op signatures carry no mx_err).
 *   - dst is written completely; dst may alias a source only where the op says "in place ok".
 *   - tensors must be contiguous (mx_tensor_is_contiguous) unless the op says otherwise; row
 *     views (mx_tensor_view_rows) of a contiguous tensor are contiguous.
 *   - all tensors of one op live on the same backend (the CPU backend accepts any host memory).
 *   - thread-safety: one backend is used by one thread at a time (the engine worker).
 *
 * KV CACHE recipe: per layer K and V tensors [head_dim * n_head_kv, n_ctx] of F32/F16/Q8_0 (one
 * row per cell) and one I32 kpos [n_ctx] shared by the layers (-1 = empty cell). Write a batch:
 * mx_op_cpy(view_rows(k, cell0, T), k_cur) and set kpos[cell0..] = positions. Remove a range:
 * set those cells' kpos to -1, or compact later cells down with mx_op_cpy between row views of
 * the same tensor (memmove semantics) and fix kpos. Shift positions by d (context shift):
 * mx_op_kv_shift(view_rows(k, c0, n), delta (I32 [n], all d)) and add d to those kpos.
 *
 * MATMUL NUMERICS: ggml (and so llama.cpp) does not multiply F32 activations by quantized
 * weights; it first rounds the activations to the weight type's "vec_dot" type (Q8_0 blocks for
 * Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, Q8_K for the K-quants, F16 for F16, BF16 for BF16). The backend's
 * activation mode picks: MX_ACT_GGML (default; matches llama.cpp's logits, and is what the fast
 * integer kernels do) or MX_ACT_F32 (exact: activations stay F32; matches refs/llm/exact/).
 */
#ifndef MX_BACKEND_H
#define MX_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"
#include "core/base/quant.h"

#define MX_MAX_DIMS 4

struct mx_backend;

/* A block of device (or host) memory owned by one backend. */
struct mx_buf {
    struct mx_backend *be; /* owner */
    void *base;            /* start: a host pointer on the CPU, a device pointer on CUDA */
    size_t size;           /* bytes */
    bool wraps_host;       /* made by mx_buf_from_host: base is the caller's memory (CPU) */
    void *ctx;             /* backend private */
};

/* A view of typed n-d data. Plain struct: copy it freely; it owns nothing. */
/* How a weight's blocks are arranged. Files hold MX_LAYOUT_GGML; a backend may rearrange a
 * weight once at load (mx_backend_prepare_weights) into a form only its matmul ops read. The
 * type, the element count and the bytes per row stay the same. */
enum mx_layout {
    MX_LAYOUT_GGML = 0,  /* rows one after the other, as in the file */
    MX_LAYOUT_Q4_0X8,    /* CPU: Q4_0, 8 rows interleaved block by block (kernels/cpu/cpu.h) */
    MX_LAYOUT_Q4_KX8,    /* CPU: Q4_K, the same for 256-value super-blocks */
    MX_LAYOUT_Q6_KX8,    /* CPU: Q6_K, likewise */
    MX_LAYOUT_Q5_KX8,    /* CPU: Q5_K, likewise */
    MX_LAYOUT_Q8_0X8,    /* CPU: Q8_0, as Q4_0 */
    MX_LAYOUT_IQ4_XSX8,  /* CPU: IQ4_XS, as Q4_K (kernels/cpu/kernels_iq.h) */
    MX_LAYOUT_IQ4_NLX8,  /* CPU: IQ4_NL, as Q4_0 (kernels/cpu/kernels_iq.h) */
    MX_LAYOUT_MXFP4X8,   /* CPU: MXFP4, as Q4_0 (kernels/cpu/kernels_iq.h) */
    MX_LAYOUT_COUNT
};

struct mx_tensor {
    enum mx_type type;          /* element type (weights: any quant type; activations: F32) */
    enum mx_layout layout;      /* MX_LAYOUT_GGML but for weights a backend prepared */
    int64_t ne[MX_MAX_DIMS];    /* elements per dimension, ne[0] fastest; unused dims = 1 */
    size_t nb[MX_MAX_DIMS];     /* byte strides: nb[0] = type size, nb[1] = row bytes, ... */
    struct mx_buf *buf;         /* the buffer data points into (NULL: plain host memory, CPU) */
    void *data;                 /* first element (inside buf) */
    const char *name;           /* borrowed, for messages ("blk.3.ffn_up.weight"); may be NULL */
};

/* ---- tensor helpers (pure bookkeeping, no device work) ------------------------------------- */

/* Sets type, ne (0 or negative dims become 1) and contiguous strides; buf/data/name = NULL.
 * Returns 0, or MX_EINVAL for an unknown type, ne0 not a multiple of the block size, or a
 * byte size that overflows. */
int mx_tensor_init(struct mx_tensor *t, enum mx_type type, int64_t ne0, int64_t ne1,
                   int64_t ne2, int64_t ne3);

int64_t mx_tensor_nelements(const struct mx_tensor *t);
int64_t mx_tensor_nrows(const struct mx_tensor *t);   /* ne1*ne2*ne3 */
size_t mx_tensor_row_size(const struct mx_tensor *t); /* bytes of ne[0] elements */
size_t mx_tensor_nbytes(const struct mx_tensor *t);   /* bytes spanned (contiguous: rows*row) */
bool mx_tensor_is_contiguous(const struct mx_tensor *t);

/* A view of rows [row0, row0 + n) of a contiguous tensor, counted over ne1*ne2*ne3 flattened to
 * 2-D: the result has ne = [ne0, n, 1, 1]. Returns 0 or MX_EINVAL (out of range). */
int mx_tensor_view_rows(const struct mx_tensor *t, int64_t row0, int64_t n,
                        struct mx_tensor *view);

/* The same contiguous data seen with another shape (same element count, same ne0 block rule).
 * Returns 0 or MX_EINVAL. */
int mx_tensor_reshape(const struct mx_tensor *t, int64_t ne0, int64_t ne1, int64_t ne2,
                      int64_t ne3, struct mx_tensor *view);

/* ---- the op list ----------------------------------------------------------------------------
 * X(NAME, name): MX_OP_NAME for mx_backend_supports(), and the name for messages. */
#define MX_OPS(X)                 \
    X(MATMUL, matmul)             \
    X(MATMUL_ID, matmul_id)       \
    X(GET_ROWS, get_rows)         \
    X(RMS_NORM, rms_norm)         \
    X(LAYER_NORM, layer_norm)     \
    X(GROUP_NORM, group_norm)     \
    X(ROPE, rope)                 \
    X(KV_SHIFT, kv_shift)         \
    X(ATTN, attn)                 \
    X(SOFTMAX, softmax)           \
    X(SILU, silu)                 \
    X(GELU, gelu)                 \
    X(SILU_MUL, silu_mul)         \
    X(GELU_MUL, gelu_mul)         \
    X(ADD, add)                   \
    X(MUL, mul)                   \
    X(SCALE, scale)               \
    X(CPY, cpy)                   \
    X(MOE_ROUTE, moe_route)       \
    X(MOE_COMBINE, moe_combine)   \
    X(CONV2D, conv2d)             \
    X(UPSAMPLE, upsample)         \
    X(CONCAT, concat)             \
    X(GELU_QUICK, gelu_quick)     \
    X(TRANSPOSE, transpose)       \
    X(SWIGLU_OAI, swiglu_oai)     \
    X(SIGMOID, sigmoid)

enum mx_op {
#define MX_OP_ENUM(N, n) MX_OP_##N,
    MX_OPS(MX_OP_ENUM)
#undef MX_OP_ENUM
    MX_OP_COUNT
};

/* "matmul", ... ; "?" for out-of-range values. */
const char *mx_op_name(int op);

/* Activation rounding before weight matmuls (see MATMUL NUMERICS above). */
enum mx_act_mode {
    MX_ACT_GGML = 0, /* round x to the weight's vec_dot type first, like ggml (default) */
    MX_ACT_F32 = 1,  /* keep x in F32: W dequantized times x, exact up to f32 summation */
};

/* RoPE variants (llama.cpp's LLAMA_ROPE_TYPE_NORM / NEOX). */
enum mx_rope_mode {
    MX_ROPE_NORM = 0, /* rotate adjacent pairs (x[2i], x[2i+1]): arch llama, mistral, mixtral */
    MX_ROPE_NEOX = 2, /* rotate (x[i], x[i + n_rot/2]): GPT-NeoX, Qwen, Phi, ... */
};

/* RoPE parameters. theta for pair i at position p, computed in float32 exactly like ggml:
 *   theta_scale = powf(freq_base, -2.0f / n_rot);  base = (float)p;
 *   for each pair i = 0, 1, ...: theta = freq_scale * base; use cosf(theta), sinf(theta);
 *                                base *= theta_scale;
 * (with freq_factors, base / freq_factors[i] replaces base in theta; YaRN as ggml_rope_yarn)
 * Dimensions n_rot..head_dim-1 of each head are copied unrotated. */
struct mx_rope_params {
    int n_rot;          /* rotated dims per head (llama.rope.dimension_count), even, <= head_dim */
    int mode;           /* enum mx_rope_mode */
    float freq_base;    /* llama.rope.freq_base (10000, 1e6, ...) */
    float freq_scale;   /* 1 / linear rope-scaling factor; 1.0f when the model has none */
    /* Optional extras (all zero = plain RoPE above), ggml's rope_ext semantics: */
    const struct mx_tensor *freq_factors; /* F32 [>= n_rot/2] or NULL: pair i uses
                                             base / freq_factors[i] (Llama 3.1 "rope_freqs") */
    float ext_factor;   /* YaRN extrapolation mix; 0 = off (then the fields below are unused) */
    float attn_factor;  /* YaRN magnitude scale ("mscale"); 0 means 1 */
    float beta_fast;    /* YaRN ramp ends (32 and 1 in llama.cpp) */
    float beta_slow;
    int n_ctx_orig;     /* YaRN: the context length the model was trained with */
};

/* Attention parameters (see mx_op_attn). */
struct mx_attn_params {
    int n_head;         /* query heads */
    int n_head_kv;      /* key/value heads; n_head % n_head_kv == 0 (GQA) */
    int head_dim;       /* per head; q/k/v rows are head_dim * heads */
    int64_t n_kv;       /* cache cells scanned: cells [0, n_kv) (<= the cache's ne1) */
    float scale;        /* score scale, normally 1/sqrtf(head_dim) */
    int32_t window;     /* sliding window: a query at p sees keys at p' with p - p' < window;
                           0 = unlimited (only causal) */
    const struct mx_tensor *sinks; /* F32 [n_head] or NULL: attention sinks (gpt-oss), a learned
                           logit per head that joins the softmax's denominator only: head h's
                           weights become e^(s_c - M) / (sum_c e^(s_c - M) + e^(sinks[h] - M)) */
};

/* 2-D convolution parameters (NCHW with ggml order: ne = [W, H, C, N]). */
struct mx_conv2d_params {
    int stride_x, stride_y; /* >= 1 */
    int pad_x, pad_y;       /* zero padding on both sides */
    int dil_x, dil_y;       /* dilation, >= 1 */
};

/* ---- backend ---------------------------------------------------------------------------------
 * Implementations fill this table; core/ never calls it directly (use mx_buf_* / mx_op_*). Every
 * op entry may be NULL (unsupported). Shapes/types are already checked when an op is called. */
struct mx_backend_ops {
    const char *name; /* "cpu", "cuda" */
    void (*free)(struct mx_backend *be);
    int (*buf_alloc)(struct mx_backend *be, size_t size, struct mx_buf **out);
    int (*buf_from_host)(struct mx_backend *be, void *ptr, size_t size, struct mx_buf **out);
    void (*buf_free)(struct mx_buf *buf);
    int (*set)(struct mx_backend *be, const struct mx_tensor *t, const void *src, size_t offset,
               size_t size);
    int (*get)(struct mx_backend *be, const struct mx_tensor *t, void *dst, size_t offset,
               size_t size);
    int (*sync)(struct mx_backend *be);
    /* Optional (see mx_backend_prepare_weights): moves what it wants of ws[0..n) into one new
     * buffer *out (NULL: nothing moved), updating those tensors. */
    int (*prepare_weights)(struct mx_backend *be, struct mx_tensor *const *ws, int n,
                           struct mx_buf **out);
    /* Whether op runs with main type `type` (the weight type for matmul/matmul_id/get_rows, the
     * cache type for attn/kv_shift, the destination type for cpy, F32 for the rest). */
    bool (*supports)(struct mx_backend *be, enum mx_op op, enum mx_type type);

    int (*matmul)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                  const struct mx_tensor *x);
    /* Optional (NULL: mx_op_matmul_n makes n matmul calls): n <= MX_MATMUL_N_MAX matmuls of
     * one x (checked each), in one pass. Bit-equal to the separate ops. */
    int (*matmul_n)(struct mx_backend *be, int n, struct mx_tensor *const *dst,
                    const struct mx_tensor *const *w, const struct mx_tensor *x);
    int (*matmul_id)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                     const struct mx_tensor *x, const struct mx_tensor *ids);
    /* Optional (NULL: mx_op_matmul_id2 makes two matmul_id calls and a silu_mul): two expert
     * matmuls of one x and ids, weights of one shape, type and layout (an MoE block's gate and
     * up), in one pass: the tokens grouped and their columns prepared once, one pass over the
     * experts; silu_mul: the gated unit in the same pass. Bit-equal to the separate ops. */
    int (*matmul_id2)(struct mx_backend *be, struct mx_tensor *dst_a, const struct mx_tensor *w_a,
                      struct mx_tensor *dst_b, const struct mx_tensor *w_b,
                      const struct mx_tensor *x, const struct mx_tensor *ids, bool silu_mul);
    int (*get_rows)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                    const struct mx_tensor *ids);
    int (*rms_norm)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                    const struct mx_tensor *w, float eps);
    int (*layer_norm)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                      const struct mx_tensor *w, const struct mx_tensor *b, float eps);
    int (*group_norm)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                      const struct mx_tensor *w, const struct mx_tensor *b, int n_groups,
                      float eps);
    int (*rope)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                const struct mx_tensor *pos, const struct mx_rope_params *p);
    int (*kv_shift)(struct mx_backend *be, struct mx_tensor *kcache, const struct mx_tensor *delta,
                    int head_dim, const struct mx_rope_params *p);
    int (*attn)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *q,
                const struct mx_tensor *kcache, const struct mx_tensor *vcache,
                const struct mx_tensor *qpos, const struct mx_tensor *kpos,
                const struct mx_attn_params *p);
    int (*softmax)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                   float scale);
    int (*silu)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x);
    int (*gelu)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x);
    int (*silu_mul)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *gate,
                    const struct mx_tensor *up);
    int (*gelu_mul)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *gate,
                    const struct mx_tensor *up);
    int (*add)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *a,
               const struct mx_tensor *b);
    int (*mul)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *a,
               const struct mx_tensor *b);
    int (*scale)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x, float s);
    int (*cpy)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *src);
    int (*moe_route)(struct mx_backend *be, struct mx_tensor *ids, struct mx_tensor *weights,
                     const struct mx_tensor *logits, bool renorm);
    int (*moe_combine)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *y,
                       const struct mx_tensor *weights);
    int (*conv2d)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                  const struct mx_tensor *w, const struct mx_tensor *b,
                  const struct mx_conv2d_params *p);
    int (*upsample)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                    int factor);
    int (*concat)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *a,
                  const struct mx_tensor *b, int dim);
    int (*gelu_quick)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x);
    int (*transpose)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x);
    int (*swiglu_oai)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *gate,
                      const struct mx_tensor *up, float alpha, float limit);
    int (*sigmoid)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x);
};

struct mx_backend {
    const struct mx_backend_ops *ops;
    void *ctx;                /* backend private state */
    int act_mode;             /* enum mx_act_mode for weight matmuls */
    struct mx_err last_err;   /* detail of the last failed op ("matmul: ...") */
};

/* ---- backends -------------------------------------------------------------------------------- */

/* The CPU backend: a persistent pool of n_threads - 1 workers plus the calling thread
 * (n_threads <= 0: the number of physical cores). OpenBLAS does batched F32 GEMM. Returns the
 * backend (caller owns; mx_backend_free) or NULL with err set (MX_ENOMEM, thread start failure). */
struct mx_backend *mx_backend_cpu_new(int n_threads, struct mx_err *err);

/* The CUDA backend on device index `device` (kernels/cuda/): VRAM buffers, one stream, cuBLAS.
 * Returns the backend (caller owns; mx_backend_free) or NULL with err set: MX_ENODEV (no device
 * answers, or a build without CUDA), MX_EINVAL (no such index), MX_EIO (the runtime or cuBLAS
 * does not start), MX_ENOMEM. Numerics: in MX_ACT_GGML (default) decode products of Q4_0,
 * Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, MXFP4, Q4_K, Q5_K, Q6_K and IQ4_XS round x to Q8 blocks as
 * the CPU does (integer dots), prefill GEMMs of non-F32 weights run in F16/BF16 on tensor cores
 * (f32 accumulate), the rest keeps x F32; MX_ACT_F32 keeps x F32 everywhere (F32 SGEMM for
 * prefill); attention rounds q like the CPU in MX_ACT_GGML. */
struct mx_backend *mx_backend_cuda_new(int device, struct mx_err *err);

/* Threads the CPU backend uses (calling thread included); 1 for other backends and NULL (a
 * model opened without a backend, as `mixel inspect` does). */
int mx_backend_cpu_n_threads(const struct mx_backend *be);

/* Name of the CPU backend's kernel set ("scalar", "avx2", "avx512vnni"); "" for another
 * backend. Static string. */
const char *mx_backend_cpu_kernels(const struct mx_backend *be);

/* Frees the backend (after waiting for queued work). NULL ok. All its buffers must be freed
 * first. */
void mx_backend_free(struct mx_backend *be);

const char *mx_backend_name(const struct mx_backend *be);

/* Whether the backend runs op with main type `type` (see supports in mx_backend_ops). Call it at
 * load for every (op, type) the model will use, and refuse the model with a message if not. */
bool mx_backend_supports(struct mx_backend *be, enum mx_op op, enum mx_type type);

/* Sets the activation rounding for weight matmuls (enum mx_act_mode). Returns 0 or MX_EINVAL. */
int mx_backend_set_act_mode(struct mx_backend *be, int mode);

/* Waits for all queued work. Returns 0 or the first deferred error. */
int mx_backend_sync(struct mx_backend *be);

/* Message of the last failed op, or "" (valid until the next op). */
const char *mx_backend_last_error(const struct mx_backend *be);

/* ---- buffers --------------------------------------------------------------------------------- */

/* Allocates size bytes (64-byte aligned, contents undefined). *out is owned by the caller
 * (mx_buf_free). Returns 0, MX_ENOMEM (err says how many bytes), MX_EINVAL (size 0). */
int mx_buf_alloc(struct mx_backend *be, size_t size, struct mx_buf **out, struct mx_err *err);

/* Wraps host memory (the mmap'd model file) as a buffer: the CPU backend uses it in place, with
 * no copy; a device backend copies it into device memory. ptr must stay valid for the buffer's
 * life (borrowed). Returns 0 or MX_ENOMEM. */
int mx_buf_from_host(struct mx_backend *be, void *ptr, size_t size, struct mx_buf **out,
                     struct mx_err *err);

/* Frees the buffer (not the wrapped host memory). NULL ok. */
void mx_buf_free(struct mx_buf *buf);

/* Lets the backend put weights into the form its kernels read fastest, once, after loading and
 * before the first op. ws[0..n) are weights used only as the `w` of matmul / matmul_id (never by
 * get_rows, cpy or mx_tensor_get: their bytes may be rearranged). The CPU backend repacks Q4_0,
 * Q8_0, Q4_K, Q5_K and Q6_K matrices with rows a multiple of 8 into MX_LAYOUT_*X8 (decode
 * streams one interleaved
 * stream per 8 rows; prefill runs integer GEMM tiles on it); a device backend would copy them
 * into its memory. A moved tensor gets new data, buf and layout; the others are left alone and
 * their old bytes stay in use. *out receives the one buffer holding the moved tensors (NULL
 * when none moved), owned by the caller: free it (mx_buf_free) after the last op using them.
 * The old bytes of moved tensors are no longer read (a loader may release their pages).
 * Returns 0, or MX_ENOMEM (nothing moved then). */
int mx_backend_prepare_weights(struct mx_backend *be, struct mx_tensor *const *ws, int n,
                               struct mx_buf **out, struct mx_err *err);

/* Copies size bytes from host src into t's data at byte offset (waits for nothing queued before
 * it on the CPU; ordered on a stream on devices). Returns 0 or MX_EINVAL (past the tensor end). */
int mx_tensor_set(struct mx_backend *be, const struct mx_tensor *t, const void *src,
                  size_t offset, size_t size);

/* Copies size bytes of t's data from byte offset into host dst, after all queued work. Returns 0,
 * MX_EINVAL, or a deferred op error. */
int mx_tensor_get(struct mx_backend *be, const struct mx_tensor *t, void *dst, size_t offset,
                  size_t size);

/* ---- scratch arena: allocate every activation and the KV cache at load ----------------------
 * Usage: mx_arena_init_measure(&a) ; run the same mx_arena_tensor() calls as the real pass (they
 * only add up sizes) ; mx_arena_init(&a, be, a.used, err) ; the same calls again hand out views
 * into one buffer. mx_arena_reset() rewinds (all earlier views become invalid for new data). */
struct mx_arena {
    struct mx_backend *be;  /* NULL in measuring mode */
    struct mx_buf *buf;     /* owned; NULL in measuring mode */
    size_t size;            /* capacity in bytes (SIZE_MAX when measuring) */
    size_t used;            /* bytes handed out, each tensor 64-byte aligned */
    bool overflow;          /* a size computation overflowed in measuring mode */
};

/* Measuring arena: hands out tensors with data = NULL and counts bytes. */
void mx_arena_init_measure(struct mx_arena *a);

/* Real arena of size bytes on be. Returns 0 or MX_ENOMEM / MX_EINVAL (err set). */
int mx_arena_init(struct mx_arena *a, struct mx_backend *be, size_t size, struct mx_err *err);

/* A new contiguous tensor in the arena. name is borrowed. Returns 0, MX_EINVAL (bad shape/type,
 * size overflow) or MX_ENOMEM (the arena is full: err gives the numbers). */
int mx_arena_tensor(struct mx_arena *a, struct mx_tensor *t, enum mx_type type, int64_t ne0,
                    int64_t ne1, int64_t ne2, int64_t ne3, const char *name, struct mx_err *err);

void mx_arena_reset(struct mx_arena *a);

/* Frees the arena's buffer; a may be zeroed or measuring. */
void mx_arena_deinit(struct mx_arena *a);

/* ---- ops --------------------------------------------------------------------------------------
 * Shapes below are ne[] lists; [a, b] means ne = {a, b, 1, 1}. "T" = n_tokens. */

/* dst = W·x: dst[o, t] = sum_i W[i, o] * x[i, t] (ggml_mul_mat(W, x)).
 * W: any of F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, ne = [n_in, n_out]
 *    (3-D/4-D W broadcast over x's ne2/ne3 like ggml when they divide). x: F32 [n_in, T, ...].
 * dst: F32 [n_out, T, ...]. Activations rounded per be->act_mode. dst must not alias x. */
int mx_op_matmul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                 const struct mx_tensor *x);

/* dst[i] = W[i]·x for i < n (1 <= n <= MX_MATMUL_N_MAX; each as mx_op_matmul, same checks): an
 * attention block's q, k and v. On backends that have it (the CPU's) in one pass: x prepared
 * once per weight type and one parallel run over every weight's rows (at decode, two thread
 * barriers fewer per layer); else n matmul calls. Bit-equal to those. The W[i] may differ in
 * type, layout and rows; no dst[i] may alias x or another dst. */
#define MX_MATMUL_N_MAX 4
int mx_op_matmul_n(struct mx_backend *be, int n, struct mx_tensor *const *dst,
                   const struct mx_tensor *const *w, const struct mx_tensor *x);

/* MoE expert matmul (ggml_mul_mat_id): for each token t and slot s, e = ids[s, t],
 *   dst[:, s, t] = W[:, :, e] · x[:, s mod x.ne1, t]
 * W: [n_in, n_out, n_expert] any matmul type; x: F32 [n_in, 1 or n_used, T] (1: the same input
 * for every selected expert, e.g. gate/up; n_used: each slot its own, e.g. down);
 * ids: I32 [n_used, T] (values in [0, n_expert), checked: MX_EINVAL otherwise);
 * dst: F32 [n_out, n_used, T]. Only the selected experts' rows of W are read; tokens are grouped
 * per expert so each expert's weights are streamed once per batch. */
int mx_op_matmul_id(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                    const struct mx_tensor *x, const struct mx_tensor *ids);

/* dst_a = W_a[ids] x and dst_b = W_b[ids] x (each as mx_op_matmul_id, same checks; an MoE
 * block's gate and up): in one pass on backends that have one (the CPU's: the routed columns
 * gathered and quantized once) when W_a and W_b share shape, type and layout; else two
 * matmul_id calls. silu_mul: then dst_a = silu(W_a[ids] x) * (W_b[ids] x), as
 * mx_op_silu_mul(dst_a, dst_a, dst_b) after the two, and dst_b's contents are unspecified (it
 * is scratch). Bit-equal to those separate ops. dst_a, dst_b must not alias each other or x. */
int mx_op_matmul_id2(struct mx_backend *be, struct mx_tensor *dst_a, const struct mx_tensor *w_a,
                     struct mx_tensor *dst_b, const struct mx_tensor *w_b,
                     const struct mx_tensor *x, const struct mx_tensor *ids, bool silu_mul);

/* Embedding lookup: dst[:, t] = dequant(W[:, ids[t]]).
 * W: [n_embd, n_rows] any type with a dequantizer; ids: I32 [T] (checked in range);
 * dst: F32 [n_embd, T]. */
int mx_op_get_rows(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                   const struct mx_tensor *ids);

/* RMSNorm per row: dst[:, r] = x[:, r] / sqrt(mean(x[:, r]^2) + eps) * w (w NULL: no weight).
 * x, dst: F32 [n, rows...]; w: F32 [n]. In place ok. */
int mx_op_rms_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                   const struct mx_tensor *w, float eps);

/* LayerNorm per row: (x - mean) / sqrt(var + eps) * w + b (w, b: F32 [n] or NULL). In place ok. */
int mx_op_layer_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                     const struct mx_tensor *w, const struct mx_tensor *b, float eps);

/* GroupNorm: x, dst F32 [W, H, C, N]; channels split into n_groups groups (C % n_groups == 0);
 * mean/var over W*H*(C/n_groups) per group and image; then * w[c] + b[c] (F32 [C] or NULL).
 * In place ok. */
int mx_op_group_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                     const struct mx_tensor *w, const struct mx_tensor *b, int n_groups,
                     float eps);

/* RoPE on q or k: x, dst F32 [head_dim, n_head, T]; pos: I32 [T] (position of each token).
 * Rotation per struct mx_rope_params, each pair as ggml's FMA builds round it:
 * (fmaf(x0, c, -(x1 s)), fmaf(x0, s, x1 c)). In place ok. */
int mx_op_rope(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
               const struct mx_tensor *pos, const struct mx_rope_params *p);

/* Context shift: re-rotates cached keys as if their positions moved by delta (llama.cpp's K
 * shift): cell c of kcache is rotated by RoPE at position delta[c] (the angles add).
 * kcache: F32, F16 or Q8_0 [head_dim * n_head_kv, n_cells] (a row view of the cache is fine);
 * delta: I32 [n_cells]. In place. Q8_0 rows are dequantized, rotated and requantized. */
int mx_op_kv_shift(struct mx_backend *be, struct mx_tensor *kcache, const struct mx_tensor *delta,
                   int head_dim, const struct mx_rope_params *p);

/* Attention over the KV cache, softmax in F32 (the CPU's fast path is flash-style, an online
 * softmax over blocks of cells, equal to the two-pass reference within ~1e-6 relative):
 *   q: F32 [head_dim, n_head, T] (already roped);   qpos: I32 [T] positions of the queries;
 *   kcache, vcache: F32, F16 or Q8_0 [head_dim * n_head_kv, n_ctx] (one row per cell, all heads
 *     of that cell; row = cell); kpos: I32 [>= n_kv], the position held by each cell, -1 = empty;
 *   dst: F32 [head_dim, n_head, T] (reshape to [n_embd, T] for the output projection).
 * Query head h uses kv head h / (n_head / n_head_kv). Token t attends cell c < p->n_kv iff
 * kpos[c] >= 0 && kpos[c] <= qpos[t] && (window == 0 || qpos[t] - kpos[c] < window).
 * score = scale * q·k; softmax over the attended cells (with p->sinks, each head's sink logit
 * joins the denominator); out = sum w * v. A query that sees no cell gets zeros. Write this batch's K/V into the cache first (mx_op_cpy into a row view) and
 * set kpos for those cells; cells need not be in position order (after a shift/removal). */
int mx_op_attn(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *q,
               const struct mx_tensor *kcache, const struct mx_tensor *vcache,
               const struct mx_tensor *qpos, const struct mx_tensor *kpos,
               const struct mx_attn_params *p);

/* Softmax of scale * x along ne0 per row, in F32 (max-subtracted). x, dst: F32. In place ok. */
int mx_op_softmax(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                  float scale);

/* Elementwise activations, F32, same shape; in place ok. silu(x) = x / (1 + exp(-x));
 * gelu = tanh approximation (ggml_gelu): 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))). */
int mx_op_silu(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x);
int mx_op_gelu(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x);

/* SwiGLU: dst = silu(gate) * up; GEGLU: dst = gelu(gate) * up. F32, all the same shape;
 * dst may alias gate or up. */
int mx_op_silu_mul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *gate,
                   const struct mx_tensor *up);
int mx_op_gelu_mul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *gate,
                   const struct mx_tensor *up);

/* gpt-oss's gated unit (ggml_swiglu_oai): with g = min(gate, limit), u = clamp(up, -limit, limit),
 * dst = g / (1 + e^(-alpha g)) * (u + 1). gpt-oss: alpha 1.702, limit 7. F32, all the same
 * shape; dst may alias gate or up. */
int mx_op_swiglu_oai(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *gate,
                     const struct mx_tensor *up, float alpha, float limit);

/* dst = a + b, dst = a * b; F32. b broadcasts: each b.ne[i] is a.ne[i] or divides it (ggml
 * repeat rule; e.g. a bias [n] over [n, T]). dst has a's shape; in place (dst == a) ok. */
int mx_op_add(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *a,
              const struct mx_tensor *b);
int mx_op_mul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *a,
              const struct mx_tensor *b);

/* dst = s * x, F32, in place ok. */
int mx_op_scale(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x, float s);

/* Copy with conversion: src F32/F16/BF16/Q8_0 -> dst F32/F16/BF16/Q8_0, same element count,
 * both contiguous (shapes may differ, data is taken in memory order; dst.ne0 must suit its block
 * size). The KV-cache write: cpy(view_rows(kcache, cell0, T), k) with k F32 [n_embd_k, T] or
 * [head_dim, n_head_kv, T]. Also moves cache rows (compaction after removing a range): src and
 * dst may overlap only when they have the same type (memmove semantics). */
int mx_op_cpy(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *src);

/* MoE router (llama.cpp's Mixtral path): for each token, ids[:, t] = the k largest logits
 * (descending; ties: lower expert id first), weights[:, t] = softmax over all n_expert logits
 * taken at those ids, divided by their sum when renorm (Mixtral: renorm = true, which equals a
 * softmax over the k selected logits).
 * logits: F32 [n_expert, T]; ids: I32 [k, T]; weights: F32 [k, T]; k = ids.ne0 <= n_expert. */
int mx_op_moe_route(struct mx_backend *be, struct mx_tensor *ids, struct mx_tensor *weights,
                    const struct mx_tensor *logits, bool renorm);

/* Weighted sum of the selected experts' outputs: dst[:, t] = sum_s weights[s, t] * y[:, s, t]
 * (s in slot order, as llama.cpp adds them). y: F32 [n, k, T]; weights: F32 [k, T];
 * dst: F32 [n, T]. */
int mx_op_moe_combine(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *y,
                      const struct mx_tensor *weights);

/* 2-D convolution (cross-correlation, like ggml_conv_2d / PyTorch Conv2d):
 * x: F32 [W, H, C_in, N]; w: F32 or F16 [KW, KH, C_in, C_out]; b: F32 [C_out] or NULL;
 * dst: F32 [W_out, H_out, C_out, N], W_out = (W + 2 pad_x - dil_x (KW - 1) - 1) / stride_x + 1
 * (same for H). Numerics as ggml_conv_2d (im2col in the kernel's type): with an F16 kernel in
 * MX_ACT_GGML mode the input values are rounded to f16 first (MX_ACT_F32: kept f32); products
 * are summed in f32. */
int mx_op_conv2d(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                 const struct mx_tensor *w, const struct mx_tensor *b,
                 const struct mx_conv2d_params *p);

/* Nearest-neighbour upsampling by an integer factor in W and H: x F32 [W, H, C, N] ->
 * dst F32 [W*factor, H*factor, C, N]. */
int mx_op_upsample(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                   int factor);

/* Concatenation along dim (0..3): a, b F32 equal in every other dim; dst F32 with
 * ne[dim] = a.ne[dim] + b.ne[dim]. */
int mx_op_concat(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *a,
                 const struct mx_tensor *b, int dim);

/* Quick GELU (CLIP ViT text encoders, "quick_gelu"): dst = x * sigmoid(1.702 x). F32, same
 * shape, in place ok. */
int mx_op_gelu_quick(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x);

/* Swaps dims 0 and 1 (ggml_cont(ggml_transpose(x))): dst[j, i, k, l] = x[i, j, k, l].
 * x: F32 [a, b, c, d]; dst: F32 [b, a, c, d]; no aliasing. Image features [W*H, C] <-> tokens
 * [C, W*H] in the UNet's transformer blocks. */
int mx_op_transpose(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x);

/* dst = 1 / (1 + exp(-x)), F32, same shape, in place ok (the qwen2moe shared expert's gate). */
int mx_op_sigmoid(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x);

#endif
