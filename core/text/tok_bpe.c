/* tok_bpe.c - byte-level BPE ("gpt2" vocabularies: Llama 3, Qwen 2, Mistral Nemo's tekken, ...)
 * and CLIP's split.
 *
 * The text is split by the vocabulary's pre-tokenizer (tok_pre.c), each pre-token byte-encoded
 * (GPT-2's bytes_to_unicode; raw UTF-8 for SentencePiece-style BPE such as gemma4) and its
 * characters merged by rank with a priority queue (llama.cpp's llm_tokenizer_bpe_session).
 * Ref: https://github.com/ggml-org/llama.cpp/blob/master/src/llama-vocab.cpp
 */
#include <stdlib.h>
#include <string.h>

#include "core/text/tok_internal.h"
#include "core/base/util.h"

/* ---- CLIP split (stable-diffusion.cpp's std::regex, ASCII classes, on bytes) ---------------- */

static bool c_alpha(unsigned char c) { return (c | 32) >= 'a' && (c | 32) <= 'z'; }
static bool c_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool c_space(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[[:alpha:]]+|[[:digit:]]|
 * [^[:space:][:alpha:][:digit:]]+  (icase); bytes no alternative matches (spaces) are skipped. */
int mx_tok_split_clip(const char *s, size_t len, mx_split_fn emit, void *ud) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    int rc = 0;
    while (i < len && rc == 0) {
        size_t e = i;
        if (len - i >= 15 && memcmp(s + i, "<|startoftext|>", 15) == 0) {
            e = i + 15;
        } else if (len - i >= 13 && memcmp(s + i, "<|endoftext|>", 13) == 0) {
            e = i + 13;
        } else if (u[i] == '\'' && i + 1 < len &&
                   ((u[i + 1] | 32) == 's' || (u[i + 1] | 32) == 't' || (u[i + 1] | 32) == 'm' ||
                    (u[i + 1] | 32) == 'd')) {
            e = i + 2;
        } else if (u[i] == '\'' && i + 2 < len &&
                   (((u[i + 1] | 32) == 'r' && (u[i + 2] | 32) == 'e') ||
                    ((u[i + 1] | 32) == 'v' && (u[i + 2] | 32) == 'e') ||
                    ((u[i + 1] | 32) == 'l' && (u[i + 2] | 32) == 'l'))) {
            e = i + 3;
        } else if (c_alpha(u[i])) {
            while (e < len && c_alpha(u[e]))
                e++;
        } else if (c_digit(u[i])) {
            e = i + 1;
        } else if (!c_space(u[i])) {
            while (e < len && !c_space(u[e]) && !c_alpha(u[e]) && !c_digit(u[e]))
                e++;
        } else {
            i++;
            continue;
        }
        rc = emit(ud, i, e);
        i = e;
    }
    return rc;
}

/* ---- merging -------------------------------------------------------------------------------- */

/* GPT-2/CLIP BPE merges the pair with the lowest merge rank first. */
static bool bpe_pair(const struct mx_tokenizer *t, const char *text, const struct mx_tok_sym *l,
                     const struct mx_tok_sym *r, double *key) {
    int32_t rank = mx_tok_merge_rank(t, text + l->off, l->n, text + r->off, r->n);
    if (rank < 0)
        return false;
    *key = -(double)rank;
    return true;
}

int mx_tok_bpe_merge(const struct mx_tokenizer *t, const char *word, size_t len, size_t n_tail,
                     struct mx_idvec *out) {
    if (!len)
        return 0;
    size_t n_nl = 0;
    while (n_nl < len && word[n_nl] == '\n')
        n_nl++;
    if (t->d.ignore_merges || (t->d.pre == MX_PRE_GEMMA4 && t->d.kind == MX_TOK_BPE &&
                               n_nl == len)) {
        /* gemma4: a newline run that is a token stays whole (llama.cpp PR 21343) */
        int32_t id = mx_tokenizer_find(t, word, len);
        if (id >= 0)
            return mx_idvec_push(out, id);
    }
    struct mx_tok_sym *syms = malloc(len * sizeof(*syms));
    int rc = MX_ENOMEM;
    if (!syms)
        return MX_ENOMEM;
    int64_t n_sym = 0;
    size_t body = len - n_tail;
    for (size_t off = 0; off < len;) {
        size_t n = MX_MIN(mx_utf8_len((unsigned char)word[off]), len - off);
        if (off + n >= body && n_tail) /* CLIP: the last character carries "</w>" */
            n = len - off;
        syms[n_sym] = (struct mx_tok_sym){off, n, n_sym - 1, off + n == len ? -1 : n_sym + 1};
        off += n;
        n_sym++;
    }
    if ((rc = mx_tok_merge_symbols(t, word, syms, n_sym, bpe_pair)) < 0)
        goto out;
    rc = 0;
    for (int64_t i = 0; i != -1 && rc == 0; i = syms[i].next) {
        const struct mx_tok_sym *s = &syms[i];
        int32_t id = mx_tokenizer_find(t, word + s->off, s->n);
        if (id >= 0) {
            rc = mx_idvec_push(out, id);
        } else if (t->d.kind == MX_TOK_CLIP) {
            rc = mx_idvec_push(out, 0); /* stable-diffusion.cpp: encoder[] default */
        } else {
            /* llama.cpp: each byte of the symbol's text as a one-byte token (raw UTF-8
             * vocabularies: its <0xNN> token), when there is one */
            for (size_t j = 0; j < s->n && rc == 0; j++) {
                static const char hex[] = "0123456789ABCDEF";
                unsigned char c = (unsigned char)word[s->off + j];
                char hb[6] = {'<', '0', 'x', hex[c >> 4], hex[c & 15], '>'};
                int32_t bid = t->d.raw_bytes ? mx_tokenizer_find(t, hb, 6)
                                             : mx_tokenizer_find(t, word + s->off + j, 1);
                if (bid >= 0)
                    rc = mx_idvec_push(out, bid);
            }
        }
    }
out:
    free(syms);
    return rc;
}

/* State of one encode call for the splitters' callback. */
struct bpe_ctx {
    const struct mx_tokenizer *t;
    const char *text;
    struct mx_idvec *out;
    char *buf;
    size_t cap;
    const char *suffix; /* CLIP "</w>" */
    size_t n_suffix;
    bool raw;           /* CLIP: byte-encode the bytes as they are (no UTF-8 check) */
    bool utf8;          /* raw UTF-8 vocabularies: no byte encoding (invalid bytes -> U+FFFD) */
};

/* Byte-encodes text[a..b) into c->buf (BPE: invalid UTF-8 -> U+FFFD first, as llama.cpp does),
 * appends the suffix, then merges. */
static int bpe_word(void *ud, size_t a, size_t b) {
    struct bpe_ctx *c = ud;
    size_t need;
    /* each byte becomes at most 2 bytes of UTF-8, invalid bytes 3 bytes -> 6 */
    if (!mx_mul_size(b - a, 6, &need) || !mx_add_size(need, c->n_suffix + 8, &need))
        return MX_ENOMEM;
    if (need > c->cap) {
        char *nb = realloc(c->buf, need);
        if (!nb)
            return MX_ENOMEM;
        c->buf = nb;
        c->cap = need;
    }
    size_t w = 0;
    for (size_t o = a; o < b && c->raw; o++)
        w += mx_utf8_put(mx_byte_to_cp((unsigned char)c->text[o]), c->buf + w);
    for (size_t o = a; o < b && !c->raw;) {
        char u8[4];
        uint32_t cp = mx_utf8_next(c->text, b, &o);
        size_t k = mx_utf8_put(cp, u8);
        if (c->utf8) {
            memcpy(c->buf + w, u8, k);
            w += k;
            continue;
        }
        for (size_t j = 0; j < k; j++)
            w += mx_utf8_put(mx_byte_to_cp((unsigned char)u8[j]), c->buf + w);
    }
    memcpy(c->buf + w, c->suffix, c->n_suffix);
    w += c->n_suffix;
    return mx_tok_bpe_merge(c->t, c->buf, w, c->n_suffix, c->out);
}

int mx_tok_bpe_fragment(const struct mx_tokenizer *t, const char *text, size_t len,
                        struct mx_idvec *out) {
    struct bpe_ctx c = {t, text, out, NULL, 0, "", 0, false, t->d.raw_bytes};
    char *esc = NULL;
    if (t->d.escape_spaces) { /* llama_escape_whitespace: every " " becomes U+2581 */
        size_t n_sp = 0, w = 0;
        for (size_t i = 0; i < len; i++)
            n_sp += text[i] == ' ';
        if (!(esc = malloc(len + 2 * n_sp + 1)))
            return MX_ENOMEM;
        for (size_t i = 0; i < len; i++) {
            if (text[i] == ' ') {
                memcpy(esc + w, "\xe2\x96\x81", 3);
                w += 3;
            } else {
                esc[w++] = text[i];
            }
        }
        c.text = text = esc;
        len = w;
    }
    int rc = mx_tok_pretok_split(t->pretok, text, len, bpe_word, &c);
    free(c.buf);
    free(esc);
    return rc;
}

/* CLIP: whitespace runs -> one space, trimmed, ASCII lower-cased (stable-diffusion.cpp's
 * whitespace_clean + std::tolower), then split and merged with "</w>" on each word. */
int mx_tok_clip_text(const struct mx_tokenizer *t, const char *text, size_t len,
                     struct mx_idvec *out) {
    char *clean = malloc(len + 1);
    if (!clean)
        return MX_ENOMEM;
    size_t n = 0;
    bool space = false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (c_space(ch)) {
            space = n > 0;
            continue;
        }
        if (space)
            clean[n++] = ' ';
        space = false;
        clean[n++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
    }
    struct bpe_ctx c = {t, clean, out, NULL, 0, "</w>", 4, true, false};
    int rc = mx_tok_split_clip(clean, n, bpe_word, &c);
    free(c.buf);
    free(clean);
    return rc;
}
