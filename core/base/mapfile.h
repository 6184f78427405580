/* mapfile.h - read-only memory mapping of a whole model file, the one place that opens, checks
 * and maps the files whose contents are then used in place (DESIGN.md: files are mapped, not
 * copied). */
#ifndef MX_MAPFILE_H
#define MX_MAPFILE_H

#include <stddef.h>

#include "core/base/err.h"

/* Maps path read-only. A file that is not a regular file, or shorter than min_size bytes, is
 * refused with "path: not a KIND file (only N bytes)" (kind: "GGUF", "safetensors"). On success
 * *base and *size describe the mapping (unmap with mx_unmap_file); on failure they are untouched.
 * Errors: MX_ENOENT, MX_EIO, MX_EINVAL (not a regular file), MX_EFORMAT (too short), MX_ENOMEM. */
int mx_map_file(const char *path, size_t min_size, const char *kind, const void **base,
                size_t *size, struct mx_err *err);

/* How mx_map_file_flags brings the file in. */
#define MX_MAP_NO_MMAP 1u /* read the whole file into anonymous memory instead of mapping it:
                           * for file systems where mapping is slow or impossible (network,
                           * FUSE) and for users who want the weights resident from the start */
#define MX_MAP_MLOCK   2u /* lock the pages in RAM (mlock) so the kernel never pages them out;
                           * a failure (RLIMIT_MEMLOCK) is a warning with the limit, not an
                           * error, as llama.cpp does */

/* mx_map_file with flags (MX_MAP_*; 0 is mx_map_file). The memory is released with
 * mx_unmap_file either way. Errors as mx_map_file, plus MX_EIO for a short read. */
int mx_map_file_flags(const char *path, size_t min_size, const char *kind, unsigned flags,
                      const void **base, size_t *size, struct mx_err *err);

void mx_unmap_file(const void *base, size_t size); /* NULL ok */

/* Address space for several files side by side (split GGUFs: one model over shards): size bytes
 * reserved without access, released with mx_unmap_file. Returns NULL (err set) on failure. */
void *mx_map_reserve(size_t size, const char *path, struct mx_err *err);

/* Brings path (exactly size bytes, as a stat said) in at `at`, inside a mx_map_reserve region,
 * mapped or read (MX_MAP_NO_MMAP) read-only, and locked with MX_MAP_MLOCK. Returns 0, or
 * MX_ENOENT / MX_EIO (also a file whose size changed) / MX_ENOMEM with err set. */
int mx_map_file_at(const char *path, unsigned flags, void *at, size_t size, struct mx_err *err);

/* Drops the whole pages inside [p, p + n) of a mapping made by mx_map_file from this process's
 * resident memory (madvise MADV_DONTNEED): for bytes copied elsewhere (repacked weights) that
 * will not be read again. The mapping stays valid: a later read faults the page back in from
 * the file. Partial pages at either end are kept (they may hold neighbouring tensors). */
void mx_map_release(const void *p, size_t n);

/* Reads the mapped pages of p[0..n) into memory now (MADV_POPULATE_READ, or a read of one byte
 * per page on kernels before 5.14), so that a load's time is spent while it shows progress, not
 * in the first answer's page faults. Advice: nothing fails. */
void mx_map_prefault(const void *p, size_t n);

#endif
