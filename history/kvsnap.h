/* kvsnap.h - the KV-cache snapshot file: what makes resuming a long session instant. A snapshot
 * holds the token ids a cache was computed for and the cache itself as an opaque payload (the
 * engine decides its layout); mixel uses it only when the model hash matches and the session's
 * tokens start with the snapshot's tokens, and re-prefills otherwise.
 *
 * File layout, little-endian, 64-byte header:
 *    0  char[8]  magic "MXKVSNP\n"
 *    8  u32      version (MX_KVSNAP_VERSION)
 *   12  u32      header size (64)
 *   16  u64      model hash (mx_kvsnap_model_hash)
 *   24  u32      n_ctx          28  u32  kv type (enum mx_type of the cache)
 *   32  u32      n_layer        36  u32  flags (0)
 *   40  u64      n_tokens       48  u64  payload size in bytes
 *   56  u64      checksum: XXH64 (seed 0) of bytes 0..55, the token ids and the payload
 *   64  i32[n_tokens] token ids, then the payload; the file ends exactly there.
 * Files are written to a temp name, fsynced and renamed (a crash leaves the old snapshot or the
 * new one, never half of one), mode 0600 in $XDG_DATA_HOME/mixel/kv/ (0700). Reading checks every
 * field against the file size before allocating, so a truncated, foreign or damaged file gives
 * MX_EFORMAT (MX_EUNSUP for another version, MX_EINVAL for another model), never a crash.
 *
 * The snapshots folder is capped (default 8 GiB): mx_kvsnap_evict removes the least recently used
 * files (mtime; a successful read touches it). Not thread-safe per object.
 */
#ifndef MX_KVSNAP_H
#define MX_KVSNAP_H

#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

#define MX_KVSNAP_MAGIC "MXKVSNP\n"
#define MX_KVSNAP_VERSION 1
#define MX_KVSNAP_HEADER_SIZE 64
#define MX_KVSNAP_MAX_TOKENS (1u << 24)          /* far above any context; bounds allocation */
#define MX_KVSNAP_DEFAULT_CAP (8ull << 30)       /* bytes in kv/ before eviction */

struct mx_kvsnap_info {
    uint64_t model_hash;    /* of the model file the cache was computed with */
    uint32_t n_ctx;         /* context size of the cache */
    uint32_t kv_type;       /* enum mx_type of K/V elements */
    uint32_t n_layer;
    uint64_t n_tokens;      /* token ids stored (the cache holds exactly these positions) */
    uint64_t payload_size;  /* bytes of the opaque cache payload */
};

/* ---- XXH64, streaming (used for the checksum and the model hash) --------------------------- */

struct mx_xxh64 {
    uint64_t v[4];       /* the four lanes */
    uint64_t total;      /* bytes fed */
    uint8_t buf[32];     /* a partial stripe */
    uint32_t nbuf;
};

void mx_xxh64_init(struct mx_xxh64 *s, uint64_t seed);
void mx_xxh64_update(struct mx_xxh64 *s, const void *data, size_t n);
uint64_t mx_xxh64_digest(const struct mx_xxh64 *s);
uint64_t mx_xxh64(const void *data, size_t n, uint64_t seed);

/* ---- model identity ------------------------------------------------------------------------ */

/* A cheap fingerprint of a model file: XXH64 over its size, its first MiB (the GGUF header and
 * the start of the metadata), 16 evenly spaced 64 KiB samples and its last MiB. About 3 MiB of
 * reads, milliseconds even for a 90 GB file, where a full SHA-256 would take minutes at every
 * start. Two files of the same size that differ only outside the sampled ranges would collide;
 * real re-quantizations and fine-tunes change the size or the sampled tensor data. Errors:
 * MX_ENOENT, MX_EPERM, MX_EIO. */
int mx_kvsnap_model_hash(const char *path, uint64_t *hash, struct mx_err *err);

/* 16 lowercase hex digits and a NUL into out (as stored in the sessions table). */
void mx_kvsnap_hash_hex(uint64_t hash, char out[17]);

/* ---- paths --------------------------------------------------------------------------------- */

/* $XDG_DATA_HOME/mixel/kv and .../kv/<session>.kv into buf (not created). */
int mx_kvsnap_dir(char *buf, size_t size, struct mx_err *err);
int mx_kvsnap_path(char *buf, size_t size, int64_t session, struct mx_err *err);

/* ---- writing ------------------------------------------------------------------------------- */

struct mx_kvsnap_writer;

/* Starts writing path (its folder is created 0700): the header and tokens go to a temp file in
 * the same folder. The caller then writes exactly info->payload_size bytes with mx_kvsnap_write
 * and commits. tokens: info->n_tokens ids (borrowed for the call). Errors: MX_EINVAL (sizes),
 * MX_EPERM, MX_EFULL, MX_EIO. On success the caller owns *w (commit or abort it). */
int mx_kvsnap_write_begin(struct mx_kvsnap_writer **w, const char *path,
                          const struct mx_kvsnap_info *info, const int32_t *tokens,
                          struct mx_err *err);

/* Appends payload bytes. Errors: MX_EINVAL (more than payload_size), MX_EFULL, MX_EIO; after an
 * error only abort is valid. */
int mx_kvsnap_write(struct mx_kvsnap_writer *w, const void *data, size_t n, struct mx_err *err);

/* Checks the payload is complete, stores the checksum, fsyncs, renames over path and fsyncs the
 * folder. Frees w in every case; on error the temp file is removed and path is untouched. */
int mx_kvsnap_write_commit(struct mx_kvsnap_writer *w, struct mx_err *err);

/* Drops an unfinished snapshot: removes the temp file, frees w (NULL ok). */
void mx_kvsnap_write_abort(struct mx_kvsnap_writer *w);

/* One call: begin + write(payload) + commit. */
int mx_kvsnap_save(const char *path, const struct mx_kvsnap_info *info, const int32_t *tokens,
                   const void *payload, struct mx_err *err);

/* ---- reading ------------------------------------------------------------------------------- */

struct mx_kvsnap_reader;

/* Opens and validates the header and tokens: magic (MX_EFORMAT), version (MX_EUNSUP), model hash
 * against model_hash (MX_EINVAL, "snapshot is for another model"), sizes against the file size
 * (MX_EFORMAT). The checksum is verified as the payload is read: call mx_kvsnap_read for the
 * whole payload, then mx_kvsnap_read_end. Fills *info. Caller closes *r. */
int mx_kvsnap_open(struct mx_kvsnap_reader **r, const char *path, uint64_t model_hash,
                   struct mx_kvsnap_info *info, struct mx_err *err);

/* The snapshot's token ids (info.n_tokens of them), valid until close. */
const int32_t *mx_kvsnap_tokens(const struct mx_kvsnap_reader *r);

/* Reads the next n payload bytes into buf. Errors: MX_EINVAL (past the payload), MX_EFORMAT
 * (file shrank), MX_EIO. */
int mx_kvsnap_read(struct mx_kvsnap_reader *r, void *buf, size_t n, struct mx_err *err);

/* After the whole payload was read: compares the checksum (MX_EFORMAT on mismatch: discard what
 * was loaded) and marks the file recently used. MX_EINVAL if payload bytes are left unread. */
int mx_kvsnap_read_end(struct mx_kvsnap_reader *r, struct mx_err *err);

void mx_kvsnap_close(struct mx_kvsnap_reader *r);

/* One call: open, read everything, verify. *tokens and *payload are malloc'd for the caller
 * (payload NULL when empty); payloads over max_payload bytes are refused with MX_ERANGE before
 * any allocation. On error nothing is returned. */
int mx_kvsnap_load(const char *path, uint64_t model_hash, size_t max_payload,
                   struct mx_kvsnap_info *info, int32_t **tokens, void **payload,
                   struct mx_err *err);

/* Number of leading tokens two sequences share: how much of a snapshot a session can reuse. */
size_t mx_kvsnap_common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb);

/* ---- size cap ------------------------------------------------------------------------------ */

/* Removes the least recently used *.kv files in dir until their total size is at most cap bytes,
 * never removing keep (a path, or NULL). Stale temp files (over an hour old: a crashed writer)
 * are removed too. *freed (NULL ok) gets the bytes removed. A missing dir is not an error.
 * Errors: MX_EIO (cannot list the folder). */
int mx_kvsnap_evict(const char *dir, uint64_t cap, const char *keep, uint64_t *freed,
                    struct mx_err *err);

#endif
