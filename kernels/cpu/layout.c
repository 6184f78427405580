/* layout.c - the CPU backend's fast data-movement ops for images: transpose and concat.
 *
 * The diffusion UNet turns every transformer's input image [W*H, C] into tokens [C, W*H] and
 * back (32 transposes of up to 8192 x 640 values per 512x512 step) and concatenates a skip onto
 * every output block's input. The reference loops (ref_conv.c) read one element per position
 * computation, and the transpose walks x's columns with a stride of a whole row (4096 floats: a
 * 16 KiB stride that maps each read onto the same cache sets); here the transpose goes by
 * 32 x 32 tiles and a contiguous concat by whole rows with memcpy. Same results bit for bit.
 */
#include "kernels/cpu/cpu.h"

#include <string.h>

#include "core/base/util.h"

#define MX_TR_TILE 32

/* dst[j, i, k, l] = x[i, j, k, l] for contiguous x and dst: units are tiles of
 * MX_TR_TILE x MX_TR_TILE over (i, j) of each (k, l) plane. */
void mx_cpu_transpose_tiled(void *args, int ith, int nth) {
    struct mx_ref_args *a = args;
    const struct mx_tensor *x = a->src[0];
    struct mx_tensor *d = a->dst;
    int64_t A = x->ne[0], B = x->ne[1], planes = x->ne[2] * x->ne[3];
    int64_t ta = (A + MX_TR_TILE - 1) / MX_TR_TILE, tb = (B + MX_TR_TILE - 1) / MX_TR_TILE;
    int64_t u0, u1;
    mx_split(planes * ta * tb, ith, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t p = u / (ta * tb), i0 = (u % ta) * MX_TR_TILE, j0 = (u / ta % tb) * MX_TR_TILE;
        const float *xs = (const float *)x->data + p * A * B;
        float *ds = (float *)d->data + p * A * B;
        int64_t i1 = MX_MIN(i0 + MX_TR_TILE, A), j1 = MX_MIN(j0 + MX_TR_TILE, B);
        for (int64_t j = j0; j < j1; j++)
            for (int64_t i = i0; i < i1; i++)
                ds[i * B + j] = xs[j * A + i];
    }
}

/* Concatenation of contiguous a, b along dim: every run of a's (then b's) elements below dim
 * is copied whole. Units: the outer index over dims above dim. */
void mx_cpu_concat_rows(void *args, int ith, int nth) {
    struct mx_ref_args *ar = args;
    const struct mx_tensor *a = ar->src[0], *b = ar->src[1];
    struct mx_tensor *d = ar->dst;
    int dim = ar->i;
    int64_t inner = 1, outer = 1;
    for (int i = 0; i < dim; i++)
        inner *= d->ne[i];
    for (int i = dim + 1; i < MX_MAX_DIMS; i++)
        outer *= d->ne[i];
    size_t na = (size_t)(inner * a->ne[dim]), nb = (size_t)(inner * b->ne[dim]);
    int64_t o0, o1;
    mx_split(outer, ith, nth, &o0, &o1);
    for (int64_t o = o0; o < o1; o++) {
        float *dd = (float *)d->data + (size_t)o * (na + nb);
        memcpy(dd, (const float *)a->data + (size_t)o * na, na * sizeof(float));
        memcpy(dd + na, (const float *)b->data + (size_t)o * nb, nb * sizeof(float));
    }
}
