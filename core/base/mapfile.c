/* mapfile.c - see mapfile.h. */
#include "core/base/mapfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int mx_map_file(const char *path, size_t min_size, const char *kind, const void **base,
                size_t *size, struct mx_err *err) {
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
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (p == MAP_FAILED)
        return mx_err_set(err, e == ENOMEM ? MX_ENOMEM : MX_EIO, "%s: mmap: %s", path,
                          strerror(e));
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

void mx_unmap_file(const void *base, size_t size) {
    if (base)
        munmap((void *)base, size);
}
