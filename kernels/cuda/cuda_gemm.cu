/* cuda_gemm.cu - prefill GEMMs on tensor cores, for the backend's MX_ACT_GGML mode: the weights
 * dequantized tile by tile to F16 (BF16 weights stay BF16), the activations converted once per
 * call to the same 16-bit type, and cublasGemmEx with f32 accumulation and f32 output. F16 and
 * BF16 weights with contiguous rows are read in place (no tile). conv2d with an F16 kernel takes
 * the same route: im2col straight to F16 and cublasGemmEx on the kernel's rows in place.
 *
 * Precision: a 16-bit value keeps 11 (F16) or 8 (BF16) significant bits, so each product is
 * within 2^-10 (F16) of w·x relative; the sums are f32. This is what ggml's CPU path does for
 * F16/BF16 weights (x rounded to the weight's type) and within the Q8 rounding it uses for the
 * quantized ones. F32 weights (kept F32 by the model's author for precision: norms, routers,
 * small models) and every type in MX_ACT_F32 mode (the exact mode) keep cuda_matmul.cu's F32
 * SGEMM. Dequantized weights fit F16 (their block scales are fp16 themselves); an activation
 * beyond 65504 would become inf in F16, as in llama.cpp's cuBLAS path; BF16 weights take BF16
 * activations (F32's range).
 */
#include "kernels/cuda/cuda_impl.h"
#include "kernels/cuda/cuda_dq.cuh"

#include <cuda_bf16.h>

#define MAX_TILE16 ((int64_t)1 << 26) /* values per dequantized tile (128 MB of F16) */

/* out[r * n_in + i] = W[i, row0 + r] as F16, or as BF16 when bf16 (BF16 weights). */
__global__ void k_dequant_rows16(int type, const uint8_t *w, size_t w_row, int64_t n_in,
                                 int64_t row0, int64_t n_rows, uint16_t *out, int bf16) {
    int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n_in * n_rows)
        return;
    int64_t r = k / n_in, i = k % n_in;
    float v = cu_dq(type, w + (row0 + r) * w_row, i);
    out[k] = bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(v))
                  : __half_as_ushort(__float2half_rn(v));
}

/* x [n_in, T] (columns x_col apart) to contiguous 16-bit columns */
__global__ void k_to16(const float *x, int64_t x_col, int64_t n_in, int64_t T, uint16_t *out,
                       int bf16) {
    int64_t k = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (k >= n_in * T)
        return;
    float v = x[(k / n_in) * x_col + k % n_in];
    out[k] = bf16 ? __bfloat16_as_ushort(__float2bfloat16_rn(v))
                  : __half_as_ushort(__float2half_rn(v));
}

/* C [n, T] (ldc) = A^T B with A [k, n] (lda) and B [k, T] contiguous, 16-bit in, f32 out */
static int gemm16(struct mx_backend *be, const void *a, int64_t lda, const void *b, float *c,
                  int64_t ldc, int64_t n, int64_t T, int64_t k, cudaDataType_t dt) {
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s = cublasGemmEx(cu(be)->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)n, (int)T,
                                    (int)k, &one, a, dt, (int)lda, b, dt, (int)k, &zero, c,
                                    CUDA_R_32F, (int)ldc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) {
        mx_err_set(&be->last_err, MX_EIO, "matmul: cuBLAS GemmEx failed (%d)", (int)s);
        return MX_EIO;
    }
    return 0;
}

bool mx_cu_gemm16_type(enum mx_type t) {
    return t != MX_TYPE_F32 && mx_cu_matmul_type(t);
}

int mx_cu_gemm16(struct mx_backend *be, float *dst, int64_t d_col, const struct mx_tensor *w,
                 const uint8_t *wdata, const float *x, int64_t x_col, int64_t T) {
    struct cu_ctx *c = cu(be);
    const int64_t n_in = w->ne[0], n_out = w->ne[1];
    const int bf16 = w->type == MX_TYPE_BF16;
    const cudaDataType_t dt = bf16 ? CUDA_R_16BF : CUDA_R_16F;
    const bool in_place = (w->type == MX_TYPE_F16 || bf16) && w->nb[1] % 2 == 0;
    int64_t rows = in_place ? n_out : MAX_TILE16 / n_in;
    if (rows < 1)
        rows = 1;
    if (rows > n_out)
        rows = n_out;
    const size_t xb = ((size_t)(n_in * T) * 2 + 255) / 256 * 256;
    char *s = (char *)mx_cu_work(be, xb + (in_place ? 0 : (size_t)(rows * n_in) * 2));
    if (!s)
        return MX_ENOMEM;
    uint16_t *x16 = (uint16_t *)s, *tile = (uint16_t *)(s + xb);
    MX_LAUNCH(k_to16, mx_cu_blocks(n_in * T, 256), 256, 0, c->stream)(x, x_col, n_in, T, x16,
                                                                      bf16);
    int rc = mx_cu_check(be, "matmul: activations to 16 bits");
    if (rc < 0)
        return rc;
    if (in_place)
        return gemm16(be, wdata, (int64_t)(w->nb[1] / 2), x16, dst, d_col, n_out, T, n_in, dt);
    for (int64_t r0 = 0; r0 < n_out && rc == 0; r0 += rows) {
        int64_t n = n_out - r0 < rows ? n_out - r0 : rows;
        MX_LAUNCH(k_dequant_rows16, mx_cu_blocks(n * n_in, 256), 256, 0, c->stream)(
            (int)w->type, wdata, w->nb[1], n_in, r0, n, tile, bf16);
        if ((rc = mx_cu_check(be, "matmul: dequantize to 16 bits")) < 0)
            break;
        rc = gemm16(be, tile, n_in, x16, dst + r0, d_col, n, T, n_in, dt);
    }
    return rc;
}

/* cols[p * K + k] = x at tap k of output pixel p as F16 (0 in the padding): conv2d's im2col
 * with the input rounded to f16 as ggml's CPU path rounds it for an F16 kernel */
__global__ void k_im2col16(const float *x, uint16_t *cols, int W, int H, int C, int KW, int KH,
                           int Wo, int Ho, int sx, int sy, int px, int py, int dx, int dy) {
    int64_t K = (int64_t)KW * KH * C, P = (int64_t)Wo * Ho;
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= K * P)
        return;
    int64_t p = i / K, k = i % K;
    int kx = (int)(k % KW), ky = (int)((k / KW) % KH), ci = (int)(k / (KW * KH));
    int ox = (int)(p % Wo), oy = (int)(p / Wo);
    int ix = ox * sx - px + kx * dx, iy = oy * sy - py + ky * dy;
    float v = 0.0f;
    if (ix >= 0 && ix < W && iy >= 0 && iy < H)
        v = x[((int64_t)ci * H + iy) * W + ix];
    cols[i] = __half_as_ushort(__float2half_rn(v));
}

bool mx_cu_conv2d_f16_ok(const struct mx_backend *be, const struct mx_tensor *w) {
    return be->act_mode == MX_ACT_GGML && w->type == MX_TYPE_F16 &&
           w->nb[1] == (size_t)w->ne[0] * 2 && w->nb[2] == w->nb[1] * (size_t)w->ne[1] &&
           w->nb[3] == w->nb[2] * (size_t)w->ne[2];
}

int mx_cu_conv2d_f16(struct mx_backend *be, float *out, const float *xn,
                     const struct mx_tensor *x, const struct mx_tensor *w,
                     const struct mx_tensor *dst, const struct mx_conv2d_params *p) {
    struct cu_ctx *c = cu(be);
    const int W = (int)x->ne[0], H = (int)x->ne[1], C = (int)x->ne[2];
    const int KW = (int)w->ne[0], KH = (int)w->ne[1], Co = (int)w->ne[3];
    const int Wo = (int)dst->ne[0], Ho = (int)dst->ne[1];
    const int64_t K = (int64_t)KW * KH * C, P = (int64_t)Wo * Ho;
    uint16_t *cols = (uint16_t *)mx_cu_work(be, (size_t)(K * P) * 2);
    if (!cols)
        return MX_ENOMEM;
    MX_LAUNCH(k_im2col16, mx_cu_blocks(K * P, 256), 256, 0, c->stream)(
        xn, cols, W, H, C, KW, KH, Wo, Ho, p->stride_x, p->stride_y, p->pad_x, p->pad_y,
        p->dil_x, p->dil_y);
    int rc = mx_cu_check(be, "conv2d: im2col to f16");
    if (rc < 0)
        return rc;
    /* out [P, Co] = cols^T [P, K] · w [K, Co]: the kernel's F16 rows read in place */
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)P, Co, (int)K, &one,
                                    cols, CUDA_R_16F, (int)K, w->data, CUDA_R_16F, (int)K, &zero,
                                    out, CUDA_R_32F, (int)P, CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) {
        mx_err_set(&be->last_err, MX_EIO, "conv2d: cuBLAS GemmEx failed (%d)", (int)s);
        return MX_EIO;
    }
    return 0;
}
