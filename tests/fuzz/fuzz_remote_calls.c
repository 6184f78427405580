/* fuzz_remote_calls.c - libFuzzer target for the remote engine's tool-call gathering
 * (net/remote_calls.c): the input's lines, each parsed as JSON, are a server's tool_calls
 * fragments; gathering never crashes, leaks or exceeds its bounds, and when the calls' text is
 * made, the chat's Mistral v3 parser reads it back to as many calls with the same names. Built by
 * `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/tool_call.h"
#include "net/remote_calls.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct mx_remote_calls c = {0};
    struct mx_err err = {0};
    const char *p = (const char *)data, *end = p + size;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        json_t *j = json_loadb(p, n, 0, NULL);
        if (j && mx_remote_calls_add(&c, j, &err) < 0) {
            json_decref(j);
            break;
        }
        json_decref(j);
        p += n + (nl ? 1 : 0);
    }
    if (c.n > MX_REMOTE_MAX_CALLS)
        abort();
    for (size_t i = 0; i < c.n; i++)
        if (strlen(c.v[i].name) > MX_REMOTE_MAX_NAME || c.v[i].args_len > MX_REMOTE_MAX_ARGS)
            abort();
    char *text = NULL;
    struct mx_err terr = {0};
    if (mx_remote_calls_text(&c, &text, &terr) == 0 && c.n > 0) {
        struct mx_tool_calls back;
        struct mx_err perr = {0};
        int rc = mx_tool_calls_parse(MX_TMPL_MISTRAL_V3, text, strlen(text), &back, &perr);
        /* a name the chat refuses (mx_tool_name_valid) is the parser's error to report */
        bool names_ok = true;
        for (size_t i = 0; i < c.n; i++)
            names_ok = names_ok && mx_tool_name_valid(c.v[i].name);
        if (names_ok && (rc != 0 || back.n_calls != c.n))
            abort();
        for (size_t i = 0; names_ok && i < c.n; i++)
            if (strcmp(back.calls[i].name, c.v[i].name))
                abort();
        mx_tool_calls_free(&back);
    }
    free(text);
    mx_remote_calls_free(&c);
    return 0;
}
