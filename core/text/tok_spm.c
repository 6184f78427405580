/* tok_spm.c - SentencePiece BPE ("llama" vocabularies: Llama 2, Mistral, Mixtral), the algorithm
 * of llama.cpp's llm_tokenizer_spm_session: the text is cut into UTF-8 characters, then the
 * adjacent pair whose concatenation is the highest-scoring vocabulary token is merged, again and
 * again (a priority queue of bigrams; ties go to the leftmost pair). Symbols that are not tokens
 * at the end fall back to byte tokens <0xNN> (or the unknown token when the vocabulary has no
 * byte tokens, where llama.cpp would throw).
 * Ref: https://github.com/ggml-org/llama.cpp/blob/master/src/llama-vocab.cpp (llm_tokenizer_spm)
 */
#include <stdlib.h>

#include "core/text/tok_internal.h"
#include "core/base/util.h"

/* SentencePiece merges the pair whose concatenation is the highest-scoring token. */
static bool spm_pair(const struct mx_tokenizer *t, const char *text, const struct mx_tok_sym *l,
                     const struct mx_tok_sym *r, double *key) {
    int32_t id = mx_tokenizer_find(t, text + l->off, l->n + r->n);
    if (id < 0)
        return false;
    *key = t->vocab[id].score;
    return true;
}

int mx_tok_spm_fragment(const struct mx_tokenizer *t, const char *text, size_t len,
                        struct mx_idvec *out) {
    if (!len)
        return 0;
    size_t bytes;
    if (!mx_mul_size(len, sizeof(struct mx_tok_sym), &bytes))
        return MX_ENOMEM;
    struct mx_tok_sym *syms = malloc(bytes);
    int rc = MX_ENOMEM;
    if (!syms)
        return MX_ENOMEM;

    /* one symbol per UTF-8 character (by lead byte, clipped at the end) */
    int64_t n_sym = 0;
    for (size_t off = 0; off < len;) {
        size_t n = MX_MIN(mx_utf8_len((unsigned char)text[off]), len - off);
        syms[n_sym] = (struct mx_tok_sym){off, n, n_sym - 1, off + n == len ? -1 : n_sym + 1};
        off += n;
        n_sym++;
    }
    if ((rc = mx_tok_merge_symbols(t, text, syms, n_sym, spm_pair)) < 0)
        goto out;

    /* symbols -> ids; a symbol that is no token becomes its bytes */
    for (int64_t i = 0; i != -1; i = syms[i].next) {
        const struct mx_tok_sym *s = &syms[i];
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
    free(syms);
    return rc;
}
