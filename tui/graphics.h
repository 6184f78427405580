/* graphics.h - which kind of image a terminal can show, how big, and drawing it there.
 *
 * Detection is a handful of time-limited queries (tui/termquery.h): DA1 for sixel (attribute 4),
 * XTSMGRAPHICS for colour registers and sixel geometry, TIOCGWINSZ / CSI 16 t / CSI 14 t for the
 * cell size in pixels, OSC 11 for the background (under transparent pixels), and $TMUX plus
 * `tmux show -gv allow-passthrough` for tmux. The answers are collected into struct
 * mx_gfx_answers by pure functions (unit-tested on recorded bytes of real terminals,
 * ../shared/TERMINALS.md) and turned into a decision by another pure function, so only
 * mx_gfx_detect touches the terminal. With stdin/stdout not a tty no query is sent.
 * mx_gfx_render and mx_gfx_place then draw an image (core/image/image.h, encoded by tui/image_term.h) for
 * that decision.
 */
#ifndef MX_GRAPHICS_H
#define MX_GRAPHICS_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/err.h"
#include "tui/image_term.h"

enum mx_gfx_mode {
    MX_GFX_AUTO = 0,   /* detect */
    MX_GFX_SIXEL,      /* DEC sixel through libsixel */
    MX_GFX_BLOCKS,     /* Unicode upper half blocks with fg/bg colours, 2 pixels per cell */
    MX_GFX_NONE,       /* a plain `[image: path]` line */
};

/* Parses "auto", "sixel", "blocks" or "none" (case-sensitive). Returns 0, or MX_EINVAL. */
int mx_gfx_mode_parse(const char *s, enum mx_gfx_mode *out);
/* "auto", "sixel", "blocks" or "none". */
const char *mx_gfx_mode_name(enum mx_gfx_mode mode);

/* Raw facts about the terminal; 0 / false means "unknown" or "no". Filled by mx_gfx_absorb from
 * replies and by mx_gfx_detect from ioctl/env. */
struct mx_gfx_answers {
    bool tty;                  /* stdin and stdout are terminals (queries were possible) */
    bool da1_valid;            /* the terminal answered DA1 */
    bool da1_sixel;            /* DA1 has attribute 4 */
    int regs;                  /* colour registers (XTSMGRAPHICS 1;1), 0 unknown */
    bool regs_failed;          /* XTSMGRAPHICS answered status != 0 for registers */
    int geom_w, geom_h;        /* sixel geometry in px (XTSMGRAPHICS 2;1), 0 unknown */
    bool geom_failed;          /* XTSMGRAPHICS answered status != 0 for geometry */
    int ws_rows, ws_cols;      /* TIOCGWINSZ text area, 0 unknown */
    int ws_xpix, ws_ypix;      /* TIOCGWINSZ pixels, 0 unknown */
    int cell16_w, cell16_h;    /* CSI 16 t: cell size in px */
    int win14_w, win14_h;      /* CSI 14 t: text area size in px */
    int text18_rows, text18_cols; /* CSI 18 t: text area in cells (tmux 3.3a swaps them) */
    bool tmux;                 /* $TMUX is set */
    int tmux_passthrough;      /* allow-passthrough: 1 on, 0 off, -1 unknown */
    int colours;               /* mx_tq_terminal_colours(): 16777216, 256, 8; 0 none */
    bool bg_known;             /* the terminal answered OSC 11 */
    unsigned char bg[3];       /* its default background, RGB8 */
};

/* Which reply mx_gfx_absorb is given. */
enum mx_gfx_query {
    MX_GFXQ_DA1,       /* `CSI c` alone */
    MX_GFXQ_REGS,      /* `CSI ? 1 ; 1 ; 0 S` */
    MX_GFXQ_GEOM,      /* `CSI ? 2 ; 1 ; 0 S` */
    MX_GFXQ_CELL16,    /* `CSI 16 t` */
    MX_GFXQ_WIN14,     /* `CSI 14 t` */
    MX_GFXQ_TEXT18,    /* `CSI 18 t` */
    MX_GFXQ_BG,        /* `OSC 11 ; ? ST`: the default background colour */
};

/* The bytes each query sends (before the DA1 that mx_tq_ask appends). */
const char *mx_gfx_query_bytes(enum mx_gfx_query q);

/* Records what `reply` (the bytes mx_tq_ask collected for query q: the answer, if any, then the
 * DA1 answer) says into a. Pure; untrusted bytes: garbage, partial answers, answers to another
 * item (mlterm answers the geometry query with item 1) and absurd numbers leave a unchanged.
 * Returns true when the reply held a usable answer to q. */
bool mx_gfx_absorb(struct mx_gfx_answers *a, enum mx_gfx_query q, const char *reply, size_t len);

/* The decision: what to draw and at which sizes. */
struct mx_gfx {
    enum mx_gfx_mode mode;     /* SIXEL, BLOCKS or NONE (never AUTO) */
    bool tmux_wrap;            /* wrap the sixel DCS as `ESC P tmux; ... ESC \` (ESCs doubled) */
    int colour_regs;           /* palette size for the sixel dither, 2..256 */
    int max_w, max_h;          /* largest sixel the terminal takes, px */
    int cell_w, cell_h;        /* px per cell (a guess of 8x16 when !cell_known) */
    bool cell_known;
    int cols, rows;            /* text area (80x24 when unknown) */
    bool truecolor;            /* blocks: SGR 38;2/48;2 (else 256-colour 38;5/48;5) */
    bool bg_known;             /* bg is the terminal's background (else black is assumed) */
    unsigned char bg[3];       /* what transparent pixels are composited over */
    char cell_src[48];         /* where the cell size came from */
    char why[256];             /* why this mode, for `mixel doctor` and messages */
};

/* Pure decision from the answers. `requested` MX_GFX_AUTO detects; anything else is honoured
 * (sizes are still filled in). Never fails. */
void mx_gfx_decide(enum mx_gfx_mode requested, const struct mx_gfx_answers *a, struct mx_gfx *out);

/* Asks the terminal on stdin/stdout (each query limited to timeout_ms; <= 0: 500 ms, 1500 ms
 * over SSH) and decides. `requested` comes from --graphics; when it is MX_GFX_AUTO,
 * $MIXEL_GRAPHICS (auto|sixel|blocks|none) overrides detection. With stdin or stdout not a tty,
 * nothing is sent. raw (may be NULL) receives the answers. Never blocks longer than a few
 * timeouts; if SIGINT, SIGTSTP and the like arrive while the terminal is in raw mode, its mode
 * is restored before they take effect (handlers are installed for the duration and the old ones
 * put back). Call it before curses starts (it reads stdin itself); one detection at a time
 * (the saved terminal mode is process-wide). */
void mx_gfx_detect(enum mx_gfx_mode requested, int timeout_ms, struct mx_gfx *out,
                   struct mx_gfx_answers *raw);

/* Fits img into box_cols x box_rows cells (box_rows <= 0: no limit) within g's sixel limits,
 * scales it and encodes it as g->mode says: sixel (DCS, tmux-wrapped when g->tmux_wrap) or half
 * blocks, through write. The caller places the cursor first and moves it after the image (see
 * ../shared/TERMINALS.md); lay (may be NULL) receives the cell rectangle and pixel sizes used.
 * MX_GFX_NONE writes nothing. Returns 0 or a negative MX_E* with err set; img is only read. */
int mx_gfx_render(const struct mx_gfx *g, const struct mx_image *img, int box_cols, int box_rows,
                  mx_image_write_fn write, void *ud, struct mx_image_layout *lay,
                  struct mx_err *err);

/* Draws img fitted into box_cols x box_rows cells at cell (row, col) (0-based, of this terminal
 * or tmux pane) and leaves the cursor where it was: DECSC, CUP, the image, DECRC. Inside tmux a
 * sixel goes in one passthrough positioned in the outer terminal (pane_top/pane_left from
 * mx_gfx_tmux_pane_offset; tmux would otherwise draw it wherever the outer cursor happens to be).
 * Half-block rows are each positioned with CUP. The caller keeps the rectangle on the screen and
 * off its last row (a sixel there scrolls it). lay (may be NULL) receives the layout. Returns 0
 * or a negative MX_E* with err set. */
int mx_gfx_place(const struct mx_gfx *g, const struct mx_image *img, int row, int col,
                 int box_cols, int box_rows, int pane_top, int pane_left, mx_image_write_fn write,
                 void *ud, struct mx_image_layout *lay, struct mx_err *err);

/* `mixel show` as a function (cli/cmd_show.c), for `mixel image --show`: loads path, detects
 * (mode MX_GFX_AUTO honours MIXEL_GRAPHICS), prints to stdout in a box of width x height cells
 * (0: the terminal's, or 80 columns for a pipe) and reports errors on stderr prefixed "mixel
 * show:". Returns the exit status: 0, or 1 on any error. */
int mx_show_file(const char *path, enum mx_gfx_mode mode, int width, int height);

/* Asks the terminal where the cursor is (DSR 6, `CSI row ; col R`, 1-based; inside tmux: in
 * the pane). Same tty rules, signal care and limits as mx_gfx_detect (not while curses reads
 * the terminal). Returns 0 or MX_EUNSUP (no tty, no answer). */
int mx_gfx_cursor_pos(int timeout_ms, int *row, int *col);

/* Where the current tmux pane sits in the outer terminal (`tmux display -p`, 0-based cells), so
 * a passed-through image can be positioned in the outer terminal's coordinates. Returns 0 or
 * MX_EUNSUP. At most ~1 s. */
int mx_gfx_tmux_pane_offset(int *top, int *left);

/* Runs `tmux show -gv allow-passthrough` (at most ~1 s). Returns 1 when it prints on/all, 0 when
 * it prints something else, -1 when tmux cannot be asked. */
int mx_gfx_tmux_passthrough(void);

#endif
