/* tok_merge.c - the pair-merge loop both BPE flavours share: symbols in a linked list, adjacent
 * pairs that may merge in a priority queue, the best pair merged again and again, stale queue
 * entries skipped (llama.cpp's llm_tokenizer_spm/bpe sessions). SentencePiece ranks pairs by the
 * merged token's score, GPT-2/CLIP BPE by merge rank; the caller says which through pair_key. */
#include <stdlib.h>

#include "core/text/tok_internal.h"
#include "core/base/util.h"

struct bigram {
    int64_t left, right;
    double key;  /* larger merges first */
    size_t size; /* bytes of the pair when queued: a different size means it is stale */
};

struct heap {
    struct bigram *v;
    size_t n, cap;
};

/* Larger key first; ties to the leftmost pair. */
static bool bg_before(const struct bigram *a, const struct bigram *b) {
    return a->key > b->key || (a->key == b->key && a->left < b->left);
}

static int heap_push(struct heap *h, struct bigram b) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16, bytes;
        if (!mx_mul_size(cap, sizeof(*h->v), &bytes))
            return MX_ENOMEM;
        struct bigram *v = realloc(h->v, bytes);
        if (!v)
            return MX_ENOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_before(&b, &h->v[p]))
            break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = b;
    return 0;
}

static struct bigram heap_pop(struct heap *h) {
    struct bigram top = h->v[0];
    struct bigram last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && bg_before(&h->v[c + 1], &h->v[c]))
            c++;
        if (!bg_before(&h->v[c], &last))
            break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (h->n)
        h->v[i] = last;
    return top;
}

/* Queues the merge of symbols l and r when pair_key says they merge. */
static int try_pair(const struct mx_tokenizer *t, const char *text, const struct mx_tok_sym *syms,
                    mx_tok_pair_fn pair_key, struct heap *h, int64_t l, int64_t r) {
    double key;
    if (l < 0 || r < 0 || !pair_key(t, text, &syms[l], &syms[r], &key))
        return 0;
    return heap_push(h, (struct bigram){l, r, key, syms[l].n + syms[r].n});
}

int mx_tok_merge_symbols(const struct mx_tokenizer *t, const char *text, struct mx_tok_sym *syms,
                         int64_t n_sym, mx_tok_pair_fn pair_key) {
    struct heap h = {0};
    int rc = 0;
    for (int64_t i = 1; i < n_sym && rc == 0; i++)
        rc = try_pair(t, text, syms, pair_key, &h, i - 1, i);
    while (rc == 0 && h.n) {
        struct bigram b = heap_pop(&h);
        struct mx_tok_sym *l = &syms[b.left], *r = &syms[b.right];
        /* stale: one side was merged away since this pair was queued */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            syms[r->next].prev = b.left;
        rc = try_pair(t, text, syms, pair_key, &h, l->prev, b.left);
        if (rc == 0)
            rc = try_pair(t, text, syms, pair_key, &h, b.left, l->next);
    }
    free(h.v);
    return rc;
}
