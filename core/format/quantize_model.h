/* quantize_model.h - requantize a whole GGUF model to a llama.cpp file type ("Q4_K_M", ...).
 *
 * What `llama-quantize IN OUT TYPE` does, for the types mixel's reference quantizers make: the
 * per-tensor type mix of llama.cpp's llama_tensor_get_type (output.weight Q6_K in K mixes,
 * attn_v / ffn_down Q6_K on the "use_more_bits" layers of Q4_K_M, Q8_0 attn_k/attn_v and Q5_K
 * attn_output for 8-expert models, block-size fallbacks such as Q4_K -> Q5_0), 1-D tensors and
 * the MoE router kept as they are, all metadata copied with general.file_type set. The bytes of
 * each converted tensor are what llama-quantize writes: ggml's quantize_row_*_ref of the
 * dequantized source rows without an importance matrix; with one (params.imatrix, llama-imatrix's
 * file: core/format/imatrix.h) the weighted quantizers fed with the tensor's (expert's) imatrix
 * row, and the mix's two imatrix rules, with the quantize.imatrix.* keys added.
 *
 * Nothing here prints: errors come back in a struct mx_err, progress through a callback.
 */
#ifndef MX_QUANTIZE_MODEL_H
#define MX_QUANTIZE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

struct mx_gguf;
struct mx_imatrix;

/* llama.cpp's llama_ftype numbers (the value stored in general.file_type). */
enum mx_ftype {
    MX_FTYPE_ALL_F32 = 0,
    MX_FTYPE_MOSTLY_F16 = 1,
    MX_FTYPE_MOSTLY_Q4_0 = 2,
    MX_FTYPE_MOSTLY_Q4_1 = 3,
    MX_FTYPE_MOSTLY_Q8_0 = 7,
    MX_FTYPE_MOSTLY_Q5_0 = 8,
    MX_FTYPE_MOSTLY_Q5_1 = 9,
    MX_FTYPE_MOSTLY_Q2_K = 10,
    MX_FTYPE_MOSTLY_Q3_K_S = 11,
    MX_FTYPE_MOSTLY_Q3_K_M = 12,
    MX_FTYPE_MOSTLY_Q3_K_L = 13,
    MX_FTYPE_MOSTLY_Q4_K_S = 14,
    MX_FTYPE_MOSTLY_Q4_K_M = 15,
    MX_FTYPE_MOSTLY_Q5_K_S = 16,
    MX_FTYPE_MOSTLY_Q5_K_M = 17,
    MX_FTYPE_MOSTLY_Q6_K = 18,
    MX_FTYPE_MOSTLY_IQ2_XXS = 19, /* need an importance matrix (mx_ftype_needs_imatrix) */
    MX_FTYPE_MOSTLY_IQ2_XS = 20,
    MX_FTYPE_MOSTLY_IQ1_S = 24,
    MX_FTYPE_MOSTLY_IQ2_S = 28,   /* mostly IQ2_XS (llama.cpp's naming), IQ3_S where it matters */
    MX_FTYPE_MOSTLY_IQ2_M = 29,   /* mostly IQ2_S */
    MX_FTYPE_MOSTLY_IQ1_M = 31,
    MX_FTYPE_MOSTLY_Q2_K_S = 21,  /* Q2_K, more bits in attn_v / the first ffn_down layers */
    MX_FTYPE_MOSTLY_IQ3_XS = 22,  /* mostly IQ3_S; IQ3_XXS attn_q / attn_k and middle gate / up */
    MX_FTYPE_MOSTLY_IQ3_XXS = 23, /* mostly IQ3_XXS, IQ2_S attn_q / attn_k */
    MX_FTYPE_MOSTLY_IQ3_S = 26,   /* need no importance matrix; weighted by one when given */
    MX_FTYPE_MOSTLY_IQ3_M = 27,
    MX_FTYPE_MOSTLY_IQ4_NL = 25, /* need no importance matrix in llama.cpp */
    MX_FTYPE_MOSTLY_IQ4_XS = 30,
    MX_FTYPE_MOSTLY_BF16 = 32,
    MX_FTYPE_MOSTLY_MXFP4_MOE = 38, /* gpt-oss: experts MXFP4, the other matrices Q8_0 */
};

/* A file type from its name, case-insensitive: "Q4_K_M", "q4_k_m", llama-quantize's aliases
 * "Q3_K" (= Q3_K_M), "Q4_K" (= Q4_K_M) and "Q5_K" (= Q5_K_M), or its number ("15"). Returns
 * the enum mx_ftype value, or -1 for a name mixel cannot make. */
int mx_ftype_from_name(const char *name);

/* Whether llama-quantize makes ftype only with an importance matrix (IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ2_M, IQ1_S, IQ1_M, IQ3_XXS, Q2_K_S here). */
bool mx_ftype_needs_imatrix(int ftype);

/* Canonical name ("Q4_K_M") of a supported ftype, or NULL. */
const char *mx_ftype_name(int ftype);

/* The supported ftypes, in a stable order for help texts; *n gets the count. */
const int *mx_ftype_list(int *n);

/* One tensor's conversion, as chosen by mx_quantize_plan. */
struct mx_quantize_tensor {
    const char *name;      /* borrowed from the source file's reader */
    int n_dims;
    int64_t ne[4];
    int src_type;          /* enum mx_type */
    int dst_type;          /* enum mx_type; == src_type means copied byte for byte */
    bool fallback;         /* the mix's type did not fit ne[0]; a fallback type was used */
    bool weighted;         /* quantized with importance weights (mx_quantize_model sets it) */
    size_t src_bytes, dst_bytes;
};

/* Chooses every tensor's output type for ftype, llama.cpp's way (see the file comment); the
 * result is in file order, out[i] for tensor i. out must hold mx_gguf_n_tensors(g) entries.
 * Returns 0, MX_EINVAL for an unsupported ftype, MX_EFORMAT when the file's layer numbering
 * does not fit its block_count, MX_EUNSUP when a tensor that must be converted has a type that
 * cannot be dequantized. Names in out are valid while g is open. */
int mx_quantize_plan(const struct mx_gguf *g, int ftype, struct mx_quantize_tensor *out,
                     struct mx_err *err);

/* The same for a conversion with an importance matrix (has_imatrix), whose mix differs in
 * llama.cpp: IQ4_NL/IQ4_XS keep the first eighth of ffn_down on their type (Q5_K without), and
 * Q4_0/Q5_0 put it on Q4_1/Q5_1. mx_quantize_plan is this with has_imatrix false. */
int mx_quantize_plan_imatrix(const struct mx_gguf *g, int ftype, bool has_imatrix,
                             struct mx_quantize_tensor *out, struct mx_err *err);

/* Called after each tensor is converted (i of n, 0-based; t describes it; seconds since the
 * start). A nonzero return cancels the conversion (MX_ECANCELED). May be NULL. Called on the
 * thread that called mx_quantize_model. */
typedef int (*mx_quantize_progress_fn)(void *ud, int64_t i, int64_t n,
                                       const struct mx_quantize_tensor *t, double seconds);

struct mx_quantize_params {
    int ftype;                          /* enum mx_ftype */
    int n_threads;                      /* worker threads splitting rows; < 1 means 1 */
    mx_quantize_progress_fn progress;   /* optional */
    void *progress_ud;
    const struct mx_imatrix *imatrix;   /* importance weights (borrowed, already filtered by
                                           --include/--exclude-weights), or NULL: llama-quantize's
                                           quantizers without an imatrix */
    const char *imatrix_file;           /* its path, recorded as quantize.imatrix.file */
};

struct mx_quantize_stats {
    int64_t n_tensors;       /* in the file */
    int64_t n_converted;     /* tensors whose type changed */
    int64_t n_fallback;      /* of those, tensors on a fallback type */
    uint64_t n_elements;     /* values in all tensors */
    uint64_t src_bytes;      /* tensor data, source */
    uint64_t dst_bytes;      /* tensor data, output (without padding) */
    uint64_t file_bytes;     /* size of the written file */
    int64_t n_weighted;      /* converted tensors quantized with importance weights */
    int64_t n_unweighted;    /* converted tensors the importance matrix has no entry for */
    double seconds;          /* wall time of the whole conversion */
};

/* Reads in_path (GGUF), converts it to p->ftype and writes out_path atomically (temp file +
 * rename: on any failure out_path is untouched). Refuses out_path naming the same file as
 * in_path (MX_EINVAL). Returns 0 or a negative MX_E* with the reason in err: the reader's codes
 * for a bad input, MX_EINVAL for bad params, MX_EIO when out_path cannot be written,
 * MX_ENOMEM, MX_ECANCELED when the progress callback asked to stop. stats (optional) is filled
 * on success. Memory: one converted tensor at a time (the file is streamed: header first, its
 * offsets known from the plan); source pages are released once their tensor is written. */
int mx_quantize_model(const char *in_path, const char *out_path,
                      const struct mx_quantize_params *p, struct mx_quantize_stats *stats,
                      struct mx_err *err);

#endif
