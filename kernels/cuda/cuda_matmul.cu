/* cuda_matmul.cu - weight matmuls on the GPU straight from the GGUF block formats: a warp per
 * output row for the few columns of decode (the weights stream from VRAM once per token, the
 * memory-bound case), dequantized tiles through cuBLAS SGEMM for prefill (compute-bound), the
 * MoE expert matmul (only the selected experts' rows are read: a warp per row for decode; for
 * prefill the tokens grouped per expert, each selected expert multiplied once) and the
 * embedding lookup. IQ4_NL, IQ4_XS and MXFP4 dequantize per element like the others.
 *
 * In the backend's MX_ACT_GGML mode (the default) the types cuda_mmv.cu covers take its integer
 * kernels for decode (x quantized to Q8 blocks as ggml's CPU path does), and prefill takes
 * cuda_gemm.cu's F16/BF16 tensor-core GEMM for every weight type but F32. The kernels here are
 * the exact path: MX_ACT_F32 mode (x stays F32, W dequantized times x), F32 weights, and the
 * decode of the types without an integer kernel. Never a dequantized copy of the model:
 * prefill dequantizes one tile of at most MAX_TILE values at a time into scratch.
 */
#include <stdio.h>

#include "kernels/cuda/cuda_impl.h"
#include "kernels/cuda/cuda_dq.cuh"

#define MV_COLS 8                 /* decode path up to this many columns (tokens) */
#define MAX_TILE ((int64_t)1 << 26) /* values per dequantized prefill tile (256 MB of F32) */

bool mx_cu_matmul_type(enum mx_type t) {
    switch (t) {
    case MX_TYPE_F32: case MX_TYPE_F16: case MX_TYPE_BF16: case MX_TYPE_Q4_0: case MX_TYPE_Q4_1:
    case MX_TYPE_Q5_0: case MX_TYPE_Q5_1: case MX_TYPE_Q8_0: case MX_TYPE_Q2_K:
    case MX_TYPE_Q3_K: case MX_TYPE_Q4_K: case MX_TYPE_Q5_K: case MX_TYPE_Q6_K:
    case MX_TYPE_MXFP4: case MX_TYPE_IQ4_NL: case MX_TYPE_IQ4_XS:
        return true;
    default:
        return false;
    }
}

/* dst[o, t] = W[:, o] · x[:, t] for t < T <= MV_COLS: one warp per row o. */
__global__ void k_matvec(int type, const uint8_t *w, size_t w_row, int64_t n_in, int64_t n_out,
                         const float *x, int64_t x_col, float *dst, int64_t d_col, int T) {
    int64_t o = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x % 32;
    if (o >= n_out)
        return;
    const uint8_t *row = w + o * w_row;
    float acc[MV_COLS];
    for (int t = 0; t < MV_COLS; t++)
        acc[t] = 0.0f;
    for (int64_t i = lane; i < n_in; i += 32) {
        float v = cu_dq(type, row, i);
        for (int t = 0; t < T; t++)
            acc[t] += v * x[t * x_col + i];
    }
    for (int t = 0; t < T; t++) {
        float s = acc[t];
        for (int off = 16; off > 0; off >>= 1)
            s += __shfl_xor_sync(0xffffffffu, s, off);
        if (lane == 0)
            dst[t * d_col + o] = s;
    }
}

/* out[r * n_in + i] = W[i, row0 + r] for r < n_rows: a tile of W as F32 for cuBLAS. */
__global__ void k_dequant_rows(int type, const uint8_t *w, size_t w_row, int64_t n_in,
                               int64_t row0, int64_t n_rows, float *out) {
    int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n_in * n_rows)
        return;
    int64_t r = k / n_in, i = k % n_in;
    out[k] = cu_dq(type, w + (row0 + r) * w_row, i);
}

/* One 2-D product dst [n_out, T] = W [n_in, n_out] · x [n_in, T], columns strided. */
static int matmul2d(struct mx_backend *be, float *dst, int64_t d_col, const struct mx_tensor *w,
                    const uint8_t *wdata, const float *x, int64_t x_col, int64_t T) {
    struct cu_ctx *c = cu(be);
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    const bool ggml = be->act_mode == MX_ACT_GGML;
    if (T <= MV_COLS && ggml && mx_cu_mmvq_type(w->type)) /* integer dots (cuda_mmv.cu) */
        return mx_cu_mmvq(be, dst, d_col, w, wdata, x, x_col, T);
    if (T > MV_COLS && ggml && mx_cu_gemm16_type(w->type)) /* tensor cores (cuda_gemm.cu) */
        return mx_cu_gemm16(be, dst, d_col, w, wdata, x, x_col, T);
    if (T <= MV_COLS) {
        const int warps = 8;
        MX_LAUNCH(k_matvec, mx_cu_blocks(n_out, warps), warps * 32, 0, c->stream)(
            (int)w->type, wdata, w->nb[1], n_in, n_out, x, x_col, dst, d_col, (int)T);
        return mx_cu_check(be, "matmul");
    }
    if (w->type == MX_TYPE_F32 && d_col == n_out && x_col == n_in) {
        const float one = 1.0f, zero = 0.0f;
        cublasStatus_t s = cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n_out, (int)T,
                                       (int)n_in, &one, (const float *)wdata, (int)n_in, x,
                                       (int)n_in, &zero, dst, (int)n_out);
        if (s != CUBLAS_STATUS_SUCCESS) {
            mx_err_set(&be->last_err, MX_EIO, "matmul: cuBLAS SGEMM failed (%d)", (int)s);
            return MX_EIO;
        }
        return 0;
    }
    /* tiles of whole rows, dequantized to F32, then C[rows, T] = tile^T · x */
    int64_t rows = MAX_TILE / n_in;
    if (rows < 1)
        rows = 1;
    if (rows > n_out)
        rows = n_out;
    float *tile = mx_cu_work(be, (size_t)(rows * n_in) * sizeof(float));
    if (!tile)
        return MX_ENOMEM;
    for (int64_t r0 = 0; r0 < n_out; r0 += rows) {
        int64_t n = n_out - r0 < rows ? n_out - r0 : rows;
        MX_LAUNCH(k_dequant_rows, mx_cu_blocks(n * n_in, 256), 256, 0, c->stream)(
            (int)w->type, wdata, w->nb[1], n_in, r0, n, tile);
        int rc = mx_cu_check(be, "matmul: dequantize");
        if (rc < 0)
            return rc;
        const float one = 1.0f, zero = 0.0f;
        cublasStatus_t s = cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)T,
                                       (int)n_in, &one, tile, (int)n_in, x, (int)x_col, &zero,
                                       dst + r0, (int)d_col);
        if (s != CUBLAS_STATUS_SUCCESS) {
            mx_err_set(&be->last_err, MX_EIO, "matmul: cuBLAS SGEMM failed (%d)", (int)s);
            return MX_EIO;
        }
    }
    return 0;
}

int mx_cu_matmul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                 const struct mx_tensor *x) {
    /* ggml's broadcast: W's ne2/ne3 divide x's; each x slice uses W slice i2 / (x2 / w2) */
    const int64_t T = x->ne[1];
    for (int64_t i3 = 0; i3 < x->ne[3]; i3++) {
        for (int64_t i2 = 0; i2 < x->ne[2]; i2++) {
            const uint8_t *wd = (const uint8_t *)w->data +
                                (i2 / (x->ne[2] / w->ne[2])) * w->nb[2] +
                                (i3 / (x->ne[3] / w->ne[3])) * w->nb[3];
            const float *xd = (const float *)((const char *)x->data + i2 * x->nb[2] +
                                              i3 * x->nb[3]);
            float *dd = (float *)((char *)dst->data + i2 * dst->nb[2] + i3 * dst->nb[3]);
            int rc = matmul2d(be, dd, dst->ne[0], w, wd, xd, x->ne[0], T);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* dst[:, s, t] = W[:, :, ids[s, t]] · x[:, s % x_slots, t]: one warp per (row, slot, token).
 * An id outside [0, n_expert) writes NaN there and raises *bad (reported by the next wait). */
__global__ void k_matvec_id(int type, const uint8_t *w, size_t w_row, size_t w_expert,
                            int64_t n_in, int64_t n_out, int n_expert, const float *x,
                            int64_t x_slots, const int32_t *ids, int n_used, float *dst,
                            int *bad) {
    int64_t o = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int s = blockIdx.y, lane = threadIdx.x % 32;
    int64_t t = blockIdx.z;
    if (o >= n_out)
        return;
    int e = ids[t * n_used + s];
    float *out = dst + (t * n_used + s) * n_out + o;
    if (e < 0 || e >= n_expert) {
        if (lane == 0) {
            *out = __int_as_float(0x7fc00000);
            atomicExch(bad, 1);
        }
        return;
    }
    const uint8_t *row = w + (size_t)e * w_expert + o * w_row;
    const float *xc = x + (t * x_slots + s % x_slots) * n_in;
    float acc = 0.0f;
    for (int64_t i = lane; i < n_in; i += 32)
        acc += cu_dq(type, row, i) * xc[i];
    for (int off = 16; off > 0; off >>= 1)
        acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0)
        *out = acc;
}

extern int *mx_cu_bad_flag(struct mx_backend *be);

/* xg[:, j] = x[:, col[j]] for j < n: one expert's tokens gathered into contiguous columns. */
__global__ void k_gather_cols(const float *x, int64_t n_in, const int32_t *col, int n,
                              float *xg) {
    int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n_in * n)
        return;
    int64_t j = k / n_in, i = k % n_in;
    xg[k] = x[(int64_t)col[j] * n_in + i];
}

/* dst[:, pos[j]] = yg[:, j] for j < n: the expert's results back to their (slot, token). */
__global__ void k_scatter_cols(const float *yg, int64_t n_out, const int32_t *pos, int n,
                               float *dst) {
    int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n_out * n)
        return;
    int64_t j = k / n_out, o = k % n_out;
    dst[(int64_t)pos[j] * n_out + o] = yg[k];
}

/* Prefill's matmul_id, grouped by expert (ggml-cuda's mul_mat_id does the same): the ids come
 * to the host (one wait), each selected expert's (slot, token) pairs are listed, its tokens
 * gathered into contiguous columns, multiplied by its weights once through matmul2d (cuBLAS on
 * dequantized tiles for many tokens, the warp kernel for few) and scattered back. An expert no
 * token chose is never read. Returns 0, MX_EINVAL (an id outside [0, n_expert)), MX_ENOMEM. */
static int matmul_id_grouped(struct mx_backend *be, struct mx_tensor *dst,
                             const struct mx_tensor *w, const struct mx_tensor *x,
                             const struct mx_tensor *ids) {
    struct cu_ctx *c = cu(be);
    const int n_used = (int)ids->ne[0], n_expert = (int)w->ne[2];
    const int64_t T = ids->ne[1], n_in = w->ne[0], n_out = w->ne[1], x_slots = x->ne[1];
    const int64_t N = (int64_t)n_used * T;
    int32_t *h = (int32_t *)malloc((size_t)N * 3 * sizeof(int32_t) +
                                   (size_t)(n_expert + 1) * sizeof(int64_t));
    if (!h) {
        mx_err_set(&be->last_err, MX_ENOMEM, "matmul_id: out of host memory");
        return MX_ENOMEM;
    }
    int32_t *cols = h + N, *pos = h + 2 * N;
    int64_t *off = (int64_t *)(h + 3 * N);
    cudaError_t e = cudaMemcpyAsync(h, ids->data, (size_t)N * 4, cudaMemcpyDeviceToHost,
                                    c->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        free(h);
        return mx_cu_fail(be, "matmul_id: reading the expert ids", e);
    }
    /* counting sort of the (slot, token) pairs by expert, keeping token order inside one */
    for (int k = 0; k <= n_expert; k++)
        off[k] = 0;
    for (int64_t p = 0; p < N; p++) {
        if (h[p] < 0 || h[p] >= n_expert) {
            mx_err_set(&be->last_err, MX_EINVAL, "matmul_id: id %d at (slot %lld, token %lld) "
                       "outside [0, %d)", (int)h[p], (long long)(p % n_used),
                       (long long)(p / n_used), n_expert);
            free(h);
            return MX_EINVAL;
        }
        off[h[p] + 1]++;
    }
    int64_t most = 0;
    for (int k = 0; k < n_expert; k++) {
        most = off[k + 1] > most ? off[k + 1] : most;
        off[k + 1] += off[k];
    }
    {
        int64_t *fill = (int64_t *)malloc((size_t)n_expert * sizeof(int64_t));
        if (!fill) {
            free(h);
            mx_err_set(&be->last_err, MX_ENOMEM, "matmul_id: out of host memory");
            return MX_ENOMEM;
        }
        for (int k = 0; k < n_expert; k++)
            fill[k] = off[k];
        for (int64_t p = 0; p < N; p++) {
            int64_t at = fill[h[p]]++;
            int64_t t = p / n_used, sl = p % n_used;
            cols[at] = (int32_t)(t * x_slots + sl % x_slots);
            pos[at] = (int32_t)p;
        }
        free(fill);
    }
    /* scratch: the lists, then one expert's gathered x and its results */
    size_t lists = ((size_t)N * 2 * 4 + 255) / 256 * 256;
    size_t xg_b = ((size_t)(n_in * most) * 4 + 255) / 256 * 256;
    char *s = (char *)mx_cu_work2(be, lists + xg_b + (size_t)(n_out * most) * 4);
    if (!s) {
        free(h);
        return MX_ENOMEM;
    }
    int32_t *d_cols = (int32_t *)s, *d_pos = d_cols + N;
    float *xg = (float *)(s + lists), *yg = (float *)(s + lists + xg_b);
    e = cudaMemcpyAsync(d_cols, cols, (size_t)N * 2 * 4, cudaMemcpyHostToDevice, c->stream);
    if (e == cudaSuccess) /* the host lists are freed below */
        e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        free(h);
        return mx_cu_fail(be, "matmul_id: uploading the expert lists", e);
    }
    int rc = 0;
    for (int k = 0; k < n_expert && rc == 0; k++) {
        const int64_t o = off[k], n = off[k + 1] - off[k];
        if (n == 0)
            continue; /* no token chose it: its weights are not read */
        MX_LAUNCH(k_gather_cols, mx_cu_blocks(n_in * n, 256), 256, 0, c->stream)(
            (const float *)x->data, n_in, d_cols + o, (int)n, xg);
        if ((rc = mx_cu_check(be, "matmul_id: gather")) < 0)
            break;
        rc = matmul2d(be, yg, n_out, w, (const uint8_t *)w->data + (size_t)k * w->nb[2], xg,
                      n_in, n);
        if (rc < 0)
            break;
        MX_LAUNCH(k_scatter_cols, mx_cu_blocks(n_out * n, 256), 256, 0, c->stream)(
            yg, n_out, d_pos + o, (int)n, (float *)dst->data);
        rc = mx_cu_check(be, "matmul_id: scatter");
    }
    free(h);
    return rc;
}

int mx_cu_matmul_id(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                    const struct mx_tensor *x, const struct mx_tensor *ids) {
    struct cu_ctx *c = cu(be);
    const int n_used = (int)ids->ne[0];
    const int64_t T = ids->ne[1], n_out = w->ne[1];
    if (T <= 0)
        return 0;
    if (T > MV_COLS)
        return matmul_id_grouped(be, dst, w, x, ids);
    if (be->act_mode == MX_ACT_GGML && mx_cu_mmvq_type(w->type))
        return mx_cu_mmvq_id(be, dst, w, x, ids); /* integer dots (cuda_mmv.cu) */
    const int warps = 8;
    for (int64_t t0 = 0; t0 < T; t0 += 65535) { /* grid z limit */
        int64_t nt = T - t0 < 65535 ? T - t0 : 65535;
        dim3 grid(mx_cu_blocks(n_out, warps), (unsigned)n_used, (unsigned)nt);
        MX_LAUNCH(k_matvec_id, grid, warps * 32, 0, c->stream)(
            (int)w->type, (const uint8_t *)w->data, w->nb[1], w->nb[2], w->ne[0], n_out,
            (int)w->ne[2], (const float *)x->data + t0 * x->ne[1] * x->ne[0], x->ne[1],
            (const int32_t *)ids->data + t0 * n_used, n_used,
            (float *)dst->data + t0 * n_used * n_out, mx_cu_bad_flag(be));
        int rc = mx_cu_check(be, "matmul_id");
        if (rc < 0)
            return rc;
    }
    return 0;
}

__global__ void k_get_rows(int type, const uint8_t *w, size_t w_row, int64_t n, int64_t n_rows,
                           const int32_t *ids, float *dst, int *bad) {
    int64_t t = blockIdx.y;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    int32_t r = ids[t];
    if (r < 0 || r >= n_rows) {
        dst[t * n + i] = __int_as_float(0x7fc00000);
        if (i == 0)
            atomicExch(bad, 1);
        return;
    }
    dst[t * n + i] = cu_dq(type, w + (size_t)r * w_row, i);
}

int mx_cu_get_rows(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                   const struct mx_tensor *ids) {
    struct cu_ctx *c = cu(be);
    const int64_t T = ids->ne[0], n = w->ne[0];
    for (int64_t t0 = 0; t0 < T; t0 += 65535) {
        int64_t nt = T - t0 < 65535 ? T - t0 : 65535;
        dim3 grid(mx_cu_blocks(n, 256), (unsigned)nt);
        MX_LAUNCH(k_get_rows, grid, 256, 0, c->stream)((int)w->type, (const uint8_t *)w->data,
                                                w->nb[1], n, w->ne[1],
                                                (const int32_t *)ids->data + t0,
                                                (float *)dst->data + t0 * n, mx_cu_bad_flag(be));
        int rc = mx_cu_check(be, "get_rows");
        if (rc < 0)
            return rc;
    }
    return 0;
}
