/* tool_call.c - tool calls in answers, per template family: the parser, the streaming text
 * length and the call grammar (see tool_call.h for the syntaxes and the rules).
 *
 * JSON is scanned as spans of the answer (RFC 8259's grammar, no conversion to values), so a
 * call embedded in text (a <tool_call> block, a [TOOL_CALLS] array, an object after some words)
 * is cut out exactly and numbers of any size pass. Workload: one answer per turn, a few KB; the
 * streaming length is asked once per generated token on the answer so far, which stays
 * quadratic in the answer's length but with a tiny constant (a few marker compares per byte).
 */
#include "core/text/tool_call.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/bytes.h"
#include "core/base/util.h"
#include "core/llm/json_schema.h"

/* ---- small helpers ----------------------------------------------------------------------- */

/* JSON's whitespace (what a model writes between tokens of a call). */
static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The first offset >= p in s[0..n) that is not whitespace (n when none). */
static size_t skip_ws(const char *s, size_t n, size_t p) {
    while (p < n && is_space(s[p]))
        p++;
    return p;
}

/* True when lit appears at s[p] within s[0..n). */
static bool starts_with(const char *s, size_t n, size_t p, const char *lit) {
    size_t k = strlen(lit);
    return p <= n && n - p >= k && memcmp(s + p, lit, k) == 0;
}

/* Offset of the first lit in s[from..n), or n when absent. */
static size_t find(const char *s, size_t n, size_t from, const char *lit) {
    size_t k = strlen(lit);
    if (from >= n)
        return n;
    const char *q = memmem(s + from, n - from, lit, k);
    return q ? (size_t)(q - s) : n;
}

/* How a marker pattern meets the text at p: a space in the pattern stands for any run of JSON
 * whitespace ('{ "name"' meets '{"name"' and '{\n  "name"'). */
enum pat_match { PAT_NO, PAT_PARTIAL, PAT_FULL };

static enum pat_match pat_at(const char *s, size_t n, size_t p, const char *pat,
                             size_t *end) {
    for (; *pat; pat++) {
        if (*pat == ' ') {
            p = skip_ws(s, n, p);
            continue;
        }
        if (p >= n)
            return PAT_PARTIAL;
        if (s[p] != *pat)
            return PAT_NO;
        p++;
    }
    if (end)
        *end = p;
    return PAT_FULL;
}

/* The first offset >= from where pat matches fully, or n. */
static size_t pat_find(const char *s, size_t n, size_t from, const char *pat) {
    for (size_t p = from; p < n; p++)
        if (s[p] == pat[0] && pat_at(s, n, p, pat, NULL) == PAT_FULL)
            return p;
    return n;
}

/* Llama 3's bare call objects, as llama.cpp recognises them: {"name" or
 * {"type": "function", "name" (spaces: any JSON whitespace). */
#define LLAMA3_OBJ "{ \"name\""
#define LLAMA3_TYPED_OBJ "{ \"type\" : \"function\" , \"name\""

/* The marker patterns that open a call, per family (NULL-terminated). */
static const char *const *markers(enum mx_tmpl_kind kind) {
    static const char *const mistral[] = {"[TOOL_CALLS]", NULL};
    static const char *const hermes[] = {"<tool_call>", NULL};
    static const char *const llama3[] = {"<|python_tag|>", LLAMA3_OBJ, LLAMA3_TYPED_OBJ, NULL};
    static const char *const generic[] = {"{ \"tool_calls\"", NULL};
    switch (kind) {
    case MX_TMPL_MISTRAL_V3: case MX_TMPL_MISTRAL_V3_TEKKEN:
    case MX_TMPL_MISTRAL_V7: case MX_TMPL_MISTRAL_V7_TEKKEN: return mistral;
    case MX_TMPL_CHATML: case MX_TMPL_QWEN3: return hermes;
    case MX_TMPL_LLAMA3: return llama3;
    default: return generic;
    }
}

const char *mx_tool_trigger(enum mx_tmpl_kind kind) {
    switch (kind) {
    case MX_TMPL_MISTRAL_V3: case MX_TMPL_MISTRAL_V3_TEKKEN:
    case MX_TMPL_MISTRAL_V7: case MX_TMPL_MISTRAL_V7_TEKKEN: return "[TOOL_CALLS]";
    case MX_TMPL_CHATML: case MX_TMPL_QWEN3: return "<tool_call>";
    case MX_TMPL_LLAMA3: return "{\"name\"";
    default: return "{\"tool_calls\"";
    }
}

bool mx_tool_name_valid(const char *name) {
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* ---- streaming --------------------------------------------------------------------------- */

size_t mx_tool_calls_text_len(enum mx_tmpl_kind kind, const char *text, size_t n) {
    const char *const *pats = markers(kind);
    if (!text)
        return 0;
    for (size_t p = 0; p < n; p++)
        for (const char *const *m = pats; *m; m++)
            if (text[p] == (*m)[0] && pat_at(text, n, p, *m, NULL) != PAT_NO)
                return p; /* markers start with ASCII: p is a character boundary */
    /* no marker: all of it, less a UTF-8 character still incomplete at the end */
    size_t k = n, back = 0;
    while (k > 0 && back < 4 && ((unsigned char)text[k - 1] & 0xC0) == 0x80) {
        k--;
        back++;
    }
    if (k > 0 && ((unsigned char)text[k - 1] & 0x80)) {
        unsigned char lead = (unsigned char)text[k - 1];
        size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
        if (need > back)
            return k - 1;
    }
    return n;
}

/* ---- JSON spans ----------------------------------------------------------------------------
 * Calls are cut out of the answer as spans of JSON text, checked against RFC 8259's grammar
 * (numbers of any size: a grammar-constrained 1e99999 is valid JSON and must not fail a call,
 * which a double-based decoder would) and re-laid-out as text, never converted to values.
 */

#define JS_BAD SIZE_MAX       /* a span function's "not JSON here" */
#define JS_MORE (SIZE_MAX - 1) /* "JSON so far, but the text ends inside the value" */
#define JS_FAILED(e) ((e) >= JS_MORE)
#define JS_MAX_DEPTH 128

static size_t js_value(const char *s, size_t n, size_t p, int depth);

/* True when s[p..n) is a proper prefix of lit: the text ends inside it. */
static bool cut_in(const char *s, size_t n, size_t p, const char *lit) {
    size_t k = strlen(lit);
    return p <= n && n - p < k && memcmp(s + p, lit, n - p) == 0;
}

/* The end of the string literal at s[p] == '"', or JS_BAD / JS_MORE. */
static size_t js_string(const char *s, size_t n, size_t p) {
    if (p >= n)
        return JS_MORE;
    if (s[p] != '"')
        return JS_BAD;
    for (p++; p < n; p++) {
        unsigned char c = (unsigned char)s[p];
        if (c == '"')
            return p + 1;
        if (c < 0x20)
            return JS_BAD;
        if (c == '\\') {
            if (++p >= n)
                return JS_MORE;
            if (s[p] == 'u') {
                for (int k = 1; k <= 4; k++) {
                    if (p + (size_t)k >= n)
                        return JS_MORE;
                    char h = s[p + (size_t)k];
                    if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') ||
                          (h >= 'A' && h <= 'F')))
                        return JS_BAD;
                }
                p += 4;
            } else if (!strchr("\"\\/bfnrt", s[p]) || !s[p]) {
                return JS_BAD;
            }
        }
    }
    return JS_MORE;
}

/* The end of a run of one or more digits at s[p], or JS_BAD / JS_MORE. */
static size_t js_digits(const char *s, size_t n, size_t p) {
    size_t q = p;
    while (q < n && s[q] >= '0' && s[q] <= '9')
        q++;
    return q > p ? q : p >= n ? JS_MORE : JS_BAD;
}

/* The end of the number at s[p] (-?int frac? exp?, any number of digits), or JS_BAD /
 * JS_MORE. A number that ends the text counts as complete. */
static size_t js_number(const char *s, size_t n, size_t p) {
    if (p < n && s[p] == '-')
        p++;
    if (p < n && s[p] == '0')
        p++;
    else if (JS_FAILED(p = js_digits(s, n, p)))
        return p;
    if (p < n && s[p] == '.' && JS_FAILED(p = js_digits(s, n, p + 1)))
        return p;
    if (p < n && (s[p] == 'e' || s[p] == 'E')) {
        p++;
        if (p < n && (s[p] == '+' || s[p] == '-'))
            p++;
        p = js_digits(s, n, p);
    }
    return p;
}

/* The end of the array or object at s[p] ('[' or '{'), or JS_BAD / JS_MORE. */
static size_t js_container(const char *s, size_t n, size_t p, int depth) {
    char close = s[p] == '{' ? '}' : ']';
    bool obj = close == '}';
    if (depth >= JS_MAX_DEPTH)
        return JS_BAD;
    p = skip_ws(s, n, p + 1);
    if (p < n && s[p] == close)
        return p + 1;
    for (;;) {
        if (obj) {
            if (JS_FAILED(p = js_string(s, n, p)))
                return p;
            p = skip_ws(s, n, p);
            if (p >= n)
                return JS_MORE;
            if (s[p] != ':')
                return JS_BAD;
            p = skip_ws(s, n, p + 1);
        }
        if (JS_FAILED(p = js_value(s, n, p, depth + 1)))
            return p;
        p = skip_ws(s, n, p);
        if (p >= n)
            return JS_MORE;
        if (s[p] == ',') {
            p = skip_ws(s, n, p + 1);
            continue;
        }
        return s[p] == close ? p + 1 : JS_BAD;
    }
}

/* The end of the JSON value starting exactly at s[p], or JS_BAD / JS_MORE. */
static size_t js_value(const char *s, size_t n, size_t p, int depth) {
    static const char *const words[] = {"true", "false", "null"};
    if (p >= n)
        return JS_MORE;
    switch (s[p]) {
    case '{': case '[': return js_container(s, n, p, depth);
    case '"': return js_string(s, n, p);
    case 't': case 'f': case 'n':
        for (size_t w = 0; w < 3; w++) {
            if (starts_with(s, n, p, words[w]))
                return p + strlen(words[w]);
            if (cut_in(s, n, p, words[w]))
                return JS_MORE;
        }
        return JS_BAD;
    default: return js_number(s, n, p);
    }
}

/* A span s[b..e) of the answer. */
struct span {
    size_t b; /* first byte */
    size_t e; /* one past the last */
};

/* The members of an object span that a call uses (a repeated key: the last one, as JSON
 * parsers do). The object must be valid JSON. */
struct call_obj {
    struct span name;   /* "name"'s value; {0, 0} when absent */
    struct span args;   /* "arguments" or "parameters" */
    struct span id;     /* "id" */
    struct span type;   /* "type" (Llama 3's {"type": "function", ...}) */
    size_t n_members;   /* all members, for the strict shape check */
};

/* True when the key literal span k is "lit" (keys are compared as written, unescaped). */
static bool key_is(const char *s, struct span k, const char *lit) {
    size_t l = strlen(lit);
    return k.e - k.b == l + 2 && memcmp(s + k.b + 1, lit, l) == 0;
}

/* Fills c from the object span o (see struct call_obj). */
static void js_call_members(const char *s, struct span o, struct call_obj *c) {
    size_t p = skip_ws(s, o.e, o.b + 1);
    memset(c, 0, sizeof(*c));
    if (s[p] == '}')
        return;
    for (;;) {
        struct span k = {p, js_string(s, o.e, p)}, v;
        p = skip_ws(s, o.e, skip_ws(s, o.e, k.e) + 1);
        v.b = p;
        v.e = js_value(s, o.e, p, 1);
        c->n_members++;
        if (key_is(s, k, "name"))
            c->name = v;
        else if (key_is(s, k, "arguments") || key_is(s, k, "parameters"))
            c->args = v;
        else if (key_is(s, k, "id"))
            c->id = v;
        else if (key_is(s, k, "type"))
            c->type = v;
        p = skip_ws(s, o.e, v.e);
        if (s[p] != ',')
            return;
        p = skip_ws(s, o.e, p + 1);
    }
}

/* The text of the string literal span (escapes decoded, UTF-8; a lone surrogate becomes
 * U+FFFD), NUL-terminated, or NULL (out of memory). *len: its length (it may hold NULs). */
static char *js_unescape(const char *s, struct span v, size_t *len) {
    char *o = malloc(v.e - v.b + 1), *w = o;
    if (!o)
        return NULL;
    for (size_t p = v.b + 1; p + 1 < v.e; p++) {
        if (s[p] != '\\') {
            *w++ = s[p];
            continue;
        }
        char c = s[++p];
        if (c != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            *w++ = to[strchr(from, c) - from];
            continue;
        }
        uint32_t cp = (uint32_t)strtoul((char[5]){s[p + 1], s[p + 2], s[p + 3], s[p + 4], 0},
                                        NULL, 16);
        p += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && p + 6 < v.e && s[p + 1] == '\\' && s[p + 2] == 'u') {
            uint32_t lo = (uint32_t)strtoul(
                (char[5]){s[p + 3], s[p + 4], s[p + 5], s[p + 6], 0}, NULL, 16);
            if (lo >= 0xdc00 && lo < 0xe000) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            }
        }
        if (cp >= 0xd800 && cp < 0xe000)
            cp = 0xfffd;
        if (cp < 0x80) {
            *w++ = (char)cp;
        } else if (cp < 0x800) {
            *w++ = (char)(0xc0 | cp >> 6);
            *w++ = (char)(0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            *w++ = (char)(0xe0 | cp >> 12);
            *w++ = (char)(0x80 | (cp >> 6 & 0x3f));
            *w++ = (char)(0x80 | (cp & 0x3f));
        } else {
            *w++ = (char)(0xf0 | cp >> 18);
            *w++ = (char)(0x80 | (cp >> 12 & 0x3f));
            *w++ = (char)(0x80 | (cp >> 6 & 0x3f));
            *w++ = (char)(0x80 | (cp & 0x3f));
        }
    }
    *w = '\0';
    *len = (size_t)(w - o);
    return o;
}

/* The valid JSON value span s[v.b..v.e) on one line with ", " and ": " (json.dumps' default
 * separators; literals copied as written), NUL-terminated, or NULL (out of memory). */
static char *js_relayout(const char *s, struct span v) {
    char *o = malloc(2 * (v.e - v.b) + 1), *w = o;
    if (!o)
        return NULL;
    for (size_t p = v.b; p < v.e;) {
        if (s[p] == '"') {
            size_t q = js_string(s, v.e, p);
            memcpy(w, s + p, q - p);
            w += q - p;
            p = q;
            continue;
        }
        char c = s[p++];
        if (is_space(c))
            continue;
        *w++ = c;
        if (c == ',' || c == ':')
            *w++ = ' ';
    }
    *w = '\0';
    return o;
}

/* ---- parsing ----------------------------------------------------------------------------- */

struct pctx {
    const char *s;              /* the answer */
    size_t n;
    const char *fam;            /* family name for messages */
    struct mx_bytes content;    /* text outside the calls */
    struct mx_tool_calls *out;
    size_t cap;                 /* out->calls allocated */
    bool partial;               /* the answer so far: a call cut off by its end is no error */
    struct mx_err *err;
};

#define STOP 2 /* a parse step's "the answer so far ends inside a call": stop, no error */

/* A made-up call id: 9 alphanumerics, different on every call in the process. */
static void make_id(char id[10]) {
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static _Atomic uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^
                 (++counter * 0x9e3779b97f4a7c15ull);
    for (int i = 0; i < 9; i++) { /* splitmix64 steps */
        z += 0x9e3779b97f4a7c15ull;
        uint64_t x = z;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
        x ^= x >> 31;
        id[i] = abc[x % (sizeof(abc) - 1)];
    }
    id[9] = '\0';
}

/* The array or object after whitespace at p: its span, or b == JS_BAD with e == JS_MORE (the
 * text ends inside it, or before it starts) or JS_BAD. */
static struct span js_at(const struct pctx *P, size_t p) {
    struct span v;
    v.b = skip_ws(P->s, P->n, p);
    if (v.b >= P->n)
        v.e = JS_MORE;
    else if (P->s[v.b] == '{' || P->s[v.b] == '[')
        v.e = js_value(P->s, P->n, v.b, 0);
    else
        v.e = JS_BAD;
    if (JS_FAILED(v.e))
        v.b = JS_BAD;
    return v;
}

/* True when v is a parsed object span. */
static bool is_obj(const struct pctx *P, struct span v) {
    return v.b != JS_BAD && v.e > v.b && P->s[v.b] == '{';
}

/* Records a malformed call: MX_EFORMAT "tool call (FAMILY): what (at byte N)". */
static int fail(struct pctx *P, size_t at, const char *what) {
    return mx_err_set(P->err, MX_EFORMAT, "tool call (%s): %s (at byte %zu)", P->fam, what, at);
}

/* fail(), unless the text ended inside the call (cut) and this is the answer so far: then
 * out->partial is set and STOP returned. */
static int fail_or_cut(struct pctx *P, bool cut, size_t at, const char *what) {
    if (cut && P->partial) {
        P->out->partial = true;
        return STOP;
    }
    return fail(P, at, what);
}

/* Appends s[from..to) to the content. Returns 0 or MX_ENOMEM. */
static int add_content(struct pctx *P, size_t from, size_t to) {
    if (to > from && mx_bytes_add(&P->content, P->s + from, to - from) < 0)
        return mx_err_set(P->err, MX_ENOMEM, "tool call: out of memory");
    return 0;
}

/* An id from the answer that every renderer can write back: 9 alphanumerics (mistral-v3 and
 * v3-tekken take exactly 9, the others at least 9; 64 at most). */
static bool id_usable(const struct pctx *P, const char *id) {
    size_t n = strlen(id);
    bool exact = strcmp(P->fam, "mistral-v3") == 0 || strcmp(P->fam, "mistral-v3-tekken") == 0;
    if (exact ? n != 9 : (n < 9 || n > 64))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= '0' && id[i] <= '9')))
            return false;
    return true;
}

/* Appends a call with owned name, id (made up when NULL or not usable) and arguments text;
 * frees them on error. at: the call's offset, for messages. */
static int add_call(struct pctx *P, char *name, char *args, char *id, size_t at) {
    struct mx_tool_calls *o = P->out;
    char gen[10];
    if (name && !mx_tool_name_valid(name)) {
        free(name);
        free(args);
        free(id);
        return fail(P, at, "a tool name must be 1-64 of [A-Za-z0-9_.-]");
    }
    if (id && !id_usable(P, id)) {
        free(id);
        id = NULL;
    }
    if (!id) {
        make_id(gen);
        id = strdup(gen);
    }
    if (o->n_calls == P->cap) {
        size_t cap = P->cap ? P->cap * 2 : 4;
        struct mx_tool_call *c = realloc(o->calls, cap * sizeof(*c));
        if (c) {
            o->calls = c;
            P->cap = cap;
        }
    }
    if (!name || !args || !id || o->n_calls == P->cap) {
        free(name);
        free(args);
        free(id);
        return mx_err_set(P->err, MX_ENOMEM, "tool call: out of memory");
    }
    o->calls[o->n_calls++] = (struct mx_tool_call){id, name, args};
    return 0;
}

/* A call object {"name": "f", "arguments"|"parameters": {...} or "{...}", "id": "..."} at span
 * o (a valid object). strict (Llama 3's bare objects, where anything else is plain JSON): only
 * name, arguments/parameters and "type"; returns 1 when it is not call-shaped. Returns 0, 1, or
 * an error. */
static int call_from_obj(struct pctx *P, struct span o, bool strict) {
    struct call_obj c;
    const char *s = P->s;
    char *args = NULL;
    size_t len;
    js_call_members(s, o, &c);
    bool name_ok = c.name.e > c.name.b && s[c.name.b] == '"' && c.name.e - c.name.b > 2;
    bool args_obj = c.args.e > c.args.b && s[c.args.b] == '{';
    if (strict && (!name_ok || !args_obj ||
                   c.n_members != 2 + (c.type.e > c.type.b ? 1u : 0u)))
        return 1;
    if (!name_ok)
        return fail(P, o.b, "a call needs a non-empty string \"name\"");
    if (c.id.e > c.id.b && s[c.id.b] != '"')
        return fail(P, c.id.b, "the call id is not a string");
    if (c.args.e == c.args.b) { /* no arguments: none */
        args = strdup("{}");
    } else if (args_obj) {
        args = js_relayout(s, c.args);
    } else if (s[c.args.b] == '"') { /* OpenAI style: the arguments object as a JSON string */
        char *inner = js_unescape(s, c.args, &len);
        if (!inner)
            return mx_err_set(P->err, MX_ENOMEM, "tool call: out of memory");
        size_t b = skip_ws(inner, len, 0), e = b < len && inner[b] == '{'
                                                   ? js_value(inner, len, b, 0) : JS_BAD;
        if (e == JS_BAD || skip_ws(inner, len, e) != len) {
            free(inner);
            return fail(P, c.args.b, "the arguments are not a JSON object");
        }
        args = js_relayout(inner, (struct span){b, e});
        free(inner);
    } else {
        return fail(P, c.args.b, "the arguments are not a JSON object");
    }
    char *name = js_unescape(s, c.name, &len);
    if (name && strlen(name) != len)
        name[0] = '\0'; /* a NUL inside: not a tool name */
    char *id = c.id.e > c.id.b + 2 ? js_unescape(s, c.id, &len) : NULL;
    if (id && strlen(id) != len)
        id[0] = '\0'; /* not usable: one is made up */
    if ((c.id.e > c.id.b + 2 && !id) || !name) {
        free(name);
        free(args);
        return mx_err_set(P->err, MX_ENOMEM, "tool call: out of memory");
    }
    return add_call(P, name, args, id, o.b);
}

/* Mistral: [TOOL_CALLS] then a JSON array of calls, or tekken's name[ARGS]{...} (with an
 * optional [CALL_ID]id before [ARGS]); the marker may repeat. */
static int parse_mistral(struct pctx *P) {
    static const char mark[] = "[TOOL_CALLS]";
    size_t m = find(P->s, P->n, 0, mark), p;
    int rc;
    if ((rc = add_content(P, 0, m)) < 0 || m == P->n)
        return rc;
    p = m + strlen(mark);
    for (;;) {
        struct span v;
        p = skip_ws(P->s, P->n, p);
        if (p >= P->n)
            return fail_or_cut(P, true, p, "expected a JSON array of calls after [TOOL_CALLS]");
        if (P->s[p] == '[') {
            v = js_at(P, p);
            if (v.b == JS_BAD || skip_ws(P->s, v.e, v.b + 1) == v.e - 1)
                return fail_or_cut(P, v.e == JS_MORE, p,
                                   "expected a JSON array of calls after [TOOL_CALLS]");
            for (size_t q = skip_ws(P->s, v.e, v.b + 1); q < v.e - 1;) {
                struct span el = {q, js_value(P->s, v.e, q, 1)};
                if (!is_obj(P, el))
                    return fail(P, q, "a call needs a non-empty string \"name\"");
                if ((rc = call_from_obj(P, el, false)) < 0)
                    return rc;
                q = skip_ws(P->s, v.e, el.e);
                q = P->s[q] == ',' ? skip_ws(P->s, v.e, q + 1) : q;
            }
        } else {
            size_t q = p, idp = 0, idn = 0;
            while (q < P->n && P->s[q] != '[' && q - p <= 64)
                q++;
            size_t name_end = q;
            if (starts_with(P->s, P->n, q, "[CALL_ID]")) {
                idp = q + 9;
                for (q = idp; q < P->n && P->s[q] != '[' && q - idp <= 64;)
                    q++;
                idn = q - idp;
            }
            if (!starts_with(P->s, P->n, q, "[ARGS]"))
                return fail_or_cut(P, q == P->n || cut_in(P->s, P->n, q, "[ARGS]") ||
                                          cut_in(P->s, P->n, q, "[CALL_ID]"),
                                   p, "expected a JSON array or NAME[ARGS] after [TOOL_CALLS]");
            v = js_at(P, q + 6);
            if (!is_obj(P, v))
                return fail_or_cut(P, v.e == JS_MORE, q + 6,
                                   "expected a JSON object after [ARGS]");
            if (name_end == p)
                return fail(P, p, "a call without a name");
            char *name = memchr(P->s + p, '\0', name_end - p) ? strdup("")
                                                               : strndup(P->s + p, name_end - p);
            char *id = idn && !memchr(P->s + idp, '\0', idn) ? strndup(P->s + idp, idn) : NULL;
            rc = add_call(P, name, js_relayout(P->s, v), id, p);
            if (rc != 0)
                return rc;
        }
        p = skip_ws(P->s, P->n, v.e);
        if (!starts_with(P->s, P->n, p, mark))
            break;
        p += strlen(mark);
    }
    return add_content(P, p, P->n);
}

/* Hermes: <tool_call> {...} </tool_call> blocks anywhere in the text. */
static int parse_hermes(struct pctx *P) {
    size_t p = 0;
    int rc = 0;
    for (;;) {
        size_t m = find(P->s, P->n, p, "<tool_call>");
        if ((rc = add_content(P, p, m)) < 0 || m == P->n)
            return rc;
        struct span v = js_at(P, m + 11);
        if (!is_obj(P, v))
            return fail_or_cut(P, v.e == JS_MORE, m + 11,
                               "expected a JSON object after <tool_call>");
        if ((rc = call_from_obj(P, v, false)) < 0)
            return rc;
        p = skip_ws(P->s, P->n, v.e);
        if (starts_with(P->s, P->n, p, "</tool_call>"))
            p += 12;
        else if (p < P->n && cut_in(P->s, P->n, p, "</tool_call>") && P->partial)
            return fail_or_cut(P, true, p, ""); /* complete, its closing tag on its way */
        else if (p < P->n && cut_in(P->s, P->n, p, "</tool_call>"))
            p = P->n; /* a finished answer cut inside the closing tag: the call is complete */
        else if (p < P->n)
            return fail(P, p, "expected </tool_call>");
    }
}

/* A run of call objects from p to the end of the text, separated by space or ';'. strict: see
 * call_from_obj; returns 1 when strict and the run is not all calls (nothing was added). */
static int parse_objects(struct pctx *P, size_t p, bool strict) {
    size_t n0 = P->out->n_calls;
    for (;;) {
        while (p < P->n && (is_space(P->s[p]) || P->s[p] == ';'))
            p++;
        if (p == P->n)
            return 0;
        struct span v = js_at(P, p);
        int rc = is_obj(P, v)              ? call_from_obj(P, v, strict)
                 : v.e == JS_MORE && P->partial ? fail_or_cut(P, true, p, "")
                 : strict                   ? 1
                                            : fail(P, p, "expected a JSON call object");
        if (rc != 0) {
            if (rc == 1) { /* drop what this run added: it is text after all */
                for (size_t i = n0; i < P->out->n_calls; i++) {
                    free((char *)P->out->calls[i].id);
                    free((char *)P->out->calls[i].name);
                    free((char *)P->out->calls[i].arguments);
                }
                P->out->n_calls = n0;
            }
            return rc;
        }
        p = v.e;
    }
}

/* Llama 3.1: <|python_tag|> then call objects, or a bare {"name": ..} object run. */
static int parse_llama3(struct pctx *P) {
    size_t m = find(P->s, P->n, 0, "<|python_tag|>");
    int rc;
    if (m < P->n) {
        if ((rc = add_content(P, 0, m)) < 0)
            return rc;
        return parse_objects(P, m + 14, false);
    }
    m = MX_MIN(pat_find(P->s, P->n, 0, LLAMA3_OBJ), pat_find(P->s, P->n, 0, LLAMA3_TYPED_OBJ));
    if (m < P->n && (rc = parse_objects(P, m, true)) != 1) { /* calls (or one on its way) */
        int r2 = rc < 0 ? rc : add_content(P, 0, m);
        return r2 < 0 ? r2 : rc;
    }
    return add_content(P, 0, P->n);
}

/* The generic convention: {"tool_calls": [...]} anywhere in the text. */
static int parse_generic(struct pctx *P) {
    size_t m = pat_find(P->s, P->n, 0, "{ \"tool_calls\"");
    int rc;
    if ((rc = add_content(P, 0, m)) < 0 || m == P->n)
        return rc;
    struct span v = js_at(P, m), arr = {0, 0};
    if (v.e == JS_MORE)
        return fail_or_cut(P, true, m, "expected {\"tool_calls\": [calls]}");
    if (is_obj(P, v)) { /* the value of "tool_calls": the first member, by the marker */
        size_t q = skip_ws(P->s, v.e, v.b + 1);
        q = skip_ws(P->s, v.e, js_string(P->s, v.e, q));
        arr.b = skip_ws(P->s, v.e, q + 1);
        arr.e = js_value(P->s, v.e, arr.b, 1);
    }
    if (arr.e <= arr.b || P->s[arr.b] != '[' || skip_ws(P->s, arr.e, arr.b + 1) == arr.e - 1)
        return fail(P, m, "expected {\"tool_calls\": [calls]}");
    for (size_t q = skip_ws(P->s, arr.e, arr.b + 1); q < arr.e - 1;) {
        struct span el = {q, js_value(P->s, arr.e, q, 2)};
        if (!is_obj(P, el))
            return fail(P, q, "a call needs a non-empty string \"name\"");
        if ((rc = call_from_obj(P, el, false)) < 0)
            return rc;
        q = skip_ws(P->s, arr.e, el.e);
        q = P->s[q] == ',' ? skip_ws(P->s, arr.e, q + 1) : q;
    }
    return add_content(P, v.e, P->n);
}

void mx_tool_calls_free(struct mx_tool_calls *c) {
    if (!c)
        return;
    for (size_t i = 0; i < c->n_calls; i++) {
        free((char *)c->calls[i].id);
        free((char *)c->calls[i].name);
        free((char *)c->calls[i].arguments);
    }
    free(c->calls);
    free(c->content);
    memset(c, 0, sizeof(*c));
}

/* Moves text[0..n) trimmed into out->content. */
static int set_content(struct mx_tool_calls *out, const char *s, size_t n, struct mx_err *err) {
    while (n > 0 && is_space(*s)) {
        s++;
        n--;
    }
    while (n > 0 && is_space(s[n - 1]))
        n--;
    free(out->content);
    out->content = strndup(s ? s : "", n);
    return out->content ? 0 : mx_err_set(err, MX_ENOMEM, "tool call: out of memory");
}

/* The parse behind both entry points; partial: the answer so far (see tool_call.h). */
static int parse_answer(enum mx_tmpl_kind kind, const char *text, size_t n, bool partial,
                        struct mx_tool_calls *out, struct mx_err *err) {
    if (!out)
        return mx_err_set(err, MX_EINVAL, "tool call: no output");
    memset(out, 0, sizeof(*out));
    if ((unsigned)kind >= MX_TMPL_COUNT || (!text && n > 0))
        return mx_err_set(err, MX_EINVAL, "tool call: bad arguments (kind %d)", (int)kind);
    text = text ? text : "";
    size_t len = n;
    if (partial) { /* a marker's start at the very end is not text yet */
        const char *const *pats = markers(kind);
        for (size_t p = 0; p < n && len == n; p++)
            for (const char *const *m = pats; *m; m++)
                if (text[p] == (*m)[0] && pat_at(text, n, p, *m, NULL) == PAT_PARTIAL) {
                    len = p;
                    out->partial = true;
                    break;
                }
    }
    struct pctx P = {text, len, mx_tmpl_name(kind), {0}, out, 0, partial, err};
    int rc;
    switch (kind) {
    case MX_TMPL_MISTRAL_V3: case MX_TMPL_MISTRAL_V3_TEKKEN:
    case MX_TMPL_MISTRAL_V7: case MX_TMPL_MISTRAL_V7_TEKKEN: rc = parse_mistral(&P); break;
    case MX_TMPL_CHATML: case MX_TMPL_QWEN3: rc = parse_hermes(&P); break;
    case MX_TMPL_LLAMA3: rc = parse_llama3(&P); break;
    default: rc = parse_generic(&P); break;
    }
    if (rc < 0) { /* the whole answer is the content; no calls */
        struct mx_tool_calls keep = *out;
        keep.content = NULL;
        mx_tool_calls_free(&keep);
        out->calls = NULL;
        out->n_calls = 0;
        out->partial = false;
        if (set_content(out, text, n, NULL) < 0)
            rc = mx_err_set(err, MX_ENOMEM, "tool call: out of memory");
    } else {
        rc = set_content(out, P.content.p, P.content.n, err);
    }
    mx_bytes_free(&P.content);
    return rc;
}

int mx_tool_calls_parse(enum mx_tmpl_kind kind, const char *text, size_t n,
                        struct mx_tool_calls *out, struct mx_err *err) {
    return parse_answer(kind, text, n, false, out, err);
}

int mx_tool_calls_parse_partial(enum mx_tmpl_kind kind, const char *text, size_t n,
                                struct mx_tool_calls *out, struct mx_err *err) {
    return parse_answer(kind, text, n, true, out, err);
}

/* ---- the call grammar -------------------------------------------------------------------- */

struct gbuf {
    struct mx_bytes b;
    int rc; /* sticky: MX_ENOMEM once an append failed */
};

/* Appends s[0..n) (a failure is remembered in g->rc). */
static void gput(struct gbuf *g, const char *s, size_t n) {
    if (g->rc == 0 && mx_bytes_add(&g->b, s, n) < 0)
        g->rc = MX_ENOMEM;
}

/* Appends the C string s. */
static void gputs(struct gbuf *g, const char *s) {
    gput(g, s, strlen(s));
}

/* A character of a GBNF rule name (llama.cpp: letters, digits, '-', '_'). */
static bool gbnf_word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

/* Appends grammar text with every rule name (definitions and references) prefixed by pfx.
 * Literals, character classes, repetition braces and comments are copied untouched. */
static void gbnf_prefixed(struct gbuf *g, const char *s, const char *pfx) {
    size_t n = strlen(s), i = 0;
    while (i < n) {
        size_t j = i;
        char c = s[i];
        if (c == '#') {
            while (j < n && s[j] != '\n')
                j++;
        } else if (c == '"' || c == '[') {
            char close = c == '"' ? '"' : ']';
            for (j = i + 1; j < n && s[j] != close; j++)
                if (s[j] == '\\' && j + 1 < n)
                    j++;
            j = j < n ? j + 1 : n;
        } else if (c == '{') {
            while (j < n && s[j] != '}')
                j++;
            j = j < n ? j + 1 : n;
        } else if (gbnf_word_char(c)) {
            while (j < n && gbnf_word_char(s[j]))
                j++;
            gputs(g, pfx);
        } else {
            j = i + 1;
        }
        gput(g, s + i, j - i);
        i = j;
    }
    gputs(g, "\n");
}

int mx_tool_grammar_args(enum mx_tmpl_kind kind, const struct mx_tool_def *tools, size_t n,
                         const char *const *args_gbnf, char **gbnf, const char **trigger,
                         struct mx_err *err) {
    struct gbuf g = {{0}, 0};
    char pfx[64];
    if (!gbnf || !trigger)
        return mx_err_set(err, MX_EINVAL, "tool grammar: no output");
    *gbnf = NULL;
    *trigger = NULL;
    if ((unsigned)kind >= MX_TMPL_COUNT || !tools || n == 0 || !args_gbnf)
        return mx_err_set(err, MX_EINVAL, "tool grammar: no tools");
    for (size_t i = 0; i < n; i++) {
        if (!mx_tool_name_valid(tools[i].name))
            return mx_err_set(err, MX_EINVAL,
                              "tool grammar: tool %zu: name '%.64s' must be 1-64 of "
                              "[A-Za-z0-9_.-]", i, tools[i].name ? tools[i].name : "(null)");
        if (!args_gbnf[i])
            return mx_err_set(err, MX_EINVAL, "tool grammar: tool %zu (%s): no argument grammar",
                              i, tools[i].name);
    }
    const char *const *mk = markers(kind);
    bool mistral = mk[0][0] == '[', llama3 = kind == MX_TMPL_LLAMA3;
    /* the envelope: root starts with the trigger, the way the family writes its calls */
    if (mistral)
        gputs(&g, "root ::= \"[TOOL_CALLS]\" tc-ws \"[\" tc-ws tc-call "
                  "(tc-ws \",\" tc-ws tc-call){0,7} tc-ws \"]\"\n"
                  "tc-id ::= tc-ws \",\" tc-ws \"\\\"id\\\"\" tc-ws \":\" tc-ws \"\\\"\" "
                  "[a-zA-Z0-9]{9} \"\\\"\"\n");
    else if (kind == MX_TMPL_CHATML)
        gputs(&g, "root ::= tc-block (tc-ws tc-block){0,7}\n"
                  "tc-block ::= \"<tool_call>\" tc-ws tc-call tc-ws \"</tool_call>\"\n");
    else if (llama3)
        gputs(&g, "root ::= tc-call\n");
    else
        gputs(&g, "root ::= \"{\\\"tool_calls\\\"\" tc-ws \":\" tc-ws \"[\" tc-ws tc-call "
                  "(tc-ws \",\" tc-ws tc-call){0,7} tc-ws \"]\" tc-ws \"}\"\n");
    /* JSON whitespace between the envelope's tokens, bounded so a call cannot run on forever */
    gputs(&g, "tc-ws ::= [ \\t\\n]{0,8}\ntc-call ::= ");
    for (size_t i = 0; i < n; i++) {
        snprintf(pfx, sizeof pfx, "%stc-call-%zu", i ? " | " : "", i);
        gputs(&g, pfx);
    }
    gputs(&g, "\n");
    for (size_t i = 0; i < n; i++) {
        snprintf(pfx, sizeof pfx, "tc-call-%zu ::= ", i);
        gputs(&g, pfx);
        /* Llama 3's object opens with the trigger itself: no space inside {"name" */
        gputs(&g, llama3 ? "\"{\\\"name\\\"\"" : "\"{\" tc-ws \"\\\"name\\\"\"");
        gputs(&g, " tc-ws \":\" tc-ws \"\\\"");
        gputs(&g, tools[i].name); /* [A-Za-z0-9_.-]: nothing to escape */
        gputs(&g, "\\\"\" tc-ws \",\" tc-ws ");
        gputs(&g, llama3 ? "\"\\\"parameters\\\"\"" : "\"\\\"arguments\\\"\"");
        snprintf(pfx, sizeof pfx, " tc-ws \":\" tc-ws t%zu-root", i);
        gputs(&g, pfx);
        gputs(&g, mistral ? " tc-id? tc-ws \"}\"\n" : " tc-ws \"}\"\n");
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(pfx, sizeof pfx, "t%zu-", i);
        gbnf_prefixed(&g, args_gbnf[i], pfx);
    }
    if (g.rc < 0) {
        mx_bytes_free(&g.b);
        return mx_err_set(err, MX_ENOMEM, "tool grammar: out of memory");
    }
    *gbnf = g.b.p;
    *trigger = mx_tool_trigger(kind);
    return 0;
}

int mx_tool_grammar(enum mx_tmpl_kind kind, const struct mx_tool_def *tools, size_t n,
                    char **gbnf, const char **trigger, struct mx_err *err) {
    char **args = NULL;
    int rc = 0;
    if (!gbnf || !trigger)
        return mx_err_set(err, MX_EINVAL, "tool grammar: no output");
    *gbnf = NULL;
    *trigger = NULL;
    if (!tools || n == 0)
        return mx_err_set(err, MX_EINVAL, "tool grammar: no tools");
    if (!(args = calloc(n, sizeof(*args))))
        return mx_err_set(err, MX_ENOMEM, "tool grammar: out of memory");
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct mx_err e = {0};
        if (!tools[i].parameters) {
            args[i] = strdup(mx_json_any_gbnf());
            if (!args[i])
                rc = mx_err_set(err, MX_ENOMEM, "tool grammar: out of memory");
            continue;
        }
        rc = mx_json_schema_to_gbnf(tools[i].parameters, strlen(tools[i].parameters), &args[i],
                                    &e);
        if (rc < 0)
            mx_err_set(err, rc, "tool '%.64s': %s", tools[i].name ? tools[i].name : "(null)",
                       mx_err_msg(&e, rc));
    }
    if (rc == 0)
        rc = mx_tool_grammar_args(kind, tools, n, (const char *const *)args, gbnf, trigger, err);
    for (size_t i = 0; i < n; i++)
        free(args[i]);
    free(args);
    return rc;
}
