/* log.h - the one logging hook below tui/ (ggml_log_set style). core/, kernels/ and history/
 * never print; they call mx_log(), and tui/ decides where it goes (stderr, the status line). */
#ifndef MX_LOG_H
#define MX_LOG_H

enum mx_log_level { MX_LOG_DEBUG, MX_LOG_INFO, MX_LOG_WARN, MX_LOG_ERROR };

typedef void (*mx_log_fn)(enum mx_log_level level, const char *msg, void *ud);

/* Installs the log callback (NULL: drop everything). Not thread-safe against concurrent
 * mx_log(); call it once at start-up. */
void mx_log_set(mx_log_fn fn, void *ud);

/* Formats and hands one message to the callback; thread-safe as long as the callback is. */
void mx_log(enum mx_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
