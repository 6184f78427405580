/* test_oai.c - the wire formats of `mixel serve` (net/oai.c, net/server_sd.c) against the bytes
 * OpenAI, llama.cpp's server and A1111 send: stream chunks and responses key by key, error
 * objects, request fields read into the engine's turns and settings (content parts, tool calls,
 * stop strings appended to the server's), every refusal naming its field, base64 against RFC
 * 4648's vectors, invalid UTF-8 from a model made U+FFFD. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "core/llm/json_schema.h"
#include "net/oai.h"
#include "net/server_sd.h"

/* A chat stream as OpenAI sends it: the role chunk, content chunks, the finish chunk with usage
 * (llama.cpp's place for it); completions carry "text". */
static void test_chunks(void **state) {
    (void)state;
    struct mx_oai_meta m = {MX_OAI_CHAT, "chatcmpl-1", 7, "tiny"};
    char *s = mx_oai_chunk(&m, true, NULL, 0, NULL, NULL);
    assert_string_equal(s, "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\","
                           "\"created\":7,\"model\":\"tiny\",\"choices\":[{\"index\":0,"
                           "\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                           "\"finish_reason\":null}]}\n\n");
    free(s);
    s = mx_oai_chunk(&m, false, "Hi \"x\"\n", 7, NULL, NULL);
    assert_non_null(strstr(s, "\"delta\":{\"content\":\"Hi \\\"x\\\"\\n\"},\"finish_reason\":null"));
    free(s);
    struct mx_oai_usage u = {3, 4};
    s = mx_oai_chunk(&m, false, NULL, 0, "stop", &u);
    assert_non_null(strstr(s, "\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{"
                              "\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}"
                              "\n\n"));
    free(s);
    m.kind = MX_OAI_COMPLETION;
    s = mx_oai_chunk(&m, false, "ab", 2, NULL, NULL);
    assert_non_null(strstr(s, "\"object\":\"text_completion\""));
    assert_non_null(strstr(s, "\"choices\":[{\"text\":\"ab\",\"index\":0,\"logprobs\":null,"
                              "\"finish_reason\":null}]"));
    free(s);
}

/* Whole answers, the model list, errors; bytes that are not UTF-8 become U+FFFD. */
static void test_responses(void **state) {
    (void)state;
    struct mx_oai_meta m = {MX_OAI_CHAT, "chatcmpl-2", 9, "tiny"};
    struct mx_oai_usage u = {1, 2};
    char *s = mx_oai_response(&m, "ok\xff", 3, "length", &u);
    assert_string_equal(s, "{\"id\":\"chatcmpl-2\",\"object\":\"chat.completion\",\"created\":9,"
                           "\"model\":\"tiny\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
                           "\"assistant\",\"content\":\"ok\xef\xbf\xbd\"},\"finish_reason\":"
                           "\"length\"}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,"
                           "\"total_tokens\":3}}");
    free(s);
    const char *ids[] = {"tiny"};
    s = mx_oai_models(ids, 1, 5);
    assert_string_equal(s, "{\"object\":\"list\",\"data\":[{\"id\":\"tiny\",\"object\":\"model\","
                           "\"created\":5,\"owned_by\":\"mixel\"}]}");
    free(s);
    s = mx_oai_error("bad", "invalid_request_error", "model_not_found");
    assert_string_equal(s, "{\"error\":{\"message\":\"bad\",\"type\":\"invalid_request_error\","
                           "\"param\":null,\"code\":\"model_not_found\"}}");
    free(s);
    assert_string_equal(mx_oai_finish(MX_GEN_LENGTH), "length");
    assert_string_equal(mx_oai_finish(MX_GEN_FULL), "length");
    assert_string_equal(mx_oai_finish(MX_GEN_EOG), "stop");
    assert_string_equal(mx_oai_finish(MX_GEN_STOP), "stop");
}

/* A chat request: roles (developer = system), content parts joined, an assistant's tool calls and
 * the tool's answer, sampling fields onto the settings, stops after the server's. */
static void test_parse_chat(void **state) {
    (void)state;
    const char *body =
        "{\"model\":\"tiny\",\"stream\":true,\"temperature\":0.2,\"top_p\":0.5,\"top_k\":7,"
        "\"min_p\":0.01,\"seed\":99,\"max_tokens\":12,\"stop\":[\"END\",\"##\"],"
        "\"messages\":[{\"role\":\"developer\",\"content\":\"be brief\"},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
        "{\"type\":\"text\",\"text\":\"b\"}]},"
        "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"abcdefghi\","
        "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"abcdefghi\",\"content\":\"42\"}]}";
    struct mx_oai_req r;
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    s.stop[0] = "SERVER";
    struct mx_err err = {0};
    assert_int_equal(mx_oai_parse(MX_OAI_CHAT, body, strlen(body), &r, &s, &err), 0);
    assert_true(r.stream);
    assert_string_equal(r.model, "tiny");
    assert_int_equal(r.n_turns, 4);
    assert_int_equal(r.turns[0].role, MX_ROLE_SYSTEM);
    assert_string_equal(r.turns[1].text, "ab");
    assert_int_equal(r.turns[2].role, MX_ROLE_ASSISTANT);
    assert_null(r.turns[2].text);
    assert_int_equal(r.turns[2].n_tool_calls, 1);
    assert_string_equal(r.turns[2].tool_calls[0].name, "f");
    assert_string_equal(r.turns[3].tool_call_id, "abcdefghi");
    assert_true(s.sampling.temp == 0.2f && s.sampling.top_p == 0.5f && s.sampling.top_k == 7);
    assert_true(s.sampling.seed == 99 && s.n_predict == 12 && r.max_set);
    assert_string_equal(s.stop[0], "SERVER");
    assert_string_equal(s.stop[1], "END");
    assert_string_equal(s.stop[2], "##");
    assert_null(s.stop[3]);
    mx_oai_req_free(&r);
}

/* Each refusal is MX_EINVAL with the field in the message. */
static void test_refusals(void **state) {
    (void)state;
    static const struct { const char *body, *word; } bad[] = {
        {"{\"messages\":", "not valid JSON"},
        {"[]", "JSON object"},
        {"{\"messages\":[]}", "messages"},
        {"{\"messages\":[{\"role\":\"user\"}]}", "content"},
        {"{\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", "role"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"tool_calls\":[]}]}", "tool_calls"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}", "parts"},
        {"{\"temperature\":-1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
         "temperature"},
        {"{\"top_k\":1.5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "whole"},
        {"{\"max_tokens\":0,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "max_tokens"},
        {"{\"n\":3,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "n = 1"},
        {"{\"stream\":1,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "stream"},
        {"{\"stop\":[\"\"],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "stop"},
        {"{\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"],\"messages\":[]}",
         "at most"},
        {"{\"tools\":[{}],\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "tools"},
        {"{\"response_format\":{\"type\":\"json_schema\"},\"messages\":[]}", "response_format"},
        {"{\"response_format\":{\"type\":\"xml\"},\"messages\":[]}", "not one of"},
        {"{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":"
         "{\"not\":{}}}},\"messages\":[]}", "'not'"},
        {"{\"model\":5,\"messages\":[]}", "model"},
        {"{\"a\":1,\"a\":2}", "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct mx_oai_req r;
        struct mx_gen_settings s;
        mx_gen_settings_default(&s);
        struct mx_err err = {0};
        int rc = mx_oai_parse(MX_OAI_CHAT, bad[i].body, strlen(bad[i].body), &r, &s, &err);
        if (rc != MX_EINVAL || !strstr(err.msg, bad[i].word))
            fail_msg("%s: rc %d, message '%s' lacks '%s'", bad[i].body, rc, err.msg,
                     bad[i].word);
        assert_null(r.root);
    }
    struct mx_oai_req r;
    struct mx_gen_settings s;
    mx_gen_settings_default(&s);
    struct mx_err err = {0};
    const char *cbody = "{\"prompt\":[\"x y\"],\"seed\":-1}";
    assert_int_equal(mx_oai_parse(MX_OAI_COMPLETION, cbody, strlen(cbody), &r, &s, &err), 0);
    assert_string_equal(r.prompt, "x y");
    assert_true(s.sampling.seed == 0); /* -1: the caller's seed stays */
    mx_oai_req_free(&r);
    assert_int_equal(mx_oai_parse(MX_OAI_COMPLETION, "{}", 2, &r, &s, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "prompt"));
}

/* response_format: json_object -> the --json grammar; json_schema (and llama.cpp's
 * json_object + schema) -> the schema's grammar, kept in the request; text -> none. */
static void test_response_format(void **state) {
    (void)state;
    static const char *const bodies[] = {
        "{\"response_format\":{\"type\":\"text\"},\"messages\":[{\"role\":\"user\","
        "\"content\":\"x\"}]}",
        "{\"response_format\":{\"type\":\"json_object\"},\"messages\":[{\"role\":\"user\","
        "\"content\":\"x\"}]}",
        "{\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\","
        "\"schema\":{\"type\":\"object\",\"properties\":{\"zq\":{\"enum\":[\"kx\"]}},"
        "\"required\":[\"zq\"]}}},\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
        "{\"response_format\":{\"type\":\"json_object\",\"schema\":{\"enum\":[\"qv\"]}},"
        "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}",
    };
    for (size_t i = 0; i < 4; i++) {
        struct mx_oai_req r;
        struct mx_gen_settings s;
        mx_gen_settings_default(&s);
        struct mx_err err = {0};
        assert_int_equal(mx_oai_parse(MX_OAI_CHAT, bodies[i], strlen(bodies[i]), &r, &s, &err),
                         0);
        if (i == 0) {
            assert_null(s.grammar_text);
        } else if (i == 1) {
            assert_ptr_equal(s.grammar_text, mx_json_any_gbnf());
        } else {
            assert_non_null(s.grammar_text);
            /* the schema's own words are in its grammar */
            assert_non_null(strstr(s.grammar_text, i == 2 ? "kx" : "qv"));
        }
        mx_oai_req_free(&r);
    }
}

/* A1111's txt2img fields; the response's info is JSON text; base64 as RFC 4648 section 10. */
static void test_sdapi(void **state) {
    (void)state;
    const char *body = "{\"prompt\":\"fox\",\"negative_prompt\":\"blur\",\"steps\":3,"
                       "\"cfg_scale\":6.5,\"width\":64,\"height\":72,\"seed\":-1,"
                       "\"sampler_name\":\"Euler a\",\"scheduler\":\"Automatic\","
                       "\"batch_size\":2,\"n_iter\":2,\"override_settings\":{}}";
    struct mx_sdapi_req r;
    struct mx_err err = {0};
    assert_int_equal(mx_sdapi_parse(body, strlen(body), &r, &err), 0);
    assert_string_equal(r.img.prompt, "fox");
    assert_string_equal(r.img.negative, "blur");
    assert_int_equal(r.img.steps, 3);
    assert_true(r.img.cfg == 6.5f);
    assert_int_equal(r.img.width, 64);
    assert_int_equal(r.img.height, 72);
    assert_false(r.img.seed_set);
    assert_string_equal(r.img.sampler, "Euler a");
    assert_null(r.img.scheduler);
    assert_int_equal(r.batch, 4);
    struct mx_sdapi_image im[2] = {{"QQ==", "fox\nSteps: 3", 5}, {"Qg==", "fox\nSteps: 3", 6}};
    char *s = mx_sdapi_response(&r, im, 2, 64, 72, 3);
    assert_non_null(strstr(s, "{\"images\":[\"QQ==\",\"Qg==\"],\"parameters\":{\"prompt\":"
                              "\"fox\""));
    assert_non_null(strstr(s, "\"info\":\"{\\\"prompt\\\":\\\"fox\\\",\\\"all_prompts\\\":"
                              "[\\\"fox\\\",\\\"fox\\\"]"));
    assert_non_null(strstr(s, "\\\"all_seeds\\\":[5,6]"));
    free(s);
    mx_sdapi_req_free(&r);
    assert_int_equal(mx_sdapi_parse("{\"steps\":0}", 11, &r, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "steps"));
    mx_err_clear(&err);
    const char *big = "{\"batch_size\":16,\"n_iter\":2}";
    assert_int_equal(mx_sdapi_parse(big, strlen(big), &r, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "at most"));
    char *p = mx_sdapi_progress(1, 4, 2.5, 1, "image 1/4");
    assert_non_null(strstr(p, "\"progress\":0.25"));
    assert_non_null(strstr(p, "\"sampling_step\":1,\"sampling_steps\":4"));
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_parse_chat),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_response_format),
        cmocka_unit_test(test_sdapi),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
