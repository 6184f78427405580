/* harmony.c - the channel splitter for gpt-oss answers (see harmony.h).
 *
 * A small state machine over the text: outside a header, text belongs to the current channel;
 * <|start|>, <|channel|> (when not already in a header), <|end|>, <|return|> and <|call|> open
 * a header; <|message|> closes it and names the channel from "<|channel|>NAME" in the header.
 * A tail that could still be the beginning of a tag is held back until the next piece decides.
 *
 * Workload: one call per generated token (a few bytes); everything is linear in the input.
 */
#include "core/text/harmony.h"

#include <string.h>

#include "core/base/err.h"

/* The tags that structure an answer (the o200k_harmony special tokens). */
static const char *const tags[] = {"<|start|>", "<|end|>", "<|message|>", "<|channel|>",
                                   "<|return|>", "<|call|>", "<|constrain|>"};

void mx_harmony_stream_init(struct mx_harmony_stream *s) {
    memset(s, 0, sizeof *s);
    s->part = MX_HARMONY_FINAL;
}

/* The channel a header names: "...<|channel|>analysis..." -> analysis; no channel: final. */
static enum mx_harmony_part header_part(const struct mx_harmony_stream *s) {
    static const char ch[] = "<|channel|>";
    const char *h = s->header, *end = h + s->n_header;
    const char *p = NULL;
    for (const char *q = h; q + sizeof ch - 1 <= end; q++)
        if (memcmp(q, ch, sizeof ch - 1) == 0)
            p = q + sizeof ch - 1;
    if (!p)
        return MX_HARMONY_FINAL;
    size_t n = 0;
    while (p + n < end && p[n] != ' ' && p[n] != '<')
        n++;
    if (n == 8 && memcmp(p, "analysis", 8) == 0)
        return MX_HARMONY_ANALYSIS;
    if (n == 10 && memcmp(p, "commentary", 10) == 0)
        return MX_HARMONY_COMMENTARY;
    return MX_HARMONY_FINAL;
}

/* Text that is not a tag: message text out, header text into the header (an overlong header
 * is given up on and handed out as answer text). */
static int emit(struct mx_harmony_stream *s, const char *t, size_t n, mx_harmony_out_fn out,
                void *ud) {
    if (n == 0)
        return 0;
    if (!s->in_header)
        return out(ud, s->part, t, n);
    if (s->n_header + n <= sizeof s->header) {
        memcpy(s->header + s->n_header, t, n);
        s->n_header += n;
        return 0;
    }
    int rc = s->n_header ? out(ud, MX_HARMONY_FINAL, s->header, s->n_header) : 0;
    s->n_header = 0;
    s->in_header = false;
    s->part = MX_HARMONY_FINAL;
    return rc < 0 ? rc : out(ud, MX_HARMONY_FINAL, t, n);
}

/* Tag k seen. */
static void on_tag(struct mx_harmony_stream *s, size_t k) {
    const char *t = tags[k];
    if (k == 2) { /* <|message|>: the header ends, its channel starts */
        s->part = header_part(s);
        s->in_header = false;
        s->n_header = 0;
        return;
    }
    if (k == 3 || k == 6) { /* <|channel|>, <|constrain|>: part of a header */
        if (!s->in_header) {
            s->in_header = true;
            s->n_header = 0;
        }
        size_t n = strlen(t);
        if (s->n_header + n <= sizeof s->header) {
            memcpy(s->header + s->n_header, t, n);
            s->n_header += n;
        }
        return;
    }
    /* <|start|>, <|end|>, <|return|>, <|call|>: a message ends, a header (maybe) follows */
    s->in_header = true;
    s->n_header = 0;
}

/* The tag held[0..n) is, -1 when none, -2 when it is a proper prefix of a tag (wait). */
static int tag_match(const char *t, size_t n) {
    int prefix = 0;
    for (size_t k = 0; k < sizeof tags / sizeof tags[0]; k++) {
        size_t len = strlen(tags[k]);
        if (n == len && memcmp(tags[k], t, n) == 0)
            return (int)k;
        if (n < len && memcmp(tags[k], t, n) == 0)
            prefix = 1;
    }
    return prefix ? -2 : -1;
}

/* One byte into the held tail (which starts with '<'): a whole tag acts, a prefix waits, and
 * anything else gives up its first byte as text and tries the rest again. */
static int hold_byte(struct mx_harmony_stream *s, char c, mx_harmony_out_fn out, void *ud) {
    s->hold[s->n_hold++] = c;
    for (;;) {
        int k = tag_match(s->hold, s->n_hold);
        if (k >= 0) {
            on_tag(s, (size_t)k);
            s->n_hold = 0;
            return 0;
        }
        if (k == -2)
            return 0;
        /* not a tag: the '<' is text; the bytes after it may start one */
        size_t i = 1;
        while (i < s->n_hold && s->hold[i] != '<')
            i++;
        int rc = emit(s, s->hold, i, out, ud);
        if (rc < 0)
            return rc;
        memmove(s->hold, s->hold + i, s->n_hold - i);
        s->n_hold -= i;
        if (s->n_hold == 0)
            return 0;
    }
}

int mx_harmony_stream_push(struct mx_harmony_stream *s, const char *text, size_t n,
                           mx_harmony_out_fn out, void *ud) {
    size_t run = 0; /* start of the plain text not handed out yet */
    for (size_t i = 0; i < n; i++) {
        if (s->n_hold == 0 && text[i] != '<')
            continue;
        int rc = emit(s, text + run, i - run, out, ud);
        if (rc == 0)
            rc = hold_byte(s, text[i], out, ud);
        if (rc < 0)
            return rc;
        run = i + 1;
    }
    return emit(s, text + run, n - run, out, ud);
}

int mx_harmony_stream_flush(struct mx_harmony_stream *s, mx_harmony_out_fn out, void *ud) {
    int rc = 0;
    if (s->n_hold)
        rc = emit(s, s->hold, s->n_hold, out, ud);
    if (rc == 0 && s->in_header && s->n_header) /* a header never closed: keep its text */
        rc = out(ud, MX_HARMONY_FINAL, s->header, s->n_header);
    mx_harmony_stream_init(s);
    return rc;
}

/* mx_harmony_split's sink. */
struct split_ud {
    struct mx_bytes *reasoning, *answer;
};

static int split_out(void *ud, enum mx_harmony_part part, const char *s, size_t n) {
    struct split_ud *u = ud;
    struct mx_bytes *b = part == MX_HARMONY_FINAL ? u->answer : u->reasoning;
    return b ? mx_bytes_add(b, s, n) : 0;
}

int mx_harmony_split(const char *text, size_t n, struct mx_bytes *reasoning,
                     struct mx_bytes *answer) {
    struct mx_harmony_stream s;
    struct split_ud u = {reasoning, answer};
    mx_harmony_stream_init(&s);
    int rc = mx_harmony_stream_push(&s, text, n, split_out, &u);
    return rc < 0 ? rc : mx_harmony_stream_flush(&s, split_out, &u);
}
