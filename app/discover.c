/* discover.c - finding GGUF models in the places other tools download them to.
 *
 * Tuned for a first-run screen: a few dozen models among a few thousand files, answered in
 * milliseconds. Every candidate costs a stat and a 4-byte read; headers are only parsed on
 * request (mx_discover_read_meta), through the mmap'ing reader, which touches header pages only.
 * Hostile trees (symlink loops, millions of files, FIFOs named *.gguf, manifests with "../" in
 * digests) must neither hang nor escape: folders are tracked by (dev, ino), a budget bounds the
 * entries visited, files are opened O_NONBLOCK after an S_ISREG check, digests must be hex.
 */
#include "app/discover.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "core/diffusion/sd_kind.h"
#include "core/format/gguf.h"
#include "core/format/safetensors.h"
#include "core/base/quant.h"
#include "core/base/text.h"

#define MIN_MODEL_BYTES 1024
#define MAX_MANIFEST_BYTES (1u << 20)
#define MAX_SHARDS 256
#define HF_SNAPSHOT_DEPTH 3

/* State of one discovery: the list being filled, the folders already entered, the budget. */
struct disc {
    struct mx_model_list *out;
    struct { dev_t dev; ino_t ino; } *seen; /* folders entered (loop guard): n_seen of cap_seen */
    size_t n_seen, cap_seen;
    size_t max_visit;                       /* directory entries allowed in total */
    int rc;                                 /* first hard error (MX_ENOMEM), sticky */
};

/* ---- small helpers --------------------------------------------------------------------------- */

/* "a" + "/" + "b" in a fresh string (caller frees), NULL on out of memory. b may be "". */
static char *join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = malloc(la + lb + 2);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    size_t p = la;
    if (lb) {
        if (p == 0 || s[p - 1] != '/')
            s[p++] = '/';
        memcpy(s + p, b, lb);
        p += lb;
    }
    s[p] = '\0';
    return s;
}

/* printf into a fresh string (caller frees), NULL on out of memory. */
static char *fmt_str(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *fmt_str(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* True when name ends with ext (case-insensitive) and has something before it. */
static bool ends_with(const char *name, const char *ext) {
    size_t n = strlen(name), k = strlen(ext);
    return n > k && strcasecmp(name + n - k, ext) == 0;
}

static bool ends_with_gguf(const char *name) {
    return ends_with(name, ".gguf");
}

/* Recognises llama.cpp's split naming "<prefix>-NNNNN-of-MMMMM.gguf" (digits 1..5 each). Returns
 * true with the shard index, the count and the prefix length; false for an ordinary name. */
static bool parse_shard(const char *name, int *idx, int *count, size_t *prefix_len) {
    size_t n = strlen(name);
    if (n < 5 || strcasecmp(name + n - 5, ".gguf") != 0)
        return false;
    size_t e = n - 5, b = e;
    while (b > 0 && isdigit((unsigned char)name[b - 1]))
        b--;
    if (b == e || e - b > 5 || b < 4 || memcmp(name + b - 4, "-of-", 4) != 0)
        return false;
    int c = atoi(name + b);
    size_t e2 = b - 4, b2 = e2;
    while (b2 > 0 && isdigit((unsigned char)name[b2 - 1]))
        b2--;
    if (b2 == e2 || e2 - b2 > 5 || b2 < 1 || name[b2 - 1] != '-')
        return false;
    int i = atoi(name + b2);
    if (c < 1 || i < 1 || i > c)
        return false;
    *idx = i;
    *count = c;
    *prefix_len = b2 - 1;
    return true;
}

/* True when path is a regular file starting with "GGUF". Opened non-blocking after the caller's
 * S_ISREG check so a FIFO swapped in meanwhile cannot hang us; fstat re-checks the type. */
static bool has_gguf_magic(const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return false;
    struct stat st;
    char m[4];
    bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && pread(fd, m, 4, 0) == 4 &&
              memcmp(m, "GGUF", 4) == 0;
    close(fd);
    return ok;
}

/* Remembers a folder; returns false when it was entered before (a loop or a second path). */
static bool enter_dir(struct disc *d, const struct stat *st) {
    for (size_t i = 0; i < d->n_seen; i++)
        if (d->seen[i].dev == st->st_dev && d->seen[i].ino == st->st_ino)
            return false;
    if (d->n_seen == d->cap_seen) {
        size_t cap = d->cap_seen ? d->cap_seen * 2 : 64;
        void *p = realloc(d->seen, cap * sizeof *d->seen);
        if (!p) {
            d->rc = MX_ENOMEM;
            return false;
        }
        d->seen = p;
        d->cap_seen = cap;
    }
    d->seen[d->n_seen].dev = st->st_dev;
    d->seen[d->n_seen].ino = st->st_ino;
    d->n_seen++;
    return true;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Reads the names in folder path (without "." and ".." and hidden names), sorted bytewise so
 * results do not depend on the file system's order. With ext (".gguf", ".safetensors"), regular
 * files not named *ext are dropped when readdir's d_type already says so, which spares a stat
 * per file in big trees. Each name costs one unit of the budget; when it runs out the list is cut and
 * out->truncated set. Returns the count with *names caller-freed (free_names), 0 with *names
 * NULL for an unreadable folder. */
static size_t read_names(struct disc *d, const char *path, const char *ext, char ***names) {
    *names = NULL;
    if (d->rc < 0)
        return 0;
    DIR *dir = opendir(path);
    if (!dir)
        return 0;
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        const char *nm = de->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
            continue;
        if (d->out->n_visited >= d->max_visit) {
            d->out->truncated = true;
            break;
        }
        d->out->n_visited++;
        if (nm[0] == '.' || (ext && de->d_type == DT_REG && !ends_with(nm, ext)))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **p = realloc(v, nc * sizeof *v);
            if (!p)
                goto nomem;
            v = p;
            cap = nc;
        }
        if (!(v[n] = strdup(nm)))
            goto nomem;
        n++;
    }
    closedir(dir);
    if (n)
        qsort(v, n, sizeof *v, cmp_str);
    *names = v;
    return n;
nomem:
    closedir(dir);
    free_names(v, n);
    d->rc = MX_ENOMEM;
    return 0;
}

/* ---- the list -------------------------------------------------------------------------------- */

static void entry_free(struct mx_model_entry *e) {
    free(e->sd_kind);
    free(e->name);
    free(e->path);
    free(e->real);
    free(e->title);
    free(e->arch);
}

void mx_model_list_free(struct mx_model_list *list) {
    if (!list)
        return;
    for (size_t i = 0; i < list->n; i++)
        entry_free(&list->items[i]);
    free(list->items);
    memset(list, 0, sizeof *list);
}

/* Appends an entry for path (display name, source, size, time, shards) unless its resolved path
 * is listed already. Takes sd_kind (may be NULL; freed here when the entry is not added). */
static void add_entry(struct disc *d, const char *path, const char *name,
                      enum mx_model_source src, uint64_t size, int64_t mtime, int n_shards,
                      char *sd_kind) {
    char *real = realpath(path, NULL);
    if (!real) {
        if (errno == ENOMEM)
            d->rc = MX_ENOMEM;
        free(sd_kind);
        return;
    }
    struct mx_model_list *l = d->out;
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->items[i].real, real) == 0) {
            free(real);
            free(sd_kind);
            return;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void *p = realloc(l->items, cap * sizeof *l->items);
        if (!p) {
            free(real);
            free(sd_kind);
            d->rc = MX_ENOMEM;
            return;
        }
        l->items = p;
        l->cap = cap;
    }
    struct mx_model_entry *e = &l->items[l->n];
    memset(e, 0, sizeof *e);
    e->real = real;
    e->sd_kind = sd_kind;
    e->path = strdup(path);
    e->name = strdup(name);
    if (!e->path || !e->name) {
        entry_free(e);
        d->rc = MX_ENOMEM;
        return;
    }
    e->size = size;
    e->mtime = mtime;
    e->source = src;
    e->n_shards = n_shards;
    e->main_type = -1;
    l->n++;
}

/* Adds a candidate unless it is not a GGUF file, too small, a later shard, or a file already
 * listed. path: as found; name: display name (both copied). mtime_override >= 0 replaces the
 * file's own time (ollama: when the tag was pulled). check_name: apply the .gguf/shard rules. */
static void consider(struct disc *d, const char *path, const char *name, enum mx_model_source src,
                     int64_t mtime_override, bool check_name) {
    if (d->rc < 0)
        return;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < MIN_MODEL_BYTES)
        return;
    uint64_t size = (uint64_t)st.st_size;
    int n_shards = 1;
    if (check_name) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        int idx, count;
        size_t plen;
        if (!ends_with_gguf(base))
            return;
        if (parse_shard(base, &idx, &count, &plen)) {
            if (idx != 1)
                return;
            n_shards = count;
            // The other shards' sizes, by the same naming; missing ones just do not count (the
            // loader reports them), and the count is capped against absurd names.
            size_t dlen = (size_t)(base - path);
            for (int i = 2; i <= count && i <= MAX_SHARDS; i++) {
                char *sp = fmt_str("%.*s%.*s-%05d-of-%05d.gguf", (int)dlen, path, (int)plen, base,
                                   i, count);
                if (!sp) {
                    d->rc = MX_ENOMEM;
                    return;
                }
                struct stat ss;
                if (stat(sp, &ss) == 0 && S_ISREG(ss.st_mode))
                    size += (uint64_t)ss.st_size;
                free(sp);
            }
        }
    }
    if (!has_gguf_magic(path))
        return;
    add_entry(d, path, name, src, size,
              mtime_override >= 0 ? mtime_override : (int64_t)st.st_mtime, n_shards, NULL);
}

/* ---- Stable Diffusion candidates ------------------------------------------------------------ */

/* A small JSON file (regular, at most MAX_MANIFEST_BYTES), parsed; NULL when it is not one. */
static json_t *load_small_json(const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return NULL;
    struct stat st;
    char *buf = NULL;
    json_t *root = NULL;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        st.st_size <= MAX_MANIFEST_BYTES && (buf = malloc((size_t)st.st_size)) &&
        pread(fd, buf, (size_t)st.st_size, 0) == (ssize_t)st.st_size)
        root = json_loadb(buf, (size_t)st.st_size, JSON_REJECT_DUPLICATES, NULL);
    free(buf);
    close(fd);
    return root;
}


/* "SD 1.x" / "SD 2.x" / "SDXL" from the UNet's cross-attention width, "SD" when unknown. */
static const char *sd_version_name(int64_t ctx) {
    return ctx == 768 ? "SD 1.x" : ctx == 1024 ? "SD 2.x" : ctx == 2048 ? "SDXL" : "SD";
}

/* Adds a single-file checkpoint: a regular .safetensors file whose header (read through the
 * mapping reader, header pages only) names a CompVis/LDM UNet with cross-attention. */
static void consider_sd(struct disc *d, const char *path, const char *name,
                        enum mx_model_source src) {
    if (d->rc < 0)
        return;
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < MIN_MODEL_BYTES)
        return;
    // Re-check the type on an open, non-blocking descriptor: a FIFO swapped in must not hang us.
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return;
    struct stat fst;
    bool reg = fstat(fd, &fst) == 0 && S_ISREG(fst.st_mode);
    close(fd);
    struct mx_st *sf = NULL;
    if (!reg || mx_st_open(path, &sf, NULL) != 0)
        return;
    int64_t ctx = mx_sd_unet_context_dim(sf, "model.diffusion_model.");
    char kind[256];
    if (ctx > 0)
        mx_st_guess_kind(sf, kind, sizeof kind);
    mx_st_close(sf);
    if (ctx <= 0)
        return;
    char *k = strdup(kind);
    if (!k) {
        d->rc = MX_ENOMEM;
        return;
    }
    add_entry(d, path, name, src, (uint64_t)st.st_size, (int64_t)st.st_mtime, 1, k);
}

/* Whether folder dir holds a model_index.json (a diffusers pipeline folder). */
static bool is_diffusers_dir(const char *dir) {
    char *mi = join(dir, "model_index.json");
    struct stat st;
    bool yes = mi && stat(mi, &st) == 0 && S_ISREG(st.st_mode);
    free(mi);
    return yes;
}

/* Adds a diffusers folder whose model_index.json names a StableDiffusion* pipeline; its size is
 * that of the files in its component folders, its time the model_index.json's. */
static void consider_diffusers(struct disc *d, const char *dir, const char *name,
                               enum mx_model_source src) {
    if (d->rc < 0)
        return;
    char *mi = join(dir, "model_index.json");
    char *uc = join(dir, "unet/config.json");
    if (!mi || !uc) {
        free(mi);
        free(uc);
        d->rc = MX_ENOMEM;
        return;
    }
    struct stat st;
    json_t *root = stat(mi, &st) == 0 ? load_small_json(mi) : NULL;
    const char *cls = json_string_value(json_object_get(root, "_class_name"));
    char *kind = NULL;
    if (cls && !strncmp(cls, "StableDiffusion", 15)) {
        json_t *ucfg = load_small_json(uc);
        json_int_t ctx = json_integer_value(json_object_get(ucfg, "cross_attention_dim"));
        json_decref(ucfg);
        char *safe = malloc(MX_SANITIZE_MAX(strlen(cls)));
        if (safe)
            mx_text_sanitize(cls, strlen(cls), safe, false);
        kind = safe ? fmt_str("%s diffusers folder (%s)", sd_version_name((int64_t)ctx), safe)
                    : NULL;
        free(safe);
        if (!kind)
            d->rc = MX_ENOMEM;
    }
    json_decref(root);
    free(mi);
    free(uc);
    if (!kind)
        return;
    // The weights: the files directly in the component folders (symlinks into blobs followed).
    uint64_t size = 0;
    for (size_t i = 0; mx_st_folder_components[i] && d->rc == 0; i++) {
        char *pd = join(dir, mx_st_folder_components[i]);
        char **names = NULL;
        size_t n = pd ? read_names(d, pd, NULL, &names) : 0;
        for (size_t k = 0; k < n; k++) {
            char *fp = join(pd, names[k]);
            struct stat fs;
            if (fp && stat(fp, &fs) == 0 && S_ISREG(fs.st_mode))
                size += (uint64_t)fs.st_size;
            free(fp);
        }
        free_names(names, n);
        free(pd);
    }
    add_entry(d, dir, name, src, size, (int64_t)st.st_mtime, 1, kind);
}

/* ---- folder walks ---------------------------------------------------------------------------- */

/* How a walk names what it finds, from the path relative to its root. */
enum naming {
    NAME_REL,       /* "sub/f.gguf" */
    NAME_REPO,      /* "A/B: rest" when there are 3+ components (LM Studio), else as NAME_REL */
    NAME_PREFIXED,  /* "<prefix>: rel" (HF snapshots) */
};

struct walk {
    enum mx_model_source src;
    enum naming naming;
    const char *prefix;  /* NAME_PREFIXED */
    int max_depth;       /* folders below the root that are entered (0: the root only) */
    bool sd;             /* Stable Diffusion checkpoints (.safetensors, diffusers folders) */
};

static char *display_name(const struct walk *w, const char *rel) {
    if (w->naming == NAME_PREFIXED)
        return fmt_str("%s: %s", w->prefix, rel);
    if (w->naming == NAME_REPO) {
        const char *s1 = strchr(rel, '/');
        const char *s2 = s1 ? strchr(s1 + 1, '/') : NULL;
        if (s2)
            return fmt_str("%.*s: %s", (int)(s2 - rel), rel, s2 + 1);
    }
    return strdup(rel);
}

/* Walks folder dir (rel: its path below the walk's root, "" for the root), hidden entries
 * skipped, sub-folders (symlinked ones too, once each) down to max_depth. */
static void walk_dir(struct disc *d, const struct walk *w, const char *dir, const char *rel,
                     int depth) {
    char **names;
    size_t n = read_names(d, dir, w->sd ? ".safetensors" : ".gguf", &names);
    for (size_t i = 0; i < n && d->rc == 0; i++) {
        char *path = join(dir, names[i]);
        char *r = rel[0] ? join(rel, names[i]) : strdup(names[i]);
        struct stat st;
        if (!path || !r) {
            d->rc = MX_ENOMEM;
        } else if (stat(path, &st) != 0) {
            // dangling symlink or vanished: skip
        } else if (S_ISDIR(st.st_mode) && w->sd && is_diffusers_dir(path)) {
            // A pipeline folder is one entry; its components are not checkpoints of their own.
            char *nm = display_name(w, r);
            if (!nm)
                d->rc = MX_ENOMEM;
            else
                consider_diffusers(d, path, nm, w->src);
            free(nm);
        } else if (S_ISDIR(st.st_mode)) {
            if (depth < w->max_depth && enter_dir(d, &st))
                walk_dir(d, w, path, r, depth + 1);
        } else if (S_ISREG(st.st_mode) &&
                   (w->sd ? ends_with(names[i], ".safetensors") : ends_with_gguf(names[i]))) {
            char *nm = display_name(w, r);
            if (!nm)
                d->rc = MX_ENOMEM;
            else if (w->sd)
                consider_sd(d, path, nm, w->src);
            else
                consider(d, path, nm, w->src, -1, true);
            free(nm);
        }
        free(path);
        free(r);
    }
    free_names(names, n);
}

/* Walks root (if it is a folder not entered before). */
static void walk_root(struct disc *d, const struct walk *w, const char *root) {
    struct stat st;
    if (!root || stat(root, &st) != 0 || !S_ISDIR(st.st_mode) || !enter_dir(d, &st))
        return;
    walk_dir(d, w, root, "", 0);
}

/* ---- Hugging Face hub cache ------------------------------------------------------------------ */

/* "models--ORG--NAME" -> "ORG/NAME" (the hub forbids "--" inside names, so the split is exact);
 * NULL for other folders (datasets--, spaces--, .locks). Caller frees. */
static char *hf_repo_name(const char *folder) {
    if (strncmp(folder, "models--", 8) != 0 || !folder[8])
        return NULL;
    const char *s = folder + 8;
    char *r = malloc(strlen(s) + 1);
    if (!r)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] == '-' && s[i + 1] == '-') {
            r[j++] = '/';
            i++;
        } else {
            r[j++] = s[i];
        }
    }
    r[j] = '\0';
    return r;
}

/* Walks the hub cache's model repos: every snapshot of models--ORG--NAME. With sd, a snapshot
 * holding model_index.json is a diffusers entry "ORG/NAME" whose own top-level files are still
 * looked at (a repo may ship a single-file checkpoint beside the pipeline). */
static void scan_hf(struct disc *d, const char *hub, bool sd) {
    struct stat st;
    if (!hub || stat(hub, &st) != 0 || !S_ISDIR(st.st_mode) || !enter_dir(d, &st))
        return;
    char **repos;
    size_t nr = read_names(d, hub, NULL, &repos);
    for (size_t i = 0; i < nr && d->rc == 0; i++) {
        char *repo = hf_repo_name(repos[i]);
        if (!repo)
            continue;  // not a model repo (out of memory here just skips one repo)
        char *snaps = fmt_str("%s/%s/snapshots", hub, repos[i]);
        char **revs = NULL;
        size_t nv = snaps ? read_names(d, snaps, NULL, &revs) : 0;
        struct walk w = { MX_SRC_HF, NAME_PREFIXED, repo, HF_SNAPSHOT_DEPTH, sd };
        for (size_t k = 0; k < nv && d->rc == 0; k++) {
            char *rev = join(snaps, revs[k]);
            struct walk top = w;
            if (!rev) {
                d->rc = MX_ENOMEM;
            } else if (sd && is_diffusers_dir(rev)) {
                consider_diffusers(d, rev, repo, MX_SRC_HF);
                top.max_depth = 0;
            }
            if (rev)
                walk_root(d, &top, rev);
            free(rev);
        }
        free_names(revs, nv);
        free(snaps);
        free(repo);
    }
    free_names(repos, nr);
}

/* ---- ollama ---------------------------------------------------------------------------------- */

/* The blob digest of a manifest's model layer: 64 lowercase hex digits copied to hex[65]. Returns
 * false for a file that is not such a manifest (unreadable, too big, bad JSON, no model layer, a
 * digest that is not plain hex and so could name a path outside blobs/). */
static bool ollama_manifest_digest(const char *path, char hex[65]) {
    bool ok = false;
    json_t *root = load_small_json(path);
    json_t *layers = root ? json_object_get(root, "layers") : NULL;
    size_t i;
    json_t *layer;
    if (json_is_array(layers)) {
        json_array_foreach(layers, i, layer) {
            const char *mt = json_string_value(json_object_get(layer, "mediaType"));
            const char *dg = json_string_value(json_object_get(layer, "digest"));
            if (!mt || !dg || strcmp(mt, "application/vnd.ollama.image.model") != 0)
                continue;
            if (strncmp(dg, "sha256:", 7) != 0 || strlen(dg) != 7 + 64)
                break;
            ok = true;
            for (int k = 0; k < 64; k++) {
                char c = dg[7 + k];
                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
                    ok = false;
            }
            if (ok)
                memcpy(hex, dg + 7, 65);
            break;
        }
    }
    json_decref(root);
    return ok;
}

/* Display name of manifests/HOST/NS/NAME/TAG the way `ollama list` shows it. */
static char *ollama_name(const char *host, const char *ns, const char *name, const char *tag) {
    if (strcmp(host, "registry.ollama.ai") == 0) {
        if (strcmp(ns, "library") == 0)
            return fmt_str("%s:%s (ollama)", name, tag);
        return fmt_str("%s/%s:%s (ollama)", ns, name, tag);
    }
    return fmt_str("%s/%s/%s:%s (ollama)", host, ns, name, tag);
}

static void ollama_tag(struct disc *d, const char *models, const char *mpath, const char *host,
                       const char *ns, const char *name, const char *tag) {
    struct stat st;
    char hex[65];
    if (stat(mpath, &st) != 0 || !S_ISREG(st.st_mode) || !ollama_manifest_digest(mpath, hex))
        return;
    char *disp = ollama_name(host, ns, name, tag);
    // Current ollama names blobs "sha256-HEX"; releases before 0.1.30 used "sha256:HEX".
    char *blob = fmt_str("%s/blobs/sha256-%s", models, hex);
    if (!disp || !blob) {
        d->rc = MX_ENOMEM;
    } else {
        struct stat bs;
        if (stat(blob, &bs) != 0) {
            free(blob);
            blob = fmt_str("%s/blobs/sha256:%s", models, hex);
        }
        if (!blob)
            d->rc = MX_ENOMEM;
        else
            consider(d, blob, disp, MX_SRC_OLLAMA, (int64_t)st.st_mtime, false);
    }
    free(disp);
    free(blob);
}

/* Lists the sub-folders (levels 1-3) or files (level 4) of manifests/...; returns names. */
static size_t ollama_level(struct disc *d, const char *path, char ***names) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode) || !enter_dir(d, &st)) {
        *names = NULL;
        return 0;
    }
    return read_names(d, path, NULL, names);
}

static void scan_ollama(struct disc *d, const char *models) {
    if (!models)
        return;
    char *man = join(models, "manifests");
    if (!man) {
        d->rc = MX_ENOMEM;
        return;
    }
    // manifests/HOST/NAMESPACE/NAME/TAG, each level sorted.
    char **hosts;
    size_t nh = ollama_level(d, man, &hosts);
    for (size_t a = 0; a < nh && d->rc == 0; a++) {
        char *hp = join(man, hosts[a]);
        char **nss = NULL;
        size_t nn = hp ? ollama_level(d, hp, &nss) : 0;
        for (size_t b = 0; b < nn && d->rc == 0; b++) {
            char *np = join(hp, nss[b]);
            char **mods = NULL;
            size_t nm = np ? ollama_level(d, np, &mods) : 0;
            for (size_t c = 0; c < nm && d->rc == 0; c++) {
                char *mp = join(np, mods[c]);
                char **tags = NULL;
                size_t nt = mp ? ollama_level(d, mp, &tags) : 0;
                for (size_t t = 0; t < nt && d->rc == 0; t++) {
                    char *tp = join(mp, tags[t]);
                    if (!tp)
                        d->rc = MX_ENOMEM;
                    else
                        ollama_tag(d, models, tp, hosts[a], nss[b], mods[c], tags[t]);
                    free(tp);
                }
                free_names(tags, nt);
                free(mp);
            }
            free_names(mods, nm);
            free(np);
        }
        free_names(nss, nn);
        free(hp);
    }
    free_names(hosts, nh);
    free(man);
}

/* ---- discovery ------------------------------------------------------------------------------- */

static const char *env_nonempty(const char *k) {
    const char *v = getenv(k);
    return v && v[0] ? v : NULL;
}

/* The Hugging Face hub cache folder (caller frees; NULL when unknown or out of memory):
 * $HF_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub. */
static char *hub_path(const char *home) {
    if (env_nonempty("HF_HUB_CACHE"))
        return strdup(env_nonempty("HF_HUB_CACHE"));
    if (env_nonempty("HF_HOME"))
        return join(env_nonempty("HF_HOME"), "hub");
    if (env_nonempty("XDG_CACHE_HOME"))
        return join(env_nonempty("XDG_CACHE_HOME"), "huggingface/hub");
    return home ? join(home, ".cache/huggingface/hub") : NULL;
}

static int cmp_entry(const void *pa, const void *pb) {
    const struct mx_model_entry *a = pa, *b = pb;
    if (a->mtime != b->mtime)
        return a->mtime > b->mtime ? -1 : 1;
    int c = strcmp(a->name, b->name);
    return c ? c : strcmp(a->path, b->path);
}

int mx_discover_models_ex(const char *home, const char *cwd, size_t max_visit,
                          struct mx_model_list *out, struct mx_err *err) {
    if (!out)
        return mx_err_set(err, MX_EINVAL, "discover: no output list");
    memset(out, 0, sizeof *out);
    struct disc d = { .out = out, .max_visit = max_visit ? max_visit : MX_DISCOVER_MAX_VISIT };
    if (home && !home[0])
        home = NULL;
    char *p = NULL;

    // Sources in order of how well they name a file: when one file is reachable from several
    // places (a ~/models symlink into the hub cache), the first, most descriptive name wins.
    p = hub_path(home);
    scan_hf(&d, p, false);
    free(p);
    p = NULL;

    if (env_nonempty("OLLAMA_MODELS"))
        p = strdup(env_nonempty("OLLAMA_MODELS"));
    else if (home)
        p = join(home, ".ollama/models");
    scan_ollama(&d, p);
    free(p);
    p = NULL;

    if (home) {
        struct walk lms = { MX_SRC_LMSTUDIO, NAME_REPO, NULL, MX_DISCOVER_MAX_DEPTH, false };
        static const char *const lms_dirs[] = { ".lmstudio/models", ".cache/lm-studio/models" };
        for (size_t i = 0; i < 2 && d.rc == 0; i++) {
            p = join(home, lms_dirs[i]);
            walk_root(&d, &lms, p);
            free(p);
            p = NULL;
        }
        struct walk mod = { MX_SRC_MODELS, NAME_REL, NULL, MX_DISCOVER_MAX_DEPTH, false };
        p = join(home, "models");
        walk_root(&d, &mod, p);
        free(p);
        p = NULL;
    }
    if (cwd && cwd[0]) {
        // The current folder itself only: it may be $HOME or / and is not ours to crawl. It is
        // not checked against the folders seen, so a cwd inside ~/models still lists its files
        // (files already listed are dropped as duplicates).
        struct walk here = { MX_SRC_CWD, NAME_REL, NULL, 0, false };
        struct stat st;
        if (stat(cwd, &st) == 0 && S_ISDIR(st.st_mode))
            walk_dir(&d, &here, cwd, "", 0);
    }
    free(d.seen);
    if (d.rc < 0)
        return mx_err_set(err, d.rc, "discover: out of memory after %zu models", out->n);
    if (out->n > 1)
        qsort(out->items, out->n, sizeof *out->items, cmp_entry);
    return 0;
}

int mx_discover_models(const char *home, const char *cwd, struct mx_model_list *out,
                       struct mx_err *err) {
    return mx_discover_models_ex(home, cwd, 0, out, err);
}

int mx_discover_sd(const char *home, const char *cwd, const char *const *dirs, size_t max_visit,
                   struct mx_model_list *out, struct mx_err *err) {
    if (!out)
        return mx_err_set(err, MX_EINVAL, "discover: no output list");
    memset(out, 0, sizeof *out);
    struct disc d = { .out = out, .max_visit = max_visit ? max_visit : MX_DISCOVER_MAX_VISIT };
    if (home && !home[0])
        home = NULL;
    struct walk cfg = { MX_SRC_CONFIG, NAME_REL, NULL, MX_DISCOVER_MAX_DEPTH, true };
    for (size_t i = 0; dirs && dirs[i] && d.rc == 0; i++)
        walk_root(&d, &cfg, dirs[i]);
    static const struct {
        const char *rel;
        enum mx_model_source src;
    } roots[] = {
        { "stable-diffusion-webui/models/Stable-diffusion", MX_SRC_A1111 },
        { "stable-diffusion-webui-forge/models/Stable-diffusion", MX_SRC_A1111 },
        { "ComfyUI/models/checkpoints", MX_SRC_COMFYUI },
    };
    for (size_t i = 0; home && i < sizeof roots / sizeof roots[0] && d.rc == 0; i++) {
        struct walk w = { roots[i].src, NAME_REL, NULL, MX_DISCOVER_MAX_DEPTH, true };
        char *p = join(home, roots[i].rel);
        if (!p)
            d.rc = MX_ENOMEM;
        walk_root(&d, &w, p);
        free(p);
    }
    char *hub = hub_path(home);
    scan_hf(&d, hub, true);
    free(hub);
    if (home && d.rc == 0) {
        struct walk mod = { MX_SRC_MODELS, NAME_REL, NULL, MX_DISCOVER_MAX_DEPTH, true };
        char *p = join(home, "models");
        walk_root(&d, &mod, p);
        free(p);
    }
    if (cwd && cwd[0] && d.rc == 0) {
        struct walk here = { MX_SRC_CWD, NAME_REL, NULL, 0, true };
        struct stat st;
        if (stat(cwd, &st) == 0 && S_ISDIR(st.st_mode))
            walk_dir(&d, &here, cwd, "", 0);
    }
    free(d.seen);
    if (d.rc < 0)
        return mx_err_set(err, d.rc, "discover: out of memory after %zu checkpoints", out->n);
    if (out->n > 1)
        qsort(out->items, out->n, sizeof *out->items, cmp_entry);
    return 0;
}

/* ---- LoRA folders --------------------------------------------------------------------------- */

void mx_discover_lora_dirs_free(char **dirs) {
    for (size_t i = 0; dirs && dirs[i]; i++)
        free(dirs[i]);
    free(dirs);
}

/* Appends dir (taken) to the NULL-terminated list *v of *n when it is a folder not yet there. */
static int lora_dir_add(char ***v, size_t *n, char *dir) {
    struct stat st;
    bool keep = dir && stat(dir, &st) == 0 && S_ISDIR(st.st_mode);
    for (size_t i = 0; keep && i < *n; i++)
        keep = strcmp((*v)[i], dir) != 0;
    if (!keep) {
        free(dir);
        return 0;
    }
    char **nv = realloc(*v, (*n + 2) * sizeof *nv);
    if (!nv) {
        free(dir);
        return MX_ENOMEM;
    }
    nv[(*n)++] = dir;
    nv[*n] = NULL;
    *v = nv;
    return 0;
}

/* Where A1111 and ComfyUI keep one kind of add-on file (LoRAs, embeddings): the checkpoint's
 * models folder with ckpt_dir swapped for sub[0] (A1111) or sub[1] (ComfyUI), then rel[0..2]
 * under home; first (NULL: none) before all. what names the kind in the error. */
static int addon_dirs(const char *home, const char *ckpt, const char *first,
                      const char *const sub[2], const char *const rel[3], const char *what,
                      char ***out, struct mx_err *err) {
    static const char *const ckpt_dir[2] = {"/models/Stable-diffusion/", "/models/checkpoints/"};
    char **v = calloc(1, sizeof *v);
    size_t n = 0;
    int rc = v ? 0 : MX_ENOMEM;
    if (rc == 0 && first) {
        char *d = strdup(first);
        rc = d ? lora_dir_add(&v, &n, d) : MX_ENOMEM;
    }
    for (size_t i = 0; ckpt && rc == 0 && i < 2; i++) {
        const char *at = strstr(ckpt, ckpt_dir[i]);
        if (!at)
            continue;
        size_t base = (size_t)(at - ckpt), nl = strlen(sub[i]);
        char *d = malloc(base + nl + 1);
        if (d) {
            memcpy(d, ckpt, base);
            memcpy(d + base, sub[i], nl + 1);
        }
        rc = d ? lora_dir_add(&v, &n, d) : MX_ENOMEM;
    }
    for (size_t i = 0; home && home[0] && rc == 0 && i < 3; i++) {
        char *d = join(home, rel[i]);
        rc = d ? lora_dir_add(&v, &n, d) : MX_ENOMEM;
    }
    if (rc < 0) {
        mx_discover_lora_dirs_free(v);
        *out = NULL;
        return mx_err_set(err, MX_ENOMEM, "discover: out of memory (%s folders)", what);
    }
    *out = v;
    return 0;
}

int mx_discover_lora_dirs(const char *home, const char *ckpt, char ***out, struct mx_err *err) {
    static const char *const sub[2] = {"/models/Lora", "/models/loras"};
    static const char *const rel[3] = {
        "stable-diffusion-webui/models/Lora", "stable-diffusion-webui-forge/models/Lora",
        "ComfyUI/models/loras",
    };
    return addon_dirs(home, ckpt, NULL, sub, rel, "LoRA", out, err);
}

int mx_discover_taesd(const char *home, const char *ckpt, bool xl, char *buf, size_t size) {
    static const struct {
        const char *ckpt_dir, *dir;
    } beside[] = {
        { "/models/Stable-diffusion/", "/models/VAE-approx" },
        { "/models/checkpoints/", "/models/vae_approx" },
    };
    static const char *const rel[] = {
        "stable-diffusion-webui/models/VAE-approx", "stable-diffusion-webui-forge/models/VAE-approx",
        "ComfyUI/models/vae_approx",
    };
    static const char *const names[2][2] = {
        { "taesd_decoder.safetensors", "taesd.safetensors" },
        { "taesdxl_decoder.safetensors", "taesdxl.safetensors" },
    };
    char dir[4096];
    for (size_t i = 0; i < 5; i++) {
        if (i < 2) {
            const char *at = ckpt ? strstr(ckpt, beside[i].ckpt_dir) : NULL;
            if (!at || (size_t)snprintf(dir, sizeof dir, "%.*s%s", (int)(at - ckpt), ckpt,
                                        beside[i].dir) >= sizeof dir)
                continue;
        } else if (!home || !home[0] ||
                   (size_t)snprintf(dir, sizeof dir, "%s/%s", home, rel[i - 2]) >= sizeof dir) {
            continue;
        }
        for (int k = 0; k < 2; k++)
            if ((size_t)snprintf(buf, size, "%s/%s", dir, names[xl ? 1 : 0][k]) < size &&
                access(buf, R_OK) == 0)
                return 0;
    }
    if (size)
        buf[0] = '\0';
    return MX_ENOENT;
}

int mx_discover_embedding_dirs(const char *home, const char *ckpt, const char *first,
                               char ***out, struct mx_err *err) {
    static const char *const sub[2] = {"/embeddings", "/models/embeddings"};
    static const char *const rel[3] = {
        "stable-diffusion-webui/embeddings", "stable-diffusion-webui-forge/embeddings",
        "ComfyUI/models/embeddings",
    };
    return addon_dirs(home, ckpt, first, sub, rel, "embedding", out, err);
}

/* ---- GGUF headers ---------------------------------------------------------------------------- */

/* Adds one file's tensors to the parameter count and the bytes-per-type histogram. */
static void count_tensors(const struct mx_gguf *g, uint64_t *n_params, uint64_t *bytes_by_type) {
    int64_t nt = mx_gguf_n_tensors(g);
    for (int64_t i = 0; i < nt; i++) {
        const struct mx_gguf_tensor *t = mx_gguf_tensor(g, i);
        uint64_t ne = 1;
        for (int k = 0; k < t->n_dims; k++)
            ne *= (uint64_t)t->ne[k];  // the reader checked these products fit
        *n_params += ne;
        // Norms and biases are 1-D and kept f32 whatever the quantisation: weights decide.
        if (t->n_dims >= 2 && t->type >= 0 && t->type < MX_TYPE_COUNT)
            bytes_by_type[t->type] += t->nbytes;
    }
}

static uint32_t get_u32_or0(const struct mx_gguf *g, const char *arch, const char *suffix) {
    char key[128];
    int64_t v = 0;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (mx_gguf_get_int(g, key, &v, NULL) != 0 || v < 0 || v > UINT32_MAX)
        return 0;
    return (uint32_t)v;
}

int mx_discover_read_meta(struct mx_model_entry *e, struct mx_err *err) {
    struct mx_err e2 = { 0 };
    struct mx_gguf *g = NULL;
    free(e->title);
    free(e->arch);
    e->title = e->arch = NULL;
    e->n_params = 0;
    e->n_experts = e->n_experts_used = e->n_ctx_train = 0;
    e->main_type = -1;
    e->meta_err[0] = '\0';

    int rc = mx_gguf_open(e->path, &g, &e2);
    if (rc < 0)
        goto fail;
    const char *s = NULL;
    if (mx_gguf_get_str(g, "general.name", &s, NULL) == 0 && s[0] && !(e->title = strdup(s)))
        rc = MX_ENOMEM;
    s = NULL;
    if (rc == 0 && mx_gguf_get_str(g, "general.architecture", &s, NULL) == 0 && s[0] &&
        !(e->arch = strdup(s)))
        rc = MX_ENOMEM;
    if (rc < 0) {
        mx_err_set(&e2, rc, "%s: out of memory", e->path);
        goto fail;
    }
    if (e->arch && strlen(e->arch) < 64) {
        e->n_experts = get_u32_or0(g, e->arch, "expert_count");
        e->n_experts_used = get_u32_or0(g, e->arch, "expert_used_count");
        e->n_ctx_train = get_u32_or0(g, e->arch, "context_length");
    }
    uint64_t bytes_by_type[MX_TYPE_COUNT] = { 0 };
    count_tensors(g, &e->n_params, bytes_by_type);
    mx_gguf_close(g);
    g = NULL;

    // The other shards hold the rest of the tensors; same naming as found by discovery.
    const char *base = strrchr(e->path, '/');
    base = base ? base + 1 : e->path;
    int idx, count;
    size_t plen;
    if (e->n_shards > 1 && parse_shard(base, &idx, &count, &plen)) {
        size_t dlen = (size_t)(base - e->path);
        for (int i = 2; i <= count && i <= MAX_SHARDS; i++) {
            char *sp = fmt_str("%.*s%.*s-%05d-of-%05d.gguf", (int)dlen, e->path, (int)plen, base,
                               i, count);
            if (!sp) {
                rc = mx_err_set(&e2, MX_ENOMEM, "%s: out of memory", e->path);
                goto fail;
            }
            struct mx_gguf *gs = NULL;
            if (mx_gguf_open(sp, &gs, NULL) == 0) {
                count_tensors(gs, &e->n_params, bytes_by_type);
                mx_gguf_close(gs);
            }
            free(sp);
        }
    }
    uint64_t best = 0;
    for (int t = 0; t < MX_TYPE_COUNT; t++) {
        if (bytes_by_type[t] > best) {
            best = bytes_by_type[t];
            e->main_type = t;
        }
    }
    e->meta = 1;
    return 0;
fail:
    mx_gguf_close(g);
    e->meta = -1;
    snprintf(e->meta_err, sizeof e->meta_err, "%s", mx_err_msg(&e2, rc));
    mx_err_set(err, rc, "%s", mx_err_msg(&e2, rc));
    return rc;
}

size_t mx_discover_read_meta_all(struct mx_model_list *list) {
    size_t ok = 0;
    for (size_t i = 0; list && i < list->n; i++)
        ok += mx_discover_read_meta(&list->items[i], NULL) == 0;
    return ok;
}

/* ---- presentation ---------------------------------------------------------------------------- */

const char *mx_model_source_name(enum mx_model_source s) {
    switch (s) {
    case MX_SRC_HF: return "huggingface";
    case MX_SRC_OLLAMA: return "ollama";
    case MX_SRC_LMSTUDIO: return "lm-studio";
    case MX_SRC_MODELS: return "~/models";
    case MX_SRC_CWD: return "current dir";
    case MX_SRC_A1111: return "a1111";
    case MX_SRC_COMFYUI: return "comfyui";
    case MX_SRC_CONFIG: return "configured";
    }
    return "?";
}

void mx_discover_format_size(uint64_t bytes, char *buf, size_t size) {
    static const char *const unit[] = { "B", "KB", "MB", "GB", "TB", "PB" };
    double v = (double)bytes;
    int u = 0;
    while (v >= 1000.0 && u < 5) {
        v /= 1000.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, size, "%" PRIu64 " B", bytes);
    else
        snprintf(buf, size, v < 100.0 ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

/* "46.7B", "7.2M", "260K" parameters: one decimal below 10 of a unit, none above 100. */
static void format_params(uint64_t n, char *buf, size_t size) {
    static const struct { double div; const char *unit; } u[] = {
        { 1e12, "T" }, { 1e9, "B" }, { 1e6, "M" }, { 1e3, "K" },
    };
    for (size_t i = 0; i < sizeof u / sizeof u[0]; i++) {
        double v = (double)n / u[i].div;
        if (v >= 1.0) {
            snprintf(buf, size, v < 100.0 ? "%.1f%s" : "%.0f%s", v, u[i].unit);
            return;
        }
    }
    snprintf(buf, size, "%" PRIu64, n);
}

size_t mx_discover_describe(const struct mx_model_entry *e, char *buf, size_t size) {
    char sz[32], pr[32], moe[32] = "";
    mx_discover_format_size(e->size, sz, sizeof sz);
    if (e->sd_kind) {
        int n = snprintf(buf, size, "%s · %s", e->sd_kind, sz);
        return n < 0 ? 0 : (size_t)n;
    }
    if (e->meta != 1) {
        int n = snprintf(buf, size, "%s%s", e->meta < 0 ? "unreadable · " : "", sz);
        return n < 0 ? 0 : (size_t)n;
    }
    // Vocab-only files have no tensors: no parameter count then.
    if (e->n_params)
        format_params(e->n_params, pr, sizeof pr);
    else
        pr[0] = '\0';
    if (e->n_experts > 1)
        snprintf(moe, sizeof moe, " %ux%u", e->n_experts, e->n_experts_used);
    int n = snprintf(buf, size, "%s%s%s%s%s%s · %s · %s",
                     e->title ? e->title : "", e->title ? " · " : "", pr, pr[0] ? " " : "",
                     e->arch ? e->arch : "?", moe,
                     e->main_type >= 0 ? mx_type_name(e->main_type) : "?", sz);
    return n < 0 ? 0 : (size_t)n;
}

/* Writes s to f with control bytes and escape sequences made inert. */
static void put_inert(FILE *f, const char *s) {
    size_t len = strlen(s);
    char *tmp = malloc(MX_SANITIZE_MAX(len));
    if (!tmp)
        return;
    mx_text_sanitize(s, len, tmp, false);
    fputs(tmp, f);
    free(tmp);
}

/* Whether entry e answers to name (see mx_discover_resolve). */
static bool entry_named(const struct mx_model_entry *e, const char *name) {
    if (!strcmp(e->name, name))
        return true;
    const char *tag = strrchr(e->name, ' ');
    size_t n = strlen(name);
    if (tag && tag[1] == '(' && (size_t)(tag - e->name) == n && !strncmp(e->name, name, n))
        return true;
    const char *base = strrchr(e->path, '/');
    return e->source != MX_SRC_OLLAMA && !strcmp(base ? base + 1 : e->path, name);
}

/* The one entry of list named name (see mx_discover_resolve), copied into *path. */
static int resolve_in(const struct mx_model_list *list, const char *name, const char *what,
                      char **path, struct mx_err *err) {
    const struct mx_model_entry *hit = NULL;
    size_t n_hits = 0;
    char others[512] = "";
    for (size_t i = 0; i < list->n; i++) {
        const struct mx_model_entry *e = &list->items[i];
        if (!entry_named(e, name) ||
            (hit && hit->real && e->real && !strcmp(hit->real, e->real)))
            continue; /* the same file reached again */
        n_hits++;
        size_t k = strlen(others);
        snprintf(others + k, sizeof others - k, "%s%s", k ? ", " : "", e->path);
        if (!hit)
            hit = e;
    }
    if (!hit)
        return mx_err_set(err, MX_ENOENT, "%s: no such file, and no %s of that name (see "
                          "mixel list)", name, what);
    if (n_hits > 1)
        return mx_err_set(err, MX_EINVAL, "%s: %zu %ss have that name (%s): give the path",
                          name, n_hits, what, others);
    if (!(*path = strdup(hit->path)))
        return mx_err_set(err, MX_ENOMEM, "out of memory");
    return 0;
}

int mx_discover_resolve(const char *home, const char *cwd, const char *name, char **path,
                        struct mx_err *err) {
    struct mx_model_list list;
    *path = NULL;
    int rc = mx_discover_models(home, cwd, &list, err);
    if (rc == 0)
        rc = resolve_in(&list, name, "model", path, err);
    mx_model_list_free(&list);
    return rc;
}

int mx_discover_sd_resolve(const char *home, const char *cwd, const char *const *dirs,
                           const char *name, char **path, struct mx_err *err) {
    struct mx_model_list list;
    *path = NULL;
    int rc = mx_discover_sd(home, cwd, dirs, 0, &list, err);
    if (rc == 0)
        rc = resolve_in(&list, name, "checkpoint", path, err);
    /* A1111 users name a checkpoint without its extension ("v1-5-pruned-emaonly") */
    static const char *const exts[] = {".safetensors", ".gguf"};
    for (size_t i = 0; rc == MX_ENOENT && i < sizeof exts / sizeof exts[0]; i++) {
        char full[1024];
        if (snprintf(full, sizeof full, "%s%s", name, exts[i]) >= (int)sizeof full)
            break;
        struct mx_err e2 = {0};
        int r2 = resolve_in(&list, full, "checkpoint", path, &e2);
        if (r2 != MX_ENOENT) {
            rc = r2;
            if (err && r2 < 0)
                *err = e2;
            else if (err)
                memset(err, 0, sizeof *err);
        }
    }
    mx_model_list_free(&list);
    return rc;
}

/* One entry per model: name and source, what it is, where it is (all shown inert). */
static void print_entries(FILE *f, const struct mx_model_list *list) {
    for (size_t i = 0; i < list->n; i++) {
        const struct mx_model_entry *e = &list->items[i];
        char desc[512];
        mx_discover_describe(e, desc, sizeof desc);
        fputs("  ", f);
        put_inert(f, e->name);
        fprintf(f, "  [%s]\n      ", mx_model_source_name(e->source));
        put_inert(f, desc);
        fputs("\n      ", f);
        put_inert(f, e->path);
        fputc('\n', f);
    }
}

/* The Stable Diffusion section of mx_discover_print. */
static void print_sd(FILE *f, const char *home, const char *cwd) {
    struct mx_model_list list;
    struct mx_err err = { 0 };
    int rc = mx_discover_sd(home, cwd, NULL, 0, &list, &err);
    fputc('\n', f);
    if (rc < 0) {
        fprintf(f, "checkpoint discovery failed: %s\n", mx_err_msg(&err, rc));
    } else if (list.n == 0) {
        fputs("no Stable Diffusion checkpoints found in stable-diffusion-webui(-forge)/models/"
              "Stable-diffusion, ComfyUI/models/checkpoints, the Hugging Face cache, ~/models or "
              "the current folder.\nGive one to mixel image with -d PATH.safetensors (or a "
              "diffusers folder).\n", f);
    } else {
        fprintf(f, "%zu Stable Diffusion checkpoint%s found (newest first; use -d NAME or "
                "-d PATH):\n", list.n, list.n == 1 ? "" : "s");
        print_entries(f, &list);
        if (list.truncated)
            fprintf(f, "(search stopped after %zu folder entries; some folders were not looked "
                    "at)\n", list.n_visited);
    }
    mx_model_list_free(&list);
}

int mx_discover_print(FILE *f) {
    struct mx_model_list list;
    struct mx_err err = { 0 };
    char cwd[PATH_MAX];
    const char *home = getenv("HOME");
    int rc = mx_discover_models(home, getcwd(cwd, sizeof cwd) ? cwd : NULL, &list, &err);
    if (rc < 0) {
        mx_model_list_free(&list);
        fprintf(f, "model discovery failed: %s\n", mx_err_msg(&err, rc));
        return rc;
    }
    mx_discover_read_meta_all(&list);
    if (list.n == 0) {
        fputs("no GGUF models found in ~/models, the Hugging Face cache, ollama, LM Studio or "
              "the current folder.\nDownload one (for example a Mixtral or Mistral GGUF) and "
              "run: mixel chat --model PATH.gguf\n", f);
    } else {
        fprintf(f, "%zu GGUF model%s found (newest first; use -m NAME or -m PATH):\n", list.n,
                list.n == 1 ? "" : "s");
        print_entries(f, &list);
    }
    if (list.truncated)
        fprintf(f, "(search stopped after %zu folder entries; some folders were not looked at)\n",
                list.n_visited);
    rc = (int)(list.n > INT32_MAX ? INT32_MAX : list.n);
    mx_model_list_free(&list);
    print_sd(f, home, getcwd(cwd, sizeof cwd) ? cwd : NULL);
    return rc;
}

char *mx_discover_sd_default(const char *home, const char *cwd) {
    struct mx_model_list l;
    char *found = NULL;
    if (mx_discover_sd(home, cwd, NULL, 0, &l, NULL) != 0)
        return NULL;
    for (size_t i = 0; i < l.n && !found; i++)
        if (l.items[i].sd_kind && (!strncmp(l.items[i].sd_kind, "SD 1", 4) ||
                                   !strncmp(l.items[i].sd_kind, "SD 2", 4)))
            found = strdup(l.items[i].path);
    mx_model_list_free(&l);
    return found;
}
