/* tok_spm.c - SentencePiece BPE ("llama" vocabularies: Llama 2, Mistral, Mixtral), the algorithm
 * of llama.cpp's llm_tokenizer_spm_session: the text is cut into UTF-8 characters, then the
 * adjacent pair whose concatenation is the highest-scoring vocabulary token is merged, again and
 * again (a priority queue of bigrams; ties go to the leftmost pair). Symbols that are not tokens
 * at the end fall back to byte tokens <0xNN> (or the unknown token when the vocabulary has no
 * byte tokens, where llama.cpp would throw).
 * Ref: https://github.com/ggml-org/llama.cpp/blob/master/src/llama-vocab.cpp (llm_tokenizer_spm)
 */
#include <stdlib.h>

#include "core/tok_internal.h"
#include "core/util.h"

struct sym {
    size_t off, n; /* bytes of the text; n == 0 once merged into its left neighbour */
    int64_t prev, next;
};

struct bigram {
    int64_t left, right;
    float score;
    size_t size;
};

/* max-heap: higher score first, then smaller left */
static bool bg_before(const struct bigram *a, const struct bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

struct heap {
    struct bigram *v;
    size_t n, cap;
};

static int heap_push(struct heap *h, struct bigram b) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        size_t bytes;
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

/* Queues the merge of symbols left and right when their text is a token. */
static int try_bigram(const struct mx_tokenizer *t, const char *text, struct sym *syms,
                      struct heap *h, int64_t left, int64_t right) {
    if (left < 0 || right < 0)
        return 0;
    size_t n = syms[left].n + syms[right].n;
    int32_t id = mx_tokenizer_find(t, text + syms[left].off, n);
    if (id < 0)
        return 0;
    return heap_push(h, (struct bigram){left, right, t->vocab[id].score, n});
}

int mx_tok_spm_fragment(const struct mx_tokenizer *t, const char *text, size_t len,
                        struct mx_idvec *out) {
    if (!len)
        return 0;
    size_t bytes;
    if (!mx_mul_size(len, sizeof(struct sym), &bytes))
        return MX_ENOMEM;
    struct sym *syms = malloc(bytes);
    struct heap h = {0};
    int rc = MX_ENOMEM;
    if (!syms)
        return MX_ENOMEM;

    /* one symbol per UTF-8 character (by lead byte, clipped at the end) */
    int64_t n_sym = 0;
    for (size_t off = 0; off < len;) {
        size_t n = MX_MIN(mx_utf8_len((unsigned char)text[off]), len - off);
        syms[n_sym] = (struct sym){off, n, n_sym - 1, off + n == len ? -1 : n_sym + 1};
        off += n;
        n_sym++;
    }
    for (int64_t i = 1; i < n_sym; i++)
        if ((rc = try_bigram(t, text, syms, &h, i - 1, i)) < 0)
            goto out;

    while (h.n) {
        struct bigram b = heap_pop(&h);
        struct sym *l = &syms[b.left], *r = &syms[b.right];
        /* stale: one side was merged away since this pair was queued */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            syms[r->next].prev = b.left;
        if ((rc = try_bigram(t, text, syms, &h, l->prev, b.left)) < 0 ||
            (rc = try_bigram(t, text, syms, &h, b.left, l->next)) < 0)
            goto out;
    }

    /* symbols -> ids; a symbol that is no token becomes its bytes */
    for (int64_t i = 0; i != -1; i = syms[i].next) {
        const struct sym *s = &syms[i];
        int32_t id = mx_tokenizer_find(t, text + s->off, s->n);
        if (id >= 0) {
            if ((rc = mx_idvec_push(out, id)) < 0)
                goto out;
            continue;
        }
        for (size_t j = 0; j < s->n; j++) {
            int32_t bid = t->byte_ids[(unsigned char)text[s->off + j]];
            if (bid < 0)
                bid = t->d.unk_id;
            if (bid >= 0 && (rc = mx_idvec_push(out, bid)) < 0)
                goto out;
        }
    }
    rc = 0;
out:
    free(h.v);
    free(syms);
    return rc;
}
