/* tool_call.c - tool calls in answers, per template family: the parser, the streaming text
 * length and the call grammar (see tool_call.h for the syntaxes and the rules).
 *
 * JSON values are read with jansson in "stop after one value" mode, which reports how many bytes
 * the value took, so a call embedded in text (a <tool_call> block, a [TOOL_CALLS] array, an
 * object after some words) is cut out exactly. Workload: one answer per turn, a few KB; the
 * streaming length is asked once per generated token on the answer so far, which stays
 * quadratic in the answer's length but with a tiny constant (a few marker compares per byte).
 */
#include "core/text/tool_call.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base/bytes.h"
#include "core/base/util.h"

/* ---- small helpers ----------------------------------------------------------------------- */

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static size_t skip_ws(const char *s, size_t n, size_t p) {
    while (p < n && is_space(s[p]))
        p++;
    return p;
}

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

static enum pat_match pat_at(const char *s, size_t n, size_t p, const char *pat, size_t *end) {
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
    case MX_TMPL_CHATML: return hermes;
    case MX_TMPL_LLAMA3: return llama3;
    default: return generic;
    }
}

const char *mx_tool_trigger(enum mx_tmpl_kind kind) {
    switch (kind) {
    case MX_TMPL_MISTRAL_V3: case MX_TMPL_MISTRAL_V3_TEKKEN:
    case MX_TMPL_MISTRAL_V7: case MX_TMPL_MISTRAL_V7_TEKKEN: return "[TOOL_CALLS]";
    case MX_TMPL_CHATML: return "<tool_call>";
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

/* ---- parsing ----------------------------------------------------------------------------- */

struct pctx {
    const char *s;              /* the answer */
    size_t n;
    const char *fam;            /* family name for messages */
    struct mx_bytes content;    /* text outside the calls */
    struct mx_tool_calls *out;
    size_t cap;                 /* out->calls allocated */
    struct mx_err *err;
};

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

/* The JSON value at s[p..n) after whitespace, or NULL; *end: the offset after it. */
static json_t *json_at(const struct pctx *P, size_t p, size_t *end) {
    json_error_t je;
    p = skip_ws(P->s, P->n, p);
    if (p >= P->n || (P->s[p] != '{' && P->s[p] != '['))
        return NULL;
    json_t *v = json_loadb(P->s + p, P->n - p, JSON_DISABLE_EOF_CHECK, &je);
    if (v)
        *end = p + (size_t)je.position;
    return v;
}

static int fail(struct pctx *P, size_t at, const char *what) {
    return mx_err_set(P->err, MX_EFORMAT, "tool call (%s): %s (at byte %zu)", P->fam, what, at);
}

static int add_content(struct pctx *P, size_t from, size_t to) {
    if (to > from && mx_bytes_add(&P->content, P->s + from, to - from) < 0)
        return mx_err_set(P->err, MX_ENOMEM, "tool call: out of memory");
    return 0;
}

/* Appends a call; name and id are copied, args (an object) dumped. */
static int add_call(struct pctx *P, const char *name, size_t name_len, json_t *args,
                    const char *id, size_t id_len, size_t at) {
    struct mx_tool_calls *o = P->out;
    if (o->n_calls == P->cap) {
        size_t cap = P->cap ? P->cap * 2 : 4;
        struct mx_tool_call *c = realloc(o->calls, cap * sizeof(*c));
        if (!c)
            return mx_err_set(P->err, MX_ENOMEM, "tool call: out of memory");
        o->calls = c;
        P->cap = cap;
    }
    if (name_len == 0)
        return fail(P, at, "a call without a name");
    char gen[10];
    if (!id || id_len == 0) {
        make_id(gen);
        id = gen;
        id_len = 9;
    }
    char *nm = strndup(name, name_len), *ids = strndup(id, id_len);
    char *ar = args ? json_dumps(args, JSON_PRESERVE_ORDER) : strdup("{}");
    if (!nm || !ids || !ar) {
        free(nm);
        free(ids);
        free(ar);
        return mx_err_set(P->err, MX_ENOMEM, "tool call: out of memory");
    }
    o->calls[o->n_calls++] = (struct mx_tool_call){ids, nm, ar};
    return 0;
}

/* A call object {"name": "f", "arguments"|"parameters": {...} or "{...}", "id": "..."}; strict:
 * no other keys but "type" (for Llama 3's bare objects, where anything else is plain JSON).
 * Returns 0, 1 (strict and not call-shaped), or an error. */
static int call_from_obj(struct pctx *P, json_t *o, size_t at, bool strict) {
    json_t *name = json_object_get(o, "name");
    json_t *args = json_object_get(o, "arguments");
    json_t *id = json_object_get(o, "id");
    json_t *decoded = NULL;
    int rc;
    if (!args)
        args = json_object_get(o, "parameters");
    if (strict && (!json_is_string(name) || !json_is_object(args) ||
                   json_object_size(o) != 2 + (json_object_get(o, "type") ? 1u : 0u)))
        return 1;
    if (!json_is_object(o) || !json_is_string(name))
        return fail(P, at, "a call needs a string \"name\"");
    if (json_is_string(args)) { /* OpenAI style: the arguments object as a JSON string */
        json_error_t je;
        decoded = json_loads(json_string_value(args), 0, &je);
        if (!decoded)
            return fail(P, at, "the arguments are not a JSON object");
        args = decoded;
    }
    if (args && !json_is_object(args)) {
        json_decref(decoded);
        return fail(P, at, "the arguments are not a JSON object");
    }
    if (id && !json_is_string(id)) {
        json_decref(decoded);
        return fail(P, at, "the call id is not a string");
    }
    rc = add_call(P, json_string_value(name), json_string_length(name), args,
                  id ? json_string_value(id) : NULL, id ? json_string_length(id) : 0, at);
    json_decref(decoded);
    return rc;
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
        size_t end = 0;
        p = skip_ws(P->s, P->n, p);
        if (p < P->n && P->s[p] == '[') {
            json_t *arr = json_at(P, p, &end);
            if (!json_is_array(arr) || json_array_size(arr) == 0) {
                json_decref(arr);
                return fail(P, p, "expected a JSON array of calls after [TOOL_CALLS]");
            }
            for (size_t i = 0; i < json_array_size(arr) && rc == 0; i++)
                rc = call_from_obj(P, json_array_get(arr, i), p, false);
            json_decref(arr);
            if (rc < 0)
                return rc;
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
                return fail(P, p, "expected a JSON array or NAME[ARGS] after [TOOL_CALLS]");
            json_t *args = json_at(P, q + 6, &end);
            if (!json_is_object(args)) {
                json_decref(args);
                return fail(P, q + 6, "expected a JSON object after [ARGS]");
            }
            rc = add_call(P, P->s + p, name_end - p, args, idn ? P->s + idp : NULL, idn, p);
            json_decref(args);
            if (rc < 0)
                return rc;
        }
        p = skip_ws(P->s, P->n, end);
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
        size_t m = find(P->s, P->n, p, "<tool_call>"), end = 0;
        if ((rc = add_content(P, p, m)) < 0 || m == P->n)
            return rc;
        json_t *o = json_at(P, m + 11, &end);
        if (!json_is_object(o)) {
            json_decref(o);
            return fail(P, m + 11, "expected a JSON object after <tool_call>");
        }
        rc = call_from_obj(P, o, m, false);
        json_decref(o);
        if (rc < 0)
            return rc;
        p = skip_ws(P->s, P->n, end);
        if (starts_with(P->s, P->n, p, "</tool_call>"))
            p += 12;
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
        size_t end = 0;
        json_t *o = json_at(P, p, &end);
        int rc = json_is_object(o) ? call_from_obj(P, o, p, strict)
                                   : strict ? 1 : fail(P, p, "expected a JSON call object");
        json_decref(o);
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
        p = end;
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
    if (m < P->n && (rc = parse_objects(P, m, true)) <= 0) {
        if (rc < 0)
            return rc;
        return add_content(P, 0, m);
    }
    return add_content(P, 0, P->n);
}

/* The generic convention: {"tool_calls": [...]} anywhere in the text. */
static int parse_generic(struct pctx *P) {
    size_t m = pat_find(P->s, P->n, 0, "{ \"tool_calls\""), end = 0;
    int rc;
    if ((rc = add_content(P, 0, m)) < 0 || m == P->n)
        return rc;
    json_t *o = json_at(P, m, &end);
    json_t *arr = json_object_get(o, "tool_calls");
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        json_decref(o);
        return fail(P, m, "expected {\"tool_calls\": [calls]}");
    }
    for (size_t i = 0; i < json_array_size(arr) && rc == 0; i++)
        rc = call_from_obj(P, json_array_get(arr, i), m, false);
    json_decref(o);
    if (rc < 0)
        return rc;
    return add_content(P, end, P->n);
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

int mx_tool_calls_parse(enum mx_tmpl_kind kind, const char *text, size_t n,
                        struct mx_tool_calls *out, struct mx_err *err) {
    if (!out)
        return mx_err_set(err, MX_EINVAL, "tool call: no output");
    memset(out, 0, sizeof(*out));
    if ((unsigned)kind >= MX_TMPL_COUNT || (!text && n > 0))
        return mx_err_set(err, MX_EINVAL, "tool call: bad arguments (kind %d)", (int)kind);
    struct pctx P = {text ? text : "", n, mx_tmpl_name(kind), {0}, out, 0, err};
    int rc;
    switch (kind) {
    case MX_TMPL_MISTRAL_V3: case MX_TMPL_MISTRAL_V3_TEKKEN:
    case MX_TMPL_MISTRAL_V7: case MX_TMPL_MISTRAL_V7_TEKKEN: rc = parse_mistral(&P); break;
    case MX_TMPL_CHATML: rc = parse_hermes(&P); break;
    case MX_TMPL_LLAMA3: rc = parse_llama3(&P); break;
    default: rc = parse_generic(&P); break;
    }
    if (rc < 0) { /* the whole answer is the content; no calls */
        struct mx_tool_calls keep = *out;
        keep.content = NULL;
        mx_tool_calls_free(&keep);
        out->calls = NULL;
        out->n_calls = 0;
        if (set_content(out, P.s, n, NULL) < 0)
            rc = mx_err_set(err, MX_ENOMEM, "tool call: out of memory");
    } else {
        rc = set_content(out, P.content.p, P.content.n, err);
    }
    mx_bytes_free(&P.content);
    return rc;
}

/* ---- the call grammar -------------------------------------------------------------------- */

struct gbuf {
    struct mx_bytes b;
    int rc; /* sticky: MX_ENOMEM once an append failed */
};

static void gput(struct gbuf *g, const char *s, size_t n) {
    if (g->rc == 0 && mx_bytes_add(&g->b, s, n) < 0)
        g->rc = MX_ENOMEM;
}

static void gputs(struct gbuf *g, const char *s) {
    gput(g, s, strlen(s));
}

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
