/* cpu_backend.c - the CPU backend: host buffers (wrapping the mmap'd model without a copy), the
 * op table, and the glue that runs each op's kernel on the thread pool.
 *
 * Ops execute synchronously on the caller plus the pool's workers, so set/get/sync need no
 * queue. Scratch memory grows to the largest op seen and is kept, so a forward pass allocates
 * only on its first token (and never once the arena and scratch have reached their sizes).
 */
#include "kernels/cpu/cpu.h"

#include <cblas.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/base/util.h"
#include "kernels/devinfo.h"

#define MX_CPU_ALIGN 64

/* ---- scratch --------------------------------------------------------------------------------- */

static void *aligned(size_t size) {
    void *p = NULL;
    size = (size + MX_CPU_ALIGN - 1) / MX_CPU_ALIGN * MX_CPU_ALIGN;
    if (posix_memalign(&p, MX_CPU_ALIGN, size ? size : MX_CPU_ALIGN) != 0)
        return NULL;
    return p;
}

int mx_cpu_reserve(struct mx_cpu *c, size_t per_thread, size_t shared) {
    if (per_thread > c->tbuf_size) {
        for (int i = 0; i < c->n_threads; i++) {
            void *p = aligned(per_thread);
            if (!p)
                return MX_ENOMEM;
            free(c->tbuf[i]);
            c->tbuf[i] = p;
        }
        c->tbuf_size = per_thread;
    }
    if (shared > c->sbuf_size) {
        void *p = aligned(shared);
        if (!p)
            return MX_ENOMEM;
        free(c->sbuf);
        c->sbuf = p;
        c->sbuf_size = shared;
    }
    return 0;
}

/* Per-thread scratch of n floats, with the op's error message on failure. */
static int reserve_f32(struct mx_backend *be, const char *op, int64_t n) {
    size_t bytes;
    int rc = mx_mul_size((size_t)n, sizeof(float), &bytes) ? mx_cpu_reserve(be->ctx, bytes, 0)
                                                           : MX_ENOMEM;
    if (rc < 0) {
        be->last_err.code = rc;
        snprintf(be->last_err.msg, sizeof be->last_err.msg,
                 "%s: cannot allocate %lld floats of scratch per thread", op, (long long)n);
    }
    return rc;
}

/* ---- buffers --------------------------------------------------------------------------------- */

/* Buffers of 2 MiB and more (weights, the KV cache) start on a 2 MiB boundary and ask for
 * transparent huge pages: streaming hundreds of MB per token through 4 KiB pages costs a TLB
 * walk per page, and filling them costs a page fault per 4 KiB. Advice only: where THP is off,
 * nothing changes. */
static void *aligned_big(size_t size) {
    const size_t huge = (size_t)2 << 20;
    if (size < huge)
        return aligned(size);
    void *p = NULL;
    if (posix_memalign(&p, huge, size) != 0)
        return NULL;
#ifdef MADV_HUGEPAGE
    madvise(p, size, MADV_HUGEPAGE);
#endif
    return p;
}

static int cpu_buf_alloc(struct mx_backend *be, size_t size, struct mx_buf **out) {
    struct mx_buf *b = calloc(1, sizeof *b);
    void *p = b ? aligned_big(size) : NULL;
    if (!p) {
        free(b);
        return MX_ENOMEM;
    }
    b->be = be;
    b->base = p;
    b->size = size;
    *out = b;
    return 0;
}

static int cpu_buf_from_host(struct mx_backend *be, void *ptr, size_t size, struct mx_buf **out) {
    struct mx_buf *b = calloc(1, sizeof *b);
    if (!b)
        return MX_ENOMEM;
    b->be = be;
    b->base = ptr;
    b->size = size;
    b->wraps_host = true;
    *out = b;
    return 0;
}

static void cpu_buf_free(struct mx_buf *buf) {
    if (!buf->wraps_host)
        free(buf->base);
    free(buf);
}

static int cpu_set(struct mx_backend *be, const struct mx_tensor *t, const void *src,
                   size_t offset, size_t size) {
    memcpy((char *)t->data + offset, src, size);
    return 0;
}

static int cpu_get(struct mx_backend *be, const struct mx_tensor *t, void *dst, size_t offset,
                   size_t size) {
    memcpy(dst, (const char *)t->data + offset, size);
    return 0;
}

static int cpu_sync(struct mx_backend *be) {
    return 0;
}

/* ---- support matrix -------------------------------------------------------------------------- */

static bool has_dequant(enum mx_type t) {
    const struct mx_type_traits *tr = mx_type_traits(t);
    return tr && tr->to_float;
}

static bool cpu_supports(struct mx_backend *be, enum mx_op op, enum mx_type type) {
    switch (op) {
    case MX_OP_MATMUL:
    case MX_OP_MATMUL_ID:
        /* ggml's vec_dot pairs exist for these; Q8_1/Q8_K are activation-only types */
        switch (type) {
        case MX_TYPE_F32: case MX_TYPE_F16: case MX_TYPE_BF16: case MX_TYPE_Q4_0:
        case MX_TYPE_Q4_1: case MX_TYPE_Q5_0: case MX_TYPE_Q5_1: case MX_TYPE_Q8_0:
        case MX_TYPE_Q2_K: case MX_TYPE_Q3_K: case MX_TYPE_Q4_K: case MX_TYPE_Q5_K:
        case MX_TYPE_Q6_K:
        case MX_TYPE_IQ2_XXS: case MX_TYPE_IQ2_XS: case MX_TYPE_IQ2_S: case MX_TYPE_IQ3_XXS:
        case MX_TYPE_IQ3_S: case MX_TYPE_IQ1_S: case MX_TYPE_IQ1_M: case MX_TYPE_IQ4_NL:
        case MX_TYPE_IQ4_XS: case MX_TYPE_MXFP4:
            return has_dequant(type);
        default:
            return false;
        }
    case MX_OP_GET_ROWS:
        return type == MX_TYPE_F32 || has_dequant(type);
    case MX_OP_ATTN:
    case MX_OP_KV_SHIFT:
        return type == MX_TYPE_F32 || type == MX_TYPE_F16 || type == MX_TYPE_Q8_0;
    case MX_OP_CPY:
        return type == MX_TYPE_F32 || type == MX_TYPE_F16 || type == MX_TYPE_BF16 ||
               type == MX_TYPE_Q8_0;
    case MX_OP_CONV2D:
        return type == MX_TYPE_F32 || type == MX_TYPE_F16;
    default:
        return type == MX_TYPE_F32 && (int)op >= 0 && op < MX_OP_COUNT;
    }
}

/* ---- op glue --------------------------------------------------------------------------------- */

/* Below this many output values an elementwise op runs on the calling thread: a decode step's
 * norms, adds and activations are a few thousand values, less work than waking the workers and
 * meeting them at the barrier (about 150 such ops per token). */
#define MX_SERIAL_MAX ((int64_t)1 << 15)

/* Runs fn on the pool (or, for a small elementwise op, on this thread alone: every task gives
 * the same bits for any thread count) and turns a status a task reported into the op's error.
 * elementwise: the op's cost follows its output size (not attention, conv2d, kv_shift). */
static int run(struct mx_backend *be, mx_pool_fn fn, struct mx_ref_args *a, const char *op,
               bool elementwise) {
    a->cpu = be->ctx;
    a->act_mode = be->act_mode;
    atomic_store(&a->status, 0);
    if (elementwise && mx_tensor_nelements(a->dst) < MX_SERIAL_MAX)
        fn(a, 0, 1);
    else
        mx_pool_run(a->cpu->pool, fn, a);
    int st = atomic_load(&a->status);
    if (st < 0) {
        be->last_err.code = st;
        snprintf(be->last_err.msg, sizeof be->last_err.msg, "%s: bad input data (%s)", op,
                 mx_strerror(st));
    }
    return st;
}

#define ARGS(...) struct mx_ref_args a = {__VA_ARGS__}

static int cpu_get_rows(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                        const struct mx_tensor *ids) {
    ARGS(.dst = dst, .src = {w, ids});
    return run(be, mx_ref_get_rows, &a, "get_rows (token id outside the vocabulary?)", true);
}

static int cpu_rms_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                        const struct mx_tensor *w, float eps) {
    ARGS(.dst = dst, .src = {x, w}, .f = eps);
    return run(be, mx_ref_rms_norm, &a, "rms_norm", true);
}

static int cpu_layer_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                          const struct mx_tensor *w, const struct mx_tensor *b, float eps) {
    ARGS(.dst = dst, .src = {x, w, b}, .f = eps);
    return run(be, mx_ref_layer_norm, &a, "layer_norm", true);
}

static int cpu_group_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                          const struct mx_tensor *w, const struct mx_tensor *b, int n_groups,
                          float eps) {
    ARGS(.dst = dst, .src = {x, w, b}, .f = eps, .i = n_groups);
    return run(be, mx_ref_group_norm, &a, "group_norm", true);
}

static int cpu_rope(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                    const struct mx_tensor *pos, const struct mx_rope_params *p) {
    ARGS(.dst = dst, .src = {x, pos}, .p = p);
    return run(be, mx_ref_rope, &a, "rope", true);
}

static int cpu_kv_shift(struct mx_backend *be, struct mx_tensor *kcache,
                        const struct mx_tensor *delta, int head_dim,
                        const struct mx_rope_params *p) {
    int rc = reserve_f32(be, "kv_shift", kcache->ne[0]);
    if (rc < 0)
        return rc;
    ARGS(.dst = kcache, .src = {delta}, .i = head_dim, .p = p);
    return run(be, mx_ref_kv_shift, &a, "kv_shift", false);
}

/* Whether the dense attention applies: many queries, an F32 cache, no window, and every query
 * sees every cell (each kpos in [0, min qpos]): the UNet's attention with all positions 0. */
static bool dense_ok(const struct mx_tensor *q, const struct mx_tensor *kc,
                     const struct mx_tensor *vc, const struct mx_tensor *qpos,
                     const struct mx_tensor *kpos, const struct mx_attn_params *p) {
    if (q->ne[2] < MX_ATTN_DENSE_MIN_T || kc->type != MX_TYPE_F32 || vc->type != MX_TYPE_F32 ||
        p->window != 0 || p->n_kv <= 0 || p->sinks)
        return false;
    const int32_t *qp = qpos->data, *kp = kpos->data;
    int32_t qmin = INT32_MAX;
    for (int64_t t = 0; t < q->ne[2]; t++)
        qmin = qp[t] < qmin ? qp[t] : qmin;
    for (int64_t c = 0; c < p->n_kv; c++)
        if (kp[c] < 0 || kp[c] > qmin)
            return false;
    return true;
}

static int cpu_attn(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *q,
                    const struct mx_tensor *kcache, const struct mx_tensor *vcache,
                    const struct mx_tensor *qpos, const struct mx_tensor *kpos,
                    const struct mx_attn_params *p) {
    struct mx_cpu *c = be->ctx;
    bool fast = c->kern.attn && p->head_dim % 8 == 0;
    if (c->kern.attn_dense && dense_ok(q, kcache, vcache, qpos, kpos, p)) {
        int rc = reserve_f32(be, "attn", mx_attn_dense_scratch(p->n_kv));
        if (rc < 0)
            return rc;
        ARGS(.dst = dst, .src = {q, kcache, vcache, qpos, kpos}, .p = p);
        return run(be, c->kern.attn_dense, &a, "attn", false);
    }
    if (fast && c->kern.attn_split && q->ne[2] == 1 && p->n_kv >= MX_ATTN_SPLIT_MIN) {
        int64_t per = mx_attn_split_thread_scratch(p->head_dim, p->n_head, p->n_head_kv);
        int64_t shared = mx_attn_split_shared_scratch(p->head_dim, p->n_head, p->n_kv);
        int rc = mx_cpu_reserve(c, (size_t)per * sizeof(float), (size_t)shared * sizeof(float));
        if (rc < 0) {
            be->last_err.code = rc;
            snprintf(be->last_err.msg, sizeof be->last_err.msg,
                     "attn: cannot allocate %lld + %lld floats of scratch", (long long)per,
                     (long long)shared);
            return rc;
        }
        ARGS(.dst = dst, .src = {q, kcache, vcache, qpos, kpos}, .p = p);
        rc = run(be, c->kern.attn_split, &a, "attn", false);
        return rc < 0 ? rc : run(be, c->kern.attn_merge, &a, "attn", false);
    }
    int64_t need = fast ? mx_attn_fast_scratch(p->head_dim, p->n_head / p->n_head_kv)
                        : p->n_kv + 3 * (int64_t)p->head_dim;
    int rc = reserve_f32(be, "attn", need);
    if (rc < 0)
        return rc;
    ARGS(.dst = dst, .src = {q, kcache, vcache, qpos, kpos}, .p = p);
    return run(be, fast ? c->kern.attn : mx_ref_attn, &a, "attn", false);
}

static int cpu_softmax(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                       float scale) {
    ARGS(.dst = dst, .src = {x}, .f = scale);
    return run(be, mx_ref_softmax, &a, "softmax", true);
}

static int cpu_silu(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x) {
    ARGS(.dst = dst, .src = {x});
    return run(be, mx_ref_silu, &a, "silu", true);
}

static int cpu_gelu(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x) {
    ARGS(.dst = dst, .src = {x});
    return run(be, mx_ref_gelu, &a, "gelu", true);
}

static int cpu_silu_mul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *g,
                        const struct mx_tensor *u) {
    ARGS(.dst = dst, .src = {g, u});
    return run(be, mx_ref_silu_mul, &a, "silu_mul", true);
}

static int cpu_swiglu_oai(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *g,
                          const struct mx_tensor *u, float alpha, float limit) {
    ARGS(.dst = dst, .src = {g, u}, .f = alpha, .p = &limit);
    return run(be, mx_ref_swiglu_oai, &a, "swiglu_oai", true);
}

static int cpu_gelu_mul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *g,
                        const struct mx_tensor *u) {
    struct mx_cpu *c = be->ctx;
    ARGS(.dst = dst, .src = {g, u});
    return run(be, c->kern.gelu_mul ? c->kern.gelu_mul : mx_ref_gelu_mul, &a, "gelu_mul", true);
}

static int cpu_add(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                   const struct mx_tensor *y) {
    ARGS(.dst = dst, .src = {x, y});
    return run(be, mx_ref_add, &a, "add", true);
}

static int cpu_mul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                   const struct mx_tensor *y) {
    ARGS(.dst = dst, .src = {x, y});
    return run(be, mx_ref_mul, &a, "mul", true);
}

static int cpu_scale(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                     float s) {
    ARGS(.dst = dst, .src = {x}, .f = s);
    return run(be, mx_ref_scale, &a, "scale", true);
}

static int cpu_cpy(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *src) {
    int rc = reserve_f32(be, "cpy", dst->ne[0]);
    if (rc < 0)
        return rc;
    ARGS(.dst = dst, .src = {src});
    return run(be, mx_ref_cpy, &a, "cpy", true);
}

static int cpu_moe_route(struct mx_backend *be, struct mx_tensor *ids, struct mx_tensor *weights,
                         const struct mx_tensor *logits, bool renorm) {
    int rc = reserve_f32(be, "moe_route", logits->ne[0]);
    if (rc < 0)
        return rc;
    ARGS(.dst = ids, .dst2 = weights, .src = {logits}, .flag = renorm);
    return run(be, mx_ref_moe_route, &a, "moe_route", true);
}

static int cpu_moe_combine(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *y,
                           const struct mx_tensor *weights) {
    ARGS(.dst = dst, .src = {y, weights});
    return run(be, mx_ref_moe_combine, &a, "moe_combine", true);
}

static int cpu_conv2d(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                      const struct mx_tensor *w, const struct mx_tensor *b,
                      const struct mx_conv2d_params *p) {
    struct mx_cpu *c = be->ctx;
    if (c->kern.conv2d)
        return c->kern.conv2d(be, dst, x, w, b, p);
    ARGS(.dst = dst, .src = {x, w, b}, .p = p);
    return run(be, mx_ref_conv2d, &a, "conv2d", false);
}

static int cpu_upsample(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                        int factor) {
    ARGS(.dst = dst, .src = {x}, .i = factor);
    return run(be, mx_ref_upsample, &a, "upsample", true);
}

static int cpu_concat(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                      const struct mx_tensor *y, int dim) {
    ARGS(.dst = dst, .src = {x, y}, .i = dim);
    /* mx_op_concat admits contiguous tensors only: the row-copy kernel always applies */
    return run(be, mx_cpu_concat_rows, &a, "concat", true);
}

static int cpu_gelu_quick(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x) {
    ARGS(.dst = dst, .src = {x});
    return run(be, mx_ref_gelu_quick, &a, "gelu_quick", true);
}

static int cpu_transpose(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x) {
    ARGS(.dst = dst, .src = {x});
    /* mx_op_transpose admits contiguous tensors only: the tiled kernel always applies */
    return run(be, mx_cpu_transpose_tiled, &a, "transpose", true);
}

static int cpu_sigmoid(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x) {
    ARGS(.dst = dst, .src = {x});
    return run(be, mx_ref_sigmoid, &a, "sigmoid", true);
}

/* ---- backend --------------------------------------------------------------------------------- */

static void cpu_free(struct mx_backend *be) {
    struct mx_cpu *c = be->ctx;
    if (c) {
        mx_pool_free(c->pool);
        if (c->tbuf)
            for (int i = 0; i < c->n_threads; i++)
                free(c->tbuf[i]);
        free(c->tbuf);
        free(c->sbuf);
        free(c);
    }
    free(be);
}

static const struct mx_backend_ops cpu_ops = {
    .name = "cpu",
    .free = cpu_free,
    .buf_alloc = cpu_buf_alloc,
    .buf_from_host = cpu_buf_from_host,
    .buf_free = cpu_buf_free,
    .set = cpu_set,
    .get = cpu_get,
    .sync = cpu_sync,
    .prepare_weights = mx_cpu_prepare_weights,
    .supports = cpu_supports,
    .matmul = mx_cpu_matmul,
    .matmul_n = mx_cpu_matmul_n,
    .matmul_id = mx_cpu_matmul_id,
    .matmul_id2 = mx_cpu_matmul_id2,
    .get_rows = cpu_get_rows,
    .rms_norm = cpu_rms_norm,
    .layer_norm = cpu_layer_norm,
    .group_norm = cpu_group_norm,
    .rope = cpu_rope,
    .kv_shift = cpu_kv_shift,
    .attn = cpu_attn,
    .softmax = cpu_softmax,
    .silu = cpu_silu,
    .gelu = cpu_gelu,
    .silu_mul = cpu_silu_mul,
    .swiglu_oai = cpu_swiglu_oai,
    .gelu_mul = cpu_gelu_mul,
    .add = cpu_add,
    .mul = cpu_mul,
    .scale = cpu_scale,
    .cpy = cpu_cpy,
    .moe_route = cpu_moe_route,
    .moe_combine = cpu_moe_combine,
    .conv2d = cpu_conv2d,
    .upsample = cpu_upsample,
    .concat = cpu_concat,
    .gelu_quick = cpu_gelu_quick,
    .transpose = cpu_transpose,
    .sigmoid = cpu_sigmoid,
};

struct mx_backend *mx_backend_cpu_new(int n_threads, struct mx_err *err) {
    if (n_threads <= 0) {
        struct mx_cpu_info ci;
        mx_cpu_info_get(&ci);
        n_threads = ci.n_physical > 0 ? ci.n_physical : 1;
    }
    if (n_threads > MX_CPU_MAX_THREADS) {
        mx_err_set(err, MX_EINVAL, "cpu: %d threads (at most %d)", n_threads,
                   MX_CPU_MAX_THREADS);
        return NULL;
    }
    struct mx_backend *be = calloc(1, sizeof *be);
    struct mx_cpu *c = be ? calloc(1, sizeof *c) : NULL;
    if (c)
        c->tbuf = calloc((size_t)n_threads, sizeof *c->tbuf);
    if (!c || !c->tbuf) {
        if (c)
            free(c);
        free(be);
        mx_err_set(err, MX_ENOMEM, "cpu: out of memory creating the backend");
        return NULL;
    }
    be->ops = &cpu_ops;
    be->ctx = c;
    be->act_mode = MX_ACT_GGML;
    c->n_threads = n_threads;
    mx_cpu_kernels_init(&c->kern, MX_CPU_BEST);
    int rc = mx_pool_new(n_threads, &c->pool);
    if (rc < 0) {
        cpu_free(be);
        mx_err_set(err, rc, "cpu: cannot start %d threads", n_threads);
        return NULL;
    }
    /* Our pool already splits the work: each thread calls sgemm on its own tile, so OpenBLAS
     * must not start threads of its own inside those calls. */
    openblas_set_num_threads(1);
    return be;
}

int mx_backend_cpu_n_threads(const struct mx_backend *be) {
    if (!be || be->ops != &cpu_ops)
        return 1;
    return ((const struct mx_cpu *)be->ctx)->n_threads;
}

const char *mx_backend_cpu_kernels(const struct mx_backend *be) {
    if (!be || be->ops != &cpu_ops)
        return "";
    return ((const struct mx_cpu *)be->ctx)->kern.name;
}
