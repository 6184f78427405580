/* llama_ctx.c - one sequence's state and the forward pass: KV cache, scratch, decode, context
 * shift.
 *
 * The forward reads top to bottom like llama2.c's: embedding, then per block RMSNorm -> Q/K/V ->
 * RoPE -> write K/V into the cache -> attention -> output projection -> residual, RMSNorm -> FFN
 * (dense SwiGLU, or the Mixtral router + the selected experts only) -> residual; final norm and
 * the output matrix. The other architectures' changes (hparams.arch_flags) sit inside the two
 * block helpers, attn_block and ffn_block: q/k/v biases, QK-norm, NEOX rope, the shared expert,
 * granite's scales. Every heavy step is an mx_op_* call on the backend, so the code is the same
 * on every device. Tokens go through in chunks of n_ubatch (the batched GEMM path for prompts;
 * one token per call when generating).
 *
 * gpt-oss blocks add, in the same order as llama.cpp's graph: q/k/v/o biases, attention sinks
 * and a sliding window on every other layer, NEOX rope with YaRN, and gptoss_moe (biased router,
 * softmax over the top-k logits, biased experts with SwiGLU-OAI).
 *
 * The KV cache holds one row per cell (all kv heads of one token) per layer, and kpos[cell], the
 * position of the token it holds. Cells [0, n_used) are in use, in insertion order; removing a
 * range compacts them, a shift re-rotates keys and changes kpos. The attention op masks by
 * position, so the cells need not be sorted.
 *
 * Sliding-window layers (gpt-oss's every other layer, Mistral's all) keep only the window, as
 * llama.cpp's SWA cache does: their K/V rows live in a second, smaller table of n_swa = window +
 * n_ubatch cells with its own positions (kpos_swa), filled in the same insertion order; before a
 * chunk that would not fit, the cells a query at next_pos can no longer see (kpos <= next_pos -
 * window) are dropped by the same compaction that removes a range. So they are dropped n_ubatch
 * at a time, and a decode step moves no rows. Removing a range and shifting apply to both
 * tables; when what is left would need keys the window table has dropped, the whole cache is
 * cleared (n_past 0) and the caller prefills again (llama.cpp's server does the same). swa_full
 * keeps the full table. On a split model each lane holds the rows of its own blocks and, like
 * kpos, its own copy of kpos_swa when it runs a sliding-window block; compaction and shifts move
 * each layer's rows on that layer's backend and rewrite every lane's copies.
 *
 * Memory: the cache and every activation come from two arenas sized at creation (measured with
 * the same calls that allocate), nothing is allocated per token.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/llm/llama.h"
#include "core/llm/llama_impl.h"
#include "core/llm/lora.h"
#include "core/base/log.h"
#include "core/base/util.h"

/* tokens of logits computed per output matmul when every row is wanted */
#define OUT_CHUNK 64

struct mx_llama_ctx {
    struct mx_llama_model *m;   /* borrowed */
    struct mx_backend *be;      /* borrowed (the model's) */
    int64_t n_ctx;              /* cache cells */
    enum mx_type kv_type;       /* cache element type */
    int32_t n_ubatch;           /* tokens per forward chunk */
    struct mx_rope_params rope; /* from the hyperparameters */

    struct mx_tensor *kc, *vc;  /* n_layer caches: [n_head_kv * head_dim, n_ctx], each in the
                                   arena of the lane running its block */
    struct mx_tensor kpos_t;    /* I32 [n_ctx]: position per cell (the current lane's copy) */
    int32_t *kpos;              /* n_ctx: host copy; -1 = empty */
    int64_t n_used;             /* cells [0, n_used) hold tokens */
    /* the sliding-window layers' own cells (see the top): n_swa 0 = they use the main cells */
    int64_t n_swa;              /* cells of their caches: window + n_ubatch, or 0 */
    struct mx_tensor kpos_swa_t;/* I32 [n_swa]: position per window cell (the current lane's
                                   copy; no data on a lane without sliding-window blocks) */
    int32_t *kpos_swa;          /* n_swa: host copy; -1 = empty */
    int64_t n_used_swa;         /* window cells [0, n_used_swa) hold tokens */
    int64_t next_pos;           /* position of the next token fed */

    /* activations, all [.., n_ubatch], in the current lane's arena (lane_use swaps them) */
    struct mx_tensor ids;       /* I32 [U] token ids of the chunk */
    struct mx_tensor pos;       /* I32 [U] positions of the chunk */
    struct mx_tensor delta;     /* I32 [n_ctx] position deltas for a shift */
    struct mx_tensor x;         /* [n_embd, U] residual stream */
    struct mx_tensor xb;        /* [n_embd, U] normed input of a sub-block */
    struct mx_tensor q;         /* [n_head * head_dim, U] */
    struct mx_tensor k;         /* [n_head_kv * head_dim, U] */
    struct mx_tensor v;         /* [n_head_kv * head_dim, U] */
    struct mx_tensor att;       /* [n_head * head_dim, U] attention output */
    struct mx_tensor tmp;       /* [n_embd, U] sub-block output before the residual add */
    struct mx_tensor gate;      /* flat [ffn_width(), 1]: the widest FFN hidden of the chunk
                                   (dense n_ff x U, experts n_ff_exp x k x U, shared n_ff_shexp
                                   x U), seen through flat3() */
    struct mx_tensor up;        /* same */
    struct mx_tensor sh;        /* [n_embd, U] shared expert output (n_ff_shexp > 0) */
    struct mx_tensor shg;       /* [1, U] its sigmoid gate (MX_LLAMA_F_SHEXP_GATE) */
    struct mx_tensor router;    /* [n_expert, U] router logits */
    struct mx_tensor sel;       /* I32 [n_expert_used, U] selected experts */
    struct mx_tensor selw;      /* [n_expert_used, U] their weights */
    struct mx_tensor ey;        /* [n_embd, n_expert_used * U] expert outputs */
    struct mx_tensor ebias;     /* gpt-oss: F32 [max(n_ff_exp, n_embd) * n_expert_used * U], the
                                   selected experts' biases gathered (get_rows) before the add */
    struct mx_tensor logits_t;  /* [n_vocab, OUT_CHUNK] */
    struct mx_tensor lora_a;    /* 1-D: A x of a LoRA adapter (max rank * U * ku; lora.h) */
    struct mx_tensor lora_b;    /* 1-D: B (A x) (largest adapted n_out * U * ku) */
    float *logits;              /* host n_vocab: the last row */
    int32_t *hbuf;              /* host n_ctx scratch for ids/positions/deltas */

    /* A lane per backend the model runs on (core/llm/placement.h): lane 0 the model's be, lane
     * 1 the host of a split (a CPU backend: host memory). Each holds a full set of scratch
     * tensors and the KV cache of the blocks it runs; the scratch fields above are the current
     * lane's, and the forward carries activations across at the boundaries. */
    struct lane {
        struct mx_backend *be;         /* borrowed */
        struct mx_arena arena;         /* its activations */
        struct mx_arena kv_arena;      /* K/V of its blocks, and its kpos */
        struct mx_tensor kpos_t;       /* its copy of the cell positions */
        struct mx_tensor kpos_swa_t;   /* its copy of the window cells' positions (data NULL
                                          when it runs no sliding-window block) */
        struct mx_tensor saved[48];    /* its scratch tensors, in sreg order */
        const struct mx_tensor *rope_freqs; /* its copy of the rope factors (or NULL) */
    } lane[2];
    int n_lanes;                /* 1, or 2 for a split model */
    int cur;                    /* the lane the scratch fields hold now (-1: none yet) */
    struct mx_tensor *sreg[48]; /* the scratch fields alloc_scratch hands out (lane_use) */
    int n_sreg;
};

void mx_llama_ctx_params_default(struct mx_llama_ctx_params *p) {
    memset(p, 0, sizeof *p);
    p->kv_type = MX_TYPE_F16;
    p->n_ubatch = 512;
}

/* Whether layer il attends through a sliding window (attn_block's rule). */
static bool swa_layer(const struct mx_llama_hparams *hp, int il) {
    return hp->sliding_window > 0 &&
           (hp->swa_pattern <= 0 || il % hp->swa_pattern < hp->swa_pattern - 1);
}

/* Cells of the sliding-window layers' table: window + ubatch (a chunk of U tokens at next_pos
 * needs the window before it plus itself), or 0 when the model has no such layer, full is set
 * or that many cells would not be fewer than n_ctx. */
static int64_t swa_cells(const struct mx_llama_hparams *hp, int64_t n_ctx, int32_t n_ubatch,
                         bool full) {
    bool any = false;
    for (int il = 0; il < hp->n_layer; il++)
        any |= swa_layer(hp, il);
    int64_t n = (int64_t)hp->sliding_window + n_ubatch;
    return !any || full || n >= n_ctx ? 0 : n;
}

/* Whether layer il's K/V rows live in the window table. */
static bool in_swa(const struct mx_llama_ctx *c, int il) {
    return c->n_swa > 0 && swa_layer(&c->m->hp, il);
}

/* Elements of the FFN hidden scratch (gate, up): the widest of the dense FFN, the k selected
 * experts and the shared expert, for U tokens. */
static int64_t ffn_width(const struct mx_llama_hparams *hp, int64_t U) {
    int64_t ku = hp->n_expert > 0 ? hp->n_expert_used : 1;
    int64_t w = hp->n_expert > 0 ? (int64_t)hp->n_ff_exp * ku : hp->n_ff;
    if (hp->n_expert > 0)
        w = MX_MAX(w, (int64_t)hp->n_ff_shexp);
    return w * U;
}

/* Notes a scratch field so lane_use can swap in another lane's tensor (once per field).
 * Returns 0, or MX_EINVAL when the table is full (a field was added to alloc_scratch beyond
 * sreg's size: grow sreg and lane.saved). */
static int sreg_add(struct mx_llama_ctx *c, struct mx_tensor *t, struct mx_err *err) {
    for (int i = 0; i < c->n_sreg; i++)
        if (c->sreg[i] == t)
            return 0;
    if (c->n_sreg == (int)MX_ARRAY_LEN(c->sreg))
        return mx_err_set(err, MX_EINVAL, "context: more than %d scratch tensors",
                          (int)MX_ARRAY_LEN(c->sreg));
    c->sreg[c->n_sreg++] = t;
    return 0;
}

/* The lane of backend be (0 unless be is the split's host). */
static int lane_of(const struct mx_llama_ctx *c, const struct mx_backend *be) {
    return c->n_lanes > 1 && be == c->lane[1].be ? 1 : 0;
}

/* Makes lane l current: the scratch fields, kpos_t, kpos_swa_t, the rope factors and be become
 * its. */
static void lane_use(struct mx_llama_ctx *c, int l) {
    if (c->cur == l)
        return;
    for (int i = 0; i < c->n_sreg; i++)
        *c->sreg[i] = c->lane[l].saved[i];
    c->kpos_t = c->lane[l].kpos_t;
    c->kpos_swa_t = c->lane[l].kpos_swa_t;
    c->rope.freq_factors = c->lane[l].rope_freqs;
    c->be = c->lane[l].be;
    c->cur = l;
}

/* Allocates (or, on a measuring arena, counts) every scratch tensor. */
static int alloc_scratch(struct mx_llama_ctx *c, struct mx_arena *a, struct mx_err *err) {
    const struct mx_llama_hparams *hp = &c->m->hp;
    int64_t U = c->n_ubatch;
    int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    int64_t ku = hp->n_expert > 0 ? hp->n_expert_used : 1;
    int rc;
#define A(t, type, n0, n1, name)                                                   \
    do {                                                                           \
        if ((rc = mx_arena_tensor(a, &c->t, type, n0, n1, 1, 1, name, err)) < 0)   \
            return rc;                                                             \
        if ((rc = sreg_add(c, &c->t, err)) < 0)                                    \
            return rc;                                                             \
    } while (0);
    A(ids, MX_TYPE_I32, U, 1, "ids")
    A(pos, MX_TYPE_I32, U, 1, "pos")
    A(delta, MX_TYPE_I32, c->n_ctx, 1, "delta")
    A(x, MX_TYPE_F32, hp->n_embd, U, "x")
    A(xb, MX_TYPE_F32, hp->n_embd, U, "xb")
    A(q, MX_TYPE_F32, Q, U, "q")
    A(k, MX_TYPE_F32, KV, U, "k")
    A(v, MX_TYPE_F32, KV, U, "v")
    A(att, MX_TYPE_F32, Q, U, "att")
    A(tmp, MX_TYPE_F32, hp->n_embd, U, "tmp")
    A(gate, MX_TYPE_F32, ffn_width(hp, U), 1, "gate")
    A(up, MX_TYPE_F32, ffn_width(hp, U), 1, "up")
    if (hp->n_expert > 0 && hp->n_ff_shexp > 0) {
        A(sh, MX_TYPE_F32, hp->n_embd, U, "shexp")
        A(shg, MX_TYPE_F32, 1, U, "shexp gate")
    }
    if (hp->n_expert > 0) {
        A(router, MX_TYPE_F32, hp->n_expert, U, "router")
        A(sel, MX_TYPE_I32, ku, U, "sel")
        A(selw, MX_TYPE_F32, ku, U, "selw")
        A(ey, MX_TYPE_F32, hp->n_embd, U * ku, "ey")
        if (hp->gptoss)
            A(ebias, MX_TYPE_F32, MX_MAX(hp->n_ff_exp, hp->n_embd) * U * ku, 1, "ebias")
    }
    A(logits_t, MX_TYPE_F32, hp->n_vocab, MX_MIN(U, OUT_CHUNK), "logits")
    int64_t la, lb;
    mx_llama_lora_scratch(c->m, U, ku, &la, &lb);
    if (la > 0) {
        A(lora_a, MX_TYPE_F32, la, 1, "lora a")
        A(lora_b, MX_TYPE_F32, lb, 1, "lora b")
    }
#undef A
    return 0;
}

/* Allocates (or counts) the K/V of the blocks lane l runs (every block when there are no lanes:
 * the plan's walk of an unsplit model), the lane's kpos, and its kpos_swa when it runs a block in
 * the window table. */
static int alloc_cache(struct mx_llama_ctx *c, struct mx_arena *a, int l, struct mx_err *err) {
    const struct mx_llama_hparams *hp = &c->m->hp;
    int64_t KV = (int64_t)hp->n_head_kv * hp->head_dim;
    bool any_swa = false;
    int rc;
    for (int il = 0; il < hp->n_layer; il++) {
        if (c->n_lanes > 1 && lane_of(c, c->m->layers[il].be) != l)
            continue;
        any_swa |= in_swa(c, il);
        int64_t cells = in_swa(c, il) ? c->n_swa : c->n_ctx;
        if ((rc = mx_arena_tensor(a, &c->kc[il], c->kv_type, KV, cells, 1, 1, "k cache",
                                  err)) < 0 ||
            (rc = mx_arena_tensor(a, &c->vc[il], c->kv_type, KV, cells, 1, 1, "v cache",
                                  err)) < 0)
            return rc;
    }
    if (any_swa && (rc = mx_arena_tensor(a, &c->lane[l].kpos_swa_t, MX_TYPE_I32, c->n_swa, 1, 1,
                                         1, "kpos swa", err)) < 0)
        return rc;
    return mx_arena_tensor(a, &c->lane[l].kpos_t, MX_TYPE_I32, c->n_ctx, 1, 1, 1, "kpos", err);
}

/* Measures the KV cache of lane l (alloc_cache's walk) into *bytes. Returns 0, alloc_cache's
 * error, or MX_ENOMEM when a size overflows. */
static int need_cache(struct mx_llama_ctx *c, int l, uint64_t *bytes, struct mx_err *err) {
    struct mx_arena a;
    mx_arena_init_measure(&a);
    int rc = alloc_cache(c, &a, l, err);
    if (rc < 0)
        return rc;
    if (a.overflow)
        return mx_err_set(err, MX_ENOMEM, "context: sizes overflow (%lld cells)",
                          (long long)c->n_ctx);
    *bytes = a.used;
    return 0;
}

int mx_llama_ctx_need(const struct mx_llama_hparams *hp, enum mx_type kv_type, int64_t n_ctx,
                      int32_t n_ubatch, int32_t i_dev, struct mx_llama_ctx_bytes *out,
                      struct mx_err *err) {
    memset(out, 0, sizeof *out);
    if (n_ctx < 1 || n_ctx > (int64_t)1 << 24 || n_ubatch < 0 || n_ubatch > 8192)
        return mx_err_set(err, MX_EINVAL, "context: bad size (n_ctx %lld, ubatch %d)",
                          (long long)n_ctx, (int)n_ubatch);
    /* the same walks mx_llama_ctx_new makes, on measuring arenas over a context that only has
     * the sizes (and, for a split, blocks tagged with two stand-in backends that are only
     * compared): the plan cannot drift from what is allocated */
    struct mx_llama_model m = {.hp = *hp};
    struct mx_llama_ctx c = {.m = &m, .n_ctx = n_ctx, .kv_type = kv_type, .n_lanes = 1};
    c.n_ubatch = (int32_t)MX_MIN((int64_t)(n_ubatch ? n_ubatch : 512), n_ctx);
    c.n_swa = swa_cells(hp, n_ctx, c.n_ubatch, false);
    struct mx_backend tag[2]; /* addresses only: lane 0 the device, lane 1 the host */
    struct mx_tensor *kv = calloc((size_t)hp->n_layer * 2, sizeof *kv);
    if (i_dev >= 0)
        m.layers = calloc((size_t)MX_MAX(hp->n_layer, 1), sizeof *m.layers);
    if (!kv || (i_dev >= 0 && !m.layers)) {
        free(kv);
        free(m.layers);
        return mx_err_set(err, MX_ENOMEM, "context: out of memory");
    }
    if (i_dev >= 0) {
        c.n_lanes = 2;
        c.lane[0].be = &tag[0];
        c.lane[1].be = &tag[1];
        for (int il = 0; il < hp->n_layer; il++)
            m.layers[il].be = il >= i_dev ? &tag[0] : &tag[1];
    }
    c.kc = kv;
    c.vc = kv + hp->n_layer;
    struct mx_arena sa;
    mx_arena_init_measure(&sa);
    int rc = need_cache(&c, 0, &out->kv, err);
    if (rc == 0 && c.n_lanes > 1)
        rc = need_cache(&c, 1, &out->kv_host, err);
    if (rc == 0)
        rc = alloc_scratch(&c, &sa, err);
    /* the cache again with every cell in the sliding-window layers */
    uint64_t full0 = 0, full1 = 0;
    int64_t n_swa = c.n_swa;
    c.n_swa = 0;
    if (rc == 0)
        rc = need_cache(&c, 0, &full0, err);
    if (rc == 0 && c.n_lanes > 1)
        rc = need_cache(&c, 1, &full1, err);
    c.n_swa = n_swa;
    free(kv);
    free(m.layers);
    if (rc < 0)
        return rc;
    if (sa.overflow)
        return mx_err_set(err, MX_ENOMEM, "context: sizes overflow (%lld cells)",
                          (long long)n_ctx);
    out->kv_full = full0 + full1;
    /* the scratch arena and the host arrays: kpos and hbuf per cell, kpos_swa per window cell,
     * the last logits row */
    out->buffers = sa.used + (uint64_t)n_ctx * 8 + (uint64_t)c.n_swa * 4 +
                   (uint64_t)hp->n_vocab * sizeof(float);
    return 0;
}

int mx_llama_ctx_new(struct mx_llama_model *m, const struct mx_llama_ctx_params *p,
                     struct mx_llama_ctx **out, struct mx_err *err) {
    *out = NULL;
    const struct mx_llama_hparams *hp = &m->hp;
    if (p->kv_type != MX_TYPE_F32 && p->kv_type != MX_TYPE_F16 && p->kv_type != MX_TYPE_Q8_0)
        return mx_err_set(err, MX_EINVAL, "KV cache: type %s not offered (f32, f16, q8_0)",
                          mx_type_name(p->kv_type));
    if (p->n_ctx < 0 || p->n_ubatch < 0 || p->n_ubatch > 8192)
        return mx_err_set(err, MX_EINVAL, "context: bad size (n_ctx %lld, ubatch %d; ubatch "
                          "at most 8192)", (long long)p->n_ctx, (int)p->n_ubatch);
    int64_t KV = (int64_t)hp->n_head_kv * hp->head_dim;
    size_t row;
    if (!mx_row_size(p->kv_type, KV, &row))
        return mx_err_set(err, MX_EUNSUP, "KV cache: rows of %lld values do not fit type %s",
                          (long long)KV, mx_type_name(p->kv_type));
    static const enum mx_op kv_ops[] = {MX_OP_ATTN, MX_OP_CPY, MX_OP_KV_SHIFT};
    for (size_t i = 0; i < MX_ARRAY_LEN(kv_ops); i++)
        if (!mx_backend_supports(m->be, kv_ops[i], p->kv_type))
            return mx_err_set(err, MX_EUNSUP, "KV cache: backend %s has no %s for %s",
                              mx_backend_name(m->be), mx_op_name(kv_ops[i]),
                              mx_type_name(p->kv_type));
    uint64_t per_cell = (uint64_t)row * 2 * (uint64_t)hp->n_layer + 4;
    int64_t n_ctx = p->n_ctx;
    if (n_ctx == 0) {
        n_ctx = hp->n_ctx_train;
        uint64_t avail = mx_mem_available();
        if (avail > 0 && (uint64_t)n_ctx * per_cell > avail / 2) {
            int64_t cap = (int64_t)(avail / 2 / per_cell);
            int64_t want = MX_MIN((int64_t)hp->n_ctx_train, 65536);
            n_ctx = (uint64_t)want * per_cell < avail * 8 / 10 ? MX_MAX(cap, want) : cap;
            n_ctx = n_ctx / 256 * 256;
            mx_log(MX_LOG_WARN, "context: %d tokens of the model's %d fit in memory",
                   (int)n_ctx, (int)hp->n_ctx_train);
        }
        if (n_ctx < 16)
            n_ctx = 16;
    }
    if (n_ctx > (int64_t)1 << 24)
        return mx_err_set(err, MX_EINVAL, "context: %lld tokens is too many", (long long)n_ctx);
    if (n_ctx > hp->n_ctx_train)
        mx_log(MX_LOG_WARN, "context: %lld tokens is more than the model was trained on (%d)",
               (long long)n_ctx, (int)hp->n_ctx_train);

    struct mx_llama_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return mx_err_set(err, MX_ENOMEM, "context: out of memory");
    c->m = m;
    c->be = m->be;
    c->n_ctx = n_ctx;
    c->kv_type = p->kv_type;
    c->n_ubatch = (int32_t)MX_MIN((int64_t)(p->n_ubatch ? p->n_ubatch : 512), n_ctx);
    c->n_swa = swa_cells(hp, n_ctx, c->n_ubatch, p->swa_full);
    c->rope.n_rot = hp->n_rot;
    c->rope.mode = (hp->arch_flags & MX_LLAMA_F_ROPE_NEOX) || hp->rope_mode == MX_ROPE_NEOX
                       ? MX_ROPE_NEOX : MX_ROPE_NORM;
    c->rope.freq_factors = m->rope_freqs.data ? &m->rope_freqs : NULL;
    c->rope.freq_base = hp->rope_freq_base;
    c->rope.freq_scale = hp->rope_freq_scale;
    c->rope.ext_factor = hp->yarn_ext_factor;
    c->rope.attn_factor = hp->yarn_attn_factor;
    c->rope.beta_fast = hp->yarn_beta_fast;
    c->rope.beta_slow = hp->yarn_beta_slow;
    c->rope.n_ctx_orig = hp->yarn_n_ctx_orig;
    int rc = MX_ENOMEM;
    c->kc = calloc((size_t)hp->n_layer, sizeof *c->kc);
    c->vc = calloc((size_t)hp->n_layer, sizeof *c->vc);
    c->kpos = malloc((size_t)n_ctx * sizeof *c->kpos);
    c->kpos_swa = malloc((size_t)MX_MAX(c->n_swa, 1) * sizeof *c->kpos_swa);
    c->hbuf = malloc((size_t)n_ctx * sizeof *c->hbuf);
    c->logits = malloc((size_t)hp->n_vocab * sizeof *c->logits);
    if (!c->kc || !c->vc || !c->kpos || !c->kpos_swa || !c->hbuf || !c->logits) {
        mx_err_set(err, MX_ENOMEM, "context: out of memory (%lld cells)", (long long)n_ctx);
        goto fail;
    }
    c->n_lanes = m->host ? 2 : 1;
    c->cur = -1;
    c->lane[0].be = m->be;
    c->lane[0].rope_freqs = m->host ? (m->rope_freqs_dev.data ? &m->rope_freqs_dev : NULL)
                                    : c->rope.freq_factors;
    if (m->host) {
        c->lane[1].be = m->host;
        c->lane[1].rope_freqs = c->rope.freq_factors;
    }
    size_t kv_used = 0, sc_used = 0;
    for (int l = 0; l < c->n_lanes; l++) {
        struct lane *ln = &c->lane[l];
        struct mx_arena meas;
        mx_arena_init_measure(&meas);
        if ((rc = alloc_cache(c, &meas, l, err)) < 0)
            goto fail;
        if (meas.overflow) {
            rc = mx_err_set(err, MX_ENOMEM, "KV cache: size overflows (%lld cells)",
                            (long long)n_ctx);
            goto fail;
        }
        if ((rc = mx_arena_init(&ln->kv_arena, ln->be, meas.used, err)) < 0) {
            mx_err_clear(err);
            rc = mx_err_set(err, MX_ENOMEM, "KV cache: needs %.1f MiB on %s for %lld tokens "
                            "(%s); try a smaller -c or --kv-type q8_0", meas.used / 1048576.0,
                            mx_backend_name(ln->be), (long long)n_ctx,
                            mx_type_name(c->kv_type));
            goto fail;
        }
        if ((rc = alloc_cache(c, &ln->kv_arena, l, err)) < 0)
            goto fail;
        mx_arena_init_measure(&meas);
        if ((rc = alloc_scratch(c, &meas, err)) < 0)
            goto fail;
        if ((rc = mx_arena_init(&ln->arena, ln->be, meas.used, err)) < 0) {
            mx_err_clear(err);
            rc = mx_err_set(err, MX_ENOMEM, "context: scratch needs %.1f MiB on %s for ubatch "
                            "%d; try a smaller --ubatch", meas.used / 1048576.0,
                            mx_backend_name(ln->be), (int)c->n_ubatch);
            goto fail;
        }
        if ((rc = alloc_scratch(c, &ln->arena, err)) < 0)
            goto fail;
        for (int i = 0; i < c->n_sreg; i++)
            ln->saved[i] = *c->sreg[i];
        kv_used += ln->kv_arena.used;
        sc_used += ln->arena.used;
    }
    lane_use(c, 0);
    mx_log(MX_LOG_INFO, "context: %lld tokens, KV cache %s %.1f MiB%s, scratch %.1f MiB",
           (long long)n_ctx, mx_type_name(c->kv_type), kv_used / 1048576.0,
           c->n_swa ? " (sliding-window layers keep window + ubatch cells)" : "",
           sc_used / 1048576.0);
    mx_llama_kv_clear(c);
    *out = c;
    return 0;
fail:
    mx_llama_ctx_free(c);
    return rc;
}

void mx_llama_ctx_free(struct mx_llama_ctx *c) {
    if (!c)
        return;
    for (int l = 0; l < 2; l++) {
        mx_arena_deinit(&c->lane[l].arena);
        mx_arena_deinit(&c->lane[l].kv_arena);
    }
    free(c->kc);
    free(c->vc);
    free(c->kpos);
    free(c->kpos_swa);
    free(c->hbuf);
    free(c->logits);
    free(c);
}

int64_t mx_llama_ctx_n_ctx(const struct mx_llama_ctx *c) { return c->n_ctx; }
int64_t mx_llama_ctx_n_past(const struct mx_llama_ctx *c) { return c->next_pos; }
size_t mx_llama_ctx_kv_bytes(const struct mx_llama_ctx *c) {
    return c->lane[0].kv_arena.used + c->lane[1].kv_arena.used;
}
const float *mx_llama_logits(const struct mx_llama_ctx *c) { return c->logits; }

void mx_llama_kv_clear(struct mx_llama_ctx *c) {
    for (int64_t i = 0; i < c->n_ctx; i++)
        c->kpos[i] = -1;
    c->n_used = 0;
    for (int64_t i = 0; i < c->n_swa; i++)
        c->kpos_swa[i] = -1;
    c->n_used_swa = 0;
    c->next_pos = 0;
}

/* ---- views ---------------------------------------------------------------------------------- */

/* The first n elements of a 1-D tensor (or columns of a [n0, U] tensor: pass rows). */
static struct mx_tensor head1d(const struct mx_tensor *t, int64_t n) {
    struct mx_tensor v = *t;
    mx_tensor_init(&v, t->type, n, 1, 1, 1);
    v.buf = t->buf;
    v.data = t->data;
    v.name = t->name;
    return v;
}

/* The first n elements' worth of rows of a 2-D arena tensor, seen as [ne0, ne1, ne2]
 * (ne0 * ne1 * ne2 must be a whole number of its rows). */
static struct mx_tensor rows3(const struct mx_tensor *t, int64_t ne0, int64_t ne1, int64_t ne2) {
    struct mx_tensor v, r;
    mx_tensor_view_rows(t, 0, ne0 * ne1 * ne2 / t->ne[0], &v);
    mx_tensor_reshape(&v, ne0, ne1, ne2, 1, &r);
    return r;
}

/* The first ne0 * ne1 * ne2 elements of a contiguous F32 arena tensor, seen as [ne0, ne1, ne2]
 * (the flat FFN scratch, whose shape depends on the FFN kind). */
static struct mx_tensor flat3(const struct mx_tensor *t, int64_t ne0, int64_t ne1, int64_t ne2) {
    struct mx_tensor v = *t;
    mx_tensor_init(&v, t->type, ne0, ne1, ne2, 1);
    v.buf = t->buf;
    v.data = t->data;
    v.name = t->name;
    return v;
}

static struct mx_tensor rows(const struct mx_tensor *t, int64_t row0, int64_t n) {
    struct mx_tensor v;
    mx_tensor_view_rows(t, row0, n, &v);
    return v;
}

/* Runs op; on failure records "forward: <what>: <backend detail>" and jumps to fail. */
#define OP(what, call)                                                                   \
    do {                                                                                 \
        if ((rc = (call)) < 0) {                                                         \
            mx_err_set(err, rc, "%s: %s", what, mx_backend_last_error(c->be));          \
            goto fail;                                                                   \
        }                                                                                \
    } while (0)

/* ---- the forward pass ----------------------------------------------------------------------- */

/* Copies the first n bytes of scratch field f from lane `from` to lane `to` of a split. Lane 1 is
 * the host (host memory), so the device's get/set moves the bytes in one copy either way. */
static int carry(struct mx_llama_ctx *c, int from, int to, const struct mx_tensor *f, size_t n) {
    int i = 0;
    while (i < c->n_sreg && c->sreg[i] != f)
        i++;
    if (i == c->n_sreg)
        return MX_EINVAL;
    const struct mx_tensor *s = &c->lane[from].saved[i], *d = &c->lane[to].saved[i];
    if (to == 1)
        return mx_tensor_get(c->lane[from].be, s, d->data, 0, n);
    return mx_tensor_set(c->lane[to].be, d, s->data, 0, n);
}

/* Moves the residual stream of T tokens to lane l (when it is elsewhere) and makes l current. */
static int go(struct mx_llama_ctx *c, int l, int64_t T, struct mx_err *err) {
    int rc = 0;
    if (c->cur != l) {
        OP("forward: carry x", carry(c, c->cur, l, &c->x, (size_t)(T * c->x.ne[0]) * 4));
        lane_use(c, l);
    }
    return 0;
fail:
    return rc;
}

/* 0 when weight w lives on the current lane's backend; else MX_EINVAL with the message set. A
 * split runs each weight on its own backend: the wrong lane is a bug, not a slow path (on a GPU
 * it would read host pointers). */
static int on_lane(struct mx_llama_ctx *c, const struct mx_tensor *w) {
    if (w->buf && w->buf->be != c->be)
        return mx_err_set(&c->be->last_err, MX_EINVAL, "weight '%s' lives on another backend "
                          "(%s) than the one running it (%s)", w->name ? w->name : "?",
                          mx_backend_name(w->buf->be), mx_backend_name(c->be));
    return 0;
}

/* dst = W x (ids NULL) or the expert matmul W[ids] x, plus the LoRA adapters' terms for W. */
static int mm(struct mx_llama_ctx *c, struct mx_tensor *dst, const struct mx_tensor *w,
              const struct mx_tensor *x, const struct mx_tensor *ids) {
    int rc = on_lane(c, w);
    if (rc < 0)
        return rc;
    rc = ids ? mx_op_matmul_id(c->be, dst, w, x, ids) : mx_op_matmul(c->be, dst, w, x);
    if (rc < 0 || c->m->n_loras == 0)
        return rc;
    return mx_llama_lora_apply(c->be, c->m, dst, w, x, ids, &c->lora_a, &c->lora_b);
}

/* q, k, v = W_q x, W_k x, W_v x (an attention block's projections) in one backend pass
 * (mx_op_matmul_n: on the CPU one thread barrier instead of three; the same numbers as three mm
 * calls), plus the LoRA adapters' terms for each. */
static int mm3(struct mx_llama_ctx *c, struct mx_tensor *q, const struct mx_tensor *wq,
               struct mx_tensor *k, const struct mx_tensor *wk, struct mx_tensor *v,
               const struct mx_tensor *wv, const struct mx_tensor *x) {
    struct mx_tensor *dst[3] = {q, k, v};
    const struct mx_tensor *w[3] = {wq, wk, wv};
    int rc = 0;
    for (int i = 0; i < 3 && rc == 0; i++)
        rc = on_lane(c, w[i]);
    if (rc == 0)
        rc = mx_op_matmul_n(c->be, 3, dst, w, x);
    for (int i = 0; i < 3 && rc == 0 && c->m->n_loras > 0; i++)
        rc = mx_llama_lora_apply(c->be, c->m, dst[i], w[i], x, NULL, &c->lora_a, &c->lora_b);
    return rc;
}

/* An expert block's gate and up, dst_a = W_a[ids] x and dst_b = W_b[ids] x, in one backend pass
 * (mx_op_matmul_id2: the routed columns gathered and quantized once; the same numbers as two
 * mm calls), plus the LoRA adapters' terms for each. silu_mul: then dst_a = silu(gate) * up (in
 * the same pass without adapters; after their terms with them) and dst_b is scratch. */
static int mm2(struct mx_llama_ctx *c, struct mx_tensor *dst_a, const struct mx_tensor *w_a,
               struct mx_tensor *dst_b, const struct mx_tensor *w_b, const struct mx_tensor *x,
               const struct mx_tensor *ids, bool silu_mul) {
    const bool lora = c->m->n_loras > 0;
    int rc = on_lane(c, w_a);
    if (rc == 0)
        rc = on_lane(c, w_b);
    if (rc == 0)
        rc = mx_op_matmul_id2(c->be, dst_a, w_a, dst_b, w_b, x, ids, silu_mul && !lora);
    if (rc < 0 || !lora)
        return rc;
    rc = mx_llama_lora_apply(c->be, c->m, dst_a, w_a, x, ids, &c->lora_a, &c->lora_b);
    if (rc == 0)
        rc = mx_llama_lora_apply(c->be, c->m, dst_b, w_b, x, ids, &c->lora_a, &c->lora_b);
    if (rc == 0 && silu_mul)
        rc = mx_op_silu_mul(c->be, dst_a, dst_a, dst_b);
    return rc;
}

/* The selected experts of a block on the T tokens of xb, weighted into tmp (sel and selw
 * already routed): gate and up, the gated unit, down, the weighted sum. gpt-oss adds each
 * expert's biases (gathered with get_rows) and uses SwiGLU-OAI (alpha 1.702, limit 7). Runs on
 * the lane holding the experts (--cpu-moe: the host), carrying xb and the routing there and tmp
 * back. Returns 0 or a backend error (err set). */
static int experts(struct mx_llama_ctx *c, const struct mx_llama_layer *L, int64_t T,
                   struct mx_err *err) {
    const struct mx_llama_hparams *hp = &c->m->hp;
    const int64_t ku = hp->n_expert_used, F = hp->n_ff_exp, E = hp->n_embd;
    const int from = c->cur, to = lane_of(c, L->be_exps);
    int rc = 0;
    if (to != from) {
        OP("forward: carry to the experts", carry(c, from, to, &c->xb, (size_t)(E * T) * 4));
        OP("forward: carry to the experts", carry(c, from, to, &c->sel, (size_t)(ku * T) * 4));
        OP("forward: carry to the experts", carry(c, from, to, &c->selw, (size_t)(ku * T) * 4));
        lane_use(c, to);
    }
    struct mx_backend *be = c->be;
    struct mx_tensor sel = rows(&c->sel, 0, T), selw = rows(&c->selw, 0, T);
    struct mx_tensor tmp = rows(&c->tmp, 0, T);
    struct mx_tensor g3 = flat3(&c->gate, F, ku, T), u3 = flat3(&c->up, F, ku, T);
    struct mx_tensor ey3 = rows3(&c->ey, E, ku, T), xb3 = rows3(&c->xb, E, 1, T);
    if (hp->gptoss) {
        OP("forward: expert gate and up",
           mm2(c, &g3, &L->gate_exps, &u3, &L->up_exps, &xb3, &sel, false));
        struct mx_tensor g2 = flat3(&c->gate, F, ku * T, 1), u2 = flat3(&c->up, F, ku * T, 1);
        struct mx_tensor ey2 = rows(&c->ey, 0, ku * T);
        struct mx_tensor bf = flat3(&c->ebias, F, ku * T, 1), be2 = flat3(&c->ebias, E, ku * T, 1);
        struct mx_tensor ids1 = head1d(&c->sel, ku * T);
        OP("forward: expert gate bias", mx_op_get_rows(be, &bf, &L->gate_exps_b, &ids1));
        OP("forward: expert gate bias", mx_op_add(be, &g2, &g2, &bf));
        OP("forward: expert up bias", mx_op_get_rows(be, &bf, &L->up_exps_b, &ids1));
        OP("forward: expert up bias", mx_op_add(be, &u2, &u2, &bf));
        OP("forward: expert swiglu_oai", mx_op_swiglu_oai(be, &g2, &g2, &u2, 1.702f, 7.0f));
        OP("forward: expert down", mm(c, &ey3, &L->down_exps, &g3, &sel));
        OP("forward: expert down bias", mx_op_get_rows(be, &be2, &L->down_exps_b, &ids1));
        OP("forward: expert down bias", mx_op_add(be, &ey2, &ey2, &be2));
    } else { /* gate, up and the gated unit silu(gate) * up in one pass */
        OP("forward: expert gate, up and swiglu",
           mm2(c, &g3, &L->gate_exps, &u3, &L->up_exps, &xb3, &sel, true));
        OP("forward: expert down", mm(c, &ey3, &L->down_exps, &g3, &sel));
    }
    OP("forward: expert sum", mx_op_moe_combine(be, &tmp, &ey3, &selw));
    if (to != from) {
        OP("forward: carry from the experts", carry(c, to, from, &c->tmp, (size_t)(E * T) * 4));
        lane_use(c, from);
    }
    return 0;
fail:
    return rc;
}

/* gpt-oss's expert block on xb (llama.cpp build_moe_ffn with SWIGLU_OAI_MOE and
 * SOFTMAX_WEIGHT): router logits + bias; the top-k logits, their weights a softmax over those k;
 * then the biased experts (experts()). Returns 0 or a backend error (err set). */
static int gptoss_moe(struct mx_llama_ctx *c, const struct mx_llama_layer *L, int64_t T,
                      struct mx_err *err) {
    struct mx_backend *be = c->be;
    int rc = 0;
    struct mx_tensor rl = rows(&c->router, 0, T), sel = rows(&c->sel, 0, T);
    struct mx_tensor selw = rows(&c->selw, 0, T), xb = rows(&c->xb, 0, T);
    OP("forward: router", mm(c, &rl, &L->ffn_gate_inp, &xb, NULL));
    OP("forward: router bias", mx_op_add(be, &rl, &rl, &L->gate_inp_b));
    /* renorm: the softmax over all logits divided by its sum over the k = a softmax over k */
    OP("forward: routing", mx_op_moe_route(be, &sel, &selw, &rl, true));
    return experts(c, L, T, err);
fail:
    return rc;
}

/* Attention sub-block of layer il for the T tokens at cells [n_used, n_used + T) (of the window
 * table, [n_used_swa, ...), when the layer's rows live there): x += the
 * attention output. xb = norm(x); q, k, v = W xb (+ biases); QK-norm (qwen3moe per head, olmoe
 * whole vectors); rotate q, k; cache k, v; attend; W_o (+ bias); granite scales the output. */
static int attn_block(struct mx_llama_ctx *c, int il, int64_t T, const struct mx_tensor *pos_t,
                      struct mx_err *err) {
    const struct mx_llama_model *m = c->m;
    const struct mx_llama_hparams *hp = &m->hp;
    const struct mx_llama_layer *L = &m->layers[il];
    struct mx_backend *be = c->be;
    const bool swa = in_swa(c, il); /* K/V in the window table */
    const int64_t hd = hp->head_dim, cell0 = swa ? c->n_used_swa : c->n_used;
    const struct mx_tensor *kpos_t = swa ? &c->kpos_swa_t : &c->kpos_t;
    int rc = 0;
    struct mx_tensor x = rows(&c->x, 0, T), xb = rows(&c->xb, 0, T), tmp = rows(&c->tmp, 0, T);
    struct mx_tensor q = rows(&c->q, 0, T), k = rows(&c->k, 0, T), v = rows(&c->v, 0, T);
    struct mx_tensor att = rows(&c->att, 0, T);
    /* (head_dim, heads, T) views of the same memory */
    struct mx_tensor q3 = rows3(&c->q, hd, hp->n_head, T), k3 = rows3(&c->k, hd, hp->n_head_kv, T);
    struct mx_tensor att3 = rows3(&c->att, hd, hp->n_head, T);
    struct mx_attn_params ap = {
        .n_head = hp->n_head, .n_head_kv = hp->n_head_kv, .head_dim = (int)hd,
        .n_kv = cell0 + T, .window = hp->sliding_window,
        .scale = hp->attn_scale != 0.0f ? hp->attn_scale : 1.0f / sqrtf((float)hd),
        .sinks = L->sinks.data ? &L->sinks : NULL, /* gpt-oss */
    };
    /* gpt-oss: sliding-window layers (il % pattern < pattern - 1) between full ones */
    if (hp->swa_pattern > 0)
        ap.window = il % hp->swa_pattern < hp->swa_pattern - 1 ? hp->sliding_window : 0;
    OP("forward: attn_norm", mx_op_rms_norm(be, &xb, &x, &L->attn_norm, hp->norm_eps));
    OP("forward: attn_q, attn_k and attn_v", mm3(c, &q, &L->wq, &k, &L->wk, &v, &L->wv, &xb));
    if (L->bq.data)
        OP("forward: attn_q bias", mx_op_add(be, &q, &q, &L->bq));
    if (L->bk.data)
        OP("forward: attn_k bias", mx_op_add(be, &k, &k, &L->bk));
    if (L->bv.data)
        OP("forward: attn_v bias", mx_op_add(be, &v, &v, &L->bv));
    if (hp->arch_flags & MX_LLAMA_F_QK_NORM_HEAD) {
        OP("forward: attn_q_norm", mx_op_rms_norm(be, &q3, &q3, &L->q_norm, hp->norm_eps));
        OP("forward: attn_k_norm", mx_op_rms_norm(be, &k3, &k3, &L->k_norm, hp->norm_eps));
    } else if (hp->arch_flags & MX_LLAMA_F_QK_NORM_FULL) {
        OP("forward: attn_q_norm", mx_op_rms_norm(be, &q, &q, &L->q_norm, hp->norm_eps));
        OP("forward: attn_k_norm", mx_op_rms_norm(be, &k, &k, &L->k_norm, hp->norm_eps));
    }
    OP("forward: rope q", mx_op_rope(be, &q3, &q3, pos_t, &c->rope));
    OP("forward: rope k", mx_op_rope(be, &k3, &k3, pos_t, &c->rope));
    struct mx_tensor kdst = rows(&c->kc[il], cell0, T), vdst = rows(&c->vc[il], cell0, T);
    OP("forward: k cache write", mx_op_cpy(be, &kdst, &k));
    OP("forward: v cache write", mx_op_cpy(be, &vdst, &v));
    /* att: (head_dim, n_head, T) over cells [0, cell0 + T) */
    OP("forward: attention", mx_op_attn(be, &att3, &q3, &c->kc[il], &c->vc[il], pos_t,
                                        kpos_t, &ap));
    OP("forward: attn_output", mm(c, &tmp, &L->wo, &att, NULL));
    if (L->bo.data)
        OP("forward: attn_output bias", mx_op_add(be, &tmp, &tmp, &L->bo));
    if (hp->residual_scale != 0.0f)
        OP("forward: residual scale", mx_op_scale(be, &tmp, &tmp, hp->residual_scale));
    OP("forward: residual", mx_op_add(be, &x, &x, &tmp));
    return 0;
fail:
    return rc;
}

/* dst = W_down (silu(W_gate xb) * (W_up xb)) for the T columns of xb, through the FFN scratch
 * (n_ff hidden units): the dense FFN and the shared expert. */
static int swiglu(struct mx_llama_ctx *c, struct mx_tensor *dst, const struct mx_tensor *xb,
                  const struct mx_tensor *wg, const struct mx_tensor *wu,
                  const struct mx_tensor *wd, int64_t n_ff, int64_t T, struct mx_err *err) {
    struct mx_backend *be = c->be;
    int rc = 0;
    struct mx_tensor g = flat3(&c->gate, n_ff, T, 1), u = flat3(&c->up, n_ff, T, 1);
    OP("forward: ffn_gate", mm(c, &g, wg, xb, NULL));
    OP("forward: ffn_up", mm(c, &u, wu, xb, NULL));
    OP("forward: swiglu", mx_op_silu_mul(be, &g, &g, &u));
    OP("forward: ffn_down", mm(c, dst, wd, &g, NULL));
    return 0;
fail:
    return rc;
}

/* Feed-forward sub-block of layer il: x += FFN(norm(x)). Dense SwiGLU, or the router + the k
 * selected experts (top-k weights renormalised per MX_LLAMA_F_MOE_NORM_W) plus the shared expert
 * (qwen2moe: scaled by sigmoid(W_gate_inp_shexp xb)); granite scales the output. */
static int ffn_block(struct mx_llama_ctx *c, int il, int64_t T, struct mx_err *err) {
    const struct mx_llama_model *m = c->m;
    const struct mx_llama_hparams *hp = &m->hp;
    const struct mx_llama_layer *L = &m->layers[il];
    struct mx_backend *be = c->be;
    int rc = 0;
    struct mx_tensor x = rows(&c->x, 0, T), xb = rows(&c->xb, 0, T), tmp = rows(&c->tmp, 0, T);
    OP("forward: ffn_norm", mx_op_rms_norm(be, &xb, &x, &L->ffn_norm, hp->norm_eps));
    if (hp->gptoss) {
        if ((rc = gptoss_moe(c, L, T, err)) < 0)
            return rc;
    } else if (hp->n_expert == 0) {
        if ((rc = swiglu(c, &tmp, &xb, &L->ffn_gate, &L->ffn_up, &L->ffn_down, hp->n_ff, T,
                         err)) < 0)
            return rc;
    } else {
        /* router logits -> top-k experts and their softmax weights; each token runs only its k
         * experts' SwiGLU; tmp = the weighted sum of their outputs */
        struct mx_tensor rl = rows(&c->router, 0, T), sel = rows(&c->sel, 0, T);
        struct mx_tensor selw = rows(&c->selw, 0, T);
        bool renorm = hp->arch_flags & MX_LLAMA_F_MOE_NORM_W;
        OP("forward: router", mm(c, &rl, &L->ffn_gate_inp, &xb, NULL));
        OP("forward: routing", mx_op_moe_route(be, &sel, &selw, &rl, renorm));
        if ((rc = experts(c, L, T, err)) < 0)
            return rc;
        if (L->gate_shexp.data) {
            /* the shared expert every token runs: sh = SwiGLU_shexp(xb) [* sigmoid gate] */
            struct mx_tensor sh = rows(&c->sh, 0, T);
            if ((rc = swiglu(c, &sh, &xb, &L->gate_shexp, &L->up_shexp, &L->down_shexp,
                             hp->n_ff_shexp, T, err)) < 0)
                return rc;
            if (L->gate_inp_shexp.data) {
                struct mx_tensor shg = rows(&c->shg, 0, T);
                OP("forward: shexp gate", mm(c, &shg, &L->gate_inp_shexp, &xb, NULL));
                OP("forward: shexp sigmoid", mx_op_sigmoid(be, &shg, &shg));
                OP("forward: shexp gating", mx_op_mul(be, &sh, &sh, &shg));
            }
            OP("forward: shexp sum", mx_op_add(be, &tmp, &tmp, &sh));
        }
    }
    if (hp->residual_scale != 0.0f)
        OP("forward: residual scale", mx_op_scale(be, &tmp, &tmp, hp->residual_scale));
    OP("forward: residual", mx_op_add(be, &x, &x, &tmp));
    return 0;
fail:
    return rc;
}

static int swa_make_room(struct mx_llama_ctx *c, int64_t T, struct mx_err *err);

/* One chunk of T <= n_ubatch tokens at the next positions. out_rows: 0 = no logits (a middle
 * chunk of a prompt), 1 = the last row only, 2 = every row (handed to fn). */
static int forward(struct mx_llama_ctx *c, const int32_t *ids, int64_t T, int out_rows,
                   int64_t row_base, mx_llama_logits_fn fn, void *ud, struct mx_err *err) {
    const struct mx_llama_model *m = c->m;
    const struct mx_llama_hparams *hp = &m->hp;
    struct mx_backend *be = c->be;
    const int64_t cell0 = c->n_used;
    int rc = 0;
    if (c->n_swa > 0 && (rc = swa_make_room(c, T, err)) < 0)
        return rc;
    const int64_t swa0 = c->n_used_swa;

    /* inputs: ids, positions, and the positions of the cells this chunk fills */
    for (int64_t i = 0; i < T; i++) {
        c->hbuf[i] = (int32_t)(c->next_pos + i);
        c->kpos[cell0 + i] = (int32_t)(c->next_pos + i);
        if (c->n_swa > 0)
            c->kpos_swa[swa0 + i] = (int32_t)(c->next_pos + i);
    }
    for (int l = c->n_lanes - 1; l >= 0; l--) { /* every lane's copy; ends on lane 0 */
        lane_use(c, l);
        be = c->be;
        struct mx_tensor ids_t = head1d(&c->ids, T), pos_t = head1d(&c->pos, T);
        OP("forward: ids", mx_tensor_set(be, &ids_t, ids, 0, (size_t)T * 4));
        OP("forward: positions", mx_tensor_set(be, &pos_t, c->hbuf, 0, (size_t)T * 4));
        OP("forward: kv positions", mx_tensor_set(be, &c->kpos_t, c->kpos + cell0,
                                                  (size_t)cell0 * 4, (size_t)T * 4));
        if (c->kpos_swa_t.data) /* the lane runs sliding-window blocks */
            OP("forward: window kv positions",
               mx_tensor_set(be, &c->kpos_swa_t, c->kpos_swa + swa0, (size_t)swa0 * 4,
                             (size_t)T * 4));
    }
    lane_use(c, lane_of(c, m->be_embd));
    be = c->be;
    struct mx_tensor ids_t = head1d(&c->ids, T), x = rows(&c->x, 0, T);

    /* token embedding: x = token_embd[ids] (granite: times embedding_scale) */
    OP("forward: embedding", mx_op_get_rows(be, &x, &m->tok_embd, &ids_t));
    if (hp->embd_scale != 0.0f)
        OP("forward: embedding scale", mx_op_scale(be, &x, &x, hp->embd_scale));

    for (int il = 0; il < hp->n_layer; il++) {
        if ((rc = go(c, lane_of(c, m->layers[il].be), T, err)) < 0)
            goto fail;
        struct mx_tensor pos_t = head1d(&c->pos, T); /* the block's lane's */
        if ((rc = attn_block(c, il, T, &pos_t, err)) < 0 || (rc = ffn_block(c, il, T, err)) < 0)
            goto fail;
    }
    if ((rc = go(c, lane_of(c, m->be_out), T, err)) < 0)
        goto fail;
    be = c->be;

    if (out_rows > 0) {
        /* logits = output · norm(x), for the last row or in chunks of every row */
        int64_t first = out_rows == 1 ? T - 1 : 0;
        for (int64_t r0 = first; r0 < T; r0 += c->logits_t.ne[1]) {
            int64_t n = MX_MIN(T - r0, c->logits_t.ne[1]);
            struct mx_tensor xs = rows(&c->x, r0, n), xn = rows(&c->xb, r0, n);
            struct mx_tensor lg = rows(&c->logits_t, 0, n);
            OP("forward: output_norm", mx_op_rms_norm(be, &xn, &xs, &m->output_norm,
                                                      hp->norm_eps));
            OP("forward: output", mm(c, &lg, &m->output, &xn, NULL));
            if (hp->logit_scale != 0.0f) /* granite: logits / logit_scale */
                OP("forward: logit scale", mx_op_scale(be, &lg, &lg, 1.0f / hp->logit_scale));
            size_t rb = (size_t)hp->n_vocab * 4;
            for (int64_t i = 0; i < n; i++) {
                OP("forward: logits", mx_tensor_get(be, &lg, c->logits, (size_t)i * rb, rb));
                if (out_rows == 2 && fn) {
                    rc = fn(ud, row_base + r0 + i, c->logits);
                    if (rc < 0) {
                        mx_err_set(err, rc, "decode: stopped by the caller at row %lld",
                                   (long long)(row_base + r0 + i));
                        c->n_used += T;
                        c->n_used_swa += c->n_swa > 0 ? T : 0;
                        c->next_pos += T;
                        return rc;
                    }
                }
            }
        }
    } else {
        OP("forward: sync", mx_backend_sync(be));
    }
    c->n_used += T;
    c->n_used_swa += c->n_swa > 0 ? T : 0;
    c->next_pos += T;
    return 0;
fail:
    for (int64_t i = 0; i < T; i++) {
        c->kpos[cell0 + i] = -1;
        if (c->n_swa > 0)
            c->kpos_swa[swa0 + i] = -1;
    }
    /* the device copy is rewritten before any later use of these cells */
    return rc;
}

int mx_llama_decode(struct mx_llama_ctx *c, const int32_t *ids, int64_t n, bool all,
                    mx_llama_logits_fn fn, void *ud, struct mx_err *err) {
    const struct mx_llama_hparams *hp = &c->m->hp;
    if (n <= 0)
        return mx_err_set(err, MX_EINVAL, "decode: no tokens");
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= hp->n_vocab)
            return mx_err_set(err, MX_EINVAL, "decode: token %lld id %d out of range [0, %d)",
                              (long long)i, (int)ids[i], (int)hp->n_vocab);
    if (n > c->n_ctx - c->n_used)
        return mx_err_set(err, MX_EFULL, "decode: %lld tokens do not fit: the context holds "
                          "%lld of %lld", (long long)n, (long long)c->n_used,
                          (long long)c->n_ctx);
    if (c->next_pos + n > INT32_MAX)
        return mx_err_set(err, MX_ERANGE, "decode: positions past %d", INT32_MAX);
    for (int64_t i0 = 0; i0 < n; i0 += c->n_ubatch) {
        int64_t T = MX_MIN(n - i0, (int64_t)c->n_ubatch);
        int out = all ? 2 : (i0 + T == n ? 1 : 0);
        int rc = forward(c, ids + i0, T, out, i0, fn, ud, err);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- KV cache edits ------------------------------------------------------------------------- */

/* Writes kpos[0, n) (swa: kpos_swa[0, n)) into every lane's copy (of kpos_swa: every lane that
 * runs a sliding-window block). Returns 0 or the backend's error. */
static int set_kpos(struct mx_llama_ctx *c, bool swa, int64_t n) {
    for (int l = 0; l < c->n_lanes; l++) {
        const struct mx_tensor *t = swa ? &c->lane[l].kpos_swa_t : &c->lane[l].kpos_t;
        if (!t->data || n == 0)
            continue;
        int rc = mx_tensor_set(c->lane[l].be, t, swa ? c->kpos_swa : c->kpos, 0, (size_t)n * 4);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Waits for every lane's queued work. Returns 0 or the first deferred error. */
static int sync_lanes(struct mx_llama_ctx *c) {
    for (int l = 0; l < c->n_lanes; l++) {
        int rc = mx_backend_sync(c->lane[l].be);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int64_t max_pos_plus_one(const struct mx_llama_ctx *c) {
    int64_t mx = 0;
    for (int64_t i = 0; i < c->n_used; i++)
        if (c->kpos[i] + 1 > mx)
            mx = c->kpos[i] + 1;
    return mx;
}

/* Removes the cells holding positions [p0, p1) from the main table (swa false: the layers not in
 * the window table) or the window table, moving each run of kept cells down over them with the
 * backend of each layer's lane (same type: memmove semantics), and rewrites every lane's copy
 * of the table's positions. Returns 0 or a backend error (err set). */
static int compact(struct mx_llama_ctx *c, bool swa, int64_t p0, int64_t p1,
                   struct mx_err *err) {
    int32_t *kpos = swa ? c->kpos_swa : c->kpos;
    int64_t *n_used = swa ? &c->n_used_swa : &c->n_used;
    int64_t n_cells = swa ? c->n_swa : c->n_ctx;
    int rc = 0;
    int64_t dst = 0, i = 0;
    while (i < *n_used) {
        if (kpos[i] >= p0 && kpos[i] < p1) {
            i++;
            continue;
        }
        int64_t j = i;
        while (j < *n_used && !(kpos[j] >= p0 && kpos[j] < p1))
            j++;
        if (dst != i) {
            for (int il = 0; il < c->m->hp.n_layer; il++) {
                if (in_swa(c, il) != swa)
                    continue;
                struct mx_tensor ks = rows(&c->kc[il], i, j - i), kd = rows(&c->kc[il], dst, j - i);
                struct mx_tensor vs = rows(&c->vc[il], i, j - i), vd = rows(&c->vc[il], dst, j - i);
                struct mx_backend *lb = c->kc[il].buf->be; /* the lane of the block */
                OP("kv remove: move keys", mx_op_cpy(lb, &kd, &ks));
                OP("kv remove: move values", mx_op_cpy(lb, &vd, &vs));
            }
            memmove(kpos + dst, kpos + i, (size_t)(j - i) * sizeof *kpos);
        }
        dst += j - i;
        i = j;
    }
    for (int64_t t = dst; t < *n_used; t++)
        kpos[t] = -1;
    *n_used = dst;
    OP("kv remove: positions", set_kpos(c, swa, n_cells));
    return 0;
fail:
    return rc;
}

/* Before a chunk of T tokens at next_pos: drops the window cells no query from next_pos on can
 * see (kpos <= next_pos - window) when the chunk would not fit. Returns 0, MX_EFULL when it
 * still does not fit (positions not in order: a shift or an edit left cells ahead of next_pos),
 * or a backend error. */
static int swa_make_room(struct mx_llama_ctx *c, int64_t T, struct mx_err *err) {
    if (c->n_used_swa + T <= c->n_swa)
        return 0;
    int rc = compact(c, true, 0, c->next_pos - c->m->hp.sliding_window + 1, err);
    if (rc < 0)
        return rc;
    if (c->n_used_swa + T > c->n_swa)
        return mx_err_set(err, MX_EFULL, "decode: the sliding-window cache holds %lld of %lld "
                          "cells and %lld more do not fit", (long long)c->n_used_swa,
                          (long long)c->n_swa, (long long)T);
    return 0;
}

int mx_llama_kv_remove(struct mx_llama_ctx *c, int64_t p0, int64_t p1, struct mx_err *err) {
    if (p1 < 0)
        p1 = INT64_MAX;
    if (p0 < 0)
        p0 = 0;
    int rc = compact(c, false, p0, p1, err);
    if (rc == 0 && c->n_swa > 0)
        rc = compact(c, true, p0, p1, err);
    if (rc < 0)
        return rc;
    c->next_pos = max_pos_plus_one(c);
    if (c->n_swa > 0) {
        /* the next token sees positions (next_pos - window, next_pos): every one the main table
         * still holds must be in the window table too (it holds a subset) */
        int64_t lo = c->next_pos - c->m->hp.sliding_window + 1, n_main = 0, n_win = 0;
        for (int64_t i = 0; i < c->n_used; i++)
            n_main += c->kpos[i] >= lo;
        for (int64_t i = 0; i < c->n_used_swa; i++)
            n_win += c->kpos_swa[i] >= lo;
        if (n_main != n_win) {
            mx_log(MX_LOG_INFO, "kv remove: the sliding-window layers no longer hold the window "
                   "before position %lld; the cache is cleared", (long long)c->next_pos);
            mx_llama_kv_clear(c);
            OP("kv remove: positions", set_kpos(c, false, c->n_ctx));
            OP("kv remove: window positions", set_kpos(c, true, c->n_swa));
        }
    }
    return 0;
fail:
    return rc;
}

/* Adds delta to the positions in [p0, p1) of one table (as compact's swa) and re-rotates its
 * layers' keys there, each on its block's lane (its deltas and rope factors). Returns 0 or a
 * backend error (err set). */
static int shift_table(struct mx_llama_ctx *c, bool swa, int64_t p0, int64_t p1, int64_t delta,
                       struct mx_err *err) {
    int32_t *kpos = swa ? c->kpos_swa : c->kpos;
    int64_t n_used = swa ? c->n_used_swa : c->n_used;
    int rc = 0;
    if (n_used == 0)
        return 0;
    for (int64_t i = 0; i < n_used; i++)
        c->hbuf[i] = (kpos[i] >= p0 && kpos[i] < p1) ? (int32_t)delta : 0;
    for (int l = 0; l < c->n_lanes; l++) {
        lane_use(c, l);
        OP("kv shift: deltas", mx_tensor_set(c->be, &c->delta, c->hbuf, 0, (size_t)n_used * 4));
    }
    /* re-rotate only runs of affected cells, so other cells of a quantized cache are untouched */
    int64_t i = 0;
    while (i < n_used) {
        if (c->hbuf[i] == 0) {
            i++;
            continue;
        }
        int64_t j = i;
        while (j < n_used && c->hbuf[j] != 0)
            j++;
        for (int il = 0; il < c->m->hp.n_layer; il++) {
            if (in_swa(c, il) != swa)
                continue;
            lane_use(c, lane_of(c, c->kc[il].buf->be)); /* the block's deltas and rope */
            struct mx_tensor d = head1d(&c->delta, j - i);
            d.data = (char *)c->delta.data + i * 4;
            struct mx_tensor kr = rows(&c->kc[il], i, j - i);
            OP("kv shift: rotate keys",
               mx_op_kv_shift(c->be, &kr, &d, c->m->hp.head_dim, &c->rope));
        }
        i = j;
    }
    for (int64_t t = 0; t < n_used; t++)
        kpos[t] += c->hbuf[t];
    OP("kv shift: positions", set_kpos(c, swa, n_used));
    /* the deltas buffers are rewritten by the next table's call */
    OP("kv shift: sync", sync_lanes(c));
    return 0;
fail:
    return rc;
}

int mx_llama_kv_shift(struct mx_llama_ctx *c, int64_t p0, int64_t p1, int64_t delta,
                      struct mx_err *err) {
    if (p1 < 0)
        p1 = INT64_MAX;
    if (delta == 0)
        return 0;
    for (int64_t i = 0; i < c->n_used; i++)
        if (c->kpos[i] >= p0 && c->kpos[i] < p1 &&
            (c->kpos[i] + delta < 0 || c->kpos[i] + delta > INT32_MAX))
            return mx_err_set(err, MX_EINVAL, "kv shift: position %d + %lld out of range",
                              (int)c->kpos[i], (long long)delta);
    int rc = shift_table(c, false, p0, p1, delta, err);
    if (rc == 0 && c->n_swa > 0)
        rc = shift_table(c, true, p0, p1, delta, err);
    if (rc < 0)
        return rc;
    c->next_pos = max_pos_plus_one(c);
    return 0;
}

int mx_llama_kv_discard(struct mx_llama_ctx *c, int64_t n_keep, int64_t n_discard,
                        struct mx_err *err) {
    if (n_keep < 0 || n_discard < 0)
        return mx_err_set(err, MX_EINVAL, "kv discard: bad range (%lld, %lld)",
                          (long long)n_keep, (long long)n_discard);
    if (n_discard == 0)
        return 0;
    int rc = mx_llama_kv_remove(c, n_keep, n_keep + n_discard, err);
    if (rc < 0)
        return rc;
    return mx_llama_kv_shift(c, n_keep + n_discard, -1, -n_discard, err);
}

/* ---- cache state (snapshots) ---------------------------------------------------------------- */

#define KV_STATE_MAGIC 0x564b584du /* "MXKV" */
#define KV_STATE_CHUNK ((size_t)4 << 20) /* host bounce buffer: devices copy rows through it */

/* The fixed part of a serialised cache, little-endian host layout. */
struct kv_state_hdr {
    uint32_t magic;       /* KV_STATE_MAGIC */
    uint32_t n_layer;     /* layers that follow */
    uint32_t kv_type;     /* enum mx_type of the rows */
    uint32_t n_used_swa;  /* window cells that follow (0 without a window table; older
                             snapshots wrote 0 here, a reserved word) */
    uint64_t k_row;       /* bytes of one cell's K row (all kv heads) */
    uint64_t v_row;       /* bytes of one cell's V row */
    int64_t n_used;       /* cells [0, n_used) follow */
    int64_t next_pos;     /* position of the next token */
};

/* Cells of layer il's rows in a snapshot: the window table's or the main table's. */
static int64_t state_rows(const struct mx_llama_ctx *c, int il) {
    return in_swa(c, il) ? c->n_used_swa : c->n_used;
}

size_t mx_llama_kv_state_size(const struct mx_llama_ctx *c) {
    size_t bytes = sizeof(struct kv_state_hdr) + (size_t)(c->n_used + c->n_used_swa) * 4;
    for (int il = 0; il < c->m->hp.n_layer; il++)
        bytes += (size_t)state_rows(c, il) * (c->kc[il].nb[1] + c->vc[il].nb[1]);
    return bytes;
}

/* Streams rows [0, n) of t through a bounce buffer to fn (save) or from fn (load). */
static int kv_rows_io(struct mx_llama_ctx *c, const struct mx_tensor *t, int64_t n, bool load,
                      void *bounce, mx_llama_write_fn wfn, mx_llama_read_fn rfn, void *ud,
                      struct mx_err *err) {
    size_t row = t->nb[1], per = MX_MAX((size_t)1, KV_STATE_CHUNK / row);
    int rc = 0;
    for (int64_t i = 0; i < n; i += (int64_t)per) {
        size_t k = (size_t)MX_MIN((int64_t)per, n - i), bytes = k * row;
        if (load) {
            if ((rc = rfn(ud, bounce, bytes, err)) < 0)
                return rc;
            OP("kv state: write rows", mx_tensor_set(t->buf->be, t, bounce, (size_t)i * row,
                                                     bytes));
        } else {
            OP("kv state: read rows", mx_tensor_get(t->buf->be, t, bounce, (size_t)i * row,
                                                    bytes));
            if ((rc = wfn(ud, bounce, bytes, err)) < 0)
                return rc;
        }
    }
    return 0;
fail:
    return rc;
}

int mx_llama_kv_state_save(const struct mx_llama_ctx *c, mx_llama_write_fn fn, void *ud,
                           struct mx_err *err) {
    struct mx_llama_ctx *cm = (struct mx_llama_ctx *)c; /* the backend calls take it non-const */
    struct kv_state_hdr h = {
        .magic = KV_STATE_MAGIC, .n_layer = (uint32_t)c->m->hp.n_layer,
        .kv_type = (uint32_t)c->kv_type, .k_row = c->kc[0].nb[1], .v_row = c->vc[0].nb[1],
        .n_used = c->n_used, .next_pos = c->next_pos, .n_used_swa = (uint32_t)c->n_used_swa,
    };
    int rc = fn(ud, &h, sizeof h, err);
    if (rc == 0 && c->n_used > 0)
        rc = fn(ud, c->kpos, (size_t)c->n_used * sizeof *c->kpos, err);
    if (rc == 0 && c->n_used_swa > 0)
        rc = fn(ud, c->kpos_swa, (size_t)c->n_used_swa * sizeof *c->kpos_swa, err);
    if (rc < 0 || c->n_used == 0)
        return rc;
    void *bounce = malloc(MX_MAX(KV_STATE_CHUNK, (size_t)MX_MAX(h.k_row, h.v_row)));
    if (!bounce)
        return mx_err_set(err, MX_ENOMEM, "kv state: out of memory");
    for (int il = 0; il < c->m->hp.n_layer && rc == 0; il++) {
        int64_t n = state_rows(c, il);
        rc = kv_rows_io(cm, &c->kc[il], n, false, bounce, fn, NULL, ud, err);
        if (rc == 0)
            rc = kv_rows_io(cm, &c->vc[il], n, false, bounce, fn, NULL, ud, err);
    }
    free(bounce);
    return rc;
}

int mx_llama_kv_state_load(struct mx_llama_ctx *c, size_t size, mx_llama_read_fn fn, void *ud,
                           struct mx_err *err) {
    struct kv_state_hdr h;
    void *bounce = NULL;
    int rc;
    mx_llama_kv_clear(c);
    if (size < sizeof h) {
        rc = mx_err_set(err, MX_EFORMAT, "kv state: %zu bytes, header needs %zu", size,
                        sizeof h);
        goto fail;
    }
    if ((rc = fn(ud, &h, sizeof h, err)) < 0)
        goto fail;
    if (h.magic != KV_STATE_MAGIC || h.n_layer != (uint32_t)c->m->hp.n_layer ||
        h.kv_type != (uint32_t)c->kv_type || h.k_row != c->kc[0].nb[1] ||
        h.v_row != c->vc[0].nb[1] || h.n_used < 0 || h.n_used > c->n_ctx ||
        h.next_pos < h.n_used || h.next_pos > INT32_MAX || (int64_t)h.n_used_swa > c->n_swa ||
        (int64_t)h.n_used_swa > h.n_used) {
        rc = mx_err_set(err, MX_EFORMAT, "kv state: does not fit this context (%u layers, type "
                        "%u, rows %llu/%llu, %lld cells, %u window cells; context: %d layers, "
                        "type %d, rows %zu/%zu, %lld cells, %lld window cells)", h.n_layer,
                        h.kv_type, (unsigned long long)h.k_row, (unsigned long long)h.v_row,
                        (long long)h.n_used, h.n_used_swa, (int)c->m->hp.n_layer,
                        (int)c->kv_type, c->kc[0].nb[1], c->vc[0].nb[1], (long long)c->n_ctx,
                        (long long)c->n_swa);
        goto fail;
    }
    c->n_used = h.n_used; /* so mx_llama_kv_state_size describes what must follow */
    c->n_used_swa = h.n_used_swa;
    if (mx_llama_kv_state_size(c) != size) {
        c->n_used = c->n_used_swa = 0;
        rc = mx_err_set(err, MX_EFORMAT, "kv state: %zu bytes for %lld cells, expected %zu",
                        size, (long long)h.n_used, mx_llama_kv_state_size(c));
        goto fail;
    }
    c->n_used = c->n_used_swa = 0;
    if (h.n_used == 0)
        return 0;
    if ((rc = fn(ud, c->kpos, (size_t)h.n_used * sizeof *c->kpos, err)) < 0)
        goto fail;
    if (h.n_used_swa > 0 &&
        (rc = fn(ud, c->kpos_swa, (size_t)h.n_used_swa * sizeof *c->kpos_swa, err)) < 0)
        goto fail;
    for (int64_t i = 0; i < h.n_used + (int64_t)h.n_used_swa; i++) {
        int32_t kp = i < h.n_used ? c->kpos[i] : c->kpos_swa[i - h.n_used];
        if (kp < 0 || kp >= h.next_pos) {
            rc = mx_err_set(err, MX_EFORMAT, "kv state: cell %lld position %d outside [0, %lld)",
                            (long long)i, (int)kp, (long long)h.next_pos);
            goto fail;
        }
    }
    bounce = malloc(MX_MAX(KV_STATE_CHUNK, (size_t)MX_MAX(h.k_row, h.v_row)));
    if (!bounce) {
        rc = mx_err_set(err, MX_ENOMEM, "kv state: out of memory");
        goto fail;
    }
    for (int il = 0; il < c->m->hp.n_layer; il++) {
        int64_t n = in_swa(c, il) ? (int64_t)h.n_used_swa : h.n_used;
        if ((rc = kv_rows_io(c, &c->kc[il], n, true, bounce, NULL, fn, ud, err)) < 0 ||
            (rc = kv_rows_io(c, &c->vc[il], n, true, bounce, NULL, fn, ud, err)) < 0)
            goto fail;
    }
    free(bounce);
    bounce = NULL;
    OP("kv state: positions", set_kpos(c, false, c->n_ctx));
    OP("kv state: window positions", set_kpos(c, true, c->n_swa));
    OP("kv state: sync", sync_lanes(c));
    c->n_used = h.n_used;
    c->n_used_swa = h.n_used_swa;
    c->next_pos = h.next_pos;
    return 0;
fail:
    free(bounce);
    mx_llama_kv_clear(c);
    return rc;
}
