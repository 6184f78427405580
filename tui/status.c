/* status.c - the status line: a notice (what just happened, or went wrong) first, then the
 * session, model, device, context meter and speed; progress of long jobs as a bar with an ETA.
 */
#include "tui/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/base/text.h"
#include "core/base/util.h"
#include "tui/style.h"

void mx_app_notice(struct app *a, bool error, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->status.note, sizeof a->status.note, fmt, ap);
    va_end(ap);
    a->status.is_error = error;
}

/* Storage problems never stop the chat: the message stays on screen and the status line says
 * it was not saved (DESIGN.md: chat continues in memory with a visible warning). */
void mx_app_store_warn(struct app *a, const struct mx_err *err, int rc) {
    mx_app_notice(a, true, "not saved: %s", mx_err_msg(err, rc));
}

void mx_app_progress(struct app *a, const char *what, double done, double total) {
    /* a bar with an ETA from the rate so far: long histories take minutes on a CPU */
    if (done <= 0 || a->status.prog_t0 <= 0)
        a->status.prog_t0 = mx_time_s();
    double frac = total > 0 ? done / total : 0, el = mx_time_s() - a->status.prog_t0;
    char bar[64] = "", eta[32] = "";
    int fill = (int)(frac * 20 + 0.5);
    size_t o = 0;
    for (int k = 0; k < 20; k++)
        o += (size_t)snprintf(bar + o, sizeof bar - o, "%s",
                              k < fill ? "\xe2\x96\x88" : "\xe2\x96\x91"); /* █ ░ */
    if (frac > 0.02 && frac < 1 && el > 0.5)
        snprintf(eta, sizeof eta, ", ETA %.0fs", el / frac - el);
    mx_app_notice(a, false, "%s %s %.0f/%.0f%s (Esc cancels)", what ? what : "", bar, done, total,
                  eta);
    if (done >= total)
        a->status.prog_t0 = 0;
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
