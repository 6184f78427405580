/* safetensors.c - safetensors reader/writer and diffusers folders (contract: safetensors.h).
 *
 * Checkpoints are untrusted input: the header length is checked against the file (and the
 * format's 100 MB cap) before the JSON is parsed, jansson refuses duplicate keys, NUL bytes and
 * bad UTF-8, and every tensor entry is checked (dtype, shape product, data_offsets equal to
 * dtype x shape, inside the data section, no overlaps) before the file is handed out. The parsed
 * JSON tree is kept for the life of the reader because tensor names and metadata point into it.
 *
 * Tuned for SD checkpoints: ~1,100 tensors and a 150 KB header in a 2 GB file; opening parses
 * the header only, the weights stay in the page cache until a backend touches them.
 */
#include "core/format/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/mapfile.h"
#include "core/base/quant.h"
#include "core/base/util.h"

#define NAME_SHOW 64 /* bytes of an untrusted name quoted in messages */

/* ---- dtypes ----------------------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
    int type; /* enum mx_type with the same element layout, or -1 */
} dtypes[MX_ST_DTYPE_COUNT] = {
    [MX_ST_BOOL] = {"BOOL", 1, -1},
    [MX_ST_U8] = {"U8", 1, -1},
    [MX_ST_I8] = {"I8", 1, MX_TYPE_I8},
    [MX_ST_F8_E5M2] = {"F8_E5M2", 1, -1},
    [MX_ST_F8_E4M3] = {"F8_E4M3", 1, -1},
    [MX_ST_I16] = {"I16", 2, MX_TYPE_I16},
    [MX_ST_U16] = {"U16", 2, -1},
    [MX_ST_F16] = {"F16", 2, MX_TYPE_F16},
    [MX_ST_BF16] = {"BF16", 2, MX_TYPE_BF16},
    [MX_ST_I32] = {"I32", 4, MX_TYPE_I32},
    [MX_ST_U32] = {"U32", 4, -1},
    [MX_ST_F32] = {"F32", 4, MX_TYPE_F32},
    [MX_ST_F64] = {"F64", 8, MX_TYPE_F64},
    [MX_ST_I64] = {"I64", 8, MX_TYPE_I64},
    [MX_ST_U64] = {"U64", 8, -1},
};

const char *mx_st_dtype_name(int dtype) {
    return dtype >= 0 && dtype < MX_ST_DTYPE_COUNT ? dtypes[dtype].name : "?";
}

int mx_st_dtype_from_name(const char *name) {
    for (int i = 0; name && i < MX_ST_DTYPE_COUNT; i++)
        if (strcmp(dtypes[i].name, name) == 0)
            return i;
    return -1;
}

size_t mx_st_dtype_size(int dtype) {
    return dtype >= 0 && dtype < MX_ST_DTYPE_COUNT ? dtypes[dtype].size : 0;
}

bool mx_st_dtype_is_float(int dtype) {
    return dtype == MX_ST_F32 || dtype == MX_ST_F16 || dtype == MX_ST_BF16;
}

int mx_st_dtype_to_type(int dtype) {
    return dtype >= 0 && dtype < MX_ST_DTYPE_COUNT ? dtypes[dtype].type : -1;
}

/* ---- reader ----------------------------------------------------------------------------- */

struct mx_st {
    char *path;                     /* name used in messages (owned) */
    const uint8_t *base;            /* whole file: the mapping or the caller's buffer */
    size_t size;
    bool mapped;
    size_t data_offset;             /* 8 + header length */
    json_t *root;                   /* parsed header; names and metadata point into it */
    int64_t n;
    struct mx_st_tensor *tensors;   /* [n], header order */
    int64_t *by_name;               /* [n] indices sorted by name, for bsearch */
    int64_t n_meta;
    const char **meta_k, **meta_v;  /* [n_meta], into root */
};

/* Copies an untrusted string into out for a message: printable ASCII kept, other bytes '?',
 * cut to NAME_SHOW bytes with "...", so a hostile name cannot steer the terminal. */
static const char *show(char *out, size_t out_size, const char *s) {
    size_t n = strlen(s), lim = out_size - 4, j = 0;
    for (size_t i = 0; i < n && j < lim; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n > lim)
        memcpy(out + j, "...", 3), j += 3;
    out[j] = '\0';
    return out;
}

/* Reads a non-negative JSON integer. */
static bool json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

static int parse_tensor(struct mx_st *st, const char *name, json_t *v, struct mx_st_tensor *t,
                        struct mx_err *err) {
    char nm[NAME_SHOW + 4];
    show(nm, sizeof nm, name);
    t->name = name;
    if (!json_is_object(v))
        return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s': entry is not an object", st->path,
                          nm);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape");
    json_t *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo))
        return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s': needs dtype (string), shape and "
                          "data_offsets (arrays)", st->path, nm);
    int dt = mx_st_dtype_from_name(json_string_value(jd));
    if (dt < 0) {
        char d[NAME_SHOW + 4];
        return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s' has unknown dtype '%s'", st->path,
                          nm, show(d, sizeof d, json_string_value(jd)));
    }
    t->dtype = (enum mx_st_dtype)dt;
    size_t nd = json_array_size(js);
    if (nd > MX_ST_MAX_DIMS)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s' has %zu dimensions (at most %d)",
                          st->path, nm, nd, MX_ST_MAX_DIMS);
    t->n_dims = (int)nd;
    size_t nel = 1;
    for (int d = 0; d < MX_ST_MAX_DIMS; d++)
        t->shape[d] = 1;
    for (size_t d = 0; d < nd; d++) {
        uint64_t x;
        if (!json_u64(json_array_get(js, d), &x))
            return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s': shape[%zu] is not a "
                              "non-negative integer", st->path, nm, d);
        if (!mx_mul_size(nel, (size_t)x, &nel) || nel > (size_t)INT64_MAX)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s': element count overflows "
                              "(shape[%zu] = %" PRIu64 ")", st->path, nm, d, x);
        t->shape[d] = (int64_t)x;
    }
    t->n_elements = (int64_t)nel;
    uint64_t b, e;
    if (json_array_size(jo) != 2 || !json_u64(json_array_get(jo, 0), &b) ||
        !json_u64(json_array_get(jo, 1), &e) || e < b)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s': data_offsets must be [begin, end] "
                          "with 0 <= begin <= end", st->path, nm);
    size_t nb = 0;
    if (!mx_mul_size(nel, dtypes[dt].size, &nb) || e - b != nb)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %"
                          PRIu64 "] hold %" PRIu64 " bytes, but %zu %s values need %zu%s",
                          st->path, nm, b, e, e - b, nel, dtypes[dt].name, nb,
                          nb ? "" : " (or overflow)");
    size_t data_size = st->size - st->data_offset;
    if (e > data_size)
        return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s' extends past end of file (offset %"
                          PRIu64 ", size %zu, file %zu)", st->path, nm,
                          (uint64_t)st->data_offset + b, nb, st->size);
    t->offset = b;
    t->nbytes = nb;
    t->data = st->base + st->data_offset + b;
    return 0;
}

static int cmp_by_offset(const void *a, const void *b) {
    const struct mx_st_tensor *x = *(const struct mx_st_tensor *const *)a;
    const struct mx_st_tensor *y = *(const struct mx_st_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Merge-sorts idx[] by tensor name (tmp: n scratch entries); qsort has no context argument. */
static void sort_by_name(const struct mx_st_tensor *ts, int64_t *idx, int64_t *tmp, int64_t n) {
    if (n < 2)
        return;
    int64_t h = n / 2;
    sort_by_name(ts, idx, tmp, h);
    sort_by_name(ts, idx + h, tmp, n - h);
    int64_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = strcmp(ts[idx[i]].name, ts[idx[j]].name) <= 0 ? idx[i++] : idx[j++];
    while (i < h)
        tmp[k++] = idx[i++];
    while (j < n)
        tmp[k++] = idx[j++];
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
}

static int parse(struct mx_st *st, struct mx_err *err) {
    if (st->size < 8)
        return mx_err_set(err, MX_EFORMAT, "%s: not a safetensors file (only %zu bytes)",
                          st->path, st->size);
    uint64_t hlen;
    memcpy(&hlen, st->base, 8);
    if (hlen > st->size - 8)
        return mx_err_set(err, MX_EFORMAT, "%s: header length %" PRIu64 " exceeds the file "
                          "(%zu bytes)", st->path, hlen, st->size);
    if (hlen > MX_ST_MAX_HEADER)
        return mx_err_set(err, MX_EFORMAT, "%s: header length %" PRIu64 " exceeds the 100 MB "
                          "limit", st->path, hlen);
    if (hlen < 2 || st->base[8] != '{')
        return mx_err_set(err, MX_EFORMAT, "%s: not a safetensors file (header does not start "
                          "with '{')", st->path);
    st->data_offset = 8 + (size_t)hlen;
    json_error_t je;
    st->root = json_loadb((const char *)st->base + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!st->root) {
        char m[NAME_SHOW + 4];
        return mx_err_set(err, MX_EFORMAT, "%s: bad JSON header: %s (byte %d)", st->path,
                          show(m, sizeof m, je.text), je.position);
    }
    if (!json_is_object(st->root))
        return mx_err_set(err, MX_EFORMAT, "%s: JSON header is not an object", st->path);
    size_t n_all = json_object_size(st->root);
    st->tensors = calloc(n_all + 1, sizeof *st->tensors);
    st->by_name = calloc(2 * n_all + 1, sizeof *st->by_name);
    if (!st->tensors || !st->by_name)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", st->path);
    const char *key;
    json_t *v;
    int rc;
    json_object_foreach(st->root, key, v) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(v))
                return mx_err_set(err, MX_EFORMAT, "%s: __metadata__ is not an object",
                                  st->path);
            size_t nm = json_object_size(v);
            st->meta_k = calloc(nm + 1, sizeof *st->meta_k);
            st->meta_v = calloc(nm + 1, sizeof *st->meta_v);
            if (!st->meta_k || !st->meta_v)
                return mx_err_set(err, MX_ENOMEM, "%s: out of memory", st->path);
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                char s[NAME_SHOW + 4];
                if (!json_is_string(mv))
                    return mx_err_set(err, MX_EFORMAT, "%s: __metadata__ '%s' is not a string",
                                      st->path, show(s, sizeof s, mk));
                st->meta_k[st->n_meta] = mk;
                st->meta_v[st->n_meta++] = json_string_value(mv);
            }
            continue;
        }
        if ((rc = parse_tensor(st, key, v, &st->tensors[st->n], err)) < 0)
            return rc;
        st->n++;
    }

    /* no two tensors may share bytes */
    if (st->n > 1) {
        const struct mx_st_tensor **order = malloc((size_t)st->n * sizeof *order);
        if (!order)
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory", st->path);
        for (int64_t i = 0; i < st->n; i++)
            order[i] = &st->tensors[i];
        qsort(order, (size_t)st->n, sizeof *order, cmp_by_offset);
        rc = 0;
        for (int64_t i = 1; i < st->n && rc == 0; i++) {
            const struct mx_st_tensor *a = order[i - 1], *b = order[i];
            if (a->nbytes > 0 && b->nbytes > 0 && a->offset + a->nbytes > b->offset) {
                char na[NAME_SHOW + 4], nb[NAME_SHOW + 4];
                rc = mx_err_set(err, MX_EFORMAT, "%s: tensors '%s' and '%s' overlap "
                                "(data_offsets %" PRIu64 "+%zu and %" PRIu64 ")", st->path,
                                show(na, sizeof na, a->name), show(nb, sizeof nb, b->name),
                                a->offset, a->nbytes, b->offset);
            }
        }
        free(order);
        if (rc < 0)
            return rc;
    }
    for (int64_t i = 0; i < st->n; i++)
        st->by_name[i] = i;
    sort_by_name(st->tensors, st->by_name, st->by_name + st->n, st->n);
    return 0;
}

static int open_common(const void *base, size_t size, bool mapped, const char *name,
                       struct mx_st **out, struct mx_err *err) {
    struct mx_st *st = calloc(1, sizeof *st);
    if (!st || !(st->path = strdup(name))) {
        free(st);
        if (mapped)
            mx_unmap_file(base, size);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
    }
    st->base = base;
    st->size = size;
    st->mapped = mapped;
    int rc = parse(st, err);
    if (rc < 0) {
        mx_st_close(st);
        return rc;
    }
    *out = st;
    return 0;
}

int mx_st_open(const char *path, struct mx_st **out, struct mx_err *err) {
    *out = NULL;
    const void *p;
    size_t size;
    int rc = mx_map_file(path, 10, "safetensors", &p, &size, err);
    if (rc < 0)
        return rc;
    return open_common(p, size, true, path, out, err);
}

int mx_st_open_mem(const void *buf, size_t size, const char *name, struct mx_st **out,
                   struct mx_err *err) {
    *out = NULL;
    if (!name)
        name = "(memory)";
    if (!buf && size)
        return mx_err_set(err, MX_EINVAL, "%s: NULL buffer", name);
    return open_common(buf ? buf : "", size, false, name, out, err);
}

void mx_st_close(struct mx_st *st) {
    if (!st)
        return;
    if (st->mapped)
        mx_unmap_file(st->base, st->size);
    json_decref(st->root);
    free(st->tensors);
    free(st->by_name);
    free(st->meta_k);
    free(st->meta_v);
    free(st->path);
    free(st);
}

const char *mx_st_path(const struct mx_st *st) { return st->path; }
size_t mx_st_file_size(const struct mx_st *st) { return st->size; }
size_t mx_st_data_offset(const struct mx_st *st) { return st->data_offset; }
int64_t mx_st_n_tensors(const struct mx_st *st) { return st->n; }
int64_t mx_st_n_meta(const struct mx_st *st) { return st->n_meta; }

const struct mx_st_tensor *mx_st_tensor(const struct mx_st *st, int64_t i) {
    return i >= 0 && i < st->n ? &st->tensors[i] : NULL;
}

const struct mx_st_tensor *mx_st_find_tensor(const struct mx_st *st, const char *name) {
    if (!name)
        return NULL;
    int64_t lo = 0, hi = st->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[st->by_name[mid]].name, name);
        if (c == 0)
            return &st->tensors[st->by_name[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *mx_st_meta_key(const struct mx_st *st, int64_t i) {
    return i >= 0 && i < st->n_meta ? st->meta_k[i] : NULL;
}

const char *mx_st_meta_value(const struct mx_st *st, int64_t i) {
    return i >= 0 && i < st->n_meta ? st->meta_v[i] : NULL;
}

const char *mx_st_get_meta(const struct mx_st *st, const char *key) {
    for (int64_t i = 0; key && i < st->n_meta; i++)
        if (strcmp(st->meta_k[i], key) == 0)
            return st->meta_v[i];
    return NULL;
}

bool mx_st_tensor_ne(const struct mx_st_tensor *t, int64_t ne[4]) {
    for (int d = 0; d < 4; d++)
        ne[d] = d < t->n_dims ? t->shape[t->n_dims - 1 - d] : 1;
    return t->n_dims <= 4;
}

/* ---- diffusers folders ------------------------------------------------------------------ */

const char *const mx_st_folder_components[] = {"unet", "vae", "text_encoder", "text_encoder_2",
                                               NULL};
#define N_COMP 4

static const char *const weight_files[] = {
    "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
    "model.safetensors", "model.fp16.safetensors",
};

struct mx_st_folder {
    char *path;
    struct mx_st *files[N_COMP];    /* NULL where the component is absent */
    json_t *configs[N_COMP];        /* config.json of each component, or NULL */
    json_t *index;                  /* model_index.json, or NULL */
};

static int comp_index(const char *component) {
    for (int i = 0; component && i < N_COMP; i++)
        if (strcmp(mx_st_folder_components[i], component) == 0)
            return i;
    return -1;
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Loads an optional JSON config: 0 with *out NULL when absent, MX_EFORMAT when malformed. */
static int load_config(const char *path, json_t **out, struct mx_err *err) {
    *out = NULL;
    if (!is_file(path))
        return 0;
    json_error_t je;
    *out = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!*out) {
        char m[NAME_SHOW + 4];
        return mx_err_set(err, MX_EFORMAT, "%s: bad JSON: %s (line %d)", path,
                          show(m, sizeof m, je.text), je.line);
    }
    if (!json_is_object(*out))
        return mx_err_set(err, MX_EFORMAT, "%s: not a JSON object", path);
    return 0;
}

int mx_st_folder_open(const char *dir, struct mx_st_folder **out, struct mx_err *err) {
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return mx_err_set(err, MX_ENOENT, "%s: no such folder", dir);
    struct mx_st_folder *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(dir))) {
        free(f);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", dir);
    }
    size_t plen = strlen(dir) + 128;
    char *p = malloc(plen);
    int rc = p ? 0 : mx_err_set(err, MX_ENOMEM, "%s: out of memory", dir);
    int found = 0;
    if (rc == 0) {
        snprintf(p, plen, "%s/model_index.json", dir);
        rc = load_config(p, &f->index, err);
    }
    for (int c = 0; c < N_COMP && rc == 0; c++) {
        for (size_t k = 0; k < MX_ARRAY_LEN(weight_files); k++) {
            snprintf(p, plen, "%s/%s/%s", dir, mx_st_folder_components[c], weight_files[k]);
            if (is_file(p))
                break;
            p[0] = '\0';
        }
        if (!p[0])
            continue;
        if ((rc = mx_st_open(p, &f->files[c], err)) < 0)
            break;
        found++;
        snprintf(p, plen, "%s/%s/config.json", dir, mx_st_folder_components[c]);
        rc = load_config(p, &f->configs[c], err);
    }
    free(p);
    if (rc == 0 && !found)
        rc = mx_err_set(err, MX_ENOENT, "%s: not a diffusers folder (no unet/, vae/ or "
                        "text_encoder/ safetensors weights)", dir);
    if (rc < 0) {
        mx_st_folder_close(f);
        return rc;
    }
    *out = f;
    return 0;
}

void mx_st_folder_close(struct mx_st_folder *f) {
    if (!f)
        return;
    for (int c = 0; c < N_COMP; c++) {
        mx_st_close(f->files[c]);
        json_decref(f->configs[c]);
    }
    json_decref(f->index);
    free(f->path);
    free(f);
}

const char *mx_st_folder_path(const struct mx_st_folder *f) { return f->path; }

const struct mx_st *mx_st_folder_file(const struct mx_st_folder *f, const char *component) {
    int c = comp_index(component);
    return c < 0 ? NULL : f->files[c];
}

const json_t *mx_st_folder_config(const struct mx_st_folder *f, const char *component) {
    if (!component)
        return f->index;
    int c = comp_index(component);
    return c < 0 ? NULL : f->configs[c];
}

const struct mx_st_tensor *mx_st_folder_find(const struct mx_st_folder *f, const char *component,
                                             const char *name) {
    const struct mx_st *st = mx_st_folder_file(f, component);
    return st ? mx_st_find_tensor(st, name) : NULL;
}

/* ---- writer ----------------------------------------------------------------------------- */

struct wt {
    char *name;
    int dtype, n_dims;
    int64_t shape[MX_ST_MAX_DIMS];
    size_t nbytes;
    void *data;
};

struct mx_st_writer {
    json_t *meta;       /* string -> string, insertion order */
    struct wt *ts;
    size_t n, cap;
};

struct mx_st_writer *mx_st_writer_new(void) {
    struct mx_st_writer *w = calloc(1, sizeof *w);
    if (w && !(w->meta = json_object())) {
        free(w);
        return NULL;
    }
    return w;
}

void mx_st_writer_free(struct mx_st_writer *w) {
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->ts[i].name);
        free(w->ts[i].data);
    }
    free(w->ts);
    json_decref(w->meta);
    free(w);
}

int mx_st_writer_set_meta(struct mx_st_writer *w, const char *key, const char *value) {
    if (!w || !key || !value)
        return MX_EINVAL;
    json_t *s = json_string(value);
    if (!s)
        return MX_EINVAL; /* not UTF-8 */
    return json_object_set_new(w->meta, key, s) == 0 ? 0 : MX_EINVAL;
}

int mx_st_writer_add_tensor(struct mx_st_writer *w, const char *name, int dtype, int n_dims,
                            const int64_t *shape, const void *data) {
    if (!w || !name || n_dims < 0 || n_dims > MX_ST_MAX_DIMS || (n_dims && !shape) ||
        mx_st_dtype_size(dtype) == 0 || strcmp(name, "__metadata__") == 0)
        return MX_EINVAL;
    struct wt t = {.dtype = dtype, .n_dims = n_dims};
    size_t nb = mx_st_dtype_size(dtype);
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] < 0 || !mx_mul_size(nb, (size_t)shape[d], &nb))
            return MX_EINVAL;
        t.shape[d] = shape[d];
    }
    if (nb && !data)
        return MX_EINVAL;
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->ts[i].name, name) == 0)
            return MX_EINVAL;
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        struct wt *ts = realloc(w->ts, cap * sizeof *ts);
        if (!ts)
            return MX_ENOMEM;
        w->ts = ts;
        w->cap = cap;
    }
    t.nbytes = nb;
    t.name = strdup(name);
    t.data = malloc(nb ? nb : 1);
    if (!t.name || !t.data) {
        free(t.name);
        free(t.data);
        return MX_ENOMEM;
    }
    if (nb)
        memcpy(t.data, data, nb);
    w->ts[w->n++] = t;
    return 0;
}

/* The JSON header for the writer's tensors (caller frees), or NULL. */
static char *writer_header(const struct mx_st_writer *w) {
    json_t *root = json_object();
    bool ok = root != NULL;
    if (ok && json_object_size(w->meta) > 0)
        ok = json_object_set(root, "__metadata__", w->meta) == 0;
    uint64_t off = 0;
    for (size_t i = 0; ok && i < w->n; i++) {
        const struct wt *t = &w->ts[i];
        json_t *shape = json_array();
        ok = shape != NULL;
        for (int d = 0; ok && d < t->n_dims; d++)
            ok = json_array_append_new(shape, json_integer(t->shape[d])) == 0;
        if (!ok) {
            json_decref(shape);
            break;
        }
        json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", mx_st_dtype_name(t->dtype),
                              "shape", shape, "data_offsets", (json_int_t)off,
                              (json_int_t)(off + t->nbytes));
        ok = ok && e && json_object_set_new(root, t->name, e) == 0;
        off += t->nbytes;
    }
    char *s = ok ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return s;
}

int mx_st_writer_write_mem(struct mx_st_writer *w, void **buf, size_t *size, struct mx_err *err) {
    *buf = NULL;
    *size = 0;
    char *hdr = writer_header(w);
    if (!hdr)
        return mx_err_set(err, MX_ENOMEM, "safetensors writer: cannot build the header "
                          "(out of memory or a name that is not UTF-8)");
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8, total = 8 + padded;
    for (size_t i = 0; i < w->n; i++)
        total += w->ts[i].nbytes;
    uint8_t *p = malloc(total);
    if (!p) {
        free(hdr);
        return mx_err_set(err, MX_ENOMEM, "safetensors writer: out of memory (%zu bytes)",
                          total);
    }
    uint64_t h64 = padded;
    memcpy(p, &h64, 8);
    memcpy(p + 8, hdr, hlen);
    memset(p + 8 + hlen, ' ', padded - hlen); /* the format pads the header with spaces */
    size_t off = 8 + padded;
    for (size_t i = 0; i < w->n; i++) {
        if (w->ts[i].nbytes)
            memcpy(p + off, w->ts[i].data, w->ts[i].nbytes);
        off += w->ts[i].nbytes;
    }
    free(hdr);
    *buf = p;
    *size = total;
    return 0;
}

int mx_st_writer_write(struct mx_st_writer *w, const char *path, struct mx_err *err) {
    void *buf;
    size_t size;
    int rc = mx_st_writer_write_mem(w, &buf, &size, err);
    if (rc < 0)
        return rc;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(buf);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = mx_err_set(err, MX_EIO, "%s: cannot create temp file: %s", path, strerror(errno));
        goto out;
    }
    (void)fchmod(fd, 0644); /* mkstemp makes 0600; a checkpoint is an ordinary readable file */
    const uint8_t *q = buf;
    size_t left = size;
    while (left > 0) {
        ssize_t k = write(fd, q, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            rc = mx_err_set(err, MX_EIO, "%s: write: %s", tmp, strerror(k < 0 ? errno : EIO));
            break;
        }
        q += k;
        left -= (size_t)k;
    }
    if (rc == 0 && fsync(fd) != 0)
        rc = mx_err_set(err, MX_EIO, "%s: fsync: %s", tmp, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = mx_err_set(err, MX_EIO, "%s: close: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) != 0)
        rc = mx_err_set(err, MX_EIO, "%s: rename: %s", path, strerror(errno));
    if (rc < 0)
        unlink(tmp);
out:
    free(tmp);
    free(buf);
    return rc;
}
