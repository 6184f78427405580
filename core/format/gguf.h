/* gguf.h - GGUF (v2, v3) reader and writer.
 *
 * The reader validates the whole header before anything is used: magic, version, counts against
 * the file size, string/array lengths, tensor types, shapes (checked 64-bit products), offsets and
 * sizes inside the data section, alignment, duplicate keys and tensor names. Tensor data is a view
 * into a read-only mmap of the file, valid until mx_gguf_close(). Metadata strings are copied out
 * NUL-terminated at open, so callers may use them as C strings (a string containing a NUL byte is
 * visible in full through its len).
 *
 * The writer builds a file in memory (metadata + tensors) and writes it atomically (temp file +
 * rename); tests use it to make tiny models, later conversion tools will too.
 *
 * This header is the contract other modules (tokenizers, the LLM, inspect) are written against:
 * functions may be added, existing signatures do not change.
 */
#ifndef MX_GGUF_H
#define MX_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

#define MX_GGUF_MAX_DIMS 4
#define MX_GGUF_DEFAULT_ALIGNMENT 32

/* Metadata value types, numbered as in the file. */
enum mx_gguf_vtype {
    MX_GGUF_UINT8 = 0,
    MX_GGUF_INT8 = 1,
    MX_GGUF_UINT16 = 2,
    MX_GGUF_INT16 = 3,
    MX_GGUF_UINT32 = 4,
    MX_GGUF_INT32 = 5,
    MX_GGUF_FLOAT32 = 6,
    MX_GGUF_BOOL = 7,
    MX_GGUF_STRING = 8,
    MX_GGUF_ARRAY = 9,
    MX_GGUF_UINT64 = 10,
    MX_GGUF_INT64 = 11,
    MX_GGUF_FLOAT64 = 12,
};

/* One metadata value (owned by the struct mx_gguf it came from). */
struct mx_gguf_value {
    enum mx_gguf_vtype type;
    union {
        uint64_t u64;   /* UINT8/16/32/64 */
        int64_t i64;    /* INT8/16/32/64 */
        double f64;     /* FLOAT32/64 */
        bool b;         /* BOOL */
        struct { const char *data; uint64_t len; } str;  /* STRING: NUL-terminated copy */
        struct {
            enum mx_gguf_vtype elem_type;
            uint64_t n;
            const void *raw;                    /* numeric/bool elements: n packed little-endian
                                                   values of elem_type, as in the file */
            const struct mx_gguf_value *items;  /* STRING and ARRAY elements: n values */
        } arr;
    } v;
};

struct mx_gguf_tensor {
    const char *name;
    int type;                      /* enum mx_type (core/base/quant.h) */
    int n_dims;                    /* 1..4 */
    int64_t ne[MX_GGUF_MAX_DIMS];  /* ne[0] = row length (contiguous); unused dims are 1 */
    uint64_t offset;               /* from the start of the data section */
    size_t nbytes;
    const void *data;              /* into the read-only mapping */
};

struct mx_gguf;

/* Opens and validates path, mapping it read-only. On success *out owns the mapping (caller
 * closes). On failure *out is NULL, nothing stays mapped, and err says "path: what (numbers)". */
int mx_gguf_open(const char *path, struct mx_gguf **out, struct mx_err *err);
/* mx_gguf_open with MX_MAP_* flags (core/base/mapfile.h): read into memory instead of mapping,
 * lock the pages. 0 is mx_gguf_open. */
int mx_gguf_open_flags(const char *path, unsigned flags, struct mx_gguf **out,
                       struct mx_err *err);

/* The same over a caller's buffer (borrowed: it must outlive the result). Used by fuzzers and by
 * tests that build files in memory; `name` is used in messages. */
int mx_gguf_open_mem(const void *buf, size_t size, const char *name, struct mx_gguf **out,
                     struct mx_err *err);

void mx_gguf_close(struct mx_gguf *g); /* NULL ok */

const char *mx_gguf_path(const struct mx_gguf *g);
uint32_t mx_gguf_version(const struct mx_gguf *g);
size_t mx_gguf_alignment(const struct mx_gguf *g);
size_t mx_gguf_file_size(const struct mx_gguf *g);
size_t mx_gguf_data_offset(const struct mx_gguf *g); /* start of the tensor data section */

/* Metadata, in file order. */
int64_t mx_gguf_n_kv(const struct mx_gguf *g);
const char *mx_gguf_kv_key(const struct mx_gguf *g, int64_t i);
const struct mx_gguf_value *mx_gguf_kv_value(const struct mx_gguf *g, int64_t i);
int64_t mx_gguf_find_key(const struct mx_gguf *g, const char *key); /* index or -1 */
const struct mx_gguf_value *mx_gguf_get(const struct mx_gguf *g, const char *key); /* or NULL */

/* Typed getters. Return 0, MX_ENOENT when the key is absent (out untouched, err untouched so
 * optional keys cost nothing), MX_EFORMAT when the value has another type or does not fit (err
 * says which key and what it held). get_int accepts any integer type; get_float FLOAT32/64;
 * get_str gives a NUL-terminated string valid until close. */
int mx_gguf_get_int(const struct mx_gguf *g, const char *key, int64_t *out, struct mx_err *err);
int mx_gguf_get_u32(const struct mx_gguf *g, const char *key, uint32_t *out, struct mx_err *err);
int mx_gguf_get_float(const struct mx_gguf *g, const char *key, double *out, struct mx_err *err);
int mx_gguf_get_bool(const struct mx_gguf *g, const char *key, bool *out, struct mx_err *err);
int mx_gguf_get_str(const struct mx_gguf *g, const char *key, const char **out,
                    struct mx_err *err);
/* An array's element type and count (the elements are in the value: mx_gguf_get(g, key)). */
int mx_gguf_get_arr(const struct mx_gguf *g, const char *key, enum mx_gguf_vtype elem_type,
                    const struct mx_gguf_value **out, struct mx_err *err);

/* Numeric array element i as double/int64 (any numeric elem type); i must be < n. */
double mx_gguf_arr_float(const struct mx_gguf_value *arr, uint64_t i);
int64_t mx_gguf_arr_int(const struct mx_gguf_value *arr, uint64_t i);

/* Tensors, in file order. */
int64_t mx_gguf_n_tensors(const struct mx_gguf *g);
const struct mx_gguf_tensor *mx_gguf_tensor(const struct mx_gguf *g, int64_t i);
const struct mx_gguf_tensor *mx_gguf_find_tensor(const struct mx_gguf *g, const char *name);

/* Name of a value type ("uint32", "array", ...). */
const char *mx_gguf_vtype_name(int type);

/* ---- writer -------------------------------------------------------------------------------- */

struct mx_gguf_writer;

struct mx_gguf_writer *mx_gguf_writer_new(void); /* NULL on out of memory */
void mx_gguf_writer_free(struct mx_gguf_writer *w); /* NULL ok */

/* Setters copy their arguments. Setting an existing key replaces it. Return 0 or MX_ENOMEM. */
int mx_gguf_writer_set_u8(struct mx_gguf_writer *w, const char *key, uint8_t v);
int mx_gguf_writer_set_i8(struct mx_gguf_writer *w, const char *key, int8_t v);
int mx_gguf_writer_set_u16(struct mx_gguf_writer *w, const char *key, uint16_t v);
int mx_gguf_writer_set_i16(struct mx_gguf_writer *w, const char *key, int16_t v);
int mx_gguf_writer_set_u32(struct mx_gguf_writer *w, const char *key, uint32_t v);
int mx_gguf_writer_set_i32(struct mx_gguf_writer *w, const char *key, int32_t v);
int mx_gguf_writer_set_u64(struct mx_gguf_writer *w, const char *key, uint64_t v);
int mx_gguf_writer_set_i64(struct mx_gguf_writer *w, const char *key, int64_t v);
int mx_gguf_writer_set_f32(struct mx_gguf_writer *w, const char *key, float v);
int mx_gguf_writer_set_f64(struct mx_gguf_writer *w, const char *key, double v);
int mx_gguf_writer_set_bool(struct mx_gguf_writer *w, const char *key, bool v);
int mx_gguf_writer_set_str(struct mx_gguf_writer *w, const char *key, const char *v);
/* Array of n numeric/bool elements of elem_type, packed as in the file (little-endian). */
int mx_gguf_writer_set_arr(struct mx_gguf_writer *w, const char *key, enum mx_gguf_vtype elem_type,
                           const void *data, uint64_t n);
int mx_gguf_writer_set_arr_str(struct mx_gguf_writer *w, const char *key,
                               const char *const *strs, uint64_t n);
/* Any value, including nested arrays (a value tree as the reader returns it). */
int mx_gguf_writer_set_value(struct mx_gguf_writer *w, const char *key,
                             const struct mx_gguf_value *v);

/* Adds a tensor; data (ne product values of type, mx_row_size bytes) is copied. Returns 0,
 * MX_EINVAL for a bad shape/type or duplicate name, MX_ENOMEM. */
int mx_gguf_writer_add_tensor(struct mx_gguf_writer *w, const char *name, int type, int n_dims,
                              const int64_t *ne, const void *data);

/* Writes the file (version 2 or 3; alignment from general.alignment if set, else 32) to a temp
 * file beside path and renames it over path. Returns 0 or MX_EIO with the reason in err. */
int mx_gguf_writer_write(struct mx_gguf_writer *w, const char *path, uint32_t version,
                         struct mx_err *err);
/* The same into a malloc'd buffer (*buf caller frees). */
int mx_gguf_writer_write_mem(struct mx_gguf_writer *w, uint32_t version, void **buf, size_t *size,
                             struct mx_err *err);

#endif
