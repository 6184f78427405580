/* sse.c - the server-sent-events parser (see sse.h).
 *
 * Bytes are appended to the current line until a line end; each finished line is one field of
 * the event being built, and an empty line dispatches it. Tuned for token streams: events are a
 * few hundred bytes and arrive a few at a time, so the buffers grow once and are reused.
 */
#include "net/sse.h"

#include <stdlib.h>
#include <string.h>

#define SSE_DEFAULT_MAX ((size_t)1 << 20)

void mx_sse_init(struct mx_sse *p, mx_sse_event_fn on_event, void *ud, size_t max_bytes) {
    memset(p, 0, sizeof *p);
    p->on_event = on_event;
    p->ud = ud;
    p->max_bytes = max_bytes ? max_bytes : SSE_DEFAULT_MAX;
}

void mx_sse_deinit(struct mx_sse *p) {
    if (!p)
        return;
    free(p->line);
    free(p->data);
    p->line = p->data = NULL;
    p->line_len = p->line_cap = p->data_len = p->data_cap = 0;
}

/* Makes room for `more` bytes (+ a NUL) after *len in *buf, capped at max. Returns 0, MX_ERANGE
 * or MX_ENOMEM (the buffer is then unchanged). */
static int grow(char **buf, size_t *cap, size_t len, size_t more, size_t max, const char *what,
                struct mx_err *err) {
    if (more > max || len > max - more)
        return mx_err_set(err, MX_ERANGE, "event stream: %s longer than %zu bytes", what, max);
    size_t need = len + more + 1;
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 256;
    while (c < need)
        c *= 2;
    char *b = realloc(*buf, c);
    if (!b)
        return mx_err_set(err, MX_ENOMEM, "event stream: out of memory");
    *buf = b;
    *cap = c;
    return 0;
}

/* An empty line: hands the event over (when it has data) and starts the next one. */
static int dispatch(struct mx_sse *p) {
    int rc = 0;
    if (p->has_data) {
        size_t n = p->data_len;
        if (n > 0 && p->data[n - 1] == '\n') /* the spec drops the last data line's LF */
            n--;
        p->data[n] = '\0';
        rc = p->on_event(p->ud, p->type[0] ? p->type : "message", p->data, n);
    }
    p->data_len = 0;
    p->has_data = false;
    p->type[0] = '\0';
    return rc;
}

/* One finished line (p->line[0..line_len)): a field of the event, a comment or the end. */
static int take_line(struct mx_sse *p, struct mx_err *err) {
    const char *l = p->line ? p->line : "";
    size_t n = p->line_len;
    p->line_len = 0;
    if (n == 0)
        return dispatch(p);
    if (l[0] == ':') /* a comment: servers send them as keep-alives */
        return 0;
    const char *colon = memchr(l, ':', n);
    size_t name_len = colon ? (size_t)(colon - l) : n;
    const char *val = colon ? colon + 1 : l + n;
    size_t val_len = (size_t)(l + n - val);
    if (val_len > 0 && val[0] == ' ') {
        val++;
        val_len--;
    }
    if (name_len == 4 && !memcmp(l, "data", 4)) {
        int rc = grow(&p->data, &p->data_cap, p->data_len, val_len + 1, p->max_bytes,
                      "an event's data", err);
        if (rc < 0)
            return rc;
        memcpy(p->data + p->data_len, val, val_len);
        p->data_len += val_len;
        p->data[p->data_len++] = '\n';
        p->has_data = true;
    } else if (name_len == 5 && !memcmp(l, "event", 5)) {
        size_t k = val_len < sizeof p->type - 1 ? val_len : sizeof p->type - 1;
        memcpy(p->type, val, k);
        p->type[k] = '\0';
    } /* id, retry and unknown fields: nothing a completion stream needs */
    return 0;
}

int mx_sse_feed(struct mx_sse *p, const char *s, size_t n, struct mx_err *err) {
    if (p->failed)
        return mx_err_set(err, MX_EINVAL, "event stream: fed after an error");
    int rc = 0;
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == '\n' && p->after_cr) { /* the LF of a CRLF: the CR ended the line already */
            p->after_cr = false;
            i++;
            continue;
        }
        p->after_cr = false;
        if (c == '\r' || c == '\n') {
            p->after_cr = c == '\r';
            i++;
            if ((rc = take_line(p, err)) < 0)
                goto fail;
            continue;
        }
        /* the run of bytes up to the next line end joins the line in one copy */
        size_t j = i;
        while (j < n && s[j] != '\r' && s[j] != '\n')
            j++;
        if ((rc = grow(&p->line, &p->line_cap, p->line_len, j - i, p->max_bytes, "a line",
                       err)) < 0)
            goto fail;
        memcpy(p->line + p->line_len, s + i, j - i);
        p->line_len += j - i;
        i = j;
    }
    return 0;
fail:
    p->failed = true;
    return rc;
}
