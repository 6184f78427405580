/* tok_gguf.c - mx_tokenizer_from_gguf(): the tokenizer.ggml.* metadata of a model file turned
 * into a struct mx_tok_desc, with llama.cpp's defaults per model kind and pre-tokenizer. Kept
 * apart from tokenizer.c so programs that build tokenizers by hand do not pull in the GGUF
 * reader. */
#include <stdlib.h>
#include <string.h>

#include "core/format/gguf.h"
#include "core/base/log.h"
#include "core/text/tok_internal.h"
#include "core/base/util.h"

static int gguf_special(const struct mx_gguf *g, const char *key, int32_t *id,
                        struct mx_err *err) {
    int64_t v;
    int rc = mx_gguf_get_int(g, key, &v, err);
    if (rc == MX_ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    *id = (v < 0 || v > INT32_MAX) ? MX_TOK_NONE : (int32_t)v;
    return 0;
}

/* An optional array of numbers of any numeric element type (files differ: f32/f64 scores,
 * i32/u32 types). *out stays NULL when the key is absent. */
static int numeric_arr(const struct mx_gguf *g, const char *key,
                       const struct mx_gguf_value **out, struct mx_err *err) {
    const struct mx_gguf_value *v = mx_gguf_get(g, key);
    *out = NULL;
    if (!v)
        return 0;
    if (v->type == MX_GGUF_ARRAY) {
        switch (v->v.arr.elem_type) {
        case MX_GGUF_STRING:
        case MX_GGUF_ARRAY:
        case MX_GGUF_BOOL:
            break;
        default:
            *out = v;
            return 0;
        }
    }
    return mx_err_set(err, MX_EFORMAT, "%s: %s is not an array of numbers", mx_gguf_path(g), key);
}

static int gguf_flag(const struct mx_gguf *g, const char *key, bool *b, struct mx_err *err) {
    int rc = mx_gguf_get_bool(g, key, b, err);
    return rc == MX_ENOENT ? 0 : rc;
}

int mx_tokenizer_from_gguf(const struct mx_gguf *g, struct mx_tokenizer **out,
                           struct mx_err *err) {
    const char *name = mx_gguf_path(g);
    const char *model = NULL;
    const struct mx_gguf_value *toks = NULL, *scores = NULL, *types = NULL, *merges = NULL;
    struct mx_tok_desc d;
    const char **tv = NULL, **mv = NULL;
    size_t *lens = NULL;
    float *sv = NULL;
    int32_t *tyv = NULL;
    int rc;
    *out = NULL;

    rc = mx_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (rc == MX_ENOENT)
        return mx_err_set(err, MX_ENOENT, "%s: no tokenizer (tokenizer.ggml.model missing)", name);
    if (rc < 0)
        return rc;
    bool gemma4 = strcmp(model, "gemma4") == 0;
    if (strcmp(model, "llama") == 0) {
        mx_tok_desc_init(&d, MX_TOK_SPM);
    } else if (strcmp(model, "gpt2") == 0 || gemma4) {
        mx_tok_desc_init(&d, MX_TOK_BPE);
        if (gemma4) /* llama.cpp: no default special ids, all from the file */
            d.bos_id = d.eos_id = MX_TOK_NONE;
    } else {
        return mx_err_set(err, MX_EUNSUP, "%s: tokenizer model '%s' is not supported (llama, "
                          "gpt2 and gemma4 are)", name, model);
    }

    rc = mx_gguf_get_arr(g, "tokenizer.ggml.tokens", MX_GGUF_STRING, &toks, err);
    if (rc == MX_ENOENT)
        return mx_err_set(err, MX_ENOENT, "%s: tokenizer.ggml.tokens missing", name);
    if (rc < 0)
        return rc;
    uint64_t n = toks->v.arr.n;
    if (n == 0 || n > (1u << 28))
        return mx_err_set(err, MX_EFORMAT, "%s: tokenizer.ggml.tokens has %llu entries", name,
                          (unsigned long long)n);
    if ((rc = numeric_arr(g, "tokenizer.ggml.scores", &scores, err)) < 0 ||
        (rc = numeric_arr(g, "tokenizer.ggml.token_type", &types, err)) < 0)
        return rc;
    if ((scores && scores->v.arr.n != n) || (types && types->v.arr.n != n))
        return mx_err_set(err, MX_EFORMAT, "%s: tokenizer arrays disagree (%llu tokens, %llu "
                          "scores, %llu types)", name, (unsigned long long)n,
                          scores ? (unsigned long long)scores->v.arr.n : 0ull,
                          types ? (unsigned long long)types->v.arr.n : 0ull);
    if (d.kind == MX_TOK_BPE) {
        rc = mx_gguf_get_arr(g, "tokenizer.ggml.merges", MX_GGUF_STRING, &merges, err);
        if (rc == MX_ENOENT)
            return mx_err_set(err, MX_EFORMAT, "%s: gpt2 tokenizer without tokenizer.ggml.merges",
                              name);
        if (rc < 0)
            return rc;
        if (merges->v.arr.n > (1u << 28))
            return mx_err_set(err, MX_EFORMAT, "%s: %llu merges", name,
                              (unsigned long long)merges->v.arr.n);
        const char *pre = NULL;
        rc = mx_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err);
        if (rc < 0 && rc != MX_ENOENT)
            return rc;
        struct mx_tok_pre_info pi;
        if (gemma4) {
            (void)mx_tok_pre_lookup("gemma4", &pi);
        } else if (!pre) {
            /* llama.cpp: 'default' with a loud warning */
            (void)mx_tok_pre_lookup("default", &pi);
            mx_log(MX_LOG_WARN, "%s: no tokenizer.ggml.pre: using the 'default' pre-tokenizer "
                   "like llama.cpp; tokens may differ from the model's training (regenerate the "
                   "GGUF)", name);
        } else if (!mx_tok_pre_lookup(pre, &pi)) {
            return mx_err_set(err, MX_EUNSUP, "%s: unknown pre-tokenizer '%s' (tokenizer.ggml.pre)"
                              "; its splitting rules are not known, so it is refused rather than "
                              "tokenized differently", name, pre);
        }
        d.pre = pi.pre;
        d.ignore_merges = pi.ignore_merges;
        d.add_bos = pi.add_bos;
        d.escape_spaces = pi.escape_spaces;
        d.raw_bytes = pi.raw_bytes;
        if (pi.keep_spaces)
            d.clean_spaces = false;
        if (pi.no_bos)
            d.bos_id = MX_TOK_NONE;
    }

    rc = MX_ENOMEM;
    tv = malloc(n * sizeof(*tv));
    lens = malloc(n * sizeof(*lens));
    if (!tv || !lens)
        goto fail;
    for (uint64_t i = 0; i < n; i++) {
        tv[i] = toks->v.arr.items[i].v.str.data;
        lens[i] = (size_t)toks->v.arr.items[i].v.str.len;
    }
    if (scores) {
        if (!(sv = malloc(n * sizeof(*sv))))
            goto fail;
        for (uint64_t i = 0; i < n; i++)
            sv[i] = (float)mx_gguf_arr_float(scores, i);
    }
    if (types) {
        if (!(tyv = malloc(n * sizeof(*tyv))))
            goto fail;
        for (uint64_t i = 0; i < n; i++)
            tyv[i] = (int32_t)mx_gguf_arr_int(types, i);
    }
    if (merges) {
        if (!(mv = malloc((merges->v.arr.n ? merges->v.arr.n : 1) * sizeof(*mv))))
            goto fail;
        for (uint64_t i = 0; i < merges->v.arr.n; i++)
            mv[i] = merges->v.arr.items[i].v.str.data;
        d.merges = mv;
        d.n_merges = (int32_t)merges->v.arr.n;
    }
    d.n_tokens = (int32_t)n;
    d.tokens = tv;
    d.token_lens = lens;
    d.scores = sv;
    d.types = tyv;

    if ((rc = gguf_special(g, "tokenizer.ggml.bos_token_id", &d.bos_id, err)) < 0 ||
        (rc = gguf_special(g, "tokenizer.ggml.eos_token_id", &d.eos_id, err)) < 0 ||
        (rc = gguf_special(g, "tokenizer.ggml.unknown_token_id", &d.unk_id, err)) < 0 ||
        (rc = gguf_special(g, "tokenizer.ggml.padding_token_id", &d.pad_id, err)) < 0 ||
        (rc = gguf_special(g, "tokenizer.ggml.eot_token_id", &d.eot_id, err)) < 0 ||
        (rc = gguf_flag(g, "tokenizer.ggml.add_bos_token", &d.add_bos, err)) < 0 ||
        (rc = gguf_flag(g, "tokenizer.ggml.add_eos_token", &d.add_eos, err)) < 0 ||
        (rc = gguf_flag(g, "tokenizer.ggml.add_space_prefix", &d.add_space_prefix, err)) < 0)
        goto fail;
    const char *gname = NULL;
    if (mx_gguf_get_str(g, "general.name", &gname, NULL) == 0 && gname) {
        /* llama.cpp: lower-cased general.name containing "phi-3" or "phi3" */
        char low[256];
        size_t k = 0;
        for (; gname[k] && k + 1 < sizeof(low); k++)
            low[k] = (char)(gname[k] >= 'A' && gname[k] <= 'Z' ? gname[k] + 32 : gname[k]);
        low[k] = 0;
        d.rstrip_special = strstr(low, "phi-3") || strstr(low, "phi3");
    }
    rc = mx_tokenizer_new(&d, out, err);
    if (rc < 0)
        goto fail;
    free(tv);
    free(lens);
    free(sv);
    free(tyv);
    free(mv);
    return 0;
fail:
    free(tv);
    free(lens);
    free(sv);
    free(tyv);
    free(mv);
    if (rc == MX_ENOMEM)
        mx_err_set(err, rc, "%s: out of memory reading the tokenizer", name);
    return rc;
}
