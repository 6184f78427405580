/* engine_scripted.c - a chat engine without a model: replays a file or echoes the prompt.
 * Used by the terminal tests (tmux) so the TUI is exercised end to end in CI without weights.
 * A reply file that starts with "<|channel|>" is a gpt-oss (harmony) answer: its channels are
 * split as the LLM engine splits them, the reasoning posted as MX_EV_REASONING. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "core/base/err.h"
#include "core/base/util.h"
#include "core/text/harmony.h"
#include "app/engine.h"

struct scripted {
    struct mx_engine base;
    char *reply_file;
    double rate; /* pieces per second like a model's tokens/s; 0: as fast as possible */
};

/* Waits until piece i is due at `rate` pieces/s since t0 (simulates a model's pace). */
static void pace(double t0, size_t i, double rate) {
    if (rate <= 0)
        return;
    double due = t0 + (double)i / rate, now = mx_time_s();
    if (due > now) {
        struct timespec ts = {(time_t)(due - now), (long)((due - now - (time_t)(due - now)) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* A harmony answer's channel: the final one is the answer, the others reasoning. */
static int post_channel(void *ud, enum mx_harmony_part part, const char *s, size_t n) {
    struct mx_job *job = ud;
    return part == MX_HARMONY_FINAL ? mx_job_post_text(job, s, n)
                                    : mx_job_post_reasoning(job, s, n);
}

/* The answer streams in pieces; with a context size set (settings->n_ctx > 0) the pieces stand
 * for tokens and the answer is cut short when they fill it, as a model's is (a notice with
 * a = 1, then done with code 0). */
static void scripted_reply(struct mx_engine *e, struct mx_job *job, const struct mx_turn *turns,
                           int n, const struct mx_gen_settings *settings) {
    struct scripted *s = (struct scripted *)e;
    char *text = NULL;
    size_t len = 0;
    if (s->reply_file) {
        /* the k-th answer of a turn (k: assistant turns after the last user turn, the rounds of
         * tool calls) replays the k-th file of the list, the last one past its end */
        int k = 0;
        for (int i = n - 1; i >= 0 && turns[i].role != MX_ROLE_USER; i--)
            k += turns[i].role == MX_ROLE_ASSISTANT;
        char path[4096];
        const char *p = s->reply_file;
        for (const char *colon; k > 0 && (colon = strchr(p, ':')); k--)
            p = colon + 1;
        size_t plen = strcspn(p, ":");
        snprintf(path, sizeof path, "%.*s", (int)MX_MIN(plen, sizeof path - 1), p);
        FILE *f = fopen(path, "rb");
        if (!f) {
            mx_job_done(job, MX_ENOENT, "scripted engine: cannot open reply file");
            return;
        }
        text = malloc(1 << 20);
        len = text ? fread(text, 1, (1 << 20) - 1, f) : 0;
        fclose(f);
    } else {
        const char *last = n > 0 ? turns[n - 1].text : "";
        len = strlen(last) + 16;
        text = malloc(len);
        if (text)
            len = (size_t)snprintf(text, len, "You said: %s", last);
    }
    if (!text) {
        mx_job_done(job, MX_ENOMEM, "scripted engine: out of memory");
        return;
    }
    /* pieces of up to 4 bytes, cut at UTF-8 boundaries like a detokenizer would */
    size_t pos = 0, pieces = 0;
    struct mx_harmony_stream hs;
    bool harmony = len >= 11 && memcmp(text, "<|channel|>", 11) == 0;
    mx_harmony_stream_init(&hs);
    double t0 = mx_time_s();
    size_t n_ctx = settings && settings->n_ctx > 0 ? (size_t)settings->n_ctx : 0;
    while (pos < len) {
        if (n_ctx && pieces >= n_ctx) {
            mx_job_post(job, MX_EV_NOTICE, "the context is full: the answer was cut short", 1, 0);
            break;
        }
        pace(t0, pieces, s->rate);
        if (mx_job_canceled(job)) {
            free(text);
            mx_job_done(job, MX_ECANCELED, NULL);
            return;
        }
        size_t n_bytes = 1;
        while (pos + n_bytes < len && n_bytes < 4)
            n_bytes++;
        while (pos + n_bytes < len && ((unsigned char)text[pos + n_bytes] & 0xc0) == 0x80)
            n_bytes++;
        char piece[16];
        memcpy(piece, text + pos, n_bytes);
        piece[n_bytes] = '\0';
        if (harmony)
            mx_harmony_stream_push(&hs, piece, n_bytes, post_channel, job);
        else
            mx_job_post(job, MX_EV_TEXT, piece, 0, 0);
        pos += n_bytes;
        pieces++;
    }
    if (harmony)
        mx_harmony_stream_flush(&hs, post_channel, job);
    mx_job_post(job, MX_EV_STATS, NULL, 0, (double)pieces);
    free(text);
    mx_job_done(job, 0, NULL);
}

static void scripted_free(struct mx_engine *e) {
    struct scripted *s = (struct scripted *)e;
    if (!s)
        return;
    free(s->reply_file);
    free(s);
}

struct mx_engine *mx_engine_scripted_new(const char *reply_file) {
    struct scripted *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->base.name, sizeof s->base.name, "scripted%s", reply_file ? " (file)" : " (echo)");
    snprintf(s->base.device, sizeof s->base.device, "none");
    s->base.n_ctx = 4096;
    s->base.reply = scripted_reply;
    s->base.free = scripted_free;
    const char *rate = getenv("MIXEL_SCRIPTED_RATE");
    s->rate = rate ? strtod(rate, NULL) : 0;
    if (reply_file && !(s->reply_file = strdup(reply_file))) {
        free(s);
        return NULL;
    }
    return &s->base;
}
