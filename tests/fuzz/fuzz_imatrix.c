/* fuzz_imatrix.c - libFuzzer target for the importance-matrix reader (core/format/imatrix.c):
 * legacy .dat and GGUF imatrix files from untrusted bytes.
 *
 * Any input must give either a clean MX_EFORMAT/MX_ENOMEM with a message naming the input, or an
 * imatrix whose every entry is usable: names sorted and unique, found by mx_imatrix_find,
 * n_values = n_per_row * n_mat values that are finite and >= 0 (ASan checks each lies in its
 * allocation); filtering keeps that true. Built by `make check-fuzz` (tests/fuzz/fuzz.am); seeds
 * in tests/fuzz/corpus/fuzz_imatrix (tests/fuzz/make_imatrix_seeds.py). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/format/imatrix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile float sink;

static void check(const struct mx_imatrix *m) {
    for (int64_t i = 0; i < m->n_entries; i++) {
        const struct mx_imatrix_entry *e = &m->entries[i];
        if (i > 0 && strcmp(m->entries[i - 1].name, e->name) >= 0)
            abort(); /* sorted, no duplicates */
        if (mx_imatrix_find(m, e->name) != e)
            abort();
        if (e->n_values < 1 || e->n_mat < 1 || e->n_values % e->n_mat != 0)
            abort();
        for (int64_t k = 0; k < e->n_values; k++) {
            if (!isfinite(e->values[k]) || e->values[k] < 0)
                abort();
            sink += e->values[k];
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct mx_imatrix *m = NULL;
    struct mx_err err = {0};
    int rc = mx_imatrix_parse(data, size, "fuzz.imatrix", &m, &err);
    if (rc < 0) {
        if (m || strncmp(err.msg, "fuzz.imatrix", 12) != 0)
            abort(); /* failures leave nothing and say which file */
        return 0;
    }
    check(m);
    static const char *const pat[] = {"blk.0", "ffn"};
    mx_imatrix_filter(m, NULL, 0, pat, 1);
    check(m);
    mx_imatrix_filter(m, pat + 1, 1, NULL, 0);
    check(m);
    mx_imatrix_free(m);
    return 0;
}
