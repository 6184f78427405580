/* test_tokenizer.c - the tokenizers against their oracles.
 *
 * - SPM: every case of refs/llm/tokenizer-{llama2-vocab,stories260K}.json (llama.cpp's
 *   llama_tokenize / llama_detokenize on the same GGUF vocabularies) must match exactly: ids with
 *   and without BOS, with parse_special, the pieces and the detokenized text; round trips; the
 *   streaming detokenizer equals the whole decode byte for byte; the logits goldens' prompt_ids,
 *   gen_pieces and gen_text (pieces joined, invalid UTF-8 replaced like Python does).
 * - SPM on a hand-made vocabulary: score order, leftmost ties, byte fallback, unknown token.
 * - BPE pre-tokenizer splitters on tricky strings, against splits derived by hand from each
 *   regex; byte-level merges by rank on a hand-made vocabulary.
 * - CLIP: a hand-made merges file (</w>, lower-casing, punctuation split, padding, 77
 *   truncation, windows), and with OpenAI's vocabulary when installed, the ids listed in
 *   refs/sd/sd-*.json and in their tokens_*.i32 files.
 * - Streaming: held partial sequences, U+FFFD for invalid bytes, flush of a dangling sequence.
 * Cases needing ../shared or the CLIP vocabulary skip with a printed reason when it is absent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/format/gguf.h"
#include "core/base/util.h"
#include "core/text/tok_internal.h"
#include "core/text/tokenizer.h"
#include "tests/mx_test.h"

/* ---- helpers -------------------------------------------------------------------------------- */

static struct mx_tokenizer *tok_from_desc(const struct mx_tok_desc *d) {
    struct mx_tokenizer *t = NULL;
    struct mx_err e = {0};
    int rc = mx_tokenizer_new(d, &t, &e);
    if (rc < 0)
        fail_msg("mx_tokenizer_new: %s", mx_err_msg(&e, rc));
    return t;
}

static struct mx_tokenizer *tok_from_model(const char *shared, const char *name) {
    char path[1024];
    struct mx_gguf *g = NULL;
    struct mx_tokenizer *t = NULL;
    struct mx_err e = {0};
    snprintf(path, sizeof(path), "%s/models/%s", shared, name);
    int rc = mx_gguf_open(path, &g, &e);
    if (rc < 0)
        fail_msg("%s", mx_err_msg(&e, rc));
    rc = mx_tokenizer_from_gguf(g, &t, &e);
    mx_gguf_close(g);
    if (rc < 0)
        fail_msg("%s", mx_err_msg(&e, rc));
    return t;
}

static json_t *load_json(const char *shared, const char *rel) {
    char path[1024];
    json_error_t je;
    snprintf(path, sizeof(path), "%s/%s", shared, rel);
    json_t *j = json_load_file(path, 0, &je);
    if (!j)
        fail_msg("%s: %s", path, je.text);
    return j;
}

/* ids == the JSON array exp? Prints both on mismatch. */
static bool ids_equal(const int32_t *ids, size_t n, const json_t *exp, const char *what,
                      const char *text) {
    bool ok = json_array_size(exp) == n;
    for (size_t i = 0; ok && i < n; i++)
        ok = json_integer_value(json_array_get(exp, i)) == ids[i];
    if (!ok) {
        printf("MISMATCH %s for \"%s\":\n  got ", what, text);
        for (size_t i = 0; i < n; i++)
            printf("%d ", ids[i]);
        printf("\n  want ");
        for (size_t i = 0; i < json_array_size(exp); i++)
            printf("%lld ", (long long)json_integer_value(json_array_get(exp, i)));
        printf("\n");
    }
    return ok;
}

static void encode(const struct mx_tokenizer *t, const char *s, size_t len, unsigned flags,
                   int32_t **ids, size_t *n) {
    struct mx_err e = {0};
    int rc = mx_tokenizer_encode(t, s, len, flags, ids, n, &e);
    if (rc < 0)
        fail_msg("encode: %s", mx_err_msg(&e, rc));
}

static char *decode(const struct mx_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                    size_t *len) {
    struct mx_err e = {0};
    char *s = NULL;
    int rc = mx_tokenizer_decode(t, ids, n, flags, &s, len, &e);
    if (rc < 0)
        fail_msg("decode: %s", mx_err_msg(&e, rc));
    return s;
}

/* Streams ids one at a time (plus flush) into a malloc'd string. */
static char *stream_all(const struct mx_tokenizer *t, const int32_t *ids, size_t n,
                        unsigned flags, size_t *len) {
    struct mx_detok_stream s;
    mx_detok_stream_init(&s, t, flags);
    size_t cap = 64, w = 0;
    char *res = malloc(cap);
    for (size_t i = 0; i <= n; i++) {
        const char *o;
        size_t k;
        int rc = i < n ? mx_detok_stream_push(&s, ids[i], &o, &k)
                       : mx_detok_stream_flush(&s, &o, &k);
        assert_int_equal(rc, 0);
        while (w + k + 1 > cap)
            res = realloc(res, cap *= 2);
        memcpy(res + w, o, k);
        w += k;
    }
    res[w] = 0;
    mx_detok_stream_deinit(&s);
    *len = w;
    return res;
}

/* Python's bytes.decode("utf-8", errors="replace"), for the gen_text oracle: maximal invalid
 * subparts become one U+FFFD each. Written independently of the stream's scanner. */
static char *py_replace(const unsigned char *s, size_t n, size_t *len) {
    char *o = malloc(n * 3 + 1);
    size_t w = 0, i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t need = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                    : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
        if (need == 1) {
            o[w++] = (char)c;
            i++;
            continue;
        }
        size_t k = 1;
        while (need && k < need && i + k < n) {
            unsigned d = s[i + k];
            unsigned lo = 0x80, hi = 0xBF;
            if (k == 1 && c == 0xE0) lo = 0xA0;
            if (k == 1 && c == 0xED) hi = 0x9F;
            if (k == 1 && c == 0xF0) lo = 0x90;
            if (k == 1 && c == 0xF4) hi = 0x8F;
            if (d < lo || d > hi)
                break;
            k++;
        }
        if (need && k == need) {
            memcpy(o + w, s + i, need);
            w += need;
            i += need;
        } else {
            memcpy(o + w, "\xef\xbf\xbd", 3);
            w += 3;
            i += need ? k : 1;
        }
    }
    o[w] = 0;
    *len = w;
    return o;
}

/* ---- SPM goldens ---------------------------------------------------------------------------- */

static void check_tokenizer_golden(const char *model, const char *golden) {
    const char *shared = mx_test_shared_dir();
    if (!shared)
        mx_test_skip("%s needs ../shared (set MX_SHARED)", golden);
    struct mx_tokenizer *t = tok_from_model(shared, model);
    json_t *j = load_json(shared, golden);
    json_t *cases = json_object_get(j, "cases");
    size_t bad = 0, roundtrips = 0;
    assert_true(json_array_size(cases) > 0);
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *cs = json_array_get(cases, c);
        const char *text = json_string_value(json_object_get(cs, "text"));
        size_t tlen = json_string_length(json_object_get(cs, "text"));
        int32_t *ids;
        size_t n;

        encode(t, text, tlen, MX_TOK_ADD_SPECIAL, &ids, &n);
        bad += !ids_equal(ids, n, json_object_get(cs, "ids_bos"), "ids_bos", text);
        free(ids);
        encode(t, text, tlen, MX_TOK_ADD_SPECIAL | MX_TOK_PARSE_SPECIAL, &ids, &n);
        bad += !ids_equal(ids, n, json_object_get(cs, "ids_parse_special"), "ids_parse_special",
                          text);
        free(ids);
        encode(t, text, tlen, 0, &ids, &n);
        bad += !ids_equal(ids, n, json_object_get(cs, "ids_nobos"), "ids_nobos", text);

        json_t *pieces = json_object_get(cs, "pieces");
        assert_int_equal(json_array_size(pieces), n);
        for (size_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = mx_tokenizer_token_text(t, ids[i], &pl);
            assert_non_null(p);
            json_t *pj = json_array_get(pieces, i);
            if (pl != json_string_length(pj) || memcmp(p, json_string_value(pj), pl) != 0) {
                printf("MISMATCH piece %zu of \"%s\"\n", i, text);
                bad++;
            }
        }

        /* llama_detokenize(ids_nobos, remove_special=false, unparse_special=false) */
        const char *want = json_string_value(json_object_get(cs, "detok"));
        size_t wlen = json_string_length(json_object_get(cs, "detok"));
        size_t dl, sl;
        char *d = decode(t, ids, n, 0, &dl);
        if (dl != wlen || memcmp(d, want, dl) != 0) {
            printf("MISMATCH detok of \"%s\": got \"%s\"\n", text, d);
            bad++;
        }
        /* round trip: decode(encode(x)) == x wherever the peer's is */
        if (wlen == tlen && memcmp(want, text, tlen) == 0) {
            assert_int_equal(dl, tlen);
            assert_memory_equal(d, text, tlen);
            roundtrips++;
        }
        /* the stream, starting a text (first piece's space stripped), equals the whole decode */
        char *s = stream_all(t, ids, n, MX_DETOK_LSTRIP, &sl);
        assert_int_equal(sl, dl);
        assert_memory_equal(s, d, dl);
        free(s);
        free(d);
        free(ids);
    }
    printf("%s: %zu cases, %zu mismatches, %zu round trips\n", golden, json_array_size(cases),
           bad, roundtrips);
    assert_int_equal(bad, 0);
    assert_true(roundtrips + 1 >= json_array_size(cases)); /* only "▁already escaped" differs */
    json_decref(j);
    mx_tokenizer_free(t);
}

static void test_spm_golden_llama2(void **state) {
    (void)state;
    check_tokenizer_golden("llama2-vocab.gguf", "refs/llm/tokenizer-llama2-vocab.json");
}

static void test_spm_golden_stories(void **state) {
    (void)state;
    check_tokenizer_golden("stories260K.gguf", "refs/llm/tokenizer-stories260K.json");
}

/* prompt_ids, gen_pieces and gen_text of the logits goldens (stories260K and tiny-mixtral share
 * the tok512 vocabulary). gen_text is the pieces joined without any space stripping, then
 * decoded with errors="replace": exactly what the stream gives without LSTRIP. */
static void check_logits_golden(const char *model, const char *golden) {
    const char *shared = mx_test_shared_dir();
    if (!shared)
        mx_test_skip("%s needs ../shared (set MX_SHARED)", golden);
    struct mx_tokenizer *t = tok_from_model(shared, model);
    json_t *j = load_json(shared, golden);
    json_t *cases = json_object_get(j, "cases");
    assert_true(json_array_size(cases) > 0);
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *cs = json_array_get(cases, c);
        json_t *pj = json_object_get(cs, "prompt");
        int32_t *ids;
        size_t n;
        encode(t, json_string_value(pj), json_string_length(pj), MX_TOK_ADD_SPECIAL, &ids, &n);
        assert_true(ids_equal(ids, n, json_object_get(cs, "prompt_ids"), "prompt_ids",
                              json_string_value(pj)));
        free(ids);

        json_t *gen = json_object_get(cs, "gen_ids");
        json_t *gp = json_object_get(cs, "gen_pieces");
        json_t *gt = json_object_get(cs, "gen_text");
        if (!gen || !gt)
            continue;
        size_t ng = json_array_size(gen);
        int32_t *g = malloc(ng * sizeof(*g));
        for (size_t i = 0; i < ng; i++) {
            g[i] = (int32_t)json_integer_value(json_array_get(gen, i));
            size_t pl;
            const char *p = mx_tokenizer_token_text(t, g[i], &pl);
            assert_non_null(p);
            assert_int_equal(pl, json_string_length(json_array_get(gp, i)));
            assert_memory_equal(p, json_string_value(json_array_get(gp, i)), pl);
        }
        size_t sl, dl, rl;
        char *s = stream_all(t, g, ng, 0, &sl);
        assert_int_equal(sl, json_string_length(gt));
        assert_memory_equal(s, json_string_value(gt), sl);
        /* and the whole decode (raw bytes), replaced like Python, is the same text */
        char *d = decode(t, g, ng, 0, &dl);
        /* decode strips the first piece's space (llama_detokenize); the golden does not */
        char *r = py_replace((const unsigned char *)d, dl, &rl);
        assert_true(sl == rl || sl == rl + 1);
        assert_memory_equal(s + (sl - rl), r, rl);
        free(r);
        free(d);
        free(s);
        free(g);
    }
    json_decref(j);
    mx_tokenizer_free(t);
}

static void test_spm_logits_goldens(void **state) {
    (void)state;
    check_logits_golden("stories260K.gguf", "refs/llm/logits-stories260K.json");
    check_logits_golden("tiny-mixtral-f32.gguf", "refs/llm/logits-tiny-mixtral-f32.json");
}

/* ---- SPM on a hand-made vocabulary ---------------------------------------------------------- */

/* ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 <0x00>..<0xFF>, then pieces with scores. */
static struct mx_tokenizer *small_spm(bool with_bytes) {
    static const char *pieces[] = {"\xe2\x96\x81", "a", "b", "c", "ab", "bc", "\xe2\x96\x81" "a",
                                   "\xe2\x96\x81" "ab", "abc", "<user>"};
    static const float pscores[] = {-1, -2, -2, -2, -5, -3, -4, -6, -1, 0};
    const char *toks[300];
    float scores[300];
    int32_t types[300];
    char bytes[256][7];
    int32_t n = 0;
    toks[n] = "<unk>"; types[n] = MX_TOKT_UNKNOWN; scores[n++] = 0;
    toks[n] = "<s>"; types[n] = MX_TOKT_CONTROL; scores[n++] = 0;
    toks[n] = "</s>"; types[n] = MX_TOKT_CONTROL; scores[n++] = 0;
    for (int b = 0; with_bytes && b < 256; b++) {
        snprintf(bytes[b], sizeof(bytes[b]), "<0x%02X>", b);
        toks[n] = bytes[b]; types[n] = MX_TOKT_BYTE; scores[n++] = 0;
    }
    for (size_t i = 0; i < MX_ARRAY_LEN(pieces); i++) {
        toks[n] = pieces[i];
        types[n] = i + 1 == MX_ARRAY_LEN(pieces) ? MX_TOKT_USER_DEFINED : MX_TOKT_NORMAL;
        scores[n++] = pscores[i];
    }
    struct mx_tok_desc d;
    mx_tok_desc_init(&d, MX_TOK_SPM);
    d.n_tokens = n;
    d.tokens = toks;
    d.scores = scores;
    d.types = types;
    return tok_from_desc(&d);
}

static int32_t id_of(const struct mx_tokenizer *t, const char *s) {
    int32_t id = mx_tokenizer_find(t, s, strlen(s));
    if (id < 0)
        fail_msg("no token '%s'", s);
    return id;
}

static void expect_ids(const struct mx_tokenizer *t, const char *text, unsigned flags,
                       const int32_t *want, size_t n_want) {
    int32_t *ids;
    size_t n;
    encode(t, text, strlen(text), flags, &ids, &n);
    if (n != n_want || (n && memcmp(ids, want, n * sizeof(*ids)) != 0)) {
        printf("for \"%s\" got", text);
        for (size_t i = 0; i < n; i++)
            printf(" %d", ids[i]);
        printf(", want");
        for (size_t i = 0; i < n_want; i++)
            printf(" %d", want[i]);
        printf("\n");
        fail();
    }
    free(ids);
}

static void test_spm_small_vocab(void **state) {
    (void)state;
    struct mx_tokenizer *t = small_spm(true);
    int32_t sp = id_of(t, "\xe2\x96\x81"), bc = id_of(t, "bc"),
            abc = id_of(t, "abc"), sa = id_of(t, "\xe2\x96\x81" "a"), user = id_of(t, "<user>");
    /* "▁abc": pairs ▁a(-4) ab(-5) bc(-3): bc first; then the new pair (a,bc) = abc(-1) beats
     * ▁a, which is stale afterwards; (▁,abc) is no token */
    expect_ids(t, "abc", 0, (int32_t[]){sp, abc}, 2);
    /* "▁ab": ▁a(-4) beats ab(-5), then (▁a,b) makes ▁ab */
    expect_ids(t, "ab", 0, (int32_t[]){id_of(t, "\xe2\x96\x81" "ab")}, 1);
    /* "▁cab": ▁c is no token, ab(-5) merges, (c,ab) no: ▁ c ab */
    expect_ids(t, "cab", 0, (int32_t[]){sp, id_of(t, "c"), id_of(t, "ab")}, 3);
    /* no space prefix after BOS either way; ADD_SPECIAL puts <s> first */
    expect_ids(t, "abc", MX_TOK_ADD_SPECIAL, (int32_t[]){1, sp, abc}, 3);
    /* 'x' is no token: byte fallback <0x78> */
    expect_ids(t, "x", 0, (int32_t[]){sp, 3 + 'x'}, 2);
    /* a 2-byte character that is no token: two byte tokens */
    expect_ids(t, "\xc3\xa9", 0, (int32_t[]){sp, 3 + 0xc3, 3 + 0xa9}, 3);
    /* control text is plain text unless parse_special; user-defined tokens are always split */
    expect_ids(t, "<user>a", 0, (int32_t[]){user, sa}, 2); /* prefix again after it */
    expect_ids(t, "a<s>", MX_TOK_PARSE_SPECIAL, (int32_t[]){sa, 1}, 2);
    /* after a special token the next text gets the space prefix again (llama.cpp) */
    expect_ids(t, "<s>bc", MX_TOK_PARSE_SPECIAL, (int32_t[]){1, sp, bc}, 3);
    expect_ids(t, "", MX_TOK_ADD_SPECIAL, (int32_t[]){1}, 1);
    expect_ids(t, "", 0, NULL, 0);

    assert_true(mx_tokenizer_is_eog(t, 2));
    assert_false(mx_tokenizer_is_eog(t, 1));
    assert_false(mx_tokenizer_is_eog(t, 1 << 20));
    /* pieces: control tokens only when asked, bytes as bytes, ▁ as space */
    char buf[16];
    assert_int_equal(mx_tokenizer_piece(t, 1, 0, buf, sizeof(buf)), 0);
    assert_int_equal(mx_tokenizer_piece(t, 1, MX_DETOK_SPECIAL, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "<s>", 3);
    assert_int_equal(mx_tokenizer_piece(t, 3 + 0x41, 0, buf, sizeof(buf)), 1);
    assert_int_equal(buf[0], 'A');
    assert_int_equal(mx_tokenizer_piece(t, sa, 0, buf, sizeof(buf)), 2);
    assert_memory_equal(buf, " a", 2);
    assert_int_equal(mx_tokenizer_piece(t, sa, MX_DETOK_LSTRIP, buf, sizeof(buf)), 1);
    assert_int_equal(mx_tokenizer_piece(t, sa, 0, buf, 1), 2); /* truncated: full length */
    assert_int_equal(mx_tokenizer_piece(t, -1, 0, buf, sizeof(buf)), MX_EINVAL);
    assert_int_equal(mx_tokenizer_piece(t, 1 << 20, 0, buf, sizeof(buf)), MX_EINVAL);

    /* decode: bounds-checked, REMOVE_SPECIAL drops BOS and keeps the space */
    char *s;
    size_t n;
    struct mx_err e = {0};
    assert_int_equal(mx_tokenizer_decode(t, (int32_t[]){1, 99999}, 2, 0, &s, &n, &e), MX_EINVAL);
    assert_non_null(strstr(e.msg, "99999"));
    /* llama_detokenize strips the space of the first token only, so after BOS it stays */
    s = decode(t, (int32_t[]){sa, bc}, 2, 0, &n);
    assert_string_equal(s, "abc");
    free(s);
    s = decode(t, (int32_t[]){1, sa, bc}, 3, 0, &n);
    assert_string_equal(s, " abc");
    free(s);
    s = decode(t, (int32_t[]){1, sa, bc}, 3, MX_DETOK_REMOVE_SPECIAL, &n);
    assert_string_equal(s, " abc");
    free(s);
    s = decode(t, (int32_t[]){1, sa, 2}, 3, MX_DETOK_SPECIAL, &n);
    assert_string_equal(s, "<s> a</s>");
    free(s);
    mx_tokenizer_free(t);

    /* without byte tokens, unknown characters become <unk> */
    t = small_spm(false);
    expect_ids(t, "x", 0, (int32_t[]){id_of(t, "\xe2\x96\x81"), 0}, 2);
    mx_tokenizer_free(t);
}

static void test_bad_descriptions(void **state) {
    (void)state;
    struct mx_tok_desc d;
    struct mx_tokenizer *t = (struct mx_tokenizer *)&d;
    struct mx_err e = {0};
    mx_tok_desc_init(&d, MX_TOK_SPM);
    assert_int_equal(mx_tokenizer_new(&d, &t, &e), MX_EINVAL);
    assert_null(t);
    const char *toks[] = {"a", NULL};
    d.tokens = toks;
    d.n_tokens = 2;
    mx_err_clear(&e);
    assert_int_equal(mx_tokenizer_new(&d, &t, &e), MX_EFORMAT);
    /* special ids outside the vocabulary are dropped, not trusted */
    d.n_tokens = 1;
    d.bos_id = 7;
    assert_int_equal(mx_tokenizer_new(&d, &t, &e), 0);
    assert_int_equal(mx_tokenizer_bos(t), MX_TOK_NONE);
    int32_t *ids;
    size_t n;
    encode(t, "a", 1, MX_TOK_ADD_SPECIAL, &ids, &n);
    /* no BOS; "▁" is no token and there are no byte tokens: its 3 bytes are <unk> (id 0) */
    assert_int_equal(n, 4);
    assert_int_equal(ids[0], 0);
    assert_int_equal(ids[3], 0);
    free(ids);
    mx_tokenizer_free(t);
    mx_tokenizer_free(NULL);
}

/* ---- BPE splitters -------------------------------------------------------------------------- */

struct split_out {
    const char *s;
    char buf[1024];
    size_t n;
};

static int collect(void *ud, size_t a, size_t b) {
    struct split_out *o = ud;
    memcpy(o->buf + o->n, o->s + a, b - a);
    o->n += b - a;
    o->buf[o->n++] = '|';
    o->buf[o->n] = 0;
    return 0;
}

/* Splits s and compares with want, pieces separated by '|'. */
static void expect_split(enum mx_tok_pre pre, const char *s, const char *want) {
    struct split_out o = {s, {0}, 0};
    if (pre == (enum mx_tok_pre)-1)
        assert_int_equal(mx_tok_split_clip(s, strlen(s), collect, &o), 0);
    else
        assert_int_equal(mx_tok_split(pre, s, strlen(s), collect, &o), 0);
    if (strcmp(o.buf, want) != 0) {
        printf("split %d of \"%s\":\n  got  \"%s\"\n  want \"%s\"\n", (int)pre, s, o.buf, want);
        fail();
    }
}

static void test_split_gpt2(void **state) {
    (void)state;
    /* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
    expect_split(MX_PRE_GPT2, "Hello world", "Hello| world|");
    expect_split(MX_PRE_GPT2, "I'm don't we'LL", "I|'m| don|'t| we|'|LL|"); /* case-sensitive */
    expect_split(MX_PRE_GPT2, "a  b", "a| | b|");        /* \s+(?!\S) leaves one space */
    expect_split(MX_PRE_GPT2, "a   ", "a|   |");          /* at the end all spaces go */
    expect_split(MX_PRE_GPT2, "x 12345 y", "x| 12345| y|"); /* digits unbounded */
    expect_split(MX_PRE_GPT2, "hi!!! ?", "hi|!!!| ?|");
    expect_split(MX_PRE_GPT2, "a\n\nb", "a|\n|\n|b|");
    expect_split(MX_PRE_GPT2, "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
                 "caf\xc3\xa9| \xe6\x97\xa5\xe6\x9c\xac|");
    expect_split(MX_PRE_GPT2, "", "");
}

static void test_split_llama3(void **state) {
    (void)state;
    /* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
     * \s*[\r\n]+|\s+(?!\S)|\s+ */
    expect_split(MX_PRE_LLAMA3, "Hello world", "Hello| world|");
    expect_split(MX_PRE_LLAMA3, "WE'LL I'M", "WE|'LL| I|'M|");     /* case-insensitive */
    expect_split(MX_PRE_LLAMA3, "1234567", "123|456|7|");          /* three digits at most */
    expect_split(MX_PRE_LLAMA3, "x 1234", "x| |123|4|");            /* no space before digits */
    expect_split(MX_PRE_LLAMA3, "(hello)", "(hello|)|");           /* one non-letter prefixes */
    expect_split(MX_PRE_LLAMA3, "\tword", "\tword|");
    expect_split(MX_PRE_LLAMA3, "a\nb", "a|\n|b|");                 /* \r\n never prefix */
    expect_split(MX_PRE_LLAMA3, "end.\n\nNext", "end|.\n\n|Next|"); /* punct takes the newlines */
    expect_split(MX_PRE_LLAMA3, "a  \n\n  b", "a|  \n\n| | b|");
    expect_split(MX_PRE_LLAMA3, "a   b", "a|  | b|");
    expect_split(MX_PRE_LLAMA3, "x ", "x| |");
    expect_split(MX_PRE_LLAMA3, " !!", " !!|");
    expect_split(MX_PRE_LLAMA3, "\xc3\xa9t\xc3\xa9 \xd0\x9c\xd0\xb8\xd1\x80",
                 "\xc3\xa9t\xc3\xa9| \xd0\x9c\xd0\xb8\xd1\x80|");
    /* qwen2: same but single digits */
    expect_split(MX_PRE_QWEN2, "x 1234", "x| |1|2|3|4|");
    expect_split(MX_PRE_QWEN2, "WE'LL", "WE|'LL|");
}

static void test_split_tekken(void **state) {
    (void)state;
    /* [^\r\n\p{L}\p{N}]?[Lu Lt Lm Lo M]*[Ll Lm Lo M]+|[^\r\n\p{L}\p{N}]?[Lu Lt Lm Lo M]+[Ll..]*|
     * \p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
    expect_split(MX_PRE_TEKKEN, "HelloWorld", "Hello|World|");      /* case change splits */
    expect_split(MX_PRE_TEKKEN, "HTTPServer", "HTTPServer|");   /* U* then L+ greedy */
    expect_split(MX_PRE_TEKKEN, "ABC def", "ABC| def|");
    expect_split(MX_PRE_TEKKEN, "I'm", "I|'m|");                    /* no contraction rule */
    expect_split(MX_PRE_TEKKEN, "2024", "2|0|2|4|");
    expect_split(MX_PRE_TEKKEN, "a/b//\nc", "a|/b|//\n|c|");
    expect_split(MX_PRE_TEKKEN, " ...\n", " ...\n|");
    expect_split(MX_PRE_TEKKEN, "x\n\n y", "x|\n\n| y|");
}

/* Splits s with the pattern pat (ASCII) and compares with want, pieces separated by '|'. */
static void expect_rx(const char *pat, const char *s, const char *want) {
    uint32_t p[256], txt[256];
    size_t np = strlen(pat), nt = strlen(s);
    struct mx_rx *rx;
    struct mx_err e = {0};
    struct mx_lenvec lv = {0};
    char got[512];
    size_t w = 0, at = 0;
    for (size_t i = 0; i < np; i++)
        p[i] = (unsigned char)pat[i];
    for (size_t i = 0; i < nt; i++)
        txt[i] = (unsigned char)s[i];
    assert_int_equal(mx_rx_compile(p, np, &rx, &e), 0);
    assert_int_equal(mx_rx_split(rx, txt, nt, &lv), 0);
    for (size_t i = 0; i < lv.n; i++) {
        memcpy(got + w, s + at, lv.v[i]);
        w += lv.v[i];
        at += lv.v[i];
        got[w++] = '|';
    }
    got[w] = 0;
    if (strcmp(got, want) != 0) {
        printf("/%s/ on \"%s\":\n  got  \"%s\"\n  want \"%s\"\n", pat, s, got, want);
        fail();
    }
    free(lv.v);
    mx_rx_free(rx);
}

static void expect_rx_bad(const char *pat) {
    uint32_t p[64];
    size_t np = strlen(pat);
    struct mx_rx *rx = NULL;
    struct mx_err e = {0};
    for (size_t i = 0; i < np; i++)
        p[i] = (unsigned char)pat[i];
    assert_int_equal(mx_rx_compile(p, np, &rx, &e), MX_EINVAL);
    assert_null(rx);
    assert_non_null(strstr(e.msg, "regex"));
}

static void test_regex(void **state) {
    (void)state;
    /* ECMAScript (std::regex) semantics, split like llama.cpp's unicode_regex_split_stl: matches
     * and the gaps between them are the pieces */
    expect_rx("a|ab", "abab", "a|b|a|b|");          /* first alternative wins, not longest */
    expect_rx("\\s+(?!\\S)", "a   b", "a|  | b|");  /* lookahead gives back one space */
    expect_rx("x{2,3}", "xxxxxxx", "xxx|xxx|x|");   /* bounded repeat, unmatched tail kept */
    expect_rx("x{2}y", "xxxy", "x|xxy|");
    expect_rx("a+?", "aaa", "a|a|a|");              /* lazy */
    expect_rx("(?=(\\d{3})+(?!\\d))", "1234567", "1|234|567|"); /* empty matches split */
    expect_rx("\\s+$", "a  ", "a|  |");             /* $ at the end of the fragment only */
    expect_rx("\\s+$", "a  b", "a  b|");
    expect_rx(" ?[^(\\s|.,)]+", "a(b c.d|e", "a|(|b| c|.|d|||e|"); /* ( | ) literal in [] */
    expect_rx("\\bfoo\\b", "foo foobar", "foo| foobar|");
    expect_rx("[\\[-\\]]+", "a[\\]b", "a|[\\]|b|");  /* escaped range ends */
    expect_rx("(IMGIMG)((A|B|C){1,4})Z", "xIMGIMGABZy", "x|IMGIMGABZ|y|");
    expect_rx("((?=[A-Za-z])([^a-z]))*((?=[A-Za-z])([^A-Z]))+", "HTTPServer ok",
              "HTTPServer| |ok|");                  /* tekken's letter runs */
    expect_rx("[^\\n]+|[\\n]+", "ab\n\ncd", "ab|\n\n|cd|");
    expect_rx(".+", "ab\ncd", "ab|\n|cd|");        /* . stops at line terminators */
    expect_rx("\\S+", "", "");
    expect_rx_bad("(a");
    expect_rx_bad("a)");
    expect_rx_bad("[ab");
    expect_rx_bad("a{3,2}");
    expect_rx_bad("*a");
    expect_rx_bad("(a*)*");                         /* a loop that can match nothing */
    expect_rx_bad("\\p{L}");                        /* categories are collapsed before */
}

/* Every pre-tokenizer builds, its pieces cover the text, and the names map like llama.cpp's. */
static void test_pre_table(void **state) {
    (void)state;
    static const char text[] = "Hello WORLD'S 12345 \xc2\xbd  \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"
                               "\n\n\tcode(x) {y};  \xf0\x9f\xa6\x99 caf\x65\xcc\x81 \xff end ";
    for (int pre = 0; pre < MX_PRE_COUNT; pre++) {
        struct split_out o = {text, {0}, 0};
        assert_int_equal(mx_tok_split((enum mx_tok_pre)pre, text, sizeof(text) - 1, collect, &o),
                         0);
        size_t n = 0;
        for (size_t i = 0; i < o.n; i++)
            n += o.buf[i] != '|';
        if (n != sizeof(text) - 1) {
            printf("pre %d (%s): pieces cover %zu of %zu bytes\n", pre,
                   mx_tok_pre_name((enum mx_tok_pre)pre), n, sizeof(text) - 1);
            fail();
        }
    }
    struct mx_tok_pre_info pi;
    assert_true(mx_tok_pre_lookup("qwen35", &pi));
    assert_int_equal(pi.pre, MX_PRE_QWEN35);
    assert_true(pi.keep_spaces);
    assert_true(mx_tok_pre_lookup("command-r", &pi));
    assert_int_equal(pi.pre, MX_PRE_STARCODER);
    assert_true(mx_tok_pre_lookup("llada-moe", &pi));
    assert_int_equal(pi.pre, MX_PRE_BAILINGMOE);
    assert_true(mx_tok_pre_lookup("llama-bpe", &pi));
    assert_true(pi.ignore_merges && pi.add_bos);
    assert_true(mx_tok_pre_lookup("gemma4", &pi));
    assert_true(pi.escape_spaces && pi.raw_bytes);
    assert_false(mx_tok_pre_lookup("gpt2", &pi)); /* llama.cpp knows "gpt-2" only */
    assert_false(mx_tok_pre_lookup("no-such-pre", &pi));
    assert_false(mx_tok_pre_lookup(NULL, &pi));
    assert_string_equal(mx_tok_pre_name(MX_PRE_GPT2), "gpt-2");
    assert_string_equal(mx_tok_pre_name(MX_PRE_KIMI_K2), "kimi-k2");
    /* hand-derived splits of llama.cpp's own code for the pre-tokenizers it splits by hand */
    expect_split(MX_PRE_KIMI_K2, "\xe6\x97\xa5\xe6\x9c\xac" "abc's 1234567",
                 "\xe6\x97\xa5\xe6\x9c\xac|abc's| |123|456|7|");
    expect_split(MX_PRE_AFMOE, "ab12345 c", "ab|12|345| c|"); /* 12 left first, then 345 */
    expect_split(MX_PRE_QWEN35, "cafe\xcc\x81!", "cafe\xcc\x81|!|"); /* marks stay */
    expect_split(MX_PRE_QWEN2, "cafe\xcc\x81!", "cafe|\xcc\x81!|");
    expect_split(MX_PRE_STARCODER, "ied 4 \xc2\xbd months", "ied| |4| |\xc2\xbd| months|");
    expect_split(MX_PRE_DEFAULT, "a+b=1234", "a|+|b|=|123|4|");
    expect_split(MX_PRE_GEMMA4, "a b\n\nc", "a b|\n\n|c|");
}

static void test_split_clip(void **state) {
    (void)state;
    /* stable-diffusion.cpp: ...|'s|'t|'re|'ve|'m|'ll|'d|[[:alpha:]]+|[[:digit:]]|
     * [^[:space:][:alpha:][:digit:]]+ on lower-cased bytes; spaces are dropped */
    expect_split((enum mx_tok_pre)-1, "a photo, of 42 cats!!", "a|photo|,|of|4|2|cats|!!|");
    expect_split((enum mx_tok_pre)-1, "it's <|endoftext|>x", "it|'s|<|endoftext|>|x|");
    expect_split((enum mx_tok_pre)-1, "caf\xc3\xa9!", "caf|\xc3\xa9!|");
}

/* ---- BPE merges on a hand-made byte-level vocabulary ---------------------------------------- */

static void test_bpe_small_vocab(void **state) {
    (void)state;
    /* tokens: the 256 byte chars, then merged ones; merges by rank */
    static char chars[256][4];
    const char *toks[300];
    int32_t n = 0;
    for (int b = 0; b < 256; b++) {
        size_t k = mx_utf8_put(mx_byte_to_cp((unsigned char)b), chars[b]);
        chars[b][k] = 0;
        toks[n++] = chars[b];
    }
    const char *extra[] = {"he", "ll", "llo", "hello", "\xc4\xa0w", "\xc4\xa0wo", "<|eot|>"};
    for (size_t i = 0; i < MX_ARRAY_LEN(extra); i++)
        toks[n++] = extra[i];
    const char *merges[] = {"l l", "h e", "ll o", "he llo", "\xc4\xa0 w", "\xc4\xa0w o"};
    int32_t types[300];
    for (int32_t i = 0; i < n; i++)
        types[i] = i == n - 1 ? MX_TOKT_CONTROL : MX_TOKT_NORMAL;
    struct mx_tok_desc d;
    mx_tok_desc_init(&d, MX_TOK_BPE);
    d.n_tokens = n;
    d.tokens = toks;
    d.types = types;
    d.merges = merges;
    d.n_merges = (int32_t)MX_ARRAY_LEN(merges);
    d.pre = MX_PRE_LLAMA3;
    d.bos_id = d.eos_id = n - 1;
    d.clean_spaces = true;
    struct mx_tokenizer *t = tok_from_desc(&d);
    int32_t hello = id_of(t, "hello"), gwo = id_of(t, "\xc4\xa0wo"), eot = n - 1;
    /* "hello world": hello | Ġwo r l d */
    expect_ids(t, "hello world", 0,
               (int32_t[]){hello, gwo, 'r', 'l', 'd'}, 5);
    /* parse_special and add_special with add_bos false: nothing added */
    expect_ids(t, "hello<|eot|>", MX_TOK_PARSE_SPECIAL | MX_TOK_ADD_SPECIAL,
               (int32_t[]){hello, eot}, 2);
    assert_true(mx_tokenizer_is_eog(t, eot)); /* it is also eos here */
    assert_false(mx_tokenizer_is_eog(t, hello));
    assert_false(mx_tokenizer_is_eog(t, -1));
    /* a newline byte (0x0A -> U+010A) round trips */
    int32_t *ids;
    size_t ni, dl, sl;
    encode(t, "hello\n world, ok .", 18, 0, &ids, &ni);
    char *s = decode(t, ids, ni, 0, &dl);
    assert_string_equal(s, "hello\n world, ok."); /* clean_spaces: " ." -> "." */
    free(s);
    /* the stream does not clean (llama.cpp's token-by-token streaming does not either) */
    s = decode(t, ids, ni, MX_DETOK_NO_CLEAN, &dl);
    assert_string_equal(s, "hello\n world, ok .");
    char *st = stream_all(t, ids, ni, 0, &sl);
    assert_string_equal(st, s);
    free(st);
    free(s);
    free(ids);
    /* llama_detokenize's three clean-up passes (ids are bytes in this vocabulary) */
    const char *raw = "I 'm here , you 're it 't ' x ?";
    int32_t rid[64];
    for (size_t i = 0; i < strlen(raw); i++)
        rid[i] = (unsigned char)raw[i] == ' ' ? id_of(t, "\xc4\xa0") : (unsigned char)raw[i];
    s = decode(t, rid, strlen(raw), 0, &dl);
    assert_string_equal(s, "I'm here, you're it 't'x?");
    free(s);
    /* invalid UTF-8 becomes U+FFFD before byte encoding, like llama.cpp */
    encode(t, "\xff", 1, 0, &ids, &ni);
    assert_int_equal(ni, 3);
    assert_int_equal(ids[0], 0xEF); /* byte chars are ids 0..255 here */
    assert_int_equal(ids[1], 0xBF);
    assert_int_equal(ids[2], 0xBD);
    free(ids);
    mx_tokenizer_free(t);
}

/* ---- streaming ------------------------------------------------------------------------------ */

static void test_stream_utf8(void **state) {
    (void)state;
    struct mx_tokenizer *t = small_spm(true);
    struct mx_detok_stream s;
    const char *o;
    size_t n;
#define B(x) (3 + (x))
    /* "é" split over two byte tokens: nothing, then both bytes */
    mx_detok_stream_init(&s, t, 0);
    assert_int_equal(mx_detok_stream_push(&s, B(0xc3), &o, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(mx_detok_stream_push(&s, B(0xa9), &o, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(o, "\xc3\xa9", 2);
    /* a 4-byte emoji over four tokens */
    int e4[] = {0xf0, 0x9f, 0x99, 0x82};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(mx_detok_stream_push(&s, B(e4[i]), &o, &n), 0);
        assert_int_equal(n, 0);
    }
    assert_int_equal(mx_detok_stream_push(&s, B(e4[3]), &o, &n), 0);
    assert_int_equal(n, 4);
    /* a lone continuation byte: U+FFFD right away */
    assert_int_equal(mx_detok_stream_push(&s, B(0x80), &o, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(o, "\xef\xbf\xbd", 3);
    /* a lead byte followed by ASCII: U+FFFD then the ASCII */
    assert_int_equal(mx_detok_stream_push(&s, B(0xe2), &o, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(mx_detok_stream_push(&s, B('A'), &o, &n), 0);
    assert_int_equal(n, 4);
    assert_memory_equal(o, "\xef\xbf\xbd" "A", 4);
    /* bad id: error, nothing consumed */
    assert_int_equal(mx_detok_stream_push(&s, -5, &o, &n), MX_EINVAL);
    /* a dangling partial sequence at the end: flushed as U+FFFD */
    assert_int_equal(mx_detok_stream_push(&s, B(0xe2), &o, &n), 0);
    assert_int_equal(mx_detok_stream_push(&s, B(0x82), &o, &n), 0);
    assert_int_equal(n, 0);
    assert_int_equal(mx_detok_stream_flush(&s, &o, &n), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(o, "\xef\xbf\xbd", 3);
    assert_int_equal(mx_detok_stream_flush(&s, &o, &n), 0);
    assert_int_equal(n, 0);
    /* surrogates and overlongs are invalid: ED A0 80 -> three U+FFFD (as Python) */
    assert_int_equal(mx_detok_stream_push(&s, B(0xed), &o, &n), 0);
    assert_int_equal(mx_detok_stream_push(&s, B(0xa0), &o, &n), 0);
    assert_int_equal(n, 6);
    mx_detok_stream_deinit(&s);
    mx_detok_stream_deinit(NULL);
#undef B

    /* random byte-token sequences: the stream equals Python-style replacement of the bytes */
    uint64_t seed = 1234;
    for (int iter = 0; iter < 200; iter++) {
        int32_t ids[40];
        unsigned char raw[40];
        size_t k = (size_t)(mx_test_rand(&seed) % 40);
        for (size_t i = 0; i < k; i++) {
            static const unsigned char pool[] = {0x41, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f,
                                                 0x99, 0x82, 0x80, 0xff, 0xed, 0xa0, 0xf4, 0x90};
            raw[i] = pool[mx_test_rand(&seed) % sizeof(pool)];
            ids[i] = 3 + raw[i];
        }
        size_t sl, rl;
        char *st = stream_all(t, ids, k, 0, &sl);
        char *r = py_replace(raw, k, &rl);
        assert_int_equal(sl, rl);
        assert_memory_equal(st, r, rl);
        free(st);
        free(r);
    }
    mx_tokenizer_free(t);
}

/* ---- CLIP ----------------------------------------------------------------------------------- */

/* Writes t's vocabulary as a diffusers tokenizer/ folder: vocab.json {text: id}, merges.txt. */
static void write_diffusers(const struct mx_tokenizer *t, const char *merges, const char *dir) {
    char path[256];
    json_t *v = json_object();
    for (int32_t i = 0; i < mx_tokenizer_n_vocab(t); i++) {
        size_t len;
        const char *s = mx_tokenizer_token_text(t, i, &len);
        json_object_setn_new(v, s, len, json_integer(i));
    }
    snprintf(path, sizeof(path), "%s/vocab.json", dir);
    assert_int_equal(json_dump_file(v, path, 0), 0);
    json_decref(v);
    snprintf(path, sizeof(path), "%s/merges.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(merges, f);
    fclose(f);
}

static void test_clip_small(void **state) {
    (void)state;
    struct mx_tokenizer *t2_dummy = NULL;
    /* merges: "c a", "ca t</w>", "d o", "do g</w>" -> ids 512.. in that order */
    const char *text = "#version: 0.2\nc a\nca t</w>\nd o\ndo g</w>\n";
    struct mx_tokenizer *t = NULL;
    struct mx_err e = {0};
    assert_int_equal(mx_clip_tokenizer_from_merges(text, strlen(text), &t, &e), 0);
    assert_int_equal(mx_tokenizer_n_vocab(t), 512 + 4 + 2);
    int32_t cat = id_of(t, "cat</w>"), dog = id_of(t, "dog</w>");
    int32_t bos = mx_tokenizer_bos(t), eos = mx_tokenizer_eos(t);
    assert_int_equal(bos, 516);
    assert_int_equal(eos, 517);
    assert_int_equal(id_of(t, "!"), 0); /* bytes_to_unicode order */
    /* lower-casing and whitespace clean-up */
    expect_ids(t, "  CAT \t\n DOG ", 0, (int32_t[]){cat, dog}, 2);
    expect_ids(t, "cat", MX_TOK_ADD_SPECIAL, (int32_t[]){bos, cat, eos}, 3);
    /* punctuation split: "cat," -> cat</w> ,</w> ; a lone byte char gets </w> */
    int32_t comma_w = id_of(t, ",</w>");
    expect_ids(t, "cat,dog", 0, (int32_t[]){cat, comma_w, dog}, 3);
    /* "ca" is no word of its own: c a</w> (a</w> is a byte token) */
    expect_ids(t, "ca", 0, (int32_t[]){id_of(t, "c"), id_of(t, "a</w>")}, 2);

    /* decode: </w> -> space */
    size_t dl;
    char *s = decode(t, (int32_t[]){bos, cat, comma_w, dog, eos}, 5, 0, &dl);
    assert_string_equal(s, "cat , dog ");
    free(s);

    /* padding: BOS ids EOS, then pad */
    int32_t out[160];
    int32_t ids3[] = {cat, cat, cat};
    assert_int_equal(mx_clip_pad(ids3, 3, 77, 49407, true, out, 77), 77);
    assert_int_equal(out[0], MX_CLIP_BOS);
    assert_int_equal(out[4], MX_CLIP_EOS);
    assert_int_equal(out[5], 49407);
    assert_int_equal(out[76], 49407);
    assert_int_equal(mx_clip_pad(ids3, 3, 77, 0, true, out, 77), 77); /* SD 2.x pads with 0 */
    assert_int_equal(out[4], MX_CLIP_EOS);
    assert_int_equal(out[5], 0);
    /* empty prompt: [BOS, EOS, pad...] */
    assert_int_equal(mx_clip_pad(NULL, 0, 77, 49407, true, out, 77), 77);
    assert_int_equal(out[1], MX_CLIP_EOS);
    /* 100 ids: truncated to 75 + EOS, or two windows of 77 */
    int32_t many[100];
    for (int i = 0; i < 100; i++)
        many[i] = i;
    assert_int_equal(mx_clip_pad(many, 100, 77, 49407, true, out, 160), 77);
    assert_int_equal(out[75], 74);
    assert_int_equal(out[76], MX_CLIP_EOS);
    assert_int_equal(mx_clip_pad(many, 100, 77, 49407, false, out, 160), 154);
    assert_int_equal(out[76], MX_CLIP_EOS);
    assert_int_equal(out[77], MX_CLIP_BOS);
    assert_int_equal(out[78], 75);
    assert_int_equal(out[102], 99);
    assert_int_equal(out[103], MX_CLIP_EOS);
    assert_int_equal(out[104], 49407);
    /* exactly 75: one window, no second */
    assert_int_equal(mx_clip_pad(many, 75, 77, 49407, false, out, 160), 77);
    assert_int_equal(out[76], MX_CLIP_EOS);
    /* too small a buffer: the needed count, no overflow */
    assert_int_equal(mx_clip_pad(many, 100, 77, 49407, false, out, 10), 154);
    assert_int_equal(mx_clip_pad(many, 100, 2, 49407, false, out, 10), MX_EINVAL);

    /* the same vocabulary as a diffusers tokenizer/ folder (vocab.json + merges.txt) */
    char dir[] = "/tmp/mx-clip-XXXXXX";
    assert_non_null(mkdtemp(dir));
    write_diffusers(t, text, dir);
    char path[256];
    const char *forms[] = {"", "/vocab.json", "/merges.txt"};
    for (size_t f = 0; f < MX_ARRAY_LEN(forms); f++) {
        struct mx_tokenizer *t2 = NULL;
        snprintf(path, sizeof(path), "%s%s", dir, forms[f]);
        mx_err_clear(&e);
        int rc = mx_clip_tokenizer_load(path, &t2, &e);
        if (rc < 0)
            fail_msg("%s: %s", path, mx_err_msg(&e, rc));
        assert_int_equal(mx_tokenizer_n_vocab(t2), mx_tokenizer_n_vocab(t));
        assert_int_equal(mx_tokenizer_bos(t2), bos);
        assert_int_equal(mx_tokenizer_eos(t2), eos);
        expect_ids(t2, "A cat, a DOG!", MX_TOK_ADD_SPECIAL,
                   (int32_t[]){bos, id_of(t, "a</w>"), cat, comma_w, id_of(t, "a</w>"), dog,
                               id_of(t, "!</w>"), eos}, 8);
        mx_tokenizer_free(t2);
    }
    /* a broken vocab.json: a clear error, no crash */
    snprintf(path, sizeof(path), "%s/vocab.json", dir);
    FILE *vf = fopen(path, "w");
    fputs("{\"a\": 0, \"b\": 0}", vf);
    fclose(vf);
    mx_err_clear(&e);
    assert_int_equal(mx_clip_tokenizer_load(dir, &t2_dummy, &e), MX_EFORMAT);
    assert_non_null(strstr(e.msg, "vocab.json"));
    remove(path);
    snprintf(path, sizeof(path), "%s/merges.txt", dir);
    remove(path);
    rmdir(dir);
    mx_tokenizer_free(t);

    /* a missing vocabulary says how to get it */
    mx_err_clear(&e);
    assert_int_equal(mx_clip_tokenizer_load("/nonexistent/clip", &t, &e), MX_ENOENT);
    assert_null(t);
    assert_non_null(strstr(e.msg, "install-clip-vocab.sh"));
    mx_err_clear(&e);
    assert_int_equal(mx_clip_tokenizer_from_merges("#version: 0.2\n", 14, &t, &e), MX_EFORMAT);
}

/* The real vocabulary: $MX_CLIP_VOCAB, or the default install path. */
static struct mx_tokenizer *clip_real(void) {
    struct mx_tokenizer *t = NULL;
    struct mx_err e = {0};
    const char *p = getenv("MX_CLIP_VOCAB");
    int rc = mx_clip_tokenizer_load(p && *p ? p : NULL, &t, &e);
    if (rc < 0)
        mx_test_skip("real CLIP vocabulary cases (scripts/install-clip-vocab.sh installs it): %s",
                     mx_err_msg(&e, rc));
    return t;
}

static void test_clip_real(void **state) {
    (void)state;
    struct mx_tokenizer *t = clip_real();
    assert_int_equal(mx_tokenizer_n_vocab(t), 49408);
    assert_int_equal(mx_tokenizer_bos(t), MX_CLIP_BOS);
    assert_int_equal(mx_tokenizer_eos(t), MX_CLIP_EOS);
    /* ids from refs/sd (stable-diffusion.cpp) for the prompts used there */
    expect_ids(t, "a photo of a cat", MX_TOK_ADD_SPECIAL,
               (int32_t[]){49406, 320, 1125, 539, 320, 2368, 49407}, 7);
    expect_ids(t, "blurry, low quality", MX_TOK_ADD_SPECIAL,
               (int32_t[]){49406, 21977, 267, 1042, 3027, 49407}, 6);
    expect_ids(t, "a red square and a green ball", MX_TOK_ADD_SPECIAL,
               (int32_t[]){49406, 320, 736, 3999, 537, 320, 1901, 1069, 49407}, 9);
    expect_ids(t, "a blue square", MX_TOK_ADD_SPECIAL,
               (int32_t[]){49406, 320, 1746, 3999, 49407}, 5);
    /* sd-s06 "a (red:1.3) cube, [blurry]" once the weighting syntax is parsed away */
    expect_ids(t, "a red cube, blurry", 0, (int32_t[]){320, 736, 11353, 267, 21977}, 5);
    /* upper case is the same */
    expect_ids(t, "A PHOTO OF A CAT", 0, (int32_t[]){320, 1125, 539, 320, 2368}, 5);
    size_t dl;
    char *s = decode(t, (int32_t[]){49406, 320, 1125, 539, 320, 2368, 49407}, 7, 0, &dl);
    assert_string_equal(s, "a photo of a cat ");
    free(s);

    /* every refs/sd case: prompt ids (when it has no weighting syntax) and tokens_*.i32 */
    const char *shared = mx_test_shared_dir();
    if (!shared) {
        mx_tokenizer_free(t);
        mx_test_skip("the refs/sd CLIP prompts need ../shared (set MX_SHARED)");
    }
    char dir[1024];
    snprintf(dir, sizeof(dir), "%s/refs/sd", shared);
    DIR *dp = opendir(dir);
    struct dirent *de;
    int checked = 0, files = 0;
    while (dp && (de = readdir(dp))) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0 || strncmp(de->d_name, "sd-", 3))
            continue;
        char rel[512];
        snprintf(rel, sizeof(rel), "refs/sd/%s", de->d_name);
        json_t *j = load_json(shared, rel);
        json_t *tk = json_object_get(j, "tokens");
        const char *keys[2] = {"prompt", "negative_prompt"};
        const char *which[2] = {"cond", "uncond"};
        for (int k = 0; k < 2 && tk; k++) {
            const char *p = json_string_value(json_object_get(j, keys[k]));
            json_t *want = json_object_get(json_object_get(tk, which[k]), "ids_until_first_eos");
            if (!p || !want || strpbrk(p, "()[]:"))
                continue;
            int32_t *ids;
            size_t n;
            encode(t, p, strlen(p), MX_TOK_ADD_SPECIAL, &ids, &n);
            assert_true(ids_equal(ids, n, want, de->d_name, p));
            /* the padded window the peer fed its text encoder, when dumped */
            char path[1200];
            snprintf(path, sizeof(path), "%s/refs/sd/%.*s_tensors/tokens_%s.i32", shared,
                     (int)(l - 5), de->d_name, which[k]);
            FILE *f = fopen(path, "rb");
            if (f) {
                int32_t ref[77], got[77];
                assert_int_equal(fread(ref, 4, 77, f), 77);
                fclose(f);
                free(ids);
                encode(t, p, strlen(p), 0, &ids, &n); /* without BOS/EOS */
                assert_int_equal(mx_clip_pad(ids, n, 77, 49407, true, got, 77), 77);
                assert_memory_equal(got, ref, sizeof(ref));
                files++;
            }
            free(ids);
            checked++;
        }
        json_decref(j);
    }
    if (dp)
        closedir(dp);
    printf("CLIP: %d refs/sd prompts checked, %d padded token files\n", checked, files);
    assert_true(checked >= 10);
    mx_tokenizer_free(t);
}

/* ---- GGUF layer ------------------------------------------------------------------------------ */

static void test_gguf_layer(void **state) {
    (void)state;
    /* a GGUF written in memory with a gpt2 tokenizer, and bad variants of it */
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    const char *toks[] = {"a", "b", "ab", "<s>"};
    const char *merges[] = {"a b"};
    int32_t types[] = {1, 1, 1, 3};
    assert_int_equal(mx_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2"), 0);
    assert_int_equal(mx_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, 4), 0);
    assert_int_equal(mx_gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", merges, 1), 0);
    assert_int_equal(mx_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", MX_GGUF_INT32, types,
                                            4), 0);
    assert_int_equal(mx_gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe"), 0);
    assert_int_equal(mx_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 3), 0);
    void *buf;
    size_t size;
    struct mx_err e = {0};
    struct mx_gguf *g;
    struct mx_tokenizer *t;
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, &e), 0);
    assert_int_equal(mx_gguf_open_mem(buf, size, "mem.gguf", &g, &e), 0);
    assert_int_equal(mx_tokenizer_from_gguf(g, &t, &e), 0);
    assert_int_equal(mx_tokenizer_kind(t), MX_TOK_BPE);
    assert_true(mx_tokenizer_add_bos(t)); /* llama-bpe adds BOS */
    expect_ids(t, "ab", MX_TOK_ADD_SPECIAL, (int32_t[]){3, 2}, 2);
    mx_tokenizer_free(t);
    mx_gguf_close(g);
    free(buf);

    /* an unknown pre-tokenizer is refused, naming it (llama.cpp refuses it too) */
    assert_int_equal(mx_gguf_writer_set_str(w, "tokenizer.ggml.pre", "no-such-pre"), 0);
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, &e), 0);
    assert_int_equal(mx_gguf_open_mem(buf, size, "pre.gguf", &g, &e), 0);
    mx_err_clear(&e);
    assert_int_equal(mx_tokenizer_from_gguf(g, &t, &e), MX_EUNSUP);
    assert_null(t);
    assert_non_null(strstr(e.msg, "'no-such-pre'"));
    assert_non_null(strstr(e.msg, "pre.gguf"));
    mx_gguf_close(g);
    free(buf);
    /* "qwen2": no BOS added, spaces kept on decode */
    assert_int_equal(mx_gguf_writer_set_str(w, "tokenizer.ggml.pre", "qwen2"), 0);
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, &e), 0);
    assert_int_equal(mx_gguf_open_mem(buf, size, "qwen2.gguf", &g, &e), 0);
    assert_int_equal(mx_tokenizer_from_gguf(g, &t, &e), 0);
    assert_false(mx_tokenizer_add_bos(t));
    expect_ids(t, "ab", MX_TOK_ADD_SPECIAL, (int32_t[]){2}, 1);
    mx_tokenizer_free(t);
    mx_gguf_close(g);
    free(buf);
    assert_int_equal(mx_gguf_writer_set_str(w, "tokenizer.ggml.pre", "llama-bpe"), 0);

    /* token types stored as uint32 (some converters do): read all the same */
    uint32_t utypes[] = {1, 1, 1, 3};
    assert_int_equal(mx_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", MX_GGUF_UINT32,
                                            utypes, 4), 0);
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, &e), 0);
    assert_int_equal(mx_gguf_open_mem(buf, size, "u32.gguf", &g, &e), 0);
    assert_int_equal(mx_tokenizer_from_gguf(g, &t, &e), 0);
    assert_int_equal(mx_tokenizer_token_type(t, 3), MX_TOKT_CONTROL);
    mx_tokenizer_free(t);
    mx_gguf_close(g);
    free(buf);
    /* scores that are strings: a clear error */
    assert_int_equal(mx_gguf_writer_set_arr_str(w, "tokenizer.ggml.scores", toks, 4), 0);
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, &e), 0);
    assert_int_equal(mx_gguf_open_mem(buf, size, "str.gguf", &g, &e), 0);
    mx_err_clear(&e);
    assert_int_equal(mx_tokenizer_from_gguf(g, &t, &e), MX_EFORMAT);
    assert_non_null(strstr(e.msg, "tokenizer.ggml.scores"));
    mx_gguf_close(g);
    free(buf);

    /* a scores array of the wrong length */
    float sc[3] = {0};
    assert_int_equal(mx_gguf_writer_set_arr(w, "tokenizer.ggml.scores", MX_GGUF_FLOAT32, sc, 3),
                     0);
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, &e), 0);
    assert_int_equal(mx_gguf_open_mem(buf, size, "bad.gguf", &g, &e), 0);
    mx_err_clear(&e);
    assert_int_equal(mx_tokenizer_from_gguf(g, &t, &e), MX_EFORMAT);
    assert_null(t);
    assert_non_null(strstr(e.msg, "bad.gguf"));
    mx_gguf_close(g);
    free(buf);

    /* an unsupported tokenizer kind */
    assert_int_equal(mx_gguf_writer_set_str(w, "tokenizer.ggml.model", "bert"), 0);
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, &e), 0);
    assert_int_equal(mx_gguf_open_mem(buf, size, "bert.gguf", &g, &e), 0);
    mx_err_clear(&e);
    assert_int_equal(mx_tokenizer_from_gguf(g, &t, &e), MX_EUNSUP);
    assert_non_null(strstr(e.msg, "bert"));
    mx_gguf_close(g);
    free(buf);
    mx_gguf_writer_free(w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spm_small_vocab),
        cmocka_unit_test(test_bad_descriptions),
        cmocka_unit_test(test_split_gpt2),
        cmocka_unit_test(test_split_llama3),
        cmocka_unit_test(test_split_tekken),
        cmocka_unit_test(test_split_clip),
        cmocka_unit_test(test_regex),
        cmocka_unit_test(test_pre_table),
        cmocka_unit_test(test_bpe_small_vocab),
        cmocka_unit_test(test_stream_utf8),
        cmocka_unit_test(test_clip_small),
        cmocka_unit_test(test_gguf_layer),
        cmocka_unit_test(test_spm_golden_llama2),
        cmocka_unit_test(test_spm_golden_stories),
        cmocka_unit_test(test_spm_logits_goldens),
        cmocka_unit_test(test_clip_real),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
