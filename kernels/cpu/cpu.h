/* cpu.h - internals of the CPU backend shared by its files (not for core/): the thread pool, the
 * backend state with its scratch memory, and the scalar reference kernels (ref_*.c).
 *
 * Every kernel is a task `void f(void *args, int ith, int nth)`: thread ith of nth computes its
 * share of the output rows. Each output value is computed by exactly one thread in a fixed
 * order, so results are bitwise identical for any thread count (tests rely on that).
 */
#ifndef MX_CPU_H
#define MX_CPU_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/backend.h"

/* ---- thread pool (pool.c) -------------------------------------------------------------------- */

struct mx_pool;
/* The most threads a CPU backend runs (mx_backend_cpu_new refuses more). */
#define MX_CPU_MAX_THREADS 256
typedef void (*mx_pool_fn)(void *args, int ith, int nth);

/* Starts n_threads - 1 workers (the caller is thread 0). Returns 0, MX_EINVAL, MX_ENOMEM, or
 * MX_EIO when a thread cannot be started (nothing is left running then). */
int mx_pool_new(int n_threads, struct mx_pool **out);

/* Stops and joins the workers. NULL ok. */
void mx_pool_free(struct mx_pool *pool);

int mx_pool_n_threads(const struct mx_pool *pool);

/* Runs fn(args, ith, nth) on every thread (ith = 0 on the caller) and returns when all are done.
 * Not reentrant: fn must not call mx_pool_run. */
void mx_pool_run(struct mx_pool *pool, mx_pool_fn fn, void *args);

typedef void (*mx_pool_unit_fn)(void *args, int64_t u, int ith);

/* Runs fn(args, u, ith) once for every unit u in [bounds[0], bounds[nth]) and returns when all
 * are done. Thread ith first takes the units of [bounds[ith], bounds[ith + 1]) in order (one
 * sequential stream, as with mx_pool_run and a static split), then takes what is left of the
 * other threads' ranges from their ends. Which thread runs a unit varies from run to run, so
 * fn's result for a unit must not depend on ith (ith is for per-thread scratch). bounds is
 * borrowed until the return. Not reentrant, like mx_pool_run. */
void mx_pool_run_units(struct mx_pool *pool, mx_pool_unit_fn fn, void *args,
                       const int64_t *bounds);

/* Rows [*r0, *r1) of n for thread ith of nth: contiguous, balanced chunks. */
static inline void mx_split(int64_t n, int ith, int nth, int64_t *r0, int64_t *r1) {
    int64_t per = n / nth, rem = n % nth;
    *r0 = ith * per + (ith < rem ? ith : rem);
    *r1 = *r0 + per + (ith < rem ? 1 : 0);
}

/* ---- repacked weights (repack.c) ------------------------------------------------------------ */

/* MX_LAYOUT_Q4_0X8: 8 Q4_0 rows stored block by block, so decode reads one stream per 8 rows
 * (llama.cpp's CPU "repack" buffers do the same), and one activation block serves 8 rows.
 * Block b of the group holds the 8 rows' block b: their scales, then 4 chunks of 32 bytes where
 * chunk j, bytes 4r..4r+3, hold row r's values 4j..4j+3 in the low nibbles and values
 * 4(j+4)..4(j+4)+3 in the high nibbles (unsigned 0..15, value - 8 is the quant). So a chunk
 * masked or shifted gives "4 values of each of 8 rows", ready for maddubs against 4 broadcast
 * activation bytes. Same size as the 8 rows: 8 x 18 bytes. */
typedef struct {
    mx_half d[8];
    uint8_t qs[128];
} mx_block_q4_0x8;
_Static_assert(sizeof(mx_block_q4_0x8) == 8 * sizeof(mx_block_q4_0), "q4_0x8 block");

/* MX_LAYOUT_Q8_0X8: 8 Q8_0 rows block by block: the 8 scales, then 8 vectors of 32 bytes,
 * vector g holding at bytes 4r..4r+3 row r's values 4g..4g+3 (signed, as in the file). */
typedef struct {
    mx_half d[8];
    int8_t qs[8][32];
} mx_block_q8_0x8;
_Static_assert(sizeof(mx_block_q8_0x8) == 8 * sizeof(mx_block_q8_0), "q8_0x8 block");

/* MX_LAYOUT_Q4_KX8: 8 Q4_K rows, super-block by super-block (8 x 144 bytes). The 8 rows' 6-bit
 * scales and mins are re-encoded so a few vector ops decode them all: value k of "scales" is
 * sub-block k / 8's scale of row k % 8; value k of "mins" is sub-block 2 (k / 16) + k % 2's min
 * of row (k % 16) / 2 (so 16 bytes hold two sub-blocks' mins interleaved by row, ready for
 * madd against a pair of activation sums). sm_lo byte k: scale k's low 4 bits (low nibble) and
 * min k's (high nibble); sm_hi byte k: bits 4-5 of scale k, scale k + 32, min k, min k + 32 at
 * bits 0-1, 2-3, 4-5, 6-7. qs: for each 64-value chunk c, 8 vectors of 32 bytes: vector v,
 * bytes 4r..4r+3 = row r's original bytes qs[32c + 4v .. +3] (low nibbles: values 64c + 4v..,
 * high nibbles: values 64c + 32 + 4v..). */
typedef struct {
    mx_half d[8], dmin[8];
    uint8_t sm_lo[64];
    uint8_t sm_hi[32];
    uint8_t qs[1024];
} mx_block_q4_Kx8;
_Static_assert(sizeof(mx_block_q4_Kx8) == 8 * sizeof(mx_block_q4_K), "q4_Kx8 block");

/* MX_LAYOUT_Q6_KX8: 8 Q6_K rows, super-block by super-block (8 x 210 bytes). Values are the
 * unsigned 6-bit q + 32. Per 32-value chunk c (scale groups 2c, 2c + 1), stored one after the
 * other so the block streams front to back (three interleaved streams in a 1680-byte block
 * measured 3x slower from DRAM): scales[8g' + r] = row r's scale of group 2c + g'; 2 qh vectors,
 * vector t holding the top 2 bits of the values of ql vectors 2t and 2t + 1 (bits 0-1 / 2-3:
 * low / high nibble values of ql vector 2t; bits 4-5 / 6-7: those of ql vector 2t + 1); 4 ql
 * vectors of 32 bytes, vector j holding at bytes 4r..4r+3 the low 4 bits of row r's values
 * 32c + 4j.. (low nibbles) and 32c + 16 + 4j.. (high nibbles). */
typedef struct {
    mx_half d[8];
    struct {
        int8_t scales[16];
        uint8_t qh[2][32];
        uint8_t ql[4][32];
    } ch[8];
} mx_block_q6_Kx8;
_Static_assert(sizeof(mx_block_q6_Kx8) == 8 * sizeof(mx_block_q6_K), "q6_Kx8 block");

/* MX_LAYOUT_Q5_KX8: Q4_Kx8's header (Q5_K packs scales and mins as Q4_K does), then per
 * 64-value chunk c the fifth bits before the chunk's low 4 bits, so the block streams front to
 * back (fifth bits kept after all of qs measured slower than the per-row kernel): qh[0] bit v of
 * byte 4r + i is the fifth bit of row r's value 64c + 4v + i (the low-nibble value of qs vector
 * v), qh[1] that of value 64c + 32 + 4v + i; qs as Q4_Kx8's chunk c. 8 x 176 bytes. */
typedef struct {
    mx_half d[8], dmin[8];
    uint8_t sm_lo[64];
    uint8_t sm_hi[32];
    struct {
        uint8_t qh[2][32];
        uint8_t qs[256];
    } ch[4];
} mx_block_q5_Kx8;
_Static_assert(sizeof(mx_block_q5_Kx8) == 8 * sizeof(mx_block_q5_K), "q5_Kx8 block");

/* The repacked layout for weights of this type (MX_LAYOUT_GGML: none). */
enum mx_layout mx_repack_layout(enum mx_type type);

/* Rearranges n_rows (a multiple of 8) rows of n values from src (file layout) to dst (layout,
 * not aliased). Same number of bytes. */
void mx_repack_rows(enum mx_layout layout, const void *src, void *dst, int64_t n,
                    int64_t n_rows);

/* Row r (0..7) of a repacked 8-row group of n values, dequantized to f32 (the values
 * mx_dequantize_row gives for the original row). */
void mx_dequant_x8_row(enum mx_layout layout, const void *group, int r, float *out, int64_t n);

/* The backend op: repacks the Q4_0 weights it can into one new buffer (see backend.h). */
int mx_cpu_prepare_weights(struct mx_backend *be, struct mx_tensor *const *ws, int n,
                           struct mx_buf **out);

/* ---- backend state --------------------------------------------------------------------------- */

/* Fast row kernels chosen at backend creation from the CPU's features (scalar when none). */
struct mx_ref_args; /* a task's arguments (below); attn_block takes them */
struct mx_cpu_kernels {
    const char *name; /* "scalar", "avx2" */
    /* Dot products of one quantized weight row with the matching quantized activation row
     * (the ggml vec_dot): n values, returns the f32 sum. NULL entries fall back to dequantize+
     * f32 dot. Indexed by weight type. */
    float (*vec_dot[MX_TYPE_COUNT])(int64_t n, const void *w, const void *xq);
    /* The same for 4 activation columns xq_row bytes apart, bit-identical per column to
     * vec_dot (prefill tiles: the weight row is unpacked once for 4 columns); xd: the 4 columns'
     * Q8_0 block scales as f32 (n / 32 each, one after the other); out[4]. NULL:
     * prefill uses dequantize + sgemm. */
    void (*vec_dot4[MX_TYPE_COUNT])(int64_t n, const void *w, const void *xq, size_t xq_row,
                                    const float *xd, float *out);
    /* Decode: 2 weight rows (w and w + w_row) times one activation column, out[2], each
     * bit-identical to vec_dot of its row. The rows' independent float chains overlap (one row's
     * per-block FMA chain bounds a single-row dot) and the column's blocks are loaded once.
     * NULL: vec_dot row by row. */
    void (*vec_dot2[MX_TYPE_COUNT])(int64_t n, const void *w, size_t w_row, const void *xq,
                                    float *out);
    /* A repacked group of 8 rows (indexed by layout) times ncols (1..4) activation columns
     * quantized to the weight's vec_dot type (mx_quantize_act rows, xq_row bytes apart):
     * out[c * ldo + r] for row r of the group and column c. Per column the arithmetic does not
     * depend on ncols, so prefill and decode agree bit for bit. NULL: the CPU does not repack
     * into that layout (prepare_weights skips it). */
    void (*gemm_x8[MX_LAYOUT_COUNT])(int64_t n, const void *w, const void *xq, size_t xq_row,
                                     int ncols, float *out, size_t ldo);
    /* Prefill tiles of 16 rows: the 8-row group at w and the next one gstride bytes on, times
     * ncols (1..8) columns; out[c * ldo + r] for r < 16. Per row the bits of gemm_x8 (the same
     * steps per lane). Q8_0 columns carry the table at mx_act_pre_offset (xq_row includes it).
     * NULL: gemm_x8 alone. */
    void (*gemm_x16[MX_LAYOUT_COUNT])(int64_t n, const void *w, size_t gstride, const void *xq,
                                      size_t xq_row, int ncols, float *out, size_t ldo);
    /* Prefill tiles of the IQ1-IQ3 grid types on file-layout rows (gemm_iq.h): rows [0, n_rows)
     * (n_rows <= 32) of w, w_row bytes apart, times ncols Q8_K columns xq_row bytes apart:
     * out[c * ldo + r]; scratch: mx_gemm_iq_scratch(n) bytes, 64-aligned. Per row and column
     * the bits of vec_dot, or with panel set those of llama.cpp's IQ panel (gemm_iq.h: what
     * the peer computes for matmuls of >= 8 columns). NULL: dequantize + sgemm. Indexed by
     * weight type. */
    void (*gemm_iq[MX_TYPE_COUNT])(int64_t n, const void *w, size_t w_row, int n_rows,
                                   const void *xq, size_t xq_row, int64_t ncols, float *out,
                                   size_t ldo, int panel, void *scratch);
    /* Row dequantizers bit-identical to mx_dequantize_row (used for prefill tiles); NULL entries
     * fall back to it. Indexed by weight type; n a multiple of the block size. */
    mx_to_float_fn dequant[MX_TYPE_COUNT];
    /* Activation quantizers bit-identical to mx_quantize_act, indexed by the vec_dot type (Q8_0
     * with its block sums, Q8_K); NULL entries fall back to it. */
    mx_from_float_fn quantize_act[MX_TYPE_COUNT];
    /* x = f32(f16(x)) in place, round to nearest even (the F16 activation rounding of
     * mx_ref_round_act, bit-identical); NULL: the scalar mx_ref_round_act */
    void (*round_f16)(float *x, int64_t n);
    /* GEGLU task (contract of mx_ref_gelu_mul: dst = gelu_tanh(x) * u elementwise, equal to it
     * within ~1e-6 relative): the diffusion UNet's feed-forward runs ~90 M of these per step;
     * NULL: the reference */
    mx_pool_fn gelu_mul;
    /* f32 dot of n values */
    float (*dot_f32)(int64_t n, const float *a, const float *b);
    /* Attention task over struct mx_ref_args (same contract as mx_ref_attn), flash-style with
     * online softmax; NULL: use mx_ref_attn. Needs head_dim % 8 == 0 and the per-thread
     * scratch from mx_attn_fast_scratch. */
    mx_pool_fn attn;
    /* Dense attention for many queries that all see every cell (the diffusion UNet's
     * non-causal self- and cross-attention: kpos all 0, qpos all 0): per head and block of
     * MX_ATTN_DENSE_QB queries, S = Q K^T over all n_kv cells and O = softmax(S) V as two sgemm,
     * the softmax in between over whole rows. F32 cache only; per-thread scratch from
     * mx_attn_dense_scratch. NULL: the flash path. */
    mx_pool_fn attn_dense;
    /* Decode attention (one query token, n_kv >= MX_ATTN_SPLIT_MIN) split over the cache:
     * attn_split writes per-chunk partials to the shared scratch (mx_attn_split_scratch), then
     * attn_merge combines them into dst. NULL: attn covers decode too. */
    mx_pool_fn attn_split, attn_merge;
    /* One full block of MX_ATTN_CBLOCK filled cells of decode attention for the query heads of
     * KV head g, read in place (attn_split's inner step; vis: bit j set when cell c0 + j is
     * visible; qx: the token's query rows as q8_0 blocks (ggml's quantizer) when the cache is
     * q8_0 and activations are rounded as ggml does, else NULL; acc, mrow, lrow, S as in
     * attn_avx2.c's decode_block): integer dots where the CPU has them (attn_avx512.c). false:
     * it does not apply to this cache or head size. NULL: attn_split's own block. */
    bool (*attn_block)(const struct mx_ref_args *a, int64_t c0, int64_t g, uint32_t vis,
                       const void *qx, float *acc, float *mrow, float *lrow, float *S);
    /* conv2d through im2col + sgemm (conv_gemm.c); NULL: the direct reference loop */
    int (*conv2d)(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                  const struct mx_tensor *w, const struct mx_tensor *b,
                  const struct mx_conv2d_params *p);
};

/* The factor that normalises an online-softmax accumulator of head h with running max m and
 * sum l: 1 / l, or with attention sinks 1 / (l + e^(sink_h - m)), computed as
 * e^(m - M) / (l e^(m - M) + e^(sink_h - M)) with M = max(m, sink_h) so nothing overflows. */
static inline float mx_attn_sink_norm(const struct mx_attn_params *p, int64_t h, float m,
                                      float l) {
    if (!p->sinks)
        return 1.0f / l;
    float sink = ((const float *)p->sinks->data)[h];
    float M = m > sink ? m : sink, cm = expf(m - M);
    return cm / (l * cm + expf(sink - M));
}

/* Query tokens per work unit of the fast attention: the K/V cache is streamed once per block
 * of this many tokens, so prefill reads it T/MX_ATTN_QBLOCK times instead of T times. */
#define MX_ATTN_QBLOCK 32

/* Cache cells per online-softmax step of the fast attention: the per-step costs (max, exp of the
 * correction, rescaling the accumulator) are shared by this many cells. A multiple of 8. */
#define MX_ATTN_CBLOCK 32

/* From this many query rows in a unit (tokens x GQA group) the fast attention computes a cache
 * block's scores and weighted values with sgemm, MX_ATTN_GBLOCK cells at a time. */
#define MX_ATTN_GEMM_ROWS 16
#define MX_ATTN_GBLOCK 256

/* From this many cells a one-token attention goes through attn_split / attn_merge. */
#define MX_ATTN_SPLIT_MIN 1024

/* Cells per chunk of the split decode attention: at least 256, at most 64 chunks, a multiple
 * of MX_ATTN_CBLOCK. Depends on n_kv only (so results do not depend on the thread count). */
static inline int64_t mx_attn_split_chunk(int64_t n_kv) {
    int64_t c = (n_kv + 63) / 64 > 256 ? (n_kv + 63) / 64 : 256;
    return (c + MX_ATTN_CBLOCK - 1) / MX_ATTN_CBLOCK * MX_ATTN_CBLOCK;
}

/* Floats of the split decode attention's scratch: per thread (queries, K and V blocks) and
 * shared (every chunk's partial: n_head x (head_dim + 2)). */
static inline int64_t mx_attn_split_thread_scratch(int64_t head_dim, int64_t n_head,
                                                   int64_t n_head_kv) {
    /* + the query as q8_0 blocks (34 bytes per 32 values) for the integer-dot block */
    return n_head * head_dim + 2 * MX_ATTN_CBLOCK * (n_head_kv * head_dim + 16) +
           (n_head * head_dim / 32 * 34 + 3) / 4 + 16;
}

static inline int64_t mx_attn_split_shared_scratch(int64_t head_dim, int64_t n_head,
                                                   int64_t n_kv) {
    int64_t chunk = mx_attn_split_chunk(n_kv);
    return (n_kv + chunk - 1) / chunk * n_head * (head_dim + 2) + 16;
}

/* Queries per block of the dense attention: S is MX_ATTN_DENSE_QB x n_kv floats (2 MiB at
 * 4096 cells). SD 1.5 at 512x512, CPU seconds of attention per batch-2 UNet eval on this 2-core
 * machine (shared, rough): 32 rows 4.7, 64 rows 4.3, 128 rows 4.0. */
#define MX_ATTN_DENSE_QB 128
/* Below this many queries the flash path is as good. */
#define MX_ATTN_DENSE_MIN_T 64

static inline int64_t mx_attn_dense_scratch(int64_t n_kv) {
    return MX_ATTN_DENSE_QB * (n_kv + 16) + 16;
}

/* Floats of per-thread scratch the fast attention needs (both paths). */
static inline int64_t mx_attn_fast_scratch(int64_t head_dim, int64_t group) {
    return 3 * MX_ATTN_CBLOCK * head_dim + MX_ATTN_QBLOCK * group * (2 * head_dim + 2) +
           2 * MX_ATTN_GBLOCK * head_dim + MX_ATTN_QBLOCK * group * MX_ATTN_GBLOCK + 16;
}

struct mx_cpu {
    struct mx_pool *pool;
    int n_threads;
    struct mx_cpu_kernels kern;
    /* Scratch, grown by mx_cpu_reserve before a parallel section, never freed until the backend
     * is: per-thread work areas and one shared area. Sizes grow to the largest op, once. */
    void **tbuf;        /* [n_threads] per-thread scratch */
    size_t tbuf_size;   /* bytes of each tbuf[i] */
    void *sbuf;         /* shared scratch */
    size_t sbuf_size;
};

/* Makes sure every thread has per_thread bytes and the shared area shared bytes (64-aligned).
 * Returns 0 or MX_ENOMEM (existing scratch stays valid). Not thread-safe: call before
 * mx_pool_run. */
int mx_cpu_reserve(struct mx_cpu *c, size_t per_thread, size_t shared);

static inline struct mx_cpu *mx_cpu_of(struct mx_backend *be) {
    return (struct mx_cpu *)be->ctx;
}

/* ---- reference kernels (ref_*.c): arguments and tasks ---------------------------------------- */

/* Row r of a contiguous tensor (r counts over ne1*ne2*ne3). */
static inline void *mx_row(const struct mx_tensor *t, int64_t r) {
    return (char *)t->data + (size_t)r * t->nb[1];
}

/* Reads n values starting at element i0 of a row of type F32, F16, BF16 or Q8_0 (i0 need not be
 * block aligned) into out as f32. */
void mx_ref_load_f32(enum mx_type type, const void *row, int64_t i0, int64_t n, float *out);

/* Writes n f32 values as one row of type F32, F16, BF16 or Q8_0 (n a multiple of the block). The
 * Q8_0 rounding is ggml's x86 one (d = amax/127 as fp16, q = rint(x * 127/amax)). */
void mx_ref_store_row(enum mx_type type, const float *src, void *dst, int64_t n);

/* Activation rounding for matmul (MX_ACT_GGML): rounds n values of x in place to what ggml's
 * vec_dot type for weights of type wtype would hold (Q8_0 / Q8_K / F16 / BF16), as f32. */
void mx_ref_round_act(enum mx_type wtype, float *x, int64_t n);

/* The vec_dot type of a weight type (MX_TYPE_Q8_0, MX_TYPE_Q8_K, MX_TYPE_Q8_1, F16, BF16, F32). */
enum mx_type mx_vec_dot_type(enum mx_type wtype);

/* Quantizes n activations into the vec_dot type's blocks (Q8_0, Q8_1, Q8_K, F16, BF16, F32),
 * exactly the values mx_ref_round_act produces. A Q8_0 activation row also carries, after its
 * blocks (at mx_act_sums_offset), each block's sum of quants as a float: Q4_0's kernel works on
 * the unsigned nibbles and takes back 8 * sum, which saves the sign juggling per block.
 * dst must hold mx_act_row_size bytes. */
void mx_quantize_act(enum mx_type vdtype, const float *x, void *dst, int64_t n);

static inline size_t mx_act_sums_offset(int64_t n) {
    return ((size_t)(n / MX_QK8_0) * sizeof(mx_block_q8_0) + 3) & ~(size_t)3;
}

/* Bytes of one quantized activation row of n values (false: unknown type or overflow). */
static inline bool mx_act_row_size(enum mx_type vdtype, int64_t n, size_t *out) {
    if (vdtype != MX_TYPE_Q8_0)
        return mx_row_size(vdtype, n, out);
    size_t blocks;
    if (!mx_row_size(vdtype, n, &blocks))
        return false;
    *out = mx_act_sums_offset(n) + (size_t)(n / MX_QK8_0) * sizeof(float);
    return true;
}

/* Prefill on 16-row tiles (gemm_x16) takes Q8_0 columns with a table after the row (at this
 * offset, 8 bytes per block, written by matmul's activation preparation): the block's scale as
 * f32, then -8 x its quant sum as int32 (Q4_0's nibble offset), so the tile broadcasts both
 * from memory instead of converting them for every 16 rows. */
static inline size_t mx_act_pre_offset(int64_t n) {
    return mx_act_sums_offset(n) + (size_t)(n / MX_QK8_0) * sizeof(float);
}

/* Arguments of one reference task: the op's tensors and parameters. */
struct mx_ref_args {
    struct mx_cpu *cpu;
    struct mx_tensor *dst;
    struct mx_tensor *dst2;             /* second output (moe_route weights) */
    const struct mx_tensor *src[5];     /* op inputs in the order of the mx_op_* signature */
    float f;                            /* eps / scale */
    int i;                              /* n_groups / head_dim / factor / dim */
    const void *p;                      /* op parameter struct */
    bool flag;                          /* renorm */
    int act_mode;                       /* enum mx_act_mode */
    _Atomic int status;                 /* a task stores a negative MX_E* here on bad data */
};

void mx_ref_rms_norm(void *args, int ith, int nth);
void mx_ref_layer_norm(void *args, int ith, int nth);
void mx_ref_group_norm(void *args, int ith, int nth);
void mx_ref_rope(void *args, int ith, int nth);
void mx_ref_kv_shift(void *args, int ith, int nth);
void mx_ref_attn(void *args, int ith, int nth);
void mx_ref_softmax(void *args, int ith, int nth);
void mx_ref_silu(void *args, int ith, int nth);
void mx_ref_gelu(void *args, int ith, int nth);
void mx_ref_silu_mul(void *args, int ith, int nth);
void mx_ref_gelu_mul(void *args, int ith, int nth);
void mx_ref_swiglu_oai(void *args, int ith, int nth);
void mx_ref_add(void *args, int ith, int nth);
void mx_ref_mul(void *args, int ith, int nth);
void mx_ref_scale(void *args, int ith, int nth);
void mx_ref_cpy(void *args, int ith, int nth);
void mx_ref_moe_route(void *args, int ith, int nth);
void mx_ref_moe_combine(void *args, int ith, int nth);
void mx_ref_get_rows(void *args, int ith, int nth);
void mx_ref_conv2d(void *args, int ith, int nth);
void mx_ref_upsample(void *args, int ith, int nth);
void mx_ref_concat(void *args, int ith, int nth);
void mx_ref_gelu_quick(void *args, int ith, int nth);
void mx_ref_transpose(void *args, int ith, int nth);
void mx_ref_sigmoid(void *args, int ith, int nth);

/* Matmul front ends (matmul.c): choose decode (row dot) or prefill (dequantized tiles + sgemm). */
int mx_cpu_matmul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                  const struct mx_tensor *x);
/* n matmuls of one x in one pool run (see matmul_n in backend.h). */
int mx_cpu_matmul_n(struct mx_backend *be, int n, struct mx_tensor *const *dst,
                    const struct mx_tensor *const *w, const struct mx_tensor *x);
int mx_cpu_matmul_id(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                     const struct mx_tensor *x, const struct mx_tensor *ids);
/* matmul_id of two weights on the same x and ids in one pass (see matmul_id2 in backend.h). */
int mx_cpu_matmul_id2(struct mx_backend *be, struct mx_tensor *dst_a, const struct mx_tensor *w_a,
                      struct mx_tensor *dst_b, const struct mx_tensor *w_b,
                      const struct mx_tensor *x, const struct mx_tensor *ids, bool silu_mul);

/* SiLU, x / (1 + e^-x): the one definition silu / silu_mul (ref_ops.c) and matmul_id2's fused
 * silu_mul (matmul.c) share, so both give the same bits. */
static inline float mx_silu_f(float x) {
    return x / (1.0f + expf(-x));
}

/* Pool tasks over struct mx_ref_args with the contracts of mx_ref_transpose / mx_ref_concat,
 * for contiguous tensors only (layout.c): a tiled transpose and a row-copy concat. */
void mx_cpu_transpose_tiled(void *args, int ith, int nth);
void mx_cpu_concat_rows(void *args, int ith, int nth);

/* conv2d as im2col + sgemm (conv_gemm.c); same contract as the backend op. */
int mx_cpu_conv2d_gemm(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *x,
                       const struct mx_tensor *w, const struct mx_tensor *b,
                       const struct mx_conv2d_params *p);

/* Kernel sets, by instruction-set level. */
enum mx_cpu_level {
    MX_CPU_SCALAR = 0, /* the reference loops only (tests compare the others with these) */
    MX_CPU_AVX2 = 1,   /* AVX2 + FMA + F16C (kernels_avx2.c) */
    MX_CPU_AVX512 = 2, /* the AVX2 set with the repacked GEMM tiles on AVX-512 VNNI (vpdpbusd,
                        * 256-bit registers; kernels_avx512.c): prefill. Per-row VNNI dots were
                        * measured no faster than AVX2 in decode (memory-bound), so there are
                        * none. */
    MX_CPU_BEST = 3,   /* the best this CPU runs */
};

/* Fills k with the kernels of the highest level <= max_level that this binary and this CPU
 * support (scalar when none). */
void mx_cpu_kernels_init(struct mx_cpu_kernels *k, int max_level);

/* The AVX2 set (kernels_avx2.c, compiled with -mavx2 -mfma -mf16c): only call after checking the
 * CPU's features. */
void mx_cpu_kernels_avx2(struct mx_cpu_kernels *k);

/* Installs the AVX2 attention kernels (attn_avx2.c) into k; called by mx_cpu_kernels_avx2. */
void mx_cpu_attn_avx2(struct mx_cpu_kernels *k);

/* Replaces entries of an AVX2 set with AVX-512 VNNI versions (kernels_avx512.c, compiled with
 * -mavx512vl -mavx512vnni): only call after checking the CPU's features. */
void mx_cpu_kernels_avx512(struct mx_cpu_kernels *k);
/* Installs the AVX-512 decode attention block (attn_avx512.c) over the AVX2 set. */
void mx_cpu_attn_avx512(struct mx_cpu_kernels *k);

/* Installs the 16-row AVX-512 GEMM tiles (gemm_x16_avx512.c, same flags as kernels_avx512.c);
 * called by mx_cpu_kernels_avx512. */
void mx_cpu_kernels_x16_avx512(struct mx_cpu_kernels *k);

/* Installs the MXFP4 x Q8_0 dot (kernels_mxfp4.c) for kernel level `level` (enum above; the
 * caller has checked the CPU's features for it): scalar, AVX2 or AVX-512 VNNI. */
void mx_cpu_kernels_mxfp4(struct mx_cpu_kernels *k, int level);

/* The scalar MXFP4 x Q8_0 dot of n values (ggml's vec_dot_mxfp4_q8_0): the twin the SIMD
 * versions are tested against. */
float mx_vec_dot_mxfp4_q8_0(int64_t n, const void *w, const void *xq);

#endif
