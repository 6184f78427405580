/* gemm_iq.h - prefill tiles of the IQ1-IQ3 grid types on file-layout weights (gemm_iq_avx2.c,
 * gemm_iq_avx512.c): each weight super-block expanded once per tile to signed bytes
 * (gemm_iq_expand.h), then integer dots against many quantized columns.
 *
 * Why: prefill of these types dequantized each 32-row tile to f32 for sgemm and ran at ~1/3 of
 * llama.cpp's integer dots (tests/bench/RESULTS.md); their decode dots redo 4-8 grid loads and
 * a sign expansion per 32 values for every column. The weights keep the file's layout and
 * size (decode keeps its vec_dots); the expansion lives in the thread's tile scratch.
 */
#ifndef MX_GEMM_IQ_H
#define MX_GEMM_IQ_H

#include "kernels/cpu/cpu.h"

/* The float order of the tiles' outputs. Below this many columns in a matmul (or tokens of an
 * expert in matmul_id) llama.cpp runs these types through vec_dot, from it on through its IQ
 * panel (ggml-cpu/iqp.cpp, GGML_IQP_MIN_BATCH(_ID), read), which composes each super-block's
 * integer sum as fma((float)isum, dfac x dy, sumf) (dfac: the super-scale x 2^-k). The two
 * differ in the last bit, a Q8_K rounding of a later layer flips on it and the peer's logits
 * drift (tests/iq_logits_peer.sh), so the caller picks the order llama.cpp would use: panel
 * from this many columns when the rows are a multiple of 8 (the panel's condition), else the
 * bits of vec_dot. */
#define MX_GEMM_IQ_PANEL_MIN_COLS 8

/* Most rows a tile call takes (matmul.c's MX_TILE). */
#define MX_GEMM_IQ_ROWS 32

/* Scratch bytes a tile call needs for rows of n_in values: the prepared rows (328 bytes per row
 * and super-block), 8 columns of unsigned activations and their scales, one row group's
 * expanded values (16 x 256 bytes per super-block; 64-aligned at the end). At most 66 n_in:
 * the tile buffer of matmul.c (MX_TILE x n_in floats) holds it. */
static inline size_t mx_gemm_iq_scratch(int64_t n_in) {
    return (size_t)(n_in / 256) * (328 * MX_GEMM_IQ_ROWS + 8 * 256 + 8 * 4 + 16 * 256) + 64;
}

/* Install gemm_iq entries for IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S and IQ1_M: the
 * AVX2 tiles (8 rows, maddubs) and the AVX-512 VNNI ones (16 rows, vpdpbusd). Call only when
 * the CPU has the level's features. */
void mx_cpu_kernels_gemm_iq_avx2(struct mx_cpu_kernels *k);
void mx_cpu_kernels_gemm_iq_avx512(struct mx_cpu_kernels *k);

#endif
