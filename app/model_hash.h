/* model_hash.h - AUTOMATIC1111's "Model hash" of an SD checkpoint, cached.
 *
 * A1111 (modules/hashes.py, sd_models.py) names a checkpoint in its infotext by "AutoV2": the
 * first 10 hex digits of the SHA-256 of the whole file, and keeps the full digests in
 * cache.json keyed by the file and its mtime so a 2-7 GB file is read once. Here the cache is
 * $XDG_CACHE_HOME/mixel/model_hashes.json (default ~/.cache/mixel), one entry per resolved path
 * with the file's size and mtime (seconds and nanoseconds): any change to either makes the entry
 * stale and the file is hashed again.
 *
 * A diffusers folder (model_index.json at its top) has no single file; A1111 does not load them.
 * Its hash here is the AutoV2 of the UNet weights file (unet/diffusion_pytorch_model.safetensors,
 * else .fp16.safetensors, else .bin), the part that makes a fine-tune what it is; the text
 * encoder and VAE are usually shared with the base model.
 *
 * This layer writes a file, so it lives in app/; the digest itself is core/base/sha256.h.
 */
#ifndef MX_MODEL_HASH_H
#define MX_MODEL_HASH_H

#include <stdbool.h>

#include "core/base/err.h"

/* The full SHA-256 (64 lowercase hex digits) of the checkpoint at path (a file, or a diffusers
 * folder as above), from the cache when its entry matches the file's size and mtime, else by
 * reading the file (then the cache is updated; a cache that cannot be read or written is
 * ignored: the hash is still returned). *from_cache (NULL ok) says which. Errors: MX_EINVAL
 * (NULL arguments, a folder without a UNet file), MX_ENOENT/MX_EPERM/MX_EIO (the model file),
 * MX_ENOMEM; err says "path: problem". Safe to call from several processes at once (the cache
 * is replaced by rename; the last writer wins, a lost entry costs one more hashing). */
int mx_sd_model_sha256(const char *path, char out[65], bool *from_cache, struct mx_err *err);

/* A1111's "Model hash" (AutoV2): the first 10 hex digits of mx_sd_model_sha256, NUL-terminated
 * in out. Same errors. */
int mx_sd_model_hash(const char *path, char out[11], struct mx_err *err);

/* The cache file's path into buf: $XDG_CACHE_HOME/mixel/model_hashes.json, or
 * ~/.cache/mixel/model_hashes.json. Returns 0, MX_ENOENT (neither variable set), MX_ERANGE. */
int mx_sd_model_hash_cache_path(char *buf, size_t size, struct mx_err *err);

#endif
