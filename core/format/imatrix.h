/* imatrix.h - importance matrices as llama.cpp's llama-imatrix writes them, for
 * `mixel quantize --imatrix`.
 *
 * An importance matrix holds, for each weight matrix the model multiplies activations with, the
 * mean squared activation of each input column (what a column's weights are multiplied by, on
 * average, over a calibration text). llama-quantize passes the row of a tensor's entry to ggml's
 * quantizers as per-column weights, so the error of the columns that matter most is kept small.
 *
 * Two file formats, both read here:
 * - GGUF (llama.cpp's current one): per weight "<name>.in_sum2" (F32, ne = (n_per_row, n_mat):
 *   sums of squared activations, one row per expert) and "<name>.counts" (F32, ne = (1, n_mat):
 *   how many activations each sum holds), plus the metadata imatrix.datasets,
 *   imatrix.chunk_count and imatrix.chunk_size (llama-quantize refuses a GGUF imatrix without
 *   them, and so does this reader).
 * - legacy .dat: i32 n_entries, then per entry i32 name length, the name, i32 ncall, i32 nval,
 *   nval f32 values ((sum / count) * ncall); optionally i32 chunk count, i32 length and the
 *   dataset name at the end. Little endian.
 * Values come out normalised as llama-quantize normalises them: GGUF sums / counts per expert (1
 * where a count is 0), legacy values / ncall (as they are when ncall is 0).
 *
 * Untrusted input: every count and size is checked against the file before use; a truncated file,
 * counts that do not match the sums, a non-finite or negative value, a duplicate name are refused
 * with "path: what (numbers)". Nothing here prints.
 */
#ifndef MX_IMATRIX_H
#define MX_IMATRIX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

/* One weight matrix's importance values. */
struct mx_imatrix_entry {
    char *name;          /* the weight tensor's name ("blk.0.ffn_up.weight"); owned */
    int64_t n_values;    /* n_per_row * n_mat values in `values` */
    int64_t n_mat;       /* experts (GGUF: rows of in_sum2); 1 for legacy files, whose experts
                            are only known from the model (n_values = ne[0] * n_expert) */
    float *values;       /* normalised importance, expert-major: values[e * n_per_row + col];
                            owned */
};

struct mx_imatrix {
    bool legacy;                        /* read from the legacy .dat format */
    int64_t n_entries;
    struct mx_imatrix_entry *entries;   /* sorted by name (strcmp); owned */
    int32_t chunk_count;                /* chunks of text it was computed on (0 if unknown) */
    int32_t chunk_size;                 /* tokens per chunk (GGUF; 0 for legacy files) */
    char *dataset;                      /* the first dataset's name, or NULL; owned */
};

/* Parses an imatrix file image (GGUF when it starts with "GGUF", else legacy). name is used in
 * messages. Returns 0 with *out (caller frees with mx_imatrix_free), or MX_EFORMAT with the
 * reason in err ("name: entry 3: name length 70000 outside 1..4096"), MX_ENOMEM. *out is NULL on
 * failure. buf is only read during the call. */
int mx_imatrix_parse(const void *buf, size_t size, const char *name, struct mx_imatrix **out,
                     struct mx_err *err);

/* Reads and parses path. Returns as mx_imatrix_parse, plus the file errors of mx_read_file. */
int mx_imatrix_load(const char *path, struct mx_imatrix **out, struct mx_err *err);

void mx_imatrix_free(struct mx_imatrix *m); /* NULL ok */

/* The entry of a weight tensor, or NULL (binary search; name compared exactly). */
const struct mx_imatrix_entry *mx_imatrix_find(const struct mx_imatrix *m, const char *name);

/* llama-quantize's --exclude-weights / --include-weights: first drops every entry whose name
 * contains one of the n_exclude substrings, then, when n_include > 0, keeps only entries whose
 * name contains one of the include substrings. Entries stay sorted. */
void mx_imatrix_filter(struct mx_imatrix *m, const char *const *include, int n_include,
                       const char *const *exclude, int n_exclude);

#endif
