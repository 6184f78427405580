/* safetensors.h - safetensors reader and writer, and the diffusers folder layout.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {"k": "v"}}), then the data section. The reader validates the whole header
 * before anything is used: header length against the file, JSON (duplicate keys refused), known
 * dtypes, shapes (checked 64-bit products), data_offsets consistent with dtype x shape, inside
 * the data section and non-overlapping. Tensor data is a view into a read-only mmap of the file,
 * valid until mx_st_close().
 *
 * Shapes are kept as in the file: outermost dimension first (PyTorch order), so a conv weight is
 * [out, in, kh, kw]. mx_st_tensor_ne() gives the ggml order (ne[0] innermost) when wanted.
 *
 * A diffusers folder (Stable Diffusion) is several safetensors files plus JSON configs:
 * unet/diffusion_pytorch_model.safetensors, vae/..., text_encoder/model.safetensors, each with a
 * config.json, and model_index.json at the top. mx_st_folder_* opens every component present.
 *
 * Mirrors core/format/gguf.h: open/open_mem/close, find by name, errors "path: problem (numbers)".
 */
#ifndef MX_SAFETENSORS_H
#define MX_SAFETENSORS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

#define MX_ST_MAX_DIMS 8
#define MX_ST_MAX_HEADER ((size_t)100 << 20) /* the format's own limit: 100 MB of JSON */

/* Element types, as named in the file ("F16", "BF16", ...). */
enum mx_st_dtype {
    MX_ST_BOOL,
    MX_ST_U8,
    MX_ST_I8,
    MX_ST_F8_E5M2,
    MX_ST_F8_E4M3,
    MX_ST_I16,
    MX_ST_U16,
    MX_ST_F16,
    MX_ST_BF16,
    MX_ST_I32,
    MX_ST_U32,
    MX_ST_F32,
    MX_ST_F64,
    MX_ST_I64,
    MX_ST_U64,
    MX_ST_DTYPE_COUNT
};

struct mx_st_tensor {
    const char *name;                /* NUL-terminated, valid until close */
    enum mx_st_dtype dtype;
    int n_dims;                      /* 0 (scalar) .. MX_ST_MAX_DIMS */
    int64_t shape[MX_ST_MAX_DIMS];   /* outermost first, as in the file; unused entries 1 */
    int64_t n_elements;              /* product of shape */
    uint64_t offset;                 /* data_offsets[0], from the start of the data section */
    size_t nbytes;                   /* data_offsets[1] - data_offsets[0] */
    const void *data;                /* into the read-only mapping */
};

struct mx_st;

/* Opens and validates path, mapping it read-only. On success *out owns the mapping (caller
 * closes). On failure *out is NULL, nothing stays mapped or allocated, and err says
 * "path: what (numbers)". */
int mx_st_open(const char *path, struct mx_st **out, struct mx_err *err);

/* The same over a caller's buffer (borrowed: it must outlive the result); `name` is used in
 * messages. */
int mx_st_open_mem(const void *buf, size_t size, const char *name, struct mx_st **out,
                   struct mx_err *err);

void mx_st_close(struct mx_st *st); /* NULL ok */

const char *mx_st_path(const struct mx_st *st);
size_t mx_st_file_size(const struct mx_st *st);
size_t mx_st_data_offset(const struct mx_st *st); /* 8 + header length */

/* Tensors in header order. */
int64_t mx_st_n_tensors(const struct mx_st *st);
const struct mx_st_tensor *mx_st_tensor(const struct mx_st *st, int64_t i); /* NULL if out of
                                                                                range */
const struct mx_st_tensor *mx_st_find_tensor(const struct mx_st *st, const char *name);

/* __metadata__ (string -> string), in header order; get returns NULL when absent. */
int64_t mx_st_n_meta(const struct mx_st *st);
const char *mx_st_meta_key(const struct mx_st *st, int64_t i);
const char *mx_st_meta_value(const struct mx_st *st, int64_t i);
const char *mx_st_get_meta(const struct mx_st *st, const char *key);

/* The shape in ggml order (ne[0] = innermost, unused dims 1); false if it has more than 4
 * dimensions (then the outer ones would have to be merged by the caller). */
bool mx_st_tensor_ne(const struct mx_st_tensor *t, int64_t ne[4]);

/* dtype facts: name ("F16"), element size in bytes, whether mixel loads it as float weights
 * (F32, F16, BF16), and the enum mx_type (core/base/quant.h) with the same layout or -1. */
const char *mx_st_dtype_name(int dtype);   /* "?" for out-of-range values */
int mx_st_dtype_from_name(const char *name); /* -1 if unknown */
size_t mx_st_dtype_size(int dtype);        /* 0 for out-of-range values */
bool mx_st_dtype_is_float(int dtype);
int mx_st_dtype_to_type(int dtype);

/* ---- diffusers folders ------------------------------------------------------------------- */

struct mx_st_folder;

/* Opens a diffusers folder: each component directory (unet, vae, text_encoder, text_encoder_2)
 * that holds a known weights file (diffusion_pytorch_model[.fp16].safetensors or
 * model[.fp16].safetensors) is opened and its config.json parsed; model_index.json is read when
 * present. Returns MX_ENOENT when no component is found, the reader's error for a bad file, or
 * MX_EFORMAT for a bad config. *out is NULL on failure. */
int mx_st_folder_open(const char *dir, struct mx_st_folder **out, struct mx_err *err);
void mx_st_folder_close(struct mx_st_folder *f); /* NULL ok */

const char *mx_st_folder_path(const struct mx_st_folder *f);
/* Component names known to the folder API, NULL-terminated ("unet", "vae", ...). */
extern const char *const mx_st_folder_components[];
/* The opened file of a component, or NULL when the folder has none. Borrowed. */
const struct mx_st *mx_st_folder_file(const struct mx_st_folder *f, const char *component);
/* A component's config.json (component NULL: model_index.json), or NULL. Borrowed. */
const json_t *mx_st_folder_config(const struct mx_st_folder *f, const char *component);
/* A tensor by component + name, or NULL. */
const struct mx_st_tensor *mx_st_folder_find(const struct mx_st_folder *f, const char *component,
                                             const char *name);

/* ---- writer (tests, conversion tools) ------------------------------------------------------ */

struct mx_st_writer;

struct mx_st_writer *mx_st_writer_new(void); /* NULL on out of memory */
void mx_st_writer_free(struct mx_st_writer *w); /* NULL ok */

/* Sets a __metadata__ entry (copied; replaces an existing key). 0, MX_EINVAL or MX_ENOMEM. */
int mx_st_writer_set_meta(struct mx_st_writer *w, const char *key, const char *value);

/* Adds a tensor (shape outermost first, n_dims 0..MX_ST_MAX_DIMS); data (product x dtype size
 * bytes) is copied. Returns 0, MX_EINVAL for a bad dtype/shape or a duplicate name, MX_ENOMEM. */
int mx_st_writer_add_tensor(struct mx_st_writer *w, const char *name, int dtype, int n_dims,
                            const int64_t *shape, const void *data);

/* Writes the file (header padded to 8 bytes, tensors contiguous in insertion order) to a temp
 * file beside path and renames it over path. Returns 0 or MX_EIO/MX_ENOMEM with err set. */
int mx_st_writer_write(struct mx_st_writer *w, const char *path, struct mx_err *err);
/* The same into a malloc'd buffer (*buf caller frees). */
int mx_st_writer_write_mem(struct mx_st_writer *w, void **buf, size_t *size, struct mx_err *err);

#endif
