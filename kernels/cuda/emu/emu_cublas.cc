/* emu_cublas.cc - the emulator's cuBLAS: GEMMs in cuBLAS's column-major convention, computed by
 * OpenBLAS's cblas_sgemm on F32 copies of F16/BF16 operands (F32 accumulation, as
 * CUBLAS_COMPUTE_32F does on the GPU). Argument checks follow cuBLAS: a leading dimension
 * smaller than the stored rows is CUBLAS_STATUS_INVALID_VALUE. Work is queued on the handle's
 * stream, so a capturing stream records it. The cublas* functions behave as cuBLAS documents
 * them (host pointer mode: alpha and beta are read at the call). */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include "kernels/cuda/emu/emu_internal.h"

/* a handle: the stream its calls go to */
struct mx_emu_cublas {
    cudaStream_t stream;
};

cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new mx_emu_cublas{NULL};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGetStream(cublasHandle_t h, cudaStream_t *s) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    *s = h->stream;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    (void)m;
    return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

namespace {

/* bytes per element of a supported input/output type, 0 for others */
size_t type_size(cudaDataType_t t) {
    return t == CUDA_R_32F ? 4 : t == CUDA_R_16F || t == CUDA_R_16BF ? 2 : 0;
}

/* element i of an array of type t, as float */
float load(const void *p, cudaDataType_t t, size_t i) {
    switch (t) {
    case CUDA_R_16F: return mx_emu_h2f(((const uint16_t *)p)[i]);
    case CUDA_R_16BF: return mx_emu_bf2f(((const uint16_t *)p)[i]);
    default: return ((const float *)p)[i];
    }
}

void store(void *p, cudaDataType_t t, size_t i, float v) {
    switch (t) {
    case CUDA_R_16F: ((uint16_t *)p)[i] = mx_emu_f2h(v); break;
    case CUDA_R_16BF: ((uint16_t *)p)[i] = mx_emu_f2bf(v); break;
    default: ((float *)p)[i] = v; break;
    }
}

/* A column-major rows x cols matrix with leading dimension ld, converted to a compact F32 copy
 * (ld = rows) unless it is F32 already. */
const float *as_f32(const void *p, cudaDataType_t t, int rows, int cols, int ld,
                    std::vector<float> &tmp, int *ld_out) {
    if (t == CUDA_R_32F) {
        *ld_out = ld;
        return (const float *)p;
    }
    tmp.resize((size_t)rows * cols);
    for (int c = 0; c < cols; c++)
        for (int r = 0; r < rows; r++)
            tmp[(size_t)c * rows + r] = load(p, t, (size_t)c * ld + r);
    *ld_out = rows > 0 ? rows : 1;
    return tmp.data();
}

/* One GEMM C = alpha op(A) op(B) + beta C, any of the supported types. */
void gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
          const void *A, cudaDataType_t at, int lda, const void *B, cudaDataType_t bt, int ldb,
          float beta, void *C, cudaDataType_t ct, int ldc) {
    if (m == 0 || n == 0)
        return;
    std::vector<float> ta_buf, tb_buf, tc_buf;
    int la, lb;
    const float *a = as_f32(A, at, ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda,
                            ta_buf, &la);
    const float *b = as_f32(B, bt, tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb,
                            tb_buf, &lb);
    float *c = (float *)C;
    int lc = ldc;
    if (ct != CUDA_R_32F) {
        tc_buf.assign((size_t)m * n, 0.0f);
        if (beta != 0.0f)
            for (int j = 0; j < n; j++)
                for (int i = 0; i < m; i++)
                    tc_buf[(size_t)j * m + i] = load(C, ct, (size_t)j * ldc + i);
        c = tc_buf.data();
        lc = m;
    }
    if (k == 0) { /* BLAS leaves C * beta */
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
                c[(size_t)j * lc + i] = beta == 0.0f ? 0.0f : beta * c[(size_t)j * lc + i];
    } else {
        cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, alpha, a, la, b, lb,
                    beta, c, lc);
    }
    if (ct != CUDA_R_32F)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
                store(C, ct, (size_t)j * ldc + i, tc_buf[(size_t)j * m + i]);
}

/* cuBLAS's argument checks for one GEMM. */
cublasStatus_t check(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                     int k, int lda, int ldb, int ldc) {
    if (!h)
        return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))
        return CUBLAS_STATUS_INVALID_VALUE;
    if (m < 0 || n < 0 || k < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    int ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n;
    if (lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) || ldc < (m > 1 ? m : 1))
        return CUBLAS_STATUS_INVALID_VALUE;
    return CUBLAS_STATUS_SUCCESS;
}

/* Bytes a column-major rows x cols operand with leading dimension ld spans. */
size_t span(int rows, int cols, int ld, size_t es) {
    return rows == 0 || cols == 0 ? 0 : ((size_t)(cols - 1) * ld + rows) * es;
}

/* Every operand lies in device memory (a GEMM reading past its buffers is a bug on the GPU). */
bool in_device(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *A,
               size_t ea, int lda, const void *B, size_t eb, int ldb, const void *C, size_t ec,
               int ldc) {
    return mx_emu_device_range(A, span(ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m,
                                       lda, ea)) &&
           mx_emu_device_range(B, span(tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k,
                                       ldb, eb)) &&
           mx_emu_device_range(C, span(m, n, ldc, ec));
}

cublasStatus_t enqueue(cublasHandle_t h, std::function<void()> f) {
    cudaError_t e = mx_emu_enqueue(h->stream, [f]() {
        f();
        return cudaSuccess;
    });
    return e == cudaSuccess ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_EXECUTION_FAILED;
}

} // namespace

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *A, int lda,
                           const float *B, int ldb, const float *beta, float *C, int ldc) {
    cublasStatus_t s = check(h, ta, tb, m, n, k, lda, ldb, ldc);
    if (s != CUBLAS_STATUS_SUCCESS)
        return s;
    if (!in_device(ta, tb, m, n, k, A, 4, lda, B, 4, ldb, C, 4, ldc)) {
        mx_emu_set_error(cudaErrorIllegalAddress,
                         "cublasSgemm: an operand reaches outside its device allocation", true);
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    float al = *alpha, be = *beta; /* host pointer mode: read at the call */
    return enqueue(h, [=]() {
        gemm(ta, tb, m, n, k, al, A, CUDA_R_32F, lda, B, CUDA_R_32F, ldb, be, C, CUDA_R_32F, ldc);
    });
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta,
                                         cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda, long long sa,
                                         const float *B, int ldb, long long sb, const float *beta,
                                         float *C, int ldc, long long sc, int batch) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, CUDA_R_32F, lda, sa, B,
                                      CUDA_R_32F, ldb, sb, beta, C, CUDA_R_32F, ldc, sc, batch,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta,
                                          cublasOperation_t tb, int m, int n, int k,
                                          const void *alpha, const void *A, cudaDataType_t at,
                                          int lda, long long sa, const void *B,
                                          cudaDataType_t bt, int ldb, long long sb,
                                          const void *beta, void *C, cudaDataType_t ct, int ldc,
                                          long long sc, int batch, cublasComputeType_t compute,
                                          cublasGemmAlgo_t algo) {
    (void)algo;
    cublasStatus_t s = check(h, ta, tb, m, n, k, lda, ldb, ldc);
    if (s != CUBLAS_STATUS_SUCCESS)
        return s;
    if (batch < 0 || sa < 0 || sb < 0 || sc < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_16F &&
        compute != CUBLAS_COMPUTE_32F_FAST_16BF && compute != CUBLAS_COMPUTE_32F_FAST_TF32)
        return CUBLAS_STATUS_NOT_SUPPORTED; /* F16 compute: alpha would be a half */
    size_t ea = type_size(at), eb = type_size(bt), ec = type_size(ct);
    if (!ea || !eb || !ec)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    for (int i = 0; i < batch; i++)
        if (!in_device(ta, tb, m, n, k, (const char *)A + (size_t)i * sa * ea, ea, lda,
                       (const char *)B + (size_t)i * sb * eb, eb, ldb,
                       (const char *)C + (size_t)i * sc * ec, ec, ldc)) {
            mx_emu_set_error(cudaErrorIllegalAddress,
                             "cublasGemmEx: an operand reaches outside its device allocation",
                             true);
            return CUBLAS_STATUS_EXECUTION_FAILED;
        }
    float al = *(const float *)alpha, be = *(const float *)beta;
    return enqueue(h, [=]() {
        for (int i = 0; i < batch; i++)
            gemm(ta, tb, m, n, k, al, (const char *)A + (size_t)i * sa * ea, at, lda,
                 (const char *)B + (size_t)i * sb * eb, bt, ldb, be,
                 (char *)C + (size_t)i * sc * ec, ct, ldc);
    });
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                            int n, int k, const void *alpha, const void *A, cudaDataType_t at,
                            int lda, const void *B, cudaDataType_t bt, int ldb, const void *beta,
                            void *C, cudaDataType_t ct, int ldc, cublasComputeType_t compute,
                            cublasGemmAlgo_t algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, A, at, lda, 0, B, bt, ldb, 0,
                                      beta, C, ct, ldc, 0, 1, compute, algo);
}
