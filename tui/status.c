/* status.c - notices and the status bar. A notice (what just happened, or went wrong) shows
 * whole on the notice line above the input, wrapped, until Esc, the next message sent or the next
 * notice; the last MX_NOTICE_LOG of them, with their times, are kept for /log. The status bar
 * shows the session, model, device, context meter and speed, and the progress of long jobs as a
 * bar with an ETA. Notices are written for users: an internal error's text goes to /log only, as
 * the detail behind a notice that says what it means for the chat.
 */
#include "tui/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/base/text.h"
#include "core/base/util.h"
#include "tui/style.h"

/* Keeps a notice for /log: a notice repeated at once (the same text) only updates its time. */
static void log_notice(struct app *a, bool error, const char *text, const char *detail) {
    struct mx_app_status *st = &a->status;
    char full[sizeof st->log[0].text];
    snprintf(full, sizeof full, "%s%s%s", text, detail ? " \xe2\x80\x94 " : "", /* — */
             detail ? detail : "");
    struct mx_notice *last = st->n_log ? &st->log[(st->n_log - 1) % MX_NOTICE_LOG] : NULL;
    if (last && last->error == error && !strcmp(last->text, full)) {
        last->t = time(NULL);
        return;
    }
    struct mx_notice *n = &st->log[st->n_log++ % MX_NOTICE_LOG];
    n->t = time(NULL);
    n->error = error;
    memcpy(n->text, full, sizeof n->text);
}

/* A notice replaces the one shown, unless that one came moments ago with no key pressed since
 * (several at once: the start, a load): then it goes under it, so none is hidden at once. */
static void notice_v(struct app *a, bool error, const char *detail, const char *fmt, va_list ap) {
    struct mx_app_status *st = &a->status;
    char text[sizeof st->note];
    vsnprintf(text, sizeof text, fmt, ap);
    log_notice(a, error, text, detail);
    double now = mx_time_s();
    size_t have = strlen(st->note), n = strlen(text);
    bool stack = have && !st->replace && now - st->note_t < 2.0 && st->n_stacked < 8 &&
                 have + 1 + n < sizeof st->note;
    if (stack && strstr(st->note, text))
        return; /* already shown */
    if (stack) {
        st->note[have] = '\n';
        memcpy(st->note + have + 1, text, n + 1);
        st->err_mask |= (unsigned)error << st->n_stacked++;
    } else {
        memcpy(st->note, text, n + 1);
        st->err_mask = error;
        st->n_stacked = 1;
    }
    st->note_t = now;
    st->replace = false;
}

void mx_app_notice(struct app *a, bool error, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    notice_v(a, error, NULL, fmt, ap);
    va_end(ap);
}

void mx_app_notice_detail(struct app *a, bool error, const char *detail, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    notice_v(a, error, detail && detail[0] ? detail : NULL, fmt, ap);
    va_end(ap);
}

void mx_app_notice_clear(struct app *a) {
    a->status.note[0] = '\0';
    a->status.err_mask = 0;
    a->status.n_stacked = 0;
}

void mx_app_notice_keyed(struct app *a) {
    a->status.replace = true;
}

int mx_app_notice_log(const struct app *a, char *buf, size_t size) {
    const struct mx_app_status *st = &a->status;
    long first = st->n_log > MX_NOTICE_LOG ? st->n_log - MX_NOTICE_LOG : 0;
    size_t o = 0;
    int n = 0;
    buf[0] = '\0';
    for (long i = first; i < st->n_log && o + 1 < size; i++, n++) {
        const struct mx_notice *e = &st->log[i % MX_NOTICE_LOG];
        struct tm tm;
        char when[16] = "";
        if (localtime_r(&e->t, &tm))
            strftime(when, sizeof when, "%H:%M:%S", &tm);
        int k = snprintf(buf + o, size - o, "%s %s%s\n", when, e->error ? "(error) " : "",
                         e->text);
        o = k < 0 ? o : MX_MIN(size - 1, o + (size_t)k);
    }
    return n;
}

/* Storage problems never stop the chat: the message stays on screen and the notice says it was
 * not saved (DESIGN.md: chat continues in memory with a visible warning). */
void mx_app_store_warn(struct app *a, const struct mx_err *err, int rc) {
    mx_app_notice_detail(a, true, mx_err_msg(err, rc),
                         "not saved to the history (%s); the chat goes on in memory",
                         mx_strerror(rc));
}

/* The bar of a progress event: what, 20 cells, the amount (done/total as the caller words it), an
 * ETA from the rate so far (long histories and cold model files take minutes), and tail. */
static void progress_bar(struct app *a, const char *what, double done, double total,
                         const char *amount, const char *tail) {
    if (done <= 0 || a->status.prog_t0 <= 0)
        a->status.prog_t0 = mx_time_s();
    double frac = total > 0 ? done / total : 0, el = mx_time_s() - a->status.prog_t0;
    char bar[64] = "", eta[32] = "";
    mx_text_bar(frac, 20, bar, sizeof bar);
    if (frac > 0.02 && frac < 1 && el > 0.5)
        snprintf(eta, sizeof eta, ", ETA %.0fs", el / frac - el);
    snprintf(a->status.prog, sizeof a->status.prog, "%s %s %s%s%s", what ? what : "", bar,
             amount, eta, tail);
    if (done >= total) {
        a->status.prog_t0 = 0;
        a->status.prog[0] = '\0';
    }
}

void mx_app_progress(struct app *a, const char *what, double done, double total) {
    char amount[48];
    snprintf(amount, sizeof amount, "%.0f/%.0f", done, total);
    progress_bar(a, what, done, total, amount, " (Esc cancels)");
}

void mx_app_progress_bytes(struct app *a, const char *what, double done, double total) {
    char d[24], t[24], amount[56];
    mx_fmt_bytes(done, d, sizeof d);
    mx_fmt_bytes(total, t, sizeof t);
    snprintf(amount, sizeof amount, "%s of %s", d, t);
    progress_bar(a, what, done, total, amount, ""); /* a load cannot be stopped half-way */
}

void mx_app_progress_end(struct app *a) {
    a->status.prog[0] = '\0';
    a->status.prog_t0 = 0;
}

/* The notice's lines at width: the offsets and lengths of up to max of them. Returns how many
 * lines the whole notice takes (may be more than max). */
static int notice_lines(const char *s, int width, size_t *off, size_t *len, int max) {
    size_t n = strlen(s), pos = 0;
    int rows = 0;
    while (pos < n) {
        size_t next, k = mx_text_wrap(s + pos, n - pos, width, &next);
        if (rows < max) {
            off[rows] = pos;
            len[rows] = k;
        }
        rows++;
        if (next == 0)
            break;
        pos += next;
    }
    return rows;
}

int mx_app_notice_rows(const struct app *a, int width) {
    if (!a->status.note[0] || width < 8)
        return 0;
    size_t off[1], len[1];
    return notice_lines(a->status.note, width - 2, off, len, 0);
}

/* The notice, whole, on rows y .. y + rows - 1 (wrapped; when it needs more rows than it has,
 * the last one says /log has all of it). */
void mx_app_draw_notice(struct app *a, int y, int rows, int width) {
    if (rows <= 0)
        return;
    /* the notices, one per '\n' (kept by the sanitiser; a tab would upset the wrap) */
    char clean[MX_SANITIZE_MAX(sizeof a->status.note)];
    size_t cn = mx_text_sanitize(a->status.note, strlen(a->status.note), clean, true);
    clean[cn] = '\0';
    for (char *t = clean; (t = strchr(t, '\t')) != NULL;)
        *t = ' ';
    size_t off[INPUT_MAX_ROWS], len[INPUT_MAX_ROWS];
    int max = MX_MIN(rows, INPUT_MAX_ROWS);
    int total = notice_lines(clean, width - 2, off, len, max);
    int k = -1; /* which of the stacked notices row r belongs to */
    for (int r = 0; r < rows; r++) {
        attrset(mx_app_role_attr(a, MX_ROLE_normal, 0));
        mvhline(y + r, 0, ' ', width);
        if (r >= total || r >= max)
            continue;
        bool starts = off[r] == 0 || clean[off[r] - 1] == '\n';
        k += starts;
        bool err = k < 32 && (a->status.err_mask >> k) & 1;
        int role = err ? MX_ROLE_error : MX_ROLE_normal;
        const char *mark = !starts ? "  " : err ? "! " : "\xc2\xbb "; /* » */
        mx_app_put_text(a, y + r, 0, mark, strlen(mark), 2, role, MX_ATTR_BOLD);
        const char *more = " \xe2\x80\xa6 (/log)"; /* … */
        bool cut = r == max - 1 && total > max;
        int w = width - 2 - (cut ? 9 : 0);
        int x = mx_app_put_text(a, y + r, 2, clean + off[r], len[r], w, role, 0);
        if (cut)
            mx_app_put_text(a, y + r, 2 + x, more, strlen(more), 9, MX_ROLE_status, 0);
    }
}

/* The status bar: the notice first (what the user must see when the bar is too narrow for all),
 * then title, model, device, saved or not, the context meter, speed and what is running. */
void mx_app_draw_status(struct app *a, int y, int width) {
    attrset(mx_app_role_attr(a, MX_ROLE_status, 0));
    mvhline(y, 0, ' ', width);
    char left[512];
    const struct mx_engine *e = a->o.engine;
    int n_ctx = a->settings.n_ctx > 0 ? a->settings.n_ctx : e ? e->n_ctx : 0;
    char speed[32] = "";
    if (a->gen.tok_s > 0) /* none until a few tokens came in (rate.h) */
        snprintf(speed, sizeof speed, " \xc2\xb7 %.1f tok/s", a->gen.tok_s);
    /* the last prompt's cost, kept vs evaluated: shown only when the bar has room for all
     * (the speed and what runs matter more on a narrow terminal) */
    char reuse[64] = "";
    for (int pass = 0; pass < 2; pass++) {
        snprintf(left, sizeof left, " %s%s%s \xc2\xb7 %s \xc2\xb7 %s \xc2\xb7 ctx %d/%d%s%s%s ",
                 a->store.title[0] ? a->store.title : "", a->store.title[0] ? " \xc2\xb7 " : "",
                 e ? e->name : "no model", e ? e->device : "-", a->store.db ? "saved" : "not saved",
                 a->gen.ctx_used, n_ctx, reuse, speed,
                 /* an image's progress, shown first, says itself that Esc cancels */
                 a->gen.busy && !a->gen.image ? " \xc2\xb7 generating (Esc stops)"
                 : a->load.busy               ? " \xc2\xb7 loading" : "");
        if (pass == 1 || a->gen.n_prefilled < 0 || a->gen.busy || a->status.prog[0])
            break;
        char with[64];
        snprintf(with, sizeof with, " (%ld reused, %ld new)", a->gen.n_reused,
                 a->gen.n_prefilled);
        if ((int)(mx_text_width(left, strlen(left)) + strlen(with) + 7) > width)
            break;
        memcpy(reuse, with, sizeof reuse);
    }
    char clean[MX_SANITIZE_MAX(512)];
    int x = 0;
    /* a running job's progress comes first: it is what the user waits for */
    if (a->status.prog[0]) {
        size_t n = mx_text_sanitize(a->status.prog, strlen(a->status.prog), clean, false);
        x = mx_app_put_text(a, y, 1, clean, n, width - 1, MX_ROLE_status, 0) + 1;
        if (x + 3 < width)
            x += mx_app_put_text(a, y, x, " \xe2\x94\x82", 4, width - x, MX_ROLE_status, 0);
    }
    size_t n = mx_text_sanitize(left, strlen(left), clean, false);
    if (x < width)
        x += mx_app_put_text(a, y, x, clean, n, width - x, MX_ROLE_status, 0);
    const char *hint = "/help ";
    int hw = (int)strlen(hint);
    if (!a->status.prog[0] && x + hw < width)
        mx_app_put_text(a, y, width - hw, hint, (size_t)hw, hw, MX_ROLE_status, 0);
}
