/* kvsnap.c - KV-cache snapshot files (format in kvsnap.h): atomic writes, validated reads, a
 * least-recently-used size cap over the kv/ folder, and the cheap model-file fingerprint.
 *
 * Workload: a few files of hundreds of MB to several GB (a 16K-token Mixtral 8x22B cache is
 * ~3.7 GB in f16), written when a session is left and read once on resume. So the checksum is
 * XXH64 (several GB/s, a fraction of the disk time) rather than a byte-wise CRC, and payloads are
 * streamed through the caller's buffers instead of being copied here.
 */
#include "history/kvsnap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/base/util.h"
#include "history/paths.h"

/* ---- XXH64 --------------------------------------------------------------------------------- */
/* Ref: https://github.com/Cyan4973/xxHash/blob/v0.8.2/doc/xxhash_spec.md (XXH64) */

#define P1 0x9E3779B185EBCA87ull
#define P2 0xC2B2AE3D27D4EB4Full
#define P3 0x165667B19E3779F9ull
#define P4 0x85EBCA77C2B2AE63ull
#define P5 0x27D4EB2F165667C5ull

static uint64_t rotl(uint64_t x, int r) {
    return (x << r) | (x >> (64 - r));
}

/* Little-endian loads: one unaligned load on little-endian hosts (the hash's hot loop). */
static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static void wr64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t xround(uint64_t acc, uint64_t in) {
    acc += in * P2;
    acc = rotl(acc, 31);
    return acc * P1;
}

static uint64_t xmerge(uint64_t acc, uint64_t v) {
    acc ^= xround(0, v);
    return acc * P1 + P4;
}

void mx_xxh64_init(struct mx_xxh64 *s, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->v[0] = seed + P1 + P2;
    s->v[1] = seed + P2;
    s->v[2] = seed;
    s->v[3] = seed - P1;
}

static void stripe(uint64_t v[4], const uint8_t *p) {
    v[0] = xround(v[0], rd64(p));
    v[1] = xround(v[1], rd64(p + 8));
    v[2] = xround(v[2], rd64(p + 16));
    v[3] = xround(v[3], rd64(p + 24));
}

void mx_xxh64_update(struct mx_xxh64 *s, const void *data, size_t n) {
    const uint8_t *p = data;
    if (n == 0)
        return; /* data may be NULL then */
    s->total += n;
    if (s->nbuf) {
        size_t k = MX_MIN(n, 32 - (size_t)s->nbuf);
        memcpy(s->buf + s->nbuf, p, k);
        s->nbuf += (uint32_t)k;
        p += k;
        n -= k;
        if (s->nbuf < 32)
            return;
        stripe(s->v, s->buf);
        s->nbuf = 0;
    }
    uint64_t v[4] = {s->v[0], s->v[1], s->v[2], s->v[3]};
    for (; n >= 32; p += 32, n -= 32)
        stripe(v, p);
    memcpy(s->v, v, sizeof v);
    memcpy(s->buf, p, n);
    s->nbuf = (uint32_t)n;
}

uint64_t mx_xxh64_digest(const struct mx_xxh64 *s) {
    uint64_t h;
    if (s->total >= 32) {
        h = rotl(s->v[0], 1) + rotl(s->v[1], 7) + rotl(s->v[2], 12) + rotl(s->v[3], 18);
        for (int i = 0; i < 4; i++)
            h = xmerge(h, s->v[i]);
    } else {
        h = s->v[2] + P5; /* v[2] is the seed until a stripe is consumed */
    }
    h += s->total;
    const uint8_t *p = s->buf;
    size_t n = s->nbuf;
    for (; n >= 8; p += 8, n -= 8) {
        h ^= xround(0, rd64(p));
        h = rotl(h, 27) * P1 + P4;
    }
    if (n >= 4) {
        h ^= (uint64_t)rd32(p) * P1;
        h = rotl(h, 23) * P2 + P3;
        p += 4;
        n -= 4;
    }
    for (; n > 0; p++, n--) {
        h ^= *p * P5;
        h = rotl(h, 11) * P1;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

uint64_t mx_xxh64(const void *data, size_t n, uint64_t seed) {
    struct mx_xxh64 s;
    mx_xxh64_init(&s, seed);
    mx_xxh64_update(&s, data, n);
    return mx_xxh64_digest(&s);
}

/* ---- helpers ------------------------------------------------------------------------------- */

static int errno_code(int e) {
    return e == ENOENT ? MX_ENOENT
         : e == EACCES || e == EPERM || e == EROFS ? MX_EPERM
         : e == ENOSPC || e == EDQUOT ? MX_EFULL : MX_EIO;
}

/* Full write; returns 0 or -errno. */
static int write_all(int fd, const void *data, size_t n) {
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t k = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Full read of n bytes at offset off, or at the current offset when off < 0; returns the bytes
 * read (short at end of file) or -errno. */
static ssize_t read_full(int fd, void *data, size_t n, off_t off) {
    uint8_t *p = data;
    size_t got = 0;
    while (got < n) {
        size_t want = MX_MIN(n - got, (size_t)1 << 30);
        ssize_t k = off < 0 ? read(fd, p + got, want) : pread(fd, p + got, want, off + (off_t)got);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

/* ---- model hash ---------------------------------------------------------------------------- */

int mx_kvsnap_model_hash(const char *path, uint64_t *hash, struct mx_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mx_err_set(err, errno_code(errno), "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return mx_err_set(err, MX_EIO, "%s: not a regular file", path);
    }
    enum { HEAD = 1 << 20, SAMPLE = 64 << 10, N_SAMPLES = 16 };
    uint8_t *buf = malloc(HEAD);
    if (!buf) {
        close(fd);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    }
    struct mx_xxh64 s;
    mx_xxh64_init(&s, 0);
    uint8_t sz[8];
    uint64_t size = (uint64_t)st.st_size;
    wr64(sz, size);
    mx_xxh64_update(&s, sz, 8);
    /* ranges: head, evenly spaced samples, tail (clipped to the file; small files are read
     * whole, in pieces, overlapping reads harmless) */
    struct { uint64_t off, len; } r[N_SAMPLES + 2];
    int nr = 0;
    r[nr].off = 0;
    r[nr++].len = MX_MIN(size, (uint64_t)HEAD);
    for (int i = 1; i <= N_SAMPLES; i++) {
        uint64_t off = size / (N_SAMPLES + 1) * (uint64_t)i;
        r[nr].off = off;
        r[nr++].len = MX_MIN((uint64_t)SAMPLE, size - off);
    }
    r[nr].off = size > HEAD ? size - HEAD : 0;
    r[nr++].len = MX_MIN(size, (uint64_t)HEAD);
    int rc = 0;
    for (int i = 0; i < nr && rc == 0; i++) {
        ssize_t k = read_full(fd, buf, (size_t)r[i].len, (off_t)r[i].off);
        if (k < 0)
            rc = mx_err_set(err, errno_code((int)-k), "%s: read: %s", path, strerror((int)-k));
        else if ((uint64_t)k != r[i].len)
            rc = mx_err_set(err, MX_EIO, "%s: file shrank while hashing", path);
        else
            mx_xxh64_update(&s, buf, (size_t)k);
    }
    free(buf);
    close(fd);
    if (rc == 0)
        *hash = mx_xxh64_digest(&s);
    return rc;
}

void mx_kvsnap_hash_hex(uint64_t hash, char out[17]) {
    snprintf(out, 17, "%016llx", (unsigned long long)hash);
}

/* ---- paths --------------------------------------------------------------------------------- */

int mx_kvsnap_dir(char *buf, size_t size, struct mx_err *err) {
    char d[4000];
    int rc = mx_path_data_dir(d, sizeof d, err);
    if (rc < 0)
        return rc;
    int n = snprintf(buf, size, "%s/kv", d);
    if (n < 0 || (size_t)n >= size)
        return mx_err_set(err, MX_ERANGE, "%s: path too long", d);
    return 0;
}

int mx_kvsnap_path(char *buf, size_t size, int64_t session, struct mx_err *err) {
    char d[4000];
    int rc = mx_kvsnap_dir(d, sizeof d, err);
    if (rc < 0)
        return rc;
    int n = snprintf(buf, size, "%s/%lld.kv", d, (long long)session);
    if (n < 0 || (size_t)n >= size)
        return mx_err_set(err, MX_ERANGE, "%s: path too long", d);
    return 0;
}

/* ---- header -------------------------------------------------------------------------------- */

static void header_encode(uint8_t h[MX_KVSNAP_HEADER_SIZE], const struct mx_kvsnap_info *in) {
    memset(h, 0, MX_KVSNAP_HEADER_SIZE);
    memcpy(h, MX_KVSNAP_MAGIC, 8);
    wr32(h + 8, MX_KVSNAP_VERSION);
    wr32(h + 12, MX_KVSNAP_HEADER_SIZE);
    wr64(h + 16, in->model_hash);
    wr32(h + 24, in->n_ctx);
    wr32(h + 28, in->kv_type);
    wr32(h + 32, in->n_layer);
    wr32(h + 36, 0);
    wr64(h + 40, in->n_tokens);
    wr64(h + 48, in->payload_size);
}

/* Token ids as little-endian bytes, in place (a no-op on little-endian machines). */
static void tokens_to_le(uint8_t *dst, const int32_t *src, size_t n) {
    for (size_t i = 0; i < n; i++)
        wr32(dst + 4 * i, (uint32_t)src[i]);
}

/* ---- writer -------------------------------------------------------------------------------- */

struct mx_kvsnap_writer {
    int fd;
    char path[4096];
    char tmp[4120];
    struct mx_xxh64 h;      /* checksum so far */
    uint64_t want, done;    /* payload bytes expected / written */
    bool failed;
};

void mx_kvsnap_write_abort(struct mx_kvsnap_writer *w) {
    if (!w)
        return;
    if (w->fd >= 0)
        close(w->fd);
    unlink(w->tmp);
    free(w);
}

int mx_kvsnap_write_begin(struct mx_kvsnap_writer **out, const char *path,
                          const struct mx_kvsnap_info *info, const int32_t *tokens,
                          struct mx_err *err) {
    *out = NULL;
    if (info->n_tokens > MX_KVSNAP_MAX_TOKENS || (info->n_tokens && !tokens))
        return mx_err_set(err, MX_EINVAL, "%s: bad token count %llu", path,
                          (unsigned long long)info->n_tokens);
    if (strlen(path) >= 4096)
        return mx_err_set(err, MX_ERANGE, "snapshot path too long");
    struct mx_kvsnap_writer *w = calloc(1, sizeof *w);
    if (!w)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    w->fd = -1;
    strcpy(w->path, path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%ld", path, (long)getpid());
    w->want = info->payload_size;
    char dir[4096];
    strcpy(dir, path);
    char *slash = strrchr(dir, '/');
    int rc;
    if (slash && slash != dir) {
        *slash = '\0';
        if ((rc = mx_mkdir_p(dir, err)) < 0) {
            free(w);
            return rc;
        }
    }
    unlink(w->tmp); /* a leftover of this pid from an earlier crash */
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        rc = mx_err_set(err, errno_code(errno), "%s: %s", w->tmp, strerror(errno));
        free(w);
        return rc;
    }
    uint8_t hdr[MX_KVSNAP_HEADER_SIZE];
    header_encode(hdr, info);
    mx_xxh64_init(&w->h, 0);
    mx_xxh64_update(&w->h, hdr, 56);
    int e = write_all(w->fd, hdr, sizeof hdr);
    /* tokens in chunks, so a 16M-token bound never means a 64 MB temporary */
    uint8_t chunk[4096];
    for (uint64_t i = 0; e == 0 && i < info->n_tokens; i += sizeof chunk / 4) {
        size_t k = (size_t)MX_MIN(info->n_tokens - i, (uint64_t)(sizeof chunk / 4));
        tokens_to_le(chunk, tokens + i, k);
        mx_xxh64_update(&w->h, chunk, 4 * k);
        e = write_all(w->fd, chunk, 4 * k);
    }
    if (e < 0) {
        rc = mx_err_set(err, errno_code(-e), "%s: write: %s", w->tmp, strerror(-e));
        mx_kvsnap_write_abort(w);
        return rc;
    }
    *out = w;
    return 0;
}

int mx_kvsnap_write(struct mx_kvsnap_writer *w, const void *data, size_t n, struct mx_err *err) {
    if (w->failed)
        return mx_err_set(err, MX_EINVAL, "%s: write after an error", w->path);
    if (n > w->want - w->done) {
        w->failed = true;
        return mx_err_set(err, MX_EINVAL, "%s: payload longer than announced (%llu bytes)",
                          w->path, (unsigned long long)w->want);
    }
    int e = write_all(w->fd, data, n);
    if (e < 0) {
        w->failed = true;
        return mx_err_set(err, errno_code(-e), "%s: write: %s", w->tmp, strerror(-e));
    }
    mx_xxh64_update(&w->h, data, n);
    w->done += n;
    return 0;
}

int mx_kvsnap_write_commit(struct mx_kvsnap_writer *w, struct mx_err *err) {
    int rc = 0;
    if (w->failed || w->done != w->want) {
        rc = mx_err_set(err, MX_EINVAL, "%s: payload incomplete (%llu of %llu bytes)", w->path,
                        (unsigned long long)w->done, (unsigned long long)w->want);
        goto fail;
    }
    uint8_t sum[8];
    wr64(sum, mx_xxh64_digest(&w->h));
    if (pwrite(w->fd, sum, 8, 56) != 8 || fsync(w->fd) != 0) {
        rc = mx_err_set(err, errno_code(errno), "%s: %s", w->tmp, strerror(errno));
        goto fail;
    }
    if (close(w->fd) != 0) {
        w->fd = -1;
        rc = mx_err_set(err, errno_code(errno), "%s: close: %s", w->tmp, strerror(errno));
        goto fail;
    }
    w->fd = -1;
    if (rename(w->tmp, w->path) != 0) {
        rc = mx_err_set(err, errno_code(errno), "%s: rename: %s", w->path, strerror(errno));
        goto fail;
    }
    /* the rename itself must reach the disk for the new file to survive a power cut */
    char dir[4096];
    strcpy(dir, w->path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    int dfd = open(slash ? (slash == dir ? "/" : dir) : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(w);
    return 0;
fail:
    mx_kvsnap_write_abort(w);
    return rc;
}

int mx_kvsnap_save(const char *path, const struct mx_kvsnap_info *info, const int32_t *tokens,
                   const void *payload, struct mx_err *err) {
    struct mx_kvsnap_writer *w;
    int rc = mx_kvsnap_write_begin(&w, path, info, tokens, err);
    if (rc < 0)
        return rc;
    /* in pieces: write() moves at most ~2 GB per call anyway */
    const uint8_t *p = payload;
    for (uint64_t off = 0; off < info->payload_size && rc == 0;) {
        size_t k = (size_t)MX_MIN(info->payload_size - off, (uint64_t)1 << 30);
        rc = mx_kvsnap_write(w, p + off, k, err);
        off += k;
    }
    if (rc < 0) {
        mx_kvsnap_write_abort(w);
        return rc;
    }
    return mx_kvsnap_write_commit(w, err);
}

/* ---- reader -------------------------------------------------------------------------------- */

struct mx_kvsnap_reader {
    int fd;
    char path[4096];
    struct mx_kvsnap_info info;
    int32_t *tokens;        /* info.n_tokens ids, owned */
    uint64_t checksum;      /* as stored */
    struct mx_xxh64 h;      /* over what was read */
    uint64_t done;          /* payload bytes read */
};

void mx_kvsnap_close(struct mx_kvsnap_reader *r) {
    if (!r)
        return;
    if (r->fd >= 0)
        close(r->fd);
    free(r->tokens);
    free(r);
}

int mx_kvsnap_open(struct mx_kvsnap_reader **out, const char *path, uint64_t model_hash,
                   struct mx_kvsnap_info *info, struct mx_err *err) {
    *out = NULL;
    struct mx_kvsnap_reader *r = calloc(1, sizeof *r);
    if (!r)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    snprintf(r->path, sizeof r->path, "%s", path);
    int rc;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        rc = mx_err_set(err, errno_code(errno), "%s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(r->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: not a regular file", path);
        goto fail;
    }
    uint8_t h[MX_KVSNAP_HEADER_SIZE];
    ssize_t k = read_full(r->fd, h, sizeof h, -1);
    if (k < 0) {
        rc = mx_err_set(err, errno_code((int)-k), "%s: read: %s", path, strerror((int)-k));
        goto fail;
    }
    if (k < 12 || memcmp(h, MX_KVSNAP_MAGIC, 8) != 0) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: not a mixel KV snapshot (bad magic or %zd-byte "
                        "file)", path, k);
        goto fail;
    }
    uint32_t version = rd32(h + 8);
    if (version != MX_KVSNAP_VERSION) {
        rc = mx_err_set(err, MX_EUNSUP, "%s: snapshot version %u, this mixel reads %u", path,
                        version, MX_KVSNAP_VERSION);
        goto fail;
    }
    if (k < MX_KVSNAP_HEADER_SIZE || rd32(h + 12) != MX_KVSNAP_HEADER_SIZE) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: truncated or bad header (%zd bytes, size field "
                        "%u)", path, k, k >= 16 ? rd32(h + 12) : 0);
        goto fail;
    }
    struct mx_kvsnap_info *in = &r->info;
    in->model_hash = rd64(h + 16);
    in->n_ctx = rd32(h + 24);
    in->kv_type = rd32(h + 28);
    in->n_layer = rd32(h + 32);
    in->n_tokens = rd64(h + 40);
    in->payload_size = rd64(h + 48);
    r->checksum = rd64(h + 56);
    if (rd32(h + 36) != 0) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: unknown flags %#x", path, rd32(h + 36));
        goto fail;
    }
    if (in->n_tokens > MX_KVSNAP_MAX_TOKENS || in->n_tokens > in->n_ctx) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: %llu tokens for a context of %u", path,
                        (unsigned long long)in->n_tokens, in->n_ctx);
        goto fail;
    }
    /* the file must end exactly after the payload: catches truncation before any big read */
    uint64_t expect = MX_KVSNAP_HEADER_SIZE + 4 * in->n_tokens;
    if (in->payload_size > UINT64_MAX - expect ||
        expect + in->payload_size != (uint64_t)st.st_size) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: file is %lld bytes, header says %llu + %llu "
                        "(truncated or damaged)", path, (long long)st.st_size,
                        (unsigned long long)expect, (unsigned long long)in->payload_size);
        goto fail;
    }
    if (in->model_hash != model_hash) {
        rc = mx_err_set(err, MX_EINVAL, "%s: snapshot is for another model (hash %016llx, "
                        "this model %016llx)", path, (unsigned long long)in->model_hash,
                        (unsigned long long)model_hash);
        goto fail;
    }
    mx_xxh64_init(&r->h, 0);
    mx_xxh64_update(&r->h, h, 56);
    r->tokens = malloc(in->n_tokens ? 4 * in->n_tokens : 1);
    if (!r->tokens) {
        rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
        goto fail;
    }
    k = read_full(r->fd, r->tokens, 4 * in->n_tokens, -1);
    if (k != (ssize_t)(4 * in->n_tokens)) {
        rc = mx_err_set(err, MX_EFORMAT, "%s: token ids truncated", path);
        goto fail;
    }
    mx_xxh64_update(&r->h, r->tokens, 4 * in->n_tokens);
    for (uint64_t i = 0; i < in->n_tokens; i++)
        r->tokens[i] = (int32_t)rd32((const uint8_t *)&r->tokens[i]);
    *info = *in;
    *out = r;
    return 0;
fail:
    mx_kvsnap_close(r);
    return rc;
}

const int32_t *mx_kvsnap_tokens(const struct mx_kvsnap_reader *r) {
    return r->tokens;
}

int mx_kvsnap_read(struct mx_kvsnap_reader *r, void *buf, size_t n, struct mx_err *err) {
    if (n > r->info.payload_size - r->done)
        return mx_err_set(err, MX_EINVAL, "%s: read past the payload", r->path);
    ssize_t k = read_full(r->fd, buf, n, -1);
    if (k < 0)
        return mx_err_set(err, errno_code((int)-k), "%s: read: %s", r->path, strerror((int)-k));
    if ((size_t)k != n)
        return mx_err_set(err, MX_EFORMAT, "%s: payload truncated", r->path);
    mx_xxh64_update(&r->h, buf, n);
    r->done += n;
    return 0;
}

int mx_kvsnap_read_end(struct mx_kvsnap_reader *r, struct mx_err *err) {
    if (r->done != r->info.payload_size)
        return mx_err_set(err, MX_EINVAL, "%s: %llu payload bytes left unread", r->path,
                          (unsigned long long)(r->info.payload_size - r->done));
    uint64_t got = mx_xxh64_digest(&r->h);
    if (got != r->checksum)
        return mx_err_set(err, MX_EFORMAT, "%s: checksum mismatch (stored %016llx, computed "
                          "%016llx): damaged snapshot", r->path,
                          (unsigned long long)r->checksum, (unsigned long long)got);
    futimens(r->fd, NULL); /* recently used, for the LRU cap; failure only ages it */
    return 0;
}

int mx_kvsnap_load(const char *path, uint64_t model_hash, size_t max_payload,
                   struct mx_kvsnap_info *info, int32_t **tokens, void **payload,
                   struct mx_err *err) {
    *tokens = NULL;
    *payload = NULL;
    struct mx_kvsnap_reader *r;
    struct mx_kvsnap_info in;
    int rc = mx_kvsnap_open(&r, path, model_hash, &in, err);
    if (rc < 0)
        return rc;
    if (in.payload_size > max_payload || in.payload_size > SIZE_MAX) {
        mx_kvsnap_close(r);
        return mx_err_set(err, MX_ERANGE, "%s: payload of %llu bytes over the limit %zu", path,
                          (unsigned long long)in.payload_size, max_payload);
    }
    void *p = in.payload_size ? malloc((size_t)in.payload_size) : NULL;
    if (in.payload_size && !p) {
        mx_kvsnap_close(r);
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", path);
    }
    if ((rc = mx_kvsnap_read(r, p, (size_t)in.payload_size, err)) < 0 ||
        (rc = mx_kvsnap_read_end(r, err)) < 0) {
        free(p);
        mx_kvsnap_close(r);
        return rc;
    }
    /* hand the token array over instead of copying it */
    *tokens = r->tokens;
    r->tokens = NULL;
    mx_kvsnap_close(r);
    *payload = p;
    *info = in;
    return 0;
}

size_t mx_kvsnap_common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t n = MX_MIN(na, nb), i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

/* ---- LRU cap ------------------------------------------------------------------------------- */

struct kvfile {
    char name[256];
    uint64_t size;
    struct timespec mtime;
};

static int by_mtime(const void *a, const void *b) {
    const struct kvfile *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec)
        return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec)
        return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), k = strlen(suf);
    return n >= k && !strcmp(s + n - k, suf);
}

int mx_kvsnap_evict(const char *dir, uint64_t cap, const char *keep, uint64_t *freed,
                    struct mx_err *err) {
    if (freed)
        *freed = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return 0;
        return mx_err_set(err, errno_code(errno), "%s: %s", dir, strerror(errno));
    }
    const char *keep_name = keep ? strrchr(keep, '/') : NULL;
    keep_name = keep_name ? keep_name + 1 : keep;
    struct kvfile *v = NULL;
    size_t n = 0, vcap = 0;
    uint64_t total = 0, removed = 0;
    time_t now = time(NULL);
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strlen(e->d_name) >= sizeof v->name)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (strstr(e->d_name, ".kv.tmp.")) {
            if (now - st.st_mtime > 3600 && unlinkat(dirfd(d), e->d_name, 0) == 0)
                removed += (uint64_t)st.st_size;
            continue;
        }
        if (!ends_with(e->d_name, ".kv"))
            continue;
        if (n == vcap) {
            vcap = vcap ? vcap * 2 : 32;
            struct kvfile *nv = realloc(v, vcap * sizeof *v);
            if (!nv) {
                rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", dir);
                goto done;
            }
            v = nv;
        }
        snprintf(v[n].name, sizeof v[n].name, "%s", e->d_name);
        v[n].size = (uint64_t)st.st_size;
        v[n].mtime = st.st_mtim;
        total += v[n].size;
        n++;
    }
    qsort(v, n, sizeof *v, by_mtime);
    for (size_t i = 0; i < n && total > cap; i++) {
        if (keep_name && !strcmp(v[i].name, keep_name))
            continue;
        if (unlinkat(dirfd(d), v[i].name, 0) == 0) {
            total -= v[i].size;
            removed += v[i].size;
        }
    }
done:
    free(v);
    closedir(d);
    if (freed)
        *freed = removed;
    return rc;
}
