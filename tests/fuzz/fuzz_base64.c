/* fuzz_base64.c - libFuzzer target for the base64 decoder (net/base64.c) that reads the images
 * of remote servers: any bytes decode or fail cleanly, and what decodes encodes and decodes again
 * to the same bytes. Built by `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/base64.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char *b = NULL, *b2 = NULL;
    size_t n = 0, n2 = 0;
    char *s = NULL;
    if (mx_base64_decode((const char *)data, size, &b, &n, NULL) != 0) {
        if (b || n)
            abort();
        return 0;
    }
    if (n > size || mx_base64_encode(b, n, &s, NULL) != 0)
        abort();
    if (mx_base64_decode(s, strlen(s), &b2, &n2, NULL) != 0 || n2 != n ||
        (n && memcmp(b, b2, n)))
        abort();
    free(b);
    free(b2);
    free(s);
    return 0;
}
