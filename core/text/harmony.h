/* harmony.h - gpt-oss's answers split into their channels.
 *
 * A gpt-oss model (chat template family "harmony", core/text/template.h) answers in channels:
 *   <|channel|>analysis<|message|>chain of thought<|end|>
 *   <|start|>assistant<|channel|>final<|message|>the answer<|return|>
 * (tool calls go to "commentary": <|start|>assistant to=functions.f<|channel|>commentary json
 * <|message|>{...}<|call|>). The reasoning is shown folded and never stored as the answer; the
 * final channel is the answer. This splitter reads the generated text with special tokens
 * rendered as their text (MX_DETOK_SPECIAL), as it streams, in pieces cut anywhere (a tag may
 * arrive split over pieces), and hands out each channel's text with the tags removed.
 *
 * Text before any tag counts as the answer, so a model (or a raw completion) that writes no
 * channels passes through unchanged. A header that never reaches <|message|> (more than
 * MX_HARMONY_MAX_HEADER bytes) is handed out as answer text too, so nothing is lost.
 *
 * Thread-safety: a stream is used by one thread; no global state.
 */
#ifndef MX_HARMONY_H
#define MX_HARMONY_H

#include <stdbool.h>
#include <stddef.h>

#include "core/base/bytes.h"

/* Which channel a piece of text belongs to. */
enum mx_harmony_part {
    MX_HARMONY_FINAL = 0,      /* the answer ("final", and text outside any channel) */
    MX_HARMONY_ANALYSIS = 1,   /* the chain of thought ("analysis") */
    MX_HARMONY_COMMENTARY = 2, /* "commentary": tool-call arguments and preambles */
};

#define MX_HARMONY_MAX_HEADER 256
#define MX_HARMONY_MAX_TAG 16 /* longer than every tag ("<|constrain|>" is 13 bytes) */

/* Receives text of one part (n > 0 bytes, borrowed for the call). Returns 0, or < 0 to stop
 * (the push/flush returns it). */
typedef int (*mx_harmony_out_fn)(void *ud, enum mx_harmony_part part, const char *s, size_t n);

/* Splitter state. Plain struct, no allocation: mx_harmony_stream_init, then push and flush. */
struct mx_harmony_stream {
    bool in_header;                       /* between <|start|>/<|channel|>/<|end|> and
                                           * <|message|>: reading a header, not text */
    enum mx_harmony_part part;            /* the channel of the message text being read */
    char header[MX_HARMONY_MAX_HEADER];   /* the header so far (role, "<|channel|>name", ...) */
    size_t n_header;
    char hold[MX_HARMONY_MAX_TAG];        /* a tail that may be the start of a tag */
    size_t n_hold;
};

void mx_harmony_stream_init(struct mx_harmony_stream *s);

/* Feeds n bytes of generated text; out receives the text it can place so far. Returns 0 or
 * out's error. */
int mx_harmony_stream_push(struct mx_harmony_stream *s, const char *text, size_t n,
                           mx_harmony_out_fn out, void *ud);

/* End of the answer: hands out what was held back (an unfinished tag is text). Returns 0 or
 * out's error. The stream is left initialised for reuse. */
int mx_harmony_stream_flush(struct mx_harmony_stream *s, mx_harmony_out_fn out, void *ud);

/* A whole answer split at once: the analysis (and commentary) text into *reasoning, the final
 * text into *answer (both appended to; either may be NULL to drop it). Returns 0 or MX_ENOMEM. */
int mx_harmony_split(const char *text, size_t n, struct mx_bytes *reasoning,
                     struct mx_bytes *answer);

#endif
