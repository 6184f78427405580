/* quant.h - tensor element types and the bit-exact ggml/GGUF quant block layouts.
 *
 * The enum values are the GGUF/ggml type ids, so a GGUF tensor's type field is an enum mx_type.
 * Block structs are plain C shared by C and CUDA (ggml-common.h style); each size is pinned by a
 * _Static_assert because the files on disk are these exact bytes. Per-type facts live in one
 * table (mx_type_traits) so inner loops never switch on the type.
 *
 * The scalar dequantize/quantize functions here are the ground truth: kernels/ has fast twins that
 * are tested against them.
 */
#ifndef MX_QUANT_H
#define MX_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mx_type {
    MX_TYPE_F32 = 0,
    MX_TYPE_F16 = 1,
    MX_TYPE_Q4_0 = 2,
    MX_TYPE_Q4_1 = 3,
    MX_TYPE_Q5_0 = 6,
    MX_TYPE_Q5_1 = 7,
    MX_TYPE_Q8_0 = 8,
    MX_TYPE_Q8_1 = 9,
    MX_TYPE_Q2_K = 10,
    MX_TYPE_Q3_K = 11,
    MX_TYPE_Q4_K = 12,
    MX_TYPE_Q5_K = 13,
    MX_TYPE_Q6_K = 14,
    MX_TYPE_Q8_K = 15,
    MX_TYPE_IQ2_XXS = 16, /* the IQ types: block layouts and tables in quant_iq.h */
    MX_TYPE_IQ2_XS = 17,
    MX_TYPE_IQ3_XXS = 18,
    MX_TYPE_IQ1_S = 19,
    MX_TYPE_IQ4_NL = 20,
    MX_TYPE_IQ3_S = 21,
    MX_TYPE_IQ2_S = 22,
    MX_TYPE_IQ4_XS = 23,
    MX_TYPE_I8 = 24,
    MX_TYPE_I16 = 25,
    MX_TYPE_I32 = 26,
    MX_TYPE_I64 = 27,
    MX_TYPE_F64 = 28,
    MX_TYPE_IQ1_M = 29,
    MX_TYPE_BF16 = 30,
    MX_TYPE_MXFP4 = 39, /* OCP microscaling FP4 (gpt-oss experts) */
    MX_TYPE_COUNT = 40 /* size of the traits table; ids without traits are unsupported */
};

#define MX_QK4_0 32
#define MX_QK4_1 32
#define MX_QK5_0 32
#define MX_QK5_1 32
#define MX_QK8_0 32
#define MX_QK8_1 32
#define MX_QK_K 256
#define MX_QK_MXFP4 32
#define MX_K_SCALE_SIZE 12

typedef uint16_t mx_half; /* IEEE binary16 bits */

typedef struct { mx_half d; uint8_t qs[MX_QK4_0 / 2]; } mx_block_q4_0;
typedef struct { mx_half d, m; uint8_t qs[MX_QK4_1 / 2]; } mx_block_q4_1;
typedef struct { mx_half d; uint8_t qh[4]; uint8_t qs[MX_QK5_0 / 2]; } mx_block_q5_0;
typedef struct { mx_half d, m; uint8_t qh[4]; uint8_t qs[MX_QK5_1 / 2]; } mx_block_q5_1;
typedef struct { mx_half d; int8_t qs[MX_QK8_0]; } mx_block_q8_0;
typedef struct { mx_half d, s; int8_t qs[MX_QK8_1]; } mx_block_q8_1; /* s = d * sum(qs) */

/* MXFP4 (ggml's block_mxfp4): 32 values, each an E2M1 float stored as a 4-bit index into
 * mx_kvalues_mxfp4 (values doubled so they are integers: 0, 0.5, 1, 1.5, 2, 3, 4, 6 become 0..12;
 * bit 3 is the sign), and one shared E8M0 exponent e: value = kvalue * 2^(e - 128) (half of
 * 2^(e - 127), undoing the doubling). Byte j holds value j (low nibble) and value j + 16 (high). */
typedef struct { uint8_t e; uint8_t qs[MX_QK_MXFP4 / 2]; } mx_block_mxfp4;

/* The E2M1 values, doubled (ggml's kvalues_mxfp4; the table is the format's definition). */
extern const int8_t mx_kvalues_mxfp4[16];

/* 2^(e - 128) as ggml's GGML_E8M0_TO_FP32_HALF computes it (denormal bit patterns for e < 2). */
static inline float mx_e8m0_to_fp32_half(uint8_t e) {
    union { uint32_t u; float f; } v;
    v.u = e < 2 ? (uint32_t)0x00200000u << e : (uint32_t)(e - 1) << 23;
    return v.f;
}

/* K-quants: super-blocks of 256 values. */
typedef struct {
    uint8_t scales[MX_QK_K / 16]; /* 4-bit scale (low) and 4-bit min (high) per 16 values */
    uint8_t qs[MX_QK_K / 4];      /* 2-bit quants */
    mx_half d, dmin;              /* super-block scale for scales / for mins */
} mx_block_q2_K;
typedef struct {
    uint8_t hmask[MX_QK_K / 8];   /* high bit of the 3-bit quants */
    uint8_t qs[MX_QK_K / 4];      /* low 2 bits */
    uint8_t scales[12];           /* 16 6-bit scales, packed */
    mx_half d;
} mx_block_q3_K;
typedef struct {
    mx_half d, dmin;
    uint8_t scales[MX_K_SCALE_SIZE]; /* 8 6-bit scales and 8 6-bit mins, packed */
    uint8_t qs[MX_QK_K / 2];
} mx_block_q4_K;
typedef struct {
    mx_half d, dmin;
    uint8_t scales[MX_K_SCALE_SIZE];
    uint8_t qh[MX_QK_K / 8];      /* high (5th) bits */
    uint8_t qs[MX_QK_K / 2];      /* low 4 bits */
} mx_block_q5_K;
typedef struct {
    uint8_t ql[MX_QK_K / 2];      /* low 4 bits */
    uint8_t qh[MX_QK_K / 4];      /* high 2 bits */
    int8_t scales[MX_QK_K / 16];  /* 8-bit scale per 16 values */
    mx_half d;
} mx_block_q6_K;
typedef struct {
    float d;
    int8_t qs[MX_QK_K];
    int16_t bsums[MX_QK_K / 16];  /* sum of qs in each group of 16 */
} mx_block_q8_K;

_Static_assert(sizeof(mx_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(mx_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(mx_block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(mx_block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(mx_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(mx_block_q8_1) == 36, "q8_1 block");
_Static_assert(sizeof(mx_block_q2_K) == 84, "q2_K block");
_Static_assert(sizeof(mx_block_q3_K) == 110, "q3_K block");
_Static_assert(sizeof(mx_block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(mx_block_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(mx_block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(mx_block_q8_K) == 292, "q8_K block");
_Static_assert(sizeof(mx_block_mxfp4) == 17, "mxfp4 block");

/* Scalar row converters: n values, n a multiple of the type's block size. */
typedef void (*mx_to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*mx_from_float_fn)(const float *src, void *dst, int64_t n);

struct mx_type_traits {
    const char *name;           /* "q4_K"; NULL for ids mixel does not know */
    int64_t blck_size;          /* values per block */
    size_t type_size;           /* bytes per block */
    bool is_quantized;
    mx_to_float_fn to_float;    /* NULL when dequantizing is not supported (integer types) */
    mx_from_float_fn from_float;/* reference quantizer; NULL when not offered */
};

/* Traits of a type, or NULL for an unknown/unsupported id (bounds-checked: safe on file data). */
const struct mx_type_traits *mx_type_traits(int type);

/* Name of a type ("f32", "q4_K"), "?" for unknown ids. */
const char *mx_type_name(int type);

/* Parses a type name (case-insensitive: "q4_0", "Q4_K", "f16", "bf16"); -1 if unknown. */
int mx_type_from_name(const char *name);

/* Bytes for n values of type: returns false if type is unknown, n is not a multiple of the block
 * size, or the size overflows. */
bool mx_row_size(int type, int64_t n, size_t *out);

/* Reference (scalar) dequantization of n values; n must be a multiple of the block size.
 * Returns 0, or MX_EUNSUP for a type without a dequantizer, MX_EINVAL for a bad n. */
int mx_dequantize_row(int type, const void *src, float *dst, int64_t n);

/* Reference quantization of n values (ggml's quantize_row_*_ref bit for bit). Returns 0, or
 * MX_EUNSUP / MX_EINVAL as above. */
int mx_quantize_row(int type, const float *src, void *dst, int64_t n);

/* One row of n values quantized as llama-quantize does (ggml's quantize_<type>() for one row):
 * with qw (n importance weights, an imatrix row: mean squared activation per column) the
 * weighted searches of Q4_0, Q4_1, Q5_0, Q5_1, Q2_K..Q6_K, IQ4_NL and IQ4_XS, byte-identical to
 * ggml's quantize_row_*_impl; types without one (Q8_0, F16, BF16, MXFP4) ignore qw. IQ2_XXS,
 * IQ2_XS and IQ1_S quantize only with qw (MX_EUNSUP without: ggml has no unweighted search for
 * them); their grid-neighbour tables are built on first use (a fraction of a second, once per
 * process, thread-safe; MX_ENOMEM if that fails). IQ3_XXS, IQ3_S, IQ2_S and IQ1_M quantize with
 * qw or, without, with ggml's x^2-based weights (its quantize_row_*_ref / quantize_iq1_m(NULL)),
 * with tables built the same way. Other types
 * with qw NULL: the reference quantizer (mx_quantize_row), except IQ4_NL's 7 refinement tries.
 * Row-wide statistics (the 32-block types' sigma2) make this a per-row call. Returns 0,
 * MX_EUNSUP or MX_EINVAL as mx_quantize_row. */
int mx_quantize_row_weighted(int type, const float *src, void *dst, int64_t n, const float *qw);

/* Scale and min j (0..7) of a Q4_K/Q5_K block from its 12 packed scale bytes q (6 bits each). */
void mx_q4_k_scale_min(int j, const uint8_t *q, uint8_t *d, uint8_t *m);

#endif
