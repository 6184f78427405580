/* termquery.c - time-limited terminal queries and parsers for their answers. */
#include "tui/termquery.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <curses.h>
#include <term.h>
#include <termios.h>
#include <unistd.h>

#include "core/base/err.h"
#include "core/base/util.h"

_Static_assert(sizeof(struct termios) <= sizeof(((struct mx_tq *)0)->saved), "termios storage");

const char *mx_tq_parse_da1(const char *buf, size_t len, struct mx_da1 *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i + 2 < len; i++) {
        if (buf[i] != '\033' || buf[i + 1] != '[' || buf[i + 2] != '?')
            continue;
        size_t j = i + 3;
        int n = 0, cur = 0;
        bool have_digit = false, ok = true;
        struct mx_da1 d = {0};
        for (; j < len; j++) {
            char c = buf[j];
            if (c >= '0' && c <= '9') {
                if (cur < 100000)
                    cur = cur * 10 + (c - '0');
                have_digit = true;
            } else if (c == ';' || c == 'c') {
                if (have_digit && n < (int)MX_ARRAY_LEN(d.attrs))
                    d.attrs[n++] = cur;
                cur = 0;
                have_digit = false;
                if (c == 'c')
                    break;
            } else {
                ok = false; /* another CSI ? reply (e.g. XTSMGRAPHICS ends in 'S') */
                break;
            }
        }
        if (!ok || j >= len)
            continue;
        d.valid = true;
        d.n_attrs = n;
        for (int k = 0; k < n; k++)
            if (d.attrs[k] == 4)
                d.sixel = true;
        *out = d;
        return buf + j + 1;
    }
    return NULL;
}

int mx_tq_open(struct mx_tq *tq) {
    memset(tq, 0, sizeof *tq);
    tq->in_fd = STDIN_FILENO;
    tq->out_fd = STDOUT_FILENO;
    if (!isatty(tq->in_fd) || !isatty(tq->out_fd))
        return MX_EUNSUP;
    struct termios t, raw;
    if (tcgetattr(tq->in_fd, &t) != 0)
        return MX_EUNSUP;
    memcpy(tq->saved, &t, sizeof t);
    raw = t;
    raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    if (tcsetattr(tq->in_fd, TCSANOW, &raw) != 0)
        return MX_EUNSUP;
    tq->active = true;
    return 0;
}

void mx_tq_close(struct mx_tq *tq) {
    if (!tq || !tq->active)
        return;
    struct termios t;
    memcpy(&t, tq->saved, sizeof t);
    tcsetattr(tq->in_fd, TCSANOW, &t);
    tq->active = false;
}

static int write_all(int fd, const char *s, size_t n) {
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return MX_EIO;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

int mx_tq_ask(struct mx_tq *tq, const char *query, int timeout_ms, char *buf, size_t size) {
    if (!tq->active || size < 2)
        return MX_EUNSUP;
    tcflush(tq->in_fd, TCIFLUSH); /* drop stale input so old answers are not mistaken */
    if (query && write_all(tq->out_fd, query, strlen(query)) < 0)
        return MX_EIO;
    if (write_all(tq->out_fd, "\033[c", 3) < 0)
        return MX_EIO;
    size_t len = 0;
    double deadline = mx_time_s() + timeout_ms / 1000.0;
    for (;;) {
        double left = deadline - mx_time_s();
        if (left <= 0)
            break;
        struct pollfd p = {.fd = tq->in_fd, .events = POLLIN};
        int r = poll(&p, 1, (int)(left * 1000) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ssize_t n = read(tq->in_fd, buf + len, size - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        struct mx_da1 d;
        if (mx_tq_parse_da1(buf, len, &d))
            return (int)len;
        if (len + 1 >= size)
            return (int)len;
    }
    buf[len] = '\0';
    return MX_ETIMEDOUT;
}

size_t mx_tq_strip_da1(const char *reply, size_t len, char *out, size_t size) {
    struct mx_da1 d;
    const char *end = mx_tq_parse_da1(reply, len, &d);
    size_t keep = len;
    if (end) {
        /* the DA1 answer starts at the last ESC [ ? before end */
        const char *start = end - 1;
        while (start > reply && !(start[0] == '\033' && start[1] == '[' && start[2] == '?'))
            start--;
        keep = (size_t)(start - reply);
    }
    if (keep >= size)
        keep = size - 1;
    memcpy(out, reply, keep);
    out[keep] = '\0';
    return keep;
}

int mx_tq_colour_depth(const char **source) {
    const char *nc = getenv("NO_COLOR");
    if (nc && nc[0]) {
        *source = "NO_COLOR is set";
        return 0;
    }
    return mx_tq_terminal_colours(source);
}

int mx_tq_terminal_colours(const char **source) {
    const char *ct = getenv("COLORTERM");
    if (ct && (!strcmp(ct, "truecolor") || !strcmp(ct, "24bit"))) {
        *source = "COLORTERM";
        return 16777216;
    }
    int err = 0;
    /* setupterm allocates a new terminal each call and orphans the old one: load it once (curses,
     * when started later, sets up its own) */
    if (getenv("TERM") && (cur_term || setupterm(NULL, STDOUT_FILENO, &err) == OK)) {
        int n = tigetnum("colors");
        if (n > 0) {
            *source = "terminfo";
            return n;
        }
    }
    *source = "default";
    return 8;
}

/* Reads up to `max` ';'-separated numbers from buf[j..len) until `final`; numbers are clamped
 * to 1000000. Returns the index just past `final`, or 0 when another byte or the end comes first
 * (an incomplete or different sequence). An empty field counts as 0, as in ECMA-48. */
static size_t parse_params(const char *buf, size_t len, size_t j, char final, int *vals, int max,
                           int *n_out) {
    int n = 0, cur = 0;
    bool any = false;
    for (; j < len; j++) {
        char c = buf[j];
        if (c >= '0' && c <= '9') {
            if (cur < 1000000)
                cur = cur * 10 + (c - '0');
            if (cur > 1000000)
                cur = 1000000;
            any = true;
        } else if (c == ';' || c == final) {
            if (n < max)
                vals[n] = cur;
            n++;
            cur = 0;
            if (c == final) {
                *n_out = any ? n : 0;
                return j + 1;
            }
        } else {
            return 0;
        }
    }
    return 0;
}

const char *mx_tq_parse_xtsm(const char *buf, size_t len, struct mx_xtsm *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i + 2 < len; i++) {
        if (buf[i] != '\033' || buf[i + 1] != '[' || buf[i + 2] != '?')
            continue;
        int v[4] = {0}, n = 0;
        size_t end = parse_params(buf, len, i + 3, 'S', v, 4, &n);
        if (!end || n < 2) /* a DA1 answer ends in 'c' and is skipped here */
            continue;
        out->valid = true;
        out->item = v[0];
        out->status = v[1];
        out->n_values = MX_MIN(n - 2, 2);
        for (int k = 0; k < out->n_values; k++)
            out->values[k] = v[2 + k];
        return buf + end;
    }
    return NULL;
}

const char *mx_tq_parse_winop(const char *buf, size_t len, int code, struct mx_winop *out) {
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i + 1 < len; i++) {
        if (buf[i] != '\033' || buf[i + 1] != '[')
            continue;
        int v[3] = {0}, n = 0;
        size_t end = parse_params(buf, len, i + 2, 't', v, 3, &n);
        if (!end || n != 3 || (code >= 0 && v[0] != code))
            continue;
        out->valid = true;
        out->code = v[0];
        out->a = v[1];
        out->b = v[2];
        return buf + end;
    }
    return NULL;
}

const char *mx_tq_parse_osc_colour(const char *buf, size_t len, int code, unsigned char rgb[3]) {
    char head[16];
    int hn = snprintf(head, sizeof head, "\033]%d;rgb:", code);
    for (size_t i = 0; i + (size_t)hn <= len; i++) {
        if (memcmp(buf + i, head, (size_t)hn) != 0)
            continue;
        size_t j = i + (size_t)hn;
        unsigned char c[3];
        bool ok = true;
        for (int k = 0; k < 3 && ok; k++) {
            unsigned v = 0;
            int nd = 0;
            while (j < len && mx_hex_digit((unsigned char)buf[j]) >= 0 && nd < 4) {
                v = v * 16 + (unsigned)mx_hex_digit((unsigned char)buf[j++]);
                nd++;
            }
            if (nd == 0 || (k < 2 && (j >= len || buf[j++] != '/'))) {
                ok = false;
                break;
            }
            unsigned max = (1u << (4 * nd)) - 1;
            c[k] = (unsigned char)((v * 255 + max / 2) / max);
        }
        if (!ok)
            continue;
        size_t end;
        if (j < len && buf[j] == '\a')
            end = j + 1;
        else if (j + 1 < len && buf[j] == '\033' && buf[j + 1] == '\\')
            end = j + 2;
        else
            continue; /* incomplete or not ended properly */
        memcpy(rgb, c, 3);
        return buf + end;
    }
    return NULL;
}
