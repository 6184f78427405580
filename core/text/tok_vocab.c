/* tok_vocab.c - the vocabulary helpers every tokenizer algorithm reads: the id vector, the text
 * hash, descriptor defaults, pre-tokenizer names, and lookups in the vocabulary and merge-rank
 * hash maps that tokenizer.c builds. tok_spm.c, tok_bpe.c and tok_clip.c call down into this
 * file; tokenizer.c calls both, so no two files call each other.
 *
 * Workload: mx_tokenizer_find and mx_tok_merge_rank run once per candidate pair while encoding
 * (open addressing, a few probes each).
 */
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "core/text/tok_internal.h"

int mx_idvec_push(struct mx_idvec *iv, int32_t id) {
    if (iv->n == iv->cap) {
        size_t cap = iv->cap ? iv->cap * 2 : 64;
        size_t bytes;
        if (!mx_mul_size(cap, sizeof(int32_t), &bytes))
            return MX_ENOMEM;
        int32_t *v = realloc(iv->v, bytes);
        if (!v)
            return MX_ENOMEM;
        iv->v = v;
        iv->cap = cap;
    }
    iv->v[iv->n++] = id;
    return 0;
}

uint64_t mx_tok_hash(const char *s, size_t len, uint64_t h) {
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void mx_tok_desc_init(struct mx_tok_desc *d, enum mx_tok_kind kind) {
    memset(d, 0, sizeof(*d));
    d->kind = kind;
    d->bos_id = d->eos_id = d->unk_id = d->pad_id = d->eot_id = MX_TOK_NONE;
    switch (kind) {
    case MX_TOK_SPM:
        d->bos_id = 1;
        d->eos_id = 2;
        d->unk_id = 0;
        d->add_bos = true;
        d->add_space_prefix = true;
        break;
    case MX_TOK_BPE:
        d->bos_id = 11;
        d->eos_id = 11;
        d->clean_spaces = true;
        break;
    case MX_TOK_CLIP:
        d->bos_id = MX_CLIP_BOS;
        d->eos_id = MX_CLIP_EOS;
        d->pad_id = MX_CLIP_EOS;
        d->add_bos = true;
        d->add_eos = true;
        break;
    }
}

/* Slot of text in the vocabulary map: the one holding it, or the empty one where it would go. */
size_t mx_tok_map_slot(const struct mx_tokenizer *t, const char *s, size_t len) {
    size_t mask = t->map_cap - 1;
    size_t i = (size_t)mx_tok_hash(s, len, MX_TOK_HASH_SEED) & mask;
    for (;;) {
        int32_t id = t->map[i];
        if (id < 0)
            return i;
        const struct mx_tok_entry *e = &t->vocab[id];
        if (e->len == len && memcmp(e->text, s, len) == 0)
            return i;
        i = (i + 1) & mask;
    }
}

int32_t mx_tokenizer_find(const struct mx_tokenizer *t, const char *s, size_t len) {
    if (!t || len > MX_TOK_MAX_TEXT)
        return MX_TOK_NONE;
    int32_t id = t->map[mx_tok_map_slot(t, s, len)];
    return id < 0 ? MX_TOK_NONE : id;
}

static uint64_t pair_hash(const char *l, size_t ll, const char *r, size_t rl) {
    uint64_t h = mx_tok_hash(l, ll, MX_TOK_HASH_SEED);
    h = mx_tok_hash("\xff", 1, h); /* separator: 0xff never occurs in UTF-8 */
    return mx_tok_hash(r, rl, h);
}

size_t mx_tok_merge_slot(const struct mx_tokenizer *t, const char *l, size_t ll, const char *r,
                         size_t rl) {
    size_t mask = t->mmap_cap - 1;
    size_t i = (size_t)pair_hash(l, ll, r, rl) & mask;
    for (;;) {
        int32_t k = t->mmap_[i];
        if (k < 0)
            return i;
        const struct mx_tok_merge *m = &t->merges[k];
        if (m->left_len == ll && m->right_len == rl && memcmp(m->left, l, ll) == 0 &&
            memcmp(m->right, r, rl) == 0)
            return i;
        i = (i + 1) & mask;
    }
}

int32_t mx_tok_merge_rank(const struct mx_tokenizer *t, const char *l, size_t ll, const char *r,
                          size_t rl) {
    if (!t->mmap_cap)
        return -1;
    return t->mmap_[mx_tok_merge_slot(t, l, ll, r, rl)];
}
