/* images.c - images in cells: an image in the conversation is a fixed block of rows under its
 * message, as a sixel (encoded once per size and cached with the message) or as half blocks drawn
 * into curses cells (two pixels per cell, colour pairs lent from after the theme's).
 *
 * Sixels live outside curses' model of the screen: the views record where they go (a->frame) and
 * draw.c sends them after refresh() through mx_app_emit_sixel, inside tmux wrapped in one
 * passthrough (../shared/TERMINALS.md has the pitfalls).
 */
#include "tui/images.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tui/graphics.h"
#include "tui/status.h"


void mx_app_img_bg(const struct app *a, unsigned char bg[3]) {
    const struct mx_colour *c = &a->style.theme.style[MX_ROLE_normal].bg;
    if (a->style.n_colours && c->kind == MX_COLOUR_RGB) {
        bg[0] = c->r;
        bg[1] = c->g;
        bg[2] = c->b;
    } else {
        memcpy(bg, a->img.gfx.bg, 3);
    }
}

int mx_app_img_load(const struct app *a, const char *path, struct mx_image *img,
                    struct mx_err *err) {
    unsigned char bg[3];
    mx_app_img_bg(a, bg);
    return mx_image_load_over(path, bg, img, err);
}

void mx_app_msg_img_drop(struct msg *m) {
    mx_image_free(&m->img);
    mx_image_free(&m->blk);
    free(m->sixel);
    m->sixel = NULL;
    m->sixel_len = 0;
    m->sx_cols = m->sx_rows = 0;
    m->img_failed = false;
}

void mx_app_img_forget(struct app *a) {
    for (int i = 0; i < a->conv.n_msgs; i++)
        mx_app_msg_img_drop(&a->conv.msgs[i]);
    a->frame.full_repaint = true;
}

/* Loads a message's image once; a file that cannot be read shows as its caption only. */
void mx_app_img_ensure(struct app *a, struct msg *m) {
    if (!m->image || m->img.w || m->img_failed)
        return;
    struct mx_err err = {0};
    int rc = mx_app_img_load(a, m->image, &m->img, &err);
    if (rc != 0) {
        m->img_failed = true;
        mx_app_notice_detail(a, true, mx_err_msg(&err, rc), "an image cannot be shown (%s): %s",
                             mx_strerror(rc), m->image);
    }
}

/* Rows the image of m takes at `width` columns (0: no image, or graphics off). */
int mx_app_img_rows(struct app *a, struct msg *m, int width, struct mx_image_layout *lay) {
    if (!m->image || a->img.gfx.mode == MX_GFX_NONE)
        return 0;
    mx_app_img_ensure(a, m);
    if (!m->img.w)
        return 0;
    struct mx_image_layout l;
    int max_w = a->img.gfx.mode == MX_GFX_SIXEL ? a->img.gfx.max_w : 0;
    int max_h = a->img.gfx.mode == MX_GFX_SIXEL ? a->img.gfx.max_h : 0;
    if (mx_image_fit(m->img.w, m->img.h, a->img.gfx.cell_w, a->img.gfx.cell_h, width, IMAGE_ROWS,
                     max_w, max_h, &l) != 0)
        return 0;
    if (lay)
        *lay = l;
    return l.rows;
}

/* A colour pair for a half-block cell (upper pixel fg, lower pixel bg), allocated on demand
 * from the pairs after the theme's. */
static short block_pair(struct app *a, const uint8_t *top, const uint8_t *bot) {
    int fg, bg;
    if (a->style.n_colours >= 256) {
        fg = mx_image_rgb_to_256(top[0], top[1], top[2]);
        bg = mx_image_rgb_to_256(bot[0], bot[1], bot[2]);
    } else {
        struct mx_colour c1 = {.kind = MX_COLOUR_RGB, .r = top[0], .g = top[1], .b = top[2]};
        struct mx_colour c2 = {.kind = MX_COLOUR_RGB, .r = bot[0], .g = bot[1], .b = bot[2]};
        fg = mx_colour_reduce(&c1, a->style.n_colours);
        bg = mx_colour_reduce(&c2, a->style.n_colours);
    }
    for (int i = 0; i < a->img.n_pairs; i++)
        if (a->img.pairs[i].fg == fg && a->img.pairs[i].bg == bg)
            return (short)(MX_ROLE_COUNT + 1 + i);
    int cap = COLOR_PAIRS - MX_ROLE_COUNT - 1;
    if (cap > 8192)
        cap = 8192;
    if (cap <= 0)
        return 0;
    if (!a->img.pairs && !(a->img.pairs = calloc((size_t)cap, sizeof *a->img.pairs)))
        return 0;
    if (a->img.n_pairs == cap)
        a->img.n_pairs = 0; /* recycle: this frame repaints every image cell anyway */
    a->img.pairs[a->img.n_pairs].fg = fg;
    a->img.pairs[a->img.n_pairs].bg = bg;
    short pair = (short)(MX_ROLE_COUNT + 1 + a->img.n_pairs++);
    init_pair(pair, (short)fg, (short)bg);
    return pair;
}

/* Draws row r of a half-block image (blk: one pixel column per cell, two pixel rows per cell)
 * at (y, x), at most width cells. */
static void put_block_row(struct app *a, const struct mx_image *blk, int r, int y, int x,
                          int width) {
    static const uint8_t black[3] = {0, 0, 0};
    for (int c = 0; c < blk->w && c < width; c++) {
        const uint8_t *top = blk->rgb + ((size_t)(2 * r) * (size_t)blk->w + (size_t)c) * 3;
        const uint8_t *bot =
            2 * r + 1 < blk->h ? blk->rgb + ((size_t)(2 * r + 1) * (size_t)blk->w + (size_t)c) * 3
                               : black;
        cchar_t cc;
        wchar_t wc[2] = {0x2580, 0}; /* ▀ */
        setcchar(&cc, wc, A_NORMAL, block_pair(a, top, bot), NULL);
        mvadd_wch(y, x + c, &cc);
    }
}

/* Draws row r of m's image as half blocks (two pixels per cell) at (y, x0). */
void mx_app_draw_block_row(struct app *a, struct msg *m, int r, int y, int x0, int width) {
    struct mx_image_layout lay;
    if (!mx_app_img_rows(a, m, width, &lay) || !a->style.n_colours)
        return;
    /* scaled once per size and kept with the message, not once per row and frame */
    if (m->blk.w != lay.blk_w || m->blk.h != lay.blk_h) {
        mx_image_free(&m->blk);
        if (mx_image_scale(&m->img, lay.blk_w, lay.blk_h, &m->blk) != 0)
            return;
    }
    put_block_row(a, &m->blk, r, y, x0, width);
}

/* Where this pane sits in the tmux window: passthrough bytes reach the outer terminal unchanged,
 * so the cursor move that goes with them must be in the outer terminal's coordinates. */
static void tmux_pane_origin(int *top, int *left) {
    *top = *left = 0;
    FILE *p = popen("tmux display -p '#{pane_top} #{pane_left}' 2>/dev/null", "r");
    if (!p)
        return;
    if (fscanf(p, "%d %d", top, left) != 2)
        *top = *left = 0;
    pclose(p);
}

/* Writes "save cursor, move to (y, x), bytes, restore cursor". Inside tmux all of it goes through
 * one passthrough, so it is the outer terminal's cursor that moves and tmux's own model of the
 * pane is untouched; elsewhere the cursor is saved and restored around the image so ncurses'
 * idea of the cursor stays true (../shared/TERMINALS.md). */
void mx_app_emit_at(struct app *a, int y, int x, const char *bytes, size_t n) {
    char pre[48];
    int k;
    if (a->img.gfx.tmux_wrap) {
        static int top = -1, left;
        if (top < 0 || a->frame.full_repaint)
            tmux_pane_origin(&top, &left);
        k = snprintf(pre, sizeof pre, "\0337\033[%d;%dH", top + y + 1, left + x + 1);
        struct mx_bytes b = {0};
        struct mx_tmux_wrap w = {.write = mx_bytes_write, .ud = &b};
        if (mx_tmux_wrap_begin(&w) == 0 && mx_tmux_wrap_chunk(&w, pre, (size_t)k) == 0 &&
            mx_tmux_wrap_chunk(&w, bytes, n) == 0 && mx_tmux_wrap_chunk(&w, "\0338", 2) == 0 &&
            mx_tmux_wrap_end(&w) == 0)
            fwrite(b.p, 1, b.n, stdout);
        mx_bytes_free(&b);
        return;
    }
    k = snprintf(pre, sizeof pre, "\0337\033[%d;%dH", y + 1, x + 1);
    fwrite(pre, 1, (size_t)k, stdout);
    fwrite(bytes, 1, n, stdout);
    fputs("\0338", stdout);
}

/* Encodes img as a bare sixel (the tmux wrapping is emit_at's) to fit box_cols x box_rows. */
int mx_app_encode_sixel(struct app *a, const struct mx_image *img, int box_cols, int box_rows,
                        struct mx_bytes *b, struct mx_err *err) {
    struct mx_gfx g = a->img.gfx;
    g.tmux_wrap = false;
    return mx_gfx_render(&g, img, box_cols, box_rows, mx_bytes_write, b, NULL, err);
}

/* Sends the sixel of m at cell (y, x), after curses has drawn the frame. */
void mx_app_emit_sixel(struct app *a, struct msg *m, int y, int x, int box_cols, int box_rows) {
    struct mx_image_layout lay;
    mx_app_img_ensure(a, m);
    if (!m->img.w ||
        mx_image_fit(m->img.w, m->img.h, a->img.gfx.cell_w, a->img.gfx.cell_h, box_cols, box_rows,
                     a->img.gfx.max_w, a->img.gfx.max_h, &lay) != 0)
        return;
    if (!m->sixel || m->sx_cols != lay.cols || m->sx_rows != lay.rows) {
        struct mx_bytes b = {0};
        struct mx_err err = {0};
        free(m->sixel);
        m->sixel = NULL;
        if (mx_app_encode_sixel(a, &m->img, box_cols, box_rows, &b, &err) != 0) {
            mx_bytes_free(&b);
            mx_app_notice_detail(a, true, err.msg, "an image cannot be drawn as sixel: %s",
                                 m->image);
            return;
        }
        m->sixel = b.p;
        m->sixel_len = b.n;
        m->sx_cols = lay.cols;
        m->sx_rows = lay.rows;
    }
    mx_app_emit_at(a, y, x, m->sixel, m->sixel_len);
}

/* Draws img as half blocks fitted into box_cols x box_rows cells at (y, x). */
void mx_app_draw_blocks_box(struct app *a, const struct mx_image *img, int y, int x, int box_cols,
                            int box_rows) {
    struct mx_image_layout lay;
    struct mx_image blk;
    if (!a->style.n_colours ||
        mx_image_fit(img->w, img->h, a->img.gfx.cell_w, a->img.gfx.cell_h, box_cols, box_rows, 0, 0,
                     &lay) != 0 ||
        mx_image_scale(img, lay.blk_w, lay.blk_h, &blk) != 0)
        return;
    for (int r = 0; r < lay.rows; r++)
        put_block_row(a, &blk, r, y + r, x, box_cols);
    mx_image_free(&blk);
}
