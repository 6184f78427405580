/* fuzz_sd_embedding.c - libFuzzer target for the textual-inversion embedding reader
 * (core/diffusion/embedding.h) over its in-memory path: the input is an embedding .safetensors
 * image. Either a clean error (a one-line message naming the file, nothing returned, nothing
 * leaked under LSan) or an embedding within the documented bounds whose every value was read
 * (summed, so ASan sees each one) and whose vectors are found for its own widths. Built by
 * `make check-fuzz`. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/embedding.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct mx_sd_embedding *e = NULL;
    struct mx_err err = {0};
    int rc = mx_sd_embedding_load_mem(data, size, "fuzz.safetensors", &e, &err);
    if (rc < 0) {
        if (e || !err.code || !strstr(err.msg, "fuzz.safetensors") || strchr(err.msg, '\n'))
            abort();
        return 0;
    }
    if (!e || e->n_vec < 1 || e->n_vec > MX_SD_EMB_MAX_VECTORS || e->dim < 1 ||
        e->dim > MX_SD_EMB_MAX_DIM || strlen(e->hash) != 12 || strcmp(e->name, "fuzz"))
        abort();
    volatile float sum = 0;
    for (int64_t i = 0; i < e->n_vec * e->dim; i++)
        sum += e->vec[i];
    for (int64_t i = 0; e->vec_g && i < e->n_vec * e->dim_g; i++)
        sum += e->vec_g[i];
    (void)sum;
    if (mx_sd_embedding_vectors(e, e->dim, NULL) != e->vec ||
        (e->vec_g && mx_sd_embedding_vectors(e, e->dim_g, NULL) != e->vec_g))
        abort();
    mx_sd_embedding_free(e);
    return 0;
}
