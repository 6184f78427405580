/* paths.h - where mixel keeps its files: config in $XDG_CONFIG_HOME/mixel (default ~/.config),
 * data (history.db, images, kv/ snapshots, readline history) in $XDG_DATA_HOME/mixel (default
 * ~/.local/share). Folders are created 0700; files inside are the caller's to create 0600. */
#ifndef MX_PATHS_H
#define MX_PATHS_H

#include <stddef.h>

#include "core/base/err.h"

/* Writes the config / data / cache folder path into buf (no trailing slash). Does not create it.
 * Returns 0, MX_ERANGE when buf is too small, MX_ENOENT when neither XDG_* nor HOME is set. */
int mx_path_config_dir(char *buf, size_t size, struct mx_err *err);
int mx_path_data_dir(char *buf, size_t size, struct mx_err *err);
int mx_path_cache_dir(char *buf, size_t size, struct mx_err *err);

/* mkdir -p with mode 0700 for every folder it creates; existing folders are left as they are.
 * Returns 0 or MX_EIO/MX_EPERM with the failing component in err. */
int mx_mkdir_p(const char *path, struct mx_err *err);

#endif
