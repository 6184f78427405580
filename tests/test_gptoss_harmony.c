/* test_gptoss_harmony.c - gpt-oss's "harmony" chat format:
 *   - renders equal to what the published Jinja template renders (tests/golden/gptoss/
 *     harmony_renders.txt, made with jinja2 by make_harmony.py) for every case there;
 *   - the family is recognised from the template text, is named "harmony", stops at <|return|>
 *     and <|call|> but not <|end|>;
 *   - what the template cannot express (a later system message, channel tags in an answer, an
 *     unknown reasoning effort) is refused; tools take mixel's generic convention;
 *   - the channel splitter gives the analysis and the final text of an answer cut into pieces
 *     at every byte boundary, passes plain text through, and never loses text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "core/base/bytes.h"
#include "core/base/util.h"
#include "core/text/harmony.h"
#include "core/text/template.h"
#include "tests/mx_test.h"

/* A JSON string literal of the golden file, decoded (caller frees). */
static char *json_str(const char *lit) {
    json_error_t e;
    json_t *j = json_loads(lit, JSON_DECODE_ANY, &e);
    if (!j || !json_is_string(j))
        fail_msg("bad JSON string in the golden: %.60s", lit);
    char *s = strdup(json_string_value(j));
    json_decref(j);
    return s;
}

static enum mx_role role_of(const char *r) {
    return !strcmp(r, "system") ? MX_ROLE_SYSTEM : !strcmp(r, "user") ? MX_ROLE_USER
                                                                       : MX_ROLE_ASSISTANT;
}

static void test_renders_equal_jinja(void **state) {
    (void)state;
    char path[512];
    snprintf(path, sizeof path, "%s/tests/golden/gptoss/harmony_renders.txt",
             getenv("MX_SRCDIR") ? getenv("MX_SRCDIR") : ".");
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot read %s", path);
    char line[8192], name[64] = "", effort[16] = "";
    int gen = 0, n_cases = 0;
    struct mx_chat_msg msgs[8];
    char *texts[8];
    size_t n = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (!strncmp(line, "CASE ", 5)) {
            assert_int_equal(sscanf(line + 5, "%63s %d %15s", name, &gen, effort), 3);
            n = 0;
        } else if (!strncmp(line, "MSG ", 4)) {
            char *sp = strchr(line + 4, ' ');
            assert_non_null(sp);
            *sp = 0;
            assert_true(n < 8);
            texts[n] = json_str(sp + 1);
            msgs[n] = (struct mx_chat_msg){role_of(line + 4), texts[n], NULL, 0, NULL};
            n++;
        } else if (!strncmp(line, "RENDER ", 7)) {
            char *want = json_str(line + 7);
            struct mx_tmpl_opts o = {.add_generation_prompt = gen != 0, .date = "2026-12-07",
                                     .reasoning_effort = strcmp(effort, "-") ? effort : NULL};
            struct mx_tmpl_prompt p;
            struct mx_err err = {0};
            if (mx_tmpl_render(MX_TMPL_HARMONY, msgs, n, &o, &p, &err) < 0)
                fail_msg("%s: %s", name, err.msg);
            if (strcmp(p.text, want) != 0)
                fail_msg("%s:\n got  %s\n want %s", name, p.text, want);
            assert_false(p.add_bos); /* the template writes no BOS; gpt-oss adds none */
            mx_tmpl_prompt_free(&p);
            free(want);
            for (size_t i = 0; i < n; i++)
                free(texts[i]);
            n_cases++;
        }
    }
    fclose(f);
    assert_int_equal(n_cases, 5);
}

/* The published template's distinctive lines (openai/gpt-oss-120b chat_template.jinja). */
static const char *const jinja_excerpt =
    "{#- Render system message #}\n"
    "{{- \"<|start|>system<|message|>\" }}\n"
    "{{- build_system_message() }}\n"
    "{{- \"<|end|>\" }}\n"
    "...{{- \"<|start|>assistant<|channel|>final<|message|>\" + message.content + \"<|end|>\" }}\n"
    "{%- if add_generation_prompt -%}\n<|start|>assistant\n{%- endif -%}";

static void test_detect_and_name(void **state) {
    (void)state;
    enum mx_tmpl_kind k = MX_TMPL_CHATML;
    assert_true(mx_tmpl_detect(jinja_excerpt, &k));
    assert_int_equal(k, MX_TMPL_HARMONY);
    assert_string_equal(mx_tmpl_name(MX_TMPL_HARMONY), "harmony");
    struct mx_err err = {0};
    assert_int_equal(mx_tmpl_from_name("harmony", &k, &err), 0);
    assert_int_equal(k, MX_TMPL_HARMONY);
    assert_non_null(strstr(mx_tmpl_names(), "harmony"));
    struct mx_tmpl_choice ch;
    assert_int_equal(mx_tmpl_choose(NULL, jinja_excerpt, "gpt-oss", &ch, &err), 0);
    assert_int_equal(ch.kind, MX_TMPL_HARMONY);
    assert_string_equal(ch.source, "gguf");
    /* phi3's template has <|end|> too but no channels: still phi3 */
    assert_true(mx_tmpl_detect("{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}", &k));
    assert_int_equal(k, MX_TMPL_PHI3);
    const char *const *st = mx_tmpl_stop_strings(MX_TMPL_HARMONY);
    assert_string_equal(st[0], "<|return|>");
    assert_string_equal(st[1], "<|call|>");
    assert_null(st[2]);
}

static void test_refusals(void **state) {
    (void)state;
    struct mx_err err = {0};
    struct mx_tmpl_prompt p;
    const struct mx_chat_msg late_sys[] = {{MX_ROLE_USER, "a", NULL, 0, NULL},
                                           {MX_ROLE_SYSTEM, "b", NULL, 0, NULL}};
    assert_int_equal(mx_tmpl_render(MX_TMPL_HARMONY, late_sys, 2, NULL, &p, &err), MX_EINVAL);
    mx_tmpl_prompt_free(&p);
    const struct mx_chat_msg tagged[] = {
        {MX_ROLE_USER, "a", NULL, 0, NULL},
        {MX_ROLE_ASSISTANT, "<|channel|>analysis<|message|>x", NULL, 0, NULL}};
    err = (struct mx_err){0};
    assert_int_equal(mx_tmpl_render(MX_TMPL_HARMONY, tagged, 2, NULL, &p, &err), MX_EINVAL);
    assert_non_null(strstr(err.msg, "channel"));
    mx_tmpl_prompt_free(&p);
    /* tools: mixel's generic convention (the tools in the developer block, a result as a user
     * turn), as for the other families without a tool syntax */
    const struct mx_chat_msg tool[] = {{MX_ROLE_USER, "a", NULL, 0, NULL},
                                       {MX_ROLE_TOOL, "42", NULL, 0, NULL}};
    const struct mx_tool_def td = {"get_answer", "d", NULL};
    struct mx_tmpl_opts o = {.tools = &td, .n_tools = 1, .date = "2026-12-07"};
    err = (struct mx_err){0};
    if (mx_tmpl_render(MX_TMPL_HARMONY, tool, 2, &o, &p, &err) < 0)
        fail_msg("tools: %s", err.msg);
    assert_non_null(strstr(p.text, "<|start|>developer<|message|># Instructions\n\n"));
    assert_non_null(strstr(p.text, "get_answer"));
    assert_non_null(strstr(p.text, "<|start|>user<|message|>a<|end|>"));
    assert_non_null(strstr(p.text, "42"));
    mx_tmpl_prompt_free(&p);
    struct mx_tmpl_opts e = {.reasoning_effort = "extreme"};
    assert_int_equal(mx_tmpl_render(MX_TMPL_HARMONY, tool, 1, &e, &p, &err), MX_EINVAL);
    mx_tmpl_prompt_free(&p);
    /* no date given: today's, in the template's place */
    assert_int_equal(mx_tmpl_render(MX_TMPL_HARMONY, tool, 1, NULL, &p, &err), 0);
    const char *d = strstr(p.text, "Current date: ");
    assert_non_null(d);
    assert_true(d[14] >= '0' && d[14] <= '9' && d[18] == '-' && d[21] == '-');
    mx_tmpl_prompt_free(&p);
}

/* ---- the splitter --------------------------------------------------------------------------- */

struct parts {
    struct mx_bytes b[3];
};

static int put(void *ud, enum mx_harmony_part part, const char *s, size_t n) {
    struct parts *p = ud;
    assert_true(n > 0);
    return mx_bytes_add(&p->b[part], s, n);
}

/* text fed in pieces of `step` bytes (0: one piece) must give these three parts */
static void expect_split(const char *text, const char *fin, const char *ana, const char *com) {
    size_t n = strlen(text);
    for (size_t step = 0; step <= n; step++) {
        struct mx_harmony_stream s;
        struct parts p = {0};
        mx_harmony_stream_init(&s);
        size_t k = step ? step : n;
        for (size_t i = 0; i < n; i += k)
            assert_int_equal(mx_harmony_stream_push(&s, text + i, MX_MIN(k, n - i), put, &p), 0);
        assert_int_equal(mx_harmony_stream_flush(&s, put, &p), 0);
        const char *want[3] = {fin, ana, com};
        for (int j = 0; j < 3; j++) {
            const char *got = p.b[j].p ? p.b[j].p : "";
            if (strcmp(got, want[j]) != 0)
                fail_msg("step %zu, part %d of \"%s\": \"%s\", want \"%s\"", step, j, text, got,
                         want[j]);
            mx_bytes_free(&p.b[j]);
        }
    }
}

static void test_splitter(void **state) {
    (void)state;
    /* what gpt-oss writes after "<|start|>assistant" (its <|return|> is the end token, not
     * text; here it is, as it would be with the end ignored) */
    expect_split("<|channel|>analysis<|message|>User asks 2+2. Answer 4.<|end|><|start|>assistant"
                 "<|channel|>final<|message|>2 + 2 = 4.<|return|>",
                 "2 + 2 = 4.", "User asks 2+2. Answer 4.", "");
    /* no channels at all (a raw completion): all of it is the answer, '<' included */
    expect_split("a < b and x<|y|> <|", "a < b and x<|y|> <|", "", "");
    /* a tool call: commentary with its constrain tag */
    expect_split("<|channel|>analysis<|message|>need weather<|end|><|start|>assistant to="
                 "functions.get_weather<|channel|>commentary <|constrain|>json<|message|>"
                 "{\"city\":\"Oslo\"}<|call|>",
                 "", "need weather", "{\"city\":\"Oslo\"}");
    /* final with no analysis; unknown channel names count as final */
    expect_split("<|channel|>final<|message|>hi<|end|><|channel|>other<|message|> there",
                 "hi there", "", "");
    /* a header that never ends is not lost */
    expect_split("<|start|>assistant", "assistant", "", "");
    /* a tag split at every position, and multibyte text */
    expect_split("<|channel|>analysis<|message|>Grüße 世界<|end|><|start|>assistant<|channel|>"
                 "final<|message|>🎉", "🎉", "Grüße 世界", "");
}

/* The whole-text helper and an overlong header. */
static void test_split_whole(void **state) {
    (void)state;
    struct mx_bytes r = {0}, a = {0};
    const char *t = "<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final"
                    "<|message|>answer";
    assert_int_equal(mx_harmony_split(t, strlen(t), &r, &a), 0);
    assert_string_equal(r.p, "think");
    assert_string_equal(a.p, "answer");
    mx_bytes_free(&r);
    mx_bytes_free(&a);
    char big[600];
    memcpy(big, "<|start|>", 9);
    memset(big + 9, 'x', sizeof big - 10);
    big[sizeof big - 1] = 0;
    assert_int_equal(mx_harmony_split(big, strlen(big), NULL, &a), 0);
    assert_int_equal(a.n, sizeof big - 10); /* every x, as answer text */
    mx_bytes_free(&a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_renders_equal_jinja),
        cmocka_unit_test(test_detect_and_name),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_splitter),
        cmocka_unit_test(test_split_whole),
    };
    return mx_test_status(cmocka_run_group_tests(tests, NULL, NULL));
}
