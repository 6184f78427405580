/* termquery.h - asking the terminal what it can do, without ever hanging.
 *
 * Each query is sent followed by DA1 (`CSI c`), which every terminal answers: a query the terminal
 * ignores then shows as "no reply" as soon as the DA1 answer arrives, instead of costing the
 * whole timeout (../shared/TERMINALS.md). Parsers are pure functions over recorded bytes so they
 * are tested against real terminals' answers.
 */
#ifndef MX_TERMQUERY_H
#define MX_TERMQUERY_H

#include <stdbool.h>
#include <stddef.h>

/* Parsed DA1 answer `CSI ? Pp ; Pp ... c`. */
struct mx_da1 {
    bool valid;        /* a DA1 answer was found */
    bool sixel;        /* attribute 4 present */
    int n_attrs;
    int attrs[32];
};

/* Finds the first DA1 answer in buf[0..len) (other replies may precede it) and parses it.
 * Returns a pointer just past it, or NULL if no complete DA1 answer is there. */
const char *mx_tq_parse_da1(const char *buf, size_t len, struct mx_da1 *out);

/* Parsed XTSMGRAPHICS answer `CSI ? Pi ; Ps ; Pv... S` (Pi item: 1 colour registers, 2 sixel
 * geometry; Ps status: 0 success, 1 bad item, 2 bad action, 3 failure). */
struct mx_xtsm {
    bool valid;        /* an answer was found */
    int item;
    int status;
    int n_values;      /* 1 for colour registers, 2 (width, height) for geometry */
    int values[2];
};

/* Finds the first XTSMGRAPHICS answer in buf[0..len) and parses it. Numbers are clamped to
 * 1000000 so hostile answers cannot overflow. Returns a pointer just past it, or NULL. */
const char *mx_tq_parse_xtsm(const char *buf, size_t len, struct mx_xtsm *out);

/* Parsed window-operation answer `CSI Ps ; a ; b t` (4: window pixels h;w, 6: cell pixels h;w,
 * 8: text area rows;cols). */
struct mx_winop {
    bool valid;
    int code;          /* Ps */
    int a, b;          /* the two numbers, in the order sent */
};

/* Finds the first `CSI Ps ; a ; b t` answer in buf[0..len) whose Ps equals `code` (any code when
 * code < 0). Returns a pointer just past it, or NULL. */
const char *mx_tq_parse_winop(const char *buf, size_t len, int code, struct mx_winop *out);

/* Finds the first OSC colour answer `ESC ] code ; rgb:R/G/B` (ended by BEL or ESC \; each
 * component 1 to 4 hex digits) in buf[0..len) and scales it to 8 bits per channel into rgb.
 * Returns a pointer just past it, or NULL (rgb untouched). */
const char *mx_tq_parse_osc_colour(const char *buf, size_t len, int code, unsigned char rgb[3]);

/* A terminal session for queries: raw mode on the tty, restored by mx_tq_close. */
struct mx_tq {
    int in_fd, out_fd;
    bool active;       /* raw mode set; false when not a tty */
    char saved[64];    /* struct termios storage (kept opaque here) */
};

/* Opens queries on stdin/stdout. Returns 0, or MX_EUNSUP when either is not a terminal (then no
 * query is ever sent). */
int mx_tq_open(struct mx_tq *tq);
void mx_tq_close(struct mx_tq *tq);

/* Sends `query` (may be NULL: DA1 alone) then DA1, and collects the answers until the DA1 reply
 * arrives or timeout_ms passes. The reply bytes (NUL-terminated, possibly truncated) go to buf.
 * Returns the number of bytes, or a negative MX_E* (MX_ETIMEDOUT when DA1 never came). */
int mx_tq_ask(struct mx_tq *tq, const char *query, int timeout_ms, char *buf, size_t size);

/* The reply part that came before the DA1 answer, i.e. the answer to `query` itself; copies it
 * to out (NUL-terminated) and returns its length (0: the terminal ignored the query). */
size_t mx_tq_strip_da1(const char *reply, size_t len, char *out, size_t size);

/* Colour depth the terminal advertises: 16777216 for COLORTERM=truecolor/24bit, else terminfo's
 * colors (via tigetnum), else 8; 0 when NO_COLOR is set. `source` gets a short explanation. */
int mx_tq_colour_depth(const char **source);

/* The colours the terminal itself can show (COLORTERM, terminfo, else 8), whatever NO_COLOR says:
 * NO_COLOR asks for text without colour, not for pictures without it, so images (half blocks)
 * use this. Same `source` contract. */
int mx_tq_terminal_colours(const char **source);

#endif
