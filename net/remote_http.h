/* remote_http.h - the one HTTP request path of the remote engines (net/remote.h): libcurl with a
 * connect timeout, a stall timeout, retries with backoff on connection errors only, cancel, and
 * HTTP errors turned into messages with the server's own text. Internal to net/. */
#ifndef MX_REMOTE_HTTP_H
#define MX_REMOTE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/err.h"
#include "net/sse.h"

/* Largest answer body kept when it is not an event stream (a model list, a whole completion, an
 * image as base64): bigger ones end the request with MX_ERANGE. */
#define MX_HTTP_MAX_BODY ((size_t)64 << 20)

/* Bytes of an error answer's body kept for its message. */
#define MX_HTTP_MAX_ERROR 4096

struct mx_http_req {
    const char *url;            /* the full URL (borrowed) */
    const char *body;           /* JSON to POST (borrowed); NULL: a GET */
    const char *api_key;        /* Bearer token (borrowed); NULL/"": none */
    double connect_timeout_s;   /* per attempt */
    double stall_timeout_s;     /* no byte received for this long: MX_ETIMEDOUT */
    int retries;                /* extra attempts after a connection error */
    bool (*canceled)(void *ud); /* polled in libcurl's progress callback; NULL: never */
    void *cancel_ud;
    /* an event-stream answer (Content-Type text/event-stream) goes event by event here; the
     * callback's error ends the request with that code */
    mx_sse_event_fn on_event;
    void *event_ud;
    /* results */
    long status;                /* the HTTP status (0: no answer) */
    char *answer;               /* owned, NUL-terminated: a 2xx body that is not an event
                                 * stream (free with free()); NULL when none */
    size_t answer_len;
    bool streamed;              /* the answer was an event stream */
};

/* Runs the request (r's results filled; r->answer freed by the caller also on error). Returns 0
 * for a 2xx answer, or: MX_ECANCELED; MX_ETIMEDOUT (connect or stall, the message says which and
 * for how long); MX_EIO (cannot connect after the retries, a broken connection, HTTP 4xx/5xx:
 * "URL: HTTP 500: the server's message"); MX_EPERM (HTTP 401/403); MX_ENOENT (HTTP 404);
 * MX_ERANGE (a body over MX_HTTP_MAX_BODY); the event callback's error. URLs in messages have
 * any user:password@ removed. Thread-safe (a libcurl handle per call). */
int mx_http_do(struct mx_http_req *r, struct mx_err *err);

/* The URL without "user:password@" into buf (for messages). */
void mx_http_url_display(const char *url, char *buf, size_t size);

/* The server's error text in body[0..n) (OpenAI's {"error":{"message"}}, {"error":"..."},
 * {"message":"..."}, {"detail":"..."}, else the body itself), on one line, at most size - 1
 * bytes, into buf. */
void mx_http_error_text(const char *body, size_t n, char *buf, size_t size);

#endif
