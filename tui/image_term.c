/* image_term.c - images for the terminal: layout in cells, xterm-256 colours, Unicode half
 * blocks, tmux passthrough and sixel encoding (libsixel: palette by median cut, error
 * diffusion). The write callback lets the TUI hold the bytes until curses has drawn the frame.
 */
#include "tui/image_term.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "core/base/bytes.h"
#include "core/base/util.h"

#ifdef HAVE_SIXEL
/* sixel.h defines its own PACKAGE_VERSION; this file does not use ours */
#undef PACKAGE_VERSION
#include <sixel.h>
#endif

int mx_image_fit(int img_w, int img_h, int cell_w, int cell_h, int box_cols, int box_rows,
                 int max_w, int max_h, struct mx_image_layout *lay) {
    memset(lay, 0, sizeof *lay);
    if (img_w <= 0 || img_h <= 0 || cell_w <= 0 || cell_h <= 0 || box_cols <= 0)
        return MX_EINVAL;
    double bw = MX_MIN((double)box_cols * cell_w, (double)MX_IMAGE_MAX_SIDE);
    double bh = box_rows > 0 ? (double)box_rows * cell_h : (double)MX_IMAGE_MAX_SIDE;
    bh = MX_MIN(bh, (double)MX_IMAGE_MAX_SIDE);
    if (max_w > 0)
        bw = MX_MIN(bw, (double)max_w);
    if (max_h > 0)
        bh = MX_MIN(bh, (double)max_h);
    /* one scale for both sides keeps the aspect ratio; rounding stays inside the box */
    double s = MX_MIN(bw / img_w, bh / img_h);
    double pw = MX_MAX(1.0, MX_MIN(floor(img_w * s + 0.5), bw));
    double ph = MX_MAX(1.0, MX_MIN(floor(img_h * s + 0.5), bh));
    lay->px_w = (int)pw;
    lay->px_h = (int)ph;
    lay->cols = (lay->px_w + cell_w - 1) / cell_w;
    lay->rows = (lay->px_h + cell_h - 1) / cell_h;
    /* half blocks: a cell is 1 x 2 block pixels, so cell_w px across and cell_h/2 px down */
    lay->blk_w = MX_MAX(1, MX_MIN(lay->cols, (int)floor(pw / cell_w + 0.5)));
    lay->blk_h = MX_MAX(1, MX_MIN(2 * lay->rows, (int)floor(ph * 2 / cell_h + 0.5)));
    return 0;
}

/* ---- xterm-256 colours ----------------------------------------------------------------------- */

static const uint8_t cube_levels[6] = {0, 95, 135, 175, 215, 255};

void mx_image_256_to_rgb(int i, uint8_t rgb[3]) {
    if (i >= 232) {
        rgb[0] = rgb[1] = rgb[2] = (uint8_t)(8 + 10 * (i - 232));
    } else {
        i = MX_MAX(i, 16) - 16;
        rgb[0] = cube_levels[i / 36];
        rgb[1] = cube_levels[(i / 6) % 6];
        rgb[2] = cube_levels[i % 6];
    }
}

/* Index of the nearest cube level to v. */
static int cube_index(int v) {
    int best = 0;
    for (int k = 1; k < 6; k++)
        if (abs(v - cube_levels[k]) < abs(v - cube_levels[best]))
            best = k;
    return best;
}

int mx_image_rgb_to_256(uint8_t r, uint8_t g, uint8_t b) {
    /* the nearest cube colour is the per-channel nearest level; the grey ramp is 24 candidates */
    int ci = 16 + 36 * cube_index(r) + 6 * cube_index(g) + cube_index(b);
    uint8_t c[3];
    mx_image_256_to_rgb(ci, c);
    long best_d = (long)(r - c[0]) * (r - c[0]) + (long)(g - c[1]) * (g - c[1]) +
                  (long)(b - c[2]) * (b - c[2]);
    int best = ci;
    for (int k = 0; k < 24; k++) {
        int v = 8 + 10 * k;
        long d = (long)(r - v) * (r - v) + (long)(g - v) * (g - v) + (long)(b - v) * (b - v);
        if (d < best_d) {
            best_d = d;
            best = 232 + k;
        }
    }
    return best;
}

/* ---- half blocks ----------------------------------------------------------------------------- */

int mx_image_blocks(const struct mx_image *img, bool truecolor, mx_image_write_fn write,
                    void *ud) {
    struct mx_bytes b = {0};
    int rc = 0;
    for (int y = 0; y < img->h && rc == 0; y += 2) {
        b.n = 0;
        long prev_fg = -1, prev_bg = -1; /* packed colour or 256-index last emitted */
        for (int x = 0; x < img->w && rc == 0; x++) {
            const uint8_t *t = img->rgb + ((size_t)y * img->w + x) * 3;
            const uint8_t *u = y + 1 < img->h ? t + (size_t)img->w * 3 : NULL;
            char sgr[64];
            int len = 0;
            long fg, bg;
            if (truecolor) {
                fg = (long)t[0] << 16 | t[1] << 8 | t[2];
                bg = u ? ((long)u[0] << 16 | u[1] << 8 | u[2]) : -2;
            } else {
                fg = mx_image_rgb_to_256(t[0], t[1], t[2]);
                bg = u ? mx_image_rgb_to_256(u[0], u[1], u[2]) : -2;
            }
            if (fg != prev_fg)
                len += truecolor ? snprintf(sgr + len, sizeof sgr - len, "\033[38;2;%u;%u;%um",
                                            t[0], t[1], t[2])
                                 : snprintf(sgr + len, sizeof sgr - len, "\033[38;5;%ldm", fg);
            if (bg != prev_bg) {
                if (bg == -2)
                    len += snprintf(sgr + len, sizeof sgr - len, "\033[49m");
                else if (truecolor)
                    len += snprintf(sgr + len, sizeof sgr - len, "\033[48;2;%u;%u;%um", u[0],
                                    u[1], u[2]);
                else
                    len += snprintf(sgr + len, sizeof sgr - len, "\033[48;5;%ldm", bg);
            }
            prev_fg = fg;
            prev_bg = bg;
            rc = mx_bytes_add(&b, sgr, (size_t)len);
            if (rc == 0)
                rc = mx_bytes_add(&b, "\xe2\x96\x80", 3); /* U+2580 UPPER HALF BLOCK */
        }
        if (rc == 0)
            rc = mx_bytes_add(&b, "\033[0m\n", 5);
        if (rc == 0)
            rc = write(ud, b.p, b.n);
    }
    mx_bytes_free(&b);
    return rc;
}

/* ---- tmux passthrough ------------------------------------------------------------------------ */

int mx_tmux_wrap_begin(struct mx_tmux_wrap *t) {
    return t->write(t->ud, "\033Ptmux;", 7);
}

int mx_tmux_wrap_chunk(struct mx_tmux_wrap *t, const char *buf, size_t n) {
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\033')
            continue;
        /* the ESC is written twice: once with the run before it, once alone */
        int rc = t->write(t->ud, buf + start, i - start + 1);
        if (rc == 0)
            rc = t->write(t->ud, "\033", 1);
        if (rc < 0)
            return rc;
        start = i + 1;
    }
    return start < n ? t->write(t->ud, buf + start, n - start) : 0;
}

int mx_tmux_wrap_end(struct mx_tmux_wrap *t) {
    return t->write(t->ud, "\033\\", 2);
}

/* ---- sixel ----------------------------------------------------------------------------------- */

#ifdef HAVE_SIXEL
/* Where libsixel's bytes go; libsixel ignores the callback's result, so the first error is kept
 * and later bytes are dropped. */
struct sixel_sink {
    mx_image_write_fn write;
    void *ud;
    bool wrap;
    struct mx_tmux_wrap tw;
    int rc;
};

/* libsixel's write callback: forwards to the caller's sink (wrapped for tmux if asked). */
static int sixel_write_cb(char *data, int size, void *priv) {
    struct sixel_sink *s = priv;
    if (s->rc < 0 || size <= 0)
        return 0;
    s->rc = s->wrap ? mx_tmux_wrap_chunk(&s->tw, data, (size_t)size)
                    : s->write(s->ud, data, (size_t)size);
    return 0;
}
#endif

int mx_image_sixel(const struct mx_image *img, int n_colours, bool tmux_wrap,
                   mx_image_write_fn write, void *ud, struct mx_err *err) {
#ifdef HAVE_SIXEL
    if (!img || !img->rgb || img->w <= 0 || img->h <= 0)
        return mx_err_set(err, MX_EINVAL, "sixel: empty image");
    n_colours = MX_MAX(2, MX_MIN(n_colours, SIXEL_PALETTE_MAX));
    struct sixel_sink sink = {write, ud, tmux_wrap, {write, ud}, 0};
    sixel_output_t *output = NULL;
    sixel_dither_t *dither = NULL;
    size_t n = (size_t)img->w * img->h * 3;
    /* libsixel takes non-const pixels; it gets its own copy */
    unsigned char *pixels = malloc(n);
    int rc = MX_ENOMEM;
    if (!pixels)
        goto fail;
    memcpy(pixels, img->rgb, n);
    if (SIXEL_FAILED(sixel_output_new(&output, sixel_write_cb, &sink, NULL)))
        goto fail;
    sixel_output_set_8bit_availability(output, 0); /* 7-bit ESC P ... ESC \ for every terminal */
    if (SIXEL_FAILED(sixel_dither_new(&dither, n_colours, NULL)))
        goto fail;
    SIXELSTATUS st = sixel_dither_initialize(dither, pixels, img->w, img->h,
                                             SIXEL_PIXELFORMAT_RGB888, SIXEL_LARGE_AUTO,
                                             SIXEL_REP_AUTO, SIXEL_QUALITY_AUTO);
    if (SIXEL_FAILED(st)) {
        rc = mx_err_set(err, MX_EIO, "sixel: palette: %s", sixel_helper_format_error(st));
        goto fail;
    }
    /* Atkinson: on a 2-D colour ramp libsixel's Floyd-Steinberg (and "auto", which picked it)
     * left single pixels 114 levels off at the image's edge; Atkinson stayed within 31 with the
     * same regional error (tests/test_graphics.c measures it) */
    sixel_dither_set_diffusion_type(dither, SIXEL_DIFFUSE_ATKINSON);
    if (tmux_wrap && (sink.rc = mx_tmux_wrap_begin(&sink.tw)) < 0) {
        rc = sink.rc;
        goto fail;
    }
    st = sixel_encode(pixels, img->w, img->h, 3, dither, output);
    if (SIXEL_FAILED(st)) {
        rc = mx_err_set(err, MX_EIO, "sixel: encode: %s", sixel_helper_format_error(st));
        goto fail;
    }
    if (tmux_wrap && sink.rc == 0)
        sink.rc = mx_tmux_wrap_end(&sink.tw);
    rc = sink.rc;
    if (rc < 0)
        mx_err_set(err, rc, "sixel: write failed");
fail:
    if (rc == MX_ENOMEM)
        mx_err_set(err, rc, "sixel: out of memory (%dx%d)", img->w, img->h);
    sixel_dither_unref(dither);
    sixel_output_unref(output);
    free(pixels);
    return rc;
#else
    (void)img; (void)n_colours; (void)tmux_wrap; (void)write; (void)ud;
    return mx_err_set(err, MX_EUNSUP, "sixel: this build has no libsixel (--graphics blocks)");
#endif
}
