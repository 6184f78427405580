/* llm_cli.c - shared plumbing of the LLM subcommands (see llm_cli.h). */
#include "app/llm_cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/log.h"
#include "core/base/quant.h"
#include "core/text/tokenizer.h"
#include "core/base/util.h"
#include "kernels/backend.h"
#include "kernels/devices.h"

const char mx_llm_common_help[] =
    "  -m, --model FILE    GGUF model (llama / mistral / Mixtral)\n"
    "  -t, --threads N     CPU threads (default: physical cores)\n"
    "  -c, --ctx-size N    context (KV cache) size in tokens (default: the model's,\n"
    "                      capped by memory)\n"
    "  --kv-type T         KV cache type: f32, f16 (default), q8_0\n"
    "  --ubatch N          tokens per forward chunk (default 512)\n"
    "  --act ggml|f32      activation rounding before quantized matmuls: ggml (default,\n"
    "                      like llama.cpp) or f32 (exact)\n"
    "  -v, --verbose       debug messages; -q, --quiet: warnings only\n";

void mx_llm_opts_init(struct mx_llm_opts *o) {
    memset(o, 0, sizeof *o);
    o->kv_type = MX_TYPE_F16;
    o->ubatch = 512;
    o->act_mode = MX_ACT_GGML;
}

static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int mx_llm_parse_common(int argc, char **argv, int *i, struct mx_llm_opts *o, const char *cmd) {
    const char *a = argv[*i];
    const char *val = *i + 1 < argc ? argv[*i + 1] : NULL;
    long long v;
#define NEED()                                                                       \
    do {                                                                             \
        if (!val) {                                                                  \
            fprintf(stderr, "mixel %s: %s needs a value\n", cmd, a);                 \
            return -1;                                                               \
        }                                                                            \
        (*i)++;                                                                      \
    } while (0)
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        NEED();
        o->model = val;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        NEED();
        if (parse_int(val, 1, 1024, &v) < 0)
            goto bad;
        o->threads = (int)v;
    } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
        NEED();
        if (parse_int(val, 1, (long long)1 << 24, &v) < 0)
            goto bad;
        o->n_ctx = v;
    } else if (!strcmp(a, "--kv-type")) {
        NEED();
        int t = mx_type_from_name(val);
        if (t != MX_TYPE_F32 && t != MX_TYPE_F16 && t != MX_TYPE_Q8_0)
            goto bad;
        o->kv_type = t;
    } else if (!strcmp(a, "--ubatch")) {
        NEED();
        if (parse_int(val, 1, 8192, &v) < 0)
            goto bad;
        o->ubatch = (int)v;
    } else if (!strcmp(a, "--act")) {
        NEED();
        if (!strcmp(val, "ggml"))
            o->act_mode = MX_ACT_GGML;
        else if (!strcmp(val, "f32"))
            o->act_mode = MX_ACT_F32;
        else
            goto bad;
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
        o->verbose = true;
    } else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
        o->quiet = true;
    } else {
        return 0;
    }
    (*i)++;
    return 1;
bad:
    fprintf(stderr, "mixel %s: bad value for %s: '%s'\n", cmd, a, val);
    return -1;
#undef NEED
}

static void log_stderr(enum mx_log_level level, const char *msg, void *ud) {
    const struct mx_llm_opts *o = ud;
    if (level == MX_LOG_DEBUG && !o->verbose)
        return;
    if (level == MX_LOG_INFO && o->quiet)
        return;
    static const char *names[] = {"debug", "info", "warning", "error"};
    fprintf(stderr, "mixel: %s: %s\n", names[level], msg);
}

int mx_llm_open(const struct mx_llm_opts *o, const char *cmd, struct mx_backend **be,
                struct mx_llama_model **m, struct mx_llama_ctx **c, double *load_s) {
    *be = NULL;
    *m = NULL;
    *c = NULL;
    if (!o->model) {
        fprintf(stderr, "mixel %s: no model (-m FILE.gguf)\n", cmd);
        return 1;
    }
    mx_log_set(log_stderr, (void *)o);
    struct mx_err err = {0};
    double t0 = mx_time_s();
    *be = mx_device_open(NULL, o->threads, &err);
    if (!*be)
        goto fail;
    if (mx_backend_set_act_mode(*be, o->act_mode) < 0) {
        mx_err_set(&err, MX_EINVAL, "backend: activation mode %d", o->act_mode);
        goto fail;
    }
    int rc = mx_llama_model_load(o->model, *be, m, &err);
    if (rc < 0)
        goto fail;
    if (load_s)
        *load_s = mx_time_s() - t0;
    struct mx_llama_ctx_params cp;
    mx_llama_ctx_params_default(&cp);
    cp.n_ctx = o->n_ctx;
    cp.kv_type = (enum mx_type)o->kv_type;
    cp.n_ubatch = o->ubatch;
    rc = mx_llama_ctx_new(*m, &cp, c, &err);
    if (rc < 0)
        goto fail;
    return 0;
fail:
    fprintf(stderr, "mixel %s: %s\n", cmd, mx_err_msg(&err, err.code ? err.code : MX_EINVAL));
    mx_llm_close(*be, *m, *c);
    *be = NULL;
    *m = NULL;
    *c = NULL;
    return 1;
}

void mx_llm_close(struct mx_backend *be, struct mx_llama_model *m, struct mx_llama_ctx *c) {
    mx_llama_ctx_free(c);
    mx_llama_model_free(m);
    mx_backend_free(be);
}

int mx_llm_read_file(const char *path, const char *cmd, char **buf, size_t *len) {
    *buf = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "mixel %s: %s: %s\n", cmd, path, strerror(errno));
        return 1;
    }
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    while (b) {
        if (n + 1 >= cap) {
            char *nb = cap < SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
        size_t r = fread(b + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (!b || bad) {
        fprintf(stderr, "mixel %s: %s: %s\n", cmd, path, b ? "read error" : "out of memory");
        free(b);
        return 1;
    }
    b[n] = '\0';
    *buf = b;
    *len = n;
    return 0;
}

int mx_llm_parse_ids(const char *s, const char *cmd, int32_t **ids, int64_t *n) {
    size_t cap = 64, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v)
        goto oom;
    for (const char *p = s; *p;) {
        if (*p < '0' || *p > '9') {
            if (*p == '-') {
                fprintf(stderr, "mixel %s: negative token id in the list\n", cmd);
                free(v);
                return 1;
            }
            p++;
            continue;
        }
        long long x = 0;
        while (*p >= '0' && *p <= '9') {
            x = x * 10 + (*p++ - '0');
            if (x > INT32_MAX) {
                fprintf(stderr, "mixel %s: token id too large\n", cmd);
                free(v);
                return 1;
            }
        }
        if (k == cap) {
            int32_t *nv = realloc(v, cap * 2 * sizeof *v);
            if (!nv)
                goto oom;
            v = nv;
            cap *= 2;
        }
        v[k++] = (int32_t)x;
    }
    if (k == 0) {
        fprintf(stderr, "mixel %s: no token ids given\n", cmd);
        free(v);
        return 1;
    }
    *ids = v;
    *n = (int64_t)k;
    return 0;
oom:
    free(v);
    fprintf(stderr, "mixel %s: out of memory\n", cmd);
    return 1;
}

int mx_llm_tokenize(const struct mx_llama_model *m, const char *text, size_t len, const char *cmd,
                    int32_t **ids, int64_t *n) {
    struct mx_err err = {0};
    struct mx_tokenizer *tok = NULL;
    int rc = mx_tokenizer_from_gguf(mx_llama_model_gguf(m), &tok, &err);
    if (rc < 0) {
        fprintf(stderr, "mixel %s: tokenizer: %s\n", cmd, mx_err_msg(&err, rc));
        return 1;
    }
    size_t k = 0;
    rc = mx_tokenizer_encode(tok, text, len, MX_TOK_ADD_SPECIAL, ids, &k, &err);
    mx_tokenizer_free(tok);
    if (rc < 0) {
        fprintf(stderr, "mixel %s: tokenizer: %s\n", cmd, mx_err_msg(&err, rc));
        return 1;
    }
    *n = (int64_t)k;
    return 0;
}
