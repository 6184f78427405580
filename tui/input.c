/* input.c - typed input: the input area at the bottom (prompt + readline's buffer, wrapped,
 * growing to INPUT_MAX_ROWS rows, the newest visible), and the routing of the bytes read from the
 * terminal: bracketed paste is collected whole (pasted text stays one message, newlines
 * included), a view with the focus (viewer, gallery, picker, sidebar) takes its keys first, a
 * lone Esc and Ctrl-C stop the answer (idle: Esc dismisses the notice, Ctrl-C clears the line or
 * says how to quit), everything else goes to readline byte by byte.
 */
#include "tui/input.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <readline/readline.h>

#include "core/base/text.h"
#include "tui/gen.h"
#include "tui/readline_glue.h"
#include "tui/status.h"
#include "tui/style.h"
#include "tui/view.h"
#include "tui/tools.h"

/* The input area: prompt + readline's buffer, wrapped, newest rows visible; places the cursor. */
int mx_app_input_rows(const char *buf, int width) {
    int rows = 0;
    size_t len = strlen(buf), pos = 0;
    do {
        size_t next;
        mx_text_wrap(buf + pos, len - pos, width, &next);
        rows++;
        if (next == 0)
            break;
        pos += next;
    } while (pos < len || (len && buf[len - 1] == '\n' && pos == len && rows < 2 * INPUT_MAX_ROWS &&
                           (rows++, 0)));
    return rows;
}

void mx_app_draw_input(struct app *a, int top, int rows, int width, int *cy, int *cx) {
    const char *prompt = "\xe2\x80\xba "; /* › */
    int pw = 2;
    int w = width - pw;
    const char *buf = rl_line_buffer ? rl_line_buffer : "";
    size_t len = strlen(buf);
    /* lay out all rows, remember where the cursor falls */
    int row = 0, cur_row = 0, cur_col = 0;
    size_t pos = 0;
    struct { size_t off, n; } lines[256];
    int n_lines = 0;
    for (;;) {
        size_t next, n = mx_text_wrap(buf + pos, len - pos, w, &next);
        if (n_lines < 256) {
            lines[n_lines].off = pos;
            lines[n_lines].n = n;
            n_lines++;
        }
        if ((size_t)rl_point >= pos && (size_t)rl_point <= pos + n) {
            cur_row = row;
            cur_col = mx_text_width(buf + pos, (size_t)rl_point - pos);
        }
        row++;
        if (pos + next >= len) {
            bool trailing_nl = next > n && pos + next == len && buf[len - 1] == '\n';
            if (trailing_nl && n_lines < 256) {
                lines[n_lines].off = len;
                lines[n_lines].n = 0;
                n_lines++;
                if ((size_t)rl_point == len) {
                    cur_row = row;
                    cur_col = 0;
                }
            }
            break;
        }
        pos += next;
    }
    int first = cur_row - rows + 1;
    if (first < 0)
        first = 0;
    for (int r = 0; r < rows; r++) {
        attrset(mx_app_role_attr(a, MX_ROLE_input, 0));
        mvhline(top + r, 0, ' ', width);
        int li = first + r;
        if (li == 0)
            mx_app_put_text(a, top + r, 0, prompt, strlen(prompt), pw, MX_ROLE_user, MX_ATTR_BOLD);
        if (li < n_lines) {
            char clean[MX_SANITIZE_MAX(512)];
            size_t n = lines[li].n > 512 ? 512 : lines[li].n;
            size_t cn = mx_text_sanitize(buf + lines[li].off, n, clean, false);
            mx_app_put_text(a, top + r, pw, clean, cn, w, MX_ROLE_input, 0);
        }
    }
    *cy = top + cur_row - first;
    *cx = pw + cur_col;
}


static void paste_finish(struct app *a) {
    for (size_t i = 0; i < a->paste.len; i++)
        if (a->paste.buf[i] == '\r')
            a->paste.buf[i] = '\n';
    if (a->paste.len) {
        a->paste.buf[a->paste.len] = '\0';
        rl_insert_text(a->paste.buf);
    }
    a->paste.len = 0;
    a->paste.active = false;
}

static void paste_add(struct app *a, const char *s, size_t n) {
    if (a->paste.len + n + 1 > a->paste.cap) {
        size_t cap = (a->paste.len + n + 1) * 2;
        if (cap > (16u << 20)) /* a 16 MiB paste is plenty; ignore the rest */
            return;
        char *p = realloc(a->paste.buf, cap);
        if (!p)
            return;
        a->paste.buf = p;
        a->paste.cap = cap;
    }
    memcpy(a->paste.buf + a->paste.len, s, n);
    a->paste.len += n;
}

/* More input is waiting on stdin (already typed, not read yet). */
static bool stdin_pending(void) {
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

/* The views that take keys before the input line, in the order they are offered a key. */
static const struct mx_view_ops *const focus_order[] = {
    &mx_view_toolask, /* a tool call waiting for y / n / a comes first: the model waits */
    &mx_view_viewer, &mx_view_gallery, &mx_view_picker, &mx_view_firstrun, &mx_view_sidebar,
};

/* A view other than the input line has the keys. */
static bool focus_elsewhere(const struct app *a) {
    for (size_t v = 0; v < sizeof focus_order / sizeof focus_order[0]; v++)
        if (focus_order[v]->focused(a))
            return true;
    return false;
}

static const char paste_start[] = "\033[200~", paste_end[] = "\033[201~";

/* The end of the run of bytes from i that readline takes in one go: up to a Ctrl-C, the start of
 * a paste or a last byte that is Esc (a lone Esc, maybe), which are handled here. */
static size_t readline_run(const unsigned char *buf, size_t i, size_t n) {
    size_t end = i + 1;
    while (end < n && buf[end] != 0x03 && !(buf[end] == 0x1b && end + 1 == n) &&
           !(n - end >= 6 && !memcmp(buf + end, paste_start, 6)))
        end++;
    return end;
}

/* Routes the bytes of one read: linear in n (a run of typed text goes to readline in one call,
 * which inserts it without a per-byte pass over the line), and nothing here draws. */
int mx_app_input(struct app *a, const unsigned char *buf, size_t n) {
    int flags = MX_KEY_REDRAW; /* the input line, paste and Esc/Ctrl-C change what is shown */
    mx_app_notice_keyed(a);
    for (size_t i = 0; i < n;) {
        if (a->paste.active) {
            const unsigned char *e = memmem(buf + i, n - i, paste_end, 6);
            size_t upto = e ? (size_t)(e - buf) : n;
            paste_add(a, (const char *)buf + i, upto - i);
            if (!e)
                return flags;
            paste_finish(a);
            i = upto + 6;
            continue;
        }
        if (n - i >= 6 && !memcmp(buf + i, paste_start, 6)) {
            a->paste.active = true;
            i += 6;
            continue;
        }
        /* the focused views, in order; one that does not take the key passes it on */
        size_t used = 0;
        for (size_t v = 0; v < sizeof focus_order / sizeof focus_order[0] && !used; v++) {
            const struct mx_view_ops *view = focus_order[v];
            if (view->focused(a) && view->key) {
                int r = view->key(a, buf + i, n - i, &used);
                flags |= r & ~MX_KEY_HANDLED;
                if (!(r & MX_KEY_HANDLED))
                    used = 0;
            }
        }
        if (used) {
            i += used;
            continue;
        }
        unsigned char c = buf[i];
        if (c == 0x1b && i + 1 == n && !stdin_pending()) {
            /* a lone Esc (nothing follows within the poll below): stop, don't start a key
             * sequence in readline */
            struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
            if (poll(&p, 1, 30) <= 0) {
                if (a->gen.busy)
                    mx_app_gen_stop(a);
                else
                    mx_app_notice_clear(a); /* Esc dismisses the notice */
                i++;
                continue;
            }
        }
        if (c == 0x03) { /* Ctrl-C: stop the answer, else clear the line */
            if (a->gen.busy) {
                mx_app_gen_stop(a);
            } else if (rl_end > 0) {
                rl_replace_line("", 0);
                rl_point = 0;
            } else { /* nothing to stop or clear: the user may be trying to leave */
                mx_app_notice(a, false, "nothing to stop: to leave mixel, type /quit or press "
                              "Ctrl-D on an empty line");
            }
            i++;
            continue;
        }
        i += mx_app_rl_feed(a, buf + i, readline_run(buf, i, n) - i, focus_elsewhere);
        if (a->quit)
            return flags | MX_KEY_QUIT;
    }
    return flags | (a->quit ? MX_KEY_QUIT : 0);
}
