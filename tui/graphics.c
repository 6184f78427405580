/* graphics.c - terminal graphics detection (queries, answers, decision) and drawing an image
 * for it at the cursor or at a cell, tmux passthrough included.
 *
 * Tuned for the start of `mixel show` and of the TUI: at most six queries, each followed by DA1
 * so a terminal that ignores one costs one round trip, not a timeout; a terminal that does not
 * answer DA1 at all costs one timeout and nothing else is asked. The pure parts (absorb, decide)
 * are tested on answers recorded from xterm, mlterm and tmux (tests/test_graphics.c).
 */
#include "tui/graphics.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "config.h"
#include "core/base/err.h"
#include "core/base/util.h"
#include "tui/termquery.h"

/* Cells or pixels beyond these are not a real terminal's answer (hostile or broken). */
#define MX_GFX_MAX_DIM   65535
#define MX_GFX_MAX_CELL  512
/* Largest sixel written when there is no terminal to ask (xterm itself stops at 1000x1000). */
#define MX_GFX_PIPE_MAX  4096

static const char *const mode_names[] = {"auto", "sixel", "blocks", "none"};

int mx_gfx_mode_parse(const char *s, enum mx_gfx_mode *out) {
    for (int i = 0; s && i < (int)MX_ARRAY_LEN(mode_names); i++) {
        if (!strcmp(s, mode_names[i])) {
            *out = (enum mx_gfx_mode)i;
            return 0;
        }
    }
    return MX_EINVAL;
}

const char *mx_gfx_mode_name(enum mx_gfx_mode mode) {
    if ((int)mode < 0 || (int)mode >= (int)MX_ARRAY_LEN(mode_names))
        return "?";
    return mode_names[mode];
}

const char *mx_gfx_query_bytes(enum mx_gfx_query q) {
    switch (q) {
    case MX_GFXQ_DA1:    return NULL;
    case MX_GFXQ_REGS:   return "\033[?1;1;0S";
    case MX_GFXQ_GEOM:   return "\033[?2;1;0S";
    case MX_GFXQ_CELL16: return "\033[16t";
    case MX_GFXQ_WIN14:  return "\033[14t";
    case MX_GFXQ_TEXT18: return "\033[18t";
    case MX_GFXQ_BG:     return "\033]11;?\033\\";
    }
    return NULL;
}

/* lo <= v <= hi */
static bool in_range(int v, int lo, int hi) {
    return v >= lo && v <= hi;
}

bool mx_gfx_absorb(struct mx_gfx_answers *a, enum mx_gfx_query q, const char *reply, size_t len) {
    struct mx_xtsm x;
    struct mx_winop w;
    switch (q) {
    case MX_GFXQ_DA1: {
        struct mx_da1 d;
        if (!mx_tq_parse_da1(reply, len, &d))
            return false;
        a->da1_valid = true;
        a->da1_sixel = d.sixel;
        return true;
    }
    case MX_GFXQ_REGS:
    case MX_GFXQ_GEOM: {
        int item = q == MX_GFXQ_REGS ? 1 : 2;
        if (!mx_tq_parse_xtsm(reply, len, &x) || x.item != item)
            return false; /* no answer, or mlterm's answer about another item */
        if (x.status != 0) {
            if (q == MX_GFXQ_REGS)
                a->regs_failed = true;
            else
                a->geom_failed = true;
            return false;
        }
        if (q == MX_GFXQ_REGS) {
            /* WezTerm reports 65536 registers; only the dither's 256 are ever used */
            if (x.n_values < 1 || !in_range(x.values[0], 1, 1000000))
                return false;
            a->regs = x.values[0];
        } else {
            if (x.n_values < 2 || !in_range(x.values[0], 1, MX_GFX_MAX_DIM) ||
                !in_range(x.values[1], 1, MX_GFX_MAX_DIM))
                return false;
            a->geom_w = x.values[0];
            a->geom_h = x.values[1];
        }
        return true;
    }
    case MX_GFXQ_CELL16: /* CSI 6 ; height ; width t */
        if (!mx_tq_parse_winop(reply, len, 6, &w) || !in_range(w.a, 1, MX_GFX_MAX_CELL) ||
            !in_range(w.b, 1, MX_GFX_MAX_CELL))
            return false;
        a->cell16_h = w.a;
        a->cell16_w = w.b;
        return true;
    case MX_GFXQ_WIN14: /* CSI 4 ; height ; width t */
        if (!mx_tq_parse_winop(reply, len, 4, &w) || !in_range(w.a, 1, MX_GFX_MAX_DIM) ||
            !in_range(w.b, 1, MX_GFX_MAX_DIM))
            return false;
        a->win14_h = w.a;
        a->win14_w = w.b;
        return true;
    case MX_GFXQ_BG: {
        unsigned char rgb[3];
        if (!mx_tq_parse_osc_colour(reply, len, 11, rgb))
            return false;
        memcpy(a->bg, rgb, 3);
        a->bg_known = true;
        return true;
    }
    case MX_GFXQ_TEXT18: /* CSI 8 ; rows ; cols t */
        if (!mx_tq_parse_winop(reply, len, 8, &w) || !in_range(w.a, 1, MX_GFX_MAX_DIM) ||
            !in_range(w.b, 1, MX_GFX_MAX_DIM))
            return false;
        a->text18_rows = w.a;
        a->text18_cols = w.b;
        return true;
    }
    return false;
}

/* Text area in cells: TIOCGWINSZ, else CSI 18 t, else 80x24. tmux 3.3a answers 18 t as
 * cols;rows: when the answer matches TIOCGWINSZ swapped, or has more rows than columns (no real
 * terminal window is taller in cells than wide... in practice), it is swapped back. */
static void text_area(const struct mx_gfx_answers *a, int *rows, int *cols) {
    if (a->ws_rows > 0 && a->ws_cols > 0) {
        *rows = a->ws_rows;
        *cols = a->ws_cols;
        return;
    }
    if (a->text18_rows > 0 && a->text18_cols > 0) {
        *rows = a->text18_rows;
        *cols = a->text18_cols;
        if (*rows > *cols) {
            int t = *rows;
            *rows = *cols;
            *cols = t;
        }
        return;
    }
    *rows = 24;
    *cols = 80;
}

/* Cell size in pixels with its source; falls back to 8x16 (the common 1:2 cell). */
static void cell_size(const struct mx_gfx_answers *a, int rows, int cols, struct mx_gfx *g) {
    int cw = 0, ch = 0;
    const char *src = "guessed: the terminal reports no pixel sizes";
    if (a->ws_xpix > 0 && a->ws_ypix > 0 && a->ws_cols > 0 && a->ws_rows > 0) {
        cw = a->ws_xpix / a->ws_cols;
        ch = a->ws_ypix / a->ws_rows;
        src = "TIOCGWINSZ";
    }
    if (!(in_range(cw, 1, MX_GFX_MAX_CELL) && in_range(ch, 1, MX_GFX_MAX_CELL)) &&
        a->cell16_w > 0 && a->cell16_h > 0) {
        cw = a->cell16_w;
        ch = a->cell16_h;
        src = "CSI 16 t";
    }
    if (!(in_range(cw, 1, MX_GFX_MAX_CELL) && in_range(ch, 1, MX_GFX_MAX_CELL)) &&
        a->win14_w > 0 && a->win14_h > 0) {
        cw = a->win14_w / cols;
        ch = a->win14_h / rows;
        src = "CSI 14 t / text area";
    }
    g->cell_known = in_range(cw, 1, MX_GFX_MAX_CELL) && in_range(ch, 1, MX_GFX_MAX_CELL);
    if (!g->cell_known) {
        cw = 8;
        ch = 16;
        src = "guessed: the terminal reports no pixel sizes";
    }
    g->cell_w = cw;
    g->cell_h = ch;
    snprintf(g->cell_src, sizeof g->cell_src, "%s", src);
}

void mx_gfx_decide(enum mx_gfx_mode requested, const struct mx_gfx_answers *a, struct mx_gfx *g) {
    memset(g, 0, sizeof *g);
    text_area(a, &g->rows, &g->cols);
    cell_size(a, g->rows, g->cols, g);
    g->truecolor = a->colours >= 16777216 || !a->tty;
    g->bg_known = a->bg_known;
    memcpy(g->bg, a->bg, 3); /* black when unknown */
    g->colour_regs = a->regs > 0 ? MX_MIN(MX_MAX(a->regs, 2), 256) : 256;
    /* Largest sixel: the terminal's geometry when it says, never more than the text area. */
    g->max_w = MX_MIN(g->cols * g->cell_w, MX_GFX_MAX_DIM);
    g->max_h = MX_MIN(g->rows * g->cell_h, MX_GFX_MAX_DIM);
    if (a->geom_w > 0 && a->geom_h > 0) {
        g->max_w = MX_MIN(g->max_w, a->geom_w);
        g->max_h = MX_MIN(g->max_h, a->geom_h);
    }
    if (!a->tty) /* sixel into a file or pipe: no screen to fit, a sane bound only */
        g->max_w = g->max_h = MX_GFX_PIPE_MAX;
    bool native = a->da1_valid && a->da1_sixel; /* includes tmux >= 3.4 built with sixel */
    bool via_tmux = a->tmux && !native && a->tmux_passthrough == 1;

    if (requested != MX_GFX_AUTO) {
        g->mode = requested;
        g->tmux_wrap = requested == MX_GFX_SIXEL && via_tmux;
        snprintf(g->why, sizeof g->why, "%s requested%s", mx_gfx_mode_name(requested),
                 requested == MX_GFX_SIXEL && a->tmux && !native && !via_tmux
                     ? " (inside tmux without allow-passthrough: tmux will drop it)" : "");
        return;
    }
    g->mode = MX_GFX_BLOCKS;
    if (!a->tty) {
        snprintf(g->why, sizeof g->why, "not a terminal: half blocks (no queries sent)");
    } else if (native) {
        g->mode = MX_GFX_SIXEL;
        snprintf(g->why, sizeof g->why, "%s answers DA1 with sixel (attribute 4)",
                 a->tmux ? "tmux (built with sixel)" : "terminal");
    } else if (via_tmux) {
        g->mode = MX_GFX_SIXEL;
        g->tmux_wrap = true;
        snprintf(g->why, sizeof g->why,
                 "inside tmux with allow-passthrough on: sixel through DCS passthrough (the outer "
                 "terminal must show sixel; use --graphics blocks if not)");
    } else if (a->tmux) {
        snprintf(g->why, sizeof g->why, "inside tmux %s: half blocks (tmux would drop or wipe a "
                 "sixel; `tmux set -g allow-passthrough on` allows it)",
                 a->tmux_passthrough == 0 ? "with allow-passthrough off"
                                          : "and allow-passthrough could not be read");
    } else if (!a->da1_valid) {
        snprintf(g->why, sizeof g->why, "terminal did not answer DA1: half blocks");
    } else {
        snprintf(g->why, sizeof g->why, "terminal has no sixel (DA1 without attribute 4%s): "
                 "half blocks", a->regs_failed || a->geom_failed ? ", XTSMGRAPHICS failed" : "");
    }
    if (g->mode == MX_GFX_BLOCKS && a->tty && a->colours == 0) {
        g->mode = MX_GFX_NONE;
        snprintf(g->why, sizeof g->why, "the terminal has no colours and no sixel: text only");
    }
}

/* Runs `tmux` with argv (NULL-terminated, argv[0] "tmux") for at most a second and collects its
 * first output line into out (NUL-terminated, empty on any failure). The child is killed if it
 * is still running at the deadline. */
static void run_tmux(char *const argv[], char *out, size_t size) {
    out[0] = '\0';
    int fds[2];
    if (pipe(fds) != 0)
        return;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return;
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDERR_FILENO);
        }
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execvp("tmux", argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0;
    double deadline = mx_time_s() + 1.0;
    for (;;) {
        double left = deadline - mx_time_s();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ssize_t n = read(fds[0], out + len, size - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len + 1 >= size)
            break;
    }
    out[len] = '\0';
    close(fds[0]);
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == 0) { /* still running after EOF or the deadline */
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    out[strcspn(out, "\r\n")] = '\0';
}

int mx_gfx_tmux_passthrough(void) {
    char *const argv[] = {"tmux", "show", "-gv", "allow-passthrough", NULL};
    char out[64];
    run_tmux(argv, out, sizeof out);
    /* judged by what it printed: an old tmux without the option prints nothing */
    if (!strcmp(out, "on") || !strcmp(out, "all"))
        return 1;
    return !strcmp(out, "off") ? 0 : -1;
}

int mx_gfx_tmux_pane_offset(int *top, int *left) {
    char *const argv[] = {"tmux", "display", "-p", "#{pane_top} #{pane_left}", NULL};
    char out[64];
    run_tmux(argv, out, sizeof out);
    int t, l;
    char extra;
    if (sscanf(out, "%d %d %c", &t, &l, &extra) != 2 || t < 0 || l < 0 || t > 65535 ||
        l > 65535)
        return MX_EUNSUP;
    *top = t;
    *left = l;
    return 0;
}

/* The terminal mode to put back if a signal ends the process during the queries. */
static struct termios raw_saved;
static int raw_fd = -1;
static volatile sig_atomic_t raw_armed;

/* Restores the terminal's mode (tcsetattr is async-signal-safe), then lets the signal do what it
 * would have done: terminate, or stop for Ctrl-Z. */
static void restore_on_signal(int sig) {
    if (raw_armed)
        tcsetattr(raw_fd, TCSANOW, &raw_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Ctrl-C or Ctrl-Z while the terminal is in raw mode would leave it without echo: these handlers
 * put the mode back first. (Blocking the signals is not enough: libraries start threads at load
 * time, and any of them may take the signal.) */
static const int guarded_sigs[] = {SIGINT, SIGQUIT, SIGTERM, SIGTSTP, SIGHUP};

/* Installs restore_on_signal for guarded_sigs, saving the old actions in old. */
static void guard_signals(struct sigaction *old) {
    struct sigaction act;
    memset(&act, 0, sizeof act);
    act.sa_handler = restore_on_signal;
    sigemptyset(&act.sa_mask);
    for (size_t i = 0; i < MX_ARRAY_LEN(guarded_sigs); i++)
        sigaction(guarded_sigs[i], &act, &old[i]);
}

/* Puts back the actions guard_signals saved. */
static void unguard_signals(const struct sigaction *old) {
    for (size_t i = 0; i < MX_ARRAY_LEN(guarded_sigs); i++)
        sigaction(guarded_sigs[i], &old[i], NULL);
}

/* Sends query q (then DA1) and records the answer. Returns false when even DA1 did not come. */
static bool ask(struct mx_tq *tq, struct mx_gfx_answers *a, enum mx_gfx_query q, int timeout_ms) {
    char reply[512];
    int n = mx_tq_ask(tq, mx_gfx_query_bytes(q), timeout_ms, reply, sizeof reply);
    if (n <= 0)
        return false;
    mx_gfx_absorb(a, q, reply, (size_t)n);
    return true;
}

void mx_gfx_detect(enum mx_gfx_mode requested, int timeout_ms, struct mx_gfx *out,
                   struct mx_gfx_answers *raw) {
    struct mx_gfx_answers a = {0};
    const char *env_note = NULL;
    if (timeout_ms <= 0) {
        /* every terminal answers DA1, so waiting longer only costs time on the rare one that
         * does not; over SSH an answer takes a round trip or two */
        const char *ssh = getenv("SSH_CONNECTION"), *ssh_tty = getenv("SSH_TTY");
        timeout_ms = (ssh && ssh[0]) || (ssh_tty && ssh_tty[0]) ? 1500 : 500;
    }
    if (requested == MX_GFX_AUTO) {
        const char *env = getenv("MIXEL_GRAPHICS");
        if (env && env[0] && mx_gfx_mode_parse(env, &requested) != 0)
            env_note = " (MIXEL_GRAPHICS ignored: not auto|sixel|blocks|none)";
        else if (env && env[0] && requested != MX_GFX_AUTO)
            env_note = " by MIXEL_GRAPHICS";
    }
    const char *tmux = getenv("TMUX");
    a.tmux = tmux && tmux[0];
    const char *src;
    a.colours = mx_tq_terminal_colours(&src); /* images keep colour under NO_COLOR */
    a.tmux_passthrough = -1;

    struct sigaction old_act[MX_ARRAY_LEN(guarded_sigs)];
    guard_signals(old_act);
    struct mx_tq tq;
    if (mx_tq_open(&tq) == 0) {
        memcpy(&raw_saved, tq.saved, sizeof raw_saved);
        raw_fd = tq.in_fd;
        raw_armed = 1;
        a.tty = true;
        struct winsize ws = {0};
        if (ioctl(tq.out_fd, TIOCGWINSZ, &ws) == 0) {
            a.ws_rows = ws.ws_row;
            a.ws_cols = ws.ws_col;
            a.ws_xpix = ws.ws_xpixel;
            a.ws_ypix = ws.ws_ypixel;
        }
        /* blocks and none need no answers; sixel (asked or auto) needs sizes and registers */
        if (requested == MX_GFX_AUTO || requested == MX_GFX_SIXEL) {
            if (ask(&tq, &a, MX_GFXQ_DA1, timeout_ms)) {
                if (a.tmux && !a.da1_sixel)
                    a.tmux_passthrough = mx_gfx_tmux_passthrough();
                if (a.da1_sixel || requested == MX_GFX_SIXEL) {
                    ask(&tq, &a, MX_GFXQ_REGS, timeout_ms);
                    ask(&tq, &a, MX_GFXQ_GEOM, timeout_ms);
                }
                if (!(a.ws_xpix > 0 && a.ws_ypix > 0)) {
                    ask(&tq, &a, MX_GFXQ_CELL16, timeout_ms);
                    if (!a.cell16_w)
                        ask(&tq, &a, MX_GFXQ_WIN14, timeout_ms);
                }
                if (!(a.ws_rows > 0 && a.ws_cols > 0))
                    ask(&tq, &a, MX_GFXQ_TEXT18, timeout_ms);
                ask(&tq, &a, MX_GFXQ_BG, timeout_ms); /* for transparent pixels */
            }
        }
        raw_armed = 0;
        mx_tq_close(&tq);
    } else if (isatty(STDOUT_FILENO)) {
        /* stdin redirected but output is a terminal: sizes without queries */
        struct winsize ws = {0};
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
            a.ws_rows = ws.ws_row;
            a.ws_cols = ws.ws_col;
            a.ws_xpix = ws.ws_xpixel;
            a.ws_ypix = ws.ws_ypixel;
        }
    }
    unguard_signals(old_act);
    mx_gfx_decide(requested, &a, out);
#ifndef HAVE_SIXEL
    if (out->mode == MX_GFX_SIXEL && requested == MX_GFX_AUTO) {
        out->mode = MX_GFX_BLOCKS;
        out->tmux_wrap = false;
        snprintf(out->why, sizeof out->why,
                 "the terminal shows sixel but this mixel was built without libsixel: half blocks");
    }
#endif
    if (env_note)
        snprintf(out->why + strlen(out->why), sizeof out->why - strlen(out->why), "%s", env_note);
    if (raw)
        *raw = a;
}

int mx_gfx_render(const struct mx_gfx *g, const struct mx_image *img, int box_cols, int box_rows,
                  mx_image_write_fn write, void *ud, struct mx_image_layout *lay,
                  struct mx_err *err) {
    struct mx_image_layout l;
    struct mx_image scaled = {0};
    if (!lay)
        lay = &l;
    memset(lay, 0, sizeof *lay);
    if (g->mode != MX_GFX_SIXEL && g->mode != MX_GFX_BLOCKS)
        return 0;
    bool sixel = g->mode == MX_GFX_SIXEL;
    int rc = mx_image_fit(img->w, img->h, g->cell_w, g->cell_h, box_cols, box_rows,
                          sixel ? g->max_w : 0, sixel ? g->max_h : 0, lay);
    if (rc < 0)
        return mx_err_set(err, rc, "image: cannot fit %dx%d px into %dx%d cells", img->w,
                          img->h, box_cols, box_rows);
    rc = sixel ? mx_image_scale(img, lay->px_w, lay->px_h, &scaled)
               : mx_image_scale(img, lay->blk_w, lay->blk_h, &scaled);
    if (rc < 0)
        return mx_err_set(err, rc, "image: cannot scale %dx%d px to %dx%d (%s)", img->w, img->h,
                          sixel ? lay->px_w : lay->blk_w, sixel ? lay->px_h : lay->blk_h,
                          mx_strerror(rc));
    rc = sixel ? mx_image_sixel(&scaled, g->colour_regs, g->tmux_wrap, write, ud, err)
               : mx_image_blocks(&scaled, g->truecolor, write, ud);
    mx_image_free(&scaled);
    if (rc < 0)
        mx_err_set(err, rc, "image: cannot write the %s image", sixel ? "sixel" : "half-block");
    return rc;
}

int mx_gfx_cursor_pos(int timeout_ms, int *row, int *col) {
    struct sigaction old_act[MX_ARRAY_LEN(guarded_sigs)];
    guard_signals(old_act);
    struct mx_tq tq;
    int rc = mx_tq_open(&tq);
    if (rc == 0) {
        memcpy(&raw_saved, tq.saved, sizeof raw_saved);
        raw_fd = tq.in_fd;
        raw_armed = 1;
        char reply[256];
        int n = mx_tq_ask(&tq, "\033[6n", timeout_ms > 0 ? timeout_ms : 500, reply,
                          sizeof reply);
        raw_armed = 0;
        mx_tq_close(&tq);
        rc = MX_EUNSUP;
        /* the first `ESC [ row ; col R` (DA1's answer starts ESC [ ? and is skipped) */
        for (int i = 0; n > 0 && i + 1 < n; i++) {
            int r = 0, c = 0;
            char fin = 0;
            if (reply[i] == '\033' && reply[i + 1] == '[' &&
                sscanf(reply + i + 2, "%5d;%5d%c", &r, &c, &fin) == 3 && fin == 'R' && r >= 1 &&
                c >= 1) {
                *row = r;
                *col = c;
                rc = 0;
                break;
            }
        }
    }
    unguard_signals(old_act);
    return rc;
}

/* Half-block output with each "\n" turned into a CUP to the next row at the image's column. */
struct row_sink {
    mx_image_write_fn write;   /* the real sink (borrowed) */
    void *ud;
    int row, col;              /* 1-based screen position of the next text row */
};

/* mx_image_write_fn for struct row_sink. */
static int row_sink_write(void *ud, const char *buf, size_t n) {
    struct row_sink *r = ud;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (buf[i] != '\n')
            continue;
        int rc = i > start ? r->write(r->ud, buf + start, i - start) : 0;
        char cup[32];
        int m = snprintf(cup, sizeof cup, "\033[%d;%dH", ++r->row, r->col);
        if (rc == 0)
            rc = r->write(r->ud, cup, (size_t)m);
        if (rc < 0)
            return rc;
        start = i + 1;
    }
    return start < n ? r->write(r->ud, buf + start, n - start) : 0;
}

/* mx_image_write_fn into a tmux passthrough (ud: struct mx_tmux_wrap). */
static int tmux_chunk_write(void *ud, const char *buf, size_t n) {
    return mx_tmux_wrap_chunk(ud, buf, n);
}

int mx_gfx_place(const struct mx_gfx *g, const struct mx_image *img, int row, int col,
                 int box_cols, int box_rows, int pane_top, int pane_left, mx_image_write_fn write,
                 void *ud, struct mx_image_layout *lay, struct mx_err *err) {
    struct mx_image_layout l;
    if (!lay)
        lay = &l;
    memset(lay, 0, sizeof *lay);
    if (g->mode != MX_GFX_SIXEL && g->mode != MX_GFX_BLOCKS)
        return 0;
    if (row < 0 || col < 0 || row > 65535 || col > 65535)
        return mx_err_set(err, MX_EINVAL, "image: cell (%d,%d) is off the screen", row, col);
    char pos[48];
    int rc;
    if (g->mode == MX_GFX_SIXEL && g->tmux_wrap) {
        struct mx_tmux_wrap tw = {write, ud};
        struct mx_gfx inner = *g;
        inner.tmux_wrap = false; /* one passthrough around the positioning and the image */
        int n = snprintf(pos, sizeof pos, "\0337\033[%d;%dH", pane_top + row + 1,
                         pane_left + col + 1);
        rc = mx_tmux_wrap_begin(&tw);
        if (rc == 0)
            rc = mx_tmux_wrap_chunk(&tw, pos, (size_t)n);
        if (rc == 0)
            rc = mx_gfx_render(&inner, img, box_cols, box_rows, tmux_chunk_write, &tw, lay, err);
        if (rc == 0)
            rc = mx_tmux_wrap_chunk(&tw, "\0338", 2);
        if (rc == 0)
            rc = mx_tmux_wrap_end(&tw);
        return rc;
    }
    int n = snprintf(pos, sizeof pos, "\0337\033[%d;%dH", row + 1, col + 1);
    rc = write(ud, pos, (size_t)n);
    if (rc == 0 && g->mode == MX_GFX_SIXEL) {
        rc = mx_gfx_render(g, img, box_cols, box_rows, write, ud, lay, err);
    } else if (rc == 0) {
        struct row_sink rs = {write, ud, row + 1, col + 1};
        rc = mx_gfx_render(g, img, box_cols, box_rows, row_sink_write, &rs, lay, err);
    }
    if (rc == 0)
        rc = write(ud, "\0338", 2);
    return rc;
}
