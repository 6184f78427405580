/* sse.h - a server-sent-events parser (the WHATWG "text/event-stream" format) for the streamed
 * answers of OpenAI-compatible servers: bytes go in as libcurl hands them over, in any chunking,
 * and whole events come out through a callback.
 *
 * What it understands: lines ending in LF, CRLF or a lone CR (also when the CR and the LF arrive
 * in different chunks); "data:" lines, several of them joined with "\n" into one event; "event:"
 * names; comment lines starting with ':' (keep-alives) ignored; other fields ("id", "retry", and
 * unknown ones) ignored; one space after the colon dropped; an empty line dispatching the event.
 * An event without data is not dispatched (the spec's rule). "[DONE]" is ordinary data here: the
 * caller decides what it means. An unfinished event at the end of the stream is dropped (the
 * spec's rule too: the stream broke mid-event).
 *
 * Untrusted input: a line or an event's data longer than the cap given at init is refused with
 * MX_ERANGE instead of growing without bound. Not thread-safe: one parser per stream.
 */
#ifndef MX_SSE_H
#define MX_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/err.h"

/* Called per dispatched event: type is the "event:" name ("message" when none was given), data
 * the joined data lines (n bytes and a NUL after them; untrusted, so NUL bytes may occur inside;
 * both borrowed until the callback returns).
 * Returns 0 to go on, or a negative MX_E* code that mx_sse_feed stops with and returns. */
typedef int (*mx_sse_event_fn)(void *ud, const char *type, const char *data, size_t n);

struct mx_sse {
    mx_sse_event_fn on_event;  /* where events go */
    void *ud;                  /* borrowed: the callback's argument */
    size_t max_bytes;          /* cap on one line and on one event's data (untrusted input) */
    char *line;                /* owned: the line being read, without its end */
    size_t line_len, line_cap;
    char *data;                /* owned: the event's data lines so far, each followed by '\n' */
    size_t data_len, data_cap;
    bool has_data;             /* a data field was seen since the last dispatch */
    char type[64];             /* the event's "event:" name ("" = message), cut to fit */
    bool after_cr;             /* the last byte was a CR: a LF right after it ends nothing */
    bool failed;               /* a callback or a cap stopped the stream: feed refuses more */
};

/* Sets up p (no allocation yet). max_bytes 0: 1 MiB. */
void mx_sse_init(struct mx_sse *p, mx_sse_event_fn on_event, void *ud, size_t max_bytes);

/* Frees the buffers (p itself is the caller's). NULL ok. */
void mx_sse_deinit(struct mx_sse *p);

/* Parses s[0..n), dispatching every event an empty line completes. Returns 0; the callback's
 * error; MX_ERANGE (a line or an event over the cap, with the numbers in err); MX_ENOMEM. After
 * an error every later call returns MX_EINVAL: the stream is over. */
int mx_sse_feed(struct mx_sse *p, const char *s, size_t n, struct mx_err *err);

#endif
