/* fuzz_safetensors.c - libFuzzer target for the safetensors reader (and the writer on inputs it
 * accepts): a clean error with a message, or a reader whose tensors all lie inside the input
 * (first and last byte touched under ASan), found by name, and re-encoded with the same counts.
 * Built by `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct mx_st *st = NULL;
    struct mx_err err = {0};
    int rc = mx_st_open_mem(data, size, "fuzz.safetensors", &st, &err);
    if (rc < 0) {
        if (st || err.code != rc || !err.msg[0])
            abort();
        return 0;
    }
    struct mx_st_writer *w = mx_st_writer_new();
    for (int64_t i = 0; i < mx_st_n_tensors(st); i++) {
        const struct mx_st_tensor *t = mx_st_tensor(st, i);
        if (mx_st_find_tensor(st, t->name) != t)
            abort();
        if (t->nbytes) {
            const uint8_t *p = t->data;
            sink += p[0] + p[t->nbytes - 1];
        }
        int64_t ne[4];
        (void)mx_st_tensor_ne(t, ne);
        if (w && mx_st_writer_add_tensor(w, t->name, t->dtype, t->n_dims, t->shape, t->data))
            abort();
    }
    for (int64_t i = 0; i < mx_st_n_meta(st); i++) {
        const char *k = mx_st_meta_key(st, i);
        if (!mx_st_get_meta(st, k))
            abort();
        if (w && mx_st_writer_set_meta(w, k, mx_st_meta_value(st, i)) != 0)
            abort();
    }
    void *buf = NULL;
    size_t n = 0;
    if (w && mx_st_writer_write_mem(w, &buf, &n, NULL) == 0) {
        struct mx_st *st2 = NULL;
        if (mx_st_open_mem(buf, n, "again.safetensors", &st2, NULL) != 0 ||
            mx_st_n_tensors(st2) != mx_st_n_tensors(st) || mx_st_n_meta(st2) != mx_st_n_meta(st))
            abort();
        mx_st_close(st2);
        free(buf);
    }
    mx_st_writer_free(w);
    mx_st_close(st);
    return 0;
}
