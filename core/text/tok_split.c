/* tok_split.c - the hand-written pre-tokenizer splitters: the patterns llama.cpp itself runs
 * without std::regex (unicode_regex_split_custom_*: gpt2, llama3, qwen2, qwen35, kimi-k2, afmoe
 * digits, newline runs). Each walks one fragment's codepoints the way llama.cpp's does, with
 * the real Unicode categories, and appends the piece lengths (in codepoints); tok_pre.c chains
 * them with the regex steps. Splitting like llama.cpp matters more than splitting like the
 * original regex: where its code and its regex disagree (kimi-k2's letters, afmoe's digits) the
 * code wins, because that is what the model files are run with.
 * Ref: https://github.com/ggml-org/llama.cpp/blob/master/src/unicode.cpp
 */
#include "core/text/tok_internal.h"

/* Flags of position i (0 past the fragment) and its codepoint (0xFFFFFFFF past it), as
 * llama.cpp's _get_flags / _get_cpt. */
static inline unsigned fl(const struct mx_cps *v, size_t i) { return i < v->n ? v->fl[i] : 0; }

static inline uint32_t cpat(const struct mx_cps *v, size_t i) {
    return i < v->n ? v->cp[i] : 0xFFFFFFFFu;
}

/* Neither space, letter nor number, inside the fragment. */
static inline bool is_other(unsigned f) { /* [^\s\p{L}\p{N}] */
    return (f & MX_UC_IN) && !(f & (MX_UC_WS | MX_UC_L | MX_UC_N));
}

/* Lower-cases A-Z (the only letters the contraction rules compare). */
static inline uint32_t ascii_lower(uint32_t c) {
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* 's 't 're 've 'm 'll 'd at i (case-insensitive when icase): the match length or 0. */
static size_t contraction(const struct mx_cps *v, size_t i, bool icase) {
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
static size_t ws_tail(const struct mx_cps *v, size_t pos, bool crlf) {
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
static size_t next_gpt2(const struct mx_cps *v, size_t pos) {
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

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?L+|\p{N}{1,D}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 * \s*[\r\n]+|\s+(?!\S)|\s+   (llama3: L = \p{L}, D = 3; qwen2: D = 1; qwen35: L = [\p{L}\p{M}],
 * D = 1, and the punctuation run also stops at \p{M}) */
static size_t next_llama3(const struct mx_cps *v, size_t pos, size_t max_digits, unsigned let) {
    size_t k = contraction(v, pos, true);
    if (k)
        return pos + k;
    uint32_t c = v->cp[pos];
    unsigned f = fl(v, pos);
    if (!(c == '\r' || c == '\n' || (f & MX_UC_N))) {
        if ((f & let) || (fl(v, pos + 1) & let)) {
            size_t p = pos + 1;
            while (fl(v, p) & let)
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
    if (!(f2 & (MX_UC_WS | let | MX_UC_N))) {
        /* " ?[^\s\p{L}\p{N}]+[\r\n]*"; a lone trailing space ends up here as " " too */
        size_t p = pos + (c == ' ');
        while ((fl(v, p) & MX_UC_IN) && !(fl(v, p) & (MX_UC_WS | let | MX_UC_N)))
            p++;
        while (cpat(v, p) == '\r' || cpat(v, p) == '\n')
            p++;
        return p;
    }
    return ws_tail(v, pos, true);
}

/* llama.cpp's unicode_cpt_is_han: the CJK ideograph blocks kimi-k2 keeps apart. */
static bool is_han(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2EBEF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* kimi-k2: a letter that is not Han. */
static bool k2_letter(const struct mx_cps *v, size_t i) {
    return (fl(v, i) & MX_UC_L) && !is_han(cpat(v, i));
}

/* kimi-k2: [\p{Han}]+ | non-Han letter runs with an optional one-character prefix and a
 * contraction suffix | \p{N}{1,3} | then as llama3. Follows llama.cpp's code, which treats all
 * non-Han letters alike (no case split). */
static size_t next_kimi(const struct mx_cps *v, size_t pos, struct mx_lenvec *out, int *rc) {
    uint32_t c = v->cp[pos];
    unsigned f = fl(v, pos);
    if (is_han(c)) {
        while (is_han(cpat(v, pos)))
            pos++;
        return pos;
    }
    bool lead = !(c == '\r' || c == '\n' || (f & (MX_UC_L | MX_UC_N)));
    if (k2_letter(v, pos) || (lead && k2_letter(v, pos + 1))) {
        size_t p = pos + lead;
        while (k2_letter(v, p))
            p++;
        size_t k = contraction(v, p, true);
        return p + k;
    }
    if (f & MX_UC_N) {
        size_t p = pos;
        while (fl(v, p) & MX_UC_N) {
            p++;
            if (p - pos == 3 && (fl(v, p) & MX_UC_N)) { /* full groups of three go out now */
                *rc = mx_lenvec_push(out, 3);
                pos = p;
            }
        }
        return p;
    }
    unsigned f2 = c == ' ' ? fl(v, pos + 1) : f;
    if (is_other(f2)) {
        size_t p = pos + (c == ' ');
        while (is_other(fl(v, p)))
            p++;
        while (cpat(v, p) == '\r' || cpat(v, p) == '\n')
            p++;
        return p;
    }
    return ws_tail(v, pos, true);
}

int mx_tok_split_custom(enum mx_tok_custom which, const struct mx_cps *v, struct mx_lenvec *out) {
    int rc = 0;
    if (which == MX_SPLIT_NEWLINES) { /* [^\n]+|[\n]+ */
        for (size_t pos = 0; pos < v->n && rc == 0;) {
            size_t p = pos;
            bool nl = v->cp[pos] == '\n';
            while (p < v->n && (v->cp[p] == '\n') == nl)
                p++;
            rc = mx_lenvec_push(out, p - pos);
            pos = p;
        }
        return rc;
    }
    if (which == MX_SPLIT_AFMOE) {
        /* digit runs: the first 1-2 digits (length mod 3) together with any text since the
         * last piece, then groups of three; text after the last run is one piece */
        size_t prev = 0;
        for (size_t pos = 0; pos < v->n && rc == 0;) {
            if (!(fl(v, pos) & MX_UC_N)) {
                pos++;
                continue;
            }
            size_t s = pos;
            while (fl(v, pos) & MX_UC_N)
                pos++;
            size_t cur = s + (pos - s) % 3;
            if (cur > s) {
                rc = mx_lenvec_push(out, cur - prev);
                prev = cur;
            }
            for (; cur < pos && rc == 0; cur += 3) {
                rc = mx_lenvec_push(out, cur + 3 - prev);
                prev = cur + 3;
            }
        }
        if (rc == 0 && prev < v->n)
            rc = mx_lenvec_push(out, v->n - prev);
        return rc;
    }
    for (size_t pos = 0; pos < v->n && rc == 0;) {
        size_t end;
        switch (which) {
        case MX_SPLIT_LLAMA3: end = next_llama3(v, pos, 3, MX_UC_L); break;
        case MX_SPLIT_QWEN2: end = next_llama3(v, pos, 1, MX_UC_L); break;
        case MX_SPLIT_QWEN35: end = next_llama3(v, pos, 1, MX_UC_L | MX_UC_M); break;
        case MX_SPLIT_KIMI: {
            size_t before = out->n;
            size_t p0 = pos;
            end = next_kimi(v, pos, out, &rc);
            for (size_t i = before; i < out->n; i++) /* groups of three already emitted */
                p0 += out->v[i];
            pos = p0;
            break;
        }
        default: end = next_gpt2(v, pos); break;
        }
        if (rc < 0)
            break;
        if (end <= pos || end > v->n) /* cannot happen; never loop forever */
            end = pos + 1;
        rc = mx_lenvec_push(out, end - pos);
        pos = end;
    }
    return rc;
}
