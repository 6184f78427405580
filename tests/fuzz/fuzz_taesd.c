/* fuzz_taesd.c - libFuzzer target for the TAESD decoder reader (core/diffusion/taesd.h) over its
 * in-memory path, without a backend (load only): the input is a safetensors image; either a
 * clean error (a one-line message, nothing returned, nothing leaked under LSan) or a decoder
 * whose every weight was read (then freed). Built by `make check-fuzz`. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/diffusion/taesd.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct mx_sd_taesd *t = NULL;
    struct mx_err err = {0};
    int rc = mx_sd_taesd_open_mem(NULL, data, size, "fuzz", &t, &err);
    if (rc == 0) {
        if (!t)
            abort();
        mx_sd_taesd_free(t);
    } else if (t || !err.msg[0] || strchr(err.msg, '\n')) {
        abort();
    }
    return 0;
}
