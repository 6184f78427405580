/* imatrix.c - reading llama.cpp's importance matrices (GGUF and legacy .dat); see imatrix.h.
 *
 * Workload: one file per `mixel quantize` run, up to a few hundred MB for a big MoE model (every
 * expert's columns); it is read into memory once and normalised into one float array per entry.
 *
 * Ref: llama.cpp common/imatrix-loader.cpp and tools/quantize/quantize.cpp (load_imatrix), read to
 * learn the formats and the normalisation; rewritten with the checks an untrusted file needs.
 */
#include "core/format/imatrix.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/readfile.h"
#include "core/base/util.h"
#include "core/format/gguf.h"
#include "core/base/quant.h"

/* Longest tensor name accepted in a legacy file (GGUF's own reader has its limits). */
#define MAX_NAME 4096

void mx_imatrix_free(struct mx_imatrix *m) {
    if (!m)
        return;
    for (int64_t i = 0; i < m->n_entries; i++) {
        free(m->entries[i].name);
        free(m->entries[i].values);
    }
    free(m->entries);
    free(m->dataset);
    free(m);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const struct mx_imatrix_entry *)a)->name,
                  ((const struct mx_imatrix_entry *)b)->name);
}

/* Sorts the entries and refuses a name that appears twice (llama.cpp would silently keep the
 * last one). Returns 0 or MX_EFORMAT. */
static int sort_entries(struct mx_imatrix *m, const char *what, struct mx_err *err) {
    qsort(m->entries, (size_t)m->n_entries, sizeof *m->entries, by_name);
    for (int64_t i = 1; i < m->n_entries; i++)
        if (strcmp(m->entries[i - 1].name, m->entries[i].name) == 0)
            return mx_err_set(err, MX_EFORMAT, "%s: entry '%.120s' appears twice", what,
                              m->entries[i].name);
    return 0;
}

/* Refuses values that cannot be mean squared activations: NaN, infinities, negatives. */
static int check_values(const float *v, int64_t n, const char *what, const char *name,
                        struct mx_err *err) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]) || v[i] < 0)
            return mx_err_set(err, MX_EFORMAT, "%s: entry '%.120s': value %" PRId64 " is %g (a "
                              "mean squared activation must be finite and >= 0)", what, name, i,
                              (double)v[i]);
    return 0;
}

/* A little-endian cursor over the legacy file. */
struct cur {
    const uint8_t *p;
    size_t n, off;
};

static bool take(struct cur *c, void *dst, size_t n) {
    if (c->n - c->off < n)
        return false;
    memcpy(dst, c->p + c->off, n);
    c->off += n;
    return true;
}

static bool take_i32(struct cur *c, int32_t *v) {
    uint8_t b[4];
    if (!take(c, b, 4))
        return false;
    *v = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                   (uint32_t)b[3] << 24);
    return true;
}

static int parse_legacy(const uint8_t *buf, size_t size, const char *what, struct mx_imatrix *m,
                        struct mx_err *err) {
    struct cur c = {buf, size, 0};
    int32_t n_entries;
    if (!take_i32(&c, &n_entries) || n_entries < 1)
        return mx_err_set(err, MX_EFORMAT, "%s: not an importance matrix (no entries: neither "
                          "GGUF nor a legacy .dat with an entry count >= 1)", what);
    /* each entry needs at least 12 header bytes and one value */
    if ((size_t)n_entries > (size - 4) / 16)
        return mx_err_set(err, MX_EFORMAT, "%s: %" PRId32 " entries cannot fit in %zu bytes "
                          "(truncated or not an imatrix)", what, n_entries, size);
    m->legacy = true;
    m->entries = calloc((size_t)n_entries, sizeof *m->entries);
    if (!m->entries)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", what);
    for (int32_t i = 0; i < n_entries; i++) {
        struct mx_imatrix_entry *e = &m->entries[i];
        int32_t len, ncall, nval;
        if (!take_i32(&c, &len))
            return mx_err_set(err, MX_EFORMAT, "%s: truncated at entry %" PRId32 " of %" PRId32,
                              what, i + 1, n_entries);
        if (len < 1 || len > MAX_NAME)
            return mx_err_set(err, MX_EFORMAT, "%s: entry %" PRId32 ": name length %" PRId32
                              " outside 1..%d", what, i + 1, len, MAX_NAME);
        e->name = malloc((size_t)len + 1);
        if (!e->name)
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory", what);
        m->n_entries = i + 1; /* from here the entry is freed with the rest */
        if (!take(&c, e->name, (size_t)len))
            return mx_err_set(err, MX_EFORMAT, "%s: entry %" PRId32 ": truncated name", what,
                              i + 1);
        e->name[len] = 0;
        if (strlen(e->name) != (size_t)len)
            return mx_err_set(err, MX_EFORMAT, "%s: entry %" PRId32 ": NUL byte inside the name",
                              what, i + 1);
        if (!take_i32(&c, &ncall) || !take_i32(&c, &nval))
            return mx_err_set(err, MX_EFORMAT, "%s: entry '%.120s': truncated header", what,
                              e->name);
        if (ncall < 0)
            return mx_err_set(err, MX_EFORMAT, "%s: entry '%.120s': negative call count %" PRId32,
                              what, e->name, ncall);
        if (nval < 1)
            return mx_err_set(err, MX_EFORMAT, "%s: entry '%.120s': %" PRId32 " values (need "
                              ">= 1)", what, e->name, nval);
        if ((size_t)nval > (c.n - c.off) / 4)
            return mx_err_set(err, MX_EFORMAT, "%s: entry '%.120s': %" PRId32 " values but only "
                              "%zu bytes left (truncated)", what, e->name, nval, c.n - c.off);
        e->values = malloc((size_t)nval * sizeof(float));
        if (!e->values)
            return mx_err_set(err, MX_ENOMEM, "%s: out of memory (%" PRId32 " values)", what,
                              nval);
        take(&c, e->values, (size_t)nval * sizeof(float));
        e->n_values = nval;
        e->n_mat = 1;
        int rc = check_values(e->values, nval, what, e->name, err);
        if (rc < 0)
            return rc;
        if (ncall > 0) /* stored as (sum / count) * ncall: back to the mean */
            for (int32_t k = 0; k < nval; k++)
                e->values[k] = e->values[k] / (float)ncall;
    }
    /* optional trailer: chunk count, then the dataset's name */
    if (c.off < c.n) {
        int32_t chunks, len;
        if (!take_i32(&c, &chunks) || chunks < 0)
            return mx_err_set(err, MX_EFORMAT, "%s: bad chunk count after the entries", what);
        m->chunk_count = chunks;
        if (c.off < c.n) {
            if (!take_i32(&c, &len) || len < 0 || len > MAX_NAME || (size_t)len > c.n - c.off)
                return mx_err_set(err, MX_EFORMAT, "%s: bad or truncated dataset name after the "
                                  "entries", what);
            if (len > 0) {
                m->dataset = malloc((size_t)len + 1);
                if (!m->dataset)
                    return mx_err_set(err, MX_ENOMEM, "%s: out of memory", what);
                take(&c, m->dataset, (size_t)len);
                m->dataset[len] = 0;
            }
            if (c.off != c.n)
                return mx_err_set(err, MX_EFORMAT, "%s: %zu unexpected bytes after the dataset "
                                  "name", what, c.n - c.off);
        }
    }
    return sort_entries(m, what, err);
}

/* Strips suffix from name into out (size cap); false when name does not end with it. */
static bool base_name(const char *name, const char *suffix, char *out, size_t cap) {
    size_t n = strlen(name), s = strlen(suffix);
    if (n <= s || strcmp(name + n - s, suffix) != 0 || n - s >= cap)
        return false;
    memcpy(out, name, n - s);
    out[n - s] = 0;
    return true;
}

static int parse_gguf(const uint8_t *buf, size_t size, const char *what, struct mx_imatrix *m,
                      struct mx_err *err) {
    struct mx_gguf *g = NULL;
    int rc = mx_gguf_open_mem(buf, size, what, &g, err);
    if (rc < 0)
        return rc;
    if (!mx_gguf_get(g, "imatrix.datasets") || !mx_gguf_get(g, "imatrix.chunk_count") ||
        !mx_gguf_get(g, "imatrix.chunk_size")) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: GGUF without the imatrix metadata (imatrix."
                        "datasets, imatrix.chunk_count, imatrix.chunk_size): not an importance "
                        "matrix (llama-quantize refuses it too)", what);
        goto done;
    }
    uint32_t u;
    if (mx_gguf_get_u32(g, "imatrix.chunk_count", &u, NULL) == 0 && u <= INT32_MAX)
        m->chunk_count = (int32_t)u;
    if (mx_gguf_get_u32(g, "imatrix.chunk_size", &u, NULL) == 0 && u <= INT32_MAX)
        m->chunk_size = (int32_t)u;
    const struct mx_gguf_value *ds = mx_gguf_get(g, "imatrix.datasets");
    if (ds->type == MX_GGUF_ARRAY && ds->v.arr.elem_type == MX_GGUF_STRING && ds->v.arr.n > 0) {
        m->dataset = strndup(ds->v.arr.items[0].v.str.data,
                                (size_t)ds->v.arr.items[0].v.str.len);
        if (!m->dataset) {
            rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", what);
            goto done;
        }
    }
    int64_t nt = mx_gguf_n_tensors(g);
    m->entries = calloc((size_t)(nt ? nt : 1), sizeof *m->entries);
    if (!m->entries) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", what);
        goto done;
    }
    char base[512];
    for (int64_t i = 0; i < nt && rc == 0; i++) {
        const struct mx_gguf_tensor *s = mx_gguf_tensor(g, i);
        if (!base_name(s->name, ".in_sum2", base, sizeof base)) {
            char other[512];
            if (base_name(s->name, ".counts", other, sizeof other)) {
                size_t bl = strlen(other);
                memcpy(other + bl, ".in_sum2", 9);
                if (!mx_gguf_find_tensor(g, other))
                    rc = mx_err_set(err, MX_EFORMAT, "%s: '%.120s' has no matching .in_sum2 "
                                    "tensor", what, s->name);
            }
            continue; /* other tensors are not importance data (llama.cpp ignores them too) */
        }
        char cname[520];
        snprintf(cname, sizeof cname, "%s.counts", base);
        const struct mx_gguf_tensor *c = mx_gguf_find_tensor(g, cname);
        if (!c) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: '%.120s' has no matching .counts tensor", what,
                            s->name);
            break;
        }
        if (s->type != MX_TYPE_F32 || c->type != MX_TYPE_F32) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: '%.120s': sums and counts must be F32 (are %s "
                            "and %s)", what, base, mx_type_name(s->type), mx_type_name(c->type));
            break;
        }
        int64_t n_per_row = s->ne[0], n_mat = s->ne[1] * s->ne[2] * s->ne[3];
        int64_t n_counts = c->ne[0] * c->ne[1] * c->ne[2] * c->ne[3];
        if (n_counts != n_mat || c->ne[0] != 1 || n_per_row < 1) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: '%.120s': %" PRId64 " counts for %" PRId64
                            " rows of sums (%" PRId64 " x %" PRId64 "); they must match", what,
                            base, n_counts, n_mat, n_per_row, n_mat);
            break;
        }
        struct mx_imatrix_entry *e = &m->entries[m->n_entries];
        e->name = strdup(base);
        e->values = malloc((size_t)(n_per_row * n_mat) * sizeof(float));
        m->n_entries++;
        if (!e->name || !e->values) {
            rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", what);
            break;
        }
        e->n_values = n_per_row * n_mat;
        e->n_mat = n_mat;
        const float *sums = s->data, *cnt = c->data;
        memcpy(e->values, sums, (size_t)e->n_values * sizeof(float));
        rc = check_values(e->values, e->n_values, what, base, err);
        for (int64_t j = 0; j < n_mat && rc == 0; j++) {
            float cf;
            memcpy(&cf, &cnt[j], sizeof cf);
            if (!isfinite(cf) || cf < 0 || cf > 9.0e18f) {
                rc = mx_err_set(err, MX_EFORMAT, "%s: '%.120s': count %" PRId64 " is %g", what,
                                base, j, (double)cf);
                break;
            }
            /* llama.cpp rounds the count to an integer, then divides in float */
            const float count = (float)llroundf(cf);
            float *v = e->values + j * n_per_row;
            for (int64_t k = 0; k < n_per_row; k++)
                v[k] = count > 0.0f ? v[k] / count : 1.0f;
        }
    }
    if (rc == 0 && m->n_entries == 0)
        rc = mx_err_set(err, MX_EFORMAT, "%s: no importance data (no '<name>.in_sum2' tensors)",
                        what);
    if (rc == 0)
        rc = sort_entries(m, what, err);
done:
    mx_gguf_close(g);
    return rc;
}

int mx_imatrix_parse(const void *buf, size_t size, const char *name, struct mx_imatrix **out,
                     struct mx_err *err) {
    *out = NULL;
    const char *what = name ? name : "imatrix";
    struct mx_imatrix *m = calloc(1, sizeof *m);
    if (!m)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", what);
    int rc;
    if (size >= 4 && memcmp(buf, "GGUF", 4) == 0)
        rc = parse_gguf(buf, size, what, m, err);
    else
        rc = parse_legacy(buf, size, what, m, err);
    if (rc < 0) {
        mx_imatrix_free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int mx_imatrix_load(const char *path, struct mx_imatrix **out, struct mx_err *err) {
    char *buf = NULL;
    size_t n = 0;
    *out = NULL;
    int rc = mx_read_file(path, 0, &buf, &n, err);
    if (rc < 0)
        return rc;
    rc = mx_imatrix_parse(buf, n, path, out, err);
    free(buf);
    return rc;
}

const struct mx_imatrix_entry *mx_imatrix_find(const struct mx_imatrix *m, const char *name) {
    if (!m || !name || m->n_entries == 0)
        return NULL;
    struct mx_imatrix_entry key = {.name = (char *)name};
    return bsearch(&key, m->entries, (size_t)m->n_entries, sizeof key, by_name);
}

static bool contains_any(const char *name, const char *const *subs, int n) {
    for (int i = 0; i < n; i++)
        if (strstr(name, subs[i]))
            return true;
    return false;
}

void mx_imatrix_filter(struct mx_imatrix *m, const char *const *include, int n_include,
                       const char *const *exclude, int n_exclude) {
    if (!m)
        return;
    int64_t k = 0;
    for (int64_t i = 0; i < m->n_entries; i++) {
        struct mx_imatrix_entry *e = &m->entries[i];
        bool keep = !contains_any(e->name, exclude, n_exclude) &&
                    (n_include == 0 || contains_any(e->name, include, n_include));
        if (keep) {
            m->entries[k++] = *e;
        } else {
            free(e->name);
            free(e->values);
        }
    }
    m->n_entries = k;
}
