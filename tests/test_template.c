/* test_template.c - chat templates: golden renders per family (expected strings written by hand
 * from each model's Jinja template, rule by rule), llama.cpp's published Jinja outputs as a
 * second oracle, family detection on real template texts, name lookup and the default policy,
 * BOS handling, and bad input (roles a template cannot express, NULL content, huge content). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/template.h"
#include "tests/mx_test.h"

#define SYS "You are a helpful assistant"
#define A1 "  Hi there  " /* padded: shows which templates trim */

/* The conversation every golden uses: system + user + assistant + user. */
static const struct mx_chat_msg conv_sys[] = {
    {MX_ROLE_SYSTEM, SYS, NULL, 0, NULL},
    {MX_ROLE_USER, "Hello", NULL, 0, NULL},
    {MX_ROLE_ASSISTANT, A1, NULL, 0, NULL},
    {MX_ROLE_USER, "Who are you?", NULL, 0, NULL},
};
#define CONV_NOSYS (conv_sys + 1)

/* Renders and checks text, BOS split and status; frees. */
static void expect_render(enum mx_tmpl_kind k, const struct mx_chat_msg *m, size_t n, bool agp,
                          const char *want, size_t want_off, bool want_bos) {
    struct mx_tmpl_opts o = {0};
    struct mx_tmpl_prompt p;
    struct mx_err e = {0};
    o.add_generation_prompt = agp;
    o.model_add_bos = false;
    int rc = mx_tmpl_render(k, m, n, &o, &p, &e);
    if (rc != 0)
        fail_msg("%s: %s", mx_tmpl_name(k), e.msg);
    assert_string_equal(p.text, want);
    assert_int_equal(p.len, strlen(want));
    assert_int_equal(p.tok_offset, want_off);
    assert_int_equal(p.add_bos, want_bos);
    mx_tmpl_prompt_free(&p);
    assert_null(p.text);
}

/* Expects failure with code rc; returns nothing, checks the output is left empty. */
static void expect_fail(enum mx_tmpl_kind k, const struct mx_chat_msg *m, size_t n,
                        const struct mx_tmpl_opts *o, int want_rc, const char *msg_part) {
    struct mx_tmpl_prompt p;
    struct mx_err e = {0};
    int rc = mx_tmpl_render(k, m, n, o, &p, &e);
    if (rc != want_rc)
        fail_msg("%s: rc %d, want %d (%s)", mx_tmpl_name(k), rc, want_rc, e.msg);
    assert_null(p.text);
    assert_int_equal(p.len, 0);
    if (msg_part && !strstr(e.msg, msg_part))
        fail_msg("%s: message '%s' lacks '%s'", mx_tmpl_name(k), e.msg, msg_part);
    mx_tmpl_prompt_free(&p);
}

/* ChatML: '<|im_start|>' + role + '\n' + content + '<|im_end|>\n' per message, then
 * '<|im_start|>assistant\n'. Content untouched (no trim); no BOS in the text, so add_bos is the
 * model's flag (false here). */
static void test_chatml(void **state) {
    (void)state;
    expect_render(MX_TMPL_CHATML, conv_sys, 4, true,
                  "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
                  "<|im_start|>user\nHello<|im_end|>\n"
                  "<|im_start|>assistant\n  Hi there  <|im_end|>\n"
                  "<|im_start|>user\nWho are you?<|im_end|>\n"
                  "<|im_start|>assistant\n",
                  0, false);
    expect_render(MX_TMPL_CHATML, CONV_NOSYS, 3, false,
                  "<|im_start|>user\nHello<|im_end|>\n"
                  "<|im_start|>assistant\n  Hi there  <|im_end|>\n"
                  "<|im_start|>user\nWho are you?<|im_end|>\n",
                  0, false);
}

/* Llama 3: bos_token before the first header; '<|start_header_id|>' + role +
 * '<|end_header_id|>\n\n' + content|trim + '<|eot_id|>'; prompt is the assistant header. */
static void test_llama3(void **state) {
    (void)state;
    expect_render(MX_TMPL_LLAMA3, conv_sys, 4, true,
                  "<|begin_of_text|>"
                  "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant"
                  "<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n",
                  strlen("<|begin_of_text|>"), true);
    expect_render(MX_TMPL_LLAMA3, CONV_NOSYS, 3, true,
                  "<|begin_of_text|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\nWho are you?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n",
                  strlen("<|begin_of_text|>"), true);
}

/* Zephyr: '<|role|>\n' + content + eos_token, and the newline after each {{ }} survives
 * trim_blocks; prompt '<|assistant|>' + that newline. */
static void test_zephyr(void **state) {
    (void)state;
    expect_render(MX_TMPL_ZEPHYR, conv_sys, 4, true,
                  "<|system|>\nYou are a helpful assistant</s>\n"
                  "<|user|>\nHello</s>\n"
                  "<|assistant|>\n  Hi there  </s>\n"
                  "<|user|>\nWho are you?</s>\n"
                  "<|assistant|>\n",
                  0, false);
    expect_render(MX_TMPL_ZEPHYR, CONV_NOSYS, 3, false,
                  "<|user|>\nHello</s>\n<|assistant|>\n  Hi there  </s>\n"
                  "<|user|>\nWho are you?</s>\n",
                  0, false);
}

/* Phi-3: '<|role|>\n' + content + '<|end|>\n'; prompt '<|assistant|>\n', else eos_token. */
static void test_phi3(void **state) {
    (void)state;
    expect_render(MX_TMPL_PHI3, conv_sys, 4, true,
                  "<|system|>\nYou are a helpful assistant<|end|>\n"
                  "<|user|>\nHello<|end|>\n"
                  "<|assistant|>\n  Hi there  <|end|>\n"
                  "<|user|>\nWho are you?<|end|>\n"
                  "<|assistant|>\n",
                  0, false);
    expect_render(MX_TMPL_PHI3, CONV_NOSYS, 3, false,
                  "<|user|>\nHello<|end|>\n<|assistant|>\n  Hi there  <|end|>\n"
                  "<|user|>\nWho are you?<|end|>\n<|endoftext|>",
                  0, false);
}

/* Gemma: bos_token; system content + '\n\n' opens the first user turn; assistant is 'model';
 * content|trim; '<end_of_turn>\n' after each turn; prompt '<start_of_turn>model\n'. */
static void test_gemma(void **state) {
    (void)state;
    expect_render(MX_TMPL_GEMMA, conv_sys, 4, true,
                  "<bos><start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
                  "<start_of_turn>model\nHi there<end_of_turn>\n"
                  "<start_of_turn>user\nWho are you?<end_of_turn>\n"
                  "<start_of_turn>model\n",
                  5, true);
    expect_render(MX_TMPL_GEMMA, CONV_NOSYS, 3, true,
                  "<bos><start_of_turn>user\nHello<end_of_turn>\n"
                  "<start_of_turn>model\nHi there<end_of_turn>\n"
                  "<start_of_turn>user\nWho are you?<end_of_turn>\n"
                  "<start_of_turn>model\n",
                  5, true);
}

/* Llama 2: user turns are bos + '[INST] ' + strip() + ' [/INST]'; answers ' ' + strip() + ' ' +
 * eos; the system block '<<SYS>>\n' + sys + '\n<</SYS>>\n\n' opens the first user message. BOS
 * appears mid-text too (it is parsed as a special token there). add_generation_prompt has no
 * effect: the text already ends with [/INST]. */
static void test_llama2(void **state) {
    (void)state;
    expect_render(MX_TMPL_LLAMA2, conv_sys, 4, true,
                  "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]"
                  " Hi there </s><s>[INST] Who are you? [/INST]",
                  3, true);
    expect_render(MX_TMPL_LLAMA2, CONV_NOSYS, 3, false,
                  "<s>[INST] Hello [/INST] Hi there </s><s>[INST] Who are you? [/INST]", 3, true);
}

/* Mistral legacy (first Mixtral-8x7B template): bos + '[INST] ' + content + ' [/INST]', answer
 * content + eos with no space; the system message joins the first user message with "\n\n". */
static void test_mistral_legacy(void **state) {
    (void)state;
    expect_render(MX_TMPL_MISTRAL_LEGACY, conv_sys, 4, true,
                  "<s>[INST] You are a helpful assistant\n\nHello [/INST]  Hi there  </s>"
                  "[INST] Who are you? [/INST]",
                  3, true);
    expect_render(MX_TMPL_MISTRAL_LEGACY, CONV_NOSYS, 3, true,
                  "<s>[INST] Hello [/INST]  Hi there  </s>[INST] Who are you? [/INST]", 3, true);
}

/* Mistral v1 (Mixtral-8x7B-Instruct 2024 template): ' [INST] ' + (sys + '\n\n' on the first
 * user message) + content + ' [/INST]'; answer ' ' + content + eos (untrimmed). */
static void test_mistral_v1(void **state) {
    (void)state;
    expect_render(MX_TMPL_MISTRAL_V1, conv_sys, 4, true,
                  "<s> [INST] You are a helpful assistant\n\nHello [/INST]   Hi there  </s>"
                  " [INST] Who are you? [/INST]",
                  3, true);
    expect_render(MX_TMPL_MISTRAL_V1, CONV_NOSYS, 3, true,
                  "<s> [INST] Hello [/INST]   Hi there  </s> [INST] Who are you? [/INST]", 3,
                  true);
}

/* Mistral v3: '[INST] ' + content + '[/INST]', answer ' ' + content|trim + eos, and the system
 * prompt goes before the LAST message when it is a user message (loop.last) - nowhere when the
 * conversation ends with an answer. */
static void test_mistral_v3(void **state) {
    (void)state;
    expect_render(MX_TMPL_MISTRAL_V3, conv_sys, 4, true,
                  "<s>[INST] Hello[/INST] Hi there</s>"
                  "[INST] You are a helpful assistant\n\nWho are you?[/INST]",
                  3, true);
    expect_render(MX_TMPL_MISTRAL_V3, CONV_NOSYS, 3, true,
                  "<s>[INST] Hello[/INST] Hi there</s>[INST] Who are you?[/INST]", 3, true);
    /* Ending with an answer: the system prompt disappears (the Jinja's loop.last rule). */
    expect_render(MX_TMPL_MISTRAL_V3, conv_sys, 3, false, "<s>[INST] Hello[/INST] Hi there</s>", 3,
                  true);
}

/* v3-tekken (Mistral-Nemo): no space after [INST], the answer is content + eos as is. */
static void test_mistral_v3_tekken(void **state) {
    (void)state;
    expect_render(MX_TMPL_MISTRAL_V3_TEKKEN, conv_sys, 4, true,
                  "<s>[INST]Hello[/INST]  Hi there  </s>"
                  "[INST]You are a helpful assistant\n\nWho are you?[/INST]",
                  3, true);
    expect_render(MX_TMPL_MISTRAL_V3_TEKKEN, CONV_NOSYS, 3, true,
                  "<s>[INST]Hello[/INST]  Hi there  </s>[INST]Who are you?[/INST]", 3, true);
}

/* v7: '[SYSTEM_PROMPT] ' + sys + '[/SYSTEM_PROMPT]' up front, '[INST] ' + content + '[/INST]',
 * ' ' + answer + eos. v7-tekken: the same without the spaces. */
static void test_mistral_v7(void **state) {
    (void)state;
    expect_render(MX_TMPL_MISTRAL_V7, conv_sys, 4, true,
                  "<s>[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT]"
                  "[INST] Hello[/INST]   Hi there  </s>[INST] Who are you?[/INST]",
                  3, true);
    expect_render(MX_TMPL_MISTRAL_V7, CONV_NOSYS, 3, true,
                  "<s>[INST] Hello[/INST]   Hi there  </s>[INST] Who are you?[/INST]", 3, true);
    expect_render(MX_TMPL_MISTRAL_V7_TEKKEN, conv_sys, 4, true,
                  "<s>[SYSTEM_PROMPT]You are a helpful assistant[/SYSTEM_PROMPT]"
                  "[INST]Hello[/INST]  Hi there  </s>[INST]Who are you?[/INST]",
                  3, true);
    expect_render(MX_TMPL_MISTRAL_V7_TEKKEN, CONV_NOSYS, 3, true,
                  "<s>[INST]Hello[/INST]  Hi there  </s>[INST]Who are you?[/INST]", 3, true);
}

/* Second oracle: llama.cpp tests/test-chat-template.cpp renders its conversation through the
 * real Jinja templates (minja) with bos_token "" and eos_token "</s>"; these expected strings
 * are its published Jinja outputs. */
static void test_llama_cpp_jinja_outputs(void **state) {
    (void)state;
    static const struct mx_chat_msg c[] = {
        {MX_ROLE_SYSTEM, "You are a helpful assistant", NULL, 0, NULL},
        {MX_ROLE_USER, "Hello", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "Hi there", NULL, 0, NULL},
        {MX_ROLE_USER, "Who are you", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "   I am an assistant   ", NULL, 0, NULL},
        {MX_ROLE_USER, "Another question", NULL, 0, NULL},
    };
    static const struct {
        enum mx_tmpl_kind k;
        const char *want;
    } cases[] = {
        {MX_TMPL_MISTRAL_V1,
         " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you"
         " [/INST]    I am an assistant   </s> [INST] Another question [/INST]"},
        {MX_TMPL_MISTRAL_V3,
         "[INST] Hello[/INST] Hi there</s>[INST] Who are you[/INST] I am an assistant</s>"
         "[INST] You are a helpful assistant\n\nAnother question[/INST]"},
        {MX_TMPL_MISTRAL_V3_TEKKEN,
         "[INST]Hello[/INST]Hi there</s>[INST]Who are you[/INST]   I am an assistant   </s>"
         "[INST]You are a helpful assistant\n\nAnother question[/INST]"},
        {MX_TMPL_MISTRAL_V7,
         "[SYSTEM_PROMPT] You are a helpful assistant[/SYSTEM_PROMPT][INST] Hello[/INST] Hi"
         " there</s>[INST] Who are you[/INST]    I am an assistant   </s>[INST] Another"
         " question[/INST]"},
        {MX_TMPL_CHATML,
         "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello"
         "<|im_end|>\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you"
         "<|im_end|>\n<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>"
         "user\nAnother question<|im_end|>\n<|im_start|>assistant\n"},
        {MX_TMPL_GEMMA,
         "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n<start_of_turn>"
         "model\nHi there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n"
         "<start_of_turn>model\nI am an assistant<end_of_turn>\n<start_of_turn>user\nAnother"
         " question<end_of_turn>\n<start_of_turn>model\n"},
        {MX_TMPL_LLAMA3,
         "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
         "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>"
         "assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user"
         "<|end_header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant"
         "<|end_header_id|>\n\nI am an assistant<|eot_id|><|start_header_id|>user"
         "<|end_header_id|>\n\nAnother question<|eot_id|><|start_header_id|>assistant"
         "<|end_header_id|>\n\n"},
        {MX_TMPL_PHI3,
         "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>"
         "\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant"
         "   <|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mx_tmpl_opts o = {.bos = "", .eos = "</s>", .add_generation_prompt = true};
        struct mx_tmpl_prompt p;
        struct mx_err e = {0};
        int rc = mx_tmpl_render(cases[i].k, c, 6, &o, &p, &e);
        if (rc != 0)
            fail_msg("%s: %s", mx_tmpl_name(cases[i].k), e.msg);
        if (strcmp(p.text, cases[i].want) != 0)
            fail_msg("%s:\n got  '%s'\n want '%s'", mx_tmpl_name(cases[i].k), p.text,
                     cases[i].want);
        assert_int_equal(p.tok_offset, 0); /* empty BOS string: nothing to skip */
        mx_tmpl_prompt_free(&p);
    }
}

/* BOS: a leading BOS string is skipped for tokenization and turned into add_bos; otherwise the
 * model's add_bos_token flag decides (llama.cpp's rule); a custom BOS string is honoured. */
static void test_bos_handling(void **state) {
    (void)state;
    struct mx_tmpl_opts o = {.add_generation_prompt = true, .model_add_bos = true};
    struct mx_tmpl_prompt p;
    assert_int_equal(mx_tmpl_render(MX_TMPL_CHATML, CONV_NOSYS, 1, &o, &p, NULL), 0);
    assert_int_equal(p.tok_offset, 0);
    assert_true(p.add_bos);
    mx_tmpl_prompt_free(&p);
    o.model_add_bos = false;
    assert_int_equal(mx_tmpl_render(MX_TMPL_CHATML, CONV_NOSYS, 1, &o, &p, NULL), 0);
    assert_false(p.add_bos);
    mx_tmpl_prompt_free(&p);
    /* The text carries the BOS string; add_bos is set whatever the model flag says, and BOS is
     * never doubled: text + tok_offset no longer starts with it. */
    o.bos = "<BOS>";
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V1, CONV_NOSYS, 1, &o, &p, NULL), 0);
    assert_string_equal(p.text, "<BOS> [INST] Hello [/INST]");
    assert_int_equal(p.tok_offset, 5);
    assert_true(p.add_bos);
    assert_string_equal(p.text + p.tok_offset, " [INST] Hello [/INST]");
    mx_tmpl_prompt_free(&p);
}

/* Tools, Mistral v3: [AVAILABLE_TOOLS] before the last user message (string fields spliced in,
 * parameters through tojson, i.e. re-laid-out with ", " and ": "), [TOOL_CALLS] with
 * (function|tojson)[:-1] + ', "id": ...', [TOOL_RESULTS] with the raw content. */
static void test_mistral_tools(void **state) {
    (void)state;
    static const struct mx_tool_def tools[] = {{
        "get_weather", "Get the weather",
        "{ \"type\":\"object\",\n \"properties\":{\"city\":{\"type\":\"string\"}},"
        "\"required\":[\"city\"]}",
    }};
    static const struct mx_tool_call call[] = {
        {"abc123XYZ", "get_weather", "{\"city\":\"Paris\"}"},
    };
    const struct mx_chat_msg c[] = {
        {MX_ROLE_SYSTEM, SYS, NULL, 0, NULL},
        {MX_ROLE_USER, "Weather in Paris?", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, NULL, call, 1, NULL},
        {MX_ROLE_TOOL, "{\"temp\": 21}", NULL, 0, "abc123XYZ"},
    };
    const char *tools_txt =
        "[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\","
        " \"description\": \"Get the weather\", \"parameters\": {\"type\": \"object\","
        " \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}]"
        "[/AVAILABLE_TOOLS]";
    struct mx_tmpl_opts o = {.tools = tools, .n_tools = 1, .add_generation_prompt = true};
    struct mx_tmpl_prompt p;
    struct mx_err e = {0};
    char want[2048];

    /* Ends with the tool result: loop.last is not a user message, so no system prompt. */
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V3, c, 4, &o, &p, &e), 0);
    snprintf(want, sizeof(want),
             "<s>%s[INST] Weather in Paris?[/INST][TOOL_CALLS] [{\"name\": \"get_weather\","
             " \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abc123XYZ\"}]</s>"
             "[TOOL_RESULTS] {\"content\": {\"temp\": 21}, \"call_id\": \"abc123XYZ\"}"
             "[/TOOL_RESULTS]",
             tools_txt);
    assert_string_equal(p.text, want);
    mx_tmpl_prompt_free(&p);

    /* Ends with the user message: tools, then the system prompt inside that [INST]. */
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V3, c, 2, &o, &p, &e), 0);
    snprintf(want, sizeof(want),
             "<s>%s[INST] You are a helpful assistant\n\nWeather in Paris?[/INST]", tools_txt);
    assert_string_equal(p.text, want);
    mx_tmpl_prompt_free(&p);

    /* v7-tekken (Mistral Small 3.1): ids of 9+ chars, the last 9 are written. */
    static const struct mx_tool_call call7[] = {{"call_abc123XYZ", "get_weather", NULL}};
    const struct mx_chat_msg c7[] = {
        {MX_ROLE_USER, "Weather?", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, NULL, call7, 1, NULL},
        {MX_ROLE_TOOL, "sunny", NULL, 0, "call_abc123XYZ"},
        {MX_ROLE_ASSISTANT, "It is sunny.", NULL, 0, NULL},
    };
    o.n_tools = 0;
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V7_TEKKEN, c7, 4, &o, &p, &e), 0);
    assert_string_equal(p.text,
                        "<s>[INST]Weather?[/INST][TOOL_CALLS] [{\"name\": \"get_weather\","
                        " \"arguments\": {}, \"id\": \"abc123XYZ\"}]</s>"
                        "[TOOL_RESULTS] {\"content\": sunny, \"call_id\": \"abc123XYZ\"}"
                        "[/TOOL_RESULTS]It is sunny.</s>");
    mx_tmpl_prompt_free(&p);

    /* v3 wants ids of exactly 9 chars; bad JSON arguments are refused with an offset. */
    expect_fail(MX_TMPL_MISTRAL_V3, c7, 2, &o, MX_EINVAL, "exactly 9");
    static const struct mx_tool_call badjson[] = {{"abc123XYZ", "f", "{\"a\": }"}};
    const struct mx_chat_msg cb[] = {
        {MX_ROLE_USER, "x", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, NULL, badjson, 1, NULL},
    };
    expect_fail(MX_TMPL_MISTRAL_V3, cb, 2, &o, MX_EINVAL, "not valid JSON");
    /* A tool name with a quote is JSON-escaped inside (function|tojson). */
    static const struct mx_tool_call quoted[] = {{"abc123XYZ", "f\"\n", "[1, 2.5e3, true, null]"}};
    const struct mx_chat_msg cq[] = {
        {MX_ROLE_USER, "x", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, NULL, quoted, 1, NULL},
    };
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V3, cq, 2, &o, &p, &e), 0);
    assert_string_equal(p.text, "<s>[INST] x[/INST][TOOL_CALLS] [{\"name\": \"f\\\"\\n\","
                                " \"arguments\": [1, 2.5e3, true, null], \"id\": \"abc123XYZ\"}]"
                                "</s>");
    mx_tmpl_prompt_free(&p);
}

/* Second oracle for tools: the string representations published in mistralai/cookbook
 * concept-deep-dive/tokenization/tool_calling.md ("Final String Representation", V3 and V3 -
 * Tekken), from a pretty-printed parameter schema as a client would send it. */
static void test_mistral_cookbook_tool_calling(void **state) {
    (void)state;
    static const struct mx_tool_def tools[] = {{
        "calculator", "Performs mathematical calculations",
        "{\n    \"type\": \"object\",\n    \"properties\": {\n        \"operation\": {\n"
        "            \"type\": \"string\",\n            \"description\": \"The operation to be "
        "done in python format.\"\n            }\n        }, \n    \"required\": "
        "[\"operation\"]\n}",
    }};
    static const struct mx_tool_call call[] = {
        {"VvvODy9mT", "calculator", "{\"operation\": \"2+2\", \"format\": \"celsius\"}"},
    };
    const struct mx_chat_msg c[] = {
        {MX_ROLE_USER, "What's 2+2?", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, NULL, call, 1, NULL},
        {MX_ROLE_TOOL, "4", NULL, 0, "VvvODy9mT"},
        {MX_ROLE_ASSISTANT, "2+2=4", NULL, 0, NULL},
    };
    struct mx_tmpl_opts o = {.tools = tools, .n_tools = 1};
    struct mx_tmpl_prompt p;
    struct mx_err e = {0};
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V3, c, 4, &o, &p, &e), 0);
    assert_string_equal(
        p.text,
        "<s>[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"calculator\","
        " \"description\": \"Performs mathematical calculations\", \"parameters\": {\"type\":"
        " \"object\", \"properties\": {\"operation\": {\"type\": \"string\", \"description\":"
        " \"The operation to be done in python format.\"}}, \"required\": [\"operation\"]}}}]"
        "[/AVAILABLE_TOOLS][INST] What's 2+2?[/INST][TOOL_CALLS] [{\"name\": \"calculator\","
        " \"arguments\": {\"operation\": \"2+2\", \"format\": \"celsius\"}, \"id\":"
        " \"VvvODy9mT\"}]</s>[TOOL_RESULTS] {\"content\": 4, \"call_id\": \"VvvODy9mT\"}"
        "[/TOOL_RESULTS] 2+2=4</s>");
    mx_tmpl_prompt_free(&p);
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V3_TEKKEN, c, 4, &o, &p, &e), 0);
    assert_string_equal(
        p.text,
        "<s>[AVAILABLE_TOOLS][{\"type\": \"function\", \"function\": {\"name\": \"calculator\","
        " \"description\": \"Performs mathematical calculations\", \"parameters\": {\"type\":"
        " \"object\", \"properties\": {\"operation\": {\"type\": \"string\", \"description\":"
        " \"The operation to be done in python format.\"}}, \"required\": [\"operation\"]}}}]"
        "[/AVAILABLE_TOOLS][INST]What's 2+2?[/INST][TOOL_CALLS][{\"name\": \"calculator\","
        " \"arguments\": {\"operation\": \"2+2\", \"format\": \"celsius\"}, \"id\":"
        " \"VvvODy9mT\"}]</s>[TOOL_RESULTS]{\"content\": 4, \"call_id\": \"VvvODy9mT\"}"
        "[/TOOL_RESULTS]2+2=4</s>");
    mx_tmpl_prompt_free(&p);
}

/* Roles the template cannot express fail as the Jinja raises (or, where the Jinja would drop a
 * message silently, with MX_EUNSUP). */
static void test_bad_roles(void **state) {
    (void)state;
    const struct mx_chat_msg two_users[] = {
        {MX_ROLE_USER, "a", NULL, 0, NULL},
        {MX_ROLE_USER, "b", NULL, 0, NULL},
    };
    const struct mx_chat_msg late_system[] = {
        {MX_ROLE_USER, "a", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "b", NULL, 0, NULL},
        {MX_ROLE_SYSTEM, "c", NULL, 0, NULL},
    };
    const struct mx_chat_msg tool_msg[] = {
        {MX_ROLE_USER, "a", NULL, 0, NULL},
        {MX_ROLE_TOOL, "r", NULL, 0, "abc123XYZ"},
    };
    const struct mx_chat_msg answer_first[] = {{MX_ROLE_ASSISTANT, "a", NULL, 0, NULL}};
    enum mx_tmpl_kind strict[] = {MX_TMPL_MISTRAL_LEGACY, MX_TMPL_MISTRAL_V1, MX_TMPL_MISTRAL_V3,
                                  MX_TMPL_MISTRAL_V7, MX_TMPL_LLAMA2, MX_TMPL_GEMMA};
    for (size_t i = 0; i < sizeof(strict) / sizeof(strict[0]); i++) {
        expect_fail(strict[i], two_users, 2, NULL, MX_EINVAL, "alternate");
        expect_fail(strict[i], late_system, 3, NULL, MX_EINVAL, NULL);
        expect_fail(strict[i], answer_first, 1, NULL, MX_EINVAL, NULL);
    }
    /* Families without a tool role write results as a user message (the generic convention,
     * tests/test_tool_call.c); where roles must alternate, user + result is two users. */
    expect_render(MX_TMPL_ZEPHYR, tool_msg, 2, false,
                  "<|user|>\na</s>\n<|user|>\nTool result:\nr</s>\n", 0, false);
    expect_render(MX_TMPL_PHI3, tool_msg, 2, false,
                  "<|user|>\na<|end|>\n<|user|>\nTool result:\nr<|end|>\n<|endoftext|>", 0,
                  false);
    expect_fail(MX_TMPL_GEMMA, tool_msg, 2, NULL, MX_EINVAL, "alternate");
    expect_fail(MX_TMPL_MISTRAL_V1, tool_msg, 2, NULL, MX_EINVAL, "alternate");
    /* ChatML and Llama 3 write any role by name, as their Jinja does. */
    expect_render(MX_TMPL_CHATML, tool_msg, 2, false,
                  "<|im_start|>user\na<|im_end|>\n<|im_start|>tool\nr<|im_end|>\n", 0, false);
    /* ChatML accepts free role order (no alternation rule in its template). */
    expect_render(MX_TMPL_CHATML, two_users, 2, false,
                  "<|im_start|>user\na<|im_end|>\n<|im_start|>user\nb<|im_end|>\n", 0, false);
    /* Llama 3.1 puts the tools into the first user message: there must be one. */
    struct mx_tool_def td = {"f", "d", NULL};
    struct mx_tmpl_opts o = {.tools = &td, .n_tools = 1};
    expect_fail(MX_TMPL_LLAMA3, answer_first, 1, &o, MX_EINVAL, "first user message");
}

/* NULL/empty input, bad enums, empty content, huge content. */
static void test_bad_input(void **state) {
    (void)state;
    const struct mx_chat_msg null_content[] = {{MX_ROLE_USER, NULL, NULL, 0, NULL}};
    const struct mx_chat_msg empty_content[] = {{MX_ROLE_USER, "", NULL, 0, NULL}};
    const struct mx_chat_msg bad_role[] = {{(enum mx_role)42, "x", NULL, 0, NULL}};
    struct mx_tmpl_prompt p;
    for (int k = 0; k < MX_TMPL_COUNT; k++) {
        expect_fail((enum mx_tmpl_kind)k, null_content, 1, NULL, MX_EINVAL, "no content");
        expect_fail((enum mx_tmpl_kind)k, NULL, 0, NULL, MX_EINVAL, "empty conversation");
        expect_fail((enum mx_tmpl_kind)k, empty_content, 0, NULL, MX_EINVAL, NULL);
        expect_fail((enum mx_tmpl_kind)k, bad_role, 1, NULL, MX_EINVAL, "bad role");
        /* Empty content is valid text. */
        assert_int_equal(mx_tmpl_render((enum mx_tmpl_kind)k, empty_content, 1, NULL, &p, NULL),
                         0);
        assert_non_null(p.text);
        mx_tmpl_prompt_free(&p);
    }
    expect_fail((enum mx_tmpl_kind)99, empty_content, 1, NULL, MX_EINVAL, NULL);
    expect_fail((enum mx_tmpl_kind)-1, empty_content, 1, NULL, MX_EINVAL, NULL);
    assert_int_equal(mx_tmpl_render(MX_TMPL_CHATML, empty_content, 1, NULL, NULL, NULL),
                     MX_EINVAL);
    mx_tmpl_prompt_free(NULL);

    /* 8 MiB of content renders intact (a 64K-token history is ~300 KB). */
    size_t n = (size_t)8 << 20;
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, 'x', n);
    big[n] = '\0';
    const struct mx_chat_msg huge[] = {{MX_ROLE_USER, big, NULL, 0, NULL}};
    assert_int_equal(mx_tmpl_render(MX_TMPL_LLAMA3, huge, 1, NULL, &p, NULL), 0);
    assert_int_equal(p.len, n + strlen("<|begin_of_text|><|start_header_id|>user"
                                       "<|end_header_id|>\n\n<|eot_id|>"));
    assert_int_equal(memcmp(p.text + p.len - 13, "xxx<|eot_id|>", 13), 0);
    mx_tmpl_prompt_free(&p);

    /* Whitespace-only content trims to nothing; Llama 2's strip() then eats into the <<SYS>>
     * block's trailing newlines, exactly as Python's strip() of the joined string does. */
    const struct mx_chat_msg blank[] = {
        {MX_ROLE_SYSTEM, "S", NULL, 0, NULL},
        {MX_ROLE_USER, " \n\t ", NULL, 0, NULL},
    };
    expect_render(MX_TMPL_LLAMA2, blank, 2, false, "<s>[INST] <<SYS>>\nS\n<</SYS>> [/INST]", 3,
                  true);
    free(big);
}

/* Over the length limit: MX_ERANGE and nothing returned. opts->max_len lowers the limit so
 * the test need not allocate a gigabyte; the default limit is MX_TMPL_MAX_TEXT. */
static void test_too_long(void **state) {
    (void)state;
    struct mx_tmpl_opts o = {.max_len = 40};
    const struct mx_chat_msg m[] = {{MX_ROLE_USER, "0123456789012345678901234567", NULL, 0, NULL}};
    struct mx_tmpl_prompt p;
    /* "<|im_start|>user\n" (17) + 28 + "<|im_end|>\n" (11) = 56 > 40 */
    expect_fail(MX_TMPL_CHATML, m, 1, &o, MX_ERANGE, "longer than 40");
    o.max_len = 56; /* exactly fits */
    assert_int_equal(mx_tmpl_render(MX_TMPL_CHATML, m, 1, &o, &p, NULL), 0);
    assert_int_equal(p.len, 56);
    mx_tmpl_prompt_free(&p);
    o.max_len = 55;
    expect_fail(MX_TMPL_CHATML, m, 1, &o, MX_ERANGE, NULL);
}

/* Detection on excerpts of the real template texts (as stored in GGUF tokenizer.chat_template).
 */
static void test_detect(void **state) {
    (void)state;
    static const struct {
        const char *text;
        enum mx_tmpl_kind want;
    } cases[] = {
        /* teknium/OpenHermes-2.5-Mistral-7B */
        {"{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
         "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}",
         MX_TMPL_CHATML},
        /* Mixtral-8x7B-Instruct-v0.1, first template */
        {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ "
         "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' "
         "%}{{ message['content'] + eos_token}}{% endif %}{% endfor %}",
         MX_TMPL_MISTRAL_LEGACY},
        /* Mixtral-8x7B-Instruct-v0.1, 2024 template */
        {"{%- if message['role'] == 'user' %}\n{%- if loop.first and system_message is defined "
         "%}\n{{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}",
         MX_TMPL_MISTRAL_V1},
        /* Mistral-7B-Instruct-v0.3 / Mixtral-8x22B */
        {"{{- \"[AVAILABLE_TOOLS] [\" }}...{{- \"[INST] \" + system_message + \"\\n\\n\" + "
         "message[\"content\"] + \"[/INST]\" }}",
         MX_TMPL_MISTRAL_V3},
        /* Mixtral-8x22B-Instruct-v0.1, first template: single-quoted '[INST]', still v3 */
        {"{% if message == user_messages[-1] %}{% if tools %}{{'[AVAILABLE_TOOLS]'+ "
         "tools|string + '[/AVAILABLE_TOOLS]'}}{% endif %}{{ '[INST]' + message['content'] + "
         "'[/INST]' }}",
         MX_TMPL_MISTRAL_V3},
        /* Mistral-Nemo-Instruct-2407 */
        {"{{- \"[AVAILABLE_TOOLS][\" }}...{{- \"[INST]\" + message[\"content\"] + \"[/INST]\" }}",
         MX_TMPL_MISTRAL_V3_TEKKEN},
        /* Mistral-Large-Instruct-2411 */
        {"{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ "
         "'[INST] ' + message['content'] + '[/INST]' }}{% elif message['role'] == 'system' %}{{ "
         "'[SYSTEM_PROMPT] ' + message['content'] + '[/SYSTEM_PROMPT]' }}",
         MX_TMPL_MISTRAL_V7},
        /* Mistral-Small-3.1-24B-Instruct-2503 */
        {"{{- '[SYSTEM_PROMPT]' + system_message + '[/SYSTEM_PROMPT]' }}...{{- '[INST]' + "
         "message['content'] + '[/INST]' }}",
         MX_TMPL_MISTRAL_V7_TEKKEN},
        /* mistralai/cookbook tokenization/templates.md basic templates (no tools) */
        {"{% if message['role'] == 'user' %}\n        {{ ' [INST] ' + message['content'] + "
         "' [/INST]' }}\n    {% elif message['role'] == 'assistant' %}\n        {{ ' ' + "
         "message['content'] + eos_token }}",
         MX_TMPL_MISTRAL_V1},
        {"{% if message['role'] == 'user' %}\n        {{ '[INST] ' + message['content'] + "
         "'[/INST]' }}\n    {% elif message['role'] == 'assistant' %}\n        {{ ' ' + "
         "message['content'] + eos_token }}",
         MX_TMPL_MISTRAL_V3},
        {"{% if message['role'] == 'user' %}\n        {{ '[INST]' + message['content'] + "
         "'[/INST]' }}\n    {% elif message['role'] == 'assistant' %}\n        {{ "
         "message['content'] + eos_token }}",
         MX_TMPL_MISTRAL_V3_TEKKEN},
        /* meta-llama/Llama-2-7b-chat-hf */
        {"{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
         "message['content'] %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}",
         MX_TMPL_LLAMA2},
        /* Meta-Llama-3-8B-Instruct */
        {"{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
         "message['content'] | trim + '<|eot_id|>' %}",
         MX_TMPL_LLAMA3},
        /* zephyr-7b-beta / TinyLlama */
        {"{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token "
         "}}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + "
         "message['content'] + eos_token }}",
         MX_TMPL_ZEPHYR},
        /* gemma-7b-it */
        {"{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' "
         "}}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}",
         MX_TMPL_GEMMA},
        /* Phi-3-mini-4k-instruct */
        {"{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + "
         "'\\n'}}",
         MX_TMPL_PHI3},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum mx_tmpl_kind k = MX_TMPL_COUNT;
        if (!mx_tmpl_detect(cases[i].text, &k) || k != cases[i].want)
            fail_msg("case %zu: detected %s, want %s", i, mx_tmpl_name(k),
                     mx_tmpl_name(cases[i].want));
    }
    enum mx_tmpl_kind k = MX_TMPL_COUNT;
    assert_false(mx_tmpl_detect(NULL, &k));
    assert_false(mx_tmpl_detect("", &k));
    assert_false(mx_tmpl_detect("{{ messages }} ### Instruction:", &k));
    assert_int_equal(k, MX_TMPL_COUNT);
}

/* Names round-trip; --chat-template wins; GGUF text next; defaults with a warning. */
static void test_names_and_choice(void **state) {
    (void)state;
    struct mx_err e = {0};
    enum mx_tmpl_kind k;
    for (int i = 0; i < MX_TMPL_COUNT; i++) {
        assert_int_equal(mx_tmpl_from_name(mx_tmpl_name((enum mx_tmpl_kind)i), &k, NULL), 0);
        assert_int_equal(k, i);
        assert_non_null(strstr(mx_tmpl_names(), mx_tmpl_name((enum mx_tmpl_kind)i)));
    }
    assert_string_equal(mx_tmpl_name(MX_TMPL_COUNT), "unknown");
    assert_int_equal(mx_tmpl_from_name("vicuna", &k, &e), MX_EINVAL);
    assert_non_null(strstr(e.msg, "mistral-v1"));
    assert_int_equal(mx_tmpl_from_name(NULL, &k, NULL), MX_EINVAL);

    struct mx_tmpl_choice ch;
    const char *chatml = "{{'<|im_start|>' + message['role']}}";
    assert_int_equal(mx_tmpl_choose("gemma", chatml, "llama", &ch, NULL), 0);
    assert_int_equal(ch.kind, MX_TMPL_GEMMA);
    assert_string_equal(ch.source, "override");
    assert_string_equal(ch.warning, "");
    assert_int_equal(mx_tmpl_choose("", chatml, "llama", &ch, NULL), 0);
    assert_int_equal(ch.kind, MX_TMPL_CHATML);
    assert_string_equal(ch.source, "gguf");
    assert_string_equal(ch.warning, "");
    assert_int_equal(mx_tmpl_choose(NULL, "llama3", NULL, &ch, NULL), 0);
    assert_int_equal(ch.kind, MX_TMPL_LLAMA3);
    /* No template: llama-arch gets mistral-v1, others chatml; both warn. */
    assert_int_equal(mx_tmpl_choose(NULL, NULL, "llama", &ch, NULL), 0);
    assert_int_equal(ch.kind, MX_TMPL_MISTRAL_V1);
    assert_string_equal(ch.source, "default");
    assert_non_null(strstr(ch.warning, "no chat template"));
    assert_non_null(strstr(ch.warning, "--chat-template"));
    assert_int_equal(mx_tmpl_choose(NULL, "", "qwen2", &ch, NULL), 0);
    assert_int_equal(ch.kind, MX_TMPL_CHATML);
    /* Unrecognised text: chatml with a warning. */
    assert_int_equal(mx_tmpl_choose(NULL, "### Instruction: {{x}}", "llama", &ch, NULL), 0);
    assert_int_equal(ch.kind, MX_TMPL_CHATML);
    assert_non_null(strstr(ch.warning, "not recognised"));
    /* Bad override is an error, not a silent fallback. */
    mx_err_clear(&e);
    assert_int_equal(mx_tmpl_choose("nope", chatml, "llama", &ch, &e), MX_EINVAL);
    assert_non_null(strstr(e.msg, "nope"));
}

static void test_stop_strings(void **state) {
    (void)state;
    assert_string_equal(mx_tmpl_stop_strings(MX_TMPL_CHATML)[0], "<|im_end|>");
    assert_string_equal(mx_tmpl_stop_strings(MX_TMPL_LLAMA3)[0], "<|eot_id|>");
    assert_string_equal(mx_tmpl_stop_strings(MX_TMPL_GEMMA)[0], "<end_of_turn>");
    assert_string_equal(mx_tmpl_stop_strings(MX_TMPL_PHI3)[0], "<|end|>");
    assert_null(mx_tmpl_stop_strings(MX_TMPL_MISTRAL_V3)[0]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatml),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_zephyr),
        cmocka_unit_test(test_phi3),
        cmocka_unit_test(test_gemma),
        cmocka_unit_test(test_llama2),
        cmocka_unit_test(test_mistral_legacy),
        cmocka_unit_test(test_mistral_v1),
        cmocka_unit_test(test_mistral_v3),
        cmocka_unit_test(test_mistral_v3_tekken),
        cmocka_unit_test(test_mistral_v7),
        cmocka_unit_test(test_llama_cpp_jinja_outputs),
        cmocka_unit_test(test_bos_handling),
        cmocka_unit_test(test_mistral_tools),
        cmocka_unit_test(test_mistral_cookbook_tool_calling),
        cmocka_unit_test(test_bad_roles),
        cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_too_long),
        cmocka_unit_test(test_detect),
        cmocka_unit_test(test_names_and_choice),
        cmocka_unit_test(test_stop_strings),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
