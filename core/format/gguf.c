/* gguf.c - GGUF (v2, v3) reader and writer (the contract is core/format/gguf.h).
 *
 * Model files are untrusted input, so the reader validates the whole header before returning
 * anything: every count is checked against the bytes that remain before it sizes an allocation
 * (a 2^60 array length fails at once instead of reaching malloc), arrays nest at most
 * MAX_DEPTH deep, tensor types, shapes (checked 64-bit products), alignment, offsets and sizes
 * inside the data section, overlaps and duplicate names are all checked. Tensor data stays in
 * the read-only mapping; metadata strings and names are copied NUL-terminated into one arena so
 * that close frees everything at once. Lookups by key and by tensor name go through small
 * open-addressing hash tables built at open (the same tables find duplicates).
 *
 * Tuned for files with tens of thousands of metadata strings (vocabularies) and a few thousand
 * tensors: opening is linear in the header size and touches no tensor data.
 */
#include "core/format/gguf.h"

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

_Static_assert(sizeof(size_t) == 8, "mixel needs a 64-bit size_t");

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define MAX_DEPTH 8            /* nested arrays deeper than this are refused */
#define MAX_DIM ((int64_t)1 << 48)
#define NAME_SHOW 64           /* bytes of an untrusted name quoted in messages */

/* ---- arena: all strings, names and value trees of one reader ----------------------------- */

struct arena_blk {
    struct arena_blk *next;
    size_t used, cap;
    _Alignas(16) unsigned char mem[];
};

struct arena {
    struct arena_blk *head;
};

/* Returns n zeroed bytes (8-aligned) that live until arena_free, or NULL on out of memory. */
static void *arena_alloc(struct arena *a, size_t n) {
    size_t need;
    if (!mx_add_size(n, 7, &need))
        return NULL;
    need &= ~(size_t)7;
    struct arena_blk *b = a->head;
    if (!b || b->cap - b->used < need) {
        size_t cap = need > 65536 ? need : 65536;
        size_t total;
        if (!mx_add_size(cap, sizeof *b, &total))
            return NULL;
        b = malloc(total);
        if (!b)
            return NULL;
        b->cap = cap;
        b->used = 0;
        b->next = a->head;
        a->head = b;
    }
    void *p = b->mem + b->used;
    b->used += need;
    memset(p, 0, n);
    return p;
}

static void arena_free(struct arena *a) {
    struct arena_blk *b = a->head;
    while (b) {
        struct arena_blk *next = b->next;
        free(b);
        b = next;
    }
    a->head = NULL;
}

/* ---- hash index over names (keys or tensor names) --------------------------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* Slot table of index+1 (0 = empty); capacity a power of two, at least twice the count. */
struct index {
    uint32_t *slots;
    size_t mask;
};

static int index_init(struct index *ix, int64_t n) {
    size_t cap = 16;
    while (cap < (size_t)n * 2)
        cap *= 2;
    ix->slots = calloc(cap, sizeof *ix->slots);
    if (!ix->slots)
        return MX_ENOMEM;
    ix->mask = cap - 1;
    return 0;
}

/* ---- the reader object ------------------------------------------------------------------ */

struct kv {
    const char *key;            /* NUL-terminated, no inner NUL */
    struct mx_gguf_value val;
};

struct mx_gguf {
    char *path;                 /* name used in messages (owned) */
    const uint8_t *base;        /* whole file: the mapping, or the caller's buffer */
    size_t size;                /* bytes at base */
    bool mapped;                /* base is our mmap */
    uint32_t version;
    size_t alignment;
    size_t data_offset;         /* start of the data section (<= size unless no tensor data) */
    int64_t n_kv;
    struct kv *kvs;             /* [n_kv], in the arena */
    int64_t n_tensors;
    struct mx_gguf_tensor *tensors; /* [n_tensors], in the arena */
    struct index kv_ix, t_ix;
    struct arena arena;
};

/* Lookup by name: index or -1. names(i) gives entry i's name. */
static int64_t index_find(const struct index *ix, const char *name, size_t len,
                          const char *(*name_of)(const struct mx_gguf *, int64_t),
                          const struct mx_gguf *g) {
    if (!ix->slots)
        return -1;
    size_t i = (size_t)hash_bytes(name, len) & ix->mask;
    while (ix->slots[i]) {
        int64_t e = (int64_t)ix->slots[i] - 1;
        const char *s = name_of(g, e);
        if (strlen(s) == len && memcmp(s, name, len) == 0)
            return e;
        i = (i + 1) & ix->mask;
    }
    return -1;
}

/* Inserts entry e under its name; returns the existing index for a duplicate, else -1. */
static int64_t index_insert(struct index *ix, int64_t e,
                            const char *(*name_of)(const struct mx_gguf *, int64_t),
                            const struct mx_gguf *g) {
    const char *name = name_of(g, e);
    size_t len = strlen(name);
    size_t i = (size_t)hash_bytes(name, len) & ix->mask;
    while (ix->slots[i]) {
        int64_t o = (int64_t)ix->slots[i] - 1;
        if (strcmp(name_of(g, o), name) == 0)
            return o;
        i = (i + 1) & ix->mask;
    }
    ix->slots[i] = (uint32_t)(e + 1);
    return -1;
}

static const char *kv_name(const struct mx_gguf *g, int64_t i) { return g->kvs[i].key; }
static const char *t_name(const struct mx_gguf *g, int64_t i) { return g->tensors[i].name; }

/* ---- bounded cursor over the file ------------------------------------------------------- */

struct rd {
    const uint8_t *p;
    size_t size, pos;
    const char *name;           /* for messages */
    struct mx_err *err;
    struct arena *arena;
};

/* Copies an untrusted name into out for a message: printable ASCII kept, other bytes as '?',
 * cut to NAME_SHOW bytes with "..." so a hostile name cannot flood or steer the terminal. */
static const char *show(char *out, size_t out_size, const char *s, size_t n) {
    size_t lim = out_size - 4, j = 0;
    for (size_t i = 0; i < n && j < lim; i++) {
        unsigned char c = (unsigned char)s[i];
        out[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (n > lim)
        memcpy(out + j, "...", 3), j += 3;
    out[j] = '\0';
    return out;
}

static int truncated(struct rd *r, const char *what, size_t need) {
    return mx_err_set(r->err, MX_EFORMAT,
                      "%s: truncated file in %s (need %zu bytes at offset %zu, file %zu)",
                      r->name, what, need, r->pos, r->size);
}

/* Returns a pointer to the next n bytes and advances, or NULL (err set) when they are not all
 * there. */
static const uint8_t *rd_take(struct rd *r, size_t n, const char *what) {
    if (n > r->size - r->pos) {
        truncated(r, what, n);
        return NULL;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += n;
    return p;
}

static int rd_u32(struct rd *r, uint32_t *v, const char *what) {
    const uint8_t *p = rd_take(r, 4, what);
    if (!p)
        return MX_EFORMAT;
    memcpy(v, p, 4);
    return 0;
}

static int rd_u64(struct rd *r, uint64_t *v, const char *what) {
    const uint8_t *p = rd_take(r, 8, what);
    if (!p)
        return MX_EFORMAT;
    memcpy(v, p, 8);
    return 0;
}

/* Reads a GGUF string (u64 length + bytes) into a NUL-terminated arena copy. */
static int rd_str(struct rd *r, const char **s, uint64_t *len, const char *what) {
    uint64_t n;
    int rc = rd_u64(r, &n, what);
    if (rc < 0)
        return rc;
    if (n > r->size - r->pos)
        return mx_err_set(r->err, MX_EFORMAT,
                          "%s: %s: string length %" PRIu64 " exceeds the %zu bytes left "
                          "(offset %zu)", r->name, what, n, r->size - r->pos, r->pos - 8);
    char *c = arena_alloc(r->arena, (size_t)n + 1);
    if (!c)
        return mx_err_set(r->err, MX_ENOMEM, "%s: out of memory", r->name);
    memcpy(c, r->p + r->pos, (size_t)n);
    c[n] = '\0';
    r->pos += (size_t)n;
    *s = c;
    *len = n;
    return 0;
}

/* Bytes of one numeric/bool element, 0 for STRING/ARRAY, -1 for unknown types. */
static int vtype_size(uint32_t t) {
    switch (t) {
    case MX_GGUF_UINT8: case MX_GGUF_INT8: case MX_GGUF_BOOL: return 1;
    case MX_GGUF_UINT16: case MX_GGUF_INT16: return 2;
    case MX_GGUF_UINT32: case MX_GGUF_INT32: case MX_GGUF_FLOAT32: return 4;
    case MX_GGUF_UINT64: case MX_GGUF_INT64: case MX_GGUF_FLOAT64: return 8;
    case MX_GGUF_STRING: case MX_GGUF_ARRAY: return 0;
    default: return -1;
    }
}

/* Decodes one numeric/bool element at p into v (type already set). */
static void decode_scalar(const uint8_t *p, struct mx_gguf_value *v) {
    switch (v->type) {
    case MX_GGUF_UINT8: v->v.u64 = p[0]; break;
    case MX_GGUF_INT8: v->v.i64 = (int8_t)p[0]; break;
    case MX_GGUF_BOOL: v->v.b = p[0] != 0; break;
    case MX_GGUF_UINT16: { uint16_t x; memcpy(&x, p, 2); v->v.u64 = x; break; }
    case MX_GGUF_INT16: { int16_t x; memcpy(&x, p, 2); v->v.i64 = x; break; }
    case MX_GGUF_UINT32: { uint32_t x; memcpy(&x, p, 4); v->v.u64 = x; break; }
    case MX_GGUF_INT32: { int32_t x; memcpy(&x, p, 4); v->v.i64 = x; break; }
    case MX_GGUF_FLOAT32: { float x; memcpy(&x, p, 4); v->v.f64 = x; break; }
    case MX_GGUF_UINT64: memcpy(&v->v.u64, p, 8); break;
    case MX_GGUF_INT64: memcpy(&v->v.i64, p, 8); break;
    case MX_GGUF_FLOAT64: memcpy(&v->v.f64, p, 8); break;
    default: break;
    }
}

/* Parses a value of type t at the cursor into v. `what` names the key for messages. */
static int rd_value(struct rd *r, uint32_t t, int depth, struct mx_gguf_value *v,
                    const char *what) {
    int sz = vtype_size(t);
    if (sz < 0)
        return mx_err_set(r->err, MX_EFORMAT, "%s: %s: unknown value type %" PRIu32
                          " (offset %zu)", r->name, what, t, r->pos);
    v->type = (enum mx_gguf_vtype)t;
    if (sz > 0) {
        const uint8_t *p = rd_take(r, (size_t)sz, what);
        if (!p)
            return MX_EFORMAT;
        if (t == MX_GGUF_BOOL && p[0] > 1)
            return mx_err_set(r->err, MX_EFORMAT, "%s: %s: bool value %u is not 0 or 1",
                              r->name, what, p[0]);
        decode_scalar(p, v);
        return 0;
    }
    if (t == MX_GGUF_STRING)
        return rd_str(r, &v->v.str.data, &v->v.str.len, what);

    /* array: element type, count, elements */
    if (depth >= MAX_DEPTH)
        return mx_err_set(r->err, MX_EFORMAT, "%s: %s: arrays nested deeper than %d",
                          r->name, what, MAX_DEPTH);
    uint32_t et;
    uint64_t n;
    int rc = rd_u32(r, &et, what);
    if (rc == 0)
        rc = rd_u64(r, &n, what);
    if (rc < 0)
        return rc;
    int esz = vtype_size(et);
    if (esz < 0)
        return mx_err_set(r->err, MX_EFORMAT, "%s: %s: unknown array element type %" PRIu32,
                          r->name, what, et);
    v->v.arr.elem_type = (enum mx_gguf_vtype)et;
    v->v.arr.n = n;
    /* smallest encoding of one element: a fixed size, an empty string (8) or an empty array
     * (12); the count must fit in what is left before anything is allocated for it */
    size_t min = esz > 0 ? (size_t)esz : et == MX_GGUF_STRING ? 8 : 12;
    size_t left = r->size - r->pos;
    if (n > left / min)
        return mx_err_set(r->err, MX_EFORMAT, "%s: %s: array of %" PRIu64 " %s elements does "
                          "not fit in the %zu bytes left (offset %zu)", r->name, what, n,
                          mx_gguf_vtype_name((int)et), left, r->pos);
    if (esz > 0) {
        const uint8_t *p = rd_take(r, (size_t)n * min, what);
        if (et == MX_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (p[i] > 1)
                    return mx_err_set(r->err, MX_EFORMAT, "%s: %s: bool element %" PRIu64
                                      " is %u, not 0 or 1", r->name, what, i, p[i]);
        }
        v->v.arr.raw = p;
        return 0;
    }
    if (n == 0)
        return 0;
    struct mx_gguf_value *items = arena_alloc(r->arena, (size_t)n * sizeof *items);
    if (!items)
        return mx_err_set(r->err, MX_ENOMEM, "%s: out of memory", r->name);
    for (uint64_t i = 0; i < n; i++) {
        if (et == MX_GGUF_STRING) {
            items[i].type = MX_GGUF_STRING;
            rc = rd_str(r, &items[i].v.str.data, &items[i].v.str.len, what);
        } else {
            rc = rd_value(r, et, depth + 1, &items[i], what);
        }
        if (rc < 0)
            return rc;
    }
    v->v.arr.items = items;
    return 0;
}

/* ---- open ------------------------------------------------------------------------------- */

/* Reads general.alignment when present: any integer type, nonzero power of two. */
static int read_alignment(struct mx_gguf *g, struct mx_err *err) {
    g->alignment = MX_GGUF_DEFAULT_ALIGNMENT;
    int64_t a;
    int rc = mx_gguf_get_int(g, "general.alignment", &a, err);
    if (rc == MX_ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    if (a <= 0 || (a & (a - 1)) != 0 || a > ((int64_t)1 << 30))
        return mx_err_set(err, MX_EFORMAT, "%s: general.alignment %" PRId64 " is not a power "
                          "of two between 1 and 2^30", g->path, a);
    g->alignment = (size_t)a;
    return 0;
}

static int parse_tensor_info(struct mx_gguf *g, struct rd *r, int64_t i) {
    struct mx_gguf_tensor *t = &g->tensors[i];
    char what[40], nm[NAME_SHOW + 4];
    snprintf(what, sizeof what, "tensor info %" PRId64, i);
    uint64_t len;
    int rc = rd_str(r, &t->name, &len, what);
    if (rc < 0)
        return rc;
    show(nm, sizeof nm, t->name, (size_t)len);
    if (strlen(t->name) != len)
        return mx_err_set(r->err, MX_EFORMAT, "%s: tensor %" PRId64 " name '%s' contains a "
                          "NUL byte", g->path, i, nm);
    uint32_t n_dims, type;
    if ((rc = rd_u32(r, &n_dims, what)) < 0)
        return rc;
    if (n_dims < 1 || n_dims > MX_GGUF_MAX_DIMS)
        return mx_err_set(r->err, MX_EFORMAT, "%s: tensor '%s' has %" PRIu32 " dimensions "
                          "(1 to %d allowed)", g->path, nm, n_dims, MX_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < MX_GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne;
        if ((rc = rd_u64(r, &ne, what)) < 0)
            return rc;
        if (ne > (uint64_t)MAX_DIM)
            return mx_err_set(r->err, MX_EFORMAT, "%s: tensor '%s': dimension %" PRIu32
                              " is %" PRIu64 " (too large)", g->path, nm, d, ne);
        t->ne[d] = (int64_t)ne;
    }
    if ((rc = rd_u32(r, &type, what)) < 0)
        return rc;
    const struct mx_type_traits *tr = type < MX_TYPE_COUNT ? mx_type_traits((int)type) : NULL;
    if (!tr || !tr->name)
        return mx_err_set(r->err, MX_EFORMAT, "%s: tensor '%s' has unknown type %" PRIu32,
                          g->path, nm, type);
    t->type = (int)type;
    if ((rc = rd_u64(r, &t->offset, what)) < 0)
        return rc;

    /* element count and bytes, all products checked */
    size_t nel = 1, nonzero = 1;
    for (int d = 0; d < MX_GGUF_MAX_DIMS; d++) {
        size_t ne = (size_t)t->ne[d];
        if (!mx_mul_size(nonzero, ne ? ne : 1, &nonzero) || nonzero > (size_t)INT64_MAX)
            return mx_err_set(r->err, MX_EFORMAT, "%s: tensor '%s': shape [%" PRId64 ", %"
                              PRId64 ", %" PRId64 ", %" PRId64 "] overflows", g->path, nm,
                              t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
        nel *= ne; /* bounded by nonzero */
    }
    if (t->ne[0] % tr->blck_size != 0)
        return mx_err_set(r->err, MX_EFORMAT, "%s: tensor '%s': row length %" PRId64 " is not "
                          "a multiple of the %s block size %" PRId64, g->path, nm, t->ne[0],
                          tr->name, tr->blck_size);
    size_t row, nb;
    if (!mx_row_size(t->type, t->ne[0], &row) ||
        !mx_mul_size(row, (size_t)t->ne[1], &nb) || !mx_mul_size(nb, (size_t)t->ne[2], &nb) ||
        !mx_mul_size(nb, (size_t)t->ne[3], &nb))
        return mx_err_set(r->err, MX_EFORMAT, "%s: tensor '%s': size of %zu %s values "
                          "overflows", g->path, nm, nel, tr->name);
    t->nbytes = nb;
    return 0;
}

static int cmp_offset(const void *a, const void *b) {
    const struct mx_gguf_tensor *x = *(const struct mx_gguf_tensor *const *)a;
    const struct mx_gguf_tensor *y = *(const struct mx_gguf_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

/* Places every tensor inside the data section: aligned offsets, in bounds, no overlaps. */
static int place_tensors(struct mx_gguf *g, struct mx_err *err) {
    size_t data_size = g->size > g->data_offset ? g->size - g->data_offset : 0;
    char nm[NAME_SHOW + 4];
    for (int64_t i = 0; i < g->n_tensors; i++) {
        struct mx_gguf_tensor *t = &g->tensors[i];
        show(nm, sizeof nm, t->name, strlen(t->name));
        if (t->offset % g->alignment != 0)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s' offset %" PRIu64 " is not a "
                              "multiple of the alignment %zu", g->path, nm, t->offset,
                              g->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return mx_err_set(err, MX_EFORMAT, "%s: tensor '%s' extends past end of file "
                              "(offset %" PRIu64 ", size %zu, file %zu)", g->path, nm,
                              (uint64_t)g->data_offset + t->offset, t->nbytes, g->size);
        /* an empty tensor may sit at the end of a file without a padded data section */
        t->data = g->base + MX_MIN(g->data_offset + t->offset, g->size);
    }
    if (g->n_tensors < 2)
        return 0;
    const struct mx_gguf_tensor **order = malloc((size_t)g->n_tensors * sizeof *order);
    if (!order)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", g->path);
    for (int64_t i = 0; i < g->n_tensors; i++)
        order[i] = &g->tensors[i];
    qsort(order, (size_t)g->n_tensors, sizeof *order, cmp_offset);
    int rc = 0;
    for (int64_t i = 1; i < g->n_tensors && rc == 0; i++) {
        const struct mx_gguf_tensor *a = order[i - 1], *b = order[i];
        if (a->nbytes > 0 && b->nbytes > 0 && a->offset + a->nbytes > b->offset) {
            char nb[NAME_SHOW + 4];
            show(nm, sizeof nm, a->name, strlen(a->name));
            show(nb, sizeof nb, b->name, strlen(b->name));
            rc = mx_err_set(err, MX_EFORMAT, "%s: tensors '%s' and '%s' overlap (offsets %"
                            PRIu64 "+%zu and %" PRIu64 ")", g->path, nm, nb, a->offset,
                            a->nbytes, b->offset);
        }
    }
    free(order);
    return rc;
}

static int parse(struct mx_gguf *g, struct mx_err *err) {
    struct rd r = {g->base, g->size, 0, g->path, err, &g->arena};
    int rc;
    char nm[NAME_SHOW + 4];
    if (g->size < 4 || memcmp(g->base, "GGUF", 4) != 0)
        return mx_err_set(err, MX_EFORMAT, "%s: not a GGUF file (bad magic)", g->path);
    r.pos = 4;
    if ((rc = rd_u32(&r, &g->version, "header")) < 0)
        return rc;
    if (g->version == 1)
        return mx_err_set(err, MX_EUNSUP, "%s: GGUF version 1 is obsolete and not supported; "
                          "convert the model again with a current llama.cpp", g->path);
    if ((g->version & 0xffff) == 0 && g->version != 0)
        return mx_err_set(err, MX_EUNSUP, "%s: big-endian GGUF files are not supported",
                          g->path);
    if (g->version != 2 && g->version != 3)
        return mx_err_set(err, MX_EUNSUP, "%s: unsupported GGUF version %" PRIu32
                          " (2 and 3 are supported)", g->path, g->version);
    uint64_t n_tensors, n_kv;
    if ((rc = rd_u64(&r, &n_tensors, "header")) < 0 || (rc = rd_u64(&r, &n_kv, "header")) < 0)
        return rc;
    /* every key/value needs at least 13 bytes and every tensor info 32 */
    size_t left = r.size - r.pos;
    if (n_kv > left / 13 || n_kv > UINT32_MAX / 2)
        return mx_err_set(err, MX_EFORMAT, "%s: header claims %" PRIu64 " metadata pairs, more "
                          "than the %zu bytes left can hold", g->path, n_kv, left);
    if (n_tensors > left / 32 || n_tensors > UINT32_MAX / 2)
        return mx_err_set(err, MX_EFORMAT, "%s: header claims %" PRIu64 " tensors, more than "
                          "the %zu bytes left can hold", g->path, n_tensors, left);
    g->n_kv = (int64_t)n_kv;
    g->n_tensors = (int64_t)n_tensors;

    g->kvs = arena_alloc(&g->arena, (size_t)n_kv * sizeof *g->kvs + 1);
    g->tensors = arena_alloc(&g->arena, (size_t)n_tensors * sizeof *g->tensors + 1);
    if (!g->kvs || !g->tensors || index_init(&g->kv_ix, g->n_kv) < 0 ||
        index_init(&g->t_ix, g->n_tensors) < 0)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", g->path);

    for (int64_t i = 0; i < g->n_kv; i++) {
        struct kv *kv = &g->kvs[i];
        char what[40];
        snprintf(what, sizeof what, "metadata key %" PRId64, i);
        uint64_t len;
        uint32_t t;
        if ((rc = rd_str(&r, &kv->key, &len, what)) < 0)
            return rc;
        show(nm, sizeof nm, kv->key, (size_t)len);
        if (strlen(kv->key) != len)
            return mx_err_set(err, MX_EFORMAT, "%s: metadata key '%s' contains a NUL byte",
                              g->path, nm);
        if ((rc = rd_u32(&r, &t, what)) < 0)
            return rc;
        char kwhat[NAME_SHOW + 16];
        snprintf(kwhat, sizeof kwhat, "key '%s'", nm);
        if ((rc = rd_value(&r, t, 0, &kv->val, kwhat)) < 0)
            return rc;
        if (index_insert(&g->kv_ix, i, kv_name, g) >= 0)
            return mx_err_set(err, MX_EFORMAT, "%s: duplicate metadata key '%s'", g->path, nm);
    }
    if ((rc = read_alignment(g, err)) < 0)
        return rc;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        if ((rc = parse_tensor_info(g, &r, i)) < 0)
            return rc;
        if (index_insert(&g->t_ix, i, t_name, g) >= 0) {
            const char *s = g->tensors[i].name;
            return mx_err_set(err, MX_EFORMAT, "%s: duplicate tensor name '%s'", g->path,
                              show(nm, sizeof nm, s, strlen(s)));
        }
    }
    size_t pad = (g->alignment - r.pos % g->alignment) % g->alignment;
    g->data_offset = r.pos + pad;
    return place_tensors(g, err);
}

/* Builds the reader over base/size and validates it; frees everything on failure. */
static int open_common(const void *base, size_t size, bool mapped, const char *name,
                       struct mx_gguf **out, struct mx_err *err) {
    struct mx_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(name))) {
        free(g);
        if (mapped)
            mx_unmap_file(base, size);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", name);
    }
    g->base = base;
    g->size = size;
    g->mapped = mapped;
    int rc = parse(g, err);
    if (rc < 0) {
        mx_gguf_close(g);
        return rc;
    }
    *out = g;
    return 0;
}

/* ---- split files (llama.cpp's gguf-split: NAME-00001-of-0000N.gguf) ---------------------- */

#define MAX_SHARDS 9999

/* Copies the tensors of shard sh into g's table at *n (names into g's arena; data pointers stay
 * in the shared region). Returns 0 or MX_ENOMEM. */
static int add_shard_tensors(struct mx_gguf *g, const struct mx_gguf *sh, int64_t *n) {
    for (int64_t i = 0; i < sh->n_tensors; i++) {
        struct mx_gguf_tensor t = sh->tensors[i];
        size_t len = strlen(t.name) + 1;
        char *name = arena_alloc(&g->arena, len);
        if (!name)
            return MX_ENOMEM;
        memcpy(name, t.name, len);
        t.name = name;
        /* from the start of the first shard's data section: the model wraps the region from
         * there as one buffer */
        t.offset = (uint64_t)((const uint8_t *)t.data - (g->base + g->data_offset));
        g->tensors[(*n)++] = t;
    }
    return 0;
}

/* Opens the shards of a split model whose first shard (already parsed: first) is path, into
 * one region of address space, shard i at a page boundary after shard i-1, so that the whole
 * model is one buffer from the first data section on. The metadata is the first shard's; the
 * tensors are all shards' in order. Checks the names, split.no and split.count of every shard,
 * split.tensors.count and duplicate tensor names. */
static int open_split(const char *path, unsigned flags, const struct mx_gguf *first,
                      int64_t count, struct mx_gguf **out, struct mx_err *err) {
    char suffix[64];
    snprintf(suffix, sizeof suffix, "-%05d-of-%05d.gguf", 1, (int)MX_MIN(count, 99999));
    size_t plen = strlen(path), slen = strlen(suffix);
    if (count > MAX_SHARDS || plen < slen || strcmp(path + plen - slen, suffix) != 0)
        return mx_err_set(err, MX_EFORMAT, "%s: split.count %lld, but the name does not end in "
                          "%s (the first shard of a split model)", path, (long long)count,
                          suffix);
    int64_t no = 0;
    if (mx_gguf_get(first, "split.no") && mx_gguf_get_int(first, "split.no", &no, err) < 0)
        return err ? err->code : MX_EFORMAT;
    if (no != 0)
        return mx_err_set(err, MX_EFORMAT, "%s: split.no %lld, the first shard has 0", path,
                          (long long)no);
    long pg = sysconf(_SC_PAGESIZE);
    size_t page = pg > 0 ? (size_t)pg : 4096;
    char **paths = calloc((size_t)count, sizeof *paths);
    size_t *sizes = calloc((size_t)count, sizeof *sizes), *at = calloc((size_t)count, sizeof *at);
    struct mx_gguf **sh = calloc((size_t)count, sizeof *sh);
    struct mx_gguf *g = NULL;
    uint8_t *region = NULL;
    size_t total = 0;
    int rc = MX_ENOMEM;
    if (!paths || !sizes || !at || !sh) {
        mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int64_t i = 0; i < count; i++) {
        if (!(paths[i] = malloc(plen + 1))) {
            rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        memcpy(paths[i], path, plen - slen);
        snprintf(paths[i] + plen - slen, slen + 1, "-%05d-of-%05d.gguf", (int)i + 1, (int)count);
        struct stat st;
        if (stat(paths[i], &st) != 0 || !S_ISREG(st.st_mode)) {
            rc = mx_err_set(err, MX_ENOENT, "%s: shard %lld of %lld missing: %s", paths[i],
                            (long long)i + 1, (long long)count, strerror(errno ? errno : EINVAL));
            goto done;
        }
        sizes[i] = (size_t)st.st_size;
        at[i] = total;
        if (!mx_add_size(total, sizes[i] + page - 1, &total)) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: shard sizes overflow", path);
            goto done;
        }
        total &= ~(page - 1);
    }
    if (!(region = mx_map_reserve(total, path, err))) {
        rc = MX_ENOMEM;
        goto done;
    }
    int64_t n_tensors = 0;
    for (int64_t i = 0; i < count; i++) {
        if ((rc = mx_map_file_at(paths[i], flags, region + at[i], sizes[i], err)) < 0 ||
            (rc = mx_gguf_open_mem(region + at[i], sizes[i], paths[i], &sh[i], err)) < 0)
            goto done;
        int64_t c = 1, n = -1;
        if (!mx_gguf_get(sh[i], "split.count") || !mx_gguf_get(sh[i], "split.no") ||
            mx_gguf_get_int(sh[i], "split.count", &c, err) < 0 ||
            mx_gguf_get_int(sh[i], "split.no", &n, err) < 0 || c != count || n != i) {
            mx_err_clear(err);
            rc = mx_err_set(err, MX_EFORMAT, "%s: shard %lld of %lld says split.no %lld of "
                            "split.count %lld", paths[i], (long long)i + 1, (long long)count,
                            (long long)n, (long long)c);
            goto done;
        }
        n_tensors += sh[i]->n_tensors;
    }
    int64_t want = n_tensors;
    if (mx_gguf_get(sh[0], "split.tensors.count") &&
        (rc = mx_gguf_get_int(sh[0], "split.tensors.count", &want, err)) < 0)
        goto done;
    if (want != n_tensors) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: split.tensors.count %lld, the %lld shards hold "
                        "%lld", path, (long long)want, (long long)count, (long long)n_tensors);
        goto done;
    }
    /* the first shard's reader becomes the model's: its metadata, all tensors, the region */
    g = sh[0];
    sh[0] = NULL;
    free(g->path);
    if (!(g->path = strdup(path))) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    struct mx_gguf_tensor *ts = arena_alloc(&g->arena, (size_t)n_tensors * sizeof *ts);
    free(g->t_ix.slots);
    g->t_ix.slots = NULL;
    struct mx_gguf_tensor *own = g->tensors;
    int64_t n_own = g->n_tensors;
    if (!ts || index_init(&g->t_ix, n_tensors) < 0) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    struct mx_gguf first_view = *g;
    first_view.tensors = own;
    first_view.n_tensors = n_own;
    g->tensors = ts;
    int64_t n = 0;
    for (int64_t i = 0; i < count; i++)
        if ((rc = add_shard_tensors(g, i == 0 ? &first_view : sh[i], &n)) < 0) {
            mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
            goto done;
        }
    g->n_tensors = n;
    for (int64_t i = 0; i < n; i++)
        if (index_insert(&g->t_ix, i, t_name, g) >= 0) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: tensor '%.*s' is in two shards", path,
                            NAME_SHOW, g->tensors[i].name);
            goto done;
        }
    g->base = region;
    g->size = total;
    g->mapped = true;
    region = NULL; /* g owns it now */
    *out = g;
    g = NULL;
    rc = 0;
done:
    if (g) {
        g->mapped = false;
        mx_gguf_close(g);
    }
    for (int64_t i = 0; sh && i < count; i++)
        mx_gguf_close(sh[i]); /* readers over the region: they do not own it */
    if (region)
        mx_unmap_file(region, total);
    for (int64_t i = 0; paths && i < count; i++)
        free(paths[i]);
    free(paths);
    free(sizes);
    free(at);
    free(sh);
    return rc;
}

int mx_gguf_open(const char *path, struct mx_gguf **out, struct mx_err *err) {
    return mx_gguf_open_flags(path, 0, out, err);
}

int mx_gguf_open_flags(const char *path, unsigned flags, struct mx_gguf **out,
                       struct mx_err *err) {
    *out = NULL;
    const void *p;
    size_t size;
    int rc = mx_map_file_flags(path, 24, "GGUF", flags, &p, &size, err);
    if (rc < 0)
        return rc;
    if ((rc = open_common(p, size, true, path, out, err)) < 0)
        return rc;
    int64_t count = 1;
    if (mx_gguf_get(*out, "split.count") &&
        (rc = mx_gguf_get_int(*out, "split.count", &count, err)) < 0) {
        mx_gguf_close(*out);
        *out = NULL;
        return rc;
    }
    if (count <= 1)
        return 0;
    struct mx_gguf *first = *out;
    *out = NULL;
    rc = open_split(path, flags, first, count, out, err);
    mx_gguf_close(first);
    return rc;
}

int mx_gguf_open_mem(const void *buf, size_t size, const char *name, struct mx_gguf **out,
                     struct mx_err *err) {
    *out = NULL;
    if (!name)
        name = "(memory)";
    if (!buf && size)
        return mx_err_set(err, MX_EINVAL, "%s: NULL buffer", name);
    return open_common(buf ? buf : "", size, false, name, out, err);
}

void mx_gguf_close(struct mx_gguf *g) {
    if (!g)
        return;
    if (g->mapped)
        mx_unmap_file(g->base, g->size);
    arena_free(&g->arena);
    free(g->kv_ix.slots);
    free(g->t_ix.slots);
    free(g->path);
    free(g);
}

/* ---- accessors -------------------------------------------------------------------------- */

const char *mx_gguf_path(const struct mx_gguf *g) { return g->path; }
uint32_t mx_gguf_version(const struct mx_gguf *g) { return g->version; }
size_t mx_gguf_alignment(const struct mx_gguf *g) { return g->alignment; }
size_t mx_gguf_file_size(const struct mx_gguf *g) { return g->size; }
size_t mx_gguf_data_offset(const struct mx_gguf *g) { return g->data_offset; }
int64_t mx_gguf_n_kv(const struct mx_gguf *g) { return g->n_kv; }
int64_t mx_gguf_n_tensors(const struct mx_gguf *g) { return g->n_tensors; }

const char *mx_gguf_kv_key(const struct mx_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? g->kvs[i].key : NULL;
}

const struct mx_gguf_value *mx_gguf_kv_value(const struct mx_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_kv ? &g->kvs[i].val : NULL;
}

int64_t mx_gguf_find_key(const struct mx_gguf *g, const char *key) {
    return key ? index_find(&g->kv_ix, key, strlen(key), kv_name, g) : -1;
}

const struct mx_gguf_value *mx_gguf_get(const struct mx_gguf *g, const char *key) {
    int64_t i = mx_gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kvs[i].val;
}

const struct mx_gguf_tensor *mx_gguf_tensor(const struct mx_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const struct mx_gguf_tensor *mx_gguf_find_tensor(const struct mx_gguf *g, const char *name) {
    int64_t i = name ? index_find(&g->t_ix, name, strlen(name), t_name, g) : -1;
    return i < 0 ? NULL : &g->tensors[i];
}

const char *mx_gguf_vtype_name(int type) {
    static const char *const names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32",
                                        "float32", "bool", "string", "array", "uint64",
                                        "int64", "float64"};
    return type >= 0 && type < (int)MX_ARRAY_LEN(names) ? names[type] : "unknown";
}

static bool is_uint(int t) {
    return t == MX_GGUF_UINT8 || t == MX_GGUF_UINT16 || t == MX_GGUF_UINT32 ||
           t == MX_GGUF_UINT64;
}

static bool is_sint(int t) {
    return t == MX_GGUF_INT8 || t == MX_GGUF_INT16 || t == MX_GGUF_INT32 || t == MX_GGUF_INT64;
}

static int wrong_type(const struct mx_gguf *g, const char *key, const struct mx_gguf_value *v,
                      const char *want, struct mx_err *err) {
    return mx_err_set(err, MX_EFORMAT, "%s: key '%s' holds a %s, expected %s", g->path, key,
                      mx_gguf_vtype_name(v->type), want);
}

int mx_gguf_get_int(const struct mx_gguf *g, const char *key, int64_t *out, struct mx_err *err) {
    const struct mx_gguf_value *v = mx_gguf_get(g, key);
    if (!v)
        return MX_ENOENT;
    if (is_sint(v->type)) {
        *out = v->v.i64;
        return 0;
    }
    if (!is_uint(v->type))
        return wrong_type(g, key, v, "an integer", err);
    if (v->v.u64 > (uint64_t)INT64_MAX)
        return mx_err_set(err, MX_EFORMAT, "%s: key '%s' value %" PRIu64 " is too large",
                          g->path, key, v->v.u64);
    *out = (int64_t)v->v.u64;
    return 0;
}

int mx_gguf_get_u32(const struct mx_gguf *g, const char *key, uint32_t *out, struct mx_err *err) {
    int64_t x;
    int rc = mx_gguf_get_int(g, key, &x, err);
    if (rc < 0)
        return rc;
    if (x < 0 || x > UINT32_MAX)
        return mx_err_set(err, MX_EFORMAT, "%s: key '%s' value %" PRId64 " does not fit in "
                          "uint32", g->path, key, x);
    *out = (uint32_t)x;
    return 0;
}

int mx_gguf_get_float(const struct mx_gguf *g, const char *key, double *out,
                      struct mx_err *err) {
    const struct mx_gguf_value *v = mx_gguf_get(g, key);
    if (!v)
        return MX_ENOENT;
    if (v->type != MX_GGUF_FLOAT32 && v->type != MX_GGUF_FLOAT64)
        return wrong_type(g, key, v, "a float", err);
    *out = v->v.f64;
    return 0;
}

int mx_gguf_get_bool(const struct mx_gguf *g, const char *key, bool *out, struct mx_err *err) {
    const struct mx_gguf_value *v = mx_gguf_get(g, key);
    if (!v)
        return MX_ENOENT;
    if (v->type != MX_GGUF_BOOL)
        return wrong_type(g, key, v, "a bool", err);
    *out = v->v.b;
    return 0;
}

int mx_gguf_get_str(const struct mx_gguf *g, const char *key, const char **out,
                    struct mx_err *err) {
    const struct mx_gguf_value *v = mx_gguf_get(g, key);
    if (!v)
        return MX_ENOENT;
    if (v->type != MX_GGUF_STRING)
        return wrong_type(g, key, v, "a string", err);
    *out = v->v.str.data;
    return 0;
}

int mx_gguf_get_arr(const struct mx_gguf *g, const char *key, enum mx_gguf_vtype elem_type,
                    const struct mx_gguf_value **out, struct mx_err *err) {
    const struct mx_gguf_value *v = mx_gguf_get(g, key);
    if (!v)
        return MX_ENOENT;
    if (v->type != MX_GGUF_ARRAY)
        return wrong_type(g, key, v, "an array", err);
    if (v->v.arr.elem_type != elem_type)
        return mx_err_set(err, MX_EFORMAT, "%s: key '%s' is an array of %s, expected %s",
                          g->path, key, mx_gguf_vtype_name(v->v.arr.elem_type),
                          mx_gguf_vtype_name(elem_type));
    *out = v;
    return 0;
}

/* Element i of a numeric array decoded into a value (type = element type); false if arr is not
 * a numeric array or i is out of range. */
static bool arr_elem(const struct mx_gguf_value *arr, uint64_t i, struct mx_gguf_value *e) {
    if (!arr || arr->type != MX_GGUF_ARRAY || i >= arr->v.arr.n)
        return false;
    int sz = vtype_size(arr->v.arr.elem_type);
    if (sz <= 0 || !arr->v.arr.raw)
        return false;
    e->type = arr->v.arr.elem_type;
    decode_scalar((const uint8_t *)arr->v.arr.raw + i * (size_t)sz, e);
    return true;
}

double mx_gguf_arr_float(const struct mx_gguf_value *arr, uint64_t i) {
    struct mx_gguf_value e;
    if (!arr_elem(arr, i, &e))
        return 0.0;
    if (is_uint(e.type))
        return (double)e.v.u64;
    if (is_sint(e.type))
        return (double)e.v.i64;
    if (e.type == MX_GGUF_BOOL)
        return e.v.b;
    return e.v.f64;
}

int64_t mx_gguf_arr_int(const struct mx_gguf_value *arr, uint64_t i) {
    struct mx_gguf_value e;
    if (!arr_elem(arr, i, &e))
        return 0;
    if (is_uint(e.type))
        return (int64_t)e.v.u64;
    if (is_sint(e.type))
        return e.v.i64;
    if (e.type == MX_GGUF_BOOL)
        return e.v.b;
    /* float elements: truncated toward zero, saturated, NaN as 0 (never UB on file data) */
    if (!(e.v.f64 == e.v.f64))
        return 0;
    if (e.v.f64 >= 9223372036854775807.0)
        return INT64_MAX;
    if (e.v.f64 <= -9223372036854775808.0)
        return INT64_MIN;
    return (int64_t)e.v.f64;
}

/* ---- writer ----------------------------------------------------------------------------- */

struct wkv {
    char *key;                  /* owned */
    struct mx_gguf_value val;   /* owned deep copy (strings, raw, items all malloc'd) */
};

struct wtensor {
    char *name;                 /* owned */
    int type, n_dims;
    int64_t ne[MX_GGUF_MAX_DIMS];
    size_t nbytes;
    void *data;                 /* owned copy, nbytes */
};

struct mx_gguf_writer {
    struct wkv *kvs;
    size_t n_kv, cap_kv;
    struct wtensor *ts;
    size_t n_ts, cap_ts;
};

static void value_free(struct mx_gguf_value *v) {
    if (v->type == MX_GGUF_STRING) {
        free((void *)v->v.str.data);
    } else if (v->type == MX_GGUF_ARRAY) {
        free((void *)v->v.arr.raw);
        struct mx_gguf_value *items = (struct mx_gguf_value *)v->v.arr.items;
        if (items) {
            for (uint64_t i = 0; i < v->v.arr.n; i++)
                value_free(&items[i]);
            free(items);
        }
    }
    memset(v, 0, sizeof *v);
}

/* Deep-copies src into dst (dst owns malloc'd parts). MX_EINVAL for a malformed tree. */
static int value_copy(struct mx_gguf_value *dst, const struct mx_gguf_value *src, int depth) {
    memset(dst, 0, sizeof *dst);
    int sz = vtype_size(src->type);
    if (sz < 0)
        return MX_EINVAL;
    dst->type = src->type;
    if (sz > 0) {
        dst->v = src->v;
        return 0;
    }
    if (src->type == MX_GGUF_STRING) {
        if (!src->v.str.data && src->v.str.len)
            return MX_EINVAL;
        char *s = malloc((size_t)src->v.str.len + 1);
        if (!s)
            return MX_ENOMEM;
        if (src->v.str.len)
            memcpy(s, src->v.str.data, (size_t)src->v.str.len);
        s[src->v.str.len] = '\0';
        dst->v.str.data = s;
        dst->v.str.len = src->v.str.len;
        return 0;
    }
    if (depth >= MAX_DEPTH)
        return MX_EINVAL;
    int et = src->v.arr.elem_type, esz = vtype_size((uint32_t)et);
    uint64_t n = src->v.arr.n;
    if (esz < 0)
        return MX_EINVAL;
    dst->v.arr.elem_type = (enum mx_gguf_vtype)et;
    if (esz > 0) {
        size_t bytes;
        if (!mx_mul_size((size_t)n, (size_t)esz, &bytes))
            return MX_ENOMEM;
        if (n && !src->v.arr.raw)
            return MX_EINVAL;
        void *raw = malloc(bytes ? bytes : 1);
        if (!raw)
            return MX_ENOMEM;
        if (bytes)
            memcpy(raw, src->v.arr.raw, bytes);
        dst->v.arr.raw = raw;
        dst->v.arr.n = n;
        return 0;
    }
    if (n && !src->v.arr.items)
        return MX_EINVAL;
    if (n == 0)
        return 0;
    struct mx_gguf_value *items = calloc((size_t)n, sizeof *items);
    if (!items)
        return MX_ENOMEM;
    dst->v.arr.items = items;
    for (uint64_t i = 0; i < n; i++) {
        if (src->v.arr.items[i].type != (enum mx_gguf_vtype)et)
            return dst->v.arr.n = i, MX_EINVAL;
        int rc = value_copy(&items[i], &src->v.arr.items[i], depth + 1);
        if (rc < 0)
            return dst->v.arr.n = i + 1, rc;
    }
    dst->v.arr.n = n;
    return 0;
}

struct mx_gguf_writer *mx_gguf_writer_new(void) {
    return calloc(1, sizeof(struct mx_gguf_writer));
}

void mx_gguf_writer_free(struct mx_gguf_writer *w) {
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        value_free(&w->kvs[i].val);
    }
    for (size_t i = 0; i < w->n_ts; i++) {
        free(w->ts[i].name);
        free(w->ts[i].data);
    }
    free(w->kvs);
    free(w->ts);
    free(w);
}

int mx_gguf_writer_set_value(struct mx_gguf_writer *w, const char *key,
                             const struct mx_gguf_value *v) {
    if (!w || !key || !v)
        return MX_EINVAL;
    struct mx_gguf_value copy;
    int rc = value_copy(&copy, v, 0);
    if (rc < 0) {
        value_free(&copy);
        return rc;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            value_free(&w->kvs[i].val);
            w->kvs[i].val = copy;
            return 0;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        struct wkv *k = realloc(w->kvs, cap * sizeof *k);
        if (!k) {
            value_free(&copy);
            return MX_ENOMEM;
        }
        w->kvs = k;
        w->cap_kv = cap;
    }
    char *kc = strdup(key);
    if (!kc) {
        value_free(&copy);
        return MX_ENOMEM;
    }
    w->kvs[w->n_kv].key = kc;
    w->kvs[w->n_kv].val = copy;
    w->n_kv++;
    return 0;
}

#define MX_SETTER(suffix, ctype, vt, field)                                                   \
    int mx_gguf_writer_set_##suffix(struct mx_gguf_writer *w, const char *key, ctype v) {     \
        struct mx_gguf_value val = {.type = vt};                                              \
        val.v.field = v;                                                                      \
        return mx_gguf_writer_set_value(w, key, &val);                                        \
    }
MX_SETTER(u8, uint8_t, MX_GGUF_UINT8, u64)
MX_SETTER(i8, int8_t, MX_GGUF_INT8, i64)
MX_SETTER(u16, uint16_t, MX_GGUF_UINT16, u64)
MX_SETTER(i16, int16_t, MX_GGUF_INT16, i64)
MX_SETTER(u32, uint32_t, MX_GGUF_UINT32, u64)
MX_SETTER(i32, int32_t, MX_GGUF_INT32, i64)
MX_SETTER(u64, uint64_t, MX_GGUF_UINT64, u64)
MX_SETTER(i64, int64_t, MX_GGUF_INT64, i64)
MX_SETTER(f32, float, MX_GGUF_FLOAT32, f64)
MX_SETTER(f64, double, MX_GGUF_FLOAT64, f64)
MX_SETTER(bool, bool, MX_GGUF_BOOL, b)
#undef MX_SETTER

int mx_gguf_writer_set_str(struct mx_gguf_writer *w, const char *key, const char *v) {
    if (!v)
        return MX_EINVAL;
    struct mx_gguf_value val = {.type = MX_GGUF_STRING};
    val.v.str.data = v;
    val.v.str.len = strlen(v);
    return mx_gguf_writer_set_value(w, key, &val);
}

int mx_gguf_writer_set_arr(struct mx_gguf_writer *w, const char *key, enum mx_gguf_vtype elem_type,
                           const void *data, uint64_t n) {
    if (vtype_size(elem_type) <= 0)
        return MX_EINVAL;
    struct mx_gguf_value val = {.type = MX_GGUF_ARRAY};
    val.v.arr.elem_type = elem_type;
    val.v.arr.n = n;
    val.v.arr.raw = data;
    return mx_gguf_writer_set_value(w, key, &val);
}

int mx_gguf_writer_set_arr_str(struct mx_gguf_writer *w, const char *key,
                               const char *const *strs, uint64_t n) {
    if (n && !strs)
        return MX_EINVAL;
    struct mx_gguf_value *items = n ? calloc((size_t)n, sizeof *items) : NULL;
    if (n && !items)
        return MX_ENOMEM;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i]) {
            free(items);
            return MX_EINVAL;
        }
        items[i].type = MX_GGUF_STRING;
        items[i].v.str.data = strs[i];
        items[i].v.str.len = strlen(strs[i]);
    }
    struct mx_gguf_value val = {.type = MX_GGUF_ARRAY};
    val.v.arr.elem_type = MX_GGUF_STRING;
    val.v.arr.n = n;
    val.v.arr.items = items;
    int rc = mx_gguf_writer_set_value(w, key, &val);
    free(items);
    return rc;
}

int mx_gguf_writer_add_tensor(struct mx_gguf_writer *w, const char *name, int type, int n_dims,
                              const int64_t *ne, const void *data) {
    if (!w || !name || !ne || n_dims < 1 || n_dims > MX_GGUF_MAX_DIMS)
        return MX_EINVAL;
    struct wtensor t = {.type = type, .n_dims = n_dims};
    for (int d = 0; d < MX_GGUF_MAX_DIMS; d++)
        t.ne[d] = d < n_dims ? ne[d] : 1;
    size_t nb;
    for (int d = 0; d < MX_GGUF_MAX_DIMS; d++)
        if (t.ne[d] < 0)
            return MX_EINVAL;
    if (!mx_row_size(type, t.ne[0], &nb) || !mx_mul_size(nb, (size_t)t.ne[1], &nb) ||
        !mx_mul_size(nb, (size_t)t.ne[2], &nb) || !mx_mul_size(nb, (size_t)t.ne[3], &nb))
        return MX_EINVAL;
    if (nb && !data)
        return MX_EINVAL;
    for (size_t i = 0; i < w->n_ts; i++)
        if (strcmp(w->ts[i].name, name) == 0)
            return MX_EINVAL;
    if (w->n_ts == w->cap_ts) {
        size_t cap = w->cap_ts ? w->cap_ts * 2 : 16;
        struct wtensor *ts = realloc(w->ts, cap * sizeof *ts);
        if (!ts)
            return MX_ENOMEM;
        w->ts = ts;
        w->cap_ts = cap;
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
    w->ts[w->n_ts++] = t;
    return 0;
}

/* Growable output buffer; `failed` makes every later put a no-op after out of memory. */
struct obuf {
    uint8_t *p;
    size_t n, cap;
    bool failed;
};

static void put(struct obuf *b, const void *src, size_t n) {
    if (b->failed)
        return;
    if (b->cap - b->n < n) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) {
                b->failed = true;
                return;
            }
            cap *= 2;
        }
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u32(struct obuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(struct obuf *b, uint64_t v) { put(b, &v, 8); }

static void put_str(struct obuf *b, const char *s, uint64_t len) {
    put_u64(b, len);
    put(b, s, (size_t)len);
}

static void put_pad(struct obuf *b, size_t align) {
    static const uint8_t zeros[64];
    size_t pad = (align - b->n % align) % align;
    while (pad > 0) {
        size_t k = MX_MIN(pad, sizeof zeros);
        put(b, zeros, k);
        pad -= k;
    }
}

/* Encodes the payload of v (not its type tag) as the file stores it. */
static void put_value(struct obuf *b, const struct mx_gguf_value *v) {
    uint8_t x[8];
    switch (v->type) {
    case MX_GGUF_UINT8: x[0] = (uint8_t)v->v.u64; put(b, x, 1); break;
    case MX_GGUF_INT8: x[0] = (uint8_t)(int8_t)v->v.i64; put(b, x, 1); break;
    case MX_GGUF_BOOL: x[0] = v->v.b ? 1 : 0; put(b, x, 1); break;
    case MX_GGUF_UINT16: { uint16_t y = (uint16_t)v->v.u64; put(b, &y, 2); break; }
    case MX_GGUF_INT16: { int16_t y = (int16_t)v->v.i64; put(b, &y, 2); break; }
    case MX_GGUF_UINT32: put_u32(b, (uint32_t)v->v.u64); break;
    case MX_GGUF_INT32: { int32_t y = (int32_t)v->v.i64; put(b, &y, 4); break; }
    case MX_GGUF_FLOAT32: { float y = (float)v->v.f64; put(b, &y, 4); break; }
    case MX_GGUF_UINT64: put_u64(b, v->v.u64); break;
    case MX_GGUF_INT64: put(b, &v->v.i64, 8); break;
    case MX_GGUF_FLOAT64: put(b, &v->v.f64, 8); break;
    case MX_GGUF_STRING: put_str(b, v->v.str.data, v->v.str.len); break;
    case MX_GGUF_ARRAY: {
        int esz = vtype_size(v->v.arr.elem_type);
        put_u32(b, (uint32_t)v->v.arr.elem_type);
        put_u64(b, v->v.arr.n);
        if (esz > 0) {
            put(b, v->v.arr.raw, (size_t)v->v.arr.n * (size_t)esz);
        } else {
            for (uint64_t i = 0; i < v->v.arr.n; i++) {
                if (v->v.arr.elem_type == MX_GGUF_ARRAY)
                    put_value(b, &v->v.arr.items[i]);
                else
                    put_str(b, v->v.arr.items[i].v.str.data, v->v.arr.items[i].v.str.len);
            }
        }
        break;
    }
    }
}

/* The writer's alignment: general.alignment when set (checked), else the default. */
static int writer_alignment(const struct mx_gguf_writer *w, size_t *out, struct mx_err *err) {
    *out = MX_GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0)
            continue;
        const struct mx_gguf_value *v = &w->kvs[i].val;
        int64_t a = is_uint(v->type) ? (int64_t)MX_MIN(v->v.u64, (uint64_t)INT64_MAX)
                  : is_sint(v->type) ? v->v.i64 : -1;
        if (a <= 0 || (a & (a - 1)) != 0 || a > ((int64_t)1 << 30))
            return mx_err_set(err, MX_EINVAL, "gguf writer: general.alignment must be a "
                              "power-of-two integer between 1 and 2^30");
        *out = (size_t)a;
    }
    return 0;
}

int mx_gguf_writer_write_mem(struct mx_gguf_writer *w, uint32_t version, void **buf, size_t *size,
                             struct mx_err *err) {
    *buf = NULL;
    *size = 0;
    if (version != 2 && version != 3)
        return mx_err_set(err, MX_EINVAL, "gguf writer: version %" PRIu32 " (2 or 3 only)",
                          version);
    size_t align;
    int rc = writer_alignment(w, &align, err);
    if (rc < 0)
        return rc;
    struct obuf b = {0};
    put(&b, "GGUF", 4);
    put_u32(&b, version);
    put_u64(&b, w->n_ts);
    put_u64(&b, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&b, w->kvs[i].key, strlen(w->kvs[i].key));
        put_u32(&b, (uint32_t)w->kvs[i].val.type);
        put_value(&b, &w->kvs[i].val);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_ts; i++) {
        const struct wtensor *t = &w->ts[i];
        put_str(&b, t->name, strlen(t->name));
        put_u32(&b, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            put_u64(&b, (uint64_t)t->ne[d]);
        put_u32(&b, (uint32_t)t->type);
        put_u64(&b, off);
        off += (t->nbytes + align - 1) / align * align;
    }
    put_pad(&b, align);
    for (size_t i = 0; i < w->n_ts; i++) {
        put(&b, w->ts[i].data, w->ts[i].nbytes);
        put_pad(&b, align);
    }
    if (b.failed) {
        free(b.p);
        return mx_err_set(err, MX_ENOMEM, "gguf writer: out of memory");
    }
    *buf = b.p;
    *size = b.n;
    return 0;
}

int mx_gguf_writer_write(struct mx_gguf_writer *w, const char *path, uint32_t version,
                         struct mx_err *err) {
    void *buf;
    size_t size;
    int rc = mx_gguf_writer_write_mem(w, version, &buf, &size, err);
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
    (void)fchmod(fd, 0644); /* mkstemp makes 0600; a model file is an ordinary readable file */
    const uint8_t *p = buf;
    size_t left = size;
    while (left > 0) {
        ssize_t k = write(fd, p, left);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            rc = mx_err_set(err, MX_EIO, "%s: write: %s", tmp, strerror(k < 0 ? errno : EIO));
            break;
        }
        p += k;
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
