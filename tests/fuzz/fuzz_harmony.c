/* fuzz_harmony.c - libFuzzer target for the harmony channel splitter (core/text/harmony.c): a
 * model's answer is untrusted. The first byte picks a piece size (1..16, as a detokenizer hands
 * out tokens), the rest is the answer. Invariants: the parts never hold more bytes than the
 * input, and the split does not depend on where the pieces are cut (whole text == pieces).
 * Built by `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/text/harmony.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct acc {
    struct mx_bytes b[3];
};

static int put(void *ud, enum mx_harmony_part part, const char *s, size_t n) {
    struct acc *a = ud;
    if (n == 0 || (unsigned)part > 2)
        abort();
    return mx_bytes_add(&a->b[part], s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t step = (size_t)(data[0] % 16) + 1;
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    struct acc whole = {0}, cut = {0};
    struct mx_harmony_stream s;
    mx_harmony_stream_init(&s);
    int r1 = mx_harmony_stream_push(&s, text, n, put, &whole);
    if (r1 == 0)
        r1 = mx_harmony_stream_flush(&s, put, &whole);
    int r2 = 0;
    for (size_t i = 0; i < n && r2 == 0; i += step)
        r2 = mx_harmony_stream_push(&s, text + i, n - i < step ? n - i : step, put, &cut);
    if (r2 == 0)
        r2 = mx_harmony_stream_flush(&s, put, &cut);
    if (r1 == 0 && r2 == 0) {
        size_t total = 0;
        for (int k = 0; k < 3; k++) {
            total += whole.b[k].n;
            if (whole.b[k].n != cut.b[k].n ||
                (whole.b[k].n && memcmp(whole.b[k].p, cut.b[k].p, whole.b[k].n) != 0))
                abort();
        }
        if (total > n)
            abort();
    }
    for (int k = 0; k < 3; k++) {
        mx_bytes_free(&whole.b[k]);
        mx_bytes_free(&cut.b[k]);
    }
    return 0;
}
