/* repack.c - the CPU backend's weight preparation: Q4_0 matrices repacked 8 rows at a time.
 *
 * Why: decode reads every weight byte once per token, so its speed is the rate one core turns
 * weight bytes into dot products. Row by row that rate is capped by per-block work that does not
 * depend on the weights (loading the activation block, converting two scales, a horizontal sum
 * per row), and streaming several rows at once defeats the hardware prefetcher (measured: 4 rows
 * per call was 2x slower). With 8 rows interleaved block by block (mx_block_q4_0x8 in cpu.h) a
 * tile is one sequential stream, one activation block serves 8 rows and the 8 scales convert in
 * one instruction. llama.cpp does the same at load on AVX2 machines (its "repack" buffer type).
 * The repacked copy replaces the mapped rows: the loader may drop the file's pages afterwards, so
 * resident memory stays the size of the model.
 */
#include "kernels/cpu/cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* Value v (0..31) of a Q4_0 block as its unsigned nibble (ggml: qs[i] low = value i, high =
 * value i + 16). */
static inline uint8_t q4_0_nibble(const mx_block_q4_0 *b, int v) {
    return v < 16 ? (uint8_t)(b->qs[v] & 0x0f) : (uint8_t)(b->qs[v - 16] >> 4);
}

void mx_repack_q4_0x8(const void *src, void *dst, int64_t n, int64_t n_rows) {
    const int64_t nb = n / MX_QK4_0;
    const size_t row = (size_t)nb * sizeof(mx_block_q4_0);
    mx_block_q4_0x8 *out = dst;
    for (int64_t g = 0; g < n_rows / 8; g++) {
        const char *rows = (const char *)src + (size_t)g * 8 * row;
        for (int64_t b = 0; b < nb; b++, out++) {
            for (int r = 0; r < 8; r++) {
                const mx_block_q4_0 *blk = (const mx_block_q4_0 *)(rows + r * row) + b;
                out->d[r] = blk->d;
                for (int j = 0; j < 4; j++)
                    for (int k = 0; k < 4; k++)
                        out->qs[32 * j + 4 * r + k] =
                            (uint8_t)(q4_0_nibble(blk, 4 * j + k) |
                                      q4_0_nibble(blk, 4 * (j + 4) + k) << 4);
            }
        }
    }
}

void mx_dequant_q4_0x8_row(const void *group, int r, float *out, int64_t n) {
    const mx_block_q4_0x8 *a = group;
    for (int64_t b = 0; b < n / MX_QK4_0; b++) {
        float d = mx_fp16_to_fp32(a[b].d[r]);
        for (int j = 0; j < 4; j++)
            for (int k = 0; k < 4; k++) {
                uint8_t q = a[b].qs[32 * j + 4 * r + k];
                out[b * 32 + 4 * j + k] = (float)((q & 0x0f) - 8) * d;
                out[b * 32 + 4 * (j + 4) + k] = (float)((q >> 4) - 8) * d;
            }
    }
}

static bool repackable(const struct mx_cpu *c, const struct mx_tensor *t) {
    return c->kern.gemm_q4_0x8 && t->type == MX_TYPE_Q4_0 && t->layout == MX_LAYOUT_GGML &&
           t->data && mx_tensor_is_contiguous(t) && t->ne[1] % 8 == 0;
}

/* Splits the repacking of one tensor over the pool by 8-row groups. */
struct repack_task {
    const void *src;
    void *dst;
    int64_t n, groups;
    size_t group_bytes;
};

static void repack_task_run(void *args, int ith, int nth) {
    const struct repack_task *t = args;
    int64_t g0, g1;
    mx_split(t->groups, ith, nth, &g0, &g1);
    if (g1 > g0)
        mx_repack_q4_0x8((const char *)t->src + (size_t)g0 * t->group_bytes,
                         (char *)t->dst + (size_t)g0 * t->group_bytes, t->n, (g1 - g0) * 8);
}

int mx_cpu_prepare_weights(struct mx_backend *be, struct mx_tensor *const *ws, int n,
                           struct mx_buf **out) {
    struct mx_cpu *c = mx_cpu_of(be);
    size_t total = 0;
    *out = NULL;
    for (int i = 0; i < n; i++) {
        if (!repackable(c, ws[i]))
            continue;
        /* 64-byte aligned starts: the kernels' 32-byte chunk loads never split a line */
        size_t sz = (mx_tensor_nbytes(ws[i]) + 63) / 64 * 64;
        if (!mx_add_size(total, sz, &total))
            return MX_ENOMEM;
    }
    if (total == 0)
        return 0;
    struct mx_buf *buf;
    int rc = be->ops->buf_alloc(be, total, &buf);
    if (rc < 0) {
        be->last_err.code = rc;
        snprintf(be->last_err.msg, sizeof be->last_err.msg,
                 "cannot allocate %zu bytes for repacked weights", total);
        return rc;
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        struct mx_tensor *t = ws[i];
        if (!repackable(c, t))
            continue;
        struct repack_task task = {
            .src = t->data, .dst = (char *)buf->base + off, .n = t->ne[0],
            .groups = mx_tensor_nrows(t) / 8, .group_bytes = 8 * t->nb[1],
        };
        mx_pool_run(c->pool, repack_task_run, &task);
        t->data = task.dst;
        t->buf = buf;
        t->layout = MX_LAYOUT_Q4_0X8;
        off += (mx_tensor_nbytes(t) + 63) / 64 * 64;
    }
    *out = buf;
    return 0;
}
