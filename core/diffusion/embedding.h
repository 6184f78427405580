/* embedding.h - textual-inversion embeddings for the Stable Diffusion text encoders: files,
 * folders of them, and the lookup the prompt tokenizer uses.
 *
 * FILES (.safetensors only; pickled .pt/.bin files are refused with a message, never read):
 *   A1111:     "string_to_param.*" (or any "string_to_param.<token>") [n, dim], or a single
 *              tensor such as "emb_params" [n, dim]
 *   diffusers: a single tensor named after its token ("<cat-toy>") [dim] or [n, dim]
 *   SDXL:      "clip_l" [n, 768] and "clip_g" [n, 1280] (one vector set per text encoder)
 * F32, F16 or BF16; 1 to 75 vectors (one chunk) of 1 to 8192 values. The rules are A1111's
 * create_embedding_from_data (modules/textual_inversion/textual_inversion.py, v1.10.1).
 *
 * NAMES: an embedding is called by its file's stem, as A1111 and ComfyUI do: in a prompt the word
 * (A1111: the same CLIP tokens as the stem, matched token by token, longest name first) or
 * "embedding:STEM" (ComfyUI). Each of its n vectors takes the place of one token in CLIP's input
 * (n vectors -> n tokens), with the weight of the prompt text around it.
 *
 * A folder set (struct mx_sd_emb_db) lists the files of its folders once (first folder wins on
 * a name clash) and reads a file the first time a prompt calls it; what was called since the
 * last mx_sd_emb_db_reset_used is what A1111 writes as "TI hashes" in the infotext.
 */
#ifndef MX_SD_EMBEDDING_H
#define MX_SD_EMBEDDING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/base/err.h"

#define MX_SD_EMB_MAX_VECTORS 75   /* one chunk's worth of tokens */
#define MX_SD_EMB_MAX_DIM 8192

/* One embedding file's vectors. */
struct mx_sd_embedding {
    char *name;        /* the file's stem: what a prompt calls it (owned) */
    char *path;        /* the file (owned) */
    int64_t n_vec;     /* vectors = tokens it stands for */
    int64_t dim;       /* width of vec: 768 (SD 1.x / SDXL clip_l), 1024 (SD 2.x) */
    float *vec;        /* [n_vec][dim] (owned) */
    int64_t dim_g;     /* SDXL: width of vec_g (1280); 0 otherwise */
    float *vec_g;      /* SDXL clip_g [n_vec][dim_g] (owned), or NULL */
    char hash[13];     /* A1111's shorthash: the first 12 hex digits of the file's SHA-256 */
};

/* Reads an embedding file (see FILES). name: what a prompt calls it (NULL: the file's stem).
 * Returns 0 and *out (caller frees), or MX_EUNSUP (a pickle: ".pt/.bin files are not read;
 * convert to .safetensors"), MX_EFORMAT ("x.safetensors: 'emb' has shape [3, 5, 7], expected
 * [n, dim]"), MX_ENOENT / MX_EIO / MX_ENOMEM; err names the file. */
int mx_sd_embedding_load(const char *path, const char *name, struct mx_sd_embedding **out,
                         struct mx_err *err);

/* The same from a buffer (borrowed for the call) that holds a .safetensors file; label stands
 * for the path in messages and the name. For tests and the fuzz target. */
int mx_sd_embedding_load_mem(const void *buf, size_t size, const char *label,
                             struct mx_sd_embedding **out, struct mx_err *err);

void mx_sd_embedding_free(struct mx_sd_embedding *e); /* NULL ok */

/* The vectors of e for a text encoder of width dim: vec (dim == e->dim) or vec_g (dim ==
 * e->dim_g), or NULL with err "x.safetensors: an embedding of width 1024 (SD 2.x), the model's
 * text encoder is 768 (SD 1.x / SDXL CLIP-L)". */
const float *mx_sd_embedding_vectors(const struct mx_sd_embedding *e, int64_t dim,
                                     struct mx_err *err);

/* ---- folders ------------------------------------------------------------------------------ */

struct mx_sd_emb_db;

/* Lists the embedding files (.safetensors, and .pt/.bin so that calling one says why it is not
 * read) of dirs (NULL-terminated; missing folders are skipped). dim: the text encoder's width,
 * checked when a file is read. Returns 0 and *out (caller frees), or MX_ENOMEM. */
int mx_sd_emb_db_new(const char *const *dirs, int64_t dim, struct mx_sd_emb_db **out,
                     struct mx_err *err);
void mx_sd_emb_db_free(struct mx_sd_emb_db *db); /* NULL ok */

/* Names (file stems) in the set, in folder then name order. */
int mx_sd_emb_db_count(const struct mx_sd_emb_db *db);
const char *mx_sd_emb_db_name(const struct mx_sd_emb_db *db, int i);

/* The embedding called name (len bytes; a trailing ".safetensors"/".pt"/".bin" is ignored),
 * read on first use and marked used. Returns 0 and *out (borrowed, valid until the set is
 * freed), MX_ENOENT when no file has that stem (err "embedding:NAME: no NAME.safetensors in
 * the embeddings folders (DIRS)"), or the error of reading it (a pickle, a bad file, a width
 * that is not the text encoder's). */
int mx_sd_emb_db_get(struct mx_sd_emb_db *db, const char *name, size_t len,
                     const struct mx_sd_embedding **out, struct mx_err *err);

/* Forgets which embeddings were used (call before encoding a new prompt pair). */
void mx_sd_emb_db_reset_used(struct mx_sd_emb_db *db);

/* A1111's "TI hashes" value for the embeddings used since the reset, in order of first use:
 * "name: 0123456789ab, other: ..." (":" and "," dropped from names, as A1111 does). Returns buf
 * ("" when none or db is NULL). */
const char *mx_sd_emb_db_hashes(const struct mx_sd_emb_db *db, char *buf, size_t size);

#endif
