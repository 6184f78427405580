/* sha256.h - SHA-256 (FIPS 180-4), incremental. For model hashes: AUTOMATIC1111's "Model hash"
 * (AutoV2) is the first 10 hex digits of the SHA-256 of the whole checkpoint file
 * (app/model_hash.h), so a 2-7 GB file goes through here once; x86 CPUs with the SHA
 * extensions take a hardware path chosen at run time (~4x the portable code).
 */
#ifndef MX_SHA256_H
#define MX_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* The running state of one hash. */
struct mx_sha256 {
    uint32_t h[8];        /* chaining value */
    uint64_t n_bytes;     /* bytes hashed so far */
    uint8_t buf[64];      /* the current partial block */
    size_t n_buf;         /* bytes in buf (< 64) */
};

/* Starts a hash. */
void mx_sha256_init(struct mx_sha256 *s);

/* Adds n bytes of data. */
void mx_sha256_update(struct mx_sha256 *s, const void *data, size_t n);

/* Finishes: the 32-byte digest into out; s must be re-initialised before reuse. */
void mx_sha256_final(struct mx_sha256 *s, uint8_t out[32]);

/* The digest of data as 64 lowercase hex digits + NUL. */
void mx_sha256_hex(const void *data, size_t n, char out[65]);

/* Writes a 32-byte digest as 64 lowercase hex digits + NUL. */
void mx_sha256_to_hex(const uint8_t digest[32], char out[65]);

/* Whether the hardware (SHA-NI) path is in use: for benchmarks and tests. */
int mx_sha256_hw(void);

/* Forces the portable path (on = 1) or the automatic choice (0): for tests comparing the two. */
void mx_sha256_force_portable(int on);

#endif
