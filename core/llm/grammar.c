/* grammar.c - the GBNF parser and the stack-set matcher of grammar.h.
 *
 * Rules compile to one flat array of elements (llama.cpp's layout, learnt from its design): each
 * rule is its alternatives separated by ALT and closed by END; a character class is a CHAR or
 * CHAR_NOT element followed by CHAR_ALT (more code points) and RNG_UPPER (the upper end of the
 * range its previous element starts) elements; repetitions and groups become generated rules.
 * A parse stack is a list of element positions (top = the next thing to match, always a
 * character element after expansion; empty = a complete parse). Accepting a code point maps
 * the set of stacks to the set of their successors; duplicates are merged.
 *
 * Tuned for sampling over 32K-256K vocabularies: the sampler first asks about the one token it
 * picked (a handful of stack steps); only when that is refused does it filter the whole list,
 * and then a 256-entry table of the possible first bytes rejects most tokens before any stack
 * work. Scratch sets are reused, so a check allocates nothing once they have grown.
 */
#include "core/llm/grammar.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"

enum el_type {
    EL_END,       /* end of a rule */
    EL_ALT,       /* start of the next alternative */
    EL_REF,       /* reference to rule `val` */
    EL_CHAR,      /* a class that matches val (and what follows) */
    EL_CHAR_NOT,  /* a class that matches anything but val (and what follows) */
    EL_RNG_UPPER, /* val is the upper end of a range starting at the previous element */
    EL_CHAR_ALT,  /* one more code point (or range start) of the class */
    EL_ANY,       /* any code point */
};

/* One grammar element. */
struct el {
    uint32_t type; /* enum el_type */
    uint32_t val;  /* code point or rule id */
};

/* A set of parse stacks in one buffer: stack i is pos[start[i] .. start[i] + len[i]). */
struct gset {
    uint32_t *pos;          /* element positions, stacks back to back */
    size_t n_pos, cap_pos;
    uint32_t *start, *len;  /* [n] per stack */
    size_t n, cap;
};

/* One memo edge: from set `from`, code point cp leads to set `to` (-1: no stack survives). */
struct trans {
    uint32_t from;          /* UINT32_MAX: an empty slot */
    uint32_t cp;
    int32_t to;
};

#define MEMO_MAX_SETS 8192       /* more interned sets than this: flush the memo */
#define MEMO_MAX_EDGES (1u << 20)

struct mx_grammar {
    struct el *el;          /* [n_el] all rules, flat */
    size_t n_el;
    uint32_t *rule_start;   /* [n_rules] position of each rule's first element */
    size_t n_rules;
    uint32_t root;          /* rule id of root */
    struct gset cur;        /* the live stacks */
    uint32_t part_val;      /* bits of a pending incomplete UTF-8 character */
    int part_rem;           /* its continuation bytes still to come (0: none) */
    int32_t cur_id;         /* cur's index among the memo's sets, or -1 (not interned yet) */
    struct gset tmp[2];     /* scratch for advancing */
    /* the transition memo: a lazy DFA whose states are the stack sets met so far (interned by
     * content) and whose edges are (set, code point) -> set; flushed when it grows too big */
    struct gset *st;        /* [n_st] interned sets (owned) */
    size_t n_st, cap_st;
    int32_t *st_tab;        /* [cap_tab] open addressing: index into st, or -1 */
    size_t cap_tab;
    struct trans *tr;       /* [cap_tr] open addressing over (from, cp) */
    size_t n_tr, cap_tr;
    uint32_t *work;         /* scratch stack for expansion */
    size_t cap_work;
    /* vocabulary (optional) */
    int32_t n_vocab;
    char **tok;             /* [n_vocab] bytes of each token (owned; NULL: empty) */
    uint32_t *tok_len;      /* [n_vocab] */
    uint8_t *tok_eog;       /* [n_vocab] 1: ends a generation */
};

/* ---- stack sets ---------------------------------------------------------------------------- */

static void gset_free(struct gset *s) {
    free(s->pos);
    free(s->start);
    free(s->len);
    memset(s, 0, sizeof *s);
}

static int grow(void **p, size_t *cap, size_t need, size_t size) {
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 16;
    while (c < need)
        c *= 2;
    void *n = realloc(*p, c * size);
    if (!n)
        return MX_ENOMEM;
    *p = n;
    *cap = c;
    return 0;
}

/* Most parse stacks one set may hold: a very ambiguous grammar (nested recursion over
 * overlapping classes) can double them with every character; past this, the text is refused
 * with MX_ERANGE rather than taking the machine's memory and time. */
#define MAX_STACKS 4096

/* Adds stack w[0..n) unless an equal one is there. Returns 0, MX_ENOMEM, MX_ERANGE (more than
 * MAX_STACKS). */
static int gset_add(struct gset *s, const uint32_t *w, size_t n) {
    for (size_t i = 0; i < s->n; i++)
        if (s->len[i] == n && !memcmp(s->pos + s->start[i], w, n * sizeof *w))
            return 0;
    if (s->n >= MAX_STACKS)
        return MX_ERANGE;
    if (grow((void **)&s->pos, &s->cap_pos, s->n_pos + n + 1, sizeof *s->pos) < 0)
        return MX_ENOMEM;
    if (s->n == s->cap) { /* start and len share one capacity */
        size_t c = s->cap ? s->cap * 2 : 16;
        uint32_t *st = realloc(s->start, c * sizeof *st);
        if (!st)
            return MX_ENOMEM;
        s->start = st;
        uint32_t *l = realloc(s->len, c * sizeof *l);
        if (!l)
            return MX_ENOMEM;
        s->len = l;
        s->cap = c;
    }
    memcpy(s->pos + s->n_pos, w, n * sizeof *w);
    s->start[s->n] = (uint32_t)s->n_pos;
    s->len[s->n] = (uint32_t)n;
    s->n_pos += n;
    s->n++;
    return 0;
}

/* ---- matching ------------------------------------------------------------------------------ */

static bool is_end(const struct el *e) { return e->type == EL_END || e->type == EL_ALT; }
static bool is_char(const struct el *e) { return e->type >= EL_CHAR; }

/* Does the class at e match cp? *next: the element after the class. */
static bool class_match(const struct el *e, uint32_t cp, const struct el **next) {
    if (e->type == EL_ANY) {
        *next = e + 1;
        return true;
    }
    bool want = e->type == EL_CHAR, found = false;
    do {
        if (e[1].type == EL_RNG_UPPER) {
            found = found || (e->val <= cp && cp <= e[1].val);
            e += 2;
        } else {
            found = found || e->val == cp;
            e++;
        }
    } while (e->type == EL_CHAR_ALT);
    *next = e;
    return found == want;
}

/* Could the class at e match some code point in [lo, hi]? (Negated classes: conservatively yes.) */
static bool class_match_range(const struct el *e, uint32_t lo, uint32_t hi) {
    if (e->type != EL_CHAR)
        return true;
    do {
        uint32_t a = e->val, b = e->val;
        if (e[1].type == EL_RNG_UPPER) {
            b = e[1].val;
            e += 2;
        } else {
            e++;
        }
        if (a <= hi && b >= lo)
            return true;
    } while (e->type == EL_CHAR_ALT);
    return false;
}

static int work_reserve(struct mx_grammar *g, size_t n) {
    return grow((void **)&g->work, &g->cap_work, n, sizeof *g->work);
}

/* Expands the stack g->work[off .. off+n) until its top is a character element (or it is
 * empty) and adds the results to out: a rule reference on top is replaced by each of its
 * alternatives, each built in a fresh copy above the stack (so no alternative sees another's
 * edits). The parser refuses left recursion, so this ends. Returns 0 or MX_ENOMEM. */
static int expand(struct mx_grammar *g, size_t off, size_t n, struct gset *out) {
    if (n == 0 || is_char(&g->el[g->work[off + n - 1]]))
        return gset_add(out, g->work + off, n);
    uint32_t pos = g->work[off + n - 1];
    uint32_t rule = g->el[pos].val;
    bool cont = !is_end(&g->el[pos + 1]); /* something follows the reference in its rule */
    size_t noff = off + n;
    for (uint32_t a = g->rule_start[rule];;) {
        if (work_reserve(g, noff + n + 1) < 0)
            return MX_ENOMEM;
        memmove(g->work + noff, g->work + off, (n - 1) * sizeof *g->work);
        size_t m = n - 1;
        if (cont)
            g->work[noff + m++] = pos + 1;
        if (!is_end(&g->el[a]))
            g->work[noff + m++] = a;
        int rc = expand(g, noff, m, out);
        if (rc < 0)
            return rc;
        while (!is_end(&g->el[a])) /* to the end of this alternative */
            a++;
        if (g->el[a].type == EL_END)
            break;
        a++;
    }
    return 0;
}

/* out = the stacks of in after accepting code point cp. Returns 0 or MX_ENOMEM. */
static int advance(struct mx_grammar *g, const struct gset *in, uint32_t cp, struct gset *out) {
    out->n = out->n_pos = 0;
    for (size_t i = 0; i < in->n; i++) {
        size_t n = in->len[i];
        if (n == 0)
            continue; /* complete: nothing more can come */
        const uint32_t *s = in->pos + in->start[i];
        const struct el *next;
        if (!class_match(&g->el[s[n - 1]], cp, &next))
            continue;
        if (work_reserve(g, n + 1) < 0)
            return MX_ENOMEM;
        memcpy(g->work, s, (n - 1) * sizeof *s);
        size_t m = n - 1;
        if (!is_end(next))
            g->work[m++] = (uint32_t)(next - g->el);
        int rc = expand(g, 0, m, out);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- the transition memo --------------------------------------------------------------------- */

static uint64_t set_hash(const struct gset *s) {
    uint64_t h = 0xcbf29ce484222325ull ^ s->n;
    for (size_t i = 0; i < s->n; i++) {
        h = (h ^ (s->len[i] | 0x80000000u)) * 0x100000001b3ull;
        for (uint32_t j = 0; j < s->len[i]; j++)
            h = (h ^ s->pos[s->start[i] + j]) * 0x100000001b3ull;
    }
    return h ^ h >> 29;
}

static bool set_equal(const struct gset *a, const struct gset *b) {
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (a->len[i] != b->len[i] ||
            memcmp(a->pos + a->start[i], b->pos + b->start[i], a->len[i] * sizeof *a->pos))
            return false;
    return true;
}

/* d = a copy of s (d's buffers reused). Returns 0 or MX_ENOMEM. */
static int gset_assign(struct gset *d, const struct gset *s) {
    d->n = d->n_pos = 0;
    for (size_t i = 0; i < s->n; i++) {
        /* no duplicate check needed, but gset_add's is cheap next to the copy */
        if (gset_add(d, s->pos + s->start[i], s->len[i]) < 0)
            return MX_ENOMEM;
    }
    return 0;
}

static void memo_flush(struct mx_grammar *g) {
    for (size_t i = 0; i < g->n_st; i++)
        gset_free(&g->st[i]);
    g->n_st = 0;
    if (g->st_tab)
        memset(g->st_tab, 0xff, g->cap_tab * sizeof *g->st_tab);
    if (g->tr)
        memset(g->tr, 0xff, g->cap_tr * sizeof *g->tr);
    g->n_tr = 0;
    g->cur_id = -1;
}

/* The memo's index of a set equal to s, interned when new. Returns it or MX_ENOMEM. */
static int32_t intern(struct mx_grammar *g, const struct gset *s) {
    if (2 * (g->n_st + 1) > g->cap_tab) { /* grow and rehash the index */
        size_t cap = g->cap_tab ? g->cap_tab * 2 : 64;
        int32_t *t = malloc(cap * sizeof *t);
        if (!t)
            return MX_ENOMEM;
        memset(t, 0xff, cap * sizeof *t);
        for (size_t i = 0; i < g->n_st; i++) {
            size_t k = set_hash(&g->st[i]) & (cap - 1);
            while (t[k] >= 0)
                k = (k + 1) & (cap - 1);
            t[k] = (int32_t)i;
        }
        free(g->st_tab);
        g->st_tab = t;
        g->cap_tab = cap;
    }
    size_t k = set_hash(s) & (g->cap_tab - 1);
    for (; g->st_tab[k] >= 0; k = (k + 1) & (g->cap_tab - 1))
        if (set_equal(&g->st[g->st_tab[k]], s))
            return g->st_tab[k];
    if (grow((void **)&g->st, &g->cap_st, g->n_st + 1, sizeof *g->st) < 0)
        return MX_ENOMEM;
    struct gset *d = &g->st[g->n_st];
    memset(d, 0, sizeof *d);
    if (gset_assign(d, s) < 0) {
        gset_free(d);
        return MX_ENOMEM;
    }
    g->st_tab[k] = (int32_t)g->n_st;
    return (int32_t)g->n_st++;
}

static size_t trans_slot(const struct mx_grammar *g, uint32_t from, uint32_t cp) {
    uint64_t h = ((uint64_t)from << 32 | cp) * 0x9e3779b97f4a7c15ull;
    size_t k = (size_t)(h >> 20) & (g->cap_tr - 1);
    while (g->tr[k].from != UINT32_MAX && (g->tr[k].from != from || g->tr[k].cp != cp))
        k = (k + 1) & (g->cap_tr - 1);
    return k;
}

/* The set after code point cp from interned set `from`: its index, -1 (nothing survives), or
 * MX_ENOMEM / MX_ERANGE (values below -1). */
static int32_t step(struct mx_grammar *g, int32_t from, uint32_t cp) {
    if (2 * (g->n_tr + 1) > g->cap_tr) { /* grow and rehash the edges */
        size_t cap = g->cap_tr ? g->cap_tr * 2 : 1024;
        struct trans *old = g->tr, *t = malloc(cap * sizeof *t);
        if (!t)
            return MX_ENOMEM;
        memset(t, 0xff, cap * sizeof *t);
        size_t old_cap = g->cap_tr;
        g->tr = t;
        g->cap_tr = cap;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].from != UINT32_MAX)
                g->tr[trans_slot(g, old[i].from, old[i].cp)] = old[i];
        free(old);
    }
    size_t k = trans_slot(g, (uint32_t)from, cp);
    if (g->tr[k].from != UINT32_MAX)
        return g->tr[k].to;
    int rc = advance(g, &g->st[from], cp, &g->tmp[0]);
    if (rc < 0)
        return rc;
    int32_t to = -1;
    if (g->tmp[0].n > 0 && (to = intern(g, &g->tmp[0])) < 0)
        return to;
    k = trans_slot(g, (uint32_t)from, cp); /* intern does not touch the edges, but be plain */
    g->tr[k] = (struct trans){(uint32_t)from, cp, to};
    g->n_tr++;
    return to;
}

/* Runs bytes[0..n) from the current state through the memo. Returns 1 (allowed) with the final
 * set's index in *res and the pending UTF-8 state, 0 (refused), MX_ENOMEM or MX_ERANGE (too
 * many parses). */
static int run(struct mx_grammar *g, const char *bytes, size_t n, int32_t *res, uint32_t *pval,
               int *prem) {
    if (g->n_st > MEMO_MAX_SETS || g->n_tr > MEMO_MAX_EDGES)
        memo_flush(g);
    if (g->cur_id < 0 && (g->cur_id = intern(g, &g->cur)) < 0) {
        g->cur_id = -1;
        return MX_ENOMEM;
    }
    int32_t sid = g->cur_id;
    uint32_t val = g->part_val;
    int rem = g->part_rem;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)bytes[i];
        if (rem > 0) {
            if ((b & 0xc0) != 0x80)
                return 0;
            /* the first continuation byte rules out overlong forms (E0 80..9F, F0 80..8F),
             * surrogates (ED A0..BF) and code points past U+10FFFF (F4 90..): text a decoder
             * would show as U+FFFD; val < 0x10 with rem 2 means a 3-byte lead just came */
            if ((rem == 3 && ((val == 0 && b < 0x90) || (val == 4 && b >= 0x90))) ||
                (rem == 2 && val < 0x10 && ((val == 0 && b < 0xa0) || (val == 0xd && b >= 0xa0))))
                return 0;
            val = val << 6 | (b & 0x3f);
            if (--rem > 0)
                continue;
        } else if (b < 0x80) {
            val = b;
        } else if (b >= 0xc2 && b < 0xe0) {
            val = b & 0x1f, rem = 1;
            continue;
        } else if (b >= 0xe0 && b < 0xf0) {
            val = b & 0x0f, rem = 2;
            continue;
        } else if (b >= 0xf0 && b < 0xf5) {
            val = b & 0x07, rem = 3;
            continue;
        } else {
            return 0; /* a stray continuation byte or an impossible lead */
        }
        sid = step(g, sid, val);
        if (sid < -1)
            return sid;
        if (sid < 0)
            return 0;
    }
    if (rem > 0) { /* an incomplete character: some stack must take some completion of it */
        uint32_t lo = val << (6 * rem), hi = lo | ((1u << (6 * rem)) - 1);
        if (rem == 3) /* right after a 4-byte lead: U+10000..U+10FFFF only */
            lo = lo < 0x10000 ? 0x10000 : lo, hi = hi > 0x10ffff ? 0x10ffff : hi;
        else if (rem == 2 && val < 0x10) /* after a 3-byte lead: no overlong, no surrogate */
            lo = lo < 0x800 ? 0x800 : lo, hi = val == 0xd ? 0xd7ff : hi;
        if (lo > hi)
            return 0;
        const struct gset *s = &g->st[sid];
        bool ok = false;
        for (size_t i = 0; i < s->n && !ok; i++)
            ok = s->len[i] > 0 &&
                 class_match_range(&g->el[s->pos[s->start[i] + s->len[i] - 1]], lo, hi);
        if (!ok)
            return 0;
    }
    *res = sid;
    *pval = val;
    *prem = rem;
    return 1;
}

bool mx_grammar_allows(struct mx_grammar *g, const char *bytes, size_t n) {
    int32_t r;
    uint32_t v;
    int rem;
    return run(g, bytes, n, &r, &v, &rem) == 1;
}

int mx_grammar_accept(struct mx_grammar *g, const char *bytes, size_t n) {
    int32_t r;
    uint32_t v;
    int rem;
    int rc = run(g, bytes, n, &r, &v, &rem);
    if (rc <= 0)
        return rc < 0 ? rc : MX_EINVAL;
    if (r != g->cur_id) {
        if (gset_assign(&g->tmp[1], &g->st[r]) < 0)
            return MX_ENOMEM;
        struct gset t = g->cur; /* the copy becomes cur; the old cur becomes scratch */
        g->cur = g->tmp[1];
        g->tmp[1] = t;
        g->cur_id = r;
    }
    g->part_val = v;
    g->part_rem = rem;
    return 0;
}

bool mx_grammar_complete(const struct mx_grammar *g) {
    if (g->part_rem > 0)
        return false;
    for (size_t i = 0; i < g->cur.n; i++)
        if (g->cur.len[i] == 0)
            return true;
    return false;
}

bool mx_grammar_finished(const struct mx_grammar *g) {
    if (g->part_rem > 0)
        return false;
    for (size_t i = 0; i < g->cur.n; i++)
        if (g->cur.len[i] > 0)
            return false;
    return true;
}

size_t mx_grammar_n_stacks(const struct mx_grammar *g) { return g->cur.n; }

void mx_grammar_reset(struct mx_grammar *g) {
    g->cur.n = g->cur.n_pos = 0;
    g->cur_id = -1;
    g->part_val = 0;
    g->part_rem = 0;
    /* the start: a stack holding a reference to root, expanded. The root element sits at the
     * end of the array (see compile). */
    g->work[0] = (uint32_t)(g->n_el - 2);
    if (expand(g, 0, 1, &g->cur) < 0)
        g->cur.n = 0; /* out of memory: nothing allowed, generation ends */
}

void mx_grammar_free(struct mx_grammar *g) {
    if (!g)
        return;
    free(g->el);
    free(g->rule_start);
    gset_free(&g->cur);
    gset_free(&g->tmp[0]);
    gset_free(&g->tmp[1]);
    memo_flush(g);
    free(g->st);
    free(g->st_tab);
    free(g->tr);
    free(g->work);
    for (int32_t i = 0; i < g->n_vocab; i++)
        free(g->tok[i]);
    free(g->tok);
    free(g->tok_len);
    free(g->tok_eog);
    free(g);
}

/* ---- vocabulary ---------------------------------------------------------------------------- */

int mx_grammar_vocab_init(struct mx_grammar *g, int32_t n_vocab) {
    if (n_vocab <= 0 || g->n_vocab)
        return MX_EINVAL;
    g->tok = calloc((size_t)n_vocab, sizeof *g->tok);
    g->tok_len = calloc((size_t)n_vocab, sizeof *g->tok_len);
    g->tok_eog = calloc((size_t)n_vocab, 1);
    if (!g->tok || !g->tok_len || !g->tok_eog) {
        free(g->tok);
        free(g->tok_len);
        free(g->tok_eog);
        g->tok = NULL;
        g->tok_len = NULL;
        g->tok_eog = NULL;
        return MX_ENOMEM;
    }
    g->n_vocab = n_vocab;
    return 0;
}

int mx_grammar_vocab_set(struct mx_grammar *g, int32_t id, const char *bytes, size_t n,
                         bool eog) {
    if (id < 0 || id >= g->n_vocab || n > UINT32_MAX)
        return MX_EINVAL;
    char *p = NULL;
    if (n) {
        if (!(p = malloc(n)))
            return MX_ENOMEM;
        memcpy(p, bytes, n);
    }
    free(g->tok[id]);
    g->tok[id] = p;
    g->tok_len[id] = (uint32_t)n;
    g->tok_eog[id] = eog;
    return 0;
}

bool mx_grammar_token_allowed(struct mx_grammar *g, int32_t id) {
    if (id < 0 || id >= g->n_vocab)
        return false;
    if (g->tok_eog[id])
        return mx_grammar_complete(g);
    return g->tok_len[id] > 0 && mx_grammar_allows(g, g->tok[id], g->tok_len[id]);
}

int mx_grammar_accept_token(struct mx_grammar *g, int32_t id) {
    if (!mx_grammar_token_allowed(g, id))
        return MX_EINVAL;
    if (g->tok_eog[id])
        return 0;
    return mx_grammar_accept(g, g->tok[id], g->tok_len[id]);
}

void mx_grammar_filter(struct mx_grammar *g, struct mx_cand *c) {
    /* which first bytes can start an allowed token: ASCII exactly, lead bytes when some top
     * may take a code point of the lead's length (a cheap reject before any stack work) */
    bool first[256] = {false};
    if (g->part_rem > 0) {
        for (int b = 0x80; b < 0xc0; b++)
            first[b] = true;
    } else {
        for (size_t i = 0; i < g->cur.n; i++) {
            if (g->cur.len[i] == 0)
                continue;
            const struct el *top = &g->el[g->cur.pos[g->cur.start[i] + g->cur.len[i] - 1]];
            const struct el *next;
            for (uint32_t b = 0; b < 0x80; b++)
                if (!first[b] && class_match(top, b, &next))
                    first[b] = true;
            static const uint32_t lo[3] = {0x80, 0x800, 0x10000}, hi[3] = {0x7ff, 0xffff,
                                                                          0x10ffff};
            static const int b0[3] = {0xc2, 0xe0, 0xf0}, b1[3] = {0xe0, 0xf0, 0xf5};
            for (int k = 0; k < 3; k++)
                if (class_match_range(top, lo[k], hi[k]))
                    for (int b = b0[k]; b < b1[k]; b++)
                        first[b] = true;
        }
    }
    bool complete = mx_grammar_complete(g);
    size_t k = 0;
    for (size_t i = 0; i < c->n; i++) {
        int32_t id = c->data[i].id;
        bool ok;
        if (id < 0 || id >= g->n_vocab)
            ok = false;
        else if (g->tok_eog[id])
            ok = complete;
        else
            ok = g->tok_len[id] > 0 && first[(unsigned char)g->tok[id][0]] &&
                 mx_grammar_allows(g, g->tok[id], g->tok_len[id]);
        if (ok)
            c->data[k++] = c->data[i];
    }
    c->n = k;
}

/* ---- the parser ---------------------------------------------------------------------------- */

/* A rule while parsing. */
struct prule {
    struct el *e;          /* elements (alternatives separated by ALT, no END yet) */
    size_t n, cap;
    const char *name;      /* in the source (or the parent's name for generated rules) */
    size_t name_len;
    bool defined;          /* has a definition (generated rules always) */
    size_t ref_at;         /* offset of the first reference, for "undefined rule" */
};

struct parser {
    const char *src, *end; /* the text */
    const char *file;      /* for messages */
    struct prule *r;       /* rules */
    size_t n_r, cap_r;
    struct mx_err *err;
};

/* An error at p: "file:line:col: message". Always returns MX_EFORMAT. */
static int perr(struct parser *P, const char *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr(struct parser *P, const char *p, const char *fmt, ...) {
    int line = 1, col = 1;
    for (const char *q = P->src; q < p && q < P->end; q++) {
        if (*q == '\n')
            line++, col = 1;
        else if (((unsigned char)*q & 0xc0) != 0x80)
            col++;
    }
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mx_err_set(P->err, MX_EFORMAT, "%s:%d:%d: %s", P->file, line, col, msg);
}

static int emit(struct parser *P, size_t rule, enum el_type t, uint32_t v) {
    struct prule *r = &P->r[rule];
    if (grow((void **)&r->e, &r->cap, r->n + 1, sizeof *r->e) < 0)
        return mx_err_set(P->err, MX_ENOMEM, "grammar: out of memory");
    r->e[r->n++] = (struct el){t, v};
    return 0;
}

/* A new rule (name borrowed from the source). Returns its id, or MX_ENOMEM. */
static long new_rule(struct parser *P, const char *name, size_t len) {
    if (grow((void **)&P->r, &P->cap_r, P->n_r + 1, sizeof *P->r) < 0)
        return mx_err_set(P->err, MX_ENOMEM, "grammar: out of memory");
    memset(&P->r[P->n_r], 0, sizeof *P->r);
    P->r[P->n_r].name = name;
    P->r[P->n_r].name_len = len;
    return (long)P->n_r++;
}

/* The id of the rule called name (created undefined when new). */
static long rule_id(struct parser *P, const char *name, size_t len) {
    for (size_t i = 0; i < P->n_r; i++)
        if (P->r[i].ref_at != (size_t)-1 && P->r[i].name_len == len &&
            !memcmp(P->r[i].name, name, len))
            return (long)i;
    long id = new_rule(P, name, len);
    if (id >= 0)
        P->r[id].ref_at = (size_t)(name - P->src);
    return id;
}

static bool word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
}

/* Skips blanks and comments (and newlines when nl). */
static const char *skip_space(struct parser *P, const char *p, bool nl) {
    while (p < P->end) {
        if (*p == ' ' || *p == '\t' || (nl && (*p == '\n' || *p == '\r'))) {
            p++;
        } else if (*p == '#') {
            while (p < P->end && *p != '\n')
                p++;
        } else {
            break;
        }
    }
    return p;
}

/* Reads one code point (escaped or UTF-8) at *pp into *cp. Returns 0 or MX_EFORMAT. */
static int read_char(struct parser *P, const char **pp, uint32_t *cp) {
    const char *p = *pp;
    if (p >= P->end)
        return perr(P, p, "unexpected end of input");
    unsigned char b = (unsigned char)*p;
    if (b == '\\') {
        if (p + 1 >= P->end)
            return perr(P, p, "unexpected end of input after '\\'");
        char c = p[1];
        int nh = c == 'x' ? 2 : c == 'u' ? 4 : c == 'U' ? 8 : 0;
        if (nh) {
            uint32_t v = 0;
            for (int i = 0; i < nh; i++) {
                int h = p + 2 + i < P->end ? mx_hex_digit((unsigned char)p[2 + i]) : -1;
                if (h < 0)
                    return perr(P, p, "escape '\\%c' needs %d hex digits", c, nh);
                v = v << 4 | (uint32_t)h;
            }
            if (v > 0x10ffff)
                return perr(P, p, "code point U+%X is beyond U+10FFFF", (unsigned)v);
            *cp = v;
            *pp = p + 2 + nh;
            return 0;
        }
        switch (c) {
        case 'n': *cp = '\n'; break;
        case 'r': *cp = '\r'; break;
        case 't': *cp = '\t'; break;
        case '\\': case '"': case '[': case ']': case '-': case '^': case '\'': case '/':
            *cp = (uint32_t)c;
            break;
        default:
            return perr(P, p, "unknown escape '\\%c'", c);
        }
        *pp = p + 2;
        return 0;
    }
    int n = b < 0x80 ? 1 : (b >= 0xc2 && b < 0xe0) ? 2 : (b >= 0xe0 && b < 0xf0) ? 3
            : (b >= 0xf0 && b < 0xf5) ? 4 : 0;
    if (n == 0 || p + n > P->end)
        return perr(P, p, "invalid UTF-8");
    uint32_t v = n == 1 ? b : n == 2 ? b & 0x1fu : n == 3 ? b & 0x0fu : b & 0x07u;
    for (int i = 1; i < n; i++) {
        if (((unsigned char)p[i] & 0xc0) != 0x80)
            return perr(P, p, "invalid UTF-8");
        v = v << 6 | ((unsigned char)p[i] & 0x3f);
    }
    *cp = v;
    *pp = p + n;
    return 0;
}

static int parse_alternates(struct parser *P, const char **pp, size_t rule, bool nested);

/* Parses a whole number at *pp. */
static int parse_int(struct parser *P, const char **pp, unsigned long *v) {
    const char *p = *pp;
    if (p >= P->end || *p < '0' || *p > '9')
        return perr(P, p, "expected a number");
    unsigned long x = 0;
    while (p < P->end && *p >= '0' && *p <= '9') {
        x = x * 10 + (unsigned long)(*p - '0');
        if (x > 100000)
            return perr(P, *pp, "repetition count too large");
        p++;
    }
    *v = x;
    *pp = p;
    return 0;
}

/* Replaces the last symbol (rule elements [start, n)) by min..max copies (max ULONG_MAX: no
 * bound), with generated rules for the optional part. */
static int repeat(struct parser *P, size_t rule, size_t start, unsigned long min,
                  unsigned long max) {
    size_t n_sym = P->r[rule].n - start;
    struct el *sym = malloc(n_sym * sizeof *sym);
    if (!sym)
        return mx_err_set(P->err, MX_ENOMEM, "grammar: out of memory");
    memcpy(sym, P->r[rule].e + start, n_sym * sizeof *sym);
    P->r[rule].n = start;
    int rc = 0;
    for (unsigned long i = 0; i < min && rc == 0; i++)
        for (size_t j = 0; j < n_sym && rc == 0; j++)
            rc = emit(P, rule, sym[j].type, sym[j].val);
    const char *name = P->r[rule].name;
    size_t name_len = P->r[rule].name_len;
    if (rc == 0 && max == (unsigned long)-1) { /* R ::= sym R | (empty) */
        long r = new_rule(P, name, name_len);
        rc = r < 0 ? (int)r : 0;
        if (rc == 0) {
            P->r[r].defined = true;
            P->r[r].ref_at = (size_t)-1;
            for (size_t j = 0; j < n_sym && rc == 0; j++)
                rc = emit(P, (size_t)r, sym[j].type, sym[j].val);
            if (rc == 0)
                rc = emit(P, (size_t)r, EL_REF, (uint32_t)r);
            if (rc == 0)
                rc = emit(P, (size_t)r, EL_ALT, 0);
            if (rc == 0)
                rc = emit(P, rule, EL_REF, (uint32_t)r);
        }
    } else if (rc == 0 && max > min) { /* R1 ::= sym | ; Rk ::= sym R(k-1) | */
        long last = -1;
        for (unsigned long k = 0; k < max - min && rc == 0; k++) {
            long r = new_rule(P, name, name_len);
            if (r < 0) {
                rc = (int)r;
                break;
            }
            P->r[r].defined = true;
            P->r[r].ref_at = (size_t)-1;
            for (size_t j = 0; j < n_sym && rc == 0; j++)
                rc = emit(P, (size_t)r, sym[j].type, sym[j].val);
            if (rc == 0 && last >= 0)
                rc = emit(P, (size_t)r, EL_REF, (uint32_t)last);
            if (rc == 0)
                rc = emit(P, (size_t)r, EL_ALT, 0);
            last = r;
        }
        if (rc == 0)
            rc = emit(P, rule, EL_REF, (uint32_t)last);
    }
    free(sym);
    return rc;
}

/* Parses a sequence of symbols into rule (up to '|', ')', a newline outside groups, or the
 * end). */
static int parse_sequence(struct parser *P, const char **pp, size_t rule, bool nested) {
    const char *p = *pp;
    size_t last_start = (size_t)-1; /* where the last symbol's elements start */
    int rc = 0;
    while (p < P->end && rc == 0) {
        const char *sym_at = p;
        size_t here = P->r[rule].n;
        if (*p == '"') {
            p++;
            last_start = here;
            while (p < P->end && *p != '"' && rc == 0) {
                if (*p == '\n')
                    return perr(P, p, "unterminated string literal");
                uint32_t cp;
                if ((rc = read_char(P, &p, &cp)) == 0)
                    rc = emit(P, rule, EL_CHAR, cp);
            }
            if (rc)
                return rc;
            if (p >= P->end)
                return perr(P, sym_at, "unterminated string literal");
            p++;
        } else if (*p == '[') {
            p++;
            last_start = here;
            enum el_type first = EL_CHAR;
            if (p < P->end && *p == '^') {
                first = EL_CHAR_NOT;
                p++;
            }
            bool any = false;
            while (p < P->end && *p != ']' && rc == 0) {
                if (*p == '\n')
                    return perr(P, p, "unterminated character class");
                uint32_t cp;
                if ((rc = read_char(P, &p, &cp)) != 0)
                    return rc;
                rc = emit(P, rule, any ? EL_CHAR_ALT : first, cp);
                any = true;
                if (rc == 0 && p + 1 < P->end && *p == '-' && p[1] != ']') {
                    const char *at = p++;
                    uint32_t hi;
                    if ((rc = read_char(P, &p, &hi)) != 0)
                        return rc;
                    if (hi < cp)
                        return perr(P, at, "range end U+%04X before its start U+%04X",
                                    (unsigned)hi, (unsigned)cp);
                    rc = emit(P, rule, EL_RNG_UPPER, hi);
                }
            }
            if (rc)
                return rc;
            if (p >= P->end)
                return perr(P, sym_at, "unterminated character class");
            if (!any)
                return perr(P, sym_at, "empty character class");
            p++;
        } else if (word_char(*p)) {
            const char *q = p;
            while (q < P->end && word_char(*q))
                q++;
            const char *after = skip_space(P, q, true);
            if (after + 2 < P->end && !memcmp(after, "::=", 3))
                break; /* the next rule's head: this sequence is over */
            long id = rule_id(P, p, (size_t)(q - p));
            if (id < 0)
                return (int)id;
            last_start = here;
            rc = emit(P, rule, EL_REF, (uint32_t)id);
            p = q;
        } else if (*p == '(') {
            p = skip_space(P, p + 1, true);
            long id = new_rule(P, P->r[rule].name, P->r[rule].name_len);
            if (id < 0)
                return (int)id;
            P->r[id].defined = true;
            P->r[id].ref_at = (size_t)-1;
            if ((rc = parse_alternates(P, &p, (size_t)id, true)) != 0)
                return rc;
            if (p >= P->end || *p != ')')
                return perr(P, p, "expected ')' to close the group at %d", (int)(sym_at - P->src));
            p++;
            last_start = here;
            rc = emit(P, rule, EL_REF, (uint32_t)id);
        } else if (*p == '.') {
            p++;
            last_start = here;
            rc = emit(P, rule, EL_ANY, 0);
        } else if (*p == '*' || *p == '+' || *p == '?' || *p == '{') {
            if (last_start == (size_t)-1)
                return perr(P, p, "'%c' with nothing before it", *p);
            unsigned long min = 0, max = (unsigned long)-1;
            if (*p == '+')
                min = 1;
            else if (*p == '?')
                max = 1;
            if (*p == '{') {
                p = skip_space(P, p + 1, nested);
                if ((rc = parse_int(P, &p, &min)) != 0)
                    return rc;
                p = skip_space(P, p, nested);
                max = min;
                if (p < P->end && *p == ',') {
                    p = skip_space(P, p + 1, nested);
                    max = (unsigned long)-1;
                    if (p < P->end && *p >= '0' && *p <= '9') {
                        if ((rc = parse_int(P, &p, &max)) != 0)
                            return rc;
                        p = skip_space(P, p, nested);
                    }
                }
                if (p >= P->end || *p != '}')
                    return perr(P, p, "expected '}' to close the repetition");
                if (max < min)
                    return perr(P, sym_at, "repetition {%lu,%lu}: the maximum is below the "
                                "minimum", min, max);
            }
            p++;
            rc = repeat(P, rule, last_start, min, max);
            last_start = (size_t)-1;
        } else {
            break;
        }
        p = skip_space(P, p, nested);
    }
    *pp = p;
    return rc;
}

static int parse_alternates(struct parser *P, const char **pp, size_t rule, bool nested) {
    int rc = parse_sequence(P, pp, rule, nested);
    while (rc == 0 && *pp < P->end && **pp == '|') {
        if ((rc = emit(P, rule, EL_ALT, 0)) != 0)
            break;
        *pp = skip_space(P, *pp + 1, true);
        rc = parse_sequence(P, pp, rule, nested);
    }
    return rc;
}

/* nullable[r]: rule r can match the empty string. */
static void find_nullable(const struct parser *P, bool *nullable) {
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t r = 0; r < P->n_r; r++) {
            if (nullable[r])
                continue;
            const struct prule *R = &P->r[r];
            bool alt_ok = true; /* the current alternative so far matches empty */
            for (size_t i = 0; i <= R->n; i++) {
                if (i == R->n || R->e[i].type == EL_ALT) {
                    if (alt_ok) {
                        nullable[r] = changed = true;
                        break;
                    }
                    alt_ok = true;
                } else if (R->e[i].type == EL_REF) {
                    alt_ok = alt_ok && nullable[R->e[i].val];
                } else if (R->e[i].type == EL_CHAR || R->e[i].type == EL_CHAR_NOT ||
                           R->e[i].type == EL_ANY) {
                    alt_ok = false;
                }
            }
        }
    }
}

/* True when rule r can reach rule target at its left edge (mark: visited). */
static bool left_reaches(const struct parser *P, const bool *nullable, size_t r, size_t target,
                         uint8_t *mark) {
    if (mark[r])
        return false;
    mark[r] = 1;
    const struct prule *R = &P->r[r];
    bool at_left = true;
    for (size_t i = 0; i < R->n; i++) {
        const struct el *e = &R->e[i];
        if (e->type == EL_ALT) {
            at_left = true;
        } else if (e->type == EL_REF && at_left) {
            if (e->val == target || left_reaches(P, nullable, e->val, target, mark))
                return true;
            at_left = nullable[e->val];
        } else if (e->type == EL_CHAR || e->type == EL_CHAR_NOT || e->type == EL_ANY) {
            at_left = false;
        }
    }
    return false;
}

/* Flattens the parsed rules into g (plus a final "REF root, END" the start state uses). */
static int compile(struct parser *P, long root, struct mx_grammar *g) {
    size_t n = 2;
    for (size_t r = 0; r < P->n_r; r++)
        n += P->r[r].n + 1;
    g->el = malloc(n * sizeof *g->el);
    g->rule_start = malloc(P->n_r * sizeof *g->rule_start);
    if (!g->el || !g->rule_start)
        return mx_err_set(P->err, MX_ENOMEM, "grammar: out of memory");
    size_t k = 0;
    for (size_t r = 0; r < P->n_r; r++) {
        g->rule_start[r] = (uint32_t)k;
        if (P->r[r].n) /* an empty rule has no elements yet (e is NULL) */
            memcpy(g->el + k, P->r[r].e, P->r[r].n * sizeof *g->el);
        k += P->r[r].n;
        g->el[k++] = (struct el){EL_END, 0};
    }
    g->el[k++] = (struct el){EL_REF, (uint32_t)root};
    g->el[k++] = (struct el){EL_END, 0};
    g->n_el = k;
    g->n_rules = P->n_r;
    g->root = (uint32_t)root;
    return 0;
}

int mx_grammar_parse(const char *text, size_t len, const char *name, struct mx_grammar **out,
                     struct mx_err *err) {
    *out = NULL;
    struct parser P = {.src = text, .end = text + len, .file = name ? name : "grammar",
                       .err = err};
    struct mx_grammar *g = NULL;
    bool *nullable = NULL;
    uint8_t *mark = NULL;
    int rc = 0;
    const char *p = skip_space(&P, text, true);
    while (p < P.end && rc == 0) {
        const char *q = p;
        while (q < P.end && word_char(*q))
            q++;
        if (q == p) {
            rc = perr(&P, p, "expected a rule name");
            break;
        }
        long id = -1;
        for (size_t i = 0; i < P.n_r; i++)
            if (P.r[i].ref_at != (size_t)-1 && P.r[i].name_len == (size_t)(q - p) &&
                !memcmp(P.r[i].name, p, (size_t)(q - p)))
                id = (long)i;
        if (id >= 0 && P.r[id].defined) {
            rc = perr(&P, p, "rule '%.*s' defined twice", (int)(q - p), p);
            break;
        }
        if (id < 0 && (id = new_rule(&P, p, (size_t)(q - p))) < 0) {
            rc = (int)id;
            break;
        }
        P.r[id].defined = true;
        p = skip_space(&P, q, false);
        if (P.end - p < 3 || memcmp(p, "::=", 3)) {
            rc = perr(&P, p, "expected '::=' after the rule name");
            break;
        }
        p = skip_space(&P, p + 3, true);
        if ((rc = parse_alternates(&P, &p, (size_t)id, false)) != 0)
            break;
        if (p < P.end && *p == '\r')
            p++;
        if (p < P.end && *p != '\n' && !word_char(*p)) {
            rc = perr(&P, p, "unexpected '%c'", *p);
            break;
        }
        p = skip_space(&P, p, true);
    }
    if (rc)
        goto done;
    long root = -1;
    for (size_t i = 0; i < P.n_r; i++) {
        if (!P.r[i].defined) {
            rc = perr(&P, P.src + P.r[i].ref_at, "undefined rule '%.*s'",
                      (int)P.r[i].name_len, P.r[i].name);
            goto done;
        }
        if (P.r[i].ref_at != (size_t)-1 && P.r[i].name_len == 4 &&
            !memcmp(P.r[i].name, "root", 4))
            root = (long)i;
    }
    if (root < 0) {
        rc = perr(&P, P.end, "no 'root' rule");
        goto done;
    }
    nullable = calloc(P.n_r, sizeof *nullable);
    mark = malloc(P.n_r);
    if (!nullable || !mark) {
        rc = mx_err_set(err, MX_ENOMEM, "grammar: out of memory");
        goto done;
    }
    find_nullable(&P, nullable);
    for (size_t r = 0; r < P.n_r; r++) {
        memset(mark, 0, P.n_r);
        if (left_reaches(&P, nullable, r, r, mark)) {
            rc = perr(&P, P.r[r].name, "rule '%.*s' is left-recursive (it can reach itself "
                      "before matching any character)", (int)P.r[r].name_len, P.r[r].name);
            goto done;
        }
    }
    g = calloc(1, sizeof *g);
    if (!g) {
        rc = mx_err_set(err, MX_ENOMEM, "grammar: out of memory");
        goto done;
    }
    if ((rc = compile(&P, root, g)) != 0)
        goto done;
    if (work_reserve(g, 64) < 0) {
        rc = mx_err_set(err, MX_ENOMEM, "grammar: out of memory");
        goto done;
    }
    mx_grammar_reset(g);
    *out = g;
    g = NULL;
done:
    mx_grammar_free(g);
    free(nullable);
    free(mark);
    for (size_t i = 0; i < P.n_r; i++)
        free(P.r[i].e);
    free(P.r);
    return rc;
}
