/* commands.c - the chat TUI: layout, drawing, keys, slash commands, readline glue, main loop.
 *
 * The screen: the conversation (scrollback) on top, a status bar, the input area at the bottom
 * (grows to 6 rows for multi-line input). Each frame is drawn into curses' virtual screen and
 * ncurses sends only the difference, so streaming a long answer costs one markdown render of the
 * growing message plus a diff per batch of tokens, not a full repaint.
 *
 * Keys reach readline (callback mode) byte by byte, so ~/.inputrc, emacs/vi modes and history
 * work as in bash; mixel's own actions are readline functions bound to key sequences from one
 * table (which also feeds /help). Two things are intercepted before readline: a lone Esc (stop
 * generation) and bracketed paste (pasted text stays one message, newlines included).
 */
#include "tui/app.h"
#include "tui/app_int.h"

#include "app/discover.h"
#include "app/engine_llm.h"
#include "core/image/image.h"

#include <curses.h>
#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "core/base/err.h"
#include "core/base/util.h"
#include "history/db.h"
#include "history/images.h"
#include "history/kvsnap.h"
#include "history/paths.h"
#include "tui/markdown.h"
#include "core/base/text.h"
#include "tui/theme.h"
#include "app/worker.h"

static struct app *g_app; /* readline's hooks carry no user pointer */
static volatile sig_atomic_t g_winch;
static int g_winch_pipe[2] = {-1, -1};

/* ---- conversation ------------------------------------------------------------------------- */

struct msg *mx_app_msg_add(struct app *a, enum mx_role role, enum msg_state st,
                           const char *text) {
    if (a->conv.n_msgs == a->conv.cap_msgs) {
        int cap = a->conv.cap_msgs ? a->conv.cap_msgs * 2 : 16;
        struct msg *m = realloc(a->conv.msgs, (size_t)cap * sizeof *m);
        if (!m)
            return NULL;
        a->conv.msgs = m;
        a->conv.cap_msgs = cap;
    }
    struct msg *m = &a->conv.msgs[a->conv.n_msgs];
    memset(m, 0, sizeof *m);
    m->role = role;
    m->state = st;
    size_t len = text ? strlen(text) : 0;
    m->cap = len + 64;
    m->text = malloc(m->cap);
    if (!m->text)
        return NULL;
    memcpy(m->text, text ? text : "", len + 1);
    m->len = len;
    a->conv.n_msgs++;
    return m;
}

static int msg_append(struct msg *m, const char *s) {
    size_t n = strlen(s);
    if (m->len + n + 1 > m->cap) {
        size_t cap = (m->len + n + 1) * 2;
        char *t = realloc(m->text, cap);
        if (!t)
            return MX_ENOMEM;
        m->text = t;
        m->cap = cap;
    }
    memcpy(m->text + m->len, s, n + 1);
    m->len += n;
    return 0;
}

static void msg_free(struct msg *m) {
    free(m->image);
    mx_image_free(&m->img);
    free(m->sixel);
    mx_image_free(&m->blk);
    free(m->text);
    mx_rtext_free(&m->r);
}

static void conversation_clear(struct app *a) {
    for (int i = 0; i < a->conv.n_msgs; i++)
        msg_free(&a->conv.msgs[i]);
    a->conv.n_msgs = 0;
    a->conv.scroll = 0;
}

void mx_app_notice(struct app *a, bool error, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->status.note, sizeof a->status.note, fmt, ap);
    va_end(ap);
    a->status.is_error = error;
}

void mx_app_store_warn(struct app *a, const struct mx_err *err, int rc);
static void reload_session(struct app *a);
static void snapshot_save(struct app *a);
static void snapshot_load(struct app *a);
static void start_load(struct app *a, const char *path);
static void finish_load(struct app *a, int code, const char *msg);
static bool store_writable(const struct app *a);

/* ---- colours ------------------------------------------------------------------------------ */

static void apply_theme(struct app *a) {
    a->style.n_colours = 0;
    const char *nc = getenv("NO_COLOR");
    if (has_colors() && !(nc && nc[0])) {
        start_color();
        use_default_colors();
        a->style.n_colours = COLORS >= 256 ? 256 : COLORS >= 16 ? 16 : COLORS >= 8 ? 8 : 0;
    }
    if (!a->style.n_colours)
        return;
    for (int r = 0; r < MX_ROLE_COUNT; r++) {
        const struct mx_theme_style *s = &a->style.theme.style[r];
        int fg = mx_colour_reduce(&s->fg, a->style.n_colours);
        int bg = mx_colour_reduce(&s->bg, a->style.n_colours);
        /* a coloured bar whose colours both fell back to the defaults keeps standing out */
        a->style.reverse_role[r] = fg < 0 && bg < 0 && s->bg.kind != MX_COLOUR_DEFAULT;
        init_pair((short)(r + 1), (short)fg, (short)bg);
    }
}

attr_t mx_app_role_attr(const struct app *a, int role, unsigned extra) {
    unsigned at = a->style.theme.style[role].attrs | extra;
    attr_t c = a->style.n_colours ? COLOR_PAIR(role + 1) : 0;
    if (at & MX_ATTR_BOLD)
        c |= A_BOLD;
    if (at & MX_ATTR_DIM)
        c |= A_DIM;
    if (at & MX_ATTR_UNDERLINE)
        c |= A_UNDERLINE;
    if ((at & MX_ATTR_REVERSE) || a->style.reverse_role[role])
        c |= A_REVERSE;
#ifdef A_ITALIC
    if (at & MX_ATTR_ITALIC)
        c |= A_ITALIC;
#endif
    /* Without colours, roles that must stand out get attributes instead. */
    if (!a->style.n_colours) {
        if (role == MX_ROLE_error || role == MX_ROLE_heading || role == MX_ROLE_user)
            c |= A_BOLD;
        if (role == MX_ROLE_status)
            c |= A_REVERSE;
        if (role == MX_ROLE_code || role == MX_ROLE_keyword)
            c |= A_UNDERLINE * (role == MX_ROLE_keyword);
    }
    return c;
}

/* ---- drawing ------------------------------------------------------------------------------ */

/* Draws s[0..len) at (y, x) clipped to `width` columns, styled by role; returns columns used. */
int mx_app_put_text(struct app *a, int y, int x, const char *s, size_t len, int width, int role,
                    unsigned attrs) {
    attrset(mx_app_role_attr(a, role, attrs));
    int used = 0;
    size_t i = 0;
    while (i < len) {
        unsigned int cp;
        size_t n = mx_utf8_decode(s + i, len - i, &cp);
        int cw = mx_char_width(cp);
        if (cw < 0)
            cw = 0;
        if (used + cw > width)
            break;
        i += n;
        used += cw;
    }
    mvaddnstr(y, x, s, (int)i);
    return used;
}

static const char *role_label(const struct msg *m) {
    switch (m->role) {
    case MX_ROLE_USER: return "You";
    case MX_ROLE_ASSISTANT: return "Assistant";
    case MX_ROLE_SYSTEM: return m->state == MSG_NOTICE ? "mixel" : "System";
    default: return "Tool";
    }
}

/* (Re)renders a message for `width` columns when its text or the width changed. */
static void msg_render(struct msg *m, int width) {
    if (m->r_valid && m->r_width == width && m->r_len == m->len)
        return;
    mx_rtext_free(&m->r);
    m->r_valid = false;
    char *clean = malloc(MX_SANITIZE_MAX(m->len));
    if (!clean)
        return;
    size_t n = mx_text_sanitize(m->text, m->len, clean, true);
    int base = m->role == MX_ROLE_USER        ? MX_ROLE_user
               : m->role == MX_ROLE_ASSISTANT ? MX_ROLE_assistant
               : m->state == MSG_NOTICE           ? MX_ROLE_muted
                                                  : MX_ROLE_system;
    if (mx_markdown_render(clean, n, width, base, &m->r) == 0) {
        m->r_valid = true;
        m->r_width = width;
        m->r_len = m->len;
    }
    free(clean);
}

/* Lines a message takes: header + rendered lines + image rows + a blank separator. */
static int msg_lines(struct app *a, struct msg *m, int width) {
    return 1 + (m->r_valid ? (int)m->r.n_lines : 0) + mx_app_img_rows(a, m, width, NULL) + 1;
}

static void draw_msg_line(struct app *a, struct msg *m, int line, int y, int x0, int width) {
    if (line == 0) {
        int role = m->role == MX_ROLE_USER ? MX_ROLE_user
                   : m->role == MX_ROLE_ASSISTANT ? MX_ROLE_heading : MX_ROLE_muted;
        const char *label = role_label(m);
        int x = mx_app_put_text(a, y, x0, label, strlen(label), width, role, MX_ATTR_BOLD);
        if (m->sib_count > 1) {
            char sib[48];
            int k = snprintf(sib, sizeof sib, "  \xe2\x97\x82 %d/%d \xe2\x96\xb8", m->sib_index,
                             m->sib_count); /* ◂ 2/3 ▸ */
            x += mx_app_put_text(a, y, x0 + x, sib, (size_t)k, width - x, MX_ROLE_muted, 0);
        }
        const char *tag = m->state == MSG_STREAMING ? "  \xe2\x80\xa6" /* … */
                          : m->state == MSG_STOPPED ? "  [stopped]"
                          : m->state == MSG_FAILED  ? "  [failed]" : "";
        mx_app_put_text(a, y, x0 + x, tag, strlen(tag), width - x,
                 m->state == MSG_FAILED ? MX_ROLE_error : MX_ROLE_muted, 0);
        return;
    }
    line--;
    int n_text = m->r_valid ? (int)m->r.n_lines : 0;
    if (line >= n_text) {
        if (a->img.gfx.mode == MX_GFX_BLOCKS)
            mx_app_draw_block_row(a, m, line - n_text, y, x0, width);
        return;
    }
    const struct mx_rline *l = &m->r.lines[line];
    int x = 0;
    size_t i = 0;
    while (i < l->len && x < width) {
        size_t j = i + 1;
        while (j < l->len && l->role[j] == l->role[i] && l->attrs[j] == l->attrs[i])
            j++;
        x += mx_app_put_text(a, y, x0 + x, l->text + i, j - i, width - x, l->role[i], l->attrs[i]);
        i = j;
    }
}

static void draw_conversation(struct app *a, int top, int left, int height, int width) {
    int total = 0;
    for (int i = 0; i < a->conv.n_msgs; i++) {
        msg_render(&a->conv.msgs[i], width);
        total += msg_lines(a, &a->conv.msgs[i], width);
    }
    int max_scroll = total > height ? total - height : 0;
    if (a->conv.scroll > max_scroll)
        a->conv.scroll = max_scroll;
    int first = total - height - a->conv.scroll; /* first visible line index (may be < 0) */
    int y = top, idx = 0;
    if (first < 0) {
        y += -first; /* short conversations sit at the bottom, next to the input */
        first = 0;
    }
    a->frame.n_placed = 0;
    for (int i = 0; i < a->conv.n_msgs && y < top + height; i++) {
        struct msg *m = &a->conv.msgs[i];
        int n = msg_lines(a, m, width);
        int n_text = m->r_valid ? (int)m->r.n_lines : 0;
        int n_img = n - n_text - 2;
        for (int l = 0; l < n && y < top + height; l++, idx++) {
            if (idx < first)
                continue;
            /* a sixel is sent only when the whole image fits the pane (never half an image) */
            if (n_img > 0 && l == 1 + n_text && y + n_img <= top + height &&
                a->img.gfx.mode == MX_GFX_SIXEL && a->frame.n_placed < 16) {
                a->frame.placed[a->frame.n_placed].msg = i;
                a->frame.placed[a->frame.n_placed].y = y;
                a->frame.placed[a->frame.n_placed].x = left;
                a->frame.placed[a->frame.n_placed].rows = n_img;
                a->frame.placed[a->frame.n_placed].box_cols = width;
                a->frame.placed[a->frame.n_placed].box_rows = IMAGE_ROWS;
                a->frame.n_placed++;
            }
            if (l < n - 1)
                draw_msg_line(a, &a->conv.msgs[i], l, y, left, width);
            y++;
        }
    }
    if (a->conv.scroll > 0) {
        char more[64];
        int k = snprintf(more, sizeof more, " \xe2\x86\x93 %d more (PgDn) ", a->conv.scroll);
        mx_app_put_text(a, top + height - 1, left + width - mx_text_width(more, (size_t)k), more,
                 (size_t)k, width, MX_ROLE_status, 0);
    }
}

static void draw_status(struct app *a, int y, int width) {
    attrset(mx_app_role_attr(a, MX_ROLE_status, 0));
    mvhline(y, 0, ' ', width);
    char left[512];
    const struct mx_engine *e = a->o.engine;
    int n_ctx = a->settings.n_ctx > 0 ? a->settings.n_ctx : e ? e->n_ctx : 0;
    char speed[32] = "";
    if (a->gen.busy || a->gen.tok_s > 0)
        snprintf(speed, sizeof speed, " \xc2\xb7 %.1f tok/s", a->gen.tok_s);
    snprintf(left, sizeof left, " %s%s%s \xc2\xb7 %s \xc2\xb7 %s \xc2\xb7 ctx %d/%d%s%s ",
             a->store.title[0] ? a->store.title : "", a->store.title[0] ? " \xc2\xb7 " : "",
             e ? e->name : "no model", e ? e->device : "-", a->store.db ? "saved" : "not saved",
             a->gen.ctx_used, n_ctx, speed,
             a->gen.busy ? " \xc2\xb7 generating (Esc stops)"
             : a->load.busy  ? " \xc2\xb7 loading" : "");
    char clean[MX_SANITIZE_MAX(512)];
    int x = 0;
    /* a notice comes first: it is what the user must see when the bar is too narrow for all */
    if (a->status.note[0]) {
        size_t n = mx_text_sanitize(a->status.note, strlen(a->status.note), clean, false);
        x = mx_app_put_text(a, y, 1, clean, n, width - 1,
                     a->status.is_error ? MX_ROLE_error : MX_ROLE_status, 0) + 1;
        if (x + 3 < width)
            x += mx_app_put_text(a, y, x, " \xe2\x94\x82", 4, width - x, MX_ROLE_status, 0);
    }
    size_t n = mx_text_sanitize(left, strlen(left), clean, false);
    if (x < width)
        x += mx_app_put_text(a, y, x, clean, n, width - x, MX_ROLE_status, 0);
    const char *hint = "/help ";
    int hw = (int)strlen(hint);
    if (!a->status.note[0] && x + hw < width)
        mx_app_put_text(a, y, width - hw, hint, (size_t)hw, hw, MX_ROLE_status, 0);
}

/* The input area: prompt + readline's buffer, wrapped, newest rows visible; places the cursor. */
static int input_rows_needed(const char *buf, int width) {
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

static void draw_input(struct app *a, int top, int rows, int width, int *cy, int *cx) {
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

/* The model picker: the GGUF files found on this machine, newest first. */
static void draw_picker(struct app *a, int top, int height, int width) {
    const char *head = "Choose a model: Up/Down, Enter loads it, Esc closes";
    mx_app_put_text(a, top, 0, head, strlen(head), width, MX_ROLE_heading, MX_ATTR_BOLD);
    const char *hint = "(or start mixel with --model PATH.gguf; /model PATH loads any file)";
    mx_app_put_text(a, top + 1, 0, hint, strlen(hint), width, MX_ROLE_muted, 0);
    int rows = height - 3;
    int first = a->pick.sel >= rows ? a->pick.sel - rows + 1 : 0;
    for (int r = 0; r < rows && first + r < (int)a->pick.models.n; r++) {
        const struct mx_model_entry *e = &a->pick.models.items[first + r];
        char desc[256], line[768], clean[MX_SANITIZE_MAX(768)];
        mx_discover_describe(e, desc, sizeof desc);
        snprintf(line, sizeof line, "  %s  \xc2\xb7 %s", e->name, desc);
        size_t n = mx_text_sanitize(line, strlen(line), clean, false);
        bool sel = first + r == a->pick.sel;
        if (sel) {
            attrset(mx_app_role_attr(a, MX_ROLE_selection, 0));
            mvhline(top + 3 + r, 0, ' ', width);
        }
        mx_app_put_text(a, top + 3 + r, 0, clean, n, width,
                        sel ? MX_ROLE_selection : MX_ROLE_normal, 0);
    }
}

static size_t picker_key(struct app *a, const unsigned char *b, size_t n) {
    if (n >= 3 && b[0] == 0x1b && (b[1] == '[' || b[1] == 'O') && (b[2] == 'A' || b[2] == 'B')) {
        a->pick.sel += b[2] == 'A' ? -1 : 1;
        if (a->pick.sel < 0)
            a->pick.sel = 0;
        if (a->pick.sel >= (int)a->pick.models.n)
            a->pick.sel = (int)a->pick.models.n - 1;
        return 3;
    }
    if (b[0] == '\r' || b[0] == '\n') {
        if (a->pick.sel < (int)a->pick.models.n)
            start_load(a, a->pick.models.items[a->pick.sel].path);
    } else if (b[0] == 0x1b || b[0] == 'q') {
        a->pick.open = false;
        mx_app_notice(a, false, "no model: /model PATH loads one");
    }
    return 1;
}

/* The sessions list: newest first, the open one marked, the selection highlighted. */
static void draw_sidebar(struct app *a, int top, int height, int width) {
    const char *head = a->side.confirm_delete ? "Delete? y/n" : "Sessions (F2)";
    mx_app_put_text(a, top, 0, head, strlen(head), width,
             a->side.confirm_delete ? MX_ROLE_warning : MX_ROLE_heading, MX_ATTR_BOLD);
    int rows = height - 1;
    int first = a->side.sel >= rows ? a->side.sel - rows + 1 : 0;
    for (int r = 0; r < rows && first + r < (int)a->side.sessions.n; r++) {
        const struct mx_session *ss = &a->side.sessions.v[first + r];
        char line[256], clean[MX_SANITIZE_MAX(256)];
        snprintf(line, sizeof line, "%s%s", ss->id == a->store.session ? "\xe2\x80\xa2 " : "  ",
                 ss->title[0] ? ss->title : "(untitled)");
        size_t n = mx_text_sanitize(line, strlen(line), clean, false);
        bool sel = first + r == a->side.sel && a->side.focus;
        if (sel) {
            attrset(mx_app_role_attr(a, MX_ROLE_selection, 0));
            mvhline(top + 1 + r, 0, ' ', width);
        }
        mx_app_put_text(a, top + 1 + r, 0, clean, n, width,
                        sel ? MX_ROLE_selection : MX_ROLE_normal, 0);
    }
    if (!a->side.sessions.n)
        mx_app_put_text(a, top + 1, 0, "  (none yet)", 12, width, MX_ROLE_muted, 0);
}

static void draw(struct app *a) {
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    attrset(mx_app_role_attr(a, MX_ROLE_normal, 0));
    erase();
    struct placed old[16];
    int n_old = a->frame.n_placed;
    memcpy(old, a->frame.placed, sizeof old);
    a->frame.n_placed = 0;
    if (a->gal.viewer >= 0 && a->gal.viewer < a->conv.n_msgs && cols >= MIN_COLS && rows >= MIN_ROWS) {
        mx_app_draw_viewer(a, rows, cols);
        curs_set(0);
        bool again = a->frame.full_repaint || n_old != 1 || old[0].msg != a->gal.viewer || old[0].rows != 0;
        if (again)
            for (int i = 0; i < n_old; i++)
                wredrawln(stdscr, old[i].y, old[i].rows ? old[i].rows : rows);
        refresh();
        a->frame.n_placed = 1;
        a->frame.placed[0].msg = a->gal.viewer;
        a->frame.placed[0].y = a->frame.placed[0].x = a->frame.placed[0].rows = 0; /* rows 0 marks the viewer */
        a->frame.placed[0].box_cols = cols;
        a->frame.placed[0].box_rows = rows - 2;
        if (a->img.gfx.mode == MX_GFX_SIXEL && again) {
            struct msg *m = &a->conv.msgs[a->gal.viewer];
            struct mx_app_bytes b = {0};
            struct mx_err err = {0};
            if (m->img.w && mx_app_encode_sixel(a, &m->img, cols, rows - 2, &b, &err) == 0) {
                mx_app_emit_at(a, 0, 0, b.p, b.n);
                fflush(stdout);
            }
            free(b.p);
        }
        a->frame.full_repaint = false;
        return;
    }
    curs_set(1);
    if (cols < MIN_COLS || rows < MIN_ROWS) {
        char msg[96];
        snprintf(msg, sizeof msg, "terminal too small (%dx%d, need %dx%d)", cols, rows, MIN_COLS,
                 MIN_ROWS);
        mvaddnstr(rows / 2, 0, msg, cols);
        refresh();
        return;
    }
    const char *buf = rl_line_buffer ? rl_line_buffer : "";
    int in_rows = input_rows_needed(buf, cols - 2);
    if (in_rows > INPUT_MAX_ROWS)
        in_rows = INPUT_MAX_ROWS;
    int conv_h = rows - in_rows - 2;
    int side_w = 0;
    if (a->side.open) {
        side_w = cols >= 70 ? 28 : cols; /* narrow terminals: the list takes the whole pane */
        draw_sidebar(a, 0, conv_h, side_w == cols ? cols : side_w - 1);
        if (side_w < cols) {
            attrset(mx_app_role_attr(a, MX_ROLE_border, 0));
            for (int y = 0; y < conv_h; y++)
                mvaddstr(y, side_w - 1, "\xe2\x94\x82"); /* │ */
        }
    }
    if (a->pick.open)
        draw_picker(a, 0, conv_h, cols);
    else if (a->gal.open)
        mx_app_draw_gallery(a, 0, conv_h, cols);
    else if (side_w < cols)
        draw_conversation(a, 0, side_w, conv_h, cols - side_w);
    attrset(mx_app_role_attr(a, MX_ROLE_border, 0));
    move(conv_h, 0);
    for (int x = 0; x < cols; x++) /* U+2500: ACS line drawing breaks in some UTF-8 setups */
        addstr("\xe2\x94\x80");
    draw_status(a, conv_h + 1, cols);
    int cy, cx;
    draw_input(a, conv_h + 2, in_rows, cols, &cy, &cx);
    move(cy, cx < cols ? cx : cols - 1);
    /* Sixels live outside curses' model of the screen: when one moves or goes away, the cells it
     * covered are repainted so no ghost stays, and it is sent again at its new place. */
    bool moved = a->frame.full_repaint || n_old != a->frame.n_placed ||
                 memcmp(old, a->frame.placed, (size_t)n_old * sizeof old[0]) != 0;
    if (moved)
        for (int i = 0; i < n_old; i++)
            wredrawln(stdscr, old[i].y, old[i].rows ? old[i].rows : rows);
    refresh();
    if (moved && a->frame.n_placed) {
        for (int i = 0; i < a->frame.n_placed; i++)
            mx_app_emit_sixel(a, &a->conv.msgs[a->frame.placed[i].msg], a->frame.placed[i].y, a->frame.placed[i].x,
                       a->frame.placed[i].box_cols, a->frame.placed[i].box_rows);
        fflush(stdout);
    }
    a->frame.full_repaint = false;
}

/* ---- generation --------------------------------------------------------------------------- */

struct gen_job {
    struct mx_engine *engine;
    struct mx_turn *turns;
    int n;
    struct mx_gen_settings settings;
};

static struct gen_job g_job; /* one job at a time: the worker enforces it */

static void gen_job_fn(struct mx_job *job, void *ud) {
    struct gen_job *gj = ud;
    gj->engine->reply(gj->engine, job, gj->turns, gj->n, &gj->settings);
}

static void gen_job_release(void) {
    for (int i = 0; i < g_job.n; i++)
        free((char *)g_job.turns[i].text);
    free(g_job.turns);
    memset(&g_job, 0, sizeof g_job);
}

/* Starts the answer to the conversation as it stands (the last message is the user's). */
static void start_generation(struct app *a) {
    if (!a->o.engine) {
        mx_app_notice(a, true, "no model loaded: start mixel with -m MODEL.gguf (or /model PATH)");
        return;
    }
    if (a->gen.busy)
        return;
    gen_job_release();
    int n = 0;
    g_job.turns = calloc((size_t)a->conv.n_msgs + 1, sizeof *g_job.turns);
    if (!g_job.turns)
        return;
    if (a->conv.system_prompt) {
        g_job.turns[n].role = MX_ROLE_SYSTEM;
        g_job.turns[n++].text = strdup(a->conv.system_prompt);
    }
    for (int i = 0; i < a->conv.n_msgs; i++) {
        const struct msg *m = &a->conv.msgs[i];
        if (m->state == MSG_NOTICE || m->state == MSG_FAILED || m->role == MX_ROLE_SYSTEM ||
            m->image)
            continue;
        g_job.turns[n].role = m->role;
        g_job.turns[n++].text = strdup(m->text);
    }
    g_job.n = n;
    g_job.engine = a->o.engine;
    g_job.settings = a->settings;
    struct msg *am = mx_app_msg_add(a, MX_ROLE_ASSISTANT, MSG_STREAMING, "");
    if (!am)
        return;
    if (a->store.session && store_writable(a)) {
        struct mx_err err = {0};
        int rc = mx_db_msg_begin(a->store.db, a->store.session, MX_DB_PARENT_LEAF, MX_ROLE_ASSISTANT,
                                 &am->db_id, &err);
        if (rc != 0)
            mx_app_store_warn(a, &err, rc);
    }
    a->gen.last_db_update = mx_time_s();
    if (mx_worker_start(a->w, gen_job_fn, &g_job) != 0) {
        a->conv.msgs[a->conv.n_msgs - 1].state = MSG_FAILED;
        mx_app_notice(a, true, "could not start the generation thread");
        return;
    }
    a->gen.busy = true;
    a->gen.t0 = mx_time_s();
    a->gen.pieces = 0;
    a->gen.tok_s = 0;
    a->conv.scroll = 0;
}

/* Re-reads one stored message's branch position (sibling index/count) into the view. */
static void refresh_siblings(struct app *a, struct msg *m) {
    struct mx_msg dm;
    if (!a->store.db || !m->db_id || mx_db_msg_get(a->store.db, m->db_id, &dm, NULL) != 0)
        return;
    m->sib_index = dm.sibling_index;
    m->sib_count = dm.sibling_count;
    mx_msg_deinit(&dm);
}

static struct msg *streaming_msg(struct app *a) {
    for (int i = a->conv.n_msgs - 1; i >= 0; i--)
        if (a->conv.msgs[i].state == MSG_STREAMING)
            return &a->conv.msgs[i];
    return NULL;
}

static void handle_events(struct app *a) {
    struct mx_event ev;
    while (mx_worker_poll(a->w, &ev)) {
        struct msg *m = streaming_msg(a);
        switch (ev.kind) {
        case MX_EV_TEXT:
            if (m && ev.text)
                msg_append(m, ev.text);
            /* a crash loses at most the last second of an answer */
            if (m && m->db_id && mx_time_s() - a->gen.last_db_update > 1.0) {
                a->gen.last_db_update = mx_time_s();
                struct mx_err err = {0};
                int rc = mx_db_msg_update(a->store.db, m->db_id, m->text, a->gen.pieces, &err);
                if (rc != 0)
                    mx_app_store_warn(a, &err, rc);
            }
            a->gen.pieces++;
            double dt = mx_time_s() - a->gen.t0;
            if (dt > 0.2)
                a->gen.tok_s = a->gen.pieces / dt;
            break;
        case MX_EV_PROGRESS: {
            /* a bar with an ETA from the rate so far: long histories take minutes on a CPU */
            if (ev.a <= 0 || a->status.prog_t0 <= 0)
                a->status.prog_t0 = mx_time_s();
            double frac = ev.b > 0 ? ev.a / ev.b : 0, el = mx_time_s() - a->status.prog_t0;
            char bar[64] = "", eta[32] = "";
            int fill = (int)(frac * 20 + 0.5);
            size_t o = 0;
            for (int k = 0; k < 20; k++)
                o += (size_t)snprintf(bar + o, sizeof bar - o, "%s",
                                      k < fill ? "\xe2\x96\x88" : "\xe2\x96\x91"); /* █ ░ */
            if (frac > 0.02 && frac < 1 && el > 0.5)
                snprintf(eta, sizeof eta, ", ETA %.0fs", el / frac - el);
            mx_app_notice(a, false, "%s %s %.0f/%.0f%s (Esc cancels)", ev.text ? ev.text : "",
                          bar, ev.a, ev.b, eta);
            if (ev.a >= ev.b)
                a->status.prog_t0 = 0;
            break;
        }
        case MX_EV_STATS:
            if (ev.a > 0)
                a->gen.tok_s = ev.a;
            if (ev.b > 0)
                a->gen.ctx_used = (int)ev.b;
            break;
        case MX_EV_NOTICE:
            mx_app_notice(a, false, "%s", ev.text ? ev.text : "");
            break;
        case MX_EV_DONE:
            if (a->load.busy) {
                finish_load(a, ev.code, ev.text);
                break;
            }
            a->gen.busy = false;
            struct mx_engine_llm_stats lst;
            if (a->o.engine && mx_engine_llm_stats(a->o.engine, &lst) == 0)
                a->gen.ctx_used = (int)lst.n_cached; /* the context meter: tokens in the cache */
            if (m)
                m->state = ev.code == 0 ? MSG_DONE : ev.code == MX_ECANCELED ? MSG_STOPPED
                                                                             : MSG_FAILED;
            if (m && m->db_id) {
                char timings[128];
                snprintf(timings, sizeof timings, "{\"tokens_per_s\": %.2f, \"seconds\": %.3f}",
                         a->gen.tok_s, mx_time_s() - a->gen.t0);
                struct mx_err err = {0};
                int rc = mx_db_msg_finish(a->store.db, m->db_id, m->text, a->gen.pieces, timings,
                                          ev.code == 0 ? MX_MSG_COMPLETE : MX_MSG_PARTIAL, &err);
                if (rc != 0)
                    mx_app_store_warn(a, &err, rc);
                else
                    refresh_siblings(a, m); /* "2/2" after a regenerate */
            }
            if (ev.code == MX_ECANCELED)
                mx_app_notice(a, false, "stopped: the partial answer is kept");
            else if (ev.code < 0)
                mx_app_notice(a, true, "generation failed: %s",
                       ev.text ? ev.text : mx_strerror(ev.code));
            break;
        }
        free(ev.text);
    }
}

/* ---- loading a model (worker thread) -------------------------------------------------------- */

struct load_job {
    mx_engine_loader loader;
    char *path;
    struct mx_gen_settings settings;
    struct mx_engine *result;
};

static struct load_job g_load;

static void load_job_fn(struct mx_job *job, void *ud) {
    struct load_job *lj = ud;
    struct mx_err err = {0};
    mx_job_post(job, MX_EV_NOTICE, "loading the model\xe2\x80\xa6", 0, 0);
    lj->result = lj->loader(lj->path, &lj->settings, &err);
    mx_job_done(job, lj->result ? 0 : (err.code ? err.code : MX_EIO), lj->result ? NULL : err.msg);
}

static void start_load(struct app *a, const char *path) {
    if (!a->o.load_engine) {
        mx_app_notice(a, true, "this build cannot load models (the LLM engine is not in it)");
        return;
    }
    if (a->gen.busy || a->load.busy) {
        mx_app_notice(a, true, "busy: wait for the current answer or load to finish");
        return;
    }
    free(g_load.path);
    g_load = (struct load_job){.loader = a->o.load_engine, .path = strdup(path),
                               .settings = a->settings};
    if (!g_load.path || mx_worker_start(a->w, load_job_fn, &g_load) != 0) {
        mx_app_notice(a, true, "could not start loading");
        return;
    }
    a->load.busy = true;
}

/* The load job ended: switch engines, or say why not. */
static void finish_load(struct app *a, int code, const char *msg) {
    a->load.busy = false;
    if (code != 0 || !g_load.result) {
        mx_app_notice(a, true, "cannot load %s: %s", g_load.path, msg ? msg : mx_strerror(code));
        return;
    }
    snapshot_save(a);
    if (a->load.owned)
        a->load.owned->free(a->load.owned);
    a->load.owned = a->o.engine = g_load.result;
    g_load.result = NULL;
    a->o.model_path = g_load.path; /* kept alive in g_load until exit */
    a->pick.open = false;
    a->gen.ctx_used = 0;
    const char *warn = mx_engine_llm_warning(a->o.engine);
    if (warn && warn[0])
        mx_app_notice(a, true, "loaded %s: %s", a->o.engine->name, warn);
    else
        mx_app_notice(a, false, "loaded %s", a->o.engine->name);
    snapshot_load(a);
}

static void stop_generation(struct app *a) {
    if (a->gen.busy)
        mx_worker_cancel(a->w);
}

/* ---- history ------------------------------------------------------------------------------ */

/* Storage problems never stop the chat: the message stays on screen and the status line says
 * it was not saved (DESIGN.md: chat continues in memory with a visible warning). */
void mx_app_store_warn(struct app *a, const struct mx_err *err, int rc) {
    mx_app_notice(a, true, "not saved: %s", mx_err_msg(err, rc));
}

static bool store_writable(const struct app *a) {
    return a->store.db && !mx_db_readonly(a->store.db);
}

static void settings_json(const struct app *a, char *buf, size_t size) {
    /* the seed goes out as a signed 64-bit integer (what JSON readers take) and comes back
     * through the same two's-complement cast in settings_from_json */
    snprintf(buf, size, "{\"temp\": %g, \"top_p\": %g, \"seed\": %lld, \"n_ctx\": %d}",
             (double)a->settings.temp, (double)a->settings.top_p, (long long)a->settings.seed,
             a->settings.n_ctx);
}

/* A session's stored settings (written by settings_json); missing or mistyped keys keep the
 * current value. */
static void settings_from_json(struct app *a, const char *text) {
    json_t *o = json_loads(text, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return;
    }
    json_t *v;
    if (json_is_number(v = json_object_get(o, "temp")))
        a->settings.temp = (float)json_number_value(v);
    if (json_is_number(v = json_object_get(o, "top_p")))
        a->settings.top_p = (float)json_number_value(v);
    if (json_is_integer(v = json_object_get(o, "seed")))
        a->settings.seed = (uint64_t)json_integer_value(v);
    if (json_is_integer(v = json_object_get(o, "n_ctx")))
        a->settings.n_ctx = (int)json_integer_value(v);
    json_decref(o);
}

int mx_app_ensure_session(struct app *a) {
    if (a->store.session || !store_writable(a))
        return a->store.session ? 0 : -1;
    struct mx_err err = {0};
    char js[256];
    settings_json(a, js, sizeof js);
    const char *model = a->o.model_path ? a->o.model_path : NULL;
    int rc = mx_db_session_create(a->store.db, NULL, model, NULL, NULL, js, &a->store.session, &err);
    if (rc != 0) {
        mx_app_store_warn(a, &err, rc);
        return rc;
    }
    return 0;
}

static void store_settings(struct app *a) {
    if (!a->store.session || !store_writable(a))
        return;
    char js[256];
    settings_json(a, js, sizeof js);
    struct mx_err err = {0};
    int rc = mx_db_session_set_model(a->store.db, a->store.session, NULL, NULL, NULL, js, &err);
    if (rc != 0)
        mx_app_store_warn(a, &err, rc);
}

static void refresh_title(struct app *a) {
    a->store.title[0] = '\0';
    struct mx_session s;
    if (a->store.db && a->store.session && mx_db_session_get(a->store.db, a->store.session, &s, NULL) == 0) {
        snprintf(a->store.title, sizeof a->store.title, "%s", s.title);
        mx_session_deinit(&s);
    }
}

/* KV snapshots: the cache of the session being left is saved so that coming back to it does not
 * re-process its whole history; the one of the session being entered is loaded when it was made
 * with this model (else the next answer re-prefills, with progress). Only between jobs: the
 * engine belongs to the worker while one runs. The scripted engine answers MX_EINVAL: ignored. */
static void snapshot_save(struct app *a) {
    if (!a->o.engine || !a->store.session || a->gen.busy || a->load.busy ||
        !mx_engine_llm_template(a->o.engine))
        return;
    char path[4200], dir[4096];
    struct mx_err err = {0};
    if (mx_kvsnap_path(path, sizeof path, a->store.session, &err) != 0)
        return;
    int rc = mx_engine_llm_save(a->o.engine, path, &err);
    if (rc != 0 && rc != MX_EINVAL) {
        mx_app_notice(a, true, "KV snapshot not saved: %s", mx_err_msg(&err, rc));
        return;
    }
    if (rc == 0 && mx_kvsnap_dir(dir, sizeof dir, NULL) == 0)
        mx_kvsnap_evict(dir, MX_KVSNAP_DEFAULT_CAP, path, NULL, NULL);
}

static void snapshot_load(struct app *a) {
    if (!a->o.engine || !a->store.session || !mx_engine_llm_template(a->o.engine))
        return;
    char path[4200];
    struct mx_err err = {0};
    if (mx_kvsnap_path(path, sizeof path, a->store.session, &err) != 0)
        return;
    int rc = mx_engine_llm_load(a->o.engine, path, &err);
    struct mx_engine_llm_stats lst;
    if (rc == 0 && mx_engine_llm_stats(a->o.engine, &lst) == 0)
        a->gen.ctx_used = (int)lst.n_cached;
    if (rc == 0)
        mx_app_notice(a, false, "resumed from the KV snapshot: no re-processing needed");
    else if (rc != MX_ENOENT)
        mx_app_notice(a, false, "%s: the history will be processed again", mx_err_msg(&err, rc));
}

/* Replaces the view with session id's active branch. Returns 0 or an MX_E* code. */
static int load_session(struct app *a, int64_t id) {
    struct mx_msg_list l;
    struct mx_err err = {0};
    int rc = mx_db_active_path(a->store.db, id, &l, &err);
    if (rc != 0) {
        mx_app_notice(a, true, "%s", mx_err_msg(&err, rc));
        return rc;
    }
    bool switching = a->store.session != id;
    if (switching)
        snapshot_save(a);
    conversation_clear(a);
    a->store.session = id;
    for (size_t i = 0; i < l.n; i++) {
        const struct mx_msg *dm = &l.v[i];
        enum msg_state st = dm->state == MX_MSG_COMPLETE ? MSG_DONE : MSG_STOPPED;
        struct msg *m = mx_app_msg_add(a, dm->role, st, dm->content);
        if (!m)
            break;
        m->db_id = dm->id;
        m->sib_index = dm->sibling_index;
        m->sib_count = dm->sibling_count;
    }
    mx_msg_list_free(&l);
    struct mx_db_image_list imgs;
    if (mx_db_image_list(a->store.db, id, &imgs, NULL) == 0) {
        for (size_t k = 0; k < imgs.n; k++)
            for (int i = 0; i < a->conv.n_msgs; i++)
                if (imgs.v[k].message && a->conv.msgs[i].db_id == imgs.v[k].message &&
                    !a->conv.msgs[i].image)
                    a->conv.msgs[i].image = strdup(imgs.v[k].path);
        mx_db_image_list_free(&imgs);
    }
    struct mx_session s;
    if (mx_db_session_get(a->store.db, id, &s, NULL) == 0) {
        settings_from_json(a, s.sampling);
        mx_session_deinit(&s);
    }
    refresh_title(a);
    if (switching) {
        a->gen.ctx_used = 0; /* the other session's cache is not this one's */
        snapshot_load(a);
    }
    return 0;
}

/* After a store operation that moved the active leaf: re-read the branch so sibling counts
 * ("2/3") are current, keeping what is on screen if that fails. */
static void reload_session(struct app *a) {
    if (a->store.db && a->store.session && !a->gen.busy)
        load_session(a, a->store.session);
}

/* ---- slash commands ----------------------------------------------------------------------- */

typedef void (*slash_fn)(struct app *a, const char *arg);

static void cmd_help(struct app *a, const char *arg);

static void cmd_quit(struct app *a, const char *arg) {
    (void)arg;
    a->quit = true;
}

/* /new and /clear: leave the current session (saved in history, its KV cache snapshotted) and
 * start an empty conversation; the next message creates a new session. */
static void start_fresh(struct app *a, const char *what) {
    if (a->gen.busy) {
        mx_app_notice(a, true, "an answer is still being generated: Esc stops it");
        return;
    }
    snapshot_save(a);
    if (a->o.engine && mx_engine_llm_template(a->o.engine))
        mx_engine_llm_clear(a->o.engine);
    conversation_clear(a);
    a->gen.ctx_used = 0;
    a->store.session = 0;
    a->store.title[0] = '\0';
    mx_app_notice(a, false, "%s", what);
}

static void cmd_clear(struct app *a, const char *arg) {
    (void)arg;
    start_fresh(a, "conversation cleared (the saved session is in /sessions)");
}

static void cmd_stop(struct app *a, const char *arg) {
    (void)arg;
    if (!a->gen.busy)
        mx_app_notice(a, false, "nothing is being generated");
    stop_generation(a);
}

static void cmd_theme(struct app *a, const char *arg) {
    if (!arg || !arg[0]) {
        mx_app_notice(a, false, "theme: %s (dark, light, high-contrast, basic16 or your own)",
               a->style.theme_name);
        return;
    }
    struct mx_theme t;
    struct mx_err err = {0};
    if (mx_theme_load(arg, a->o.themes_dir, &t, &err) != 0) {
        mx_app_notice(a, true, "%s", err.msg);
        return;
    }
    a->style.theme = t;
    snprintf(a->style.theme_name, sizeof a->style.theme_name, "%s", arg);
    apply_theme(a);
    mx_app_notice(a, false, "theme %s", arg);
}

static void cmd_system(struct app *a, const char *arg) {
    free(a->conv.system_prompt);
    a->conv.system_prompt = arg && arg[0] ? strdup(arg) : NULL;
    mx_app_notice(a, false, a->conv.system_prompt ? "system prompt set" : "system prompt cleared");
}

static int parse_float_arg(struct app *a, const char *name, const char *arg, float lo, float hi,
                           float *out) {
    char *end;
    float v = arg ? strtof(arg, &end) : 0;
    if (!arg || !arg[0] || *end || v < lo || v > hi) {
        mx_app_notice(a, true, "%s takes a number from %g to %g", name, lo, hi);
        return -1;
    }
    *out = v;
    mx_app_notice(a, false, "%s = %g", name, v);
    return 0;
}

static void cmd_temp(struct app *a, const char *arg) {
    if (parse_float_arg(a, "/temp", arg, 0, 5, &a->settings.temp) == 0)
        store_settings(a);
}

static void cmd_top_p(struct app *a, const char *arg) {
    if (parse_float_arg(a, "/top-p", arg, 0, 1, &a->settings.top_p) == 0)
        store_settings(a);
}

static void cmd_seed(struct app *a, const char *arg) {
    char *end;
    unsigned long long v = arg ? strtoull(arg, &end, 10) : 0;
    if (!arg || !arg[0] || *end) {
        mx_app_notice(a, true, "/seed takes a whole number");
        return;
    }
    a->settings.seed = v;
    store_settings(a);
    mx_app_notice(a, false, "seed = %llu", v);
}

static void cmd_ctx(struct app *a, const char *arg) {
    char *end;
    long v = arg ? strtol(arg, &end, 10) : 0;
    if (!arg || !arg[0] || *end || v < 16 || v > 1 << 20) {
        mx_app_notice(a, true, "/ctx takes a context size in tokens (16 .. 1048576)");
        return;
    }
    a->settings.n_ctx = (int)v;
    store_settings(a);
    mx_app_notice(a, false, "context = %ld tokens (applies when the model is next loaded)", v);
}

static void cmd_regen(struct app *a, const char *arg) {
    (void)arg;
    if (a->gen.busy)
        return;
    int last = a->conv.n_msgs - 1;
    while (last >= 0 && a->conv.msgs[last].state == MSG_NOTICE)
        last--;
    if (last < 0 || a->conv.msgs[last].role != MX_ROLE_ASSISTANT) {
        mx_app_notice(a, true, "/regen: no answer to regenerate");
        return;
    }
    /* the new answer is a sibling of the old one: continue from the user message before it */
    if (a->store.db && a->store.session && last > 0 && a->conv.msgs[last - 1].db_id) {
        struct mx_err err = {0};
        int rc = mx_db_set_leaf(a->store.db, a->store.session, a->conv.msgs[last - 1].db_id, &err);
        if (rc != 0)
            mx_app_store_warn(a, &err, rc);
    }
    msg_free(&a->conv.msgs[last]);
    memmove(&a->conv.msgs[last], &a->conv.msgs[last + 1], (size_t)(a->conv.n_msgs - last - 1) * sizeof *a->conv.msgs);
    a->conv.n_msgs--;
    start_generation(a);
}

static void cmd_edit(struct app *a, const char *arg) {
    (void)arg;
    if (a->gen.busy)
        return;
    for (int i = a->conv.n_msgs - 1; i >= 0; i--) {
        if (a->conv.msgs[i].role != MX_ROLE_USER)
            continue;
        rl_replace_line(a->conv.msgs[i].text, 0);
        rl_point = rl_end;
        /* the edited message becomes a sibling of this one: continue from its parent */
        struct mx_msg dm;
        if (a->store.db && a->store.session && a->conv.msgs[i].db_id &&
            mx_db_msg_get(a->store.db, a->conv.msgs[i].db_id, &dm, NULL) == 0) {
            struct mx_err err = {0};
            int rc = mx_db_set_leaf(a->store.db, a->store.session, dm.parent, &err);
            if (rc != 0)
                mx_app_store_warn(a, &err, rc);
            mx_msg_deinit(&dm);
        }
        for (int j = i; j < a->conv.n_msgs; j++)
            msg_free(&a->conv.msgs[j]);
        a->conv.n_msgs = i;
        mx_app_notice(a, false, "editing your last message: Enter sends it again");
        return;
    }
    mx_app_notice(a, true, "/edit: no message of yours to edit");
}

/* OSC 52 puts text on the clipboard of the terminal the user sits at, even over SSH. It is our
 * own escape sequence written directly, never model output passed through. */
static void osc52_copy(const char *text, size_t len) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputs("\033]52;c;", stdout);
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned char)text[i] << 16;
        if (i + 1 < len)
            v |= (unsigned char)text[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)text[i + 2];
        putchar(b64[(v >> 18) & 63]);
        putchar(b64[(v >> 12) & 63]);
        putchar(i + 1 < len ? b64[(v >> 6) & 63] : '=');
        putchar(i + 2 < len ? b64[v & 63] : '=');
    }
    fputs("\a", stdout);
    fflush(stdout);
}

static void cmd_copy(struct app *a, const char *arg) {
    (void)arg;
    for (int i = a->conv.n_msgs - 1; i >= 0; i--) {
        struct msg *m = &a->conv.msgs[i];
        if (m->role != MX_ROLE_ASSISTANT)
            continue;
        if (!m->r_valid)
            msg_render(m, COLS > 4 ? COLS : 80);
        if (m->r_valid && m->r.last_code) {
            osc52_copy(m->r.last_code, strlen(m->r.last_code));
            mx_app_notice(a, false, "copied the last code block (%zu bytes) to the clipboard",
                   strlen(m->r.last_code));
            return;
        }
    }
    mx_app_notice(a, true, "/copy: no code block in the answers yet");
}

static void cmd_export(struct app *a, const char *arg) {
    char path[4200];
    if (arg && arg[0]) {
        snprintf(path, sizeof path, "%s", arg);
    } else {
        char dir[4096];
        struct mx_err err = {0};
        if (mx_path_data_dir(dir, sizeof dir, &err) != 0 || mx_mkdir_p(dir, &err) != 0) {
            mx_app_notice(a, true, "/export: %s", err.msg);
            return;
        }
        snprintf(path, sizeof path, "%s/export-%ld.md", dir, (long)time(NULL));
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        mx_app_notice(a, true, "/export: %s: %s", path, strerror(errno));
        return;
    }
    if (a->conv.system_prompt)
        fprintf(f, "## System\n\n%s\n\n", a->conv.system_prompt);
    for (int i = 0; i < a->conv.n_msgs; i++) {
        const struct msg *m = &a->conv.msgs[i];
        if (m->state == MSG_NOTICE)
            continue;
        fprintf(f, "## %s%s\n\n%s\n\n", role_label(m), m->state == MSG_STOPPED ? " (stopped)" : "",
                m->text);
    }
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        mx_app_notice(a, true, "/export: writing %s failed", path);
        return;
    }
    mx_app_notice(a, false, "exported to %s", path);
}

static void cmd_needs(struct app *a, const char *what) {
    mx_app_notice(a, true, "%s is not in this build yet", what);
}

static void cmd_image(struct app *a, const char *arg) {
    (void)arg;
    cmd_needs(a, "image generation (/image)");
}

static void sidebar_refresh(struct app *a) {
    mx_session_list_free(&a->side.sessions);
    memset(&a->side.sessions, 0, sizeof a->side.sessions);
    if (a->store.db)
        mx_db_session_list(a->store.db, 500, &a->side.sessions, NULL);
    if (a->side.sel >= (int)a->side.sessions.n)
        a->side.sel = a->side.sessions.n ? (int)a->side.sessions.n - 1 : 0;
    if (a->side.sel < 0)
        a->side.sel = 0;
}

static void cmd_sessions(struct app *a, const char *arg) {
    (void)arg;
    if (!a->store.db) {
        mx_app_notice(a, true, "no history database: sessions are not saved");
        return;
    }
    a->side.open = true;
    a->side.focus = true;
    sidebar_refresh(a);
    for (size_t i = 0; i < a->side.sessions.n; i++)
        if (a->side.sessions.v[i].id == a->store.session)
            a->side.sel = (int)i;
    mx_app_notice(a, false, "sessions: Up/Down, Enter opens, n new, d delete, Tab back to typing");
}

static void cmd_resume(struct app *a, const char *arg) {
    if (!a->store.db) {
        mx_app_notice(a, true, "no history database: sessions are not saved");
        return;
    }
    if (a->gen.busy) {
        mx_app_notice(a, true, "an answer is still being generated: Esc stops it");
        return;
    }
    if (!arg || !arg[0]) {
        cmd_sessions(a, arg);
        return;
    }
    int64_t id;
    struct mx_err err = {0};
    int rc = mx_db_session_find(a->store.db, arg, &id, &err);
    if (rc != 0) {
        mx_app_notice(a, true, "%s", mx_err_msg(&err, rc));
        return;
    }
    if (load_session(a, id) == 0)
        mx_app_notice(a, false, "resumed session %lld", (long long)id);
}

static void cmd_search(struct app *a, const char *arg) {
    if (!a->store.db || !arg || !arg[0]) {
        mx_app_notice(a, true, a->store.db ? "/search takes words to look for" : "no history database");
        return;
    }
    struct mx_db_hit_list hits;
    struct mx_err err = {0};
    int rc = mx_db_search(a->store.db, arg, 20, &hits, &err);
    if (rc != 0) {
        mx_app_notice(a, true, "%s", mx_err_msg(&err, rc));
        return;
    }
    char buf[8192];
    size_t o = (size_t)snprintf(buf, sizeof buf, "**Search: %s** (%zu found; /resume ID opens)\n",
                                arg, hits.n);
    for (size_t i = 0; i < hits.n && o < sizeof buf - 1; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "- session %lld: %s\n",
                              (long long)hits.v[i].session, hits.v[i].snippet);
    mx_db_hit_list_free(&hits);
    mx_app_msg_add(a, MX_ROLE_SYSTEM, MSG_NOTICE, buf);
    a->conv.scroll = 0;
}

static void cmd_model(struct app *a, const char *arg) {
    if (!arg || !arg[0]) {
        mx_app_notice(a, false, "model: %s (/model PATH loads another GGUF file)",
               a->o.engine ? a->o.engine->name : "none");
        return;
    }
    start_load(a, arg);
}

static void cmd_new(struct app *a, const char *arg) {
    (void)arg;
    start_fresh(a, "new conversation");
}

static void cmd_title(struct app *a, const char *arg) {
    if (!arg || !arg[0]) {
        mx_app_notice(a, true, "/title takes the new title");
        return;
    }
    if (mx_app_ensure_session(a) != 0) {
        mx_app_notice(a, true, "/title: sessions are not being saved");
        return;
    }
    struct mx_err err = {0};
    int rc = mx_db_session_rename(a->store.db, a->store.session, arg, &err);
    if (rc != 0) {
        mx_app_store_warn(a, &err, rc);
        return;
    }
    refresh_title(a);
    mx_app_notice(a, false, "renamed");
}

/* X(name, args, help, fn): the slash commands; drives /help and Tab completion. */
#define SLASH_COMMANDS(X)                                                                         \
    X("/help",     "",       "this list of commands and keys",                cmd_help)           \
    X("/new",      "",       "start a new conversation",                      cmd_new)            \
    X("/sessions", "",       "saved sessions",                                cmd_sessions)       \
    X("/resume",   "ID",     "continue a saved session (id or title)",        cmd_resume)         \
    X("/search",   "WORDS",  "search every saved message",                    cmd_search)         \
    X("/title",    "TEXT",   "rename this session",                           cmd_title)          \
    X("/model",    "PATH",   "load another GGUF model",                       cmd_model)          \
    X("/system",   "TEXT",   "set (or clear) the system prompt",              cmd_system)         \
    X("/temp",     "T",      "sampling temperature (0 = greedy)",             cmd_temp)           \
    X("/top-p",    "P",      "nucleus sampling threshold",                    cmd_top_p)          \
    X("/seed",     "N",      "random seed",                                   cmd_seed)           \
    X("/ctx",      "N",      "context size in tokens",                        cmd_ctx)            \
    X("/regen",    "",       "regenerate the last answer",                    cmd_regen)          \
    X("/edit",     "",       "edit your last message and resend it",          cmd_edit)           \
    X("/stop",     "",       "stop the answer being generated (also Esc)",    cmd_stop)           \
    X("/image",    "PROMPT", "generate an image",                             cmd_image)          \
    X("/show",     "PATH",   "attach a PNG/JPEG image to the conversation",   mx_app_cmd_show)    \
    X("/gallery",  "",       "the conversation's images as thumbnails",       mx_app_cmd_gallery) \
    X("/save",     "PATH",   "copy the selected (or last) image to PATH",     mx_app_cmd_save)    \
    X("/theme",    "NAME",   "dark, light, high-contrast, basic16, or yours", cmd_theme)          \
    X("/export",   "[PATH]", "save the conversation as Markdown",             cmd_export)         \
    X("/copy",     "",       "copy the last code block (OSC 52 clipboard)",   cmd_copy)           \
    X("/clear",    "",       "clear the conversation",                        cmd_clear)          \
    X("/quit",     "",       "leave mixel (also Ctrl-D on an empty line)",    cmd_quit)

static const struct { const char *name, *args, *help; slash_fn fn; } slash_table[] = {
#define SLASH_ENTRY(n, ar, h, f) {n, ar, h, f},
    SLASH_COMMANDS(SLASH_ENTRY)
#undef SLASH_ENTRY
};

/* ---- key actions (readline functions) ----------------------------------------------------- */

static int act_scroll_up(int count, int key);
static int act_scroll_down(int count, int key);
static int act_newline(int count, int key);
static int act_redraw(int count, int key);
static int act_editor(int count, int key);
static int act_sidebar(int count, int key);
static int act_branch_prev(int count, int key);
static int act_branch_next(int count, int key);
static int act_viewer(int count, int key);

/* X(function, key sequence, key name, help): mixel's own keys, bound through readline. */
#define KEY_ACTIONS(X)                                                                        \
    X(act_scroll_up,   "\033[5~",     "PgUp",         "scroll the conversation up")         \
    X(act_scroll_down, "\033[6~",     "PgDn",         "scroll the conversation down")       \
    X(act_newline,     "\033\r",      "Alt-Enter",    "new line in the message")            \
    X(act_newline,     "\033\n",      NULL,           NULL)                                 \
    X(act_newline,     "\033[13;2u",  NULL,           NULL)                                 \
    X(act_newline,     "\033[27;2;13~", NULL,         NULL)                                 \
    X(act_redraw,      "\014",        "Ctrl-L",       "redraw the screen")                  \
    X(act_editor,      "\030\005",    "Ctrl-X Ctrl-E", "write the message in $EDITOR")      \
    X(act_sidebar,     "\033OQ",      "F2",           "sessions list (Up/Down, Enter, n, d)") \
    X(act_sidebar,     "\033[12~",    NULL,           NULL)                                 \
    X(act_branch_prev, "\033[1;3D",   "Alt-Left",     "previous branch of the last answer")  \
    X(act_branch_next, "\033[1;3C",   "Alt-Right",    "next branch of the last answer")      \
    X(act_viewer,      "\033OR",      "F3",           "the last image full screen")          \
    X(act_viewer,      "\033[13~",    NULL,           NULL)                                 \
    X(act_branch_prev, "\033\033[D",  NULL,           NULL)                                 \
    X(act_branch_next, "\033\033[C",  NULL,           NULL)

static void cmd_help(struct app *a, const char *arg) {
    (void)arg;
    char buf[4096];
    size_t o = 0;
    o += (size_t)snprintf(buf + o, sizeof buf - o, "**Commands**\n");
    for (size_t i = 0; i < sizeof slash_table / sizeof slash_table[0]; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "- `%s %s` %s\n", slash_table[i].name,
                              slash_table[i].args, slash_table[i].help);
    o += (size_t)snprintf(buf + o, sizeof buf - o, "\n**Keys**\n- `Enter` send\n"
                          "- `Esc` or `Ctrl-C` stop the answer\n- `Tab` complete commands and "
                          "paths\n- `Up/Down` input history\n");
#define HELP_KEY(f, seq, keyname, help)                                                     \
    if (keyname)                                                                            \
        o += (size_t)snprintf(buf + o, sizeof buf - o, "- `%s` %s\n", (const char *)keyname, \
                              (const char *)help);
    KEY_ACTIONS(HELP_KEY)
#undef HELP_KEY
    mx_app_msg_add(a, MX_ROLE_SYSTEM, MSG_NOTICE, buf);
    a->conv.scroll = 0;
}

static int act_scroll_up(int count, int key) {
    (void)count;
    (void)key;
    g_app->conv.scroll += LINES > 8 ? LINES / 2 : 4;
    return 0;
}

static int act_scroll_down(int count, int key) {
    (void)count;
    (void)key;
    g_app->conv.scroll -= LINES > 8 ? LINES / 2 : 4;
    if (g_app->conv.scroll < 0)
        g_app->conv.scroll = 0;
    return 0;
}

static int act_newline(int count, int key) {
    (void)count;
    (void)key;
    rl_insert_text("\n");
    return 0;
}

static int act_redraw(int count, int key) {
    (void)count;
    (void)key;
    clearok(curscr, TRUE);
    g_app->frame.full_repaint = true;
    return 0;
}

/* Ctrl-X Ctrl-E: the message so far goes to $EDITOR (default vi); what the editor saves comes
 * back into the input line. The terminal is handed to the editor and taken back. */
static int act_editor(int count, int key) {
    (void)count;
    (void)key;
    char path[] = "/tmp/mixel-msg-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) {
        mx_app_notice(g_app, true, "cannot create a temporary file: %s", strerror(errno));
        return 0;
    }
    const char *buf = rl_line_buffer ? rl_line_buffer : "";
    if (write(fd, buf, strlen(buf)) < 0)
        mx_app_notice(g_app, true, "cannot write the temporary file");
    close(fd);
    const char *ed = getenv("VISUAL");
    if (!ed || !ed[0])
        ed = getenv("EDITOR");
    if (!ed || !ed[0])
        ed = "vi";
    def_prog_mode();
    endwin();
    pid_t pid = fork();
    if (pid == 0) {
        execlp("sh", "sh", "-c", "exec $0 \"$1\"", ed, path, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid > 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
            ;
    reset_prog_mode();
    clearok(curscr, TRUE);
    FILE *f = fopen(path, "r");
    if (f) {
        char text[65536];
        size_t n = fread(text, 1, sizeof text - 1, f);
        fclose(f);
        while (n && text[n - 1] == '\n') /* editors add a final newline */
            n--;
        text[n] = '\0';
        rl_replace_line(text, 0);
        rl_point = rl_end;
    }
    unlink(path);
    return 0;
}

static int act_viewer(int count, int key) {
    (void)count;
    (void)key;
    mx_app_show_last_image(g_app);
    return 0;
}

static int act_sidebar(int count, int key) {
    (void)count;
    (void)key;
    if (g_app->side.open) {
        g_app->side.open = g_app->side.focus = false;
        g_app->status.note[0] = '\0';
    } else {
        cmd_sessions(g_app, NULL);
    }
    return 0;
}

/* Moves the conversation to the previous/next sibling of the last message that has siblings
 * (a regenerated answer or an edited question), continuing that branch to its newest leaf. */
static void branch_step(struct app *a, int dir) {
    if (!a->store.db || !a->store.session || a->gen.busy)
        return;
    for (int i = a->conv.n_msgs - 1; i >= 0; i--) {
        struct msg *m = &a->conv.msgs[i];
        if (m->sib_count < 2 || !m->db_id)
            continue;
        struct mx_msg_list sibs;
        int idx;
        struct mx_err err = {0};
        if (mx_db_msg_siblings(a->store.db, m->db_id, &sibs, &idx, &err) != 0)
            return;
        int to = idx - 1 + dir;
        int64_t target = to >= 0 && to < (int)sibs.n ? sibs.v[to].id : 0;
        mx_msg_list_free(&sibs);
        if (!target) {
            mx_app_notice(a, false, "no %s branch", dir < 0 ? "earlier" : "later");
            return;
        }
        int64_t leaf;
        int rc = mx_db_msg_latest_leaf(a->store.db, target, &leaf, &err);
        if (rc == 0)
            rc = mx_db_set_leaf(a->store.db, a->store.session, leaf, &err);
        if (rc != 0) {
            mx_app_store_warn(a, &err, rc);
            return;
        }
        reload_session(a);
        return;
    }
    mx_app_notice(a, false, "no branches here yet: /regen or /edit make one");
}

static int act_branch_prev(int count, int key) {
    (void)count;
    (void)key;
    branch_step(g_app, -1);
    return 0;
}

static int act_branch_next(int count, int key) {
    (void)count;
    (void)key;
    branch_step(g_app, +1);
    return 0;
}

/* Keys while the sessions list has the focus. Returns bytes consumed. */
static size_t sidebar_key(struct app *a, const unsigned char *b, size_t n) {
    if (a->side.confirm_delete) {
        a->side.confirm_delete = false;
        if (b[0] == 'y' && a->side.sel < (int)a->side.sessions.n) {
            int64_t id = a->side.sessions.v[a->side.sel].id;
            struct mx_err err = {0};
            int rc = mx_db_session_delete(a->store.db, id, &err);
            if (rc != 0) {
                mx_app_store_warn(a, &err, rc);
            } else {
                if (id == a->store.session) {
                    conversation_clear(a);
                    a->store.session = 0;
                    a->store.title[0] = '\0';
                }
                mx_app_notice(a, false, "session deleted");
            }
            sidebar_refresh(a);
        } else {
            mx_app_notice(a, false, "kept");
        }
        return 1;
    }
    if (n >= 3 && b[0] == 0x1b && (b[1] == '[' || b[1] == 'O') && (b[2] == 'A' || b[2] == 'B')) {
        a->side.sel += b[2] == 'A' ? -1 : 1;
        if (a->side.sel < 0)
            a->side.sel = 0;
        if (a->side.sel >= (int)a->side.sessions.n)
            a->side.sel = a->side.sessions.n ? (int)a->side.sessions.n - 1 : 0;
        return 3;
    }
    if (n >= 3 && b[0] == 0x1b && b[1] == 'O' && b[2] == 'Q') { /* F2 closes */
        a->side.open = a->side.focus = false;
        return 3;
    }
    switch (b[0]) {
    case '\r':
    case '\n':
        if (a->side.sel < (int)a->side.sessions.n && !a->gen.busy) {
            load_session(a, a->side.sessions.v[a->side.sel].id);
            a->side.focus = false;
            if (COLS < 70)
                a->side.open = false;
            mx_app_notice(a, false, "resumed: %s", a->store.title[0] ? a->store.title : "(untitled)");
        }
        break;
    case 'n':
        cmd_new(a, NULL);
        a->side.focus = false;
        break;
    case 'd':
        if (a->side.sessions.n)
            a->side.confirm_delete = true;
        break;
    case 'r':
        if (a->side.sel < (int)a->side.sessions.n && !a->gen.busy) {
            load_session(a, a->side.sessions.v[a->side.sel].id);
            rl_replace_line("/title ", 0);
            rl_point = rl_end;
            a->side.focus = false;
        }
        break;
    case '\t':
    case 'q':
    case 0x1b:
        a->side.focus = false;
        a->status.note[0] = '\0';
        if (COLS < 70)
            a->side.open = false;
        break;
    default:
        break;
    }
    return 1;
}

/* ---- readline glue ------------------------------------------------------------------------ */

static int rl_getc_hook(FILE *f) {
    (void)f;
    return g_app->rl.ch;
}

static int rl_input_available(void) {
    struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

static void rl_redisplay_hook(void) {
    /* the main loop draws the input area from rl_line_buffer after each batch of keys */
}

static void rl_prep_noop(int meta) {
    (void)meta;
}

static void rl_deprep_noop(void) {}

static void submit(struct app *a, char *line) {
    while (*line == ' ' || *line == '\t')
        line++;
    if (!*line)
        return;
    if (line[0] == '/') {
        char name[32];
        size_t n = strcspn(line, " \t");
        const char *arg = line + n;
        while (*arg == ' ' || *arg == '\t')
            arg++;
        snprintf(name, sizeof name, "%.*s", (int)(n < 31 ? n : 31), line);
        for (size_t i = 0; i < sizeof slash_table / sizeof slash_table[0]; i++)
            if (!strcmp(slash_table[i].name, name)) {
                slash_table[i].fn(a, arg);
                return;
            }
        mx_app_notice(a, true, "unknown command %s (see /help)", name);
        return;
    }
    if (a->gen.busy) {
        mx_app_notice(a, true, "an answer is still being generated: Esc stops it");
        return;
    }
    a->status.note[0] = '\0';
    int64_t id = 0;
    if (mx_app_ensure_session(a) == 0) {
        struct mx_err err = {0};
        int rc = mx_db_msg_append(a->store.db, a->store.session, MX_DB_PARENT_LEAF, MX_ROLE_USER, line, 0,
                                  NULL, &id, &err);
        if (rc != 0)
            mx_app_store_warn(a, &err, rc);
    }
    struct msg *m = mx_app_msg_add(a, MX_ROLE_USER, MSG_DONE, line);
    if (m)
        m->db_id = id;
    if (!a->store.title[0])
        refresh_title(a);
    start_generation(a);
}

static void rl_line_handler(char *line) {
    if (!line) { /* Ctrl-D on an empty line */
        g_app->quit = true;
        return;
    }
    if (line[0])
        add_history(line);
    submit(g_app, line);
    free(line);
}

static char *slash_generator(const char *text, int state) {
    static size_t i;
    if (!state)
        i = 0;
    while (i < sizeof slash_table / sizeof slash_table[0]) {
        const char *n = slash_table[i++].name;
        if (!strncmp(n, text, strlen(text)))
            return strdup(n);
    }
    return NULL;
}

static char **complete_hook(const char *text, int start, int end) {
    (void)end;
    if (start == 0 && text[0] == '/') {
        rl_attempted_completion_over = 1;
        return rl_completion_matches(text, slash_generator);
    }
    return NULL; /* readline's file name completion, for /model PATH and the like */
}

/* Several matches: show them in the status line instead of readline printing to the screen. */
static void rl_show_matches(char **matches, int n, int max_len) {
    (void)max_len;
    char buf[256];
    size_t o = 0;
    for (int i = 1; i <= n && o < sizeof buf - 1; i++)
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s ", matches[i]);
    mx_app_notice(g_app, false, "%s", buf);
}

static void readline_init(struct app *a) {
    rl_readline_name = "mixel";
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_change_environment = 0;
    rl_getc_function = rl_getc_hook;
    rl_input_available_hook = rl_input_available;
    rl_redisplay_function = rl_redisplay_hook;
    rl_prep_term_function = rl_prep_noop;
    rl_deprep_term_function = rl_deprep_noop;
    rl_attempted_completion_function = complete_hook;
    rl_completion_display_matches_hook = rl_show_matches;
    rl_outstream = fopen("/dev/null", "w"); /* readline must never write to the screen itself */
    char dir[4096];
    if (mx_path_data_dir(dir, sizeof dir, NULL) == 0) {
        snprintf(a->rl.history_path, sizeof a->rl.history_path, "%s/input_history", dir);
        read_history(a->rl.history_path);
    }
    rl_callback_handler_install("", rl_line_handler);
#define BIND_KEY(f, seq, keyname, help) rl_bind_keyseq(seq, f);
    KEY_ACTIONS(BIND_KEY)
#undef BIND_KEY
}

static void readline_deinit(struct app *a) {
    rl_callback_handler_remove();
    if (a->rl.history_path[0]) {
        char dir[4096];
        if (mx_path_data_dir(dir, sizeof dir, NULL) == 0 && mx_mkdir_p(dir, NULL) == 0) {
            stifle_history(2000);
            write_history(a->rl.history_path);
        }
    }
    if (rl_outstream && rl_outstream != stdout) {
        fclose(rl_outstream);
        rl_outstream = NULL;
    }
}

static void feed_readline(struct app *a, unsigned char c) {
    a->rl.ch = c;
    rl_callback_read_char();
}

/* ---- input -------------------------------------------------------------------------------- */

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

static void handle_input(struct app *a, const unsigned char *buf, size_t n) {
    static const char paste_start[] = "\033[200~", paste_end[] = "\033[201~";
    for (size_t i = 0; i < n;) {
        if (a->paste.active) {
            const unsigned char *e = memmem(buf + i, n - i, paste_end, 6);
            size_t upto = e ? (size_t)(e - buf) : n;
            paste_add(a, (const char *)buf + i, upto - i);
            if (!e)
                return;
            paste_finish(a);
            i = upto + 6;
            continue;
        }
        if (n - i >= 6 && !memcmp(buf + i, paste_start, 6)) {
            a->paste.active = true;
            i += 6;
            continue;
        }
        if (a->gal.viewer >= 0) { /* any key closes the full-screen image */
            a->gal.viewer = -1;
            a->frame.full_repaint = true;
            clearok(curscr, TRUE);
            i = n;
            continue;
        }
        if (a->gal.open) {
            size_t used = mx_app_gallery_key(a, buf + i, n - i);
            if (used) {
                i += used;
                continue;
            }
        }
        if (a->pick.open && !a->load.busy) {
            i += picker_key(a, buf + i, n - i);
            continue;
        }
        if (a->side.focus) {
            i += sidebar_key(a, buf + i, n - i);
            continue;
        }
        unsigned char c = buf[i];
        if (c == 0x1b && i + 1 == n && !rl_input_available()) {
            /* a lone Esc (nothing follows within the poll below): stop, don't start a key
             * sequence in readline */
            struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
            if (poll(&p, 1, 30) <= 0) {
                if (a->gen.busy)
                    stop_generation(a);
                i++;
                continue;
            }
        }
        if (c == 0x03) { /* Ctrl-C: stop the answer, else clear the line */
            if (a->gen.busy) {
                stop_generation(a);
            } else {
                rl_replace_line("", 0);
                rl_point = 0;
            }
            i++;
            continue;
        }
        feed_readline(a, c);
        i++;
        if (a->quit)
            return;
    }
}

/* ---- main loop ---------------------------------------------------------------------------- */

static void on_winch(int sig) {
    (void)sig;
    g_winch = 1;
    char one = 1;
    if (g_winch_pipe[1] >= 0 && write(g_winch_pipe[1], &one, 1) < 0) {
        /* the pipe is full: a wake-up is already pending */
    }
}

static void handle_resize(void) {
    struct winsize ws;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
        resizeterm(ws.ws_row, ws.ws_col);
    clearok(curscr, TRUE);
    if (g_app)
        g_app->frame.full_repaint = true;
}

int mx_app_run(const struct mx_app_opts *opts) {
    struct app a = {0};
    a.o = *opts;
    a.settings = opts->settings;
    g_app = &a;
    if (opts->system_prompt)
        a.conv.system_prompt = strdup(opts->system_prompt);
    struct mx_err err = {0};
    a.gal.viewer = -1;
    mx_gfx_detect(opts->graphics, 0, &a.img.gfx, NULL); /* before curses: it reads the answers */
    /* no theme asked for: follow the terminal's background (OSC 11) so text stays readable */
    const char *theme = opts->theme;
    if (!theme) {
        const unsigned char *bg = a.img.gfx.bg;
        bool light = a.img.gfx.bg_known && 299 * bg[0] + 587 * bg[1] + 114 * bg[2] > 128000;
        theme = light ? "light" : "dark";
    }
    snprintf(a.style.theme_name, sizeof a.style.theme_name, "%s", theme);
    int theme_rc = mx_theme_load(theme, opts->themes_dir, &a.style.theme, &err);
    if (mx_worker_new(&a.w) != 0) {
        fprintf(stderr, "mixel: cannot start the worker thread\n");
        return 1;
    }
    if (pipe(g_winch_pipe) != 0) {
        mx_worker_free(a.w);
        return 1;
    }
    int fl = fcntl(g_winch_pipe[0], F_GETFL);
    fcntl(g_winch_pipe[0], F_SETFL, fl | O_NONBLOCK);
    fl = fcntl(g_winch_pipe[1], F_GETFL);
    fcntl(g_winch_pipe[1], F_SETFL, fl | O_NONBLOCK);
    /* our SIGWINCH handler, installed before initscr so ncurses keeps it */
    struct sigaction sa = {0};
    sa.sa_handler = on_winch;
    sigaction(SIGWINCH, &sa, NULL);

    initscr();
    raw();
    noecho();
    nonl();
    keypad(stdscr, FALSE); /* readline parses key sequences itself */
    apply_theme(&a);
    fputs("\033[?2004h", stdout); /* bracketed paste on */
    fflush(stdout);
    readline_init(&a);
    if (theme_rc != 0)
        mx_app_notice(&a, true, "%s: using the default theme", err.msg);
    if (!opts->no_history) {
        struct mx_db_opts dbo = {.path = opts->db_path};
        struct mx_err derr = {0};
        int rc = mx_db_open(&a.store.db, &dbo, &derr);
        if (rc != 0)
            mx_app_notice(&a, true, "history not saved: %s", mx_err_msg(&derr, rc));
        else if (mx_db_readonly(a.store.db))
            mx_app_notice(&a, true, "history is read-only (%s): new messages are not saved",
                   mx_db_readonly_reason(a.store.db));
    }
    if (a.store.db && opts->resume) {
        struct mx_session_list l = {0};
        if (!opts->resume[0]) {
            if (mx_db_session_list(a.store.db, 1, &l, NULL) == 0 && l.n)
                load_session(&a, l.v[0].id);
            else
                mx_app_notice(&a, false, "no saved session to resume yet");
            mx_session_list_free(&l);
        } else {
            cmd_resume(&a, opts->resume);
        }
    }
    if (opts->engine) {
        const char *warn = mx_engine_llm_warning(opts->engine);
        if (warn && warn[0])
            mx_app_notice(&a, true, "%s", warn);
    }
    if (!opts->engine && opts->discover) {
        const char *home = getenv("HOME");
        char cwd[4096];
        if (mx_discover_models(home, getcwd(cwd, sizeof cwd) ? cwd : NULL, &a.pick.models, NULL) == 0 &&
            a.pick.models.n) {
            mx_discover_read_meta_all(&a.pick.models);
            a.pick.open = true;
        }
    }
    if (!opts->engine)
        mx_app_msg_add(&a, MX_ROLE_SYSTEM, MSG_NOTICE,
                "No model is loaded. Start mixel with `mixel chat -m MODEL.gguf`, or see "
                "`mixel --help`. Type /help for commands, /quit to leave.");
    draw(&a);
    while (!a.quit) {
        struct pollfd p[3] = {{.fd = STDIN_FILENO, .events = POLLIN},
                              {.fd = mx_worker_wake_fd(a.w), .events = POLLIN},
                              {.fd = g_winch_pipe[0], .events = POLLIN}};
        int r = poll(p, 3, -1);
        if (r < 0 && errno != EINTR)
            break;
        if (p[2].revents & POLLIN) {
            char tmp[64];
            while (read(g_winch_pipe[0], tmp, sizeof tmp) > 0)
                ;
        }
        if (g_winch) {
            g_winch = 0;
            handle_resize();
        }
        if (p[0].revents & (POLLIN | POLLHUP)) {
            unsigned char buf[4096];
            ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
            if (n <= 0 && !(n < 0 && errno == EINTR)) {
                a.quit = true; /* the terminal went away */
                break;
            }
            if (n > 0)
                handle_input(&a, buf, (size_t)n);
        }
        if (p[1].revents & POLLIN)
            handle_events(&a);
        draw(&a);
    }
    /* an answer still streaming is stopped and stored as partial before the engine goes away:
     * its DONE event finishes the message in the history */
    if (a.gen.busy || a.load.busy) {
        stop_generation(&a);
        double t_end = mx_time_s() + 10;
        while ((a.gen.busy || a.load.busy) && mx_time_s() < t_end) {
            struct pollfd p = {.fd = mx_worker_wake_fd(a.w), .events = POLLIN};
            poll(&p, 1, 100);
            handle_events(&a);
        }
    }
    mx_worker_free(a.w); /* joins the engine thread */
    a.gen.busy = a.load.busy = false;
    snapshot_save(&a);
    gen_job_release();
    readline_deinit(&a);
    fputs("\033[?2004l", stdout);
    fflush(stdout);
    endwin();
    conversation_clear(&a);
    mx_session_list_free(&a.side.sessions);
    mx_model_list_free(&a.pick.models);
    free(a.img.pairs);
    if (a.load.owned)
        a.load.owned->free(a.load.owned);
    if (g_load.result)
        g_load.result->free(g_load.result);
    free(g_load.path);
    memset(&g_load, 0, sizeof g_load);
    mx_db_close(a.store.db);
    free(a.conv.msgs);
    free(a.conv.system_prompt);
    free(a.paste.buf);
    close(g_winch_pipe[0]);
    close(g_winch_pipe[1]);
    g_winch_pipe[0] = g_winch_pipe[1] = -1;
    g_app = NULL;
    return 0;
}
