/* mapfile.c - see mapfile.h. */
#include "core/base/mapfile.h"

#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/base/log.h"

/* Fills p[0..n) from fd with read(2), resuming after signals and short reads. Returns 0 or
 * the errno of the failure (EIO for a file that shrank under us). */
static int read_all(int fd, char *p, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fd, p + done, n - done > (1u << 30) ? (1u << 30) : n - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? errno : EIO;
        done += (size_t)r;
    }
    return 0;
}

/* Locks [p, p + n) in RAM; a failure is a warning naming RLIMIT_MEMLOCK and the way out. */
static void lock_pages(const char *path, const void *p, size_t n) {
    if (mlock(p, n) == 0)
        return;
    int e = errno;
    struct rlimit rl;
    char lim[32] = "unknown";
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
        if (rl.rlim_cur == RLIM_INFINITY)
            snprintf(lim, sizeof lim, "unlimited");
        else
            snprintf(lim, sizeof lim, "%llu bytes", (unsigned long long)rl.rlim_cur);
    }
    mx_log(MX_LOG_WARN, "%s: --mlock: cannot lock %zu bytes (%s); RLIMIT_MEMLOCK is %s: raise "
           "it (ulimit -l, or memlock in /etc/security/limits.conf) - the model stays loaded, "
           "unlocked", path, n, strerror(e), lim);
}

int mx_map_file(const char *path, size_t min_size, const char *kind, const void **base,
                size_t *size, struct mx_err *err) {
    return mx_map_file_flags(path, min_size, kind, 0, base, size, err);
}

int mx_map_file_flags(const char *path, size_t min_size, const char *kind, unsigned flags,
                      const void **base, size_t *size, struct mx_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mx_err_set(err, errno == ENOENT ? MX_ENOENT : MX_EIO, "%s: %s", path,
                          strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mx_err_set(err, MX_EIO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mx_err_set(err, MX_EINVAL, "%s: not a regular file", path);
    }
    if ((size_t)st.st_size < min_size) {
        close(fd);
        return mx_err_set(err, MX_EFORMAT, "%s: not a %s file (only %lld bytes)", path, kind,
                          (long long)st.st_size);
    }
    size_t n = (size_t)st.st_size;
    void *p;
    int e;
    if (flags & MX_MAP_NO_MMAP) {
        /* anonymous pages, page-aligned like a mapping (tensors keep their alignment) and
         * released by the same munmap */
        p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        e = p == MAP_FAILED ? errno : read_all(fd, p, n);
        close(fd);
        if (p == MAP_FAILED)
            return mx_err_set(err, MX_ENOMEM, "%s: --no-mmap: cannot allocate %zu bytes: %s",
                              path, n, strerror(e));
        if (e) {
            munmap(p, n ? n : 1);
            return mx_err_set(err, MX_EIO, "%s: read: %s", path, strerror(e));
        }
        mprotect(p, n ? n : 1, PROT_READ); /* the weights are read-only either way */
    } else {
        p = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
        e = errno;
        close(fd);
        if (p == MAP_FAILED)
            return mx_err_set(err, e == ENOMEM ? MX_ENOMEM : MX_EIO, "%s: mmap: %s", path,
                              strerror(e));
    }
    if (flags & MX_MAP_MLOCK)
        lock_pages(path, p, n);
    *base = p;
    *size = (size_t)st.st_size;
    return 0;
}

void mx_map_release(const void *p, size_t n) {
    long pg = sysconf(_SC_PAGESIZE);
    if (!p || n == 0 || pg <= 0)
        return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~((uintptr_t)pg - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED); /* advice: failure only costs memory */
}

void mx_map_prefault(const void *p, size_t n) {
    long pg = sysconf(_SC_PAGESIZE);
    if (!p || n == 0 || pg <= 0)
        return;
    uintptr_t a = (uintptr_t)p & ~((uintptr_t)pg - 1);
    uintptr_t b = ((uintptr_t)p + n + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
#ifdef MADV_POPULATE_READ
    if (madvise((void *)a, b - a, MADV_POPULATE_READ) == 0)
        return;
#endif
    /* older kernels: touch each page (the volatile read cannot be dropped) */
    volatile unsigned char sink = 0;
    for (uintptr_t q = a < (uintptr_t)p ? (uintptr_t)p : a; q < (uintptr_t)p + n;
         q = (q & ~((uintptr_t)pg - 1)) + (uintptr_t)pg)
        sink ^= *(const volatile unsigned char *)q;
    (void)sink;
}

void mx_unmap_file(const void *base, size_t size) {
    if (base)
        munmap((void *)base, size);
}

void *mx_map_reserve(size_t size, const char *path, struct mx_err *err) {
    void *p = mmap(NULL, size ? size : 1, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
        mx_err_set(err, MX_ENOMEM, "%s: cannot reserve %zu bytes of address space: %s", path,
                   size, strerror(errno));
        return NULL;
    }
    return p;
}

int mx_map_file_at(const char *path, unsigned flags, void *at, size_t size, struct mx_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return mx_err_set(err, errno == ENOENT ? MX_ENOENT : MX_EIO, "%s: %s", path,
                          strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size != size) {
        close(fd);
        return mx_err_set(err, MX_EIO, "%s: not a regular file of %zu bytes", path, size);
    }
    int e = 0;
    if (flags & MX_MAP_NO_MMAP) {
        if (mmap(at, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1,
                 0) == MAP_FAILED)
            e = errno;
        else if ((e = read_all(fd, at, size)) == 0)
            mprotect(at, size, PROT_READ);
    } else if (mmap(at, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0) == MAP_FAILED) {
        e = errno;
    }
    close(fd);
    if (e)
        return mx_err_set(err, e == ENOMEM ? MX_ENOMEM : MX_EIO, "%s: %s", path, strerror(e));
    if (flags & MX_MAP_MLOCK)
        lock_pages(path, at, size);
    return 0;
}
