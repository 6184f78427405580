/* test_graphics.c - terminal graphics: query parsers on answers recorded from real terminals
 * (../shared/TERMINALS.md: xterm -ti vt340, xterm's default ID 420, mlterm, tmux 3.3a), the
 * detection decision, image loading (good and corrupt files in tests/data), resampling against a
 * brute-force area average, sixel encoding checked by decoding it back with libsixel's decoder,
 * and half blocks parsed back to colours per cell. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tests/mx_test.h"
#include "tui/graphics.h"
#include "tui/image_term.h"
#include "tui/termquery.h"

#ifdef HAVE_SIXEL
#undef PACKAGE_VERSION
#include <sixel.h>
#endif

/* DA1 answers as recorded */
#define DA1_XTERM_VT340 "\033[?63;1;2;4;6;9;15;16;22;28c"
#define DA1_XTERM_420   "\033[?64;1;2;6;9;15;16;17;18;21;22;28c"
#define DA1_MLTERM      "\033[?63;1;2;3;4;6;7;15;18;22;29c"
#define DA1_TMUX        "\033[?1;2c"

static bool absorb(struct mx_gfx_answers *a, enum mx_gfx_query q, const char *reply) {
    return mx_gfx_absorb(a, q, reply, strlen(reply));
}

/* ---- parsers and decision -------------------------------------------------------------------- */

static void test_xterm_vt340_sixel(void **state) {
    (void)state;
    struct mx_gfx_answers a = {.tty = true, .colours = 256, .ws_rows = 40, .ws_cols = 120,
                               .ws_xpix = 964, .ws_ypix = 684};
    assert_true(absorb(&a, MX_GFXQ_DA1, DA1_XTERM_VT340));
    assert_true(absorb(&a, MX_GFXQ_REGS, "\033[?1;0;1024S" DA1_XTERM_VT340));
    assert_true(absorb(&a, MX_GFXQ_GEOM, "\033[?2;0;960;680S" DA1_XTERM_VT340));
    /* window ops are off in xterm by default: only DA1 comes back */
    assert_false(absorb(&a, MX_GFXQ_CELL16, DA1_XTERM_VT340));
    assert_false(absorb(&a, MX_GFXQ_WIN14, DA1_XTERM_VT340));
    assert_int_equal(a.regs, 1024);
    assert_int_equal(a.geom_w, 960);
    assert_int_equal(a.geom_h, 680);
    struct mx_gfx g;
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_int_equal(g.mode, MX_GFX_SIXEL);
    assert_false(g.tmux_wrap);
    assert_int_equal(g.colour_regs, 256); /* libsixel's palette holds at most 256 */
    assert_int_equal(g.cell_w, 8);        /* 964 / 120 with xterm's 2 px border */
    assert_int_equal(g.cell_h, 17);
    assert_true(g.cell_known);
    assert_int_equal(g.max_w, 960);
    assert_int_equal(g.max_h, 680);
    assert_false(g.truecolor);
}

static void test_xterm_420_no_sixel(void **state) {
    (void)state;
    struct mx_gfx_answers a = {.tty = true, .colours = 16777216, .ws_rows = 24, .ws_cols = 80};
    assert_true(absorb(&a, MX_GFXQ_DA1, DA1_XTERM_420));
    assert_false(a.da1_sixel);
    /* XTSMGRAPHICS answers status 3 (failure) */
    assert_false(absorb(&a, MX_GFXQ_REGS, "\033[?1;3;0S" DA1_XTERM_420));
    assert_false(absorb(&a, MX_GFXQ_GEOM, "\033[?2;3;0S" DA1_XTERM_420));
    assert_true(a.regs_failed);
    assert_true(a.geom_failed);
    assert_int_equal(a.regs, 0);
    struct mx_gfx g;
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_int_equal(g.mode, MX_GFX_BLOCKS);
    assert_non_null(strstr(g.why, "no sixel"));
    assert_true(g.truecolor);
    assert_false(g.cell_known); /* no pixels anywhere: guessed */
    assert_int_equal(g.cell_w, 8);
    assert_int_equal(g.cell_h, 16);
}

static void test_mlterm_broken_xtsmgraphics(void **state) {
    (void)state;
    struct mx_gfx_answers a = {.tty = true, .colours = 256};
    assert_true(absorb(&a, MX_GFXQ_DA1, DA1_MLTERM));
    assert_true(a.da1_sixel);
    /* mlterm answers the geometry query about item 1 with status 3: not a geometry */
    assert_false(absorb(&a, MX_GFXQ_GEOM, "\033[?1;3;0S" DA1_MLTERM));
    assert_int_equal(a.geom_w, 0);
    assert_false(a.geom_failed);
    assert_true(absorb(&a, MX_GFXQ_REGS, "\033[?1;0;1024S" DA1_MLTERM));
    assert_true(absorb(&a, MX_GFXQ_CELL16, "\033[6;19;10t" DA1_MLTERM));
    assert_true(absorb(&a, MX_GFXQ_WIN14, "\033[4;760;1200t" DA1_MLTERM));
    assert_true(absorb(&a, MX_GFXQ_TEXT18, "\033[8;40;120t" DA1_MLTERM));
    assert_int_equal(a.cell16_w, 10);
    assert_int_equal(a.cell16_h, 19);
    assert_int_equal(a.win14_w, 1200);
    assert_int_equal(a.win14_h, 760);
    struct mx_gfx g;
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_int_equal(g.mode, MX_GFX_SIXEL);
    assert_int_equal(g.rows, 40);
    assert_int_equal(g.cols, 120);
    assert_int_equal(g.cell_w, 10);
    assert_int_equal(g.cell_h, 19);
    assert_string_equal(g.cell_src, "CSI 16 t");
    /* geometry unknown: the text area bounds the image */
    assert_int_equal(g.max_w, 1200);
    assert_int_equal(g.max_h, 760);
    /* without 16 t, 14 t divided by the text area gives the same cell */
    a.cell16_w = a.cell16_h = 0;
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_int_equal(g.cell_w, 10);
    assert_int_equal(g.cell_h, 19);
    assert_string_equal(g.cell_src, "CSI 14 t / text area");
}

static void test_tmux_33a(void **state) {
    (void)state;
    struct mx_gfx_answers a = {.tty = true, .tmux = true, .colours = 256, .tmux_passthrough = 0};
    assert_true(absorb(&a, MX_GFXQ_DA1, DA1_TMUX));
    assert_false(a.da1_sixel);
    assert_false(absorb(&a, MX_GFXQ_REGS, DA1_TMUX));
    assert_false(absorb(&a, MX_GFXQ_GEOM, DA1_TMUX));
    /* tmux 3.3a answers 18 t as cols;rows for its 120x39 pane */
    assert_true(absorb(&a, MX_GFXQ_TEXT18, "\033[8;120;39t" DA1_TMUX));
    struct mx_gfx g;
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_int_equal(g.rows, 39);
    assert_int_equal(g.cols, 120);
    assert_int_equal(g.mode, MX_GFX_BLOCKS);
    assert_non_null(strstr(g.why, "allow-passthrough off"));
    /* TIOCGWINSZ wins over 18 t and gives tmux's cell size */
    a.ws_rows = 39;
    a.ws_cols = 120;
    a.ws_xpix = 960;
    a.ws_ypix = 663;
    a.tmux_passthrough = 1;
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_int_equal(g.mode, MX_GFX_SIXEL);
    assert_true(g.tmux_wrap);
    assert_int_equal(g.cell_w, 8);
    assert_int_equal(g.cell_h, 17);
    assert_non_null(strstr(g.why, "passthrough"));
    a.tmux_passthrough = -1;
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_int_equal(g.mode, MX_GFX_BLOCKS);
    assert_non_null(strstr(g.why, "could not be read"));
    /* tmux >= 3.4 built with sixel answers attribute 4 itself: no passthrough needed */
    a.tmux_passthrough = 0;
    assert_true(absorb(&a, MX_GFXQ_DA1, "\033[?62;4;22c"));
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_int_equal(g.mode, MX_GFX_SIXEL);
    assert_false(g.tmux_wrap);
}

/* Not measured here (no foot or WezTerm on this machine): foot's DA1 is the constant in its
 * csi.c; WezTerm's answers are those a public test bench recorded from WezTerm 20240203. */
static void test_foot_and_wezterm(void **state) {
    (void)state;
    struct mx_gfx_answers a = {.tty = true, .colours = 16777216};
    assert_true(absorb(&a, MX_GFXQ_DA1, "\033[?62;4;22c"));
    assert_true(a.da1_sixel);
    struct mx_gfx g;
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_int_equal(g.mode, MX_GFX_SIXEL);

    struct mx_gfx_answers w = {.tty = true, .colours = 16777216, .ws_rows = 30, .ws_cols = 100};
    assert_true(absorb(&w, MX_GFXQ_DA1, "\033[?65;4;6;18;22c"));
    assert_true(absorb(&w, MX_GFXQ_REGS, "\033[?1;0;65536S\033[?65;4;6;18;22c"));
    assert_true(absorb(&w, MX_GFXQ_GEOM, "\033[?2;0;1000;570S\033[?65;4;6;18;22c"));
    assert_true(absorb(&w, MX_GFXQ_CELL16, "\033[6;19;10t\033[?65;4;6;18;22c"));
    assert_int_equal(w.regs, 65536);
    mx_gfx_decide(MX_GFX_AUTO, &w, &g);
    assert_int_equal(g.mode, MX_GFX_SIXEL);
    assert_int_equal(g.colour_regs, 256);
    assert_int_equal(g.cell_w, 10);
    assert_int_equal(g.cell_h, 19);
    assert_int_equal(g.max_w, 1000);
    assert_int_equal(g.max_h, 570);
    assert_true(g.truecolor);
}

/* OSC 11 (background colour): xterm answers `rgb:RRRR/GGGG/BBBB` ended like the query (ST or
 * BEL); 1 to 4 hex digits a component are allowed by XParseColor. */
static void test_background_colour(void **state) {
    (void)state;
    struct mx_gfx_answers a = {.tty = true};
    assert_true(absorb(&a, MX_GFXQ_BG, "\033]11;rgb:ffff/ffff/ffff\033\\" DA1_XTERM_VT340));
    assert_true(a.bg_known);
    assert_int_equal(a.bg[0], 255);
    assert_int_equal(a.bg[2], 255);
    assert_true(absorb(&a, MX_GFXQ_BG, "\033]11;rgb:1e1e/2020/0000\a"));
    assert_int_equal(a.bg[0], 30);
    assert_int_equal(a.bg[1], 32);
    assert_int_equal(a.bg[2], 0);
    assert_true(absorb(&a, MX_GFXQ_BG, "\033]11;rgb:ff/80/0\a"));
    assert_int_equal(a.bg[1], 128);
    assert_int_equal(a.bg[2], 0);
    assert_true(absorb(&a, MX_GFXQ_BG, "\033]11;rgb:f/8/0\033\\"));
    assert_int_equal(a.bg[1], 136); /* 8/15 of 255 */
    struct mx_gfx_answers b = {.tty = true};
    assert_false(absorb(&b, MX_GFXQ_BG, DA1_TMUX));                          /* no answer */
    assert_false(absorb(&b, MX_GFXQ_BG, "\033]11;rgb:ffff/ffff\033\\"));    /* two parts */
    assert_false(absorb(&b, MX_GFXQ_BG, "\033]11;rgb:ffff/ffff/ffff"));       /* unterminated */
    assert_false(absorb(&b, MX_GFXQ_BG, "\033]11;rgb:fffff/0/0\a"));         /* 5 digits */
    assert_false(absorb(&b, MX_GFXQ_BG, "\033]10;rgb:ffff/ffff/ffff\a"));    /* foreground */
    assert_false(b.bg_known);
    struct mx_gfx g;
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_true(g.bg_known);
    assert_int_equal(g.bg[0], 255);

    /* a half-transparent quadrant composited over it */
    char path[1024];
    const char *src = getenv("MX_SRCDIR");
    snprintf(path, sizeof path, "%s/tests/data/quadrants_rgba.png", src ? src : ".");
    static const uint8_t white[3] = {255, 255, 255};
    struct mx_image img;
    assert_int_equal(mx_image_load_over(path, white, &img, NULL), 0);
    const uint8_t *br = img.rgb + ((size_t)40 * img.w + 50) * 3;
    assert_int_equal(br[0], 247); /* (240 * 128 + 255 * 127 + 127) / 255 */
    assert_int_equal(br[1], 237);
    assert_int_equal(br[2], 147);
    const uint8_t *tl = img.rgb + ((size_t)5 * img.w + 5) * 3; /* opaque: unchanged */
    assert_int_equal(tl[0], 220);
    assert_int_equal(tl[1], 40);
    mx_image_free(&img);
}

static void test_no_reply_garbage_partial(void **state) {
    (void)state;
    struct mx_gfx_answers a = {.tty = true, .colours = 256};
    const struct mx_gfx_answers zero = a;
    /* no reply at all (mx_tq_ask timed out: nothing collected) */
    assert_false(absorb(&a, MX_GFXQ_DA1, ""));
    assert_false(absorb(&a, MX_GFXQ_GEOM, ""));
    /* partial answers */
    assert_false(absorb(&a, MX_GFXQ_GEOM, "\033[?2;0;960"));
    assert_false(absorb(&a, MX_GFXQ_CELL16, "\033[6;19;"));
    assert_false(absorb(&a, MX_GFXQ_DA1, "\033[?63;1;2;4"));
    /* garbage and absurd numbers */
    assert_false(absorb(&a, MX_GFXQ_GEOM, "\033[?2;0;-5;7S"));
    assert_false(absorb(&a, MX_GFXQ_GEOM, "\033[?2;0;99999999999999;7S"));
    assert_false(absorb(&a, MX_GFXQ_REGS, "\033[?1;0;0S"));
    assert_false(absorb(&a, MX_GFXQ_CELL16, "\033[6;0;0t"));
    assert_false(absorb(&a, MX_GFXQ_CELL16, "\033[6;5000;10t"));
    assert_false(absorb(&a, MX_GFXQ_CELL16, "\033[4;760;1200t")); /* another op's answer */
    assert_false(absorb(&a, MX_GFXQ_WIN14, "hello \033[x \033[?"));
    assert_memory_equal(&a, &zero, sizeof a);
    struct mx_gfx g;
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_int_equal(g.mode, MX_GFX_BLOCKS);
    assert_non_null(strstr(g.why, "did not answer"));
    /* random bytes from the answers' alphabet: parsers stay in bounds and values in range */
    static const char alphabet[] = "\033[?;0123456789Sct]rgb:/f\a\\";
    uint64_t seed = 42;
    for (int it = 0; it < 20000; it++) {
        char buf[48];
        size_t n = mx_test_rand(&seed) % sizeof buf;
        for (size_t i = 0; i < n; i++)
            buf[i] = alphabet[mx_test_rand(&seed) % (sizeof alphabet - 1)];
        struct mx_gfx_answers r = {0};
        for (int q = MX_GFXQ_DA1; q <= MX_GFXQ_BG; q++)
            mx_gfx_absorb(&r, (enum mx_gfx_query)q, buf, n);
        assert_true(r.regs >= 0 && r.regs <= 1000000);
        assert_true(r.geom_w >= 0 && r.geom_w <= 65535 && r.geom_h >= 0 && r.geom_h <= 65535);
        assert_true(r.cell16_w >= 0 && r.cell16_w <= 512);
    }
}

static void test_not_a_tty_and_overrides(void **state) {
    (void)state;
    struct mx_gfx_answers a = {.tty = false, .colours = 8};
    struct mx_gfx g;
    mx_gfx_decide(MX_GFX_AUTO, &a, &g);
    assert_int_equal(g.mode, MX_GFX_BLOCKS);
    assert_true(g.truecolor);
    assert_non_null(strstr(g.why, "no queries"));
    mx_gfx_decide(MX_GFX_SIXEL, &a, &g);
    assert_int_equal(g.mode, MX_GFX_SIXEL);
    assert_int_equal(g.max_w, 4096); /* a pipe has no screen to fit: a fixed bound */
    assert_int_equal(g.max_h, 4096);
    /* a terminal without colours and without sixel: text only */
    struct mx_gfx_answers nc = {.tty = true, .colours = 0};
    absorb(&nc, MX_GFXQ_DA1, DA1_TMUX);
    mx_gfx_decide(MX_GFX_AUTO, &nc, &g);
    assert_int_equal(g.mode, MX_GFX_NONE);
    enum mx_gfx_mode m;
    assert_int_equal(mx_gfx_mode_parse("blocks", &m), 0);
    assert_int_equal(m, MX_GFX_BLOCKS);
    assert_int_equal(mx_gfx_mode_parse("Sixel", &m), MX_EINVAL);
    assert_int_equal(mx_gfx_mode_parse(NULL, &m), MX_EINVAL);
    assert_string_equal(mx_gfx_mode_name(MX_GFX_NONE), "none");

    /* mx_gfx_detect: MIXEL_GRAPHICS overrides auto, --graphics overrides MIXEL_GRAPHICS. With
     * these modes no query is sent even when the test runs on a terminal. */
    setenv("MIXEL_GRAPHICS", "none", 1);
    mx_gfx_detect(MX_GFX_AUTO, 50, &g, NULL);
    assert_int_equal(g.mode, MX_GFX_NONE);
    assert_non_null(strstr(g.why, "MIXEL_GRAPHICS"));
    mx_gfx_detect(MX_GFX_BLOCKS, 50, &g, NULL);
    assert_int_equal(g.mode, MX_GFX_BLOCKS);
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) {
        setenv("MIXEL_GRAPHICS", "bogus", 1);
        struct mx_gfx_answers raw;
        mx_gfx_detect(MX_GFX_AUTO, 50, &g, &raw);
        assert_false(raw.tty);
        assert_false(raw.da1_valid);
        assert_int_equal(g.mode, MX_GFX_BLOCKS);
        assert_non_null(strstr(g.why, "MIXEL_GRAPHICS ignored"));
    }
    unsetenv("MIXEL_GRAPHICS");
}

/* ---- tmux passthrough ------------------------------------------------------------------------ */

struct sink {
    char *p;
    size_t n, cap;
};

static int sink_write(void *ud, const char *buf, size_t n) {
    struct sink *s = ud;
    if (s->n + n + 1 > s->cap) {
        s->cap = (s->n + n + 1) * 2;
        s->p = realloc(s->p, s->cap);
        assert_non_null(s->p);
    }
    memcpy(s->p + s->n, buf, n);
    s->n += n;
    s->p[s->n] = '\0';
    return 0;
}

static void test_tmux_wrap_bytes(void **state) {
    (void)state;
    struct sink s = {0};
    struct mx_tmux_wrap t = {sink_write, &s};
    assert_int_equal(mx_tmux_wrap_begin(&t), 0);
    assert_int_equal(mx_tmux_wrap_chunk(&t, "\033Pq#0", 5), 0);
    assert_int_equal(mx_tmux_wrap_chunk(&t, "~~\033", 3), 0);
    assert_int_equal(mx_tmux_wrap_chunk(&t, "\\", 1), 0);
    assert_int_equal(mx_tmux_wrap_end(&t), 0);
    assert_string_equal(s.p, "\033Ptmux;\033\033Pq#0~~\033\033\\\033\\");
    free(s.p);
}

/* ---- layout and scaling ---------------------------------------------------------------------- */

static void test_fit(void **state) {
    (void)state;
    struct mx_image_layout l;
    /* pipe default: 80 columns of an 8x16 guess, unlimited height, 4:3 image */
    assert_int_equal(mx_image_fit(64, 48, 8, 16, 80, 0, 0, 0, &l), 0);
    assert_int_equal(l.px_w, 640);
    assert_int_equal(l.px_h, 480);
    assert_int_equal(l.cols, 80);
    assert_int_equal(l.rows, 30);
    assert_int_equal(l.blk_w, 80);
    assert_int_equal(l.blk_h, 60);
    /* xterm 120x39 box, 8x17 cells, sixel capped at 960x680: a square is bound by the height */
    assert_int_equal(mx_image_fit(1000, 1000, 8, 17, 120, 39, 960, 680, &l), 0);
    assert_int_equal(l.px_w, 663);
    assert_int_equal(l.px_h, 663);
    assert_int_equal(l.cols, 83);
    assert_int_equal(l.rows, 39);
    assert_true(l.blk_w <= l.cols && l.blk_h <= 2 * l.rows);
    assert_true(abs(l.blk_w * 8 - l.blk_h * 17 / 2) <= 8); /* same aspect within a block */
    /* a very wide image keeps at least one pixel of height */
    assert_int_equal(mx_image_fit(16000, 1, 8, 16, 10, 5, 0, 0, &l), 0);
    assert_int_equal(l.px_h, 1);
    assert_int_equal(l.blk_h, 1);
    /* a very tall image with no height limit stops at the side cap with its aspect kept */
    assert_int_equal(mx_image_fit(100, 16000, 8, 16, 80, 0, 0, 0, &l), 0);
    assert_int_equal(l.px_h, MX_IMAGE_MAX_SIDE);
    assert_int_equal(l.px_w, 102); /* 100 * 16384 / 16000 */
    assert_int_equal(mx_image_fit(0, 10, 8, 16, 10, 5, 0, 0, &l), MX_EINVAL);
}

static void test_scale_area_average(void **state) {
    (void)state;
    /* fractional coverage: a row 0, 90, 180 shrunk to 2: (0 + 90/2)/1.5 and (90/2 + 180)/1.5 */
    uint8_t px[9] = {0, 0, 0, 90, 90, 90, 180, 180, 180};
    struct mx_image src = {3, 1, px}, out;
    assert_int_equal(mx_image_scale(&src, 2, 1, &out), 0);
    assert_int_equal(out.rgb[0], 30);
    assert_int_equal(out.rgb[3], 150);
    mx_image_free(&out);
    /* growing 0, 100 to 4: bilinear between centres, clamped at the edges */
    uint8_t ramp[6] = {0, 0, 0, 100, 100, 100};
    struct mx_image r2 = {2, 1, ramp};
    assert_int_equal(mx_image_scale(&r2, 4, 1, &out), 0);
    assert_int_equal(out.rgb[0], 0);
    assert_int_equal(out.rgb[3], 25);
    assert_int_equal(out.rgb[6], 75);
    assert_int_equal(out.rgb[9], 100);
    mx_image_free(&out);
    /* random 257x131 -> 16x9 against a brute-force area average in double */
    const int sw = 257, sh = 131, dw = 16, dh = 9;
    uint8_t *big = malloc((size_t)sw * sh * 3);
    uint64_t seed = 7;
    for (int i = 0; i < sw * sh * 3; i++)
        big[i] = (uint8_t)(mx_test_rand(&seed) & 0xff);
    struct mx_image bs = {sw, sh, big};
    assert_int_equal(mx_image_scale(&bs, dw, dh, &out), 0);
    double sx = (double)sw / dw, sy = (double)sh / dh;
    for (int y = 0; y < dh; y++) {
        for (int x = 0; x < dw; x++) {
            for (int c = 0; c < 3; c++) {
                double sum = 0, area = 0;
                for (int j = 0; j < sh; j++) {
                    double oy = fmin(j + 1, (y + 1) * sy) - fmax(j, y * sy);
                    if (oy <= 0)
                        continue;
                    for (int i = 0; i < sw; i++) {
                        double ox = fmin(i + 1, (x + 1) * sx) - fmax(i, x * sx);
                        if (ox <= 0)
                            continue;
                        sum += ox * oy * big[((size_t)j * sw + i) * 3 + c];
                        area += ox * oy;
                    }
                }
                double want = sum / area;
                /* float accumulation + rounding: within one level */
                assert_true(fabs(out.rgb[((size_t)y * dw + x) * 3 + c] - want) <= 1.0);
            }
        }
    }
    mx_image_free(&out);
    free(big);
    assert_int_equal(mx_image_scale(&bs, 0, 5, &out), MX_EINVAL);
    assert_int_equal(mx_image_scale(&bs, 20000, 5, &out), MX_ERANGE);
}

/* ---- loading --------------------------------------------------------------------------------- */

static const uint8_t quad_rgb[4][3] = {{220, 40, 40}, {40, 200, 70}, {40, 70, 220},
                                       {240, 220, 40}};

static void data_path(char *buf, size_t size, const char *name) {
    const char *src = getenv("MX_SRCDIR");
    snprintf(buf, size, "%s/tests/data/%s", src ? src : ".", name);
}

/* Mean colour of the w x h rectangle at (x, y) of img, into mean[3]. */
static void region_mean(const struct mx_image *img, int x, int y, int w, int h, double mean[3]) {
    double s[3] = {0, 0, 0};
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++)
            for (int c = 0; c < 3; c++)
                s[c] += img->rgb[((size_t)j * img->w + i) * 3 + c];
    for (int c = 0; c < 3; c++)
        mean[c] = s[c] / ((double)w * h);
}

/* Checks each quadrant's interior (a margin of 4 px off the edges) against want[q] +- tol. */
static void check_quadrants(const struct mx_image *img, const uint8_t want[4][3], double tol) {
    int hw = img->w / 2, hh = img->h / 2;
    for (int q = 0; q < 4; q++) {
        double m[3];
        region_mean(img, (q & 1) * hw + 4, (q >> 1) * hh + 4, hw - 8, hh - 8, m);
        for (int c = 0; c < 3; c++) {
            if (fabs(m[c] - want[q][c]) > tol)
                fail_msg("quadrant %d channel %d: %.1f, want %d +- %.1f", q, c, m[c],
                         want[q][c], tol);
        }
    }
}

/* mx_image_save_png (/save of a JPEG under a .png name): what it writes loads back pixel for
 * pixel, and a failed write leaves no file behind. */
static void test_save_png_round_trip(void **state) {
    (void)state;
    char path[4096], out[4200];
    data_path(path, sizeof path, "quadrants.jpg");
    struct mx_image img, back;
    assert_int_equal(mx_image_load(path, &img, NULL), 0);
    snprintf(out, sizeof out, "/tmp/mx-save-png-%d.png", (int)getpid());
    assert_int_equal(mx_image_save_png(&img, out, NULL), 0);
    FILE *f = fopen(out, "rb");
    unsigned char magic[8] = {0};
    assert_non_null(f);
    assert_int_equal(fread(magic, 1, 8, f), 8);
    fclose(f);
    assert_memory_equal(magic, "\x89PNG\r\n\x1a\n", 8);
    assert_int_equal(mx_image_load(out, &back, NULL), 0);
    assert_int_equal(back.w, img.w);
    assert_int_equal(back.h, img.h);
    assert_memory_equal(back.rgb, img.rgb, (size_t)img.w * img.h * 3);
    unlink(out);
    mx_image_free(&back);
    struct mx_err err = {0};
    assert_int_equal(mx_image_save_png(&img, "/nonexistent-dir/x.png", &err), MX_ENOENT);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(access("/nonexistent-dir/x.png.part", F_OK), -1);
    mx_image_free(&img);
}

static void test_load_png_flavours(void **state) {
    (void)state;
    static const char *const names[] = {"quadrants.png", "quadrants_rgb16.png",
                                        "quadrants_palette.png", "quadrants_interlaced.png"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[1024];
        data_path(path, sizeof path, names[i]);
        struct mx_image img;
        struct mx_err err = {0};
        int rc = mx_image_load(path, &img, &err);
        if (rc != 0)
            fail_msg("%s: %s", names[i], err.msg);
        assert_int_equal(img.w, 64);
        assert_int_equal(img.h, 48);
        check_quadrants(&img, quad_rgb, 0); /* lossless: exact */
        mx_image_free(&img);
    }
    char path[1024];
    struct mx_image img;
    /* alpha 128 in the bottom-right quadrant, composited over black */
    data_path(path, sizeof path, "quadrants_rgba.png");
    assert_int_equal(mx_image_load(path, &img, NULL), 0);
    uint8_t want[4][3];
    memcpy(want, quad_rgb, sizeof want);
    for (int c = 0; c < 3; c++)
        want[3][c] = (uint8_t)((quad_rgb[3][c] * 128 + 127) / 255);
    check_quadrants(&img, (const uint8_t(*)[3])want, 0);
    mx_image_free(&img);
    data_path(path, sizeof path, "quadrants_gray16.png");
    assert_int_equal(mx_image_load(path, &img, NULL), 0);
    static const uint8_t greys[4][3] = {{20, 20, 20}, {100, 100, 100}, {180, 180, 180},
                                        {250, 250, 250}};
    check_quadrants(&img, greys, 0);
    mx_image_free(&img);
}

static void test_load_jpeg(void **state) {
    (void)state;
#ifdef HAVE_SIXEL
    char path[1024];
    data_path(path, sizeof path, "quadrants.jpg");
    struct mx_image img;
    struct mx_err err = {0};
    int rc = mx_image_load(path, &img, &err);
    if (rc != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(img.w, 64);
    assert_int_equal(img.h, 48);
    /* quality 95 without chroma subsampling: flat interiors come back within a few levels */
    check_quadrants(&img, quad_rgb, 6);
    mx_image_free(&img);
    /* EXIF orientation: 6 shows the picture turned 90 degrees clockwise (the stored bottom-left
     * quadrant comes to the top-left), 8 counter-clockwise; a broken EXIF is ignored */
    static const struct {
        const char *name;
        int w, h, q[4]; /* source quadrant shown at TL, TR, BL, BR */
    } turned[] = {{"quadrants_exif6.jpg", 48, 64, {2, 0, 3, 1}},
                  {"quadrants_exif8.jpg", 48, 64, {1, 3, 0, 2}},
                  {"quadrants_exifbad.jpg", 64, 48, {0, 1, 2, 3}}};
    for (size_t i = 0; i < sizeof turned / sizeof turned[0]; i++) {
        data_path(path, sizeof path, turned[i].name);
        rc = mx_image_load(path, &img, &err);
        if (rc != 0)
            fail_msg("%s", err.msg);
        assert_int_equal(img.w, turned[i].w);
        assert_int_equal(img.h, turned[i].h);
        uint8_t want[4][3];
        for (int q = 0; q < 4; q++)
            memcpy(want[q], quad_rgb[turned[i].q[q]], 3);
        check_quadrants(&img, (const uint8_t(*)[3])want, 6);
        mx_image_free(&img);
    }
#else
    mx_test_skip("%s: this build has no libsixel (--without-sixel)", __func__);
#endif
}

static void expect_load_error(const char *name, int code, const char *needle) {
    char path[1024];
    data_path(path, sizeof path, name);
    struct mx_image img = {1, 1, NULL};
    struct mx_err err = {0};
    int rc = mx_image_load(path, &img, &err);
    if (rc != code || !strstr(err.msg, needle))
        fail_msg("%s: rc %d (want %d), message '%s' (want '%s')", name, rc, code, err.msg,
                 needle);
    assert_null(img.rgb);
    assert_int_equal(img.w, 0);
    assert_non_null(strstr(err.msg, name)); /* the message names the file */
}

static void test_load_corrupt(void **state) {
    (void)state;
    expect_load_error("bad_truncated.png", MX_EFORMAT, "corrupt PNG");
    expect_load_error("bad_crc.png", MX_EFORMAT, "CRC");
    expect_load_error("bad_huge.png", MX_ERANGE, "too large (100000x100000");
    expect_load_error("bad_giant.png", MX_ERANGE, "too large (16000x16000");
    expect_load_error("bad_huge.jpg", MX_ERANGE, "too large (60000x60000");
    /* sizes within the caps that the file is far too small to hold: refused before allocating */
    expect_load_error("bad_liar.png", MX_EFORMAT, "8000x8000 needs at least");
    expect_load_error("bad_liar.jpg", MX_EFORMAT, "8000x8000 in a file of");
#ifdef HAVE_SIXEL
    expect_load_error("bad_truncated.jpg", MX_EFORMAT, "corrupt JPEG");
#endif
    expect_load_error("make_images.py", MX_EFORMAT, "not a PNG or JPEG");
    expect_load_error("no-such-file.png", MX_ENOENT, "No such file");
}

/* PNG chunk CRC (ISO 3309), so mutated chunks get past the CRC check into the decoder. */
static uint32_t crc32_png(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return c ^ 0xffffffffu;
}

/* Recomputes every chunk's CRC of a (mutated) PNG in place, as far as the lengths allow. */
static void png_fix_crcs(uint8_t *p, size_t n) {
    size_t pos = 8;
    while (pos + 12 <= n) {
        uint32_t len = (uint32_t)p[pos] << 24 | p[pos + 1] << 16 | p[pos + 2] << 8 | p[pos + 3];
        if (len > n - pos - 12)
            break;
        uint32_t c = crc32_png(p + pos + 4, len + 4);
        uint8_t *q = p + pos + 8 + len;
        q[0] = (uint8_t)(c >> 24);
        q[1] = (uint8_t)(c >> 16);
        q[2] = (uint8_t)(c >> 8);
        q[3] = (uint8_t)c;
        pos += 12 + len;
    }
}

/* Seeded mutations of the good PNGs and the JPEG (byte changes, truncation, PNG CRCs fixed so the
 * decoder sees them): each load must return 0 with a sane image or an error with a message, never
 * crash (run under ASan by make check-sanitize). */
static void test_load_mutations(void **state) {
    (void)state;
    static const char *const names[] = {"quadrants.png", "quadrants_palette.png",
                                        "quadrants_interlaced.png", "quadrants_rgba.png",
                                        "quadrants.jpg", "quadrants_exif6.jpg"};
    char tmp[] = "/tmp/mx-test-mutant.XXXXXX";
    int fd = mkstemp(tmp);
    assert_true(fd >= 0);
    close(fd);
    uint64_t seed = 2024;
    int n_ok = 0, n_err = 0;
    for (size_t f = 0; f < sizeof names / sizeof names[0]; f++) {
#ifndef HAVE_SIXEL
        if (strstr(names[f], ".jpg"))
            continue;
#endif
        char path[1024];
        data_path(path, sizeof path, names[f]);
        FILE *in = fopen(path, "rb");
        assert_non_null(in);
        uint8_t orig[4096];
        size_t n = fread(orig, 1, sizeof orig, in);
        fclose(in);
        bool png = strstr(names[f], ".png") != NULL;
        for (int it = 0; it < 400; it++) {
            uint8_t buf[4096];
            memcpy(buf, orig, n);
            size_t len = n;
            int n_mut = 1 + (int)(mx_test_rand(&seed) % 4);
            for (int m = 0; m < n_mut; m++) {
                size_t at = 8 + mx_test_rand(&seed) % (len - 8); /* keep the signature */
                switch (mx_test_rand(&seed) % 4) {
                case 0: buf[at] ^= (uint8_t)(1u << (mx_test_rand(&seed) % 8)); break;
                case 1: buf[at] = (uint8_t)mx_test_rand(&seed); break;
                case 2: buf[at] = (mx_test_rand(&seed) & 1) ? 0xff : 0x00; break;
                case 3: len = at; break; /* truncate */
                }
                if (len <= 8)
                    len = 9;
            }
            if (png)
                png_fix_crcs(buf, len);
            FILE *out = fopen(tmp, "wb");
            assert_non_null(out);
            assert_int_equal(fwrite(buf, 1, len, out), len);
            fclose(out);
            struct mx_image img;
            struct mx_err err = {0};
            int rc = mx_image_load(tmp, &img, &err);
            if (rc == 0) {
                assert_non_null(img.rgb);
                assert_true(img.w > 0 && img.w <= MX_IMAGE_MAX_SIDE);
                assert_true(img.h > 0 && img.h <= MX_IMAGE_MAX_SIDE);
                n_ok++;
            } else {
                assert_null(img.rgb);
                assert_true(err.msg[0] != '\0');
                n_err++;
            }
            mx_image_free(&img);
        }
    }
    unlink(tmp);
    /* both paths were exercised */
    assert_true(n_ok > 0);
    assert_true(n_err > 0);
    print_message("mutants: %d loaded, %d refused with a message\n", n_ok, n_err);
}

/* ---- sixel ----------------------------------------------------------------------------------- */

/* 96x60: four flat bands on the left, a red/blue gradient on the right. */
static struct mx_image test_picture(void) {
    struct mx_image img = {96, 60, malloc(96 * 60 * 3)};
    for (int y = 0; y < img.h; y++) {
        for (int x = 0; x < img.w; x++) {
            uint8_t *p = img.rgb + ((size_t)y * img.w + x) * 3;
            if (x < 48) {
                memcpy(p, quad_rgb[y / 15], 3);
            } else {
                p[0] = (uint8_t)((x - 48) * 255 / 47);
                p[1] = (uint8_t)(y * 2);
                p[2] = (uint8_t)(255 - (x - 48) * 255 / 47);
            }
        }
    }
    return img;
}

#ifdef HAVE_SIXEL
/* Decodes sixel bytes with libsixel's decoder into an RGB image. */
static struct mx_image decode_sixel(const char *bytes, size_t n) {
    sixel_allocator_t *al = NULL;
    assert_false(SIXEL_FAILED(sixel_allocator_new(&al, malloc, calloc, realloc, free)));
    unsigned char *idx = NULL, *pal = NULL;
    int w = 0, h = 0, ncol = 0;
    SIXELSTATUS st = sixel_decode_raw((unsigned char *)bytes, (int)n, &idx, &w, &h, &pal, &ncol,
                                      al);
    assert_false(SIXEL_FAILED(st));
    struct mx_image img = {w, h, malloc((size_t)w * h * 3)};
    for (size_t i = 0; i < (size_t)w * h; i++)
        memcpy(img.rgb + i * 3, pal + idx[i] * 3, 3);
    sixel_allocator_free(al, idx);
    sixel_allocator_free(al, pal);
    sixel_allocator_unref(al);
    return img;
}

/* Compares rw x rh regions of a and b (same size): mean per channel within tol. */
static void compare_regions(const struct mx_image *a, const struct mx_image *b, int rw, int rh,
                            double tol) {
    for (int y = 0; y + rh <= a->h; y += rh) {
        for (int x = 0; x + rw <= a->w; x += rw) {
            double ma[3], mb[3];
            region_mean(a, x, y, rw, rh, ma);
            region_mean(b, x, y, rw, rh, mb);
            for (int c = 0; c < 3; c++)
                if (fabs(ma[c] - mb[c]) > tol)
                    fail_msg("region (%d,%d) channel %d: decoded %.1f, source %.1f, tol %.1f", x,
                             y, c, mb[c], ma[c], tol);
        }
    }
}
#endif

static void test_sixel_roundtrip(void **state) {
    (void)state;
#ifdef HAVE_SIXEL
    struct mx_image src = test_picture();
    struct sink s = {0};
    struct mx_err err = {0};
    assert_int_equal(mx_image_sixel(&src, 256, false, sink_write, &s, &err), 0);
    /* DCS introducer, parameters, 'q', data, ST */
    assert_true(s.n > 10);
    assert_memory_equal(s.p, "\033P", 2);
    size_t q = 2;
    while (q < s.n && ((s.p[q] >= '0' && s.p[q] <= '9') || s.p[q] == ';'))
        q++;
    assert_int_equal(s.p[q], 'q');
    assert_memory_equal(s.p + s.n - 2, "\033\\", 2);
    for (size_t i = q; i < s.n - 2; i++)
        if (s.p[i] < 0x20 || s.p[i] > 0x7e)
            fail_msg("byte 0x%02x at %zu inside the sixel data", (unsigned char)s.p[i], i);
    struct mx_image dec = decode_sixel(s.p, s.n);
    assert_int_equal(dec.w, src.w);
    assert_int_equal(dec.h, src.h);
    /* libsixel builds its palette from a histogram of coarsened colours and sixel registers are
     * percentages, so even flat bands come back a few levels off (measured up to 6); on the ramp
     * the median-cut boxes are wider and 8x6 regions were measured up to 13.4 off (red near 255).
     * 16 levels is above both and far below what a bug moves: a band swapped or the picture
     * shifted by 8 px changes the means by 40 levels or more. */
    compare_regions(&src, &dec, 8, 6, 16.0);
    mx_image_free(&dec);

    /* 16 colours for 2880 distinct ones: each palette box spans ~60 levels; the diffusion keeps
     * regional means within 26.6 levels (measured), so 30 */
    struct sink s16 = {0};
    assert_int_equal(mx_image_sixel(&src, 16, false, sink_write, &s16, &err), 0);
    dec = decode_sixel(s16.p, s16.n);
    compare_regions(&src, &dec, 8, 6, 30.0);
    mx_image_free(&dec);

    /* tmux passthrough: the same bytes, wrapped, with ESCs doubled */
    struct sink w = {0};
    assert_int_equal(mx_image_sixel(&src, 256, true, sink_write, &w, &err), 0);
    assert_memory_equal(w.p, "\033Ptmux;\033\033P", 10);
    assert_memory_equal(w.p + w.n - 5, "\033\033\\\033\\", 5);
    char *un = malloc(w.n);
    size_t m = 0;
    for (size_t i = 7; i < w.n - 2; i++) {
        un[m++] = w.p[i];
        if (w.p[i] == '\033')
            i++; /* skip the doubled ESC */
    }
    assert_int_equal(m, s.n);
    assert_memory_equal(un, s.p, s.n);
    free(un);
    free(w.p);
    free(s16.p);
    free(s.p);
    mx_image_free(&src);
#else
    mx_test_skip("%s: this build has no libsixel (--without-sixel)", __func__);
#endif
}

/* ---- half blocks ----------------------------------------------------------------------------- */

/* One parsed cell: foreground and background as 0xRRGGBB, or -1 for the default. */
struct cell {
    long fg, bg;
};

/* Parses half-block output into cells (rows x cols); 256-colour indexes are kept as 0x1000000 +
 * index. Returns the number of cells and fails the test on anything unexpected. */
static int parse_blocks(const char *p, size_t n, struct cell *cells, int max, int *rows) {
    long fg = -1, bg = -1;
    int k = 0;
    *rows = 0;
    for (size_t i = 0; i < n;) {
        if (p[i] == '\033') {
            assert_int_equal(p[i + 1], '[');
            long v[8];
            int nv = 0;
            size_t j = i + 2;
            while (nv < 8) {
                char *end;
                v[nv++] = strtol(p + j, &end, 10);
                j = (size_t)(end - p);
                if (p[j] != ';')
                    break;
                j++;
            }
            assert_int_equal(p[j], 'm');
            for (int a = 0; a < nv; a++) {
                if (v[a] == 0) {
                    fg = bg = -1;
                } else if (v[a] == 49) {
                    bg = -1;
                } else if ((v[a] == 38 || v[a] == 48) && a + 1 < nv && v[a + 1] == 2) {
                    long c = v[a + 2] << 16 | v[a + 3] << 8 | v[a + 4];
                    *(v[a] == 38 ? &fg : &bg) = c;
                    a += 4;
                } else if ((v[a] == 38 || v[a] == 48) && a + 1 < nv && v[a + 1] == 5) {
                    *(v[a] == 38 ? &fg : &bg) = 0x1000000 + v[a + 2];
                    a += 2;
                } else {
                    fail_msg("unexpected SGR %ld", v[a]);
                }
            }
            i = j + 1;
        } else if (!memcmp(p + i, "\xe2\x96\x80", 3)) {
            assert_true(k < max);
            cells[k++] = (struct cell){fg, bg};
            i += 3;
        } else if (p[i] == '\n') {
            (*rows)++;
            i++;
        } else {
            fail_msg("unexpected byte 0x%02x in block output", (unsigned char)p[i]);
        }
    }
    return k;
}

/* Brute-force nearest xterm-256 colour (16..255), from the palette's definition. */
static int nearest_256(const uint8_t *p) {
    static const int lv[6] = {0, 95, 135, 175, 215, 255};
    long best_d = -1;
    int best = 0;
    for (int i = 16; i < 256; i++) {
        int r, g, b;
        if (i >= 232) {
            r = g = b = 8 + 10 * (i - 232);
        } else {
            r = lv[(i - 16) / 36];
            g = lv[(i - 16) / 6 % 6];
            b = lv[(i - 16) % 6];
        }
        long d = (long)(p[0] - r) * (p[0] - r) + (long)(p[1] - g) * (p[1] - g) +
                 (long)(p[2] - b) * (p[2] - b);
        if (best_d < 0 || d < best_d) {
            best_d = d;
            best = i;
        }
    }
    return best;
}

static void test_blocks_roundtrip(void **state) {
    (void)state;
    struct mx_image src = test_picture(), small;
    /* 24 columns, 15 block rows: an odd count, so the last text row has no lower pixel */
    assert_int_equal(mx_image_scale(&src, 24, 15, &small), 0);
    for (int tc = 1; tc >= 0; tc--) {
        struct sink s = {0};
        assert_int_equal(mx_image_blocks(&small, tc, sink_write, &s), 0);
        struct cell cells[24 * 8];
        int rows;
        int n = parse_blocks(s.p, s.n, cells, 24 * 8, &rows);
        assert_int_equal(rows, 8);
        assert_int_equal(n, 24 * 8);
        for (int r = 0; r < 8; r++) {
            for (int x = 0; x < 24; x++) {
                const struct cell *c = &cells[r * 24 + x];
                const uint8_t *t = small.rgb + ((size_t)(2 * r) * 24 + x) * 3;
                const uint8_t *u = 2 * r + 1 < 15 ? t + 24 * 3 : NULL;
                long want_fg = tc ? ((long)t[0] << 16 | t[1] << 8 | t[2])
                                  : 0x1000000 + nearest_256(t);
                long want_bg = !u ? -1 : tc ? ((long)u[0] << 16 | u[1] << 8 | u[2])
                                            : 0x1000000 + nearest_256(u);
                if (c->fg != want_fg || c->bg != want_bg)
                    fail_msg("cell %d,%d (%s): fg %lx bg %lx, want %lx %lx", r, x,
                             tc ? "truecolor" : "256", c->fg, c->bg, want_fg, want_bg);
            }
        }
        /* every row ends with a reset so colours never leak into the prompt */
        assert_memory_equal(s.p + s.n - 5, "\033[0m\n", 5);
        free(s.p);
    }
    mx_image_free(&small);
    mx_image_free(&src);
}

/* mx_gfx_render: the layout it reports is what it wrote, for both encodings and none. */
static void test_render(void **state) {
    (void)state;
    char path[1024];
    data_path(path, sizeof path, "quadrants.png");
    struct mx_image img;
    assert_int_equal(mx_image_load(path, &img, NULL), 0);
    struct mx_gfx_answers a = {.tty = true, .colours = 16777216, .ws_rows = 24, .ws_cols = 80,
                               .ws_xpix = 640, .ws_ypix = 384};
    struct mx_gfx g;
    mx_gfx_decide(MX_GFX_BLOCKS, &a, &g);
    struct sink s = {0};
    struct mx_image_layout lay;
    struct mx_err err = {0};
    assert_int_equal(mx_gfx_render(&g, &img, 16, 0, sink_write, &s, &lay, &err), 0);
    assert_int_equal(lay.cols, 16);
    assert_int_equal(lay.rows, 6); /* 128x96 px in 8x16 cells */
    int lines = 0;
    for (size_t i = 0; i < s.n; i++)
        lines += s.p[i] == '\n';
    assert_int_equal(lines, 6);
    free(s.p);
#ifdef HAVE_SIXEL
    mx_gfx_decide(MX_GFX_SIXEL, &a, &g);
    struct sink six = {0};
    assert_int_equal(mx_gfx_render(&g, &img, 16, 0, sink_write, &six, &lay, &err), 0);
    struct mx_image dec = decode_sixel(six.p, six.n);
    assert_int_equal(dec.w, lay.px_w);
    assert_int_equal(dec.h, lay.px_h);
    assert_int_equal(lay.px_w, 128);
    assert_int_equal(lay.px_h, 96);
    check_quadrants(&dec, quad_rgb, 8); /* palette coarsening, as in test_sixel_roundtrip */
    mx_image_free(&dec);
    free(six.p);
#endif
    mx_gfx_decide(MX_GFX_NONE, &a, &g);
    struct sink none = {0};
    assert_int_equal(mx_gfx_render(&g, &img, 16, 0, sink_write, &none, &lay, &err), 0);
    assert_int_equal(none.n, 0);
    mx_image_free(&img);
}

/* mx_gfx_place: DECSC + CUP + image + DECRC; half-block rows each at their own CUP; inside tmux
 * one passthrough that carries the outer position (pane offset added). */
static void test_place(void **state) {
    (void)state;
    char path[1024];
    data_path(path, sizeof path, "quadrants.png");
    struct mx_image img;
    assert_int_equal(mx_image_load(path, &img, NULL), 0);
    struct mx_gfx_answers a = {.tty = true, .colours = 16777216, .ws_rows = 24, .ws_cols = 80,
                               .ws_xpix = 640, .ws_ypix = 384};
    struct mx_gfx g;
    struct mx_err err = {0};
    struct mx_image_layout lay;
    mx_gfx_decide(MX_GFX_BLOCKS, &a, &g);
    struct sink s = {0};
    assert_int_equal(mx_gfx_place(&g, &img, 2, 3, 4, 10, 0, 0, sink_write, &s, &lay, &err), 0);
    assert_int_equal(lay.rows, 2);
    assert_memory_equal(s.p, "\0337\033[3;4H", 8);
    assert_non_null(strstr(s.p, "\033[0m\033[4;4H")); /* row 2 placed, not a newline */
    assert_null(strchr(s.p, '\n'));
    assert_memory_equal(s.p + s.n - 2, "\0338", 2);
    free(s.p);
#ifdef HAVE_SIXEL
    mx_gfx_decide(MX_GFX_SIXEL, &a, &g);
    g.tmux_wrap = true;
    struct sink t = {0};
    assert_int_equal(mx_gfx_place(&g, &img, 5, 10, 20, 10, 1, 40, sink_write, &t, &lay, &err),
                     0);
    /* ESC P tmux; then the doubled ESC 7, ESC [ 7;51 H (pane 1,40 + cell 5,10, 1-based) */
    const char *head = "\033Ptmux;\033\0337\033\033[7;51H\033\033P";
    assert_memory_equal(t.p, head, strlen(head));
    assert_memory_equal(t.p + t.n - 5, "\033\0338\033\\", 5); /* ESC ESC 8, ESC \ */
    free(t.p);
#endif
    assert_int_equal(mx_gfx_place(&g, &img, -1, 0, 4, 4, 0, 0, sink_write, &s, NULL, &err),
                     MX_EINVAL);
    mx_image_free(&img);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xterm_vt340_sixel),
        cmocka_unit_test(test_xterm_420_no_sixel),
        cmocka_unit_test(test_mlterm_broken_xtsmgraphics),
        cmocka_unit_test(test_tmux_33a),
        cmocka_unit_test(test_foot_and_wezterm),
        cmocka_unit_test(test_background_colour),
        cmocka_unit_test(test_no_reply_garbage_partial),
        cmocka_unit_test(test_not_a_tty_and_overrides),
        cmocka_unit_test(test_tmux_wrap_bytes),
        cmocka_unit_test(test_fit),
        cmocka_unit_test(test_scale_area_average),
        cmocka_unit_test(test_load_png_flavours),
        cmocka_unit_test(test_save_png_round_trip),
        cmocka_unit_test(test_load_jpeg),
        cmocka_unit_test(test_load_corrupt),
        cmocka_unit_test(test_load_mutations),
        cmocka_unit_test(test_sixel_roundtrip),
        cmocka_unit_test(test_blocks_roundtrip),
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_place),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
