/* fuzz_json_schema.c - libFuzzer target for the JSON Schema -> GBNF converter
 * (core/llm/json_schema.c): any bytes either convert or fail with an error code and a message
 * (never a crash, a hang or a leak); a grammar that comes back compiles and accepts no text
 * before it is fed some (its state is fresh). Built by `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/llm/grammar.h"
#include "core/llm/json_schema.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *gbnf = NULL;
    struct mx_err err = {0};
    int rc = mx_json_schema_to_gbnf((const char *)data, size, &gbnf, &err);
    if (rc < 0) {
        if (gbnf || !err.msg[0] || (rc != MX_EFORMAT && rc != MX_EUNSUP && rc != MX_ENOMEM))
            abort();
        return 0;
    }
    if (!gbnf)
        abort();
    struct mx_grammar *g = NULL;
    if (mx_grammar_parse(gbnf, strlen(gbnf), "fuzz", &g, &err) != 0)
        abort(); /* the converter promises a grammar that compiles */
    mx_grammar_allows(g, "{", 1);
    mx_grammar_free(g);
    free(gbnf);
    return 0;
}
