/* test_tool_call.c - tool calls per template family (core/text/tool_call.h and the tool parts of
 * core/text/template.c): golden renders of tool conversations for Llama 3.1, Hermes/Qwen ChatML
 * and the generic convention (expected texts written by hand from the published Jinja templates
 * named above each test); parsing each family's call syntax, several calls, ids, text around
 * calls; malformed calls (an error or text, never a crash, also on random bytes); the streaming
 * text length (hold-back of marker prefixes); the call grammar (random walks of it produce calls
 * that parse, name a tool and carry arguments that validate); and, with ../shared, the grammar in
 * the generate loop of tiny-mixtral: a lazy grammar leaves the text before its trigger free and
 * constrains the rest, and a tool grammar yields calls that parse for several seeds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/llm.h"
#include "core/base/bytes.h"
#include "core/llm/grammar.h"
#include "core/text/template.h"
#include "core/text/tokenizer.h"
#include "core/text/tool_call.h"
#include "tests/mx_test.h"

#define SYS "You are a helpful assistant"
#define WEATHER_SCHEMA                                                                         \
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"                    \
    "\"required\":[\"city\"]}"

static const struct mx_tool_def tools[] = {
    {"get_weather", "Get the weather", WEATHER_SCHEMA},
    {"get_time", "The time now", "{\"type\": \"object\", \"properties\": {}}"},
};

static const struct mx_tool_call call_paris[] = {
    {"abc123XYZ", "get_weather", "{\"city\":\"Paris\"}"},
};

/* system, user, assistant call, tool result: the round trip every render golden uses. */
static const struct mx_chat_msg conv[] = {
    {MX_ROLE_SYSTEM, SYS, NULL, 0, NULL},
    {MX_ROLE_USER, "Weather in Paris?", NULL, 0, NULL},
    {MX_ROLE_ASSISTANT, NULL, call_paris, 1, NULL},
    {MX_ROLE_TOOL, "{\"temp\": 21}", NULL, 0, "abc123XYZ"},
};

static void expect_render(enum mx_tmpl_kind k, const struct mx_chat_msg *m, size_t n,
                          const struct mx_tool_def *td, size_t n_tools, const char *want) {
    struct mx_tmpl_opts o = {0};
    struct mx_tmpl_prompt p;
    struct mx_err e = {0};
    o.add_generation_prompt = true;
    o.tools = td;
    o.n_tools = n_tools;
    if (mx_tmpl_render(k, m, n, &o, &p, &e) != 0)
        fail_msg("%s: %s", mx_tmpl_name(k), e.msg);
    if (strcmp(p.text, want) != 0)
        fail_msg("%s: got\n%s\n--- want\n%s", mx_tmpl_name(k), p.text, want);
    mx_tmpl_prompt_free(&p);
}

/* Llama 3.1. Ref: meta-llama/Llama-3.1-8B-Instruct tokenizer_config.json chat_template, rule by
 * rule (see render_llama31_tools): the tools in the first user message as tojson(indent=4), the
 * call as {"name": .., "parameters": ..}, the result as a JSON string in an ipython turn. */
static void test_render_llama3(void **state) {
    (void)state;
    expect_render(MX_TMPL_LLAMA3, conv, 4, tools, 1,
                  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                  "Environment: ipython\nCutting Knowledge Date: December 2023\n"
                  "Today Date: 26 Jul 2024\n\nYou are a helpful assistant<|eot_id|>"
                  "<|start_header_id|>user<|end_header_id|>\n\n"
                  "Given the following functions, please respond with a JSON for a function call "
                  "with its proper arguments that best answers the given prompt.\n\n"
                  "Respond in the format {\"name\": function name, \"parameters\": dictionary of "
                  "argument name and its value}.Do not use variables.\n\n"
                  "{\n"
                  "    \"type\": \"function\",\n"
                  "    \"function\": {\n"
                  "        \"name\": \"get_weather\",\n"
                  "        \"description\": \"Get the weather\",\n"
                  "        \"parameters\": {\n"
                  "            \"type\": \"object\",\n"
                  "            \"properties\": {\n"
                  "                \"city\": {\n"
                  "                    \"type\": \"string\"\n"
                  "                }\n"
                  "            },\n"
                  "            \"required\": [\n"
                  "                \"city\"\n"
                  "            ]\n"
                  "        }\n"
                  "    }\n"
                  "}\n\n"
                  "Weather in Paris?<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n"
                  "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eot_id|>"
                  "<|start_header_id|>ipython<|end_header_id|>\n\n\"{\\\"temp\\\": 21}\"<|eot_id|>"
                  "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* Without tools and calls: the Llama 3 layout as before (no dated system block). */
    expect_render(MX_TMPL_LLAMA3, conv + 1, 1, NULL, 0,
                  "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
                  "Weather in Paris?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* Hermes-2-Pro / Qwen2.5. Ref: Qwen/Qwen2.5-7B-Instruct tokenizer_config.json chat_template (the
 * system text then "# Tools" with <tools> lines of tool|tojson; calls in <tool_call> blocks;
 * results in a user turn of <tool_response> blocks), minus Qwen's default system prompt. */
static void test_render_hermes(void **state) {
    (void)state;
    static const struct mx_tool_call two[] = {
        {"abc123XYZ", "get_weather", "{\"city\": \"Paris\"}"},
        {"def456UVW", "get_time", NULL},
    };
    const struct mx_chat_msg c2[] = {
        {MX_ROLE_USER, "Weather and time?", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "Checking.", two, 2, NULL},
        {MX_ROLE_TOOL, "sunny", NULL, 0, "abc123XYZ"},
        {MX_ROLE_TOOL, "12:00", NULL, 0, "def456UVW"},
    };
    const char *tools_block =
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": "
        "\"Get the weather\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": "
        "{\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n"
        "{\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"description\": "
        "\"The time now\", \"parameters\": {\"type\": \"object\", \"properties\": {}}}}\n"
        "</tools>\n\nFor each function call, return a json object with function name and "
        "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": "
        "<function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n";
    char want[4096];
    snprintf(want, sizeof want,
             "<|im_start|>system\n%s"
             "<|im_start|>user\nWeather and time?<|im_end|>\n"
             "<|im_start|>assistant\nChecking.\n<tool_call>\n{\"name\": \"get_weather\", "
             "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": "
             "\"get_time\", \"arguments\": {}}\n</tool_call><|im_end|>\n"
             "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\n"
             "12:00\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
             tools_block);
    expect_render(MX_TMPL_CHATML, c2, 4, tools, 2, want);
    snprintf(want, sizeof want,
             "<|im_start|>system\nYou are a helpful assistant\n\n%s"
             "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
             "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
             "{\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"
             "<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>\n"
             "<|im_start|>assistant\n",
             tools_block);
    /* the second tool is only offered in the first render: cut it from the expected block */
    char *cut = strstr(want, "{\"type\": \"function\", \"function\": {\"name\": \"get_time\"");
    char *end = strstr(cut, "</tools>");
    memmove(cut, end, strlen(end) + 1);
    expect_render(MX_TMPL_CHATML, conv, 4, tools, 1, want);
}

/* The generic convention (mixel's own, template.c GENERIC_*), through two family renderers. */
static void test_render_generic(void **state) {
    (void)state;
    const char *sys =
        "You are a helpful assistant\n\n# Tools\n\nYou can call these tools (JSON schemas of "
        "their arguments):\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
        "\"description\": \"Get the weather\", \"parameters\": {\"type\": \"object\", "
        "\"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n"
        "\nTo call tools, reply with only this JSON and nothing else:\n"
        "{\"tool_calls\": [{\"name\": <tool name>, \"arguments\": <arguments as a JSON object>}]}"
        "\nThe results come back in the next message.";
    char want[4096];
    snprintf(want, sizeof want,
             "<|system|>\n%s</s>\n<|user|>\nWeather in Paris?</s>\n"
             "<|assistant|>\n{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": "
             "{\"city\": \"Paris\"}}]}</s>\n<|user|>\nResult of get_weather:\n{\"temp\": 21}</s>\n"
             "<|assistant|>\n",
             sys);
    expect_render(MX_TMPL_ZEPHYR, conv, 4, tools, 1, want);
    /* Mistral v1 (alternation enforced): the result turn is a user turn after the call. */
    snprintf(want, sizeof want,
             "<s> [INST] %s\n\nWeather in Paris? [/INST] {\"tool_calls\": [{\"name\": "
             "\"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]}</s> [INST] Result of "
             "get_weather:\n{\"temp\": 21} [/INST]",
             sys);
    expect_render(MX_TMPL_MISTRAL_V1, conv, 4, tools, 1, want);
    /* Calls without tools offered (history): no system text is added. */
    expect_render(MX_TMPL_PHI3, conv + 1, 3, NULL, 0,
                  "<|user|>\nWeather in Paris?<|end|>\n<|assistant|>\n{\"tool_calls\": "
                  "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]}<|end|>\n"
                  "<|user|>\nResult of get_weather:\n{\"temp\": 21}<|end|>\n<|assistant|>\n");
}

/* ---- parsing ------------------------------------------------------------------------------ */

static bool id_ok(const char *id) {
    if (strlen(id) != 9)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            return false;
    return true;
}

/* Parses text, expects rc 0, the content and the calls "name=args" (ids checked separately). */
static void expect_calls(enum mx_tmpl_kind k, const char *text, const char *content, size_t n,
                         const char *const *name_args) {
    struct mx_tool_calls c;
    struct mx_err e = {0};
    int rc = mx_tool_calls_parse(k, text, strlen(text), &c, &e);
    if (rc != 0)
        fail_msg("%s: parse '%s': %s", mx_tmpl_name(k), text, e.msg);
    assert_string_equal(c.content, content);
    if (c.n_calls != n)
        fail_msg("%s: '%s': %zu calls, want %zu", mx_tmpl_name(k), text, c.n_calls, n);
    for (size_t i = 0; i < n; i++) {
        char got[512];
        snprintf(got, sizeof got, "%s=%s", c.calls[i].name, c.calls[i].arguments);
        assert_string_equal(got, name_args[i]);
        assert_true(strlen(c.calls[i].id) >= 9);
    }
    mx_tool_calls_free(&c);
    assert_null(c.content);
}

static void expect_bad(enum mx_tmpl_kind k, const char *text, const char *msg_part) {
    struct mx_tool_calls c;
    struct mx_err e = {0};
    int rc = mx_tool_calls_parse(k, text, strlen(text), &c, &e);
    if (rc != MX_EFORMAT)
        fail_msg("%s: '%s': rc %d, want MX_EFORMAT", mx_tmpl_name(k), text, rc);
    if (!strstr(e.msg, msg_part))
        fail_msg("message '%s' lacks '%s'", e.msg, msg_part);
    assert_int_equal(c.n_calls, 0);
    assert_non_null(c.content); /* the whole answer, trimmed, for showing as text */
    mx_tool_calls_free(&c);
}

static void test_parse_mistral(void **state) {
    (void)state;
    struct mx_tool_calls c;
    struct mx_err e = {0};
    const char *two = "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                      "\"Paris\"}}, {\"name\": \"get_time\", \"arguments\": {\"tz\":\"CET\"}, "
                      "\"id\": \"abc123XYZ\"}]";
    const char *want2[] = {"get_weather={\"city\": \"Paris\"}", "get_time={\"tz\": \"CET\"}"};
    expect_calls(MX_TMPL_MISTRAL_V3, two, "", 2, want2);
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, two, strlen(two), &c, &e), 0);
    assert_true(id_ok(c.calls[0].id)); /* made up: 9 alphanumerics */
    assert_string_equal(c.calls[1].id, "abc123XYZ");
    struct mx_tool_calls c2;
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, two, strlen(two), &c2, &e), 0);
    assert_string_not_equal(c.calls[0].id, c2.calls[0].id); /* ids differ between parses */
    mx_tool_calls_free(&c);
    mx_tool_calls_free(&c2);
    /* text before, tekken spacing, arguments as a JSON string (OpenAI style) */
    const char *want1[] = {"f={\"a\": 1}"};
    expect_calls(MX_TMPL_MISTRAL_V3_TEKKEN,
                 "Let me check. [TOOL_CALLS][{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":1}\"}]",
                 "Let me check.", 1, want1);
    /* the newer tekken form, repeated marker, [CALL_ID] */
    const char *want3[] = {"get_weather={\"city\": \"Paris\"}", "get_time={}"};
    const char *tk = "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}"
                     "[TOOL_CALLS]get_time[CALL_ID]abc123XYZ[ARGS]{}";
    expect_calls(MX_TMPL_MISTRAL_V7_TEKKEN, tk, "", 2, want3);
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V7_TEKKEN, tk, strlen(tk), &c, &e), 0);
    assert_string_equal(c.calls[1].id, "abc123XYZ");
    mx_tool_calls_free(&c);
    /* numbers of any size, escaped names, arguments laid out on one line */
    const char *want4[] = {"get_weather={\"x\": 1e99999, \"s\": \"a\\u00e9\"}"};
    expect_calls(MX_TMPL_MISTRAL_V3,
                 "[TOOL_CALLS] [{\"name\": \"get\\u005fweather\", \"arguments\": {\"x\":\n"
                 "  1e99999 ,\"s\":\"a\\u00e9\"}}]",
                 "", 1, want4);
    /* an id no renderer could write back (v3: exactly 9 alphanumerics) is replaced */
    const char *odd = "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {}, \"id\": \"x\"}, "
                      "{\"name\": \"f\", \"arguments\": {}, \"id\": \"abcdefghij\"}]";
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, odd, strlen(odd), &c, &e), 0);
    assert_true(id_ok(c.calls[0].id) && id_ok(c.calls[1].id));
    mx_tool_calls_free(&c);
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V7, odd, strlen(odd), &c, &e), 0);
    assert_true(id_ok(c.calls[0].id));
    assert_string_equal(c.calls[1].id, "abcdefghij"); /* v7 takes longer ids */
    mx_tool_calls_free(&c);
    /* no marker: all text */
    expect_calls(MX_TMPL_MISTRAL_V7, "  Just text [TOOL] here. ", "Just text [TOOL] here.", 0,
                 NULL);
    /* round trip: the parsed calls render back into the template's call syntax */
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, two, strlen(two), &c, &e), 0);
    const struct mx_chat_msg m[] = {
        {MX_ROLE_USER, "q", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, NULL, c.calls, c.n_calls, NULL},
    };
    struct mx_tmpl_prompt p;
    assert_int_equal(mx_tmpl_render(MX_TMPL_MISTRAL_V3, m, 2, NULL, &p, &e), 0);
    char want[512];
    snprintf(want, sizeof want,
             "<s>[INST] q[/INST][TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": "
             "{\"city\": \"Paris\"}, \"id\": \"%s\"}, {\"name\": \"get_time\", \"arguments\": "
             "{\"tz\": \"CET\"}, \"id\": \"abc123XYZ\"}]</s>",
             c.calls[0].id);
    assert_string_equal(p.text, want);
    mx_tmpl_prompt_free(&p);
    mx_tool_calls_free(&c);
}

static void test_parse_hermes(void **state) {
    (void)state;
    const char *want[] = {"a={\"x\": 1}", "b={}"};
    expect_calls(MX_TMPL_CHATML,
                 "I'll look.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": 1}}\n"
                 "</tool_call>\n<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>",
                 "I'll look.", 2, want);
    /* a missing closing tag at the very end (the answer stopped there) */
    expect_calls(MX_TMPL_CHATML, "<tool_call>{\"name\": \"b\", \"arguments\": {}}\n", "", 1,
                 want + 1);
    /* "parameters" is accepted too; text after the calls is content */
    expect_calls(MX_TMPL_CHATML,
                 "<tool_call>{\"name\": \"b\", \"parameters\": {}}</tool_call> done", "done", 1,
                 want + 1);
    expect_calls(MX_TMPL_CHATML, "no calls", "no calls", 0, NULL);
}

static void test_parse_llama3(void **state) {
    (void)state;
    const char *want[] = {"get_weather={\"city\": \"Paris\"}", "g={\"a\": [1, 2]}"};
    expect_calls(MX_TMPL_LLAMA3,
                 "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "", 1,
                 want);
    expect_calls(MX_TMPL_LLAMA3,
                 "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": "
                 "\"Paris\"}}; {\"name\": \"g\", \"parameters\": {\"a\": [1,2]}}",
                 "", 2, want);
    /* "type": "function" and "arguments" are accepted; text before the object */
    expect_calls(MX_TMPL_LLAMA3,
                 "Sure.\n{ \"type\": \"function\", \"name\": \"g\", "
                 "\"arguments\": {\"a\": [1, 2]}}",
                 "Sure.", 1, want + 1);
    /* JSON that is not call-shaped stays text */
    expect_calls(MX_TMPL_LLAMA3, "{\"name\": \"Bob\", \"age\": 3}",
                 "{\"name\": \"Bob\", \"age\": 3}", 0, NULL);
    expect_calls(MX_TMPL_LLAMA3, "{\"name\": \"f\", \"parameters\": {", "{\"name\": \"f\", "
                 "\"parameters\": {", 0, NULL);
}

static void test_parse_generic(void **state) {
    (void)state;
    const char *want[] = {"f={\"a\": \"b\"}", "g={}"};
    expect_calls(MX_TMPL_ZEPHYR,
                 "{\"tool_calls\": [{\"name\": \"f\", \"arguments\": {\"a\": \"b\"}}, "
                 "{\"name\": \"g\", \"arguments\": {}}]}",
                 "", 2, want);
    expect_calls(MX_TMPL_GEMMA, "ok\n{ \"tool_calls\" : [{\"name\": \"f\", \"arguments\": "
                 "{\"a\": \"b\"}}]}", "ok", 1, want);
    expect_calls(MX_TMPL_PHI3, "{\"other\": 1}", "{\"other\": 1}", 0, NULL);
}

static void test_parse_malformed(void **state) {
    (void)state;
    expect_bad(MX_TMPL_MISTRAL_V3, "[TOOL_CALLS] [{\"name\": ", "JSON array");
    expect_bad(MX_TMPL_MISTRAL_V3, "[TOOL_CALLS] nope", "[ARGS]");
    expect_bad(MX_TMPL_MISTRAL_V3, "[TOOL_CALLS] []", "JSON array");
    expect_bad(MX_TMPL_MISTRAL_V3, "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": [1]}]",
               "not a JSON object");
    expect_bad(MX_TMPL_MISTRAL_V3, "[TOOL_CALLS] [{\"arguments\": {}}]", "\"name\"");
    expect_bad(MX_TMPL_MISTRAL_V3, "[TOOL_CALLS] [{\"name\": \"f\", \"id\": 7}]", "id");
    expect_bad(MX_TMPL_MISTRAL_V3, "[TOOL_CALLS] [{\"name\": \"f\"}, 3]", "\"name\"");
    expect_bad(MX_TMPL_MISTRAL_V7_TEKKEN, "[TOOL_CALLS]f[ARGS][1]", "after [ARGS]");
    expect_bad(MX_TMPL_CHATML, "<tool_call>{bad}</tool_call>", "after <tool_call>");
    expect_bad(MX_TMPL_CHATML, "<tool_call>{\"name\":\"a\"} trailing", "</tool_call>");
    expect_bad(MX_TMPL_LLAMA3, "<|python_tag|>brave_search.call(query=\"x\")", "call object");
    expect_bad(MX_TMPL_ZEPHYR, "{\"tool_calls\": 5}", "tool_calls");
    expect_bad(MX_TMPL_ZEPHYR, "{\"tool_calls\": [{\"name\": \"f\", \"arguments\": \"{x\"}]}",
               "not a JSON object");
    expect_bad(MX_TMPL_CHATML, "<tool_call>{\"name\": \"rm -rf /\", \"arguments\": {}}",
               "tool name");
    expect_bad(MX_TMPL_CHATML, "<tool_call>{\"name\": \"a\\u0000b\", \"arguments\": {}}",
               "tool name");
    /* bad arguments to the call itself */
    struct mx_tool_calls c;
    struct mx_err e = {0};
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_COUNT, "x", 1, &c, &e), MX_EINVAL);
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_CHATML, NULL, 3, &c, &e), MX_EINVAL);
    mx_tool_calls_free(&c);
    assert_int_equal(mx_tool_calls_parse(MX_TMPL_CHATML, NULL, 0, &c, NULL), 0);
    assert_string_equal(c.content, "");
    mx_tool_calls_free(&c);
    mx_tool_calls_free(NULL);
    /* the parser never reads past n: a call cut in the middle of a buffer */
    const char *full = "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {}}]";
    for (size_t n = 0; n < strlen(full); n++) {
        char *cut = malloc(n ? n : 1); /* no NUL: ASan catches a read past n */
        memcpy(cut, full, n);
        mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, cut, n, &c, &e);
        assert_true(c.n_calls == 0 || n == strlen(full));
        mx_tool_calls_free(&c);
        free(cut);
    }
}

/* The answer so far, byte by byte: never an error, calls only grow, the content is always the
 * start of the final content, and the whole answer parses as mx_tool_calls_parse does. */
static void test_parse_partial(void **state) {
    (void)state;
    static const struct {
        enum mx_tmpl_kind kind;
        const char *text;
        size_t n_calls;
        size_t n_cut; /* calls complete when the last byte is missing */
    } cases[] = {
        {MX_TMPL_MISTRAL_V3,
         "Let me check. [TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {\"x\": [1, 2.5e3, "
         "\"s\\\"]\\u00e9\", true, null]}}, {\"name\": \"b\", \"arguments\": {}}]", 2, 0},
        {MX_TMPL_MISTRAL_V7_TEKKEN,
         "[TOOL_CALLS]a[ARGS]{\"x\": false}[TOOL_CALLS]b[CALL_ID]abc123XYZ[ARGS]{}", 2, 1},
        {MX_TMPL_CHATML,
         "Sure.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {\"x\": -0.5}}\n</tool_call>"
         "\n<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>", 2, 2},
        {MX_TMPL_LLAMA3, "{\"name\": \"a\", \"parameters\": {\"x\": null}}", 1, 0},
        {MX_TMPL_LLAMA3, "x <|python_tag|>{\"name\": \"a\", \"parameters\": {}}; "
                         "{\"name\": \"b\", \"parameters\": {}}", 2, 1},
        {MX_TMPL_PHI3, "ok {\"tool_calls\": [{\"name\": \"a\", \"arguments\": {\"x\": 1}}]}", 1, 0},
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const char *t = cases[ci].text;
        size_t n = strlen(t), prev = 0;
        struct mx_tool_calls fin, c;
        struct mx_err e = {0};
        assert_int_equal(mx_tool_calls_parse(cases[ci].kind, t, n, &fin, &e), 0);
        assert_int_equal(fin.n_calls, cases[ci].n_calls);
        for (size_t k = 0; k <= n; k++) {
            char *cut = malloc(k ? k : 1); /* no NUL: ASan catches a read past k */
            memcpy(cut, t, k);
            if (mx_tool_calls_parse_partial(cases[ci].kind, cut, k, &c, &e) != 0)
                fail_msg("%s: prefix %zu of '%s': %s", mx_tmpl_name(cases[ci].kind), k, t,
                         e.msg);
            assert_true(c.n_calls >= prev && c.n_calls <= fin.n_calls);
            prev = c.n_calls;
            if (strncmp(c.content, fin.content, strlen(c.content)) != 0)
                fail_msg("%s: prefix %zu: content '%s' is not the start of '%s'",
                         mx_tmpl_name(cases[ci].kind), k, c.content, fin.content);
            for (size_t i = 0; i < c.n_calls; i++) {
                assert_string_equal(c.calls[i].name, fin.calls[i].name);
                assert_string_equal(c.calls[i].arguments, fin.calls[i].arguments);
            }
            if (k == n) {
                assert_false(c.partial);
                assert_int_equal(c.n_calls, fin.n_calls);
            } else if (k == n - 1) { /* every answer here ends inside its last call */
                assert_true(c.partial);
                assert_int_equal(c.n_calls, cases[ci].n_cut);
            }
            mx_tool_calls_free(&c);
            free(cut);
        }
        mx_tool_calls_free(&fin);
    }
    /* malformed before the end is still an error */
    struct mx_tool_calls c;
    struct mx_err e = {0};
    const char *bad = "<tool_call>{\"name\": 5, \"arguments\": {}}";
    assert_int_equal(mx_tool_calls_parse_partial(MX_TMPL_CHATML, bad, strlen(bad), &c, &e),
                     MX_EFORMAT);
    assert_false(c.partial);
    mx_tool_calls_free(&c);
}

/* Random bytes salted with the families' markers: every parse returns 0 or MX_EFORMAT, leaves a
 * content, and every call it reports has a name, a 9+ char id and arguments that are a JSON
 * object. */
static void test_parse_random(void **state) {
    (void)state;
    static const char *const bits[] = {
        "[TOOL_CALLS]", "<tool_call>", "</tool_call>", "<|python_tag|>", "{\"tool_calls\": [",
        "{\"name\": \"f\", \"arguments\": {}}", "[ARGS]", "[CALL_ID]", "{", "}", "[", "]", "\"",
        ",", " ", "\\", "\xc3\xa9", "\xff", "{\"name\": \"g\", \"parameters\": {\"a\": 1}}", ";",
    };
    uint64_t seed = 42;
    char buf[256];
    for (int it = 0; it < 20000; it++) {
        size_t n = 0;
        int parts = (int)(mx_test_rand(&seed) % 12);
        for (int k = 0; k < parts; k++) {
            const char *b = bits[mx_test_rand(&seed) % (sizeof bits / sizeof bits[0])];
            size_t bl = strlen(b);
            if (n + bl > sizeof buf)
                break;
            memcpy(buf + n, b, bl);
            n += bl;
        }
        enum mx_tmpl_kind k = (enum mx_tmpl_kind)(mx_test_rand(&seed) % MX_TMPL_COUNT);
        struct mx_tool_calls c;
        struct mx_err e = {0};
        int rc = mx_tool_calls_parse(k, buf, n, &c, &e);
        assert_true(rc == 0 || rc == MX_EFORMAT);
        assert_non_null(c.content);
        for (size_t i = 0; i < c.n_calls; i++) {
            assert_true(strlen(c.calls[i].id) >= 9);
            json_t *a = json_loads(c.calls[i].arguments, 0, NULL);
            assert_true(json_is_object(a));
            json_decref(a);
        }
        mx_tool_calls_free(&c);
        rc = mx_tool_calls_parse_partial(k, buf, n, &c, &e);
        assert_true(rc == 0 || rc == MX_EFORMAT);
        assert_non_null(c.content);
        size_t tl = mx_tool_calls_text_len(k, buf, n);
        assert_true(tl <= n);
        mx_tool_calls_free(&c);
    }
}

/* ---- streaming ---------------------------------------------------------------------------- */

static size_t tlen(enum mx_tmpl_kind k, const char *s) {
    return mx_tool_calls_text_len(k, s, strlen(s));
}

static void test_text_len(void **state) {
    (void)state;
    assert_int_equal(tlen(MX_TMPL_MISTRAL_V3, "Hello"), 5);
    assert_int_equal(tlen(MX_TMPL_MISTRAL_V3, "Hello [TOOL"), 6);       /* may become a call */
    assert_int_equal(tlen(MX_TMPL_MISTRAL_V3, "Hello [TOOL_CALLS] [{"), 6);
    assert_int_equal(tlen(MX_TMPL_MISTRAL_V3, "Hello [x] ok"), 12);     /* cannot any more */
    assert_int_equal(tlen(MX_TMPL_CHATML, "Look <tool_c"), 5);
    assert_int_equal(tlen(MX_TMPL_CHATML, "a < b"), 5);
    assert_int_equal(tlen(MX_TMPL_LLAMA3, "{"), 0);                     /* answer opens a call */
    assert_int_equal(tlen(MX_TMPL_LLAMA3, "{\n  \"na"), 0);
    assert_int_equal(tlen(MX_TMPL_LLAMA3, "{\"foo"), 5);                /* plain JSON */
    assert_int_equal(tlen(MX_TMPL_LLAMA3, "Sure {\"name\": \"f\""), 5);
    assert_int_equal(tlen(MX_TMPL_LLAMA3, "x <|python"), 2);
    assert_int_equal(tlen(MX_TMPL_ZEPHYR, "{\"tool_ca"), 0);
    assert_int_equal(tlen(MX_TMPL_ZEPHYR, "{\"tool_x"), 8);
    /* never a split UTF-8 character */
    assert_int_equal(tlen(MX_TMPL_ZEPHYR, "a\xc3"), 1);
    assert_int_equal(tlen(MX_TMPL_ZEPHYR, "a\xc3\xa9"), 3);
    assert_int_equal(tlen(MX_TMPL_ZEPHYR, "a\xe2\x82"), 1);
    assert_int_equal(mx_tool_calls_text_len(MX_TMPL_ZEPHYR, NULL, 0), 0);
    /* streaming a whole answer: the shown part never passes the marker and never shrinks */
    const char *ans = "Let me see. [TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {}}]";
    size_t prev = 0, mark = strstr(ans, "[TOOL_CALLS]") - ans;
    for (size_t n = 0; n <= strlen(ans); n++) {
        size_t t = mx_tool_calls_text_len(MX_TMPL_MISTRAL_V3, ans, n);
        assert_true(t <= mark && t >= prev);
        prev = t;
    }
    assert_int_equal(prev, mark);
}

/* ---- the call grammar -------------------------------------------------------------------- */

/* Hand-written argument grammars (the JSON-schema converter's output has the same shape: a root
 * rule and helpers, which the tool grammar renames per tool). */
static const char *const args_gbnf[] = {
    "root ::= \"{\" space \"\\\"city\\\"\" space \":\" space string space \"}\"\n"
    "string ::= \"\\\"\" [a-zA-Z ]{1,10} \"\\\"\"\n"
    "space ::= | \" \" | \"\\n\" [ \\t]{0,2}\n",
    "root ::= \"{\" space \"}\" # a comment with root in it\n"
    "space ::= \" \"?\n",
};

/* The arguments of a call validate against the hand-written grammars' schemas. */
static void check_args(const struct mx_tool_call *c) {
    json_error_t je;
    json_t *a = json_loads(c->arguments, 0, &je);
    if (!json_is_object(a))
        fail_msg("arguments '%s' are not an object", c->arguments);
    if (strcmp(c->name, "get_weather") == 0) {
        json_t *city = json_object_get(a, "city");
        assert_int_equal(json_object_size(a), 1);
        assert_true(json_is_string(city));
        size_t n = json_string_length(city);
        assert_true(n >= 1 && n <= 10);
        assert_int_equal(strspn(json_string_value(city),
                                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ "), n);
    } else if (strcmp(c->name, "get_time") == 0) {
        assert_int_equal(json_object_size(a), 0);
    } else {
        fail_msg("call to unknown tool '%s'", c->name);
    }
    json_decref(a);
}

/* A random walk of the grammar: at each step a random byte among those it allows (printable
 * ASCII and \n \t), ending when it is complete and (finished, or 1 in 6). */
static size_t random_walk(struct mx_grammar *g, uint64_t *seed, char *out, size_t cap) {
    size_t n = 0;
    char ok[128];
    while (n + 1 < cap) {
        if (mx_grammar_complete(g) && (mx_grammar_finished(g) || mx_test_rand(seed) % 6 == 0))
            break;
        int k = 0;
        for (int c = 9; c < 127; c++) {
            char ch = (char)c;
            if ((c >= 32 || c == '\n' || c == '\t') && mx_grammar_allows(g, &ch, 1))
                ok[k++] = ch;
        }
        assert_true(k > 0); /* a grammar that is not complete always allows something */
        char ch = ok[mx_test_rand(seed) % (uint64_t)k];
        /* now and then prefer a closing character, so that free strings end soon */
        for (int i = 0; i < k && mx_test_rand(seed) % 4 == 0; i++)
            if (strchr("\"}]", ok[i])) {
                ch = ok[i];
                break;
            }
        assert_int_equal(mx_grammar_accept(g, &ch, 1), 0);
        out[n++] = ch;
    }
    out[n] = '\0';
    return n;
}

static void test_grammar_walks(void **state) {
    (void)state;
    static const enum mx_tmpl_kind kinds[] = {MX_TMPL_MISTRAL_V3, MX_TMPL_MISTRAL_V7_TEKKEN,
                                              MX_TMPL_CHATML, MX_TMPL_LLAMA3, MX_TMPL_ZEPHYR};
    uint64_t seed = 7;
    for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
        enum mx_tmpl_kind k = kinds[ki];
        char *gbnf = NULL;
        const char *trigger = NULL;
        struct mx_err e = {0};
        if (mx_tool_grammar_args(k, tools, 2, args_gbnf, &gbnf, &trigger, &e) != 0)
            fail_msg("%s: %s", mx_tmpl_name(k), e.msg);
        assert_string_equal(trigger, mx_tool_trigger(k));
        struct mx_grammar *g = NULL;
        if (mx_grammar_parse(gbnf, strlen(gbnf), "tools", &g, &e) != 0)
            fail_msg("%s: %s\n%s", mx_tmpl_name(k), e.msg, gbnf);
        size_t seen[2] = {0, 0};
        for (int w = 0; w < 100; w++) {
            char text[4096];
            mx_grammar_reset(g);
            size_t n = random_walk(g, &seed, text, sizeof text);
            /* the call opens with the trigger, so the lazy grammar sees all of it */
            assert_memory_equal(text, trigger, strlen(trigger));
            struct mx_tool_calls c;
            if (mx_tool_calls_parse(k, text, n, &c, &e) != 0)
                fail_msg("%s: walk '%s' does not parse: %s", mx_tmpl_name(k), text, e.msg);
            assert_true(c.n_calls >= 1);
            assert_string_equal(c.content, "");
            for (size_t i = 0; i < c.n_calls; i++) {
                check_args(&c.calls[i]);
                seen[strcmp(c.calls[i].name, "get_weather") == 0]++;
                assert_true(strlen(c.calls[i].id) >= 9);
            }
            mx_tool_calls_free(&c);
        }
        assert_true(seen[0] > 0 && seen[1] > 0); /* both tools were reachable */
        /* a call to a tool that is not offered, or bad arguments, is refused */
        mx_grammar_reset(g);
        char bad[128];
        snprintf(bad, sizeof bad, "%s", k == MX_TMPL_LLAMA3 ? "{\"name\": \"rm_rf\""
                                        : k == MX_TMPL_CHATML ? "<tool_call>{\"name\": \"rm_rf\""
                                        : k == MX_TMPL_ZEPHYR ? "{\"tool_calls\": [{\"name\": \"rm"
                                                              : "[TOOL_CALLS] [{\"name\": \"rm");
        assert_int_not_equal(mx_grammar_accept(g, bad, strlen(bad)), 0);
        mx_grammar_free(g);
        free(gbnf);
    }
    /* refused input */
    char *gbnf = (char *)"x";
    const char *trigger = "x";
    struct mx_err e = {0};
    const struct mx_tool_def badname[] = {{"rm -rf", "d", NULL}};
    assert_int_equal(mx_tool_grammar_args(MX_TMPL_CHATML, badname, 1, args_gbnf, &gbnf, &trigger,
                                          &e), MX_EINVAL);
    assert_non_null(strstr(e.msg, "rm -rf"));
    assert_null(gbnf);
    assert_null(trigger);
    assert_int_equal(mx_tool_grammar_args(MX_TMPL_CHATML, tools, 0, args_gbnf, &gbnf, &trigger,
                                          NULL), MX_EINVAL);
    const char *const one_missing[] = {args_gbnf[0], NULL};
    assert_int_equal(mx_tool_grammar_args(MX_TMPL_CHATML, tools, 2, one_missing, &gbnf, &trigger,
                                          NULL), MX_EINVAL);
    assert_false(mx_tool_name_valid(""));
    assert_false(mx_tool_name_valid("a\"b"));
    assert_true(mx_tool_name_valid("generate_image"));
}

/* Tools with real JSON schemas, through the converter (core/llm/json_schema.h). */
static const struct mx_tool_def schema_tools[] = {
    {"get_weather", "Get the weather", WEATHER_SCHEMA},
    {"get_forecast", "Forecast",
     "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\", "
     "\"maxLength\": 12}, \"days\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 7}, "
     "\"unit\": {\"enum\": [\"C\", \"F\"]}}, \"required\": [\"city\", \"days\"], "
     "\"additionalProperties\": false}"},
    {"ping", "No arguments", NULL},
};

/* Bounded arguments only, for an untrained model (an unbounded string may never close). */
static const struct mx_tool_def model_tools[] = {
    {"get_forecast", "Forecast", NULL /* schema_tools[1]'s, set where used */},
    {"set_unit", "Unit",
     "{\"type\": \"object\", \"properties\": {\"unit\": {\"enum\": [\"C\", \"F\"]}}, "
     "\"required\": [\"unit\"], \"additionalProperties\": false}"},
};

/* The arguments validate against schema_tools' and model_tools' schemas (a validator for
 * exactly these). */
static void check_schema_args(const struct mx_tool_call *c) {
    if (strcmp(c->name, "ping") == 0) { /* any object, numbers beyond a double's range too */
        assert_int_equal(c->arguments[0], '{');
        return;
    }
    json_t *a = json_loads(c->arguments, 0, NULL);
    if (!json_is_object(a))
        fail_msg("arguments '%s' are not an object", c->arguments);
    if (strcmp(c->name, "get_weather") == 0) {
        assert_true(json_is_string(json_object_get(a, "city")));
    } else if (strcmp(c->name, "get_forecast") == 0) {
        json_t *city = json_object_get(a, "city"), *days = json_object_get(a, "days");
        json_t *unit = json_object_get(a, "unit");
        assert_true(json_is_string(city));
        const char *cs = json_string_value(city);
        size_t cps = 0;
        for (const char *p = cs; *p; p++)
            cps += ((unsigned char)*p & 0xc0) != 0x80;
        assert_true(cps <= 12);
        assert_true(json_is_integer(days));
        assert_true(json_integer_value(days) >= 1 && json_integer_value(days) <= 7);
        if (unit) {
            assert_true(json_is_string(unit));
            assert_true(strcmp(json_string_value(unit), "C") == 0 ||
                        strcmp(json_string_value(unit), "F") == 0);
        }
        assert_int_equal(json_object_size(a), 2 + (unit != NULL));
    } else if (strcmp(c->name, "set_unit") == 0) {
        json_t *unit = json_object_get(a, "unit");
        assert_int_equal(json_object_size(a), 1);
        assert_true(json_is_string(unit));
        assert_true(strcmp(json_string_value(unit), "C") == 0 ||
                    strcmp(json_string_value(unit), "F") == 0);
    } else {
        fail_msg("call to unknown tool '%s'", c->name);
    }
    json_decref(a);
}

static void test_grammar_schema_walks(void **state) {
    (void)state;
    static const enum mx_tmpl_kind kinds[] = {MX_TMPL_MISTRAL_V3, MX_TMPL_CHATML, MX_TMPL_LLAMA3,
                                              MX_TMPL_GEMMA};
    uint64_t seed = 11;
    for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
        char *gbnf = NULL;
        const char *trigger = NULL;
        struct mx_err e = {0};
        if (mx_tool_grammar(kinds[ki], schema_tools, 3, &gbnf, &trigger, &e) != 0)
            fail_msg("%s: %s", mx_tmpl_name(kinds[ki]), e.msg);
        struct mx_grammar *g = NULL;
        if (mx_grammar_parse(gbnf, strlen(gbnf), "tools", &g, &e) != 0)
            fail_msg("%s: %s\n%s", mx_tmpl_name(kinds[ki]), e.msg, gbnf);
        size_t seen[3] = {0};
        for (int w = 0; w < 40; w++) {
            static char text[16384];
            mx_grammar_reset(g);
            size_t n = random_walk(g, &seed, text, sizeof text);
            struct mx_tool_calls c;
            if (mx_tool_calls_parse(kinds[ki], text, n, &c, &e) != 0 || c.n_calls == 0)
                fail_msg("%s: walk '%s' is no call: %s", mx_tmpl_name(kinds[ki]), text, e.msg);
            for (size_t i = 0; i < c.n_calls; i++) {
                check_schema_args(&c.calls[i]);
                for (int t = 0; t < 3; t++)
                    seen[t] += strcmp(c.calls[i].name, schema_tools[t].name) == 0;
            }
            mx_tool_calls_free(&c);
        }
        assert_true(seen[0] && seen[1] && seen[2]);
        mx_grammar_free(g);
        free(gbnf);
    }
    /* a schema the converter refuses names the tool and the keyword */
    const struct mx_tool_def bad[] = {{"f", "d", "{\"not\": {}}"}};
    char *gbnf = NULL;
    const char *trigger = NULL;
    struct mx_err e = {0};
    assert_int_equal(mx_tool_grammar(MX_TMPL_CHATML, bad, 1, &gbnf, &trigger, &e), MX_EUNSUP);
    assert_non_null(strstr(e.msg, "tool 'f'"));
    assert_non_null(strstr(e.msg, "not"));
    assert_null(gbnf);
}

/* The grammar engine takes characters, not byte patterns: an overlong ',' (E0 80 AC, which the
 * detokenizer shows as three U+FFFD) once let an untrained model's call through as "valid"
 * (test_tool_grammar_model, mistral-v3 seed 2), and a lone E0 passed as a prefix of ','. */
static void test_grammar_utf8_forms(void **state) {
    (void)state;
    struct mx_grammar *g = NULL;
    struct mx_err e = {0};
    assert_int_equal(mx_grammar_parse("root ::= \",\"", 12, "t", &g, &e), 0);
    assert_false(mx_grammar_allows(g, "\xe0\x80\xac", 3)); /* overlong ',' */
    assert_false(mx_grammar_allows(g, "\xe0", 1));         /* no completion is ',' */
    assert_false(mx_grammar_allows(g, "\xc0\xac", 2));
    assert_true(mx_grammar_allows(g, ",", 1));
    mx_grammar_free(g);
    assert_int_equal(mx_grammar_parse("root ::= [^a]", 13, "t", &g, &e), 0);
    assert_true(mx_grammar_allows(g, "\xe0", 1));          /* E0 A0 80 is U+0800 */
    assert_true(mx_grammar_allows(g, "\xe0\xa0\x80", 3));
    assert_false(mx_grammar_allows(g, "\xe0\x9f\xbf", 3)); /* overlong U+07FF */
    assert_false(mx_grammar_allows(g, "\xed\xa0\x80", 3)); /* surrogate U+D800 */
    assert_true(mx_grammar_allows(g, "\xed\x9f\xbf", 3));  /* U+D7FF */
    assert_false(mx_grammar_allows(g, "\xf0\x8f\xbf\xbf", 4));
    assert_true(mx_grammar_allows(g, "\xf0\x90\x80\x80", 4));
    assert_false(mx_grammar_allows(g, "\xf4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_true(mx_grammar_allows(g, "\xf4\x8f\xbf\xbf", 4));
    mx_grammar_free(g);
}

/* ---- the generate loop (tiny-mixtral from ../shared) --------------------------------------- */

static struct mx_llm *tiny;

static int collect(void *ud, const char *s, size_t n) {
    return mx_bytes_add(ud, s, n);
}

/* Generates from prompt under settings s into out (NUL-terminated); returns the end reason. */
static enum mx_gen_end gen(struct mx_gen_settings *s, const char *prompt, struct mx_bytes *out,
                           struct mx_err *e, int *rc) {
    int32_t *ids = NULL;
    size_t n = 0;
    struct mx_gen_stats st = {0};
    struct mx_gen_io io = {0};
    io.text = collect;
    io.ud = out;
    io.detok_flags = MX_DETOK_LSTRIP;
    mx_llm_clear(tiny);
    assert_int_equal(mx_llm_tokenize(tiny, prompt, strlen(prompt), &ids, &n, e), 0);
    assert_int_equal(mx_llm_prefill(tiny, ids, n, &io, &st, e), 0);
    *rc = mx_llm_generate(tiny, s, ids, n, &io, &st, e);
    free(ids);
    mx_bytes_add(out, "", 0);
    return st.end;
}

/* A lazy grammar: free text until the first "e", then the grammar; the text before has no "e"
 * (the trigger), the rest follows the grammar and ends where it is finished. The trigger is a
 * letter so that an untrained model writes it, inside longer tokens too ("e" + "nd" in one). */
static void test_lazy_trigger(void **state) {
    (void)state;
    if (!tiny)
        mx_test_skip("the lazy grammar test needs ../shared/models/tiny-mixtral-f32.gguf");
    size_t constrained = 0;
    for (uint64_t seed = 1; seed <= 6; seed++) {
        struct mx_gen_settings s;
        mx_gen_settings_default(&s);
        s.sampling.temp = 1.0f;
        s.sampling.seed = seed;
        s.n_predict = 120;
        s.grammar_text = "root ::= \"e\" [^\\n0-9e\\x00]{0,12} \"=\" [0-9]{3}\n";
        s.grammar_name = "lazy";
        s.grammar_trigger = "e";
        struct mx_bytes out = {0};
        struct mx_err e = {0};
        int rc;
        enum mx_gen_end end = gen(&s, "Once upon a time", &out, &e, &rc);
        if (rc != 0)
            fail_msg("seed %llu: %s", (unsigned long long)seed, e.msg);
        const char *t = memchr(out.p, 'e', out.n); /* the free text may hold NUL bytes */
        printf("lazy, seed %llu: %s\n", (unsigned long long)seed, out.p);
        if (t) { /* triggered: the rest is a sentence of the grammar, generation ended there */
            size_t k = strcspn(t + 1, "="), cps = 0;
            for (size_t i = 1; i <= k; i++) /* the class counts characters, not bytes */
                cps += ((unsigned char)t[i] & 0xc0) != 0x80;
            assert_true(cps <= 12);
            assert_null(memchr(t + 1, 'e', k));
            assert_int_equal(t[1 + k], '=');
            assert_int_equal(strlen(t + 2 + k), 3);
            assert_int_equal(strspn(t + 2 + k, "0123456789"), 3);
            assert_int_equal(end, MX_GEN_EOG);
            constrained++;
        } else {
            assert_int_not_equal(end, MX_GEN_EOG); /* never triggered: free to the length */
        }
        mx_bytes_free(&out);
    }
    assert_true(constrained > 0);
}

/* A control token as the trigger (as [TOOL_CALLS] is in Mistral v3 vocabularies; here the
 * tiny vocabulary's BOS "<s>", which an untrained model samples now and then): its text is
 * written into the answer, and the grammar, which starts with that text, takes over after it. */
static void test_control_token_trigger(void **state) {
    (void)state;
    if (!tiny)
        mx_test_skip("the control-token trigger test needs ../shared/models/tiny-mixtral-f32.gguf");
    size_t triggered = 0;
    for (uint64_t seed = 1; seed <= 8 && triggered < 2; seed++) {
        struct mx_gen_settings s;
        mx_gen_settings_default(&s);
        s.sampling.temp = 3.0f; /* flat enough that the rare BOS comes up */
        s.sampling.seed = seed;
        s.n_predict = 400;
        s.ignore_eos = true;
        s.sampling.top_k = 0; /* the whole vocabulary */
        s.sampling.top_p = 1.0f;
        s.sampling.min_p = 0.0f;
        s.grammar_text = "root ::= \"<s>\" [0-9]{2}\n";
        s.grammar_trigger = "<s>";
        struct mx_bytes out = {0};
        struct mx_err e = {0};
        int rc;
        enum mx_gen_end end = gen(&s, "Once upon a time", &out, &e, &rc);
        if (rc != 0)
            fail_msg("seed %llu: %s", (unsigned long long)seed, e.msg);
        const char *t = memmem(out.p, out.n, "<s>", 3); /* the text may hold NUL bytes */
        printf("control trigger, seed %llu (%s): %s\n", (unsigned long long)seed,
               mx_gen_end_name(end),
               t ? t : "no <s>");
        if (t) { /* the trigger's text, then the grammar's two digits and the end (or the
                  * length limit came first) */
            assert_int_equal(strspn(t + 3, "0123456789"), strlen(t + 3));
            assert_true(strlen(t + 3) <= 2);
            assert_true(end == MX_GEN_EOG ? strlen(t + 3) == 2 : end == MX_GEN_LENGTH);
            triggered += end == MX_GEN_EOG;
        }
        mx_bytes_free(&out);
    }
    assert_true(triggered > 0);
}

/* The tool grammar from the tools' JSON schemas, from the first token (no trigger): every
 * answer of the untrained model is a call that parses, names a tool and carries arguments that
 * validate. */
static void test_tool_grammar_model(void **state) {
    (void)state;
    if (!tiny)
        mx_test_skip("the tool grammar test needs ../shared/models/tiny-mixtral-f32.gguf");
    static const enum mx_tmpl_kind kinds[] = {MX_TMPL_MISTRAL_V3, MX_TMPL_CHATML, MX_TMPL_LLAMA3,
                                              MX_TMPL_ZEPHYR};
    for (size_t ki = 0; ki < sizeof kinds / sizeof kinds[0]; ki++) {
        char *gbnf = NULL;
        const char *trigger = NULL;
        struct mx_err e = {0};
        struct mx_tool_def mt[2] = {model_tools[0], model_tools[1]};
        mt[0].parameters = schema_tools[1].parameters;
        if (mx_tool_grammar(kinds[ki], mt, 2, &gbnf, &trigger, &e) != 0)
            fail_msg("%s: %s", mx_tmpl_name(kinds[ki]), e.msg);
        for (uint64_t seed = 1; seed <= 3; seed++) {
            struct mx_gen_settings s;
            mx_gen_settings_default(&s);
            s.sampling.temp = 1.0f;
            s.sampling.seed = seed;
            s.n_predict = 1500; /* up to 8 calls with random whitespace */
            s.grammar_text = gbnf;
            struct mx_bytes out = {0};
            int rc;
            enum mx_gen_end end = gen(&s, "Call a tool:", &out, &e, &rc);
            if (rc != 0 || end != MX_GEN_EOG)
                fail_msg("%s seed %llu: rc %d end %s: %s", mx_tmpl_name(kinds[ki]),
                         (unsigned long long)seed, rc, mx_gen_end_name(end), e.msg);
            struct mx_tool_calls c;
            if (mx_tool_calls_parse(kinds[ki], out.p, out.n, &c, &e) != 0 || c.n_calls == 0)
                fail_msg("%s seed %llu: '%s' is no call: %s", mx_tmpl_name(kinds[ki]),
                         (unsigned long long)seed, out.p, e.msg);
            for (size_t i = 0; i < c.n_calls; i++)
                check_schema_args(&c.calls[i]);
            mx_tool_calls_free(&c);
            mx_bytes_free(&out);
        }
        free(gbnf);
    }
}

int main(void) {
    const char *shared = mx_test_shared_dir();
    if (shared) {
        char path[4096];
        struct mx_gen_settings s;
        struct mx_err e = {0};
        mx_gen_settings_default(&s);
        s.device = "cpu";
        s.threads = 1;
        s.n_ctx = 2048;
        snprintf(path, sizeof path, "%s/models/tiny-mixtral-f32.gguf", shared);
        if (mx_llm_open(&tiny, path, &s, &e) != 0) {
            printf("%s: %s\n", path, e.msg);
            return 1;
        }
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render_llama3),
        cmocka_unit_test(test_render_hermes),
        cmocka_unit_test(test_render_generic),
        cmocka_unit_test(test_parse_mistral),
        cmocka_unit_test(test_parse_hermes),
        cmocka_unit_test(test_parse_llama3),
        cmocka_unit_test(test_parse_generic),
        cmocka_unit_test(test_parse_malformed),
        cmocka_unit_test(test_parse_partial),
        cmocka_unit_test(test_parse_random),
        cmocka_unit_test(test_text_len),
        cmocka_unit_test(test_grammar_walks),
        cmocka_unit_test(test_grammar_schema_walks),
        cmocka_unit_test(test_grammar_utf8_forms),
        cmocka_unit_test(test_lazy_trigger),
        cmocka_unit_test(test_control_token_trigger),
        cmocka_unit_test(test_tool_grammar_model),
    };
    int failures = cmocka_run_group_tests(tests, NULL, NULL);
    mx_llm_close(tiny);
    return mx_test_status(failures);
}
