/* matmul.c - weight matmul and the MoE expert matmul on the CPU.
 *
 * Work is cut into tiles of MX_TILE weight rows, balanced over threads across all jobs (a job is
 * one weight matrix times its activation columns: a plane of a batched matmul, or one selected
 * expert of matmul_id), so a top-2 MoE step spreads both experts' rows over every thread and
 * never touches an unselected expert.
 *
 * Per tile, by the number of activation columns n:
 *   repacked weights (any n, see repack.c): the 8-row GEMM tiles of the CPU's kernel set, and at
 *     prefill its 16-row tiles where it has them (gemm_x16_avx512.c: 8 columns at a time).
 *   IQ1-IQ3 grid types, n >= MX_IQ_TILE_MIN_COLS: the grids expanded once per tile to bytes
 *     and integer dots against the quantized columns (gemm_iq.h; vec_dot's bits, or from
 *     MX_GEMM_IQ_PANEL_MIN_COLS columns those of llama.cpp's IQ panel, as the peer does).
 *   n >= MX_GEMM_MIN_COLS (prefill): dequantize the tile's rows to f32 (no copy for F32 weights)
 *     and call OpenBLAS sgemm on them. Dequantizing a tile costs O(rows * n_in) against the
 *     GEMM's O(rows * n_in * n), so from a few columns on the GEMM's speed dominates.
 *   4 <= n <= MX_VDOT4_MAX_COLS with a 4-column kernel (Q4_0, Q5_0; MoE experts at prefill get
 *     a few dozen columns each; Q3_K), or any n >= 4 for Q4_1 / Q5_1 / Q2_K (see
 *     act_plan.vdot4_all):
 *     integer dots of each row with 4 quantized columns at a time.
 *   otherwise (decode): per weight row, a dot with each column: the fast vec_dot kernel (two
 *     rows per call where the type has vec_dot2) on
 *     quantized activations when one exists (MX_ACT_GGML), else dequantize the row + f32 dot.
 * Activations are rounded first per be->act_mode (see backend.h), so both paths compute the
 * same numbers up to float summation order.
 */
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gemm_iq.h"

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/base/util.h"

#define MX_TILE 32
#define MX_GEMM_MIN_COLS 8
/* Up to this many columns a job with a 4-column kernel (vec_dot4) uses it; beyond, the
 * dequantize + sgemm tile wins again. Measured on the Q4_0 bench model, 2 threads: MoE experts
 * at prefill get ~T/4 columns each; pp 128 went 84 -> 99 tok/s with vec_dot4 and at 512 tokens
 * vec_dot4 for every job lost (104 vs 119 tok/s), while sgemm over 64 columns held 113-120. */
#define MX_VDOT4_MAX_COLS 64
/* From this many columns the IQ1-IQ3 tiles (gemm_iq) take a job: expanding a tile costs about
 * two vec_dots per row (bench_iq_tiles, one thread, rough: at 2 columns tile and vec_dot were
 * even, 0.87-1.27x by type; at 4 the tile took half the time). */
#define MX_IQ_TILE_MIN_COLS 3
_Static_assert(MX_TILE <= MX_GEMM_IQ_ROWS, "the IQ tiles take up to MX_GEMM_IQ_ROWS rows");
/* Up to this many multiply-adds a matmul runs on the calling thread: waking the workers and
 * the barrier after cost more than the work (a MoE router at decode: 8 experts x 2048 inputs;
 * one pool run fewer per layer and token of the ~8 left, probe counts on the bench model).
 * Same bits either way: a row's value does not depend on the thread computing it. */
#define MX_SERIAL_MM_MACS 32768

struct mm_job {
    const char *w;       /* row 0 of this job's weight matrix */
    const float *x;      /* f32 (rounded) activations [n_in, n] */
    const char *xq;      /* the same, quantized to the vec_dot type (rows of xq_row bytes) */
    float *y;            /* output: column c, row o at y[c * ldy + o] */
    int64_t n;           /* columns */
    int64_t ldy;
    /* a second weight of the same shape and type on the same columns (matmul_id2: an MoE
     * block's up beside its gate), written to y2 like y; NULL: none. Its tiles run right after
     * the first weight's, so the columns are quantized, gathered and read from cache once */
    const char *w2;
    float *y2;
};

struct mm_task {
    struct mx_cpu *cpu;
    enum mx_type wtype;
    enum mx_layout layout; /* of the weight (repacked rows dequantize through it) */
    int64_t n_in, n_out;
    size_t w_row;        /* bytes per weight row */
    size_t xq_row;       /* bytes per quantized activation column */
    bool xd_q8_0;        /* the columns are Q8_0 blocks, whose scales vdot4 takes as f32 */
    bool vdot4_all;      /* vdot4 takes jobs of any column count (see act_plan) */
    bool vdot_all;       /* vdot takes jobs of any column count (see act_plan) */
    float (*vdot)(int64_t n, const void *w, const void *xq); /* NULL: dequantize + f32 dot */
    /* decode: 2 rows per call, each with vdot's bits (NULL: vdot row by row) */
    void (*vdot2)(int64_t n, const void *w, size_t w_row, const void *xq, float *out);
    /* 4 columns at once; non-NULL: prefill-sized jobs with xq use it instead of sgemm. Its xd
     * argument (the columns' block scales as f32) is filled for Q8_0 columns only (xd_q8_0). */
    void (*vdot4)(int64_t n, const void *w, const void *xq, size_t xq_row, const float *xd,
                  float *out);
    /* repacked weights: 8-row groups times 1-4 quantized columns, for any column count */
    void (*gemm8)(int64_t n, const void *w, const void *xq, size_t xq_row, int ncols, float *out,
                  size_t ldo);
    /* repacked weights, prefill: two 8-row groups times 1-8 columns (NULL: gemm8 only) */
    void (*gemm16)(int64_t n, const void *w, size_t gstride, const void *xq, size_t xq_row,
                   int ncols, float *out, size_t ldo);
    /* IQ1-IQ3 file-layout rows: tiles against the quantized columns (NULL: none) */
    void (*gemm_iq)(int64_t n, const void *w, size_t w_row, int n_rows, const void *xq,
                    size_t xq_row, int64_t ncols, float *out, size_t ldo, int panel,
                    void *scratch);
    /* llama.cpp would take jobs of MX_GEMM_IQ_PANEL_MIN_COLS+ columns through its IQ panel
     * (gemm_iq.h: rows a multiple of 8; plain matmuls of one weight plane): the tiles then
     * follow the panel's float order, else vec_dot's */
    bool iq_panel;
    int n_jobs;
    const struct mm_job *jobs;
    int64_t tiles;       /* tiles per job */
};

/* Rows [o0, o0 + n_rows) of a weight matrix starting at w, dequantized to f32 rows of n_in. */
static void dequant_rows(const struct mx_cpu *c, enum mx_type type, enum mx_layout layout,
                         const char *w, size_t w_row, int64_t o0, int64_t n_rows, int64_t n_in,
                         float *out) {
    mx_to_float_fn fast = c->kern.dequant[type];
    for (int64_t r = 0; r < n_rows; r++) {
        int64_t o = o0 + r;
        if (layout != MX_LAYOUT_GGML)
            mx_dequant_x8_row(layout, w + (size_t)(o / 8) * 8 * w_row, (int)(o % 8),
                              out + r * n_in, n_in);
        else if (fast)
            fast(w + (size_t)o * w_row, out + r * n_in, n_in);
        else
            mx_dequantize_row(type, w + (size_t)o * w_row, out + r * n_in, n_in);
    }
}

/* A tile of repacked rows [o0, o1) (multiples of 8) against the job's quantized columns.
 * Prefill (2+ columns) with 16-row kernels: 8 columns at a time (from L1) meet each pair of
 * 8-row groups (from L2) once, a last single group going through the 8-row kernel; decode and
 * kernel sets without them: 4 columns at a time against each 8-row group. Both give the same
 * bits per row and column. */
static void x8_tile(const struct mm_task *t, const struct mm_job *j, int64_t o0, int64_t o1) {
    /* with a second weight (j->w2), each block of columns meets both weights' rows while it is
     * in L1 */
    const char *ws[2] = {j->w, j->w2};
    float *ys[2] = {j->y, j->y2};
    const int nw = j->w2 ? 2 : 1;
    if (t->gemm16 && j->n > 1) {
        const size_t gs = 8 * t->w_row;
        for (int64_t c = 0; c < j->n; c += 8) {
            int nc = (int)MX_MIN(8, j->n - c);
            const char *xc = j->xq + (size_t)c * t->xq_row;
            for (int k = 0; k < nw; k++) {
                int64_t o = o0;
                for (; o + 16 <= o1; o += 16)
                    t->gemm16(t->n_in, ws[k] + (size_t)o * t->w_row, gs, xc, t->xq_row, nc,
                              ys[k] + c * j->ldy + o, (size_t)j->ldy);
                for (; o < o1; o += 8)
                    for (int c4 = 0; c4 < nc; c4 += 4)
                        t->gemm8(t->n_in, ws[k] + (size_t)o * t->w_row,
                                 xc + (size_t)c4 * t->xq_row, t->xq_row, MX_MIN(4, nc - c4),
                                 ys[k] + (c + c4) * j->ldy + o, (size_t)j->ldy);
            }
        }
        return;
    }
    for (int64_t c = 0; c < j->n; c += 4) {
        int nc = (int)MX_MIN(4, j->n - c);
        for (int k = 0; k < nw; k++)
            for (int64_t o = o0; o < o1; o += 8)
                t->gemm8(t->n_in, ws[k] + (size_t)o * t->w_row, j->xq + (size_t)c * t->xq_row,
                         t->xq_row, nc, ys[k] + c * j->ldy + o, (size_t)j->ldy);
    }
}

/* Rows [o0, o1) of job j's (first) weight through the row kernels, the 4-column kernel or
 * dequantize + sgemm (weights in the file's layout, or repacked ones without their GEMM);
 * buf: the thread's scratch [MX_TILE, n_in]. */
static void mm_rows(const struct mm_task *t, const struct mm_job *j, int64_t o0, int64_t o1,
                    float *buf, bool is_f32) {
    int64_t n_in = t->n_in;
    const char *wt = j->w + (size_t)o0 * t->w_row;
    if (t->gemm_iq && j->xq && j->n >= MX_IQ_TILE_MIN_COLS) {
        t->gemm_iq(n_in, wt, t->w_row, (int)(o1 - o0), j->xq, t->xq_row, j->n, j->y + o0,
                   (size_t)j->ldy, t->iq_panel && j->n >= MX_GEMM_IQ_PANEL_MIN_COLS, buf);
        return;
    }
    if (t->vdot4 && j->xq && j->n >= 4 && (j->n <= MX_VDOT4_MAX_COLS || t->vdot4_all)) {
        /* 4 columns (from L1) against the tile's rows (from L2), then the next 4 */
        int64_t c = 0;
        for (; c + 4 <= j->n; c += 4) {
            const char *xc = j->xq + (size_t)c * t->xq_row;
            int64_t nb = n_in / MX_QK8_0; /* Q8_0 scales as f32, in buf (4 * nb floats) */
            for (int k = 0; k < 4 && t->xd_q8_0; k++) {
                const mx_block_q8_0 *bq =
                    (const mx_block_q8_0 *)(xc + (size_t)k * t->xq_row);
                for (int64_t i = 0; i < nb; i++)
                    buf[k * nb + i] = mx_fp16_to_fp32(bq[i].d);
            }
            for (int64_t o = o0; o < o1; o++) {
                float r[4];
                t->vdot4(n_in, j->w + (size_t)o * t->w_row, xc, t->xq_row, buf, r);
                for (int k = 0; k < 4; k++)
                    j->y[(c + k) * j->ldy + o] = r[k];
            }
        }
        for (; c < j->n; c++)
            for (int64_t o = o0; o < o1; o++)
                j->y[c * j->ldy + o] =
                    t->vdot(n_in, j->w + (size_t)o * t->w_row, j->xq + (size_t)c * t->xq_row);
        return;
    }
    if (j->n >= MX_GEMM_MIN_COLS && !(t->vdot_all && j->xq)) {
        const float *a = (const float *)wt;
        if (!is_f32) {
            dequant_rows(t->cpu, t->wtype, t->layout, j->w, t->w_row, o0, o1 - o0, n_in, buf);
            a = buf;
        }
        cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)(o1 - o0), (int)j->n,
                    (int)n_in, 1.0f, a, (int)n_in, j->x, (int)n_in, 0.0f, j->y + o0,
                    (int)j->ldy);
        return;
    }
    int64_t o = o0;
    if (t->vdot2 && j->xq) /* decode: rows in pairs, one column at a time */
        for (; o + 2 <= o1; o += 2)
            for (int64_t c = 0; c < j->n; c++) {
                float r[2];
                t->vdot2(n_in, j->w + (size_t)o * t->w_row, t->w_row,
                         j->xq + (size_t)c * t->xq_row, r);
                j->y[c * j->ldy + o] = r[0];
                j->y[c * j->ldy + o + 1] = r[1];
            }
    for (; o < o1; o++) {
        const char *wr = j->w + (size_t)o * t->w_row;
        if (t->vdot && j->xq) {
            for (int64_t c = 0; c < j->n; c++)
                j->y[c * j->ldy + o] = t->vdot(n_in, wr, j->xq + (size_t)c * t->xq_row);
            continue;
        }
        const float *wf = (const float *)wr;
        if (!is_f32) {
            dequant_rows(t->cpu, t->wtype, t->layout, j->w, t->w_row, o, 1, n_in, buf);
            wf = buf;
        }
        for (int64_t c = 0; c < j->n; c++)
            j->y[c * j->ldy + o] = t->cpu->kern.dot_f32(n_in, wf, j->x + c * n_in);
    }
}

/* One tile u (job u / tiles, rows from (u % tiles) * MX_TILE) of the matmul, for the job's
 * weight and its second one when it has it; buf: the thread's scratch [MX_TILE, n_in]. */
static void mm_unit(const struct mm_task *t, int64_t u, float *buf, bool is_f32) {
    const struct mm_job *j = &t->jobs[u / t->tiles];
    int64_t o0 = (u % t->tiles) * MX_TILE;
    int64_t o1 = MX_MIN(o0 + MX_TILE, t->n_out);
    if (t->gemm8 && j->xq) {
        x8_tile(t, j, o0, o1);
        return;
    }
    mm_rows(t, j, o0, o1, buf, is_f32);
    if (j->w2) {
        struct mm_job j2 = *j;
        j2.w = j->w2;
        j2.y = j->y2;
        mm_rows(t, &j2, o0, o1, buf, is_f32);
    }
}

/* Where thread ith's run of tiles starts (ith == nth: the end) when tiles are weighed by their
 * job's columns plus MX_TILE_FIXED_COST (the weight stream every tile pays): at prefill the
 * experts of matmul_id get different token counts, and an even count of tiles per thread left
 * one thread with the busy experts' columns. All jobs alike (matmul, decode): the even split. */
#define MX_TILE_FIXED_COST 4
/* The IQ tiles' fixed cost: expanding a tile's grids takes about as long as 16-24 columns of
 * its integer dots (bench_iq_tiles 2048 512: 32 vs 128 columns, one thread, rough), so a thread
 * given the tiles of lightly used experts must get fewer of them. */
#define MX_IQ_TILE_FIXED_COST 20
static int64_t tile_fixed_cost(const struct mm_task *t, const struct mm_job *j) {
    return t->gemm_iq && j->n >= MX_IQ_TILE_MIN_COLS ? MX_IQ_TILE_FIXED_COST
                                                     : MX_TILE_FIXED_COST;
}
static int64_t mm_split_point(const struct mm_task *t, int ith, int nth) {
    int64_t total = 0;
    for (int j = 0; j < t->n_jobs; j++)
        total += t->tiles * (t->jobs[j].n + tile_fixed_cost(t, &t->jobs[j]));
    if (ith >= nth || total == 0)
        return ith >= nth ? (int64_t)t->n_jobs * t->tiles : 0;
    int64_t target = total / nth * ith + total % nth * ith / nth, acc = 0;
    for (int j = 0; j < t->n_jobs; j++) {
        int64_t w = t->jobs[j].n + tile_fixed_cost(t, &t->jobs[j]), jc = t->tiles * w;
        if (acc + jc > target)
            return (int64_t)j * t->tiles + (target - acc + w - 1) / w;
        acc += jc;
    }
    return (int64_t)t->n_jobs * t->tiles;
}

static void mm_task_run(void *args, int ith, int nth) {
    const struct mm_task *t = args;
    int64_t u0 = mm_split_point(t, ith, nth), u1 = mm_split_point(t, ith + 1, nth);
    for (int64_t u = u0; u < u1; u++)
        mm_unit(t, u, t->cpu->tbuf[ith], t->wtype == MX_TYPE_F32);
}

static void mm_unit_run(void *args, int64_t u, int ith) {
    const struct mm_task *t = args;
    mm_unit(t, u, t->cpu->tbuf[ith], t->wtype == MX_TYPE_F32);
}

/* The task on the pool: one contiguous run of tiles per thread (one sequential stream each for
 * the prefetcher; chunks taken from a shared counter were measured slower in decode: 82 vs 87
 * tok/s, medians of 5 alternating runs on the Q4_K_M bench model), and a thread done with its
 * run takes the tiles left at the end of another's (mx_pool_run_units): on a shared 2-core
 * machine a descheduled thread otherwise held every matmul's barrier. A tile's numbers do not
 * depend on the thread. */
static void mm_run(struct mx_cpu *c, const struct mm_task *t) {
    int64_t bounds[MX_CPU_MAX_THREADS + 1];
    const int nth = mx_pool_n_threads(c->pool);
    if (nth > MX_CPU_MAX_THREADS) {
        mx_pool_run(c->pool, mm_task_run, (void *)t);
        return;
    }
    for (int i = 0; i <= nth; i++)
        bounds[i] = mm_split_point(t, i, nth);
    mx_pool_run_units(c->pool, mm_unit_run, (void *)t, bounds);
}

/* How a weight's activations are prepared, and which kernels take the quantized columns. */
struct act_plan {
    bool round;          /* GGML mode with a non-F32 weight: x is rounded (so copied) */
    bool quant;          /* a fast integer kernel exists: columns may be quantized for it */
    bool q_only;         /* a quantized column is read only as xq (no rounded f32 copy) */
    enum mx_type wtype;
    enum mx_type vdtype;
    mx_from_float_fn qfn; /* fast activation quantizer or NULL */
    void (*rnd16)(float *x, int64_t n); /* fast F16 rounding (F16 weights) or NULL */
    size_t xq_row;
    /* the kernels for quantized columns: the row kernels read the file layout only, the
     * 8-row GEMM the repacked one */
    float (*vdot)(int64_t n, const void *w, const void *xq);
    void (*vdot2)(int64_t n, const void *w, size_t w_row, const void *xq, float *out);
    void (*vdot4)(int64_t n, const void *w, const void *xq, size_t xq_row, const float *xd,
                  float *out);
    /* vdot4 for every column count (Q4_1, Q5_1, Q2_K): ggml on AVX2 takes prompts through the
     * same row kernels (llamafile has none for them), and Q4_1 / Q5_1 take each block's min
     * times the Q8_1 column's s = fp16(d x sum): dequantize + sgemm would take the min times the
     * rounded values, a different number (~1e-3 of the min's part), so prefill and decode
     * would disagree. Q3_K keeps sgemm beyond MX_VDOT4_MAX_COLS: its 4-column dot (two maddubs
     * per vector) ran 512 columns at ~75 GFLOP/s of CPU time against sgemm's ~95-115
     * (tests/bench/bench_kernels, 4096 x 1024, shared machine, rough); Q2_K's were even. */
    bool vdot4_all;
    /* Q8_0 columns for the 16-row tiles: each row followed by its block table (scales as f32,
     * -8 x sums as int32; mx_act_pre_offset), xq_row counting it */
    bool pre;
    /* vdot for every column count (Q8_0 rows not repacked): llama.cpp takes Q8_0 prompts through
     * llamafile's tinyBLAS, whose per-lane float order is vec_dot_q8_0's; dequantize + sgemm
     * sums in another order, and on these tiny chaotic models that moved logits by a median
     * 0.047 from llama.cpp's (MIXEL_NO_REPACK) against 5e-7 for the repacked GEMM. */
    bool vdot_all;
    /* the IQ1-IQ3 tiles (file layout): every job of MX_IQ_TILE_MIN_COLS+ columns */
    void (*gemm_iq)(int64_t n, const void *w, size_t w_row, int n_rows, const void *xq,
                    size_t xq_row, int64_t ncols, float *out, size_t ldo, int panel,
                    void *scratch);
    void (*gemm8)(int64_t n, const void *w, const void *xq, size_t xq_row, int ncols, float *out,
                  size_t ldo);
    void (*gemm16)(int64_t n, const void *w, size_t gstride, const void *xq, size_t xq_row,
                   int ncols, float *out, size_t ldo); /* 16-row prefill tiles (NULL: none) */
};

static int plan_act(struct mx_backend *be, const struct mx_tensor *w, struct act_plan *ap) {
    struct mx_cpu *c = mx_cpu_of(be);
    enum mx_type wtype = w->type;
    memset(ap, 0, sizeof *ap);
    bool ggml = be->act_mode == MX_ACT_GGML;
    ap->round = ggml && wtype != MX_TYPE_F32;
    ap->wtype = wtype;
    ap->vdtype = mx_vec_dot_type(wtype);
    ap->qfn = c->kern.quantize_act[ap->vdtype];
    ap->rnd16 = ap->vdtype == MX_TYPE_F16 ? c->kern.round_f16 : NULL;
    ap->quant = ggml && c->kern.vec_dot[wtype] != NULL;
    if (ap->quant && !mx_act_row_size(ap->vdtype, w->ne[0], &ap->xq_row))
        return MX_EINVAL;
    if (ap->quant && w->layout != MX_LAYOUT_GGML) {
        ap->gemm8 = c->kern.gemm_x8[w->layout];
        ap->gemm16 = ap->gemm8 ? c->kern.gemm_x16[w->layout] : NULL;
        ap->pre = ap->gemm16 && w->layout == MX_LAYOUT_Q4_0X8; /* its tile reads the table */
        if (ap->pre) /* at mx_act_pre_offset, the end of the plain row */
            ap->xq_row += (size_t)(w->ne[0] / MX_QK8_0) * 8;
    } else if (ap->quant) {
        ap->vdot = c->kern.vec_dot[wtype];
        ap->vdot2 = c->kern.vec_dot2[wtype];
        ap->vdot4 = c->kern.vec_dot4[wtype];
        ap->vdot4_all = ap->vdot4 && ap->vdtype != MX_TYPE_Q8_0 && wtype != MX_TYPE_Q3_K;
        ap->vdot_all = wtype == MX_TYPE_Q8_0;
        ap->gemm_iq = c->kern.gemm_iq[wtype];
    }
    /* repacked weights on kernels without the 8-row GEMM dequantize rows and dot them with x */
    ap->q_only = w->layout == MX_LAYOUT_GGML || ap->gemm8;
    return 0;
}

/* Whether a job of n columns goes through the quantized activations: decode-sized jobs, the
 * 4-column kernel's range, and every job on repacked weights. */
static bool uses_xq(const struct act_plan *ap, int64_t n) {
    return ap->quant && (n < MX_GEMM_MIN_COLS || (ap->vdot4 && n <= MX_VDOT4_MAX_COLS) ||
                         ap->vdot4_all || ap->vdot_all || ap->gemm_iq ||
                         ap->gemm8);
}

/* Prepares column c of the activations: rounded f32 copy at xr (when rounding) and quantized
 * copy at xq (when quant). */
static void prep_col(const struct act_plan *ap, const float *x, int64_t n_in, float *xr,
                     char *xq) {
    if (xr != x) {
        memcpy(xr, x, (size_t)n_in * sizeof(float));
        if (ap->round && ap->rnd16)
            ap->rnd16(xr, n_in);
        else if (ap->round)
            mx_ref_round_act(ap->wtype, xr, n_in);
    }
    if (xq && ap->qfn)
        ap->qfn(x, xq, n_in);
    else if (xq)
        mx_quantize_act(ap->vdtype, x, xq, n_in);
    if (xq && ap->pre) {
        const mx_block_q8_0 *b = (const mx_block_q8_0 *)xq;
        const float *sums = (const float *)(xq + mx_act_sums_offset(n_in));
        char *tab = xq + mx_act_pre_offset(n_in);
        for (int64_t i = 0; i < n_in / MX_QK8_0; i++) {
            float d = mx_fp16_to_fp32(b[i].d);
            int32_t m = -8 * (int32_t)sums[i]; /* sums are small exact integers */
            memcpy(tab + 8 * i, &d, 4);
            memcpy(tab + 8 * i + 4, &m, 4);
        }
    }
}

/* Activation preparation for ncols columns, split over the pool for prefill-sized batches
 * (rounding 512 x 4096 values on one thread would take as long as a good part of the GEMM). */
struct prep_task {
    const struct act_plan *ap;
    const float *xv;       /* the op's x */
    int64_t n_in;
    const int64_t *map;    /* NULL: column k is x column k; else slot index s + t*n_used */
    int64_t n_used, x_ne1;
    float *xr;             /* rounded/gathered f32 columns; NULL: use x in place */
    char *xq;              /* quantized columns (NULL: none) */
    const uint8_t *needq;  /* per column: quantize it (NULL: all, when xq) */
    int64_t ncols;
};

static void prep_task_run(void *args, int ith, int nth) {
    const struct prep_task *p = args;
    int64_t k0, k1;
    mx_split(p->ncols, ith, nth, &k0, &k1);
    for (int64_t k = k0; k < k1; k++) {
        const float *src = p->xv + k * p->n_in;
        if (p->map) {
            int64_t slot = p->map[k] % p->n_used, t = p->map[k] / p->n_used;
            src = p->xv + (t * p->x_ne1 + slot % p->x_ne1) * p->n_in;
        }
        bool q = p->xq && (!p->needq || p->needq[k]);
        float *xr = p->xr && !(q && p->ap->q_only) ? p->xr + k * p->n_in : (float *)src;
        prep_col(p->ap, src, p->n_in, xr, q ? p->xq + (size_t)k * p->ap->xq_row : NULL);
    }
}

static void prep_run(struct mx_cpu *c, struct prep_task *p) {
    if (p->ncols * p->n_in >= 65536)
        mx_pool_run(c->pool, prep_task_run, p);
    else
        prep_task_run(p, 0, 1); /* a decode step: cheaper than waking the workers */
}

/* Bytes for a * b * c with overflow check. */
static bool size3(size_t a, size_t b, size_t c, size_t *out) {
    size_t t;
    return mx_mul_size(a, b, &t) && mx_mul_size(t, c, out);
}

static int reserve(struct mx_backend *be, int64_t n_in, size_t shared) {
    size_t per;
    if (!size3(MX_TILE, (size_t)n_in, sizeof(float), &per))
        return MX_ENOMEM;
    int rc = mx_cpu_reserve(mx_cpu_of(be), per, shared);
    if (rc < 0)
        be->last_err.code = rc, snprintf(be->last_err.msg, sizeof be->last_err.msg,
                                         "matmul: cannot allocate %zu + %zu bytes of scratch",
                                         per, shared);
    return rc;
}

/* ---- wide path: a float weight times thousands of columns (the diffusion UNet's linears over
 * 4096-8192 image tokens). The row tiles above re-pack all of x for every 32 weight rows, one
 * sgemm each; here the whole weight is widened to f32 once (in parallel), and each thread runs
 * one sgemm over all weight rows and its own range of columns. */
#define MX_WIDE_MIN_COLS 256

struct wide_task {
    struct mx_cpu *cpu;
    const struct mx_tensor *w;
    float *wf;              /* [n_out][n_in] f32 weight (NULL in the GEMM phase when F32) */
    const float *wsrc;      /* the f32 weight the GEMM reads */
    const float *x;         /* [T][n_in] (rounded) columns */
    float *y;               /* [T][n_out] */
    int64_t n_in, n_out, T;
};

static void wide_widen_run(void *args, int ith, int nth) {
    const struct wide_task *t = args;
    int64_t r0, r1;
    mx_split(t->n_out, ith, nth, &r0, &r1);
    dequant_rows(t->cpu, t->w->type, MX_LAYOUT_GGML, t->w->data, t->w->nb[1], r0, r1 - r0,
                 t->n_in, t->wf + r0 * t->n_in);
}

static void wide_gemm_run(void *args, int ith, int nth) {
    const struct wide_task *t = args;
    /* columns in chunks of 16 so the split does not depend on odd sizes */
    int64_t c0, c1, nch = (t->T + 15) / 16;
    mx_split(nch, ith, nth, &c0, &c1);
    c0 *= 16;
    c1 = MX_MIN(c1 * 16, t->T);
    if (c0 >= c1)
        return;
    cblas_sgemm(CblasColMajor, CblasTrans, CblasNoTrans, (int)t->n_out, (int)(c1 - c0),
                (int)t->n_in, 1.0f, t->wsrc, (int)t->n_in, t->x + c0 * t->n_in, (int)t->n_in,
                0.0f, t->y + c0 * t->n_out, (int)t->n_out);
}

static bool wide_ok(const struct mx_tensor *w, const struct mx_tensor *x) {
    return (w->type == MX_TYPE_F16 || w->type == MX_TYPE_BF16 || w->type == MX_TYPE_F32) &&
           w->layout == MX_LAYOUT_GGML && w->ne[2] == 1 && w->ne[3] == 1 &&
           x->ne[1] * x->ne[2] * x->ne[3] >= MX_WIDE_MIN_COLS;
}

/* A plain matmul's shared scratch (on the row-tile path): its activations' sizes and where
 * its jobs go, as laid out by mm_plan and filled by mm_fill. */
struct mm_plan {
    struct act_plan ap;
    bool want_q;                   /* the columns go through the quantized kernels */
    size_t xr_bytes, xq_bytes;     /* rounded f32 columns, quantized columns (64-aligned) */
    size_t bytes;                  /* the whole: xr, xq, then the jobs */
};

/* Sizes dst = w x's scratch on the row-tile path. Returns 0, MX_EINVAL (no plan for w) or
 * MX_ENOMEM (sizes overflow). */
static int mm_plan(struct mx_backend *be, const struct mx_tensor *w, const struct mx_tensor *x,
                   struct mm_plan *pl) {
    int64_t n_in = w->ne[0], T = x->ne[1];
    int64_t planes = x->ne[2] * x->ne[3], ncols = T * planes;
    if (plan_act(be, w, &pl->ap) < 0)
        return MX_EINVAL;
    pl->want_q = uses_xq(&pl->ap, T);
    size_t xr_bytes = 0, xq_bytes = 0, job_bytes;
    if (pl->ap.round && !size3((size_t)ncols, (size_t)n_in, sizeof(float), &xr_bytes))
        return MX_ENOMEM;
    if (pl->want_q && !mx_mul_size((size_t)ncols, pl->ap.xq_row, &xq_bytes))
        return MX_ENOMEM;
    if (!mx_mul_size((size_t)planes, sizeof(struct mm_job), &job_bytes))
        return MX_ENOMEM;
    pl->xr_bytes = (xr_bytes + 63) / 64 * 64;
    pl->xq_bytes = (xq_bytes + 63) / 64 * 64;
    job_bytes = (job_bytes + 63) / 64 * 64;
    if (!mx_add_size(pl->xr_bytes, pl->xq_bytes, &pl->bytes) ||
        !mx_add_size(pl->bytes, job_bytes, &pl->bytes))
        return MX_ENOMEM;
    return 0;
}

/* Prepares x's columns for w into the scratch at base (pl->bytes, reserved) and fills *task
 * with dst = w x's jobs (there too). */
static void mm_fill(struct mx_cpu *c, const struct mm_plan *pl, struct mx_tensor *dst,
                    const struct mx_tensor *w, const struct mx_tensor *x, char *base,
                    struct mm_task *task) {
    const struct act_plan *ap = &pl->ap;
    int64_t n_in = w->ne[0], n_out = w->ne[1], T = x->ne[1];
    int64_t planes = x->ne[2] * x->ne[3], ncols = T * planes;
    float *xr = ap->round ? (float *)base : NULL;
    char *xq = pl->want_q ? base + pl->xr_bytes : NULL;
    struct mm_job *jobs = (struct mm_job *)(base + pl->xr_bytes + pl->xq_bytes);
    const float *xv = x->data;
    struct prep_task prep = {.ap = ap, .xv = xv, .n_in = n_in, .xr = xr, .xq = xq,
                             .ncols = ncols};
    prep_run(c, &prep);
    int64_t r2 = x->ne[2] / w->ne[2], r3 = x->ne[3] / w->ne[3];
    for (int64_t p = 0; p < planes; p++) {
        int64_t i2 = p % x->ne[2], i3 = p / x->ne[2];
        struct mm_job *j = &jobs[p];
        j->w = (const char *)w->data + (size_t)(i2 / r2) * w->nb[2] + (size_t)(i3 / r3) * w->nb[3];
        j->x = (xr ? xr : xv) + p * T * n_in;
        j->xq = xq ? xq + (size_t)(p * T) * ap->xq_row : NULL;
        j->y = (float *)dst->data + p * T * n_out;
        j->n = T;
        j->ldy = n_out;
        j->w2 = NULL;
        j->y2 = NULL;
    }
    *task = (struct mm_task){
        .cpu = c, .wtype = w->type, .layout = w->layout, .n_in = n_in, .n_out = n_out,
        .w_row = w->nb[1], .xq_row = ap->xq_row, .vdot = ap->vdot, .vdot2 = ap->vdot2,
        .vdot4 = ap->vdot4, .xd_q8_0 = ap->vdtype == MX_TYPE_Q8_0, .vdot4_all = ap->vdot4_all,
        .vdot_all = ap->vdot_all,
        .gemm8 = ap->gemm8, .gemm16 = ap->gemm16, .gemm_iq = ap->gemm_iq, .n_jobs = (int)planes,
        .iq_panel = n_out % 8 == 0 && w->ne[2] == 1 && w->ne[3] == 1,
        .jobs = jobs,
        .tiles = (n_out + MX_TILE - 1) / MX_TILE,
    };
}

/* Multiply-adds of dst = w x. */
static int64_t mm_macs(const struct mx_tensor *w, const struct mx_tensor *x) {
    return w->ne[0] * w->ne[1] * x->ne[1] * x->ne[2] * x->ne[3];
}

int mx_cpu_matmul(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                  const struct mx_tensor *x) {
    struct mx_cpu *c = mx_cpu_of(be);
    int64_t n_in = w->ne[0], n_out = w->ne[1], T = x->ne[1];
    int64_t planes = x->ne[2] * x->ne[3], ncols = T * planes;
    struct act_plan ap;
    if (plan_act(be, w, &ap) < 0)
        return MX_EINVAL;
    if (wide_ok(w, x)) {
        /* shared scratch: rounded columns, then the f32 weight */
        size_t xr_b = 0, wf_b = 0, tot;
        if ((ap.round && !size3((size_t)ncols, (size_t)n_in, sizeof(float), &xr_b)) ||
            (w->type != MX_TYPE_F32 && !size3((size_t)n_out, (size_t)n_in, sizeof(float), &wf_b)))
            return MX_ENOMEM;
        xr_b = (xr_b + 63) / 64 * 64;
        if (!mx_add_size(xr_b, wf_b, &tot))
            return MX_ENOMEM;
        int rc = reserve(be, 0, tot);
        if (rc < 0)
            return rc;
        float *xr = ap.round ? (float *)c->sbuf : NULL;
        struct prep_task prep = {.ap = &ap, .xv = x->data, .n_in = n_in, .xr = xr,
                                 .ncols = ncols};
        if (xr)
            prep_run(c, &prep);
        struct wide_task wt = {.cpu = c, .w = w, .x = xr ? xr : x->data, .y = dst->data,
                               .n_in = n_in, .n_out = n_out, .T = ncols};
        if (w->type != MX_TYPE_F32) {
            wt.wf = (float *)((char *)c->sbuf + xr_b);
            mx_pool_run(c->pool, wide_widen_run, &wt);
            wt.wsrc = wt.wf;
        } else {
            wt.wsrc = w->data;
        }
        mx_pool_run(c->pool, wide_gemm_run, &wt);
        return 0;
    }
    struct mm_plan pl;
    int rc = mm_plan(be, w, x, &pl);
    if (rc == 0)
        rc = reserve(be, n_in, pl.bytes);
    if (rc < 0)
        return rc;
    struct mm_task task;
    mm_fill(c, &pl, dst, w, x, c->sbuf, &task);
    if (mm_macs(w, x) <= MX_SERIAL_MM_MACS)
        mm_task_run(&task, 0, 1); /* e.g. a MoE router at decode: cheaper than a pool run */
    else
        mm_run(c, &task);
    return 0;
}

/* n matmuls' tiles as one unit space: task i's tiles from base[i]. */
struct mm_multi {
    int n;
    const struct mm_task *t[MX_MATMUL_N_MAX];
    int64_t base[MX_MATMUL_N_MAX + 1];
};

static void mm_multi_unit_run(void *args, int64_t u, int ith) {
    const struct mm_multi *m = args;
    int i = 0;
    while (u >= m->base[i + 1])
        i++;
    const struct mm_task *t = m->t[i];
    mm_unit(t, u - m->base[i], t->cpu->tbuf[ith], t->wtype == MX_TYPE_F32);
}

int mx_cpu_matmul_n(struct mx_backend *be, int n, struct mx_tensor *const *dst,
                    const struct mx_tensor *const *w, const struct mx_tensor *x) {
    struct mx_cpu *c = mx_cpu_of(be);
    const int nth = mx_pool_n_threads(c->pool);
    bool fuse = n > 1 && nth <= MX_CPU_MAX_THREADS;
    for (int i = 0; i < n && fuse; i++)
        fuse = !wide_ok(w[i], x);
    if (!fuse) { /* the wide path runs a pool pass of its own per weight anyway */
        for (int i = 0; i < n; i++) {
            int rc = mx_cpu_matmul(be, dst[i], w[i], x);
            if (rc < 0)
                return rc;
        }
        return 0;
    }
    /* shared scratch: each weight's columns and jobs in turn */
    struct mm_plan pl[MX_MATMUL_N_MAX];
    size_t off[MX_MATMUL_N_MAX], total = 0;
    int64_t macs = 0;
    for (int i = 0; i < n; i++) {
        int rc = mm_plan(be, w[i], x, &pl[i]);
        if (rc < 0)
            return rc;
        off[i] = total;
        if (!mx_add_size(total, pl[i].bytes, &total))
            return MX_ENOMEM;
        macs += mm_macs(w[i], x);
    }
    int rc = reserve(be, x->ne[0], total);
    if (rc < 0)
        return rc;
    struct mm_task task[MX_MATMUL_N_MAX];
    struct mm_multi m = {.n = n};
    for (int i = 0; i < n; i++) {
        mm_fill(c, &pl[i], dst[i], w[i], x, (char *)c->sbuf + off[i], &task[i]);
        m.t[i] = &task[i];
        m.base[i + 1] = m.base[i] + (int64_t)task[i].n_jobs * task[i].tiles;
    }
    if (macs <= MX_SERIAL_MM_MACS) {
        for (int i = 0; i < n; i++)
            mm_task_run(&task[i], 0, 1);
        return 0;
    }
    /* each thread a contiguous share of every weight's tiles (tiles of one x weigh alike) */
    int64_t bounds[MX_CPU_MAX_THREADS + 1];
    for (int i = 0; i < nth; i++) {
        int64_t r1;
        mx_split(m.base[n], i, nth, &bounds[i], &r1);
    }
    bounds[nth] = m.base[n];
    mx_pool_run_units(c->pool, mm_multi_unit_run, &m, bounds);
    return 0;
}

/* matmul_id's scatter: gathered column k is dst[:, slot, t] (map[k] = slot + t * n_used), split
 * over the pool at prefill (16 MB per expert matmul of the bench model at 512 tokens). */
struct scatter_task {
    float *d[2];         /* the op's dst [n_out, n_used, T] (matmul_id2: both; else d[1] NULL) */
    bool silu_mul;       /* d[0] = silu(ys[0]) * ys[1] instead (d[1] not written) */
    const float *ys[2];  /* gathered outputs [n_out, ncols], grouped by expert */
    const int64_t *map;  /* [ncols] gathered column -> slot + t * n_used */
    int64_t n_out, ncols;
};

static void scatter_task_run(void *args, int ith, int nth) {
    const struct scatter_task *s = args;
    int64_t k0, k1;
    mx_split(s->ncols, ith, nth, &k0, &k1);
    if (s->silu_mul) {
        for (int64_t k = k0; k < k1; k++) {
            float *d = s->d[0] + s->map[k] * s->n_out;
            const float *g = s->ys[0] + k * s->n_out, *u = s->ys[1] + k * s->n_out;
            for (int64_t o = 0; o < s->n_out; o++)
                d[o] = mx_silu_f(g[o]) * u[o];
        }
        return;
    }
    for (int w = 0; w < 2 && s->d[w]; w++)
        for (int64_t k = k0; k < k1; k++)
            memcpy(s->d[w] + s->map[k] * s->n_out, s->ys[w] + k * s->n_out,
                   (size_t)s->n_out * sizeof(float));
}

/* dst[i] = w[i][ids] x for nw = 1 or 2 weights of one shape, type and layout (checked by the
 * callers): the (token, slot) pairs grouped by expert and their columns gathered and quantized
 * once, one pool run over every selected expert's tiles of both weights (a job per expert, its
 * second weight right after the first on the same columns), then the scatter. Each output's
 * numbers are those of a matmul_id of its weight alone (same kernels per tile and column).
 * silu_mul (nw 2): the scatter writes silu(first) * second to dst[0] (silu_mul's arithmetic,
 * mx_silu_f) and leaves dst[1] alone. */
static int matmul_id_n(struct mx_backend *be, int nw, struct mx_tensor *const *dst,
                       const struct mx_tensor *const *w, const struct mx_tensor *x,
                       const struct mx_tensor *ids, bool silu_mul) {
    struct mx_cpu *c = mx_cpu_of(be);
    int64_t n_in = w[0]->ne[0], n_out = w[0]->ne[1], n_exp = w[0]->ne[2];
    int64_t n_used = ids->ne[0], T = ids->ne[1], ncols = n_used * T;
    const int32_t *idv = ids->data;
    for (int64_t i = 0; i < ncols; i++) {
        if (idv[i] < 0 || idv[i] >= n_exp) {
            be->last_err.code = MX_EINVAL;
            snprintf(be->last_err.msg, sizeof be->last_err.msg,
                     "matmul_id: expert id %d at slot %lld outside [0, %lld)", (int)idv[i],
                     (long long)i, (long long)n_exp);
            return MX_EINVAL;
        }
    }
    struct act_plan ap;
    if (plan_act(be, w[0], &ap) < 0)
        return MX_EINVAL;
    /* shared scratch: gathered activations (f32 and maybe quantized), outputs, the column map,
     * per-expert counts and the jobs */
    /* zeroed: clang cannot see that ok == false stops every use below */
    size_t xr_bytes = 0, xq_bytes = 0, y_bytes = 0, map_bytes = 0, cnt_bytes = 0, job_bytes = 0;
    size_t shared = 0;
    size_t nq_bytes = (size_t)ncols;
    bool ok = size3((size_t)ncols, (size_t)n_in, sizeof(float), &xr_bytes) &&
              size3((size_t)ncols * (size_t)nw, (size_t)n_out, sizeof(float), &y_bytes) &&
              mx_mul_size((size_t)ncols, sizeof(int64_t), &map_bytes) &&
              mx_mul_size((size_t)n_exp + 1, sizeof(int64_t), &cnt_bytes) &&
              mx_mul_size((size_t)n_exp, sizeof(struct mm_job), &job_bytes);
    if (ok && ap.quant)
        ok = mx_mul_size((size_t)ncols, ap.xq_row, &xq_bytes);
    size_t parts[7] = {xr_bytes, xq_bytes, y_bytes, map_bytes, cnt_bytes, job_bytes, nq_bytes};
    size_t offs[7];
    for (int i = 0; ok && i < 7; i++) {
        offs[i] = shared;
        ok = mx_add_size(shared, (parts[i] + 63) / 64 * 64, &shared);
    }
    if (!ok)
        return MX_ENOMEM;
    int rc = reserve(be, n_in, shared);
    if (rc < 0)
        return rc;
    char *s = c->sbuf;
    float *xr = (float *)(s + offs[0]);
    char *xq = ap.quant ? s + offs[1] : NULL;
    float *ys = (float *)(s + offs[2]);        /* [nw][ncols][n_out] */
    int64_t *map = (int64_t *)(s + offs[3]);   /* gathered column -> slot index s + t*n_used */
    int64_t *start = (int64_t *)(s + offs[4]); /* [n_exp + 1] first gathered column per expert */
    struct mm_job *jobs = (struct mm_job *)(s + offs[5]);
    uint8_t *needq = (uint8_t *)(s + offs[6]); /* gathered column goes through vec_dot */
    float *ys2 = ys + ncols * n_out;           /* the second weight's outputs (nw == 2) */

    /* group the (token, slot) pairs by expert, in token order within an expert */
    memset(start, 0, (size_t)(n_exp + 1) * sizeof(int64_t));
    for (int64_t i = 0; i < ncols; i++)
        start[idv[i] + 1]++;
    for (int64_t e = 0; e < n_exp; e++)
        start[e + 1] += start[e];
    for (int64_t e = 0, k = 0; e < n_exp; e++) /* stable: scan once per used expert */
        for (int64_t i = 0; i < ncols && start[e + 1] > start[e]; i++)
            if (idv[i] == e)
                map[k++] = i;
    int n_jobs = 0;
    const float *xv = x->data;
    for (int64_t e = 0; e < n_exp; e++) {
        int64_t n = start[e + 1] - start[e];
        if (n == 0)
            continue;
        bool q = xq && uses_xq(&ap, n);
        memset(needq + start[e], q, (size_t)n);
        struct mm_job *j = &jobs[n_jobs++];
        j->w = (const char *)w[0]->data + (size_t)e * w[0]->nb[2];
        j->x = xr + start[e] * n_in;
        j->xq = q ? xq + (size_t)start[e] * ap.xq_row : NULL;
        j->y = ys + start[e] * n_out;
        j->n = n;
        j->ldy = n_out;
        j->w2 = nw == 2 ? (const char *)w[1]->data + (size_t)e * w[1]->nb[2] : NULL;
        j->y2 = nw == 2 ? ys2 + start[e] * n_out : NULL;
    }
    struct prep_task prep = {.ap = &ap, .xv = xv, .n_in = n_in, .map = map, .n_used = n_used,
                             .x_ne1 = x->ne[1], .xr = xr, .xq = xq, .needq = needq,
                             .ncols = ncols};
    prep_run(c, &prep);
    struct mm_task task = {
        .cpu = c, .wtype = w[0]->type, .layout = w[0]->layout, .n_in = n_in, .n_out = n_out,
        .w_row = w[0]->nb[1], .xq_row = ap.xq_row, .vdot = ap.vdot, .vdot2 = ap.vdot2,
        .vdot4 = ap.vdot4,
        .xd_q8_0 = ap.vdtype == MX_TYPE_Q8_0, .vdot4_all = ap.vdot4_all,
        .vdot_all = ap.vdot_all,
        .gemm8 = ap.gemm8, .gemm16 = ap.gemm16, .gemm_iq = ap.gemm_iq, .n_jobs = n_jobs,
        .iq_panel = n_out % 8 == 0,
        .jobs = jobs,
        .tiles = (n_out + MX_TILE - 1) / MX_TILE,
    };
    mm_run(c, &task);
    struct scatter_task sc = {.d = {dst[0]->data, nw == 2 ? dst[1]->data : NULL},
                              .silu_mul = nw == 2 && silu_mul, .ys = {ys, ys2}, .map = map,
                              .n_out = n_out, .ncols = ncols};
    if (ncols * n_out * nw >= 65536)
        mx_pool_run(c->pool, scatter_task_run, &sc);
    else
        scatter_task_run(&sc, 0, 1); /* a decode step: cheaper than waking the workers */
    return 0;
}

int mx_cpu_matmul_id(struct mx_backend *be, struct mx_tensor *dst, const struct mx_tensor *w,
                     const struct mx_tensor *x, const struct mx_tensor *ids) {
    return matmul_id_n(be, 1, &dst, &w, x, ids, false);
}

int mx_cpu_matmul_id2(struct mx_backend *be, struct mx_tensor *dst_a, const struct mx_tensor *w_a,
                      struct mx_tensor *dst_b, const struct mx_tensor *w_b,
                      const struct mx_tensor *x, const struct mx_tensor *ids, bool silu_mul) {
    struct mx_tensor *dst[2] = {dst_a, dst_b};
    const struct mx_tensor *w[2] = {w_a, w_b};
    return matmul_id_n(be, 2, dst, w, x, ids, silu_mul);
}
