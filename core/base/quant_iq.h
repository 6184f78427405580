/* quant_iq.h - the IQ ("importance") quant types as GGUF stores them: block layouts, the grid and
 * sign tables they index, and the scalar reference (de)quantizers.
 *
 * Why a file of its own: the IQ types decode through lookup tables (quant_iq_tables.c, format
 * data transcribed from ggml) rather than plain shifts, and two of them (IQ4_NL, IQ4_XS) have a
 * quantizer with an optional importance-weights array, unlike the K-quants in quant.c. quant.c
 * only lists them in the traits table.
 *
 * Layouts are ggml's (ggml-common.h) byte for byte; each size is pinned by a _Static_assert.
 * Values: IQ2/IQ3 store 8 (or 4) magnitudes per grid index with 7 sign bits (the 8th is the
 * parity); IQ1 stores ternary grids plus a +-1/8 shift; IQ4 stores 4-bit indices into 16
 * non-linear levels (mx_kvalues_iq4nl).
 */
#ifndef MX_QUANT_IQ_H
#define MX_QUANT_IQ_H

#include <stdint.h>

#include "core/base/quant.h"

#define MX_QK4_NL 32

typedef struct { mx_half d; uint16_t qs[MX_QK_K / 8]; } mx_block_iq2_xxs;
typedef struct {
    mx_half d;
    uint16_t qs[MX_QK_K / 8];     /* 9-bit grid index, 7 sign bits */
    uint8_t scales[MX_QK_K / 32]; /* two 4-bit scales per 32 values */
} mx_block_iq2_xs;
typedef struct {
    mx_half d;
    uint8_t qs[MX_QK_K / 4];      /* low 8 bits of the grid indices, then the sign bytes */
    uint8_t qh[MX_QK_K / 32];     /* high 2 bits of the 4 indices of each 32 values */
    uint8_t scales[MX_QK_K / 32];
} mx_block_iq2_s;
typedef struct { mx_half d; uint8_t qs[3 * MX_QK_K / 8]; } mx_block_iq3_xxs;
typedef struct {
    mx_half d;
    uint8_t qs[MX_QK_K / 4];      /* low 8 bits of the grid indices */
    uint8_t qh[MX_QK_K / 32];     /* their 9th bits */
    uint8_t signs[MX_QK_K / 8];
    uint8_t scales[MX_QK_K / 64];
} mx_block_iq3_s;
typedef struct {
    mx_half d;
    uint8_t qs[MX_QK_K / 8];      /* low 8 bits of the grid indices */
    uint16_t qh[MX_QK_K / 32];    /* 3 high index bits x 4, 3-bit scale, shift sign */
} mx_block_iq1_s;
typedef struct {
    uint8_t qs[MX_QK_K / 8];
    uint8_t qh[MX_QK_K / 16];     /* 3 high index bits + shift sign, per group of 8 */
    uint8_t scales[MX_QK_K / 32]; /* 3-bit scales; the fp16 super-scale in the top nibbles */
} mx_block_iq1_m;
typedef struct { mx_half d; uint8_t qs[MX_QK4_NL / 2]; } mx_block_iq4_nl;
typedef struct {
    mx_half d;
    uint16_t scales_h;            /* high 2 bits of the 8 6-bit scales */
    uint8_t scales_l[MX_QK_K / 64];
    uint8_t qs[MX_QK_K / 2];
} mx_block_iq4_xs;

_Static_assert(sizeof(mx_block_iq2_xxs) == 66, "iq2_xxs block");
_Static_assert(sizeof(mx_block_iq2_xs) == 74, "iq2_xs block");
_Static_assert(sizeof(mx_block_iq2_s) == 82, "iq2_s block");
_Static_assert(sizeof(mx_block_iq3_xxs) == 98, "iq3_xxs block");
_Static_assert(sizeof(mx_block_iq3_s) == 110, "iq3_s block");
_Static_assert(sizeof(mx_block_iq1_s) == 50, "iq1_s block");
_Static_assert(sizeof(mx_block_iq1_m) == 56, "iq1_m block");
_Static_assert(sizeof(mx_block_iq4_nl) == 18, "iq4_nl block");
_Static_assert(sizeof(mx_block_iq4_xs) == 136, "iq4_xs block");

/* The format's tables (quant_iq_tables.c, generated): grids of 8 unsigned bytes (IQ2), 4 bytes
 * (IQ3), 8 signed bytes in -1..1 (IQ1); 7-bit sign index -> 8 sign bits with even parity; the 16
 * IQ4 levels. */
extern const uint64_t mx_iq2xxs_grid[256];
extern const uint64_t mx_iq2xs_grid[512];
extern const uint64_t mx_iq2s_grid[1024];
extern const uint32_t mx_iq3xxs_grid[256];
extern const uint32_t mx_iq3s_grid[512];
extern const uint64_t mx_iq1s_grid[2048];
extern const uint8_t mx_ksigns_iq2xs[128];
extern const int8_t mx_kvalues_iq4nl[16];

/* The +-shift of IQ1_S/IQ1_M values (ggml's IQ1S_DELTA). */
#define MX_IQ1_DELTA 0.125f

/* Scalar dequantizers (ggml's dequantize_row_iq*, same float operations in the same order): n
 * values, a multiple of the block size (256; 32 for IQ4_NL). */
void mx_iq2_xxs_to_float(const void *src, float *dst, int64_t n);
void mx_iq2_xs_to_float(const void *src, float *dst, int64_t n);
void mx_iq2_s_to_float(const void *src, float *dst, int64_t n);
void mx_iq3_xxs_to_float(const void *src, float *dst, int64_t n);
void mx_iq3_s_to_float(const void *src, float *dst, int64_t n);
void mx_iq1_s_to_float(const void *src, float *dst, int64_t n);
void mx_iq1_m_to_float(const void *src, float *dst, int64_t n);
void mx_iq4_nl_to_float(const void *src, float *dst, int64_t n);
void mx_iq4_xs_to_float(const void *src, float *dst, int64_t n);

/* Reference quantizers of the traits table: ggml's quantize_row_iq4_nl_ref (one scale search,
 * no refinement) and quantize_row_iq4_xs_ref, byte for byte. */
void mx_iq4_nl_from_float(const float *src, void *dst, int64_t n);
void mx_iq4_xs_from_float(const float *src, void *dst, int64_t n);

/* The quantizers llama-quantize runs (ggml's quantize_iq4_nl / quantize_iq4_xs for one row of n
 * values): the scale search with 7 refinement tries, weighted by the importance matrix row qw
 * (n values) when given, else by x^2. Byte-identical to ggml's output for the same inputs. */
void mx_quantize_iq4_nl(const float *src, void *dst, int64_t n, const float *qw);
void mx_quantize_iq4_xs(const float *src, void *dst, int64_t n, const float *qw);

#endif
