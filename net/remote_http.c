/* remote_http.c - one HTTP request of a remote engine over libcurl (see remote_http.h).
 *
 * libcurl does the protocol; this file decides what its outcomes mean to a chat: which failures
 * are retried (a refused or timed-out connection, before any byte came back: the request never
 * reached a server), how long silence is tolerated while an answer streams (the stall timeout,
 * checked with the cancel flag in the progress callback, which libcurl calls at least once a
 * second also while nothing arrives), and what an HTTP error says (the server's own message).
 */
#include "net/remote_http.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "core/base/util.h"

/* Backoff before retry k (0-based): 0.25 s doubling, at most 4 s. */
#define BACKOFF_FIRST_S 0.25
#define BACKOFF_MAX_S 4.0

static pthread_once_t g_curl_once = PTHREAD_ONCE_INIT;
static CURLcode g_curl_init_rc;

/* libcurl's global set-up, once per process, before the first handle. */
static void curl_init_once(void) {
    g_curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* Monotonic seconds: the stall clock and the backoff. */
static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void mx_http_url_display(const char *url, char *buf, size_t size) {
    if (!size)
        return;
    const char *s = url ? url : "";
    const char *scheme = strstr(s, "://");
    const char *host = scheme ? scheme + 3 : s;
    const char *slash = strchr(host, '/');
    const char *at = memchr(host, '@', slash ? (size_t)(slash - host) : strlen(host));
    if (at)
        snprintf(buf, size, "%.*s%s", (int)(host - s), s, at + 1);
    else
        snprintf(buf, size, "%s", s);
}

/* Copies s[0..n) into buf on one line (controls as spaces), cut to size - 1 bytes. */
static void one_line(const char *s, size_t n, char *buf, size_t size) {
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < size; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[k++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
    }
    while (k > 0 && buf[k - 1] == ' ')
        k--;
    buf[k] = '\0';
}

void mx_http_error_text(const char *body, size_t n, char *buf, size_t size) {
    if (!size)
        return;
    buf[0] = '\0';
    json_t *j = body && n ? json_loadb(body, n, 0, NULL) : NULL;
    const char *msg = NULL;
    if (json_is_object(j)) {
        json_t *e = json_object_get(j, "error");
        if (json_is_object(e) && json_is_string(json_object_get(e, "message")))
            msg = json_string_value(json_object_get(e, "message"));
        else if (json_is_string(e))
            msg = json_string_value(e);
        else if (json_is_string(json_object_get(j, "message")))
            msg = json_string_value(json_object_get(j, "message"));
        else if (json_is_string(json_object_get(j, "detail")))
            msg = json_string_value(json_object_get(j, "detail"));
    }
    if (msg)
        one_line(msg, strlen(msg), buf, size);
    else if (body)
        one_line(body, n, buf, size);
    json_decref(j);
}

/* One transfer's state, shared by libcurl's callbacks. */
struct xfer {
    struct mx_http_req *r;
    CURL *h;
    struct mx_sse sse;
    enum { MODE_UNKNOWN, MODE_SSE, MODE_BODY, MODE_ERROR } mode;
    char *buf;                 /* the body (MODE_BODY) or the error's start (MODE_ERROR) */
    size_t len, cap;
    bool got_bytes;            /* anything of the answer came back (no retry then) */
    double last_byte_t;        /* when the last byte came (the stall clock) */
    bool stalled, canceled;
    int cb_rc;                 /* the event parser's or callback's error, 0: none */
    struct mx_err cb_err;
};

/* Appends to x->buf, up to cap bytes; returns false when that would go past it. */
static bool keep(struct xfer *x, const char *s, size_t n, size_t cap) {
    if (x->len + n > cap)
        return false;
    if (x->len + n + 1 > x->cap) {
        size_t c = x->cap ? x->cap : 4096;
        while (c < x->len + n + 1)
            c *= 2;
        char *b = realloc(x->buf, c);
        if (!b)
            return false;
        x->buf = b;
        x->cap = c;
    }
    memcpy(x->buf + x->len, s, n);
    x->len += n;
    x->buf[x->len] = '\0';
    return true;
}

/* libcurl's body callback: the first bytes decide what the answer is (an event stream, a body
 * to keep, an HTTP error's text); returns n, or 0 to stop the transfer (a parser error, a body
 * over the cap). */
static size_t on_write(char *s, size_t size, size_t nmemb, void *ud) {
    struct xfer *x = ud;
    size_t n = size * nmemb;
    x->got_bytes = true;
    x->last_byte_t = now_s();
    if (x->mode == MODE_UNKNOWN) {
        long status = 0;
        char *ct = NULL;
        curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(x->h, CURLINFO_CONTENT_TYPE, &ct);
        x->r->status = status;
        if (status >= 400 || status < 200)
            x->mode = MODE_ERROR;
        else if (ct && !strncasecmp(ct, "text/event-stream", 17) && x->r->on_event)
            x->mode = MODE_SSE;
        else
            x->mode = MODE_BODY;
    }
    switch (x->mode) {
    case MODE_SSE:
        x->r->streamed = true;
        x->cb_rc = mx_sse_feed(&x->sse, s, n, &x->cb_err);
        return x->cb_rc < 0 ? 0 : n;
    case MODE_BODY:
        if (!keep(x, s, n, MX_HTTP_MAX_BODY)) {
            x->cb_rc = mx_err_set(&x->cb_err, MX_ERANGE, "the answer is over %zu bytes",
                                  MX_HTTP_MAX_BODY);
            return 0;
        }
        return n;
    default: /* an error's body: its start is enough for the message */
        keep(x, s, MX_MIN(n, MX_HTTP_MAX_ERROR - MX_MIN(x->len, MX_HTTP_MAX_ERROR)),
             MX_HTTP_MAX_ERROR);
        return n;
    }
}

/* libcurl's header callback: only the stall clock's business. */
static size_t on_header(char *s, size_t size, size_t nmemb, void *ud) {
    struct xfer *x = ud;
    (void)s;
    x->last_byte_t = now_s(); /* headers are bytes too: the server is alive */
    return size * nmemb;
}

/* libcurl's progress callback (at least once a second, also while nothing arrives): non-zero
 * ends the transfer, for a cancel or a stall. */
static int on_progress(void *ud, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln) {
    struct xfer *x = ud;
    (void)dlt, (void)dln, (void)ult, (void)uln;
    if (x->r->canceled && x->r->canceled(x->r->cancel_ud)) {
        x->canceled = true;
        return 1;
    }
    if (now_s() - x->last_byte_t > x->r->stall_timeout_s) {
        x->stalled = true;
        return 1;
    }
    return 0;
}

/* Waits seconds, in short steps so that a cancel is seen. Returns false when canceled. */
static bool backoff(const struct mx_http_req *r, double seconds) {
    double end = now_s() + seconds;
    while (now_s() < end) {
        if (r->canceled && r->canceled(r->cancel_ud))
            return false;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return !(r->canceled && r->canceled(r->cancel_ud));
}

/* The code of an HTTP error status. */
static int status_code(long status) {
    return status == 401 || status == 403 ? MX_EPERM : status == 404 ? MX_ENOENT : MX_EIO;
}

/* One attempt. Returns the libcurl result; x holds what came back. */
static CURLcode attempt(struct mx_http_req *r, struct xfer *x, struct curl_slist *hdrs,
                        char *curl_msg) {
    CURL *h = x->h;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, r->url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    if (r->body)
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)(r->connect_timeout_s * 1000));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_msg);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, ""); /* whatever this libcurl decodes */
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "mixel/" PACKAGE_VERSION);
    curl_msg[0] = '\0';
    return curl_easy_perform(h);
}

int mx_http_do(struct mx_http_req *r, struct mx_err *err) {
    char shown[512];
    char curl_msg[CURL_ERROR_SIZE];
    char auth[1024];
    int rc = 0;
    struct curl_slist *hdrs = NULL;
    struct xfer x = {.r = r};
    mx_http_url_display(r->url, shown, sizeof shown);
    r->status = 0;
    r->answer = NULL;
    r->answer_len = 0;
    r->streamed = false;
    pthread_once(&g_curl_once, curl_init_once);
    if (g_curl_init_rc != CURLE_OK)
        return mx_err_set(err, MX_EIO, "libcurl: cannot initialise (%s)",
                          curl_easy_strerror(g_curl_init_rc));
    if (!(x.h = curl_easy_init()))
        return mx_err_set(err, MX_ENOMEM, "libcurl: cannot make a handle");
    const char *fixed[] = {"Content-Type: application/json",
                           "Accept: text/event-stream, application/json", "Expect:"};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        struct curl_slist *t = curl_slist_append(hdrs, fixed[i]);
        if (!t) {
            rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", shown);
            goto out;
        }
        hdrs = t;
    }
    if (r->api_key && r->api_key[0]) {
        if ((size_t)snprintf(auth, sizeof auth, "Authorization: Bearer %s", r->api_key) >=
            sizeof auth) {
            rc = mx_err_set(err, MX_EINVAL, "the API key is over %zu bytes", sizeof auth - 32);
            goto out;
        }
        struct curl_slist *t = curl_slist_append(hdrs, auth);
        explicit_bzero(auth, sizeof auth);
        if (!t) {
            rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", shown);
            goto out;
        }
        hdrs = t;
    }
    for (int k = 0;; k++) {
        mx_sse_deinit(&x.sse);
        mx_sse_init(&x.sse, r->on_event, r->event_ud, 0);
        x.mode = MODE_UNKNOWN;
        x.len = 0;
        x.got_bytes = x.stalled = x.canceled = false;
        x.last_byte_t = now_s();
        CURLcode cc = attempt(r, &x, hdrs, curl_msg);
        bool connect_failed =
            !x.got_bytes && !x.stalled && !x.canceled &&
            (cc == CURLE_COULDNT_CONNECT ||
             (cc == CURLE_OPERATION_TIMEDOUT && r->status == 0));
        if (connect_failed && k < r->retries) {
            double wait = BACKOFF_FIRST_S * (double)(1 << (k < 5 ? k : 5));
            if (!backoff(r, wait > BACKOFF_MAX_S ? BACKOFF_MAX_S : wait)) {
                rc = mx_err_set(err, MX_ECANCELED, "%s: canceled", shown);
                goto out;
            }
            continue;
        }
        if (x.canceled) {
            rc = mx_err_set(err, MX_ECANCELED, "%s: canceled", shown);
        } else if (x.cb_rc < 0) {
            rc = mx_err_set(err, x.cb_rc, "%s: %s", shown, mx_err_msg(&x.cb_err, x.cb_rc));
        } else if (x.stalled) {
            rc = mx_err_set(err, MX_ETIMEDOUT, "%s: no answer for %.0f s (stall timeout; the "
                            "server may be overloaded)", shown, r->stall_timeout_s);
        } else if (cc == CURLE_OPERATION_TIMEDOUT && connect_failed) {
            rc = mx_err_set(err, MX_ETIMEDOUT, "%s: cannot connect within %.0f s (%d attempts)",
                            shown, r->connect_timeout_s, k + 1);
        } else if (cc != CURLE_OK) {
            const char *why = curl_msg[0] ? curl_msg : curl_easy_strerror(cc);
            if (connect_failed)
                rc = mx_err_set(err, MX_EIO, "%s: %s (%d attempts)", shown, why, k + 1);
            else if (x.got_bytes)
                rc = mx_err_set(err, MX_EIO, "%s: %s (the connection broke after the answer "
                                "began)", shown, why);
            else
                rc = mx_err_set(err, MX_EIO, "%s: %s", shown, why);
        } else if (r->status < 200 || r->status >= 300) {
            char text[300];
            mx_http_error_text(x.buf, x.len, text, sizeof text);
            rc = mx_err_set(err, status_code(r->status), "%s: HTTP %ld%s%s", shown, r->status,
                            text[0] ? ": " : "", text);
        }
        break;
    }
    if (rc == 0 && !r->streamed && x.buf) {
        r->answer = x.buf;
        r->answer_len = x.len;
        x.buf = NULL;
    }
out:
    free(x.buf);
    mx_sse_deinit(&x.sse);
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(x.h);
    return rc;
}
