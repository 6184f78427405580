/* test_arch_template.c - chat templates of the MoE families (qwen3, granite, tulu): mixel's C
 * renderers against the published Jinja templates rendered by a Jinja engine
 * (tests/golden/arch/templates.json, made by render_templates.cjs there: Qwen3-0.6B's template
 * and Granite 3.0's, through @huggingface/jinja), on conversations that exercise what each
 * template does (Qwen3: reasoning kept only after the last user query, stripped from history,
 * split on the last <think>/</think>; later system turns), recognition of each family from its
 * template text, and OLMoE's Tulu layout written out by hand from its template. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/template.h"
#include "tests/mx_test.h"

/* The role of a golden message. */
static enum mx_role role_of(const char *s) {
    if (!strcmp(s, "system"))
        return MX_ROLE_SYSTEM;
    if (!strcmp(s, "user"))
        return MX_ROLE_USER;
    if (!strcmp(s, "assistant"))
        return MX_ROLE_ASSISTANT;
    return MX_ROLE_TOOL;
}

/* Every golden case: the family renders exactly the engine's text. */
static void test_jinja_goldens(void **state) {
    (void)state;
    const char *src = getenv("MX_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/arch/templates.json", src ? src : ".");
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je);
    if (!g)
        fail_msg("%s: %s", path, je.text);
    json_t *cases = json_object_get(g, "cases");
    assert_true(json_array_size(cases) >= 20);
    size_t n_ok = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        enum mx_tmpl_kind k;
        struct mx_err e = {0};
        assert_int_equal(mx_tmpl_from_name(json_string_value(json_object_get(c, "family")), &k,
                                           &e), 0);
        json_t *ms = json_object_get(c, "messages");
        struct mx_chat_msg m[16] = {0};
        size_t n = json_array_size(ms);
        assert_true(n > 0 && n <= 16);
        for (size_t j = 0; j < n; j++) {
            json_t *mj = json_array_get(ms, j);
            m[j].role = role_of(json_string_value(json_object_get(mj, "role")));
            m[j].content = json_string_value(json_object_get(mj, "content"));
        }
        struct mx_tmpl_opts o = {0};
        o.add_generation_prompt = json_is_true(json_object_get(c, "add_generation_prompt"));
        struct mx_tmpl_prompt p;
        int rc = mx_tmpl_render(k, m, n, &o, &p, &e);
        if (rc < 0)
            fail_msg("case %zu (%s): %s", i, mx_tmpl_name(k), e.msg);
        const char *want = json_string_value(json_object_get(c, "text"));
        if (strcmp(p.text, want) != 0)
            fail_msg("case %zu (%s, %s, agp %d):\n got: %s\nwant: %s", i, mx_tmpl_name(k),
                     json_string_value(json_object_get(c, "conv")), o.add_generation_prompt,
                     p.text, want);
        mx_tmpl_prompt_free(&p);
        n_ok++;
    }
    printf("%zu renders equal to the Jinja engine's\n", n_ok);
    json_decref(g);
}

/* OLMoE-1B-7B-0924-Instruct (Tulu): BOS, "<|role|>\n" + content + "\n", EOS after answers,
 * "<|assistant|>\n" to prompt. BOS is split off for the engine to add as an id. */
static void test_tulu(void **state) {
    (void)state;
    static const struct mx_chat_msg m[] = {
        {MX_ROLE_SYSTEM, "Be brief.", NULL, 0, NULL},
        {MX_ROLE_USER, "Hello", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, " Hi ", NULL, 0, NULL},
        {MX_ROLE_USER, "Who are you?", NULL, 0, NULL},
    };
    struct mx_tmpl_opts o = {0};
    o.add_generation_prompt = true;
    struct mx_tmpl_prompt p;
    struct mx_err e = {0};
    assert_int_equal(mx_tmpl_render(MX_TMPL_TULU, m, 4, &o, &p, &e), 0);
    assert_string_equal(p.text, "<|endoftext|><|system|>\nBe brief.\n<|user|>\nHello\n"
                                "<|assistant|>\n Hi <|endoftext|>\n<|user|>\nWho are you?\n"
                                "<|assistant|>\n");
    assert_int_equal(p.tok_offset, strlen("<|endoftext|>"));
    assert_true(p.add_bos);
    mx_tmpl_prompt_free(&p);
    /* a 'tool' role has no Tulu syntax: it goes through the generic tool rewrite */
    static const struct mx_chat_msg t[] = {
        {MX_ROLE_USER, "Hello", NULL, 0, NULL},
        {MX_ROLE_TOOL, "{\"x\": 1}", NULL, 0, NULL},
    };
    assert_int_equal(mx_tmpl_render(MX_TMPL_TULU, t, 2, &o, &p, &e), 0);
    assert_non_null(strstr(p.text, "<|user|>\n"));
    mx_tmpl_prompt_free(&p);
}

/* Each family from its template text; the families next to them stay what they were. */
static void test_detect_families(void **state) {
    (void)state;
    const char *src = getenv("MX_SRCDIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/arch/templates.json", src ? src : ".");
    static const struct {
        const char *text;
        enum mx_tmpl_kind want;
    } cases[] = {
        /* Qwen3-30B-A3B / Qwen3-0.6B (excerpt) */
        {"{%- if message.reasoning_content is defined and message.reasoning_content is not none "
         "%}...{{- '<|im_start|>' + message.role + '\\n<think>\\n' + reasoning_content.strip("
         "'\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') }}",
         MX_TMPL_QWEN3},
        /* Qwen1.5-MoE-A2.7B-Chat / Qwen2-57B-A14B-Instruct: plain ChatML */
        {"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
         "{{ '<|im_start|>system\\nYou are a helpful assistant<|im_end|>\\n' }}{% endif %}{{'"
         "<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}",
         MX_TMPL_CHATML},
        /* granite-3.0-1b-a400m-instruct (excerpt) */
        {"{{- '<|start_of_role|>system<|end_of_role|>' + message['content'] + '<|end_of_text|>\\n'"
         " }}",
         MX_TMPL_GRANITE},
        /* OLMoE-1B-7B-0924-Instruct (Tulu) */
        {"{{ bos_token }}{% for message in messages %}\n{% if message['role'] == 'system' %}\n{{ "
         "'<|system|>\\n' + message['content'] }}\n{% elif message['role'] == 'user' %}\n{{ "
         "'<|user|>\\n' + message['content'] }}\n{% elif message['role'] == 'assistant' %}\n{{ "
         "'<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}",
         MX_TMPL_TULU},
        /* zephyr-7b-beta: every turn ends with eos_token */
        {"{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token "
         "}}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + "
         "message['content'] + eos_token }}",
         MX_TMPL_ZEPHYR},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum mx_tmpl_kind k = MX_TMPL_COUNT;
        if (!mx_tmpl_detect(cases[i].text, &k) || k != cases[i].want)
            fail_msg("case %zu: detected %s, want %s", i, mx_tmpl_name(k),
                     mx_tmpl_name(cases[i].want));
    }
    /* the whole published Qwen3 template, as shipped in llama.cpp's models/templates */
    const char *ll = getenv("MX_LLAMA_CPP_SRC");
    if (ll) {
        snprintf(path, sizeof path, "%s/models/templates/Qwen-Qwen3-0.6B.jinja", ll);
        FILE *f = fopen(path, "rb");
        if (f) {
            static char buf[1 << 16];
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            buf[n] = '\0';
            fclose(f);
            enum mx_tmpl_kind k = MX_TMPL_COUNT;
            assert_true(mx_tmpl_detect(buf, &k));
            assert_int_equal(k, MX_TMPL_QWEN3);
        }
    }
    /* stop strings: Qwen3 ends turns with <|im_end|>, Granite with <|end_of_text|> */
    assert_string_equal(mx_tmpl_stop_strings(MX_TMPL_QWEN3)[0], "<|im_end|>");
    assert_string_equal(mx_tmpl_stop_strings(MX_TMPL_GRANITE)[0], "<|end_of_text|>");
    enum mx_tmpl_kind k;
    assert_int_equal(mx_tmpl_from_name("qwen3", &k, NULL), 0);
    assert_int_equal(k, MX_TMPL_QWEN3);
    assert_non_null(strstr(mx_tmpl_names(), "granite"));
    assert_non_null(strstr(mx_tmpl_names(), "tulu"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jinja_goldens),
        cmocka_unit_test(test_tulu),
        cmocka_unit_test(test_detect_families),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
