/* fuzz_oai.c - libFuzzer target for the request bodies `mixel serve` reads from the network
 * (net/oai.c: OpenAI chat and completion requests; net/server_sd.c: A1111 txt2img): any bytes
 * parse or fail with a message (never a crash), a parsed request's turns and strings are C
 * strings, its stop list stays within MX_GEN_MAX_STOPS, and the answers built from its text
 * (response, stream chunk, error) are valid JSON. Built by `make check-fuzz`
 * (tests/fuzz/fuzz.am). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/oai.h"
#include "net/server_sd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

/* Aborts unless s is a JSON text jansson reads back (after an optional "data: " and the
 * event's blank line). */
static void check_json(char *s) {
    if (!s)
        abort();
    const char *j = strncmp(s, "data: ", 6) ? s : s + 6;
    json_error_t je;
    json_t *v = json_loadb(j, strcspn(j, "\n"), JSON_ALLOW_NUL, &je); /* \u0000 is JSON */
    if (!v)
        abort();
    json_decref(v);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *body = (const char *)data;
    struct mx_err err = {0};
    for (int k = 0; k < 2; k++) {
        struct mx_oai_req req;
        struct mx_gen_settings s;
        memset(&s, 0, sizeof s);
        int rc = mx_oai_parse(k ? MX_OAI_COMPLETION : MX_OAI_CHAT, body, size, &req, &s, &err);
        if (rc != 0) {
            if (rc != MX_EINVAL || !err.msg[0])
                abort();
            check_json(mx_oai_error(err.msg, "invalid_request_error", NULL));
            mx_err_clear(&err);
            continue;
        }
        size_t n_stop = 0;
        while (s.stop[n_stop])
            sink += strlen(s.stop[n_stop++]);
        if (n_stop > MX_GEN_MAX_STOPS)
            abort();
        for (size_t i = 0; i < req.n_turns; i++) {
            if (req.turns[i].text)
                sink += strlen(req.turns[i].text);
            for (size_t c = 0; c < req.turns[i].n_tool_calls; c++)
                sink += strlen(req.turns[i].tool_calls[c].name);
        }
        struct mx_oai_meta m = {.kind = req.kind, .id = "x", .created = 1, .model = "m"};
        struct mx_oai_usage u = {1, 2};
        const char *t = req.prompt ? req.prompt : body;
        size_t tn = req.prompt ? req.prompt_len : size;
        check_json(mx_oai_response(&m, t, tn, "stop", &u));
        check_json(mx_oai_chunk(&m, false, t, tn, NULL, NULL));
        mx_oai_req_free(&req);
    }
    struct mx_sdapi_req sr;
    if (mx_sdapi_parse(body, size, &sr, &err) == 0) {
        if (!sr.img.prompt || sr.batch < 1 || sr.batch > MX_SDAPI_MAX_BATCH)
            abort();
        struct mx_sdapi_image im = {.png_b64 = "AA==", .infotext = sr.img.prompt, .seed = 1};
        check_json(mx_sdapi_response(&sr, &im, 1, 64, 64, 2));
        mx_sdapi_req_free(&sr);
    }
    return 0;
}
