/* fuzz_eval_file.c - libFuzzer target for the saved-logits reader (`mixel eval ppl --kl-base
 * FILE`, app/eval_file.c): a file from anywhere must give either a clean error with a message or
 * an opened file whose header agrees with its size, whose tokens are inside the vocabulary, and
 * whose every chunk of rows can be read (ASan checks the buffers). The input is handed over as a
 * memfd so the reader's fopen/fstat path is the real one. Built by `make check-fuzz`. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "app/eval.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int fd = memfd_create("mxlp", 0);
    if (fd < 0)
        return 0;
    if (size && write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct mx_kl_file *f = NULL;
    struct mx_err err = {0};
    int rc = mx_kl_file_open(&f, path, &err);
    if (rc < 0) {
        if (f || !err.msg[0])
            abort(); /* an error leaves nothing and says why */
    } else {
        int32_t nv = mx_kl_file_n_vocab(f), nc = mx_kl_file_n_ctx(f);
        int32_t nch = mx_kl_file_n_chunk(f);
        if (nv < 1 || nc < 2 || nch < 1)
            abort();
        const int32_t *t = mx_kl_file_tokens(f);
        for (size_t i = 0; i < (size_t)nc * (size_t)nch; i++)
            if (t[i] < 0 || t[i] >= nv)
                abort();
        sink += strlen(mx_kl_file_model(f));
        size_t bytes = (size_t)(nc - 1 - nc / 2) * (12 + 2 * (size_t)nv);
        uint8_t *rows = malloc(bytes ? bytes : 1);
        for (int32_t c = 0; rows && c < nch; c++) {
            if (mx_kl_file_read_chunk(f, rows, bytes, &err) < 0)
                abort(); /* the size was checked at open */
            if (bytes)
                sink += rows[0] + rows[bytes - 1];
        }
        free(rows);
        mx_kl_file_close(f, NULL);
    }
    close(fd);
    return 0;
}
