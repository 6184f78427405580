/* cmd_show.c - `mixel show FILE`: print a PNG/JPEG in the terminal as sixel, half blocks or a
 * plain line, for shell use (and for `mixel image --show`).
 *
 * By default the image fills the terminal's width (and at most its height less one row, so the
 * prompt stays on screen); when stdout is not a terminal it is half blocks 80 columns wide and no
 * query is sent. The cell rectangle is the same whichever encoding is used. On a terminal a sixel
 * gets its rows made first and the cursor is put below it by us, since terminals disagree on
 * where they leave it; --at draws at a cell and leaves the cursor alone.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base/err.h"
#include "cli/cmd.h"
#include "cli/opts.h"
#include "tui/graphics.h"
#include "tui/image_term.h"

/* The help text, to f. */
static void usage(FILE *f) {
    fprintf(f,
            "usage: mixel show FILE... [--graphics auto|sixel|blocks|none] [--width COLS] "
            "[--height ROWS]\n"
            "                          [--at ROW,COL]\n"
            "\n"
            "Prints PNG or JPEG images to stdout: as sixel when the terminal shows sixel, else\n"
            "as Unicode half blocks, or as a plain `[image: FILE]` line with --graphics none.\n"
            "The image fits the terminal (80 columns when stdout is not a terminal); --width\n"
            "and --height give the box in cells instead. --at draws it at that cell (from 0,0\n"
            "top left) and leaves the cursor where it was. MIXEL_GRAPHICS sets the default\n"
            "mode.\n");
}

/* mx_image_write_fn to stdout: 0, or MX_EIO on a short write. */
static int stdout_write(void *ud, const char *buf, size_t n) {
    (void)ud;
    return fwrite(buf, 1, n, stdout) == n ? 0 : MX_EIO;
}

static int show_one(const char *path, const struct mx_gfx *gp, int width, int height, int at_row,
                    int at_col);

/* Parses a positive cell count for option opt. Returns 0 or prints and returns -1. */
static int parse_cells(const char *opt, const char *s, int *out) {
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || *end || v < 1 || v > 4096) {
        mx_cli_err("show", "%s needs a number of cells from 1 to 4096", opt);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* The file name, with control characters shown inert (it goes to a terminal). */
static void print_plain(const char *path) {
    printf("[image: %s]\n", mx_safe(path));
}

/* Detects the terminal for mode (after checking that path opens, so a missing file is reported
 * without making the user wait for the queries) into g. Returns 0, or 1 with the error printed. */
static int detect_for(const char *path, enum mx_gfx_mode mode, struct mx_gfx *g) {
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        mx_cli_err("show", "%s: %s", path, strerror(errno));
        return 1;
    }
    fclose(probe);
    mx_gfx_detect(mode, 0, g, NULL);
    if (getenv("MIXEL_DEBUG_GRAPHICS"))
        mx_cli_err("show", "mode %s: %s; cell %dx%d (%s), %dx%d cells, max %dx%d px, "
                "%d colours, %s, background %02x%02x%02x%s", mx_gfx_mode_name(g->mode),
                g->why, g->cell_w, g->cell_h, g->cell_src, g->cols, g->rows, g->max_w, g->max_h,
                g->colour_regs, g->truecolor ? "24-bit blocks" : "256-colour blocks", g->bg[0],
                g->bg[1], g->bg[2], g->bg_known ? "" : " (assumed)");
    return 0;
}

int mx_show_file(const char *path, enum mx_gfx_mode mode, int width, int height) {
    struct mx_gfx g;
    if (detect_for(path, mode, &g) != 0)
        return 1;
    return show_one(path, &g, width, height, -1, -1);
}

/* Loads path and prints it for the detected terminal g (detection comes first: transparent
 * pixels are composited over the terminal's background), at the cursor, or with at_row >= 0 at
 * that cell without moving the cursor. Returns 0, or 1 with the error printed. */
static int show_one(const char *path, const struct mx_gfx *gp, int width, int height, int at_row,
                    int at_col) {
    struct mx_gfx g = *gp;
    struct mx_err err = {0};
    struct mx_image img = {0};
    int rc = mx_image_load_over(path, g.bg, &img, &err);
    if (rc < 0) {
        mx_cli_err("show", "%s", mx_err_msg(&err, rc));
        return 1;
    }
    if (g.mode == MX_GFX_NONE) {
        print_plain(path);
        mx_image_free(&img);
        return fflush(stdout) == 0 ? 0 : 1;
    }

    if (at_row >= 0) {
        /* at a cell: the box is what is left of the screen right and below it (not its last
         * row, where a sixel would scroll the screen) unless --width/--height say otherwise */
        int bc = width ? width : g.cols - at_col, br = height ? height : g.rows - 1 - at_row;
        int top = 0, left = 0;
        if (bc < 1 || br < 1) {
            mx_cli_err("show", "--at %d,%d is off the %dx%d screen", at_row, at_col,
                    g.rows, g.cols);
            mx_image_free(&img);
            return 1;
        }
        if (g.mode == MX_GFX_SIXEL && g.tmux_wrap)
            mx_gfx_tmux_pane_offset(&top, &left);
        rc = mx_gfx_place(&g, &img, at_row, at_col, bc, br, top, left, stdout_write, NULL, NULL,
                          &err);
        mx_image_free(&img);
        if (fflush(stdout) != 0 && rc == 0)
            rc = MX_EIO;
        if (rc < 0)
            mx_cli_err("show", "%s: %s", path, mx_err_msg(&err, rc));
        return rc < 0;
    }

    /* The box in cells: what was asked, else the terminal (less one row for the prompt), else 80
     * columns of unlimited height for a pipe. */
    bool out_tty = isatty(STDOUT_FILENO);
    int box_cols = width, box_rows = height;
    if (!width && !height) {
        box_cols = out_tty ? g.cols : 80;
        box_rows = out_tty ? (g.rows > 2 ? g.rows - 1 : g.rows) : 0;
    } else if (!width) {
        box_cols = 4096;
    }
    struct mx_image_layout lay;
    bool place = g.mode == MX_GFX_SIXEL && out_tty;
    if (place) {
        /* Terminals leave the cursor in different places after a sixel (xterm on its last row,
         * mlterm below it, tmux passthrough where it was) and scroll if it reaches the bottom.
         * So: make room first (the newlines scroll now, not the image), come back up, save the
         * cursor, draw, restore, and step below the image ourselves. */
        rc = mx_image_fit(img.w, img.h, g.cell_w, g.cell_h, box_cols, box_rows, g.max_w,
                          g.max_h, &lay);
        /* an image taller than the screen scrolls anyway: no saved position survives that */
        if (rc == 0 && lay.rows >= g.rows)
            place = false;
        for (int r = 0; rc == 0 && place && r < lay.rows; r++)
            rc = stdout_write(NULL, "\n", 1);
        char up[32];
        int n = snprintf(up, sizeof up, "\033[%dA\0337", lay.rows);
        if (rc == 0 && place)
            rc = stdout_write(NULL, up, (size_t)n);
    }
    /* Inside tmux the passed-through image lands wherever tmux last left the outer terminal's
     * cursor, which lags behind the pane's: place it in outer coordinates (pane offset + the
     * pane cursor), else draw where the cursor is. */
    int row, col, top, left;
    if (rc == 0 && place && g.tmux_wrap && fflush(stdout) == 0 &&
        mx_gfx_cursor_pos(0, &row, &col) == 0 && mx_gfx_tmux_pane_offset(&top, &left) == 0)
        rc = mx_gfx_place(&g, &img, row - 1, col - 1, box_cols, box_rows, top, left,
                          stdout_write, NULL, &lay, &err);
    else if (rc == 0)
        rc = mx_gfx_render(&g, &img, box_cols, box_rows, stdout_write, NULL, &lay, &err);
    mx_image_free(&img);
    if (rc == 0 && g.mode == MX_GFX_SIXEL) {
        if (place) {
            rc = stdout_write(NULL, "\0338", 2);
            for (int r = 0; rc == 0 && r < lay.rows; r++)
                rc = stdout_write(NULL, "\n", 1);
        } else {
            /* a file or pipe (or an image taller than the screen): a newline after it; tmux
             * does not move its cursor for a passed-through image, so step over its rows */
            for (int r = 0; rc == 0 && r < (g.tmux_wrap ? lay.rows : 1); r++)
                rc = stdout_write(NULL, "\n", 1);
        }
    }
    if (fflush(stdout) != 0 && rc == 0)
        rc = MX_EIO;
    if (rc < 0) {
        mx_cli_err("show", "%s: %s", path,
                rc == MX_EIO ? "cannot write to stdout" : mx_err_msg(&err, rc));
        return 1;
    }
    return 0;
}

int mx_cmd_show(int argc, char **argv) {
    const char *paths[256];
    int n_paths = 0;
    enum mx_gfx_mode mode = MX_GFX_AUTO;
    int width = 0, height = 0, at_row = -1, at_col = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--graphics") || !strncmp(a, "--graphics=", 11)) {
            const char *v = a[10] == '=' ? a + 11 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v || mx_gfx_mode_parse(v, &mode) != 0) {
                mx_cli_err("show", "--graphics takes auto, sixel, blocks or none");
                return 2;
            }
        } else if (!strcmp(a, "--width") || !strcmp(a, "-w")) {
            if (parse_cells("--width", i + 1 < argc ? argv[++i] : NULL, &width) < 0)
                return 2;
        } else if (!strcmp(a, "--height")) {
            if (parse_cells("--height", i + 1 < argc ? argv[++i] : NULL, &height) < 0)
                return 2;
        } else if (!strcmp(a, "--at")) {
            const char *v = i + 1 < argc ? argv[++i] : NULL;
            char extra;
            if (!v || sscanf(v, "%d,%d%c", &at_row, &at_col, &extra) != 2 || at_row < 0 ||
                at_col < 0 || at_row > 4095 || at_col > 4095) {
                mx_cli_err("show", "--at takes ROW,COL (cells from 0, top left)");
                return 2;
            }
        } else if (a[0] == '-' && a[1]) {
            mx_cli_err("show", "unknown option '%s' (see mixel show --help)", a);
            return 2;
        } else if (n_paths < (int)(sizeof paths / sizeof paths[0])) {
            paths[n_paths++] = a;
        } else {
            mx_cli_err("show", "at most 256 files at a time");
            return 2;
        }
    }
    if (n_paths == 0) {
        usage(stderr);
        return 2;
    }
    /* the terminal is asked once; each file is shown in turn, a bad one does not stop the rest */
    struct mx_gfx g;
    int status = 0, detected = 0;
    for (int i = 0; i < n_paths; i++) {
        if (!detected) {
            if (detect_for(paths[i], mode, &g) != 0) {
                status = 1;
                continue;
            }
            detected = 1;
        }
        if (show_one(paths[i], &g, width, height, at_row, at_col) != 0)
            status = 1;
    }
    return status;
}
