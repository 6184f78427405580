/* tok_bpe.c - byte-level BPE ("gpt2" vocabularies: Llama 3, Qwen 2, Mistral Nemo's tekken, ...)
 * and the pre-tokenizer splitters, hand-written instead of a regex engine (no PCRE).
 *
 * Each splitter walks the text's codepoints the way the leftmost-first alternation of its regex
 * would, one alternative after another (llama.cpp's unicode_regex_split_custom_* do the same for
 * gpt2 and llama3); tests/test_tokenizer.c checks each on tricky strings against splits derived
 * by hand from the regexes. A pre-token is then byte-encoded (GPT-2's bytes_to_unicode) and its
 * characters merged by rank with a priority queue (llama.cpp's llm_tokenizer_bpe_session).
 * Ref: https://github.com/ggml-org/llama.cpp/blob/master/src/unicode.cpp
 */
#include <stdlib.h>
#include <string.h>

#include "core/text/tok_internal.h"
#include "core/base/util.h"

/* ---- codepoint view of a text --------------------------------------------------------------- */

#define F_IN 0x8000u /* position inside the text (llama.cpp: flags.as_uint() != 0) */

struct cpview {
    uint32_t *cp;   /* [n] codepoints (invalid bytes: U+FFFD) */
    size_t *off;    /* [n + 1] byte offset of each codepoint */
    size_t n;
};

static int cpview_init(struct cpview *v, const char *s, size_t len) {
    v->n = 0;
    v->cp = malloc((len ? len : 1) * sizeof(uint32_t));
    v->off = malloc((len + 1) * sizeof(size_t));
    if (!v->cp || !v->off) {
        free(v->cp);
        free(v->off);
        return MX_ENOMEM;
    }
    size_t o = 0;
    while (o < len) {
        v->off[v->n] = o;
        v->cp[v->n++] = mx_utf8_next(s, len, &o);
    }
    v->off[v->n] = len;
    return 0;
}

static void cpview_free(struct cpview *v) {
    free(v->cp);
    free(v->off);
}

static inline unsigned fl(const struct cpview *v, size_t i) {
    return i < v->n ? mx_uc_flags(v->cp[i]) | F_IN : 0;
}

static inline uint32_t cpat(const struct cpview *v, size_t i) {
    return i < v->n ? v->cp[i] : 0xFFFFFFFFu;
}

static inline bool is_other(unsigned f) { /* [^\s\p{L}\p{N}] */
    return (f & F_IN) && !(f & (MX_UC_WS | MX_UC_L | MX_UC_N));
}

static inline uint32_t ascii_lower(uint32_t c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's 't 're 've 'm 'll 'd at i (case-insensitive when icase): the match length or 0. */
static size_t contraction(const struct cpview *v, size_t i, bool icase) {
    if (cpat(v, i) != '\'' || i + 1 >= v->n)
        return 0;
    uint32_t a = cpat(v, i + 1), b = cpat(v, i + 2);
    if (icase) {
        a = ascii_lower(a);
        b = ascii_lower(b);
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (i + 2 < v->n &&
        ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')))
        return 3;
    return 0;
}

/* The whitespace alternatives shared by the llama3 family:
 * \s*[\r\n]+ (crlf true) | \s+(?!\S) | \s+ ; else one character. Returns the end. */
static size_t ws_tail(const struct cpview *v, size_t pos, bool crlf) {
    size_t n = 0, last_nl = 0;
    while (fl(v, pos + n) & MX_UC_WS) {
        uint32_t c = cpat(v, pos + n);
        if (c == '\r' || c == '\n')
            last_nl = pos + n + 1;
        n++;
    }
    if (crlf && last_nl)
        return last_nl;
    if (n > 1 && pos + n < v->n)
        return pos + n - 1; /* leave the last space to prefix the next word */
    if (n > 0)
        return pos + n;
    return pos + 1;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t next_gpt2(const struct cpview *v, size_t pos) {
    size_t k = contraction(v, pos, false);
    if (k)
        return pos + k;
    uint32_t c = v->cp[pos];
    size_t p = pos + (c == ' ');
    unsigned f2 = fl(v, p);
    if (f2 & MX_UC_L) {
        while (fl(v, p) & MX_UC_L)
            p++;
        return p;
    }
    if (f2 & MX_UC_N) {
        while (fl(v, p) & MX_UC_N)
            p++;
        return p;
    }
    if (is_other(f2)) {
        while (is_other(fl(v, p)))
            p++;
        return p;
    }
    return ws_tail(v, pos, false);
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+   (llama3: D = 3; qwen2: D = 1) */
static size_t next_llama3(const struct cpview *v, size_t pos, size_t max_digits) {
    size_t k = contraction(v, pos, true);
    if (k)
        return pos + k;
    uint32_t c = v->cp[pos];
    unsigned f = fl(v, pos);
    if (!(c == '\r' || c == '\n' || (f & MX_UC_N))) {
        if ((f & MX_UC_L) || (fl(v, pos + 1) & MX_UC_L)) {
            size_t p = pos + 1;
            while (fl(v, p) & MX_UC_L)
                p++;
            return p;
        }
    }
    if (f & MX_UC_N) {
        size_t p = pos;
        while (p - pos < max_digits && (fl(v, p) & MX_UC_N))
            p++;
        return p;
    }
    unsigned f2 = c == ' ' ? fl(v, pos + 1) : f;
    if (!(f2 & (MX_UC_WS | MX_UC_L | MX_UC_N))) {
        /* " ?[^\s\p{L}\p{N}]+[\r\n]*"; a lone trailing space ends up here as " " too */
        size_t p = pos + (c == ' ');
        while (is_other(fl(v, p)))
            p++;
        while (cpat(v, p) == '\r' || cpat(v, p) == '\n')
            p++;
        return p;
    }
    return ws_tail(v, pos, true);
}

/* tekken:
 * [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|
 * [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|
 * \p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * with the real Unicode categories (llama.cpp approximates them by ASCII case). */
#define T_UP (MX_UC_LU | MX_UC_LT | MX_UC_LM | MX_UC_LO | MX_UC_M)
#define T_LO (MX_UC_LL | MX_UC_LM | MX_UC_LO | MX_UC_M)

static bool t_prefix(const struct cpview *v, size_t i) {
    unsigned f = fl(v, i);
    uint32_t c = cpat(v, i);
    return (f & F_IN) && c != '\r' && c != '\n' && !(f & (MX_UC_L | MX_UC_N));
}

static size_t next_tekken(const struct cpview *v, size_t pos) {
    /* alternative 1: P? U* L+ (U* gives back characters until L+ can match) */
    for (int with_p = 1; with_p >= 0; with_p--) {
        size_t q = pos;
        if (with_p) {
            if (!t_prefix(v, q))
                continue;
            q++;
        }
        size_t u = q;
        while (fl(v, u) & T_UP)
            u++;
        for (size_t k = u + 1; k-- > q;) {
            if (fl(v, k) & T_LO) {
                size_t e = k;
                while (fl(v, e) & T_LO)
                    e++;
                return e;
            }
        }
    }
    /* alternative 2: P? U+ L* */
    for (int with_p = 1; with_p >= 0; with_p--) {
        size_t q = pos;
        if (with_p) {
            if (!t_prefix(v, q))
                continue;
            q++;
        }
        size_t u = q;
        while (fl(v, u) & T_UP)
            u++;
        if (u == q)
            continue;
        while (fl(v, u) & T_LO)
            u++;
        return u;
    }
    unsigned f = fl(v, pos);
    if (f & MX_UC_N)
        return pos + 1;
    uint32_t c = v->cp[pos];
    size_t p = pos;
    if (c == ' ' && is_other(fl(v, pos + 1)))
        p++;
    if (is_other(fl(v, p))) {
        while (is_other(fl(v, p)))
            p++;
        while (cpat(v, p) == '\r' || cpat(v, p) == '\n' || cpat(v, p) == '/')
            p++;
        return p;
    }
    return ws_tail(v, pos, true);
}

int mx_tok_split(enum mx_tok_pre pre, const char *s, size_t len, mx_split_fn emit, void *ud) {
    struct cpview v;
    int rc = cpview_init(&v, s, len);
    if (rc < 0)
        return rc;
    for (size_t pos = 0; pos < v.n && rc == 0;) {
        size_t end;
        switch (pre) {
        case MX_PRE_LLAMA3: end = next_llama3(&v, pos, 3); break;
        case MX_PRE_QWEN2: end = next_llama3(&v, pos, 1); break;
        case MX_PRE_TEKKEN: end = next_tekken(&v, pos); break;
        default: end = next_gpt2(&v, pos); break;
        }
        if (end <= pos || end > v.n) /* cannot happen; never loop forever */
            end = pos + 1;
        rc = emit(ud, v.off[pos], v.off[end]);
        pos = end;
    }
    cpview_free(&v);
    return rc;
}

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
    if (t->d.ignore_merges) {
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
            /* llama.cpp: each byte of the symbol's text as a one-byte token, when there is one */
            for (size_t j = 0; j < s->n && rc == 0; j++) {
                int32_t bid = mx_tokenizer_find(t, word + s->off + j, 1);
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
        for (size_t j = 0; j < k; j++)
            w += mx_utf8_put(mx_byte_to_cp((unsigned char)u8[j]), c->buf + w);
    }
    memcpy(c->buf + w, c->suffix, c->n_suffix);
    w += c->n_suffix;
    return mx_tok_bpe_merge(c->t, c->buf, w, c->n_suffix, c->out);
}

int mx_tok_bpe_fragment(const struct mx_tokenizer *t, const char *text, size_t len,
                        struct mx_idvec *out) {
    struct bpe_ctx c = {t, text, out, NULL, 0, "", 0, false};
    int rc = mx_tok_split(t->d.pre, text, len, bpe_word, &c);
    free(c.buf);
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
    struct bpe_ctx c = {t, clean, out, NULL, 0, "</w>", 4, true};
    int rc = mx_tok_split_clip(clean, n, bpe_word, &c);
    free(c.buf);
    free(clean);
    return rc;
}
