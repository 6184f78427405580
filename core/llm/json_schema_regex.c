/* json_schema_regex.c - a JSON Schema `pattern` as a GBNF expression (see
 * json_schema_regex.h), for json_schema.c.
 *
 * A recursive-descent reader of the regex subset llama.cpp's json-schema-to-grammar reads:
 * alternation, groups (capturing or (?:...)), classes with ranges and negation, `.`, the
 * quantifiers ? * + {m} {m,} {m,n} (lazy forms read as greedy: the same strings), escapes \d
 * \w \s \D \W \S \n \r \t \f \v \0 \xHH \uHHHH and escaped punctuation. Every character
 * set becomes the JSON text of its characters: the ones JSON writes as they are in one GBNF
 * class, quote, backslash and control characters as their escapes. The sets are kept within
 * what a validator's regex engine matches too: `.` and negated classes leave out control
 * characters, negated shorthands (\D, [^\d]) stay within printable ASCII (a validator's \d
 * also takes other scripts' digits).
 */
#include "core/llm/json_schema_regex.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/text.h"

#define MAX_COUNT 10000    /* {m,n} above this is refused (the grammar engine unrolls it) */
#define MAX_RX_DEPTH 64    /* nested groups */

int mx_gbnf_class_cp(struct mx_bytes *b, uint32_t cp) {
    char t[16];
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9'))
        snprintf(t, sizeof t, "%c", (char)cp);
    else if (cp < 0x100)
        snprintf(t, sizeof t, "\\x%02X", (unsigned)cp);
    else if (cp < 0x10000)
        snprintf(t, sizeof t, "\\u%04X", (unsigned)cp);
    else
        snprintf(t, sizeof t, "\\U%08X", (unsigned)cp);
    return mx_bytes_add(b, t, strlen(t));
}

/* A set of code points as sorted, disjoint ranges. */
struct cpset {
    uint32_t lo[64], hi[64];
    size_t n;
    bool full;   /* more than 64 ranges were added (refused) */
};

/* Adds lo..hi (unsorted until cpset_norm; past 64 ranges the set is marked full). */
static void cpset_add(struct cpset *s, uint32_t lo, uint32_t hi) {
    if (s->n == 64) {
        s->full = true;
        return;
    }
    s->lo[s->n] = lo;
    s->hi[s->n++] = hi;
}

/* Sorts and merges the ranges. */
static void cpset_norm(struct cpset *s) {
    for (size_t i = 1; i < s->n; i++)
        for (size_t j = i; j > 0 && s->lo[j - 1] > s->lo[j]; j--) {
            uint32_t t = s->lo[j]; s->lo[j] = s->lo[j - 1]; s->lo[j - 1] = t;
            t = s->hi[j]; s->hi[j] = s->hi[j - 1]; s->hi[j - 1] = t;
        }
    size_t o = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (o && s->lo[i] <= s->hi[o - 1] + 1) {
            if (s->hi[i] > s->hi[o - 1])
                s->hi[o - 1] = s->hi[i];
        } else {
            s->lo[o] = s->lo[i];
            s->hi[o++] = s->hi[i];
        }
    }
    s->n = o;
}

/* The complement of s within [lo, hi] (s normalised). */
static void cpset_invert(const struct cpset *s, uint32_t lo, uint32_t hi, struct cpset *out) {
    out->n = 0;
    out->full = s->full;
    uint32_t at = lo;
    for (size_t i = 0; i < s->n; i++) {
        if (s->hi[i] < at)
            continue;
        if (s->lo[i] > hi)
            break;
        if (s->lo[i] > at)
            cpset_add(out, at, s->lo[i] - 1);
        at = s->hi[i] + 1;
        if (s->hi[i] >= hi)
            return;
    }
    if (at <= hi)
        cpset_add(out, at, hi);
}

/* A regex being translated (the pattern's text and where the parser is). */
struct rx {
    const char *p, *end;   /* the rest of the pattern */
    int depth;             /* nested groups */
    struct mx_bytes *out;  /* borrowed: where the expression goes */
    bool oom;              /* an append failed (the output is cut) */
    struct mx_err *err;    /* borrowed: the first error */
    int rc;                /* the first error (0: none) */
};

/* Appends s[0..n) to the output (a failure is remembered, checked at the end). */
static void out_n(struct rx *x, const char *s, size_t n) {
    if (!x->oom && mx_bytes_add(x->out, s, n) < 0)
        x->oom = true;
}

/* Appends the C string s. */
static void out_s(struct rx *x, const char *s) { out_n(x, s, strlen(s)); }

static void out_f(struct rx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a short formatted piece (numbers, escapes). */
static void out_f(struct rx *x, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        out_n(x, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Records the first unsupported feature (what: "a lookaround"). Returns MX_EUNSUP. */
static int rx_fail(struct rx *x, const char *what) {
    if (!x->rc)
        x->rc = mx_err_set(x->err, MX_EUNSUP, "%s is not supported", what);
    return x->rc;
}

/* Appends the JSON encoding of code point cp (as it appears inside the output's quotes) as a
 * GBNF literal. */
static void put_json_char(struct rx *x, uint32_t cp) {
    char u[8];
    size_t n = 0;
    switch (cp) {
    case '"': out_s(x, "\"\\\\\\\"\""); return;
    case '\\': out_s(x, "\"\\\\\\\\\""); return;
    case '\n': out_s(x, "\"\\\\n\""); return;
    case '\r': out_s(x, "\"\\\\r\""); return;
    case '\t': out_s(x, "\"\\\\t\""); return;
    case '\b': out_s(x, "\"\\\\b\""); return;
    case '\f': out_s(x, "\"\\\\f\""); return;
    }
    if (cp < 0x20) {
        out_f(x, "\"\\\\u%04x\"", (unsigned)cp);
        return;
    }
    n = mx_utf8_put(cp, u);
    out_s(x, "\"");
    out_n(x, u, n);
    out_s(x, "\"");
}

/* Appends a group matching one character of set s as JSON writes it: the characters JSON
 * writes as they are in one class, quote, backslash and control characters as their escapes. */
static int put_cpset(struct rx *x, struct cpset *s) {
    if (s->full)
        return rx_fail(x, "a character class with more than 64 ranges");
    cpset_norm(s);
    /* the plain part: s without 0x00-0x1F, '"', '\\', surrogates */
    struct cpset plain = {.n = 0}, special = {.n = 0};
    static const uint32_t cut_lo[] = {0x00, '"', '\\', 0xD800}, cut_hi[] = {0x1F, '"', '\\',
                                                                             0xDFFF};
    for (size_t i = 0; i < s->n; i++) {
        uint32_t lo = s->lo[i], hi = s->hi[i];
        for (size_t k = 0; k < 4 && lo <= hi; k++) {
            if (cut_hi[k] < lo || cut_lo[k] > hi)
                continue;
            if (cut_lo[k] > lo)
                cpset_add(&plain, lo, cut_lo[k] - 1);
            for (uint32_t cp = cut_lo[k] > lo ? cut_lo[k] : lo;
                 k < 3 && cp <= cut_hi[k] && cp <= hi; cp++)
                cpset_add(&special, cp, cp);
            lo = cut_hi[k] + 1;
        }
        if (lo <= hi)
            cpset_add(&plain, lo, hi);
    }
    if (plain.full || special.full)
        return rx_fail(x, "a character class with more than 64 ranges");
    size_t alts = (plain.n > 0) + special.n;
    if (alts == 0)
        return rx_fail(x, "a character class that no character matches");
    out_s(x, "(");
    bool first = true;
    if (plain.n) {
        out_s(x, "[");
        for (size_t i = 0; i < plain.n; i++) {
            mx_gbnf_class_cp(x->out, plain.lo[i]);
            if (plain.hi[i] > plain.lo[i]) {
                out_s(x, "-");
                mx_gbnf_class_cp(x->out, plain.hi[i]);
            }
        }
        out_s(x, "]");
        first = false;
    }
    for (size_t i = 0; i < special.n; i++) {
        if (!first)
            out_s(x, " | ");
        put_json_char(x, special.lo[i]);
        first = false;
    }
    out_s(x, ")");
    return 0;
}

/* \d \w \s into set (positive forms only). */
static void add_shorthand(struct cpset *s, char ch) {
    switch (ch) {
    case 'd': cpset_add(s, '0', '9'); break;
    case 'w':
        cpset_add(s, '0', '9'), cpset_add(s, 'A', 'Z'), cpset_add(s, 'a', 'z');
        cpset_add(s, '_', '_');
        break;
    case 's': cpset_add(s, '\t', '\r'), cpset_add(s, ' ', ' '); break;
    }
}

/* Reads hex digits (n of them) as a code point. Returns -1 when they are not there. */
static long rx_hex(struct rx *x, int n) {
    if (x->end - x->p < n)
        return -1;
    long v = 0;
    for (int i = 0; i < n; i++) {
        char ch = x->p[i];
        int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    x->p += n;
    return v;
}

/* An escape after '\\' (x->p at the letter) naming one character: its code point in *cp, or
 * a shorthand class letter in *cls (d w s D W S). Returns 0 or an error. */
static int rx_escape(struct rx *x, uint32_t *cp, char *cls) {
    *cls = 0;
    if (x->p >= x->end)
        return rx_fail(x, "a trailing backslash");
    char ch = *x->p++;
    long v;
    switch (ch) {
    case 'd': case 'w': case 's': case 'D': case 'W': case 'S': *cls = ch; return 0;
    case 'n': *cp = '\n'; return 0;
    case 'r': *cp = '\r'; return 0;
    case 't': *cp = '\t'; return 0;
    case 'f': *cp = '\f'; return 0;
    case 'v': *cp = '\v'; return 0;
    case '0': *cp = 0; return 0;
    case 'x':
        if ((v = rx_hex(x, 2)) < 0)
            return rx_fail(x, "a \\x escape without two hex digits");
        *cp = (uint32_t)v;
        return 0;
    case 'u':
        if ((v = rx_hex(x, 4)) < 0 || (v >= 0xD800 && v <= 0xDFFF))
            return rx_fail(x, "a \\u escape without four hex digits (or a surrogate)");
        *cp = (uint32_t)v;
        return 0;
    }
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')) {
        char what[32];
        snprintf(what, sizeof what, "the escape \\%c", ch);
        return rx_fail(x, what);
    }
    *cp = (unsigned char)ch; /* \. \* \\ \/ ...: the character itself */
    return 0;
}

/* The code point at x->p (UTF-8). */
static uint32_t rx_char(struct rx *x) {
    unsigned int cp;
    x->p += mx_utf8_decode(x->p, (size_t)(x->end - x->p), &cp);
    return cp;
}

/* A class "[...]" (x->p after '['). Negated classes and negated shorthands (\D \W \S) keep to
 * printable ASCII when they hold a shorthand, so they never take a Unicode digit, letter or space
 * a validator's \d \w \s would count. */
static int rx_class(struct rx *x) {
    struct cpset s = {.n = 0};
    bool neg = x->p < x->end && *x->p == '^', shorthand = false;
    if (neg)
        x->p++;
    bool first = true;
    while (x->p < x->end && (*x->p != ']' || first)) {
        if (*x->p == ']' && first)
            return rx_fail(x, "an empty character class");
        first = false;
        uint32_t lo;
        char cls = 0;
        if (*x->p == '\\') {
            x->p++;
            if (rx_escape(x, &lo, &cls))
                return x->rc;
        } else if (*x->p == '[' && x->p + 1 < x->end && x->p[1] == ':') {
            return rx_fail(x, "a POSIX class [:...:]");
        } else {
            lo = rx_char(x);
        }
        if (cls) {
            if (cls >= 'A' && cls <= 'Z')
                return rx_fail(x, "a negated shorthand inside a class");
            add_shorthand(&s, cls);
            shorthand = true;
            continue;
        }
        uint32_t hi = lo;
        if (x->p + 1 < x->end && *x->p == '-' && x->p[1] != ']') {
            x->p++;
            if (*x->p == '\\') {
                x->p++;
                if (rx_escape(x, &hi, &cls))
                    return x->rc;
                if (cls)
                    return rx_fail(x, "a range ending in a shorthand");
            } else {
                hi = rx_char(x);
            }
            if (hi < lo)
                return rx_fail(x, "a reversed range in a class");
        }
        cpset_add(&s, lo, hi);
    }
    if (x->p >= x->end)
        return rx_fail(x, "an unclosed '['");
    x->p++;
    if (!neg)
        return put_cpset(x, &s);
    cpset_norm(&s);
    struct cpset inv;
    cpset_invert(&s, 0x20, shorthand ? 0x7E : 0x10FFFF, &inv);
    return put_cpset(x, &inv);
}

/* alternation: defined below, used by groups */
static int rx_alt(struct rx *x);

/* A quantifier after an atom: appends its GBNF form. Returns 0 or an error. */
static int rx_quant(struct rx *x) {
    if (x->p >= x->end)
        return 0;
    char ch = *x->p;
    if (ch == '*' || ch == '+' || ch == '?') {
        x->p++;
        out_n(x, &ch, 1);
    } else if (ch == '{') {
        const char *q = x->p + 1;
        char *end;
        long m = strtol(q, &end, 10), n;
        if (end == q || m < 0)
            return rx_fail(x, "a '{' that is not a repetition {m,n}");
        if (*end == '}') {
            n = m;
        } else if (*end == ',' && end[1] == '}') {
            n = -1;
            end++;
        } else if (*end == ',') {
            q = end + 1;
            n = strtol(q, &end, 10);
            if (end == q || *end != '}' || n < m)
                return rx_fail(x, "a '{' that is not a repetition {m,n}");
        } else {
            return rx_fail(x, "a '{' that is not a repetition {m,n}");
        }
        if (m > MAX_COUNT || n > MAX_COUNT)
            return rx_fail(x, "a repetition count above 10000");
        x->p = end + 1;
        if (n < 0)
            out_f(x, "{%ld,}", m);
        else
            out_f(x, "{%ld,%ld}", m, n);
    } else {
        return 0;
    }
    if (x->p < x->end && *x->p == '?') /* lazy: the same strings */
        x->p++;
    else if (x->p < x->end && *x->p == '+')
        return rx_fail(x, "a possessive quantifier");
    if (x->p < x->end && (*x->p == '*' || *x->p == '+' || *x->p == '?' || *x->p == '{'))
        return rx_fail(x, "a quantifier after a quantifier");
    return 0;
}

/* A sequence of quantified atoms up to '|' or ')' or the end. */
static int rx_seq(struct rx *x) {
    bool any = false;
    while (x->p < x->end && *x->p != '|' && *x->p != ')') {
        if (any)
            out_s(x, " ");
        char ch = *x->p;
        int rc = 0;
        if (ch == '(') {
            x->p++;
            if (x->p < x->end && *x->p == '?') {
                if (x->p + 1 < x->end && x->p[1] == ':') {
                    x->p += 2;
                } else {
                    return rx_fail(x, "a lookaround or named group '(?'");
                }
            }
            if (++x->depth > MAX_RX_DEPTH)
                return rx_fail(x, "groups nested more than 64 deep");
            out_s(x, "(");
            rc = rx_alt(x);
            x->depth--;
            if (rc == 0 && (x->p >= x->end || *x->p != ')'))
                rc = rx_fail(x, "an unclosed '('");
            if (rc == 0) {
                x->p++;
                out_s(x, ")");
            }
        } else if (ch == '[') {
            x->p++;
            rc = rx_class(x);
        } else if (ch == '.') {
            x->p++;
            struct cpset s = {.n = 0};
            cpset_add(&s, 0x20, 0x10FFFF); /* any character but line breaks (and controls) */
            rc = put_cpset(x, &s);
        } else if (ch == '\\') {
            x->p++;
            uint32_t cp;
            char cls;
            rc = rx_escape(x, &cp, &cls);
            if (rc == 0 && cls) {
                struct cpset s = {.n = 0};
                add_shorthand(&s, (char)(cls | 0x20));
                if (cls >= 'A' && cls <= 'Z') {
                    struct cpset inv;
                    cpset_norm(&s);
                    cpset_invert(&s, 0x20, 0x7E, &inv);
                    s = inv;
                }
                rc = put_cpset(x, &s);
            } else if (rc == 0) {
                put_json_char(x, cp);
            }
        } else if (ch == '^' || ch == '$') {
            rc = rx_fail(x, "an anchor ('^' or '$') inside the pattern");
        } else if (ch == '*' || ch == '+' || ch == '?' || ch == '{') {
            rc = rx_fail(x, "a quantifier with nothing before it");
        } else if (ch == ']' || ch == '}') {
            x->p++;
            put_json_char(x, (uint32_t)ch);
        } else {
            put_json_char(x, rx_char(x));
        }
        if (rc == 0)
            rc = rx_quant(x);
        if (rc)
            return rc;
        any = true;
    }
    if (!any)
        out_s(x, "\"\"");
    return 0;
}

/* Alternatives separated by '|' up to ')' or the end. */
static int rx_alt(struct rx *x) {
    for (;;) {
        if (rx_seq(x))
            return x->rc;
        if (x->p >= x->end || *x->p != '|')
            return 0;
        x->p++;
        out_s(x, " | ");
    }
}


int mx_json_pattern_gbnf(const char *re, size_t n, struct mx_bytes *out, struct mx_err *err) {
    if (memchr(re, 0, n))
        return mx_err_set(err, MX_EUNSUP, "a NUL character is not supported");
    bool start = n > 0 && re[0] == '^';
    bool end = n > (size_t)start && re[n - 1] == '$' && (n < 2 || re[n - 2] != '\\');
    struct rx x = {.p = re + start, .end = re + n - end, .out = out, .err = err};
    if (!start)
        out_s(&x, "char* ");
    out_s(&x, "(");
    if (rx_alt(&x) == 0 && x.p < x.end)
        rx_fail(&x, "an unbalanced ')'");
    out_s(&x, ")");
    if (!end)
        out_s(&x, " char*");
    if (!x.rc && x.oom)
        x.rc = mx_err_set(err, MX_ENOMEM, "out of memory");
    return x.rc;
}
