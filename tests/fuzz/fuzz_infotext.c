/* fuzz_infotext.c - libFuzzer target for the A1111 infotext parser (core/diffusion/infotext.c):
 * any bytes parse (the only failure allowed is memory), every string in the result is a C
 * string, the extras stay under their cap and the result formats again. A1111's format and
 * parse are not inverses for every text (raw quoted values, "Negative prompt:" inside a
 * prompt), so no round trip is asserted here; tests/test_sd_infotext.c checks those that hold.
 * Built by `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/infotext.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct mx_sd_infotext it;
    struct mx_err err = {0};
    if (mx_sd_infotext_parse((const char *)data, size, &it, &err) != 0)
        abort();
    if (!it.prompt || !it.negative || it.n_extra > MX_SD_INFOTEXT_MAX_EXTRA)
        abort();
    sink += strlen(it.prompt) + strlen(it.negative);
    for (size_t i = 0; i < it.n_extra; i++)
        sink += strlen(it.extra[i].key) + strlen(it.extra[i].value);
    char *s = NULL;
    if (mx_sd_infotext_format(&it, &s, &err) != 0 || !s)
        abort();
    sink += strlen(s);
    free(s);
    mx_sd_infotext_free(&it);
    return 0;
}
