/* backend.c - the device-independent half of kernels/backend.h: tensor bookkeeping, buffers,
 * the scratch arena, and mx_op_* wrappers that check shapes and types once and then dispatch to
 * be->ops. Backends can therefore assume well-formed arguments; every check that depends on
 * untrusted data (ids in range) is left to the backend because the data may live on a device.
 */
#include "kernels/backend.h"

#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/base/util.h"

/* ---- tensors --------------------------------------------------------------------------------- */

static const char *tname(const struct mx_tensor *t) {
    return t && t->name ? t->name : "tensor";
}

int mx_tensor_init(struct mx_tensor *t, enum mx_type type, int64_t ne0, int64_t ne1,
                   int64_t ne2, int64_t ne3) {
    memset(t, 0, sizeof *t);
    const struct mx_type_traits *tr = mx_type_traits(type);
    int64_t ne[4] = {ne0, ne1, ne2, ne3};
    if (!tr || tr->blck_size <= 0 || tr->type_size == 0)
        return MX_EINVAL;
    for (int i = 0; i < 4; i++)
        if (ne[i] <= 0)
            ne[i] = 1;
    if (ne[0] % tr->blck_size != 0)
        return MX_EINVAL;
    size_t nb = tr->type_size;
    size_t row;
    if (!mx_mul_size((size_t)(ne[0] / tr->blck_size), nb, &row))
        return MX_EINVAL;
    t->type = type;
    t->nb[0] = nb;
    t->nb[1] = row;
    for (int i = 0; i < 4; i++)
        t->ne[i] = ne[i];
    for (int i = 2; i < 4; i++)
        if (!mx_mul_size(t->nb[i - 1], (size_t)ne[i - 1], &t->nb[i]))
            return MX_EINVAL;
    size_t total;
    if (!mx_mul_size(t->nb[3], (size_t)ne[3], &total))
        return MX_EINVAL;
    return 0;
}

int64_t mx_tensor_nelements(const struct mx_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

int64_t mx_tensor_nrows(const struct mx_tensor *t) {
    return t->ne[1] * t->ne[2] * t->ne[3];
}

size_t mx_tensor_row_size(const struct mx_tensor *t) {
    const struct mx_type_traits *tr = mx_type_traits(t->type);
    if (!tr || tr->blck_size <= 0)
        return 0;
    return (size_t)(t->ne[0] / tr->blck_size) * tr->type_size;
}

size_t mx_tensor_nbytes(const struct mx_tensor *t) {
    size_t n = mx_tensor_row_size(t);
    for (int i = 1; i < 4; i++)
        if (t->ne[i] > 1)
            n += (size_t)(t->ne[i] - 1) * t->nb[i];
    return n;
}

bool mx_tensor_is_contiguous(const struct mx_tensor *t) {
    const struct mx_type_traits *tr = mx_type_traits(t->type);
    if (!tr)
        return false;
    if (t->nb[0] != tr->type_size)
        return false;
    size_t expect = mx_tensor_row_size(t);
    for (int i = 1; i < 4; i++) {
        if (t->ne[i] > 1 && t->nb[i] != expect)
            return false;
        expect *= (size_t)t->ne[i];
    }
    return true;
}

int mx_tensor_view_rows(const struct mx_tensor *t, int64_t row0, int64_t n,
                        struct mx_tensor *view) {
    if (!mx_tensor_is_contiguous(t) || row0 < 0 || n <= 0 || row0 > mx_tensor_nrows(t) - n)
        return MX_EINVAL;
    if (t->layout != MX_LAYOUT_GGML && (row0 % 8 != 0 || n % 8 != 0))
        return MX_EINVAL; /* a view must not cut through an 8-row group */
    struct mx_tensor v = *t;
    size_t row = mx_tensor_row_size(t);
    v.ne[1] = n;
    v.ne[2] = v.ne[3] = 1;
    v.nb[1] = row;
    v.nb[2] = v.nb[3] = row * (size_t)n;
    v.data = t->data ? (char *)t->data + (size_t)row0 * row : NULL;
    *view = v;
    return 0;
}

int mx_tensor_reshape(const struct mx_tensor *t, int64_t ne0, int64_t ne1, int64_t ne2,
                      int64_t ne3, struct mx_tensor *view) {
    if (!mx_tensor_is_contiguous(t))
        return MX_EINVAL;
    struct mx_tensor v;
    int rc = mx_tensor_init(&v, t->type, ne0, ne1, ne2, ne3);
    if (rc < 0 || mx_tensor_nelements(&v) != mx_tensor_nelements(t))
        return MX_EINVAL;
    v.buf = t->buf;
    v.data = t->data;
    v.name = t->name;
    v.layout = t->layout;
    *view = v;
    return 0;
}

/* ---- ops: names, backend calls --------------------------------------------------------------- */

static const char *const op_names[] = {
#define MX_OP_NAME(N, n) #n,
    MX_OPS(MX_OP_NAME)
#undef MX_OP_NAME
};

const char *mx_op_name(int op) {
    return op >= 0 && op < MX_OP_COUNT ? op_names[op] : "?";
}

void mx_backend_free(struct mx_backend *be) {
    if (be && be->ops->free)
        be->ops->free(be);
}

const char *mx_backend_name(const struct mx_backend *be) {
    return be->ops->name;
}

/* Whether the backend fills the op's entry at all (an op added to the interface after a backend
 * was written is NULL there): supports() then answers no, so a model needing it fails at load,
 * not at its first token. */
static bool has_op(const struct mx_backend_ops *o, enum mx_op op) {
    switch (op) {
#define MX_OP_HAS(N, n) case MX_OP_##N: return o->n != NULL;
    MX_OPS(MX_OP_HAS)
#undef MX_OP_HAS
    default: return false;
    }
}

bool mx_backend_supports(struct mx_backend *be, enum mx_op op, enum mx_type type) {
    if ((int)op < 0 || op >= MX_OP_COUNT || !be->ops->supports || !has_op(be->ops, op))
        return false;
    return be->ops->supports(be, op, type);
}

int mx_backend_set_act_mode(struct mx_backend *be, int mode) {
    if (mode != MX_ACT_GGML && mode != MX_ACT_F32)
        return MX_EINVAL;
    be->act_mode = mode;
    return 0;
}

int mx_backend_sync(struct mx_backend *be) {
    return be->ops->sync ? be->ops->sync(be) : 0;
}

const char *mx_backend_last_error(const struct mx_backend *be) {
    return be->last_err.msg;
}

/* Records an op failure on the backend ("rope: ..."); returns code. Unlike mx_err_set this
 * overwrites: the last failure is the one the caller is looking at. */
static int op_fail(struct mx_backend *be, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int op_fail(struct mx_backend *be, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    be->last_err.code = code;
    vsnprintf(be->last_err.msg, sizeof be->last_err.msg, fmt, ap);
    va_end(ap);
    return code;
}

/* ---- buffers --------------------------------------------------------------------------------- */

int mx_buf_alloc(struct mx_backend *be, size_t size, struct mx_buf **out, struct mx_err *err) {
    *out = NULL;
    if (size == 0)
        return mx_err_set(err, MX_EINVAL, "%s: buffer of 0 bytes", be->ops->name);
    int rc = be->ops->buf_alloc(be, size, out);
    if (rc < 0)
        return mx_err_set(err, rc, "%s: cannot allocate %zu bytes (%.1f MiB)", be->ops->name, size,
                          (double)size / 1048576.0);
    return 0;
}

int mx_buf_from_host(struct mx_backend *be, void *ptr, size_t size, struct mx_buf **out,
                     struct mx_err *err) {
    *out = NULL;
    if (!ptr || size == 0)
        return mx_err_set(err, MX_EINVAL, "%s: empty host buffer", be->ops->name);
    int rc = be->ops->buf_from_host(be, ptr, size, out);
    if (rc < 0)
        return mx_err_set(err, rc, "%s: cannot map %zu bytes of host memory", be->ops->name,
                          size);
    return 0;
}

void mx_buf_free(struct mx_buf *buf) {
    if (buf)
        buf->be->ops->buf_free(buf);
}

int mx_backend_prepare_weights(struct mx_backend *be, struct mx_tensor *const *ws, int n,
                               struct mx_buf **out, struct mx_err *err) {
    *out = NULL;
    if (!be->ops->prepare_weights || n <= 0)
        return 0;
    int rc = be->ops->prepare_weights(be, ws, n, out);
    if (rc < 0)
        return mx_err_set(err, rc, "%s: preparing %d weights: %s", be->ops->name, n,
                          be->last_err.msg[0] ? be->last_err.msg : mx_strerror(rc));
    return 0;
}

static int check_span(struct mx_backend *be, const struct mx_tensor *t, size_t offset,
                      size_t size, const char *what) {
    size_t end;
    if (!t->data || !mx_add_size(offset, size, &end) || end > mx_tensor_nbytes(t))
        return op_fail(be, MX_EINVAL, "%s: %s: bytes [%zu, +%zu) outside the tensor (%zu bytes)",
                       what, tname(t), offset, size, mx_tensor_nbytes(t));
    return 0;
}

int mx_tensor_set(struct mx_backend *be, const struct mx_tensor *t, const void *src,
                  size_t offset, size_t size) {
    int rc = check_span(be, t, offset, size, "tensor_set");
    return rc < 0 ? rc : be->ops->set(be, t, src, offset, size);
}

int mx_tensor_get(struct mx_backend *be, const struct mx_tensor *t, void *dst, size_t offset,
                  size_t size) {
    int rc = check_span(be, t, offset, size, "tensor_get");
    return rc < 0 ? rc : be->ops->get(be, t, dst, offset, size);
}

/* ---- arena ----------------------------------------------------------------------------------- */

#define MX_ARENA_ALIGN 64

void mx_arena_init_measure(struct mx_arena *a) {
    memset(a, 0, sizeof *a);
    a->size = SIZE_MAX;
}

int mx_arena_init(struct mx_arena *a, struct mx_backend *be, size_t size, struct mx_err *err) {
    memset(a, 0, sizeof *a);
    if (size == 0)
        size = MX_ARENA_ALIGN;
    int rc = mx_buf_alloc(be, size, &a->buf, err);
    if (rc < 0)
        return rc;
    a->be = be;
    a->size = size;
    return 0;
}

int mx_arena_tensor(struct mx_arena *a, struct mx_tensor *t, enum mx_type type, int64_t ne0,
                    int64_t ne1, int64_t ne2, int64_t ne3, const char *name, struct mx_err *err) {
    int rc = mx_tensor_init(t, type, ne0, ne1, ne2, ne3);
    if (rc < 0) {
        a->overflow = true;
        return mx_err_set(err, MX_EINVAL, "arena: %s: bad shape [%lld, %lld, %lld, %lld] of %s",
                          name ? name : "tensor", (long long)ne0, (long long)ne1, (long long)ne2,
                          (long long)ne3, mx_type_name(type));
    }
    size_t bytes = t->nb[3] * (size_t)t->ne[3];
    size_t start = (a->used + MX_ARENA_ALIGN - 1) / MX_ARENA_ALIGN * MX_ARENA_ALIGN;
    size_t end;
    if (start < a->used || !mx_add_size(start, bytes, &end) || end > a->size) {
        if (!a->buf)
            a->overflow = true;
        return mx_err_set(err, MX_ENOMEM, "arena: %s needs %zu bytes, %zu of %zu are used",
                          name ? name : "tensor", bytes, a->used, a->size);
    }
    t->name = name;
    t->buf = a->buf;
    t->data = a->buf ? (char *)a->buf->base + start : NULL;
    a->used = end;
    return 0;
}

void mx_arena_reset(struct mx_arena *a) {
    a->used = 0;
}

void mx_arena_deinit(struct mx_arena *a) {
    if (!a)
        return;
    mx_buf_free(a->buf);
    memset(a, 0, sizeof *a);
}

/* ---- op checks ------------------------------------------------------------------------------- */

static bool same_shape(const struct mx_tensor *a, const struct mx_tensor *b) {
    for (int i = 0; i < 4; i++)
        if (a->ne[i] != b->ne[i])
            return false;
    return true;
}

/* A tensor the op may read or write: contiguous, with data, of the given type (-1: any). */
static int need(struct mx_backend *be, const char *op, const struct mx_tensor *t, int type,
                const char *role) {
    if (!t)
        return op_fail(be, MX_EINVAL, "%s: %s is NULL", op, role);
    if (!t->data)
        return op_fail(be, MX_EINVAL, "%s: %s (%s) has no data", op, role, tname(t));
    if (type >= 0 && (int)t->type != type)
        return op_fail(be, MX_EINVAL, "%s: %s (%s) is %s, expected %s", op, role, tname(t),
                       mx_type_name(t->type), mx_type_name(type));
    if (!mx_tensor_is_contiguous(t))
        return op_fail(be, MX_EINVAL, "%s: %s (%s) is not contiguous", op, role, tname(t));
    return 0;
}

static int bad_shape(struct mx_backend *be, const char *op, const struct mx_tensor *t,
                     const char *want) {
    return op_fail(be, MX_EINVAL, "%s: %s has shape [%lld, %lld, %lld, %lld], expected %s", op,
                   tname(t), (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                   (long long)t->ne[3], want);
}

/* Dispatches to be->ops->name after the checks, or fails with MX_EUNSUP. */
#define DISPATCH(name, type, ...)                                                                \
    do {                                                                                         \
        if (!be->ops->name || !be->ops->supports(be, MX_OP_##name##_ID, (type)))                 \
            return op_fail(be, MX_EUNSUP, "%s: %s backend does not support it for %s", #name,   \
                           mx_backend_name(be), mx_type_name(type));                             \
        be->last_err.code = 0;                                                                   \
        be->last_err.msg[0] = '\0';                                                              \
        int rc_ = be->ops->name(be, __VA_ARGS__);                                                \
        if (rc_ < 0 && be->last_err.code == 0)                                                   \
            op_fail(be, rc_, "%s: failed (%s)", #name, mx_strerror(rc_));                        \
        return rc_;                                                                              \
    } while (0)

#define MX_OP_matmul_ID MX_OP_MATMUL
#define MX_OP_matmul_id_ID MX_OP_MATMUL_ID
#define MX_OP_matmul_id2_ID MX_OP_MATMUL_ID /* the same kernels as matmul_id */
#define MX_OP_get_rows_ID MX_OP_GET_ROWS
#define MX_OP_rms_norm_ID MX_OP_RMS_NORM
#define MX_OP_layer_norm_ID MX_OP_LAYER_NORM
#define MX_OP_group_norm_ID MX_OP_GROUP_NORM
#define MX_OP_rope_ID MX_OP_ROPE
#define MX_OP_kv_shift_ID MX_OP_KV_SHIFT
#define MX_OP_attn_ID MX_OP_ATTN
#define MX_OP_softmax_ID MX_OP_SOFTMAX
#define MX_OP_silu_ID MX_OP_SILU
#define MX_OP_gelu_ID MX_OP_GELU
#define MX_OP_silu_mul_ID MX_OP_SILU_MUL
#define MX_OP_gelu_mul_ID MX_OP_GELU_MUL
#define MX_OP_add_ID MX_OP_ADD
#define MX_OP_mul_ID MX_OP_MUL
#define MX_OP_scale_ID MX_OP_SCALE
#define MX_OP_cpy_ID MX_OP_CPY
#define MX_OP_moe_route_ID MX_OP_MOE_ROUTE
#define MX_OP_moe_combine_ID MX_OP_MOE_COMBINE
#define MX_OP_conv2d_ID MX_OP_CONV2D
#define MX_OP_upsample_ID MX_OP_UPSAMPLE
#define MX_OP_concat_ID MX_OP_CONCAT
#define MX_OP_gelu_quick_ID MX_OP_GELU_QUICK
#define MX_OP_transpose_ID MX_OP_TRANSPOSE
#define MX_OP_swiglu_oai_ID MX_OP_SWIGLU_OAI
#define MX_OP_sigmoid_ID MX_OP_SIGMOID

#define TRY(x)             \
    do {                   \
        int rc__ = (x);    \
        if (rc__ < 0)      \
            return rc__;   \
    } while (0)

/* The checks of matmul; 0 or MX_EINVAL with the message set. */
static int check_matmul(struct mx_backend *be, const struct mx_tensor *dst,
                        const struct mx_tensor *w, const struct mx_tensor *x) {
    TRY(need(be, "matmul", w, -1, "W"));
    TRY(need(be, "matmul", x, MX_TYPE_F32, "x"));
    TRY(need(be, "matmul", dst, MX_TYPE_F32, "dst"));
    if (w->ne[0] != x->ne[0])
        return op_fail(be, MX_EINVAL, "matmul: %s has rows of %lld, x (%s) of %lld", tname(w),
                       (long long)w->ne[0], tname(x), (long long)x->ne[0]);
    if (x->ne[2] % w->ne[2] != 0 || x->ne[3] % w->ne[3] != 0)
        return bad_shape(be, "matmul", w, "ne2/ne3 dividing x's");
    if (dst->ne[0] != w->ne[1] || dst->ne[1] != x->ne[1] || dst->ne[2] != x->ne[2] ||
        dst->ne[3] != x->ne[3])
        return bad_shape(be, "matmul", dst, "[W.ne1, x.ne1, x.ne2, x.ne3]");
    if (dst->data == x->data)
        return op_fail(be, MX_EINVAL, "matmul: dst aliases x");
    return 0;
}

int mx_op_matmul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                 const struct mx_tensor *x) {
    TRY(check_matmul(be, dst, w, x));
    DISPATCH(matmul, w->type, dst, w, x);
}

int mx_op_matmul_n(struct mx_backend *be, int n, struct mx_tensor *const *dst,
                   const struct mx_tensor *const *w, const struct mx_tensor *x) {
    if (n < 1 || n > MX_MATMUL_N_MAX)
        return op_fail(be, MX_EINVAL, "matmul_n: %d weights (1 to %d)", n, MX_MATMUL_N_MAX);
    bool one = be->ops->matmul_n != NULL;
    for (int i = 0; i < n; i++) {
        TRY(check_matmul(be, dst[i], w[i], x));
        for (int k = 0; k < i; k++)
            if (dst[k]->data == dst[i]->data)
                return op_fail(be, MX_EINVAL, "matmul_n: outputs %d and %d alias", k, i);
        one = one && be->ops->supports(be, MX_OP_MATMUL, w[i]->type);
    }
    if (!one) { /* no fused pass here, or a weight it does not take: the plain ops */
        for (int i = 0; i < n; i++)
            TRY(mx_op_matmul(be, dst[i], w[i], x));
        return 0;
    }
    be->last_err.code = 0;
    be->last_err.msg[0] = '\0';
    int rc = be->ops->matmul_n(be, n, dst, w, x);
    if (rc < 0 && be->last_err.code == 0)
        op_fail(be, rc, "matmul_n: failed (%s)", mx_strerror(rc));
    return rc;
}

/* The checks of matmul_id (op: the name in messages); 0 or MX_EINVAL with the message set. */
static int check_matmul_id(struct mx_backend *be, const char *op, const struct mx_tensor *dst,
                           const struct mx_tensor *w, const struct mx_tensor *x,
                           const struct mx_tensor *ids) {
    TRY(need(be, op, w, -1, "W"));
    TRY(need(be, op, x, MX_TYPE_F32, "x"));
    TRY(need(be, op, ids, MX_TYPE_I32, "ids"));
    TRY(need(be, op, dst, MX_TYPE_F32, "dst"));
    if (w->ne[3] != 1 || w->ne[0] != x->ne[0])
        return bad_shape(be, op, w, "[x.ne0, n_out, n_expert]");
    int64_t n_used = ids->ne[0], T = ids->ne[1];
    if (ids->ne[2] != 1 || ids->ne[3] != 1)
        return bad_shape(be, op, ids, "[n_used, T]");
    if ((x->ne[1] != 1 && x->ne[1] != n_used) || x->ne[2] != T || x->ne[3] != 1)
        return bad_shape(be, op, x, "[n_in, 1 or n_used, T]");
    if (dst->ne[0] != w->ne[1] || dst->ne[1] != n_used || dst->ne[2] != T || dst->ne[3] != 1)
        return bad_shape(be, op, dst, "[n_out, n_used, T]");
    if (dst->data == x->data)
        return op_fail(be, MX_EINVAL, "%s: dst aliases x", op);
    return 0;
}

int mx_op_matmul_id(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                    const struct mx_tensor *x, const struct mx_tensor *ids) {
    TRY(check_matmul_id(be, "matmul_id", dst, w, x, ids));
    DISPATCH(matmul_id, w->type, dst, w, x, ids);
}

int mx_op_matmul_id2(struct mx_backend *be, struct mx_tensor *dst_a, const struct mx_tensor *w_a,
                     struct mx_tensor *dst_b, const struct mx_tensor *w_b,
                     const struct mx_tensor *x, const struct mx_tensor *ids, bool silu_mul) {
    TRY(check_matmul_id(be, "matmul_id2", dst_a, w_a, x, ids));
    TRY(check_matmul_id(be, "matmul_id2", dst_b, w_b, x, ids));
    if (dst_a->data == dst_b->data)
        return op_fail(be, MX_EINVAL, "matmul_id2: the two outputs alias");
    bool one = be->ops->matmul_id2 && w_a->type == w_b->type && w_a->layout == w_b->layout &&
               same_shape(w_a, w_b) && w_a->nb[1] == w_b->nb[1] && w_a->nb[2] == w_b->nb[2];
    if (!one) { /* no fused pass here, or two different weights: the plain ops */
        TRY(mx_op_matmul_id(be, dst_a, w_a, x, ids));
        TRY(mx_op_matmul_id(be, dst_b, w_b, x, ids));
        return silu_mul ? mx_op_silu_mul(be, dst_a, dst_a, dst_b) : 0;
    }
    DISPATCH(matmul_id2, w_a->type, dst_a, w_a, dst_b, w_b, x, ids, silu_mul);
}

int mx_op_get_rows(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                   const struct mx_tensor *ids) {
    TRY(need(be, "get_rows", w, -1, "W"));
    TRY(need(be, "get_rows", ids, MX_TYPE_I32, "ids"));
    TRY(need(be, "get_rows", dst, MX_TYPE_F32, "dst"));
    if (w->ne[2] != 1 || w->ne[3] != 1)
        return bad_shape(be, "get_rows", w, "[n_embd, n_rows]");
    int64_t T = mx_tensor_nelements(ids);
    if (dst->ne[0] != w->ne[0] || mx_tensor_nrows(dst) != T)
        return bad_shape(be, "get_rows", dst, "[W.ne0, n_ids]");
    DISPATCH(get_rows, w->type, dst, w, ids);
}

static int need_rowvec(struct mx_backend *be, const char *op, const struct mx_tensor *v,
                       int64_t n, const char *role) {
    if (!v)
        return 0;
    TRY(need(be, op, v, MX_TYPE_F32, role));
    if (mx_tensor_nelements(v) != n)
        return op_fail(be, MX_EINVAL, "%s: %s (%s) has %lld values, expected %lld", op, role,
                       tname(v), (long long)mx_tensor_nelements(v), (long long)n);
    return 0;
}

int mx_op_rms_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                   const struct mx_tensor *w, float eps) {
    TRY(need(be, "rms_norm", x, MX_TYPE_F32, "x"));
    TRY(need(be, "rms_norm", dst, MX_TYPE_F32, "dst"));
    TRY(need_rowvec(be, "rms_norm", w, x->ne[0], "w"));
    if (!same_shape(dst, x))
        return bad_shape(be, "rms_norm", dst, "x's shape");
    DISPATCH(rms_norm, MX_TYPE_F32, dst, x, w, eps);
}

int mx_op_layer_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                     const struct mx_tensor *w, const struct mx_tensor *b, float eps) {
    TRY(need(be, "layer_norm", x, MX_TYPE_F32, "x"));
    TRY(need(be, "layer_norm", dst, MX_TYPE_F32, "dst"));
    TRY(need_rowvec(be, "layer_norm", w, x->ne[0], "w"));
    TRY(need_rowvec(be, "layer_norm", b, x->ne[0], "b"));
    if (!same_shape(dst, x))
        return bad_shape(be, "layer_norm", dst, "x's shape");
    DISPATCH(layer_norm, MX_TYPE_F32, dst, x, w, b, eps);
}

int mx_op_group_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                     const struct mx_tensor *w, const struct mx_tensor *b, int n_groups,
                     float eps) {
    TRY(need(be, "group_norm", x, MX_TYPE_F32, "x"));
    TRY(need(be, "group_norm", dst, MX_TYPE_F32, "dst"));
    TRY(need_rowvec(be, "group_norm", w, x->ne[2], "w"));
    TRY(need_rowvec(be, "group_norm", b, x->ne[2], "b"));
    if (!same_shape(dst, x))
        return bad_shape(be, "group_norm", dst, "x's shape");
    if (n_groups <= 0 || x->ne[2] % n_groups != 0)
        return op_fail(be, MX_EINVAL, "group_norm: %lld channels in %d groups",
                       (long long)x->ne[2], n_groups);
    DISPATCH(group_norm, MX_TYPE_F32, dst, x, w, b, n_groups, eps);
}

static int check_rope_params(struct mx_backend *be, const char *op,
                             const struct mx_rope_params *p, int64_t head_dim) {
    if (!p || p->n_rot <= 0 || p->n_rot % 2 || p->n_rot > head_dim ||
        (p->mode != MX_ROPE_NORM && p->mode != MX_ROPE_NEOX) || !(p->freq_base > 0.0f) ||
        !(p->freq_scale > 0.0f))
        return op_fail(be, MX_EINVAL, "%s: bad rope parameters (n_rot %d, head_dim %lld, mode %d)",
                       op, p ? p->n_rot : -1, (long long)head_dim, p ? p->mode : -1);
    if (p->freq_factors) {
        TRY(need(be, op, p->freq_factors, MX_TYPE_F32, "freq_factors"));
        if (mx_tensor_nelements(p->freq_factors) < p->n_rot / 2)
            return op_fail(be, MX_EINVAL, "%s: %lld rope freq factors for %d pairs", op,
                           (long long)mx_tensor_nelements(p->freq_factors), p->n_rot / 2);
    }
    if (!(p->ext_factor >= 0.0f) || !(p->attn_factor >= 0.0f) ||
        (p->ext_factor > 0.0f && (p->n_ctx_orig <= 0 || !(p->beta_fast > 0.0f) ||
                                  !(p->beta_slow > 0.0f))))
        return op_fail(be, MX_EINVAL, "%s: bad YaRN parameters (ext %g, n_ctx_orig %d)", op,
                       (double)p->ext_factor, p->n_ctx_orig);
    return 0;
}

int mx_op_rope(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
               const struct mx_tensor *pos, const struct mx_rope_params *p) {
    TRY(need(be, "rope", x, MX_TYPE_F32, "x"));
    TRY(need(be, "rope", dst, MX_TYPE_F32, "dst"));
    TRY(need(be, "rope", pos, MX_TYPE_I32, "pos"));
    if (!same_shape(dst, x) || x->ne[3] != 1)
        return bad_shape(be, "rope", dst, "x's shape [head_dim, n_head, T]");
    if (mx_tensor_nelements(pos) != x->ne[2])
        return bad_shape(be, "rope", pos, "[T]");
    TRY(check_rope_params(be, "rope", p, x->ne[0]));
    DISPATCH(rope, MX_TYPE_F32, dst, x, pos, p);
}

static bool is_kv_type(enum mx_type t) {
    return t == MX_TYPE_F32 || t == MX_TYPE_F16 || t == MX_TYPE_Q8_0;
}

int mx_op_kv_shift(struct mx_backend *be, struct mx_tensor *kcache, const struct mx_tensor *delta,
                   int head_dim, const struct mx_rope_params *p) {
    TRY(need(be, "kv_shift", kcache, -1, "kcache"));
    TRY(need(be, "kv_shift", delta, MX_TYPE_I32, "delta"));
    if (!is_kv_type(kcache->type))
        return op_fail(be, MX_EINVAL, "kv_shift: cache type %s", mx_type_name(kcache->type));
    if (head_dim <= 0 || kcache->ne[0] % head_dim != 0)
        return bad_shape(be, "kv_shift", kcache, "[head_dim * n_head_kv, n_cells]");
    if (mx_tensor_nelements(delta) != mx_tensor_nrows(kcache))
        return bad_shape(be, "kv_shift", delta, "[n_cells]");
    TRY(check_rope_params(be, "kv_shift", p, head_dim));
    DISPATCH(kv_shift, kcache->type, kcache, delta, head_dim, p);
}

int mx_op_attn(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *q,
               const struct mx_tensor *kcache, const struct mx_tensor *vcache,
               const struct mx_tensor *qpos, const struct mx_tensor *kpos,
               const struct mx_attn_params *p) {
    TRY(need(be, "attn", q, MX_TYPE_F32, "q"));
    TRY(need(be, "attn", dst, MX_TYPE_F32, "dst"));
    TRY(need(be, "attn", kcache, -1, "kcache"));
    TRY(need(be, "attn", vcache, -1, "vcache"));
    TRY(need(be, "attn", qpos, MX_TYPE_I32, "qpos"));
    TRY(need(be, "attn", kpos, MX_TYPE_I32, "kpos"));
    if (!p || p->n_head <= 0 || p->n_head_kv <= 0 || p->n_head % p->n_head_kv != 0 ||
        p->head_dim <= 0 || p->n_kv < 0 || p->window < 0)
        return op_fail(be, MX_EINVAL, "attn: bad parameters");
    if (!is_kv_type(kcache->type) || !is_kv_type(vcache->type))
        return op_fail(be, MX_EINVAL, "attn: cache types %s/%s", mx_type_name(kcache->type),
                       mx_type_name(vcache->type));
    int64_t T = q->ne[2], n_embd_kv = (int64_t)p->head_dim * p->n_head_kv;
    if (q->ne[0] != p->head_dim || q->ne[1] != p->n_head || q->ne[3] != 1)
        return bad_shape(be, "attn", q, "[head_dim, n_head, T]");
    if (!same_shape(dst, q))
        return bad_shape(be, "attn", dst, "q's shape");
    if (dst->data == q->data)
        return op_fail(be, MX_EINVAL, "attn: dst aliases q");
    if (kcache->ne[0] != n_embd_kv || kcache->ne[2] != 1 || kcache->ne[3] != 1 ||
        kcache->ne[1] < p->n_kv)
        return bad_shape(be, "attn", kcache, "[head_dim * n_head_kv, >= n_kv]");
    if (vcache->ne[0] != n_embd_kv || vcache->ne[2] != 1 || vcache->ne[3] != 1 ||
        vcache->ne[1] < p->n_kv)
        return bad_shape(be, "attn", vcache, "[head_dim * n_head_kv, >= n_kv]");
    if (mx_tensor_nelements(qpos) != T)
        return bad_shape(be, "attn", qpos, "[T]");
    if (mx_tensor_nelements(kpos) < p->n_kv)
        return bad_shape(be, "attn", kpos, "[>= n_kv]");
    if (p->sinks) {
        TRY(need(be, "attn", p->sinks, MX_TYPE_F32, "sinks"));
        if (mx_tensor_nelements(p->sinks) != p->n_head)
            return bad_shape(be, "attn", p->sinks, "[n_head]");
    }
    DISPATCH(attn, kcache->type, dst, q, kcache, vcache, qpos, kpos, p);
}

int mx_op_softmax(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                  float scale) {
    TRY(need(be, "softmax", x, MX_TYPE_F32, "x"));
    TRY(need(be, "softmax", dst, MX_TYPE_F32, "dst"));
    if (!same_shape(dst, x))
        return bad_shape(be, "softmax", dst, "x's shape");
    DISPATCH(softmax, MX_TYPE_F32, dst, x, scale);
}

static int unary_check(struct mx_backend *be, const char *op, struct mx_tensor *dst,
                       const struct mx_tensor *x) {
    TRY(need(be, op, x, MX_TYPE_F32, "x"));
    TRY(need(be, op, dst, MX_TYPE_F32, "dst"));
    if (!same_shape(dst, x))
        return bad_shape(be, op, dst, "x's shape");
    return 0;
}

int mx_op_silu(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x) {
    TRY(unary_check(be, "silu", dst, x));
    DISPATCH(silu, MX_TYPE_F32, dst, x);
}

int mx_op_gelu(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x) {
    TRY(unary_check(be, "gelu", dst, x));
    DISPATCH(gelu, MX_TYPE_F32, dst, x);
}

static int glu_check(struct mx_backend *be, const char *op, struct mx_tensor *dst,
                     const struct mx_tensor *gate, const struct mx_tensor *up) {
    TRY(unary_check(be, op, dst, gate));
    TRY(need(be, op, up, MX_TYPE_F32, "up"));
    if (!same_shape(up, gate))
        return bad_shape(be, op, up, "gate's shape");
    return 0;
}

int mx_op_silu_mul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *gate,
                   const struct mx_tensor *up) {
    TRY(glu_check(be, "silu_mul", dst, gate, up));
    DISPATCH(silu_mul, MX_TYPE_F32, dst, gate, up);
}

int mx_op_swiglu_oai(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *gate,
                     const struct mx_tensor *up, float alpha, float limit) {
    TRY(glu_check(be, "swiglu_oai", dst, gate, up));
    if (!isfinite(alpha) || !(limit > 0.0f))
        return op_fail(be, MX_EINVAL, "swiglu_oai: bad alpha %g / limit %g", (double)alpha,
                       (double)limit);
    DISPATCH(swiglu_oai, MX_TYPE_F32, dst, gate, up, alpha, limit);
}

int mx_op_gelu_mul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *gate,
                   const struct mx_tensor *up) {
    TRY(glu_check(be, "gelu_mul", dst, gate, up));
    DISPATCH(gelu_mul, MX_TYPE_F32, dst, gate, up);
}

static int binary_check(struct mx_backend *be, const char *op, struct mx_tensor *dst,
                        const struct mx_tensor *a, const struct mx_tensor *b) {
    TRY(unary_check(be, op, dst, a));
    TRY(need(be, op, b, MX_TYPE_F32, "b"));
    for (int i = 0; i < 4; i++)
        if (a->ne[i] % b->ne[i] != 0)
            return bad_shape(be, op, b, "dims dividing a's (broadcast)");
    if (dst->data == b->data && !same_shape(a, b))
        return op_fail(be, MX_EINVAL, "%s: dst aliases the broadcast operand", op);
    return 0;
}

int mx_op_add(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *a,
              const struct mx_tensor *b) {
    TRY(binary_check(be, "add", dst, a, b));
    DISPATCH(add, MX_TYPE_F32, dst, a, b);
}

int mx_op_mul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *a,
              const struct mx_tensor *b) {
    TRY(binary_check(be, "mul", dst, a, b));
    DISPATCH(mul, MX_TYPE_F32, dst, a, b);
}

int mx_op_scale(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x, float s) {
    TRY(unary_check(be, "scale", dst, x));
    DISPATCH(scale, MX_TYPE_F32, dst, x, s);
}

static bool is_cpy_type(enum mx_type t) {
    return t == MX_TYPE_F32 || t == MX_TYPE_F16 || t == MX_TYPE_BF16 || t == MX_TYPE_Q8_0;
}

int mx_op_cpy(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *src) {
    TRY(need(be, "cpy", src, -1, "src"));
    TRY(need(be, "cpy", dst, -1, "dst"));
    if (!is_cpy_type(src->type) || !is_cpy_type(dst->type))
        return op_fail(be, MX_EINVAL, "cpy: %s -> %s", mx_type_name(src->type),
                       mx_type_name(dst->type));
    if (mx_tensor_nelements(src) != mx_tensor_nelements(dst))
        return op_fail(be, MX_EINVAL, "cpy: %lld elements into %lld",
                       (long long)mx_tensor_nelements(src), (long long)mx_tensor_nelements(dst));
    if (src->type != MX_TYPE_F32 && dst->type != MX_TYPE_F32 && src->type != dst->type)
        return op_fail(be, MX_EINVAL, "cpy: %s -> %s (one side must be f32)",
                       mx_type_name(src->type), mx_type_name(dst->type));
    if (src->type != dst->type) {
        const char *s = src->data, *d = dst->data;
        if (s < d + mx_tensor_nbytes(dst) && d < s + mx_tensor_nbytes(src))
            return op_fail(be, MX_EINVAL, "cpy: converting between overlapping tensors");
    }
    DISPATCH(cpy, dst->type, dst, src);
}

int mx_op_moe_route(struct mx_backend *be, struct mx_tensor *ids, struct mx_tensor *weights,
                    const struct mx_tensor *logits, bool renorm) {
    TRY(need(be, "moe_route", logits, MX_TYPE_F32, "logits"));
    TRY(need(be, "moe_route", ids, MX_TYPE_I32, "ids"));
    TRY(need(be, "moe_route", weights, MX_TYPE_F32, "weights"));
    int64_t T = mx_tensor_nrows(logits), k = ids->ne[0];
    if (logits->ne[2] != 1 || logits->ne[3] != 1)
        return bad_shape(be, "moe_route", logits, "[n_expert, T]");
    if (k <= 0 || k > logits->ne[0] || mx_tensor_nrows(ids) != T || ids->ne[2] != 1)
        return bad_shape(be, "moe_route", ids, "[k <= n_expert, T]");
    if (!same_shape(weights, ids))
        return bad_shape(be, "moe_route", weights, "ids' shape [k, T]");
    DISPATCH(moe_route, MX_TYPE_F32, ids, weights, logits, renorm);
}

int mx_op_moe_combine(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *y,
                      const struct mx_tensor *weights) {
    TRY(need(be, "moe_combine", y, MX_TYPE_F32, "y"));
    TRY(need(be, "moe_combine", weights, MX_TYPE_F32, "weights"));
    TRY(need(be, "moe_combine", dst, MX_TYPE_F32, "dst"));
    if (y->ne[3] != 1)
        return bad_shape(be, "moe_combine", y, "[n, k, T]");
    if (weights->ne[0] != y->ne[1] || weights->ne[1] != y->ne[2] || weights->ne[2] != 1 ||
        weights->ne[3] != 1)
        return bad_shape(be, "moe_combine", weights, "[k, T]");
    if (dst->ne[0] != y->ne[0] || dst->ne[1] != y->ne[2] || dst->ne[2] != 1 || dst->ne[3] != 1)
        return bad_shape(be, "moe_combine", dst, "[n, T]");
    if (dst->data == y->data)
        return op_fail(be, MX_EINVAL, "moe_combine: dst aliases y");
    DISPATCH(moe_combine, MX_TYPE_F32, dst, y, weights);
}

int mx_op_conv2d(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                 const struct mx_tensor *w, const struct mx_tensor *b,
                 const struct mx_conv2d_params *p) {
    TRY(need(be, "conv2d", x, MX_TYPE_F32, "x"));
    TRY(need(be, "conv2d", w, -1, "w"));
    TRY(need(be, "conv2d", dst, MX_TYPE_F32, "dst"));
    if (w->type != MX_TYPE_F32 && w->type != MX_TYPE_F16)
        return op_fail(be, MX_EINVAL, "conv2d: weight type %s", mx_type_name(w->type));
    TRY(need_rowvec(be, "conv2d", b, w->ne[3], "b"));
    if (!p || p->stride_x < 1 || p->stride_y < 1 || p->dil_x < 1 || p->dil_y < 1 ||
        p->pad_x < 0 || p->pad_y < 0)
        return op_fail(be, MX_EINVAL, "conv2d: bad parameters");
    if (w->ne[2] != x->ne[2])
        return bad_shape(be, "conv2d", w, "[KW, KH, x.ne2, C_out]");
    int64_t wo = (x->ne[0] + 2 * p->pad_x - (int64_t)p->dil_x * (w->ne[0] - 1) - 1);
    int64_t ho = (x->ne[1] + 2 * p->pad_y - (int64_t)p->dil_y * (w->ne[1] - 1) - 1);
    if (wo < 0 || ho < 0)
        return bad_shape(be, "conv2d", x, "at least the kernel's extent");
    wo = wo / p->stride_x + 1;
    ho = ho / p->stride_y + 1;
    if (dst->ne[0] != wo || dst->ne[1] != ho || dst->ne[2] != w->ne[3] || dst->ne[3] != x->ne[3])
        return bad_shape(be, "conv2d", dst, "[W_out, H_out, C_out, N]");
    if (dst->data == x->data)
        return op_fail(be, MX_EINVAL, "conv2d: dst aliases x");
    DISPATCH(conv2d, w->type, dst, x, w, b, p);
}

int mx_op_upsample(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                   int factor) {
    TRY(need(be, "upsample", x, MX_TYPE_F32, "x"));
    TRY(need(be, "upsample", dst, MX_TYPE_F32, "dst"));
    if (factor < 1)
        return op_fail(be, MX_EINVAL, "upsample: factor %d", factor);
    if (dst->ne[0] != x->ne[0] * factor || dst->ne[1] != x->ne[1] * factor ||
        dst->ne[2] != x->ne[2] || dst->ne[3] != x->ne[3])
        return bad_shape(be, "upsample", dst, "[W*f, H*f, C, N]");
    if (dst->data == x->data)
        return op_fail(be, MX_EINVAL, "upsample: dst aliases x");
    DISPATCH(upsample, MX_TYPE_F32, dst, x, factor);
}

int mx_op_concat(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *a,
                 const struct mx_tensor *b, int dim) {
    TRY(need(be, "concat", a, MX_TYPE_F32, "a"));
    TRY(need(be, "concat", b, MX_TYPE_F32, "b"));
    TRY(need(be, "concat", dst, MX_TYPE_F32, "dst"));
    if (dim < 0 || dim > 3)
        return op_fail(be, MX_EINVAL, "concat: dim %d", dim);
    for (int i = 0; i < 4; i++) {
        int64_t want = i == dim ? a->ne[i] + b->ne[i] : a->ne[i];
        if ((i != dim && b->ne[i] != a->ne[i]) || dst->ne[i] != want)
            return bad_shape(be, "concat", dst, "a and b joined along dim");
    }
    if (dst->data == a->data || dst->data == b->data)
        return op_fail(be, MX_EINVAL, "concat: dst aliases a source");
    DISPATCH(concat, MX_TYPE_F32, dst, a, b, dim);
}

int mx_op_gelu_quick(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x) {
    TRY(unary_check(be, "gelu_quick", dst, x));
    DISPATCH(gelu_quick, MX_TYPE_F32, dst, x);
}

int mx_op_transpose(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x) {
    TRY(need(be, "transpose", x, MX_TYPE_F32, "x"));
    TRY(need(be, "transpose", dst, MX_TYPE_F32, "dst"));
    if (dst->ne[0] != x->ne[1] || dst->ne[1] != x->ne[0] || dst->ne[2] != x->ne[2] ||
        dst->ne[3] != x->ne[3])
        return bad_shape(be, "transpose", dst, "[x.ne1, x.ne0, x.ne2, x.ne3]");
    if (dst->data == x->data)
        return op_fail(be, MX_EINVAL, "transpose: dst aliases x");
    DISPATCH(transpose, MX_TYPE_F32, dst, x);
}

int mx_op_sigmoid(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x) {
    TRY(unary_check(be, "sigmoid", dst, x));
    DISPATCH(sigmoid, MX_TYPE_F32, dst, x);
}
