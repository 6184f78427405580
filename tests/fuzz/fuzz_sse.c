/* fuzz_sse.c - libFuzzer target for the server-sent-events parser (net/sse.c): any bytes, fed
 * whole and again split at a point the input picks, parse without a crash or a leak; every event
 * is NUL-terminated at the length given and within the cap; both feeds give the same events, up to
 * the point where one of them failed. Built by `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 4096

/* A running hash of the events (type and data), and their count. */
struct sum {
    uint64_t h;
    size_t n;
};

static int on_event(void *ud, const char *type, const char *d, size_t n) {
    struct sum *s = ud;
    if (d[n] != '\0' || n > CAP || !type[0]) /* the data may hold NUL bytes: n says its end */
        abort();
    for (const char *p = type; *p; p++)
        s->h = (s->h ^ (uint8_t)*p) * 1099511628211u;
    s->h = (s->h ^ 0xff) * 1099511628211u;
    for (size_t i = 0; i < n; i++)
        s->h = (s->h ^ (uint8_t)d[i]) * 1099511628211u;
    s->n++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct sum a = {14695981039346656037u, 0}, b = a;
    struct mx_sse p;
    struct mx_err err = {0};
    mx_sse_init(&p, on_event, &a, CAP);
    int ra = mx_sse_feed(&p, (const char *)data, size, &err);
    mx_sse_deinit(&p);
    size_t cut = size ? data[0] % (size + 1) : 0;
    mx_sse_init(&p, on_event, &b, CAP);
    int rb = mx_sse_feed(&p, (const char *)data, cut, NULL);
    if (rb == 0)
        rb = mx_sse_feed(&p, (const char *)data + cut, size - cut, NULL);
    mx_sse_deinit(&p);
    if (ra == 0 && rb == 0 && (a.h != b.h || a.n != b.n))
        abort();
    if ((ra == 0) != (rb == 0))
        abort(); /* the cap is about content, not about how it arrived */
    return 0;
}
