/* llm_cli.h - what `mixel run`, `mixel logits` and `mixel bench` share: the common options
 * (-m, -t, -c, --kv-type, --ubatch, --act), opening backend + model + context with messages on
 * stderr, and reading whole files. tui/ only (it prints). */
#ifndef MX_LLM_CLI_H
#define MX_LLM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/llm/llama.h"

struct mx_backend;

struct mx_llm_opts {
    const char *model;   /* -m */
    int threads;         /* -t (0: physical cores) */
    int64_t n_ctx;       /* -c (0: the model's, capped by memory) */
    int kv_type;         /* --kv-type (enum mx_type) */
    int ubatch;          /* --ubatch */
    int act_mode;        /* --act ggml|f32 (enum mx_act_mode) */
    bool verbose;        /* -v: debug log lines too */
    bool quiet;          /* info log lines off */
};

/* Defaults: f16 cache, ubatch 512, ggml activations. */
void mx_llm_opts_init(struct mx_llm_opts *o);

/* If argv[*i] is a common option, consumes it (and its value), advances *i and returns 1; returns
 * 0 when it is not one; -1 after printing a usage error. */
int mx_llm_parse_common(int argc, char **argv, int *i, struct mx_llm_opts *o, const char *cmd);

/* Help text lines for the common options. */
extern const char mx_llm_common_help[];

/* Installs the stderr logger, creates the backend, loads the model and a context. On failure
 * prints "mixel CMD: message" and returns 1 (everything released); 0 on success. *load_s gets
 * the model load time. */
int mx_llm_open(const struct mx_llm_opts *o, const char *cmd, struct mx_backend **be,
                struct mx_llama_model **m, struct mx_llama_ctx **c, double *load_s);
void mx_llm_close(struct mx_backend *be, struct mx_llama_model *m, struct mx_llama_ctx *c);

/* Reads a whole file (NUL-terminated copy; caller frees). Returns 0, or 1 after printing why. */
int mx_llm_read_file(const char *path, const char *cmd, char **buf, size_t *len);

/* Parses ids "1,2 3\n4" (any non-digit separators; a JSON array works too). Returns 0 with *ids
 * (caller frees) and *n, or 1 after printing why. */
int mx_llm_parse_ids(const char *s, const char *cmd, int32_t **ids, int64_t *n);

/* Tokenizes text with the model's tokenizer, BOS added as the vocabulary says. Returns 0 with
 * *ids (caller frees), or 1 after printing why. */
int mx_llm_tokenize(const struct mx_llama_model *m, const char *text, size_t len, const char *cmd,
                    int32_t **ids, int64_t *n);

#endif
