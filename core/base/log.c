/* log.c - forwards messages to the callback installed by tui/. */
#include "core/base/log.h"

#include <stdarg.h>
#include <stdio.h>

static mx_log_fn g_log_fn;
static void *g_log_ud;

void mx_log_set(mx_log_fn fn, void *ud) {
    g_log_fn = fn;
    g_log_ud = ud;
}

void mx_log(enum mx_log_level level, const char *fmt, ...) {
    if (!g_log_fn)
        return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_log_fn(level, buf, g_log_ud);
}
