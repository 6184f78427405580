/* grid.c - A1111's image grid (see grid.h). */
#include "core/image/grid.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/err.h"

int mx_image_grid_rows(int n) {
    /* Python's round(math.sqrt(n)): the square root of an integer is never exactly x.5, so
     * rounding half away from zero gives the same */
    int rows = (int)lround(sqrt((double)n));
    if (rows < 1)
        rows = 1;
    return rows > n ? n : rows;
}

int mx_image_grid(const struct mx_image *imgs, int n, int rows, struct mx_image *out) {
    memset(out, 0, sizeof *out);
    if (n < 1 || !imgs[0].rgb || imgs[0].w < 1 || imgs[0].h < 1)
        return MX_EINVAL;
    if (rows == 0)
        rows = mx_image_grid_rows(n);
    if (rows < 1 || rows > n)
        return MX_EINVAL;
    int cols = (n + rows - 1) / rows;
    int w = imgs[0].w, h = imgs[0].h;
    uint64_t gw = (uint64_t)cols * (uint64_t)w, gh = (uint64_t)rows * (uint64_t)h;
    if (gw > MX_IMAGE_MAX_SIDE || gh > MX_IMAGE_MAX_SIDE || gw * gh > MX_IMAGE_MAX_PIXELS)
        return MX_ERANGE;
    uint8_t *px = calloc((size_t)(gw * gh), 3);
    if (!px)
        return MX_ENOMEM;
    for (int i = 0; i < n; i++) {
        const struct mx_image *im = &imgs[i];
        if (!im->rgb || im->w < 1 || im->h < 1) {
            free(px);
            return MX_EINVAL;
        }
        int x0 = i % cols * w, y0 = i / cols * h;
        int cw = im->w < w ? im->w : w, ch = im->h < h ? im->h : h;
        for (int y = 0; y < ch; y++)
            memcpy(px + (((size_t)(y0 + y) * (size_t)gw) + (size_t)x0) * 3,
                   im->rgb + (size_t)y * (size_t)im->w * 3, (size_t)cw * 3);
    }
    out->w = (int)gw;
    out->h = (int)gh;
    out->rgb = px;
    return 0;
}
