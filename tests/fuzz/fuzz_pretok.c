/* fuzz_pretok.c - libFuzzer target for the BPE pre-tokenizers (core/text/tok_pre.c, the
 * hand-written splitters of tok_split.c and the regex engine of tok_regex.c).
 *
 * Input layout: byte 0 picks the pre-tokenizer (modulo MX_PRE_COUNT), the rest is the text
 * (any bytes, invalid UTF-8 included). Every pre-tokenizer is built once.
 * Invariants checked (abort = crash report): splitting succeeds, pieces are non-empty,
 * contiguous, in order, on UTF-8 sequence starts as mx_utf8_next walks them, and cover the whole
 * text; a second split gives the same pieces (no hidden state). Time is bounded by libFuzzer's
 * -timeout: a pattern that backtracks badly on some input shows up as a timeout.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/tok_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mx_tok_pretok *pres[MX_PRE_COUNT];

/* A broken invariant: report and crash so libFuzzer keeps the input. */
static void die(const char *what) {
    fprintf(stderr, "fuzz_pretok: invariant broken: %s\n", what);
    abort();
}

/* The pieces of one split. */
struct pieces {
    const char *s;
    size_t len;
    size_t next;   /* where the next piece must start */
    size_t *ends;  /* recorded ends (first pass), compared on the second */
    size_t n, cap;
    bool check;    /* second pass: compare with ends */
    size_t k;
};

/* Checks one piece (first pass: records its end; second: compares). */
static int on_piece(void *ud, size_t a, size_t b) {
    struct pieces *p = ud;
    if (a != p->next || b <= a || b > p->len)
        die("pieces not contiguous, empty or past the end");
    /* a piece ends where a codepoint ends */
    size_t o = a;
    while (o < b)
        (void)mx_utf8_next(p->s, p->len, &o);
    if (o != b)
        die("piece ends inside a UTF-8 sequence");
    p->next = b;
    if (p->check) {
        if (p->k >= p->n || p->ends[p->k] != b)
            die("second split differs");
        p->k++;
        return 0;
    }
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 64;
        p->ends = realloc(p->ends, p->cap * sizeof(*p->ends));
        if (!p->ends)
            die("out of memory");
    }
    p->ends[p->n++] = b;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1 || size > 4096)
        return 0;
    if (!pres[0]) {
        for (int i = 0; i < MX_PRE_COUNT; i++)
            if (mx_tok_pretok_new((enum mx_tok_pre)i, &pres[i], NULL) < 0)
                die("a pre-tokenizer does not build");
    }
    int which = data[0] % MX_PRE_COUNT;
    const char *s = (const char *)data + 1;
    size_t len = size - 1;
    struct pieces p = {s, len, 0, NULL, 0, 0, false, 0};
    if (mx_tok_pretok_split(pres[which], s, len, on_piece, &p) != 0)
        die("split failed");
    if (p.next != len)
        die("pieces do not cover the text");
    p.next = 0;
    p.check = true;
    if (mx_tok_pretok_split(pres[which], s, len, on_piece, &p) != 0 || p.k != p.n)
        die("second split failed or differs");
    free(p.ends);
    return 0;
}
