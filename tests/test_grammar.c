/* test_grammar.c - the GBNF grammar engine (core/llm/grammar.h) and its sampler stage: the
 * parser on every construct and its errors with positions; acceptance of strings (nested rules,
 * bounded repetitions, classes and negation, Unicode, escapes, tokens spanning several symbols,
 * UTF-8 characters split across tokens, end of generation only when complete); a property test
 * against an independent oracle (random small grammars, written out as GBNF, matched by a plain
 * recursive set-of-positions matcher over the same syntax tree: the engine accepts exactly the
 * oracle's strings up to length 4, and every string sampled under the grammar with random logits
 * over a small vocabulary is one the oracle accepts); and the cost per token on the 32K llama2
 * vocabulary from ../shared (printed; skipped when ../shared is absent). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "core/format/gguf.h"
#include "core/llm/grammar.h"
#include "core/llm/sampler.h"
#include "core/text/tokenizer.h"
#include "tests/mx_test.h"

/* Parses src or fails the test. */
static struct mx_grammar *parse_ok(const char *src) {
    struct mx_grammar *g = NULL;
    struct mx_err e = {0};
    int rc = mx_grammar_parse(src, strlen(src), "t.gbnf", &g, &e);
    if (rc != 0)
        fail_msg("parse failed: %s\n--- grammar:\n%s", e.msg, src);
    return g;
}

/* 1 when the whole of s is a complete sentence of the grammar src (fed in one piece). */
static int accepts(const char *src, const char *s) {
    struct mx_grammar *g = parse_ok(src);
    int ok = mx_grammar_accept(g, s, strlen(s)) == 0 && mx_grammar_complete(g);
    mx_grammar_free(g);
    return ok;
}

/* 1 when s is a prefix of some sentence (the grammar still alive after it). */
static int prefix_ok(const char *src, const char *s) {
    struct mx_grammar *g = parse_ok(src);
    int ok = mx_grammar_allows(g, s, strlen(s));
    mx_grammar_free(g);
    return ok;
}

/* The parse error message for src (the test fails when it parses). */
static void parse_err(const char *src, const char *want) {
    struct mx_grammar *g = NULL;
    struct mx_err e = {0};
    int rc = mx_grammar_parse(src, strlen(src), "t.gbnf", &g, &e);
    if (rc != MX_EFORMAT || g)
        fail_msg("expected MX_EFORMAT for:\n%s\ngot %d", src, rc);
    if (!strstr(e.msg, want))
        fail_msg("error '%s' lacks '%s'", e.msg, want);
}

static void test_parse_constructs(void **state) {
    (void)state;
    const char *g =
        "# a comment line\n"
        "root ::= greeting (\" \" name)? punct{1,3} tail* # comment after a rule\n"
        "greeting ::= \"hi\" | \"hello\" | [Hh] \"ey\"\n"
        "name ::= [A-Z] [a-z]+\n"
        "punct ::= [!?.]\n"
        "tail ::= (\n"
        "    \"x\" |\n"
        "    \"yy\"\n"
        "  )\n";
    assert_true(accepts(g, "hi!"));
    assert_true(accepts(g, "hello Bob?!."));
    assert_true(accepts(g, "Hey Al!xyyx"));
    assert_false(accepts(g, "hello bob!"));   /* lower-case name */
    assert_false(accepts(g, "hi!!!!"));       /* four punctuation marks */
    assert_false(accepts(g, "hi"));           /* at least one */
    assert_true(prefix_ok(g, "hello B"));
    assert_false(prefix_ok(g, "hello 7"));
    /* {m}, {m,}, {0,n}, *, +, ? and the any-char dot */
    assert_true(accepts("root ::= \"a\"{3}", "aaa"));
    assert_false(accepts("root ::= \"a\"{3}", "aa"));
    assert_false(accepts("root ::= \"a\"{3}", "aaaa"));
    assert_true(accepts("root ::= \"ab\"{2,}", "ababab"));
    assert_false(accepts("root ::= \"ab\"{2,}", "ab"));
    assert_true(accepts("root ::= [0-9]{0,2} \"x\"", "x"));
    assert_true(accepts("root ::= [0-9]{0,2} \"x\"", "42x"));
    assert_false(accepts("root ::= [0-9]{0,2} \"x\"", "123x"));
    assert_true(accepts("root ::= [0-9]{ 1 , 2 }", "12"));
    assert_true(accepts("root ::= . . \"!\"", "\xe2\x82\xac" "a!"));
    assert_true(accepts("root ::= \"\"", ""));
    assert_true(accepts("root ::= \"a\" | ", ""));
    /* a rule used before its definition, recursion on the right */
    const char *list = "root ::= \"[\" items? \"]\"\nitems ::= item (\",\" items)?\n"
                       "item ::= \"yes\" | \"no\"\n";
    assert_true(accepts(list, "[]"));
    assert_true(accepts(list, "[yes,no,no]"));
    assert_false(accepts(list, "[yes,]"));
    assert_false(accepts(list, "[yes no]"));
}

static void test_parse_escapes_unicode(void **state) {
    (void)state;
    assert_true(accepts("root ::= \"a\\nb\\tc\\\"d\\\\e\\r\"", "a\nb\tc\"d\\e\r"));
    assert_true(accepts("root ::= \"\\x41\\u00e9\\U0001F600\"", "A\xc3\xa9\xf0\x9f\x98\x80"));
    assert_true(accepts("root ::= [\\x30-\\x39]+", "0189"));
    assert_true(accepts("root ::= [\\]\\[\\-]+", "]-["));
    /* literal UTF-8 in strings and classes, ranges over code points */
    assert_true(accepts("root ::= \"é\" [α-ω]+", "é\xce\xb1\xcf\x89"));
    assert_false(accepts("root ::= \"é\" [α-ω]+", "éA"));
    /* negation: anything but */
    assert_true(accepts("root ::= [^\"\\\\]+", "ab€"));
    assert_false(accepts("root ::= [^\"\\\\]+", "a\"b"));
    assert_true(accepts("root ::= [^a-c]", "d"));
    assert_false(accepts("root ::= [^a-c]", "b"));
    assert_true(accepts("root ::= [^a-c]", "\xf0\x9f\x98\x80"));
    /* punctuation as llama.cpp's english.gbnf writes it: ",-." is a range, "\\\]" two escapes;
     * names with dashes, a group glued to a name */
    const char *punct = "root ::= en-char+\nen-char ::= [!\"#$%&'()*+,-./:;<=>?@[\\\\\\]^_`{|}~]\n";
    assert_true(accepts(punct, "-]\\[~!,."));
    assert_false(accepts(punct, "a"));
    assert_true(accepts("root ::= x(\"a\"|\"b\")\nx ::= \"x\"", "xb"));
    /* CRLF line ends */
    assert_true(accepts("root ::= a\r\na ::= \"x\"\r\n", "x"));
}

static void test_parse_errors(void **state) {
    (void)state;
    parse_err("root ::= \"abc", "t.gbnf:1:10: unterminated string literal");
    parse_err("root ::= [abc", "t.gbnf:1:10: unterminated character class");
    parse_err("root ::= foo\n", "t.gbnf:1:10: undefined rule 'foo'");
    parse_err("a ::= \"x\"\n", "no 'root' rule");
    parse_err("root ::= \"x\"\n\nroot ::= \"y\"\n", "t.gbnf:3:1: rule 'root' defined twice");
    parse_err("root ::= \"\\q\"", "t.gbnf:1:11: unknown escape '\\q'");
    parse_err("root ::= \"\\x4\"", "t.gbnf:1:11: escape '\\x' needs 2 hex digits");
    parse_err("root ::= * \"a\"", "t.gbnf:1:10: '*' with nothing before it");
    parse_err("root ::= \"a\"{3,2}", "t.gbnf:1:13: repetition {3,2}");
    parse_err("root ::= \"a\"{2", "t.gbnf:1:15: expected '}'");
    parse_err("root ::= (\"a\" | \"b\"\n", "expected ')'");
    parse_err("root ::= x\nx ::= x \"a\" | \"b\"\n", "rule 'x' is left-recursive");
    parse_err("root ::= \"a\" )\n", "t.gbnf:1:14: unexpected ')'");
    parse_err("root = \"a\"\n", "t.gbnf:1:6: expected '::='");
    parse_err("root ::= []\n", "t.gbnf:1:10: empty character class");
    parse_err("root ::= [z-a]\n", "t.gbnf:1:12: range end");
    parse_err("root ::= \"\xff\"\n", "t.gbnf:1:11: invalid UTF-8");
    /* the column counts characters, not bytes */
    parse_err("root ::= \"é\" foo\n", "t.gbnf:1:14: undefined rule 'foo'");
}

/* A grammar whose parses double with every character ends with MX_ERANGE at 4096 parses, not
 * by exhausting the machine. */
static void test_ambiguity_cap(void **state) {
    (void)state;
    struct mx_grammar *g = parse_ok("root ::= s\ns ::= \"a\" s \"x\" | \"a\" s \"y\" | "
                                    "\"\"\n");
    int rc = 0, i;
    for (i = 0; i < 30 && rc == 0; i++)
        rc = mx_grammar_accept(g, "a", 1);
    assert_int_equal(rc, MX_ERANGE);
    assert_true(i >= 9 && i <= 14);
    assert_true(mx_grammar_n_stacks(g) <= 4096);
    assert_false(mx_grammar_allows(g, "a", 1));
    assert_true(mx_grammar_accept(g, "x", 1) == 0); /* the state before the refusal goes on */
    mx_grammar_free(g);
}

/* A small vocabulary for token tests: id i has text voc[i]; the last id is EOS. */
static const char *const voc[] = {"{", "}", "\"", "a", "ab", "\":", "\"a\":1}", "1", "\xc3",
                                  "\xa9", "\xc3\xa9", " ", "x", ""};
#define N_VOC ((int32_t)(sizeof voc / sizeof voc[0]))
#define EOS (N_VOC - 1)

static struct mx_grammar *with_vocab(const char *src) {
    struct mx_grammar *g = parse_ok(src);
    assert_int_equal(mx_grammar_vocab_init(g, N_VOC), 0);
    for (int32_t i = 0; i < N_VOC; i++)
        assert_int_equal(mx_grammar_vocab_set(g, i, voc[i], strlen(voc[i]), i == EOS), 0);
    return g;
}

static void test_tokens(void **state) {
    (void)state;
    const char *obj = "root ::= \"{\" (key \":\" val)? \"}\"\nkey ::= \"\\\"\" [a-zé]+ \"\\\"\"\n"
                      "val ::= [0-9]+\n";
    struct mx_grammar *g = with_vocab(obj);
    assert_true(mx_grammar_token_allowed(g, 0));   /* { */
    assert_false(mx_grammar_token_allowed(g, 1));  /* } too early */
    assert_false(mx_grammar_token_allowed(g, EOS));
    assert_int_equal(mx_grammar_accept_token(g, 0), 0);
    /* a token spanning several symbols: "a":1} closes the key, the colon, the value, the object */
    assert_true(mx_grammar_token_allowed(g, 6));
    assert_true(mx_grammar_token_allowed(g, 1));
    assert_false(mx_grammar_token_allowed(g, 3));
    assert_int_equal(mx_grammar_accept_token(g, 2), 0);
    /* é as two byte tokens: the lead byte is allowed (some completion fits), then the tail */
    assert_true(mx_grammar_token_allowed(g, 8));
    assert_false(mx_grammar_token_allowed(g, 9)); /* a stray continuation byte */
    assert_int_equal(mx_grammar_accept_token(g, 8), 0);
    assert_false(mx_grammar_token_allowed(g, 3));  /* 'a' cannot follow a pending lead byte */
    assert_false(mx_grammar_token_allowed(g, EOS));
    assert_true(mx_grammar_token_allowed(g, 9));
    assert_int_equal(mx_grammar_accept_token(g, 9), 0);
    assert_int_equal(mx_grammar_accept_token(g, 4), 0);  /* ab */
    assert_int_equal(mx_grammar_accept_token(g, 5), 0);  /* ": */
    assert_int_equal(mx_grammar_accept_token(g, 12), MX_EINVAL); /* x is no digit */
    assert_int_equal(mx_grammar_accept_token(g, 7), 0);
    assert_false(mx_grammar_token_allowed(g, EOS));
    assert_int_equal(mx_grammar_accept_token(g, 1), 0);
    assert_true(mx_grammar_complete(g));
    assert_true(mx_grammar_finished(g));
    assert_true(mx_grammar_token_allowed(g, EOS));
    assert_false(mx_grammar_token_allowed(g, 0));
    /* the empty token is never allowed; reset goes back to the start */
    mx_grammar_reset(g);
    assert_true(mx_grammar_token_allowed(g, 0));
    assert_int_equal(mx_grammar_vocab_set(g, 0, "", 0, false), 0);
    assert_false(mx_grammar_token_allowed(g, 0));
    /* a lead byte whose completions the class cannot take: [a-z] after { " */
    struct mx_grammar *h = with_vocab("root ::= \"{\\\"\" [a-z]+");
    assert_int_equal(mx_grammar_accept_token(h, 0), 0);
    assert_int_equal(mx_grammar_accept_token(h, 2), 0);
    assert_false(mx_grammar_token_allowed(h, 8));
    assert_true(mx_grammar_token_allowed(h, 4));
    /* the filter keeps exactly the allowed candidates */
    struct mx_token_data d[N_VOC];
    for (int32_t i = 0; i < N_VOC; i++)
        d[i] = (struct mx_token_data){.id = i, .logit = (float)i};
    struct mx_cand c = {d, (size_t)N_VOC, 0};
    mx_grammar_filter(h, &c);
    for (size_t i = 0; i < c.n; i++)
        assert_true(mx_grammar_token_allowed(h, c.data[i].id));
    assert_int_equal(c.n, 3); /* a, ab, x */
    mx_grammar_free(h);
    mx_grammar_free(g);
}

/* The sampler under a grammar: picks only allowed tokens, EOS only at the end, and reports
 * MX_ENOENT when nothing fits. */
static void test_sampler_stage(void **state) {
    (void)state;
    struct mx_sampler_params p;
    mx_sampler_params_default(&p);
    p.temp = 1.0f;
    p.seed = 3;
    struct mx_sampler *s;
    assert_int_equal(mx_sampler_new_params(N_VOC, &p, &s, NULL), 0);
    mx_sampler_set_grammar(s, with_vocab("root ::= \"{\" \"a\"{2} \"}\""));
    float logits[N_VOC];
    for (int32_t i = 0; i < N_VOC; i++)
        logits[i] = i == 12 ? 10.0f : 0.0f; /* the model loves "x" */
    char text[64] = "";
    for (int step = 0; step < 10; step++) {
        int32_t id;
        assert_int_equal(mx_sampler_sample(s, logits, &id), 0);
        if (id == EOS)
            break;
        strcat(text, voc[id]);
        assert_int_equal(mx_sampler_accept(s, id), 0);
    }
    assert_string_equal(text, "{aa}");
    struct mx_sampler_grammar_stats gs;
    mx_sampler_grammar_stats(s, &gs);
    assert_int_equal(gs.n_sample, 5);
    assert_true(gs.n_refused >= 1);
    /* a grammar the vocabulary cannot spell */
    mx_sampler_set_grammar(s, with_vocab("root ::= \"q\""));
    int32_t id;
    assert_int_equal(mx_sampler_sample(s, logits, &id), MX_ENOENT);
    mx_sampler_free(s);
}

/* ---- the property test: random grammars against an independent oracle ---------------------- */

enum nk { N_LIT, N_CLASS, N_ANY, N_REF, N_GROUP };

#define MAXC 8

/* A syntax-tree node: a literal, class, dot, reference or group, with a repetition. */
struct node {
    enum nk kind;
    uint32_t cp[MAXC];  /* N_LIT: code points; N_CLASS: members */
    int n_cp;
    bool neg;           /* N_CLASS: negated */
    int ref;            /* N_REF: rule index */
    int group;          /* N_GROUP: index into the groups (an alternatives list) */
    int min, max;       /* repetition; max -1: unbounded */
};

#define MAXN 4   /* nodes per sequence */
#define MAXA 3   /* alternatives per rule or group */
#define MAXR 3   /* rules */
#define MAXG 16  /* groups */

struct seq { struct node n[MAXN]; int len; };
struct alts { struct seq s[MAXA]; int n; };
struct tree { struct alts rule[MAXR]; int n_rule; struct alts grp[MAXG]; int n_grp; };

static const uint32_t alphabet[] = {'a', 'b', 'c', 0xe9};
#define N_ALPHA 4

static void put_cp(char **o, uint32_t cp) {
    if (cp < 0x80) {
        *(*o)++ = (char)cp;
    } else {
        *(*o)++ = (char)(0xc0 | cp >> 6);
        *(*o)++ = (char)(0x80 | (cp & 0x3f));
    }
}

static void gen_alts(struct tree *t, struct alts *a, int rule, int depth, uint64_t *rs);

/* A random node of rule `rule`; refs go to later rules, or to the rule itself when something
 * has been matched before in the sequence (no left recursion). */
static void gen_node(struct tree *t, struct node *n, int rule, int pos, int depth, uint64_t *rs) {
    memset(n, 0, sizeof *n);
    int k = (int)(mx_test_rand(rs) % 10);
    if (k < 4) {
        n->kind = N_LIT;
        n->n_cp = 1 + (int)(mx_test_rand(rs) % 2);
        for (int i = 0; i < n->n_cp; i++)
            n->cp[i] = alphabet[mx_test_rand(rs) % N_ALPHA];
    } else if (k < 6) {
        n->kind = N_CLASS;
        n->neg = mx_test_rand(rs) % 3 == 0;
        n->n_cp = 1 + (int)(mx_test_rand(rs) % 2);
        for (int i = 0; i < n->n_cp; i++)
            n->cp[i] = alphabet[mx_test_rand(rs) % N_ALPHA];
    } else if (k < 7) {
        n->kind = N_ANY;
    } else if (k < 9 && (rule + 1 < t->n_rule || pos > 0)) {
        n->kind = N_REF;
        if (rule + 1 < t->n_rule && (pos == 0 || mx_test_rand(rs) % 2))
            n->ref = rule + 1 + (int)(mx_test_rand(rs) % (uint64_t)(t->n_rule - rule - 1));
        else
            n->ref = rule; /* self, after something was matched... */
        if (n->ref == rule && pos == 0)
            n->ref = rule + 1;
    } else if (depth < 2 && t->n_grp < MAXG) {
        n->kind = N_GROUP;
        n->group = t->n_grp++;
        gen_alts(t, &t->grp[n->group], rule, depth + 1, rs);
    } else {
        n->kind = N_LIT;
        n->n_cp = 1;
        n->cp[0] = 'a';
    }
    n->min = n->max = 1;
    int r = (int)(mx_test_rand(rs) % 8);
    /* repetitions only of nodes that cannot match empty and are no self-reference (a nullable
     * repeated body is left-recursive in the generated rules, as in llama.cpp) */
    bool safe = n->kind == N_LIT || n->kind == N_CLASS || n->kind == N_ANY;
    if (safe && r == 0)
        n->min = 0, n->max = -1;
    else if (safe && r == 1)
        n->min = 1, n->max = -1;
    else if (r == 2)
        n->min = 0, n->max = 1;
    else if (safe && r == 3) {
        n->min = (int)(mx_test_rand(rs) % 3);
        n->max = n->min + (int)(mx_test_rand(rs) % 3);
    }
    (void)pos;
}

static void gen_alts(struct tree *t, struct alts *a, int rule, int depth, uint64_t *rs) {
    a->n = 1 + (int)(mx_test_rand(rs) % MAXA);
    for (int i = 0; i < a->n; i++) {
        struct seq *s = &a->s[i];
        s->len = (int)(mx_test_rand(rs) % (MAXN + 1));
        if (i == 0 && s->len == 0)
            s->len = 1;
        for (int j = 0; j < s->len; j++)
            gen_node(t, &s->n[j], rule, j, depth, rs);
        /* a self-reference only at the end (right recursion: stacks stay bounded; nested
         * recursion over ambiguous classes grows the stack set exponentially, as in llama.cpp)
         * and with a non-nullable node before it: node 0 becomes a literal */
        for (int j = 0; j + 1 < s->len; j++)
            if (s->n[j].kind == N_REF && s->n[j].ref == rule) {
                s->n[j].kind = N_LIT;
                s->n[j].n_cp = 1;
                s->n[j].cp[0] = 'c';
            }
        for (int j = 1; j < s->len; j++)
            if (s->n[j].kind == N_REF && s->n[j].ref == rule) {
                s->n[0].kind = N_LIT;
                s->n[0].n_cp = 1;
                s->n[0].cp[0] = 'b';
                s->n[0].min = s->n[0].max = 1;
            }
    }
}

static void write_alts(const struct tree *t, const struct alts *a, char **o);

static void write_node(const struct tree *t, const struct node *n, char **o) {
    switch (n->kind) {
    case N_LIT:
        *(*o)++ = '"';
        for (int i = 0; i < n->n_cp; i++)
            if (n->cp[i] == 0xe9)
                *o += sprintf(*o, "\\u00e9");
            else
                put_cp(o, n->cp[i]);
        *(*o)++ = '"';
        break;
    case N_CLASS:
        *(*o)++ = '[';
        if (n->neg)
            *(*o)++ = '^';
        for (int i = 0; i < n->n_cp; i++)
            put_cp(o, n->cp[i]);
        *(*o)++ = ']';
        break;
    case N_ANY: *(*o)++ = '.'; break;
    case N_REF: *o += sprintf(*o, "r%d", n->ref); break;
    case N_GROUP:
        *(*o)++ = '(';
        write_alts(t, &t->grp[n->group], o);
        *(*o)++ = ')';
        break;
    }
    if (n->min == 0 && n->max == -1)
        *(*o)++ = '*';
    else if (n->min == 1 && n->max == -1)
        *(*o)++ = '+';
    else if (n->min == 0 && n->max == 1)
        *(*o)++ = '?';
    else if (n->min != 1 || n->max != 1)
        *o += sprintf(*o, "{%d,%d}", n->min, n->max);
    *(*o)++ = ' ';
}

static void write_alts(const struct tree *t, const struct alts *a, char **o) {
    for (int i = 0; i < a->n; i++) {
        if (i)
            *o += sprintf(*o, "| ");
        for (int j = 0; j < a->s[i].len; j++)
            write_node(t, &a->s[i].n[j], o);
    }
}

/* The oracle: the set of end positions (bit i: position i) reachable from the positions in
 * `from` by matching a node / sequence / alternatives over the code points s[0..n). */
typedef uint64_t pos_set;
static pos_set m_alts(const struct tree *t, const struct alts *a, const uint32_t *s, int n,
                      pos_set from);

static pos_set m_once(const struct tree *t, const struct node *x, const uint32_t *s, int n,
                      pos_set from) {
    pos_set out = 0;
    switch (x->kind) {
    case N_LIT:
        for (int p = 0; p <= n; p++)
            if (from >> p & 1) {
                int ok = p + x->n_cp <= n;
                for (int i = 0; ok && i < x->n_cp; i++)
                    ok = s[p + i] == x->cp[i];
                if (ok)
                    out |= (pos_set)1 << (p + x->n_cp);
            }
        return out;
    case N_CLASS:
    case N_ANY:
        for (int p = 0; p < n; p++)
            if (from >> p & 1) {
                bool in = x->kind == N_ANY;
                for (int i = 0; x->kind == N_CLASS && i < x->n_cp; i++)
                    in = in || s[p] == x->cp[i];
                if (x->kind == N_ANY || in != x->neg)
                    out |= (pos_set)1 << (p + 1);
            }
        return out;
    case N_REF: return m_alts(t, &t->rule[x->ref], s, n, from);
    case N_GROUP: return m_alts(t, &t->grp[x->group], s, n, from);
    }
    return 0;
}

static pos_set m_node(const struct tree *t, const struct node *x, const uint32_t *s, int n,
                      pos_set from) {
    pos_set cur = from, out = 0;
    for (int k = 0; k < x->min; k++)
        cur = m_once(t, x, s, n, cur);
    out = cur;
    for (int k = x->min; (x->max < 0 || k < x->max) && cur; k++) {
        cur = m_once(t, x, s, n, cur);
        if ((cur | out) == out && x->max < 0)
            break;
        out |= cur;
    }
    return out;
}

static pos_set m_alts(const struct tree *t, const struct alts *a, const uint32_t *s, int n,
                      pos_set from) {
    pos_set out = 0;
    for (int i = 0; i < a->n; i++) {
        pos_set cur = from;
        for (int j = 0; j < a->s[i].len && cur; j++)
            cur = m_node(t, &a->s[i].n[j], s, n, cur);
        out |= cur;
    }
    return out;
}

static bool oracle(const struct tree *t, const uint32_t *s, int n) {
    return m_alts(t, &t->rule[0], s, n, 1) >> n & 1;
}

/* UTF-8 of code points s[0..n) into buf; returns the length. */
static size_t to_utf8(const uint32_t *s, int n, char *buf) {
    char *o = buf;
    for (int i = 0; i < n; i++)
        put_cp(&o, s[i]);
    return (size_t)(o - buf);
}

/* The property vocabulary: characters, pairs, é split in two bytes, EOS last. */
static const char *const pvoc[] = {"a", "b", "c", "\xc3\xa9", "ab", "ba", "cab", "\xc3", "\xa9",
                                   "a\xc3", "bb", ""};
#define P_VOC ((int32_t)(sizeof pvoc / sizeof pvoc[0]))

/* UTF-8 text back to code points (valid input). */
static int from_utf8(const char *b, size_t len, uint32_t *cp) {
    int n = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)b[i];
        if (c < 0x80) {
            cp[n++] = c;
            i++;
        } else {
            cp[n++] = (uint32_t)(c & 0x1f) << 6 | ((unsigned char)b[i + 1] & 0x3f);
            i += 2;
        }
    }
    return n;
}

static void test_property(void **state) {
    (void)state;
    uint64_t rs = 2024;
    int n_grammars = 0, n_sampled = 0, n_accepted = 0;
    for (int it = 0; it < 200; it++) {
        struct tree t;
        memset(&t, 0, sizeof t);
        t.n_rule = 1 + (int)(mx_test_rand(&rs) % MAXR);
        for (int r = 0; r < t.n_rule; r++)
            gen_alts(&t, &t.rule[r], r, 0, &rs);
        char src[8192], *o = src;
        for (int r = 0; r < t.n_rule; r++) {
            o += r == 0 ? sprintf(o, "root ::= ") : sprintf(o, "r%d ::= ", r);
            write_alts(&t, &t.rule[r], &o);
            *o++ = '\n';
        }
        *o = '\0';
        /* r0 is named root: references to rule 0 print as r0, so define r0 ::= root too */
        o += sprintf(o, "r0 ::= root\n");
        n_grammars++;
        struct mx_grammar *g = parse_ok(src);
        /* exactly the oracle's strings up to length 4 */
        uint32_t s[8];
        char buf[32];
        for (int len = 0; len <= 4; len++) {
            int total = 1;
            for (int i = 0; i < len; i++)
                total *= N_ALPHA;
            for (int k = 0; k < total; k++) {
                for (int i = 0, v = k; i < len; i++, v /= N_ALPHA)
                    s[i] = alphabet[v % N_ALPHA];
                size_t nb = to_utf8(s, len, buf);
                mx_grammar_reset(g);
                bool eng = mx_grammar_accept(g, buf, nb) == 0 && mx_grammar_complete(g);
                bool want = oracle(&t, s, len);
                if (eng != want)
                    fail_msg("grammar:\n%s\nstring '%.*s': engine %d, oracle %d", src, (int)nb,
                             buf, eng, want);
                n_accepted += want;
            }
        }
        /* sampling with random logits: every finished text is a sentence */
        mx_grammar_reset(g);
        assert_int_equal(mx_grammar_vocab_init(g, P_VOC), 0);
        for (int32_t i = 0; i < P_VOC; i++)
            assert_int_equal(mx_grammar_vocab_set(g, i, pvoc[i], strlen(pvoc[i]),
                                                  i == P_VOC - 1), 0);
        struct mx_sampler_params p;
        mx_sampler_params_default(&p);
        p.temp = 1.0f;
        p.top_k = 0;
        p.min_p = 0.0f;
        p.top_p = 1.0f;
        p.seed = (uint64_t)it;
        struct mx_sampler *smp;
        assert_int_equal(mx_sampler_new_params(P_VOC, &p, &smp, NULL), 0);
        mx_sampler_set_grammar(smp, g);
        for (int run = 0; run < 4; run++) {
            mx_sampler_reset(smp);
            char text[256];
            size_t tl = 0;
            bool done = false;
            for (int step = 0; step < 24 && !done; step++) {
                float logits[P_VOC];
                for (int32_t i = 0; i < P_VOC; i++)
                    logits[i] = 3.0f * mx_test_randf(&rs);
                int32_t id;
                if (mx_grammar_finished(g)) {
                    done = true;
                    break;
                }
                int rc = mx_sampler_sample(smp, logits, &id);
                if (rc == MX_ENOENT)
                    break; /* the vocabulary cannot go on (e.g. a pending byte) */
                assert_int_equal(rc, 0);
                if (id == P_VOC - 1) {
                    done = true;
                    break;
                }
                assert_int_equal(mx_sampler_accept(smp, id), 0);
                memcpy(text + tl, pvoc[id], strlen(pvoc[id]));
                tl += strlen(pvoc[id]);
            }
            if (!done)
                continue;
            uint32_t cps[256];
            int n = from_utf8(text, tl, cps);
            if (n >= 63)
                continue; /* beyond the oracle's position set */
            n_sampled++;
            if (!oracle(&t, cps, n))
                fail_msg("grammar:\n%s\nsampled '%.*s' which the oracle refuses", src, (int)tl,
                         text);
        }
        mx_sampler_free(smp);
    }
    printf("property: %d grammars, %d short sentences agreed, %d sampled sentences checked\n",
           n_grammars, n_accepted, n_sampled);
    assert_true(n_sampled > 200);
    assert_true(n_accepted > 500);
}

/* The cost per token on a real 32K vocabulary: a JSON grammar, random logits through the usual
 * chain (top-k 40 etc.), the time in grammar checks per sampled token. */
static void test_cost_llama2(void **state) {
    (void)state;
    const char *shared = mx_test_shared_dir();
    if (!shared)
        mx_test_skip("the llama2 vocabulary cost needs ../shared (set MX_SHARED)");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/llama2-vocab.gguf", shared);
    struct mx_gguf *gg = NULL;
    struct mx_tokenizer *tok = NULL;
    struct mx_err e = {0};
    assert_int_equal(mx_gguf_open(path, &gg, &e), 0);
    assert_int_equal(mx_tokenizer_from_gguf(gg, &tok, &e), 0);
    int32_t nv = mx_tokenizer_n_vocab(tok);
    const char *json =
        "root ::= object\n"
        "value ::= object | array | string | number | (\"true\" | \"false\" | \"null\") ws\n"
        "object ::= \"{\" ws ( string \":\" ws value (\",\" ws string \":\" ws value)* )? \"}\" "
        "ws\n"
        "array ::= \"[\" ws ( value (\",\" ws value)* )? \"]\" ws\n"
        "string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ([\"\\\\bfnrt] | \"u\" "
        "[0-9a-fA-F]{4}) )* \"\\\"\" ws\n"
        "number ::= (\"-\"? ([0-9] | [1-9] [0-9]{0,15})) (\".\" [0-9]+)? ws\n"
        "ws ::= | \" \" | \"\\n\" [ \\t]{0,20}\n";
    struct mx_grammar *g = parse_ok(json);
    assert_int_equal(mx_grammar_vocab_init(g, nv), 0);
    char piece[256];
    for (int32_t id = 0; id < nv; id++) {
        int n = mx_tokenizer_piece(tok, id, 0, piece, sizeof piece);
        assert_true(n >= 0 && n <= (int)sizeof piece);
        assert_int_equal(mx_grammar_vocab_set(g, id, piece, (size_t)n,
                                              mx_tokenizer_is_eog(tok, id)), 0);
    }
    struct mx_sampler_params p;
    mx_sampler_params_default(&p);
    p.temp = 1.0f;
    p.seed = 5;
    struct mx_sampler *smp;
    assert_int_equal(mx_sampler_new_params(nv, &p, &smp, NULL), 0);
    mx_sampler_set_grammar(smp, g);
    float *logits = malloc((size_t)nv * sizeof *logits);
    assert_non_null(logits);
    uint64_t rs = 77;
    size_t n_tok = 0;
    double t_chain = 0, t_filter = 0;
    size_t n_filter = 0, n_kept = 0;
    struct mx_token_data *cand = malloc((size_t)nv * sizeof *cand);
    assert_non_null(cand);
    for (int step = 0; step < 200; step++) {
        for (int32_t i = 0; i < nv; i++)
            logits[i] = 4.0f * mx_test_randf(&rs);
        int32_t id;
        double t0 = mx_time_s();
        int rc = mx_sampler_sample(smp, logits, &id);
        t_chain += mx_time_s() - t0;
        /* the slow path alone: the whole vocabulary through the filter */
        for (int32_t i = 0; i < nv; i++)
            cand[i] = (struct mx_token_data){.id = i, .logit = logits[i]};
        struct mx_cand c = {cand, (size_t)nv, 0};
        t0 = mx_time_s();
        mx_grammar_filter(g, &c);
        t_filter += mx_time_s() - t0;
        n_filter++;
        n_kept += c.n;
        assert_int_equal(rc, 0);
        if (mx_tokenizer_is_eog(tok, id) || mx_grammar_finished(g)) {
            mx_sampler_reset(smp); /* a whole object: start another */
            continue;
        }
        assert_int_equal(mx_sampler_accept(smp, id), 0);
        n_tok++;
    }
    struct mx_sampler_grammar_stats gs;
    mx_sampler_grammar_stats(smp, &gs);
    printf("llama2 vocab (%d tokens), JSON grammar, random logits: %zu tokens, grammar %.1f us "
           "per token (%llu of %llu picks refused), whole sample %.1f us per token\n", (int)nv,
           n_tok, gs.seconds * 1e6 / (double)gs.n_sample, (unsigned long long)gs.n_refused,
           (unsigned long long)gs.n_sample, t_chain * 1e6 / (double)gs.n_sample);
    printf("filtering the whole vocabulary: %.1f us per call (%.0f tokens kept on average)\n",
           t_filter * 1e6 / (double)n_filter, (double)n_kept / (double)n_filter);
    assert_true(n_tok > 100);
    free(cand);
    free(logits);
    mx_sampler_free(smp);
    mx_tokenizer_free(tok);
    mx_gguf_close(gg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_constructs),
        cmocka_unit_test(test_parse_escapes_unicode),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_ambiguity_cap),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_sampler_stage),
        cmocka_unit_test(test_property),
        cmocka_unit_test(test_cost_llama2),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
