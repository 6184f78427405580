/* hf.h - Hugging Face hub references for `mixel pull`: parsing hf:// names, the URLs the hub
 * serves them at, and choosing a file from a repo's listing by its quant tag.
 *
 * Pure (no network, no files): the downloader (net/pull.c) fetches what these functions name and
 * hands the listing's bytes back here. The listing and the name come from outside (the user, the
 * hub), so every length is checked and nothing here trusts them to be well formed
 * (tests/fuzz/fuzz_hf.c).
 */
#ifndef MX_NET_HF_H
#define MX_NET_HF_H

#include <stddef.h>

#include "core/base/err.h"

/* Longest owner, repo, file path and quant tag accepted (the hub's own limits are lower). */
#define MX_HF_NAME_MAX 96
#define MX_HF_PATH_MAX 512

/* A parsed hf:// reference. */
struct mx_hf_ref {
    char owner[MX_HF_NAME_MAX + 1]; /* "TheBloke" */
    char repo[MX_HF_NAME_MAX + 1];  /* "Mistral-7B-Instruct-v0.2-GGUF" */
    char path[MX_HF_PATH_MAX + 1];  /* file in the repo, "" for the short form (chosen from the
                                       listing by quant) */
    char quant[MX_HF_NAME_MAX + 1]; /* "Q4_K_M" of hf://OWNER/REPO:Q4_K_M, "" none */
};

/* Parses "hf://OWNER/REPO/PATH/FILE", "hf://OWNER/REPO:QUANT" or "hf://OWNER/REPO" (the repo's
 * one model file). Owner and repo are [A-Za-z0-9._-] (no "..", not starting with '.' or '-'),
 * the path's segments are printable without '\\' and never "." or "..", and it names a model
 * file (mx_hf_is_model_file). Returns 0, or MX_EINVAL with err saying what is wrong. */
int mx_hf_parse(const char *s, struct mx_hf_ref *ref, struct mx_err *err);

/* The download URL: "{endpoint}/OWNER/REPO/resolve/main/PATH", each path segment
 * percent-encoded. Returns the length written (snprintf style; >= size: cut short). */
size_t mx_hf_resolve_url(const char *endpoint, const struct mx_hf_ref *ref, char *buf,
                         size_t size);

/* The listing URL: "{endpoint}/api/models/OWNER/REPO" (its "siblings" name every file). */
size_t mx_hf_api_url(const char *endpoint, const struct mx_hf_ref *ref, char *buf, size_t size);

/* Whether a file name is a model mixel pulls: ".gguf" or ".safetensors" (any case). */
int mx_hf_is_model_file(const char *name);

/* Whether name carries the quant tag q: q appears (any case) with no letter or digit before it
 * and no letter, digit or '_' after it, so "Q4_K" is not found in "x.Q4_K_M.gguf". */
int mx_hf_name_has_quant(const char *name, const char *q);

/* Chooses the file of ref->quant (or the one model file when quant is "") from the hub's JSON
 * listing json[0..len) ({"siblings": [{"rfilename": ...}, ...]}), and writes it to ref->path.
 * With quant, .gguf files are considered; without, .gguf files, else .safetensors files.
 * Returns 0; MX_ENOENT when none matches (err lists the model files the repo has); MX_EINVAL
 * when several do (err lists them: "ambiguous: ..."); MX_EUNSUP when the match is one shard of a
 * split model (NAME-00001-of-0000N.gguf: each shard is pulled by its path); MX_EFORMAT for a
 * listing that is not the hub's JSON. */
int mx_hf_pick(const char *json, size_t len, struct mx_hf_ref *ref, struct mx_err *err);

#endif
