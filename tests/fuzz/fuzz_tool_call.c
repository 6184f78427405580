/* fuzz_tool_call.c - libFuzzer target for the tool-call parser (core/text/tool_call.c): the
 * first byte picks the template family, the rest is a model's answer. Any bytes parse to 0 or
 * MX_EFORMAT (memory aside) with a C-string content; every call has a name, an id of 9+ chars
 * and one-line JSON-object arguments, and the calls render back through the family's template
 * (core/text/template.c re-reads the arguments as JSON: they must be valid; harmony may refuse
 * content holding channel tags, which the app never passes). The streaming
 * text length never exceeds the input; the partial parse (the answer so far) holds the same
 * invariants. Built by `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/template.h"
#include "core/text/tool_call.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    enum mx_tmpl_kind kind = (enum mx_tmpl_kind)(data[0] % MX_TMPL_COUNT);
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    struct mx_tool_calls c;
    struct mx_err err = {0};
    int rc = mx_tool_calls_parse(kind, text, n, &c, &err);
    if ((rc != 0 && rc != MX_EFORMAT && rc != MX_ENOMEM) || (rc != MX_ENOMEM && !c.content))
        abort();
    if (mx_tool_calls_text_len(kind, text, n) > n)
        abort();
    for (size_t i = 0; i < c.n_calls; i++) {
        if (!c.calls[i].name || !c.calls[i].id || strlen(c.calls[i].id) < 9 ||
            c.calls[i].arguments[0] != '{' || strchr(c.calls[i].arguments, '\n'))
            abort();
        sink += strlen(c.calls[i].name);
    }
    if (c.n_calls > 0) {
        /* Mistral v3 wants ids of exactly 9 chars: the parser's own ids are, the answer's may
         * not be; other families ignore ids */
        struct mx_chat_msg m[2] = {{MX_ROLE_USER, "q", NULL, 0, NULL},
                                   {MX_ROLE_ASSISTANT, c.content, c.calls, c.n_calls, NULL}};
        struct mx_tmpl_prompt p;
        int r2 = mx_tmpl_render(kind, m, 2, NULL, &p, &err);
        if (r2 != 0 && r2 != MX_EINVAL && r2 != MX_ENOMEM)
            abort();
        /* only an answer's own odd id may be refused, never the arguments; and harmony's
         * template refuses content with channel tags: the app hands the parser the final
         * channel only (core/text/harmony.c splits the stream), raw bytes may hold them */
        if (r2 == MX_EINVAL && !strstr(err.msg, "tool call id") &&
            !strstr(err.msg, "alternate") && !strstr(err.msg, "channel tags"))
            abort();
        mx_tmpl_prompt_free(&p);
    }
    mx_tool_calls_free(&c);
    /* the same answer as a stream's text so far */
    rc = mx_tool_calls_parse_partial(kind, text, n, &c, &err);
    if ((rc != 0 && rc != MX_EFORMAT && rc != MX_ENOMEM) || (rc != MX_ENOMEM && !c.content))
        abort();
    for (size_t i = 0; i < c.n_calls; i++)
        if (!c.calls[i].name || strlen(c.calls[i].id) < 9 || c.calls[i].arguments[0] != '{')
            abort();
    mx_tool_calls_free(&c);
    return 0;
}
