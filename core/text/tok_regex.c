/* tok_regex.c - the small regular-expression engine behind the BPE pre-tokenizers that have no
 * hand-written splitter (core/text/tok_pre.c).
 *
 * llama.cpp runs those patterns with C++ std::regex in ECMAScript mode (libstdc++'s backtracking
 * executor, C locale) over a string of "characters" that are codepoints or collapsed category
 * bytes; to split exactly like it, this engine implements the same semantics for the subset the
 * patterns use: alternation tried left to right, greedy and lazy quantifiers (* + ? {n} {n,}
 * {n,m}), groups ( ) (?: ), lookahead (?= ) (?! ), classes [...] with ranges and negation, the
 * escapes \s \S \d \D \w \W \b \B (ASCII classes, as the C locale has), ., ^ and $. Matching is
 * a backtracking machine over a heap stack, so a long text never deepens the C stack; only
 * nested lookaheads recurse (bounded by the pattern). Patterns are compiled from the constant
 * tables of tok_pre.c, never from input: a loop whose body can match the empty string is
 * refused at compile time instead of being guarded at run time.
 */
#include <stdlib.h>
#include <string.h>

#include "core/text/tok_internal.h"

/* ---- parse tree ---------------------------------------------------------------------------- */

enum nkind { N_EMPTY, N_CHAR, N_CLASS, N_ANY, N_CAT, N_ALT, N_REP, N_LOOK, N_BOL, N_EOL, N_WB,
             N_NWB };

#define REP_INF (-1)

/* One node of the parsed pattern. */
struct node {
    enum nkind kind;         /* what the node matches */
    uint32_t c;              /* N_CHAR: the character */
    int cls;                 /* N_CLASS: index into the class table */
    int min, max;            /* N_REP: bounds (max REP_INF: unbounded) */
    bool lazy;               /* N_REP: fewest repetitions first */
    bool neg;                /* N_LOOK: (?! ) */
    struct node **kids;      /* N_CAT/N_ALT: children; N_REP/N_LOOK: kids[0] */
    int n_kids, cap_kids;    /* used and allocated entries of kids */
};

/* Escape classes a bracket or atom may hold, as bits. */
#define E_S 1u  /* \s */
#define E_NS 2u /* \S */
#define E_D 4u  /* \d */
#define E_ND 8u /* \D */
#define E_W 16u /* \w */
#define E_NW 32u /* \W */

/* A character class: ranges [lo, hi] plus escape classes, possibly negated. */
struct rx_class {
    uint32_t *rng; /* pairs lo, hi */
    int n_rng, cap_rng; /* pairs used and allocated */
    unsigned esc;  /* E_* escape classes inside the brackets */
    bool neg;      /* [^...] */
    uint8_t low[32]; /* membership of characters 0-255 (the whole collapsed alphabet), built
                        after parsing so the common case is one bit test */
};

static bool class_has_slow(const struct rx_class *cl, uint32_t c);

/* Machine instructions. */
enum op { OP_CHAR, OP_CLASS, OP_ANY, OP_SPLIT, OP_JMP, OP_LOOK, OP_LEND, OP_BOL, OP_EOL, OP_WB,
          OP_NWB, OP_MATCH };

/* One instruction: SPLIT tries x first, then y; LOOK runs the body after it and continues at x
 * when the body's outcome is the wanted one (neg: no match). */
struct inst {
    uint8_t op;   /* enum op */
    bool neg;     /* OP_LOOK: (?! ) */
    uint32_t c;  /* OP_CHAR */
    int32_t x, y; /* jump targets, OP_CLASS: x = class index */
};

/* A compiled pattern: the program (ends with OP_MATCH) and its classes. */
struct mx_rx {
    struct inst *code;
    int n_code, cap_code;   /* instructions used and allocated */
    struct rx_class *cls;
    int n_cls, cap_cls;     /* classes used and allocated */
};

/* Parser state over the pattern's characters. */
struct parser {
    const uint32_t *p;  /* the pattern */
    size_t n, i;        /* its length and the position being read */
    struct mx_rx *rx;   /* where classes and code go */
    bool bad;     /* syntax error or unsupported construct */
    bool nomem;
    int depth;    /* group nesting, bounded */
};

/* Frees a parse tree (NULL ok). */
static void node_free(struct node *nd) {
    if (!nd)
        return;
    for (int i = 0; i < nd->n_kids; i++)
        node_free(nd->kids[i]);
    free(nd->kids);
    free(nd);
}

/* A zeroed node of kind k, or NULL (ps->nomem set). */
static struct node *node_new(struct parser *ps, enum nkind k) {
    struct node *nd = calloc(1, sizeof(*nd));
    if (!nd)
        ps->nomem = true;
    else
        nd->kind = k;
    return nd;
}

/* Appends kid to parent; false (kid freed, ps->nomem) when kid is NULL or memory runs out. */
static bool node_add(struct parser *ps, struct node *parent, struct node *kid) {
    if (!kid)
        return false;
    if (parent->n_kids == parent->cap_kids) {
        int nc = parent->cap_kids ? parent->cap_kids * 2 : 4;
        struct node **nk = realloc(parent->kids, (size_t)nc * sizeof(*nk));
        if (!nk) {
            ps->nomem = true;
            node_free(kid);
            return false;
        }
        parent->kids = nk;
        parent->cap_kids = nc;
    }
    parent->kids[parent->n_kids++] = kid;
    return true;
}

/* A new empty class in the pattern's table: its index, or -1 (ps->nomem). */
static int class_new(struct parser *ps) {
    struct mx_rx *rx = ps->rx;
    if (rx->n_cls == rx->cap_cls) {
        int nc = rx->cap_cls ? rx->cap_cls * 2 : 8;
        struct rx_class *ncl = realloc(rx->cls, (size_t)nc * sizeof(*ncl));
        if (!ncl) {
            ps->nomem = true;
            return -1;
        }
        rx->cls = ncl;
        rx->cap_cls = nc;
    }
    memset(&rx->cls[rx->n_cls], 0, sizeof(rx->cls[0]));
    return rx->n_cls++;
}

/* Adds [lo, hi] to class ci; a reversed range is a syntax error, as in std::regex. */
static void class_range(struct parser *ps, int ci, uint32_t lo, uint32_t hi) {
    struct rx_class *c = &ps->rx->cls[ci];
    if (lo > hi) { /* std::regex: error_range */
        ps->bad = true;
        return;
    }
    if (c->n_rng == c->cap_rng) {
        int nc = c->cap_rng ? c->cap_rng * 2 : 16;
        uint32_t *nr = realloc(c->rng, (size_t)nc * 2 * sizeof(*nr));
        if (!nr) {
            ps->nomem = true;
            return;
        }
        c->rng = nr;
        c->cap_rng = nc;
    }
    c->rng[2 * c->n_rng] = lo;
    c->rng[2 * c->n_rng + 1] = hi;
    c->n_rng++;
}

/* Whether pattern characters are left, and the next one (0 at the end). */
static bool more(const struct parser *ps) { return ps->i < ps->n; }
static uint32_t peek(const struct parser *ps) { return ps->i < ps->n ? ps->p[ps->i] : 0; }

/* The value of hex digit c, or -1. */
static int hexval(uint32_t c) {
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    if ((c | 32) >= 'a' && (c | 32) <= 'f')
        return (int)((c | 32) - 'a' + 10);
    return -1;
}

/* After a backslash: a control escape or \xHH / \uHHHH as a character (*c), an escape class as
 * E_* bits (*esc), or an identity escape. Returns false on a malformed escape. */
static bool parse_escape(struct parser *ps, uint32_t *c, unsigned *esc) {
    *esc = 0;
    if (!more(ps))
        return false;
    uint32_t e = ps->p[ps->i++];
    switch (e) {
    case 's': *esc = E_S; return true;
    case 'S': *esc = E_NS; return true;
    case 'd': *esc = E_D; return true;
    case 'D': *esc = E_ND; return true;
    case 'w': *esc = E_W; return true;
    case 'W': *esc = E_NW; return true;
    case 'n': *c = '\n'; return true;
    case 'r': *c = '\r'; return true;
    case 't': *c = '\t'; return true;
    case 'v': *c = '\v'; return true;
    case 'f': *c = '\f'; return true;
    case '0': *c = 0; return true;
    case 'x':
    case 'u': {
        int nd = e == 'x' ? 2 : 4;
        uint32_t v = 0;
        for (int k = 0; k < nd; k++) {
            int h = hexval(peek(ps));
            if (h < 0 || !more(ps))
                return false;
            v = v * 16 + (uint32_t)h;
            ps->i++;
        }
        *c = v;
        return true;
    }
    default:
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '1' && e <= '9'))
            return false; /* \p{..}, \b in a class, back-references: not in this subset */
        *c = e;
        return true;
    }
}

/* [...] after the '[' */
static struct node *parse_class(struct parser *ps) {
    int ci = class_new(ps);
    if (ci < 0)
        return NULL;
    if (peek(ps) == '^' && more(ps)) {
        ps->rx->cls[ci].neg = true;
        ps->i++;
    }
    bool first = true;
    while (more(ps) && !(peek(ps) == ']' && !first)) {
        uint32_t lo = ps->p[ps->i++];
        unsigned esc = 0;
        first = false;
        if (lo == '\\' && !parse_escape(ps, &lo, &esc)) {
            ps->bad = true;
            return NULL;
        }
        if (esc) {
            ps->rx->cls[ci].esc |= esc;
            continue;
        }
        if (peek(ps) == '-' && ps->i + 1 < ps->n && ps->p[ps->i + 1] != ']') {
            ps->i++;
            uint32_t hi = ps->p[ps->i++];
            if (hi == '\\' && (!parse_escape(ps, &hi, &esc) || esc)) {
                ps->bad = true;
                return NULL;
            }
            class_range(ps, ci, lo, hi);
        } else {
            class_range(ps, ci, lo, lo);
        }
        if (ps->bad || ps->nomem)
            return NULL;
    }
    if (!more(ps)) { /* no closing ']' */
        ps->bad = true;
        return NULL;
    }
    ps->i++;
    struct node *nd = node_new(ps, N_CLASS);
    if (nd)
        nd->cls = ci;
    return nd;
}

static struct node *parse_alt(struct parser *ps);

/* A decimal number for {n,m}; -1 when there is none. */
static int parse_int(struct parser *ps) {
    int v = -1;
    while (more(ps) && peek(ps) >= '0' && peek(ps) <= '9') {
        v = (v < 0 ? 0 : v) * 10 + (int)(peek(ps) - '0');
        if (v > 100000) {
            ps->bad = true;
            return -1;
        }
        ps->i++;
    }
    return v;
}

/* One atom: a group, a lookahead, a class, an escape, ., ^, $ or a literal character. */
static struct node *parse_atom(struct parser *ps) {
    uint32_t c = ps->p[ps->i++];
    struct node *nd;
    switch (c) {
    case '(': {
        bool look = false, neg = false;
        if (peek(ps) == '?') {
            ps->i++;
            uint32_t k = more(ps) ? ps->p[ps->i++] : 0;
            if (k == '=' || k == '!') {
                look = true;
                neg = k == '!';
            } else if (k != ':') {
                ps->bad = true;
                return NULL;
            }
        }
        if (++ps->depth > 64) {
            ps->bad = true;
            return NULL;
        }
        struct node *body = parse_alt(ps);
        ps->depth--;
        if (!body)
            return NULL;
        if (peek(ps) != ')' || !more(ps)) {
            node_free(body);
            ps->bad = true;
            return NULL;
        }
        ps->i++;
        if (!look)
            return body;
        nd = node_new(ps, N_LOOK);
        if (!nd || !node_add(ps, nd, body)) {
            if (!nd)
                node_free(body);
            node_free(nd);
            return NULL;
        }
        nd->neg = neg;
        return nd;
    }
    case '[':
        return parse_class(ps);
    case '.':
        return node_new(ps, N_ANY);
    case '^':
        return node_new(ps, N_BOL);
    case '$':
        return node_new(ps, N_EOL);
    case ')':
    case '*':
    case '+':
    case '?':
    case '{':
        ps->bad = true; /* nothing to repeat / unbalanced */
        return NULL;
    case '\\': {
        if (peek(ps) == 'b' || peek(ps) == 'B') {
            ps->i++;
            return node_new(ps, ps->p[ps->i - 1] == 'b' ? N_WB : N_NWB);
        }
        unsigned esc = 0;
        uint32_t v = 0;
        if (!parse_escape(ps, &v, &esc)) {
            ps->bad = true;
            return NULL;
        }
        if (esc) {
            int ci = class_new(ps);
            if (ci < 0)
                return NULL;
            ps->rx->cls[ci].esc = esc;
            nd = node_new(ps, N_CLASS);
            if (nd)
                nd->cls = ci;
            return nd;
        }
        c = v;
        break;
    }
    default:
        break;
    }
    nd = node_new(ps, N_CHAR);
    if (nd)
        nd->c = c;
    return nd;
}

/* An atom and its quantifiers. */
static struct node *parse_piece(struct parser *ps) {
    struct node *a = parse_atom(ps);
    while (a && more(ps)) {
        uint32_t q = peek(ps);
        int mn, mx;
        if (q == '*') {
            mn = 0, mx = REP_INF;
        } else if (q == '+') {
            mn = 1, mx = REP_INF;
        } else if (q == '?') {
            mn = 0, mx = 1;
        } else if (q == '{') {
            ps->i++;
            mn = parse_int(ps);
            mx = mn;
            if (peek(ps) == ',') {
                ps->i++;
                mx = parse_int(ps);
                if (mx < 0)
                    mx = REP_INF;
            }
            if (mn < 0 || peek(ps) != '}' || !more(ps) || (mx != REP_INF && mx < mn) ||
                ps->bad) {
                ps->bad = true;
                node_free(a);
                return NULL;
            }
        } else {
            break;
        }
        ps->i++;
        struct node *r = node_new(ps, N_REP);
        if (!r || !node_add(ps, r, a)) {
            if (!r)
                node_free(a);
            node_free(r);
            return NULL;
        }
        r->min = mn;
        r->max = mx;
        if (peek(ps) == '?' && more(ps)) {
            r->lazy = true;
            ps->i++;
        }
        a = r;
    }
    return a;
}

/* A sequence of pieces up to | or ) or the end. */
static struct node *parse_cat(struct parser *ps) {
    struct node *cat = node_new(ps, N_CAT);
    while (cat && more(ps) && peek(ps) != '|' && peek(ps) != ')') {
        if (!node_add(ps, cat, parse_piece(ps))) {
            node_free(cat);
            return NULL;
        }
    }
    return cat;
}

/* Alternatives separated by |. */
static struct node *parse_alt(struct parser *ps) {
    struct node *alt = node_new(ps, N_ALT);
    if (!alt)
        return NULL;
    for (;;) {
        if (!node_add(ps, alt, parse_cat(ps))) {
            node_free(alt);
            return NULL;
        }
        if (peek(ps) != '|' || !more(ps))
            break;
        ps->i++;
    }
    return alt;
}

/* Whether nd can match without consuming a character. */
static bool nullable(const struct node *nd) {
    switch (nd->kind) {
    case N_CHAR:
    case N_CLASS:
    case N_ANY:
        return false;
    case N_CAT:
        for (int i = 0; i < nd->n_kids; i++)
            if (!nullable(nd->kids[i]))
                return false;
        return true;
    case N_ALT:
        for (int i = 0; i < nd->n_kids; i++)
            if (nullable(nd->kids[i]))
                return true;
        return false;
    case N_REP:
        return nd->min == 0 || nullable(nd->kids[0]);
    default:
        return true;
    }
}

/* ---- code generation ----------------------------------------------------------------------- */

#define MAX_CODE (1 << 20)

/* Appends an instruction: its index, or -1 (out of memory, or a program over MAX_CODE). */
static int emit(struct parser *ps, struct inst in) {
    struct mx_rx *rx = ps->rx;
    if (rx->n_code >= MAX_CODE) {
        ps->bad = true;
        return -1;
    }
    if (rx->n_code == rx->cap_code) {
        int nc = rx->cap_code ? rx->cap_code * 2 : 64;
        struct inst *ni = realloc(rx->code, (size_t)nc * sizeof(*ni));
        if (!ni) {
            ps->nomem = true;
            return -1;
        }
        rx->code = ni;
        rx->cap_code = nc;
    }
    rx->code[rx->n_code] = in;
    return rx->n_code++;
}

static bool gen(struct parser *ps, const struct node *nd);

/* One optional copy of body (greedy: try it first), continuing after it either way. */
static bool gen_opt(struct parser *ps, const struct node *body, bool lazy) {
    int sp = emit(ps, (struct inst){.op = OP_SPLIT});
    if (sp < 0 || !gen(ps, body))
        return false;
    int a = sp + 1, b = ps->rx->n_code;
    ps->rx->code[sp].x = lazy ? b : a;
    ps->rx->code[sp].y = lazy ? a : b;
    return true;
}

/* Emits the code of nd: the machine tries alternatives and repetitions in ECMAScript order
 * (SPLIT's x first). False on failure (ps says why). */
static bool gen(struct parser *ps, const struct node *nd) {
    struct mx_rx *rx = ps->rx;
    switch (nd->kind) {
    case N_EMPTY:
        return true;
    case N_CHAR:
        return emit(ps, (struct inst){.op = OP_CHAR, .c = nd->c}) >= 0;
    case N_CLASS:
        return emit(ps, (struct inst){.op = OP_CLASS, .x = nd->cls}) >= 0;
    case N_ANY:
        return emit(ps, (struct inst){.op = OP_ANY}) >= 0;
    case N_BOL:
        return emit(ps, (struct inst){.op = OP_BOL}) >= 0;
    case N_EOL:
        return emit(ps, (struct inst){.op = OP_EOL}) >= 0;
    case N_WB:
        return emit(ps, (struct inst){.op = OP_WB}) >= 0;
    case N_NWB:
        return emit(ps, (struct inst){.op = OP_NWB}) >= 0;
    case N_CAT:
        for (int i = 0; i < nd->n_kids; i++)
            if (!gen(ps, nd->kids[i]))
                return false;
        return true;
    case N_ALT: {
        /* SPLIT k0, next; k0; JMP end; next: SPLIT k1, ...; last kid */
        int *jumps = malloc((size_t)nd->n_kids * sizeof(*jumps));
        int nj = 0;
        bool ok = jumps != NULL;
        if (!ok)
            ps->nomem = true;
        for (int i = 0; ok && i < nd->n_kids; i++) {
            if (i + 1 < nd->n_kids) {
                int sp = emit(ps, (struct inst){.op = OP_SPLIT});
                ok = sp >= 0 && gen(ps, nd->kids[i]);
                int j = ok ? emit(ps, (struct inst){.op = OP_JMP}) : -1;
                ok = ok && j >= 0;
                if (ok) {
                    jumps[nj++] = j;
                    rx->code[sp].x = sp + 1;
                    rx->code[sp].y = rx->n_code;
                }
            } else {
                ok = gen(ps, nd->kids[i]);
            }
        }
        for (int i = 0; ok && i < nj; i++)
            rx->code[jumps[i]].x = rx->n_code;
        free(jumps);
        return ok;
    }
    case N_REP: {
        const struct node *body = nd->kids[0];
        for (int i = 0; i < nd->min; i++)
            if (!gen(ps, body))
                return false;
        if (nd->max == REP_INF) {
            if (nullable(body)) { /* an empty iteration would need run-time guards */
                ps->bad = true;
                return false;
            }
            /* L: SPLIT body, out; body; JMP L; out: */
            int sp = emit(ps, (struct inst){.op = OP_SPLIT});
            if (sp < 0 || !gen(ps, body))
                return false;
            if (emit(ps, (struct inst){.op = OP_JMP, .x = sp}) < 0)
                return false;
            int a = sp + 1, b = rx->n_code;
            rx->code[sp].x = nd->lazy ? b : a;
            rx->code[sp].y = nd->lazy ? a : b;
            return true;
        }
        for (int i = nd->min; i < nd->max; i++)
            if (!gen_opt(ps, body, nd->lazy))
                return false;
        return true;
    }
    case N_LOOK: {
        int lk = emit(ps, (struct inst){.op = OP_LOOK, .neg = nd->neg});
        if (lk < 0 || !gen(ps, nd->kids[0]) || emit(ps, (struct inst){.op = OP_LEND}) < 0)
            return false;
        rx->code[lk].x = rx->n_code;
        return true;
    }
    }
    return false;
}

void mx_rx_free(struct mx_rx *rx) {
    if (!rx)
        return;
    for (int i = 0; i < rx->n_cls; i++)
        free(rx->cls[i].rng);
    free(rx->cls);
    free(rx->code);
    free(rx);
}

int mx_rx_compile(const uint32_t *pat, size_t n, struct mx_rx **out, struct mx_err *err) {
    *out = NULL;
    struct mx_rx *rx = calloc(1, sizeof(*rx));
    if (!rx)
        return mx_err_set(err, MX_ENOMEM, "regex: out of memory");
    struct parser ps = {pat, n, 0, rx, false, false, 0};
    struct node *root = parse_alt(&ps);
    if (root && more(&ps))
        ps.bad = true; /* a ')' without '(' */
    if (root && !ps.bad && !ps.nomem)
        (void)(gen(&ps, root) && emit(&ps, (struct inst){.op = OP_MATCH}) >= 0);
    node_free(root);
    if (ps.nomem || ps.bad || !root) {
        mx_rx_free(rx);
        if (ps.nomem || (!root && !ps.bad))
            return mx_err_set(err, MX_ENOMEM, "regex: out of memory");
        return mx_err_set(err, MX_EINVAL, "regex: unsupported or malformed pattern (at "
                          "character %zu of %zu)", ps.i, n);
    }
    for (int i = 0; i < rx->n_cls; i++)
        for (uint32_t c = 0; c < 256; c++)
            if (class_has_slow(&rx->cls[i], c))
                rx->cls[i].low[c >> 3] |= (uint8_t)(1u << (c & 7));
    *out = rx;
    return 0;
}

/* ---- matching ------------------------------------------------------------------------------ */

/* \s \d \w as the C locale has them (ASCII only; llama.cpp maps other white space to 0x0B). */
static bool is_space(uint32_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }
static bool is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
static bool is_word(uint32_t c) {
    return is_digit(c) || c == '_' || ((c | 32) >= 'a' && (c | 32) <= 'z');
}

/* Whether class cl holds c, from its ranges and escape classes. */
static bool class_has_slow(const struct rx_class *cl, uint32_t c) {
    bool in = false;
    unsigned e = cl->esc;
    if (e && (((e & E_S) && is_space(c)) || ((e & E_NS) && !is_space(c)) ||
              ((e & E_D) && is_digit(c)) || ((e & E_ND) && !is_digit(c)) ||
              ((e & E_W) && is_word(c)) || ((e & E_NW) && !is_word(c))))
        in = true;
    for (int i = 0; !in && i < cl->n_rng; i++)
        in = c >= cl->rng[2 * i] && c <= cl->rng[2 * i + 1];
    return in != cl->neg;
}

/* The same, from the bitmap for characters below 256. */
static inline bool class_has(const struct rx_class *cl, uint32_t c) {
    if (c < 256)
        return (cl->low[c >> 3] >> (c & 7)) & 1;
    return class_has_slow(cl, c);
}

/* Backtrack entry: resume at pc with the text at sp. */
struct bt {
    int32_t pc; /* instruction */
    size_t sp;  /* text position */
};

/* One search over txt[0..end): the fragment starts at 0 (for ^ and \b) and prev_avail says
 * whether text before the search start counts (regex_iterator's match_prev_avail). */
struct run {
    const struct mx_rx *rx;
    const uint32_t *txt; /* the fragment's characters */
    size_t end;          /* its length ($ matches here) */
    size_t start;      /* where this attempt began (match_not_null compares with it) */
    bool not_null;
    struct bt *stk;      /* backtrack entries (heap, so long texts need no C stack) */
    size_t n_stk, cap_stk;
    bool nomem;          /* a push failed: the search stops with MX_ENOMEM */
};

/* Pushes a backtrack entry; false (r->nomem) when memory runs out. */
static bool push(struct run *r, int32_t pc, size_t sp) {
    if (r->n_stk == r->cap_stk) {
        size_t nc = r->cap_stk ? r->cap_stk * 2 : 64;
        struct bt *ns = realloc(r->stk, nc * sizeof(*ns));
        if (!ns) {
            r->nomem = true;
            return false;
        }
        r->stk = ns;
        r->cap_stk = nc;
    }
    r->stk[r->n_stk++] = (struct bt){pc, sp};
    return true;
}

/* Runs from pc at sp until MATCH (top level) or LEND (a lookahead body): returns the end
 * position, or -1 when every path fails (or memory ran out: r->nomem). */
static ptrdiff_t exec(struct run *r, int32_t pc0, size_t sp0, int depth) {
    const struct inst *code = r->rx->code;
    size_t base = r->n_stk;
    if (depth > 64 || !push(r, pc0, sp0))
        return -1;
    while (r->n_stk > base) {
        struct bt b = r->stk[--r->n_stk];
        int32_t pc = b.pc;
        size_t sp = b.sp;
        for (;;) {
            const struct inst *in = &code[pc];
            bool ok;
            switch (in->op) {
            case OP_CHAR:
                ok = sp < r->end && r->txt[sp] == in->c;
                sp += ok;
                pc++;
                break;
            case OP_CLASS:
                ok = sp < r->end && class_has(&r->rx->cls[in->x], r->txt[sp]);
                sp += ok;
                pc++;
                break;
            case OP_ANY: {
                uint32_t c = sp < r->end ? r->txt[sp] : '\n';
                ok = !(c == '\n' || c == '\r' || c == 0x2028 || c == 0x2029);
                sp += ok;
                pc++;
                break;
            }
            case OP_SPLIT:
                if (!push(r, in->y, sp)) {
                    r->n_stk = base;
                    return -1;
                }
                pc = in->x;
                ok = true;
                break;
            case OP_JMP:
                pc = in->x;
                ok = true;
                break;
            case OP_LOOK: {
                ptrdiff_t e = exec(r, pc + 1, sp, depth + 1);
                if (r->nomem) {
                    r->n_stk = base;
                    return -1;
                }
                ok = (e >= 0) != in->neg;
                pc = in->x;
                break;
            }
            case OP_LEND:
                r->n_stk = base;
                return (ptrdiff_t)sp;
            case OP_BOL:
                ok = sp == 0;
                pc++;
                break;
            case OP_EOL:
                ok = sp == r->end;
                pc++;
                break;
            case OP_WB:
            case OP_NWB: {
                bool left = sp > 0 && is_word(r->txt[sp - 1]);
                bool right = sp < r->end && is_word(r->txt[sp]);
                ok = (left != right) == (in->op == OP_WB);
                pc++;
                break;
            }
            case OP_MATCH:
            default:
                if (r->not_null && sp == r->start) {
                    ok = false;
                    break;
                }
                r->n_stk = base;
                return (ptrdiff_t)sp;
            }
            if (!ok)
                break;
        }
    }
    return -1;
}

/* Appends n to the piece lengths (zero-length pieces are dropped: they make no tokens). */
static int put_len(struct mx_lenvec *lv, size_t n) {
    if (!n)
        return 0;
    if (lv->n == lv->cap) {
        size_t nc = lv->cap ? lv->cap * 2 : 64;
        size_t *nv = realloc(lv->v, nc * sizeof(*nv));
        if (!nv)
            return MX_ENOMEM;
        lv->v = nv;
        lv->cap = nc;
    }
    lv->v[lv->n++] = n;
    return 0;
}

int mx_lenvec_push(struct mx_lenvec *lv, size_t n) { return put_len(lv, n); }

/* First match at or after from (anchored: only at from); *at its start. */
static ptrdiff_t search(struct run *r, size_t from, bool anchored, size_t *at) {
    for (size_t s = from; s <= r->end; s++) {
        r->start = s;
        ptrdiff_t e = exec(r, 0, s, 0);
        if (r->nomem)
            return -1;
        if (e >= 0) {
            *at = s;
            return e;
        }
        if (anchored)
            break;
    }
    return -1;
}

int mx_rx_split(const struct mx_rx *rx, const uint32_t *txt, size_t len, struct mx_lenvec *out) {
    struct run r = {rx, txt, len, 0, false, NULL, 0, 0, false};
    size_t gap = 0, at = 0;
    int rc = 0;
    ptrdiff_t e = search(&r, 0, false, &at);
    while (e >= 0 && rc == 0) {
        if ((rc = put_len(out, at - gap)) < 0 || (rc = put_len(out, (size_t)e - at)) < 0)
            break;
        gap = (size_t)e;
        size_t from = (size_t)e;
        if ((size_t)e == at) { /* empty match: a non-empty one here, else search on from +1 */
            if (from == len)
                break;
            r.not_null = true;
            ptrdiff_t e2 = search(&r, from, true, &at);
            r.not_null = false;
            if (e2 >= 0) {
                e = e2;
                continue;
            }
            if (r.nomem)
                break;
            from++;
        }
        e = search(&r, from, false, &at);
    }
    if (rc == 0 && r.nomem)
        rc = MX_ENOMEM;
    if (rc == 0 && gap < len)
        rc = put_len(out, len - gap);
    free(r.stk);
    return rc;
}
