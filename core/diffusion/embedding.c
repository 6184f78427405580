/* embedding.c - textual-inversion embedding files and folders of them (see embedding.h).
 *
 * Embedding files are small (a few KB; SDXL ones ~100 KB), so a file is read whole (its SHA-256
 * is A1111's hash anyway), parsed by the safetensors reader from memory and its vectors copied
 * to F32. Folders are listed once per set; files are read only when a prompt calls them.
 * Ref: https://github.com/AUTOMATIC1111/stable-diffusion-webui/blob/v1.10.1/modules/textual_inversion/textual_inversion.py
 */
#include "core/diffusion/embedding.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/quant.h"
#include "core/base/readfile.h"
#include "core/base/sha256.h"
#include "core/base/util.h"
#include "core/format/safetensors.h"

#define MAX_FILE_BYTES ((size_t)64 << 20) /* far above any embedding; bounds a wrong file */

void mx_sd_embedding_free(struct mx_sd_embedding *e) {
    if (!e)
        return;
    free(e->name);
    free(e->path);
    free(e->vec);
    free(e->vec_g);
    free(e);
}

/* True when s[0, n) ends in suffix (lower case; s compared ASCII case-insensitively). */
static bool ends_with(const char *s, size_t n, const char *suffix) {
    size_t k = strlen(suffix);
    if (n < k)
        return false;
    for (size_t i = 0; i < k; i++) {
        char a = s[n - k + i], b = suffix[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

/* True for the extensions of pickled PyTorch files (never read). */
static bool is_pickle(const char *s, size_t n) {
    return ends_with(s, n, ".pt") || ends_with(s, n, ".bin") || ends_with(s, n, ".ckpt") ||
           ends_with(s, n, ".pth");
}

/* The stem of path: no folder, no extension (caller frees). */
static char *stem_of(const char *path) {
    const char *b = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    size_t n = strlen(b);
    const char *dot = strrchr(b, '.');
    if (dot && dot != b)
        n = (size_t)(dot - b);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, b, n);
        s[n] = '\0';
    }
    return s;
}

/* Copies tensor t ([n, dim] or [dim]) to F32 into *vec, checking the shape. */
static int take_vectors(const char *label, const struct mx_st_tensor *t, int64_t *n_vec,
                        int64_t *dim, float **vec, struct mx_err *err) {
    int type = mx_st_dtype_to_type(t->dtype);
    const struct mx_type_traits *tr = type >= 0 ? mx_type_traits(type) : NULL;
    if (!mx_st_dtype_is_float(t->dtype) || !tr || !tr->to_float)
        return mx_err_set(err, MX_EFORMAT, "%s: '%s' is %s, expected F32, F16 or BF16", label,
                          t->name, mx_st_dtype_name(t->dtype));
    int64_t n = t->n_dims == 2 ? t->shape[0] : 1, d = t->shape[t->n_dims == 2 ? 1 : 0];
    if ((t->n_dims != 1 && t->n_dims != 2) || n < 1 || n > MX_SD_EMB_MAX_VECTORS || d < 1 ||
        d > MX_SD_EMB_MAX_DIM) {
        char sh[96];
        size_t o = (size_t)snprintf(sh, sizeof sh, "[");
        for (int i = 0; i < t->n_dims && o < sizeof sh; i++)
            o += (size_t)snprintf(sh + o, sizeof sh - o, "%s%lld", i ? ", " : "",
                                  (long long)t->shape[i]);
        if (o < sizeof sh)
            snprintf(sh + o, sizeof sh - o, "]");
        return mx_err_set(err, MX_EFORMAT, "%s: '%s' has shape %s, expected [n, dim] with 1 to "
                          "%d vectors of 1 to %d values", label, t->name, sh,
                          MX_SD_EMB_MAX_VECTORS, MX_SD_EMB_MAX_DIM);
    }
    *vec = malloc((size_t)(n * d) * sizeof **vec);
    if (!*vec)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", label);
    tr->to_float(t->data, *vec, n * d);
    *n_vec = n;
    *dim = d;
    return 0;
}

/* Parses the safetensors bytes buf into e (name and path already set). */
static int parse(const void *buf, size_t size, const char *label, struct mx_sd_embedding *e,
                 struct mx_err *err) {
    struct mx_st *st = NULL;
    int rc = mx_st_open_mem(buf, size, label, &st, err);
    if (rc < 0)
        return rc;
    const struct mx_st_tensor *main = NULL, *g = NULL;
    int64_t nt = mx_st_n_tensors(st);
    for (int64_t i = 0; i < nt && !main; i++) {
        const struct mx_st_tensor *t = mx_st_tensor(st, i);
        if (!strncmp(t->name, "string_to_param.", 16))
            main = t;
    }
    if (!main) {
        const struct mx_st_tensor *l = mx_st_find_tensor(st, "clip_l");
        g = mx_st_find_tensor(st, "clip_g");
        if (l && g)
            main = l;
        else if (nt == 1)
            main = mx_st_tensor(st, 0), g = NULL;
        else
            g = NULL;
    }
    if (!main) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: not a textual-inversion embedding (%lld tensors; "
                        "expected string_to_param.*, clip_l + clip_g, or a single tensor such "
                        "as emb_params)", label, (long long)nt);
        goto done;
    }
    if ((rc = take_vectors(label, main, &e->n_vec, &e->dim, &e->vec, err)) < 0)
        goto done;
    if (g) {
        int64_t ng;
        if ((rc = take_vectors(label, g, &ng, &e->dim_g, &e->vec_g, err)) < 0)
            goto done;
        if (ng != e->n_vec) {
            rc = mx_err_set(err, MX_EFORMAT, "%s: clip_l has %lld vectors, clip_g %lld", label,
                            (long long)e->n_vec, (long long)ng);
            goto done;
        }
    }
done:
    mx_st_close(st);
    return rc;
}

/* Builds an embedding from the bytes of a file; label: its path. */
static int load_bytes(const void *buf, size_t size, const char *label, const char *name,
                      struct mx_sd_embedding **out, struct mx_err *err) {
    *out = NULL;
    struct mx_sd_embedding *e = calloc(1, sizeof *e);
    if (!e || !(e->path = strdup(label)) ||
        !(e->name = name ? strdup(name) : stem_of(label))) {
        mx_sd_embedding_free(e);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", label);
    }
    int rc = parse(buf, size, label, e, err);
    if (rc < 0) {
        mx_sd_embedding_free(e);
        return rc;
    }
    char hex[65];
    mx_sha256_hex(buf, size, hex);
    memcpy(e->hash, hex, 12);
    e->hash[12] = '\0';
    *out = e;
    return 0;
}

int mx_sd_embedding_load_mem(const void *buf, size_t size, const char *label,
                             struct mx_sd_embedding **out, struct mx_err *err) {
    return load_bytes(buf, size, label, NULL, out, err);
}

int mx_sd_embedding_load(const char *path, const char *name, struct mx_sd_embedding **out,
                         struct mx_err *err) {
    *out = NULL;
    if (is_pickle(path, strlen(path)))
        return mx_err_set(err, MX_EUNSUP, "%s: a pickled embedding (.pt/.bin) is not read (it "
                          "could run code); convert it to .safetensors", path);
    char *buf = NULL;
    size_t n = 0;
    int rc = mx_read_file(path, MAX_FILE_BYTES, &buf, &n, err);
    if (rc < 0)
        return rc;
    rc = load_bytes(buf, n, path, name, out, err);
    free(buf);
    return rc;
}

/* A family name for a text encoder width, for messages. */
static const char *width_family(int64_t dim) {
    return dim == 768 ? " (SD 1.x / SDXL CLIP-L)" : dim == 1024 ? " (SD 2.x)"
           : dim == 1280 ? " (SDXL CLIP-G)" : "";
}

const float *mx_sd_embedding_vectors(const struct mx_sd_embedding *e, int64_t dim,
                                     struct mx_err *err) {
    if (e->dim == dim)
        return e->vec;
    if (e->vec_g && e->dim_g == dim)
        return e->vec_g;
    if (e->vec_g)
        mx_err_set(err, MX_EFORMAT, "%s: an SDXL embedding (widths %lld and %lld), the model's "
                   "text encoder is %lld%s", e->path, (long long)e->dim, (long long)e->dim_g,
                   (long long)dim, width_family(dim));
    else
        mx_err_set(err, MX_EFORMAT, "%s: an embedding of width %lld%s, the model's text encoder "
                   "is %lld%s", e->path, (long long)e->dim, width_family(e->dim), (long long)dim,
                   width_family(dim));
    return NULL;
}

/* ---- folders ------------------------------------------------------------------------------ */

struct emb_entry {
    char *name;                      /* stem (owned) */
    char *path;                      /* the file (owned) */
    struct mx_sd_embedding *e;       /* read on first use (owned), or NULL */
    int used;                        /* order of first use since the reset (1-based), 0: not */
};

struct mx_sd_emb_db {
    struct emb_entry *v;             /* n entries (owned) */
    int n, cap;
    int64_t dim;                     /* the text encoder's width */
    int n_used;                      /* entries used since the reset */
    char dirs[512];                  /* the folders, for messages */
};

void mx_sd_emb_db_free(struct mx_sd_emb_db *db) {
    if (!db)
        return;
    for (int i = 0; i < db->n; i++) {
        free(db->v[i].name);
        free(db->v[i].path);
        mx_sd_embedding_free(db->v[i].e);
    }
    free(db->v);
    free(db);
}

/* The entry whose stem is name[0, len), or -1. */
static int find(const struct mx_sd_emb_db *db, const char *name, size_t len) {
    for (int i = 0; i < db->n; i++)
        if (strlen(db->v[i].name) == len && !memcmp(db->v[i].name, name, len))
            return i;
    return -1;
}

/* qsort order of entries: by stem. */
static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const struct emb_entry *)a)->name, ((const struct emb_entry *)b)->name);
}

/* Adds the embedding files of one folder (names already taken stay with the earlier folder). */
static int add_dir(struct mx_sd_emb_db *db, const char *dir, struct mx_err *err) {
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int first = db->n, rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.' || !(ends_with(de->d_name, n, ".safetensors") ||
                                      is_pickle(de->d_name, n)))
            continue;
        char *stem = stem_of(de->d_name);
        size_t pl = strlen(dir) + 1 + n + 1;
        char *path = malloc(pl);
        if (!stem || !path) {
            free(stem);
            free(path);
            rc = mx_err_set(err, MX_ENOMEM, "embeddings: out of memory");
            break;
        }
        snprintf(path, pl, "%s/%s", dir, de->d_name);
        int at = find(db, stem, strlen(stem));
        /* a .safetensors beats a pickle of the same stem in the same folder */
        if (at >= first && is_pickle(db->v[at].path, strlen(db->v[at].path)) &&
            !is_pickle(path, strlen(path))) {
            free(db->v[at].path);
            db->v[at].path = path;
            free(stem);
            continue;
        }
        if (at >= 0) {
            free(stem);
            free(path);
            continue;
        }
        if (db->n == db->cap) {
            int cap = db->cap ? db->cap * 2 : 16;
            struct emb_entry *v = realloc(db->v, (size_t)cap * sizeof *v);
            if (!v) {
                free(stem);
                free(path);
                rc = mx_err_set(err, MX_ENOMEM, "embeddings: out of memory");
                break;
            }
            db->v = v;
            db->cap = cap;
        }
        db->v[db->n++] = (struct emb_entry){stem, path, NULL, 0};
    }
    closedir(d);
    if (rc == 0)
        qsort(db->v + first, (size_t)(db->n - first), sizeof *db->v, cmp_entry);
    return rc;
}

int mx_sd_emb_db_new(const char *const *dirs, int64_t dim, struct mx_sd_emb_db **out,
                     struct mx_err *err) {
    *out = NULL;
    struct mx_sd_emb_db *db = calloc(1, sizeof *db);
    if (!db)
        return mx_err_set(err, MX_ENOMEM, "embeddings: out of memory");
    db->dim = dim;
    size_t o = 0;
    for (int i = 0; dirs && dirs[i]; i++) {
        if (o < sizeof db->dirs)
            o += (size_t)snprintf(db->dirs + o, sizeof db->dirs - o, "%s%s", i ? ", " : "",
                                  dirs[i]);
        int rc = add_dir(db, dirs[i], err);
        if (rc < 0) {
            mx_sd_emb_db_free(db);
            return rc;
        }
    }
    *out = db;
    return 0;
}

int mx_sd_emb_db_count(const struct mx_sd_emb_db *db) { return db ? db->n : 0; }

const char *mx_sd_emb_db_name(const struct mx_sd_emb_db *db, int i) {
    return db && i >= 0 && i < db->n ? db->v[i].name : NULL;
}

int mx_sd_emb_db_get(struct mx_sd_emb_db *db, const char *name, size_t len,
                     const struct mx_sd_embedding **out, struct mx_err *err) {
    *out = NULL;
    static const char *const exts[] = {".safetensors", ".pt", ".bin"};
    for (size_t k = 0; k < MX_ARRAY_LEN(exts); k++)
        if (ends_with(name, len, exts[k]) && len > strlen(exts[k])) {
            len -= strlen(exts[k]);
            break;
        }
    int i = db ? find(db, name, len) : -1;
    if (i < 0)
        return mx_err_set(err, MX_ENOENT, "embedding:%.*s: no %.*s.safetensors in the "
                          "embeddings folders (%s)", (int)MX_MIN(len, 200), name,
                          (int)MX_MIN(len, 200), name,
                          db && db->dirs[0] ? db->dirs : "none configured");
    struct emb_entry *en = &db->v[i];
    if (!en->e) {
        int rc = mx_sd_embedding_load(en->path, en->name, &en->e, err);
        if (rc < 0)
            return rc;
    }
    if (db->dim > 0 && !mx_sd_embedding_vectors(en->e, db->dim, err))
        return MX_EFORMAT;
    if (!en->used)
        en->used = ++db->n_used;
    *out = en->e;
    return 0;
}

void mx_sd_emb_db_reset_used(struct mx_sd_emb_db *db) {
    if (!db)
        return;
    for (int i = 0; i < db->n; i++)
        db->v[i].used = 0;
    db->n_used = 0;
}

const char *mx_sd_emb_db_hashes(const struct mx_sd_emb_db *db, char *buf, size_t size) {
    if (!size)
        return buf;
    buf[0] = '\0';
    size_t o = 0;
    for (int k = 1; db && k <= db->n_used && o < size; k++)
        for (int i = 0; i < db->n; i++) {
            if (db->v[i].used != k)
                continue;
            char name[256];
            size_t m = 0;
            for (const char *s = db->v[i].name; *s && m + 1 < sizeof name; s++)
                if (*s != ':' && *s != ',')
                    name[m++] = *s;
            name[m] = '\0';
            o += (size_t)snprintf(buf + o, size - o, "%s%s: %s", k > 1 ? ", " : "", name,
                                  db->v[i].e ? db->v[i].e->hash : "");
        }
    return buf;
}
