/* model_hash.c - SD checkpoint hashes (A1111's AutoV2) with a JSON cache keyed by path, size and
 * mtime (see model_hash.h).
 *
 * Workload: the first generation with a new checkpoint hashes the whole file (2-7 GB, sequential
 * 1 MiB reads; about 1 s per GB with SHA-NI, bounded by the disk otherwise); every later call is
 * one stat() and one small JSON read.
 */
#include "app/model_hash.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/sha256.h"
#include "history/paths.h"

int mx_sd_model_hash_cache_path(char *buf, size_t size, struct mx_err *err) {
    int rc = mx_path_cache_dir(buf, size, err);
    if (rc < 0)
        return rc;
    size_t n = strlen(buf);
    if ((size_t)snprintf(buf + n, size - n, "/model_hashes.json") >= size - n)
        return mx_err_set(err, MX_ERANGE, "model hash cache: path too long");
    return 0;
}

/* The file to hash for path: path itself, or a diffusers folder's UNet weights. Writes it into
 * file (PATH_MAX bytes) with its stat in *st. */
static int model_file(const char *path, char *file, struct stat *st, struct mx_err *err) {
    if (stat(path, st) != 0)
        return mx_err_set(err, errno == ENOENT ? MX_ENOENT : errno == EACCES ? MX_EPERM : MX_EIO,
                          "%s: %s", path, strerror(errno));
    if (!S_ISDIR(st->st_mode)) {
        if (!S_ISREG(st->st_mode))
            return mx_err_set(err, MX_EINVAL, "%s: not a regular file", path);
        if (snprintf(file, PATH_MAX, "%s", path) >= PATH_MAX)
            return mx_err_set(err, MX_ERANGE, "%s: path too long", path);
        return 0;
    }
    static const char *const unet[] = {
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin",
    };
    for (size_t i = 0; i < sizeof unet / sizeof unet[0]; i++) {
        if (snprintf(file, PATH_MAX, "%s/%s", path, unet[i]) >= PATH_MAX)
            return mx_err_set(err, MX_ERANGE, "%s: path too long", path);
        if (stat(file, st) == 0 && S_ISREG(st->st_mode))
            return 0;
    }
    return mx_err_set(err, MX_EINVAL, "%s: a folder without unet/diffusion_pytorch_model."
                      "{safetensors,fp16.safetensors,bin}: not a diffusers checkpoint", path);
}

/* Hashes the whole file into out (64 hex digits). */
static int hash_file(const char *file, char out[65], struct mx_err *err) {
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mx_err_set(err, errno == ENOENT ? MX_ENOENT : errno == EACCES ? MX_EPERM : MX_EIO,
                          "%s: %s", file, strerror(errno));
#ifdef POSIX_FADV_SEQUENTIAL
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
#endif
    size_t cap = 1u << 20;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return mx_err_set(err, MX_ENOMEM, "%s: no memory for the read buffer", file);
    }
    struct mx_sha256 s;
    mx_sha256_init(&s);
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = mx_err_set(err, MX_EIO, "%s: read failed after %llu bytes: %s", file,
                            (unsigned long long)s.n_bytes, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        mx_sha256_update(&s, buf, (size_t)n);
    }
    free(buf);
    close(fd);
    if (rc == 0) {
        uint8_t d[32];
        mx_sha256_final(&s, d);
        mx_sha256_to_hex(d, out);
    }
    return rc;
}

/* The cache's JSON object (a new empty one when the file is missing or unreadable), or NULL
 * when out of memory. */
static json_t *cache_load(const char *cpath) {
    json_t *root = json_load_file(cpath, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(root) || !json_is_object(json_object_get(root, "sha256"))) {
        json_decref(root);
        root = json_pack("{s:{}}", "sha256");
    }
    return root;
}

/* Whether s is 64 lowercase hex digits. */
static bool is_hex64(const char *s) {
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return i == 64;
}

/* Writes root to cpath through a unique temporary file and a rename; failures are ignored (the
 * cache is only a cache). */
static void cache_store(const char *cpath, json_t *root) {
    char dir[PATH_MAX], tmp[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s", cpath);
    char *slash = strrchr(dir, '/');
    if (!slash)
        return;
    *slash = '\0';
    if (mx_mkdir_p(dir, NULL) != 0)
        return;
    snprintf(tmp, sizeof tmp, "%s.%ld.tmp", cpath, (long)getpid());
    if (json_dump_file(root, tmp, JSON_INDENT(1) | JSON_SORT_KEYS) != 0 ||
        rename(tmp, cpath) != 0)
        unlink(tmp);
}

int mx_sd_model_sha256(const char *path, char out[65], bool *from_cache, struct mx_err *err) {
    if (!path || !out)
        return mx_err_set(err, MX_EINVAL, "model hash: NULL argument");
    if (from_cache)
        *from_cache = false;
    char file[PATH_MAX];
    struct stat st;
    int rc = model_file(path, file, &st, err);
    if (rc < 0)
        return rc;
    char *real = realpath(file, NULL);
    const char *key = real ? real : file;
    char cpath[PATH_MAX];
    json_t *root = NULL;
    if (mx_sd_model_hash_cache_path(cpath, sizeof cpath, NULL) == 0) {
        root = cache_load(cpath);
        json_t *e = root ? json_object_get(json_object_get(root, "sha256"), key) : NULL;
        const char *h = json_string_value(json_object_get(e, "sha256"));
        if (h && is_hex64(h) &&
            json_integer_value(json_object_get(e, "size")) == (json_int_t)st.st_size &&
            json_integer_value(json_object_get(e, "mtime")) == (json_int_t)st.st_mtim.tv_sec &&
            json_integer_value(json_object_get(e, "mtime_ns")) ==
                (json_int_t)st.st_mtim.tv_nsec) {
            memcpy(out, h, 65);
            if (from_cache)
                *from_cache = true;
            json_decref(root);
            free(real);
            return 0;
        }
    } else {
        cpath[0] = '\0';
    }
    rc = hash_file(file, out, err);
    if (rc == 0 && root) {
        // Re-read just before writing: another process may have added entries meanwhile.
        json_decref(root);
        root = cache_load(cpath);
        json_t *e = json_pack("{s:s, s:I, s:I, s:I}", "sha256", out, "size",
                              (json_int_t)st.st_size, "mtime", (json_int_t)st.st_mtim.tv_sec,
                              "mtime_ns", (json_int_t)st.st_mtim.tv_nsec);
        // json_object_set_new takes e even when it fails.
        if (!root || !e)
            json_decref(e);
        else if (json_object_set_new(json_object_get(root, "sha256"), key, e) == 0)
            cache_store(cpath, root);
    }
    json_decref(root);
    free(real);
    return rc;
}

int mx_sd_model_hash(const char *path, char out[11], struct mx_err *err) {
    char full[65];
    int rc = mx_sd_model_sha256(path, full, NULL, err);
    if (rc < 0)
        return rc;
    memcpy(out, full, 10);
    out[10] = '\0';
    return 0;
}
