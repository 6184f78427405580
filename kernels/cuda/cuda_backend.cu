/* cuda_backend.cu - the CUDA backend (kernels/backend.h): device buffers (cudaMalloc, never
 * managed memory), one stream per backend, cuBLAS bound to it, the support matrix and the op
 * table; the kernels are in cuda_matmul.cu and cuda_ops.cu.
 *
 * Weights: mx_buf_from_host copies the mapped file's data section into VRAM once at load (the
 * model's tensors are views into it, as on the CPU), so prepare_weights has nothing to move.
 * Ids that index weights (matmul_id's experts, get_rows' tokens) are checked on the device: an
 * id out of range raises a flag that the next wait (mx_tensor_get, mx_backend_sync) reports as
 * MX_EINVAL, the way the CPU backend refuses them at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_impl.h"

extern "C" {
#include "kernels/devinfo.h"
}

/* per backend: the device flag for out-of-range ids (one int in VRAM) */
struct cu_extra {
    int *bad;
};

static struct cu_extra *extra(struct mx_backend *be) {
    return (struct cu_extra *)((char *)be->ctx + sizeof(struct cu_ctx));
}

int *mx_cu_bad_flag(struct mx_backend *be) {
    return extra(be)->bad;
}

int mx_cu_fail(struct mx_backend *be, const char *op, cudaError_t e) {
    int code = e == cudaErrorMemoryAllocation ? MX_ENOMEM : MX_EIO;
    mx_err_set(&be->last_err, code, "%s: CUDA: %s", op, cudaGetErrorString(e));
    return code;
}

int mx_cu_check(struct mx_backend *be, const char *op) {
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? 0 : mx_cu_fail(be, op, e);
}

float *mx_cu_work(struct mx_backend *be, size_t bytes) {
    struct cu_ctx *c = cu(be);
    if (bytes <= c->work_cap)
        return c->work;
    /* the stream may still read the old scratch: wait before freeing it */
    cudaStreamSynchronize(c->stream);
    cudaFree(c->work);
    c->work = NULL;
    c->work_cap = 0;
    if (cudaMalloc((void **)&c->work, bytes) != cudaSuccess) {
        cudaGetLastError();
        mx_err_set(&be->last_err, MX_ENOMEM, "cuda: no %zu bytes of scratch in VRAM", bytes);
        return NULL;
    }
    c->work_cap = bytes;
    return c->work;
}

void *mx_cu_work2(struct mx_backend *be, size_t bytes) {
    struct cu_ctx *c = cu(be);
    if (bytes <= c->work2_cap)
        return c->work2;
    cudaStreamSynchronize(c->stream); /* queued kernels may still read the old one */
    cudaFree(c->work2);
    c->work2 = NULL;
    c->work2_cap = 0;
    if (cudaMalloc(&c->work2, bytes) != cudaSuccess) {
        cudaGetLastError();
        mx_err_set(&be->last_err, MX_ENOMEM, "cuda: no %zu bytes of scratch in VRAM", bytes);
        return NULL;
    }
    c->work2_cap = bytes;
    return c->work2;
}

/* Waits for the stream; reports a failed kernel or an out-of-range id seen since the last wait. */
static int wait_stream(struct mx_backend *be) {
    struct cu_ctx *c = cu(be);
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess)
        return mx_cu_fail(be, "cuda", e);
    int bad = 0;
    e = cudaMemcpy(&bad, extra(be)->bad, sizeof bad, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess)
        return mx_cu_fail(be, "cuda", e);
    if (bad) {
        cudaMemset(extra(be)->bad, 0, sizeof(int));
        mx_err_set(&be->last_err, MX_EINVAL,
                   "cuda: an expert or token id was outside its table (matmul_id/get_rows)");
        return MX_EINVAL;
    }
    return 0;
}

static void cu_free(struct mx_backend *be) {
    if (!be)
        return;
    struct cu_ctx *c = cu(be);
    if (c) {
        if (c->stream)
            cudaStreamSynchronize(c->stream);
        cudaFree(c->work);
        cudaFree(c->work2);
        cudaFree(extra(be)->bad);
        if (c->blas)
            cublasDestroy(c->blas);
        if (c->stream)
            cudaStreamDestroy(c->stream);
        free(c);
    }
    free(be);
}

static int cu_buf_alloc(struct mx_backend *be, size_t size, struct mx_buf **out) {
    struct mx_buf *b = (struct mx_buf *)calloc(1, sizeof *b);
    if (!b)
        return MX_ENOMEM;
    cudaError_t e = cudaMalloc(&b->base, size); /* 256-byte aligned */
    if (e != cudaSuccess) {
        cudaGetLastError();
        free(b);
        mx_err_set(&be->last_err, MX_ENOMEM, "cuda: cannot allocate %zu bytes of VRAM on %s",
                   size, cu(be)->name);
        return MX_ENOMEM;
    }
    b->be = be;
    b->size = size;
    *out = b;
    return 0;
}

static int cu_buf_from_host(struct mx_backend *be, void *ptr, size_t size, struct mx_buf **out) {
    int rc = cu_buf_alloc(be, size, out);
    if (rc < 0)
        return rc;
    /* in 256 MiB pieces: the mapped file's pages are read from disk as they go */
    const size_t piece = (size_t)256 << 20;
    for (size_t off = 0; off < size; off += piece) {
        size_t n = size - off < piece ? size - off : piece;
        cudaError_t e = cudaMemcpy((char *)(*out)->base + off, (const char *)ptr + off, n,
                                   cudaMemcpyHostToDevice);
        if (e != cudaSuccess) {
            cudaFree((*out)->base);
            free(*out);
            *out = NULL;
            return mx_cu_fail(be, "cuda: uploading weights", e);
        }
    }
    return 0;
}

static void cu_buf_free(struct mx_buf *buf) {
    cudaStreamSynchronize(cu(buf->be)->stream); /* queued ops may still read it */
    cudaFree(buf->base);
    free(buf);
}

static int cu_set(struct mx_backend *be, const struct mx_tensor *t, const void *src,
                  size_t offset, size_t size) {
    /* synchronous from the host's view: src may be reused as soon as this returns */
    cudaError_t e = cudaMemcpyAsync((char *)t->data + offset, src, size, cudaMemcpyHostToDevice,
                                    cu(be)->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(cu(be)->stream);
    return e == cudaSuccess ? 0 : mx_cu_fail(be, "set", e);
}

static int cu_get(struct mx_backend *be, const struct mx_tensor *t, void *dst, size_t offset,
                  size_t size) {
    int rc = wait_stream(be);
    if (rc < 0)
        return rc;
    cudaError_t e = cudaMemcpy(dst, (const char *)t->data + offset, size, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? 0 : mx_cu_fail(be, "get", e);
}

static int cu_sync(struct mx_backend *be) {
    return wait_stream(be);
}

static bool cache_type(enum mx_type t) {
    return t == MX_TYPE_F32 || t == MX_TYPE_F16 || t == MX_TYPE_Q8_0;
}

static bool cu_supports(struct mx_backend *be, enum mx_op op, enum mx_type type) {
    (void)be;
    switch (op) {
    case MX_OP_MATMUL:
    case MX_OP_MATMUL_ID:
    case MX_OP_GET_ROWS:
        return mx_cu_matmul_type(type) || type == MX_TYPE_MXFP4;
    case MX_OP_ATTN:
    case MX_OP_KV_SHIFT:
        return cache_type(type);
    case MX_OP_CPY:
        return cache_type(type) || type == MX_TYPE_BF16;
    case MX_OP_CONV2D:
        return type == MX_TYPE_F32 || type == MX_TYPE_F16;
    default:
        return type == MX_TYPE_F32;
    }
}

static int cu_silu(struct mx_backend *be, struct mx_tensor *d, const struct mx_tensor *x) {
    return mx_cu_unary(be, d, x, MX_CU_SILU, 1.0f);
}
static int cu_gelu(struct mx_backend *be, struct mx_tensor *d, const struct mx_tensor *x) {
    return mx_cu_unary(be, d, x, MX_CU_GELU, 1.0f);
}
static int cu_gelu_quick(struct mx_backend *be, struct mx_tensor *d, const struct mx_tensor *x) {
    return mx_cu_unary(be, d, x, MX_CU_GELU_QUICK, 1.0f);
}
static int cu_scale(struct mx_backend *be, struct mx_tensor *d, const struct mx_tensor *x,
                    float s) {
    return mx_cu_unary(be, d, x, MX_CU_SCALE, s);
}
static int cu_sigmoid(struct mx_backend *be, struct mx_tensor *d, const struct mx_tensor *x) {
    return mx_cu_unary(be, d, x, MX_CU_SIGMOID, 1.0f);
}
static int cu_silu_mul(struct mx_backend *be, struct mx_tensor *d, const struct mx_tensor *g,
                       const struct mx_tensor *u) {
    return mx_cu_glu(be, d, g, u, MX_CU_SILU);
}
static int cu_gelu_mul(struct mx_backend *be, struct mx_tensor *d, const struct mx_tensor *g,
                       const struct mx_tensor *u) {
    return mx_cu_glu(be, d, g, u, MX_CU_GELU);
}
static int cu_add(struct mx_backend *be, struct mx_tensor *d, const struct mx_tensor *a,
                  const struct mx_tensor *b) {
    return mx_cu_binary(be, d, a, b, 0);
}
static int cu_mul(struct mx_backend *be, struct mx_tensor *d, const struct mx_tensor *a,
                  const struct mx_tensor *b) {
    return mx_cu_binary(be, d, a, b, 1);
}

static struct mx_backend_ops make_ops(void) {
    struct mx_backend_ops o;
    memset(&o, 0, sizeof o);
    o.name = "cuda";
    o.free = cu_free;
    o.buf_alloc = cu_buf_alloc;
    o.buf_from_host = cu_buf_from_host;
    o.buf_free = cu_buf_free;
    o.set = cu_set;
    o.get = cu_get;
    o.sync = cu_sync;
    o.prepare_weights = NULL; /* the weights are in VRAM already (cu_buf_from_host) */
    o.supports = cu_supports;
    o.matmul = mx_cu_matmul;
    o.matmul_id = mx_cu_matmul_id;
    o.get_rows = mx_cu_get_rows;
    o.rms_norm = mx_cu_rms_norm;
    o.layer_norm = mx_cu_layer_norm;
    o.group_norm = mx_cu_group_norm;
    o.rope = mx_cu_rope;
    o.kv_shift = mx_cu_kv_shift;
    o.attn = mx_cu_attn;
    o.softmax = mx_cu_softmax;
    o.silu = cu_silu;
    o.gelu = cu_gelu;
    o.silu_mul = cu_silu_mul;
    o.gelu_mul = cu_gelu_mul;
    o.add = cu_add;
    o.mul = cu_mul;
    o.scale = cu_scale;
    o.cpy = mx_cu_cpy;
    o.moe_route = mx_cu_moe_route;
    o.moe_combine = mx_cu_moe_combine;
    o.conv2d = mx_cu_conv2d;
    o.upsample = mx_cu_upsample;
    o.concat = mx_cu_concat;
    o.gelu_quick = cu_gelu_quick;
    o.transpose = mx_cu_transpose;
    o.swiglu_oai = mx_cu_swiglu_oai;
    o.sigmoid = cu_sigmoid;
    return o;
}

static const struct mx_backend_ops cu_ops = make_ops();

extern "C" struct mx_backend *mx_backend_cuda_new(int device, struct mx_err *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        mx_err_set(err, MX_ENODEV, "cuda: no device answers (%s)",
                   e != cudaSuccess ? cudaGetErrorString(e) : "none listed");
        return NULL;
    }
    if (device < 0 || device >= n) {
        mx_err_set(err, MX_EINVAL, "cuda: device %d does not exist (%d found: 0..%d)", device, n,
                   n - 1);
        return NULL;
    }
    struct mx_backend *be = (struct mx_backend *)calloc(1, sizeof *be);
    struct cu_ctx *c =
        (struct cu_ctx *)calloc(1, sizeof(struct cu_ctx) + sizeof(struct cu_extra));
    if (!be || !c) {
        free(be);
        free(c);
        mx_err_set(err, MX_ENOMEM, "cuda: out of memory creating the backend");
        return NULL;
    }
    be->ops = &cu_ops;
    be->ctx = c;
    be->act_mode = MX_ACT_GGML;
    c->device = device;
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, device) == cudaSuccess)
        snprintf(c->name, sizeof c->name, "%.*s", (int)sizeof c->name - 1, p.name);
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMalloc((void **)&extra(be)->bad, sizeof(int))) != cudaSuccess ||
        (e = cudaMemset(extra(be)->bad, 0, sizeof(int))) != cudaSuccess) {
        mx_err_set(err, MX_EIO, "cuda: cannot start on device %d: %s", device,
                   cudaGetErrorString(e));
        cu_free(be);
        return NULL;
    }
    if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(c->blas, c->stream) != CUBLAS_STATUS_SUCCESS) {
        mx_err_set(err, MX_EIO, "cuda: cuBLAS does not start on device %d", device);
        cu_free(be);
        return NULL;
    }
    return be;
}
