/* test_chat_model.c - the chat layer on real model files (../shared/models): template choice
 * from GGUF metadata (absent template -> documented default; an embedded template -> its
 * family), and the BOS contract with the real SentencePiece tokenizer: tokenizing text +
 * tok_offset with add_bos gives exactly the ids of the whole rendered text parsed with specials
 * (llama.cpp's path), with one BOS; multi-turn prefix reuse measured with real tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/chat_vocab.h"
#include "tests/mx_test.h"

static const char *shared;

struct model {
    struct mx_gguf *g;
    struct mx_tokenizer *t;
};

static void model_open(struct model *m, const char *name) {
    char path[4096];
    struct mx_err e = {0};
    snprintf(path, sizeof(path), "%s/models/%s", shared, name);
    if (mx_gguf_open(path, &m->g, &e) != 0)
        fail_msg("%s", e.msg);
    if (mx_tokenizer_from_gguf(m->g, &m->t, &e) != 0)
        fail_msg("%s", e.msg);
}

static void model_close(struct model *m) {
    mx_tokenizer_free(m->t);
    mx_gguf_close(m->g);
}

/* The shared models carry no chat template and are llama-architecture: mistral-v1, with a
 * warning; --chat-template overrides. */
static void test_choose_from_gguf(void **state) {
    (void)state;
    struct model m;
    struct mx_tmpl_choice ch;
    model_open(&m, "tiny-mixtral-f32.gguf");
    assert_int_equal(mx_chat_choose_template(m.g, NULL, &ch, NULL), 0);
    assert_int_equal(ch.kind, MX_TMPL_MISTRAL_V1);
    assert_string_equal(ch.source, "default");
    assert_non_null(strstr(ch.warning, "no chat template"));
    assert_int_equal(mx_chat_choose_template(m.g, "chatml", &ch, NULL), 0);
    assert_int_equal(ch.kind, MX_TMPL_CHATML);
    model_close(&m);
}

/* A GGUF that embeds a template (written with the project's own GGUF writer): the family is
 * detected from the text; a non-string chat_template is a format error. */
static void test_choose_embedded(void **state) {
    (void)state;
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    struct mx_gguf *g = NULL;
    struct mx_tmpl_choice ch;
    struct mx_err e = {0};
    void *buf = NULL;
    size_t size = 0;
    assert_non_null(w);
    assert_int_equal(mx_gguf_writer_set_str(w, "general.architecture", "llama"), 0);
    assert_int_equal(mx_gguf_writer_set_str(w, "tokenizer.chat_template",
                                            "{{- bos_token }}{%- for message in loop_messages %}"
                                            "{{- \"[AVAILABLE_TOOLS][\" }}{{- \"[INST]\" + "
                                            "message[\"content\"] + \"[/INST]\" }}"),
                     0);
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, &e), 0);
    assert_int_equal(mx_gguf_open_mem(buf, size, "nemo.gguf", &g, &e), 0);
    assert_int_equal(mx_chat_choose_template(g, NULL, &ch, &e), 0);
    assert_int_equal(ch.kind, MX_TMPL_MISTRAL_V3_TEKKEN);
    assert_string_equal(ch.source, "gguf");
    assert_string_equal(ch.warning, "");
    mx_gguf_close(g);
    free(buf);
    mx_gguf_writer_free(w);

    w = mx_gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(mx_gguf_writer_set_u32(w, "tokenizer.chat_template", 7), 0);
    assert_int_equal(mx_gguf_writer_write_mem(w, 3, &buf, &size, &e), 0);
    assert_int_equal(mx_gguf_open_mem(buf, size, "bad.gguf", &g, &e), 0);
    assert_int_equal(mx_chat_choose_template(g, NULL, &ch, &e), MX_EFORMAT);
    mx_gguf_close(g);
    free(buf);
    mx_gguf_writer_free(w);
    assert_int_equal(mx_chat_choose_template(NULL, NULL, &ch, NULL), MX_EINVAL);
}

static const struct mx_chat_msg conv[] = {
    {MX_ROLE_SYSTEM, "You are a helpful assistant", NULL, 0, NULL},
    {MX_ROLE_USER, "Hello", NULL, 0, NULL},
    {MX_ROLE_ASSISTANT, "Hi there", NULL, 0, NULL},
    {MX_ROLE_USER, "Who are you?", NULL, 0, NULL},
};

static size_t count_id(const int32_t *v, size_t n, int32_t id) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += v[i] == id;
    return c;
}

/* For every family: the engine path (text + tok_offset, BOS id prepended when add_bos) equals
 * tokenizing the whole rendered text with specials parsed and no BOS added, i.e. what
 * llama.cpp evaluates. The vocabulary's own <s>/</s> strings are used. */
static void test_bos_contract_real_tokenizer(void **state) {
    (void)state;
    struct model m;
    struct mx_chat_vocab v;
    struct mx_err e = {0};
    model_open(&m, "llama2-vocab.gguf");
    assert_int_equal(mx_chat_vocab_init(&v, m.t, &e), 0);
    assert_string_equal(v.bos, "<s>");
    assert_string_equal(v.eos, "</s>");
    assert_true(v.add_bos);
    struct mx_chat_tokenizer ct = mx_chat_tokenizer_from(m.t);
    int32_t bos = mx_tokenizer_bos(m.t), eos = mx_tokenizer_eos(m.t);

    for (int k = 0; k < MX_TMPL_COUNT; k++) {
        struct mx_tmpl_opts o = {.add_generation_prompt = true};
        struct mx_tmpl_prompt p;
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        mx_chat_vocab_apply(&v, &o);
        if (mx_tmpl_render((enum mx_tmpl_kind)k, conv, 4, &o, &p, &e) != 0)
            fail_msg("%s: %s", mx_tmpl_name((enum mx_tmpl_kind)k), e.msg);
        assert_int_equal(mx_chat_tokenize_prompt(&p, &ct, &a, &na, &e), 0);
        assert_int_equal(mx_tokenizer_encode(m.t, p.text, p.len, MX_TOK_PARSE_SPECIAL, &b, &nb,
                                             &e),
                         0);
        /* Whether or not the template writes BOS, the sequence starts with exactly one BOS
         * (add_bos_token is true for this vocabulary). */
        assert_true(na > 1);
        assert_int_equal(a[0], bos);
        assert_int_not_equal(a[1], bos);
        if (p.tok_offset > 0) {
            assert_int_equal(na, nb);
            assert_memory_equal(a, b, na * sizeof(int32_t));
        } else {
            assert_int_equal(na, nb + 1);
            assert_memory_equal(a + 1, b, nb * sizeof(int32_t));
        }
        /* Llama 2 writes BOS before every user turn and EOS after every answer, as ids. */
        if (k == MX_TMPL_LLAMA2) {
            assert_int_equal(count_id(a, na, bos), 2);
            assert_int_equal(count_id(a, na, eos), 1);
        }
        free(a);
        free(b);
        mx_tmpl_prompt_free(&p);
    }
    model_close(&m);
}

/* Multi-turn with the real tokenizer: the ids of turn 1's prompt plus the answer (as the
 * tokenizer splits it) are a prefix of turn 2's prompt for the Mistral v1 and Llama 2 layouts,
 * so turn 2 prefills only its new user message. Printed: reuse numbers. */
static void test_incremental_real_tokenizer(void **state) {
    (void)state;
    struct model m;
    struct mx_chat_vocab v;
    model_open(&m, "llama2-vocab.gguf");
    assert_int_equal(mx_chat_vocab_init(&v, m.t, NULL), 0);
    struct mx_chat_tokenizer ct = mx_chat_tokenizer_from(m.t);
    const enum mx_tmpl_kind kinds[] = {MX_TMPL_MISTRAL_V1, MX_TMPL_LLAMA2, MX_TMPL_CHATML};
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        struct mx_tmpl_opts o = {.add_generation_prompt = true};
        struct mx_tmpl_prompt p1, p2, p12;
        struct mx_chat_prefill pl;
        int32_t *t12;
        size_t n12;
        mx_chat_vocab_apply(&v, &o);
        /* Turn 1 prompt, and the same conversation once the answer is in (no new prompt):
         * the cache holds exactly those ids after generation if the model produced the
         * answer's canonical tokens. */
        assert_int_equal(mx_tmpl_render(kinds[i], conv + 1, 1, &o, &p1, NULL), 0);
        o.add_generation_prompt = false;
        assert_int_equal(mx_tmpl_render(kinds[i], conv + 1, 2, &o, &p12, NULL), 0);
        o.add_generation_prompt = true;
        assert_int_equal(mx_tmpl_render(kinds[i], conv + 1, 3, &o, &p2, NULL), 0);
        assert_int_equal(mx_chat_tokenize_prompt(&p12, &ct, &t12, &n12, NULL), 0);
        assert_int_equal(mx_chat_plan_prefill(&p2, &ct, t12, n12, &pl, NULL), 0);
        printf("# %s: turn 2 prompt %zu ids, %zu reused, %zu to prefill\n",
               mx_tmpl_name(kinds[i]), pl.n_tokens, pl.n_keep, pl.n_tokens - pl.n_keep);
        assert_int_equal(pl.n_keep, n12);
        assert_int_equal(pl.n_discard, 0);
        free(t12);
        mx_chat_prefill_free(&pl);
        mx_tmpl_prompt_free(&p1);
        mx_tmpl_prompt_free(&p12);
        mx_tmpl_prompt_free(&p2);
    }
    model_close(&m);
}

int main(void) {
    shared = mx_test_require_shared("test_chat_model");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_choose_from_gguf),
        cmocka_unit_test(test_choose_embedded),
        cmocka_unit_test(test_bos_contract_real_tokenizer),
        cmocka_unit_test(test_incremental_real_tokenizer),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
