/* fuzz_gguf.c - libFuzzer target for the GGUF reader (and, on inputs it accepts, the writer).
 *
 * Any input must give either a clean error with a message or a reader whose every accessor is
 * safe: all values are walked, every tensor's first and last byte is touched (ASan checks they
 * lie inside the input), and the file is re-encoded by the writer and read back with the same
 * counts. Built by `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void walk(const struct mx_gguf_value *v, int depth) {
    if (depth > 16)
        abort(); /* the reader promised to limit nesting */
    if (v->type == MX_GGUF_STRING) {
        if (v->v.str.data[v->v.str.len] != '\0')
            abort(); /* strings are NUL-terminated copies */
        sink += v->v.str.len;
    } else if (v->type == MX_GGUF_ARRAY) {
        for (uint64_t i = 0; i < v->v.arr.n; i++) {
            if (v->v.arr.elem_type == MX_GGUF_STRING || v->v.arr.elem_type == MX_GGUF_ARRAY)
                walk(&v->v.arr.items[i], depth + 1);
            else
            {
                double f = mx_gguf_arr_float(v, i);
                uint64_t bits;
                memcpy(&bits, &f, 8);
                sink += (uint64_t)mx_gguf_arr_int(v, i) + bits;
            }
        }
    } else {
        sink += v->v.u64;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct mx_gguf *g = NULL;
    struct mx_err err = {0};
    int rc = mx_gguf_open_mem(data, size, "fuzz.gguf", &g, &err);
    if (rc < 0) {
        if (g || err.code != rc || !err.msg[0])
            abort(); /* a failure always comes with its message and no object */
        return 0;
    }
    struct mx_gguf_writer *w = mx_gguf_writer_new();
    for (int64_t i = 0; i < mx_gguf_n_kv(g); i++) {
        const char *key = mx_gguf_kv_key(g, i);
        const struct mx_gguf_value *v = mx_gguf_kv_value(g, i);
        walk(v, 0);
        if (mx_gguf_find_key(g, key) != i)
            abort();
        int64_t x;
        double f;
        const char *s;
        struct mx_err e2 = {0};
        (void)mx_gguf_get_int(g, key, &x, &e2);
        (void)mx_gguf_get_float(g, key, &f, &e2);
        (void)mx_gguf_get_str(g, key, &s, &e2);
        if (w && mx_gguf_writer_set_value(w, key, v) != 0)
            abort();
    }
    for (int64_t i = 0; i < mx_gguf_n_tensors(g); i++) {
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
        if (mx_gguf_find_tensor(g, t->name) != t)
            abort();
        if (t->nbytes) {
            const uint8_t *p = t->data;
            sink += p[0] + p[t->nbytes - 1];
        }
        if (w && mx_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data) != 0)
            abort();
    }
    /* re-encode and read back: same counts (not for huge alignments: the padding alone would
     * be larger than the fuzzer's memory limit, for no new coverage) */
    void *buf = NULL;
    size_t n = 0;
    if (w && mx_gguf_alignment(g) <= 65536 &&
        mx_gguf_writer_write_mem(w, mx_gguf_version(g), &buf, &n, NULL) == 0) {
        struct mx_gguf *g2 = NULL;
        if (mx_gguf_open_mem(buf, n, "again.gguf", &g2, NULL) != 0 ||
            mx_gguf_n_kv(g2) != mx_gguf_n_kv(g) || mx_gguf_n_tensors(g2) != mx_gguf_n_tensors(g))
            abort();
        mx_gguf_close(g2);
        free(buf);
    }
    mx_gguf_writer_free(w);
    mx_gguf_close(g);
    return 0;
}
