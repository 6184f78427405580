/* cuda_impl.h - private to the .cu files of kernels/cuda: the backend's state, error helpers,
 * and the launchers each .cu file provides to cuda_backend.cu. C++ (nvcc) only.
 *
 * The backend is eager like the CPU one (kernels/backend.h): every op is queued on the
 * backend's one stream in call order; mx_tensor_get and sync wait. Errors of a launch are seen
 * at once (cudaGetLastError); errors of a kernel's execution surface at the next wait and are
 * kept as a deferred error in the state.
 */
#ifndef MX_CUDA_IMPL_H
#define MX_CUDA_IMPL_H

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* quant.h's C11 _Static_assert: the same check in C++ */
#ifndef _Static_assert
#define _Static_assert static_assert
#endif
extern "C" {
#include "kernels/backend.h"
}

/* Kernel launches and dynamic shared memory are written through these two macros, never with
 * nvcc's own syntax, so that the same .cu text also compiles as plain C++ for a CPU emulator
 * of the CUDA runtime (a build that defines MX_CUDA_EMU supplies both). Use
 * MX_LAUNCH(kernel, grid, block, shared_bytes, stream)(args...); a template kernel goes in
 * parentheses: MX_LAUNCH((k<float, 4>), ...). MX_DYN_SHARED(float, s) declares the block's
 * dynamic shared memory as s[]. */
#ifndef MX_CUDA_EMU
#define MX_LAUNCH(kern, grid, block, smem, stream) kern<<<grid, block, smem, stream>>>
#define MX_DYN_SHARED(type, name) extern __shared__ type name[]
#endif

/* The backend's private state (be->ctx). */
struct cu_ctx {
    int device;                 /* the CUDA device index */
    cudaStream_t stream;        /* the one stream every op is queued on */
    cublasHandle_t blas;        /* bound to stream */
    float *work;                /* scratch: dequantized weight tiles for cuBLAS (grows) */
    size_t work_cap;            /* bytes */
    void *work2;                /* scratch beside work: matmul_id's expert lists and one
                                   expert's gathered columns, live while work holds a tile */
    size_t work2_cap;           /* bytes */
    int deferred;               /* a kernel failed asynchronously: reported by the next wait */
    char name[96];              /* the device's name, for messages */
};

static inline struct cu_ctx *cu(struct mx_backend *be) {
    return (struct cu_ctx *)be->ctx;
}

/* Sets be's last error from a CUDA status and returns MX_EIO (MX_ENOMEM for allocations). */
int mx_cu_fail(struct mx_backend *be, const char *op, cudaError_t e);

/* After a launch: 0, or the launch's error as mx_cu_fail. */
int mx_cu_check(struct mx_backend *be, const char *op);

/* Scratch of at least bytes on the device (kept and grown; freed with the backend). */
float *mx_cu_work(struct mx_backend *be, size_t bytes);

/* A second scratch of the same kind, for an op that calls another one using mx_cu_work. */
void *mx_cu_work2(struct mx_backend *be, size_t bytes);

/* Blocks per grid for n items at threads per block, capped at the grid limit's safe value. */
static inline unsigned mx_cu_blocks(int64_t n, int threads) {
    int64_t b = (n + threads - 1) / threads;
    return (unsigned)(b < 1 ? 1 : b > 0x7fffffff ? 0x7fffffff : b);
}

/* ---- cuda_matmul.cu --------------------------------------------------------------------------- */
bool mx_cu_matmul_type(enum mx_type t); /* weight types the matmuls and get_rows read */
int mx_cu_matmul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                 const struct mx_tensor *x);
int mx_cu_matmul_id(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                    const struct mx_tensor *x, const struct mx_tensor *ids);
int mx_cu_get_rows(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                   const struct mx_tensor *ids);

/* ---- cuda_mmv.cu: quantized decode products with integer dots (MX_ACT_GGML mode) ------------ */
bool mx_cu_mmvq_type(enum mx_type t); /* the weight types it has kernels for */
/* dst [n_out, T] (columns d_col apart) = W · x for T <= 8 columns of x (x_col apart) */
int mx_cu_mmvq(struct mx_backend *be, float *dst, int64_t d_col, const struct mx_tensor *w,
               const uint8_t *wdata, const float *x, int64_t x_col, int64_t T);
/* matmul_id for T <= 8 tokens: only the selected experts' rows are read */
int mx_cu_mmvq_id(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                  const struct mx_tensor *x, const struct mx_tensor *ids);

/* ---- cuda_gemm.cu: prefill GEMM on tensor cores (F16/BF16 in, f32 accumulate; MX_ACT_GGML) --- */
bool mx_cu_gemm16_type(enum mx_type t); /* every matmul type but F32 */
/* dst [n_out, T] (columns d_col apart) = W · x (x columns x_col apart), any T */
int mx_cu_gemm16(struct mx_backend *be, float *dst, int64_t d_col, const struct mx_tensor *w,
                 const uint8_t *wdata, const float *x, int64_t x_col, int64_t T);
/* conv2d with an F16 kernel in MX_ACT_GGML mode (the CPU rounds the input to f16 there too):
 * im2col to F16 and cublasGemmEx, one image xn into out [Wo * Ho, Co]; bias left to the caller */
bool mx_cu_conv2d_f16_ok(const struct mx_backend *be, const struct mx_tensor *w);
int mx_cu_conv2d_f16(struct mx_backend *be, float *out, const float *xn,
                     const struct mx_tensor *x, const struct mx_tensor *w,
                     const struct mx_tensor *dst, const struct mx_conv2d_params *p);

/* ---- cuda_fattn.cu: flash attention (tiles of queries x cells, online softmax, split cells) -- */
bool mx_cu_fattn_ok(int head_dim, int group); /* shapes it takes (else cuda_ops.cu's k_attn) */
/* mx_op_attn's contract; round_q: 0 none, 1 q to f16, 2 q to Q8_0 blocks (as k_attn) */
int mx_cu_fattn(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *q,
                const struct mx_tensor *kc, const struct mx_tensor *vc,
                const struct mx_tensor *qpos, const struct mx_tensor *kpos,
                const struct mx_attn_params *p, int round_q);

/* ---- cuda_ops.cu ------------------------------------------------------------------------------- */
int mx_cu_rms_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                   const struct mx_tensor *w, float eps);
int mx_cu_layer_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                     const struct mx_tensor *w, const struct mx_tensor *b, float eps);
int mx_cu_group_norm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                     const struct mx_tensor *w, const struct mx_tensor *b, int n_groups,
                     float eps);
int mx_cu_rope(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
               const struct mx_tensor *pos, const struct mx_rope_params *p);
int mx_cu_kv_shift(struct mx_backend *be, struct mx_tensor *k, const struct mx_tensor *delta,
                   int head_dim, const struct mx_rope_params *p);
int mx_cu_attn(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *q,
               const struct mx_tensor *kc, const struct mx_tensor *vc,
               const struct mx_tensor *qpos, const struct mx_tensor *kpos,
               const struct mx_attn_params *p);
int mx_cu_softmax(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                  float scale);
int mx_cu_unary(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                int kind, float s);
int mx_cu_glu(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *gate,
              const struct mx_tensor *up, int kind);
int mx_cu_swiglu_oai(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *gate,
                     const struct mx_tensor *up, float alpha, float limit);
int mx_cu_binary(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *a,
                 const struct mx_tensor *b, int mul);
int mx_cu_cpy(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *src);
int mx_cu_moe_route(struct mx_backend *be, struct mx_tensor *ids, struct mx_tensor *weights,
                    const struct mx_tensor *logits, bool renorm);
int mx_cu_moe_combine(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *y,
                      const struct mx_tensor *weights);
int mx_cu_conv2d(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                 const struct mx_tensor *w, const struct mx_tensor *b,
                 const struct mx_conv2d_params *p);
int mx_cu_upsample(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                   int factor);
int mx_cu_concat(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *a,
                 const struct mx_tensor *b, int dim);
int mx_cu_transpose(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x);

/* unary kinds of mx_cu_unary / mx_cu_glu */
enum { MX_CU_SILU, MX_CU_GELU, MX_CU_GELU_QUICK, MX_CU_SCALE, MX_CU_SIGMOID };

#endif
