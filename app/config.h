/* config.h - the user's settings file: $XDG_CONFIG_HOME/mixel/config.json (or $MIXEL_CONFIG).
 *
 * One JSON object, read once at start-up by the front end and handed to what needs it (the
 * remote engine's URL and key, user tools, allowed folders, ...). JSON because the richest
 * settings (a tool's parameter schema) are JSON already, and jansson parses it with line and
 * column in its errors. A missing file is an empty configuration, not an error: mixel runs
 * without one. Keys are looked up by dotted paths ("remote.api_key"); each reader documents its
 * own keys next to the code that uses them, and README.md lists them all.
 */
#ifndef MX_CONFIG_H
#define MX_CONFIG_H

#include <jansson.h>

#include "core/base/err.h"

/* Largest config file read (bytes): a settings file, never a data file. */
#define MX_CONFIG_MAX_BYTES ((size_t)1 << 20)

struct mx_config;

/* Reads path (NULL: $MIXEL_CONFIG, else config.json in mx_path_config_dir). Returns 0 with *out
 * (mx_config_free; an empty object when the default file does not exist), or MX_ENOENT (an
 * explicit path or $MIXEL_CONFIG that does not exist), MX_EIO, MX_ERANGE (over
 * MX_CONFIG_MAX_BYTES), MX_EFORMAT ("path:line:col: what jansson says", or a top level that is
 * not an object), MX_ENOMEM; then *out is NULL. */
int mx_config_load(struct mx_config **out, const char *path, struct mx_err *err);
void mx_config_free(struct mx_config *c); /* NULL ok */

/* The file the configuration came from (may not exist: then the configuration is empty). */
const char *mx_config_path(const struct mx_config *c);

/* The value at a dotted path ("remote.url": member "url" of the object "remote"), borrowed
 * while c lives; NULL when c is NULL or any step is missing or not an object. */
json_t *mx_config_get(const struct mx_config *c, const char *dotted);

/* The string at a dotted path. Returns 0 with *out (borrowed), MX_ENOENT when absent (*out
 * NULL), MX_EFORMAT when present but not a string ("config.json: remote.url: expected a string"). */
int mx_config_string(const struct mx_config *c, const char *dotted, const char **out,
                     struct mx_err *err);

#endif
