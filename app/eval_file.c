/* eval_file.c - the saved-logits file of `mixel eval ppl --save-logits` / `--kl-base` (format in
 * eval.h): a header naming the base model, its vocabulary size, chunk size and tokens, then the
 * scored rows chunk by chunk in llama.cpp's 16-bit log-probability encoding. Written to a
 * temporary name and renamed when complete, so a killed run never leaves a file that looks whole;
 * read with every length checked against the file's size before anything is allocated, because
 * the file may come from anywhere. Rows are streamed one chunk at a time (16 MB at a 32K vocab). */
#include "app/eval.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "eval_file.c writes and reads the file's little-endian fields as they are in memory"
#endif

#define HEADER_BYTES 24         /* magic, n_vocab, n_ctx, n_chunk, name_len */
#define MAX_NAME 4096           /* longest model name kept (the longest a reader accepts) */

struct mx_kl_file {
    FILE *fp;
    bool writing;               /* created (temp file renamed at close) or opened */
    char *path, *tmp;           /* final path, temporary path while writing (owned) */
    int32_t n_vocab, n_ctx, n_chunk;
    char *name;                 /* the base model's name, NUL-terminated (owned) */
    int32_t *tokens;            /* [n_chunk * n_ctx] (owned) */
    bool failed;                /* a write failed: close reports it and removes the file */
    uint64_t written, total;    /* bytes written so far, bytes of the complete file */
};

int32_t mx_kl_file_n_vocab(const struct mx_kl_file *f) { return f->n_vocab; }
int32_t mx_kl_file_n_ctx(const struct mx_kl_file *f) { return f->n_ctx; }
int32_t mx_kl_file_n_chunk(const struct mx_kl_file *f) { return f->n_chunk; }
const char *mx_kl_file_model(const struct mx_kl_file *f) { return f->name; }
const int32_t *mx_kl_file_tokens(const struct mx_kl_file *f) { return f->tokens; }

/* Bytes of the rows of one chunk, and of the whole file; false on overflow. */
static bool sizes(int64_t n_vocab, int64_t n_ctx, int64_t n_chunk, uint64_t name_len,
                  uint64_t *chunk_bytes, uint64_t *total) {
    if (n_vocab < 1 || n_ctx < 2 || n_chunk < 1 || n_vocab > (1 << 24) || n_ctx > (1 << 24) ||
        n_chunk > (1 << 24))
        return false;
    uint64_t rows = (uint64_t)(n_ctx - 1 - n_ctx / 2), row = 12 + 2 * (uint64_t)n_vocab;
    *chunk_bytes = rows * row; /* < 2^24 * 2^26: no overflow */
    uint64_t toks = (uint64_t)n_chunk * (uint64_t)n_ctx * 4;
    if (*chunk_bytes && (uint64_t)n_chunk > (UINT64_MAX - HEADER_BYTES - name_len - toks) /
                                               *chunk_bytes)
        return false;
    *total = HEADER_BYTES + name_len + toks + (uint64_t)n_chunk * *chunk_bytes;
    return true;
}

static void file_free(struct mx_kl_file *f) {
    if (!f)
        return;
    if (f->fp)
        fclose(f->fp);
    free(f->path);
    free(f->tmp);
    free(f->name);
    free(f->tokens);
    free(f);
}

int mx_kl_file_create(struct mx_kl_file **out, const char *path, const char *model_name,
                      int32_t n_vocab, int32_t n_ctx, int32_t n_chunk, const int32_t *tokens,
                      struct mx_err *err) {
    *out = NULL;
    size_t name_len = strlen(model_name ? model_name : "");
    if (name_len > MAX_NAME)
        name_len = MAX_NAME;
    uint64_t chunk_bytes, total;
    if (!sizes(n_vocab, n_ctx, n_chunk, name_len, &chunk_bytes, &total))
        return mx_err_set(err, MX_EINVAL, "%s: cannot hold n_vocab %d, n_ctx %d, %d chunks",
                          path, (int)n_vocab, (int)n_ctx, (int)n_chunk);
    struct mx_kl_file *f = calloc(1, sizeof *f);
    size_t plen = strlen(path);
    if (!f || !(f->path = strdup(path)) || !(f->tmp = malloc(plen + 6))) {
        file_free(f);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    }
    snprintf(f->tmp, plen + 6, "%s.part", path);
    f->writing = true;
    f->n_vocab = n_vocab;
    f->n_ctx = n_ctx;
    f->n_chunk = n_chunk;
    if (!(f->fp = fopen(f->tmp, "wb"))) {
        int e = errno;
        file_free(f);
        return mx_err_set(err, e == ENOENT ? MX_ENOENT : MX_EIO, "%s: cannot create: %s", path,
                          strerror(e));
    }
    uint32_t h[4] = {(uint32_t)n_vocab, (uint32_t)n_ctx, (uint32_t)n_chunk, (uint32_t)name_len};
    size_t n_tok = (size_t)n_chunk * (size_t)n_ctx;
    if (fwrite(MX_KL_MAGIC, 1, 8, f->fp) != 8 || fwrite(h, 4, 4, f->fp) != 4 ||
        fwrite(model_name ? model_name : "", 1, name_len, f->fp) != name_len ||
        fwrite(tokens, 4, n_tok, f->fp) != n_tok) {
        int e = errno;
        fclose(f->fp);
        f->fp = NULL;
        remove(f->tmp);
        file_free(f);
        return mx_err_set(err, MX_EIO, "%s: write error: %s", path, strerror(e));
    }
    f->written = HEADER_BYTES + name_len + (uint64_t)n_tok * 4;
    f->total = total;
    *out = f;
    return 0;
}

int mx_kl_file_write_chunk(struct mx_kl_file *f, const uint8_t *rows, size_t bytes,
                           struct mx_err *err) {
    if (!f->writing || f->failed)
        return mx_err_set(err, MX_EINVAL, "%s: not writable", f->path);
    if (bytes && fwrite(rows, 1, bytes, f->fp) != bytes) {
        f->failed = true;
        return mx_err_set(err, MX_EIO, "%s: write error: %s", f->path, strerror(errno));
    }
    f->written += bytes;
    return 0;
}

int mx_kl_file_open(struct mx_kl_file **out, const char *path, struct mx_err *err) {
    *out = NULL;
    struct mx_kl_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        file_free(f);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    }
    int rc = 0;
    struct stat st;
    if (!(f->fp = fopen(path, "rb")) || fstat(fileno(f->fp), &st) != 0) {
        int e = errno;
        rc = mx_err_set(err, e == ENOENT ? MX_ENOENT : MX_EIO, "%s: %s", path, strerror(e));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: not a regular file", path);
        goto fail;
    }
    char magic[8];
    uint32_t h[4];
    if (st.st_size < HEADER_BYTES || fread(magic, 1, 8, f->fp) != 8 ||
        memcmp(magic, MX_KL_MAGIC, 8) != 0 || fread(h, 4, 4, f->fp) != 4) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: not a mixel logits file (made by mixel eval ppl "
                        "--save-logits; magic %s)", path, MX_KL_MAGIC);
        goto fail;
    }
    uint64_t chunk_bytes, total;
    if (h[3] > MAX_NAME || !sizes(h[0], h[1], h[2], h[3], &chunk_bytes, &total)) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: bad header (n_vocab %u, n_ctx %u, %u chunks, "
                        "name of %u bytes)", path, h[0], h[1], h[2], h[3]);
        goto fail;
    }
    if ((uint64_t)st.st_size != total) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: %lld bytes, expected %llu for n_vocab %u, n_ctx %u, "
                        "%u chunks (truncated or not from mixel eval ppl)", path,
                        (long long)st.st_size, (unsigned long long)total, h[0], h[1], h[2]);
        goto fail;
    }
    f->n_vocab = (int32_t)h[0];
    f->n_ctx = (int32_t)h[1];
    f->n_chunk = (int32_t)h[2];
    size_t n_tok = (size_t)h[2] * h[1];
    f->name = calloc(1, (size_t)h[3] + 1);
    f->tokens = malloc(n_tok * sizeof *f->tokens); /* bounded by the file's size */
    if (!f->name || !f->tokens) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory for %zu tokens", path, n_tok);
        goto fail;
    }
    if (fread(f->name, 1, h[3], f->fp) != h[3] || fread(f->tokens, 4, n_tok, f->fp) != n_tok) {
        rc = mx_err_set(err, MX_EIO, "%s: read error", path);
        goto fail;
    }
    for (size_t i = 0; i < n_tok; i++) {
        if (f->tokens[i] < 0 || f->tokens[i] >= f->n_vocab) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: token %zu is %d, outside the vocabulary of %d",
                            path, i, (int)f->tokens[i], (int)f->n_vocab);
            goto fail;
        }
    }
    *out = f;
    return 0;
fail:
    file_free(f);
    return rc;
}

int mx_kl_file_read_chunk(struct mx_kl_file *f, uint8_t *rows, size_t bytes,
                          struct mx_err *err) {
    if (f->writing)
        return mx_err_set(err, MX_EINVAL, "%s: not readable", f->path);
    if (bytes && fread(rows, 1, bytes, f->fp) != bytes)
        return mx_err_set(err, MX_EIO, "%s: read error (the file changed while in use?)",
                          f->path);
    return 0;
}

int mx_kl_file_close(struct mx_kl_file *f, struct mx_err *err) {
    if (!f)
        return 0;
    int rc = 0;
    if (f->writing) {
        errno = 0;
        bool bad = f->failed || fflush(f->fp) != 0 || ferror(f->fp) || fsync(fileno(f->fp)) != 0;
        bad |= fclose(f->fp) != 0;
        f->fp = NULL;
        if (!bad && f->written == f->total)
            bad = rename(f->tmp, f->path) != 0;
        int e = errno;
        if (bad) {
            remove(f->tmp);
            rc = mx_err_set(err, MX_EIO, "%s: write error: %s", f->path, strerror(e ? e : EIO));
        } else if (f->written != f->total) {
            /* a run that stopped early: a file with fewer chunks than its header says is no use */
            remove(f->tmp);
            rc = mx_err_set(err, MX_EINVAL, "%s: not written: the run stopped after %llu of "
                            "%llu bytes", f->path, (unsigned long long)f->written,
                            (unsigned long long)f->total);
        }
    }
    file_free(f);
    return rc;
}
