/* readfile.h - reading a whole small file (a grammar, a settings file, a prompt, a PNG read back)
 * into memory, with a size cap, in one place: the loop, the cap and the messages were written
 * several times over (the CLI's -f, the grammar loader, the settings file, the server's images)
 * before this existed. Model files are mapped instead (mapfile.h). */
#ifndef MX_READFILE_H
#define MX_READFILE_H

#include <stddef.h>

#include "core/base/err.h"

/* Reads path (a regular file, a pipe or a device: read to its end) into a malloc'd buffer with a
 * NUL after the last byte (text stays a C string; binary data may hold NULs). Returns 0 with
 * *buf (caller frees) and *n, or MX_ENOENT / MX_EPERM / MX_EIO ("path: cannot open (reason)",
 * "path: read error"), MX_ERANGE ("path: more than max bytes"), MX_ENOMEM; *buf is then NULL.
 * max 0: no cap beyond memory. */
int mx_read_file(const char *path, size_t max, char **buf, size_t *n, struct mx_err *err);

#endif
