/* test_sd_prompt.c - A1111 prompt syntax (core/diffusion/prompt.c) against its oracles.
 *
 * - Parser: the docstring cases of A1111's parse_prompt_attention plus nested weights, escapes,
 *   unbalanced brackets, BREAK in every position; the expected segments and weights were made by
 *   running A1111's own function (modules/prompt_parser.py, v1.10.1) in Python on these strings,
 *   and weights must be equal as doubles (the same multiplications in the same order).
 * - The peer's parse log lines in refs/sd/sd-s??.json ("parse '...' to [[...]]").
 * - Chunks on a hand-made CLIP vocabulary: 75 tokens a chunk, comma backtracking within 20
 *   tokens, BREAK, weights on each segment's tokens, pads (EOS or SD 2.x's 0), the chunk limit.
 * - With OpenAI's vocabulary installed and ../shared present: every refs/sd/sd-s*.json case's
 *   `tokens` (ids and A1111 weights, cond and uncond) and the dumped tokens_*.i32 files.
 * Cases needing ../shared or the vocabulary skip with a printed reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/prompt.h"
#include "core/text/tokenizer.h"
#include "tests/mx_test.h"

/* ---- parser --------------------------------------------------------------------------------- */

struct exp_seg {
    const char *text;
    double weight;
};

struct parse_case {
    const char *in;
    int n;
    struct exp_seg segs[9];
};

/* Generated with A1111's parse_prompt_attention (see the file comment). */
static const struct parse_case cases[] = {
    {"normal text", 1, {{"normal text", 1.0}}},
    {"an (important) word", 3, {{"an ", 1.0}, {"important", 1.1}, {" word", 1.0}}},
    {"(unbalanced", 1, {{"unbalanced", 1.1}}},
    {"\\(literal\\]", 1, {{"(literal]", 1.0}}},
    {"(unnecessary)(parens)", 1, {{"unnecessaryparens", 1.1}}},
    {"a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", 9, {
      {"a ", 1.0}, {"house", 1.5730000000000004}, {" ", 1.1}, {"on", 1.0}, {" a ", 1.1},
      {"hill", 0.55}, {", sun, ", 1.1}, {"sky", 1.4641000000000006}, {".", 1.1}}},
    {"a (red:1.3) cube, [blurry]", 4, {
      {"a ", 1.0}, {"red", 1.3}, {" cube, ", 1.0}, {"blurry", 0.9090909090909091}}},
    {"((x))", 1, {{"x", 1.2100000000000002}}},
    {"[[x]]", 1, {{"x", 0.8264462809917354}}},
    {"(x:1.5)", 1, {{"x", 1.5}}},
    {"((x:1.5))", 1, {{"x", 1.6500000000000001}}},
    {"((x:1.5):0.5)", 1, {{"x", 0.75}}},
    {"[x:1.5]", 1, {{"x:1.5", 0.9090909090909091}}},
    {"x:1.5)", 1, {{"x:1.5)", 1.0}}},
    {"(x: +1.25 )", 1, {{"x", 1.25}}},
    {"(x:-1)", 1, {{"x", -1.0}}},
    {"(x:.5)", 1, {{"x", 0.5}}},
    {"(x:5.)", 1, {{"x", 5.0}}},
    {"(x:0)", 1, {{"x", 0.0}}},
    {"a\\b\\\\c", 1, {{"ab\\c", 1.0}}},
    {"\\", 1, {{"", 1.0}}},
    {")unopened]", 1, {{")unopened]", 1.0}}},
    {"[unclosed (both", 2, {{"unclosed ", 0.9090909090909091}, {"both", 1.0}}},
    {"a BREAK b", 3, {{"a", 1.0}, {"BREAK", -1.0}, {"b", 1.0}}},
    {"BREAK", 3, {{"", 1.0}, {"BREAK", -1.0}, {"", 1.0}}},
    {"BREAKFAST break BREAK_X xBREAK", 1, {{"BREAKFAST break BREAK_X xBREAK", 1.0}}},
    {"a  BREAK  BREAK b", 5, {{"a", 1.0}, {"BREAK", -1.0}, {"", 1.0}, {"BREAK", -1.0}, {"b", 1.0}}},
    {"(BREAK)", 3, {{"", 1.1}, {"BREAK", -1.1}, {"", 1.1}}},
    {"(a BREAK b:1.2)", 3, {{"a", 1.2}, {"BREAK", -1.2}, {"b", 1.2}}},
    {"a,BREAK,b", 3, {{"a,", 1.0}, {"BREAK", -1.0}, {",b", 1.0}}},
    {":::", 1, {{":::", 1.0}}},
    {"(:)", 1, {{":", 1.1}}},
    {"(a:)b", 2, {{"a:", 1.1}, {"b", 1.0}}},
    {"((a)[b])", 2, {{"a", 1.2100000000000002}, {"b", 1.0}}},
    {"(a)(b:1.21)", 2, {{"a", 1.1}, {"b", 1.21}}},
    {"a ((b)) (b:1.21)", 4, {{"a ", 1.0}, {"b", 1.2100000000000002}, {" ", 1.0}, {"b", 1.21}}},
    {"caf\303\251 BREAK", 3, {{"caf\303\251", 1.0}, {"BREAK", -1.0}, {"", 1.0}}},
    {"(x:1.2)", 1, {{"x", 1.2}}},
    {"(a:1)(b)(c:1.1)", 2, {{"a", 1.0}, {"bc", 1.1}}},
    {"\\\\BREAK", 3, {{"\\", 1.0}, {"BREAK", -1.0}, {"", 1.0}}},
    {"a (b BREAK", 4, {{"a ", 1.0}, {"b", 1.1}, {"BREAK", -1.1}, {"", 1.1}}},
    {"[a BREAK b]", 3, {
      {"a", 0.9090909090909091}, {"BREAK", -0.9090909090909091}, {"b", 0.9090909090909091}}},
    {"a\011BREAK\012b", 3, {{"a", 1.0}, {"BREAK", -1.0}, {"b", 1.0}}},
    {"x\034BREAK\037y", 3, {{"x", 1.0}, {"BREAK", -1.0}, {"y", 1.0}}},
    {"a (b:1.5 [c] d) e", 5, {{"a ", 1.0}, {"b:1.5 ", 1.1}, {"c", 1.0}, {" d", 1.1}, {" e", 1.0}}},
    {"(((a:1.2)))", 1, {{"a", 1.4520000000000002}}},
    {"(x:-1) BREAK y", 4, {{"x", -1.0}, {"", 1.0}, {"BREAK", -1.0}, {"y", 1.0}}},
    {"\\(x:2)", 1, {{"(x:2)", 1.0}}},
};

static void check_parse(const char *in, int n, const struct exp_seg *segs) {
    struct mx_sd_prompt p;
    struct mx_err e = {0};
    int rc = mx_sd_prompt_parse(in, &p, &e);
    if (rc < 0)
        fail_msg("parse \"%s\": %s", in, mx_err_msg(&e, rc));
    bool ok = p.n == n;
    for (int i = 0; ok && i < n; i++)
        ok = !strcmp(p.segs[i].text, segs[i].text) && p.segs[i].weight == segs[i].weight &&
             p.segs[i].is_break == (!strcmp(segs[i].text, "BREAK") && segs[i].weight == -1.0);
    if (!ok) {
        printf("MISMATCH for \"%s\"\n  got:", in);
        for (int64_t i = 0; i < p.n; i++)
            printf(" ['%s', %.17g%s]", p.segs[i].text, p.segs[i].weight,
                   p.segs[i].is_break ? " break" : "");
        printf("\n  expected:");
        for (int i = 0; i < n; i++)
            printf(" ['%s', %.17g]", segs[i].text, segs[i].weight);
        printf("\n");
    }
    mx_sd_prompt_deinit(&p);
    assert_true(ok);
}

static void test_parse_a1111(void **state) {
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_parse(cases[i].in, cases[i].n, cases[i].segs);
}

/* Where A1111 raises ValueError on the number, the longest valid prefix counts (std::stod). */
static void test_parse_bad_numbers(void **state) {
    (void)state;
    check_parse("(x:1.2.3)", 1, (struct exp_seg[]){{"x", 1.2}});
    check_parse("(x:.)", 1, (struct exp_seg[]){{"x", 1.0}});
    check_parse("(x:-.)y", 1, (struct exp_seg[]){{"xy", 1.0}});
    check_parse("(x:0.000000000000000000000000001)", 1, (struct exp_seg[]){{"x", 1e-27}});
    check_parse("(x:1.50000000000000000000000000)", 1, (struct exp_seg[]){{"x", 1.5}});
    /* deep nesting and a long prompt stay linear and exact */
    char buf[4096];
    size_t k = 0;
    for (int i = 0; i < 1000; i++)
        buf[k++] = '(';
    buf[k++] = 'x';
    buf[k] = 0;
    double w = 1.0;
    for (int i = 0; i < 1000; i++)
        w *= 1.1;
    check_parse(buf, 1, (struct exp_seg[]){{"x", w}});
}

/* The peer's log line "parse 'P' to [['a ', 1], ['red', 1.3], ]" for our segments. */
static void peer_format(const struct mx_sd_prompt *p, char *buf, size_t size) {
    size_t k = (size_t)snprintf(buf, size, "[");
    for (int64_t i = 0; i < p->n && k < size; i++)
        k += (size_t)snprintf(buf + k, size - k, "['%s', %g], ", p->segs[i].text,
                              (double)(float)p->segs[i].weight);
    if (k < size)
        snprintf(buf + k, size - k, "]");
}

static void test_parse_peer_logs(void **state) {
    (void)state;
    const char *shared = mx_test_shared_dir();
    if (!shared)
        mx_test_skip("refs/sd peer logs need ../shared (set MX_SHARED)");
    int n_checked = 0;
    for (int id = 1; id <= 11; id++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/refs/sd/sd-s%02d.json", shared, id);
        json_error_t je;
        json_t *j = json_load_file(path, 0, &je);
        if (!j)
            fail_msg("%s: %s", path, je.text);
        json_t *log = json_object_get(json_object_get(j, "peer"), "log_excerpt");
        for (size_t i = 0; i < json_array_size(log); i++) {
            const char *line = json_string_value(json_array_get(log, i));
            if (!line || strncmp(line, "parse '", 7) != 0)
                continue;
            const char *to = strstr(line, "' to [");
            assert_non_null(to);
            char prompt[512], got[1024];
            snprintf(prompt, sizeof prompt, "%.*s", (int)(to - line - 7), line + 7);
            struct mx_sd_prompt p;
            assert_int_equal(mx_sd_prompt_parse(prompt, &p, NULL), 0);
            peer_format(&p, got, sizeof got);
            mx_sd_prompt_deinit(&p);
            if (strcmp(got, to + 5) != 0)
                fail_msg("sd-s%02d: parse '%s'\n  peer: %s\n  ours: %s", id, prompt, to + 5, got);
            n_checked++;
        }
        json_decref(j);
    }
    printf("peer parse lines checked: %d\n", n_checked);
    assert_true(n_checked >= 11);
}

/* ---- chunks on a hand-made vocabulary ------------------------------------------------------- */

static struct mx_tokenizer *small_tok(void) {
    const char *text = "#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\n";
    struct mx_tokenizer *t = NULL;
    assert_int_equal(mx_clip_tokenizer_from_merges(text, strlen(text), &t, NULL), 0);
    return t;
}

static int32_t id_of(const struct mx_tokenizer *t, const char *s) {
    int32_t id = mx_tokenizer_find(t, s, strlen(s));
    assert_true(id >= 0);
    return id;
}

/* A prompt of words joined by spaces: n1 times w1, then n2 times w2, ... (NULL ends). */
static char *words(const char *w, int n, ...) {
    size_t cap = 1 << 16, k = 0;
    char *s = malloc(cap);
    assert_non_null(s);
    va_list ap;
    va_start(ap, n);
    for (;;) {
        for (int i = 0; i < n; i++)
            k += (size_t)snprintf(s + k, cap - k, "%s ", w);
        w = va_arg(ap, const char *);
        if (!w)
            break;
        n = va_arg(ap, int);
    }
    va_end(ap);
    s[k] = 0;
    return s;
}

static void tokenize(const struct mx_tokenizer *t, const char *prompt, int32_t pad, int max,
                     struct mx_sd_prompt_tokens *out) {
    struct mx_err e = {0};
    int rc = mx_sd_prompt_tokenize(t, prompt, pad, max, out, &e);
    if (rc < 0)
        fail_msg("tokenize: %s", mx_err_msg(&e, rc));
}

/* Chunk c holds BOS, the n content ids given (content[i]), EOS, pads. */
static void expect_chunk(const struct mx_sd_prompt_tokens *t, int64_t c, const int32_t *content,
                         int n, int32_t bos, int32_t eos, int32_t pad) {
    const int32_t *ids = t->ids + c * MX_SD_CHUNK_LEN;
    assert_int_equal(ids[0], bos);
    for (int i = 0; i < n; i++)
        assert_int_equal(ids[1 + i], content[i]);
    assert_int_equal(ids[1 + n], eos);
    for (int i = 2 + n; i < MX_SD_CHUNK_LEN; i++)
        assert_int_equal(ids[i], pad);
}

static void test_chunks(void **state) {
    (void)state;
    struct mx_tokenizer *t = small_tok();
    int32_t bos = mx_tokenizer_bos(t), eos = mx_tokenizer_eos(t);
    int32_t cat = id_of(t, "cat</w>"), dog = id_of(t, "dog</w>"), comma = id_of(t, ",</w>");
    int32_t exp[80];
    struct mx_sd_prompt_tokens tk;

    /* empty prompt: one chunk BOS EOS pad... */
    tokenize(t, "", eos, 0, &tk);
    assert_int_equal(tk.n_chunks, 1);
    expect_chunk(&tk, 0, NULL, 0, bos, eos, eos);
    for (int i = 0; i < MX_SD_CHUNK_LEN; i++)
        assert_true(tk.w[i] == 1.0f);
    mx_sd_prompt_tokens_deinit(&tk);

    /* 80 words: 75 + 5 */
    char *s = words("cat", 80, NULL);
    tokenize(t, s, eos, 0, &tk);
    free(s);
    for (int i = 0; i < 80; i++)
        exp[i] = cat;
    assert_int_equal(tk.n_chunks, 2);
    assert_int_equal(tk.n_tokens, 80);
    expect_chunk(&tk, 0, exp, 75, bos, eos, eos);
    expect_chunk(&tk, 1, exp, 5, bos, eos, eos);
    mx_sd_prompt_tokens_deinit(&tk);

    /* exactly 75: one chunk, and the SD 2.x pad (0) only after an EOS */
    s = words("cat", 75, NULL);
    tokenize(t, s, 0, 0, &tk);
    free(s);
    assert_int_equal(tk.n_chunks, 1);
    expect_chunk(&tk, 0, exp, 75, bos, eos, 0);
    mx_sd_prompt_tokens_deinit(&tk);
    tokenize(t, "cat dog", 0, 0, &tk);
    expect_chunk(&tk, 0, (int32_t[]){cat, dog}, 2, bos, eos, 0);
    mx_sd_prompt_tokens_deinit(&tk);

    /* a comma 5 tokens before the end: the 4 words after it move to the next chunk */
    s = words("cat", 70, ",", 1, "dog", 10, NULL);
    tokenize(t, s, eos, 0, &tk);
    free(s);
    assert_int_equal(tk.n_chunks, 2);
    exp[70] = comma;
    expect_chunk(&tk, 0, exp, 71, bos, eos, eos);
    int32_t dogs[75];
    for (int i = 0; i < 75; i++)
        dogs[i] = dog;
    expect_chunk(&tk, 1, dogs, 10, bos, eos, eos);
    assert_int_equal(tk.n_tokens, 75 + 10);
    mx_sd_prompt_tokens_deinit(&tk);

    /* a comma 25 tokens before the end: too far, a plain cut */
    s = words("cat", 50, ",", 1, "dog", 40, NULL);
    tokenize(t, s, eos, 0, &tk);
    free(s);
    assert_int_equal(tk.n_chunks, 2);
    exp[50] = comma;
    for (int i = 51; i < 75; i++)
        exp[i] = dog;
    expect_chunk(&tk, 0, exp, 75, bos, eos, eos);
    expect_chunk(&tk, 1, dogs, 16, bos, eos, eos);
    mx_sd_prompt_tokens_deinit(&tk);

    /* the comma 20 tokens back when the 76th token comes: the 19 words after it move */
    s = words("cat", 55, ",", 1, "dog", 20, NULL);
    tokenize(t, s, eos, 0, &tk);
    free(s);
    assert_int_equal(tk.n_chunks, 2);
    assert_int_equal(tk.ids[1 + 55], comma);
    assert_int_equal(tk.ids[1 + 56], eos);
    expect_chunk(&tk, 1, dogs, 20, bos, eos, eos);
    mx_sd_prompt_tokens_deinit(&tk);
    /* 21 back: a plain cut after 75 */
    s = words("cat", 54, ",", 1, "dog", 21, NULL);
    tokenize(t, s, eos, 0, &tk);
    free(s);
    assert_int_equal(tk.n_chunks, 2);
    assert_int_equal(tk.ids[1 + 54], comma);
    assert_int_equal(tk.ids[1 + 74], dog);
    expect_chunk(&tk, 1, dogs, 1, bos, eos, eos);
    mx_sd_prompt_tokens_deinit(&tk);

    /* a comma as the 76th token starts the next chunk */
    s = words("cat", 75, ",", 1, "dog", 1, NULL);
    tokenize(t, s, eos, 0, &tk);
    free(s);
    assert_int_equal(tk.n_chunks, 2);
    expect_chunk(&tk, 1, (int32_t[]){comma, dog}, 2, bos, eos, eos);
    mx_sd_prompt_tokens_deinit(&tk);

    /* BREAK ends a chunk; a BREAK first gives an empty chunk; a lone BREAK one chunk */
    tokenize(t, "cat BREAK dog", eos, 0, &tk);
    assert_int_equal(tk.n_chunks, 2);
    expect_chunk(&tk, 0, (int32_t[]){cat}, 1, bos, eos, eos);
    expect_chunk(&tk, 1, (int32_t[]){dog}, 1, bos, eos, eos);
    assert_int_equal(tk.n_tokens, 75 + 1);
    mx_sd_prompt_tokens_deinit(&tk);
    tokenize(t, "BREAK dog", eos, 0, &tk);
    assert_int_equal(tk.n_chunks, 2);
    expect_chunk(&tk, 0, NULL, 0, bos, eos, eos);
    mx_sd_prompt_tokens_deinit(&tk);
    tokenize(t, "BREAK", eos, 0, &tk);
    assert_int_equal(tk.n_chunks, 1);
    mx_sd_prompt_tokens_deinit(&tk);
    /* "(BREAK)" is no break in A1111 (weight -1.1): the word itself, weighted */
    tokenize(t, "cat (BREAK)", eos, 0, &tk);
    assert_int_equal(tk.n_chunks, 1);
    assert_true(tk.ids[2] != eos);
    assert_true(tk.w[2] == -1.0f * 1.1f);
    mx_sd_prompt_tokens_deinit(&tk);

    /* weights go on each segment's tokens; BOS/EOS/pad keep 1 */
    tokenize(t, "cat (dog cat) [dog] (cat:0.5)", eos, 0, &tk);
    int32_t ids5[] = {cat, dog, cat, dog, cat};
    float w5[] = {1.0f, 1.1f, 1.1f, 1.0f / 1.1f, 0.5f}; /* the peer's float32 products */
    expect_chunk(&tk, 0, ids5, 5, bos, eos, eos);
    for (int i = 0; i < 5; i++)
        assert_true(tk.w[1 + i] == w5[i]);
    assert_true(tk.w[0] == 1.0f && tk.w[6] == 1.0f && tk.w[76] == 1.0f);
    mx_sd_prompt_tokens_deinit(&tk);

    /* the chunk limit */
    s = words("cat", 32 * 75, NULL);
    tokenize(t, s, eos, 0, &tk);
    assert_int_equal(tk.n_chunks, 32);
    mx_sd_prompt_tokens_deinit(&tk);
    free(s);
    s = words("cat", 32 * 75 + 1, NULL);
    struct mx_err e = {0};
    assert_int_equal(mx_sd_prompt_tokenize(t, s, eos, 0, &tk, &e), MX_ERANGE);
    assert_non_null(strstr(e.msg, "32 chunks"));
    assert_null(tk.ids);
    free(s);
    s = words("cat", 151, NULL);
    assert_int_equal(mx_sd_prompt_tokenize(t, s, eos, 2, &tk, NULL), MX_ERANGE);
    free(s);
    /* the byte limit: 64 KiB of brackets (no tokens) is refused, not parsed for seconds */
    s = malloc(MX_SD_MAX_PROMPT_BYTES + 2);
    assert_non_null(s);
    for (int i = 0; i <= MX_SD_MAX_PROMPT_BYTES; i++)
        s[i] = i % 2 ? 'a' : '(';
    s[MX_SD_MAX_PROMPT_BYTES + 1] = 0;
    e = (struct mx_err){0};
    assert_int_equal(mx_sd_prompt_tokenize(t, s, eos, 0, &tk, &e), MX_ERANGE);
    assert_non_null(strstr(e.msg, "bytes"));
    s[MX_SD_MAX_PROMPT_BYTES] = 0; /* at the limit: parsed (32768 unclosed brackets) */
    assert_int_equal(mx_sd_prompt_tokenize(t, s, eos, 0, &tk, NULL), MX_ERANGE); /* too long */
    free(s);
    mx_tokenizer_free(t);
}

/* ---- the refs' tokens with OpenAI's vocabulary ---------------------------------------------- */

static void check_ref_tokens(const struct mx_tokenizer *tok, const char *shared, json_t *j,
                             const char *id, const char *which, const char *prompt) {
    json_t *exp = json_object_get(json_object_get(j, "tokens"), which);
    if (json_is_null(exp))
        return; /* cfg 1: the peer encoded no negative prompt */
    assert_non_null(exp);
    json_t *ids = json_object_get(exp, "ids_until_first_eos");
    json_t *ws = json_object_get(exp, "weights_until_first_eos");
    int32_t pad = (int32_t)json_integer_value(json_object_get(exp, "pad_id"));
    struct mx_sd_prompt_tokens t;
    tokenize(tok, prompt, pad, 0, &t);
    assert_int_equal(t.n_chunks, 1);
    size_t n = json_array_size(ids);
    bool ok = n == json_array_size(ws) && n >= 2;
    for (size_t i = 0; ok && i < n; i++)
        ok = t.ids[i] == json_integer_value(json_array_get(ids, i)) &&
             t.w[i] == (float)json_number_value(json_array_get(ws, i));
    for (size_t i = n; ok && i < MX_SD_CHUNK_LEN; i++)
        ok = t.ids[i] == pad && t.w[i] == 1.0f;
    if (!ok) {
        printf("%s %s \"%s\": got", id, which, prompt);
        for (int i = 0; i < 12; i++)
            printf(" %d/%g", t.ids[i], t.w[i]);
        printf("\n");
    }
    assert_true(ok);
    /* the dumped input ids, where the case has them */
    char path[1024];
    snprintf(path, sizeof path, "%s/refs/sd/%s_tensors/tokens_%s.i32", shared, id, which);
    FILE *f = fopen(path, "rb");
    if (f) {
        int32_t dumped[MX_SD_CHUNK_LEN];
        assert_int_equal(fread(dumped, sizeof dumped[0], MX_SD_CHUNK_LEN, f), MX_SD_CHUNK_LEN);
        fclose(f);
        assert_memory_equal(dumped, t.ids, sizeof dumped);
    }
    mx_sd_prompt_tokens_deinit(&t);
}

static void test_ref_tokens(void **state) {
    (void)state;
    const char *shared = mx_test_shared_dir();
    if (!shared)
        mx_test_skip("refs/sd tokens need ../shared (set MX_SHARED)");
    struct mx_tokenizer *tok = NULL;
    struct mx_err e = {0};
    int rc = mx_clip_tokenizer_load(NULL, &tok, &e);
    if (rc == MX_ENOENT)
        mx_test_skip("OpenAI's CLIP vocabulary is not installed: %s", e.msg);
    assert_int_equal(rc, 0);
    for (int i = 1; i <= 11; i++) {
        char path[1024], id[16];
        snprintf(id, sizeof id, "sd-s%02d", i);
        snprintf(path, sizeof path, "%s/refs/sd/%s.json", shared, id);
        json_error_t je;
        json_t *j = json_load_file(path, 0, &je);
        if (!j)
            fail_msg("%s: %s", path, je.text);
        check_ref_tokens(tok, shared, j, id, "cond",
                         json_string_value(json_object_get(j, "prompt")));
        check_ref_tokens(tok, shared, j, id, "uncond",
                         json_string_value(json_object_get(j, "negative_prompt")));
        json_decref(j);
    }
    mx_tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_a1111),     cmocka_unit_test(test_parse_bad_numbers),
        cmocka_unit_test(test_parse_peer_logs), cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_ref_tokens),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
