/* kernels_iq.h - the IQ quant types' row kernels (kernels_iq.c scalar, kernels_iq_avx2.c,
 * kernels_iq_avx512.c), installed into a struct mx_cpu_kernels by kernels.c.
 *
 * Why separate from kernels_avx2.c: the IQ kernels decode through lookup grids (format tables
 * in core/base/quant_iq_tables.c) and live apart from the K-quant kernels other work rewrites.
 *
 * Numbers: every IQ vec_dot sums each 256-value super-block (IQ4_NL: each 32-value block) in
 * exact integers, then accumulates d_w x d_x x isum in float, super-block after super-block, in
 * one fixed order. So the SIMD kernels equal the scalar ones bit for bit, and both equal ggml's
 * generic vec_dot_iq*_q8_K except for IQ4_XS (ggml adds each 32-value sub-block's scaled sum
 * in float; here the 8 sub-blocks' integer sums are scaled and added in int32 first: a
 * difference of float rounding only, ~1e-7 relative).
 */
#ifndef MX_KERNELS_IQ_H
#define MX_KERNELS_IQ_H

#include "core/base/quant_iq.h"
#include "kernels/cpu/cpu.h"

/* The scalar integer vec_dots of every IQ type, by weight type (NULL for other types): the
 * reference the SIMD ones are tested against. */
extern float (*const mx_iq_vec_dot_scalar[MX_TYPE_COUNT])(int64_t n, const void *w,
                                                          const void *xq);

/* Installs the scalar vec_dots of the IQ types (for the kernel levels above the pure reference
 * one: an integer dot per row beats dequantize + f32 dot). */
void mx_cpu_kernels_iq(struct mx_cpu_kernels *k);

/* Replaces the IQ entries with AVX2 versions: the vec_dots and the dequantizers of every IQ type,
 * and installs the 8-row GEMMs of repacked IQ4_XS and IQ4_NL (only call when the CPU has AVX2 +
 * FMA + F16C). */
void mx_cpu_kernels_iq_avx2(struct mx_cpu_kernels *k);

/* Replaces the vec_dots of the IQ types with sign bits (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S)
 * with AVX-512 BW/VL ones (masked sign application) and installs the 8-row VNNI GEMMs of
 * repacked IQ4_XS and IQ4_NL (only call when the CPU has the AVX-512 level's features). */
void mx_cpu_kernels_iq_avx512(struct mx_cpu_kernels *k);

/* MX_LAYOUT_IQ4_XSX8: 8 IQ4_XS rows, super-block by super-block (8 x 136 bytes), so prefill
 * and decode run the 8 rows through vpdpbusd (AVX2: maddubs) with one broadcast activation word,
 * as Q4_0's repacked layout does (cpu.h). scales_l words are read little-endian (x86). Header: the 8 fp16 scales, each row's 4 scales_l bytes as one
 * word, each row's scales_h; then per 32-value sub-block ib, 4 chunks of 32 bytes where chunk
 * j, bytes 4r..4r+3, hold row r's bytes qs[16 ib + 4j .. + 3] (low nibbles: values
 * 32 ib + 4j.., high nibbles: 32 ib + 16 + 4j..). */
typedef struct {
    mx_half d[8];
    uint32_t scales_l[8];
    uint16_t scales_h[8];
    uint8_t qs[MX_QK_K / 32][4][32];
} mx_block_iq4_xsx8;
_Static_assert(sizeof(mx_block_iq4_xsx8) == 8 * sizeof(mx_block_iq4_xs), "iq4_xsx8 block");

/* MX_LAYOUT_IQ4_NLX8: 8 IQ4_NL rows block by block, exactly Q4_0's layout (mx_block_q4_0x8:
 * the 8 scales, then chunk j, bytes 4r..4r+3 = row r's qs[4j .. 4j + 3]); the nibbles index the
 * IQ4 levels instead of q - 8. */
typedef struct {
    mx_half d[8];
    uint8_t qs[4][32];
} mx_block_iq4_nlx8;
_Static_assert(sizeof(mx_block_iq4_nlx8) == 8 * sizeof(mx_block_iq4_nl), "iq4_nlx8 block");

/* MX_LAYOUT_MXFP4X8: 8 MXFP4 rows block by block, Q4_0's layout with the 8 E8M0 exponents in
 * place of the fp16 scales (kernels_mxfp4.c holds its converters and GEMM). */
typedef struct {
    uint8_t e[8];
    uint8_t qs[4][32];
} mx_block_mxfp4x8;
_Static_assert(sizeof(mx_block_mxfp4x8) == 8 * sizeof(mx_block_mxfp4), "mxfp4x8 block");

/* repack.c's converters of these layouts (kernels_iq_repack.c; kernels_mxfp4.c for MXFP4):
 * gather block b of the 8 rows (rows[r]) into one x8 block; write row r's values of one x8
 * block as mx_dequantize_row does (same float operations). */
void mx_mxfp4x8_repack(const void *const rows[8], void *dst);
void mx_mxfp4x8_dequant(const void *src, int r, float *out);
void mx_iq4_xsx8_repack(const void *const rows[8], void *dst);
void mx_iq4_xsx8_dequant(const void *src, int r, float *out);
void mx_iq4_nlx8_repack(const void *const rows[8], void *dst);
void mx_iq4_nlx8_dequant(const void *src, int r, float *out);

#endif
