/* err.c - the error table and the message holder of err.h. */
#include "core/base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *mx_strerror(int code) {
    switch (code) {
    case 0: return "success";
#define MX_ERR_CASE(name, value, msg) case value: return msg;
    MX_ERRORS(MX_ERR_CASE)
#undef MX_ERR_CASE
    default: return "unknown error";
    }
}

int mx_err_set(struct mx_err *err, int code, const char *fmt, ...) {
    if (!err || err->code != 0)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

void mx_err_clear(struct mx_err *err) {
    if (!err)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}

const char *mx_err_msg(const struct mx_err *err, int code) {
    if (err && err->code != 0 && err->msg[0])
        return err->msg;
    return mx_strerror(code);
}
