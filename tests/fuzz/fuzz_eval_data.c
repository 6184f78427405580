/* fuzz_eval_data.c - libFuzzer target for the benchmark file readers of `mixel eval mc` and
 * `mixel eval gen` (app/eval_data.c): any bytes, read as every format, either parse into
 * well-formed tasks (answers in range, 2+ choices, every string terminated, Winogrande tasks with
 * a tail) or fail with MX_EFORMAT / MX_ENOMEM, an empty set and a message. Built by
 * `make check-fuzz` (tests/fuzz/fuzz.am). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app/eval_data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const enum mx_mc_format fmts[] = {MX_MC_AUTO, MX_MC_HELLASWAG, MX_MC_WINOGRANDE,
                                             MX_MC_ARC, MX_MC_MMLU};
    for (size_t f = 0; f < sizeof fmts / sizeof fmts[0]; f++) {
        struct mx_mc_set s;
        struct mx_err err = {0};
        int rc = mx_mc_read((const char *)data, size, "fuzz", fmts[f], &s, &err);
        if (rc < 0) {
            if ((rc != MX_EFORMAT && rc != MX_ENOMEM) || s.n || s.items || !err.msg[0])
                abort();
            continue;
        }
        if (rc != 0 || s.n == 0 || s.format == MX_MC_AUTO || !s.syntax)
            abort();
        for (size_t i = 0; i < s.n; i++) {
            const struct mx_mc_item *it = &s.items[i];
            if (it->n_choices < 2 || it->answer < 0 || (size_t)it->answer >= it->n_choices ||
                !it->context || it->index != i)
                abort();
            if (s.format == MX_MC_WINOGRANDE && fmts[f] != MX_MC_AUTO &&
                (!it->tail || it->n_choices != 2))
                abort();
            sink += strlen(it->context) + (it->tail ? strlen(it->tail) : 0);
            for (size_t k = 0; k < it->n_choices; k++)
                sink += strlen(it->choices[k]);
        }
        mx_mc_set_free(&s);
    }
    struct mx_qa_set q;
    struct mx_err err = {0};
    int rc = mx_qa_read((const char *)data, size, "fuzz", &q, &err);
    if (rc == 0) {
        for (size_t i = 0; i < q.n; i++)
            sink += strlen(q.items[i].question) + strlen(q.items[i].answer);
        mx_qa_set_free(&q);
    } else if ((rc != MX_EFORMAT && rc != MX_ENOMEM) || q.n || q.items) {
        abort();
    }
    return 0;
}
