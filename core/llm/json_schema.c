/* json_schema.c - JSON Schema -> GBNF (see json_schema.h for what is exact).
 *
 * One pass over the schema (jansson keeps the objects' key order): every sub-schema becomes a
 * rule named after its path ("items", "a-b-kv", "ref-defs-node"); rules with the same name and
 * body are shared, a different body under a taken name gets a numeric suffix. Built-in rules
 * (space, string, number, the formats) are added once when first used. $ref targets are
 * converted once each; a rule name is reserved before the target is visited, so a recursive
 * schema refers to its own rule. The result is checked by compiling it with mx_grammar_parse,
 * which also catches recursion that consumes nothing (left recursion).
 *
 * Sized for schemas of tools and answers (a few KiB); nesting is limited to MAX_DEPTH, counts
 * (lengths, items, regex repetitions) to MAX_COUNT, so hostile input cannot exhaust the stack or
 * blow the grammar up.
 */
#include "core/llm/json_schema.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/bytes.h"
#include "core/base/text.h"
#include "core/llm/grammar.h"
#include "core/llm/json_schema_regex.h"

#define MAX_DEPTH 200      /* nested sub-schemas (and $ref hops) */
#define MAX_COUNT 10000    /* minLength, maxItems, regex {m,n}: larger is refused */
#define MAX_NAME 64        /* rule names are cut to this many bytes (suffixes keep them unique) */
#define INT_DIGITS_MAX 9999999999999999LL /* a missing integer bound: 16 digits, as llama.cpp */
#define INT_LIMIT 1000000000000000000LL   /* the widest integer range written (+-1e18) */

/* ---- the built-in rules: one text each, shared by the converter and mx_json_any_gbnf ------ */

#define R_SPACE "| \" \" | \"\\n\"{1,2} [ \\t]{0,20}"
#define R_BOOLEAN "(\"true\" | \"false\") space"
#define R_NULL "\"null\" space"
#define R_DECIMAL "[0-9]{1,16}"
#define R_DECIMAL_NONZERO "\"0\"{0,15} [1-9] [0-9]{0,15}" /* decimals that are not all zeros */
#define R_INTEGRAL "[0] | [1-9] [0-9]{0,15}"
#define R_NUMBER                                                                               \
    "(\"-\"? integral-part) (\".\" decimal-part)? ([eE] [-+]? integral-part)? space"
#define R_INTEGER "(\"-\"? integral-part) space"
/* a JSON string character: \u escapes of surrogate halves are left out (a lone one is not
 * valid text, a pair would count as two characters against minLength) */
#define R_CHAR                                                                                 \
    "[^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] ([\"\\\\bfnrt] | \"u\" ([0-9a-cA-CeEfF] [0-9a-fA-F]{3} " \
    "| [dD] [0-7] [0-9a-fA-F]{2}))"
#define R_STRING "\"\\\"\" char* \"\\\"\" space"
#define R_VALUE "object | array | string | number | boolean | null"
#define R_OBJECT                                                                               \
    "\"{\" space ( string \":\" space value (\",\" space string \":\" space value)* )? \"}\" space"
#define R_ARRAY "\"[\" space ( value (\",\" space value)* )? \"]\" space"
/* a key character without escapes: an additional property's key can then be compared with the
 * declared names by its characters alone */
#define R_KEY_CHAR "[^\"\\\\\\x7F\\x00-\\x1F]"
#define R_UUID                                                                                 \
    "\"\\\"\" [0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} "   \
    "\"-\" [0-9a-fA-F]{12} \"\\\"\" space"
/* full-date: 0001-9999, months 01-12, days per month, 29 February only in leap years */
#define R_DATE                                                                                 \
    "year \"-\" (\"0\" [13578] | \"1\" [02]) \"-\" day31 | "                                   \
    "year \"-\" (\"0\" [469] | \"11\") \"-\" day30 | "                                         \
    "year \"-02-\" day28 | leap-year \"-02-29\""
#define R_YEAR "\"000\" [1-9] | \"00\" [1-9] [0-9] | \"0\" [1-9] [0-9]{2} | [1-9] [0-9]{3}"
#define R_LEAP_YEAR                                                                            \
    "[0-9] [0-9] (\"0\" [48] | [2468] [048] | [13579] [26]) | "                                \
    "([02468] [048] | [13579] [26]) \"00\""
#define R_DAY28 "\"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8]"
#define R_DAY30 "\"0\" [1-9] | [12] [0-9] | \"30\""
#define R_DAY31 "\"0\" [1-9] | [12] [0-9] | \"3\" [01]"
#define R_TIME                                                                                 \
    "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{3})? "         \
    "(\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])"
#define R_DATE_TIME "date \"T\" time"
#define R_DATE_STRING "\"\\\"\" date \"\\\"\" space"
#define R_TIME_STRING "\"\\\"\" time \"\\\"\" space"
#define R_DATE_TIME_STRING "\"\\\"\" date-time \"\\\"\" space"

/* A built-in rule: its name, body and the built-ins its body names. */
struct builtin {
    const char *name, *body;
    const char *deps[6];
};

static const struct builtin builtins[] = {
    {"space", R_SPACE, {NULL}},
    {"boolean", R_BOOLEAN, {"space"}},
    {"null", R_NULL, {"space"}},
    {"decimal-part", R_DECIMAL, {NULL}},
    {"decimal-nonzero", R_DECIMAL_NONZERO, {NULL}},
    {"integral-part", R_INTEGRAL, {NULL}},
    {"number", R_NUMBER, {"integral-part", "decimal-part", "space"}},
    {"integer", R_INTEGER, {"integral-part", "space"}},
    {"char", R_CHAR, {NULL}},
    {"string", R_STRING, {"char", "space"}},
    {"value", R_VALUE, {"object", "array", "string", "number", "boolean", "null"}},
    {"object", R_OBJECT, {"string", "value", "space"}},
    {"array", R_ARRAY, {"value", "space"}},
    {"key-char", R_KEY_CHAR, {NULL}},
    {"uuid", R_UUID, {"space"}},
    {"year", R_YEAR, {NULL}},
    {"leap-year", R_LEAP_YEAR, {NULL}},
    {"day28", R_DAY28, {NULL}},
    {"day30", R_DAY30, {NULL}},
    {"day31", R_DAY31, {NULL}},
    {"date", R_DATE, {"year", "leap-year", "day28", "day30", "day31"}},
    {"time", R_TIME, {NULL}},
    {"date-time", R_DATE_TIME, {"date", "time"}},
    {"date-string", R_DATE_STRING, {"date", "space"}},
    {"time-string", R_TIME_STRING, {"time", "space"}},
    {"date-time-string", R_DATE_TIME_STRING, {"date-time", "space"}},
};

/* The built-ins an object needs, root first (one text with the converter's rules). */
const char *mx_json_any_gbnf(void) {
    return "root ::= object\n"
           "object ::= " R_OBJECT "\n"
           "value ::= " R_VALUE "\n"
           "array ::= " R_ARRAY "\n"
           "string ::= " R_STRING "\n"
           "char ::= " R_CHAR "\n"
           "number ::= " R_NUMBER "\n"
           "integral-part ::= " R_INTEGRAL "\n"
           "decimal-part ::= " R_DECIMAL "\n"
           "boolean ::= " R_BOOLEAN "\n"
           "null ::= " R_NULL "\n"
           "space ::= " R_SPACE "\n";
}

/* ---- growing text ------------------------------------------------------------------------ */

/* GBNF text being written: a byte buffer that remembers a failed append (checked once, at the
 * end of a rule) instead of failing every call. */
struct sb {
    struct mx_bytes m;  /* the text (NUL-terminated once anything was added) */
    bool oom;           /* an append failed: the text is cut */
};

/* Appends s[0..n). */
static void sb_put(struct sb *b, const char *s, size_t n) {
    if (!b->oom && mx_bytes_add(&b->m, s, n) < 0)
        b->oom = true;
}

/* Appends the C string s. */
static void sb_puts(struct sb *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(struct sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a formatted text (short pieces: numbers and names). */
static void sb_printf(struct sb *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    sb_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* The text, or "" when nothing was appended (still owned by b). */
static const char *sb_str(const struct sb *b) { return b->m.p ? b->m.p : ""; }

/* Frees the text (b itself is the caller's). */
static void sb_free(struct sb *b) { mx_bytes_free(&b->m); }

/* ---- the converter's state ---------------------------------------------------------------- */

/* One rule of the grammar being built. */
struct rule {
    char *name;  /* owned; unique */
    char *body;  /* owned; NULL while reserved (a $ref target being converted) */
};

/* A $ref already converted (or being converted): its pointer and rule. */
struct ref {
    char *ptr;         /* owned: the JSON pointer after '#' */
    const char *name;  /* the rule's name (borrowed from the rule table) */
};

struct conv {
    json_t *doc;             /* borrowed: the whole schema ($ref targets are looked up in it) */
    struct rule *r;          /* [n_r] rules in the order they were added */
    size_t n_r, cap_r;
    struct ref *refs;        /* [n_refs] */
    size_t n_refs, cap_refs;
    struct mx_err *err;      /* borrowed: where the first error goes */
    int rc;                  /* the first error (0: none yet) */
    int depth;               /* current sub-schema nesting (MAX_DEPTH) */
    char path[512];          /* the JSON pointer of the sub-schema being converted */
    size_t path_n;           /* its length */
};

/* Records the first error (later ones are consequences). Returns rc. */
static int fail(struct conv *c, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct conv *c, int rc, const char *fmt, ...) {
    if (c->rc)
        return c->rc;
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->rc = rc;
    mx_err_set(c->err, rc, "json schema: %s", msg);
    return rc;
}

/* An allocation failed: MX_ENOMEM recorded. */
static int oom(struct conv *c) { return fail(c, MX_ENOMEM, "out of memory"); }

/* Where we are, for messages: the JSON pointer, or "/" for the top. */
static const char *here(const struct conv *c) { return c->path_n ? c->path : "/"; }

/* Appends "/seg" (RFC 6901: ~ as ~0, / as ~1) to the path; returns the old length for
 * path_pop. A path too long for the buffer ends in "...". */
static size_t path_push(struct conv *c, const char *seg) {
    size_t old = c->path_n, n = old;
    size_t cap = sizeof c->path - 4;
    if (n < cap)
        c->path[n++] = '/';
    for (const char *s = seg; *s && n < cap; s++) {
        if (*s == '~' || *s == '/') {
            c->path[n++] = '~';
            if (n < cap)
                c->path[n++] = *s == '~' ? '0' : '1';
        } else {
            c->path[n++] = *s;
        }
    }
    if (n >= cap)
        memcpy(c->path + cap, "...", 4), n = cap + 3;
    c->path[n] = 0;
    c->path_n = n;
    return old;
}

/* Back to the path as it was before path_push returned old. */
static void path_pop(struct conv *c, size_t old) {
    c->path_n = old;
    c->path[old] = 0;
}

/* path_push of "/key/i" (an array member: /anyOf/2); returns the old length. */
static size_t path_push_index(struct conv *c, const char *key, size_t i) {
    char seg[32];
    snprintf(seg, sizeof seg, "%zu", i);
    size_t old = path_push(c, key);
    path_push(c, seg);
    return old;
}

/* A rule name from a path-like name: characters outside [a-zA-Z0-9-] become '-', cut to
 * MAX_NAME. */
static void clean_name(const char *in, char *out, size_t size) {
    size_t n = 0;
    for (const char *s = in; *s && n + 1 < size && n < MAX_NAME; s++) {
        char ch = *s;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '-';
        if (ok || n == 0 || out[n - 1] != '-')
            out[n++] = ok ? ch : '-';
    }
    if (n == 0)
        out[n++] = 'r';
    out[n] = 0;
}

/* The rule named name, or NULL (a linear search: schemas make tens to hundreds of rules). */
static struct rule *find_rule(struct conv *c, const char *name) {
    for (size_t i = 0; i < c->n_r; i++)
        if (!strcmp(c->r[i].name, name))
            return &c->r[i];
    return NULL;
}

/* Adds a rule (name cleaned); body NULL reserves the name. The same name with the same body is
 * shared; a different body gets name0, name1, ... Returns the rule's name (owned by the table),
 * or NULL after an error. */
static const char *add_rule(struct conv *c, const char *name, const char *body) {
    if (c->rc)
        return NULL;
    char base[MAX_NAME + 1], key[MAX_NAME + 24];
    clean_name(name, base, sizeof base);
    snprintf(key, sizeof key, "%s", base);
    for (unsigned i = 0;; i++) {
        struct rule *r = find_rule(c, key);
        if (!r)
            break;
        if (body && r->body && !strcmp(r->body, body))
            return r->name;
        snprintf(key, sizeof key, "%s%u", base, i);
    }
    if (c->n_r == c->cap_r) {
        size_t cap = c->cap_r ? c->cap_r * 2 : 32;
        struct rule *r = realloc(c->r, cap * sizeof *r);
        if (!r)
            return oom(c), NULL;
        c->r = r;
        c->cap_r = cap;
    }
    struct rule *r = &c->r[c->n_r];
    r->name = strdup(key);
    r->body = body ? strdup(body) : NULL;
    if (!r->name || (body && !r->body)) {
        free(r->name);
        free(r->body);
        return oom(c), NULL;
    }
    c->n_r++;
    return r->name;
}

/* True for the names the built-ins (and root) own: a sub-schema named so gets a '-' after. */
static bool reserved_name(const char *name) {
    if (!strcmp(name, "root"))
        return true;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
        if (!strcmp(builtins[i].name, name))
            return true;
    return false;
}

/* Adds built-in name and the built-ins it needs (once). Returns its name or NULL. */
static const char *use_builtin(struct conv *c, const char *name) {
    if (c->rc)
        return NULL;
    struct rule *have = find_rule(c, name);
    if (have)
        return have->name;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        const struct builtin *b = &builtins[i];
        if (strcmp(b->name, name))
            continue;
        const char *n = add_rule(c, b->name, b->body);
        for (size_t d = 0; n && d < 6 && b->deps[d]; d++)
            if (!use_builtin(c, b->deps[d]))
                return NULL;
        return n;
    }
    fail(c, MX_EINVAL, "no built-in rule '%s'", name);
    return NULL;
}

/* ---- GBNF literals and classes ---------------------------------------------------------- */

/* Appends the GBNF literal for the bytes s[0..n) as they must appear in the output ("\"" for a
 * quote, \\ for a backslash, \n \r \t, \xHH for other control bytes). */
static void put_literal(struct sb *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"')
            sb_puts(b, "\\\"");
        else if (ch == '\\')
            sb_puts(b, "\\\\");
        else if (ch == '\n')
            sb_puts(b, "\\n");
        else if (ch == '\r')
            sb_puts(b, "\\r");
        else if (ch == '\t')
            sb_puts(b, "\\t");
        else if (ch < 0x20 || ch == 0x7F)
            sb_printf(b, "\\x%02X", ch);
        else
            sb_put(b, (const char *)&ch, 1);
    }
    sb_put(b, "\"", 1);
}

/* Appends code point cp as a GBNF class member. */
static void put_class_cp(struct sb *b, uint32_t cp) {
    if (!b->oom && mx_gbnf_class_cp(&b->m, cp) < 0)
        b->oom = true;
}

/* Appends the GBNF literal of value v as compact JSON text (const, enum). */
static int put_json_literal(struct conv *c, struct sb *b, const json_t *v) {
    char *t = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!t)
        return oom(c);
    put_literal(b, t, strlen(t));
    free(t);
    return 0;
}

/* ---- repetition (llama.cpp's build_repetition) -------------------------------------------- */

/* Appends item repeated min..max times (max < 0: no bound), separated by sep when sep is not
 * NULL. */
static void put_repetition(struct sb *b, const char *item, long min, long max, const char *sep) {
    if (max == 0)
        return;
    if (min == 0 && max == 1) {
        sb_printf(b, "(%s)?", item);
        return;
    }
    if (!sep) {
        if (min == 1 && max < 0)
            sb_printf(b, "(%s)+", item);
        else if (min == 0 && max < 0)
            sb_printf(b, "(%s)*", item);
        else if (max < 0)
            sb_printf(b, "(%s){%ld,}", item, min);
        else
            sb_printf(b, "(%s){%ld,%ld}", item, min, max);
        return;
    }
    struct sb rest = {0};
    sb_printf(&rest, "%s %s", sep, item);
    struct sb one = {0};
    sb_puts(&one, item);
    sb_puts(&one, " ");
    put_repetition(&one, sb_str(&rest), min ? min - 1 : 0, max < 0 ? -1 : max - 1, NULL);
    if (min == 0)
        sb_printf(b, "(%s)?", sb_str(&one));
    else
        sb_puts(b, sb_str(&one));
    b->oom |= one.oom || rest.oom;
    sb_free(&one);
    sb_free(&rest);
}

/* ---- integer ranges ------------------------------------------------------------------------- */

/* Appends an expression matching the decimal numbers from lo to hi, both n digits long (the
 * strings as they are written, lo <= hi). */
static void put_digit_range(struct sb *b, const char *lo, const char *hi, size_t n) {
    size_t i = 0;
    while (i < n && lo[i] == hi[i])
        i++;
    sb_puts(b, "(");
    if (i > 0)
        put_literal(b, lo, i);
    if (i == n) {
        sb_puts(b, ")");
        return;
    }
    if (i > 0)
        sb_puts(b, " ");
    size_t r = n - i - 1; /* digits after the first differing one */
    char a = lo[i], z = hi[i];
    if (r == 0) {
        sb_printf(b, "[%c-%c])", a, z);
        return;
    }
    bool lo_zeros = strspn(lo + i + 1, "0") == r, hi_nines = strspn(hi + i + 1, "9") == r;
    char from = lo_zeros ? a : (char)(a + 1), to = hi_nines ? z : (char)(z - 1);
    char nines[24], zeros[24];
    memset(nines, '9', r);
    memset(zeros, '0', r);
    nines[r] = zeros[r] = 0;
    sb_puts(b, "(");
    bool first = true;
    if (!lo_zeros) {
        sb_printf(b, "[%c] ", a);
        put_digit_range(b, lo + i + 1, nines, r);
        first = false;
    }
    if (from <= to) {
        sb_printf(b, "%s[%c-%c] [0-9]{%zu}", first ? "" : " | ", from, to, r);
        first = false;
    }
    if (!hi_nines) {
        sb_printf(b, "%s[%c] ", first ? "" : " | ", z);
        put_digit_range(b, zeros, hi + i + 1, r);
    }
    sb_puts(b, "))");
}

/* Appends alternatives for the whole numbers lo..hi (0 <= lo <= hi), no leading zeros. */
static void put_uint_range(struct sb *b, long long lo, long long hi) {
    char ls[24], hs[24];
    int nl = snprintf(ls, sizeof ls, "%lld", lo), nh = snprintf(hs, sizeof hs, "%lld", hi);
    for (int len = nl; len <= nh; len++) {
        char a[24], z[24];
        if (len == nl)
            memcpy(a, ls, (size_t)nl + 1);
        else
            a[0] = '1', memset(a + 1, '0', (size_t)len - 1), a[len] = 0;
        if (len == nh)
            memcpy(z, hs, (size_t)nh + 1);
        else
            memset(z, '9', (size_t)len), z[len] = 0;
        if (len > nl)
            sb_puts(b, " | ");
        put_digit_range(b, a, z, (size_t)len);
    }
}

/* Appends "( ... )" matching the integers lo..hi (lo <= hi, both within +-INT_LIMIT). */
static void put_int_range(struct sb *b, long long lo, long long hi) {
    sb_puts(b, "(");
    bool any = false;
    if (lo < 0) {
        sb_puts(b, "\"-\" (");
        put_uint_range(b, hi < 0 ? -hi : 1, -lo);
        sb_puts(b, ")");
        any = true;
    }
    if (hi >= 0) {
        if (any)
            sb_puts(b, " | ");
        put_uint_range(b, lo > 0 ? lo : 0, hi);
    }
    sb_puts(b, ")");
}

/* ---- the visitor ---------------------------------------------------------------------------- */

/* the visitor's two entry points, defined at the end (they recurse through the rest) */
static const char *visit(struct conv *c, json_t *s, const char *name);
static int visit_body(struct conv *c, json_t *s, const char *name, struct sb *body);

/* Keywords that would constrain the answer in a way the grammar does not. */
static const char *const refused_keywords[] = {
    "not", "if", "then", "else", "patternProperties", "dependentRequired", "dependentSchemas",
    "dependencies", "propertyNames", "unevaluatedProperties", "unevaluatedItems", "contains",
    "minContains", "maxContains", "multipleOf", "minProperties", "maxProperties",
    "$dynamicRef", "$recursiveRef", "$anchor", "$dynamicAnchor", "$recursiveAnchor",
};

/* Keywords that only describe (or hold definitions): ignored where they appear. */
static const char *const annotation_keywords[] = {
    "$schema", "$id", "id", "$comment", "title", "description", "default", "examples",
    "deprecated", "readOnly", "writeOnly", "$defs", "definitions", "contentMediaType",
    "contentEncoding", "$vocabulary",
};

/* True when k is one of list[0..n). */
static bool in_list(const char *k, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(k, list[i]))
            return true;
    return false;
}

#define IN(k, list) in_list(k, list, sizeof list / sizeof list[0])

/* True for a keyword that only describes. */
static bool is_annotation(const char *k) { return IN(k, annotation_keywords); }

/* Refuses the keywords of s that the grammar cannot follow. Returns 0 or MX_EUNSUP. */
static int check_keywords(struct conv *c, json_t *s) {
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (IN(k, refused_keywords))
            return fail(c, MX_EUNSUP, "'%s' at %s is not supported", k, here(c));
        if (!strcmp(k, "uniqueItems") && json_is_true(v))
            return fail(c, MX_EUNSUP, "'uniqueItems': true at %s is not supported", here(c));
    }
    return 0;
}

/* A whole number keyword in [0, MAX_COUNT]: 0 with *out (def when absent), or an error. */
static int get_count(struct conv *c, json_t *s, const char *key, long def, long *out) {
    json_t *v = json_object_get(s, key);
    *out = def;
    if (!v)
        return 0;
    double d = json_is_integer(v) ? (double)json_integer_value(v)
               : json_is_real(v)  ? json_real_value(v)
                                  : -1;
    if (!(d >= 0) || d != floor(d))
        return fail(c, MX_EFORMAT, "'%s' at %s is not a whole number >= 0", key, here(c));
    if (d > MAX_COUNT)
        return fail(c, MX_EUNSUP, "'%s' at %s is %.0f, more than the %d supported", key, here(c),
                    d, MAX_COUNT);
    *out = (long)d;
    return 0;
}

/* The sub-schema a local $ref ("#", "#/a/b/0") points to, or NULL after an error. */
static json_t *resolve_ref(struct conv *c, const char *ref) {
    if (ref[0] != '#')
        return fail(c, MX_EUNSUP, "'$ref' '%.80s' at %s: only local references (#/...) are "
                    "supported", ref, here(c)), NULL;
    json_t *t = c->doc;
    const char *p = ref + 1;
    if (*p && *p != '/')
        return fail(c, MX_EUNSUP, "'$ref' '%.80s' at %s: anchors are not supported", ref,
                    here(c)), NULL;
    while (*p == '/') {
        p++;
        char seg[256];
        size_t n = 0;
        while (*p && *p != '/') {
            char ch = *p++;
            if (ch == '~' && (*p == '0' || *p == '1'))
                ch = *p++ == '0' ? '~' : '/';
            else if (ch == '%' && p[0] && p[1]) { /* URI-escaped pointer characters */
                char hx[3] = {p[0], p[1], 0};
                char *end;
                long v = strtol(hx, &end, 16);
                if (*end == 0 && v > 0) {
                    ch = (char)v;
                    p += 2;
                }
            }
            if (n + 1 < sizeof seg)
                seg[n++] = ch;
        }
        seg[n] = 0;
        if (json_is_object(t)) {
            t = json_object_get(t, seg);
        } else if (json_is_array(t)) {
            char *end;
            unsigned long i = strtoul(seg, &end, 10);
            t = *seg && !*end ? json_array_get(t, i) : NULL;
        } else {
            t = NULL;
        }
        if (!t)
            return fail(c, MX_EFORMAT, "'$ref' '%.80s' at %s points to nothing", ref, here(c)),
                   NULL;
    }
    return t;
}

/* A $ref: the target's rule (converted once; reserved first so recursion refers to it).
 * Writes the rule name to body. */
static int visit_ref(struct conv *c, json_t *s, struct sb *body) {
    json_t *rv = json_object_get(s, "$ref");
    if (!json_is_string(rv))
        return fail(c, MX_EFORMAT, "'$ref' at %s is not a string", here(c));
    const char *k;
    json_t *v;
    json_object_foreach(s, k, v) {
        if (strcmp(k, "$ref") && !is_annotation(k))
            return fail(c, MX_EUNSUP, "'%s' beside '$ref' at %s is not supported", k, here(c));
    }
    const char *ref = json_string_value(rv);
    const char *frag = strchr(ref, '#') ? strchr(ref, '#') + 1 : ref;
    for (size_t i = 0; i < c->n_refs; i++)
        if (!strcmp(c->refs[i].ptr, frag)) {
            sb_puts(body, c->refs[i].name);
            return 0;
        }
    json_t *t = resolve_ref(c, ref);
    if (!t)
        return c->rc;
    char nm[MAX_NAME + 8];
    snprintf(nm, sizeof nm, "ref-%s", frag);
    const char *name = add_rule(c, nm, NULL);
    if (!name)
        return c->rc;
    if (c->n_refs == c->cap_refs) {
        size_t cap = c->cap_refs ? c->cap_refs * 2 : 16;
        struct ref *r = realloc(c->refs, cap * sizeof *r);
        if (!r)
            return oom(c);
        c->refs = r;
        c->cap_refs = cap;
    }
    if (!(c->refs[c->n_refs].ptr = strdup(frag)))
        return oom(c);
    c->refs[c->n_refs++].name = name;
    size_t old = c->path_n;
    char saved[sizeof c->path];
    memcpy(saved, c->path, sizeof saved);
    snprintf(c->path, sizeof c->path, "%s", frag); /* messages inside name the target */
    c->path_n = strlen(c->path);
    struct sb tb = {0};
    int rc = visit_body(c, t, name, &tb);
    memcpy(c->path, saved, sizeof saved);
    c->path_n = old;
    if (rc == 0 && tb.oom)
        rc = oom(c);
    if (rc == 0) {
        struct rule *r = find_rule(c, name);
        if (!(r->body = strdup(sb_str(&tb))))
            rc = oom(c);
    }
    sb_free(&tb);
    if (rc == 0)
        sb_puts(body, name);
    return rc;
}

/* anyOf / oneOf: each branch (with the keywords beside the list merged into it) as an
 * alternative. */
static int visit_union(struct conv *c, json_t *s, const char *key, const char *name,
                       struct sb *body) {
    json_t *list = json_object_get(s, key);
    if (!json_is_array(list) || json_array_size(list) == 0)
        return fail(c, MX_EFORMAT, "'%s' at %s is not a non-empty array", key, here(c));
    const char *other = !strcmp(key, "anyOf") ? "oneOf" : "anyOf";
    if (json_object_get(s, other))
        return fail(c, MX_EUNSUP, "'%s' beside '%s' at %s is not supported", other, key,
                    here(c));
    size_t i;
    json_t *alt;
    json_array_foreach(list, i, alt) {
        size_t old = path_push_index(c, key, i);
        json_t *m = NULL;
        if (json_is_object(alt) || json_is_true(alt)) { /* A and (B or C) = (A and B) or ... */
            if (!(m = json_is_true(alt) ? json_object() : json_deep_copy(alt)))
                return oom(c);
            const char *k;
            json_t *v;
            json_object_foreach(s, k, v) {
                if (!strcmp(k, key) || is_annotation(k))
                    continue;
                json_t *mine = json_object_get(m, k);
                if (mine && !json_equal(mine, v)) {
                    json_decref(m);
                    return fail(c, MX_EUNSUP, "'%s' both at %s and beside '%s' is not "
                                "supported", k, here(c), key);
                }
                json_object_set(m, k, v);
            }
        } else {
            m = json_incref(alt);
        }
        char sub[MAX_NAME + 24];
        snprintf(sub, sizeof sub, "%s%s%zu", name, *name ? "-" : "alternative-", i);
        const char *r = visit(c, m, sub);
        json_decref(m);
        path_pop(c, old);
        if (!r)
            return c->rc;
        sb_printf(body, "%s%s", i ? " | " : "", r);
    }
    return 0;
}

/* Merges component t into the allOf result m (properties and required unioned; other keywords
 * must agree). Returns 0 or an error. */
static int merge_component(struct conv *c, json_t *m, json_t *t, int depth) {
    if (depth > MAX_DEPTH)
        return fail(c, MX_EUNSUP, "'allOf' at %s nests too deep", here(c));
    if (json_is_true(t))
        return 0;
    if (!json_is_object(t))
        return fail(c, MX_EUNSUP, "'allOf' at %s: a component is not an object", here(c));
    if (check_keywords(c, t))
        return c->rc;
    json_t *ref = json_object_get(t, "$ref");
    if (ref) {
        if (!json_is_string(ref))
            return fail(c, MX_EFORMAT, "'$ref' at %s is not a string", here(c));
        json_t *tt = resolve_ref(c, json_string_value(ref));
        return tt ? merge_component(c, m, tt, depth + 1) : c->rc;
    }
    json_t *all = json_object_get(t, "allOf");
    if (all) {
        size_t i;
        json_t *x;
        if (!json_is_array(all))
            return fail(c, MX_EFORMAT, "'allOf' at %s is not an array", here(c));
        json_array_foreach(all, i, x) {
            if (merge_component(c, m, x, depth + 1))
                return c->rc;
        }
    }
    const char *k;
    json_t *v;
    json_object_foreach(t, k, v) {
        if (!strcmp(k, "allOf") || is_annotation(k))
            continue;
        json_t *have = json_object_get(m, k);
        if (!strcmp(k, "properties") && json_is_object(v)) {
            if (!have) {
                json_object_set_new(m, k, json_object());
                have = json_object_get(m, k);
            }
            const char *pk;
            json_t *pv;
            json_object_foreach(v, pk, pv) {
                json_t *hp = json_object_get(have, pk);
                if (hp && !json_equal(hp, pv))
                    return fail(c, MX_EUNSUP, "'allOf' at %s: property '%.60s' defined twice "
                                "differently", here(c), pk);
                json_object_set(have, pk, pv);
            }
        } else if (!strcmp(k, "required") && json_is_array(v)) {
            if (!have) {
                json_object_set_new(m, k, json_array());
                have = json_object_get(m, k);
            }
            if (json_array_extend(have, v))
                return oom(c);
        } else if (!strcmp(k, "additionalProperties") && !json_is_true(v)) {
            return fail(c, MX_EUNSUP, "'additionalProperties' in a component of 'allOf' at %s "
                        "is not supported", here(c));
        } else if (have && !json_equal(have, v)) {
            return fail(c, MX_EUNSUP, "'allOf' at %s: '%s' given twice differently", here(c), k);
        } else {
            json_object_set(m, k, v);
        }
    }
    return 0;
}

/* allOf: the components merged into one schema, then converted. */
static int visit_all_of(struct conv *c, json_t *s, const char *name, struct sb *body) {
    json_t *m = json_object();
    if (!m)
        return oom(c);
    int rc = merge_component(c, m, s, 0);
    if (rc == 0 && json_object_get(m, "allOf")) /* cannot happen: merge skips allOf */
        rc = fail(c, MX_EINVAL, "allOf left after merging");
    if (rc == 0)
        rc = visit_body(c, m, name, body);
    json_decref(m);
    return rc;
}

/* True when JSON value v has JSON Schema type t. */
static bool has_type(const json_t *v, const char *t) {
    if (!strcmp(t, "integer"))
        return json_is_integer(v) || (json_is_real(v) && json_real_value(v) ==
                                                             floor(json_real_value(v)));
    if (!strcmp(t, "number"))
        return json_is_number(v);
    if (!strcmp(t, "string"))
        return json_is_string(v);
    if (!strcmp(t, "boolean"))
        return json_is_boolean(v);
    if (!strcmp(t, "null"))
        return json_is_null(v);
    if (!strcmp(t, "object"))
        return json_is_object(v);
    if (!strcmp(t, "array"))
        return json_is_array(v);
    return false;
}

/* True for the seven JSON Schema type names. */
static bool known_type(const char *t) {
    static const char *const types[] = {"integer", "number", "string", "boolean", "null",
                                        "object", "array"};
    return IN(t, types);
}

/* True when v is of the type keyword tk (a name or a list of names; NULL: any). */
static bool fits_type(const json_t *v, json_t *tk) {
    if (!tk)
        return true;
    if (json_is_string(tk))
        return has_type(v, json_string_value(tk));
    size_t i;
    json_t *t;
    json_array_foreach(tk, i, t) {
        if (json_is_string(t) && has_type(v, json_string_value(t)))
            return true;
    }
    return false;
}

/* enum / const: the allowed values (of the schema's type, when it has one) as literals. */
static int visit_enum(struct conv *c, json_t *s, json_t *type, struct sb *body) {
    json_t *cv = json_object_get(s, "const"), *ev = json_object_get(s, "enum");
    if (ev && !json_is_array(ev))
        return fail(c, MX_EFORMAT, "'enum' at %s is not an array", here(c));
    size_t n = 0, i;
    json_t *v;
    sb_puts(body, "(");
    if (cv) {
        if (ev) { /* both: the const, when the enum has it */
            bool found = false;
            json_array_foreach(ev, i, v) found |= json_equal(v, cv);
            if (!found)
                return fail(c, MX_EUNSUP, "'const' at %s is not in the 'enum' beside it",
                            here(c));
        }
        if (fits_type(cv, type)) {
            put_json_literal(c, body, cv);
            n++;
        }
    } else {
        json_array_foreach(ev, i, v) {
            if (!fits_type(v, type))
                continue;
            if (n++)
                sb_puts(body, " | ");
            if (put_json_literal(c, body, v))
                return c->rc;
        }
    }
    if (n == 0)
        return fail(c, MX_EUNSUP, "'%s' at %s: no value of the schema's 'type'",
                    cv ? "const" : "enum", here(c));
    sb_puts(body, ") ");
    sb_puts(body, use_builtin(c, "space") ? "space" : "");
    return c->rc;
}

/* ---- objects --------------------------------------------------------------------------- */

/* A trie node of the declared property names, for the keys of additional properties. */
struct trie {
    uint32_t cp;           /* the code point leading here */
    bool end;              /* a name ends here */
    struct trie *kid;      /* first child (owned) */
    struct trie *next;     /* next sibling (owned by the parent's list) */
};

/* Frees t, its siblings after it and everything below them (NULL ok). */
static void trie_free(struct trie *t) {
    while (t) {
        struct trie *n = t->next;
        trie_free(t->kid);
        free(t);
        t = n;
    }
}

/* Inserts name (code points) below root. Returns 0 or MX_ENOMEM. */
static int trie_add(struct trie *root, const char *name) {
    size_t n = strlen(name), i = 0;
    struct trie *t = root;
    while (i < n) {
        unsigned int cp;
        i += mx_utf8_decode(name + i, n - i, &cp);
        struct trie **pp = &t->kid;
        while (*pp && (*pp)->cp < cp)
            pp = &(*pp)->next;
        if (!*pp || (*pp)->cp != cp) {
            struct trie *k = calloc(1, sizeof *k);
            if (!k)
                return MX_ENOMEM;
            k->cp = cp;
            k->next = *pp;
            *pp = k;
        }
        t = *pp;
    }
    t->end = true;
    return 0;
}

/* Appends alternatives for the key characters after node t that do not spell a name: a child's
 * character and what may follow it, or any other character and anything. */
static void put_not_names(struct sb *b, const struct trie *t) {
    bool first = true;
    for (const struct trie *k = t->kid; k; k = k->next) {
        sb_printf(b, "%s[", first ? "" : " | ");
        put_class_cp(b, k->cp);
        sb_puts(b, "]");
        first = false;
        if (k->kid) {
            sb_puts(b, " (");
            put_not_names(b, k);
            sb_puts(b, k->end ? ")" : ")?");
        } else if (k->end) {
            sb_puts(b, " key-char+");
        }
    }
    if (t->kid) {
        sb_puts(b, " | [^\\x22\\x5C\\x7F\\x00-\\x1F");
        for (const struct trie *k = t->kid; k; k = k->next)
            put_class_cp(b, k->cp);
        sb_puts(b, "] key-char*");
    }
}

/* True when a key written with key-char (no escapes) could spell name. */
static bool plain_key(const char *name) {
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        if (*p == '"' || *p == '\\' || *p < 0x20 || *p == 0x7F)
            return false;
    return true;
}

/* The rule for an additional property's key: a string that is none of the declared names. */
static const char *key_rule(struct conv *c, json_t *props, const char *name) {
    if (!props || json_object_size(props) == 0)
        return use_builtin(c, "string");
    struct trie root = {0};
    const char *k;
    json_t *v;
    json_object_foreach(props, k, v) {
        if (plain_key(k) && trie_add(&root, k) < 0) {
            trie_free(root.kid);
            return oom(c), NULL;
        }
    }
    struct sb b = {0};
    sb_puts(&b, "\"\\\"\" (");
    put_not_names(&b, &root);
    sb_puts(&b, root.end ? ")" : ")?");
    sb_puts(&b, " \"\\\"\" space");
    trie_free(root.kid);
    const char *r = NULL;
    if (b.oom)
        oom(c);
    else if (use_builtin(c, "key-char") && use_builtin(c, "space"))
        r = add_rule(c, name, sb_str(&b));
    sb_free(&b);
    return r;
}

/* One property's "key": value rule. */
static const char *kv_rule(struct conv *c, const char *key, json_t *schema, const char *name) {
    char sub[MAX_NAME * 2 + 8];
    snprintf(sub, sizeof sub, "%s%s%s", name, *name ? "-" : "", key);
    const char *val = visit(c, schema, sub);
    if (!val)
        return NULL;
    json_t *ks = json_string(key);
    char *kt = ks ? json_dumps(ks, JSON_ENCODE_ANY) : NULL;
    json_decref(ks);
    if (!kt)
        return oom(c), NULL;
    struct sb b = {0};
    put_literal(&b, kt, strlen(kt));
    sb_printf(&b, " space \":\" space %s", val);
    free(kt);
    snprintf(sub, sizeof sub, "%s%s%s-kv", name, *name ? "-" : "", key);
    const char *r = b.oom ? (oom(c), NULL) : add_rule(c, sub, sb_str(&b));
    sb_free(&b);
    return r;
}

/* The optional properties opt[i..n) after at least one earlier one may have been written
 * (first_optional) or as the first (llama.cpp's chain of "-rest" rules: each optional
 * property may be left out, the order is fixed). "*" stands for additional properties. */
static int put_optional_chain(struct conv *c, struct sb *b, const char *const *opt,
                              const char *const *kv, size_t i, size_t n, bool first_optional,
                              const char *name) {
    bool star = !strcmp(opt[i], "*");
    if (first_optional)
        sb_printf(b, "(\",\" space %s)%s", kv[i], star ? "*" : "?");
    else if (star)
        sb_printf(b, "%s (\",\" space %s)*", kv[i], kv[i]);
    else
        sb_puts(b, kv[i]);
    if (i + 1 < n) {
        struct sb rest = {0};
        put_optional_chain(c, &rest, opt, kv, i + 1, n, true, name);
        char rn[MAX_NAME * 2 + 16];
        snprintf(rn, sizeof rn, "%s%s%s-rest", name, *name ? "-" : "", star ? "additional" :
                 opt[i]);
        const char *r = rest.oom ? (oom(c), NULL) : add_rule(c, rn, sb_str(&rest));
        sb_free(&rest);
        if (!r)
            return c->rc;
        sb_printf(b, " %s", r);
    }
    return c->rc;
}

/* An object with properties / required / additionalProperties. */
static int visit_object(struct conv *c, json_t *s, const char *name, struct sb *body) {
    json_t *props = json_object_get(s, "properties"), *req = json_object_get(s, "required");
    json_t *add = json_object_get(s, "additionalProperties");
    if (props && !json_is_object(props))
        return fail(c, MX_EFORMAT, "'properties' at %s is not an object", here(c));
    if (req && !json_is_array(req))
        return fail(c, MX_EFORMAT, "'required' at %s is not an array", here(c));
    if (add && !json_is_boolean(add) && !json_is_object(add))
        return fail(c, MX_EFORMAT, "'additionalProperties' at %s is not a schema", here(c));
    size_t n_props = props ? json_object_size(props) : 0, n_req = req ? json_array_size(req) : 0;
    size_t cap = n_props + n_req + 1;
    const char **rq = calloc(cap, sizeof *rq), **rq_kv = calloc(cap, sizeof *rq_kv);
    const char **op = calloc(cap, sizeof *op), **op_kv = calloc(cap, sizeof *op_kv);
    size_t nr = 0, no = 0;
    int rc = 0;
    if (!rq || !rq_kv || !op || !op_kv) {
        rc = oom(c);
        goto done;
    }
    const char *k;
    json_t *v;
    size_t i;
    json_array_foreach(req, i, v) {
        if (!json_is_string(v)) {
            rc = fail(c, MX_EFORMAT, "'required' at %s holds a non-string", here(c));
            goto done;
        }
    }
    json_object_foreach(props, k, v) { /* declared properties, in the schema's order */
        bool is_req = false;
        json_t *rv;
        json_array_foreach(req, i, rv) is_req |= !strcmp(json_string_value(rv), k);
        size_t old = path_push(c, "properties");
        path_push(c, k);
        const char *kv = kv_rule(c, k, json_object_get(props, k), name);
        path_pop(c, old);
        if (!kv) {
            rc = c->rc;
            goto done;
        }
        if (is_req)
            rq[nr] = k, rq_kv[nr++] = kv;
        else
            op[no] = k, op_kv[no++] = kv;
    }
    json_array_foreach(req, i, v) { /* required names not declared: additionalProperties */
        const char *rk = json_string_value(v);
        bool dup = props && json_object_get(props, rk);
        for (size_t j = 0; j < nr && !dup; j++)
            dup = !strcmp(rq[j], rk);
        if (dup)
            continue;
        if (json_is_false(add)) {
            rc = fail(c, MX_EUNSUP, "'required' at %s names '%.60s', which "
                      "'additionalProperties': false forbids", here(c), rk);
            goto done;
        }
        json_t *any = json_is_object(add) ? json_incref(add) : json_object();
        const char *kv = any ? kv_rule(c, rk, any, name) : (oom(c), NULL);
        json_decref(any);
        if (!kv) {
            rc = c->rc;
            goto done;
        }
        rq[nr] = rk, rq_kv[nr++] = kv;
    }
    if (json_is_true(add) || json_is_object(add)) {
        char sub[MAX_NAME + 32];
        snprintf(sub, sizeof sub, "%s%sadditional", name, *name ? "-" : "");
        const char *val;
        if (json_is_object(add)) {
            size_t old = path_push(c, "additionalProperties");
            char vn[MAX_NAME + 40];
            snprintf(vn, sizeof vn, "%s-value", sub);
            val = visit(c, add, vn);
            path_pop(c, old);
        } else {
            val = use_builtin(c, "value");
        }
        char kn[MAX_NAME + 40];
        snprintf(kn, sizeof kn, "%s-k", sub);
        const char *key = val ? key_rule(c, props, kn) : NULL;
        if (!key) {
            rc = c->rc;
            goto done;
        }
        struct sb b = {0};
        sb_printf(&b, "%s \":\" space %s", key, val);
        snprintf(kn, sizeof kn, "%s-kv", sub);
        op[no] = "*";
        op_kv[no] = b.oom ? (oom(c), NULL) : add_rule(c, kn, sb_str(&b));
        sb_free(&b);
        if (!op_kv[no++]) {
            rc = c->rc;
            goto done;
        }
    }
    if (!use_builtin(c, "space")) {
        rc = c->rc;
        goto done;
    }
    sb_puts(body, "\"{\" space");
    for (i = 0; i < nr; i++)
        sb_printf(body, "%s %s", i ? " \",\" space" : "", rq_kv[i]);
    if (no) {
        sb_puts(body, " (");
        if (nr)
            sb_puts(body, " \",\" space (");
        for (i = 0; i < no && rc == 0; i++) {
            sb_puts(body, i ? " | " : " ");
            rc = put_optional_chain(c, body, op, op_kv, i, no, false, name);
        }
        if (nr)
            sb_puts(body, " )");
        sb_puts(body, " )?");
    }
    sb_puts(body, " \"}\" space");
done:
    free(rq);
    free(rq_kv);
    free(op);
    free(op_kv);
    return rc;
}

/* ---- arrays ------------------------------------------------------------------------------ */

/* An array: a tuple (prefixItems, or draft 7's items list) then the rest (items, or
 * additionalItems), counted by minItems / maxItems. */
static int visit_array(struct conv *c, json_t *s, const char *name, struct sb *body) {
    json_t *items = json_object_get(s, "items"), *prefix = json_object_get(s, "prefixItems");
    json_t *rest = NULL; /* the schema of the items after the tuple; NULL: none after it */
    long min, max;
    if (get_count(c, s, "minItems", 0, &min) || get_count(c, s, "maxItems", -1, &max))
        return c->rc;
    if (max >= 0 && min > max)
        return fail(c, MX_EUNSUP, "'minItems' %ld > 'maxItems' %ld at %s", min, max, here(c));
    const char *tuple_key = "prefixItems";
    if (!prefix && json_is_array(items)) { /* draft 7: items as a tuple, additionalItems after */
        prefix = items;
        tuple_key = "items";
        rest = json_object_get(s, "additionalItems");
    } else {
        rest = items;
    }
    if (prefix && !json_is_array(prefix))
        return fail(c, MX_EFORMAT, "'prefixItems' at %s is not an array", here(c));
    if (rest && !json_is_object(rest) && !json_is_boolean(rest))
        return fail(c, MX_EFORMAT, "'items' at %s is not a schema", here(c));
    if (json_is_false(rest))
        rest = NULL;
    size_t n_pre = prefix ? json_array_size(prefix) : 0;
    if (!prefix && !rest && !json_object_get(s, "items")) /* no items keyword: any values */
        rest = json_true();
    if (max >= 0 && (long)n_pre > max)
        n_pre = (size_t)max; /* a tuple longer than maxItems: its first maxItems */
    if (!use_builtin(c, "space"))
        return c->rc;
    sb_puts(body, "\"[\" space");
    for (size_t i = 0; i < n_pre; i++) {
        size_t old = path_push_index(c, tuple_key, i);
        char sub[MAX_NAME + 32];
        snprintf(sub, sizeof sub, "%s%stuple-%zu", name, *name ? "-" : "", i);
        const char *r = visit(c, json_array_get(prefix, i), sub);
        path_pop(c, old);
        if (!r)
            return c->rc;
        sb_printf(body, "%s %s", i ? " \",\" space" : "", r);
    }
    long more_min = min > (long)n_pre ? min - (long)n_pre : 0;
    long more_max = max < 0 ? -1 : max - (long)n_pre;
    if (!rest && more_min > 0)
        return fail(c, MX_EUNSUP, "'minItems' %ld at %s is more than the %zu items allowed",
                    min, here(c), n_pre);
    if (rest && more_max != 0) {
        const char *r;
        if (json_is_true(rest)) {
            r = use_builtin(c, "value");
        } else {
            size_t old = path_push(c, prefix && tuple_key[0] == 'i' ? "additionalItems"
                                                                     : "items");
            char sub[MAX_NAME + 32];
            snprintf(sub, sizeof sub, "%s%sitem", name, *name ? "-" : "");
            r = visit(c, rest, sub);
            path_pop(c, old);
        }
        if (!r)
            return c->rc;
        sb_puts(body, " ");
        if (n_pre) { /* ("," item){more_min, more_max} */
            char item[MAX_NAME + 32];
            snprintf(item, sizeof item, "\",\" space %s", r);
            put_repetition(body, item, more_min, more_max, NULL);
        } else {
            put_repetition(body, r, more_min, more_max, "\",\" space");
        }
    }
    sb_puts(body, " \"]\" space");
    return c->rc;
}

/* A string matching pattern (JSON Schema: a search; anchored with ^ ... $ it is the whole
 * string): json_schema_regex.c writes the expression. */
static int visit_pattern(struct conv *c, json_t *s, struct sb *body) {
    json_t *pv = json_object_get(s, "pattern");
    if (!json_is_string(pv))
        return fail(c, MX_EFORMAT, "'pattern' at %s is not a string", here(c));
    if (!use_builtin(c, "char") || !use_builtin(c, "space"))
        return c->rc;
    sb_puts(body, "\"\\\"\" ");
    struct mx_err e = {0};
    int rc = body->oom ? MX_ENOMEM
                       : mx_json_pattern_gbnf(json_string_value(pv), json_string_length(pv),
                                              &body->m, &e);
    if (rc == MX_ENOMEM)
        return oom(c);
    if (rc < 0)
        return fail(c, rc, "'pattern' at %s: %s", here(c), e.msg);
    sb_puts(body, " \"\\\"\" space");
    return 0;
}

/* ---- strings, numbers ------------------------------------------------------------------------ */

/* A string: a pattern, a format, lengths, or any. */
static int visit_string(struct conv *c, json_t *s, struct sb *body) {
    json_t *fmt = json_object_get(s, "format"), *pat = json_object_get(s, "pattern");
    long min, max;
    if (get_count(c, s, "minLength", 0, &min) || get_count(c, s, "maxLength", -1, &max))
        return c->rc;
    bool lengths = json_object_get(s, "minLength") || json_object_get(s, "maxLength");
    if (fmt && pat)
        return fail(c, MX_EUNSUP, "'pattern' beside 'format' at %s is not supported", here(c));
    if ((fmt || pat) && lengths)
        return fail(c, MX_EUNSUP, "'%s' beside '%s' at %s is not supported",
                    json_object_get(s, "minLength") ? "minLength" : "maxLength",
                    fmt ? "format" : "pattern", here(c));
    if (pat)
        return visit_pattern(c, s, body);
    if (fmt) {
        const char *f = json_string_value(fmt);
        const char *r = NULL;
        if (!f)
            return fail(c, MX_EFORMAT, "'format' at %s is not a string", here(c));
        if (!strcmp(f, "uuid"))
            r = use_builtin(c, "uuid");
        else if (!strcmp(f, "date"))
            r = use_builtin(c, "date-string");
        else if (!strcmp(f, "time"))
            r = use_builtin(c, "time-string");
        else if (!strcmp(f, "date-time"))
            r = use_builtin(c, "date-time-string");
        else
            return fail(c, MX_EUNSUP, "'format': '%.40s' at %s is not supported (date, time, "
                        "date-time, uuid are)", f, here(c));
        if (r)
            sb_puts(body, r);
        return c->rc;
    }
    if (max >= 0 && min > max)
        return fail(c, MX_EUNSUP, "'minLength' %ld > 'maxLength' %ld at %s", min, max, here(c));
    if (!lengths) {
        const char *r = use_builtin(c, "string");
        if (r)
            sb_puts(body, r);
        return c->rc;
    }
    if (!use_builtin(c, "char") || !use_builtin(c, "space"))
        return c->rc;
    sb_puts(body, "\"\\\"\" ");
    put_repetition(body, "char", min, max, NULL);
    sb_puts(body, " \"\\\"\" space");
    return 0;
}

/* A bound keyword's value: true with *v when present and a finite number. */
static int get_bound(struct conv *c, json_t *s, const char *key, bool *has, double *v) {
    json_t *j = json_object_get(s, key);
    *has = false;
    if (!j || json_is_boolean(j))
        return 0;
    if (!json_is_number(j) || !isfinite(json_number_value(j)))
        return fail(c, MX_EFORMAT, "'%s' at %s is not a number", key, here(c));
    *v = json_number_value(j);
    if (fabs(*v) > 9007199254740991.0) /* 2^53 - 1: whole numbers stay exact as doubles */
        return fail(c, MX_EUNSUP, "'%s' at %s is beyond +-(2^53 - 1)", key, here(c));
    *has = true;
    return 0;
}

/* The bounds of a number: the lower (*lo, *lo_x exclusive) and upper ones, from minimum,
 * exclusiveMinimum (a number, or draft 4's boolean beside minimum), and the same above. */
static int get_bounds(struct conv *c, json_t *s, bool *has_lo, double *lo, bool *lo_x,
                      bool *has_hi, double *hi, bool *hi_x) {
    bool hm, hx, hM, hX;
    double m = 0, x = 0, M = 0, X = 0;
    if (get_bound(c, s, "minimum", &hm, &m) || get_bound(c, s, "exclusiveMinimum", &hx, &x) ||
        get_bound(c, s, "maximum", &hM, &M) || get_bound(c, s, "exclusiveMaximum", &hX, &X))
        return c->rc;
    *has_lo = hm || hx;
    *lo_x = (hx && (!hm || x >= m)) || (hm && json_is_true(json_object_get(s,
                                                                  "exclusiveMinimum")));
    *lo = hx && (!hm || x >= m) ? x : m;
    *has_hi = hM || hX;
    *hi_x = (hX && (!hM || X <= M)) || (hM && json_is_true(json_object_get(s,
                                                                  "exclusiveMaximum")));
    *hi = hX && (!hM || X <= M) ? X : M;
    return 0;
}

/* The least integer above (exclusive) or at least v. */
static long long int_at_least(double v, bool excl) {
    double f = excl ? floor(v) + 1 : ceil(v);
    return (long long)f;
}

/* The greatest integer below (exclusive) or at most v. */
static long long int_at_most(double v, bool excl) {
    double f = excl ? ceil(v) - 1 : floor(v);
    return (long long)f;
}

/* integer / number with bounds (see json_schema.h for what is exact). */
static int visit_number(struct conv *c, json_t *s, bool integer, struct sb *body) {
    bool has_lo = false, lo_x = false, has_hi = false, hi_x = false;
    double lo = 0, hi = 0;
    if (get_bounds(c, s, &has_lo, &lo, &lo_x, &has_hi, &hi, &hi_x))
        return c->rc;
    if (!use_builtin(c, "space"))
        return c->rc;
    if (!has_lo && !has_hi) {
        const char *r = use_builtin(c, integer ? "integer" : "number");
        if (r)
            sb_puts(body, r);
        return c->rc;
    }
    /* whole numbers inside the bounds */
    long long ilo = has_lo ? int_at_least(lo, lo_x) : -INT_DIGITS_MAX;
    long long ihi = has_hi ? int_at_most(hi, hi_x) : INT_DIGITS_MAX;
    if (!has_hi && ilo > ihi)
        ihi = INT_LIMIT;
    if (!has_lo && ihi < ilo)
        ilo = -INT_LIMIT;
    int n_alt = 0;
    sb_puts(body, "(");
    if (ilo <= ihi) {
        put_int_range(body, ilo, ihi);
        n_alt++;
    }
    if (!integer) {
        if (!use_builtin(c, "decimal-part"))
            return c->rc;
        /* k.ddd for k >= 0: [k, k+1) inside when k is and k + 1 <= the upper bound */
        long long klo = ilo > 0 ? ilo : 0;
        long long khi = has_hi ? (long long)floor(hi) - 1 : INT_DIGITS_MAX;
        if (klo <= khi) {
            sb_puts(body, n_alt++ ? " | " : "");
            put_int_range(body, klo, khi);
            sb_puts(body, " \".\" decimal-part");
        }
        /* an exclusive whole lower bound k >= 0: k.ddd with a digit that is not 0 */
        if (has_lo && lo_x && lo >= 0 && lo == floor(lo) && (long long)lo <= khi) {
            if (!use_builtin(c, "decimal-nonzero"))
                return c->rc;
            sb_puts(body, n_alt++ ? " | " : "");
            sb_printf(body, "\"%lld.\" decimal-nonzero", (long long)lo);
        }
        /* -k.ddd for k >= 0: (-(k+1), -k] inside when -k is and -(k+1) >= the lower bound */
        long long nlo = has_hi ? (hi_x ? (long long)floor(-hi) + 1 : (long long)ceil(-hi)) : 0;
        if (nlo < 0)
            nlo = 0;
        long long nhi = has_lo ? (long long)floor(-lo) - 1 : INT_DIGITS_MAX;
        if (nlo <= nhi) {
            sb_puts(body, n_alt++ ? " | " : "");
            sb_puts(body, "\"-\" ");
            put_int_range(body, nlo, nhi);
            sb_puts(body, " \".\" decimal-part");
        }
        /* an exclusive whole upper bound -k <= 0: -k.ddd with a digit that is not 0 */
        if (has_hi && hi_x && hi <= 0 && hi == floor(hi) && (long long)-hi <= nhi) {
            if (!use_builtin(c, "decimal-nonzero"))
                return c->rc;
            sb_puts(body, n_alt++ ? " | " : "");
            sb_printf(body, "\"-%lld.\" decimal-nonzero", (long long)-hi);
        }
    }
    if (n_alt == 0)
        return fail(c, MX_EUNSUP, "the bounds at %s leave no %s the grammar can write", here(c),
                    integer ? "integer" : "number");
    sb_puts(body, ") space");
    return 0;
}

/* ---- dispatch ---------------------------------------------------------------------------------- */

/* The type a schema without "type" stands for, from its keywords (NULL: any value). A subset
 * of what it allows, which always validates. */
static const char *infer_type(json_t *s) {
    static const char *const obj[] = {"properties", "additionalProperties", "required"};
    static const char *const arr[] = {"items", "prefixItems", "minItems", "maxItems",
                                      "additionalItems"};
    static const char *const str[] = {"pattern", "format", "minLength", "maxLength"};
    static const char *const num[] = {"minimum", "maximum", "exclusiveMinimum",
                                      "exclusiveMaximum"};
    const char *k;
    json_t *v;
    const char *t = NULL;
    int rank = 4;
    json_object_foreach(s, k, v) {
        int r = IN(k, obj) ? 0 : IN(k, arr) ? 1 : IN(k, str) ? 2 : IN(k, num) ? 3 : 4;
        if (r < rank)
            rank = r, t = r == 0 ? "object" : r == 1 ? "array" : r == 2 ? "string" : "number";
    }
    return t;
}

/* Writes the body of the rule for schema s (named name) to body. */
static int visit_body(struct conv *c, json_t *s, const char *name, struct sb *body) {
    if (c->rc)
        return c->rc;
    if (json_is_true(s) || (json_is_object(s) && json_object_size(s) == 0)) {
        /* llama.cpp reads {} as any object (a subset of "anything"); true as any value */
        const char *r = use_builtin(c, json_is_true(s) ? "value" : "object");
        if (r)
            sb_puts(body, r);
        return c->rc;
    }
    if (json_is_false(s))
        return fail(c, MX_EUNSUP, "the schema at %s is false: nothing matches it", here(c));
    if (!json_is_object(s))
        return fail(c, MX_EFORMAT, "the schema at %s is not an object", here(c));
    if (++c->depth > MAX_DEPTH) {
        c->depth--;
        return fail(c, MX_EUNSUP, "the schema nests deeper than %d at %s", MAX_DEPTH, here(c));
    }
    int rc = check_keywords(c, s);
    json_t *type = json_object_get(s, "type");
    if (rc) {
    } else if (json_object_get(s, "$ref")) {
        rc = visit_ref(c, s, body);
    } else if (json_object_get(s, "allOf")) {
        rc = visit_all_of(c, s, name, body);
    } else if (json_object_get(s, "anyOf") || json_object_get(s, "oneOf")) {
        rc = visit_union(c, s, json_object_get(s, "anyOf") ? "anyOf" : "oneOf", name, body);
    } else if (json_object_get(s, "const") || json_object_get(s, "enum")) {
        if (type && !json_is_string(type) && !json_is_array(type))
            rc = fail(c, MX_EFORMAT, "'type' at %s is not a JSON type", here(c));
        else
            rc = visit_enum(c, s, type, body);
    } else if (json_is_array(type)) { /* one alternative per type */
        size_t i;
        json_t *t;
        if (json_array_size(type) == 0)
            rc = fail(c, MX_EUNSUP, "'type' at %s is an empty list", here(c));
        json_array_foreach(type, i, t) {
            if (rc)
                break;
            if (!json_is_string(t) || !known_type(json_string_value(t))) {
                rc = fail(c, MX_EFORMAT, "'type' at %s: an entry is not a JSON type", here(c));
                break;
            }
            json_t *one = json_copy(s);
            if (!one) {
                rc = oom(c);
                break;
            }
            json_object_set(one, "type", t);
            char sub[MAX_NAME + 24];
            snprintf(sub, sizeof sub, "%s%s%s", name, *name ? "-" : "", json_string_value(t));
            const char *r = visit(c, one, sub);
            json_decref(one);
            if (!r) {
                rc = c->rc;
                break;
            }
            sb_printf(body, "%s%s", i ? " | " : "", r);
        }
    } else {
        const char *t = json_string_value(type);
        if (type && (!t || !known_type(t))) {
            rc = fail(c, MX_EFORMAT, "'type' at %s is not a JSON type", here(c));
        } else {
            if (!t)
                t = infer_type(s);
            const char *r = NULL;
            if (!t) {
                r = use_builtin(c, "value");
            } else if (!strcmp(t, "object")) {
                json_t *add = json_object_get(s, "additionalProperties");
                if (json_object_get(s, "properties") || json_object_get(s, "required") ||
                    (add && !json_is_true(add)))
                    rc = visit_object(c, s, name, body);
                else
                    r = use_builtin(c, "object");
            } else if (!strcmp(t, "array")) {
                static const char *const arr[] = {"items", "prefixItems", "minItems",
                                                  "maxItems", "additionalItems"};
                bool plain = true;
                for (size_t i = 0; i < sizeof arr / sizeof arr[0]; i++)
                    plain &= !json_object_get(s, arr[i]);
                if (plain)
                    r = use_builtin(c, "array");
                else
                    rc = visit_array(c, s, name, body);
            } else if (!strcmp(t, "string")) {
                rc = visit_string(c, s, body);
            } else if (!strcmp(t, "integer") || !strcmp(t, "number")) {
                rc = visit_number(c, s, !strcmp(t, "integer"), body);
            } else {
                r = use_builtin(c, t); /* boolean, null */
            }
            if (r)
                sb_puts(body, r);
        }
    }
    c->depth--;
    if (rc == 0 && body->oom)
        rc = oom(c);
    return rc ? rc : c->rc;
}

/* Converts s into a rule named after name (the top: root). Returns the rule's name, or NULL
 * after an error. A body that is just another rule's name is returned as that name. */
static const char *visit(struct conv *c, json_t *s, const char *name) {
    char rn[MAX_NAME + 8];
    bool top = c->depth == 0; /* only the whole schema is root (a property may be named "") */
    snprintf(rn, sizeof rn, "%s%s", top ? "root" : *name ? name : "empty",
             !top && reserved_name(name) ? "-" : "");
    struct sb body = {0};
    if (visit_body(c, s, name, &body)) {
        sb_free(&body);
        return NULL;
    }
    const char *t = sb_str(&body);
    const char *r = NULL;
    bool ident = *name && *t && strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                          "0123456789-") == strlen(t);
    if (ident) {
        struct rule *have = find_rule(c, t);
        r = have ? have->name : NULL;
    }
    if (!r)
        r = add_rule(c, rn, t);
    sb_free(&body);
    return r;
}

int mx_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf, struct mx_err *err) {
    *gbnf = NULL;
    json_error_t je;
    json_t *doc = json_loadb(schema, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!doc)
        return mx_err_set(err, MX_EFORMAT, "json schema: not JSON (line %d column %d): %s",
                          je.line, je.column, je.text);
    struct conv c = {.doc = doc, .err = err};
    struct sb out = {0};
    const char *root = visit(&c, doc, "");
    if (root && strcmp(root, "root"))
        fail(&c, MX_EINVAL, "the top rule is named '%s'", root);
    for (size_t i = 0; !c.rc && i < c.n_r; i++) {
        if (!c.r[i].body)
            fail(&c, MX_EINVAL, "rule '%s' was never defined", c.r[i].name);
        else
            sb_printf(&out, "%s ::= ", c.r[i].name), sb_puts(&out, c.r[i].body),
                sb_puts(&out, "\n");
    }
    if (!c.rc && out.oom)
        oom(&c);
    int rc = c.rc;
    if (rc == 0) { /* the grammar must compile: left recursion through $ref shows here */
        struct mx_grammar *g = NULL;
        struct mx_err ge = {0};
        rc = mx_grammar_parse(out.m.p, out.m.n, "schema", &g, &ge);
        mx_grammar_free(g);
        if (rc == MX_ENOMEM)
            rc = mx_err_set(err, rc, "json schema: out of memory compiling the grammar");
        else if (rc < 0)
            rc = mx_err_set(err, MX_EUNSUP, "json schema: the grammar made from it does not "
                            "compile (a $ref that recurses before any character?): %s", ge.msg);
    }
    for (size_t i = 0; i < c.n_r; i++) {
        free(c.r[i].name);
        free(c.r[i].body);
    }
    free(c.r);
    for (size_t i = 0; i < c.n_refs; i++)
        free(c.refs[i].ptr);
    free(c.refs);
    json_decref(doc);
    if (rc < 0) {
        sb_free(&out);
        return rc;
    }
    *gbnf = out.m.p;
    return 0;
}
