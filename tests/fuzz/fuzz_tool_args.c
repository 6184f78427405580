/* fuzz_tool_args.c - libFuzzer target for what app/tools.c reads from a model's call and from the
 * history: the argument check against a tool's schema (every declared type, an enum, required
 * keys), the one-line form shown to the user (never a control byte, never past its buffer), the
 * stored calls' JSON read back, and a result quoted for Mistral's tool messages (always one
 * valid JSON string). The first byte picks the tool; the rest is the input. Built by
 * `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app/tools.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

/* The registry: the built-ins and one tool of every declared type, made once. */
static struct mx_tool g_tools[2];

static void setup(void) {
    static const char *schemas[] = {
        "{\"type\": \"object\", \"properties\": {\"path\": {\"type\": \"string\"}}, "
        "\"required\": [\"path\"]}",
        "{\"type\": \"object\", \"properties\": {\"s\": {\"type\": \"string\"}, \"i\": {\"type\": "
        "\"integer\"}, \"n\": {\"type\": \"number\"}, \"b\": {\"type\": \"boolean\"}, \"a\": "
        "{\"type\": \"array\"}, \"o\": {\"type\": \"object\"}, \"z\": {\"type\": [\"null\", "
        "\"string\"]}, \"e\": {\"enum\": [\"red\", 1, null]}}, \"required\": [\"s\"]}",
    };
    for (int i = 0; i < 2; i++) {
        g_tools[i].kind = MX_TOOL_COMMAND;
        g_tools[i].name = i ? "all_types" : "read_file";
        g_tools[i].schema = json_loads(schemas[i], 0, NULL);
        if (!g_tools[i].schema)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tools[0].schema)
        setup();
    if (size == 0)
        return 0;
    char *s = malloc(size);
    if (!s)
        return 0;
    memcpy(s, data + 1, size - 1);
    s[size - 1] = '\0';
    const struct mx_tool *t = &g_tools[data[0] & 1];
    struct mx_err err = {0};
    json_t *args = NULL;
    int rc = mx_tool_check_args(t, s, &args, &err);
    if (rc != 0 && rc != MX_EINVAL)
        abort();
    if (rc == 0 && !json_is_object(args))
        abort();
    json_decref(args);
    char line[128];
    mx_tool_call_line(t->name, s, (size_t)data[0] % 64, line, sizeof line);
    for (const char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            abort();
    sink += strlen(line);
    struct mx_tool_calls c;
    if (mx_tool_calls_from_json(s, &c, &err) == 0) {
        char *back = NULL;
        if (c.n_calls == 0 || mx_tool_calls_to_json(c.calls, c.n_calls, &back) != 0)
            abort();
        free(back);
        mx_tool_calls_free(&c);
    }
    char *q = mx_tool_result_text(MX_TMPL_MISTRAL_V3, s);
    json_t *j = q ? json_loads(q, JSON_DECODE_ANY, NULL) : NULL;
    if (q && !json_is_string(j))
        abort();
    json_decref(j);
    free(q);
    free(s);
    return 0;
}
