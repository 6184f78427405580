/* err.h - error codes as values, with the detail kept apart from the code.
 *
 * Every function below tui/ returns 0 or a negative MX_E* code and, when the caller passes a
 * struct mx_err, writes "subject: problem (numbers)" into it. Nothing below tui/ prints, exits
 * or aborts; tui/ turns the message into what the user reads.
 */
#ifndef MX_ERR_H
#define MX_ERR_H

#include <stddef.h>

/* X(name, value, message): the one table of error codes (tig's REQ_INFO style). */
#define MX_ERRORS(X)                                                         \
    X(MX_EINVAL,     -1,  "invalid argument")                                \
    X(MX_ENOMEM,     -2,  "out of memory")                                   \
    X(MX_EIO,        -3,  "input/output error")                              \
    X(MX_ENOENT,     -4,  "no such file or directory")                       \
    X(MX_EFORMAT,    -5,  "malformed file")                                  \
    X(MX_EUNSUP,     -6,  "not supported")                                   \
    X(MX_ERANGE,     -7,  "value out of range")                              \
    X(MX_ECANCELED,  -8,  "canceled")                                        \
    X(MX_EFULL,      -9,  "no space left (context or disk)")                 \
    X(MX_EBUSY,      -10, "resource busy")                                   \
    X(MX_EPERM,      -11, "permission denied")                               \
    X(MX_ENODEV,     -12, "no such device")                                  \
    X(MX_ETIMEDOUT,  -13, "timed out")                                       \
    X(MX_EDB,        -14, "database error")

enum mx_errcode {
#define MX_ERR_ENUM(name, value, msg) name = value,
    MX_ERRORS(MX_ERR_ENUM)
#undef MX_ERR_ENUM
    MX_OK = 0
};

/* Detail for one failed call: the code and a message "subject: problem (numbers)". */
struct mx_err {
    int code;       /* 0 or a negative MX_E* value */
    char msg[256];  /* NUL-terminated; empty when code == 0 */
};

/* Returns the static message for a code ("unknown error" for values not in the table). */
const char *mx_strerror(int code);

/* Records code and a printf-style message in err (err may be NULL). Returns code, so callers can
 * write `return mx_err_set(err, MX_EFORMAT, "%s: bad magic", path);`. Keeps the first error:
 * a message already set is not overwritten, so the innermost, most precise cause wins. */
int mx_err_set(struct mx_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears err (NULL ok). */
void mx_err_clear(struct mx_err *err);

/* Message to show for a failed call: err->msg when set, else mx_strerror(code). */
const char *mx_err_msg(const struct mx_err *err, int code);

#endif
