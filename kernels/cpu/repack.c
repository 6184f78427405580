/* repack.c - the CPU backend's weight preparation: Q4_0, Q8_0, Q4_K, Q5_K and Q6_K matrices
 * repacked 8 rows at a time.
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
#include "kernels/cpu/kernels_iq.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"

/* Each layout's converters work on one block of the 8 rows: repack gathers block b of each row
 * (rows[r]) into the x8 block; dequant writes row r's values of one x8 block. */

/* Byte 4j + k of a Q4_0 block holds values 4j + k (low nibble) and 16 + 4j + k (high nibble):
 * exactly the pair chunk j of the repacked block wants, so repacking is a gather of 4-byte runs. */
static void repack_q4_0x8(const void *const rows[8], void *dst) {
    mx_block_q4_0x8 *out = dst;
    for (int r = 0; r < 8; r++) {
        const mx_block_q4_0 *b = rows[r];
        out->d[r] = b->d;
        for (int j = 0; j < 4; j++)
            memcpy(out->qs + 32 * j + 4 * r, b->qs + 4 * j, 4);
    }
}

static void dequant_q4_0x8(const void *src, int r, float *out) {
    const mx_block_q4_0x8 *a = src;
    float d = mx_fp16_to_fp32(a->d[r]);
    for (int j = 0; j < 4; j++)
        for (int k = 0; k < 4; k++) {
            uint8_t q = a->qs[32 * j + 4 * r + k];
            out[4 * j + k] = (float)((q & 0x0f) - 8) * d;
            out[4 * (j + 4) + k] = (float)((q >> 4) - 8) * d;
        }
}

static void repack_q8_0x8(const void *const rows[8], void *dst) {
    mx_block_q8_0x8 *out = dst;
    for (int r = 0; r < 8; r++) {
        const mx_block_q8_0 *b = rows[r];
        out->d[r] = b->d;
        for (int g = 0; g < 8; g++)
            memcpy(&out->qs[g][4 * r], b->qs + 4 * g, 4);
    }
}

static void dequant_q8_0x8(const void *src, int r, float *out) {
    const mx_block_q8_0x8 *a = src;
    float d = mx_fp16_to_fp32(a->d[r]);
    for (int g = 0; g < 8; g++)
        for (int i = 0; i < 4; i++)
            out[4 * g + i] = (float)a->qs[g][4 * r + i] * d;
}

/* Where scale / min of sub-block j, row r sit among the 64 values (see mx_block_q4_Kx8). */
static inline int k8_scale_index(int j, int r) {
    return 8 * j + r;
}

static inline int k8_min_index(int j, int r) {
    return 16 * (j / 2) + 2 * r + j % 2;
}

/* The Q4_K part shared by Q4_K and Q5_K blocks: scales/mins (same packing) into d, dmin, sm_lo,
 * sm_hi, and the low 4 bits into qs (chunk c at qs + c * stride). */
static void repack_k4_part(const void *const rows[8], bool q5, mx_half *d, mx_half *dmin,
                           uint8_t *sm_lo, uint8_t *sm_hi, uint8_t *qs, size_t stride) {
    uint8_t sc[64], mn[64];
    for (int r = 0; r < 8; r++) {
        const mx_block_q4_K *b4 = rows[r];
        const mx_block_q5_K *b5 = rows[r];
        d[r] = q5 ? b5->d : b4->d;
        dmin[r] = q5 ? b5->dmin : b4->dmin;
        const uint8_t *scales = q5 ? b5->scales : b4->scales;
        const uint8_t *src = q5 ? b5->qs : b4->qs;
        for (int j = 0; j < 8; j++)
            mx_q4_k_scale_min(j, scales, &sc[k8_scale_index(j, r)], &mn[k8_min_index(j, r)]);
        for (int c = 0; c < 4; c++)
            for (int v = 0; v < 8; v++)
                memcpy(qs + c * stride + 32 * v + 4 * r, src + 32 * c + 4 * v, 4);
    }
    for (int k = 0; k < 64; k++)
        sm_lo[k] = (uint8_t)((sc[k] & 0x0f) | (mn[k] & 0x0f) << 4);
    for (int k = 0; k < 32; k++)
        sm_hi[k] = (uint8_t)((sc[k] >> 4) | (sc[k + 32] >> 4) << 2 | (mn[k] >> 4) << 4 |
                             (mn[k + 32] >> 4) << 6);
}

/* Row r of a Q4_K / Q5_K x8 block in mx_dequantize_row's arithmetic: d*sc*q - dmin*m per
 * sub-block, q = nibble (+ 16 x the fifth bit when qh, laid out with qs's chunk stride). */
static void dequant_k4_part(const mx_half *dh, const mx_half *dminh, const uint8_t *sm_lo,
                            const uint8_t *sm_hi, const uint8_t *qs, const uint8_t *qh,
                            size_t stride, int r, float *out) {
    float d = mx_fp16_to_fp32(dh[r]), dmin = mx_fp16_to_fp32(dminh[r]);
    for (int j = 0; j < 8; j++) {
        int ks = k8_scale_index(j, r), km = k8_min_index(j, r);
        int sc = (sm_lo[ks] & 0x0f) | (sm_hi[ks % 32] >> (ks < 32 ? 0 : 2) & 3) << 4;
        int mn = (sm_lo[km] >> 4) | (sm_hi[km % 32] >> (km < 32 ? 4 : 6) & 3) << 4;
        float ds = d * (float)sc, dm = dmin * (float)mn;
        int c = j / 2, shift = j % 2 ? 4 : 0;
        for (int l = 0; l < 32; l++) {
            uint8_t q = qs[c * stride + 32 * (l / 4) + 4 * r + l % 4];
            int bit = qh ? (qh[c * stride + 32 * (j % 2) + 4 * r + l % 4] >> (l / 4)) & 1 : 0;
            out[32 * j + l] = ds * (float)(((q >> shift) & 0x0f) + (bit ? 16 : 0)) - dm;
        }
    }
}

static void repack_q4_Kx8(const void *const rows[8], void *dst) {
    mx_block_q4_Kx8 *out = dst;
    repack_k4_part(rows, false, out->d, out->dmin, out->sm_lo, out->sm_hi, out->qs, 256);
}

static void dequant_q4_Kx8(const void *src, int r, float *out) {
    const mx_block_q4_Kx8 *a = src;
    dequant_k4_part(a->d, a->dmin, a->sm_lo, a->sm_hi, a->qs, NULL, 256, r, out);
}

/* Q5_K value 64c + l (l < 32) takes its fifth bit from qh[l] bit 2c, value 64c + 32 + l from
 * bit 2c + 1. */
static void repack_q5_Kx8(const void *const rows[8], void *dst) {
    mx_block_q5_Kx8 *out = dst;
    repack_k4_part(rows, true, out->d, out->dmin, out->sm_lo, out->sm_hi, out->ch[0].qs,
                   sizeof out->ch[0]);
    for (int c = 0; c < 4; c++)
        memset(out->ch[c].qh, 0, sizeof out->ch[c].qh);
    for (int r = 0; r < 8; r++) {
        const mx_block_q5_K *b5 = rows[r];
        for (int c = 0; c < 4; c++)
            for (int v = 0; v < 8; v++)
                for (int i = 0; i < 4; i++) {
                    uint8_t h = b5->qh[4 * v + i];
                    out->ch[c].qh[0][4 * r + i] |= (uint8_t)(((h >> (2 * c)) & 1) << v);
                    out->ch[c].qh[1][4 * r + i] |= (uint8_t)(((h >> (2 * c + 1)) & 1) << v);
                }
    }
}

static void dequant_q5_Kx8(const void *src, int r, float *out) {
    const mx_block_q5_Kx8 *a = src;
    dequant_k4_part(a->d, a->dmin, a->sm_lo, a->sm_hi, a->ch[0].qs, a->ch[0].qh[0],
                    sizeof a->ch[0], r, out);
}

/* The 256 values of a Q6_K block as unsigned 6 bits (q + 32), in ggml's dequantize_row_q6_K
 * order: per half h, lane l, quarter i. */
static void q6_values(const mx_block_q6_K *b, uint8_t v[256]) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            uint8_t ql0 = b->ql[64 * h + l], ql1 = b->ql[64 * h + l + 32], qh = b->qh[32 * h + l];
            v[128 * h + l] = (uint8_t)((ql0 & 0x0f) | (qh & 3) << 4);
            v[128 * h + l + 32] = (uint8_t)((ql1 & 0x0f) | ((qh >> 2) & 3) << 4);
            v[128 * h + l + 64] = (uint8_t)((ql0 >> 4) | ((qh >> 4) & 3) << 4);
            v[128 * h + l + 96] = (uint8_t)((ql1 >> 4) | ((qh >> 6) & 3) << 4);
        }
}

static void repack_q6_Kx8(const void *const rows[8], void *dst) {
    mx_block_q6_Kx8 *out = dst;
    memset(out, 0, sizeof *out);
    uint8_t v[256];
    for (int r = 0; r < 8; r++) {
        const mx_block_q6_K *blk = rows[r];
        out->d[r] = blk->d;
        for (int g = 0; g < 16; g++)
            out->ch[g / 2].scales[8 * (g % 2) + r] = blk->scales[g];
        q6_values(blk, v);
        for (int c = 0; c < 8; c++)
            for (int j = 0; j < 4; j++)
                for (int i = 0; i < 4; i++) {
                    uint8_t lo = v[32 * c + 4 * j + i], hi = v[32 * c + 16 + 4 * j + i];
                    out->ch[c].ql[j][4 * r + i] = (uint8_t)((lo & 0x0f) | (hi & 0x0f) << 4);
                    int pos = 2 * (j % 2); /* bit pair of lo; hi takes the next */
                    out->ch[c].qh[j / 2][4 * r + i] |=
                        (uint8_t)((lo >> 4) << (2 * pos) | (hi >> 4) << (2 * pos + 2));
                }
    }
}

static void dequant_q6_Kx8(const void *src, int r, float *out) {
    const mx_block_q6_Kx8 *a = src;
    float d = mx_fp16_to_fp32(a->d[r]);
    for (int v = 0; v < 256; v++) {
        int c = v / 32, w = v % 32, hi = w >= 16, j = (w % 16) / 4, i = w % 4;
        uint8_t ql = a->ch[c].ql[j][4 * r + i];
        int pos = 2 * (j % 2) + hi;
        int q = (hi ? ql >> 4 : ql & 0x0f) | ((a->ch[c].qh[j / 2][4 * r + i] >> (2 * pos)) & 3)
                << 4;
        out[v] = d * (float)a->ch[c].scales[8 * hi + r] * (float)(q - 32);
    }
}

/* Each layout's file type and block converters. */
static const struct {
    enum mx_type type;
    void (*repack)(const void *const rows[8], void *out);
    void (*dequant)(const void *block, int r, float *out);
} layouts[MX_LAYOUT_COUNT] = {
    [MX_LAYOUT_Q4_0X8] = {MX_TYPE_Q4_0, repack_q4_0x8, dequant_q4_0x8},
    [MX_LAYOUT_Q8_0X8] = {MX_TYPE_Q8_0, repack_q8_0x8, dequant_q8_0x8},
    [MX_LAYOUT_Q4_KX8] = {MX_TYPE_Q4_K, repack_q4_Kx8, dequant_q4_Kx8},
    [MX_LAYOUT_Q5_KX8] = {MX_TYPE_Q5_K, repack_q5_Kx8, dequant_q5_Kx8},
    [MX_LAYOUT_Q6_KX8] = {MX_TYPE_Q6_K, repack_q6_Kx8, dequant_q6_Kx8},
    [MX_LAYOUT_IQ4_XSX8] = {MX_TYPE_IQ4_XS, mx_iq4_xsx8_repack, mx_iq4_xsx8_dequant},
    [MX_LAYOUT_IQ4_NLX8] = {MX_TYPE_IQ4_NL, mx_iq4_nlx8_repack, mx_iq4_nlx8_dequant},
    [MX_LAYOUT_MXFP4X8] = {MX_TYPE_MXFP4, mx_mxfp4x8_repack, mx_mxfp4x8_dequant},
};

enum mx_layout mx_repack_layout(enum mx_type type) {
    for (int l = MX_LAYOUT_GGML + 1; l < MX_LAYOUT_COUNT; l++)
        if (layouts[l].repack && layouts[l].type == type)
            return (enum mx_layout)l;
    return MX_LAYOUT_GGML;
}

void mx_repack_rows(enum mx_layout layout, const void *src, void *dst, int64_t n,
                    int64_t n_rows) {
    const struct mx_type_traits *tr = mx_type_traits(layouts[layout].type);
    const size_t bsz = tr->type_size;
    const int64_t nb = n / tr->blck_size;
    const size_t row = (size_t)nb * bsz;
    char *out = dst;
    for (int64_t g = 0; g < n_rows / 8; g++) {
        const char *rows = (const char *)src + (size_t)g * 8 * row;
        for (int64_t b = 0; b < nb; b++, out += 8 * bsz) {
            const void *blk[8];
            for (int r = 0; r < 8; r++)
                blk[r] = rows + r * row + (size_t)b * bsz;
            layouts[layout].repack(blk, out);
        }
    }
}

void mx_dequant_x8_row(enum mx_layout layout, const void *group, int r, float *out, int64_t n) {
    const struct mx_type_traits *tr = mx_type_traits(layouts[layout].type);
    for (int64_t b = 0; b < n / tr->blck_size; b++)
        layouts[layout].dequant((const char *)group + (size_t)b * 8 * tr->type_size, r,
                                out + b * tr->blck_size);
}

/* Bytes a repacked tensor takes in the buffer: 64-byte aligned starts, so the kernels' 32-byte
 * loads never split a cache line. */
static size_t repacked_size(const struct mx_tensor *t) {
    return (mx_tensor_nbytes(t) + 63) / 64 * 64;
}

static bool repackable(const struct mx_cpu *c, const struct mx_tensor *t) {
    enum mx_layout l = mx_repack_layout(t->type);
    return l != MX_LAYOUT_GGML && c->kern.gemm_x8[l] && t->layout == MX_LAYOUT_GGML &&
           t->data && mx_tensor_is_contiguous(t) && t->ne[1] % 8 == 0;
}

/* Splits the repacking of one tensor over the pool by 8-row groups. */
struct repack_task {
    enum mx_layout layout;
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
        mx_repack_rows(t->layout, (const char *)t->src + (size_t)g0 * t->group_bytes,
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
        if (!mx_add_size(total, repacked_size(ws[i]), &total))
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
            .layout = mx_repack_layout(t->type), .src = t->data,
            .dst = (char *)buf->base + off, .n = t->ne[0],
            .groups = mx_tensor_nrows(t) / 8, .group_bytes = 8 * t->nb[1],
        };
        mx_pool_run(c->pool, repack_task_run, &task);
        t->data = task.dst;
        t->buf = buf;
        t->layout = task.layout;
        off += repacked_size(t);
    }
    *out = buf;
    return 0;
}
